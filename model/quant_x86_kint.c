/* Integer products for the K-quants (Q4_K, Q6_K): the avx512vnni16 set
 * (AVX-512 VNNI, also the K-quants of avx512vnni8) and the avxvnni16 set
 * (AVX2 with AVX-VNNI, the 256-bit VEX form, as on Intel cores without
 * AVX-512).
 *
 * Why not int8 weights with vpdpbusd: a K-quant's sub-blocks (32 or 16
 * weights) each have their own integer scale, and a float conversion and
 * multiply-add per sub-block and output would cost as much as the float
 * kernels' FMAs. Instead each weight row is decoded once per call and
 * chunk of columns into int16 with its sub-block scale multiplied in
 * (Q4_K: q * sc <= 945; Q6_K: (q - 32) * sc, |.| <= 4096), and each
 * activation row is quantised once per 256-weight block to integers of at
 * most XMAX with one float scale. One vpdpwssd then does 32 (zmm) or 16
 * (ymm) multiply-adds in int32, and a block of 256 costs each output 8 (16)
 * of them plus one conversion and one FMA, where the float kernels spend
 * 16 (32) FMAs and decode the weights to floats first.
 *
 * Activations: x_q = round(x / dx), dx = max|x| / XMAX over the block,
 * XMAX = 16383: an int32 lane sums at most 32 products per block (ymm),
 * each at most 4096 * 16383, under 2^31; the rounding is 3e-5 of the
 * block's largest value, near float accuracy. 8-bit activations
 * (XMAX 127, llama.cpp's Q8_K) cost the same here (the products are int16
 * either way) and were measured at +9% perplexity on Gemma 3 270M: not
 * offered. Q4_K's mins term, -dmin * m * (sum of x over the sub-block),
 * uses the float sums of x, as the float kernels (qx_q4_k_mins).
 *
 * Batch invariance: output (r, j) is one chain over the row's blocks b in
 * order, f = fma((float)I_b, dw_b * dx_b, f), with I_b the block's exact
 * integer product, then one fixed reduction of f's lanes (then Q4_K's
 * mins). That sequence is the same whatever the call's shape (R rows x J
 * columns), m, the row range or the thread; rows longer than KI_COLS are
 * done in the same passes for every m. */
#include "quant_x86_impl.h"

#if QUANT_HAVE_X86
#include <cpuid.h>
#include <math.h>

#define K512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define K512_INLINE                                                                                              \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"), always_inline)) inline
#define K256 __attribute__((target("avx2,fma,f16c,avxvnni")))
#define K256_INLINE __attribute__((target("avx2,fma,f16c,avxvnni"), always_inline)) inline

/* Weights per pass; the activations' bound; rows and columns per kernel
 * call (R x J int32 and float accumulators in registers: 32 zmm, 16 ymm). */
enum { KI_COLS = 4096, XMAX = 16383, KI_NB = KI_COLS / QK_K, KI_R = 4, KI_J = 3, K2_R = 2, K2_J = 2 };
/* Activation weights per chunk of columns with scratch (kint_large: 32
 * columns of 2048, a row decoded once per chunk). */
enum { KI_XCAP = 65536 };

bool quant_x86_has_avxvnni(void)
{
    unsigned a, b, c, d;
    return quant_x86_has_avx2() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1);
}

bool qx_kint_handles(qtype t, size_t n) { return (t == QT_Q4_K || t == QT_Q6_K) && n > 0 && n % QK_K == 0; }

/* ---- activations ---- */

/* One column's cn weights' worth of x into q (int16) and a scale per 256:
 * dx[b]. A NaN in a block makes its scale NaN, so the products are NaN as
 * the float sets' (max would drop it). */
