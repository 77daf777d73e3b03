/* hinge: the tokenizer of GGUF vocabularies: the vocabulary itself, special
 * tokens, the pair-merging engine, and SentencePiece ("llama" vocabularies)
 * as llama.cpp's llm_tokenizer_spm runs it. Byte-level BPE ("gpt2"
 * vocabularies) is in tokenizer_bpe.c: it shares all but the fragment
 * encoding and the decoding of normal tokens.
 *
 * SentencePiece encoding: the text is first cut on the texts of special tokens (user-defined
 * ones always, control and unknown ones with parse_special), longest token
 * first. Each remaining raw fragment gets SentencePiece's dummy-prefix space
 * when it starts the text or follows a special token (if the vocabulary asks
 * for it), has ' ' replaced by U+2581 and is split into UTF-8 characters;
 * adjacent symbols are then merged greedily, always the pair whose
 * concatenation is the vocabulary token with the highest score (ties: the
 * leftmost pair), with a priority queue over a linked list of symbols:
 * O(n log n) in the fragment's length. Symbols that are not tokens become
 * byte-fallback tokens "<0xAB>". */
#include "tokenizer_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MARK_RAW = -1,    /* partition: byte of raw text */
    MARK_INSIDE = -2, /* partition: byte inside a special token's match */
};

static const char SPACE_MARK[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's space */

int32_t tok_find(const tokenizer *t, const char *p, size_t n)
{
    size_t mask = t->slot_cap - 1;
    for (size_t h = tok_fnv(TOK_FNV_SEED, p, n) & mask;; h = (h + 1) & mask) {
        int32_t id = t->slot[h];
        if (id < 0 || (tok_len(t, id) == n && memcmp(tok_text(t, id), p, n) == 0))
            return id;
    }
}

/* ---- building the vocabulary ------------------------------------------- */

/* Sets *bpe for "gpt2" (byte-level BPE), clears it for "llama" (SentencePiece). */
static hinge_status check_model(const gguf_file *f, bool *bpe, char *err, size_t errlen)
{
    gguf_str m;
    hinge_status s = gguf_get_str(f, "tokenizer.ggml.model", &m);
    if (s == HINGE_ERR_NOT_FOUND)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "tokenizer.ggml.model: missing");
    if (s)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "tokenizer.ggml.model: not a string");
    *bpe = m.len == 4 && memcmp(m.ptr, "gpt2", 4) == 0;
    if (!*bpe && (m.len != 5 || memcmp(m.ptr, "llama", 5) != 0))
        return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED,
                          "tokenizer.ggml.model '%.*s': only 'llama' (SentencePiece) and 'gpt2' "
                          "(byte-level BPE) are supported",
                          m.len > 32 ? 32 : (int)m.len, m.ptr);
    return HINGE_OK;
}

/* Checks the lengths of the n texts and copies them; fills n_vocab, text and
 * off (already allocated for n + 1 entries). */
static hinge_status copy_texts(tokenizer *t, const gguf_str *strs, uint64_t n, char *err, size_t errlen)
{
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (strs[i].len > TOK_TEXT_MAX)
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT,
                              "tokenizer.ggml.tokens: token %llu is %llu bytes (max %d)",
                              (unsigned long long)i, (unsigned long long)strs[i].len, TOK_TEXT_MAX);
        total += strs[i].len ? (size_t)strs[i].len : 24; /* room for "[EMPTY_<id>]" */
    }
    t->text = malloc(total ? total : 1);
    if (!t->text)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "tokenizer.ggml.tokens: out of memory for %zu bytes",
                          total);
    t->n_vocab = (int32_t)n;
    size_t at = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        t->off[i] = at;
        if (strs[i].len)
            memcpy(t->text + at, strs[i].ptr, (size_t)strs[i].len), at += (size_t)strs[i].len;
        else
            at += (size_t)snprintf(t->text + at, 24, "[EMPTY_%d]", (int)i);
    }
    t->off[t->n_vocab] = at;
    return HINGE_OK;
}

