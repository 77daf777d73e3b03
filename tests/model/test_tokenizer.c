/* Tests of model/tokenizer.c: llama.cpp's test vectors for the Llama 2
 * SentencePiece vocabulary, round trips, the stories260K vocabulary, byte
 * fallback, special tokens, malformed vocabularies (tiny GGUF files built in
 * memory) and, when the machine has it, the Gemma 3 vocabulary.
 *
 * The expected ids that are not from llama.cpp's files were computed with an
 * independent brute-force implementation of the same algorithm (rescan all
 * adjacent pairs, merge the best) checked against llama.cpp's vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gguf.h"
#include "tokenizer.h"

#ifndef HINGE_SHARED_DIR
#define HINGE_SHARED_DIR "/work/shared"
#endif
#ifndef HINGE_SOURCE_DIR
#define HINGE_SOURCE_DIR "/work/main"
#endif

enum { MAX_IDS = 4096 };

/* ---- helpers ------------------------------------------------------------ */

typedef struct loaded {
    gguf_file *f;
    tokenizer *t;
} loaded;

static void load_path(const char *path, loaded *l)
{
    char err[HINGE_ERRMSG_MAX] = "";
    if (gguf_open(path, &l->f, err, sizeof err))
        fail_msg("%s: %s", path, err);
    if (tok_create(l->f, &l->t, err, sizeof err))
        fail_msg("%s: %s", path, err);
}

static void unload(loaded *l)
{
    tok_destroy(l->t);
    gguf_close(l->f);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* Encodes s and compares with the n ids of want. */
static void expect_ids(const tokenizer *t, const char *s, size_t len, bool bos, bool special,
                       const int32_t *want, size_t n)
{
    int32_t got[MAX_IDS];
    size_t k = 0;
    hinge_status st = tok_encode(t, s, len, bos, special, got, MAX_IDS, &k);
    assert_int_equal(st, HINGE_OK);
    bool same = k == n;
    for (size_t i = 0; same && i < n; i++)
        same = got[i] == want[i];
    if (!same) {
        char msg[1024];
        int m = snprintf(msg, sizeof msg, "'%.*s': got", (int)(len > 60 ? 60 : len), s);
        for (size_t i = 0; i < k && i < 40 && m < 900; i++)
            m += snprintf(msg + m, sizeof msg - (size_t)m, " %d", (int)got[i]);
        fail_msg("%s (%zu ids, want %zu)", msg, k, n);
    }
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__}), (sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

/* Decodes ids (strip_first: drop the leading space of ids[skip]) into buf. */
static size_t decode(const tokenizer *t, const int32_t *ids, size_t n, size_t skip, bool strip_first,
                     char *buf, size_t cap)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = tok_piece(t, ids[i], strip_first && i == skip, buf + len, cap - len);
        len += k;
    }
    return len;
}

/* Encodes s and decodes it again: must give s back. */
static void expect_round_trip(const tokenizer *t, const char *s, size_t len, bool bos)
{
    static int32_t ids[1 << 16];
    static char back[1 << 18];
    size_t n = 0;
    assert_int_equal(tok_encode(t, s, len, bos, false, ids, sizeof ids / sizeof ids[0], &n), HINGE_OK);
    size_t k = decode(t, ids, n, bos ? 1 : 0, tok_adds_space_prefix(t), back, sizeof back);
    if (k != len || memcmp(back, s, len) != 0)
        fail_msg("round trip of '%.*s' gave '%.*s'", (int)(len > 80 ? 80 : len), s,
                 (int)(k > 80 ? 80 : k), back);
}

/* ---- llama.cpp's vectors ------------------------------------------------ */

typedef struct oracle {
    char *inp;       /* the .inp file; strings are cut in place */
    char *out;       /* the .out file */
    char *str[64];   /* test strings (not NUL-terminated) */
    size_t len[64];
    char *ids[64];   /* lines of .out, NUL-terminated */
    size_t n;
} oracle;

/* Reads ../shared/oracles/vocab-<name>.inp and .out. */
static void load_oracle(oracle *o, const char *name)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t len, olen;
    char path[512];
    memset(o, 0, sizeof *o);
    snprintf(path, sizeof path, "%s/oracles/vocab-%s.inp", HINGE_SHARED_DIR, name);
    o->inp = read_all(path, &len);
    snprintf(path, sizeof path, "%s/oracles/vocab-%s.out", HINGE_SHARED_DIR, name);
    o->out = read_all(path, &olen);
    for (char *p = o->inp, *q; (q = memmem(p, (size_t)(o->inp + len - p), sep, strlen(sep)));) {
        assert_true(o->n < 64);
        o->str[o->n] = p;
        o->len[o->n++] = (size_t)(q - p);
        p = q + strlen(sep);
    }
    size_t lines = 0;
    for (char *p = o->out; lines < o->n && p < o->out + olen;) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        *nl = '\0';
        o->ids[lines++] = p;
        p = nl + 1;
    }
    assert_int_equal(lines, o->n);
}

static size_t parse_ids(const char *line, int32_t *ids, size_t cap)
{
    size_t n = 0;
    for (const char *p = line; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        assert_true(n < cap);
        ids[n++] = (int32_t)v;
        p = end;
    }
    return n;
}

