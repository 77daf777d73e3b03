/* Timings of the device kernels (a meson benchmark, not a test):
 *   - dispatch overhead: one tiny dispatch per submission (round trip), and
 *     N dispatches in one command buffer with and without barriers;
 *   - q8_0 / q5_0 matvec on 262144 x 640 (a vocabulary-sized matrix) and
 *     2048 x 640 (an FFN matrix) in every matvec variant, in GB/s of ggml
 *     weight bytes, against model/quant.c quant_matvec on one CPU thread;
 *   - q8_0 matmul (prefill) of 64 positions against quant_matmul.
 * Prints one line per measurement. Exits 77 without a Vulkan device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"
#include "vk_context.h"
#include "vk_ops.h"
#include "vk_weights.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int die(dev_ctx *c, const char *what)
{
    fprintf(stderr, "bench_vk_ops: %s: %s\n", what, dev_ctx_errmsg(c));
    return 1;
}

static void *rnd_weights(uint32_t t, size_t rows, size_t cols)
{
    size_t n = rows * quant_row_bytes(t, cols), bb = quant_block_bytes(t);
    uint8_t *w = malloc(n);
    if (!w)
        return NULL;
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = (uint8_t)(s >> 24);
    }
    uint16_t d = quant_f32_to_f16(0.01f);
    for (size_t b = 0; b < n / bb; b++)
        memcpy(w + b * bb, &d, 2); /* d leads q8_0 and q5_0 blocks */
    return w;
}

/* Best of reps of op alone in a submission: wall seconds and device ns. */
static int time_op(dev_ctx *c, const dev_op *op, uint32_t m, int reps, double *wall, double *dev_ns)
{
    *wall = 1e30;
    *dev_ns = 1e30;
    for (int r = 0; r < reps; r++) {
        VkCommandBuffer cmd;
        if (dev_cmd_begin(c, &cmd) != HINGE_OK)
            return -1;
        dev_ts_reset(c, cmd, 2);
        dev_ts_mark(c, cmd, 0);
        dev_op_record(cmd, op, m, 0);
        dev_ts_mark(c, cmd, 1);
        double t0 = now_s();
        if (dev_cmd_submit_wait(c) != HINGE_OK)
            return -1;
        double t = now_s() - t0, ns[2] = {0, 0};
        if (dev_ctx_features(c)->timestamps)
            dev_ts_read(c, 2, ns);
        *wall = t < *wall ? t : *wall;
        *dev_ns = ns[1] < *dev_ns ? ns[1] : *dev_ns;
    }
    return 0;
}

static int bench_overhead(dev_ctx *c, dev_ops *o, dev_pool *ap)
{
    dev_buf a, b;
    if (dev_pool_alloc(ap, 256, 16, "a", &a) || dev_pool_alloc(ap, 256, 16, "b", &b))
        return die(c, "alloc");
    dev_op op;
    if (dev_prepare_add(o, &a, &b, 1, &op) != HINGE_OK)
        return die(c, "prepare add");
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        for (int i = 0; i < 200; i++) {
            VkCommandBuffer cmd;
            dev_cmd_begin(c, &cmd);
            dev_op_record(cmd, &op, 1, 0);
            dev_cmd_submit_wait(c);
        }
        double t = (now_s() - t0) / 200;
        best = t < best ? t : best;
    }
    printf("dispatch round trip (record + submit + wait, 1 tiny dispatch): %.1f us\n", best * 1e6);
    for (int barriers = 0; barriers < 2; barriers++)
        for (int n = 10; n <= 1000; n *= 10) {
            double bt = 1e30;
            for (int r = 0; r < 5; r++) {
                VkCommandBuffer cmd;
                dev_cmd_begin(c, &cmd);
                for (int i = 0; i < n; i++) {
                    dev_op_record(cmd, &op, 1, 0);
                    if (barriers)
                        dev_cmd_barrier(cmd);
                }
                double t0 = now_s();
                dev_cmd_submit_wait(c);
                double t = now_s() - t0;
                bt = t < bt ? t : bt;
            }
            printf("%4d dispatches in one command buffer%s: %.1f us total, %.2f us each\n", n,
                   barriers ? " with barriers" : "", bt * 1e6, bt * 1e6 / n);
        }
    return 0;
}

