/* Host side of shaders/layer.comp: a small llama-style layer's decode step
 * in one dispatch of one workgroup.
 *
 * When it is chosen (the rule, from the model's sizes and the device's
 * limits, never a model's name): a CPU device runs each dispatch as a
 * round trip through the driver's thread pool (lavapipe: queue the grid,
 * wake the workers, wait), tens of microseconds whatever the work, and a
 * GPU pays a barrier between dependent dispatches; the layer's usual five
 * dispatches (qkv_rope, attention, wo, gate_up, down) cost four of those
 * more than one. One workgroup on one CPU thread does about 10^8..10^9
 * multiply-adds a second, so a layer of at most DEV_LAYER_MAX_WEIGHTS
 * (2^17) weights takes about as long as, or less than, the four round
 * trips it saves; larger layers keep their five dispatches, whose
 * workgroups spread over the threads (or a GPU's cores). stories260K
 * (n_embd 64, n_ff 172: 45056 weights a layer) runs whole; Gemma 3 270M
 * (about 3.9M) does not. The vectors must also fit HK_LY_FLOATS of shared
 * memory (and the device's limit), and the attention lanes' registers:
 * n_head divides HK_WG, head_dim <= LY_MAX_HEAD_DIM. */
#include <stddef.h>
#include <stdio.h>

#include "spirv.h"
#include "vk_ops_impl.h"

enum { LY_MAX_HEAD_DIM = 32 };

/* Mirrors layer.comp's push block. */
typedef struct ly_push {
    uint32_t d, n_ff, n_head, n_head_kv, rope_dim, s_qkv, s_o, s_gu, s_d, o_qkv, o_o, o_g, o_u, o_d, window, pos0;
    float pos_scale, scale, eps;
} ly_push;
_Static_assert(sizeof(ly_push) == 76, "layer.comp push block");
_Static_assert(sizeof(ly_push) <= DEV_OP_PUSH_WORDS * 4, "push words");

