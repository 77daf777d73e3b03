/* hinge: the x86 kernel sets (quant_x86.c) behind quant.c's dispatch.
 * Private to model/quant*.c. Each function has the contract of the quant.h
 * function of the same stem for set k (AVX2, AVX-512, VNNI); calling one on a
 * CPU without the set is a caller bug. */
#ifndef HINGE_QUANT_X86_H
#define HINGE_QUANT_X86_H

#include <stdbool.h>
#include <stddef.h>

#include "quant.h"
#include "quant_impl.h"

/* HINGE_QUANT_NO_SIMD builds the scalar set alone, as on a non-x86 CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(HINGE_QUANT_NO_SIMD)
#define QUANT_HAVE_X86 1
#else
#define QUANT_HAVE_X86 0
#endif

#if QUANT_HAVE_X86
bool quant_x86_has_avx2(void);   /* AVX2, FMA and F16C, with the OS saving ymm */
bool quant_x86_has_avx512(void); /* and AVX-512 F/BW/VL/DQ */
bool quant_x86_has_vnni(void);   /* and AVX-512 VNNI */
bool quant_x86_has_avxvnni(void); /* AVX2 and AVX-VNNI (vpdpwssd on ymm, VEX) */
void quant_x86_dequant(qtype t, const void *row, float *dst, size_t n);
/* quant_matmul_k; m = 1 is quant_matvec_k (ldy and scratch unused);
 * scratch NULL: the kernels that need none (slower for large m). */
void quant_x86_matmul(quant_kset k, qtype t, const void *w, size_t n, const float *x, size_t m, float *y,
                      size_t ldy, size_t r0, size_t r1, float *scratch);
float quant_x86_dot_f32(const float *a, const float *b, size_t n);
/* quant_prep_bytes_k, quant_prep_x_k and quant_matmul_prep_k for set k. */
size_t quant_x86_prep_bytes(quant_kset k, qtype t, size_t n, size_t m);
void quant_x86_prep(quant_kset k, qtype t, const float *x, size_t n, size_t m, size_t j0, size_t j1, void *prep);
void quant_x86_matmul_prep(quant_kset k, qtype t, const void *w, size_t n, const float *x, const void *prep,
                           size_t m, float *y, size_t ldy, size_t r0, size_t r1, float *scratch);
#endif

/* quant.c's scalar dequantiser (the AVX2 one's tail for float types). */
void quant_dequant_scalar(qtype t, const void *row, float *dst, size_t n);

#endif
