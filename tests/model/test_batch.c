/* The forward pass over many sessions (batch.h): a session's logits are
 * bitwise the same alone and inside batches of 2, 7 and 32 mixed sessions
 * (mixed cuts, positions, prefill chunks and decode steps), and bad batches
 * are refused before anything runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "forward.h"
#include "model.h"

#ifndef HINGE_SHARED_DIR
#define HINGE_SHARED_DIR "../shared"
#endif
#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"

enum { MAX_SESSIONS = 32, CTX = 64, MAX_PROMPT = 23, MAX_DECODE = 12, MAX_CHUNK = 7 };

/* A model and how hard to drive it: stories260K (5 layers, f32) takes 32
 * sessions at every cut; Gemma 3 270M (quantised: the tile and direct
 * kernel paths meet) fewer and shorter ones. */
typedef struct fixture {
    model *m;
    threadpool *tp;
    size_t sessions, decode;
    const uint32_t *cuts;
    size_t n_cuts;
    const size_t *widths;
    size_t n_widths;
} fixture;

/* One session: a device stage [0, cut) and a tail [cut, N) with their
 * caches; its prompt; the logits of each sampled step (alone run) and the
 * tokens it generated. */
typedef struct sess {
    uint32_t cut;
    fwd_ctx *dev, *tail;
    int32_t toks[CTX];
    size_t n_prompt, n_tok; /* prompt length; tokens known so far */
    size_t pos;             /* positions done */
    size_t step;            /* sampled steps done */
    float *hidden;          /* (CTX, n_embd) */
    float *ref;             /* (decode, n_vocab): logits alone */
    float *got;             /* (n_vocab) */
} sess;

static uint64_t rng = 0x2545f4914f6cdd1du;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 33) % n;
}

static fwd_ctx *stage(const fixture *fx, uint32_t a, uint32_t b)
{
    char err[HINGE_ERRMSG_MAX] = "";
    fwd_ctx *f = NULL;
    fwd_config c = {.layer_begin = a, .layer_end = b, .ctx = CTX, .max_batch = 16};
    if (fwd_create(fx->m, fx->tp, &c, &f, err, sizeof err) != HINGE_OK)
        fail_msg("fwd_create: %s", err);
    return f;
}

