/* CPU weight kernels: dequantisation, dot products, matvec (decode) and
 * matmul (prefill) over the weight types of quant.h.
 *
 * Kernel sets (quant_impl.h): portable scalar C; x86-64 AVX2+FMA+F16C; and
 * AVX-512 for the matvec and matmul inner loops. The x86 sets are compiled
 * with per-function target attributes (the file needs no -mavx2) and the best
 * one the CPU runs is chosen once at run time. All read weights as stored and
 * multiply them by float activations; x is never quantised, so results stay
 * within float rounding of dequantise-then-multiply (what a GPU implementation
 * reproduces). The 512-bit kernels want 64-byte aligned activations: matvec
 * copies a misaligned x to the stack, matmul falls back to the AVX2 tile.
 *
 * Dequantisation formulas and their float evaluation order are ggml's:
 *   q4_0  (float)(q - 8) * d          q5_0  (float)(q - 16) * d
 *   q8_0  (float)q * d                q6_k  (d * sc) * (float)(q - 32)
 *   q4_k  (d * sc) * q - dmin * m, the product rounded before the subtraction
 * so both sets' quant_dequant_row give the same bits. */
#include "quant.h"
#include "quant_impl.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* HINGE_QUANT_NO_SIMD builds the scalar set alone, as on a non-x86 CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(HINGE_QUANT_NO_SIMD)
#define QUANT_HAVE_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define QUANT_HAVE_X86 0
#endif

/* ------------------------------------------------------------------ */
/* Shared helpers                                                      */

/* Start of weight e (a multiple of the block size) of a row. */
static const uint8_t *row_at(qtype t, const void *row, size_t e)
{
    return (const uint8_t *)row + quant_row_bytes(t, e);
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Q4_K's 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes:
 * j < 4 in the low 6 bits of bytes j and j+4; j >= 4 split between the
 * nibbles of byte j+4 and the top 2 bits of bytes j-4 (scale) and j (min). */
static void scale_min_k4(int j, const uint8_t *q, float *sc, float *m)
{
    if (j < 4) {
        *sc = (float)(q[j] & 63);
        *m = (float)(q[j + 4] & 63);
    } else {
        *sc = (float)((q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4);
        *m = (float)((q[j + 4] >> 4) | (q[j] >> 6) << 4);
    }
}

static float sum8(const float s[8])
{
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

/* ------------------------------------------------------------------ */
/* Scalar set                                                          */

static void deq_q4_0(const block_q4_0 *b, float *y)
{
    const float d = quant_f16_to_f32(b->d);
    for (int j = 0; j < QK_0 / 2; j++) {
        y[j] = (float)((b->qs[j] & 0xF) - 8) * d;
        y[j + QK_0 / 2] = (float)((b->qs[j] >> 4) - 8) * d;
    }
}

static void deq_q5_0(const block_q5_0 *b, float *y)
{
    const float d = quant_f16_to_f32(b->d);
    const uint32_t qh = load_u32le(b->qh);
    for (int j = 0; j < QK_0 / 2; j++) {
        const int h0 = (int)(qh >> j & 1) << 4;
        const int h1 = (int)(qh >> (j + QK_0 / 2) & 1) << 4;
        y[j] = (float)(((b->qs[j] & 0xF) | h0) - 16) * d;
        y[j + QK_0 / 2] = (float)(((b->qs[j] >> 4) | h1) - 16) * d;
    }
}

static void deq_q8_0(const block_q8_0 *b, float *y)
{
    const float d = quant_f16_to_f32(b->d);
    for (int j = 0; j < QK_0; j++)
        y[j] = (float)b->qs[j] * d;
}

/* 4 chunks of 64: chunk c has sub-blocks 2c (low nibbles of qs[32c..32c+32))
 * and 2c+1 (high nibbles). */
static void deq_q4_k(const block_q4_k *b, float *y)
{
    const float d = quant_f16_to_f32(b->d), dmin = quant_f16_to_f32(b->dmin);
    for (int c = 0; c < 4; c++) {
        const uint8_t *q = b->qs + 32 * c;
        float sc, m;
        scale_min_k4(2 * c, b->scales, &sc, &m);
        const float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(2 * c + 1, b->scales, &sc, &m);
        const float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) {
            const float p1 = d1 * (float)(q[l] & 0xF); /* separate statements: no FMA contraction */
            const float p2 = d2 * (float)(q[l] >> 4);
            y[64 * c + l] = p1 - m1;
            y[64 * c + 32 + l] = p2 - m2;
        }
    }
}

/* 2 halves of 128: weight 32k+l of half h (k < 4, l < 32) has low 4 bits in
 * ql[64h + 32(k&1) + l] (low nibble for k < 2, high for k >= 2), high 2 bits
 * at bit 2k of qh[32h + l], and scale scales[8h + 2k + l/16]. */
static void deq_q6_k(const block_q6_k *b, float *y)
{
    const float d = quant_f16_to_f32(b->d);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const int8_t *sc = b->scales + 8 * h;
        float *o = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            const int s = l / 16;
            const int q1 = ((ql[l] & 0xF) | (qh[l] & 3) << 4) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (qh[l] >> 2 & 3) << 4) - 32;
            const int q3 = ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32;
            o[l] = d * (float)sc[s] * (float)q1;
            o[l + 32] = d * (float)sc[s + 2] * (float)q2;
            o[l + 64] = d * (float)sc[s + 4] * (float)q3;
            o[l + 96] = d * (float)sc[s + 6] * (float)q4;
        }
    }
}

