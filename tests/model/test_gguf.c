/* Tests of model/gguf.c: files built in memory by a small writer, the real
 * model files in the shared folder, malformed inputs (each must fail with
 * the expected status and a message naming the problem), and the regression
 * corpus in tests/data/bad-gguf/. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gguf.h"
#include "quant.h"

#ifndef HINGE_SHARED_DIR
#define HINGE_SHARED_DIR "/work/shared"
#endif
#ifndef HINGE_SOURCE_DIR
#define HINGE_SOURCE_DIR "/work/main"
#endif

/* ---- a tiny GGUF writer ------------------------------------------------ */

typedef struct wbuf {
    uint8_t *p;
    size_t n;   /* bytes written */
    size_t cap; /* bytes allocated */
} wbuf;

static void w_bytes(wbuf *w, const void *d, size_t n)
{
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->n + n)
            cap *= 2;
        w->p = realloc(w->p, cap);
        assert_non_null(w->p);
        w->cap = cap;
    }
    memcpy(w->p + w->n, d, n);
    w->n += n;
}

static void w_u8(wbuf *w, uint8_t v) { w_bytes(w, &v, 1); }
static void w_u16(wbuf *w, uint16_t v) { w_bytes(w, &v, 2); }
static void w_u32(wbuf *w, uint32_t v) { w_bytes(w, &v, 4); }
static void w_u64(wbuf *w, uint64_t v) { w_bytes(w, &v, 8); }
static void w_f32(wbuf *w, float v) { w_bytes(w, &v, 4); }
static void w_f64(wbuf *w, double v) { w_bytes(w, &v, 8); }

static void w_str(wbuf *w, const char *s)
{
    w_u64(w, strlen(s));
    w_bytes(w, s, strlen(s));
}

static void w_header(wbuf *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    w_bytes(w, "GGUF", 4);
    w_u32(w, version);
    w_u64(w, n_tensors);
    w_u64(w, n_kv);
}

static void w_key(wbuf *w, const char *key, gguf_vtype t)
{
    w_str(w, key);
    w_u32(w, t);
}

static void w_kv_u32(wbuf *w, const char *key, uint32_t v)
{
    w_key(w, key, GGUF_VT_UINT32);
    w_u32(w, v);
}

static void w_kv_str(wbuf *w, const char *key, const char *v)
{
    w_key(w, key, GGUF_VT_STRING);
    w_str(w, v);
}

