/* The DOTPROD kernel set's block-type kernels (quant_neon.h): q4_0, q4_1,
 * q5_0, q5_1, q8_0, q4_k and q6_k with the int8 dot product (SDOT,
 * vdotq_s32). The one file built with -march=armv8.2-a+dotprod
 * (model/meson.build); nothing in it runs unless quant_neon_has_dotprod().
 *
 * Activations without losing precision. SDOT multiplies int8 by int8, so
 * each pass of x is cut into blocks (32 weights for the 32-weight types,
 * 256 for the k-quants) and each value is rounded to
 *     x'_i = d * (65536 a_i + 256 b_i + c_i),  a, b, c int8,
 * d = max|x| / XQ_MAX over the block: a 24-bit fixed-point value in three
 * int8 limbs. Each limb's dot product with the block's weights is exact in
 * int32; the three are joined in float. The only rounding besides float's
 * is |x_i - x'_i| <= d/2 (about 2^-24 max|x|): the float sets' accuracy
 * (tests/model/test_quant.c, test_quant_neon.c), where the usual 8-bit
 * activations (llama.cpp's q8_0/q8_K) cost about 1e-2 of each product.
 * Three SDOTs per 16 weights and activation row still execute 17-30% fewer
 * instructions per weight in decode than the float set's widen, convert and
 * multiply (docs/arm64.md).
 *
 * Integer bounds (int32): the 32-weight types fold two limbs,
 * (a.q << 8) + b.q per lane <= (8*128*128 << 8) + 8*128*128 < 2^26
 * (|q| <= 128); the k-quants keep three sums, each scaled by the sub-block's
 * scale: Q4_K 8 * 63 * (8*15*128) < 2^23, Q6_K 16 * 128 * (4*32*128) = 2^25.
 *
 * Batch invariance: as quant_neon.c. x is quantised per row of X and per
 * pass (fixed by n), each kernel keeps per-row accumulators fed in the
 * same order for J = 1..QN_J. */
#include "quant_neon.h"

#if QUANT_HAVE_NEON
#include <arm_neon.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "quant_neon_blocks.h"

#if !defined(__ARM_FEATURE_DOTPROD)
#error "quant_dotprod.c needs -march=armv8.2-a+dotprod (model/meson.build)"
#endif

/* Weights per pass (a multiple of QK_K); the quantised rows of one pass
 * live on the stack (QN_J * 3 * DP_PASS bytes). */
enum { DP_PASS = 2048, DP_NB = DP_PASS / 32 };

/* Largest |x_q| whose three balanced base-256 digits all fit int8:
 * 127 * 65536 + 127 * 256 + 127. */
#define XQ_MAX 8355711

/* QN_J rows of x for one pass, quantised. */
typedef struct dp_rows {
    int8_t q[QN_J][3][DP_PASS]; /* limbs c, b, a: x_q = 65536 a + 256 b + c */
    float d[QN_J][DP_NB];       /* scale per block of qb weights */
    float xs[QN_J][DP_NB];      /* q4_1, q5_1, Q4_K: sums of x over each 32 */
} dp_rows;

/* Signed low byte of each lane. */
NEON_INLINE int32x4_t sext8(int32x4_t v) { return vshrq_n_s32(vshlq_n_s32(v, 24), 24); }

NEON_INLINE int8x16_t narrow4(const int32x4_t v[4])
{
    const int16x8_t a = vcombine_s16(vmovn_s32(v[0]), vmovn_s32(v[1]));
    const int16x8_t b = vcombine_s16(vmovn_s32(v[2]), vmovn_s32(v[3]));
    return vcombine_s8(vmovn_s16(a), vmovn_s16(b));
}

/* x[0..n) (n a multiple of qb) into limbs q[0..3) and scales d, per block
 * of qb. A NaN or infinity in a block makes its d NaN: the products of that
 * block are NaN, as in float. */
