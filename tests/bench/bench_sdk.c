/* bench_sdk: what the public API costs, per token and in memory.
 *
 * (a) N greedy tokens from BOS, one position per step, three ways, on one
 *     model in one run:
 *       internal  model/ directly: fwd_embed + fwd_layers + fwd_head + sampler
 *       step      hinge_session_step in a loop (token-level public calls)
 *       generate  hinge_generate with a piece callback (the app's call)
 *     back to back in a rotating order, REPS times (timed in process CPU
 *     time with one thread, which a shared machine's other work does not
 *     inflate; in wall time with more): the medians of the
 *     microseconds per token, and the medians of each run's ratio to the
 *     internal engine and of generate's difference from it (pairs measured
 *     within a second of each other, so that a shared machine's drift
 *     cancels). The step and internal tokens must agree.
 * (b) one session's memory at n_ctx 512 and 4096 (the model's context where
 *     that is smaller): hinge_session_memory, and the growth of the
 *     process's anonymous resident memory (RssAnon; the mapped weights are
 *     file-backed and not in it) at hinge_session_create, after a first
 *     16-token generation and (up to --fill-max positions) with the context
 *     filled by one prefill, each measured in a fresh child process
 *     forked before (a) has freed anything the child's malloc could reuse.
 *
 *   bench_sdk [--reps R] [--reps-stories R] [--threads T] [--tokens-stories N] [--tokens-gemma N]
 *             [--gemma PATH] [--skip-gemma] [--fill-max N]
 * Gemma 3 270M: --gemma, else $HINGE_GEMMA_MODEL, else
 * ~/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf when it exists.
 * Includes model/'s private headers: the internal engine is what it measures
 * against. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "forward.h"
#include "hinge/hinge.h"
#include "model.h"
#include "sampler.h"
#include "threadpool.h"

#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"
enum { MAX_REPS = 101 };

typedef struct opts {
    int reps, reps_stories; /* runs of each way: Gemma, stories260K */
    int threads;
    uint32_t n_stories, n_gemma;
    uint32_t fill_max; /* fill contexts of up to this many positions */
    const char *gemma;
} opts;

/* The internal engine: every layer, the head and a greedy sampler. */
typedef struct engine {
    model *m;
    threadpool *tp;
    fwd_ctx *f;
    sampler *sp;
    float *hidden; /* (n_embd) */
    float *logits; /* (n_vocab) */
} engine;

static void engine_close(engine *e)
{
    sampler_destroy(e->sp);
    fwd_destroy(e->f);
    tp_destroy(e->tp);
    model_free(e->m);
    free(e->hidden);
    free(e->logits);
}

static bool engine_open(const char *path, int threads, uint32_t ctx, engine *e)
{
    char err[HINGE_ERRMSG_MAX] = "";
    *e = (engine){0};
    hinge_status st = model_load(path, false, NULL, &e->m, err, sizeof err);
    if (st == HINGE_OK && (st = tp_create(threads, &e->tp)) != HINGE_OK)
        snprintf(err, sizeof err, "cannot start %d threads", threads);
    if (st == HINGE_OK) {
        fwd_config fc = {.layer_begin = 0, .layer_end = e->m->hp.n_layer, .ctx = ctx};
        st = fwd_create(e->m, e->tp, &fc, &e->f, err, sizeof err);
    }
    if (st == HINGE_OK && (st = sampler_create(&(sampler_params){0}, e->m->hp.n_vocab, &e->sp)) != HINGE_OK)
        snprintf(err, sizeof err, "sampler_create");
    if (st == HINGE_OK) {
        e->hidden = malloc(e->m->hp.n_embd * sizeof(float));
        e->logits = malloc(e->m->hp.n_vocab * sizeof(float));
        if (!e->hidden || !e->logits)
            st = hinge_fail(err, sizeof err, HINGE_ERR_NOMEM, "out of memory");
    }
    if (st != HINGE_OK) {
        fprintf(stderr, "bench_sdk: internal engine: %s: %s\n", path, err);
        engine_close(e);
        return false;
    }
    return true;
}

/* Seconds for n steps from tok at position 0; the tokens fed go to toks. */
typedef double (*clock_fn)(void);

/* CPU seconds of this process: with one thread, the work itself, whatever
 * else the machine runs (wall time on a shared machine is not). */
