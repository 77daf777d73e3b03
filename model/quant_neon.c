/* The ARM64 NEON kernel set of quant.h (quant_neon.h; quant.c dispatches),
 * and the driver both ARM64 sets share.
 *
 * Like the x86 sets, weights are read as stored and multiplied by float
 * activations, never quantised: per block, sum(q * x) in 4 float lanes from
 * the int8 values (quant_neon_blocks.h) widened to float, scaled once by the
 * block's d (d * sc for the k-quants); the mins of q4_1, q5_1 (m) and
 * Q4_K (dmin * m) add as min * sum(x) from per-32 sums of x. Results stay
 * within float rounding of dequantise-then-multiply
 * (tests/model/test_quant.c: 1e-5 of sum |w x|). Dequantisation is
 * quant.c's scalar one, bit for bit: it only serves the embedding's row
 * lookup.
 *
 * Batch invariance, as in quant_x86.c: one kernel per type written for J
 * activation rows (J = 1..QN_J): the weights are decoded once and used for
 * all J, each row keeps its own accumulators fed by the same operations in
 * the same order as when J = 1, and a matvec is J = 1. The reduction is cut
 * only in passes of QN_PASS weights (the same for every m), added to y in
 * order. So y[j][r] has the same bits whatever m, whichever J the driver
 * picks, whichever thread computes row r. The DOTPROD set
 * (quant_dotprod.c) keeps the same rules. */
#include "quant_neon.h"

#if QUANT_HAVE_NEON
#include <arm_neon.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif

#include "quant_neon_blocks.h"

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20) /* Linux arm64 uapi asm/hwcap.h; bionic's sys/auxv.h lacks it */
#endif

/* Weights per pass of a block type: a multiple of QK_K; the per-32 sums of
 * x (q4_1, q5_1, q4_k) for QN_J rows of one pass live on the stack. */
enum { QN_PASS = 2048 };

bool quant_neon_has_dotprod(void)
{
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return false;
#endif
}

/* ------------------------------------------------------------------ */
/* Float types: f32, f16, bf16                                         */

/* 16 weights from element i as floats; t constant after inlining. */
NEON_INLINE void wf16(qtype t, const uint8_t *row, size_t i, float32x4_t w[4])
{
    if (t == QT_F32) {
        const float *p = (const float *)(const void *)row + i;
        for (int k = 0; k < 4; k++)
            w[k] = vld1q_f32(p + 4 * k);
        return;
    }
    const uint16_t *p = (const uint16_t *)(const void *)row + i;
    for (int k = 0; k < 4; k++) {
        const uint16x4_t h = vld1_u16(p + 4 * k);
        w[k] = t == QT_F16 ? vcvt_f32_f16(vreinterpret_f16_u16(h)) : vreinterpretq_f32_u32(vshll_n_u16(h, 16));
    }
}

NEON_INLINE float wf1(qtype t, const uint8_t *row, size_t i)
{
    if (t == QT_F32)
        return ((const float *)(const void *)row)[i];
    if (t == QT_F16)
        return qn_f16(row + 2 * i);
    uint16_t h;
    memcpy(&h, row + 2 * i, sizeof h);
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

NEON_INLINE float hsum4(const float32x4_t a[4])
{
    return vaddvq_f32(vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3])));
}

/* out[j] = dot(row[0..n), x + j*ldx) for j < J: 16 lanes, then the tail. */
NEON_INLINE void rows_float(qtype t, const uint8_t *row, const float *x, size_t ldx, size_t n, int J, float *out)
{
    float32x4_t acc[QN_J][4];
    float tail[QN_J];
    for (int j = 0; j < J; j++) {
        for (int k = 0; k < 4; k++)
            acc[j][k] = vdupq_n_f32(0.0f);
        tail[j] = 0.0f;
    }
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4_t w[4];
        wf16(t, row, i, w);
        for (int j = 0; j < J; j++)
            for (int k = 0; k < 4; k++)
                acc[j][k] = vfmaq_f32(acc[j][k], w[k], vld1q_f32(x + j * ldx + i + 4 * k));
    }
    for (; i < n; i++) { /* fmaf: one rounding, whatever the compiler's contraction rules */
        const float wi = wf1(t, row, i);
        for (int j = 0; j < J; j++)
            tail[j] = fmaf(wi, x[j * ldx + i], tail[j]);
    }
    for (int j = 0; j < J; j++)
        out[j] = hsum4(acc[j]) + tail[j];
}

/* ------------------------------------------------------------------ */
/* Block types, float arithmetic                                       */

