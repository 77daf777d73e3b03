/* hinge: GGUF reader (versions 3 and 2, which share one layout).
 *
 * Layout: "GGUF", u32 version, u64 tensor_count, u64 kv_count, kv pairs,
 * tensor infos, padding to general.alignment, data section. All integers are
 * little-endian. Everything is validated here, once, so that the accessors
 * can hand out pointers into the file without further checks. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian files with memcpy: big-endian hosts need byte swaps"
#endif

enum {
    GGUF_MAX_KV = 1 << 20,      /* hard caps on header counts, far above real files */
    GGUF_MAX_TENSORS = 1 << 20,
    KV_MIN_BYTES = 13,          /* u64 key length + u32 type + a 1-byte value */
    TENSOR_MIN_BYTES = 32,      /* u64 name length, u32 n_dims, one u64 ne, u32 type, u64 offset */
    WHERE_MAX = 112,            /* "kv 12 'key...'" prefix of messages */
    SHOWN_NAME_MAX = 72,        /* longest key or name quoted in a message */
};

/* Open-addressing hash of item indices, keyed by the items' names. */
typedef struct name_index {
    size_t *slot; /* item + 1, or 0 for an empty slot */
    size_t cap;   /* power of two, >= 2 * items */
} name_index;

struct gguf_file {
    const uint8_t *bytes; /* the whole file: our mmap, or the caller's buffer */
    size_t size;          /* bytes */
    bool mapped;          /* bytes is our mapping, unmapped by gguf_close */
    uint32_t version;
    uint32_t alignment;   /* of tensor data, bytes; a power of two */
    size_t data_start;    /* file offset of the data section; may be > size
                             when there are no tensors */
    size_t n_kv;
    gguf_kv *kv;          /* [n_kv] */
    size_t n_tensors;
    gguf_tensor *tensors; /* [n_tensors] */
    name_index kv_ix;     /* over kv[].key */
    name_index tensor_ix; /* over tensors[].name */
};

/* A cursor over the file during validation. */
typedef struct reader {
    const uint8_t *buf;
    size_t size;           /* bytes in buf */
    size_t off;            /* next byte to read; <= size */
    char where[WHERE_MAX]; /* what is being read, prefixes every message */
    char *err;
    size_t errlen;
} reader;

/* Bytes per value of each scalar type; 0 for string and array. */
static const uint8_t scalar_size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static size_t left(const reader *r) { return r->size - r->off; }

/* Copies n bytes of s into out (NUL-terminated) for quoting in a message:
 * bytes outside printable ASCII become '?', long names are cut with "...". */
static void printable(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        if (k + 4 >= cap && i + 1 < n) {
            memcpy(out + k, "...", 3);
            k += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        out[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[k] = '\0';
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3u;
    }
    return h;
}

static hinge_status index_init(name_index *ix, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    ix->slot = calloc(cap, sizeof *ix->slot);
    if (!ix->slot)
        return HINGE_ERR_NOMEM;
    ix->cap = cap;
    return HINGE_OK;
}

static gguf_str item_name(const gguf_file *f, bool tensors, size_t i)
{
    if (!tensors)
        return f->kv[i].key;
    return (gguf_str){f->tensors[i].name, strlen(f->tensors[i].name)};
}

/* Index of the item named (p, n), or SIZE_MAX; *free_slot is then the slot
 * where it would go. */
static size_t index_find(const gguf_file *f, bool tensors, const char *p, size_t n, size_t *free_slot)
{
    const name_index *ix = tensors ? &f->tensor_ix : &f->kv_ix;
    size_t mask = ix->cap - 1;
    for (size_t h = (size_t)hash_bytes(p, n) & mask;; h = (h + 1) & mask) {
        if (ix->slot[h] == 0) {
            *free_slot = h;
            return SIZE_MAX;
        }
        gguf_str s = item_name(f, tensors, ix->slot[h] - 1);
        if (s.len == n && memcmp(s.ptr, p, n) == 0)
            return ix->slot[h] - 1;
    }
}

/* Adds item under its name (p, n): SIZE_MAX, or the index of an earlier item
 * of that name (then nothing is added). The table never fills: cap >= 2n. */
static size_t index_add(gguf_file *f, bool tensors, const char *p, size_t n, size_t item)
{
    size_t h, dup = index_find(f, tensors, p, n, &h);
    if (dup == SIZE_MAX)
        (tensors ? &f->tensor_ix : &f->kv_ix)->slot[h] = item + 1;
    return dup;
}

/* Lookup by a NUL-terminated name, after a successful parse. */
static size_t index_get(const gguf_file *f, bool tensors, const char *name)
{
    size_t h;
    return index_find(f, tensors, name, strlen(name), &h);
}

static hinge_status need(reader *r, size_t n, const char *what)
{
    if (n <= left(r))
        return HINGE_OK;
    return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                      "%s: %s at byte offset %zu needs %zu bytes, only %zu left (file is %zu bytes)",
                      r->where, what, r->off, n, left(r), r->size);
}

