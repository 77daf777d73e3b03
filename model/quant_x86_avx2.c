/* The AVX2 + FMA + F16C kernel set of quant.h (quant_x86_impl.h): row
 * kernels for every type, the tile path's decoder and tiles, the
 * dequantiser. The order of sums: quant_x86.c. */
#include "quant_x86_impl.h"

#if QUANT_HAVE_X86

/* The AVX2 set's order of sums: as the AVX-512 set's (see quant_x86_512.c)
 * at 8 lanes. A row is read as groups of 8 weights in natural order, each formed
 * as ggml's dequantised weight (q4_k: d*sc*q, its mins apart); output (r, j)
 * is hsum of one chain acc = fma(w_g, x_j[8g ..], acc), decoded in registers
 * for few columns (R rows x J columns per call), or from rows decoded into
 * scratch by the same code, in 4 x 3 tiles, for many. */
enum { RCAP2 = 8, JCAP2 = 4, TILE2_R = 4, TILE2_J = 3 };

/* Block i of a Q4_0/Q5_0/Q8_0 row: its 4 groups, (float)q * d. */
AVX2_INLINE static void blk32_w8(qtype t, const uint8_t *blk, __m256 w[4])
{
    __m256i q[4];
    blk32_q(t, blk, q);
    const __m256 d = bcast_f16(blk), m = blk32_has_min(t) ? bcast_f16(blk + 2) : _mm256_setzero_ps();
    for (int k = 0; k < 4; k++)
        w[k] = blk32_has_min(t) ? _mm256_add_ps(_mm256_mul_ps(cvt(q[k]), d), m) : _mm256_mul_ps(cvt(q[k]), d);
}

/* Q4_K chunk c (weights 64c .. 64c+64): 8 groups in order, d*sc*q. */
AVX2_INLINE static void q4_k_w8(const block_q4_k *b, int c, const float *dsc, __m256 w[8])
{
    const __m256 s0 = _mm256_broadcast_ss(dsc + 2 * c), s1 = _mm256_broadcast_ss(dsc + 2 * c + 1);
    for (int j = 0; j < 4; j++) {
        __m256 lo, hi;
        q4_k_pair(b, c, j, &lo, &hi);
        w[j] = _mm256_mul_ps(lo, s0);
        w[4 + j] = _mm256_mul_ps(hi, s1);
    }
}

/* Q6_K half h, part k (weights 128h + 32k .. +32): 4 groups in order,
 * (d*sc) * (q - 32); q from q6_k_bytes. */
AVX2_INLINE static void q6_k_w8(__m256i q, const float *s, __m256 w[4])
{
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    const __m256 s0 = _mm256_broadcast_ss(s), s1 = _mm256_broadcast_ss(s + 1);
    w[0] = _mm256_mul_ps(s0, s8_ps(lo));
    w[1] = _mm256_mul_ps(s0, s8_ps(_mm_unpackhi_epi64(lo, lo)));
    w[2] = _mm256_mul_ps(s1, s8_ps(hi));
    w[3] = _mm256_mul_ps(s1, s8_ps(_mm_unpackhi_epi64(hi, hi)));
}

AVX2_INLINE static void fma8_groups(__m256 acc[RCAP2][JCAP2], int r, const __m256 *w, int ng, const float *x,
                                    size_t ldx, int J)
{
    for (int g = 0; g < ng; g++)
        for (int j = 0; j < J; j++)
            acc[r][j] = _mm256_fmadd_ps(w[g], ld(x + j * ldx + 8 * g), acc[r][j]);
}

AVX2_INLINE static void acc8_zero(__m256 acc[RCAP2][JCAP2], int R, int J)
{
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            acc[r][j] = _mm256_setzero_ps();
}

AVX2_INLINE static void acc8_out(__m256 acc[RCAP2][JCAP2], __m256 (*mins)[JCAP2], int R, int J, float *out)
{
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            out[r * J + j] = mins ? hsum(acc[r][j]) - hsum(mins[r][j]) : hsum(acc[r][j]);
}

AVX2_INLINE static void direct2_blk32(qtype t, const uint8_t *w, size_t rb, const float *x, size_t ldx, size_t nb,
                                      int R, int J, float *out)
{
    const size_t bb = blk32_bytes(t);
    __m256 acc[RCAP2][JCAP2], g[4];
    acc8_zero(acc, R, J);
    for (size_t i = 0; i < nb; i++, x += 32)
        for (int r = 0; r < R; r++) {
            blk32_w8(t, w + r * rb + i * bb, g);
            fma8_groups(acc, r, g, 4, x, ldx, J);
        }
    acc8_out(acc, NULL, R, J, out);
}

