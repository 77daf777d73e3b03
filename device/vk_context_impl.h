/* hinge device: the context's internals, shared by vk_context.c and
 * vk_memory.c. Private to device/. */
#ifndef HINGE_DEV_VK_CONTEXT_IMPL_H
#define HINGE_DEV_VK_CONTEXT_IMPL_H

#include "vk_context.h"

struct dev_ctx {
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger;
    VkPhysicalDevice phys;
    VkDevice device;
    VkQueue queue;
    uint32_t queue_family;
    dev_features f;
    VkPhysicalDeviceMemoryProperties mem;
    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkFence fence;
    bool recording;
    VkQueryPool ts_pool;
    uint32_t ts_count;
    dev_pool *staging;
    const hinge_logger *log;
    char errmsg[HINGE_ERRMSG_MAX];
};

struct dev_pool {
    dev_ctx *ctx;
    dev_mem_kind kind;
    char name[32];
    VkDeviceMemory memory;
    VkBuffer buffer;
    size_t capacity, used;
    void *map;
};

#endif
