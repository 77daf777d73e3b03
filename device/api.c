/* libhinge: the library and the model (public API, see hinge/hinge.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_impl.h"

#define STR2(x) #x
#define STR(x) STR2(x)

static _Thread_local char last_error[HINGE_ERRMSG_MAX];

const char *hinge_version(void)
{
    return STR(HINGE_VERSION_MAJOR) "." STR(HINGE_VERSION_MINOR) "." STR(HINGE_VERSION_PATCH);
}

const char *hinge_last_error(void) { return last_error; }

void hinge_free(void *p) { free(p); }

hinge_status api_fail(hinge_status s, const char *fmt, ...)
{
    char msg[HINGE_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return s;
}

void hinge_model_config_init(hinge_model_config *c)
{
    if (c)
        *c = (hinge_model_config){.size = sizeof *c, .log_level = HINGE_LOG_WARN};
}

void hinge_session_config_init(hinge_session_config *c)
{
    if (c)
        *c = (hinge_session_config){.size = sizeof *c, .cut = HINGE_CUT_ALL, .backend = HINGE_BACKEND_CPU,
                                    .wire = HINGE_WIRE_F32, .log_level = HINGE_LOG_WARN};
}

hinge_status hinge_model_load(const char *path, hinge_model **out) { return hinge_model_load_ex(path, NULL, out); }

hinge_status hinge_model_load_ex(const char *path, const hinge_model_config *c, hinge_model **out)
{
    if (!path || !out)
        return api_fail(HINGE_ERR_INVALID, "hinge_model_load: path and out must not be NULL");
    hinge_model_config cfg;
    hinge_model_config_init(&cfg);
    if (c && (c->size < sizeof(uint32_t) || c->size > sizeof cfg))
        return api_fail(HINGE_ERR_INVALID, "hinge_model_config.size is %u: call hinge_model_config_init first",
                        c->size);
    if (c)
        memcpy(&cfg, c, c->size);
    hinge_model *hm = calloc(1, sizeof *hm);
    if (!hm)
        return api_fail(HINGE_ERR_NOMEM, "out of memory for a model");
    hm->lg = (hinge_logger){.fn = cfg.log, .user = cfg.log_user, .level = cfg.log_level};
    char err[HINGE_ERRMSG_MAX] = "";
    hinge_status s = model_load(path, false, &hm->lg, &hm->m, err, sizeof err);
    if (s == HINGE_OK && pthread_mutex_init(&hm->hash_mu, NULL) != 0) {
        model_free(hm->m);
        s = hinge_fail(err, sizeof err, HINGE_ERR_NOMEM, "cannot create a mutex");
    }
    if (s != HINGE_OK) {
        free(hm);
        return api_fail(s, "%s: %s", path, err);
    }
    *out = hm;
    return HINGE_OK;
}

void hinge_model_free(hinge_model *m)
{
    if (!m)
        return;
    model_free(m->m);
    pthread_mutex_destroy(&m->hash_mu);
    free(m);
}

hinge_status api_model_hash(hinge_model *hm, char *err, size_t errlen)
{
    if (atomic_load(&hm->hashed))
        return HINGE_OK;
    pthread_mutex_lock(&hm->hash_mu);
    hinge_status s = HINGE_OK;
    if (!atomic_load(&hm->hashed) && (s = model_hash(hm->m, err, errlen)) == HINGE_OK)
        atomic_store(&hm->hashed, true);
    pthread_mutex_unlock(&hm->hash_mu);
    return s;
}

hinge_status hinge_model_sha256(hinge_model *m, char hex[65])
{
    if (!m || !hex)
        return api_fail(HINGE_ERR_INVALID, "hinge_model_sha256: model and hex must not be NULL");
    char err[HINGE_ERRMSG_MAX] = "";
    hinge_status s = api_model_hash(m, err, sizeof err);
    if (s != HINGE_OK)
        return api_fail(s, "%s", err);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", m->m->sha256[i]);
    return HINGE_OK;
}

void hinge_model_get_info(const hinge_model *m, hinge_model_info *out)
{
    if (!m || !out)
        return;
    const model_hparams *hp = &m->m->hp;
    *out = (hinge_model_info){.name = m->m->name, .arch = model_arch_name(hp->arch),
                              .n_layer = hp->n_layer, .n_embd = hp->n_embd, .n_vocab = hp->n_vocab,
                              .n_ctx_train = hp->n_ctx_train, .bos = tok_bos(m->m->tok), .eos = tok_eos(m->m->tok),
                              .file_bytes = gguf_file_size(m->m->file), .weight_bytes = m->m->weight_bytes};
}

hinge_status hinge_tokenize(const hinge_model *m, const char *text, size_t len, int add_bos, int32_t *out,
                            size_t cap, size_t *n_out)
{
    if (!m || (!text && len) || (!out && cap) || !n_out)
        return api_fail(HINGE_ERR_INVALID, "hinge_tokenize: NULL argument");
    const tokenizer *t = m->m->tok;
    bool bos = add_bos && (tok_add_bos(t) || len == 0);
    size_t n = 0;
    hinge_status s = tok_encode(t, text ? text : "", len, bos, true, out, cap, &n);
    if (s == HINGE_ERR_RANGE)
        return api_fail(s, "the text needs more than %zu tokens", cap);
    if (s != HINGE_OK)
        return api_fail(s, "cannot tokenize the text");
    *n_out = n;
    return HINGE_OK;
}

hinge_status hinge_token_to_piece(const hinge_model *m, int32_t prev, int32_t tok, char *buf, size_t cap,
                                  size_t *len_out)
{
    if (!m || (!buf && cap) || !len_out)
        return api_fail(HINGE_ERR_INVALID, "hinge_token_to_piece: NULL argument");
    const tokenizer *t = m->m->tok;
    if (tok < 0 || tok >= tok_n_vocab(t))
        return api_fail(HINGE_ERR_RANGE, "token %d outside the vocabulary of %d", tok, tok_n_vocab(t));
    char piece[256];
    bool strip = prev >= 0 && prev == tok_bos(t) && tok_adds_space_prefix(t);
    size_t len = tok_piece(t, tok, strip, piece, sizeof piece);
    if (len > cap)
        return api_fail(HINGE_ERR_RANGE, "the piece of token %d is %zu bytes, more than %zu", tok, len, cap);
    memcpy(buf, piece, len);
    *len_out = len;
    return HINGE_OK;
}

int hinge_token_is_eog(const hinge_model *m, int32_t tok) { return m && tok_is_eog(m->m->tok, tok) ? 1 : 0; }
