/* The compute worker: one thread that runs queued steps one at a time
 * (each with the whole compute thread pool) and hands each finished
 * session back to the loop through a ring and an eventfd.
 *
 * Both rings hold at most one entry per session (a session has at most
 * one step out), so cap = max_sessions never overflows. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "edge_impl.h"

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
    ring todo, done; /* under mu */
    uint32_t running; /* under mu */
    atomic_uint queued; /* todo.len, also readable without mu (the spin) */
    uint32_t spin_us;   /* after a step, busy-poll queued this long before sleeping */
    int efd;          /* eventfd: done is not empty */
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

static void *worker_main(void *arg)
{
    edge_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && w->todo.len == 0)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->todo.len == 0)
            break; /* stopping, and nothing left to run */
        edge_session *s = ring_pop(&w->todo, w->cap);
        atomic_store(&w->queued, w->todo.len);
        w->running = 1;
        pthread_mutex_unlock(&w->mu);
        edge_session_compute(w->e, s);
        pthread_mutex_lock(&w->mu);
        w->running = 0;
        ring_push(&w->done, w->cap, s);
        pthread_mutex_unlock(&w->mu);
        notify(w); /* outside the lock: the loop wakes and takes it at once */
        if (w->spin_us)
            spin_for_work(w);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

hinge_status edge_worker_create(const hinge_edge *e, uint32_t cap, edge_worker **out)
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
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (w->efd < 0 || !w->todo.v || !w->done.v || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        edge_worker_destroy(w);
        return HINGE_ERR_NOMEM;
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
    free(w->todo.v);
    free(w->done.v);
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
