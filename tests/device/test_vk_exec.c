/* The layer executor (device/vk_exec.c) against the CPU engine.
 *
 *  - stories260K, every cut k in 0..5: Vulkan embed + [0, k), then the CPU's
 *    fwd_layers [k, 5) + fwd_head, greedy from BOS for 200 positions, gives
 *    the oracle text exactly; at every step the hidden state after [0, k)
 *    is within TOL_HIDDEN of the CPU's own embed + [0, k).
 *  - stories260K prefill (chunks of max_batch, a remainder of one) then
 *    decode, against the CPU; bad input, an absurd context (NOMEM),
 *    profiling counters.
 *  - Gemma 3 270M (HINGE_GEMMA_MODEL, else the default cache path; skipped
 *    when absent), k in {1, 6, 12, 18} (HINGE_TEST_GEMMA_CUTS=6,18 for
 *    fewer): the first 32 greedy tokens of three prompts equal the CPU-only
 *    run's.
 *  - The edge's executors (vk_exec_create_range): layers [a, N) + head from
 *    hidden rows, logits against the CPU's fwd_layers + fwd_head; a middle
 *    range's hidden rows; the ranges and inputs refused.
 *  - Batches (vk_exec_run_batch, the edge's): seven sessions of mixed cuts
 *    (stories260K; Gemma when present), each a prompt then decode steps,
 *    give bitwise the same logits alone and in batches of 2 and 7, with
 *    each session's head and with the batch's; stories against the CPU too.
 *    Sessions whose executors are batch items' (the edge's: no products,
 *    no head) give bitwise the full executors' logits, in a fraction of
 *    their device memory; they run only in batches with the batch's head.
 *  - The start-up self-test rejects a kernel broken on purpose
 *    (HINGE_VK_SELFTEST_BREAK), naming it, the head's and the batch head's
 *    too; HINGE_VK_FORCE's cap on positions
 *    per dispatch and its errors.
 * meson runs this program once per forced kernel variant (HINGE_VK_FORCE in
 * the environment, tests/device/meson.build): every variant passes the
 * same layer tests.
 *
 * Hidden-state error: sum|got - ref| / sum|ref| over the (n, n_embd) rows.
 * TOL_HIDDEN = 1e-5 for stories (all f32). The two sides compute the same
 * products in different summation orders (and the device sums squares for
 * the norms in float where the CPU uses double): each product of n terms
 * differs by ~0.2 * u * sqrt(n) relative (u = 2^-24; see test_vk_ops.c),
 * ~5e-8 at n = 172; the rms norms' 1/sqrt and the softmax's exp add a few
 * ulp each, and five layers of residual adds carry it all forward. Measured
 * on lavapipe (printed with HINGE_TEST_VERBOSE=1): 1.4e-6 over 200 decode
 * steps, 5e-7 for prefill. The bound leaves ~7x.
 *
 * Without a Vulkan device every test skips and the program exits 77. */
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
#include "quant.h"
#include "sampler.h"
#include "vk_context.h"
#include "vk_exec.h"

#ifndef HINGE_SHARED_DIR
#define HINGE_SHARED_DIR "../shared"
#endif
#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"
#define ORACLE HINGE_SHARED_DIR "/oracles/stories260K-greedy-200.txt"

#define TOL_HIDDEN 1e-5

typedef struct fixture {
    dev_ctx *ctx;     /* NULL: no device, every test skips */
    model *stories;
    model *gemma;     /* NULL when the file is absent */
    threadpool *tp;
    char why[HINGE_ERRMSG_MAX];
} fixture;

static fixture fx;
static double worst_hidden; /* the largest error seen, for the verbose log */

static const hinge_logger logger = {.fn = hinge_log_stderr, .level = HINGE_LOG_WARN};

static const char *gemma_path(void)
{
    static char path[4096];
    const char *env = getenv("HINGE_GEMMA_MODEL");
    if (env && *env)
        return env;
    snprintf(path, sizeof path, "%s/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf",
             getenv("HOME") ? getenv("HOME") : ".");
    return path;
}

static bool verbose(void)
{
    const char *v = getenv("HINGE_TEST_VERBOSE");
    return v && strcmp(v, "1") == 0;
}

static model *load(const char *path)
{
    char err[HINGE_ERRMSG_MAX] = "";
    model *m = NULL;
    if (model_load(path, false, NULL, &m, err, sizeof err) != HINGE_OK) {
        print_error("model_load(%s): %s\n", path, err);
        return NULL;
    }
    return m;
}

static int setup(void **state)
{
    (void)state;
    dev_ctx_config cfg = {.log = &logger};
    hinge_status s = dev_ctx_create(&cfg, &fx.ctx, fx.why, sizeof fx.why);
    if (s == HINGE_ERR_UNSUPPORTED) {
        fx.ctx = NULL;
        return 0;
    }
    if (s != HINGE_OK) {
        print_error("dev_ctx_create: %s: %s\n", hinge_strerror(s), fx.why);
        return -1;
    }
    print_message("kernels: %s (HINGE_VK_FORCE=%s)\n", dev_ctx_features(fx.ctx)->name,
                  getenv("HINGE_VK_FORCE") ? getenv("HINGE_VK_FORCE") : "");
    fx.stories = load(STORIES);
    if (!fx.stories || tp_create(2, &fx.tp) != HINGE_OK)
        return -1;
    FILE *fp = fopen(gemma_path(), "rb");
    if (fp) {
        fclose(fp);
        fx.gemma = load(gemma_path());
        if (!fx.gemma)
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    model_free(fx.stories);
    model_free(fx.gemma);
    tp_destroy(fx.tp);
    dev_ctx_destroy(fx.ctx);
    return 0;
}

static void need_device(void)
{
    if (!fx.ctx) {
        print_message("skipped: %s\n", fx.why);
        skip();
    }
}

static vk_exec *exec_create(const model *m, uint32_t k, uint32_t ctx, uint32_t batch)
{
    char err[HINGE_ERRMSG_MAX] = "";
    vk_exec *e = NULL;
    hinge_status s = vk_exec_create(fx.ctx, m, k, ctx, batch, &e, err, sizeof err);
    if (s != HINGE_OK)
        fail_msg("vk_exec_create(k = %u): %s: %s", k, hinge_strerror(s), err);
    return e;
}

static fwd_ctx *stage(const model *m, uint32_t a, uint32_t b, uint32_t ctx)
{
    char err[HINGE_ERRMSG_MAX] = "";
    fwd_ctx *f = NULL;
    fwd_config c = {.layer_begin = a, .layer_end = b, .ctx = ctx, .max_batch = 64};
    if (fwd_create(m, fx.tp, &c, &f, err, sizeof err) != HINGE_OK)
        fail_msg("fwd_create: %s", err);
    return f;
}

static void run_ok(vk_exec *e, const int32_t *t, size_t n, uint32_t pos0, float *h)
{
    hinge_status s = vk_exec_run(e, t, n, pos0, h);
    if (s != HINGE_OK)
        fail_msg("vk_exec_run(n = %zu, pos0 = %u): %s: %s", n, pos0, hinge_strerror(s), vk_exec_errmsg(e));
}

static double nerr(const float *got, const float *ref, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            return INFINITY;
        num += fabs((double)got[i] - ref[i]);
        den += fabs((double)ref[i]);
    }
    return den > 0 ? num / den : num;
}

