/* The executor's start-up self-test: before a driver is trusted, every op
 * of the first layer (and the embedding), in both passes, and the head's
 * product (the final norm and the output matrix: a matrix-vector product
 * for one row, and with head_rows the batch head's matrix-matrix product
 * over several), runs once on small random inputs, on buffers of its own
 * but with the executor's weights, kernels and pipelines, against the CPU
 * reference (model/ops.c, model/quant.c). Phone GPU drivers are known to compute some kernels
 * wrongly without an error (llama.cpp #25906: q4_0 on Turnip; #28214:
 * subgroups of 128 on PowerVR); the test turns that silent garbage into
 * HINGE_ERR_UNSUPPORTED with a message naming the op, so that the session
 * can say why and run on the CPU.
 *
 * The bound, ST_TOL, is far above a correct kernel's error (~1e-6; the
 * tolerances of tests/device) and far below a wrong one's (~1).
 * HINGE_VK_FORCE=selftest=0 skips the test. HINGE_VK_SELFTEST_BREAK=<step>
 * (a step name: embed, qkv_rope, attention, wo, ffn_gate_up, ffn_down,
 * layer, ..., head, batch_head)
 * is for tests only: it corrupts that step's kernel (a push constant) so
 * that the test must reject it. One allocation of host memory and one
 * device pool, freed before returning. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "quant.h"
#include "vk_exec_impl.h"
#include "vk_ops_impl.h"

/* prefill positions; cache rows; the first position checked */
enum { ST_M = 3, ST_CTX = 8, ST_POS = 4, ST_SLACK = 16 * 512 };
#define ST_TOL 1e-3

typedef struct st {
    vk_exec *e;
    dev_pool *pool;     /* device scratch, reset for each check */
    float *h;           /* host scratch: h_cap floats, bumped, reset for each check */
    size_t h_used, h_cap;
    uint64_t rng;
    const char *brk;    /* HINGE_VK_SELFTEST_BREAK */
} st;

/* ---- scratch ---- */

static float *hget(st *t, size_t n)
{
    assert(t->h_used + n <= t->h_cap);
    float *p = t->h + t->h_used;
    t->h_used += (n + 3) & ~(size_t)3;
    return p;
}

static float rnd(st *t, float lo, float hi)
{
    t->rng ^= t->rng << 13;
    t->rng ^= t->rng >> 7;
    t->rng ^= t->rng << 17;
    return lo + (hi - lo) * (float)((t->rng >> 40) & 0xFFFFFF) / 16777216.0f;
}

static float *hrand(st *t, size_t n, float lo, float hi)
{
    float *p = hget(t, n);
    for (size_t i = 0; i < n; i++)
        p[i] = rnd(t, lo, hi);
    return p;
}

static hinge_status dfail(st *t, hinge_status s, const char *what)
{
    return ex_fail_ctx(t->e, s, what);
}

/* A device buffer of n floats with the host's v (NULL: zeros). */
static hinge_status dput(st *t, const float *v, size_t n, dev_buf *out)
{
    hinge_status s = dev_pool_alloc(t->pool, (n ? n : 1) * sizeof(float), 16, "self-test", out);
    if (s != HINGE_OK)
        return dfail(t, s, "self-test scratch");
    float *z = NULL;
    if (!v) {
        z = hget(t, n);
        memset(z, 0, n * sizeof(float));
    }
    s = dev_upload(t->e->c, out, 0, v ? v : z, n * sizeof(float));
    return s == HINGE_OK ? HINGE_OK : dfail(t, s, "self-test upload");
}

/* n floats of a device buffer (a norm weight, the rope table) into host memory. */
static hinge_status dget(st *t, const dev_buf *b, size_t n, float **out)
{
    *out = hget(t, n);
    hinge_status s = dev_download(t->e->c, b, 0, *out, n * sizeof(float));
    return s == HINGE_OK ? HINGE_OK : dfail(t, s, "self-test download");
}

/* ---- the CPU side ---- */

/* The host matrices behind a device matrix of layer il (wq | wk | wv
 * joined: up to three). */
static uint32_t host_mats(const vk_exec *e, int32_t il, const dev_weight *w, const weight **mats)
{
    if (w == &e->w->embd || w == &e->w->outw) { /* (the output matrix is tok_embd when tied) */
        mats[0] = w == &e->w->embd ? &e->m->tok_embd : &e->m->output;
        return 1;
    }
    const ex_layer *X = &e->w->layers[il];
    const layer_weights *L = &e->m->layers[il];
    const weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    for (uint32_t g = 0; g < X->n_qkv; g++) {
        if (w != &X->qkv[g])
            continue;
        uint32_t n = 0, row = 0;
        for (uint32_t i = 0; i < 3; row += (uint32_t)qkv[i]->rows, i++)
            if (row >= X->qkv_row0[g] && row < X->qkv_row0[g] + w->rows)
                mats[n++] = qkv[i];
        return n;
    }
    mats[0] = w == &X->wo ? &L->wo : w == &X->gate ? &L->w_gate : w == &X->up ? &L->w_up : &L->w_down;
    return 1;
}

