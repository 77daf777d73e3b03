/* The compute worker: one thread that admits the queued steps into its
 * scheduler (sched.c) and runs them in batches (each batch with the whole
 * compute thread pool), handing every finished session back to the loop
 * through a ring and an eventfd. Between two batches it admits whatever
 * arrived meanwhile, so a decode step waits at most for the batch in
 * flight, and a long prefill runs chunk by chunk among the decode steps.
 *
 * Gathering: the sessions whose decode step a batch finished usually send
 * their next one a network round trip later. Starting the next batch with
 * the first to arrive would split them over two batches (and the weights
 * would be read twice); so the worker waits for as many steps as the last
 * batch finished, at most a quarter of that batch's time (and GATHER_MAX_US)
 * after it ended. One session alone never waits.
 *
 * Both rings hold at most one entry per session (a session has at most
 * one step out), so cap = max_sessions never overflows. */
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "edge_impl.h"

enum { GATHER_MAX_US = 5000 };

typedef struct ring {
    edge_session **v; /* cap */
    uint32_t head, len;
} ring;

struct edge_worker {
    const hinge_edge *e;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    uint32_t cap;
    ring todo, done;  /* under mu */
    uint32_t running; /* under mu: steps admitted and not finished */
    edge_batch_stats pub; /* under mu: stats as of the last batch */
    atomic_uint queued; /* todo.len, also readable without mu (the spin) */
    uint32_t spin_us;   /* with nothing admitted, busy-poll queued this long before sleeping */
    int efd;            /* eventfd: done is not empty */
    /* the worker thread's own */
    edge_sched *sc;
    edge_session **fresh, **finished; /* (cap) */
    edge_batch_stats stats;
    uint32_t expect;         /* one-position steps the last batch finished */
    uint64_t gather_until_us; /* wait for them until then */
};

/* True when work arrived within w->spin_us. */
static bool spin_for_work(edge_worker *w)
{
    uint64_t end = edge_now_us() + w->spin_us;
    do {
        for (int i = 0; i < 256; i++)
            if (atomic_load_explicit(&w->queued, memory_order_relaxed))
                return true;
    } while (edge_now_us() < end);
    return false;
}

static void ring_push(ring *r, uint32_t cap, edge_session *s)
{
    r->v[(r->head + r->len) % cap] = s;
    r->len++;
}

static edge_session *ring_pop(ring *r, uint32_t cap)
{
    edge_session *s = r->v[r->head];
    r->head = (r->head + 1) % cap;
    r->len--;
    return s;
}

static void notify(edge_worker *w)
{
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(w->efd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
}

/* Under mu: waits for w->expect queued steps, until w->gather_until_us. */
static void gather(edge_worker *w)
{
    while (!w->stop && w->todo.len < w->expect) {
        uint64_t now = edge_now_us();
        if (now >= w->gather_until_us)
            return;
        uint64_t left = w->gather_until_us - now;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)(left % 1000000) * 1000;
        ts.tv_sec += (time_t)(left / 1000000) + ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
}

/* After a batch [t0, t1) that finished `decodes` one-position steps. */
static void expect_next(edge_worker *w, uint32_t decodes, uint64_t t0, uint64_t t1)
{
    uint64_t wait = (t1 - t0) / 4;
    w->expect = decodes > 1 ? decodes : 0;
    w->gather_until_us = t1 + (wait < GATHER_MAX_US ? wait : GATHER_MAX_US);
}

/* Under mu: takes every queued step. */
static size_t take_queued(edge_worker *w)
{
    size_t n = 0;
    while (w->todo.len > 0)
        w->fresh[n++] = ring_pop(&w->todo, w->cap);
    atomic_store(&w->queued, 0);
    return n;
}

/* Admits the fresh steps and runs one batch; the finished steps (bad
 * frames too) go to w->finished. Outside mu. */
static size_t admit_and_run(edge_worker *w, size_t n_fresh)
{
    size_t n_done = 0;
    for (size_t i = 0; i < n_fresh; i++)
        if (!edge_sched_admit(w->sc, w->fresh[i]))
            w->finished[n_done++] = w->fresh[i];
    uint64_t t0 = edge_now_us();
    size_t n_step = edge_sched_step(w->sc, w->finished + n_done, &w->stats);
    uint32_t decodes = 0;
    for (size_t i = n_done; i < n_done + n_step; i++)
        decodes += w->finished[i]->step.hdr.n == 1 && w->finished[i]->step.http == 200;
    expect_next(w, decodes, t0, edge_now_us());
    return n_done + n_step;
}

static void *worker_main(void *arg)
{
    edge_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && w->todo.len == 0 && edge_sched_active(w->sc) == 0)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->todo.len == 0 && edge_sched_active(w->sc) == 0)
            break; /* stopping, and nothing left to run */
        gather(w);
        size_t n_fresh = take_queued(w);
        w->running = edge_sched_active(w->sc) + (uint32_t)n_fresh;
        pthread_mutex_unlock(&w->mu);
        size_t n_done = admit_and_run(w, n_fresh);
        pthread_mutex_lock(&w->mu);
        for (size_t i = 0; i < n_done; i++)
            ring_push(&w->done, w->cap, w->finished[i]);
        w->running = edge_sched_active(w->sc);
        w->pub = w->stats;
        bool idle = w->running == 0;
        pthread_mutex_unlock(&w->mu);
        if (n_done)
            notify(w); /* outside the lock: the loop wakes and takes them at once */
        if (idle && w->spin_us)
            spin_for_work(w);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