static void check_hidden(const char *what, const float *got, const float *ref, size_t n)
{
    double err = nerr(got, ref, n);
    worst_hidden = err > worst_hidden ? err : worst_hidden;
    if (!(err <= TOL_HIDDEN))
        fail_msg("%s: hidden-state error %.3g > %.1g", what, err, TOL_HIDDEN);
}

static char *read_all(const char *path)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *buf = calloc(1, 1 << 16);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 16) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

/* ---- stories260K ---- */

/* Greedy from BOS for 200 positions with the cut at k; every step's hidden
 * state also against the CPU's [0, k). */
static void stories_cut(uint32_t k, const char *want)
{
    const model *m = fx.stories;
    const model_hparams *hp = &m->hp;
    size_t d = hp->n_embd;
    vk_exec *e = exec_create(m, k, 256, 16);
    fwd_ctx *lo = stage(m, 0, k, 256), *hi = stage(m, k, hp->n_layer, 256);
    float *h = malloc(d * sizeof *h), *ref = malloc(d * sizeof *ref), *logits = malloc(hp->n_vocab * sizeof *logits);
    sampler *smp = NULL;
    sampler_params sp = {.temp = 0};
    assert_int_equal(sampler_create(&sp, hp->n_vocab, &smp), HINGE_OK);
    int32_t tokens[201] = {tok_bos(m->tok)};
    char *text = calloc(1, 1 << 16);
    size_t len = 0;
    char what[64];
    for (uint32_t pos = 0; pos < 200; pos++) {
        run_ok(e, &tokens[pos], 1, pos, h);
        assert_int_equal(fwd_embed(lo, &tokens[pos], 1, ref), HINGE_OK);
        assert_int_equal(fwd_layers(lo, pos, 1, ref), HINGE_OK);
        snprintf(what, sizeof what, "k = %u, position %u", k, pos);
        check_hidden(what, h, ref, d);
        assert_int_equal(fwd_layers(hi, pos, 1, h), HINGE_OK);
        assert_int_equal(fwd_head(hi, h, 1, logits), HINGE_OK);
        tokens[pos + 1] = sampler_sample(smp, logits);
        len += tok_piece(m->tok, tokens[pos + 1], tokens[pos] == tok_bos(m->tok), text + len, 256);
    }
    if (strcmp(text, want) != 0)
        fail_msg("k = %u: the text differs from the oracle:\n%s", k, text);
    vk_exec_stats st;
    vk_exec_get_stats(e, &st);
    assert_int_equal(st.submits, 1);
    assert_int_equal(st.waits, 1);
    assert_int_equal(st.recorded, 0);
    sampler_destroy(smp);
    free(text);
    free(h);
    free(ref);
    free(logits);
    fwd_destroy(lo);
    fwd_destroy(hi);
    vk_exec_destroy(e);
}

static void test_stories_oracle_every_k(void **state)
{
    (void)state;
    need_device();
    char *want = read_all(ORACLE);
    worst_hidden = 0.0;
    for (uint32_t k = 0; k <= fx.stories->hp.n_layer; k++)
        stories_cut(k, want);
    if (verbose())
        print_message("stories260K decode: worst hidden-state error %.3g\n", worst_hidden);
    free(want);
}

/* A 40-position prompt in chunks of 16 (16 + 16 + 8), then 5 decode steps
 * and a rewind: every hidden row against the CPU. */
static void test_stories_prefill(void **state)
{
    (void)state;
    need_device();
    const model *m = fx.stories;
    const model_hparams *hp = &m->hp;
    enum { N = 40, STEPS = 5 };
    size_t d = hp->n_embd;
    int32_t toks[N + STEPS];
    for (int i = 0; i < N + STEPS; i++)
        toks[i] = i == 0 ? 1 : (int32_t)((i * 37 + 11) % hp->n_vocab);
    float *h = malloc(N * d * sizeof *h), *ref = malloc(N * d * sizeof *ref);
    worst_hidden = 0.0;
    for (uint32_t k = 1; k <= hp->n_layer; k += 2) {
        vk_exec *e = exec_create(m, k, 64, 16);
        fwd_ctx *f = stage(m, 0, k, 64);
        if (k == 1 && verbose())
            print_message("kernels: %s\n", vk_exec_describe(e));
        run_ok(e, toks, N, 0, h);
        vk_exec_stats st;
        vk_exec_get_stats(e, &st);
        uint32_t b = vk_exec_max_batch(e); /* 16, or a forced cap */
        assert_true(b >= 1 && b <= 16);
        assert_int_equal(st.chunks, (N + b - 1) / b);
        assert_int_equal(st.submits, st.chunks);
        assert_int_equal(fwd_embed(f, toks, N, ref), HINGE_OK);
        assert_int_equal(fwd_layers(f, 0, N, ref), HINGE_OK);
        check_hidden("prefill", h, ref, N * d);
        for (uint32_t i = 0; i < STEPS; i++) {
            run_ok(e, &toks[N + i], 1, N + i, h);
            assert_int_equal(fwd_embed(f, &toks[N + i], 1, ref), HINGE_OK);
            assert_int_equal(fwd_layers(f, N + i, 1, ref), HINGE_OK);
            check_hidden("decode after prefill", h, ref, d);
        }
        /* rewind: positions 30.. again with other tokens */
        run_ok(e, toks + 3, 12, 30, h);
        assert_int_equal(fwd_embed(f, toks + 3, 12, ref), HINGE_OK);
        assert_int_equal(fwd_layers(f, 30, 12, ref), HINGE_OK);
        check_hidden("rewound prefill", h, ref, 12 * d);
        fwd_destroy(f);
        vk_exec_destroy(e);
    }
    if (verbose())
        print_message("stories260K prefill: worst hidden-state error %.3g\n", worst_hidden);
    free(h);
    free(ref);
}