/* y = W x for the host matrices of w. */
static void cpu_product(const vk_exec *e, int32_t il, const dev_weight *w, const float *x, float *y)
{
    const weight *mats[3];
    uint32_t n = host_mats(e, il, w, mats);
    for (uint32_t i = 0; i < n; y += mats[i]->rows, i++)
        quant_matvec(mats[i]->type, mats[i]->data, mats[i]->cols, x, y, 0, (uint32_t)mats[i]->rows);
}

/* xe = x (+ norm(o) * rw); xin = norm(xe) * nw where the flags say. */
static void cpu_input(uint32_t flags, const float *x, const float *o, const float *rw, const float *nw, uint32_t n,
                      float eps, float *xe, float *xin)
{
    memcpy(xe, x, n * sizeof(float));
    if (flags & HK_F_RESNORM) {
        op_rmsnorm(xin, o, rw, n, eps);
        op_add(xe, xin, n);
    }
    if (flags & (HK_F_NORM | HK_F_RESNORM))
        op_rmsnorm(xin, xe, nw, n, eps);
    else
        memcpy(xin, xe, n * sizeof(float));
}

static double nerr(const float *got, const float *ref, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            return INFINITY;
        num += fabs((double)got[i] - ref[i]);
        den += fabs((double)ref[i]);
    }
    return den > 0.0 ? num / den : num;
}

/* ---- running one op ---- */

/* HINGE_VK_SELFTEST_BREAK: a kernel made wrong on purpose (a size or the
 * activation in its push constants), for the test that the check sees it. */
static void break_op(dev_op *op)
{
    if (op->kind == DEV_OP_GLU)
        op->push[1] ^= HK_F_SWIGLU | HK_F_GEGLU;
    else
        op->push[0] = op->push[0] * 3 / 4;
}

static hinge_status run_op(st *t, const ex_step *stp, dev_op *op, uint32_t m, uint32_t pos0)
{
    if (t->brk && strcmp(t->brk, stp->name) == 0)
        break_op(op);
    VkCommandBuffer cmd;
    hinge_status s = dev_cmd_begin(t->e->c, &cmd);
    if (s != HINGE_OK)
        return dfail(t, s, "self-test");
    hinge_status r = dev_op_record(cmd, op, m, pos0);
    dev_cmd_barrier(cmd);
    s = dev_cmd_submit_wait(t->e->c);
    if (s != HINGE_OK)
        return dfail(t, s, "self-test run");
    if (r != HINGE_OK)
        return hinge_fail(t->e->errmsg, sizeof t->e->errmsg, r, "self-test: %s: recording failed", stp->name);
    return HINGE_OK;
}

/* n floats the device computed against ref. */
static hinge_status compare_host(st *t, const ex_step *stp, const dev_op *op, const float *got, const float *ref,
                                 size_t n)
{
    double err = nerr(got, ref, n);
    if (err <= ST_TOL)
        return HINGE_OK;
    hinge_status s = hinge_fail(t->e->errmsg, sizeof t->e->errmsg, HINGE_ERR_UNSUPPORTED,
                                "self-test: %s (layer %d, kernel %s, %s) disagrees with the CPU: normalized error "
                                "%.3g > %.0e; this driver computes it wrongly and is not used "
                                "(HINGE_VK_FORCE=selftest=0 skips the test)",
                                stp->name, stp->layer, op->k->name, dev_ops_describe(t->e->ops), err, ST_TOL);
    hinge_log(dev_ctx_logger(t->e->c), HINGE_LOG_ERROR, "vulkan: %s", t->e->errmsg);
    return s;
}

/* The device's n floats of b against ref. */
static hinge_status compare(st *t, const ex_step *stp, const dev_op *op, const dev_buf *b, const float *ref,
                            size_t n)
{
    float *got = hget(t, n);
    hinge_status s = dev_download(t->e->c, b, 0, got, n * sizeof(float));
    return s == HINGE_OK ? compare_host(t, stp, op, got, ref, n) : dfail(t, s, "self-test download");
}

/* A product of many rows (the head: n_vocab) is checked on ST_WINS windows
 * of ST_WIN rows spread over them, the first and the last included: the
 * CPU's reference costs a fraction of all rows' (seconds for Gemma's head
 * on a loaded lavapipe box), and a kernel wrong on any part of the rows (a
 * large matrix is bound in parts) still shows. */
