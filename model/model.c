/* Model loading: hyperparameters from GGUF metadata and checked weight views. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "quant.h"

typedef struct loader {
    model *m;
    const char *arch; /* key prefix: model_arch_name */
    char *err;
    size_t errlen;
} loader;

const char *model_arch_name(model_arch a)
{
    switch (a) {
    case ARCH_LLAMA: return "llama";
    case ARCH_GEMMA3: return "gemma3";
    case ARCH_QWEN2: return "qwen2";
    case ARCH_QWEN3: return "qwen3";
    case ARCH_PHI3: return "phi3";
    }
    return "unknown";
}

/* Reads "<arch>.<suffix>" as u32; def when absent. */
static hinge_status arch_u32(loader *ld, const char *suffix, uint32_t def, uint32_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", ld->arch, suffix);
    hinge_status s = gguf_get_u32(ld->m->file, key, out);
    if (s == HINGE_ERR_NOT_FOUND) {
        *out = def;
        return HINGE_OK;
    }
    if (s != HINGE_OK)
        return hinge_fail(ld->err, ld->errlen, s, "metadata key '%s': not an unsigned 32-bit integer", key);
    return HINGE_OK;
}

static hinge_status arch_f32(loader *ld, const char *suffix, float def, float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", ld->arch, suffix);
    hinge_status s = gguf_get_f32(ld->m->file, key, out);
    if (s == HINGE_ERR_NOT_FOUND) {
        *out = def;
        return HINGE_OK;
    }
    if (s != HINGE_OK || !isfinite(*out))
        return hinge_fail(ld->err, ld->errlen, HINGE_ERR_FORMAT, "metadata key '%s': not a finite float", key);
    return HINGE_OK;
}

static hinge_status require(loader *ld, bool ok, const char *what)
{
    if (ok)
        return HINGE_OK;
    return hinge_fail(ld->err, ld->errlen, HINGE_ERR_FORMAT, "%s: impossible hyperparameters (%s)",
                      ld->arch, what);
}

static hinge_status read_sizes(loader *ld, model_hparams *hp)
{
    hinge_status s;
    if ((s = arch_u32(ld, "embedding_length", 0, &hp->n_embd)) ||
        (s = arch_u32(ld, "block_count", 0, &hp->n_layer)) ||
        (s = arch_u32(ld, "feed_forward_length", 0, &hp->n_ff)) ||
        (s = arch_u32(ld, "context_length", 2048, &hp->n_ctx_train)) ||
        (s = arch_u32(ld, "attention.head_count", 0, &hp->n_head)))
        return s;
    if ((s = require(ld, hp->n_embd > 0 && hp->n_embd <= 65536, "embedding_length")) ||
        (s = require(ld, hp->n_layer > 0 && hp->n_layer <= 1024, "block_count")) ||
        (s = require(ld, hp->n_ff > 0 && hp->n_ff <= 1u << 20, "feed_forward_length")) ||
        (s = require(ld, hp->n_head > 0 && hp->n_head <= 1024, "attention.head_count")) ||
        (s = require(ld, hp->n_ctx_train > 0, "context_length")))
        return s;
    if ((s = arch_u32(ld, "attention.head_count_kv", hp->n_head, &hp->n_head_kv)) ||
        (s = arch_u32(ld, "attention.key_length", hp->n_embd / hp->n_head, &hp->head_dim)) ||
        (s = arch_u32(ld, "attention.value_length", hp->head_dim, &hp->head_dim_v)) ||
        (s = arch_u32(ld, "rope.dimension_count", hp->head_dim, &hp->rope_dim)))
        return s;
    if ((s = require(ld, hp->n_head_kv > 0 && hp->n_head % hp->n_head_kv == 0, "head_count_kv")) ||
        (s = require(ld, hp->head_dim > 0 && hp->head_dim <= 4096, "key_length")) ||
        (s = require(ld, hp->head_dim_v > 0 && hp->head_dim_v <= 4096, "value_length")) ||
        (s = require(ld, hp->rope_dim % 2 == 0 && hp->rope_dim <= hp->head_dim, "rope.dimension_count")))
        return s;
    return HINGE_OK;
}

/* RoPE, norm epsilon and the gemma3-specific knobs, with each arch's defaults
 * (llama.cpp's: llama and qwen theta 1e4, eps 1e-5 (qwen 1e-6); gemma3
 * theta 1e6, local theta 1e4, window 512 (the 270M's), every 6th layer
 * global, eps 1e-6). */
