/* hinge: byte-level BPE, the tokenizer of "gpt2" GGUF vocabularies (GPT-2,
 * Llama 3, Qwen 2, SmolLM, ...), as Hugging Face's tokenizers run it and
 * llama.cpp's llm_tokenizer_bpe reproduces it.
 *
 * A raw fragment (text between special tokens, see tokenizer.c) is cut into
 * words by the pre-tokenizer that tokenizer.ggml.pre names: a regular
 * expression, written out below as a matcher per family with the same
 * leftmost-first semantics. Each word's bytes are then mapped to characters
 * (GPT-2's byte-to-unicode mapping: printable bytes stand for themselves, the
 * others for U+0100..U+0143), one symbol per byte, and adjacent symbols are
 * merged, always the pair that comes first in tokenizer.ggml.merges (ties:
 * the leftmost), with tokenizer.c's merge engine. Decoding maps the
 * characters of a token back to bytes.
 *
 * Character classes (\p{L}, \p{N}, \s = White_Space) come from unicode.h's
 * tables, generated from the Unicode Character Database.
 *
 * Differences from llama.cpp, all outside well-formed input: a byte that is
 * not part of well-formed UTF-8 stays that byte (a character of class
 * "other") where llama.cpp substitutes U+FFFD, so the round trip is exact;
 * unassigned code points are "other", as in the reference regular
 * expressions, where llama.cpp's hand-written GPT-2 and Llama 3 splitters
 * leave them as words of one character; a symbol that is not a token (only
 * in a vocabulary whose merges make non-tokens) becomes the tokens of its
 * bytes where llama.cpp keeps only its ASCII ones; and an absent
 * tokenizer.ggml.pre is an error where llama.cpp falls back to a default. */
#include "tokenizer_impl.h"
#include "unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MAP_CPS = 0x144, /* the byte-to-unicode mapping uses U+0000..U+0143 */
    MERGE_MAX = 2 * TOK_TEXT_MAX + 1, /* bytes of one merge, "left right" */
};

/* Pre-tokenizer families: the regular expression each stands for.
 * GPT2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * LLAMA3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *         ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * QWEN2:  LLAMA3 with \p{N} for \p{N}{1,3}
 * SMOLLM: \p{N} first (each digit a word of its own), then GPT2 on the rest */
typedef enum pre_kind { PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_SMOLLM } pre_kind;

typedef struct pre_info {
    const char *name;   /* tokenizer.ggml.pre */
    pre_kind kind;
    bool ignore_merges; /* a word that is a token is that token, merges or not */
    bool add_bos;       /* default of tokenizer.ggml.add_bos_token */
} pre_info;

/* The names llama.cpp gives these exact patterns and flags. */
static const pre_info PRE_INFO[] = {
    {"gpt-2", PRE_GPT2, false, false},       {"gpt2", PRE_GPT2, false, false},
    {"phi-2", PRE_GPT2, false, false},       {"mpt", PRE_GPT2, false, false},
    {"olmo", PRE_GPT2, false, false},        {"llama-bpe", PRE_LLAMA3, true, true},
    {"llama3", PRE_LLAMA3, true, true},      {"llama-v3", PRE_LLAMA3, true, true},
    {"falcon3", PRE_LLAMA3, true, true},     {"pixtral", PRE_LLAMA3, true, true},
    {"dbrx", PRE_LLAMA3, false, false},      {"smaug-bpe", PRE_LLAMA3, false, false},
    {"qwen2", PRE_QWEN2, false, false},      {"deepseek-r1-qwen", PRE_QWEN2, false, false},
    {"stablelm2", PRE_QWEN2, false, false},  {"smollm", PRE_SMOLLM, false, false},
    {"starcoder", PRE_SMOLLM, false, false}, {"refact", PRE_SMOLLM, false, false},
    {"codeshell", PRE_SMOLLM, false, false},
};

