/* The Vulkan context: see vk_context.h. */
#include "vk_context_impl.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    DEFAULT_STAGING = 16 << 20,
    DEFAULT_TIMESTAMPS = 256,
    MAX_PHYSICAL = 16,
    FENCE_TIMEOUT_S = 120, /* one submission longer than this is a hung device */
};

static const char VALIDATION_LAYER[] = "VK_LAYER_KHRONOS_validation";

/* ---- errors ---- */

const char *dev_vk_result_name(VkResult r)
{
    switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED";
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    case VK_ERROR_INVALID_EXTERNAL_HANDLE: return "VK_ERROR_INVALID_EXTERNAL_HANDLE";
    case VK_ERROR_FRAGMENTATION: return "VK_ERROR_FRAGMENTATION";
    case VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS: return "VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS";
    case VK_ERROR_UNKNOWN: return "VK_ERROR_UNKNOWN";
    default: return "VkResult(unnamed)";
    }
}

hinge_status dev_fail(dev_ctx *c, hinge_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    hinge_log(c->log, HINGE_LOG_ERROR, "%s", c->errmsg);
    return s;
}

hinge_status dev_refuse(dev_ctx *c, hinge_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    return s;
}

static hinge_status status_of(VkResult r)
{
    switch (r) {
    case VK_ERROR_OUT_OF_HOST_MEMORY:
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_OUT_OF_POOL_MEMORY:
    case VK_ERROR_FRAGMENTED_POOL:
    case VK_ERROR_FRAGMENTATION:
        return HINGE_ERR_NOMEM;
    default:
        return HINGE_ERR_VULKAN;
    }
}

hinge_status dev_vk_fail(dev_ctx *c, VkResult r, const char *call, const char *what)
{
    return dev_fail(c, status_of(r), "%s(%s): %s", call, what ? what : "", dev_vk_result_name(r));
}

const char *dev_ctx_errmsg(const dev_ctx *c) { return c ? c->errmsg : "no device context"; }
const dev_features *dev_ctx_features(const dev_ctx *c) { return &c->f; }
const hinge_logger *dev_ctx_logger(const dev_ctx *c) { return c->log; }
VkDevice dev_ctx_device(const dev_ctx *c) { return c->device; }

/* ---- instance ---- */

static VKAPI_ATTR VkBool32 VKAPI_CALL on_validation(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                                    VkDebugUtilsMessageTypeFlagsEXT types,
                                                    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    (void)types;
    dev_ctx *c = user;
    hinge_log_level lv = sev >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT ? HINGE_LOG_ERROR : HINGE_LOG_WARN;
    hinge_log(c->log, lv, "vulkan validation: %s", data->pMessage ? data->pMessage : "?");
    return VK_FALSE;
}

static bool layer_present(const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0)
        return false;
    VkLayerProperties *props = calloc(n, sizeof *props);
    if (!props)
        return false;
    bool found = false;
    if (vkEnumerateInstanceLayerProperties(&n, props) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(props[i].layerName, name) == 0;
    free(props);
    return found;
}

static bool want_validation(const dev_ctx_config *cfg)
{
    if (cfg->validate != 0)
        return cfg->validate > 0;
    const char *e = getenv("HINGE_VK_VALIDATE");
    return e && strcmp(e, "1") == 0;
}

