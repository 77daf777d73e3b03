/* The staged CPU forward pass: the stories260K oracle, staged == monolithic
 * for every cut, prefill == step-by-step decode, bad input, and Gemma 3. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model.h"
#include "sampler.h"

#ifndef HINGE_SHARED_DIR
#define HINGE_SHARED_DIR "../shared"
#endif
#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"
#define ORACLE HINGE_SHARED_DIR "/oracles/stories260K-greedy-200.txt"

typedef struct fixture {
    model *m;
    threadpool *tp;
} fixture;

static model *load(const char *path)
{
    char err[HINGE_ERRMSG_MAX] = "";
    model *m = NULL;
    hinge_status s = model_load(path, false, NULL, &m, err, sizeof err);
    if (s != HINGE_OK)
        fail_msg("model_load(%s): %s", path, err);
    return m;
}

static fwd_ctx *stage(fixture *fx, uint32_t a, uint32_t b, uint32_t ctx)
{
    char err[HINGE_ERRMSG_MAX] = "";
    fwd_ctx *f = NULL;
    fwd_config c = {.layer_begin = a, .layer_end = b, .ctx = ctx, .max_batch = 16};
    hinge_status s = fwd_create(fx->m, fx->tp, &c, &f, err, sizeof err);
    if (s != HINGE_OK)
        fail_msg("fwd_create: %s", err);
    return f;
}

static int setup_stories(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->m = load(STORIES);
    assert_int_equal(tp_create(2, &fx->tp), HINGE_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (fx) {
        tp_destroy(fx->tp);
        model_free(fx->m);
        free(fx);
    }
    return 0;
}

/* Greedy generation from tokens[0..n): appends up to n_new tokens; returns
 * the new count. Logits of each step go through one fwd_ctx. */
static size_t greedy(fixture *fx, fwd_ctx *f, int32_t *tokens, size_t n, size_t n_new)
{
    const model_hparams *hp = &fx->m->hp;
    float *h = malloc(n * hp->n_embd * sizeof(float)), *logits = malloc(hp->n_vocab * sizeof(float));
    sampler *s;
    sampler_params sp = {.temp = 0};
    assert_int_equal(sampler_create(&sp, hp->n_vocab, &s), HINGE_OK);
    assert_int_equal(fwd_embed(f, tokens, n, h), HINGE_OK);
    assert_int_equal(fwd_layers(f, 0, n, h), HINGE_OK);
    assert_int_equal(fwd_head(f, h + (n - 1) * hp->n_embd, 1, logits), HINGE_OK);
    for (size_t i = 0; i < n_new; i++) {
        int32_t t = sampler_sample(s, logits);
        tokens[n + i] = t;
        if (i + 1 == n_new)
            break;
        assert_int_equal(fwd_embed(f, &t, 1, h), HINGE_OK);
        assert_int_equal(fwd_layers(f, (uint32_t)(n + i), 1, h), HINGE_OK);
        assert_int_equal(fwd_head(f, h, 1, logits), HINGE_OK);
    }
    sampler_destroy(s);
    free(h);
    free(logits);
    return n + n_new;
}

static char *read_all(const char *path)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

static void test_stories_oracle(void **state)
{
    fixture *fx = *state;
    fwd_ctx *f = stage(fx, 0, fx->m->hp.n_layer, 256);
    int32_t tokens[256] = {tok_bos(fx->m->tok)};
    greedy(fx, f, tokens, 1, 200);
    char *text = calloc(1, 1 << 16);
    size_t len = 0;
    for (size_t i = 1; i <= 200; i++) {
        bool strip = tokens[i - 1] == tok_bos(fx->m->tok);
        len += tok_piece(fx->m->tok, tokens[i], strip, text + len, 256);
    }
    char *want = read_all(ORACLE);
    assert_string_equal(text, want);
    free(want);
    free(text);
    fwd_destroy(f);
}

/* embed + [0,a) + [a,N) + head gives the same logits as [0,N), bit for bit,
 * for a prefill of 9 positions and 6 decode steps after it. */
