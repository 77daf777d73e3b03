/* Host side of shaders/rmsnorm.comp. */
#include <stddef.h>

#include "vk_ops_impl.h"

/* Mirrors rmsnorm.comp's push block. */
typedef struct rn_push {
    uint32_t n, m, x_off, x_stride, o_off, o_stride, r_off, r_stride, o2_off, o2_stride, w_stride, flags;
    float eps;
} rn_push;
_Static_assert(sizeof(rn_push) == 52, "rmsnorm.comp push block");
_Static_assert(sizeof(rn_push) <= DEV_OP_PUSH_WORDS * 4, "push words");

const uint32_t dev_rmsnorm_push_bytes = sizeof(rn_push);

static uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }

hinge_status dev_prepare_rmsnorm(dev_ops *o, const dev_norm_args *a, dev_op *op)
{
    const char *what = "dev_prepare_rmsnorm";
    uint32_t groups = a->groups ? a->groups : 1;
    bool add = a->flags & HK_F_ADD, norm2 = a->flags & HK_F_NORM2;
    if (!a->x || !a->w || !a->out || a->n == 0 || (add && !a->res) || (norm2 && (!a->w2 || !a->out2)))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: x, w, out, n (and res / w2, out2 for the flags) are required",
                        what);
    if (a->flags & ~(HK_F_ADD | HK_F_NORM2))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: flags 0x%x are not for norms", what, a->flags);
    uint32_t len = groups * a->n;
    uint64_t wlen = (uint64_t)(groups - 1) * a->w_stride + a->n;
    if (a->w->size < wlen * 4 || (norm2 && a->w2->size < wlen * 4))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: the weight needs %llu floats", what, (unsigned long long)wlen);
    uint32_t cap = min_u32(ops_capacity(a->x, a->x_off, a->x_stride, len),
                           ops_capacity(a->out, a->o_off, a->o_stride, len));
    if (add)
        cap = min_u32(cap, ops_capacity(a->res, a->r_off, a->r_stride, len));
    if (norm2)
        cap = min_u32(cap, ops_capacity(a->out2, a->o2_off, a->o2_stride, len));
    if (cap == 0)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: a buffer cannot hold one position of %u floats", what, len);
    rn_push pc = {
        .n = a->n,
        .x_off = a->x_off,
        .x_stride = a->x_stride,
        .o_off = a->o_off,
        .o_stride = a->o_stride,
        .r_off = a->r_off,
        .r_stride = a->r_stride,
        .o2_off = a->o2_off,
        .o2_stride = a->o2_stride,
        .w_stride = a->w_stride,
        .flags = a->flags,
        .eps = a->eps,
    };
    ops_op_init(op, DEV_OP_RMSNORM, &o->rmsnorm, &pc, sizeof pc);
    op->at_m = offsetof(rn_push, m) / 4;
    op->groups_x = groups;
    op->pos_per_group = 1;
    op->max_m = cap;
    VkDescriptorBufferInfo bi[HK_RN_BINDINGS];
    hinge_status s = ops_buf_info(o, a->x, what, &bi[HK_RN_B_X]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->w, what, &bi[HK_RN_B_W]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->out, what, &bi[HK_RN_B_OUT]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, add ? a->res : a->x, what, &bi[HK_RN_B_RES]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, norm2 ? a->w2 : a->w, what, &bi[HK_RN_B_W2]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, norm2 ? a->out2 : a->out, what, &bi[HK_RN_B_OUT2]);
    if (s == HINGE_OK)
        s = ops_write_set(o, &o->rmsnorm, bi, &op->sets[0]);
    return s;
}
