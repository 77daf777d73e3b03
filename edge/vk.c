/* --backend vulkan: the sessions' layers [cut, N) and the head on a Vulkan
 * device, through the device half's executor (device/vk_exec.h).
 *
 * One dev_ctx for the edge's life, made at start-up, with the default
 * model's device half (below), whose batch executor runs the executor's
 * self-test there (layer 0's kernels, the head's and the batch head's), so
 * a driver that computes wrongly stops the edge before it serves anything.
 * Another model's layers and head are uploaded once, when its first session
 * opens (vk_model, kept while the model stays loaded); each session gets
 * its own executor for [cut, N): a batch item's (vk_exec_config.batch_item:
 * its device KV cache, RoPE and attention and their rows; no products, no
 * head, no command buffers), borrowing those weights; a private head J's
 * is a full executor for [cut, N - J) with hidden rows out (the batch
 * copies them out through its buffers). Its tail (tail.h) keeps only the
 * sampler and the logit row. The device KV cache is taken whole from the
 * edge's --kv-budget when the session opens (refused with 503 when it does
 * not fit), so no step fails for it later.
 *
 * Steps run batched: each model also has a batch executor ([0, N) + head,
 * the same weights, activations for BATCH_EXTRA more rows than a session's
 * pass), and a scheduler batch's Vulkan rows go through it in one submit
 * (vk_exec_run_batch): the layers' products and the head over all the
 * sessions' rows, each session's attention in its own executor. A batch of
 * more rows or sampled rows than it holds runs as several. Every step takes
 * this path, a session alone too: its logits are the same alone and in any
 * batch. A verify step (speculative decoding) wants every row's logits: its
 * rows go through the batch head (all_rows) and are sampled here, in row
 * order, as soon as their batch ran (sched.c's verify then only answers);
 * they are the logits plain decode steps at those positions would get. A
 * private head's rows come back in place of its input (vk_exec_item.out).
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
    struct piece {
        uint32_t done;           /* rows of the item run so far */
        uint32_t verify, head;   /* a verify step's rows in this batch, their first row of `logits` */
    } *at;                       /* (cap) */
    size_t cap;
    float *logits;               /* (HEAD_ROWS, vocab): the verify rows' logits of one batch */
    uint32_t vocab;              /* the largest vocabulary `logits` has held (models differ) */
};

/* Positions of a session's pass: as long as the scheduler's chunks (a
 * longer step runs in several). */
static uint32_t pass_rows(const hinge_edge *e) { return e->prefill_chunk < 512 ? e->prefill_chunk : 512; }

/* A model's device half, made and counted once per load: its weights ([0,
 * N) + head: any cut's sessions borrow them) and its batch executor, which
 * runs every product and the head of its sessions' steps; with selftest,
 * that executor's self-test (layer 0's kernels, the head's and the batch
 * head's). Counted with the model's memory under --model-memory
 * (HINGE_ERR_RANGE, *code model_memory_full, when it does not fit): all
 * of it is kept and counted, or none of it. The lock is not held while
 * counting: making room unloads other models, which takes it. */
static hinge_status device_half(hinge_edge *e, edge_model *em, bool selftest, const char **code, char *err,
                                size_t errlen)
{
    if (em->vk_bytes)
        return HINGE_OK;
    const model *m = em->m;
    hinge_status st = HINGE_OK;
    pthread_mutex_lock(&e->vk->lock);
    if (!em->vw) {
        vk_model_config wc = {.first = 0, .end = m->hp.n_layer, .head = true};
        st = vk_model_create(e->vk->c, m, &wc, &em->vw, err, errlen);
    }
    vk_exec_config c = {.end = m->hp.n_layer, .head = true, .ctx = 1, .max_batch = pass_rows(e) + BATCH_EXTRA,
                        .weights = em->vw, .no_selftest = !selftest, .head_rows = HEAD_ROWS,
                        .few_rows = true}; /* a session alone: batches of one row */
    if (st == HINGE_OK && !em->vbx)
        st = vk_exec_create_range(e->vk->c, m, &c, &em->vbx, err, errlen);
    pthread_mutex_unlock(&e->vk->lock);
    if (st == HINGE_OK) {
        size_t bytes = vk_model_device_bytes(em->vw) + vk_exec_device_bytes(em->vbx);
        if (edge_model_grow(e, em, bytes, "device weights and batch buffers", code, err, errlen) == 0) {
            em->vk_bytes = bytes;
            return HINGE_OK;
        }
        st = HINGE_ERR_RANGE;
    }
    edge_vk_model_drop(e, em);
    return st;
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
    /* the self-test runs when an executor is made: the default model's
     * batch executor now, which runs what its sessions' steps run (a
     * separate probe would build the same pipelines twice); its device
     * half is counted now, as its host half is (edge_model_ensure) */
    const char *code;
    s = device_half(e, &e->models[0], true, &code, why, sizeof why);
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
    free(e->vk->at);
    free(e->vk->logits);
    dev_ctx_destroy(e->vk->c);
    pthread_mutex_destroy(&e->vk->lock);
    free(e->vk);
    e->vk = NULL;
}

