#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// hinge: y = W x for CPU devices (lavapipe): one weight row per invocation,
// each carrying MM_POS positions (1: decode; HK_MM_POS: prefill), as
// matmul.comp computes it, shaped for llvmpipe.
//
// llvmpipe runs a subgroup as one SIMD register, and a storage-buffer load
// whose address is not a push-constant expression becomes a loop over the
// lanes, one scalar load per lane and component: loads, not arithmetic, set
// the pace. So:
//  - weights and x are uniform texel buffers of 16-byte texels, which
//    llvmpipe fetches with vector gathers (half the CPU cycles of a Gemma 3
//    270M decode step against storage buffers, measured with perf);
//  - x is shared through the subgroup: lane i of each 8 reads vec4 i of a
//    32-weight chunk and the lanes swap them with subgroupShuffle (register
//    moves), one vec4 per lane per chunk and position instead of eight. The
//    rms of x (HK_F_NORM) is summed the same way.
//  - weights are read in the widest aligned pieces their layout allows
//    (kernel_abi.h), each once: q4_k and q6_k a 256-weight block at a time
//    (scales once per block, each quant word once), q5_0 four chunks at a
//    time (their high bits in one uvec4), the rest a chunk at a time.
//
// Needs subgroup shuffles and arithmetic in subgroups of >= 8 consecutive
// invocations. Every lane runs every iteration (the shuffles need them all):
// rows past the end repeat the last row and are not stored, positions past m
// repeat the last and are not stored. Grid: (ceil(nrows / HK_WG),
// ceil(m / MM_POS)). Flags (specialization constant), bindings and push
// block as matmul.comp.
#include "common.glsl"

// The block paths below write q5_0 and q6_k weights as sc * q + mn with
// unsigned q (the offset -16 or -32 folded into mn), like q4_k's minimum.
#if defined(T_Q4_K) || defined(T_Q5_0) || defined(T_Q6_K)
#define ROWS_MIN 1
#endif

#ifndef MM_POS
#define MM_POS 1
#endif

layout(local_size_x = HK_WG) in;

// weights and x: uniform texel buffers (16-byte texels; see the top)
layout(binding = HK_MM_B_W) uniform usamplerBuffer wt_a;
layout(binding = HK_MM_B_W2) uniform usamplerBuffer wt_b;
layout(binding = HK_MM_B_X) uniform samplerBuffer xt;
layout(binding = HK_MM_B_Y) buffer Y { float y[]; };
layout(binding = HK_MM_B_NORM) readonly buffer Nw { float nw[]; };
layout(binding = HK_MM_B_NORM) readonly buffer Nw4 { vec4 nw4[]; };

layout(push_constant) uniform P {
    uint ncols, stride, nrows, row0, m, x_off, x_stride, y_off, y_stride;
    float eps;
} p;

layout(constant_id = 0) const uint FLAGS = 0u; // HK_F_* bits
const bool NORM = (FLAGS & HK_F_NORM) != 0u;
const bool GLU = (FLAGS & (HK_F_SWIGLU | HK_F_GEGLU)) != 0u;

uvec4 wa4(uint i) { return texelFetch(wt_a, int(i)); }
uvec4 wb4(uint i) { return texelFetch(wt_b, int(i)); }
uint wa(uint i) { return wa4(i >> 2)[i & 3u]; }
uint wb(uint i) { return wb4(i >> 2)[i & 3u]; }
vec4 x4(uint i) { return texelFetch(xt, int(i)); }
float x(uint i) { return x4(i >> 2)[i & 3u]; }

#define W1(i) wa(i)
#define W4(i) wa4(i)
#define DQ32 dq32_a
#define WEL wel_a
#include "dequant.glsl"
#undef W1
#undef W4
#undef DQ32
#undef WEL
#define W1(i) wb(i)
#define W4(i) wb4(i)
#define DQ32 dq32_b
#define WEL wel_b
#include "dequant.glsl"