static void test_bad_input(void **state)
{
    (void)state;
    need_device();
    const model *m = fx.stories;
    char err[HINGE_ERRMSG_MAX] = "";
    vk_exec *e = NULL;
    assert_int_equal(vk_exec_create(fx.ctx, m, m->hp.n_layer + 1, 16, 4, &e, err, sizeof err), HINGE_ERR_INVALID);
    assert_null(e);
    assert_non_null(strstr(err, "layers"));
    e = exec_create(m, 2, 16, 4);
    assert_int_equal(vk_exec_ctx(e), 16);
    assert_int_equal(vk_exec_layers(e), 2);
    float h[64 * 8];
    int32_t toks[3] = {1, 5, (int32_t)m->hp.n_vocab};
    assert_int_equal(vk_exec_run(e, toks, 3, 0, h), HINGE_ERR_RANGE);
    assert_non_null(strstr(vk_exec_errmsg(e), "outside the vocabulary"));
    toks[2] = -1;
    assert_int_equal(vk_exec_run(e, toks, 3, 0, h), HINGE_ERR_RANGE);
    assert_int_equal(vk_exec_run(e, toks, 2, 15, h), HINGE_ERR_RANGE);
    assert_non_null(strstr(vk_exec_errmsg(e), "context"));
    assert_int_equal(vk_exec_run(e, toks, 0, 0, h), HINGE_ERR_INVALID);
    run_ok(e, toks, 2, 14, h); /* the last two positions fit */
    vk_exec_destroy(e);
    vk_exec_destroy(NULL);
}

/* A context no device holds: a clear NOMEM, nothing leaked or half-built. */
static void test_out_of_memory(void **state)
{
    (void)state;
    need_device();
    char err[HINGE_ERRMSG_MAX] = "";
    vk_exec *e = NULL;
    hinge_status s = vk_exec_create(fx.ctx, fx.stories, 5, 1u << 24, 16, &e, err, sizeof err);
    assert_int_equal(s, HINGE_ERR_NOMEM);
    assert_null(e);
    assert_non_null(strstr(err, "KV cache"));
    if (verbose())
        print_message("absurd context: %s\n", err);
    assert_int_equal(vk_exec_create(fx.ctx, fx.stories, 5, (1u << 24) + 1, 16, &e, err, sizeof err),
                     HINGE_ERR_INVALID);
    /* the context still works */
    e = exec_create(fx.stories, 5, 32, 4);
    float h[64];
    int32_t t = 1;
    run_ok(e, &t, 1, 0, h);
    vk_exec_destroy(e);
}

/* A weight type the shaders do not read (bf16) is UNSUPPORTED, naming the
 * tensor, when its layer is on the device, and no obstacle when it is not. */
static void test_unsupported_weight(void **state)
{
    (void)state;
    need_device();
    model m = *fx.stories;
    layer_weights *layers = malloc(m.hp.n_layer * sizeof *layers);
    assert_non_null(layers);
    memcpy(layers, fx.stories->layers, m.hp.n_layer * sizeof *layers);
    layers[1].w_down.type = QT_BF16;
    m.layers = layers;
    char err[HINGE_ERRMSG_MAX] = "";
    vk_exec *e = NULL;
    assert_int_equal(vk_exec_create(fx.ctx, &m, 2, 16, 4, &e, err, sizeof err), HINGE_ERR_UNSUPPORTED);
    assert_null(e);
    assert_non_null(strstr(err, "bf16"));
    assert_non_null(strstr(err, "ffn_down"));
    if (verbose())
        print_message("bf16 weights: %s\n", err);
    e = exec_create(&m, 1, 16, 4);
    float h[64];
    int32_t t = 1;
    run_ok(e, &t, 1, 0, h);
    vk_exec_destroy(e);
    free(layers);
}

/* Profiled decode and prefill: one time per op, layers summing to the
 * total; one submit and one wait per decode step, nothing recorded. */
