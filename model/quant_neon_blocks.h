/* hinge: block decoding shared by the two ARM64 kernel sets (quant_neon.c,
 * quant_dotprod.c): each block's integer values as int8 lanes in weight
 * order, its scales as floats, and per-32 sums of the activations. Static
 * inline, baseline Advanced SIMD only; include after <arm_neon.h> and only
 * where QUANT_HAVE_NEON. Layouts: quant.h. */
#ifndef HINGE_QUANT_NEON_BLOCKS_H
#define HINGE_QUANT_NEON_BLOCKS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"

#define NEON_INLINE static inline __attribute__((always_inline))

/* Activation rows (output columns) per kernel call: every kernel is written
 * for J = 1..QN_J rows and keeps QN_J rows' accumulators in registers. */
enum { QN_J = 4 };

/* The f16 at p (any alignment) as a float. */
NEON_INLINE float qn_f16(const uint8_t *p)
{
    __fp16 h;
    memcpy(&h, p, sizeof h);
    return (float)h;
}

/* Block types of 32 weights: q4_0, q4_1, q5_0, q5_1, q8_0. */
NEON_INLINE size_t qn_blk32_bytes(qtype t)
{
    switch (t) {
    case QT_Q4_0: return sizeof(block_q4_0);
    case QT_Q4_1: return sizeof(block_q4_1);
    case QT_Q5_0: return sizeof(block_q5_0);
    case QT_Q5_1: return sizeof(block_q5_1);
    default: return sizeof(block_q8_0);
    }
}

/* q4_1, q5_1: value q * d + m, the block's min m an f16 after d. */
NEON_INLINE bool qn_blk32_min(qtype t) { return t == QT_Q4_1 || t == QT_Q5_1; }

/* Types whose kernels want the per-32 sums of x (qn_xsums32). */
NEON_INLINE bool qn_wants_xsums(qtype t) { return t == QT_Q4_K || qn_blk32_min(t); }

/* Lane i of qn_bit: bit i % 8, to test one bit of a byte in each lane. */
static const uint8_t qn_bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};

/* A 32-weight block's values as int8: q - 8 (q4_0), q - 16 (q5_0), q
 * (q8_0, q4_1, q5_1); weights 0..15 in q[0], 16..31 in q[1]. qs[i] holds
 * weight i (low nibble) and i + 16 (high); the fifth bit of weight i is bit
 * i of qh. t is a constant after inlining. */
NEON_INLINE void qn_blk32_s8(qtype t, const uint8_t *b, int8x16_t q[2])
{
    if (t == QT_Q8_0) {
        q[0] = vld1q_s8((const int8_t *)(const void *)(b + 2));
        q[1] = vld1q_s8((const int8_t *)(const void *)(b + 18));
        return;
    }
    const size_t qs = t == QT_Q4_0 ? 2 : t == QT_Q4_1 ? 4 : t == QT_Q5_0 ? 6 : 8;
    const uint8x16_t v = vld1q_u8(b + qs);
    uint8x16_t lo = vandq_u8(v, vdupq_n_u8(0xF)), hi = vshrq_n_u8(v, 4);
    if (t == QT_Q5_0 || t == QT_Q5_1) {
        const uint8_t *qh = b + (t == QT_Q5_0 ? 2 : 4);
        const uint8x16_t sel = vld1q_u8(qn_bit), b4 = vdupq_n_u8(0x10);
        const uint8x16_t h0 = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1]));
        const uint8x16_t h1 = vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3]));
        lo = vorrq_u8(lo, vandq_u8(vtstq_u8(h0, sel), b4));
        hi = vorrq_u8(hi, vandq_u8(vtstq_u8(h1, sel), b4));
    }
    const int8x16_t off = vdupq_n_s8(t == QT_Q5_0 ? 16 : t == QT_Q4_0 ? 8 : 0);
    q[0] = vsubq_s8(vreinterpretq_s8_u8(lo), off);
    q[1] = vsubq_s8(vreinterpretq_s8_u8(hi), off);
}