static void test_llama_spm_vectors(void **state)
{
    (void)state;
    loaded l;
    oracle o;
    load_path(HINGE_SHARED_DIR "/models/vocab-llama-spm.gguf", &l);
    load_oracle(&o, "llama-spm");
    assert_int_equal(o.n, 46);
    assert_int_equal(tok_n_vocab(l.t), 32000);
    assert_true(tok_adds_space_prefix(l.t));
    static int32_t want[MAX_IDS];
    for (size_t i = 0; i < o.n; i++) {
        size_t n = parse_ids(o.ids[i], want, MAX_IDS);
        expect_ids(l.t, o.str[i], o.len[i], false, false, want, n);
        expect_ids(l.t, o.str[i], o.len[i], false, true, want, n); /* no special texts in them */
        expect_round_trip(l.t, o.str[i], o.len[i], false);
        expect_round_trip(l.t, o.str[i], o.len[i], true);
    }
    free(o.inp);
    free(o.out);
    unload(&l);
}

static void test_llama_spm_special(void **state)
{
    (void)state;
    loaded l;
    load_path(HINGE_SHARED_DIR "/models/vocab-llama-spm.gguf", &l);
    const tokenizer *t = l.t;
    assert_int_equal(tok_bos(t), 1), assert_int_equal(tok_eos(t), 2), assert_true(tok_add_bos(t));
    assert_true(tok_is_eog(t, 2)), assert_false(tok_is_eog(t, 1)), assert_false(tok_is_eog(t, -1));
    expect_ids(t, "<s>Hello</s>", 12, false, true, IDS(1, 15043, 2));
    expect_ids(t, "<s>Hello</s>", 12, false, false, IDS(529, 29879, 29958, 10994, 829, 29879, 29958));
    expect_ids(t, " <s> a", 6, false, true, IDS(259, 1, 29871, 263));
    expect_ids(t, "<unk>x", 6, false, true, IDS(0, 921)); /* unknown tokens count as special */
    expect_ids(t, "Hello", 5, true, false, IDS(1, 15043));
    expect_ids(t, "", 0, true, false, IDS(1));
    size_t n = 99;
    assert_int_equal(tok_encode(t, "", 0, false, false, NULL, 0, &n), HINGE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(tok_encode(t, NULL, 0, false, false, NULL, 0, &n), HINGE_OK);
    int32_t two[2] = {-5, -5};
    assert_int_equal(tok_encode(t, "Hello world", 11, true, false, two, 2, &n), HINGE_ERR_RANGE);
    assert_int_equal(n, 3), assert_int_equal(two[0], 1), assert_int_equal(two[1], 15043);
    assert_int_equal(tok_encode(t, "x", 1, false, false, NULL, 0, &n), HINGE_ERR_RANGE);
    assert_int_equal(n, 1); /* "\u2581x" */
    assert_int_equal(tok_encode(t, NULL, 3, false, false, two, 2, &n), HINGE_ERR_INVALID);
    assert_int_equal(tok_encode(t, "x", 1, false, false, NULL, 3, &n), HINGE_ERR_INVALID);
    unload(&l);
}

static void test_byte_fallback(void **state)
{
    (void)state;
    loaded l;
    load_path(HINGE_SHARED_DIR "/models/vocab-llama-spm.gguf", &l);
    const tokenizer *t = l.t;
    /* invalid UTF-8: each bad byte is a symbol of its own, the rest merges */
    expect_ids(t, "\xff\x80" "a", 3, false, false, IDS(29871, 258, 131, 29874)); /* <0xFF> <0x80> a */
    expect_ids(t, "\xe2" "AB", 3, false, false, IDS(29871, 229, 2882));           /* <0xE2> AB */
    expect_ids(t, "\xff\n =\xff\xff\xff" "3", 8, false, false,                   /* found by fuzzing */
               IDS(29871, 258, 13, 353, 258, 258, 258, 29941));
    expect_ids(t, "a\xe2\x96 b", 5, false, false, IDS(263, 229, 153, 289)); /* cut U+2581 */
    expect_round_trip(t, "\xff\n =\xff\xff\xff" "3", 8, false);
    expect_round_trip(t, "a\xe2\x96 b\xe2\x96", 7, false);
    expect_ids(t, "\0", 1, false, false, IDS(29871, 3));                  /* NUL is <0x00> */
    char buf[16];
    assert_int_equal(tok_piece(t, 258, false, buf, sizeof buf), 1), assert_int_equal((uint8_t)buf[0], 0xff);
    assert_int_equal(tok_piece(t, 3 + ' ', true, buf, sizeof buf), 0); /* <0x20>, stripped */
    assert_int_equal(tok_piece(t, 13, false, buf, sizeof buf), 1), assert_int_equal(buf[0], '\n');
    expect_round_trip(t, "\xff\x80\xe2" "AB\xf0\x9f", 7, false);
    unload(&l);
}

static void test_pieces(void **state)
{
    (void)state;
    loaded l;
    load_path(HINGE_SHARED_DIR "/models/vocab-llama-spm.gguf", &l);
    const tokenizer *t = l.t;
    char buf[64];
    assert_int_equal(tok_piece(t, 15043, false, buf, sizeof buf), 6);
    assert_memory_equal(buf, " Hello", 6);
    assert_int_equal(tok_piece(t, 15043, true, buf, sizeof buf), 5);
    assert_memory_equal(buf, "Hello", 5);
    assert_int_equal(tok_piece(t, 15043, false, buf, 3), 3); /* cut at cap */
    assert_memory_equal(buf, " He", 3);
    assert_int_equal(tok_piece(t, 1, false, buf, sizeof buf), 0);  /* control <s> */
    assert_int_equal(tok_piece(t, 0, false, buf, sizeof buf), 0);  /* <unk> */
    assert_int_equal(tok_piece(t, 259, false, buf, sizeof buf), 2); /* "▁▁" */
    assert_memory_equal(buf, "  ", 2);
    assert_int_equal(tok_piece(t, 259, true, buf, sizeof buf), 1);
    assert_int_equal(tok_piece(t, 32000, false, buf, sizeof buf), 0);
    assert_int_equal(tok_piece(t, -1, false, buf, sizeof buf), 0);
    assert_int_equal(tok_piece(t, 15043, false, NULL, 0), 0);
    unload(&l);
}

/* ---- stories260K -------------------------------------------------------- */

static void test_stories260k_vocab(void **state)
{
    (void)state;
    loaded l;
    load_path(HINGE_SHARED_DIR "/models/stories260K.gguf", &l);
    const tokenizer *t = l.t;
    assert_int_equal(tok_n_vocab(t), 512);
    assert_int_equal(tok_bos(t), 1), assert_int_equal(tok_eos(t), 2);
    assert_true(tok_add_bos(t)), assert_true(tok_adds_space_prefix(t));
    static const char story[] = "Once upon a time, there was a little girl named Lily.";
    expect_ids(t, story, strlen(story), true, false,
               IDS(1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426));
    expect_ids(t, "Hello world", 11, false, false, IDS(346, 306, 414, 263, 304, 341));
    expect_ids(t, "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x81", 10, false, false,
               IDS(410, 485, 413, 485, 410, 243, 162, 155, 132));
    expect_ids(t, "<s>Tom</s>", 10, false, true, IDS(1, 274, 287, 2));
    expect_ids(t, "<s>Tom</s>", 10, false, false, IDS(410, 504, 419, 505, 434, 287, 504, 492, 419, 505));
    expect_round_trip(t, story, strlen(story), true);
    expect_round_trip(t, " two  spaces\n\tand a tab ", 24, false);
    unload(&l);
}

/* ---- tiny vocabularies built in memory ---------------------------------- */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap; /* bytes written, allocated */
} wbuf;