static void dequant_scalar(qtype t, const void *row, float *dst, size_t n)
{
    switch (t) {
    case QT_F32: memcpy(dst, row, n * sizeof *dst); break;
    case QT_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = quant_f16_to_f32(((const uint16_t *)row)[i]);
        break;
    case QT_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = bf16_to_f32(((const uint16_t *)row)[i]);
        break;
    case QT_Q4_0:
        for (size_t b = 0; b < n / QK_0; b++)
            deq_q4_0((const block_q4_0 *)row + b, dst + b * QK_0);
        break;
    case QT_Q5_0:
        for (size_t b = 0; b < n / QK_0; b++)
            deq_q5_0((const block_q5_0 *)row + b, dst + b * QK_0);
        break;
    case QT_Q8_0:
        for (size_t b = 0; b < n / QK_0; b++)
            deq_q8_0((const block_q8_0 *)row + b, dst + b * QK_0);
        break;
    case QT_Q4_K:
        for (size_t b = 0; b < n / QK_K; b++)
            deq_q4_k((const block_q4_k *)row + b, dst + b * QK_K);
        break;
    case QT_Q6_K:
        for (size_t b = 0; b < n / QK_K; b++)
            deq_q6_k((const block_q6_k *)row + b, dst + b * QK_K);
        break;
    }
}

static float dot_f32_scalar(const float *a, const float *b, size_t n)
{
    float s[8] = {0};
    for (size_t i = 0; i < n; i++)
        s[i & 7] += a[i] * b[i];
    return sum8(s);
}

/* Decodes QK_K weights at a time into a stack buffer (a whole number of
 * blocks of every type) and accumulates in 8 lanes. */
static float dot_row_scalar(qtype t, const void *row, const float *x, size_t n)
{
    float buf[QK_K];
    float s[8] = {0};
    for (size_t e = 0; e < n; e += QK_K) {
        const size_t c = n - e < QK_K ? n - e : QK_K;
        const float *w = buf;
        if (t == QT_F32)
            w = (const float *)row + e;
        else
            dequant_scalar(t, row_at(t, row, e), buf, c);
        for (size_t i = 0; i < c; i++)
            s[i & 7] += w[i] * x[e + i];
    }
    return sum8(s);
}

/* y[j*ldy + i] = dot(w[i*n ..], x[j*n ..]) for i < nr, j < m. */
static void tile_scalar(const float *w, size_t nr, size_t n, const float *x, size_t m, float *y, size_t ldy)
{
    for (size_t j = 0; j < m; j++)
        for (size_t i = 0; i < nr; i++)
            y[j * ldy + i] = dot_f32_scalar(w + i * n, x + j * n, n);
}

/* ------------------------------------------------------------------ */
/* AVX2 + FMA + F16C set                                               */
/*
 * Decoding, not memory, bounds a single core here: Zen-class cores run
 * int->float conversion and shifts on two of their four vector pipes and FMA
 * on two others. So bytes are widened with vpmovzx/vpmovsx straight from
 * memory (a load and one shuffle), bit twiddling stays with and/or, blocks are
 * scaled once rather than per weight, and no loop over __m256 arrays is left
 * for the compiler to spill. */

#if QUANT_HAVE_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

static bool cpu_has_avx2(void)
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
    case QT_Q4_0: case QT_Q5_0: case QT_Q8_0: return QK_0;
    case QT_Q4_K: case QT_Q6_K: return QK_K;
    default: return 1;
    }
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

/* A Q4_0/Q5_0/Q8_0 block's 32 values q - offset, as 4 x 8 int32 in weight
 * order; t is a constant after inlining. */
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
    const uint8_t *qs = blk + (t == QT_Q5_0 ? 6 : 2);
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
    } else {
        const uint8_t *qh = blk + 2;
        q[0] = _mm256_or_si256(q[0], _mm256_load_si256((const __m256i *)(const void *)q5_hbits[qh[0]]));
        q[1] = _mm256_or_si256(q[1], _mm256_load_si256((const __m256i *)(const void *)q5_hbits[qh[1]]));
        q[2] = _mm256_or_si256(q[2], _mm256_load_si256((const __m256i *)(const void *)q5_hbits[qh[2]]));
        q[3] = _mm256_or_si256(q[3], _mm256_load_si256((const __m256i *)(const void *)q5_hbits[qh[3]]));
    }
}

