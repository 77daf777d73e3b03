/* libFuzzer harness for transport/frame.c: the input is one activation
 * frame as an edge would receive it. Byte 0 picks the session the frame is
 * checked against (codec, dim, max positions), the rest is the body.
 * Beyond "no crash, no out-of-bounds access", it checks properties of what
 * the decoder accepts:
 *   - every decoded value is finite;
 *   - f32 frames re-encode to the very same bytes;
 *   - f16 frames re-encode to the very same values (the row scale is a
 *     power of two, so rescaling is exact);
 *   - q8 re-encodes within half a quantization step of each row's absmax.
 * Build and run: scripts/fuzz-wire. With -DHINGE_FUZZ_STANDALONE it is a
 * plain program (no libFuzzer) that replays files or random mutations. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t dims[4] = {1, 4, 64, 640};
static const uint32_t max_ns[4] = {1, 3, 16, 512};

static void check_q8(const tx_frame_header *h, const float *x, const float *y)
{
    for (uint32_t r = 0; r < h->n; r++) {
        float absmax = 0.0f;
        for (uint32_t j = 0; j < h->dim; j++)
            absmax = fmaxf(absmax, fabsf(x[(size_t)r * h->dim + j]));
        for (uint32_t j = 0; j < h->dim; j++) {
            size_t i = (size_t)r * h->dim + j;
            if (fabs((double)y[i] - (double)x[i]) > (double)absmax / 254.0 * 1.0001 + 1e-37)
                __builtin_trap();
        }
    }
}

static void check_roundtrip(const tx_frame_header *h, const uint8_t *frame, size_t len, const float *x)
{
    size_t cap = len + 64, out_len = 0, count = (size_t)h->n * h->dim;
    uint8_t *re = malloc(cap);
    float *y = malloc(count * sizeof(float));
    if (!re || !y)
        __builtin_trap();
    if (tx_frame_encode((tx_codec)h->codec, h->flags, h->pos, h->n, h->dim, x, re, cap, &out_len, NULL, 0) !=
        HINGE_OK) {
        if ((uint64_t)h->pos + h->n <= UINT32_MAX) /* only pos + n past 2^32 is the encoder's to refuse */
            __builtin_trap();
    } else if (h->codec == TX_CODEC_F32) {
        if (out_len != len || memcmp(re, frame, len) != 0)
            __builtin_trap();
    } else {
        tx_frame_limits lim = {.codec = (tx_codec)h->codec, .dim = h->dim, .max_n = h->n};
        if (tx_frame_decode(re, out_len, &lim, y, count, NULL, NULL, 0) != HINGE_OK)
            __builtin_trap();
        if (h->codec == TX_CODEC_Q8)
            check_q8(h, x, y);
        for (size_t i = 0; h->codec == TX_CODEC_F16 && i < count; i++)
            if (x[i] != y[i])
                __builtin_trap();
    }
    free(re);
    free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    tx_frame_limits lim = {.codec = (tx_codec)(1 + data[0] % 3), .dim = dims[(data[0] >> 2) & 3],
                           .max_n = max_ns[(data[0] >> 4) & 3]};
    const uint8_t *frame = data + 1;
    size_t len = size - 1;
    char err[HINGE_ERRMSG_MAX];
    tx_frame_header h;
    if (tx_frame_parse_header(frame, len, &lim, &h, err, sizeof err) != HINGE_OK)
        return 0;
    if (h.n > lim.max_n || h.dim != lim.dim || h.codec != lim.codec)
        __builtin_trap();
    size_t cap = (size_t)h.n * h.dim;
    float *x = malloc(cap * sizeof(float));
    if (!x)
        return 0;
    if (tx_frame_decode(frame, len, &lim, x, cap, &h, err, sizeof err) == HINGE_OK) {
        for (size_t i = 0; i < cap; i++)
            if (!isfinite(x[i]))
                __builtin_trap();
        check_roundtrip(&h, frame, len, x);
    } else if (err[0] == '\0') {
        __builtin_trap(); /* every refusal says why */
    }
    free(x);
    return 0;
}

#ifdef HINGE_FUZZ_STANDALONE
#include <stdio.h>

/* Replays the files given, or mutates valid frames of each codec for a
 * fixed number of rounds (deterministic). */
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        static uint8_t buf[1 << 20];
        size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f)
            fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
    }
    if (argc > 1)
        return 0;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    float x[3 * 64];
    static uint8_t buf[1 + TX_FRAME_HEADER_BYTES + 3 * 64 * 4];
    for (int round = 0; round < 20000; round++) {
        uint8_t sel = (uint8_t)(round % 3) | 2u << 2 | 2u << 4; /* dim 64, max_n 16 */
        for (int i = 0; i < 3 * 64; i++)
            x[i] = (float)((int)(i * 37 + round) % 101 - 50) * 0.25f;
        size_t len = 0;
        buf[0] = sel;
        tx_frame_encode((tx_codec)(1 + round % 3), 0, (uint32_t)round, 3, 64, x, buf + 1, sizeof buf - 1, &len, NULL,
                        0);
        for (int m = 0; m < 1 + round % 4; m++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            buf[1 + rng % (len ? len : 1)] ^= (uint8_t)(rng >> 32);
        }
        LLVMFuzzerTestOneInput(buf, 1 + len - (round % 5 == 0 ? (rng >> 40) % 8 : 0));
    }
    puts("fuzz_frame: standalone rounds done");
    return 0;
}
#endif