static hinge_status create_instance(dev_ctx *c, const dev_ctx_config *cfg)
{
    uint32_t loader_version = VK_API_VERSION_1_0;
    if (vkEnumerateInstanceVersion(&loader_version) != VK_SUCCESS || loader_version < VK_API_VERSION_1_1)
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "the Vulkan loader offers only Vulkan 1.0; hinge needs 1.1 or later");
    bool validate = want_validation(cfg);
    if (validate && !layer_present(VALIDATION_LAYER)) {
        hinge_log(c->log, HINGE_LOG_WARN, "vulkan: %s is not installed; running without validation", VALIDATION_LAYER);
        validate = false;
    }
    const char *layers[] = {VALIDATION_LAYER};
    const char *exts[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "hinge",
        .applicationVersion = VK_MAKE_API_VERSION(0, 0, 1, 0),
        .pEngineName = "hinge",
        .engineVersion = VK_MAKE_API_VERSION(0, 0, 1, 0),
        .apiVersion = loader_version >= VK_API_VERSION_1_3 ? VK_API_VERSION_1_3 : VK_API_VERSION_1_2,
    };
    VkInstanceCreateInfo ici = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
        .enabledLayerCount = validate ? 1 : 0,
        .ppEnabledLayerNames = validate ? layers : NULL,
        .enabledExtensionCount = validate ? 1 : 0,
        .ppEnabledExtensionNames = validate ? exts : NULL,
    };
    VkResult r = vkCreateInstance(&ici, NULL, &c->instance);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED) {
        c->instance = VK_NULL_HANDLE;
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "no Vulkan driver: vkCreateInstance: %s", dev_vk_result_name(r));
    }
    if (r != VK_SUCCESS) {
        c->instance = VK_NULL_HANDLE;
        return dev_vk_fail(c, r, "vkCreateInstance", validate ? "with validation" : "");
    }
    if (!validate)
        return HINGE_OK;
    PFN_vkCreateDebugUtilsMessengerEXT create_messenger =
        (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(c->instance, "vkCreateDebugUtilsMessengerEXT");
    c->destroy_messenger =
        (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(c->instance, "vkDestroyDebugUtilsMessengerEXT");
    if (!create_messenger || !c->destroy_messenger)
        return HINGE_OK;
    VkDebugUtilsMessengerCreateInfoEXT mci = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_validation,
        .pUserData = c,
    };
    r = create_messenger(c->instance, &mci, NULL, &c->messenger);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkCreateDebugUtilsMessengerEXT", "validation");
    hinge_log(c->log, HINGE_LOG_INFO, "vulkan: validation enabled");
    return HINGE_OK;
}

/* ---- physical device ---- */

static int type_rank(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
    }
}

/* The compute-capable queue family, preferring one without graphics (an
 * async-compute queue). UINT32_MAX when there is none. */
