/* Memory of one edge session's tail (layers [cut, N), the head, the
 * sampler), before and after the paged KV cache: the tail allocated whole
 * for its context, as every session did, against the same tail with its
 * cache taken from a pool in blocks as positions grow, at 512 and at the
 * full context used (real forward passes on the model's embeddings).
 *
 *   bench_kv MODEL [CUT [CTX [THREADS]]]     one JSON line */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "forward.h"
#include "kv.h"
#include "model.h"
#include "tail.h"

enum { CHUNK = 64 };

/* tail_bytes counts a whole cache (allocated at creation), not the blocks
 * of a paged one. */
static size_t paged_bytes(const tail *t) { return tail_bytes(t) + tail_kv_bytes(t); }

/* Runs the tail to `upto` positions from `from`, CHUNK at a time. */
static int run_to(tail *t, fwd_ctx *emb, uint32_t from, uint32_t upto, float *hidden, uint32_t n_vocab)
{
    int32_t tok[CHUNK];
    for (uint32_t pos = from; pos < upto; pos += CHUNK) {
        uint32_t n = upto - pos < CHUNK ? upto - pos : CHUNK;
        for (uint32_t i = 0; i < n; i++)
            tok[i] = (int32_t)((pos + i) * 7919u % n_vocab);
        if (fwd_embed(emb, tok, n, hidden) != HINGE_OK || tail_step(t, pos, n, hidden, NULL) != HINGE_OK) {
            fprintf(stderr, "bench_kv: step at %u: %s\n", pos, tail_errmsg(t));
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_kv MODEL [CUT [CTX [THREADS]]]\n");
        return 2;
    }
    uint32_t cut = argc > 2 ? (uint32_t)atoi(argv[2]) : 6, ctx = argc > 3 ? (uint32_t)atoi(argv[3]) : 4096;
    int threads = argc > 4 ? atoi(argv[4]) : 2;
    char err[HINGE_ERRMSG_MAX] = "";
    model *m = NULL;
    threadpool *tp = NULL;
    kv_pool *pool = NULL;
    tail *whole = NULL, *paged = NULL;
    fwd_ctx *emb = NULL;
    fwd_config ec = {.ctx = 1, .max_batch = 1};
    if (model_load(argv[1], false, NULL, &m, err, sizeof err) != HINGE_OK || tp_create(threads, &tp) != HINGE_OK ||
        kv_pool_create(0, &pool) != HINGE_OK || fwd_create(m, tp, &ec, &emb, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "bench_kv: %s\n", err);
        return 1;
    }
    if (cut > m->hp.n_layer || ctx < 512) {
        fprintf(stderr, "bench_kv: cut %u or ctx %u out of range\n", cut, ctx);
        return 2;
    }
    /* as edge/session.c creates a session's tail */
    tail_config tc = {.cut = cut, .ctx = ctx, .max_batch = 1, .sp = {.top_p = 1.0f}};
    if (tail_create(m, tp, &tc, &whole, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "bench_kv: %s\n", err);
        return 1;
    }
    size_t before = tail_bytes(whole);
    tail_destroy(whole);
    tc.pool = pool;
    float *hidden = malloc((size_t)CHUNK * m->hp.n_embd * sizeof(float));
    if (!hidden || tail_create(m, tp, &tc, &paged, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "bench_kv: %s\n", err);
        return 1;
    }
    size_t at_open = paged_bytes(paged);
    if (run_to(paged, emb, 0, 512, hidden, m->hp.n_vocab) != 0)
        return 1;
    size_t at_512 = paged_bytes(paged);
    if (run_to(paged, emb, 512, ctx, hidden, m->hp.n_vocab) != 0)
        return 1;
    size_t at_ctx = paged_bytes(paged);
    printf("{\"model\": \"%s\", \"cut\": %u, \"ctx\": %u, \"kv_block_positions\": %d, \"before_bytes\": %zu, "
           "\"after_open_bytes\": %zu, \"after_512_bytes\": %zu, \"after_ctx_bytes\": %zu}\n",
           m->name, cut, ctx, KV_BLOCK, before, at_open, at_512, at_ctx);
    tail_destroy(paged);
    fwd_destroy(emb);
    kv_pool_destroy(pool);
    tp_destroy(tp);
    model_free(m);
    free(hidden);
    return 0;
}