AVX2_INLINE static void direct2_q4_k(const uint8_t *w, size_t rb, const float *x, size_t ldx, const float *xs,
                                     size_t ldxs, size_t nb, int R, int J, float *out)
{
    __m256 acc[RCAP2][JCAP2], mins[RCAP2][JCAP2], g[8];
    float dsc[RCAP2][8];
    acc8_zero(acc, R, J);
    acc8_zero(mins, R, J);
    for (size_t i = 0; i < nb; i++) {
        for (int r = 0; r < R; r++) {
            __m256 dscv, dmv;
            q4_k_scales((const block_q4_k *)(const void *)(w + r * rb) + i, &dscv, &dmv);
            _mm256_storeu_ps(dsc[r], dscv);
            for (int j = 0; j < J; j++)
                mins[r][j] = _mm256_fmadd_ps(dmv, _mm256_loadu_ps(xs + j * ldxs + 8 * i), mins[r][j]);
        }
        for (int c = 0; c < 4; c++)
            for (int r = 0; r < R; r++) {
                q4_k_w8((const block_q4_k *)(const void *)(w + r * rb) + i, c, dsc[r], g);
                fma8_groups(acc, r, g, 8, x + QK_K * i + 64 * c, ldx, J);
            }
    }
    acc8_out(acc, mins, R, J, out);
}

AVX2_INLINE static void direct2_q6_k(const uint8_t *w, size_t rb, const float *x, size_t ldx, size_t nb, int R,
                                     int J, float *out)
{
    __m256 acc[RCAP2][JCAP2], g[4];
    float dsc[RCAP2][16];
    acc8_zero(acc, R, J);
    for (size_t i = 0; i < nb; i++) {
        for (int r = 0; r < R; r++)
            q6_k_scales((const block_q6_k *)(const void *)(w + r * rb) + i, dsc[r]);
        for (int h = 0; h < 2; h++)
            for (int r = 0; r < R; r++) {
                __m256i q[4];
                q6_k_bytes((const block_q6_k *)(const void *)(w + r * rb) + i, h, q);
                for (int k = 0; k < 4; k++) {
                    q6_k_w8(q[k], dsc[r] + 8 * h + 2 * k, g);
                    fma8_groups(acc, r, g, 4, x + QK_K * i + 128 * h + 32 * k, ldx, J);
                }
            }
    }
    acc8_out(acc, NULL, R, J, out);
}

/* Lanes [0, k) set, k <= 8: maskload's mask. */
AVX2_INLINE static __m256i mask8(size_t k)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* x[0 .. k) (k <= 8), the other lanes 0; nothing past x + k is read. */
AVX2_INLINE static __m256 x_part8(const float *x, size_t k)
{
    return k == 8 ? ld(x) : _mm256_maskload_ps(x, mask8(k));
}

/* f32/f16/bf16: weights i .. i+k of a row (k <= 8; the other lanes 0),
 * exactly as floats; nothing past the row is read. */
AVX2_INLINE static __m256 float_w8(qtype t, const void *row, size_t i, size_t k)
{
    if (k == 8)
        return load8(t, row, i);
    if (t == QT_F32)
        return _mm256_maskload_ps((const float *)row + i, mask8(k));
    uint16_t h[8] = {0};
    memcpy(h, (const uint16_t *)row + i, k * sizeof *h);
    return load8(t, h, 0);
}

/* Float types, both x86 sets (256-bit, so no 512-bit frequency cost for
 * models whose other work is 256-bit): n weights in groups of 8, the last
 * one partial (its other lanes 0 in both operands) when n is not a
 * multiple of 8. */
AVX2_INLINE static void direct2_float(qtype t, const uint8_t *w, size_t rb, const float *x, size_t ldx, size_t n,
                                      int R, int J, float *out)
{
    __m256 acc[RCAP2][JCAP2];
    acc8_zero(acc, R, J);
    const size_t ng = n / 8, tail = n % 8;
    for (size_t g = 0; g < ng; g++)
        for (int r = 0; r < R; r++) {
            const __m256 wv = load8(t, w + r * rb, 8 * g);
            fma8_groups(acc, r, &wv, 1, x + 8 * g, ldx, J);
        }
    for (int r = 0; tail && r < R; r++) {
        const __m256 wv = float_w8(t, w + r * rb, 8 * ng, tail);
        for (int j = 0; j < J; j++)
            acc[r][j] = _mm256_fmadd_ps(wv, x_part8(x + j * ldx + 8 * ng, tail), acc[r][j]);
    }
    acc8_out(acc, NULL, R, J, out);
}