/* Reads tokenizer.ggml.tokens into the tokenizer. */
static hinge_status load_texts(tokenizer *t, const gguf_file *f, char *err, size_t errlen)
{
    const char *key = "tokenizer.ggml.tokens";
    uint64_t n = 0;
    hinge_status s = gguf_get_strs(f, key, NULL, 0, &n);
    if (s == HINGE_ERR_NOT_FOUND)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s: missing", key);
    if (s == HINGE_ERR_FORMAT)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s: not an array of strings", key);
    if (n == 0 || n > TOK_VOCAB_MAX)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s: %llu tokens (must be 1..%d)", key,
                          (unsigned long long)n, TOK_VOCAB_MAX);
    gguf_str *strs = malloc((size_t)n * sizeof *strs);
    t->off = malloc(((size_t)n + 1) * sizeof *t->off);
    if (!strs || !t->off || gguf_get_strs(f, key, strs, n, &n))
        s = hinge_fail(err, errlen, HINGE_ERR_NOMEM, "%s: out of memory for %llu tokens", key,
                       (unsigned long long)n);
    else
        s = copy_texts(t, strs, n, err, errlen);
    free(strs);
    return s;
}

/* An optional array of n_vocab fixed-size elements: *data NULL when absent. */
static hinge_status get_parallel(const gguf_file *f, const char *key, gguf_vtype want, int32_t n_vocab,
                                 const void **data, char *err, size_t errlen)
{
    uint64_t n = 0;
    *data = NULL;
    hinge_status s = gguf_get_arr(f, key, want, &n, data);
    if (s == HINGE_ERR_NOT_FOUND)
        return HINGE_OK;
    if (s)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s: not an array of %s", key,
                          want == GGUF_VT_FLOAT32 ? "float32" : "int32");
    if (n != (uint64_t)n_vocab)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT,
                          "%s: %llu entries, but tokenizer.ggml.tokens has %d", key,
                          (unsigned long long)n, (int)n_vocab);
    return HINGE_OK;
}

static hinge_status load_scores_types(tokenizer *t, const gguf_file *f, char *err, size_t errlen)
{
    const void *sc, *ty;
    hinge_status s = get_parallel(f, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, t->n_vocab, &sc, err, errlen);
    if (s || (s = get_parallel(f, "tokenizer.ggml.token_type", GGUF_VT_INT32, t->n_vocab, &ty, err, errlen)))
        return s;
    t->score = malloc((size_t)t->n_vocab * sizeof *t->score);
    t->type = malloc((size_t)t->n_vocab);
    if (!t->score || !t->type)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for %d scores", (int)t->n_vocab);
    for (int32_t i = 0; i < t->n_vocab; i++) {
        float x = 0.0f;
        int32_t k = TT_NORMAL;
        if (sc)
            memcpy(&x, (const char *)sc + 4 * (size_t)i, 4);
        if (ty)
            memcpy(&k, (const char *)ty + 4 * (size_t)i, 4);
        if (k < TT_UNDEFINED || k > TT_BYTE)
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT,
                              "tokenizer.ggml.token_type: token %d has type %d (must be 0..6)", (int)i,
                              (int)k);
        t->score[i] = isnan(x) ? -INFINITY : x;
        t->type[i] = (uint8_t)k;
    }
    return HINGE_OK;
}

int32_t *tok_index_build(const char *text, const size_t *off, int32_t n, bool keep_last, size_t *cap)
{
    size_t c = 16;
    while (c < 2 * (size_t)n)
        c *= 2;
    int32_t *slot = malloc(c * sizeof *slot);
    if (!slot)
        return NULL;
    memset(slot, 0xff, c * sizeof *slot); /* all -1 */
    size_t mask = c - 1;
    for (int32_t i = 0; i < n; i++) {
        const char *p = text + off[i];
        size_t len = off[i + 1] - off[i], h = tok_fnv(TOK_FNV_SEED, p, len) & mask;
        while (slot[h] >= 0 &&
               !(off[slot[h] + 1] - off[slot[h]] == len && memcmp(text + off[slot[h]], p, len) == 0))
            h = (h + 1) & mask;
        if (slot[h] < 0 || keep_last)
            slot[h] = i;
    }
    *cap = c;
    return slot;
}

static hinge_status build_hash(tokenizer *t, char *err, size_t errlen)
{
    /* a duplicate text maps to its last id, as in llama.cpp */
    t->slot = tok_index_build(t->text, t->off, t->n_vocab, true, &t->slot_cap);
    if (!t->slot)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for the token hash");
    return HINGE_OK;
}

/* Reads an optional token id: absent gives dflt (-1 if not in the
 * vocabulary); 0xFFFFFFFF or -1 in the file mean "none". */
