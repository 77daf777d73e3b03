/* The OpenAI-compatible endpoints, for thin clients (devices that run no
 * layer):
 *
 *   POST /v1/completions        {"model", "prompt", "max_tokens", "temperature", "top_p", "stream", "seed"}
 *   POST /v1/chat/completions   {"model", "messages", ...}: the model's chat template (model/chat.h)
 *   GET  /v1/models             the model this edge serves: id = file name, and its sha256
 *
 * These clients send their text: the edge tokenizes it and runs the whole
 * model (embedding, layers [0, N), head, sampler). Each request is a
 * session at cut 0 in the session table (same limits as split sessions)
 * whose steps the loop feeds itself, embedded here, into the same batches
 * as the split sessions' (worker.c, sched.c). Greedy (temperature 0) gives
 * the tokens `hinge generate` gives locally: the batch is invariant and the
 * prompt is tokenized as libhinge does.
 *
 * The answer is one JSON body, or with "stream": true server-sent events
 * ("data: {chunk}\n\n" per token, then the last chunk with finish_reason
 * and usage, then "data: [DONE]\n\n"). Streamed chunks are formatted when
 * nghttp2 asks for data, from the tokens generated so far: a client slow
 * to read holds at most one frame of text here, never a growing queue.
 *
 * A request's state (edge_oa) belongs to its stream: it is freed when the
 * stream goes (the response sent, a reset, the connection closed), and its
 * session with it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "chat.h"
#include "edge_impl.h"

enum {
    OA_BODY_MAX = 256 * 1024,      /* a request body (a chat with its history) */
    OA_OUT_MAX = 16 * 1024 * 1024, /* a response body (the text of ctx tokens, escaped) */
    OA_PIECE_MAX = 256,            /* bytes of one token's text (tok_piece cuts longer) */
    OA_DEFAULT_MAX_TOKENS = 16,    /* /v1/completions without max_tokens, as OpenAI's */
    OA_CHAT_MAX = 256,             /* messages in a chat request */
};

typedef enum oa_fin { OA_RUNNING = 0, OA_STOP, OA_LENGTH, OA_FAILED } oa_fin;

typedef struct edge_oa {
    hinge_edge *e;
    edge_conn *c;
    edge_stream *st;
    bool chat, stream;
    char *body;              /* the request: OA_BODY_MAX bytes */
    size_t body_len;
    edge_session *s;         /* while generating */
    const model *m;
    int32_t *tok;            /* (tok_cap) the prompt's tokens, then the generated ones */
    uint32_t n_prompt, n_tok, tok_cap, max_tokens;
    uint32_t sent;           /* tokens [n_prompt, sent) are in out (streamed) */
    oa_fin fin;
    char fail[HINGE_ERRMSG_MAX];
    char id[40];
    json_int_t created;
    const char *model_id;    /* the model's file name (models.c) */
    edge_model *em;          /* held (em->sessions) until the job is freed: streamed text is
                                formatted with its tokenizer after the session closed */
    char carry[OA_PIECE_MAX + 8]; /* text bytes not yet sent: an unfinished UTF-8 character */
    size_t carry_len;
    bool role_sent, tail_done, deferred;
    char *out;               /* response bytes [out_off, out_len) wait for nghttp2 */
    size_t out_len, out_off, out_cap;
} edge_oa;

bool edge_oa_route(edge_route r)
{
    return r == EDGE_ROUTE_OA_COMPLETIONS || r == EDGE_ROUTE_OA_CHAT || r == EDGE_ROUTE_OA_MODELS;
}

/* ---- responses ---- */

static void put_nv(nghttp2_nv *nv, const char *name, const char *value)
{
    *nv = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value), NGHTTP2_NV_FLAG_NONE};
}

/* {"error": {"message", "type", "param": null, "code"}}: OpenAI's shape,
 * which its clients turn into their exceptions. */
