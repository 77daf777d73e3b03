/* The AVX-512 VNNI kernel set's int8 products (quant_x86_impl.h): Q4_0,
 * Q5_0 and Q8_0 rows times activations, with vpdpbusd. The other types,
 * and rows whose length is not a multiple of 64, run the AVX-512 set's
 * float kernels (the choice depends on the type and n only, never on m).
 *
 * Activations without losing precision, as the ARM64 DOTPROD set
 * (quant_dotprod.c): vpdpbusd multiplies int8 by int8, so each column of
 * X is cut into blocks of 32 and each value rounded to
 *     x'_i = d * (65536 a_i + 256 b_i + c_i),  a, b, c int8,
 * d = max|x| / XQ_MAX over the block: 24-bit fixed point in three limbs.
 * Each limb's products with a block's weights sum exactly in int32; the
 * three join in float. The only rounding besides float's is |x_i - x'_i|
 * <= d/2 (about 2^-24 max|x|), so the set keeps the float sets' accuracy
 * (tests/model/test_quant.c's tolerance), where 8-bit activations (llama.cpp's
 * q8_0) cost about 1e-2 of each product.
 *
 * Not the default (quant.c): per 64 weights and column this is 3 vpdpbusd
 * (one port on Intel cores) and 6 float operations, against the float
 * tiles' 4 FMAs, and on the AVX-512 VNNI Xeon it was measured on it ran at
 * 0.55-1.20x the AVX-512 set's speed for Gemma 3's shapes, m = 1..128; one
 * limb at 0.96-1.45x, no faster end to end, for 1.9% more perplexity
 * (docs/performance.md).
 * HINGE_CPU=avx512vnni or avx512vnni8 selects them.
 *
 * vpdpbusd takes one operand unsigned: the activations, as limb + 128; the
 * 128 * sum(w) that adds is taken off by starting each accumulator at
 * -128 * (lane sums of w), computed once per row and group.
 *
 * Batch invariance: output (r, j) is the reduction of one chain
 *     acc += t_g * (dw_g * dx_g)   over the row's groups of 64 in order,
 * t_g the joined limb sums of group g (16 lanes: two blocks), whatever the
 * shape of the call (R rows x J columns) and the number of columns; rows
 * longer than VQ_COLS are done in the same passes for every m. */
#include "quant_x86_impl.h"

#if QUANT_HAVE_X86
#include <math.h>

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define VNNI_INLINE                                                                                              \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"), always_inline)) inline

/* Largest |x_q| whose three base-256 digits all fit int8. */
#define XQ_MAX 8355711

/* Weights per pass; a column's quantised pass: per group of 64 weights its
 * limbs (+128, 64 bytes each) and the scale of each lane (16 floats: the
 * first block's 8 times, the second's), at most VQ_GROUP bytes, 4 per
 * weight: the caller's scratch (QUANT_MM_ROWS * n floats) holds VQ_JMAX
 * columns.
 *
 * One limb (the avx512vnni8 set): x_q = round(x / d) with d = max|x| / 127
 * per block, as llama.cpp's q8_0 activations; about 1e-2 of each product,
 * for one vpdpbusd instead of three. */
enum { VQ_COLS = 8192, VQ_GROUP = 256, VQ_JMAX = QUANT_MM_ROWS };

/* Bytes of a group of 64 weights with `limbs` limbs. */
static inline size_t group_bytes(int limbs) { return (size_t)64 * ((size_t)limbs + 1); }

/* Rows and columns of one kernel call: a row's decoding (its bytes, scales
 * and the accumulators' start) is shared by up to VQ_J columns. */
enum { VQ_R = 2, VQ_J = 8 };

/* Rows per block when the columns come in several chunks. */
enum { VQ_RB = 128 };

bool quant_x86_has_vnni(void)
{
    return quant_x86_has_avx512() && __builtin_cpu_supports("avx512vnni");
}

bool qx_vnni_handles(qtype t, size_t n)
{
    return (t == QT_Q4_0 || t == QT_Q5_0 || t == QT_Q8_0) && n > 0 && n % 64 == 0;
}