static hinge_status read_attention(loader *ld, model_hparams *hp)
{
    const bool gemma = hp->arch == ARCH_GEMMA3, qwen = hp->arch == ARCH_QWEN2 || hp->arch == ARCH_QWEN3;
    const bool neox = gemma || qwen || hp->arch == ARCH_PHI3;
    hinge_status s;
    float factor = 1.0f;
    if ((s = arch_f32(ld, "rope.freq_base", gemma ? 1e6f : 1e4f, &hp->rope_base)) ||
        (s = arch_f32(ld, "rope.freq_base_swa", 1e4f, &hp->rope_base_swa)) ||
        (s = arch_f32(ld, "rope.scaling.factor", 1.0f, &factor)) ||
        (s = arch_f32(ld, "attention.layer_norm_rms_epsilon", gemma || qwen ? 1e-6f : 1e-5f, &hp->rms_eps)))
        return s;
    hp->rope_scale = factor > 0.0f ? factor : 1.0f;
    if ((s = require(ld, hp->rope_base > 0.0f && hp->rope_base_swa > 0.0f, "rope.freq_base")) ||
        (s = require(ld, hp->rms_eps > 0.0f && hp->rms_eps < 1.0f, "layer_norm_rms_epsilon")))
        return s;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    hp->rope_neox = neox;
    hp->qk_norm = hp->arch == ARCH_QWEN3;
    if (!gemma) {
        hp->embd_scale = 1.0f;
        return HINGE_OK;
    }
    hp->embd_scale = sqrtf((float)hp->n_embd);
    hp->qk_norm = hp->post_norms = hp->gelu = true;
    if ((s = arch_u32(ld, "attention.sliding_window", 512, &hp->swa_window)) ||
        (s = arch_u32(ld, "attention.sliding_window_pattern", 6, &hp->swa_pattern)))
        return s;
    return HINGE_OK;
}

static hinge_status read_hparams(loader *ld)
{
    model *m = ld->m;
    gguf_str a;
    hinge_status s = gguf_get_str(m->file, "general.architecture", &a);
    if (s != HINGE_OK)
        return hinge_fail(ld->err, ld->errlen, HINGE_ERR_FORMAT, "metadata key 'general.architecture' missing or not a string");
    ld->arch = NULL;
    for (model_arch k = ARCH_LLAMA; k <= ARCH_PHI3; k++)
        if (a.len == strlen(model_arch_name(k)) && memcmp(a.ptr, model_arch_name(k), a.len) == 0) {
            m->hp.arch = k;
            ld->arch = model_arch_name(k);
        }
    if (!ld->arch)
        return hinge_fail(ld->err, ld->errlen, HINGE_ERR_UNSUPPORTED,
                          "architecture '%.*s' is not supported (llama, gemma3, qwen2, qwen3, phi3)",
                          (int)(a.len > 64 ? 64 : a.len), a.ptr);
    if ((s = read_sizes(ld, &m->hp)) || (s = read_attention(ld, &m->hp)))
        return s;
    gguf_str name;
    if (gguf_get_str(m->file, "general.name", &name) == HINGE_OK)
        snprintf(m->name, sizeof m->name, "%.*s", (int)(name.len > 63 ? 63 : name.len), name.ptr);
    else
        snprintf(m->name, sizeof m->name, "%s", ld->arch);
    return HINGE_OK;
}

/* Finds tensor name with shape (rows, cols); rows == 1 means a vector, which
 * must be f32. Absent and optional: w->data stays NULL. */
