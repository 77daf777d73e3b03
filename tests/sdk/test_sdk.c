/* libhinge through its public header only: what an app sees.
 *
 *   - local and split generation of stories260K equal the oracle;
 *   - a conversation continues across calls; the token-level calls agree
 *     with hinge_generate;
 *   - hinge_cancel from another thread stops within one step and leaves the
 *     session usable;
 *   - bad arguments and bad files give a status and a message;
 *   - four threads, each with its own session on one shared model, give the
 *     oracle (also run under ThreadSanitizer in CI).
 * The split cases start a real hinge-edge on 127.0.0.1 (TLS, a certificate
 * made at test time); HINGE_EDGE_BIN names it. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <hinge/hinge.h>

#include "edge_proc.h"

#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"
#define ORACLE HINGE_SHARED_DIR "/oracles/stories260K-greedy-200.txt"

enum { TEXT_CAP = 1 << 16, N_THREADS = 4 };

typedef struct text {
    char buf[TEXT_CAP];
    size_t len;
    int stop_after; /* > 0: the callback asks to stop after this many pieces */
    int pieces;
} text;

static int collect(const char *piece, size_t len, void *user)
{
    text *t = user;
    if (t->len + len < sizeof t->buf) {
        memcpy(t->buf + t->len, piece, len);
        t->len += len;
        t->buf[t->len] = '\0';
    }
    t->pieces++;
    return t->stop_after > 0 && t->pieces >= t->stop_after;
}

static char oracle[TEXT_CAP];

/* a's text then b's is the oracle */
static void assert_joined(const text *a, const text *b)
{
    size_t n = strlen(oracle);
    assert_int_equal(a->len + b->len, n);
    assert_memory_equal(a->buf, oracle, a->len);
    assert_memory_equal(b->buf, oracle + a->len, b->len);
}

static void read_oracle(void)
{
    FILE *f = fopen(ORACLE, "rb");
    assert_non_null(f);
    size_t n = fread(oracle, 1, sizeof oracle - 1, f);
    oracle[n] = '\0';
    fclose(f);
    assert_true(n > 100);
}

typedef struct world {
    hinge_model *m;
    edge_proc edge;
    bool edge_up;
} world;

static int setup(void **state)
{
    static world w;
    read_oracle();
    if (hinge_model_load(STORIES, &w.m) != HINGE_OK) {
        fprintf(stderr, "cannot load %s: %s\n", STORIES, hinge_last_error());
        return -1;
    }
    const char *bin = getenv("HINGE_EDGE_BIN");
    if (bin && edge_proc_cert(&w.edge) == 0 &&
        edge_proc_start(&w.edge, bin, STORIES, true, (const char *const[]){"--threads", "1", NULL}) == 0)
        w.edge_up = true;
    *state = &w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    if (w->edge_up)
        edge_proc_stop(&w->edge);
    edge_proc_cleanup(&w->edge);
    hinge_model_free(w->m);
    return 0;
}

static hinge_session *open_session(world *w, const char *edge_url, int cut, int threads)
{
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.edge_url = edge_url;
    c.ca_file = edge_url ? w->edge.cacert : NULL;
    c.cut = cut;
    c.n_ctx = 256;
    c.n_threads = threads;
    hinge_session *s = NULL;
    hinge_status st = hinge_session_create(w->m, &c, &s);
    if (st != HINGE_OK)
        fail_msg("hinge_session_create: %s: %s", hinge_strerror(st), hinge_last_error());
    return s;
}

static void test_version_and_strings(void **state)
{
    (void)state;
    assert_string_equal(hinge_version(), "0.2.0");
    assert_string_equal(hinge_strerror(HINGE_OK), "success");
    assert_string_equal(hinge_strerror(HINGE_CANCELLED), "cancelled");
    assert_non_null(hinge_strerror((hinge_status)-999));
    assert_non_null(hinge_last_error());
}

static void test_local_oracle(void **state)
{
    world *w = *state;
    hinge_session *s = open_session(w, NULL, HINGE_CUT_ALL, 2);
    static text t;
    t = (text){0};
    assert_int_equal(hinge_generate(s, "", 200, collect, &t), HINGE_OK);
    assert_string_equal(t.buf, oracle);
    hinge_stats st;
    hinge_session_get_stats(s, &st);
    assert_int_equal(st.generated_tokens, 200);
    assert_int_equal(st.prompt_tokens, 1);
    assert_int_equal(st.stop, HINGE_STOP_LENGTH);
    assert_int_equal(st.cut, 5);
    assert_int_equal(st.remote, 0);
    assert_true(hinge_session_memory(s) > 0);
    hinge_session_free(s);
}