enum { ST_WIN = 256, ST_WINS = 16 };

static uint32_t win_row0(uint32_t rows, uint32_t i)
{
    return (uint32_t)((uint64_t)(rows - ST_WIN) * i / (ST_WINS - 1));
}

/* The windows of m rows of `rows` floats of b against those of ref. */
static hinge_status compare_windows(st *t, const ex_step *stp, const dev_op *op, const dev_buf *b, const float *ref,
                                    uint32_t m, uint32_t rows)
{
    size_t n = (size_t)m * rows, k = 0;
    float *got = hget(t, n), *g = hget(t, (size_t)m * ST_WINS * ST_WIN), *r = hget(t, (size_t)m * ST_WINS * ST_WIN);
    hinge_status s = dev_download(t->e->c, b, 0, got, n * sizeof(float));
    if (s != HINGE_OK)
        return dfail(t, s, "self-test download");
    for (uint32_t j = 0; j < m; j++)
        for (uint32_t i = 0; i < ST_WINS; i++, k += ST_WIN) {
            size_t o = (size_t)j * rows + win_row0(rows, i);
            memcpy(g + k, got + o, ST_WIN * sizeof(float));
            memcpy(r + k, ref + o, ST_WIN * sizeof(float));
        }
    return compare_host(t, stp, op, g, r, k);
}

/* ---- the checks, one per kind of op ---- */

static hinge_status check_mm(st *t, const ex_step *stp, uint32_t m)
{
    const vk_exec *e = t->e;
    dev_mm_args a = stp->args.mm;
    uint32_t cols = a.w->cols, rows = a.w->rows, stride = (cols + 3) & ~3u, fl = a.flags;
    bool res = fl & HK_F_RESNORM, glu = fl & (HK_F_SWIGLU | HK_F_GEGLU);
    float *x = hrand(t, (size_t)m * stride, -1.0f, 1.0f), *o = hrand(t, (size_t)m * stride, -2.0f, 2.0f);
    float *y0 = hrand(t, (size_t)m * rows, -1.0f, 1.0f), *nw = NULL, *rw = NULL;
    dev_buf bx, bo, bxo, by;
    hinge_status s = dput(t, x, (size_t)m * stride, &bx);
    if (s == HINGE_OK)
        s = dput(t, o, (size_t)m * stride, &bo);
    if (s == HINGE_OK)
        s = dput(t, NULL, (size_t)m * stride, &bxo);
    if (s == HINGE_OK)
        s = dput(t, y0, (size_t)m * rows, &by);
    if (s == HINGE_OK && (fl & (HK_F_NORM | HK_F_RESNORM)))
        s = dget(t, a.norm, cols, &nw);
    if (s == HINGE_OK && res)
        s = dget(t, a.res_w, cols, &rw);
    if (s != HINGE_OK)
        return s;
    a.x = &bx, a.x_off = 0, a.x_stride = stride, a.y = &by, a.y_off = 0, a.y_stride = rows;
    a.res_o = res ? &bo : NULL, a.x_out = res ? &bxo : NULL;
    dev_op op;
    s = stp->op.kind == DEV_OP_MATVEC ? dev_prepare_matvec(e->ops, &a, &op) : dev_prepare_matmul(e->ops, &a, &op);
    if (s != HINGE_OK || (s = run_op(t, stp, &op, m, 0)) != HINGE_OK)
        return s == HINGE_OK ? s : dfail(t, s, stp->name);
    float *ref = hget(t, (size_t)m * rows), *r2 = hget(t, rows), *xe = hget(t, (size_t)m * stride);
    float *xin = hget(t, cols);
    const weight *mats[3];
    bool wins = rows >= ST_WINS * ST_WIN && !glu && !(fl & HK_F_ACC) && host_mats(e, stp->layer, a.w, mats) == 1;
    for (uint32_t j = 0; j < m; j++) {
        size_t xj = (size_t)j * stride;
        cpu_input(fl, x + xj, o + xj, rw, nw, cols, a.eps, xe + xj, xin);
        float *yj = ref + (size_t)j * rows;
        for (uint32_t i = 0; wins && i < ST_WINS; i++)
            quant_matvec(mats[0]->type, mats[0]->data, cols, xin, yj, win_row0(rows, i), win_row0(rows, i) + ST_WIN);
        if (!wins)
            cpu_product(e, stp->layer, a.w, xin, yj);
        if (glu) {
            cpu_product(e, stp->layer, a.w2, xin, r2);
            (fl & HK_F_GEGLU ? op_geglu : op_swiglu)(yj, r2, rows);
        }
        if (fl & HK_F_ACC)
            op_add(yj, y0 + (size_t)j * rows, rows);
    }
    s = wins ? compare_windows(t, stp, &op, &by, ref, m, rows) : compare(t, stp, &op, &by, ref, (size_t)m * rows);
    return s == HINGE_OK && res ? compare(t, stp, &op, &bxo, xe, (size_t)m * stride) : s;
}