static hinge_status rd_u32(reader *r, const char *what, uint32_t *v)
{
    hinge_status s = need(r, 4, what);
    if (s)
        return s;
    memcpy(v, r->buf + r->off, 4);
    r->off += 4;
    return HINGE_OK;
}

static hinge_status rd_u64(reader *r, const char *what, uint64_t *v)
{
    hinge_status s = need(r, 8, what);
    if (s)
        return s;
    memcpy(v, r->buf + r->off, 8);
    r->off += 8;
    return HINGE_OK;
}

/* Reads a gguf string (u64 length, bytes); elem is its index in an array, or
 * UINT64_MAX. The label of messages is only formatted on failure: string
 * arrays hold hundreds of thousands of elements. */
static hinge_status rd_str(reader *r, const char *what, uint64_t elem, gguf_str *out)
{
    size_t at = r->off;
    uint64_t len = 0;
    if (left(r) >= 8)
        memcpy(&len, r->buf + at, 8);
    if (left(r) < 8 || len > left(r) - 8) {
        char label[48];
        if (elem == UINT64_MAX)
            snprintf(label, sizeof label, "%s", what);
        else
            snprintf(label, sizeof label, "%s %llu", what, (unsigned long long)elem);
        if (left(r) < 8)
            return need(r, 8, label);
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "%s: %s at byte offset %zu has length %llu, only %zu bytes left",
                          r->where, label, at, (unsigned long long)len, left(r) - 8);
    }
    out->ptr = (const char *)r->buf + at + 8;
    out->len = len;
    r->off = at + 8 + (size_t)len;
    return HINGE_OK;
}

static hinge_status rd_vtype(reader *r, const char *what, gguf_vtype *out)
{
    size_t at = r->off;
    uint32_t t;
    hinge_status s = rd_u32(r, what, &t);
    if (s)
        return s;
    if (t > GGUF_VT_FLOAT64)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "%s: unknown %s %u at byte offset %zu", r->where, what, t, at);
    *out = (gguf_vtype)t;
    return HINGE_OK;
}

/* Checks that n bytes at the cursor are bools (0 or 1). */
static hinge_status check_bools(reader *r, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        uint8_t b = r->buf[r->off + i];
        if (b > 1)
            return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                              "%s: bool %llu at byte offset %zu is %u (must be 0 or 1)", r->where,
                              (unsigned long long)i, r->off + (size_t)i, b);
    }
    return HINGE_OK;
}

static hinge_status parse_array(reader *r, gguf_kv *kv)
{
    gguf_vtype et = GGUF_VT_UINT8;
    uint64_t n = 0;
    hinge_status s = rd_vtype(r, "array element type", &et);
    if (s)
        return s;
    if (et == GGUF_VT_ARRAY)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_UNSUPPORTED,
                          "%s: nested array at byte offset %zu is not supported", r->where, r->off - 4);
    size_t at = r->off;
    if ((s = rd_u64(r, "array count", &n)))
        return s;
    size_t min = et == GGUF_VT_STRING ? 8 : scalar_size[et]; /* bytes per element, at least */
    if (n > left(r) / min)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "%s: array count %llu at byte offset %zu needs at least %llu bytes per "
                          "element, only %zu bytes left",
                          r->where, (unsigned long long)n, at, (unsigned long long)min, left(r));
    kv->arr_type = et;
    kv->arr_n = n;
    kv->val = r->buf + r->off;
    if (et == GGUF_VT_STRING) {
        for (uint64_t i = 0; i < n; i++) {
            gguf_str str;
            if ((s = rd_str(r, "string", i, &str)))
                return s;
        }
        return HINGE_OK;
    }
    if (et == GGUF_VT_BOOL && (s = check_bools(r, n)))
        return s;
    r->off += (size_t)(n * min);
    return HINGE_OK;
}

