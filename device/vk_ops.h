/* hinge device: the compute kernels of the forward pass and their host side.
 *
 * Life cycle, as STYLE.md asks:
 *   load:      dev_ops_create builds every pipeline the model's weight types
 *              need; dev_prepare_* binds one dispatch site (which buffers,
 *              which shapes) into a dev_op: descriptor sets are allocated and
 *              written here, once.
 *   per token: dev_op_record pushes the per-step values (positions m, first
 *              position pos0) and dispatches. It allocates nothing and
 *              creates nothing.
 * Barriers are the caller's: put dev_cmd_barrier between an op and the next
 * op that reads what it wrote.
 *
 * All activations are f32. Offsets and strides of activations are in floats;
 * where a kernel reads vec4s (matmul/matvec x, embed out, attention q) they
 * must be multiples of 4, which the prepare functions check. Every buffer
 * argument is borrowed and must outlive the op. */
#ifndef HINGE_DEV_VK_OPS_H
#define HINGE_DEV_VK_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "kernel_abi.h"
#include "vk_context.h"
#include "vk_weights.h"

typedef struct dev_ops dev_ops;

/* How decode-time matrix-vector products are laid out. */
typedef enum dev_mv_variant {
    DEV_MV_AUTO = 0,
    DEV_MV_ROWS = 1,           /* one row per invocation (CPU devices: lavapipe). With
                                  subgroup shuffles and arithmetic in subgroups >= 8 the
                                  products (decode and prefill) and attention use the
                                  kernels shaped for CPU devices: matvec_rows.comp and
                                  attention_rows.comp, weights, x, q and the caches read
                                  as uniform texel buffers */
    DEV_MV_SPLIT_SUBGROUP = 2, /* HK_MV_LANES lanes per row, subgroup shuffles (GPUs) */
    DEV_MV_SPLIT_SHARED = 3,   /* the same, meeting in shared memory (no subgroup ops) */
} dev_mv_variant;

typedef struct dev_ops_config {
    /* Weight types to build matrix kernels for: bit (1u << qtype) each;
     * 0: every type the shaders read. */
    uint32_t types;
    /* 0: chosen from the device (CPU device: rows; subgroup shuffles with
     * subgroups >= HK_MV_LANES: split-subgroup; else split-shared);
     * HINGE_VK_FORCE=matvec=... (or the older HINGE_VK_MATVEC) overrides. */
    dev_mv_variant matvec;
    /* Reductions in rmsnorm/rope/attention: > 0 subgroup arithmetic, < 0
     * shared memory, 0: subgroup arithmetic when the device has it
     * (HINGE_VK_FORCE=reduce=..., or HINGE_VK_SUBGROUP=0|1, overrides). */
    int subgroup;
    /* Fused decode kernels (qkv_rope, the deferred residual's prologue): > 0
     * yes, < 0 no, 0: yes unless HINGE_VK_FORCE=fuse=0. */
    int fuse;
    /* Only the kernels of attention (rmsnorm, rope_kv, attention): no
     * matrix, embedding or elementwise kernels (types is ignored). A batch
     * item's executor (vk_exec_config.batch_item), whose products run in
     * the batch's: fewer pipelines to build per session. */
    bool attention_only;
    /* Prefill products also get pipelines of 1, 2, 4 ... positions per
     * workgroup below the full count (dev_op.few_pipe), for batches of a row or a few (the
     * edge's batch executor): each prefill product's pipelines are built
     * about twice over at prepare (seconds per executor on lavapipe). */
    bool few;
} dev_ops_config;

