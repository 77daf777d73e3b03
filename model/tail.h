/* hinge: the tail stage: layers [k, N) (or [k, end)), the head and the sampler.
 *
 * What runs after the cut, wherever it runs: in the device's session when
 * there is no edge, and in each of the edge's sessions. One home for it, so
 * that a split and a local run compute the same thing. Everything a step
 * needs (the fwd_ctx of layers [k, N) with their KV cache, one logit row,
 * the sampler's scratch) is allocated by tail_create: a step allocates
 * nothing. */
#ifndef HINGE_TAIL_H
#define HINGE_TAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "forward.h"
#include "model.h"
#include "sampler.h"
#include "status.h"
#include "threadpool.h"

typedef struct tail tail;

typedef struct tail_config {
    uint32_t cut;         /* k: the first layer of the tail; 0..n_layer */
    uint32_t end;         /* its layers are [cut, end); 0: n_layer. A tail that ends before n_layer (the edge's
                             part of a private head, docs/privacy.md) has its head unused */
    uint32_t ctx;         /* positions of the KV cache */
    uint32_t max_batch;   /* positions per internal pass; 0: fwd's default */
    kv_pool *pool;        /* borrowed; NULL: the whole KV cache now; else paged (fwd_config.pool) */
    sampler_params sp;
} tail_config;

/* m and tp are borrowed and must outlive t; tp may be NULL. Errors:
 * HINGE_ERR_INVALID (cut beyond the model, bad sampling parameters),
 * HINGE_ERR_NOMEM. Detail in err. */
hinge_status tail_create(const model *m, threadpool *tp, const tail_config *c, tail **out, char *err,
                         size_t errlen);
void tail_destroy(tail *t); /* NULL is a no-op */
const char *tail_errmsg(const tail *t);

/* Runs layers [k, N) on hidden ((n, n_embd), the output of layer k-1 for
 * positions pos .. pos+n-1; in place), then, when token is not NULL, the
 * head on the last row and the sampler into *token. Errors as fwd_layers
 * and fwd_head, detail in tail_errmsg. */
hinge_status tail_step(tail *t, uint32_t pos, size_t n, float *hidden, int32_t *token);

/* Logits (n_vocab floats each) of n rows of hidden that went through
 * tail_step: the head alone. */
hinge_status tail_logits(tail *t, const float *hidden, size_t n, float *logits);

/* hidden[i] = the embedding of tokens[i] (a tail at cut 0 runs the whole
 * model on them: the edge's thin clients). HINGE_ERR_RANGE for an id
 * outside the vocabulary, detail in tail_errmsg. */
hinge_status tail_embed(tail *t, const int32_t *tokens, size_t n, float *hidden);

/* The tail's part of a batched step (batch.h): layers [k, N) on hidden
 * (n rows at pos .. pos+n-1, in place) and, when sample, the head of the
 * last row into the tail's logit row, for tail_sample once the batch ran.
 * tail_step on one session computes the same bits. */
fwd_item tail_item(tail *t, uint32_t pos, uint32_t n, float *hidden, bool sample);
/* The sampler on the logit row a batch wrote (see tail_item). */
int32_t tail_sample(tail *t);
/* The sampler on a logit row of the caller's (n_vocab floats): a verify
 * step's rows whose head ran elsewhere (the edge's Vulkan backend), drawn
 * in row order as tail_sample_rows draws them. */
int32_t tail_sample_logits(tail *t, const float *logits);

/* Speculative verification: the head on n rows of hidden that went through
 * the layers (tail_step or a batch) as one pass into logits (the caller's
 * scratch of n * n_vocab floats), then the sampler on each row in order:
 * tokens[i] is sampled from row i (n draws of the sampler). Errors as
 * fwd_head. */
hinge_status tail_sample_rows(tail *t, const float *hidden, size_t n, float *logits, int32_t *tokens);

/* The sampler continues as if n tokens had been sampled already. */
void tail_skip_samples(tail *t, uint64_t n);

/* Bytes tail_create allocated. */
size_t tail_bytes(const tail *t);
/* fwd_kv_reserve and fwd_kv_bytes of the tail's layers; errors in tail_errmsg. */
hinge_status tail_kv_reserve(tail *t, uint32_t pos0, uint32_t end);
size_t tail_kv_bytes(const tail *t);
size_t tail_kv_bytes_max(const tail *t);

#endif
