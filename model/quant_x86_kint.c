/* Integer products for the K-quants (Q4_K, Q6_K) on AVX-512 VNNI: the
 * avx512vnni16 set (16-bit activations) and the K-quant half of the
 * avx512vnni8 set (8-bit activations, llama.cpp's Q8_K).
 *
 * Why not int8 weights with vpdpbusd: a K-quant's sub-blocks (32 or 16
 * weights) each have their own integer scale, and a float conversion and
 * multiply-add per sub-block and output would cost as much as the float
 * kernels' FMAs. Instead each weight row is decoded once, per call, into
 * int16 with its sub-block scale multiplied in (Q4_K: q * sc <= 945; Q6_K:
 * (q - 32) * sc, |.| <= 4096), and each activation row is quantised once
 * per 256-weight block to integers of at most XMAX with one float scale.
 * One vpdpwssd then does 32 multiply-adds in int32, and a block of 256
 * costs each output 8 of them plus one conversion and one FMA, where the
 * float kernels spend 16 FMAs (and decode the weights to floats first).
 *
 * Activations: x_q = round(x / dx), dx = max|x| / XMAX over the block.
 * XMAX 16383 (avx512vnni16): 16 products per int32 lane and block, each
 * at most 4096 * 16383, stay under 2^31; the rounding is 3e-5 of the
 * block's largest value, near float accuracy. XMAX 127 (avx512vnni8): as
 * llama.cpp's Q8_K. Q4_K's mins term, -dmin * m * (sum of x over the
 * sub-block), uses the float sums of x, as the float kernels
 * (qx_q4_k_mins).
 *
 * Batch invariance: output (r, j) is one chain over the row's blocks b in
 * order, f = fma((float)I_b, dw_b * dx_b, f), with I_b the block's exact
 * integer product, then one fixed reduction of f's 16 lanes (then Q4_K's
 * mins). That sequence is the same whatever the call's shape (R rows x J
 * columns), m, the row range or the thread; rows longer than KI_COLS are
 * done in the same passes for every m. */
#include "quant_x86_impl.h"

#if QUANT_HAVE_X86
#include <math.h>

#define KI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define KI_INLINE                                                                                                \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"), always_inline)) inline

/* Weights per pass; int16 per buffer (64 KB on the stack: activation rows,
 * and the decoded weight rows when the caller gives no scratch); rows and
 * columns per kernel call (R x J int32 and float accumulators in
 * registers). */
enum { KI_COLS = 4096, KI_BUF = 32768, KI_R = 4, KI_J = 3, KI_NB = KI_COLS / QK_K };

bool qx_kint_handles(qtype t, size_t n) { return (t == QT_Q4_K || t == QT_Q6_K) && n > 0 && n % QK_K == 0; }

/* ---- activations ---- */

/* One column's cn weights' worth of x into q (int16) and a scale per 256:
 * dx[b]. A NaN in a block makes its scale NaN, so the products are NaN as
 * the float sets' (max would drop it). */
KI static void quantize(const float *x, size_t cn, int xmax, int16_t *q, float *dx)
{
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512i lim = _mm512_set1_epi32(xmax), nlim = _mm512_set1_epi32(-xmax);
    for (size_t b = 0; b < cn / QK_K; b++, x += QK_K, q += QK_K) {
        __m512 m = _mm512_setzero_ps();
        __mmask16 nan = 0;
        for (int k = 0; k < QK_K / 16; k++) {
            const __m512 v = _mm512_loadu_ps(x + 16 * k);
            m = _mm512_max_ps(m, _mm512_and_ps(v, absmask));
            nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        }
        const float amax = _mm512_reduce_max_ps(m);
        dx[b] = nan ? NAN : amax / (float)xmax;
        const __m512 id = _mm512_set1_ps(amax > 0.0f ? (float)xmax / amax : 0.0f);
        for (int k = 0; k < QK_K / 16; k++) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * k), id));
            v = _mm512_max_epi32(_mm512_min_epi32(v, lim), nlim);
            _mm256_storeu_si256((__m256i *)(void *)(q + 16 * k), _mm512_cvtepi32_epi16(v));
        }
    }
}

/* ---- weights ---- */

/* 32 int16 lanes: the first 16 a, the last 16 b. */
KI_INLINE static __m512i pair16(int a, int b)
{
    return _mm512_inserti64x4(_mm512_set1_epi16((short)a), _mm256_set1_epi16((short)b), 1);
}

