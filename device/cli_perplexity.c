/* hinge perplexity: exp(mean negative log-likelihood) of a text file, in
 * independent windows of --ctx tokens, each starting with BOS. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

enum { MAX_FILE_BYTES = 64 << 20, HEAD_ROWS = 16 };

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *buf = malloc(MAX_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE_BYTES + 1, fp) : 0;
    fclose(fp);
    if (!buf || n > MAX_FILE_BYTES) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
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

/* Adds the NLL of tokens[1..n) given their prefixes to *total. */
static hinge_status score_window(engine *e, const int32_t *tokens, size_t n, float *hidden, float *logits,
                                 double *total)
{
    const model_hparams *hp = &e->m->hp;
    hinge_status s = fwd_embed(e->f, tokens, n, hidden);
    if (s == HINGE_OK)
        s = fwd_layers(e->f, 0, n, hidden);
    for (size_t i = 0; s == HINGE_OK && i + 1 < n; i += HEAD_ROWS) {
        size_t rows = n - 1 - i < HEAD_ROWS ? n - 1 - i : HEAD_ROWS;
        s = fwd_head(e->f, hidden + i * hp->n_embd, rows, logits);
        for (size_t r = 0; s == HINGE_OK && r < rows; r++)
            *total += nll(logits + r * hp->n_vocab, hp->n_vocab, tokens[i + r + 1]);
    }
    return s;
}

int cmd_perplexity(const opts *o)
{
    if (!o->file) {
        fprintf(stderr, "hinge: perplexity needs --file TEXT\n");
        return 2;
    }
    size_t len = 0;
    char *text = read_file(o->file, &len);
    if (!text) {
        fprintf(stderr, "hinge: cannot read %s (missing, or over %d bytes)\n", o->file, MAX_FILE_BYTES);
        return 1;
    }
    engine e;
    int rc = 1;
    int32_t *tokens = NULL, *win = NULL;
    float *hidden = NULL, *logits = NULL;
    if (engine_open(&e, o, false) != 0)
        goto done;
    uint32_t ctx = o->ctx ? o->ctx : 512;
    if (ctx < 2 || engine_stages(&e, ctx, 0) != 0)
        goto done;
    size_t n_tok = 0;
    tokens = malloc((len + 1) * sizeof *tokens);
    win = malloc(ctx * sizeof *win);
    hidden = malloc((size_t)ctx * e.m->hp.n_embd * sizeof(float));
    logits = malloc((size_t)HEAD_ROWS * e.m->hp.n_vocab * sizeof(float));
    if (!tokens || !win || !hidden || !logits)
        goto done;
    hinge_status s = tok_encode(e.m->tok, text, len, false, false, tokens, len + 1, &n_tok);
    double total = 0.0, t0 = now_s();
    size_t scored = 0;
    for (size_t at = 0; s == HINGE_OK && at < n_tok; at += ctx - 1) {
        size_t n = n_tok - at < ctx - 1 ? n_tok - at : ctx - 1;
        win[0] = tok_bos(e.m->tok);
        memcpy(win + 1, tokens + at, n * sizeof *win);
        s = score_window(&e, win, n + 1, hidden, logits, &total);
        scored += n;
    }
    if (s != HINGE_OK || scored == 0) {
        fprintf(stderr, "hinge: perplexity failed: %s\n", s ? hinge_strerror(s) : "no tokens in the file");
        goto done;
    }
    double ppl = exp(total / (double)scored), secs = now_s() - t0;
    if (o->json) {
        json_t *j = json_pack("{s:s, s:i, s:i, s:f, s:f}", "model", e.m->name, "tokens", (json_int_t)scored,
                              "ctx", (json_int_t)ctx, "perplexity", ppl, "seconds", secs);
        char *out = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (out)
            printf("%s\n", out);
        free(out);
        json_decref(j);
    } else
        printf("perplexity %.4f over %zu tokens (windows of %u, %.1f s)\n", ppl, scored, ctx, secs);
    rc = 0;
done:
    free(logits);
    free(hidden);
    free(win);
    free(tokens);
    free(text);
    engine_close(&e);
    return rc;
}