/* q | k | v, norms, RoPE and the cache rows at ST_POS. */
static hinge_status check_qkv(st *t, const ex_step *stp)
{
    const vk_exec *e = t->e;
    const model_hparams *hp = &e->m->hp;
    dev_qkv_args a = stp->args.qkv;
    uint32_t d = e->d, hd = hp->head_dim, nq = hp->n_head, nk = hp->n_head_kv, qd = nq * hd, kd = nk * hd;
    bool res = stp->flags & HK_F_RESNORM;
    float *x = hrand(t, d, -1.0f, 1.0f), *o = hrand(t, d, -2.0f, 2.0f), *nw, *rw = NULL, *qn = NULL, *kn = NULL;
    float pos = ST_POS;
    dev_buf bx, bo, bxo, bq, kc, vc, bp;
    hinge_status s = dput(t, x, d, &bx);
    if (s == HINGE_OK)
        s = dput(t, o, d, &bo);
    if (s == HINGE_OK)
        s = dput(t, NULL, d, &bxo);
    if (s == HINGE_OK)
        s = dput(t, NULL, qd, &bq);
    if (s == HINGE_OK)
        s = dput(t, NULL, (size_t)ST_CTX * kd, &kc);
    if (s == HINGE_OK)
        s = dput(t, NULL, (size_t)ST_CTX * kd, &vc);
    uint32_t upos = ST_POS;
    memcpy(&pos, &upos, sizeof pos); /* the uint's bits */
    if (s == HINGE_OK)
        s = dput(t, &pos, 1, &bp);
    if (s == HINGE_OK)
        s = dget(t, a.norm, d, &nw);
    if (s == HINGE_OK && res)
        s = dget(t, a.res_w, d, &rw);
    if (s == HINGE_OK && a.q_norm && (s = dget(t, a.q_norm, hd, &qn)) == HINGE_OK)
        s = dget(t, a.k_norm, hd, &kn);
    if (s != HINGE_OK)
        return s;
    a.x = &bx, a.x_off = 0, a.q_out = &bq, a.q_off = 0, a.k_cache = &kc, a.v_cache = &vc, a.pos = &bp;
    a.res_o = res ? &bo : NULL, a.x_out = res ? &bxo : NULL;
    dev_op op;
    if ((s = dev_prepare_qkv_rope(e->ops, &a, stp->flags, &op)) != HINGE_OK ||
        (s = run_op(t, stp, &op, 1, 0)) != HINGE_OK)
        return dfail(t, s, stp->name);
    float *xe = hget(t, d), *xin = hget(t, d), *y = hget(t, qd + 2 * kd);
    cpu_input(stp->flags, x, o, rw, nw, d, a.eps, xe, xin);
    for (uint32_t g = 0; g < (a.w2 ? 2u : 1u); g++)
        cpu_product(e, stp->layer, g ? a.w2 : a.w, xin, y + (g ? a.w->rows : 0));
    for (uint32_t h = 0; qn && h < nq + nk; h++)
        op_rmsnorm(y + h * hd, y + h * hd, h < nq ? qn : kn, hd, a.eps);
    float base = model_layer_rope_base(hp, (uint32_t)stp->layer);
    op_rope(y, nq, hd, a.rope_dim, a.neox, ST_POS, base, a.pos_scale);
    op_rope(y + qd, nk, hd, a.rope_dim, a.neox, ST_POS, base, a.pos_scale);
    float *kref = hget(t, (size_t)ST_CTX * kd), *vref = hget(t, (size_t)ST_CTX * kd);
    memset(kref, 0, (size_t)ST_CTX * kd * sizeof(float));
    memset(vref, 0, (size_t)ST_CTX * kd * sizeof(float));
    memcpy(kref + (size_t)ST_POS * kd, y + qd, kd * sizeof(float));
    memcpy(vref + (size_t)ST_POS * kd, y + qd + kd, kd * sizeof(float));
    s = compare(t, stp, &op, &bq, y, qd);
    if (s == HINGE_OK)
        s = compare(t, stp, &op, &kc, kref, (size_t)ST_CTX * kd);
    if (s == HINGE_OK)
        s = compare(t, stp, &op, &vc, vref, (size_t)ST_CTX * kd);
    return s == HINGE_OK && res ? compare(t, stp, &op, &bxo, xe, d) : s;
}

