/* The CPU forward pass: see forward.h; passes over several contexts:
 * forward_impl.h. */
#include "forward.h"
#include "forward_impl.h"

#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "ops.h"
#include "quant.h"

/* Matrix jobs smaller than this many multiply-adds run on one thread: a
 * fork-join costs more than they do. */
enum { MT_MIN_WORK = 1 << 16, MAX_MM = 3 };

/* ---- threaded matrix products ---- */

/* Up to MAX_MM products sharing one input x (m rows): y_i = x W_i^T.
 * Threads split the output columns (weight rows), never a dot product. */
typedef struct mm_job {
    threadpool *tp;
    fwd_scratch *s;
    const float *x;
    size_t m;
    int n;
    const weight *w[MAX_MM];
    float *y[MAX_MM];
    size_t rows_total;
    qtype prep_t;     /* the type whose products read s->prep (x's n columns); prep false: none */
    bool prep;
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
                quant_matmul_prep(w->type, w->data, w->cols, j->x, j->prep && w->type == j->prep_t ? j->s->prep : NULL,
                                  j->m, j->y[i], w->rows, r0, r1, j->s->mm + (size_t)thread * j->s->mm_stride);
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

/* One thread's share of the rows of x prepared for the job's products. */
static void prep_task(void *ctx, int task, int n_tasks, int thread)
{
    (void)thread;
    mm_job *j = ctx;
    size_t j0 = j->m * (size_t)task / (size_t)n_tasks, j1 = j->m * (size_t)(task + 1) / (size_t)n_tasks;
    quant_prep_x(j->prep_t, j->x, j->w[0]->cols, j->m, j0, j1, j->s->prep); /* all n: x's width */
}

static void mm_run(mm_job *j)
{
    size_t work = 0;
    j->rows_total = 0;
    j->prep = false;
    for (int i = 0; i < j->n; i++) {
        const weight *w = j->w[i];
        j->rows_total += w->rows;
        work += w->rows * w->cols * j->m;
        size_t b = quant_prep_bytes(w->type, w->cols, j->m);
        if (!j->prep && b && b <= j->s->prep_bytes) { /* the x of all n: one type's rounding */
            j->prep = true;
            j->prep_t = w->type;
        }
    }
    int threads = tp_threads(j->tp);
    int n_tasks = work < MT_MIN_WORK ? 1 : (j->m == 1 ? threads : 4 * threads);
    /* x rounded once per product rather than once per task */
    if (j->prep)
        tp_run(n_tasks == 1 ? NULL : j->tp, prep_task, j, n_tasks == 1 ? 1 : threads);
    tp_run(n_tasks == 1 ? NULL : j->tp, mm_task, j, n_tasks);
}

static void matmul(threadpool *tp, fwd_scratch *s, const weight *w, const float *x, size_t m, float *y)
{
    mm_job j = {.tp = tp, .s = s, .x = x, .m = m, .n = 1, .w = {w}, .y = {y}};
    mm_run(&j);
}

/* ---- creation ---- */

/* 64-byte aligned: the SIMD kernels take their fastest path on whole cache
 * lines. */
static float *alloc_f(size_t n, size_t *bytes, bool *ok)
{
    size_t sz = ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, sz);
    if (!p)
        *ok = false;
    *bytes += sz;
    return p;
}

static size_t max3(size_t a, size_t b, size_t c)
{
    size_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* The most quant_prep_x needs for `rows` rows of x against any of m's
 * matrices (0 where the kernel set prepares none). */
static size_t prep_bytes(const model *m, size_t rows)
{
    size_t most = quant_prep_bytes(m->output.type, m->output.cols, rows);
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const layer_weights *L = &m->layers[il];
        const weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            size_t b = quant_prep_bytes(ws[i]->type, ws[i]->cols, rows);
            most = b > most ? b : most;
        }
    }
    return most;
}