static hinge_status get_weight(loader *ld, const char *name, uint64_t rows, uint64_t cols, bool optional,
                               weight *w)
{
    const gguf_tensor *t = gguf_find_tensor(ld->m->file, name);
    if (!t) {
        if (optional)
            return HINGE_OK;
        return hinge_fail(ld->err, ld->errlen, HINGE_ERR_FORMAT, "tensor '%s' is missing", name);
    }
    uint64_t t_rows = t->ne[1] * t->ne[2] * t->ne[3];
    if (t->ne[0] != cols || t_rows != rows || t->ne[2] != 1 || t->ne[3] != 1)
        return hinge_fail(ld->err, ld->errlen, HINGE_ERR_FORMAT,
                          "tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%llu, %llu]", name,
                          (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                          (unsigned long long)t->ne[2], (unsigned long long)t->ne[3],
                          (unsigned long long)cols, (unsigned long long)rows);
    if (rows == 1 && t->type != QT_F32)
        return hinge_fail(ld->err, ld->errlen, HINGE_ERR_UNSUPPORTED, "tensor '%s': norm weights must be f32, not %s",
                          name, quant_name(t->type));
    *w = (weight){.data = t->data, .type = t->type, .rows = rows, .cols = cols, .name = t->name};
    return HINGE_OK;
}

/* Rows [r0, r0 + rows) of w. */
static weight rows_of(const weight *w, uint64_t r0, uint64_t rows)
{
    weight s = *w;
    s.data = (const uint8_t *)w->data + r0 * quant_row_bytes(w->type, w->cols);
    s.rows = rows;
    return s;
}

/* phi3's fused matrices: attn_qkv is [q; k; v] and ffn_up [gate; up] by
 * rows (llama.cpp's views of them). */
static hinge_status get_fused(loader *ld, uint32_t il, layer_weights *L, uint64_t qd, uint64_t kd, uint64_t vd)
{
    const model_hparams *hp = &ld->m->hp;
    char name[GGUF_NAME_MAX];
    weight qkv, up;
    snprintf(name, sizeof name, "blk.%u.attn_qkv.weight", il);
    hinge_status s = get_weight(ld, name, qd + kd + vd, hp->n_embd, false, &qkv);
    snprintf(name, sizeof name, "blk.%u.ffn_up.weight", il);
    if (s == HINGE_OK)
        s = get_weight(ld, name, 2 * (uint64_t)hp->n_ff, hp->n_embd, false, &up);
    if (s != HINGE_OK)
        return s;
    L->wq = rows_of(&qkv, 0, qd);
    L->wk = rows_of(&qkv, qd, kd);
    L->wv = rows_of(&qkv, qd + kd, vd);
    L->w_gate = rows_of(&up, 0, hp->n_ff);
    L->w_up = rows_of(&up, hp->n_ff, hp->n_ff);
    return HINGE_OK;
}

static hinge_status get_layer(loader *ld, uint32_t il, layer_weights *L)
{
    const model_hparams *hp = &ld->m->hp;
    uint64_t qd = (uint64_t)hp->n_head * hp->head_dim, kd = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t vd = (uint64_t)hp->n_head_kv * hp->head_dim_v, od = (uint64_t)hp->n_head * hp->head_dim_v;
    bool g = hp->arch == ARCH_GEMMA3, qb = hp->arch == ARCH_QWEN2, split = hp->arch != ARCH_PHI3;
    struct {
        const char *suffix;
        uint64_t rows, cols;
        bool needed;
        weight *w;
    } want[] = {
        {"attn_norm.weight", 1, hp->n_embd, true, &L->attn_norm},
        {"attn_q.weight", qd, hp->n_embd, split, &L->wq},
        {"attn_k.weight", kd, hp->n_embd, split, &L->wk},
        {"attn_v.weight", vd, hp->n_embd, split, &L->wv},
        {"attn_q.bias", 1, qd, qb, &L->bq},
        {"attn_k.bias", 1, kd, qb, &L->bk},
        {"attn_v.bias", 1, vd, qb, &L->bv},
        {"attn_output.weight", hp->n_embd, od, true, &L->wo},
        {"attn_q_norm.weight", 1, hp->head_dim, hp->qk_norm, &L->q_norm},
        {"attn_k_norm.weight", 1, hp->head_dim, hp->qk_norm, &L->k_norm},
        {"post_attention_norm.weight", 1, hp->n_embd, g, &L->post_attn_norm},
        {"ffn_norm.weight", 1, hp->n_embd, true, &L->ffn_norm},
        {"ffn_gate.weight", hp->n_ff, hp->n_embd, split, &L->w_gate},
        {"ffn_up.weight", hp->n_ff, hp->n_embd, split, &L->w_up},
        {"ffn_down.weight", hp->n_embd, hp->n_ff, true, &L->w_down},
        {"post_ffw_norm.weight", 1, hp->n_embd, g, &L->post_ffn_norm},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!want[i].needed)
            continue;
        char name[GGUF_NAME_MAX];
        snprintf(name, sizeof name, "blk.%u.%s", il, want[i].suffix);
        hinge_status s = get_weight(ld, name, want[i].rows, want[i].cols, false, want[i].w);
        if (s != HINGE_OK)
            return s;
    }
    return split ? HINGE_OK : get_fused(ld, il, L, qd, kd, vd);
}

