/* hinge: the weight types read by portable decoders and a SIMD dot product
 * (quant_k.c): Q2_K, Q3_K, Q5_K, IQ4_NL. Private to model/quant*.c.
 *
 * Every kernel set decodes these with the same C decoders (so each set's
 * quant_dequant_row is bitwise the scalar one) and multiplies the decoded
 * floats by x in its own vector width. quant.c routes them here for every
 * set but the scalar one, which handles them as it handles all types. */
#ifndef HINGE_QUANT_K_H
#define HINGE_QUANT_K_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant.h"
#include "quant_impl.h"

/* True for the types of this file. */
bool quant_k_type(qtype t);

/* dst[0..n) = row's n weights (n a multiple of the block size). */
void quant_k_dequant(qtype t, const void *row, float *dst, size_t n);

/* quant_dequant_row_k for set k: bitwise quant_k_dequant's. */
void quant_k_dequant_set(quant_kset k, qtype t, const void *row, float *dst, size_t n);

/* quant_matmul_k for set k (not the scalar set); m = 1 is a matvec. Output
 * (j, r) is bitwise the same whatever m, r0, r1 and scratch (NULL: none). */
void quant_k_matmul(quant_kset k, qtype t, const void *w, size_t n, const float *x, size_t m, float *y, size_t ldy,
                    size_t r0, size_t r1, float *scratch);

/* Q4_K's and Q5_K's 6-bit scale and min of sub-block j from the 12 packed
 * bytes q (quant.c). */
void quant_scale_min_k4(int j, const uint8_t *q, float *sc, float *m);

/* Q3_K's scale of sub-block j (0..15) from the 12 packed bytes s, in
 * -32..31. */
int quant_q3_scale(const uint8_t *s, int j);

/* IQ4_NL's table of values. */
extern const int8_t quant_iq4_nl_values[16];

/* quant_k_dequant of IQ4_NL with a byte shuffle for the table (x86 sets;
 * bitwise the same). */
void quant_x86_k_iq4_nl(const void *row, float *dst, size_t n);

/* acc[0..32) += w[i] * x[i] for i < n (a multiple of 32), lane i % 32 of
 * acc, in the order of i: the x86 sets' version (quant_x86_k.c). */
void quant_x86_k_acc(const float *w, const float *x, size_t n, float acc[32]);

#endif