struct tok_bpe {
    const pre_info *pre;
    int32_t n_merges;
    char *merge_text;         /* the merges "left right" back to back */
    size_t *merge_off;        /* [n_merges + 1]: merge r is merge_text[off[r], off[r+1]) */
    int32_t *slot;            /* hash of merge texts -> rank, -1 empty; a
                                 duplicate keeps its first (lowest) rank */
    size_t slot_cap;          /* power of two >= 2 * n_merges */
    char enc[256][2];         /* each byte's character in UTF-8 ... */
    uint8_t enc_len[256];     /* ... 1 or 2 bytes */
    int16_t cp_byte[MAP_CPS]; /* a mapped character -> its byte, -1: none */
};

/* ---- the byte-to-unicode mapping ---------------------------------------- */

static void build_mapping(tok_bpe *b)
{
    for (int c = 0; c < MAP_CPS; c++)
        b->cp_byte[c] = -1;
    int next = 256; /* bytes that are not printable, in order: U+0100 on */
    for (int c = 0; c < 256; c++) {
        bool printable = (c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || c >= 0xae;
        int cp = printable ? c : next++;
        char u[4];
        b->enc_len[c] = (uint8_t)uni_encode((uint32_t)cp, u);
        memcpy(b->enc[c], u, b->enc_len[c]);
        b->cp_byte[cp] = (int16_t)c;
    }
}

void bpe_byte_tokens(tokenizer *t)
{
    for (int c = 0; c < 256; c++) {
        int32_t id = tok_find(t, t->bpe->enc[c], t->bpe->enc_len[c]);
        t->byte_tok[c] = id >= 0 ? id : t->unk;
    }
}

/* ---- merges ------------------------------------------------------------- */

static const char *merge_text(const tok_bpe *b, int32_t r) { return b->merge_text + b->merge_off[r]; }
static size_t merge_len(const tok_bpe *b, int32_t r) { return b->merge_off[r + 1] - b->merge_off[r]; }

static hinge_status copy_merges(tok_bpe *b, const gguf_str *m, uint64_t n, char *err, size_t errlen)
{
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (m[i].len > MERGE_MAX)
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT,
                              "tokenizer.ggml.merges: merge %llu is %llu bytes (max %d)",
                              (unsigned long long)i, (unsigned long long)m[i].len, MERGE_MAX);
        total += (size_t)m[i].len;
    }
    b->merge_text = malloc(total ? total : 1);
    if (!b->merge_text)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "tokenizer.ggml.merges: out of memory for %zu bytes",
                          total);
    size_t at = 0;
    for (uint64_t i = 0; i < n; i++) {
        b->merge_off[i] = at;
        if (m[i].len)
            memcpy(b->merge_text + at, m[i].ptr, (size_t)m[i].len);
        at += (size_t)m[i].len;
    }
    b->merge_off[n] = at;
    b->n_merges = (int32_t)n;
    return HINGE_OK;
}

static hinge_status load_merges(tok_bpe *b, const gguf_file *f, char *err, size_t errlen)
{
    const char *key = "tokenizer.ggml.merges";
    uint64_t n = 0;
    hinge_status s = gguf_get_strs(f, key, NULL, 0, &n);
    if (s == HINGE_ERR_NOT_FOUND)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s: missing (a 'gpt2' vocabulary needs its merges)",
                          key);
    if (s == HINGE_ERR_FORMAT)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s: not an array of strings", key);
    if (n > TOK_VOCAB_MAX)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s: %llu merges (max %d)", key,
                          (unsigned long long)n, TOK_VOCAB_MAX);
    gguf_str *m = malloc((n ? (size_t)n : 1) * sizeof *m);
    b->merge_off = malloc(((size_t)n + 1) * sizeof *b->merge_off);
    if (!m || !b->merge_off || (n && gguf_get_strs(f, key, m, n, &n)))
        s = hinge_fail(err, errlen, HINGE_ERR_NOMEM, "%s: out of memory for %llu merges", key,
                       (unsigned long long)n);
    else
        s = copy_merges(b, m, n, err, errlen);
    free(m);
    return s;
}

