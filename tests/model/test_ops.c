/* The exp-based ops (softmax, GeGLU, SwiGLU), attention heads, RMS norm and
 * RoPE: what the forward pass runs (AVX2 or NEON where the CPU has it; the
 * kernel set HINGE_CPU names) against double-precision truth, over ordinary
 * and extreme inputs, every tail length, and NaN. Tolerance: relative 2e-6
 * of the value (plus 1e-30 absolute, and 1e-7 of the row's largest value
 * for softmax), widened for GeGLU/SwiGLU by what a float exp argument y
 * costs any float implementation (2.4e-7 |y|). Attention heads (8 keys at
 * a time, value chunks, tails) against double truth within 1e-5. RMS norm
 * within 1e-6 relative (every tail, with and without weights, in place);
 * RoPE within 1e-6 of the pair's size against the rotation by op_rope's
 * own float angle (the angle's float rounding is the model's, not the
 * kernel's), both layouts, every tail of pairs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "quant.h"

#define REL_TOL 2e-6
#define ABS_TOL 1e-30

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static double uniform(double lo, double hi)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * (double)(rng >> 11) / 9007199254740992.0;
}

/* 0.5 x (1 + tanh(t)), written as x / (1 + e^-2t) so that double does not
 * round 1 + tanh(t) to 0 for very negative x. */
static double gelu(double x)
{
    return x / (1.0 + exp(-2.0 * 0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

static double silu(double x) { return x / (1.0 + exp(-x)); }

/* The argument y of the e^-y in x / (1 + e^-y): a float y is off by an ulp
 * or two, which e^-y turns into a relative error of about 2.4e-7 |y|. */
static double glu_arg(bool geglu, double x)
{
    return geglu ? 2.0 * 0.7978845608028654 * (x + 0.044715 * x * x * x) : x;
}

static void check_close(const char *what, size_t i, double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol)) {
        fprintf(stderr, "%s[%zu]: got %.9g, want %.9g (tolerance %.3g)\n", what, i, got, want, tol);
        fail();
    }
}

typedef void (*glu_fn)(float *g, const float *u, size_t n);

/* g = act(g) * u for n values of g in [lo, hi], against double truth: what
 * the engine runs, and the libm reference. */
static void check_glu(bool geglu, size_t n, double lo, double hi)
{
    const glu_fn fns[2] = {geglu ? op_geglu : op_swiglu, geglu ? op_geglu_ref : op_swiglu_ref};
    for (int f = 0; f < 2; f++) {
        float *g = malloc(n * sizeof *g), *u = malloc(n * sizeof *u), *g0 = malloc(n * sizeof *g0);
        for (size_t i = 0; i < n; i++) {
            g0[i] = g[i] = (float)uniform(lo, hi);
            u[i] = (float)uniform(-2.0, 2.0);
        }
        fns[f](g, u, n);
        for (size_t i = 0; i < n; i++) {
            double want = (geglu ? gelu(g0[i]) : silu(g0[i])) * u[i];
            double rel = REL_TOL + 2.4e-7 * fabs(glu_arg(geglu, g0[i]));
            check_close(f ? "glu ref" : "glu", i, g[i], want, rel * fabs(want) + ABS_TOL);
        }
        free(g);
        free(u);
        free(g0);
    }
}

static void test_glu(void **state)
{
    (void)state;
    for (size_t n = 1; n <= 33; n++) { /* every tail length after the 8-lane body */
        check_glu(true, n, -6.0, 6.0);
        check_glu(false, n, -6.0, 6.0);
    }
    check_glu(true, 4096, -20.0, 20.0);
    check_glu(false, 4096, -20.0, 20.0);
    check_glu(true, 1000, -1e-4, 1e-4); /* small: no cancellation */
    check_glu(false, 1000, -1e-4, 1e-4);
    check_glu(false, 1000, -200.0, 200.0); /* beyond the exp's clamp */
}

static void test_glu_extremes(void **state)
{
    (void)state;
    const float xs[16] = {0.0f, -0.0f, 1e30f, -1e30f, 88.0f, -88.0f, 90.0f, -90.0f,
                          1e-38f, -1e-38f, 3.0f, -3.0f, 1e4f, -1e4f, 0.5f, -0.5f};
    float u[16], g[16];
    for (int i = 0; i < 16; i++)
        u[i] = 1.0f;
    for (int geglu = 0; geglu < 2; geglu++) {
        memcpy(g, xs, sizeof g);
        (geglu ? op_geglu : op_swiglu)(g, u, 16);
        for (size_t i = 0; i < 16; i++) {
            double want = geglu ? (fabs(xs[i]) > 1e10 ? (xs[i] > 0 ? xs[i] : 0.0) : gelu(xs[i])) : silu(xs[i]);
            assert_true(isfinite(g[i]));
            check_close(geglu ? "geglu extreme" : "swiglu extreme", i, g[i], want,
                        REL_TOL * fabs(want) + 1e-8);
        }
    }
    float nan8[9] = {1, 2, NAN, 4, 5, 6, 7, 8, NAN};
    float one[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    op_geglu(nan8, one, 9);
    assert_true(isnan(nan8[2]) && isnan(nan8[8]) && !isnan(nan8[0]));
}

static void check_softmax(size_t n, double lo, double hi)
{
    float *x = malloc(n * sizeof *x);
    double *want = malloc(n * sizeof *want), mx = -INFINITY, sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)uniform(lo, hi);
        mx = x[i] > mx ? x[i] : mx;
    }
    for (size_t i = 0; i < n; i++)
        sum += want[i] = exp((double)x[i] - mx);
    op_softmax(x, n);
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        want[i] /= sum;
        check_close("softmax", i, x[i], want[i], REL_TOL * want[i] + 1e-7 / sum + ABS_TOL);
        total += x[i];
    }
    assert_true(fabs(total - 1.0) < 1e-5);
    free(x);
    free(want);
}

