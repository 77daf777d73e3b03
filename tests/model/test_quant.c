/* CPU weight kernels: every type, every kernel set, against a reference
 * dequantiser written here from ggml's block layouts (it shares no code with
 * quant.c) and dot products summed in double. HINGE_TEST_KSETS ("neon
 * dotprod") limits the sets checked (scripts/test-arm64: the scalar set is
 * three quarters of the run under emulation, and plain C). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "quant_impl.h"

/* |got - ref| / sum |w_i x_i| allowed for dot products. */
static const double TOL = 1e-5, TOL_INT8 = 3e-2, TOL_INT16 = 5e-5;

static const qtype all_types[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q5_0, QT_Q8_0,  QT_Q4_K,
                                  QT_Q6_K, QT_Q4_1, QT_Q5_1, QT_Q2_K, QT_Q3_K, QT_Q5_K, QT_IQ4_NL};
enum { N_TYPES = sizeof all_types / sizeof all_types[0] };

/* Row lengths: Gemma 3 270M's 640/1024/2048 and small ones; k-quants need
 * multiples of 256; float types also get odd lengths for the vector tails.
 * The last of each is over 8192, which the x86 matvec does in two passes. */
static const size_t lens_0[] = {640, 1024, 2048, 256, 64, 32, 8224};
static const size_t lens_k[] = {256, 512, 1024, 2048, 8704};
static const size_t lens_f[] = {640, 1024, 2048, 256, 64, 0, 1, 7, 13, 100, 641, 8199};

/* ------------------------------------------------------------------ */
/* Random data                                                         */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static float rnd_unit(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }

