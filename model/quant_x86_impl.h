/* hinge: what the x86 kernel files share: quant_x86.c (CPU checks, the
 * drivers, the dispatch), quant_x86_avx2.c and quant_x86_512.c (the row
 * kernels of each set). Private to model/quant_x86*.c. The order of sums
 * that makes every product batch-invariant is described in quant_x86.c. */
#ifndef HINGE_QUANT_X86_IMPL_H
#define HINGE_QUANT_X86_IMPL_H

#include "quant_x86.h"

#if QUANT_HAVE_X86
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"), always_inline)) inline

/* JCAP bounds the columns of one kernel call, and so the accumulator
 * arrays (fully unrolled, kept in registers); QX_RCAP its rows; tiles are
 * at most TILES_R x TILES_J. */
enum { JCAP = 4, QX_RCAP = 8, TILES_R = 4, TILES_J = 4 };

/* Direct: out[r*J + j] for rows w + r*rb (r < R), columns x + j*ldx; len in
 * blocks for quants, weights for float types; xs, ldxs: Q4_K's x sums. */
typedef void (*direct_fn)(const uint8_t *w, size_t rb, const float *x, size_t ldx, const float *xs, size_t ldxs,
                          size_t len, float *out);
/* Tile: out[r*J + j] for decoded rows s + r*lds, columns x + j*ldx, ng groups. */
typedef void (*tile_fn)(const float *s, size_t lds, const float *x, size_t ldx, size_t ng, size_t tail, float *out);

/* A set's kernels for one type: direct[0] = r_matvec rows x 1 column and
 * direct[J] = 1 row x J columns, and the tile path (lanes per group, tile
 * shape, decoder into scratch). */
typedef struct kernels {
    direct_fn direct[JCAP + 1];
    size_t r_matvec, lanes, tile_r, tile_j;
    const tile_fn (*tiles)[TILES_J];
    void (*fill)(qtype t, const uint8_t *row, size_t len, float *s);
} kernels;

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

/* The AVX2 set's kernels for type t (quant_x86_avx2.c); the AVX-512 set's
 * for the block types (quant_x86_512.c: its float types are the AVX2
 * set's). */
kernels qx_avx2_kernels(qtype t);
kernels qx_512_kernels(qtype t);
/* xs[b] = sum of x[32b .. 32b+32) for b < n / 32. */
void qx_xsums(const float *x, size_t n, float *xs);
/* Q4_K tiles: subtracts the mins' share from a tile's R x J outputs. */
void qx_q4_k_mins(const uint8_t *w, size_t rb, const float *xs, size_t ldxs, size_t nb, int R, int J, float *out);
void qx_dequant_avx2(qtype t, const void *row, float *dst, size_t n);
/* The VNNI set's int8 products (quant_x86_vnni.c): for the types and row
 * lengths it handles, quant_x86_matmul's contract; the rest run the
 * AVX-512 set's kernels. */
bool qx_vnni_handles(qtype t, size_t n);
void qx_vnni_matmul(qtype t, int limbs, const void *w, size_t n, const float *x, size_t m, float *y, size_t ldy,
                    size_t r0, size_t r1, float *scratch); /* limbs: 3 (avx512vnni) or 1 (avx512vnni8) */
/* The K-quants' integer products (quant_x86_kint.c): for Q4_K and Q6_K
 * rows of a multiple of 256, quant_x86_matmul's contract with activations
 * rounded to 15 bits per 256-weight block; wide: 512-bit vectors
 * (avx512vnni16, avx512vnni8), else 256-bit AVX-VNNI (avxvnni16). */
bool qx_kint_handles(qtype t, size_t n);
void qx_kint_matmul(bool wide, qtype t, const void *w, size_t n, const float *x, const void *prep, size_t m,
                    float *y, size_t ldy, size_t r0, size_t r1, float *scratch); /* prep: qx_kint_prep's or NULL */
/* Bytes of m rows of n prepared by qx_kint_prep; rows [j0, j1) of x into
 * buf (64-byte aligned), exactly as qx_kint_matmul quantises them. */
