/* libhinge's profile and partitioner calls through the public header only:
 *
 *   - hinge_partition_plan on the shipped profiles: a JSON document with a
 *     cut in [0, n_layer] and one candidate per cut; local only without a
 *     channel; the limits of the request and the policy;
 *   - bad files and bad configs give a status and a message;
 *   - hinge_profile_measure of stories260K on the CPU: JSON with one entry
 *     per layer, which hinge_partition_plan reads back as a device profile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include <hinge/hinge.h>

#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"
#define PROFILES HINGE_SOURCE_DIR "/profiles"
#define DEVICE PROFILES "/devices/snapdragon-8-gen3.json"
#define EDGE PROFILES "/edges/h100-sxm.json"
#define CHANNEL PROFILES "/channels/5g-midband-good.json"

static int setup(void **state)
{
    hinge_model *m = NULL;
    if (hinge_model_load(STORIES, &m) != HINGE_OK)
        return -1;
    *state = m;
    return 0;
}

static int teardown(void **state)
{
    hinge_model_free(*state);
    return 0;
}

static uint32_t n_layer(hinge_model *m)
{
    hinge_model_info mi;
    hinge_model_get_info(m, &mi);
    return mi.n_layer;
}

/* Runs the plan, parses it and checks its shape; the caller decrefs. */
static json_t *plan_ok(hinge_model *m, const hinge_plan_config *c)
{
    char *text = NULL;
    hinge_status s = hinge_partition_plan(m, c, &text);
    if (s != HINGE_OK)
        print_error("hinge_partition_plan: %s (%s)\n", hinge_last_error(), hinge_strerror(s));
    assert_int_equal(s, HINGE_OK);
    assert_non_null(text);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    hinge_free(text);
    assert_non_null(j);
    json_t *cut = json_object_get(j, "cut"), *cands = json_object_get(j, "candidates");
    assert_true(json_is_integer(cut));
    assert_in_range(json_integer_value(cut), 0, n_layer(m));
    assert_int_equal(json_array_size(cands), n_layer(m) + 1);
    for (size_t k = 0; k < json_array_size(cands); k++) {
        json_t *p = json_array_get(cands, k);
        assert_int_equal(json_integer_value(json_object_get(p, "cut")), k);
        assert_true(json_is_boolean(json_object_get(p, "feasible")));
        assert_non_null(json_object_get(p, "ttft_ms"));
        assert_non_null(json_object_get(p, "tpot_split"));
    }
    json_t *chosen = json_object_get(j, "chosen");
    assert_int_equal(json_integer_value(json_object_get(chosen, "cut")), json_integer_value(cut));
    assert_true(json_is_true(json_object_get(chosen, "feasible")));
    assert_true(json_is_string(json_object_get(j, "codec")));
    assert_true(json_number_value(json_object_get(j, "decision_us")) >= 0);
    return j;
}

static void test_plan_split(void **state)
{
    hinge_model *m = *state;
    hinge_plan_config c;
    hinge_plan_config_init(&c);
    c.device_profile = DEVICE;
    c.edge_profile = EDGE;
    c.channel_profile = CHANNEL;
    c.prompt_len = 200;
    c.new_tokens = 16;
    json_t *j = plan_ok(m, &c);
    assert_string_equal(json_string_value(json_object_get(j, "channel")), "5g-midband-good");
    json_t *req = json_object_get(j, "request");
    assert_int_equal(json_integer_value(json_object_get(req, "prompt_len")), 200);
    assert_int_equal(json_integer_value(json_object_get(req, "new_tokens")), 16);
    json_decref(j);

    c.min_cut = 3; /* the privacy floor holds */
    j = plan_ok(m, &c);
    assert_true(json_integer_value(json_object_get(j, "cut")) >= 3);
    json_t *k0 = json_array_get(json_object_get(j, "candidates"), 0);
    assert_false(json_is_true(json_object_get(k0, "feasible")));
    json_decref(j);
}

static void test_plan_local(void **state)
{
    hinge_model *m = *state;
    hinge_plan_config c;
    hinge_plan_config_init(&c);
    c.device_profile = DEVICE; /* no channel, no edge: k = N */
    json_t *j = plan_ok(m, &c);
    assert_int_equal(json_integer_value(json_object_get(j, "cut")), n_layer(m));
    assert_true(json_is_null(json_object_get(j, "edge")) || !json_object_get(j, "edge"));
    json_t *req = json_object_get(j, "request");
    assert_int_equal(json_integer_value(json_object_get(req, "prompt_len")), 128);
    assert_int_equal(json_integer_value(json_object_get(req, "new_tokens")), 64);
    json_decref(j);
}

