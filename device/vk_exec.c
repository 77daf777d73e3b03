/* The layer executor: see vk_exec.h. Creation and runs here; weights,
 * buffers and the op list in vk_exec_build.c; command buffers in
 * vk_exec_record.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops.h"
#include "vk_exec_impl.h"

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

hinge_status ex_fail_ctx(vk_exec *e, hinge_status s, const char *what)
{
    return hinge_fail(e->errmsg, sizeof e->errmsg, s, "%s: %s", what, dev_ctx_errmsg(e->c));
}

/* The shapes the executor's buffers assume. */
hinge_status ex_check_model(const model *m, char *err, size_t errlen)
{
    const model_hparams *hp = &m->hp;
    if (hp->n_embd % 4)
        return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED, "n_embd %u is not a multiple of 4", hp->n_embd);
    if (hp->n_head == 0 || hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv)
        return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED, "%u query heads over %u kv heads", hp->n_head,
                          hp->n_head_kv);
    /* the CPU engine's newer architectures have no shaders yet */
    if ((hp->arch != ARCH_LLAMA && hp->arch != ARCH_GEMMA3) || m->rope_freqs.data)
        return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED, "the Vulkan backend runs llama and gemma3 without "
                          "rope_freqs; %s%s runs on the CPU only", model_arch_name(hp->arch),
                          m->rope_freqs.data ? " with rope_freqs" : "");
    return HINGE_OK;
}

static hinge_status create_commands(vk_exec *e)
{
    VkCommandBuffer cmds[3];
    hinge_status s = dev_cmd_alloc(e->c, 3, cmds);
    if (s != HINGE_OK)
        return ex_fail_ctx(e, s, "command buffers");
    e->cmd_dec = cmds[0];
    e->cmd_pre = cmds[1];
    const dev_features *f = dev_ctx_features(e->c);
    if (!f->timestamps) {
        dev_cmd_free(e->c, 1, &cmds[2]);
        return HINGE_OK;
    }
    e->cmd_dec_ts = cmds[2];
    e->n_steps_max = e->pre.n > e->dec.n ? e->pre.n : e->dec.n;
    VkQueryPoolCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
        .queryType = VK_QUERY_TYPE_TIMESTAMP,
        .queryCount = e->n_steps_max + 1,
    };
    VkResult r = vkCreateQueryPool(dev_ctx_device(e->c), &qci, NULL, &e->ts_pool);
    if (r != VK_SUCCESS) {
        e->ts_pool = VK_NULL_HANDLE;
        return ex_fail_ctx(e, dev_vk_fail(e->c, r, "vkCreateQueryPool", "executor"), "timestamps");
    }
    e->op_ns = calloc(e->n_steps_max + 1, sizeof *e->op_ns);
    e->ts_raw = calloc(e->n_steps_max + 1, sizeof *e->ts_raw);
    if (!e->op_ns || !e->ts_raw)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_NOMEM, "timestamps: out of host memory");
    return HINGE_OK;
}

static uint32_t default_ctx(const model *m, uint32_t ctx)
{
    const model_hparams *hp = &m->hp;
    if (ctx == 0)
        ctx = hp->n_ctx_train && hp->n_ctx_train < EX_DEFAULT_CTX ? hp->n_ctx_train : EX_DEFAULT_CTX;
    return ctx;
}

uint64_t vk_exec_kv_bytes(const model *m, uint32_t layers, uint32_t ctx)
{
    const model_hparams *hp = &m->hp;
    uint64_t row = (uint64_t)hp->n_head_kv * (hp->head_dim + hp->head_dim_v);
    return (uint64_t)layers * default_ctx(m, ctx) * row * sizeof(float);
}

hinge_status vk_exec_create(dev_ctx *c, const model *m, uint32_t k, uint32_t ctx, uint32_t max_batch, vk_exec **out,
                            char *err, size_t errlen)
{
    if (k > m->hp.n_layer)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "k = %u layers: the model has %u", k, m->hp.n_layer);
    vk_exec_config cfg = {.first = 0, .end = k, .embed = true, .ctx = ctx, .max_batch = max_batch};
    return vk_exec_create_range(c, m, &cfg, out, err, errlen);
}

