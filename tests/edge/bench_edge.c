/* bench_edge: a load generator for one hinge-edge (scripts/bench-edge).
 *
 *   bench_edge --model M.gguf --edge http://127.0.0.1:PORT --cut 6 --sessions N
 *              [--prompt P] [--tokens T] [--long-prefill L --long-after-ms D]
 *
 * N threads, one edge session each (its own HTTP/2 connection, as phones
 * have): a prefill of P positions, then T decode steps of one position. It
 * speaks the edge's protocol (transport/) with synthetic activations (rows
 * of the model's embedding), not the device's layers: on a shared few-core
 * box, 64 clients each running the layers before the cut would take the
 * cores the edge is measured on. What the edge computes does not depend on
 * the values.
 *
 * Prints one JSON object: decode tokens/s over all sessions (tokens after
 * every session's prefill / wall time of the decode phase), and p50/p99 of
 * the time per output token (one decode request, as the client sees it).
 * With --long-prefill L, one more session sends L positions in one request
 * D ms into the decode phase; the decode steps that overlap it are reported
 * apart (p50/p99 during the prefill) with the prefill's own time. Every
 * count and wait is bounded. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "model.h"
#include "transport.h"

enum { MAX_SESSIONS = 256, MAX_TOKENS = 4096, MAX_PROMPT = 2048 };

typedef struct args {
    const char *model, *edge;
    uint32_t cut, sessions, prompt, tokens, long_prefill, long_after_ms;
} args;

typedef struct shared {
    const args *a;
    const model *m;
    const float *rows; /* (MAX_PROMPT + MAX_TOKENS + 1, n_embd): embedding rows */
    pthread_barrier_t ready; /* every session's prefill done */
    double t_decode0;        /* after the barrier */
    atomic_int failed;
} shared;

typedef struct client {
    shared *sh;
    int idx;
    uint32_t pos0, n_prefill, n_decode;
    double *t_start, *t_end; /* per decode step, ms */
    double t_done;
    char err[256];
} client;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static int open_session(client *c, tx_client **cl, tx_session **s, uint32_t ctx, uint32_t max_step)
{
    const args *a = c->sh->a;
    tx_client_config cc = {.base_url = a->edge, .timeout_ms = 600000};
    if (tx_client_create(&cc, cl, c->err, sizeof c->err) != HINGE_OK)
        return -1;
    tx_session_config sc = {.cut = a->cut, .codec = TX_CODEC_F32, .ctx = ctx, .max_step = max_step};
    memcpy(sc.model_sha256, c->sh->m->sha256, 32);
    return tx_session_open(*cl, &sc, s, c->err, sizeof c->err) == HINGE_OK ? 0 : -1;
}

/* A decode session: prefill, wait for the others, decode. */
static void *decode_main(void *arg)
{
    client *c = arg;
    shared *sh = c->sh;
    const size_t d = sh->m->hp.n_embd;
    tx_client *cl = NULL;
    tx_session *s = NULL;
    int32_t tok;
    int rc = open_session(c, &cl, &s, c->n_prefill + c->n_decode + 1, 0);
    if (rc == 0 && tx_session_step(s, 0, c->n_prefill, sh->rows, &tok, NULL) != HINGE_OK) {
        snprintf(c->err, sizeof c->err, "prefill: %s", tx_session_errmsg(s));
        rc = -1;
    }
    if (rc != 0)
        atomic_store(&sh->failed, 1);
    pthread_barrier_wait(&sh->ready);
    for (uint32_t i = 0; rc == 0 && !atomic_load(&sh->failed) && i < c->n_decode; i++) {
        uint32_t pos = c->n_prefill + i;
        c->t_start[i] = now_ms();
        if (tx_session_step(s, pos, 1, sh->rows + (size_t)pos * d, &tok, NULL) != HINGE_OK) {
            snprintf(c->err, sizeof c->err, "decode step %u: %s", i, tx_session_errmsg(s));
            atomic_store(&sh->failed, 1);
            rc = -1;
        }
        c->t_end[i] = now_ms();
    }
    c->t_done = now_ms();
    tx_session_close(s, NULL, 0);
    tx_client_destroy(cl);
    return NULL;
}

