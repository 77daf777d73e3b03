#version 450
#extension GL_GOOGLE_include_directive : require
// hinge: a whole llama-style layer's decode step in ONE workgroup, for
// models so small that the dispatches, not the arithmetic, are the cost
// (stories260K: five dispatches a layer became one; on a CPU device each
// dispatch is a round trip through the driver's thread pool). As
// model/forward.c's layer does it:
//   xn = rmsnorm(x) * attn_norm
//   q | k | v = Wqkv xn; RoPE on q and k; k, v into cache row pos
//   att = softmax(scale * q.k) . v per head (kv head h / (n_head / n_head_kv))
//   x += Wo att
//   xn = rmsnorm(x) * ffn_norm
//   g = act(Wg xn) * (Wu xn)            (act: silu, or tanh-GELU)
//   x += Wd g
// Every vector lives in shared memory (sm: the residual X, the normed
// input XN, q, the attention output AT, this step's k | v row KV, and HV:
// q | k | v, then the attention lanes' partial sums, then g). Products: up
// to LY_NR rows an invocation (layer_dot.glsl). Attention: HK_WG / n_head
// lanes per head, each an online softmax over every L-th earlier position
// in registers, merged through HV; this step's row, written to the caches
// here, is read from KV (a texel buffer need not see a write of the same
// dispatch).
//
// USE_SHUFFLE (CPU devices with subgroup shuffles in subgroups of >= 8,
// the rows variant's condition): the products' input is passed between the
// lanes of each 8 (layer_dot.glsl).
// Flags (constant 0): HK_F_NEOX, HK_F_SWIGLU or HK_F_GEGLU, the
// sub-layout of the weights (all five matrices are of one type). Constant
// 1: head_dim (the lanes' registers). The host (device/vk_layer.c) checks
// that the vectors fit HK_LY_FLOATS. Grid (1, 1).
#ifdef USE_SHUFFLE
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif
#include "common.glsl"
#ifdef USE_SHUFFLE
#define USE_SUBGROUP // (the rows variant's condition includes subgroup arithmetic)
#endif
#include "reduce.glsl"
#include "rope.glsl"

layout(local_size_x = HK_WG) in;
layout(constant_id = 0) const uint FLAGS = 0u;
layout(constant_id = 1) const uint HD = 8u;

layout(push_constant) uniform P {
    uint d, n_ff, n_head, n_head_kv, rope_dim;
    uint s_qkv, s_o, s_gu, s_d; // words per device row of each matrix
    uint o_qkv, o_o, o_g, o_u, o_d; // first word of each in HK_LY_B_W
    uint window;                // 0: none
    uint pos0;                  // plus the uint at HK_LY_B_POS
    float pos_scale, scale, eps;
} p;

shared float sm[HK_LY_FLOATS];

// the weights and the caches' earlier rows: uniform texel buffers, which
// llvmpipe fetches with vector gathers (a storage buffer's loads are one
// scalar load per lane; see matvec_rows.comp); the five matrices through
// one binding (one decoder in the SPIR-V, not five)
layout(binding = HK_LY_B_W) uniform usamplerBuffer wt;
layout(binding = HK_LY_B_KC) uniform samplerBuffer kt;
layout(binding = HK_LY_B_VC) uniform samplerBuffer vt;
layout(binding = HK_LY_B_X) buffer X { float x[]; };
layout(binding = HK_LY_B_ANORM) readonly buffer AN { float anw[]; };
layout(binding = HK_LY_B_FNORM) readonly buffer FN { float fnw[]; };
// (the row this step writes is read back from shared memory, not through
// the texel buffers)
layout(binding = HK_LY_B_KC2) writeonly buffer K { float kc[]; };
layout(binding = HK_LY_B_VC2) writeonly buffer V { float vc[]; };
layout(binding = HK_LY_B_FREQ) readonly buffer F { float freq[]; };
layout(binding = HK_LY_B_POS) readonly buffer Pos { uint posb[]; };

