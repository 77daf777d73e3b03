/* device/vk_context.c: device choice, features, the memory manager's limits
 * and errors, transfers, timestamps. Exits 77 (skipped) without a Vulkan
 * device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_fixture.h"

static void test_features(void **state)
{
    (void)state;
    fx_need_device();
    const dev_features *f = dev_ctx_features(fx.ctx);
    assert_true(f->name[0] != '\0');
    assert_true(f->api_version >= VK_API_VERSION_1_1);
    assert_true(f->subgroup_size >= 1);
    assert_true(f->max_storage_range >= (1u << 27) || f->max_storage_range >= (1u << 24));
    assert_true(f->storage_align >= 1 && (f->storage_align & (f->storage_align - 1)) == 0);
    assert_true(f->max_alloc > 0 && f->device_heap_bytes > 0);
    print_message("%s: type %d, api %u.%u, subgroup %u ops 0x%x, timestamps %d (%.3f ns), heap %llu MiB\n", f->name,
                  (int)f->type, VK_API_VERSION_MAJOR(f->api_version), VK_API_VERSION_MINOR(f->api_version),
                  f->subgroup_size, f->subgroup_ops, f->timestamps, f->timestamp_period_ns,
                  (unsigned long long)(f->device_heap_bytes >> 20));
}

/* A pool larger than the heap (or than one allocation may be) is a clean
 * NOMEM with the call named, never a crash or an overcommitted success. */
static void test_pool_too_large(void **state)
{
    (void)state;
    fx_need_device();
    const dev_features *f = dev_ctx_features(fx.ctx);
    VkDeviceSize big = f->device_heap_bytes > f->max_alloc ? f->device_heap_bytes : f->max_alloc;
    dev_pool *p = NULL;
    hinge_status s = dev_pool_create(fx.ctx, DEV_MEM_DEVICE, (size_t)big * 2, "huge", &p);
    assert_true(s == HINGE_ERR_NOMEM || s == HINGE_ERR_VULKAN);
    assert_null(p);
    print_message("refused: %s\n", dev_ctx_errmsg(fx.ctx));
    assert_non_null(strstr(dev_ctx_errmsg(fx.ctx), "vkAllocateMemory(huge"));
    /* a pool's own capacity */
    assert_int_equal(dev_pool_create(fx.ctx, DEV_MEM_UPLOAD, 4096, "small", &p), HINGE_OK);
    dev_buf b;
    assert_int_equal(dev_pool_alloc(p, 4000, 16, "a", &b), HINGE_OK);
    assert_non_null(b.host);
    assert_int_equal(dev_pool_alloc(p, 200, 16, "b", &b), HINGE_ERR_NOMEM);
    assert_non_null(strstr(dev_ctx_errmsg(fx.ctx), "pool small"));
    dev_pool_reset(p);
    assert_int_equal(dev_pool_used(p), 0);
    dev_pool_destroy(p);
}

static void test_transfer(void **state)
{
    (void)state;
    fx_need_device();
    /* larger than the staging buffer, odd size and offset */
    size_t n = (size_t)(40 << 20) + 13;
    unsigned char *src = malloc(n), *dst = malloc(n);
    assert_true(src && dst);
    for (size_t i = 0; i < n; i++)
        src[i] = (unsigned char)(i * 2654435761u >> 13);
    dev_buf b = fx_alloc(fx.apool, n + 64);
    fx_ok(dev_upload(fx.ctx, &b, 7, src, n));
    fx_ok(dev_download(fx.ctx, &b, 7, dst, n));
    assert_memory_equal(src, dst, n);
    assert_int_equal(dev_upload(fx.ctx, &b, 100, src, n), HINGE_ERR_RANGE);
    free(src);
    free(dst);
}

static void test_timestamps(void **state)
{
    (void)state;
    fx_need_device();
    if (!dev_ctx_features(fx.ctx)->timestamps)
        skip();
    VkCommandBuffer cmd;
    fx_ok(dev_cmd_begin(fx.ctx, &cmd));
    dev_ts_reset(fx.ctx, cmd, 2);
    dev_ts_mark(fx.ctx, cmd, 0);
    dev_cmd_barrier(cmd);
    dev_ts_mark(fx.ctx, cmd, 1);
    fx_ok(dev_cmd_submit_wait(fx.ctx));
    double ns[2];
    fx_ok(dev_ts_read(fx.ctx, 2, ns));
    assert_true(ns[0] == 0.0 && ns[1] >= 0.0 && ns[1] < 1e9);
}

/* A device name that matches nothing is UNSUPPORTED with a message, and the
 * half-built context is cleaned up. */
static void test_choose_device(void **state)
{
    (void)state;
    fx_need_device();
    char err[HINGE_ERRMSG_MAX] = "";
    dev_ctx *c = NULL;
    dev_ctx_config cfg = {.device = "no-such-gpu-xyz"};
    assert_int_equal(dev_ctx_create(&cfg, &c, err, sizeof err), HINGE_ERR_UNSUPPORTED);
    assert_null(c);
    assert_non_null(strstr(err, "no-such-gpu-xyz"));
    cfg.device = "0";
    assert_int_equal(dev_ctx_create(&cfg, &c, err, sizeof err), HINGE_OK);
    assert_int_equal(dev_ctx_features(c)->index, 0);
    dev_ctx_destroy(c);
    dev_ctx_destroy(NULL);
    dev_pool_destroy(NULL);
    dev_ops_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_features),  cmocka_unit_test(test_pool_too_large), cmocka_unit_test(test_transfer),
        cmocka_unit_test(test_timestamps), cmocka_unit_test(test_choose_device),
    };
    int failures = cmocka_run_group_tests_name("vk_context", tests, fx_setup, fx_teardown);
    return fx_exit_code(failures);
}