hinge_status fwd_scratch_init(fwd_scratch *s, const model *m, threadpool *tp, size_t rows, uint32_t ctx)
{
    const model_hparams *hp = &m->hp;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim, o_dim = (size_t)hp->n_head * hp->head_dim_v;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim, v_dim = (size_t)hp->n_head_kv * hp->head_dim_v;
    size_t threads = (size_t)tp_threads(tp);
    *s = (fwd_scratch){.rows = rows, .ctx = ctx};
    s->mm_stride = (QUANT_MM_ROWS * max3(hp->n_embd, hp->n_ff, o_dim) + 15) & ~(size_t)15;
    bool ok = true;
    s->xb = alloc_f(rows * hp->n_embd, &s->bytes, &ok);
    s->q = alloc_f(rows * q_dim, &s->bytes, &ok);
    s->k = alloc_f(rows * kv_dim, &s->bytes, &ok);
    s->v = alloc_f(rows * v_dim, &s->bytes, &ok);
    s->att = alloc_f(rows * o_dim, &s->bytes, &ok);
    s->o = alloc_f(rows * hp->n_embd, &s->bytes, &ok);
    s->g = alloc_f(rows * hp->n_ff, &s->bytes, &ok);
    s->u = alloc_f(rows * hp->n_ff, &s->bytes, &ok);
    s->mm = alloc_f(threads * s->mm_stride, &s->bytes, &ok);
    s->scores = alloc_f(threads * ctx, &s->bytes, &ok);
    s->prep_bytes = prep_bytes(m, rows);
    s->prep = alloc_f(s->prep_bytes / sizeof(float), &s->bytes, &ok);
    if (!ok) {
        fwd_scratch_finish(s);
        return HINGE_ERR_NOMEM;
    }
    return HINGE_OK;
}

void fwd_scratch_finish(fwd_scratch *s)
{
    if (!s)
        return;
    float *bufs[] = {s->xb, s->q, s->k, s->v, s->att, s->o, s->g, s->u, s->mm, s->scores, s->prep};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    *s = (fwd_scratch){0};
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
    *f = (fwd_ctx){.m = m, .tp = tp, .a = cfg->layer_begin, .b = cfg->layer_end, .ctx = ctx, .max_batch = mb,
                   .pool = cfg->pool};
    size_t nl = f->b - f->a;
    f->bytes = sizeof *f;
    if (fwd_kv_init(f) != HINGE_OK || fwd_scratch_init(&f->s, m, tp, mb, ctx) != HINGE_OK) {
        fwd_destroy(f);
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for a %u-position context of %zu layers",
                          ctx, nl);
    }
    f->bytes += f->s.bytes;
    *out = f;
    return HINGE_OK;
}

void fwd_destroy(fwd_ctx *f)
{
    if (!f)
        return;
    fwd_kv_finish(f);
    fwd_scratch_finish(&f->s);
    free(f);
}

const char *fwd_errmsg(const fwd_ctx *f) { return f ? f->errmsg : "no context"; }
uint32_t fwd_ctx_len(const fwd_ctx *f) { return f->ctx; }
size_t fwd_bytes(const fwd_ctx *f) { return f ? f->bytes : 0; }
uint32_t fwd_layer_begin(const fwd_ctx *f) { return f->a; }
uint32_t fwd_layer_end(const fwd_ctx *f) { return f->b; }

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

/* ---- one layer over the spans of a pass ---- */

typedef struct att_job {
    const model *m;
    fwd_scratch *s;
    uint32_t il;   /* layer */
    const fwd_span *sp;
    size_t ns;
} att_job;

/* The span holding scratch row `row` (spans are in row order). */
static const fwd_span *span_of(const fwd_span *sp, size_t ns, size_t row)
{
    size_t lo = 0, hi = ns;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (sp[mid].row0 <= row)
            lo = mid;
        else
            hi = mid;
    }
    return &sp[lo];
}

