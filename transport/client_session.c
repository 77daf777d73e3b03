/* Client sessions: open (POST /v1/sessions), step (POST .../steps with an
 * activation frame), close (DELETE). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client_impl.h"

struct tx_session {
    tx_client *c;              /* borrowed */
    tx_session_info info;
    tx_codec codec;
    CURL *easy;                /* POST .../steps, set up once, reused by every step */
    struct curl_slist *hdrs;
    uint8_t *frame;            /* frame_cap bytes: one frame of max_step rows */
    size_t frame_cap;
    tx_rbuf resp;              /* TX_STEP_RESP_MAX; a private head's: frame_cap */
    uint32_t private_head;     /* J: steps answer with rows (tx_session_step_rows) */
    uint64_t hdr_edge_us, hdr_queue_us; /* a row reply's timing, from its headers */
    long http_status;          /* of the last request */
    char url[TX_URL_MAX];      /* base/v1/sessions/{id} */
    char steps_url[TX_URL_MAX];
    char errmsg[HINGE_ERRMSG_MAX];
};

static void hex_encode(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static json_t *open_request(const tx_session_config *cfg)
{
    char sha[65];
    hex_encode(cfg->model_sha256, 32, sha);
    json_t *j = json_pack("{s:s, s:I, s:s, s:{s:f, s:I, s:f, s:I}, s:I}",
                          "model_sha256", sha, "cut", (json_int_t)cfg->cut, "codec", tx_codec_name(cfg->codec),
                          "sampling", "temp", (double)cfg->sampling.temp, "top_k", (json_int_t)cfg->sampling.top_k,
                          "top_p", (double)cfg->sampling.top_p, "seed", (json_int_t)cfg->sampling.seed, "ctx",
                          (json_int_t)cfg->ctx);
    if (j && cfg->private_head &&
        json_object_set_new(j, "private_head", json_integer((json_int_t)cfg->private_head)) != 0) {
        json_decref(j);
        return NULL;
    }
    json_t *smp = j ? json_object_get(j, "sampling") : NULL;
    if (smp && cfg->sample_skip && json_object_set_new(smp, "skip", json_integer((json_int_t)cfg->sample_skip)) != 0) {
        json_decref(j);
        return NULL;
    }
    if (j && cfg->max_step && json_object_set_new(j, "max_step", json_integer(cfg->max_step)) != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[n] == '\0';
}

/* Reads and checks the 201 body of POST /v1/sessions. */
static hinge_status read_open_reply(tx_session *s, const tx_session_config *cfg, char *err, size_t errlen)
{
    json_t *j = tx_parse_object(&s->c->ctl_resp, err, errlen);
    if (!j)
        return HINGE_ERR_PROTOCOL;
    const char *id = NULL;
    json_int_t n_embd = 0, n_layer = 0, ctx = 0, max_step = 0, head = 0;
    hinge_status st = HINGE_OK;
    if (json_unpack(j, "{s:s, s:I, s:I, s:I, s:I, s?:I}", "id", &id, "n_embd", &n_embd, "n_layer", &n_layer, "ctx",
                    &ctx, "max_step", &max_step, "private_head", &head) != 0 ||
        strlen(id) != 32 || !is_hex(id, 32))
        st = hinge_fail(err, errlen, HINGE_ERR_PROTOCOL, "session reply lacks id/n_embd/n_layer/ctx/max_step");
    else if (head != cfg->private_head) /* an edge that ignored it would sample: tokens on the wire */
        st = hinge_fail(err, errlen, HINGE_ERR_PROTOCOL, "the edge granted private_head %lld, not %u",
                        (long long)head, cfg->private_head);
    else if (n_embd < 1 || n_embd > TX_FRAME_MAX_DIM || n_layer < cfg->cut || ctx < 1 || ctx > cfg->ctx ||
             max_step < 1 || max_step > ctx)
        st = hinge_fail(err, errlen, HINGE_ERR_PROTOCOL,
                        "session reply out of range: n_embd %lld, n_layer %lld, ctx %lld, max_step %lld",
                        (long long)n_embd, (long long)n_layer, (long long)ctx, (long long)max_step);
    if (st == HINGE_OK) {
        memcpy(s->info.id, id, 33);
        s->info.n_embd = (uint32_t)n_embd;
        s->info.n_layer = (uint32_t)n_layer;
        s->info.ctx = (uint32_t)ctx;
        s->info.max_step = (uint32_t)max_step;
    }
    json_decref(j);
    return st;
}

static hinge_status post_open(tx_session *s, const tx_session_config *cfg, char *err, size_t errlen)
{
    tx_client *c = s->c;
    json_t *req = open_request(cfg);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "cannot build the session request");
    char url[TX_URL_MAX];
    snprintf(url, sizeof url, "%s/v1/sessions", c->base_url);
    curl_easy_setopt(c->ctl, CURLOPT_URL, url);
    curl_easy_setopt(c->ctl, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_setopt(c->ctl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->ctl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    uint64_t us;
    hinge_status st = tx_perform(c, c->ctl, &c->ctl_resp, &s->http_status, &us, err, errlen);
    curl_easy_setopt(c->ctl, CURLOPT_POSTFIELDS, NULL);
    free(body);
    if (st != HINGE_OK)
        return st;
    if (s->http_status != 201)
        return tx_http_error(s->http_status, &c->ctl_resp, err, errlen);
    return read_open_reply(s, cfg, err, errlen);
}

/* A header line's value as a number when its name is name (any case). */
static bool header_u64(const char *line, size_t len, const char *name, uint64_t *out)
{
    size_t n = strlen(name);
    if (len <= n + 1 || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return false;
    uint64_t v = 0;
    size_t i = n + 1;
    while (i < len && line[i] == ' ')
        i++;
    for (; i < len && line[i] >= '0' && line[i] <= '9' && v < UINT64_MAX / 10; i++)
        v = v * 10 + (uint64_t)(line[i] - '0');
    *out = v;
    return true;
}

/* libcurl header callback of a private head's steps: the reply body is a
 * frame, so the edge's timing comes as hinge-edge-us / hinge-queue-us. */
static size_t on_header(char *line, size_t size, size_t nitems, void *user)
{
    tx_session *s = user;
    size_t len = size * nitems;
    if (!header_u64(line, len, "hinge-edge-us", &s->hdr_edge_us))
        header_u64(line, len, "hinge-queue-us", &s->hdr_queue_us);
    return len;
}

static hinge_status session_setup(tx_session *s, char *err, size_t errlen)
{
    snprintf(s->url, sizeof s->url, "%s/v1/sessions/%s", s->c->base_url, s->info.id);
    snprintf(s->steps_url, sizeof s->steps_url, "%s/v1/sessions/%s/steps", s->c->base_url, s->info.id);
    if (tx_frame_size(s->codec, s->info.max_step, s->info.n_embd, &s->frame_cap) != HINGE_OK)
        return hinge_fail(err, errlen, HINGE_ERR_PROTOCOL, "granted max_step %u is too large", s->info.max_step);
    s->frame = malloc(s->frame_cap);
    /* a private head's reply is a frame as long as the request's */
    s->resp.cap = s->private_head && s->frame_cap > TX_STEP_RESP_MAX ? s->frame_cap : TX_STEP_RESP_MAX;
    s->resp.data = malloc(s->resp.cap + 1);
    s->easy = curl_easy_init();
    s->hdrs = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    struct curl_slist *h2 = s->hdrs ? curl_slist_append(s->hdrs, "Expect:") : NULL;
    if (!s->frame || !s->resp.data || !s->easy || !h2)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for the session's buffers");
    s->hdrs = h2;
    if (tx_easy_setup(s->c, s->easy, &s->resp) != HINGE_OK ||
        curl_easy_setopt(s->easy, CURLOPT_URL, s->steps_url) != CURLE_OK ||
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->hdrs) != CURLE_OK ||
        curl_easy_setopt(s->easy, CURLOPT_POST, 1L) != CURLE_OK ||
        (s->private_head && (curl_easy_setopt(s->easy, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
                             curl_easy_setopt(s->easy, CURLOPT_HEADERDATA, s) != CURLE_OK)))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "libcurl refused an option");
    return HINGE_OK;
}

static void session_free(tx_session *s)
{
    if (!s)
        return;
    if (s->easy)
        curl_easy_cleanup(s->easy);
    curl_slist_free_all(s->hdrs);
    free(s->resp.data);
    free(s->frame);
    free(s);
}

static hinge_status check_config(const tx_session_config *cfg, char *err, size_t errlen)
{
    if (tx_codec_row_bytes(cfg->codec, 1) == 0)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "unknown codec %d", (int)cfg->codec);
    if (cfg->ctx == 0)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "ctx must be at least 1");
    if (cfg->sample_skip > (uint64_t)INT64_MAX)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "sample_skip over 2^63-1 cannot travel as a JSON integer");
    if (cfg->sampling.seed > (uint64_t)INT64_MAX)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "seed over 2^63-1 cannot travel as a JSON integer");
    return HINGE_OK;
}