static void w_tensor(wbuf *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t offset)
{
    w_str(w, name);
    w_u32(w, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        w_u64(w, ne[d]);
    w_u32(w, type);
    w_u64(w, offset);
}

static void w_pad(wbuf *w, size_t align)
{
    while (w->n % align)
        w_u8(w, 0);
}

static void w_fill(wbuf *w, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        w_u8(w, (uint8_t)(seed + i));
}

/* ---- helpers ------------------------------------------------------------ */

static hinge_status open_buf(const wbuf *w, gguf_file **f, char *err)
{
    err[0] = '\0';
    return gguf_open_memory(w->p, w->n, f, err, HINGE_ERRMSG_MAX);
}

/* Opens w, which must fail with status want and a message containing each
 * of the NULL-terminated substrings. */
#define expect_fail(...) expect_fail_at(__LINE__, __VA_ARGS__)
static void expect_fail_at(int line, const wbuf *w, hinge_status want, ...)
{
    char err[HINGE_ERRMSG_MAX];
    gguf_file *f = (gguf_file *)(uintptr_t)1; /* must stay untouched */
    hinge_status s = open_buf(w, &f, err);
    if (s != want)
        fail_msg("line %d: status %d (%s), want %d; message: %s", line, s, hinge_strerror(s), want,
                 err);
    assert_ptr_equal(f, (gguf_file *)(uintptr_t)1);
    assert_true(strlen(err) > 0);
    va_list ap;
    va_start(ap, want);
    for (const char *sub; (sub = va_arg(ap, const char *));)
        if (!strstr(err, sub))
            fail_msg("line %d: message '%s' lacks '%s'", line, err, sub);
    va_end(ap);
}

static const uint64_t NE_4x2[] = {4, 2};

/* A file with one kv and the tensors given; data for them follows. */
static void w_one_tensor_file(wbuf *w, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                              uint64_t offset, size_t data_bytes)
{
    w_header(w, 3, 1, 1);
    w_kv_str(w, "general.architecture", "llama");
    w_tensor(w, "t", n_dims, ne, type, offset);
    w_pad(w, 32);
    w_fill(w, data_bytes, 7);
}

/* A small valid file: strings, an array of strings, two tensors. Its last
 * byte belongs to a tensor, so that every proper prefix is invalid. */
static void w_small_valid(wbuf *w)
{
    static const uint64_t ne_a[] = {32, 2}, ne_b[] = {8};
    w_header(w, 3, 2, 3);
    w_kv_str(w, "general.architecture", "llama");
    w_key(w, "tokenizer.ggml.tokens", GGUF_VT_ARRAY);
    w_u32(w, GGUF_VT_STRING);
    w_u64(w, 3);
    w_str(w, "a");
    w_str(w, "");
    w_str(w, "\xe2\x96\x81" "b");
    w_kv_u32(w, "llama.block_count", 1);
    w_tensor(w, "tok.weight", 2, ne_a, QT_Q8_0, 0);
    w_tensor(w, "norm.weight", 1, ne_b, QT_F32, 96);
    w_pad(w, 32);
    w_fill(w, 68, 1); /* tok: 2 rows of one q8_0 block (34 bytes) */
    w_fill(w, 28, 0); /* padding to 96 */
    w_fill(w, 32, 9); /* norm: 8 f32 */
}

/* ---- valid files -------------------------------------------------------- */

static void w_all_types(wbuf *w)
{
    static const uint64_t ne_a[] = {4, 2}, ne_b[] = {64, 1, 1, 1}, ne_c[] = {32};
    w_header(w, 3, 3, 23);
    w_key(w, "u8", GGUF_VT_UINT8), w_u8(w, 200);
    w_key(w, "i8", GGUF_VT_INT8), w_u8(w, (uint8_t)-5);
    w_key(w, "u16", GGUF_VT_UINT16), w_u16(w, 60000);
    w_key(w, "i16", GGUF_VT_INT16), w_u16(w, (uint16_t)-300);
    w_kv_u32(w, "u32", 4000000000u);
    w_key(w, "i32", GGUF_VT_INT32), w_u32(w, (uint32_t)-7);
    w_key(w, "f32", GGUF_VT_FLOAT32), w_f32(w, 1.5f);
    w_key(w, "bool", GGUF_VT_BOOL), w_u8(w, 1);
    w_kv_str(w, "str", "hello");
    w_key(w, "u64", GGUF_VT_UINT64), w_u64(w, 1ull << 40);
    w_key(w, "i64", GGUF_VT_INT64), w_u64(w, (uint64_t)-1);
    w_key(w, "f64", GGUF_VT_FLOAT64), w_f64(w, 0.25);
    w_key(w, "u64small", GGUF_VT_UINT64), w_u64(w, 12);
    w_key(w, "f64big", GGUF_VT_FLOAT64), w_f64(w, 1e300);
    w_key(w, "arr.i32", GGUF_VT_ARRAY), w_u32(w, GGUF_VT_INT32), w_u64(w, 3);
    w_u32(w, 1), w_u32(w, (uint32_t)-2), w_u32(w, 3);
    w_key(w, "arr.f32", GGUF_VT_ARRAY), w_u32(w, GGUF_VT_FLOAT32), w_u64(w, 2);
    w_f32(w, 0.5f), w_f32(w, -1.0f);
    w_key(w, "arr.bool", GGUF_VT_ARRAY), w_u32(w, GGUF_VT_BOOL), w_u64(w, 2);
    w_u8(w, 0), w_u8(w, 1);
    w_key(w, "arr.u8", GGUF_VT_ARRAY), w_u32(w, GGUF_VT_UINT8), w_u64(w, 1), w_u8(w, 9);
    w_key(w, "arr.f64", GGUF_VT_ARRAY), w_u32(w, GGUF_VT_FLOAT64), w_u64(w, 1), w_f64(w, 2.0);
    w_key(w, "arr.str", GGUF_VT_ARRAY), w_u32(w, GGUF_VT_STRING), w_u64(w, 3);
    w_str(w, "x"), w_str(w, ""), w_str(w, "zz");
    w_key(w, "arr.empty", GGUF_VT_ARRAY), w_u32(w, GGUF_VT_UINT64), w_u64(w, 0);
    w_kv_u32(w, "general.alignment", 64);
    w_key(w, "i8max", GGUF_VT_INT8), w_u8(w, 127);
    w_tensor(w, "a", 2, ne_a, QT_F32, 0);        /* 32 bytes */
    w_tensor(w, "b", 4, ne_b, QT_Q4_0, 64);      /* 2 blocks: 36 bytes */
    w_tensor(w, "c", 1, ne_c, QT_Q8_0, 128);     /* 34 bytes */
    w_pad(w, 64);
    w_fill(w, 162, 0);
}

static void test_all_value_types(void **state)
{
    (void)state;
    wbuf w = {0};
    w_all_types(&w);
    char err[HINGE_ERRMSG_MAX];
    gguf_file *f = NULL;
    assert_int_equal(open_buf(&w, &f, err), HINGE_OK);
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_kv_count(f), 23);
    assert_int_equal(gguf_file_size(f), w.n);
    assert_ptr_equal(gguf_file_bytes(f), w.p);
    uint32_t u = 0;
    assert_int_equal(gguf_get_u32(f, "u8", &u), HINGE_OK), assert_int_equal(u, 200);
    assert_int_equal(gguf_get_u32(f, "u16", &u), HINGE_OK), assert_int_equal(u, 60000);
    assert_int_equal(gguf_get_u32(f, "u32", &u), HINGE_OK), assert_int_equal(u, 4000000000u);
    assert_int_equal(gguf_get_u32(f, "u64small", &u), HINGE_OK), assert_int_equal(u, 12);
    assert_int_equal(gguf_get_u32(f, "i8max", &u), HINGE_OK), assert_int_equal(u, 127);
    u = 77;
    assert_int_equal(gguf_get_u32(f, "i8", &u), HINGE_ERR_FORMAT);    /* negative */
    assert_int_equal(gguf_get_u32(f, "i16", &u), HINGE_ERR_FORMAT);
    assert_int_equal(gguf_get_u32(f, "i32", &u), HINGE_ERR_FORMAT);
    assert_int_equal(gguf_get_u32(f, "i64", &u), HINGE_ERR_FORMAT);
    assert_int_equal(gguf_get_u32(f, "u64", &u), HINGE_ERR_FORMAT);   /* too large */
    assert_int_equal(gguf_get_u32(f, "f32", &u), HINGE_ERR_FORMAT);   /* not an integer */
    assert_int_equal(gguf_get_u32(f, "bool", &u), HINGE_ERR_FORMAT);
    assert_int_equal(gguf_get_u32(f, "nope", &u), HINGE_ERR_NOT_FOUND);
    assert_int_equal(u, 77);
    float x = 0;
    assert_int_equal(gguf_get_f32(f, "f32", &x), HINGE_OK), assert_true(x == 1.5f);
    assert_int_equal(gguf_get_f32(f, "f64", &x), HINGE_OK), assert_true(x == 0.25f);
    assert_int_equal(gguf_get_f32(f, "f64big", &x), HINGE_ERR_FORMAT);
    assert_int_equal(gguf_get_f32(f, "u32", &x), HINGE_ERR_FORMAT);
    bool b = false;
    assert_int_equal(gguf_get_bool(f, "bool", &b), HINGE_OK), assert_true(b);
    assert_int_equal(gguf_get_bool(f, "u8", &b), HINGE_ERR_FORMAT);
    gguf_str s;
    assert_int_equal(gguf_get_str(f, "str", &s), HINGE_OK);
    assert_int_equal(s.len, 5), assert_memory_equal(s.ptr, "hello", 5);
    assert_int_equal(gguf_get_str(f, "u8", &s), HINGE_ERR_FORMAT);
    gguf_close(f);
    free(w.p);
}

