/* The batching scheduler's plan (edge_sched_plan, sched.c): which rows of
 * the admitted steps go into the next batch. Decode steps always go; the
 * longer steps share one chunk, those that fit in it first, oldest first;
 * a 512-position prefill among decode sessions is done in 512 / chunk
 * batches, each holding every decode step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "edge_impl.h"

static void expect(const uint32_t *left, size_t n, uint32_t chunk, const uint32_t *want, size_t want_given)
{
    uint32_t take[16];
    assert_int_equal(edge_sched_plan(left, n, chunk, take), want_given);
    assert_memory_equal(take, want, n * sizeof *take);
}

static void test_plan_cases(void **state)
{
    (void)state;
    expect((const uint32_t[]){1, 1, 1}, 3, 64, (const uint32_t[]){1, 1, 1}, 3);
    /* a long prompt gets one chunk, the decode steps their row */
    expect((const uint32_t[]){512, 1, 1}, 3, 64, (const uint32_t[]){64, 1, 1}, 3);
    /* a step that fits in the chunk goes before a longer, older one */
    expect((const uint32_t[]){512, 5, 1}, 3, 64, (const uint32_t[]){59, 5, 1}, 3);
    /* two long ones: the older first */
    expect((const uint32_t[]){100, 300}, 2, 64, (const uint32_t[]){64, 0}, 1);
    expect((const uint32_t[]){30, 300, 40}, 3, 64, (const uint32_t[]){30, 0, 34}, 2);
    /* chunk 1: still one row of the prefill per batch */
    expect((const uint32_t[]){7, 1}, 2, 1, (const uint32_t[]){1, 1}, 2);
    expect(NULL, 0, 64, NULL, 0);
}

/* 512 positions among 3 decode sessions that always have a step ready:
 * 8 batches of 64 prefill rows, every decode step in every batch. */
static void test_plan_prefill_among_decodes(void **state)
{
    (void)state;
    uint32_t left[4] = {512, 1, 1, 1}, take[4];
    int batches = 0;
    while (left[0] > 0) {
        edge_sched_plan(left, 4, 64, take);
        assert_int_equal(take[0], 64);
        for (int i = 1; i < 4; i++)
            assert_int_equal(take[i], 1); /* never waits behind the prompt */
        left[0] -= take[0];
        batches++;
    }
    assert_int_equal(batches, 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_cases),
        cmocka_unit_test(test_plan_prefill_among_decodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