static void test_stages_equal_monolithic(void **state)
{
    fixture *fx = *state;
    const model_hparams *hp = &fx->m->hp;
    int32_t prompt[9] = {1, 403, 407, 261, 378, 24, 1100 % 512, 33, 76};
    size_t d = hp->n_embd;
    float *h1 = malloc(16 * d * sizeof(float)), *h2 = malloc(16 * d * sizeof(float));
    float *l1 = malloc(16 * hp->n_vocab * sizeof(float)), *l2 = malloc(16 * hp->n_vocab * sizeof(float));
    for (uint32_t a = 0; a <= hp->n_layer; a++) {
        fwd_ctx *full = stage(fx, 0, hp->n_layer, 64), *lo = stage(fx, 0, a, 64), *hi = stage(fx, a, hp->n_layer, 64);
        assert_int_equal(fwd_embed(full, prompt, 9, h1), HINGE_OK);
        memcpy(h2, h1, 9 * d * sizeof(float));
        assert_int_equal(fwd_layers(full, 0, 9, h1), HINGE_OK);
        assert_int_equal(fwd_layers(lo, 0, 9, h2), HINGE_OK);
        assert_int_equal(fwd_layers(hi, 0, 9, h2), HINGE_OK);
        assert_int_equal(fwd_head(full, h1, 9, l1), HINGE_OK);
        assert_int_equal(fwd_head(hi, h2, 9, l2), HINGE_OK);
        assert_memory_equal(l1, l2, 9 * hp->n_vocab * sizeof(float));
        for (uint32_t step = 0; step < 6; step++) {
            int32_t t = (int32_t)(50 + 7 * step);
            assert_int_equal(fwd_embed(full, &t, 1, h1), HINGE_OK);
            memcpy(h2, h1, d * sizeof(float));
            assert_int_equal(fwd_layers(full, 9 + step, 1, h1), HINGE_OK);
            assert_int_equal(fwd_layers(lo, 9 + step, 1, h2), HINGE_OK);
            assert_int_equal(fwd_layers(hi, 9 + step, 1, h2), HINGE_OK);
            assert_int_equal(fwd_head(full, h1, 1, l1), HINGE_OK);
            assert_int_equal(fwd_head(lo, h2, 1, l2), HINGE_OK); /* any stage context can run the head */
            assert_memory_equal(l1, l2, hp->n_vocab * sizeof(float));
        }
        fwd_destroy(full);
        fwd_destroy(lo);
        fwd_destroy(hi);
    }
    free(h1);
    free(h2);
    free(l1);
    free(l2);
}

/* Max |a-b| / max |b|. */
static double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 1e-30;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / den;
}

/* Prefill of n positions (matrix-matrix path) equals n single-position
 * decode steps (matrix-vector path) bit for bit: the kernels compute each
 * output in one order whatever the number of rows (batch invariance). */
static void test_prefill_equals_decode(void **state)
{
    fixture *fx = *state;
    const model_hparams *hp = &fx->m->hp;
    enum { N = 40 };
    int32_t toks[N];
    for (int i = 0; i < N; i++)
        toks[i] = i == 0 ? 1 : (int32_t)((i * 37) % hp->n_vocab);
    size_t d = hp->n_embd;
    float *hp_ = malloc(N * d * sizeof(float)), *hd = malloc(d * sizeof(float));
    float *lp = malloc(hp->n_vocab * sizeof(float)), *ld = malloc(hp->n_vocab * sizeof(float));
    fwd_ctx *a = stage(fx, 0, hp->n_layer, 64), *b = stage(fx, 0, hp->n_layer, 64);
    assert_int_equal(fwd_embed(a, toks, N, hp_), HINGE_OK);
    assert_int_equal(fwd_layers(a, 0, N, hp_), HINGE_OK);
    assert_int_equal(fwd_head(a, hp_ + (N - 1) * d, 1, lp), HINGE_OK);
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(fwd_embed(b, &toks[i], 1, hd), HINGE_OK);
        assert_int_equal(fwd_layers(b, i, 1, hd), HINGE_OK);
    }
    assert_int_equal(fwd_head(b, hd, 1, ld), HINGE_OK);
    assert_true(rel_err(lp, ld, hp->n_vocab) == 0.0);
    assert_memory_equal(lp, ld, hp->n_vocab * sizeof(float));
    fwd_destroy(a);
    fwd_destroy(b);
    free(hp_);
    free(hd);
    free(lp);
    free(ld);
}

/* fwd_cache_copy: a context given another's prefix rows continues exactly
 * as the one that computed them (the privacy attack's candidates rely on
 * it); mismatched contexts and positions are refused. */
