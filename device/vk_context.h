/* hinge device: the Vulkan context.
 *
 * One instance, one physical device, one logical device with one compute
 * queue, the feature set the shaders choose variants from, a small memory
 * manager (a few large allocations sub-allocated by bumping), a staging
 * buffer for uploads and readbacks, one command buffer with its fence, and a
 * timestamp query pool.
 *
 * Threading: a dev_ctx and everything made from it are used by one thread at
 * a time. Two contexts in one process are independent. */
#ifndef HINGE_DEV_VK_CONTEXT_H
#define HINGE_DEV_VK_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vulkan/vulkan.h>

#include "log.h"
#include "status.h"

typedef struct dev_ctx dev_ctx;
typedef struct dev_pool dev_pool;

typedef struct dev_ctx_config {
    /* Which physical device: a decimal index into the enumeration, or a
     * case-insensitive substring of its name. NULL or "": the environment
     * variable HINGE_VK_DEVICE, else the ranking discrete GPU > integrated >
     * virtual > CPU (lavapipe). */
    const char *device;
    /* Enable VK_LAYER_KHRONOS_validation when installed (a warning when not):
     * > 0 yes, 0: yes when HINGE_VK_VALIDATE=1, < 0 never. */
    int validate;
    size_t staging_bytes;    /* host-visible transfer buffer; 0: 16 MiB */
    uint32_t timestamps;     /* timestamp queries in the pool; 0: 256 */
    const hinge_logger *log; /* borrowed, may be NULL; must outlive the context */
} dev_ctx_config;

/* What the chosen device can do; read once at creation. */
typedef struct dev_features {
    char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
    VkPhysicalDeviceType type;
    uint32_t vendor_id, device_id;
    uint32_t api_version; /* the device's, VK_MAKE_API_VERSION */
    uint32_t index;       /* in vkEnumeratePhysicalDevices order */

    bool storage16;      /* storageBuffer16BitAccess */
    bool float16;        /* shaderFloat16 */
    bool int8;           /* shaderInt8 */
    bool storage8;       /* storageBuffer8BitAccess */
    bool int16;          /* shaderInt16 */
    uint32_t subgroup_size;
    VkSubgroupFeatureFlags subgroup_ops; /* in compute shaders; 0 if none */
    bool subgroup_arith; /* subgroupAdd/Max usable in compute */
    bool subgroup_shuffle;

    bool timestamps;            /* compute queue writes timestamps */
    float timestamp_period_ns;  /* ns per tick */
    uint32_t timestamp_bits;    /* valid bits of a timestamp */

    VkDeviceSize max_storage_range;  /* bytes one storage descriptor may span */
    VkDeviceSize storage_align;      /* minStorageBufferOffsetAlignment */
    VkDeviceSize texel_align;        /* minTexelBufferOffsetAlignment */
    uint32_t max_texel_elements;     /* maxTexelBufferElements */
    VkDeviceSize max_alloc;          /* maxMemoryAllocationSize */
    VkDeviceSize device_heap_bytes;  /* the largest device-local heap */
    uint32_t max_shared_bytes;       /* maxComputeSharedMemorySize */
    uint32_t max_wg_invocations;
    uint32_t max_wg_count[3];
    uint32_t max_push_constants;
} dev_features;

/* Creates the context. Errors: HINGE_ERR_UNSUPPORTED (no Vulkan driver, no
 * device, no compute queue, device below Vulkan 1.1, HINGE_VK_DEVICE matches
 * nothing), HINGE_ERR_VULKAN (a driver call failed), HINGE_ERR_NOMEM. The
 * message goes to err; *out is untouched on failure. */
hinge_status dev_ctx_create(const dev_ctx_config *cfg, dev_ctx **out, char *err, size_t errlen);
void dev_ctx_destroy(dev_ctx *c); /* NULL and half-built contexts are fine */

const char *dev_ctx_errmsg(const dev_ctx *c); /* the last error's detail; owned by c */
const dev_features *dev_ctx_features(const dev_ctx *c);
const hinge_logger *dev_ctx_logger(const dev_ctx *c);
VkDevice dev_ctx_device(const dev_ctx *c);

/* Records a failed call in c's message as "call(what): VK_ERROR_..." and
 * returns the matching status (NOMEM for the out-of-memory results, VULKAN
 * otherwise). For code built on the context (vk_ops.c). */
