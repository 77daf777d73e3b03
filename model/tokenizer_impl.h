/* hinge: what tokenizer.c (the vocabulary, special tokens, SentencePiece,
 * the pair-merging engine) shares with tokenizer_bpe.c (byte-level BPE).
 * Private to model/. */
#ifndef HINGE_TOKENIZER_IMPL_H
#define HINGE_TOKENIZER_IMPL_H

#include "tokenizer.h"

enum {
    TOK_TEXT_MAX = 1024,     /* bytes of one token's text */
    TOK_VOCAB_MAX = 1 << 24, /* tokens in a vocabulary; also merges in a BPE
                                vocabulary (a rank then is exact as a float) */
    TOK_INPUT_MAX = 1 << 22, /* bytes of text per tok_encode call (4 MiB): the
                                workspace needs at most about 80 bytes per
                                input byte */
    TOK_EOG_MAX = 6,         /* eos, eot and the four end-of-turn texts */
};

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
typedef enum tok_type {
    TT_UNDEFINED = 0,
    TT_NORMAL = 1,
    TT_UNKNOWN = 2,
    TT_CONTROL = 3,
    TT_USER = 4,
    TT_UNUSED = 5,
    TT_BYTE = 6,
} tok_type;

typedef struct tok_bpe tok_bpe; /* tokenizer_bpe.c */

struct tokenizer {
    int32_t n_vocab;
    char *text;            /* all token texts back to back; an empty text is
                              stored as "[EMPTY_<id>]" as llama.cpp does */
    size_t *off;           /* [n_vocab + 1]: text of i is text[off[i], off[i+1]) */
    float *score;          /* [n_vocab]; NaN in the file reads as -inf */
    uint8_t *type;         /* [n_vocab] tok_type */
    int32_t *slot;         /* hash of texts -> id, -1 empty; duplicates: last id */
    size_t slot_cap;       /* power of two >= 2 * n_vocab */
    int32_t byte_tok[256]; /* the token of each byte: SentencePiece's "<0xAB>",
                              else the byte itself as a token, else unk; BPE:
                              the byte's character in the byte-to-unicode
                              mapping; -1 drops the byte */
    int32_t *special;      /* [n_special] user-defined, control and unknown ids,
                              longest text first (ties: lower id first) */
    size_t n_special;
    int32_t bos, eos, unk, eot; /* -1: none */
    int32_t eog[TOK_EOG_MAX];   /* end-of-generation ids, [n_eog] */
    size_t n_eog;
    bool add_bos;
    bool add_eos;          /* tokenizer.ggml.add_eos_token (tok_add_eos) */
    bool add_space_prefix;
    tok_bpe *bpe;          /* byte-level BPE ("gpt2" model); NULL: SentencePiece */
};

/* An open-addressing index of n texts stored back to back (text i is
 * text[off[i], off[i+1])), hashed with tok_fnv: slots of ids, -1 empty, in
 * a power-of-two capacity >= 2n returned in *cap (probe linearly). A text
 * given twice keeps its last id when keep_last, else its first. NULL when
 * out of memory. The vocabulary and the BPE merges share it. */
int32_t *tok_index_build(const char *text, const size_t *off, int32_t n, bool keep_last, size_t *cap);

static inline size_t tok_len(const tokenizer *t, int32_t id) { return t->off[id + 1] - t->off[id]; }
static inline const char *tok_text(const tokenizer *t, int32_t id) { return t->text + t->off[id]; }

/* The id of the token whose text is p[0, n), or -1. */
int32_t tok_find(const tokenizer *t, const char *p, size_t n);

/* FNV-1a over p[0..n), continuing from h (TOK_FNV_SEED to start): the
 * hash of the vocabulary and of the merge table. */
static const uint32_t TOK_FNV_SEED = 2166136261u;
static inline uint32_t tok_fnv(uint32_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}

/* ---- the pair-merging engine, shared by SentencePiece and BPE ---------- */

