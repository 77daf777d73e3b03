/* The CPU forward pass: see forward.h. */
#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "quant.h"

/* Matrix jobs smaller than this many multiply-adds run on one thread: a
 * fork-join costs more than they do. */
enum { MT_MIN_WORK = 1 << 16, MAX_MM = 3 };

struct fwd_ctx {
    const model *m;
    threadpool *tp;
    uint32_t a, b;         /* layers [a, b) */
    uint32_t ctx;          /* cache positions */
    uint32_t max_batch;    /* positions per pass */
    size_t kv_dim, v_dim;  /* n_head_kv * head_dim (_v) */
    size_t q_dim, o_dim;   /* n_head * head_dim, n_head * head_dim_v */
    float *k_cache;        /* (b - a, ctx, kv_dim) */
    float *v_cache;        /* (b - a, ctx, v_dim) */
    float *xb;             /* (max_batch, n_embd) normed input */
    float *q, *k, *v;      /* (max_batch, q_dim / kv_dim / v_dim) */
    float *att;            /* (max_batch, o_dim) attention output */
    float *o;              /* (max_batch, n_embd) */
    float *g, *u;          /* (max_batch, n_ff) */
    float *mm_scratch;     /* (threads, QUANT_MM_ROWS * max_cols) */
    size_t mm_stride;
    float *scores;         /* (threads, ctx) */
    size_t bytes;          /* all of the above, and this struct */
    char errmsg[HINGE_ERRMSG_MAX];
};

/* ---- threaded matrix products ---- */

/* Up to MAX_MM products sharing one input x (m rows): y_i = x W_i^T. */
typedef struct mm_job {
    fwd_ctx *f;
    const float *x;
    size_t m;
    int n;
    const weight *w[MAX_MM];
    float *y[MAX_MM];
    size_t rows_total;
} mm_job;

static void mm_range(mm_job *j, size_t lo, size_t hi, int thread)
{
    size_t base = 0;
    for (int i = 0; i < j->n && lo < hi; i++) {
        const weight *w = j->w[i];
        size_t end = base + w->rows;
        if (lo < end) {
            size_t r0 = lo - base, r1 = (hi < end ? hi : end) - base;
            if (j->m == 1)
                quant_matvec(w->type, w->data, w->cols, j->x, j->y[i], r0, r1);
            else
                quant_matmul(w->type, w->data, w->cols, j->x, j->m, j->y[i], w->rows, r0, r1,
                             j->f->mm_scratch + (size_t)thread * j->f->mm_stride);
            lo = end < hi ? end : hi;
        }
        base = end;
    }
}

static void mm_task(void *ctx, int task, int n_tasks, int thread)
{
    mm_job *j = ctx;
    /* split into n_tasks slices aligned to 16 rows */
    size_t per = (j->rows_total + (size_t)n_tasks - 1) / (size_t)n_tasks;
    per = (per + 15) & ~(size_t)15;
    size_t lo = (size_t)task * per, hi = lo + per;
    if (hi > j->rows_total)
        hi = j->rows_total;
    if (lo < hi)
        mm_range(j, lo, hi, thread);
}

static void mm_run(mm_job *j)
{
    size_t work = 0;
    j->rows_total = 0;
    for (int i = 0; i < j->n; i++) {
        j->rows_total += j->w[i]->rows;
        work += j->w[i]->rows * j->w[i]->cols * j->m;
    }
    int threads = tp_threads(j->f->tp);
    int n_tasks = work < MT_MIN_WORK ? 1 : (j->m == 1 ? threads : 4 * threads);
    tp_run(n_tasks == 1 ? NULL : j->f->tp, mm_task, j, n_tasks);
}

static void matmul(fwd_ctx *f, const weight *w, const float *x, size_t m, float *y)
{
    mm_job j = {.f = f, .x = x, .m = m, .n = 1, .w = {w}, .y = {y}};
    mm_run(&j);
}

/* ---- creation ---- */

/* 64-byte aligned: the SIMD kernels take their fastest path on whole cache
 * lines. */
static float *alloc_f(fwd_ctx *f, size_t n, bool *ok)
{
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (!p)
        *ok = false;
    f->bytes += bytes;
    return p;
}

static size_t max3(size_t a, size_t b, size_t c)
{
    size_t m = a > b ? a : b;
    return m > c ? m : c;
}