const char *edge_vk_device(const hinge_edge *e) { return e->vk ? e->vk->device : ""; }

dev_ctx *edge_vk_ctx(const hinge_edge *e) { return e->vk ? e->vk->c : NULL; }

/* A failed device half or executor as an HTTP status, its code in *code
 * (HINGE_ERR_RANGE: over --model-memory, the code set already). */
static int vk_http(hinge_status st, const char **code)
{
    if (st == HINGE_ERR_RANGE)
        return 503;
    *code = st == HINGE_ERR_NOMEM ? "out_of_memory" : "unsupported_backend";
    return st == HINGE_ERR_NOMEM ? 503 : st == HINGE_ERR_UNSUPPORTED ? 422 : 500;
}

int edge_vk_session_open(hinge_edge *e, edge_session *s, const char **code, char *detail, size_t detail_len)
{
    const model *m = s->m;
    uint32_t n = m->hp.n_layer, end = n - s->private_head; /* a private head's last layers are the device's */
    size_t kv = (size_t)vk_exec_kv_bytes(m, end - s->cut, s->ctx);
    if (!kv_pool_take(e->kv, kv)) {
        *code = "kv_budget";
        hinge_fail(detail, detail_len, HINGE_ERR_NOMEM, "the session's device KV cache (%zu bytes) does not fit "
                   "the KV budget (%zu of %zu bytes held)", kv, kv_pool_used(e->kv), kv_pool_budget(e->kv));
        return 503;
    }
    s->vx_kv = kv; /* given back by edge_vk_session_close, on failure too */
    /* the default model's kernels passed the self-test at start-up; another
     * model's weight types may need others: tested here */
    hinge_status st = device_half(e, s->em, m != e->m, code, detail, detail_len);
    if (st != HINGE_OK)
        return vk_http(st, code);
    /* the session's KV cache, RoPE and attention only: its products and head
     * run in the batch executor (whose kernels passed the self-test); a
     * private head's rows leave through its own executor's buffers */
    vk_exec_config c = {.first = s->cut, .end = end, .head = end == n, .ctx = s->ctx, .max_batch = pass_rows(e),
                        .weights = s->em->vw, .no_selftest = true, .batch_item = end == n};
    pthread_mutex_lock(&e->vk->lock);
    uint64_t t0 = edge_now_us();
    st = vk_exec_create_range(e->vk->c, m, &c, &s->vx, detail, detail_len);
    if (st == HINGE_OK) /* what a session costs the device and the loop thread (the lock held) */
        hinge_log(&e->log, HINGE_LOG_INFO, "backend vulkan: session %.8s: executor for layers [%u, %u) in %.1f ms, "
                  "%.2f MiB of device memory (KV cache %.2f MiB)", s->id, s->cut, end,
                  (double)(edge_now_us() - t0) * 1e-3, (double)vk_exec_device_bytes(s->vx) / (1 << 20),
                  (double)kv / (1 << 20));
    pthread_mutex_unlock(&e->vk->lock);
    return st == HINGE_OK ? 0 : vk_http(st, code);
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
    pthread_mutex_lock(&e->vk->lock);
    vk_exec_destroy(em->vbx); /* it borrows the weights: first */
    em->vbx = NULL;
    vk_model_destroy(em->vw);
    pthread_mutex_unlock(&e->vk->lock);
    em->vw = NULL;
    edge_model_shrink(e, em, em->vk_bytes);
    em->vk_bytes = 0;
}