static uint32_t compute_family(VkPhysicalDevice pd)
{
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
    VkQueueFamilyProperties props[16];
    if (n > 16)
        n = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, props);
    uint32_t best = UINT32_MAX;
    for (uint32_t i = 0; i < n; i++) {
        if (!(props[i].queueFlags & VK_QUEUE_COMPUTE_BIT) || props[i].queueCount == 0)
            continue;
        if (best == UINT32_MAX || !(props[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
            best = i;
        if (!(props[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
            break;
    }
    return best;
}

static bool name_matches(const char *name, const char *want)
{
    size_t n = strlen(want);
    for (const char *p = name; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] && tolower((unsigned char)p[i]) == tolower((unsigned char)want[i]))
            i++;
        if (i == n)
            return true;
    }
    return n == 0;
}

/* want: an index ("0") or a name substring. Returns the chosen index, or -1
 * with c->errmsg set. */
static int pick_device(dev_ctx *c, VkPhysicalDevice *pds, uint32_t n, const char *want)
{
    VkPhysicalDeviceProperties props[MAX_PHYSICAL];
    bool usable[MAX_PHYSICAL];
    for (uint32_t i = 0; i < n; i++) {
        vkGetPhysicalDeviceProperties(pds[i], &props[i]);
        usable[i] = props[i].apiVersion >= VK_API_VERSION_1_1 && compute_family(pds[i]) != UINT32_MAX;
    }
    if (want && *want) {
        char *end;
        errno = 0;
        unsigned long idx = strtoul(want, &end, 10);
        bool numeric = *end == '\0' && errno == 0 && isdigit((unsigned char)want[0]);
        for (uint32_t i = 0; i < n; i++) {
            bool hit = numeric ? idx == i : name_matches(props[i].deviceName, want);
            if (hit && usable[i])
                return (int)i;
            if (hit) {
                dev_fail(c, HINGE_ERR_UNSUPPORTED, "vulkan device %u (%s) has no compute queue or is below Vulkan 1.1",
                         i, props[i].deviceName);
                return -1;
            }
        }
        dev_fail(c, HINGE_ERR_UNSUPPORTED, "no vulkan device matches \"%s\" (%u devices)", want, n);
        return -1;
    }
    int best = -1;
    for (uint32_t i = 0; i < n; i++)
        if (usable[i] && (best < 0 || type_rank(props[i].deviceType) < type_rank(props[best].deviceType)))
            best = (int)i;
    if (best < 0)
        dev_fail(c, HINGE_ERR_UNSUPPORTED, "none of the %u vulkan devices has a compute queue and Vulkan 1.1", n);
    return best;
}

static void read_features(dev_ctx *c)
{
    dev_features *f = &c->f;
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
        .pNext = &sg,
    };
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &m3};
    vkGetPhysicalDeviceProperties2(c->phys, &p2);
    const VkPhysicalDeviceProperties *p = &p2.properties;
    memcpy(f->name, p->deviceName, sizeof f->name);
    f->type = p->deviceType;
    f->vendor_id = p->vendorID;
    f->device_id = p->deviceID;
    f->api_version = p->apiVersion;
    f->subgroup_size = sg.subgroupSize;
    f->subgroup_ops = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) ? sg.supportedOperations : 0;
    f->subgroup_arith = (f->subgroup_ops & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) != 0;
    f->subgroup_shuffle = (f->subgroup_ops & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) != 0;
    f->timestamp_period_ns = p->limits.timestampPeriod;
    f->max_storage_range = p->limits.maxStorageBufferRange;
    f->storage_align = p->limits.minStorageBufferOffsetAlignment;
    f->texel_align = p->limits.minTexelBufferOffsetAlignment;
    f->max_texel_elements = p->limits.maxTexelBufferElements;
    f->max_alloc = m3.maxMemoryAllocationSize;
    f->max_shared_bytes = p->limits.maxComputeSharedMemorySize;
    f->max_wg_invocations = p->limits.maxComputeWorkGroupInvocations;
    memcpy(f->max_wg_count, p->limits.maxComputeWorkGroupCount, sizeof f->max_wg_count);
    f->max_push_constants = p->limits.maxPushConstantsSize;

    uint32_t nq = 0;
    VkQueueFamilyProperties qf[16];
    vkGetPhysicalDeviceQueueFamilyProperties(c->phys, &nq, NULL);
    nq = nq > 16 ? 16 : nq;
    vkGetPhysicalDeviceQueueFamilyProperties(c->phys, &nq, qf);
    f->timestamp_bits = qf[c->queue_family].timestampValidBits;
    f->timestamps = f->timestamp_bits > 0 && f->timestamp_period_ns > 0.0f;

    vkGetPhysicalDeviceMemoryProperties(c->phys, &c->mem);
    for (uint32_t i = 0; i < c->mem.memoryHeapCount; i++)
        if ((c->mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            c->mem.memoryHeaps[i].size > f->device_heap_bytes)
            f->device_heap_bytes = c->mem.memoryHeaps[i].size;
}

/* Fills the feature chain to enable: what the device has of what the
 * shaders may use. v11/v12 are only chained on a 1.2 device. */
static void query_shader_features(dev_ctx *c, VkPhysicalDeviceFeatures2 *f2, VkPhysicalDeviceVulkan11Features *v11,
                                  VkPhysicalDeviceVulkan12Features *v12, VkPhysicalDevice16BitStorageFeatures *s16)
{
    dev_features *f = &c->f;
    bool v12ok = f->api_version >= VK_API_VERSION_1_2;
    *v12 = (VkPhysicalDeviceVulkan12Features){.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    *v11 = (VkPhysicalDeviceVulkan11Features){.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                              .pNext = v12};
    *s16 = (VkPhysicalDevice16BitStorageFeatures){.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
    *f2 = (VkPhysicalDeviceFeatures2){.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                      .pNext = v12ok ? (void *)v11 : (void *)s16};
    vkGetPhysicalDeviceFeatures2(c->phys, f2);
    f->int16 = f2->features.shaderInt16;
    f->storage16 = v12ok ? v11->storageBuffer16BitAccess : s16->storageBuffer16BitAccess;
    f->float16 = v12ok && v12->shaderFloat16;
    f->int8 = v12ok && v12->shaderInt8;
    f->storage8 = v12ok && v12->storageBuffer8BitAccess;

    /* Enable exactly these; everything else off. */
    VkPhysicalDeviceFeatures keep = {.shaderInt16 = f->int16, .shaderInt64 = VK_FALSE};
    f2->features = keep;
    if (v12ok) {
        *v11 = (VkPhysicalDeviceVulkan11Features){.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                                  .pNext = v12,
                                                  .storageBuffer16BitAccess = f->storage16};
        *v12 = (VkPhysicalDeviceVulkan12Features){.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                                  .shaderFloat16 = f->float16,
                                                  .shaderInt8 = f->int8,
                                                  .storageBuffer8BitAccess = f->storage8};
    } else {
        *s16 = (VkPhysicalDevice16BitStorageFeatures){.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
                                                      .storageBuffer16BitAccess = f->storage16};
    }
}

static hinge_status choose_device(dev_ctx *c, const dev_ctx_config *cfg)
{
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(c->instance, &n, NULL);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkEnumeratePhysicalDevices", "count");
    if (n == 0)
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "no Vulkan device: the driver lists none");
    VkPhysicalDevice pds[MAX_PHYSICAL];
    n = n > MAX_PHYSICAL ? MAX_PHYSICAL : n;
    r = vkEnumeratePhysicalDevices(c->instance, &n, pds);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE)
        return dev_vk_fail(c, r, "vkEnumeratePhysicalDevices", "list");
    const char *want = cfg->device && *cfg->device ? cfg->device : getenv("HINGE_VK_DEVICE");
    int idx = pick_device(c, pds, n, want);
    if (idx < 0)
        return HINGE_ERR_UNSUPPORTED;
    c->phys = pds[idx];
    c->queue_family = compute_family(c->phys);
    read_features(c);
    c->f.index = (uint32_t)idx;
    return HINGE_OK;
}

static hinge_status create_device(dev_ctx *c)
{
    VkPhysicalDeviceFeatures2 f2;
    VkPhysicalDeviceVulkan11Features v11;
    VkPhysicalDeviceVulkan12Features v12;
    VkPhysicalDevice16BitStorageFeatures s16;
    query_shader_features(c, &f2, &v11, &v12, &s16);
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = c->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &f2,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
    };
    VkResult r = vkCreateDevice(c->phys, &dci, NULL, &c->device);
    if (r != VK_SUCCESS) {
        c->device = VK_NULL_HANDLE;
        return dev_vk_fail(c, r, "vkCreateDevice", c->f.name);
    }
    vkGetDeviceQueue(c->device, c->queue_family, 0, &c->queue);
    return HINGE_OK;
}