static double cpu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double run_internal(engine *e, int32_t tok, uint32_t n, int32_t *toks, clock_fn now)
{
    double t0 = now();
    for (uint32_t pos = 0; pos < n; pos++) {
        toks[pos] = tok;
        if (fwd_embed(e->f, &tok, 1, e->hidden) != HINGE_OK || fwd_layers(e->f, pos, 1, e->hidden) != HINGE_OK ||
            fwd_head(e->f, e->hidden, 1, e->logits) != HINGE_OK) {
            fprintf(stderr, "bench_sdk: internal step %u: %s\n", pos, fwd_errmsg(e->f));
            return -1;
        }
        tok = sampler_sample(e->sp, e->logits);
    }
    return now() - t0;
}

static bool check(hinge_status st, const char *what)
{
    if (st != HINGE_OK)
        fprintf(stderr, "bench_sdk: %s: %s: %s\n", what, hinge_strerror(st), hinge_last_error());
    return st == HINGE_OK;
}

static double run_step(hinge_session *s, int32_t tok, uint32_t n, int32_t *toks, clock_fn now)
{
    if (!check(hinge_session_reset(s), "hinge_session_reset"))
        return -1;
    double t0 = now();
    for (uint32_t i = 0; i < n; i++) {
        toks[i] = tok;
        if (!check(hinge_session_step(s, &tok, 1, &tok, NULL), "hinge_session_step"))
            return -1;
    }
    return now() - t0;
}

static int count_piece(const char *piece, size_t len, void *user)
{
    (void)piece;
    *(size_t *)user += len;
    return 0;
}

/* hinge_generate from BOS: n steps (BOS, then n - 1 decode steps). */
static double run_generate(hinge_session *s, uint32_t n, clock_fn now)
{
    size_t bytes = 0;
    if (!check(hinge_session_reset(s), "hinge_session_reset"))
        return -1;
    double t0 = now();
    if (!check(hinge_generate(s, "", (int)n, count_piece, &bytes), "hinge_generate"))
        return -1;
    double t = now() - t0;
    hinge_stats st;
    hinge_session_get_stats(s, &st);
    if (st.steps != n) {
        fprintf(stderr, "bench_sdk: hinge_generate ran %u steps, not %u\n", st.steps, n);
        return -1;
    }
    return t;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static hinge_session *open_session(hinge_model *m, uint32_t n_ctx, int threads)
{
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.n_ctx = n_ctx;
    c.n_threads = threads;
    c.ignore_eos = 1;
    hinge_session *s = NULL;
    return check(hinge_session_create(m, &c, &s), "hinge_session_create") ? s : NULL;
}

/* (a) for one model; false on any failure. */
static double minimum(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

static bool bench_overhead(const char *name, const char *path, hinge_model *hm, uint32_t n, int reps,
                           const opts *o)
{
    hinge_model_info info;
    hinge_model_get_info(hm, &info);
    uint32_t ctx = n + 8;
    engine e;
    if (!engine_open(path, o->threads, ctx, &e))
        return false;
    hinge_session *s = open_session(hm, ctx, o->threads);
    int32_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    double t_int[MAX_REPS], t_step[MAX_REPS], t_gen[MAX_REPS]; /* us per token */
    double r_step[MAX_REPS], r_gen[MAX_REPS], d_gen[MAX_REPS];   /* the same run's ratios, difference */
    bool ok = s && a && b;
    /* one warm-up of each (page the weights in), then the measured runs,
     * the three ways back to back in a rotating order */
    for (int r = -1; ok && r < reps; r++) {
        double t[3] = {0};
        for (int k = 0; k < 3; k++) {
            int way = (k + (r < 0 ? 0 : r)) % 3;
            clock_fn now = o->threads == 1 ? cpu_now_s : clk_now_s;
            t[way] = way == 0   ? run_internal(&e, info.bos, n, a, now)
                     : way == 1 ? run_step(s, info.bos, n, b, now)
                                : run_generate(s, n, now);
        }
        ok = t[0] > 0 && t[1] > 0 && t[2] > 0;
        if (ok && memcmp(a, b, n * sizeof *a) != 0) {
            fprintf(stderr, "bench_sdk: %s: hinge_session_step's tokens differ from the internal engine's\n", name);
            ok = false;
        }
        if (ok && r >= 0) {
            t_int[r] = t[0] * 1e6 / n;
            t_step[r] = t[1] * 1e6 / n;
            t_gen[r] = t[2] * 1e6 / n;
            r_step[r] = t[1] / t[0];
            r_gen[r] = t[2] / t[0];
            d_gen[r] = t_gen[r] - t_int[r];
        }
    }
    if (ok) {
        /* the fastest runs are the ones other work on the machine disturbed least */
        double bi = minimum(t_int, reps), bs = minimum(t_step, reps), bg = minimum(t_gen, reps);
        printf("%-22s %6u %4d median %11.2f %11.2f %11.2f %8.4f %8.4f %10.2f\n", name, n, reps, median(t_int, reps),
               median(t_step, reps), median(t_gen, reps), median(r_step, reps), median(r_gen, reps),
               median(d_gen, reps));
        printf("%-22s %6u %4d best   %11.2f %11.2f %11.2f %8.4f %8.4f %10.2f\n", name, n, reps, bi, bs, bg, bs / bi,
               bg / bi, bg - bi);
    }
    hinge_session_free(s);
    engine_close(&e);
    free(a);
    free(b);
    return ok;
}

/* Resident anonymous memory of this process in KiB, or -1. */
static long rss_anon_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "RssAnon:", 8) == 0) {
            char *end;
            kib = strtol(line + 8, &end, 10);
            if (end == line + 8)
                kib = -1;
        }
    fclose(f);
    return kib;
}

