/* Every weight type's decoder in every kernel set against the gguf
 * package's dequantisation (numpy, ported from ggml's reference C) of the
 * same random blocks, read from a GGUF file that make_quant_gguf.py wrote:
 * the layouts are checked against an implementation hinge shares nothing
 * with. Tolerance: 1 ulp, or 1e-6 of the row's largest weight (numpy may
 * round a product the other way).
 *   test_quant_gguf FILE.gguf */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quant.h"
#include "quant_impl.h"

static const char *const NAMES[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k",
                                    "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl"};

static int ulps(float a, float b)
{
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    ia = ia < 0 ? INT32_MIN - ia : ia;
    ib = ib < 0 ? INT32_MIN - ib : ib;
    return abs(ia - ib);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_quant_gguf FILE.gguf\n");
        return 2;
    }
    char err[256];
    gguf_file *f = NULL;
    if (gguf_open(argv[1], &f, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }
    int bad = 0, checked = 0;
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        char wn[32], rn[32];
        snprintf(wn, sizeof wn, "w.%s", NAMES[i]);
        snprintf(rn, sizeof rn, "ref.%s", NAMES[i]);
        const gguf_tensor *w = gguf_find_tensor(f, wn), *r = gguf_find_tensor(f, rn);
        if (!w || !r || r->type != QT_F32 || strcmp(quant_name(w->type), NAMES[i]) != 0 || w->ne[0] != r->ne[0] ||
            w->ne[1] != r->ne[1]) {
            fprintf(stderr, "%s: missing or mismatched tensors for %s\n", argv[1], NAMES[i]);
            return 1;
        }
        const size_t n = (size_t)w->ne[0], rows = (size_t)w->ne[1], rb = quant_row_bytes(w->type, n);
        float *got = malloc(n * sizeof *got);
        if (!got)
            return 1;
        for (int k = 0; k < QUANT_KSET_COUNT; k++) {
            if (!quant_kset_supported((quant_kset)k))
                continue;
            int worst = 0;
            for (size_t row = 0; row < rows; row++) {
                const float *ref = (const float *)r->data + row * n;
                float amax = 0;
                for (size_t e = 0; e < n; e++)
                    amax = fmaxf(amax, fabsf(ref[e]));
                quant_dequant_row_k((quant_kset)k, (qtype)w->type, (const uint8_t *)w->data + row * rb, got, n);
                for (size_t e = 0; e < n; e++) {
                    const int u = ulps(got[e], ref[e]);
                    worst = u > worst ? u : worst;
                    if (u > 1 && fabsf(got[e] - ref[e]) > 1e-6f * amax) {
                        if (bad++ < 10)
                            fprintf(stderr, "%s/%s row %zu [%zu]: hinge %.9g, gguf %.9g\n", NAMES[i],
                                    quant_kset_name((quant_kset)k), row, e, (double)got[e], (double)ref[e]);
                    }
                }
                checked++;
            }
            printf("%-6s %-7s worst %d ulp\n", NAMES[i], quant_kset_name((quant_kset)k), worst);
        }
        free(got);
    }
    gguf_close(f);
    printf("%d rows checked, %d weights outside the tolerance\n", checked, bad);
    return bad ? 1 : 0;
}