static void w_bytes(wbuf *w, const void *d, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->p = realloc(w->p, w->cap);
        assert_non_null(w->p);
    }
    memcpy(w->p + w->n, d, n);
    w->n += n;
}

static void w_u32(wbuf *w, uint32_t v) { w_bytes(w, &v, 4); }
static void w_u64(wbuf *w, uint64_t v) { w_bytes(w, &v, 8); }

static void w_str(wbuf *w, const char *s)
{
    w_u64(w, strlen(s));
    w_bytes(w, s, strlen(s));
}

/* kv pairs are written to body and counted; vocab_file() adds the header. */
typedef struct vbuild {
    wbuf body;
    uint64_t n_kv;
} vbuild;

static void v_key(vbuild *v, const char *key, gguf_vtype t)
{
    w_str(&v->body, key);
    w_u32(&v->body, t);
    v->n_kv++;
}

static void v_str(vbuild *v, const char *key, const char *val)
{
    v_key(v, key, GGUF_VT_STRING);
    w_str(&v->body, val);
}

static void v_u32(vbuild *v, const char *key, uint32_t val)
{
    v_key(v, key, GGUF_VT_UINT32);
    w_u32(&v->body, val);
}

static void v_bool(vbuild *v, const char *key, bool val)
{
    v_key(v, key, GGUF_VT_BOOL);
    w_bytes(&v->body, &(uint8_t){val}, 1);
}

static void v_strs(vbuild *v, const char *key, const char *const *strs, size_t n)
{
    v_key(v, key, GGUF_VT_ARRAY);
    w_u32(&v->body, GGUF_VT_STRING);
    w_u64(&v->body, n);
    for (size_t i = 0; i < n; i++)
        w_str(&v->body, strs[i]);
}

static void v_tokens(vbuild *v, const char *const *toks, size_t n) { v_strs(v, "tokenizer.ggml.tokens", toks, n); }

/* An array of n 4-byte values (float32 or int32). */
static void v_arr4(vbuild *v, const char *key, gguf_vtype t, const void *vals, size_t n)
{
    v_key(v, key, GGUF_VT_ARRAY);
    w_u32(&v->body, t);
    w_u64(&v->body, n);
    w_bytes(&v->body, vals, 4 * n);
}

/* Opens the built file and creates a tokenizer from it; returns the status
 * of tok_create (the file must parse). */
static hinge_status vocab_create(vbuild *v, loaded *l, char *err)
{
    wbuf file = {0};
    w_bytes(&file, "GGUF", 4);
    w_u32(&file, 3);
    w_u64(&file, 0);
    w_u64(&file, v->n_kv);
    w_bytes(&file, v->body.p, v->body.n);
    free(v->body.p);
    v->body = file; /* keeps the bytes alive for the gguf_file */
    l->t = NULL;
    if (gguf_open_memory(file.p, file.n, &l->f, err, HINGE_ERRMSG_MAX))
        fail_msg("%s", err);
    err[0] = '\0';
    return tok_create(l->f, &l->t, err, HINGE_ERRMSG_MAX);
}

static void vocab_done(vbuild *v, loaded *l)
{
    unload(l);
    free(v->body.p);
}

#define SP "\xe2\x96\x81"
static const char *const TINY[] = {"<unk>", "<s>", "</s>", SP, "a", "b", "ab", SP "ab", "<|u|>",
                                   "<0x63>", "<|im_end|>", "<eot>"};
