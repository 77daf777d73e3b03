/* The v1 resources (docs/protocol.md):
 *
 *   GET    /v1/health                 200 {"status": "ok"|"draining"}
 *   GET    /metrics                   200 Prometheus text (metrics.c)
 *   GET    /v1/profile                200 model, layers, measured costs, load
 *   POST   /v1/sessions               201 {"id", "n_embd", "n_layer", ...}
 *   GET    /v1/sessions/{id}          200 {"id", "pos", ...}
 *   DELETE /v1/sessions/{id}          204
 *   POST   /v1/sessions/{id}/steps    200 {"token", "pos", "edge_us", "queue_us"}, or with a private
 *                                      head the rows as a frame (timing in headers)
 *
 * A step's body goes straight into its session's frame buffer (capped at
 * one frame of max_step rows); its header is checked as soon as 32 bytes
 * are in, so a bad frame is refused before the rest arrives.
 *
 * Everything but /v1/health needs a client (auth.c) when the edge has keys
 * or client certificates: 401 otherwise. A session is its opener's: for
 * any other client its id does not exist (404). */
#include <string.h>

#include "edge_impl.h"

/* ---- the step reply, written without printf (once per token) ---- */

typedef struct wbuf {
    char *p;
    size_t len, cap;
} wbuf;

