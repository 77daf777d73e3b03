/* Device weight layout and upload: see vk_weights.h and shaders/kernel_abi.h. */
#include "vk_weights.h"

#include <string.h>

#include "kernel_abi.h"
#include "quant.h"
#include "quant_k.h"

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

size_t dev_row_bytes(uint32_t type, uint64_t cols)
{
    if (cols == 0 || cols > UINT32_MAX)
        return 0;
    size_t n = (size_t)cols;
    switch (type) {
    case QT_F32: return round16(n * 4);
    case QT_F16: return n % 2 ? 0 : round16(n * 2);
    case QT_Q8_0: return n % QK_0 ? 0 : round16(n + (n / QK_0 + 1) / 2 * 4);
    case QT_Q4_0: return n % QK_0 ? 0 : round16(n / 2 + (n / QK_0 + 1) / 2 * 4);
    case QT_Q5_0: return n % QK_0 ? 0 : round16(n / 2 + n / 8 + (n / QK_0 + 1) / 2 * 4);
    case QT_Q4_1: return n % QK_0 ? 0 : round16(n / 2 + n / QK_0 * 4);
    case QT_Q4_K: return n % QK_K ? 0 : n / QK_K * sizeof(block_q4_k);
    case QT_Q6_K: return n % QK_K ? 0 : round16(n / QK_K * 208 + (n / QK_K + 1) / 2 * 4);
    /* the sub-layouts (kernel_abi.h) */
    case QT_IQ4_NL: return dev_row_bytes(QT_Q4_0, cols);
    case QT_Q5_1: return n % QK_0 ? 0 : round16(n / 2 + n / QK_0 * 8);
    case QT_Q5_K: return n % QK_K ? 0 : n / QK_K * (sizeof(block_q4_k) + 32);
    case QT_Q3_K: return n % QK_K ? 0 : round16(n / QK_K * 112 + (n / QK_K + 1) / 2 * 4);
    case QT_Q2_K: return n % QK_K ? 0 : round16(n / QK_K * 84);
    default: return 0;
    }
}

void dev_repack_row(uint32_t type, const void *src, uint64_t cols, void *dst)
{
    size_t n = (size_t)cols, rb = dev_row_bytes(type, cols);
    uint8_t *d = dst;
    memset(d, 0, rb);
    switch (type) {
    case QT_F32:
        memcpy(d, src, n * 4);
        break;
    case QT_F16:
        memcpy(d, src, n * 2);
        break;
    case QT_Q8_0: {
        const block_q8_0 *b = src;
        size_t nb = n / QK_0;
        for (size_t i = 0; i < nb; i++) {
            memcpy(d + i * 32, b[i].qs, 32);
            memcpy(d + nb * 32 + i * 2, &b[i].d, 2);
        }
        break;
    }
    case QT_Q4_0: {
        const block_q4_0 *b = src;
        size_t nb = n / QK_0;
        for (size_t i = 0; i < nb; i++) {
            memcpy(d + i * 16, b[i].qs, 16);
            memcpy(d + nb * 16 + i * 2, &b[i].d, 2);
        }
        break;
    }
    case QT_Q5_0: {
        const block_q5_0 *b = src;
        size_t nb = n / QK_0;
        for (size_t i = 0; i < nb; i++) {
            memcpy(d + i * 16, b[i].qs, 16);
            memcpy(d + nb * 16 + i * 4, b[i].qh, 4);
            memcpy(d + nb * 20 + i * 2, &b[i].d, 2);
        }
        break;
    }
    case QT_Q4_1: {
        const block_q4_1 *b = src;
        size_t nb = n / QK_0;
        for (size_t i = 0; i < nb; i++) {
            memcpy(d + i * 16, b[i].qs, 16);
            memcpy(d + nb * 16 + i * 4, &b[i].d, 2);
            memcpy(d + nb * 16 + i * 4 + 2, &b[i].m, 2);
        }
        break;
    }
    case QT_Q5_1: {
        const block_q5_1 *b = src;
        size_t nb = n / QK_0;
        for (size_t i = 0; i < nb; i++) {
            memcpy(d + i * 16, b[i].qs, 16);
            memcpy(d + nb * 16 + i * 4, &b[i].d, 2);
            memcpy(d + nb * 16 + i * 4 + 2, &b[i].m, 2);
            memcpy(d + nb * 20 + i * 4, b[i].qh, 4);
        }
        break;
    }
    case QT_IQ4_NL: /* block_iq4_nl is block_q4_0 with other values */
        dev_repack_row(QT_Q4_0, src, cols, dst);
        break;
    case QT_Q4_K:
        memcpy(d, src, n / QK_K * sizeof(block_q4_k));
        break;
    case QT_Q5_K: {
        const block_q5_k *b = src;
        size_t nb = n / QK_K;
        for (size_t i = 0; i < nb; i++) {
            memcpy(d + i * 144, &b[i].d, 2);
            memcpy(d + i * 144 + 2, &b[i].dmin, 2);
            memcpy(d + i * 144 + 4, b[i].scales, K_SCALE_SIZE);
            memcpy(d + i * 144 + 16, b[i].qs, 128);
            memcpy(d + nb * 144 + i * 32, b[i].qh, 32);
        }
        break;
    }
    case QT_Q3_K: {
        const block_q3_k *b = src;
        size_t nb = n / QK_K;
        for (size_t i = 0; i < nb; i++) {
            memcpy(d + i * 112, b[i].qs, 64);
            memcpy(d + i * 112 + 64, b[i].hmask, 32);
            /* the 16 6-bit scales unpacked to int8 */
            for (int j = 0; j < 16; j++)
                d[i * 112 + 96 + j] = (uint8_t)(int8_t)quant_q3_scale(b[i].scales, j);
            memcpy(d + nb * 112 + i * 2, &b[i].d, 2);
        }
        break;
    }
    case QT_Q2_K: {
        const block_q2_k *b = src;
        size_t nb = n / QK_K;
        for (size_t i = 0; i < nb; i++) {
            memcpy(d + i * 80, b[i].qs, 64);
            memcpy(d + i * 80 + 64, b[i].scales, 16);
            memcpy(d + nb * 80 + i * 4, &b[i].d, 2);
            memcpy(d + nb * 80 + i * 4 + 2, &b[i].dmin, 2);
        }
        break;
    }
    case QT_Q6_K: {
        const block_q6_k *b = src;
        size_t nb = n / QK_K;
        for (size_t i = 0; i < nb; i++) {
            memcpy(d + i * 208, b[i].ql, 128);
            memcpy(d + i * 208 + 128, b[i].qh, 64);
            memcpy(d + i * 208 + 192, b[i].scales, 16);
            memcpy(d + nb * 208 + i * 2, &b[i].d, 2);
        }
        break;
    }
    default:
        break;
    }
}