/* The kernel variants a dev_ops runs, chosen at creation from the device's
 * limits and features and the overrides in the environment variable
 * HINGE_VK_FORCE, a comma-separated list of key=value (every key optional;
 * an unknown key or value is an error, HINGE_ERR_INVALID):
 *   matvec=rows|subgroup|shared  decode products: one row per invocation
 *                                (CPU devices), 8 lanes per row meeting in
 *                                subgroups, or in shared memory
 *   reduce=subgroup|shared       reductions (norms, rope, attention)
 *   subgroup=N                   pretend the subgroup size is N (0: no subgroup
 *                                operations at all), as on Mali (4..16),
 *                                Adreno (64/128) or PowerVR (128); every
 *                                choice that depends on it follows
 *   shared=BYTES                 pretend maxComputeSharedMemorySize is BYTES
 *                                (kernels that need more get their
 *                                small-memory variant)
 *   fuse=0|1                     the fused decode kernels
 *   layer=0|1                    a small layer's decode step in one
 *                                dispatch (default: with fuse; see
 *                                dev_prepare_layer)
 *   batch=N                      at most N positions (matrix rows) per
 *                                dispatch in prefill (as Adreno needs)
 *   selftest=0|1                 the executor's start-up self-test
 *   tiled=0|1                    prefill products in shared-memory tiles
 *                                (default: on GPUs with the shared memory)
 * e.g. HINGE_VK_FORCE=matvec=shared,reduce=shared,subgroup=0. A forced
 * variant the device cannot run is HINGE_ERR_UNSUPPORTED. */
typedef struct dev_variant {
    dev_mv_variant matvec;  /* never DEV_MV_AUTO */
    bool subgroup;          /* reductions use subgroup arithmetic */
    bool rows_sg;           /* matvec rows with subgroup shuffles: the kernels shaped for
                               CPU devices (matvec_rows.comp, attention_rows.comp) */
    bool fuse;              /* fused decode kernels */
    bool layer;             /* a small layer's decode step in one dispatch (layer.comp) */
    bool tiled;             /* prefill products in shared-memory tiles (matmul_tiled.comp) */
    bool selftest;          /* run the executor's self-test */
    uint32_t subgroup_size; /* as the choices saw it (forced or the device's); 0: none */
    uint32_t shared_bytes;  /* shared memory a kernel may use */
    uint32_t max_batch;     /* positions per prefill dispatch; 0: no cap */
} dev_variant;

/* Chooses the variants and makes the kernels (their pipelines are made by
 * the first prepare that needs each). c is borrowed and must outlive the
 * ops. Errors: HINGE_ERR_INVALID (a malformed HINGE_VK_FORCE),
 * HINGE_ERR_UNSUPPORTED (a forced variant the device cannot run, or a
 * device below the kernels' workgroup and shared-memory needs),
 * HINGE_ERR_VULKAN, HINGE_ERR_NOMEM; the detail is in dev_ctx_errmsg(c). */
hinge_status dev_ops_create(dev_ctx *c, const dev_ops_config *cfg, dev_ops **out);
void dev_ops_destroy(dev_ops *o); /* NULL is a no-op; frees every op's descriptor sets */

dev_mv_variant dev_ops_matvec_variant(const dev_ops *o);
bool dev_ops_subgroup(const dev_ops *o);
const dev_variant *dev_ops_variant(const dev_ops *o);
/* "matvec rows, reductions subgroup, subgroup 8, fused yes" and the like. */
const char *dev_ops_describe(const dev_ops *o);

typedef enum dev_op_kind {
    DEV_OP_NONE = 0,
    DEV_OP_MATVEC,
    DEV_OP_MATMUL,
    DEV_OP_EMBED,
    DEV_OP_RMSNORM,
    DEV_OP_ROPE_KV,
    DEV_OP_ATTENTION,
    DEV_OP_GLU,
    DEV_OP_ADD,
    DEV_OP_QKV_ROPE,
    DEV_OP_LAYER,
} dev_op_kind;

enum { DEV_OP_MAX_PARTS = 16, DEV_OP_PUSH_WORDS = 20, DEV_PUSH_NONE = 0xFF, DEV_OP_FEW = 5 };

/* One prepared dispatch site: caller storage, filled by a dev_prepare_*
 * function; read-only afterwards. Its descriptor sets belong to the
 * dev_ops. */
