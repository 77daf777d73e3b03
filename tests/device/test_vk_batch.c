/* The edge's batches (vk_exec_run_batch) with the steps speculative
 * decoding and private heads give it:
 *
 *  - a verify step (all_rows: every row's logits through the batch head),
 *    a plain session's prompt and decode steps, private heads' layers
 *    [cut, N - J) with their rows out (one of them with no layer at all:
 *    cut = N - J), over three steps (the verify step rewinds over rejected
 *    rows as the edge's do): every item's results bitwise equal alone and
 *    all in one batch, whatever the order of the items;
 *  - a verify step's row i has bitwise the logits a one-row decode step at
 *    its position gets (what makes --speculate on the Vulkan edge give the
 *    plain run's tokens);
 *  - stories260K against the CPU: the verify rows' logits against fwd_layers
 *    + fwd_head on every row, the private heads' rows against fwd_layers
 *    [cut, N - J), within TOL (test_vk_exec.c's TOL_HIDDEN and its
 *    reasons); the empty range's rows are its input, exactly;
 *  - refused (HINGE_ERR_INVALID): all_rows without the batch's head or over
 *    its head_rows, rows out from an executor with the head and logits
 *    from one without, an executor without the head given no out.
 * Gemma 3 270M (when fetched; HINGE_TEST_GEMMA_BATCH=0 skips it): the same
 * invariances (its sessions join with their input norm, a private head
 * leaves mid-batch). meson runs it once per forced kernel variant too,
 * Gemma in the default run only (tests/device/meson.build). Without a
 * Vulkan device every test skips (77). */
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
#include "vk_exec.h"
#include "vk_fixture.h"

#ifndef HINGE_SHARED_DIR
#define HINGE_SHARED_DIR "../shared"
#endif
#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"
#define TOL 1e-5

enum { N_SESS = 5, N_STEPS = 3, CTX = 64, MAX_ROWS = 8 };

static struct {
    model *stories, *gemma;
    threadpool *tp;
} tm;

static model *load(const char *path)
{
    char err[HINGE_ERRMSG_MAX] = "";
    model *m = NULL;
    if (model_load(path, false, NULL, &m, err, sizeof err) != HINGE_OK)
        print_error("model_load(%s): %s\n", path, err);
    return m;
}

/* The device (vk_fixture), stories260K, and Gemma when fetched. */
static int setup(void **state)
{
    if (fx_setup(state) != 0 || !fx.ctx)
        return fx.ctx ? -1 : 0;
    tm.stories = load(STORIES);
    if (!tm.stories || tp_create(2, &tm.tp) != HINGE_OK)
        return -1;
    const char *env = getenv("HINGE_GEMMA_MODEL");
    char path[4096];
    snprintf(path, sizeof path, "%s/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf",
             getenv("HOME") ? getenv("HOME") : ".");
    const char *g = env && *env ? env : path;
    FILE *fp = fopen(g, "rb");
    if (fp) {
        fclose(fp);
        if (!(tm.gemma = load(g)))
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    model_free(tm.stories);
    model_free(tm.gemma);
    tp_destroy(tm.tp);
    return fx_teardown(state);
}

static void check_close(const char *what, const float *got, const float *ref, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            fail_msg("%s: a non-finite value at %zu", what, i);
        num += fabs((double)got[i] - ref[i]);
        den += fabs((double)ref[i]);
    }
    if (!(num <= TOL * den))
        fail_msg("%s: error %.3g > %.1g", what, num / den, TOL);
}

/* The sessions: layers [first, end), the head when end = N; each session's
 * steps: rows and first position (a verify step of 4 rows whose last 2 are
 * rejected, so the next step rewinds to the third). */
typedef struct sess {
    uint32_t first, end;
    bool verify;                 /* its steps after the first want every row's logits */
    uint32_t rows[N_STEPS], pos[N_STEPS];
} sess;

/* What one run of the script produced, per session and step: logits (the
 * head: the last row's, or every row's) or rows out. */
typedef struct outs {
    float *v[N_SESS][N_STEPS];
} outs;

typedef struct script {
    const model *m;
    vk_model *w;
    vk_exec *b, *ex[N_SESS];
    sess s[N_SESS];
    float *in;                   /* (N_SESS, CTX, d) input rows, by position */
} script;

