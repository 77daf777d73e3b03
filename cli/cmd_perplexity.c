/* hinge perplexity: exp(mean negative log-likelihood) of a text file, in
 * independent windows of --ctx tokens, each starting with BOS; through the
 * token-level calls of libhinge (a local session, its logits). */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

enum { MAX_FILE_BYTES = 64 << 20, HEAD_ROWS = 16 };

typedef struct ppl_opts {
    const char *model, *file;
    uint32_t ctx, threads;
    hinge_backend backend;
    bool json, verbose;
} ppl_opts;

enum { O_CTX = 256, O_THREADS, O_JSON, O_BACKEND };

static const struct option OPTIONS[] = {
    {"model", required_argument, NULL, 'm'},   {"file", required_argument, NULL, 'f'},
    {"ctx", required_argument, NULL, O_CTX},   {"threads", required_argument, NULL, O_THREADS},
    {"json", no_argument, NULL, O_JSON},       {"backend", required_argument, NULL, O_BACKEND},
    {"verbose", no_argument, NULL, 'v'},       {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: hinge perplexity [--model PATH] --file TEXT [--ctx N] [--threads N] [--backend cpu|vulkan]\n"
                 "                        [--json] [-v]\n"
                 "  windows of --ctx tokens (default 512), each starting with BOS\n");
}

/* 0: run; 1: --help was printed; 2: usage error. */
static int parse(int argc, char **argv, ppl_opts *o)
{
    *o = (ppl_opts){.ctx = 512};
    int c, rc = 0;
    optind = 1;
    while (rc == 0 && (c = getopt_long(argc, argv, "m:f:vh", OPTIONS, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'f': o->file = optarg; break;
        case O_CTX: rc = cli_u32(optarg, "--ctx", 1u << 20, &o->ctx); break;
        case O_THREADS: rc = cli_u32(optarg, "--threads", 256, &o->threads); break;
        case O_JSON: o->json = true; break;
        case O_BACKEND: rc = cli_backend(optarg, &o->backend); break;
        case 'v': o->verbose = true; break;
        case 'h': usage(stdout); return 1;
        default: rc = -1;
        }
    }
    if (rc != 0 || optind < argc || !o->file || o->ctx < 2) {
        fprintf(stderr, "hinge: perplexity needs --file TEXT and a --ctx of at least 2\n");
        usage(stderr);
        return 2;
    }
    if (!o->model)
        o->model = cli_default_model();
    return 0;
}

/* -log softmax(logits)[target] */
static double nll(const float *logits, uint32_t n_vocab, int32_t target)
{
    float mx = logits[0];
    for (uint32_t i = 1; i < n_vocab; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (uint32_t i = 0; i < n_vocab; i++)
        sum += exp((double)(logits[i] - mx));
    return log(sum) - (double)(logits[target] - mx);
}

/* Adds the NLL of win[1..n) given their prefixes to *total. */
static hinge_status score_window(hinge_session *s, const int32_t *win, size_t n, uint32_t n_vocab, float *logits,
                                 double *total)
{
    int32_t ignored;
    hinge_status st = hinge_session_reset(s);
    if (st == HINGE_OK)
        st = hinge_session_step(s, win, n, &ignored, NULL);
    for (size_t i = 0; st == HINGE_OK && i + 1 < n; i += HEAD_ROWS) {
        size_t rows = n - 1 - i < HEAD_ROWS ? n - 1 - i : HEAD_ROWS;
        st = hinge_session_logits(s, i, rows, logits);
        for (size_t r = 0; st == HINGE_OK && r < rows; r++)
            *total += nll(logits + r * n_vocab, n_vocab, win[i + r + 1]);
    }
    return st;
}

static void report(const ppl_opts *o, const char *name, double ppl, size_t scored, double secs)
{
    if (!o->json) {
        printf("perplexity %.4f over %zu tokens (windows of %u, %.1f s)\n", ppl, scored, o->ctx, secs);
        return;
    }
    json_t *j = json_pack("{s:s, s:I, s:i, s:f, s:f}", "model", name, "tokens", (json_int_t)scored, "ctx",
                          (int)o->ctx, "perplexity", ppl, "seconds", secs);
    char *out = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (out)
        printf("%s\n", out);
    free(out);
    json_decref(j);
}

static int run(const ppl_opts *o, hinge_model *m, const char *text, size_t len)
{
    hinge_model_info mi;
    hinge_model_get_info(m, &mi);
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.n_ctx = o->ctx;
    c.n_threads = (int)o->threads;
    c.backend = o->backend;
    hinge_session *s = NULL;
    int32_t *tokens = malloc((len + 1) * sizeof *tokens), *win = malloc(o->ctx * sizeof *win);
    float *logits = malloc((size_t)HEAD_ROWS * mi.n_vocab * sizeof(float));
    size_t n_tok = 0, scored = 0;
    double total = 0.0, t0 = cli_now_s();
    int rc = 1;
    hinge_status st = tokens && win && logits ? hinge_session_create(m, &c, &s) : HINGE_ERR_NOMEM;
    if (st == HINGE_OK)
        st = hinge_tokenize(m, text, len, 0, tokens, len + 1, &n_tok);
    for (size_t at = 0; st == HINGE_OK && at < n_tok; at += o->ctx - 1) {
        size_t n = n_tok - at < o->ctx - 1 ? n_tok - at : o->ctx - 1;
        win[0] = mi.bos;
        memcpy(win + 1, tokens + at, n * sizeof *win);
        st = score_window(s, win, n + 1, mi.n_vocab, logits, &total);
        scored += n;
    }
    if (st != HINGE_OK)
        cli_fail("perplexity failed", st);
    else if (scored == 0)
        fprintf(stderr, "hinge: perplexity: no tokens in the file\n");
    else {
        report(o, mi.name, exp(total / (double)scored), scored, cli_now_s() - t0);
        rc = 0;
    }
    hinge_session_free(s);
    free(logits);
    free(win);
    free(tokens);
    return rc;
}

int cmd_perplexity(int argc, char **argv)
{
    ppl_opts o;
    int p = parse(argc, argv, &o);
    if (p)
        return p == 1 ? 0 : 2;
    size_t len = 0;
    char *text = cli_read_file(o.file, MAX_FILE_BYTES, &len);
    if (!text) {
        fprintf(stderr, "hinge: cannot read %s (missing, or over %d bytes)\n", o.file, MAX_FILE_BYTES);
        return 1;
    }
    hinge_model *m = NULL;
    int rc = 1;
    if (cli_load_model(o.model, o.verbose, &m) == 0)
        rc = run(&o, m, text, len);
    hinge_model_free(m);
    free(text);
    return rc;
}
