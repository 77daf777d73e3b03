/* hinge: the ARM64 kernel sets (quant_neon.c, quant_dotprod.c) behind
 * quant.c's dispatch. Private to model/quant*.c. Each function has the
 * contract of the quant.h function of the same stem; calling one on a CPU
 * without the set is a caller bug.
 *
 *   QUANT_KSET_NEON     Advanced SIMD (every AArch64 CPU): weights decoded
 *                       to float in registers, float multiply-adds.
 *   QUANT_KSET_DOTPROD  and the int8 dot product (FEAT_DotProd, SDOT; Linux
 *                       HWCAP_ASIMDDP): block types through int8 kernels
 *                       (quant_dotprod.c), float types as NEON. */
#ifndef HINGE_QUANT_NEON_H
#define HINGE_QUANT_NEON_H

#include <stdbool.h>
#include <stddef.h>

#include "quant.h"
#include "quant_impl.h"

/* HINGE_QUANT_NO_SIMD builds the scalar set alone, as on any other CPU. */
#if defined(__aarch64__) && defined(__GNUC__) && !defined(HINGE_QUANT_NO_SIMD)
#define QUANT_HAVE_NEON 1
#else
#define QUANT_HAVE_NEON 0
#endif

#if QUANT_HAVE_NEON
/* True if the CPU has the int8 dot product (getauxval(AT_HWCAP) on Linux and
 * Android; false on other systems, where only the NEON set runs). */
bool quant_neon_has_dotprod(void);
/* quant_matmul_k without scratch for k = NEON or DOTPROD; m = 1 is
 * quant_matvec_k (ldy unused). */
void quant_neon_matmul(quant_kset k, qtype t, const void *w, size_t n, const float *x, size_t m, float *y,
                       size_t ldy, size_t r0, size_t r1);
float quant_neon_dot_f32(const float *a, const float *b, size_t n);
/* The DOTPROD set's kernels for the block types (q4_0, q4_1, q5_0, q5_1,
 * q8_0, q4_k, q6_k) in quant_dotprod.c, the one file built with +dotprod. */
void quant_dotprod_matmul(qtype t, const void *w, size_t n, const float *x, size_t m, float *y, size_t ldy,
                          size_t r0, size_t r1);
#endif

#endif