/* Speculative lookahead modelled per split candidate: over LTE (50 ms round
 * trips) drafts that are mostly accepted pay; none accepted, none sent. */
static void test_plan_speculate(void **state)
{
    hinge_model *m = *state;
    hinge_plan_config c;
    hinge_plan_config_init(&c);
    c.device_profile = DEVICE;
    c.edge_profile = EDGE;
    c.channel_profile = PROFILES "/channels/lte.json";
    c.speculate = 6;
    c.accept_rate = 0.9;
    json_t *j = plan_ok(m, &c);
    json_t *cands = json_object_get(j, "candidates");
    json_t *k1 = json_array_get(cands, 1), *sp = json_object_get(k1, "speculate");
    assert_true(json_is_object(sp));
    assert_in_range(json_integer_value(json_object_get(sp, "drafts")), 1, 6);
    assert_true(json_number_value(json_object_get(sp, "tokens_per_round_trip")) > 1.5);
    assert_true(json_number_value(json_object_get(sp, "tpot_ms")) < json_number_value(json_object_get(k1, "tpot_ms")));
    assert_null(json_object_get(json_array_get(cands, n_layer(m)), "speculate")); /* local: no edge to verify */
    json_decref(j);

    c.accept_rate = 1e-9; /* 0 would mean the default */
    j = plan_ok(m, &c);
    sp = json_object_get(json_array_get(json_object_get(j, "candidates"), 1), "speculate");
    assert_int_equal(json_integer_value(json_object_get(sp, "drafts")), 0);
    json_decref(j);

    char *text = NULL;
    c.speculate = 16;
    assert_int_equal(hinge_partition_plan(m, &c, &text), HINGE_ERR_INVALID);
    c.speculate = 6;
    c.accept_rate = 1.5;
    assert_int_equal(hinge_partition_plan(m, &c, &text), HINGE_ERR_INVALID);
    assert_null(text);
}

static void test_plan_errors(void **state)
{
    hinge_model *m = *state;
    hinge_plan_config c;
    char *text = NULL;
    hinge_plan_config_init(&c);
    c.device_profile = "/nonexistent/device.json";
    assert_int_equal(hinge_partition_plan(m, &c, &text), HINGE_ERR_IO);
    assert_non_null(strstr(hinge_last_error(), "/nonexistent/device.json"));
    assert_null(text);

    c.device_profile = DEVICE;
    c.edge_profile = "/nonexistent/edge.json";
    c.channel_profile = CHANNEL;
    assert_int_equal(hinge_partition_plan(m, &c, &text), HINGE_ERR_IO);
    assert_non_null(strstr(hinge_last_error(), "/nonexistent/edge.json"));

    c.edge_profile = DEVICE; /* a device profile where an edge's is expected */
    assert_int_equal(hinge_partition_plan(m, &c, &text), HINGE_ERR_FORMAT);
    assert_true(strlen(hinge_last_error()) > 0);

    c.edge_profile = "https://edge.example:8443";
    assert_int_equal(hinge_partition_plan(m, &c, &text), HINGE_ERR_INVALID);

    hinge_plan_config_init(&c);
    assert_int_equal(hinge_partition_plan(m, &c, &text), HINGE_ERR_INVALID); /* no device profile */
    c.device_profile = DEVICE;
    c.min_cut = n_layer(m) + 1;
    assert_int_equal(hinge_partition_plan(m, &c, &text), HINGE_ERR_RANGE);
    c.min_cut = 0;
    c.codecs = "f32,zz";
    assert_int_equal(hinge_partition_plan(m, &c, &text), HINGE_ERR_INVALID);
    assert_non_null(strstr(hinge_last_error(), "zz"));
    c.codecs = NULL;
    c.size = 2;
    assert_int_equal(hinge_partition_plan(m, &c, &text), HINGE_ERR_INVALID);
    assert_int_equal(hinge_partition_plan(m, NULL, &text), HINGE_ERR_INVALID);
    assert_int_equal(hinge_partition_plan(NULL, &c, &text), HINGE_ERR_INVALID);
    assert_null(text);
}

