/* The x86 kernel sets of quant.h: AVX2 + FMA + F16C, and AVX-512 for the
 * row kernels (quant_x86.h; quant.c dispatches).
 *
 * Batch invariance. Every product goes through one row kernel per set and
 * type, written for J activation rows (columns of the output) at once: the
 * weights are decoded once and used for all J, and each column keeps its own
 * accumulators, fed by the same sequence of vector operations as when J = 1.
 * A matvec is the J = 1 case. So y[j][r] has the same bits whether X has 1
 * row or 64, whichever J the driver picks for it, whichever thread computes
 * row r: blocking is over rows and columns only, never over the reduction
 * (which is split only in passes of XS_COLS weights, the same for every m).
 * A session's logits on the edge then do not depend on the batch it is in,
 * and a prefill of n positions equals n single-position steps bit for bit.
 *
 * Decoding, not memory, bounds a single core here: Zen-class cores run
 * int->float conversion and shifts on two of their four vector pipes and FMA
 * on two others. So bytes are widened with vpmovzx/vpmovsx straight from
 * memory (a load and one shuffle), bit twiddling stays with and/or, blocks
 * are scaled once rather than per weight. With J columns that decoding is
 * shared: the J-column kernels are what a batch of decode steps, and a
 * prefill, runs. */
#include "quant_x86.h"

#if QUANT_HAVE_X86
#include <cpuid.h>
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

/* JCAP bounds the columns of one kernel call, and so the accumulator
 * arrays (fully unrolled, kept in registers). */
enum { JCAP = 4 };

bool quant_x86_has_avx2(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_F16C))
        return false;
    /* these also check that the OS saves the ymm registers */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static size_t block_elems(qtype t)
{
    switch (t) {
    case QT_Q4_0: case QT_Q5_0: case QT_Q8_0: case QT_Q4_1: case QT_Q5_1: return QK_0;
    case QT_Q4_K: case QT_Q6_K: return QK_K;
    default: return 1;
    }
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Q5_0's fifth bits 8 weights at a time: lane i of entry b is 0 where bit i
 * of b is set and -16 where clear, so (nibble | entry) == q - 16. */
#define Q5H(b)                                                                                                 \
    {(b)&1 ? 0 : -16, (b)&2 ? 0 : -16, (b)&4 ? 0 : -16, (b)&8 ? 0 : -16, (b)&16 ? 0 : -16, (b)&32 ? 0 : -16, \
     (b)&64 ? 0 : -16, (b)&128 ? 0 : -16}
#define Q5H4(b) Q5H(b), Q5H((b) + 1), Q5H((b) + 2), Q5H((b) + 3)
#define Q5H16(b) Q5H4(b), Q5H4((b) + 4), Q5H4((b) + 8), Q5H4((b) + 12)
static const int32_t q5_hbits[256][8] __attribute__((aligned(32))) = {
    Q5H16(0),   Q5H16(16),  Q5H16(32),  Q5H16(48),  Q5H16(64),  Q5H16(80),  Q5H16(96),  Q5H16(112),
    Q5H16(128), Q5H16(144), Q5H16(160), Q5H16(176), Q5H16(192), Q5H16(208), Q5H16(224), Q5H16(240),
};
#undef Q5H16
#undef Q5H4
#undef Q5H
AVX2_INLINE static float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The f16 at p (with 2 more readable bytes after it) in all 8 lanes. */
AVX2_INLINE static __m256 bcast_f16(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)v)));
}
AVX2_INLINE static __m256 cvt(__m256i v) { return _mm256_cvtepi32_ps(v); }
AVX2_INLINE static __m256 ld(const float *p) { return _mm256_loadu_ps(p); }

/* 8 bytes at p as 8 int32 lanes. */
AVX2_INLINE static __m256i u8x8(const uint8_t *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
}

AVX2_INLINE static __m256i s8x8(const uint8_t *p)
{
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
}

/* Low 8 int8 of v as 8 floats. */
AVX2_INLINE static __m256 s8_ps(__m128i v) { return cvt(_mm256_cvtepi8_epi32(v)); }

/* A Q4_0/Q5_0/Q8_0 block's 32 values q - offset (Q4_1/Q5_1: q), as 4 x 8
 * int32 in weight order; t is a constant after inlining. */
