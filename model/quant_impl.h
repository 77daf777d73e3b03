/* hinge: quant.c's kernel sets by name, for tests and benchmarks.
 *
 * The engine calls quant.h, which runs the best set this CPU supports. Tests
 * and bench_quant call these to check and time every set on one machine. Each
 * function has the contract of the quant.h function of the same stem; calling
 * one with a set that quant_kset_supported() denies is a caller bug. */
#ifndef HINGE_QUANT_IMPL_H
#define HINGE_QUANT_IMPL_H

#include "quant.h"

typedef enum quant_kset {
    QUANT_KSET_SCALAR = 0, /* portable C, any CPU */
    QUANT_KSET_AVX2 = 1,   /* x86-64 with AVX2, FMA and F16C */
    QUANT_KSET_AVX512 = 2, /* and AVX-512 F/BW/VL/DQ: 16-lane matvec and matmul, AVX2 elsewhere */
    QUANT_KSET_NEON = 3,   /* AArch64 Advanced SIMD (every ARM64 CPU): float kernels */
    QUANT_KSET_DOTPROD = 4, /* and the int8 dot product (SDOT): int8 kernels for the block types */
    QUANT_KSET_VNNI = 5,   /* x86-64 AVX-512 with VNNI (vpdpbusd): int8 kernels for Q4_0/Q5_0/Q8_0, AVX-512 elsewhere */
    QUANT_KSET_VNNI8 = 6,  /* the same with 8-bit activations (about 1e-2 of each product), Q4_K/Q6_K too: opt-in only */
    QUANT_KSET_VNNI16 = 7, /* AVX-512 VNNI: Q4_K/Q6_K by int16 products (vpdpwssd) on 15-bit activations, AVX-512 elsewhere */
    QUANT_KSET_AVXVNNI16 = 8, /* AVX2 with AVX-VNNI: the same Q4_K/Q6_K products on 256-bit vectors, AVX2 elsewhere: opt-in */
    QUANT_KSET_COUNT
} quant_kset;

/* True if this build has set k and this CPU can run it. */
bool quant_kset_supported(quant_kset k);
/* The set quant.h's functions (and ops.c's) use: the fastest supported one
 * (avx512vnni16 on AVX-512 VNNI, not avx512vnni: quant.c says why), or the one the environment
 * variable HINGE_CPU names ("scalar", "neon", "avx512vnni" ...)
 * if this CPU supports it (otherwise a warning on stderr and the fastest).
 * Decided once per process. */
quant_kset quant_kset_best(void);
/* "scalar", "avx2", "avx512", "neon", "dotprod", "avx512vnni", "avx512vnni8",
 * "avx512vnni16", "avxvnni16". */
const char *quant_kset_name(quant_kset k);

void quant_dequant_row_k(quant_kset k, qtype t, const void *row, float *dst, size_t n);
float quant_dot_row_k(quant_kset k, qtype t, const void *row, const float *x, size_t n);
void quant_matvec_k(quant_kset k, qtype t, const void *w, size_t n, const float *x, float *y, size_t r0,
                    size_t r1);
void quant_matmul_k(quant_kset k, qtype t, const void *w, size_t n, const float *x, size_t m, float *y,
                    size_t ldy, size_t r0, size_t r1, float *scratch);
float quant_dot_f32_k(quant_kset k, const float *a, const float *b, size_t n);
size_t quant_prep_bytes_k(quant_kset k, qtype t, size_t n, size_t m);
void quant_prep_x_k(quant_kset k, qtype t, const float *x, size_t n, size_t m, size_t j0, size_t j1, void *prep);
void quant_matmul_prep_k(quant_kset k, qtype t, const void *w, size_t n, const float *x, const void *prep, size_t m,
                         float *y, size_t ldy, size_t r0, size_t r1, float *scratch);

#endif
