/* The session: both halves of the forward pass, one step at a time.
 *
 * The front (embed + layers [0, cut)) runs here on the CPU engine or on
 * Vulkan; the tail (layers [cut, N), head, sampler) runs in this process
 * (model/tail.c) or on an edge over HTTP/2. Everything a step touches is
 * allocated by hinge_session_create: a step allocates nothing. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "session_impl.h"

enum { DEFAULT_CTX = 4096, DEFAULT_TIMEOUT_MS = 30000 };

static char *dup_str(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

/* The caller's config, grown to this library's struct: fields the caller's
 * older struct lacks keep their defaults. */
static hinge_status read_config(const hinge_session_config *c, hinge_session_config *out)
{
    hinge_session_config_init(out);
    if (!c)
        return HINGE_OK;
    if (c->size < offsetof(hinge_session_config, log) || c->size > sizeof *out)
        return api_fail(HINGE_ERR_INVALID, "hinge_session_config.size is %u: call hinge_session_config_init first",
                        c->size);
    memcpy(out, c, c->size);
    out->size = sizeof *out;
    return HINGE_OK;
}

/* Checks the config against the model; fills s->cut, s->codec, s->ctx. */
static hinge_status check_config(hinge_session *s)
{
    const hinge_session_config *c = &s->cfg;
    const model_hparams *hp = &s->m->hp;
    uint32_t n_ctx = c->n_ctx ? c->n_ctx : (hp->n_ctx_train < DEFAULT_CTX ? hp->n_ctx_train : DEFAULT_CTX);
    if (n_ctx > hp->n_ctx_train || n_ctx > (1u << 20))
        return api_fail(HINGE_ERR_INVALID, "n_ctx %u is over the model's context of %u", n_ctx, hp->n_ctx_train);
    if ((unsigned)c->wire > HINGE_WIRE_Q8 || (unsigned)c->backend > HINGE_BACKEND_VULKAN)
        return api_fail(HINGE_ERR_INVALID, "unknown wire %d or backend %d", (int)c->wire, (int)c->backend);
    if (c->cut < HINGE_CUT_AUTO || c->cut > (int)hp->n_layer)
        return api_fail(HINGE_ERR_INVALID, "cut %d is not in [0, %u], HINGE_CUT_ALL or HINGE_CUT_AUTO", c->cut,
                        hp->n_layer);
    if (c->edge_url && c->cut == HINGE_CUT_ALL)
        return api_fail(HINGE_ERR_INVALID, "an edge needs a cut: set cut to a layer count or HINGE_CUT_AUTO");
    if (c->cut >= 0 && (uint32_t)c->cut < c->min_cut)
        return api_fail(HINGE_ERR_INVALID, "cut %d is under the privacy floor min_cut %u", c->cut, c->min_cut);
    if (c->min_cut > hp->n_layer)
        return api_fail(HINGE_ERR_INVALID, "min_cut %u is over the model's %u layers", c->min_cut, hp->n_layer);
    if (!(c->wire_noise >= 0.0f && c->wire_noise <= 100.0f) || !(c->max_recovery >= 0.0f && c->max_recovery <= 1.0f))
        return api_fail(HINGE_ERR_INVALID, "wire_noise %g or max_recovery %g out of range ([0, 100], [0, 1])",
                        (double)c->wire_noise, (double)c->max_recovery);
    if (!(c->temperature >= 0.0f) || !(c->top_p >= 0.0f) || c->top_p > 1.0f || c->top_k > hp->n_vocab)
        return api_fail(HINGE_ERR_INVALID, "sampling: temperature %g, top_p %g, top_k %u out of range",
                        (double)c->temperature, (double)c->top_p, c->top_k);
#ifndef HINGE_HAVE_VULKAN
    if (c->backend == HINGE_BACKEND_VULKAN)
        return api_fail(HINGE_ERR_UNSUPPORTED, "this libhinge was built without Vulkan (-Dvulkan=disabled)");
#endif
    if (c->speculate > TX_VERIFY_MAX - 1)
        return api_fail(HINGE_ERR_INVALID, "speculate %u is over %d drafts", c->speculate, TX_VERIFY_MAX - 1);
    if (c->private_head && (c->private_head >= hp->n_layer || c->cut == HINGE_CUT_ALL || c->speculate ||
                            (c->cut >= 0 && (uint32_t)c->cut + c->private_head > hp->n_layer)))
        return api_fail(HINGE_ERR_INVALID, "private_head %u: needs 1 <= private_head < %u layers, a split (cut %d: "
                        "cut + private_head <= %u, or HINGE_CUT_AUTO) and no speculate (the edge samples nothing to "
                        "verify drafts with)", c->private_head, hp->n_layer, c->cut, hp->n_layer);
    s->ctx = n_ctx;
    s->spec_max = c->speculate;
    s->spec_alpha = 0.5; /* a prior: the first steps send drafts and measure */
    s->spec_net_ms = s->spec_c1_ms = s->spec_row_ms = -1.0;
    s->cut = c->cut >= 0 ? (uint32_t)c->cut : hp->n_layer;
    s->codec = (tx_codec)(c->wire + 1);
    s->remote = c->edge_url != NULL;
    s->noise_seed = c->noise_seed;
    /* a seed the edge cannot guess: whoever knows it can subtract the noise */
    if (c->wire_noise > 0.0f && s->noise_seed == 0 &&
        getrandom(&s->noise_seed, sizeof s->noise_seed, 0) != (ssize_t)sizeof s->noise_seed)
        return api_fail(HINGE_ERR_IO, "no random seed for the wire noise (getrandom failed)");
    return HINGE_OK;
}