/* Measures, checks the document's shape, returns it (the caller frees). */
static char *measure_ok(hinge_model *m, const hinge_profile_config *c, const char *kind)
{
    char *text = NULL;
    hinge_status s = hinge_profile_measure(m, c, &text);
    if (s != HINGE_OK)
        print_error("hinge_profile_measure: %s (%s)\n", hinge_last_error(), hinge_strerror(s));
    assert_int_equal(s, HINGE_OK);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), kind);
    json_t *me = json_object_get(j, "measured"), *layers = json_object_get(me, "layers");
    assert_int_equal(json_array_size(layers), n_layer(m));
    for (size_t l = 0; l < json_array_size(layers); l++) {
        json_t *c0 = json_array_get(layers, l);
        assert_true(json_number_value(json_object_get(c0, "decode_us")) >= 0);
        assert_true(json_is_number(json_object_get(c0, "prefill_us_per_pos")));
    }
    assert_true(json_number_value(json_object_get(me, "head_us")) > 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(me, "model"), "n_layer")), n_layer(m));
    char hex[65];
    assert_int_equal(hinge_model_sha256(m, hex), HINGE_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(me, "model"), "sha256")), hex);
    json_decref(j);
    return text;
}

static void test_profile_measure(void **state)
{
    hinge_model *m = *state;
    hinge_profile_config c;
    hinge_profile_config_init(&c);
    c.n_ctx = 64;
    c.n_threads = 1;
    c.name = "test-device";
    char *text = measure_ok(m, &c, "device");

    /* the measured profile is one the partitioner reads */
    char path[] = "/tmp/hinge-test-plan-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    hinge_free(text);
    hinge_plan_config pc;
    hinge_plan_config_init(&pc);
    pc.device_profile = path;
    pc.edge_profile = EDGE;
    pc.channel_profile = CHANNEL;
    json_t *j = plan_ok(m, &pc);
    assert_string_equal(json_string_value(json_object_get(j, "device")), "test-device");
    json_decref(j);
    unlink(path);

    c.edge_role = 1;
    text = measure_ok(m, &c, "edge");
    hinge_free(text);
}

/* Vulkan: a profile where it is built and a device answers; otherwise
 * HINGE_ERR_UNSUPPORTED (-Dvulkan=disabled) or HINGE_ERR_VULKAN (no device). */
static void test_profile_vulkan(void **state)
{
    hinge_model *m = *state;
    hinge_profile_config c;
    char *text = NULL;
    hinge_profile_config_init(&c);
    c.backend = HINGE_BACKEND_VULKAN;
    c.n_ctx = 64;
    c.n_threads = 1;
    hinge_status s = hinge_profile_measure(m, &c, &text);
    if (s != HINGE_OK) {
        assert_true(s == HINGE_ERR_UNSUPPORTED || s == HINGE_ERR_VULKAN);
        assert_true(strlen(hinge_last_error()) > 0);
        assert_null(text);
        return;
    }
    json_t *j = json_loads(text, 0, NULL);
    hinge_free(text);
    json_t *me = json_object_get(j, "measured");
    assert_string_equal(json_string_value(json_object_get(me, "engine")), "vulkan");
    assert_string_equal(json_string_value(json_object_get(j, "name")), "this-machine-vulkan");
    assert_int_equal(json_array_size(json_object_get(me, "layers")), n_layer(m));
    json_decref(j);
}

static void test_profile_errors(void **state)
{
    hinge_model *m = *state;
    hinge_profile_config c;
    char *text = NULL;
    hinge_profile_config_init(&c);
    c.n_ctx = 32; /* too short to fit */
    assert_int_equal(hinge_profile_measure(m, &c, &text), HINGE_ERR_INVALID);
    assert_non_null(strstr(hinge_last_error(), "32"));
    hinge_profile_config_init(&c);
    c.backend = (hinge_backend)7;
    assert_int_equal(hinge_profile_measure(m, &c, &text), HINGE_ERR_INVALID);
    hinge_profile_config_init(&c);
    c.size = 1;
    assert_int_equal(hinge_profile_measure(m, &c, &text), HINGE_ERR_INVALID);
    assert_int_equal(hinge_profile_measure(m, NULL, NULL), HINGE_ERR_INVALID);
    assert_int_equal(hinge_profile_measure(NULL, NULL, &text), HINGE_ERR_INVALID);
    assert_null(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_split),   cmocka_unit_test(test_plan_local),
        cmocka_unit_test(test_plan_speculate), cmocka_unit_test(test_plan_errors),
        cmocka_unit_test(test_profile_measure),
        cmocka_unit_test(test_profile_vulkan), cmocka_unit_test(test_profile_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
