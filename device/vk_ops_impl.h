/* hinge device: what the kernel host files (vk_matmul.c, vk_embed.c, ...)
 * share with vk_ops.c. Private to device/. */
#ifndef HINGE_DEV_VK_OPS_IMPL_H
#define HINGE_DEV_VK_OPS_IMPL_H

#include "vk_ops.h"

/* The weight types the shaders read, in the order of the kernel arrays. */
enum { OPS_NTYPES = 7 };

/* Matrix kernels take their HK_F_* flags as specialization constant 0, so
 * that no flag costs a run-time branch: one pipeline per flag set, made by
 * the first prepare that asks for it (at load). */
enum { OPS_FLAG_SETS = 16 };

/* Bindings of one kernel at most; texel buffer views one dev_ops may own
 * (three per matrix part at most: a hard cap, reached only by absurd models). */
enum { OPS_MAX_BINDINGS = 8, OPS_MAX_VIEWS = 1 << 20 };

struct dev_kernel {
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkShaderModule module;               /* kept for the flag sets made later */
    VkPipeline pipe;                     /* no specialization (flags 0) */
    VkPipeline by_flags[OPS_FLAG_SETS];  /* specialized kernels; [0] is pipe */
    uint32_t n_bind;
    VkFormat texel[OPS_MAX_BINDINGS];    /* uniform texel buffer of this format; 0: storage buffer */
    uint32_t push_bytes;
    char name[32];
};

struct dev_ops {
    dev_ctx *c;
    dev_mv_variant mv;
    bool sg;                            /* reductions use subgroup arithmetic */
    bool rows_sg;                       /* DEV_MV_ROWS with subgroup shuffles: the kernels shaped
                                           for CPU devices (matvec_rows.comp, attention_rows.comp);
                                           DEV_MV_ROWS without: matmul.comp MM_POS 1, attention.comp */
    uint32_t types;                     /* built: bit (1u << qtype) */
    struct dev_kernel matmul1[OPS_NTYPES]; /* matmul.comp MM_POS=1: rows matvec */
    struct dev_kernel matmuln[OPS_NTYPES]; /* matmul.comp: prefill */
    struct dev_kernel matmulr[OPS_NTYPES]; /* matvec_rows.comp MM_POS HK_MM_POS: prefill with rows_sg */
    struct dev_kernel matvec[OPS_NTYPES];  /* matvec.comp sg or sh, or matvec_rows.comp, per mv */
    struct dev_kernel embed[OPS_NTYPES];
    struct dev_kernel rmsnorm, rope_kv, attention, attention_rows, glu, add;
    VkDescriptorPool pools[64];
    uint32_t n_pools;
    VkBufferView *views;                /* made by ops_write_set, destroyed with the ops */
    uint32_t n_views, cap_views;
    char desc[96];
};

/* Push-block sizes, from the host file of each kernel (which mirrors the
 * .comp's block and asserts its size). */
extern const uint32_t dev_mm_push_bytes, dev_embed_push_bytes, dev_rmsnorm_push_bytes, dev_rope_push_bytes,
    dev_attn_push_bytes, dev_eltwise_push_bytes;

/* k's pipeline for flags (< OPS_FLAG_SETS), made now if it is not yet. */
hinge_status ops_pipeline(dev_ops *o, struct dev_kernel *k, uint32_t flags, VkPipeline *out);

/* Index of a weight type in the kernel arrays; -1 if the shaders lack it. */
int ops_type_index(uint32_t qtype);
const char *ops_type_name(uint32_t qtype); /* "q4_k" */

/* The kernel for type from arr, or NULL (with the context's message set)
 * when it was not built. */
struct dev_kernel *ops_kernel_for(dev_ops *o, struct dev_kernel *arr, uint32_t type, const char *what);

/* Descriptor info for the whole of b; HINGE_ERR_UNSUPPORTED (message naming
 * what) when b is larger than one storage descriptor may span. */
hinge_status ops_buf_info(dev_ops *o, const dev_buf *b, const char *what, VkDescriptorBufferInfo *out);

/* Allocates a set of k's layout and writes infos[0 .. k->n_bind) into it. */
hinge_status ops_write_set(dev_ops *o, const struct dev_kernel *k, const VkDescriptorBufferInfo *infos,
                           VkDescriptorSet *out);

/* Starts op for kernel k: clears it, copies the push block. */
void ops_op_init(dev_op *op, dev_op_kind kind, const struct dev_kernel *k, const void *push, uint32_t push_bytes);

/* Floats that fit in b after off: (b->size / 4) - off, or 0. */
uint64_t ops_floats_after(const dev_buf *b, uint64_t off);

/* HINGE_ERR_UNSUPPORTED unless the heads divide evenly and the head dims are
 * multiples of 4 up to HK_MAX_HEAD_DIM (vk_rope_kv.c). */
hinge_status ops_check_attn_shape(dev_ops *o, const dev_attn_shape *s, const char *what);

/* Positions a buffer holds: the largest m with off + (m-1)*stride + len <= floats. */
uint32_t ops_capacity(const dev_buf *b, uint32_t off, uint32_t stride, uint32_t len);

#endif