/* int8 lanes to 4 x 4 floats, in order. */
NEON_INLINE void s8_f32(int8x16_t v, float32x4_t f[4])
{
    const int16x8_t a = vmovl_s8(vget_low_s8(v)), b = vmovl_high_s8(v);
    f[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(a)));
    f[1] = vcvtq_f32_s32(vmovl_high_s16(a));
    f[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(b)));
    f[3] = vcvtq_f32_s32(vmovl_high_s16(b));
}

NEON_INLINE void u8_f32(uint8x16_t v, float32x4_t f[4])
{
    const uint16x8_t a = vmovl_u8(vget_low_u8(v)), b = vmovl_high_u8(v);
    f[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(a)));
    f[1] = vcvtq_f32_u32(vmovl_high_u16(a));
    f[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(b)));
    f[3] = vcvtq_f32_u32(vmovl_high_u16(b));
}

/* sum over 16 of f * x, 4 lanes, two chains. */
NEON_INLINE float32x4_t dot16(const float32x4_t f[4], const float *x)
{
    float32x4_t p0 = vmulq_f32(f[0], vld1q_f32(x)), p1 = vmulq_f32(f[1], vld1q_f32(x + 4));
    p0 = vfmaq_f32(p0, f[2], vld1q_f32(x + 8));
    p1 = vfmaq_f32(p1, f[3], vld1q_f32(x + 12));
    return vaddq_f32(p0, p1);
}

NEON_INLINE float32x4_t dot32(const float32x4_t f[8], const float *x)
{
    float32x4_t p0 = vmulq_f32(f[0], vld1q_f32(x)), p1 = vmulq_f32(f[1], vld1q_f32(x + 4));
    for (int k = 2; k < 8; k += 2) {
        p0 = vfmaq_f32(p0, f[k], vld1q_f32(x + 4 * k));
        p1 = vfmaq_f32(p1, f[k + 1], vld1q_f32(x + 4 * k + 4));
    }
    return vaddq_f32(p0, p1);
}

/* One 32-weight block into acc[j][s]; q4_1/q5_1's m * sum(x) into mins[j]
 * (xs[j*ldxs]: the block's sum of x). */
NEON_INLINE void blk32_one(qtype t, const uint8_t *blk, const float *x, size_t ldx, const float *xs, size_t ldxs,
                           int J, float32x4_t acc[][2], int s, float *mins)
{
    int8x16_t q[2];
    float32x4_t f[8];
    qn_blk32_s8(t, blk, q);
    s8_f32(q[0], f);
    s8_f32(q[1], f + 4);
    const float d = qn_f16(blk);
    for (int j = 0; j < J; j++)
        acc[j][s] = vfmaq_n_f32(acc[j][s], dot32(f, x + j * ldx), d);
    if (qn_blk32_min(t)) {
        const float m = qn_f16(blk + 2);
        for (int j = 0; j < J; j++)
            mins[j] = fmaf(m, xs[j * ldxs], mins[j]);
    }
}

/* nb blocks; even blocks into accumulator 0, odd into 1. */
NEON_INLINE void rows_blk32(qtype t, const uint8_t *row, const float *x, size_t ldx, const float *xs, size_t ldxs,
                            size_t nb, int J, float *out)
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
        blk32_one(t, row + b * bb, x + 32 * b, ldx, xs + b, ldxs, J, acc, 0, mins);
        blk32_one(t, row + (b + 1) * bb, x + 32 * (b + 1), ldx, xs + b + 1, ldxs, J, acc, 1, mins);
    }
    if (b < nb)
        blk32_one(t, row + b * bb, x + 32 * b, ldx, xs + b, ldxs, J, acc, 0, mins);
    for (int j = 0; j < J; j++)
        out[j] = vaddvq_f32(vaddq_f32(acc[j][0], acc[j][1])) + mins[j];
}

/* Q4_K, factored: sum over sub-blocks i of d*sc[i] * sum(q x) minus
 * dmin*m[i] * xs[i], xs (row j at xs + j*ldxs) the per-32 sums of x. */
