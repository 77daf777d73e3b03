/* ARM64 NEON versions of the hot ops of ops.h (ops_neon.h): RMS norm, RoPE,
 * GeGLU/SwiGLU, softmax and attention heads. The exp-based ones use ops.c's
 * AVX2 polynomial in 4 lanes, so both SIMD paths round alike; tests:
 * tests/model/test_ops.c, run once per kernel set (HINGE_CPU) under qemu by
 * scripts/test-arm64. */
#include "ops_neon.h"

#if OPS_HAVE_NEON
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#define NEON_INLINE static inline __attribute__((always_inline))

void ops_neon_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
    float64x2_t s0 = vdupq_n_f64(0.0), s1 = s0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        const float64x2_t a = vcvt_f64_f32(vget_low_f32(v)), b = vcvt_high_f64_f32(v);
        s0 = vfmaq_f64(s0, a, a); /* exact products: a float squared fits a double */
        s1 = vfmaq_f64(s1, b, b);
    }
    double ss = vaddvq_f64(vaddq_f64(s0, s1));
    for (size_t j = i; j < n; j++)
        ss += (double)x[j] * x[j];
    const float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
    const float32x4_t vinv = vdupq_n_f32(inv);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t v = vmulq_f32(vld1q_f32(x + i), vinv);
        if (w)
            v = vmulq_f32(v, vld1q_f32(w + i));
        vst1q_f32(out + i, v);
    }
    for (; i < n; i++)
        out[i] = w ? x[i] * inv * w[i] : x[i] * inv;
}

/* (a, b) -> (a c - b s, a s + b c), unfused as op_rope's. */
NEON_INLINE void rot4(float32x4_t *a, float32x4_t *b, float32x4_t c, float32x4_t s)
{
    const float32x4_t x0 = *a, x1 = *b;
    *a = vsubq_f32(vmulq_f32(x0, c), vmulq_f32(x1, s));
    *b = vaddq_f32(vmulq_f32(x0, s), vmulq_f32(x1, c));
}

void ops_neon_rope(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t rope_dim, bool neox, uint32_t pos,
                   float base, float scale)
{
    const uint32_t half = rope_dim / 2;
    float cs[OPS_NEON_ROPE_MAX / 2], sn[OPS_NEON_ROPE_MAX / 2];
    const float p = (float)pos / scale;
    for (uint32_t i = 0; i < half; i++) {
        const float theta = p * powf(base, -2.0f * (float)i / (float)rope_dim);
        cs[i] = cosf(theta);
        sn[i] = sinf(theta);
    }
    for (uint32_t h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        uint32_t i = 0;
        for (; i + 4 <= half; i += 4) {
            const float32x4_t c = vld1q_f32(cs + i), s = vld1q_f32(sn + i);
            if (neox) { /* pairs (i, i + half) */
                float32x4_t a = vld1q_f32(v + i), b = vld1q_f32(v + half + i);
                rot4(&a, &b, c, s);
                vst1q_f32(v + i, a);
                vst1q_f32(v + half + i, b);
            } else { /* pairs (2i, 2i + 1) */
                float32x4x2_t ab = vld2q_f32(v + 2 * i);
                rot4(&ab.val[0], &ab.val[1], c, s);
                vst2q_f32(v + 2 * i, ab);
            }
        }
        for (; i < half; i++) {
            const uint32_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            const float x0 = v[a], x1 = v[b];
            const float p0 = x0 * cs[i], p1 = x1 * sn[i], p2 = x0 * sn[i], p3 = x1 * cs[i];
            v[a] = p0 - p1;
            v[b] = p2 + p3;
        }
    }
}

/* ------------------------------------------------------------------ */
/* e^x in 4 lanes and what uses it                                     */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

/* e^x, x clamped to [-87.3, 88] (FMAX/FMIN carry a NaN through): x = n ln2
 * + r (Cody-Waite), e^r by Cephes' expf polynomial, 2^n into the exponent:
 * ops.c's exp8 in 4 lanes. */
NEON_INLINE float32x4_t exp4(float32x4_t x)
{
    x = vminq_f32(vdupq_n_f32(88.0f), vmaxq_f32(vdupq_n_f32(-87.3f), x));
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

/* x / (1 + e^-t) */
NEON_INLINE float32x4_t sigmoid_mul(float32x4_t x, float32x4_t t)
{
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(t))));
}

NEON_INLINE float32x4_t glu4(float32x4_t x, float32x4_t u, bool geglu)
{
    if (!geglu)
        return vmulq_f32(sigmoid_mul(x, x), u);
    const float32x4_t c = vmulq_f32(vdupq_n_f32(0.044715f), x);
    const float32x4_t t = vmulq_f32(vdupq_n_f32(2.0f * GELU_K), vfmaq_f32(x, c, vmulq_f32(x, x)));
    return vmulq_f32(sigmoid_mul(x, t), u);
}

