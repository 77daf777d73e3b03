/* hinge: GGUF v3 reader.
 *
 * The file is mmapped read-only. gguf_open validates everything before it
 * returns: every string length, array count, tensor shape, type, offset and
 * alignment is checked against the file size, so that the accessors below can
 * trust what they hand out. Nothing here allocates in proportion to a count
 * read from the file without first checking that the file is large enough to
 * hold that many items. */
#ifndef HINGE_GGUF_H
#define HINGE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef enum gguf_vtype {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
} gguf_vtype;

enum { GGUF_MAX_DIMS = 4, GGUF_NAME_MAX = 64, GGUF_DEFAULT_ALIGNMENT = 32 };

/* A string inside the mapped file: not NUL-terminated. */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    gguf_vtype type;     /* value type; GGUF_VT_ARRAY for arrays */
    gguf_vtype arr_type; /* element type when type == GGUF_VT_ARRAY */
    uint64_t arr_n;      /* element count when type == GGUF_VT_ARRAY */
    const uint8_t *val;  /* the value's bytes in the map (for arrays, the first
                            element); little-endian, unaligned: read with memcpy */
} gguf_kv;

typedef struct gguf_tensor {
    char name[GGUF_NAME_MAX];  /* NUL-terminated */
    uint32_t n_dims;           /* 1..GGUF_MAX_DIMS */
    uint64_t ne[GGUF_MAX_DIMS]; /* elements per dim, ne[0] fastest; unused = 1 */
    uint32_t type;             /* qtype (ggml numbering), checked supported */
    uint64_t offset;           /* from the start of the data section */
    size_t nbytes;             /* checked: data + nbytes is inside the file */
    const void *data;          /* in the map, aligned to the file's alignment */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Maps and validates the file at path. On failure *out is untouched and err
 * names what is wrong and where (byte offset, key or tensor name). Errors:
 * HINGE_ERR_IO, HINGE_ERR_FORMAT, HINGE_ERR_UNSUPPORTED, HINGE_ERR_NOMEM. */
hinge_status gguf_open(const char *path, gguf_file **out, char *err, size_t errlen);

/* Same for a buffer in memory (borrowed: it must outlive the gguf_file). */
hinge_status gguf_open_memory(const void *buf, size_t len, gguf_file **out, char *err, size_t errlen);

/* NULL is a no-op. */
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
size_t gguf_file_size(const gguf_file *f);
const uint8_t *gguf_file_bytes(const gguf_file *f); /* the whole mapped file */

size_t gguf_kv_count(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, size_t i);
/* NULL when absent. */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);

/* Typed getters. HINGE_ERR_NOT_FOUND when the key is absent (out untouched),
 * HINGE_ERR_FORMAT when it has an incompatible type or its value does not fit.
 * get_u32 takes any integer type whose value fits; get_f32 takes f32 or f64;
 * get_bool takes bool. */
hinge_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
hinge_status gguf_get_f32(const gguf_file *f, const char *key, float *out);
hinge_status gguf_get_bool(const gguf_file *f, const char *key, bool *out);
hinge_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);

/* Array of fixed-size elements of type want (not strings): *n elements at
 * *data (unaligned, little-endian). */
hinge_status gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype want, uint64_t *n,
                          const void **data);

/* Array of strings: fills out[0..min(n, cap)) and sets *n to the array's
 * length. HINGE_ERR_RANGE if cap < *n (out then holds the first cap). */
hinge_status gguf_get_strs(const gguf_file *f, const char *key, gguf_str *out, uint64_t cap,
                           uint64_t *n);

size_t gguf_tensor_count(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i);
/* NULL when absent. */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

#endif
