/* The session table.
 *
 * Everything a step touches is allocated when the session is created (the
 * fwd_ctx of layers [cut, N), the sampler, the activation and logit rows,
 * the frame buffer), except the KV cache: it is paged (model/kv.h), its
 * blocks taken from the edge's budget as the session's positions grow,
 * before a step is admitted (sched.c), never inside one. A session opens
 * with its first block per layer, so an edge whose budget is spent refuses
 * new sessions (503) rather than their first step. The steps themselves run
 * in the worker's batches (sched.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "edge_impl.h"

enum { DRAIN_IDLE_MS = 2000 };

static void session_release(hinge_edge *e, edge_session *s)
{
    edge_vk_session_close(e, s); /* before the model it reads goes */
    if (s->em)
        edge_model_unpin(s->em);
    tail_destroy(s->t);
    free(s->hidden);
    free(s->rx);
    memset(s, 0, sizeof *s);
}

void edge_sessions_free(hinge_edge *e)
{
    for (uint32_t i = 0; e->sessions && i < e->max_sessions; i++)
        if (e->sessions[i].used)
            session_release(e, &e->sessions[i]);
    e->n_sessions = 0;
}

/* The model the request names, or 422 with the served ones in detail. */
static edge_model *find_model(hinge_edge *e, const edge_session_req *rq, const char **code, char *detail,
                              size_t detail_len)
{
    edge_model *em = edge_model_by_sha(e, rq->model_sha256);
    if (em)
        return em;
    size_t len = (size_t)snprintf(detail, detail_len, "this edge serves");
    for (uint32_t i = 0; i < e->n_models && len < detail_len; i++) {
        char want[65];
        edge_hex(e->models[i].sha256, 32, want);
        len += (size_t)snprintf(detail + len, detail_len - len, "%s %s with sha256 %s", i ? "," : "",
                                e->models[i].file, want);
    }
    *code = "model_mismatch";
    return NULL;
}

/* Checks the request against the model and the edge's limits. */
static int check_req(const hinge_edge *e, const model *m, const edge_session_req *rq, const char **code,
                     char *detail, size_t detail_len)
{
    const model_hparams *hp = &m->hp;
    *code = "bad_request";
    if (rq->cut > hp->n_layer) {
        hinge_fail(detail, detail_len, HINGE_ERR_INVALID, "cut %u beyond the model's %u layers", rq->cut,
                   hp->n_layer);
        return 400;
    }
    if (rq->private_head && (rq->private_head >= hp->n_layer || rq->cut > hp->n_layer - rq->private_head)) {
        hinge_fail(detail, detail_len, HINGE_ERR_INVALID, "private_head %u with cut %u: needs 1 <= private_head < "
                   "%u and cut + private_head <= %u", rq->private_head, rq->cut, hp->n_layer, hp->n_layer);
        return 400;
    }
    if (rq->ctx > e->max_ctx) {
        hinge_fail(detail, detail_len, HINGE_ERR_INVALID, "ctx %u over this edge's limit of %u", rq->ctx, e->max_ctx);
        return 400;
    }
    if (rq->sampling.top_k > hp->n_vocab) {
        hinge_fail(detail, detail_len, HINGE_ERR_INVALID, "top_k %u over the vocabulary of %u", rq->sampling.top_k,
                   hp->n_vocab);
        return 400;
    }
    return 0;
}

static edge_session *free_slot(hinge_edge *e)
{
    for (uint32_t i = 0; i < e->max_sessions; i++)
        if (!e->sessions[i].used)
            return &e->sessions[i];
    return NULL;
}

/* Allocates the session's compute state, its sampler past skip draws;
 * *code says why it failed. */
