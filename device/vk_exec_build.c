/* The executor at load time: device memory (weights, activations, KV
 * cache, the host-visible step buffer), uploads, and the prefill pass's
 * list of prepared ops (the decode pass's is vk_exec_fused.c's). The op
 * sequence's source of truth is model/forward.c. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "vk_exec_impl.h"

enum { SLACK = EX_SLACK, STEPS_PER_LAYER = EX_MAX_QKV + 10 };

static hinge_status build_prefill(vk_exec *e);

/* ---- activations, cache, step buffers ---- */

static hinge_status alloc(vk_exec *e, dev_pool *p, uint64_t floats, const char *what, dev_buf *out)
{
    hinge_status s = dev_pool_alloc(p, (size_t)floats * sizeof(float), 16, what, out);
    return s == HINGE_OK ? HINGE_OK : ex_fail_ctx(e, s, what);
}

static hinge_status create_pool(vk_exec *e, dev_mem_kind kind, uint64_t bytes, const char *what, dev_pool **out)
{
    if (bytes > SIZE_MAX / 2)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_NOMEM, "%s: %llu bytes", what,
                          (unsigned long long)bytes);
    hinge_status s = dev_pool_create(e->c, kind, (size_t)bytes, what, out);
    return s == HINGE_OK ? HINGE_OK : ex_fail_ctx(e, s, what);
}

/* The activations, (max_batch, *) f32, and the rope tables. A batch item
 * has only what its rope_kv and attention read and write (and, gemma3,
 * its first layer's input norm: x into xb). */
static hinge_status alloc_acts(vk_exec *e)
{
    const model_hparams *hp = &e->m->hp;
    uint64_t B = e->max_batch, d = e->d;
    bool full = !e->batch_item, xs = full || hp->post_norms;
    hinge_status s = HINGE_OK;
    if (xs && (s = alloc(e, e->act_pool, B * d, "x", &e->x)) == HINGE_OK)
        s = alloc(e, e->act_pool, B * d, "xb", &e->xb);
    if (s == HINGE_OK)
        s = alloc(e, e->act_pool, B * e->qkv_stride, "qkv", &e->qkv);
    if (s == HINGE_OK)
        s = alloc(e, e->act_pool, B * e->att_stride, "att", &e->att);
    if (s == HINGE_OK)
        s = alloc(e, e->act_pool, hp->rope_dim / 2 ? hp->rope_dim / 2 : 1, "rope freq", &e->freq_global);
    if (s == HINGE_OK)
        s = alloc(e, e->act_pool, hp->rope_dim / 2 ? hp->rope_dim / 2 : 1, "rope freq swa", &e->freq_swa);
    if (s != HINGE_OK || !full)
        return s;
    s = alloc(e, e->act_pool, B * d, "x2", &e->x2);
    if (s == HINGE_OK)
        s = alloc(e, e->act_pool, B * d, "o", &e->o);
    if (s == HINGE_OK)
        s = alloc(e, e->act_pool, B * e->ff_stride, "ffn gate", &e->g);
    if (s == HINGE_OK)
        s = alloc(e, e->act_pool, B * e->ff_stride, "ffn up", &e->u);
    if (s == HINGE_OK && e->head)
        s = alloc(e, e->act_pool, d, "head input", &e->hl);
    if (s == HINGE_OK && e->head)
        s = alloc(e, e->act_pool, hp->n_vocab, "logits", &e->logits);
    return s;
}