static void oa_error(edge_conn *c, edge_stream *st, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void oa_error(edge_conn *c, edge_stream *st, int status, const char *code, const char *fmt, ...)
{
    char msg[HINGE_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *type = status >= 500 ? "server_error" : status == 429 ? "rate_limit_error" : "invalid_request_error";
    json_t *j = json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", msg, "type", type, "param", "code", code);
    if (!j)
        j = json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", "(not representable)", "type", type, "param",
                      "code", code);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s)
        edge_respond_typed(c, st, status, "application/json", s, strlen(s));
    else
        edge_respond_error(c, st, 500, "internal", "out of memory");
    free(s);
}

/* Appends n bytes to the job's output; false over OA_OUT_MAX. */
static bool out_put(edge_oa *j, const char *p, size_t n)
{
    if (j->out_off == j->out_len)
        j->out_off = j->out_len = 0;
    if (n > OA_OUT_MAX - j->out_len)
        return false;
    if (j->out_len + n > j->out_cap) {
        size_t cap = j->out_cap ? j->out_cap : 4096;
        while (cap < j->out_len + n)
            cap *= 2;
        char *q = realloc(j->out, cap);
        if (!q)
            return false;
        j->out = q;
        j->out_cap = cap;
    }
    memcpy(j->out + j->out_len, p, n);
    j->out_len += n;
    return true;
}

/* Serializes v (taken) into the output, framed as an SSE event when sse. */
static bool out_json(edge_oa *j, json_t *v, bool sse)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    bool ok = s && (!sse || out_put(j, "data: ", 6)) && out_put(j, s, strlen(s)) && (!sse || out_put(j, "\n\n", 2));
    free(s);
    return ok;
}

static const char *fin_name(oa_fin f)
{
    return f == OA_STOP ? "stop" : f == OA_LENGTH ? "length" : NULL;
}

static json_t *usage(const edge_oa *j)
{
    uint32_t gen = j->n_tok - j->n_prompt;
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)j->n_prompt, "completion_tokens",
                     (json_int_t)gen, "total_tokens", (json_int_t)(j->n_prompt + gen));
}

/* One choice: the text (or delta) and finish_reason (null while running). */
static json_t *choice(const edge_oa *j, const char *text, size_t len, bool role)
{
    json_t *fin = fin_name(j->fin) ? json_string(fin_name(j->fin)) : json_null();
    if (!j->chat)
        return json_pack("{s:s%, s:i, s:n, s:o}", "text", text, len, "index", 0, "logprobs", "finish_reason", fin);
    json_t *msg = json_pack("{s:s%}", "content", text, len);
    if (role || !j->stream)
        json_object_set_new(msg, "role", json_string("assistant"));
    return json_pack("{s:i, s:o, s:n, s:o}", "index", 0, j->stream ? "delta" : "message", msg, "logprobs",
                     "finish_reason", fin);
}

static json_t *envelope(const edge_oa *j, json_t *choice_obj)
{
    const char *object = j->chat ? (j->stream ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    return json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", j->id, "object", object, "created", j->created, "model",
                     j->model_id, "choices", choice_obj);
}

/* The text of generated token i (after tokens[i-1]) into buf. */
static size_t piece(const edge_oa *j, uint32_t i, char *buf)
{
    const tokenizer *t = j->m->tok;
    bool strip = j->tok[i - 1] == tok_bos(t) && tok_adds_space_prefix(t);
    return tok_piece(t, j->tok[i], strip, buf, OA_PIECE_MAX);
}

/* Streams the next thing owed: the chat's role, a token's text, or the end.
 * False when nothing is ready. */