hinge_status sess_open_front(hinge_session *s)
{
    if (s->cfg.backend == HINGE_BACKEND_VULKAN) {
#ifdef HINGE_HAVE_VULKAN
        dev_ctx_config vc = {0};
        hinge_status st = dev_ctx_create(&vc, &s->vk, s->err, sizeof s->err);
        if (st == HINGE_OK)
            st = vk_exec_create(s->vk, s->m, s->cut, s->ctx, 0, &s->vx, s->err, sizeof s->err);
        return st;
#endif
    }
    fwd_config fc = {.layer_begin = 0, .layer_end = s->cut, .ctx = s->ctx};
    hinge_status st = fwd_create(s->m, s->tp, &fc, &s->front, s->err, sizeof s->err);
    s->bytes += fwd_bytes(s->front);
    return st;
}

void sess_close_front(hinge_session *s)
{
#ifdef HINGE_HAVE_VULKAN
    vk_exec_destroy(s->vx);
    dev_ctx_destroy(s->vk);
    s->vx = NULL;
    s->vk = NULL;
#endif
    s->bytes -= fwd_bytes(s->front);
    fwd_destroy(s->front);
    s->front = NULL;
}

static sampler_params sampling(const hinge_session_config *c)
{
    return (sampler_params){.temp = c->temperature, .top_k = c->top_k, .top_p = c->top_p, .seed = c->seed};
}

/* The private head, once: failover and a local tail keep it, with its KV cache. */
static hinge_status open_head(hinge_session *s)
{
    if (!s->pj || s->head)
        return HINGE_OK;
    tail_config tc = {.cut = s->m->hp.n_layer - s->pj, .ctx = s->ctx, .sp = sampling(&s->cfg)};
    hinge_status st = tail_create(s->m, s->tp, &tc, &s->head, s->err, sizeof s->err);
    s->bytes += tail_bytes(s->head);
    return st;
}

hinge_status sess_open_local_tail(hinge_session *s, bool wire)
{
    tail_config tc = {.cut = s->cut, .end = s->m->hp.n_layer - s->pj, .ctx = s->ctx, .sp = sampling(&s->cfg)};
    hinge_status st = open_head(s);
    if (st == HINGE_OK)
        st = tail_create(s->m, s->tp, &tc, &s->tail, s->err, sizeof s->err);
    s->bytes += tail_bytes(s->tail);
    if (st != HINGE_OK || s->codec == TX_CODEC_F32 || !wire)
        return st;
    /* the wire, emulated: each step's rows go through the codec and back */
    if ((st = tx_frame_size(s->codec, s->ctx, s->m->hp.n_embd, &s->frame_cap)) != HINGE_OK)
        return hinge_fail(s->err, sizeof s->err, st, "a frame of %u rows is over the wire's limits", s->ctx);
    if (!(s->frame = malloc(s->frame_cap)))
        return hinge_fail(s->err, sizeof s->err, HINGE_ERR_NOMEM, "out of memory for the wire frame");
    s->bytes += s->frame_cap;
    return HINGE_OK;
}