static int32_t argmax(const float *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

static const size_t all_widths[] = {1, 2, 7, 32};

static fixture *load(const char *path)
{
    fixture *fx = calloc(1, sizeof *fx);
    char err[HINGE_ERRMSG_MAX] = "";
    if (model_load(path, false, NULL, &fx->m, err, sizeof err) != HINGE_OK)
        fail_msg("model_load(%s): %s", path, err);
    assert_int_equal(tp_create(2, &fx->tp), HINGE_OK);
    fx->widths = all_widths;
    fx->n_widths = sizeof all_widths / sizeof all_widths[0];
    return fx;
}

static int setup_stories(void **state)
{
    static const uint32_t cuts[] = {0, 1, 2, 3, 4, 5};
    fixture *fx = load(STORIES);
    fx->sessions = 32;
    fx->decode = MAX_DECODE;
    fx->cuts = cuts;
    fx->n_cuts = sizeof cuts / sizeof cuts[0];
    *state = fx;
    return 0;
}

static const char *gemma_path(void)
{
    static char path[4096];
    const char *env = getenv("HINGE_GEMMA_MODEL");
    if (env && *env)
        return env;
    snprintf(path, sizeof path, "%s/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf", getenv("HOME") ? getenv("HOME") : ".");
    return path;
}

/* 8 sessions at cuts 0, 1, 6, 17, 18 in batches of 1, 2, 7 and 8: the
 * batched runs go through the 8-or-more-row tile kernels (quant_x86.c),
 * the alone decode steps through the direct ones. Skipped without the model. */
static int setup_gemma(void **state)
{
    static const uint32_t cuts[] = {6, 0, 17, 1, 18};
    static const size_t widths[] = {1, 2, 7, 8};
    *state = NULL;
    FILE *fp = fopen(gemma_path(), "rb");
    if (!fp)
        return 0;
    fclose(fp);
    fixture *fx = load(gemma_path());
    fx->sessions = 8;
    fx->decode = 3;
    fx->cuts = cuts;
    fx->n_cuts = sizeof cuts / sizeof cuts[0];
    fx->widths = widths;
    fx->n_widths = sizeof widths / sizeof widths[0];
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (!fx)
        return 0;
    tp_destroy(fx->tp);
    model_free(fx->m);
    free(fx);
    return 0;
}

static void sess_reset(const fixture *fx, sess *s)
{
    fwd_destroy(s->dev);
    fwd_destroy(s->tail);
    s->dev = stage(fx, 0, s->cut);
    s->tail = stage(fx, s->cut, fx->m->hp.n_layer);
    s->n_tok = s->n_prompt;
    s->pos = s->step = 0;
}

/* Mixed sessions: the fixture's cuts in turn, prompts of 1 .. MAX_PROMPT
 * tokens. */
static sess *make_sessions(const fixture *fx)
{
    const model_hparams *hp = &fx->m->hp;
    sess *ss = calloc(fx->sessions, sizeof *ss);
    assert_non_null(ss);
    for (size_t i = 0; i < fx->sessions; i++) {
        sess *s = &ss[i];
        s->cut = fx->cuts[i % fx->n_cuts];
        s->n_prompt = 1 + rnd(MAX_PROMPT);
        s->toks[0] = 1;
        for (size_t t = 1; t < s->n_prompt; t++)
            s->toks[t] = (int32_t)(2 + rnd(hp->n_vocab - 2));
        s->hidden = malloc((size_t)CTX * hp->n_embd * sizeof(float));
        s->ref = malloc((size_t)fx->decode * hp->n_vocab * sizeof(float));
        s->got = malloc(hp->n_vocab * sizeof(float));
        assert_true(s->hidden && s->ref && s->got);
        sess_reset(fx, s);
    }
    return ss;
}

static void free_sessions(const fixture *fx, sess *ss)
{
    for (size_t i = 0; i < fx->sessions; i++) {
        fwd_destroy(ss[i].dev);
        fwd_destroy(ss[i].tail);
        free(ss[i].hidden);
        free(ss[i].ref);
        free(ss[i].got);
    }
    free(ss);
}

/* Alone: the whole prompt in one fwd_layers call per stage, then one
 * token per step, greedy; the logits of every step into ref. */
static void run_alone(const fixture *fx, sess *s)
{
    const model_hparams *hp = &fx->m->hp;
    size_t n = s->n_prompt;
    for (size_t step = 0; step < fx->decode; step++) {
        size_t p0 = step == 0 ? 0 : s->n_prompt + step - 1;
        size_t k = step == 0 ? n : 1;
        float *logits = s->ref + step * hp->n_vocab;
        assert_int_equal(fwd_embed(s->dev, s->toks + p0, k, s->hidden), HINGE_OK);
        assert_int_equal(fwd_layers(s->dev, (uint32_t)p0, k, s->hidden), HINGE_OK);
        assert_int_equal(fwd_layers(s->tail, (uint32_t)p0, k, s->hidden), HINGE_OK);
        assert_int_equal(fwd_head(s->tail, s->hidden + (k - 1) * hp->n_embd, 1, logits), HINGE_OK);
        s->toks[s->n_prompt + step] = argmax(logits, hp->n_vocab);
    }
}

/* Batched: rounds of up to `width` sessions taken round-robin, each
 * contributing its next prompt chunk (1 .. MAX_CHUNK positions; logits only
 * when it ends the prompt) or its next decode token; device stage and tail
 * of every session in one fwd_batch_run (the tail joins at its cut). Every
 * sampled step's logits must equal the alone run's bit for bit. */
static void run_batched(const fixture *fx, fwd_batch *b, sess *ss, size_t width)
{
    const model_hparams *hp = &fx->m->hp;
    fwd_item items[2 * MAX_SESSIONS];
    sess *who[MAX_SESSIONS];
    size_t next = 0, live = fx->sessions, rounds = 0, max_items = 0;
    while (live > 0) {
        size_t ni = 0, nw = 0;
        for (size_t scanned = 0; scanned < fx->sessions && nw < width; scanned++, next = (next + 1) % fx->sessions) {
            sess *s = &ss[next];
            if (s->step == fx->decode)
                continue;
            size_t k = s->pos < s->n_prompt ? 1 + rnd(MAX_CHUNK) : 1;
            if (s->pos < s->n_prompt && k > s->n_prompt - s->pos)
                k = s->n_prompt - s->pos;
            bool sample = s->pos + k >= s->n_prompt;
            assert_int_equal(fwd_embed(s->dev, s->toks + s->pos, k, s->hidden), HINGE_OK);
            items[ni++] = (fwd_item){.f = s->dev, .pos0 = (uint32_t)s->pos, .n = (uint32_t)k, .hidden = s->hidden};
            items[ni++] = (fwd_item){.f = s->tail, .pos0 = (uint32_t)s->pos, .n = (uint32_t)k, .hidden = s->hidden,
                                     .logits = sample ? s->got : NULL};
            s->pos += k;
            who[nw++] = s;
        }
        assert_int_equal(fwd_batch_run(b, items, ni), HINGE_OK);
        max_items = ni > max_items ? ni : max_items;
        for (size_t i = 0; i < nw; i++) {
            sess *s = who[i];
            if (s->pos < s->n_prompt)
                continue;
            const float *want = s->ref + s->step * hp->n_vocab;
            if (memcmp(s->got, want, hp->n_vocab * sizeof(float)) != 0)
                fail_msg("width %zu, round %zu: session of cut %u, step %zu at position %zu: logits differ from the "
                         "session alone",
                         width, rounds, s->cut, s->step, s->pos - 1);
            s->step++;
            if (s->step == fx->decode)
                live--;
        }
        rounds++;
    }
    print_message("batches of up to %zu sessions: %zu rounds, up to %zu items per run, every logit equal\n", width,
                  rounds, max_items);
}

static void test_batch_invariant(void **state)
{
    fixture *fx = *state;
    if (!fx) {
        skip();
        return;
    }
    sess *ss = make_sessions(fx);
    for (size_t i = 0; i < fx->sessions; i++)
        run_alone(fx, &ss[i]);
    char err[HINGE_ERRMSG_MAX] = "";
    fwd_batch *b = NULL;
    fwd_batch_config bc = {.max_rows = 2 * fx->sessions * MAX_CHUNK, .max_items = 2 * fx->sessions, .max_ctx = CTX,
                           .head_rows = 5};
    assert_int_equal(fwd_batch_create(fx->m, fx->tp, &bc, &b, err, sizeof err), HINGE_OK);
    for (size_t w = 0; w < fx->n_widths; w++) {
        for (size_t i = 0; i < fx->sessions; i++)
            sess_reset(fx, &ss[i]);
        run_batched(fx, b, ss, fx->widths[w]);
    }
    fwd_batch_destroy(b);
    free_sessions(fx, ss);
}

static void test_batch_refused(void **state)
{
    fixture *fx = *state;
    const model_hparams *hp = &fx->m->hp;
    char err[HINGE_ERRMSG_MAX] = "";
    fwd_batch *b = NULL;
    fwd_batch_config bad = {.max_rows = 4, .max_items = 8};
    assert_int_equal(fwd_batch_create(fx->m, fx->tp, &bad, &b, err, sizeof err), HINGE_ERR_INVALID);
    assert_null(b);
    fwd_batch_config bc = {.max_rows = 8, .max_items = 4, .max_ctx = CTX, .head_rows = 2};
    assert_int_equal(fwd_batch_create(fx->m, fx->tp, &bc, &b, err, sizeof err), HINGE_OK);
    assert_true(fwd_batch_bytes(b) > 0);
    fwd_ctx *f = stage(fx, 1, hp->n_layer), *g = stage(fx, 0, hp->n_layer);
    float *h = calloc((size_t)16 * hp->n_embd, sizeof(float));
    float *before = malloc((size_t)16 * hp->n_embd * sizeof(float));
    for (size_t i = 0; i < (size_t)16 * hp->n_embd; i++)
        h[i] = (float)(i % 7) * 0.25f;
    memcpy(before, h, (size_t)16 * hp->n_embd * sizeof(float));
    fwd_item two[2] = {{.f = f, .pos0 = 0, .n = 2, .hidden = h}, {.f = f, .pos0 = 2, .n = 1, .hidden = h}};
    assert_int_equal(fwd_batch_run(b, two, 2), HINGE_ERR_INVALID); /* one context twice */
    assert_non_null(strstr(fwd_batch_errmsg(b), "share a context"));
    fwd_item many = {.f = f, .pos0 = 0, .n = 9, .hidden = h};
    assert_int_equal(fwd_batch_run(b, &many, 1), HINGE_ERR_RANGE); /* rows over max_rows */
    fwd_item late = {.f = f, .pos0 = CTX - 1, .n = 2, .hidden = h};
    assert_int_equal(fwd_batch_run(b, &late, 1), HINGE_ERR_RANGE); /* beyond the context */
    fwd_item none[2] = {{.f = g, .pos0 = 0, .n = 3, .hidden = h}, {.f = f, .pos0 = 0, .n = 0, .hidden = h}};
    assert_int_equal(fwd_batch_run(b, none, 2), HINGE_ERR_INVALID); /* no rows */
    assert_memory_equal(h, before, (size_t)16 * hp->n_embd * sizeof(float)); /* nothing ran */
    assert_int_equal(fwd_batch_run(b, none, 0), HINGE_OK);
    fwd_batch_destroy(b);
    fwd_batch_destroy(NULL);
    fwd_destroy(f);
    fwd_destroy(g);
    free(h);
    free(before);
}

int main(void)
{
    const struct CMUnitTest stories[] = {
        cmocka_unit_test(test_batch_invariant),
        cmocka_unit_test(test_batch_refused),
    };
    const struct CMUnitTest gemma[] = {
        cmocka_unit_test(test_batch_invariant),
    };
    int rc = cmocka_run_group_tests_name("batch (stories260K)", stories, setup_stories, teardown);
    rc |= cmocka_run_group_tests_name("batch (gemma3-270m)", gemma, setup_gemma, teardown);
    return rc;
}