static void dp_quantise(const float *x, size_t n, size_t qb, int8_t q[3][DP_PASS], float *d)
{
    const int32x4_t hi = vdupq_n_s32(XQ_MAX), lo = vdupq_n_s32(-XQ_MAX);
    for (size_t b = 0; b < n / qb; b++) {
        const float *xb = x + b * qb;
        float32x4_t mx = vdupq_n_f32(0.0f);
        for (size_t i = 0; i < qb; i += 4)
            mx = vmaxq_f32(mx, vabsq_f32(vld1q_f32(xb + i))); /* FMAX: NaN wins */
        const float amax = vmaxvq_f32(mx);
        d[b] = amax / (float)XQ_MAX;
        const float32x4_t inv = vdupq_n_f32(amax > 0.0f ? (float)XQ_MAX / amax : 0.0f);
        for (size_t i = 0; i < qb; i += 16) {
            int32x4_t c[4], bb[4], a[4];
            for (int k = 0; k < 4; k++) {
                int32x4_t v = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(xb + i + 4 * k), inv));
                v = vmaxq_s32(lo, vminq_s32(hi, v)); /* x * inv may round one past XQ_MAX */
                c[k] = sext8(v);
                const int32x4_t r = vshrq_n_s32(vsubq_s32(v, c[k]), 8);
                bb[k] = sext8(r);
                a[k] = vshrq_n_s32(vsubq_s32(r, bb[k]), 8);
            }
            vst1q_s8(q[0] + b * qb + i, narrow4(c));
            vst1q_s8(q[1] + b * qb + i, narrow4(bb));
            vst1q_s8(q[2] + b * qb + i, narrow4(a));
        }
    }
}

/* ------------------------------------------------------------------ */
/* Kernels: out[j] for rows j < J of X over nb blocks of one weight row   */

/* One 32-weight block (block index b of the pass) into acc[j][s];
 * q4_1/q5_1's m * sum(x) into mins[j]. */
NEON_INLINE void blk32_one(qtype t, const uint8_t *blk, size_t b, const dp_rows *X, int J, float32x4_t acc[][2],
                           int s, float *mins)
{
    int8x16_t q[2];
    qn_blk32_s8(t, blk, q);
    const float d = qn_f16(blk);
    const int32x4_t z = vdupq_n_s32(0);
    for (int j = 0; j < J; j++) {
        const int8_t *c = X->q[j][0] + 32 * b, *bq = X->q[j][1] + 32 * b, *a = X->q[j][2] + 32 * b;
        int32x4_t h = vdotq_s32(vdotq_s32(z, q[0], vld1q_s8(a)), q[1], vld1q_s8(a + 16));
        h = vdotq_s32(vdotq_s32(vshlq_n_s32(h, 8), q[0], vld1q_s8(bq)), q[1], vld1q_s8(bq + 16));
        const int32x4_t l = vdotq_s32(vdotq_s32(z, q[0], vld1q_s8(c)), q[1], vld1q_s8(c + 16));
        const float32x4_t f = vfmaq_n_f32(vcvtq_f32_s32(l), vcvtq_f32_s32(h), 256.0f);
        acc[j][s] = vfmaq_n_f32(acc[j][s], f, d * X->d[j][b]);
    }
    if (qn_blk32_min(t)) {
        const float m = qn_f16(blk + 2);
        for (int j = 0; j < J; j++)
            mins[j] = fmaf(m, X->xs[j][b], mins[j]);
    }
}

NEON_INLINE void dp_blk32(qtype t, const uint8_t *row, const dp_rows *X, size_t nb, int J, float *out)
{
    const size_t bb = qn_blk32_bytes(t);
    float32x4_t acc[QN_J][2];
    float mins[QN_J];
    for (int j = 0; j < J; j++) {
        acc[j][0] = acc[j][1] = vdupq_n_f32(0.0f);
        mins[j] = 0.0f;
    }
    size_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        blk32_one(t, row + b * bb, b, X, J, acc, 0, mins);
        blk32_one(t, row + (b + 1) * bb, b + 1, X, J, acc, 1, mins);
    }
    if (b < nb)
        blk32_one(t, row + b * bb, b, X, J, acc, 0, mins);
    for (int j = 0; j < J; j++)
        out[j] = vaddvq_f32(vaddq_f32(acc[j][0], acc[j][1])) + mins[j];
}

/* The three limb sums of a 256-weight block joined: (65536 a + 256 b + c). */
NEON_INLINE float32x4_t join3(const int32x4_t s[3])
{
    const float32x4_t f = vfmaq_n_f32(vcvtq_f32_s32(s[1]), vcvtq_f32_s32(s[2]), 256.0f);
    return vfmaq_n_f32(vcvtq_f32_s32(s[0]), f, 256.0f);
}

