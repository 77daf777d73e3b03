/* The models an edge serves (--model, given several times), cached under
 * --model-memory.
 *
 * Every file is loaded once at start-up, checked and hashed (its sha256
 * names it in a session request), then let go, except the first: the
 * default model, which stays loaded for the edge's life (/v1/profile and
 * the per-cut statistics describe it). Another model is loaded when a
 * session first names it, and stays while any session uses it (a session
 * pins its model: its steps read the weights from the worker). When a load
 * would take the loaded models over the budget, unpinned models are
 * evicted, least valuable first:
 *
 *     value = load_s * (1 + uses) / ((1 + idle_s) * bytes)
 *
 * the seconds a reload would cost, weighted by how much the model was used
 * and how recently, per byte it frees. A load that does not fit even then
 * is refused (503, Retry-After): the sessions on the other models must end
 * first.
 *
 * Everything here belongs to the loop thread. A model's fwd_batch is
 * created with it and used by the worker only for steps of its sessions;
 * it is destroyed only when no session uses the model, so no step of it is
 * in flight (a closing session with a step out is released when the step
 * comes back). Loading runs in the loop thread and holds it for the load's
 * time (hinge_edge_model_load_seconds). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "edge_impl.h"

static const double load_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
enum { N_LOAD_BOUNDS = sizeof load_bounds / sizeof load_bounds[0] };
_Static_assert((int)N_LOAD_BOUNDS < (int)EDGE_HIST_MAX, "histogram buckets");

hinge_status edge_models_init(hinge_edge *e, const char *const *paths, uint32_t n, char *err, size_t errlen)
{
    if (n == 0 || n > EDGE_MODELS_MAX)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "between 1 and %d models", EDGE_MODELS_MAX);
    e->models = calloc(n, sizeof *e->models);
    if (!e->models)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    e->n_models = n;
    for (uint32_t i = 0; i < n; i++) {
        edge_model *em = &e->models[i];
        const char *base = strrchr(paths[i], '/');
        if (snprintf(em->path, sizeof em->path, "%s", paths[i]) >= (int)sizeof em->path)
            return hinge_fail(err, errlen, HINGE_ERR_INVALID, "model path over %zu bytes", sizeof em->path - 1);
        snprintf(em->file, sizeof em->file, "%s", base ? base + 1 : paths[i]);
        model *m = NULL;
        double t0 = (double)edge_now_us() * 1e-6;
        hinge_status s = model_load(paths[i], true, &e->log, &m, err, errlen);
        if (s != HINGE_OK)
            return s;
        em->load_s = (double)edge_now_us() * 1e-6 - t0;
        memcpy(em->sha256, m->sha256, 32);
        for (uint32_t j = 0; j < i; j++)
            if (memcmp(e->models[j].sha256, em->sha256, 32) == 0) {
                model_free(m);
                return hinge_fail(err, errlen, HINGE_ERR_INVALID, "%s and %s are the same model", e->models[j].path,
                                  paths[i]);
            }
        if (i == 0) {
            em->m = m; /* the default: loaded for good */
            em->pinned = true;
            e->m = m;
        } else {
            model_free(m);
        }
    }
    return HINGE_OK;
}

static void unload(hinge_edge *e, edge_model *em)
{
    edge_vk_model_drop(e, em); /* gives its device bytes back (edge_model_shrink) */
    fwd_batch_destroy(em->fb);
    model_free(em->m);
    em->fb = NULL;
    em->m = NULL;
    e->model_bytes -= em->bytes;
    em->bytes = 0;
}

void edge_models_free(hinge_edge *e)
{
    for (uint32_t i = 0; e->models && i < e->n_models; i++)
        if (e->models[i].m)
            unload(e, &e->models[i]);
    free(e->models);
    e->models = NULL;
    e->m = NULL; /* it was models[0].m */
}

edge_model *edge_model_by_sha(hinge_edge *e, const uint8_t sha[32])
{
    for (uint32_t i = 0; i < e->n_models; i++)
        if (CRYPTO_memcmp(e->models[i].sha256, sha, 32) == 0)
            return &e->models[i];
    return NULL;
}

edge_model *edge_model_by_name(hinge_edge *e, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < e->n_models; i++) {
        edge_model *em = &e->models[i];
        char sha[65];
        edge_hex(em->sha256, 32, sha);
        size_t f = strlen(em->file);
        bool bare = f > 5 && n == f - 5 && strcmp(em->file + n, ".gguf") == 0 && memcmp(name, em->file, n) == 0;
        if (strcmp(name, em->file) == 0 || strcmp(name, sha) == 0 || bare || (em->m && strcmp(name, em->m->name) == 0))
            return em;
    }
    return NULL;
}