/* m queries at ST_POS .. against random caches. */
static hinge_status check_attention(st *t, const ex_step *stp, uint32_t m)
{
    const vk_exec *e = t->e;
    const model_hparams *hp = &e->m->hp;
    dev_attn_args a = stp->args.at;
    uint32_t qd = e->q_dim, od = e->o_dim, kn = ST_CTX * e->kv_dim, vn = ST_CTX * e->v_dim;
    float *q = hrand(t, (size_t)m * qd, -2.0f, 2.0f), *kc = hrand(t, kn, -2.0f, 2.0f), *vc = hrand(t, vn, -1.0f, 1.0f);
    float zero = 0.0f;
    dev_buf bq, bk, bv, bo, bp;
    hinge_status s = dput(t, q, (size_t)m * qd, &bq);
    if (s == HINGE_OK)
        s = dput(t, kc, kn, &bk);
    if (s == HINGE_OK)
        s = dput(t, vc, vn, &bv);
    if (s == HINGE_OK)
        s = dput(t, NULL, (size_t)m * od, &bo);
    if (s == HINGE_OK)
        s = dput(t, &zero, 1, &bp); /* (the uint 0) */
    if (s != HINGE_OK)
        return s;
    a.q = &bq, a.q_off = 0, a.q_stride = qd, a.k_cache = &bk, a.v_cache = &bv, a.out = &bo, a.o_off = 0;
    a.o_stride = od, a.pos = &bp;
    dev_op op;
    if ((s = dev_prepare_attention(e->ops, &a, &op)) != HINGE_OK || (s = run_op(t, stp, &op, m, ST_POS)) != HINGE_OK)
        return dfail(t, s, stp->name);
    float *ref = hget(t, (size_t)m * od), *scores = hget(t, ST_CTX);
    for (uint32_t j = 0; j < m; j++) {
        uint32_t pos = ST_POS + j, lo = a.window && pos + 1 > a.window ? pos + 1 - a.window : 0;
        op_attention(ref + (size_t)j * od, q + (size_t)j * qd, kc, vc, hp->n_head, hp->n_head_kv, hp->head_dim,
                     hp->head_dim_v, lo, pos, a.scale, scores);
    }
    return compare(t, stp, &op, &bo, ref, (size_t)m * od);
}

/* A small layer's whole decode step (layer.comp) at ST_POS against random
 * caches: the residual after it and the cache rows. */
static hinge_status check_layer(st *t, const ex_step *stp)
{
    const vk_exec *e = t->e;
    const model_hparams *hp = &e->m->hp;
    const ex_layer *X = &e->w->layers[stp->layer];
    dev_layer_args a = stp->args.ly;
    uint32_t d = e->d, hd = hp->head_dim, nq = hp->n_head, nk = hp->n_head_kv, qd = nq * hd, kd = nk * hd;
    uint32_t n_ff = a.gate->rows, upos = ST_POS;
    float *x = hrand(t, d, -1.0f, 1.0f), *kc = hrand(t, (size_t)ST_CTX * kd, -2.0f, 2.0f);
    float *vc = hrand(t, (size_t)ST_CTX * kd, -1.0f, 1.0f), *an, *fn, pos;
    memcpy(&pos, &upos, sizeof pos); /* the uint's bits */
    dev_buf bx, bk, bv, bp;
    hinge_status s = dput(t, x, d, &bx);
    if (s == HINGE_OK)
        s = dput(t, kc, (size_t)ST_CTX * kd, &bk);
    if (s == HINGE_OK)
        s = dput(t, vc, (size_t)ST_CTX * kd, &bv);
    if (s == HINGE_OK)
        s = dput(t, &pos, 1, &bp);
    if (s == HINGE_OK)
        s = dget(t, a.attn_norm, d, &an);
    if (s == HINGE_OK)
        s = dget(t, a.ffn_norm, d, &fn);
    if (s != HINGE_OK)
        return s;
    a.x = &bx, a.k_cache = &bk, a.v_cache = &bv, a.pos = &bp;
    dev_op op;
    if ((s = dev_prepare_layer(e->ops, &a, &op)) != HINGE_OK || (s = run_op(t, stp, &op, 1, 0)) != HINGE_OK)
        return dfail(t, s, stp->name);
    float *xn = hget(t, d), *y = hget(t, qd + 2 * kd), *att = hget(t, qd), *o = hget(t, d);
    float *g = hget(t, n_ff), *u = hget(t, n_ff), *scores = hget(t, ST_CTX);
    op_rmsnorm(xn, x, an, d, a.eps);
    cpu_product(e, stp->layer, &X->qkv[0], xn, y);
    float base = model_layer_rope_base(hp, (uint32_t)stp->layer);
    op_rope(y, nq, hd, a.rope_dim, a.neox, ST_POS, base, a.pos_scale);
    op_rope(y + qd, nk, hd, a.rope_dim, a.neox, ST_POS, base, a.pos_scale);
    memcpy(kc + (size_t)ST_POS * kd, y + qd, kd * sizeof(float));
    memcpy(vc + (size_t)ST_POS * kd, y + qd + kd, kd * sizeof(float));
    uint32_t lo = a.window && ST_POS + 1 > a.window ? ST_POS + 1 - a.window : 0;
    op_attention(att, y, kc, vc, nq, nk, hd, hd, lo, ST_POS, a.scale, scores);
    cpu_product(e, stp->layer, &X->wo, att, o);
    op_add(x, o, d);
    op_rmsnorm(xn, x, fn, d, a.eps);
    cpu_product(e, stp->layer, &X->gate, xn, g);
    cpu_product(e, stp->layer, &X->up, xn, u);
    (a.act == HK_F_GEGLU ? op_geglu : op_swiglu)(g, u, n_ff);
    cpu_product(e, stp->layer, &X->down, g, o);
    op_add(x, o, d);
    s = compare(t, stp, &op, &bx, x, d);
    if (s == HINGE_OK)
        s = compare(t, stp, &op, &bk, kc, (size_t)ST_CTX * kd);
    return s == HINGE_OK ? compare(t, stp, &op, &bv, vc, (size_t)ST_CTX * kd) : s;
}

