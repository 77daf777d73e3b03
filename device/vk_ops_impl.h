/* hinge device: what the kernel host files (vk_matmul.c, vk_embed.c, ...)
 * share with vk_ops.c. Private to device/. */
#ifndef HINGE_DEV_VK_OPS_IMPL_H
#define HINGE_DEV_VK_OPS_IMPL_H

#include "vk_ops.h"

/* The weight types the shaders read, in the order of the kernel arrays. */
enum { OPS_NTYPES = 8 };

/* Kernels take their HK_F_* flags (or a shape: rope_kv, attention_rows)
 * as specialization constant 0, and shapes as constants 1, 2 and 3 (the
 * rows kernels: x chunks cached per invocation, rows per invocation; the
 * prefill products: positions per workgroup), so that no flag costs a
 * run-time branch: one pipeline per set of values, made by the first
 * prepare that asks for it (at load). A kernel holds at most OPS_SPECS of
 * them. Constants 1 to 3 are given only when not 0 (the shader's default
 * stands). */
enum { OPS_SPECS = 1024, OPS_SPEC_IDS = 4 }; /* (a bound no model reaches: flags x shapes x positions x the
                                                sub-layouts of a mixed file are tens) */
/* Chunks of input a rows-kernel invocation keeps at most (constant 1;
 * n_embd <= 8192). */
enum { OPS_MAX_XC = 256 };
/* Shared memory of the split kernels besides the staged input (bytes, with
 * room for qkv_rope.comp's head). */
enum { OPS_SPLIT_SHARED = 4096 };

/* Bindings of one kernel at most, texel buffers among them; texel buffer
 * views one dev_ops may own (a hard cap, reached only by absurd models). */
enum { OPS_MAX_BINDINGS = 16, OPS_MAX_TEXELS = 6, OPS_MAX_VIEWS = 1 << 20 };

struct dev_kernel {
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkShaderModule module;               /* kept for the pipelines made later */
    VkPipeline pipe;                     /* no specialization (value 0); NULL until asked for */
    struct ops_spec {                    /* specialized pipelines made so far (grown as asked) */
        uint32_t value[OPS_SPEC_IDS];
        VkPipeline pipe;
    } *specs;
    uint32_t n_spec, cap_spec;
    uint32_t n_bind;
    VkFormat texel[OPS_MAX_BINDINGS];    /* uniform texel buffer of this format; 0: storage buffer */
    uint32_t push_bytes;
    char name[40];
};

/* qkv_rope.comp kernels: by the type of W and of W2 (its second type, or
 * the same type's kernel at [t][t]). */
enum { OPS_QKV_PAIRS = OPS_NTYPES };

struct dev_ops {
    dev_ctx *c;
    dev_variant v;                      /* the chosen variants */
    dev_mv_variant mv;                  /* v.matvec */
    bool sg;                            /* v.subgroup: reductions use subgroup arithmetic */
    bool rows_sg;                       /* v.rows_sg: DEV_MV_ROWS with subgroup shuffles: the kernels
                                           shaped for CPU devices (matvec_rows.comp, attention_rows.comp);
                                           DEV_MV_ROWS without: matmul.comp MM_POS 1, attention.comp */
    bool few;                           /* dev_ops_config.few: prefill products get dev_op.few_pipe */
    uint32_t types;                     /* built: bit (1u << qtype) */
    bool attention_only;                /* dev_ops_config's: no glu, add (nor matrix kernels: types 0) */
    struct dev_kernel matmul1[OPS_NTYPES]; /* matmul.comp MM_POS=1: rows matvec */
    struct dev_kernel matmuln[OPS_NTYPES]; /* matmul.comp: prefill (positions: constant 3) */
    struct dev_kernel matmulr[OPS_NTYPES]; /* matmul_rows.comp: prefill with rows_sg (positions: constant 3) */
    struct dev_kernel matmult[OPS_NTYPES]; /* matmul_tiled.comp: prefill with v.tiled */
    struct dev_kernel matvec[OPS_NTYPES];  /* matvec.comp sg or sh, or matvec_rows.comp, per mv */
    struct dev_kernel embed[OPS_NTYPES];
    struct dev_kernel qkv[OPS_NTYPES][OPS_QKV_PAIRS]; /* qkv_rope.comp, made on first use */
    struct dev_kernel layer[OPS_NTYPES];   /* layer.comp, made on first use */
    struct dev_kernel rmsnorm, rope_kv, attention, attention_rows, glu, add;
    VkDescriptorPool pools[64];
    uint32_t n_pools;
    VkBufferView *views;                /* made by ops_write_set, destroyed with the ops */
    uint32_t n_views, cap_views;
    char desc[128];
};

/* Push-block sizes, from the host file of each kernel (which mirrors the
 * .comp's block and asserts its size). */
extern const uint32_t dev_mm_push_bytes, dev_embed_push_bytes, dev_rmsnorm_push_bytes, dev_rope_push_bytes,
    dev_attn_push_bytes, dev_eltwise_push_bytes;

/* vk_variant.c: the variants for cfg on c's device and HINGE_VK_FORCE
 * (HINGE_ERR_INVALID for a malformed HINGE_VK_FORCE, HINGE_ERR_UNSUPPORTED
 * for a forced variant the device cannot run; the detail in c's message),
 * and a one-line description of them. */
hinge_status ops_choose_variant(dev_ctx *c, const dev_ops_config *cfg, dev_variant *out);
void ops_describe_variant(const dev_variant *v, char *buf, size_t len);

/* k's pipeline for the specialization value (flags), made now if it is not
 * yet; HINGE_ERR_UNSUPPORTED past OPS_SPECS values. */
hinge_status ops_pipeline(dev_ops *o, struct dev_kernel *k, uint32_t value, VkPipeline *out);
/* The same with constants 0, 1, 2. */
hinge_status ops_pipeline_spec(dev_ops *o, struct dev_kernel *k, const uint32_t v[OPS_SPEC_IDS], VkPipeline *out);

/* Makes k's layouts and shader module from the embedded SPIR-V spv_name
 * (no pipeline yet) unless k has them: bindings are storage buffers,
 * except those with a format in texel (may be NULL). */
hinge_status ops_kernel_init(dev_ops *o, struct dev_kernel *k, const char *spv_name, uint32_t n_bind,
                             uint32_t push_bytes, const VkFormat *texel);

/* The texel formats of the rows-shaped product kernels' bindings (W, W2:
 * uvec4; x, o: vec4; the rest storage buffers). */
const VkFormat *ops_rows_texels(void);

/* Index of a weight type in the kernel arrays; -1 if the shaders lack it. */
int ops_type_index(uint32_t qtype);
const char *ops_type_name(uint32_t qtype); /* "q4_k"; a sub-layout's type: its kernels' type */
/* The sub-layout (HK_SUB_*) a type is read in by its kernels; 0: their own. */
uint32_t ops_type_sub(uint32_t qtype);
/* The flags that give W's (type) and W2's (type2) sub-layouts. */
uint32_t ops_sub_flags(uint32_t type, uint32_t type2);

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