/* Q4_K: sum over sub-blocks i of sc[i] * (q . x_q) in int32 per limb, times
 * d * d_x; minus dmin * m[i] * xs[i] in float. q is 0..15. */
NEON_INLINE void dp_q4_k(const uint8_t *row, const dp_rows *X, size_t nb, int J, float *out)
{
    const uint8x16_t m4 = vdupq_n_u8(0xF);
    const int32x4_t z = vdupq_n_s32(0);
    float32x4_t acc[QN_J], mins[QN_J];
    for (int j = 0; j < J; j++)
        acc[j] = mins[j] = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < nb; b++) {
        const block_q4_k *blk = (const block_q4_k *)(const void *)row + b;
        uint8_t sc[8], mn[8];
        qn_q4_k_sm(blk, sc, mn);
        const float d = qn_f16((const uint8_t *)&blk->d), dmin = qn_f16((const uint8_t *)&blk->dmin);
        const uint16x8_t mn16 = vmovl_u8(vld1_u8(mn));
        const float32x4_t dm0 = vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(mn16))), dmin);
        const float32x4_t dm1 = vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(mn16)), dmin);
        int32x4_t s[QN_J][3];
        for (int j = 0; j < J; j++)
            s[j][0] = s[j][1] = s[j][2] = z;
        for (int c = 0; c < 4; c++) {
            const uint8x16_t v0 = vld1q_u8(blk->qs + 32 * c), v1 = vld1q_u8(blk->qs + 32 * c + 16);
            const int8x16_t l0 = vreinterpretq_s8_u8(vandq_u8(v0, m4)), l1 = vreinterpretq_s8_u8(vandq_u8(v1, m4));
            const int8x16_t h0 = vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)), h1 = vreinterpretq_s8_u8(vshrq_n_u8(v1, 4));
            const int32_t slo = sc[2 * c], shi = sc[2 * c + 1];
            for (int j = 0; j < J; j++)
                for (int l = 0; l < 3; l++) {
                    const int8_t *xq = X->q[j][l] + 256 * b + 64 * c;
                    const int32x4_t pl = vdotq_s32(vdotq_s32(z, l0, vld1q_s8(xq)), l1, vld1q_s8(xq + 16));
                    const int32x4_t ph = vdotq_s32(vdotq_s32(z, h0, vld1q_s8(xq + 32)), h1, vld1q_s8(xq + 48));
                    s[j][l] = vmlaq_n_s32(vmlaq_n_s32(s[j][l], pl, slo), ph, shi);
                }
        }
        for (int j = 0; j < J; j++) {
            acc[j] = vfmaq_n_f32(acc[j], join3(s[j]), d * X->d[j][b]);
            const float *xs = X->xs[j] + 8 * b;
            mins[j] = vfmaq_f32(mins[j], dm0, vld1q_f32(xs));
            mins[j] = vfmaq_f32(mins[j], dm1, vld1q_f32(xs + 4));
        }
    }
    for (int j = 0; j < J; j++)
        out[j] = vaddvq_f32(acc[j]) - vaddvq_f32(mins[j]);
}

/* Q6_K: sum over sub-blocks of 16 of sc * (q - 32) . x_q per limb. */
NEON_INLINE void dp_q6_k(const uint8_t *row, const dp_rows *X, size_t nb, int J, float *out)
{
    const int32x4_t z = vdupq_n_s32(0);
    float32x4_t acc[QN_J];
    for (int j = 0; j < J; j++)
        acc[j] = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < nb; b++) {
        const block_q6_k *blk = (const block_q6_k *)(const void *)row + b;
        const float d = qn_f16((const uint8_t *)&blk->d);
        int32x4_t s[QN_J][3];
        for (int j = 0; j < J; j++)
            s[j][0] = s[j][1] = s[j][2] = z;
        for (int h = 0; h < 2; h++)
            for (int l0 = 0; l0 < 32; l0 += 16) {
                int8x16_t q[4];
                qn_q6_k_s8(blk, h, l0, q);
                for (int k = 0; k < 4; k++) {
                    const int32_t sc = blk->scales[8 * h + 2 * k + l0 / 16];
                    const size_t off = 256 * b + 128 * h + 32 * k + l0;
                    for (int j = 0; j < J; j++)
                        for (int l = 0; l < 3; l++)
                            s[j][l] = vmlaq_n_s32(s[j][l], vdotq_s32(z, q[k], vld1q_s8(X->q[j][l] + off)), sc);
                }
            }
        for (int j = 0; j < J; j++)
            acc[j] = vfmaq_n_f32(acc[j], join3(s[j]), d * X->d[j][b]);
    }
    for (int j = 0; j < J; j++)
        out[j] = vaddvq_f32(acc[j]);
}