hinge_status sess_open_client(hinge_session *s)
{
    if (s->client || !s->edge_url)
        return HINGE_OK;
    tx_client_config cc = {.base_url = s->edge_url, .cacert = s->ca_file, .api_key = s->api_key,
                           .timeout_ms = s->cfg.timeout_ms ? s->cfg.timeout_ms : DEFAULT_TIMEOUT_MS,
                           .spin_us = s->cfg.spin_us};
    return tx_client_create(&cc, &s->client, s->err, sizeof s->err);
}

hinge_status sess_open_edge_session(hinge_session *s, uint64_t skip)
{
    tx_session_config sc = {.cut = s->cut, .codec = s->codec, .sampling = sampling(&s->cfg), .ctx = s->ctx,
                            .max_step = s->cfg.max_step, .sample_skip = skip, .private_head = s->pj};
    memcpy(sc.model_sha256, s->m->sha256, sizeof sc.model_sha256);
    hinge_status st = tx_session_open(s->client, &sc, &s->sess, s->err, sizeof s->err);
    if (st == HINGE_OK && tx_session_get_info(s->sess)->n_embd != s->m->hp.n_embd)
        st = hinge_fail(s->err, sizeof s->err, HINGE_ERR_PROTOCOL, "the edge's model has n_embd %u, ours %u",
                        tx_session_get_info(s->sess)->n_embd, s->m->hp.n_embd);
    return st;
}

/* The tail: an edge session, or the stage in this process. */
static hinge_status open_tail(hinge_session *s)
{
    if (!s->remote) /* a fixed cut, even N, has a wire; a decided or full local run has none */
        return sess_open_local_tail(s, s->cfg.cut >= 0);
    hinge_status st = open_head(s);
    if (st != HINGE_OK)
        return st;
    st = sess_open_client(s);
    if (st == HINGE_OK)
        st = sess_open_edge_session(s, 0);
    /* the next edges, in ring order from the one chosen */
    for (uint32_t k = 1; st != HINGE_OK && recover_can(st) && k < s->n_edges; k++) {
        int next = (s->edge_i + 1) % (int)s->n_edges;
        hinge_log(&s->lg, HINGE_LOG_WARN, "edge %s: %s: trying %s", s->edge_url, s->err, s->edges[next]);
        tx_client_destroy(s->client);
        s->client = NULL;
        s->edge_i = next;
        s->edge_url = s->edges[next];
        if ((st = sess_open_client(s)) == HINGE_OK)
            st = sess_open_edge_session(s, 0);
    }
    return st;
}

static hinge_status build(hinge_session *s)
{
    const model_hparams *hp = &s->m->hp;
    hinge_status st = tp_create(s->cfg.n_threads, &s->tp);
    if (st != HINGE_OK)
        return hinge_fail(s->err, sizeof s->err, st, "cannot start %d threads", s->cfg.n_threads);
    if (s->remote && (st = api_model_hash(s->hm, s->err, sizeof s->err)) != HINGE_OK)
        return st;
    if ((st = auto_check_privacy(s, s->err, sizeof s->err)) != HINGE_OK)
        return st;
    if (s->cfg.cut == HINGE_CUT_AUTO) {
        uint32_t hint = s->cfg.prompt_hint ? s->cfg.prompt_hint : 128;
        if ((st = sess_open_client(s)) != HINGE_OK || (st = auto_decide(s, hint, s->err, sizeof s->err)) != HINGE_OK)
            return st;
    }
    /* a decision to run everything here has nothing to keep from the edge */
    s->pj = s->cut < hp->n_layer ? s->cfg.private_head : 0;
    if (s->pj && s->cut + s->pj > hp->n_layer)
        return hinge_fail(s->err, sizeof s->err, HINGE_ERR_INVALID, "cut %u leaves no room for a private head of %u",
                          s->cut, s->pj);
    size_t hidden = (size_t)s->ctx * hp->n_embd * sizeof(float);
    s->hidden = malloc(hidden);
    s->tokens = malloc(((size_t)s->ctx + 1) * sizeof(int32_t));
    s->hist = malloc((size_t)s->ctx * sizeof(int32_t));
    if (!s->hidden || !s->tokens || !s->hist)
        return hinge_fail(s->err, sizeof s->err, HINGE_ERR_NOMEM, "out of memory for %u positions", s->ctx);
    s->bytes += hidden + ((size_t)s->ctx * 2 + 1) * sizeof(int32_t);
    if ((st = sess_open_front(s)) != HINGE_OK)
        return st;
    return open_tail(s);
}

