/* qkv_rope.comp (the fused decode step's attention input) against the CPU:
 * model/forward.c's attention_block for one position, op by op:
 *   xe  = x                                  (HK_F_NORM)
 *       = x + op_rmsnorm(o) * rw              (HK_F_RESNORM: gemma3's deferred residual; also stored)
 *   xb  = op_rmsnorm(xe) * attn_norm
 *   q | k | v = fx_ref_matmul of wq | wk | wv (rows from `split` on in a second type)
 *   q, k: op_rmsnorm per head (gemma3), op_rope; k, v into the caches' row pos
 * on Gemma 3 270M's shapes (4 q heads x 256 over 1 kv head, neox, q/k norms,
 * q|k q5_0 with v q8_0, and single types), stories260K's (8 heads x 8 over
 * 4 kv heads, interleaved, f32), GQA heads of 64 and 128 (q4_k with v q6_k,
 * f16), SmolLM2's (9 heads x 64 over 3, q4_1), partial RoPE, in
 * every variant the device runs.
 *
 * Error measure sum|got - ref| / sum|ref| (u = 2^-24; measured on lavapipe
 * in brackets): q, k, v: 5e-6 [<= 5e-7]. The products' error (see
 * test_vk_ops.c, ~0.2 * u * sqrt(n) per side), the input norm's and the
 * head norm's (sums of squares in float against the CPU's double, a few
 * ulp each), and RoPE's (the angles are the CPU's, cos/sin within a few
 * ulp: test_vk_attention.c). The stored residual: 1e-6 [~1e-7].
 * Without a Vulkan device the program exits 77 (skipped). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "quant.h"
#include "vk_fixture.h"

#define TOL_QKV 5e-6
#define TOL_RES 1e-6

typedef struct qkv_case {
    const char *name;
    dev_attn_shape s;     /* head_dim_v = head_dim */
    uint32_t d;           /* n_embd */
    uint32_t type, type2; /* wq | wk ..., then the rows from split on (type2 = type: one matrix) */
    uint32_t split;       /* first row of the second type */
    uint32_t rope_dim;
    bool neox, qk_norm, resnorm;
    float base, pos_scale;
    uint32_t pos, ctx;
} qkv_case;

typedef struct qkv_data {
    void *w, *w2;                /* ggml rows [0, split), [split, rows) */
    float *x, *o, *rw, *nw, *qn, *kn;
    float *q, *k, *v, *xe;       /* the reference */
} qkv_data;

static uint32_t rows_of(const qkv_case *c) { return (c->s.n_head + 2 * c->s.n_head_kv) * c->s.head_dim; }

static void reference(const qkv_case *c, qkv_data *t)
{
    const dev_attn_shape *s = &c->s;
    uint32_t rows = rows_of(c), hd = s->head_dim;
    float *xb = malloc(c->d * sizeof *xb), *y = malloc(rows * sizeof *y);
    assert_true(xb && y);
    memcpy(t->xe, t->x, c->d * sizeof *xb);
    if (c->resnorm) {
        op_rmsnorm(xb, t->o, t->rw, c->d, 1e-6f);
        op_add(t->xe, xb, c->d);
    }
    op_rmsnorm(xb, t->xe, t->nw, c->d, 1e-6f);
    fx_ref_matmul(c->type, t->w, c->d, xb, 1, y, c->split);
    if (c->split < rows)
        fx_ref_matmul(c->type2, t->w2, c->d, xb, 1, y + c->split, rows - c->split);
    uint32_t qd = s->n_head * hd, kd = s->n_head_kv * hd;
    memcpy(t->q, y, qd * 4);
    memcpy(t->k, y + qd, kd * 4);
    memcpy(t->v, y + qd + kd, kd * 4);
    if (c->qk_norm) {
        for (uint32_t h = 0; h < s->n_head; h++)
            op_rmsnorm(t->q + h * hd, t->q + h * hd, t->qn, hd, 1e-6f);
        for (uint32_t h = 0; h < s->n_head_kv; h++)
            op_rmsnorm(t->k + h * hd, t->k + h * hd, t->kn, hd, 1e-6f);
    }
    op_rope(t->q, s->n_head, hd, c->rope_dim, c->neox, c->pos, c->base, c->pos_scale);
    op_rope(t->k, s->n_head_kv, hd, c->rope_dim, c->neox, c->pos, c->base, c->pos_scale);
    free(xb);
    free(y);
}

