/* Host side of shaders/matmul.comp and shaders/matvec.comp: y = W x. */
#include <stddef.h>

#include "vk_ops_impl.h"

/* Mirrors the push block of matmul.comp and matvec.comp. The flags are the
 * pipeline's specialization constant, not a push constant. */
typedef struct mm_push {
    uint32_t ncols, stride, nrows, row0, m, x_off, x_stride, y_off, y_stride;
    float eps;
} mm_push;
_Static_assert(sizeof(mm_push) == 40, "matmul.comp push block");
_Static_assert(sizeof(mm_push) <= DEV_OP_PUSH_WORDS * 4, "push words");

const uint32_t dev_mm_push_bytes = sizeof(mm_push);

/* matvec_rows.comp in decode: rows per invocation (constant 2), so that a
 * large matrix's invocations prepare their (normed) input once for several
 * rows, kept in XC chunks (constant 1) where a norm makes it worth keeping;
 * small ones keep one row each, for enough workgroups. */
static void rows_shape(const dev_weight *w, uint32_t flags, uint32_t spec[OPS_SPEC_IDS])
{
    uint32_t rows = w->part_rows < w->rows ? w->part_rows : w->rows;
    uint32_t rpl = rows >= 32u * HK_WG ? 8 : rows >= 16u * HK_WG ? 4 : rows >= 8u * HK_WG ? 2 : 1;
    if (rpl > 1)
        spec[2] = rpl;
    if (rpl > 1 && (flags & (HK_F_NORM | HK_F_RESNORM)) && w->cols / HK_CHUNK <= OPS_MAX_XC)
        spec[1] = w->cols / HK_CHUNK;
}

/* matmul_rows.comp (prefill on CPU devices): two rows per invocation share
 * each shuffled vec4 of x where there are rows enough; a gated product has
 * its W2 row for that already (two rows of each: slower, measured). */
static uint32_t prefill_rpl(const dev_weight *w, uint32_t flags)
{
    uint32_t rows = w->part_rows < w->rows ? w->part_rows : w->rows;
    return (flags & (HK_F_SWIGLU | HK_F_GEGLU)) || rows < 4u * HK_WG ? 1 : 2;
}

/* matvec.comp (GPUs): the workgroup stages the normed input in shared
 * memory once for its rows (constant 1: its chunks) where it fits. */
static void split_shape(const dev_ops *o, const dev_weight *w, uint32_t flags, uint32_t spec[OPS_SPEC_IDS])
{
    uint32_t chunks = w->cols / HK_CHUNK;
    if ((flags & (HK_F_NORM | HK_F_RESNORM)) && chunks && chunks * HK_CHUNK * 4 + OPS_SPLIT_SHARED <= o->v.shared_bytes)
        spec[1] = chunks;
}

/* Prefill with few rows (one session's step on the edge: a batch of one
 * row): the pipelines of 1, 2, 4 ... positions per workgroup (constant 3)
 * below the full count (matmul.comp's 8: 1, 2, 4; matmul_rows.comp's 32:
 * up to 16), so that m rows cost about m positions' arithmetic, not
 * pos_per_group. On CPU devices the one position takes decode's rows per
 * invocation (matmul_rows.comp shares each chunk of the input among its
 * rows: no kept input, constant 1). */
static hinge_status few_positions(dev_ops *o, struct dev_kernel *k, const dev_weight *w,
                                  const uint32_t spec[OPS_SPEC_IDS], dev_op *op)
{
    hinge_status s = HINGE_OK;
    for (uint32_t i = 0; s == HINGE_OK && i < DEV_OP_FEW && 1u << i < op->pos_per_group; i++) {
        uint32_t v[OPS_SPEC_IDS] = {spec[0], 0, spec[2], 1u << i};
        if (i == 0 && o->rows_sg) {
            v[2] = 0;
            rows_shape(w, spec[0], v);
            v[1] = 0;
        }
        s = ops_pipeline_spec(o, k, v, &op->few_pipe[i]);
        op->few_rows[i] = HK_WG * (v[2] ? v[2] : 1);
    }
    return s;
}

