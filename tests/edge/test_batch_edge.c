/* The edge's batching scheduler, end to end: a real hinge-edge (h2c on
 * 127.0.0.1) and sessions driven through libhinge's public API alone, one
 * thread each, as apps would.
 *
 *  - 32 concurrent split generations of stories260K at mixed cuts and
 *    prompts: each equals the same session run alone (in-process, f32 wire:
 *    the split is exact), and /metrics shows that steps were batched.
 *  - A 512-token prefill sent as one frame while another session decodes:
 *    /metrics shows it ran in chunks of --prefill-chunk positions with
 *    decode steps in between, and that no decode step waited for more than
 *    the batch in flight. The decode session's per-token gaps are printed
 *    (speed is measured by scripts/bench-edge, not asserted here).
 *  - 8 concurrent split generations of Gemma 3 270M at mixed cuts against a
 *    second edge: each equals the session alone (skipped without the model).
 *  - A full edge refuses a session with 503 and Retry-After. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <hinge/hinge.h>
#include <jansson.h>

#include "edge_proc.h"

#ifndef HINGE_SHARED_DIR
#define HINGE_SHARED_DIR "../shared"
#endif
#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"
#define ORACLE HINGE_SHARED_DIR "/oracles/stories260K-greedy-200.txt"

enum { N_GEN = 32, TEXT_MAX = 8192, METRICS_MAX = 32768, CHUNK = 64, LONG_PROMPT = 512, GAPS_MAX = 4096 };

static const char *const prompts[] = {
    "",
    "Once upon a time",
    "Lily and Ben went to the park. They saw a big dog",
    "The little bird",
    "One day, a boy named Tim found a red ball in the garden. He",
    "Sue had a cat",
    "Mom said",
};

typedef struct world {
    hinge_model *m;
    edge_proc edge;
    bool edge_up;
    char oracle[TEXT_MAX];
} world;

typedef struct text {
    char buf[TEXT_MAX];
    size_t len;
} text;

static int collect(const char *piece, size_t n, void *user)
{
    text *t = user;
    if (t->len + n < sizeof t->buf) {
        memcpy(t->buf + t->len, piece, n);
        t->len += n;
        t->buf[t->len] = '\0';
    }
    return 0;
}

static int setup(void **state)
{
    static world w;
    FILE *f = fopen(ORACLE, "rb");
    if (!f)
        return -1;
    size_t n = fread(w.oracle, 1, sizeof w.oracle - 1, f);
    w.oracle[n] = '\0';
    fclose(f);
    if (hinge_model_load(STORIES, &w.m) != HINGE_OK) {
        fprintf(stderr, "cannot load %s: %s\n", STORIES, hinge_last_error());
        return -1;
    }
    const char *bin = getenv("HINGE_EDGE_BIN");
    const char *const extra[] = {"--threads", "2", "--max-sessions", "40", "--max-ctx", "512", "--prefill-chunk", "64",
                                 "--no-measure", NULL};
    w.edge_up = bin && edge_proc_start(&w.edge, bin, STORIES, false, extra) == 0;
    *state = &w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    if (w->edge_up)
        assert_int_equal(edge_proc_stop(&w->edge), 0);
    edge_proc_cleanup(&w->edge);
    hinge_model_free(w->m);
    return 0;
}

static hinge_session *open_session(world *w, const char *url, int cut, uint32_t ctx)
{
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.edge_url = url;
    c.cut = cut;
    c.n_ctx = ctx;
    c.n_threads = 1;
    c.no_local_fallback = 1;
    hinge_session *s = NULL;
    hinge_status st = hinge_session_create(w->m, &c, &s);
    if (st != HINGE_OK)
        fail_msg("hinge_session_create (cut %d, %s): %s: %s", cut, url ? url : "local", hinge_strerror(st),
                 hinge_last_error());
    return s;
}

/* The value of the sample `name` (the whole series name, labels included)
 * in a Prometheus text document; -1 when absent. */
