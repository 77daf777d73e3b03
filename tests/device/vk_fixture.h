/* Shared set-up of the device tests: a context, two pools, the kernel sets
 * of every variant the device runs, random data and error measures. */
#ifndef HINGE_TEST_VK_FIXTURE_H
#define HINGE_TEST_VK_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "model.h"
#include "vk_context.h"
#include "vk_ops.h"
#include "vk_weights.h"

enum { FX_MAX_VARIANTS = 4 };

typedef struct fixture {
    dev_ctx *ctx;                      /* NULL: no device, every test skips */
    dev_pool *wpool, *apool;           /* weights, activations */
    dev_ops *ops[FX_MAX_VARIANTS];     /* every matvec / reduction variant */
    int n_ops;
    char why[HINGE_ERRMSG_MAX];        /* why there is no device */
} fixture;

extern fixture fx;

/* Group set-up/tear-down for cmocka; a missing device is not an error. */
int fx_setup(void **state);
int fx_teardown(void **state);
/* Exit code for main: 77 (skipped) when there was no device. */
int fx_exit_code(int failures);

/* In a test: skip it (with the reason) when there is no device. */
void fx_need_device(void);
/* Fails the test with the context's message unless s is HINGE_OK. */
void fx_ok(hinge_status s);
/* Frees every piece of both pools (at the start of each test). */
void fx_reset_pools(void);

uint32_t fx_rnd_u32(void);
float fx_rnd_f(float lo, float hi);
float *fx_rnd_vec(size_t n, float lo, float hi); /* malloc'd */
/* rows x cols random weights of type t in ggml's layout, with sane scales (malloc'd). */
void *fx_rnd_weights(uint32_t t, size_t rows, size_t cols);
weight fx_weight(uint32_t t, size_t rows, size_t cols, const void *data);

/* sum|got - ref| / sum|ref| (inf if got has a non-finite value). */
/* The kernels' reference: y[j * rows + r] = dequantized row r of w (type t,
 * n columns) . x row j, summed in double. Not quant_matmul: the CPU's
 * default kernel set may round the activations (int16 sets), the shaders
 * never do. */
void fx_ref_matmul(uint32_t t, const void *w, size_t n, const float *x, size_t m, float *y, size_t rows);
double fx_nerr(const float *got, const float *ref, size_t n);
/* Fails unless fx_nerr <= tol; prints the error with HINGE_TEST_VERBOSE=1. */
void fx_check(const char *what, const float *got, const float *ref, size_t n, double tol);

dev_buf fx_alloc(dev_pool *p, size_t bytes);
dev_buf fx_upload(const void *v, size_t bytes);  /* into the activation pool */
void fx_download(const dev_buf *b, void *v, size_t bytes);
/* Records op for (m, pos0) in a command buffer of its own and waits. */
void fx_run(const dev_op *op, uint32_t m, uint32_t pos0);

#endif
