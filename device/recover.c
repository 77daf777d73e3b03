/* Failover: a step's edge failed; rebuild the state of positions [0, pos)
 * elsewhere so that the step can run again.
 *
 * In order of cost: a new session on the same edge (it came back, or only
 * the session was lost), then each fallback edge, then this device (the
 * layers after the cut in-process). The device keeps the tokens it fed
 * (s->hist); its own layers recompute the boundary rows from them (the
 * device's KV cache rows are rewritten with the same values), and the rows
 * go to the new edge as one prefill, or through the new local tail. A
 * private head (layers [N - J, N), head, sampler) is on this device with
 * its KV cache: it stays valid, and only the edge's part is rebuilt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_impl.h"

bool recover_can(hinge_status st)
{
    /* the edge or the path to it failed: connection, TLS, timeout, 5xx,
     * 503 draining or full (RANGE), 404 session gone after a restart */
    return st == HINGE_ERR_NETWORK || st == HINGE_ERR_PROTOCOL || st == HINGE_ERR_RANGE || st == HINGE_ERR_NOT_FOUND;
}

/* The boundary rows of [0, pos) into s->hidden. */
static hinge_status recompute_prefix(hinge_session *s)
{
    return s->pos ? sess_run_front(s, s->hist, s->pos, 0) : HINGE_OK;
}

/* A new session on edge i (its client made anew unless it is the current
 * one) with the prefix replayed. */
static hinge_status try_edge(hinge_session *s, int i)
{
    if (i != s->edge_i) {
        tx_client_destroy(s->client);
        s->client = NULL;
        s->edge_i = i;
        s->edge_url = s->edges[i];
    }
    hinge_status st = sess_open_client(s);
    if (st == HINGE_OK)
        st = sess_open_edge_session(s, s->samples ? s->samples - 1 : 0); /* the replay samples its last row */
    if (st == HINGE_OK)
        st = recompute_prefix(s);
    if (st == HINGE_OK && s->pos) {
        int32_t ignored;
        tx_timing tt;
        /* a private head keeps its own layers' KV cache: only the edge's part is rebuilt */
        st = s->pj ? sess_replay_rows(s, s->pos) : tx_session_step(s->sess, 0, s->pos, s->hidden, &ignored, &tt);
        if (st != HINGE_OK)
            hinge_fail(s->err, sizeof s->err, st, "replay: %s", tx_session_errmsg(s->sess));
    }
    if (st != HINGE_OK) {
        tx_session_close(s->sess, NULL, 0);
        s->sess = NULL;
        return st;
    }
    return HINGE_OK;
}

/* The cheapest path: the same edge session over a new connection to the
 * same edge, which keeps a session whose connection was lost for a grace
 * period and answers a repeated step from its last reply (the reply may be
 * what was lost). Nothing is replayed. Tried once per position, and only
 * when the connection was lost: a stalled edge (a timeout) or an answer
 * (5xx, 404, draining) says the session is not to be had there. */
static bool can_resume(const hinge_session *s, hinge_status st)
{
    return st == HINGE_ERR_NETWORK && s->sess && s->client && !tx_client_timed_out(s->client) &&
           s->resumed_pos != s->pos + 1;
}

static hinge_status resume(hinge_session *s)
{
    tx_client *old = s->client;
    s->client = NULL;
    hinge_status st = sess_open_client(s); /* a new connection on its first request */
    if (st != HINGE_OK) {
        s->client = old;
        return st;
    }
    tx_session_rebind(s->sess, s->client);
    tx_client_destroy(old);
    s->resumed_pos = s->pos + 1;
    return HINGE_OK;
}

/* The layers after the cut on this device, their KV cache rebuilt. */
static hinge_status go_local(hinge_session *s)
{
    hinge_status st = sess_open_local_tail(s, true); /* the rows the edge saw went through the wire */
    if (st == HINGE_OK)
        st = recompute_prefix(s);
    if (st == HINGE_OK && s->pos && s->frame)
        st = sess_through_codec(s, s->pos, 0);
    if (st == HINGE_OK && s->pos && (st = tail_step(s->tail, 0, s->pos, s->hidden, NULL)) != HINGE_OK)
        hinge_fail(s->err, sizeof s->err, st, "rebuilding the layers after the cut: %s", tail_errmsg(s->tail));
    if (st != HINGE_OK)
        return st;
    tail_skip_samples(s->tail, s->samples);
    s->remote = false;
    s->edge_i = -1;
    s->edge_url = NULL;
    s->stats.local_fallbacks++;
    return HINGE_OK;
}