static double cpu_matvec_s(uint32_t t, const void *w, size_t rows, size_t cols, const float *x, float *y)
{
    double best = 1e30;
    int reps = rows > 100000 ? 5 : 200;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        quant_matvec(t, w, cols, x, y, 0, rows);
        double s = now_s() - t0;
        best = s < best ? s : best;
    }
    return best;
}

/* matvec of rows x cols of type t in each variant in ops[0 .. n). */
static int bench_matvec(dev_ctx *c, dev_ops **ops, int n, dev_pool *wp, dev_pool *ap, uint32_t t, uint32_t rows,
                        uint32_t cols)
{
    void *w = rnd_weights(t, rows, cols);
    float *x = malloc(cols * sizeof *x), *y = malloc(rows * sizeof *y);
    if (!w || !x || !y)
        return 1;
    for (uint32_t i = 0; i < cols; i++)
        x[i] = (float)(i % 7) * 0.1f - 0.3f;
    double bytes = (double)rows * quant_row_bytes(t, cols);
    double cpu = cpu_matvec_s(t, w, rows, cols, x, y);
    printf("%s %ux%u: cpu quant_matvec (1 thread, %s) %.3f ms = %.2f GB/s\n", quant_name(t), rows, cols,
           quant_isa(), cpu * 1e3, bytes / cpu / 1e9);
    dev_pool_reset(wp);
    dev_pool_reset(ap);
    weight hw = {.data = w, .type = t, .rows = rows, .cols = cols, .name = "bench"};
    dev_weight dw;
    dev_buf bx, by;
    if (dev_weight_upload(c, wp, &hw, 1, "bench", &dw) || dev_pool_alloc(ap, cols * 4, 16, "x", &bx) ||
        dev_pool_alloc(ap, (size_t)rows * 4, 16, "y", &by) || dev_upload(c, &bx, 0, x, cols * 4))
        return die(c, "upload");
    for (int v = 0; v < n; v++) {
        dev_mm_args a = {.w = &dw, .x = &bx, .x_stride = cols, .y = &by, .y_stride = rows};
        dev_op op;
        double wall, dns;
        if (dev_prepare_matvec(ops[v], &a, &op) != HINGE_OK || time_op(c, &op, 1, rows > 100000 ? 5 : 50, &wall, &dns))
            return die(c, "matvec");
        printf("%s %ux%u: vulkan matvec [%s] %u part(s): wall %.3f ms = %.2f GB/s, device %.3f ms = %.2f GB/s\n",
               quant_name(t), rows, cols, dev_ops_describe(ops[v]), op.n_parts, wall * 1e3, bytes / wall / 1e9,
               dns * 1e-6, bytes / dns);
    }
    free(w);
    free(x);
    free(y);
    return 0;
}