static hinge_status load_id(const tokenizer *t, const gguf_file *f, const char *key, int32_t dflt,
                            int32_t *out, char *err, size_t errlen)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) {
        *out = dflt < t->n_vocab ? dflt : -1;
        return HINGE_OK;
    }
    int64_t v = -2;
    uint32_t u;
    if (gguf_get_u32(f, key, &u) == HINGE_OK) {
        v = u == UINT32_MAX ? -1 : (int64_t)u;
    } else if (kv->type == GGUF_VT_INT32 || kv->type == GGUF_VT_INT64) {
        int32_t i32 = 0;
        int64_t i64 = 0;
        if (kv->type == GGUF_VT_INT32)
            memcpy(&i32, kv->val, 4), i64 = i32;
        else
            memcpy(&i64, kv->val, 8);
        v = i64 == -1 ? -1 : -2;
    }
    if (v < -1 || v >= t->n_vocab)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT,
                          "%s: not a token id of the %d-token vocabulary", key, (int)t->n_vocab);
    *out = (int32_t)v;
    return HINGE_OK;
}

static hinge_status load_flag(const gguf_file *f, const char *key, bool dflt, bool *out, char *err,
                              size_t errlen)
{
    *out = dflt;
    hinge_status s = gguf_get_bool(f, key, out);
    if (s && s != HINGE_ERR_NOT_FOUND)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s: not a bool", key);
    return HINGE_OK;
}

/* Special ids and flags. Absent keys: SentencePiece's defaults (unk 0, bos
 * 1, eos 2, BOS and the dummy prefix added); for BPE no ids, no prefix, and
 * BOS as the pre-tokenizer has it (llama.cpp's defaults, except that it
 * takes 11 for BPE's bos and eos). */
static hinge_status load_ids(tokenizer *t, const gguf_file *f, char *err, size_t errlen)
{
    bool bpe = t->bpe != NULL;
    hinge_status s;
    if ((s = load_id(t, f, "tokenizer.ggml.bos_token_id", bpe ? -1 : 1, &t->bos, err, errlen)) ||
        (s = load_id(t, f, "tokenizer.ggml.eos_token_id", bpe ? -1 : 2, &t->eos, err, errlen)) ||
        (s = load_id(t, f, "tokenizer.ggml.unknown_token_id", bpe ? -1 : 0, &t->unk, err, errlen)) ||
        (s = load_id(t, f, "tokenizer.ggml.eot_token_id", -1, &t->eot, err, errlen)) ||
        (s = load_flag(f, "tokenizer.ggml.add_bos_token", bpe ? bpe_default_add_bos(t->bpe) : true,
                       &t->add_bos, err, errlen)) ||
        (s = load_flag(f, "tokenizer.ggml.add_eos_token", false, &t->add_eos, err, errlen)) ||
        (s = load_flag(f, "tokenizer.ggml.add_space_prefix", !bpe, &t->add_space_prefix, err, errlen)))
        return s;
    if (t->bos < 0)
        t->add_bos = false;
    if (t->eos < 0)
        t->add_eos = false;
    return HINGE_OK;
}

static void add_eog(tokenizer *t, int32_t id)
{
    if (id < 0 || t->n_eog == TOK_EOG_MAX)
        return;
    for (size_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return;
    t->eog[t->n_eog++] = id;
}

static void build_bytes_and_eog(tokenizer *t)
{
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256 && !t->bpe; b++) {
        char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        char one = (char)b;
        int32_t id = tok_find(t, name, 6);
        if (id < 0)
            id = tok_find(t, &one, 1);
        t->byte_tok[b] = id >= 0 ? id : t->unk;
    }
    if (t->bpe)
        bpe_byte_tokens(t);
    static const char *const eot_texts[] = {"<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|endoftext|>"};
    add_eog(t, t->eos);
    add_eog(t, t->eot);
    for (size_t i = 0; i < sizeof eot_texts / sizeof eot_texts[0]; i++)
        add_eog(t, tok_find(t, eot_texts[i], strlen(eot_texts[i])));
}

typedef struct special_ref {
    size_t len;
    int32_t id;
} special_ref;

static int cmp_special(const void *a, const void *b)
{
    const special_ref *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static hinge_status build_special(tokenizer *t, char *err, size_t errlen)
{
    size_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        n += t->type[i] == TT_USER || t->type[i] == TT_CONTROL || t->type[i] == TT_UNKNOWN;
    special_ref *refs = malloc((n ? n : 1) * sizeof *refs);
    t->special = malloc((n ? n : 1) * sizeof *t->special);
    if (!refs || !t->special) {
        free(refs);
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for %zu special tokens", n);
    }
    n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->type[i] == TT_USER || t->type[i] == TT_CONTROL || t->type[i] == TT_UNKNOWN)
            refs[n++] = (special_ref){tok_len(t, i), i};
    qsort(refs, n, sizeof *refs, cmp_special);
    for (size_t i = 0; i < n; i++)
        t->special[i] = refs[i].id;
    t->n_special = n;
    free(refs);
    return HINGE_OK;
}