static hinge_status session_alloc(hinge_edge *e, edge_session *s, uint64_t skip, const char **code, char *detail,
                                  size_t detail_len)
{
    const model_hparams *hp = &s->m->hp;
    /* max_batch 1: the session's own pass scratch goes unused (its steps run
     * in the worker's fwd_batch), so keep it small. On Vulkan the tail has
     * no layers: the sampler and the logit row (and the embedding of the
     * thin clients' tokens, openai.c) */
    uint32_t end = hp->n_layer - s->private_head;
    tail_config tc = {.cut = e->vk ? end : s->cut, .end = end, .ctx = s->ctx, .max_batch = 1, .pool = e->kv,
                      .sp = s->sp};
    hinge_status st = tail_create(s->m, e->tp, &tc, &s->t, detail, detail_len);
    if (st != HINGE_OK)
        return st;
    tail_skip_samples(s->t, skip);
    if (!e->vk && s->cut < end && (st = tail_kv_reserve(s->t, 0, 1)) != HINGE_OK) {
        *code = "kv_budget";
        return hinge_fail(detail, detail_len, st, "%s", tail_errmsg(s->t));
    }
    if (tx_frame_size(s->codec, s->max_step, hp->n_embd, &s->rx_cap) != HINGE_OK)
        return hinge_fail(detail, detail_len, HINGE_ERR_RANGE, "max_step %u too large", s->max_step);
    s->hidden = malloc((size_t)s->max_step * hp->n_embd * sizeof(float));
    s->rx = malloc(s->rx_cap);
    if (!s->hidden || !s->rx)
        return hinge_fail(detail, detail_len, HINGE_ERR_NOMEM, "out of memory for the session's buffers");
    return HINGE_OK;
}

/* What client holds: sessions and their bytes. */
static void client_usage(const hinge_edge *e, const char *client, uint32_t *n, size_t *bytes)
{
    *n = 0;
    *bytes = 0;
    for (uint32_t i = 0; i < e->max_sessions; i++) {
        const edge_session *s = &e->sessions[i];
        if (s->used && strcmp(s->owner, client) == 0) {
            (*n)++;
            *bytes += s->bytes;
        }
    }
}

/* Counts the refusal; the caller writes the detail. */
static int refuse(hinge_edge *e, edge_reject why, int http, const char **code, const char *c)
{
    e->rejected[why]++;
    *code = c;
    return http;
}

int edge_session_open(hinge_edge *e, const edge_session_req *rq, const char *client, edge_session **out,
                      const char **code, char *detail, size_t detail_len)
{
    edge_model *em = find_model(e, rq, code, detail, detail_len);
    if (!em) {
        e->rejected[EDGE_REJ_INVALID]++;
        return 422;
    }
    edge_session *s = free_slot(e);
    uint32_t held;
    size_t held_bytes;
    client_usage(e, client, &held, &held_bytes);
    if (e->draining) {
        snprintf(detail, detail_len, "the edge is shutting down: open a session on another edge");
        return refuse(e, EDGE_REJ_DRAINING, 503, code, "draining");
    }
    if (!s) {
        snprintf(detail, detail_len, "all %u sessions are in use", e->max_sessions);
        return refuse(e, EDGE_REJ_FULL, 503, code, "too_many_sessions");
    }
    if (held >= e->client_max_sessions) {
        snprintf(detail, detail_len, "this client holds %u sessions, its quota", held);
        return refuse(e, EDGE_REJ_QUOTA_SESSIONS, 429, code, "quota_sessions");
    }
    int http = edge_model_ensure(e, em, code, detail, detail_len);
    if (!http && (http = check_req(e, em->m, rq, code, detail, detail_len)) != 0)
        e->rejected[EDGE_REJ_INVALID]++;
    if (http)
        return http;
    uint8_t raw[EDGE_SID_HEX / 2];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        *code = "internal";
        hinge_fail(detail, detail_len, HINGE_ERR_IO, "RAND_bytes failed");
        return 500;
    }
    memset(s, 0, sizeof *s);
    edge_hex(raw, sizeof raw, s->id);
    memcpy(s->id, e->instance_id, strlen(e->instance_id)); /* a proxy routes on it */
    s->cut = rq->cut;
    s->private_head = rq->private_head;
    s->codec = rq->codec;
    s->ctx = rq->ctx;
    uint32_t step = rq->max_step ? rq->max_step : e->max_step;
    step = step < e->max_step ? step : e->max_step;
    s->max_step = step < rq->ctx ? step : rq->ctx;
    s->sp = rq->sampling;
    s->last_ms = edge_now_ms();
    s->em = em;
    s->m = em->m;
    edge_model_pin(em);
    *code = "out_of_memory";
    if (e->vk && (http = edge_vk_session_open(e, s, code, detail, detail_len)) != 0) {
        session_release(e, s);
        e->rejected[http == 503 ? EDGE_REJ_MEMORY : EDGE_REJ_INVALID]++;
        return http;
    }
    hinge_status st = session_alloc(e, s, rq->skip, code, detail, detail_len);
    if (st != HINGE_OK) {
        session_release(e, s);
        e->rejected[st == HINGE_ERR_NOMEM ? EDGE_REJ_MEMORY : EDGE_REJ_INVALID]++;
        *code = st == HINGE_ERR_NOMEM ? *code : "bad_request";
        return st == HINGE_ERR_NOMEM ? 503 : 400;
    }
    /* what the client is charged: its buffers and the KV cache the session
     * may grow to (paged: held as it grows, but promised now) */
    s->bytes = tail_bytes(s->t) + tail_kv_bytes_max(s->t) + s->vx_kv + s->rx_cap +
               (size_t)s->max_step * s->m->hp.n_embd * sizeof(float);
    if (e->client_kv_bytes && held_bytes + s->bytes > e->client_kv_bytes) {
        snprintf(detail, detail_len, "this session needs %zu bytes; the client's quota of %llu leaves %llu",
                 s->bytes, (unsigned long long)e->client_kv_bytes,
                 (unsigned long long)(e->client_kv_bytes > held_bytes ? e->client_kv_bytes - held_bytes : 0));
        session_release(e, s);
        return refuse(e, EDGE_REJ_QUOTA_KV, 429, code, "quota_kv_bytes");
    }
    snprintf(s->owner, sizeof s->owner, "%s", client);
    s->used = true;
    e->sessions_opened++;
    e->n_sessions++;
    *out = s;
    return 201;
}

