/* HTTP/2 on top of nghttp2's server API: the session callbacks, the
 * stream slots they fill, and response submission.
 *
 * Callback contracts (nghttp2 calls them from nghttp2_session_mem_recv and
 * nghttp2_session_send, in the loop thread, with user = the edge_conn):
 * they never block, never free the connection, and return 0 or an
 * NGHTTP2_ERR_* code that nghttp2 documents for that callback. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_impl.h"

enum {
    H2_STREAM_WINDOW = 1 << 20, /* per-stream receive window: a prefill frame rarely waits for an update */
    H2_CONN_WINDOW = 16 << 20,
    H2_MAX_HEADER_LIST = 16384,
};

/* ---- stream slots ---- */

edge_stream *edge_stream_find(edge_conn *c, int32_t id)
{
    for (int i = 0; i < EDGE_MAX_STREAMS; i++)
        if (c->streams[i].state != ES_FREE && c->streams[i].id == id)
            return &c->streams[i];
    return NULL;
}

static edge_stream *slot_take(edge_conn *c, int32_t id)
{
    for (int i = 0; i < EDGE_MAX_STREAMS; i++) {
        edge_stream *st = &c->streams[i];
        if (st->state != ES_FREE)
            continue;
        /* reset the request part; json and resp are overwritten before use */
        memset(st, 0, offsetof(edge_stream, json));
        st->id = id;
        st->state = ES_HEADERS;
        st->last_ms = edge_now_ms();
        st->t_start_us = edge_now_us();
        st->resp_heap = NULL;
        st->resp_len = st->resp_off = 0;
        return st;
    }
    return NULL;
}

static void slot_free(edge_stream *st)
{
    free(st->resp_heap);
    st->resp_heap = NULL;
    st->state = ES_FREE;
    st->id = 0;
}

/* ---- callbacks ---- */

static ssize_t on_send(nghttp2_session *h2, const uint8_t *data, size_t len, int flags, void *user)
{
    (void)h2;
    (void)flags;
    edge_conn *c = user;
    size_t space = sizeof c->out - c->out_len;
    if (space == 0)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (c->out_len == 0)
        c->last_write_ms = edge_now_ms(); /* output starts waiting now */
    size_t n = len < space ? len : space;
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
    return (ssize_t)n;
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    edge_conn *c = user;
    c->last_stream_ms = edge_now_ms();
    edge_stream *st = slot_take(c, f->hd.stream_id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets the stream */
    nghttp2_session_set_stream_user_data(h2, f->hd.stream_id, st);
    return 0;
}

static bool parse_length(const uint8_t *v, size_t len, uint64_t *out)
{
    uint64_t x = 0;
    if (len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return true;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
    (void)flags;
    edge_conn *c = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    edge_stream *st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    if (!st)
        return 0;
    if (namelen == 13 && memcmp(name, "authorization", 13) == 0) {
        st->auth_given = true;
        st->auth_bad = !edge_auth_bearer(c->e, value, valuelen, st->client, sizeof st->client);
        if (st->auth_bad)
            st->client[0] = '\0';
    } else if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
        st->method = valuelen == 3 && memcmp(value, "GET", 3) == 0      ? EDGE_M_GET
                     : valuelen == 4 && memcmp(value, "POST", 4) == 0   ? EDGE_M_POST
                     : valuelen == 6 && memcmp(value, "DELETE", 6) == 0 ? EDGE_M_DELETE
                                                                        : EDGE_M_OTHER;
    } else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        st->path_too_long = valuelen >= EDGE_PATH_MAX;
        size_t n = st->path_too_long ? EDGE_PATH_MAX - 1 : valuelen;
        memcpy(st->path, value, n);
        st->path[n] = '\0';
    } else if (namelen == 14 && memcmp(name, "content-length", 14) == 0) {
        st->has_length = parse_length(value, valuelen, &st->content_length);
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
    edge_conn *c = user;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    edge_stream *st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    if (!st)
        return 0;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (end)
        st->req_done = true;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST && st->state == ES_HEADERS) {
        st->state = ES_BODY;
        edge_api_headers(c, st);
    }
    if (end && st->state == ES_BODY)
        edge_api_end(c, st);
    return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                         void *user)
{
    (void)flags;
    edge_stream *st = nghttp2_session_get_stream_user_data(h2, stream_id);
    if (!st)
        return 0;
    st->received += len;
    st->last_ms = edge_now_ms();
    if (st->state == ES_BODY)
        edge_api_data(user, st, data, len);
    return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
    (void)user;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    edge_stream *st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    if (st && !st->req_done) /* answered early: the rest of the body is dropped, for a while (edge_conn_tick) */
        st->answered_ms = edge_now_ms();
    return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code, void *user)
{
    (void)error_code;
    edge_conn *c = user;
    c->last_stream_ms = edge_now_ms();
    edge_stream *st = nghttp2_session_get_stream_user_data(h2, stream_id);
    if (!st)
        return 0;
    edge_api_stream_gone(st);
    slot_free(st);
    return 0;
}

hinge_status edge_h2_session(edge_conn *c)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return HINGE_ERR_NOMEM;
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    int rv = nghttp2_session_server_new(&c->h2, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        return HINGE_ERR_NOMEM;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, EDGE_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_LIST},
    };
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0)
        return HINGE_ERR_NOMEM;
    return HINGE_OK;
}

