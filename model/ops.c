/* CPU ops: see ops.h. Plain loops, but for the ops that call exp (softmax,
 * GeGLU, SwiGLU) and attention, which have an AVX2 path next to the libm
 * reference, and the NEON versions of the hot ops in ops_neon.c; the matrix
 * work is in quant.c. Which runs follows the kernel set quant.c uses
 * (quant_kset_best, HINGE_CPU). */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "ops_neon.h"
#include "quant_impl.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(HINGE_QUANT_NO_SIMD)
#define OPS_HAVE_X86 1
#include <immintrin.h>
#else
#define OPS_HAVE_X86 0
#endif

#if OPS_HAVE_NEON
static bool use_neon(void)
{
    const quant_kset k = quant_kset_best();
    return k == QUANT_KSET_NEON || k == QUANT_KSET_DOTPROD;
}
#endif

void op_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
#if OPS_HAVE_NEON
    if (use_neon()) {
        ops_neon_rmsnorm(out, x, w, n, eps);
        return;
    }
#endif
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
    if (w) {
        for (size_t i = 0; i < n; i++)
            out[i] = x[i] * inv * w[i];
    } else {
        for (size_t i = 0; i < n; i++)
            out[i] = x[i] * inv;
    }
}

void op_rope(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t rope_dim, bool neox,
             uint32_t pos, float base, float scale)
{
#if OPS_HAVE_NEON
    if (use_neon() && rope_dim <= OPS_NEON_ROPE_MAX) {
        ops_neon_rope(x, n_heads, head_dim, rope_dim, neox, pos, base, scale);
        return;
    }
#endif
    op_rope_freqs(x, n_heads, head_dim, rope_dim, neox, pos, base, scale, NULL);
}

void op_rope_freqs(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t rope_dim, bool neox, uint32_t pos,
                   float base, float scale, const float *freq)
{
    uint32_t half = rope_dim / 2;
    float p = (float)pos / scale;
    for (uint32_t i = 0; i < half; i++) {
        float theta = p * powf(base, -2.0f * (float)i / (float)rope_dim);
        if (freq)
            theta /= freq[i];
        float c = cosf(theta), s = sinf(theta);
        for (uint32_t h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * head_dim;
            uint32_t a = neox ? i : 2 * i;
            uint32_t b = neox ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

/* 0.5 x (1 + tanh(t)) as x / (1 + e^(-2t)): the same function, without the
 * cancellation of 1 + tanh(t) for t < -4 that costs tanhf's form most of its
 * digits there. */
void op_geglu_ref(float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = g[i];
        g[i] = x / (1.0f + expf(-2.0f * GELU_K * (x + 0.044715f * x * x * x))) * u[i];
    }
}

void op_swiglu_ref(float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void op_add(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

void op_scale(float *x, float s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

void op_softmax_ref(float *x, size_t n)
{
    float mx = x[0];
    for (size_t i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++)
        x[i] *= inv;
}

/* ------------------------------------------------------------------ */
/* AVX2: e^x in 8 lanes                                                */

#if OPS_HAVE_X86
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

/* e^x, x clamped to [-87.3, 88]: x = n ln2 + r with |r| <= ln2/2 (ln2 in two
 * parts, Cody-Waite), e^r by Cephes' expf polynomial, 2^n into the exponent
 * bits. Within 2 ulp of expf over that range (tests/model/test_ops.c). */
AVX2_INLINE static __m256 exp8(__m256 x)
{
    /* x second: maxps/minps return their second operand for a NaN, which must carry through */
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.3f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* x / (1 + e^(-a x)): SiLU for a = 1; GELU's tanh form for the polynomial
 * argument, as 0.5 x (1 + tanh(t)) == x / (1 + e^(-2t)). */
AVX2_INLINE static __m256 sigmoid_mul(__m256 x, __m256 t)
{
    __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), t)));
    return _mm256_div_ps(x, d);
}

AVX2_INLINE static __m256 geglu8(__m256 x, __m256 u)
{
    const __m256 k2 = _mm256_set1_ps(2.0f * GELU_K), c = _mm256_set1_ps(0.044715f);
    __m256 t = _mm256_mul_ps(k2, _mm256_fmadd_ps(_mm256_mul_ps(c, x), _mm256_mul_ps(x, x), x));
    return _mm256_mul_ps(sigmoid_mul(x, t), u);
}

AVX2_INLINE static __m256 swiglu8(__m256 x, __m256 u) { return _mm256_mul_ps(sigmoid_mul(x, x), u); }

/* g = f(g, u) 8 at a time; the tail through padded copies, so that every
 * element gets the same arithmetic wherever it sits. */
AVX2_INLINE static void glu_avx2(float *g, const float *u, size_t n, bool geglu)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i), v = _mm256_loadu_ps(u + i);
        _mm256_storeu_ps(g + i, geglu ? geglu8(x, v) : swiglu8(x, v));
    }
    if (i < n) {
        float tg[8] = {0}, tu[8] = {0};
        memcpy(tg, g + i, (n - i) * sizeof *g);
        memcpy(tu, u + i, (n - i) * sizeof *u);
        __m256 x = _mm256_loadu_ps(tg), v = _mm256_loadu_ps(tu);
        _mm256_storeu_ps(tg, geglu ? geglu8(x, v) : swiglu8(x, v));
        memcpy(g + i, tg, (n - i) * sizeof *g);
    }
}

