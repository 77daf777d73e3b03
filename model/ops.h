/* hinge: the CPU reference for every non-matrix op of the forward pass.
 * These are what the Vulkan shaders are checked against. All sizes are in
 * elements; every op is for one position (the caller loops over positions). */
#ifndef HINGE_OPS_H
#define HINGE_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * (w ? w[i] : 1). out may alias x. */
void op_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps);

/* Rotates the first rope_dim dims of each of n_heads heads of head_dim in x,
 * for position pos: theta_i = (pos / scale) * base^(-2i/rope_dim).
 * neox: pairs (i, i + rope_dim/2); else pairs (2i, 2i+1). */
void op_rope(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t rope_dim, bool neox,
             uint32_t pos, float base, float scale);
/* op_rope with theta_i divided by freq[i] (i < rope_dim / 2): Llama 3.1+'s
 * rope_freqs. The scalar code whatever the CPU (RoPE is a small part of a
 * layer). */
void op_rope_freqs(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t rope_dim, bool neox, uint32_t pos,
                   float base, float scale, const float *freq);

/* g[i] = gelu_tanh(g[i]) * u[i] (GeGLU) or silu(g[i]) * u[i] (SwiGLU), both
 * as x / (1 + e^-y). AVX2 where the CPU has it (a polynomial exp); the _ref
 * versions use libm's expf. Both within 2e-6 relative of the exact value. */
void op_geglu(float *g, const float *u, size_t n);
void op_swiglu(float *g, const float *u, size_t n);
void op_geglu_ref(float *g, const float *u, size_t n);
void op_swiglu_ref(float *g, const float *u, size_t n);

/* x[i] += y[i] */
void op_add(float *x, const float *y, size_t n);

/* x[i] *= s */
void op_scale(float *x, float s, size_t n);

/* In-place softmax of x[0..n) (n >= 1); AVX2 as above, _ref with expf. */
void op_softmax(float *x, size_t n);
void op_softmax_ref(float *x, size_t n);

/* Causal attention of one query position against cached keys/values at
 * positions [lo, hi] (inclusive). q: (n_head, head_dim); kc, vc: the layer's
 * cache, row p at kc + p*n_head_kv*head_dim (and head_dim_v for vc); query
 * head h reads kv head h / (n_head / n_head_kv). out: (n_head, head_dim_v).
 * scores: caller's scratch of hi - lo + 1 floats. score = scale * q.k. */
void op_attention(float *out, const float *q, const float *kc, const float *vc, uint32_t n_head,
                  uint32_t n_head_kv, uint32_t head_dim, uint32_t head_dim_v, uint32_t lo,
                  uint32_t hi, float scale, float *scores);

/* The key and value rows of one kv head, in blocks of 1 << shift
 * positions (a paged KV cache): key row p at
 * kb[p >> shift] + k_off + (p & (2^shift - 1)) * k_stride, and likewise
 * for values. A contiguous cache is one block with shift 31. */
typedef struct op_kv_view {
    const float *const *kb, *const *vb;
    size_t k_off, v_off;       /* floats from a block's start to the head's first row */
    size_t k_stride, v_stride; /* floats between rows */
    uint32_t shift;
} op_kv_view;

static inline const float *op_kv_key(const op_kv_view *kv, uint32_t p)
{
    return kv->kb[p >> kv->shift] + kv->k_off + (size_t)(p & ((1u << kv->shift) - 1)) * kv->k_stride;
}

static inline const float *op_kv_value(const op_kv_view *kv, uint32_t p)
{
    return kv->vb[p >> kv->shift] + kv->v_off + (size_t)(p & ((1u << kv->shift) - 1)) * kv->v_stride;
}

/* One head of op_attention: q (head_dim), keys and values of positions
 * lo..hi from kv, out (head_dim_v). Every score and the value sum run in
 * position order whatever the blocks, so a paged cache gives the bits of a
 * contiguous one. AVX2 (NEON) where the CPU has it and both head sizes are
 * multiples of 8 (4); _ref: plain loops and expf. */
void op_attention_head_kv(float *out, const float *q, const op_kv_view *kv, uint32_t head_dim, uint32_t head_dim_v,
                          uint32_t lo, uint32_t hi, float scale, float *scores);
void op_attention_head_kv_ref(float *out, const float *q, const op_kv_view *kv, uint32_t head_dim,
                              uint32_t head_dim_v, uint32_t lo, uint32_t hi, float scale, float *scores);

/* The same on a contiguous cache: key row p at kc + p*k_stride, value row
 * p at vc + p*v_stride. */
void op_attention_head(float *out, const float *q, const float *kc, const float *vc, size_t k_stride,
                       size_t v_stride, uint32_t head_dim, uint32_t head_dim_v, uint32_t lo, uint32_t hi,
                       float scale, float *scores);
void op_attention_head_ref(float *out, const float *q, const float *kc, const float *vc, size_t k_stride,
                           size_t v_stride, uint32_t head_dim, uint32_t head_dim_v, uint32_t lo, uint32_t hi,
                           float scale, float *scores);

#endif