hinge_status tx_session_open(tx_client *c, const tx_session_config *cfg, tx_session **out, char *err,
                             size_t errlen)
{
    if (!c || !cfg || !out)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "NULL argument");
    hinge_status st = check_config(cfg, err, errlen);
    if (st != HINGE_OK)
        return st;
    tx_session *s = calloc(1, sizeof *s);
    if (!s)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    s->c = c;
    s->codec = cfg->codec;
    s->private_head = cfg->private_head;
    st = post_open(s, cfg, err, errlen);
    if (st == HINGE_OK) {
        st = session_setup(s, err, errlen);
        if (st != HINGE_OK) { /* the edge holds a session we cannot use: release it */
            char ignored[HINGE_ERRMSG_MAX];
            tx_session_close(s, ignored, sizeof ignored);
            return st;
        }
    }
    if (st != HINGE_OK) {
        session_free(s);
        return st;
    }
    *out = s;
    return HINGE_OK;
}

const tx_session_info *tx_session_get_info(const tx_session *s)
{
    return &s->info;
}

long tx_session_http_status(const tx_session *s)
{
    return s->http_status;
}

const char *tx_session_errmsg(const tx_session *s)
{
    return s->errmsg;
}

/* tokens[0..n) from the "tokens" array of a verify step's reply. */
static hinge_status read_tokens(tx_session *s, json_t *j, uint32_t n, int32_t *tokens)
{
    json_t *a = json_object_get(j, "tokens");
    if (!json_is_array(a) || json_array_size(a) != n)
        return hinge_fail(s->errmsg, sizeof s->errmsg, HINGE_ERR_PROTOCOL, "verify reply lacks %u tokens", n);
    for (uint32_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return hinge_fail(s->errmsg, sizeof s->errmsg, HINGE_ERR_PROTOCOL, "verify reply: token %u is bad", i);
        tokens[i] = (int32_t)json_integer_value(v);
    }
    return HINGE_OK;
}