AVX2_INLINE static void blk32_q(qtype t, const uint8_t *blk, __m256i q[4])
{
    if (t == QT_Q8_0) {
        q[0] = s8x8(blk + 2);
        q[1] = s8x8(blk + 10);
        q[2] = s8x8(blk + 18);
        q[3] = s8x8(blk + 26);
        return;
    }
    /* qs[j]: low nibble weight j, high nibble weight j + 16 */
    const uint8_t *qs = blk + (t == QT_Q5_0 ? 6 : t == QT_Q4_1 ? 4 : t == QT_Q5_1 ? 8 : 2);
    const __m256i m4 = _mm256_set1_epi32(0xF);
    const __m256i v0 = u8x8(qs), v1 = u8x8(qs + 8);
    q[0] = _mm256_and_si256(v0, m4);
    q[1] = _mm256_and_si256(v1, m4);
    q[2] = _mm256_srli_epi32(v0, 4);
    q[3] = _mm256_srli_epi32(v1, 4);
    if (t == QT_Q4_0) {
        const __m256i k8 = _mm256_set1_epi32(8);
        q[0] = _mm256_sub_epi32(q[0], k8);
        q[1] = _mm256_sub_epi32(q[1], k8);
        q[2] = _mm256_sub_epi32(q[2], k8);
        q[3] = _mm256_sub_epi32(q[3], k8);
    } else if (t == QT_Q5_0 || t == QT_Q5_1) {
        const uint8_t *qh = blk + (t == QT_Q5_1 ? 4 : 2);
        q[0] = _mm256_or_si256(q[0], _mm256_load_si256((const __m256i *)(const void *)q5_hbits[qh[0]]));
        q[1] = _mm256_or_si256(q[1], _mm256_load_si256((const __m256i *)(const void *)q5_hbits[qh[1]]));
        q[2] = _mm256_or_si256(q[2], _mm256_load_si256((const __m256i *)(const void *)q5_hbits[qh[2]]));
        q[3] = _mm256_or_si256(q[3], _mm256_load_si256((const __m256i *)(const void *)q5_hbits[qh[3]]));
        if (t == QT_Q5_1) { /* q - 16 + 16 */
            const __m256i k16 = _mm256_set1_epi32(16);
            q[0] = _mm256_add_epi32(q[0], k16);
            q[1] = _mm256_add_epi32(q[1], k16);
            q[2] = _mm256_add_epi32(q[2], k16);
            q[3] = _mm256_add_epi32(q[3], k16);
        }
    }
}

AVX2_INLINE static size_t blk32_bytes(qtype t)
{
    return t == QT_Q8_0 ? sizeof(block_q8_0) : t == QT_Q5_0 ? sizeof(block_q5_0)
         : t == QT_Q4_1 ? sizeof(block_q4_1) : t == QT_Q5_1 ? sizeof(block_q5_1) : sizeof(block_q4_0);
}

/* Q4_1/Q5_1: (float)q * d + m, the product rounded before the sum. */
AVX2_INLINE static bool blk32_has_min(qtype t) { return t == QT_Q4_1 || t == QT_Q5_1; }


/* Q4_K's 8 scales and mins as floats in ggml's products, lane j for
 * sub-block j: d * sc[j] and dmin * m[j]. The 12 bytes are unpacked 4 at a
 * time (see scale_min_k4): sc[0..4) and m[0..4) are the low 6 bits of bytes
 * 0..3 and 4..7; sc[4..8) and m[4..8) are the nibbles of bytes 8..11 under
 * the top 2 bits of bytes 0..3 and 4..7. */
AVX2_INLINE static void q4_k_scales(const block_q4_k *b, __m256 *dsc, __m256 *dm)
{
    uint32_t u[3];
    memcpy(u, b->scales, sizeof u);
    const uint32_t lo6 = 0x3f3f3f3f, nib = 0x0f0f0f0f, top2 = 0x03030303;
    const uint64_t sc = (u[0] & lo6) | (uint64_t)((u[2] & nib) | (u[0] >> 6 & top2) << 4) << 32;
    const uint64_t mn = (u[1] & lo6) | (uint64_t)((u[2] >> 4 & nib) | (u[1] >> 6 & top2) << 4) << 32;
    const __m256 scf = cvt(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc)));
    const __m256 mnf = cvt(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn)));
    *dsc = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b->d)), scf);
    *dm = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b->dmin)), mnf);
}

