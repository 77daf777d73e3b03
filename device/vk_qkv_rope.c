/* Host side of shaders/qkv_rope.comp: the decode step's q | k | v product,
 * q/k norms, RoPE and cache write in one dispatch. */
#include <stddef.h>
#include <stdio.h>

#include "spirv.h"
#include "vk_ops_impl.h"

/* Mirrors qkv_rope.comp's push block. */
typedef struct qr_push {
    uint32_t ncols, stride, stride2, split, nrows, m, x_off, x_stride, n_head, n_head_kv, head_dim, rope_dim, hpw,
        q_off, pos0;
    float pos_scale, eps;
} qr_push;
_Static_assert(sizeof(qr_push) == 68, "qkv_rope.comp push block");
_Static_assert(sizeof(qr_push) <= DEV_OP_PUSH_WORDS * 4, "push words");

/* The kernel for W's type (and W2's), made on first use;
 * HINGE_ERR_UNSUPPORTED when this build has none (the pairs are listed in
 * shaders/meson.build). */
static hinge_status qkv_kernel(dev_ops *o, uint32_t type, uint32_t type2, const char *what, struct dev_kernel **out)
{
    int t = ops_type_index(type), t2 = ops_type_index(type2);
    if (t < 0 || t2 < 0)
        return dev_refuse(o->c, HINGE_ERR_UNSUPPORTED, "%s: no kernel for %s weights", what,
                          ops_type_name(t < 0 ? type : type2));
    char name[40];
    const char *fl = o->mv == DEV_MV_SPLIT_SUBGROUP ? "sg" : o->mv == DEV_MV_SPLIT_SHARED ? "sh" : "rows";
    if (t == t2)
        snprintf(name, sizeof name, "qkv_rope_%s_%s", ops_type_name(type), fl);
    else
        snprintf(name, sizeof name, "qkv_rope_%s_%s_%s", ops_type_name(type), ops_type_name(type2), fl);
    if (!dev_spirv_find(name)) /* a type pair without a variant */
        return dev_refuse(o->c, HINGE_ERR_UNSUPPORTED, "%s: no variant for %s with %s", what, ops_type_name(type),
                          ops_type_name(type2));
    *out = &o->qkv[t][t2];
    return ops_kernel_init(o, *out, name, HK_QR_BINDINGS, sizeof(qr_push), o->rows_sg ? ops_rows_texels() : NULL);
}

/* Heads a workgroup owns: those that divide HK_WG share one, else one each. */
static uint32_t heads_per_group(uint32_t head_dim)
{
    return head_dim < HK_WG && HK_WG % head_dim == 0 ? HK_WG / head_dim : 1;
}

/* Why a should run unfused (a static string), or NULL. */
static const char *unfusable(const dev_ops *o, const dev_qkv_args *a)
{
    const dev_attn_shape *sh = &a->s;
    uint32_t hd = sh->head_dim, rows = (sh->n_head + 2 * sh->n_head_kv) * hd;
    uint32_t split = a->w2 ? a->w->rows : rows;
    if (!o->v.fuse)
        return "fusion is off";
    if (o->mv == DEV_MV_ROWS && !o->rows_sg)
        return "the rows variant without subgroups has no fused kernel";
    if (sh->head_dim_v != hd)
        return "head_dim_v differs from head_dim";
    if (split % (heads_per_group(hd) * hd))
        return "the second weight type starts inside a workgroup's heads";
    if (a->w->part_rows < a->w->rows || (a->w2 && a->w2->part_rows < a->w2->rows))
        return "the weights are bound in parts";
    if (a->w->rows + (a->w2 ? a->w2->rows : 0) != rows || (a->w2 && a->w2->cols != a->w->cols))
        return "the weights are not q | k | v";
    return NULL;
}

static hinge_status check_args(dev_ops *o, const dev_qkv_args *a, uint32_t flags, const char *what)
{
    const dev_attn_shape *sh = &a->s;
    hinge_status s = ops_check_attn_shape(o, sh, what);
    if (s != HINGE_OK)
        return s;
    bool qkn = a->q_norm || a->k_norm, res = flags & HK_F_RESNORM;
    if (!a->w || !a->x || !a->norm || !a->q_out || !a->k_cache || !a->v_cache || !a->freq || !a->pos ||
        (qkn && !(a->q_norm && a->k_norm)) || (res && !(a->res_o && a->res_w && a->x_out)))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: w, x, norm, q_out, caches, freq, pos (both q/k norms or none; "
                        "res_o, res_w, x_out for HK_F_RESNORM) are required", what);
    if (flags & ~(HK_F_NORM | HK_F_RESNORM))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: flags 0x%x: only HK_F_NORM or HK_F_RESNORM", what, flags);
    uint32_t d = a->w->cols, hd = sh->head_dim;
    if (a->x_off % 4 || a->rope_dim > hd || a->rope_dim % 2 || a->freq->size < (uint64_t)a->rope_dim / 2 * 4 ||
        a->norm->size < (uint64_t)d * 4 || (res && a->res_w->size < (uint64_t)d * 4) ||
        (qkn && (a->q_norm->size < hd * 4u || a->k_norm->size < hd * 4u)))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: x offset %u (a multiple of 4), rope_dim %u (even, <= %u) or a "
                        "weight too short", what, a->x_off, a->rope_dim, hd);
    if (ops_capacity(a->x, a->x_off, 0, d) == 0 || (res && ops_capacity(a->res_o, a->x_off, 0, d) == 0) ||
        (res && ops_capacity(a->x_out, a->x_off, 0, d) == 0) ||
        ops_capacity(a->q_out, a->q_off, 0, sh->n_head * hd) == 0)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: x, o, x_out or q_out cannot hold one position", what);
    return HINGE_OK;
}

