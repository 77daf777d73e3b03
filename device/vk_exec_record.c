/* The executor's command buffers: the decode step (recorded once, at
 * creation, and replayed) and the prefill chunks (recorded per chunk). A
 * pass is its op list in order, a barrier before each op that reads what
 * an earlier op wrote, then a copy of the hidden state into the readback
 * buffer (decode, gemma3: the residual, then the last FFN output o that the
 * host norms and adds). */
#include "vk_exec_impl.h"

hinge_status ex_cmd_begin(vk_exec *e, VkCommandBuffer cmd, bool once)
{
    VkResult r = vkResetCommandBuffer(cmd, 0);
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = once ? VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT : 0,
    };
    if (r == VK_SUCCESS)
        r = vkBeginCommandBuffer(cmd, &bi);
    if (r != VK_SUCCESS)
        return ex_fail_ctx(e, dev_vk_fail(e->c, r, "vkBeginCommandBuffer", "executor"), "recording");
    return HINGE_OK;
}

hinge_status ex_cmd_end(vk_exec *e, VkCommandBuffer cmd)
{
    VkResult r = vkEndCommandBuffer(cmd);
    if (r != VK_SUCCESS)
        return ex_fail_ctx(e, dev_vk_fail(e->c, r, "vkEndCommandBuffer", "executor"), "recording");
    return HINGE_OK;
}

void ex_copy_rows(VkCommandBuffer cmd, const dev_buf *src, uint64_t src_off, const dev_buf *dst,
                      uint64_t dst_off, uint64_t floats)
{
    VkBufferCopy r = {.srcOffset = src->off + src_off * sizeof(float), .dstOffset = dst->off + dst_off * sizeof(float),
                      .size = floats * sizeof(float)};
    vkCmdCopyBuffer(cmd, src->buf, dst->buf, 1, &r);
}

/* Pass p over m positions into cmd (head: with the head, on the last of
 * them); with ts, timestamp 0 before the first op and i + 1 after op i. */
static hinge_status record_pass(vk_exec *e, const ex_pass *p, VkCommandBuffer cmd, uint32_t m, bool head, bool ts,
                                uint32_t *dispatches)
{
    uint32_t n = 0;
    if (ts) {
        vkCmdResetQueryPool(cmd, e->ts_pool, 0, p->n + 1);
        vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, e->ts_pool, 0);
    }
    if (!e->embed) { /* the input rows, from the host-visible step buffer */
        ex_copy_rows(cmd, &e->hin, 0, &e->x, 0, (uint64_t)m * e->d);
        dev_cmd_barrier(cmd);
    }
    const dev_buf *x = p->decode ? e->dec_x : &e->x; /* the residual after the layers */
    for (uint32_t i = 0; i < p->n; i++) {
        const ex_step *st = &p->steps[i];
        if (st->last_row && !head) {
            if (ts) /* the slot stays in order: a zero-length op */
                vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, e->ts_pool, i + 1);
            continue;
        }
        if (st->barrier)
            dev_cmd_barrier(cmd);
        if (st->last_row) {
            ex_copy_rows(cmd, x, (uint64_t)(m - 1) * e->d, &e->hl, 0, e->d);
            dev_cmd_barrier(cmd);
        }
        /* positions come from the step buffer: record with pos0 = 0 */
        hinge_status s = dev_op_record(cmd, &st->op, st->last_row ? 1 : m, 0);
        if (s != HINGE_OK)
            return hinge_fail(e->errmsg, sizeof e->errmsg, s, "recording %s of layer %d for %u positions: over the "
                              "op's capacity", st->name, st->layer, m);
        n += st->op.n_parts;
        if (ts)
            vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, e->ts_pool, i + 1);
    }
    dev_cmd_barrier(cmd);
    if (e->head) { /* the logits, or nothing for a chunk without the head */
        if (head)
            ex_copy_rows(cmd, &e->logits, 0, &e->out, 0, e->m->hp.n_vocab);
        dev_cmd_barrier(cmd);
        *dispatches = n;
        return HINGE_OK;
    }
    VkDeviceSize row = (VkDeviceSize)e->d * sizeof(float);
    VkBufferCopy region[2] = {
        {.srcOffset = x->off, .dstOffset = e->out.off, .size = m * row},
        {.srcOffset = e->o.off, .dstOffset = e->out.off + row, .size = row},
    };
    vkCmdCopyBuffer(cmd, x->buf, e->out.buf, p->decode && e->dec_post ? 2 : 1, region);
    dev_cmd_barrier(cmd);
    *dispatches = n;
    return HINGE_OK;
}

hinge_status ex_record_decode(vk_exec *e)
{
    hinge_status s = ex_cmd_begin(e, e->cmd_dec, false);
    if (s == HINGE_OK)
        s = record_pass(e, &e->dec, e->cmd_dec, 1, true, false, &e->dec.dispatches);
    if (s == HINGE_OK)
        s = ex_cmd_end(e, e->cmd_dec);
    if (s != HINGE_OK || !e->cmd_dec_ts)
        return s;
    uint32_t n;
    s = ex_cmd_begin(e, e->cmd_dec_ts, false);
    if (s == HINGE_OK)
        s = record_pass(e, &e->dec, e->cmd_dec_ts, 1, true, true, &n);
    return s == HINGE_OK ? ex_cmd_end(e, e->cmd_dec_ts) : s;
}

hinge_status ex_record_prefill(vk_exec *e, uint32_t m, bool head, bool timestamps, uint32_t *dispatches)
{
    hinge_status s = ex_cmd_begin(e, e->cmd_pre, true);
    if (s == HINGE_OK)
        s = record_pass(e, &e->pre, e->cmd_pre, m, head, timestamps, dispatches);
    return s == HINGE_OK ? ex_cmd_end(e, e->cmd_pre) : s;
}
