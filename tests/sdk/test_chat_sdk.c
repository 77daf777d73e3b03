/* hinge_chat_format and hinge_chat through the public API, on the two real
 * models: SmolLM2-135M-Instruct (its own ChatML tokenizer.chat_template) and
 * Gemma 3 270M (a base model without a template: the "gemma" override).
 * The texts expected are the templates' (llama.cpp's formatting of them);
 * hinge_chat's generations are checked against hinge_generate on the text
 * hinge_chat_format writes, a second turn included. A model that has not
 * been fetched (HINGE_SMOLLM2_MODEL, HINGE_GEMMA_MODEL) skips its tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hinge/hinge.h>

typedef struct text {
    char buf[4096];
    size_t len;
} text;

static int on_piece(const char *piece, size_t len, void *user)
{
    text *t = user;
    assert_true(t->len + len < sizeof t->buf);
    memcpy(t->buf + t->len, piece, len);
    t->len += len;
    t->buf[t->len] = '\0';
    return 0;
}

static void check(hinge_status s, const char *what)
{
    if (s != HINGE_OK)
        fail_msg("%s: %s (%s)", what, hinge_strerror(s), hinge_last_error());
}

/* The model at $env, or NULL (the test skips). */
static hinge_model *load(const char *env)
{
    const char *path = getenv(env);
    if (!path || access(path, R_OK) != 0) {
        print_message("%s not set or not readable: skipped\n", env);
        return NULL;
    }
    hinge_model *m = NULL;
    check(hinge_model_load(path, &m), path);
    return m;
}

static hinge_session *greedy_session(hinge_model *m, const char *tmpl)
{
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.temperature = 0.0f;
    c.n_ctx = 256;
    c.n_threads = 2;
    c.chat_template = tmpl;
    hinge_session *s = NULL;
    check(hinge_session_create(m, &c, &s), "hinge_session_create");
    return s;
}

static void expect_format(hinge_model *m, const char *tmpl, const hinge_chat_message *msgs, size_t n, int add,
                          const char *want)
{
    size_t len = 0;
    assert_int_equal(hinge_chat_format(m, tmpl, msgs, n, add, NULL, 0, &len), HINGE_ERR_RANGE);
    assert_int_equal(len, strlen(want)); /* a size query */
    char buf[1024];
    assert_int_equal(hinge_chat_format(m, tmpl, msgs, n, add, buf, len, &len), HINGE_ERR_RANGE); /* no room for NUL */
    check(hinge_chat_format(m, tmpl, msgs, n, add, buf, sizeof buf, &len), "hinge_chat_format");
    assert_string_equal(buf, want);
    assert_int_equal(len, strlen(want));
}

/* hinge_chat(s2, msgs) on a fresh session writes what hinge_generate writes
 * from the formatted text. */
static void expect_same_as_generate(hinge_model *m, const char *tmpl, const hinge_chat_message *msgs, size_t n,
                                    int max_tokens, text *reply, hinge_stop *stop)
{
    char prompt[1024];
    size_t len;
    check(hinge_chat_format(m, tmpl, msgs, n, 1, prompt, sizeof prompt, &len), "hinge_chat_format");
    hinge_session *a = greedy_session(m, tmpl), *b = greedy_session(m, NULL);
    *reply = (text){0};
    static text t;
    t = (text){0};
    check(hinge_chat(a, msgs, n, max_tokens, on_piece, reply), "hinge_chat");
    check(hinge_generate(b, prompt, max_tokens, on_piece, &t), "hinge_generate");
    assert_true(reply->len > 0);
    assert_string_equal(reply->buf, t.buf);
    hinge_stats sa, sb;
    hinge_session_get_stats(a, &sa);
    hinge_session_get_stats(b, &sb);
    assert_int_equal(sa.prompt_tokens, sb.prompt_tokens);
    assert_int_equal(sa.generated_tokens, sb.generated_tokens);
    *stop = sa.stop;
    hinge_session_free(a);
    hinge_session_free(b);
}

static const hinge_chat_message CONV[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
};

