/* Paged KV caches (kv.h): a context whose cache comes from a pool in
 * blocks computes the bits of one whose cache is allocated whole, its
 * sliding-window layers give back what left their window, the budget is
 * never exceeded (a refused reservation takes nothing and leaves the
 * context usable), and a batch refuses an item whose blocks are not held.
 * stories260K, with a sliding window of 40 positions on every other layer
 * made up for the test (both contexts see the same hyperparameters). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "forward.h"
#include "kv.h"
#include "model.h"

#ifndef HINGE_SHARED_DIR
#define HINGE_SHARED_DIR "../shared"
#endif
#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"

enum { CTX = 200, WINDOW = 40 };

typedef struct fixture {
    model *m;
    threadpool *tp;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    char err[HINGE_ERRMSG_MAX] = "";
    if (!fx || model_load(STORIES, false, NULL, &fx->m, err, sizeof err) != HINGE_OK)
        return -1;
    fx->m->hp.swa_window = WINDOW; /* layers 0, 2 and 4 slide */
    fx->m->hp.swa_pattern = 2;
    if (tp_create(2, &fx->tp) != HINGE_OK)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    tp_destroy(fx->tp);
    model_free(fx->m);
    free(fx);
    return 0;
}

static fwd_ctx *make(const fixture *fx, uint32_t a, uint32_t b, kv_pool *pool)
{
    char err[HINGE_ERRMSG_MAX] = "";
    fwd_ctx *f = NULL;
    fwd_config c = {.layer_begin = a, .layer_end = b, .ctx = CTX, .max_batch = 16, .pool = pool};
    if (fwd_create(fx->m, fx->tp, &c, &f, err, sizeof err) != HINGE_OK)
        fail_msg("fwd_create: %s", err);
    return f;
}

static void embed(fwd_ctx *f, uint32_t pos, size_t n, float *x)
{
    int32_t tok[64];
    for (size_t i = 0; i < n; i++)
        tok[i] = (int32_t)((pos + i) * 37 % 500 + 1);
    assert_int_equal(fwd_embed(f, tok, n, x), HINGE_OK);
}

/* The bytes of one block of one layer. */
static size_t block_bytes(const fixture *fx)
{
    kv_pool *p = NULL;
    assert_int_equal(kv_pool_create(0, &p), HINGE_OK);
    fwd_ctx *f = make(fx, 0, 1, p);
    assert_int_equal(fwd_kv_reserve(f, 0, 1), HINGE_OK);
    size_t b = fwd_kv_bytes(f);
    assert_int_equal(kv_pool_used(p), b);
    fwd_destroy(f);
    assert_int_equal(kv_pool_used(p), 0);
    kv_pool_destroy(p);
    return b;
}

/* Positions 0 .. CTX-1 in uneven chunks: paged and whole give the same
 * bits at every layer; the paged one holds what it uses. */
static void test_paged_is_exact(void **state)
{
    fixture *fx = *state;
    const size_t d = fx->m->hp.n_embd, nl = fx->m->hp.n_layer;
    const size_t blk = block_bytes(fx);
    kv_pool *p = NULL;
    assert_int_equal(kv_pool_create(0, &p), HINGE_OK);
    fwd_ctx *whole = make(fx, 0, (uint32_t)nl, NULL), *paged = make(fx, 0, (uint32_t)nl, p);
    assert_int_equal(fwd_kv_bytes(paged), 0);
    float *x = malloc(64 * d * sizeof(float)), *y = malloc(64 * d * sizeof(float));
    static const uint32_t chunks[] = {1, 7, 33, 1, 1, 20, 64, 2, 1, 40, 30};
    uint32_t pos = 0;
    for (size_t c = 0; pos < CTX; c++) {
        uint32_t n = chunks[c % (sizeof chunks / sizeof chunks[0])];
        n = n < CTX - pos ? n : CTX - pos;
        embed(whole, pos, n, x);
        memcpy(y, x, n * d * sizeof(float));
        assert_int_equal(fwd_layers(whole, pos, n, x), HINGE_OK);
        assert_int_equal(fwd_layers(paged, pos, n, y), HINGE_OK);
        assert_memory_equal(x, y, n * d * sizeof(float));
        /* global layers (1, 3) hold every block so far; sliding ones (0,
         * 2, 4) those from the window of the chunk's first position on */
        uint32_t last = (pos + n - 1) / KV_BLOCK, lo = pos + 1 > WINDOW ? (pos + 1 - WINDOW) / KV_BLOCK : 0;
        assert_int_equal(fwd_kv_bytes(paged), blk * (2 * (last + 1) + 3 * (last - lo + 1)));
        assert_int_equal(fwd_kv_bytes(paged), kv_pool_used(p));
        pos += n;
    }
    assert_true(fwd_kv_bytes(paged) < fwd_kv_bytes(whole));
    /* positions behind a released window cannot run again; others can */
    assert_int_equal(fwd_layers(paged, 10, 1, y), HINGE_ERR_RANGE);
    embed(whole, CTX - 3, 3, x);
    memcpy(y, x, 3 * d * sizeof(float));
    assert_int_equal(fwd_layers(whole, CTX - 3, 3, x), HINGE_OK);
    assert_int_equal(fwd_layers(paged, CTX - 3, 3, y), HINGE_OK);
    assert_memory_equal(x, y, 3 * d * sizeof(float));
    fwd_destroy(whole);
    fwd_destroy(paged);
    assert_int_equal(kv_pool_used(p), 0);
    kv_pool_destroy(p);
    free(x);
    free(y);
}

