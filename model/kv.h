/* hinge: a budget for paged KV caches, shared by many fwd_ctx.
 *
 * A fwd_ctx created with a pool (fwd_config.pool) holds its KV cache in
 * blocks of KV_BLOCK positions of one layer, taken as its positions grow
 * (fwd_kv_reserve) and given back when it is destroyed; its sliding-window
 * layers give back the blocks that fell out of their window. The pool
 * counts the bytes of the blocks held and refuses a block that would go
 * over the budget: the caller learns it before anything runs, so a full
 * edge refuses a step instead of failing inside one.
 *
 * Thread-safe: blocks are taken and given back from any thread. */
#ifndef HINGE_KV_H
#define HINGE_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Positions per block: 1 << KV_BLOCK_SHIFT. 32 positions of Gemma 3
 * 270M's layer (one kv head of 256 dims) are 64 KiB of f32 keys and
 * values: small enough that a session holds little more than it uses. */
enum { KV_BLOCK_SHIFT = 5, KV_BLOCK = 1 << KV_BLOCK_SHIFT };

typedef struct kv_pool kv_pool;

/* budget: most bytes of blocks held at once; 0: no limit. HINGE_ERR_NOMEM. */
hinge_status kv_pool_create(size_t budget, kv_pool **out);
/* Every block must have been given back (every fwd_ctx of the pool
 * destroyed). NULL is a no-op. */
void kv_pool_destroy(kv_pool *p);

/* Counts bytes as held when they fit the budget; false (nothing counted,
 * a refusal counted) when not. */
bool kv_pool_take(kv_pool *p, size_t bytes);
void kv_pool_give(kv_pool *p, size_t bytes);

size_t kv_pool_used(const kv_pool *p);
size_t kv_pool_budget(const kv_pool *p);
/* Takes refused so far. */
uint64_t kv_pool_refusals(const kv_pool *p);

#endif
