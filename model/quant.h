/* hinge: weight types and the CPU kernels that read them.
 *
 * Type numbers are GGML's (they are what GGUF files store). Layouts follow
 * ggml's block formats bit for bit; each block struct below documents it. */
#ifndef HINGE_QUANT_H
#define HINGE_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum qtype {
    QT_F32 = 0,
    QT_F16 = 1,
    QT_Q4_0 = 2,
    QT_Q4_1 = 3,
    QT_Q5_0 = 6,
    QT_Q5_1 = 7,
    QT_Q8_0 = 8,
    QT_Q2_K = 10,
    QT_Q3_K = 11,
    QT_Q4_K = 12,
    QT_Q5_K = 13,
    QT_Q6_K = 14,
    QT_IQ4_NL = 20,
    QT_BF16 = 30,
} qtype;

enum { QK_0 = 32, QK_K = 256, K_SCALE_SIZE = 12 };

/* Q4_0: 32 weights = d * (q - 8), q in 0..15. qs[i] holds q[i] (low nibble)
 * and q[i+16] (high nibble). 18 bytes. */
typedef struct block_q4_0 { uint16_t d; uint8_t qs[QK_0 / 2]; } block_q4_0;
/* Q5_0: like Q4_0 with a fifth bit per weight in qh (bit i is weight i's),
 * q in 0..31, value d * (q - 16). 22 bytes. */
typedef struct block_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK_0 / 2]; } block_q5_0;
/* Q4_1: 32 weights = q * d + m, q in 0..15, nibbles as Q4_0. 20 bytes. */
typedef struct block_q4_1 { uint16_t d, m; uint8_t qs[QK_0 / 2]; } block_q4_1;
/* Q5_1: like Q4_1 with Q5_0's fifth bits, q in 0..31, value q * d + m.
 * 24 bytes. */
typedef struct block_q5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK_0 / 2]; } block_q5_1;
/* Q8_0: 32 weights = d * q, q int8. 34 bytes. */
typedef struct block_q8_0 { uint16_t d; int8_t qs[QK_0]; } block_q8_0;
/* Q4_K: 256 weights in 8 sub-blocks of 32; sub-block j has a 6-bit scale
 * sc[j] and min m[j] packed in scales[12]; value = d*sc*q - dmin*m, q 4-bit.
 * 144 bytes. */
typedef struct block_q4_k { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_k;
/* Q6_K: 256 weights in 16 sub-blocks of 16 with int8 scales; q is 6-bit
 * (4 low bits in ql, 2 high in qh), value = d * scale * (q - 32). 210 bytes. */
typedef struct block_q6_k { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_k;
/* Q2_K: 256 weights in 16 sub-blocks of 16; scales[j] holds sub-block j's
 * 4-bit scale (low nibble) and min (high); q is 2-bit: weight 32k + l of
 * half h (k < 4, l < 32) is bits 2k..2k+1 of qs[32h + l], sub-block
 * 8h + 2k + l/16; value = (d * sc) * q - dmin * m. 84 bytes. */
typedef struct block_q2_k { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; } block_q2_k;
/* Q3_K: q2 as Q2_K's, a third bit in hmask (weight 32k + l of half h: bit
 * 4h + k of hmask[l]; a clear bit subtracts 4), 16 6-bit scales packed in
 * 12 bytes (low nibbles in bytes 0..7, top 2 bits in bytes 8..11);
 * value = (d * (sc - 32)) * q. 110 bytes. */
typedef struct block_q3_k { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; } block_q3_k;
/* Q5_K: Q4_K with a fifth bit: sub-block j's weight l has it at bit j of
 * qh[l]; value = d*sc*q - dmin*m. 176 bytes. */
typedef struct block_q5_k {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_k;
/* IQ4_NL: 32 weights = d * kvalues[q], q a 4-bit index into a fixed
 * non-linear table, nibbles as Q4_0. 18 bytes. */
typedef struct block_iq4_nl { uint16_t d; uint8_t qs[QK_0 / 2]; } block_iq4_nl;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(block_q2_k) == 84, "q2_k block");
_Static_assert(sizeof(block_q3_k) == 110, "q3_k block");
_Static_assert(sizeof(block_q5_k) == 176, "q5_k block");
_Static_assert(sizeof(block_iq4_nl) == 18, "iq4_nl block");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(block_q4_k) == 144, "q4_k block");
_Static_assert(sizeof(block_q6_k) == 210, "q6_k block");

/* True for the types below can read. */
bool quant_supported(uint32_t t);
/* "q4_k", "f32"...; "unknown" for others. */
const char *quant_name(uint32_t t);
/* Weights per block (1 for f32/f16/bf16); 0 for unsupported types. */
uint32_t quant_block_elems(uint32_t t);
/* Bytes per block; 0 for unsupported types. */
size_t quant_block_bytes(uint32_t t);
/* Bytes of a row of n weights; n must be a multiple of the block size. */
size_t quant_row_bytes(uint32_t t, uint64_t n);

float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f); /* round to nearest even */

