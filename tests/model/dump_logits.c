/* Writes the logits hinge's CPU engine computes for a token sequence, for
 * tests/model/ref_forward.py to compare with its numpy forward pass:
 *   dump_logits MODEL.gguf OUT.f32 TOKEN...
 * OUT.f32: n_tokens x n_vocab float32 (little-endian), row i the logits after
 * tokens [0, i]. The first half of the tokens runs as one prefill, the rest
 * one position at a time (the KV cache path). */
#include <stdio.h>
#include <stdlib.h>

#include "forward.h"
#include "model.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: dump_logits MODEL.gguf OUT.f32 TOKEN...\n");
        return 2;
    }
    const size_t n = (size_t)argc - 3;
    int32_t *tok = malloc(n * sizeof *tok);
    char err[HINGE_ERRMSG_MAX];
    model *m = NULL;
    fwd_ctx *f = NULL;
    threadpool *tp = NULL;
    if (!tok || model_load(argv[1], false, NULL, &m, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "dump_logits: %s: %s\n", argv[1], tok ? err : "out of memory");
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        tok[i] = (int32_t)strtol(argv[3 + i], NULL, 10);
    const size_t d = m->hp.n_embd, nv = m->hp.n_vocab;
    float *hidden = malloc(n * d * sizeof *hidden), *logits = malloc(n * nv * sizeof *logits);
    fwd_config fc = {.layer_begin = 0, .layer_end = m->hp.n_layer, .ctx = (uint32_t)n};
    if (!hidden || !logits || tp_create(2, &tp) != HINGE_OK || fwd_create(m, tp, &fc, &f, err, sizeof err) != HINGE_OK ||
        fwd_embed(f, tok, n, hidden) != HINGE_OK) {
        fprintf(stderr, "dump_logits: %s\n", f ? fwd_errmsg(f) : err);
        return 1;
    }
    const size_t pre = n / 2 ? n / 2 : 1;
    hinge_status s = fwd_layers(f, 0, pre, hidden);
    for (size_t i = pre; i < n && s == HINGE_OK; i++)
        s = fwd_layers(f, (uint32_t)i, 1, hidden + i * d);
    if (s == HINGE_OK)
        s = fwd_head(f, hidden, n, logits);
    FILE *out = fopen(argv[2], "wb");
    if (s != HINGE_OK || !out || fwrite(logits, sizeof *logits, n * nv, out) != n * nv || fclose(out) != 0) {
        fprintf(stderr, "dump_logits: %s\n", s != HINGE_OK ? fwd_errmsg(f) : "cannot write the output");
        return 1;
    }
    printf("%s: %s, %zu tokens x %zu logits\n", argv[1], model_arch_name(m->hp.arch), n, nv);
    fwd_destroy(f);
    tp_destroy(tp);
    model_free(m);
    free(hidden);
    free(logits);
    free(tok);
    return 0;
}
