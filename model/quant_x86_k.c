/* The x86 sets' multiply-add over decoded weights for quant_k.c: 4 AVX2
 * vectors of 8 lanes (the AVX-512 set uses it too: these types are bound by
 * decoding, not by the width of the products). */
#include "quant_k.h"
#include "quant_x86.h"

#if QUANT_HAVE_X86
#include <immintrin.h>

__attribute__((target("avx2,fma"))) void quant_x86_k_acc(const float *w, const float *x, size_t n, float acc[32])
{
    __m256 a0 = _mm256_loadu_ps(acc), a1 = _mm256_loadu_ps(acc + 8);
    __m256 a2 = _mm256_loadu_ps(acc + 16), a3 = _mm256_loadu_ps(acc + 24);
    for (size_t i = 0; i < n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    _mm256_storeu_ps(acc, a0);
    _mm256_storeu_ps(acc + 8, a1);
    _mm256_storeu_ps(acc + 16, a2);
    _mm256_storeu_ps(acc + 24, a3);
}
#else
typedef int quant_x86_k_empty; /* ISO C: no empty translation unit */
#endif