/* Weights 64c + 8j .. +8 (lo) and 64c + 32 + 8j .. +8 (hi) of a Q4_K block:
 * both nibbles of qs[32c + 8j .. +8]. */
AVX2_INLINE static void q4_k_pair(const block_q4_k *b, int c, int j, __m256 *lo, __m256 *hi)
{
    const __m256i v = u8x8(b->qs + 32 * c + 8 * j);
    *lo = cvt(_mm256_and_si256(v, _mm256_set1_epi32(0xF)));
    *hi = cvt(_mm256_srli_epi32(v, 4));
}
/* xs[b] = sum of x[32b .. 32b+32) for b < n / 32. */
AVX2 static void xsums_avx2(const float *x, size_t n, float *xs)
{
    for (size_t b = 0; b < n / 32; b++, x += 32)
        xs[b] = hsum(_mm256_add_ps(_mm256_add_ps(ld(x), ld(x + 8)), _mm256_add_ps(ld(x + 16), ld(x + 24))));
}

/* Q6_K half h (128 weights) as 4 vectors of 32 int8 q - 32: q[k] holds
 * weights 32k .. 32k+32 of the half (see deq_q6_k). */
AVX2_INLINE static void q6_k_bytes(const block_q6_k *b, int h, __m256i q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)(b->ql + 64 * h));
    const __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(b->ql + 64 * h + 32));
    const __m256i hb = _mm256_loadu_si256((const __m256i *)(const void *)(b->qh + 32 * h));
    const __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
    const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
    const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30));
    const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
    q[0] = _mm256_sub_epi8(q0, k32);
    q[1] = _mm256_sub_epi8(q1, k32);
    q[2] = _mm256_sub_epi8(q2, k32);
    q[3] = _mm256_sub_epi8(q3, k32);
}


/* Q6_K's 16 scales times d, in ggml's product d * sc. */
AVX2_INLINE static void q6_k_scales(const block_q6_k *b, float dsc[16])
{
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(b->d));
    const __m128i sc = _mm_loadu_si128((const __m128i *)(const void *)b->scales);
    _mm256_storeu_ps(dsc, _mm256_mul_ps(d, s8_ps(sc)));
    _mm256_storeu_ps(dsc + 8, _mm256_mul_ps(d, s8_ps(_mm_unpackhi_epi64(sc, sc))));
}