AVX2 static void geglu_avx2(float *g, const float *u, size_t n) { glu_avx2(g, u, n, true); }
AVX2 static void swiglu_avx2(float *g, const float *u, size_t n) { glu_avx2(g, u, n, false); }

AVX2 static void softmax_avx2(float *x, size_t n)
{
    size_t i = 0;
    __m256 vm = _mm256_set1_ps(x[0]);
    for (; i + 8 <= n; i += 8)
        vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, vm);
    float mx = x[0];
    for (int l = 0; l < 8; l++)
        mx = lanes[l] > mx ? lanes[l] : mx;
    for (; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 vs = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
        _mm256_storeu_ps(x + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    if (i < n) { /* the tail through a padded buffer: lanes past n are not summed */
        float tail[8] = {0};
        for (size_t j = i; j < n; j++)
            tail[j - i] = x[j];
        _mm256_storeu_ps(tail, exp8(_mm256_sub_ps(_mm256_loadu_ps(tail), vmx)));
        for (size_t j = i; j < n; j++)
            x[j] = tail[j - i];
    }
    _mm256_storeu_ps(lanes, vs);
    float sum = 0.0f;
    for (int l = 0; l < 8; l++)
        sum += lanes[l];
    for (; i < n; i++)
        sum += x[i];
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++)
        x[i] *= 1.0f / sum;
}

static bool use_avx2(void)
{
    const quant_kset k = quant_kset_best();
    return k == QUANT_KSET_AVX2 || k == QUANT_KSET_AVX512 || k == QUANT_KSET_VNNI || k == QUANT_KSET_VNNI8 ||
           k == QUANT_KSET_VNNI16 || k == QUANT_KSET_AVXVNNI16;
}
#endif

void op_geglu(float *g, const float *u, size_t n)
{
#if OPS_HAVE_X86
    if (use_avx2()) {
        geglu_avx2(g, u, n);
        return;
    }
#elif OPS_HAVE_NEON
    if (use_neon()) {
        ops_neon_geglu(g, u, n);
        return;
    }
#endif
    op_geglu_ref(g, u, n);
}

void op_swiglu(float *g, const float *u, size_t n)
{
#if OPS_HAVE_X86
    if (use_avx2()) {
        swiglu_avx2(g, u, n);
        return;
    }
#elif OPS_HAVE_NEON
    if (use_neon()) {
        ops_neon_swiglu(g, u, n);
        return;
    }
#endif
    op_swiglu_ref(g, u, n);
}

void op_softmax(float *x, size_t n)
{
#if OPS_HAVE_X86
    if (use_avx2()) {
        softmax_avx2(x, n);
        return;
    }
#elif OPS_HAVE_NEON
    if (use_neon()) {
        ops_neon_softmax(x, n);
        return;
    }
#endif
    op_softmax_ref(x, n);
}

void op_attention_head_kv_ref(float *out, const float *q, const op_kv_view *kv, uint32_t head_dim,
                              uint32_t head_dim_v, uint32_t lo, uint32_t hi, float scale, float *scores)
{
    uint32_t n = hi - lo + 1;
    for (uint32_t t = 0; t < n; t++)
        scores[t] = scale * quant_dot_f32(q, op_kv_key(kv, lo + t), head_dim);
    op_softmax_ref(scores, n);
    for (uint32_t d = 0; d < head_dim_v; d++)
        out[d] = 0.0f;
    for (uint32_t t = 0; t < n; t++) {
        const float *v = op_kv_value(kv, lo + t);
        float s = scores[t];
        for (uint32_t d = 0; d < head_dim_v; d++)
            out[d] += s * v[d];
    }
}

#if OPS_HAVE_X86
/* The 8 sums of a[0..8) lane by lane: lane j of the result is the sum of
 * a[j]'s 8 lanes. */
AVX2_INLINE static __m256 hsum8x8(const __m256 a[8])
{
    __m256 s01 = _mm256_hadd_ps(a[0], a[1]), s23 = _mm256_hadd_ps(a[2], a[3]);
    __m256 s45 = _mm256_hadd_ps(a[4], a[5]), s67 = _mm256_hadd_ps(a[6], a[7]);
    __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
    /* lanes: s0123 = (0 1 2 3 | 0 1 2 3) halves, s4567 likewise */
    __m256 lo = _mm256_permute2f128_ps(s0123, s4567, 0x20), hi = _mm256_permute2f128_ps(s0123, s4567, 0x31);
    return _mm256_add_ps(lo, hi);
}

/* op_attention_head for head_dim and head_dim_v multiples of 8: scores of 8
 * keys at a time (one 8-lane accumulator per key, reduced together), the
 * softmax, then the values in chunks of up to 64 dims held in registers. */