hinge_status vk_exec_create_range(dev_ctx *c, const model *m, const vk_exec_config *cfg, vk_exec **out, char *err,
                                  size_t errlen)
{
    const model_hparams *hp = &m->hp;
    uint32_t ctx = default_ctx(m, cfg->ctx);
    uint32_t max_batch = cfg->max_batch ? cfg->max_batch : EX_DEFAULT_BATCH;
    if (cfg->end > hp->n_layer || cfg->first > cfg->end)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "layers [%u, %u): the model has %u", cfg->first, cfg->end,
                          hp->n_layer);
    if ((cfg->embed && cfg->first > 0) || (cfg->head && cfg->end < hp->n_layer))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "layers [%u, %u) of %u: the embedding needs first = 0, "
                          "the head end = %u", cfg->first, cfg->end, hp->n_layer, hp->n_layer);
    if (ctx > EX_MAX_CTX || max_batch > EX_MAX_BATCH)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "context %u (max %d) or batch %u (max %d) too large", ctx,
                          EX_MAX_CTX, max_batch, EX_MAX_BATCH);
    const vk_model *w = cfg->weights;
    if (cfg->batch_item && (!w || cfg->embed || !cfg->head))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "a batch item's executor needs the head (the batch's), "
                          "shared weights and no embedding");
    if (w && (w->m != m || w->c != c || w->first > cfg->first || w->end < cfg->end || (cfg->embed && !w->embed) ||
              (cfg->head && !w->head)))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "the shared weights (layers [%u, %u)%s%s) do not cover "
                          "layers [%u, %u)%s%s of this model on this device", w->first, w->end,
                          w->embed ? ", embedding" : "", w->head ? ", head" : "", cfg->first, cfg->end,
                          cfg->embed ? ", embedding" : "", cfg->head ? ", head" : "");
    hinge_status s = ex_check_model(m, err, errlen);
    if (s != HINGE_OK)
        return s;
    vk_exec *e = calloc(1, sizeof *e);
    if (!e)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of host memory for the executor");
    e->c = c;
    e->m = m;
    e->first = cfg->first;
    e->end = cfg->end;
    e->k = cfg->end - cfg->first;
    e->embed = cfg->embed;
    e->head = cfg->head;
    e->batch_item = cfg->batch_item;
    e->w = w;
    e->ctx = ctx;
    e->max_batch = max_batch;
    e->head_rows = cfg->batch_item ? 0 : cfg->head_rows < max_batch ? cfg->head_rows : max_batch;
    e->few_rows = cfg->few_rows;
    e->d = hp->n_embd;
    e->q_dim = hp->n_head * hp->head_dim;
    e->kv_dim = hp->n_head_kv * hp->head_dim;
    e->v_dim = hp->n_head_kv * hp->head_dim_v;
    e->o_dim = hp->n_head * hp->head_dim_v;
    e->qkv_stride = (e->q_dim + e->kv_dim + e->v_dim + 3u) & ~3u;
    e->att_stride = (e->o_dim + 3u) & ~3u;
    e->ff_stride = (hp->n_ff + 3u) & ~3u;
    s = ex_build(e);
    if (s == HINGE_OK && !e->batch_item) /* a batch item's steps are recorded into the batch's */
        s = create_commands(e);
    if (s == HINGE_OK && !e->batch_item)
        s = ex_record_decode(e);
    e->last = &e->dec;
    if (s == HINGE_OK && dev_ops_variant(e->ops)->selftest && !cfg->no_selftest)
        s = ex_selftest(e);
    if (s != HINGE_OK) {
        hinge_fail(err, errlen, s, "%s", e->errmsg);
        vk_exec_destroy(e);
        return s;
    }
    hinge_log(dev_ctx_logger(c), HINGE_LOG_INFO,
              "vulkan: %sexecutor for %slayers [%u, %u) of %u%s, context %u, batch %u: %u dispatches per decode "
              "step, %u ops per prefill pass (%s)", e->batch_item ? "batch item's " : "", e->embed ? "embed + " : "",
              e->first, e->end, hp->n_layer, e->head ? " + head" : "", ctx, e->max_batch, e->dec.dispatches, e->pre.n,
              dev_ops_describe(e->ops));
    *out = e;
    return HINGE_OK;
}

void vk_exec_destroy(vk_exec *e)
{
    if (!e)
        return;
    VkDevice d = dev_ctx_device(e->c);
    vkDeviceWaitIdle(d);
    VkCommandBuffer cmds[3] = {e->cmd_dec, e->cmd_pre, e->cmd_dec_ts};
    dev_cmd_free(e->c, 3, cmds);
    if (e->ts_pool)
        vkDestroyQueryPool(d, e->ts_pool, NULL);
    ex_free_build(e);
    free(e->op_ns);
    free(e->ts_raw);
    free(e->post_w);
    free(e->post_tmp);
    free(e);
}