/* sum over 32 of q * x, 8 lanes; one FMA chain keeps the cvt pipes for cvt. */
AVX2_INLINE static __m256 dot32(const __m256i q[4], const float *x)
{
    __m256 p = _mm256_mul_ps(cvt(q[0]), ld(x));
    p = _mm256_fmadd_ps(cvt(q[1]), ld(x + 8), p);
    p = _mm256_fmadd_ps(cvt(q[2]), ld(x + 16), p);
    return _mm256_fmadd_ps(cvt(q[3]), ld(x + 24), p);
}

AVX2_INLINE static size_t blk32_bytes(qtype t)
{
    return t == QT_Q8_0 ? sizeof(block_q8_0) : t == QT_Q5_0 ? sizeof(block_q5_0) : sizeof(block_q4_0);
}

/* Dot of nb blocks of type t with x: two blocks per step. */
AVX2_INLINE static float dot_blk32(qtype t, const uint8_t *row, const float *x, size_t nb)
{
    const size_t bb = blk32_bytes(t);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256i q[4];
    size_t i = 0;
    for (; i + 2 <= nb; i += 2, row += 2 * bb, x += 64) {
        blk32_q(t, row, q);
        acc0 = _mm256_fmadd_ps(dot32(q, x), bcast_f16(row), acc0);
        blk32_q(t, row + bb, q);
        acc1 = _mm256_fmadd_ps(dot32(q, x + 32), bcast_f16(row + bb), acc1);
    }
    if (i < nb) {
        blk32_q(t, row, q);
        acc0 = _mm256_fmadd_ps(dot32(q, x), bcast_f16(row), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

AVX2 static float dot_q4_0_avx2(const void *row, const float *x, size_t nb) { return dot_blk32(QT_Q4_0, row, x, nb); }
AVX2 static float dot_q5_0_avx2(const void *row, const float *x, size_t nb) { return dot_blk32(QT_Q5_0, row, x, nb); }
AVX2 static float dot_q8_0_avx2(const void *row, const float *x, size_t nb) { return dot_blk32(QT_Q8_0, row, x, nb); }

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

/* Factored: sum_j d*sc[j] * sum(q x) - sum_j dmin*m[j] * xs[j], xs[j] the
 * sum of x over sub-block j (32 weights), from the caller. A quarter fewer
 * vector ops than forming each weight; the rounding error is relative to
 * d*sc*|q x| + dmin*m*|x| instead of |w x|, the same size for real blocks,
 * where neither term dwarfs the weight range. */
AVX2 static float dot_q4_k_avx2(const void *row, const float *x, const float *xs, size_t nb)
{
    const block_q4_k *b = row;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, mins = acc0;
    for (size_t i = 0; i < nb; i++, b++, xs += 8) {
        __m256 dscv, dmv;
        q4_k_scales(b, &dscv, &dmv);
        mins = _mm256_fmadd_ps(dmv, _mm256_loadu_ps(xs), mins);
        float dsc[8];
        _mm256_storeu_ps(dsc, dscv);
        for (int c = 0; c < 4; c++, x += 64) {
            __m256 lo, hi, plo, phi;
            q4_k_pair(b, c, 0, &lo, &hi);
            plo = _mm256_mul_ps(lo, ld(x));
            phi = _mm256_mul_ps(hi, ld(x + 32));
            q4_k_pair(b, c, 1, &lo, &hi);
            plo = _mm256_fmadd_ps(lo, ld(x + 8), plo);
            phi = _mm256_fmadd_ps(hi, ld(x + 40), phi);
            q4_k_pair(b, c, 2, &lo, &hi);
            plo = _mm256_fmadd_ps(lo, ld(x + 16), plo);
            phi = _mm256_fmadd_ps(hi, ld(x + 48), phi);
            q4_k_pair(b, c, 3, &lo, &hi);
            plo = _mm256_fmadd_ps(lo, ld(x + 24), plo);
            phi = _mm256_fmadd_ps(hi, ld(x + 56), phi);
            acc0 = _mm256_fmadd_ps(plo, _mm256_broadcast_ss(dsc + 2 * c), acc0);
            acc1 = _mm256_fmadd_ps(phi, _mm256_broadcast_ss(dsc + 2 * c + 1), acc1);
        }
    }
    return hsum(_mm256_sub_ps(_mm256_add_ps(acc0, acc1), mins));
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

/* acc += s[0] * sum(q[0..16) x[0..16)) + s[1] * sum(q[16..32) x[16..32)). */
AVX2_INLINE static __m256 q6_k_part(__m256i q, const float *x, const float *s, __m256 acc)
{
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m256 p0 = _mm256_mul_ps(s8_ps(lo), ld(x));
    __m256 p1 = _mm256_mul_ps(s8_ps(hi), ld(x + 16));
    p0 = _mm256_fmadd_ps(s8_ps(_mm_unpackhi_epi64(lo, lo)), ld(x + 8), p0);
    p1 = _mm256_fmadd_ps(s8_ps(_mm_unpackhi_epi64(hi, hi)), ld(x + 24), p1);
    acc = _mm256_fmadd_ps(p0, _mm256_broadcast_ss(s), acc);
    return _mm256_fmadd_ps(p1, _mm256_broadcast_ss(s + 1), acc);
}

/* Q6_K's 16 scales times d, in ggml's product d * sc. */
AVX2_INLINE static void q6_k_scales(const block_q6_k *b, float dsc[16])
{
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(b->d));
    const __m128i sc = _mm_loadu_si128((const __m128i *)(const void *)b->scales);
    _mm256_storeu_ps(dsc, _mm256_mul_ps(d, s8_ps(sc)));
    _mm256_storeu_ps(dsc + 8, _mm256_mul_ps(d, s8_ps(_mm_unpackhi_epi64(sc, sc))));
}

AVX2 static float dot_q6_k_avx2(const void *row, const float *x, size_t nb)
{
    const block_q6_k *b = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < nb; i++, b++) {
        float dsc[16];
        q6_k_scales(b, dsc);
        for (int h = 0; h < 2; h++, x += 128) {
            __m256i q[4];
            q6_k_bytes(b, h, q);
            const float *s = dsc + 8 * h;
            a0 = q6_k_part(q[0], x, s, a0);
            a1 = q6_k_part(q[1], x + 32, s + 2, a1);
            a2 = q6_k_part(q[2], x + 64, s + 4, a2);
            a3 = q6_k_part(q[3], x + 96, s + 6, a3);
        }
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
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

AVX2 static float dot_f32_avx2(const void *row, const float *x, size_t n) { return dot_float(QT_F32, row, x, n); }
AVX2 static float dot_f16_avx2(const void *row, const float *x, size_t n) { return dot_float(QT_F16, row, x, n); }
AVX2 static float dot_bf16_avx2(const void *row, const float *x, size_t n) { return dot_float(QT_BF16, row, x, n); }

/* Dequantisation: the same decoders, each weight scaled alone in ggml's float
 * order, so the bits match the scalar set. */
AVX2_INLINE static void deq_blk32(qtype t, const uint8_t *p, float *y, size_t nb)
{
    const size_t bb = blk32_bytes(t);
    for (size_t b = 0; b < nb; b++, p += bb, y += QK_0) {
        __m256i q[4];
        blk32_q(t, p, q);
        const __m256 d = bcast_f16(p);
        _mm256_storeu_ps(y, _mm256_mul_ps(cvt(q[0]), d));
        _mm256_storeu_ps(y + 8, _mm256_mul_ps(cvt(q[1]), d));
        _mm256_storeu_ps(y + 16, _mm256_mul_ps(cvt(q[2]), d));
        _mm256_storeu_ps(y + 24, _mm256_mul_ps(cvt(q[3]), d));
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
            dequant_scalar(t, (const uint8_t *)row + i * (t == QT_F32 ? 4 : 2), dst + i, n - i);
        break;
    }
    case QT_Q4_0: deq_blk32(QT_Q4_0, row, dst, n / QK_0); break;
    case QT_Q5_0: deq_blk32(QT_Q5_0, row, dst, n / QK_0); break;
    case QT_Q8_0: deq_blk32(QT_Q8_0, row, dst, n / QK_0); break;
    case QT_Q4_K: deq_q4_k_avx2(row, dst, n / QK_K); break;
    case QT_Q6_K: deq_q6_k_avx2(row, dst, n / QK_K); break;
    }
}

AVX2 static float dot_f32_vec_avx2(const float *a, const float *b, size_t n) { return dot_float(QT_F32, a, b, n); }

/* 4 rows of w against 3 rows of x, 8 columns per step: 12 accumulators,
 * 7 loads per 12 FMAs. n a multiple of 8. */
AVX2 static void kern_4x3(const float *w, size_t n, const float *x, float *y, size_t ldy)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    const float *w0 = w, *w1 = w + n, *w2 = w + 2 * n, *w3 = w + 3 * n;
    const float *x0 = x, *x1 = x + n, *x2 = x + 2 * n;
    for (size_t k = 0; k < n; k += 8) {
        const __m256 a = _mm256_loadu_ps(x0 + k), b = _mm256_loadu_ps(x1 + k), c = _mm256_loadu_ps(x2 + k);
        __m256 v = _mm256_loadu_ps(w0 + k);
        c00 = _mm256_fmadd_ps(v, a, c00);
        c01 = _mm256_fmadd_ps(v, b, c01);
        c02 = _mm256_fmadd_ps(v, c, c02);
        v = _mm256_loadu_ps(w1 + k);
        c10 = _mm256_fmadd_ps(v, a, c10);
        c11 = _mm256_fmadd_ps(v, b, c11);
        c12 = _mm256_fmadd_ps(v, c, c12);
        v = _mm256_loadu_ps(w2 + k);
        c20 = _mm256_fmadd_ps(v, a, c20);
        c21 = _mm256_fmadd_ps(v, b, c21);
        c22 = _mm256_fmadd_ps(v, c, c22);
        v = _mm256_loadu_ps(w3 + k);
        c30 = _mm256_fmadd_ps(v, a, c30);
        c31 = _mm256_fmadd_ps(v, b, c31);
        c32 = _mm256_fmadd_ps(v, c, c32);
    }
    y[0] = hsum(c00), y[1] = hsum(c10), y[2] = hsum(c20), y[3] = hsum(c30);
    y += ldy;
    y[0] = hsum(c01), y[1] = hsum(c11), y[2] = hsum(c21), y[3] = hsum(c31);
    y += ldy;
    y[0] = hsum(c02), y[1] = hsum(c12), y[2] = hsum(c22), y[3] = hsum(c32);
}

/* ------------------------------------------------------------------ */
/* AVX-512 (F, BW, VL, DQ) set                                         */
/*
 * The matvec row kernels and the matmul tile at 16 lanes; everything else is
 * the AVX2 code. Cores with full-width 512-bit units (Zen 5, Sapphire Rapids)
 * then spend half the decode work per weight, which is what bounds the AVX2
 * kernels on one core. Same decoders, same order of sums per lane group. */

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"), always_inline)) inline

static bool cpu_has_avx512(void)
{
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
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
    const __m512i v = u8x16(blk + (t == QT_Q5_0 ? 6 : 2));
    const __m512i lo = _mm512_and_si512(v, _mm512_set1_epi32(0xF)), hi = _mm512_srli_epi32(v, 4);
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

AVX512_INLINE static __m512 dot32_16(__m512i q0, __m512i q1, const float *x)
{
    return _mm512_fmadd_ps(cvt16(q1), ld16(x + 16), _mm512_mul_ps(cvt16(q0), ld16(x)));
}

AVX512_INLINE static float dot_blk32_512(qtype t, const uint8_t *row, const float *x, size_t nb)
{
    const size_t bb = blk32_bytes(t);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m512i q0, q1;
    size_t i = 0;
    for (; i + 2 <= nb; i += 2, row += 2 * bb, x += 64) {
        blk32_q16(t, row, &q0, &q1);
        acc0 = _mm512_fmadd_ps(dot32_16(q0, q1, x), bcast16_f16(row), acc0);
        blk32_q16(t, row + bb, &q0, &q1);
        acc1 = _mm512_fmadd_ps(dot32_16(q0, q1, x + 32), bcast16_f16(row + bb), acc1);
    }
    if (i < nb) {
        blk32_q16(t, row, &q0, &q1);
        acc0 = _mm512_fmadd_ps(dot32_16(q0, q1, x), bcast16_f16(row), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

AVX512 static float dot_q4_0_512(const void *row, const float *x, size_t nb)
{
    return dot_blk32_512(QT_Q4_0, row, x, nb);
}

AVX512 static float dot_q5_0_512(const void *row, const float *x, size_t nb)
{
    return dot_blk32_512(QT_Q5_0, row, x, nb);
}

AVX512 static float dot_q8_0_512(const void *row, const float *x, size_t nb)
{
    return dot_blk32_512(QT_Q8_0, row, x, nb);
}

/* As dot_q4_k_avx2: chunk c's 32 bytes give sub-blocks 2c (low nibbles) and
 * 2c+1 (high), 16 weights per vector. */
AVX512 static float dot_q4_k_512(const void *row, const float *x, const float *xs, size_t nb)
{
    const block_q4_k *b = row;
    const __m512i m4 = _mm512_set1_epi32(0xF);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    __m256 mins = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++, b++, xs += 8) {
        __m256 dscv, dmv;
        q4_k_scales(b, &dscv, &dmv);
        mins = _mm256_fmadd_ps(dmv, _mm256_loadu_ps(xs), mins);
        float dsc[8];
        _mm256_storeu_ps(dsc, dscv);
        for (int c = 0; c < 4; c++, x += 64) {
            const __m512i v0 = u8x16(b->qs + 32 * c), v1 = u8x16(b->qs + 32 * c + 16);
            __m512 plo = _mm512_mul_ps(cvt16(_mm512_and_si512(v0, m4)), ld16(x));
            __m512 phi = _mm512_mul_ps(cvt16(_mm512_srli_epi32(v0, 4)), ld16(x + 32));
            plo = _mm512_fmadd_ps(cvt16(_mm512_and_si512(v1, m4)), ld16(x + 16), plo);
            phi = _mm512_fmadd_ps(cvt16(_mm512_srli_epi32(v1, 4)), ld16(x + 48), phi);
            acc0 = _mm512_fmadd_ps(plo, _mm512_set1_ps(dsc[2 * c]), acc0);
            acc1 = _mm512_fmadd_ps(phi, _mm512_set1_ps(dsc[2 * c + 1]), acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - hsum(mins);
}

/* acc += s * sum(q x) over 16 weights. */
AVX512_INLINE static __m512 q6_k_group_512(__m512i q, const float *x, float s, __m512 acc)
{
    return _mm512_fmadd_ps(_mm512_mul_ps(cvt16(q), ld16(x)), _mm512_set1_ps(s), acc);
}

/* Q6_K 16 weights at a time straight from ql/qh: for l in [L, L+16) of half
 * h, group k is weight 32k + l, with scale 8h + 2k + L/16 (see deq_q6_k). */
AVX512 static float dot_q6_k_512(const void *row, const float *x, size_t nb)
{
    const block_q6_k *b = row;
    const __m512i m4 = _mm512_set1_epi32(0xF), m30 = _mm512_set1_epi32(0x30), k32 = _mm512_set1_epi32(32);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < nb; i++, b++) {
        float dsc[16];
        q6_k_scales(b, dsc);
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l += 16) {
                const __m512i la = u8x16(b->ql + 64 * h + l), lb = u8x16(b->ql + 64 * h + 32 + l);
                const __m512i hb = u8x16(b->qh + 32 * h + l);
                const __m512i q0 = _mm512_or_si512(_mm512_and_si512(la, m4),
                                                   _mm512_and_si512(_mm512_slli_epi32(hb, 4), m30));
                const __m512i q1 = _mm512_or_si512(_mm512_and_si512(lb, m4),
                                                   _mm512_and_si512(_mm512_slli_epi32(hb, 2), m30));
                const __m512i q2 = _mm512_or_si512(_mm512_srli_epi32(la, 4), _mm512_and_si512(hb, m30));
                const __m512i q3 = _mm512_or_si512(_mm512_srli_epi32(lb, 4),
                                                   _mm512_and_si512(_mm512_srli_epi32(hb, 2), m30));
                const float *s = dsc + 8 * h + l / 16, *xl = x + 128 * h + l;
                a0 = q6_k_group_512(_mm512_sub_epi32(q0, k32), xl, s[0], a0);
                a1 = q6_k_group_512(_mm512_sub_epi32(q1, k32), xl + 32, s[2], a1);
                a2 = q6_k_group_512(_mm512_sub_epi32(q2, k32), xl + 64, s[4], a2);
                a3 = q6_k_group_512(_mm512_sub_epi32(q3, k32), xl + 96, s[6], a3);
            }
        x += QK_K;
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* kern_4x3 at 16 columns per step; n a multiple of 16. */
AVX512 static void kern_4x3_512(const float *w, size_t n, const float *x, float *y, size_t ldy)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m512 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    const float *w0 = w, *w1 = w + n, *w2 = w + 2 * n, *w3 = w + 3 * n;
    const float *x0 = x, *x1 = x + n, *x2 = x + 2 * n;
    for (size_t k = 0; k < n; k += 16) {
        const __m512 a = ld16(x0 + k), b = ld16(x1 + k), c = ld16(x2 + k);
        __m512 v = ld16(w0 + k);
        c00 = _mm512_fmadd_ps(v, a, c00);
        c01 = _mm512_fmadd_ps(v, b, c01);
        c02 = _mm512_fmadd_ps(v, c, c02);
        v = ld16(w1 + k);
        c10 = _mm512_fmadd_ps(v, a, c10);
        c11 = _mm512_fmadd_ps(v, b, c11);
        c12 = _mm512_fmadd_ps(v, c, c12);
        v = ld16(w2 + k);
        c20 = _mm512_fmadd_ps(v, a, c20);
        c21 = _mm512_fmadd_ps(v, b, c21);
        c22 = _mm512_fmadd_ps(v, c, c22);
        v = ld16(w3 + k);
        c30 = _mm512_fmadd_ps(v, a, c30);
        c31 = _mm512_fmadd_ps(v, b, c31);
        c32 = _mm512_fmadd_ps(v, c, c32);
    }
    y[0] = _mm512_reduce_add_ps(c00), y[1] = _mm512_reduce_add_ps(c10);
    y[2] = _mm512_reduce_add_ps(c20), y[3] = _mm512_reduce_add_ps(c30);
    y += ldy;
    y[0] = _mm512_reduce_add_ps(c01), y[1] = _mm512_reduce_add_ps(c11);
    y[2] = _mm512_reduce_add_ps(c21), y[3] = _mm512_reduce_add_ps(c31);
    y += ldy;
    y[0] = _mm512_reduce_add_ps(c02), y[1] = _mm512_reduce_add_ps(c12);
    y[2] = _mm512_reduce_add_ps(c22), y[3] = _mm512_reduce_add_ps(c32);
}

/* ------------------------------------------------------------------ */
/* x86 drivers: pick a set's kernels, walk the rows                    */

typedef float (*row_dot_fn)(const void *row, const float *x, size_t len);
typedef float (*q4_k_dot_fn)(const void *row, const float *x, const float *xs, size_t nb);

/* Set k's row kernel for t other than Q4_K, and its length argument: blocks
 * for quants, weights for float types. */
static row_dot_fn x86_dot_fn(quant_kset k, qtype t, size_t n, size_t *len)
{
    const bool wide = k == QUANT_KSET_AVX512;
    *len = n / block_elems(t);
    switch (t) {
    case QT_F16: return dot_f16_avx2;
    case QT_BF16: return dot_bf16_avx2;
    case QT_Q4_0: return wide ? dot_q4_0_512 : dot_q4_0_avx2;
    case QT_Q5_0: return wide ? dot_q5_0_512 : dot_q5_0_avx2;
    case QT_Q8_0: return wide ? dot_q8_0_512 : dot_q8_0_avx2;
    case QT_Q6_K: return wide ? dot_q6_k_512 : dot_q6_k_avx2;
    default: return dot_f32_avx2;
    }
}

/* Columns per pass over the rows. x's slice is copied to an aligned stack
 * buffer unless it is 64-byte aligned already (split loads cost the 512-bit
 * kernels up to a third of their speed), and Q4_K's x sums take XS_COLS / 32
 * floats. Wider rows are done in passes that add into y. */
enum { XS_COLS = 8192 };

static void matvec_x86(quant_kset k, qtype t, const void *w, size_t n, const float *x, float *y, size_t r0,
                       size_t r1)
{
    _Alignas(64) float xa[XS_COLS];
    float xs[XS_COLS / 32];
    const q4_k_dot_fn dot_q4_k = k == QUANT_KSET_AVX512 ? dot_q4_k_512 : dot_q4_k_avx2;
    const size_t rb = quant_row_bytes(t, n);
    for (size_t c0 = 0; c0 == 0 || c0 < n; c0 += XS_COLS) { /* n = 0: one empty pass, y = 0 */
        const size_t cn = n - c0 < XS_COLS ? n - c0 : XS_COLS;
        const float *xc = x + c0;
        if ((uintptr_t)xc % 64) {
            memcpy(xa, xc, cn * sizeof *xa);
            xc = xa;
        }
        size_t len;
        const row_dot_fn dot = x86_dot_fn(k, t, cn, &len);
        if (t == QT_Q4_K)
            xsums_avx2(xc, cn, xs);
        const uint8_t *row = (const uint8_t *)w + r0 * rb + quant_row_bytes(t, c0);
        for (size_t r = r0; r < r1; r++, row += rb) {
            const float v = t == QT_Q4_K ? dot_q4_k(row, xc, xs, len) : dot(row, xc, len);
            y[r] = c0 ? y[r] + v : v;
        }
    }
}

static float dot_row_x86(quant_kset k, qtype t, const void *row, const float *x, size_t n)
{
    float y;
    matvec_x86(k, t, row, n, x, &y, 0, 1);
    return y;
}

/* y[j*ldy + i] = dot(w[i*n ..], x[j*n ..]): 4 x 3 tiles where n allows,
 * single dots for the rest. The 512-bit tile needs w and x 64-byte aligned. */
static void tile_x86(quant_kset k, const float *w, size_t nr, size_t n, const float *x, size_t m, float *y,
                     size_t ldy)
{
    void (*kern)(const float *, size_t, const float *, float *, size_t) = NULL;
    if (k == QUANT_KSET_AVX512 && n % 16 == 0 && ((uintptr_t)w | (uintptr_t)x) % 64 == 0)
        kern = kern_4x3_512; /* misaligned, it runs slower than the AVX2 tile */
    else if (n % 8 == 0)
        kern = kern_4x3;
    size_t j = 0;
    for (; kern && j + 3 <= m; j += 3) {
        size_t i = 0;
        for (; i + 4 <= nr; i += 4)
            kern(w + i * n, n, x + j * n, y + j * ldy + i, ldy);
        for (; i < nr; i++)
            for (size_t jj = j; jj < j + 3; jj++)
                y[jj * ldy + i] = dot_f32_vec_avx2(w + i * n, x + jj * n, n);
    }
    for (; j < m; j++)
        for (size_t i = 0; i < nr; i++)
            y[j * ldy + i] = dot_f32_vec_avx2(w + i * n, x + j * n, n);
}
#endif /* QUANT_HAVE_X86 */

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */

/* The one piece of mutable state: the best set, decided once (CPUID traps to
 * the hypervisor in a VM, too slow to ask per call) and never changed. */
static pthread_once_t best_once = PTHREAD_ONCE_INIT;
static quant_kset best = QUANT_KSET_SCALAR;

static void best_init(void)
{
#if QUANT_HAVE_X86
    if (cpu_has_avx512())
        best = QUANT_KSET_AVX512;
    else if (cpu_has_avx2())
        best = QUANT_KSET_AVX2;
#endif
}

quant_kset quant_kset_best(void)
{
    pthread_once(&best_once, best_init);
    return best;
}

/* The x86 sets nest: a CPU that runs one runs those below it. */
bool quant_kset_supported(quant_kset k)
{
    return (int)k >= 0 && k <= quant_kset_best();
}

const char *quant_kset_name(quant_kset k)
{
    switch (k) {
    case QUANT_KSET_SCALAR: return "scalar";
    case QUANT_KSET_AVX2: return "avx2";
    case QUANT_KSET_AVX512: return "avx512";
    default: return "unknown";
    }
}

void quant_dequant_row_k(quant_kset k, qtype t, const void *row, float *dst, size_t n)
{
#if QUANT_HAVE_X86
    if (k != QUANT_KSET_SCALAR) {
        dequant_avx2(t, row, dst, n);
        return;
    }
#endif
    (void)k;
    dequant_scalar(t, row, dst, n);
}

float quant_dot_row_k(quant_kset k, qtype t, const void *row, const float *x, size_t n)
{
#if QUANT_HAVE_X86
    if (k != QUANT_KSET_SCALAR)
        return dot_row_x86(k, t, row, x, n);
#endif
    (void)k;
    return dot_row_scalar(t, row, x, n);
}

void quant_matvec_k(quant_kset k, qtype t, const void *w, size_t n, const float *x, float *y, size_t r0,
                    size_t r1)
{
#if QUANT_HAVE_X86
    if (k != QUANT_KSET_SCALAR) {
        matvec_x86(k, t, w, n, x, y, r0, r1);
        return;
    }
#endif
    (void)k;
    const size_t rb = quant_row_bytes(t, n);
    for (size_t r = r0; r < r1; r++)
        y[r] = dot_row_scalar(t, (const uint8_t *)w + r * rb, x, n);
}

/* Results gather for OUT_ROWS rows x up to OUT_M positions in a stack buffer
 * and go to y a whole 64-byte line per position: written straight from the
 * 8-row tiles they were half lines at ldy stride, read for ownership twice,
 * which cost a 262144-row head 40% of its speed. */
enum { OUT_ROWS = 2 * QUANT_MM_ROWS, OUT_M = 256 };

void quant_matmul_k(quant_kset k, qtype t, const void *w, size_t n, const float *x, size_t m, float *y,
                    size_t ldy, size_t r0, size_t r1, float *scratch)
{
    const size_t rb = quant_row_bytes(t, n);
    float out[OUT_ROWS * OUT_M];
    for (size_t j0 = 0; j0 < m; j0 += OUT_M) {
        const size_t mj = m - j0 < OUT_M ? m - j0 : OUT_M;
        const float *xj = x + j0 * n;
        for (size_t r = r0; r < r1; r += OUT_ROWS) {
            const size_t nout = r1 - r < OUT_ROWS ? r1 - r : OUT_ROWS;
            for (size_t g = 0; g < nout; g += QUANT_MM_ROWS) {
                const size_t nr = nout - g < QUANT_MM_ROWS ? nout - g : QUANT_MM_ROWS;
                const float *rows = scratch;
                if (t == QT_F32)
                    rows = (const float *)w + (r + g) * n;
                else
                    for (size_t i = 0; i < nr; i++)
                        quant_dequant_row_k(k, t, (const uint8_t *)w + (r + g + i) * rb, scratch + i * n, n);
#if QUANT_HAVE_X86
                if (k != QUANT_KSET_SCALAR)
                    tile_x86(k, rows, nr, n, xj, mj, out + g, OUT_ROWS);
                else
#endif
                    tile_scalar(rows, nr, n, xj, mj, out + g, OUT_ROWS);
            }
            for (size_t j = 0; j < mj; j++)
                for (size_t i = 0; i < nout; i++)
                    y[(j0 + j) * ldy + r + i] = out[j * OUT_ROWS + i];
        }
    }
}

float quant_dot_f32_k(quant_kset k, const float *a, const float *b, size_t n)
{
#if QUANT_HAVE_X86
    if (k != QUANT_KSET_SCALAR)
        return dot_f32_vec_avx2(a, b, n);
#endif
    (void)k;
    return dot_f32_scalar(a, b, n);
}

void quant_dequant_row(qtype t, const void *row, float *dst, size_t n)
{
    quant_dequant_row_k(quant_kset_best(), t, row, dst, n);
}

float quant_dot_row(qtype t, const void *row, const float *x, size_t n)
{
    return quant_dot_row_k(quant_kset_best(), t, row, x, n);
}

void quant_matvec(qtype t, const void *w, size_t n, const float *x, float *y, size_t r0, size_t r1)
{
    quant_matvec_k(quant_kset_best(), t, w, n, x, y, r0, r1);
}

void quant_matmul(qtype t, const void *w, size_t n, const float *x, size_t m, float *y, size_t ldy, size_t r0,
                  size_t r1, float *scratch)
{
    quant_matmul_k(quant_kset_best(), t, w, n, x, m, y, ldy, r0, r1, scratch);
}

float quant_dot_f32(const float *a, const float *b, size_t n)
{
    return quant_dot_f32_k(quant_kset_best(), a, b, n);
}

const char *quant_isa(void) { return quant_kset_name(quant_kset_best()); }