AVX2 static void quantize(const float *x, size_t cn, int16_t *q, float *dx)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (size_t b = 0; b < cn / QK_K; b++, x += QK_K, q += QK_K) {
        __m256 m = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
        for (int k = 0; k < QK_K / 8; k++) {
            const __m256 v = ld(x + 8 * k);
            m = _mm256_max_ps(m, _mm256_and_ps(v, absmask));
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        const float amax = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
        dx[b] = _mm256_movemask_ps(nan) ? NAN : amax / (float)XMAX;
        /* |x * id| <= XMAX (rounded down in id): no clamp needed, but kept
         * for a last-ulp excess; packs saturates at int16 anyway */
        const __m256 id = _mm256_set1_ps(amax > 0.0f ? (float)XMAX / amax : 0.0f);
        const __m256i lim = _mm256_set1_epi32(XMAX), nlim = _mm256_set1_epi32(-XMAX);
        for (int k = 0; k < QK_K / 16; k++) {
            __m256i v0 = _mm256_cvtps_epi32(_mm256_mul_ps(ld(x + 16 * k), id));
            __m256i v1 = _mm256_cvtps_epi32(_mm256_mul_ps(ld(x + 16 * k + 8), id));
            v0 = _mm256_max_epi32(_mm256_min_epi32(v0, lim), nlim);
            v1 = _mm256_max_epi32(_mm256_min_epi32(v1, lim), nlim);
            /* packs interleaves 128-bit halves: 0..3 8..11 4..7 12..15 */
            const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(v0, v1), 0xD8);
            _mm256_storeu_si256((__m256i *)(void *)(q + 16 * k), p);
        }
    }
}

/* ---- weights ---- */

/* 16 bytes as int16 times sc, stored at w. */
AVX2_INLINE static void put16(__m128i bytes, bool sign, int sc, int16_t *w)
{
    const __m256i v = sign ? _mm256_cvtepi8_epi16(bytes) : _mm256_cvtepu8_epi16(bytes);
    _mm256_storeu_si256((__m256i *)(void *)w, _mm256_mullo_epi16(v, _mm256_set1_epi16((short)sc)));
}

/* A row's len blocks as int16 q * sc in weight order, d per block, and
 * dmin * m per sub-block (8 per block: the mins term). */
AVX2 static void decode_q4_k(const uint8_t *row, size_t len, int16_t *w, float *d, float *dm)
{
    const __m256i m4 = _mm256_set1_epi8(0xF);
    for (size_t i = 0; i < len; i++, w += QK_K) {
        const block_q4_k *b = (const block_q4_k *)(const void *)row + i;
        uint32_t u[3];
        memcpy(u, b->scales, sizeof u);
        /* the 8 6-bit scales as q4_k_scales unpacks them */
        const uint64_t sc = (u[0] & 0x3f3f3f3f) |
                            (uint64_t)((u[2] & 0x0f0f0f0f) | (u[0] >> 6 & 0x03030303) << 4) << 32;
        d[i] = _cvtsh_ss(b->d);
        __m256 dsc, dmv;
        q4_k_scales(b, &dsc, &dmv);
        _mm256_storeu_ps(dm + 8 * i, dmv);
        for (int c = 0; c < 4; c++) { /* sub-blocks 2c (low nibbles) and 2c+1 */
            const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(b->qs + 32 * c));
            const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            const int s0 = (int)(sc >> (16 * c) & 0xff), s1 = (int)(sc >> (16 * c + 8) & 0xff);
            put16(_mm256_castsi256_si128(lo), false, s0, w + 64 * c);
            put16(_mm256_extracti128_si256(lo, 1), false, s0, w + 64 * c + 16);
            put16(_mm256_castsi256_si128(hi), false, s1, w + 64 * c + 32);
            put16(_mm256_extracti128_si256(hi, 1), false, s1, w + 64 * c + 48);
        }
    }
}