/* The unfused rope_kv of prefill (and decode where nothing fused fits). */
static hinge_status check_rope(st *t, const ex_step *stp, uint32_t m)
{
    const vk_exec *e = t->e;
    const model_hparams *hp = &e->m->hp;
    dev_rope_args a = stp->args.rk;
    uint32_t qd = e->q_dim, kd = e->kv_dim, vd = e->v_dim, in = e->qkv_stride, hd = hp->head_dim;
    float *x = hrand(t, (size_t)m * in, -2.0f, 2.0f), *qn = NULL, *kn = NULL;
    float zero = 0.0f;
    dev_buf bx, bq, kc, vc, bp;
    hinge_status s = dput(t, x, (size_t)m * in, &bx);
    if (s == HINGE_OK)
        s = dput(t, NULL, (size_t)m * qd, &bq);
    if (s == HINGE_OK)
        s = dput(t, NULL, (size_t)ST_CTX * kd, &kc);
    if (s == HINGE_OK)
        s = dput(t, NULL, (size_t)ST_CTX * vd, &vc);
    if (s == HINGE_OK)
        s = dput(t, &zero, 1, &bp);
    if (s == HINGE_OK && a.q_norm && (s = dget(t, a.q_norm, hd, &qn)) == HINGE_OK)
        s = dget(t, a.k_norm, hd, &kn);
    if (s != HINGE_OK)
        return s;
    a.qkv = &bx, a.q_out = &bq, a.q_off = 0, a.q_stride = qd, a.k_cache = &kc, a.v_cache = &vc, a.pos = &bp;
    dev_op op;
    if ((s = dev_prepare_rope_kv(e->ops, &a, &op)) != HINGE_OK || (s = run_op(t, stp, &op, m, ST_POS)) != HINGE_OK)
        return dfail(t, s, stp->name);
    float *q = hget(t, (size_t)m * qd), *kref = hget(t, (size_t)ST_CTX * kd), *vref = hget(t, (size_t)ST_CTX * vd);
    memset(kref, 0, (size_t)ST_CTX * kd * sizeof(float));
    memset(vref, 0, (size_t)ST_CTX * vd * sizeof(float));
    float base = model_layer_rope_base(hp, (uint32_t)stp->layer);
    for (uint32_t j = 0; j < m; j++) {
        float *qj = q + (size_t)j * qd, *kj = kref + (size_t)(ST_POS + j) * kd;
        memcpy(qj, x + (size_t)j * in + a.q_in, qd * sizeof(float));
        memcpy(kj, x + (size_t)j * in + a.k_in, kd * sizeof(float));
        memcpy(vref + (size_t)(ST_POS + j) * vd, x + (size_t)j * in + a.v_in, vd * sizeof(float));
        for (uint32_t h = 0; qn && h < hp->n_head + hp->n_head_kv; h++) {
            float *v = h < hp->n_head ? qj + h * hd : kj + (h - hp->n_head) * hd;
            op_rmsnorm(v, v, h < hp->n_head ? qn : kn, hd, a.eps);
        }
        op_rope(qj, hp->n_head, hd, a.rope_dim, a.neox, ST_POS + j, base, a.pos_scale);
        op_rope(kj, hp->n_head_kv, hd, a.rope_dim, a.neox, ST_POS + j, base, a.pos_scale);
    }
    s = compare(t, stp, &op, &bq, q, (size_t)m * qd);
    if (s == HINGE_OK)
        s = compare(t, stp, &op, &kc, kref, (size_t)ST_CTX * kd);
    return s == HINGE_OK ? compare(t, stp, &op, &vc, vref, (size_t)ST_CTX * vd) : s;
}