// Rows an invocation computes at once (its input read once for them all).
const uint LY_NR = 4u;
#ifdef USE_SHUFFLE
// Lane k's v in this lane's group of 8 (a constant index where subgroups
// are 8 wide, as rows_dot.glsl's SHARE8).
#define SHARE8(v, k) subgroupShuffle(v, (gl_SubgroupSize == 8u ? 0u : gl_SubgroupInvocationID & ~7u) + (k))
#endif

#define W1(i) texelFetch(wt, int((i) >> 2))[(i) & 3u]
#define W4(i) texelFetch(wt, int(i))
#define DQ32 dq_w
#define WEL wel_w
#include "dequant.glsl"
#define DOT dot_w
#include "layer_dot.glsl"
#undef DOT
#define DQ32B dq_w
#define WELB wel_w
#define DOT dot_w2
#include "layer_dot.glsl"

// y[r] (+)= the rows of a matrix . its input: blocks of LY_NR rows an
// invocation, rows r0 + l + k HK_WG
#define ROWS(DOTF, BASE, BASE2, NROWS, STRIDE, XB, N, BODY) \
    for (uint b0 = 0u; b0 < NROWS; b0 += LY_NR * HK_WG) { \
        uint r0 = b0 + l; \
        uint nr = r0 < NROWS ? min(LY_NR, (NROWS - r0 + HK_WG - 1u) / HK_WG) : 0u; \
        float a1[LY_NR], a2[LY_NR]; \
        DOTF(BASE, BASE2, r0, nr, STRIDE, NROWS, XB, N, a1, a2); \
        [[unroll]] for (uint k = 0u; k < LY_NR; k++) { \
            uint r = r0 + k * HK_WG; \
            if (k < nr && r < NROWS) { BODY; } \
        } \
    }

// sm[XN + i] = sm[X + i] / rms * w[i] (op_rmsnorm); ends with a barrier.
void norm_into(uint X, uint XN, bool ffn)
{
    uint l = gl_LocalInvocationIndex;
    float ss = 0.0;
    for (uint i = l; i < p.d; i += HK_WG)
        ss += sm[X + i] * sm[X + i];
    float r = 1.0 / sqrt(wg_sum(ss) / float(p.d) + p.eps);
    for (uint i = l; i < p.d; i += HK_WG)
        sm[XN + i] = sm[X + i] * r * (ffn ? fnw[i] : anw[i]);
    barrier();
}

