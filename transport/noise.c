/* The noise defence: see tx_noise_add in transport.h. */
#include <math.h>

#include "transport.h"

/* splitmix64: a counter-based generator, so that the noise of (seed,
 * position, column) is one fixed value whatever the chunking of the steps
 * and however often a prefix is replayed (failover). */
static uint64_t mix(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* A uniform in (0, 1) from the top 53 bits. */
static double unit(uint64_t x) { return ((double)(x >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

void tx_noise_add(float *rows, uint32_t n, uint32_t dim, uint32_t pos0, float rel_std, uint64_t seed)
{
    if (!(rel_std > 0.0f))
        return;
    const double two_pi = 6.283185307179586;
    for (uint32_t i = 0; i < n; i++) {
        float *x = rows + (size_t)i * dim;
        double ss = 0.0;
        for (uint32_t j = 0; j < dim; j++)
            ss += (double)x[j] * x[j];
        double sd = (double)rel_std * sqrt(ss / dim);
        uint64_t base = mix(seed ^ mix((uint64_t)pos0 + i));
        for (uint32_t j = 0; j < dim; j += 2) { /* Box-Muller: two normals per pair of uniforms */
            double u1 = unit(mix(base + j)), u2 = unit(mix(base + j + 1));
            double r = sqrt(-2.0 * log(u1)) * sd;
            x[j] += (float)(r * cos(two_pi * u2));
            if (j + 1 < dim)
                x[j + 1] += (float)(r * sin(two_pi * u2));
        }
    }
}
