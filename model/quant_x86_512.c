/* The AVX-512 (F, BW, VL, DQ) kernel set of quant.h (quant_x86_impl.h):
 * the block types' row kernels at 16 lanes, their decoder and tiles; the
 * float types and everything else are the AVX2 set's. */
#include "quant_x86_impl.h"

#if QUANT_HAVE_X86

/* ------------------------------------------------------------------ */
/* AVX-512 (F, BW, VL, DQ) set                                         */
/*
 * The row kernels at 16 lanes; everything else is the AVX2 code. Cores with
 * full-width 512-bit units (Zen 5, Sapphire Rapids) then spend half the
 * decode work per weight, which is what bounds the AVX2 kernels on one
 * core.
 *
 * The order of sums here is not the AVX2 set's. A row is read as groups of
 * 16 weights in natural order; group g's values are formed in registers as
 * ggml's dequantised weights (q4_k: d*sc*q, its mins apart, see below), and
 * output (r, j) is the reduction of one accumulator chain
 *     acc = fma(w_g, x_j[16g .. 16g+16), acc)   for every g in order.
 * Two drivers compute exactly that: for few columns the weights are decoded
 * in registers and used at once (R rows x J columns per call: R chains give
 * a matvec its parallelism); for many, a block of 8 rows is decoded into the
 * caller's scratch by the same code and 4 x 4 tiles read it, so decoding is
 * paid once per row whatever m, and each (r, j) costs one FMA per 16
 * weights, as a float GEMM. Q4_K subtracts sum_b dmin*m[b] * xs_j[b] (an
 * 8-lane chain over its blocks) from the reduction. */

AVX512_INLINE static __m512 ld16(const float *p) { return _mm512_loadu_ps(p); }
AVX512_INLINE static __m512 cvt16(__m512i v) { return _mm512_cvtepi32_ps(v); }

/* 16 bytes at p. The empty asm keeps the load a plain load: folded into
 * vpmovzxbd/vpmovsxbd zmm, m128 it costs Zen 5 twice the register form. */
AVX512_INLINE static __m128i ld128(const uint8_t *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __asm__("" : "+x"(v));
    return v;
}

/* 16 bytes at p as 16 int32 lanes. */
AVX512_INLINE static __m512i u8x16(const uint8_t *p) { return _mm512_cvtepu8_epi32(ld128(p)); }
AVX512_INLINE static __m512i s8x16(const uint8_t *p) { return _mm512_cvtepi8_epi32(ld128(p)); }

AVX512_INLINE static __m512 bcast16_f16(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)v)));
}

/* A Q4_0/Q5_0/Q8_0 block's values q - offset: weights 0..15 and 16..31. */
AVX512_INLINE static void blk32_q16(qtype t, const uint8_t *blk, __m512i *q0, __m512i *q1)
{
    if (t == QT_Q8_0) {
        *q0 = s8x16(blk + 2);
        *q1 = s8x16(blk + 18);
        return;
    }
    const __m512i v = u8x16(blk + (t == QT_Q5_0 ? 6 : t == QT_Q4_1 ? 4 : t == QT_Q5_1 ? 8 : 2));
    const __m512i lo = _mm512_and_si512(v, _mm512_set1_epi32(0xF)), hi = _mm512_srli_epi32(v, 4);
    if (t == QT_Q4_1) {
        *q0 = lo;
        *q1 = hi;
        return;
    }
    if (t == QT_Q5_1) { /* 16 comes on where the fifth bit is set */
        uint32_t set;
        memcpy(&set, blk + 4, sizeof set);
        const __m512i k16 = _mm512_set1_epi32(16);
        *q0 = _mm512_mask_add_epi32(lo, (__mmask16)set, lo, k16);
        *q1 = _mm512_mask_add_epi32(hi, (__mmask16)(set >> 16), hi, k16);
        return;
    }
    if (t == QT_Q4_0) {
        *q0 = _mm512_sub_epi32(lo, _mm512_set1_epi32(8));
        *q1 = _mm512_sub_epi32(hi, _mm512_set1_epi32(8));
        return;
    }
    uint32_t clear; /* Q5_0: 16 comes off where the fifth bit is clear */
    memcpy(&clear, blk + 2, sizeof clear);
    clear = ~clear;
    const __m512i k16 = _mm512_set1_epi32(16);
    *q0 = _mm512_mask_sub_epi32(lo, (__mmask16)clear, lo, k16);
    *q1 = _mm512_mask_sub_epi32(hi, (__mmask16)(clear >> 16), hi, k16);
}

