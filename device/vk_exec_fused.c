/* The decode pass: the op list one decode step replays, with as few
 * dispatches as the kernels allow, since on a CPU device each dispatch
 * costs tens of microseconds whatever its work (docs/performance.md).
 *
 * Per layer, five dispatches:
 *   qkv_rope   norm(x) [gemma3: of the deferred residual], q | k | v, q/k
 *              norms, RoPE, k and v into the cache (qkv_rope.comp)
 *   attention
 *   wo         llama: x += Wo att (HK_F_ACC); gemma3: o = Wo att
 *   gate_up    norm(x) [gemma3: of x + norm(o) * post_attn_norm, stored into
 *              the residual's other buffer], act(Wg .) * (Wu .)
 *   down       llama: x += Wd g; gemma3: o = Wd g
 * gemma3 norms each block's output before adding it to the residual; that
 * needs the whole output, so the consumer (the next qkv_rope or gate_up)
 * does it (HK_F_RESNORM), reading x and o and writing the sum into the
 * residual's other buffer; after the last layer the host adds the last
 * norm(o) * post_ffw_norm to the read-back residual. Where a fused kernel
 * does not fit (a head shape or weight-type mix without a variant, fusion
 * forced off), the step runs as the prefill pass's ops do, one by one, with
 * the same results.
 *
 * A layer small enough for one workgroup (dev_prepare_layer's rule: at
 * most 2^17 weights, llama-style) is one dispatch instead of the five
 * (layer.comp).
 *
 * Counts (embedding + k layers): stories260K 1 + k; Gemma 3 270M
 * 1 + 5 k (v in q8_0 where q and k are q5_0: the q5_0 + q8_0 variant).
 * With the head (the edge's executors): one more, and for gemma3 one more
 * again (the last post-norm on the device). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "vk_exec_impl.h"

/* The input of a layer's q | k | v: x normed (in), or for gemma3 after
 * layer 0 the residual x_in + norm(o) * res_w, stored into x_out. */
typedef struct qkv_in {
    const dev_buf *x, *res_w, *x_out;
} qkv_in;

/* q | k | v, norms, RoPE and the cache write: fused, else the products and
 * rope_kv. */
static hinge_status add_qkv_rope(vk_exec *e, uint32_t il, const qkv_in *in)
{
    const model_hparams *hp = &e->m->hp;
    const ex_layer *X = &e->w->layers[il];
    uint32_t flags = in->res_w ? HK_F_RESNORM : HK_F_NORM;
    if (X->n_qkv <= 2) {
        dev_qkv_args a = {
            .s = {hp->n_head, hp->n_head_kv, hp->head_dim, hp->head_dim_v},
            .w = &X->qkv[0],
            .w2 = X->n_qkv == 2 ? &X->qkv[1] : NULL,
            .x = in->x,
            .norm = &X->attn_norm,
            .res_o = in->res_w ? &e->o : NULL,
            .res_w = in->res_w,
            .x_out = in->x_out,
            .q_out = &e->qkv,
            .k_cache = &e->cache[il].k,
            .v_cache = &e->cache[il].v,
            .q_norm = hp->qk_norm ? &X->q_norm : NULL,
            .k_norm = hp->qk_norm ? &X->k_norm : NULL,
            .freq = ex_rope_freq(e, il),
            .rope_dim = hp->rope_dim,
            .neox = hp->rope_neox,
            .pos_scale = model_layer_is_swa(hp, il) ? 1.0f : hp->rope_scale,
            .pos = &e->pos,
            .eps = hp->rms_eps,
        };
        ex_step *st = ex_add_step(e, "qkv_rope", (int32_t)il, true);
        st->args.qkv = a;
        st->flags = flags;
        hinge_status s = dev_prepare_qkv_rope(e->ops, &a, flags, &st->op);
        if (s != HINGE_ERR_UNSUPPORTED && s != HINGE_ERR_VULKAN)
            return ex_prep(e, s, "qkv_rope", (int32_t)il);
        /* no fused kernel for these shapes, or the driver could not make its
         * pipeline (as Mali-G52's fails on some: llama.cpp #9664): the ops
         * one by one */
        e->building->n--;
        if (il == 0)
            hinge_log(dev_ctx_logger(e->c), s == HINGE_ERR_VULKAN ? HINGE_LOG_WARN : HINGE_LOG_INFO,
                      "vulkan: q/k/v, RoPE and the cache write unfused (%s)", dev_ctx_errmsg(e->c));
    }
    dev_mm_args mm = {.x = in->x, .x_stride = e->d, .norm = &X->attn_norm, .flags = flags, .eps = hp->rms_eps,
                      .res_o = in->res_w ? &e->o : NULL, .res_w = in->res_w, .x_out = in->x_out};
    hinge_status s = ex_add_qkv(e, il, &mm);
    return s == HINGE_OK ? ex_add_rope(e, il) : s;
}

