/* hinge_generate: a prompt, its prefill, and the decode loop, with the
 * conversation carried from call to call. */
#include <stdlib.h>
#include <string.h>

#include "session_impl.h"

enum { PIECE_MAX = 256 };

static void add_step(hinge_stats *st, const hinge_step_info *t)
{
    st->steps++;
    st->device_ms += t->device_ms;
    st->network_ms += t->network_ms;
    st->edge_ms += t->edge_ms;
    st->queue_ms += t->queue_ms;
    st->uplink_bytes += t->uplink_bytes;
    st->downlink_bytes += t->downlink_bytes;
}

/* A step that ran: into the stats and to the step callback. */
static void record(hinge_session *s, const hinge_step_info *t)
{
    add_step(&s->stats, t);
    if (s->step_cb)
        s->step_cb(t, s->step_user);
}

static hinge_status step(hinge_session *s, const int32_t *tokens, size_t n, int32_t *next)
{
    hinge_step_info t;
    hinge_status st = sess_step(s, tokens, n, next, &t);
    if (st == HINGE_OK)
        record(s, &t);
    return st;
}

/* s->tokens[0..*n) = the pending token, then the prompt's tokens (BOS first
 * on a fresh session when the model asks for it, or for an empty prompt). */
static hinge_status prompt_tokens(hinge_session *s, const char *prompt, size_t *n)
{
    const tokenizer *tok = s->m->tok;
    size_t len = strlen(prompt), have = 0, got = 0;
    bool fresh = s->pos == 0 && s->pending < 0;
    if (s->pending >= 0)
        s->tokens[have++] = s->pending;
    size_t room = (size_t)(s->ctx - s->pos) + 1 - have; /* s->tokens holds ctx + 1 */
    if (len || fresh) {
        bool bos = fresh && (tok_add_bos(tok) || len == 0);
        hinge_status st = tok_encode(tok, prompt, len, bos, true, s->tokens + have, room, &got);
        if (st == HINGE_ERR_RANGE)
            return hinge_fail(s->err, sizeof s->err, HINGE_ERR_RANGE,
                              "the prompt does not fit in the %u positions left of the context", s->ctx - s->pos);
        if (st != HINGE_OK)
            return hinge_fail(s->err, sizeof s->err, st, "cannot tokenize the prompt: %s", hinge_strerror(st));
    }
    *n = have + got;
    if (*n == 0)
        return hinge_fail(s->err, sizeof s->err, HINGE_ERR_INVALID, "nothing to generate from: the prompt is empty "
                                                                    "and the conversation has no last token");
    if (*n > s->ctx - s->pos)
        return hinge_fail(s->err, sizeof s->err, HINGE_ERR_RANGE,
                          "the prompt's %zu tokens do not fit in the %u positions left of the context", *n,
                          s->ctx - s->pos);
    return HINGE_OK;
}

/* Shows next to the callback; 1 when the callback asks to stop. */
static int emit(hinge_session *s, int32_t prev, int32_t next, hinge_token_cb cb, void *user)
{
    char piece[PIECE_MAX];
    bool strip = prev == tok_bos(s->m->tok) && tok_adds_space_prefix(s->m->tok);
    size_t len = tok_piece(s->m->tok, next, strip, piece, sizeof piece);
    s->stats.generated_tokens++;
    return cb && cb(piece, len, user) != 0;
}

/* The tokens of one decode step: with speculative lookahead several, all
 * but the last fed already (tok[j] at position pos0 + j). */
typedef struct step_tokens {
    int32_t tok[TX_VERIFY_MAX];
    size_t n, i; /* tok[i] is the token being shown */
    uint32_t pos0;
} step_tokens;

/* One decode step after prev at s->pos: into q, its first token in *next. */
static hinge_status decode_step(hinge_session *s, int32_t prev, size_t max_drafts, step_tokens *q, int32_t *next)
{
    *q = (step_tokens){.n = 1, .pos0 = s->pos + 1};
    hinge_status st;
    if (s->spec_max && s->sess) {
        hinge_step_info t;
        if ((st = spec_step(s, prev, max_drafts, q->tok, &q->n, &t)) != HINGE_OK)
            return st;
        record(s, &t);
    } else if ((st = step(s, &prev, 1, q->tok)) != HINGE_OK) {
        return st;
    }
    *next = q->tok[0];
    return HINGE_OK;
}