/* The norms of prefill (gemma3: x + norm(o) * w1, then norm(x) * w2). */
static hinge_status check_norm(st *t, const ex_step *stp, uint32_t m)
{
    dev_norm_args a = stp->args.rn;
    uint32_t n = a.n, add = a.flags & HK_F_ADD, two = a.flags & HK_F_NORM2;
    float *x = hrand(t, (size_t)m * n, -2.0f, 2.0f), *r = hrand(t, (size_t)m * n, -1.0f, 1.0f), *w, *w2 = NULL;
    dev_buf bx, br, bo2;
    hinge_status s = dput(t, x, (size_t)m * n, &bx);
    if (s == HINGE_OK)
        s = dput(t, r, (size_t)m * n, &br);
    if (s == HINGE_OK)
        s = dput(t, NULL, (size_t)m * n, &bo2);
    if (s == HINGE_OK)
        s = dget(t, a.w, n, &w);
    if (s == HINGE_OK && two)
        s = dget(t, a.w2, n, &w2);
    if (s != HINGE_OK)
        return s;
    /* the sum over the residual in place, as the pass does */
    a.x = &bx, a.x_off = 0, a.x_stride = n, a.out = add ? &br : &bx, a.o_off = 0, a.o_stride = n;
    a.res = add ? &br : NULL, a.r_off = 0, a.r_stride = n, a.out2 = two ? &bo2 : NULL, a.o2_off = 0, a.o2_stride = n;
    dev_op op;
    if ((s = dev_prepare_rmsnorm(t->e->ops, &a, &op)) != HINGE_OK || (s = run_op(t, stp, &op, m, 0)) != HINGE_OK)
        return dfail(t, s, stp->name);
    float *ref = hget(t, (size_t)m * n), *ref2 = hget(t, (size_t)m * n);
    for (uint32_t j = 0; j < m; j++) {
        size_t o = (size_t)j * n;
        op_rmsnorm(ref + o, x + o, w, n, a.eps);
        if (add)
            op_add(ref + o, r + o, n);
        if (two)
            op_rmsnorm(ref2 + o, ref + o, w2, n, a.eps);
    }
    s = compare(t, stp, &op, add ? &br : &bx, ref, (size_t)m * n);
    return s == HINGE_OK && two ? compare(t, stp, &op, &bo2, ref2, (size_t)m * n) : s;
}

static hinge_status check_glu(st *t, const ex_step *stp, uint32_t m)
{
    uint32_t n = m * stp->args.ew.per_pos, fl = stp->args.ew.flags;
    float *g = hrand(t, n, -6.0f, 6.0f), *u = hrand(t, n, -2.0f, 2.0f);
    dev_buf bg, bu;
    hinge_status s = dput(t, g, n, &bg);
    if (s == HINGE_OK)
        s = dput(t, u, n, &bu);
    dev_op op;
    if (s != HINGE_OK)
        return s;
    if ((s = dev_prepare_glu(t->e->ops, &bg, &bu, stp->args.ew.per_pos, fl, &op)) != HINGE_OK ||
        (s = run_op(t, stp, &op, m, 0)) != HINGE_OK)
        return dfail(t, s, stp->name);
    float *ref = hget(t, n);
    memcpy(ref, g, n * sizeof(float));
    (fl == HK_F_GEGLU ? op_geglu : op_swiglu)(ref, u, n);
    return compare(t, stp, &op, &bg, ref, n);
}

static hinge_status check_embed(st *t, const ex_step *stp)
{
    const vk_exec *e = t->e;
    dev_embed_args a = stp->args.em;
    uint32_t nv = a.w->rows, d = a.w->cols;
    int32_t ids[ST_M] = {0, (int32_t)nv - 1, (int32_t)(nv / 2)};
    float fid[ST_M];
    memcpy(fid, ids, sizeof ids);
    dev_buf bt, bo;
    hinge_status s = dput(t, fid, ST_M, &bt);
    if (s == HINGE_OK)
        s = dput(t, NULL, (size_t)ST_M * d, &bo);
    if (s != HINGE_OK)
        return s;
    a.tokens = &bt, a.tok_off = 0, a.out = &bo, a.out_off = 0, a.out_stride = d;
    dev_op op;
    if ((s = dev_prepare_embed(e->ops, &a, &op)) != HINGE_OK || (s = run_op(t, stp, &op, ST_M, 0)) != HINGE_OK)
        return dfail(t, s, stp->name);
    const weight *te = &e->m->tok_embd;
    float *ref = hget(t, (size_t)ST_M * d);
    for (int j = 0; j < ST_M; j++) {
        quant_dequant_row(te->type, (const uint8_t *)te->data + (size_t)ids[j] * quant_row_bytes(te->type, d),
                          ref + (size_t)j * d, d);
        op_scale(ref + (size_t)j * d, a.scale, d);
    }
    return compare(t, stp, &op, &bo, ref, (size_t)ST_M * d);
}

