/* --backend vulkan: the sessions' layers [cut, N) and the head on a Vulkan
 * device, through the device half's executor (device/vk_exec.h).
 *
 * One dev_ctx for the edge's life, made at start-up; a probe executor over
 * the default model's first layer runs the executor's self-test there, so
 * a driver that computes wrongly stops the edge before it serves anything.
 * A model's layers and head are uploaded once, when its first session
 * opens (vk_model, kept while the model stays loaded); each session gets
 * its own executor for [cut, N) + head with hidden rows in, borrowing
 * those weights and owning its device KV cache, activations and command
 * buffers. Its tail (tail.h) keeps only the sampler and the logit row. The
 * device KV cache is taken whole from the edge's --kv-budget when the
 * session opens (refused with 503 when it does not fit), so no step fails
 * for it later.
 *
 * Steps run batched: each model also has a batch executor ([0, N) + head,
 * the same weights, activations for BATCH_EXTRA more rows than a session's
 * pass), and a scheduler batch's Vulkan rows go through it in one submit
 * (vk_exec_run_batch): the layers' products and the head over all the
 * sessions' rows, each session's attention in its own executor. A batch of
 * more rows or sampled sessions than it holds runs as several. Every step takes this path, a session alone
 * too: its logits are the same alone and in any batch.
 *
 * Threads: executors are made and destroyed by the loop thread (session
 * open and close) and run by the worker; they share the context's queue,
 * fence and command pool, which Vulkan wants used from one thread at a
 * time: every use of the context holds `lock`. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_impl.h"

#ifdef HINGE_EDGE_VULKAN
#include "vk_context.h"
#include "vk_exec.h"

enum {
    BATCH_EXTRA = 64, /* rows of a batch beyond one session's pass: the others' decode steps */
    HEAD_ROWS = 32,   /* sessions sampled per device batch (the batch head's logits: HEAD_ROWS x n_vocab) */
};

struct edge_vk {
    dev_ctx *c;
    pthread_mutex_t lock;
    char device[256];
    vk_exec_item *items;         /* (cap) worker: one batch's pieces */
    uint32_t *done;              /* (cap) rows of each item run so far */
    size_t cap;
};

/* The batch executor of the model of a session being opened (lock held). */
static hinge_status batch_open(edge_vk *v, const edge_session *s, uint32_t batch, char *err, size_t errlen)
{
    edge_model *em = s->em;
    if (em->vbx)
        return HINGE_OK;
    vk_exec_config c = {.end = s->m->hp.n_layer, .head = true, .ctx = 1, .max_batch = batch + BATCH_EXTRA,
                        .weights = em->vw, .no_selftest = true, /* the session's executor was tested */
                        .head_rows = HEAD_ROWS, .few_rows = true}; /* a session alone: batches of one row */
    return vk_exec_create_range(v->c, s->m, &c, &em->vbx, err, errlen);
}

hinge_status edge_vk_open(hinge_edge *e, char *err, size_t errlen)
{
    edge_vk *v = calloc(1, sizeof *v);
    if (!v)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&v->lock, NULL);
    e->vk = v;
    dev_ctx_config dc = {.log = &e->log};
    char why[HINGE_ERRMSG_MAX] = "";
    hinge_status s = dev_ctx_create(&dc, &v->c, why, sizeof why);
    if (s != HINGE_OK)
        return hinge_fail(err, errlen, s, "--backend vulkan: no usable Vulkan device: %s", why);
    snprintf(v->device, sizeof v->device, "%s", dev_ctx_features(v->c)->name);
    /* the self-test runs when an executor is made: one small one now */
    vk_exec *probe = NULL;
    uint32_t n = e->m->hp.n_layer;
    vk_exec_config pc = {.first = 0, .end = n ? 1 : 0, .ctx = 16, .max_batch = 4};
    s = vk_exec_create_range(v->c, e->m, &pc, &probe, why, sizeof why);
    vk_exec_destroy(probe);
    if (s != HINGE_OK)
        return hinge_fail(err, errlen, s, "--backend vulkan on %s: %s", v->device, why);
    hinge_log(&e->log, HINGE_LOG_INFO, "backend vulkan: %s, self-test passed", v->device);
    return HINGE_OK;
}