/* A random half with magnitude in [2^-10, 2^-3) (about 1e-3 .. 1.2e-1). */
static uint16_t rnd_scale16(void)
{
    const uint32_t exp = 5 + rnd() % 7; /* biased: 2^(exp-15) */
    return (uint16_t)((rnd() & 1) << 15 | exp << 10 | (rnd() & 0x3ff));
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static size_t ref_block_elems(qtype t);

static void lens_for(qtype t, const size_t **lens, size_t *count)
{
    if (ref_block_elems(t) == 256) {
        *lens = lens_k;
        *count = sizeof lens_k / sizeof lens_k[0];
    } else if (t == QT_F32 || t == QT_F16 || t == QT_BF16) {
        *lens = lens_f;
        *count = sizeof lens_f / sizeof lens_f[0];
    } else {
        *lens = lens_0;
        *count = sizeof lens_0 / sizeof lens_0[0];
    }
}

static size_t ref_block_elems(qtype t)
{
    switch (t) {
    case QT_Q4_K: case QT_Q6_K: case QT_Q2_K: case QT_Q3_K: case QT_Q5_K: return 256;
    case QT_F32: case QT_F16: case QT_BF16: return 1;
    default: return 32;
    }
}

static size_t ref_block_bytes(qtype t)
{
    switch (t) {
    case QT_F32: return 4;
    case QT_F16: case QT_BF16: return 2;
    case QT_Q4_0: return 18;
    case QT_Q5_0: return 22;
    case QT_Q4_1: return 20;
    case QT_Q5_1: return 24;
    case QT_Q8_0: return 34;
    case QT_Q4_K: return 144;
    case QT_Q6_K: return 210;
    case QT_Q2_K: return 84;
    case QT_Q3_K: return 110;
    case QT_Q5_K: return 176;
    case QT_IQ4_NL: return 18;
    }
    return 0;
}

static size_t ref_row_bytes(qtype t, size_t n) { return n / ref_block_elems(t) * ref_block_bytes(t); }

/* Fills rows x n weights of type t: random bytes with finite, reasonable
 * scales; random finite values for float types. */
static uint8_t *make_rows(qtype t, size_t rows, size_t n)
{
    const size_t bytes = rows * ref_row_bytes(t, n);
    uint8_t *w = malloc(bytes + 1);
    assert_non_null(w);
    for (size_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)rnd();
    const size_t bb = ref_block_bytes(t), nblk = bytes / bb;
    for (size_t b = 0; b < nblk; b++) {
        uint8_t *p = w + b * bb;
        switch (t) {
        case QT_F32: {
            const float f = rnd_unit();
            memcpy(p, &f, 4);
            break;
        }
        case QT_F16: /* finite, below 16 in magnitude, subnormals included */
            put16(p, (uint16_t)((rnd() & 1) << 15 | (rnd() % 19) << 10 | (rnd() & 0x3ff)));
            break;
        case QT_BF16: /* magnitude in [2^-27, 2^13) */
            put16(p, (uint16_t)((rnd() & 1) << 15 | (100 + rnd() % 40) << 7 | (rnd() & 0x7f)));
            break;
        case QT_Q4_0: case QT_Q5_0: case QT_Q8_0: put16(p, rnd_scale16()); break;
        case QT_Q4_1: case QT_Q5_1: /* d and m */
            put16(p, rnd_scale16());
            put16(p + 2, rnd_scale16());
            break;
        case QT_Q4_K:
            put16(p, rnd_scale16());
            put16(p + 2, rnd_scale16());
            break;
        case QT_Q6_K: put16(p + 208, rnd_scale16()); break;
        case QT_Q2_K: /* d and dmin after scales[16] and qs[64] */
            put16(p + 80, rnd_scale16());
            put16(p + 82, rnd_scale16());
            break;
        case QT_Q3_K: put16(p + 108, rnd_scale16()); break;
        case QT_Q5_K:
            put16(p, rnd_scale16());
            put16(p + 2, rnd_scale16());
            break;
        case QT_IQ4_NL: put16(p, rnd_scale16()); break;
        }
    }
    return w;
}

/* n floats at 64-byte alignment plus off floats (the kernels take aligned
 * and misaligned activations on different paths); free with free(*base). */
static float *alloc_floats(size_t n, size_t off, float **base)
{
    const size_t bytes = ((n + off) * sizeof(float) + 63) / 64 * 64;
    *base = aligned_alloc(64, bytes ? bytes : 64);
    assert_non_null(*base);
    return *base + off;
}

static float *make_x_at(size_t n, size_t off, float **base)
{
    float *x = alloc_floats(n, off, base);
    for (size_t i = 0; i < n; i++)
        x[i] = rnd_unit();
    return x;
}

static float *make_x(size_t n)
{
    float *base;
    make_x_at(n, 0, &base);
    return base;
}

/* ------------------------------------------------------------------ */
/* Reference dequantiser, one weight at a time from the ggml layouts   */

static float ref_f16(uint16_t h)
{
    const int e = h >> 10 & 31, m = h & 0x3ff;
    const double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (float)(h >> 15 ? -v : v);
}

static float ref_bf16(uint16_t h)
{
    const int e = h >> 7 & 255, m = h & 0x7f;
    const double v = e == 0 ? ldexp(m, -133) : ldexp(128 + m, e - 134); /* no inf/nan generated */
    return (float)(h >> 15 ? -v : v);
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Q4_K's and Q5_K's 6-bit scale and min of sub-block j. */
static void ref_scale_min(const uint8_t *s, size_t j, int *sc, int *mn)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Weight i of a block; the float expression order is ggml's. */
static float ref_weight(qtype t, const uint8_t *blk, size_t i)
{
    switch (t) {
    case QT_F32: {
        float f;
        memcpy(&f, blk, 4);
        return f;
    }
    case QT_F16: return ref_f16(get16(blk));
    case QT_BF16: return ref_bf16(get16(blk));
    case QT_Q4_0: {
        const uint8_t *qs = blk + 2;
        const int q = i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
        return (float)(q - 8) * ref_f16(get16(blk));
    }
    case QT_Q5_0: {
        const uint8_t *qh = blk + 2, *qs = blk + 6;
        const int lo = i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
        const int hi = qh[i / 8] >> (i % 8) & 1;
        return (float)((lo | hi << 4) - 16) * ref_f16(get16(blk));
    }
    case QT_Q8_0: return (float)(int8_t)blk[2 + i] * ref_f16(get16(blk));
    case QT_Q4_1: {
        const uint8_t *qs = blk + 4;
        const int q = i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
        const float p = (float)q * ref_f16(get16(blk));
        return p + ref_f16(get16(blk + 2));
    }
    case QT_Q5_1: {
        const uint8_t *qh = blk + 4, *qs = blk + 8;
        const int lo = i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
        const int hi = qh[i / 8] >> (i % 8) & 1;
        const float p = (float)(lo | hi << 4) * ref_f16(get16(blk));
        return p + ref_f16(get16(blk + 2));
    }
    case QT_Q4_K: {
        const uint8_t *s = blk + 4, *qs = blk + 16;
        const size_t j = i / 32; /* sub-block */
        int sc, mn;
        ref_scale_min(s, j, &sc, &mn);
        const uint8_t byte = qs[32 * (i / 64) + i % 32];
        const int q = j % 2 ? byte >> 4 : byte & 15;
        const float d1 = ref_f16(get16(blk)) * (float)sc;
        const float m1 = ref_f16(get16(blk + 2)) * (float)mn;
        const float p = d1 * (float)q;
        return p - m1;
    }
    case QT_Q6_K: {
        const uint8_t *ql = blk, *qh = blk + 128;
        const int8_t sc = (int8_t)blk[192 + i / 16];
        const size_t h = i / 128, k = i % 128 / 32, l = i % 32;
        const uint8_t lb = ql[64 * h + 32 * (k % 2) + l];
        const int lo = k < 2 ? lb & 15 : lb >> 4;
        const int hi = qh[32 * h + l] >> (2 * k) & 3;
        return ref_f16(get16(blk + 208)) * (float)sc * (float)((lo | hi << 4) - 32);
    }
    case QT_Q2_K: { /* scales[16] qs[64] d dmin */
        const size_t h = i / 128, k = i % 128 / 32, l = i % 32;
        const uint8_t sc = blk[8 * h + 2 * k + l / 16];
        const int q = blk[16 + 32 * h + l] >> (2 * k) & 3;
        const float dl = ref_f16(get16(blk + 80)) * (float)(sc & 15);
        const float ml = ref_f16(get16(blk + 82)) * (float)(sc >> 4);
        const float p = dl * (float)q;
        return p - ml;
    }
    case QT_Q3_K: { /* hmask[32] qs[64] scales[12] d; the scale unpacking as ggml's CUDA kernel writes it */
        const uint8_t *s = blk + 96;
        const size_t h = i / 128, k = i % 128 / 32, l = i % 32, j = 8 * h + 2 * k + l / 16;
        const int us = j < 4    ? (s[j] & 15) | (s[j + 8] & 3) << 4
                       : j < 8  ? (s[j] & 15) | (s[j + 4] >> 2 & 3) << 4
                       : j < 12 ? (s[j - 8] >> 4) | (s[j] >> 4 & 3) << 4
                                : (s[j - 8] >> 4) | (s[j - 4] >> 6 & 3) << 4;
        const int q = (blk[32 + 32 * h + l] >> (2 * k) & 3) - (blk[l] >> (4 * h + k) & 1 ? 0 : 4);
        const float dl = ref_f16(get16(blk + 108)) * (float)(us - 32);
        return dl * (float)q;
    }
    case QT_Q5_K: { /* d dmin scales[12] qh[32] qs[128] */
        const uint8_t *s = blk + 4;
        const size_t j = i / 32, l = i % 32;
        int sc, mn;
        ref_scale_min(s, j, &sc, &mn);
        const uint8_t byte = blk[48 + 32 * (j / 2) + l];
        const int q = (j % 2 ? byte >> 4 : byte & 15) | (blk[16 + l] >> j & 1) << 4;
        const float d1 = ref_f16(get16(blk)) * (float)sc;
        const float m1 = ref_f16(get16(blk + 2)) * (float)mn;
        const float p = d1 * (float)q;
        return p - m1;
    }
    case QT_IQ4_NL: {
        static const int8_t kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
        const uint8_t *qs = blk + 2;
        const int q = i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
        return ref_f16(get16(blk)) * (float)kv[q];
    }
    }
    return NAN;
}

static void ref_dequant(qtype t, const uint8_t *row, float *dst, size_t n)
{
    const size_t be = ref_block_elems(t), bb = ref_block_bytes(t);
    for (size_t i = 0; i < n; i++)
        dst[i] = ref_weight(t, row + i / be * bb, i % be);
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Distance in units in the last place between two finite floats. */
static uint32_t ulp_diff(float a, float b)
{
    int64_t ia = bits_of(a), ib = bits_of(b);
    ia = ia & 0x80000000 ? 0x80000000 - ia : ia;
    ib = ib & 0x80000000 ? 0x80000000 - ib : ib;
    return (uint32_t)(ia > ib ? ia - ib : ib - ia);
}

typedef struct dot_ref {
    double sum;  /* sum of w_i x_i */
    double norm; /* sum of |w_i x_i| */
} dot_ref;

static dot_ref ref_dot(const float *w, const float *x, size_t n)
{
    dot_ref r = {0, 0};
    for (size_t i = 0; i < n; i++) {
        r.sum += (double)w[i] * x[i];
        r.norm += fabs((double)w[i] * x[i]);
    }
    return r;
}

/* Largest normalised error seen per kernel set and type (index in
 * all_types), printed after the run: the margin under TOL. */
static double worst[QUANT_KSET_COUNT][N_TYPES];

static size_t type_index(qtype t)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (all_types[i] == t)
            return i;
    return 0;
}

/* The 8-bit activations' set rounds each value to 1/254 of its block's
 * largest, the 16-bit ones (Q4_K/Q6_K) to 1/32766: their own, wider limits. */
static double tol_of(quant_kset k)
{
    return k == QUANT_KSET_VNNI8 ? TOL_INT8 : k == QUANT_KSET_VNNI16 || k == QUANT_KSET_AVXVNNI16 ? TOL_INT16 : TOL;
}

static void check_dot(float got, dot_ref r, const char *what, qtype t, quant_kset k, size_t n)
{
    const double err = fabs((double)got - r.sum) / (r.norm + 1e-30);
    double *w = &worst[k][type_index(t)];
    *w = err > *w ? err : *w;
    if (!(err <= tol_of(k))) {
        print_error("%s %s/%s n=%zu: got %.9g ref %.9g norm err %.3g\n", what, quant_name(t), quant_kset_name(k), n,
                    (double)got, r.sum, err);
        fail();
    }
}

/* Supported, and named by HINGE_TEST_KSETS if that is set. */
static bool checked(quant_kset k)
{
    const char *only = getenv("HINGE_TEST_KSETS");
    if (!quant_kset_supported(k))
        return false;
    if (!only || !*only)
        return true;
    const char *name = quant_kset_name(k);
    const size_t len = strlen(name);
    for (const char *p = strstr(only, name); p; p = strstr(p + 1, name))
        if ((p == only || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0'))
            return true;
    return false;
}

static void each_kset(void (*fn)(quant_kset, qtype))
{
    for (int k = 0; k < QUANT_KSET_COUNT; k++) {
        if (!checked((quant_kset)k))
            continue;
        for (size_t i = 0; i < N_TYPES; i++)
            fn((quant_kset)k, all_types[i]);
    }
}

static void dequant_one(quant_kset k, qtype t)
{
    const size_t *lens;
    size_t count;
    lens_for(t, &lens, &count);
    for (size_t li = 0; li < count; li++) {
        const size_t n = lens[li];
        uint8_t *w = make_rows(t, 3, n);
        float *ref = malloc((n + 1) * sizeof *ref), *got = malloc((n + 1) * sizeof *got);
        assert_true(ref && got);
        for (size_t r = 0; r < 3; r++) {
            const uint8_t *row = w + r * ref_row_bytes(t, n);
            ref_dequant(t, row, ref, n);
            got[n] = 777.0f; /* canary past the row */
            quant_dequant_row_k(k, t, row, got, n);
            assert_true(got[n] == 777.0f);
            for (size_t i = 0; i < n; i++) {
                if (ulp_diff(got[i], ref[i]) > 1 || !isfinite(got[i])) {
                    print_error("dequant %s/%s n=%zu [%zu]: got %.9g ref %.9g\n", quant_name(t), quant_kset_name(k),
                                n, i, (double)got[i], (double)ref[i]);
                    fail();
                }
            }
        }
        free(w);
        free(ref);
        free(got);
    }
}

static void test_dequant(void **state)
{
    (void)state;
    each_kset(dequant_one);
}

static void dot_one(quant_kset k, qtype t)
{
    const size_t *lens;
    size_t count;
    lens_for(t, &lens, &count);
    for (size_t li = 0; li < count; li++) {
        const size_t n = lens[li];
        uint8_t *w = make_rows(t, 4, n);
        float *xbase, *x = make_x_at(n, li % 2 * 4, &xbase), *deq = malloc((n + 1) * sizeof *deq);
        assert_non_null(deq);
        for (size_t r = 0; r < 4; r++) {
            const uint8_t *row = w + r * ref_row_bytes(t, n);
            ref_dequant(t, row, deq, n);
            check_dot(quant_dot_row_k(k, t, row, x, n), ref_dot(deq, x, n), "dot_row", t, k, n);
        }
        free(w);
        free(xbase);
        free(deq);
    }
}

static void test_dot_row(void **state)
{
    (void)state;
    each_kset(dot_one);
}

enum { ROWS = 37 };
static const float SENTINEL = -12345.0f;

static void matvec_one(quant_kset k, qtype t)
{
    const size_t *lens;
    size_t count;
    lens_for(t, &lens, &count);
    const size_t ranges[3][2] = {{0, ROWS}, {5, 23}, {36, 37}};
    for (size_t li = 0; li < count; li++) {
        const size_t n = lens[li], rb = ref_row_bytes(t, n);
        uint8_t *w = make_rows(t, ROWS, n);
        float *xbase, *x = make_x_at(n + 4, 0, &xbase), *deq = malloc((n + 1) * sizeof *deq), y[ROWS];
        assert_non_null(deq);
        for (size_t g = 0; g < 3; g++) {
            const size_t r0 = ranges[g][0], r1 = ranges[g][1];
            if (g == 1) { /* the same values, misaligned */
                memmove(xbase + 4, xbase, n * sizeof *x);
                x = xbase + 4;
            }
            for (size_t r = 0; r < ROWS; r++)
                y[r] = SENTINEL;
            quant_matvec_k(k, t, w, n, x, y, r0, r1);
            for (size_t r = 0; r < ROWS; r++) {
                if (r < r0 || r >= r1) {
                    assert_true(y[r] == SENTINEL);
                    continue;
                }
                ref_dequant(t, w + r * rb, deq, n);
                check_dot(y[r], ref_dot(deq, x, n), "matvec", t, k, n);
            }
        }
        free(w);
        free(xbase);
        free(deq);
    }
}

static void test_matvec(void **state)
{
    (void)state;
    each_kset(matvec_one);
}

static void matmul_one(quant_kset k, qtype t)
{
    const size_t *lens;
    size_t count;
    lens_for(t, &lens, &count);
    const size_t ms[] = {1, 3, 17, 128};
    const size_t ranges[3][2] = {{0, ROWS}, {3, 30}, {9, 12}};
    const size_t ldy = ROWS + 5; /* padding columns must stay untouched */
    for (size_t li = 0; li < count && li < 3; li++) {
        const size_t n = lens[li], rb = ref_row_bytes(t, n);
        uint8_t *w = make_rows(t, ROWS, n);
        float *deq = malloc((ROWS * n + 1) * sizeof *deq), *sbase[2], *scratch[2];
        assert_non_null(deq);
        for (size_t a = 0; a < 2; a++) /* 64-byte aligned, then not */
            scratch[a] = alloc_floats(QUANT_MM_ROWS * n, 4 * a, &sbase[a]);
        for (size_t r = 0; r < ROWS; r++)
            ref_dequant(t, w + r * rb, deq + r * n, n);
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
            const size_t m = ms[mi], a = mi % 2;
            float *xbase, *x = make_x_at(m * n, 4 * a, &xbase), *y = malloc(m * ldy * sizeof *y);
            assert_non_null(y);
            for (size_t g = 0; g < 3; g++) {
                const size_t r0 = ranges[g][0], r1 = ranges[g][1];
                for (size_t i = 0; i < m * ldy; i++)
                    y[i] = SENTINEL;
                quant_matmul_k(k, t, w, n, x, m, y, ldy, r0, r1, scratch[a]);
                for (size_t j = 0; j < m; j++)
                    for (size_t r = 0; r < ldy; r++) {
                        const float got = y[j * ldy + r];
                        if (r < r0 || r >= r1)
                            assert_true(got == SENTINEL);
                        else
                            check_dot(got, ref_dot(deq + r * n, x + j * n, n), "matmul", t, k, n);
                    }
            }
            free(xbase);
            free(y);
        }
        free(w);
        free(deq);
        free(sbase[0]);
        free(sbase[1]);
    }
}

static void test_matmul(void **state)
{
    (void)state;
    each_kset(matmul_one);
}

/* Batch invariance: each output of quant_matmul_k is bitwise the output of
 * quant_matvec_k on that row of X alone, whatever m, the row range, the
 * position of the row in X and the alignment of X. A session's logits on
 * the edge then do not depend on how many others share its batch. */
static void invariant_one(quant_kset k, qtype t)
{
    const size_t *lens;
    size_t count;
    lens_for(t, &lens, &count);
    const size_t ms[] = {1, 2, 3, 4, 5, 7, 9, 17, 32, 64, 70};
    const size_t ranges[3][2] = {{0, ROWS}, {3, 30}, {16, 17}};
    enum { MMAX = 70 };
    for (size_t li = 0; li < count; li++) {
        const size_t n = lens[li];
        if (n == 0)
            continue;
        uint8_t *w = make_rows(t, ROWS, n);
        float *sbase, *scratch = alloc_floats(QUANT_MM_ROWS * n, 0, &sbase);
        float *xbase, *x = make_x_at(MMAX * n + 4, 0, &xbase);
        float *alone = malloc(MMAX * ROWS * sizeof *alone), *y = malloc(MMAX * ROWS * sizeof *y);
        assert_true(alone && y);
        for (size_t a = 0; a < 2; a++) {
            if (a == 1) { /* the same values, misaligned */
                memmove(xbase + 3, xbase, MMAX * n * sizeof *x);
                x = xbase + 3;
            }
            for (size_t j = 0; j < MMAX; j++)
                quant_matvec_k(k, t, w, n, x + j * n, alone + j * ROWS, 0, ROWS);
            for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
                const size_t m = ms[mi];
                for (size_t g = 0; g < 3; g++) {
                    const size_t r0 = ranges[g][0], r1 = ranges[g][1];
                    /* rows j0 .. j0+m of X: a row's place in the batch varies */
                    const size_t j0 = (mi * 7 + g) % (MMAX - m + 1);
                    quant_matmul_k(k, t, w, n, x + j0 * n, m, y, ROWS, r0, r1, scratch);
                    for (size_t j = 0; j < m; j++)
                        for (size_t r = r0; r < r1; r++) {
                            const float got = y[j * ROWS + r], want = alone[(j0 + j) * ROWS + r];
                            if (bits_of(got) != bits_of(want)) {
                                print_error("%s/%s n=%zu m=%zu row %zu of X, output %zu: batched %.9g alone %.9g\n",
                                            quant_name(t), quant_kset_name(k), n, m, j0 + j, r, (double)got,
                                            (double)want);
                                fail();
                            }
                        }
                }
            }
        }
        free(w);
        free(sbase);
        free(xbase);
        free(alone);
        free(y);
    }
}

static void test_matmul_batch_invariant(void **state)
{
    (void)state;
    each_kset(invariant_one);
}

static void test_dot_f32(void **state)
{
    (void)state;
    const size_t lens[] = {0, 1, 7, 8, 9, 31, 32, 33, 64, 100, 256, 640, 1000, 4096};
    for (int k = 0; k < QUANT_KSET_COUNT; k++) {
        if (!quant_kset_supported((quant_kset)k))
            continue;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const size_t n = lens[li];
            float *a = make_x(n), *b = make_x(n);
            const float got = quant_dot_f32_k((quant_kset)k, a, b, n);
            if (n == 0)
                assert_true(got == 0.0f);
            else
                check_dot(got, ref_dot(a, b, n), "dot_f32", QT_F32, (quant_kset)k, n);
            free(a);
            free(b);
        }
    }
}

/* The integer K-quant products' worst case (quant_x86_kint.c): every
 * weight at its largest magnitude (Q6_K: (q - 32) * sc = -32 * -128; Q4_K:
 * q = 15, sc = m = 63) against activations all at the block's max, so
 * every int32 lane sums its largest products (near 2^31 for Q6_K on
 * 256-bit vectors): no overflow, the float sets' result within the set's
 * limit, matvec and matmul alike. */
static void extremes_one(quant_kset k, qtype t)
{
    if (t != QT_Q4_K && t != QT_Q6_K)
        return;
    enum { NX = 512, MX = 3 };
    uint8_t w[2 * 210];
    const size_t bb = ref_block_bytes(t);
    for (size_t b = 0; b < NX / 256; b++) {
        uint8_t *p = w + b * bb;
        if (t == QT_Q6_K) {
            memset(p, 0, 192);         /* ql, qh: q = 0 */
            memset(p + 192, 0x80, 16); /* scales -128 */
            put16(p + 208, 0x3c00);    /* d = 1 */
        } else {
            put16(p, 0x3c00); /* d = 1 */
            put16(p + 2, 0x3c00);
            memset(p + 4, 0xff, 140); /* every scale and min 63, q 15 */
        }
    }
    float x[MX * NX], deq[NX], y[MX];
    const float sign[MX] = {1.0f, -1.0f, 0.0f}; /* 0: alternating signs */
    for (size_t j = 0; j < MX; j++)
        for (size_t i = 0; i < NX; i++)
            x[j * NX + i] = sign[j] != 0.0f ? 3.5f * sign[j] : (i % 2 ? -3.5f : 3.5f);
    ref_dequant(t, w, deq, NX);
    float *scratch = malloc(QUANT_MM_ROWS * NX * sizeof *scratch);
    assert_non_null(scratch);
    quant_matmul_k(k, t, w, NX, x, MX, y, 1, 0, 1, scratch);
    for (size_t j = 0; j < MX; j++) {
        check_dot(y[j], ref_dot(deq, x + j * NX, NX), "extremes matmul", t, k, NX);
        check_dot(quant_dot_row_k(k, t, w, x + j * NX, NX), ref_dot(deq, x + j * NX, NX), "extremes dot", t, k, NX);
    }
    free(scratch);
}

static void test_extremes(void **state)
{
    (void)state;
    each_kset(extremes_one);
}

/* The quant.h entry points run the best set: same bits as calling it. */
static void test_dispatch(void **state)
{
    (void)state;
    const quant_kset best = quant_kset_best();
    assert_true(quant_kset_supported(QUANT_KSET_SCALAR));
    assert_true(quant_kset_supported(best));
    assert_string_equal(quant_isa(), quant_kset_name(best));
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const qtype t = all_types[ti];
        const size_t n = ref_block_elems(t) == 256 ? 512 : 640;
        uint8_t *w = make_rows(t, 9, n);
        float *x = make_x(2 * n), a[18], b[18], *s = malloc(QUANT_MM_ROWS * n * sizeof *s);
        float *da = malloc(n * sizeof *da), *db = malloc(n * sizeof *db);
        assert_true(s && da && db);
        assert_true(quant_dot_row(t, w, x, n) == quant_dot_row_k(best, t, w, x, n));
        quant_matvec(t, w, n, x, a, 0, 9);
        quant_matvec_k(best, t, w, n, x, b, 0, 9);
        assert_memory_equal(a, b, 9 * sizeof *a);
        quant_matmul(t, w, n, x, 2, a, 9, 0, 9, s);
        quant_matmul_k(best, t, w, n, x, 2, b, 9, 0, 9, s);
        assert_memory_equal(a, b, 18 * sizeof *a);
        quant_dequant_row(t, w, da, n);
        quant_dequant_row_k(best, t, w, db, n);
        assert_memory_equal(da, db, n * sizeof *da);
        assert_true(quant_dot_f32(x, x + n, n) == quant_dot_f32_k(best, x, x + n, n));
        free(w);
        free(x);
        free(s);
        free(da);
        free(db);
    }
}

