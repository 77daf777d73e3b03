/* Speculative lookahead across the split (hinge_session_config.speculate),
 * through libhinge's public API against a real hinge-edge on 127.0.0.1
 * (h2c), stories260K:
 *   - greedy output with speculation equals greedy output without it, at
 *     every cut k < N (wire f32), also across calls that stop in the middle
 *     of a step's accepted drafts and continue the conversation;
 *   - with sampling, the distribution of the token at the first verified
 *     draft's position is the one without speculation (fixed seeds, many
 *     samples, a total-variation bound that a wrong acceptance rule fails).
 * HINGE_EDGE_BIN names the edge program. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hinge/hinge.h>

#include "edge_proc.h"

#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"
/* repetitive, so that prompt lookup has drafts from the first decode step */
#define PROMPT "Lily and Tom went to the park. Lily and Tom went to the park. Lily and Tom"

enum { TEXT_CAP = 1 << 14, N_LAYER = 5, SAMPLES = 300, GEN = 8, MAX_PIECES = 8, PIECE_CAP = 32 };

typedef struct out {
    char text[TEXT_CAP];
    size_t len;
    int pieces, stop_at;            /* stop_at > 0: the callback stops after that many pieces */
    char piece[MAX_PIECES][PIECE_CAP]; /* the first pieces, one per token */
} out;

typedef struct steps {
    int multi; /* steps that sent more than one row after the prefill */
} steps;

static hinge_model *model;
static edge_proc edge;