/* The long prefill: long_after_ms into the decode phase, L positions in
 * one request. */
static void *long_main(void *arg)
{
    client *c = arg;
    shared *sh = c->sh;
    tx_client *cl = NULL;
    tx_session *s = NULL;
    int32_t tok;
    int rc = open_session(c, &cl, &s, c->n_prefill + 1, c->n_prefill);
    if (rc != 0)
        atomic_store(&sh->failed, 1);
    pthread_barrier_wait(&sh->ready);
    struct timespec ts = {.tv_sec = sh->a->long_after_ms / 1000, .tv_nsec = (long)(sh->a->long_after_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    if (rc == 0 && !atomic_load(&sh->failed)) {
        c->t_start[0] = now_ms();
        if (tx_session_step(s, 0, c->n_prefill, sh->rows, &tok, NULL) != HINGE_OK) {
            snprintf(c->err, sizeof c->err, "long prefill: %s", tx_session_errmsg(s));
            atomic_store(&sh->failed, 1);
        }
        c->t_end[0] = now_ms();
    }
    tx_session_close(s, NULL, 0);
    tx_client_destroy(cl);
    return NULL;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_args(int argc, char **argv, args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},         {"edge", required_argument, NULL, 'e'},
        {"cut", required_argument, NULL, 'k'},           {"sessions", required_argument, NULL, 'n'},
        {"prompt", required_argument, NULL, 'p'},        {"tokens", required_argument, NULL, 't'},
        {"long-prefill", required_argument, NULL, 'L'},  {"long-after-ms", required_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    *a = (args){.cut = 6, .sessions = 1, .prompt = 32, .tokens = 32, .long_after_ms = 200};
    int o, bad = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm': a->model = optarg; break;
        case 'e': a->edge = optarg; break;
        case 'k': bad |= parse_u32(optarg, 0, 1024, &a->cut); break;
        case 'n': bad |= parse_u32(optarg, 1, MAX_SESSIONS, &a->sessions); break;
        case 'p': bad |= parse_u32(optarg, 1, MAX_PROMPT, &a->prompt); break;
        case 't': bad |= parse_u32(optarg, 1, MAX_TOKENS, &a->tokens); break;
        case 'L': bad |= parse_u32(optarg, 1, MAX_PROMPT, &a->long_prefill); break;
        case 'D': bad |= parse_u32(optarg, 0, 600000, &a->long_after_ms); break;
        default: bad = 1;
        }
    }
    if (bad || !a->model || !a->edge || optind != argc) {
        fprintf(stderr, "usage: bench_edge --model M --edge URL [--cut K] [--sessions N] [--prompt P] [--tokens T] "
                        "[--long-prefill L [--long-after-ms D]]\n");
        return -1;
    }
    return 0;
}

/* Embedding rows of tokens 1, 2, ... as the activations sent. */
static float *make_rows(const model *m, size_t n)
{
    fwd_config fc = {.layer_begin = 0, .layer_end = 0, .ctx = 1, .max_batch = 1};
    fwd_ctx *f = NULL;
    float *rows = malloc(n * m->hp.n_embd * sizeof(float));
    int32_t *tok = malloc(n * sizeof *tok);
    if (!rows || !tok || fwd_create(m, NULL, &fc, &f, NULL, 0) != HINGE_OK)
        goto fail;
    for (size_t i = 0; i < n; i++)
        tok[i] = (int32_t)(1 + (i * 7919) % (m->hp.n_vocab - 1));
    if (fwd_embed(f, tok, n, rows) != HINGE_OK)
        goto fail;
    fwd_destroy(f);
    free(tok);
    return rows;
fail:
    fwd_destroy(f);
    free(rows);
    free(tok);
    return NULL;
}

/* The decode steps' times, split by whether they overlap [lo, hi). */
static void report(const args *a, client *cs, uint32_t n, double t0, const client *lc)
{
    size_t total = 0, n_in = 0, n_out = 0;
    double t_end = t0;
    for (uint32_t i = 0; i < n; i++)
        total += cs[i].n_decode;
    double *all = malloc(total * sizeof *all), *in = malloc(total * sizeof *in), *out = malloc(total * sizeof *out);
    double lo = lc ? lc->t_start[0] : 0, hi = lc ? lc->t_end[0] : 0;
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        for (uint32_t j = 0; j < cs[i].n_decode; j++) {
            double dt = cs[i].t_end[j] - cs[i].t_start[j];
            all[k++] = dt;
            if (lc && cs[i].t_end[j] > lo && cs[i].t_start[j] < hi)
                in[n_in++] = dt;
            else
                out[n_out++] = dt;
        }
        t_end = cs[i].t_done > t_end ? cs[i].t_done : t_end;
    }
    printf("{\"sessions\":%u,\"cut\":%u,\"prompt\":%u,\"tokens_per_session\":%u,\"decode_tokens\":%zu,"
           "\"decode_s\":%.3f,\"tokens_per_s\":%.2f,\"tpot_p50_ms\":%.2f,\"tpot_p99_ms\":%.2f",
           n, a->cut, a->prompt, a->tokens, total, (t_end - t0) * 1e-3, (double)total / ((t_end - t0) * 1e-3),
           pct(all, total, 0.5), pct(all, total, 0.99));
    if (lc)
        printf(",\"long_prefill\":%u,\"long_prefill_ms\":%.1f,\"during_steps\":%zu,\"during_p50_ms\":%.2f,"
               "\"during_p99_ms\":%.2f,\"during_max_ms\":%.2f,\"outside_p50_ms\":%.2f",
               a->long_prefill, hi - lo, n_in, pct(in, n_in, 0.5), pct(in, n_in, 0.99), pct(in, n_in, 1.0),
               pct(out, n_out, 0.5));
    printf("}\n");
    free(all);
    free(in);
    free(out);
}