AVX2 static void attention_head_avx2(float *out, const float *q, const op_kv_view *kv, uint32_t head_dim,
                                     uint32_t head_dim_v, uint32_t lo, uint32_t hi, float scale, float *scores)
{
    uint32_t n = hi - lo + 1, t = 0;
    const __m256 vscale = _mm256_set1_ps(scale);
    for (; t + 8 <= n; t += 8) {
        __m256 acc[8];
        for (int j = 0; j < 8; j++) {
            const float *k = op_kv_key(kv, lo + t + (uint32_t)j);
            acc[j] = _mm256_mul_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(k));
            for (uint32_t d = 8; d < head_dim; d += 8)
                acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d), acc[j]);
        }
        _mm256_storeu_ps(scores + t, _mm256_mul_ps(hsum8x8(acc), vscale));
    }
    for (; t < n; t++) {
        const float *k = op_kv_key(kv, lo + t);
        __m256 acc[8] = {_mm256_mul_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(k))};
        for (uint32_t d = 8; d < head_dim; d += 8)
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d), acc[0]);
        for (int j = 1; j < 8; j++)
            acc[j] = _mm256_setzero_ps();
        float l8[8];
        _mm256_storeu_ps(l8, hsum8x8(acc));
        scores[t] = l8[0] * scale;
    }
    softmax_avx2(scores, n);
    for (uint32_t d0 = 0; d0 < head_dim_v; d0 += 64) {
        uint32_t nc = head_dim_v - d0 < 64 ? (head_dim_v - d0) / 8 : 8;
        __m256 o[8];
        for (uint32_t c = 0; c < 8; c++)
            o[c] = _mm256_setzero_ps();
        for (t = 0; t < n; t++) {
            const float *v = op_kv_value(kv, lo + t) + d0;
            __m256 s = _mm256_broadcast_ss(scores + t);
            for (uint32_t c = 0; c < nc; c++)
                o[c] = _mm256_fmadd_ps(s, _mm256_loadu_ps(v + 8 * c), o[c]);
        }
        for (uint32_t c = 0; c < nc; c++)
            _mm256_storeu_ps(out + d0 + 8 * c, o[c]);
    }
}
#endif

void op_attention_head_kv(float *out, const float *q, const op_kv_view *kv, uint32_t head_dim, uint32_t head_dim_v,
                          uint32_t lo, uint32_t hi, float scale, float *scores)
{
#if OPS_HAVE_X86
    if (use_avx2() && head_dim % 8 == 0 && head_dim_v % 8 == 0 && head_dim > 0 && head_dim_v > 0) {
        attention_head_avx2(out, q, kv, head_dim, head_dim_v, lo, hi, scale, scores);
        return;
    }
#elif OPS_HAVE_NEON
    if (use_neon() && head_dim % 4 == 0 && head_dim_v % 4 == 0 && head_dim > 0 && head_dim_v > 0) {
        ops_neon_attention_head(out, q, kv, head_dim, head_dim_v, lo, hi, scale, scores);
        return;
    }
#endif
    op_attention_head_kv_ref(out, q, kv, head_dim, head_dim_v, lo, hi, scale, scores);
}

/* A contiguous cache as one block of 2^31 positions. */
static op_kv_view contiguous(const float *const *kc, const float *const *vc, size_t k_stride, size_t v_stride)
{
    return (op_kv_view){.kb = kc, .vb = vc, .k_stride = k_stride, .v_stride = v_stride, .shift = 31};
}

void op_attention_head(float *out, const float *q, const float *kc, const float *vc, size_t k_stride,
                       size_t v_stride, uint32_t head_dim, uint32_t head_dim_v, uint32_t lo, uint32_t hi,
                       float scale, float *scores)
{
    op_kv_view kv = contiguous(&kc, &vc, k_stride, v_stride);
    op_attention_head_kv(out, q, &kv, head_dim, head_dim_v, lo, hi, scale, scores);
}

void op_attention_head_ref(float *out, const float *q, const float *kc, const float *vc, size_t k_stride,
                           size_t v_stride, uint32_t head_dim, uint32_t head_dim_v, uint32_t lo, uint32_t hi,
                           float scale, float *scores)
{
    op_kv_view kv = contiguous(&kc, &vc, k_stride, v_stride);
    op_attention_head_kv_ref(out, q, &kv, head_dim, head_dim_v, lo, hi, scale, scores);
}

void op_attention(float *out, const float *q, const float *kc, const float *vc, uint32_t n_head,
                  uint32_t n_head_kv, uint32_t head_dim, uint32_t head_dim_v, uint32_t lo,
                  uint32_t hi, float scale, float *scores)
{
    uint32_t group = n_head / n_head_kv;
    size_t k_stride = (size_t)n_head_kv * head_dim;
    size_t v_stride = (size_t)n_head_kv * head_dim_v;
    for (uint32_t h = 0; h < n_head; h++) {
        uint32_t kvh = h / group;
        op_attention_head(out + (size_t)h * head_dim_v, q + (size_t)h * head_dim, kc + (size_t)kvh * head_dim,
                          vc + (size_t)kvh * head_dim_v, k_stride, v_stride, head_dim, head_dim_v, lo, hi, scale,
                          scores);
    }
}
