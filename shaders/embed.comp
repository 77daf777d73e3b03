#version 450
#extension GL_GOOGLE_include_directive : require
// hinge: out[j, :] = scale * W[tok[tok_off + j], :] for j < m: the token
// embedding. One invocation per 32-weight chunk of a row. A matrix larger
// than one storage descriptor is bound in parts; each dispatch handles the
// tokens whose rows lie in its part [row0, row0 + nrows) and leaves the
// others alone (as it does ids outside the vocabulary: the host checks ids).
// Grid: (ceil(ceil(n / 32) / HK_WG), m).
#include "common.glsl"

layout(local_size_x = HK_WG) in;

layout(binding = HK_EM_B_W) readonly buffer Wa { uint wa[]; };
layout(binding = HK_EM_B_W) readonly buffer Wa4 { uvec4 wa4[]; };
layout(binding = HK_EM_B_TOK) readonly buffer T { int tok[]; };
layout(binding = HK_EM_B_OUT) writeonly buffer O { float o[]; };
layout(binding = HK_EM_B_OUT) writeonly buffer O4 { vec4 o4[]; };

layout(push_constant) uniform P {
    uint ncols;    // n
    uint stride;   // words per device row
    uint row0;     // first row of the bound part
    uint nrows;    // rows in the bound part
    uint m;        // tokens
    uint tok_off;  // ints
    uint o_off;    // floats; multiple of 4
    uint o_stride; // floats between positions; multiple of 4
    float scale;
} p;

layout(constant_id = 0) const uint FLAGS = 0u; // the sub-layout bits only (HK_F_SUB_SHIFT)

#define W1(i) wa[i]
#define W4(i) wa4[i]
#define DQ32 dq32_a
#define WEL wel_a
#include "dequant.glsl"

void main()
{
    uint c = gl_GlobalInvocationID.x;
    uint j = gl_WorkGroupID.y;
    if (j >= p.m)
        return;
    int t = tok[p.tok_off + j];
    if (t < int(p.row0) || t >= int(p.row0 + p.nrows))
        return;
    uint rb = (uint(t) - p.row0) * p.stride;
    uint ob = p.o_off + j * p.o_stride;
    uint nfull = p.ncols / HK_CHUNK;
    if (c < nfull) {
        vec4 q[8];
        vec2 sc, mn;
        dq32_a(rb, c, p.ncols, q, sc, mn);
        for (uint k = 0u; k < 8u; k++) {
            // value = sc * q + mn as the CPU dequantizes, then times scale
            vec4 v = (k < 4u ? sc.x : sc.y) * q[k] + (k < 4u ? mn.x : mn.y);
            o4[(ob >> 2) + c * 8u + k] = v * p.scale;
        }
    }
#ifdef HAS_TAIL
    else if (c == nfull) {
        for (uint i = nfull * HK_CHUNK; i < p.ncols; i++)
            o[ob + i] = wel_a(rb, i) * p.scale;
    }
#endif
}