/* A row's len blocks as int16 q * sc in weight order, d per block, and
 * dmin * m per sub-block (8 per block: the mins term). */
KI static void decode_q4_k(const uint8_t *row, size_t len, int16_t *w, float *d, float *dm)
{
    const __m512i m4 = _mm512_set1_epi16(0xF);
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
        for (int c = 0; c < 4; c++) {
            const __m512i v = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(b->qs + 32 * c)));
            const int s0 = (int)(sc >> (16 * c) & 0xff), s1 = (int)(sc >> (16 * c + 8) & 0xff);
            _mm512_storeu_si512(w + 64 * c, _mm512_mullo_epi16(_mm512_and_si512(v, m4), _mm512_set1_epi16((short)s0)));
            _mm512_storeu_si512(w + 64 * c + 32, _mm512_mullo_epi16(_mm512_srli_epi16(v, 4), _mm512_set1_epi16((short)s1)));
        }
    }
}

/* A row's len blocks as int16 (q - 32) * sc in weight order, and d. */
KI static void decode_q6_k(const uint8_t *row, size_t len, int16_t *w, float *d)
{
    for (size_t i = 0; i < len; i++, w += QK_K) {
        const block_q6_k *b = (const block_q6_k *)(const void *)row + i;
        d[i] = _cvtsh_ss(b->d);
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6_k_bytes(b, h, q);
            for (int k = 0; k < 4; k++) {
                const int s = 8 * h + 2 * k; /* weights 32k .. +16 and +16 .. +32 of the half */
                const __m512i v = _mm512_mullo_epi16(_mm512_cvtepi8_epi16(q[k]), pair16(b->scales[s], b->scales[s + 1]));
                _mm512_storeu_si512(w + 128 * h + 32 * k, v);
            }
        }
    }
}

/* ---- the kernel ---- */

/* out[r*J + j] for R decoded rows (w + r*ld, block scales dw + r*nb) and
 * J quantised columns (x + j*ld, dx + j*nb), nb blocks (ld = nb * QK_K). */
KI_INLINE static void kernel(const int16_t *w, const float *dw, const int16_t *x, const float *dx, size_t nb, int R,
                             int J, float *out)
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
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            out[r * J + j] = _mm512_reduce_add_ps(f[r][j]);
}

typedef void (*ki_fn)(const int16_t *w, const float *dw, const int16_t *x, const float *dx, size_t nb, float *out);

#define KI_FN(R, J)                                                                                            \
    KI static void ki_##R##x##J(const int16_t *w, const float *dw, const int16_t *x, const float *dx, size_t nb, \
                                float *out)                                                                    \
    {                                                                                                          \
        kernel(w, dw, x, dx, nb, R, J, out);                                                                   \
    }
KI_FN(1, 1) KI_FN(1, 2) KI_FN(1, 3) KI_FN(2, 1) KI_FN(2, 2) KI_FN(2, 3)
KI_FN(3, 1) KI_FN(3, 2) KI_FN(3, 3) KI_FN(4, 1) KI_FN(4, 2) KI_FN(4, 3)
#undef KI_FN

static const ki_fn shapes[KI_R][KI_J] = {
    {ki_1x1, ki_1x2, ki_1x3}, {ki_2x1, ki_2x2, ki_2x3}, {ki_3x1, ki_3x2, ki_3x3}, {ki_4x1, ki_4x2, ki_4x3}};

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
    int16_t *wbuf; /* rows decoded here, rows_at_once of them */
    size_t rows_at_once;
    float *y;
    size_t ldy;
    bool add;
} ki_pass;

/* Q4_K's mins term for R rows (dmin * m, 8 per block: dm + r*8*nb) and J
 * columns (xs + j*8*nb): one 8-lane chain over the blocks per output, as
 * qx_q4_k_mins, with the scales unpacked once per decoded row. */
KI_INLINE static void q4_k_mins(const float *dm, const float *xs, size_t nb, size_t R, size_t J, float *out)
{
    for (size_t r = 0; r < R; r++)
        for (size_t j = 0; j < J; j++) {
            __m256 a = _mm256_setzero_ps();
            for (size_t b = 0; b < nb; b++)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(dm + (r * nb + b) * 8), _mm256_loadu_ps(xs + (j * nb + b) * 8), a);
            out[r * J + j] -= hsum(a);
        }
}

