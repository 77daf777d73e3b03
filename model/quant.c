/* CPU weight kernels: dequantisation, dot products, matvec (decode) and
 * matmul (prefill, batched decode) over the weight types of quant.h.
 *
 * Kernel sets (quant_impl.h): portable scalar C, here; x86-64 AVX2+FMA+F16C
 * and AVX-512 in quant_x86.c; ARM64 NEON and NEON with the int8 dot product
 * in quant_neon.c and quant_dotprod.c. The x86 sets are compiled with
 * per-function target attributes (no -mavx2 needed) and the best one the CPU
 * runs is chosen once at run time (HINGE_CPU forces one: quant_impl.h). All read weights as stored and multiply them by
 * float activations, so results stay within float rounding of
 * dequantise-then-multiply (what a GPU implementation reproduces); the
 * exceptions are the x86 VNNI sets' integer products (quant_x86_vnni.c,
 * quant_x86_kint.c), which round x first: avx512vnni16, the default on
 * AVX-512 VNNI CPUs, to 15 bits per 256 weights for Q4_K and Q6_K.
 *
 * Batch invariance, in every set: output (j, r) of quant_matmul is bitwise
 * quant_matvec's output r for row j of X alone, whatever m, the row range
 * and X's alignment (the scalar set: each product is one dot_row_scalar
 * order over the dequantised row; the x86 sets: see quant_x86.c).
 *
 * Dequantisation formulas and their float evaluation order are ggml's:
 *   q4_0  (float)(q - 8) * d          q5_0  (float)(q - 16) * d
 *   q4_1  (float)q * d + m            q5_1  (float)q * d + m (rounded twice)
 *   q8_0  (float)q * d                q6_k  (d * sc) * (float)(q - 32)
 *   q4_k  (d * sc) * q - dmin * m, the product rounded before the subtraction
 * so both sets' quant_dequant_row give the same bits. Q2_K, Q3_K, Q5_K and
 * IQ4_NL have one decoder for every set (quant_k.c). */
#include "quant.h"
#include "quant_impl.h"
#include "quant_k.h"
#include "quant_neon.h"
#include "quant_x86.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

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
void quant_scale_min_k4(int j, const uint8_t *q, float *sc, float *m)
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

static void deq_q4_1(const block_q4_1 *b, float *y)
{
    const float d = quant_f16_to_f32(b->d), m = quant_f16_to_f32(b->m);
    for (int j = 0; j < QK_0 / 2; j++) {
        const float p0 = (float)(b->qs[j] & 0xF) * d; /* separate statements: no FMA contraction */
        const float p1 = (float)(b->qs[j] >> 4) * d;
        y[j] = p0 + m;
        y[j + QK_0 / 2] = p1 + m;
    }
}

