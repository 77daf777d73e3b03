/* One forward pass over many sessions' rows: see batch.h. */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "forward_impl.h"

enum { DEF_ROWS = 256, DEF_ITEMS = 64, DEF_CTX = 4096, DEF_HEAD_ROWS = 16, LIMIT_ROWS = 1 << 16 };

struct fwd_batch {
    const model *m;
    threadpool *tp;
    uint32_t max_items, head_rows;
    fwd_scratch s;        /* max_rows rows, max_ctx */
    fwd_span *spans;      /* (max_items) */
    const float **rows;   /* (head_rows) last rows going through the head */
    float *logits;        /* (head_rows, n_vocab) */
    size_t bytes;
    char errmsg[HINGE_ERRMSG_MAX];
};

hinge_status fwd_batch_create(const model *m, threadpool *tp, const fwd_batch_config *cfg, fwd_batch **out,
                              char *err, size_t errlen)
{
    uint32_t rows = cfg->max_rows ? cfg->max_rows : DEF_ROWS, items = cfg->max_items ? cfg->max_items : DEF_ITEMS;
    uint32_t ctx = cfg->max_ctx ? cfg->max_ctx : DEF_CTX, head = cfg->head_rows ? cfg->head_rows : DEF_HEAD_ROWS;
    if (rows > LIMIT_ROWS || items > rows || ctx > (1u << 20) || head > rows)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID,
                          "batch limits out of range: %u rows (at most %d), %u items and %u head rows (at most the "
                          "rows), context %u",
                          rows, LIMIT_ROWS, items, head, ctx);
    fwd_batch *b = calloc(1, sizeof *b);
    if (!b)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    *b = (fwd_batch){.m = m, .tp = tp, .max_items = items, .head_rows = head};
    hinge_status s = fwd_scratch_init(&b->s, m, tp, rows, ctx);
    b->spans = calloc(items, sizeof *b->spans);
    b->rows = calloc(head, sizeof *b->rows);
    b->logits = malloc((size_t)head * m->hp.n_vocab * sizeof(float));
    if (s != HINGE_OK || !b->spans || !b->rows || !b->logits) {
        fwd_batch_destroy(b);
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for a batch of %u rows", rows);
    }
    b->bytes = sizeof *b + b->s.bytes + items * sizeof *b->spans + head * sizeof *b->rows +
               (size_t)head * m->hp.n_vocab * sizeof(float);
    *out = b;
    return HINGE_OK;
}

void fwd_batch_destroy(fwd_batch *b)
{
    if (!b)
        return;
    fwd_scratch_finish(&b->s);
    free(b->spans);
    free(b->rows);
    free(b->logits);
    free(b);
}

const char *fwd_batch_errmsg(const fwd_batch *b) { return b ? b->errmsg : "no batch"; }
size_t fwd_batch_bytes(const fwd_batch *b) { return b ? b->bytes : 0; }

static hinge_status check(fwd_batch *b, const fwd_item *items, size_t count)
{
    if (count > b->max_items)
        return hinge_fail(b->errmsg, sizeof b->errmsg, HINGE_ERR_RANGE, "%zu items over the batch's %u", count,
                          b->max_items);
    size_t rows = 0;
    for (size_t i = 0; i < count; i++) {
        const fwd_item *it = &items[i];
        if (it->f->m != b->m || it->n == 0)
            return hinge_fail(b->errmsg, sizeof b->errmsg, HINGE_ERR_INVALID,
                              "item %zu: %s", i, it->n ? "a context of another model" : "no rows");
        if ((uint64_t)it->pos0 + it->n > it->f->kv_end || it->pos0 < it->f->pos_floor || it->f->ctx > b->s.ctx)
            return hinge_fail(b->errmsg, sizeof b->errmsg, HINGE_ERR_RANGE,
                              "item %zu: positions [%u, %llu) outside the KV blocks held, [%u, %u) of a "
                              "%u-position context (batch limit %u)",
                              i, it->pos0, (unsigned long long)it->pos0 + it->n, it->f->pos_floor, it->f->kv_end,
                              it->f->ctx, b->s.ctx);
        for (size_t k = 0; k < i; k++)
            if (items[k].f == it->f)
                return hinge_fail(b->errmsg, sizeof b->errmsg, HINGE_ERR_INVALID, "items %zu and %zu share a context",
                                  k, i);
        rows += it->n;
    }
    if (rows > b->s.rows)
        return hinge_fail(b->errmsg, sizeof b->errmsg, HINGE_ERR_RANGE, "%zu rows over the batch's %zu", rows,
                          b->s.rows);
    return HINGE_OK;
}

/* Layers from the lowest first layer to the highest last one; at each, the
 * items whose range holds it, their rows stacked in item order. */
static void run_layers(fwd_batch *b, const fwd_item *items, size_t count)
{
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t a = fwd_layer_begin(items[i].f), e = fwd_layer_end(items[i].f);
        lo = a < lo ? a : lo;
        hi = e > hi ? e : hi;
    }
    for (uint32_t il = lo; il < hi; il++) {
        size_t ns = 0, row = 0;
        for (size_t i = 0; i < count; i++) {
            const fwd_item *it = &items[i];
            if (il < fwd_layer_begin(it->f) || il >= fwd_layer_end(it->f))
                continue;
            b->spans[ns++] = (fwd_span){.f = it->f, .pos0 = it->pos0, .n = it->n, .x = it->hidden, .row0 = row};
            row += it->n;
        }
        fwd_pass_layer(b->m, b->tp, &b->s, il, b->spans, ns);
    }
}

/* The head over the last rows of the items with logits, head_rows at a
 * time, copied out to each item's buffer. */
static void run_head(fwd_batch *b, const fwd_item *items, size_t count)
{
    const size_t d = b->m->hp.n_embd, nv = b->m->hp.n_vocab;
    size_t i = 0;
    while (i < count) {
        size_t n = 0, first = i;
        for (; i < count && n < b->head_rows; i++)
            if (items[i].logits)
                b->rows[n++] = items[i].hidden + (size_t)(items[i].n - 1) * d;
        if (n == 0)
            break;
        fwd_pass_head(b->m, b->tp, &b->s, b->rows, n, b->logits);
        for (size_t k = first, r = 0; k < i; k++)
            if (items[k].logits)
                memcpy(items[k].logits, b->logits + r++ * nv, nv * sizeof(float));
    }
}

hinge_status fwd_batch_run(fwd_batch *b, const fwd_item *items, size_t count)
{
    hinge_status s = check(b, items, count);
    if (s != HINGE_OK || count == 0)
        return s;
    run_layers(b, items, count);
    run_head(b, items, count);
    return HINGE_OK;
}
