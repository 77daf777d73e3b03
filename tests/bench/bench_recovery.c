/* The cost of never losing a token (issue 12): for each recovery path and
 * prefix length, the gap in the token stream when the edge dies, against
 * a normal decode step measured in the same run.
 *
 *   bench_recovery MODEL EDGE_BIN [--cut K] [--prefixes 64,512,2048] [--threads T]
 *
 * For each prefix length P: a split session (real hinge-edge processes on
 * 127.0.0.1, h2c, f32 wire) is fed P tokens of tests/data/passage.txt
 * (repeated as needed), decodes 8 tokens, then the edge is killed
 * (SIGKILL) between two steps and the next step is timed:
 *   restart  the edge comes back on the same address (its start-up not
 *            counted): a new edge session there, the prefix replayed;
 *   fallback a second edge is listed: a new session there, replayed;
 *   local    no edge left: the device runs the layers after the cut,
 *            their KV cache rebuilt from the same rows.
 * Prints per (path, P): the gap (the step that recovered) in ms, the
 * normal step in ms, the positions and bytes replayed, and the memory the
 * device keeps to make this possible (4 bytes a position: the tokens; its
 * own layers recompute the rows), against what keeping the rows would
 * cost per codec. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hinge/hinge.h>

#include "edge_proc.h"

enum { MAX_PREFIXES = 8, DECODE_BEFORE = 8, DECODE_AFTER = 4 };

typedef enum path { P_RESTART, P_FALLBACK, P_LOCAL, N_PATHS } path;
static const char *const PATH_NAMES[N_PATHS] = {"restart", "fallback", "local"};

typedef struct bench {
    hinge_model *m;
    const char *model_path, *edge_bin;
    int cut, threads;
    int32_t *text;
    size_t n_text;
} bench;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int start_edge(const bench *b, edge_proc *e, int port)
{
    memset(e, 0, sizeof *e);
    char listen[64], threads[16];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(threads, sizeof threads, "%d", b->threads);
    for (int tries = 0; tries < 50; tries++) {
        if (edge_proc_cert(e) == 0 &&
            edge_proc_start(e, b->edge_bin, b->model_path, false,
                            (const char *const[]){"--threads", threads, "--no-measure", "--listen", listen,
                                                  "--max-ctx", "4096", "--log-level", "warn", NULL}) == 0)
            return 0;
        edge_proc_cleanup(e);
        usleep(100000);
    }
    return -1;
}

static void kill_edge(edge_proc *e)
{
    if (e->pid > 0) {
        kill(e->pid, SIGKILL);
        edge_proc_stop(e);
    }
    edge_proc_cleanup(e);
    e->pid = 0;
}

/* The tokens of passage.txt, repeated to n. */
static int32_t *prefix_tokens(const bench *b, size_t n)
{
    int32_t *t = malloc(n * sizeof *t);
    for (size_t i = 0; t && i < n; i++)
        t[i] = b->text[i % b->n_text];
    return t;
}

typedef struct result {
    double gap_ms, step_ms;
    uint64_t replayed;
    uint32_t recoveries;
    int ok;
} result;