NEON_INLINE void rows_q4_k(const uint8_t *row, const float *x, size_t ldx, const float *xs, size_t ldxs, size_t nb,
                           int J, float *out)
{
    const uint8x16_t m4 = vdupq_n_u8(0xF);
    float32x4_t acc[QN_J][2], mins[QN_J];
    for (int j = 0; j < J; j++)
        acc[j][0] = acc[j][1] = mins[j] = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < nb; b++) {
        const block_q4_k *blk = (const block_q4_k *)(const void *)row + b;
        uint8_t sc[8], mn[8];
        qn_q4_k_sm(blk, sc, mn);
        const float d = qn_f16((const uint8_t *)&blk->d), dmin = qn_f16((const uint8_t *)&blk->dmin);
        const uint16x8_t sc16 = vmovl_u8(vld1_u8(sc)), mn16 = vmovl_u8(vld1_u8(mn));
        float dsc[8];
        vst1q_f32(dsc, vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(sc16))), d));
        vst1q_f32(dsc + 4, vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(sc16)), d));
        const float32x4_t dm0 = vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(mn16))), dmin);
        const float32x4_t dm1 = vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(mn16)), dmin);
        for (int c = 0; c < 4; c++) {
            const uint8x16_t v0 = vld1q_u8(blk->qs + 32 * c), v1 = vld1q_u8(blk->qs + 32 * c + 16);
            float32x4_t lo[8], hi[8];
            u8_f32(vandq_u8(v0, m4), lo);
            u8_f32(vandq_u8(v1, m4), lo + 4);
            u8_f32(vshrq_n_u8(v0, 4), hi);
            u8_f32(vshrq_n_u8(v1, 4), hi + 4);
            for (int j = 0; j < J; j++) {
                const float *xj = x + j * ldx + 256 * b + 64 * c;
                acc[j][0] = vfmaq_n_f32(acc[j][0], dot32(lo, xj), dsc[2 * c]);
                acc[j][1] = vfmaq_n_f32(acc[j][1], dot32(hi, xj + 32), dsc[2 * c + 1]);
            }
        }
        for (int j = 0; j < J; j++) {
            const float *s = xs + j * ldxs + 8 * b;
            mins[j] = vfmaq_f32(mins[j], dm0, vld1q_f32(s));
            mins[j] = vfmaq_f32(mins[j], dm1, vld1q_f32(s + 4));
        }
    }
    for (int j = 0; j < J; j++)
        out[j] = vaddvq_f32(vaddq_f32(acc[j][0], acc[j][1])) - vaddvq_f32(mins[j]);
}

/* Q6_K: per sub-block of 16, (d * sc) * sum(q x). */
NEON_INLINE void rows_q6_k(const uint8_t *row, const float *x, size_t ldx, size_t nb, int J, float *out)
{
    float32x4_t acc[QN_J][2];
    for (int j = 0; j < J; j++)
        acc[j][0] = acc[j][1] = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < nb; b++) {
        const block_q6_k *blk = (const block_q6_k *)(const void *)row + b;
        const float d = qn_f16((const uint8_t *)&blk->d);
        float dsc[16];
        float32x4_t sf[4];
        s8_f32(vld1q_s8(blk->scales), sf);
        for (int k = 0; k < 4; k++)
            vst1q_f32(dsc + 4 * k, vmulq_n_f32(sf[k], d));
        for (int h = 0; h < 2; h++)
            for (int l0 = 0; l0 < 32; l0 += 16) {
                int8x16_t q[4];
                qn_q6_k_s8(blk, h, l0, q);
                for (int k = 0; k < 4; k++) {
                    float32x4_t f[4];
                    s8_f32(q[k], f);
                    const float s = dsc[8 * h + 2 * k + l0 / 16];
                    for (int j = 0; j < J; j++) {
                        const float *xj = x + j * ldx + 256 * b + 128 * h + 32 * k + l0;
                        acc[j][k & 1] = vfmaq_n_f32(acc[j][k & 1], dot16(f, xj), s);
                    }
                }
            }
    }
    for (int j = 0; j < J; j++)
        out[j] = vaddvq_f32(vaddq_f32(acc[j][0], acc[j][1]));
}

/* ------------------------------------------------------------------ */
/* Driver                                                              */

/* One pass over len blocks (elements for float types) of one weight row,
 * for J rows of x: out[j] for row j at x + j*ldx (xs + j*ldxs: Q4_K). */