hinge_status fwd_create(const model *m, threadpool *tp, const fwd_config *cfg, fwd_ctx **out, char *err,
                        size_t errlen)
{
    const model_hparams *hp = &m->hp;
    uint32_t ctx = cfg->ctx ? cfg->ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    uint32_t mb = cfg->max_batch ? cfg->max_batch : 64;
    if (cfg->layer_begin > cfg->layer_end || cfg->layer_end > hp->n_layer)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "layer range [%u, %u) is not inside [0, %u]",
                          cfg->layer_begin, cfg->layer_end, hp->n_layer);
    if (ctx > (1u << 20) || mb > 4096)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "context %u or batch %u too large", ctx, mb);
    fwd_ctx *f = calloc(1, sizeof *f);
    if (!f)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    *f = (fwd_ctx){.m = m, .tp = tp, .a = cfg->layer_begin, .b = cfg->layer_end, .ctx = ctx, .max_batch = mb};
    f->bytes = sizeof *f;
    f->kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    f->v_dim = (size_t)hp->n_head_kv * hp->head_dim_v;
    f->q_dim = (size_t)hp->n_head * hp->head_dim;
    f->o_dim = (size_t)hp->n_head * hp->head_dim_v;
    size_t nl = f->b - f->a, threads = (size_t)tp_threads(tp);
    f->mm_stride = (QUANT_MM_ROWS * max3(hp->n_embd, hp->n_ff, f->o_dim) + 15) & ~(size_t)15;
    bool ok = true;
    f->k_cache = alloc_f(f, nl * ctx * f->kv_dim, &ok);
    f->v_cache = alloc_f(f, nl * ctx * f->v_dim, &ok);
    f->xb = alloc_f(f, (size_t)mb * hp->n_embd, &ok);
    f->q = alloc_f(f, (size_t)mb * f->q_dim, &ok);
    f->k = alloc_f(f, (size_t)mb * f->kv_dim, &ok);
    f->v = alloc_f(f, (size_t)mb * f->v_dim, &ok);
    f->att = alloc_f(f, (size_t)mb * f->o_dim, &ok);
    f->o = alloc_f(f, (size_t)mb * hp->n_embd, &ok);
    f->g = alloc_f(f, (size_t)mb * hp->n_ff, &ok);
    f->u = alloc_f(f, (size_t)mb * hp->n_ff, &ok);
    f->mm_scratch = alloc_f(f, threads * f->mm_stride, &ok);
    f->scores = alloc_f(f, threads * ctx, &ok);
    if (!ok) {
        fwd_destroy(f);
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for a %u-position context of %zu layers",
                          ctx, nl);
    }
    *out = f;
    return HINGE_OK;
}

void fwd_destroy(fwd_ctx *f)
{
    if (!f)
        return;
    float *bufs[] = {f->k_cache, f->v_cache, f->xb, f->q, f->k, f->v, f->att, f->o, f->g, f->u, f->mm_scratch, f->scores};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(f);
}

const char *fwd_errmsg(const fwd_ctx *f) { return f ? f->errmsg : "no context"; }
uint32_t fwd_ctx_len(const fwd_ctx *f) { return f->ctx; }
size_t fwd_bytes(const fwd_ctx *f) { return f ? f->bytes : 0; }

/* ---- stages ---- */

hinge_status fwd_embed(fwd_ctx *f, const int32_t *tokens, size_t n, float *hidden)
{
    const model *m = f->m;
    const weight *e = &m->tok_embd;
    size_t row_bytes = quant_row_bytes(e->type, e->cols);
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= m->hp.n_vocab)
            return hinge_fail(f->errmsg, sizeof f->errmsg, HINGE_ERR_RANGE, "token %zu: id %d outside the vocabulary (%u)",
                              i, tokens[i], m->hp.n_vocab);
    }
    for (size_t i = 0; i < n; i++) {
        float *h = hidden + i * m->hp.n_embd;
        quant_dequant_row(e->type, (const uint8_t *)e->data + (size_t)tokens[i] * row_bytes, h, e->cols);
        if (m->hp.embd_scale != 1.0f)
            op_scale(h, m->hp.embd_scale, m->hp.n_embd);
    }
    return HINGE_OK;
}

typedef struct att_job {
    fwd_ctx *f;
    uint32_t il;   /* layer */
    uint32_t pos0;
    size_t n;      /* positions */
} att_job;

/* One task: one (position, head) pair. */
static void att_task(void *ctx, int task, int n_tasks, int thread)
{
    (void)n_tasks;
    att_job *j = ctx;
    fwd_ctx *f = j->f;
    const model_hparams *hp = &f->m->hp;
    size_t i = (size_t)task / hp->n_head;
    uint32_t h = (uint32_t)task % hp->n_head, kvh = h / (hp->n_head / hp->n_head_kv);
    uint32_t pos = j->pos0 + (uint32_t)i;
    uint32_t lo = 0;
    if (model_layer_is_swa(hp, j->il) && pos + 1 > hp->swa_window)
        lo = pos + 1 - hp->swa_window;
    size_t l = j->il - f->a;
    const float *kc = f->k_cache + l * f->ctx * f->kv_dim + (size_t)kvh * hp->head_dim;
    const float *vc = f->v_cache + l * f->ctx * f->v_dim + (size_t)kvh * hp->head_dim_v;
    const float *q = f->q + i * f->q_dim + (size_t)h * hp->head_dim;
    float *out = f->att + i * f->o_dim + (size_t)h * hp->head_dim_v;
    op_attention_head(out, q, kc, vc, f->kv_dim, f->v_dim, hp->head_dim, hp->head_dim_v, lo, pos, hp->attn_scale,
                      f->scores + (size_t)thread * f->ctx);
}

