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

/* The loop's latency histograms (edge_lat_kind), in seconds. */
static const double bounds_lat[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5};
static const hist_def lats[EDGE_L_COUNT] = {
    [EDGE_L_STEP] = {"hinge_edge_step_seconds", "A step's compute: its first batch's start to its last batch's end.",
                     bounds_lat, sizeof bounds_lat / sizeof bounds_lat[0]},
    [EDGE_L_QUEUE] = {"hinge_edge_queue_seconds", "A step's wait for the compute worker.", bounds_lat,
                      sizeof bounds_lat / sizeof bounds_lat[0]},
};

static const char *const reject_names[EDGE_REJ_COUNT] = {
    [EDGE_REJ_FULL] = "full", [EDGE_REJ_DRAINING] = "draining", [EDGE_REJ_QUOTA_SESSIONS] = "quota_sessions",
    [EDGE_REJ_QUOTA_KV] = "quota_kv_bytes", [EDGE_REJ_MEMORY] = "memory", [EDGE_REJ_INVALID] = "invalid",
};

_Static_assert(sizeof bounds_lat / sizeof bounds_lat[0] < EDGE_HIST_MAX, "histogram buckets");
_Static_assert(sizeof bounds_rows / sizeof bounds_rows[0] < EDGE_HIST_MAX, "histogram buckets");
_Static_assert(sizeof bounds_seconds / sizeof bounds_seconds[0] < EDGE_HIST_MAX, "histogram buckets");

static void observe(edge_hist *h, const hist_def *d, double v)
{
    size_t i = 0;
    while (i < d->n && v > d->bounds[i])
        i++;
    h->bucket[i]++;
    h->sum += v;
    h->count++;
}

void edge_hist_observe(edge_hist *h, edge_hist_kind k, double v)
{
    observe(h, &hists[k], v);
}

void edge_lat_observe(hinge_edge *e, edge_lat_kind k, double seconds)
{
    observe(&e->lat[k], &lats[k], seconds);
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

static void histogram(out *o, const hist_def *d, const edge_hist *h)
{
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

/* Sessions, clients, connections and traffic (issue 11). */
static void service_metrics(out *o, const hinge_edge *e)
{
    put(o, "# HELP hinge_edge_sessions_rejected_total Sessions refused, by reason.\n"
           "# TYPE hinge_edge_sessions_rejected_total counter\n");
    for (int r = 0; r < EDGE_REJ_COUNT; r++)
        put(o, "hinge_edge_sessions_rejected_total{reason=\"%s\"} %llu\n", reject_names[r],
            (unsigned long long)e->rejected[r]);
    size_t kv = 0;
    for (uint32_t i = 0; i < e->max_sessions; i++)
        if (e->sessions[i].used)
            kv += e->sessions[i].bytes;
    metric(o, "hinge_edge_sessions_opened_total", "counter", "Sessions opened.", (double)e->sessions_opened);
    metric(o, "hinge_edge_sessions_resumed_total", "counter",
           "Sessions taken up by a new connection of their client (a lost connection, resumed).",
           (double)e->sessions_resumed);
    metric(o, "hinge_edge_steps_repeated_total", "counter",
           "Steps sent again after their reply was lost, answered from the last reply.", (double)e->steps_repeated);
    metric(o, "hinge_edge_sessions_orphaned_total", "counter",
           "Sessions freed because their connection closed and none took over within the grace period.",
           (double)e->sessions_orphaned);
    metric(o, "hinge_edge_kv_bytes", "gauge", "Bytes held by open sessions (KV cache and buffers).", (double)kv);
    /* the device's name as a label value: quotes, backslashes and newlines would break the line */
    char dev[256];
    snprintf(dev, sizeof dev, "%s", edge_vk_device(e));
    for (char *q = dev; *q; q++)
        *q = *q == '"' || *q == '\\' || *q == '\n' ? '_' : *q;
    put(o, "# HELP hinge_edge_backend_info Where the sessions' layers and head run (--backend), and on which device.\n"
           "# TYPE hinge_edge_backend_info gauge\nhinge_edge_backend_info{backend=\"%s\",device=\"%s\"} 1\n",
        e->vk ? "vulkan" : "cpu", e->vk ? dev : "cpu");
    metric(o, "hinge_edge_client_kv_bytes_limit", "gauge", "Per-client quota of session bytes (0: none).",
           (double)e->client_kv_bytes);
    metric(o, "hinge_edge_client_sessions_limit", "gauge", "Per-client quota of sessions.",
           (double)e->client_max_sessions);
    metric(o, "hinge_edge_connections_max", "gauge", "Most connections (--max-conns).", (double)e->max_conns);
    metric(o, "hinge_edge_connections_accepted_total", "counter", "Connections accepted.", (double)e->conns_accepted);
    metric(o, "hinge_edge_connections_refused_total", "counter",
           "Connections refused (caps) or not accepted (descriptors exhausted).", (double)e->conns_refused);
    metric(o, "hinge_edge_connections_evicted_total", "counter", "Idle connections closed to make room.",
           (double)e->conns_evicted);
    metric(o, "hinge_edge_tls_handshakes_total", "counter", "TLS handshakes completed.", (double)e->handshakes_ok);
    metric(o, "hinge_edge_tls_handshake_failures_total", "counter", "TLS handshakes failed or timed out.",
           (double)e->handshakes_failed);
    metric(o, "hinge_edge_auth_failures_total", "counter", "Requests answered 401.", (double)e->auth_failures);
    metric(o, "hinge_edge_received_bytes_total", "counter", "HTTP/2 bytes received (after TLS).",
           (double)e->bytes_in);
    metric(o, "hinge_edge_sent_bytes_total", "counter", "HTTP/2 bytes sent (before TLS).", (double)e->bytes_out);
    metric(o, "hinge_edge_reloads_total", "counter", "Successful reloads (SIGHUP).", (double)e->reloads);
    metric(o, "hinge_edge_draining", "gauge", "1 after SIGTERM.", e->draining ? 1.0 : 0.0);
}

size_t edge_metrics_text(hinge_edge *e, char *buf, size_t cap)
{
    edge_batch_stats st;
    uint32_t queued, running;
    edge_worker_stats(e->worker, &st);
    edge_worker_load(e->worker, &queued, &running);
    out o = {.p = buf, .cap = cap};
    for (int k = 0; k < EDGE_H_COUNT; k++)
        histogram(&o, &hists[k], &st.h[k]);
    for (int k = 0; k < EDGE_L_COUNT; k++)
        histogram(&o, &lats[k], &e->lat[k]);
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
    service_metrics(&o, e);
    if (o.over)
        return 0;
    size_t n = edge_models_metrics(e, buf + o.len, cap - o.len);
    return n ? o.len + n : 0;
}
