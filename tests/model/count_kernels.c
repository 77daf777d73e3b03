/* One kernel, repeated, for an instruction counter (not a test):
 * scripts/arm64-insns runs it under qemu-aarch64 with a counting plugin,
 * once with reps = 0 (the set-up alone) and once with reps = R, and divides
 * the difference by R and the work of one call.
 *
 *   count_kernels SET WHAT REPS
 *     SET   a kernel set (scalar, neon, dotprod, avx2 ...); the ops follow
 *           HINGE_CPU, which must name the same set
 *     WHAT  matvec:TYPE  64 rows x 2048 weights, one activation row
 *           matmul:TYPE  the same for 16 rows of X (a prefill chunk)
 *           rmsnorm | softmax | geglu     2048 values
 *           rope         Gemma 3's 4 query heads of 256
 *           attention    one head of 256 against 512 positions
 *           decode       one token of a model (HINGE_GEMMA_MODEL, default
 *                        ~/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf) at
 *                        positions 0, 1, ...: embed, every layer, head; one
 *                        thread
 * Prints the work of one call ("units N": weights x rows of X, values, or 1
 * token). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model.h"
#include "ops.h"
#include "quant.h"
#include "quant_impl.h"

enum { ROWS = 64, N = 2048, M = 16, HEADS = 4, HD = 256, KEYS = 512 };

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static float *floats(size_t n)
{
    float *x = malloc(n * sizeof *x);
    if (!x) {
        fprintf(stderr, "count_kernels: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rnd() / 4294967296.0f - 0.5f;
    return x;
}

/* Random weights; every f16 scale (and min) 0.01, f16/bf16 values small. */
static uint8_t *weights(qtype t)
{
    const size_t bytes = ROWS * quant_row_bytes(t, N), bb = quant_block_bytes(t);
    uint8_t *w = malloc(bytes);
    if (!w) {
        fprintf(stderr, "count_kernels: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)rnd();
    const uint16_t h = quant_f32_to_f16(0.01f);
    for (size_t b = 0; b < bytes / bb; b++) {
        uint8_t *p = w + b * bb;
        switch (t) {
        case QT_F32: {
            const float f = (float)rnd() / 4294967296.0f;
            memcpy(p, &f, 4);
            break;
        }
        case QT_F16: case QT_BF16: p[1] &= 0x3f; break;
        case QT_Q6_K: memcpy(p + 208, &h, 2); break;
        case QT_Q4_1: case QT_Q5_1: case QT_Q4_K:
            memcpy(p, &h, 2);
            memcpy(p + 2, &h, 2);
            break;
        default: memcpy(p, &h, 2); break;
        }
    }
    return w;
}

static int find_set(const char *name, quant_kset *k)
{
    for (int i = 0; i < QUANT_KSET_COUNT; i++)
        if (strcmp(name, quant_kset_name((quant_kset)i)) == 0 && quant_kset_supported((quant_kset)i)) {
            *k = (quant_kset)i;
            return 0;
        }
    return -1;
}

static int find_type(const char *name, qtype *t)
{
    static const qtype all[] = {QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0,
                                QT_Q5_1, QT_Q8_0, QT_Q4_K, QT_Q6_K};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, quant_name(all[i])) == 0) {
            *t = all[i];
            return 0;
        }
    return -1;
}

/* Values the in-place ops see fresh each time: rep r works on slice r % POOL. */
enum { POOL = 64 };

static long long ops(const char *what, long reps)
{
    float *pool = floats((size_t)POOL * N), *u = floats(N), *y = floats(N), *q = floats(HEADS * HD);
    float *kc = floats((size_t)KEYS * HD), *vc = floats((size_t)KEYS * HD), *out = floats(HD), *sc = floats(KEYS);
    int kind = !strcmp(what, "rmsnorm") ? 0 : !strcmp(what, "softmax") ? 1 : !strcmp(what, "geglu") ? 2
             : !strcmp(what, "rope") ? 3 : !strcmp(what, "attention") ? 4 : -1;
    for (long r = 0; r < reps && kind >= 0; r++) {
        float *x = pool + (size_t)(r % POOL) * N;
        switch (kind) {
        case 0: op_rmsnorm(y, x, u, N, 1e-6f); break;
        case 1: op_softmax(x, N); break;
        case 2: op_geglu(x, u, N); break;
        case 3: op_rope(q, HEADS, HD, HD, true, (uint32_t)r + 100, 10000.0f, 1.0f); break;
        case 4: op_attention_head(out, q, kc, vc, HD, HD, HD, HD, 0, KEYS - 1, 0.0625f, sc); break;
        }
    }
    switch (kind) {
    case 0: case 1: case 2: return N;
    case 3: return HEADS * HD;
    case 4: return 2LL * KEYS * HD; /* q.k and the weighted sum of values */
    default: return -1;
    }
}