/* A row's len blocks as int16 (q - 32) * sc in weight order, and d. */
AVX2 static void decode_q6_k(const uint8_t *row, size_t len, int16_t *w, float *d)
{
    for (size_t i = 0; i < len; i++, w += QK_K) {
        const block_q6_k *b = (const block_q6_k *)(const void *)row + i;
        d[i] = _cvtsh_ss(b->d);
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6_k_bytes(b, h, q);
            for (int k = 0; k < 4; k++) { /* weights 32k .. +16 and +16 .. +32 of the half */
                const int s = 8 * h + 2 * k;
                put16(_mm256_castsi256_si128(q[k]), true, b->scales[s], w + 128 * h + 32 * k);
                put16(_mm256_extracti128_si256(q[k], 1), true, b->scales[s + 1], w + 128 * h + 32 * k + 16);
            }
        }
    }
}

/* ---- the kernels ---- */

/* out[r*J + j] for R decoded rows (w + r*ld, block scales dw + r*nb) and
 * J quantised columns (x + j*ld, dx + j*nb), nb blocks (ld = nb * QK_K):
 * 512-bit vectors. */
K512_INLINE static void kernel512(const int16_t *w, const float *dw, const int16_t *x, const float *dx, size_t nb,
                                  int R, int J, float *out)
{
    const size_t ld = nb * QK_K;
    __m512 f[KI_R][KI_J];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            f[r][j] = _mm512_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        __m512i a[KI_R][KI_J];
        for (int r = 0; r < R; r++)
            for (int j = 0; j < J; j++)
                a[r][j] = _mm512_setzero_si512();
        for (int k = 0; k < QK_K / 32; k++) {
            __m512i xv[KI_J];
            for (int j = 0; j < J; j++)
                xv[j] = _mm512_loadu_si512(x + (size_t)j * ld + QK_K * b + 32 * k);
            for (int r = 0; r < R; r++) {
                const __m512i wv = _mm512_loadu_si512(w + (size_t)r * ld + QK_K * b + 32 * k);
                for (int j = 0; j < J; j++)
                    a[r][j] = _mm512_dpwssd_epi32(a[r][j], wv, xv[j]);
            }
        }
        for (int r = 0; r < R; r++)
            for (int j = 0; j < J; j++) {
                const float s = dw[(size_t)r * nb + b] * dx[(size_t)j * nb + b];
                f[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[r][j]), _mm512_set1_ps(s), f[r][j]);
            }
    }
    __m512 v[KI_R * KI_J];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            v[r * J + j] = f[r][j];
    reduce_many(v, R * J, out);
}

/* kernel512's contract on 256-bit vectors with AVX-VNNI. */
K256_INLINE static void kernel256(const int16_t *w, const float *dw, const int16_t *x, const float *dx, size_t nb,
                                  int R, int J, float *out)
{
    const size_t ld = nb * QK_K;
    __m256 f[K2_R][K2_J];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            f[r][j] = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        __m256i a[K2_R][K2_J];
        for (int r = 0; r < R; r++)
            for (int j = 0; j < J; j++)
                a[r][j] = _mm256_setzero_si256();
        for (int k = 0; k < QK_K / 16; k++) {
            __m256i xv[K2_J];
            for (int j = 0; j < J; j++)
                xv[j] = _mm256_loadu_si256((const __m256i *)(const void *)(x + (size_t)j * ld + QK_K * b + 16 * k));
            for (int r = 0; r < R; r++) {
                const __m256i wv =
                    _mm256_loadu_si256((const __m256i *)(const void *)(w + (size_t)r * ld + QK_K * b + 16 * k));
                for (int j = 0; j < J; j++)
                    a[r][j] = _mm256_dpwssd_avx_epi32(a[r][j], wv, xv[j]);
            }
        }
        for (int r = 0; r < R; r++)
            for (int j = 0; j < J; j++) {
                const float s = dw[(size_t)r * nb + b] * dx[(size_t)j * nb + b];
                f[r][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[r][j]), _mm256_set1_ps(s), f[r][j]);
            }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            out[r * J + j] = hsum(f[r][j]);
}

typedef void (*ki_fn)(const int16_t *w, const float *dw, const int16_t *x, const float *dx, size_t nb, float *out);

