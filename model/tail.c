/* The tail stage: see tail.h. */
#include "tail.h"

#include <stdlib.h>

struct tail {
    const model *m;
    fwd_ctx *f;       /* layers [k, end) and their KV cache */
    sampler *smp;
    float *logits;    /* (n_vocab) */
    size_t bytes;
};

hinge_status tail_create(const model *m, threadpool *tp, const tail_config *c, tail **out, char *err,
                         size_t errlen)
{
    const model_hparams *hp = &m->hp;
    uint32_t end = c->end ? c->end : hp->n_layer;
    if (c->cut > hp->n_layer || end > hp->n_layer || c->cut > end)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "layers [%u, %u) not within the model's %u layers",
                          c->cut, end, hp->n_layer);
    tail *t = calloc(1, sizeof *t);
    if (!t)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for the tail stage");
    t->m = m;
    fwd_config fc = {.layer_begin = c->cut, .layer_end = end, .ctx = c->ctx, .max_batch = c->max_batch,
                     .pool = c->pool};
    hinge_status s = fwd_create(m, tp, &fc, &t->f, err, errlen);
    if (s == HINGE_OK && (s = sampler_create(&c->sp, hp->n_vocab, &t->smp)) != HINGE_OK)
        hinge_fail(err, errlen, s, "bad sampling parameters (temperature %g, top_p %g)", (double)c->sp.temp,
                   (double)c->sp.top_p);
    if (s == HINGE_OK && !(t->logits = malloc((size_t)hp->n_vocab * sizeof(float))))
        s = hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for the logits");
    if (s != HINGE_OK) {
        tail_destroy(t);
        return s;
    }
    t->bytes = sizeof *t + fwd_bytes(t->f) + (size_t)hp->n_vocab * (sizeof(float) + sampler_bytes_per_token());
    *out = t;
    return HINGE_OK;
}

void tail_destroy(tail *t)
{
    if (!t)
        return;
    fwd_destroy(t->f);
    sampler_destroy(t->smp);
    free(t->logits);
    free(t);
}

const char *tail_errmsg(const tail *t) { return t ? fwd_errmsg(t->f) : "no tail stage"; }

hinge_status tail_step(tail *t, uint32_t pos, size_t n, float *hidden, int32_t *token)
{
    hinge_status s = fwd_layers(t->f, pos, n, hidden);
    if (s != HINGE_OK || !token)
        return s;
    s = fwd_head(t->f, hidden + (n - 1) * t->m->hp.n_embd, 1, t->logits);
    if (s == HINGE_OK)
        *token = sampler_sample(t->smp, t->logits);
    return s;
}

hinge_status tail_logits(tail *t, const float *hidden, size_t n, float *logits)
{
    return fwd_head(t->f, hidden, n, logits);
}

hinge_status tail_sample_rows(tail *t, const float *hidden, size_t n, float *logits, int32_t *tokens)
{
    hinge_status s = fwd_head(t->f, hidden, n, logits);
    for (size_t i = 0; s == HINGE_OK && i < n; i++)
        tokens[i] = sampler_sample(t->smp, logits + i * t->m->hp.n_vocab);
    return s;
}

hinge_status tail_embed(tail *t, const int32_t *tokens, size_t n, float *hidden)
{
    return fwd_embed(t->f, tokens, n, hidden);
}

fwd_item tail_item(tail *t, uint32_t pos, uint32_t n, float *hidden, bool sample)
{
    return (fwd_item){.f = t->f, .pos0 = pos, .n = n, .hidden = hidden, .logits = sample ? t->logits : NULL};
}

int32_t tail_sample(tail *t)
{
    return sampler_sample(t->smp, t->logits);
}

int32_t tail_sample_logits(tail *t, const float *logits) { return sampler_sample(t->smp, logits); }

void tail_skip_samples(tail *t, uint64_t n) { sampler_skip(t->smp, n); }

size_t tail_bytes(const tail *t) { return t ? t->bytes : 0; }
hinge_status tail_kv_reserve(tail *t, uint32_t pos0, uint32_t end) { return fwd_kv_reserve(t->f, pos0, end); }
size_t tail_kv_bytes(const tail *t) { return t ? fwd_kv_bytes(t->f) : 0; }
size_t tail_kv_bytes_max(const tail *t) { return t ? fwd_kv_bytes_max(t->f) : 0; }
