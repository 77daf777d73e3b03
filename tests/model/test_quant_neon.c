/* Kernel-set choice and what test_quant.c's random data does not reach
 * (quant_neon.c, quant_dotprod.c, quant.c's dispatch), for every set the CPU
 * runs:
 *  - activations of wide range within a block (one large value among tiny
 *    ones, zeros, whole zero blocks), where the DOTPROD set's 24-bit
 *    activations round relative to the block's largest |x|. Stated bound,
 *    every set: |got - ref| <= 1e-5 sum|w x| + 1.2e-7 sum_i |w_i| max|x| of
 *    i's block of 32 (the second term only matters to DOTPROD: x to 24 bits
 *    costs at most 2^-24 max|x| per weight; the float sets stay inside the
 *    first; the 8-bit avx512vnni8 set: 4e-3 instead of 1.2e-7; the int16
 *    K-quant products of avx512vnni16, avxvnni16 and avx512vnni8 round x
 *    to 15 bits of its block of 256: 3.1e-5 of that block's max|x|). ref: the
 *    scalar dequantisation (checked bit for bit against an independent one
 *    by test_quant.c) summed in double;
 *  - a NaN activation gives a NaN output;
 *  - HINGE_CPU: the set it names is the one quant.h runs;
 *    HINGE_TEST_EXPECT_KSETS ("scalar neon dotprod"), when set, is exactly
 *    the list of sets the CPU runs (scripts/test-arm64 runs this under
 *    qemu's "max" CPU, which has the dot product, and a Cortex-A53, which
 *    has not). */
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

static const qtype types[] = {QT_F32, QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0,
                              QT_Q5_1, QT_Q8_0, QT_Q4_K, QT_Q6_K};
enum { N_TYPES = sizeof types / sizeof types[0], ROWS = 9, N = 512, M = 5 };

static uint64_t rng = 0x853c49e6748fea9bu;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static float unit(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }

/* An f16 scale of magnitude 2^-10 .. 2^-3. */
static uint16_t scale16(void) { return (uint16_t)((rnd() & 1) << 15 | (5 + rnd() % 7) << 10 | (rnd() & 0x3ff)); }

/* Random rows with finite scales (block layouts: quant.h). */
static uint8_t *make_rows(qtype t, size_t rows)
{
    const size_t rb = quant_row_bytes(t, N), bb = quant_block_bytes(t);
    uint8_t *w = malloc(rows * rb);
    assert_non_null(w);
    for (size_t i = 0; i < rows * rb; i++)
        w[i] = (uint8_t)rnd();
    for (size_t b = 0; b < rows * rb / bb; b++) {
        uint8_t *p = w + b * bb;
        uint16_t h[2] = {scale16(), scale16()};
        switch (t) {
        case QT_F32: {
            const float f = unit();
            memcpy(p, &f, 4);
            break;
        }
        case QT_F16: memcpy(p, &(uint16_t){quant_f32_to_f16(unit())}, 2); break;
        case QT_BF16: memcpy(p, &(uint16_t){(uint16_t)(0x3c00 | (rnd() & 0x80ff))}, 2); break;
        case QT_Q4_1: case QT_Q5_1: case QT_Q4_K: memcpy(p, h, 4); break;
        case QT_Q6_K: memcpy(p + 208, h, 2); break;
        default: memcpy(p, h, 2); break; /* q4_0, q5_0, q8_0 */
        }
    }
    return w;
}

/* Activations of wide range: per block of 32 one value of up to 1e4, the
 * rest down to 1e-6 of it, some exact zeros; block 3 all zero. */
static void make_x(float *x)
{
    for (size_t b = 0; b < N / 32; b++) {
        const float big = (float)(1 + rnd() % 10000);
        for (size_t i = 0; i < 32; i++) {
            const uint32_t r = rnd() % 8;
            x[32 * b + i] = b == 3 || r == 0 ? 0.0f : unit() * big * powf(10.0f, -(float)(r % 7));
        }
        if (b != 3)
            x[32 * b + rnd() % 32] = big * (rnd() & 1 ? 1.0f : -1.0f);
    }
}

/* range's weight: x to 24 bits, or to 8 (avx512vnni8: 1/254 of the block's
 * largest |x| per weight, with room for the float sums), over blocks of
 * blk (32, or 256 for the int16 K-quant products). */
