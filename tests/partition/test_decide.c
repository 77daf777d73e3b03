/* Tests of partition/decide.c on hand-made profiles whose answer is known:
 * a slow uplink pushes the cut toward the device, a slow device pulls it
 * toward the edge, the privacy floor and the memory cap always hold, and
 * k = N when no edge is reachable. Plus random cases checked against an
 * exhaustive search, and the decision's cost. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "part_fixture.h"

enum { N = 8 };

typedef struct fixture {
    part_model m;
    part_compute dev, edge;
    part_channel ch;
    part_inputs in;
    part_prediction table[N + 1];
    part_decision d;
    char err[HINGE_ERRMSG_MAX];
} fixture;

/* Device 1 ms per layer-step (10 ms a token with the head), edge ten times
 * faster; 1 Gbit/s and 0.1 ms RTT: offloading pays. P = 32, n = 16. */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    fx_model(&f->m, N);
    fx_compute(&f->dev, PART_ROLE_DEVICE, &f->m, 1000, 100, 2000);
    fx_compute(&f->edge, PART_ROLE_EDGE, &f->m, 100, 10, 200);
    fx_channel(&f->ch, 1000, 1000, 0.1);
    fx_inputs(&f->in, &f->m, &f->dev, &f->edge, &f->ch, 32, 16);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static uint32_t decide(fixture *f)
{
    hinge_status s = part_decide(&f->in, f->table, N + 1, &f->d, f->err, sizeof f->err);
    if (s != HINGE_OK)
        fail_msg("part_decide: %s (%s)", f->err, hinge_strerror(s));
    return f->d.cut;
}

static void test_fast_channel_offloads(void **state)
{
    fixture *f = *state;
    assert_int_equal(decide(f), 0);
    assert_int_not_equal(f->d.codec, PART_CODEC_NONE);
    assert_int_equal(f->d.chosen.why, PART_OK);
}

static void test_slow_uplink_pushes_k_up(void **state)
{
    fixture *f = *state;
    static const double up_mbps[] = {1000, 100, 10, 1, 0.1, 0.01, 0.001};
    uint32_t prev = 0;
    for (size_t i = 0; i < sizeof up_mbps / sizeof up_mbps[0]; i++) {
        f->ch.up_bps = up_mbps[i] * 1e6;
        uint32_t k = decide(f);
        assert_true(k >= prev);
        prev = k;
    }
    assert_int_equal(prev, N); /* 1 kbit/s up: run everything on the device */
}

static void test_slow_device_pulls_k_down(void **state)
{
    fixture *f = *state;
    fx_channel(&f->ch, 10, 10, 20); /* per token 20+ ms of network: local (10 ms) wins */
    assert_int_equal(decide(f), N);
    static const double slowdown[] = {1, 2, 4, 16, 100};
    uint32_t prev = N;
    for (size_t i = 0; i < sizeof slowdown / sizeof slowdown[0]; i++) {
        fx_compute(&f->dev, PART_ROLE_DEVICE, &f->m, 1000 * slowdown[i], 100 * slowdown[i], 2000 * slowdown[i]);
        uint32_t k = decide(f);
        assert_true(k <= prev);
        prev = k;
    }
    assert_int_equal(prev, 0); /* 100x slower device: offload everything */
}

static void test_privacy_floor(void **state)
{
    fixture *f = *state;
    for (uint32_t floor = 0; floor <= N; floor++) {
        f->in.pol.min_cut = floor;
        assert_int_equal(decide(f), floor); /* offloading pays: the floor binds */
        for (uint32_t k = 0; k < floor; k++)
            assert_int_equal(f->table[k].why, PART_BELOW_FLOOR);
    }
    f->in.pol.min_cut = N + 1;
    assert_int_equal(part_decide(&f->in, f->table, N + 1, &f->d, f->err, sizeof f->err), HINGE_ERR_RANGE);
}