static void test_f16(void **state)
{
    (void)state;
    /* every half decodes to the reference value and encodes back to itself */
    for (uint32_t h = 0; h < 0x10000; h++) {
        const float f = quant_f16_to_f32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            assert_true(isnan(f));
            const uint16_t back = quant_f32_to_f16(f);
            assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
            continue;
        }
        assert_int_equal(bits_of(f), bits_of(ref_f16((uint16_t)h)));
        assert_int_equal(quant_f32_to_f16(f), h);
    }
    const struct {
        float f;
        uint16_t h;
    } cases[] = {
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {1.0f, 0x3c00},
        {-2.0f, 0xc000},
        {65504.0f, 0x7bff},              /* largest half */
        {65519.0f, 0x7bff},              /* below the rounding midpoint */
        {65520.0f, 0x7c00},              /* rounds to infinity */
        {1e10f, 0x7c00},
        {-INFINITY, 0xfc00},
        {0x1p-14f, 0x0400},              /* smallest normal */
        {0x1p-24f, 0x0001},              /* smallest subnormal */
        {0x1p-25f, 0x0000},              /* tie between 0 and 2^-24: even */
        {0x1.8p-25f, 0x0001},            /* above the tie */
        {0x3p-25f, 0x0002},              /* tie between 1 and 2 subnormal units: even */
        {1.0f + 0x1p-11f, 0x3c00},       /* tie: even */
        {1.0f + 0x3p-11f, 0x3c02},       /* tie: even (up) */
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},
        {1e-9f, 0x0000},
        {0.1f, 0x2e66},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (quant_f32_to_f16(cases[i].f) != cases[i].h) {
            print_error("f32_to_f16(%a) = 0x%04x, want 0x%04x\n", (double)cases[i].f,
                        quant_f32_to_f16(cases[i].f), cases[i].h);
            fail();
        }
    }
    assert_true(isnan(quant_f16_to_f32(quant_f32_to_f16(NAN))));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_dequant),
        cmocka_unit_test(test_dot_row),
        cmocka_unit_test(test_matvec),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_matmul_batch_invariant),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_dot_f32),
        cmocka_unit_test(test_dispatch),
    };
    printf("kernel sets:");
    for (int k = 0; k < QUANT_KSET_COUNT; k++)
        if (quant_kset_supported((quant_kset)k))
            printf(" %s", quant_kset_name((quant_kset)k));
    printf(" (best %s)\n", quant_isa());
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    printf("worst normalised error (limit %.0e; avx512vnni8 %.0e, avx512vnni16 and avxvnni16 %.0e):\n", TOL, TOL_INT8,
           TOL_INT16);
    for (int k = 0; k < QUANT_KSET_COUNT; k++) {
        if (!checked((quant_kset)k))
            continue;
        printf("  %-7s", quant_kset_name((quant_kset)k));
        for (size_t i = 0; i < N_TYPES; i++)
            printf(" %s %.1e", quant_name(all_types[i]), worst[k][i]);
        printf("\n");
    }
    return failed;
}