static uint64_t pool_bytes(const dev_pool *p) { return p ? dev_pool_capacity(p) : 0; }

uint64_t vk_exec_device_bytes(const vk_exec *e)
{
    return pool_bytes(e->act_pool) + pool_bytes(e->kv_pool) + pool_bytes(e->host_pool) + pool_bytes(e->rb_pool) +
           pool_bytes(e->bh_pool) + pool_bytes(e->bh_rb_pool) + vk_model_device_bytes(e->own);
}

const char *vk_exec_errmsg(const vk_exec *e) { return e ? e->errmsg : "no executor"; }
uint32_t vk_exec_layers(const vk_exec *e) { return e->k; }
uint32_t vk_exec_ctx(const vk_exec *e) { return e->ctx; }
uint32_t vk_exec_max_batch(const vk_exec *e) { return e->max_batch; }
const char *vk_exec_describe(const vk_exec *e) { return dev_ops_describe(e->ops); }

/* ---- runs ---- */

/* Adds the last submission's per-op GPU times to op_ns. */
static hinge_status read_timestamps(vk_exec *e)
{
    const dev_features *f = dev_ctx_features(e->c);
    uint32_t n = e->last->n + 1;
    VkResult r = vkGetQueryPoolResults(dev_ctx_device(e->c), e->ts_pool, 0, n, n * sizeof(uint64_t), e->ts_raw,
                                       sizeof(uint64_t), VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
    if (r != VK_SUCCESS)
        return ex_fail_ctx(e, dev_vk_fail(e->c, r, "vkGetQueryPoolResults", "executor"), "timestamps");
    uint64_t mask = f->timestamp_bits >= 64 ? ~0ull : (1ull << f->timestamp_bits) - 1;
    for (uint32_t i = 0; i < e->last->n; i++) {
        double ns = (double)((e->ts_raw[i + 1] - e->ts_raw[i]) & mask) * f->timestamp_period_ns;
        e->op_ns[i] += ns;
        e->stats.gpu_ns += ns;
    }
    return HINGE_OK;
}

hinge_status ex_check_input(vk_exec *e, const int32_t *tokens, const float *hidden, size_t n, uint32_t pos0)
{
    if (e->broken)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_VULKAN, "the device failed in an earlier run; "
                          "the executor must be recreated");
    if (e->embed != (tokens != NULL) || (!tokens && !hidden))
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_INVALID, "this executor takes %s (%s)",
                          e->embed ? "token ids" : "hidden rows", e->embed ? "vk_exec_run" : "vk_exec_run_hidden");
    if (n == 0)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_INVALID, "no positions");
    if ((uint64_t)pos0 + n > e->ctx)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_RANGE,
                          "positions [%u, %llu) do not fit the %u-position context", pos0,
                          (unsigned long long)pos0 + n, e->ctx);
    uint32_t nv = e->m->hp.n_vocab;
    for (size_t i = 0; tokens && i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= nv)
            return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_RANGE,
                              "token %zu: id %d outside the vocabulary (%u)", i, tokens[i], nv);
    return HINGE_OK;
}

/* decode, gemma3: out (the residual) += norm(o) * post_ffw_norm, o read
 * back after it; as model/forward.c's ffn_block ends. */
static void add_post_norm(vk_exec *e, float *out)
{
    const float *o = (const float *)e->out.host + e->d;
    op_rmsnorm(e->post_tmp, o, e->post_w, e->d, e->m->hp.rms_eps);
    op_add(out, e->post_tmp, e->d);
}

/* One pass of m <= max_batch positions from pos (tokens or hidden rows):
 * the decode pass for a run of one position, else the prefill pass (for
 * each chunk, the last one of one position too: a run's timings are one
 * pass's). With the head, out (NULL: none wanted) gets the logits when
 * head, and nothing otherwise. */