size_t dev_weight_bytes(uint32_t type, uint64_t rows, uint64_t cols)
{
    size_t rb = dev_row_bytes(type, cols);
    if (rb == 0 || rows == 0 || rows > UINT32_MAX || rows > SIZE_MAX / rb)
        return 0;
    return (size_t)rows * rb;
}

static size_t gcd(size_t a, size_t b)
{
    while (b) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

typedef struct fill_job {
    const weight *srcs;
    size_t n;
    size_t dev_rb; /* device row bytes */
} fill_job;

/* Repacks the device rows [off / dev_rb, (off + bytes) / dev_rb) into dst. */
static void fill_rows(void *user, void *dst, size_t off, size_t bytes)
{
    const fill_job *j = user;
    size_t r = off / j->dev_rb, end = (off + bytes) / j->dev_rb;
    size_t si = 0, base = 0;
    uint8_t *out = dst;
    for (; r < end; r++, out += j->dev_rb) {
        while (r >= base + j->srcs[si].rows) {
            base += j->srcs[si].rows;
            si++;
        }
        const weight *w = &j->srcs[si];
        size_t src_rb = quant_row_bytes(w->type, w->cols);
        dev_repack_row(w->type, (const uint8_t *)w->data + (r - base) * src_rb, w->cols, out);
    }
}

static hinge_status check_srcs(dev_ctx *c, const weight *srcs, size_t n, const char *name, uint64_t *rows)
{
    if (n == 0)
        return dev_fail(c, HINGE_ERR_INVALID, "dev_weight_upload(%s): no matrices", name);
    *rows = 0;
    for (size_t i = 0; i < n; i++) {
        if (srcs[i].type != srcs[0].type || srcs[i].cols != srcs[0].cols)
            return dev_fail(c, HINGE_ERR_INVALID, "dev_weight_upload(%s): %s is %s x %llu, %s is %s x %llu", name,
                            srcs[i].name ? srcs[i].name : "?", quant_name(srcs[i].type),
                            (unsigned long long)srcs[i].cols, srcs[0].name ? srcs[0].name : "?",
                            quant_name(srcs[0].type), (unsigned long long)srcs[0].cols);
        *rows += srcs[i].rows;
    }
    if (dev_weight_bytes(srcs[0].type, *rows, srcs[0].cols) == 0)
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "dev_weight_upload(%s): %s weights of %llu x %llu are not supported "
                        "by the shaders", name, quant_name(srcs[0].type), (unsigned long long)*rows,
                        (unsigned long long)srcs[0].cols);
    return HINGE_OK;
}

hinge_status dev_weight_upload(dev_ctx *c, dev_pool *pool, const weight *srcs, size_t n, const char *name,
                               dev_weight *out)
{
    uint64_t rows = 0;
    hinge_status s = check_srcs(c, srcs, n, name, &rows);
    if (s != HINGE_OK)
        return s;
    const dev_features *f = dev_ctx_features(c);
    size_t rb = dev_row_bytes(srcs[0].type, srcs[0].cols);
    /* Parts: as many rows as one descriptor may span, a multiple of the rows
     * that keep each part's offset aligned for a storage descriptor, and few
     * enough for one dispatch's grid. */
    size_t align = (size_t)f->storage_align > 16 ? (size_t)f->storage_align : 16;
    if ((size_t)f->texel_align > align)
        align = (size_t)f->texel_align;
    size_t unit = align / gcd(rb, align);
    size_t part = (size_t)(f->max_storage_range / rb) / unit * unit;
    size_t grid_cap = (size_t)65535 * (HK_WG / HK_MV_LANES) / unit * unit;
    if (part > grid_cap)
        part = grid_cap;
    if (part == 0)
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "dev_weight_upload(%s): a %zu-byte row does not fit one storage "
                        "descriptor (%llu bytes)", name, rb, (unsigned long long)f->max_storage_range);
    dev_weight w = {
        .type = srcs[0].type,
        .rows = (uint32_t)rows,
        .cols = (uint32_t)srcs[0].cols,
        .row_bytes = rb,
        .part_rows = part > rows ? (uint32_t)rows : (uint32_t)part,
    };
    s = dev_pool_alloc(pool, (size_t)rows * rb, 16, name, &w.buf);
    if (s != HINGE_OK)
        return s;
    fill_job job = {.srcs = srcs, .n = n, .dev_rb = rb};
    s = dev_upload_fill(c, &w.buf, 0, (size_t)rows * rb, rb, fill_rows, &job);
    if (s != HINGE_OK)
        return s;
    *out = w;
    return HINGE_OK;
}