/* 8 weights of an f32/f16/bf16 row from index i. */
AVX2_INLINE static __m256 load8(qtype t, const void *row, size_t i)
{
    if (t == QT_F32)
        return _mm256_loadu_ps((const float *)row + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)((const uint16_t *)row + i));
    if (t == QT_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* f32/f16/bf16: 64 weights per step in 8 accumulators (FMA latency x
 * throughput), then 8 at a time, then a scalar tail. */
AVX2_INLINE static float dot_float(qtype t, const void *row, const float *x, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm256_fmadd_ps(load8(t, row, i), ld(x + i), a0);
        a1 = _mm256_fmadd_ps(load8(t, row, i + 8), ld(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load8(t, row, i + 16), ld(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load8(t, row, i + 24), ld(x + i + 24), a3);
        a4 = _mm256_fmadd_ps(load8(t, row, i + 32), ld(x + i + 32), a4);
        a5 = _mm256_fmadd_ps(load8(t, row, i + 40), ld(x + i + 40), a5);
        a6 = _mm256_fmadd_ps(load8(t, row, i + 48), ld(x + i + 48), a6);
        a7 = _mm256_fmadd_ps(load8(t, row, i + 56), ld(x + i + 56), a7);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(load8(t, row, i), ld(x + i), a0);
    a0 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    a4 = _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7));
    float s = hsum(_mm256_add_ps(a0, a4));
    for (; i < n; i++) {
        const uint16_t h = t == QT_F32 ? 0 : ((const uint16_t *)row)[i];
        const float w = t == QT_F32 ? ((const float *)row)[i] : t == QT_F16 ? _cvtsh_ss(h) : bf16_to_f32(h);
        s += w * x[i];
    }
    return s;
}


/* The AVX2 set's order of sums: as the AVX-512 set's (see there) at 8
 * lanes. A row is read as groups of 8 weights in natural order, each formed
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
AVX2 static void q4_k_mins_avx2(const uint8_t *w, size_t rb, const float *xs, size_t ldxs, size_t nb, int R, int J,
                                float *out)
{
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++) {
            __m256 mins = _mm256_setzero_ps();
            const block_q4_k *b = (const block_q4_k *)(const void *)(w + r * rb);
            for (size_t i = 0; i < nb; i++) {
                __m256 dscv, dmv;
                q4_k_scales(b + i, &dscv, &dmv);
                mins = _mm256_fmadd_ps(dmv, _mm256_loadu_ps(xs + j * ldxs + 8 * i), mins);
            }
            out[r * J + j] -= hsum(mins);
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

AVX2 static void dequant_avx2(qtype t, const void *row, float *dst, size_t n)
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

AVX2 static float dot_f32_vec_avx2(const float *a, const float *b, size_t n) { return dot_float(QT_F32, a, b, n); }

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

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"), always_inline)) inline

bool quant_x86_has_avx512(void)
{
    return quant_x86_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

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
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            out[r * J + j] = mins ? _mm512_reduce_add_ps(acc[r][j]) - hsum(mins[r][j]) : _mm512_reduce_add_ps(acc[r][j]);
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

/* ------------------------------------------------------------------ */
/* Row kernels by set, type and shape                                  */

/* Direct: out[r*J + j] for rows w + r*rb (r < R), columns x + j*ldx; len in
 * blocks for quants, weights for float types; xs, ldxs: Q4_K's x sums. */
typedef void (*direct_fn)(const uint8_t *w, size_t rb, const float *x, size_t ldx, const float *xs, size_t ldxs,
                          size_t len, float *out);
/* Tile: out[r*J + j] for decoded rows s + r*lds, columns x + j*ldx, ng groups. */
typedef void (*tile_fn)(const float *s, size_t lds, const float *x, size_t ldx, size_t ng, size_t tail, float *out);

/* One function per (set, type, shape): the kernel inlined with constant
 * shape, its accumulators in registers. */
#define DIRECT_FN(attr, name, call)                                                                        \
    attr static void name(const uint8_t *w, size_t rb, const float *x, size_t ldx, const float *xs,        \
                          size_t ldxs, size_t len, float *out)                                             \
    {                                                                                                      \
        (void)xs, (void)ldxs;                                                                              \
        call;                                                                                              \
    }
#define TILE_FN(attr, kern, R, J)                                                                          \
    attr static void kern##_##R##x##J(const float *s, size_t lds, const float *x, size_t ldx, size_t ng,  \
                                      size_t tail, float *out)                                             \
    {                                                                                                      \
        kern(s, lds, x, ldx, ng, tail, R, J, out);                                                         \
    }
/* The direct shapes of a set and type: r_matvec x 1 (a matvec's rows in
 * parallel chains), and 1 x 1, 2, 4. */
