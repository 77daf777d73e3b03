/* Kernel sets against the default one (not a test): thread CPU time of
 * quant_matmul on Gemma 3 270M Q4_K_M's block-type shapes at m = 1, 8, 32
 * and 128 columns, every set this CPU runs, as a ratio to quant.h's set,
 * in one run. CPU time rather than wall time, and the best of 5 runs of
 * >= 50 ms each, so that a shared machine's load shows as noise, not as a
 * slower kernel (cache contention still does).
 *
 *   bench_kset */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"
#include "quant_impl.h"

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Random rows; the 32-weight types' f16 scales (each block's first two
 * bytes) set to 2^-7, so sums stay finite (the K-quants' stay random: timing
 * only). */
static unsigned char *make_rows(qtype t, size_t rows, size_t n)
{
    const bool k_quant = t == QT_Q4_K || t == QT_Q6_K;
    const size_t rb = quant_row_bytes(t, n), bb = k_quant ? rb * rows : quant_row_bytes(t, 32);
    unsigned char *w = malloc(rb * rows);
    if (!w)
        exit(1);
    for (size_t i = 0; i < rb * rows; i++)
        w[i] = (unsigned char)(rand() & 0xff);
    for (size_t i = 0; !k_quant && i + 1 < rb * rows; i += bb) {
        w[i] = 0x00;
        w[i + 1] = 0x20;
    }
    return w;
}

static double time_one(quant_kset k, qtype t, const unsigned char *w, size_t rows, size_t n, const float *x, size_t m,
                       float *y, float *scratch)
{
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        const double t0 = cpu_s();
        int it = 0;
        do {
            quant_matmul_k(k, t, w, n, x, m, y, rows, 0, rows, scratch);
            it++;
        } while (cpu_s() - t0 < 0.05);
        const double dt = (cpu_s() - t0) / it;
        best = dt < best ? dt : best;
    }
    return best;
}

int main(void)
{
    static const struct {
        qtype t;
        size_t rows, n;
        const char *what;
    } shapes[] = {
        {QT_Q5_0, 2048, 640, "ffn_gate/up"}, {QT_Q5_0, 1024, 640, "attn_q"}, {QT_Q8_0, 256, 640, "attn_v"},
        {QT_Q4_K, 640, 1024, "attn_output"}, {QT_Q6_K, 640, 2048, "ffn_down"}, {QT_Q8_0, 32768, 640, "output (1/8)"},
    };
    static const size_t ms[] = {1, 8, 32, 128};
    const quant_kset base = quant_kset_best();
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("hinge bench_kset: thread CPU time, ratio = %s time / set's time (> 1: the set is faster)\n",
           quant_kset_name(base));
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const size_t n = shapes[s].n, rows = shapes[s].rows;
        unsigned char *w = make_rows(shapes[s].t, rows, n);
        float *x = malloc(128 * n * sizeof *x), *y = malloc(128 * rows * sizeof *y);
        float *scratch = aligned_alloc(64, QUANT_MM_ROWS * n * sizeof *scratch);
        if (!x || !y || !scratch)
            return 1;
        for (size_t i = 0; i < 128 * n; i++)
            x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
            const double tb = time_one(base, shapes[s].t, w, rows, n, x, ms[mi], y, scratch);
            printf("%-5s %5zu x %4zu %-12s m=%3zu: %s %.3f ms", quant_name(shapes[s].t), rows, n, shapes[s].what,
                   ms[mi], quant_kset_name(base), tb * 1e3);
            for (int k = 0; k < QUANT_KSET_COUNT; k++) {
                if (k == (int)base || k == QUANT_KSET_SCALAR || !quant_kset_supported((quant_kset)k))
                    continue;
                const double tk = time_one((quant_kset)k, shapes[s].t, w, rows, n, x, ms[mi], y, scratch);
                printf(", %s x%.2f", quant_kset_name((quant_kset)k), tb / tk);
            }
            printf("\n");
        }
        free(w);
        free(x);
        free(y);
        free(scratch);
    }
    return 0;
}
