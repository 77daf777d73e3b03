/* Batches of the edge's sessions (vk_exec_run_batch): one command buffer
 * for the steps of several executors. The batch executor's prefill pass
 * (matrix-matrix products over its x, xb, qkv, att, ... rows) runs every
 * layer's products over all the rows active at that layer; the items are
 * sorted by first layer so that those rows are a prefix [0, rows(l)) and
 * each product is recorded with m = rows(l), starting at row 0. What is
 * per session runs through the session's own executor's prepared ops on
 * its own buffers: the rows are copied in and out around them (copies are
 * cheap next to the products, whose weights are now read once a batch):
 *   - RoPE, the KV write and attention (its KV cache, its position);
 *   - gemma3: the input norm at its first layer (the batch's products read
 *     xb, which the previous layer's post-norm writes only for the rows
 *     that ran it);
 *   - without head_rows, the head on its last row (a matrix-vector product
 *     per item); with it, the head is the batch's: the wanting items' last
 *     rows (a verify step's: all its rows, all_rows) gathered into bh_x, one
 *     matrix-matrix product (Gemma's output matrix is two thirds of its
 *     weights: read once a batch, not once a session).
 * An item without the head (a private head's layers [first, end), end
 * before the batch's) leaves at its end: its rows of x are copied out at
 * that layer boundary. Items sorted by first layer, then by end (the
 * longest first), keep the rows of a layer in one range from row 0: an
 * item that left inside it is computed along, its rows ignored.
 * A row's values thus never depend on the other rows: the products and
 * norms compute each row alone, in the same order at any m (test_vk_exec's
 * batch test holds a session's logits bitwise equal alone and batched). */
#include <string.h>

#include "vk_exec_impl.h"

hinge_status ex_build_batch_head(vk_exec *e)
{
    const model_hparams *hp = &e->m->hp;
    if (e->head_rows > e->max_batch) /* the device's cap on rows per dispatch lowered it */
        e->head_rows = e->max_batch;
    uint64_t rows = e->head_rows, bytes = rows * (e->d + hp->n_vocab) * sizeof(float) + 2 * EX_SLACK;
    uint64_t rb = rows * hp->n_vocab * sizeof(float) + EX_SLACK;
    if (bytes > SIZE_MAX / 2)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_NOMEM, "batch head: %llu bytes",
                          (unsigned long long)bytes);
    hinge_status s = dev_pool_create(e->c, DEV_MEM_DEVICE, (size_t)bytes, "batch head", &e->bh_pool);
    if (s == HINGE_OK)
        s = dev_pool_create(e->c, DEV_MEM_READBACK, (size_t)rb, "batch logits readback", &e->bh_rb_pool);
    if (s == HINGE_OK)
        s = dev_pool_alloc(e->bh_pool, (size_t)(rows * e->d * sizeof(float)), 16, "batch head rows", &e->bh_x);
    if (s == HINGE_OK)
        s = dev_pool_alloc(e->bh_pool, (size_t)(rows * hp->n_vocab * sizeof(float)), 16, "batch logits",
                           &e->bh_logits);
    if (s == HINGE_OK)
        s = dev_pool_alloc(e->bh_rb_pool, (size_t)(rows * hp->n_vocab * sizeof(float)), 16, "batch logits out",
                           &e->bh_out);
    if (s != HINGE_OK)
        return ex_fail_ctx(e, s, "batch head");
    dev_mm_args a = {.w = &e->w->outw, .x = &e->bh_x, .x_stride = e->d, .norm = &e->w->out_norm, .flags = HK_F_NORM,
                     .eps = hp->rms_eps, .y = &e->bh_logits, .y_stride = hp->n_vocab};
    return ex_prep(e, dev_prepare_matmul(e->ops, &a, &e->bh_op), "batch head", (int32_t)e->end);
}

/* The pass's steps are in layer order (the embedding's -1 first, the head's
 * `end` last): the layer's first by bisection, then its dozen by name. */
static const ex_step *find_step(const vk_exec *e, int32_t layer, const char *name)
{
    uint32_t lo = 0, hi = e->pre.n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (e->pre.steps[mid].layer < layer)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint32_t i = lo; i < e->pre.n && e->pre.steps[i].layer == layer; i++)
        if (strcmp(e->pre.steps[i].name, name) == 0)
            return &e->pre.steps[i];
    return NULL;
}

