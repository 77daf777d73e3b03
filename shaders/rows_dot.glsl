// hinge: the row products of the kernels shaped for CPU devices
// (matvec_rows.comp, qkv_rope.comp's rows flavour): one weight row per
// invocation, MM_POS positions each, weights x and o read as uniform texel
// buffers, x shared through the subgroup (see matvec_rows.comp for why).
//
// The includer defines MM_POS (a number, or a specialization constant:
// matmul_rows.comp), declares the push block `p` with at least
// ncols, m, x_off, x_stride (floats) and eps, and includes common.glsl
// first.
//
// The positions contract: a prefill product's result for a position never
// depends on MM_POS, nor on which of the MM_POS slots it takes: each
// position's arithmetic is the same sequence of operations on its own
// input, the weights' share done once for all of them (matmul_rows.comp,
// the prefill product on CPU devices; matmul.comp elsewhere), so that a
// prefill kernel may be built for any positions count and the host may
// pick the count by the rows it runs (vk_matmul.c: 1, 2, 4 ... or the full
// count) while every row's bits stay those of any other count: a
// session's logits are the same alone and in any batch (test_vk_exec's
// batch test, test_vk_ops's test_matmul_rows). A kernel that shares this
// file or joins that choice keeps to the same contract. (The source keeps
// it; a driver must also fuse and order a position's operations alike in
// every pipeline, which lavapipe does: those tests compare bits.)
//
// Bindings: HK_MM_B_*. row_dot(rb) adds the product of the row at word rb
// of W (and of W2 for the GLU flags) with the input of every position into
// acc (acc2); prologue(j0) first.
//
// Flags (specialization constant 0): HK_F_NORM (the input is x rms-normed
// times the weight at HK_MM_B_NORM), HK_F_RESNORM (the input is the same
// norm of x + o / rms(o) * rw, model/forward.c's deferred gemma3 residual;
// workgroup (0, y) stores that residual into x_out), HK_F_SWIGLU /
// HK_F_GEGLU (acc2 gets the W2 product), HK_F_ACC (the includer's).
#ifndef HINGE_ROWS_DOT_GLSL
#define HINGE_ROWS_DOT_GLSL
// The block paths below write q5_0 and q6_k weights as sc * q + mn with
// unsigned q (the offset -16 or -32 folded into mn), like q4_k's minimum
// (and q4_1's, read by dequant.glsl).
#if defined(HAS_MIN) || WT == TY_Q5_0 || WT == TY_Q6_K
#define ROWS_MIN 1
#endif

#ifndef MM_POS
#define MM_POS 1
#endif

layout(local_size_x = HK_WG) in;

// weights, x, o and the norm weights: uniform texel buffers (16-byte texels;
// see the top; so the rows' lengths are multiples of 4 where a norm is read)
layout(binding = HK_MM_B_W) uniform usamplerBuffer wt_a;
layout(binding = HK_MM_B_W2) uniform usamplerBuffer wt_b;
layout(binding = HK_MM_B_X) uniform samplerBuffer xt;
layout(binding = HK_MM_B_Y) buffer Y { float y[]; };
layout(binding = HK_MM_B_NORM) uniform samplerBuffer nwt;
layout(binding = HK_MM_B_RO) uniform samplerBuffer ot;
layout(binding = HK_MM_B_RW) uniform samplerBuffer rwt;
layout(binding = HK_MM_B_XOUT) writeonly buffer Xe { float xe[]; };
layout(binding = HK_MM_B_XOUT) writeonly buffer Xe4 { vec4 xe4[]; };

layout(constant_id = 0) const uint FLAGS = 0u; // HK_F_* bits
// Chunks of the normed input each invocation prepares once and keeps
// (MM_POS 1 only, where an invocation computes several rows): its vec4 of
// chunk c in xc[c] for c < XC, the very values input4 gives. 0: every row
// prepares its input anew.
layout(constant_id = 1) const uint XC = 0u;
// Rows per invocation (the includer's loop; 1: one).
layout(constant_id = 2) const uint RPL = 1u;
const uint XC1 = XC > 0u ? XC : 1u;
const bool RESNORM = (FLAGS & HK_F_RESNORM) != 0u;
const bool NORM = (FLAGS & HK_F_NORM) != 0u || RESNORM;
const bool GLU = (FLAGS & (HK_F_SWIGLU | HK_F_GEGLU)) != 0u;

