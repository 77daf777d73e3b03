#version 450
#extension GL_GOOGLE_include_directive : require
// hinge: causal attention of m query positions pos0 .. pos0+m-1 against the
// layer's cache, as model/ops.c op_attention_head: query j (position
// p = pos0 + j) of head h attends to cache rows [lo, p] of kv head
// h / (n_head / n_head_kv), lo = p + 1 - window when a window is set and
// p + 1 > window, else 0:
//   out = softmax(scale * q.k) . v
// Keys go by in tiles of HK_WG, one key per invocation, with the running
// max / sum of the online softmax; each invocation owns head_dim_v / HK_WG
// output elements. One workgroup per (head, query); grid (n_head, m).
// The cache rows [lo, p] must have been written (rope_kv) before.
#include "common.glsl"
#include "reduce.glsl"

layout(local_size_x = HK_WG) in;

layout(binding = HK_AT_B_Q) readonly buffer Q { float q[]; };
layout(binding = HK_AT_B_Q) readonly buffer Q4 { vec4 q4[]; };
layout(binding = HK_AT_B_KC) readonly buffer K { float kc[]; };
layout(binding = HK_AT_B_KC) readonly buffer K4 { vec4 kc4[]; };
layout(binding = HK_AT_B_VC) readonly buffer V { float vc[]; };
layout(binding = HK_AT_B_OUT) writeonly buffer O { float o[]; };
layout(binding = HK_AT_B_POS) readonly buffer Pos { uint posb[]; };

layout(push_constant) uniform P {
    uint n_head, n_head_kv, head_dim, head_dim_v;
    uint m, pos0;         // HK_F_POSBUF: pos0 plus posb[0]
    uint window;          // 0: none
    uint q_off, q_stride; // floats; q_off, q_stride and head_dim multiples of 4
    uint o_off, o_stride;
    float scale;
    uint flags;           // HK_F_POSBUF
} p;

const uint PER = HK_MAX_HEAD_DIM / HK_WG;
shared float prob[HK_WG];

void main()
{
    uint h = gl_WorkGroupID.x, j = gl_WorkGroupID.y;
    uint l = gl_LocalInvocationIndex;
    uint pos = p.pos0 + ((p.flags & HK_F_POSBUF) != 0u ? posb[0] : 0u) + j;
    uint lo = (p.window > 0u && pos + 1u > p.window) ? pos + 1u - p.window : 0u;
    uint kvh = h / (p.n_head / p.n_head_kv);
    uint kstride = p.n_head_kv * p.head_dim, vstride = p.n_head_kv * p.head_dim_v;
    uint qb4 = (p.q_off + j * p.q_stride + h * p.head_dim) >> 2;
    uint hd4 = p.head_dim >> 2;
    float mx = -3.0e38, sum = 0.0;
    float acc[PER];
    for (uint k = 0u; k < PER; k++)
        acc[k] = 0.0;
    for (uint t0 = lo; t0 <= pos; t0 += HK_WG) {
        uint t = t0 + l;
        float s = -3.0e38;
        if (t <= pos) {
            uint kb4 = (t * kstride + kvh * p.head_dim) >> 2;
            vec4 d4 = vec4(0.0);
            for (uint i = 0u; i < hd4; i++)
                d4 += q4[qb4 + i] * kc4[kb4 + i];
            s = p.scale * (d4.x + d4.y + d4.z + d4.w);
        }
        float nmx = max(mx, wg_max(s));
        float corr = exp(mx - nmx);
        float e = t <= pos ? exp(s - nmx) : 0.0;
        sum = sum * corr + wg_sum(e);
        mx = nmx;
        prob[l] = e;
        barrier();
        uint nt = min(uint(HK_WG), pos + 1u - t0);
        for (uint k = 0u; k < PER; k++) {
            uint d = l + k * HK_WG;
            if (d >= p.head_dim_v)
                break;
            float a = acc[k] * corr;
            uint vb = t0 * vstride + kvh * p.head_dim_v + d;
            for (uint u = 0u; u < nt; u++)
                a += prob[u] * vc[vb + u * vstride];
            acc[k] = a;
        }
        barrier();
    }
    float inv = 1.0 / sum;
    uint ob = p.o_off + j * p.o_stride + h * p.head_dim_v;
    for (uint k = 0u; k < PER; k++) {
        uint d = l + k * HK_WG;
        if (d < p.head_dim_v)
            o[ob + d] = acc[k] * inv;
    }
}