#define KI_FN(attr, kern, R, J)                                                                                \
    attr static void kern##_##R##x##J(const int16_t *w, const float *dw, const int16_t *x, const float *dx,    \
                                      size_t nb, float *out)                                                   \
    {                                                                                                          \
        kern(w, dw, x, dx, nb, R, J, out);                                                                     \
    }
KI_FN(K512, kernel512, 1, 1) KI_FN(K512, kernel512, 1, 2) KI_FN(K512, kernel512, 1, 3)
KI_FN(K512, kernel512, 2, 1) KI_FN(K512, kernel512, 2, 2) KI_FN(K512, kernel512, 2, 3)
KI_FN(K512, kernel512, 3, 1) KI_FN(K512, kernel512, 3, 2) KI_FN(K512, kernel512, 3, 3)
KI_FN(K512, kernel512, 4, 1) KI_FN(K512, kernel512, 4, 2) KI_FN(K512, kernel512, 4, 3)
KI_FN(K256, kernel256, 1, 1) KI_FN(K256, kernel256, 1, 2) KI_FN(K256, kernel256, 2, 1) KI_FN(K256, kernel256, 2, 2)
#undef KI_FN

/* A width's kernels: shapes[(R - 1) * cj + J - 1] for R <= cr, J <= cj. */
typedef struct ki_set {
    const ki_fn *shapes;
    size_t cr, cj;
} ki_set;

static const ki_fn shapes512[KI_R * KI_J] = {
    kernel512_1x1, kernel512_1x2, kernel512_1x3, kernel512_2x1, kernel512_2x2, kernel512_2x3,
    kernel512_3x1, kernel512_3x2, kernel512_3x3, kernel512_4x1, kernel512_4x2, kernel512_4x3};
static const ki_fn shapes256[K2_R * K2_J] = {kernel256_1x1, kernel256_1x2, kernel256_2x1, kernel256_2x2};

/* ---- the driver ---- */

/* One pass (weights c0 .. c0+cn) of a chunk of jc quantised columns. */
typedef struct ki_pass {
    qtype t;
    const uint8_t *w0; /* row 0 at the pass offset */
    size_t rb, len;    /* row bytes, blocks in the pass */
    const int16_t *xq; /* jc columns, stride len * QK_K */
    const float *dx;   /* len per column */
    const float *xs;   /* Q4_K: the float sums of x per 32, 8 * len per column */
    size_t jc;
    ki_set k;      /* the kernels */
    int16_t *wbuf; /* rows decoded here, rows_at_once of them */
    size_t rows_at_once;
    float *y;
    size_t ldy;
    bool add;
} ki_pass;

/* Q4_K's mins term for R rows (dmin * m, 8 per block: dm + r*8*nb) and J
 * columns (xs + j*8*nb): one 8-lane chain over the blocks per output, as
 * qx_q4_k_mins, with the scales unpacked once per decoded row. */
AVX2_INLINE static void q4_k_mins(const float *dm, const float *xs, size_t nb, size_t R, size_t J, float *out)
{
    for (size_t r = 0; r < R; r++)
        for (size_t j = 0; j < J; j++) {
            __m256 a = _mm256_setzero_ps();
            for (size_t b = 0; b < nb; b++)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(dm + (r * nb + b) * 8), _mm256_loadu_ps(xs + (j * nb + b) * 8), a);
            out[r * J + j] -= hsum(a);
        }
}