static hinge_status alloc_buffers(vk_exec *e)
{
    const model_hparams *hp = &e->m->hp;
    uint64_t B = e->max_batch, d = e->d;
    bool full = !e->batch_item;
    uint64_t act = B * (e->qkv_stride + e->att_stride) + hp->rope_dim;
    act += full || hp->post_norms ? 2 * B * d : 0;
    act += full ? B * (2 * d + 2 * (uint64_t)e->ff_stride) : 0;
    uint64_t rb = (B > 2 ? B : 2) * d; /* decode reads back the residual and (gemma3) o */
    if (e->head && full) { /* the last row's residual and the logits; only the logits are read back */
        act += d + hp->n_vocab;
        rb = hp->n_vocab;
    }
    uint64_t in = full ? B * sizeof(int32_t) + (e->embed ? 0 : B * d * sizeof(float)) : 0;
    uint64_t kv = vk_exec_kv_bytes(e->m, e->k, e->ctx) + 2 * (uint64_t)e->k * SLACK;
    /* the KV cache first: an absurd context is a clear NOMEM before any upload */
    hinge_status s = e->k ? create_pool(e, DEV_MEM_DEVICE, kv, "KV cache", &e->kv_pool) : HINGE_OK;
    if (s == HINGE_OK)
        s = create_pool(e, DEV_MEM_DEVICE, act * sizeof(float) + 15 * SLACK, "activations", &e->act_pool);
    if (s == HINGE_OK)
        s = create_pool(e, DEV_MEM_UPLOAD, in + 3 * SLACK, "step", &e->host_pool);
    if (s == HINGE_OK && full)
        s = create_pool(e, DEV_MEM_READBACK, rb * sizeof(float) + SLACK, "hidden readback", &e->rb_pool);
    for (uint32_t il = e->first; il < e->end && s == HINGE_OK; il++) {
        s = alloc(e, e->kv_pool, (uint64_t)e->ctx * e->kv_dim, "K cache", &e->cache[il].k);
        if (s == HINGE_OK)
            s = alloc(e, e->kv_pool, (uint64_t)e->ctx * e->v_dim, "V cache", &e->cache[il].v);
    }
    if (s == HINGE_OK)
        s = alloc_acts(e);
    if (s == HINGE_OK && full && !e->embed)
        s = alloc(e, e->host_pool, B * d, "input rows", &e->hin);
    if (s == HINGE_OK && full)
        s = alloc(e, e->host_pool, B, "token ids", &e->tok);
    if (s == HINGE_OK)
        s = alloc(e, e->host_pool, 1, "position", &e->pos);
    if (s == HINGE_OK && full)
        s = alloc(e, e->rb_pool, rb, "hidden out", &e->out);
    return s;
}

static hinge_status upload_freqs(vk_exec *e)
{
    const model_hparams *hp = &e->m->hp;
    uint32_t half = hp->rope_dim / 2;
    if (half == 0)
        return HINGE_OK;
    float *f = malloc(half * sizeof(float));
    if (!f)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_NOMEM, "rope tables: out of host memory");
    dev_rope_freqs(hp->rope_base, hp->rope_dim, f);
    hinge_status s = dev_upload(e->c, &e->freq_global, 0, f, half * sizeof(float));
    dev_rope_freqs(hp->rope_base_swa, hp->rope_dim, f);
    if (s == HINGE_OK)
        s = dev_upload(e->c, &e->freq_swa, 0, f, half * sizeof(float));
    free(f);
    return s == HINGE_OK ? HINGE_OK : ex_fail_ctx(e, s, "rope tables");
}

/* ---- the op lists ---- */

ex_step *ex_add_step(vk_exec *e, const char *name, int32_t layer, bool barrier)
{
    ex_pass *p = e->building;
    assert(p->n < p->cap);
    ex_step *st = &p->steps[p->n++];
    st->name = name;
    st->layer = layer;
    st->barrier = barrier;
    return st;
}

hinge_status ex_prep(vk_exec *e, hinge_status s, const char *what, int32_t layer)
{
    if (s == HINGE_OK)
        return HINGE_OK;
    char w[64];
    snprintf(w, sizeof w, "layer %d %s", layer, what);
    return ex_fail_ctx(e, s, w);
}