static void test_arrays(void **state)
{
    (void)state;
    wbuf w = {0};
    w_all_types(&w);
    char err[HINGE_ERRMSG_MAX];
    gguf_file *f = NULL;
    assert_int_equal(open_buf(&w, &f, err), HINGE_OK);
    uint64_t n = 0;
    const void *d = NULL;
    assert_int_equal(gguf_get_arr(f, "arr.i32", GGUF_VT_INT32, &n, &d), HINGE_OK);
    int32_t iv[3];
    assert_int_equal(n, 3), memcpy(iv, d, sizeof iv);
    assert_int_equal(iv[0], 1), assert_int_equal(iv[1], -2), assert_int_equal(iv[2], 3);
    assert_int_equal(gguf_get_arr(f, "arr.f32", GGUF_VT_FLOAT32, &n, &d), HINGE_OK);
    float fv[2];
    assert_int_equal(n, 2), memcpy(fv, d, sizeof fv), assert_true(fv[0] == 0.5f && fv[1] == -1.0f);
    assert_int_equal(gguf_get_arr(f, "arr.bool", GGUF_VT_BOOL, &n, &d), HINGE_OK);
    assert_int_equal(n, 2), assert_int_equal(((const uint8_t *)d)[1], 1);
    assert_int_equal(gguf_get_arr(f, "arr.u8", GGUF_VT_UINT8, &n, &d), HINGE_OK);
    assert_int_equal(n, 1), assert_int_equal(*(const uint8_t *)d, 9);
    assert_int_equal(gguf_get_arr(f, "arr.f64", GGUF_VT_FLOAT64, &n, &d), HINGE_OK);
    assert_int_equal(gguf_get_arr(f, "arr.empty", GGUF_VT_UINT64, &n, &d), HINGE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(gguf_get_arr(f, "arr.i32", GGUF_VT_UINT32, &n, &d), HINGE_ERR_FORMAT);
    assert_int_equal(gguf_get_arr(f, "u32", GGUF_VT_UINT32, &n, &d), HINGE_ERR_FORMAT);
    assert_int_equal(gguf_get_arr(f, "arr.str", GGUF_VT_STRING, &n, &d), HINGE_ERR_INVALID);
    assert_int_equal(gguf_get_arr(f, "none", GGUF_VT_UINT8, &n, &d), HINGE_ERR_NOT_FOUND);
    gguf_str strs[3];
    assert_int_equal(gguf_get_strs(f, "arr.str", strs, 3, &n), HINGE_OK);
    assert_int_equal(n, 3);
    assert_int_equal(strs[0].len, 1), assert_memory_equal(strs[0].ptr, "x", 1);
    assert_int_equal(strs[1].len, 0);
    assert_int_equal(strs[2].len, 2), assert_memory_equal(strs[2].ptr, "zz", 2);
    memset(strs, 0, sizeof strs);
    assert_int_equal(gguf_get_strs(f, "arr.str", strs, 1, &n), HINGE_ERR_RANGE);
    assert_int_equal(n, 3), assert_int_equal(strs[0].len, 1), assert_null(strs[1].ptr);
    assert_int_equal(gguf_get_strs(f, "arr.str", NULL, 0, &n), HINGE_ERR_RANGE);
    assert_int_equal(gguf_get_strs(f, "arr.i32", strs, 3, &n), HINGE_ERR_FORMAT);
    const gguf_kv *kv = gguf_find_kv(f, "arr.str");
    assert_non_null(kv);
    assert_int_equal(kv->type, GGUF_VT_ARRAY), assert_int_equal(kv->arr_type, GGUF_VT_STRING);
    assert_int_equal(kv->arr_n, 3);
    assert_ptr_equal(gguf_kv_at(f, 0)->key.ptr + 0, gguf_find_kv(f, "u8")->key.ptr);
    assert_null(gguf_kv_at(f, 23));
    assert_null(gguf_find_kv(f, "arr"));
    gguf_close(f);
    free(w.p);
}

static void test_tensors_and_alignment(void **state)
{
    (void)state;
    wbuf w = {0};
    w_all_types(&w);
    char err[HINGE_ERRMSG_MAX];
    gguf_file *f = NULL;
    assert_int_equal(open_buf(&w, &f, err), HINGE_OK);
    assert_int_equal(gguf_tensor_count(f), 3);
    const gguf_tensor *a = gguf_find_tensor(f, "a"), *b = gguf_find_tensor(f, "b"),
                      *c = gguf_find_tensor(f, "c");
    assert_non_null(a), assert_non_null(b), assert_non_null(c);
    assert_null(gguf_find_tensor(f, "d"));
    assert_ptr_equal(gguf_tensor_at(f, 1), b);
    assert_null(gguf_tensor_at(f, 3));
    assert_int_equal(a->n_dims, 2), assert_int_equal(a->ne[1], 2), assert_int_equal(a->ne[3], 1);
    assert_int_equal(a->nbytes, 32), assert_int_equal(b->nbytes, 36), assert_int_equal(c->nbytes, 34);
    assert_int_equal(b->type, QT_Q4_0), assert_int_equal(b->n_dims, 4);
    size_t start = (size_t)((const uint8_t *)a->data - w.p);
    assert_int_equal(start % 64, 0);          /* general.alignment = 64 */
    assert_true(start > 0 && start < w.n);
    assert_ptr_equal((const uint8_t *)b->data, (const uint8_t *)a->data + 64);
    assert_ptr_equal((const uint8_t *)c->data, (const uint8_t *)a->data + 128);
    assert_int_equal(*(const uint8_t *)a->data, 0);
    assert_int_equal(*(const uint8_t *)c->data, 128);
    gguf_close(f);
    free(w.p);
}

static void test_version2_and_no_tensors(void **state)
{
    (void)state;
    wbuf w = {0};
    w_header(&w, 2, 0, 1);
    w_kv_str(&w, "general.name", "v2"); /* no padding, no data section */
    char err[HINGE_ERRMSG_MAX];
    gguf_file *f = NULL;
    assert_int_equal(open_buf(&w, &f, err), HINGE_OK);
    assert_int_equal(gguf_version(f), 2);
    assert_int_equal(gguf_tensor_count(f), 0);
    gguf_close(f);
    free(w.p);

    w = (wbuf){0};
    w_header(&w, 3, 0, 0);
    assert_int_equal(open_buf(&w, &f, err), HINGE_OK);
    assert_int_equal(gguf_kv_count(f), 0);
    assert_null(gguf_find_kv(f, "x"));
    gguf_close(f);
    free(w.p);
    gguf_close(NULL);
}

/* ---- the real files ----------------------------------------------------- */

static void check_tensors_in_file(const gguf_file *f)
{
    size_t size = gguf_file_size(f);
    const uint8_t *base = gguf_file_bytes(f);
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        assert_ptr_equal(gguf_find_tensor(f, t->name), t);
        size_t at = (size_t)((const uint8_t *)t->data - base);
        assert_true(at + t->nbytes <= size);
        assert_int_equal(at % 32, 0);
        uint64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
        assert_int_equal(t->nbytes, quant_row_bytes(t->type, t->ne[0]) * rows);
    }
}