/* g = f(g, u) 4 at a time; the tail through padded copies, so that every
 * element gets the same arithmetic wherever it sits. */
NEON_INLINE void glu(float *g, const float *u, size_t n, bool geglu)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(g + i, glu4(vld1q_f32(g + i), vld1q_f32(u + i), geglu));
    if (i < n) {
        float tg[4] = {0}, tu[4] = {0};
        memcpy(tg, g + i, (n - i) * sizeof *g);
        memcpy(tu, u + i, (n - i) * sizeof *u);
        vst1q_f32(tg, glu4(vld1q_f32(tg), vld1q_f32(tu), geglu));
        memcpy(g + i, tg, (n - i) * sizeof *g);
    }
}

void ops_neon_geglu(float *g, const float *u, size_t n) { glu(g, u, n, true); }
void ops_neon_swiglu(float *g, const float *u, size_t n) { glu(g, u, n, false); }

void ops_neon_softmax(float *x, size_t n)
{
    size_t i = 0;
    float32x4_t vm = vdupq_n_f32(x[0]);
    for (; i + 4 <= n; i += 4)
        vm = vmaxq_f32(vm, vld1q_f32(x + i));
    float mx = vmaxvq_f32(vm);
    for (size_t j = i; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    const float32x4_t vmx = vdupq_n_f32(mx);
    float32x4_t vs = vdupq_n_f32(0.0f);
    for (i = 0; i + 4 <= n; i += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vmx));
        vst1q_f32(x + i, e);
        vs = vaddq_f32(vs, e);
    }
    float tail[4] = {0}; /* lanes past n are not summed */
    memcpy(tail, x + i, (n - i) * sizeof *x);
    vst1q_f32(tail, exp4(vsubq_f32(vld1q_f32(tail), vmx)));
    memcpy(x + i, tail, (n - i) * sizeof *x);
    float sum = vaddvq_f32(vs);
    for (size_t j = i; j < n; j++)
        sum += x[j];
    const float inv = 1.0f / sum;
    const float32x4_t vinv = vdupq_n_f32(inv);
    for (i = 0; i + 4 <= n; i += 4)
        vst1q_f32(x + i, vmulq_f32(vld1q_f32(x + i), vinv));
    for (; i < n; i++)
        x[i] *= inv;
}

/* ------------------------------------------------------------------ */
/* Attention                                                           */

/* q . k over d (a multiple of 4) in 4 lanes, one chain. */
NEON_INLINE float32x4_t qk4(const float *q, const float *k, uint32_t d)
{
    float32x4_t a = vmulq_f32(vld1q_f32(q), vld1q_f32(k));
    for (uint32_t i = 4; i < d; i += 4)
        a = vfmaq_f32(a, vld1q_f32(q + i), vld1q_f32(k + i));
    return a;
}

/* Scores of 4 keys at a time; a key's score is the same pairwise sum of its
 * lanes (vpaddq, as vaddvq) in a group of 4 or alone. Then the softmax and
 * the values in chunks of up to 64 dims held in registers. */
void ops_neon_attention_head(float *out, const float *q, const op_kv_view *kv, uint32_t head_dim,
                             uint32_t head_dim_v, uint32_t lo, uint32_t hi, float scale, float *scores)
{
    const uint32_t n = hi - lo + 1;
    uint32_t t = 0;
    for (; t + 4 <= n; t += 4) {
        float32x4_t a[4];
        for (int j = 0; j < 4; j++)
            a[j] = qk4(q, op_kv_key(kv, lo + t + (uint32_t)j), head_dim);
        const float32x4_t s = vpaddq_f32(vpaddq_f32(a[0], a[1]), vpaddq_f32(a[2], a[3]));
        vst1q_f32(scores + t, vmulq_n_f32(s, scale));
    }
    for (; t < n; t++)
        scores[t] = vaddvq_f32(qk4(q, op_kv_key(kv, lo + t), head_dim)) * scale;
    ops_neon_softmax(scores, n);
    for (uint32_t d0 = 0; d0 < head_dim_v; d0 += 64) {
        const uint32_t nc = head_dim_v - d0 < 64 ? (head_dim_v - d0) / 4 : 16;
        float32x4_t o[16];
        for (uint32_t c = 0; c < 16; c++)
            o[c] = vdupq_n_f32(0.0f);
        for (t = 0; t < n; t++) {
            const float *v = op_kv_value(kv, lo + t) + d0;
            const float s = scores[t];
            for (uint32_t c = 0; c < nc; c++)
                o[c] = vfmaq_n_f32(o[c], vld1q_f32(v + 4 * c), s);
        }
        for (uint32_t c = 0; c < nc; c++)
            vst1q_f32(out + d0 + 4 * c, o[c]);
    }
}

#else
typedef int ops_neon_unused; /* ISO C wants a declaration in every file */
#endif /* OPS_HAVE_NEON */
