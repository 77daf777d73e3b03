/* Tests of model/chat.c: each template's text for llama.cpp's test
 * conversation (the expected strings are those of llama.cpp's
 * tests/test-chat-template.cpp), detection from the markers of real
 * templates (the shared Qwen 2 vocabulary's, and SmolLM2's when fetched; the
 * Gemma 3 270M base model has none), overrides, and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "gguf.h"

#ifndef HINGE_SHARED_DIR
#define HINGE_SHARED_DIR "/work/shared"
#endif

static const chat_msg CONV[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
enum { N_CONV = sizeof CONV / sizeof CONV[0] };

static void expect_text(chat_kind k, const chat_msg *m, size_t n, bool add, const char *want)
{
    char buf[2048];
    size_t len = 0;
    assert_int_equal(chat_format(k, m, n, add, buf, sizeof buf, &len), HINGE_OK);
    assert_int_equal(len, strlen(want));
    assert_string_equal(buf, want);
}

static void test_formats(void **state)
{
    (void)state;
    expect_text(CHAT_CHATML, CONV, N_CONV, true,
                "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
                "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother "
                "question<|im_end|>\n<|im_start|>assistant\n");
    expect_text(CHAT_LLAMA3, CONV, N_CONV, true,
                "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant"
                "<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are "
                "you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>"
                "assistant<|end_header_id|>\n\n");
    expect_text(CHAT_GEMMA, CONV, N_CONV, true,
                "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\n"
                "Hi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n"
                "I am an assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n"
                "<start_of_turn>model\n");
    expect_text(CHAT_PHI3, CONV, N_CONV, true,
                "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi "
                "there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n"
                "<|user|>\nAnother question<|end|>\n<|assistant|>\n");
    /* without the assistant's opening; no messages at all */
    expect_text(CHAT_CHATML, CONV + 1, 1, false, "<|im_start|>user\nHello<|im_end|>\n");
    expect_text(CHAT_CHATML, NULL, 0, true, "<|im_start|>assistant\n");
    /* Gemma: a system message after the first turn opens the next user turn */
    static const chat_msg late[] = {{"user", "a"}, {"system", " s "}, {"assistant", "b"}, {"user", "c"}};
    expect_text(CHAT_GEMMA, late, 4, false,
                "<start_of_turn>user\na<end_of_turn>\n<start_of_turn>model\nb<end_of_turn>\n"
                "<start_of_turn>user\ns\n\nc<end_of_turn>\n");
    static const chat_msg blank[] = {{"system", "  \n"}, {"user", "a"}};
    expect_text(CHAT_GEMMA, blank, 2, false, "<start_of_turn>user\na<end_of_turn>\n");
    assert_string_equal(chat_turn_end(CHAT_CHATML), "<|im_end|>\n");
    assert_string_equal(chat_turn_end(CHAT_UNKNOWN), "");
}

static void test_sizes_and_errors(void **state)
{
    (void)state;
    char buf[64];
    size_t len = 0, need = 0;
    assert_int_equal(chat_format(CHAT_CHATML, CONV, N_CONV, true, NULL, 0, &need), HINGE_ERR_RANGE);
    assert_true(need > 100);
    assert_int_equal(chat_format(CHAT_CHATML, CONV, N_CONV, true, buf, 16, &len), HINGE_ERR_RANGE);
    assert_int_equal(len, need);
    assert_memory_equal(buf, "<|im_start|>syst", 16); /* what fits is written */
    assert_int_equal(chat_format(CHAT_CHATML, CONV + 1, 1, false, buf, 33, &len), HINGE_ERR_RANGE); /* no room for NUL */
    static const chat_msg bad[] = {{"user", NULL}};
    assert_int_equal(chat_format(CHAT_CHATML, bad, 1, true, buf, sizeof buf, &len), HINGE_ERR_INVALID);
    assert_int_equal(chat_format(CHAT_UNKNOWN, CONV, 1, true, buf, sizeof buf, &len), HINGE_ERR_INVALID);
    assert_int_equal(chat_format(CHAT_CHATML, NULL, 1, true, buf, sizeof buf, &len), HINGE_ERR_INVALID);
}