static hinge_status get_weights(loader *ld)
{
    model *m = ld->m;
    const gguf_tensor *te = gguf_find_tensor(m->file, "token_embd.weight");
    if (!te)
        return hinge_fail(ld->err, ld->errlen, HINGE_ERR_FORMAT, "tensor 'token_embd.weight' is missing");
    m->hp.n_vocab = (uint32_t)te->ne[1];
    if (te->ne[1] == 0 || te->ne[1] > (1u << 24))
        return hinge_fail(ld->err, ld->errlen, HINGE_ERR_FORMAT, "tensor 'token_embd.weight': %llu rows is not a vocabulary size",
                          (unsigned long long)te->ne[1]);
    hinge_status s;
    if ((s = get_weight(ld, "token_embd.weight", m->hp.n_vocab, m->hp.n_embd, false, &m->tok_embd)) ||
        (s = get_weight(ld, "output_norm.weight", 1, m->hp.n_embd, false, &m->output_norm)) ||
        (s = get_weight(ld, "output.weight", m->hp.n_vocab, m->hp.n_embd, true, &m->output)) ||
        (s = get_weight(ld, "rope_freqs.weight", 1, m->hp.rope_dim / 2, true, &m->rope_freqs)))
        return s;
    for (uint32_t i = 0; m->rope_freqs.data && i < m->hp.rope_dim / 2; i++)
        if (!(((const float *)m->rope_freqs.data)[i] > 0.0f)) /* also NaN */
            return hinge_fail(ld->err, ld->errlen, HINGE_ERR_FORMAT, "rope_freqs.weight[%u] is not positive", i);
    if (!m->output.data)
        m->output = m->tok_embd; /* tied */
    m->layers = calloc(m->hp.n_layer, sizeof *m->layers);
    if (!m->layers)
        return hinge_fail(ld->err, ld->errlen, HINGE_ERR_NOMEM, "out of memory for %u layers", m->hp.n_layer);
    for (uint32_t il = 0; il < m->hp.n_layer; il++)
        if ((s = get_layer(ld, il, &m->layers[il])) != HINGE_OK)
            return s;
    for (size_t i = 0; i < gguf_tensor_count(m->file); i++)
        m->weight_bytes += gguf_tensor_at(m->file, i)->nbytes;
    return HINGE_OK;
}

hinge_status model_hash(model *m, char *err, size_t errlen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, gguf_file_bytes(m->file), gguf_file_size(m->file)) &&
             EVP_DigestFinal_ex(ctx, m->sha256, &len) && len == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "sha256 of the model file failed");
    return HINGE_OK;
}

hinge_status model_load(const char *path, bool hash, const hinge_logger *lg, model **out, char *err,
                        size_t errlen)
{
    model *m = calloc(1, sizeof *m);
    if (!m)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    loader ld = {.m = m, .err = err, .errlen = errlen};
    hinge_status s = gguf_open(path, &m->file, err, errlen);
    if (s == HINGE_OK)
        s = read_hparams(&ld);
    if (s == HINGE_OK)
        s = get_weights(&ld);
    if (s == HINGE_OK)
        s = tok_create(m->file, &m->tok, err, errlen);
    if (s == HINGE_OK && tok_n_vocab(m->tok) > (int32_t)m->hp.n_vocab)
        s = hinge_fail(err, errlen, HINGE_ERR_FORMAT, "tokenizer has %d tokens, embedding only %u rows",
                       tok_n_vocab(m->tok), m->hp.n_vocab);
    if (s == HINGE_OK && hash)
        s = model_hash(m, err, errlen);
    if (s != HINGE_OK) {
        model_free(m);
        return s;
    }
    const model_hparams *hp = &m->hp;
    hinge_log(lg, HINGE_LOG_INFO, "%s: %s, %u layers, dim %u, %u/%u heads x %u, ff %u, vocab %u, %.1f MiB of weights",
              path, m->name, hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff,
              hp->n_vocab, (double)m->weight_bytes / (1 << 20));
    *out = m;
    return HINGE_OK;
}

void model_free(model *m)
{
    if (!m)
        return;
    tok_destroy(m->tok);
    gguf_close(m->file);
    free(m->layers);
    free(m);
}

size_t model_layer_bytes(const model *m, uint32_t il)
{
    const layer_weights *L = &m->layers[il];
    const weight *ws[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->bq, &L->bk, &L->bv, &L->wo, &L->q_norm, &L->k_norm,
                          &L->post_attn_norm, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down, &L->post_ffn_norm};
    size_t total = 0;
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        if (ws[i]->data)
            total += quant_row_bytes(ws[i]->type, ws[i]->cols) * ws[i]->rows;
    return total;
}
