#version 450
#extension GL_GOOGLE_include_directive : require
// hinge: decode-time y = W x for GPUs: HK_MV_LANES lanes share a row and
// take its chunks in turn, so that neighbouring lanes read neighbouring
// bytes; HK_WG / HK_MV_LANES rows per workgroup. The lanes of a row meet
// through subgroup shuffles (USE_SUBGROUP) or shared memory. Grid:
// (ceil(nrows / (HK_WG / HK_MV_LANES)), 1). Flags (specialization constant),
// bindings and push-constant block as matmul.comp.
#include "common.glsl"

#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x = HK_WG) in;

layout(binding = HK_MM_B_W) readonly buffer Wa { uint wa[]; };
layout(binding = HK_MM_B_W) readonly buffer Wa4 { uvec4 wa4[]; };
layout(binding = HK_MM_B_W2) readonly buffer Wb { uint wb[]; };
layout(binding = HK_MM_B_W2) readonly buffer Wb4 { uvec4 wb4[]; };
layout(binding = HK_MM_B_X) readonly buffer X { float x[]; };
layout(binding = HK_MM_B_X) readonly buffer X4 { vec4 x4[]; };
layout(binding = HK_MM_B_Y) buffer Y { float y[]; };
layout(binding = HK_MM_B_NORM) readonly buffer Nw { float nw[]; };

layout(push_constant) uniform P {
    uint ncols, stride, nrows, row0, m, x_off, x_stride, y_off, y_stride;
    float eps;
} p;

layout(constant_id = 0) const uint FLAGS = 0u; // HK_F_* bits

#define W1(i) wa[i]
#define W4(i) wa4[i]
#define DQ32 dq32_a
#define WEL wel_a
#include "dequant.glsl"
#undef W1
#undef W4
#undef DQ32
#undef WEL
#define W1(i) wb[i]
#define W4(i) wb4[i]
#define DQ32 dq32_b
#define WEL wel_b
#include "dequant.glsl"

#ifndef USE_SUBGROUP
shared vec2 part[HK_WG];
#endif

// Sum of v over the HK_MV_LANES lanes of a row; valid in every one of them.
vec2 row_sum(vec2 v, uint lane)
{
#ifdef USE_SUBGROUP
    for (uint s = HK_MV_LANES / 2; s > 0u; s >>= 1)
        v += subgroupShuffleXor(v, s);
    return v;
#else
    uint l = gl_LocalInvocationIndex;
    part[l] = v;
    barrier();
    for (uint s = HK_MV_LANES / 2; s > 0u; s >>= 1) {
        if (lane < s)
            part[l] += part[l + s];
        barrier();
    }
    return part[l - lane];
#endif
}

void main()
{
#ifdef USE_SUBGROUP
    // Rows follow subgroups, so that a row's lanes are one subgroup's.
    uint lane = gl_SubgroupInvocationID % HK_MV_LANES;
    uint r = gl_WorkGroupID.x * (HK_WG / HK_MV_LANES) +
             gl_SubgroupID * (gl_SubgroupSize / HK_MV_LANES) + gl_SubgroupInvocationID / HK_MV_LANES;
#else
    uint lane = gl_LocalInvocationIndex % HK_MV_LANES;
    uint r = gl_WorkGroupID.x * (HK_WG / HK_MV_LANES) + gl_LocalInvocationIndex / HK_MV_LANES;
#endif
    bool live = r < p.nrows;
    bool norm = (FLAGS & HK_F_NORM) != 0u;
    bool glu = (FLAGS & (HK_F_SWIGLU | HK_F_GEGLU)) != 0u;
    uint xo = p.x_off >> 2;
    float ri = 1.0;
    if (norm) {
        vec4 s = vec4(0.0);
        uint n4 = p.ncols >> 2;
        for (uint i = 0u; i < n4; i++)
            s += x4[xo + i] * x4[xo + i];
        float ss = s.x + s.y + s.z + s.w;
        for (uint i = n4 * 4u; i < p.ncols; i++)
            ss += x[p.x_off + i] * x[p.x_off + i];
        ri = 1.0 / sqrt(ss / float(p.ncols) + p.eps);
    }
    vec2 acc = vec2(0.0);
    uint rb = (live ? r : 0u) * p.stride;
    uint nfull = p.ncols / HK_CHUNK;
    for (uint c = lane; live && c < nfull; c += HK_MV_LANES) {
        vec4 qa[8], qb[8];
        vec2 sa, ma, sb, mb;
        dq32_a(rb, c, p.ncols, qa, sa, ma);
        if (glu)
            dq32_b(rb, c, p.ncols, qb, sb, mb);
        vec4 xv[8];
        for (uint k = 0u; k < 8u; k++) {
            xv[k] = x4[xo + c * 8u + k];
            if (norm) {
                uint i = c * 32u + 4u * k;
                xv[k] = xv[k] * ri * vec4(nw[i], nw[i + 1u], nw[i + 2u], nw[i + 3u]);
            }
        }
        float d0 = dot(qa[0], xv[0]) + dot(qa[1], xv[1]) + dot(qa[2], xv[2]) + dot(qa[3], xv[3]);
        float d1 = dot(qa[4], xv[4]) + dot(qa[5], xv[5]) + dot(qa[6], xv[6]) + dot(qa[7], xv[7]);
        acc.x += sa.x * d0 + sa.y * d1;
#ifdef HAS_MIN
        vec4 xs0 = xv[0] + xv[1] + xv[2] + xv[3];
        vec4 xs1 = xv[4] + xv[5] + xv[6] + xv[7];
        float sx0 = xs0.x + xs0.y + xs0.z + xs0.w, sx1 = xs1.x + xs1.y + xs1.z + xs1.w;
        acc.x += ma.x * sx0 + ma.y * sx1;
#endif
        if (glu) {
            float e0 = dot(qb[0], xv[0]) + dot(qb[1], xv[1]) + dot(qb[2], xv[2]) + dot(qb[3], xv[3]);
            float e1 = dot(qb[4], xv[4]) + dot(qb[5], xv[5]) + dot(qb[6], xv[6]) + dot(qb[7], xv[7]);
            acc.y += sb.x * e0 + sb.y * e1;
#ifdef HAS_MIN
            acc.y += mb.x * sx0 + mb.y * sx1;
#endif
        }
    }
#ifdef HAS_TAIL
    for (uint i = nfull * HK_CHUNK + lane; live && i < p.ncols; i += HK_MV_LANES) {
        float xv = x[p.x_off + i];
        if (norm)
            xv = xv * ri * nw[i];
        acc.x += wel_a(rb, i) * xv;
        if (glu)
            acc.y += wel_b(rb, i) * xv;
    }
#endif
    acc = row_sum(acc, lane);
    if (!live || lane != 0u)
        return;
    float v = acc.x;
    if ((FLAGS & HK_F_SWIGLU) != 0u)
        v = silu(v) * acc.y;
    else if ((FLAGS & HK_F_GEGLU) != 0u)
        v = gelu_tanh(v) * acc.y;
    uint yi = p.y_off + p.row0 + r;
    if ((FLAGS & HK_F_ACC) != 0u)
        v += y[yi];
    y[yi] = v;
}