hinge_status ex_add_mm(vk_exec *e, const char *name, int32_t il, bool barrier, const dev_mm_args *a)
{
    ex_step *st = ex_add_step(e, name, il, barrier);
    st->args.mm = *a;
    hinge_status s = e->building->decode ? dev_prepare_matvec(e->ops, a, &st->op) : dev_prepare_matmul(e->ops, a, &st->op);
    return ex_prep(e, s, name, il);
}

static dev_attn_shape attn_shape(const model_hparams *hp)
{
    return (dev_attn_shape){hp->n_head, hp->n_head_kv, hp->head_dim, hp->head_dim_v};
}

const dev_buf *ex_rope_freq(const vk_exec *e, uint32_t il)
{
    const model_hparams *hp = &e->m->hp;
    return model_layer_rope_base(hp, il) == hp->rope_base ? &e->freq_global : &e->freq_swa;
}

hinge_status ex_add_rope(vk_exec *e, uint32_t il)
{
    const model_hparams *hp = &e->m->hp;
    const ex_layer *X = &e->w->layers[il];
    dev_rope_args ra = {
        .s = attn_shape(hp),
        .rope_dim = hp->rope_dim,
        .neox = hp->rope_neox,
        .pos_scale = model_layer_is_swa(hp, il) ? 1.0f : hp->rope_scale,
        .qkv = &e->qkv,
        .in_stride = e->qkv_stride,
        .q_in = 0,
        .k_in = e->q_dim,
        .v_in = e->q_dim + e->kv_dim,
        .q_out = &e->qkv,
        .q_stride = e->qkv_stride,
        .k_cache = &e->cache[il].k,
        .v_cache = &e->cache[il].v,
        .q_norm = hp->qk_norm ? &X->q_norm : NULL,
        .k_norm = hp->qk_norm ? &X->k_norm : NULL,
        .eps = hp->rms_eps,
        .freq = ex_rope_freq(e, il),
        .pos = &e->pos,
    };
    ex_step *st = ex_add_step(e, "rope_kv", (int32_t)il, true);
    st->args.rk = ra;
    return ex_prep(e, dev_prepare_rope_kv(e->ops, &ra, &st->op), "rope_kv", (int32_t)il);
}

hinge_status ex_add_attention(vk_exec *e, uint32_t il)
{
    const model_hparams *hp = &e->m->hp;
    dev_attn_args aa = {
        .s = attn_shape(hp),
        .window = model_layer_is_swa(hp, il) ? hp->swa_window : 0,
        .scale = hp->attn_scale,
        .q = &e->qkv,
        .q_stride = e->qkv_stride,
        .k_cache = &e->cache[il].k,
        .v_cache = &e->cache[il].v,
        .out = &e->att,
        .o_stride = e->att_stride,
        .pos = &e->pos,
    };
    ex_step *st = ex_add_step(e, "attention", (int32_t)il, true);
    st->args.at = aa;
    return ex_prep(e, dev_prepare_attention(e->ops, &aa, &st->op), "attention", (int32_t)il);
}

hinge_status ex_add_gate_up(vk_exec *e, uint32_t il, const dev_mm_args *in)
{
    const model_hparams *hp = &e->m->hp;
    const ex_layer *X = &e->w->layers[il];
    uint32_t act = hp->gelu ? HK_F_GEGLU : HK_F_SWIGLU;
    dev_mm_args a = *in;
    a.w = &X->gate;
    a.y = &e->g;
    a.y_stride = e->ff_stride;
    if (X->glu_fused) {
        a.w2 = &X->up;
        a.flags |= act;
        return ex_add_mm(e, "ffn_gate_up", (int32_t)il, true, &a);
    }
    hinge_status s = ex_add_mm(e, "ffn_gate", (int32_t)il, true, &a);
    a.w = &X->up;
    a.y = &e->u;
    if (s == HINGE_OK)
        s = ex_add_mm(e, "ffn_up", (int32_t)il, false, &a);
    if (s != HINGE_OK)
        return s;
    ex_step *st = ex_add_step(e, "ffn_glu", (int32_t)il, true);
    st->args.ew.a = &e->g;
    st->args.ew.b = &e->u;
    st->args.ew.per_pos = e->ff_stride;
    st->args.ew.flags = act;
    return ex_prep(e, dev_prepare_glu(e->ops, &e->g, &e->u, e->ff_stride, act, &st->op), "glu", (int32_t)il);
}