/* Block i's weights: w0 = 0..15, w1 = 16..31, as (float)q * d (+ m). */
AVX512_INLINE static void blk32_w16(qtype t, const uint8_t *blk, __m512 *w0, __m512 *w1)
{
    __m512i q0, q1;
    blk32_q16(t, blk, &q0, &q1);
    const __m512 d = bcast16_f16(blk);
    *w0 = _mm512_mul_ps(cvt16(q0), d);
    *w1 = _mm512_mul_ps(cvt16(q1), d);
    if (blk32_has_min(t)) {
        const __m512 m = bcast16_f16(blk + 2);
        *w0 = _mm512_add_ps(*w0, m);
        *w1 = _mm512_add_ps(*w1, m);
    }
}

/* Q4_K chunk c (weights 64c .. 64c+64) as 4 groups in order, d*sc*q: the
 * low nibbles of qs[32c ..] are sub-block 2c, the high ones 2c+1. */
AVX512_INLINE static void q4_k_w16(const block_q4_k *b, int c, const float *dsc, __m512 w[4])
{
    const __m512i m4 = _mm512_set1_epi32(0xF);
    const __m512i v0 = u8x16(b->qs + 32 * c), v1 = u8x16(b->qs + 32 * c + 16);
    const __m512 s0 = _mm512_set1_ps(dsc[2 * c]), s1 = _mm512_set1_ps(dsc[2 * c + 1]);
    w[0] = _mm512_mul_ps(cvt16(_mm512_and_si512(v0, m4)), s0);
    w[1] = _mm512_mul_ps(cvt16(_mm512_and_si512(v1, m4)), s0);
    w[2] = _mm512_mul_ps(cvt16(_mm512_srli_epi32(v0, 4)), s1);
    w[3] = _mm512_mul_ps(cvt16(_mm512_srli_epi32(v1, 4)), s1);
}

/* Q6_K half h (weights 128h .. 128h+128) as 8 groups in order, (d*sc) *
 * (q - 32): for l in [L, L+16), weight 32k + l has its low bits in ql and
 * high bits in qh as deq_q6_k says, and scale 8h + 2k + L/16. */
AVX512_INLINE static void q6_k_w16(const block_q6_k *b, int h, const float *dsc, __m512 w[8])
{
    const __m512i m4 = _mm512_set1_epi32(0xF), m30 = _mm512_set1_epi32(0x30), k32 = _mm512_set1_epi32(32);
    for (int l = 0; l < 32; l += 16) {
        const __m512i la = u8x16(b->ql + 64 * h + l), lb = u8x16(b->ql + 64 * h + 32 + l);
        const __m512i hb = u8x16(b->qh + 32 * h + l);
        const __m512i q[4] = {
            _mm512_or_si512(_mm512_and_si512(la, m4), _mm512_and_si512(_mm512_slli_epi32(hb, 4), m30)),
            _mm512_or_si512(_mm512_and_si512(lb, m4), _mm512_and_si512(_mm512_slli_epi32(hb, 2), m30)),
            _mm512_or_si512(_mm512_srli_epi32(la, 4), _mm512_and_si512(hb, m30)),
            _mm512_or_si512(_mm512_srli_epi32(lb, 4), _mm512_and_si512(_mm512_srli_epi32(hb, 2), m30)),
        };
        for (int k = 0; k < 4; k++)
            w[2 * k + l / 16] = _mm512_mul_ps(cvt16(_mm512_sub_epi32(q[k], k32)), _mm512_set1_ps(dsc[8 * h + 2 * k + l / 16]));
    }
}

/* Rows and columns per direct call, and per tile. */
enum { RCAP = 8, R_MATVEC = 8, TILE_R = 4, TILE_J = 4 };

/* acc[r][j] += w[g] . x_j[16g ..] for the ng groups of one unit. */
AVX512_INLINE static void fma_groups(__m512 acc[RCAP][JCAP], int r, const __m512 *w, int ng, const float *x,
                                     size_t ldx, int J)
{
    for (int g = 0; g < ng; g++)
        for (int j = 0; j < J; j++)
            acc[r][j] = _mm512_fmadd_ps(w[g], ld16(x + j * ldx + 16 * g), acc[r][j]);
}

