/* The batching scheduler: what the compute worker runs between picking up
 * new steps. Every admitted step (a session's frame of n rows) is in the
 * active list until all its rows have run; each batch takes every decode
 * step and up to `chunk` rows of the longer ones (edge_sched_plan), runs
 * them as one fwd_batch (each session's layers [cut, N) against its own KV
 * cache, sessions joining at their own cut, the head over those that
 * sample) and finishes the steps whose last row ran. A long prefill thus
 * runs chunk by chunk, interleaved with the decode steps of the others, and
 * is answered after its last chunk.
 *
 * --backend vulkan (vk.c): a session with an executor (vx) is planned as
 * the others; after the CPU's batch, the Vulkan sessions' rows run as one
 * batch on the device (vk_exec_run_batch), verify steps' heads and
 * samplers included.
 *
 * Several models: a batch holds the steps of one model (each model has its
 * fwd_batch, models.c): that of the oldest active step. The others wait
 * for a later batch, at the latest until the steps ahead of theirs are done.
 *
 * Everything here belongs to the worker thread, except `started`. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "edge_impl.h"

struct edge_sched {
    const hinge_edge *e;
    uint32_t cap, chunk;
    edge_session **active;   /* (cap) admitted steps in arrival order */
    uint32_t n_active;
    fwd_item *items;         /* (cap) */
    edge_session **batch;    /* (cap) the session of items[i] */
    uint32_t *left, *take;   /* (cap) of the steps of this batch's model */
    uint32_t *idx;           /* (cap) their places in active */
    float *verify_logits;    /* (TX_VERIFY_MAX, verify_vocab): the head of a verify step's rows */
    uint32_t verify_vocab;   /* the largest vocabulary verify_logits has held (models differ) */
    atomic_uint_fast64_t started;
};

/* ---- the plan ---- */

/* Gives rows from *budget to the steps of one class (fits: left <= chunk,
 * or not), oldest first. */
static size_t plan_class(const uint32_t *left, size_t n, uint32_t chunk, bool fits, uint32_t *budget,
                         uint32_t *take)
{
    size_t given = 0;
    for (size_t i = 0; i < n && *budget > 0; i++) {
        if (left[i] <= 1 || (left[i] <= chunk) != fits)
            continue;
        uint32_t t = left[i] < *budget ? left[i] : *budget;
        take[i] = t;
        *budget -= t;
        given++;
    }
    return given;
}

size_t edge_sched_plan(const uint32_t *left, size_t n, uint32_t chunk, uint32_t *take)
{
    size_t given = 0;
    for (size_t i = 0; i < n; i++) {
        take[i] = left[i] <= 1 ? left[i] : 0;
        given += take[i] > 0;
    }
    uint32_t budget = chunk;
    given += plan_class(left, n, chunk, true, &budget, take);
    given += plan_class(left, n, chunk, false, &budget, take);
    return given;
}

/* ---- creation ---- */

hinge_status edge_sched_create(const hinge_edge *e, uint32_t cap, uint32_t chunk, edge_sched **out)
{
    edge_sched *sc = calloc(1, sizeof *sc);
    if (!sc)
        return HINGE_ERR_NOMEM;
    sc->e = e;
    sc->cap = cap;
    sc->chunk = chunk;
    atomic_init(&sc->started, 0);
    sc->active = calloc(cap, sizeof *sc->active);
    sc->items = calloc(cap, sizeof *sc->items);
    sc->batch = calloc(cap, sizeof *sc->batch);
    sc->left = calloc(cap, sizeof *sc->left);
    sc->take = calloc(cap, sizeof *sc->take);
    sc->idx = calloc(cap, sizeof *sc->idx);
    if (!sc->active || !sc->items || !sc->batch || !sc->left || !sc->take || !sc->idx) {
        edge_sched_destroy(sc);
        return HINGE_ERR_NOMEM;
    }
    *out = sc;
    return HINGE_OK;
}

void edge_sched_destroy(edge_sched *sc)
{
    if (!sc)
        return;
    free(sc->active);
    free(sc->items);
    free(sc->batch);
    free(sc->left);
    free(sc->take);
    free(sc->idx);
    free(sc->verify_logits);
    free(sc);
}

uint32_t edge_sched_active(const edge_sched *sc) { return sc->n_active; }

uint64_t edge_sched_started(const edge_sched *sc)
{
    return atomic_load_explicit(&sc->started, memory_order_relaxed);
}

/* ---- admission ---- */