static const float TINY_SCORES[] = {0, 0, 0, -5, -5, -5, -1, -2, 0, 0, 0, 0};
static const int32_t TINY_TYPES[] = {2, 3, 3, 1, 1, 1, 1, 1, 4, 6, 3, 3};
enum { N_TINY = sizeof TINY / sizeof TINY[0] };

static void v_tiny(vbuild *v)
{
    v_str(v, "tokenizer.ggml.model", "llama");
    v_tokens(v, TINY, N_TINY);
    v_arr4(v, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, TINY_SCORES, N_TINY);
    v_arr4(v, "tokenizer.ggml.token_type", GGUF_VT_INT32, TINY_TYPES, N_TINY);
}

static void test_tiny_vocab(void **state)
{
    (void)state;
    vbuild v = {0};
    loaded l;
    char err[HINGE_ERRMSG_MAX];
    v_tiny(&v);
    v_u32(&v, "tokenizer.ggml.eot_token_id", 11);
    assert_int_equal(vocab_create(&v, &l, err), HINGE_OK);
    const tokenizer *t = l.t;
    /* defaults: unk 0, bos 1, eos 2, add_bos, dummy prefix */
    assert_int_equal(tok_bos(t), 1), assert_int_equal(tok_eos(t), 2), assert_true(tok_add_bos(t));
    expect_ids(t, "ab abc", 6, false, false, IDS(7, 7, 9));     /* ties: leftmost; c: <0x63> */
    expect_ids(t, "d", 1, false, false, IDS(3, 0));             /* no byte token: unk */
    expect_ids(t, "a<|u|>b", 7, false, false, IDS(3, 4, 8, 3, 5)); /* user-defined: always */
    expect_ids(t, "a<|u|>b", 7, false, true, IDS(3, 4, 8, 3, 5));
    expect_ids(t, "<s>", 3, false, false, IDS(3, 0, 0, 0));
    expect_ids(t, "<s>", 3, false, true, IDS(1));
    expect_ids(t, "<|u|><|u|>", 10, false, false, IDS(8, 8));
    assert_true(tok_is_eog(t, 2)), assert_true(tok_is_eog(t, 10)), assert_true(tok_is_eog(t, 11));
    assert_false(tok_is_eog(t, 8));
    char buf[16];
    assert_int_equal(tok_piece(t, 8, false, buf, sizeof buf), 5);  /* user-defined: verbatim */
    assert_memory_equal(buf, "<|u|>", 5);
    assert_int_equal(tok_piece(t, 10, false, buf, sizeof buf), 0); /* control */
    assert_int_equal(tok_piece(t, 9, false, buf, sizeof buf), 1), assert_int_equal(buf[0], 'c');
    vocab_done(&v, &l);
}

static void test_tiny_vocab_options(void **state)
{
    (void)state;
    vbuild v = {0};
    loaded l;
    char err[HINGE_ERRMSG_MAX];
    v_tiny(&v);
    v_bool(&v, "tokenizer.ggml.add_space_prefix", false);
    v_bool(&v, "tokenizer.ggml.add_bos_token", false);
    v_u32(&v, "tokenizer.ggml.bos_token_id", 0xffffffffu); /* none */
    assert_int_equal(vocab_create(&v, &l, err), HINGE_OK);
    assert_int_equal(tok_bos(l.t), -1), assert_false(tok_add_bos(l.t));
    assert_false(tok_adds_space_prefix(l.t));
    expect_ids(l.t, "ab ab", 5, false, false, IDS(6, 7));
    size_t n;
    int32_t ids[4];
    assert_int_equal(tok_encode(l.t, "a", 1, true, false, ids, 4, &n), HINGE_ERR_INVALID); /* no BOS */
    vocab_done(&v, &l);

    v = (vbuild){0}; /* no scores, no types: all normal, score 0 */
    static const char *const toks[] = {"x", "y", "xy", SP};
    v_str(&v, "tokenizer.ggml.model", "llama");
    v_tokens(&v, toks, 4);
    assert_int_equal(vocab_create(&v, &l, err), HINGE_OK);
    assert_int_equal(tok_bos(l.t), 1), assert_int_equal(tok_eos(l.t), 2);
    assert_int_equal(tok_n_vocab(l.t), 4);
    expect_ids(l.t, "xy", 2, false, false, IDS(3, 2));
    vocab_done(&v, &l);
}

/* Each malformed vocabulary fails with status want and names key. */
static void expect_bad_vocab(vbuild *v, hinge_status want, const char *key)
{
    loaded l;
    char err[HINGE_ERRMSG_MAX];
    hinge_status s = vocab_create(v, &l, err);
    if (s != want || !strstr(err, key))
        fail_msg("status %d, message '%s'; want %d naming %s", s, err, want, key);
    assert_null(l.t);
    vocab_done(v, &l);
    *v = (vbuild){0};
}

