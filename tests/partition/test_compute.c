/* Tests of partition/compute.c and compute_save.c: device and edge
 * profiles, malformed ones refused naming file and field, a measured
 * profile written and read back, and every shipped profile loads. */
#include <dirent.h>
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

#define FIG(v) "{\"value\": " v ", \"source\": \"test\"}"
#define ROOF "\"roofline\": {\"peak_tflops\": " FIG("2") ", \"mem_bw_gbytes_s\": " FIG("50") \
             ", \"compute_efficiency\": " FIG("0.3") ", \"memory_efficiency\": " FIG("0.6") \
             ", \"layer_overhead_us\": " FIG("20") "}"
#define DEVICE_TAIL ", \"memory_available_mb\": " FIG("4096") ", \"power_compute_w\": " FIG("5") \
                    ", \"power_tx_w\": " FIG("2") "}"
#define LAYER "{\"prefill_us_per_pos\": 1, \"prefill_us_per_attended\": 0.1, \"decode_us\": 2, " \
              "\"decode_us_per_attended\": 0.2}"
#define MEASURED(layers) "\"measured\": {\"source\": \"test\", \"model\": {\"n_layer\": 2, \"n_embd\": 64}, " \
                         "\"embed_us_per_pos\": 0.1, \"head_us\": 5, \"layers\": [" layers "]}"

static hinge_status parse(const char *text, part_role role, part_compute *out, char *err, size_t errlen)
{
    return part_compute_parse(text, strlen(text), "p.json", role, out, err, errlen);
}

static void test_roofline_device(void **state)
{
    (void)state;
    static part_compute c;
    char err[HINGE_ERRMSG_MAX];
    const char *t = "{\"kind\": \"device\", \"name\": \"phone\", " ROOF DEVICE_TAIL;
    assert_int_equal(parse(t, PART_ROLE_DEVICE, &c, err, sizeof err), HINGE_OK);
    assert_true(c.roof.present && !c.meas.present);
    assert_true(c.roof.flops_per_s == 2e12 && c.roof.mem_bytes_per_s == 50e9);
    assert_true(c.mem_bytes == 4096.0 * 1048576);
    assert_true(c.power_rx_w == c.power_tx_w); /* default: receiving costs what sending does */
    assert_true(c.kv_elem_bytes == 4 && c.request_overhead_us == 500);
    assert_int_equal(c.roof.prefill_chunk, PART_DEFAULT_MAX_STEP);
    /* the same file is not an edge profile */
    assert_int_equal(parse(t, PART_ROLE_EDGE, &c, err, sizeof err), HINGE_ERR_FORMAT);
    assert_non_null(strstr(err, "kind"));
}

static void test_measured_edge(void **state)
{
    (void)state;
    static part_compute c;
    char err[HINGE_ERRMSG_MAX];
    const char *t = "{\"kind\": \"edge\", \"name\": \"box\", " MEASURED(LAYER ", " LAYER) "}";
    assert_int_equal(parse(t, PART_ROLE_EDGE, &c, err, sizeof err), HINGE_OK);
    assert_true(c.meas.present && !c.roof.present);
    assert_int_equal(c.meas.n_layer, 2);
    assert_true(c.meas.layer[1].decode_us == 2 && c.meas.head_us == 5);
    assert_true(c.mem_bytes == 0 && c.request_overhead_us == 0);
}

static void expect_bad(const char *text, part_role role, hinge_status want, const char *field)
{
    static part_compute c;
    char err[HINGE_ERRMSG_MAX] = "";
    c.name[0] = 'X';
    hinge_status s = parse(text, role, &c, err, sizeof err);
    if (s != want || !strstr(err, "p.json") || !strstr(err, field))
        fail_msg("%s\n  got %s '%s', want %s naming '%s'", text, hinge_strerror(s), err, hinge_strerror(want), field);
    assert_int_equal(c.name[0], 'X'); /* untouched */
}

static void test_malformed(void **state)
{
    (void)state;
    const part_role D = PART_ROLE_DEVICE, E = PART_ROLE_EDGE;
    expect_bad("{\"kind\": \"device\", \"name\": \"x\"" DEVICE_TAIL, D, HINGE_ERR_FORMAT, "roofline");
    expect_bad("{\"kind\": \"device\", \"name\": \"x\", " ROOF "}", D, HINGE_ERR_FORMAT, "memory_available_mb");
    expect_bad("{\"kind\": \"device\", \"name\": \"x\", " ROOF ", \"memory_available_mb\": " FIG("-5") "}", D,
               HINGE_ERR_RANGE, "memory_available_mb");
    expect_bad("{\"kind\": \"device\", \"name\": \"x\", \"roofline\": {\"peak_tflops\": " FIG("-2") "}" DEVICE_TAIL,
               D, HINGE_ERR_RANGE, "roofline.peak_tflops");
    expect_bad("{\"kind\": \"device\", \"name\": \"x\", \"roofline\": {\"peak_tflops\": " FIG("2") "}" DEVICE_TAIL,
               D, HINGE_ERR_FORMAT, "roofline.mem_bw_gbytes_s");
    expect_bad("{\"kind\": \"device\", \"name\": \"x\", \"roofline\": {\"peak_tflops\": " FIG("2") ", "
               "\"mem_bw_gbytes_s\": " FIG("5") ", \"compute_efficiency\": " FIG("1.5") "}" DEVICE_TAIL,
               D, HINGE_ERR_RANGE, "roofline.compute_efficiency");
    expect_bad("{\"kind\": \"edge\", \"name\": \"x\", " ROOF ", \"power_tx_w\": " FIG("-1") "}", E, HINGE_ERR_RANGE,
               "power_tx_w");
    expect_bad("{\"kind\": \"edge\", \"name\": \"x\", " MEASURED(LAYER) "}", E, HINGE_ERR_FORMAT, "measured.layers");
    expect_bad("{\"kind\": \"edge\", \"name\": \"x\", " MEASURED(LAYER ", {\"decode_us\": 1}") "}", E,
               HINGE_ERR_FORMAT, "measured.layers[1].prefill_us_per_pos");
    expect_bad("{\"kind\": \"edge\", \"name\": \"x\", " MEASURED(LAYER ", {\"prefill_us_per_pos\": 1, "
               "\"prefill_us_per_attended\": 0.1, \"decode_us\": -2, \"decode_us_per_attended\": 0.2}") "}",
               E, HINGE_ERR_RANGE, "measured.layers[1].decode_us");
    expect_bad("{\"kind\": \"edge\", \"name\": \"x\", \"measured\": {\"model\": {\"n_layer\": 1, \"n_embd\": 4}}}", E,
               HINGE_ERR_FORMAT, "measured.source");
    expect_bad("{\"kind\": \"edge\", \"name\": \"x\", " ROOF ", \"colour\": \"red\"}", E, HINGE_ERR_FORMAT,
               "colour");
    expect_bad("{\"name\": \"x\", " ROOF "}", E, HINGE_ERR_FORMAT, "kind");
}