/* One task: one (row, head) pair. */
static void att_task(void *ctx, int task, int n_tasks, int thread)
{
    (void)n_tasks;
    att_job *j = ctx;
    const model_hparams *hp = &j->m->hp;
    fwd_scratch *s = j->s;
    size_t row = (size_t)task / hp->n_head;
    const fwd_span *sp = span_of(j->sp, j->ns, row);
    const fwd_ctx *f = sp->f;
    uint32_t h = (uint32_t)task % hp->n_head, kvh = h / (hp->n_head / hp->n_head_kv);
    uint32_t pos = sp->pos0 + (uint32_t)(row - sp->row0);
    uint32_t lo = 0;
    if (model_layer_is_swa(hp, j->il) && pos + 1 > hp->swa_window)
        lo = pos + 1 - hp->swa_window;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim, v_dim = (size_t)hp->n_head_kv * hp->head_dim_v;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim, o_dim = (size_t)hp->n_head * hp->head_dim_v;
    const float *const *blk = (const float *const *)f->blk + (j->il - f->a) * f->n_blk;
    op_kv_view kv = {.kb = blk, .vb = blk, .k_off = (size_t)kvh * hp->head_dim,
                     .v_off = (size_t)f->blk_pos * kv_dim + (size_t)kvh * hp->head_dim_v, .k_stride = kv_dim,
                     .v_stride = v_dim, .shift = f->shift};
    const float *q = s->q + row * q_dim + (size_t)h * hp->head_dim;
    float *out = s->att + row * o_dim + (size_t)h * hp->head_dim_v;
    op_attention_head_kv(out, q, &kv, hp->head_dim, hp->head_dim_v, lo, pos, hp->attn_scale,
                         s->scores + (size_t)thread * s->ctx);
}

/* Norm of each of n rows of x (dim d) into out with weight w. */
static void norm_rows(const model *m, float *out, const float *x, size_t n, size_t d, const weight *w)
{
    for (size_t i = 0; i < n; i++)
        op_rmsnorm(out + i * d, x + i * d, w->data, d, m->hp.rms_eps);
}

/* q/k of one span: norms (gemma3, qwen3), RoPE, and k/v into its cache rows. */
static void qk_prepare(const model *m, fwd_scratch *s, uint32_t il, const fwd_span *sp)
{
    const model_hparams *hp = &m->hp;
    const layer_weights *L = &m->layers[il];
    const fwd_ctx *f = sp->f;
    size_t l = il - f->a;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim, v_dim = (size_t)hp->n_head_kv * hp->head_dim_v;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    float base = model_layer_rope_base(hp, il);
    float scale = model_layer_is_swa(hp, il) ? 1.0f : hp->rope_scale;
    for (size_t i = 0; i < sp->n; i++) {
        size_t r = sp->row0 + i;
        uint32_t pos = sp->pos0 + (uint32_t)i;
        float *q = s->q + r * q_dim, *k = s->k + r * kv_dim;
        if (hp->qk_norm) {
            norm_rows(m, q, q, hp->n_head, hp->head_dim, &L->q_norm);
            norm_rows(m, k, k, hp->n_head_kv, hp->head_dim, &L->k_norm);
        }
        if (m->rope_freqs.data) {
            op_rope_freqs(q, hp->n_head, hp->head_dim, hp->rope_dim, hp->rope_neox, pos, base, scale,
                          m->rope_freqs.data);
            op_rope_freqs(k, hp->n_head_kv, hp->head_dim, hp->rope_dim, hp->rope_neox, pos, base, scale,
                          m->rope_freqs.data);
        } else {
            op_rope(q, hp->n_head, hp->head_dim, hp->rope_dim, hp->rope_neox, pos, base, scale);
            op_rope(k, hp->n_head_kv, hp->head_dim, hp->rope_dim, hp->rope_neox, pos, base, scale);
        }
        memcpy(fwd_key_row(f, l, pos, kv_dim), k, kv_dim * sizeof(float));
        memcpy(fwd_value_row(f, l, pos, kv_dim, v_dim), s->v + r * v_dim, v_dim * sizeof(float));
    }
}

