/* Single-thread throughput of the CPU weight kernels (not a test).
 *
 * Prints, in one run: memcpy bandwidth on 512 MiB; quant_matvec GB/s of
 * weight bytes read for every type on matrices far larger than L3, with the
 * ratio to memcpy (f32 shows what a plain read stream reaches); quant_matmul
 * GFLOP/s for m = 128 positions. Every kernel set the CPU supports is timed;
 * the first column is the one quant.h uses. Times are the best of several
 * runs, so a busy machine shows as noise, not as a slower kernel.
 *
 *   bench_quant [-q]     -q: fewer repetitions, for a quick look */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"
#include "quant_impl.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x2545f4914f6cdd1du;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench_quant: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static float *make_x(size_t n)
{
    float *x = xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rnd() / 4294967296.0f - 0.5f;
    return x;
}

/* Random bytes with every f16 scale set to 0.01 (so no inf/nan slows a path). */
static uint8_t *make_w(qtype t, size_t rows, size_t n)
{
    const size_t bytes = rows * quant_row_bytes(t, n), bb = quant_block_bytes(t);
    uint8_t *w = xmalloc(bytes);
    for (size_t i = 0; i + 4 <= bytes; i += 4) {
        const uint32_t r = rnd();
        memcpy(w + i, &r, 4);
    }
    const uint16_t d = quant_f32_to_f16(0.01f);
    for (size_t p = 0; p + bb <= bytes; p += bb) {
        switch (t) {
        case QT_F32: {
            const float f = (float)(p % 97) * 0.01f;
            memcpy(w + p, &f, 4);
            break;
        }
        case QT_F16: case QT_BF16: memcpy(w + p, &d, 2); break;
        case QT_Q4_K: case QT_Q4_1: case QT_Q5_1: /* d, then dmin or m */
            memcpy(w + p, &d, 2);
            memcpy(w + p + 2, &d, 2);
            break;
        case QT_Q4_0: case QT_Q5_0: case QT_Q8_0: memcpy(w + p, &d, 2); break;
        case QT_Q6_K: memcpy(w + p + 208, &d, 2); break;
        case QT_Q5_K: /* d, dmin */
            memcpy(w + p, &d, 2);
            memcpy(w + p + 2, &d, 2);
            break;
        case QT_Q2_K: /* d, dmin after scales and qs */
            memcpy(w + p + 80, &d, 2);
            memcpy(w + p + 82, &d, 2);
            break;
        case QT_Q3_K: memcpy(w + p + 108, &d, 2); break;
        case QT_IQ4_NL: memcpy(w + p, &d, 2); break;
        }
    }
    return w;
}

/* Best of reps runs of bytes copied per second. */
static double bench_memcpy(size_t bytes, int reps)
{
    char *a = xmalloc(bytes), *b = xmalloc(bytes);
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        memcpy(b, a, bytes);
        __asm__ volatile("" : : "r"(b) : "memory"); /* keep the copy */
        const double t = now() - t0;
        best = t < best ? t : best;
    }
    free(a);
    free(b);
    return (double)bytes / best / 1e9;
}

static double bench_matvec(quant_kset k, qtype t, const uint8_t *w, size_t rows, size_t n, const float *x, float *y,
                           int reps)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        quant_matvec_k(k, t, w, n, x, y, 0, rows);
        const double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    return (double)(rows * quant_row_bytes(t, n)) / best / 1e9;
}

/* n floats, 64-byte aligned plus off floats; free(*base). */
static float *xalloc_floats(size_t n, size_t off, float **base)
{
    *base = aligned_alloc(64, ((n + off) * sizeof(float) + 63) / 64 * 64);
    if (!*base) {
        fprintf(stderr, "bench_quant: out of memory (%zu floats)\n", n);
        exit(1);
    }
    return *base + off;
}

/* x and scratch at 64-byte alignment plus off floats. */
static double bench_matmul(quant_kset k, qtype t, size_t rows, size_t n, size_t m, size_t off, int reps)
{
    uint8_t *w = make_w(t, rows, n);
    float *xb, *sb, *y = xmalloc(m * rows * sizeof *y);
    float *x = xalloc_floats(m * n, off, &xb), *scratch = xalloc_floats(QUANT_MM_ROWS * n, off, &sb);
    for (size_t i = 0; i < m * n; i++)
        x[i] = (float)rnd() / 4294967296.0f - 0.5f;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        quant_matmul_k(k, t, w, n, x, m, y, rows, 0, rows, scratch);
        const double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    free(w);
    free(xb);
    free(y);
    free(sb);
    return 2.0 * (double)rows * (double)n * (double)m / best / 1e9;
}

