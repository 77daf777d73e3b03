/* The context's memory manager and transfers: see vk_context.h. A pool is
 * one VkDeviceMemory bound to one VkBuffer, handed out by bumping an offset;
 * uploads and downloads go through the context's staging pool. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_context_impl.h"

/* ---- memory ---- */

/* The memory type for kind among bits, preferring the first flag set that
 * some type has in full. UINT32_MAX when none fits. */
static uint32_t pick_memory_type(const dev_ctx *c, dev_mem_kind kind, uint32_t bits)
{
    const VkMemoryPropertyFlags HV = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    VkMemoryPropertyFlags prefs[3] = {0};
    switch (kind) {
    case DEV_MEM_DEVICE:
        prefs[0] = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
        break;
    case DEV_MEM_UPLOAD:
        prefs[0] = HV;
        break;
    case DEV_MEM_READBACK:
        prefs[0] = HV | VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
        prefs[1] = HV;
        break;
    }
    for (int p = 0; p < 3 && prefs[p]; p++)
        for (uint32_t i = 0; i < c->mem.memoryTypeCount; i++)
            if ((bits & (1u << i)) && (c->mem.memoryTypes[i].propertyFlags & prefs[p]) == prefs[p])
                return i;
    if (kind == DEV_MEM_DEVICE) /* no device-local type: any will do */
        for (uint32_t i = 0; i < c->mem.memoryTypeCount; i++)
            if (bits & (1u << i))
                return i;
    return UINT32_MAX;
}

static const char *kind_name(dev_mem_kind k)
{
    return k == DEV_MEM_DEVICE ? "device-local" : k == DEV_MEM_UPLOAD ? "upload" : "readback";
}

static hinge_status pool_bind(dev_pool *p, const char *what)
{
    dev_ctx *c = p->ctx;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(c->device, p->buffer, &req);
    uint32_t type = pick_memory_type(c, p->kind, req.memoryTypeBits);
    if (type == UINT32_MAX)
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "dev_pool_create(%s): no %s memory type", what, kind_name(p->kind));
    VkDeviceSize heap = c->mem.memoryHeaps[c->mem.memoryTypes[type].heapIndex].size;
    if (req.size > heap)
        return dev_fail(c, HINGE_ERR_NOMEM, "vkAllocateMemory(%s): %" PRIu64 " bytes is more than the %" PRIu64
                        "-byte heap", what, (uint64_t)req.size, (uint64_t)heap);
    VkMemoryAllocateInfo mai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = type,
    };
    VkResult r = vkAllocateMemory(c->device, &mai, NULL, &p->memory);
    if (r != VK_SUCCESS) {
        p->memory = VK_NULL_HANDLE;
        return dev_vk_fail(c, r, "vkAllocateMemory", what);
    }
    r = vkBindBufferMemory(c->device, p->buffer, p->memory, 0);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkBindBufferMemory", what);
    if (!(c->mem.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT))
        return HINGE_OK;
    r = vkMapMemory(c->device, p->memory, 0, VK_WHOLE_SIZE, 0, &p->map);
    if (r != VK_SUCCESS) {
        p->map = NULL;
        return dev_vk_fail(c, r, "vkMapMemory", what);
    }
    return HINGE_OK;
}

hinge_status dev_pool_create(dev_ctx *c, dev_mem_kind kind, size_t bytes, const char *name, dev_pool **out)
{
    char what[96];
    snprintf(what, sizeof what, "%s, %zu bytes", name, bytes);
    if (bytes == 0)
        return dev_fail(c, HINGE_ERR_INVALID, "dev_pool_create(%s): empty pool", what);
    if (bytes > c->f.max_alloc)
        return dev_fail(c, HINGE_ERR_NOMEM, "vkAllocateMemory(%s): more than maxMemoryAllocationSize (%" PRIu64 ")",
                        what, (uint64_t)c->f.max_alloc);
    if (c->f.device_heap_bytes && bytes > c->f.device_heap_bytes)
        return dev_fail(c, HINGE_ERR_NOMEM, "vkAllocateMemory(%s): more than the largest heap (%" PRIu64 " bytes)",
                        what, (uint64_t)c->f.device_heap_bytes);
    dev_pool *p = calloc(1, sizeof *p);
    if (!p)
        return dev_fail(c, HINGE_ERR_NOMEM, "dev_pool_create(%s): out of host memory", what);
    *p = (dev_pool){.ctx = c, .kind = kind, .capacity = bytes};
    snprintf(p->name, sizeof p->name, "%s", name);
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = bytes,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
                 VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult r = vkCreateBuffer(c->device, &bci, NULL, &p->buffer);
    hinge_status s = HINGE_OK;
    if (r != VK_SUCCESS) {
        p->buffer = VK_NULL_HANDLE;
        s = dev_vk_fail(c, r, "vkCreateBuffer", what);
    }
    if (s == HINGE_OK)
        s = pool_bind(p, what);
    if (s == HINGE_OK && kind != DEV_MEM_DEVICE && !p->map)
        s = dev_fail(c, HINGE_ERR_UNSUPPORTED, "dev_pool_create(%s): memory is not host-visible", what);
    if (s != HINGE_OK) {
        dev_pool_destroy(p);
        return s;
    }
    hinge_log(c->log, HINGE_LOG_DEBUG, "vulkan: pool %s: %zu bytes %s", name, bytes, kind_name(kind));
    *out = p;
    return HINGE_OK;
}