/* A verify step's rows of the batch that ran: sampled in row order into
 * its step's tokens. */
static void sample_verified(edge_vk *v, edge_session *const *s, const fwd_item *items, size_t n, size_t nv)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t row = items[i].pos0 - s[i]->step.hdr.pos + v->at[i].done - v->at[i].verify; /* in the step */
        for (uint32_t r = 0; r < v->at[i].verify && row + r < TX_VERIFY_MAX; r++)
            s[i]->step.tokens[row + r] = tail_sample_logits(s[i]->t, v->logits + (v->at[i].head + r) * nv);
    }
}

/* The items' rows as batches of at most b's rows and head rows: each takes
 * a piece of every unfinished item (at most its executor's pass), the
 * logits with an item's last piece (a verify step's: with every piece). */
static hinge_status run_batches(edge_vk *v, vk_exec *b, edge_session *const *s, const fwd_item *items, size_t n)
{
    size_t d = s[0]->m->hp.n_embd, nv = s[0]->m->hp.n_vocab;
    for (size_t i = 0; i < n; i++)
        v->at[i].done = 0;
    for (;;) {
        uint32_t rows = 0, heads = 0, cap = vk_exec_max_batch(b);
        uint32_t max_heads = HEAD_ROWS < cap ? HEAD_ROWS : cap; /* as the batch executor lowered it */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            bool all = s[i]->step.hdr.flags & TX_FLAG_VERIFY; /* every row's logits */
            uint32_t left = items[i].n - v->at[i].done, take = left < cap - rows ? left : cap - rows;
            take = take < vk_exec_max_batch(s[i]->vx) ? take : vk_exec_max_batch(s[i]->vx);
            if (all && take > max_heads - heads)
                take = max_heads - heads;
            else if (!all && take == left && items[i].logits && heads == max_heads)
                take = left - 1; /* its sampled row waits for a batch with a head row free */
            v->at[i].verify = all ? take : 0;
            v->at[i].head = heads;
            if (take == 0)
                continue;
            bool last = take == left;
            float *in = items[i].hidden + (size_t)v->at[i].done * d;
            float *logits = all ? v->logits + (size_t)heads * nv : last ? items[i].logits : NULL;
            heads += all ? take : last && items[i].logits;
            v->items[k++] = (vk_exec_item){s[i]->vx, in, take, items[i].pos0 + v->at[i].done, logits, all,
                                           s[i]->private_head ? in : NULL}; /* a private head's rows in place */
            v->at[i].done += take;
            rows += take;
        }
        if (k == 0)
            return HINGE_OK;
        hinge_status st = vk_exec_run_batch(b, v->items, k);
        if (st != HINGE_OK)
            return st;
        sample_verified(v, s, items, n, nv);
    }
}

/* The worker's own arrays, grown to the largest batch (n items) and
 * vocabulary of a verify step. */
static hinge_status grow(edge_vk *v, size_t n, uint32_t vocab)
{
    if (n > v->cap) {
        vk_exec_item *it = realloc(v->items, n * sizeof *it);
        if (it)
            v->items = it;
        struct piece *at = realloc(v->at, n * sizeof *at);
        if (at)
            v->at = at;
        if (!it || !at)
            return HINGE_ERR_NOMEM;
        v->cap = n;
    }
    if (vocab > v->vocab) {
        float *l = realloc(v->logits, (size_t)HEAD_ROWS * vocab * sizeof *l);
        if (!l)
            return HINGE_ERR_NOMEM;
        v->logits = l;
        v->vocab = vocab;
    }
    return HINGE_OK;
}

hinge_status edge_vk_run(const hinge_edge *e, edge_session *const *s, const fwd_item *items, size_t n)
{
    edge_vk *v = e->vk;
    uint32_t vocab = 0; /* the verify rows' logits: only once a verify step comes (Gemma's: 32 MiB) */
    for (size_t i = 0; i < n; i++)
        vocab = s[i]->step.hdr.flags & TX_FLAG_VERIFY ? s[i]->m->hp.n_vocab : vocab;
    hinge_status st = grow(v, n, vocab);
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
