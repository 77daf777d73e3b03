/* One generation across a cut: see gen.h. */
#include "gen.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "vk_exec.h"

struct gen {
    gen_config cfg;
    uint32_t n_embd, n_vocab;
    /* front */
    fwd_ctx *front;   /* CPU: [0, k) */
    dev_ctx *vk;      /* Vulkan: context and executor for [0, k) */
    vk_exec *vx;
    float *hidden;    /* (ctx, n_embd) */
    /* tail, in-process */
    fwd_ctx *tail;    /* [k, N) */
    sampler *smp;
    float *logits;    /* n_vocab */
    /* tail, remote */
    tx_client *client;    /* cfg.client or own_client */
    tx_client *own_client;
    tx_session *sess;
    char errmsg[HINGE_ERRMSG_MAX];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static hinge_status open_front(gen *g, char *err, size_t errlen)
{
    const gen_config *c = &g->cfg;
    if (c->backend == GEN_BACKEND_VULKAN) {
        dev_ctx_config vc = {0};
        hinge_status s = dev_ctx_create(&vc, &g->vk, err, errlen);
        if (s == HINGE_OK)
            s = vk_exec_create(g->vk, c->m, c->cut, c->ctx, 0, &g->vx, err, errlen);
        return s;
    }
    fwd_config fc = {.layer_begin = 0, .layer_end = c->cut, .ctx = c->ctx};
    return fwd_create(c->m, c->tp, &fc, &g->front, err, errlen);
}

static hinge_status open_tail(gen *g, char *err, size_t errlen)
{
    const gen_config *c = &g->cfg;
    if (!c->edge_url) {
        fwd_config fc = {.layer_begin = c->cut, .layer_end = c->m->hp.n_layer, .ctx = c->ctx};
        hinge_status s = fwd_create(c->m, c->tp, &fc, &g->tail, err, errlen);
        if (s == HINGE_OK && sampler_create(&c->sp, g->n_vocab, &g->smp) != HINGE_OK)
            s = hinge_fail(err, errlen, HINGE_ERR_INVALID, "bad sampling parameters");
        g->logits = malloc((size_t)g->n_vocab * sizeof(float));
        if (s == HINGE_OK && !g->logits)
            s = hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for logits");
        return s;
    }
    hinge_status s = HINGE_OK;
    if (c->client) {
        g->client = c->client;
    } else {
        tx_client_config cc = {.base_url = c->edge_url, .cacert = c->cacert};
        if ((s = tx_client_create(&cc, &g->own_client, err, errlen)) != HINGE_OK)
            return s;
        g->client = g->own_client;
    }
    tx_session_config sc = {.cut = c->cut, .codec = c->codec ? c->codec : TX_CODEC_F32, .sampling = c->sp,
                            .ctx = c->ctx};
    memcpy(sc.model_sha256, c->m->sha256, sizeof sc.model_sha256);
    s = tx_session_open(g->client, &sc, &g->sess, err, errlen);
    if (s == HINGE_OK && tx_session_get_info(g->sess)->n_embd != g->n_embd)
        s = hinge_fail(err, errlen, HINGE_ERR_PROTOCOL, "the edge's model has n_embd %u, ours %u",
                       tx_session_get_info(g->sess)->n_embd, g->n_embd);
    return s;
}

hinge_status gen_create(const gen_config *cfg, gen **out, char *err, size_t errlen)
{
    const model_hparams *hp = &cfg->m->hp;
    if (cfg->cut > hp->n_layer || cfg->ctx == 0)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "cut %u is not in [0, %u] or context is 0", cfg->cut,
                          hp->n_layer);
    gen *g = calloc(1, sizeof *g);
    if (!g)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    g->cfg = *cfg;
    g->n_embd = hp->n_embd;
    g->n_vocab = hp->n_vocab;
    g->hidden = malloc((size_t)cfg->ctx * hp->n_embd * sizeof(float));
    hinge_status s = g->hidden ? HINGE_OK : hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    if (s == HINGE_OK)
        s = open_front(g, err, errlen);
    if (s == HINGE_OK)
        s = open_tail(g, err, errlen);
    if (s != HINGE_OK) {
        gen_destroy(g);
        return s;
    }
    *out = g;
    return HINGE_OK;
}

