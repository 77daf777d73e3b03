/* The weights an executor reads, on the device: the embedding, layers
 * [first, end) and the head. Made by an executor for itself, or once per
 * model by the edge and shared by its sessions' executors (vk_exec.h,
 * vk_model_create). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "vk_exec_impl.h"

static size_t dim(const vk_model *e) { return e->m->hp.n_embd; }

static hinge_status fail_ctx(vk_model *e, hinge_status s, const char *what)
{
    return hinge_fail(e->errmsg, sizeof e->errmsg, s, "%s: %s", what, dev_ctx_errmsg(e->c));
}


static hinge_status upload_vec(vk_model *e, dev_pool *p, const weight *w, uint64_t n, const char *what, dev_buf *out)
{
    if (!w->data || w->rows * w->cols != n)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_INVALID, "%s: %s is not a vector of %llu",
                          what, w->name ? w->name : "?", (unsigned long long)n);
    if (dev_pool_alloc(p, n * sizeof(float), 16, what, out) != HINGE_OK)
        return fail_ctx(e, HINGE_ERR_NOMEM, what);
    hinge_status s;
    if (w->type == QT_F32) {
        s = dev_upload(e->c, out, 0, w->data, n * sizeof(float));
    } else { /* a norm stored in another type: dequantize once, at load */
        float *tmp = malloc(n * sizeof(float));
        if (!tmp)
            return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_NOMEM, "%s: out of host memory", what);
        quant_dequant_row(w->type, w->data, tmp, n);
        s = dev_upload(e->c, out, 0, tmp, n * sizeof(float));
        free(tmp);
    }
    return s == HINGE_OK ? HINGE_OK : fail_ctx(e, s, what);
}

static hinge_status upload_mat(vk_model *e, dev_pool *p, const weight *srcs, size_t n, const char *what,
                               dev_weight *out)
{
    hinge_status s = dev_weight_upload(e->c, p, srcs, n, what, out);
    /* the context's message names what already */
    return s == HINGE_OK ? HINGE_OK : hinge_fail(e->errmsg, sizeof e->errmsg, s, "%s", dev_ctx_errmsg(e->c));
}

/* Bytes of layer il's pool. */
static size_t layer_bytes(const vk_model *e, uint32_t il)
{
    const layer_weights *L = &e->m->layers[il];
    const weight *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    size_t b = 0;
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
        b += dev_weight_bytes(mats[i]->type, mats[i]->rows, mats[i]->cols) + EX_SLACK;
    return b + (4 * dim(e) + 2 * (size_t)e->m->hp.head_dim) * sizeof(float) + 6 * EX_SLACK;
}

static hinge_status upload_layer(vk_model *e, uint32_t il)
{
    const model_hparams *hp = &e->m->hp;
    const layer_weights *L = &e->m->layers[il];
    ex_layer *X = &e->layers[il];
    char what[64];
    snprintf(what, sizeof what, "layer %u weights", il);
    hinge_status s = dev_pool_create(e->c, DEV_MEM_DEVICE, layer_bytes(e, il), what, &X->pool);
    if (s != HINGE_OK)
        return fail_ctx(e, s, what);
    /* wq | wk | wv: consecutive matrices of one type become one product */
    const weight qkv[3] = {L->wq, L->wk, L->wv};
    uint32_t row0 = 0;
    for (uint32_t i = 0; i < 3 && s == HINGE_OK;) {
        uint32_t j = i + 1;
        while (j < 3 && qkv[j].type == qkv[i].type)
            j++;
        snprintf(what, sizeof what, "layer %u %s", il, j - i == 3 ? "wq|wk|wv" : i == 0 ? "wq.." : "..wv");
        X->qkv_row0[X->n_qkv] = row0;
        s = upload_mat(e, X->pool, &qkv[i], j - i, what, &X->qkv[X->n_qkv]);
        for (; i < j; i++)
            row0 += (uint32_t)qkv[i].rows;
        X->n_qkv++;
    }
    const weight *mats[4] = {&L->wo, &L->w_gate, &L->w_up, &L->w_down};
    dev_weight *outs[4] = {&X->wo, &X->gate, &X->up, &X->down};
    static const char *const names[4] = {"wo", "ffn_gate", "ffn_up", "ffn_down"};
    for (int i = 0; i < 4 && s == HINGE_OK; i++) {
        snprintf(what, sizeof what, "layer %u %s", il, names[i]);
        s = upload_mat(e, X->pool, mats[i], 1, what, outs[i]);
    }
    X->glu_fused = L->w_gate.type == L->w_up.type && X->gate.part_rows == X->up.part_rows;
    if (s == HINGE_OK)
        s = upload_vec(e, X->pool, &L->attn_norm, dim(e), "attn_norm", &X->attn_norm);
    if (s == HINGE_OK)
        s = upload_vec(e, X->pool, &L->ffn_norm, dim(e), "ffn_norm", &X->ffn_norm);
    if (s == HINGE_OK && hp->qk_norm)
        s = upload_vec(e, X->pool, &L->q_norm, hp->head_dim, "attn_q_norm", &X->q_norm);
    if (s == HINGE_OK && hp->qk_norm)
        s = upload_vec(e, X->pool, &L->k_norm, hp->head_dim, "attn_k_norm", &X->k_norm);
    if (s == HINGE_OK && hp->post_norms)
        s = upload_vec(e, X->pool, &L->post_attn_norm, dim(e), "post_attention_norm", &X->post_attn_norm);
    if (s == HINGE_OK && hp->post_norms)
        s = upload_vec(e, X->pool, &L->post_ffn_norm, dim(e), "post_ffw_norm", &X->post_ffn_norm);
    return s;
}

