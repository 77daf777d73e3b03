#version 450
#extension GL_GOOGLE_include_directive : require
// hinge: y = W x with one invocation per weight row, each carrying MM_POS
// positions (MM_POS 1: the decode matvec for CPU-like devices, where loads
// that every lane shares are cheap and per-lane loads are not; MM_POS
// HK_MM_POS: prefill, by default: specialization constant 3, 1, 2 or 4 for
// fewer rows). Each chunk of weights is decoded once and used for all
// MM_POS positions; a position's arithmetic does not depend on MM_POS
// (rows_dot.glsl's positions contract). Grid: (ceil(nrows / HK_WG),
// ceil(m / MM_POS)).
//
// Flags (the specialization constant FLAGS): HK_F_NORM (x rms-normed with
// the weight at HK_MM_B_NORM first), HK_F_RESNORM (the same norm of
// x + norm(o) * rw; workgroup (0, y) stores that into x_out), HK_F_SWIGLU /
// HK_F_GEGLU (y = act(W x) * (W2 x)), HK_F_ACC (y += ...).
#include "common.glsl"

#ifndef MM_POS
layout(constant_id = 3) const uint MM_POS_SPEC = HK_MM_POS;
#define MM_POS MM_POS_SPEC
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
layout(binding = HK_MM_B_RO) readonly buffer Ro { float ro_[]; };
layout(binding = HK_MM_B_RW) readonly buffer Rw { float rw[]; };
layout(binding = HK_MM_B_XOUT) writeonly buffer Xe { float xe[]; };

layout(push_constant) uniform P {
    uint ncols;    // weights per row
    uint stride;   // words per device row
    uint nrows;    // rows bound at HK_MM_B_W
    uint row0;     // matrix row of the first bound row (y index)
    uint m;        // positions
    uint x_off;    // floats; multiple of 4
    uint x_stride; // floats between positions; multiple of 4
    uint y_off;    // floats
    uint y_stride; // floats between positions
    float eps;     // for HK_F_NORM
} p;

// HK_F_* bits, fixed when the pipeline is made: a branch on them costs
// nothing at run time (on CPU devices a run-time branch runs both sides).
layout(constant_id = 0) const uint FLAGS = 0u;

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
#define DQ_SUB SUB_B
#include "dequant.glsl"

const bool RESNORM = (FLAGS & HK_F_RESNORM) != 0u;

// Element i of position j's residual (xb = its first float): x, or with
// HK_F_RESNORM x + o / rms(o) * rw (model/forward.c's order of operations).
float res1(uint xb, float ro, uint i)
{
    float v = x[xb + i];
    if (RESNORM)
        v += ro_[xb + i] * ro * rw[i];
    return v;
}

// 1 / rms of position j's x, or of its o (of_o), or of its residual (uniform
// across the workgroup). With HK_F_RESNORM workgroup (0, y) stores the
// residual into x_out.
float rms_inv(uint j, bool of_o, float ro)
{
    uint xb = p.x_off + j * p.x_stride;
    vec4 s = vec4(0.0);
    uint n4 = p.ncols >> 2;
    for (uint i = 0u; i < n4; i++) {
        vec4 v = of_o ? vec4(ro_[xb + 4u * i], ro_[xb + 4u * i + 1u], ro_[xb + 4u * i + 2u], ro_[xb + 4u * i + 3u])
                      : RESNORM ? vec4(res1(xb, ro, 4u * i), res1(xb, ro, 4u * i + 1u), res1(xb, ro, 4u * i + 2u),
                                       res1(xb, ro, 4u * i + 3u))
                                : x4[(xb >> 2) + i];
        s += v * v;
    }
    float ss = s.x + s.y + s.z + s.w;
    for (uint i = n4 * 4u; i < p.ncols; i++) {
        float v = of_o ? ro_[xb + i] : res1(xb, ro, i);
        ss += v * v;
    }
    if (RESNORM && !of_o && gl_WorkGroupID.x == 0u)
        for (uint i = gl_LocalInvocationIndex; i < p.ncols; i += HK_WG)
            xe[xb + i] = res1(xb, ro, i);
    return 1.0 / sqrt(ss / float(p.ncols) + p.eps);
}