typedef struct dev_op {
    dev_op_kind kind;
    const struct dev_kernel *k; /* layout, owned by the dev_ops */
    VkPipeline pipe;            /* k's pipeline for this op's flags */
    uint32_t n_parts;           /* descriptor sets: matrix parts (1 for others) */
    VkDescriptorSet sets[DEV_OP_MAX_PARTS];
    uint32_t part_rows[DEV_OP_MAX_PARTS]; /* matrix rows bound in each part */
    uint32_t push[DEV_OP_PUSH_WORDS];     /* the push block, per-step fields patched at record */
    uint32_t push_bytes;
    uint8_t at_m, at_pos0;      /* push words of m (glu/add: m * per_pos) and pos0; DEV_PUSH_NONE */
    uint8_t at_row0, at_nrows;  /* push words of a matrix part's first row and row count */
    uint32_t rows_per_group;    /* matrix ops: rows per workgroup; 0: grid x is groups_x */
    uint32_t groups_x;
    uint32_t pos_per_group;     /* grid y = ceil(m / pos_per_group); 0: grid y = 1 */
    /* Prefill products (not tiled): the pipelines of 1 << i positions per
     * workgroup (those below pos_per_group), which dev_op_record takes for
     * m <= 1 << i (the smallest that holds m), few_rows[i] rows per
     * workgroup; pipe (pos_per_group) for more. Each row's result is the same in all (the positions
     * contract of shaders/rows_dot.glsl): a batch of one row costs one
     * position, not pos_per_group. NULL (dev_ops_config.few off): pipe at
     * every m. */
    VkPipeline few_pipe[DEV_OP_FEW];
    uint32_t few_rows[DEV_OP_FEW];
    uint32_t per_pos;           /* glu/add: elements per position */
    uint32_t max_m;             /* positions the bound buffers hold */
    uint32_t max_pos;           /* cache rows (rope/attention); 0: no position limit */
} dev_op;

/* ---- matrix products ---- */

typedef struct dev_mm_args {
    const dev_weight *w;   /* rows x cols */
    const dev_weight *w2;  /* up matrix for HK_F_SWIGLU/GEGLU: same type and shape; else NULL */
    const dev_buf *x;      /* position j's input at x_off + j * x_stride, cols floats */
    uint32_t x_off, x_stride;
    const dev_buf *y;      /* position j's output at y_off + j * y_stride, rows floats */
    uint32_t y_off, y_stride;
    const dev_buf *norm;   /* HK_F_NORM, HK_F_RESNORM: the norm weight, cols floats; else NULL */
    /* HK_F_RESNORM: the input is norm(x + norm(res_o) * res_w) * norm: gemma3's
     * post-norm and residual add of the block before, done by its consumer.
     * res_o and x_out are laid out as x (x_off, x_stride); x_out gets
     * x + norm(res_o) * res_w and must be another buffer than x. */
    const dev_buf *res_o, *res_w, *x_out;
    uint32_t flags;        /* HK_F_ACC, HK_F_NORM or HK_F_RESNORM, HK_F_SWIGLU or HK_F_GEGLU */
    float eps;             /* HK_F_NORM, HK_F_RESNORM */
} dev_mm_args;

/* Decode: y = W x for one position, with the device's matvec variant.
 * Record with m = 1. */
hinge_status dev_prepare_matvec(dev_ops *o, const dev_mm_args *a, dev_op *op);
/* Prefill: y = W x for m positions (any m <= the buffers' capacity), each
 * chunk of W decoded once per HK_MM_POS positions (HK_MR_POS on CPU devices;
 * per 1, 2, 4 ... for fewer with dev_ops_config.few: dev_op.few_pipe); a
 * position's result does not depend on m. */
hinge_status dev_prepare_matmul(dev_ops *o, const dev_mm_args *a, dev_op *op);

/* ---- the embedding ---- */

typedef struct dev_embed_args {
    const dev_weight *w;    /* (n_vocab, n_embd) */
    const dev_buf *tokens;  /* int32 ids; position j's at tok_off + j. The
                               caller checks ids: outside [0, rows) rows are
                               left unwritten */
    uint32_t tok_off;
    const dev_buf *out;     /* position j's row at out_off + j * out_stride */
    uint32_t out_off, out_stride;
    float scale;            /* gemma: sqrt(n_embd); else 1 */
} dev_embed_args;
hinge_status dev_prepare_embed(dev_ops *o, const dev_embed_args *a, dev_op *op);

/* ---- norms and element-wise ops ---- */