KI static void rows_times(const ki_pass *p, size_t r0, size_t r1)
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
        for (size_t i0 = 0; i0 < nr; i0 += KI_R) {
            const size_t R = nr - i0 < KI_R ? nr - i0 : KI_R;
            for (size_t j0 = 0; j0 < p->jc; j0 += KI_J) {
                const size_t J = p->jc - j0 < KI_J ? p->jc - j0 : KI_J;
                float v[KI_R * KI_J];
                shapes[R - 1][J - 1](p->wbuf + i0 * ld, dw + i0 * p->len, p->xq + j0 * ld, p->dx + j0 * p->len,
                                     p->len, v);
                if (p->t == QT_Q4_K)
                    q4_k_mins(dm + i0 * p->len * 8, p->xs + j0 * 8 * p->len, p->len, R, J, v);
                for (size_t i = 0; i < R; i++)
                    for (size_t j = 0; j < J; j++) {
                        float *o = p->y + (j0 + j) * p->ldy + rg + i0 + i;
                        *o = p->add ? *o + v[i * J + j] : v[i * J + j];
                    }
            }
        }
    }
}

/* The passes of a product: columns quantised xcap / cn at a time into xq
 * (scales in dx, Q4_K's sums in xs), every row decoded into wbuf for each
 * chunk of columns. */
static void run(ki_pass *p, int xmax, const void *w, size_t n, const float *x, size_t m, float *y, size_t r0,
                size_t r1, int16_t *xq, size_t xcap, float *dx, float *xs)
{
    p->xq = xq;
    p->dx = dx;
    p->xs = xs;
    for (size_t c0 = 0; c0 < n; c0 += KI_COLS) {
        const size_t cn = n - c0 < KI_COLS ? n - c0 : KI_COLS, jmax = xcap / cn;
        p->len = cn / QK_K;
        p->w0 = (const uint8_t *)w + quant_row_bytes(p->t, c0);
        p->add = c0 > 0;
        for (size_t j0 = 0; j0 < m; j0 += jmax) {
            p->jc = m - j0 < jmax ? m - j0 : jmax;
            p->y = y + j0 * p->ldy;
            for (size_t j = 0; j < p->jc; j++) {
                const float *xj = x + (j0 + j) * n + c0;
                quantize(xj, cn, xmax, xq + j * cn, dx + j * p->len);
                if (p->t == QT_Q4_K)
                    qx_xsums(xj, cn, xs + j * (cn / 32));
            }
            rows_times(p, r0, r1);
        }
    }
}

/* Without scratch (a matvec): KI_R rows and the columns in a small frame. */
__attribute__((noinline)) static void kint_small(ki_pass *p, int xmax, const void *w, size_t n, const float *x,
                                                 size_t m, float *y, size_t r0, size_t r1)
{
    enum { XCAP = 2 * KI_COLS };
    _Alignas(64) int16_t wbuf[KI_R * KI_COLS], xq[XCAP];
    float dx[XCAP / QK_K], xs[XCAP / 32];
    p->wbuf = wbuf;
    p->rows_at_once = KI_R;
    run(p, xmax, w, n, x, m, y, r0, r1, xq, XCAP, dx, xs);
}

/* With the caller's scratch (QUANT_MM_ROWS * n floats: 16 rows of int16)
 * for the rows, and 128 KB here for the columns: 32 of 2048 weights, so
 * that a row is decoded once per 32 columns. */
__attribute__((noinline)) static void kint_large(ki_pass *p, int xmax, const void *w, size_t n, const float *x,
                                                 size_t m, float *y, size_t r0, size_t r1, float *scratch)
{
    enum { XCAP = 65536 };
    _Alignas(64) int16_t xq[XCAP];
    float dx[XCAP / QK_K], xs[XCAP / 32];
    p->wbuf = (int16_t *)(void *)scratch;
    p->rows_at_once = 2 * QUANT_MM_ROWS;
    run(p, xmax, w, n, x, m, y, r0, r1, xq, XCAP, dx, xs);
}

void qx_kint_matmul(qtype t, int xmax, const void *w, size_t n, const float *x, size_t m, float *y, size_t ldy,
                    size_t r0, size_t r1, float *scratch)
{
    ki_pass p = {.t = t, .rb = quant_row_bytes(t, n), .ldy = ldy};
    if (m == 1 || !scratch)
        kint_small(&p, xmax, w, n, x, m, y, r0, r1);
    else
        kint_large(&p, xmax, w, n, x, m, y, r0, r1, scratch);
}

#else
typedef int quant_x86_kint_unused; /* ISO C wants a declaration in every file */
#endif /* QUANT_HAVE_X86 */