/* Reads {"token", "pos", "edge_us", "queue_us"} of a 200 step reply, and
 * its "tokens" (n of them) when tokens is not NULL. */
static hinge_status read_step_reply(tx_session *s, uint32_t next_pos, bool sampled, int32_t *token,
                                    uint32_t n, int32_t *tokens, tx_timing *t)
{
    json_t *j = tx_parse_object(&s->resp, s->errmsg, sizeof s->errmsg);
    if (!j)
        return HINGE_ERR_PROTOCOL;
    json_int_t tok = 0, pos = 0, edge_us = 0, queue_us = 0;
    hinge_status st = HINGE_OK;
    if (json_unpack(j, "{s:I, s:I, s:I, s:I}", "token", &tok, "pos", &pos, "edge_us", &edge_us, "queue_us",
                    &queue_us) != 0)
        st = hinge_fail(s->errmsg, sizeof s->errmsg, HINGE_ERR_PROTOCOL, "step reply lacks token/pos/edge_us/queue_us");
    else if (pos != next_pos || tok < (sampled ? 0 : -1) || tok > INT32_MAX || edge_us < 0 || queue_us < 0)
        st = hinge_fail(s->errmsg, sizeof s->errmsg, HINGE_ERR_PROTOCOL,
                        "step reply out of range: token %lld, pos %lld (expected %u)", (long long)tok,
                        (long long)pos, next_pos);
    if (st == HINGE_OK && tokens)
        st = read_tokens(s, j, n, tokens);
    if (st == HINGE_OK) {
        *token = (int32_t)tok;
        t->edge_us += (uint64_t)edge_us;
        t->queue_us += (uint64_t)queue_us;
    }
    json_decref(j);
    return st;
}