/* dst[0..n) = the n weights of one row; n a multiple of the block size. */
void quant_dequant_row(qtype t, const void *row, float *dst, size_t n);

/* Sum over i < n of row[i] * x[i]. */
float quant_dot_row(qtype t, const void *row, const float *x, size_t n);

/* y[r] = dot(W[r, :], x) for r in [r0, r1). W is row-major, n columns, row
 * stride quant_row_bytes(t, n). Callers split [0, rows) across threads. */
void quant_matvec(qtype t, const void *w, size_t n, const float *x, float *y, size_t r0, size_t r1);

enum { QUANT_MM_ROWS = 8 }; /* W rows decoded at once by quant_matmul */

/* Y[j*ldy + r] = dot(W[r, :], X[j*n .. j*n+n)) for j < m and r in [r0, r1).
 * W rows are decoded QUANT_MM_ROWS at a time into scratch (caller's,
 * QUANT_MM_ROWS * n floats) and used for all m rows of X: the prefill path. */
void quant_matmul(qtype t, const void *w, size_t n, const float *x, size_t m, float *y, size_t ldy,
                  size_t r0, size_t r1, float *scratch);

/* Activations prepared once per product. Some kernel sets round x before
 * multiplying (avx512vnni16's K-quants: 15-bit integers per 256 weights);
 * quant_matmul does it in every call, so a product split into T row ranges
 * rounds each activation row T times. Instead the caller prepares x once
 * (threads splitting its rows) and hands the result to every range:
 *
 *   size_t b = quant_prep_bytes(t, n, m);   0: nothing to prepare
 *   quant_prep_x(t, x, n, m, j0, j1, buf);  rows [j0, j1), any split
 *   quant_matmul_prep(t, w, n, x, buf, m, y, ldy, r0, r1, scratch);
 *
 * The results are bitwise quant_matmul's (the same rounding of the same
 * rows, the same order of sums). buf: 64-byte aligned, b bytes, for this
 * t, n and m. b is 0 where the set reads x as it is (its float kernels, a
 * matvec) and grows with n and m; the scratch sized for the largest
 * product serves the smaller ones. */
size_t quant_prep_bytes(qtype t, size_t n, size_t m);
void quant_prep_x(qtype t, const float *x, size_t n, size_t m, size_t j0, size_t j1, void *prep);
/* quant_matmul with x's rows prepared in prep (quant_prep_x's, all m rows
 * done; NULL or a type with nothing to prepare: quant_matmul itself). */
void quant_matmul_prep(qtype t, const void *w, size_t n, const float *x, const void *prep, size_t m, float *y,
                       size_t ldy, size_t r0, size_t r1, float *scratch);

/* Dot product of two f32 vectors (SIMD where the CPU has it). */
float quant_dot_f32(const float *a, const float *b, size_t n);

/* Name of the kernel set chosen at run time ("avx512vnni16", "avx512",
 * "avx2", "dotprod", "neon", "scalar"; HINGE_CPU forces one: quant_impl.h). */
const char *quant_isa(void);

#endif