typedef struct mem_row {
    uint64_t session_bytes;
    long rss_create_kib, rss_gen_kib, rss_full_kib; /* rss_full_kib: -1 when not filled */
    int ok; /* the child did all it was asked */
} mem_row;

/* The rest of s's context, by one prefill step; false on failure. */
static bool fill(hinge_session *s, int32_t tok)
{
    hinge_stats st;
    hinge_session_get_stats(s, &st);
    size_t n = st.n_ctx - hinge_session_position(s);
    int32_t *toks = malloc(n * sizeof *toks), next;
    if (!toks)
        return false;
    for (size_t i = 0; i < n; i++)
        toks[i] = tok;
    bool ok = n == 0 || check(hinge_session_step(s, toks, n, &next, NULL), "hinge_session_step (fill)");
    free(toks);
    return ok;
}

/* In a child: create a session, measure, generate 16 tokens, measure, and
 * with do_fill prefill the rest of the context and measure. */
static bool measure_child(hinge_model *m, uint32_t n_ctx, int threads, bool do_fill, mem_row *out)
{
    int fd[2];
    if (pipe(fd) != 0)
        return false;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        close(fd[0]);
        mem_row r = {0};
        long before = rss_anon_kib();
        hinge_session *s = open_session(m, n_ctx, threads);
        if (s) {
            r.session_bytes = hinge_session_memory(s);
            r.rss_create_kib = rss_anon_kib() - before;
            r.ok = check(hinge_generate(s, "", 16, NULL, NULL), "hinge_generate");
            r.rss_gen_kib = rss_anon_kib() - before;
            r.rss_full_kib = -1;
            if (r.ok && do_fill) {
                hinge_model_info info;
                hinge_model_get_info(m, &info);
                r.ok = fill(s, info.bos);
                r.rss_full_kib = rss_anon_kib() - before;
            }
        }
        ssize_t w = write(fd[1], &r, sizeof r);
        _exit(r.ok && w == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], out, sizeof *out);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return got == (ssize_t)sizeof *out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool bench_memory(const char *name, hinge_model *m, int threads, uint32_t fill_max)
{
    hinge_model_info info;
    hinge_model_get_info(m, &info);
    const uint32_t ctxs[] = {512, 4096};
    for (size_t i = 0; i < sizeof ctxs / sizeof *ctxs; i++) {
        uint32_t n_ctx = ctxs[i] < info.n_ctx_train ? ctxs[i] : info.n_ctx_train;
        mem_row r;
        fflush(stdout);
        if (!measure_child(m, n_ctx, threads, n_ctx <= fill_max, &r)) {
            fprintf(stderr, "bench_sdk: %s: the memory child at n_ctx %u failed\n", name, n_ctx);
            return false;
        }
        char full[32] = "-";
        if (r.rss_full_kib >= 0)
            snprintf(full, sizeof full, "%.2f", (double)r.rss_full_kib / 1024);
        printf("%-26s %6u%s %14.2f %16.2f %18.2f %16s\n", name, n_ctx, n_ctx < ctxs[i] ? "*" : " ",
               (double)r.session_bytes / (1 << 20), (double)r.rss_create_kib / 1024, (double)r.rss_gen_kib / 1024,
               full);
    }
    return true;
}

static bool parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return false;
    *out = (uint32_t)v;
    return true;
}

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--reps R (Gemma; 1..%d, default 7)] [--reps-stories R (default 31)] [--threads T (default 1)]\n"
            "          [--tokens-stories N (default 256)] [--tokens-gemma N (default 64)] [--gemma PATH] [--skip-gemma]\n"
            "          [--fill-max N (fill contexts up to N positions; default 4096)]\n",
            argv0, MAX_REPS);
    return 2;
}