static hinge_status write_set(dev_ops *o, const dev_qkv_args *a, bool res, struct dev_kernel *k, dev_op *op,
                              const char *what)
{
    const dev_weight *w = a->w, *w2 = a->w2 ? a->w2 : a->w;
    bool qkn = a->q_norm != NULL;
    VkDescriptorBufferInfo bi[HK_QR_BINDINGS];
    bi[HK_MM_B_W] = (VkDescriptorBufferInfo){.buffer = w->buf.buf, .offset = w->buf.off,
                                             .range = (VkDeviceSize)w->rows * w->row_bytes};
    bi[HK_MM_B_W2] = (VkDescriptorBufferInfo){.buffer = w2->buf.buf, .offset = w2->buf.off,
                                              .range = (VkDeviceSize)w2->rows * w2->row_bytes};
    const dev_buf *bufs[HK_QR_BINDINGS] = {
        [HK_MM_B_X] = a->x,
        [HK_MM_B_Y] = a->q_out,
        [HK_MM_B_NORM] = a->norm,
        [HK_MM_B_RO] = res ? a->res_o : a->x,
        [HK_MM_B_RW] = res ? a->res_w : a->norm,
        [HK_MM_B_XOUT] = res ? a->x_out : a->q_out, /* (not written without HK_F_RESNORM) */
        [HK_QR_B_KC] = a->k_cache,
        [HK_QR_B_VC] = a->v_cache,
        [HK_QR_B_QNORM] = qkn ? a->q_norm : a->freq,
        [HK_QR_B_KNORM] = qkn ? a->k_norm : a->freq,
        [HK_QR_B_FREQ] = a->freq,
        [HK_QR_B_POS] = a->pos,
    };
    hinge_status s = HINGE_OK;
    for (uint32_t i = 0; i < HK_QR_BINDINGS && s == HINGE_OK; i++)
        if (bufs[i])
            s = ops_buf_info(o, bufs[i], what, &bi[i]);
    return s == HINGE_OK ? ops_write_set(o, k, bi, &op->sets[0]) : s;
}

hinge_status dev_prepare_qkv_rope(dev_ops *o, const dev_qkv_args *a, uint32_t flags, dev_op *op)
{
    const char *what = "dev_prepare_qkv_rope";
    hinge_status s = check_args(o, a, flags, what);
    if (s != HINGE_OK)
        return s;
    const char *why = unfusable(o, a);
    if (why)
        return dev_refuse(o->c, HINGE_ERR_UNSUPPORTED, "%s: %s", what, why);
    const dev_attn_shape *sh = &a->s;
    const dev_weight *w = a->w, *w2 = a->w2 ? a->w2 : a->w;
    struct dev_kernel *k = NULL;
    if ((s = qkv_kernel(o, w->type, w2->type, what, &k)) != HINGE_OK)
        return s;
    bool qkn = a->q_norm != NULL;
    uint32_t hd = sh->head_dim, heads = sh->n_head + 2 * sh->n_head_kv, hpw = heads_per_group(hd);
    /* rows flavour: where an invocation computes several rows, it prepares
     * the normed input once (constant 1: the chunks it keeps) */
    uint32_t spec[OPS_SPEC_IDS] = {
        flags | (qkn ? HK_F_QKNORM : 0) | (a->neox ? HK_F_NEOX : 0) | ops_sub_flags(w->type, w2->type), 0, 0};
    uint32_t rpl = (hpw * hd + HK_WG - 1) / HK_WG; /* 1..8; the shader unrolls 1, 2, 4 */
    rpl = rpl == 3 ? 4 : rpl > 4 ? 8 : rpl;
    if (o->rows_sg && rpl > 1)
        spec[2] = rpl;
    if (o->rows_sg && rpl > 1 && w->cols / HK_CHUNK <= OPS_MAX_XC)
        spec[1] = w->cols / HK_CHUNK;
    else if (!o->rows_sg && w->cols / HK_CHUNK * HK_CHUNK * 4 + OPS_SPLIT_SHARED <= o->v.shared_bytes)
        spec[1] = w->cols / HK_CHUNK; /* (split flavour: staged in shared memory) */
    VkPipeline pipe;
    if ((s = ops_pipeline_spec(o, k, spec, &pipe)) != HINGE_OK)
        return s;
    uint64_t rows_k = a->k_cache->size / 4 / ((uint64_t)sh->n_head_kv * hd);
    uint64_t rows_v = a->v_cache->size / 4 / ((uint64_t)sh->n_head_kv * hd);
    uint64_t cache = rows_k < rows_v ? rows_k : rows_v;
    if (cache == 0)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: a cache cannot hold one position", what);
    qr_push pc = {
        .ncols = w->cols,
        .stride = (uint32_t)(w->row_bytes / 4),
        .stride2 = (uint32_t)(w2->row_bytes / 4),
        .split = a->w2 ? w->rows : heads * hd,
        .nrows = heads * hd,
        .m = 1,
        .x_off = a->x_off,
        .n_head = sh->n_head,
        .n_head_kv = sh->n_head_kv,
        .head_dim = hd,
        .rope_dim = a->rope_dim,
        .hpw = hpw,
        .q_off = a->q_off,
        .pos_scale = a->pos_scale > 0.0f ? a->pos_scale : 1.0f,
        .eps = a->eps,
    };
    ops_op_init(op, DEV_OP_QKV_ROPE, k, &pc, sizeof pc);
    op->pipe = pipe;
    op->at_pos0 = offsetof(qr_push, pos0) / 4;
    op->groups_x = (heads + hpw - 1) / hpw;
    op->max_m = 1;
    op->max_pos = cache > UINT32_MAX ? UINT32_MAX : (uint32_t)cache;
    return write_set(o, a, flags & HK_F_RESNORM, k, op, what);
}