static hinge_status parse_value(reader *r, gguf_kv *kv)
{
    hinge_status s;
    kv->val = r->buf + r->off;
    if (kv->type == GGUF_VT_ARRAY)
        return parse_array(r, kv);
    if (kv->type == GGUF_VT_STRING) {
        gguf_str str;
        return rd_str(r, "string value", UINT64_MAX, &str);
    }
    if ((s = need(r, scalar_size[kv->type], "value")))
        return s;
    if (kv->type == GGUF_VT_BOOL && (s = check_bools(r, 1)))
        return s;
    r->off += scalar_size[kv->type];
    return HINGE_OK;
}

static hinge_status parse_kvs(reader *r, gguf_file *f)
{
    hinge_status s;
    char shown[SHOWN_NAME_MAX];
    for (size_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        snprintf(r->where, sizeof r->where, "kv %zu", i);
        if ((s = rd_str(r, "key", UINT64_MAX, &kv->key)))
            return s;
        printable(kv->key.ptr, (size_t)kv->key.len, shown, sizeof shown);
        if (kv->key.len == 0 || memchr(kv->key.ptr, 0, (size_t)kv->key.len))
            return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                              "kv %zu '%s': key at byte offset %zu is empty or has a NUL byte", i, shown,
                              r->off - (size_t)kv->key.len - 8);
        snprintf(r->where, sizeof r->where, "kv %zu '%s'", i, shown);
        size_t dup = index_add(f, false, kv->key.ptr, (size_t)kv->key.len, i);
        if (dup != SIZE_MAX)
            return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT, "%s: duplicate key (first at kv %zu)",
                              r->where, dup);
        if ((s = rd_vtype(r, "value type", &kv->type)))
            return s;
        if ((s = parse_value(r, kv)))
            return s;
    }
    return HINGE_OK;
}

static hinge_status parse_header(reader *r, gguf_file *f, uint64_t *n_tensors, uint64_t *n_kv)
{
    hinge_status s;
    snprintf(r->where, sizeof r->where, "header");
    if (r->size < 4)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "header: file is %zu bytes, too short for the magic \"GGUF\"", r->size);
    const uint8_t *m = r->buf;
    if (memcmp(m, "GGUF", 4) != 0)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "header: bad magic %02x %02x %02x %02x at byte offset 0 (expected \"GGUF\")",
                          m[0], m[1], m[2], m[3]);
    r->off = 4;
    if ((s = rd_u32(r, "version", &f->version)))
        return s;
    if (f->version != 3 && f->version != 2)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_UNSUPPORTED,
                          "header: GGUF version %u is not supported (only 2 and 3)", f->version);
    if ((s = rd_u64(r, "tensor count", n_tensors)) || (s = rd_u64(r, "kv count", n_kv)))
        return s;
    if (*n_kv > GGUF_MAX_KV || *n_tensors > GGUF_MAX_TENSORS)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "header: %llu kvs and %llu tensors: over the limit of %d each",
                          (unsigned long long)*n_kv, (unsigned long long)*n_tensors, GGUF_MAX_KV);
    uint64_t min = *n_kv * KV_MIN_BYTES + *n_tensors * TENSOR_MIN_BYTES; /* no overflow: capped */
    if (min > left(r))
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "header: %llu kvs and %llu tensors need at least %llu bytes, only %zu left "
                          "after the header",
                          (unsigned long long)*n_kv, (unsigned long long)*n_tensors,
                          (unsigned long long)min, left(r));
    return HINGE_OK;
}

static hinge_status read_alignment(reader *r, gguf_file *f)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    size_t i = index_get(f, false, "general.alignment");
    if (i == SIZE_MAX)
        return HINGE_OK;
    const gguf_kv *kv = &f->kv[i];
    if (kv->type != GGUF_VT_UINT32)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "kv %zu 'general.alignment': has value type %d, must be uint32 (%d)", i,
                          (int)kv->type, (int)GGUF_VT_UINT32);
    uint32_t a;
    memcpy(&a, kv->val, 4);
    if (a == 0 || (a & (a - 1)) != 0)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "kv %zu 'general.alignment': %u is not a nonzero power of two", i, a);
    f->alignment = a;
    return HINGE_OK;
}