static hinge_status record_item(vk_exec *b, VkCommandBuffer cmd, const vk_exec_item *it, int32_t layer,
                                const char *name, uint32_t m)
{
    const ex_step *st = find_step(it->e, layer, name);
    hinge_status s = st ? dev_op_record(cmd, &st->op, m, 0) : HINGE_ERR_INVALID;
    if (s != HINGE_OK)
        return hinge_fail(b->errmsg, sizeof b->errmsg, s, "batch: recording %s of layer %d for %u positions", name,
                          layer, m);
    return HINGE_OK;
}

/* Item i's rows start at row[i]; the rows at layer l: up to the last of
 * the items that run it (first <= l < end). */
static uint32_t rows_at(const vk_exec_item *items, size_t n, const uint32_t *row, uint32_t l)
{
    uint32_t r = 0;
    for (size_t i = 0; i < n && items[i].e->first <= l; i++)
        if (l < items[i].e->end)
            r = row[i] + items[i].n;
    return r;
}

/* The items without the head that end at layer l: their rows of x (the
 * residual after layer l - 1) into their executor's readback buffer, before
 * layer l's ops write x again. */
static void record_leave(vk_exec *b, VkCommandBuffer cmd, const vk_exec_item *items, size_t n, const uint32_t *row,
                         uint32_t l)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (items[i].e->head || items[i].e->end != l)
            continue;
        if (!any)
            dev_cmd_barrier(cmd);
        any = true;
        ex_copy_rows(cmd, &b->x, (uint64_t)row[i] * b->d, &items[i].e->out, 0, (uint64_t)items[i].n * b->d);
    }
    if (any)
        dev_cmd_barrier(cmd);
}

/* gemma3: the input norm of the items joining at layer l > 0. */
static hinge_status record_join(vk_exec *b, VkCommandBuffer cmd, const vk_exec_item *items, size_t n,
                                const uint32_t *row, uint32_t l)
{
    size_t j0 = 0, j1;
    while (j0 < n && items[j0].e->first < l)
        j0++;
    for (j1 = j0; j1 < n && items[j1].e->first == l && items[j1].e->end > l; j1++) /* none: first = end, last */
        ex_copy_rows(cmd, &b->x, (uint64_t)row[j1] * b->d, &items[j1].e->x, 0, (uint64_t)items[j1].n * b->d);
    if (j1 == j0)
        return HINGE_OK;
    dev_cmd_barrier(cmd);
    for (size_t i = j0; i < j1; i++) {
        hinge_status s = record_item(b, cmd, &items[i], (int32_t)l, "attn_norm", items[i].n);
        if (s != HINGE_OK)
            return s;
    }
    dev_cmd_barrier(cmd);
    for (size_t i = j0; i < j1; i++)
        ex_copy_rows(cmd, &items[i].e->xb, 0, &b->xb, (uint64_t)row[i] * b->d, (uint64_t)items[i].n * b->d);
    return HINGE_OK;
}

/* RoPE, the KV write and attention of layer l for each item that runs it,
 * in its executor. */
static hinge_status record_attention(vk_exec *b, VkCommandBuffer cmd, const vk_exec_item *items, size_t n,
                                     const uint32_t *row, uint32_t l)
{
    size_t na = 0;
    while (na < n && items[na].e->first <= l)
        na++;
    dev_cmd_barrier(cmd);
    for (size_t i = 0; i < na; i++)
        if (l < items[i].e->end)
            ex_copy_rows(cmd, &b->qkv, (uint64_t)row[i] * b->qkv_stride, &items[i].e->qkv, 0,
                         (uint64_t)items[i].n * b->qkv_stride);
    static const char *const ops[] = {"rope_kv", "attention"};
    for (size_t k = 0; k < 2; k++) {
        dev_cmd_barrier(cmd);
        for (size_t i = 0; i < na; i++) {
            hinge_status s = l < items[i].e->end ? record_item(b, cmd, &items[i], (int32_t)l, ops[k], items[i].n)
                                                 : HINGE_OK;
            if (s != HINGE_OK)
                return s;
        }
    }
    dev_cmd_barrier(cmd);
    for (size_t i = 0; i < na; i++)
        if (l < items[i].e->end)
            ex_copy_rows(cmd, &items[i].e->att, 0, &b->att, (uint64_t)row[i] * b->att_stride,
                         (uint64_t)items[i].n * b->att_stride);
    return HINGE_OK;
}

/* The head on each wanting item's last row (all_rows: every row), into its
 * readback buffer. */
