#version 450
#extension GL_GOOGLE_include_directive : require
// hinge: RMS norm of rows of n floats, as model/ops.c op_rmsnorm:
//   out = x / sqrt(mean(x^2) + eps) * w
// with HK_F_ADD:   out = res + x / sqrt(...) * w     (gemma's post-norms)
// with HK_F_NORM2: then out2 = out / sqrt(mean(out^2) + eps) * w2
//                  (the next block's input norm, in the same dispatch).
// Position j has `groups` rows of n floats, contiguous (per-head norms:
// groups = heads); w advances w_stride floats per group (0: one weight for
// all). out may be x (in place) and res may be out. One workgroup per row;
// grid (groups, m).
#include "common.glsl"
#include "reduce.glsl"

layout(local_size_x = HK_WG) in;

layout(binding = HK_RN_B_X) readonly buffer X { float x[]; };
layout(binding = HK_RN_B_W) readonly buffer W { float w[]; };
layout(binding = HK_RN_B_OUT) buffer O { float o[]; };
layout(binding = HK_RN_B_RES) readonly buffer R { float res[]; };
layout(binding = HK_RN_B_W2) readonly buffer W2 { float w2[]; };
layout(binding = HK_RN_B_OUT2) writeonly buffer O2 { float o2[]; };

layout(push_constant) uniform P {
    uint n;        // floats per row
    uint m;        // positions
    uint x_off, x_stride;  // floats; stride between positions
    uint o_off, o_stride;
    uint r_off, r_stride;
    uint o2_off, o2_stride;
    uint w_stride; // floats between the weights of consecutive groups
    uint flags;
    float eps;
} p;

void main()
{
    uint g = gl_WorkGroupID.x, j = gl_WorkGroupID.y;
    uint l = gl_LocalInvocationIndex;
    uint xb = p.x_off + j * p.x_stride + g * p.n;
    uint ob = p.o_off + j * p.o_stride + g * p.n;
    uint wb = g * p.w_stride;
    float ss = 0.0;
    for (uint i = l; i < p.n; i += HK_WG)
        ss += x[xb + i] * x[xb + i];
    ss = wg_sum(ss);
    float inv = 1.0 / sqrt(ss / float(p.n) + p.eps);
    bool add = (p.flags & HK_F_ADD) != 0u;
    uint rb = p.r_off + j * p.r_stride + g * p.n;
    float ss2 = 0.0;
    for (uint i = l; i < p.n; i += HK_WG) {
        float v = x[xb + i] * inv * w[wb + i];
        if (add)
            v = res[rb + i] + v;
        o[ob + i] = v;
        ss2 += v * v;
    }
    if ((p.flags & HK_F_NORM2) == 0u)
        return;
    ss2 = wg_sum(ss2);
    float inv2 = 1.0 / sqrt(ss2 / float(p.n) + p.eps);
    uint o2b = p.o2_off + j * p.o2_stride + g * p.n;
    for (uint i = l; i < p.n; i += HK_WG)
        o2[o2b + i] = o[ob + i] * inv2 * w2[wb + i];
}