/* The device's layers on this side, the rest in-process: every cut gives the oracle. */
static void test_local_every_cut(void **state)
{
    world *w = *state;
    for (int k = 0; k <= 5; k++) {
        hinge_session *s = open_session(w, NULL, k, 1);
        static text t;
        t = (text){0};
        assert_int_equal(hinge_generate(s, "", 200, collect, &t), HINGE_OK);
        assert_string_equal(t.buf, oracle);
        hinge_session_free(s);
    }
}

static void test_split_oracle(void **state)
{
    world *w = *state;
    if (!w->edge_up)
        skip();
    for (int k = 0; k <= 5; k += 1) {
        hinge_session *s = open_session(w, w->edge.url, k, 1);
        static text t;
        t = (text){0};
        hinge_status st = hinge_generate(s, "", 200, collect, &t);
        if (st != HINGE_OK)
            fail_msg("k=%d: %s: %s", k, hinge_strerror(st), hinge_last_error());
        assert_string_equal(t.buf, oracle);
        hinge_stats stats;
        hinge_session_get_stats(s, &stats);
        assert_int_equal(stats.remote, 1);
        assert_int_equal(stats.cut, k);
        assert_int_equal(stats.connects, 1);
        assert_int_equal(stats.tls_handshakes, 1);
        assert_true(stats.uplink_bytes > 0);
        /* the edge computes the logits: not available here */
        float logit;
        assert_int_equal(hinge_session_logits(s, 0, 1, &logit), HINGE_ERR_UNSUPPORTED);
        hinge_session_free(s);
    }
}

/* One greedy step of token *tok: the session's logits must have the sampled
 * token as their argmax; its piece goes to t; *prev and *tok move on. */
static void step_argmax(world *w, hinge_session *s, int32_t *tok, int32_t *prev, float *logits, uint32_t n_vocab,
                        text *t, hinge_step_info *info)
{
    int32_t next = -1;
    assert_int_equal(hinge_session_step(s, tok, 1, &next, info), HINGE_OK);
    assert_int_equal(info->token, next);
    assert_int_equal(hinge_session_logits(s, 0, 1, logits), HINGE_OK);
    int32_t best = 0;
    for (uint32_t v = 1; v < n_vocab; v++)
        if (logits[v] > logits[best])
            best = (int32_t)v;
    assert_int_equal(best, next); /* greedy: the argmax */
    char piece[64];
    size_t len;
    assert_int_equal(hinge_token_to_piece(w->m, *prev, next, piece, sizeof piece, &len), HINGE_OK);
    collect(piece, len, t);
    *prev = *tok = next;
}

/* A private head over the edge: the logits are this device's again (its
 * head), greedy picks their argmax, the text is the oracle's; configs that
 * cannot have one are refused. */
static void test_private_head(void **state)
{
    world *w = *state;
    if (!w->edge_up)
        skip();
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.edge_url = w->edge.url;
    c.ca_file = w->edge.cacert;
    c.cut = 2;
    c.private_head = 2;
    c.n_ctx = 256;
    c.n_threads = 1;
    hinge_session *s = NULL;
    assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_OK);
    hinge_model_info mi;
    hinge_model_get_info(w->m, &mi);
    float *logits = malloc(mi.n_vocab * sizeof(float));
    assert_non_null(logits);
    static text t;
    t = (text){0};
    int32_t tok = mi.bos, prev = mi.bos;
    for (int i = 0; i < 200; i++) {
        hinge_step_info info;
        step_argmax(w, s, &tok, &prev, logits, mi.n_vocab, &t, &info);
        assert_true(info.downlink_bytes >= 32 + 64 * 4); /* a frame of one f32 row came back */
    }
    assert_string_equal(t.buf, oracle);
    hinge_stats stats;
    hinge_session_get_stats(s, &stats);
    assert_int_equal(stats.remote, 1);
    hinge_session_free(s);
    free(logits);
    /* no room for it, the whole model here, speculation: refused */
    static const struct { int cut; uint32_t j, spec; } bad[] = {{4, 2, 0}, {0, 5, 0}, {HINGE_CUT_ALL, 1, 0}, {2, 2, 3}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c.cut = bad[i].cut;
        c.private_head = bad[i].j;
        c.speculate = bad[i].spec;
        c.edge_url = bad[i].cut == HINGE_CUT_ALL ? NULL : w->edge.url;
        s = NULL;
        assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_ERR_INVALID);
        assert_null(s);
    }
}