/* A budget of 6 blocks: a 2-layer context takes 2, then 4, another 1;
 * the first's next 2 would make 7: refused, nothing taken, and the context
 * still runs where it has its blocks. The other's block going back makes
 * room. */
static void test_budget(void **state)
{
    fixture *fx = *state;
    const size_t blk = block_bytes(fx), d = fx->m->hp.n_embd;
    kv_pool *p = NULL;
    assert_int_equal(kv_pool_create(6 * blk, &p), HINGE_OK);
    fwd_ctx *a = make(fx, 1, 3, p), *b = make(fx, 3, 4, p);
    assert_int_equal(fwd_kv_reserve(a, 0, 1), HINGE_OK);
    assert_int_equal(fwd_kv_reserve(a, 0, KV_BLOCK + 1), HINGE_OK);
    assert_int_equal(kv_pool_used(p), 4 * blk);
    assert_int_equal(fwd_kv_reserve(b, 0, 1), HINGE_OK);
    assert_int_equal(fwd_kv_reserve(a, 0, 2 * KV_BLOCK + 1), HINGE_ERR_NOMEM);
    assert_non_null(strstr(fwd_errmsg(a), "budget"));
    assert_int_equal(kv_pool_used(p), 5 * blk);
    assert_int_equal(kv_pool_refusals(p), 1);
    float *x = calloc(KV_BLOCK * 3, d * sizeof(float));
    assert_int_equal(fwd_layers(a, 0, KV_BLOCK + 1, x), HINGE_OK);
    assert_int_equal(fwd_layers(a, KV_BLOCK + 1, KV_BLOCK, x), HINGE_ERR_NOMEM);
    assert_int_equal(kv_pool_used(p), 5 * blk);
    fwd_destroy(b);
    assert_int_equal(fwd_layers(a, KV_BLOCK + 1, KV_BLOCK, x), HINGE_OK);
    assert_int_equal(kv_pool_used(p), 6 * blk);
    assert_int_equal(fwd_kv_reserve(a, 0, CTX + 1), HINGE_ERR_RANGE);
    fwd_destroy(a);
    assert_int_equal(kv_pool_used(p), 0);
    kv_pool_destroy(p);
    free(x);
}

/* A batch refuses an item whose positions have no blocks, before running
 * anything; once reserved it runs. */
static void test_batch_needs_blocks(void **state)
{
    fixture *fx = *state;
    const size_t d = fx->m->hp.n_embd;
    kv_pool *p = NULL;
    assert_int_equal(kv_pool_create(0, &p), HINGE_OK);
    fwd_batch *fb = NULL;
    char err[HINGE_ERRMSG_MAX];
    fwd_batch_config bc = {.max_rows = 16, .max_items = 4, .max_ctx = CTX};
    assert_int_equal(fwd_batch_create(fx->m, fx->tp, &bc, &fb, err, sizeof err), HINGE_OK);
    fwd_ctx *f = make(fx, 0, 2, p);
    float x[4 * 64];
    assert_true(d <= 64);
    memset(x, 0, sizeof x);
    fwd_item it = {.f = f, .pos0 = 0, .n = 4, .hidden = x};
    assert_int_equal(fwd_batch_run(fb, &it, 1), HINGE_ERR_RANGE);
    assert_int_equal(fwd_kv_reserve(f, 0, 4), HINGE_OK);
    assert_int_equal(fwd_batch_run(fb, &it, 1), HINGE_OK);
    fwd_destroy(f);
    fwd_batch_destroy(fb);
    kv_pool_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paged_is_exact),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_batch_needs_blocks),
    };
    return cmocka_run_group_tests_name("kv", tests, setup, teardown);
}
