// hinge: the row products of the kernels shaped for GPUs (matvec.comp,
// qkv_rope.comp's split flavour): HK_MV_LANES lanes share a row and take its
// chunks in turn, so that neighbouring lanes read neighbouring bytes; the
// lanes of a row meet through subgroup shuffles (USE_SUBGROUP) or shared
// memory. One position (decode).
//
// The includer declares the push block `p` with at least ncols, x_off and
// eps, and includes common.glsl first. Bindings: HK_MM_B_* (storage
// buffers). split_prologue() first (every invocation); then
// split_dot(rb, lane) is this lane's share of the row at word rb of W (and
// of W2 for the GLU flags) times the input; row_sum() adds the shares.
//
// Flags (specialization constant 0): as rows_dot.glsl.
#ifndef HINGE_SPLIT_DOT_GLSL
#define HINGE_SPLIT_DOT_GLSL

#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x = HK_WG) in;

#ifndef T2
#define T2_NONE 1 // (T2 reads as 0 in #if: no second type)
#endif

layout(binding = HK_MM_B_W) readonly buffer Wa { uint wa[]; };
layout(binding = HK_MM_B_W) readonly buffer Wa4 { uvec4 wa4[]; };
layout(binding = HK_MM_B_W2) readonly buffer Wb { uint wb[]; };
layout(binding = HK_MM_B_W2) readonly buffer Wb4 { uvec4 wb4[]; };
layout(binding = HK_MM_B_X) readonly buffer X { float x[]; };
layout(binding = HK_MM_B_X) readonly buffer X4 { vec4 x4[]; };
layout(binding = HK_MM_B_Y) buffer Y { float y[]; };
layout(binding = HK_MM_B_NORM) readonly buffer Nw { float nw[]; };
layout(binding = HK_MM_B_RO) readonly buffer Ro { float ro_[]; };
layout(binding = HK_MM_B_RW) readonly buffer Rw { float rw[]; };
layout(binding = HK_MM_B_XOUT) writeonly buffer Xe { float xe[]; };

layout(constant_id = 0) const uint FLAGS = 0u; // HK_F_* bits
// Chunks of the normed input the workgroup stages in shared memory once
// (its rows read them there); 0: every row prepares its input anew.
layout(constant_id = 1) const uint XC = 0u;
const uint XC1 = XC > 0u ? XC : 1u;
const bool RESNORM = (FLAGS & HK_F_RESNORM) != 0u;
const bool NORM = (FLAGS & HK_F_NORM) != 0u || RESNORM;
const bool GLU = (FLAGS & (HK_F_SWIGLU | HK_F_GEGLU)) != 0u;

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
#ifndef T2_NONE
#define DQ_T T2 // qkv_rope.comp: the second matrix (V) has a type of its own
#endif
#define DQ_SUB SUB_B
#include "dequant.glsl"
#undef W1
#undef W4
#undef DQ32
#undef WEL

float ro; // 1 / rms of o (HK_F_RESNORM)
float ri; // 1 / rms of the input x, or of x + norm(o) * rw (HK_F_RESNORM)
shared vec4 xs4[XC1 * 8u]; // XC > 0: the normed input's first XC chunks
shared float sum_s[HK_WG];

// Element i of the residual the product reads: x, or x + o / rms(o) * rw in
// model/forward.c's order of operations.
float res1(uint i)
{
    float v = x[p.x_off + i];
    if (RESNORM)
        v += ro_[p.x_off + i] * ro * rw[i];
    return v;
}

// Element i of the product's input.
float xin1(uint i)
{
    float v = res1(i);
    return NORM ? v * ri * nw[i] : v;
}

// Sum of v over the workgroup, in every invocation (a shared-memory tree:
// no subgroup arithmetic needed). Every invocation calls it.
float wg_sum_s(float v)
{
    uint l = gl_LocalInvocationIndex;
    barrier();
    sum_s[l] = v;
    barrier();
    for (uint s = HK_WG / 2; s > 0u; s >>= 1) {
        if (l < s)
            sum_s[l] += sum_s[l + s];
        barrier();
    }
    return sum_s[0];
}