uint lane;             // which vec4 of a chunk this lane fetches
uint sgb;              // first lane of this lane's group of 8 in the subgroup
uint xo[MM_POS];       // vec4 index of each position's x
float ri[MM_POS];      // 1 / rms of each position's x (HK_F_NORM)
float acc[MM_POS], acc2[MM_POS];

// Lane k's v in this lane's group of 8. With subgroups of exactly 8 (the
// usual CPU device; the condition folds when the pipeline is compiled) the
// index is a constant, which llvmpipe shuffles ~10% faster than a per-lane
// one (and subgroupBroadcast, oddly, 2.5 times slower: measured).
#define SHARE8(v, k) subgroupShuffle(v, (gl_SubgroupSize == 8u ? 0u : sgb) + (k))

float rms_inv(uint o4)
{
    uint n4 = (p.ncols / HK_CHUNK) * 8u;
    vec4 s = vec4(0.0);
    for (uint i = lane; i < n4; i += 8u)
        s += x4(o4 + i) * x4(o4 + i);
    float ss = s.x + s.y + s.z + s.w;
    for (uint i = n4 * 4u + lane; i < p.ncols; i += 8u)
        ss += x(4u * o4 + i) * x(4u * o4 + i);
    // each group of 8 lanes holds the whole sum: divide out the copies
    ss = subgroupAdd(ss) * (8.0 / float(gl_SubgroupSize));
    return 1.0 / sqrt(ss / float(p.ncols) + p.eps);
}

// acc[t] += chunk c of W . x (weight 4k+i of the chunk: sa[k/4] * qa[k][i] +
// ma[k/4]), and acc2[t] the same for W2, for every position t.
void accum(uint c, vec4 qa[8], vec2 sa, vec2 ma, vec4 qb[8], vec2 sb, vec2 mb)
{
    [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
        vec4 mine = x4(xo[t] + c * 8u + lane);
        if (NORM)
            mine = mine * ri[t] * nw4[c * 8u + lane];
        vec4 xv[8];
        xv[0] = SHARE8(mine, 0u);
        xv[1] = SHARE8(mine, 1u);
        xv[2] = SHARE8(mine, 2u);
        xv[3] = SHARE8(mine, 3u);
        xv[4] = SHARE8(mine, 4u);
        xv[5] = SHARE8(mine, 5u);
        xv[6] = SHARE8(mine, 6u);
        xv[7] = SHARE8(mine, 7u);
        float d0 = dot(qa[0], xv[0]) + dot(qa[1], xv[1]) + dot(qa[2], xv[2]) + dot(qa[3], xv[3]);
        float d1 = dot(qa[4], xv[4]) + dot(qa[5], xv[5]) + dot(qa[6], xv[6]) + dot(qa[7], xv[7]);
        acc[t] += sa.x * d0 + sa.y * d1;
#ifdef ROWS_MIN
        vec4 xs0 = xv[0] + xv[1] + xv[2] + xv[3];
        vec4 xs1 = xv[4] + xv[5] + xv[6] + xv[7];
        float sx0 = xs0.x + xs0.y + xs0.z + xs0.w, sx1 = xs1.x + xs1.y + xs1.z + xs1.w;
        acc[t] += ma.x * sx0 + ma.y * sx1;
#endif
        if (GLU) {
            float e0 = dot(qb[0], xv[0]) + dot(qb[1], xv[1]) + dot(qb[2], xv[2]) + dot(qb[3], xv[3]);
            float e1 = dot(qb[4], xv[4]) + dot(qb[5], xv[5]) + dot(qb[6], xv[6]) + dot(qb[7], xv[7]);
            acc2[t] += sb.x * e0 + sb.y * e1;
#ifdef ROWS_MIN
            acc2[t] += mb.x * sx0 + mb.y * sx1;
#endif
        }
    }
}

// ---- whole-block decoders (the arithmetic of dequant.glsl, loads hoisted) ----