/* Decodes row (len blocks) into s in natural order, as direct2_* forms it. */
AVX2 static void fill_avx2(qtype t, const uint8_t *row, size_t len, float *s)
{
    if (t == QT_F16 || t == QT_BF16) { /* len weights, a last partial group's lanes only */
        for (size_t g = 0; g < (len + 7) / 8; g++) {
            const size_t k = len - 8 * g < 8 ? len - 8 * g : 8;
            _mm256_maskstore_ps(s + 8 * g, mask8(k), float_w8(t, row, 8 * g, k));
        }
    } else if (t == QT_Q4_K) {
        for (size_t i = 0; i < len; i++) {
            const block_q4_k *b = (const block_q4_k *)(const void *)row + i;
            __m256 dscv, dmv, g[8];
            float dsc[8];
            q4_k_scales(b, &dscv, &dmv);
            _mm256_storeu_ps(dsc, dscv);
            for (int c = 0; c < 4; c++) {
                q4_k_w8(b, c, dsc, g);
                for (int k = 0; k < 8; k++)
                    _mm256_storeu_ps(s + QK_K * i + 64 * c + 8 * k, g[k]);
            }
        }
    } else if (t == QT_Q6_K) {
        for (size_t i = 0; i < len; i++) {
            const block_q6_k *b = (const block_q6_k *)(const void *)row + i;
            float dsc[16];
            q6_k_scales(b, dsc);
            for (int h = 0; h < 2; h++) {
                __m256i q[4];
                q6_k_bytes(b, h, q);
                for (int k = 0; k < 4; k++) {
                    __m256 g[4];
                    q6_k_w8(q[k], dsc + 8 * h + 2 * k, g);
                    for (int e = 0; e < 4; e++)
                        _mm256_storeu_ps(s + QK_K * i + 128 * h + 32 * k + 8 * e, g[e]);
                }
            }
        }
    } else {
        const size_t bb = blk32_bytes(t);
        for (size_t i = 0; i < len; i++) {
            __m256 g[4];
            switch (t) { /* constant t in each call of blk32_w8 */
            case QT_Q4_0: blk32_w8(QT_Q4_0, row + i * bb, g); break;
            case QT_Q5_0: blk32_w8(QT_Q5_0, row + i * bb, g); break;
            case QT_Q4_1: blk32_w8(QT_Q4_1, row + i * bb, g); break;
            case QT_Q5_1: blk32_w8(QT_Q5_1, row + i * bb, g); break;
            default: blk32_w8(QT_Q8_0, row + i * bb, g); break;
            }
            for (int k = 0; k < 4; k++)
                _mm256_storeu_ps(s + 32 * i + 8 * k, g[k]);
        }
    }
}

/* As tile_512 at 8 lanes: the J columns' vectors first, then a row at a
 * time (12 accumulators, 3 x vectors and one of w in 16 registers). */
AVX2_INLINE static void tile_avx2(const float *s, size_t lds, const float *x, size_t ldx, size_t ng, size_t tail,
                                  int R, int J, float *out)
{
    __m256 acc[RCAP2][JCAP2];
    acc8_zero(acc, R, J);
    for (size_t g = 0; g < ng; g++) {
        __m256 xv[TILE2_J];
        for (int j = 0; j < J; j++)
            xv[j] = ld(x + j * ldx + 8 * g);
        for (int r = 0; r < R; r++) {
            const __m256 wv = ld(s + r * lds + 8 * g);
            for (int j = 0; j < J; j++)
                acc[r][j] = _mm256_fmadd_ps(wv, xv[j], acc[r][j]);
        }
    }
    if (tail) { /* a last partial group (float types): direct2_float's */
        __m256 xv[TILE2_J];
        for (int j = 0; j < J; j++)
            xv[j] = x_part8(x + j * ldx + 8 * ng, tail);
        for (int r = 0; r < R; r++) {
            const __m256 wv = x_part8(s + r * lds + 8 * ng, tail);
            for (int j = 0; j < J; j++)
                acc[r][j] = _mm256_fmadd_ps(wv, xv[j], acc[r][j]);
        }
    }
    acc8_out(acc, NULL, R, J, out);
}