static void deq_q5_1(const block_q5_1 *b, float *y)
{
    const float d = quant_f16_to_f32(b->d), m = quant_f16_to_f32(b->m);
    const uint32_t qh = load_u32le(b->qh);
    for (int j = 0; j < QK_0 / 2; j++) {
        const int h0 = (int)(qh >> j & 1) << 4;
        const int h1 = (int)(qh >> (j + QK_0 / 2) & 1) << 4;
        const float p0 = (float)((b->qs[j] & 0xF) | h0) * d;
        const float p1 = (float)((b->qs[j] >> 4) | h1) * d;
        y[j] = p0 + m;
        y[j + QK_0 / 2] = p1 + m;
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
        quant_scale_min_k4(2 * c, b->scales, &sc, &m);
        const float d1 = d * sc, m1 = dmin * m;
        quant_scale_min_k4(2 * c + 1, b->scales, &sc, &m);
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

void quant_dequant_scalar(qtype t, const void *row, float *dst, size_t n)
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
    case QT_Q4_1:
        for (size_t b = 0; b < n / QK_0; b++)
            deq_q4_1((const block_q4_1 *)row + b, dst + b * QK_0);
        break;
    case QT_Q5_1:
        for (size_t b = 0; b < n / QK_0; b++)
            deq_q5_1((const block_q5_1 *)row + b, dst + b * QK_0);
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
    default: quant_k_dequant(t, row, dst, n); break;
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
            quant_dequant_scalar(t, row_at(t, row, e), buf, c);
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
/* Dispatch                                                            */

/* The one piece of mutable state: the widest set this CPU runs (top),
 * whether it has AVX-VNNI, and the one quant.h uses (best: see best_init;
 * or HINGE_CPU's), decided once (CPUID traps to the hypervisor in a VM, too
 * slow to ask per call) and never changed. */
static pthread_once_t best_once = PTHREAD_ONCE_INIT;
static quant_kset top = QUANT_KSET_SCALAR, best = QUANT_KSET_SCALAR;
static bool avxvnni;

/* Each family's sets nest (avx2 < avx512 < avx512vnni, neon < dotprod): a
 * CPU that runs one runs those below it; scalar runs anywhere. avxvnni16
 * is avx2's level plus the AVX-VNNI flag (which some CPUs without AVX-512
 * have). */
static int level(quant_kset k)
{
    switch (k) {
    case QUANT_KSET_AVX2: case QUANT_KSET_NEON: case QUANT_KSET_AVXVNNI16: return 1;
    case QUANT_KSET_AVX512: case QUANT_KSET_DOTPROD: return 2;
    case QUANT_KSET_VNNI: case QUANT_KSET_VNNI8: case QUANT_KSET_VNNI16: return 3;
    default: return 0;
    }
}

static bool runs(quant_kset k)
{
    const bool arm_k = k == QUANT_KSET_NEON || k == QUANT_KSET_DOTPROD;
    const bool arm_top = top == QUANT_KSET_NEON || top == QUANT_KSET_DOTPROD;
    if (k == QUANT_KSET_AVXVNNI16 && !avxvnni)
        return false;
    return k == QUANT_KSET_SCALAR || (level(k) > 0 && level(k) <= level(top) && arm_k == arm_top);
}

static void best_init(void)
{
#if QUANT_HAVE_X86
    if (quant_x86_has_vnni())
        top = QUANT_KSET_VNNI;
    else if (quant_x86_has_avx512())
        top = QUANT_KSET_AVX512;
    else if (quant_x86_has_avx2())
        top = QUANT_KSET_AVX2;
    avxvnni = quant_x86_has_avxvnni();
#elif QUANT_HAVE_NEON
    top = quant_neon_has_dotprod() ? QUANT_KSET_DOTPROD : QUANT_KSET_NEON;
#endif
    /* the VNNI sets: avx512vnni16 (the K-quants' int16 products on 15-bit
     * activations, quant_x86_kint.c) is the faster one where measured, at
     * float-path perplexity and greedy output (docs/performance.md);
     * avx512vnni keeps float accuracy with three int8 limbs per value,
     * which makes it slower than avx512; avx512vnni8's 8-bit activations
     * change the numerics (and a split's two sides must run the same
     * kernels): only HINGE_CPU picks those two (quant_x86_vnni.c).
     * avxvnni16, the same K-quant products on 256-bit AVX-VNNI, is opt-in
     * too: 1.15-1.4x on its matrices but within noise of avx2 end to end
     * where measured (an AVX-512 host; no AVX-VNNI-only CPU was). */
    best = top == QUANT_KSET_VNNI ? QUANT_KSET_VNNI16 : top;
    const char *want = getenv("HINGE_CPU");
    if (!want || !*want)
        return;
    for (int k = 0; k < QUANT_KSET_COUNT; k++)
        if (strcmp(want, quant_kset_name((quant_kset)k)) == 0 && runs((quant_kset)k)) {
            best = (quant_kset)k;
            return;
        }
    const hinge_logger lg = {.fn = hinge_log_stderr, .level = HINGE_LOG_WARN};
    hinge_log(&lg, HINGE_LOG_WARN, "HINGE_CPU=%s: not a kernel set this CPU runs; using %s", want,
              quant_kset_name(best));
}

quant_kset quant_kset_best(void)
{
    pthread_once(&best_once, best_init);
    return best;
}

bool quant_kset_supported(quant_kset k)
{
    pthread_once(&best_once, best_init);
    return runs(k);
}

const char *quant_kset_name(quant_kset k)
{
    switch (k) {
    case QUANT_KSET_SCALAR: return "scalar";
    case QUANT_KSET_AVX2: return "avx2";
    case QUANT_KSET_AVX512: return "avx512";
    case QUANT_KSET_NEON: return "neon";
    case QUANT_KSET_DOTPROD: return "dotprod";
    case QUANT_KSET_VNNI: return "avx512vnni";
    case QUANT_KSET_VNNI8: return "avx512vnni8";
    case QUANT_KSET_VNNI16: return "avx512vnni16";
    case QUANT_KSET_AVXVNNI16: return "avxvnni16";
    default: return "unknown";
    }
}

void quant_dequant_row_k(quant_kset k, qtype t, const void *row, float *dst, size_t n)
{
    if (k != QUANT_KSET_SCALAR && quant_k_type(t)) {
        quant_k_dequant_set(k, t, row, dst, n);
        return;
    }
#if QUANT_HAVE_X86
    if (k != QUANT_KSET_SCALAR && !quant_k_type(t)) {
        quant_x86_dequant(t, row, dst, n);
        return;
    }
#endif
    (void)k;
    quant_dequant_scalar(t, row, dst, n);
}

float quant_dot_row_k(quant_kset k, qtype t, const void *row, const float *x, size_t n)
{
    if (k != QUANT_KSET_SCALAR && quant_k_type(t)) {
        float y;
        quant_k_matmul(k, t, row, n, x, 1, &y, 0, 0, 1, NULL);
        return y;
    }
#if QUANT_HAVE_X86
    if (k != QUANT_KSET_SCALAR) {
        float y;
        quant_x86_matmul(k, t, row, n, x, 1, &y, 0, 0, 1, NULL);
        return y;
    }
#elif QUANT_HAVE_NEON
    if (k != QUANT_KSET_SCALAR) {
        float y;
        quant_neon_matmul(k, t, row, n, x, 1, &y, 0, 0, 1);
        return y;
    }
#endif
    (void)k;
    return dot_row_scalar(t, row, x, n);
}

void quant_matvec_k(quant_kset k, qtype t, const void *w, size_t n, const float *x, float *y, size_t r0,
                    size_t r1)
{
    if (k != QUANT_KSET_SCALAR && quant_k_type(t)) {
        quant_k_matmul(k, t, w, n, x, 1, y, 0, r0, r1, NULL);
        return;
    }
#if QUANT_HAVE_X86
    if (k != QUANT_KSET_SCALAR) {
        quant_x86_matmul(k, t, w, n, x, 1, y, 0, r0, r1, NULL);
        return;
    }
#elif QUANT_HAVE_NEON
    if (k != QUANT_KSET_SCALAR) {
        quant_neon_matmul(k, t, w, n, x, 1, y, 0, r0, r1);
        return;
    }
#endif
    (void)k;
    const size_t rb = quant_row_bytes(t, n);
    for (size_t r = r0; r < r1; r++)
        y[r] = dot_row_scalar(t, (const uint8_t *)w + r * rb, x, n);
}

/* Scalar: results gather for OUT_ROWS rows x up to OUT_M positions in a
 * stack buffer and go to y a whole 64-byte line per position. */
enum { OUT_ROWS = 2 * QUANT_MM_ROWS, OUT_M = 256 };

void quant_matmul_k(quant_kset k, qtype t, const void *w, size_t n, const float *x, size_t m, float *y,
                    size_t ldy, size_t r0, size_t r1, float *scratch)
{
    if (k != QUANT_KSET_SCALAR && quant_k_type(t)) {
        quant_k_matmul(k, t, w, n, x, m, y, ldy, r0, r1, scratch);
        return;
    }
#if QUANT_HAVE_X86
    if (k != QUANT_KSET_SCALAR) {
        quant_x86_matmul(k, t, w, n, x, m, y, ldy, r0, r1, scratch);
        return;
    }
#elif QUANT_HAVE_NEON
    if (k != QUANT_KSET_SCALAR) {
        quant_neon_matmul(k, t, w, n, x, m, y, ldy, r0, r1);
        return;
    }
#endif
    (void)k;
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
                        quant_dequant_scalar(t, (const uint8_t *)w + (r + g + i) * rb, scratch + i * n, n);
                tile_scalar(rows, nr, n, xj, mj, out + g, OUT_ROWS);
            }
            for (size_t j = 0; j < mj; j++)
                for (size_t i = 0; i < nout; i++)
                    y[(j0 + j) * ldy + r + i] = out[j * OUT_ROWS + i];
        }
    }
}

