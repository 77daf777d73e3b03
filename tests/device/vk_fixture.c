/* See vk_fixture.h. */
#include "vk_fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

fixture fx;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

enum { WPOOL_BYTES = 96 << 20, APOOL_BYTES = 64 << 20 };

static void add_variant(dev_mv_variant mv, int subgroup)
{
    dev_ops_config cfg = {.matvec = mv, .subgroup = subgroup};
    dev_ops *o;
    if (dev_ops_create(fx.ctx, &cfg, &o) == HINGE_OK)
        fx.ops[fx.n_ops++] = o;
    else
        print_message("variant not run on this device: %s\n", dev_ctx_errmsg(fx.ctx));
}

/* Warnings and errors (validation messages with HINGE_VK_VALIDATE=1) to stderr. */
static const hinge_logger logger = {.fn = hinge_log_stderr, .level = HINGE_LOG_WARN};

int fx_setup(void **state)
{
    (void)state;
    dev_ctx_config cfg = {.log = &logger};
    hinge_status s = dev_ctx_create(&cfg, &fx.ctx, fx.why, sizeof fx.why);
    if (s == HINGE_ERR_UNSUPPORTED) {
        fx.ctx = NULL;
        return 0;
    }
    if (s != HINGE_OK) {
        print_error("dev_ctx_create: %s: %s\n", hinge_strerror(s), fx.why);
        return -1;
    }
    const dev_features *f = dev_ctx_features(fx.ctx);
    print_message("device: %s, subgroup %u (ops 0x%x), fp16 %d, int8 %d, 16-bit storage %d, storage range %llu\n",
                  f->name, f->subgroup_size, f->subgroup_ops, f->float16, f->int8, f->storage16,
                  (unsigned long long)f->max_storage_range);
    if (dev_pool_create(fx.ctx, DEV_MEM_DEVICE, WPOOL_BYTES, "test weights", &fx.wpool) != HINGE_OK ||
        dev_pool_create(fx.ctx, DEV_MEM_DEVICE, APOOL_BYTES, "test activations", &fx.apool) != HINGE_OK) {
        print_error("pools: %s\n", dev_ctx_errmsg(fx.ctx));
        return -1;
    }
    add_variant(DEV_MV_ROWS, 1);
    add_variant(DEV_MV_SPLIT_SUBGROUP, 1);
    add_variant(DEV_MV_SPLIT_SHARED, -1);
    return fx.n_ops > 0 ? 0 : -1;
}

int fx_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < fx.n_ops; i++)
        dev_ops_destroy(fx.ops[i]);
    dev_pool_destroy(fx.wpool);
    dev_pool_destroy(fx.apool);
    dev_ctx_destroy(fx.ctx);
    return 0;
}

int fx_exit_code(int failures)
{
    if (failures == 0 && fx.why[0] && !fx.ctx) {
        fprintf(stderr, "no Vulkan device: %s\n", fx.why);
        return 77;
    }
    return failures;
}

void fx_need_device(void)
{
    if (!fx.ctx) {
        print_message("skipped: %s\n", fx.why);
        skip();
    }
    fx_reset_pools();
}

void fx_ok(hinge_status s)
{
    if (s != HINGE_OK) {
        print_error("%s: %s\n", hinge_strerror(s), dev_ctx_errmsg(fx.ctx));
        fail();
    }
}

void fx_reset_pools(void)
{
    dev_pool_reset(fx.wpool);
    dev_pool_reset(fx.apool);
}

uint32_t fx_rnd_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

float fx_rnd_f(float lo, float hi) { return lo + (hi - lo) * (float)(fx_rnd_u32() & 0xFFFFFF) / 16777216.0f; }

float *fx_rnd_vec(size_t n, float lo, float hi)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = fx_rnd_f(lo, hi);
    return v;
}