static hinge_status record_head(vk_exec *b, VkCommandBuffer cmd, const vk_exec_item *items, size_t n,
                                const uint32_t *row)
{
    uint64_t nv = b->m->hp.n_vocab;
    if (b->head_rows) {
        uint32_t nh = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t k = items[i].all_rows ? items[i].n : 1;
            if (!items[i].logits)
                continue;
            ex_copy_rows(cmd, &b->x, (uint64_t)(row[i] + items[i].n - k) * b->d, &b->bh_x, (uint64_t)nh * b->d,
                         (uint64_t)k * b->d);
            nh += k;
        }
        dev_cmd_barrier(cmd);
        hinge_status s = dev_op_record(cmd, &b->bh_op, nh, 0);
        if (s != HINGE_OK)
            return hinge_fail(b->errmsg, sizeof b->errmsg, s, "batch: recording the head for %u rows", nh);
        dev_cmd_barrier(cmd);
        if (nh)
            ex_copy_rows(cmd, &b->bh_logits, 0, &b->bh_out, 0, nh * nv);
        return HINGE_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (items[i].logits)
            ex_copy_rows(cmd, &b->x, (uint64_t)(row[i] + items[i].n - 1) * b->d, &items[i].e->hl, 0, b->d);
    dev_cmd_barrier(cmd);
    for (size_t i = 0; i < n; i++) {
        hinge_status s = items[i].logits ? record_item(b, cmd, &items[i], (int32_t)b->end, "head", 1) : HINGE_OK;
        if (s != HINGE_OK)
            return s;
    }
    dev_cmd_barrier(cmd);
    for (size_t i = 0; i < n; i++)
        if (items[i].logits)
            ex_copy_rows(cmd, &items[i].e->logits, 0, &items[i].e->out, 0, nv);
    return HINGE_OK;
}

static hinge_status record_batch(vk_exec *b, const vk_exec_item *items, size_t n, const uint32_t *row,
                                 uint32_t rows)
{
    VkCommandBuffer cmd = b->cmd_pre;
    hinge_status s = ex_cmd_begin(b, cmd, true);
    if (s != HINGE_OK)
        return s;
    ex_copy_rows(cmd, &b->hin, 0, &b->x, 0, (uint64_t)rows * b->d);
    dev_cmd_barrier(cmd);
    int32_t layer = -1;
    for (uint32_t i = 0; i < b->pre.n && s == HINGE_OK; i++) {
        const ex_step *st = &b->pre.steps[i];
        if (st->layer != layer && st->layer >= 0)
            record_leave(b, cmd, items, n, row, (uint32_t)st->layer);
        if (st->layer != layer && st->layer > 0 && st->layer < (int32_t)b->end && b->m->hp.post_norms)
            s = record_join(b, cmd, items, n, row, (uint32_t)st->layer);
        layer = st->layer;
        if (s != HINGE_OK)
            break;
        if (st->last_row) {
            s = record_head(b, cmd, items, n, row);
            continue;
        }
        if (st->op.kind == DEV_OP_ROPE_KV) {
            s = record_attention(b, cmd, items, n, row, (uint32_t)layer);
            continue;
        }
        if (st->op.kind == DEV_OP_ATTENTION) /* with its rope_kv, above */
            continue;
        uint32_t m = rows_at(items, n, row, (uint32_t)layer);
        if (m == 0)
            continue;
        if (st->barrier)
            dev_cmd_barrier(cmd);
        s = dev_op_record(cmd, &st->op, m, 0);
        if (s != HINGE_OK)
            hinge_fail(b->errmsg, sizeof b->errmsg, s, "batch: recording %s of layer %d for %u positions",
                       st->name, st->layer, m);
    }
    dev_cmd_barrier(cmd);
    return s == HINGE_OK ? ex_cmd_end(b, cmd) : s;
}

