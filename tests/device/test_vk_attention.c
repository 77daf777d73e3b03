/* rope_kv.comp and attention.comp against model/ops.c (op_rmsnorm, op_rope,
 * op_attention) on Gemma 3 270M shapes (4 query heads x 256 over 1 kv head,
 * neox RoPE, per-head q/k norms, sliding window) and stories260K shapes
 * (8 heads x 8 over 4 kv heads, interleaved RoPE), in every variant the
 * device runs.
 *
 * Error measure sum|got - ref| / sum|ref| (u = 2^-24; measured on lavapipe
 * in brackets):
 *  - rope + cache write: 1e-6 [7e-8]. The angles are bit-identical (the host
 *    computes the frequencies as op_rope does and the device multiplies by
 *    the position as the CPU does); the device's reduction to [-pi, pi]
 *    loses about |theta| * u (5e-4 * 2^-10 rad at theta = 8000) and its
 *    cos/sin are within a few ulp; the per-head norm sums squares in float
 *    where the CPU uses double (~0.2 * u * sqrt(256)). V is copied: 0.
 *  - attention: 5e-6 [5e-7]. Scores are dots of head_dim terms summed in
 *    another order (~0.2 * u * sqrt(head_dim) relative, times |score| up to
 *    ~20 here, which exp turns into a relative error of the weight), exp is
 *    within a few ulp, and the online softmax rescales per tile of 64 keys
 *    (attention_rows.comp, CPU devices: per block of 8 keys in each of 8
 *    lanes' groups, merged at the end) where the CPU normalizes once. Each
 *    output is a convex combination of values, so these relative errors
 *    carry over without growth.
 * Cases with `posbuf` record the op with pos0 - posbuf and let the device
 * add posbuf from a buffer at run time (HK_F_POSBUF, what the executor's
 * prerecorded decode step does): the result must be the same. 
 * Exits 77 (skipped) without a Vulkan device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "vk_fixture.h"

#define TOL_ROPE 1e-6
#define TOL_ATTN 5e-6

typedef struct rope_case {
    dev_attn_shape s;
    uint32_t rope_dim;
    bool neox, qk_norm, in_place;
    float base, pos_scale;
    uint32_t m, pos0, ctx;
    uint32_t posbuf; /* > 0: this much of pos0 comes from a buffer */
} rope_case;

static void rope_reference(const rope_case *c, const float *qkv, const float *qn, const float *kn, float *q_ref,
                           float *k_ref, float *v_ref)
{
    const dev_attn_shape *s = &c->s;
    size_t qd = (size_t)s->n_head * s->head_dim, kd = (size_t)s->n_head_kv * s->head_dim;
    size_t vd = (size_t)s->n_head_kv * s->head_dim_v, stride = qd + kd + vd;
    for (uint32_t j = 0; j < c->m; j++) {
        float *q = q_ref + j * qd, *k = k_ref + j * kd;
        memcpy(q, qkv + j * stride, qd * 4);
        memcpy(k, qkv + j * stride + qd, kd * 4);
        memcpy(v_ref + j * vd, qkv + j * stride + qd + kd, vd * 4);
        if (c->qk_norm) {
            for (uint32_t h = 0; h < s->n_head; h++)
                op_rmsnorm(q + h * s->head_dim, q + h * s->head_dim, qn, s->head_dim, 1e-6f);
            for (uint32_t h = 0; h < s->n_head_kv; h++)
                op_rmsnorm(k + h * s->head_dim, k + h * s->head_dim, kn, s->head_dim, 1e-6f);
        }
        op_rope(q, s->n_head, s->head_dim, c->rope_dim, c->neox, c->pos0 + j, c->base, c->pos_scale);
        op_rope(k, s->n_head_kv, s->head_dim, c->rope_dim, c->neox, c->pos0 + j, c->base, c->pos_scale);
    }
}