static void test_check(void **state)
{
    (void)state;
    static part_compute c;
    static part_model m;
    char err[HINGE_ERRMSG_MAX];
    const char *t = "{\"kind\": \"edge\", \"name\": \"box\", " MEASURED(LAYER ", " LAYER) "}";
    assert_int_equal(parse(t, PART_ROLE_EDGE, &c, err, sizeof err), HINGE_OK);
    m = (part_model){.n_layer = 2, .n_embd = 64};
    strcpy(m.name, "tiny");
    assert_int_equal(part_compute_check(&c, &m, err, sizeof err), HINGE_OK);
    m.n_layer = 3;
    assert_int_equal(part_compute_check(&c, &m, err, sizeof err), HINGE_ERR_UNSUPPORTED);
    assert_non_null(strstr(err, "box"));
    assert_non_null(strstr(err, "tiny"));
    c.roof.present = true; /* a roofline costs any model */
    assert_int_equal(part_compute_check(&c, &m, err, sizeof err), HINGE_OK);
}

static void test_save_roundtrip(void **state)
{
    (void)state;
    static part_compute c, back;
    char err[HINGE_ERRMSG_MAX], path[] = "/tmp/hinge-test-profile-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    c = (part_compute){.role = PART_ROLE_DEVICE, .mem_bytes = 512.0 * 1048576, .kv_elem_bytes = 4,
                       .power_compute_w = 10, .power_tx_w = 2, .power_rx_w = 1, .power_idle_w = 0.5,
                       .request_overhead_us = 180, .setup_overhead_us = 3500};
    strcpy(c.name, "saved");
    c.meas = (part_measured){.present = true, .n_layer = 3, .n_embd = 32, .embed_us_per_pos = 0.25,
                             .head_us = 40, .head_first_touch_us = 7, .step_us = 1.5};
    memset(c.meas.model_sha256, 'a', 64);
    for (int i = 0; i < 3; i++)
        c.meas.layer[i] = (part_layer_cost){.prefill_us_per_pass = 10 + i, .prefill_us_per_pos = 1 + i,
                                            .prefill_us_per_attended = 0.125, .decode_us = 3 + i,
                                            .decode_us_per_attended = 0.0625, .first_touch_us = 20};
    c.meas.encode_us_per_pos[PART_CODEC_F16] = 0.5;
    uint32_t ctxs[] = {15, 100};
    part_save_info info = {.source = "test", .engine = "cpu", .threads = 1, .model_name = "m", .contexts = ctxs,
                           .n_contexts = 2, .mem_source = "t", .power_source = "t", .overhead_source = "t"};
    assert_int_equal(part_compute_save(&c, &info, path, err, sizeof err), HINGE_OK);
    assert_int_equal(part_compute_load(path, PART_ROLE_DEVICE, &back, err, sizeof err), HINGE_OK);
    unlink(path);
    assert_string_equal(back.name, "saved");
    assert_string_equal(back.meas.model_sha256, c.meas.model_sha256);
    assert_int_equal(back.meas.n_layer, 3);
    for (int i = 0; i < 3; i++) {
        assert_true(back.meas.layer[i].prefill_us_per_pass == c.meas.layer[i].prefill_us_per_pass);
        assert_true(back.meas.layer[i].decode_us == c.meas.layer[i].decode_us);
        assert_true(back.meas.layer[i].first_touch_us == 20);
    }
    assert_true(back.meas.head_us == 40 && back.meas.step_us == 1.5 && back.meas.head_first_touch_us == 7);
    assert_true(back.meas.encode_us_per_pos[PART_CODEC_F16] == 0.5);
    assert_true(back.mem_bytes == c.mem_bytes && back.power_idle_w == 0.5 && back.setup_overhead_us == 3500);
}

static void load_dir(const char *sub, part_role role, int min_files)
{
    static part_compute c;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/profiles/%s", HINGE_SOURCE_DIR, sub);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        char path[1024], err[HINGE_ERRMSG_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (part_compute_load(path, role, &c, err, sizeof err) != HINGE_OK)
            fail_msg("%s", err);
        n++;
    }
    closedir(d);
    assert_true(n >= min_files);
}

static void test_shipped(void **state)
{
    (void)state;
    load_dir("devices", PART_ROLE_DEVICE, 5);
    load_dir("edges", PART_ROLE_EDGE, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roofline_device),
        cmocka_unit_test(test_measured_edge),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_save_roundtrip),
        cmocka_unit_test(test_shipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
