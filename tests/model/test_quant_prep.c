/* quant.h's activations prepared once per product (quant_prep_x,
 * quant_matmul_prep): for every kernel set this CPU runs, the products over
 * prepared rows are bitwise quant_matmul's, whichever way the rows were
 * split to prepare them and the weight rows to multiply them; where a set
 * prepares nothing, quant_matmul_prep is quant_matmul. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "quant_impl.h"

enum { ROWS = 37, LDY = ROWS + 3 }; /* more than a decoded group (16), not a multiple of it */

static uint32_t rng = 12345;
static uint32_t next(void)
{
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

/* rows of random blocks with finite scales (f16 in [2^-10, 2^-7)). */
static uint8_t *make_rows(qtype t, size_t n)
{
    const size_t rb = quant_row_bytes(t, n), bb = quant_block_bytes(t);
    uint8_t *w = malloc(ROWS * rb);
    assert_non_null(w);
    for (size_t i = 0; i < ROWS * rb; i++)
        w[i] = (uint8_t)next();
    const size_t d_at = t == QT_Q6_K ? 208 : 0, n_d = t == QT_Q4_K ? 2 : 1;
    for (size_t b = 0; b < ROWS * rb / bb; b++)
        for (size_t k = 0; k < n_d; k++) {
            const uint16_t h = (uint16_t)(0x1400 + next() % 0x0c00);
            memcpy(w + b * bb + d_at + 2 * k, &h, sizeof h);
        }
    return w;
}

/* m rows of n, each with its own magnitude (the rounding's scale is per
 * row and block), one block of one row all zero. */
static float *make_x(size_t n, size_t m)
{
    float *x = malloc(m * n * sizeof *x);
    assert_non_null(x);
    for (size_t j = 0; j < m; j++)
        for (size_t i = 0; i < n; i++)
            x[j * n + i] = ((float)(next() % 20001) / 10000.0f - 1.0f) * (float)(1u << (j % 9));
    if (m > 1)
        memset(x + n, 0, 256 * sizeof *x);
    return x;
}

static void *alloc64(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    assert_non_null(p);
    return p;
}

static void check_one(quant_kset k, qtype t, size_t n, size_t m)
{
    uint8_t *w = make_rows(t, n);
    float *x = make_x(n, m), *scratch = alloc64(QUANT_MM_ROWS * n * sizeof(float));
    float *want = malloc(m * LDY * sizeof *want), *got = malloc(m * LDY * sizeof *got);
    assert_true(want && got);
    for (size_t i = 0; i < m * LDY; i++)
        want[i] = got[i] = -7.0f; /* padding stays */
    quant_matmul_k(k, t, w, n, x, m, want, LDY, 0, ROWS, scratch);
    const size_t bytes = quant_prep_bytes_k(k, t, n, m);
    void *prep = NULL;
    if (bytes) {
        prep = alloc64(bytes);
        memset(prep, 0xA5, bytes); /* nothing may be read unprepared */
        const size_t cuts[] = {0, 1, m / 2, m}; /* three ranges, the first one row */
        for (size_t c = 3; c-- > 0;) /* in reverse: the order of the ranges does not matter */
            quant_prep_x_k(k, t, x, n, m, cuts[c], cuts[c + 1], prep);
        assert_true(quant_prep_bytes_k(k, t, n, m + 1) >= bytes);
    }
    quant_matmul_prep_k(k, t, w, n, x, prep, m, got, LDY, 0, 5, scratch);
    quant_matmul_prep_k(k, t, w, n, x, prep, m, got, LDY, 5, ROWS, scratch);
    for (size_t i = 0; i < m * LDY; i++)
        if (memcmp(&got[i], &want[i], sizeof got[i]) != 0) {
            print_error("%s/%s n=%zu m=%zu row %zu output %zu: prepared %.9g, quant_matmul %.9g\n",
                        quant_kset_name(k), quant_name(t), n, m, i / LDY, i % LDY, (double)got[i], (double)want[i]);
            fail();
        }
    free(prep);
    free(w);
    free(x);
    free(scratch);
    free(want);
    free(got);
}

static void test_prepared_is_quant_matmul(void **state)
{
    (void)state;
    const qtype types[] = {QT_Q4_K, QT_Q6_K, QT_Q5_0, QT_Q8_0};
    const size_t ns[] = {768, 4096 + 512}; /* one pass; two (the second 512 wide) */
    const size_t ms[] = {2, 7, 40};
    for (int k = 0; k < QUANT_KSET_COUNT; k++) {
        if (!quant_kset_supported((quant_kset)k))
            continue;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
                    check_one((quant_kset)k, types[ti], ns[ni], ms[mi]);
    }
}

/* Which products have something to prepare: the integer K-quant sets'
 * Q4_K and Q6_K with m > 1; never a float set's, nor a matvec. */
static void test_what_is_prepared(void **state)
{
    (void)state;
    for (int k = 0; k < QUANT_KSET_COUNT; k++) {
        if (!quant_kset_supported((quant_kset)k))
            continue;
        const quant_kset ks = (quant_kset)k;
        const bool kint = ks == QUANT_KSET_VNNI16 || ks == QUANT_KSET_VNNI8 || ks == QUANT_KSET_AVXVNNI16;
        assert_int_equal(quant_prep_bytes_k(ks, QT_Q4_K, 768, 1), 0);
        assert_int_equal(quant_prep_bytes_k(ks, QT_Q5_0, 768, 8), 0);
        assert_int_equal(quant_prep_bytes_k(ks, QT_F32, 768, 8), 0);
        assert_true((quant_prep_bytes_k(ks, QT_Q4_K, 768, 8) > 0) == kint);
        assert_true((quant_prep_bytes_k(ks, QT_Q6_K, 768, 8) >= 768 * 8 * 2) == kint);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prepared_is_quant_matmul),
        cmocka_unit_test(test_what_is_prepared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
