// hinge: decoding one 32-weight chunk of a device-layout row (see
// kernel_abi.h). Included once per weight binding, with
//   W1(i)  word i of the binding's rows, W4(i) its uvec4 i (an array
//          element of a storage buffer, or a texel fetch),
//   DQ32   the name of the chunk decoder to define,
//   WEL    the name of the element reader to define (f32/f16 tails).
//   DQ_T   (optional) the weight type, a TY_* number; default WT, the
//          variant's type. Undefined again at the end.
//   DQ_SUB (optional) its sub-layout (HK_SUB_*, 0: the type's own); default
//          SUB_A, W's. Undefined again at the end.
// DQ32(rb, c, n, q, sc, mn): rb is the row's first word, c the chunk, n the
// row length; weight 4k+i of the chunk is sc[k/4] * q[k][i] + mn[k/4].
// The 8 vec4s are made in [[unroll]] loops rather than written out: the
// driver unrolls them all the same (and folds the indices), and the
// SPIR-V embedded in libhinge.so is the smaller for it (glslc runs without
// -O: see spirv_embed.py).
// The caller includes common.glsl first and declares the specialization
// constant FLAGS (HK_F_* bits, the sub-layouts among them).
#ifndef HINGE_DEQUANT_SUBS
#define HINGE_DEQUANT_SUBS
const uint SUB_A = (FLAGS >> HK_F_SUB_SHIFT) & 0xFu;  // W's sub-layout
const uint SUB_B = (FLAGS >> HK_F_SUB2_SHIFT) & 0xFu; // W2's
// Whether W's (W2's) weights have a minimum (mn not 0).
#if defined(HAS_MIN)
const bool MIN_A = true;
#elif WT == TY_Q6_K
const bool MIN_A = SUB_A == HK_SUB_Q2_K;
#else
const bool MIN_A = false;
#endif
// (no && or || with a constant: glslang makes a LogicalNot of a plain
// constant there, which Mesa rejects)
#ifdef T2
#define DQ_T2 T2
#else
#define DQ_T2 WT
#endif
#if DQ_T2 == TY_Q4_K || DQ_T2 == TY_Q4_1
const bool MIN_B = true;
#elif DQ_T2 == TY_Q6_K
const bool MIN_B = SUB_B == HK_SUB_Q2_K;
#else
const bool MIN_B = false;
#endif
#undef DQ_T2
#endif
#ifndef DQ_T
#define DQ_T WT
#endif
#ifndef DQ_SUB
#define DQ_SUB SUB_A
#endif