static void data_init(const qkv_case *c, qkv_data *t)
{
    uint32_t rows = rows_of(c), hd = c->s.head_dim, kd = c->s.n_head_kv * hd;
    t->w = fx_rnd_weights(c->type, c->split, c->d);
    t->w2 = c->split < rows ? fx_rnd_weights(c->type2, rows - c->split, c->d) : NULL;
    t->x = fx_rnd_vec(c->d, -1.0f, 1.0f);
    t->o = fx_rnd_vec(c->d, -3.0f, 3.0f);
    t->rw = fx_rnd_vec(c->d, 0.5f, 1.5f);
    t->nw = fx_rnd_vec(c->d, 0.5f, 1.5f);
    t->qn = fx_rnd_vec(hd, 0.5f, 1.5f);
    t->kn = fx_rnd_vec(hd, 0.5f, 1.5f);
    t->q = malloc(c->s.n_head * hd * 4);
    t->k = malloc(kd * 4);
    t->v = malloc(kd * 4);
    t->xe = malloc(c->d * 4);
    assert_true(t->q && t->k && t->v && t->xe);
    reference(c, t);
}

static void data_free(qkv_data *t)
{
    void *p[] = {t->w, t->w2, t->x, t->o, t->rw, t->nw, t->qn, t->kn, t->q, t->k, t->v, t->xe};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
}

/* The device's q, k row, v row (and x_out) against the reference. */
static void check(const qkv_case *c, const qkv_data *t, dev_ops *o, const dev_buf *bq, const dev_buf *kc,
                  const dev_buf *vc, const dev_buf *bxe)
{
    uint32_t hd = c->s.head_dim, qd = c->s.n_head * hd, kd = c->s.n_head_kv * hd;
    float *q = malloc(qd * 4), *kv = malloc((size_t)c->ctx * kd * 4), *xe = malloc(c->d * 4);
    assert_true(q && kv && xe);
    char what[160];
    snprintf(what, sizeof what, "qkv_rope %s pos %u%s [%s]", c->name, c->pos, c->resnorm ? " resnorm" : "",
             dev_ops_describe(o));
    fx_download(bq, q, qd * 4);
    fx_check(what, q, t->q, qd, TOL_QKV);
    fx_download(kc, kv, (size_t)c->ctx * kd * 4);
    fx_check(what, kv + (size_t)c->pos * kd, t->k, kd, TOL_QKV);
    fx_download(vc, kv, (size_t)c->ctx * kd * 4);
    fx_check(what, kv + (size_t)c->pos * kd, t->v, kd, TOL_QKV);
    if (c->resnorm) {
        fx_download(bxe, xe, c->d * 4);
        fx_check(what, xe, t->xe, c->d, TOL_RES);
    }
    free(q);
    free(kv);
    free(xe);
}