hinge_status dev_vk_fail(dev_ctx *c, VkResult r, const char *call, const char *what);
/* printf into c's message buffer (and the log, ERROR); returns s. */
hinge_status dev_fail(dev_ctx *c, hinge_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same without the log: for an expected refusal the caller handles
 * (a fused kernel that does not fit: the ops run one by one). */
hinge_status dev_refuse(dev_ctx *c, hinge_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *dev_vk_result_name(VkResult r);

/* ---- memory ---- */

typedef enum dev_mem_kind {
    DEV_MEM_DEVICE = 0,   /* device-local: weights, activations, KV cache */
    DEV_MEM_UPLOAD = 1,   /* host-visible, coherent, mapped: host writes, device reads */
    DEV_MEM_READBACK = 2, /* host-visible, coherent (cached when offered), mapped */
} dev_mem_kind;

/* A sub-allocation: [off, off + size) of buf. host is the mapped address of
 * byte off for host-visible pools, NULL otherwise. */
typedef struct dev_buf {
    VkBuffer buf;
    VkDeviceSize off, size;
    void *host;
} dev_buf;

/* One VkDeviceMemory of bytes bound to one VkBuffer (storage, uniform texel,
 * transfer src and dst) that dev_pool_alloc hands out in aligned pieces. name goes into
 * messages. Errors: HINGE_ERR_NOMEM (over the heap, over
 * maxMemoryAllocationSize, or the driver's out-of-memory), HINGE_ERR_VULKAN.
 * The pool must be destroyed before its context. */
hinge_status dev_pool_create(dev_ctx *c, dev_mem_kind kind, size_t bytes, const char *name, dev_pool **out);
void dev_pool_destroy(dev_pool *p); /* NULL is a no-op */

/* Carves bytes (aligned to align and to the storage-descriptor and
 * texel-buffer-view alignments) from the pool. HINGE_ERR_NOMEM when it does not fit; what names the piece
 * in the message. */
hinge_status dev_pool_alloc(dev_pool *p, size_t bytes, size_t align, const char *what, dev_buf *out);
void dev_pool_reset(dev_pool *p); /* frees every piece at once */
size_t dev_pool_used(const dev_pool *p);
size_t dev_pool_capacity(const dev_pool *p);

/* ---- transfers (load time; they wait for the device) ---- */

/* Called with consecutive pieces [off, off + bytes) of the destination to
 * fill dst (staging memory) with; pieces are multiples of the granule the
 * caller gave. */
typedef void (*dev_fill_fn)(void *user, void *dst, size_t off, size_t bytes);

/* Writes bytes into dst at dst_off through the staging buffer, granule bytes
 * at a time at least (a granule must fit the staging buffer). */
hinge_status dev_upload_fill(dev_ctx *c, const dev_buf *dst, size_t dst_off, size_t bytes, size_t granule,
                             dev_fill_fn fill, void *user);
hinge_status dev_upload(dev_ctx *c, const dev_buf *dst, size_t dst_off, const void *src, size_t bytes);
hinge_status dev_download(dev_ctx *c, const dev_buf *src, size_t src_off, void *dst, size_t bytes);

/* ---- commands ---- */

/* Begins the context's command buffer (one-time submit). The previous
 * submission must have been waited for. */
hinge_status dev_cmd_begin(dev_ctx *c, VkCommandBuffer *out);
/* Ends, submits and waits for it. */
hinge_status dev_cmd_submit_wait(dev_ctx *c);
/* Compute/transfer writes before -> compute/transfer/host reads after. */
void dev_cmd_barrier(VkCommandBuffer cmd);

/* Command buffers of the caller's own (resettable, primary) from the
 * context's pool: for work recorded once and submitted many times. Free them
 * with dev_cmd_free before the context (or let the context's destruction
 * free them). Errors: HINGE_ERR_VULKAN, HINGE_ERR_NOMEM. */
hinge_status dev_cmd_alloc(dev_ctx *c, uint32_t n, VkCommandBuffer *out);
void dev_cmd_free(dev_ctx *c, uint32_t n, const VkCommandBuffer *cmds); /* VK_NULL_HANDLEs are skipped */
/* Submits cmd (recorded and ended by the caller) with the context's fence
 * and waits for it: the per-token path's one submit and one wait. Not while
 * the context's own command buffer is recording. Errors: HINGE_ERR_VULKAN
 * (VK_ERROR_DEVICE_LOST, a submission hung past the timeout, ...; the
 * message names the VkResult), HINGE_ERR_NOMEM, HINGE_ERR_INVALID. */
hinge_status dev_submit_wait(dev_ctx *c, VkCommandBuffer cmd);

/* ---- timestamps ---- */

/* Resets queries [0, n) of the pool; record before the first mark. */
void dev_ts_reset(dev_ctx *c, VkCommandBuffer cmd, uint32_t n);
/* Writes timestamp i once the preceding work is complete. */
void dev_ts_mark(dev_ctx *c, VkCommandBuffer cmd, uint32_t i);
/* After the submission has finished: ns[i] = timestamp i - timestamp 0, in
 * nanoseconds, for i < n. HINGE_ERR_UNSUPPORTED without timestamps. */
hinge_status dev_ts_read(dev_ctx *c, uint32_t n, double *ns);

#endif