uvec4 wa4(uint i) { return texelFetch(wt_a, int(i)); }
uvec4 wb4(uint i) { return texelFetch(wt_b, int(i)); }
uint wa(uint i) { return wa4(i >> 2)[i & 3u]; }
uint wb(uint i) { return wb4(i >> 2)[i & 3u]; }
vec4 x4(uint i) { return texelFetch(xt, int(i)); }
float x(uint i) { return x4(i >> 2)[i & 3u]; }
vec4 o4(uint i) { return texelFetch(ot, int(i)); }
float o(uint i) { return o4(i >> 2)[i & 3u]; }
vec4 nw4(uint i) { return texelFetch(nwt, int(i)); }
float nw(uint i) { return nw4(i >> 2)[i & 3u]; }
vec4 rw4(uint i) { return texelFetch(rwt, int(i)); }
float rw(uint i) { return rw4(i >> 2)[i & 3u]; }

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
#ifdef T2
#define DQ_T T2 // qkv_rope.comp: the second matrix (V) has a type of its own
#endif
#define DQ_SUB SUB_B
#include "dequant.glsl"
#undef W1
#undef W4
#undef DQ32
#undef WEL

uint lane;             // which vec4 of a chunk this lane fetches
uint sgb;              // first lane of this lane's group of 8 in the subgroup
vec4 xc[XC1];          // XC > 0: this invocation's vec4 of each chunk of the input
uint xo[MM_POS];       // vec4 index of each position's x (and of its o, x_out)
float ro[MM_POS];      // 1 / rms of each position's o (HK_F_RESNORM)
float ri[MM_POS];      // 1 / rms of each position's input x (HK_F_NORM), or of
                       // x + norm(o) * rw (HK_F_RESNORM)
float acc[MM_POS], acc2[MM_POS];

// Lane k's v in this lane's group of 8. With subgroups of exactly 8 (the
// usual CPU device; the condition folds when the pipeline is compiled) the
// index is a constant, which llvmpipe shuffles ~10% faster than a per-lane
// one (and subgroupBroadcast, oddly, 2.5 times slower: measured).
#define SHARE8(v, k) subgroupShuffle(v, (gl_SubgroupSize == 8u ? 0u : sgb) + (k))

// The sum of v over this lane's group of 8 lanes, in every one of them
// (a butterfly: the same additions in every lane, so the same result).
float sum8(float v)
{
    v += subgroupShuffleXor(v, 4u);
    v += subgroupShuffleXor(v, 2u);
    return v + subgroupShuffleXor(v, 1u);
}

// The residual the product reads for position t, vec4 i4 (element i):
// x, or with HK_F_RESNORM x + o / rms(o) * rw (model/forward.c's post-norm
// and residual add, in its order of operations).
vec4 res4(uint t, uint i4)
{
    vec4 v = x4(xo[t] + i4);
    if (RESNORM)
        v += o4(xo[t] + i4) * ro[t] * rw4(i4);
    return v;
}

float res1(uint t, uint i)
{
    float v = x(4u * xo[t] + i);
    if (RESNORM)
        v += o(4u * xo[t] + i) * ro[t] * rw(i);
    return v;
}

// Vec4 i4 of position t's input (normed where the flags say).
vec4 input4(uint t, uint i4)
{
    vec4 v = res4(t, i4);
    return NORM ? v * ri[t] * nw4(i4) : v;
}

// 1 / rms of position t's o (of_o) or residual; the lanes of each group of 8
// share the loads. With HK_F_RESNORM the residual is also stored into x_out
// by the first group of 8 lanes of the workgroup in column 0 (dispatches
// read x and write x_out, two buffers: no workgroup sees another's write).
float rms_inv(uint t, bool of_o)
{
    uint n4 = (p.ncols / HK_CHUNK) * 8u;
    bool store = RESNORM && !of_o && gl_WorkGroupID.x == 0u && gl_SubgroupID == 0u && gl_SubgroupInvocationID < 8u;
    vec4 s = vec4(0.0);
    for (uint i = lane; i < n4; i += 8u) {
        vec4 v = of_o ? o4(xo[t] + i) : res4(t, i);
        if (store)
            xe4[xo[t] + i] = v;
        s += v * v;
    }
    float ss = s.x + s.y + s.z + s.w;
    for (uint i = n4 * 4u + lane; i < p.ncols; i += 8u) {
        float v = of_o ? o(4u * xo[t] + i) : res1(t, i);
        if (store)
            xe[4u * xo[t] + i] = v;
        ss += v * v;
    }
    // (summed within the group of 8, not over the subgroup: a subgroup may be
    // larger than the workgroup or partly filled)
    return 1.0 / sqrt(sum8(ss) / float(p.ncols) + p.eps);
}

