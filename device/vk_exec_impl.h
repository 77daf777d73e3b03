/* hinge device: the executor's internals, shared by vk_exec.c (life cycle,
 * runs, measurement), vk_exec_build.c (weights, buffers, the op list) and
 * vk_exec_record.c (command buffers). Private to device/. */
#ifndef HINGE_DEV_VK_EXEC_IMPL_H
#define HINGE_DEV_VK_EXEC_IMPL_H

#include "vk_exec.h"
#include "vk_ops.h"
#include "vk_weights.h"

enum {
    EX_MAX_QKV = 3,          /* matrices q, k, v: grouped by weight type into <= 3 products */
    EX_MAX_CTX = 1 << 24,    /* positions */
    EX_MAX_BATCH = 4096,
    EX_DEFAULT_CTX = 4096,
    EX_DEFAULT_BATCH = 64,
};

/* One dispatch site of a pass. Matrix products have two prepared ops (the
 * matrix-vector kernel for decode, matrix-matrix for prefill); every other
 * op serves both with its m set at record time. */
typedef struct ex_step {
    const char *name;  /* static */
    int32_t layer;     /* -1: the embedding */
    bool barrier;      /* reads what an earlier step wrote: a barrier goes before it */
    bool matrix;       /* pre differs from dec */
    dev_op dec;        /* decode (m = 1) */
    dev_op pre;        /* prefill (matrix products only) */
} ex_step;

/* Layer il's weights and cache on the device. */
typedef struct ex_layer {
    dev_pool *pool;                 /* the weights and norms below */
    dev_weight qkv[EX_MAX_QKV];     /* wq | wk | wv, consecutive matrices of one type joined */
    uint32_t qkv_row0[EX_MAX_QKV];  /* first output float of each inside a qkv row */
    uint32_t n_qkv;
    dev_weight wo;                  /* (n_embd, n_head * head_dim_v) */
    dev_weight gate, up, down;      /* (n_ff, n_embd) x2, (n_embd, n_ff) */
    bool glu_fused;                 /* gate and up share type and shape: one product computes act(gate) * up */
    dev_buf attn_norm, ffn_norm;    /* (n_embd) f32 */
    dev_buf q_norm, k_norm;         /* (head_dim) f32, gemma3 */
    dev_buf post_attn_norm, post_ffn_norm; /* (n_embd) f32, gemma3 */
    dev_buf k_cache, v_cache;       /* (ctx, kv_dim), (ctx, n_head_kv * head_dim_v) f32 */
} ex_layer;

struct vk_exec {
    dev_ctx *c;                  /* borrowed */
    const model *m;              /* borrowed */
    uint32_t k, ctx, max_batch;
    uint32_t d;                  /* n_embd (a multiple of 4) */
    uint32_t q_dim, kv_dim, v_dim, o_dim;
    uint32_t qkv_stride;         /* floats per position of qkv: q | k | v, rounded up to 4 */
    uint32_t att_stride, ff_stride; /* o_dim, n_ff rounded up to 4 */
    dev_ops *ops;
    dev_pool *embd_pool;         /* the embedding matrix */
    dev_pool *act_pool;          /* activations, rope tables */
    dev_pool *kv_pool;           /* the KV cache of the k layers */
    dev_pool *host_pool;         /* host-visible: token ids, first position */
    dev_pool *rb_pool;           /* readback of the hidden state */
    dev_weight embd;             /* (n_vocab, n_embd) */
    ex_layer *layers;            /* k */
    /* activations, (max_batch, *) f32 */
    dev_buf x;                   /* residual stream, stride d */
    dev_buf xb;                  /* normed input of the next product (gemma3), stride d */
    dev_buf qkv;                 /* stride qkv_stride; q is roped in place */
    dev_buf att;                 /* attention output, stride att_stride */
    dev_buf o;                   /* wo / down output before the post-norm (gemma3), stride d */
    dev_buf g, u;                /* gate (GLU output), up (unfused only); stride ff_stride */
    dev_buf freq_global, freq_swa; /* rope_dim / 2 f32 each */
    dev_buf tok;                 /* host-visible: max_batch int32 ids of this pass */
    dev_buf pos;                 /* host-visible: one uint32, the pass's first position */
    dev_buf out;                 /* readback: (max_batch, d) f32 */

    ex_step *steps;              /* one pass: the embedding, then every layer's ops */
    uint32_t n_steps;
    uint32_t dec_dispatches;     /* of a decode step */
    VkCommandBuffer cmd_dec;     /* the decode step, recorded once */
    VkCommandBuffer cmd_dec_ts;  /* the same with timestamps (VK_NULL_HANDLE without them) */
    VkCommandBuffer cmd_pre;     /* re-recorded for each prefill chunk */
    VkQueryPool ts_pool;         /* n_steps + 1 timestamps */
    bool profiling;
    bool broken;                 /* a driver failure mid-run: every later run fails */
    bool last_profiled;
    double *op_ns;               /* n_steps: GPU time of each step in the last profiled run */
    uint64_t *ts_raw;            /* n_steps + 1: the query results of one submission */
    vk_exec_stats stats;
    char errmsg[HINGE_ERRMSG_MAX];
};

/* vk_exec_build.c: weights, buffers and the prepared ops (at creation). */
hinge_status ex_build(vk_exec *e);
void ex_free_build(vk_exec *e);

/* vk_exec_record.c */
/* Records the decode command buffers (once, at creation). */
hinge_status ex_record_decode(vk_exec *e);
/* Records cmd_pre for one chunk of m positions (prefill). */
hinge_status ex_record_prefill(vk_exec *e, uint32_t m, bool timestamps, uint32_t *dispatches);

/* Copies the context's message into e's with a prefix; returns s. */
hinge_status ex_fail_ctx(vk_exec *e, hinge_status s, const char *what);

#endif
