/* hinge device: the layer executor. Runs the embedding and layers [0, k) of
 * a loaded model on the Vulkan device, with the KV cache of those k layers
 * in device memory, exactly as model/forward.c does on the CPU (llama and
 * gemma3), so that the CPU's fwd_layers [k, N) + fwd_head can take over the
 * hidden state it returns.
 *
 * Life cycle:
 *   load:      vk_exec_create uploads the weights of the embedding and the k
 *              layers, allocates activations and the KV cache, builds every
 *              pipeline and descriptor set, and records the decode command
 *              buffer (and its profiled twin) once.
 *   per token: vk_exec_run with n = 1 writes the token id and the position
 *              into a small host-visible buffer that the embedding, RoPE and
 *              attention kernels read, submits the prerecorded decode
 *              command buffer once, waits once and copies the hidden state
 *              out. Nothing is recorded, allocated or created. (Why a
 *              buffer rather than re-recorded push constants: with the
 *              position in memory the decode command buffer never changes,
 *              so it is recorded once and its dispatches cost no host time
 *              per token; the kernels add the buffer's value to the
 *              recorded pos0 = 0, HK_F_POSBUF.) The decode pass runs fused
 *              kernels, five dispatches per layer (vk_exec_fused.c).
 *   prefill:   vk_exec_run with n > 1 records one command buffer per chunk
 *              of max_batch positions (matrix-matrix kernels, the ops one
 *              by one), submits and waits once per chunk.
 *   self-test: at creation, unless HINGE_VK_FORCE=selftest=0, the kernels of
 *              one layer run on small random inputs against the CPU
 *              (vk_selftest.c): a driver that computes one of them wrongly
 *              is refused with HINGE_ERR_UNSUPPORTED and a message naming
 *              the op, rather than trusted to give silent garbage.
 *
 * The model and the context are borrowed and must outlive the executor. One
 * thread at a time; the executor uses the context's queue and fence, so work
 * of the context (uploads) must not be in flight during a run. */
#ifndef HINGE_DEV_VK_EXEC_H
#define HINGE_DEV_VK_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "status.h"
#include "vk_context.h"

typedef struct vk_exec vk_exec;
typedef struct vk_model vk_model;

/* Builds an executor for embed + layers [0, k) of m, 0 <= k <= n_layer
 * (k = 0: the embedding only), with a KV cache of ctx positions (0:
 * min(n_ctx_train, 4096)) and passes of at most max_batch positions (0: 64;
 * lowered to the device's cap on rows per dispatch, vk_exec_max_batch).
 * Kernel variants follow the device and HINGE_VK_FORCE (vk_ops.h).
 * Errors, with the detail in err:
 *   HINGE_ERR_INVALID      k, ctx (> 2^24) or max_batch (> 4096) out of range;
 *   HINGE_ERR_NOMEM        the weights, activations or KV cache do not fit
 *                          the device (over a heap or maxMemoryAllocationSize,
 *                          or the driver is out of memory), or the host is;
 *   HINGE_ERR_UNSUPPORTED  a weight type or shape the shaders do not read, a
 *                          head shape the kernels do not take, a buffer
 *                          larger than one storage descriptor spans, a
 *                          device feature the kernels need, or a kernel
 *                          that fails the self-test ("self-test: <op> ...");
 *   HINGE_ERR_INVALID      also: a malformed HINGE_VK_FORCE;
 *   HINGE_ERR_VULKAN       any other driver failure.
 * *out is untouched on failure. */
hinge_status vk_exec_create(dev_ctx *c, const model *m, uint32_t k, uint32_t ctx, uint32_t max_batch, vk_exec **out,
                            char *err, size_t errlen);

/* The general executor (the edge's): layers [first, end) of m, taking
 * either token ids (embed, first = 0: the embedding runs first) or hidden
 * rows ((n, n_embd) f32, the output of layer first - 1, or the embedding
 * when first = 0), and ending either with the hidden state or with the
 * head (head, end = n_layer: the final norm and the output matrix on the
 * last row; the logits are read back). vk_exec_create is the device's
 * case {0, k, embed, no head}. first = end is allowed (the head alone).
 * Errors as vk_exec_create; HINGE_ERR_INVALID for a range outside the
 * model, embed with first > 0, or head with end < n_layer. */
/* The weights of the embedding (embed), layers [first, end) and the head
 * (head) of m uploaded to c, for executors to share (the edge: one per
 * model, not one per session). m and c are borrowed and must outlive it;
 * executors borrow it and must be destroyed before it. Errors as
 * vk_exec_create's for the weights. */
