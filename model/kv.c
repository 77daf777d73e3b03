/* The KV budget (see kv.h) and a fwd_ctx's KV blocks (forward.h,
 * forward_impl.h). The pool is a counter, not an allocator: the blocks
 * come from malloc, which reuses freed ones well enough, and counting them
 * here keeps the limit exact. */
#include "kv.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "forward_impl.h"

struct kv_pool {
    size_t budget;             /* 0: no limit */
    atomic_size_t used;
    atomic_uint_fast64_t refusals;
};

hinge_status kv_pool_create(size_t budget, kv_pool **out)
{
    kv_pool *p = calloc(1, sizeof *p);
    if (!p)
        return HINGE_ERR_NOMEM;
    p->budget = budget;
    atomic_init(&p->used, 0);
    atomic_init(&p->refusals, 0);
    *out = p;
    return HINGE_OK;
}

void kv_pool_destroy(kv_pool *p)
{
    free(p);
}

bool kv_pool_take(kv_pool *p, size_t bytes)
{
    size_t cur = atomic_load_explicit(&p->used, memory_order_relaxed);
    do {
        if (p->budget && (bytes > p->budget || cur > p->budget - bytes)) {
            atomic_fetch_add_explicit(&p->refusals, 1, memory_order_relaxed);
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(&p->used, &cur, cur + bytes, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

void kv_pool_give(kv_pool *p, size_t bytes)
{
    atomic_fetch_sub_explicit(&p->used, bytes, memory_order_relaxed);
}

size_t kv_pool_used(const kv_pool *p) { return atomic_load_explicit(&p->used, memory_order_relaxed); }
size_t kv_pool_budget(const kv_pool *p) { return p->budget; }
uint64_t kv_pool_refusals(const kv_pool *p) { return atomic_load_explicit(&p->refusals, memory_order_relaxed); }

/* ---- a fwd_ctx's blocks ---- */

/* 64-byte aligned, as the SIMD kernels like their rows. */
static float *block_alloc(size_t bytes)
{
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}

hinge_status fwd_kv_init(fwd_ctx *f)
{
    const model_hparams *hp = &f->m->hp;
    size_t nl = f->b - f->a;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim, v_dim = (size_t)hp->n_head_kv * hp->head_dim_v;
    f->shift = f->pool ? KV_BLOCK_SHIFT : 31;
    f->blk_pos = f->pool ? KV_BLOCK : f->ctx;
    f->n_blk = (f->ctx + f->blk_pos - 1) / f->blk_pos;
    f->blk_bytes = (((size_t)f->blk_pos * (kv_dim + v_dim) * sizeof(float)) + 63) & ~(size_t)63;
    for (uint32_t il = f->a; il < f->b; il++)
        f->has_swa |= model_layer_is_swa(hp, il) && hp->swa_window > 0;
    atomic_init(&f->kv_bytes, 0);
    f->blk = calloc(nl * f->n_blk + 1, sizeof *f->blk);
    if (!f->blk)
        return HINGE_ERR_NOMEM;
    f->bytes += (nl * f->n_blk + 1) * sizeof *f->blk;
    if (f->pool)
        return HINGE_OK;
    for (size_t l = 0; l < nl; l++) {
        if (!(f->blk[l] = block_alloc(f->blk_bytes)))
            return HINGE_ERR_NOMEM;
        f->bytes += f->blk_bytes;
        atomic_fetch_add(&f->kv_bytes, f->blk_bytes);
    }
    f->kv_end = f->ctx;
    return HINGE_OK;
}

void fwd_kv_finish(fwd_ctx *f)
{
    size_t nl = f->b - f->a;
    for (size_t i = 0; f->blk && i < nl * f->n_blk; i++) {
        if (f->blk[i] && f->pool)
            kv_pool_give(f->pool, f->blk_bytes);
        free(f->blk[i]);
    }
    free(f->blk);
    f->blk = NULL;
    atomic_store(&f->kv_bytes, 0);
}

size_t fwd_kv_bytes(const fwd_ctx *f)
{
    return f ? atomic_load_explicit(&f->kv_bytes, memory_order_relaxed) : 0;
}

size_t fwd_kv_bytes_max(const fwd_ctx *f)
{
    if (!f)
        return 0;
    const model_hparams *hp = &f->m->hp;
    size_t total = 0;
    for (uint32_t il = f->a; il < f->b; il++) {
        size_t n = f->n_blk;
        if (f->pool && model_layer_is_swa(hp, il) && hp->swa_window > 0) {
            size_t w = (hp->swa_window + f->blk_pos - 1) / f->blk_pos + 1; /* a window straddles one more */
            n = w < n ? w : n;
        }
        total += n * f->blk_bytes;
    }
    return total;
}

static void give_block(fwd_ctx *f, size_t i)
{
    free(f->blk[i]);
    f->blk[i] = NULL;
    kv_pool_give(f->pool, f->blk_bytes);
    atomic_fetch_sub(&f->kv_bytes, f->blk_bytes);
}

/* The sliding-window layers' blocks wholly behind the window of a pass
 * starting at pos0 (it attends from pos0 + 1 - window on) go back. Later
 * passes may then start no lower than the first position whose window
 * lies in the blocks kept. */
static void release_window(fwd_ctx *f, uint32_t pos0)
{
    const model_hparams *hp = &f->m->hp;
    if (!f->has_swa || pos0 + 1 <= hp->swa_window)
        return;
    uint32_t lo = (pos0 + 1 - hp->swa_window) >> f->shift;
    if (lo <= f->swa_lo)
        return;
    for (uint32_t il = f->a; il < f->b; il++) {
        if (!model_layer_is_swa(hp, il))
            continue;
        for (uint32_t i = f->swa_lo; i < lo; i++)
            if (f->blk[(size_t)(il - f->a) * f->n_blk + i])
                give_block(f, (size_t)(il - f->a) * f->n_blk + i);
    }
    f->swa_lo = lo;
    f->pos_floor = (lo << f->shift) + hp->swa_window - 1;
}

/* Blocks [first, last] of layer index l that are not held. */
static size_t missing(const fwd_ctx *f, size_t l, uint32_t first, uint32_t last)
{
    size_t n = 0;
    for (uint32_t i = first; i <= last; i++)
        n += !f->blk[l * f->n_blk + i];
    return n;
}

/* The first block layer il keeps. */
static uint32_t first_block(const fwd_ctx *f, uint32_t il)
{
    return model_layer_is_swa(&f->m->hp, il) ? f->swa_lo : 0;
}

hinge_status fwd_kv_reserve(fwd_ctx *f, uint32_t pos0, uint32_t end)
{
    if (pos0 >= end || end > f->ctx || pos0 < f->pos_floor)
        return hinge_fail(f->errmsg, sizeof f->errmsg, HINGE_ERR_RANGE,
                          "positions [%u, %u) are not in [%u, %u) of the context", pos0, end, f->pos_floor, f->ctx);
    if (!f->pool)
        return HINGE_OK;
    release_window(f, pos0);
    uint32_t last = (end - 1) >> f->shift;
    size_t need = 0;
    for (uint32_t il = f->a; il < f->b; il++)
        need += missing(f, il - f->a, first_block(f, il), last);
    if (need && !kv_pool_take(f->pool, need * f->blk_bytes))
        return hinge_fail(f->errmsg, sizeof f->errmsg, HINGE_ERR_NOMEM,
                          "the KV budget of %zu bytes has %zu in use: %zu more do not fit",
                          kv_pool_budget(f->pool), kv_pool_used(f->pool), need * f->blk_bytes);
    size_t taken = 0;
    for (uint32_t il = f->a; il < f->b && taken < need; il++) {
        for (uint32_t i = first_block(f, il); i <= last; i++) {
            float **b = &f->blk[(size_t)(il - f->a) * f->n_blk + i];
            if (*b)
                continue;
            if (!(*b = block_alloc(f->blk_bytes))) {
                kv_pool_give(f->pool, (need - taken) * f->blk_bytes);
                return hinge_fail(f->errmsg, sizeof f->errmsg, HINGE_ERR_NOMEM, "out of memory for KV blocks");
            }
            taken++;
            atomic_fetch_add(&f->kv_bytes, f->blk_bytes);
        }
    }
    uint32_t covered = (last + 1) << f->shift;
    covered = covered < f->ctx ? covered : f->ctx;
    f->kv_end = covered > f->kv_end ? covered : f->kv_end;
    return HINGE_OK;
}
