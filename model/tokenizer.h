/* hinge: the tokenizers of GGUF vocabularies, read from their metadata:
 * SentencePiece ("llama": tokens, scores, token types, byte fallback, dummy
 * prefix) and byte-level BPE ("gpt2": merges, the pre-tokenizer that
 * tokenizer.ggml.pre names, the byte-to-unicode mapping), both with special
 * tokens. */
#ifndef HINGE_TOKENIZER_H
#define HINGE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "status.h"

typedef struct tokenizer tokenizer;

/* Builds the vocabulary from f's tokenizer.ggml.* keys; f is borrowed only
 * for the call (strings are copied). Errors: HINGE_ERR_FORMAT (missing or
 * inconsistent keys), HINGE_ERR_UNSUPPORTED (tokenizer.ggml.model is neither
 * "llama" nor "gpt2", or a "gpt2" vocabulary's tokenizer.ggml.pre names a
 * pre-tokenizer hinge does not have: err names it), HINGE_ERR_NOMEM. */
hinge_status tok_create(const gguf_file *f, tokenizer **out, char *err, size_t errlen);
void tok_destroy(tokenizer *t); /* NULL is a no-op */

int32_t tok_n_vocab(const tokenizer *t);
int32_t tok_bos(const tokenizer *t); /* -1 when the vocabulary has none */
int32_t tok_eos(const tokenizer *t);
bool tok_add_bos(const tokenizer *t); /* tokenizer.ggml.add_bos_token */
/* tokenizer.ggml.add_eos_token (default false): tok_encode never appends EOS;
 * a caller that wants the vocabulary's special tokens appends tok_eos. */
bool tok_add_eos(const tokenizer *t);
/* True for tokens that end a generation (eos, and end-of-turn markers such as
 * gemma's <end_of_turn>). */
bool tok_is_eog(const tokenizer *t, int32_t id);

/* Tokenizes len bytes of UTF-8 text into out[0..cap). Adds BOS first when
 * add_bos. With parse_special, the text of control tokens (e.g. "<bos>",
 * "<start_of_turn>") becomes that token; otherwise it is ordinary text.
 * *n is the number of tokens produced; HINGE_ERR_RANGE if more than cap
 * were needed (*n then holds how many) or the text is over 4 MiB
 * (TOK_INPUT_MAX; *n untouched); HINGE_ERR_NOMEM when the workspace cannot be
 * allocated. Empty text gives no tokens (only BOS when asked). */
hinge_status tok_encode(const tokenizer *t, const char *text, size_t len, bool add_bos,
                        bool parse_special, int32_t *out, size_t cap, size_t *n);

/* Writes the text of token id to buf (not NUL-terminated), returns its
 * length in bytes (at most cap; pieces longer than cap are cut). "▁" becomes
 * a space, byte tokens "<0xAB>" become the byte, control tokens give "".
 * BPE tokens give their bytes (the byte-to-unicode mapping undone), which may
 * be part of a UTF-8 character: the next token completes it.
 * With strip_space a leading space is dropped (the first token after BOS
 * when the vocabulary adds a dummy prefix). */
size_t tok_piece(const tokenizer *t, int32_t id, bool strip_space, char *buf, size_t cap);

/* True when the tokenizer adds SentencePiece's dummy-prefix space. */
bool tok_adds_space_prefix(const tokenizer *t);

#endif