static bool parse_opts(int argc, char **argv, opts *o)
{
    static const struct option longs[] = {
        {"reps", required_argument, NULL, 'r'},          {"threads", required_argument, NULL, 't'},
        {"reps-stories", required_argument, NULL, 'R'},
        {"tokens-stories", required_argument, NULL, 's'}, {"tokens-gemma", required_argument, NULL, 'g'},
        {"gemma", required_argument, NULL, 'G'},          {"skip-gemma", no_argument, NULL, 'S'},
        {"fill-max", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    static char gemma_default[4096];
    const char *home = getenv("HOME"), *env = getenv("HINGE_GEMMA_MODEL");
    *o = (opts){.reps = 7, .reps_stories = 31, .threads = 1, .n_stories = 256, .n_gemma = 64, .fill_max = 4096};
    if (env && *env)
        o->gemma = env;
    else if (home && snprintf(gemma_default, sizeof gemma_default, "%s/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf",
                              home) < (int)sizeof gemma_default && access(gemma_default, R_OK) == 0)
        o->gemma = gemma_default;
    uint32_t v = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'r':
            ok = parse_u32(optarg, 1, MAX_REPS, &v);
            o->reps = (int)v;
            break;
        case 'R':
            ok = parse_u32(optarg, 1, MAX_REPS, &v);
            o->reps_stories = (int)v;
            break;
        case 't':
            ok = parse_u32(optarg, 0, 256, &v);
            o->threads = (int)v;
            break;
        case 's': ok = parse_u32(optarg, 2, 1024, &o->n_stories); break;
        case 'g': ok = parse_u32(optarg, 2, 1024, &o->n_gemma); break;
        case 'f': ok = parse_u32(optarg, 0, 1u << 20, &o->fill_max); break;
        case 'G': o->gemma = optarg; break;
        case 'S': o->gemma = NULL; break;
        default: ok = false;
        }
        if (!ok)
            return false;
    }
    return optind == argc;
}

int main(int argc, char **argv)
{
    opts o;
    if (!parse_opts(argc, argv, &o))
        return usage(argv[0]);
    struct {
        const char *name, *path;
        uint32_t n;
        int reps;
        hinge_model *m;
    } models[2] = {{"stories260K", STORIES, o.n_stories, o.reps_stories, NULL},
                   {"gemma-3-270m-q4_k_m", o.gemma, o.n_gemma, o.reps, NULL}};
    int n_models = o.gemma ? 2 : 1;
    for (int i = 0; i < n_models; i++)
        if (!check(hinge_model_load(models[i].path, &models[i].m), models[i].path))
            return 1;
    bool ok = true;
    printf("libhinge %s, CPU backend, local session, %d thread(s), greedy from BOS%s\n", hinge_version(), o.threads,
           o.gemma ? "" : " (no Gemma: --gemma or HINGE_GEMMA_MODEL)");
    /* first, while this process's heap holds nothing freed that a child's
     * session could reuse without growing its RSS */
    printf("\nmemory of one session (MiB): hinge_session_memory; growth of RssAnon at create, after 16 tokens, "
           "and with the context full\n");
    printf("%-26s %7s %14s %16s %18s %16s\n", "model", "n_ctx", "session", "RSS create", "RSS +16 tokens",
           "RSS full ctx");
    for (int i = 0; i < n_models; i++)
        ok = bench_memory(models[i].name, models[i].m, o.threads, o.fill_max) && ok;
    printf("(* the model's own context, under the n_ctx asked for; -: not filled, over --fill-max)\n");
    printf("\ncost per token (microseconds of %s): internal engine, hinge_session_step, hinge_generate\n",
           o.threads == 1 ? "process CPU time" : "wall time");
    printf("%-22s %6s %4s %-6s %11s %11s %11s %8s %8s %10s\n", "model", "tokens", "runs", "", "internal", "step",
           "generate", "step/int", "gen/int", "gen-int us");
    for (int i = 0; i < n_models; i++)
        ok = bench_overhead(models[i].name, models[i].path, models[i].m, models[i].n, models[i].reps, &o) && ok;
    printf("(median: of the runs, and of each run's own ratios and difference; best: the fastest run of each way)\n");
    for (int i = 0; i < n_models; i++)
        hinge_model_free(models[i].m);
    return ok ? 0 : 1;
}
