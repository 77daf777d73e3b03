/* Every compute kernel against the CPU reference (model/quant.c, model/ops.c)
 * on random inputs of real shapes: Gemma 3 270M (n_embd 640, q 4 heads x 256,
 * 1 kv head of 256, n_ff 2048) and stories260K (dim 64, 8 heads x 8, 4 kv
 * heads, ff 172, all f32). Each kernel runs in every variant the device can
 * run (matvec rows / split-subgroup / split-shared, reductions subgroup /
 * shared memory).
 *
 * Error measure: sum|got - ref| / sum|ref| over the whole output. Bounds,
 * with u = 2^-24 the f32 unit roundoff (measured on lavapipe in brackets):
 *  - embedding, add: 1e-6 [0]. The device makes the same single roundings
 *    as the CPU (dequantized weights are exact in f32); the bound only
 *    leaves room for a fused multiply-add.
 *  - matrix products, every weight type: 5e-6 [<= 4e-7]. Both sides sum the
 *    same exact products in different orders (the device also takes the
 *    block scale out of each 16-weight sum). Summing n random terms, the
 *    k-th partial sum is ~sqrt(k) terms in size and is rounded by up to u/2;
 *    these errors add up like a random walk to ~0.2 * u * n term sizes,
 *    against a result of ~sqrt(n) term sizes: ~0.2 * u * sqrt(n) relative
 *    per side, ~8e-7 for the difference at n = 2048. The bound leaves ~6x.
 *    With the fused norm, add the norm's error (below); with the deferred
 *    residual (HK_F_RESNORM: the input is norm(x + norm(o) * rw) * nw, and
 *    x + norm(o) * rw is stored: 1e-6 [~1e-7]) two norms' errors.
 *  - rmsnorm: 1e-6 [7e-8]. The CPU sums squares in double, the device in
 *    float (~0.2 * u * sqrt(n) on the scale), then a rounding or two per
 *    element.
 *  - glu: 1e-6 [6e-9]. exp/tanh within a few ulp on both sides.
 * rope_kv and attention are in test_vk_attention.c.
 *
 * Without a Vulkan device every test skips and the program exits 77 (meson:
 * skipped). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "quant.h"
#include "vk_fixture.h"

#define TOL_EXACT 1e-6
#define TOL_MAT 5e-6
#define TOL_F32 1e-6

/* ---- matrix products ---- */

typedef struct mm_case {
    uint32_t type, rows, cols;
    uint32_t flags; /* HK_F_* */
    uint32_t m;     /* positions; 0: decode (matvec) */
    uint32_t parts; /* > 1: bind the matrix in about this many parts */
} mm_case;

/* The CPU reference of one case: y = act(W x') * (W2 x') [+ y0] with
 * x' = rmsnorm(x) * nw for HK_F_NORM, x' = rmsnorm(xe) * nw with
 * xe = x + rmsnorm(o) * rw for HK_F_RESNORM (xe into xe_ref). */
static void mm_reference(const mm_case *c, const void *w, const void *w2, const float *x, const float *nw,
                         const float *o, const float *rw, const float *y0, float *ref, float *xe_ref)
{
    uint32_t m = c->m ? c->m : 1;
    float *xin = malloc((size_t)m * c->cols * sizeof *xin);
    float *r2 = malloc((size_t)m * c->rows * sizeof *r2);
    assert_true(xin && r2);
    memcpy(xe_ref, x, (size_t)m * c->cols * sizeof *xe_ref);
    for (uint32_t j = 0; j < m; j++) {
        float *xe = xe_ref + (size_t)j * c->cols, *xi = xin + (size_t)j * c->cols;
        if (c->flags & HK_F_RESNORM) {
            op_rmsnorm(xi, o + (size_t)j * c->cols, rw, c->cols, 1e-6f);
            op_add(xe, xi, c->cols);
        }
        if (c->flags & (HK_F_NORM | HK_F_RESNORM))
            op_rmsnorm(xi, xe, nw, c->cols, 1e-6f);
        else
            memcpy(xi, xe, c->cols * sizeof *xin);
    }
    fx_ref_matmul(c->type, w, c->cols, xin, m, ref, c->rows);
    if (w2) {
        fx_ref_matmul(c->type, w2, c->cols, xin, m, r2, c->rows);
        if (c->flags & HK_F_SWIGLU)
            op_swiglu(ref, r2, (size_t)m * c->rows);
        else
            op_geglu(ref, r2, (size_t)m * c->rows);
    }
    if (c->flags & HK_F_ACC)
        op_add(ref, y0, (size_t)m * c->rows);
    free(xin);
    free(r2);
}