/* A run of w->esc; the symbols of a fragment form a doubly linked list. */
typedef struct symbol {
    uint32_t start;     /* byte offset in w->esc */
    uint32_t n;         /* bytes; 0 once merged into its left neighbour */
    int32_t prev, next; /* symbol indices, -1 at the ends */
} symbol;

/* A candidate merge of two adjacent symbols. */
typedef struct bigram {
    float score;    /* higher merges first: SentencePiece's token score, or
                       minus a BPE merge's rank */
    int32_t left, right;
    uint32_t size;  /* bytes of left+right when queued: stale if it changed */
} bigram;

/* Scratch for one tok_encode call, sized for its whole text of len bytes. */
typedef struct work {
    int32_t *mark;  /* [len] partition: MARK_RAW, MARK_INSIDE, or a special id
                       where its match starts */
    char *esc;      /* [3 * len + 3] SentencePiece: a fragment with dummy
                       prefix, ' ' -> U+2581; BPE: one word, byte-encoded */
    symbol *sym;    /* [len + 1] */
    bigram *heap;   /* [3 * (len + 1)]: each merge queues at most 2 bigrams */
    size_t n_heap;
    uint32_t *cp;   /* BPE only, [len + 1]: code points of a fragment */
    uint32_t *cpoff; /* BPE only, [len + 1]: byte offset of each, then the end */
} work;

/* Where tokens go: out[0..cap); n counts them all, even past cap. */
typedef struct emitter {
    int32_t *out;
    size_t cap;
    size_t n;
} emitter;

static inline void tok_emit(emitter *e, int32_t id)
{
    if (e->n < e->cap)
        e->out[e->n] = id;
    e->n++;
}

/* Merges the n linked symbols w->sym[0..n) of w->esc, always the adjacent
 * pair with the highest score first (ties: the leftmost), until no pair
 * scores: SentencePiece's pairs that form a vocabulary token (by its score),
 * or BPE's pairs that are a merge (by rank). O(n log n). */
void tok_merge(const tokenizer *t, work *w, int32_t n);

/* ---- byte-level BPE (tokenizer_bpe.c) ----------------------------------- */

/* Reads tokenizer.ggml.merges and tokenizer.ggml.pre into t->bpe and sets the
 * flags and ids whose defaults depend on the pre-tokenizer; t's texts, types
 * and hash are built. Errors: HINGE_ERR_FORMAT, HINGE_ERR_UNSUPPORTED (a
 * pre-tokenizer hinge does not have, named in err), HINGE_ERR_NOMEM. */
hinge_status bpe_create(tokenizer *t, const gguf_file *f, char *err, size_t errlen);
void bpe_destroy(tok_bpe *b); /* NULL is a no-op */

/* Defaults that a "gpt2" vocabulary's pre-tokenizer sets (llama.cpp's): the
 * file's tokenizer.ggml.add_bos_token overrides add_bos. */
bool bpe_default_add_bos(const tok_bpe *b);

/* Fills t->byte_tok with the token of each byte's character. */
void bpe_byte_tokens(tokenizer *t);

/* The score of merging a and b (their texts in w->esc), or false when they
 * are not a merge. */
bool bpe_pair_score(const tokenizer *t, const work *w, const symbol *a, const symbol *b, float *score);

/* Tokenizes one raw fragment (text between special tokens) of len bytes:
 * pre-tokenizer, then each word byte-encoded and merged. */
void bpe_fragment(const tokenizer *t, work *w, const char *s, size_t len, emitter *e);

/* Writes the bytes of a normal token's text, decoded through the
 * byte-to-unicode mapping (characters outside it are copied as they are),
 * to buf[0..cap); returns the length (pieces longer than cap are cut). With
 * strip_space a leading ' ' is dropped. */
size_t bpe_piece(const tokenizer *t, int32_t id, bool strip_space, char *buf, size_t cap);

#endif