hinge_status ex_add_qkv(vk_exec *e, uint32_t il, const dev_mm_args *in)
{
    const ex_layer *X = &e->w->layers[il];
    hinge_status s = HINGE_OK;
    for (uint32_t g = 0; g < X->n_qkv && s == HINGE_OK; g++) {
        dev_mm_args a = *in;
        a.w = &X->qkv[g];
        a.y = &e->qkv;
        a.y_off = X->qkv_row0[g];
        a.y_stride = e->qkv_stride;
        s = ex_add_mm(e, X->n_qkv == 1 ? "qkv" : g == 0 ? "qkv.0" : g == 1 ? "qkv.1" : "qkv.2", (int32_t)il, g == 0,
                      &a);
    }
    return s;
}

/* llama: the norms fuse into the products that follow them, the residual
 * adds into the products that end each block (HK_F_ACC). */
static hinge_status add_layer_llama(vk_exec *e, uint32_t il)
{
    const ex_layer *X = &e->w->layers[il];
    float eps = e->m->hp.rms_eps;
    dev_mm_args in = {.x = &e->x, .x_stride = e->d, .norm = &X->attn_norm, .flags = HK_F_NORM, .eps = eps};
    hinge_status s = ex_add_qkv(e, il, &in);
    if (s == HINGE_OK)
        s = ex_add_rope(e, il);
    if (s == HINGE_OK)
        s = ex_add_attention(e, il);
    dev_mm_args wo = {.w = &X->wo, .x = &e->att, .x_stride = e->att_stride, .y = &e->x, .y_stride = e->d,
                      .flags = HK_F_ACC};
    if (s == HINGE_OK)
        s = ex_add_mm(e, "wo", (int32_t)il, true, &wo);
    in.norm = &X->ffn_norm;
    if (s == HINGE_OK)
        s = ex_add_gate_up(e, il, &in);
    dev_mm_args down = {.w = &X->down, .x = &e->g, .x_stride = e->ff_stride, .y = &e->x, .y_stride = e->d,
                        .flags = HK_F_ACC};
    return s == HINGE_OK ? ex_add_mm(e, "ffn_down", (int32_t)il, true, &down) : s;
}

hinge_status ex_add_post_norm(vk_exec *e, uint32_t il, const char *name, const dev_buf *x, const dev_buf *w1,
                              const dev_buf *w2)
{
    dev_norm_args a = {
        .n = e->d,
        .x = &e->o,
        .x_stride = e->d,
        .w = w1,
        .out = x,
        .o_stride = e->d,
        .res = x,
        .r_stride = e->d,
        .w2 = w2,
        .out2 = w2 ? &e->xb : NULL,
        .o2_stride = e->d,
        .flags = HK_F_ADD | (w2 ? HK_F_NORM2 : 0),
        .eps = e->m->hp.rms_eps,
    };
    ex_step *st = ex_add_step(e, name, (int32_t)il, true);
    st->args.rn = a;
    return ex_prep(e, dev_prepare_rmsnorm(e->ops, &a, &st->op), name, (int32_t)il);
}

/* gemma3: the input norm of the first layer, x into xb (later layers':
 * the previous layer's post-norm). */
