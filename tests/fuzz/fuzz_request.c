/* libFuzzer harness for edge/request.c: the input is the body of POST
 * /v1/sessions and, at the same time, a request path. Checks that what the
 * parser accepts respects its documented ranges, that every refusal says
 * why, and that routing never reads past the path.
 * Build and run: scripts/fuzz-wire. With -DHINGE_FUZZ_STANDALONE it is a
 * plain program that replays files or runs built-in cases. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the path: an exact-size copy, so ASan sees any read past it */
    char *path = malloc(size ? size : 1);
    if (!path)
        return 0;
    memcpy(path, data, size);
    char sid[EDGE_SID_MAX];
    edge_route r = edge_route_path(path, size, sid);
    if (r > EDGE_ROUTE_OA_MODELS || strlen(sid) > EDGE_SID_HEX || (sid[0] && strlen(sid) != EDGE_SID_HEX))
        __builtin_trap();
    free(path);

    /* the streamed text's UTF-8 clean-up: all of it used when final, at most
     * an unfinished character (3 bytes) left otherwise, never over 3n out */
    char *clean = malloc(3 * size + 1);
    if (!clean)
        return 0;
    for (int final = 0; final < 2; final++) {
        size_t used = 0, len = edge_utf8_clean((const char *)data, size, final, clean, &used);
        if (len > 3 * size || used > size || (final && used != size) || size - used > 3)
            __builtin_trap();
    }
    free(clean);

    edge_session_req q;
    char err[HINGE_ERRMSG_MAX] = "";
    hinge_status s = edge_parse_session_req((const char *)data, size, &q, err, sizeof err);
    if (s == HINGE_OK) {
        if (q.ctx < 1 || q.ctx > EDGE_REQ_MAX_CTX || q.max_step > q.ctx || q.cut > EDGE_REQ_MAX_CUT ||
            q.private_head > EDGE_REQ_MAX_CUT ||
            tx_codec_row_bytes(q.codec, 1) == 0 || !(q.sampling.temp >= 0.0f && q.sampling.temp <= 100.0f) ||
            !(q.sampling.top_p >= 0.0f && q.sampling.top_p <= 1.0f) || q.sampling.seed > (uint64_t)INT64_MAX)
            __builtin_trap();
    } else if (s != HINGE_ERR_FORMAT || err[0] == '\0') {
        __builtin_trap();
    }
    return 0;
}

#ifdef HINGE_FUZZ_STANDALONE
#include <stdio.h>

int main(int argc, char **argv)
{
    static uint8_t buf[1 << 16];
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f)
            fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
    }
    if (argc > 1)
        return 0;
    static const char *const seeds[] = {
        "{\"model_sha256\":\"270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d\",\"cut\":2,"
        "\"codec\":\"q8\",\"ctx\":300,\"max_step\":64,\"sampling\":{\"temp\":0.8,\"top_k\":40,\"top_p\":0.95,"
        "\"seed\":7},\"private_head\":3}",
        "/v1/sessions/0123456789abcdef0123456789abcdef/steps",
        "/v1/health?x",
        "/metrics",
        "/v1/chat/completions",
        "h\xc3\xa9\xf0\x9f\x98",
        "{\"cut\":1e400,\"ctx\":-0,\"codec\":null}",
    };
    uint64_t rng = 42;
    for (int round = 0; round < 20000; round++) {
        const char *s = seeds[round % 4];
        size_t n = strlen(s);
        memcpy(buf, s, n);
        for (int m = 0; m < round % 5; m++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            buf[rng % n] = (uint8_t)(rng >> 40);
        }
        LLVMFuzzerTestOneInput(buf, n - (round % 7 == 0 ? (rng >> 50) % n : 0));
    }
    puts("fuzz_request: standalone rounds done");
    return 0;
}
#endif