typedef struct vk_model_config {
    uint32_t first, end;
    bool embed, head;
} vk_model_config;
hinge_status vk_model_create(dev_ctx *c, const model *m, const vk_model_config *cfg, vk_model **out, char *err,
                             size_t errlen);
void vk_model_destroy(vk_model *w); /* NULL is a no-op */
/* Bytes of device memory w holds (its pools; NULL: 0). */
uint64_t vk_model_device_bytes(const vk_model *w);

typedef struct vk_exec_config {
    uint32_t first, end;  /* layers [first, end) */
    bool embed;           /* input: token ids (vk_exec_run); else hidden rows (vk_exec_run_hidden) */
    bool head;            /* output: the logits of the last row; else the hidden rows */
    uint32_t ctx;         /* KV cache positions (0: as vk_exec_create) */
    uint32_t max_batch;   /* positions per prefill pass (0: as vk_exec_create) */
    const vk_model *weights; /* the model's uploaded weights, covering [first, end) and the embedding and head
                             as asked (HINGE_ERR_INVALID otherwise); NULL: the executor uploads its own */
    bool no_selftest;     /* skip the self-test: an executor of the same model on this context passed it
                             (the edge tests once at start-up, not per session) */
    uint32_t head_rows;   /* a batch executor's (vk_exec_run_batch) head: one matrix-matrix product over
                             up to this many items' last rows (the output matrix read once a batch);
                             0: each item's own executor's head */
    bool batch_item;      /* only what vk_exec_run_batch uses of an item's executor when the batch has the
                             head (head_rows): its KV cache and positions, RoPE, the KV write and attention
                             (gemma3: the input norm of its first layer) and the rows they are copied
                             through; no products, no head, no decode pass. Needs head (the batch's), no
                             embed and weights (HINGE_ERR_INVALID otherwise); vk_exec_run/_run_hidden refuse
                             it (the edge's sessions: a fraction of the memory and creation time) */
    bool few_rows;        /* prefill products also shaped for 1, 2, 4 ... rows (dev_ops_config.few): a batch
                             executor's, whose batches are often a row or a few (a session alone); costs
                             more pipeline builds at creation (CPU devices: five more per product) */
} vk_exec_config;
hinge_status vk_exec_create_range(dev_ctx *c, const model *m, const vk_exec_config *cfg, vk_exec **out, char *err,
                                  size_t errlen);
/* Bytes of device KV cache an executor of `layers` layers and ctx positions
 * (0: the default) allocates: what the edge counts against its budget. */
uint64_t vk_exec_kv_bytes(const model *m, uint32_t layers, uint32_t ctx);

void vk_exec_destroy(vk_exec *e); /* NULL is a no-op */
/* Bytes of memory e allocated from the device (its pools of every kind:
 * KV cache, activations, host-visible step and readback buffers, the batch
 * head's, weights it uploaded itself; not borrowed weights, not the
 * driver's own for pipelines and descriptors). */
uint64_t vk_exec_device_bytes(const vk_exec *e);
const char *vk_exec_errmsg(const vk_exec *e); /* the last error's detail; owned by e */

uint32_t vk_exec_layers(const vk_exec *e);    /* k (end - first) */
uint32_t vk_exec_ctx(const vk_exec *e);       /* KV cache positions */
uint32_t vk_exec_max_batch(const vk_exec *e); /* positions per prefill pass */
/* The kernel variants in use, e.g. "matvec rows, reductions subgroup, ..."
 * (owned by e). */
const char *vk_exec_describe(const vk_exec *e);

/* Embeds tokens[0 .. n) and runs layers [0, k) on positions pos0 .. pos0+n-1,
 * writing those rows of the KV cache (rows >= pos0 written earlier are
 * overwritten: a caller may rewind) and attending to rows [0, pos] (or the
 * sliding window). hidden_out gets the (n, n_embd) f32 result, row-major.
 * n = 1 replays the prerecorded decode step. Errors: HINGE_ERR_INVALID
 * (n = 0), HINGE_ERR_RANGE (a token id outside the vocabulary, pos0 + n >
 * ctx), HINGE_ERR_VULKAN (the device was lost or hung: the executor is
 * unusable afterwards and says so), HINGE_ERR_NOMEM. */
hinge_status vk_exec_run(vk_exec *e, const int32_t *tokens, size_t n, uint32_t pos0, float *hidden_out);

/* The same for an executor without embed: hidden ((n, n_embd) f32) is the
 * input of layer first at positions pos0 .. pos0+n-1. out gets, with head,
 * the n_vocab logits of the last row (NULL: the head is skipped where it
 * can be: a prompt's chunks whose logits nobody samples), else the (n,
 * n_embd) hidden rows. Errors as vk_exec_run; HINGE_ERR_INVALID for the
 * wrong kind of input (tokens to an executor without embed and back). */