static hinge_status build_merge_hash(tok_bpe *b, char *err, size_t errlen)
{
    /* a repeated merge keeps its first (best) rank */
    b->slot = tok_index_build(b->merge_text, b->merge_off, b->n_merges, false, &b->slot_cap);
    if (!b->slot)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for the merge hash");
    return HINGE_OK;
}

bool bpe_pair_score(const tokenizer *t, const work *w, const symbol *a, const symbol *b, float *score)
{
    const tok_bpe *bp = t->bpe;
    const char *l = w->esc + a->start, *r = w->esc + b->start;
    size_t n = (size_t)a->n + 1 + b->n, mask = bp->slot_cap - 1;
    size_t h = tok_fnv(tok_fnv(tok_fnv(TOK_FNV_SEED, l, a->n), " ", 1), r, b->n) & mask;
    for (;; h = (h + 1) & mask) {
        int32_t m = bp->slot[h];
        if (m < 0)
            return false;
        const char *p = merge_text(bp, m);
        if (merge_len(bp, m) == n && memcmp(p, l, a->n) == 0 && p[a->n] == ' ' &&
            memcmp(p + a->n + 1, r, b->n) == 0) {
            *score = -(float)m; /* exact: ranks are below 2^24 */
            return true;
        }
    }
}

/* ---- building ----------------------------------------------------------- */

static hinge_status load_pre(tok_bpe *b, const gguf_file *f, char *err, size_t errlen)
{
    char names[512];
    size_t k = 0;
    for (size_t i = 0; i < sizeof PRE_INFO / sizeof PRE_INFO[0]; i++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "", PRE_INFO[i].name);
    gguf_str pre;
    hinge_status s = gguf_get_str(f, "tokenizer.ggml.pre", &pre);
    if (s == HINGE_ERR_NOT_FOUND)
        return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED,
                          "tokenizer.ggml.pre: missing; a 'gpt2' vocabulary must name its pre-tokenizer "
                          "(hinge has: %s)", names);
    if (s)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "tokenizer.ggml.pre: not a string");
    for (size_t i = 0; i < sizeof PRE_INFO / sizeof PRE_INFO[0]; i++) {
        if (strlen(PRE_INFO[i].name) == pre.len && memcmp(PRE_INFO[i].name, pre.ptr, pre.len) == 0) {
            b->pre = &PRE_INFO[i];
            return HINGE_OK;
        }
    }
    return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED,
                      "tokenizer.ggml.pre '%.*s': pre-tokenizer not supported (hinge has: %s)",
                      pre.len > 64 ? 64 : (int)pre.len, pre.ptr, names);
}

hinge_status bpe_create(tokenizer *t, const gguf_file *f, char *err, size_t errlen)
{
    tok_bpe *b = calloc(1, sizeof *b);
    if (!b)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    t->bpe = b; /* tok_destroy frees it, built or not */
    build_mapping(b);
    hinge_status s;
    if ((s = load_pre(b, f, err, errlen)) || (s = load_merges(b, f, err, errlen)) ||
        (s = build_merge_hash(b, err, errlen)))
        return s;
    return HINGE_OK;
}

void bpe_destroy(tok_bpe *b)
{
    if (!b)
        return;
    free(b->merge_text);
    free(b->merge_off);
    free(b->slot);
    free(b);
}

bool bpe_default_add_bos(const tok_bpe *b) { return b && b->pre && b->pre->add_bos; }

/* ---- pre-tokenizers ----------------------------------------------------- */

typedef enum cls { CL_LETTER, CL_NUMBER, CL_SPACE, CL_OTHER } cls;

static cls cls_of(uint32_t cp)
{
    if (cp == UNI_INVALID)
        return CL_OTHER;
    return uni_is_space(cp) ? CL_SPACE : uni_is_letter(cp) ? CL_LETTER : uni_is_number(cp) ? CL_NUMBER : CL_OTHER;
}