void DQ32(uint rb, uint c, uint n, out vec4 q[8], out vec2 sc, out vec2 mn)
{
    mn = vec2(0.0);
#if DQ_T == TY_F32
    uint b4 = (rb >> 2) + c * 8u;
    [[unroll]] for (uint k = 0u; k < 8u; k++)
        q[k] = uintBitsToFloat(W4(b4 + k));
    sc = vec2(1.0);
#elif DQ_T == TY_F16
    uint b4 = (rb >> 2) + c * 4u;
    [[unroll]] for (uint k = 0u; k < 4u; k++) {
        uvec4 w = W4(b4 + k);
        q[2u * k] = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
        q[2u * k + 1u] = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
    }
    sc = vec2(1.0);
#elif DQ_T == TY_Q8_0
    uint nb = n >> 5;
    uvec4 w[2] = uvec4[2](W4((rb >> 2) + c * 2u), W4((rb >> 2) + c * 2u + 1u));
    [[unroll]] for (uint k = 0u; k < 8u; k++)
        q[k] = s8x4(w[k >> 2][k & 3u]);
    float d = unpackHalf2x16(W1(rb + nb * 8u + (c >> 1)))[c & 1u];
    sc = vec2(d);
#elif DQ_T == TY_Q4_0
    uint nb = n >> 5;
    uvec4 w = W4((rb >> 2) + c);
    // iq4_nl (sub-layout): the nibbles index the IQ4_NL table
    [[unroll]] for (uint k = 0u; k < 8u; k++)
        q[k] = DQ_SUB == HK_SUB_IQ4_NL ? iq4nl4(w[k & 3u], 4u * (k >> 2)) : nib4(w[k & 3u], 4u * (k >> 2)) - 8.0;
    float d = unpackHalf2x16(W1(rb + nb * 4u + (c >> 1)))[c & 1u];
    sc = vec2(d);
#elif DQ_T == TY_Q5_0
    uint nb = n >> 5;
    uvec4 w = W4((rb >> 2) + c);
    uint h = W1(rb + nb * 4u + c);
    [[unroll]] for (uint k = 0u; k < 8u; k++)
        q[k] = nib4(w[k & 3u], 4u * (k >> 2)) + hbit4(h, 4u * k) - 16.0;
    float d = unpackHalf2x16(W1(rb + nb * 5u + (c >> 1)))[c & 1u];
    sc = vec2(d);
#elif DQ_T == TY_Q4_1
    // Unsigned quants; the block's minimum m is mn (d | m << 16: one word a
    // block, after the quants).
    uint nb = n >> 5;
    uvec4 w = W4((rb >> 2) + c);
    // q5_1 (sub-layout): the fifth bits as q5_0's, after the d | m words
    uint h = DQ_SUB == HK_SUB_Q5_1 ? W1(rb + nb * 5u + c) : 0u;
    [[unroll]] for (uint k = 0u; k < 8u; k++)
        q[k] = nib4(w[k & 3u], 4u * (k >> 2)) + hbit4(h, 4u * k);
    vec2 dm = unpackHalf2x16(W1(rb + nb * 4u + c));
    sc = vec2(dm.x);
    mn = vec2(dm.y);
#elif DQ_T == TY_Q4_K
    // ggml block: word 0 = d | dmin << 16, words 1..3 = 12 scale bytes,
    // words 4..35 = qs; sub-block s uses the low (even s) or high (odd s)
    // nibbles of qs bytes 32*(s/2) .. +31; get_scale_min_k4 for s.
    uint base = rb + (c >> 3) * 36u;
    uint s = c & 7u;
    vec2 dm = unpackHalf2x16(W1(base));
    uvec4 sw = uvec4(W1(base + 1u), W1(base + 2u), W1(base + 3u), 0u);
    uint j = s & 3u;
    uint b_j = (sw[j >> 2] >> (8u * (j & 3u))) & 0xFFu;       // scales[j]
    uint b_j4 = (sw[(j + 4u) >> 2] >> (8u * (j & 3u))) & 0xFFu; // scales[j+4]
    uint b_j8 = (sw[2] >> (8u * (j & 3u))) & 0xFFu;           // scales[j+8]
    uint scl, mnv;
    if (s < 4u) {
        scl = b_j & 63u;
        mnv = b_j4 & 63u;
    } else { // s = j + 4: scales[s+4] = b_j8, scales[s-4] = b_j, scales[s] = b_j4
        scl = (b_j8 & 0xFu) | ((b_j >> 6) << 4);
        mnv = (b_j8 >> 4) | ((b_j4 >> 6) << 4);
    }
    uint b4 = (base + 4u + (s >> 1) * 8u) >> 2;
    uint sh = (s & 1u) * 4u;
    uvec4 w[2] = uvec4[2](W4(b4), W4(b4 + 1u));
    [[unroll]] for (uint k = 0u; k < 8u; k++)
        q[k] = nib4(w[k >> 2][k & 3u], sh);
    if (DQ_SUB == HK_SUB_Q5_K) { // q5_k: bit s of qh byte l, after the row's blocks
        uint h4 = ((rb + (n >> 8) * 36u) >> 2) + (c >> 3) * 2u;
        add_hbits(W4(h4), W4(h4 + 1u), s, q);
    }
    sc = vec2(dm.x * float(scl));
    mn = vec2(-(dm.y * float(mnv)));
#elif DQ_T == TY_Q6_K
    // Block of 256 = two halves of 128; chunk g (0..3) of half h takes ql
    // bytes 64h + 32(g&1) .. +31 (low nibbles for g < 2, high for g >= 2),
    // qh bytes 32h .. +31 shifted by 2g, scales 8h + 2g (first 16) and
    // 8h + 2g + 1 (last 16). q3_k and q2_k (sub-layouts) take their two low
    // bits where q6_k takes its two high ones, and the same scales.
    uint nb = n >> 8;
    uint blk = c >> 3;
    uint h = (c >> 2) & 1u;
    uint g = c & 3u;
    uint hs = g * 2u;
    uint si = h * 8u + g * 2u; // even: both scales in one word
    if (DQ_SUB == 0u) {
        uint base = rb + blk * 52u;
        uint l4 = (base + h * 16u + (g & 1u) * 8u) >> 2;
        uint qh4 = (base + 32u + h * 8u) >> 2;
        uint sh = (g >> 1) * 4u;
        uvec4 l[2] = uvec4[2](W4(l4), W4(l4 + 1u)), qh[2] = uvec4[2](W4(qh4), W4(qh4 + 1u));
        [[unroll]] for (uint k = 0u; k < 8u; k++)
            q[k] = nib4(l[k >> 2][k & 3u], sh) + h2x4(qh[k >> 2][k & 3u], hs) - 32.0;
        int sw = int(W1(base + 48u + (si >> 2)));
        int s0 = bitfieldExtract(sw, int(8u * (si & 3u)), 8);
        int s1 = bitfieldExtract(sw, int(8u * (si & 3u)) + 8, 8);
        float d = unpackHalf2x16(W1(rb + nb * 52u + (blk >> 1)))[blk & 1u];
        sc = vec2(d * float(s0), d * float(s1));
    } else {
        bool q3 = DQ_SUB == HK_SUB_Q3_K;
        uint base = rb + blk * (q3 ? 28u : 20u);
        uint q4 = (base + h * 8u) >> 2;
        uvec4 l[2] = uvec4[2](W4(q4), W4(q4 + 1u));
        [[unroll]] for (uint k = 0u; k < 8u; k++)
            q[k] = b2x4(l[k >> 2][k & 3u], hs);
        if (q3) { // a clear hmask bit 4h + g of byte l subtracts 4; scales int8, times d
            uint m4 = (base + 16u) >> 2;
            uvec4 hm[2] = uvec4[2](W4(m4), W4(m4 + 1u));
            [[unroll]] for (uint k = 0u; k < 8u; k++)
                q[k] += bit4(hm[k >> 2][k & 3u], 4u * h + g) * 4.0 - 4.0;
            int sw = int(W1(base + 24u + (si >> 2)));
            float d = unpackHalf2x16(W1(rb + nb * 28u + (blk >> 1)))[blk & 1u];
            sc = vec2(d * float(bitfieldExtract(sw, int(8u * (si & 3u)), 8)),
                      d * float(bitfieldExtract(sw, int(8u * (si & 3u)) + 8, 8)));
        } else { // q2_k: scale byte sc | m << 4; d * sc and -(dmin * m)
            uint sw = W1(base + 16u + (si >> 2)) >> (8u * (si & 3u));
            vec2 dm = unpackHalf2x16(W1(rb + nb * 20u + blk));
            sc = dm.x * vec2(float(sw & 0xFu), float((sw >> 8) & 0xFu));
            mn = -(dm.y * vec2(float((sw >> 4) & 0xFu), float((sw >> 12) & 0xFu)));
        }
    }
#else
#error "no weight type defined"
#endif
}

#if DQ_T == TY_F32 || DQ_T == TY_F16
// Element i of an f32/f16 row (for the part after the last whole chunk).
float WEL(uint rb, uint i)
{
#if DQ_T == TY_F32
    return uintBitsToFloat(W1(rb + i));
#else
    return unpackHalf2x16(W1(rb + (i >> 1)))[i & 1u];
#endif
}
#endif
#undef DQ_T
#undef DQ_SUB