AVX2 static void rows_times(const ki_pass *p, size_t r0, size_t r1)
{
    const size_t ld = p->len * QK_K;
    float dw[2 * QUANT_MM_ROWS * KI_NB];     /* rows_at_once * len */
    float dm[2 * QUANT_MM_ROWS * KI_NB * 8]; /* Q4_K: 8 per block */
    for (size_t rg = r0; rg < r1; rg += p->rows_at_once) {
        const size_t nr = r1 - rg < p->rows_at_once ? r1 - rg : p->rows_at_once;
        for (size_t i = 0; i < nr; i++) {
            const uint8_t *row = p->w0 + (rg + i) * p->rb;
            if (p->t == QT_Q4_K)
                decode_q4_k(row, p->len, p->wbuf + i * ld, dw + i * p->len, dm + i * p->len * 8);
            else
                decode_q6_k(row, p->len, p->wbuf + i * ld, dw + i * p->len);
        }
        for (size_t i0 = 0; i0 < nr; i0 += p->k.cr) {
            const size_t R = nr - i0 < p->k.cr ? nr - i0 : p->k.cr;
            for (size_t j0 = 0; j0 < p->jc; j0 += p->k.cj) {
                const size_t J = p->jc - j0 < p->k.cj ? p->jc - j0 : p->k.cj;
                float v[KI_R * KI_J];
                p->k.shapes[(R - 1) * p->k.cj + J - 1](p->wbuf + i0 * ld, dw + i0 * p->len, p->xq + j0 * ld, p->dx + j0 * p->len,
                                     p->len, v);
                if (p->t == QT_Q4_K)
                    q4_k_mins(dm + i0 * p->len * 8, p->xs + j0 * 8 * p->len, p->len, R, J, v);
                put_tile(p->y + j0 * p->ldy + rg + i0, p->ldy, v, R, J, p->add);
            }
        }
    }
}

/* ---- activations prepared once per product (quant.h's quant_prep_x) ---- */

/* Where the parts of prepared activations lie in buf (m rows of n): pass
 * c0 (cn weights) of row j at xq + c0*m + j*cn, its scales at dx +
 * c0/QK_K*m + j*cn/QK_K and Q4_K's sums at xs + c0/32*m + j*cn/32, so that
 * a chunk of rows of a pass is contiguous as run()'s own buffers are. */
typedef struct kprep {
    int16_t *xq;
    float *dx, *xs;
} kprep;

static size_t up64(size_t b) { return (b + 63) & ~(size_t)63; }

static kprep prep_at(const void *buf, size_t n, size_t m)
{
    uint8_t *p = (uint8_t *)(uintptr_t)buf;
    const size_t q = up64(m * n * sizeof(int16_t)), d = up64(m * (n / QK_K) * sizeof(float));
    return (kprep){(int16_t *)(void *)p, (float *)(void *)(p + q), (float *)(void *)(p + q + d)};
}

size_t qx_kint_prep_bytes(size_t n, size_t m)
{
    return up64(m * n * sizeof(int16_t)) + up64(m * (n / QK_K) * sizeof(float)) + up64(m * (n / 32) * sizeof(float));
}

/* One row's pass of cn weights at xj: rounded into q and dx, Q4_K's sums
 * into xs. */
static void prep_row(qtype t, const float *xj, size_t cn, int16_t *q, float *dx, float *xs)
{
    quantize(xj, cn, q, dx);
    if (t == QT_Q4_K)
        qx_xsums(xj, cn, xs);
}

void qx_kint_prep(qtype t, const float *x, size_t n, size_t m, size_t j0, size_t j1, void *buf)
{
    const kprep k = prep_at(buf, n, m);
    for (size_t c0 = 0; c0 < n; c0 += KI_COLS) {
        const size_t cn = n - c0 < KI_COLS ? n - c0 : KI_COLS;
        for (size_t j = j0; j < j1; j++)
            prep_row(t, x + j * n + c0, cn, k.xq + c0 * m + j * cn, k.dx + c0 / QK_K * m + j * (cn / QK_K),
                     k.xs + c0 / 32 * m + j * (cn / 32));
    }
}

/* The passes of a product: columns quantised xcap / cn at a time into xq
 * (scales in dx, Q4_K's sums in xs), or read from prep (qx_kint_prep's, in
 * the same chunks: the same kernel calls), every row decoded into wbuf for
 * each chunk of columns. */