size_t edge_session_kv_bytes(const edge_session *s)
{
    return s && s->used ? tail_kv_bytes(s->t) + s->vx_kv : 0;
}

edge_session *edge_session_find(hinge_edge *e, const char *sid, const char *client)
{
    if (strlen(sid) != EDGE_SID_HEX)
        return NULL;
    for (uint32_t i = 0; i < e->max_sessions; i++) {
        edge_session *s = &e->sessions[i];
        if (s->used && !s->closing && CRYPTO_memcmp(s->id, sid, EDGE_SID_HEX) == 0)
            return strcmp(s->owner, client) == 0 ? s : NULL;
    }
    return NULL;
}

void edge_sessions_orphan(hinge_edge *e, uint64_t conn_id)
{
    uint64_t now = edge_now_ms();
    for (uint32_t i = 0; i < e->max_sessions; i++) {
        edge_session *s = &e->sessions[i];
        if (s->used && s->conn_id == conn_id && !s->orphan_ms)
            s->orphan_ms = now ? now : 1;
    }
}

void edge_session_close(hinge_edge *e, edge_session *s)
{
    if (s->rx_owner) {
        s->rx_owner->sess = NULL;
        s->rx_owner = NULL;
    }
    if (s->busy) {
        s->closing = true;
        return;
    }
    hinge_log(&e->log, HINGE_LOG_INFO, "session %.8s closed after %llu steps", s->id, (unsigned long long)s->steps);
    session_release(e, s);
    e->n_sessions--;
}

void edge_session_expire(hinge_edge *e, uint64_t now_ms)
{
    /* while draining, a session between two turns (no request for a while) is
     * ended: its client's next request gets 404 and it resumes elsewhere */
    uint32_t idle = e->draining && e->session_ms > DRAIN_IDLE_MS ? DRAIN_IDLE_MS : e->session_ms;
    for (uint32_t i = 0; i < e->max_sessions; i++) {
        edge_session *s = &e->sessions[i];
        /* a thin client's session (s->oa) is its request's: closed with it (openai.c) */
        if (!s->used || s->closing || s->busy || s->rx_owner || s->oa)
            continue;
        const char *why = NULL;
        if (e->drain_ending) {
            why = "drain timeout";
        } else if (now_ms - s->last_ms > idle) {
            why = e->draining ? "idle while draining" : "idle";
        } else if (s->orphan_ms && e->draining) {
            why = "its connection closed while draining"; /* its client resumes elsewhere */
        } else if (s->orphan_ms && now_ms - s->orphan_ms > e->session_grace_ms) {
            why = "its connection closed and no other came";
            e->sessions_orphaned++;
        }
        if (!why)
            continue;
        hinge_log(&e->log, HINGE_LOG_INFO, "session %.8s of %s: closing (%s)", s->id, s->owner[0] ? s->owner : "-",
                  why);
        edge_session_close(e, s);
    }
}