static void test_stories260k(void **state)
{
    (void)state;
    char err[HINGE_ERRMSG_MAX] = "";
    gguf_file *f = NULL;
    hinge_status s = gguf_open(HINGE_SHARED_DIR "/models/stories260K.gguf", &f, err, sizeof err);
    if (s)
        fail_msg("%s", err);
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_tensor_count(f), 48);
    assert_int_equal(gguf_kv_count(f), 19);
    assert_int_equal(gguf_file_size(f), 1185376);
    gguf_str arch;
    assert_int_equal(gguf_get_str(f, "general.architecture", &arch), HINGE_OK);
    assert_int_equal(arch.len, 5), assert_memory_equal(arch.ptr, "llama", 5);
    uint32_t v;
    assert_int_equal(gguf_get_u32(f, "llama.block_count", &v), HINGE_OK), assert_int_equal(v, 5);
    assert_int_equal(gguf_get_u32(f, "llama.embedding_length", &v), HINGE_OK), assert_int_equal(v, 64);
    float eps;
    assert_int_equal(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps), HINGE_OK);
    assert_float_equal(eps, 1e-5f, 1e-12f);
    uint64_t n;
    assert_int_equal(gguf_get_strs(f, "tokenizer.ggml.tokens", NULL, 0, &n), HINGE_ERR_RANGE);
    assert_int_equal(n, 512);
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, QT_F32), assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 64), assert_int_equal(t->ne[1], 512), assert_int_equal(t->nbytes, 131072);
    for (size_t i = 0; i < gguf_tensor_count(f); i++)
        assert_int_equal(gguf_tensor_at(f, i)->type, QT_F32);
    assert_non_null(gguf_find_tensor(f, "blk.4.ffn_down.weight"));
    check_tensors_in_file(f);
    gguf_close(f);
}

