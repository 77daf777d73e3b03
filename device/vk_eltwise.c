/* Host side of shaders/glu.comp and shaders/add.comp. */
#include <stddef.h>

#include "vk_ops_impl.h"

/* Mirrors the push block of glu.comp and add.comp. */
typedef struct ew_push {
    uint32_t n, flags;
} ew_push;
_Static_assert(sizeof(ew_push) == 8, "glu.comp / add.comp push block");

const uint32_t dev_eltwise_push_bytes = sizeof(ew_push);

static hinge_status prepare(dev_ops *o, const struct dev_kernel *k, dev_op_kind kind, const dev_buf *a,
                            const dev_buf *b, uint32_t per_pos, uint32_t flags, dev_op *op, const char *what)
{
    if (!a || !b || per_pos == 0)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: a, b and per_pos are required", what);
    if (!k->module)
        return dev_fail(o->c, HINGE_ERR_UNSUPPORTED, "%s: the ops were made attention-only", what);
    uint64_t fa = a->size / 4, fb = b->size / 4;
    uint64_t cap = (fa < fb ? fa : fb) / per_pos;
    if (cap == 0)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: buffers hold less than one position of %u floats", what, per_pos);
    ew_push pc = {.flags = flags};
    ops_op_init(op, kind, k, &pc, sizeof pc);
    op->at_m = offsetof(ew_push, n) / 4;
    op->per_pos = per_pos;
    op->max_m = cap > UINT32_MAX / per_pos ? UINT32_MAX / per_pos : (uint32_t)cap;
    VkDescriptorBufferInfo bi[HK_EW_BINDINGS];
    hinge_status s = ops_buf_info(o, a, what, &bi[HK_EW_B_A]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, b, what, &bi[HK_EW_B_B]);
    if (s == HINGE_OK)
        s = ops_write_set(o, k, bi, &op->sets[0]);
    return s;
}

hinge_status dev_prepare_glu(dev_ops *o, const dev_buf *a, const dev_buf *b, uint32_t per_pos, uint32_t flags,
                             dev_op *op)
{
    if (flags != HK_F_SWIGLU && flags != HK_F_GEGLU)
        return dev_fail(o->c, HINGE_ERR_INVALID, "dev_prepare_glu: flags must be HK_F_SWIGLU or HK_F_GEGLU");
    return prepare(o, &o->glu, DEV_OP_GLU, a, b, per_pos, flags, op, "dev_prepare_glu");
}

hinge_status dev_prepare_add(dev_ops *o, const dev_buf *a, const dev_buf *b, uint32_t per_pos, dev_op *op)
{
    return prepare(o, &o->add, DEV_OP_ADD, a, b, per_pos, 0, op, "dev_prepare_add");
}
