/* The x86 kernel sets of quant.h: AVX2 + FMA + F16C, and AVX-512 for the
 * row kernels (quant_x86.h; quant.c dispatches).
 *
 * Batch invariance. Every product goes through one row kernel per set and
 * type, written for J activation rows (columns of the output) at once: the
 * weights are decoded once and used for all J, and each column keeps its own
 * accumulators, fed by the same sequence of vector operations as when J = 1.
 * A matvec is the J = 1 case. So y[j][r] has the same bits whether X has 1
 * row or 64, whichever J the driver picks for it, whichever thread computes
 * row r: blocking is over rows and columns only, never over the reduction
 * (which is split only in passes of XS_COLS weights, the same for every m).
 * A session's logits on the edge then do not depend on the batch it is in,
 * and a prefill of n positions equals n single-position steps bit for bit.
 *
 * Decoding, not memory, bounds a single core here: Zen-class cores run
 * int->float conversion and shifts on two of their four vector pipes and FMA
 * on two others. So bytes are widened with vpmovzx/vpmovsx straight from
 * memory (a load and one shuffle), bit twiddling stays with and/or, blocks
 * are scaled once rather than per weight. With J columns that decoding is
 * shared: the J-column kernels are what a batch of decode steps, and a
 * prefill, runs.
 *
 * Files: quant_x86.c (this: CPU checks, the drivers, the dispatch),
 * quant_x86_avx2.c and quant_x86_512.c (each set's row kernels),
 * quant_x86_impl.h (what they share). */
#include "quant_x86_impl.h"

#if QUANT_HAVE_X86
#include <cpuid.h>
#include <stdint.h>
#include <string.h>