hinge_status recover(hinge_session *s, hinge_status st)
{
    double t0 = clk_now_s();
    char cause[HINGE_ERRMSG_MAX];
    memcpy(cause, s->err, sizeof cause);
    hinge_log(&s->lg, HINGE_LOG_WARN, "edge %s failed at position %u (%s: %s): recovering", s->edge_url, s->pos,
              hinge_strerror(st), cause);
    snprintf(s->stats.recovery_cause, sizeof s->stats.recovery_cause, "%s", cause);
    if (can_resume(s, st) && resume(s) == HINGE_OK) {
        hinge_log(&s->lg, HINGE_LOG_WARN, "resuming the session on %s over a new connection", s->edge_url);
        s->stats.resumes++; /* if the edge is gone, the step fails again and the next path counts */
        s->stats.recovery_ms += (clk_now_s() - t0) * 1e3;
        return HINGE_OK;
    }
    tx_session_close(s->sess, NULL, 0); /* its DELETE may well fail: the edge is gone */
    s->sess = NULL;
    int from = s->edge_i;
    for (uint32_t k = 0; k < s->n_edges; k++) {
        int i = (from + (int)k) % (int)s->n_edges;
        if ((st = try_edge(s, i)) == HINGE_OK) {
            hinge_log(&s->lg, HINGE_LOG_WARN, "resumed on %s: %u positions replayed in %.1f ms", s->edge_url, s->pos,
                      (clk_now_s() - t0) * 1e3);
            break;
        }
        hinge_log(&s->lg, HINGE_LOG_WARN, "edge %s: %s", s->edges[i], s->err);
    }
    if (st != HINGE_OK && !s->cfg.no_local_fallback) {
        if ((st = go_local(s)) == HINGE_OK)
            hinge_log(&s->lg, HINGE_LOG_WARN, "no edge answers: finishing on this device (%u positions rebuilt in "
                      "%.1f ms)", s->pos, (clk_now_s() - t0) * 1e3);
    }
    s->stats.recoveries++;
    s->stats.replayed_positions += s->pos;
    s->stats.recovery_ms += (clk_now_s() - t0) * 1e3;
    if (st != HINGE_OK) {
        char last[HINGE_ERRMSG_MAX];
        memcpy(last, s->err, sizeof last);
        hinge_fail(s->err, sizeof s->err, st, "the edge failed (%.100s) and no recovery worked: %.100s", cause, last);
    }
    return st;
}

hinge_status recut(hinge_session *s, uint32_t k, tx_codec c)
{
    double t0 = clk_now_s();
    uint32_t from = s->cut;
    /* the device's layers anew; their KV cache is recomputed from the
     * tokens kept (try_edge's or this replay) */
    sess_close_front(s);
    s->cut = k;
    s->codec = c;
    hinge_status st = sess_open_front(s);
    tx_session_close(s->sess, NULL, 0); /* the old cut's edge session is done */
    s->sess = NULL;
    if (st == HINGE_OK && k < s->m->hp.n_layer)
        st = try_edge(s, s->edge_i);
    else if (st == HINGE_OK) { /* all layers here: only the head and the sampler after them */
        st = sess_open_local_tail(s, false);
        if (st == HINGE_OK)
            st = recompute_prefix(s);
        if (st == HINGE_OK) {
            tail_skip_samples(s->tail, s->samples);
            s->remote = false;
            auto_finish(s); /* no more steps over the link */
        }
    }
    s->stats.recuts++;
    s->stats.recut_ms += (clk_now_s() - t0) * 1e3;
    if (st == HINGE_OK)
        hinge_log(&s->lg, HINGE_LOG_INFO, "re-cut from k=%u to k=%u at position %u in %.1f ms", from, k, s->pos,
                  (clk_now_s() - t0) * 1e3);
    return st;
}