/* cfg.mem_limit with a fixed cut: the weights of the device's layers and
 * what the session allocated must fit (HINGE_CUT_AUTO: the partitioner
 * chose a cut that fits by its own account). */
static hinge_status check_memory(const hinge_session *s)
{
    if (!s->cfg.mem_limit || s->cfg.cut == HINGE_CUT_AUTO)
        return HINGE_OK;
    uint64_t weights = 0;
    for (uint32_t il = 0; il < s->m->hp.n_layer; il++)
        if (il < s->cut || il >= s->m->hp.n_layer - s->pj)
            weights += model_layer_bytes(s->m, il);
    if (weights + s->bytes <= s->cfg.mem_limit)
        return HINGE_OK;
    return api_fail(HINGE_ERR_NOMEM, "the session needs %llu bytes (%llu of weights for %u layers, %llu allocated), "
                    "over mem_limit %llu", (unsigned long long)(weights + s->bytes), (unsigned long long)weights,
                    s->cut, (unsigned long long)s->bytes, (unsigned long long)s->cfg.mem_limit);
}

/* s->edges: edge_url, then the fallbacks, copied; edge_i 0 when there is one. */
static bool copy_edges(hinge_session *s)
{
    const hinge_session_config *c = &s->cfg;
    s->edge_i = -1;
    if (!c->edge_url)
        return true;
    uint32_t n = 1 + (c->fallback_edges ? c->n_fallback_edges : 0);
    if (!(s->edges = calloc(n, sizeof *s->edges)))
        return false;
    bool ok = true;
    s->edges[0] = dup_str(c->edge_url, &ok);
    for (uint32_t i = 1; i < n; i++)
        s->edges[i] = dup_str(c->fallback_edges[i - 1] ? c->fallback_edges[i - 1] : c->edge_url, &ok);
    s->n_edges = n;
    s->edge_i = 0;
    s->edge_url = s->edges[0];
    return ok;
}

hinge_status hinge_session_create(hinge_model *m, const hinge_session_config *c, hinge_session **out)
{
    if (!m || !out)
        return api_fail(HINGE_ERR_INVALID, "hinge_session_create: model and out must not be NULL");
    hinge_session *s = calloc(1, sizeof *s);
    if (!s)
        return api_fail(HINGE_ERR_NOMEM, "out of memory for a session");
    s->hm = m;
    s->m = m->m;
    s->pending = -1;
    hinge_status st = read_config(c, &s->cfg);
    if (st == HINGE_OK)
        st = check_config(s);
    if (st != HINGE_OK) {
        free(s);
        return st;
    }
    bool ok = copy_edges(s);
    s->ca_file = dup_str(s->cfg.ca_file, &ok);
    s->api_key = dup_str(s->cfg.api_key, &ok);
    s->cfg.api_key = NULL; /* the caller's string is borrowed for this call only */
    s->channel_cache = dup_str(s->cfg.channel_cache, &ok);
    s->cfg.channel_cache = s->channel_cache;
    s->chat_template = dup_str(s->cfg.chat_template, &ok);
    s->cfg.chat_template = s->chat_template;
    s->lg = (hinge_logger){.fn = s->cfg.log, .user = s->cfg.log_user, .level = s->cfg.log_level};
    st = ok ? build(s) : hinge_fail(s->err, sizeof s->err, HINGE_ERR_NOMEM, "out of memory");
    if (st != HINGE_OK) {
        api_fail(st, "%s", s->err);
        hinge_session_free(s);
        return st;
    }
    s->bytes += sizeof *s;
    if ((st = check_memory(s)) != HINGE_OK) {
        hinge_session_free(s);
        return st;
    }
    hinge_log(&s->lg, HINGE_LOG_INFO, "session: cut %u of %u, private head %u, %s, %s wire, %u positions, %.1f MiB",
              s->cut, s->m->hp.n_layer, s->pj, s->remote ? s->edge_url : "local", tx_codec_name(s->codec), s->ctx,
              (double)s->bytes / (1 << 20));
    *out = s;
    return HINGE_OK;
}