static void run_case(const qkv_case *c)
{
    qkv_data t = {0};
    data_init(c, &t);
    uint32_t rows = rows_of(c), hd = c->s.head_dim, kd = c->s.n_head_kv * hd;
    float *freq = malloc(c->rope_dim / 2 * 4);
    assert_non_null(freq);
    dev_rope_freqs(c->base, c->rope_dim, freq);
    for (int v = 0; v < fx.n_ops; v++) {
        fx_reset_pools();
        weight hw = fx_weight(c->type, c->split, c->d, t.w), hw2 = fx_weight(c->type2, rows - c->split, c->d, t.w2);
        dev_weight dw, dw2;
        fx_ok(dev_weight_upload(fx.ctx, fx.wpool, &hw, 1, "w", &dw));
        if (t.w2)
            fx_ok(dev_weight_upload(fx.ctx, fx.wpool, &hw2, 1, "w2", &dw2));
        dev_buf bx = fx_upload(t.x, c->d * 4), bo = fx_upload(t.o, c->d * 4), brw = fx_upload(t.rw, c->d * 4);
        dev_buf bnw = fx_upload(t.nw, c->d * 4), bqn = fx_upload(t.qn, hd * 4), bkn = fx_upload(t.kn, hd * 4);
        dev_buf bf = fx_upload(freq, c->rope_dim / 2 * 4), bpos = fx_upload(&c->pos, 4);
        dev_buf bq = fx_alloc(fx.apool, c->s.n_head * hd * 4), bxe = fx_alloc(fx.apool, c->d * 4);
        dev_buf kc = fx_alloc(fx.apool, (size_t)c->ctx * kd * 4), vc = fx_alloc(fx.apool, (size_t)c->ctx * kd * 4);
        dev_qkv_args a = {
            .s = c->s, .w = &dw, .w2 = t.w2 ? &dw2 : NULL, .x = &bx, .norm = &bnw,
            .res_o = c->resnorm ? &bo : NULL, .res_w = c->resnorm ? &brw : NULL, .x_out = c->resnorm ? &bxe : NULL,
            .q_out = &bq, .k_cache = &kc, .v_cache = &vc, .q_norm = c->qk_norm ? &bqn : NULL,
            .k_norm = c->qk_norm ? &bkn : NULL, .freq = &bf, .rope_dim = c->rope_dim, .neox = c->neox,
            .pos_scale = c->pos_scale, .pos = &bpos, .eps = 1e-6f,
        };
        dev_op op;
        hinge_status s = dev_prepare_qkv_rope(fx.ops[v], &a, c->resnorm ? HK_F_RESNORM : HK_F_NORM, &op);
        if (s == HINGE_ERR_UNSUPPORTED && dev_ops_matvec_variant(fx.ops[v]) == DEV_MV_ROWS &&
            !dev_ops_variant(fx.ops[v])->rows_sg) {
            print_message("  %s: %s\n", c->name, dev_ctx_errmsg(fx.ctx)); /* (no fused kernel there: unfused ops) */
            continue;
        }
        fx_ok(s);
        assert_int_equal(op.n_parts, 1);
        fx_run(&op, 1, 0);
        check(c, &t, fx.ops[v], &bq, &kc, &vc, &bxe);
    }
    free(freq);
    data_free(&t);
}