hinge_status tok_create(const gguf_file *f, tokenizer **out, char *err, size_t errlen)
{
    if (!f || !out)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "tok_create: NULL argument");
    tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    bool bpe = false;
    hinge_status s;
    if ((s = check_model(f, &bpe, err, errlen)) || (s = load_texts(t, f, err, errlen)) ||
        (s = load_scores_types(t, f, err, errlen)) || (s = build_hash(t, err, errlen)) ||
        (bpe && (s = bpe_create(t, f, err, errlen))) || (s = load_ids(t, f, err, errlen)) ||
        (s = build_special(t, err, errlen))) {
        tok_destroy(t);
        return s;
    }
    build_bytes_and_eog(t);
    *out = t;
    return HINGE_OK;
}

void tok_destroy(tokenizer *t)
{
    if (!t)
        return;
    free(t->text);
    free(t->off);
    free(t->score);
    free(t->type);
    free(t->slot);
    free(t->special);
    bpe_destroy(t->bpe);
    free(t);
}

int32_t tok_n_vocab(const tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t tok_bos(const tokenizer *t) { return t ? t->bos : -1; }
int32_t tok_eos(const tokenizer *t) { return t ? t->eos : -1; }
bool tok_add_bos(const tokenizer *t) { return t && t->add_bos; }
bool tok_add_eos(const tokenizer *t) { return t && t->add_eos; }
bool tok_adds_space_prefix(const tokenizer *t) { return t && t->add_space_prefix; }

bool tok_is_eog(const tokenizer *t, int32_t id)
{
    if (!t || id < 0)
        return false;
    for (size_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return true;
    return false;
}

/* ---- the pair-merging engine ------------------------------------------- */

/* True when a pops before b: higher score, then the leftmost. */
static bool heap_before(const bigram *a, const bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(work *w, bigram b)
{
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_before(&b, &w->heap[parent]))
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = b;
}

static bigram heap_pop(work *w)
{
    bigram top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_before(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!heap_before(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0)
        w->heap[i] = last;
    return top;
}

static void try_bigram(const tokenizer *t, work *w, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return;
    const symbol *l = &w->sym[left], *r = &w->sym[right];
    float score;
    if (t->bpe) {
        if (!bpe_pair_score(t, w, l, r, &score))
            return;
    } else {
        int32_t id = tok_find(t, w->esc + l->start, (size_t)l->n + r->n);
        if (id < 0)
            return;
        score = t->score[id];
    }
    heap_push(w, (bigram){score, left, right, l->n + r->n});
}

void tok_merge(const tokenizer *t, work *w, int32_t n)
{
    w->n_heap = 0;
    for (int32_t i = 1; i < n; i++)
        try_bigram(t, w, i - 1, i);
    while (w->n_heap > 0) {
        bigram b = heap_pop(w);
        symbol *l = &w->sym[b.left], *r = &w->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue; /* stale: one side was merged since */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            w->sym[r->next].prev = b.left;
        try_bigram(t, w, l->prev, b.left);
        try_bigram(t, w, b.left, l->next);
    }
}

/* ---- SentencePiece ------------------------------------------------------ */

/* Bytes of the UTF-8 character at p (n > 0 bytes left): its lead byte's
 * length when that many bytes follow and all are continuation bytes, else 1,
 * so that an invalid byte is a symbol of its own. (llama.cpp takes the lead
 * byte's length unchecked; that differs only on invalid UTF-8, where it can
 * swallow part of an escaped space and break the round trip.) */
static uint32_t utf8_len(const char *p, size_t n)
{
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    unsigned char c = (unsigned char)p[0];
    uint32_t len = c >= 0xf8 ? 1 : lens[c >> 4];
    if (len > n)
        return 1;
    for (uint32_t i = 1; i < len; i++)
        if (((unsigned char)p[i] & 0xc0) != 0x80)
            return 1;
    return len;
}

/* Writes the fragment, escaped, to w->esc and splits it into symbols.
 * Returns the symbol count. */
static int32_t split_fragment(work *w, const char *s, size_t len, bool prefix)
{
    size_t m = 0;
    if (prefix)
        memcpy(w->esc, SPACE_MARK, 3), m = 3;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ')
            memcpy(w->esc + m, SPACE_MARK, 3), m += 3;
        else
            w->esc[m++] = s[i];
    }
    int32_t n = 0;
    for (size_t at = 0; at < m; n++) {
        uint32_t c = utf8_len(w->esc + at, m - at);
        w->sym[n] = (symbol){(uint32_t)at, c, n - 1, -1};
        if (n > 0)
            w->sym[n - 1].next = n;
        at += c;
    }
    return n;
}

/* Emits one final symbol. Every merged symbol is a vocabulary token (merges
 * only happen into tokens), so a symbol that is not a token is a single
 * unmerged character: llama.cpp's re-segmentation through its recorded
 * merges then always ends in byte fallback, which is what this does. */
static void emit_symbol(const tokenizer *t, const work *w, const symbol *sy, emitter *e)
{
    const char *p = w->esc + sy->start;
    int32_t id = tok_find(t, p, sy->n);
    if (id >= 0) {
        tok_emit(e, id);
        return;
    }
    for (uint32_t i = 0; i < sy->n; i++) {
        int32_t b = t->byte_tok[(unsigned char)p[i]];
        if (b >= 0)
            tok_emit(e, b);
    }
}

static void spm_fragment(const tokenizer *t, work *w, const char *s, size_t len, bool prefix, emitter *e)
{
    int32_t n = split_fragment(w, s, len, prefix);
    if (n == 0)
        return;
    tok_merge(t, w, n);
    for (int32_t i = 0; i != -1; i = w->sym[i].next)
        emit_symbol(t, w, &w->sym[i], e);
}

/* ---- special tokens ----------------------------------------------------- */

/* Which bytes and byte pairs occur in the text: a cheap filter that rules out
 * most special tokens before searching for them. */
typedef struct presence {
    uint64_t byte[256 / 64];
    uint64_t pair[65536 / 64];
} presence;

static void presence_init(presence *pr, const char *s, size_t len)
{
    memset(pr, 0, sizeof *pr);
    for (size_t i = 0; i < len; i++) {
        unsigned c = (unsigned char)s[i];
        pr->byte[c / 64] |= 1ull << (c % 64);
        if (i + 1 < len) {
            unsigned p = c << 8 | (unsigned char)s[i + 1];
            pr->pair[p / 64] |= 1ull << (p % 64);
        }
    }
}

static bool may_occur(const presence *pr, const char *p, size_t n)
{
    unsigned c = (unsigned char)p[0];
    if (!(pr->byte[c / 64] >> (c % 64) & 1))
        return false;
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned q = (unsigned char)p[i] << 8 | (unsigned char)p[i + 1];
        if (!(pr->pair[q / 64] >> (q % 64) & 1))
            return false;
    }
    return true;
}

/* Marks the leftmost non-overlapping matches of token id inside each run of
 * still raw text, as llama.cpp's tokenizer_st_partition does. */
static void split_on(const tokenizer *t, const char *s, size_t len, int32_t *mark, int32_t id)
{
    const char *p = tok_text(t, id);
    size_t n = tok_len(t, id);
    for (size_t i = 0; i < len;) {
        if (mark[i] != MARK_RAW) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && mark[j] == MARK_RAW)
            j++;
        const char *at = s + i, *hit;
        while ((size_t)(s + j - at) >= n && (hit = memmem(at, (size_t)(s + j - at), p, n))) {
            size_t k = (size_t)(hit - s);
            mark[k] = id;
            for (size_t q = k + 1; q < k + n; q++)
                mark[q] = MARK_INSIDE;
            at = hit + n;
        }
        i = j;
    }
}