static bool format_more(edge_oa *j)
{
    char clean[3 * sizeof j->carry];
    if (j->chat && !j->role_sent) {
        j->role_sent = true;
        return out_json(j, envelope(j, choice(j, "", 0, true)), true);
    }
    if (j->sent < j->n_tok) {
        j->carry_len += piece(j, j->sent++, j->carry + j->carry_len);
        size_t used, n = edge_utf8_clean(j->carry, j->carry_len, false, clean, &used);
        memmove(j->carry, j->carry + used, j->carry_len - used);
        j->carry_len -= used;
        oa_fin fin = j->fin;
        j->fin = OA_RUNNING; /* a token's chunk carries no finish_reason */
        if (n > 0 && !out_json(j, envelope(j, choice(j, clean, n, false)), true))
            hinge_log(&j->e->log, HINGE_LOG_WARN, "%s: a streamed chunk was lost (out of memory)", j->c->peer);
        j->fin = fin;
        return true;
    }
    if (j->fin == OA_RUNNING || j->tail_done)
        return false;
    j->tail_done = true;
    if (j->fin == OA_FAILED)
        return out_json(j, json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", j->fail, "type", "server_error",
                                     "param", "code", "step_failed"), true);
    size_t used, n = edge_utf8_clean(j->carry, j->carry_len, true, clean, &used);
    json_t *last = envelope(j, choice(j, clean, n, false));
    json_object_set_new(last, "usage", usage(j));
    return out_json(j, last, true) && out_put(j, "data: [DONE]\n\n", 14);
}