static size_t out_floats(const script *sc, int i, int step)
{
    const sess *s = &sc->s[i];
    size_t d = sc->m->hp.n_embd, nv = sc->m->hp.n_vocab;
    if (s->end < sc->m->hp.n_layer)
        return s->rows[step] * d;
    return (s->verify && step > 0 ? s->rows[step] : 1) * nv;
}

static vk_exec_item item(const script *sc, const outs *o, int i, int step)
{
    const sess *s = &sc->s[i];
    bool head = s->end == sc->m->hp.n_layer;
    vk_exec_item it = {.e = sc->ex[i], .hidden = sc->in + ((size_t)i * CTX + s->pos[step]) * sc->m->hp.n_embd,
                       .n = s->rows[step], .pos0 = s->pos[step]};
    if (head) {
        it.logits = o->v[i][step];
        it.all_rows = s->verify && step > 0;
    } else {
        it.out = o->v[i][step];
    }
    return it;
}

static void run_ok(vk_exec *b, vk_exec_item *it, size_t n)
{
    hinge_status s = vk_exec_run_batch(b, it, n);
    if (s != HINGE_OK)
        fail_msg("vk_exec_run_batch: %s: %s", hinge_strerror(s), vk_exec_errmsg(b));
}

/* The script's steps, each session alone (together: the sessions in
 * reverse order, as many in one batch as its rows take: all of them, or
 * under a cap of 8 rows per dispatch, HINGE_VK_FORCE=batch=8, a few). */
static void run_script(script *sc, outs *o, bool together)
{
    for (int i = 0; i < N_SESS; i++)
        for (int step = 0; step < N_STEPS; step++) {
            o->v[i][step] = malloc(out_floats(sc, i, step) * sizeof(float));
            assert_non_null(o->v[i][step]);
        }
    uint32_t cap = together ? vk_exec_max_batch(sc->b) : 0;
    for (int step = 0; step < N_STEPS; step++) {
        vk_exec_item it[N_SESS];
        size_t n = 0;
        uint32_t rows = 0;
        for (int i = 0; i < N_SESS; i++) {
            vk_exec_item next = item(sc, o, together ? N_SESS - 1 - i : i, step);
            if (n && rows + next.n > cap) { /* alone: every item; together: a full batch */
                run_ok(sc->b, it, n);
                n = rows = 0;
            }
            it[n++] = next;
            rows += next.n;
        }
        run_ok(sc->b, it, n);
    }
}

static void free_outs(outs *o)
{
    for (int i = 0; i < N_SESS; i++)
        for (int step = 0; step < N_STEPS; step++)
            free(o->v[i][step]);
}

static void script_open(script *sc, const model *m, const uint32_t first[N_SESS], const uint32_t end[N_SESS])
{
    const model_hparams *hp = &m->hp;
    size_t d = hp->n_embd;
    char err[HINGE_ERRMSG_MAX] = "";
    memset(sc, 0, sizeof *sc);
    sc->m = m;
    vk_model_config wc = {.first = 0, .end = hp->n_layer, .head = true};
    assert_int_equal(vk_model_create(fx.ctx, m, &wc, &sc->w, err, sizeof err), HINGE_OK);
    vk_exec_config bc = {.end = hp->n_layer, .head = true, .ctx = 1, .max_batch = 32, .weights = sc->w,
                         .no_selftest = true, .head_rows = 16};
    assert_int_equal(vk_exec_create_range(fx.ctx, m, &bc, &sc->b, err, sizeof err), HINGE_OK);
    for (int i = 0; i < N_SESS; i++) {
        sess *s = &sc->s[i];
        s->first = first[i];
        s->end = end[i];
        s->verify = i == 0;
        /* a prompt of 3, then (verify) 4 rows at 3 and 3 at 5, else 2 and 1 */
        uint32_t rows[N_STEPS] = {3, s->verify ? 4 : 2, s->verify ? 3 : 1};
        uint32_t pos[N_STEPS] = {0, 3, s->verify ? 5 : 5};
        memcpy(s->rows, rows, sizeof rows);
        memcpy(s->pos, pos, sizeof pos);
        vk_exec_config c = {.first = first[i], .end = end[i], .head = end[i] == hp->n_layer, .ctx = CTX,
                            .max_batch = MAX_ROWS, .weights = sc->w, .no_selftest = true};
        if (vk_exec_create_range(fx.ctx, m, &c, &sc->ex[i], err, sizeof err) != HINGE_OK)
            fail_msg("executor [%u, %u): %s", first[i], end[i], err);
    }
    sc->in = malloc((size_t)N_SESS * CTX * d * sizeof *sc->in);
    assert_non_null(sc->in);
    for (size_t j = 0; j < (size_t)N_SESS * CTX * d; j++)
        sc->in[j] = (float)((j * 2654435761u) % 2001) / 1000.0f - 1.0f;
}

