#version 450
#extension GL_GOOGLE_include_directive : require
#ifndef SPLIT
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif
// hinge: the decode step's attention input in one dispatch: the q | k | v
// product of the normed residual, then per head the q/k norms (gemma3),
// RoPE, and k and v into the caches' row of the position, as model/forward.c
// attention_block + qk_prepare do (op_rmsnorm, quant_matvec, op_rope). This
// is what rmsnorm + the product + rope_kv.comp do in three dispatches.
//
// A workgroup owns whole heads: hpw heads of head_dim rows (hpw =
// HK_WG / head_dim for heads that divide HK_WG, else 1), head slots
// [0, n_head) q, then n_head_kv k, then n_head_kv v heads (head_dim_v =
// head_dim). It computes its rows into shared memory pass by pass (HK_WG
// rows a pass one per invocation in the rows flavour, rows_dot.glsl, for
// CPU devices; HK_WG / HK_MV_LANES rows a pass in the SPLIT flavour,
// split_dot.glsl, for GPUs), then each head's invocations norm, rotate and
// store it. Rows from `split` on are read from W2, a matrix of a second
// type T2 (Q4_K_M files keep V in more bits); split is a multiple of a
// workgroup's rows, so a workgroup reads one type.
//
// One position: the decode step's, pos0 plus the uint at HK_QR_B_POS.
// Flags (specialization constant 0): HK_F_NORM or HK_F_RESNORM (the
// input), HK_F_QKNORM, HK_F_NEOX. Grid (ceil(heads / hpw), 1).
#include "common.glsl"

layout(push_constant) uniform P {
    uint ncols;          // n_embd: weights per row
    uint stride;         // words per device row of W
    uint stride2;        // of W2
    uint split;          // first row read from W2 (W2's row 0); nrows: none
    uint nrows;          // rows of q | k | v
    uint m;              // positions: 1
    uint x_off, x_stride; // floats (x, o and x_out alike)
    uint n_head, n_head_kv, head_dim, rope_dim, hpw;
    uint q_off;          // q head h at q_off + h * head_dim of Y
    uint pos0;           // plus the uint at HK_QR_B_POS
    float pos_scale;     // positions are divided by this
    float eps;
} p;

#ifdef SPLIT
#include "split_dot.glsl"
#else
#define MM_POS 1
#include "rows_dot.glsl"
#endif
#include "rope.glsl"

layout(binding = HK_QR_B_KC) writeonly buffer K { float kc[]; };
layout(binding = HK_QR_B_VC) writeonly buffer V { float vc[]; };
layout(binding = HK_QR_B_QNORM) readonly buffer QN { float qn[]; };
layout(binding = HK_QR_B_KNORM) readonly buffer KN { float kn[]; };
layout(binding = HK_QR_B_FREQ) readonly buffer F { float freq[]; };
layout(binding = HK_QR_B_POS) readonly buffer Pos { uint posb[]; };

shared float hv[HK_MAX_HEAD_DIM]; // the workgroup's rows
shared float red[HK_WG];
#ifndef SPLIT
float ssq;      // sum of the squares of this invocation's rows (of one head)
float hvl[RPL]; // this invocation's rows: row k * HK_WG + its index
#endif

#ifndef SPLIT
// The rows of W2 (type T2, or the variant's): chunk by chunk.
void row_dot_second(uint rb)
{
    uint nfull = p.ncols / HK_CHUNK;
    vec4 qa[8], qb[8];
    vec2 sa, ma, sb = vec2(0.0), mb = vec2(0.0);
    for (uint c = 0u; c < nfull; c++) {
        dq32_b(rb, c, p.ncols, qa, sa, ma);
        accum(c, qa, sa, ma, qb, sb, mb);
    }
#if T2 == TY_F32 || T2 == TY_F16 || (T2 == 0 && (WT == TY_F32 || WT == TY_F16))
    for (uint i = nfull * HK_CHUNK; i < p.ncols; i++) {
        float xv = res1(0u, i);
        acc[0] += wel_b(rb, i) * (NORM ? xv * ri[0] * nw(i) : xv);
    }
#endif
}

// hv[0 .. R) = rows r0 .. r0 + R - 1 (clamped to the last row), RPL =
// ceil(R / HK_WG) rows per invocation (specialization constant 2).
// Row k * HK_WG + this invocation's index of the workgroup's rows.
float one_row(uint k, uint r0, uint R, bool second)
{
    uint rr = k * HK_WG + gl_LocalInvocationIndex;
    uint r = min(r0 + min(rr, R - 1u), p.nrows - 1u);
    acc[0] = 0.0;
    if (second)
        row_dot_second((r - p.split) * p.stride2);
    else
        row_dot(r * p.stride);
    if (rr < R)
        ssq += acc[0] * acc[0];
    if (rr < R && (FLAGS & HK_F_QKNORM) == 0u)
        hv[rr] = acc[0];
    return acc[0];
}

void rows(uint r0, uint R, bool second)
{
    prologue(0u);
    ssq = 0.0;
    // (unrolled up to 4 rows: llvmpipe keeps loops around the row, ~10%
    // slower; RPL is 1, 2, 4 or 8)
    if (RPL <= 4u) {
        hvl[0] = one_row(0u, r0, R, second);
        if (RPL > 1u)
            hvl[1 % RPL] = one_row(1u, r0, R, second);
        if (RPL > 2u) {
            hvl[2 % RPL] = one_row(2u, r0, R, second);
            hvl[3 % RPL] = one_row(3u, r0, R, second);
        }
        return;
    }
    for (uint k = 0u; k < RPL; k++)
        hvl[k] = one_row(k, r0, R, second);
}