static void test_profiling(void **state)
{
    (void)state;
    need_device();
    const model *m = fx.stories;
    vk_exec *e = exec_create(m, 5, 64, 16);
    hinge_status s = vk_exec_set_profiling(e, true);
    if (s == HINGE_ERR_UNSUPPORTED) {
        print_message("skipped: %s\n", vk_exec_errmsg(e));
        vk_exec_destroy(e);
        skip();
    }
    assert_int_equal(s, HINGE_OK);
    float h[64 * 10];
    int32_t toks[10] = {1, 20, 30, 40, 50, 60, 70, 80, 90, 100};
    double layers[6];
    run_ok(e, toks, 10, 0, h);
    vk_exec_stats st;
    vk_exec_get_stats(e, &st);
    assert_int_equal(st.recorded, st.chunks); /* one, or more under a forced cap on positions */
    assert_int_equal(st.chunks, (10 + vk_exec_max_batch(e) - 1) / vk_exec_max_batch(e));
    assert_int_equal(vk_exec_layer_times(e, layers), HINGE_OK);
    run_ok(e, toks, 1, 10, h);
    vk_exec_get_stats(e, &st);
    assert_int_equal(st.positions, 1);
    assert_int_equal(st.submits, 1);
    assert_int_equal(st.waits, 1);
    assert_int_equal(st.recorded, 0);
    assert_true(st.dispatches >= 1 + 5); /* a small layer may be one dispatch (layer.comp) */
    assert_true(st.gpu_ns > 0 && st.gpu_ns <= st.wall_ns);
    uint32_t dispatches = 0;
    double sum = 0;
    for (uint32_t i = 0; i < vk_exec_op_count(e); i++) {
        vk_exec_op_info oi;
        assert_int_equal(vk_exec_op(e, i, &oi), HINGE_OK);
        assert_true(oi.layer >= -1 && oi.layer < 5 && oi.name);
        dispatches += oi.dispatches;
        sum += oi.ns;
    }
    assert_int_equal(dispatches, st.dispatches);
    assert_int_equal(vk_exec_layer_times(e, layers), HINGE_OK);
    double lsum = 0;
    for (int i = 0; i < 6; i++)
        lsum += layers[i];
    assert_true(fabs(lsum - sum) <= 1e-6 * sum + 1.0 && fabs(sum - st.gpu_ns) <= 1e-6 * sum + 1.0);
    vk_exec_op_info oi;
    assert_int_equal(vk_exec_op(e, vk_exec_op_count(e), &oi), HINGE_ERR_RANGE);
    assert_int_equal(vk_exec_set_profiling(e, false), HINGE_OK);
    run_ok(e, toks, 1, 11, h);
    assert_int_equal(vk_exec_layer_times(e, layers), HINGE_ERR_INVALID);
    vk_exec_destroy(e);
}

/* ---- the self-test, HINGE_VK_FORCE ---- */

/* Restores HINGE_VK_FORCE after a test changed it. */
static char saved_force[256];
static void save_force(void)
{
    const char *v = getenv("HINGE_VK_FORCE");
    snprintf(saved_force, sizeof saved_force, "%s", v ? v : "");
}
/* HINGE_VK_FORCE = the variant's own list, then more. */
static void force_more(const char *more)
{
    char v[512];
    snprintf(v, sizeof v, "%s%s%s", saved_force, saved_force[0] ? "," : "", more);
    setenv("HINGE_VK_FORCE", v, 1);
}
static void restore_force(void)
{
    if (saved_force[0])
        setenv("HINGE_VK_FORCE", saved_force, 1);
    else
        unsetenv("HINGE_VK_FORCE");
}

/* An executor of m's last layer and head (head_rows: the batch head's rows)
 * with op broken on purpose: refused naming it where rejected, else made. */
static void head_rejected(const model *m, const char *op, uint32_t head_rows, bool rejected)
{
    const model_hparams *hp = &m->hp;
    setenv("HINGE_VK_SELFTEST_BREAK", op, 1);
    vk_exec_config c = {.first = hp->n_layer - 1, .end = hp->n_layer, .head = true, .ctx = 32, .max_batch = 8,
                        .head_rows = head_rows};
    char err[HINGE_ERRMSG_MAX] = "", want[64];
    vk_exec *e = NULL;
    hinge_status s = vk_exec_create_range(fx.ctx, m, &c, &e, err, sizeof err);
    vk_exec_destroy(e);
    if (!rejected) {
        assert_int_equal(s, HINGE_OK);
        return;
    }
    assert_int_equal(s, HINGE_ERR_UNSUPPORTED);
    snprintf(want, sizeof want, "self-test: %s (layer %u, ", op, hp->n_layer);
    if (!strstr(err, want))
        fail_msg("breaking %s: %s", op, err);
    if (verbose())
        print_message("%s\n", err);
}

/* A kernel broken on purpose (a test-only switch) is caught at creation,
 * by name, and the executor refused; with the self-test off it is not. */
static void test_selftest_rejects(void **state)
{
    (void)state;
    need_device();
    save_force();
    static const char *const ops[] = {"embed", "qkv_rope", "attention", "wo", "ffn_gate_up", "ffn_down",
                                      "rope_kv", "qkv", "ffn_glu", "layer"};
    uint32_t broken = 0;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        setenv("HINGE_VK_SELFTEST_BREAK", ops[i], 1);
        char err[HINGE_ERRMSG_MAX] = "", want[64];
        vk_exec *e = NULL;
        hinge_status s = vk_exec_create(fx.ctx, fx.stories, 2, 32, 8, &e, err, sizeof err);
        if (s == HINGE_OK) { /* not a step of this variant (ffn_glu: gate and up fused; qkv: fused; layer:
                                whole layers off) */
            vk_exec_destroy(e);
            continue;
        }
        assert_int_equal(s, HINGE_ERR_UNSUPPORTED);
        assert_null(e);
        snprintf(want, sizeof want, "self-test: %s ", ops[i]);
        if (!strstr(err, want))
            fail_msg("breaking %s: %s", ops[i], err);
        if (verbose())
            print_message("%s\n", err);
        broken++;
    }
    assert_true(broken >= 5); /* embed, attention, wo, ffn_gate_up or its parts, ffn_down at least */
    /* with the head (the edge's batch executor): its product on one row, and
     * with head_rows the batch head's on several; a batch head is checked
     * only where there is one */
    static const char *const heads[] = {"head", "batch_head"};
    for (uint32_t rows = 0; rows <= 4; rows += 4)
        for (size_t i = 0; i < 2; i++)
            head_rejected(fx.stories, heads[i], rows, !(i == 1 && rows == 0));
    /* Gemma's head (262144 rows) is checked on windows of its rows (the
     * Gemma batch runs only: time) */
    const char *g = getenv("HINGE_TEST_GEMMA_BATCH");
    for (size_t i = 0; fx.gemma && !(g && strcmp(g, "0") == 0) && i < 2; i++)
        head_rejected(fx.gemma, heads[i], 4, true);
    setenv("HINGE_VK_SELFTEST_BREAK", "ffn_down", 1);
    force_more("selftest=0");
    vk_exec *e = exec_create(fx.stories, 2, 32, 8);
    vk_exec_destroy(e);
    unsetenv("HINGE_VK_SELFTEST_BREAK");
    restore_force();
}