/* Rows per part near rows / parts that keep parts aligned (as the upload does). */
static void split_parts(dev_weight *dw, uint32_t parts)
{
    size_t align = dev_ctx_features(fx.ctx)->storage_align, a = align, b = dw->row_bytes;
    while (b) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    uint32_t unit = (uint32_t)(align / a), want = dw->rows / parts;
    uint32_t pr = want / unit * unit;
    dw->part_rows = pr ? pr : unit;
}

static void mm_run_case(const mm_case *c)
{
    uint32_t m = c->m ? c->m : 1;
    bool glu = c->flags & (HK_F_SWIGLU | HK_F_GEGLU);
    void *w = fx_rnd_weights(c->type, c->rows, c->cols), *w2 = glu ? fx_rnd_weights(c->type, c->rows, c->cols) : NULL;
    float *x = fx_rnd_vec((size_t)m * c->cols, -1.0f, 1.0f), *nw = fx_rnd_vec(c->cols, 0.5f, 1.5f);
    float *o = fx_rnd_vec((size_t)m * c->cols, -3.0f, 3.0f), *rw = fx_rnd_vec(c->cols, 0.5f, 1.5f);
    float *y0 = fx_rnd_vec((size_t)m * c->rows, -1.0f, 1.0f);
    float *ref = malloc((size_t)m * c->rows * sizeof *ref), *got = malloc((size_t)m * c->rows * sizeof *got);
    float *xe_ref = malloc((size_t)m * c->cols * sizeof *xe_ref), *xe = malloc((size_t)m * c->cols * sizeof *xe);
    assert_true(ref && got && xe_ref && xe);
    mm_reference(c, w, w2, x, nw, o, rw, y0, ref, xe_ref);
    fx_reset_pools();
    weight hw = fx_weight(c->type, c->rows, c->cols, w), hw2 = fx_weight(c->type, c->rows, c->cols, w2);
    dev_weight dw, dw2;
    fx_ok(dev_weight_upload(fx.ctx, fx.wpool, &hw, 1, "w", &dw));
    if (glu)
        fx_ok(dev_weight_upload(fx.ctx, fx.wpool, &hw2, 1, "w2", &dw2));
    if (c->parts > 1) {
        split_parts(&dw, c->parts);
        dw2.part_rows = dw.part_rows;
    }
    dev_buf bx = fx_upload(x, (size_t)m * c->cols * 4), bn = fx_upload(nw, c->cols * 4);
    dev_buf bo = fx_upload(o, (size_t)m * c->cols * 4), brw = fx_upload(rw, c->cols * 4);
    dev_buf bxe = fx_alloc(fx.apool, (size_t)m * c->cols * 4);
    dev_buf by = fx_alloc(fx.apool, (size_t)m * c->rows * 4);
    bool res = c->flags & HK_F_RESNORM;
    dev_mm_args a = {
        .w = &dw, .w2 = glu ? &dw2 : NULL, .x = &bx, .x_stride = c->cols, .y = &by, .y_stride = c->rows,
        .norm = (c->flags & (HK_F_NORM | HK_F_RESNORM)) ? &bn : NULL, .flags = c->flags, .eps = 1e-6f,
        .res_o = res ? &bo : NULL, .res_w = res ? &brw : NULL, .x_out = res ? &bxe : NULL,
    };
    for (int v = 0; v < fx.n_ops; v++) {
        dev_op op;
        fx_ok(c->m ? dev_prepare_matmul(fx.ops[v], &a, &op) : dev_prepare_matvec(fx.ops[v], &a, &op));
        assert_true(op.n_parts >= (c->parts > 1 ? 2u : 1u));
        fx_ok(dev_upload(fx.ctx, &by, 0, y0, (size_t)m * c->rows * 4));
        fx_run(&op, m, 0);
        fx_download(&by, got, (size_t)m * c->rows * 4);
        char what[160];
        snprintf(what, sizeof what, "%s %s %ux%u m=%u flags=0x%x parts=%u [%s]", c->m ? "matmul" : "matvec",
                 quant_name(c->type), c->rows, c->cols, m, c->flags, op.n_parts, dev_ops_describe(fx.ops[v]));
        fx_check(what, got, ref, (size_t)m * c->rows, TOL_MAT);
        if (res) {
            fx_download(&bxe, xe, (size_t)m * c->cols * 4);
            fx_check(what, xe, xe_ref, (size_t)m * c->cols, TOL_F32);
        }
    }
    free(w);
    free(w2);
    free(x);
    free(nw);
    free(o);
    free(rw);
    free(y0);
    free(ref);
    free(got);
    free(xe_ref);
    free(xe);
}