static double metric(const char *doc, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = doc; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

static void get_metrics(world *w, char *doc)
{
    long http = edge_req(&w->edge, "GET", "/metrics", NULL, 0, 0, doc, METRICS_MAX);
    assert_int_equal(http, 200);
    assert_non_null(strstr(doc, "# TYPE hinge_edge_batch_size histogram\n"));
}

/* ---- 32 concurrent generations ---- */

typedef struct gen {
    world *w;
    hinge_model *m;     /* NULL: w->m */
    const char *url;    /* NULL: w's edge */
    int cut;
    const char *prompt;
    int n_new;
    text got;
    hinge_status st;
    char err[256];
} gen;

static void *gen_main(void *arg)
{
    gen *g = arg;
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.edge_url = g->url ? g->url : g->w->edge.url;
    c.cut = g->cut;
    c.n_ctx = 512;
    c.n_threads = 1;
    c.no_local_fallback = 1;
    hinge_session *s = NULL;
    g->st = hinge_session_create(g->m ? g->m : g->w->m, &c, &s);
    if (g->st == HINGE_OK)
        g->st = hinge_generate(s, g->prompt, g->n_new, collect, &g->got);
    if (g->st != HINGE_OK)
        snprintf(g->err, sizeof g->err, "%s", hinge_last_error());
    hinge_session_free(s);
    return NULL;
}

static void test_concurrent_mixed_cuts(void **state)
{
    world *w = *state;
    if (!w->edge_up)
        skip();
    static gen g[N_GEN];
    static text alone[N_GEN];
    char *before = malloc(METRICS_MAX), *after = malloc(METRICS_MAX);
    assert_true(before && after);
    for (int i = 0; i < N_GEN; i++) {
        g[i] = (gen){.w = w, .cut = i % 6, .prompt = prompts[i % 7], .n_new = 120 + 3 * i};
        /* the same session alone: in-process (no edge), same cut */
        alone[i] = (text){0};
        hinge_session *s = open_session(w, NULL, g[i].cut, 512);
        assert_int_equal(hinge_generate(s, g[i].prompt, g[i].n_new, collect, &alone[i]), HINGE_OK);
        hinge_session_free(s);
        if (g[i].prompt[0] == '\0' && g[i].n_new >= 200)
            assert_int_equal(strncmp(alone[i].buf, w->oracle, strlen(w->oracle)), 0);
    }
    get_metrics(w, before);
    pthread_t th[N_GEN];
    for (int i = 0; i < N_GEN; i++)
        assert_int_equal(pthread_create(&th[i], NULL, gen_main, &g[i]), 0);
    for (int i = 0; i < N_GEN; i++)
        pthread_join(th[i], NULL);
    get_metrics(w, after);
    for (int i = 0; i < N_GEN; i++) {
        if (g[i].st != HINGE_OK)
            fail_msg("generation %d (cut %d): %s: %s", i, g[i].cut, hinge_strerror(g[i].st), g[i].err);
        if (strcmp(g[i].got.buf, alone[i].buf) != 0)
            fail_msg("generation %d (cut %d, prompt \"%s\"): the split text differs from the session alone\n"
                     "split: %s\nalone: %s",
                     i, g[i].cut, g[i].prompt, g[i].got.buf, alone[i].buf);
    }
    double batches = metric(after, "hinge_edge_batch_size_count") - metric(before, "hinge_edge_batch_size_count");
    double sessions = metric(after, "hinge_edge_batch_size_sum") - metric(before, "hinge_edge_batch_size_sum");
    double single = metric(after, "hinge_edge_batch_size_bucket{le=\"1\"}") -
                    metric(before, "hinge_edge_batch_size_bucket{le=\"1\"}");
    print_message("32 generations, cuts 0..5: all equal alone; %.0f batched steps of %.2f sessions on average, %.0f of "
                  "one session\n",
                  batches, sessions / batches, single);
    assert_true(batches > 0 && single < batches); /* some batches held several sessions */
    assert_true(metric(after, "hinge_edge_step_errors_total") == 0);
    free(before);
    free(after);
}

/* ---- a long prefill among decode steps ---- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

typedef struct decoder {
    world *w;
    atomic_int stop, tokens;
    double t[GAPS_MAX]; /* arrival of each token, ms */
    hinge_status st;
    char err[256];
} decoder;

