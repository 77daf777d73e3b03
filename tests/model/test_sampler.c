/* Sampler: greedy, ties, seeding, top-k, top-p, temperature, NaN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "sampler.h"

static sampler *make(float temp, uint32_t top_k, float top_p, uint64_t seed, uint32_t n)
{
    sampler *s = NULL;
    sampler_params p = {.temp = temp, .top_k = top_k, .top_p = top_p, .seed = seed};
    assert_int_equal(sampler_create(&p, n, &s), HINGE_OK);
    return s;
}

static void test_greedy(void **state)
{
    (void)state;
    float l[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f, NAN};
    sampler *s = make(0.0f, 0, 0.0f, 1, 6);
    assert_int_equal(sampler_sample(s, l), 1); /* ties: lowest id; NaN never */
    sampler_destroy(s);
    float nan3[3] = {NAN, NAN, NAN};
    s = make(0.0f, 0, 0.0f, 1, 3);
    assert_int_equal(sampler_sample(s, nan3), 0);
    sampler_destroy(s);
}

static void test_seeded_reproducible(void **state)
{
    (void)state;
    enum { V = 1000, N = 200 };
    float *l = malloc(V * sizeof(float));
    for (int i = 0; i < V; i++)
        l[i] = (float)sin(i * 0.37) * 3.0f;
    sampler *a = make(1.0f, 0, 0.0f, 42, V), *b = make(1.0f, 0, 0.0f, 42, V), *c = make(1.0f, 0, 0.0f, 43, V);
    int differ = 0;
    for (int i = 0; i < N; i++) {
        int32_t x = sampler_sample(a, l), y = sampler_sample(b, l), z = sampler_sample(c, l);
        assert_int_equal(x, y);
        differ += x != z;
    }
    assert_true(differ > N / 2);
    sampler_destroy(a);
    sampler_destroy(b);
    sampler_destroy(c);
    free(l);
}

/* With temperature 1 and no cuts, frequencies follow softmax(logits). */
static void test_distribution(void **state)
{
    (void)state;
    float l[4] = {0.0f, 1.0f, 2.0f, 0.5f};
    double p[4], sum = 0;
    for (int i = 0; i < 4; i++)
        sum += p[i] = exp(l[i]);
    int count[4] = {0};
    enum { N = 40000 };
    sampler *s = make(1.0f, 0, 1.0f, 7, 4);
    for (int i = 0; i < N; i++)
        count[sampler_sample(s, l)]++;
    for (int i = 0; i < 4; i++) {
        double want = p[i] / sum * N, sd = sqrt(want);
        assert_true(fabs(count[i] - want) < 5 * sd);
    }
    sampler_destroy(s);
}

static void test_top_k_top_p(void **state)
{
    (void)state;
    float l[5] = {1.0f, 3.0f, 2.9f, 0.0f, -2.0f};
    sampler *k2 = make(5.0f, 2, 0.0f, 3, 5), *p = make(1.0f, 0, 0.3f, 3, 5), *k1 = make(3.0f, 1, 0.0f, 3, 5);
    int seen[5] = {0};
    for (int i = 0; i < 2000; i++) {
        seen[sampler_sample(k2, l)]++;
        assert_int_equal(sampler_sample(p, l), 1); /* 0.3 of the mass is inside the top token */
        assert_int_equal(sampler_sample(k1, l), 1);
    }
    assert_true(seen[1] > 0 && seen[2] > 0);
    assert_int_equal(seen[0] + seen[3] + seen[4], 0);
    sampler_destroy(k2);
    sampler_destroy(p);
    sampler_destroy(k1);
}

static void test_invalid(void **state)
{
    (void)state;
    sampler *s = NULL;
    sampler_params p = {.temp = -1.0f};
    assert_int_equal(sampler_create(&p, 10, &s), HINGE_ERR_INVALID);
    p = (sampler_params){.temp = NAN};
    assert_int_equal(sampler_create(&p, 10, &s), HINGE_ERR_INVALID);
    p = (sampler_params){.temp = 1.0f};
    assert_int_equal(sampler_create(&p, 0, &s), HINGE_ERR_INVALID);
    assert_null(s);
    sampler_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_seeded_reproducible),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_top_k_top_p),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests_name("sampler", tests, NULL, NULL);
}