/* Shapes of the two models that the type can hold (K-quants need cols a
 * multiple of 256: in Gemma 3 270M only the 2048- and 1024-wide inputs). */
static void mm_type(uint32_t t, uint32_t m)
{
    static const uint32_t any[][2] = {{1024, 640}, {2048, 640}, {640, 2048}, {256, 64}};
    static const uint32_t kq[][2] = {{640, 2048}, {640, 1024}, {256, 256}};
    static const uint32_t f32[][2] = {{64, 64}, {172, 64}, {64, 172}, {512, 64}};
    bool k = quant_block_elems(t) == QK_K;
    for (size_t i = 0; i < (k ? 3u : 4u); i++) {
        mm_case c = {.type = t, .rows = k ? kq[i][0] : any[i][0], .cols = k ? kq[i][1] : any[i][1], .m = m};
        mm_run_case(&c);
    }
    if (t == QT_F32 || t == QT_F16)
        for (size_t i = 0; i < 4; i++) {
            mm_case c = {.type = t, .rows = f32[i][0], .cols = f32[i][1], .m = m};
            mm_run_case(&c);
        }
    uint32_t rows = k ? 640 : 2048, cols = k ? 1024 : 640;
    mm_case fused[] = {
        {t, rows, cols, HK_F_ACC | HK_F_NORM, m, 1},
        {t, rows, cols, HK_F_SWIGLU, m, 1},
        {t, rows, cols, HK_F_GEGLU | HK_F_NORM, m, 1},
        {t, rows, cols, 0, m, 3},
        {t, rows, cols, HK_F_GEGLU | HK_F_RESNORM, m, 1}, /* gemma3's gate_up in decode */
        {t, 256, cols, HK_F_RESNORM, m, 1},               /* one row per invocation */
        {t, rows, cols, HK_F_ACC | HK_F_NORM, m, 2},      /* the kept input, parts */
    };
    for (size_t i = 0; i < sizeof fused / sizeof fused[0]; i++)
        mm_run_case(&fused[i]);
}

/* The last five are read in sub-layouts of q4_1, q4_k, q6_k and q4_0's
 * kernels: the same kernels, other decoders (prefill: one m, past one
 * position block of every kernel and one tile, for the test's time). */
static const uint32_t all_types[] = {QT_F32,    QT_F16,  QT_Q8_0, QT_Q4_0, QT_Q5_0, QT_Q4_1, QT_Q4_K,
                                     QT_Q6_K,   QT_Q5_1, QT_Q5_K, QT_Q3_K, QT_Q2_K, QT_IQ4_NL};
enum { N_OWN_TYPES = 8 };

static void test_matvec(void **state)
{
    (void)state;
    fx_need_device();
    for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++)
        mm_type(all_types[i], 0);
}

