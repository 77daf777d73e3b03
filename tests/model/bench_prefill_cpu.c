/* Prefill and decode of one model on one thread in process CPU time (not a
 * test): the kernel set's end-to-end cost where wall time is useless (a
 * machine shared by other jobs: a descheduled thread costs wall time, not
 * CPU time; cache contention still shows). The set is quant.h's (HINGE_CPU
 * picks another); run it once per set and compare the lines.
 *
 *   bench_prefill_cpu MODEL.gguf [prompt_len] [decode_tokens]
 * One JSON object: the best of at least 5 prefill passes (and 1 s), and of
 * 3 decode runs from position 0, as tokens per CPU second. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "forward.h"
#include "model.h"
#include "quant.h"

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_prefill_cpu MODEL.gguf [prompt_len] [decode_tokens]\n");
        return 2;
    }
    const int plen = argc > 2 ? atoi(argv[2]) : 128, ndec = argc > 3 ? atoi(argv[3]) : 16;
    if (plen < 1 || plen > 4096 || ndec < 1 || ndec > 4096) {
        fprintf(stderr, "bench_prefill_cpu: bad arguments\n");
        return 2;
    }
    char err[HINGE_ERRMSG_MAX];
    model *m = NULL;
    threadpool *tp = NULL;
    fwd_ctx *f = NULL;
    if (model_load(argv[1], false, NULL, &m, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "bench_prefill_cpu: %s\n", err);
        return 1;
    }
    fwd_config fc = {.layer_begin = 0, .layer_end = m->hp.n_layer, .ctx = (uint32_t)(plen + ndec + 1), .max_batch = 128};
    if (tp_create(1, &tp) != HINGE_OK || fwd_create(m, tp, &fc, &f, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "bench_prefill_cpu: %s\n", err);
        return 1;
    }
    const model_hparams *hp = &m->hp;
    int32_t *tok = malloc((size_t)(plen + ndec) * sizeof *tok);
    float *h = malloc((size_t)plen * hp->n_embd * sizeof(float)), *logits = malloc(hp->n_vocab * sizeof(float));
    if (!tok || !h || !logits)
        return 1;
    for (int i = 0; i < plen + ndec; i++)
        tok[i] = i == 0 ? tok_bos(m->tok) : (int32_t)((i * 7919) % hp->n_vocab);
    double best_pp = 1e9, spent = 0;
    for (int rep = -1; rep < 5 || (spent < 1.0 && rep < 200); rep++) { /* rep -1 warms the mapped weights */
        const double t0 = cpu_s();
        fwd_embed(f, tok, (size_t)plen, h);
        fwd_layers(f, 0, (size_t)plen, h);
        fwd_head(f, h + (size_t)(plen - 1) * hp->n_embd, 1, logits);
        const double dt = cpu_s() - t0;
        if (rep >= 0) {
            spent += dt;
            best_pp = dt < best_pp ? dt : best_pp;
        }
    }
    double best_tg = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = cpu_s();
        for (int i = 0; i < ndec; i++) {
            fwd_embed(f, &tok[plen + i], 1, h);
            fwd_layers(f, (uint32_t)i, 1, h);
            fwd_head(f, h, 1, logits);
        }
        const double dt = cpu_s() - t0;
        best_tg = dt < best_tg ? dt : best_tg;
    }
    printf("{\"isa\":\"%s\",\"prompt_tokens\":%d,\"prefill_tokens_per_cpu_s\":%.1f,\"decode_tokens\":%d,"
           "\"tg_tokens_per_cpu_s\":%.2f}\n",
           quant_isa(), plen, plen / best_pp, ndec, ndec / best_tg);
    free(tok);
    free(h);
    free(logits);
    fwd_destroy(f);
    tp_destroy(tp);
    model_free(m);
    return 0;
}
