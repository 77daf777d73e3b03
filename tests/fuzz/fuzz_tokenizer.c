/* libFuzzer harness for model/tokenizer.c and tokenizer_bpe.c: builds the
 * tokenizer once from a vocabulary file (HINGE_FUZZ_VOCAB, default the shared
 * Llama 2 SentencePiece vocabulary), then encodes each input with and without
 * parse_special, decodes every id, and checks that decoding gives the input
 * back where the round trip is exact: the default vocabulary (byte fallback,
 * no user-defined tokens; U+2581 reads as a space) and a byte-level BPE
 * ("gpt2") vocabulary whose 256 bytes all have tokens (user-defined tokens
 * decode to their text; SmolLM2's, for one, lacks bytes that UTF-8 never
 * uses). Build and run with scripts/fuzz. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

#ifndef HINGE_SHARED_DIR
#define HINGE_SHARED_DIR "/work/shared"
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The harness's state: loaded once, read-only afterwards. */
static gguf_file *file;
static tokenizer *tok;
static bool check_round_trip;
static bool byte_level; /* a "gpt2" vocabulary: decoding gives the bytes back as they were */

/* True when every byte alone encodes to tokens that decode to that byte. */
static bool bytes_round_trip(void)
{
    for (int b = 0; b < 256; b++) {
        char c = (char)b, back[64];
        int32_t ids[8];
        size_t n = 0, len = 0;
        if (tok_encode(tok, &c, 1, false, false, ids, 8, &n) != HINGE_OK)
            return false;
        for (size_t i = 0; i < n; i++)
            len += tok_piece(tok, ids[i], false, back + len, sizeof back - len);
        if (len != 1 || back[0] != c)
            return false;
    }
    return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *path = getenv("HINGE_FUZZ_VOCAB");
    check_round_trip = path == NULL;
    if (!path)
        path = HINGE_SHARED_DIR "/models/vocab-llama-spm.gguf";
    char err[HINGE_ERRMSG_MAX];
    if (gguf_open(path, &file, err, sizeof err) || tok_create(file, &tok, err, sizeof err)) {
        fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, err);
        exit(1);
    }
    gguf_str model;
    byte_level = gguf_get_str(file, "tokenizer.ggml.model", &model) == HINGE_OK && model.len == 4 &&
                 memcmp(model.ptr, "gpt2", 4) == 0;
    check_round_trip = check_round_trip || (byte_level && bytes_round_trip());
    return 0;
}

/* The text decoding should give back: the input with each U+2581 (which
 * SentencePiece uses for a space) turned into a space; for byte-level BPE
 * the input itself. Returns its length. */
static size_t expected_text(const uint8_t *data, size_t size, char *want)
{
    size_t k = 0;
    for (size_t i = 0; i < size;) {
        if (!byte_level && size - i >= 3 && memcmp(data + i, "\xe2\x96\x81", 3) == 0) {
            want[k++] = ' ';
            i += 3;
        } else {
            want[k++] = (char)data[i++];
        }
    }
    return k;
}

static void encode_decode(const uint8_t *data, size_t size, bool special, int32_t *ids, char *back)
{
    /* at most: one token per byte, one dummy prefix per fragment, BOS */
    size_t cap = 2 * size + 2, n = 0;
    hinge_status s = tok_encode(tok, (const char *)data, size, true, special, ids, cap, &n);
    if (s != HINGE_OK || n > cap || n < 1 || ids[0] != tok_bos(tok))
        __builtin_trap();
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok_n_vocab(tok))
            __builtin_trap();
        len += tok_piece(tok, ids[i], i == 1 && tok_adds_space_prefix(tok), back + len, 4 * size + 64 - len);
    }
    if (!special && check_round_trip) {
        char *want = malloc(size + 1);
        size_t wl = want ? expected_text(data, size, want) : 0;
        if (!want || len != wl || memcmp(back, want, wl) != 0)
            __builtin_trap();
        free(want);
    }
    size_t m = 0;
    if (n > 1 && tok_encode(tok, (const char *)data, size, true, special, ids, n / 2, &m) != HINGE_ERR_RANGE)
        __builtin_trap();
    if (n > 1 && m != n)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int32_t *ids = malloc((2 * size + 2) * sizeof *ids);
    char *back = malloc(4 * size + 64);
    if (!ids || !back)
        __builtin_trap();
    encode_decode(data, size, false, ids, back);
    encode_decode(data, size, true, ids, back);
    free(ids);
    free(back);
    return 0;
}