static hinge_status partition(const tokenizer *t, const char *s, size_t len, bool parse_special, int32_t *mark)
{
    for (size_t i = 0; i < len; i++)
        mark[i] = MARK_RAW;
    presence *pr = malloc(sizeof *pr);
    if (!pr)
        return HINGE_ERR_NOMEM;
    presence_init(pr, s, len);
    for (size_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        if (!parse_special && t->type[id] != TT_USER)
            continue; /* control and unknown texts are plain text then */
        size_t n = tok_len(t, id);
        if (n == 0 || n > len || !may_occur(pr, tok_text(t, id), n))
            continue;
        split_on(t, s, len, mark, id);
    }
    free(pr);
    return HINGE_OK;
}

/* Idempotent: work_init's failure path frees, and so does its caller. */
static void work_free(work *w)
{
    free(w->mark);
    free(w->esc);
    free(w->sym);
    free(w->heap);
    free(w->cp);
    free(w->cpoff);
    *w = (work){0};
}

static hinge_status work_init(work *w, size_t len, bool bpe)
{
    *w = (work){0};
    w->mark = malloc((len ? len : 1) * sizeof *w->mark);
    w->esc = malloc(3 * len + 3);
    w->sym = malloc((len + 1) * sizeof *w->sym);
    w->heap = malloc(3 * (len + 1) * sizeof *w->heap);
    if (bpe) {
        w->cp = malloc((len + 1) * sizeof *w->cp);
        w->cpoff = malloc((len + 1) * sizeof *w->cpoff);
    }
    if (!w->mark || !w->esc || !w->sym || !w->heap || (bpe && (!w->cp || !w->cpoff))) {
        work_free(w);
        return HINGE_ERR_NOMEM;
    }
    return HINGE_OK;
}