/* ---- responses ---- */

static ssize_t read_body(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *src, void *user)
{
    (void)h2;
    (void)stream_id;
    (void)user;
    edge_stream *st = src->ptr;
    const char *body = st->resp_heap ? st->resp_heap : st->resp;
    size_t left = st->resp_len - st->resp_off;
    size_t n = left < length ? left : length;
    memcpy(buf, body + st->resp_off, n);
    st->resp_off += n;
    st->last_ms = edge_now_ms(); /* the client's window let bytes out (the flow-control stall timer) */
    if (st->resp_off == st->resp_len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* Writes v in decimal; returns the length. out holds at least 21 bytes. */
static size_t put_dec(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

static nghttp2_nv make_nv(const char *name, const char *value)
{
    nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                     NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
    return nv;
}

static const char *method_name(edge_method m)
{
    static const char *const names[] = {"?", "GET", "POST", "DELETE"};
    return names[m];
}

/* Puts body into the stream's response storage (at most max bytes); false
 * when it cannot. */
static bool store_body(edge_stream *st, const char *body, size_t len, size_t max)
{
    if (len <= EDGE_RESP_SMALL) {
        memcpy(st->resp, body, len);
    } else {
        if (len > max || !(st->resp_heap = malloc(len)))
            return false;
        memcpy(st->resp_heap, body, len);
    }
    st->resp_len = len;
    st->resp_off = 0;
    return true;
}

void edge_respond(edge_conn *c, edge_stream *st, int status, const char *body, size_t len)
{
    edge_respond_typed(c, st, status, "application/json", body, len);
}

/* The response: body (up to max bytes) with its type, and the timing
 * headers of a frame reply when timing is not NULL (edge_us, queue_us). */
static void respond(edge_conn *c, edge_stream *st, int status, const char *type, const char *body, size_t len,
                    size_t max, const uint64_t *timing)
{
    static const char fallback[] = "{\"error\":\"internal\",\"detail\":\"response too large\"}";
    if (st->state == ES_RESPONDED || st->state == ES_FREE)
        return;
    if (!store_body(st, body, len, max)) {
        status = 500;
        type = "application/json";
        timing = NULL;
        store_body(st, fallback, sizeof fallback - 1, EDGE_RESP_MAX);
    }
    st->status = status;
    put_dec(st->status_str, (uint64_t)(status % 1000));
    put_dec(st->length_str, st->resp_len);
    nghttp2_nv hdrs[6] = {make_nv(":status", st->status_str), make_nv("content-length", st->length_str),
                          make_nv("content-type", type)};
    size_t nh = st->resp_len ? 3 : 2;
    if (timing) {
        put_dec(st->edge_us_str, timing[0]);
        put_dec(st->queue_us_str, timing[1]);
        hdrs[nh++] = make_nv("hinge-edge-us", st->edge_us_str);
        hdrs[nh++] = make_nv("hinge-queue-us", st->queue_us_str);
    }
    if (status == 503 || status == 429) /* full, draining, over a quota: come back in a second */
        hdrs[nh++] = make_nv("retry-after", "1");
    else if (status == 401)
        hdrs[nh++] = make_nv("www-authenticate", "Bearer realm=\"hinge-edge\"");
    st->last_ms = edge_now_ms();
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    st->state = ES_RESPONDED;
    int rv = nghttp2_submit_response(c->h2, st->id, hdrs, nh, st->resp_len ? &prd : NULL);
    hinge_edge *e = c->e;
    e->requests++;
    if (status >= 400)
        e->errors++;
    hinge_log(&e->log, HINGE_LOG_DEBUG, "%s %s %s -> %d (%llu us)%s", c->peer, method_name(st->method), st->path,
              status, (unsigned long long)(edge_now_us() - st->t_start_us), rv ? " (submit failed)" : "");
}

void edge_respond_typed(edge_conn *c, edge_stream *st, int status, const char *type, const char *body, size_t len)
{
    respond(c, st, status, type, body, len, EDGE_RESP_MAX, NULL);
}

void edge_respond_frame(edge_conn *c, edge_stream *st, const uint8_t *frame, size_t len, uint64_t edge_us,
                        uint64_t queue_us)
{
    uint64_t timing[2] = {edge_us, queue_us};
    respond(c, st, 200, "application/octet-stream", (const char *)frame, len, len, timing);
}

void edge_respond_error(edge_conn *c, edge_stream *st, int status, const char *code, const char *fmt, ...)
{
    char detail[HINGE_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    json_t *j = json_pack("{s:s, s:s}", "error", code, "detail", detail);
    if (!j) /* detail was not UTF-8 (it may quote peer bytes) */
        j = json_pack("{s:s, s:s}", "error", code, "detail", "(detail not representable)");
    edge_respond_json(c, st, status, j);
}

void edge_respond_json(edge_conn *c, edge_stream *st, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        static const char oom[] = "{\"error\":\"internal\",\"detail\":\"out of memory\"}";
        edge_respond(c, st, 500, oom, sizeof oom - 1);
        return;
    }
    edge_respond(c, st, status, s, strlen(s));
    free(s);
}