// Sets lane, sgb and, for each position t, xo, ro and ri: positions
// j0 .. j0 + MM_POS - 1 (past m: the last, never stored).
void prologue(uint j0)
{
    lane = gl_SubgroupInvocationID & 7u;
    sgb = gl_SubgroupInvocationID & ~7u;
    [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
        uint j = min(j0 + t, p.m - 1u);
        xo[t] = (p.x_off + j * p.x_stride) >> 2;
        ro[t] = RESNORM ? rms_inv(t, true) : 1.0;
        ri[t] = NORM ? rms_inv(t, false) : 1.0;
        acc[t] = 0.0;
        acc2[t] = 0.0;
    }
    if (XC > 0u)
        for (uint c = 0u; c < XC; c++)
            xc[c] = input4(0u, c * 8u + lane);
}

// acc[t] += chunk c of W . x (weight 4k+i of the chunk: sa[k/4] * qa[k][i] +
// ma[k/4]), and acc2[t] the same for W2, for every position t.
void accum(uint c, vec4 qa[8], vec2 sa, vec2 ma, vec4 qb[8], vec2 sb, vec2 mb)
{
    [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
        vec4 mine = XC > 0u ? xc[c] : input4(t, c * 8u + lane);
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
        // q5_k (sub-layout): the block's fifth bits, after the row's blocks
        bool q5a = SUB_A == HK_SUB_Q5_K, q5b = GLU && SUB_B == HK_SUB_Q5_K;
        uvec4 ha0 = q5a ? wa4(r4 + 9u * nb + 2u * b) : uvec4(0u), ha1 = q5a ? wa4(r4 + 9u * nb + 2u * b + 1u) : uvec4(0u);
        uvec4 hb0 = q5b ? wb4(r4 + 9u * nb + 2u * b) : uvec4(0u), hb1 = q5b ? wb4(r4 + 9u * nb + 2u * b + 1u) : uvec4(0u);
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
                if (q5a)
                    add_hbits(ha0, ha1, s, qa);
                sa = vec2(sca[s >> 2][s & 3u]);
                ma = vec2(mna[s >> 2][s & 3u]);
                if (GLU) {
                    nib8(b0, b1, 4u * hi, qb);
                    if (q5b)
                        add_hbits(hb0, hb1, s, qb);
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
    // (q3_k and q2_k, the sub-layouts, go chunk by chunk below; W2 has W's)
    for (uint b = 0u; SUB_A == 0u && b < nb; b++) {
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
    c0 = SUB_A == 0u ? nfull : 0u;
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
#elif defined(T_Q4_1)
    // groups of 4 chunks: their d | m words are one aligned uvec4; the
    // quants are q5_0's without high bits
    uint ng = nfull >> 2;
    for (uint gi = 0u; gi < ng; gi++) {
        uvec4 dma = wa4(r4 + nfull + gi), dmb = GLU ? wb4(r4 + nfull + gi) : uvec4(0u);
        [[unroll]] for (uint k = 0u; k < 4u; k++) {
            uint c = 4u * gi + k;
            // q5_1 (sub-layout): the high-bit words after the d | m words
            q5_0_quants(wa4(r4 + c), SUB_A == HK_SUB_Q5_1 ? wa(rb + 5u * nfull + c) : 0u, qa);
            vec2 dm = unpackHalf2x16(dma[k]);
            sa = vec2(dm.x);
            ma = vec2(dm.y);
            if (GLU) {
                q5_0_quants(wb4(r4 + c), SUB_B == HK_SUB_Q5_1 ? wb(rb + 5u * nfull + c) : 0u, qb);
                dm = unpackHalf2x16(dmb[k]);
                sb = vec2(dm.x);
                mb = vec2(dm.y);
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
#ifndef T2
        float wu = GLU ? wel_b(rb, i) : 0.0;
#else
        float wu = 0.0;
#endif
        [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
            float xv = res1(t, i);
            if (NORM)
                xv = xv * ri[t] * nw(i);
            acc[t] += wv * xv;
            acc2[t] += wu * xv;
        }
    }
#endif
}

#endif