// q4_k: block header (d | dmin << 16, scale bytes 0..11) -> the 8 sub-blocks'
// scales d * sc and mins -(dmin * m), as get_scale_min_k4.
void q4k_scales(uvec4 hdr, out vec4 sc[2], out vec4 mn[2])
{
    vec2 dm = unpackHalf2x16(hdr.x);
    [[unroll]] for (uint s = 0u; s < 8u; s++) {
        uint j = s & 3u;
        uint b_j = (hdr.y >> (8u * j)) & 0xFFu, b_j4 = (hdr.z >> (8u * j)) & 0xFFu;
        uint b_j8 = (hdr.w >> (8u * j)) & 0xFFu;
        uint scl = s < 4u ? b_j & 63u : (b_j8 & 0xFu) | ((b_j >> 6) << 4);
        uint mnv = s < 4u ? b_j4 & 63u : (b_j8 >> 4) | ((b_j4 >> 6) << 4);
        sc[s >> 2][s & 3u] = dm.x * float(scl);
        mn[s >> 2][s & 3u] = -(dm.y * float(mnv));
    }
}

void nib8(uvec4 w0, uvec4 w1, uint sh, out vec4 q[8])
{
    q[0] = nib4(w0.x, sh); q[1] = nib4(w0.y, sh); q[2] = nib4(w0.z, sh); q[3] = nib4(w0.w, sh);
    q[4] = nib4(w1.x, sh); q[5] = nib4(w1.y, sh); q[6] = nib4(w1.z, sh); q[7] = nib4(w1.w, sh);
}

// The four bytes of v as floats. The quants are put together in bytes with
// whole-word integer operations first: in SoA form every scalar operation
// is one SIMD instruction, and per-component shifts cost four.
vec4 bytes4(uint v)
{
    return vec4(uvec4(v, v >> 8, v >> 16, v >> 24) & 0xFFu);
}

// q6_k: chunk g of a half block, unsigned (0..63: the -32 goes into the
// minimum): low quants l0, l1 at nibble shift sh, high bits h0, h1 at shift
// hs.
uint q6k_word(uint l, uint h, uint sh, uint hs)
{
    return ((l >> sh) & 0x0F0F0F0Fu) | (((h >> hs) & 0x03030303u) << 4);
}

void q6k_quants(uvec4 l0, uvec4 l1, uvec4 h0, uvec4 h1, uint sh, uint hs, out vec4 q[8])
{
    q[0] = bytes4(q6k_word(l0.x, h0.x, sh, hs));
    q[1] = bytes4(q6k_word(l0.y, h0.y, sh, hs));
    q[2] = bytes4(q6k_word(l0.z, h0.z, sh, hs));
    q[3] = bytes4(q6k_word(l0.w, h0.w, sh, hs));
    q[4] = bytes4(q6k_word(l1.x, h1.x, sh, hs));
    q[5] = bytes4(q6k_word(l1.y, h1.y, sh, hs));
    q[6] = bytes4(q6k_word(l1.z, h1.z, sh, hs));
    q[7] = bytes4(q6k_word(l1.w, h1.w, sh, hs));
}

// q6_k: the two signed scales of chunk si / 2 from the block's scale words
// (times d), and the minima -32 * scale.
void q6k_scales(uvec4 sw, uint si, float d, out vec2 sc, out vec2 mn)
{
    int w = int(sw[si >> 2]);
    sc = vec2(d * float(bitfieldExtract(w, int(8u * (si & 3u)), 8)),
              d * float(bitfieldExtract(w, int(8u * (si & 3u)) + 8, 8)));
    mn = -32.0 * sc;
}

// q5_0: the 5-bit quants (0..31: the -16 goes into the minimum). Bit i of
// h is the high bit of weight i; (b & 0xF) * 0x00204081 & 0x01010101 moves
// bits 0..3 of b to bit 0 of bytes 0..3 (the four shifted copies overlap
// nowhere, so no carries).
uint spread4(uint b)
{
    return (((b & 0xFu) * 0x00204081u) & 0x01010101u) << 4;
}