static void test_matmul(void **state)
{
    (void)state;
    fx_need_device();
    static const uint32_t ms[] = {1, 5, 33}; /* 33: past HK_MR_POS */
    for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++)
        for (size_t j = i < N_OWN_TYPES ? 0 : 2; j < 3; j++)
            mm_type(all_types[i], ms[j]);
}

/* Batch invariance: a prefill product over m positions gives each of them
 * bitwise what it gets among more (with dev_ops_config.few, dev_op_record
 * takes pipelines of 1, 2, 4 ... positions per workgroup by m, up to the
 * full count: HK_MM_POS, or HK_MR_POS for the rows variant's matmul_rows.comp,
 * and the edge's batches rely on a row's result not depending on its
 * batch). The fixture's kernel sets have no few-row pipelines (they would
 * double test_matmul's pipeline builds): sets of their own here, the rows
 * variant for every own type and matmul.comp's (a split variant, with a
 * norm: not tiled) for one.
 * Types with a minimum (the dequantize-first prefill arithmetic) with the
 * GLU, the deferred residual and, at one position, several rows per
 * invocation (the split variant's with the kept input), and without flags; the rest share one
 * path whatever the positions: the first case only. */
static void rows_case(dev_ops *o, uint32_t t, uint32_t flags)
{
    enum { M = HK_MR_POS + 1 }; /* (two blocks of the full count in either variant) */
    static const uint32_t ms[] = {1, 2, 3, 4, 5, 8, 9, 16, 17, HK_MR_POS};
    bool k = quant_block_elems(t) == QK_K;
    uint32_t rows = k ? 640 : 2048, cols = k ? 1024 : 640;
    bool glu = flags & (HK_F_SWIGLU | HK_F_GEGLU), res = flags & HK_F_RESNORM;
    void *w = fx_rnd_weights(t, rows, cols), *w2 = fx_rnd_weights(t, rows, cols);
    float *x = fx_rnd_vec((size_t)M * cols, -1.0f, 1.0f), *nw = fx_rnd_vec(cols, 0.5f, 1.5f);
    float *all = malloc((size_t)M * rows * sizeof *all), *got = malloc((size_t)M * rows * sizeof *got);
    assert_true(all && got);
    fx_reset_pools();
    weight hw = fx_weight(t, rows, cols, w), hw2 = fx_weight(t, rows, cols, w2);
    dev_weight dw, dw2;
    fx_ok(dev_weight_upload(fx.ctx, fx.wpool, &hw, 1, "w", &dw));
    fx_ok(dev_weight_upload(fx.ctx, fx.wpool, &hw2, 1, "w2", &dw2));
    dev_buf bx = fx_upload(x, (size_t)M * cols * 4), bn = fx_upload(nw, cols * 4);
    dev_buf bxe = fx_alloc(fx.apool, (size_t)M * cols * 4), by = fx_alloc(fx.apool, (size_t)M * rows * 4);
    dev_mm_args a = {
        .w = &dw, .w2 = glu ? &dw2 : NULL, .x = &bx, .x_stride = cols, .y = &by, .y_stride = rows,
        .norm = res ? &bn : NULL, .flags = flags, .eps = 1e-6f,
        .res_o = res ? &bx : NULL, .res_w = res ? &bn : NULL, .x_out = res ? &bxe : NULL,
    };
    dev_op op;
    fx_ok(dev_prepare_matmul(o, &a, &op));
    assert_non_null(op.few_pipe[0]);
    fx_run(&op, M, 0);
    fx_download(&by, all, (size_t)M * rows * 4);
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        fx_run(&op, ms[i], 0);
        fx_download(&by, got, (size_t)ms[i] * rows * 4);
        if (memcmp(got, all, (size_t)ms[i] * rows * sizeof *got))
            fail_msg("matmul %s %ux%u flags 0x%x [%s]: %u positions differ from the same among %d", quant_name(t),
                     rows, cols, flags, dev_ops_describe(o), ms[i], M);
    }
    free(w);
    free(w2);
    free(x);
    free(nw);
    free(all);
    free(got);
}

