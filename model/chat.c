/* hinge: chat templates recognised by their markers and applied by hand, as
 * llama.cpp's llm_chat_apply_template writes them (its test strings are
 * tests/model/test_chat.c's). */
#include "chat.h"

#include <string.h>

typedef struct chat_info {
    chat_kind kind;
    const char *name;
    const char *turn_end; /* closes an assistant turn */
} chat_info;

static const chat_info INFO[] = {
    {CHAT_CHATML, "chatml", "<|im_end|>\n"},
    {CHAT_LLAMA3, "llama3", "<|eot_id|>"},
    {CHAT_GEMMA, "gemma", "<end_of_turn>\n"},
    {CHAT_PHI3, "phi3", "<|end|>\n"},
};

static const chat_info *info_of(chat_kind k)
{
    for (size_t i = 0; i < sizeof INFO / sizeof INFO[0]; i++)
        if (INFO[i].kind == k)
            return &INFO[i];
    return NULL;
}

static bool contains(const char *s, size_t len, const char *what)
{
    return memmem(s, len, what, strlen(what)) != NULL;
}

chat_kind chat_detect(const char *tmpl, size_t len)
{
    if (!tmpl)
        return CHAT_UNKNOWN;
    /* llama.cpp's order; the variants it tells apart from these first
     * (Phi-4 and SmolVLM inside ChatML; Mistral, Llama 2 and others
     * before Phi-3) are not supported, so they are unknown here. */
    if (contains(tmpl, len, "<|im_start|>"))
        return contains(tmpl, len, "<|im_sep|>") || contains(tmpl, len, "<end_of_utterance>") ? CHAT_UNKNOWN
                                                                                             : CHAT_CHATML;
    if (contains(tmpl, len, "[INST]"))
        return CHAT_UNKNOWN;
    if (contains(tmpl, len, "<|assistant|>") && contains(tmpl, len, "<|end|>"))
        return CHAT_PHI3;
    if (contains(tmpl, len, "<start_of_turn>"))
        return CHAT_GEMMA;
    if (contains(tmpl, len, "<|start_header_id|>") && contains(tmpl, len, "<|end_header_id|>"))
        return CHAT_LLAMA3;
    return CHAT_UNKNOWN;
}

chat_kind chat_from_name(const char *name)
{
    for (size_t i = 0; name && i < sizeof INFO / sizeof INFO[0]; i++)
        if (strcmp(name, INFO[i].name) == 0)
            return INFO[i].kind;
    return CHAT_UNKNOWN;
}

const char *chat_name(chat_kind k)
{
    const chat_info *i = info_of(k);
    return i ? i->name : "unknown";
}

const char *chat_turn_end(chat_kind k)
{
    const chat_info *i = info_of(k);
    return i ? i->turn_end : "";
}

hinge_status chat_for_model(const gguf_file *f, const char *override, chat_kind *out, char *err, size_t errlen)
{
    static const char names[] = "chatml, llama3, gemma, phi3";
    if (override) {
        chat_kind k = chat_from_name(override);
        if (k == CHAT_UNKNOWN)
            k = chat_detect(override, strlen(override));
        if (k == CHAT_UNKNOWN)
            return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED,
                              "chat template '%.40s': neither a name (%s) nor a template with their markers",
                              override, names);
        *out = k;
        return HINGE_OK;
    }
    gguf_str t;
    hinge_status s = gguf_get_str(f, "tokenizer.chat_template", &t);
    if (s == HINGE_ERR_NOT_FOUND)
        return hinge_fail(err, errlen, HINGE_ERR_NOT_FOUND,
                          "the model has no tokenizer.chat_template: name one (%s)", names);
    if (s)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "tokenizer.chat_template: not a string");
    chat_kind k = chat_detect(t.ptr, (size_t)t.len);
    if (k == CHAT_UNKNOWN)
        return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED,
                          "the model's tokenizer.chat_template is none that hinge recognises (ChatML, Llama 3, "
                          "Gemma, Phi-3): name one to use instead (%s)", names);
    *out = k;
    return HINGE_OK;
}