static hinge_status check_args(dev_ops *o, const dev_mm_args *a, const char *what)
{
    const dev_weight *w = a->w;
    uint32_t glu = a->flags & (HK_F_SWIGLU | HK_F_GEGLU);
    if (!w || !a->x || !a->y)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: weight, x and y are required", what);
    if (a->flags & ~(HK_F_ACC | HK_F_NORM | HK_F_RESNORM | HK_F_SWIGLU | HK_F_GEGLU))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: flags 0x%x are not for matrix products", what, a->flags);
    if (glu == (HK_F_SWIGLU | HK_F_GEGLU) || (glu && !a->w2) || (!glu && a->w2))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: a gated product needs exactly one activation and w2", what);
    if (a->w2 && (a->w2->type != w->type || a->w2->rows != w->rows || a->w2->cols != w->cols ||
                  a->w2->part_rows != w->part_rows))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: w2 differs from w in type or shape", what);
    if ((a->flags & (HK_F_NORM | HK_F_RESNORM)) && (!a->norm || a->norm->size < (uint64_t)w->cols * 4))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: the norm needs a weight of %u floats", what, w->cols);
    if ((a->flags & HK_F_RESNORM) &&
        (!a->res_o || !a->res_w || !a->x_out || a->res_w->size < (uint64_t)w->cols * 4 ||
         (a->x_out->buf == a->x->buf && a->x_out->off < a->x->off + a->x->size &&
          a->x->off < a->x_out->off + a->x_out->size)))
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: HK_F_RESNORM needs res_o, res_w (%u floats) and an x_out apart "
                        "from x", what, w->cols);
    if ((a->flags & (HK_F_NORM | HK_F_RESNORM)) && w->cols % 4)
        return dev_fail(o->c, HINGE_ERR_UNSUPPORTED, "%s: a norm over rows of %u (not a multiple of 4)", what, w->cols);
    if (a->x_off % 4 || a->x_stride % 4)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: x offset %u and stride %u must be multiples of 4", what, a->x_off,
                        a->x_stride);
    if (w->part_rows == 0 || ((uint64_t)w->rows + w->part_rows - 1) / w->part_rows > DEV_OP_MAX_PARTS)
        return dev_fail(o->c, HINGE_ERR_UNSUPPORTED, "%s: %u rows need more than %d descriptor parts", what, w->rows,
                        DEV_OP_MAX_PARTS);
    return HINGE_OK;
}

/* The descriptor sets of every part of w (and w2). */
static hinge_status write_parts(dev_ops *o, const dev_mm_args *a, const struct dev_kernel *k, dev_op *op,
                                const char *what)
{
    VkDescriptorBufferInfo bi[HK_MM_BINDINGS];
    hinge_status s = ops_buf_info(o, a->x, what, &bi[HK_MM_B_X]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->y, what, &bi[HK_MM_B_Y]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, a->norm ? a->norm : a->x, what, &bi[HK_MM_B_NORM]);
    /* without HK_F_RESNORM the kernel reads and writes none of these */
    bool res = a->flags & HK_F_RESNORM;
    if (s == HINGE_OK)
        s = ops_buf_info(o, res ? a->res_o : a->x, what, &bi[HK_MM_B_RO]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, res ? a->res_w : a->norm ? a->norm : a->x, what, &bi[HK_MM_B_RW]);
    if (s == HINGE_OK)
        s = ops_buf_info(o, res ? a->x_out : a->y, what, &bi[HK_MM_B_XOUT]);
    const dev_weight *w = a->w;
    uint32_t p = 0;
    for (uint32_t r0 = 0; s == HINGE_OK && r0 < w->rows; r0 += w->part_rows, p++) {
        uint32_t n = w->rows - r0 < w->part_rows ? w->rows - r0 : w->part_rows;
        VkDeviceSize off = (VkDeviceSize)r0 * w->row_bytes, bytes = (VkDeviceSize)n * w->row_bytes;
        bi[HK_MM_B_W] = (VkDescriptorBufferInfo){.buffer = w->buf.buf, .offset = w->buf.off + off, .range = bytes};
        const dev_weight *w2 = a->w2 ? a->w2 : w;
        bi[HK_MM_B_W2] = (VkDescriptorBufferInfo){.buffer = w2->buf.buf, .offset = w2->buf.off + off, .range = bytes};
        op->part_rows[p] = n;
        s = ops_write_set(o, k, bi, &op->sets[p]);
    }
    op->n_parts = p;
    return s;
}