static void test_matmul_rows(void **state)
{
    (void)state;
    fx_need_device();
    const dev_mv_variant mv[2] = {DEV_MV_ROWS, DEV_MV_SPLIT_SUBGROUP};
    for (int v = 0; v < 2; v++) {
        dev_ops_config cfg = {.matvec = mv[v], .few = true};
        dev_ops *o;
        if (dev_ops_create(fx.ctx, &cfg, &o) != HINGE_OK) {
            print_message("variant not run on this device: %s\n", dev_ctx_errmsg(fx.ctx));
            continue;
        }
        for (size_t i = 0; i < (v == 0 ? N_OWN_TYPES : 1); i++) {
            uint32_t t = v == 0 ? all_types[i] : QT_Q4_K;
            rows_case(o, t, HK_F_GEGLU | HK_F_RESNORM);
            if (v == 0 && (t == QT_Q5_0 || t == QT_Q4_1 || t == QT_Q4_K || t == QT_Q6_K))
                rows_case(o, t, 0); /* (split variants: tiled, without few-row pipelines) */
        }
        dev_ops_destroy(o);
    }
}

/* ---- embedding ---- */

static void embed_case(uint32_t t, uint32_t rows, uint32_t cols, float scale, uint32_t parts)
{
    enum { M = 7 };
    int32_t tok[M] = {0, (int32_t)rows - 1, 3, (int32_t)(fx_rnd_u32() % rows), (int32_t)(fx_rnd_u32() % rows), 3,
                      (int32_t)rows / 2};
    void *w = fx_rnd_weights(t, rows, cols);
    float *ref = malloc((size_t)M * cols * sizeof *ref), *got = malloc((size_t)M * cols * sizeof *got);
    assert_true(ref && got);
    size_t rb = quant_row_bytes(t, cols);
    for (int j = 0; j < M; j++) {
        quant_dequant_row(t, (const uint8_t *)w + (size_t)tok[j] * rb, ref + (size_t)j * cols, cols);
        op_scale(ref + (size_t)j * cols, scale, cols);
    }
    fx_reset_pools();
    weight hw = fx_weight(t, rows, cols, w);
    dev_weight dw;
    fx_ok(dev_weight_upload(fx.ctx, fx.wpool, &hw, 1, "embedding", &dw));
    if (parts > 1)
        split_parts(&dw, parts);
    dev_buf bt = fx_upload(tok, sizeof tok), bo = fx_alloc(fx.apool, (size_t)M * cols * 4);
    dev_embed_args a = {.w = &dw, .tokens = &bt, .out = &bo, .out_stride = cols, .scale = scale};
    for (int v = 0; v < fx.n_ops; v++) {
        dev_op op;
        fx_ok(dev_prepare_embed(fx.ops[v], &a, &op));
        fx_run(&op, M, 0);
        fx_download(&bo, got, (size_t)M * cols * 4);
        char what[128];
        snprintf(what, sizeof what, "embed %s %ux%u parts=%u [%s]", quant_name(t), rows, cols, op.n_parts,
                 dev_ops_describe(fx.ops[v]));
        fx_check(what, got, ref, (size_t)M * cols, TOL_EXACT);
    }
    free(w);
    free(ref);
    free(got);
}

static void test_embed(void **state)
{
    (void)state;
    fx_need_device();
    for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++) {
        uint32_t t = all_types[i];
        bool k = quant_block_elems(t) == QK_K;
        embed_case(t, 4096, k ? 1024 : 640, sqrtf(640.0f), 1);
        embed_case(t, 4096, k ? 256 : 640, 1.0f, 3);
    }
    embed_case(QT_F32, 512, 64, 1.0f, 1); /* stories260K */
    embed_case(QT_F32, 512, 172, 1.0f, 1);
}

/* ---- norms and element-wise ---- */