static void test_cache_copy(void **state)
{
    fixture *fx = *state;
    const model_hparams *hp = &fx->m->hp;
    enum { N = 20 };
    int32_t toks[N];
    for (int i = 0; i < N; i++)
        toks[i] = i == 0 ? 1 : (int32_t)((i * 53) % hp->n_vocab);
    size_t d = hp->n_embd;
    float *h = malloc(N * d * sizeof(float)), *x = malloc(d * sizeof(float)), *y = malloc(d * sizeof(float));
    fwd_ctx *a = stage(fx, 0, 3, 32), *b = stage(fx, 0, 3, 32), *other = stage(fx, 0, 2, 32);
    assert_int_equal(fwd_embed(a, toks, N - 1, h), HINGE_OK);
    assert_int_equal(fwd_layers(a, 0, N - 1, h), HINGE_OK);
    assert_int_equal(fwd_cache_copy(b, a, 0, N - 1), HINGE_OK);
    assert_int_equal(fwd_embed(a, &toks[N - 1], 1, x), HINGE_OK);
    assert_int_equal(fwd_layers(a, N - 1, 1, x), HINGE_OK);
    assert_int_equal(fwd_embed(b, &toks[N - 1], 1, y), HINGE_OK);
    assert_int_equal(fwd_layers(b, N - 1, 1, y), HINGE_OK);
    assert_memory_equal(x, y, d * sizeof(float));
    assert_int_equal(fwd_cache_copy(other, a, 0, 1), HINGE_ERR_INVALID);
    assert_int_equal(fwd_cache_copy(b, a, 30, 3), HINGE_ERR_RANGE);
    fwd_destroy(a);
    fwd_destroy(b);
    fwd_destroy(other);
    free(h);
    free(x);
    free(y);
}

static void test_bad_input(void **state)
{
    fixture *fx = *state;
    const model_hparams *hp = &fx->m->hp;
    char err[HINGE_ERRMSG_MAX] = "";
    fwd_ctx *f = NULL;
    fwd_config bad = {.layer_begin = 3, .layer_end = 2};
    assert_int_equal(fwd_create(fx->m, fx->tp, &bad, &f, err, sizeof err), HINGE_ERR_INVALID);
    assert_null(f);
    assert_true(strstr(err, "[3, 2)") != NULL);
    bad = (fwd_config){.layer_begin = 0, .layer_end = hp->n_layer + 1};
    assert_int_equal(fwd_create(fx->m, fx->tp, &bad, &f, err, sizeof err), HINGE_ERR_INVALID);
    f = stage(fx, 0, hp->n_layer, 8);
    float h[64 * 16];
    int32_t toks[2] = {1, (int32_t)hp->n_vocab};
    assert_int_equal(fwd_embed(f, toks, 2, h), HINGE_ERR_RANGE);
    assert_true(strstr(fwd_errmsg(f), "outside the vocabulary") != NULL);
    toks[1] = -5;
    assert_int_equal(fwd_embed(f, toks, 2, h), HINGE_ERR_RANGE);
    assert_int_equal(fwd_embed(f, toks, 1, h), HINGE_OK);
    assert_int_equal(fwd_layers(f, 8, 1, h), HINGE_ERR_RANGE);
    assert_int_equal(fwd_layers(f, 7, 2, h), HINGE_ERR_RANGE);
    assert_int_equal(fwd_layers(f, 7, 1, h), HINGE_OK);
    fwd_destroy(f);
    model *m = NULL;
    assert_int_equal(model_load(HINGE_SHARED_DIR "/models/vocab-llama-spm.gguf", false, NULL, &m, err, sizeof err),
                     HINGE_ERR_FORMAT);
    assert_null(m);
    assert_true(strlen(err) > 0);
    assert_int_not_equal(model_load("/nonexistent/model.gguf", false, NULL, &m, err, sizeof err), HINGE_OK);
}

/* ---- Gemma 3 270M (skipped when the default model is not fetched) ---- */

static const char *gemma_path(void)
{
    static char path[4096];
    const char *env = getenv("HINGE_GEMMA_MODEL");
    if (env && *env)
        return env;
    snprintf(path, sizeof path, "%s/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf", getenv("HOME") ? getenv("HOME") : ".");
    return path;
}