static uint32_t max3(uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* Floats of shared memory layer.comp uses for these shapes (its top). */
static uint64_t shared_floats(const dev_layer_args *a)
{
    const dev_attn_shape *sh = &a->s;
    uint32_t d = a->wqkv->cols, q = sh->n_head * sh->head_dim, kv = sh->n_head_kv * sh->head_dim;
    return 2ull * d + 2ull * q + 2ull * kv + max3(q + 2 * kv, a->gate->rows, HK_WG * (sh->head_dim + 2));
}

static bool whole(const dev_weight *w) { return w->part_rows >= w->rows; }

/* The five matrices, in the push block's order. */
static void matrices(const dev_layer_args *a, const dev_weight *m[5])
{
    m[0] = a->wqkv, m[1] = a->wo, m[2] = a->gate, m[3] = a->up, m[4] = a->down;
}

/* The span of one buffer the five matrices lie in: [*lo, *hi) bytes; false
 * when they are in several buffers. */
static bool span(const dev_layer_args *a, VkDeviceSize *lo, VkDeviceSize *hi)
{
    const dev_weight *m[5];
    matrices(a, m);
    *lo = m[0]->buf.off, *hi = 0;
    for (int i = 0; i < 5; i++) {
        VkDeviceSize end = m[i]->buf.off + (VkDeviceSize)m[i]->rows * m[i]->row_bytes;
        if (m[i]->buf.buf != m[0]->buf.buf)
            return false;
        *lo = m[i]->buf.off < *lo ? m[i]->buf.off : *lo;
        *hi = end > *hi ? end : *hi;
    }
    return true;
}

/* Why a runs as the usual kernels (a static string), or NULL. */
static const char *unfit(const dev_ops *o, const dev_layer_args *a)
{
    const dev_attn_shape *sh = &a->s;
    uint32_t d = a->wqkv->cols, n_ff = a->gate->rows, hd = sh->head_dim;
    uint32_t q = sh->n_head * hd, kv = sh->n_head_kv * hd;
    const dev_weight *mats[5];
    matrices(a, mats);
    const dev_features *f = dev_ctx_features(o->c);
    VkDeviceSize lo, hi;
    if (!o->v.layer)
        return "whole layers are off";
    uint64_t weights = (uint64_t)d * (q + 2 * kv) + (uint64_t)q * d + 3ull * d * n_ff;
    if (weights > DEV_LAYER_MAX_WEIGHTS)
        return "the layer is too large for one workgroup";
    if (shared_floats(a) > HK_LY_FLOATS || HK_LY_FLOATS * 4 + HK_WG * 4 > o->v.shared_bytes)
        return "its vectors do not fit the shared memory";
    if (sh->head_dim_v != hd || hd > LY_MAX_HEAD_DIM || HK_WG % sh->n_head)
        return "the heads do not fit the attention lanes";
    for (size_t i = 0; i < 5; i++)
        if (mats[i]->type != a->wqkv->type || !whole(mats[i]) || mats[i]->buf.off % 16)
            return "the matrices are of several types or bound in parts";
    if (!span(a, &lo, &hi) || (hi - lo) / 16 > f->max_texel_elements || (f->texel_align && lo % f->texel_align))
        return "the matrices are not in one texel buffer's reach";
    if (a->k_cache->size / 16 > f->max_texel_elements || a->v_cache->size / 16 > f->max_texel_elements)
        return "the caches are past a texel buffer's reach";
    if (a->wqkv->rows != q + 2 * kv || a->wo->rows != d || a->wo->cols != q || a->up->rows != n_ff ||
        a->gate->cols != d || a->up->cols != d || a->down->rows != d || a->down->cols != n_ff)
        return "the matrices' shapes are not a layer's";
    return NULL;
}

static hinge_status check_args(dev_ops *o, const dev_layer_args *a, const char *what)
{
    hinge_status s = ops_check_attn_shape(o, &a->s, what);
    if (s != HINGE_OK)
        return s;
    if (!a->wqkv || !a->wo || !a->gate || !a->up || !a->down || !a->x || !a->attn_norm || !a->ffn_norm ||
        !a->k_cache || !a->v_cache || !a->freq || !a->pos)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: the matrices, x, norms, caches, freq and pos are required",
                        what);
    uint32_t d = a->wqkv->cols;
    if ((a->act != HK_F_SWIGLU && a->act != HK_F_GEGLU) || a->rope_dim > a->s.head_dim || a->rope_dim % 2 ||
        a->freq->size < (uint64_t)a->rope_dim / 2 * 4 || a->attn_norm->size < (uint64_t)d * 4 ||
        a->ffn_norm->size < (uint64_t)d * 4 || a->x->size < (uint64_t)d * 4)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: act 0x%x (swiglu or geglu), rope_dim %u (even, <= head_dim) "
                        "or a vector too short", what, a->act, a->rope_dim);
    return HINGE_OK;
}

static hinge_status write_set(dev_ops *o, const dev_layer_args *a, struct dev_kernel *k, dev_op *op,
                              const char *what)
{
    VkDeviceSize lo, hi;
    span(a, &lo, &hi);
    VkDescriptorBufferInfo bi[HK_LY_BINDINGS] = {
        [HK_LY_B_W] = {.buffer = a->wqkv->buf.buf, .offset = lo, .range = hi - lo},
    };
    const dev_buf *bufs[HK_LY_BINDINGS] = {
        [HK_LY_B_X] = a->x,
        [HK_LY_B_ANORM] = a->attn_norm,
        [HK_LY_B_FNORM] = a->ffn_norm,
        [HK_LY_B_KC] = a->k_cache,
        [HK_LY_B_VC] = a->v_cache,
        [HK_LY_B_FREQ] = a->freq,
        [HK_LY_B_POS] = a->pos,
        [HK_LY_B_KC2] = a->k_cache,
        [HK_LY_B_VC2] = a->v_cache,
    };
    hinge_status s = HINGE_OK;
    for (uint32_t i = HK_LY_B_X; i < HK_LY_BINDINGS && s == HINGE_OK; i++)
        s = ops_buf_info(o, bufs[i], what, &bi[i]);
    return s == HINGE_OK ? ops_write_set(o, k, bi, &op->sets[0]) : s;
}