static void test_bad_vocab(void **state)
{
    (void)state;
    static const int32_t five[] = {1, 1, 1, 1, 1};
    static const int32_t bad_type[] = {1, 1, 9, 1};
    static const char *const four[] = {"a", "b", "c", "d"};
    vbuild v = {0};
    v_tokens(&v, four, 4);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.model");
    v_str(&v, "tokenizer.ggml.model", "bert"), v_tokens(&v, four, 4);
    expect_bad_vocab(&v, HINGE_ERR_UNSUPPORTED, "bert");
    v_u32(&v, "tokenizer.ggml.model", 1), v_tokens(&v, four, 4);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.model");
    v_str(&v, "tokenizer.ggml.model", "llama");
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.tokens");
    v_str(&v, "tokenizer.ggml.model", "llama"), v_arr4(&v, "tokenizer.ggml.tokens", GGUF_VT_INT32, five, 5);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.tokens");
    v_str(&v, "tokenizer.ggml.model", "llama"), v_tokens(&v, four, 0);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.tokens");
    v_str(&v, "tokenizer.ggml.model", "llama"), v_tokens(&v, four, 4);
    v_arr4(&v, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, five, 5);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.scores");
    v_str(&v, "tokenizer.ggml.model", "llama"), v_tokens(&v, four, 4);
    v_arr4(&v, "tokenizer.ggml.scores", GGUF_VT_INT32, five, 4);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.scores");
    v_str(&v, "tokenizer.ggml.model", "llama"), v_tokens(&v, four, 4);
    v_arr4(&v, "tokenizer.ggml.token_type", GGUF_VT_INT32, five, 3);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.token_type");
    v_str(&v, "tokenizer.ggml.model", "llama"), v_tokens(&v, four, 4);
    v_arr4(&v, "tokenizer.ggml.token_type", GGUF_VT_INT32, bad_type, 4);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.token_type");
    v_str(&v, "tokenizer.ggml.model", "llama"), v_tokens(&v, four, 4);
    v_u32(&v, "tokenizer.ggml.bos_token_id", 4);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.bos_token_id");
    v_str(&v, "tokenizer.ggml.model", "llama"), v_tokens(&v, four, 4);
    v_str(&v, "tokenizer.ggml.eos_token_id", "2");
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.eos_token_id");
    v_str(&v, "tokenizer.ggml.model", "llama"), v_tokens(&v, four, 4);
    v_u32(&v, "tokenizer.ggml.unknown_token_id", 1000);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.unknown_token_id");
    v_str(&v, "tokenizer.ggml.model", "llama"), v_tokens(&v, four, 4);
    v_u32(&v, "tokenizer.ggml.eot_token_id", 77);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.eot_token_id");
    v_str(&v, "tokenizer.ggml.model", "llama"), v_tokens(&v, four, 4);
    v_u32(&v, "tokenizer.ggml.add_bos_token", 1);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.add_bos_token");
    char *big = malloc(1026);
    assert_non_null(big);
    memset(big, 'x', 1025), big[1025] = '\0';
    const char *const withbig[] = {"a", big};
    v_str(&v, "tokenizer.ggml.model", "llama"), v_tokens(&v, withbig, 2);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.tokens");
    free(big);
    loaded l;
    char err[HINGE_ERRMSG_MAX];
    assert_int_equal(tok_create(NULL, &l.t, err, sizeof err), HINGE_ERR_INVALID);
    tok_destroy(NULL);
}

/* ---- byte-level BPE: llama.cpp's vectors --------------------------------- */

/* Every vector of vocab-<name> matches, with and without parse_special (no
 * special texts in them), and decodes back to its text. */
static void run_bpe_vectors(const char *name, int32_t n_vocab)
{
    char path[512];
    loaded l;
    oracle o;
    snprintf(path, sizeof path, "%s/models/vocab-%s.gguf", HINGE_SHARED_DIR, name);
    load_path(path, &l);
    load_oracle(&o, name);
    assert_int_equal(o.n, 46);
    assert_int_equal(tok_n_vocab(l.t), n_vocab);
    assert_false(tok_adds_space_prefix(l.t));
    static int32_t want[MAX_IDS];
    for (size_t i = 0; i < o.n; i++) {
        size_t n = parse_ids(o.ids[i], want, MAX_IDS);
        expect_ids(l.t, o.str[i], o.len[i], false, false, want, n);
        expect_ids(l.t, o.str[i], o.len[i], false, true, want, n);
        expect_round_trip(l.t, o.str[i], o.len[i], false);
    }
    print_message("vocab-%s: %zu vectors match\n", name, o.n);
    free(o.inp);
    free(o.out);
    unload(&l);
}

static void test_gpt2_vectors(void **state)
{
    (void)state;
    run_bpe_vectors("gpt-2", 50257);
}

static void test_llama_bpe_vectors(void **state)
{
    (void)state;
    run_bpe_vectors("llama-bpe", 128256);
}

static void test_qwen2_vectors(void **state)
{
    (void)state;
    run_bpe_vectors("qwen2", 151936);
}

/* ---- byte-level BPE: a tiny vocabulary ---------------------------------- */

/* "Ġ" is the byte-to-unicode mapping's space (U+0120), "Ċ" its newline
 * (U+010A). Merges make "abc" through "bc" (rank 0 beats "a b", rank 1);
 * "ca" is a token that no merge makes. */
#define G "\xc4\xa0"
static const char *const BPE_TOKS[] = {"a", "b", "c", G, "\xc4\x8a", "ab", "bc", "abc", G "a", "ca",
                                       "<|end|>", "<u>", "1", "2", "3", "12", "123"};
static const int32_t BPE_TYPES[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 4, 1, 1, 1, 1, 1};
static const char *const BPE_MERGES[] = {"b c", "a b", "a bc", G " a", "1 2", "12 3"};
enum { N_BPE = sizeof BPE_TOKS / sizeof BPE_TOKS[0], N_MERGES = sizeof BPE_MERGES / sizeof BPE_MERGES[0] };