static void test_vocab_file(void **state)
{
    (void)state;
    char err[HINGE_ERRMSG_MAX] = "";
    gguf_file *f = NULL;
    hinge_status s = gguf_open(HINGE_SHARED_DIR "/models/vocab-llama-spm.gguf", &f, err, sizeof err);
    if (s)
        fail_msg("%s", err);
    assert_int_equal(gguf_tensor_count(f), 0);
    assert_int_equal(gguf_kv_count(f), 22);
    uint64_t n;
    const void *d;
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, &n, &d), HINGE_OK);
    assert_int_equal(n, 32000);
    gguf_str *toks = calloc(32000, sizeof *toks);
    assert_non_null(toks);
    assert_int_equal(gguf_get_strs(f, "tokenizer.ggml.tokens", toks, 32000, &n), HINGE_OK);
    assert_int_equal(toks[1].len, 3), assert_memory_equal(toks[1].ptr, "<s>", 3);
    assert_int_equal(toks[3].len, 6), assert_memory_equal(toks[3].ptr, "<0x00>", 6);
    free(toks);
    bool b = false;
    assert_int_equal(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b), HINGE_OK), assert_true(b);
    gguf_close(f);
}

/* The default model, when the machine has it: a quantized file. */
static void test_gemma_if_present(void **state)
{
    (void)state;
    const char *path = getenv("HINGE_GEMMA_MODEL");
    char buf[512];
    if (!path) {
        snprintf(buf, sizeof buf, "%s/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf",
                 getenv("HOME") ? getenv("HOME") : "");
        path = buf;
    }
    if (access(path, R_OK) != 0)
        skip();
    char err[HINGE_ERRMSG_MAX] = "";
    gguf_file *f = NULL;
    if (gguf_open(path, &f, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(gguf_tensor_count(f), 236);
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 640), assert_int_equal(t->ne[1], 262144);
    check_tensors_in_file(f);
    gguf_close(f);
}

static void test_io_errors(void **state)
{
    (void)state;
    char err[HINGE_ERRMSG_MAX] = "";
    gguf_file *f = NULL;
    assert_int_equal(gguf_open("/nonexistent/x.gguf", &f, err, sizeof err), HINGE_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/x.gguf"));
    assert_int_equal(gguf_open(HINGE_SHARED_DIR, &f, err, sizeof err), HINGE_ERR_IO);
    assert_non_null(strstr(err, "not a regular file"));
    char path[] = "/tmp/hinge-test-gguf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(gguf_open(path, &f, err, sizeof err), HINGE_ERR_FORMAT); /* empty */
    assert_non_null(strstr(err, "0 bytes"));
    unlink(path);
    assert_null(f);
    assert_int_equal(gguf_open(NULL, &f, err, sizeof err), HINGE_ERR_INVALID);
    assert_int_equal(gguf_open_memory(NULL, 5, &f, err, sizeof err), HINGE_ERR_INVALID);
    assert_int_equal(gguf_open_memory("GGUF", 4, NULL, err, sizeof err), HINGE_ERR_INVALID);
    assert_int_equal(gguf_open_memory(NULL, 0, &f, NULL, 0), HINGE_ERR_FORMAT);
    /* the file-level accessors accept NULL */
    assert_int_equal(gguf_kv_count(NULL), 0);
    assert_null(gguf_find_tensor(NULL, "x"));
    uint32_t v;
    assert_int_equal(gguf_get_u32(NULL, "x", &v), HINGE_ERR_INVALID);
}

/* ---- malformed inputs --------------------------------------------------- */

static void test_every_prefix_fails(void **state)
{
    (void)state;
    wbuf w = {0};
    w_small_valid(&w);
    char err[HINGE_ERRMSG_MAX];
    gguf_file *f = NULL;
    assert_int_equal(open_buf(&w, &f, err), HINGE_OK);
    gguf_close(f);
    for (size_t len = 0; len < w.n; len++) {
        wbuf p = {.p = w.p, .n = len, .cap = w.n};
        f = NULL;
        hinge_status s = open_buf(&p, &f, err);
        if (s != HINGE_ERR_FORMAT)
            fail_msg("prefix of %zu bytes: status %d (%s)", len, s, err);
        assert_null(f);
        assert_true(strlen(err) > 0);
    }
    /* the same prefixes from a heap copy of exactly that size (for ASan) */
    for (size_t len = 0; len < w.n; len += 7) {
        uint8_t *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, w.p, len);
        assert_int_equal(gguf_open_memory(copy, len, &f, err, sizeof err), HINGE_ERR_FORMAT);
        free(copy);
    }
    free(w.p);
}

static void test_bad_header(void **state)
{
    (void)state;
    wbuf w = {0};
    w_bytes(&w, "GGML", 4), w_u32(&w, 3), w_u64(&w, 0), w_u64(&w, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "magic", "47 47 4d 4c", NULL);
    w.n = 0, w_header(&w, 1, 0, 0);
    expect_fail(&w, HINGE_ERR_UNSUPPORTED, "version 1", NULL);
    w.n = 0, w_header(&w, 4, 0, 0);
    expect_fail(&w, HINGE_ERR_UNSUPPORTED, "version 4", NULL);
    w.n = 0, w_header(&w, 0x03000000, 0, 0); /* big-endian file */
    expect_fail(&w, HINGE_ERR_UNSUPPORTED, "version", NULL);
    w.n = 0, w_header(&w, 3, 1ull << 60, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "1152921504606846976 tensors", NULL);
    w.n = 0, w_header(&w, 3, 0, 1ull << 60);
    expect_fail(&w, HINGE_ERR_FORMAT, "1152921504606846976 kvs", NULL);
    w.n = 0, w_header(&w, 3, 1000, 1000); /* under the caps, over the file */
    expect_fail(&w, HINGE_ERR_FORMAT, "need at least 45000 bytes", NULL);
    w.n = 0, w_bytes(&w, "GGUF\x03\0\0", 7);
    expect_fail(&w, HINGE_ERR_FORMAT, "version", "byte offset 4", NULL);
    free(w.p);
}

static void test_bad_strings(void **state)
{
    (void)state;
    wbuf w = {0};
    w_header(&w, 3, 0, 1);
    w_u64(&w, UINT64_MAX), w_bytes(&w, "general.name_and_more_bytes", 27);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 0", "key", "byte offset 24",
                "length 18446744073709551615", "only 27 bytes left", NULL);
    w.n = 0, w_header(&w, 3, 0, 2);
    w_kv_u32(&w, "a", 1);
    w_key(&w, "general.name", GGUF_VT_STRING), w_u64(&w, 1000), w_bytes(&w, "abc", 3);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 1 'general.name'", "length 1000", "only 3 bytes left", NULL);
    w.n = 0, w_header(&w, 3, 0, 1);
    w_key(&w, "tokenizer.ggml.tokens", GGUF_VT_ARRAY), w_u32(&w, GGUF_VT_STRING), w_u64(&w, 3);
    w_str(&w, "a"), w_u64(&w, 1ull << 62), w_bytes(&w, "12345678", 8);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 0 'tokenizer.ggml.tokens'", "string 1 at byte offset",
                "length 4611686018427387904", NULL);
    w.n = 0, w_header(&w, 3, 0, 1);
    w_u64(&w, 0), w_u32(&w, GGUF_VT_UINT8), w_u8(&w, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 0", "empty or has a NUL byte", NULL);
    w.n = 0, w_header(&w, 3, 0, 1);
    w_u64(&w, 3), w_bytes(&w, "a\0b", 3), w_u32(&w, GGUF_VT_UINT8), w_u8(&w, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 0 'a?b'", "NUL byte", NULL);
    free(w.p);
}

static void test_bad_values(void **state)
{
    (void)state;
    wbuf w = {0};
    w_header(&w, 3, 0, 1), w_key(&w, "k", 13), w_u32(&w, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 0 'k'", "unknown value type 13", NULL);
    w.n = 0, w_header(&w, 3, 0, 1), w_key(&w, "b", GGUF_VT_BOOL), w_u8(&w, 2);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 0 'b'", "must be 0 or 1", NULL);
    w.n = 0, w_header(&w, 3, 0, 1), w_key(&w, "ab", GGUF_VT_ARRAY), w_u32(&w, GGUF_VT_BOOL);
    w_u64(&w, 3), w_u8(&w, 0), w_u8(&w, 1), w_u8(&w, 7);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 0 'ab'", "bool 2", NULL);
    w.n = 0, w_header(&w, 3, 0, 1), w_key(&w, "arr", GGUF_VT_ARRAY), w_u32(&w, 99), w_u64(&w, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "unknown array element type 99", NULL);
    w.n = 0, w_header(&w, 3, 0, 1), w_key(&w, "nest", GGUF_VT_ARRAY), w_u32(&w, GGUF_VT_ARRAY);
    w_u64(&w, 1), w_u32(&w, GGUF_VT_UINT8), w_u64(&w, 0);
    expect_fail(&w, HINGE_ERR_UNSUPPORTED, "kv 0 'nest'", "nested array", NULL);
    w.n = 0, w_header(&w, 3, 0, 1), w_key(&w, "big", GGUF_VT_ARRAY), w_u32(&w, GGUF_VT_UINT32);
    w_u64(&w, 1ull << 60), w_u32(&w, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 0 'big'", "array count 1152921504606846976", NULL);
    w.n = 0, w_header(&w, 3, 0, 1), w_key(&w, "strs", GGUF_VT_ARRAY), w_u32(&w, GGUF_VT_STRING);
    w_u64(&w, 3), w_str(&w, "");
    expect_fail(&w, HINGE_ERR_FORMAT, "array count 3", NULL);
    w.n = 0, w_header(&w, 3, 0, 1), w_key(&w, "f64", GGUF_VT_FLOAT64), w_u32(&w, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 0 'f64'", "needs 8 bytes, only 4 left", NULL);
    w.n = 0, w_header(&w, 3, 0, 2), w_kv_u32(&w, "dup", 1), w_kv_u32(&w, "dup", 2);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 1 'dup'", "duplicate key", "kv 0", NULL);
    w.n = 0, w_header(&w, 3, 0, 1), w_key(&w, "bad\x1b[31m", 77);
    expect_fail(&w, HINGE_ERR_FORMAT, "kv 0 'bad?[31m'", NULL); /* no escapes in messages */
    free(w.p);
}

static void test_bad_alignment(void **state)
{
    (void)state;
    static const uint32_t bad[] = {0, 3, 48, 0x80000001u};
    wbuf w = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        w.n = 0, w_header(&w, 3, 0, 1), w_kv_u32(&w, "general.alignment", bad[i]);
        expect_fail(&w, HINGE_ERR_FORMAT, "general.alignment", "power of two", NULL);
    }
    w.n = 0, w_header(&w, 3, 0, 1), w_key(&w, "general.alignment", GGUF_VT_UINT64), w_u64(&w, 32);
    expect_fail(&w, HINGE_ERR_FORMAT, "general.alignment", "must be uint32", NULL);
    free(w.p);
}

static void test_bad_tensor_shapes(void **state)
{
    (void)state;
    static const uint64_t ne5[] = {4, 1, 1, 1, 1}, ne_q[] = {33, 1}, ne_big[] = {1ull << 32, 1ull << 32},
                          ne_bytes[] = {1ull << 62}, ne_zero[] = {4, 0};
    wbuf w = {0};
    w_one_tensor_file(&w, 0, ne5, QT_F32, 0, 16);
    expect_fail(&w, HINGE_ERR_FORMAT, "tensor 0 't'", "n_dims 0", NULL);
    w.n = 0, w_one_tensor_file(&w, 5, ne5, QT_F32, 0, 16);
    expect_fail(&w, HINGE_ERR_FORMAT, "tensor 0 't'", "n_dims 5", NULL);
    w.n = 0, w_one_tensor_file(&w, 2, NE_4x2, 99, 0, 32);
    expect_fail(&w, HINGE_ERR_UNSUPPORTED, "tensor 0 't'", "type 99", NULL);
    w.n = 0, w_one_tensor_file(&w, 2, NE_4x2, 16 /* iq2_xxs: ggml has it, hinge not */, 0, 32);
    expect_fail(&w, HINGE_ERR_UNSUPPORTED, "type 16", NULL);
    w.n = 0, w_one_tensor_file(&w, 2, ne_q, QT_Q4_0, 0, 64);
    expect_fail(&w, HINGE_ERR_FORMAT, "ne[0] = 33", "multiple", "q4_0", NULL);
    w.n = 0, w_one_tensor_file(&w, 2, ne_big, QT_F32, 0, 16);
    expect_fail(&w, HINGE_ERR_FORMAT, "element count overflows", NULL);
    w.n = 0, w_one_tensor_file(&w, 1, ne_bytes, QT_F32, 0, 16);
    expect_fail(&w, HINGE_ERR_FORMAT, "byte size", "overflows", NULL);
    w.n = 0, w_one_tensor_file(&w, 2, ne_zero, QT_F32, 0, 16);
    expect_fail(&w, HINGE_ERR_FORMAT, "ne[1] is 0", NULL);
    free(w.p);
}

static void test_bad_tensor_names(void **state)
{
    (void)state;
    char longname[GGUF_NAME_MAX + 1];
    memset(longname, 'n', GGUF_NAME_MAX);
    longname[GGUF_NAME_MAX] = '\0';
    wbuf w = {0};
    w_header(&w, 3, 1, 0), w_tensor(&w, longname, 2, NE_4x2, QT_F32, 0), w_pad(&w, 32), w_fill(&w, 32, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "tensor 0", "length 64", NULL);
    longname[GGUF_NAME_MAX - 1] = '\0'; /* 63 bytes: the longest allowed */
    w.n = 0, w_header(&w, 3, 1, 0), w_tensor(&w, longname, 2, NE_4x2, QT_F32, 0), w_pad(&w, 32);
    w_fill(&w, 32, 0);
    char err[HINGE_ERRMSG_MAX];
    gguf_file *f = NULL;
    assert_int_equal(open_buf(&w, &f, err), HINGE_OK);
    assert_non_null(gguf_find_tensor(f, longname));
    gguf_close(f);
    w.n = 0, w_header(&w, 3, 1, 0), w_tensor(&w, "", 2, NE_4x2, QT_F32, 0), w_pad(&w, 32), w_fill(&w, 32, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "tensor 0", "length 0", NULL);
    w.n = 0, w_header(&w, 3, 2, 0);
    w_tensor(&w, "same", 2, NE_4x2, QT_F32, 0), w_tensor(&w, "same", 2, NE_4x2, QT_F32, 32);
    w_pad(&w, 32), w_fill(&w, 64, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "tensor 1 'same'", "duplicate name", NULL);
    w.n = 0, w_header(&w, 3, 1, 0);
    w_u64(&w, 3), w_bytes(&w, "a\0b", 3), w_u32(&w, 1), w_u64(&w, 4), w_u32(&w, QT_F32), w_u64(&w, 0);
    w_pad(&w, 32), w_fill(&w, 16, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "NUL", NULL);
    free(w.p);
}

static void test_bad_tensor_placement(void **state)
{
    (void)state;
    wbuf w = {0};
    w_one_tensor_file(&w, 2, NE_4x2, QT_F32, 4, 64);
    expect_fail(&w, HINGE_ERR_FORMAT, "tensor 't'", "offset 4", "alignment 32", NULL);
    w.n = 0, w_one_tensor_file(&w, 2, NE_4x2, QT_F32, 0, 31);
    expect_fail(&w, HINGE_ERR_FORMAT, "tensor 't'", "past end of file", NULL);
    w.n = 0, w_one_tensor_file(&w, 2, NE_4x2, QT_F32, 1ull << 63, 32);
    expect_fail(&w, HINGE_ERR_FORMAT, "tensor 't'", "past end of file", NULL);
    w.n = 0, w_one_tensor_file(&w, 2, NE_4x2, QT_F32, UINT64_MAX - 31, 32);
    expect_fail(&w, HINGE_ERR_FORMAT, "tensor 't'", "past end of file", NULL);
    w.n = 0, w_one_tensor_file(&w, 2, NE_4x2, QT_F32, 0, 32);
    char err[HINGE_ERRMSG_MAX];
    gguf_file *f = NULL;
    assert_int_equal(open_buf(&w, &f, err), HINGE_OK); /* ends exactly at the tensor's end */
    gguf_close(f);
    static const uint64_t ne_a[] = {16}, ne_b[] = {8};
    w.n = 0, w_header(&w, 3, 3, 0);
    w_tensor(&w, "x", 1, ne_b, QT_F32, 128), w_tensor(&w, "a", 1, ne_a, QT_F32, 0);
    w_tensor(&w, "b", 1, ne_b, QT_F32, 32); /* a is [0, 64): b starts inside it */
    w_pad(&w, 32), w_fill(&w, 160, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "'a'", "'b'", "overlap", NULL);
    w.n = 0, w_header(&w, 3, 2, 0);
    w_tensor(&w, "a", 1, ne_b, QT_F32, 0), w_tensor(&w, "b", 1, ne_b, QT_F32, 0); /* same range */
    w_pad(&w, 32), w_fill(&w, 32, 0);
    expect_fail(&w, HINGE_ERR_FORMAT, "overlap", NULL);
    free(w.p);
}

/* ---- the regression corpus ---------------------------------------------- */

static void test_bad_gguf_corpus(void **state)
{
    (void)state;
    const char *dir = HINGE_SOURCE_DIR "/tests/data/bad-gguf";
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s", dir);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".gguf") != 0)
            continue;
        char path[1024], err[HINGE_ERRMSG_MAX] = "";
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        gguf_file *f = NULL;
        hinge_status s = gguf_open(path, &f, err, sizeof err);
        if (s == HINGE_OK || s == HINGE_ERR_IO || err[0] == '\0')
            fail_msg("%s: status %d, message '%s'", e->d_name, s, err);
        assert_null(f);
        n++;
    }
    closedir(d);
    assert_true(n >= 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_value_types),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_tensors_and_alignment),
        cmocka_unit_test(test_version2_and_no_tensors),
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_vocab_file),
        cmocka_unit_test(test_gemma_if_present),
        cmocka_unit_test(test_io_errors),
        cmocka_unit_test(test_every_prefix_fails),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_bad_alignment),
        cmocka_unit_test(test_bad_tensor_shapes),
        cmocka_unit_test(test_bad_tensor_names),
        cmocka_unit_test(test_bad_tensor_placement),
        cmocka_unit_test(test_bad_gguf_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