static void test_softmax(void **state)
{
    (void)state;
    for (size_t n = 1; n <= 33; n++)
        check_softmax(n, -10.0, 10.0);
    check_softmax(2048, -30.0, 5.0);
    check_softmax(1000, 1e3, 1e3 + 50.0); /* large logits: the max is subtracted first */
    check_softmax(1000, -120.0, 0.0);     /* terms under e^-87 underflow to 0 */
    float x[10] = {1, 2, 3, 4, 5, 6, 7, 8, NAN, 0};
    op_softmax(x, 10);
    assert_true(isnan(x[8]));
}

static void test_matches_ref(void **state)
{
    (void)state;
    enum { N = 999 };
    float a[N], b[N], u[N];
    for (int i = 0; i < N; i++) {
        a[i] = b[i] = (float)uniform(-8.0, 8.0);
        u[i] = (float)uniform(-1.0, 1.0);
    }
    op_softmax(a, N);
    op_softmax_ref(b, N);
    for (int i = 0; i < N; i++)
        check_close("softmax vs ref", (size_t)i, a[i], b[i], 4e-6 * b[i] + 1e-12);
    for (int geglu = 0; geglu < 2; geglu++) {
        for (int i = 0; i < N; i++)
            a[i] = b[i] = (float)uniform(-8.0, 8.0);
        (geglu ? op_geglu : op_swiglu)(a, u, N);
        (geglu ? op_geglu_ref : op_swiglu_ref)(b, u, N);
        for (int i = 0; i < N; i++)
            check_close("glu vs ref", (size_t)i, a[i], b[i], 4e-6 * fabs(b[i]) + 1e-12);
    }
}

/* One attention head against double truth: keys at positions [lo, hi] of a
 * cache with a row stride wider than the head (as with several kv heads). */
static void check_attention(uint32_t hd, uint32_t hdv, uint32_t lo, uint32_t hi)
{
    const size_t ks = 2 * (size_t)hd + 8, vs = 3 * (size_t)hdv;
    uint32_t rows = hi + 1, n = hi - lo + 1;
    float *q = malloc(hd * sizeof *q), *kc = malloc(rows * ks * sizeof *kc), *vc = malloc(rows * vs * sizeof *vc);
    float *out = malloc(hdv * sizeof *out), *scores = malloc(n * sizeof *scores);
    double *w = malloc(n * sizeof *w), *want = calloc(hdv, sizeof *want);
    for (uint32_t i = 0; i < hd; i++)
        q[i] = (float)uniform(-1.0, 1.0);
    for (size_t i = 0; i < rows * ks; i++)
        kc[i] = (float)uniform(-1.0, 1.0);
    for (size_t i = 0; i < rows * vs; i++)
        vc[i] = (float)uniform(-1.0, 1.0);
    const float scale = 3.0f / sqrtf((float)hd);
    double mx = -INFINITY, sum = 0.0;
    for (uint32_t t = 0; t < n; t++) {
        double d = 0.0;
        for (uint32_t i = 0; i < hd; i++)
            d += (double)q[i] * kc[(lo + t) * ks + i];
        w[t] = d * scale;
        mx = w[t] > mx ? w[t] : mx;
    }
    for (uint32_t t = 0; t < n; t++)
        sum += w[t] = exp(w[t] - mx);
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t i = 0; i < hdv; i++)
            want[i] += w[t] / sum * vc[(lo + t) * vs + i];
    for (int ref = 0; ref < 2; ref++) {
        (ref ? op_attention_head_ref : op_attention_head)(out, q, kc, vc, ks, vs, hd, hdv, lo, hi, scale, scores);
        for (uint32_t i = 0; i < hdv; i++) /* a weighted mean of values in [-1, 1] */
            check_close(ref ? "attention ref" : "attention", i, out[i], want[i], 1e-5);
    }
    free(q);
    free(kc);
    free(vc);
    free(out);
    free(scores);
    free(w);
    free(want);
}

