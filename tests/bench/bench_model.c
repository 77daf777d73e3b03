/* bench_model: the CPU engine's figures for one model, in one run:
 * memory read bandwidth, load time, prefill and decode tokens/s, peak
 * RSS, and the decode memory-bandwidth roofline (weight bytes read per token
 * / time per token, as a fraction of the measured read bandwidth).
 *
 *   bench_model MODEL.gguf [threads] [prompt_len] [decode_tokens]
 * Prints one JSON object on stdout. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "forward.h"
#include "model.h"
#include "quant.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct bw_arg {
    const uint64_t *src;
    size_t n;      /* words */
    uint64_t sum;  /* keeps the reads alive */
} bw_arg;

static void *read_main(void *p)
{
    bw_arg *a = p;
    uint64_t s = 0;
    for (size_t i = 0; i < a->n; i++)
        s += a->src[i];
    a->sum = s;
    return NULL;
}

/* Read-only memory bandwidth in GB/s: each thread sums its own 256 MiB
 * (far beyond the caches), best of 3. Decode streams weights the same way,
 * so this is its roofline. */
static double read_gbps(int threads)
{
    size_t n = (256u << 20) / sizeof(uint64_t);
    bw_arg args[16];
    pthread_t th[16];
    for (int t = 0; t < threads; t++) {
        uint64_t *buf = malloc(n * sizeof *buf);
        memset(buf, t + 1, n * sizeof *buf);
        args[t] = (bw_arg){.src = buf, .n = n};
    }
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        for (int t = 0; t < threads; t++)
            pthread_create(&th[t], NULL, read_main, &args[t]);
        for (int t = 0; t < threads; t++)
            pthread_join(th[t], NULL);
        double gbps = (double)n * sizeof(uint64_t) * threads / (now_s() - t0) / 1e9;
        best = gbps > best ? gbps : best;
    }
    for (int t = 0; t < threads; t++)
        free((void *)args[t].src);
    return best;
}

/* argv[i] as an int, def when absent, -1 when not a number. */
static int arg_int(int argc, char **argv, int i, int def)
{
    if (argc <= i)
        return def;
    char *end;
    long v = strtol(argv[i], &end, 10);
    return (end == argv[i] || *end || v < 0 || v > 1000000) ? -1 : (int)v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_model MODEL.gguf [threads] [prompt_len] [decode_tokens]\n");
        return 2;
    }
    int threads = arg_int(argc, argv, 2, 2), plen = arg_int(argc, argv, 3, 128), ndec = arg_int(argc, argv, 4, 64);
    if (threads < 1 || threads > 16 || plen < 1 || plen > 4096 || ndec < 1 || ndec > 100000) {
        fprintf(stderr, "bench_model: bad arguments\n");
        return 2;
    }
    char err[HINGE_ERRMSG_MAX];
    model *m = NULL;
    double t0 = now_s();
    if (model_load(argv[1], false, NULL, &m, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    double load_s = now_s() - t0;
    threadpool *tp = NULL;
    fwd_ctx *f = NULL;
    fwd_config fc = {.layer_begin = 0, .layer_end = m->hp.n_layer, .ctx = (uint32_t)(plen + ndec + 1), .max_batch = 128};
    if (tp_create(threads, &tp) != HINGE_OK || fwd_create(m, tp, &fc, &f, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    const model_hparams *hp = &m->hp;
    int32_t *tok = malloc((size_t)(plen + ndec) * sizeof *tok);
    float *h = malloc((size_t)plen * hp->n_embd * sizeof(float)), *logits = malloc(hp->n_vocab * sizeof(float));
    for (int i = 0; i < plen + ndec; i++)
        tok[i] = i == 0 ? tok_bos(m->tok) : (int32_t)((i * 7919) % hp->n_vocab);
    /* prefill: one pass to warm the page cache of the mapped weights, then
     * the median of at least 5 passes and 0.5 s (one pass of a small model
     * is a few ms: a single one is at the mercy of this shared machine) */
    enum { PREFILL_MIN_REPS = 5, PREFILL_MAX_REPS = 500 };
    double pass_s[PREFILL_MAX_REPS], spent = 0;
    int reps = 0;
    for (int rep = -1; rep < PREFILL_MAX_REPS && (rep < PREFILL_MIN_REPS || spent < 0.5); rep++) {
        t0 = now_s();
        fwd_embed(f, tok, (size_t)plen, h);
        fwd_layers(f, 0, (size_t)plen, h);
        fwd_head(f, h + (size_t)(plen - 1) * hp->n_embd, 1, logits);
        if (rep >= 0) {
            pass_s[reps++] = now_s() - t0;
            spent += pass_s[reps - 1];
        }
    }
    qsort(pass_s, (size_t)reps, sizeof pass_s[0], cmp_double);
    double prefill_s = pass_s[reps / 2];
    /* decode after the prompt (what a user sees), then decode from an empty
     * context (llama-bench's tg protocol, for comparison with it) */
    double decode_s = 0, tg_s = 0;
    for (int from0 = 0; from0 < 2; from0++) {
        uint32_t base = from0 ? 0 : (uint32_t)plen;
        t0 = now_s();
        for (int i = 0; i < ndec; i++) {
            fwd_embed(f, &tok[plen + i], 1, h);
            fwd_layers(f, base + (uint32_t)i, 1, h);
            fwd_head(f, h, 1, logits);
        }
        *(from0 ? &tg_s : &decode_s) = now_s() - t0;
    }
    /* bytes one decode step reads: every layer's weights, the output matrix
     * and one embedding row (KV cache reads are extra and not counted) */
    size_t bytes = quant_row_bytes(m->output.type, m->output.cols) * m->output.rows +
                   quant_row_bytes(m->tok_embd.type, m->tok_embd.cols);
    for (uint32_t il = 0; il < hp->n_layer; il++)
        bytes += model_layer_bytes(m, il);
    double per_tok = decode_s / ndec;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); /* before the bandwidth buffers */
    double bw = read_gbps(threads);
    printf("{\"model\":\"%s\",\"isa\":\"%s\",\"threads\":%d,\"mem_read_gbps\":%.2f,\"load_ms\":%.1f,"
           "\"prompt_tokens\":%d,\"prefill_tokens_per_s\":%.1f,\"decode_tokens\":%d,\"decode_tokens_per_s\":%.1f,\"tg_tokens_per_s\":%.1f,"
           "\"weight_bytes_per_token\":%zu,\"decode_gbps\":%.2f,\"roofline_fraction\":%.3f,\"peak_rss_mib\":%.1f}\n",
           m->name, quant_isa(), threads, bw, load_s * 1e3, plen, plen / prefill_s, ndec, ndec / decode_s, ndec / tg_s, bytes,
           (double)bytes / per_tok / 1e9, (double)bytes / per_tok / 1e9 / bw, ru.ru_maxrss / 1024.0);
    free(tok);
    free(h);
    free(logits);
    fwd_destroy(f);
    tp_destroy(tp);
    model_free(m);
    return 0;
}
