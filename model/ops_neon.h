/* hinge: ARM64 NEON versions of ops.h's hot ops (ops_neon.c), behind ops.c's
 * dispatch when the kernel set in use (quant_kset_best) is neon or dotprod.
 * Private to model/ops*.c. Each has the contract of the ops.h function of
 * the same stem, with the limits noted. */
#ifndef HINGE_OPS_NEON_H
#define HINGE_OPS_NEON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops.h"        /* op_kv_view */
#include "quant_neon.h" /* QUANT_HAVE_NEON */

#define OPS_HAVE_NEON QUANT_HAVE_NEON

#if OPS_HAVE_NEON
/* Sum of squares in double, 4 lanes; the scaling bitwise op_rmsnorm's. */
void ops_neon_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps);
/* rope_dim <= OPS_NEON_ROPE_MAX. Angles from libm as op_rope; the rotations
 * 4 pairs at a time, bitwise op_rope's where the compiler does not contract
 * op_rope's products into FMAs (GCC in ISO C mode does not). */
enum { OPS_NEON_ROPE_MAX = 512 };
void ops_neon_rope(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t rope_dim, bool neox, uint32_t pos,
                   float base, float scale);
/* A polynomial e^x (ops.c's AVX2 one, 4 lanes): within 2 ulp of expf. */
void ops_neon_geglu(float *g, const float *u, size_t n);
void ops_neon_swiglu(float *g, const float *u, size_t n);
void ops_neon_softmax(float *x, size_t n);
/* head_dim and head_dim_v multiples of 4, both > 0. */
void ops_neon_attention_head(float *out, const float *q, const op_kv_view *kv, uint32_t head_dim,
                             uint32_t head_dim_v, uint32_t lo, uint32_t hi, float scale, float *scores);
#endif

#endif