/* ---- formatting ---------------------------------------------------------- */

/* Text written into out[0, cap); len counts it all, even past cap. */
typedef struct writer {
    char *out;
    size_t cap, len;
} writer;

static void put_n(writer *w, const char *s, size_t n)
{
    if (w->len < w->cap) {
        size_t k = w->cap - w->len < n ? w->cap - w->len : n;
        memcpy(w->out + w->len, s, k);
    }
    w->len += n;
}

static void put(writer *w, const char *s) { put_n(w, s, strlen(s)); }

static bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* s without leading and trailing white space (C isspace, as llama.cpp). */
static void put_trimmed(writer *w, const char *s)
{
    size_t a = 0, b = strlen(s);
    while (a < b && is_space(s[a]))
        a++;
    while (b > a && is_space(s[b - 1]))
        b--;
    put_n(w, s + a, b - a);
}

/* Gemma has no system turn: the system messages, trimmed, open the next
 * user turn (several are joined without a separator, as llama.cpp does);
 * "assistant" is "model". */
static void format_gemma(writer *w, const chat_msg *msgs, size_t n, bool add_assistant)
{
    size_t unsent = 0; /* system messages from here on are not written yet */
    bool pending = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(msgs[i].role, "system") == 0) {
            for (const char *c = msgs[i].content; *c && !pending; c++)
                pending = !is_space(*c); /* llama.cpp: a non-empty trimmed text */
            continue;
        }
        const bool model = strcmp(msgs[i].role, "assistant") == 0;
        put(w, "<start_of_turn>");
        put(w, model ? "model" : msgs[i].role);
        put(w, "\n");
        if (pending && !model) {
            for (size_t j = unsent; j < i; j++)
                if (strcmp(msgs[j].role, "system") == 0)
                    put_trimmed(w, msgs[j].content);
            put(w, "\n\n");
            pending = false;
            unsent = i + 1;
        }
        put_trimmed(w, msgs[i].content);
        put(w, "<end_of_turn>\n");
    }
    if (add_assistant)
        put(w, "<start_of_turn>model\n");
}

hinge_status chat_format(chat_kind k, const chat_msg *msgs, size_t n, bool add_assistant, char *out, size_t cap,
                         size_t *len)
{
    if ((!msgs && n) || (!out && cap) || !len || !info_of(k))
        return HINGE_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return HINGE_ERR_INVALID;
    writer w = {out, cap, 0};
    if (k == CHAT_GEMMA) {
        format_gemma(&w, msgs, n, add_assistant);
    } else {
        for (size_t i = 0; i < n; i++) {
            const char *role = msgs[i].role, *text = msgs[i].content;
            switch (k) {
            case CHAT_CHATML:
                put(&w, "<|im_start|>"), put(&w, role), put(&w, "\n"), put(&w, text), put(&w, "<|im_end|>\n");
                break;
            case CHAT_LLAMA3:
                put(&w, "<|start_header_id|>"), put(&w, role), put(&w, "<|end_header_id|>\n\n");
                put_trimmed(&w, text), put(&w, "<|eot_id|>");
                break;
            default: /* CHAT_PHI3 */
                put(&w, "<|"), put(&w, role), put(&w, "|>\n"), put(&w, text), put(&w, "<|end|>\n");
                break;
            }
        }
        if (add_assistant)
            put(&w, k == CHAT_CHATML   ? "<|im_start|>assistant\n"
                    : k == CHAT_LLAMA3 ? "<|start_header_id|>assistant<|end_header_id|>\n\n"
                                       : "<|assistant|>\n");
    }
    *len = w.len;
    if (w.len >= cap)
        return HINGE_ERR_RANGE;
    out[w.len] = '\0';
    return HINGE_OK;
}