static int bench_matmul(dev_ctx *c, dev_ops *o, dev_pool *wp, dev_pool *ap, uint32_t t, uint32_t rows, uint32_t cols,
                        uint32_t m)
{
    void *w = rnd_weights(t, rows, cols);
    float *x = malloc((size_t)m * cols * 4), *y = malloc((size_t)m * rows * 4);
    float *scratch = malloc((size_t)QUANT_MM_ROWS * cols * 4);
    if (!w || !x || !y || !scratch)
        return 1;
    for (size_t i = 0; i < (size_t)m * cols; i++)
        x[i] = (float)(i % 11) * 0.05f - 0.25f;
    double best = 1e30;
    for (int r = 0; r < 10; r++) {
        double t0 = now_s();
        quant_matmul(t, w, cols, x, m, y, rows, 0, rows, scratch);
        double s = now_s() - t0;
        best = s < best ? s : best;
    }
    double flop = 2.0 * rows * cols * m;
    printf("%s %ux%u x %u positions: cpu quant_matmul (1 thread) %.3f ms = %.2f GFLOP/s\n", quant_name(t), rows, cols,
           m, best * 1e3, flop / best / 1e9);
    dev_pool_reset(wp);
    dev_pool_reset(ap);
    weight hw = {.data = w, .type = t, .rows = rows, .cols = cols, .name = "bench"};
    dev_weight dw;
    dev_buf bx, by;
    if (dev_weight_upload(c, wp, &hw, 1, "bench", &dw) || dev_pool_alloc(ap, (size_t)m * cols * 4, 16, "x", &bx) ||
        dev_pool_alloc(ap, (size_t)m * rows * 4, 16, "y", &by) || dev_upload(c, &bx, 0, x, (size_t)m * cols * 4))
        return die(c, "upload");
    dev_mm_args a = {.w = &dw, .x = &bx, .x_stride = cols, .y = &by, .y_stride = rows};
    dev_op op;
    double wall, dns;
    if (dev_prepare_matmul(o, &a, &op) != HINGE_OK || time_op(c, &op, m, 5, &wall, &dns))
        return die(c, "matmul");
    printf("%s %ux%u x %u positions: vulkan matmul: wall %.3f ms = %.2f GFLOP/s, device %.3f ms\n", quant_name(t),
           rows, cols, m, wall * 1e3, flop / wall / 1e9, dns * 1e-6);
    free(w);
    free(x);
    free(y);
    free(scratch);
    return 0;
}

int main(void)
{
    char err[HINGE_ERRMSG_MAX];
    dev_ctx *c;
    hinge_status s = dev_ctx_create(NULL, &c, err, sizeof err);
    if (s == HINGE_ERR_UNSUPPORTED) {
        fprintf(stderr, "bench_vk_ops: skipped: %s\n", err);
        return 77;
    }
    if (s != HINGE_OK) {
        fprintf(stderr, "bench_vk_ops: %s\n", err);
        return 1;
    }
    const dev_features *f = dev_ctx_features(c);
    printf("device: %s (subgroup %u)\n", f->name, f->subgroup_size);
    dev_pool *wp = NULL, *ap = NULL;
    dev_ops *ops[3];
    int n = 0;
    if (dev_pool_create(c, DEV_MEM_DEVICE, 200u << 20, "bench weights", &wp) ||
        dev_pool_create(c, DEV_MEM_DEVICE, 16u << 20, "bench activations", &ap))
        return die(c, "pools");
    const dev_mv_variant vs[3] = {DEV_MV_ROWS, DEV_MV_SPLIT_SUBGROUP, DEV_MV_SPLIT_SHARED};
    for (int i = 0; i < 3; i++) {
        dev_ops_config cfg = {.types = (1u << QT_Q8_0) | (1u << QT_Q5_0), .matvec = vs[i]};
        if (dev_ops_create(c, &cfg, &ops[n]) == HINGE_OK)
            n++;
    }
    int rc = n ? bench_overhead(c, ops[0], ap) : die(c, "ops");
    const uint32_t types[2] = {QT_Q8_0, QT_Q5_0}, rows[2] = {2048, 262144};
    for (int t = 0; t < 2 && rc == 0; t++)
        for (int r = 0; r < 2 && rc == 0; r++)
            rc = bench_matvec(c, ops, n, wp, ap, types[t], rows[r], 640);
    if (rc == 0)
        rc = bench_matmul(c, ops[0], wp, ap, QT_Q8_0, 2048, 640, 64);
    for (int i = 0; i < n; i++)
        dev_ops_destroy(ops[i]);
    dev_pool_destroy(wp);
    dev_pool_destroy(ap);
    dev_ctx_destroy(c);
    return rc;
}
