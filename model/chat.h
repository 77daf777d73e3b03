/* hinge: chat templates. A model's tokenizer.chat_template (a Jinja
 * program) is recognised by its markers, as llama.cpp's
 * llm_chat_detect_template does, and applied by hand-written formatters:
 * no Jinja interpreter runs. The formatted text holds the templates' special
 * tokens as text ("<|im_start|>"): tokenize it with parse_special. */
#ifndef HINGE_CHAT_H
#define HINGE_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "gguf.h"
#include "status.h"

typedef enum chat_kind {
    CHAT_UNKNOWN = 0,
    CHAT_CHATML, /* <|im_start|>role\ncontent<|im_end|>\n (Qwen, SmolLM, ...) */
    CHAT_LLAMA3, /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
    CHAT_GEMMA,  /* <start_of_turn>user|model\ncontent<end_of_turn>\n; system joins the first user turn */
    CHAT_PHI3,   /* <|role|>\ncontent<|end|>\n */
} chat_kind;

/* One message; both strings NUL-terminated UTF-8, borrowed. Roles are
 * "system", "user" and "assistant" (others are passed through where the
 * template writes the role). */
typedef struct chat_msg {
    const char *role;
    const char *content;
} chat_msg;

/* The template whose markers tmpl[0, len) has, or CHAT_UNKNOWN. */
chat_kind chat_detect(const char *tmpl, size_t len);

/* The template named name: "chatml", "llama3", "gemma", "phi3" (llama.cpp's
 * names); CHAT_UNKNOWN for others. */
chat_kind chat_from_name(const char *name);

/* "chatml", "llama3", "gemma", "phi3"; "unknown". */
const char *chat_name(chat_kind k);

/* The template to use for f: override when given (a name as for
 * chat_from_name, or a template's text, recognised by its markers), else
 * f's tokenizer.chat_template. Errors: HINGE_ERR_NOT_FOUND (no override and
 * no tokenizer.chat_template), HINGE_ERR_UNSUPPORTED (a template hinge does
 * not recognise; err says so and names the overrides), HINGE_ERR_FORMAT
 * (tokenizer.chat_template is not a string). */
hinge_status chat_for_model(const gguf_file *f, const char *override, chat_kind *out, char *err, size_t errlen);

/* Formats msgs[0..n) with template k, then the assistant's opening when
 * add_assistant. Writes at most cap bytes and a NUL to out (out may be NULL
 * when cap is 0); *len gets the text's length without the NUL. Errors:
 * HINGE_ERR_INVALID (NULL role or content, or k unknown), HINGE_ERR_RANGE
 * (cap <= *len: *len still says how much is needed). */
hinge_status chat_format(chat_kind k, const chat_msg *msgs, size_t n, bool add_assistant, char *out, size_t cap,
                         size_t *len);

/* The text that closes an assistant turn in template k ("<|im_end|>\n" for
 * ChatML): what a conversation continues with after a reply that stopped at
 * its end-of-turn token without the token being fed back. "" for unknown. */
const char *chat_turn_end(chat_kind k);

#endif
