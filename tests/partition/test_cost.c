/* Tests of partition/cost.c: predictions worked out on paper for
 * hand-made profiles (part_fixture.h), and the effect of each term. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "part_fixture.h"

typedef struct fixture {
    part_model m;
    part_compute dev, edge;
    part_channel ch;
    part_inputs in;
    char err[HINGE_ERRMSG_MAX];
} fixture;

/* 4 layers; device 1000 us/layer decode, 100 us/position prefill, head 2 ms;
 * edge ten times faster; 8 Mbit/s each way (1 byte/us), RTT 10 ms; P = 10,
 * n = 5, connection open. */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    fx_model(&f->m, 4);
    fx_compute(&f->dev, PART_ROLE_DEVICE, &f->m, 1000, 100, 2000);
    fx_compute(&f->edge, PART_ROLE_EDGE, &f->m, 100, 10, 200);
    fx_channel(&f->ch, 8, 8, 10);
    fx_inputs(&f->in, &f->m, &f->dev, &f->edge, &f->ch, 10, 5);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static void near(double got, double want)
{
    if (fabs(got - want) > 1e-9 * fmax(1.0, fabs(want)))
        fail_msg("got %.12g, want %.12g", got, want);
}

static void test_local(void **state)
{
    fixture *f = *state;
    part_prediction p;
    assert_int_equal(part_predict(&f->in, 4, PART_CODEC_NONE, &p, f->err, sizeof f->err), HINGE_OK);
    assert_int_equal(p.codec, PART_CODEC_NONE);
    assert_int_equal(p.why, PART_OK);
    near(p.ttft_s, 4 * 10 * 100e-6 + 2000e-6); /* all layers on 10 positions + head */
    near(p.tpot_s, 4 * 1000e-6 + 2000e-6);
    near(p.total_s, p.ttft_s + 4 * p.tpot_s);
    near(p.setup_s, 0);
    near(p.up_bytes, 0);
    near(p.energy_j, 1.0 * p.total_s); /* 1 W computing the whole time */
    near(p.device_mem_bytes, 4 * (1e6 + 256 * 4 * 15) + 15 * 4096 + 1e5 + 4 * 1000);
}

/* k = 2, f32: the bytes on the link by hand. Prefill frame 32 + 10 * 256 =
 * 2592, + 60 request headers = 2652, + 31 TLS/HTTP2 = 2683, 2 segments
 * + 104 = 2787 bytes. Reply 90 + 31 = 121, + 52 = 173. Decode frame 288
 * + 60 + 31 = 379, + 52 = 431. */
static void test_split(void **state)
{
    fixture *f = *state;
    part_prediction p;
    assert_int_equal(part_predict(&f->in, 2, PART_CODEC_F32, &p, f->err, sizeof f->err), HINGE_OK);
    near(p.ttft.device_s, 2 * 10 * 100e-6);
    near(p.ttft.network_s, 10e-3 + 2787e-6 + 173e-6);
    near(p.ttft.edge_s, 2 * 10 * 10e-6 + 200e-6);
    near(p.ttft.queue_s, 0);
    near(p.tpot.device_s, 2 * 1000e-6);
    near(p.tpot.network_s, 10e-3 + 431e-6 + 173e-6);
    near(p.tpot.edge_s, 2 * 100e-6 + 200e-6);
    near(p.ttft_s, 2000e-6 + 12960e-6 + 400e-6);
    near(p.tpot_s, 2000e-6 + 10604e-6 + 400e-6);
    near(p.up_bytes, 2787 + 4 * 431);
    near(p.down_bytes, 5 * 173);
    /* 1 W computing, 2 W sending, 1 W receiving, 0 W waiting */
    near(p.energy_j, 1.0 * (2000e-6 + 4 * 2000e-6) + 2.0 * (2787e-6 + 4 * 431e-6) + 1.0 * 5 * 173e-6);
    near(p.device_mem_bytes, 2 * (1e6 + 256 * 4 * 15) + 15 * 4096);
}

/* A private head J = 1 at k = 1, f32: the edge runs layer [1, 3) only and
 * answers with the rows; the device adds layer 3 and the head. Reply to the
 * prefill: frame 2592 + 40 headers = 2632, + 31 = 2663, 2 segments + 104 =
 * 2767; to a decode step: 288 + 40 + 31 = 359, + 52 = 411. */