static hinge_status add_input_norm(vk_exec *e, uint32_t il)
{
    dev_norm_args a = {.n = e->d, .x = &e->x, .x_stride = e->d, .w = &e->w->layers[il].attn_norm, .out = &e->xb,
                       .o_stride = e->d, .eps = e->m->hp.rms_eps};
    ex_step *st = ex_add_step(e, "attn_norm", (int32_t)il, true);
    st->args.rn = a;
    return ex_prep(e, dev_prepare_rmsnorm(e->ops, &a, &st->op), "attn_norm", (int32_t)il);
}

/* gemma3: each block's output is normed before the residual add; that norm
 * and the next block's input norm are one dispatch (HK_F_ADD | HK_F_NORM2),
 * so the products read a ready xb. Layer 0's input norm is its own step. */
static hinge_status add_layer_gemma(vk_exec *e, uint32_t il)
{
    const ex_layer *X = &e->w->layers[il];
    hinge_status s = il == e->first ? add_input_norm(e, il) : HINGE_OK;
    dev_mm_args in = {.x = &e->xb, .x_stride = e->d};
    if (s == HINGE_OK)
        s = ex_add_qkv(e, il, &in);
    if (s == HINGE_OK)
        s = ex_add_rope(e, il);
    if (s == HINGE_OK)
        s = ex_add_attention(e, il);
    dev_mm_args wo = {.w = &X->wo, .x = &e->att, .x_stride = e->att_stride, .y = &e->o, .y_stride = e->d};
    if (s == HINGE_OK)
        s = ex_add_mm(e, "wo", (int32_t)il, true, &wo);
    if (s == HINGE_OK)
        s = ex_add_post_norm(e, il, "post_attn_norm", &e->x, &X->post_attn_norm, &X->ffn_norm);
    if (s == HINGE_OK)
        s = ex_add_gate_up(e, il, &in);
    dev_mm_args down = {.w = &X->down, .x = &e->g, .x_stride = e->ff_stride, .y = &e->o, .y_stride = e->d};
    if (s == HINGE_OK)
        s = ex_add_mm(e, "ffn_down", (int32_t)il, true, &down);
    const dev_buf *next = il + 1 < e->end ? &e->w->layers[il + 1].attn_norm : NULL;
    return s == HINGE_OK ? ex_add_post_norm(e, il, "post_ffw_norm", &e->x, &X->post_ffn_norm, next) : s;
}

/* A batch item's layer: what vk_exec_batch.c runs in its executor (found
 * by layer and name); the products are the batch's. */
static hinge_status add_layer_item(vk_exec *e, uint32_t il)
{
    hinge_status s = il == e->first && e->m->hp.post_norms ? add_input_norm(e, il) : HINGE_OK;
    if (s == HINGE_OK)
        s = ex_add_rope(e, il);
    return s == HINGE_OK ? ex_add_attention(e, il) : s;
}

hinge_status ex_pass_init(vk_exec *e, ex_pass *p, bool decode)
{
    p->cap = 3 + e->k * STEPS_PER_LAYER; /* the embedding, the layers, a post-norm and the head */
    p->steps = calloc(p->cap, sizeof *p->steps);
    p->decode = decode;
    if (!p->steps)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_NOMEM, "op list: out of host memory");
    e->building = p;
    return HINGE_OK;
}

hinge_status ex_add_embed(vk_exec *e)
{
    dev_embed_args ea = {.w = &e->w->embd, .tokens = &e->tok, .out = &e->x, .out_stride = e->d,
                         .scale = e->m->hp.embd_scale};
    ex_step *st = ex_add_step(e, "embed", -1, false);
    st->args.em = ea;
    return ex_prep(e, dev_prepare_embed(e->ops, &ea, &st->op), "embed", -1);
}

hinge_status ex_add_head(vk_exec *e)
{
    /* a matrix-vector product in both passes: the head runs on one row */
    dev_mm_args a = {.w = &e->w->outw, .x = &e->hl, .x_stride = e->d, .norm = &e->w->out_norm, .flags = HK_F_NORM,
                     .eps = e->m->hp.rms_eps, .y = &e->logits, .y_stride = e->m->hp.n_vocab};
    ex_step *st = ex_add_step(e, "head", (int32_t)e->end, true);
    st->args.mm = a;
    st->last_row = true;
    return ex_prep(e, dev_prepare_matvec(e->ops, &a, &st->op), "head", (int32_t)e->end);
}