/* Two calls continue one conversation: the text equals one long call. */
static void test_conversation_continues(void **state)
{
    world *w = *state;
    hinge_session *s = open_session(w, NULL, 2, 1);
    static text a, b;
    a = (text){0};
    b = (text){0};
    assert_int_equal(hinge_generate(s, "", 80, collect, &a), HINGE_OK);
    assert_int_equal(hinge_generate(s, "", 120, collect, &b), HINGE_OK);
    assert_joined(&a, &b);
    assert_int_equal(hinge_session_position(s), 200);
    /* reset: from the start again */
    assert_int_equal(hinge_session_reset(s), HINGE_OK);
    a = (text){0};
    assert_int_equal(hinge_generate(s, "", 200, collect, &a), HINGE_OK);
    assert_string_equal(a.buf, oracle);
    /* the callback stops the generation; the next call carries on */
    assert_int_equal(hinge_session_reset(s), HINGE_OK);
    a = (text){.stop_after = 50};
    b = (text){0};
    assert_int_equal(hinge_generate(s, "", 200, collect, &a), HINGE_OK);
    hinge_stats st;
    hinge_session_get_stats(s, &st);
    assert_int_equal(st.stop, HINGE_STOP_CALLBACK);
    assert_int_equal(a.pieces, 50);
    assert_int_equal(hinge_generate(s, "", 150, collect, &b), HINGE_OK);
    assert_joined(&a, &b);
    hinge_session_free(s);
}

/* hinge_session_step and the logits agree with hinge_generate. */
static void test_token_level(void **state)
{
    world *w = *state;
    hinge_model_info mi;
    hinge_model_get_info(w->m, &mi);
    assert_int_equal(mi.n_layer, 5);
    assert_int_equal(mi.n_embd, 64);
    assert_int_equal(mi.n_vocab, 512);
    hinge_session *s = open_session(w, NULL, 3, 1);
    int32_t tok = mi.bos;
    static text t;
    t = (text){0};
    float *logits = malloc(mi.n_vocab * sizeof(float));
    assert_non_null(logits);
    int32_t prev = mi.bos;
    for (int i = 0; i < 200; i++) {
        hinge_step_info info;
        step_argmax(w, s, &tok, &prev, logits, mi.n_vocab, &t, &info);
        assert_int_equal(info.pos, (uint32_t)i);
    }
    assert_string_equal(t.buf, oracle);
    assert_int_equal(hinge_session_logits(s, 1, 1, logits), HINGE_ERR_RANGE);
    /* tokenizer round trip */
    int32_t ids[64];
    size_t n = 0;
    assert_int_equal(hinge_tokenize(w->m, "Once upon a time", 16, 1, ids, 64, &n), HINGE_OK);
    assert_int_equal(ids[0], mi.bos);
    assert_true(n > 2);
    assert_int_equal(hinge_tokenize(w->m, "Once upon a time", 16, 1, ids, 2, &n), HINGE_ERR_RANGE);
    free(logits);
    hinge_session_free(s);
}

/* ---- cancel ---- */

typedef struct cancel_run {
    hinge_session *s;
    text t;
    hinge_status st;
    atomic_int pieces; /* shown so far: the cancelling thread reads it */
} cancel_run;

static int slow_collect(const char *piece, size_t len, void *user)
{
    cancel_run *r = user;
    atomic_fetch_add(&r->pieces, 1);
    struct timespec ts = {0, 2000000}; /* 2 ms a token: the canceller surely lands mid-generation */
    nanosleep(&ts, NULL);
    return collect(piece, len, &r->t);
}

static void *gen_thread(void *arg)
{
    cancel_run *r = arg;
    r->st = hinge_generate(r->s, "", 200, slow_collect, r);
    return NULL;
}

