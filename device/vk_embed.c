/* Host side of shaders/embed.comp: the token embedding. */
#include <stddef.h>

#include "vk_ops_impl.h"

/* Mirrors embed.comp's push block. */
typedef struct em_push {
    uint32_t ncols, stride, row0, nrows, m, tok_off, o_off, o_stride;
    float scale;
} em_push;
_Static_assert(sizeof(em_push) == 36, "embed.comp push block");
_Static_assert(sizeof(em_push) <= DEV_OP_PUSH_WORDS * 4, "push words");

const uint32_t dev_embed_push_bytes = sizeof(em_push);

hinge_status dev_prepare_embed(dev_ops *o, const dev_embed_args *a, dev_op *op)
{
    const char *what = "dev_prepare_embed";
    const dev_weight *w = a->w;
    if (!w || !a->tokens || !a->out)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: weight, tokens and out are required", what);
    if (a->out_off % 4 || a->out_stride % 4)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: out offset %u and stride %u must be multiples of 4", what,
                        a->out_off, a->out_stride);
    if (w->part_rows == 0 || ((uint64_t)w->rows + w->part_rows - 1) / w->part_rows > DEV_OP_MAX_PARTS)
        return dev_fail(o->c, HINGE_ERR_UNSUPPORTED, "%s: %u rows need more than %d descriptor parts", what, w->rows,
                        DEV_OP_MAX_PARTS);
    struct dev_kernel *k = ops_kernel_for(o, o->embed, w->type, what);
    if (!k)
        return HINGE_ERR_UNSUPPORTED;
    VkPipeline pipe;
    hinge_status s = ops_pipeline(o, k, ops_sub_flags(w->type, w->type), &pipe);
    if (s != HINGE_OK)
        return s;
    uint32_t cap_o = ops_capacity(a->out, a->out_off, a->out_stride, w->cols);
    uint64_t cap_t = a->tokens->size / 4 > a->tok_off ? a->tokens->size / 4 - a->tok_off : 0;
    uint32_t cap = cap_o < cap_t ? cap_o : (uint32_t)cap_t;
    if (cap == 0)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: out or tokens cannot hold one position", what);
    em_push pc = {
        .ncols = w->cols,
        .stride = (uint32_t)(w->row_bytes / 4),
        .tok_off = a->tok_off,
        .o_off = a->out_off,
        .o_stride = a->out_stride,
        .scale = a->scale,
    };
    ops_op_init(op, DEV_OP_EMBED, k, &pc, sizeof pc);
    op->pipe = pipe;
    op->at_m = offsetof(em_push, m) / 4;
    op->at_row0 = offsetof(em_push, row0) / 4;
    op->at_nrows = offsetof(em_push, nrows) / 4;
    op->groups_x = (w->cols / HK_CHUNK + 1 + HK_WG - 1) / HK_WG; /* chunks, and one for an f32/f16 tail */
    op->pos_per_group = 1;
    op->max_m = cap;
    VkDescriptorBufferInfo bi[HK_EM_BINDINGS];
    s = ops_buf_info(o, a->tokens, what, &bi[HK_EM_B_TOK]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->out, what, &bi[HK_EM_B_OUT]);
    uint32_t p = 0;
    for (uint32_t r0 = 0; s == HINGE_OK && r0 < w->rows; r0 += w->part_rows, p++) {
        uint32_t n = w->rows - r0 < w->part_rows ? w->rows - r0 : w->part_rows;
        bi[HK_EM_B_W] = (VkDescriptorBufferInfo){
            .buffer = w->buf.buf,
            .offset = w->buf.off + (VkDeviceSize)r0 * w->row_bytes,
            .range = (VkDeviceSize)n * w->row_bytes,
        };
        op->part_rows[p] = n;
        s = ops_write_set(o, k, bi, &op->sets[p]);
    }
    op->n_parts = p;
    return s;
}