typedef struct dev_norm_args {
    uint32_t n;             /* floats per row */
    uint32_t groups;        /* rows per position (heads for per-head norms); 0: 1 */
    const dev_buf *x;
    uint32_t x_off, x_stride;
    const dev_buf *w;       /* n floats (w_stride apart per group) */
    uint32_t w_stride;      /* 0: one weight for every group */
    const dev_buf *out;     /* may be x */
    uint32_t o_off, o_stride;
    const dev_buf *res;     /* HK_F_ADD: out = res + norm(x) * w; res may be out */
    uint32_t r_off, r_stride;
    const dev_buf *w2;      /* HK_F_NORM2: out2 = norm(out) * w2 */
    const dev_buf *out2;
    uint32_t o2_off, o2_stride;
    uint32_t flags;         /* HK_F_ADD, HK_F_NORM2 */
    float eps;
} dev_norm_args;
hinge_status dev_prepare_rmsnorm(dev_ops *o, const dev_norm_args *a, dev_op *op);

/* a[i] = act(a[i]) * b[i] with act silu (flags HK_F_SWIGLU) or tanh-GELU
 * (HK_F_GEGLU); dev_prepare_add: a[i] += b[i]. per_pos elements per
 * position, positions contiguous from the start of a and b. */
hinge_status dev_prepare_glu(dev_ops *o, const dev_buf *a, const dev_buf *b, uint32_t per_pos, uint32_t flags,
                             dev_op *op);
hinge_status dev_prepare_add(dev_ops *o, const dev_buf *a, const dev_buf *b, uint32_t per_pos, dev_op *op);

/* ---- attention ---- */

typedef struct dev_attn_shape {
    uint32_t n_head, n_head_kv, head_dim, head_dim_v;
} dev_attn_shape;

typedef struct dev_rope_args {
    dev_attn_shape s;
    uint32_t rope_dim;
    bool neox;
    float pos_scale;        /* positions are divided by this (1: none) */
    const dev_buf *qkv;     /* position j: q at q_in, k at k_in, v at v_in of row j * in_stride */
    uint32_t in_stride, q_in, k_in, v_in;
    const dev_buf *q_out;   /* may be qkv */
    uint32_t q_off, q_stride;
    const dev_buf *k_cache; /* the layer's (ctx, n_head_kv * head_dim) */
    const dev_buf *v_cache; /* (ctx, n_head_kv * head_dim_v) */
    const dev_buf *q_norm, *k_norm; /* head_dim floats each, or both NULL */
    float eps;
    const dev_buf *freq;    /* rope_dim / 2 floats from dev_rope_freqs */
    const dev_buf *pos;     /* NULL, or a uint the device adds to pos0 when the
                               op runs (HK_F_POSBUF); the caller keeps
                               pos0 + that + m within the cache */
} dev_rope_args;
/* Record with (m, pos0): writes cache rows [pos0, pos0 + m) (plus *pos). */
hinge_status dev_prepare_rope_kv(dev_ops *o, const dev_rope_args *a, dev_op *op);

/* freq[i] = base^(-2i / rope_dim) for i < rope_dim / 2, computed as
 * model/ops.c op_rope does, so that the device's angles are the CPU's. */
void dev_rope_freqs(float base, uint32_t rope_dim, float *freq);

typedef struct dev_attn_args {
    dev_attn_shape s;
    uint32_t window;        /* sliding window in positions; 0: none */
    float scale;            /* multiplies q.k */
    const dev_buf *q;
    uint32_t q_off, q_stride;
    const dev_buf *k_cache, *v_cache;
    const dev_buf *out;
    uint32_t o_off, o_stride;
    const dev_buf *pos;     /* as dev_rope_args.pos */
} dev_attn_args;
/* Record with (m, pos0): queries at positions pos0 .. pos0 + m - 1 (plus
 * *pos), each attending to cache rows [lo, its position]. */
hinge_status dev_prepare_attention(dev_ops *o, const dev_attn_args *a, dev_op *op);

/* ---- fused decode: q/k/v, norms, RoPE and the cache write ---- */