static int decode_cb(const char *piece, size_t len, void *user)
{
    (void)piece, (void)len;
    decoder *d = user;
    int n = atomic_load(&d->tokens);
    if (n < GAPS_MAX)
        d->t[n] = now_ms();
    atomic_store(&d->tokens, n + 1);
    return atomic_load(&d->stop);
}

static void *decode_main(void *arg)
{
    decoder *d = arg;
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.edge_url = d->w->edge.url;
    c.cut = 2;
    c.n_ctx = 512;
    c.n_threads = 1;
    c.ignore_eos = 1;
    c.no_local_fallback = 1;
    hinge_session *s = NULL;
    d->st = hinge_session_create(d->w->m, &c, &s);
    /* until told to stop; a full context ends the call early, then again */
    while (d->st == HINGE_OK && !atomic_load(&d->stop)) {
        d->st = hinge_generate(s, "Once upon a time", 480, decode_cb, d);
        if (d->st == HINGE_OK && !atomic_load(&d->stop))
            d->st = hinge_session_reset(s);
    }
    if (d->st != HINGE_OK)
        snprintf(d->err, sizeof d->err, "%s", hinge_last_error());
    hinge_session_free(s);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_prefill_chunked_among_decodes(void **state)
{
    world *w = *state;
    if (!w->edge_up)
        skip();
    char *before = malloc(METRICS_MAX), *mid = malloc(METRICS_MAX), *after = malloc(METRICS_MAX);
    static decoder d;
    static double gaps[GAPS_MAX];
    assert_true(before && mid && after);
    d = (decoder){.w = w};
    get_metrics(w, before);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, decode_main, &d), 0);
    for (int i = 0; i < 2000 && atomic_load(&d.tokens) < 8; i++) /* decoding is under way */
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    assert_true(atomic_load(&d.tokens) >= 8);

    /* 512 positions in one request (max_step 512): the edge cuts them up.
     * Whether a decode step lands between two chunks depends on the OS
     * scheduling the decode thread in time: up to 3 tries. */
    static int32_t toks[LONG_PROMPT];
    for (int i = 0; i < LONG_PROMPT; i++)
        toks[i] = i == 0 ? 1 : 3 + (i * 37) % 500;
    int tok_during = 0, tries = 0;
    double t0 = 0, t1 = 0, mixed = 0;
    hinge_step_info info;
    for (; tries < 3 && (mixed < 1 || tok_during < 1); tries++) {
        hinge_session_config c;
        hinge_session_config_init(&c);
        c.edge_url = w->edge.url;
        c.cut = 1;
        c.n_ctx = LONG_PROMPT;
        c.n_threads = 1;
        c.max_step = LONG_PROMPT;
        c.no_local_fallback = 1;
        hinge_session *s = NULL;
        assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_OK);
        get_metrics(w, mid);
        int tok_before = atomic_load(&d.tokens);
        t0 = now_ms();
        int32_t next = -1;
        hinge_status st = hinge_session_step(s, toks, LONG_PROMPT, &next, &info);
        t1 = now_ms();
        tok_during = atomic_load(&d.tokens) - tok_before;
        if (st != HINGE_OK)
            fail_msg("the 512-position step: %s: %s", hinge_strerror(st), hinge_last_error());
        assert_true(next >= 0);
        hinge_session_free(s);
        get_metrics(w, after);
        mixed = metric(after, "hinge_edge_mixed_batches_total") - metric(mid, "hinge_edge_mixed_batches_total");
    }
    atomic_store(&d.stop, 1);
    pthread_join(th, NULL);
    if (d.st != HINGE_OK && d.st != HINGE_CANCELLED)
        fail_msg("the decode session: %s: %s", hinge_strerror(d.st), d.err);
    get_metrics(w, after);

    /* what the decode session saw (printed, not asserted) */
    int n = atomic_load(&d.tokens) < GAPS_MAX ? atomic_load(&d.tokens) : GAPS_MAX, ng = 0;
    double worst_during = 0;
    for (int i = 1; i < n; i++) {
        gaps[ng++] = d.t[i] - d.t[i - 1];
        if (d.t[i] >= t0 && d.t[i - 1] <= t1)
            worst_during = d.t[i] - d.t[i - 1] > worst_during ? d.t[i] - d.t[i - 1] : worst_during;
    }
    qsort(gaps, (size_t)ng, sizeof *gaps, cmp_double);
    print_message("512-position prefill: %.1f ms at the client (edge %.1f ms); the decode session got %d tokens "
                  "meanwhile; its gaps: p50 %.2f ms, p99 %.2f ms, worst during the prefill %.2f ms\n",
                  t1 - t0, info.edge_ms, tok_during, gaps[ng / 2], gaps[ng * 99 / 100], worst_during);

    /* structure: chunks, decode steps between them, no decode step behind more than the batch in flight */
    double chunks = metric(after, "hinge_edge_prefill_chunks_total") - metric(before, "hinge_edge_prefill_chunks_total");
    double prefill = metric(after, "hinge_edge_prefill_positions_total") -
                     metric(before, "hinge_edge_prefill_positions_total");
    double waits = metric(after, "hinge_edge_decode_wait_batches_count") -
                   metric(before, "hinge_edge_decode_wait_batches_count");
    double no_wait = metric(after, "hinge_edge_decode_wait_batches_bucket{le=\"0\"}") -
                     metric(before, "hinge_edge_decode_wait_batches_bucket{le=\"0\"}");
    /* a step queued between the worker's gathering and its next batch's start waits for that one batch too */
    double short_wait = metric(after, "hinge_edge_decode_wait_batches_bucket{le=\"1\"}") -
                        metric(before, "hinge_edge_decode_wait_batches_bucket{le=\"1\"}");
    double rows_max = metric(after, "hinge_edge_batch_rows_bucket{le=\"128\"}") -
                      metric(before, "hinge_edge_batch_rows_bucket{le=\"128\"}");
    double batches = metric(after, "hinge_edge_batch_rows_count") - metric(before, "hinge_edge_batch_rows_count");
    print_message("edge: %.0f prefill positions in %.0f chunks (%d tries), %.0f batches with decode steps and prefill "
                  "rows in the last, %.0f of %.0f decode steps ran in the first batch after they arrived\n",
                  prefill, chunks, tries, mixed, no_wait, waits);
    assert_true(metric(after, "hinge_edge_prefill_chunk_positions") == CHUNK);
    assert_true(prefill >= tries * LONG_PROMPT + 4); /* the long steps, and the decode session's prompt */
    assert_true(chunks >= tries * LONG_PROMPT / CHUNK);
    assert_true(rows_max == batches); /* no batch over one chunk plus the decode steps */
    assert_true(waits > 0 && short_wait == waits && no_wait > 0);
    assert_true(mixed >= 1); /* decode steps ran between the chunks */
    assert_true(tok_during >= 1);
    free(before);
    free(mid);
    free(after);
}

