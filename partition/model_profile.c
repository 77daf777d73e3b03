/* The model profile: what a cut costs in FLOPs and bytes, from the GGUF's
 * hyperparameters and tensor shapes. Also the wire codecs' row sizes. */
#include <stdio.h>
#include <string.h>

#include "partition.h"
#include "quant.h"

const char *part_codec_name(part_codec c)
{
    switch (c) {
    case PART_CODEC_NONE: return "none";
    case PART_CODEC_F32: return "f32";
    case PART_CODEC_F16: return "f16";
    case PART_CODEC_Q8: return "q8";
    }
    return "unknown";
}

hinge_status part_codec_parse(const char *s, part_codec *out)
{
    for (int c = PART_CODEC_F32; c <= PART_CODEC_Q8; c++) {
        if (strcmp(s, part_codec_name((part_codec)c)) == 0) {
            *out = (part_codec)c;
            return HINGE_OK;
        }
    }
    return HINGE_ERR_INVALID;
}

hinge_status part_codec_mask_parse(const char *list, uint32_t *mask, char *err, size_t errlen)
{
    uint32_t m = 0;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        char name[8];
        part_codec c;
        if (n == 0 || n >= sizeof name)
            return hinge_fail(err, errlen, HINGE_ERR_INVALID, "codec list '%s': bad entry at '%s'", list, p);
        memcpy(name, p, n);
        name[n] = '\0';
        if (part_codec_parse(name, &c) != HINGE_OK)
            return hinge_fail(err, errlen, HINGE_ERR_INVALID, "codec list '%s': '%s' is not f32, f16 or q8", list,
                              name);
        m |= 1u << c;
        p += n + (p[n] == ',');
    }
    if (!m)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "codec list is empty");
    *mask = m;
    return HINGE_OK;
}

/* f32: dim floats; f16: a float scale + dim halves; q8: a float scale +
 * dim int8 (docs/protocol.md). */
size_t part_codec_row_bytes(part_codec c, uint32_t dim)
{
    if (dim == 0)
        return 0;
    switch (c) {
    case PART_CODEC_F32: return (size_t)dim * 4;
    case PART_CODEC_F16: return 4 + (size_t)dim * 2;
    case PART_CODEC_Q8: return 4 + (size_t)dim;
    case PART_CODEC_NONE: break;
    }
    return 0;
}

double part_frame_bytes(const part_model *m, part_codec c, uint32_t n)
{
    return PART_FRAME_HEADER_BYTES + (double)n * (double)part_codec_row_bytes(c, m->n_embd);
}

/* sum over p in [p0, p1) of (p + 1) */
static double tri(double p0, double p1)
{
    return p1 <= p0 ? 0.0 : (p1 - p0) * (p0 + p1 + 1.0) / 2.0;
}

double part_attended_sum(uint32_t window, uint32_t pos0, uint32_t n)
{
    double a = pos0, b = (double)pos0 + n;
    if (window == 0)
        return tri(a, b);
    /* queries p < window - 1 attend p + 1 keys; later ones attend window */
    double split = (double)window - 1.0;
    double lo_end = b < split ? b : split;
    double hi_start = a > split ? a : split;
    return tri(a, lo_end) + (b > hi_start ? (b - hi_start) * window : 0.0);
}

double part_model_flops(const part_model *m, uint32_t a, uint32_t b, uint32_t pos0, uint32_t n)
{
    double f = 0;
    for (uint32_t i = a; i < b && i < m->n_layer; i++) {
        const part_model_layer *L = &m->layer[i];
        f += (double)n * L->flops_per_pos + L->flops_per_attended * part_attended_sum(L->window, pos0, n);
    }
    return f;
}

static double matmul_flops(const weight *w)
{
    return w->data ? 2.0 * (double)w->rows * (double)w->cols : 0.0;
}

static double weight_bytes(const weight *w)
{
    return w->data ? (double)quant_row_bytes(w->type, w->cols) * (double)w->rows : 0.0;
}

/* One position through layer il: the four attention projections, the
 * three FFN matrices, ~5 FLOPs per value of each RMS norm, RoPE (~6 per
 * rotated pair), the gated activation (~10 per value with tanh GELU, ~6
 * SiLU) and the two residual adds. */
static void layer_profile(const model *m, uint32_t il, part_model_layer *L)
{
    const model_hparams *hp = &m->hp;
    const layer_weights *w = &m->layers[il];
    double d = hp->n_embd, qd = (double)hp->n_head * hp->head_dim, kd = (double)hp->n_head_kv * hp->head_dim;
    double mm = matmul_flops(&w->wq) + matmul_flops(&w->wk) + matmul_flops(&w->wv) + matmul_flops(&w->wo) +
                matmul_flops(&w->w_gate) + matmul_flops(&w->w_up) + matmul_flops(&w->w_down);
    double norms = 5.0 * d * (hp->post_norms ? 4 : 2) + (hp->qk_norm ? 5.0 * (qd + kd) : 0.0);
    double rope = 3.0 * (double)hp->rope_dim * (hp->n_head + hp->n_head_kv);
    double act = (hp->gelu ? 10.0 : 6.0) * hp->n_ff;
    L->flops_per_pos = mm + norms + rope + act + 2.0 * d;
    /* q.k (2 * head_dim), softmax (~5), p.v (2 * head_dim_v) per head */
    L->flops_per_attended = (double)hp->n_head * (2.0 * hp->head_dim + 2.0 * hp->head_dim_v + 5.0);
    L->weight_bytes = (double)model_layer_bytes(m, il);
    L->kv_elems_per_pos = (double)hp->n_head_kv * (hp->head_dim + hp->head_dim_v);
    L->window = model_layer_is_swa(hp, il) ? hp->swa_window : 0;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

hinge_status part_model_from_gguf(const model *m, part_model *out, char *err, size_t errlen)
{
    const model_hparams *hp = &m->hp;
    if (hp->n_layer == 0 || hp->n_layer > PART_MAX_LAYERS)
        return hinge_fail(err, errlen, HINGE_ERR_RANGE, "model '%s' has %u layers; the partitioner handles 1..%d",
                          m->name, hp->n_layer, PART_MAX_LAYERS);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", m->name);
    static const uint8_t zero[32];
    if (memcmp(m->sha256, zero, sizeof zero) != 0)
        hex(m->sha256, 32, out->sha256);
    out->n_layer = hp->n_layer;
    out->n_embd = hp->n_embd;
    out->n_vocab = hp->n_vocab;
    out->n_ctx_train = hp->n_ctx_train;
    for (uint32_t il = 0; il < hp->n_layer; il++)
        layer_profile(m, il, &out->layer[il]);
    out->embed_flops_per_pos = 2.0 * hp->n_embd;
    out->embed_row_bytes = (double)quant_row_bytes(m->tok_embd.type, m->tok_embd.cols);
    out->embed_table_bytes = weight_bytes(&m->tok_embd);
    out->head_tied = m->output.data == m->tok_embd.data;
    out->head_weight_bytes = weight_bytes(&m->output) + weight_bytes(&m->output_norm);
    /* norm, the output matrix, and sampling (~5 per logit: scan, softmax) */
    out->head_flops = 5.0 * hp->n_embd + matmul_flops(&m->output) + 5.0 * hp->n_vocab;
    return HINGE_OK;
}