static hinge_status check_step(st *t, const ex_step *stp, bool decode)
{
    uint32_t m = decode ? 1 : ST_M;
    dev_pool_reset(t->pool);
    t->h_used = 0;
    switch (stp->op.kind) {
    case DEV_OP_MATVEC:
    case DEV_OP_MATMUL: return check_mm(t, stp, stp->op.kind == DEV_OP_MATVEC ? 1 : m);
    case DEV_OP_QKV_ROPE: return check_qkv(t, stp);
    case DEV_OP_LAYER: return check_layer(t, stp);
    case DEV_OP_ATTENTION: return check_attention(t, stp, m);
    case DEV_OP_ROPE_KV: return check_rope(t, stp, m);
    case DEV_OP_RMSNORM: return check_norm(t, stp, m);
    case DEV_OP_GLU: return check_glu(t, stp, m);
    case DEV_OP_EMBED: return check_embed(t, stp);
    default: return HINGE_OK;
    }
}

/* Floats a check needs at most, host and device alike (with room for the
 * host's references and copies). */
static size_t scratch_floats(const vk_exec *e)
{
    const model_hparams *hp = &e->m->hp;
    size_t f = e->d, cand[] = {hp->n_ff, e->qkv_stride, e->att_stride, (size_t)hp->n_head * hp->head_dim,
                               e->head ? hp->n_vocab : 0};
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++)
        f = cand[i] > f ? cand[i] : f;
    size_t kv = e->kv_dim > e->v_dim ? e->kv_dim : e->v_dim;
    return 12 * (size_t)ST_M * ((f + 3) & ~(size_t)3) + 6 * (size_t)ST_CTX * kv + 1024;
}

hinge_status ex_selftest(vk_exec *e)
{
    st t = {.e = e, .rng = 0x2545F4914F6CDD1Dull, .brk = getenv("HINGE_VK_SELFTEST_BREAK")};
    t.h_cap = scratch_floats(e);
    t.h = malloc(t.h_cap * sizeof(float));
    if (!t.h)
        return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_NOMEM, "self-test: out of host memory");
    hinge_status s = dev_pool_create(e->c, DEV_MEM_DEVICE, t.h_cap / 2 * sizeof(float) + ST_SLACK, "self-test",
                                     &t.pool);
    if (s != HINGE_OK)
        s = dfail(&t, s, "self-test");
    const ex_pass *passes[2] = {&e->dec, &e->pre};
    uint32_t checked = 0;
    const ex_step *head = NULL;
    for (int p = 0; p < 2 && s == HINGE_OK; p++)
        for (uint32_t i = 0; i < passes[p]->n && s == HINGE_OK; i++) {
            const ex_step *stp = &passes[p]->steps[i];
            /* the embedding and the head once (the passes share their kernels), the first layer's ops in both */
            bool once = (stp->layer == -1 || stp->last_row) && p == 0;
            if (once || (e->k > 0 && stp->layer == (int32_t)e->first && !stp->last_row)) {
                s = check_step(&t, stp, passes[p]->decode);
                checked++;
            }
            head = stp->last_row ? stp : head;
        }
    if (s == HINGE_OK && head && e->head_rows) {
        /* the batch head (vk_exec_batch.c's bh_op): the head's product on the same weights and norm,
         * matrix-matrix over several rows */
        ex_step bh = *head;
        bh.name = "batch_head";
        bh.op.kind = DEV_OP_MATMUL;
        dev_pool_reset(t.pool);
        t.h_used = 0;
        s = check_mm(&t, &bh, e->head_rows < ST_M ? e->head_rows : ST_M);
        checked++;
    }
    dev_pool_destroy(t.pool);
    free(t.h);
    if (s == HINGE_OK)
        hinge_log(dev_ctx_logger(e->c), HINGE_LOG_INFO, "vulkan: self-test passed (%u ops of %slayer %u%s against "
                  "the CPU)", checked, e->embed ? "the embedding and " : "", e->first,
                  !head ? "" : e->head_rows ? ", the head and the batch head" : " and the head");
    return s;
}