static void test_memory_cap(void **state)
{
    fixture *f = *state;
    fx_channel(&f->ch, 0.01, 0.01, 50); /* local wants to win */
    for (double cap = 0.5e6; cap < 12e6; cap += 0.5e6) {
        f->in.pol.mem_cap_bytes = cap;
        hinge_status s = part_decide(&f->in, f->table, N + 1, &f->d, f->err, sizeof f->err);
        assert_int_equal(s, HINGE_OK); /* k = 0 keeps only embedding rows */
        assert_true(f->d.chosen.device_mem_bytes <= cap);
        for (uint32_t k = 0; k <= N; k++)
            if (f->table[k].why == PART_OK)
                assert_true(f->table[k].device_mem_bytes <= cap);
            else if (f->table[k].why == PART_OVER_MEMORY)
                assert_true(f->table[k].device_mem_bytes > cap);
    }
    f->in.pol.mem_cap_bytes = 0;
    f->dev.mem_bytes = 2.5e6; /* the profile's own figure caps too */
    decide(f);
    assert_true(f->d.chosen.device_mem_bytes <= 2.5e6);
    assert_true(f->d.cut < N);
}

static void test_no_edge(void **state)
{
    fixture *f = *state;
    f->in.edge = NULL;
    assert_int_equal(decide(f), N);
    assert_int_equal(f->d.codec, PART_CODEC_NONE);
    for (uint32_t k = 0; k < N; k++) {
        assert_int_equal(f->table[k].why, PART_NO_EDGE);
        assert_true(isinf(f->table[k].objective));
    }
    f->in.edge = &f->edge;
    f->in.channel = NULL;
    assert_int_equal(decide(f), N);
    f->in.channel = &f->ch;
    f->in.load.draining = true;
    assert_int_equal(decide(f), N);
    f->in.load.draining = false;
    f->in.edge = NULL;
    f->in.pol.mem_cap_bytes = 1e6; /* no edge and the model does not fit: nothing is feasible */
    assert_int_equal(part_decide(&f->in, f->table, N + 1, &f->d, f->err, sizeof f->err), HINGE_ERR_RANGE);
    assert_non_null(strstr(f->err, "no cut is feasible"));
}

static void test_energy_weight(void **state)
{
    fixture *f = *state;
    fx_channel(&f->ch, 100, 100, 15); /* offload costs ~16 ms a token, local 10 ms */
    f->in.pol.energy_weight = 0;
    assert_int_equal(decide(f), N);
    f->in.pol.energy_weight = 1.0; /* a joule is worth a second: the device's 1 W computing counts */
    assert_int_equal(decide(f), 0);
    assert_true(f->table[0].energy_j < f->table[N].energy_j);
}

static void test_codec_mask(void **state)
{
    fixture *f = *state;
    f->in.pol.codec_mask = PART_CODEC_BIT_Q8;
    decide(f);
    assert_int_equal(f->d.codec, PART_CODEC_Q8);
    f->in.pol.codec_mask = PART_CODEC_BIT_F32;
    decide(f);
    assert_int_equal(f->d.codec, PART_CODEC_F32);
    f->in.pol.codec_mask = 0; /* default: f32 or f16, never q8 */
    decide(f);
    assert_true(f->d.codec == PART_CODEC_F32 || f->d.codec == PART_CODEC_F16);
}

static void test_table_too_small(void **state)
{
    fixture *f = *state;
    assert_int_equal(part_decide(&f->in, f->table, N, &f->d, f->err, sizeof f->err), HINGE_ERR_INVALID);
    assert_int_equal(part_decide(&f->in, NULL, 0, &f->d, f->err, sizeof f->err), HINGE_OK);
}

static double urand(uint64_t *s)
{
    *s = *s * 6364136223846793005u + 1442695040888963407u;
    return (double)(*s >> 11) * 0x1.0p-53;
}

/* Log-uniform in [lo, hi]. */
static double lrand(uint64_t *s, double lo, double hi)
{
    return lo * pow(hi / lo, urand(s));
}