static void v_bpe(vbuild *v, const char *pre)
{
    v_str(v, "tokenizer.ggml.model", "gpt2");
    if (pre)
        v_str(v, "tokenizer.ggml.pre", pre);
    v_tokens(v, BPE_TOKS, N_BPE);
    v_arr4(v, "tokenizer.ggml.token_type", GGUF_VT_INT32, BPE_TYPES, N_BPE);
    v_strs(v, "tokenizer.ggml.merges", BPE_MERGES, N_MERGES);
    v_u32(v, "tokenizer.ggml.bos_token_id", 10);
}

static void test_bpe_tiny(void **state)
{
    (void)state;
    vbuild v = {0};
    loaded l;
    char err[HINGE_ERRMSG_MAX];
    v_bpe(&v, "gpt-2");
    v_u32(&v, "tokenizer.ggml.eos_token_id", 10);
    assert_int_equal(vocab_create(&v, &l, err), HINGE_OK);
    const tokenizer *t = l.t;
    assert_false(tok_add_bos(t)), assert_false(tok_adds_space_prefix(t)), assert_false(tok_add_eos(t));
    expect_ids(t, "abc", 3, false, false, IDS(7));            /* bc first, then a+bc */
    expect_ids(t, "abc abc", 7, false, false, IDS(7, 3, 7));  /* " abc": no merge "Ġ abc" */
    expect_ids(t, " a", 2, false, false, IDS(8));
    expect_ids(t, "ca", 2, false, false, IDS(2, 0));          /* no merge makes "ca" */
    expect_ids(t, "adb", 3, false, false, IDS(0, 1));         /* 'd' has no token: dropped */
    expect_ids(t, "a\nb", 3, false, false, IDS(0, 4, 1));
    expect_ids(t, "123", 3, false, false, IDS(16));           /* GPT-2: \p{N}+ is one word */
    expect_ids(t, "a<u>b", 5, false, false, IDS(0, 11, 1));   /* user-defined: always */
    expect_ids(t, "a<|end|>", 8, false, true, IDS(0, 10));
    expect_ids(t, "<|end|>", 7, true, true, IDS(10, 10));
    assert_true(tok_is_eog(t, 10));
    char buf[16];
    assert_int_equal(tok_piece(t, 8, false, buf, sizeof buf), 2), assert_memory_equal(buf, " a", 2);
    assert_int_equal(tok_piece(t, 8, true, buf, sizeof buf), 1), assert_memory_equal(buf, "a", 1);
    assert_int_equal(tok_piece(t, 4, false, buf, sizeof buf), 1), assert_int_equal(buf[0], '\n');
    assert_int_equal(tok_piece(t, 11, false, buf, sizeof buf), 3), assert_memory_equal(buf, "<u>", 3);
    assert_int_equal(tok_piece(t, 10, false, buf, sizeof buf), 0);
    assert_int_equal(tok_piece(t, 7, false, buf, 2), 2), assert_memory_equal(buf, "ab", 2); /* cut at cap */
    vocab_done(&v, &l);

    v = (vbuild){0}; /* Llama 3: words that are tokens skip the merges; BOS by default */
    v_bpe(&v, "llama-bpe");
    assert_int_equal(vocab_create(&v, &l, err), HINGE_OK);
    assert_true(tok_add_bos(l.t));
    expect_ids(l.t, "ca", 2, false, false, IDS(9));
    expect_ids(l.t, "123", 3, false, false, IDS(16));         /* \p{N}{1,3} */
    expect_ids(l.t, "1231", 4, false, false, IDS(16, 12));
    expect_ids(l.t, "abc", 3, true, false, IDS(10, 7));
    vocab_done(&v, &l);

    v = (vbuild){0}; /* Qwen 2 and SmolLM: one digit per word */
    v_bpe(&v, "qwen2");
    assert_int_equal(vocab_create(&v, &l, err), HINGE_OK);
    assert_false(tok_add_bos(l.t));
    expect_ids(l.t, "123", 3, false, false, IDS(12, 13, 14));
    vocab_done(&v, &l);
    v = (vbuild){0};
    v_bpe(&v, "smollm");
    v_bool(&v, "tokenizer.ggml.add_bos_token", true);
    assert_int_equal(vocab_create(&v, &l, err), HINGE_OK);
    assert_true(tok_add_bos(l.t));
    expect_ids(l.t, "a123", 4, false, false, IDS(0, 12, 13, 14));
    vocab_done(&v, &l);
}

static void test_bpe_bad_vocab(void **state)
{
    (void)state;
    vbuild v = {0};
    static const char *const merges_bad[] = {"x"};
    v_bpe(&v, NULL); /* no pre-tokenizer named */
    expect_bad_vocab(&v, HINGE_ERR_UNSUPPORTED, "tokenizer.ggml.pre");
    v_bpe(&v, "deepseek-coder");
    expect_bad_vocab(&v, HINGE_ERR_UNSUPPORTED, "'deepseek-coder'");
    v_str(&v, "tokenizer.ggml.model", "gpt2"), v_str(&v, "tokenizer.ggml.pre", "gpt-2");
    v_tokens(&v, BPE_TOKS, N_BPE);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.merges");
    v_str(&v, "tokenizer.ggml.model", "gpt2"), v_str(&v, "tokenizer.ggml.pre", "gpt-2");
    v_tokens(&v, BPE_TOKS, N_BPE);
    v_arr4(&v, "tokenizer.ggml.merges", GGUF_VT_INT32, BPE_TYPES, 2);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.merges");
    v_str(&v, "tokenizer.ggml.model", "gpt2"), v_u32(&v, "tokenizer.ggml.pre", 1);
    v_tokens(&v, BPE_TOKS, N_BPE);
    v_strs(&v, "tokenizer.ggml.merges", merges_bad, 1);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.pre");
    char *big = malloc(2100);
    assert_non_null(big);
    memset(big, 'x', 2099), big[2099] = '\0', big[1] = ' ';
    const char *const merges_big[] = {big};
    v_str(&v, "tokenizer.ggml.model", "gpt2"), v_str(&v, "tokenizer.ggml.pre", "gpt-2");
    v_tokens(&v, BPE_TOKS, N_BPE);
    v_strs(&v, "tokenizer.ggml.merges", merges_big, 1);
    expect_bad_vocab(&v, HINGE_ERR_FORMAT, "tokenizer.ggml.merges");
    free(big);
}
#undef G