/* ---- activations ---- */

/* 16 int32 lanes to 16 bytes: the low byte of each, + 128. */
VNNI_INLINE static void put_limb(__m512i v, uint8_t *dst)
{
    _mm_storeu_si128((__m128i *)(void *)dst, _mm_xor_si128(_mm512_cvtepi32_epi8(v), _mm_set1_epi8((char)0x80)));
}

/* Signed low byte of each lane. */
VNNI_INLINE static __m512i sext8(__m512i v) { return _mm512_srai_epi32(_mm512_slli_epi32(v, 24), 24); }

/* One column's cn weights' worth of x (cn % 64 == 0) into q. */
VNNI static void quantize(const float *x, size_t cn, uint8_t *q, int limbs)
{
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const int qmax = limbs == 3 ? XQ_MAX : 127;
    const __m512i lim = _mm512_set1_epi32(qmax);
    for (size_t g = 0; g < cn / 64; g++, x += 64, q += group_bytes(limbs)) {
        float d[2];
        for (int h = 0; h < 2; h++) {
            const __m512 x0 = _mm512_loadu_ps(x + 32 * h), x1 = _mm512_loadu_ps(x + 32 * h + 16);
            const __m512 m = _mm512_max_ps(_mm512_and_ps(x0, absmask), _mm512_and_ps(x1, absmask));
            const float amax = _mm512_reduce_max_ps(m);
            /* a NaN in the block makes its scale NaN, so the products are
             * NaN as the float sets' (max would drop it) */
            const bool nan = _mm512_cmp_ps_mask(x0, x0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(x1, x1, _CMP_UNORD_Q);
            d[h] = nan ? NAN : amax / (float)qmax;
            const __m512 id = _mm512_set1_ps(amax > 0.0f ? (float)qmax / amax : 0.0f);
            for (int k = 0; k < 2; k++) {
                __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 32 * h + 16 * k), id));
                v = _mm512_max_epi32(_mm512_min_epi32(v, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
                const size_t off = (size_t)(32 * h + 16 * k);
                if (limbs == 1) {
                    put_limb(v, q + off);
                    continue;
                }
                const __m512i c = sext8(v), t = _mm512_srai_epi32(_mm512_sub_epi32(v, c), 8);
                const __m512i b = sext8(t), a = _mm512_srai_epi32(_mm512_sub_epi32(t, b), 8);
                put_limb(a, q + off);
                put_limb(b, q + 64 + off);
                put_limb(c, q + 128 + off);
            }
        }
        _mm512_storeu_ps((float *)(void *)(q + 64 * limbs),
                        _mm512_insertf32x8(_mm512_set1_ps(d[0]), _mm256_set1_ps(d[1]), 1));
    }
}

/* ---- weights ---- */

/* Block b of a row as 32 signed bytes (q - offset) and its scale. */
VNNI_INLINE static __m256i weights32(qtype t, const uint8_t *row, size_t b, float *d)
{
    if (t == QT_Q8_0) {
        const block_q8_0 *k = (const block_q8_0 *)(const void *)row + b;
        *d = _cvtsh_ss(k->d);
        return _mm256_loadu_si256((const __m256i *)(const void *)k->qs);
    }
    const uint8_t *qs;
    __m256i hi = _mm256_setzero_si256(), off = _mm256_set1_epi8(8);
    if (t == QT_Q5_0) {
        const block_q5_0 *k = (const block_q5_0 *)(const void *)row + b;
        uint32_t qh;
        memcpy(&qh, k->qh, sizeof qh);
        *d = _cvtsh_ss(k->d);
        qs = k->qs;
        hi = _mm256_and_si256(_mm256_movm_epi8(qh), _mm256_set1_epi8(16));
        off = _mm256_set1_epi8(16);
    } else {
        const block_q4_0 *k = (const block_q4_0 *)(const void *)row + b;
        *d = _cvtsh_ss(k->d);
        qs = k->qs;
    }
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)qs);
    const __m128i m = _mm_set1_epi8(0xF);
    const __m256i nib = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
    return _mm256_sub_epi8(_mm256_or_si256(nib, hi), off);
}