/* ------------------------------------------------------------------ */
/* Driver                                                              */

NEON_INLINE void dp_kernel(qtype t, const uint8_t *row, const dp_rows *X, size_t nb, int J, float *out)
{
    switch (t) {
    case QT_Q4_0: dp_blk32(QT_Q4_0, row, X, nb, J, out); break;
    case QT_Q4_1: dp_blk32(QT_Q4_1, row, X, nb, J, out); break;
    case QT_Q5_0: dp_blk32(QT_Q5_0, row, X, nb, J, out); break;
    case QT_Q5_1: dp_blk32(QT_Q5_1, row, X, nb, J, out); break;
    case QT_Q8_0: dp_blk32(QT_Q8_0, row, X, nb, J, out); break;
    case QT_Q4_K: dp_q4_k(row, X, nb, J, out); break;
    case QT_Q6_K: dp_q6_k(row, X, nb, J, out); break;
    default: break; /* float types never come here (quant_neon_matmul) */
    }
}

typedef void (*dp_fn)(qtype t, const uint8_t *row, const dp_rows *X, size_t nb, float *out);

static void dp_j1(qtype t, const uint8_t *r, const dp_rows *X, size_t nb, float *out) { dp_kernel(t, r, X, nb, 1, out); }
static void dp_j2(qtype t, const uint8_t *r, const dp_rows *X, size_t nb, float *out) { dp_kernel(t, r, X, nb, 2, out); }
static void dp_j3(qtype t, const uint8_t *r, const dp_rows *X, size_t nb, float *out) { dp_kernel(t, r, X, nb, 3, out); }
static void dp_j4(qtype t, const uint8_t *r, const dp_rows *X, size_t nb, float *out) { dp_kernel(t, r, X, nb, 4, out); }

void quant_dotprod_matmul(qtype t, const void *w, size_t n, const float *x, size_t m, float *y, size_t ldy,
                          size_t r0, size_t r1)
{
    static const dp_fn kern[QN_J] = {dp_j1, dp_j2, dp_j3, dp_j4};
    const size_t qb = t == QT_Q4_K || t == QT_Q6_K ? QK_K : QK_0, rb = quant_row_bytes(t, n);
    dp_rows X;
    for (size_t j0 = 0; j0 < m; j0 += QN_J) {
        const size_t nj = m - j0 < QN_J ? m - j0 : QN_J;
        for (size_t c0 = 0; c0 == 0 || c0 < n; c0 += DP_PASS) { /* n = 0: one empty pass, y = 0 */
            const size_t cn = n - c0 < DP_PASS ? n - c0 : DP_PASS;
            for (size_t j = 0; j < nj; j++) {
                const float *xj = x + (j0 + j) * n + c0;
                dp_quantise(xj, cn, qb, X.q[j], X.d[j]);
                if (qn_wants_xsums(t))
                    qn_xsums32(xj, cn, X.xs[j]);
            }
            const uint8_t *w0 = (const uint8_t *)w + quant_row_bytes(t, c0);
            for (size_t r = r0; r < r1; r++) {
                float out[QN_J];
                kern[nj - 1](t, w0 + r * rb, &X, cn / qb, out);
                for (size_t j = 0; j < nj; j++) {
                    float *yj = y + (j0 + j) * ldy + r;
                    *yj = c0 ? *yj + out[j] : out[j];
                }
            }
        }
    }
}

#else
typedef int quant_dotprod_unused; /* ISO C wants a declaration in every file */
#endif /* QUANT_HAVE_NEON */