static void test_smollm2(void **state)
{
    (void)state;
    hinge_model *m = load("HINGE_SMOLLM2_MODEL");
    if (!m)
        skip();
    /* its own template is ChatML; an override applies another */
    expect_format(m, NULL, CONV, 2, 1,
                  "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                  "<|im_start|>assistant\n");
    expect_format(m, NULL, CONV + 1, 1, 0, "<|im_start|>user\nHello<|im_end|>\n");
    expect_format(m, "llama3", CONV + 1, 1, 1,
                  "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant"
                  "<|end_header_id|>\n\n");
    /* the markers are the vocabulary's special tokens, not text */
    int32_t ids[8];
    size_t n = 0;
    check(hinge_tokenize(m, "<|im_start|><|im_end|>", 22, 0, ids, 8, &n), "hinge_tokenize");
    assert_int_equal(n, 2);
    assert_true(hinge_token_is_eog(m, ids[1]));

    text reply;
    hinge_stop stop;
    expect_same_as_generate(m, NULL, CONV, 2, 24, &reply, &stop);
    print_message("SmolLM2's reply: \"%s\" (stop %d)\n", reply.buf, (int)stop);

    /* A second turn: hinge_chat closes the first reply as ChatML does. The
     * same tokens through hinge_generate: the reply's last sampled token
     * (<|im_end|> at an end-of-turn stop, else the reply's own) is fed
     * first, then the rest of "<|im_end|>\n" and the next turn. */
    static const hinge_chat_message next[] = {{"user", "What is the capital of France?"}};
    char prompt[1024];
    size_t len;
    check(hinge_chat_format(m, NULL, next, 1, 1, prompt, sizeof prompt, &len), "hinge_chat_format");
    char second[1100];
    snprintf(second, sizeof second, "%s%s", stop == HINGE_STOP_EOG ? "\n" : "<|im_end|>\n", prompt);
    hinge_session *a = greedy_session(m, NULL), *b = greedy_session(m, NULL);
    text ta = {0}, tb = {0};
    check(hinge_chat(a, CONV, 2, 24, on_piece, &ta), "hinge_chat");
    check(hinge_chat_format(m, NULL, CONV, 2, 1, prompt, sizeof prompt, &len), "hinge_chat_format");
    check(hinge_generate(b, prompt, 24, on_piece, &tb), "hinge_generate");
    ta = tb = (text){0};
    check(hinge_chat(a, next, 1, 16, on_piece, &ta), "hinge_chat, second turn");
    check(hinge_generate(b, second, 16, on_piece, &tb), "hinge_generate, second turn");
    print_message("second reply: \"%s\"\n", ta.buf);
    assert_true(ta.len > 0);
    assert_string_equal(ta.buf, tb.buf);
    assert_int_equal(hinge_session_position(a), hinge_session_position(b));
    hinge_session_free(a);
    hinge_session_free(b);
    hinge_model_free(m);
}

static void test_gemma(void **state)
{
    (void)state;
    hinge_model *m = load("HINGE_GEMMA_MODEL");
    if (!m)
        skip();
    /* the 270M base model has no template: an error that names the overrides */
    size_t len = 0;
    char buf[512];
    assert_int_equal(hinge_chat_format(m, NULL, CONV, 2, 1, buf, sizeof buf, &len), HINGE_ERR_NOT_FOUND);
    assert_non_null(strstr(hinge_last_error(), "gemma"));
    assert_int_equal(hinge_chat_format(m, "{{ unknown jinja }}", CONV, 2, 1, buf, sizeof buf, &len),
                     HINGE_ERR_UNSUPPORTED);
    hinge_session *s = greedy_session(m, NULL);
    assert_int_equal(hinge_chat(s, CONV, 2, 4, NULL, NULL), HINGE_ERR_NOT_FOUND);
    hinge_session_free(s);
    /* Gemma's template by name, and by a template's markers */
    static const char want[] = "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
                               "<start_of_turn>model\n";
    expect_format(m, "gemma", CONV, 2, 1, want);
    expect_format(m, "{{ '<start_of_turn>' + role + '\\n' }}", CONV, 2, 1, want);
    text reply;
    hinge_stop stop;
    expect_same_as_generate(m, "gemma", CONV, 2, 8, &reply, &stop);
    print_message("Gemma 3 270M's reply: \"%s\"\n", reply.buf);
    /* bad arguments */
    static const hinge_chat_message bad[] = {{"user", NULL}};
    assert_int_equal(hinge_chat_format(m, "gemma", bad, 1, 1, buf, sizeof buf, &len), HINGE_ERR_INVALID);
    assert_int_equal(hinge_chat_format(m, "gemma", NULL, 1, 1, buf, sizeof buf, &len), HINGE_ERR_INVALID);
    assert_int_equal(hinge_chat(NULL, CONV, 2, 4, NULL, NULL), HINGE_ERR_INVALID);
    hinge_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_gemma),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
