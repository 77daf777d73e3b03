/* The session table.
 *
 * Everything a step touches is allocated when the session is created (the
 * fwd_ctx with the KV cache of layers [cut, N), the sampler, the activation
 * and logit rows, the frame buffer): a step allocates nothing. The steps
 * themselves run in the worker's batches (sched.c). */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "edge_impl.h"

static void session_release(edge_session *s)
{
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
            session_release(&e->sessions[i]);
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

/* Allocates the session's compute state. */
static hinge_status session_alloc(hinge_edge *e, edge_session *s, char *detail, size_t detail_len)
{
    const model_hparams *hp = &s->m->hp;
    /* max_batch 1: the session's own pass scratch goes unused (its steps run
     * in the worker's fwd_batch), so keep it small */
    tail_config tc = {.cut = s->cut, .ctx = s->ctx, .max_batch = 1, .sp = s->sp};
    hinge_status st = tail_create(s->m, e->tp, &tc, &s->t, detail, detail_len);
    if (st != HINGE_OK)
        return st;
    if (tx_frame_size(s->codec, s->max_step, hp->n_embd, &s->rx_cap) != HINGE_OK)
        return hinge_fail(detail, detail_len, HINGE_ERR_RANGE, "max_step %u too large", s->max_step);
    s->hidden = malloc((size_t)s->max_step * hp->n_embd * sizeof(float));
    s->rx = malloc(s->rx_cap);
    if (!s->hidden || !s->rx)
        return hinge_fail(detail, detail_len, HINGE_ERR_NOMEM, "out of memory for the session's buffers");
    return HINGE_OK;
}

int edge_session_open(hinge_edge *e, const edge_session_req *rq, edge_session **out, const char **code,
                      char *detail, size_t detail_len)
{
    edge_model *em = find_model(e, rq, code, detail, detail_len);
    if (!em)
        return 422;
    edge_session *s = free_slot(e);
    if (e->draining) {
        *code = "draining";
        hinge_fail(detail, detail_len, HINGE_ERR_RANGE, "the edge is shutting down");
        return 503;
    }
    if (!s) {
        *code = "too_many_sessions";
        hinge_fail(detail, detail_len, HINGE_ERR_RANGE, "all %u sessions are in use", e->max_sessions);
        return 503;
    }
    int http = edge_model_ensure(e, em, code, detail, detail_len);
    if (http || (http = check_req(e, em->m, rq, code, detail, detail_len)))
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
    hinge_status st = session_alloc(e, s, detail, detail_len);
    if (st != HINGE_OK) {
        session_release(s);
        *code = st == HINGE_ERR_NOMEM ? "out_of_memory" : "bad_request";
        return st == HINGE_ERR_NOMEM ? 503 : 400;
    }
    s->used = true;
    e->n_sessions++;
    *out = s;
    return 201;
}

edge_session *edge_session_find(hinge_edge *e, const char *sid)
{
    if (strlen(sid) != EDGE_SID_HEX)
        return NULL;
    for (uint32_t i = 0; i < e->max_sessions; i++) {
        edge_session *s = &e->sessions[i];
        if (s->used && !s->closing && CRYPTO_memcmp(s->id, sid, EDGE_SID_HEX) == 0)
            return s;
    }
    return NULL;
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
    session_release(s);
    e->n_sessions--;
}

void edge_session_expire(hinge_edge *e, uint64_t now_ms)
{
    for (uint32_t i = 0; i < e->max_sessions; i++) {
        edge_session *s = &e->sessions[i];
        /* a thin client's session (s->oa) is its request's: closed with it (openai.c) */
        if (s->used && !s->closing && !s->busy && !s->rx_owner && !s->oa && now_ms - s->last_ms > e->session_ms) {
            hinge_log(&e->log, HINGE_LOG_INFO, "session %.8s idle for %u ms: closing", s->id, e->session_ms);
            edge_session_close(e, s);
        }
    }
}