/* ---- Gemma ---- */

static const char *gemma_path(void)
{
    static char path[4096];
    const char *env = getenv("HINGE_GEMMA_MODEL");
    if (env && *env)
        return env;
    snprintf(path, sizeof path, "%s/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf", getenv("HOME") ? getenv("HOME") : ".");
    return path;
}

static void test_gemma_concurrent(void **state)
{
    world *w = *state;
    const char *bin = getenv("HINGE_EDGE_BIN");
    FILE *fp = fopen(gemma_path(), "rb");
    if (fp)
        fclose(fp);
    if (!bin || !fp)
        skip();
    enum { N = 8 };
    static const int cuts[N] = {6, 1, 9, 17, 6, 12, 3, 18};
    static const char *const gp[N] = {"The capital of France is", "Once upon a time", "The best way to learn",
                                      "Water boils at", "The capital of France is", "In 1969,", "My favourite food",
                                      "The sun"};
    hinge_model *m = NULL;
    assert_int_equal(hinge_model_load(gemma_path(), &m), HINGE_OK);
    static edge_proc ge;
    const char *const extra[] = {"--threads", "2", "--max-sessions", "8", "--max-ctx", "512", "--no-measure", NULL};
    assert_int_equal(edge_proc_start(&ge, bin, gemma_path(), false, extra), 0);
    static gen g[N];
    static text alone[N];
    for (int i = 0; i < N; i++) {
        g[i] = (gen){.w = w, .m = m, .url = ge.url, .cut = cuts[i], .prompt = gp[i], .n_new = 10};
        alone[i] = (text){0};
        hinge_session_config c;
        hinge_session_config_init(&c);
        c.cut = cuts[i];
        c.n_ctx = 512;
        c.n_threads = 2;
        hinge_session *s = NULL;
        assert_int_equal(hinge_session_create(m, &c, &s), HINGE_OK);
        assert_int_equal(hinge_generate(s, gp[i], 10, collect, &alone[i]), HINGE_OK);
        hinge_session_free(s);
    }
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&th[i], NULL, gen_main, &g[i]), 0);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    char *doc = malloc(METRICS_MAX);
    assert_non_null(doc);
    assert_int_equal(edge_req(&ge, "GET", "/metrics", NULL, 0, 0, doc, METRICS_MAX), 200);
    double batches = metric(doc, "hinge_edge_batch_size_count"), sessions = metric(doc, "hinge_edge_batch_size_sum");
    assert_int_equal(edge_proc_stop(&ge), 0);
    edge_proc_cleanup(&ge);
    for (int i = 0; i < N; i++) {
        if (g[i].st != HINGE_OK)
            fail_msg("gemma generation %d (cut %d): %s: %s", i, g[i].cut, hinge_strerror(g[i].st), g[i].err);
        if (strcmp(g[i].got.buf, alone[i].buf) != 0)
            fail_msg("gemma generation %d (cut %d): split \"%s\", alone \"%s\"", i, g[i].cut, g[i].got.buf,
                     alone[i].buf);
    }
    print_message("8 Gemma generations at cuts 1..18: all equal alone (\"%s\" ...); %.0f batched steps of %.2f "
                  "sessions on average\n",
                  alone[0].buf, batches, sessions / batches);
    free(doc);
    hinge_model_free(m);
}