static void test_qkv_rope(void **state)
{
    (void)state;
    fx_need_device();
    const dev_attn_shape gemma = {4, 1, 256, 256}, stories = {8, 4, 8, 8};
    const dev_attn_shape gqa64 = {8, 2, 64, 64}, h128 = {4, 2, 128, 128}, smol = {9, 3, 64, 64};
    qkv_case cases[] = {
        {"gemma q5_0+q8_0", gemma, 640, QT_Q5_0, QT_Q8_0, 1280, 256, true, true, false, 1e6f, 1.0f, 7, 16},
        {"gemma q5_0+q8_0", gemma, 640, QT_Q5_0, QT_Q8_0, 1280, 256, true, true, true, 1e4f, 1.0f, 3000, 3008},
        {"gemma q5_0", gemma, 640, QT_Q5_0, QT_Q5_0, 1536, 256, true, true, true, 1e6f, 8.0f, 77, 80},
        {"stories f32", stories, 64, QT_F32, QT_F32, 128, 8, false, false, false, 1e4f, 1.0f, 0, 4},
        {"stories f32", stories, 64, QT_F32, QT_F32, 128, 8, false, false, false, 1e4f, 1.0f, 250, 256},
        {"gqa64 q4_k+q6_k", gqa64, 256, QT_Q4_K, QT_Q6_K, 640, 64, true, false, false, 1e4f, 1.0f, 33, 40},
        {"gqa64 q8_0 partial rope", gqa64, 256, QT_Q8_0, QT_Q8_0, 768, 32, false, true, true, 1e4f, 1.0f, 5, 8},
        {"h128 f16", h128, 192, QT_F16, QT_F16, 1024, 128, true, true, true, 1e4f, 1.0f, 12, 16},
        {"h128 q4_0+q8_0", h128, 256, QT_Q4_0, QT_Q8_0, 768, 128, false, false, false, 1e4f, 1.0f, 1, 2},
        {"smollm2 q4_1", smol, 576, QT_Q4_1, QT_Q4_1, 960, 64, false, false, false, 1e5f, 1.0f, 21, 24},
        /* the sub-layouts (kernel_abi.h): alone, with their kernels' own
         * type as V, and q3_k with q2_k (one kernel, two sub-layouts) */
        {"smollm2 q5_1", smol, 576, QT_Q5_1, QT_Q5_1, 960, 64, false, false, false, 1e5f, 1.0f, 5, 8},
        {"h128 iq4_nl+q8_0", h128, 256, QT_IQ4_NL, QT_Q8_0, 768, 128, false, false, false, 1e4f, 1.0f, 1, 2},
        {"gqa64 q5_k+q6_k", gqa64, 256, QT_Q5_K, QT_Q6_K, 640, 64, true, false, false, 1e4f, 1.0f, 33, 40},
        {"gqa64 q4_k+q5_k", gqa64, 256, QT_Q4_K, QT_Q5_K, 640, 64, true, false, true, 1e4f, 1.0f, 3, 8},
        {"gqa64 q2_k+q3_k", gqa64, 256, QT_Q2_K, QT_Q3_K, 640, 64, true, true, false, 1e4f, 1.0f, 9, 16},
        {"gqa64 q3_k", gqa64, 256, QT_Q3_K, QT_Q3_K, 768, 64, false, false, false, 1e4f, 1.0f, 2, 4},
        {"stories f32, rows with a tail", stories, 72, QT_F32, QT_F32, 128, 8, true, true, true, 1e4f, 1.0f, 9, 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
}

/* What has no fused kernel is UNSUPPORTED (the executor then runs the ops
 * one by one), with nothing prepared. */
static void test_unfusable(void **state)
{
    (void)state;
    fx_need_device();
    void *w = fx_rnd_weights(QT_Q8_0, 640, 256);
    weight hw = fx_weight(QT_Q8_0, 640, 256, w);
    dev_weight dw;
    fx_ok(dev_weight_upload(fx.ctx, fx.wpool, &hw, 1, "w", &dw));
    dev_buf b = fx_alloc(fx.apool, 64 * 1024 * 4);
    dev_qkv_args a = {
        .s = {8, 2, 64, 32}, .w = &dw, .x = &b, .norm = &b, .q_out = &b, .k_cache = &b, .v_cache = &b,
        .freq = &b, .rope_dim = 64, .pos = &b, .eps = 1e-6f,
    };
    dev_op op;
    assert_int_equal(dev_prepare_qkv_rope(fx.ops[0], &a, HK_F_NORM, &op), HINGE_ERR_UNSUPPORTED);
    assert_non_null(strstr(dev_ctx_errmsg(fx.ctx), "head_dim_v"));
    a.s.head_dim_v = 64;
    a.w2 = &dw; /* a second type starting inside a workgroup's heads (640 + 640 rows: not q | k | v) */
    assert_int_equal(dev_prepare_qkv_rope(fx.ops[0], &a, HK_F_NORM, &op), HINGE_ERR_UNSUPPORTED);
    a.w2 = NULL;
    assert_int_equal(dev_prepare_qkv_rope(fx.ops[0], &a, HK_F_ACC, &op), HINGE_ERR_INVALID);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qkv_rope),
        cmocka_unit_test(test_unfusable),
    };
    int failures = cmocka_run_group_tests_name("vk_qkv_rope", tests, fx_setup, fx_teardown);
    return fx_exit_code(failures);
}
