/* hinge: the CPU forward pass, cut into stages.
 *
 *   embed(tokens) -> hidden            (fwd_embed)
 *   layers [a, b) on hidden            (fwd_layers, with the KV cache of
 *                                       layers [a, b) only)
 *   head(hidden) -> logits             (fwd_head: final norm + output)
 *
 * A full local run is embed, [0, N), head; a split is the same stages on
 * two machines. hidden is (n, n_embd) f32, row-major, one row per position.
 * A fwd_ctx owns everything a stage needs (KV cache, scratch), allocated at
 * creation: running a stage allocates nothing. */
#ifndef HINGE_FORWARD_H
#define HINGE_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "status.h"
#include "threadpool.h"

typedef struct fwd_ctx fwd_ctx;
typedef struct kv_pool kv_pool;

typedef struct fwd_config {
    uint32_t layer_begin; /* a */
    uint32_t layer_end;   /* b; a <= b <= n_layer */
    uint32_t ctx;         /* positions the KV cache holds; 0: min(n_ctx_train, 4096) */
    uint32_t max_batch;   /* positions per internal pass; 0: 64 */
    kv_pool *pool;        /* borrowed; NULL: the whole KV cache is allocated here. Else it is paged
                             (kv.h): blocks taken from the pool as positions grow (fwd_kv_reserve),
                             and positions only move forward (a sliding-window layer gives back the
                             blocks behind its window) */
} fwd_config;

/* m and tp are borrowed and must outlive the context; tp may be NULL (one
 * thread). Errors: HINGE_ERR_INVALID (bad range), HINGE_ERR_NOMEM. */
hinge_status fwd_create(const model *m, threadpool *tp, const fwd_config *cfg, fwd_ctx **out, char *err,
                        size_t errlen);
void fwd_destroy(fwd_ctx *f); /* NULL is a no-op */
const char *fwd_errmsg(const fwd_ctx *f);

uint32_t fwd_ctx_len(const fwd_ctx *f);
uint32_t fwd_layer_begin(const fwd_ctx *f); /* a */
uint32_t fwd_layer_end(const fwd_ctx *f);   /* b */
/* Bytes fwd_create allocated (KV cache without a pool, block table, scratch). */
size_t fwd_bytes(const fwd_ctx *f);
/* Bytes of KV cache held now (with a pool: the blocks taken so far). Any
 * thread. */
size_t fwd_kv_bytes(const fwd_ctx *f);
/* The most it can hold: every position of its context (a sliding-window
 * layer: its window), in whole blocks. */
size_t fwd_kv_bytes_max(const fwd_ctx *f);

/* Makes sure the KV blocks of positions up to end exist for a pass
 * starting at pos0, so that positions [pos0, end) can run; with a pool,
 * first gives back the blocks the sliding-window layers no longer need
 * from pos0 on. Nothing to do without a pool. Over the budget, no block is
 * taken. fwd_layers calls it; a batch (batch.h) needs it done.
 * Errors: HINGE_ERR_RANGE (end > ctx, pos0 >= end, pos0 below positions
 * already given back), HINGE_ERR_NOMEM (over the pool's budget, or out of
 * memory). */
hinge_status fwd_kv_reserve(fwd_ctx *f, uint32_t pos0, uint32_t end);

/* hidden[i] = embedding of tokens[i] times the architecture's scale.
 * HINGE_ERR_RANGE for a token id outside the vocabulary. */
hinge_status fwd_embed(fwd_ctx *f, const int32_t *tokens, size_t n, float *hidden);

/* Runs layers [a, b) on n positions pos0 .. pos0+n-1, in place. Writes those
 * rows of the KV cache and attends to cache rows [0, pos] (or the sliding
 * window); rows >= pos0 written earlier are overwritten, so a caller may
 * rewind (not below what a pooled context gave back). HINGE_ERR_RANGE if
 * pos0 + n > ctx; the errors of fwd_kv_reserve. */
hinge_status fwd_layers(fwd_ctx *f, uint32_t pos0, size_t n, float *hidden);

/* Copies the KV cache rows of positions [pos0, pos0 + n) of every layer
 * from src to dst (same model and layer range, both contexts holding the
 * positions): dst continues from src's prefix without recomputing it.
 * HINGE_ERR_INVALID for mismatched contexts, HINGE_ERR_RANGE for
 * positions beyond either. */
hinge_status fwd_cache_copy(fwd_ctx *dst, const fwd_ctx *src, uint32_t pos0, uint32_t n);

/* logits[i] (n_vocab floats each) for each of n rows of hidden. */
hinge_status fwd_head(fwd_ctx *f, const float *hidden, size_t n, float *logits);

#endif