int main(int argc, char **argv)
{
    args a;
    if (parse_args(argc, argv, &a) != 0)
        return 2;
    model *m = NULL;
    char err[256];
    if (model_load(a.model, true, NULL, &m, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "bench_edge: %s\n", err);
        return 1;
    }
    uint32_t n = a.sessions, extra = a.long_prefill ? 1 : 0;
    size_t n_rows = (a.long_prefill > a.prompt ? a.long_prefill : a.prompt) + a.tokens + 1;
    shared sh = {.a = &a, .m = m, .rows = make_rows(m, n_rows)};
    client *cs = calloc(n + extra, sizeof *cs);
    double *times = calloc(2 * (size_t)(n + extra) * a.tokens, sizeof *times);
    pthread_t *th = calloc(n + extra, sizeof *th);
    if (!sh.rows || !cs || !times || !th || pthread_barrier_init(&sh.ready, NULL, n + extra + 1) != 0) {
        fprintf(stderr, "bench_edge: out of memory\n");
        return 1;
    }
    for (uint32_t i = 0; i < n + extra; i++) {
        bool is_long = i == n;
        cs[i] = (client){.sh = &sh, .idx = (int)i, .n_prefill = is_long ? a.long_prefill : a.prompt,
                         .n_decode = is_long ? 0 : a.tokens, .t_start = times + 2 * (size_t)i * a.tokens,
                         .t_end = times + (2 * (size_t)i + 1) * a.tokens};
        pthread_create(&th[i], NULL, is_long ? long_main : decode_main, &cs[i]);
    }
    pthread_barrier_wait(&sh.ready);
    double t0 = now_ms();
    for (uint32_t i = 0; i < n + extra; i++)
        pthread_join(th[i], NULL);
    int rc = 0;
    for (uint32_t i = 0; i < n + extra; i++)
        if (cs[i].err[0]) {
            fprintf(stderr, "bench_edge: session %u: %s\n", i, cs[i].err);
            rc = 1;
        }
    if (rc == 0)
        report(&a, cs, n, t0, extra ? &cs[n] : NULL);
    pthread_barrier_destroy(&sh.ready);
    free(th);
    free(times);
    free(cs);
    free((void *)sh.rows);
    model_free(m);
    return rc;
}