static void test_cancel_from_another_thread(void **state)
{
    world *w = *state;
    static cancel_run r;
    r = (cancel_run){.s = open_session(w, NULL, 2, 1)};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, gen_thread, &r), 0);
    for (int i = 0; i < 5000 && atomic_load(&r.pieces) == 0; i++)
        usleep(1000);
    usleep(20000);
    hinge_cancel(r.s);
    /* not hinge_session_position: only hinge_cancel may touch a session
     * another thread is using */
    uint32_t at_cancel = (uint32_t)atomic_load(&r.pieces);
    pthread_join(th, NULL);
    assert_int_equal(r.st, HINGE_CANCELLED);
    hinge_stats st;
    hinge_session_get_stats(r.s, &st);
    assert_int_equal(st.stop, HINGE_STOP_CANCELLED);
    assert_true(st.generated_tokens < 200);
    /* within one step: at most one more token after the request */
    assert_true(st.generated_tokens <= at_cancel + 1);
    /* the text so far is the oracle's start, and the session goes on where it stopped */
    assert_memory_equal(r.t.buf, oracle, r.t.len);
    static text rest;
    rest = (text){0};
    assert_int_equal(hinge_generate(r.s, "", 200 - (int)st.generated_tokens, collect, &rest), HINGE_OK);
    assert_joined(&r.t, &rest);
    /* a cancel with nothing running stops the next call, once */
    hinge_cancel(r.s);
    assert_int_equal(hinge_generate(r.s, "", 5, NULL, NULL), HINGE_CANCELLED);
    assert_int_equal(hinge_session_reset(r.s), HINGE_OK);
    assert_int_equal(hinge_generate(r.s, "", 5, NULL, NULL), HINGE_OK);
    hinge_session_free(r.s);
}

/* ---- bad input ---- */

static void test_bad_arguments(void **state)
{
    world *w = *state;
    hinge_model *m = NULL;
    assert_int_equal(hinge_model_load(NULL, &m), HINGE_ERR_INVALID);
    assert_true(strlen(hinge_last_error()) > 0);
    assert_int_equal(hinge_model_load(STORIES, NULL), HINGE_ERR_INVALID);
    assert_int_equal(hinge_model_load("/nonexistent/model.gguf", &m), HINGE_ERR_IO);
    assert_non_null(strstr(hinge_last_error(), "/nonexistent/model.gguf"));
    assert_null(m);
    hinge_model_free(NULL);
    hinge_session_free(NULL);
    hinge_cancel(NULL);

    hinge_session_config c;
    hinge_session *s = NULL;
    hinge_session_config_init(&c);
    assert_int_equal(hinge_session_create(NULL, &c, &s), HINGE_ERR_INVALID);
    assert_int_equal(hinge_session_create(w->m, &c, NULL), HINGE_ERR_INVALID);
    c.cut = 6;
    assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_ERR_INVALID);
    assert_non_null(strstr(hinge_last_error(), "cut 6"));
    hinge_session_config_init(&c);
    c.edge_url = "https://127.0.0.1:1";
    assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_ERR_INVALID); /* an edge needs a cut */
    hinge_session_config_init(&c);
    c.cut = 1;
    c.min_cut = 2;
    assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_ERR_INVALID); /* under the privacy floor */
    hinge_session_config_init(&c);
    c.n_ctx = 1u << 30;
    assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_ERR_INVALID);
    hinge_session_config_init(&c);
    c.temperature = -1.0f;
    assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_ERR_INVALID);
    hinge_session_config_init(&c);
    c.size = 3;
    assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_ERR_INVALID);
    assert_null(s);
    hinge_session_config_init(&c);
    c.cut = 2;
    c.edge_url = "ftp://127.0.0.1:1";
    assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_ERR_INVALID);
    c.edge_url = "https://127.0.0.1:1"; /* nobody listens on port 1 */
    assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_ERR_NETWORK);
    assert_null(s);

    hinge_session_config_init(&c);
    c.mem_limit = 1000; /* less than the weights of stories260K's layers */
    assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_ERR_NOMEM);
    assert_non_null(strstr(hinge_last_error(), "mem_limit"));
    assert_null(s);

    hinge_session_config_init(&c);
    c.n_ctx = 16;
    assert_int_equal(hinge_session_create(w->m, &c, &s), HINGE_OK);
    assert_int_equal(hinge_generate(NULL, "", 1, NULL, NULL), HINGE_ERR_INVALID);
    assert_int_equal(hinge_generate(s, NULL, 1, NULL, NULL), HINGE_ERR_INVALID);
    assert_int_equal(hinge_generate(s, "", -1, NULL, NULL), HINGE_ERR_INVALID);
    /* a prompt longer than the context */
    char long_prompt[400];
    for (size_t i = 0; i + 1 < sizeof long_prompt; i++)
        long_prompt[i] = i % 5 == 4 ? ' ' : 'a' + (char)(i % 7);
    long_prompt[sizeof long_prompt - 1] = '\0';
    assert_int_equal(hinge_generate(s, long_prompt, 1, NULL, NULL), HINGE_ERR_RANGE);
    /* the context fills: a clean stop, not an error */
    static text t;
    t = (text){0};
    assert_int_equal(hinge_generate(s, "", 100, collect, &t), HINGE_OK);
    hinge_stats st;
    hinge_session_get_stats(s, &st);
    assert_int_equal(st.stop, HINGE_STOP_CONTEXT);
    assert_int_equal(st.generated_tokens, 16);
    int32_t bad = 100000, next;
    assert_int_equal(hinge_session_reset(s), HINGE_OK);
    assert_int_equal(hinge_session_step(s, &bad, 1, &next, NULL), HINGE_ERR_RANGE);
    char piece[8];
    size_t len;
    assert_int_equal(hinge_token_to_piece(w->m, -1, 100000, piece, sizeof piece, &len), HINGE_ERR_RANGE);
    hinge_session_free(s);
}