static void test_private_head(void **state)
{
    fixture *f = *state;
    part_prediction p;
    f->in.pol.private_head = 1;
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &p, f->err, sizeof f->err), HINGE_OK);
    assert_int_equal(p.why, PART_OK);
    near(p.ttft.device_s, 2 * 10 * 100e-6 + 2000e-6);
    near(p.ttft.edge_s, 2 * 10 * 10e-6);
    near(p.tpot.device_s, 2 * 1000e-6 + 2000e-6);
    near(p.tpot.edge_s, 2 * 100e-6);
    near(p.tpot.network_s, 10e-3 + 431e-6 + 411e-6);
    near(p.down_bytes, 2767 + 4 * 411);
    near(p.device_mem_bytes, 2 * (1e6 + 256 * 4 * 15) + 15 * 4096 + 1e5 + 4 * 1000);
    /* a cut inside the head is no candidate; one at its edge is */
    f->in.pol.private_head = 2;
    assert_int_equal(part_predict(&f->in, 3, PART_CODEC_F32, &p, f->err, sizeof f->err), HINGE_OK);
    assert_int_equal(p.why, PART_IN_PRIVATE_HEAD);
    assert_int_equal(part_predict(&f->in, 2, PART_CODEC_F32, &p, f->err, sizeof f->err), HINGE_OK);
    assert_int_equal(p.why, PART_OK);
    near(p.tpot.edge_s, 0);
    assert_int_equal(part_predict(&f->in, 4, PART_CODEC_NONE, &p, f->err, sizeof f->err), HINGE_OK);
    assert_int_equal(p.why, PART_OK); /* all here: nothing to keep from the edge */
    f->in.pol.private_head = 4;
    assert_int_equal(part_predict(&f->in, 0, PART_CODEC_F32, &p, f->err, sizeof f->err), HINGE_ERR_INVALID);
}

static void test_setup_cost(void **state)
{
    fixture *f = *state;
    part_prediction p;
    f->in.req.connected = false;
    assert_int_equal(part_predict(&f->in, 2, PART_CODEC_F16, &p, f->err, sizeof f->err), HINGE_OK);
    near(p.setup_s, 3 * 10e-3 + 983e-6 + 2335e-6); /* 3 RTTs, 900 B up, 2200 B down on the link */
    near(p.total_s, p.setup_s + p.ttft_s + 4 * p.tpot_s);
    assert_int_equal(part_predict(&f->in, 4, PART_CODEC_NONE, &p, f->err, sizeof f->err), HINGE_OK);
    near(p.setup_s, 0); /* local: nothing to set up */
}

static void test_codecs_shrink_bytes(void **state)
{
    fixture *f = *state;
    part_prediction a, b, c;
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &a, NULL, 0), HINGE_OK);
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F16, &b, NULL, 0), HINGE_OK);
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_Q8, &c, NULL, 0), HINGE_OK);
    assert_true(a.up_bytes > b.up_bytes && b.up_bytes > c.up_bytes);
    assert_true(a.ttft_s > b.ttft_s && b.ttft_s > c.ttft_s);
}

static void test_cold_start(void **state)
{
    fixture *f = *state;
    part_prediction warm, cold;
    for (uint32_t i = 0; i < 4; i++)
        f->dev.meas.layer[i].first_touch_us = 50;
    f->dev.meas.head_first_touch_us = 500;
    assert_int_equal(part_predict(&f->in, 4, PART_CODEC_NONE, &warm, NULL, 0), HINGE_OK);
    f->in.req.cold_start = true;
    assert_int_equal(part_predict(&f->in, 4, PART_CODEC_NONE, &cold, NULL, 0), HINGE_OK);
    near(cold.ttft_s - warm.ttft_s, 4 * 50e-6 + 500e-6);
    near(cold.tpot_s, warm.tpot_s);
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &cold, NULL, 0), HINGE_OK);
    f->in.req.cold_start = false;
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &warm, NULL, 0), HINGE_OK);
    near(cold.ttft_s - warm.ttft_s, 50e-6); /* one layer on the device, the head on the edge */
}