static hinge_status create_commands(dev_ctx *c, uint32_t timestamps)
{
    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = c->queue_family,
    };
    VkResult r = vkCreateCommandPool(c->device, &pci, NULL, &c->cmd_pool);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkCreateCommandPool", "compute");
    VkCommandBufferAllocateInfo cai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = c->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    r = vkAllocateCommandBuffers(c->device, &cai, &c->cmd);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkAllocateCommandBuffers", "compute");
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    r = vkCreateFence(c->device, &fci, NULL, &c->fence);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkCreateFence", "compute");
    if (!c->f.timestamps)
        return HINGE_OK;
    VkQueryPoolCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
        .queryType = VK_QUERY_TYPE_TIMESTAMP,
        .queryCount = timestamps,
    };
    r = vkCreateQueryPool(c->device, &qci, NULL, &c->ts_pool);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkCreateQueryPool", "timestamps");
    c->ts_count = timestamps;
    return HINGE_OK;
}

static const char *type_name(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

hinge_status dev_ctx_create(const dev_ctx_config *cfg, dev_ctx **out, char *err, size_t errlen)
{
    static const dev_ctx_config defaults = {0};
    if (!cfg)
        cfg = &defaults;
    dev_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for the device context");
    c->log = cfg->log;
    hinge_status s = create_instance(c, cfg);
    if (s == HINGE_OK)
        s = choose_device(c, cfg);
    if (s == HINGE_OK)
        s = create_device(c);
    if (s == HINGE_OK)
        s = create_commands(c, cfg->timestamps ? cfg->timestamps : DEFAULT_TIMESTAMPS);
    if (s == HINGE_OK)
        s = dev_pool_create(c, DEV_MEM_READBACK, cfg->staging_bytes ? cfg->staging_bytes : DEFAULT_STAGING, "staging",
                            &c->staging);
    if (s != HINGE_OK) {
        hinge_fail(err, errlen, s, "%s", c->errmsg);
        dev_ctx_destroy(c);
        return s;
    }
    const dev_features *f = &c->f;
    hinge_log(c->log, HINGE_LOG_INFO,
              "vulkan: device %u \"%s\" (%s, Vulkan %u.%u), subgroup %u%s, fp16 %s, int8 %s, 16-bit storage %s, "
              "heap %" PRIu64 " MiB, storage range %" PRIu64 " MiB",
              f->index, f->name, type_name(f->type), VK_API_VERSION_MAJOR(f->api_version),
              VK_API_VERSION_MINOR(f->api_version), f->subgroup_size, f->subgroup_arith ? " (arithmetic)" : "",
              f->float16 ? "yes" : "no", f->int8 ? "yes" : "no", f->storage16 ? "yes" : "no",
              (uint64_t)(f->device_heap_bytes >> 20), (uint64_t)(f->max_storage_range >> 20));
    *out = c;
    return HINGE_OK;
}

void dev_ctx_destroy(dev_ctx *c)
{
    if (!c)
        return;
    if (c->device) {
        vkDeviceWaitIdle(c->device);
        dev_pool_destroy(c->staging);
        if (c->ts_pool)
            vkDestroyQueryPool(c->device, c->ts_pool, NULL);
        if (c->fence)
            vkDestroyFence(c->device, c->fence, NULL);
        if (c->cmd_pool)
            vkDestroyCommandPool(c->device, c->cmd_pool, NULL);
        vkDestroyDevice(c->device, NULL);
    }
    if (c->messenger && c->destroy_messenger)
        c->destroy_messenger(c->instance, c->messenger, NULL);
    if (c->instance)
        vkDestroyInstance(c->instance, NULL);
    free(c);
}
/* ---- commands ---- */

hinge_status dev_cmd_begin(dev_ctx *c, VkCommandBuffer *out)
{
    if (c->recording)
        return dev_fail(c, HINGE_ERR_INVALID, "dev_cmd_begin: the command buffer is already recording");
    VkResult r = vkResetCommandBuffer(c->cmd, 0);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkResetCommandBuffer", "compute");
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    r = vkBeginCommandBuffer(c->cmd, &bi);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkBeginCommandBuffer", "compute");
    c->recording = true;
    *out = c->cmd;
    return HINGE_OK;
}

static hinge_status submit_wait(dev_ctx *c, VkCommandBuffer cmd)
{
    VkResult r = vkResetFences(c->device, 1, &c->fence);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkResetFences", "compute");
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &cmd,
    };
    r = vkQueueSubmit(c->queue, 1, &si, c->fence);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkQueueSubmit", "compute");
    r = vkWaitForFences(c->device, 1, &c->fence, VK_TRUE, (uint64_t)FENCE_TIMEOUT_S * 1000000000ull);
    if (r == VK_TIMEOUT)
        return dev_fail(c, HINGE_ERR_VULKAN, "vkWaitForFences(compute): VK_TIMEOUT: a submission ran over %d s "
                        "(hung device)", FENCE_TIMEOUT_S);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkWaitForFences", "compute");
    return HINGE_OK;
}