hinge_status vk_exec_run_hidden(vk_exec *e, const float *hidden, size_t n, uint32_t pos0, float *out);

/* ---- batches (the edge) ---- */

/* One session's step in a batch: its executor (no embed, the batch
 * executor's model, ending at or before the batch executor's end), n hidden
 * rows ((n, n_embd) f32, the input of layer first) at positions pos0 ..
 * pos0+n-1, and its output:
 *   - an executor with the head (a full one, or a batch item's:
 *     vk_exec_config.batch_item, which needs b's head_rows for logits):
 *     logits gets the last row's n_vocab logits
 *     (NULL: no head for it), or with all_rows every row's (n * n_vocab
 *     floats, row i's at i * n_vocab: a speculative verify step; through
 *     the batch executor's head, counting n of its head_rows);
 *   - an executor without it (layers [first, end), end <= the batch's: the
 *     edge's part of a private head): out gets the n rows of the residual
 *     after layer end - 1 ((n, n_embd) f32; it may be hidden: the input is
 *     read first). first = end passes the rows through unchanged. */
typedef struct vk_exec_item {
    vk_exec *e;
    const float *hidden;
    uint32_t n, pos0;
    float *logits;
    bool all_rows;
    float *out;
} vk_exec_item;

/* Runs the items' rows through batch executor b (layers [0, end) + head,
 * no embed, sharing the weights) in one submit and one wait: each layer's
 * matrix products over the rows of every item whose layers include it
 * (weights read once per batch), each item's RoPE, KV write and
 * attention through its own executor (its KV cache, its position), the
 * head on the last row (all_rows: every row) of the items that want
 * logits, with its own executor's head (or b's head over all of them:
 * vk_exec_config.head_rows). An item joins at its executor's first layer
 * and leaves at its end. Sorts items by first layer (in place). A row's
 * results do not depend on the other rows of the batch (the kernels
 * compute each row alone), and they are those of a batch of that item
 * alone, not vk_exec_run_hidden's (whose decode runs matrix-vector
 * kernels). Errors: HINGE_ERR_INVALID (no items, more rows than b's
 * max_batch or head rows than its head_rows, all_rows without b's
 * head_rows, a batch item's executor wanting logits of a batch without
 * head_rows, an item with more rows than its executor's max_batch, a
 * mismatched executor or output), the others as vk_exec_run_hidden's (an
 * item's detail in b's errmsg). */
hinge_status vk_exec_run_batch(vk_exec *b, vk_exec_item *items, size_t n);

/* ---- measurement ---- */

/* With profiling on, runs write a GPU timestamp after every dispatch (the
 * decode step submits its profiled twin; prefill records them). Off by
 * default: timestamps cost a little. HINGE_ERR_UNSUPPORTED when the device
 * has no compute timestamps. */
hinge_status vk_exec_set_profiling(vk_exec *e, bool on);

/* Counters of the last vk_exec_run. */
typedef struct vk_exec_stats {
    uint32_t positions;  /* n */
    uint32_t chunks;     /* passes of <= max_batch positions */
    uint32_t dispatches; /* vkCmdDispatch calls executed */
    uint32_t submits;    /* vkQueueSubmit calls */
    uint32_t waits;      /* vkWaitForFences calls */
    uint32_t recorded;   /* command buffers recorded by the run (0 for decode) */
    double wall_ns;      /* vk_exec_run, from entry to return */
    double gpu_ns;       /* profiling: the sum of the ops' GPU times; else 0 */
} vk_exec_stats;
void vk_exec_get_stats(const vk_exec *e, vk_exec_stats *out);

/* The ops of the last run's pass (decode for one position, prefill for
 * more; before any run, decode), in execution order: the embedding, then
 * each layer's ops. After a profiled run, ns is the op's GPU time in that
 * run (summed over its chunks); 0 otherwise. */
typedef struct vk_exec_op_info {
    int32_t layer;    /* -1: the embedding (or the hidden input); end: the head */
    const char *name; /* "qkv", "rope_kv", "attention", ... (static) */
    uint32_t dispatches;
    double ns;
} vk_exec_op_info;
uint32_t vk_exec_op_count(const vk_exec *e);
/* HINGE_ERR_RANGE for i >= vk_exec_op_count. */
hinge_status vk_exec_op(const vk_exec *e, uint32_t i, vk_exec_op_info *out);
/* GPU time of the last profiled run per stage: ns[0] the embedding (or the
 * hidden input), ns[1 + l - first] layer l (k + 1 entries; with head, one
 * more: the head). HINGE_ERR_INVALID unless the last run was
 * profiled. */
hinge_status vk_exec_layer_times(const vk_exec *e, double *ns);

#endif