static void test_queue(void **state)
{
    fixture *f = *state;
    part_prediction idle, busy, seen;
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &idle, NULL, 0), HINGE_OK);
    f->in.load = (part_edge_load){.queued_steps = 2, .running_steps = 1, .queue_us = -1};
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &busy, NULL, 0), HINGE_OK);
    double full = 4 * 100e-6 + 200e-6; /* a whole decode step on the edge */
    near(busy.tpot.queue_s, 2.5 * full);
    near(busy.ttft_s - idle.ttft_s, 2.5 * full);
    f->in.load.queue_us = 300;
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &seen, NULL, 0), HINGE_OK);
    near(seen.tpot.queue_s, 300e-6);
}

static void test_chunked_prefill(void **state)
{
    fixture *f = *state;
    part_prediction one, three;
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &one, NULL, 0), HINGE_OK);
    f->in.req.max_step = 4; /* 10 positions: 3 requests */
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &three, NULL, 0), HINGE_OK);
    assert_true(three.ttft.network_s > one.ttft.network_s + 2 * 10e-3 - 1e-9);
    near(three.ttft.edge_s, one.ttft.edge_s);
    near(three.tpot_s, one.tpot_s);
}

static void test_loss(void **state)
{
    fixture *f = *state;
    part_prediction clean, lossy;
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &clean, NULL, 0), HINGE_OK);
    f->ch.loss = 0.01;
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &lossy, NULL, 0), HINGE_OK);
    /* decode: 1 segment up, then 1 down, each lost with 1%, recovery max(2 RTT, 10 ms) = 20 ms */
    near(lossy.tpot.network_s - clean.tpot.network_s, 2 * 0.01 * 20e-3);
}

static void test_context_dependence(void **state)
{
    fixture *f = *state;
    part_prediction short_ctx, long_ctx;
    for (uint32_t i = 0; i < 4; i++)
        f->dev.meas.layer[i].decode_us_per_attended = 1.0;
    f->m.layer[0].window = 16; /* layer 0 attends to 16 positions at most */
    assert_int_equal(part_predict(&f->in, 4, PART_CODEC_NONE, &short_ctx, NULL, 0), HINGE_OK);
    f->in.req.prompt_len = 1000;
    assert_int_equal(part_predict(&f->in, 4, PART_CODEC_NONE, &long_ctx, NULL, 0), HINGE_OK);
    /* decode steps at positions P .. P + 3 attend p + 1 keys (16 in layer 0) */
    near(short_ctx.tpot.device_s, 4 * 1000e-6 + 2000e-6 + 4 * 12.5e-6); /* the window is not reached yet */
    near(long_ctx.tpot.device_s, 4 * 1000e-6 + 2000e-6 + (16 + 3 * 1002.5) * 1e-6);
}

static void test_roofline(void **state)
{
    fixture *f = *state;
    part_prediction p;
    f->dev.meas.present = false;
    f->dev.roof = (part_roofline){.present = true, .flops_per_s = 1e9, .mem_bytes_per_s = 1e9, .eff_compute = 1,
                                  .eff_memory = 1, .layer_overhead_us = 0, .prefill_chunk = 512};
    f->in.req.new_tokens = 2; /* one decode step, at position 10 */
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &p, f->err, sizeof f->err), HINGE_OK);
    /* layer 0 at position 10: 1e6 FLOPs = 1 ms; bytes 1e6 + 4 * 256 * (11 read + 1 written) > 1e6: memory-bound */
    double layer = (1e6 + 4.0 * 256 * 12) / 1e9;
    double embed = fmax(128 / 1e9, 100 / 1e9);
    double encode = fmax(3.0 * 64 / 1e9, (4.0 * 64 + 256) / 1e9);
    near(p.tpot.device_s, layer + embed + encode);
}

static void test_bad_inputs(void **state)
{
    fixture *f = *state;
    part_prediction p;
    assert_int_equal(part_predict(&f->in, 5, PART_CODEC_F32, &p, f->err, sizeof f->err), HINGE_ERR_INVALID);
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_NONE, &p, f->err, sizeof f->err), HINGE_ERR_INVALID);
    f->in.req.new_tokens = 0;
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &p, f->err, sizeof f->err), HINGE_ERR_INVALID);
    f->in.req.new_tokens = 5;
    f->dev.meas.n_layer = 3; /* measured on another model, no roofline */
    assert_int_equal(part_predict(&f->in, 1, PART_CODEC_F32, &p, f->err, sizeof f->err), HINGE_ERR_UNSUPPORTED);
    assert_non_null(strstr(f->err, "fx-device"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_private_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setup_cost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codecs_shrink_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cold_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_prefill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_dependence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roofline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_inputs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