/* Element count, type and byte size of t; r->where names the tensor. */
static hinge_status check_shape(reader *r, gguf_tensor *t)
{
    uint64_t nel = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (t->ne[d] == 0)
            return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT, "%s: ne[%u] is 0", r->where, d);
        if (t->ne[d] > (uint64_t)INT64_MAX / nel)
            return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                              "%s: element count overflows at ne[%u] = %llu", r->where, d,
                              (unsigned long long)t->ne[d]);
        nel *= t->ne[d];
    }
    if (!quant_supported(t->type))
        return hinge_fail(r->err, r->errlen, HINGE_ERR_UNSUPPORTED,
                          "%s: tensor type %u is not supported", r->where, t->type);
    uint64_t blk = quant_block_elems(t->type);
    if (t->ne[0] % blk != 0)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "%s: ne[0] = %llu is not a multiple of the %s block size %llu", r->where,
                          (unsigned long long)t->ne[0], quant_name(t->type), (unsigned long long)blk);
    uint64_t bb = quant_block_bytes(t->type);
    uint64_t rows = nel / t->ne[0];
    uint64_t blocks = t->ne[0] / blk;
    if (blocks > SIZE_MAX / bb || rows > SIZE_MAX / (blocks * bb))
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "%s: byte size of %llu %s elements overflows", r->where,
                          (unsigned long long)nel, quant_name(t->type));
    t->nbytes = (size_t)(rows * quant_row_bytes(t->type, t->ne[0]));
    return HINGE_OK;
}

static hinge_status parse_tensor_name(reader *r, gguf_file *f, size_t i)
{
    gguf_tensor *t = &f->tensors[i];
    gguf_str name;
    char shown[SHOWN_NAME_MAX];
    snprintf(r->where, sizeof r->where, "tensor %zu", i);
    hinge_status s = rd_str(r, "name", UINT64_MAX, &name);
    if (s)
        return s;
    printable(name.ptr, (size_t)name.len, shown, sizeof shown);
    if (name.len == 0 || name.len >= GGUF_NAME_MAX || memchr(name.ptr, 0, (size_t)name.len))
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "tensor %zu '%s': name at byte offset %zu has length %llu (must be 1..%d, "
                          "without NUL bytes)",
                          i, shown, r->off - (size_t)name.len - 8, (unsigned long long)name.len,
                          GGUF_NAME_MAX - 1);
    memcpy(t->name, name.ptr, (size_t)name.len);
    t->name[name.len] = '\0';
    snprintf(r->where, sizeof r->where, "tensor %zu '%s'", i, shown);
    size_t dup = index_add(f, true, t->name, (size_t)name.len, i);
    if (dup != SIZE_MAX)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT, "%s: duplicate name (first at tensor %zu)",
                          r->where, dup);
    return HINGE_OK;
}

static hinge_status parse_tensor_info(reader *r, gguf_file *f, size_t i)
{
    gguf_tensor *t = &f->tensors[i];
    hinge_status s = parse_tensor_name(r, f, i);
    if (s || (s = rd_u32(r, "n_dims", &t->n_dims)))
        return s;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "%s: n_dims %u at byte offset %zu is not in 1..%d", r->where, t->n_dims,
                          r->off - 4, GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d < t->n_dims && (s = rd_u64(r, "ne", &t->ne[d])))
            return s;
    }
    if ((s = rd_u32(r, "type", &t->type)) || (s = rd_u64(r, "offset", &t->offset)))
        return s;
    return check_shape(r, t);
}

