/* Q2_K, Q3_K, Q5_K and IQ4_NL (quant_k.h): decoders from ggml's block
 * layouts (quant.h documents each) with ggml's float evaluation order, and
 * the kernel sets' matvec/matmul over the decoded weights.
 *
 * Batch invariance: every output is one sequence of lane-wise multiply-adds
 * acc[i % 32] += w[i] * x[i] in the order of i, then one fixed reduction of
 * the 32 lanes. A matvec decodes the row a block at a time, a matmul decodes
 * it whole into scratch and runs the same sequence per column: the same
 * bits either way. */
#include "quant_k.h"

#include <string.h>

#include "quant_neon.h"
#include "quant_x86.h"

#if QUANT_HAVE_NEON
#include <arm_neon.h>
#endif

bool quant_k_type(qtype t) { return t == QT_Q2_K || t == QT_Q3_K || t == QT_Q5_K || t == QT_IQ4_NL; }

/* ---- decoders ---------------------------------------------------------- */

/* Two sub-blocks of 16 per (half, shift): weights 32k + l of half h use
 * bits 2k of qs[32h + l]; the products are rounded before the
 * subtraction (separate statements: no FMA contraction). */
static void deq_q2_k(const block_q2_k *b, float *y)
{
    const float d = quant_f16_to_f32(b->d), dmin = quant_f16_to_f32(b->dmin);
    for (int h = 0; h < 2; h++) {
        const uint8_t *q = b->qs + 32 * h;
        for (int k = 0; k < 4; k++) {
            for (int s = 0; s < 2; s++) {
                const uint8_t sc = b->scales[8 * h + 2 * k + s];
                const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
                for (int l = 16 * s; l < 16 * s + 16; l++) {
                    const float p = dl * (float)(q[l] >> (2 * k) & 3);
                    *y++ = p - ml;
                }
            }
        }
    }
}

/* Q3_K's 16 scales: the low nibbles are bytes 0..7 (scales 0..7 low, 8..15
 * high nibble), the top two bits are bytes 8..11 (scale j's at bits
 * 2 * (j / 4) of byte 8 + j % 4). */
int quant_q3_scale(const uint8_t *s, int j)
{
    const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    const int hi = s[8 + j % 4] >> (2 * (j / 4)) & 3;
    return (lo | hi << 4) - 32;
}

static void deq_q3_k(const block_q3_k *b, float *y)
{
    const float d = quant_f16_to_f32(b->d);
    for (int h = 0; h < 2; h++) {
        const uint8_t *q = b->qs + 32 * h;
        for (int k = 0; k < 4; k++) {
            const uint8_t m = (uint8_t)(1u << (4 * h + k));
            for (int s = 0; s < 2; s++) {
                const float dl = d * (float)quant_q3_scale(b->scales, 8 * h + 2 * k + s);
                for (int l = 16 * s; l < 16 * s + 16; l++)
                    *y++ = dl * (float)((q[l] >> (2 * k) & 3) - (b->hmask[l] & m ? 0 : 4));
            }
        }
    }
}

static void deq_q5_k(const block_q5_k *b, float *y)
{
    const float d = quant_f16_to_f32(b->d), dmin = quant_f16_to_f32(b->dmin);
    for (int j = 0; j < 8; j++) { /* sub-block j: nibble j % 2 of qs[32 (j / 2) + l], bit j of qh[l] */
        const uint8_t *q = b->qs + 32 * (j / 2);
        float sc, m;
        quant_scale_min_k4(j, b->scales, &sc, &m);
        const float d1 = d * sc, m1 = dmin * m;
        for (int l = 0; l < 32; l++) {
            const int v = (j % 2 ? q[l] >> 4 : q[l] & 0xF) + (b->qh[l] >> j & 1) * 16;
            const float p = d1 * (float)v;
            *y++ = p - m1;
        }
    }
}

const int8_t quant_iq4_nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void deq_iq4_nl(const block_iq4_nl *b, float *y)
{
    const float d = quant_f16_to_f32(b->d);
    for (int j = 0; j < QK_0 / 2; j++) {
        y[j] = d * (float)quant_iq4_nl_values[b->qs[j] & 0xF];
        y[j + QK_0 / 2] = d * (float)quant_iq4_nl_values[b->qs[j] >> 4];
    }
}

