/* The x86 sets' parts of quant_k.c: the multiply-add over decoded weights
 * in 4 AVX2 vectors of 8 lanes (the AVX-512 set uses it too: these types are
 * bound by decoding, not by the width of the products), and IQ4_NL's decoder
 * with a byte shuffle for its table. */
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

__attribute__((target("avx2,fma,f16c"))) void quant_x86_k_iq4_nl(const void *row, float *dst, size_t n)
{
    const __m128i table = _mm_loadu_si128((const __m128i *)quant_iq4_nl_values), m4 = _mm_set1_epi8(0x0F);
    const block_iq4_nl *b = row;
    for (size_t i = 0; i < n / QK_0; i++, dst += QK_0) {
        const __m256 d = _mm256_set1_ps(quant_f16_to_f32(b[i].d));
        const __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(q, m4)); /* weights 0..15 */
        const __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(q, 4), m4)); /* 16..31 */
        const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
        for (int p = 0; p < 4; p++) /* d * (float)value, as the scalar decoder */
            _mm256_storeu_ps(dst + 8 * p, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[p]))));
    }
}
#else
typedef int quant_x86_k_empty; /* ISO C: no empty translation unit */
#endif
