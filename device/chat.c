/* libhinge: chat. Messages become the prompt text of the model's chat
 * template (model/chat.c recognises and applies it), which hinge_generate's
 * path then tokenizes with the special tokens parsed. */
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "session_impl.h"

/* The template for m (tmpl overrides), with hinge_last_error set on failure. */
static hinge_status template_of(const model *m, const char *tmpl, chat_kind *k)
{
    char err[HINGE_ERRMSG_MAX] = "";
    hinge_status s = chat_for_model(m->file, tmpl, k, err, sizeof err);
    return s == HINGE_OK ? HINGE_OK : api_fail(s, "%s", err);
}

/* chat_format on the public messages (the same fields, another type). */
static hinge_status format(chat_kind k, const hinge_chat_message *msgs, size_t n, bool add, char *buf, size_t cap,
                           size_t *len)
{
    chat_msg *cm = n ? malloc(n * sizeof *cm) : NULL;
    if (n && !cm)
        return api_fail(HINGE_ERR_NOMEM, "out of memory for %zu messages", n);
    for (size_t i = 0; i < n; i++)
        cm[i] = (chat_msg){msgs[i].role, msgs[i].content};
    hinge_status s = chat_format(k, cm, n, add, buf, cap, len);
    free(cm);
    if (s == HINGE_ERR_INVALID)
        return api_fail(s, "a chat message has a NULL role or content");
    if (s == HINGE_ERR_RANGE)
        return api_fail(s, "the chat text is %zu bytes: cap must be at least %zu", *len, *len + 1);
    return s;
}

/* Into a malloc'd string *out: prefix, then msgs with k and the assistant's opening. */
static hinge_status render(chat_kind k, const char *prefix, const hinge_chat_message *msgs, size_t n, char **out)
{
    size_t plen = strlen(prefix), len = 0;
    hinge_status s = format(k, msgs, n, true, NULL, 0, &len);
    if (s != HINGE_ERR_RANGE)
        return s;
    char *text = malloc(plen + len + 1);
    if (!text)
        return api_fail(HINGE_ERR_NOMEM, "out of memory for the chat prompt");
    memcpy(text, prefix, plen);
    if ((s = format(k, msgs, n, true, text + plen, len + 1, &len)) != HINGE_OK) {
        free(text);
        return s;
    }
    *out = text;
    return HINGE_OK;
}

hinge_status hinge_chat_format(const hinge_model *m, const char *tmpl, const hinge_chat_message *msgs, size_t n,
                               int add_assistant, char *buf, size_t cap, size_t *len_out)
{
    if (!m || (!msgs && n) || (!buf && cap) || !len_out)
        return api_fail(HINGE_ERR_INVALID, "hinge_chat_format: NULL argument");
    chat_kind k;
    hinge_status s = template_of(m->m, tmpl, &k);
    size_t len = 0;
    if (s == HINGE_OK && ((s = format(k, msgs, n, add_assistant != 0, buf, cap, &len)) == HINGE_OK ||
                          s == HINGE_ERR_RANGE))
        *len_out = len;
    return s;
}

hinge_status hinge_chat(hinge_session *s, const hinge_chat_message *msgs, size_t n, int max_tokens,
                        hinge_token_cb cb, void *user)
{
    if (!s || (!msgs && n) || max_tokens < 0)
        return api_fail(HINGE_ERR_INVALID, "hinge_chat: session and messages must not be NULL, max_tokens >= 0");
    chat_kind k;
    hinge_status st = template_of(s->m, s->cfg.chat_template, &k);
    if (st != HINGE_OK)
        return st;
    /* The last reply's turn is closed with the template's text. A reply that
     * stopped at its end-of-turn token left that token pending (sampled, not
     * fed): it is dropped, as the closing text holds it. A reply cut short
     * at max_tokens keeps its pending token, then is closed. */
    const char *close = "";
    if (s->chat_open) {
        close = chat_turn_end(k);
        if (s->pending >= 0 && s->pos > 0 && tok_is_eog(s->m->tok, s->pending))
            s->pending = -1;
    }
    char *prompt = NULL;
    if ((st = render(k, close, msgs, n, &prompt)) != HINGE_OK)
        return st;
    st = gen_text(s, prompt, max_tokens, cb, user);
    free(prompt);
    s->chat_open = st == HINGE_OK || st == HINGE_CANCELLED;
    return st;
}