/* Group g of a row: 64 signed bytes, its lanes' scales, and -128 * the lane
 * sums of the bytes (the accumulators' start). */
VNNI_INLINE static void weights64(qtype t, const uint8_t *row, size_t g, __m512i *w, __m512 *dw, __m512i *start)
{
    float d0, d1;
    const __m256i w0 = weights32(t, row, 2 * g, &d0), w1 = weights32(t, row, 2 * g + 1, &d1);
    *w = _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
    *dw = _mm512_insertf32x8(_mm512_set1_ps(d0), _mm256_set1_ps(d1), 1);
    const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), *w);
    *start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, 7));
}

/* ---- the kernel ---- */

/* out[r*J + j] for R rows at w (stride rb) and J quantised columns at q
 * (stride ldq bytes), ng groups. */
VNNI_INLINE static void kernel(qtype t, int limbs, const uint8_t *w, size_t rb, const uint8_t *q, size_t ldq, size_t ng,
                               int R, int J, float *out)
{
    __m512 acc[VQ_R][VQ_J];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            acc[r][j] = _mm512_setzero_ps();
    for (size_t g = 0; g < ng; g++) {
        __m512i wv[VQ_R], st[VQ_R];
        __m512 dw[VQ_R];
        for (int r = 0; r < R; r++)
            weights64(t, w + (size_t)r * rb, g, &wv[r], &dw[r], &st[r]);
        for (int j = 0; j < J; j++) {
            const uint8_t *qg = q + (size_t)j * ldq + g * group_bytes(limbs);
            const __m512 dx = _mm512_loadu_ps((const float *)(const void *)(qg + 64 * limbs));
            const __m512i xa = _mm512_loadu_si512(qg);
            if (limbs == 1) {
                for (int r = 0; r < R; r++) {
                    const __m512 a = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(st[r], xa, wv[r]));
                    acc[r][j] = _mm512_fmadd_ps(a, _mm512_mul_ps(dw[r], dx), acc[r][j]);
                }
                continue;
            }
            const __m512i xb = _mm512_loadu_si512(qg + 64), xc = _mm512_loadu_si512(qg + 128);
            for (int r = 0; r < R; r++) {
                const __m512 a = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(st[r], xa, wv[r]));
                const __m512 b = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(st[r], xb, wv[r]));
                const __m512 c = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(st[r], xc, wv[r]));
                const __m512 tsum =
                    _mm512_fmadd_ps(a, _mm512_set1_ps(65536.0f), _mm512_fmadd_ps(b, _mm512_set1_ps(256.0f), c));
                acc[r][j] = _mm512_fmadd_ps(tsum, _mm512_mul_ps(dw[r], dx), acc[r][j]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            out[r * J + j] = _mm512_reduce_add_ps(acc[r][j]);
}

typedef void (*vnni_fn)(const uint8_t *w, size_t rb, const uint8_t *q, size_t ldq, size_t ng, float *out);

#define VNNI_FN(t, L, name, R, J)                                                                        \
    VNNI static void name##_##L##_##R##x##J(const uint8_t *w, size_t rb, const uint8_t *q, size_t ldq,      \
                                            size_t ng, float *out)                                       \
    {                                                                                                    \
        kernel(t, L, w, rb, q, ldq, ng, R, J, out);                                                      \
    }
#define VNNI_FNS(t, L, name)                                                                              \
    VNNI_FN(t, L, name, 2, 8) VNNI_FN(t, L, name, 2, 4) VNNI_FN(t, L, name, 2, 2) VNNI_FN(t, L, name, 2, 1)  \
    VNNI_FN(t, L, name, 1, 8) VNNI_FN(t, L, name, 1, 4) VNNI_FN(t, L, name, 1, 2) VNNI_FN(t, L, name, 1, 1)
VNNI_FNS(QT_Q4_0, 3, q4_0)
VNNI_FNS(QT_Q5_0, 3, q5_0)
VNNI_FNS(QT_Q8_0, 3, q8_0)
VNNI_FNS(QT_Q4_0, 1, q4_0)
VNNI_FNS(QT_Q5_0, 1, q5_0)
VNNI_FNS(QT_Q8_0, 1, q8_0)
#undef VNNI_FNS
#undef VNNI_FN