static void rope_check(const rope_case *c, dev_ops *o, const dev_buf *bq, const dev_buf *kc, const dev_buf *vc,
                       const float *q_ref, const float *k_ref, const float *v_ref)
{
    const dev_attn_shape *s = &c->s;
    size_t qd = (size_t)s->n_head * s->head_dim, kd = (size_t)s->n_head_kv * s->head_dim;
    size_t vd = (size_t)s->n_head_kv * s->head_dim_v, stride = c->in_place ? qd + kd + vd : qd;
    float *got = malloc(c->m * stride * 4), *kg = malloc((size_t)c->ctx * kd * 4), *vg = malloc((size_t)c->ctx * vd * 4);
    float *qg = malloc(c->m * qd * 4);
    assert_true(got && kg && vg && qg);
    fx_download(bq, got, c->m * stride * 4);
    for (uint32_t j = 0; j < c->m; j++)
        memcpy(qg + j * qd, got + j * stride, qd * 4);
    fx_download(kc, kg, (size_t)c->ctx * kd * 4);
    fx_download(vc, vg, (size_t)c->ctx * vd * 4);
    char what[128];
    snprintf(what, sizeof what, "rope_kv %ux%u/%u rope %u%s pos %u+%u%s [%s]", s->n_head, s->head_dim, s->n_head_kv,
             c->rope_dim, c->neox ? " neox" : "", c->pos0, c->m, c->posbuf ? " (buffer)" : "", dev_ops_describe(o));
    fx_check(what, qg, q_ref, c->m * qd, TOL_ROPE);
    fx_check(what, kg + (size_t)c->pos0 * kd, k_ref, c->m * kd, TOL_ROPE);
    fx_check(what, vg + (size_t)c->pos0 * vd, v_ref, c->m * vd, 0.0);
    free(got);
    free(kg);
    free(vg);
    free(qg);
}

static void rope_case_run(const rope_case *c)
{
    const dev_attn_shape *s = &c->s;
    size_t qd = (size_t)s->n_head * s->head_dim, kd = (size_t)s->n_head_kv * s->head_dim;
    size_t vd = (size_t)s->n_head_kv * s->head_dim_v, stride = qd + kd + vd;
    float *qkv = fx_rnd_vec(c->m * stride, -2.0f, 2.0f), *qn = fx_rnd_vec(s->head_dim, 0.5f, 1.5f);
    float *kn = fx_rnd_vec(s->head_dim, 0.5f, 1.5f), *freq = malloc(c->rope_dim / 2 * 4);
    float *q_ref = malloc(c->m * qd * 4), *k_ref = malloc(c->m * kd * 4), *v_ref = malloc(c->m * vd * 4);
    assert_true(freq && q_ref && k_ref && v_ref);
    rope_reference(c, qkv, qn, kn, q_ref, k_ref, v_ref);
    dev_rope_freqs(c->base, c->rope_dim, freq);
    for (int v = 0; v < fx.n_ops; v++) {
        fx_reset_pools();
        dev_buf bin = fx_upload(qkv, c->m * stride * 4), bqn = fx_upload(qn, s->head_dim * 4);
        dev_buf bkn = fx_upload(kn, s->head_dim * 4), bf = fx_upload(freq, c->rope_dim / 2 * 4);
        dev_buf bq = c->in_place ? bin : fx_alloc(fx.apool, c->m * qd * 4);
        dev_buf kc = fx_alloc(fx.apool, (size_t)c->ctx * kd * 4), vc = fx_alloc(fx.apool, (size_t)c->ctx * vd * 4);
        dev_rope_args a = {
            .s = *s, .rope_dim = c->rope_dim, .neox = c->neox, .pos_scale = c->pos_scale, .qkv = &bin,
            .in_stride = (uint32_t)stride, .q_in = 0, .k_in = (uint32_t)qd, .v_in = (uint32_t)(qd + kd),
            .q_out = &bq, .q_stride = (uint32_t)(c->in_place ? stride : qd), .k_cache = &kc, .v_cache = &vc,
            .q_norm = c->qk_norm ? &bqn : NULL, .k_norm = c->qk_norm ? &bkn : NULL, .eps = 1e-6f, .freq = &bf,
        };
        dev_buf bpos;
        if (c->posbuf) {
            bpos = fx_upload(&c->posbuf, sizeof c->posbuf);
            a.pos = &bpos;
        }
        dev_op op;
        fx_ok(dev_prepare_rope_kv(fx.ops[v], &a, &op));
        fx_run(&op, c->m, c->pos0 - c->posbuf);
        rope_check(c, fx.ops[v], &bq, &kc, &vc, q_ref, k_ref, v_ref);
    }
    free(qkv);
    free(qn);
    free(kn);
    free(freq);
    free(q_ref);
    free(k_ref);
    free(v_ref);
}

