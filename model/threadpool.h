/* hinge: a fork-join thread pool for the CPU engine's matrix work.
 *
 * tp_run() hands n_tasks task indices to the pool's threads (the calling
 * thread works too) and returns when every task has finished. Workers spin
 * briefly between jobs, then sleep, so back-to-back jobs of a decode step do
 * not pay a wake-up each. One tp_run at a time per pool. */
#ifndef HINGE_THREADPOOL_H
#define HINGE_THREADPOOL_H

#include "status.h"

typedef struct threadpool threadpool;

/* Called once per task index in [0, n_tasks), from any pool thread. */
typedef void (*tp_fn)(void *ctx, int task, int n_tasks, int thread);

/* n_threads <= 0: the number of online CPUs. Errors: HINGE_ERR_NOMEM,
 * HINGE_ERR_INVALID (over 256 threads). */
hinge_status tp_create(int n_threads, threadpool **out);
void tp_destroy(threadpool *tp); /* NULL is a no-op; joins the workers */
int tp_threads(const threadpool *tp); /* 1 for a NULL pool */

/* Runs fn for each task; tp may be NULL (runs inline). */
void tp_run(threadpool *tp, tp_fn fn, void *ctx, int n_tasks);

#endif