void dev_pool_destroy(dev_pool *p)
{
    if (!p)
        return;
    VkDevice d = p->ctx->device;
    if (p->map)
        vkUnmapMemory(d, p->memory);
    if (p->buffer)
        vkDestroyBuffer(d, p->buffer, NULL);
    if (p->memory)
        vkFreeMemory(d, p->memory, NULL);
    free(p);
}

hinge_status dev_pool_alloc(dev_pool *p, size_t bytes, size_t align, const char *what, dev_buf *out)
{
    size_t a = (size_t)p->ctx->f.storage_align;
    if ((size_t)p->ctx->f.texel_align > a)
        a = (size_t)p->ctx->f.texel_align;
    if (align > a)
        a = align;
    if (a & (a - 1))
        return dev_fail(p->ctx, HINGE_ERR_INVALID, "dev_pool_alloc(%s): alignment %zu is not a power of two", what, a);
    size_t off = (p->used + a - 1) & ~(a - 1);
    if (bytes == 0 || off > p->capacity || bytes > p->capacity - off)
        return dev_fail(p->ctx, HINGE_ERR_NOMEM, "dev_pool_alloc(%s, %zu bytes): pool %s has %zu of %zu bytes free",
                        what, bytes, p->name, off <= p->capacity ? p->capacity - off : 0, p->capacity);
    *out = (dev_buf){.buf = p->buffer, .off = off, .size = bytes, .host = p->map ? (char *)p->map + off : NULL};
    p->used = off + bytes;
    return HINGE_OK;
}

void dev_pool_reset(dev_pool *p) { p->used = 0; }
size_t dev_pool_used(const dev_pool *p) { return p->used; }
size_t dev_pool_capacity(const dev_pool *p) { return p->capacity; }
/* ---- transfers ---- */

hinge_status dev_upload_fill(dev_ctx *c, const dev_buf *dst, size_t dst_off, size_t bytes, size_t granule,
                             dev_fill_fn fill, void *user)
{
    size_t cap = dev_pool_capacity(c->staging);
    if (granule == 0 || granule > cap)
        return dev_fail(c, HINGE_ERR_INVALID, "dev_upload: granule of %zu bytes does not fit the %zu-byte staging buffer",
                        granule, cap);
    if (dst_off > dst->size || bytes > dst->size - dst_off)
        return dev_fail(c, HINGE_ERR_RANGE, "dev_upload: %zu bytes at %zu overrun a %zu-byte buffer", bytes, dst_off,
                        (size_t)dst->size);
    size_t step = cap / granule * granule;
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < step ? bytes - done : step;
        fill(user, c->staging->map, done, n);
        VkCommandBuffer cmd;
        hinge_status s = dev_cmd_begin(c, &cmd);
        if (s != HINGE_OK)
            return s;
        VkBufferCopy region = {.srcOffset = 0, .dstOffset = dst->off + dst_off + done, .size = n};
        vkCmdCopyBuffer(cmd, c->staging->buffer, dst->buf, 1, &region);
        dev_cmd_barrier(cmd);
        s = dev_cmd_submit_wait(c);
        if (s != HINGE_OK)
            return s;
        done += n;
    }
    return HINGE_OK;
}

static void fill_copy(void *user, void *dst, size_t off, size_t bytes)
{
    memcpy(dst, (const char *)user + off, bytes);
}

hinge_status dev_upload(dev_ctx *c, const dev_buf *dst, size_t dst_off, const void *src, size_t bytes)
{
    return dev_upload_fill(c, dst, dst_off, bytes, 1, fill_copy, (void *)src);
}

hinge_status dev_download(dev_ctx *c, const dev_buf *src, size_t src_off, void *dst, size_t bytes)
{
    if (src_off > src->size || bytes > src->size - src_off)
        return dev_fail(c, HINGE_ERR_RANGE, "dev_download: %zu bytes at %zu overrun a %zu-byte buffer", bytes, src_off,
                        (size_t)src->size);
    size_t cap = dev_pool_capacity(c->staging);
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < cap ? bytes - done : cap;
        VkCommandBuffer cmd;
        hinge_status s = dev_cmd_begin(c, &cmd);
        if (s != HINGE_OK)
            return s;
        dev_cmd_barrier(cmd);
        VkBufferCopy region = {.srcOffset = src->off + src_off + done, .dstOffset = 0, .size = n};
        vkCmdCopyBuffer(cmd, src->buf, c->staging->buffer, 1, &region);
        dev_cmd_barrier(cmd);
        s = dev_cmd_submit_wait(c);
        if (s != HINGE_OK)
            return s;
        memcpy((char *)dst + done, c->staging->map, n);
        done += n;
    }
    return HINGE_OK;
}
