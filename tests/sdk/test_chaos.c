/* Chaos: 50 split generations while a thread kills (SIGKILL or SIGTERM)
 * and restarts two real edges at random moments. Every generation must
 * end HINGE_OK with exactly the text of an uninterrupted run, greedy and
 * seeded sampling alike: no token lost or changed. The edges keep their
 * ports across restarts, so a restarted edge is found again at the address
 * the session lists. Bounded: 50 runs or 150 s, whichever comes first. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
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

enum { TEXT_CAP = 1 << 15, N_TOKENS = 400, RUNS = 50, N_EDGES = 2 }; /* two: the chaos thread reads up[1 - i] */
static const double TIME_LIMIT_S = 150.0;

typedef struct text {
    char s[TEXT_CAP];
    size_t len;
} text;

typedef struct chaos {
    edge_proc edge[N_EDGES];
    bool up[N_EDGES];
    char url[N_EDGES][64];
    int port[N_EDGES];
    atomic_bool stop;
    unsigned seed;
    int kills, terms, restarts;
} chaos;

static hinge_model *model;
static const char *edge_bin;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int on_piece(const char *piece, size_t len, void *user)
{
    text *t = user;
    if (t->len + len < sizeof t->s) {
        memcpy(t->s + t->len, piece, len);
        t->len += len;
        t->s[t->len] = '\0';
    }
    return 0;
}

static hinge_status generate(const chaos *c, float temp, text *out, hinge_stats *st)
{
    hinge_session_config cfg;
    hinge_session_config_init(&cfg);
    const char *fallback = c->url[1];
    cfg.edge_url = c->url[0];
    cfg.fallback_edges = &fallback;
    cfg.n_fallback_edges = 1;
    cfg.cut = 2;
    cfg.wire = HINGE_WIRE_F32;
    cfg.temperature = temp;
    cfg.seed = 5;
    cfg.n_ctx = N_TOKENS + 1;
    cfg.n_threads = 1;
    *out = (text){0};
    hinge_session *s = NULL;
    hinge_status rc = hinge_session_create(model, &cfg, &s);
    if (rc == HINGE_OK)
        rc = hinge_generate(s, "", N_TOKENS, on_piece, out);
    if (rc == HINGE_OK)
        hinge_session_get_stats(s, st);
    else
        fprintf(stderr, "generation: %s: %s\n", hinge_strerror(rc), hinge_last_error());
    hinge_session_free(s);
    return rc;
}

static int start_edge(chaos *c, int i)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", c->port[i]);
    for (int tries = 0; tries < 50; tries++) { /* a killed edge's port may linger for a moment */
        edge_proc *e = &c->edge[i];
        memset(e, 0, sizeof *e);
        if (edge_proc_cert(e) == 0 &&
            edge_proc_start(e, edge_bin, STORIES, false,
                            (const char *const[]){"--threads", "1", "--no-measure", "--listen", listen, NULL}) == 0) {
            c->port[i] = e->port;
            memcpy(c->url[i], e->url, sizeof c->url[i]);
            c->up[i] = true;
            return 0;
        }
        edge_proc_cleanup(e);
        usleep(100000);
    }
    return -1;
}

static void stop_edge(chaos *c, int i, int sig)
{
    edge_proc *e = &c->edge[i];
    kill(e->pid, sig);
    if (sig != SIGTERM)
        kill(e->pid, SIGKILL);
    edge_proc_stop(e); /* waits: a SIGTERM drains (bounded), a SIGKILL is immediate */
    edge_proc_cleanup(e);
    c->up[i] = false;
}

/* Every 5-40 ms (a generation takes tens of ms): an edge that is up is killed (1 in 4: drained with
 * SIGTERM) unless it is the last one up, one that is down comes back on
 * its port. One edge is always up when a session opens (with none, opening
 * a session with a fixed cut is a clear error, by design: test_sdk); a
 * generation whose edges all die finishes locally (test_failover). */
static void *chaos_main(void *arg)
{
    chaos *c = arg;
    while (!atomic_load(&c->stop)) {
        usleep(5000 + (unsigned)(rand_r(&c->seed) % 35000));
        if (atomic_load(&c->stop))
            break;
        int i = (int)(rand_r(&c->seed) % N_EDGES);
        if (!c->up[i]) {
            if (start_edge(c, i) == 0)
                c->restarts++;
        } else if (!c->up[1 - i]) {
            continue;
        } else if (rand_r(&c->seed) % 4 == 0) {
            stop_edge(c, i, SIGTERM);
            c->terms++;
        } else {
            stop_edge(c, i, SIGKILL);
            c->kills++;
        }
    }
    return NULL;
}

static void test_chaos(void **state)
{
    (void)state;
    static chaos c;
    c = (chaos){.seed = 1234};
    for (int i = 0; i < N_EDGES; i++)
        assert_int_equal(start_edge(&c, i), 0);
    /* the uninterrupted runs */
    static text ref[2], got;
    hinge_stats st;
    const float temps[2] = {0.0f, 0.9f};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(generate(&c, temps[k], &ref[k], &st), HINGE_OK);
        assert_int_equal(st.recoveries, 0);
    }
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, chaos_main, &c), 0);
    double t0 = now_s();
    int runs = 0, recovered = 0, local = 0;
    uint64_t recoveries = 0;
    for (; runs < RUNS && now_s() - t0 < TIME_LIMIT_S; runs++) {
        int k = runs % 2;
        hinge_status rc = generate(&c, temps[k], &got, &st);
        assert_int_equal(rc, HINGE_OK);
        if (strcmp(got.s, ref[k].s) != 0)
            fail_msg("run %d (temperature %.1f): the text differs from the uninterrupted run after %u recoveries", runs,
                     (double)temps[k], (unsigned)st.recoveries);
        recovered += st.recoveries > 0 || st.resumes > 0;
        recoveries += st.recoveries;
        local += st.local_fallbacks > 0;
    }
    atomic_store(&c.stop, true);
    pthread_join(th, NULL);
    fprintf(stderr, "chaos: %d runs in %.1f s, %d with a recovery (%llu recoveries, %d finished locally); "
                    "%d kills, %d drains, %d restarts\n",
            runs, now_s() - t0, recovered, (unsigned long long)recoveries, local, c.kills, c.terms, c.restarts);
    for (int i = 0; i < N_EDGES; i++)
        if (c.up[i])
            stop_edge(&c, i, SIGKILL);
    assert_true(runs >= 20);
    assert_true(c.kills + c.terms >= 5); /* the chaos did happen */
    assert_true(recovered >= 1);         /* and hit generations (typically 5-15 of 50) */
}

int main(void)
{
    edge_bin = getenv("HINGE_EDGE_BIN");
    if (!edge_bin) {
        fprintf(stderr, "HINGE_EDGE_BIN is not set\n");
        return 77;
    }
    if (hinge_model_load(STORIES, &model) != HINGE_OK)
        return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_chaos)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    hinge_model_free(model);
    return rc;
}