/* ---- a full edge ---- */

static size_t on_header(char *buf, size_t size, size_t n, void *user)
{
    if (size * n >= 12 && strncasecmp(buf, "retry-after:", 12) == 0)
        *(bool *)user = true;
    return size * n;
}

static size_t on_body(char *buf, size_t size, size_t n, void *user)
{
    (void)buf, (void)user;
    return size * n;
}

/* POST body to /v1/sessions: the status, whether Retry-After came. */
static long post_session(world *w, const char *body, bool *retry_after)
{
    char url[128];
    snprintf(url, sizeof url, "%s/v1/sessions", w->edge.url);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    *retry_after = false;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, retry_after);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    long http = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_cleanup(c);
    return http;
}

static void test_full_edge_says_retry_after(void **state)
{
    world *w = *state;
    if (!w->edge_up)
        skip();
    char sha[65], body[256], resp[512], path[160];
    static char ids[64][40];
    assert_int_equal(hinge_model_sha256(w->m, sha), HINGE_OK);
    snprintf(body, sizeof body, "{\"model_sha256\":\"%s\",\"cut\":1,\"codec\":\"f32\",\"ctx\":8}", sha);
    int n = 0;
    for (; n < 64; n++) {
        if (edge_req(&w->edge, "POST", "/v1/sessions", body, strlen(body), 0, resp, sizeof resp) != 201)
            break;
        json_t *j = json_loads(resp, 0, NULL);
        const char *id = json_string_value(json_object_get(j, "id"));
        assert_non_null(id);
        snprintf(ids[n], sizeof ids[n], "%s", id);
        json_decref(j);
    }
    assert_true(n > 0 && n < 64);
    bool retry_after = false;
    assert_int_equal(post_session(w, body, &retry_after), 503);
    assert_true(retry_after);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "/v1/sessions/%.32s", ids[i]);
        assert_int_equal(edge_req(&w->edge, "DELETE", path, NULL, 0, 0, resp, sizeof resp), 204);
    }
    assert_int_equal(post_session(w, body, &retry_after), 201);
    assert_false(retry_after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_mixed_cuts),
        cmocka_unit_test(test_prefill_chunked_among_decodes),
        cmocka_unit_test(test_full_edge_says_retry_after),
        cmocka_unit_test(test_gemma_concurrent),
    };
    return cmocka_run_group_tests_name("edge batching", tests, setup, teardown);
}