static void put_str(wbuf *w, const char *s)
{
    size_t n = strlen(s);
    if (n > w->cap - w->len)
        n = w->cap - w->len;
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void put_int(wbuf *w, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[n++] = '-';
    for (size_t i = 0; i < n && w->len < w->cap; i++)
        w->p[w->len++] = tmp[n - 1 - i];
}

/* tokens: n_tokens samples of a verify step (none for a plain step). */
static size_t step_reply(char *buf, size_t cap, int32_t token, const int32_t *tokens, uint32_t n_tokens, uint32_t pos,
                         uint64_t edge_us, uint64_t queue_us)
{
    wbuf w = {buf, 0, cap};
    put_str(&w, "{\"token\":");
    put_int(&w, token);
    if (n_tokens) {
        put_str(&w, ",\"tokens\":[");
        for (uint32_t i = 0; i < n_tokens; i++) {
            put_str(&w, i ? "," : "");
            put_int(&w, tokens[i]);
        }
        put_str(&w, "]");
    }
    put_str(&w, ",\"pos\":");
    put_int(&w, pos);
    put_str(&w, ",\"edge_us\":");
    put_int(&w, (int64_t)edge_us);
    put_str(&w, ",\"queue_us\":");
    put_int(&w, (int64_t)queue_us);
    put_str(&w, "}");
    return w.len;
}

/* The answer to a 200 step: the token JSON, or a private head's rows (the
 * step's n rows of s->hidden, in the session's codec, encoded into s->rx,
 * which the step no longer needs). Recorded with --record-dir. */
static void respond_step(hinge_edge *e, edge_conn *c, edge_stream *st, edge_session *s, const edge_step *p,
                         uint64_t edge_us, uint64_t queue_us)
{
    char body[EDGE_RESP_SMALL];
    const void *out = body;
    size_t n;
    if (s->private_head) {
        char err[HINGE_ERRMSG_MAX];
        if (tx_frame_encode(s->codec, p->hdr.flags, p->hdr.pos, p->hdr.n, s->m->hp.n_embd, s->hidden, s->rx,
                            s->rx_cap, &n, err, sizeof err) != HINGE_OK) {
            edge_respond_error(c, st, 500, "internal", "the step's rows: %s", err);
            return;
        }
        out = s->rx;
        edge_respond_frame(c, st, s->rx, n, edge_us, queue_us);
    } else {
        uint32_t n_tokens = p->hdr.flags & TX_FLAG_VERIFY ? p->hdr.n : 0;
        n = step_reply(body, sizeof body, p->token, p->tokens, n_tokens, s->next_pos, edge_us, queue_us);
        edge_respond(c, st, 200, body, n);
    }
    if (e->record_dir)
        edge_record_reply(e, p->rec_seq, out, n);
}

/* ---- helpers ---- */

static void detach(edge_stream *st)
{
    if (st->sess) {
        st->sess->rx_owner = NULL;
        st->sess = NULL;
    }
}

void edge_api_stream_gone(edge_stream *st)
{
    detach(st);
    edge_oa_stream_gone(st);
}

/* Records what the stream received so far, then lets go of its session. */
static void record_and_detach(hinge_edge *e, edge_stream *st)
{
    if (e->record_dir) {
        if (st->sess)
            edge_record(e, st, st->sess->rx, st->sess->rx_len);
        else
            edge_record(e, st, st->json, st->json_len);
    }
    detach(st);
}

void edge_api_stall(edge_conn *c, edge_stream *st)
{
    record_and_detach(c->e, st);
    edge_respond_error(c, st, 408, "request_timeout", "no progress for %u ms after %llu body bytes", c->e->stall_ms,
                       (unsigned long long)st->received);
}

static const char *status_code(int http)
{
    switch (http) {
    case 400: return "bad_request";
    case 404: return "not_found";
    case 408: return "request_timeout";
    case 409: return "conflict";
    case 413: return "payload_too_large";
    case 422: return "unsupported_backend"; /* what the edge's backend does not run (vk.c: a model on Vulkan) */
    case 429: return "quota";
    case 503: return "unavailable";
    default: return "internal";
    }
}

static bool method_ok(edge_conn *c, edge_stream *st)
{
    static const char *const allowed[] = {
        [EDGE_ROUTE_HEALTH] = "GET", [EDGE_ROUTE_PROFILE] = "GET", [EDGE_ROUTE_SESSIONS] = "POST",
        [EDGE_ROUTE_SESSION] = "GET, DELETE", [EDGE_ROUTE_STEPS] = "POST", [EDGE_ROUTE_METRICS] = "GET",
        [EDGE_ROUTE_OA_COMPLETIONS] = "POST", [EDGE_ROUTE_OA_CHAT] = "POST", [EDGE_ROUTE_OA_MODELS] = "GET",
    };
    bool ok;
    switch (st->route) {
    case EDGE_ROUTE_SESSIONS:
    case EDGE_ROUTE_OA_COMPLETIONS:
    case EDGE_ROUTE_OA_CHAT:
    case EDGE_ROUTE_STEPS: ok = st->method == EDGE_M_POST; break;
    case EDGE_ROUTE_SESSION: ok = st->method == EDGE_M_GET || st->method == EDGE_M_DELETE; break;
    default: ok = st->method == EDGE_M_GET; break;
    }
    if (!ok)
        edge_respond_error(c, st, 405, "method_not_allowed", "%s takes %s", st->path, allowed[st->route]);
    return ok;
}

/* ---- request stages ---- */

/* The stream's session, bound to its connection (a session outlives a lost
 * connection for session_grace_ms: a new one takes it over); NULL and an
 * answer sent when there is none. Another client's session is not there. */
static edge_session *find_session(edge_conn *c, edge_stream *st)
{
    edge_session *s = edge_session_find(c->e, st->sid, st->client);
    if (s) {
        if (s->conn_id != c->id)
            c->e->sessions_resumed++;
        s->conn_id = c->id;
        s->orphan_ms = 0;
    } else if (c->e->draining) {
        edge_respond_error(c, st, 503, "draining", "the edge is shutting down; no session %.40s here",
                           st->sid[0] ? st->sid : "(bad id)");
    } else {
        edge_respond_error(c, st, 404, "unknown_session", "no session %.40s", st->sid[0] ? st->sid : "(bad id)");
    }
    return s;
}

static void step_headers(edge_conn *c, edge_stream *st)
{
    edge_session *s = find_session(c, st);
    if (!s)
        return;
    if (s->busy || s->rx_owner) {
        edge_respond_error(c, st, 409, "step_in_flight", "session %.8s already has a step in flight", s->id);
        return;
    }
    if (st->has_length && st->content_length > s->rx_cap) {
        edge_respond_error(c, st, 413, "payload_too_large", "content-length %llu over the session's %zu-byte frame",
                           (unsigned long long)st->content_length, s->rx_cap);
        return;
    }
    s->rx_owner = st;
    s->rx_len = 0;
    s->last_ms = edge_now_ms();
    st->sess = s;
}

void edge_api_headers(edge_conn *c, edge_stream *st)
{
    if (st->path_too_long) {
        edge_respond_error(c, st, 414, "uri_too_long", "path over %d bytes", EDGE_PATH_MAX - 1);
        return;
    }
    st->route = edge_route_path(st->path, strlen(st->path), st->sid);
    if (st->route == EDGE_ROUTE_NONE) {
        edge_respond_error(c, st, 404, "not_found", "no resource %s", st->path);
        return;
    }
    if (st->route != EDGE_ROUTE_HEALTH && !edge_auth_check(c, st))
        return;
    if (!method_ok(c, st))
        return;
    if (st->route == EDGE_ROUTE_STEPS) {
        step_headers(c, st);
    } else if (edge_oa_route(st->route)) {
        edge_oa_headers(c, st);
    } else if (st->has_length && st->content_length > EDGE_JSON_MAX) {
        edge_respond_error(c, st, 413, "payload_too_large", "body over %d bytes", EDGE_JSON_MAX);
    }
}

/* Checks a step's frame header once its 32 bytes are in. True if fine. */
static bool step_check_header(edge_conn *c, edge_stream *st, edge_session *s)
{
    char err[HINGE_ERRMSG_MAX];
    tx_frame_limits lim = {.codec = s->codec, .dim = s->m->hp.n_embd, .max_n = s->max_step};
    tx_frame_header h;
    hinge_status rc = tx_frame_parse_header(s->rx, s->rx_len, &lim, &h, err, sizeof err);
    if (rc != HINGE_OK) {
        record_and_detach(c->e, st);
        edge_respond_error(c, st, rc == HINGE_ERR_RANGE ? 413 : 400, rc == HINGE_ERR_RANGE ? "payload_too_large"
                                                                                           : "bad_frame", "%s", err);
        return false;
    }
    const edge_step *last = &s->step;
    if (s->steps && last->http == 200 && h.pos == last->hdr.pos && h.n == last->hdr.n &&
        h.flags == last->hdr.flags && h.pos + h.n == s->next_pos) {
        /* the last step again: its reply was lost with a connection; the
         * device sends the same rows (recomputed), so the same answer (a
         * private head's rows are still in s->hidden) */
        record_and_detach(c->e, st);
        c->e->steps_repeated++;
        s->step.rec_seq = c->e->record_seq - 1;
        respond_step(c->e, c, st, s, last, 0, 0);
        return false;
    }
    if (s->private_head && (h.flags & TX_FLAG_VERIFY)) {
        record_and_detach(c->e, st);
        edge_respond_error(c, st, 400, "bad_frame", "a private head's session has no verify steps: the edge samples "
                           "nothing");
        return false;
    }
    if (h.pos < s->rewind_floor || h.pos > s->next_pos) {
        record_and_detach(c->e, st);
        edge_respond_error(c, st, 409, "position_conflict",
                           "step starts at position %u; the session expects %u (or back to %u)", h.pos, s->next_pos,
                           s->rewind_floor);
        return false;
    }
    if ((uint64_t)h.pos + h.n > s->ctx) {
        record_and_detach(c->e, st);
        edge_respond_error(c, st, 409, "ctx_exceeded", "positions %u..%llu exceed the session's ctx of %u", h.pos,
                           (unsigned long long)h.pos + h.n - 1, s->ctx);
        return false;
    }
    return true;
}

static void step_data(edge_conn *c, edge_stream *st, const uint8_t *data, size_t len)
{
    edge_session *s = st->sess;
    if (!s) {
        edge_respond_error(c, st, 404, "unknown_session", "the session was closed");
        return;
    }
    if (len > s->rx_cap - s->rx_len) {
        record_and_detach(c->e, st);
        edge_respond_error(c, st, 413, "payload_too_large", "frame over %zu bytes (%u rows of the session's codec)",
                           s->rx_cap, s->max_step);
        return;
    }
    memcpy(s->rx + s->rx_len, data, len);
    s->rx_len += len;
    if (!st->header_checked && s->rx_len >= TX_FRAME_HEADER_BYTES) {
        st->header_checked = true;
        step_check_header(c, st, s);
    }
}

void edge_api_data(edge_conn *c, edge_stream *st, const uint8_t *data, size_t len)
{
    if (st->route == EDGE_ROUTE_STEPS) {
        step_data(c, st, data, len);
        return;
    }
    if (edge_oa_route(st->route)) {
        edge_oa_data(c, st, data, len);
        return;
    }
    if (len > EDGE_JSON_MAX - st->json_len) {
        record_and_detach(c->e, st);
        edge_respond_error(c, st, 413, "payload_too_large", "body over %d bytes", EDGE_JSON_MAX);
        return;
    }
    memcpy(st->json + st->json_len, data, len);
    st->json_len += len;
}

static void step_end(edge_conn *c, edge_stream *st)
{
    edge_session *s = st->sess;
    if (!s) {
        edge_respond_error(c, st, 404, "unknown_session", "the session was closed");
        return;
    }
    if (!st->header_checked && !step_check_header(c, st, s))
        return;
    tx_frame_header h;
    tx_frame_limits lim = {.codec = s->codec, .dim = s->m->hp.n_embd, .max_n = s->max_step};
    tx_frame_parse_header(s->rx, s->rx_len, &lim, &h, NULL, 0);
    if (s->rx_len - TX_FRAME_HEADER_BYTES != h.payload_len) {
        record_and_detach(c->e, st);
        edge_respond_error(c, st, 400, "bad_frame", "body of %zu bytes, but the frame header says %llu",
                           s->rx_len, (unsigned long long)(TX_FRAME_HEADER_BYTES + h.payload_len));
        return;
    }
    uint64_t rec_seq = c->e->record_dir ? edge_record(c->e, st, s->rx, s->rx_len) : 0;
    s->rx_owner = NULL;
    st->sess = NULL;
    s->busy = true;
    s->step = (edge_step){.conn_id = c->id, .stream_id = st->id, .t_queued_us = edge_now_us(),
                          .seq_queued = edge_worker_batches(c->e->worker), .rec_seq = rec_seq};
    st->state = ES_COMPUTE;
    c->e->steps_out++;
    c->e->spin_until_us = s->step.t_queued_us + c->e->spin_us;
    if (!edge_worker_submit(c->e->worker, s)) { /* cannot happen: one step per session, cap = max_sessions */
        c->e->steps_out--;
        s->busy = false;
        st->state = ES_BODY;
        edge_respond_error(c, st, 503, "unavailable", "compute queue full");
    }
}

static void sessions_post(edge_conn *c, edge_stream *st)
{
    hinge_edge *e = c->e;
    char detail[HINGE_ERRMSG_MAX];
    edge_session_req rq;
    if (edge_parse_session_req(st->json, st->json_len, &rq, detail, sizeof detail) != HINGE_OK) {
        edge_respond_error(c, st, 400, "bad_request", "%s", detail);
        return;
    }
    edge_session *s = NULL;
    const char *code = "internal";
    int http = edge_session_open(e, &rq, st->client, &s, &code, detail, sizeof detail);
    if (http != 201) {
        edge_respond_error(c, st, http, code, "%s", detail);
        return;
    }
    s->conn_id = c->id;
    const model_hparams *hp = &s->m->hp;
    hinge_log(&e->log, HINGE_LOG_INFO, "session %.8s opened by %s (%s) on %s: cut %u, private head %u, %s, ctx %u, "
              "max_step %u, %zu bytes", s->id, c->peer, s->owner[0] ? s->owner : "anonymous", s->em->file, s->cut,
              s->private_head, tx_codec_name(s->codec), s->ctx, s->max_step, s->bytes);
    edge_respond_json(c, st, 201,
                      json_pack("{s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "id", s->id, "protocol", "v1",
                                "cut", (json_int_t)s->cut, "codec", tx_codec_name(s->codec), "n_embd",
                                (json_int_t)hp->n_embd, "n_layer", (json_int_t)hp->n_layer, "n_vocab",
                                (json_int_t)hp->n_vocab, "ctx", (json_int_t)s->ctx, "max_step",
                                (json_int_t)s->max_step, "private_head", (json_int_t)s->private_head));
}

static void session_resource(edge_conn *c, edge_stream *st)
{
    edge_session *s = find_session(c, st);
    if (!s)
        return;
    if (st->method == EDGE_M_DELETE) {
        edge_session_close(c->e, s);
        edge_respond(c, st, 204, "", 0);
        return;
    }
    edge_respond_json(c, st, 200,
                      json_pack("{s:s, s:I, s:s, s:I, s:I, s:I, s:b, s:I, s:I}", "id", s->id, "cut",
                                (json_int_t)s->cut, "codec", tx_codec_name(s->codec), "ctx", (json_int_t)s->ctx,
                                "max_step", (json_int_t)s->max_step, "pos", (json_int_t)s->next_pos, "busy", s->busy,
                                "steps", (json_int_t)s->steps, "private_head", (json_int_t)s->private_head));
}

static void metrics_get(edge_conn *c, edge_stream *st)
{
    char buf[EDGE_METRICS_MAX];
    size_t n = edge_metrics_text(c->e, buf, sizeof buf);
    if (n == 0)
        edge_respond_error(c, st, 500, "internal", "the metrics are over %d bytes", EDGE_METRICS_MAX);
    else
        edge_respond_typed(c, st, 200, "text/plain; version=0.0.4", buf, n);
}

void edge_api_end(edge_conn *c, edge_stream *st)
{
    hinge_edge *e = c->e;
    if (st->route == EDGE_ROUTE_STEPS) {
        step_end(c, st);
        return;
    }
    if (edge_oa_route(st->route)) {
        edge_oa_end(c, st);
        return;
    }
    if (e->record_dir)
        edge_record(e, st, st->json, st->json_len);
    switch (st->route) {
    case EDGE_ROUTE_HEALTH:
        edge_respond_json(c, st, 200,
                          e->instance_id[0] ? json_pack("{s:s, s:s}", "status", e->draining ? "draining" : "ok",
                                                        "instance", e->instance_id)
                                            : json_pack("{s:s}", "status", e->draining ? "draining" : "ok"));
        break;
    case EDGE_ROUTE_PROFILE: edge_respond_json(c, st, 200, edge_profile_json(e)); break;
    case EDGE_ROUTE_METRICS: metrics_get(c, st); break;
    case EDGE_ROUTE_SESSIONS: sessions_post(c, st); break;
    case EDGE_ROUTE_SESSION: session_resource(c, st); break;
    default: edge_respond_error(c, st, 404, "not_found", "no resource %s", st->path); break;
    }
}

/* ---- steps coming back from the worker ---- */

static void account(hinge_edge *e, const edge_session *s, const edge_step *p)
{
    e->steps_done++;
    if (s->m != e->m) /* the per-cut costs (/v1/profile) are the default model's */
        return;
    edge_cut_stats *cs = &e->cuts[s->cut];
    uint64_t us = p->t_end_us - p->t_start_us;
    if ((p->hdr.flags & TX_FLAG_VERIFY) || s->private_head) {
        /* not the cost of [cut, N) + head per step: kept out of the served costs */
    } else if (p->hdr.n == 1) {
        cs->decode_steps++;
        cs->decode_us += us;
    } else {
        cs->prefill_positions += p->hdr.n;
        cs->prefill_us += us;
    }
}

void edge_api_step_done(hinge_edge *e, edge_session *s)
{
    edge_step *p = &s->step;
    s->busy = false;
    e->steps_out--;
    s->last_ms = edge_now_ms();
    if (p->http == 200 && !s->closing) {
        s->next_pos = p->hdr.pos + p->hdr.n;
        s->rewind_floor = p->hdr.flags & TX_FLAG_VERIFY ? p->hdr.pos + 1 : s->next_pos;
        s->steps++;
        account(e, s, p);
    }
    if (s->oa) { /* a thin client's: its generation goes on (openai.c) */
        edge_oa_step_done(e, s);
        return;
    }
    edge_conn *c = edge_conn_find(e, p->conn_id);
    edge_stream *st = c ? edge_stream_find(c, p->stream_id) : NULL;
    if (p->http == 200) {
        edge_lat_observe(e, EDGE_L_STEP, (double)(p->t_end_us - p->t_start_us) * 1e-6);
        edge_lat_observe(e, EDGE_L_QUEUE, (double)(p->t_start_us - p->t_queued_us) * 1e-6);
    }
    if (st && st->state == ES_COMPUTE) {
        if (s->closing && e->draining) {
            edge_respond_error(c, st, 503, "draining", "the edge is shutting down and ended the session");
        } else if (s->closing) {
            edge_respond_error(c, st, 404, "unknown_session", "the session was closed during the step");
        } else if (p->http == 200) {
            respond_step(e, c, st, s, p, p->t_end_us - p->t_start_us, p->t_start_us - p->t_queued_us);
        } else {
            edge_respond_error(c, st, p->http, status_code(p->http), "%s", p->err);
        }
        edge_conn_flush(c);
    }
    if (s->closing)
        edge_session_close(e, s);
}