/* Q4_K's 6-bit scales sc[0..8) and mins m[0..8) (quant.c's scale_min_k4),
 * 4 at a time from the 12 packed bytes read as 3 little-endian words:
 * sc[0..4), m[0..4) are the low 6 bits of bytes 0..3, 4..7; sc[4..8),
 * m[4..8) the nibbles of bytes 8..11 under the top 2 bits of bytes 0..3,
 * 4..7. */
NEON_INLINE void qn_q4_k_sm(const block_q4_k *b, uint8_t sc[8], uint8_t m[8])
{
    uint32_t u[3], o[4];
    memcpy(u, b->scales, sizeof u);
    const uint32_t lo6 = 0x3f3f3f3f, nib = 0x0f0f0f0f, top2 = 0x03030303;
    o[0] = u[0] & lo6;
    o[1] = (u[2] & nib) | (u[0] >> 6 & top2) << 4;
    o[2] = u[1] & lo6;
    o[3] = (u[2] >> 4 & nib) | (u[1] >> 6 & top2) << 4;
    memcpy(sc, o, 8);
    memcpy(m, o + 2, 8);
}

/* Q6_K, half h (0, 1), lanes l0..l0+16 (l0 = 0, 16): q[k] holds q - 32 of
 * weights 128h + 32k + l0 .. +16, k = 0..3, which is sub-block
 * 8h + 2k + l0/16. Low 4 bits: ql[64h + l] (k = 0), ql[64h + 32 + l]
 * (k = 1), their high nibbles (k = 2, 3); high 2 bits: bits 2k of qh[32h + l]. */
NEON_INLINE void qn_q6_k_s8(const block_q6_k *b, int h, int l0, int8x16_t q[4])
{
    const uint8x16_t a = vld1q_u8(b->ql + 64 * h + l0), c = vld1q_u8(b->ql + 64 * h + 32 + l0);
    const uint8x16_t hb = vld1q_u8(b->qh + 32 * h + l0);
    const uint8x16_t m4 = vdupq_n_u8(0xF), m30 = vdupq_n_u8(0x30);
    const uint8x16_t u0 = vorrq_u8(vandq_u8(a, m4), vandq_u8(vshlq_n_u8(hb, 4), m30));
    const uint8x16_t u1 = vorrq_u8(vandq_u8(c, m4), vandq_u8(vshlq_n_u8(hb, 2), m30));
    const uint8x16_t u2 = vorrq_u8(vshrq_n_u8(a, 4), vandq_u8(hb, m30));
    const uint8x16_t u3 = vorrq_u8(vshrq_n_u8(c, 4), vandq_u8(vshrq_n_u8(hb, 2), m30));
    const int8x16_t k32 = vdupq_n_s8(32);
    q[0] = vsubq_s8(vreinterpretq_s8_u8(u0), k32);
    q[1] = vsubq_s8(vreinterpretq_s8_u8(u1), k32);
    q[2] = vsubq_s8(vreinterpretq_s8_u8(u2), k32);
    q[3] = vsubq_s8(vreinterpretq_s8_u8(u3), k32);
}

/* xs[i] = sum of x[32i .. 32i+32) for i < n/32 (n a multiple of 32), in
 * one fixed order. */
NEON_INLINE void qn_xsums32(const float *x, size_t n, float *xs)
{
    for (size_t i = 0; i < n / 32; i++, x += 32) {
        float32x4_t s[8];
        for (int k = 0; k < 8; k++)
            s[k] = vld1q_f32(x + 4 * k);
        const float32x4_t a = vaddq_f32(vaddq_f32(s[0], s[1]), vaddq_f32(s[2], s[3]));
        const float32x4_t b = vaddq_f32(vaddq_f32(s[4], s[5]), vaddq_f32(s[6], s[7]));
        xs[i] = vaddvq_f32(vaddq_f32(a, b));
    }
}

#endif