static void test_rope_kv(void **state)
{
    (void)state;
    fx_need_device();
    const dev_attn_shape gemma = {4, 1, 256, 256}, stories = {8, 4, 8, 8};
    rope_case cases[] = {
        {gemma, 256, true, true, false, 1e6f, 1.0f, 3, 5, 16, 0},
        {gemma, 256, true, true, true, 10000.0f, 1.0f, 2, 8000, 8002, 0},  /* large angles, in place */
        {gemma, 128, true, false, false, 10000.0f, 8.0f, 2, 300, 302, 0},  /* partial rope, linear scaling */
        {stories, 8, false, false, false, 10000.0f, 1.0f, 5, 0, 8, 0},
        {stories, 8, false, false, true, 10000.0f, 1.0f, 1, 250, 256, 0},
        {gemma, 256, true, true, true, 1e6f, 1.0f, 1, 77, 128, 77},     /* decode, position from a buffer */
        {stories, 8, false, false, true, 10000.0f, 1.0f, 3, 40, 64, 30},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        rope_case_run(&cases[i]);
}

/* ---- attention ---- */

typedef struct attn_case {
    dev_attn_shape s;
    uint32_t m, pos0, window, ctx;
    uint32_t posbuf; /* > 0: this much of pos0 comes from a buffer */
} attn_case;

static void attn_reference(const attn_case *c, const float *q, const float *kc, const float *vc, float scale,
                           float *ref)
{
    const dev_attn_shape *s = &c->s;
    size_t qd = (size_t)s->n_head * s->head_dim, od = (size_t)s->n_head * s->head_dim_v;
    float *scores = malloc((size_t)c->ctx * 4);
    assert_non_null(scores);
    for (uint32_t j = 0; j < c->m; j++) {
        uint32_t pos = c->pos0 + j, lo = c->window && pos + 1 > c->window ? pos + 1 - c->window : 0;
        op_attention(ref + j * od, q + j * qd, kc, vc, s->n_head, s->n_head_kv, s->head_dim, s->head_dim_v, lo, pos,
                     scale, scores);
    }
    free(scores);
}

static void attn_case_run(const attn_case *c)
{
    const dev_attn_shape *s = &c->s;
    size_t qd = (size_t)s->n_head * s->head_dim, od = (size_t)s->n_head * s->head_dim_v;
    size_t kn = (size_t)c->ctx * s->n_head_kv * s->head_dim, vn = (size_t)c->ctx * s->n_head_kv * s->head_dim_v;
    float scale = 1.0f / sqrtf((float)s->head_dim);
    float *q = fx_rnd_vec(c->m * qd, -2.0f, 2.0f), *kc = fx_rnd_vec(kn, -2.0f, 2.0f), *vc = fx_rnd_vec(vn, -1.0f, 1.0f);
    float *ref = malloc(c->m * od * 4), *got = malloc(c->m * od * 4);
    assert_true(ref && got);
    attn_reference(c, q, kc, vc, scale, ref);
    for (int v = 0; v < fx.n_ops; v++) {
        fx_reset_pools();
        dev_buf bq = fx_upload(q, c->m * qd * 4), bk = fx_upload(kc, kn * 4), bv = fx_upload(vc, vn * 4);
        dev_buf bo = fx_alloc(fx.apool, c->m * od * 4);
        dev_attn_args a = {
            .s = *s, .window = c->window, .scale = scale, .q = &bq, .q_stride = (uint32_t)qd, .k_cache = &bk,
            .v_cache = &bv, .out = &bo, .o_stride = (uint32_t)od,
        };
        dev_buf bpos;
        if (c->posbuf) {
            bpos = fx_upload(&c->posbuf, sizeof c->posbuf);
            a.pos = &bpos;
        }
        dev_op op;
        fx_ok(dev_prepare_attention(fx.ops[v], &a, &op));
        fx_run(&op, c->m, c->pos0 - c->posbuf);
        fx_download(&bo, got, c->m * od * 4);
        char what[128];
        snprintf(what, sizeof what, "attention %ux%u/%u pos %u+%u%s window %u [%s]", s->n_head, s->head_dim,
                 s->n_head_kv, c->pos0, c->m, c->posbuf ? " (buffer)" : "", c->window, dev_ops_describe(fx.ops[v]));
        fx_check(what, got, ref, c->m * od, TOL_ATTN);
    }
    free(q);
    free(kc);
    free(vc);
    free(ref);
    free(got);
}

static void test_attention(void **state)
{
    (void)state;
    fx_need_device();
    const dev_attn_shape gemma = {4, 1, 256, 256}, stories = {8, 4, 8, 8};
    attn_case cases[] = {
        {gemma, 1, 0, 0, 8, 0},      /* first token: one key */
        {gemma, 1, 200, 0, 256, 0},  /* decode over 4 tiles of keys */
        {gemma, 9, 0, 0, 16, 0},     /* prefill from 0 */
        {gemma, 9, 100, 32, 128, 0}, /* prefill inside a sliding window */
        {gemma, 1, 250, 64, 256, 0}, /* decode with the window's lower bound */
        {stories, 1, 37, 0, 64, 0},
        {stories, 17, 0, 0, 32, 0},
        {stories, 5, 60, 0, 70, 0},
        {gemma, 1, 200, 0, 256, 200},  /* decode, position from a buffer */
        {gemma, 1, 250, 64, 256, 249}, /* the same inside a window */
        {stories, 4, 33, 0, 64, 20},
        {{8, 2, 64, 64}, 3, 90, 0, 128, 0}, /* GQA 4:1, head 64 */
        {{2, 2, 160, 160}, 2, 300, 100, 320, 0}, /* head 160: not a multiple of 32 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        attn_case_run(&cases[i]);
    /* positions past the cache are refused */
    fx_reset_pools();
    dev_buf bq = fx_alloc(fx.apool, 1024 * 4), bk = fx_alloc(fx.apool, 8 * 256 * 4), bo = fx_alloc(fx.apool, 1024 * 4);
    dev_attn_args a = {.s = gemma, .scale = 1.0f, .q = &bq, .q_stride = 1024, .k_cache = &bk, .v_cache = &bk,
                       .out = &bo, .o_stride = 1024};
    dev_op op;
    fx_ok(dev_prepare_attention(fx.ops[0], &a, &op));
    VkCommandBuffer cmd;
    fx_ok(dev_cmd_begin(fx.ctx, &cmd));
    assert_int_equal(dev_op_record(cmd, &op, 1, 8), HINGE_ERR_RANGE);
    fx_ok(dev_cmd_submit_wait(fx.ctx));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rope_kv),
        cmocka_unit_test(test_attention),
    };
    int failures = cmocka_run_group_tests_name("vk_attention", tests, fx_setup, fx_teardown);
    return fx_exit_code(failures);
}