hinge_status dev_cmd_submit_wait(dev_ctx *c)
{
    if (!c->recording)
        return dev_fail(c, HINGE_ERR_INVALID, "dev_cmd_submit_wait: nothing recorded");
    c->recording = false;
    VkResult r = vkEndCommandBuffer(c->cmd);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkEndCommandBuffer", "compute");
    return submit_wait(c, c->cmd);
}

hinge_status dev_submit_wait(dev_ctx *c, VkCommandBuffer cmd)
{
    if (c->recording)
        return dev_fail(c, HINGE_ERR_INVALID, "dev_submit_wait: the context's command buffer is recording");
    return submit_wait(c, cmd);
}

hinge_status dev_cmd_alloc(dev_ctx *c, uint32_t n, VkCommandBuffer *out)
{
    VkCommandBufferAllocateInfo cai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = c->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = n,
    };
    VkResult r = vkAllocateCommandBuffers(c->device, &cai, out);
    if (r != VK_SUCCESS)
        return dev_vk_fail(c, r, "vkAllocateCommandBuffers", "dev_cmd_alloc");
    return HINGE_OK;
}

void dev_cmd_free(dev_ctx *c, uint32_t n, const VkCommandBuffer *cmds)
{
    for (uint32_t i = 0; i < n; i++)
        if (cmds[i])
            vkFreeCommandBuffers(c->device, c->cmd_pool, 1, &cmds[i]);
}

