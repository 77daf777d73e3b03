/* hinge device: the executor's internals, shared by vk_exec.c (life cycle,
 * runs, measurement), vk_exec_build.c (weights, buffers, the prefill op
 * list), vk_exec_fused.c (the decode op list), vk_exec_record.c (command
 * buffers) and vk_selftest.c (the start-up self-test). Private to device/. */
#ifndef HINGE_DEV_VK_EXEC_IMPL_H
#define HINGE_DEV_VK_EXEC_IMPL_H

#include "vk_exec.h"
#include "vk_ops.h"
#include "vk_weights.h"

enum {
    EX_SLACK = 512,          /* alignment slack per pool allocation (storage-descriptor alignment is at most
                                256 bytes on every device we know; dev_pool_alloc checks) */
    EX_MAX_QKV = 3,          /* matrices q, k, v: grouped by weight type into <= 3 products */
    EX_MAX_CTX = 1 << 24,    /* positions */
    EX_MAX_BATCH = 4096,
    EX_DEFAULT_CTX = 4096,
    EX_DEFAULT_BATCH = 64,
};

/* A step's prepare arguments, kept for the self-test (vk_selftest.c),
 * which prepares the first layer's steps again on buffers of its own. */
typedef union ex_args {
    dev_mm_args mm;    /* DEV_OP_MATVEC, DEV_OP_MATMUL */
    dev_qkv_args qkv;  /* DEV_OP_QKV_ROPE */
    dev_layer_args ly; /* DEV_OP_LAYER */
    dev_attn_args at;  /* DEV_OP_ATTENTION */
    dev_rope_args rk;  /* DEV_OP_ROPE_KV */
    dev_embed_args em; /* DEV_OP_EMBED */
    dev_norm_args rn;  /* DEV_OP_RMSNORM */
    struct {
        const dev_buf *a, *b;
        uint32_t per_pos, flags;
    } ew;              /* DEV_OP_GLU */
} ex_args;

/* One dispatch site of a pass: its op is prepared for the pass (decode:
 * matrix-vector and fused kernels, m = 1; prefill: matrix-matrix kernels
 * and the others with m set at record time). */
typedef struct ex_step {
    const char *name;  /* static */
    int32_t layer;     /* -1: the embedding; end: the head */
    bool barrier;      /* reads what an earlier step wrote: a barrier goes before it */
    bool last_row;     /* the head: the last position's residual is copied into hl before it, and it runs
                          on that one row (recorded with m = 1) */
    dev_op op;
    ex_args args;      /* what op was prepared from */
    uint32_t flags;    /* DEV_OP_QKV_ROPE: its flags (the others' are in args) */
} ex_step;

/* The ops of one pass, in order. */
typedef struct ex_pass {
    ex_step *steps;
    uint32_t n, cap;
    bool decode;       /* prepared for m = 1 (matrix-vector products) */
    uint32_t dispatches; /* of one run of the pass at m = 1 */
} ex_pass;

/* Layer il's weights on the device (a vk_model's). */
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
} ex_layer;

/* Layer il's KV cache (an executor's). */
typedef struct ex_cache {
    dev_buf k, v;                   /* (ctx, kv_dim), (ctx, n_head_kv * head_dim_v) f32 */
} ex_cache;

struct vk_model {
    dev_ctx *c;                  /* borrowed */
    const model *m;              /* borrowed */
    uint32_t first, end;
    bool embed, head;
    dev_pool *embd_pool;         /* the embedding matrix */
    dev_pool *head_pool;         /* the output norm and (untied or without embed) the output matrix */
    dev_weight embd;             /* (n_vocab, n_embd) (embed) */
    dev_weight outw;             /* the output matrix (head; a copy of embd's handle when tied) */
    dev_buf out_norm;            /* (n_embd) f32 (head) */
    ex_layer *layers;            /* end entries, [first, end) used: indexed by the model's layer */
    char errmsg[HINGE_ERRMSG_MAX];
};