static hinge_status run_chunk(vk_exec *e, const int32_t *tokens, const float *hidden, uint32_t m, uint32_t pos,
                              float *out, bool decode, bool head)
{
    if (tokens)
        memcpy(e->tok.host, tokens, m * sizeof(int32_t));
    else
        memcpy(e->hin.host, hidden, (size_t)m * e->d * sizeof(float));
    *(uint32_t *)e->pos.host = pos;
    VkCommandBuffer cmd = e->profiling ? e->cmd_dec_ts : e->cmd_dec;
    uint32_t dispatches = e->dec.dispatches;
    if (!decode) {
        hinge_status s = ex_record_prefill(e, m, head, e->profiling, &dispatches);
        if (s != HINGE_OK)
            return s;
        cmd = e->cmd_pre;
        e->stats.recorded++;
    }
    hinge_status s = dev_submit_wait(e->c, cmd);
    e->stats.submits++;
    e->stats.waits++;
    if (s != HINGE_OK) {
        e->broken = true;
        return ex_fail_ctx(e, s, "run");
    }
    e->stats.dispatches += dispatches;
    e->stats.chunks++;
    if (e->profiling && (s = read_timestamps(e)) != HINGE_OK)
        return s;
    if (e->head) {
        if (head && out)
            memcpy(out, e->out.host, (size_t)e->m->hp.n_vocab * sizeof(float));
        return HINGE_OK;
    }
    memcpy(out, e->out.host, (size_t)m * e->d * sizeof(float));
    if (decode && e->dec_post)
        add_post_norm(e, out);
    return HINGE_OK;
}

static hinge_status run(vk_exec *e, const int32_t *tokens, const float *hidden, size_t n, uint32_t pos0, float *out)
{
    double t0 = now_ns();
    if (e->batch_item)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_INVALID, "a batch item's executor runs only in "
                          "vk_exec_run_batch");
    hinge_status s = ex_check_input(e, tokens, hidden, n, pos0);
    if (s != HINGE_OK)
        return s;
    e->stats = (vk_exec_stats){.positions = (uint32_t)n};
    e->last_profiled = e->profiling;
    e->last = n == 1 ? &e->dec : &e->pre;
    if (e->profiling)
        memset(e->op_ns, 0, e->n_steps_max * sizeof *e->op_ns);
    for (size_t done = 0; done < n && s == HINGE_OK;) {
        uint32_t m = n - done < e->max_batch ? (uint32_t)(n - done) : e->max_batch;
        bool last = done + m == n;
        /* the head on the last chunk only, and in prefill only when asked */
        s = run_chunk(e, tokens ? tokens + done : NULL, hidden ? hidden + done * e->d : NULL, m,
                      pos0 + (uint32_t)done, e->head ? out : out + done * e->d, n == 1, last && out);
        done += m;
    }
    e->stats.wall_ns = now_ns() - t0;
    if (s != HINGE_OK)
        e->last_profiled = false;
    return s;
}

hinge_status vk_exec_run(vk_exec *e, const int32_t *tokens, size_t n, uint32_t pos0, float *hidden_out)
{
    if (!tokens)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_INVALID, "no tokens");
    return run(e, tokens, NULL, n, pos0, hidden_out);
}

hinge_status vk_exec_run_hidden(vk_exec *e, const float *hidden, size_t n, uint32_t pos0, float *out)
{
    if (!hidden || (!e->head && !out))
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_INVALID, "no %s rows", hidden ? "output" : "input");
    return run(e, NULL, hidden, n, pos0, out);
}

/* ---- measurement ---- */

hinge_status vk_exec_set_profiling(vk_exec *e, bool on)
{
    if (on && e->batch_item)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_INVALID, "a batch item's executor runs only in "
                          "its batch's command buffer: profile the batch executor");
    if (on && !e->ts_pool)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_UNSUPPORTED, "%s has no compute timestamps",
                          dev_ctx_features(e->c)->name);
    e->profiling = on;
    return HINGE_OK;
}

void vk_exec_get_stats(const vk_exec *e, vk_exec_stats *out) { *out = e->stats; }

uint32_t vk_exec_op_count(const vk_exec *e) { return e->last->n; }

hinge_status vk_exec_op(const vk_exec *e, uint32_t i, vk_exec_op_info *out)
{
    if (i >= e->last->n)
        return HINGE_ERR_RANGE;
    const ex_step *st = &e->last->steps[i];
    *out = (vk_exec_op_info){
        .layer = st->layer,
        .name = st->name,
        .dispatches = st->op.n_parts,
        .ns = e->last_profiled ? e->op_ns[i] : 0.0,
    };
    return HINGE_OK;
}

hinge_status vk_exec_layer_times(const vk_exec *e, double *ns)
{
    if (!e->last_profiled)
        return HINGE_ERR_INVALID;
    for (uint32_t i = 0; i <= e->k + e->head; i++)
        ns[i] = 0.0;
    for (uint32_t i = 0; i < e->last->n; i++) {
        int32_t l = e->last->steps[i].layer;
        ns[l < 0 ? 0 : l - (int32_t)e->first + 1] += e->op_ns[i];
    }
    return HINGE_OK;
}