typedef struct dev_qkv_args {
    dev_attn_shape s;       /* head_dim_v = head_dim */
    const dev_weight *w;    /* rows [0, split) of wq | wk | wv (all of them without w2) */
    const dev_weight *w2;   /* rows [split, q_dim + 2 kv_dim) in a second type, or NULL */
    const dev_buf *x;       /* the residual, n_embd floats at x_off (a multiple of 4) */
    uint32_t x_off;
    const dev_buf *norm;    /* attn_norm, n_embd floats */
    const dev_buf *res_o, *res_w, *x_out; /* HK_F_RESNORM as in dev_mm_args; else NULL */
    const dev_buf *q_out;   /* q head h at q_off + h * head_dim */
    uint32_t q_off;
    const dev_buf *k_cache, *v_cache; /* the layer's (ctx, n_head_kv * head_dim) */
    const dev_buf *q_norm, *k_norm;   /* head_dim floats each (gemma3), or both NULL */
    const dev_buf *freq;    /* rope_dim / 2 floats from dev_rope_freqs */
    uint32_t rope_dim;
    bool neox;
    float pos_scale;        /* positions are divided by this (1: none) */
    const dev_buf *pos;     /* the uint added to pos0 (the decode step's position) */
    float eps;
} dev_qkv_args;
/* The decode step's q | k | v product of norm(x) (HK_F_RESNORM: of the
 * deferred residual) with the q/k norms, RoPE, and k and v into cache row
 * pos0 + *pos, in one dispatch: what rmsnorm, the product and rope_kv do in
 * three. Record with m = 1. HINGE_ERR_UNSUPPORTED (nothing prepared; the
 * caller runs the unfused ops) when the shapes or types have no fused
 * kernel: head_dim_v != head_dim, heads a workgroup cannot own, a split
 * inside a workgroup's rows, a type pair without a variant, weights bound
 * in parts, fusion off. */
hinge_status dev_prepare_qkv_rope(dev_ops *o, const dev_qkv_args *a, uint32_t flags, dev_op *op);

/* ---- fused decode: a whole small layer ---- */

typedef struct dev_layer_args {
    dev_attn_shape s;       /* head_dim_v = head_dim */
    const dev_weight *wqkv; /* wq | wk | wv in one matrix */
    const dev_weight *wo, *gate, *up, *down; /* of wqkv's type */
    const dev_buf *x;       /* the residual, n_embd floats from offset 0, updated in place */
    const dev_buf *attn_norm, *ffn_norm; /* n_embd floats each */
    const dev_buf *k_cache, *v_cache;    /* the layer's (ctx, n_head_kv * head_dim) */
    const dev_buf *freq;    /* rope_dim / 2 floats from dev_rope_freqs */
    uint32_t rope_dim;
    bool neox;
    float pos_scale;        /* positions are divided by this (1: none) */
    uint32_t window;        /* sliding window in positions; 0: none */
    float scale;            /* attention: multiplies q.k */
    const dev_buf *pos;     /* the uint added to pos0 (the decode step's position) */
    uint32_t act;           /* HK_F_SWIGLU or HK_F_GEGLU */
    float eps;
} dev_layer_args;
/* A llama-style layer's decode step (norm, q | k | v, RoPE, the cache row,
 * attention, x += Wo att, norm, the gated FFN, x += Wd g) in one dispatch
 * of one workgroup: for models so small that the dispatches cost more than
 * the arithmetic (docs/performance.md). Record with m = 1.
 * HINGE_ERR_UNSUPPORTED (nothing prepared; the caller runs the layer's
 * usual kernels) unless: the variant's layer is on, the layer is small
 * (DEV_LAYER_MAX_WEIGHTS weights at most), its vectors fit HK_LY_FLOATS
 * and the device's shared memory, n_head divides HK_WG, head_dim <= 32, the
 * five matrices share a type with a kernel and lie whole in one buffer
 * within one texel buffer view (as vk_model puts a layer in one pool). */
enum { DEV_LAYER_MAX_WEIGHTS = 1 << 17 };
hinge_status dev_prepare_layer(dev_ops *o, const dev_layer_args *a, dev_op *op);

/* ---- recording (the per-token path) ---- */

/* Binds op's pipeline and sets and dispatches it for m positions starting at
 * pos0 (ignored by ops without positions). HINGE_ERR_RANGE when m or
 * pos0 + m exceeds what the op's buffers hold (nothing is recorded then). */
hinge_status dev_op_record(VkCommandBuffer cmd, const dev_op *op, uint32_t m, uint32_t pos0);

#endif