static bool is_nl(uint32_t cp) { return cp == '\r' || cp == '\n'; }

static uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's|'t|'re|'ve|'m|'ll|'d at cp[i] (ASCII letters ignoring case with fold):
 * its length in code points, or 0. */
static size_t contraction(const uint32_t *cp, size_t i, size_t n, bool fold)
{
    if (cp[i] != '\'' || i + 1 >= n)
        return 0;
    uint32_t a = fold ? ascii_lower(cp[i + 1]) : cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (i + 2 >= n)
        return 0;
    uint32_t b = fold ? ascii_lower(cp[i + 2]) : cp[i + 2];
    return (a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l') ? 3 : 0;
}

/* The end of the run of class c that starts at j. */
static size_t run_end(const uint32_t *cp, size_t j, size_t n, cls c)
{
    while (j < n && cls_of(cp[j]) == c)
        j++;
    return j;
}

/* At a white-space character cp[i]: with newlines, \s*[\r\n]+ (to the last
 * line break of the run); then \s+(?!\S) (the run, less its last character
 * when a non-space follows it) and \s+ (a run of one). */
static size_t match_space(const uint32_t *cp, size_t i, size_t n, bool newlines)
{
    size_t j = i, last_nl = 0;
    for (; j < n && cls_of(cp[j]) == CL_SPACE; j++)
        if (newlines && is_nl(cp[j]))
            last_nl = j + 1;
    if (last_nl)
        return last_nl - i;
    if (j == n || j - i <= 1)
        return j > i ? j - i : 1;
    return j - i - 1;
}

/* Length in code points of GPT-2's match at cp[i], i < n. */
static size_t match_gpt2(const uint32_t *cp, size_t i, size_t n)
{
    size_t k = contraction(cp, i, n, false);
    if (k)
        return k;
    /* " ?X+" for X = \p{L}, \p{N}, [^\s\p{L}\p{N}]: a space joins a run after it */
    size_t j = cp[i] == ' ' && i + 1 < n && cls_of(cp[i + 1]) != CL_SPACE ? i + 1 : i;
    cls c = cls_of(cp[j]);
    if (c != CL_SPACE)
        return run_end(cp, j, n, c) - i;
    return match_space(cp, i, n, false);
}

/* Length in code points of Llama 3's match at cp[i], i < n; digits: the
 * longest run of \p{N} in one word (3 for Llama 3, 1 for Qwen 2). */
static size_t match_llama3(const uint32_t *cp, size_t i, size_t n, size_t digits)
{
    size_t k = contraction(cp, i, n, true);
    if (k)
        return k;
    cls c = cls_of(cp[i]);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    size_t j = i;
    if (c != CL_LETTER && c != CL_NUMBER && !is_nl(cp[i]) && i + 1 < n && cls_of(cp[i + 1]) == CL_LETTER)
        j = i + 1;
    if (cls_of(cp[j]) == CL_LETTER)
        return run_end(cp, j, n, CL_LETTER) - i;
    if (c == CL_NUMBER) {
        for (j = i; j < n && j - i < digits && cls_of(cp[j]) == CL_NUMBER; j++) {
        }
        return j - i;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    j = cp[i] == ' ' && i + 1 < n && cls_of(cp[i + 1]) == CL_OTHER ? i + 1 : i;
    if (cls_of(cp[j]) == CL_OTHER) {
        for (j = run_end(cp, j, n, CL_OTHER); j < n && is_nl(cp[j]); j++) {
        }
        return j - i;
    }
    return match_space(cp, i, n, true);
}

/* ---- encoding ----------------------------------------------------------- */

/* Emits the tokens of a final symbol: its token, else (a vocabulary whose
 * merges make non-tokens) the tokens of its bytes. */
static void emit_symbol(const tokenizer *t, const work *w, const symbol *sy, emitter *e)
{
    const char *p = w->esc + sy->start;
    int32_t id = tok_find(t, p, sy->n);
    if (id >= 0) {
        tok_emit(e, id);
        return;
    }
    for (size_t i = 0, k; i < sy->n; i += k) {
        uint32_t cp = uni_decode(p + i, sy->n - i, &k);
        int b = cp < MAP_CPS ? t->bpe->cp_byte[cp] : -1;
        if (b >= 0 && t->byte_tok[b] >= 0)
            tok_emit(e, t->byte_tok[b]);
    }
}

/* Tokenizes the word s[0, len): byte-encoded into w->esc, one symbol per
 * byte, merged. */
static void encode_word(const tokenizer *t, work *w, const char *s, size_t len, emitter *e)
{
    const tok_bpe *b = t->bpe;
    uint32_t m = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        memcpy(w->esc + m, b->enc[c], b->enc_len[c]);
        w->sym[i] = (symbol){m, b->enc_len[c], (int32_t)i - 1, i + 1 < len ? (int32_t)i + 1 : -1};
        m += b->enc_len[c];
    }
    if (b->pre->ignore_merges) {
        int32_t id = tok_find(t, w->esc, m);
        if (id >= 0) {
            tok_emit(e, id);
            return;
        }
    }
    tok_merge(t, w, (int32_t)len);
    for (int32_t i = 0; i != -1; i = w->sym[i].next)
        emit_symbol(t, w, &w->sym[i], e);
}

/* Cuts code points [a, end) of the fragment s into words with the
 * pre-tokenizer's matcher and encodes each. */
static void encode_words(const tokenizer *t, work *w, const char *s, size_t a, size_t end, emitter *e)
{
    const uint32_t *cp = w->cp + a;
    size_t n = end - a;
    for (size_t i = 0; i < n;) {
        size_t k;
        switch (t->bpe->pre->kind) {
        case PRE_LLAMA3:
            k = match_llama3(cp, i, n, 3);
            break;
        case PRE_QWEN2:
            k = match_llama3(cp, i, n, 1);
            break;
        default:
            k = match_gpt2(cp, i, n);
            break;
        }
        uint32_t from = w->cpoff[a + i], to = w->cpoff[a + i + k];
        encode_word(t, w, s + from, to - from, e);
        i += k;
    }
}

void bpe_fragment(const tokenizer *t, work *w, const char *s, size_t len, emitter *e)
{
    size_t n = 0;
    for (size_t at = 0, k; at < len; at += k) {
        w->cp[n] = uni_decode(s + at, len - at, &k);
        w->cpoff[n++] = (uint32_t)at;
    }
    w->cpoff[n] = (uint32_t)len;
    if (t->bpe->pre->kind != PRE_SMOLLM) {
        encode_words(t, w, s, 0, n, e);
        return;
    }
    /* SmolLM: each \p{N} alone, GPT-2's pattern on the runs between them */
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        if (cls_of(w->cp[i]) != CL_NUMBER)
            while (j < n && cls_of(w->cp[j]) != CL_NUMBER)
                j++;
        encode_words(t, w, s, i, j, e);
        i = j;
    }
}

/* ---- decoding ----------------------------------------------------------- */

size_t bpe_piece(const tokenizer *t, int32_t id, bool strip_space, char *buf, size_t cap)
{
    const char *p = tok_text(t, id);
    size_t n = tok_len(t, id), k = 0;
    for (size_t i = 0, len; i < n; i += len) {
        uint32_t cp = uni_decode(p + i, n - i, &len);
        int b = cp < MAP_CPS ? t->bpe->cp_byte[cp] : -1;
        if (b >= 0 && strip_space && i == 0 && b == ' ')
            continue;
        if (k + (b >= 0 ? 1 : len) > cap)
            break;
        if (b >= 0)
            buf[k++] = (char)b;
        else
            memcpy(buf + k, p + i, len), k += len;
    }
    return k;
}