/* batch=N caps the positions of a prefill dispatch (the executor's passes);
 * a malformed list is an error that names it. */
static void test_force(void **state)
{
    (void)state;
    need_device();
    save_force();
    force_more("batch=4");
    const model *m = fx.stories;
    vk_exec *e = exec_create(m, 3, 32, 16);
    assert_int_equal(vk_exec_max_batch(e), 4);
    int32_t toks[10] = {1, 20, 30, 40, 50, 60, 70, 80, 90, 100};
    float h[64 * 10], ref[64 * 10];
    run_ok(e, toks, 10, 0, h);
    vk_exec_stats st;
    vk_exec_get_stats(e, &st);
    assert_int_equal(st.chunks, 3);
    fwd_ctx *f = stage(m, 0, 3, 32);
    assert_int_equal(fwd_embed(f, toks, 10, ref), HINGE_OK);
    assert_int_equal(fwd_layers(f, 0, 10, ref), HINGE_OK);
    check_hidden("prefill in chunks of 4", h, ref, 10 * 64);
    fwd_destroy(f);
    vk_exec_destroy(e);
    static const char *const bad[] = {"matvec=fast", "batch=0", "subgroup", "fuse=2", "colour=blue"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        force_more(bad[i]);
        char err[HINGE_ERRMSG_MAX] = "";
        e = NULL;
        assert_int_equal(vk_exec_create(fx.ctx, m, 1, 16, 4, &e, err, sizeof err), HINGE_ERR_INVALID);
        assert_null(e);
        assert_non_null(strstr(err, "HINGE_VK_FORCE"));
    }
    restore_force();
}

/* ---- the edge's executors: a layer range, hidden rows in ---- */

static vk_exec *range_create(const model *m, uint32_t first, uint32_t end, bool head, const vk_model *w)
{
    char err[HINGE_ERRMSG_MAX] = "";
    vk_exec *e = NULL;
    vk_exec_config c = {.first = first, .end = end, .head = head, .ctx = 64, .max_batch = 8, .weights = w};
    hinge_status s = vk_exec_create_range(fx.ctx, m, &c, &e, err, sizeof err);
    if (s != HINGE_OK)
        fail_msg("vk_exec_create_range([%u, %u)): %s: %s", first, end, hinge_strerror(s), err);
    return e;
}

static void run_hidden_ok(vk_exec *e, const float *h, size_t n, uint32_t pos0, float *out)
{
    hinge_status s = vk_exec_run_hidden(e, h, n, pos0, out);
    if (s != HINGE_OK)
        fail_msg("vk_exec_run_hidden(n = %zu, pos0 = %u): %s: %s", n, pos0, hinge_strerror(s), vk_exec_errmsg(e));
}

/* The CPU's hidden rows after [0, a) for toks[0 .. n) at pos0 (lo holds [0, a)). */
static void cpu_rows(fwd_ctx *lo, const int32_t *toks, size_t n, uint32_t pos0, float *h)
{
    assert_int_equal(fwd_embed(lo, toks, n, h), HINGE_OK);
    assert_int_equal(fwd_layers(lo, pos0, n, h), HINGE_OK);
}

/* Layers [a, N) + head from hidden rows against the CPU's fwd_layers [a, N)
 * + fwd_head: a 20-position prompt (chunks 8 + 8 + 4) with its logits, one
 * without (the head skipped), decode steps, at a = 0 (the edge's thin
 * clients), inside, and N (the head alone); the executors of a = 0 and N
 * borrow one shared vk_model, a = 2's uploads its own. Logits within
 * TOL_HIDDEN too: one more product of n_embd terms and a norm on top of
 * the layers'. */