/* Norm of each of n rows of x (dim d) into out with weight w. */
static void norm_rows(const fwd_ctx *f, float *out, const float *x, size_t n, size_t d, const weight *w)
{
    for (size_t i = 0; i < n; i++)
        op_rmsnorm(out + i * d, x + i * d, w->data, d, f->m->hp.rms_eps);
}

/* q/k: norms (gemma3), RoPE, and k/v into the cache rows. */
static void qk_prepare(fwd_ctx *f, uint32_t il, uint32_t pos0, size_t n)
{
    const model_hparams *hp = &f->m->hp;
    const layer_weights *L = &f->m->layers[il];
    size_t l = il - f->a;
    float base = model_layer_rope_base(hp, il);
    float scale = model_layer_is_swa(hp, il) ? 1.0f : hp->rope_scale;
    for (size_t i = 0; i < n; i++) {
        float *q = f->q + i * f->q_dim, *k = f->k + i * f->kv_dim;
        if (hp->qk_norm) {
            norm_rows(f, q, q, hp->n_head, hp->head_dim, &L->q_norm);
            norm_rows(f, k, k, hp->n_head_kv, hp->head_dim, &L->k_norm);
        }
        op_rope(q, hp->n_head, hp->head_dim, hp->rope_dim, hp->rope_neox, pos0 + (uint32_t)i, base, scale);
        op_rope(k, hp->n_head_kv, hp->head_dim, hp->rope_dim, hp->rope_neox, pos0 + (uint32_t)i, base, scale);
        size_t row = l * f->ctx + pos0 + i;
        memcpy(f->k_cache + row * f->kv_dim, k, f->kv_dim * sizeof(float));
        memcpy(f->v_cache + row * f->v_dim, f->v + i * f->v_dim, f->v_dim * sizeof(float));
    }
}

static void attention_block(fwd_ctx *f, uint32_t il, uint32_t pos0, size_t n, float *x)
{
    const model_hparams *hp = &f->m->hp;
    const layer_weights *L = &f->m->layers[il];
    norm_rows(f, f->xb, x, n, hp->n_embd, &L->attn_norm);
    mm_job j = {.f = f, .x = f->xb, .m = n, .n = 3, .w = {&L->wq, &L->wk, &L->wv}, .y = {f->q, f->k, f->v}};
    mm_run(&j);
    qk_prepare(f, il, pos0, n);
    att_job aj = {.f = f, .il = il, .pos0 = pos0, .n = n};
    int tasks = (int)(n * hp->n_head);
    size_t work = (size_t)tasks * (pos0 + n) * (hp->head_dim + hp->head_dim_v);
    tp_run(work < MT_MIN_WORK ? NULL : f->tp, att_task, &aj, tasks);
    matmul(f, &L->wo, f->att, n, f->o);
    if (hp->post_norms)
        norm_rows(f, f->o, f->o, n, hp->n_embd, &L->post_attn_norm);
    op_add(x, f->o, n * hp->n_embd);
}

static void ffn_block(fwd_ctx *f, uint32_t il, size_t n, float *x)
{
    const model_hparams *hp = &f->m->hp;
    const layer_weights *L = &f->m->layers[il];
    norm_rows(f, f->xb, x, n, hp->n_embd, &L->ffn_norm);
    mm_job j = {.f = f, .x = f->xb, .m = n, .n = 2, .w = {&L->w_gate, &L->w_up}, .y = {f->g, f->u}};
    mm_run(&j);
    if (hp->gelu)
        op_geglu(f->g, f->u, n * hp->n_ff);
    else
        op_swiglu(f->g, f->u, n * hp->n_ff);
    matmul(f, &L->w_down, f->g, n, f->o);
    if (hp->post_norms)
        norm_rows(f, f->o, f->o, n, hp->n_embd, &L->post_ffn_norm);
    op_add(x, f->o, n * hp->n_embd);
}

hinge_status fwd_layers(fwd_ctx *f, uint32_t pos0, size_t n, float *hidden)
{
    if ((uint64_t)pos0 + n > f->ctx)
        return hinge_fail(f->errmsg, sizeof f->errmsg, HINGE_ERR_RANGE,
                          "positions [%u, %llu) do not fit the %u-position context", pos0,
                          (unsigned long long)pos0 + n, f->ctx);
    size_t d = f->m->hp.n_embd;
    for (size_t done = 0; done < n;) {
        size_t c = n - done < f->max_batch ? n - done : f->max_batch;
        float *x = hidden + done * d;
        for (uint32_t il = f->a; il < f->b; il++) {
            attention_block(f, il, pos0 + (uint32_t)done, c, x);
            ffn_block(f, il, c, x);
        }
        done += c;
    }
    return HINGE_OK;
}

hinge_status fwd_head(fwd_ctx *f, const float *hidden, size_t n, float *logits)
{
    const model *m = f->m;
    size_t d = m->hp.n_embd;
    for (size_t done = 0; done < n;) {
        size_t c = n - done < f->max_batch ? n - done : f->max_batch;
        norm_rows(f, f->xb, hidden + done * d, c, d, &m->output_norm);
        matmul(f, &m->output, f->xb, c, logits + done * m->hp.n_vocab);
        done += c;
    }
    return HINGE_OK;
}