static void script_close(script *sc)
{
    for (int i = 0; i < N_SESS; i++)
        vk_exec_destroy(sc->ex[i]);
    vk_exec_destroy(sc->b);
    vk_model_destroy(sc->w);
    free(sc->in);
}

/* Alone and together: bitwise the same; returns the alone run's outputs. */
static void check_invariant(script *sc, outs *alone)
{
    outs together;
    run_script(sc, alone, false);
    run_script(sc, &together, true);
    for (int i = 0; i < N_SESS; i++)
        for (int step = 0; step < N_STEPS; step++)
            if (memcmp(alone->v[i][step], together.v[i][step], out_floats(sc, i, step) * sizeof(float)))
                fail_msg("session %d ([%u, %u)), step %d: results in a batch differ from those alone", i,
                         sc->s[i].first, sc->s[i].end, step);
    free_outs(&together);
}

/* Session 0's verify rows against one-row decode steps at their positions
 * on a fresh executor of its range (after the same prompt). */
static void check_verify_is_decode(script *sc, const outs *o)
{
    const sess *s = &sc->s[0];
    size_t nv = sc->m->hp.n_vocab, d = sc->m->hp.n_embd;
    char err[HINGE_ERRMSG_MAX] = "";
    vk_exec *e = NULL;
    vk_exec_config c = {.first = s->first, .end = s->end, .head = true, .ctx = CTX, .max_batch = MAX_ROWS,
                        .weights = sc->w, .no_selftest = true};
    assert_int_equal(vk_exec_create_range(fx.ctx, sc->m, &c, &e, err, sizeof err), HINGE_OK);
    float *lg = malloc(nv * sizeof *lg);
    vk_exec_item p = {.e = e, .hidden = sc->in, .n = s->rows[0], .pos0 = 0, .logits = lg};
    run_ok(sc->b, &p, 1);
    for (int step = 1; step < N_STEPS; step++)
        for (uint32_t r = 0; r < s->rows[step]; r++) {
            uint32_t pos = s->pos[step] + r;
            vk_exec_item one = {.e = e, .hidden = sc->in + pos * d, .n = 1, .pos0 = pos, .logits = lg};
            run_ok(sc->b, &one, 1);
            if (memcmp(lg, o->v[0][step] + r * nv, nv * sizeof *lg))
                fail_msg("verify step %d, row %u: logits differ from a decode step's at position %u", step, r, pos);
        }
    free(lg);
    vk_exec_destroy(e);
}

/* stories: every output against the CPU's layers (and head). */
static void check_cpu(script *sc, const outs *o)
{
    const model *m = sc->m;
    size_t d = m->hp.n_embd, nv = m->hp.n_vocab;
    float *h = malloc(CTX * d * sizeof *h), *want = malloc(MAX_ROWS * nv * sizeof *want);
    for (int i = 0; i < N_SESS; i++) {
        const sess *s = &sc->s[i];
        bool head = s->end == m->hp.n_layer;
        char err[HINGE_ERRMSG_MAX] = "";
        fwd_ctx *f = NULL;
        fwd_config fc = {.layer_begin = s->first, .layer_end = s->end, .ctx = CTX, .max_batch = 64};
        assert_int_equal(fwd_create(m, tm.tp, &fc, &f, err, sizeof err), HINGE_OK);
        for (int step = 0; step < N_STEPS; step++) {
            uint32_t n = s->rows[step], pos = s->pos[step];
            memcpy(h, sc->in + ((size_t)i * CTX + pos) * d, n * d * sizeof *h);
            assert_int_equal(fwd_layers(f, pos, n, h), HINGE_OK);
            if (!head) {
                if (s->first == s->end && memcmp(o->v[i][step], h, n * d * sizeof *h))
                    fail_msg("session %d: an empty range's rows are not its input", i);
                check_close("private head rows", o->v[i][step], h, n * d);
                continue;
            }
            uint32_t k = s->verify && step > 0 ? n : 1;
            assert_int_equal(fwd_head(f, h + (n - k) * d, k, want), HINGE_OK);
            check_close(k > 1 ? "verify logits" : "logits", o->v[i][step], want, k * nv);
        }
        fwd_destroy(f);
    }
    free(h);
    free(want);
}

