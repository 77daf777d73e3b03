#version 450
#extension GL_GOOGLE_include_directive : require
// hinge: after the q/k/v products, for each position j < m at pos0 + j:
//   q head:  [per-head rms norm (HK_F_QKNORM)], RoPE, into q_out
//   k head:  [per-head rms norm], RoPE, into the K cache row pos0 + j
//   v head:  copied into the V cache row pos0 + j
// as model/forward.c's qk_prepare with model/ops.c op_rmsnorm and op_rope.
// theta_i = (pos / pos_scale) * freq[i], freq computed on the host exactly as
// op_rope computes it. One workgroup per (head slot, position): slots
// [0, n_head) are q heads, then n_head_kv k heads, then n_head_kv v heads.
// Grid (n_head + 2 * n_head_kv, m).
#include "common.glsl"
#include "reduce.glsl"
#include "rope.glsl"

layout(local_size_x = HK_WG) in;

layout(binding = HK_RK_B_QKV) readonly buffer In { float qkv[]; };
layout(binding = HK_RK_B_Q) writeonly buffer Q { float qo[]; };
layout(binding = HK_RK_B_KC) writeonly buffer K { float kc[]; };
layout(binding = HK_RK_B_VC) writeonly buffer V { float vc[]; };
layout(binding = HK_RK_B_QNORM) readonly buffer QN { float qn[]; };
layout(binding = HK_RK_B_KNORM) readonly buffer KN { float kn[]; };
layout(binding = HK_RK_B_FREQ) readonly buffer F { float freq[]; };
layout(binding = HK_RK_B_POS) readonly buffer Pos { uint posb[]; };

layout(push_constant) uniform P {
    uint n_head, n_head_kv, head_dim, head_dim_v, rope_dim;
    uint m, pos0;                // HK_F_POSBUF: plus posb[0]
    uint in_stride;              // floats between positions of qkv
    uint q_in, k_in, v_in;       // offsets of q, k, v inside a qkv row
    uint q_off, q_stride;        // q_out row of position j: q_off + j * q_stride
    uint flags;
    float pos_scale;             // positions are divided by this
    float eps;
} p;

// Elements of a head per invocation, minus one: ceil(head_dim / HK_WG) - 1,
// fixed when the pipeline is made (arrays sized for HK_MAX_HEAD_DIM cost a
// CPU device several times the work of a small head).
layout(constant_id = 0) const uint PER_M1 = 0u;
const uint PER = PER_M1 + 1u;
shared float head[HK_WG * PER];

void main()
{
    uint slot = gl_WorkGroupID.x, j = gl_WorkGroupID.y;
    uint l = gl_LocalInvocationIndex;
    uint hd = p.head_dim;
    uint row = p.pos0 + ((p.flags & HK_F_POSBUF) != 0u ? posb[0] : 0u) + j;
    uint ib = j * p.in_stride;
    if (slot >= p.n_head + p.n_head_kv) { // v head: copy
        uint h = slot - p.n_head - p.n_head_kv;
        uint src = ib + p.v_in + h * p.head_dim_v;
        uint dst = row * p.n_head_kv * p.head_dim_v + h * p.head_dim_v;
        for (uint i = l; i < p.head_dim_v; i += HK_WG)
            vc[dst + i] = qkv[src + i];
        return;
    }
    bool isq = slot < p.n_head;
    uint h = isq ? slot : slot - p.n_head;
    uint src = ib + (isq ? p.q_in : p.k_in) + h * hd;
    float v[PER];
    for (uint k = 0u; k < PER; k++) {
        uint i = l + k * HK_WG;
        v[k] = i < hd ? qkv[src + i] : 0.0;
    }
    if ((p.flags & HK_F_QKNORM) != 0u) {
        float ss = 0.0;
        for (uint k = 0u; k < PER; k++)
            ss += v[k] * v[k];
        ss = wg_sum(ss);
        float inv = 1.0 / sqrt(ss / float(hd) + p.eps);
        for (uint k = 0u; k < PER; k++) {
            uint i = min(l + k * HK_WG, hd - 1u);
            v[k] = v[k] * inv * (isq ? qn[i] : kn[i]);
        }
    }
    // Stage the normed head in shared memory: a RoPE pair spans lanes.
    barrier();
    for (uint k = 0u; k < PER; k++)
        head[l + k * HK_WG] = v[k];
    barrier();
    float pp = p.pos_scale == 1.0 ? float(row) : float(row) / p.pos_scale;
    uint half_ = p.rope_dim / 2u;
    bool neox = (p.flags & HK_F_NEOX) != 0u;
    uint dst = isq ? p.q_off + j * p.q_stride + h * hd : row * p.n_head_kv * hd + h * hd;
    for (uint i = l; i < hd; i += HK_WG) {
        float out_v = head[i];
        if (i < p.rope_dim) {
            uint pi = neox ? (i < half_ ? i : i - half_) : i >> 1;
            bool first = neox ? i < half_ : (i & 1u) == 0u;
            uint a = neox ? pi : 2u * pi, b = neox ? pi + half_ : 2u * pi + 1u;
            vec2 cs = cos_sin(pp * freq[pi]);
            float x0 = head[a], x1 = head[b];
            out_v = first ? x0 * cs.x - x1 * cs.y : x0 * cs.y + x1 * cs.x;
        }
        if (isq)
            qo[dst + i] = out_v;
        else
            kc[dst + i] = out_v;
    }
}
