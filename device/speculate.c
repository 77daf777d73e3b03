/* Speculative lookahead across the split (docs/protocol.md, TX_FLAG_VERIFY).
 *
 * The device drafts tokens from the context itself (prompt lookup: what
 * followed the latest earlier occurrence of the last few tokens; no draft
 * model), runs its layers on the last accepted token plus the drafts as one
 * small batch and sends them in one request. The edge samples a token from
 * every row; the device keeps the drafts up to the first that differs from
 * the edge's sample at its row, then that sample: the accepted tokens plus
 * one more, for one round trip.
 *
 * Why the output distribution is unchanged: a draft x is a point mass, for
 * which the standard speculative rule (accept with min(1, p(x)/q(x)) = p(x),
 * on rejection sample from norm(max(p - q, 0)) = p without x) is exactly
 * "draw t ~ p; accept iff t == x, else emit t". The edge draws t ~ p at each
 * row with its own sampler, so it never needs the drafts (no token ids go to
 * the edge), and greedy output is the same token for token.
 *
 * Both sides roll back past rejected drafts by position: the next step
 * starts right after the last accepted one and overwrites their KV rows.
 *
 * When it pays: a decode step of m rows costs about net + c1 + (m - 1) * row
 * (the round trip, the compute of one row, then what each further row adds:
 * much less than c1 where decoding is bound by reading the weights). The
 * session keeps moving averages of the three and of the drafts' acceptance,
 * and part_spec_choose picks the draft length with the least expected time
 * per token, 0 (a plain step) when speculation does not pay. A draft not sent is still checked against the
 * token that comes, so the acceptance estimate keeps up. */
#include <string.h>

#include "session_impl.h"

enum { NGRAM_MAX = 3, PROBE_DRAFTS = 2 /* drafts of the steps that measure, before the costs are known */ };
static const double EWMA_W = 0.1;

size_t spec_draft(const int32_t *ctx, size_t n, int32_t *out, size_t max)
{
    for (size_t g = NGRAM_MAX; g >= 1; g--) {
        if (n < g + 1 || max == 0)
            continue;
        const int32_t *pat = ctx + n - g;
        for (size_t i = n - g; i-- > 0;) { /* latest earlier occurrence first */
            if (memcmp(ctx + i, pat, g * sizeof *ctx) != 0)
                continue;
            size_t d = n - (i + g) < max ? n - (i + g) : max;
            memcpy(out, ctx + i + g, d * sizeof *out);
            return d;
        }
    }
    return 0;
}

static void ewma(double *v, double x) { *v += EWMA_W * (x - *v); }

/* A decode step's cost and its drafts' fate into the moving averages:
 * accepted of drafted were accepted; the drafts after the first rejected
 * one say nothing. */
static void observe(hinge_session *s, const hinge_step_info *t, size_t accepted, size_t drafted)
{
    for (size_t i = 0; i < drafted && i <= accepted; i++)
        ewma(&s->spec_alpha, i < accepted ? 1.0 : 0.0);
    double net = t->network_ms + t->queue_ms, compute = t->device_ms + t->edge_ms;
    s->spec_steps++;
    if (s->spec_net_ms < 0)
        s->spec_net_ms = net;
    ewma(&s->spec_net_ms, net);
    if (t->n == 1) {
        if (s->spec_c1_ms < 0)
            s->spec_c1_ms = compute;
        ewma(&s->spec_c1_ms, compute);
    } else if (s->spec_c1_ms >= 0) {
        double row = compute > s->spec_c1_ms ? (compute - s->spec_c1_ms) / (t->n - 1) : 0.0;
        if (s->spec_row_ms < 0)
            s->spec_row_ms = row;
        ewma(&s->spec_row_ms, row);
    }
}

/* Drafts to send now: up to max, as many as pay. */
static size_t choose(const hinge_session *s, size_t max)
{
    size_t probe = max < PROBE_DRAFTS ? max : PROBE_DRAFTS;
    if (s->spec_c1_ms < 0)
        return s->spec_steps ? 0 : probe; /* the first step tries; a plain one then measures c1 */
    if (s->spec_row_ms < 0)
        return probe; /* a verify step measures row */
    double fixed = s->spec_net_ms + s->spec_c1_ms - s->spec_row_ms; /* a step of m rows: fixed + m * row */
    return part_spec_choose(s->spec_alpha, fixed * 1e-3, s->spec_row_ms * 1e-3, (uint32_t)max);
}

/* The edge's step with the verify flag; timing into t. */
static hinge_status verify(hinge_session *s, size_t n, hinge_step_info *t)
{
    double t0 = clk_now_s();
    hinge_status st = sess_run_front(s, s->spec_rows, n, s->pos);
    double t1 = clk_now_s();
    t->device_ms = (t1 - t0) * 1e3;
    if (st != HINGE_OK)
        return st;
    tx_timing tt = {0};
    st = tx_session_verify(s->sess, s->pos, (uint32_t)n, s->hidden, s->spec_out, &tt);
    sess_timing(t, &tt);
    t->tail_ms = (clk_now_s() - t1) * 1e3;
    if (st != HINGE_OK)
        return hinge_fail(s->err, sizeof s->err, st, "edge: %s", tx_session_errmsg(s->sess));
    return HINGE_OK;
}

hinge_status spec_step(hinge_session *s, int32_t last, size_t max, int32_t *out, size_t *n_out, hinge_step_info *t)
{
    uint32_t max_step = tx_session_get_info(s->sess)->max_step;
    size_t room = s->ctx - s->pos - 1; /* positions after last's */
    max = max < s->spec_max ? max : s->spec_max;
    max = max < room ? max : room;
    max = max < max_step - 1 ? max : max_step - 1;
    s->hist[s->pos] = last; /* the context the drafts come from ends with last */
    s->spec_rows[0] = last;
    size_t drafted = max ? spec_draft(s->hist, s->pos + 1, s->spec_rows + 1, max) : 0;
    size_t d = drafted ? choose(s, drafted) : 0;
    *n_out = 1;
    if (d == 0) {
        hinge_status st = sess_step(s, &last, 1, out, t);
        if (st == HINGE_OK && s->sess)
            observe(s, t, out[0] == s->spec_rows[1], drafted ? 1 : 0); /* the draft not sent, checked */
        return st;
    }
    size_t n = d + 1;
    *t = (hinge_step_info){.pos = s->pos, .n = (uint32_t)n, .token = -1};
    hinge_status st = verify(s, n, t);
    if (st != HINGE_OK) {
        /* failover replays [0, pos): nothing of this step was kept; then a plain step */
        if (!recover_can(st) || (st = recover(s, st)) != HINGE_OK)
            return st;
        return sess_step(s, &last, 1, out, t);
    }
    size_t a = 0;
    while (a < d && s->spec_out[a] == s->spec_rows[a + 1])
        a++;
    memcpy(out, s->spec_rows + 1, a * sizeof *out);
    out[a] = s->spec_out[a];
    *n_out = a + 1;
    t->token = out[a];
    s->samples += n; /* the edge's sampler drew once per row */
    memcpy(s->hist + s->pos, s->spec_rows, (a + 1) * sizeof *s->hist); /* what a failover replays */
    s->pos += (uint32_t)(a + 1);
    s->last_n = 0;
    s->stats.requests += t->requests;
    auto_observe(s, t);
    observe(s, t, a, d);
    return HINGE_OK;
}