void main()
{
    uint l = gl_LocalInvocationIndex;
    uint d = p.d, nq = p.n_head, nk = p.n_head_kv;
    uint q_dim = nq * HD, kv_dim = nk * HD, R = q_dim + 2u * kv_dim;
    uint X = 0u, XN = d, Q = 2u * d, AT = Q + q_dim, KV = AT + q_dim, HV = KV + 2u * kv_dim;
    uint pos = p.pos0 + posb[0];

    for (uint i = l; i < d; i += HK_WG)
        sm[X + i] = x[i];
    barrier();
    norm_into(X, XN, false);

    // q | k | v, then RoPE and the cache row
    ROWS(dot_w, p.o_qkv, 0u, R, p.s_qkv, XN, d, sm[HV + r] = a1[k])
    barrier();
    float pp = p.pos_scale == 1.0 ? float(pos) : float(pos) / p.pos_scale;
    uint half_ = p.rope_dim / 2u;
    bool neox = (FLAGS & HK_F_NEOX) != 0u;
    for (uint e = l; e < R; e += HK_WG) {
        uint slot = e / HD, i = e - slot * HD, hb = HV + slot * HD;
        float v = sm[HV + e];
        if (slot >= nq + nk) {
            vc[pos * kv_dim + e - q_dim - kv_dim] = v;
            sm[KV + e - q_dim] = v;
            continue;
        }
        if (i < p.rope_dim) {
            uint pi = neox ? (i < half_ ? i : i - half_) : i >> 1;
            bool first = neox ? i < half_ : (i & 1u) == 0u;
            uint a = neox ? pi : 2u * pi, b = neox ? pi + half_ : 2u * pi + 1u;
            vec2 cs = cos_sin(pp * freq[pi]);
            float x0 = sm[hb + a], x1 = sm[hb + b];
            v = first ? x0 * cs.x - x1 * cs.y : x0 * cs.y + x1 * cs.x;
        }
        if (slot < nq) {
            sm[Q + e] = v;
        } else {
            kc[pos * kv_dim + e - q_dim] = v;
            sm[KV + e - q_dim] = v;
        }
    }
    barrier();

    // attention: L lanes a head, lane li takes positions lo + li, lo + li + L, ...
    uint L = HK_WG / nq, h = l / L, li = l - h * L;
    uint kvb = (h / (nq / nk)) * HD, qb = Q + h * HD;
    uint lo = (p.window > 0u && pos + 1u > p.window) ? pos + 1u - p.window : 0u;
    const uint H4 = HD / 4u;
    vec4 qv[H4], acc[H4];
    [[unroll]] for (uint j = 0u; j < H4; j++) {
        uint b = qb + 4u * j;
        qv[j] = vec4(sm[b], sm[b + 1u], sm[b + 2u], sm[b + 3u]);
        acc[j] = vec4(0.0);
    }
    float mx = -3.0e38, sum = 0.0;
    // the earlier rows from the caches, then the lane whose turn it is takes
    // this step's row (t = pos) from shared memory
    for (uint t = lo + li; t < pos; t += L) {
        uint kb4 = (t * kv_dim + kvb) >> 2;
        float s = 0.0;
        [[unroll]] for (uint j = 0u; j < H4; j++)
            s += dot(qv[j], texelFetch(kt, int(kb4 + j)));
        s *= p.scale;
        float nmx = max(mx, s), c = exp(mx - nmx), pe = exp(s - nmx);
        sum = sum * c + pe;
        [[unroll]] for (uint j = 0u; j < H4; j++)
            acc[j] = acc[j] * c + pe * texelFetch(vt, int(kb4 + j));
        mx = nmx;
    }
    if (li == (pos - lo) % L) {
        uint kb = KV + kvb;
        float s = 0.0;
        [[unroll]] for (uint j = 0u; j < H4; j++) {
            uint b = kb + 4u * j;
            s += dot(qv[j], vec4(sm[b], sm[b + 1u], sm[b + 2u], sm[b + 3u]));
        }
        s *= p.scale;
        float nmx = max(mx, s), c = exp(mx - nmx), pe = exp(s - nmx);
        sum = sum * c + pe;
        [[unroll]] for (uint j = 0u; j < H4; j++) {
            uint b = kb + kv_dim + 4u * j;
            acc[j] = acc[j] * c + pe * vec4(sm[b], sm[b + 1u], sm[b + 2u], sm[b + 3u]);
        }
        mx = nmx;
    }
    uint pb = HV + l * (HD + 2u); // this lane's partials (q | k | v are spent)
    sm[pb] = mx;
    sm[pb + 1u] = sum;
    [[unroll]] for (uint i = 0u; i < HD; i++)
        sm[pb + 2u + i] = acc[i >> 2][i & 3u];
    barrier();
    for (uint e = l; e < q_dim; e += HK_WG) {
        uint hh = e / HD, i = e - hh * HD, b0 = HV + hh * L * (HD + 2u);
        float m = -3.0e38;
        for (uint k = 0u; k < L; k++)
            m = max(m, sm[b0 + k * (HD + 2u)]);
        float s = 0.0, o = 0.0;
        for (uint k = 0u; k < L; k++) {
            uint b = b0 + k * (HD + 2u);
            float c = exp(sm[b] - m);
            s += sm[b + 1u] * c;
            o += sm[b + 2u + i] * c;
        }
        sm[AT + e] = o / s;
    }
    barrier();

    // x += Wo att
    ROWS(dot_w, p.o_o, 0u, d, p.s_o, AT, q_dim, sm[X + r] += a1[k])
    barrier();
    norm_into(X, XN, true);

    // g = act(Wg xn) * (Wu xn), into HV
    ROWS(dot_w2, p.o_g, p.o_u, p.n_ff, p.s_gu, XN, d,
         sm[HV + r] = ((FLAGS & HK_F_GEGLU) != 0u ? gelu_tanh(a1[k]) : silu(a1[k])) * a2[k])
    barrier();
    // x += Wd g
    ROWS(dot_w, p.o_d, 0u, d, p.s_d, HV, p.n_ff, x[r] = sm[X + r] + a1[k])
}