bool quant_x86_has_avx2(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_F16C))
        return false;
    /* these also check that the OS saves the ymm registers */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool quant_x86_has_avx512(void)
{
    return quant_x86_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

AVX2 void qx_xsums(const float *x, size_t n, float *xs)
{
    for (size_t b = 0; b < n / 32; b++, x += 32)
        xs[b] = hsum(_mm256_add_ps(_mm256_add_ps(ld(x), ld(x + 8)), _mm256_add_ps(ld(x + 16), ld(x + 24))));
}

/* The kernels of set k for type t. */
static kernels x86_kernels(quant_kset k, qtype t)
{
    return k == QUANT_KSET_AVX2 || k == QUANT_KSET_AVXVNNI16 ? qx_avx2_kernels(t) : qx_512_kernels(t);
}

/* ------------------------------------------------------------------ */
/* Drivers                                                             */

/* Weights per pass over the rows: wider rows are done in passes that add
 * into y, the same passes for every m. Q4_K's x sums take XS_LEN floats per
 * activation row and pass. */
enum { XS_COLS = 8192, XS_LEN = XS_COLS / 32 };

/* Activation rows per chunk (their Q4_K sums live on the stack, 128 KB;
 * each chunk decodes every weight row again: 128, a prefill pass of the
 * benchmarks, decodes once where 64 decoded twice, +2.5% prefill); weight
 * rows per block of the direct driver (a block's rows stay in L1 while
 * every column group of the chunk goes by); from TILE_M columns on, rows
 * are decoded QUANT_MM_ROWS at a time into scratch and tiled. */
enum { MC = 128, RB = 16, TILE_M = 8 };

/* One pass (weights c0 .. c0+cn) of a chunk of mj columns at x (row stride
 * n), rows [r0, r1), into y (added to y after the first pass). */
typedef struct pass {
    qtype t;
    const uint8_t *w;
    size_t n, rb;        /* row length and bytes */
    const float *x;      /* the chunk's first column, pass offset applied */
    size_t mj;
    float *y;            /* the chunk's first output row */
    size_t ldy, r0, r1;
    bool add;            /* c0 > 0 */
    size_t len;          /* blocks (weights for float types) in the pass */
    const uint8_t *w0;   /* row 0 at the pass offset */
    const float *xs;     /* XS_LEN per column */
    float *scratch;      /* QUANT_MM_ROWS * cn floats */
} pass;

static void put(const pass *p, size_t j, size_t r, float v)
{
    float *o = p->y + j * p->ldy + r;
    *o = p->add ? *o + v : v;
}

static void pass_direct(const pass *p, const kernels *K)
{
    float v[QX_RCAP * JCAP];
    if (p->mj == 1) {
        size_t r = p->r0;
        for (; r + K->r_matvec <= p->r1; r += K->r_matvec) {
            K->direct[0](p->w0 + r * p->rb, p->rb, p->x, p->n, p->xs, XS_LEN, p->len, v);
            for (size_t i = 0; i < K->r_matvec; i++)
                put(p, 0, r + i, v[i]);
        }
        for (; r < p->r1; r++) {
            K->direct[1](p->w0 + r * p->rb, p->rb, p->x, p->n, p->xs, XS_LEN, p->len, v);
            put(p, 0, r, v[0]);
        }
        return;
    }
    for (size_t rr = p->r0; rr < p->r1; rr += RB) {
        const size_t re = p->r1 - rr < RB ? p->r1 : rr + RB;
        for (size_t j0 = 0; j0 < p->mj;) {
            size_t J = p->mj - j0 < JCAP ? p->mj - j0 : JCAP;
            while (!K->direct[J])
                J--;
            for (size_t r = rr; r < re; r++) {
                K->direct[J](p->w0 + r * p->rb, p->rb, p->x + j0 * p->n, p->n, p->xs + j0 * XS_LEN, XS_LEN, p->len,
                             v);
                for (size_t j = 0; j < J; j++)
                    put(p, j0 + j, r, v[j]);
            }
            j0 += J;
        }
    }
}

/* QUANT_MM_ROWS rows at a time decoded into scratch (f32 rows read where
 * they are), then tiles (float types' rows may end in a partial group). */
static void pass_tiles(const pass *p, const kernels *K)
{
    const size_t cn = p->len * block_elems(p->t), ng = cn / K->lanes, tail = cn % K->lanes;
    const bool in_place = p->t == QT_F32;
    const size_t lds = in_place ? p->rb / sizeof(float) : cn;
    for (size_t rr = p->r0; rr < p->r1; rr += QUANT_MM_ROWS) {
        const size_t nr = p->r1 - rr < QUANT_MM_ROWS ? p->r1 - rr : QUANT_MM_ROWS;
        const float *rows = in_place ? (const float *)(const void *)(p->w0 + rr * p->rb) : p->scratch;
        for (size_t i = 0; i < nr && !in_place; i++)
            K->fill(p->t, p->w0 + (rr + i) * p->rb, p->len, p->scratch + i * cn);
        for (size_t i0 = 0; i0 < nr; i0 += K->tile_r) {
            const size_t R = nr - i0 < K->tile_r ? nr - i0 : K->tile_r;
            for (size_t j0 = 0; j0 < p->mj; j0 += K->tile_j) {
                const size_t J = p->mj - j0 < K->tile_j ? p->mj - j0 : K->tile_j;
                float v[TILES_R * TILES_J];
                K->tiles[R - 1][J - 1](rows + i0 * lds, lds, p->x + j0 * p->n, p->n, ng, tail, v);
                if (p->t == QT_Q4_K)
                    qx_q4_k_mins(p->w0 + (rr + i0) * p->rb, p->rb, p->xs + j0 * XS_LEN, XS_LEN, p->len, (int)R,
                                   (int)J, v);
                put_tile(p->y + j0 * p->ldy + rr + i0, p->ldy, v, R, J, p->add);
            }
        }
    }
}

/* m = 1, apart from the general driver: a small stack frame (the general
 * one's Q4_K sums take 64 KB, probed page by page on every call). */
__attribute__((noinline)) static void matvec_x86(const kernels *K, qtype t, const void *w, size_t n, const float *x,
                                                 float *y, size_t r0, size_t r1)
{
    _Alignas(64) float xa[XS_COLS];
    float xs[XS_LEN];
    pass p = {.t = t, .w = w, .n = n, .rb = quant_row_bytes(t, n), .mj = 1, .y = y, .ldy = 0, .r0 = r0, .r1 = r1,
              .xs = xs};
    for (size_t c0 = 0; c0 == 0 || c0 < n; c0 += XS_COLS) { /* n = 0: one empty pass, y = 0 */
        const size_t cn = n - c0 < XS_COLS ? n - c0 : XS_COLS;
        p.x = x + c0;
        p.add = c0 > 0;
        p.len = cn / block_elems(t);
        p.w0 = (const uint8_t *)w + quant_row_bytes(t, c0);
        /* copied when misaligned (split loads cost the 512-bit kernels up to
         * a third of their speed); the same values */
        if ((uintptr_t)p.x % 64) {
            memcpy(xa, p.x, cn * sizeof *xa);
            p.x = xa;
        }
        if (t == QT_Q4_K)
            qx_xsums(p.x, cn, xs);
        pass_direct(&p, K);
    }
}

__attribute__((noinline)) static void matmul_x86(const kernels *K, qtype t, const void *w, size_t n, const float *x,
                                                 size_t m, float *y, size_t ldy, size_t r0, size_t r1,
                                                 float *scratch)
{
    float xs[MC * XS_LEN];
    pass p = {.t = t, .w = w, .n = n, .rb = quant_row_bytes(t, n), .ldy = ldy, .r0 = r0, .r1 = r1, .xs = xs,
              .scratch = scratch};
    for (size_t j0 = 0; j0 < m; j0 += MC) {
        p.mj = m - j0 < MC ? m - j0 : MC;
        p.y = y + j0 * ldy;
        for (size_t c0 = 0; c0 == 0 || c0 < n; c0 += XS_COLS) {
            const size_t cn = n - c0 < XS_COLS ? n - c0 : XS_COLS;
            p.x = x + j0 * n + c0;
            p.add = c0 > 0;
            p.len = cn / block_elems(t);
            p.w0 = (const uint8_t *)w + quant_row_bytes(t, c0);
            if (t == QT_Q4_K)
                for (size_t j = 0; j < p.mj; j++)
                    qx_xsums(p.x + j * n, cn, xs + j * XS_LEN);
            if (p.mj < TILE_M || !scratch)
                pass_direct(&p, K);
            else
                pass_tiles(&p, K);
        }
    }
}

/* Set k's K-quant products are the integer ones (quant_x86_kint.c). */
static bool kint_set(quant_kset k) { return k == QUANT_KSET_VNNI16 || k == QUANT_KSET_VNNI8 || k == QUANT_KSET_AVXVNNI16; }

/* Only those quantise activations per product: what the other sets read is
 * x itself. A matvec (m = 1) keeps its small-frame path. */
size_t quant_x86_prep_bytes(quant_kset k, qtype t, size_t n, size_t m)
{
    return m > 1 && kint_set(k) && qx_kint_handles(t, n) ? qx_kint_prep_bytes(n, m) : 0;
}

void quant_x86_prep(quant_kset k, qtype t, const float *x, size_t n, size_t m, size_t j0, size_t j1, void *prep)
{
    if (quant_x86_prep_bytes(k, t, n, m))
        qx_kint_prep(t, x, n, m, j0, j1, prep);
}

void quant_x86_matmul_prep(quant_kset k, qtype t, const void *w, size_t n, const float *x, const void *prep,
                           size_t m, float *y, size_t ldy, size_t r0, size_t r1, float *scratch)
{
    if (prep && scratch && quant_x86_prep_bytes(k, t, n, m))
        qx_kint_matmul(k != QUANT_KSET_AVXVNNI16, t, w, n, x, prep, m, y, ldy, r0, r1, scratch);
    else
        quant_x86_matmul(k, t, w, n, x, m, y, ldy, r0, r1, scratch);
}

void quant_x86_matmul(quant_kset k, qtype t, const void *w, size_t n, const float *x, size_t m, float *y,
                      size_t ldy, size_t r0, size_t r1, float *scratch)
{
    if ((k == QUANT_KSET_VNNI || k == QUANT_KSET_VNNI8) && qx_vnni_handles(t, n)) {
        qx_vnni_matmul(t, k == QUANT_KSET_VNNI ? 3 : 1, w, n, x, m, y, ldy, r0, r1, scratch);
        return;
    }
    if (kint_set(k) && qx_kint_handles(t, n)) {
        qx_kint_matmul(k != QUANT_KSET_AVXVNNI16, t, w, n, x, NULL, m, y, ldy, r0, r1, scratch);
        return;
    }
    const kernels K = x86_kernels(k, t);
    if (m == 1)
        matvec_x86(&K, t, w, n, x, y, r0, r1);
    else
        matmul_x86(&K, t, w, n, x, m, y, ldy, r0, r1, scratch);
}

void quant_x86_dequant(qtype t, const void *row, float *dst, size_t n)
{
    qx_dequant_avx2(t, row, dst, n);
}

float quant_x86_dot_f32(const float *a, const float *b, size_t n)
{
    return qx_dot_f32_avx2(a, b, n);
}

#else
typedef int quant_x86_unused; /* ISO C wants a declaration in every file */
#endif /* QUANT_HAVE_X86 */