struct vk_exec {
    dev_ctx *c;                  /* borrowed */
    const model *m;              /* borrowed */
    uint32_t first, end;         /* layers [first, end) */
    uint32_t k, ctx, max_batch;  /* k = end - first */
    bool embed, head;            /* vk_exec_config */
    bool batch_item;             /* vk_exec_config: only the KV cache, rope_kv and attention (and their
                                    buffers): no products, head, decode pass or command buffers */
    uint32_t d;                  /* n_embd (a multiple of 4) */
    uint32_t q_dim, kv_dim, v_dim, o_dim;
    uint32_t qkv_stride;         /* floats per position of qkv: q | k | v, rounded up to 4 */
    uint32_t att_stride, ff_stride; /* o_dim, n_ff rounded up to 4 */
    dev_ops *ops;
    const vk_model *w;           /* the weights: borrowed (vk_exec_config.weights) or own */
    vk_model *own;               /* the weights it uploaded itself; NULL when borrowed */
    ex_cache *cache;             /* end entries, [first, end) used */
    dev_pool *act_pool;          /* activations, rope tables */
    dev_pool *kv_pool;           /* the KV cache of the k layers */
    dev_pool *host_pool;         /* host-visible: token ids, first position */
    dev_pool *rb_pool;           /* readback of the hidden state */
    /* activations, (max_batch, *) f32 */
    dev_buf x;                   /* residual stream, stride d */
    dev_buf x2;                  /* decode, gemma3: the residual's other buffer (a consumer that
                                    adds the block before reads one and writes the other) */
    dev_buf xb;                  /* normed input of the next product (gemma3), stride d */
    dev_buf qkv;                 /* stride qkv_stride; q is roped in place */
    dev_buf att;                 /* attention output, stride att_stride */
    dev_buf o;                   /* wo / down output before the post-norm (gemma3), stride d */
    dev_buf g, u;                /* gate (GLU output), up (unfused only); stride ff_stride */
    dev_buf freq_global, freq_swa; /* rope_dim / 2 f32 each */
    dev_buf hl;                  /* head: the last position's residual, (1, d) */
    dev_buf logits;              /* head: (n_vocab) */
    dev_buf tok;                 /* host-visible: max_batch int32 ids of this pass */
    dev_buf hin;                 /* host-visible, without embed: the pass's (max_batch, d) input rows */
    dev_buf pos;                 /* host-visible: one uint32, the pass's first position */
    dev_buf out;                 /* readback: (max(max_batch, 2), d) f32; head: (n_vocab) */

    ex_pass pre;                 /* prefill: the embedding, then every layer's ops */
    ex_pass dec;                 /* decode: the same with the fused kernels */
    ex_pass *building;           /* the pass ex_add_* append to */
    const ex_pass *last;         /* the last run's pass (op queries) */
    const dev_buf *dec_x;        /* where the decode pass leaves the residual */
    bool dec_post;               /* gemma3 decode: the pass ends with o = the last FFN's
                                    output before its post-norm; the host adds
                                    norm(o) * post_w to the residual (saves a dispatch) */
    float *post_w;               /* (d) the last layer's post_ffw_norm, host copy */
    float *post_tmp;             /* (d) scratch of that add */
    uint32_t head_rows;          /* batch executor: rows of the batch head (vk_exec_batch.c); 0: none */
    bool few_rows;               /* vk_exec_config.few_rows */
    dev_pool *bh_pool, *bh_rb_pool; /* its buffers: */
    dev_buf bh_x, bh_logits;     /* (head_rows, d) the items' last rows, (head_rows, n_vocab) */
    dev_buf bh_out;              /* readback: (head_rows, n_vocab) */
    dev_op bh_op;                /* the head over bh_x: norm and output matrix, matrix-matrix */
    uint32_t n_steps_max;        /* max(pre.n, dec.n): timestamp slots */
    VkCommandBuffer cmd_dec;     /* the decode step, recorded once */
    VkCommandBuffer cmd_dec_ts;  /* the same with timestamps (VK_NULL_HANDLE without them) */
    VkCommandBuffer cmd_pre;     /* re-recorded for each prefill chunk */
    VkQueryPool ts_pool;         /* n_steps + 1 timestamps */
    bool profiling;
    bool broken;                 /* a driver failure mid-run: every later run fails */
    bool last_profiled;
    double *op_ns;               /* n_steps_max: GPU time of each step in the last profiled run */
    uint64_t *ts_raw;            /* n_steps_max + 1: the query results of one submission */
    vk_exec_stats stats;
    char errmsg[HINGE_ERRMSG_MAX];
};