static ssize_t read_out(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    (void)h2;
    (void)stream_id;
    (void)user;
    edge_oa *j = src->ptr;
    while (j->stream && j->out_len - j->out_off < length && format_more(j))
        ;
    size_t left = j->out_len - j->out_off, n = left < length ? left : length;
    if (n) /* out may be NULL yet */
        memcpy(buf, j->out + j->out_off, n);
    j->out_off += n;
    if (j->out_off == j->out_len && j->tail_done)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0) {
        j->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* Submits 200 with the job's output as the body (streamed: as it comes). */
static void submit(edge_oa *j)
{
    nghttp2_nv hdrs[3];
    char length[24];
    put_nv(&hdrs[0], ":status", "200");
    put_nv(&hdrs[1], "content-type", j->stream ? "text/event-stream" : "application/json");
    size_t nh = 2;
    if (j->stream) {
        put_nv(&hdrs[nh++], "cache-control", "no-cache");
    } else {
        snprintf(length, sizeof length, "%zu", j->out_len);
        put_nv(&hdrs[nh++], "content-length", length);
    }
    nghttp2_data_provider prd = {.source.ptr = j, .read_callback = read_out};
    j->st->state = ES_RESPONDED;
    j->e->requests++;
    if (nghttp2_submit_response(j->c->h2, j->st->id, hdrs, nh, &prd) != 0)
        nghttp2_submit_rst_stream(j->c->h2, NGHTTP2_FLAG_NONE, j->st->id, NGHTTP2_INTERNAL_ERROR);
}

/* Wakes a streamed response waiting for data. */
static void wake(edge_oa *j)
{
    if (j->deferred) {
        j->deferred = false;
        nghttp2_session_resume_data(j->c->h2, j->st->id);
    }
    edge_conn_flush(j->c);
}

/* The whole answer of a request that is not streamed. */
static bool format_body(edge_oa *j)
{
    uint32_t gen = j->n_tok - j->n_prompt;
    char *raw = malloc((size_t)gen * OA_PIECE_MAX + 1), *clean = malloc((size_t)gen * OA_PIECE_MAX * 3 + 1);
    size_t len = 0, used;
    for (uint32_t i = j->n_prompt; raw && i < j->n_tok; i++)
        len += piece(j, i, raw + len);
    bool ok = raw && clean;
    if (ok) {
        size_t n = edge_utf8_clean(raw, len, true, clean, &used);
        json_t *v = envelope(j, choice(j, clean, n, false));
        json_object_set_new(v, "usage", usage(j));
        ok = out_json(j, v, false);
    }
    free(raw);
    free(clean);
    j->tail_done = true;
    return ok;
}

/* ---- the generation ---- */

static void finish(edge_oa *j, oa_fin fin)
{
    j->fin = fin;
    if (j->s) {
        j->s->oa = NULL;
        edge_session_close(j->e, j->s);
        j->s = NULL;
    }
    if (j->stream) {
        wake(j);
        return;
    }
    if (fin == OA_FAILED)
        oa_error(j->c, j->st, 500, "step_failed", "%s", j->fail);
    else if (!format_body(j))
        oa_error(j->c, j->st, 500, "internal", "out of memory for the response");
    else
        submit(j);
    edge_conn_flush(j->c);
}

/* Hands the session's next step to the worker: the rest of the prompt (at
 * most max_step positions), or the last token sampled. */
static void feed(edge_oa *j)
{
    edge_session *s = j->s;
    hinge_edge *e = j->e;
    uint32_t pos = s->next_pos, n = j->n_tok - pos;
    n = n < s->max_step ? n : s->max_step;
    bool last = pos + n == j->n_tok;
    hinge_status rc = tail_embed(s->t, j->tok + pos, n, s->hidden);
    if (rc != HINGE_OK) {
        snprintf(j->fail, sizeof j->fail, "cannot embed: %s", tail_errmsg(s->t));
        finish(j, OA_FAILED);
        return;
    }
    s->step = (edge_step){.t_queued_us = edge_now_us(), .seq_queued = edge_worker_batches(e->worker),
                          .embedded = true,
                          .hdr = {.pos = pos, .n = n, .flags = last ? 0 : TX_FLAG_NO_SAMPLE,
                                  .dim = j->m->hp.n_embd}};
    s->busy = true;
    s->last_ms = edge_now_ms();
    e->steps_out++;
    e->spin_until_us = s->step.t_queued_us + e->spin_us;
    if (!edge_worker_submit(e->worker, s)) { /* cannot happen: one step per session, cap = max_sessions */
        e->steps_out--;
        s->busy = false;
        snprintf(j->fail, sizeof j->fail, "compute queue full");
        finish(j, OA_FAILED);
    }
}

void edge_oa_step_done(hinge_edge *e, edge_session *s)
{
    (void)e;
    edge_oa *j = s->oa;
    if (s->step.http != 200) {
        memcpy(j->fail, s->step.err, sizeof j->fail);
        finish(j, OA_FAILED);
        return;
    }
    if (s->next_pos < j->n_tok) { /* more of the prompt */
        feed(j);
        return;
    }
    int32_t t = s->step.token;
    if (tok_is_eog(j->m->tok, t)) {
        finish(j, OA_STOP);
        return;
    }
    j->tok[j->n_tok++] = t;
    if (j->n_tok - j->n_prompt >= j->max_tokens || s->next_pos >= s->ctx) {
        finish(j, OA_LENGTH);
        return;
    }
    feed(j);
    if (j->stream)
        wake(j);
}

/* ---- the request ---- */

typedef struct oa_req {
    const char *model;
    const char *prompt; /* completions */
    size_t prompt_len;
    chat_msg msgs[OA_CHAT_MAX];
    size_t n_msgs;
    json_int_t max_tokens; /* -1: not given */
    sampler_params sp;
    bool has_seed, stream;
} oa_req;

static bool get_real(json_t *v, double lo, double hi, float *out)
{
    if (!v || json_is_null(v))
        return true;
    double x = json_number_value(v);
    if (!json_is_number(v) || !(x >= lo && x <= hi))
        return false;
    *out = (float)x;
    return true;
}

static hinge_status parse_messages(json_t *v, oa_req *r, char *err, size_t errlen)
{
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > OA_CHAT_MAX)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "messages must be an array of 1 to %d messages",
                          OA_CHAT_MAX);
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *content = json_string_value(json_object_get(m, "content"));
        if (!role || !content)
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT,
                              "messages[%zu] needs a string role and a string content", i);
        r->msgs[i] = (chat_msg){role, content};
    }
    r->n_msgs = json_array_size(v);
    return HINGE_OK;
}