/* x of every span += s->o's rows. */
static void add_back(const model *m, const fwd_scratch *s, const fwd_span *sp, size_t ns)
{
    size_t d = m->hp.n_embd;
    for (size_t i = 0; i < ns; i++)
        op_add(sp[i].x, s->o + sp[i].row0 * d, sp[i].n * d);
}

static void gather_norm(const model *m, fwd_scratch *s, const fwd_span *sp, size_t ns, const weight *w)
{
    size_t d = m->hp.n_embd;
    for (size_t i = 0; i < ns; i++)
        norm_rows(m, s->xb + sp[i].row0 * d, sp[i].x, sp[i].n, d, w);
}

static void attention_block(const model *m, threadpool *tp, fwd_scratch *s, uint32_t il, const fwd_span *sp,
                            size_t ns, size_t rows)
{
    const model_hparams *hp = &m->hp;
    const layer_weights *L = &m->layers[il];
    gather_norm(m, s, sp, ns, &L->attn_norm);
    mm_job j = {.tp = tp, .s = s, .x = s->xb, .m = rows, .n = 3, .w = {&L->wq, &L->wk, &L->wv},
                .y = {s->q, s->k, s->v}};
    mm_run(&j);
    for (int i = 0; i < 3 && L->bq.data; i++) { /* qwen2's biases */
        const weight *b = i == 0 ? &L->bq : i == 1 ? &L->bk : &L->bv;
        for (size_t r = 0; r < rows; r++)
            op_add(j.y[i] + r * b->cols, b->data, b->cols);
    }
    size_t work = 0;
    for (size_t i = 0; i < ns; i++) {
        qk_prepare(m, s, il, &sp[i]);
        work += sp[i].n * (sp[i].pos0 + sp[i].n);
    }
    att_job aj = {.m = m, .s = s, .il = il, .sp = sp, .ns = ns};
    int tasks = (int)(rows * hp->n_head);
    work *= (size_t)hp->n_head * (hp->head_dim + hp->head_dim_v);
    tp_run(work < MT_MIN_WORK ? NULL : tp, att_task, &aj, tasks);
    matmul(tp, s, &L->wo, s->att, rows, s->o);
    if (hp->post_norms)
        norm_rows(m, s->o, s->o, rows, hp->n_embd, &L->post_attn_norm);
    add_back(m, s, sp, ns);
}

static void ffn_block(const model *m, threadpool *tp, fwd_scratch *s, uint32_t il, const fwd_span *sp, size_t ns,
                      size_t rows)
{
    const model_hparams *hp = &m->hp;
    const layer_weights *L = &m->layers[il];
    gather_norm(m, s, sp, ns, &L->ffn_norm);
    mm_job j = {.tp = tp, .s = s, .x = s->xb, .m = rows, .n = 2, .w = {&L->w_gate, &L->w_up}, .y = {s->g, s->u}};
    mm_run(&j);
    if (hp->gelu)
        op_geglu(s->g, s->u, rows * hp->n_ff);
    else
        op_swiglu(s->g, s->u, rows * hp->n_ff);
    matmul(tp, s, &L->w_down, s->g, rows, s->o);
    if (hp->post_norms)
        norm_rows(m, s->o, s->o, rows, hp->n_embd, &L->post_ffn_norm);
    add_back(m, s, sp, ns);
}

void fwd_pass_layer(const model *m, threadpool *tp, fwd_scratch *s, uint32_t il, const fwd_span *sp, size_t ns)
{
    if (ns == 0)
        return;
    size_t rows = sp[ns - 1].row0 + sp[ns - 1].n;
    attention_block(m, tp, s, il, sp, ns, rows);
    ffn_block(m, tp, s, il, sp, ns, rows);
}

