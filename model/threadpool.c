#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

enum { SPIN_ROUNDS = 20000, MAX_THREADS = 256 };

struct threadpool {
    int n_threads; /* including the caller of tp_run */
    pthread_t *workers; /* n_threads - 1 */
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint generation; /* bumped once per job */
    atomic_int next_task;
    atomic_int n_done;      /* workers finished with the current job */
    atomic_bool quit;
    /* current job; written before generation is bumped */
    tp_fn fn;
    void *ctx;
    int n_tasks;
};

typedef struct worker_arg {
    threadpool *tp;
    int id;
} worker_arg;

static void work(threadpool *tp, int thread)
{
    for (;;) {
        int t = atomic_fetch_add(&tp->next_task, 1);
        if (t >= tp->n_tasks)
            break;
        tp->fn(tp->ctx, t, tp->n_tasks, thread);
    }
}

static unsigned wait_job(threadpool *tp, unsigned seen)
{
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        unsigned g = atomic_load(&tp->generation);
        if (g != seen || atomic_load(&tp->quit))
            return g;
    }
    pthread_mutex_lock(&tp->mu);
    unsigned g;
    while ((g = atomic_load(&tp->generation)) == seen && !atomic_load(&tp->quit))
        pthread_cond_wait(&tp->cv, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
    return g;
}

static void *worker_main(void *p)
{
    worker_arg *a = p;
    threadpool *tp = a->tp;
    int id = a->id;
    free(a);
    unsigned seen = 0;
    for (;;) {
        seen = wait_job(tp, seen);
        if (atomic_load(&tp->quit))
            break;
        work(tp, id);
        atomic_fetch_add(&tp->n_done, 1);
    }
    return NULL;
}

hinge_status tp_create(int n_threads, threadpool **out)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > MAX_THREADS)
        return HINGE_ERR_INVALID;
    threadpool *tp = calloc(1, sizeof *tp);
    if (!tp)
        return HINGE_ERR_NOMEM;
    tp->n_threads = n_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    tp->workers = calloc((size_t)n_threads, sizeof *tp->workers);
    if (!tp->workers)
        goto fail;
    for (int i = 1; i < n_threads; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a)
            goto fail;
        *a = (worker_arg){.tp = tp, .id = i};
        if (pthread_create(&tp->workers[i - 1], NULL, worker_main, a) != 0) {
            free(a);
            goto fail;
        }
        tp->n_started++;
    }
    *out = tp;
    return HINGE_OK;
fail:
    tp_destroy(tp);
    return HINGE_ERR_NOMEM;
}

void tp_destroy(threadpool *tp)
{
    if (!tp)
        return;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->quit, true);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 0; i < tp->n_started; i++)
        pthread_join(tp->workers[i], NULL);
    pthread_cond_destroy(&tp->cv);
    pthread_mutex_destroy(&tp->mu);
    free(tp->workers);
    free(tp);
}

int tp_threads(const threadpool *tp) { return tp ? tp->n_threads : 1; }

void tp_run(threadpool *tp, tp_fn fn, void *ctx, int n_tasks)
{
    if (!tp || tp->n_threads == 1 || n_tasks <= 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(ctx, t, n_tasks, 0);
        return;
    }
    tp->fn = fn;
    tp->ctx = ctx;
    tp->n_tasks = n_tasks;
    atomic_store(&tp->next_task, 0);
    atomic_store(&tp->n_done, 0);
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add(&tp->generation, 1);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    work(tp, 0);
    while (atomic_load(&tp->n_done) < tp->n_started)
        sched_yield();
}