bool edge_sched_admit(edge_sched *sc, edge_session *s)
{
    edge_step *p = &s->step;
    const uint32_t dim = s->m->hp.n_embd;
    p->token = -1;
    tx_frame_limits lim = {.codec = s->codec, .dim = dim, .max_n = s->max_step};
    hinge_status st = p->embedded ? HINGE_OK /* the loop wrote hidden and hdr (openai.c) */
                                  : tx_frame_decode(s->rx, s->rx_len, &lim, s->hidden, (size_t)s->max_step * dim,
                                                    &p->hdr, p->err, sizeof p->err);
    if (st != HINGE_OK || sc->n_active == sc->cap) { /* full cannot happen: one step per session, cap sessions */
        p->http = st == HINGE_ERR_RANGE ? 413 : st != HINGE_OK ? 400 : 503;
        if (st == HINGE_OK)
            hinge_fail(p->err, sizeof p->err, HINGE_ERR_RANGE, "the scheduler is full");
        p->t_start_us = p->t_end_us = edge_now_us();
        return false;
    }
    /* the step's KV blocks, all of them now: a step refused for the budget
     * has not run (503, the session intact: its client may retry), and one
     * admitted runs to its end */
    st = tail_kv_reserve(s->t, p->hdr.pos, p->hdr.pos + p->hdr.n);
    if (st != HINGE_OK) {
        p->http = st == HINGE_ERR_NOMEM ? 503 : 409;
        hinge_fail(p->err, sizeof p->err, st, "%s", tail_errmsg(s->t));
        p->t_start_us = p->t_end_us = edge_now_us();
        return false;
    }
    s->done_rows = 0;
    sc->active[sc->n_active++] = s;
    return true;
}

/* ---- one batch ---- */

static void finish(edge_session *s, int http, uint64_t now)
{
    s->step.http = http;
    s->step.t_end_us = now;
}

/* Counts one batch: its sessions, rows, time, and the steps in it. */
static void account(edge_sched *sc, size_t n, uint64_t t0, uint64_t t1, edge_batch_stats *st)
{
    uint32_t rows = 0, decode = 0, prefill = 0;
    for (size_t i = 0; i < n; i++) {
        const edge_session *s = sc->batch[i];
        rows += sc->items[i].n;
        if (s->step.hdr.n <= 1) {
            decode++;
            st->decode_positions += sc->items[i].n;
        } else {
            prefill += sc->items[i].n;
            st->prefill_positions += sc->items[i].n;
            st->prefill_chunks++;
        }
    }
    st->batches++;
    st->mixed_batches += decode > 0 && prefill > 0;
    edge_hist_observe(&st->h[EDGE_H_BATCH_SIZE], EDGE_H_BATCH_SIZE, (double)n);
    edge_hist_observe(&st->h[EDGE_H_BATCH_ROWS], EDGE_H_BATCH_ROWS, (double)rows);
    edge_hist_observe(&st->h[EDGE_H_BATCH_SECONDS], EDGE_H_BATCH_SECONDS, (double)(t1 - t0) * 1e-6);
}

/* Items[n] for take rows of s's step; returns n + 1. */
static size_t add_item(edge_sched *sc, edge_session *s, uint32_t take, size_t n, size_t d, uint64_t seq, uint64_t t0,
                       edge_batch_stats *st)
{
    edge_step *p = &s->step;
    if (p->batches++ == 0) {
        p->t_start_us = t0;
        p->wait_batches = seq > p->seq_queued + 1 ? (uint32_t)(seq - p->seq_queued - 1) : 0;
        if (p->hdr.n <= 1)
            edge_hist_observe(&st->h[EDGE_H_DECODE_WAIT], EDGE_H_DECODE_WAIT, (double)p->wait_batches);
    }
    bool last = s->done_rows + take == p->hdr.n;
    bool sample = last && !s->private_head && !(p->hdr.flags & (TX_FLAG_NO_SAMPLE | TX_FLAG_VERIFY));
    sc->items[n] = tail_item(s->t, p->hdr.pos + s->done_rows, take, s->hidden + (size_t)s->done_rows * d, sample);
    sc->batch[n] = s;
    return n + 1;
}

/* Items for the planned rows of the steps of model em, the CPU's sessions
 * then the Vulkan ones (*n_cpu: how many of the first kind); stamps each
 * step's first batch. */