void hinge_session_free(hinge_session *s)
{
    if (!s)
        return;
    auto_finish(s);
    tx_session_close(s->sess, NULL, 0);
    tx_client_destroy(s->client);
    tail_destroy(s->tail);
    tail_destroy(s->head);
    free(s->frame);
#ifdef HINGE_HAVE_VULKAN
    vk_exec_destroy(s->vx);
    dev_ctx_destroy(s->vk);
#endif
    fwd_destroy(s->front);
    tp_destroy(s->tp);
    free(s->hidden);
    free(s->tokens);
    free(s->hist);
    for (uint32_t i = 0; i < s->n_edges; i++)
        free(s->edges[i]);
    free(s->edges);
    free(s->ca_file);
    if (s->api_key) /* a secret: do not leave it in freed memory */
        explicit_bzero(s->api_key, strlen(s->api_key));
    free(s->api_key);
    free(s->channel_cache);
    free(s->chat_template);
    free(s);
}

/* The noise defence, on the rows about to cross the cut (a fixed cut, or a
 * decided split): a function of (seed, position), so a replayed prefix gets
 * the same noise. */
static void add_noise(hinge_session *s, size_t n, uint32_t pos0)
{
    if (s->cfg.wire_noise > 0.0f && (s->cfg.cut >= 0 || s->cut < s->m->hp.n_layer))
        tx_noise_add(s->hidden, (uint32_t)n, s->m->hp.n_embd, pos0, s->cfg.wire_noise, s->noise_seed);
}

hinge_status sess_run_front(hinge_session *s, const int32_t *tokens, size_t n, uint32_t pos0)
{
    hinge_status st;
#ifdef HINGE_HAVE_VULKAN
    if (s->vx) {
        if ((st = vk_exec_run(s->vx, tokens, n, pos0, s->hidden)) != HINGE_OK)
            return hinge_fail(s->err, sizeof s->err, st, "vulkan: %s", vk_exec_errmsg(s->vx));
        add_noise(s, n, pos0);
        return st;
    }
#endif
    st = fwd_embed(s->front, tokens, n, s->hidden);
    if (st == HINGE_OK)
        st = fwd_layers(s->front, pos0, n, s->hidden);
    if (st != HINGE_OK)
        return hinge_fail(s->err, sizeof s->err, st, "device layers: %s", fwd_errmsg(s->front));
    add_noise(s, n, pos0);
    return st;
}

/* The emulated wire: the rows become what an edge would decode. */
hinge_status sess_through_codec(hinge_session *s, size_t n, uint32_t pos0)
{
    uint32_t dim = s->m->hp.n_embd;
    tx_frame_limits lim = {.codec = s->codec, .dim = dim, .max_n = s->ctx};
    size_t len = 0;
    hinge_status st = tx_frame_encode(s->codec, 0, pos0, (uint32_t)n, dim, s->hidden, s->frame, s->frame_cap, &len,
                                      s->err, sizeof s->err);
    if (st == HINGE_OK)
        st = tx_frame_decode(s->frame, len, &lim, s->hidden, n * dim, NULL, s->err, sizeof s->err);
    return st;
}

/* A decode step's deadline: 10x the recent decode steps' time + 1 s, at
 * most the configured timeout; a prefill (or the first decode step) gets
 * the whole timeout, as its time is not known yet. A stall is noticed
 * within about a second instead of after 30 s. */
static uint32_t step_deadline_ms(const hinge_session *s, size_t n)
{
    uint32_t cap = s->cfg.timeout_ms ? s->cfg.timeout_ms : DEFAULT_TIMEOUT_MS;
    if (n != 1 || s->decode_ms <= 0.0)
        return cap;
    double ms = 10.0 * s->decode_ms + 1000.0;
    return ms < cap ? (uint32_t)ms : cap;
}

void sess_timing(hinge_step_info *t, const tx_timing *tt)
{
    t->edge_ms = (double)tt->edge_us * 1e-3;
    t->queue_ms = (double)tt->queue_us * 1e-3;
    t->network_ms = (double)tt->network_us * 1e-3;
    t->uplink_bytes = tt->uplink_bytes;
    t->downlink_bytes = tt->downlink_bytes;
    t->requests = tt->requests;
}