/* The real vocabularies: special tokens, BOS flags, pieces of characters
 * split across tokens, bytes outside UTF-8. */
static void test_bpe_real(void **state)
{
    (void)state;
    loaded l;
    load_path(HINGE_SHARED_DIR "/models/vocab-llama-bpe.gguf", &l);
    const tokenizer *t = l.t;
    assert_int_equal(tok_bos(t), 128000), assert_int_equal(tok_eos(t), 128001);
    assert_true(tok_add_bos(t)); /* llama-bpe's default: the file has no add_bos_token */
    assert_true(tok_is_eog(t, 128001)), assert_true(tok_is_eog(t, 128009));
    static const char chat[] = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    expect_ids(t, chat, strlen(chat), false, true, IDS(128000, 128006, 882, 128007, 271, 13347, 128009));
    expect_ids(t, "Hello", 5, true, false, IDS(128000, 9906));
    /* bytes that are not UTF-8 stay bytes: the round trip is exact */
    expect_round_trip(t, "\xff\xfe a\x80" "b \xe2\x82", 9, false);
    expect_round_trip(t, "\xf0\x9f\xa6\x99 \xe4\xbd\xa0\xe5\xa5\xbd", 11, true);
    unload(&l);

    load_path(HINGE_SHARED_DIR "/models/vocab-gpt-2.gguf", &l);
    t = l.t;
    assert_false(tok_add_bos(t)), assert_int_equal(tok_bos(t), 50256);
    assert_true(tok_is_eog(t, 50256));
    expect_ids(t, "<|endoftext|>", 13, false, true, IDS(50256));
    expect_ids(t, "<|endoftext|>", 13, false, false, IDS(27, 91, 437, 1659, 5239, 91, 29));
    char buf[8];
    assert_int_equal(tok_piece(t, 18435, false, buf, sizeof buf), 6), assert_memory_equal(buf, " Hello", 6);
    expect_ids(t, "\xc3\xa9", 2, false, false, IDS(2634)); /* "é" is one token, "Ã©" */
    assert_int_equal(tok_piece(t, 2634, false, buf, sizeof buf), 2), assert_memory_equal(buf, "\xc3\xa9", 2);
    unload(&l);

    load_path(HINGE_SHARED_DIR "/models/vocab-qwen2.gguf", &l);
    t = l.t;
    assert_false(tok_add_bos(t));
    assert_true(tok_is_eog(t, 151643)), assert_true(tok_is_eog(t, 151645)), assert_false(tok_is_eog(t, 151644));
    expect_ids(t, "<|im_start|>user\nHi<|im_end|>", 29, false, true, IDS(151644, 872, 198, 13048, 151645));
    expect_ids(t, "a[PAD151646]b", 13, false, false, IDS(64, 151646, 65)); /* user-defined */
    unload(&l);
}

/* ---- SmolLM2, when the machine has it (scripts/fetch-model smollm2) ----- */