void q5_0_quants(uvec4 w, uint h, out vec4 q[8])
{
    q[0] = bytes4((w.x & 0x0F0F0F0Fu) | spread4(h));
    q[1] = bytes4((w.y & 0x0F0F0F0Fu) | spread4(h >> 4));
    q[2] = bytes4((w.z & 0x0F0F0F0Fu) | spread4(h >> 8));
    q[3] = bytes4((w.w & 0x0F0F0F0Fu) | spread4(h >> 12));
    q[4] = bytes4(((w.x >> 4) & 0x0F0F0F0Fu) | spread4(h >> 16));
    q[5] = bytes4(((w.y >> 4) & 0x0F0F0F0Fu) | spread4(h >> 20));
    q[6] = bytes4(((w.z >> 4) & 0x0F0F0F0Fu) | spread4(h >> 24));
    q[7] = bytes4(((w.w >> 4) & 0x0F0F0F0Fu) | spread4(h >> 28));
}

// ---- the row ----

void row_dot(uint rb)
{
    uint nfull = p.ncols / HK_CHUNK;
    uint c0 = 0u; // chunks before c0 are done by a block path
    vec4 qa[8], qb[8];
    vec2 sa, ma = vec2(0.0), sb = vec2(0.0), mb = vec2(0.0);
    uint r4 = rb >> 2;
#if defined(T_Q4_K)
    uint nb = p.ncols >> 8;
    for (uint b = 0u; b < nb; b++) {
        vec4 sca[2], mna[2], scb[2], mnb[2];
        q4k_scales(wa4(r4 + 9u * b), sca, mna);
        if (GLU)
            q4k_scales(wb4(r4 + 9u * b), scb, mnb);
        [[unroll]] for (uint pr = 0u; pr < 4u; pr++) {
            uvec4 a0 = wa4(r4 + 9u * b + 1u + 2u * pr), a1 = wa4(r4 + 9u * b + 2u + 2u * pr);
            uvec4 b0 = uvec4(0u), b1 = uvec4(0u);
            if (GLU) {
                b0 = wb4(r4 + 9u * b + 1u + 2u * pr);
                b1 = wb4(r4 + 9u * b + 2u + 2u * pr);
            }
            [[unroll]] for (uint hi = 0u; hi < 2u; hi++) {
                uint s = 2u * pr + hi;
                nib8(a0, a1, 4u * hi, qa);
                sa = vec2(sca[s >> 2][s & 3u]);
                ma = vec2(mna[s >> 2][s & 3u]);
                if (GLU) {
                    nib8(b0, b1, 4u * hi, qb);
                    sb = vec2(scb[s >> 2][s & 3u]);
                    mb = vec2(mnb[s >> 2][s & 3u]);
                }
                accum(8u * b + s, qa, sa, ma, qb, sb, mb);
            }
        }
    }
    c0 = nfull;
#elif defined(T_Q6_K)
    uint nb = p.ncols >> 8;
    for (uint b = 0u; b < nb; b++) {
        uint bb = r4 + 13u * b;
        float da = unpackHalf2x16(wa(rb + nb * 52u + (b >> 1)))[b & 1u];
        float db = GLU ? unpackHalf2x16(wb(rb + nb * 52u + (b >> 1)))[b & 1u] : 0.0;
        uvec4 swa = wa4(bb + 12u), swb = GLU ? wb4(bb + 12u) : uvec4(0u);
        [[unroll]] for (uint h = 0u; h < 2u; h++) {
            uvec4 la[4], ha[2], lb[4], hb[2];
            [[unroll]] for (uint i = 0u; i < 4u; i++) {
                la[i] = wa4(bb + 4u * h + i);
                lb[i] = GLU ? wb4(bb + 4u * h + i) : uvec4(0u);
            }
            [[unroll]] for (uint i = 0u; i < 2u; i++) {
                ha[i] = wa4(bb + 8u + 2u * h + i);
                hb[i] = GLU ? wb4(bb + 8u + 2u * h + i) : uvec4(0u);
            }
            [[unroll]] for (uint g = 0u; g < 4u; g++) {
                uint l = 2u * (g & 1u), sh = (g >> 1) * 4u;
                q6k_quants(la[l], la[l + 1u], ha[0], ha[1], sh, 2u * g, qa);
                q6k_scales(swa, 8u * h + 2u * g, da, sa, ma);
                if (GLU) {
                    q6k_quants(lb[l], lb[l + 1u], hb[0], hb[1], sh, 2u * g, qb);
                    q6k_scales(swb, 8u * h + 2u * g, db, sb, mb);
                }
                accum(8u * b + 4u * h + g, qa, sa, ma, qb, sb, mb);
            }
        }
    }
    c0 = nfull;
#elif defined(T_Q5_0)
    // groups of 4 chunks: their high-bit words are one aligned uvec4
    uint ng = nfull >> 2;
    for (uint gi = 0u; gi < ng; gi++) {
        uvec4 hqa = wa4(r4 + nfull + gi), hqb = GLU ? wb4(r4 + nfull + gi) : uvec4(0u);
        uint dwa0 = wa(rb + 5u * nfull + 2u * gi), dwa1 = wa(rb + 5u * nfull + 2u * gi + 1u);
        uint dwb0 = GLU ? wb(rb + 5u * nfull + 2u * gi) : 0u, dwb1 = GLU ? wb(rb + 5u * nfull + 2u * gi + 1u) : 0u;
        [[unroll]] for (uint k = 0u; k < 4u; k++) {
            uint c = 4u * gi + k;
            q5_0_quants(wa4(r4 + c), hqa[k], qa);
            sa = vec2(unpackHalf2x16(k < 2u ? dwa0 : dwa1)[k & 1u]);
            ma = -16.0 * sa;
            if (GLU) {
                q5_0_quants(wb4(r4 + c), hqb[k], qb);
                sb = vec2(unpackHalf2x16(k < 2u ? dwb0 : dwb1)[k & 1u]);
                mb = -16.0 * sb;
            }
            accum(c, qa, sa, ma, qb, sb, mb);
        }
    }
    c0 = 4u * ng;
#endif
    for (uint c = c0; c < nfull; c++) {
        dq32_a(rb, c, p.ncols, qa, sa, ma);
        if (GLU)
            dq32_b(rb, c, p.ncols, qb, sb, mb);
        accum(c, qa, sa, ma, qb, sb, mb);
    }
#ifdef HAS_TAIL
    for (uint i = nfull * HK_CHUNK; i < p.ncols; i++) {
        float wv = wel_a(rb, i);
        float wu = GLU ? wel_b(rb, i) : 0.0;
        [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
            float xv = x(4u * xo[t] + i);
            if (NORM)
                xv = xv * ri[t] * nw[i];
            acc[t] += wv * xv;
            acc2[t] += wu * xv;
        }
    }
#endif
}

void main()
{
    uint row = gl_GlobalInvocationID.x;
    uint r = min(row, p.nrows - 1u);
    uint j0 = gl_WorkGroupID.y * MM_POS;
    lane = gl_SubgroupInvocationID & 7u;
    sgb = gl_SubgroupInvocationID & ~7u;
    [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
        uint j = min(j0 + t, p.m - 1u);
        xo[t] = (p.x_off + j * p.x_stride) >> 2;
        ri[t] = NORM ? rms_inv(xo[t]) : 1.0;
        acc[t] = 0.0;
        acc2[t] = 0.0;
    }
    row_dot(r * p.stride);
    if (row >= p.nrows)
        return;
    [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
        if (j0 + t >= p.m)
            break;
        float v = acc[t];
        if ((FLAGS & HK_F_SWIGLU) != 0u)
            v = silu(v) * acc2[t];
        else if ((FLAGS & HK_F_GEGLU) != 0u)
            v = gelu_tanh(v) * acc2[t];
        uint yi = p.y_off + (j0 + t) * p.y_stride + p.row0 + row;
        if ((FLAGS & HK_F_ACC) != 0u)
            v += y[yi];
        y[yi] = v;
    }
}