/* The eviction order's key: smaller goes first (see the top). */
static double value(const edge_model *em, uint64_t now_ms)
{
    double idle_s = (double)(now_ms - em->last_use_ms) * 1e-3;
    return em->load_s * (double)(1 + em->uses) / ((1.0 + idle_s) * (double)(em->bytes ? em->bytes : 1));
}

/* Evicts unpinned, unused models other than keep, least valuable first,
 * until need more bytes fit. False when they cannot. */
static bool make_room(hinge_edge *e, const edge_model *keep, size_t need)
{
    uint64_t now = edge_now_ms();
    while (e->model_memory && e->model_bytes + need > e->model_memory) {
        edge_model *victim = NULL;
        for (uint32_t i = 0; i < e->n_models; i++) {
            edge_model *em = &e->models[i];
            if (em == keep || !em->m || em->pinned || em->sessions)
                continue;
            if (!victim || value(em, now) < value(victim, now))
                victim = em;
        }
        if (!victim)
            return false;
        hinge_log(&e->log, HINGE_LOG_INFO, "model %s evicted (%.1f MiB, %llu uses) to make room", victim->file,
                  (double)victim->bytes / (1 << 20), (unsigned long long)victim->uses);
        unload(e, victim);
        e->model_evictions++;
    }
    return true;
}

static hinge_status create_batch(hinge_edge *e, edge_model *em, char *err, size_t errlen)
{
    uint32_t cap = e->max_sessions;
    fwd_batch_config bc = {.max_rows = cap + e->prefill_chunk, .max_items = cap, .max_ctx = e->max_ctx,
                           .head_rows = cap < 16 ? cap : 16};
    return fwd_batch_create(em->m, e->tp, &bc, &em->fb, err, errlen);
}

int edge_model_ensure(hinge_edge *e, edge_model *em, const char **code, char *detail, size_t detail_len)
{
    if (em->m && em->fb)
        return 0;
    uint64_t t0 = edge_now_us();
    hinge_status s = em->m ? HINGE_OK : model_load(em->path, false, &e->log, &em->m, detail, detail_len);
    if (s == HINGE_OK) {
        memcpy(em->m->sha256, em->sha256, 32); /* hashed at start-up */
        s = create_batch(e, em, detail, detail_len);
    }
    size_t bytes = em->m ? em->m->weight_bytes + fwd_batch_bytes(em->fb) : 0;
    if (s == HINGE_OK && !make_room(e, em, bytes)) {
        s = hinge_fail(detail, detail_len, HINGE_ERR_RANGE,
                       "%s needs %.1f MiB and the models in use hold %.1f of --model-memory %.1f MiB", em->file,
                       (double)bytes / (1 << 20), (double)e->model_bytes / (1 << 20),
                       (double)e->model_memory / (1 << 20));
    }
    if (s != HINGE_OK) {
        fwd_batch_destroy(em->fb);
        em->fb = NULL;
        if (!em->pinned) { /* the default stays loaded whatever happens */
            model_free(em->m);
            em->m = NULL;
        }
        *code = s == HINGE_ERR_RANGE ? "model_memory_full" : "model_load_failed";
        return s == HINGE_ERR_RANGE ? 503 : 500;
    }
    em->bytes += bytes; /* (+: the default model's device half is counted before, vk.c) */
    e->model_bytes += bytes;
    em->loads++;
    em->load_s = (double)(edge_now_us() - t0) * 1e-6;
    size_t b = 0;
    while (b < N_LOAD_BOUNDS && em->load_s > load_bounds[b])
        b++;
    e->model_load_hist.bucket[b]++;
    e->model_load_hist.sum += em->load_s;
    e->model_load_hist.count++;
    hinge_log(&e->log, HINGE_LOG_INFO, "model %s loaded in %.3f s (%.1f MiB; %.1f MiB of models loaded)", em->file,
              em->load_s, (double)bytes / (1 << 20), (double)e->model_bytes / (1 << 20));
    return 0;
}

int edge_model_grow(hinge_edge *e, edge_model *em, size_t bytes, const char *what, const char **code, char *detail,
                    size_t detail_len)
{
    if (!make_room(e, em, bytes)) {
        hinge_fail(detail, detail_len, HINGE_ERR_RANGE, "%s's %s need %.1f MiB more and the models in use hold %.1f "
                   "of --model-memory %.1f MiB", em->file, what, (double)bytes / (1 << 20),
                   (double)e->model_bytes / (1 << 20), (double)e->model_memory / (1 << 20));
        hinge_log(&e->log, HINGE_LOG_WARN, "model %s", detail);
        *code = "model_memory_full";
        return 503;
    }
    em->bytes += bytes;
    e->model_bytes += bytes;
    hinge_log(&e->log, HINGE_LOG_INFO, "model %s: %s, %.1f MiB (%.1f MiB of models loaded)", em->file, what,
              (double)bytes / (1 << 20), (double)e->model_bytes / (1 << 20));
    return 0;
}

