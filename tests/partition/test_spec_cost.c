/* The cost model of speculative lookahead (partition/speculate.c): expected
 * tokens per round trip, and the draft length that pays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "partition.h"

static void test_tokens(void **state)
{
    (void)state;
    assert_float_equal(part_spec_tokens(0.0, 6), 1.0, 1e-12);
    assert_float_equal(part_spec_tokens(1.0, 6), 7.0, 1e-12);
    assert_float_equal(part_spec_tokens(0.5, 2), 1.75, 1e-12);
    assert_float_equal(part_spec_tokens(0.8, 0), 1.0, 1e-12);
}

static void test_choose(void **state)
{
    (void)state;
    /* a 50 ms round trip, 2 ms a row: drafts that are mostly accepted pay, the more the better */
    assert_int_equal(part_spec_choose(0.9, 0.050, 0.002, 6), 6);
    /* none accepted: a plain step */
    assert_int_equal(part_spec_choose(0.0, 0.050, 0.002, 6), 0);
    /* compute-bound (each row costs as much as the round trip): even 50% acceptance does not pay */
    assert_int_equal(part_spec_choose(0.5, 0.001, 0.050, 6), 0);
    /* in between, a few */
    uint32_t d = part_spec_choose(0.6, 0.050, 0.010, 15);
    assert_true(d >= 1 && d < 15);
    assert_int_equal(part_spec_choose(0.9, 0.050, 0.002, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_choose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