AVX512_INLINE static void acc_zero(__m512 acc[RCAP][JCAP], int R, int J)
{
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            acc[r][j] = _mm512_setzero_ps();
}

/* out[r*J + j] = reduce(acc[r][j]) - (mins ? hsum(mins[r][j]) : 0). */
AVX512_INLINE static void acc_out(__m512 acc[RCAP][JCAP], __m256 (*mins)[JCAP], int R, int J, float *out)
{
    __m512 v[RCAP * JCAP];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            v[r * J + j] = acc[r][j];
    for (int i = 0; i < R * J; i += 16)
        reduce_many(v + i, R * J - i < 16 ? R * J - i : 16, out + i);
    for (int r = 0; r < R && mins; r++)
        for (int j = 0; j < J; j++)
            out[r * J + j] -= hsum(mins[r][j]);
}

/* Direct: rows w + r*rb (r < R) against columns x + j*ldx (j < J). */
/* The f16 at byte `off` of blocks i .. i+n (n <= 16) of a row of 32-weight
 * blocks, as floats, in one gather (4 bytes read there, inside the block):
 * exactly what bcast16_f16 gives for each. */
AVX512_INLINE static void blk32_f16x16(qtype t, const uint8_t *row, size_t off, size_t i, size_t n, float *d)
{
    const int bb = (int)blk32_bytes(t);
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(bb));
    const __mmask16 live = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
    const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, row + i * (size_t)bb + off, 1);
    _mm512_storeu_ps(d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)));
}

/* Direct: rows w + r*rb (r < R) against columns x + j*ldx (j < J), each
 * block's weights as blk32_w16 forms them. The scales (and Q4_1/Q5_1's
 * mins) come 16 blocks at a time (blk32_f16x16): a broadcast from memory
 * costs no vector ALU, an f16 conversion per block would. */
AVX512_INLINE static void direct_blk32(qtype t, const uint8_t *w, size_t rb, const float *x, size_t ldx, size_t nb,
                                       int R, int J, float *out)
{
    const size_t bb = blk32_bytes(t);
    __m512 acc[RCAP][JCAP];
    _Alignas(64) float d[RCAP][16], mn[RCAP][16];
    acc_zero(acc, R, J);
    for (size_t i = 0; i < nb; i++, x += 32) {
        if (i % 16 == 0)
            for (int r = 0; r < R; r++) {
                blk32_f16x16(t, w + r * rb, 0, i, nb - i, d[r]);
                if (blk32_has_min(t))
                    blk32_f16x16(t, w + r * rb, 2, i, nb - i, mn[r]);
            }
        for (int r = 0; r < R; r++) {
            __m512i q0, q1;
            blk32_q16(t, w + r * rb + i * bb, &q0, &q1);
            const __m512 dv = _mm512_set1_ps(d[r][i % 16]);
            __m512 g[2] = {_mm512_mul_ps(cvt16(q0), dv), _mm512_mul_ps(cvt16(q1), dv)};
            if (blk32_has_min(t)) {
                const __m512 m = _mm512_set1_ps(mn[r][i % 16]);
                g[0] = _mm512_add_ps(g[0], m);
                g[1] = _mm512_add_ps(g[1], m);
            }
            fma_groups(acc, r, g, 2, x, ldx, J);
        }
    }
    acc_out(acc, NULL, R, J, out);
}

/* Q4_K's mins term of one block for rows r < R and columns j < J:
 * mins[r][j] += dmin*m (8 lanes) . xs_j[8i ..]; dsc[r] gets d*sc. */
AVX512_INLINE static void q4_k_block_scales(const uint8_t *w, size_t rb, size_t i, const float *xs, size_t ldxs,
                                            int R, int J, __m256 mins[RCAP][JCAP], float dsc[RCAP][8])
{
    for (int r = 0; r < R; r++) {
        __m256 dscv, dmv;
        q4_k_scales((const block_q4_k *)(const void *)(w + r * rb) + i, &dscv, &dmv);
        _mm256_storeu_ps(dsc[r], dscv);
        for (int j = 0; j < J; j++)
            mins[r][j] = _mm256_fmadd_ps(dmv, _mm256_loadu_ps(xs + j * ldxs + 8 * i), mins[r][j]);
    }
}

