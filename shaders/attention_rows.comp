#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
// hinge: attention.comp for CPU devices (lavapipe): the same causal
// attention, bindings, push block and grid (n_head, m), shaped for a device
// that runs a subgroup as one SIMD register and turns every load whose
// address is not a push-constant expression into one scalar load per lane.
//
// attention.comp has each of the 64 invocations read the whole q for its
// key and every probability once per output element; here nothing is read
// twice. The workgroup is 8 octets of 8 lanes. Lane l of each octet holds
// q's vec4s l, l + 8, ... in registers; octet o takes the key blocks
// lo + 8 (o + 8 b) .. + 7, one key per lane, and gets q's other vec4s from
// its neighbours by subgroupShuffle (register moves). Each octet keeps an
// online softmax (max, sum, and the output's vec4s l, l + 8, ... per lane,
// accumulated with each key's probability shuffled from the lane that
// computed it). The 8 octets meet once, in shared memory, at the end.
//
// Needs subgroup shuffles in subgroups of >= 8 consecutive invocations and
// head_dim_v a multiple of 4 (the host checks). Keys past the query's
// position are read clamped and weigh 0.
#include "common.glsl"

layout(local_size_x = HK_WG) in;

// q and the caches: uniform texel buffers of vec4s, which llvmpipe fetches
// with vector gathers (see matvec_rows.comp)
layout(binding = HK_AT_B_Q) uniform samplerBuffer qt;
layout(binding = HK_AT_B_KC) uniform samplerBuffer kt;
layout(binding = HK_AT_B_VC) uniform samplerBuffer vt;
layout(binding = HK_AT_B_OUT) writeonly buffer O { float o[]; };
layout(binding = HK_AT_B_POS) readonly buffer Pos { uint posb[]; };

layout(push_constant) uniform P {
    uint n_head, n_head_kv, head_dim, head_dim_v;
    uint m, pos0;         // HK_F_POSBUF: pos0 plus posb[0]
    uint window;          // 0: none
    uint q_off, q_stride; // floats; multiples of 4
    uint o_off, o_stride;
    float scale;
    uint flags;           // HK_F_POSBUF
} p;

// vec4s of q (and of the output) per lane, minus one: ceil(max(head_dim,
// head_dim_v) / 32) - 1, fixed when the pipeline is made. Register arrays
// sized for HK_MAX_HEAD_DIM would cost llvmpipe several times the work of a
// small head.
layout(constant_id = 0) const uint QV_M1 = 0u; // (the pipeline without specialization: heads <= 32)
const uint QV = QV_M1 + 1u;
const uint NOCT = HK_WG / 8u; // octets per workgroup
const uint HV4 = 8u * QV;     // output vec4s one octet holds

shared float sh_m[NOCT], sh_s[NOCT];
shared vec4 sh_acc[NOCT * HV4];

float oct_max(float v)
{
    [[unroll]] for (uint s = 4u; s > 0u; s >>= 1)
        v = max(v, subgroupShuffleXor(v, s));
    return v;
}

float oct_sum(float v)
{
    [[unroll]] for (uint s = 4u; s > 0u; s >>= 1)
        v += subgroupShuffleXor(v, s);
    return v;
}