void fwd_pass_head(const model *m, threadpool *tp, fwd_scratch *s, const float *const *rows, size_t n,
                   float *logits)
{
    size_t d = m->hp.n_embd;
    for (size_t i = 0; i < n; i++)
        norm_rows(m, s->xb + i * d, rows[i], 1, d, &m->output_norm);
    matmul(tp, s, &m->output, s->xb, n, logits);
}

/* ---- one context ---- */

hinge_status fwd_layers(fwd_ctx *f, uint32_t pos0, size_t n, float *hidden)
{
    if ((uint64_t)pos0 + n > f->ctx)
        return hinge_fail(f->errmsg, sizeof f->errmsg, HINGE_ERR_RANGE,
                          "positions [%u, %llu) do not fit the %u-position context", pos0,
                          (unsigned long long)pos0 + n, f->ctx);
    hinge_status st = n ? fwd_kv_reserve(f, pos0, pos0 + (uint32_t)n) : HINGE_OK;
    if (st != HINGE_OK)
        return st;
    size_t d = f->m->hp.n_embd;
    for (size_t done = 0; done < n;) {
        size_t c = n - done < f->max_batch ? n - done : f->max_batch;
        fwd_span sp = {.f = f, .pos0 = pos0 + (uint32_t)done, .n = c, .x = hidden + done * d, .row0 = 0};
        for (uint32_t il = f->a; il < f->b; il++)
            fwd_pass_layer(f->m, f->tp, &f->s, il, &sp, 1);
        done += c;
    }
    return HINGE_OK;
}

hinge_status fwd_cache_copy(fwd_ctx *dst, const fwd_ctx *src, uint32_t pos0, uint32_t n)
{
    if (dst->m != src->m || dst->a != src->a || dst->b != src->b)
        return hinge_fail(dst->errmsg, sizeof dst->errmsg, HINGE_ERR_INVALID, "cache copy between different contexts");
    if ((uint64_t)pos0 + n > dst->ctx || (uint64_t)pos0 + n > src->ctx)
        return hinge_fail(dst->errmsg, sizeof dst->errmsg, HINGE_ERR_RANGE, "cache copy of positions [%u, %llu)",
                          pos0, (unsigned long long)pos0 + n);
    const model_hparams *hp = &dst->m->hp;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim, v_dim = (size_t)hp->n_head_kv * hp->head_dim_v;
    if (dst->pool || src->pool) /* paged caches: their blocks may not all be there */
        return hinge_fail(dst->errmsg, sizeof dst->errmsg, HINGE_ERR_UNSUPPORTED, "cache copy of a paged cache");
    for (size_t l = 0; l < (size_t)(dst->b - dst->a); l++)
        for (uint32_t pos = pos0; pos < pos0 + n; pos++) { /* row by row: the cache's layout is kv.c's */
            memcpy(fwd_key_row(dst, l, pos, kv_dim), fwd_key_row(src, l, pos, kv_dim), kv_dim * sizeof(float));
            memcpy(fwd_value_row(dst, l, pos, kv_dim, v_dim), fwd_value_row(src, l, pos, kv_dim, v_dim),
                   v_dim * sizeof(float));
        }
    return HINGE_OK;
}

hinge_status fwd_head(fwd_ctx *f, const float *hidden, size_t n, float *logits)
{
    const model *m = f->m;
    size_t d = m->hp.n_embd;
    enum { ROWS = 64 };
    const float *rows[ROWS];
    for (size_t done = 0; done < n;) {
        size_t c = n - done < f->max_batch ? n - done : f->max_batch;
        c = c < ROWS ? c : ROWS;
        for (size_t i = 0; i < c; i++)
            rows[i] = hidden + (done + i) * d;
        fwd_pass_head(m, f->tp, &f->s, rows, c, logits + done * m->hp.n_vocab);
        done += c;
    }
    return HINGE_OK;
}