static hinge_status check_items(vk_exec *b, vk_exec_item *items, size_t n, uint32_t *row, uint32_t *rows)
{
    if (b->broken)
        return hinge_fail(b->errmsg, sizeof b->errmsg, HINGE_ERR_VULKAN, "the device failed in an earlier run; "
                          "the executor must be recreated");
    if (n == 0 || b->embed || !b->head || b->first != 0)
        return hinge_fail(b->errmsg, sizeof b->errmsg, HINGE_ERR_INVALID, "batch: %s",
                          n ? "not a batch executor (layers [0, N) + head, no embed)" : "no items");
    uint64_t r = 0, nh = 0;
    for (size_t i = 0; i < n; i++) {
        const vk_exec_item *it = &items[i];
        vk_exec *e = it->e;
        nh += !it->logits ? 0 : it->all_rows ? it->n : 1;
        /* with the head: logits or none, all_rows through b's head; without: out */
        bool out_ok = e && (e->head ? !it->out && (!it->all_rows || (it->logits && b->head_rows))
                                    : it->out && !it->logits && !it->all_rows);
        if (!e || e->m != b->m || e->end > b->end || e->embed || !out_ok || it->n > e->max_batch)
            return hinge_fail(b->errmsg, sizeof b->errmsg, HINGE_ERR_INVALID, "batch: item %zu: %s", i,
                              !e ? "no executor" : it->n > e->max_batch ? "more rows than its executor's batch"
                              : !out_ok ? "outputs its executor does not give (logits with the head, all_rows with "
                                          "the batch's head; rows out without)"
                                        : "an executor of another kind");
        if (e->batch_item && it->logits && !b->head_rows)
            return hinge_fail(b->errmsg, sizeof b->errmsg, HINGE_ERR_INVALID, "batch: item %zu: a batch item's "
                              "executor has no head; the batch has none (head_rows)", i);
        hinge_status s = ex_check_input(e, NULL, items[i].hidden, items[i].n, items[i].pos0);
        if (s != HINGE_OK)
            return hinge_fail(b->errmsg, sizeof b->errmsg, s, "batch: item %zu: %s", i, e->errmsg);
        row[i] = (uint32_t)r;
        r += items[i].n;
    }
    if (r > b->max_batch || (b->head_rows && nh > b->head_rows))
        return hinge_fail(b->errmsg, sizeof b->errmsg, HINGE_ERR_INVALID, "batch: %llu rows, over %u, or %llu "
                          "heads, over %u", (unsigned long long)r, b->max_batch, (unsigned long long)nh,
                          b->head_rows);
    *rows = (uint32_t)r;
    return HINGE_OK;
}

/* Whether a goes before b: the rows of a layer's items are then one range
 * from row 0, with the items that left it at the range's ends of their
 * groups. */
static bool before(const vk_exec_item *a, const vk_exec_item *b)
{
    return a->e && b->e && (a->e->first < b->e->first || (a->e->first == b->e->first && a->e->end > b->e->end));
}

hinge_status vk_exec_run_batch(vk_exec *b, vk_exec_item *items, size_t n)
{
    for (size_t i = 1; i < n; i++) /* by first layer, then the longest first, stable: rows_at */
        for (size_t j = i; j > 0 && before(&items[j], &items[j - 1]); j--) {
            vk_exec_item t = items[j];
            items[j] = items[j - 1];
            items[j - 1] = t;
        }
    uint32_t row[EX_MAX_BATCH], rows = 0; /* n <= max_batch <= EX_MAX_BATCH, checked below */
    hinge_status s = n <= b->max_batch ? check_items(b, items, n, row, &rows)
                                       : hinge_fail(b->errmsg, sizeof b->errmsg, HINGE_ERR_INVALID, "too many items");
    if (s != HINGE_OK)
        return s;
    for (size_t i = 0; i < n; i++) {
        memcpy((float *)b->hin.host + (size_t)row[i] * b->d, items[i].hidden, (size_t)items[i].n * b->d * sizeof(float));
        *(uint32_t *)items[i].e->pos.host = items[i].pos0;
    }
    s = record_batch(b, items, n, row, rows);
    if (s != HINGE_OK)
        return s;
    s = dev_submit_wait(b->c, b->cmd_pre);
    if (s != HINGE_OK) {
        b->broken = true;
        for (size_t i = 0; i < n; i++) /* their buffers were in the lost submission */
            items[i].e->broken = true;
        return ex_fail_ctx(b, s, "batch run");
    }
    size_t nv = b->m->hp.n_vocab, nh = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = items[i].all_rows ? items[i].n : 1;
        if (items[i].logits)
            memcpy(items[i].logits, b->head_rows ? (const float *)b->bh_out.host + nh * nv : items[i].e->out.host,
                   k * nv * sizeof(float));
        else if (items[i].out)
            memcpy(items[i].out, items[i].e->out.host, (size_t)items[i].n * b->d * sizeof(float));
        nh += items[i].logits ? k : 0;
    }
    return HINGE_OK;
}