/* Q4_K's mins for a tile, as direct2_q4_k's chains. */
AVX2 void qx_q4_k_mins(const uint8_t *w, size_t rb, const float *xs, size_t ldxs, size_t nb, int R, int J, float *out)
{
    /* each row's scales unpacked once per block for all J columns; column
     * j's chain is the same fma sequence whatever J */
    for (int r = 0; r < R; r++) {
        __m256 mins[TILES_J];
        for (int j = 0; j < J; j++)
            mins[j] = _mm256_setzero_ps();
        const block_q4_k *b = (const block_q4_k *)(const void *)(w + r * rb);
        for (size_t i = 0; i < nb; i++) {
            __m256 dscv, dmv;
            q4_k_scales(b + i, &dscv, &dmv);
            for (int j = 0; j < J; j++)
                mins[j] = _mm256_fmadd_ps(dmv, _mm256_loadu_ps(xs + j * ldxs + 8 * i), mins[j]);
        }
        for (int j = 0; j < J; j++)
            out[r * J + j] -= hsum(mins[j]);
    }
}

/* Dequantisation: the same decoders, each weight scaled alone in ggml's float
 * order, so the bits match the scalar set. */
AVX2_INLINE static void deq_blk32(qtype t, const uint8_t *p, float *y, size_t nb)
{
    const size_t bb = blk32_bytes(t);
    for (size_t b = 0; b < nb; b++, p += bb, y += QK_0) {
        __m256i q[4];
        blk32_q(t, p, q);
        const __m256 d = bcast_f16(p), m = blk32_has_min(t) ? bcast_f16(p + 2) : _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            const __m256 v = _mm256_mul_ps(cvt(q[k]), d);
            _mm256_storeu_ps(y + 8 * k, blk32_has_min(t) ? _mm256_add_ps(v, m) : v);
        }
    }
}

AVX2_INLINE static void deq_q4_k_avx2(const block_q4_k *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b++) {
        __m256 dscv, dmv;
        q4_k_scales(b, &dscv, &dmv);
        float dsc[8], dm[8];
        _mm256_storeu_ps(dsc, dscv);
        _mm256_storeu_ps(dm, dmv);
        for (int c = 0; c < 4; c++, y += 64) {
            const __m256 s1 = _mm256_broadcast_ss(dsc + 2 * c), m1 = _mm256_broadcast_ss(dm + 2 * c);
            const __m256 s2 = _mm256_broadcast_ss(dsc + 2 * c + 1), m2 = _mm256_broadcast_ss(dm + 2 * c + 1);
            for (int j = 0; j < 4; j++) {
                __m256 lo, hi;
                q4_k_pair(b, c, j, &lo, &hi);
                _mm256_storeu_ps(y + 8 * j, _mm256_sub_ps(_mm256_mul_ps(lo, s1), m1));
                _mm256_storeu_ps(y + 32 + 8 * j, _mm256_sub_ps(_mm256_mul_ps(hi, s2), m2));
            }
        }
    }
}

AVX2_INLINE static void deq_q6_k_avx2(const block_q6_k *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b++) {
        float dsc[16];
        q6_k_scales(b, dsc);
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6_k_bytes(b, h, q);
            for (int k = 0; k < 4; k++, y += 32) {
                const __m128i lo = _mm256_castsi256_si128(q[k]), hi = _mm256_extracti128_si256(q[k], 1);
                const __m256 s0 = _mm256_broadcast_ss(dsc + 8 * h + 2 * k);
                const __m256 s1 = _mm256_broadcast_ss(dsc + 8 * h + 2 * k + 1);
                _mm256_storeu_ps(y, _mm256_mul_ps(s0, s8_ps(lo)));
                _mm256_storeu_ps(y + 8, _mm256_mul_ps(s0, s8_ps(_mm_unpackhi_epi64(lo, lo))));
                _mm256_storeu_ps(y + 16, _mm256_mul_ps(s1, s8_ps(hi)));
                _mm256_storeu_ps(y + 24, _mm256_mul_ps(s1, s8_ps(_mm_unpackhi_epi64(hi, hi))));
            }
        }
    }
}

AVX2 void qx_dequant_avx2(qtype t, const void *row, float *dst, size_t n)
{
    switch (t) {
    case QT_F32: case QT_F16: case QT_BF16: {
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, load8(t, row, i));
        if (i < n)
            quant_dequant_scalar(t, (const uint8_t *)row + i * (t == QT_F32 ? 4 : 2), dst + i, n - i);
        break;
    }
    case QT_Q4_0: deq_blk32(QT_Q4_0, row, dst, n / QK_0); break;
    case QT_Q5_0: deq_blk32(QT_Q5_0, row, dst, n / QK_0); break;
    case QT_Q8_0: deq_blk32(QT_Q8_0, row, dst, n / QK_0); break;
    case QT_Q4_1: deq_blk32(QT_Q4_1, row, dst, n / QK_0); break;
    case QT_Q5_1: deq_blk32(QT_Q5_1, row, dst, n / QK_0); break;
    case QT_Q4_K: deq_q4_k_avx2(row, dst, n / QK_K); break;
    case QT_Q6_K: deq_q6_k_avx2(row, dst, n / QK_K); break;
    default: break; /* quant_k.c's types: quant.c sends them there */
    }
}