static void norm_case(uint32_t n, uint32_t groups, uint32_t m, uint32_t flags, bool shared_w)
{
    size_t len = (size_t)groups * n, tot = len * m, wn = shared_w ? n : len;
    float *x = fx_rnd_vec(tot, -2.0f, 2.0f), *res = fx_rnd_vec(tot, -1.0f, 1.0f);
    float *w = fx_rnd_vec(wn, 0.5f, 1.5f), *w2 = fx_rnd_vec(wn, 0.5f, 1.5f);
    float *ref = malloc(tot * 4), *ref2 = malloc(tot * 4), *got = malloc(tot * 4);
    assert_true(ref && ref2 && got);
    for (size_t r = 0; r < (size_t)groups * m; r++) {
        const float *wr = shared_w ? w : w + (r % groups) * n, *w2r = shared_w ? w2 : w2 + (r % groups) * n;
        op_rmsnorm(ref + r * n, x + r * n, wr, n, 1e-6f);
        if (flags & HK_F_ADD)
            op_add(ref + r * n, res + r * n, n);
        op_rmsnorm(ref2 + r * n, ref + r * n, w2r, n, 1e-6f);
    }
    for (int v = 0; v < fx.n_ops; v++) {
        fx_reset_pools();
        dev_buf bx = fx_upload(x, tot * 4), bw = fx_upload(w, wn * 4), bw2 = fx_upload(w2, wn * 4);
        dev_buf br = fx_upload(res, tot * 4), bo2 = fx_alloc(fx.apool, tot * 4);
        /* ADD writes the sum over the residual (in place, as the layer does);
         * else the norm goes over x in place. */
        dev_buf *out = (flags & HK_F_ADD) ? &br : &bx;
        dev_norm_args a = {
            .n = n, .groups = groups, .x = &bx, .x_stride = (uint32_t)len, .w = &bw,
            .w_stride = shared_w ? 0 : n, .out = out, .o_stride = (uint32_t)len, .res = &br,
            .r_stride = (uint32_t)len, .w2 = &bw2, .out2 = &bo2, .o2_stride = (uint32_t)len, .flags = flags,
            .eps = 1e-6f,
        };
        dev_op op;
        fx_ok(dev_prepare_rmsnorm(fx.ops[v], &a, &op));
        fx_run(&op, m, 0);
        char what[128];
        snprintf(what, sizeof what, "rmsnorm n=%u groups=%u m=%u flags=0x%x [%s]", n, groups, m, flags,
                 dev_ops_describe(fx.ops[v]));
        fx_download(out, got, tot * 4);
        fx_check(what, got, ref, tot, TOL_F32);
        if (flags & HK_F_NORM2) {
            fx_download(&bo2, got, tot * 4);
            fx_check(what, got, ref2, tot, TOL_F32);
        }
    }
    free(x);
    free(res);
    free(w);
    free(w2);
    free(ref);
    free(ref2);
    free(got);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    fx_need_device();
    norm_case(640, 1, 3, 0, true);                        /* gemma input norm */
    norm_case(256, 4, 2, 0, true);                        /* gemma q norm: per head, shared weight */
    norm_case(640, 1, 2, HK_F_ADD | HK_F_NORM2, true);    /* gemma post-norm + next input norm */
    norm_case(64, 1, 5, 0, true);                         /* stories */
    norm_case(8, 8, 3, 0, false);                         /* small heads, weight per group */
    norm_case(2304, 1, 1, HK_F_ADD, true);                /* wider than a workgroup many times */
}

static void eltwise_case(uint32_t per_pos, uint32_t m, uint32_t flags)
{
    size_t n = (size_t)per_pos * m;
    float *g = fx_rnd_vec(n, -12.0f, 12.0f), *u = fx_rnd_vec(n, -2.0f, 2.0f);
    float *ref = malloc(n * 4), *got = malloc(n * 4);
    assert_true(ref && got);
    memcpy(ref, g, n * 4);
    if (flags == HK_F_SWIGLU)
        op_swiglu(ref, u, n);
    else if (flags == HK_F_GEGLU)
        op_geglu(ref, u, n);
    else
        op_add(ref, u, n);
    for (int v = 0; v < fx.n_ops; v++) {
        fx_reset_pools();
        dev_buf bg = fx_upload(g, n * 4), bu = fx_upload(u, n * 4);
        dev_op op;
        fx_ok(flags ? dev_prepare_glu(fx.ops[v], &bg, &bu, per_pos, flags, &op)
                    : dev_prepare_add(fx.ops[v], &bg, &bu, per_pos, &op));
        fx_run(&op, m, 0);
        fx_download(&bg, got, n * 4);
        char what[96];
        snprintf(what, sizeof what, "%s n=%u m=%u [%s]", flags == HK_F_SWIGLU ? "swiglu" : flags ? "geglu" : "add",
                 per_pos, m, dev_ops_describe(fx.ops[v]));
        fx_check(what, got, ref, n, flags ? TOL_F32 : TOL_EXACT);
    }
    free(g);
    free(u);
    free(ref);
    free(got);
}