/* The decode loop after the prefill sampled next. */
static hinge_status decode(hinge_session *s, int32_t prev, int32_t next, int max_tokens, hinge_token_cb cb,
                           void *user)
{
    hinge_stop stop = HINGE_STOP_LENGTH;
    hinge_status st = HINGE_OK;
    step_tokens q = {.tok = {next}, .n = 1};
    for (int i = 0; i < max_tokens; i++) {
        s->pending = next;
        if (tok_is_eog(s->m->tok, next) && !s->cfg.ignore_eos) {
            stop = HINGE_STOP_EOG;
            break;
        }
        if (emit(s, prev, next, cb, user)) {
            stop = HINGE_STOP_CALLBACK;
            break;
        }
        if (i + 1 == max_tokens)
            break;
        prev = next;
        if (q.i + 1 < q.n) { /* a verified draft: fed already, no step */
            next = q.tok[++q.i];
            continue;
        }
        if (s->pos >= s->ctx) {
            stop = HINGE_STOP_CONTEXT;
            break;
        }
        if (atomic_exchange(&s->cancel, false)) {
            stop = HINGE_STOP_CANCELLED;
            st = HINGE_CANCELLED;
            break;
        }
        s->left = (uint32_t)(max_tokens - i - 1); /* what a re-cut weighs */
        /* a step yields at most drafts + 1 tokens: never more than are still wanted */
        if ((st = decode_step(s, prev, (size_t)(max_tokens - i - 2), &q, &next)) != HINGE_OK) {
            stop = HINGE_STOP_NONE;
            break;
        }
    }
    if (q.i + 1 < q.n) /* stopped at a draft fed already: it is pending again, and what followed it unfed */
        s->pos = q.pos0 + (uint32_t)q.i;
    s->stats.stop = stop;
    s->left = 0;
    return st;
}

/* Feeds all but the last token; the last stays pending (max_tokens 0). */
static hinge_status prefill_only(hinge_session *s, size_t n)
{
    int32_t ignored;
    hinge_status st = n > 1 ? step(s, s->tokens, n - 1, &ignored) : HINGE_OK;
    if (st == HINGE_OK) {
        s->pending = s->tokens[n - 1];
        s->stats.stop = HINGE_STOP_LENGTH;
    }
    return st;
}

static hinge_status run(hinge_session *s, const char *prompt, int max_tokens, hinge_token_cb cb, void *user)
{
    double t0 = clk_now_s();
    size_t n = 0;
    hinge_status st = prompt_tokens(s, prompt, &n);
    if (st != HINGE_OK)
        return st;
    s->stats.prompt_tokens = (uint32_t)n;
    if (atomic_exchange(&s->cancel, false)) {
        s->stats.stop = HINGE_STOP_CANCELLED;
        return hinge_fail(s->err, sizeof s->err, HINGE_CANCELLED, "cancelled before the prefill");
    }
    if (max_tokens == 0)
        return prefill_only(s, n);
    int32_t next;
    if ((st = step(s, s->tokens, n, &next)) != HINGE_OK)
        return st;
    s->stats.prefill_uplink_bytes = s->stats.uplink_bytes;
    double t1 = clk_now_s();
    s->stats.ttft_ms = (t1 - t0) * 1e3;
    s->pending = next;
    st = decode(s, s->tokens[n - 1], next, max_tokens, cb, user);
    s->stats.decode_ms = (clk_now_s() - t1) * 1e3;
    if (st == HINGE_CANCELLED)
        hinge_fail(s->err, sizeof s->err, st, "cancelled after %u tokens", s->stats.generated_tokens);
    return st;
}

hinge_status gen_text(hinge_session *s, const char *prompt, int max_tokens, hinge_token_cb cb, void *user)
{
    hinge_stats *st = &s->stats; /* the session's life figures stay; the call's start at 0 */
    *st = (hinge_stats){.requests = st->requests, .recoveries = st->recoveries, .local_fallbacks = st->local_fallbacks,
                        .replayed_positions = st->replayed_positions, .recovery_ms = st->recovery_ms};
    hinge_status rc = run(s, prompt, max_tokens, cb, user);
    if (rc != HINGE_OK)
        return api_fail(rc, "%s", s->err);
    return HINGE_OK;
}

hinge_status hinge_generate(hinge_session *s, const char *prompt, int max_tokens, hinge_token_cb cb, void *user)
{
    if (!s || !prompt || max_tokens < 0)
        return api_fail(HINGE_ERR_INVALID, "hinge_generate: session and prompt must not be NULL, max_tokens >= 0");
    s->chat_open = false; /* the caller writes the conversation's text from here on */
    return gen_text(s, prompt, max_tokens, cb, user);
}