int main(int argc, char **argv)
{
    const int quick = argc > 1 && strcmp(argv[1], "-q") == 0;
    const int reps = quick ? 2 : 5;
    quant_kset sets[QUANT_KSET_COUNT];
    int nsets = 0;
    sets[nsets++] = quant_kset_best();
    for (int k = 0; k < QUANT_KSET_COUNT; k++)
        if ((quant_kset)k != sets[0] && quant_kset_supported((quant_kset)k))
            sets[nsets++] = (quant_kset)k;

    printf("hinge bench_quant: one thread, kernel set %s\n", quant_isa());
    const double mc = bench_memcpy((size_t)512 << 20, reps);
    printf("memcpy 512 MiB: %.2f GB/s (bytes copied per second)\n\n", mc);

    /* Each matrix ~ 180-270 MB of weights: far past L3, like the Q8_0 head. */
    static const struct {
        qtype t;
        size_t rows, n;
    } mv[] = {
        {QT_Q8_0, 262144, 640},  {QT_Q5_0, 262144, 640}, {QT_Q4_0, 262144, 1024}, {QT_Q4_K, 262144, 1024},
        {QT_Q6_K, 131072, 2048}, {QT_F16, 131072, 1024}, {QT_BF16, 131072, 1024}, {QT_F32, 65536, 1024},
        /* quant_k.c's types: a portable decoder, then the set's multiply-adds */
        {QT_Q5_K, 262144, 1024}, {QT_Q3_K, 262144, 1024}, {QT_Q2_K, 262144, 1024}, {QT_IQ4_NL, 262144, 1024},
    };
    printf("matvec       rows x n        MB");
    for (int s = 0; s < nsets; s++)
        printf("  %6s GB/s  /memcpy", quant_kset_name(sets[s]));
    printf("\n");
    for (size_t i = 0; i < sizeof mv / sizeof mv[0]; i++) {
        const size_t rows = mv[i].rows, n = mv[i].n;
        uint8_t *w = make_w(mv[i].t, rows, n);
        float *x = make_x(n), *y = xmalloc(rows * sizeof *y);
        printf("%-6s %9zu x %-5zu %6.0f", quant_name(mv[i].t), rows, n,
               (double)(rows * quant_row_bytes(mv[i].t, n)) / 1e6);
        for (int s = 0; s < nsets; s++) {
            const int r = sets[s] == QUANT_KSET_SCALAR ? 1 : reps; /* scalar: slow, once is enough */
            const double gbs = bench_matvec(sets[s], mv[i].t, w, rows, n, x, y, r);
            printf("  %11.2f  %6.0f%%", gbs, 100.0 * gbs / mc);
        }
        printf("\n");
        fflush(stdout);
        free(w);
        free(x);
        free(y);
    }

    /* x and scratch 64-byte aligned, as the 512-bit tile wants; the last
     * row repeats the first 16 bytes off that. */
    static const struct {
        qtype t;
        size_t rows, n, off;
    } mm[] = {
        {QT_Q5_0, 2048, 640, 0}, {QT_Q5_0, 640, 2048, 0},   {QT_Q4_K, 640, 1024, 0},
        {QT_Q6_K, 640, 2048, 0}, {QT_Q8_0, 262144, 640, 0}, {QT_Q5_0, 2048, 640, 4},
    };
    const size_t m = 128;
    printf("\nmatmul m=%zu   rows x n      ", m);
    for (int s = 0; s < nsets; s++)
        printf("  %6s GFLOP/s", quant_kset_name(sets[s]));
    printf("\n");
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) {
        const int big = mm[i].rows > 100000;
        printf("%-6s %9zu x %-5zu %-6s", quant_name(mm[i].t), mm[i].rows, mm[i].n, mm[i].off ? "+16 B" : "");
        for (int s = 0; s < nsets; s++) {
            if (big && s > 0) { /* minutes on the scalar set */
                printf("  %14s", "-");
                continue;
            }
            const int r = big || sets[s] == QUANT_KSET_SCALAR ? 1 : reps;
            printf("  %14.2f", bench_matmul(sets[s], mm[i].t, mm[i].rows, mm[i].n, m, mm[i].off, r));
            fflush(stdout);
        }
        printf("\n");
    }
    return 0;
}