void edge_vk_close(hinge_edge *e)
{
    if (!e->vk)
        return;
    for (uint32_t i = 0; e->models && i < e->n_models; i++) /* the models outlive the context: their weights go now */
        edge_vk_model_drop(e, &e->models[i]);
    free(e->vk->items);
    free(e->vk->done);
    dev_ctx_destroy(e->vk->c);
    pthread_mutex_destroy(&e->vk->lock);
    free(e->vk);
    e->vk = NULL;
}

const char *edge_vk_device(const hinge_edge *e) { return e->vk ? e->vk->device : ""; }

int edge_vk_session_open(hinge_edge *e, edge_session *s, const char **code, char *detail, size_t detail_len)
{
    const model *m = s->m;
    uint32_t n = m->hp.n_layer;
    size_t kv = (size_t)vk_exec_kv_bytes(m, n - s->cut, s->ctx);
    if (!kv_pool_take(e->kv, kv)) {
        *code = "kv_budget";
        hinge_fail(detail, detail_len, HINGE_ERR_NOMEM, "the session's device KV cache (%zu bytes) does not fit "
                   "the KV budget (%zu of %zu bytes held)", kv, kv_pool_used(e->kv), kv_pool_budget(e->kv));
        return 503;
    }
    s->vx_kv = kv;
    edge_model *em = s->em;
    hinge_status st = HINGE_OK;
    pthread_mutex_lock(&e->vk->lock);
    if (!em->vw) { /* [0, N) + head: any cut's sessions borrow it */
        vk_model_config wc = {.first = 0, .end = n, .head = true};
        st = vk_model_create(e->vk->c, m, &wc, &em->vw, detail, detail_len);
        if (st == HINGE_OK)
            hinge_log(&e->log, HINGE_LOG_INFO, "backend vulkan: %s's weights uploaded", em->file);
    }
    /* passes as long as the scheduler's chunks (a longer step runs in several) */
    uint32_t batch = e->prefill_chunk < 512 ? e->prefill_chunk : 512;
    /* the default model's kernels passed the self-test at start-up; another
     * model's weight types may need others: tested as its sessions open */
    vk_exec_config c = {.first = s->cut, .end = n, .head = true, .ctx = s->ctx, .max_batch = batch,
                        .weights = em->vw, .no_selftest = m == e->m};
    if (st == HINGE_OK)
        st = vk_exec_create_range(e->vk->c, m, &c, &s->vx, detail, detail_len);
    if (st == HINGE_OK)
        st = batch_open(e->vk, s, batch, detail, detail_len);
    if (st != HINGE_OK) {
        vk_exec_destroy(s->vx);
        s->vx = NULL;
    }
    pthread_mutex_unlock(&e->vk->lock);
    if (st == HINGE_OK)
        return 0;
    *code = st == HINGE_ERR_NOMEM ? "out_of_memory" : "unsupported_backend";
    return st == HINGE_ERR_NOMEM ? 503 : st == HINGE_ERR_UNSUPPORTED ? 422 : 500;
}

void edge_vk_session_close(hinge_edge *e, edge_session *s)
{
    if (s->vx) {
        pthread_mutex_lock(&e->vk->lock);
        vk_exec_destroy(s->vx);
        pthread_mutex_unlock(&e->vk->lock);
        s->vx = NULL;
    }
    if (s->vx_kv)
        kv_pool_give(e->kv, s->vx_kv);
    s->vx_kv = 0;
}

void edge_vk_model_drop(hinge_edge *e, edge_model *em)
{
    if (!e->vk || !em->vw)
        return;
    edge_vk *v = e->vk;
    pthread_mutex_lock(&v->lock);
    vk_exec_destroy(em->vbx); /* it borrows the weights: first */
    em->vbx = NULL;
    vk_model_destroy(em->vw);
    pthread_mutex_unlock(&e->vk->lock);
    em->vw = NULL;
}

/* The items' rows as batches of at most b's rows and head rows: each takes
 * a piece of every unfinished item (at most its executor's pass), the
 * logits with an item's last piece. */