/* Overwrites the scale fields of block p of type t with sane values. */
static void fix_block(uint32_t t, uint8_t *p)
{
    uint16_t d = quant_f32_to_f16(fx_rnd_f(-0.02f, 0.02f));
    uint16_t dk = quant_f32_to_f16(fx_rnd_f(0.0f, 0.002f)), mk = quant_f32_to_f16(fx_rnd_f(0.0f, 0.01f));
    switch (t) {
    case QT_F32: {
        float f = fx_rnd_f(-1.0f, 1.0f);
        memcpy(p, &f, 4);
        break;
    }
    case QT_F16: {
        uint16_t v = quant_f32_to_f16(fx_rnd_f(-1.0f, 1.0f));
        memcpy(p, &v, 2);
        break;
    }
    case QT_Q8_0:
    case QT_Q4_0:
    case QT_Q5_0:
    case QT_IQ4_NL:
        memcpy(p, &d, 2);
        break;
    case QT_Q4_1:
    case QT_Q5_1: { /* d, then the minimum m */
        uint16_t m = quant_f32_to_f16(fx_rnd_f(-0.2f, 0.2f));
        memcpy(p, &d, 2);
        memcpy(p + 2, &m, 2);
        break;
    }
    case QT_Q4_K:
    case QT_Q5_K:
        memcpy(p, &dk, 2);
        memcpy(p + 2, &mk, 2);
        break;
    case QT_Q6_K:
        memcpy(p + offsetof(block_q6_k, d), &d, 2);
        break;
    case QT_Q3_K:
        memcpy(p + offsetof(block_q3_k, d), &dk, 2);
        break;
    case QT_Q2_K:
        memcpy(p + offsetof(block_q2_k, d), &dk, 2);
        memcpy(p + offsetof(block_q2_k, dmin), &mk, 2);
        break;
    default:
        fail();
    }
}

void *fx_rnd_weights(uint32_t t, size_t rows, size_t cols)
{
    size_t n = rows * quant_row_bytes(t, cols), bb = quant_block_bytes(t);
    uint8_t *w = malloc(n);
    assert_non_null(w);
    for (size_t i = 0; i < n; i++)
        w[i] = (uint8_t)fx_rnd_u32();
    for (size_t b = 0; b < n / bb; b++)
        fix_block(t, w + b * bb);
    return w;
}

weight fx_weight(uint32_t t, size_t rows, size_t cols, const void *data)
{
    return (weight){.data = data, .type = t, .rows = rows, .cols = cols, .name = "test weight"};
}

double fx_nerr(const float *got, const float *ref, size_t n)
{
    double e = 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            return INFINITY;
        e += fabs((double)got[i] - ref[i]);
        s += fabs((double)ref[i]);
    }
    return s > 0.0 ? e / s : e;
}

void fx_ref_matmul(uint32_t t, const void *w, size_t n, const float *x, size_t m, float *y, size_t rows)
{
    float *row = malloc(n * sizeof *row);
    assert_non_null(row);
    size_t rb = quant_row_bytes(t, n);
    for (size_t r = 0; r < rows; r++) {
        quant_dequant_row((qtype)t, (const uint8_t *)w + r * rb, row, n);
        for (size_t j = 0; j < m; j++) {
            double acc = 0.0;
            for (size_t k = 0; k < n; k++)
                acc += (double)row[k] * x[j * n + k];
            y[j * rows + r] = (float)acc;
        }
    }
    free(row);
}

void fx_check(const char *what, const float *got, const float *ref, size_t n, double tol)
{
    double e = fx_nerr(got, ref, n);
    const char *v = getenv("HINGE_TEST_VERBOSE");
    if (v && strcmp(v, "1") == 0)
        print_message("  %-56s err %.2e (bound %.0e)\n", what, e, tol);
    if (!(e <= tol)) {
        print_error("%s: normalized error %.3g > %.3g (got[0] %g, ref[0] %g)\n", what, e, tol, got[0], ref[0]);
        fail();
    }
}

dev_buf fx_alloc(dev_pool *p, size_t bytes)
{
    dev_buf b;
    fx_ok(dev_pool_alloc(p, bytes, 16, "test buffer", &b));
    return b;
}

dev_buf fx_upload(const void *v, size_t bytes)
{
    dev_buf b = fx_alloc(fx.apool, bytes);
    fx_ok(dev_upload(fx.ctx, &b, 0, v, bytes));
    return b;
}

void fx_download(const dev_buf *b, void *v, size_t bytes) { fx_ok(dev_download(fx.ctx, b, 0, v, bytes)); }

void fx_run(const dev_op *op, uint32_t m, uint32_t pos0)
{
    VkCommandBuffer cmd;
    fx_ok(dev_cmd_begin(fx.ctx, &cmd));
    hinge_status s = dev_op_record(cmd, op, m, pos0);
    dev_cmd_barrier(cmd);
    fx_ok(dev_cmd_submit_wait(fx.ctx));
    assert_int_equal(s, HINGE_OK);
}
