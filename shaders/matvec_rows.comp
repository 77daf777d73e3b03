#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// hinge: decode-time y = W x for CPU devices (lavapipe): one row per
// invocation, as matmul.comp with MM_POS 1, but x is shared through the
// subgroup instead of being read by every invocation.
//
// Why: llvmpipe runs a subgroup as one SIMD register, and a buffer load
// whose address is not a push-constant expression becomes a loop over the
// lanes, one scalar load per lane and component. matmul.comp's rows variant
// has every lane read all of x (8 vec4s per 32 weights), which costs 3-4
// times the weights' own loads. Here lane i of each 8 reads vec4 i of the
// chunk and the lanes swap them with subgroupShuffle (register moves): x
// costs one vec4 per lane per chunk. The rms of x (HK_F_NORM) is summed
// the same way.
//
// Needs subgroup shuffles and arithmetic in subgroups of >= 8 whose lanes
// are consecutive invocations (HK_WG a multiple of the subgroup size). All
// lanes run every iteration: rows past the end repeat the last row and are
// not stored. Grid: (ceil(nrows / HK_WG), 1). Flags (specialization
// constant), bindings and push block as matmul.comp.
#include "common.glsl"

layout(local_size_x = HK_WG) in;

layout(binding = HK_MM_B_W) readonly buffer Wa { uint wa[]; };
layout(binding = HK_MM_B_W) readonly buffer Wa4 { uvec4 wa4[]; };
layout(binding = HK_MM_B_W2) readonly buffer Wb { uint wb[]; };
layout(binding = HK_MM_B_W2) readonly buffer Wb4 { uvec4 wb4[]; };
layout(binding = HK_MM_B_X) readonly buffer X { float x[]; };
layout(binding = HK_MM_B_X) readonly buffer X4 { vec4 x4[]; };
layout(binding = HK_MM_B_Y) buffer Y { float y[]; };
layout(binding = HK_MM_B_NORM) readonly buffer Nw { float nw[]; };
layout(binding = HK_MM_B_NORM) readonly buffer Nw4 { vec4 nw4[]; };

layout(push_constant) uniform P {
    uint ncols, stride, nrows, row0, m, x_off, x_stride, y_off, y_stride;
    float eps;
} p;

layout(constant_id = 0) const uint FLAGS = 0u; // HK_F_* bits

#define WBUF wa
#define WBUF4 wa4
#define DQ32 dq32_a
#define WEL wel_a
#include "dequant.glsl"
#undef WBUF
#undef WBUF4
#undef DQ32
#undef WEL
#define WBUF wb
#define WBUF4 wb4
#define DQ32 dq32_b
#define WEL wel_b
#include "dequant.glsl"

void main()
{
    uint r = min(gl_GlobalInvocationID.x, p.nrows - 1u);
    uint lane = gl_SubgroupInvocationID & 7u; // which vec4 of a chunk this lane fetches
    uint sgb = gl_SubgroupInvocationID & ~7u; // first lane of this lane's group of 8
    bool norm = (FLAGS & HK_F_NORM) != 0u;
    bool glu = (FLAGS & (HK_F_SWIGLU | HK_F_GEGLU)) != 0u;
    uint xo = p.x_off >> 2;
    uint nfull = p.ncols / HK_CHUNK;
    float ri = 1.0;
    if (norm) {
        vec4 s = vec4(0.0);
        for (uint i = lane; i < nfull * 8u; i += 8u)
            s += x4[xo + i] * x4[xo + i];
        float ss = s.x + s.y + s.z + s.w;
        for (uint i = nfull * HK_CHUNK + lane; i < p.ncols; i += 8u)
            ss += x[p.x_off + i] * x[p.x_off + i];
        // lanes of other groups of 8 hold copies: divide them out
        ss = subgroupAdd(ss) * (8.0 / float(gl_SubgroupSize));
        ri = 1.0 / sqrt(ss / float(p.ncols) + p.eps);
    }
    float acc = 0.0, acc2 = 0.0;
    uint rb = r * p.stride;
    for (uint c = 0u; c < nfull; c++) {
        vec4 mine = x4[xo + c * 8u + lane];
        if (norm)
            mine = mine * ri * nw4[c * 8u + lane];
        vec4 xv[8];
        [[unroll]] for (uint k = 0u; k < 8u; k++)
            xv[k] = subgroupShuffle(mine, sgb + k);
        vec4 qa[8], qb[8];
        vec2 sa, ma, sb, mb;
        dq32_a(rb, c, p.ncols, qa, sa, ma);
        float d0 = dot(qa[0], xv[0]) + dot(qa[1], xv[1]) + dot(qa[2], xv[2]) + dot(qa[3], xv[3]);
        float d1 = dot(qa[4], xv[4]) + dot(qa[5], xv[5]) + dot(qa[6], xv[6]) + dot(qa[7], xv[7]);
        acc += sa.x * d0 + sa.y * d1;
#ifdef HAS_MIN
        vec4 xs0 = xv[0] + xv[1] + xv[2] + xv[3];
        vec4 xs1 = xv[4] + xv[5] + xv[6] + xv[7];
        float sx0 = xs0.x + xs0.y + xs0.z + xs0.w, sx1 = xs1.x + xs1.y + xs1.z + xs1.w;
        acc += ma.x * sx0 + ma.y * sx1;
#endif
        if (glu) {
            dq32_b(rb, c, p.ncols, qb, sb, mb);
            float e0 = dot(qb[0], xv[0]) + dot(qb[1], xv[1]) + dot(qb[2], xv[2]) + dot(qb[3], xv[3]);
            float e1 = dot(qb[4], xv[4]) + dot(qb[5], xv[5]) + dot(qb[6], xv[6]) + dot(qb[7], xv[7]);
            acc2 += sb.x * e0 + sb.y * e1;
#ifdef HAS_MIN
            acc2 += mb.x * sx0 + mb.y * sx1;
#endif
        }
    }
#ifdef HAS_TAIL
    for (uint i = nfull * HK_CHUNK; i < p.ncols; i++) {
        float xv = x[p.x_off + i];
        if (norm)
            xv = xv * ri * nw[i];
        acc += wel_a(rb, i) * xv;
        if (glu)
            acc2 += wel_b(rb, i) * xv;
    }
#endif
    if (gl_GlobalInvocationID.x >= p.nrows)
        return;
    float v = acc;
    if ((FLAGS & HK_F_SWIGLU) != 0u)
        v = silu(v) * acc2;
    else if ((FLAGS & HK_F_GEGLU) != 0u)
        v = gelu_tanh(v) * acc2;
    uint yi = p.y_off + p.row0 + r;
    if ((FLAGS & HK_F_ACC) != 0u)
        v += y[yi];
    y[yi] = v;
}
