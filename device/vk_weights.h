/* hinge device: weight matrices in device memory.
 *
 * Weights are uploaded once, at load, in the device layout described in
 * shaders/kernel_abi.h: ggml's blocks regrouped so that every shader read is
 * an aligned 32- or 128-bit word (no 8/16-bit storage needed), rows on
 * 16-byte boundaries. The values are ggml's bit for bit; only the order of
 * the bytes changes. */
#ifndef HINGE_DEV_VK_WEIGHTS_H
#define HINGE_DEV_VK_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "vk_context.h"

/* A matrix on the device: rows x cols of type, row r at buf.off + r * row_bytes. */
typedef struct dev_weight {
    uint32_t type;      /* qtype */
    uint32_t rows, cols;
    size_t row_bytes;   /* device row stride: a multiple of 16 */
    dev_buf buf;        /* rows * row_bytes bytes */
    uint32_t part_rows; /* rows one storage descriptor may span (a matrix
                           larger than maxStorageBufferRange is bound in parts) */
} dev_weight;

/* Device row stride of cols weights of type; 0 when the type is not one the
 * shaders read (f32, f16, q8_0, q4_0, q5_0, q4_1, q4_k, q6_k; q5_1, iq4_nl,
 * q5_k, q3_k, q2_k in sub-layouts of some of those) or cols is not a
 * whole number of its blocks (f16 also needs an even cols). */
size_t dev_row_bytes(uint32_t type, uint64_t cols);

/* dst (dev_row_bytes bytes) = the device layout of one ggml row src of cols
 * weights; padding is zeroed. */
void dev_repack_row(uint32_t type, const void *src, uint64_t cols, void *dst);

/* Uploads the rows of srcs[0], srcs[1], ... srcs[n-1] one after another as
 * one device matrix (e.g. wq | wk | wv, so that one dispatch computes all
 * three), carved from pool. All must share type and cols. Errors:
 * HINGE_ERR_UNSUPPORTED (type or shape the shaders cannot read, a row larger
 * than a storage descriptor), HINGE_ERR_INVALID (mismatched srcs),
 * HINGE_ERR_NOMEM (pool full), HINGE_ERR_VULKAN. name goes into messages. */
hinge_status dev_weight_upload(dev_ctx *c, dev_pool *pool, const weight *srcs, size_t n, const char *name,
                               dev_weight *out);

/* Bytes dev_weight_upload will take from a pool for rows x cols of type
 * (without alignment slack); 0 for what it cannot upload. */
size_t dev_weight_bytes(uint32_t type, uint64_t rows, uint64_t cols);

#endif