static hinge_status parse_prompt(json_t *v, oa_req *r, char *err, size_t errlen)
{
    if (json_is_array(v) && json_array_size(v) == 1)
        v = json_array_get(v, 0);
    if (!json_is_string(v))
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "prompt must be a string (or an array of one)");
    r->prompt = json_string_value(v);
    r->prompt_len = json_string_length(v);
    return HINGE_OK;
}

/* Fields that would change the answer and are not served are refused, not
 * ignored; the others (user, stream_options, ...) are ignored. */
static hinge_status parse_unsupported(json_t *j, char *err, size_t errlen)
{
    json_t *n = json_object_get(j, "n");
    if (n && !json_is_null(n) && !(json_is_integer(n) && json_integer_value(n) == 1))
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "n must be 1");
    static const char *const refused[] = {"stop", "logprobs", "echo", "best_of", "suffix", "tools", "logit_bias"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        json_t *v = json_object_get(j, refused[i]);
        if (v && !json_is_null(v) && !json_is_false(v) && !(json_is_integer(v) && json_integer_value(v) <= 1))
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s is not supported by this server", refused[i]);
    }
    return HINGE_OK;
}

static hinge_status parse_req(json_t *j, bool chat, oa_req *r, char *err, size_t errlen)
{
    *r = (oa_req){.max_tokens = -1, .sp = {.temp = 1.0f, .top_p = 1.0f}};
    if (!json_is_object(j))
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "the body must be a JSON object");
    if (!(r->model = json_string_value(json_object_get(j, "model"))))
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "model (a string) is required");
    json_t *prompt = json_object_get(j, "prompt");
    hinge_status s = HINGE_OK;
    if (chat)
        s = parse_messages(json_object_get(j, "messages"), r, err, errlen);
    else if (prompt)
        s = parse_prompt(prompt, r, err, errlen);
    else
        r->prompt = ""; /* OpenAI's default is its end-of-text token: here, BOS alone */
    if (s != HINGE_OK || (s = parse_unsupported(j, err, errlen)) != HINGE_OK)
        return s;
    json_t *mt = json_object_get(j, "max_tokens");
    if (chat && (!mt || json_is_null(mt)))
        mt = json_object_get(j, "max_completion_tokens");
    if (mt && !json_is_null(mt)) {
        if (!json_is_integer(mt) || json_integer_value(mt) < 0)
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "max_tokens must be an integer >= 0");
        r->max_tokens = json_integer_value(mt);
    }
    if (!get_real(json_object_get(j, "temperature"), 0, 2, &r->sp.temp) ||
        !get_real(json_object_get(j, "top_p"), 0, 1, &r->sp.top_p))
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "temperature must be in [0, 2] and top_p in [0, 1]");
    json_t *seed = json_object_get(j, "seed"), *stream = json_object_get(j, "stream");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed))
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "seed must be an integer");
        r->sp.seed = (uint64_t)json_integer_value(seed);
        r->has_seed = true;
    }
    if (stream && !json_is_null(stream) && !json_is_boolean(stream))
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "stream must be a boolean");
    r->stream = json_is_true(stream);
    return HINGE_OK;
}

/* The text to tokenize: the prompt, or the messages in the chat template.
 * *owned is what to free. */
