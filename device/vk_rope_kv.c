/* Host side of shaders/rope_kv.comp: q/k norms, RoPE, and the KV cache write. */
#include <stddef.h>

#include "vk_ops_impl.h"

/* Mirrors rope_kv.comp's push block. */
typedef struct rk_push {
    uint32_t n_head, n_head_kv, head_dim, head_dim_v, rope_dim, m, pos0, in_stride, q_in, k_in, v_in, q_off,
        q_stride, flags;
    float pos_scale, eps;
} rk_push;
_Static_assert(sizeof(rk_push) == 64, "rope_kv.comp push block");
_Static_assert(sizeof(rk_push) <= DEV_OP_PUSH_WORDS * 4, "push words");

const uint32_t dev_rope_push_bytes = sizeof(rk_push);

static uint32_t max3(uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t m = a > b ? a : b;
    return m > c ? m : c;
}

hinge_status ops_check_attn_shape(dev_ops *o, const dev_attn_shape *s, const char *what)
{
    if (s->n_head == 0 || s->n_head_kv == 0 || s->n_head % s->n_head_kv || s->head_dim == 0 || s->head_dim_v == 0 ||
        s->head_dim > HK_MAX_HEAD_DIM || s->head_dim_v > HK_MAX_HEAD_DIM || s->head_dim % 4)
        return dev_fail(o->c, HINGE_ERR_UNSUPPORTED, "%s: %u heads of %u (v %u) over %u kv heads: heads must divide "
                        "evenly and head dims be multiples of 4 up to %d", what, s->n_head, s->head_dim,
                        s->head_dim_v, s->n_head_kv, HK_MAX_HEAD_DIM);
    return HINGE_OK;
}


hinge_status dev_prepare_rope_kv(dev_ops *o, const dev_rope_args *a, dev_op *op)
{
    const char *what = "dev_prepare_rope_kv";
    const dev_attn_shape *sh = &a->s;
    hinge_status s = ops_check_attn_shape(o, sh, what);
    if (s != HINGE_OK)
        return s;
    bool qkn = a->q_norm || a->k_norm;
    if (!a->qkv || !a->q_out || !a->k_cache || !a->v_cache || !a->freq || (qkn && !(a->q_norm && a->k_norm)))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: qkv, q_out, caches, freq (and both q/k norms or none) are "
                        "required", what);
    if (a->rope_dim > sh->head_dim || a->rope_dim % 2 || a->freq->size < (uint64_t)a->rope_dim / 2 * 4 ||
        (qkn && (a->q_norm->size < sh->head_dim * 4u || a->k_norm->size < sh->head_dim * 4u)))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: rope_dim %u (even, <= head_dim %u) or a weight is short", what,
                        a->rope_dim, sh->head_dim);
    uint32_t q_dim = sh->n_head * sh->head_dim, kv_dim = sh->n_head_kv * sh->head_dim;
    uint32_t v_dim = sh->n_head_kv * sh->head_dim_v;
    uint32_t len = max3(a->q_in + q_dim, a->k_in + kv_dim, a->v_in + v_dim);
    uint32_t cap = ops_capacity(a->qkv, 0, a->in_stride, len);
    uint32_t cap_q = ops_capacity(a->q_out, a->q_off, a->q_stride, q_dim);
    uint64_t rows_k = a->k_cache->size / 4 / kv_dim, rows_v = a->v_cache->size / 4 / v_dim;
    uint64_t rows = rows_k < rows_v ? rows_k : rows_v;
    if (cap_q < cap)
        cap = cap_q;
    if (cap == 0 || rows == 0)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: qkv, q_out or a cache cannot hold one position", what);
    rk_push pc = {
        .n_head = sh->n_head,
        .n_head_kv = sh->n_head_kv,
        .head_dim = sh->head_dim,
        .head_dim_v = sh->head_dim_v,
        .rope_dim = a->rope_dim,
        .in_stride = a->in_stride,
        .q_in = a->q_in,
        .k_in = a->k_in,
        .v_in = a->v_in,
        .q_off = a->q_off,
        .q_stride = a->q_stride,
        .flags = (a->neox ? HK_F_NEOX : 0) | (qkn ? HK_F_QKNORM : 0) | (a->pos ? HK_F_POSBUF : 0),
        .pos_scale = a->pos_scale > 0.0f ? a->pos_scale : 1.0f,
        .eps = a->eps,
    };
    VkPipeline pipe; /* specialized for the head: ceil(head_dim / HK_WG) - 1 */
    s = ops_pipeline(o, &o->rope_kv, (sh->head_dim + HK_WG - 1) / HK_WG - 1, &pipe);
    if (s != HINGE_OK)
        return s;
    ops_op_init(op, DEV_OP_ROPE_KV, &o->rope_kv, &pc, sizeof pc);
    op->pipe = pipe;
    op->at_m = offsetof(rk_push, m) / 4;
    op->at_pos0 = offsetof(rk_push, pos0) / 4;
    op->groups_x = sh->n_head + 2 * sh->n_head_kv;
    op->pos_per_group = 1;
    op->max_m = cap;
    op->max_pos = rows > UINT32_MAX ? UINT32_MAX : (uint32_t)rows;
    VkDescriptorBufferInfo bi[HK_RK_BINDINGS];
    s = ops_buf_info(o, a->qkv, what, &bi[HK_RK_B_QKV]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->q_out, what, &bi[HK_RK_B_Q]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->k_cache, what, &bi[HK_RK_B_KC]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->v_cache, what, &bi[HK_RK_B_VC]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, qkn ? a->q_norm : a->freq, what, &bi[HK_RK_B_QNORM]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, qkn ? a->k_norm : a->freq, what, &bi[HK_RK_B_KNORM]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->freq, what, &bi[HK_RK_B_FREQ]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->pos ? a->pos : a->freq, what, &bi[HK_RK_B_POS]);
    if (s == HINGE_OK)
        s = ops_write_set(o, &o->rope_kv, bi, &op->sets[0]);
    return s;
}