size_t qx_kint_prep_bytes(size_t n, size_t m);
void qx_kint_prep(qtype t, const float *x, size_t n, size_t m, size_t j0, size_t j1, void *buf);
float qx_dot_f32_avx2(const float *a, const float *b, size_t n);

/* ---- helpers of both sets ---- */

static inline size_t block_elems(qtype t)
{
    switch (t) {
    case QT_Q4_0: case QT_Q5_0: case QT_Q8_0: case QT_Q4_1: case QT_Q5_1: return QK_0;
    case QT_Q4_K: case QT_Q6_K: return QK_K;
    default: return 1;
    }
}

static inline float bf16_to_f32(uint16_t h)
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

/* A tile's outputs into y: y[j*ldy + i] = v[i*J + j] (added to y if add)
 * for i < R, j < J; with 4 rows, each column's 4 go in one vector (SSE,
 * every x86-64: the drivers that call this have no target attribute). */
static inline void put_tile(float *y, size_t ldy, const float *v, size_t R, size_t J, bool add)
{
    for (size_t j = 0; j < J; j++) {
        float *o = y + j * ldy;
        if (R == 4) {
            const __m128 c = _mm_setr_ps(v[j], v[J + j], v[2 * J + j], v[3 * J + j]);
            _mm_storeu_ps(o, add ? _mm_add_ps(_mm_loadu_ps(o), c) : c);
            continue;
        }
        for (size_t i = 0; i < R; i++)
            o[i] = add ? o[i] + v[i * J + j] : v[i * J + j];
    }
}

/* The sum of v's lanes as GCC's _mm512_reduce_add_ps forms it (lanes i and
 * i+8, then i and i+4 of that, i and i+2, 0 and 1), written out so that
 * reduce_many's transposed sums equal it bit for bit whatever the
 * compiler. */
AVX512_INLINE static float reduce512(__m512 v)
{
    const __m256 t3 = _mm256_add_ps(_mm512_extractf32x8_ps(v, 1), _mm512_castps512_ps256(v));
    const __m128 t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
    const __m128 t8 = _mm_add_ps(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtss_f32(_mm_add_ss(t8, _mm_movehdup_ps(t8)));
}

/* out[i] = reduce512(a[i]) for i < 16: the same adds of the same pairs,
 * four levels done for 16 vectors at once (46 vector operations and one
 * store where 16 reductions take 128 and 16 stores: a tile's reductions
 * cost as much as its products over a short row). */
AVX512_INLINE static void reduce16(const __m512 a[16], float *out)
{
    __m512 s1[8], s2[4], s3[2];
    for (int i = 0; i < 8; i++) /* [hi + lo of a[2i] | of a[2i+1]], 8 lanes each */
        s1[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)),
                              _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)));
    for (int i = 0; i < 4; i++) /* 128-bit lane L: a[4i + L]'s 4 */
        s2[i] = _mm512_add_ps(_mm512_shuffle_f32x4(s1[2 * i], s1[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)),
                              _mm512_shuffle_f32x4(s1[2 * i], s1[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)));
    for (int i = 0; i < 2; i++) /* lane L: a[8i + L]'s 2, a[8i + 4 + L]'s 2 */
        s3[i] = _mm512_add_ps(_mm512_shuffle_ps(s2[2 * i], s2[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_ps(s2[2 * i], s2[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* element 4L + e: a[4e + L]'s sum; transposed back */
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i back = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_storeu_ps(out, _mm512_permutexvar_ps(back, r));
}

/* out[i] = reduce512(v[i]) for i < n (at most 16): reduce16 from 8 on,
 * the missing vectors zero (their sums unused). */
AVX512_INLINE static void reduce_many(const __m512 *v, int n, float *out)
{
    if (n < 8) {
        for (int i = 0; i < n; i++)
            out[i] = reduce512(v[i]);
        return;
    }
    __m512 a[16];
    float o[16];
    for (int i = 0; i < 16; i++)
        a[i] = i < n ? v[i] : _mm512_setzero_ps();
    reduce16(a, o);
    for (int i = 0; i < n; i++)
        out[i] = o[i];
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

#endif /* QUANT_HAVE_X86 */
#endif