static void test_detect(void **state)
{
    (void)state;
    static const char llama3[] = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set "
                                 "content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
                                 "+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}";
    static const char phi3[] = "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\\n' + "
                               "message['content'] + '<|end|>\\n' }}{% endfor %}{{ '<|assistant|>\\n' }}";
    static const char gemma[] = "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + "
                                "'\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}";
    static const char phi4[] = "{% for m in messages %}<|im_start|>{{ m['role'] }}<|im_sep|>{% endfor %}";
    static const char mistral[] = "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]";
    assert_int_equal(chat_detect(llama3, strlen(llama3)), CHAT_LLAMA3);
    assert_int_equal(chat_detect(phi3, strlen(phi3)), CHAT_PHI3);
    assert_int_equal(chat_detect(gemma, strlen(gemma)), CHAT_GEMMA);
    assert_int_equal(chat_detect(phi4, strlen(phi4)), CHAT_UNKNOWN);
    assert_int_equal(chat_detect(mistral, strlen(mistral)), CHAT_UNKNOWN);
    assert_int_equal(chat_detect("", 0), CHAT_UNKNOWN);
    assert_int_equal(chat_detect(NULL, 0), CHAT_UNKNOWN);
    assert_int_equal(chat_from_name("llama3"), CHAT_LLAMA3);
    assert_int_equal(chat_from_name("chatml"), CHAT_CHATML);
    assert_int_equal(chat_from_name("jinja"), CHAT_UNKNOWN);
    assert_string_equal(chat_name(CHAT_GEMMA), "gemma");
    assert_string_equal(chat_name(CHAT_UNKNOWN), "unknown");
}

static void expect_model(const char *path, chat_kind want)
{
    gguf_file *f;
    char err[HINGE_ERRMSG_MAX];
    if (gguf_open(path, &f, err, sizeof err))
        fail_msg("%s: %s", path, err);
    chat_kind k = CHAT_UNKNOWN;
    assert_int_equal(chat_for_model(f, NULL, &k, err, sizeof err), HINGE_OK);
    assert_int_equal(k, want);
    assert_int_equal(chat_for_model(f, "phi3", &k, err, sizeof err), HINGE_OK);
    assert_int_equal(k, CHAT_PHI3);
    gguf_close(f);
}

static void test_models(void **state)
{
    (void)state;
    expect_model(HINGE_SHARED_DIR "/models/vocab-qwen2.gguf", CHAT_CHATML);
    char path[1024];
    const char *home = getenv("HOME") ? getenv("HOME") : "";
    snprintf(path, sizeof path, "%s/.cache/hinge/models/SmolLM2-135M-Instruct.Q4_1.gguf", home);
    if (access(path, R_OK) == 0)
        expect_model(path, CHAT_CHATML);
    /* no template: an error that names the overrides, which still work */
    gguf_file *f;
    char err[HINGE_ERRMSG_MAX];
    assert_int_equal(gguf_open(HINGE_SHARED_DIR "/models/vocab-gpt-2.gguf", &f, err, sizeof err), HINGE_OK);
    chat_kind k = CHAT_UNKNOWN;
    assert_int_equal(chat_for_model(f, NULL, &k, err, sizeof err), HINGE_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "chatml"));
    assert_int_equal(chat_for_model(f, "gemma", &k, err, sizeof err), HINGE_OK);
    assert_int_equal(k, CHAT_GEMMA);
    assert_int_equal(chat_for_model(f, "<|im_start|>{{ role }}", &k, err, sizeof err), HINGE_OK);
    assert_int_equal(k, CHAT_CHATML);
    assert_int_equal(chat_for_model(f, "vicuna", &k, err, sizeof err), HINGE_ERR_UNSUPPORTED);
    assert_non_null(strstr(err, "vicuna"));
    gguf_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_sizes_and_errors),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