static void test_bad_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/hinge-sdk-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/bad.gguf", dir);
    /* truncated copies of a real model, and garbage */
    FILE *in = fopen(STORIES, "rb");
    assert_non_null(in);
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    const size_t cuts[] = {0, 3, 4, 24, 100, 1000, 5000, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fwrite(buf, 1, cuts[i], f);
        fclose(f);
        hinge_model *m = NULL;
        hinge_status st = hinge_model_load(path, &m);
        assert_true(st == HINGE_ERR_FORMAT || st == HINGE_ERR_IO);
        assert_null(m);
        assert_true(strlen(hinge_last_error()) > 0);
    }
    memset(buf, 0x5a, 4096);
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, 4096, f);
    fclose(f);
    hinge_model *m = NULL;
    assert_int_equal(hinge_model_load(path, &m), HINGE_ERR_FORMAT);
    unlink(path);
    rmdir(dir);
}

/* ---- threads ---- */

typedef struct thread_run {
    world *w;
    text t;
    hinge_status st;
    const char *edge_url;
    int cut;
} thread_run;

static void *thread_main(void *arg)
{
    thread_run *r = arg;
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.n_ctx = 200;
    c.n_threads = 1;
    c.cut = r->cut;
    c.edge_url = r->edge_url;
    c.ca_file = r->edge_url ? r->w->edge.cacert : NULL;
    hinge_session *s = NULL;
    r->st = hinge_session_create(r->w->m, &c, &s);
    if (r->st == HINGE_OK)
        r->st = hinge_generate(s, "", 200, collect, &r->t);
    hinge_session_free(s);
    return NULL;
}

static void run_threads(world *w, bool split)
{
    static thread_run runs[N_THREADS];
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        runs[i] = (thread_run){.w = w, .cut = split ? i + 1 : (i % 2 ? HINGE_CUT_ALL : i),
                               .edge_url = split ? w->edge.url : NULL};
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &runs[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N_THREADS; i++) {
        if (runs[i].st != HINGE_OK)
            fail_msg("thread %d: %s", i, hinge_strerror(runs[i].st));
        assert_string_equal(runs[i].t.buf, oracle);
    }
}

static void test_four_threads_one_model(void **state) { run_threads(*state, false); }

static void test_four_threads_split(void **state)
{
    world *w = *state;
    if (!w->edge_up)
        skip();
    run_threads(w, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_and_strings),
        cmocka_unit_test(test_local_oracle),
        cmocka_unit_test(test_local_every_cut),
        cmocka_unit_test(test_split_oracle),
        cmocka_unit_test(test_private_head),
        cmocka_unit_test(test_conversation_continues),
        cmocka_unit_test(test_token_level),
        cmocka_unit_test(test_cancel_from_another_thread),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_four_threads_one_model),
        cmocka_unit_test(test_four_threads_split),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