void gen_destroy(gen *g)
{
    if (!g)
        return;
    tx_session_close(g->sess, NULL, 0);
    tx_client_destroy(g->own_client);
    fwd_destroy(g->tail);
    sampler_destroy(g->smp);
    free(g->logits);
    vk_exec_destroy(g->vx);
    dev_ctx_destroy(g->vk);
    fwd_destroy(g->front);
    free(g->hidden);
    free(g);
}

const char *gen_errmsg(const gen *g) { return g ? g->errmsg : "no generation"; }

static hinge_status run_front(gen *g, const int32_t *tokens, size_t n, uint32_t pos0)
{
    hinge_status s;
    if (g->vx) {
        s = vk_exec_run(g->vx, tokens, n, pos0, g->hidden);
        if (s != HINGE_OK)
            return hinge_fail(g->errmsg, sizeof g->errmsg, s, "vulkan: %s", vk_exec_errmsg(g->vx));
        return s;
    }
    s = fwd_embed(g->front, tokens, n, g->hidden);
    if (s == HINGE_OK)
        s = fwd_layers(g->front, pos0, n, g->hidden);
    if (s != HINGE_OK)
        return hinge_fail(g->errmsg, sizeof g->errmsg, s, "device layers: %s", fwd_errmsg(g->front));
    return s;
}

static hinge_status run_tail(gen *g, size_t n, uint32_t pos0, int32_t *next, gen_timing *t)
{
    if (g->sess) {
        tx_timing tt = {0};
        hinge_status s = tx_session_step(g->sess, pos0, (uint32_t)n, g->hidden, next, &tt);
        if (s != HINGE_OK)
            return hinge_fail(g->errmsg, sizeof g->errmsg, s, "edge: %s", tx_session_errmsg(g->sess));
        t->edge_s = (double)tt.edge_us * 1e-6;
        t->queue_s = (double)tt.queue_us * 1e-6;
        t->network_s = (double)tt.network_us * 1e-6;
        t->up_bytes = tt.uplink_bytes;
        t->down_bytes = tt.downlink_bytes;
        return HINGE_OK;
    }
    hinge_status s = fwd_layers(g->tail, pos0, n, g->hidden);
    if (s == HINGE_OK)
        s = fwd_head(g->tail, g->hidden + (n - 1) * g->n_embd, 1, g->logits);
    if (s != HINGE_OK)
        return hinge_fail(g->errmsg, sizeof g->errmsg, s, "layers after the cut: %s", fwd_errmsg(g->tail));
    *next = sampler_sample(g->smp, g->logits);
    return HINGE_OK;
}

hinge_status gen_step(gen *g, const int32_t *tokens, size_t n, uint32_t pos0, int32_t *next, gen_timing *t)
{
    gen_timing local = {0};
    if (!t)
        t = &local;
    *t = (gen_timing){0};
    if (n == 0 || (uint64_t)pos0 + n > g->cfg.ctx)
        return hinge_fail(g->errmsg, sizeof g->errmsg, HINGE_ERR_RANGE, "positions [%u, %llu) outside the %u-position context",
                          pos0, (unsigned long long)pos0 + n, g->cfg.ctx);
    double t0 = now_s();
    hinge_status s = run_front(g, tokens, n, pos0);
    double t1 = now_s();
    t->device_s = t1 - t0;
    if (s == HINGE_OK)
        s = run_tail(g, n, pos0, next, t);
    t->tail_s = now_s() - t1;
    if (!g->sess)
        t->edge_s = t->tail_s;
    return s;
}

void gen_client_stats(const gen *g, tx_client_stats *out)
{
    *out = (tx_client_stats){0};
    if (g->client)
        tx_client_get_stats(g->client, out);
}