static result run_path(const bench *b, path p, uint32_t prefix)
{
    result r = {0};
    edge_proc a, f = {0};
    if (start_edge(b, &a, 0) != 0 || (p == P_FALLBACK && start_edge(b, &f, 0) != 0)) {
        fprintf(stderr, "bench_recovery: cannot start hinge-edge\n");
        return r;
    }
    const char *fallback = f.url;
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.edge_url = a.url;
    c.fallback_edges = p == P_FALLBACK ? &fallback : NULL;
    c.n_fallback_edges = p == P_FALLBACK ? 1 : 0;
    c.cut = b->cut;
    c.wire = HINGE_WIRE_F32;
    c.n_ctx = prefix + DECODE_BEFORE + DECODE_AFTER + 2;
    c.n_threads = b->threads;
    c.no_local_fallback = p != P_LOCAL;
    hinge_session *s = NULL;
    int32_t *tok = prefix_tokens(b, prefix);
    int32_t next = 0;
    hinge_status st = tok ? hinge_session_create(b->m, &c, &s) : HINGE_ERR_NOMEM;
    if (st == HINGE_OK)
        st = hinge_session_step(s, tok, prefix, &next, NULL);
    double step_s = 1e9;
    for (int i = 0; st == HINGE_OK && i < DECODE_BEFORE; i++) {
        double t0 = now_s();
        int32_t in = next;
        st = hinge_session_step(s, &in, 1, &next, NULL);
        if (now_s() - t0 < step_s)
            step_s = now_s() - t0;
    }
    if (st == HINGE_OK) {
        int port = a.port;
        kill_edge(&a);
        if (p == P_RESTART && start_edge(b, &a, port) != 0)
            st = HINGE_ERR_IO;
        double t0 = now_s();
        int32_t in = next;
        if (st == HINGE_OK)
            st = hinge_session_step(s, &in, 1, &next, NULL);
        r.gap_ms = (now_s() - t0) * 1e3;
    }
    for (int i = 0; st == HINGE_OK && i < DECODE_AFTER; i++) {
        int32_t in = next;
        st = hinge_session_step(s, &in, 1, &next, NULL);
    }
    if (st == HINGE_OK) {
        hinge_stats hs;
        hinge_session_get_stats(s, &hs);
        r.replayed = hs.replayed_positions;
        r.recoveries = hs.recoveries;
        r.step_ms = step_s * 1e3;
        r.ok = 1;
    } else
        fprintf(stderr, "bench_recovery: %s, prefix %u: %s: %s\n", PATH_NAMES[p], prefix, hinge_strerror(st),
                hinge_last_error());
    hinge_session_free(s);
    free(tok);
    kill_edge(&a);
    if (p == P_FALLBACK)
        kill_edge(&f);
    return r;
}

static int load_text(bench *b)
{
    FILE *f = fopen(HINGE_SOURCE_DIR "/tests/data/passage.txt", "rb");
    if (!f)
        return -1;
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    b->text = malloc(sizeof buf * sizeof *b->text);
    if (!b->text)
        return -1;
    return hinge_tokenize(b->m, buf, len, 0, b->text, sizeof buf, &b->n_text) == HINGE_OK && b->n_text ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_recovery MODEL EDGE_BIN [--cut K] [--prefixes 64,512,2048] [--threads T]\n");
        return 2;
    }
    bench b = {.model_path = argv[1], .edge_bin = argv[2], .cut = 6, .threads = 1};
    uint32_t prefixes[MAX_PREFIXES] = {64, 512, 2048};
    size_t n_prefixes = 3;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--cut") == 0)
            b.cut = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0)
            b.threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--prefixes") == 0) {
            n_prefixes = 0;
            for (char *tok = strtok(argv[i + 1], ","); tok && n_prefixes < MAX_PREFIXES; tok = strtok(NULL, ","))
                prefixes[n_prefixes++] = (uint32_t)strtoul(tok, NULL, 10);
        } else {
            fprintf(stderr, "bench_recovery: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (hinge_model_load(b.model_path, &b.m) != HINGE_OK || load_text(&b) != 0) {
        fprintf(stderr, "bench_recovery: %s\n", hinge_last_error());
        return 1;
    }
    hinge_model_info mi;
    hinge_model_get_info(b.m, &mi);
    printf("bench_recovery: %s, cut %d, %d thread(s) each side, f32 wire, h2c on loopback\n", mi.name, b.cut,
           b.threads);
    printf("| path | prefix | gap ms | normal step ms | gap / step | positions replayed | bytes replayed (f32) |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < n_prefixes; i++)
        for (int p = 0; p < N_PATHS; p++) {
            result r = run_path(&b, (path)p, prefixes[i]);
            if (!r.ok) {
                printf("| %s | %u | failed | | | | |\n", PATH_NAMES[p], prefixes[i]);
                continue;
            }
            double bytes = p == P_LOCAL ? 0.0 : (double)r.replayed * mi.n_embd * 4.0;
            printf("| %s | %u | %.1f | %.2f | %.0fx | %llu | %.0f |\n", PATH_NAMES[p], prefixes[i], r.gap_ms,
                   r.step_ms, r.gap_ms / r.step_ms, (unsigned long long)r.replayed, bytes);
            fflush(stdout);
        }
    printf("\nkept per position for recovery: 4 B (the token; the device's layers recompute the rows); keeping "
           "the rows instead: f32 %u B, f16 %u B, q8 %u B\n",
           mi.n_embd * 4, mi.n_embd * 2, mi.n_embd + 4); /* q8: one f32 scale a row */
    hinge_model_free(b.m);
    free(b.text);
    return 0;
}