/* Tokenizes the text after the optional BOS: special tokens as found by
 * partition, raw runs between them through SentencePiece or BPE. */
static void encode_fragments(const tokenizer *t, work *w, const char *text, size_t len, emitter *e)
{
    bool prev_special = true; /* the first fragment gets the dummy prefix */
    for (size_t i = 0; i < len;) {
        int32_t m = w->mark[i];
        if (m >= 0) {
            tok_emit(e, m);
            i += tok_len(t, m);
            prev_special = true;
            continue;
        }
        size_t j = i;
        while (j < len && w->mark[j] == MARK_RAW)
            j++;
        if (t->bpe)
            bpe_fragment(t, w, text + i, j - i, e);
        else
            spm_fragment(t, w, text + i, j - i, t->add_space_prefix && prev_special, e);
        prev_special = false;
        i = j;
    }
}

hinge_status tok_encode(const tokenizer *t, const char *text, size_t len, bool add_bos,
                        bool parse_special, int32_t *out, size_t cap, size_t *n)
{
    if (!t || !n || (!text && len) || (!out && cap) || (add_bos && t->bos < 0))
        return HINGE_ERR_INVALID;
    if (len > TOK_INPUT_MAX)
        return HINGE_ERR_RANGE;
    emitter e = {out, cap, 0};
    if (add_bos)
        tok_emit(&e, t->bos);
    if (len > 0) {
        work w;
        hinge_status s = work_init(&w, len, t->bpe != NULL);
        if (!s)
            s = partition(t, text, len, parse_special, w.mark);
        if (s) {
            work_free(&w);
            return s;
        }
        encode_fragments(t, &w, text, len, &e);
        work_free(&w);
    }
    *n = e.n;
    return e.n > cap ? HINGE_ERR_RANGE : HINGE_OK;
}

/* ---- decoding ----------------------------------------------------------- */

/* Value of a byte token's text "<0xAB>", or -1. */
static int byte_value(const char *p, size_t n)
{
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

size_t tok_piece(const tokenizer *t, int32_t id, bool strip_space, char *buf, size_t cap)
{
    if (!t || id < 0 || id >= t->n_vocab || (!buf && cap))
        return 0;
    const char *p = tok_text(t, id);
    size_t n = tok_len(t, id), k = 0;
    char byte;
    switch (t->type[id]) {
    case TT_NORMAL: {
        if (t->bpe)
            return bpe_piece(t, id, strip_space, buf, cap);
        size_t i = 0;
        if (strip_space && n >= 3 && memcmp(p, SPACE_MARK, 3) == 0)
            i = 3;
        else if (strip_space && n >= 1 && p[0] == ' ')
            i = 1;
        while (i < n && k < cap) {
            bool mark = n - i >= 3 && memcmp(p + i, SPACE_MARK, 3) == 0;
            buf[k++] = mark ? ' ' : p[i];
            i += mark ? 3 : 1;
        }
        return k;
    }
    case TT_BYTE:
        if (byte_value(p, n) < 0)
            return 0;
        byte = (char)byte_value(p, n);
        p = &byte, n = 1;
        break;
    case TT_USER:
        break;
    default: /* control, unknown, unused, undefined: no text */
        return 0;
    }
    if (strip_space && n > 0 && p[0] == ' ')
        p++, n--;
    k = n < cap ? n : cap;
    if (k)
        memcpy(buf, p, k);
    return k;
}