void quant_k_dequant(qtype t, const void *row, float *dst, size_t n)
{
    switch (t) {
    case QT_Q2_K:
        for (size_t b = 0; b < n / QK_K; b++)
            deq_q2_k((const block_q2_k *)row + b, dst + b * QK_K);
        break;
    case QT_Q3_K:
        for (size_t b = 0; b < n / QK_K; b++)
            deq_q3_k((const block_q3_k *)row + b, dst + b * QK_K);
        break;
    case QT_Q5_K:
        for (size_t b = 0; b < n / QK_K; b++)
            deq_q5_k((const block_q5_k *)row + b, dst + b * QK_K);
        break;
    case QT_IQ4_NL:
        for (size_t b = 0; b < n / QK_0; b++)
            deq_iq4_nl((const block_iq4_nl *)row + b, dst + b * QK_0);
        break;
    default: break;
    }
}

/* ---- products ----------------------------------------------------------- */

#if QUANT_HAVE_NEON
/* The NEON sets' acc: 8 vectors of 4 lanes, fused multiply-adds. */
static void neon_acc(const float *w, const float *x, size_t n, float acc[32])
{
    float32x4_t a[8];
    for (int v = 0; v < 8; v++)
        a[v] = vld1q_f32(acc + 4 * v);
    for (size_t i = 0; i < n; i += 32)
        for (int v = 0; v < 8; v++)
            a[v] = vfmaq_f32(a[v], vld1q_f32(w + i + 4 * v), vld1q_f32(x + i + 4 * v));
    for (int v = 0; v < 8; v++)
        vst1q_f32(acc + 4 * v, a[v]);
}
#endif

typedef void (*acc_fn)(const float *w, const float *x, size_t n, float acc[32]);
typedef void (*deq_fn)(qtype t, const void *row, float *dst, size_t n);

#if QUANT_HAVE_X86
static void deq_x86(qtype t, const void *row, float *dst, size_t n)
{
    if (t == QT_IQ4_NL)
        quant_x86_k_iq4_nl(row, dst, n);
    else
        quant_k_dequant(t, row, dst, n);
}
#endif

/* The set's decoder: the same bits as quant_k_dequant. */
static deq_fn deq_of(quant_kset k)
{
    (void)k;
#if QUANT_HAVE_X86
    return deq_x86;
#else
    return quant_k_dequant;
#endif
}

static acc_fn acc_of(quant_kset k)
{
    (void)k;
#if QUANT_HAVE_X86
    return quant_x86_k_acc;
#elif QUANT_HAVE_NEON
    return neon_acc;
#else
    return NULL; /* no set but the scalar one, which does not come here */
#endif
}

void quant_k_dequant_set(quant_kset k, qtype t, const void *row, float *dst, size_t n)
{
    deq_of(k)(t, row, dst, n);
}

/* The 32 lanes summed in a fixed tree. */
static float reduce32(const float a[32])
{
    float s[16];
    for (int i = 0; i < 16; i++)
        s[i] = a[i] + a[i + 16];
    for (int w = 8; w >= 1; w /= 2)
        for (int i = 0; i < w; i++)
            s[i] = s[i] + s[i + w];
    return s[0];
}

/* One row against one column, decoding a block of up to QK_K weights at a
 * time (no scratch). */
static float dot_blocks(acc_fn acc, deq_fn deq, qtype t, const uint8_t *row, const float *x, size_t n)
{
    float a[32] = {0}, buf[QK_K];
    for (size_t e = 0; e < n; e += QK_K) {
        const size_t c = n - e < QK_K ? n - e : QK_K;
        deq(t, row + quant_row_bytes(t, e), buf, c);
        acc(buf, x + e, c, a);
    }
    return reduce32(a);
}

void quant_k_matmul(quant_kset k, qtype t, const void *w, size_t n, const float *x, size_t m, float *y, size_t ldy,
                    size_t r0, size_t r1, float *scratch)
{
    const acc_fn acc = acc_of(k);
    const deq_fn deq = deq_of(k);
    const size_t rb = quant_row_bytes(t, n);
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + r * rb;
        if (m == 1 || !scratch) {
            for (size_t j = 0; j < m; j++)
                y[j * ldy + r] = dot_blocks(acc, deq, t, row, x + j * n, n);
            continue;
        }
        deq(t, row, scratch, n);
        for (size_t j = 0; j < m; j++) {
            float a[32] = {0};
            acc(scratch, x + j * n, n, a);
            y[j * ldy + r] = reduce32(a);
        }
    }
}