static void randomise(fixture *f, uint64_t *s)
{
    fx_compute(&f->dev, PART_ROLE_DEVICE, &f->m, lrand(s, 10, 1e5), lrand(s, 1, 1e4), lrand(s, 10, 1e5));
    fx_compute(&f->edge, PART_ROLE_EDGE, &f->m, lrand(s, 10, 1e5), lrand(s, 1, 1e4), lrand(s, 10, 1e5));
    fx_channel(&f->ch, lrand(s, 0.01, 1e4), lrand(s, 0.01, 1e4), lrand(s, 0.1, 200));
    f->ch.loss = urand(s) < 0.5 ? 0 : lrand(s, 1e-5, 0.1);
    f->in.req = (part_request){.prompt_len = 1 + (uint32_t)(urand(s) * 500), .new_tokens = 1 + (uint32_t)(urand(s) * 200),
                               .connected = urand(s) < 0.5, .max_step = urand(s) < 0.5 ? 0 : 64};
    f->in.pol = (part_policy){.min_cut = (uint32_t)(urand(s) * (N + 1)),
                              .mem_cap_bytes = urand(s) < 0.5 ? 0 : lrand(s, 1e5, 2e7),
                              .energy_weight = urand(s) < 0.5 ? 0 : lrand(s, 1e-3, 10),
                              .codec_mask = (1 + (uint32_t)(urand(s) * 7)) << 1};
    f->in.load = (part_edge_load){.queued_steps = (uint32_t)(urand(s) * 3), .queue_us = -1};
    f->in.edge = urand(s) < 0.1 ? NULL : &f->edge;
}

/* The least objective over every feasible (k, allowed codec), by brute force. */
static double best_objective(const fixture *f)
{
    double best = INFINITY;
    uint32_t mask = f->in.pol.codec_mask ? f->in.pol.codec_mask : PART_CODEC_MASK_DEFAULT;
    for (uint32_t k = 0; k <= N; k++)
        for (int c = k == N ? 0 : 1; c <= (k == N ? 0 : 3); c++) {
            part_prediction p;
            if (k < N && !(mask & (1u << c)))
                continue;
            assert_int_equal(part_predict(&f->in, k, (part_codec)c, &p, NULL, 0), HINGE_OK);
            if (p.why == PART_OK && p.objective < best)
                best = p.objective;
        }
    return best;
}

static void test_random_invariants(void **state)
{
    fixture *f = *state;
    uint64_t seed = 12345;
    for (int iter = 0; iter < 500; iter++) {
        randomise(f, &seed);
        hinge_status s = part_decide(&f->in, f->table, N + 1, &f->d, f->err, sizeof f->err);
        double best = best_objective(f);
        if (s == HINGE_ERR_RANGE) {
            assert_true(isinf(best));
            continue;
        }
        assert_int_equal(s, HINGE_OK);
        const part_prediction *c = &f->d.chosen;
        assert_int_equal(c->why, PART_OK);
        assert_true(f->d.cut >= f->in.pol.min_cut);
        if (f->in.pol.mem_cap_bytes > 0)
            assert_true(c->device_mem_bytes <= f->in.pol.mem_cap_bytes);
        if (!f->in.edge)
            assert_int_equal(f->d.cut, N);
        assert_true(fabs(c->objective - best) <= 1e-12 * fmax(1.0, best));
        assert_int_equal(f->table[f->d.cut].codec, c->codec);
        assert_true(f->table[f->d.cut].objective == c->objective);
    }
}

static void test_decision_time(void **state)
{
    fixture *f = *state;
    enum { REPS = 20000 };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < REPS; i++)
        part_decide(&f->in, NULL, 0, &f->d, NULL, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-3) / REPS;
    print_message("part_decide over %d cuts and 2 codecs: %.2f us\n", N + 1, us);
    assert_true(us < 200.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fast_channel_offloads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_uplink_pushes_k_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_device_pulls_k_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_privacy_floor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_edge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_energy_weight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codec_mask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_too_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_invariants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decision_time, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
