/* hinge: the forward pass's internals, shared by forward.c (one context)
 * and batch.c (many contexts in one pass). Private to model/.
 *
 * A pass runs one layer on the rows of one or more spans: each span is a
 * run of positions of one fwd_ctx (its KV cache), its rows stacked in the
 * scratch. Every weight matrix is one product over all the rows, so the
 * weights are read once per pass; attention reads each span's own cache.
 * The kernels compute every output row in one order whatever the number of
 * rows (quant.h), so a span's results are bitwise the same alone or among
 * others, and whatever the chunking of its positions. */
#ifndef HINGE_FORWARD_IMPL_H
#define HINGE_FORWARD_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "kv.h"

/* Buffers of a pass over up to `rows` rows, allocated once. */
typedef struct fwd_scratch {
    size_t rows;           /* capacity */
    uint32_t ctx;          /* longest context attended (scores) */
    float *xb;             /* (rows, n_embd) normed input */
    float *q, *k, *v;      /* (rows, q_dim / kv_dim / v_dim) */
    float *att;            /* (rows, o_dim) attention output */
    float *o;              /* (rows, n_embd) */
    float *g, *u;          /* (rows, n_ff) */
    float *mm;             /* (threads, mm_stride): quant_matmul's scratch */
    size_t mm_stride;
    void *prep;            /* prep_bytes: a product's activations prepared once (quant_prep_x) */
    size_t prep_bytes;
    float *scores;         /* (threads, ctx) */
    size_t bytes;          /* all of the above */
} fwd_scratch;

struct fwd_ctx {
    const model *m;
    threadpool *tp;
    uint32_t a, b;         /* layers [a, b) */
    uint32_t ctx;          /* cache positions */
    uint32_t max_batch;    /* positions per pass */
    /* The KV cache: per layer, blocks of blk_pos = 1 << shift positions,
     * each keys (blk_pos, kv_dim) then values (blk_pos, v_dim). Without a
     * pool, one block of ctx positions per layer (shift 31), allocated at
     * creation; with one, KV_BLOCK positions, taken by fwd_kv_reserve. */
    kv_pool *pool;         /* borrowed; NULL: none */
    uint32_t shift, blk_pos, n_blk;
    size_t blk_bytes;
    float **blk;           /* (b - a, n_blk); NULL where not held */
    bool has_swa;          /* a sliding-window layer is in [a, b) */
    uint32_t swa_lo;       /* sliding-window layers hold their blocks from this one on */
    uint32_t kv_end;       /* blocks are held for positions [pos_floor, kv_end) */
    uint32_t pos_floor;    /* the lowest position a pass may start at (0 but for released windows) */
    atomic_size_t kv_bytes; /* of the blocks held; read by other threads */
    fwd_scratch s;         /* max_batch rows, ctx */
    size_t bytes;          /* caches, scratch and this struct */
    char errmsg[HINGE_ERRMSG_MAX];
};

/* One context's positions pos0 .. pos0+n-1 in a pass: rows x (n, n_embd)
 * of the caller's hidden state, in place, and rows row0 .. row0+n-1 of the
 * scratch. */
typedef struct fwd_span {
    fwd_ctx *f;
    uint32_t pos0;
    size_t n;
    float *x;
    size_t row0;
} fwd_span;

/* Key row and value row of position pos of layer index l (il - a). */
static inline float *fwd_key_row(const fwd_ctx *f, size_t l, uint32_t pos, size_t kv_dim)
{
    return f->blk[l * f->n_blk + (pos >> f->shift)] + (size_t)(pos & ((1u << f->shift) - 1)) * kv_dim;
}

static inline float *fwd_value_row(const fwd_ctx *f, size_t l, uint32_t pos, size_t kv_dim, size_t v_dim)
{
    return f->blk[l * f->n_blk + (pos >> f->shift)] + (size_t)f->blk_pos * kv_dim +
           (size_t)(pos & ((1u << f->shift) - 1)) * v_dim;
}

/* Allocates the block table (and, without a pool, every block); adds to
 * f->bytes. HINGE_ERR_NOMEM. kv.c. */
hinge_status fwd_kv_init(fwd_ctx *f);
/* Frees every block held and the table. kv.c. */
void fwd_kv_finish(fwd_ctx *f);

/* Allocates s for `rows` rows attending up to ctx positions, with per-thread
 * buffers for tp's threads (s->bytes says how much). HINGE_ERR_NOMEM. */
hinge_status fwd_scratch_init(fwd_scratch *s, const model *m, threadpool *tp, size_t rows, uint32_t ctx);
void fwd_scratch_finish(fwd_scratch *s); /* a zeroed or half-built s is fine */

/* Layer il on the spans (row0 consecutive from 0, rows <= s->rows, every
 * span's f holds il, no two spans of one f, every pos0+n <= its f's ctx
 * and s->ctx): writes their KV cache rows and updates their x. */
void fwd_pass_layer(const model *m, threadpool *tp, fwd_scratch *s, uint32_t il, const fwd_span *sp, size_t ns);

/* logits[i] (n_vocab floats each) = head(rows[i]) for i < n <= s->rows. */
void fwd_pass_head(const model *m, threadpool *tp, fwd_scratch *s, const float *const *rows, size_t n,
                   float *logits);

#endif