void main()
{
    uint h = gl_WorkGroupID.x, j = gl_WorkGroupID.y;
    uint lane = gl_SubgroupInvocationID & 7u;
    uint ob = gl_SubgroupInvocationID & ~7u; // this octet's first lane in the subgroup
    uint oct = gl_LocalInvocationIndex >> 3;
    uint pos = p.pos0 + ((p.flags & HK_F_POSBUF) != 0u ? posb[0] : 0u) + j;
    uint lo = (p.window > 0u && pos + 1u > p.window) ? pos + 1u - p.window : 0u;
    uint kvh = h / (p.n_head / p.n_head_kv);
    uint hd4 = p.head_dim >> 2, hv4 = p.head_dim_v >> 2;
    uint ks4 = (p.n_head_kv * p.head_dim) >> 2, vs4 = (p.n_head_kv * p.head_dim_v) >> 2;
    uint kh4 = (kvh * p.head_dim) >> 2, vh4 = (kvh * p.head_dim_v) >> 2;
    uint qb4 = (p.q_off + j * p.q_stride + h * p.head_dim) >> 2;

    vec4 qr[QV], acc[QV];
    [[unroll]] for (uint i = 0u; i < QV; i++) {
        uint c = lane + 8u * i;
        qr[i] = vec4(0.0);
        acc[i] = vec4(0.0);
        if (8u * i < hd4 && c < hd4)
            qr[i] = texelFetch(qt, int(qb4 + c));
    }
    float mx = -3.0e38, sum = 0.0;
    for (uint t0 = lo + 8u * oct; t0 <= pos; t0 += HK_WG) {
        uint t = t0 + lane;
        bool live = t <= pos;
        uint kb4 = min(t, pos) * ks4 + kh4;
        vec4 d4 = vec4(0.0);
        [[unroll]] for (uint i = 0u; i < QV; i++) {
            if (8u * i >= hd4)
                break;
            [[unroll]] for (uint k = 0u; k < 8u; k++) {
                uint c = 8u * i + k;
                vec4 qv = subgroupShuffle(qr[i], ob + k); // q's vec4 c, from lane k
                if (c < hd4)
                    d4 += qv * texelFetch(kt, int(kb4 + c));
            }
        }
        float s = live ? p.scale * (d4.x + d4.y + d4.z + d4.w) : -3.0e38;
        float nmx = max(mx, oct_max(s));
        float corr = exp(mx - nmx);
        float e = live ? exp(s - nmx) : 0.0;
        sum = sum * corr + oct_sum(e);
        mx = nmx;
        [[unroll]] for (uint i = 0u; i < QV; i++)
            acc[i] *= corr;
        [[unroll]] for (uint u = 0u; u < 8u; u++) {
            float pu = subgroupShuffle(e, ob + u); // key t0 + u's weight, from lane u
            uint vb4 = min(t0 + u, pos) * vs4 + vh4;
            [[unroll]] for (uint i = 0u; i < QV; i++) {
                if (8u * i >= hv4)
                    break;
                uint c = lane + 8u * i;
                if (c < hv4)
                    acc[i] += pu * texelFetch(vt, int(vb4 + c));
            }
        }
    }
    // The octets meet: max, sum and output rescaled to the overall max.
    if (lane == 0u) {
        sh_m[oct] = mx;
        sh_s[oct] = sum;
    }
    [[unroll]] for (uint i = 0u; i < QV; i++) {
        uint c = lane + 8u * i;
        if (8u * i < hv4 && c < hv4)
            sh_acc[oct * HV4 + c] = acc[i];
    }
    barrier();
    float gm = -3.0e38;
    for (uint k = 0u; k < NOCT; k++)
        gm = max(gm, sh_m[k]);
    float wsum = 0.0;
    float w[NOCT];
    for (uint k = 0u; k < NOCT; k++) {
        w[k] = exp(sh_m[k] - gm);
        wsum += sh_s[k] * w[k];
    }
    float inv = 1.0 / wsum;
    uint obase = p.o_off + j * p.o_stride + h * p.head_dim_v;
    for (uint c = gl_LocalInvocationIndex; c < hv4; c += HK_WG) {
        vec4 r = vec4(0.0);
        for (uint k = 0u; k < NOCT; k++)
            r += sh_acc[k * HV4 + c] * w[k];
        r *= inv;
        o[obase + 4u * c] = r.x;
        o[obase + 4u * c + 1u] = r.y;
        o[obase + 4u * c + 2u] = r.z;
        o[obase + 4u * c + 3u] = r.w;
    }
}