static void test_range_head(void **state)
{
    (void)state;
    need_device();
    const model *m = fx.stories;
    const model_hparams *hp = &m->hp;
    enum { N = 20, STEPS = 4 };
    size_t d = hp->n_embd;
    int32_t toks[N + STEPS];
    for (int i = 0; i < N + STEPS; i++)
        toks[i] = i == 0 ? 1 : (int32_t)((i * 53 + 7) % hp->n_vocab);
    float *in = malloc(N * d * sizeof *in), *h = malloc(N * d * sizeof *h);
    float *got = malloc(hp->n_vocab * sizeof *got), *ref = malloc(hp->n_vocab * sizeof *ref);
    char err[HINGE_ERRMSG_MAX] = "";
    vk_model *w = NULL, *w2 = NULL;
    vk_model_config wc = {.first = 0, .end = hp->n_layer, .head = true};
    assert_int_equal(vk_model_create(fx.ctx, m, &wc, &w, err, sizeof err), HINGE_OK);
    const uint32_t firsts[] = {0, 2, hp->n_layer};
    for (size_t c = 0; c < sizeof firsts / sizeof firsts[0]; c++) {
        uint32_t a = firsts[c];
        vk_exec *e = range_create(m, a, hp->n_layer, true, a == 2 ? NULL : w);
        fwd_ctx *lo = stage(m, 0, a, 64), *hi = stage(m, a, hp->n_layer, 64);
        cpu_rows(lo, toks, N, 0, in);
        memcpy(h, in, N * d * sizeof *h);
        assert_int_equal(fwd_layers(hi, 0, N, h), HINGE_OK);
        assert_int_equal(fwd_head(hi, h + (N - 1) * d, 1, ref), HINGE_OK);
        run_hidden_ok(e, in, N, 0, got);
        check_hidden("range prefill logits", got, ref, hp->n_vocab);
        run_hidden_ok(e, in, N, 0, NULL); /* again, no logits wanted: the same cache rows */
        for (uint32_t i = 0; i < STEPS; i++) {
            cpu_rows(lo, &toks[N + i], 1, N + i, in);
            memcpy(h, in, d * sizeof *h);
            assert_int_equal(fwd_layers(hi, N + i, 1, h), HINGE_OK);
            assert_int_equal(fwd_head(hi, h, 1, ref), HINGE_OK);
            run_hidden_ok(e, in, 1, N + i, got);
            check_hidden("range decode logits", got, ref, hp->n_vocab);
        }
        /* the wrong kind of input */
        assert_int_equal(vk_exec_run(e, toks, 1, 0, got), HINGE_ERR_INVALID);
        assert_non_null(strstr(vk_exec_errmsg(e), "hidden rows"));
        assert_int_equal(vk_exec_run_hidden(e, NULL, 1, 0, got), HINGE_ERR_INVALID);
        assert_int_equal(vk_exec_run_hidden(e, in, 1, 64, got), HINGE_ERR_RANGE);
        fwd_destroy(lo);
        fwd_destroy(hi);
        vk_exec_destroy(e);
    }
    /* a middle range without the head: the hidden rows out */
    vk_exec *e = range_create(m, 1, 3, false, w);
    fwd_ctx *lo = stage(m, 0, 1, 64), *mid = stage(m, 1, 3, 64);
    cpu_rows(lo, toks, N, 0, in);
    memcpy(h, in, N * d * sizeof *h);
    assert_int_equal(fwd_layers(mid, 0, N, h), HINGE_OK);
    float *out = malloc(N * d * sizeof *out);
    run_hidden_ok(e, in, N, 0, out);
    check_hidden("range [1, 3) prefill", out, h, N * d);
    assert_int_equal(vk_exec_run_hidden(e, in, 1, 0, NULL), HINGE_ERR_INVALID);
    free(out);
    fwd_destroy(lo);
    fwd_destroy(mid);
    vk_exec_destroy(e);
    /* ranges the executor refuses, and weights that do not cover them */
    wc.first = 2;
    assert_int_equal(vk_model_create(fx.ctx, m, &wc, &w2, err, sizeof err), HINGE_OK);
    vk_exec_config bad[] = {
        {.first = 1, .end = hp->n_layer, .head = true, .weights = w2}, /* layer 1 not uploaded */
        {.first = 0, .end = 2, .embed = true, .weights = w},   /* no embedding uploaded */
        {.first = 1, .end = 3, .embed = true},          /* the embedding needs first = 0 */
        {.first = 0, .end = 3, .head = true},           /* the head needs end = N */
        {.first = 3, .end = 2},                         /* backwards */
        {.first = 0, .end = hp->n_layer + 1},           /* beyond the model */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e = NULL;
        assert_int_equal(vk_exec_create_range(fx.ctx, m, &bad[i], &e, err, sizeof err), HINGE_ERR_INVALID);
        assert_null(e);
    }
    vk_model_destroy(w);
    vk_model_destroy(w2);
    free(in);
    free(h);
    free(got);
    free(ref);
}

/* ---- batches (vk_exec_run_batch, the edge's) ---- */

enum { B_SESS = 7, B_STEPS = 4, B_CTX = 64 };

/* Seven sessions of mixed cuts, each a prefill then decode steps with
 * logits at every step, run (1) each alone, (2) sessions 0 and 1 together,
 * (3) all seven together: every session's logits bitwise equal in the
 * three (batch invariance: a row's products, norms, attention and head do
 * not depend on the batch's other rows). The products' m ranges over the
 * pipelines dev_op_record picks by m (few_rows: 1, 2, 4 ... up to the full
 * count of positions per workgroup): alone 1 to 3 rows; the stories cuts give 1, 2,
 * 4, 5, 6, 7 rows by layer in the seven's decode steps, 7, 9 and 10 in
 * their prompt step, 7 at the batch's head. With ref, the alone run's logits
 * are also checked against the CPU's fwd_layers [cut, N) + fwd_head.
 * head_rows: the batch's head (0: each session's own). item: the sessions'
 * executors are batch items' (vk_exec_config.batch_item, the edge's: no
 * products, no head), needing head_rows. Returns the alone run's logits
 * (B_SESS x B_STEPS x n_vocab; the caller frees them). */