NEON_INLINE void row_kernel(qtype t, const uint8_t *row, const float *x, size_t ldx, const float *xs, size_t ldxs,
                            size_t len, int J, float *out)
{
    switch (t) {
    case QT_F32: rows_float(QT_F32, row, x, ldx, len, J, out); break;
    case QT_F16: rows_float(QT_F16, row, x, ldx, len, J, out); break;
    case QT_BF16: rows_float(QT_BF16, row, x, ldx, len, J, out); break;
    case QT_Q4_0: rows_blk32(QT_Q4_0, row, x, ldx, xs, ldxs, len, J, out); break;
    case QT_Q4_1: rows_blk32(QT_Q4_1, row, x, ldx, xs, ldxs, len, J, out); break;
    case QT_Q5_0: rows_blk32(QT_Q5_0, row, x, ldx, xs, ldxs, len, J, out); break;
    case QT_Q5_1: rows_blk32(QT_Q5_1, row, x, ldx, xs, ldxs, len, J, out); break;
    case QT_Q8_0: rows_blk32(QT_Q8_0, row, x, ldx, xs, ldxs, len, J, out); break;
    case QT_Q4_K: rows_q4_k(row, x, ldx, xs, ldxs, len, J, out); break;
    case QT_Q6_K: rows_q6_k(row, x, ldx, len, J, out); break;
    default: break; /* quant_k.c's types: quant.c sends them there */
    }
}

typedef void (*row_fn)(qtype t, const uint8_t *row, const float *x, size_t ldx, const float *xs, size_t ldxs,
                       size_t len, float *out);

/* row_kernel with J a constant: accumulators stay in registers. */
static void row_j1(qtype t, const uint8_t *r, const float *x, size_t ldx, const float *xs, size_t ldxs, size_t len,
                   float *out)
{
    row_kernel(t, r, x, ldx, xs, ldxs, len, 1, out);
}

static void row_j2(qtype t, const uint8_t *r, const float *x, size_t ldx, const float *xs, size_t ldxs, size_t len,
                   float *out)
{
    row_kernel(t, r, x, ldx, xs, ldxs, len, 2, out);
}

static void row_j3(qtype t, const uint8_t *r, const float *x, size_t ldx, const float *xs, size_t ldxs, size_t len,
                   float *out)
{
    row_kernel(t, r, x, ldx, xs, ldxs, len, 3, out);
}

static void row_j4(qtype t, const uint8_t *r, const float *x, size_t ldx, const float *xs, size_t ldxs, size_t len,
                   float *out)
{
    row_kernel(t, r, x, ldx, xs, ldxs, len, 4, out);
}

static size_t blk_elems(qtype t)
{
    switch (t) {
    case QT_Q4_0: case QT_Q4_1: case QT_Q5_0: case QT_Q5_1: case QT_Q8_0: return QK_0;
    case QT_Q4_K: case QT_Q6_K: return QK_K;
    default: return 1;
    }
}

void quant_neon_matmul(quant_kset k, qtype t, const void *w, size_t n, const float *x, size_t m, float *y,
                       size_t ldy, size_t r0, size_t r1)
{
    const size_t be = blk_elems(t);
    if (k == QUANT_KSET_DOTPROD && be > 1) {
        quant_dotprod_matmul(t, w, n, x, m, y, ldy, r0, r1);
        return;
    }
    static const row_fn rows[QN_J] = {row_j1, row_j2, row_j3, row_j4};
    enum { XS_LEN = QN_PASS / 32 };
    float xs[QN_J * XS_LEN];
    const size_t rb = quant_row_bytes(t, n), pass = be == 1 ? (n ? n : 1) : QN_PASS;
    for (size_t j0 = 0; j0 < m; j0 += QN_J) {
        const size_t nj = m - j0 < QN_J ? m - j0 : QN_J;
        for (size_t c0 = 0; c0 == 0 || c0 < n; c0 += pass) { /* n = 0: one empty pass, y = 0 */
            const size_t cn = n - c0 < pass ? n - c0 : pass;
            const float *xc = x + j0 * n + c0;
            if (qn_wants_xsums(t))
                for (size_t j = 0; j < nj; j++)
                    qn_xsums32(xc + j * n, cn, xs + j * XS_LEN);
            const uint8_t *w0 = (const uint8_t *)w + quant_row_bytes(t, c0);
            for (size_t r = r0; r < r1; r++) {
                float out[QN_J];
                rows[nj - 1](t, w0 + r * rb, xc, n, xs, XS_LEN, cn / be, out);
                for (size_t j = 0; j < nj; j++) {
                    float *yj = y + (j0 + j) * ldy + r;
                    *yj = c0 ? *yj + out[j] : out[j];
                }
            }
        }
    }
}

float quant_neon_dot_f32(const float *a, const float *b, size_t n)
{
    float out;
    row_kernel(QT_F32, (const uint8_t *)(const void *)a, b, 0, NULL, 0, n, 1, &out);
    return out;
}

#else
typedef int quant_neon_unused; /* ISO C wants a declaration in every file */
#endif /* QUANT_HAVE_NEON */
