/* Never lose a token: a split generation whose edge dies, stalls, drains or
 * restarts mid-generation still gives exactly the text of an uninterrupted
 * run, through libhinge's public API. Real hinge-edge processes on
 * 127.0.0.1 (h2c: one certificate authority per edge would only add set-up);
 * HINGE_EDGE_BIN names the program. Every wait is bounded. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
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

enum { TEXT_CAP = 1 << 15, N_TOKENS = 160, FAULT_AT = 60 };

typedef enum fault { F_KILL, F_STOP, F_TERM, F_RESTART } fault;

typedef struct run {
    char text[TEXT_CAP];
    size_t len;
    int pieces;
    edge_proc *victim;  /* the edge the fault hits after FAULT_AT pieces; NULL: none */
    fault what;
    const char *edge_bin;
    double last_s, max_gap_s; /* the longest wait between two pieces */
} run;

static hinge_model *model;
static const char *edge_bin;
static uint32_t private_head; /* of every generation while a test sets it */

static int setup(void **state)
{
    (void)state;
    edge_bin = getenv("HINGE_EDGE_BIN");
    if (hinge_model_load(STORIES, &model) != HINGE_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hinge_model_free(model);
    return 0;
}

static void start(edge_proc *p, const char *port)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(edge_proc_cert(p), 0);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%s", port ? port : "0");
    const char *extra[] = {"--threads", "1", "--listen", listen, NULL};
    assert_int_equal(edge_proc_start(p, edge_bin, STORIES, false, extra), 0);
}

static void finish(edge_proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGCONT);
        kill(p->pid, SIGKILL);
        edge_proc_stop(p);
    }
    edge_proc_cleanup(p);
}

