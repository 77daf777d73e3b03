/* Tests of partition/chan_est.c: the live estimate recovers a channel's
 * RTT and goodput from steps it generates, stays near the prior on what
 * it cannot see, and survives a save and a load. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "partition.h"

/* What a step of up frame bytes takes on a link of rtt_us and up_bps with
 * proc_us of processing, as the client's tx_timing reports it. The bytes
 * on the link are the cost model's (headers included). */
static part_step_obs step(double rtt_us, double up_bps, double proc_us, uint64_t up, uint64_t edge_us)
{
    double wire = up + 60.0;
    wire += ceil(wire / 16384) * 31;
    wire += ceil(wire / 1448) * 52;
    double net = rtt_us + proc_us + wire * 8e6 / up_bps + 173 * 8e6 / 100e6; /* reply on a 100 Mbit/s downlink */
    return (part_step_obs){.request_us = (uint64_t)(net + edge_us), .edge_us = edge_us, .queue_us = 0,
                           .uplink_bytes = up, .downlink_bytes = 52, .requests = 1};
}

static void test_converges(void **state)
{
    (void)state;
    part_channel prior = {.up_bps = 50e6, .down_bps = 100e6, .rtt_s = 0.010}, got;
    part_chan_est_config cfg = {.prior = &prior, .request_overhead_us = 200};
    part_chan_est *e = NULL;
    char err[HINGE_ERRMSG_MAX];
    assert_int_equal(part_chan_est_create(&cfg, &e, err, sizeof err), HINGE_OK);
    part_chan_est_get(e, &got);
    assert_true(fabs(got.rtt_s - 0.010) < 1e-9 && fabs(got.up_bps - 50e6) < 1);
    /* the real link: 40 ms, 5 Mbit/s up. A prefill of 100 KB now and then, decode steps between. */
    for (int i = 0; i < 60; i++) {
        uint64_t bytes = i % 10 == 0 ? 100000 : 2592;
        part_step_obs o = step(40000, 5e6, 200, bytes, 3000 + (uint64_t)i);
        part_chan_est_observe(e, &o);
    }
    part_chan_est_get(e, &got);
    print_message("estimate: rtt %.3f ms, up %.3f Mbit/s\n", got.rtt_s * 1e3, got.up_bps * 1e-6);
    assert_true(fabs(got.rtt_s - 0.040) < 0.002);
    assert_true(fabs(got.up_bps - 5e6) < 0.5e6); /* within 10%: the slope prior pulls a little */
    assert_true(got.down_bps == 100e6); /* replies are too small to measure: the prior's */
    assert_true(got.loss == 0);
    assert_int_equal(part_chan_est_steps(e), 60);
    assert_true(part_chan_est_queue_us(e) == 0);
    part_chan_est_destroy(e);
}

static void test_decode_only_keeps_prior_slope(void **state)
{
    (void)state;
    part_channel prior = {.up_bps = 20e6, .down_bps = 20e6, .rtt_s = 0.050}, got;
    part_chan_est_config cfg = {.prior = &prior};
    part_chan_est *e = NULL;
    assert_int_equal(part_chan_est_create(&cfg, &e, NULL, 0), HINGE_OK);
    for (int i = 0; i < 100; i++) {
        part_step_obs o = step(20000, 20e6, 0, 2592, 1000);
        o.queue_us = 500;
        o.request_us += 500;
        part_chan_est_observe(e, &o);
    }
    part_chan_est_get(e, &got);
    print_message("estimate: rtt %.3f ms, up %.3f Mbit/s\n", got.rtt_s * 1e3, got.up_bps * 1e-6);
    assert_true(fabs(got.rtt_s - 0.020) < 0.001); /* the RTT follows the steps */
    assert_true(got.up_bps > 10e6 && got.up_bps < 40e6); /* the goodput stays near the prior's */
    assert_true(fabs(part_chan_est_queue_us(e) - 500) < 1e-6);
    part_chan_est_destroy(e);
}

static void test_ignores_impossible_steps(void **state)
{
    (void)state;
    part_chan_est *e = NULL;
    assert_int_equal(part_chan_est_create(NULL, &e, NULL, 0), HINGE_OK);
    part_step_obs o = {.request_us = 100, .edge_us = 200};
    part_chan_est_observe(e, &o);
    assert_int_equal(part_chan_est_steps(e), 0);
    assert_true(part_chan_est_queue_us(e) < 0);
    part_chan_est_destroy(e);
    part_chan_est_config bad = {.alpha = 2};
    assert_int_equal(part_chan_est_create(&bad, &e, NULL, 0), HINGE_ERR_INVALID);
}

static void test_save_load(void **state)
{
    (void)state;
    part_channel prior = {.up_bps = 50e6, .down_bps = 100e6, .rtt_s = 0.010}, a, b;
    part_chan_est_config cfg = {.prior = &prior, .request_overhead_us = 100};
    part_chan_est *e1 = NULL, *e2 = NULL;
    char err[HINGE_ERRMSG_MAX], path[] = "/tmp/hinge-test-chan-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(part_chan_est_create(&cfg, &e1, err, sizeof err), HINGE_OK);
    assert_int_equal(part_chan_est_create(&cfg, &e2, err, sizeof err), HINGE_OK);
    for (int i = 0; i < 20; i++) {
        part_step_obs o = step(30000, 8e6, 100, i % 4 ? 2592 : 50000, 2000);
        part_chan_est_observe(e1, &o);
    }
    assert_int_equal(part_chan_est_save(e1, path, err, sizeof err), HINGE_OK);
    assert_int_equal(part_chan_est_load(e2, path, err, sizeof err), HINGE_OK);
    part_chan_est_get(e1, &a);
    part_chan_est_get(e2, &b);
    assert_true(fabs(a.rtt_s - b.rtt_s) < 1e-9 && fabs(a.up_bps - b.up_bps) < 1e-3 * a.up_bps);
    assert_int_equal(part_chan_est_steps(e2), 20);
    FILE *fp = fopen(path, "w");
    fputs("{\"version\": 1, \"sums\": {\"rr\": -1}}", fp);
    fclose(fp);
    assert_int_equal(part_chan_est_load(e2, path, err, sizeof err), HINGE_ERR_RANGE);
    assert_non_null(strstr(err, "sums.rr"));
    unlink(path);
    assert_int_equal(part_chan_est_load(e2, path, err, sizeof err), HINGE_ERR_IO);
    part_chan_est_get(e2, &b); /* a failed load leaves the estimate as it was */
    assert_true(fabs(a.rtt_s - b.rtt_s) < 1e-9);
    part_chan_est_destroy(e1);
    part_chan_est_destroy(e2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_converges),
        cmocka_unit_test(test_decode_only_keeps_prior_slope),
        cmocka_unit_test(test_ignores_impossible_steps),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