/* Checks alignment and bounds of t's data; sets t->data. */
static hinge_status place_tensor(reader *r, gguf_file *f, gguf_tensor *t)
{
    char shown[SHOWN_NAME_MAX];
    printable(t->name, strlen(t->name), shown, sizeof shown);
    if (t->offset % f->alignment != 0)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "tensor '%s': offset %llu is not a multiple of the alignment %u", shown,
                          (unsigned long long)t->offset, f->alignment);
    size_t avail = f->size > f->data_start ? f->size - f->data_start : 0; /* data section bytes */
    if (t->offset > avail || t->nbytes > avail - (size_t)t->offset) {
        if (t->nbytes <= SIZE_MAX - f->data_start && t->offset <= SIZE_MAX - f->data_start - t->nbytes)
            return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                              "tensor '%s': data [%zu, %zu) past end of file (%zu bytes)", shown,
                              f->data_start + (size_t)t->offset,
                              f->data_start + (size_t)t->offset + t->nbytes, f->size);
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                          "tensor '%s': data at offset %llu (+%zu bytes) of the data section at %zu "
                          "is past end of file (%zu bytes)",
                          shown, (unsigned long long)t->offset, t->nbytes, f->data_start, f->size);
    }
    t->data = f->bytes + f->data_start + t->offset;
    return HINGE_OK;
}

/* A tensor's data range, for the overlap check. */
typedef struct span {
    uint64_t off; /* from the data section start */
    size_t idx;   /* tensor index */
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static hinge_status overlap_error(reader *r, const gguf_file *f, const gguf_tensor *a,
                                  const gguf_tensor *b)
{
    char na[SHOWN_NAME_MAX], nb[SHOWN_NAME_MAX];
    printable(a->name, strlen(a->name), na, sizeof na);
    printable(b->name, strlen(b->name), nb, sizeof nb);
    size_t a0 = f->data_start + (size_t)a->offset, b0 = f->data_start + (size_t)b->offset;
    return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT,
                      "tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", na, a0, a0 + a->nbytes,
                      nb, b0, b0 + b->nbytes);
}

/* Sorts the tensors' ranges by offset: O(n log n). Runs after place_tensor,
 * so every offset + nbytes is inside the file and cannot overflow. */
static hinge_status check_overlaps(reader *r, gguf_file *f)
{
    if (f->n_tensors < 2)
        return HINGE_OK;
    span *sp = malloc(f->n_tensors * sizeof *sp);
    if (!sp)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_NOMEM, "out of memory sorting %zu tensors",
                          f->n_tensors);
    for (size_t i = 0; i < f->n_tensors; i++)
        sp[i] = (span){f->tensors[i].offset, i};
    qsort(sp, f->n_tensors, sizeof *sp, cmp_span);
    hinge_status s = HINGE_OK;
    for (size_t i = 1; i < f->n_tensors && !s; i++) {
        const gguf_tensor *a = &f->tensors[sp[i - 1].idx], *b = &f->tensors[sp[i].idx];
        if (a->offset + a->nbytes > b->offset)
            s = overlap_error(r, f, a, b);
    }
    free(sp);
    return s;
}

static hinge_status alloc_tables(reader *r, gguf_file *f)
{
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors || index_init(&f->kv_ix, f->n_kv) || index_init(&f->tensor_ix, f->n_tensors))
        return hinge_fail(r->err, r->errlen, HINGE_ERR_NOMEM,
                          "out of memory for %zu kvs and %zu tensors", f->n_kv, f->n_tensors);
    return HINGE_OK;
}

static hinge_status parse(reader *r, gguf_file *f)
{
    uint64_t n_tensors = 0, n_kv = 0;
    hinge_status s = parse_header(r, f, &n_tensors, &n_kv);
    if (s)
        return s;
    f->n_kv = (size_t)n_kv;
    f->n_tensors = (size_t)n_tensors;
    if ((s = alloc_tables(r, f)) || (s = parse_kvs(r, f)) || (s = read_alignment(r, f)))
        return s;
    for (size_t i = 0; i < f->n_tensors; i++)
        if ((s = parse_tensor_info(r, f, i)))
            return s;
    /* r->off <= size, and size < SIZE_MAX / 2 on any real map */
    if (r->off > SIZE_MAX - f->alignment)
        return hinge_fail(r->err, r->errlen, HINGE_ERR_FORMAT, "data section offset overflows");
    f->data_start = (r->off + f->alignment - 1) & ~((size_t)f->alignment - 1);
    for (size_t i = 0; i < f->n_tensors; i++)
        if ((s = place_tensor(r, f, &f->tensors[i])))
            return s;
    return check_overlaps(r, f);
}

