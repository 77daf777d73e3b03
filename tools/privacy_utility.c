/* The cost of a defence: see privacy_utility.h. */
#include "privacy_utility.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { HEAD_ROWS = 16 };

static hinge_status open_session(hinge_model *m, const util_defence *d, uint32_t ctx, hinge_session **s)
{
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.cut = d->cut;
    c.wire = d->wire;
    c.wire_noise = d->noise;
    c.noise_seed = d->seed;
    c.n_ctx = ctx;
    c.n_threads = d->threads;
    return hinge_session_create(m, &c, s);
}

static size_t argmax(const float *x, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        b = x[i] > x[b] ? i : b;
    return b;
}

/* -log softmax(logits)[target] */
static double neg_log_prob(const float *logits, size_t n, int32_t target)
{
    float mx = logits[argmax(logits, n)];
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += exp((double)(logits[i] - mx));
    return log(sum) - (double)(logits[target] - mx);
}

/* One step over seq[0..n) on a fresh position 0; then fn on the logits of
 * rows [first, n - 1) with the token that follows each row. */
typedef void (*row_fn)(const float *logits, size_t n_vocab, int32_t next, void *user);

static hinge_status over_rows(hinge_session *s, const int32_t *seq, size_t n, size_t first, size_t n_vocab,
                              float *logits, row_fn fn, void *user)
{
    int32_t ignored;
    hinge_status st = hinge_session_reset(s);
    if (st == HINGE_OK)
        st = hinge_session_step(s, seq, n, &ignored, NULL);
    for (size_t i = first; st == HINGE_OK && i + 1 < n; i += HEAD_ROWS) {
        size_t rows = n - 1 - i < HEAD_ROWS ? n - 1 - i : HEAD_ROWS;
        st = hinge_session_logits(s, i, rows, logits);
        for (size_t r = 0; st == HINGE_OK && r < rows; r++)
            fn(logits + r * n_vocab, n_vocab, seq[i + r + 1], user);
    }
    return st;
}

static void add_nll(const float *logits, size_t n_vocab, int32_t next, void *user)
{
    *(double *)user += neg_log_prob(logits, n_vocab, next);
}

static void count_same(const float *logits, size_t n_vocab, int32_t next, void *user)
{
    *(size_t *)user += (int32_t)argmax(logits, n_vocab) == next;
}

hinge_status util_perplexity(hinge_model *m, const util_defence *d, const int32_t *tokens, size_t n, uint32_t win,
                             double *ppl)
{
    hinge_model_info mi;
    hinge_model_get_info(m, &mi);
    if (win < 2 || n == 0)
        return HINGE_ERR_INVALID;
    hinge_session *s = NULL;
    int32_t *seq = malloc(win * sizeof *seq);
    float *logits = malloc((size_t)HEAD_ROWS * mi.n_vocab * sizeof(float));
    hinge_status st = seq && logits ? open_session(m, d, win, &s) : HINGE_ERR_NOMEM;
    double total = 0.0;
    for (size_t at = 0; st == HINGE_OK && at < n; at += win - 1) {
        size_t k = n - at < win - 1 ? n - at : win - 1;
        seq[0] = mi.bos;
        memcpy(seq + 1, tokens + at, k * sizeof *seq);
        st = over_rows(s, seq, k + 1, 0, mi.n_vocab, logits, add_nll, &total);
    }
    if (st == HINGE_OK)
        *ppl = exp(total / (double)n);
    hinge_session_free(s);
    free(logits);
    free(seq);
    return st;
}

hinge_status util_greedy(hinge_model *m, int threads, const int32_t *prompt, size_t n_prompt, size_t gen,
                         int32_t *out)
{
    util_defence d = {.cut = HINGE_CUT_ALL, .threads = threads};
    hinge_session *s = NULL;
    hinge_status st = open_session(m, &d, (uint32_t)(n_prompt + gen + 1), &s);
    int32_t next = 0;
    if (st == HINGE_OK)
        st = hinge_session_step(s, prompt, n_prompt, &next, NULL);
    for (size_t i = 0; st == HINGE_OK && i < gen; i++) {
        out[i] = next;
        if (i + 1 < gen)
            st = hinge_session_step(s, &out[i], 1, &next, NULL);
    }
    hinge_session_free(s);
    return st;
}

hinge_status util_agreement(hinge_model *m, const util_defence *d, const int32_t *prompt, size_t n_prompt,
                            const int32_t *ref, size_t gen, double *agree)
{
    hinge_model_info mi;
    hinge_model_get_info(m, &mi);
    size_t n = n_prompt + gen, same = 0;
    hinge_session *s = NULL;
    int32_t *seq = malloc(n * sizeof *seq);
    float *logits = malloc((size_t)HEAD_ROWS * mi.n_vocab * sizeof(float));
    hinge_status st = seq && logits && n_prompt > 0 ? open_session(m, d, (uint32_t)n, &s) : HINGE_ERR_NOMEM;
    if (st == HINGE_OK) {
        memcpy(seq, prompt, n_prompt * sizeof *seq);
        memcpy(seq + n_prompt, ref, gen * sizeof *seq);
        /* rows n_prompt-1 .. n-2 predict ref[0 .. gen-1] */
        st = over_rows(s, seq, n, n_prompt - 1, mi.n_vocab, logits, count_same, &same);
    }
    if (st == HINGE_OK)
        *agree = gen ? (double)same / (double)gen : 1.0;
    hinge_session_free(s);
    free(logits);
    free(seq);
    return st;
}