static void inject(run *r)
{
    edge_proc *v = r->victim;
    char port[16];
    switch (r->what) {
    case F_KILL: kill(v->pid, SIGKILL); break;
    case F_STOP: kill(v->pid, SIGSTOP); break;
    case F_TERM: kill(v->pid, SIGTERM); break;
    case F_RESTART: /* the same address, a new process: the client resumes there */
        snprintf(port, sizeof port, "%d", v->port);
        kill(v->pid, SIGKILL);
        edge_proc_stop(v);
        edge_proc_cleanup(v);
        for (int i = 0; i < 50; i++) { /* the port may linger for a moment */
            char listen[64];
            snprintf(listen, sizeof listen, "127.0.0.1:%s", port);
            memset(v, 0, sizeof *v);
            if (edge_proc_cert(v) == 0 &&
                edge_proc_start(v, r->edge_bin, STORIES, false,
                                (const char *const[]){"--threads", "1", "--listen", listen, NULL}) == 0)
                break;
            edge_proc_cleanup(v);
            usleep(100000);
        }
        break;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int on_piece(const char *piece, size_t len, void *user)
{
    run *r = user;
    double t = now_s();
    if (r->last_s > 0.0 && t - r->last_s > r->max_gap_s)
        r->max_gap_s = t - r->last_s;
    r->last_s = t;
    if (r->len + len < sizeof r->text) {
        memcpy(r->text + r->len, piece, len);
        r->len += len;
        r->text[r->len] = '\0';
    }
    if (++r->pieces == FAULT_AT && r->victim)
        inject(r);
    return 0;
}

typedef struct opts {
    const char *edge, *fallback;
    hinge_wire wire;
    float temp;
    int no_local;
} opts;

static hinge_status generate(const opts *o, run *r, hinge_stats *st)
{
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.edge_url = o->edge;
    c.fallback_edges = o->fallback ? &o->fallback : NULL;
    c.n_fallback_edges = o->fallback ? 1 : 0;
    c.cut = o->edge ? 2 : HINGE_CUT_ALL;
    c.wire = o->wire;
    c.temperature = o->temp;
    c.seed = 11;
    c.n_ctx = N_TOKENS + 1;
    c.n_threads = 1;
    c.no_local_fallback = o->no_local;
    c.private_head = private_head;
    hinge_session *s = NULL;
    hinge_status rc = hinge_session_create(model, &c, &s);
    if (rc == HINGE_OK)
        rc = hinge_generate(s, "", N_TOKENS, on_piece, r);
    if (rc == HINGE_OK)
        hinge_session_get_stats(s, st);
    else
        fprintf(stderr, "generation: %s: %s\n", hinge_strerror(rc), hinge_last_error());
    hinge_session_free(s);
    return rc;
}

/* The uninterrupted split run of the same settings. */
static void reference(hinge_wire wire, float temp, run *ref)
{
    edge_proc e;
    start(&e, NULL);
    hinge_stats st;
    *ref = (run){0};
    opts o = {.edge = e.url, .wire = wire, .temp = temp};
    assert_int_equal(generate(&o, ref, &st), HINGE_OK);
    assert_int_equal(st.recoveries, 0);
    assert_int_equal(st.generated_tokens, N_TOKENS);
    finish(&e);
}

/* A fault on the first edge; the second (if any) takes over. */
static void faulted(fault what, bool second, hinge_wire wire, float temp, hinge_stats *st, run *r)
{
    edge_proc a, b = {0};
    start(&a, NULL);
    if (second)
        start(&b, NULL);
    *r = (run){.victim = &a, .what = what, .edge_bin = edge_bin};
    opts o = {.edge = a.url, .fallback = second ? b.url : NULL, .wire = wire, .temp = temp};
    assert_int_equal(generate(&o, r, st), HINGE_OK);
    finish(&a);
    if (second)
        finish(&b);
}

static void test_kill_with_a_second_edge(void **state)
{
    (void)state;
    static run ref, r;
    hinge_stats st;
    for (hinge_wire w = HINGE_WIRE_F32; w <= HINGE_WIRE_F16; w++) {
        reference(w, 0.0f, &ref);
        faulted(F_KILL, true, w, 0.0f, &st, &r);
        assert_string_equal(r.text, ref.text);
        assert_int_equal(st.recoveries, 1);
        assert_int_equal(st.local_fallbacks, 0);
        assert_int_equal(st.edge_index, 1);
        assert_int_equal(st.remote, 1);
        assert_true(st.replayed_positions >= FAULT_AT);
    }
    /* seeded sampling: the second edge's sampler goes on with the first's stream */
    reference(HINGE_WIRE_F32, 0.9f, &ref);
    faulted(F_KILL, true, HINGE_WIRE_F32, 0.9f, &st, &r);
    assert_string_equal(r.text, ref.text);
    assert_int_equal(st.edge_index, 1);
}

static void test_stalled_edge(void **state)
{
    (void)state;
    static run ref, r;
    hinge_stats st;
    reference(HINGE_WIRE_F32, 0.0f, &ref);
    faulted(F_STOP, true, HINGE_WIRE_F32, 0.0f, &st, &r);
    assert_string_equal(r.text, ref.text);
    assert_int_equal(st.recoveries, 1);
    assert_int_equal(st.edge_index, 1);
    /* bounded: the stall costs the derived step deadline (10x a decode
     * step + 1 s), not the 30 s timeout */
    fprintf(stderr, "stall: longest gap between tokens %.2f s\n", r.max_gap_s);
    assert_true(r.max_gap_s < 6.0);
}

static void test_drained_edge(void **state)
{
    (void)state;
    static run ref, r;
    hinge_stats st;
    reference(HINGE_WIRE_F32, 0.0f, &ref);
    faulted(F_TERM, true, HINGE_WIRE_F32, 0.0f, &st, &r);
    assert_string_equal(r.text, ref.text);
    assert_true(st.recoveries <= 1); /* none if the edge kept serving its open session */
}

static void test_no_edge_left_finishes_locally(void **state)
{
    (void)state;
    static run ref, r;
    hinge_stats st;
    for (hinge_wire w = HINGE_WIRE_F32; w <= HINGE_WIRE_F16; w++) {
        reference(w, 0.0f, &ref);
        faulted(F_KILL, false, w, 0.0f, &st, &r);
        assert_string_equal(r.text, ref.text);
        assert_int_equal(st.recoveries, 1);
        assert_int_equal(st.local_fallbacks, 1);
        assert_int_equal(st.remote, 0);
    }
    /* seeded sampling too: the local sampler continues the edge's sequence */
    reference(HINGE_WIRE_F32, 0.9f, &ref);
    faulted(F_KILL, false, HINGE_WIRE_F32, 0.9f, &st, &r);
    assert_string_equal(r.text, ref.text);
}

/* A private head (layers 3..4, the head and the sampler here) keeps its KV
 * cache through every recovery: a second edge, this device, the same edge
 * restarted; greedy and seeded sampling give the uninterrupted text. */
static void test_private_head_failover(void **state)
{
    (void)state;
    static run ref, r;
    hinge_stats st;
    private_head = 2;
    for (float temp = 0.0f; temp < 1.0f; temp += 0.9f) {
        reference(HINGE_WIRE_F32, temp, &ref);
        faulted(F_KILL, true, HINGE_WIRE_F32, temp, &st, &r);
        assert_string_equal(r.text, ref.text);
        assert_int_equal(st.recoveries, 1);
        assert_int_equal(st.edge_index, 1);
        faulted(F_KILL, false, HINGE_WIRE_F32, temp, &st, &r);
        assert_string_equal(r.text, ref.text);
        assert_int_equal(st.local_fallbacks, 1);
        faulted(F_RESTART, false, HINGE_WIRE_F32, temp, &st, &r);
        assert_string_equal(r.text, ref.text);
        assert_int_equal(st.local_fallbacks, 0);
    }
    private_head = 0;
}

static void test_no_local_fallback_is_an_error(void **state)
{
    (void)state;
    edge_proc a;
    start(&a, NULL);
    static run r;
    r = (run){.victim = &a, .what = F_KILL, .edge_bin = edge_bin};
    opts o = {.edge = a.url, .no_local = 1};
    hinge_stats st;
    hinge_status rc = generate(&o, &r, &st);
    assert_true(rc == HINGE_ERR_NETWORK || rc == HINGE_ERR_PROTOCOL);
    assert_non_null(strstr(hinge_last_error(), "no recovery worked"));
    assert_int_equal(r.pieces, FAULT_AT);
    finish(&a);
}

static void test_edge_restarts_on_the_same_address(void **state)
{
    (void)state;
    static run ref, r;
    hinge_stats st;
    reference(HINGE_WIRE_F32, 0.0f, &ref);
    edge_proc a;
    start(&a, NULL);
    r = (run){.victim = &a, .what = F_RESTART, .edge_bin = edge_bin};
    opts o = {.edge = a.url, .no_local = 1};
    assert_int_equal(generate(&o, &r, &st), HINGE_OK);
    assert_string_equal(r.text, ref.text);
    assert_int_equal(st.recoveries, 1);
    assert_int_equal(st.edge_index, 0);
    assert_int_equal(st.local_fallbacks, 0);
    finish(&a);
}

int main(void)
{
    if (!getenv("HINGE_EDGE_BIN")) {
        fprintf(stderr, "HINGE_EDGE_BIN is not set\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_with_a_second_edge),
        cmocka_unit_test(test_stalled_edge),
        cmocka_unit_test(test_drained_edge),
        cmocka_unit_test(test_no_edge_left_finishes_locally),
        cmocka_unit_test(test_private_head_failover),
        cmocka_unit_test(test_no_local_fallback_is_an_error),
        cmocka_unit_test(test_edge_restarts_on_the_same_address),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