static float *batch_sessions(const model *m, const uint32_t cuts[B_SESS], uint32_t head_rows, bool ref, bool item)
{
    const model_hparams *hp = &m->hp;
    size_t d = hp->n_embd, nv = hp->n_vocab;
    char err[HINGE_ERRMSG_MAX] = "";
    vk_model *w = NULL;
    vk_model_config wc = {.first = 0, .end = hp->n_layer, .head = true};
    assert_int_equal(vk_model_create(fx.ctx, m, &wc, &w, err, sizeof err), HINGE_OK);
    vk_exec *b = NULL, *ex[B_SESS];
    vk_exec_config bc = {.end = hp->n_layer, .head = true, .ctx = 1, .max_batch = 32, .weights = w,
                         .no_selftest = true, .head_rows = head_rows, .few_rows = true};
    assert_int_equal(vk_exec_create_range(fx.ctx, m, &bc, &b, err, sizeof err), HINGE_OK);
    uint32_t cap = vk_exec_max_batch(b), len[B_SESS]; /* HINGE_VK_FORCE=batch=8: prompts of 8 rows in all */
    for (int i = 0; i < B_SESS; i++) {
        vk_exec_config c = {.first = cuts[i], .end = hp->n_layer, .head = true, .ctx = B_CTX, .max_batch = 8,
                            .weights = w, .no_selftest = true, .batch_item = item};
        assert_int_equal(vk_exec_create_range(fx.ctx, m, &c, &ex[i], err, sizeof err), HINGE_OK);
        len[i] = cap >= 16 ? 1 + (uint32_t)i % 3 : 1 + (i == 1);
    }
    /* input rows: a prompt of len[i] rows at step 0, one row after */
    float *in = malloc((size_t)B_SESS * (3 + B_STEPS) * d * sizeof *in);
    for (size_t j = 0; j < (size_t)B_SESS * (3 + B_STEPS) * d; j++)
        in[j] = (float)((j * 2654435761u) % 2001) / 1000.0f - 1.0f;
    float *alone = malloc((size_t)B_SESS * B_STEPS * nv * sizeof *alone);
    float *got = malloc((size_t)B_SESS * B_STEPS * nv * sizeof *got);
    static const int groups[3] = {1, 2, B_SESS}; /* sessions run together */
    for (int g = 0; g < 3; g++) {
        int n_sess = g == 0 ? B_SESS : groups[g];
        float *out = g == 0 ? alone : got;
        for (int s0 = 0; s0 < n_sess; s0 += groups[g])
            for (int step = 0; step < B_STEPS; step++) {
                vk_exec_item it[B_SESS];
                size_t n = 0;
                for (int i = s0; i < s0 + groups[g]; i++) {
                    uint32_t rows = step == 0 ? len[i] : 1, pos = step == 0 ? 0 : len[i] + step - 1;
                    it[n++] = (vk_exec_item){.e = ex[i], .hidden = in + ((size_t)i * (3 + B_STEPS) + pos) * d,
                                             .n = rows, .pos0 = pos, .logits = out + ((size_t)i * B_STEPS + step) * nv};
                }
                hinge_status s = vk_exec_run_batch(b, it, n);
                if (s != HINGE_OK)
                    fail_msg("vk_exec_run_batch: %s: %s", hinge_strerror(s), vk_exec_errmsg(b));
            }
        for (int i = 0; g > 0 && i < n_sess; i++)
            if (memcmp(got + (size_t)i * B_STEPS * nv, alone + (size_t)i * B_STEPS * nv, B_STEPS * nv * sizeof *got))
                fail_msg("cut %u: logits in a batch of %d differ from those alone", cuts[i], groups[g]);
    }
    for (int i = 0; ref && i < B_SESS; i++) {
        fwd_ctx *f = stage(m, cuts[i], hp->n_layer, B_CTX);
        float *h = malloc((3 + B_STEPS) * d * sizeof *h), *want = malloc(nv * sizeof *want);
        memcpy(h, in + (size_t)i * (3 + B_STEPS) * d, (len[i] + B_STEPS - 1) * d * sizeof *h);
        for (int step = 0; step < B_STEPS; step++) {
            uint32_t rows = step == 0 ? len[i] : 1, pos = step == 0 ? 0 : len[i] + step - 1;
            assert_int_equal(fwd_layers(f, pos, rows, h + pos * d), HINGE_OK);
            assert_int_equal(fwd_head(f, h + (pos + rows - 1) * d, 1, want), HINGE_OK);
            check_hidden("batch logits", alone + ((size_t)i * B_STEPS + step) * nv, want, nv);
        }
        free(h);
        free(want);
        fwd_destroy(f);
    }
    /* refused: more rows than the batch executor's, an executor of another kind */
    vk_exec_item big = {.e = ex[0], .hidden = in, .n = cap + 1};
    assert_int_equal(vk_exec_run_batch(b, &big, 1), HINGE_ERR_INVALID);
    vk_exec_item self = {.e = b, .hidden = in, .n = 1};
    assert_int_equal(vk_exec_run_batch(ex[2], &self, 1), HINGE_ERR_INVALID); /* ex[2]: first > 0 */
    if (item) { /* a batch item's executor runs only in a batch, and its logits only from the batch's head */
        assert_int_equal(vk_exec_run_hidden(ex[0], in, 1, 0, got), HINGE_ERR_INVALID);
        vk_exec *own = NULL;
        bc.head_rows = 0;
        assert_int_equal(vk_exec_create_range(fx.ctx, m, &bc, &own, err, sizeof err), HINGE_OK);
        vk_exec_item want = {.e = ex[0], .hidden = in, .n = 1, .logits = got};
        assert_int_equal(vk_exec_run_batch(own, &want, 1), HINGE_ERR_INVALID);
        assert_non_null(strstr(vk_exec_errmsg(own), "no head"));
        want.logits = NULL; /* without logits it runs (a prompt's chunk) */
        assert_int_equal(vk_exec_run_batch(own, &want, 1), HINGE_OK);
        vk_exec_destroy(own);
    }
    for (int i = 0; i < B_SESS; i++)
        vk_exec_destroy(ex[i]);
    vk_exec_destroy(b);
    vk_model_destroy(w);
    free(in);
    free(got);
    return alone;
}

/* A batch item's executor holds a fraction of a full one's device memory
 * (no products' activations, no head, no readback); made without shared
 * weights or with an embedding, it is refused. */
static void batch_item_memory(const model *m)
{
    const model_hparams *hp = &m->hp;
    char err[HINGE_ERRMSG_MAX] = "";
    vk_model *w = NULL;
    vk_model_config wc = {.first = 0, .end = hp->n_layer, .head = true};
    assert_int_equal(vk_model_create(fx.ctx, m, &wc, &w, err, sizeof err), HINGE_OK);
    vk_exec_config c = {.first = 1, .end = hp->n_layer, .head = true, .ctx = B_CTX, .max_batch = 64,
                        .weights = w, .no_selftest = true};
    vk_exec *full = NULL, *item = NULL;
    assert_int_equal(vk_exec_create_range(fx.ctx, m, &c, &full, err, sizeof err), HINGE_OK);
    c.batch_item = true;
    assert_int_equal(vk_exec_create_range(fx.ctx, m, &c, &item, err, sizeof err), HINGE_OK);
    uint64_t kv = vk_exec_kv_bytes(m, hp->n_layer - 1, B_CTX), fb = vk_exec_device_bytes(full),
             ib = vk_exec_device_bytes(item);
    if (verbose())
        print_message("device bytes beyond the KV cache: full %llu, batch item %llu\n",
                      (unsigned long long)(fb - kv), (unsigned long long)(ib - kv));
    assert_true(ib >= kv && fb > kv);
    assert_true((ib - kv) * 2 < fb - kv);
    assert_int_equal(vk_exec_op_count(item), 0); /* no decode pass */
    vk_exec_destroy(full);
    vk_exec_destroy(item);
    vk_exec_config bad[] = {
        {.first = 1, .end = hp->n_layer, .head = true, .batch_item = true}, /* no shared weights */
        {.first = 1, .end = hp->n_layer, .weights = w, .batch_item = true}, /* no head */
        {.first = 0, .end = hp->n_layer, .head = true, .embed = true, .weights = w, .batch_item = true},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        item = NULL;
        assert_int_equal(vk_exec_create_range(fx.ctx, m, &bad[i], &item, err, sizeof err), HINGE_ERR_INVALID);
        assert_null(item);
    }
    vk_model_destroy(w);
}