static hinge_status prepare(dev_ops *o, const dev_mm_args *a, dev_op *op, bool decode)
{
    const char *what = decode ? "dev_prepare_matvec" : "dev_prepare_matmul";
    hinge_status s = check_args(o, a, what);
    if (s != HINGE_OK)
        return s;
    const dev_weight *w = a->w;
    bool rows = !decode || o->mv == DEV_MV_ROWS;
    /* matmul_tiled.comp reads no norm and whole chunks */
    bool tiled = !decode && o->v.tiled && !(a->flags & (HK_F_NORM | HK_F_RESNORM)) && w->cols % HK_CHUNK == 0;
    struct dev_kernel *arr = tiled ? o->matmult : o->rows_sg ? o->matmulr : o->matmuln;
    if (decode)
        arr = rows && !o->rows_sg ? o->matmul1 : o->matvec;
    struct dev_kernel *k = ops_kernel_for(o, arr, w->type, what);
    if (!k)
        return HINGE_ERR_UNSUPPORTED;
    uint32_t spec[OPS_SPEC_IDS] = {a->flags | ops_sub_flags(w->type, w->type)};
    if (decode && o->rows_sg)
        rows_shape(w, a->flags, spec);
    else if (o->rows_sg && !tiled)
        spec[2] = prefill_rpl(w, a->flags);
    else if (decode && o->mv != DEV_MV_ROWS)
        split_shape(o, w, a->flags, spec);
    VkPipeline pipe;
    s = ops_pipeline_spec(o, k, spec, &pipe);
    if (s != HINGE_OK)
        return s;
    uint32_t cap_x = ops_capacity(a->x, a->x_off, a->x_stride, w->cols);
    uint32_t cap_y = ops_capacity(a->y, a->y_off, a->y_stride, w->rows);
    uint32_t cap = cap_x < cap_y ? cap_x : cap_y;
    if (a->flags & HK_F_RESNORM) {
        uint32_t cap_o = ops_capacity(a->res_o, a->x_off, a->x_stride, w->cols);
        uint32_t cap_e = ops_capacity(a->x_out, a->x_off, a->x_stride, w->cols);
        cap = cap < cap_o ? cap : cap_o;
        cap = cap < cap_e ? cap : cap_e;
    }
    if (cap == 0)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: x (%llu bytes) or y (%llu bytes) is too small for one %u x %u "
                        "product", what, (unsigned long long)a->x->size, (unsigned long long)a->y->size, w->rows,
                        w->cols);
    mm_push pc = {
        .ncols = w->cols,
        .stride = (uint32_t)(w->row_bytes / 4),
        .m = 1,
        .x_off = a->x_off,
        .x_stride = a->x_stride,
        .y_off = a->y_off,
        .y_stride = a->y_stride,
        .eps = a->eps,
    };
    ops_op_init(op, decode ? DEV_OP_MATVEC : DEV_OP_MATMUL, k, &pc, sizeof pc);
    op->pipe = pipe;
    op->at_nrows = offsetof(mm_push, nrows) / 4;
    op->at_row0 = offsetof(mm_push, row0) / 4;
    op->rows_per_group = tiled ? HK_MT_ROWS : rows ? HK_WG * (spec[2] ? spec[2] : 1) : HK_WG / HK_MV_LANES;
    if (decode) {
        op->max_m = 1;
    } else {
        op->at_m = offsetof(mm_push, m) / 4;
        op->pos_per_group = tiled ? HK_MT_POS : o->rows_sg ? HK_MR_POS : HK_MM_POS;
        op->max_m = cap;
        if (!tiled && o->few)
            s = few_positions(o, k, w, spec, op);
    }
    return s == HINGE_OK ? write_parts(o, a, k, op, what) : s;
}

hinge_status dev_prepare_matvec(dev_ops *o, const dev_mm_args *a, dev_op *op) { return prepare(o, a, op, true); }

hinge_status dev_prepare_matmul(dev_ops *o, const dev_mm_args *a, dev_op *op) { return prepare(o, a, op, false); }