static int setup_gemma(void **state)
{
    *state = NULL;
    FILE *fp = fopen(gemma_path(), "rb");
    if (!fp)
        return 0; /* the tests skip */
    fclose(fp);
    fixture *fx = calloc(1, sizeof *fx);
    fx->m = load(gemma_path());
    assert_int_equal(tp_create(2, &fx->tp), HINGE_OK);
    *state = fx;
    return 0;
}

/* Greedy continuation of prompt, n_new tokens, as text. */
static void gemma_continue(fixture *fx, const char *prompt, size_t n_new, char *text, size_t cap)
{
    int32_t tokens[128];
    size_t n = 0;
    assert_int_equal(tok_encode(fx->m->tok, prompt, strlen(prompt), true, false, tokens, 64, &n), HINGE_OK);
    fwd_ctx *f = stage(fx, 0, fx->m->hp.n_layer, 128);
    size_t total = greedy(fx, f, tokens, n, n_new), len = 0;
    for (size_t i = n; i < total && len + 64 < cap; i++)
        len += tok_piece(fx->m->tok, tokens[i], false, text + len, 64);
    text[len] = '\0';
    print_message("gemma: \"%s\" -> \"%s\"\n", prompt, text);
    fwd_destroy(f);
}

/* The base model's greedy continuations. The first is what llama.cpp
 * (llama-simple, same GGUF) prints for the first 8 tokens; the second asks
 * for the fact outright. */
static void test_gemma_capital(void **state)
{
    fixture *fx = *state;
    if (!fx) {
        skip();
        return;
    }
    char text[2048];
    gemma_continue(fx, "The capital of France is", 8, text, sizeof text);
    assert_string_equal(text, " the capital of the country of France.");
    gemma_continue(fx, "Question: What is the capital of France?\nAnswer:", 4, text, sizeof text);
    assert_non_null(strstr(text, "Paris"));
}

static void test_gemma_stages(void **state)
{
    fixture *fx = *state;
    if (!fx) {
        skip();
        return;
    }
    const model_hparams *hp = &fx->m->hp;
    int32_t prompt[5] = {2, 818, 5279, 529, 7001};
    size_t d = hp->n_embd;
    float *h1 = malloc(5 * d * sizeof(float)), *h2 = malloc(5 * d * sizeof(float));
    float *l1 = malloc(hp->n_vocab * sizeof(float)), *l2 = malloc(hp->n_vocab * sizeof(float));
    uint32_t cuts[] = {0, 1, 6, 17, 18};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        fwd_ctx *full = stage(fx, 0, hp->n_layer, 16), *lo = stage(fx, 0, cuts[c], 16), *hi = stage(fx, cuts[c], hp->n_layer, 16);
        assert_int_equal(fwd_embed(full, prompt, 5, h1), HINGE_OK);
        memcpy(h2, h1, 5 * d * sizeof(float));
        assert_int_equal(fwd_layers(full, 0, 5, h1), HINGE_OK);
        assert_int_equal(fwd_layers(lo, 0, 5, h2), HINGE_OK);
        assert_int_equal(fwd_layers(hi, 0, 5, h2), HINGE_OK);
        assert_int_equal(fwd_head(full, h1 + 4 * d, 1, l1), HINGE_OK);
        assert_int_equal(fwd_head(hi, h2 + 4 * d, 1, l2), HINGE_OK);
        assert_memory_equal(l1, l2, hp->n_vocab * sizeof(float));
        fwd_destroy(full);
        fwd_destroy(lo);
        fwd_destroy(hi);
    }
    free(h1);
    free(h2);
    free(l1);
    free(l2);
}

int main(void)
{
    const struct CMUnitTest stories[] = {
        cmocka_unit_test(test_stories_oracle),
        cmocka_unit_test(test_stages_equal_monolithic),
        cmocka_unit_test(test_prefill_equals_decode),
        cmocka_unit_test(test_cache_copy),
        cmocka_unit_test(test_bad_input),
    };
    const struct CMUnitTest gemma[] = {
        cmocka_unit_test(test_gemma_capital),
        cmocka_unit_test(test_gemma_stages),
    };
    int rc = cmocka_run_group_tests_name("stories260K", stories, setup_stories, teardown);
    rc |= cmocka_run_group_tests_name("gemma3-270m", gemma, setup_gemma, teardown);
    return rc;
}