// The sum of the squares of the head's rows, lph invocations a head: in
// registers (heads within a group of 8: shuffles), else groups of 8 meeting
// in shared memory. (llvmpipe loads shared memory lane by lane: a loop over
// a head's 64 partial sums costs more than its product.)
float head_ssq(uint lph, uint hh)
{
    float t = ssq;
    if (lph <= 8u) {
        for (uint s = 1u; s < lph; s <<= 1)
            t += subgroupShuffleXor(t, s);
        return t;
    }
    t = sum8(t);
    if (lane == 0u)
        red[gl_LocalInvocationIndex >> 3] = t;
    barrier();
    t = 0.0;
    for (uint k = 0u; k < lph / 8u; k++)
        t += red[hh * (lph / 8u) + k];
    return t;
}
#else
void rows(uint r0, uint R, bool second)
{
    split_prologue();
#ifdef USE_SUBGROUP
    uint lane = gl_SubgroupInvocationID % HK_MV_LANES;
    uint sub = gl_SubgroupID * (gl_SubgroupSize / HK_MV_LANES) + gl_SubgroupInvocationID / HK_MV_LANES;
#else
    uint lane = gl_LocalInvocationIndex % HK_MV_LANES;
    uint sub = gl_LocalInvocationIndex / HK_MV_LANES;
#endif
    for (uint b = 0u; b < R; b += HK_WG / HK_MV_LANES) {
        uint rr = b + sub;
        uint r = min(r0 + min(rr, R - 1u), p.nrows - 1u);
        vec2 a = split_dot(second ? (r - p.split) * p.stride2 : r * p.stride, lane, second);
        a = row_sum(a, lane);
        if (lane == 0u && rr < R)
            hv[rr] = a.x;
    }
}
#endif

void main()
{
    uint hd = p.head_dim, R = p.hpw * hd;
    uint r0 = gl_WorkGroupID.x * R;
    rows(r0, R, r0 >= p.split);
    barrier();

    // Each head's invocations: lph of them, li the index among them.
    uint l = gl_LocalInvocationIndex;
    uint lph = HK_WG / p.hpw, hh = l / lph, li = l - hh * lph, hb = hh * hd;
    uint nq = p.n_head, nk = p.n_head_kv;
    uint gh = gl_WorkGroupID.x * p.hpw + hh; // head slot
    bool live = gh < nq + 2u * nk, isq = gh < nq, isk = !isq && gh < nq + nk;
    if ((FLAGS & HK_F_QKNORM) != 0u) { // op_rmsnorm of each q and k head
#ifdef SPLIT
        float ss = 0.0;
        for (uint i = li; i < hd; i += lph)
            ss += hv[hb + i] * hv[hb + i];
        red[l] = ss;
        barrier();
        float tot = 0.0;
        for (uint k = 0u; k < lph; k++)
            tot += red[hh * lph + k];
        float inv = 1.0 / sqrt(tot / float(hd) + p.eps);
        if (isq || isk)
            for (uint i = li; i < hd; i += lph)
                hv[hb + i] = hv[hb + i] * inv * (isq ? qn[i] : kn[i]);
        barrier();
#else
        // the invocation's rows, normed in registers, into shared memory
        float inv = 1.0 / sqrt(head_ssq(lph, hh) / float(hd) + p.eps);
        [[unroll]] for (uint k = 0u; k < RPL; k++) {
            uint rr = k * HK_WG + l, i = rr - hb;
            float w = isq ? qn[i < hd ? i : 0u] : isk ? kn[i < hd ? i : 0u] : 1.0;
            if (rr < R)
                hv[rr] = isq || isk ? hvl[k] * inv * w : hvl[k];
        }
        barrier();
#endif
    }
    // RoPE (op_rope) and the stores
    uint pos = p.pos0 + posb[0];
    float pp = p.pos_scale == 1.0 ? float(pos) : float(pos) / p.pos_scale;
    uint half_ = p.rope_dim / 2u;
    bool neox = (FLAGS & HK_F_NEOX) != 0u;
    for (uint i = li; live && i < hd; i += lph) {
        float v = hv[hb + i];
        if (!isq && !isk) {
            vc[pos * nk * hd + (gh - nq - nk) * hd + i] = v;
            continue;
        }
        if (i < p.rope_dim) {
            uint pi = neox ? (i < half_ ? i : i - half_) : i >> 1;
            bool first = neox ? i < half_ : (i & 1u) == 0u;
            uint a = neox ? pi : 2u * pi, b = neox ? pi + half_ : 2u * pi + 1u;
            vec2 cs = cos_sin(pp * freq[pi]);
            float x0 = hv[hb + a], x1 = hv[hb + b];
            v = first ? x0 * cs.x - x1 * cs.y : x0 * cs.y + x1 * cs.x;
        }
        if (isq)
            y[p.q_off + gh * hd + i] = v;
        else
            kc[pos * nk * hd + (gh - nq) * hd + i] = v;
    }
}