static hinge_status prompt_text(const edge_oa *j, const oa_req *r, const char **text, size_t *len, char **owned,
                                char *err, size_t errlen)
{
    *owned = NULL;
    if (!j->chat) {
        *text = r->prompt;
        *len = r->prompt_len;
        return HINGE_OK;
    }
    chat_kind k;
    hinge_status s = chat_for_model(j->m->file, NULL, &k, err, errlen);
    if (s == HINGE_ERR_NOT_FOUND)
        return hinge_fail(err, errlen, s, "%s has no chat template: use /v1/completions", j->model_id);
    if (s != HINGE_OK)
        return s;
    size_t need = 0;
    chat_format(k, r->msgs, r->n_msgs, true, NULL, 0, &need);
    if (need > OA_BODY_MAX * 2 || !(*owned = malloc(need + 1)))
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "the conversation is too long");
    if ((s = chat_format(k, r->msgs, r->n_msgs, true, *owned, need + 1, len)) != HINGE_OK)
        return hinge_fail(err, errlen, s, "cannot format the conversation");
    *text = *owned;
    return HINGE_OK;
}

/* Tokenizes as libhinge does for a fresh session (BOS when the model asks
 * for it, or for empty text; special tokens parsed), then sizes the job. */
static int tokenize(edge_oa *j, const oa_req *r, char *err, size_t errlen)
{
    const tokenizer *t = j->m->tok;
    const char *text = "";
    size_t len = 0, n = 0;
    char *owned;
    hinge_status s = prompt_text(j, r, &text, &len, &owned, err, errlen);
    if (s != HINGE_OK)
        return 400;
    uint32_t ctx = j->e->max_ctx;
    j->tok = malloc(((size_t)ctx + 1) * sizeof *j->tok);
    if (j->tok)
        s = tok_encode(t, text, len, tok_add_bos(t) || len == 0, true, j->tok, ctx, &n);
    free(owned);
    if (!j->tok)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory"), 503;
    if (s == HINGE_ERR_RANGE || n >= ctx)
        return hinge_fail(err, errlen, HINGE_ERR_RANGE, "the prompt is over this edge's context of %u tokens", ctx),
               400;
    if (s != HINGE_OK || n == 0)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "cannot tokenize the prompt"), 400;
    json_int_t want = r->max_tokens >= 0 ? r->max_tokens : j->chat ? (json_int_t)(ctx - n) : OA_DEFAULT_MAX_TOKENS;
    if (want > (json_int_t)(ctx - n))
        return hinge_fail(err, errlen, HINGE_ERR_RANGE,
                          "%zu prompt tokens and max_tokens %lld are over this edge's context of %u", n,
                          (long long)want, ctx), 400;
    j->n_prompt = j->n_tok = j->sent = (uint32_t)n;
    j->max_tokens = (uint32_t)want;
    j->tok_cap = j->n_prompt + j->max_tokens;
    return 0;
}

static void start(edge_conn *c, edge_stream *st, edge_oa *j, json_t *body)
{
    char err[HINGE_ERRMSG_MAX];
    oa_req r;
    if (parse_req(body, j->chat, &r, err, sizeof err) != HINGE_OK) {
        oa_error(c, st, 400, "invalid_request", "%s", err);
        return;
    }
    if (c->e->draining) { /* before any model is loaded for it */
        oa_error(c, st, 503, "draining", "the edge is shutting down");
        return;
    }
    edge_model *em = edge_model_by_name(c->e, r.model);
    if (!em) {
        oa_error(c, st, 404, "model_not_found", "this edge does not serve %.80s (GET /v1/models)", r.model);
        return;
    }
    const char *code = "internal";
    int http = edge_model_ensure(c->e, em, &code, err, sizeof err); /* its tokenizer */
    if (http) {
        oa_error(c, st, http, code, "%s", err);
        return;
    }
    j->m = em->m;
    j->model_id = em->file;
    j->em = em;
    em->sessions++;
    http = tokenize(j, &r, err, sizeof err);
    if (http) {
        oa_error(c, st, http, http == 503 ? "unavailable" : "invalid_request", "%s", err);
        return;
    }
    if (!r.has_seed && RAND_bytes((unsigned char *)&r.sp.seed, sizeof r.sp.seed) != 1)
        r.sp.seed = (uint64_t)edge_now_us();
    edge_session_req rq = {.cut = 0, .codec = TX_CODEC_F32, .ctx = j->tok_cap, .sampling = r.sp};
    memcpy(rq.model_sha256, em->sha256, 32);
    http = edge_session_open(c->e, &rq, st->client, &j->s, &code, err, sizeof err); /* quotas, owner */
    if (http != 201) {
        oa_error(c, st, http, code, "%s", err);
        return;
    }
    j->s->oa = j;
    j->stream = r.stream;
    st->state = ES_COMPUTE;
    hinge_log(&c->e->log, HINGE_LOG_INFO, "session %.8s opened by %s for %s: %u prompt tokens, max_tokens %u%s",
              j->s->id, c->peer, j->chat ? "/v1/chat/completions" : "/v1/completions", j->n_prompt, j->max_tokens,
              j->stream ? ", streamed" : "");
    if (j->stream)
        submit(j);
    if (j->max_tokens == 0)
        finish(j, OA_LENGTH);
    else
        feed(j);
}