/* The output norm and matrix; a tied matrix the embedding uploaded already
 * is shared. */
static hinge_status upload_head(vk_model *e)
{
    const weight *w = &e->m->output;
    bool tied = e->embed && w->data == e->m->tok_embd.data && w->type == e->m->tok_embd.type;
    size_t bytes = (tied ? 0 : dev_weight_bytes(w->type, w->rows, w->cols)) + dim(e) * sizeof(float) +
                   2 * EX_SLACK;
    hinge_status s = dev_pool_create(e->c, DEV_MEM_DEVICE, bytes, "head", &e->head_pool);
    if (s != HINGE_OK)
        return fail_ctx(e, s, "head");
    s = upload_vec(e, e->head_pool, &e->m->output_norm, dim(e), "output_norm", &e->out_norm);
    if (s != HINGE_OK)
        return s;
    if (tied) {
        e->outw = e->embd;
        return HINGE_OK;
    }
    return upload_mat(e, e->head_pool, w, 1, "output", &e->outw);
}

hinge_status vk_model_create(dev_ctx *c, const model *m, const vk_model_config *cfg, vk_model **out, char *err,
                             size_t errlen)
{
    const model_hparams *hp = &m->hp;
    hinge_status s = ex_check_model(m, err, errlen);
    if (s != HINGE_OK)
        return s;
    if (cfg->end > hp->n_layer || cfg->first > cfg->end || (cfg->embed && cfg->first > 0) ||
        (cfg->head && cfg->end < hp->n_layer))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "layers [%u, %u) of %u: the embedding needs first = 0, "
                          "the head end = %u", cfg->first, cfg->end, hp->n_layer, hp->n_layer);
    vk_model *e = calloc(1, sizeof *e);
    if (e)
        e->layers = calloc(cfg->end ? cfg->end : 1, sizeof *e->layers);
    if (!e || !e->layers) {
        free(e);
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of host memory for the weights");
    }
    e->c = c;
    e->m = m;
    e->first = cfg->first;
    e->end = cfg->end;
    e->embed = cfg->embed;
    e->head = cfg->head;
    const weight *te = &m->tok_embd;
    if (e->embed) {
        s = dev_pool_create(c, DEV_MEM_DEVICE, dev_weight_bytes(te->type, te->rows, te->cols) + EX_SLACK, "embedding",
                            &e->embd_pool);
        s = s == HINGE_OK ? upload_mat(e, e->embd_pool, te, 1, "token_embd", &e->embd) : fail_ctx(e, s, "embedding");
    }
    if (s == HINGE_OK && e->head)
        s = upload_head(e);
    for (uint32_t il = e->first; il < e->end && s == HINGE_OK; il++)
        s = upload_layer(e, il);
    if (s != HINGE_OK) {
        hinge_fail(err, errlen, s, "%s", e->errmsg);
        vk_model_destroy(e);
        return s;
    }
    *out = e;
    return HINGE_OK;
}

static uint64_t pool_bytes(const dev_pool *p) { return p ? dev_pool_capacity(p) : 0; }

uint64_t vk_model_device_bytes(const vk_model *w)
{
    if (!w)
        return 0;
    uint64_t b = pool_bytes(w->embd_pool) + pool_bytes(w->head_pool);
    for (uint32_t il = w->first; il < w->end; il++)
        b += pool_bytes(w->layers[il].pool);
    return b;
}

void vk_model_destroy(vk_model *e)
{
    if (!e)
        return;
    vkDeviceWaitIdle(dev_ctx_device(e->c));
    for (uint32_t il = e->first; il < e->end; il++)
        dev_pool_destroy(e->layers[il].pool);
    dev_pool_destroy(e->embd_pool);
    dev_pool_destroy(e->head_pool);
    free(e->layers);
    free(e);
}