static void test_batch(void **state)
{
    (void)state;
    need_device();
    const uint32_t stories_cuts[B_SESS] = {0, 2, 5, 1, 3, 2, 4};
    free(batch_sessions(fx.stories, stories_cuts, 0, true, false));
    float *full = batch_sessions(fx.stories, stories_cuts, 16, true, false);
    float *item = batch_sessions(fx.stories, stories_cuts, 16, true, true); /* the edge's */
    /* the same kernels on the same rows: bitwise the same logits */
    assert_memory_equal(item, full, (size_t)B_SESS * B_STEPS * fx.stories->hp.n_vocab * sizeof *full);
    free(full);
    free(item);
    batch_item_memory(fx.stories);
    /* Gemma's shapes take the tiled kernels on GPU-shaped variants; the
     * suite runs them in the default and `gpu` runs only (time) */
    const char *g = getenv("HINGE_TEST_GEMMA_BATCH");
    if (!fx.gemma || (g && strcmp(g, "0") == 0))
        return;
    const uint32_t gemma_cuts[B_SESS] = {6, 0, 12, 18, 3, 6, 17};
    free(batch_sessions(fx.gemma, gemma_cuts, 16, false, true)); /* the edge's */
    batch_item_memory(fx.gemma);
}

/* ---- Gemma 3 270M ---- */

enum { G_NEW = 32, G_CTX = 128 };

/* Greedy continuation of prompt (n tokens): G_NEW tokens into out. With e,
 * embed + [0, k) run on the device and f holds [k, N); without, f holds
 * everything. */
static void gemma_greedy(vk_exec *e, fwd_ctx *f, const int32_t *prompt, size_t n, int32_t *out)
{
    const model *m = fx.gemma;
    size_t d = m->hp.n_embd;
    float *h = malloc(n * d * sizeof *h), *logits = malloc(m->hp.n_vocab * sizeof *logits);
    sampler *smp = NULL;
    sampler_params sp = {.temp = 0};
    assert_int_equal(sampler_create(&sp, m->hp.n_vocab, &smp), HINGE_OK);
    for (size_t i = 0; i < G_NEW; i++) {
        const int32_t *t = i == 0 ? prompt : &out[i - 1];
        size_t cnt = i == 0 ? n : 1;
        uint32_t pos = i == 0 ? 0 : (uint32_t)(n + i - 1);
        if (e)
            run_ok(e, t, cnt, pos, h);
        else
            assert_int_equal(fwd_embed(f, t, cnt, h), HINGE_OK);
        assert_int_equal(fwd_layers(f, pos, cnt, h), HINGE_OK);
        assert_int_equal(fwd_head(f, h + (cnt - 1) * d, 1, logits), HINGE_OK);
        out[i] = sampler_sample(smp, logits);
    }
    sampler_destroy(smp);
    free(h);
    free(logits);
}

/* HINGE_TEST_GEMMA_CUTS ("6,18"), else {1, 6, 12, 18}; returns the count. */
static int gemma_cut_list(uint32_t *cuts)
{
    static const uint32_t all[4] = {1, 6, 12, 18};
    const char *env = getenv("HINGE_TEST_GEMMA_CUTS");
    if (!env || !*env) {
        memcpy(cuts, all, sizeof all);
        return 4;
    }
    int n = 0;
    for (const char *p = env; *p && n < 4;) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p)
            fail_msg("HINGE_TEST_GEMMA_CUTS=%s: not a list of layer counts", env);
        cuts[n++] = (uint32_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

static void test_gemma_cuts(void **state)
{
    (void)state;
    need_device();
    if (!fx.gemma) {
        print_message("skipped: no Gemma 3 270M at %s\n", gemma_path());
        skip();
    }
    const model *m = fx.gemma;
    static const char *const prompts[3] = {
        "The capital of France is",
        "Question: What is the capital of France?\nAnswer:",
        "Once upon a time, in a small village by the sea, there lived",
    };
    uint32_t cuts[4];
    int n_cuts = gemma_cut_list(cuts);
    int32_t toks[3][64], want[3][G_NEW], got[G_NEW];
    size_t n[3];
    for (int p = 0; p < 3; p++) {
        assert_int_equal(tok_encode(m->tok, prompts[p], strlen(prompts[p]), tok_add_bos(m->tok), false, toks[p], 64,
                                    &n[p]),
                         HINGE_OK);
        fwd_ctx *f = stage(m, 0, m->hp.n_layer, G_CTX);
        gemma_greedy(NULL, f, toks[p], n[p], want[p]);
        fwd_destroy(f);
    }
    for (int c = 0; c < n_cuts; c++) {
        uint32_t k = cuts[c] < m->hp.n_layer ? cuts[c] : m->hp.n_layer;
        vk_exec *e = exec_create(m, k, G_CTX, 32);
        for (int p = 0; p < 3; p++) {
            fwd_ctx *f = stage(m, k, m->hp.n_layer, G_CTX);
            gemma_greedy(e, f, toks[p], n[p], got);
            fwd_destroy(f);
            for (int i = 0; i < G_NEW; i++)
                if (got[i] != want[p][i])
                    fail_msg("k = %u, prompt %d: token %d is %d, the CPU's is %d", k, p, i, got[i], want[p][i]);
        }
        vk_exec_destroy(e);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_oracle_every_k),
        cmocka_unit_test(test_stories_prefill),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_range_head),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_unsupported_weight),
        cmocka_unit_test(test_profiling),
        cmocka_unit_test(test_selftest_rejects),
        cmocka_unit_test(test_force),
        cmocka_unit_test(test_gemma_cuts),
    };
    int failures = cmocka_run_group_tests_name("vk_exec", tests, setup, teardown);
    if (failures == 0 && !fx.ctx) {
        fprintf(stderr, "no Vulkan device: %s\n", fx.why);
        return 77;
    }
    return failures;
}