static void test_glu_add(void **state)
{
    (void)state;
    fx_need_device();
    eltwise_case(2048, 3, HK_F_GEGLU);
    eltwise_case(2048, 3, HK_F_SWIGLU);
    eltwise_case(172, 5, HK_F_SWIGLU);
    eltwise_case(640, 3, 0);
    eltwise_case(64, 1, 0);
}

/* ---- argument and range errors ---- */

static void test_errors(void **state)
{
    (void)state;
    fx_need_device();
    dev_ops *o = fx.ops[0];
    void *w = fx_rnd_weights(QT_Q8_0, 64, 64);
    weight hw = fx_weight(QT_Q8_0, 64, 64, w);
    dev_weight dw;
    fx_ok(dev_weight_upload(fx.ctx, fx.wpool, &hw, 1, "w", &dw));
    dev_buf bx = fx_alloc(fx.apool, 64 * 4 * 4), by = fx_alloc(fx.apool, 64 * 4 * 4);
    dev_mm_args a = {.w = &dw, .x = &bx, .x_off = 2, .x_stride = 64, .y = &by, .y_stride = 64};
    dev_op op;
    assert_int_equal(dev_prepare_matmul(o, &a, &op), HINGE_ERR_INVALID); /* x offset not a multiple of 4 */
    a.x_off = 0;
    fx_ok(dev_prepare_matmul(o, &a, &op));
    assert_int_equal(op.max_m, 4);
    VkCommandBuffer cmd;
    fx_ok(dev_cmd_begin(fx.ctx, &cmd));
    assert_int_equal(dev_op_record(cmd, &op, 5, 0), HINGE_ERR_RANGE); /* more positions than x holds */
    fx_ok(dev_op_record(cmd, &op, 4, 0));
    fx_ok(dev_cmd_submit_wait(fx.ctx));
    a.flags = HK_F_SWIGLU; /* no w2 */
    assert_int_equal(dev_prepare_matvec(o, &a, &op), HINGE_ERR_INVALID);
    hw = fx_weight(QT_Q4_K, 1, 200, w); /* 200 is not a whole number of 256-blocks */
    assert_int_equal(dev_weight_upload(fx.ctx, fx.wpool, &hw, 1, "bad", &dw), HINGE_ERR_UNSUPPORTED);
    /* kernels built for f32 only */
    dev_ops_config cfg = {.types = 1u << QT_F32};
    dev_ops *o32;
    fx_ok(dev_ops_create(fx.ctx, &cfg, &o32));
    hw = fx_weight(QT_Q8_0, 64, 64, w);
    fx_ok(dev_weight_upload(fx.ctx, fx.wpool, &hw, 1, "w", &dw));
    a.flags = 0;
    assert_int_equal(dev_prepare_matvec(o32, &a, &op), HINGE_ERR_UNSUPPORTED);
    assert_non_null(strstr(dev_ctx_errmsg(fx.ctx), "q8_0"));
    dev_ops_destroy(o32);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matvec),  cmocka_unit_test(test_matmul),  cmocka_unit_test(test_matmul_rows),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_rmsnorm), cmocka_unit_test(test_glu_add), cmocka_unit_test(test_errors),
    };
    int failures = cmocka_run_group_tests_name("vk_ops", tests, fx_setup, fx_teardown);
    return fx_exit_code(failures);
}
