/* hinge: one forward pass over many sessions' rows (the edge's batches).
 *
 * Each item is one session's step: its fwd_ctx (layers [a, b) and their KV
 * cache), its positions pos0 .. pos0+n-1 and their hidden rows. Layer by
 * layer, the rows of every item whose range holds the layer go through each
 * weight matrix as one product, so the weights are read once per batch, not
 * once per session; each item attends to its own cache; items with
 * different cuts join at their own first layer. Then the head runs over the
 * last rows of the items that want logits, again as one product. All of it
 * on the thread pool.
 *
 * Batch invariance: an item's hidden rows, cache rows and logits are
 * bitwise what fwd_layers and fwd_head give on it alone, whatever else is
 * in the batch (the kernels compute every output row in one order for any
 * number of rows: quant.h). A batch allocates nothing. */
#ifndef HINGE_BATCH_H
#define HINGE_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "model.h"
#include "status.h"
#include "threadpool.h"

typedef struct fwd_batch fwd_batch;

typedef struct fwd_batch_config {
    uint32_t max_rows;   /* rows of all items together per run; 0: 256 */
    uint32_t max_items;  /* items per run; 0: 64 */
    uint32_t max_ctx;    /* longest context among the items' fwd_ctx; 0: 4096 */
    uint32_t head_rows;  /* logit rows per head product (n_vocab floats each are kept); 0: 16 */
} fwd_batch_config;

/* One session's step. */
typedef struct fwd_item {
    fwd_ctx *f;          /* borrowed; no two items of one run share it */
    uint32_t pos0;
    uint32_t n;          /* rows, >= 1 */
    float *hidden;       /* (n, n_embd): layer a's input in, layer b-1's output out */
    float *logits;       /* NULL: no head; else n_vocab floats: the head of the last row */
} fwd_item;

/* m and tp are borrowed and must outlive b. Errors: HINGE_ERR_INVALID (a
 * limit out of range), HINGE_ERR_NOMEM. */
hinge_status fwd_batch_create(const model *m, threadpool *tp, const fwd_batch_config *cfg, fwd_batch **out,
                              char *err, size_t errlen);
void fwd_batch_destroy(fwd_batch *b); /* NULL is a no-op */
const char *fwd_batch_errmsg(const fwd_batch *b);
/* Bytes fwd_batch_create allocated. */
size_t fwd_batch_bytes(const fwd_batch *b);

/* Runs every item (see above). The items are checked first; on an error
 * nothing has run. Errors: HINGE_ERR_RANGE (positions beyond an item's
 * context or the KV blocks it holds (fwd_kv_reserve), more rows or items than the limits, a context longer than
 * max_ctx), HINGE_ERR_INVALID (n = 0, an item of another model, two items
 * of one context). */
hinge_status fwd_batch_run(fwd_batch *b, const fwd_item *items, size_t count);

#endif
