/* CPU reference ops: see ops.h. Plain loops; the matrix work is in quant.c. */
#include "ops.h"

#include <math.h>

#include "quant.h"

void op_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
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
    uint32_t half = rope_dim / 2;
    float p = (float)pos / scale;
    for (uint32_t i = 0; i < half; i++) {
        float theta = p * powf(base, -2.0f * (float)i / (float)rope_dim);
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

void op_geglu(float *g, const float *u, size_t n)
{
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    for (size_t i = 0; i < n; i++) {
        float x = g[i];
        g[i] = 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x))) * u[i];
    }
}

void op_swiglu(float *g, const float *u, size_t n)
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

void op_softmax(float *x, size_t n)
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

void op_attention_head(float *out, const float *q, const float *kc, const float *vc, size_t k_stride,
                       size_t v_stride, uint32_t head_dim, uint32_t head_dim_v, uint32_t lo, uint32_t hi,
                       float scale, float *scores)
{
    uint32_t n = hi - lo + 1;
    for (uint32_t t = 0; t < n; t++)
        scores[t] = scale * quant_dot_f32(q, kc + (size_t)(lo + t) * k_stride, head_dim);
    op_softmax(scores, n);
    for (uint32_t d = 0; d < head_dim_v; d++)
        out[d] = 0.0f;
    for (uint32_t t = 0; t < n; t++) {
        const float *v = vc + (size_t)(lo + t) * v_stride;
        float s = scores[t];
        for (uint32_t d = 0; d < head_dim_v; d++)
            out[d] += s * v[d];
    }
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