/* A private head's reply: a frame of the n rows at pos, in the session's
 * codec, decoded into rows. */
static hinge_status read_rows_reply(tx_session *s, uint32_t pos, uint32_t n, uint16_t flags, float *rows,
                                    tx_timing *t)
{
    tx_frame_limits lim = {.codec = s->codec, .dim = s->info.n_embd, .max_n = s->info.max_step};
    tx_frame_header h;
    hinge_status st = tx_frame_decode(s->resp.data, s->resp.len, &lim, rows, (size_t)n * s->info.n_embd, &h,
                                      s->errmsg, sizeof s->errmsg);
    if (st != HINGE_OK)
        return hinge_fail(s->errmsg, sizeof s->errmsg, HINGE_ERR_PROTOCOL, "step reply: %.200s", s->errmsg);
    if (h.pos != pos || h.n != n || h.flags != flags)
        return hinge_fail(s->errmsg, sizeof s->errmsg, HINGE_ERR_PROTOCOL,
                          "step reply holds rows %u+%u (flags %u), not %u+%u", h.pos, h.n, h.flags, pos, n);
    t->edge_us += s->hdr_edge_us;
    t->queue_us += s->hdr_queue_us;
    return HINGE_OK;
}

/* One request: rows [0, n) of hidden at pos; flags as in the frame. A
 * private head's (rows not NULL): the reply's rows into rows. */
static hinge_status step_once(tx_session *s, uint32_t pos, uint32_t n, const float *hidden, uint16_t flags,
                              int32_t *token, int32_t *tokens, float *rows, tx_timing *t)
{
    size_t len;
    uint64_t t0 = tx_now_us();
    hinge_status st = tx_frame_encode(s->codec, flags, pos, n, s->info.n_embd, hidden, s->frame, s->frame_cap,
                                      &len, s->errmsg, sizeof s->errmsg);
    t->encode_us += tx_now_us() - t0;
    if (st != HINGE_OK)
        return st;
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, (const char *)s->frame);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    s->hdr_edge_us = s->hdr_queue_us = 0;
    uint64_t us = 0;
    st = tx_perform(s->c, s->easy, &s->resp, &s->http_status, &us, s->errmsg, sizeof s->errmsg);
    t->request_us += us;
    t->uplink_bytes += len;
    t->downlink_bytes += s->resp.len;
    t->requests++;
    if (st != HINGE_OK)
        return st;
    if (s->http_status != 200)
        return tx_http_error(s->http_status, &s->resp, s->errmsg, sizeof s->errmsg);
    if (rows)
        return read_rows_reply(s, pos, n, flags, rows, t);
    return read_step_reply(s, pos + n, !(flags & TX_FLAG_NO_SAMPLE), token, n, tokens, t);
}

/* tx_session_step (verify false: *out is the last row's token),
 * tx_session_verify (out[0..n) the samples of every row) and
 * tx_session_step_rows (rows: hidden itself, rewritten; out unused). */