size_t quant_prep_bytes_k(quant_kset k, qtype t, size_t n, size_t m)
{
#if QUANT_HAVE_X86
    return quant_x86_prep_bytes(k, t, n, m);
#else
    (void)k, (void)t, (void)n, (void)m;
    return 0;
#endif
}

void quant_prep_x_k(quant_kset k, qtype t, const float *x, size_t n, size_t m, size_t j0, size_t j1, void *prep)
{
#if QUANT_HAVE_X86
    quant_x86_prep(k, t, x, n, m, j0, j1, prep);
#else
    (void)k, (void)t, (void)x, (void)n, (void)m, (void)j0, (void)j1, (void)prep;
#endif
}

void quant_matmul_prep_k(quant_kset k, qtype t, const void *w, size_t n, const float *x, const void *prep, size_t m,
                         float *y, size_t ldy, size_t r0, size_t r1, float *scratch)
{
#if QUANT_HAVE_X86
    if (prep) {
        quant_x86_matmul_prep(k, t, w, n, x, prep, m, y, ldy, r0, r1, scratch);
        return;
    }
#endif
    (void)prep;
    quant_matmul_k(k, t, w, n, x, m, y, ldy, r0, r1, scratch);
}

float quant_dot_f32_k(quant_kset k, const float *a, const float *b, size_t n)
{
#if QUANT_HAVE_X86
    if (k != QUANT_KSET_SCALAR)
        return quant_x86_dot_f32(a, b, n);
#elif QUANT_HAVE_NEON
    if (k != QUANT_KSET_SCALAR)
        return quant_neon_dot_f32(a, b, n);
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

size_t quant_prep_bytes(qtype t, size_t n, size_t m) { return quant_prep_bytes_k(quant_kset_best(), t, n, m); }

void quant_prep_x(qtype t, const float *x, size_t n, size_t m, size_t j0, size_t j1, void *prep)
{
    quant_prep_x_k(quant_kset_best(), t, x, n, m, j0, j1, prep);
}

void quant_matmul_prep(qtype t, const void *w, size_t n, const float *x, const void *prep, size_t m, float *y,
                       size_t ldy, size_t r0, size_t r1, float *scratch)
{
    quant_matmul_prep_k(quant_kset_best(), t, w, n, x, prep, m, y, ldy, r0, r1, scratch);
}

float quant_dot_f32(const float *a, const float *b, size_t n)
{
    return quant_dot_f32_k(quant_kset_best(), a, b, n);
}

const char *quant_isa(void) { return quant_kset_name(quant_kset_best()); }