static hinge_status open_bytes(const uint8_t *buf, size_t len, bool mapped, gguf_file **out, char *err,
                               size_t errlen)
{
    gguf_file *f = calloc(1, sizeof *f);
    if (!f)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    f->bytes = buf;
    f->size = len;
    reader r = {.buf = buf, .size = len, .err = err, .errlen = errlen};
    hinge_status s = parse(&r, f);
    if (s) {
        gguf_close(f); /* leaves a failed map to the caller */
        return s;
    }
    f->mapped = mapped;
    *out = f;
    return HINGE_OK;
}

hinge_status gguf_open_memory(const void *buf, size_t len, gguf_file **out, char *err, size_t errlen)
{
    if (!out || (!buf && len))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "gguf_open_memory: NULL argument");
    return open_bytes(buf ? buf : (const uint8_t *)"", len, false, out, err, errlen);
}

hinge_status gguf_open(const char *path, gguf_file **out, char *err, size_t errlen)
{
    char eb[128];
    if (!path || !out)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "gguf_open: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return hinge_fail(err, errlen, HINGE_ERR_IO, "cannot open '%s': %s", path,
                          strerror_r(errno, eb, sizeof eb));
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) != 0)
        why = strerror_r(errno, eb, sizeof eb);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if ((uint64_t)st.st_size > SIZE_MAX / 2)
        why = "too large for the address space";
    if (why) {
        close(fd);
        return hinge_fail(err, errlen, HINGE_ERR_IO, "cannot map '%s': %s", path, why);
    }
    size_t size = (size_t)st.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return hinge_fail(err, errlen, HINGE_ERR_IO, "cannot mmap '%s' (%zu bytes): %s", path, size,
                          strerror_r(e, eb, sizeof eb));
    hinge_status s = open_bytes(map ? map : (const uint8_t *)"", size, map != NULL, out, err, errlen);
    if (s && map)
        munmap(map, size);
    return s;
}

void gguf_close(gguf_file *f)
{
    if (!f)
        return;
    if (f->mapped)
        munmap((void *)f->bytes, f->size);
    free(f->kv);
    free(f->tensors);
    free(f->kv_ix.slot);
    free(f->tensor_ix.slot);
    free(f);
}

uint32_t gguf_version(const gguf_file *f) { return f ? f->version : 0; }
size_t gguf_file_size(const gguf_file *f) { return f ? f->size : 0; }
const uint8_t *gguf_file_bytes(const gguf_file *f) { return f ? f->bytes : NULL; }
size_t gguf_kv_count(const gguf_file *f) { return f ? f->n_kv : 0; }
size_t gguf_tensor_count(const gguf_file *f) { return f ? f->n_tensors : 0; }