/* The whole layer in one dispatch where it is small (dev_prepare_layer's
 * rule); HINGE_ERR_UNSUPPORTED (no step added) where not. */
static hinge_status add_layer_whole(vk_exec *e, uint32_t il)
{
    const model_hparams *hp = &e->m->hp;
    const ex_layer *X = &e->w->layers[il];
    if (X->n_qkv != 1 || !X->glu_fused || hp->qk_norm)
        return HINGE_ERR_UNSUPPORTED;
    dev_layer_args a = {
        .s = {hp->n_head, hp->n_head_kv, hp->head_dim, hp->head_dim_v},
        .wqkv = &X->qkv[0],
        .wo = &X->wo,
        .gate = &X->gate,
        .up = &X->up,
        .down = &X->down,
        .x = &e->x,
        .attn_norm = &X->attn_norm,
        .ffn_norm = &X->ffn_norm,
        .k_cache = &e->cache[il].k,
        .v_cache = &e->cache[il].v,
        .freq = ex_rope_freq(e, il),
        .rope_dim = hp->rope_dim,
        .neox = hp->rope_neox,
        .pos_scale = model_layer_is_swa(hp, il) ? 1.0f : hp->rope_scale,
        .window = model_layer_is_swa(hp, il) ? hp->swa_window : 0,
        .scale = hp->attn_scale,
        .pos = &e->pos,
        .act = hp->gelu ? HK_F_GEGLU : HK_F_SWIGLU,
        .eps = hp->rms_eps,
    };
    ex_step *st = ex_add_step(e, "layer", (int32_t)il, true);
    st->args.ly = a;
    hinge_status s = dev_prepare_layer(e->ops, &a, &st->op);
    if (s != HINGE_ERR_UNSUPPORTED)
        return ex_prep(e, s, "layer", (int32_t)il);
    e->building->n--;
    if (il == e->first)
        hinge_log(dev_ctx_logger(e->c), HINGE_LOG_INFO, "vulkan: a layer's decode step in five dispatches (%s)",
                  dev_ctx_errmsg(e->c));
    return s;
}

static hinge_status add_layer_llama(vk_exec *e, uint32_t il)
{
    const ex_layer *X = &e->w->layers[il];
    hinge_status s = add_layer_whole(e, il);
    if (s != HINGE_ERR_UNSUPPORTED)
        return s;
    qkv_in in = {.x = &e->x};
    s = add_qkv_rope(e, il, &in);
    if (s == HINGE_OK)
        s = ex_add_attention(e, il);
    dev_mm_args wo = {.w = &X->wo, .x = &e->att, .x_stride = e->att_stride, .y = &e->x, .y_stride = e->d,
                      .flags = HK_F_ACC};
    if (s == HINGE_OK)
        s = ex_add_mm(e, "wo", (int32_t)il, true, &wo);
    dev_mm_args gu = {.x = &e->x, .x_stride = e->d, .norm = &X->ffn_norm, .flags = HK_F_NORM,
                      .eps = e->m->hp.rms_eps};
    if (s == HINGE_OK)
        s = ex_add_gate_up(e, il, &gu);
    dev_mm_args down = {.w = &X->down, .x = &e->g, .x_stride = e->ff_stride, .y = &e->x, .y_stride = e->d,
                        .flags = HK_F_ACC};
    return s == HINGE_OK ? ex_add_mm(e, "ffn_down", (int32_t)il, true, &down) : s;
}