AVX512_INLINE static void direct_q4_k(const uint8_t *w, size_t rb, const float *x, size_t ldx, const float *xs,
                                      size_t ldxs, size_t nb, int R, int J, float *out)
{
    __m512 acc[RCAP][JCAP], g[4];
    __m256 mins[RCAP][JCAP];
    float dsc[RCAP][8];
    acc_zero(acc, R, J);
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            mins[r][j] = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++) {
        q4_k_block_scales(w, rb, i, xs, ldxs, R, J, mins, dsc);
        for (int c = 0; c < 4; c++)
            for (int r = 0; r < R; r++) {
                q4_k_w16((const block_q4_k *)(const void *)(w + r * rb) + i, c, dsc[r], g);
                fma_groups(acc, r, g, 4, x + QK_K * i + 64 * c, ldx, J);
            }
    }
    acc_out(acc, mins, R, J, out);
}

AVX512_INLINE static void direct_q6_k(const uint8_t *w, size_t rb, const float *x, size_t ldx, size_t nb, int R,
                                      int J, float *out)
{
    __m512 acc[RCAP][JCAP], g[8];
    float dsc[RCAP][16];
    acc_zero(acc, R, J);
    for (size_t i = 0; i < nb; i++) {
        for (int r = 0; r < R; r++)
            q6_k_scales((const block_q6_k *)(const void *)(w + r * rb) + i, dsc[r]);
        for (int h = 0; h < 2; h++)
            for (int r = 0; r < R; r++) {
                q6_k_w16((const block_q6_k *)(const void *)(w + r * rb) + i, h, dsc[r], g);
                fma_groups(acc, r, g, 8, x + QK_K * i + 128 * h, ldx, J);
            }
    }
    acc_out(acc, NULL, R, J, out);
}

/* x[0 .. k) (k <= 16), the other lanes 0. */
AVX512_INLINE static __m512 x_part16(const float *x, size_t k)
{
    return _mm512_maskz_loadu_ps((__mmask16)(k >= 16 ? 0xFFFF : (1u << k) - 1), x);
}

/* Tile: rows of scratch s + r*lds (r < R, ng groups each, decoded by
 * fill_512) against columns x + j*ldx: the same chains as direct_*. */
AVX512_INLINE static void tile_512(const float *s, size_t lds, const float *x, size_t ldx, size_t ng, size_t tail,
                                   int R, int J, float *out)
{
    __m512 acc[RCAP][JCAP];
    acc_zero(acc, R, J);
    for (size_t g = 0; g < ng; g++) {
        __m512 wv[TILE_R];
        for (int r = 0; r < R; r++)
            wv[r] = ld16(s + r * lds + 16 * g);
        for (int j = 0; j < J; j++) {
            const __m512 xv = ld16(x + j * ldx + 16 * g);
            for (int r = 0; r < R; r++)
                acc[r][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][j]);
        }
    }
    if (tail) { /* a last partial group (float types): direct_float's */
        __m512 wv[TILE_R];
        for (int r = 0; r < R; r++)
            wv[r] = x_part16(s + r * lds + 16 * ng, tail);
        for (int j = 0; j < J; j++) {
            const __m512 xv = x_part16(x + j * ldx + 16 * ng, tail);
            for (int r = 0; r < R; r++)
                acc[r][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][j]);
        }
    }
    acc_out(acc, NULL, R, J, out);
}

/* Decodes row (len blocks) into s in natural order, as direct_* forms it. */
AVX512 static void fill_512(qtype t, const uint8_t *row, size_t len, float *s)
{
    if (t == QT_Q4_K) {
        for (size_t i = 0; i < len; i++) {
            const block_q4_k *b = (const block_q4_k *)(const void *)row + i;
            __m256 dscv, dmv;
            float dsc[8];
            q4_k_scales(b, &dscv, &dmv);
            _mm256_storeu_ps(dsc, dscv);
            for (int c = 0; c < 4; c++) {
                __m512 g[4];
                q4_k_w16(b, c, dsc, g);
                for (int k = 0; k < 4; k++)
                    _mm512_storeu_ps(s + QK_K * i + 64 * c + 16 * k, g[k]);
            }
        }
    } else if (t == QT_Q6_K) {
        for (size_t i = 0; i < len; i++) {
            const block_q6_k *b = (const block_q6_k *)(const void *)row + i;
            float dsc[16];
            q6_k_scales(b, dsc);
            for (int h = 0; h < 2; h++) {
                __m512 g[8];
                q6_k_w16(b, h, dsc, g);
                for (int k = 0; k < 8; k++)
                    _mm512_storeu_ps(s + QK_K * i + 128 * h + 16 * k, g[k]);
            }
        }
    } else {
        const size_t bb = blk32_bytes(t);
        for (size_t i = 0; i < len; i++) {
            __m512 w0, w1;
            switch (t) { /* constant t in each call of blk32_w16 */
            case QT_Q4_0: blk32_w16(QT_Q4_0, row + i * bb, &w0, &w1); break;
            case QT_Q5_0: blk32_w16(QT_Q5_0, row + i * bb, &w0, &w1); break;
            case QT_Q4_1: blk32_w16(QT_Q4_1, row + i * bb, &w0, &w1); break;
            case QT_Q5_1: blk32_w16(QT_Q5_1, row + i * bb, &w0, &w1); break;
            default: blk32_w16(QT_Q8_0, row + i * bb, &w0, &w1); break;
            }
            _mm512_storeu_ps(s + 32 * i, w0);
            _mm512_storeu_ps(s + 32 * i + 16, w1);
        }
    }
}