AVX2 float qx_dot_f32_avx2(const float *a, const float *b, size_t n) { return dot_float(QT_F32, a, b, n); }

/* ---- the set's table ---- */

DIRECTS(AVX2, f32_avx2, 8, direct2_float, QT_F32, w, rb, x, ldx, len)
DIRECTS(AVX2, f16_avx2, 8, direct2_float, QT_F16, w, rb, x, ldx, len)
DIRECTS(AVX2, bf16_avx2, 8, direct2_float, QT_BF16, w, rb, x, ldx, len)

DIRECTS(AVX2, q4_0_avx2, 4, direct2_blk32, QT_Q4_0, w, rb, x, ldx, len)
DIRECTS(AVX2, q5_0_avx2, 4, direct2_blk32, QT_Q5_0, w, rb, x, ldx, len)
DIRECTS(AVX2, q8_0_avx2, 4, direct2_blk32, QT_Q8_0, w, rb, x, ldx, len)
DIRECTS(AVX2, q4_1_avx2, 4, direct2_blk32, QT_Q4_1, w, rb, x, ldx, len)
DIRECTS(AVX2, q5_1_avx2, 4, direct2_blk32, QT_Q5_1, w, rb, x, ldx, len)
DIRECTS(AVX2, q4_k_avx2, 4, direct2_q4_k, w, rb, x, ldx, xs, ldxs, len)
DIRECTS(AVX2, q6_k_avx2, 4, direct2_q6_k, w, rb, x, ldx, len)

TILE_FN(AVX2, tile_avx2, 1, 1) TILE_FN(AVX2, tile_avx2, 1, 2) TILE_FN(AVX2, tile_avx2, 1, 3)
TILE_FN(AVX2, tile_avx2, 2, 1) TILE_FN(AVX2, tile_avx2, 2, 2) TILE_FN(AVX2, tile_avx2, 2, 3)
TILE_FN(AVX2, tile_avx2, 3, 1) TILE_FN(AVX2, tile_avx2, 3, 2) TILE_FN(AVX2, tile_avx2, 3, 3)
TILE_FN(AVX2, tile_avx2, 4, 1) TILE_FN(AVX2, tile_avx2, 4, 2) TILE_FN(AVX2, tile_avx2, 4, 3)

static const tile_fn tiles_avx2[TILES_R][TILES_J] = {
    {tile_avx2_1x1, tile_avx2_1x2, tile_avx2_1x3, NULL},
    {tile_avx2_2x1, tile_avx2_2x2, tile_avx2_2x3, NULL},
    {tile_avx2_3x1, tile_avx2_3x2, tile_avx2_3x3, NULL},
    {tile_avx2_4x1, tile_avx2_4x2, tile_avx2_4x3, NULL},
};

#define KAVX2(p) {.direct = {p##_m, p##_1, p##_2, NULL, p##_4}, .r_matvec = 4, .lanes = 8, .tile_r = 4, \
                   .tile_j = 3, .tiles = tiles_avx2, .fill = fill_avx2}
/* Float types, both sets: 8-lane groups (256-bit vectors), R = 8 chains. */
#define KFLOAT(p) {.direct = {p##_m, p##_1, p##_2, NULL, p##_4}, .r_matvec = 8, .lanes = 8, .tile_r = 4, \
                    .tile_j = 3, .tiles = tiles_avx2, .fill = fill_avx2}

kernels qx_avx2_kernels(qtype t)
{
    static const kernels kavx2[] = {
        [QT_F32] = KFLOAT(f32_avx2),    [QT_F16] = KFLOAT(f16_avx2),      [QT_BF16] = KFLOAT(bf16_avx2),
        [QT_Q4_0] = KAVX2(q4_0_avx2),   [QT_Q5_0] = KAVX2(q5_0_avx2),     [QT_Q8_0] = KAVX2(q8_0_avx2),
        [QT_Q4_K] = KAVX2(q4_k_avx2),   [QT_Q6_K] = KAVX2(q6_k_avx2),
        [QT_Q4_1] = KAVX2(q4_1_avx2),   [QT_Q5_1] = KAVX2(q5_1_avx2),
    };
    return kavx2[t];
}

#else
typedef int quant_x86_avx2_unused; /* ISO C wants a declaration in every file */
#endif /* QUANT_HAVE_X86 */