// ro and ri, the invocations of the workgroup sharing the sums; with
// HK_F_RESNORM workgroup 0 stores the residual into x_out; with XC the
// normed input into shared memory. Every invocation calls it.
void split_prologue()
{
    uint l = gl_LocalInvocationIndex;
    ro = 1.0;
    ri = 1.0;
    if (RESNORM) {
        float s = 0.0;
        for (uint i = l; i < p.ncols; i += HK_WG)
            s += ro_[p.x_off + i] * ro_[p.x_off + i];
        ro = 1.0 / sqrt(wg_sum_s(s) / float(p.ncols) + p.eps);
        if (gl_WorkGroupID.x == 0u)
            for (uint i = l; i < p.ncols; i += HK_WG)
                xe[p.x_off + i] = res1(i);
    }
    if (NORM) {
        float s = 0.0;
        for (uint i = l; i < p.ncols; i += HK_WG)
            s += res1(i) * res1(i);
        ri = 1.0 / sqrt(wg_sum_s(s) / float(p.ncols) + p.eps);
    }
    if (XC > 0u) {
        for (uint i4 = l; i4 < XC * 8u; i4 += HK_WG)
            xs4[i4] = vec4(xin1(4u * i4), xin1(4u * i4 + 1u), xin1(4u * i4 + 2u), xin1(4u * i4 + 3u));
        barrier();
    }
}

// This lane's share of (W row . input, W2 row . input); rb: the row's first
// word; second: the row is W2's, a product of its own (qkv_rope.comp's V
// rows; T2's type when defined).
vec2 split_dot(uint rb, uint lane, bool second)
{
    vec2 acc = vec2(0.0);
    uint nfull = p.ncols / HK_CHUNK;
    uint xo = p.x_off >> 2;
    for (uint c = lane; c < nfull; c += HK_MV_LANES) {
        vec4 qa[8], qb[8];
        vec2 sa, ma, sb, mb;
        if (second)
            dq32_b(rb, c, p.ncols, qa, sa, ma);
        else
            dq32_a(rb, c, p.ncols, qa, sa, ma);
        if (GLU)
            dq32_b(rb, c, p.ncols, qb, sb, mb);
        vec4 xv[8];
        for (uint k = 0u; k < 8u; k++) {
            uint i = c * 32u + 4u * k;
            if (XC > 0u)
                xv[k] = xs4[c * 8u + k];
            else if (NORM)
                xv[k] = vec4(xin1(i), xin1(i + 1u), xin1(i + 2u), xin1(i + 3u));
            else
                xv[k] = x4[xo + c * 8u + k];
        }
        float d0 = dot(qa[0], xv[0]) + dot(qa[1], xv[1]) + dot(qa[2], xv[2]) + dot(qa[3], xv[3]);
        float d1 = dot(qa[4], xv[4]) + dot(qa[5], xv[5]) + dot(qa[6], xv[6]) + dot(qa[7], xv[7]);
        float sx0 = 0.0, sx1 = 0.0;
        if (MIN_A || MIN_B) {
            vec4 xs0 = xv[0] + xv[1] + xv[2] + xv[3];
            vec4 xs1 = xv[4] + xv[5] + xv[6] + xv[7];
            sx0 = xs0.x + xs0.y + xs0.z + xs0.w;
            sx1 = xs1.x + xs1.y + xs1.z + xs1.w;
        }
        acc.x += sa.x * d0 + sa.y * d1;
        if (MIN_A || MIN_B)
            acc.x += ma.x * sx0 + ma.y * sx1; // (0 for the type without a minimum)
        if (GLU) {
            float e0 = dot(qb[0], xv[0]) + dot(qb[1], xv[1]) + dot(qb[2], xv[2]) + dot(qb[3], xv[3]);
            float e1 = dot(qb[4], xv[4]) + dot(qb[5], xv[5]) + dot(qb[6], xv[6]) + dot(qb[7], xv[7]);
            acc.y += sb.x * e0 + sb.y * e1;
            if (MIN_B)
                acc.y += mb.x * sx0 + mb.y * sx1;
        }
    }
#if WT == TY_F32 || WT == TY_F16
    for (uint i = nfull * HK_CHUNK + lane; !second && i < p.ncols; i += HK_MV_LANES) {
        float xv = xin1(i);
        acc.x += wel_a(rb, i) * xv;
#ifdef T2_NONE
        if (GLU)
            acc.y += wel_b(rb, i) * xv;
#endif
    }
#endif
#if T2 == TY_F32 || T2 == TY_F16
    for (uint i = nfull * HK_CHUNK + lane; second && i < p.ncols; i += HK_MV_LANES)
        acc.x += wel_b(rb, i) * xin1(i);
#endif
    return acc;
}

#ifndef USE_SUBGROUP
shared vec2 part[HK_WG];
#endif

// Sum of v over the HK_MV_LANES lanes of a row; valid in every one of them.
// Every invocation of the workgroup calls it (shared memory: barriers).
vec2 row_sum(vec2 v, uint lane)
{
#ifdef USE_SUBGROUP
    for (uint s = HK_MV_LANES / 2; s > 0u; s >>= 1)
        v += subgroupShuffleXor(v, s);
    return v;
#else
    uint l = gl_LocalInvocationIndex;
    barrier();
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

#endif
