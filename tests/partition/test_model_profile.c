/* Tests of partition/model_profile.c: the codecs agree with transport's,
 * the attended-key sums with brute force, and the profile of a real GGUF
 * (stories260K) with its tensors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "partition.h"
#include "transport.h"

#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"

static void test_codecs_match_transport(void **state)
{
    (void)state;
    static const uint32_t dims[] = {1, 7, 64, 640, 4096, 65536};
    for (int c = PART_CODEC_F32; c <= PART_CODEC_Q8; c++) {
        assert_int_equal((int)c, (int)(tx_codec)c);
        assert_string_equal(part_codec_name((part_codec)c), tx_codec_name((tx_codec)c));
        for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
            assert_int_equal(part_codec_row_bytes((part_codec)c, dims[i]), tx_codec_row_bytes((tx_codec)c, dims[i]));
        part_codec back;
        assert_int_equal(part_codec_parse(part_codec_name((part_codec)c), &back), HINGE_OK);
        assert_int_equal(back, c);
    }
    assert_int_equal(PART_FRAME_HEADER_BYTES, TX_FRAME_HEADER_BYTES);
    part_model m = {.n_embd = 640};
    size_t bytes;
    assert_int_equal(tx_frame_size(TX_CODEC_F16, 17, 640, &bytes), HINGE_OK);
    assert_true(part_frame_bytes(&m, PART_CODEC_F16, 17) == (double)bytes);
    assert_int_equal(part_codec_row_bytes(PART_CODEC_NONE, 64), 0);
}

static void test_codec_mask(void **state)
{
    (void)state;
    uint32_t mask = 0;
    char err[HINGE_ERRMSG_MAX];
    assert_int_equal(part_codec_mask_parse("f32,q8", &mask, err, sizeof err), HINGE_OK);
    assert_int_equal(mask, PART_CODEC_BIT_F32 | PART_CODEC_BIT_Q8);
    assert_int_equal(part_codec_mask_parse("f16", &mask, err, sizeof err), HINGE_OK);
    assert_int_equal(mask, PART_CODEC_BIT_F16);
    const char *bad[] = {"", "f64", "f32,,f16", ",", "f32,bf16"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mask = 99;
        assert_int_equal(part_codec_mask_parse(bad[i], &mask, err, sizeof err), HINGE_ERR_INVALID);
        assert_int_equal(mask, 99);
    }
}

static void test_attended_sum(void **state)
{
    (void)state;
    static const uint32_t windows[] = {0, 1, 2, 5, 16, 512};
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++)
        for (uint32_t pos0 = 0; pos0 < 40; pos0 += 3)
            for (uint32_t n = 0; n < 40; n += 5) {
                double want = 0;
                for (uint32_t p = pos0; p < pos0 + n; p++)
                    want += windows[w] && p + 1 > windows[w] ? windows[w] : p + 1;
                assert_true(part_attended_sum(windows[w], pos0, n) == want);
            }
}

static void test_stories(void **state)
{
    (void)state;
    model *m = NULL;
    char err[HINGE_ERRMSG_MAX];
    static part_model pm;
    assert_int_equal(model_load(STORIES, false, NULL, &m, err, sizeof err), HINGE_OK);
    assert_int_equal(part_model_from_gguf(m, &pm, err, sizeof err), HINGE_OK);
    assert_int_equal(pm.n_layer, 5);
    assert_int_equal(pm.n_embd, 64);
    assert_string_equal(pm.sha256, ""); /* not hashed */
    double layers = 0;
    for (uint32_t i = 0; i < pm.n_layer; i++) {
        const part_model_layer *L = &pm.layer[i];
        assert_true(L->weight_bytes == (double)model_layer_bytes(m, i));
        layers += L->weight_bytes;
        /* f32 weights: 4 bytes per parameter, 2 FLOPs per parameter and position, plus a little */
        assert_true(L->flops_per_pos >= 2.0 * L->weight_bytes / 4.0 * 0.98);
        assert_true(L->flops_per_pos <= 2.0 * L->weight_bytes / 4.0 * 1.10);
        assert_true(L->kv_elems_per_pos == (double)m->hp.n_head_kv * (m->hp.head_dim + m->hp.head_dim_v));
        assert_true(L->flops_per_attended > 0);
        assert_int_equal(L->window, 0);
    }
    double tied_head = pm.head_tied ? 0 : pm.head_weight_bytes;
    assert_true(layers + pm.embed_table_bytes + tied_head <= (double)m->weight_bytes + 1);
    assert_true(layers + pm.embed_table_bytes + tied_head >= (double)m->weight_bytes * 0.99);
    assert_true(pm.head_flops >= 2.0 * m->hp.n_vocab * m->hp.n_embd);
    /* FLOPs of [a, b) add up */
    double all = part_model_flops(&pm, 0, 5, 3, 10);
    assert_true(all == part_model_flops(&pm, 0, 2, 3, 10) + part_model_flops(&pm, 2, 5, 3, 10));
    model_free(m);
    assert_int_equal(model_load(STORIES, true, NULL, &m, err, sizeof err), HINGE_OK);
    assert_int_equal(part_model_from_gguf(m, &pm, err, sizeof err), HINGE_OK);
    assert_int_equal(strlen(pm.sha256), 64);
    model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codecs_match_transport),
        cmocka_unit_test(test_codec_mask),
        cmocka_unit_test(test_attended_sum),
        cmocka_unit_test(test_stories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