static hinge_status run_batches(edge_vk *v, vk_exec *b, edge_session *const *s, const fwd_item *items, size_t n)
{
    size_t d = s[0]->m->hp.n_embd;
    memset(v->done, 0, n * sizeof *v->done);
    for (;;) {
        uint32_t rows = 0, heads = 0, cap = vk_exec_max_batch(b);
        uint32_t max_heads = HEAD_ROWS < cap ? HEAD_ROWS : cap; /* as the batch executor lowered it */
        size_t k = 0;
        for (size_t i = 0; i < n && rows < cap; i++) {
            uint32_t left = items[i].n - v->done[i], take = left < cap - rows ? left : cap - rows;
            take = take < vk_exec_max_batch(s[i]->vx) ? take : vk_exec_max_batch(s[i]->vx);
            if (take == left && items[i].logits && heads == max_heads)
                take = left - 1; /* its sampled row waits for a batch with a head row free */
            if (take == 0)
                continue;
            bool last = take == left;
            heads += last && items[i].logits;
            v->items[k++] = (vk_exec_item){s[i]->vx, items[i].hidden + v->done[i] * d, take,
                                           items[i].pos0 + v->done[i], last ? items[i].logits : NULL};
            v->done[i] += take;
            rows += take;
        }
        if (k == 0)
            return HINGE_OK;
        hinge_status st = vk_exec_run_batch(b, v->items, k);
        if (st != HINGE_OK)
            return st;
    }
}

hinge_status edge_vk_run(const hinge_edge *e, edge_session *const *s, const fwd_item *items, size_t n)
{
    edge_vk *v = e->vk;
    hinge_status st = HINGE_OK;
    if (n > v->cap) { /* the worker's own arrays: grown to the largest batch */
        vk_exec_item *it = realloc(v->items, n * sizeof *it);
        if (it)
            v->items = it;
        uint32_t *done = realloc(v->done, n * sizeof *done);
        if (done)
            v->done = done;
        st = it && done ? HINGE_OK : HINGE_ERR_NOMEM;
        v->cap = st == HINGE_OK ? n : v->cap;
    }
    pthread_mutex_lock(&v->lock);
    vk_exec *b = s[0]->em->vbx;
    if (st == HINGE_OK)
        st = b ? run_batches(v, b, s, items, n) : HINGE_ERR_INVALID;
    for (size_t i = 0; i < n && st != HINGE_OK; i++)
        hinge_fail(s[i]->step.err, sizeof s[i]->step.err, st, "Vulkan forward pass failed: %s",
                   st == HINGE_ERR_NOMEM ? "out of memory" : vk_exec_errmsg(b));
    pthread_mutex_unlock(&v->lock);
    return st;
}

#else /* built without Vulkan */

hinge_status edge_vk_open(hinge_edge *e, char *err, size_t errlen)
{
    (void)e;
    return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED, "--backend vulkan: this hinge-edge was built without "
                      "Vulkan (meson -Dvulkan=enabled)");
}

void edge_vk_close(hinge_edge *e) { (void)e; }
const char *edge_vk_device(const hinge_edge *e) { (void)e; return ""; }

int edge_vk_session_open(hinge_edge *e, edge_session *s, const char **code, char *detail, size_t detail_len)
{
    (void)e;
    (void)s;
    *code = "unsupported_backend";
    hinge_fail(detail, detail_len, HINGE_ERR_UNSUPPORTED, "built without Vulkan");
    return 500;
}

void edge_vk_session_close(hinge_edge *e, edge_session *s)
{
    (void)e;
    (void)s;
}

void edge_vk_model_drop(hinge_edge *e, edge_model *em)
{
    (void)e;
    (void)em;
}

hinge_status edge_vk_run(const hinge_edge *e, edge_session *const *s, const fwd_item *items, size_t n)
{
    (void)e;
    (void)items;
    for (size_t i = 0; i < n; i++)
        hinge_fail(s[i]->step.err, sizeof s[i]->step.err, HINGE_ERR_UNSUPPORTED, "built without Vulkan");
    return HINGE_ERR_UNSUPPORTED;
}

#endif