static int setup(void **state)
{
    (void)state;
    if (hinge_model_load(STORIES, &model) != HINGE_OK)
        return -1;
    const char *extra[] = {"--threads", "1", NULL};
    if (edge_proc_start(&edge, getenv("HINGE_EDGE_BIN"), STORIES, false, extra) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    edge_proc_stop(&edge);
    edge_proc_cleanup(&edge);
    hinge_model_free(model);
    return 0;
}

static int on_piece(const char *piece, size_t len, void *user)
{
    out *o = user;
    if (o->len + len < TEXT_CAP) {
        memcpy(o->text + o->len, piece, len);
        o->len += len;
        o->text[o->len] = '\0';
    }
    if (o->pieces < MAX_PIECES)
        snprintf(o->piece[o->pieces], PIECE_CAP, "%.*s", (int)len, piece);
    o->pieces++;
    return o->stop_at > 0 && o->pieces == o->stop_at;
}

static void on_step(const hinge_step_info *t, void *user)
{
    steps *st = user;
    st->multi += t->pos > 0 && t->n > 1;
}

static hinge_session *open_session(int cut, uint32_t speculate, float temp, uint64_t seed)
{
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.edge_url = edge.url;
    c.cut = cut;
    c.n_ctx = 256;
    c.n_threads = 1;
    c.temperature = temp;
    c.top_k = 4;
    c.seed = seed;
    c.ignore_eos = 1;
    c.speculate = speculate;
    hinge_session *s = NULL;
    assert_int_equal(hinge_session_create(model, &c, &s), HINGE_OK);
    return s;
}

/* Greedy: PROMPT, 40 tokens stopped by the callback after 13, then 30 more
 * in a second call: the text of both calls. */
static void greedy(int cut, uint32_t speculate, out *a, out *b, steps *st)
{
    hinge_session *s = open_session(cut, speculate, 0.0f, 0);
    hinge_session_set_step_cb(s, on_step, st);
    a->stop_at = 13;
    assert_int_equal(hinge_generate(s, PROMPT, 40, on_piece, a), HINGE_OK);
    hinge_status rc = hinge_generate(s, "", 30, on_piece, b);
    if (rc != HINGE_OK)
        print_message("cut %d, speculate %u: %s\n", cut, speculate, hinge_last_error());
    assert_int_equal(rc, HINGE_OK);
    hinge_session_free(s);
}

static void test_greedy_equal_every_cut(void **state)
{
    (void)state;
    steps st = {0};
    for (int k = 0; k < N_LAYER; k++) {
        static out a0, b0, a1, b1;
        memset(&a0, 0, sizeof a0), memset(&b0, 0, sizeof b0), memset(&a1, 0, sizeof a1), memset(&b1, 0, sizeof b1);
        greedy(k, 0, &a0, &b0, &(steps){0});
        greedy(k, 6, &a1, &b1, &st);
        assert_int_equal(a0.pieces, 13);
        assert_string_equal(a0.text, a1.text);
        assert_string_equal(b0.text, b1.text);
    }
    /* the drafts were sent, not skipped: the comparison above tested verification */
    assert_true(st.multi > 0);
}

/* The tokens of SAMPLES sampled continuations (seeds 1000..), GEN tokens each. */
static void sample(uint32_t speculate, char (*tok)[GEN][PIECE_CAP])
{
    for (int i = 0; i < SAMPLES; i++) {
        hinge_session *s = open_session(2, speculate, 1.0f, 1000 + (uint64_t)i);
        static out o;
        memset(&o, 0, sizeof o);
        assert_int_equal(hinge_generate(s, PROMPT, GEN, on_piece, &o), HINGE_OK);
        assert_int_equal(o.pieces, GEN);
        for (int j = 0; j < GEN; j++)
            snprintf(tok[i][j], PIECE_CAP, "%s", o.piece[j]);
        hinge_session_free(s);
    }
}

/* True when w occurs in tok before sample i's token j (among tokens 3..). */
static bool seen_before(char (*tok)[GEN][PIECE_CAP], int i, int j, const char *w)
{
    for (int a = 0; a <= i; a++)
        for (int b = 2; b < GEN && (a < i || b < j); b++)
            if (strcmp(tok[a][b], w) == 0)
                return true;
    return false;
}

/* How often w is among the tokens after the first two of every sample. */
static int count(char (*tok)[GEN][PIECE_CAP], const char *w)
{
    int n = 0;
    for (int i = 0; i < SAMPLES; i++)
        for (int j = 2; j < GEN; j++)
            n += strcmp(tok[i][j], w) == 0;
    return n;
}

/* With one seed, a speculative run draws its sampler once per row sent, so
 * it follows the plain run only up to its first rejected draft: the two sets
 * of samples differ, and must still have the same distribution. */
static void test_sampling_distribution(void **state)
{
    (void)state;
    static char plain[SAMPLES][GEN][PIECE_CAP], spec[SAMPLES][GEN][PIECE_CAP];
    sample(0, plain);
    sample(6, spec);
    int diverged = 0;
    for (int i = 0; i < SAMPLES; i++)
        diverged += memcmp(plain[i], spec[i], sizeof plain[i]) != 0;
    /* total variation between the two empirical distributions of the pooled tokens 3..GEN */
    const double total = (double)SAMPLES * (GEN - 2);
    double tv = 0.0;
    int distinct = 0;
    for (int side = 0; side < 2; side++)
        for (int i = 0; i < SAMPLES; i++)
            for (int j = 2; j < GEN; j++) {
                const char *w = side ? spec[i][j] : plain[i][j];
                bool counted = side == 0 ? seen_before(plain, i, j, w)
                                         : count(plain, w) > 0 || seen_before(spec, i, j, w);
                if (counted)
                    continue;
                distinct++;
                tv += fabs((double)(count(plain, w) - count(spec, w))) / total;
            }
    tv /= 2.0;
    print_message("tokens 3..%d: %d distinct, %d of %d samples differ from the plain run of their seed, "
                  "TV(plain, speculative) = %.3f\n", GEN, distinct, diverged, SAMPLES, tv);
    /* top-k 4: the TV of two samples of one distribution is about 0.03 here; accepting every draft, or
     * resampling from p rather than from the residual on a rejection, moves it by 0.1 or more */
    assert_true(diverged > SAMPLES / 10);
    assert_true(tv < 0.08);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_equal_every_cut),
        cmocka_unit_test(test_sampling_distribution),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