hinge_status dev_prepare_layer(dev_ops *o, const dev_layer_args *a, dev_op *op)
{
    const char *what = "dev_prepare_layer";
    hinge_status s = check_args(o, a, what);
    if (s != HINGE_OK)
        return s;
    const char *why = unfit(o, a);
    if (why)
        return dev_refuse(o->c, HINGE_ERR_UNSUPPORTED, "%s: %s", what, why);
    int t = ops_type_index(a->wqkv->type);
    char name[40];
    snprintf(name, sizeof name, "layer_%s%s", t < 0 ? "none" : ops_type_name(a->wqkv->type),
             o->rows_sg ? "_sg" : "");
    if (t < 0 || !dev_spirv_find(name))
        return dev_refuse(o->c, HINGE_ERR_UNSUPPORTED, "%s: no kernel %s", what, name);
    struct dev_kernel *k = &o->layer[t]; /* (one flavour per dev_ops) */
    const VkFormat u4 = VK_FORMAT_R32G32B32A32_UINT, f4 = VK_FORMAT_R32G32B32A32_SFLOAT;
    const VkFormat texel[HK_LY_BINDINGS] = {[HK_LY_B_W] = u4, [HK_LY_B_KC] = f4, [HK_LY_B_VC] = f4};
    if ((s = ops_kernel_init(o, k, name, HK_LY_BINDINGS, sizeof(ly_push), texel)) != HINGE_OK)
        return s;
    const dev_attn_shape *sh = &a->s;
    uint32_t hd = sh->head_dim;
    uint32_t spec[OPS_SPEC_IDS] = {(a->neox ? HK_F_NEOX : 0) | a->act | ops_sub_flags(a->wqkv->type, a->wqkv->type),
                                   hd, 0};
    VkPipeline pipe;
    if ((s = ops_pipeline_spec(o, k, spec, &pipe)) != HINGE_OK)
        return s;
    uint64_t kv = (uint64_t)sh->n_head_kv * hd;
    uint64_t rows_k = a->k_cache->size / 4 / kv, rows_v = a->v_cache->size / 4 / kv;
    uint64_t cache = rows_k < rows_v ? rows_k : rows_v;
    if (cache == 0)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: a cache cannot hold one position", what);
    VkDeviceSize lo, hi;
    span(a, &lo, &hi);
    ly_push pc = {
        .o_qkv = (uint32_t)((a->wqkv->buf.off - lo) / 4),
        .o_o = (uint32_t)((a->wo->buf.off - lo) / 4),
        .o_g = (uint32_t)((a->gate->buf.off - lo) / 4),
        .o_u = (uint32_t)((a->up->buf.off - lo) / 4),
        .o_d = (uint32_t)((a->down->buf.off - lo) / 4),
        .d = a->wqkv->cols,
        .n_ff = a->gate->rows,
        .n_head = sh->n_head,
        .n_head_kv = sh->n_head_kv,
        .rope_dim = a->rope_dim,
        .s_qkv = (uint32_t)(a->wqkv->row_bytes / 4),
        .s_o = (uint32_t)(a->wo->row_bytes / 4),
        .s_gu = (uint32_t)(a->gate->row_bytes / 4),
        .s_d = (uint32_t)(a->down->row_bytes / 4),
        .window = a->window,
        .pos_scale = a->pos_scale > 0.0f ? a->pos_scale : 1.0f,
        .scale = a->scale,
        .eps = a->eps,
    };
    if (a->up->row_bytes != a->gate->row_bytes)
        return dev_refuse(o->c, HINGE_ERR_UNSUPPORTED, "%s: gate and up rows differ", what);
    ops_op_init(op, DEV_OP_LAYER, k, &pc, sizeof pc);
    op->pipe = pipe;
    op->at_pos0 = offsetof(ly_push, pos0) / 4;
    op->groups_x = 1;
    op->max_m = 1;
    op->max_pos = cache > UINT32_MAX ? UINT32_MAX : (uint32_t)cache;
    return write_set(o, a, k, op, what);
}