void main()
{
    uint r = gl_GlobalInvocationID.x;
    uint j0 = gl_WorkGroupID.y * MM_POS;
    bool norm = (FLAGS & (HK_F_NORM | HK_F_RESNORM)) != 0u;
    bool glu = (FLAGS & (HK_F_SWIGLU | HK_F_GEGLU)) != 0u;
    uint xo[MM_POS];
    float ro[MM_POS], ri[MM_POS];
    float acc[MM_POS], acc2[MM_POS];
    [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
        uint j = min(j0 + t, p.m - 1u); // past the end: repeat the last, never stored
        xo[t] = (p.x_off + j * p.x_stride) >> 2;
        ro[t] = RESNORM ? rms_inv(j, true, 1.0) : 1.0;
        ri[t] = norm ? rms_inv(j, false, ro[t]) : 1.0; // (before the return: workgroup 0 stores x_out)
        acc[t] = 0.0;
        acc2[t] = 0.0;
    }
    if (r >= p.nrows || j0 >= p.m)
        return;
    uint rb = r * p.stride;
    uint nfull = p.ncols / HK_CHUNK;
    for (uint c = 0u; c < nfull; c++) {
        vec4 qa[8], qb[8];
        vec2 sa, ma, sb, mb;
        dq32_a(rb, c, p.ncols, qa, sa, ma);
        if (glu)
            dq32_b(rb, c, p.ncols, qb, sb, mb);
        vec4 nv[8];
        if (norm)
            [[unroll]] for (uint k = 0u; k < 8u; k++)
                nv[k] = vec4(nw[c * 32u + 4u * k], nw[c * 32u + 4u * k + 1u], nw[c * 32u + 4u * k + 2u],
                             nw[c * 32u + 4u * k + 3u]);
        [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
            vec4 xv[8];
            [[unroll]] for (uint k = 0u; k < 8u; k++) {
                uint i = c * 32u + 4u * k;
                vec4 xr = RESNORM ? vec4(res1(xo[t] << 2, ro[t], i), res1(xo[t] << 2, ro[t], i + 1u),
                                         res1(xo[t] << 2, ro[t], i + 2u), res1(xo[t] << 2, ro[t], i + 3u))
                                  : x4[xo[t] + c * 8u + k];
                xv[k] = norm ? xr * ri[t] * nv[k] : xr;
            }
            float d0 = dot(qa[0], xv[0]) + dot(qa[1], xv[1]) + dot(qa[2], xv[2]) + dot(qa[3], xv[3]);
            float d1 = dot(qa[4], xv[4]) + dot(qa[5], xv[5]) + dot(qa[6], xv[6]) + dot(qa[7], xv[7]);
            acc[t] += sa.x * d0 + sa.y * d1;
#ifdef MAY_MIN
            float sx0 = 0.0, sx1 = 0.0;
            if (MIN_A) {
                vec4 xs0 = xv[0] + xv[1] + xv[2] + xv[3];
                vec4 xs1 = xv[4] + xv[5] + xv[6] + xv[7];
                sx0 = xs0.x + xs0.y + xs0.z + xs0.w;
                sx1 = xs1.x + xs1.y + xs1.z + xs1.w;
                acc[t] += ma.x * sx0 + ma.y * sx1;
            }
#endif
            if (glu) {
                float e0 = dot(qb[0], xv[0]) + dot(qb[1], xv[1]) + dot(qb[2], xv[2]) + dot(qb[3], xv[3]);
                float e1 = dot(qb[4], xv[4]) + dot(qb[5], xv[5]) + dot(qb[6], xv[6]) + dot(qb[7], xv[7]);
                acc2[t] += sb.x * e0 + sb.y * e1;
#ifdef MAY_MIN
                if (MIN_B) // (W2 has W's type and sub-layout: MIN_A, so the sums are made)
                    acc2[t] += mb.x * sx0 + mb.y * sx1;
#endif
            }
        }
    }
#ifdef HAS_TAIL
    for (uint i = nfull * HK_CHUNK; i < p.ncols; i++) {
        float wv = wel_a(rb, i);
        float wu = glu ? wel_b(rb, i) : 0.0;
        [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
            float xv = res1(xo[t] << 2, ro[t], i);
            if (norm)
                xv = xv * ri[t] * nw[i];
            acc[t] += wv * xv;
            acc2[t] += wu * xv;
        }
    }
#endif
    [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
        if (j0 + t >= p.m)
            break;
        float v = acc[t];
        if ((FLAGS & HK_F_SWIGLU) != 0u)
            v = silu(v) * acc2[t];
        else if ((FLAGS & HK_F_GEGLU) != 0u)
            v = gelu_tanh(v) * acc2[t];
        uint yi = p.y_off + (j0 + t) * p.y_stride + p.row0 + r;
        if ((FLAGS & HK_F_ACC) != 0u)
            v += y[yi];
        y[yi] = v;
    }
}