static void run(ki_pass *p, const void *w, size_t n, const float *x, const void *prep, size_t m, float *y,
                size_t r0, size_t r1, int16_t *xq, size_t xcap, float *dx, float *xs)
{
    const kprep k = prep ? prep_at(prep, n, m) : (kprep){0};
    for (size_t c0 = 0; c0 < n; c0 += KI_COLS) {
        const size_t cn = n - c0 < KI_COLS ? n - c0 : KI_COLS, jmax = xcap / cn;
        p->len = cn / QK_K;
        p->w0 = (const uint8_t *)w + quant_row_bytes(p->t, c0);
        p->add = c0 > 0;
        for (size_t j0 = 0; j0 < m; j0 += jmax) {
            p->jc = m - j0 < jmax ? m - j0 : jmax;
            p->y = y + j0 * p->ldy;
            if (prep) {
                p->xq = k.xq + c0 * m + j0 * cn;
                p->dx = k.dx + c0 / QK_K * m + j0 * p->len;
                p->xs = k.xs + c0 / 32 * m + j0 * (cn / 32);
            } else {
                p->xq = xq;
                p->dx = dx;
                p->xs = xs;
                for (size_t j = 0; j < p->jc; j++)
                    prep_row(p->t, x + (j0 + j) * n + c0, cn, xq + j * cn, dx + j * p->len, xs + j * (cn / 32));
            }
            rows_times(p, r0, r1);
        }
    }
}

/* Without scratch (a matvec): KI_R rows and the columns in a small frame. */
__attribute__((noinline)) static void kint_small(ki_pass *p, const void *w, size_t n, const float *x,
                                                 size_t m, float *y, size_t r0, size_t r1)
{
    enum { XCAP = 2 * KI_COLS };
    _Alignas(64) int16_t wbuf[KI_R * KI_COLS], xq[XCAP];
    float dx[XCAP / QK_K], xs[XCAP / 32];
    p->wbuf = wbuf;
    p->rows_at_once = KI_R;
    run(p, w, n, x, NULL, m, y, r0, r1, xq, XCAP, dx, xs);
}

/* With the caller's scratch (QUANT_MM_ROWS * n floats: 16 rows of int16)
 * for the rows, and 128 KB here for the columns: 32 of 2048 weights, so
 * that a row is decoded once per 32 columns. */
__attribute__((noinline)) static void kint_large(ki_pass *p, const void *w, size_t n, const float *x,
                                                 size_t m, float *y, size_t r0, size_t r1, float *scratch)
{
    _Alignas(64) int16_t xq[KI_XCAP];
    float dx[KI_XCAP / QK_K], xs[KI_XCAP / 32];
    p->wbuf = (int16_t *)(void *)scratch;
    p->rows_at_once = 2 * QUANT_MM_ROWS;
    run(p, w, n, x, NULL, m, y, r0, r1, xq, KI_XCAP, dx, xs);
}

void qx_kint_matmul(bool wide, qtype t, const void *w, size_t n, const float *x, const void *prep, size_t m,
                    float *y, size_t ldy, size_t r0, size_t r1, float *scratch)
{
    ki_pass p = {.t = t, .rb = quant_row_bytes(t, n), .ldy = ldy,
                 .k = wide ? (ki_set){shapes512, KI_R, KI_J} : (ki_set){shapes256, K2_R, K2_J}};
    if (prep && scratch) { /* x is not on the stack: chunks of 4x (128 columns of 2048, 512 KB: L2) */
        p.wbuf = (int16_t *)(void *)scratch;
        p.rows_at_once = 2 * QUANT_MM_ROWS;
        run(&p, w, n, x, prep, m, y, r0, r1, NULL, 4 * KI_XCAP, NULL, NULL);
    } else if (m == 1 || !scratch)
        kint_small(&p, w, n, x, m, y, r0, r1);
    else
        kint_large(&p, w, n, x, m, y, r0, r1, scratch);
}

#else
typedef int quant_x86_kint_unused; /* ISO C wants a declaration in every file */
#endif /* QUANT_HAVE_X86 */