/* ---- the set's table ---- */

DIRECTS(AVX512, q4_0_512, 8, direct_blk32, QT_Q4_0, w, rb, x, ldx, len)
DIRECTS(AVX512, q5_0_512, 8, direct_blk32, QT_Q5_0, w, rb, x, ldx, len)
DIRECTS(AVX512, q8_0_512, 8, direct_blk32, QT_Q8_0, w, rb, x, ldx, len)
DIRECTS(AVX512, q4_1_512, 8, direct_blk32, QT_Q4_1, w, rb, x, ldx, len)
DIRECTS(AVX512, q5_1_512, 8, direct_blk32, QT_Q5_1, w, rb, x, ldx, len)
DIRECTS(AVX512, q4_k_512, 8, direct_q4_k, w, rb, x, ldx, xs, ldxs, len)
DIRECTS(AVX512, q6_k_512, 8, direct_q6_k, w, rb, x, ldx, len)

TILE_FN(AVX512, tile_512, 1, 1) TILE_FN(AVX512, tile_512, 1, 2) TILE_FN(AVX512, tile_512, 1, 3)
TILE_FN(AVX512, tile_512, 1, 4) TILE_FN(AVX512, tile_512, 2, 1) TILE_FN(AVX512, tile_512, 2, 2)
TILE_FN(AVX512, tile_512, 2, 3) TILE_FN(AVX512, tile_512, 2, 4) TILE_FN(AVX512, tile_512, 3, 1)
TILE_FN(AVX512, tile_512, 3, 2) TILE_FN(AVX512, tile_512, 3, 3) TILE_FN(AVX512, tile_512, 3, 4)
TILE_FN(AVX512, tile_512, 4, 1) TILE_FN(AVX512, tile_512, 4, 2) TILE_FN(AVX512, tile_512, 4, 3)
TILE_FN(AVX512, tile_512, 4, 4)

static const tile_fn tiles_512[TILES_R][TILES_J] = {
    {tile_512_1x1, tile_512_1x2, tile_512_1x3, tile_512_1x4},
    {tile_512_2x1, tile_512_2x2, tile_512_2x3, tile_512_2x4},
    {tile_512_3x1, tile_512_3x2, tile_512_3x3, tile_512_3x4},
    {tile_512_4x1, tile_512_4x2, tile_512_4x3, tile_512_4x4},
};

#define K512(p) {.direct = {p##_m, p##_1, p##_2, NULL, p##_4}, .r_matvec = 8, .lanes = 16, .tile_r = 4, \
                  .tile_j = 4, .tiles = tiles_512, .fill = fill_512}

kernels qx_512_kernels(qtype t)
{
    static const kernels k512[] = {
        [QT_Q4_0] = K512(q4_0_512), [QT_Q5_0] = K512(q5_0_512), [QT_Q8_0] = K512(q8_0_512),
        [QT_Q4_K] = K512(q4_k_512), [QT_Q6_K] = K512(q6_k_512),
        [QT_Q4_1] = K512(q4_1_512), [QT_Q5_1] = K512(q5_1_512),
    };
    return t == QT_F32 || t == QT_F16 || t == QT_BF16 ? qx_avx2_kernels(t) : k512[t];
}

#else
typedef int quant_x86_512_unused; /* ISO C wants a declaration in every file */
#endif /* QUANT_HAVE_X86 */