static size_t build(edge_sched *sc, const edge_model *em, uint64_t seq, uint64_t t0, edge_batch_stats *st,
                    size_t *n_cpu)
{
    const size_t d = em->m->hp.n_embd;
    uint32_t n_same = 0;
    for (uint32_t i = 0; i < sc->n_active; i++) {
        if (sc->active[i]->em != em)
            continue;
        sc->idx[n_same] = i;
        sc->left[n_same++] = sc->active[i]->step.hdr.n - sc->active[i]->done_rows;
    }
    edge_sched_plan(sc->left, n_same, sc->chunk, sc->take);
    size_t n = 0;
    for (uint32_t pass = 0; pass < 2; pass++) {
        if (pass == 1)
            *n_cpu = n;
        for (uint32_t k = 0; k < n_same; k++)
            if (sc->take[k] && (sc->active[sc->idx[k]]->vx != NULL) == (pass == 1))
                n = add_item(sc, sc->active[sc->idx[k]], sc->take[k], n, d, seq, t0, st);
    }
    return n;
}

/* A verify step's rows went through the layers: the head and the sampler on
 * each (the batch ran the head on none of them). A Vulkan session's rows
 * were sampled as their device batches ran (vk.c): only the answer is left. */
static void verify(edge_sched *sc, edge_session *s, edge_batch_stats *st)
{
    edge_step *p = &s->step;
    uint32_t vocab = s->m->hp.n_vocab;
    if (!s->vx && vocab > sc->verify_vocab) { /* the first verify step of a model with a larger vocabulary */
        float *grown = realloc(sc->verify_logits, (size_t)TX_VERIFY_MAX * vocab * sizeof *grown);
        if (!grown) {
            hinge_fail(p->err, sizeof p->err, HINGE_ERR_NOMEM, "out of memory for a verify step's logits");
            p->http = 500;
            return;
        }
        sc->verify_logits = grown;
        sc->verify_vocab = vocab;
    }
    hinge_status rc = s->vx ? HINGE_OK : tail_sample_rows(s->t, s->hidden, p->hdr.n, sc->verify_logits, p->tokens);
    if (rc != HINGE_OK) { /* a bug, as a failed batch */
        hinge_fail(p->err, sizeof p->err, rc, "head of a verify step failed: %s", tail_errmsg(s->t));
        p->http = 500; /* finish keeps it */
        return;
    }
    p->token = p->tokens[p->hdr.n - 1];
    st->tokens += p->hdr.n;
}

size_t edge_sched_step(edge_sched *sc, edge_session **out, edge_batch_stats *st)
{
    if (sc->n_active == 0)
        return 0;
    uint64_t seq = atomic_fetch_add_explicit(&sc->started, 1, memory_order_relaxed) + 1;
    uint64_t t0 = edge_now_us();
    edge_model *em = sc->active[0]->em; /* the oldest step's model */
    size_t n_cpu = 0;
    size_t n = build(sc, em, seq, t0, st, &n_cpu);
    hinge_status rc = fwd_batch_run(em->fb, sc->items, n_cpu);
    hinge_status vrc = n > n_cpu ? edge_vk_run(sc->e, sc->batch + n_cpu, sc->items + n_cpu, n - n_cpu) : HINGE_OK;
    for (size_t i = 0; i < n; i++) {
        edge_session *s = sc->batch[i];
        hinge_status irc = i < n_cpu ? rc : vrc;
        s->done_rows += sc->items[i].n;
        if (irc != HINGE_OK) { /* a bug (admitted steps are checked against their context), or the device failed */
            if (i < n_cpu)
                hinge_fail(s->step.err, sizeof s->step.err, rc, "forward pass failed: %s", fwd_batch_errmsg(em->fb));
            s->step.http = 500; /* finish keeps it */
            s->done_rows = s->step.hdr.n;
        } else if (sc->items[i].logits) {
            s->step.token = tail_sample(s->t);
            st->tokens++;
        } else if ((s->step.hdr.flags & TX_FLAG_VERIFY) && s->done_rows == s->step.hdr.n) {
            verify(sc, s, st);
        }
    }
    uint64_t t1 = edge_now_us(); /* the samplers and verify steps' heads included */
    account(sc, n, t0, t1, st);
    size_t done = 0;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < sc->n_active; i++) {
        edge_session *s = sc->active[i];
        if (s->done_rows < s->step.hdr.n) {
            sc->active[kept++] = s;
            continue;
        }
        finish(s, s->step.http != 500 ? 200 : 500, t1); /* 500: set above, or by verify */
        if (s->step.http == 200)
            st->steps++;
        else
            st->step_errors++;
        out[done++] = s;
    }
    sc->n_active = kept;
    return done;
}