static bool smollm2_path(char *buf, size_t cap)
{
    const char *env = getenv("HINGE_SMOLLM2_MODEL");
    if (env && *env)
        snprintf(buf, cap, "%s", env);
    else
        snprintf(buf, cap, "%s/.cache/hinge/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                 getenv("HOME") ? getenv("HOME") : "");
    return access(buf, R_OK) == 0;
}

/* Expected ids from Hugging Face's tokenizers (0.23) on SmolLM2's vocabulary,
 * merges and pre-tokenizer (\p{N} digits, then GPT-2's pattern). */
static void test_smollm2(void **state)
{
    (void)state;
    char path[1024];
    if (!smollm2_path(path, sizeof path)) {
        skip();
        return;
    }
    loaded l;
    load_path(path, &l);
    const tokenizer *t = l.t;
    assert_int_equal(tok_n_vocab(t), 49152);
    assert_false(tok_add_bos(t)), assert_false(tok_adds_space_prefix(t));
    assert_int_equal(tok_bos(t), 1), assert_int_equal(tok_eos(t), 2);
    assert_true(tok_is_eog(t, 2)), assert_true(tok_is_eog(t, 0)), assert_false(tok_is_eog(t, 1));
    expect_ids(t, "Once upon a time", 16, false, false, IDS(6403, 1980, 253, 655));
    expect_ids(t, "Hello world! 123", 16, false, false, IDS(19556, 905, 17, 216, 33, 34, 35));
    expect_ids(t, "  multiple   spaces\n\n", 21, false, false, IDS(216, 2701, 256, 5600, 1116));
    expect_ids(t, "Caf\xc3\xa9 d\xc3\xa9j\xc3\xa0 vu.", 16, false, false, IDS(51, 1939, 2756, 32564, 90, 16739, 386, 101, 30));
    static const char nums[] = "I'm 25 years old, it's 3.14159!";
    expect_ids(t, nums, strlen(nums), false, false,
               IDS(57, 5248, 216, 34, 37, 929, 1573, 28, 357, 506, 216, 35, 30, 33, 36, 33, 37, 41, 17));
    static const char cjk[] = "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\xa6\x99";
    expect_ids(t, cjk, strlen(cjk), false, false, IDS(18645, 250, 48392, 138, 12831, 7906, 240, 178, 239, 230, 15107, 116, 243));
    static const char chat[] = "<|im_start|>user\nHi<|im_end|>\n";
    expect_ids(t, chat, strlen(chat), false, true, IDS(1, 4093, 198, 26843, 2, 198));
    expect_round_trip(t, cjk, strlen(cjk), false);
    unload(&l);
}

/* ---- long inputs: the merge loop must stay O(n log n) ------------------- */

static void long_input(const char *path)
{
    loaded l;
    load_path(path, &l);
    size_t len = 256 * 1024;
    char *s = malloc(len);
    assert_non_null(s);
    static const char words[] = "the quick brown fox jumps over the lazy dog 12345 \xc3\xa9\xe2\x82\xac ";
    for (size_t i = 0; i < len; i++)
        s[i] = words[i % (sizeof words - 1)];
    int32_t *ids = malloc(len * sizeof *ids);
    assert_non_null(ids);
    size_t n = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(tok_encode(l.t, s, len, false, true, ids, len, &n), HINGE_OK);
    clock_gettime(CLOCK_MONOTONIC, &b);
    print_message("%s: encoded %zu bytes into %zu tokens in %.1f ms\n", strrchr(path, '/') + 1, len, n,
                  (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
    assert_true(n > len / 8 && n < len);
    memset(s, 'a', len); /* one long run of merges */
    assert_int_equal(tok_encode(l.t, s, len, false, false, ids, len, &n), HINGE_OK);
    print_message("%zu bytes of 'a' gave %zu tokens\n", len, n);
    assert_true(n > 0 && n <= len / 2);
    free(ids);
    free(s);
    unload(&l);
}

static void test_long_input(void **state)
{
    (void)state;
    long_input(HINGE_SHARED_DIR "/models/vocab-llama-spm.gguf");
    long_input(HINGE_SHARED_DIR "/models/vocab-gpt-2.gguf");
    long_input(HINGE_SHARED_DIR "/models/vocab-llama-bpe.gguf");
}

/* ---- Gemma 3, when the machine has the model ---------------------------- */

static bool gemma_path(char *buf, size_t cap)
{
    const char *env = getenv("HINGE_GEMMA_MODEL");
    if (env)
        snprintf(buf, cap, "%s", env);
    else
        snprintf(buf, cap, "%s/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf",
                 getenv("HOME") ? getenv("HOME") : "");
    return access(buf, R_OK) == 0;
}

static void test_gemma(void **state)
{
    (void)state;
    char path[1024], err[HINGE_ERRMSG_MAX] = "";
    if (!gemma_path(path, sizeof path))
        skip();
    loaded l;
    if (gguf_open(path, &l.f, err, sizeof err))
        fail_msg("%s", err);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (tok_create(l.f, &l.t, err, sizeof err))
        fail_msg("%s", err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    print_message("gemma vocabulary (%d tokens) built in %.1f ms\n", (int)tok_n_vocab(l.t),
                  (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
    const tokenizer *t = l.t;
    assert_int_equal(tok_n_vocab(t), 262144);
    assert_int_equal(tok_bos(t), 2), assert_int_equal(tok_eos(t), 1);
    assert_true(tok_add_bos(t)), assert_false(tok_adds_space_prefix(t));
    assert_true(tok_is_eog(t, 1)), assert_true(tok_is_eog(t, 106)), assert_false(tok_is_eog(t, 105));
    expect_ids(t, "The capital of France is", 24, true, false, IDS(2, 818, 5279, 529, 7001, 563));
    static const char chat[] = "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n";
    expect_ids(t, chat, strlen(chat), true, true, IDS(2, 105, 2364, 107, 9259, 106, 107, 105, 4368, 107));
    expect_ids(t, chat, 39, true, false,
               IDS(2, 236820, 3041, 236779, 1340, 236779, 887, 236813, 2364, 107, 9259, 236820, 643,
                   236779, 1340, 236779, 887, 236813, 107));
    expect_ids(t, "  Hello\n\nworld\t!", 16, true, false, IDS(2, 138, 9259, 108, 12392, 255968, 236888));
    expect_ids(t, "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c", 15, true, false,
               IDS(2, 144626, 236900, 12811));
    expect_round_trip(t, "  Hello\n\nworld\t! The capital of France is Paris.", 49, true);
    unload(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_spm_vectors),
        cmocka_unit_test(test_llama_spm_special),
        cmocka_unit_test(test_byte_fallback),
        cmocka_unit_test(test_pieces),
        cmocka_unit_test(test_stories260k_vocab),
        cmocka_unit_test(test_tiny_vocab),
        cmocka_unit_test(test_tiny_vocab_options),
        cmocka_unit_test(test_bad_vocab),
        cmocka_unit_test(test_gpt2_vectors),
        cmocka_unit_test(test_llama_bpe_vectors),
        cmocka_unit_test(test_qwen2_vectors),
        cmocka_unit_test(test_bpe_tiny),
        cmocka_unit_test(test_bpe_bad_vocab),
        cmocka_unit_test(test_bpe_real),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_long_input),
        cmocka_unit_test(test_gemma),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