static void test_attention(void **state)
{
    (void)state;
    for (uint32_t n = 1; n <= 20; n++) /* every tail after 8 keys at a time */
        check_attention(8, 8, 3, 3 + n - 1);
    check_attention(8, 8, 0, 639);
    check_attention(256, 256, 0, 130);     /* Gemma 3's heads */
    check_attention(256, 256, 100, 611);   /* a sliding window */
    check_attention(64, 128, 5, 44);
    check_attention(12, 20, 0, 30);        /* not multiples of 8: the plain loops */
}

static void check_rmsnorm(size_t n, bool weights, bool in_place)
{
    float *x = malloc(n * sizeof *x), *w = malloc(n * sizeof *w), *out = malloc(n * sizeof *out);
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)uniform(-3.0, 3.0);
        w[i] = (float)uniform(0.5, 1.5);
        ss += (double)x[i] * x[i];
    }
    const double inv = 1.0 / sqrt(ss / (double)n + 1e-6);
    double *want = malloc(n * sizeof *want);
    for (size_t i = 0; i < n; i++)
        want[i] = x[i] * inv * (weights ? w[i] : 1.0);
    float *dst = in_place ? x : out;
    op_rmsnorm(dst, x, weights ? w : NULL, n, 1e-6f);
    for (size_t i = 0; i < n; i++)
        check_close("rmsnorm", i, dst[i], want[i], 1e-6 * fabs(want[i]) + ABS_TOL);
    free(x);
    free(w);
    free(out);
    free(want);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    for (size_t n = 1; n <= 33; n++)
        for (int f = 0; f < 4; f++)
            check_rmsnorm(n, f & 1, f & 2);
    check_rmsnorm(640, true, true); /* Gemma 3 270M */
    check_rmsnorm(2048, true, false);
}

/* heads x head_dim values, rope_dim of each head rotated at pos. */
static void check_rope(uint32_t heads, uint32_t head_dim, uint32_t rope_dim, bool neox, uint32_t pos)
{
    const size_t n = (size_t)heads * head_dim;
    float *x = malloc(n * sizeof *x), *x0 = malloc(n * sizeof *x0);
    for (size_t i = 0; i < n; i++)
        x0[i] = x[i] = (float)uniform(-2.0, 2.0);
    const float base = 10000.0f, scale = 1.0f;
    op_rope(x, heads, head_dim, rope_dim, neox, pos, base, scale);
    const uint32_t half = rope_dim / 2;
    for (uint32_t h = 0; h < heads; h++) {
        const float *v0 = x0 + (size_t)h * head_dim, *v = x + (size_t)h * head_dim;
        for (uint32_t i = 0; i < half; i++) {
            const float theta = (float)pos / scale * powf(base, -2.0f * (float)i / (float)rope_dim);
            const uint32_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            const double c = cos((double)theta), s = sin((double)theta), r = fabs(v0[a]) + fabs(v0[b]);
            check_close("rope a", a, v[a], v0[a] * c - v0[b] * s, 1e-6 * r + ABS_TOL);
            check_close("rope b", b, v[b], v0[a] * s + v0[b] * c, 1e-6 * r + ABS_TOL);
        }
        for (uint32_t i = rope_dim; i < head_dim; i++) /* past rope_dim: untouched */
            assert_true(v[i] == v0[i]);
    }
    free(x);
    free(x0);
}

static void test_rope(void **state)
{
    (void)state;
    for (uint32_t rd = 2; rd <= 20; rd += 2) /* every tail after 4 pairs at a time */
        for (int neox = 0; neox < 2; neox++)
            check_rope(3, 24, rd, neox, 7);
    check_rope(4, 256, 256, true, 1000); /* Gemma 3's heads */
    check_rope(8, 8, 8, false, 199);     /* stories260K's */
    check_rope(2, 64, 32, false, 12345); /* partial rotation */
}

int main(void)
{
    fprintf(stderr, "test_ops: kernel set %s\n", quant_isa());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glu),
        cmocka_unit_test(test_glu_extremes),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_matches_ref),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