static double bound(const float *w, const float *x, double *ref, double range_coef, size_t blk)
{
    double sum = 0, norm = 0, range = 0;
    for (size_t b = 0; b < N / blk; b++) {
        double amax = 0;
        for (size_t i = blk * b; i < blk * b + blk; i++) /* not fmax: GCC 12.2 aarch64 -O3 crashes on it */
            amax = fabs((double)x[i]) > amax ? fabs((double)x[i]) : amax;
        for (size_t i = blk * b; i < blk * b + blk; i++) {
            sum += (double)w[i] * x[i];
            norm += fabs((double)w[i] * x[i]);
            range += fabs((double)w[i]) * amax;
        }
    }
    *ref = sum;
    return 1e-5 * norm + range_coef * range;
}

/* Largest err / bound seen per set: the margin, printed after the run. */
static double worst[QUANT_KSET_COUNT];

static void wide_one(quant_kset k, qtype t)
{
    uint8_t *w = make_rows(t, ROWS);
    float *x = malloc(M * N * sizeof *x), *deq = malloc(N * sizeof *deq), y[M * ROWS];
    float *scratch = malloc(QUANT_MM_ROWS * N * sizeof *scratch);
    assert_true(x && deq && scratch);
    for (size_t j = 0; j < M; j++)
        make_x(x + j * N);
    quant_matmul_k(k, t, w, N, x, M, y, ROWS, 0, ROWS, scratch);
    const bool k16 = (k == QUANT_KSET_VNNI16 || k == QUANT_KSET_AVXVNNI16 || k == QUANT_KSET_VNNI8) &&
                     (t == QT_Q4_K || t == QT_Q6_K);
    for (size_t r = 0; r < ROWS; r++) {
        quant_dequant_row_k(QUANT_KSET_SCALAR, t, w + r * quant_row_bytes(t, N), deq, N);
        for (size_t j = 0; j < M; j++) {
            double ref;
            const double tol = k16 ? bound(deq, x + j * N, &ref, 3.1e-5, 256)
                                   : bound(deq, x + j * N, &ref, k == QUANT_KSET_VNNI8 ? 4e-3 : 1.2e-7, 32);
            const double err = fabs((double)y[j * ROWS + r] - ref);
            worst[k] = err / tol > worst[k] ? err / tol : worst[k];
            if (!(err <= tol)) {
                print_error("%s/%s row %zu x %zu: got %.9g ref %.9g err %.3g > %.3g\n", quant_name(t),
                            quant_kset_name(k), r, j, (double)y[j * ROWS + r], ref, err, tol);
                fail();
            }
        }
    }
    /* a NaN anywhere in x makes the product NaN */
    x[N + 77] = NAN;
    quant_matvec_k(k, t, w, N, x + N, y, 0, ROWS);
    for (size_t r = 0; r < ROWS; r++)
        if (!isnan(y[r])) {
            print_error("%s/%s: NaN in x, row %zu gives %.9g\n", quant_name(t), quant_kset_name(k), r, (double)y[r]);
            fail();
        }
    free(w);
    free(x);
    free(deq);
    free(scratch);
}

static void test_wide_range(void **state)
{
    (void)state;
    for (int k = 0; k < QUANT_KSET_COUNT; k++)
        if (quant_kset_supported((quant_kset)k))
            for (size_t i = 0; i < N_TYPES; i++)
                wide_one((quant_kset)k, types[i]);
}

/* HINGE_CPU names the set quant.h runs; the CPU's sets are the expected
 * ones when the caller says which. */
static void test_choice(void **state)
{
    (void)state;
    const char *want = getenv("HINGE_CPU");
    if (want && *want)
        assert_string_equal(quant_isa(), want);
    const char *expect = getenv("HINGE_TEST_EXPECT_KSETS");
    if (!expect || !*expect)
        return;
    char have[128] = "";
    for (int k = 0; k < QUANT_KSET_COUNT; k++)
        if (quant_kset_supported((quant_kset)k)) {
            if (*have)
                strcat(have, " ");
            strcat(have, quant_kset_name((quant_kset)k));
        }
    assert_string_equal(have, expect);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choice),
        cmocka_unit_test(test_wide_range),
    };
    printf("kernel sets:");
    for (int k = 0; k < QUANT_KSET_COUNT; k++)
        if (quant_kset_supported((quant_kset)k))
            printf(" %s", quant_kset_name((quant_kset)k));
    printf(" (in use: %s)\n", quant_isa());
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    printf("wide-range activations, worst error / bound:");
    for (int k = 0; k < QUANT_KSET_COUNT; k++)
        if (quant_kset_supported((quant_kset)k))
            printf(" %s %.2g", quant_kset_name((quant_kset)k), worst[k]);
    printf("\n");
    return failed;
}