/* The edge's step: *next sampled there, or with a private head its rows
 * back in s->hidden. */
static hinge_status edge_step(hinge_session *s, size_t n, int32_t *next, tx_timing *tt)
{
    if (s->pj)
        return tx_session_step_rows(s->sess, s->pos, (uint32_t)n, s->hidden, tt);
    return tx_session_step(s->sess, s->pos, (uint32_t)n, s->hidden, next, tt);
}

hinge_status sess_replay_rows(hinge_session *s, uint32_t n)
{
    tx_timing tt;
    return tx_session_step_rows(s->sess, 0, n, s->hidden, &tt);
}

/* The private head on the step's rows (what came back from the edge, or
 * the local tail's output): layers [N - J, N), head, sampler. */
static hinge_status run_head(hinge_session *s, size_t n, int32_t *next)
{
    hinge_status st = tail_step(s->head, s->pos, n, s->hidden, next);
    if (st != HINGE_OK)
        hinge_fail(s->err, sizeof s->err, st, "private head: %s", tail_errmsg(s->head));
    return st;
}

static hinge_status run_tail(hinge_session *s, size_t n, int32_t *next, hinge_step_info *t)
{
    if (s->sess) {
        tx_timing tt = {0};
        tx_session_set_deadline(s->sess, step_deadline_ms(s, n));
        hinge_status st = edge_step(s, n, next, &tt);
        if (st == HINGE_OK && n == 1) {
            double ms = (double)tt.request_us * 1e-3;
            s->decode_ms = s->decode_ms > 0.0 ? 0.8 * s->decode_ms + 0.2 * ms : ms;
        }
        sess_timing(t, &tt);
        if (st != HINGE_OK)
            return hinge_fail(s->err, sizeof s->err, st, "edge: %s", tx_session_errmsg(s->sess));
        return s->pj ? run_head(s, n, next) : HINGE_OK;
    }
    if (!s->tail) /* a failed re-cut left neither half after the cut */
        return hinge_fail(s->err, sizeof s->err, HINGE_ERR_NETWORK, "the layers after the cut were lost in a "
                          "re-cut that nothing recovered");
    hinge_status st = s->frame ? sess_through_codec(s, n, s->pos) : HINGE_OK;
    if (st == HINGE_OK && (st = tail_step(s->tail, s->pos, n, s->hidden, s->pj ? NULL : next)) != HINGE_OK)
        hinge_fail(s->err, sizeof s->err, st, "layers after the cut: %s", tail_errmsg(s->tail));
    if (st != HINGE_OK || !s->pj)
        return st;
    /* the rows come back over the (emulated) wire too */
    if (s->frame && (st = sess_through_codec(s, n, s->pos)) != HINGE_OK)
        return st;
    return run_head(s, n, next);
}

/* Both halves once: tokens at s->pos.., *next sampled. */
static hinge_status try_step(hinge_session *s, const int32_t *tokens, size_t n, int32_t *next, hinge_step_info *t)
{
    double t0 = clk_now_s();
    hinge_status st = sess_run_front(s, tokens, n, s->pos);
    double t1 = clk_now_s();
    t->device_ms = (t1 - t0) * 1e3;
    if (st == HINGE_OK)
        st = run_tail(s, n, next, t);
    t->tail_ms = (clk_now_s() - t1) * 1e3;
    if (!s->sess)
        t->edge_ms = t->tail_ms;
    return st;
}

hinge_status sess_step(hinge_session *s, const int32_t *tokens, size_t n, int32_t *next, hinge_step_info *t)
{
    *t = (hinge_step_info){.pos = s->pos, .n = (uint32_t)n, .token = -1};
    if (n == 0 || (uint64_t)s->pos + n > s->ctx)
        return hinge_fail(s->err, sizeof s->err, HINGE_ERR_RANGE, "positions [%u, %llu) outside the %u-position context",
                          s->pos, (unsigned long long)s->pos + n, s->ctx);
    s->last_n = 0;
    hinge_status st = try_step(s, tokens, n, next, t);
    /* failover: each recovery moves to another edge or to this device, so this ends */
    while (st != HINGE_OK && s->sess && recover_can(st) && (st = recover(s, st)) == HINGE_OK)
        st = try_step(s, tokens, n, next, t);
    if (st != HINGE_OK)
        return st;
    t->token = *next;
    memcpy(s->hist + s->pos, tokens, n * sizeof *tokens);
    s->samples++;
    s->pos += (uint32_t)n;
    s->last_n = n;
    s->stats.requests += t->requests;
    auto_observe(s, t);
    if (n == 1)
        auto_reconsider(s);
    return HINGE_OK;
}