/* vk_exec_build.c: weights, buffers and the prepared ops of both passes
 * (at creation). */
hinge_status ex_build(vk_exec *e);
void ex_free_build(vk_exec *e);

/* Steps of e->building (vk_exec_build.c, for vk_exec_fused.c). */
ex_step *ex_add_step(vk_exec *e, const char *name, int32_t layer, bool barrier);
/* HINGE_OK, or s with the context's message prefixed by the op and layer. */
hinge_status ex_prep(vk_exec *e, hinge_status s, const char *what, int32_t layer);
/* Starts p as the pass ex_add_* append to. */
hinge_status ex_pass_init(vk_exec *e, ex_pass *p, bool decode);
/* The embedding into e->x (embed; without it, the pass starts with a copy
 * of the input rows into e->x). */
hinge_status ex_add_embed(vk_exec *e);
/* gemma3: x += norm(o) * w1, then xb = norm(x) * w2 (w2 NULL: no second norm). */
hinge_status ex_add_post_norm(vk_exec *e, uint32_t il, const char *name, const dev_buf *x, const dev_buf *w1,
                              const dev_buf *w2);
/* The head: the final norm and the output matrix on hl into logits. */
hinge_status ex_add_head(vk_exec *e);
/* The rope frequencies of layer il (global or sliding-window base). */
const dev_buf *ex_rope_freq(const vk_exec *e, uint32_t il);
/* A matrix product: matvec in a decode pass, matmul in prefill. */
hinge_status ex_add_mm(vk_exec *e, const char *name, int32_t il, bool barrier, const dev_mm_args *a);
/* rope_kv (unless fused) and attention of layer il, q | k | v in e->qkv. */
hinge_status ex_add_rope(vk_exec *e, uint32_t il);
hinge_status ex_add_attention(vk_exec *e, uint32_t il);
/* The q | k | v products of layer il from a (x, norm, flags, RESNORM
 * buffers as given; w, y set per group). */
hinge_status ex_add_qkv(vk_exec *e, uint32_t il, const dev_mm_args *a);
/* The FFN's gate and up products (fused GLU or two products and glu) from
 * a (w, w2, y set here). */
hinge_status ex_add_gate_up(vk_exec *e, uint32_t il, const dev_mm_args *a);

/* vk_exec_fused.c: the decode pass (e->dec), with the fused kernels where
 * the device has them. */
hinge_status ex_build_decode(vk_exec *e);

/* vk_selftest.c: one layer's ops on small random inputs against the CPU;
 * HINGE_ERR_UNSUPPORTED naming the op that disagrees. */
hinge_status ex_selftest(vk_exec *e);

/* vk_exec_record.c */
/* Records the decode command buffers (once, at creation). */
hinge_status ex_record_decode(vk_exec *e);
/* Records cmd_pre for one chunk of m positions (prefill); head: the head
 * runs on its last position. */
hinge_status ex_record_prefill(vk_exec *e, uint32_t m, bool head, bool timestamps, uint32_t *dispatches);

/* Command buffer recording (vk_exec_record.c, for vk_exec_batch.c too). */
hinge_status ex_cmd_begin(vk_exec *e, VkCommandBuffer cmd, bool once);
hinge_status ex_cmd_end(vk_exec *e, VkCommandBuffer cmd);
/* Copies floats of src into dst (offsets in floats). */
void ex_copy_rows(VkCommandBuffer cmd, const dev_buf *src, uint64_t src_off, const dev_buf *dst, uint64_t dst_off,
                  uint64_t floats);

/* vk_exec_batch.c: the batch head's buffers and op (head_rows > 0). */
hinge_status ex_build_batch_head(vk_exec *e);

/* vk_exec.c: a run's input (tokens or hidden rows, n, pos0) against e. */
hinge_status ex_check_input(vk_exec *e, const int32_t *tokens, const float *hidden, size_t n, uint32_t pos0);

/* vk_exec.c: HINGE_ERR_UNSUPPORTED for a model the kernels do not run
 * (architecture, shapes), before anything is uploaded. */
hinge_status ex_check_model(const model *m, char *err, size_t errlen);

/* Copies the context's message into e's with a prefix; returns s. */
hinge_status ex_fail_ctx(vk_exec *e, hinge_status s, const char *what);

#endif
