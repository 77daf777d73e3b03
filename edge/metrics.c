/* GET /metrics: the edge's state and the batch statistics in the
 * Prometheus text format (version 0.0.4). Names are an interface that
 * scripts rely on (hinge_edge_batch_size above all): keep them. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "edge_impl.h"

/* Upper bounds of each histogram's buckets; +Inf follows. */
static const double bounds_size[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
static const double bounds_rows[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
static const double bounds_seconds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
static const double bounds_wait[] = {0, 1, 2, 4, 8, 16};

typedef struct hist_def {
    const char *name, *help;
    const double *bounds;
    size_t n;
} hist_def;

static const hist_def hists[EDGE_H_COUNT] = {
    [EDGE_H_BATCH_SIZE] = {"hinge_edge_batch_size", "Sessions per batched step.", bounds_size,
                           sizeof bounds_size / sizeof bounds_size[0]},
    [EDGE_H_BATCH_ROWS] = {"hinge_edge_batch_rows", "Positions (decode tokens and prefill rows) per batched step.",
                           bounds_rows, sizeof bounds_rows / sizeof bounds_rows[0]},
    [EDGE_H_BATCH_SECONDS] = {"hinge_edge_batch_seconds", "Wall time of a batched step.", bounds_seconds,
                              sizeof bounds_seconds / sizeof bounds_seconds[0]},
    [EDGE_H_DECODE_WAIT] = {"hinge_edge_decode_wait_batches",
                            "Batches that started after a one-position step was queued and before it ran (0: it "
                            "waited at most for the batch in flight).",
                            bounds_wait, sizeof bounds_wait / sizeof bounds_wait[0]},
};

_Static_assert(sizeof bounds_rows / sizeof bounds_rows[0] < EDGE_HIST_MAX, "histogram buckets");
_Static_assert(sizeof bounds_seconds / sizeof bounds_seconds[0] < EDGE_HIST_MAX, "histogram buckets");

void edge_hist_observe(edge_hist *h, edge_hist_kind k, double v)
{
    const hist_def *d = &hists[k];
    size_t i = 0;
    while (i < d->n && v > d->bounds[i])
        i++;
    h->bucket[i]++;
    h->sum += v;
    h->count++;
}

typedef struct out {
    char *p;
    size_t len, cap;
    bool over;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out *o, const char *fmt, ...)
{
    if (o->over)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len)
        o->over = true;
    else
        o->len += (size_t)n;
}

static void metric(out *o, const char *name, const char *type, const char *help, double v)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n%s %.15g\n", name, help, name, type, name, v);
}

static void histogram(out *o, edge_hist_kind k, const edge_hist *h)
{
    const hist_def *d = &hists[k];
    put(o, "# HELP %s %s\n# TYPE %s histogram\n", d->name, d->help, d->name);
    uint64_t cum = 0;
    for (size_t i = 0; i < d->n; i++) {
        cum += h->bucket[i];
        put(o, "%s_bucket{le=\"%g\"} %llu\n", d->name, d->bounds[i], (unsigned long long)cum);
    }
    cum += h->bucket[d->n];
    put(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.10g\n%s_count %llu\n", d->name, (unsigned long long)cum, d->name,
        h->sum, d->name, (unsigned long long)h->count);
}

size_t edge_metrics_text(hinge_edge *e, char *buf, size_t cap)
{
    edge_batch_stats st;
    uint32_t queued, running;
    edge_worker_stats(e->worker, &st);
    edge_worker_load(e->worker, &queued, &running);
    out o = {.p = buf, .cap = cap};
    for (int k = 0; k < EDGE_H_COUNT; k++)
        histogram(&o, (edge_hist_kind)k, &st.h[k]);
    metric(&o, "hinge_edge_batches_total", "counter", "Batched steps run.", (double)st.batches);
    metric(&o, "hinge_edge_mixed_batches_total", "counter",
           "Batched steps holding both one-position steps and prefill rows.", (double)st.mixed_batches);
    metric(&o, "hinge_edge_steps_total", "counter", "Step requests computed.", (double)st.steps);
    metric(&o, "hinge_edge_step_errors_total", "counter", "Step requests that failed in the worker.",
           (double)st.step_errors);
    metric(&o, "hinge_edge_tokens_total", "counter", "Tokens sampled.", (double)st.tokens);
    metric(&o, "hinge_edge_decode_positions_total", "counter", "Positions of one-position steps.",
           (double)st.decode_positions);
    metric(&o, "hinge_edge_prefill_positions_total", "counter", "Positions of longer steps (prefill).",
           (double)st.prefill_positions);
    metric(&o, "hinge_edge_prefill_chunks_total", "counter",
           "Pieces of longer steps, one per batched step they ran in.", (double)st.prefill_chunks);
    metric(&o, "hinge_edge_prefill_chunk_positions", "gauge", "Most prefill positions per batched step.",
           (double)e->prefill_chunk);
    metric(&o, "hinge_edge_steps_queued", "gauge", "Steps waiting for the worker.", (double)queued);
    metric(&o, "hinge_edge_steps_active", "gauge", "Steps admitted and not finished (prefills between chunks).",
           (double)running);
    metric(&o, "hinge_edge_sessions", "gauge", "Open sessions.", (double)e->n_sessions);
    metric(&o, "hinge_edge_kv_bytes_used", "gauge", "KV cache bytes the sessions hold.", (double)kv_pool_used(e->kv));
    metric(&o, "hinge_edge_kv_bytes_budget", "gauge",
           "KV cache bytes the sessions may hold (--kv-budget; 0: no limit).", (double)kv_pool_budget(e->kv));
    metric(&o, "hinge_edge_kv_refusals_total", "counter",
           "Sessions and steps refused (503) because their KV blocks did not fit the budget.",
           (double)kv_pool_refusals(e->kv));
    metric(&o, "hinge_edge_sessions_max", "gauge", "Most sessions (--max-sessions).", (double)e->max_sessions);
    metric(&o, "hinge_edge_connections", "gauge", "Open connections.", (double)e->n_conns);
    metric(&o, "hinge_edge_requests_total", "counter", "Responses sent.", (double)e->requests);
    metric(&o, "hinge_edge_errors_total", "counter", "Responses with a status of 400 or more.", (double)e->errors);
    return o.over ? 0 : o.len;
}