hinge_status hinge_session_step(hinge_session *s, const int32_t *tokens, size_t n, int32_t *next,
                                hinge_step_info *info)
{
    if (!s || !tokens || !next)
        return api_fail(HINGE_ERR_INVALID, "hinge_session_step: session, tokens and next must not be NULL");
    if (atomic_exchange(&s->cancel, false))
        return api_fail(HINGE_CANCELLED, "cancelled");
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= s->m->hp.n_vocab)
            return api_fail(HINGE_ERR_RANGE, "token %zu is %d, outside the vocabulary of %u", i, tokens[i],
                            s->m->hp.n_vocab);
    hinge_step_info local;
    hinge_status st = sess_step(s, tokens, n, next, info ? info : &local);
    if (st != HINGE_OK)
        return api_fail(st, "%s", s->err);
    s->pending = -1;
    return HINGE_OK;
}

hinge_status hinge_session_logits(hinge_session *s, size_t row, size_t n_rows, float *out)
{
    if (!s || !out)
        return api_fail(HINGE_ERR_INVALID, "hinge_session_logits: session and out must not be NULL");
    tail *t = s->head ? s->head : s->tail; /* with a private head, the head is here even with an edge */
    if (!t)
        return api_fail(HINGE_ERR_UNSUPPORTED, "logits are computed on the edge: only a session without an edge "
                                               "has them");
    if (n_rows == 0 || row >= s->last_n || n_rows > s->last_n - row)
        return api_fail(HINGE_ERR_RANGE, "rows [%zu, %zu) are not in the last step's %zu", row, row + n_rows,
                        s->last_n);
    hinge_status st = tail_logits(t, s->hidden + row * s->m->hp.n_embd, n_rows, out);
    if (st != HINGE_OK)
        return api_fail(st, "head: %s", tail_errmsg(t));
    return HINGE_OK;
}

uint32_t hinge_session_position(const hinge_session *s) { return s ? s->pos : 0; }

hinge_status hinge_session_reset(hinge_session *s)
{
    if (!s)
        return api_fail(HINGE_ERR_INVALID, "hinge_session_reset: NULL session");
    s->pos = 0;
    s->pending = -1;
    s->last_n = 0;
    s->chat_open = false;
    atomic_store(&s->cancel, false);
    if (!s->sess)
        return HINGE_OK;
    /* the edge only accepts the next position: a new edge session, same connection */
    s->samples = 0; /* the new edge session's sampler starts afresh */
    tx_session_close(s->sess, NULL, 0);
    s->sess = NULL;
    hinge_status st = sess_open_edge_session(s, 0);
    if (st != HINGE_OK)
        return api_fail(st, "reopening the edge session: %s", s->err);
    return HINGE_OK;
}

void hinge_cancel(hinge_session *s)
{
    if (s)
        atomic_store(&s->cancel, true);
}

void hinge_session_set_step_cb(hinge_session *s, hinge_step_cb cb, void *user)
{
    if (!s)
        return;
    s->step_cb = cb;
    s->step_user = user;
}

uint64_t hinge_session_memory(const hinge_session *s) { return s ? s->bytes : 0; }

void hinge_session_get_stats(const hinge_session *s, hinge_stats *out)
{
    if (!s || !out)
        return;
    *out = s->stats;
    out->cut = (int)s->cut;
    out->wire = (hinge_wire)(s->codec - 1);
    out->remote = s->sess != NULL;
    out->edge_index = s->sess ? s->edge_i : -1;
    out->pos = s->pos;
    out->n_ctx = s->ctx;
    if (!s->stats.recuts)
        out->first_cut = (int)s->cut;
    if (s->client) {
        tx_client_stats cs;
        tx_client_get_stats(s->client, &cs);
        out->connects = cs.connects;
        out->tls_handshakes = cs.tls_handshakes;
        out->requests = cs.requests;
    }
}