void edge_model_shrink(hinge_edge *e, edge_model *em, size_t bytes)
{
    em->bytes -= bytes;
    e->model_bytes -= bytes;
}

void edge_model_pin(edge_model *em)
{
    em->sessions++;
    em->uses++;
    em->last_use_ms = edge_now_ms();
}

void edge_model_unpin(edge_model *em)
{
    em->sessions--;
    em->last_use_ms = edge_now_ms();
}

/* ---- /v1/models and /metrics ---- */

json_t *edge_models_json(hinge_edge *e)
{
    json_t *data = json_array();
    for (uint32_t i = 0; data && i < e->n_models; i++) {
        const edge_model *em = &e->models[i];
        char sha[65];
        edge_hex(em->sha256, 32, sha);
        json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s, s:s, s:b, s:b, s:I}", "id", em->file, "object",
                                              "model", "created", 0, "owned_by", "hinge-edge", "sha256", sha,
                                              "default", i == 0, "loaded", em->m != NULL, "sessions",
                                              (json_int_t)em->sessions));
    }
    return json_pack("{s:s, s:o}", "object", "list", "data", data);
}

typedef struct text {
    char *p;
    size_t len, cap;
    bool over;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...)
{
    if (t->over)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= t->cap - t->len)
        t->over = true;
    else
        t->len += (size_t)n;
}

size_t edge_models_metrics(hinge_edge *e, char *buf, size_t cap)
{
    text t = {.p = buf, .cap = cap};
    const edge_hist *h = &e->model_load_hist;
    put(&t, "# HELP hinge_edge_model_load_seconds Time to load a model on first use (map, check, batch buffers).\n"
            "# TYPE hinge_edge_model_load_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < N_LOAD_BOUNDS; i++) {
        cum += h->bucket[i];
        put(&t, "hinge_edge_model_load_seconds_bucket{le=\"%g\"} %llu\n", load_bounds[i], (unsigned long long)cum);
    }
    cum += h->bucket[N_LOAD_BOUNDS];
    put(&t, "hinge_edge_model_load_seconds_bucket{le=\"+Inf\"} %llu\nhinge_edge_model_load_seconds_sum %.6f\n"
            "hinge_edge_model_load_seconds_count %llu\n",
        (unsigned long long)cum, h->sum, (unsigned long long)h->count);
    uint32_t loaded = 0;
    for (uint32_t i = 0; i < e->n_models; i++)
        loaded += e->models[i].m != NULL;
    put(&t, "# HELP hinge_edge_models_loaded Models loaded now.\n# TYPE hinge_edge_models_loaded gauge\n"
            "hinge_edge_models_loaded %u\n# HELP hinge_edge_models Models this edge serves (--model).\n"
            "# TYPE hinge_edge_models gauge\nhinge_edge_models %u\n",
        loaded, e->n_models);
    put(&t, "# HELP hinge_edge_model_memory_bytes Bytes of the loaded models (weights and batch buffers, "
            "host and device).\n"
            "# TYPE hinge_edge_model_memory_bytes gauge\nhinge_edge_model_memory_bytes %zu\n"
            "# HELP hinge_edge_model_memory_budget_bytes --model-memory (0: none).\n"
            "# TYPE hinge_edge_model_memory_budget_bytes gauge\nhinge_edge_model_memory_budget_bytes %llu\n"
            "# HELP hinge_edge_model_evictions_total Models unloaded to make room.\n"
            "# TYPE hinge_edge_model_evictions_total counter\nhinge_edge_model_evictions_total %llu\n",
        e->model_bytes, (unsigned long long)e->model_memory, (unsigned long long)e->model_evictions);
    put(&t, "# HELP hinge_edge_model_loaded 1 while the model is loaded.\n# TYPE hinge_edge_model_loaded gauge\n");
    for (uint32_t i = 0; i < e->n_models; i++)
        put(&t, "hinge_edge_model_loaded{model=\"%s\"} %d\n", e->models[i].file, e->models[i].m != NULL);
    put(&t, "# HELP hinge_edge_model_sessions_total Sessions opened on the model.\n"
            "# TYPE hinge_edge_model_sessions_total counter\n");
    for (uint32_t i = 0; i < e->n_models; i++)
        put(&t, "hinge_edge_model_sessions_total{model=\"%s\"} %llu\n", e->models[i].file,
            (unsigned long long)e->models[i].uses);
    return t.over ? 0 : t.len;
}