static void test_stories(void **state)
{
    (void)state;
    fx_need_device();
    const model *m = tm.stories;
    uint32_t n = m->hp.n_layer;
    /* verify at cut 2; plain at 0; private heads J = 2 at cut 1, J = 1 at
     * 0, and J = 2 at cut 3 (no layer on the edge) */
    const uint32_t first[N_SESS] = {2, 0, 1, 0, n - 2}, end[N_SESS] = {n, n, n - 2, n - 1, n - 2};
    script sc;
    outs o;
    script_open(&sc, m, first, end);
    check_invariant(&sc, &o);
    check_verify_is_decode(&sc, &o);
    check_cpu(&sc, &o);
    free_outs(&o);

    /* refused */
    float *buf = malloc(32 * m->hp.n_vocab * sizeof *buf);
    char err[HINGE_ERRMSG_MAX] = "";
    vk_exec *b0 = NULL;
    vk_exec_config bc = {.end = n, .head = true, .ctx = 1, .max_batch = 32, .weights = sc.w, .no_selftest = true};
    assert_int_equal(vk_exec_create_range(fx.ctx, m, &bc, &b0, err, sizeof err), HINGE_OK);
    vk_exec_item bad[] = {
        {.e = sc.ex[0], .hidden = sc.in, .n = 2, .logits = buf, .all_rows = true}, /* b0 has no batch head */
        {.e = sc.ex[0], .hidden = sc.in, .n = 2, .all_rows = true},                /* all_rows, no logits */
        {.e = sc.ex[0], .hidden = sc.in, .n = 2, .out = buf},                      /* rows out with the head */
        {.e = sc.ex[2], .hidden = sc.in, .n = 2, .logits = buf, .out = buf},       /* logits without it */
        {.e = sc.ex[2], .hidden = sc.in, .n = 2},                                  /* no out */
    };
    assert_int_equal(vk_exec_run_batch(b0, &bad[0], 1), HINGE_ERR_INVALID);
    for (size_t i = 1; i < sizeof bad / sizeof bad[0]; i++)
        if (vk_exec_run_batch(sc.b, &bad[i], 1) != HINGE_ERR_INVALID)
            fail_msg("bad item %zu accepted", i);
    vk_exec_item many[3]; /* 3 x 8 verify rows: over the 16 head rows */
    for (int i = 0; i < 3; i++)
        many[i] = (vk_exec_item){.e = sc.ex[0], .hidden = sc.in, .n = 8, .logits = buf, .all_rows = true};
    assert_int_equal(vk_exec_run_batch(sc.b, many, 3), HINGE_ERR_INVALID);
    vk_exec_destroy(b0);
    free(buf);
    script_close(&sc);
}

static void test_gemma(void **state)
{
    (void)state;
    fx_need_device();
    const char *g = getenv("HINGE_TEST_GEMMA_BATCH");
    if (!tm.gemma || (g && strcmp(g, "0") == 0)) {
        print_message("skipped: no Gemma 3 270M, or HINGE_TEST_GEMMA_BATCH=0\n");
        skip();
    }
    uint32_t n = tm.gemma->hp.n_layer;
    const uint32_t first[N_SESS] = {6, 0, 3, 12, n - 4}, end[N_SESS] = {n, n, n - 4, n - 1, n - 4};
    script sc;
    outs o;
    script_open(&sc, tm.gemma, first, end);
    check_invariant(&sc, &o);
    check_verify_is_decode(&sc, &o);
    free_outs(&o);
    script_close(&sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories),
        cmocka_unit_test(test_gemma),
    };
    return fx_exit_code(cmocka_run_group_tests_name("vk_batch", tests, setup, teardown));
}
