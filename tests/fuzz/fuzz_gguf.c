/* libFuzzer harness for model/gguf.c: opens the input as a GGUF file in
 * memory, then reads everything the accessors hand out, so that the
 * sanitizers see any pointer or length that validation let through.
 * Build and run with scripts/fuzz. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Sums n bytes at p: touches each one, so ASan checks the range. */
static unsigned touch(const void *p, size_t n)
{
    const volatile uint8_t *b = p;
    unsigned s = 0;
    for (size_t i = 0; i < n; i++)
        s += b[i];
    return s;
}

static void inside(const gguf_file *f, const void *p, size_t n)
{
    const uint8_t *base = gguf_file_bytes(f), *q = p;
    if (q < base || q > base + gguf_file_size(f) || n > (size_t)(base + gguf_file_size(f) - q))
        __builtin_trap();
}

static void walk_strings(const gguf_file *f, const char *key, uint64_t count)
{
    gguf_str few[8];
    uint64_t n = 0;
    hinge_status s = gguf_get_strs(f, key, few, 8, &n);
    if ((s != HINGE_OK && s != HINGE_ERR_RANGE) || n != count)
        __builtin_trap();
    for (uint64_t i = 0; i < n && i < 8; i++) {
        inside(f, few[i].ptr, (size_t)few[i].len);
        touch(few[i].ptr, (size_t)few[i].len);
    }
}

static void walk_value(const gguf_file *f, const gguf_kv *kv, const char *key)
{
    uint32_t u;
    float x;
    bool b;
    gguf_str str;
    uint64_t n;
    const void *d;
    gguf_get_u32(f, key, &u);
    gguf_get_f32(f, key, &x);
    gguf_get_bool(f, key, &b);
    if (gguf_get_str(f, key, &str) == HINGE_OK) {
        inside(f, str.ptr, (size_t)str.len);
        touch(str.ptr, (size_t)str.len);
    }
    if (kv->type != GGUF_VT_ARRAY)
        return;
    if (kv->arr_type == GGUF_VT_STRING) {
        walk_strings(f, key, kv->arr_n);
        return;
    }
    static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (gguf_get_arr(f, key, kv->arr_type, &n, &d) == HINGE_OK) {
        inside(f, d, (size_t)n * sizes[kv->arr_type]);
        touch(d, (size_t)n * sizes[kv->arr_type]);
    }
}

static void walk_kv(const gguf_file *f, const gguf_kv *kv)
{
    inside(f, kv->key.ptr, (size_t)kv->key.len);
    char *key = malloc((size_t)kv->key.len + 1);
    if (!key)
        __builtin_trap();
    memcpy(key, kv->key.ptr, (size_t)kv->key.len);
    key[kv->key.len] = '\0';
    if (strlen(key) != kv->key.len || gguf_find_kv(f, key) != kv)
        __builtin_trap(); /* keys are unique and free of NUL bytes */
    walk_value(f, kv, key);
    free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[HINGE_ERRMSG_MAX] = "";
    gguf_file *f = NULL;
    if (gguf_open_memory(data, size, &f, err, sizeof err) != HINGE_OK) {
        if (err[0] == '\0' || f != NULL)
            __builtin_trap(); /* every failure must say why */
        return 0;
    }
    gguf_version(f);
    for (size_t i = 0; i < gguf_kv_count(f); i++)
        walk_kv(f, gguf_kv_at(f, i));
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (gguf_find_tensor(f, t->name) != t || t->nbytes == 0)
            __builtin_trap();
        inside(f, t->data, t->nbytes);
        touch(t->data, 1);
        touch((const uint8_t *)t->data + t->nbytes - 1, 1);
    }
    gguf_close(f);
    return 0;
}