/* reps decode steps of the model: 1 token each, one thread. */
static int decode(long reps)
{
    char path[4096], err[HINGE_ERRMSG_MAX] = "";
    const char *env = getenv("HINGE_GEMMA_MODEL"), *home = getenv("HOME");
    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else
        snprintf(path, sizeof path, "%s/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf", home ? home : ".");
    model *m = NULL;
    fwd_ctx *f = NULL;
    const fwd_config cfg = {.layer_begin = 0, .ctx = 64, .max_batch = 1};
    if (model_load(path, false, NULL, &m, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "count_kernels: %s\n", err);
        return 1;
    }
    fwd_config c = cfg;
    c.layer_end = m->hp.n_layer;
    if (fwd_create(m, NULL, &c, &f, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "count_kernels: %s\n", err);
        model_free(m);
        return 1;
    }
    float *h = floats(m->hp.n_embd), *logits = floats(m->hp.n_vocab);
    int32_t tok = 2;
    for (long r = 0; r < reps && r < 64; r++) {
        if (fwd_embed(f, &tok, 1, h) != HINGE_OK || fwd_layers(f, (uint32_t)r, 1, h) != HINGE_OK ||
            fwd_head(f, h, 1, logits) != HINGE_OK) {
            fprintf(stderr, "count_kernels: %s\n", fwd_errmsg(f));
            return 1;
        }
        tok = (int32_t)(r * 7919 % m->hp.n_vocab);
    }
    printf("units 1\n");
    fwd_destroy(f);
    model_free(m);
    free(h);
    free(logits);
    return 0;
}

int main(int argc, char **argv)
{
    quant_kset k;
    char *end;
    const long reps = argc == 4 ? strtol(argv[3], &end, 10) : -1;
    if (argc != 4 || *end || reps < 0 || find_set(argv[1], &k)) {
        fprintf(stderr, "usage: count_kernels SET WHAT REPS (SET one this CPU runs)\n");
        return 2;
    }
    const char *what = argv[2];
    if (strcmp(what, "decode") == 0)
        return strcmp(quant_isa(), argv[1]) ? 2 : decode(reps);
    if (strncmp(what, "matvec:", 7) == 0 || strncmp(what, "matmul:", 7) == 0) {
        qtype t;
        if (find_type(what + 7, &t)) {
            fprintf(stderr, "count_kernels: unknown type %s\n", what + 7);
            return 2;
        }
        const int mm = what[3] == 'm';
        const uint8_t *w = weights(t);
        float *x = floats((size_t)M * N), *y = floats((size_t)M * ROWS), *scratch = floats(QUANT_MM_ROWS * N);
        for (long r = 0; r < reps; r++) {
            if (mm)
                quant_matmul_k(k, t, w, N, x, M, y, ROWS, 0, ROWS, scratch);
            else
                quant_matvec_k(k, t, w, N, x, y, 0, ROWS);
        }
        printf("units %lld\n", (long long)ROWS * N * (mm ? M : 1));
        return 0;
    }
    if (strcmp(quant_isa(), argv[1]) != 0) {
        fprintf(stderr, "count_kernels: the ops run %s: set HINGE_CPU=%s\n", quant_isa(), argv[1]);
        return 2;
    }
    const long long units = ops(what, reps);
    if (units < 0) {
        fprintf(stderr, "count_kernels: unknown kernel %s\n", what);
        return 2;
    }
    printf("units %lld\n", units);
    return 0;
}