static hinge_status send_rows(tx_session *s, uint32_t pos, uint32_t n, const float *hidden, bool verify, int32_t *out,
                              float *rows, tx_timing *t)
{
    tx_timing local;
    if (!t)
        t = &local;
    memset(t, 0, sizeof *t);
    uint32_t max_verify = s->info.max_step < TX_VERIFY_MAX ? s->info.max_step : TX_VERIFY_MAX;
    if (!hidden || !out || n == 0 || (verify && (n < 2 || n > max_verify)))
        return hinge_fail(s->errmsg, sizeof s->errmsg, HINGE_ERR_INVALID,
                          "a step needs n >= 1 rows and a token; a verify step 2..%u rows", max_verify);
    if (!rows != !s->private_head || (rows && verify))
        return hinge_fail(s->errmsg, sizeof s->errmsg, HINGE_ERR_INVALID, "a private head's session steps with "
                          "tx_session_step_rows only (and no verify step); other sessions never do");
    if ((uint64_t)pos + n > s->info.ctx)
        return hinge_fail(s->errmsg, sizeof s->errmsg, HINGE_ERR_RANGE, "positions %u + %u exceed the session's ctx %u",
                          pos, n, s->info.ctx);
    hinge_status st = HINGE_OK;
    int32_t tok = -1;
    for (uint32_t off = 0; st == HINGE_OK && off < n; off += s->info.max_step) {
        uint32_t m = n - off < s->info.max_step ? n - off : s->info.max_step;
        uint16_t flags = verify ? TX_FLAG_VERIFY : off + m < n ? TX_FLAG_NO_SAMPLE : 0;
        size_t at = (size_t)off * s->info.n_embd;
        st = step_once(s, pos + off, m, hidden + at, flags, &tok, verify ? out : NULL, rows ? rows + at : NULL, t);
    }
    uint64_t edge = t->edge_us + t->queue_us;
    t->network_us = t->request_us > edge ? t->request_us - edge : 0;
    if (st == HINGE_OK && !verify)
        *out = tok;
    return st;
}

void tx_session_rebind(tx_session *s, tx_client *c)
{
    s->c = c;
    tx_easy_setup(c, s->easy, &s->resp); /* the new client's TLS context and counters */
}

void tx_session_set_deadline(tx_session *s, uint32_t ms)
{
    if (s)
        curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, ms ? (long)ms : s->c->timeout_ms);
}

hinge_status tx_session_step(tx_session *s, uint32_t pos, uint32_t n, const float *hidden, int32_t *token,
                             tx_timing *t)
{
    return send_rows(s, pos, n, hidden, false, token, NULL, t);
}

hinge_status tx_session_step_rows(tx_session *s, uint32_t pos, uint32_t n, float *hidden, tx_timing *t)
{
    int32_t ignored;
    return send_rows(s, pos, n, hidden, false, &ignored, hidden, t);
}

hinge_status tx_session_verify(tx_session *s, uint32_t pos, uint32_t n, const float *hidden, int32_t *tokens,
                               tx_timing *t)
{
    return send_rows(s, pos, n, hidden, true, tokens, NULL, t);
}

hinge_status tx_session_close(tx_session *s, char *err, size_t errlen)
{
    if (!s)
        return HINGE_OK;
    tx_client *c = s->c;
    curl_easy_setopt(c->ctl, CURLOPT_URL, s->url);
    curl_easy_setopt(c->ctl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c->ctl, CURLOPT_CUSTOMREQUEST, "DELETE");
    long http = 0;
    uint64_t us;
    hinge_status st = tx_perform(c, c->ctl, &c->ctl_resp, &http, &us, err, errlen);
    curl_easy_setopt(c->ctl, CURLOPT_CUSTOMREQUEST, NULL);
    if (st == HINGE_OK && http != 204)
        st = tx_http_error(http, &c->ctl_resp, err, errlen);
    session_free(s);
    return st;
}