/* ---- the stream's stages ---- */

void edge_oa_headers(edge_conn *c, edge_stream *st)
{
    if (st->route == EDGE_ROUTE_OA_MODELS)
        return;
    if (st->has_length && st->content_length > OA_BODY_MAX) {
        oa_error(c, st, 413, "payload_too_large", "body over %d bytes", OA_BODY_MAX);
        return;
    }
    edge_oa *j = malloc(sizeof *j);
    char *body = malloc(OA_BODY_MAX);
    if (!j || !body) {
        free(j);
        free(body);
        oa_error(c, st, 503, "unavailable", "out of memory");
        return;
    }
    *j = (edge_oa){.e = c->e, .c = c, .st = st, .chat = st->route == EDGE_ROUTE_OA_CHAT, .body = body,
                   .created = (json_int_t)time(NULL)};
    unsigned char raw[12];
    if (RAND_bytes(raw, sizeof raw) != 1)
        memset(raw, 0, sizeof raw);
    memcpy(j->id, j->chat ? "chatcmpl-" : "cmpl-", j->chat ? 9 : 6);
    edge_hex(raw, sizeof raw, j->id + (j->chat ? 9 : 5));
    st->oa = j;
}

void edge_oa_data(edge_conn *c, edge_stream *st, const uint8_t *data, size_t len)
{
    edge_oa *j = st->oa;
    if (!j)
        return; /* /v1/models: a body is ignored */
    if (len > OA_BODY_MAX - j->body_len) {
        oa_error(c, st, 413, "payload_too_large", "body over %d bytes", OA_BODY_MAX);
        return;
    }
    memcpy(j->body + j->body_len, data, len);
    j->body_len += len;
}

void edge_oa_end(edge_conn *c, edge_stream *st)
{
    if (st->route == EDGE_ROUTE_OA_MODELS) {
        edge_respond_json(c, st, 200, edge_models_json(c->e));
        return;
    }
    edge_oa *j = st->oa;
    json_error_t je;
    json_t *body = json_loadb(j->body, j->body_len, 0, &je);
    if (!body)
        oa_error(c, st, 400, "invalid_json", "not JSON: %s at byte %d", je.text, je.position);
    else
        start(c, st, j, body);
    json_decref(body);
    free(j->body); /* the messages were copied into the prompt's tokens */
    j->body = NULL;
}

void edge_oa_stream_gone(edge_stream *st)
{
    edge_oa *j = st->oa;
    if (!j)
        return;
    st->oa = NULL;
    if (j->s) { /* the client left mid-generation: a step out frees the session when it comes back */
        hinge_log(&j->e->log, HINGE_LOG_INFO, "session %.8s: the client left mid-generation after %u tokens",
                  j->s->id, j->n_tok - j->n_prompt);
        j->s->oa = NULL;
        edge_session_close(j->e, j->s);
    }
    if (j->em)
        j->em->sessions--;
    free(j->body);
    free(j->tok);
    free(j->out);
    free(j);
}