#define DIRECTS(attr, t, R1, call_fn, ...)                                                                 \
    DIRECT_FN(attr, t##_m, call_fn(__VA_ARGS__, R1, 1, out))                                               \
    DIRECT_FN(attr, t##_1, call_fn(__VA_ARGS__, 1, 1, out))                                                \
    DIRECT_FN(attr, t##_2, call_fn(__VA_ARGS__, 1, 2, out))                                                \
    DIRECT_FN(attr, t##_4, call_fn(__VA_ARGS__, 1, 4, out))

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
TILE_FN(AVX2, tile_avx2, 1, 1) TILE_FN(AVX2, tile_avx2, 1, 2) TILE_FN(AVX2, tile_avx2, 1, 3)
TILE_FN(AVX2, tile_avx2, 2, 1) TILE_FN(AVX2, tile_avx2, 2, 2) TILE_FN(AVX2, tile_avx2, 2, 3)
TILE_FN(AVX2, tile_avx2, 3, 1) TILE_FN(AVX2, tile_avx2, 3, 2) TILE_FN(AVX2, tile_avx2, 3, 3)
TILE_FN(AVX2, tile_avx2, 4, 1) TILE_FN(AVX2, tile_avx2, 4, 2) TILE_FN(AVX2, tile_avx2, 4, 3)
#undef DIRECTS
#undef DIRECT_FN
#undef TILE_FN

enum { TILES_R = 4, TILES_J = 4 };
static const tile_fn tiles_512[TILES_R][TILES_J] = {
    {tile_512_1x1, tile_512_1x2, tile_512_1x3, tile_512_1x4},
    {tile_512_2x1, tile_512_2x2, tile_512_2x3, tile_512_2x4},
    {tile_512_3x1, tile_512_3x2, tile_512_3x3, tile_512_3x4},
    {tile_512_4x1, tile_512_4x2, tile_512_4x3, tile_512_4x4},
};
static const tile_fn tiles_avx2[TILES_R][TILES_J] = {
    {tile_avx2_1x1, tile_avx2_1x2, tile_avx2_1x3, NULL},
    {tile_avx2_2x1, tile_avx2_2x2, tile_avx2_2x3, NULL},
    {tile_avx2_3x1, tile_avx2_3x2, tile_avx2_3x3, NULL},
    {tile_avx2_4x1, tile_avx2_4x2, tile_avx2_4x3, NULL},
};

/* A set's kernels for one type: direct[0] = r_matvec rows x 1 column and
 * direct[J] = 1 row x J columns, and the tile path (lanes per group, tile
 * shape, decoder into scratch). */
typedef struct kernels {
    direct_fn direct[JCAP + 1];
    size_t r_matvec, lanes, tile_r, tile_j;
    const tile_fn (*tiles)[TILES_J];
    void (*fill)(qtype t, const uint8_t *row, size_t len, float *s);
} kernels;

#define K512(p) {.direct = {p##_m, p##_1, p##_2, NULL, p##_4}, .r_matvec = 8, .lanes = 16, .tile_r = 4, \
                  .tile_j = 4, .tiles = tiles_512, .fill = fill_512}
#define KAVX2(p) {.direct = {p##_m, p##_1, p##_2, NULL, p##_4}, .r_matvec = 4, .lanes = 8, .tile_r = 4, \
                   .tile_j = 3, .tiles = tiles_avx2, .fill = fill_avx2}
/* Float types, both sets: 8-lane groups (256-bit vectors), R = 8 chains. */
#define KFLOAT(p) {.direct = {p##_m, p##_1, p##_2, NULL, p##_4}, .r_matvec = 8, .lanes = 8, .tile_r = 4, \
                    .tile_j = 3, .tiles = tiles_avx2, .fill = fill_avx2}

static kernels x86_kernels(quant_kset k, qtype t)
{
    static const kernels k512[] = {
        [QT_F32] = KFLOAT(f32_avx2), [QT_F16] = KFLOAT(f16_avx2), [QT_BF16] = KFLOAT(bf16_avx2),
        [QT_Q4_0] = K512(q4_0_512), [QT_Q5_0] = K512(q5_0_512), [QT_Q8_0] = K512(q8_0_512),
        [QT_Q4_K] = K512(q4_k_512), [QT_Q6_K] = K512(q6_k_512),
        [QT_Q4_1] = K512(q4_1_512), [QT_Q5_1] = K512(q5_1_512),
    };
    static const kernels kavx2[] = {
        [QT_F32] = KFLOAT(f32_avx2),    [QT_F16] = KFLOAT(f16_avx2),      [QT_BF16] = KFLOAT(bf16_avx2),
        [QT_Q4_0] = KAVX2(q4_0_avx2),   [QT_Q5_0] = KAVX2(q5_0_avx2),     [QT_Q8_0] = KAVX2(q8_0_avx2),
        [QT_Q4_K] = KAVX2(q4_k_avx2),   [QT_Q6_K] = KAVX2(q6_k_avx2),
        [QT_Q4_1] = KAVX2(q4_1_avx2),   [QT_Q5_1] = KAVX2(q5_1_avx2),
    };
    return k == QUANT_KSET_AVX512 ? k512[t] : kavx2[t];
}
#undef K512
#undef KAVX2
#undef KFLOAT

/* ------------------------------------------------------------------ */
/* Drivers                                                             */

/* Weights per pass over the rows: wider rows are done in passes that add
 * into y, the same passes for every m. Q4_K's x sums take XS_LEN floats per
 * activation row and pass. */
enum { XS_COLS = 8192, XS_LEN = XS_COLS / 32 };

/* Activation rows per chunk (their Q4_K sums live on the stack); weight
 * rows per block of the direct driver (a block's rows stay in L1 while
 * every column group of the chunk goes by); from TILE_M columns on, rows
 * are decoded QUANT_MM_ROWS at a time into scratch and tiled. */
enum { MC = 64, RB = 16, TILE_M = 8 };

/* One pass (weights c0 .. c0+cn) of a chunk of mj columns at x (row stride
 * n), rows [r0, r1), into y (added to y after the first pass). */
typedef struct pass {
    qtype t;
    const uint8_t *w;
    size_t n, rb;        /* row length and bytes */
    const float *x;      /* the chunk's first column, pass offset applied */
    size_t mj;
    float *y;            /* the chunk's first output row */
    size_t ldy, r0, r1;
    bool add;            /* c0 > 0 */
    size_t len;          /* blocks (weights for float types) in the pass */
    const uint8_t *w0;   /* row 0 at the pass offset */
    const float *xs;     /* XS_LEN per column */
    float *scratch;      /* QUANT_MM_ROWS * cn floats */
} pass;

static void put(const pass *p, size_t j, size_t r, float v)
{
    float *o = p->y + j * p->ldy + r;
    *o = p->add ? *o + v : v;
}

static void pass_direct(const pass *p, const kernels *K)
{
    float v[RCAP * JCAP];
    if (p->mj == 1) {
        size_t r = p->r0;
        for (; r + K->r_matvec <= p->r1; r += K->r_matvec) {
            K->direct[0](p->w0 + r * p->rb, p->rb, p->x, p->n, p->xs, XS_LEN, p->len, v);
            for (size_t i = 0; i < K->r_matvec; i++)
                put(p, 0, r + i, v[i]);
        }
        for (; r < p->r1; r++) {
            K->direct[1](p->w0 + r * p->rb, p->rb, p->x, p->n, p->xs, XS_LEN, p->len, v);
            put(p, 0, r, v[0]);
        }
        return;
    }
    for (size_t rr = p->r0; rr < p->r1; rr += RB) {
        const size_t re = p->r1 - rr < RB ? p->r1 : rr + RB;
        for (size_t j0 = 0; j0 < p->mj;) {
            size_t J = p->mj - j0 < JCAP ? p->mj - j0 : JCAP;
            while (!K->direct[J])
                J--;
            for (size_t r = rr; r < re; r++) {
                K->direct[J](p->w0 + r * p->rb, p->rb, p->x + j0 * p->n, p->n, p->xs + j0 * XS_LEN, XS_LEN, p->len,
                             v);
                for (size_t j = 0; j < J; j++)
                    put(p, j0 + j, r, v[j]);
            }
            j0 += J;
        }
    }
}

/* QUANT_MM_ROWS rows at a time decoded into scratch (f32 rows read where
 * they are), then tiles (float types' rows may end in a partial group). */
static void pass_tiles(const pass *p, const kernels *K)
{
    const size_t cn = p->len * block_elems(p->t), ng = cn / K->lanes, tail = cn % K->lanes;
    const bool in_place = p->t == QT_F32;
    const size_t lds = in_place ? p->rb / sizeof(float) : cn;
    for (size_t rr = p->r0; rr < p->r1; rr += QUANT_MM_ROWS) {
        const size_t nr = p->r1 - rr < QUANT_MM_ROWS ? p->r1 - rr : QUANT_MM_ROWS;
        const float *rows = in_place ? (const float *)(const void *)(p->w0 + rr * p->rb) : p->scratch;
        for (size_t i = 0; i < nr && !in_place; i++)
            K->fill(p->t, p->w0 + (rr + i) * p->rb, p->len, p->scratch + i * cn);
        for (size_t i0 = 0; i0 < nr; i0 += K->tile_r) {
            const size_t R = nr - i0 < K->tile_r ? nr - i0 : K->tile_r;
            for (size_t j0 = 0; j0 < p->mj; j0 += K->tile_j) {
                const size_t J = p->mj - j0 < K->tile_j ? p->mj - j0 : K->tile_j;
                float v[TILES_R * TILES_J];
                K->tiles[R - 1][J - 1](rows + i0 * lds, lds, p->x + j0 * p->n, p->n, ng, tail, v);
                if (p->t == QT_Q4_K)
                    q4_k_mins_avx2(p->w0 + (rr + i0) * p->rb, p->rb, p->xs + j0 * XS_LEN, XS_LEN, p->len, (int)R,
                                   (int)J, v);
                for (size_t i = 0; i < R; i++)
                    for (size_t j = 0; j < J; j++)
                        put(p, j0 + j, rr + i0 + i, v[i * J + j]);
            }
        }
    }
}

/* m = 1, apart from the general driver: a small stack frame (the general
 * one's Q4_K sums take 64 KB, probed page by page on every call). */
__attribute__((noinline)) static void matvec_x86(const kernels *K, qtype t, const void *w, size_t n, const float *x,
                                                 float *y, size_t r0, size_t r1)
{
    _Alignas(64) float xa[XS_COLS];
    float xs[XS_LEN];
    pass p = {.t = t, .w = w, .n = n, .rb = quant_row_bytes(t, n), .mj = 1, .y = y, .ldy = 0, .r0 = r0, .r1 = r1,
              .xs = xs};
    for (size_t c0 = 0; c0 == 0 || c0 < n; c0 += XS_COLS) { /* n = 0: one empty pass, y = 0 */
        const size_t cn = n - c0 < XS_COLS ? n - c0 : XS_COLS;
        p.x = x + c0;
        p.add = c0 > 0;
        p.len = cn / block_elems(t);
        p.w0 = (const uint8_t *)w + quant_row_bytes(t, c0);
        /* copied when misaligned (split loads cost the 512-bit kernels up to
         * a third of their speed); the same values */
        if ((uintptr_t)p.x % 64) {
            memcpy(xa, p.x, cn * sizeof *xa);
            p.x = xa;
        }
        if (t == QT_Q4_K)
            xsums_avx2(p.x, cn, xs);
        pass_direct(&p, K);
    }
}

__attribute__((noinline)) static void matmul_x86(const kernels *K, qtype t, const void *w, size_t n, const float *x,
                                                 size_t m, float *y, size_t ldy, size_t r0, size_t r1,
                                                 float *scratch)
{
    float xs[MC * XS_LEN];
    pass p = {.t = t, .w = w, .n = n, .rb = quant_row_bytes(t, n), .ldy = ldy, .r0 = r0, .r1 = r1, .xs = xs,
              .scratch = scratch};
    for (size_t j0 = 0; j0 < m; j0 += MC) {
        p.mj = m - j0 < MC ? m - j0 : MC;
        p.y = y + j0 * ldy;
        for (size_t c0 = 0; c0 == 0 || c0 < n; c0 += XS_COLS) {
            const size_t cn = n - c0 < XS_COLS ? n - c0 : XS_COLS;
            p.x = x + j0 * n + c0;
            p.add = c0 > 0;
            p.len = cn / block_elems(t);
            p.w0 = (const uint8_t *)w + quant_row_bytes(t, c0);
            if (t == QT_Q4_K)
                for (size_t j = 0; j < p.mj; j++)
                    xsums_avx2(p.x + j * n, cn, xs + j * XS_LEN);
            if (p.mj < TILE_M || !scratch)
                pass_direct(&p, K);
            else
                pass_tiles(&p, K);
        }
    }
}

void quant_x86_matmul(quant_kset k, qtype t, const void *w, size_t n, const float *x, size_t m, float *y,
                      size_t ldy, size_t r0, size_t r1, float *scratch)
{
    const kernels K = x86_kernels(k, t);
    if (m == 1)
        matvec_x86(&K, t, w, n, x, y, r0, r1);
    else
        matmul_x86(&K, t, w, n, x, m, y, ldy, r0, r1, scratch);
}

void quant_x86_dequant(qtype t, const void *row, float *dst, size_t n)
{
    dequant_avx2(t, row, dst, n);
}

float quant_x86_dot_f32(const float *a, const float *b, size_t n)
{
    return dot_f32_vec_avx2(a, b, n);
}

#else
typedef int quant_x86_unused; /* ISO C wants a declaration in every file */
#endif /* QUANT_HAVE_X86 */