/* The prefill pass: the model's ops one by one, matrix-matrix products. */
static hinge_status build_prefill(vk_exec *e)
{
    hinge_status s = ex_pass_init(e, &e->pre, false);
    if (s == HINGE_OK && e->embed)
        s = ex_add_embed(e);
    for (uint32_t il = e->first; il < e->end && s == HINGE_OK; il++)
        s = e->batch_item ? add_layer_item(e, il) : e->m->hp.post_norms ? add_layer_gemma(e, il)
                                                                        : add_layer_llama(e, il);
    return s == HINGE_OK && e->head && !e->batch_item ? ex_add_head(e) : s;
}

static uint32_t type_bit(uint32_t type) { return type < 32 ? 1u << type : 0; }

/* The weight types of the embedding, the layers and the head, as dev_ops_config.types. */
static uint32_t used_types(const vk_exec *e)
{
    uint32_t t = (e->embed ? type_bit(e->m->tok_embd.type) : 0) | (e->head ? type_bit(e->m->output.type) : 0);
    for (uint32_t il = e->first; il < e->end; il++) {
        const layer_weights *L = &e->m->layers[il];
        const weight *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
            t |= type_bit(mats[i]->type);
    }
    return t;
}

hinge_status ex_build(vk_exec *e)
{
    const model_hparams *hp = &e->m->hp;
    e->cache = calloc(e->end ? e->end : 1, sizeof *e->cache);
    if (!e->cache)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_NOMEM, "out of host memory");
    dev_ops_config oc = {.types = used_types(e), .attention_only = e->batch_item, .few = e->few_rows};
    hinge_status s = dev_ops_create(e->c, &oc, &e->ops);
    if (s != HINGE_OK)
        return ex_fail_ctx(e, s, "kernels");
    /* positions per prefill dispatch: the device's cap (Adreno) or the forced one */
    uint32_t cap = dev_ops_variant(e->ops)->max_batch;
    if (cap && e->max_batch > cap)
        e->max_batch = cap;
    s = alloc_buffers(e);
    if (s == HINGE_OK && !e->w) { /* after the KV cache: an absurd context fails before any upload */
        vk_model_config wc = {.first = e->first, .end = e->end, .embed = e->embed, .head = e->head};
        s = vk_model_create(e->c, e->m, &wc, &e->own, e->errmsg, sizeof e->errmsg);
        e->w = e->own;
    }
    if (s == HINGE_OK && hp->rope_dim)
        s = upload_freqs(e);
    if (s == HINGE_OK)
        s = build_prefill(e);
    if (s == HINGE_OK && e->head_rows && e->head)
        s = ex_build_batch_head(e);
    return s == HINGE_OK && !e->batch_item ? ex_build_decode(e) : s;
}

void ex_free_build(vk_exec *e)
{
    dev_ops_destroy(e->ops); /* frees every op's descriptor sets */
    e->ops = NULL;
    free(e->pre.steps);
    free(e->dec.steps);
    e->pre = e->dec = (ex_pass){0};
    vk_model_destroy(e->own);
    e->own = NULL;
    e->w = NULL;
    free(e->cache);
    e->cache = NULL;
    dev_pool_destroy(e->act_pool);
    dev_pool_destroy(e->kv_pool);
    dev_pool_destroy(e->host_pool);
    dev_pool_destroy(e->rb_pool);
    dev_pool_destroy(e->bh_pool);
    dev_pool_destroy(e->bh_rb_pool);
    e->act_pool = e->kv_pool = e->host_pool = e->rb_pool = e->bh_pool = e->bh_rb_pool = NULL;
}
