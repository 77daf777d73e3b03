/* Host side of shaders/attention.comp. */
#include <stddef.h>

#include "vk_ops_impl.h"

/* Mirrors attention.comp's push block. */
typedef struct at_push {
    uint32_t n_head, n_head_kv, head_dim, head_dim_v, m, pos0, window, q_off, q_stride, o_off, o_stride;
    float scale;
    uint32_t flags;
} at_push;
_Static_assert(sizeof(at_push) == 52, "attention.comp push block");
_Static_assert(sizeof(at_push) <= DEV_OP_PUSH_WORDS * 4, "push words");

const uint32_t dev_attn_push_bytes = sizeof(at_push);

/* Shared memory of attention_rows.comp with qv vec4s of q per lane: the
 * octets' max and sum (8 floats each) and outputs (8 octets x 8 qv vec4s). */
static uint32_t attention_rows_shared(uint32_t qv)
{
    return 2u * 8u * 4u + 8u * 8u * qv * 16u;
}

hinge_status dev_prepare_attention(dev_ops *o, const dev_attn_args *a, dev_op *op)
{
    const char *what = "dev_prepare_attention";
    const dev_attn_shape *sh = &a->s;
    hinge_status s = ops_check_attn_shape(o, sh, what);
    if (s != HINGE_OK)
        return s;
    if (!a->q || !a->k_cache || !a->v_cache || !a->out)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: q, caches and out are required", what);
    if (a->q_off % 4 || a->q_stride % 4)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: q offset %u and stride %u must be multiples of 4", what,
                        a->q_off, a->q_stride);
    uint32_t q_dim = sh->n_head * sh->head_dim, o_dim = sh->n_head * sh->head_dim_v;
    uint32_t kv_dim = sh->n_head_kv * sh->head_dim, v_dim = sh->n_head_kv * sh->head_dim_v;
    uint32_t cap = ops_capacity(a->q, a->q_off, a->q_stride, q_dim);
    uint32_t cap_o = ops_capacity(a->out, a->o_off, a->o_stride, o_dim);
    uint64_t rows_k = a->k_cache->size / 4 / kv_dim, rows_v = a->v_cache->size / 4 / v_dim;
    uint64_t rows = rows_k < rows_v ? rows_k : rows_v;
    if (cap_o < cap)
        cap = cap_o;
    if (cap == 0 || rows == 0)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: q, out or a cache cannot hold one position", what);
    at_push pc = {
        .n_head = sh->n_head,
        .n_head_kv = sh->n_head_kv,
        .head_dim = sh->head_dim,
        .head_dim_v = sh->head_dim_v,
        .window = a->window,
        .q_off = a->q_off,
        .q_stride = a->q_stride,
        .o_off = a->o_off,
        .o_stride = a->o_stride,
        .scale = a->scale,
        .flags = a->pos ? HK_F_POSBUF : 0,
    };
    /* CPU devices: the shape llvmpipe runs well (when V reads as vec4s and
     * its shared memory fits the limit), its register arrays sized for the
     * head: ceil(dim / 32) - 1 */
    uint32_t dim = sh->head_dim > sh->head_dim_v ? sh->head_dim : sh->head_dim_v;
    uint32_t rows_shared = attention_rows_shared((dim + 31) / 32);
    struct dev_kernel *k = o->rows_sg && sh->head_dim_v % 4 == 0 && rows_shared <= o->v.shared_bytes
                               ? &o->attention_rows
                               : &o->attention;
    VkPipeline pipe = k->pipe;
    if (k == &o->attention_rows && (s = ops_pipeline(o, k, (dim + 31) / 32 - 1, &pipe)) != HINGE_OK)
        return s;
    ops_op_init(op, DEV_OP_ATTENTION, k, &pc, sizeof pc);
    op->pipe = pipe;
    op->at_m = offsetof(at_push, m) / 4;
    op->at_pos0 = offsetof(at_push, pos0) / 4;
    op->groups_x = sh->n_head;
    op->pos_per_group = 1;
    op->max_m = cap;
    op->max_pos = rows > UINT32_MAX ? UINT32_MAX : (uint32_t)rows;
    VkDescriptorBufferInfo bi[HK_AT_BINDINGS];
    s = ops_buf_info(o, a->q, what, &bi[HK_AT_B_Q]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->k_cache, what, &bi[HK_AT_B_KC]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->v_cache, what, &bi[HK_AT_B_VC]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->out, what, &bi[HK_AT_B_OUT]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->pos ? a->pos : a->q, what, &bi[HK_AT_B_POS]);
    if (s == HINGE_OK)
        s = ops_write_set(o, k, bi, &op->sets[0]);
    return s;
}