hinge_status edge_worker_create(const hinge_edge *e, uint32_t cap, uint32_t chunk, edge_worker **out)
{
    edge_worker *w = calloc(1, sizeof *w);
    if (!w)
        return HINGE_ERR_NOMEM;
    w->e = e;
    w->cap = cap;
    w->spin_us = e->spin_us;
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->todo.v = calloc(cap, sizeof *w->todo.v);
    w->done.v = calloc(cap, sizeof *w->done.v);
    w->fresh = calloc(cap, sizeof *w->fresh);
    w->finished = calloc(cap, sizeof *w->finished);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* gather's deadline */
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    hinge_status s = w->efd < 0 || !w->todo.v || !w->done.v || !w->fresh || !w->finished ? HINGE_ERR_NOMEM
                                                                                        : edge_sched_create(e, cap, chunk, &w->sc);
    if (s != HINGE_OK || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        edge_worker_destroy(w);
        return s != HINGE_OK ? s : HINGE_ERR_NOMEM;
    }
    w->started = true;
    *out = w;
    return HINGE_OK;
}

void edge_worker_destroy(edge_worker *w)
{
    if (!w)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    if (w->efd >= 0)
        close(w->efd);
    edge_sched_destroy(w->sc);
    free(w->todo.v);
    free(w->done.v);
    free(w->fresh);
    free(w->finished);
    free(w);
}

int edge_worker_fd(const edge_worker *w)
{
    return w->efd;
}

bool edge_worker_submit(edge_worker *w, edge_session *s)
{
    pthread_mutex_lock(&w->mu);
    bool ok = w->todo.len < w->cap;
    if (ok) {
        ring_push(&w->todo, w->cap, s);
        atomic_store(&w->queued, w->todo.len);
    }
    pthread_mutex_unlock(&w->mu);
    if (ok) /* outside the lock: the worker does not wake into a held mutex */
        pthread_cond_signal(&w->cv);
    return ok;
}

size_t edge_worker_collect(edge_worker *w, edge_session **out, size_t max)
{
    uint64_t count;
    while (read(w->efd, &count, sizeof count) < 0 && errno == EINTR)
        ;
    size_t n = 0;
    pthread_mutex_lock(&w->mu);
    while (n < max && w->done.len > 0)
        out[n++] = ring_pop(&w->done, w->cap);
    bool more = w->done.len > 0;
    pthread_mutex_unlock(&w->mu);
    if (more)
        notify(w); /* come back for the rest */
    return n;
}

void edge_worker_load(edge_worker *w, uint32_t *queued, uint32_t *running)
{
    pthread_mutex_lock(&w->mu);
    *queued = w->todo.len;
    *running = w->running;
    pthread_mutex_unlock(&w->mu);
}

uint64_t edge_worker_batches(const edge_worker *w)
{
    return edge_sched_started(w->sc);
}

void edge_worker_stats(edge_worker *w, edge_batch_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->pub;
    pthread_mutex_unlock(&w->mu);
}