/* The residual's other buffer. */
static const dev_buf *other(const vk_exec *e, const dev_buf *x) { return x == &e->x ? &e->x2 : &e->x; }

/* *x: where the residual is (updated). */
static hinge_status add_layer_gemma(vk_exec *e, uint32_t il, const dev_buf **x)
{
    const ex_layer *X = &e->w->layers[il];
    float eps = e->m->hp.rms_eps;
    qkv_in in = {.x = *x};
    if (il > e->first) { /* the previous FFN's output joins the residual here */
        in.res_w = &e->w->layers[il - 1].post_ffn_norm;
        in.x_out = other(e, *x);
        *x = in.x_out;
    }
    hinge_status s = add_qkv_rope(e, il, &in);
    if (s == HINGE_OK)
        s = ex_add_attention(e, il);
    dev_mm_args wo = {.w = &X->wo, .x = &e->att, .x_stride = e->att_stride, .y = &e->o, .y_stride = e->d};
    if (s == HINGE_OK)
        s = ex_add_mm(e, "wo", (int32_t)il, true, &wo);
    dev_mm_args gu = {.x = *x, .x_stride = e->d, .norm = &X->ffn_norm, .flags = HK_F_RESNORM, .eps = eps,
                      .res_o = &e->o, .res_w = &X->post_attn_norm, .x_out = other(e, *x)};
    *x = gu.x_out;
    if (s == HINGE_OK)
        s = ex_add_gate_up(e, il, &gu);
    dev_mm_args down = {.w = &X->down, .x = &e->g, .x_stride = e->ff_stride, .y = &e->o, .y_stride = e->d};
    return s == HINGE_OK ? ex_add_mm(e, "ffn_down", (int32_t)il, true, &down) : s;
}

/* The host's copy of the last layer's post_ffw_norm (dequantized). */
static hinge_status keep_post_norm(vk_exec *e)
{
    const weight *w = &e->m->layers[e->end - 1].post_ffn_norm;
    e->post_w = malloc(e->d * sizeof(float));
    e->post_tmp = malloc(e->d * sizeof(float));
    if (!e->post_w || !e->post_tmp)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_NOMEM, "post-norm: out of host memory");
    if (w->type == QT_F32)
        memcpy(e->post_w, w->data, e->d * sizeof(float));
    else
        quant_dequant_row(w->type, w->data, e->post_w, e->d);
    e->dec_post = true;
    return HINGE_OK;
}

hinge_status ex_build_decode(vk_exec *e)
{
    const model_hparams *hp = &e->m->hp;
    hinge_status s = ex_pass_init(e, &e->dec, true);
    if (s == HINGE_OK && e->embed)
        s = ex_add_embed(e);
    const dev_buf *x = &e->x;
    for (uint32_t il = e->first; il < e->end && s == HINGE_OK; il++)
        s = hp->post_norms ? add_layer_gemma(e, il, &x) : add_layer_llama(e, il);
    e->dec_x = x;
    if (s != HINGE_OK || !(hp->post_norms && e->k > 0))
        return s == HINGE_OK && e->head ? ex_add_head(e) : s;
    if (!e->head)
        return keep_post_norm(e);
    /* the head reads the whole residual: the last FFN's output joins it on
     * the device (one dispatch more than the host's add) */
    const ex_layer *L = &e->w->layers[e->end - 1];
    s = ex_add_post_norm(e, e->end - 1, "post_ffw_norm", x, &L->post_ffn_norm, NULL);
    return s == HINGE_OK ? ex_add_head(e) : s;
}