/* [R - 1][log2 J] */
typedef vnni_fn vnni_shapes[VQ_R][4];

#define SHAPES(p) {{p##_1x1, p##_1x2, p##_1x4, p##_1x8}, {p##_2x1, p##_2x2, p##_2x4, p##_2x8}}
static const vnni_fn *shapes(qtype t, int limbs)
{
    static const vnni_shapes s3[3] = {SHAPES(q4_0_3), SHAPES(q5_0_3), SHAPES(q8_0_3)};
    static const vnni_shapes s1[3] = {SHAPES(q4_0_1), SHAPES(q5_0_1), SHAPES(q8_0_1)};
    const int i = t == QT_Q4_0 ? 0 : t == QT_Q5_0 ? 1 : 2;
    return &(limbs == 3 ? s3 : s1)[i][0][0];
}
#undef SHAPES

/* ---- the driver ---- */

/* Rows [r0, r1) times jc quantised columns (ng groups), into y's columns
 * (added after the first pass). */
static void rows_times(const vnni_fn *f, const uint8_t *w0, size_t rb, const uint8_t *q, size_t ldq, size_t ng,
                       size_t jc, float *y, size_t ldy, size_t r0, size_t r1, bool add)
{
    float v[VQ_R * VQ_J];
    for (size_t r = r0; r < r1;) {
        const size_t R = r1 - r >= VQ_R ? VQ_R : 1;
        for (size_t j = 0; j < jc;) {
            size_t lg = 3;
            while ((size_t)1 << lg > jc - j)
                lg--;
            const size_t J = (size_t)1 << lg;
            f[(R - 1) * 4 + lg](w0 + r * rb, rb, q + j * ldq, ldq, ng, v);
            for (size_t i = 0; i < R; i++)
                for (size_t k = 0; k < J; k++) {
                    float *o = y + (j + k) * ldy + r + i;
                    *o = add ? *o + v[i * J + k] : v[i * J + k];
                }
            j += J;
        }
        r += R;
    }
}

void qx_vnni_matmul(qtype t, int limbs, const void *w, size_t n, const float *x, size_t m, float *y, size_t ldy,
                    size_t r0, size_t r1, float *scratch)
{
    _Alignas(64) uint8_t own[VQ_COLS / 64 * VQ_GROUP]; /* one column of a pass */
    const vnni_fn *f = shapes(t, limbs);
    const size_t rb = quant_row_bytes(t, n);
    const size_t jmax = m > 1 && scratch ? VQ_JMAX : 1;
    uint8_t *buf = jmax > 1 ? (uint8_t *)(void *)scratch : own;
    for (size_t c0 = 0; c0 < n; c0 += VQ_COLS) {
        const size_t cn = n - c0 < VQ_COLS ? n - c0 : VQ_COLS, ng = cn / 64, ldq = ng * group_bytes(limbs);
        const uint8_t *w0 = (const uint8_t *)w + quant_row_bytes(t, c0);
        /* more columns than buf holds: blocks of VQ_RB rows stay in cache
         * while every chunk of columns goes by (each chunk quantised once
         * per block), instead of a large matrix streamed once per chunk */
        const size_t rstep = m > jmax ? VQ_RB : r1 - r0;
        for (size_t rr = r0; rr < r1; rr += rstep) {
            const size_t re = r1 - rr < rstep ? r1 : rr + rstep;
            for (size_t j0 = 0; j0 < m; j0 += jmax) {
                const size_t jc = m - j0 < jmax ? m - j0 : jmax;
                for (size_t j = 0; j < jc; j++)
                    quantize(x + (j0 + j) * n + c0, cn, buf + j * ldq, limbs);
                rows_times(f, w0, rb, buf, ldq, ng, jc, y + j0 * ldy, ldy, rr, re, c0 > 0);
            }
        }
    }
}

#else
typedef int quant_x86_vnni_unused; /* ISO C wants a declaration in every file */
#endif /* QUANT_HAVE_X86 */