const gguf_kv *gguf_kv_at(const gguf_file *f, size_t i)
{
    return f && i < f->n_kv ? &f->kv[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i)
{
    return f && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    size_t i = index_get(f, false, key);
    return i == SIZE_MAX ? NULL : &f->kv[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    size_t i = index_get(f, true, name);
    return i == SIZE_MAX ? NULL : &f->tensors[i];
}

/* Looks key up for a getter: HINGE_ERR_INVALID or HINGE_ERR_NOT_FOUND. */
static hinge_status find_for_get(const gguf_file *f, const char *key, const gguf_kv **kv)
{
    if (!f || !key)
        return HINGE_ERR_INVALID;
    *kv = gguf_find_kv(f, key);
    return *kv ? HINGE_OK : HINGE_ERR_NOT_FOUND;
}

/* The value of an integer kv as sign and magnitude; false if not an integer. */
static bool int_value(const gguf_kv *kv, bool *neg, uint64_t *mag)
{
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; int64_t i64;
    int64_t sv = 0;
    *mag = 0;
    switch (kv->type) {
    case GGUF_VT_UINT8: memcpy(&u8, kv->val, 1); *mag = u8; break;
    case GGUF_VT_UINT16: memcpy(&u16, kv->val, 2); *mag = u16; break;
    case GGUF_VT_UINT32: memcpy(&u32, kv->val, 4); *mag = u32; break;
    case GGUF_VT_UINT64: memcpy(mag, kv->val, 8); break;
    case GGUF_VT_INT8: memcpy(&i8, kv->val, 1); sv = i8; break;
    case GGUF_VT_INT16: memcpy(&i16, kv->val, 2); sv = i16; break;
    case GGUF_VT_INT32: memcpy(&i32, kv->val, 4); sv = i32; break;
    case GGUF_VT_INT64: memcpy(&i64, kv->val, 8); sv = i64; break;
    default: return false;
    }
    *neg = sv < 0;
    if (sv != 0)
        *mag = sv < 0 ? (uint64_t)0 - (uint64_t)sv : (uint64_t)sv;
    return true;
}

hinge_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out)
{
    const gguf_kv *kv;
    hinge_status s = find_for_get(f, key, &kv);
    if (s)
        return s;
    bool neg;
    uint64_t mag;
    if (!out)
        return HINGE_ERR_INVALID;
    if (!int_value(kv, &neg, &mag) || neg || mag > UINT32_MAX)
        return HINGE_ERR_FORMAT;
    *out = (uint32_t)mag;
    return HINGE_OK;
}

hinge_status gguf_get_f32(const gguf_file *f, const char *key, float *out)
{
    const gguf_kv *kv;
    hinge_status s = find_for_get(f, key, &kv);
    if (s)
        return s;
    if (!out)
        return HINGE_ERR_INVALID;
    if (kv->type == GGUF_VT_FLOAT32) {
        memcpy(out, kv->val, 4);
        return HINGE_OK;
    }
    double d;
    if (kv->type != GGUF_VT_FLOAT64)
        return HINGE_ERR_FORMAT;
    memcpy(&d, kv->val, 8);
    if (isfinite(d) && fabs(d) > FLT_MAX)
        return HINGE_ERR_FORMAT;
    *out = (float)d;
    return HINGE_OK;
}

hinge_status gguf_get_bool(const gguf_file *f, const char *key, bool *out)
{
    const gguf_kv *kv;
    hinge_status s = find_for_get(f, key, &kv);
    if (s)
        return s;
    if (!out)
        return HINGE_ERR_INVALID;
    if (kv->type != GGUF_VT_BOOL)
        return HINGE_ERR_FORMAT;
    *out = kv->val[0] != 0;
    return HINGE_OK;
}

/* A string stored at p (u64 length, then bytes): validated by gguf_open. */
static gguf_str str_at(const uint8_t *p)
{
    gguf_str s;
    memcpy(&s.len, p, 8);
    s.ptr = (const char *)p + 8;
    return s;
}

hinge_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out)
{
    const gguf_kv *kv;
    hinge_status s = find_for_get(f, key, &kv);
    if (s)
        return s;
    if (!out)
        return HINGE_ERR_INVALID;
    if (kv->type != GGUF_VT_STRING)
        return HINGE_ERR_FORMAT;
    *out = str_at(kv->val);
    return HINGE_OK;
}

hinge_status gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype want, uint64_t *n,
                          const void **data)
{
    const gguf_kv *kv;
    hinge_status s = find_for_get(f, key, &kv);
    if (s)
        return s;
    if (!n || !data || want == GGUF_VT_STRING || want == GGUF_VT_ARRAY || (unsigned)want > GGUF_VT_FLOAT64)
        return HINGE_ERR_INVALID;
    if (kv->type != GGUF_VT_ARRAY || kv->arr_type != want)
        return HINGE_ERR_FORMAT;
    *n = kv->arr_n;
    *data = kv->val;
    return HINGE_OK;
}

hinge_status gguf_get_strs(const gguf_file *f, const char *key, gguf_str *out, uint64_t cap,
                           uint64_t *n)
{
    const gguf_kv *kv;
    hinge_status s = find_for_get(f, key, &kv);
    if (s)
        return s;
    if (!n || (!out && cap))
        return HINGE_ERR_INVALID;
    if (kv->type != GGUF_VT_ARRAY || kv->arr_type != GGUF_VT_STRING)
        return HINGE_ERR_FORMAT;
    const uint8_t *p = kv->val;
    uint64_t fill = kv->arr_n < cap ? kv->arr_n : cap;
    for (uint64_t i = 0; i < fill; i++) {
        out[i] = str_at(p);
        p += 8 + out[i].len;
    }
    *n = kv->arr_n;
    return cap < kv->arr_n ? HINGE_ERR_RANGE : HINGE_OK;
}