void dev_cmd_barrier(VkCommandBuffer cmd)
{
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                         VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_READ_BIT,
    };
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                             VK_PIPELINE_STAGE_HOST_BIT,
                         0, 1, &mb, 0, NULL, 0, NULL);
}
/* ---- timestamps ---- */

void dev_ts_reset(dev_ctx *c, VkCommandBuffer cmd, uint32_t n)
{
    if (c->ts_pool)
        vkCmdResetQueryPool(cmd, c->ts_pool, 0, n < c->ts_count ? n : c->ts_count);
}

void dev_ts_mark(dev_ctx *c, VkCommandBuffer cmd, uint32_t i)
{
    if (c->ts_pool && i < c->ts_count)
        vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, c->ts_pool, i);
}

hinge_status dev_ts_read(dev_ctx *c, uint32_t n, double *ns)
{
    if (!c->ts_pool)
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "dev_ts_read: %s has no compute timestamps", c->f.name);
    if (n == 0 || n > c->ts_count)
        return dev_fail(c, HINGE_ERR_RANGE, "dev_ts_read: %u timestamps, the pool has %u", n, c->ts_count);
    uint64_t mask = c->f.timestamp_bits >= 64 ? ~0ull : (1ull << c->f.timestamp_bits) - 1;
    uint64_t t[64], t0 = 0;
    for (uint32_t first = 0; first < n; first += 64) {
        uint32_t k = n - first < 64 ? n - first : 64;
        VkResult r = vkGetQueryPoolResults(c->device, c->ts_pool, first, k, sizeof t, t, sizeof t[0],
                                           VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
        if (r != VK_SUCCESS)
            return dev_vk_fail(c, r, "vkGetQueryPoolResults", "timestamps");
        if (first == 0)
            t0 = t[0];
        for (uint32_t i = 0; i < k; i++)
            ns[first + i] = (double)((t[i] - t0) & mask) * c->f.timestamp_period_ns;
    }
    return HINGE_OK;
}
