/* The inversion attack: see privacy_attack.h. */
#include "privacy_attack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "clock.h"
#include "forward.h"
#include "quant.h"

enum { DEF_FIRST = 16, WIDEN = 8, CAL_SEQS = 32 };

struct atk {
    const model *m;
    threadpool *tp;
    uint32_t max_len, batch, cut;
    int32_t *calib;         /* the attacker's own text (tokens), for the calibration */
    size_t n_calib;
    fwd_ctx *device, *mine; /* the device's layers [0, k); the attacker's recovered prefix */
    fwd_ctx **cand;         /* (batch) contexts holding the recovered prefix, one per candidate */
    fwd_batch *fb;
    fwd_item *items;        /* (batch) */
    float *obs;             /* (max_len, d) what the edge sees */
    float *h;               /* (batch, d) candidate rows */
    float *w;               /* (d) a candidate row through the codec */
    float *inv_norm;        /* (n_vocab) 1 / |embedding row| */
    float *inv_map;         /* (d, d) the cut's learned map from a boundary row back to its embedding row */
    float *guess;           /* (d) the map applied to an observed row */
    float *rank_score;      /* (n_vocab) */
    int32_t *order;         /* (n_vocab) candidates, best first */
    uint8_t *frame;         /* one frame of max_len f32 rows */
    size_t frame_cap;
};

static void free_ctxs(atk *a)
{
    fwd_destroy(a->device);
    fwd_destroy(a->mine);
    for (uint32_t i = 0; a->cand && i < a->batch; i++)
        fwd_destroy(a->cand[i]);
    a->device = a->mine = NULL;
    if (a->cand)
        memset(a->cand, 0, a->batch * sizeof *a->cand);
    a->cut = UINT32_MAX;
}

void atk_destroy(atk *a)
{
    if (!a)
        return;
    free_ctxs(a);
    free(a->cand);
    fwd_batch_destroy(a->fb);
    free(a->items);
    free(a->obs);
    free(a->h);
    free(a->w);
    free(a->calib);
    free(a->inv_norm);
    free(a->inv_map);
    free(a->guess);
    free(a->rank_score);
    free(a->order);
    free(a->frame);
    free(a);
}

hinge_status atk_create(const model *m, threadpool *tp, uint32_t max_len, uint32_t batch, const int32_t *calib,
                        size_t n_calib, atk **out, char *err, size_t errlen)
{
    const size_t d = m->hp.n_embd, nv = m->hp.n_vocab;
    if (max_len == 0 || max_len > 4096 || batch == 0 || batch > 256)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "max_len %u or batch %u out of range", max_len, batch);
    atk *a = calloc(1, sizeof *a);
    if (!a)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    *a = (atk){.m = m, .tp = tp, .max_len = max_len, .batch = batch, .cut = UINT32_MAX};
    fwd_batch_config bc = {.max_rows = batch, .max_items = batch, .max_ctx = max_len, .head_rows = 1};
    hinge_status st = fwd_batch_create(m, tp, &bc, &a->fb, err, errlen);
    a->cand = calloc(batch, sizeof *a->cand);
    a->items = calloc(batch, sizeof *a->items);
    a->obs = malloc((size_t)max_len * d * sizeof(float));
    a->h = malloc((size_t)batch * d * sizeof(float));
    a->w = malloc(d * sizeof(float));
    a->calib = malloc((n_calib ? n_calib : 1) * sizeof *calib);
    if (a->calib && n_calib)
        memcpy(a->calib, calib, n_calib * sizeof *calib);
    a->n_calib = n_calib;
    a->inv_norm = malloc(nv * sizeof(float));
    a->inv_map = malloc(d * d * sizeof(float));
    a->guess = malloc(d * sizeof(float));
    a->rank_score = malloc(nv * sizeof(float));
    a->order = malloc(nv * sizeof(int32_t));
    if (st == HINGE_OK && tx_frame_size(TX_CODEC_F32, max_len, (uint32_t)d, &a->frame_cap) != HINGE_OK)
        st = hinge_fail(err, errlen, HINGE_ERR_RANGE, "rows of %zu values are over the wire's limits", d);
    a->frame = st == HINGE_OK ? malloc(a->frame_cap) : NULL;
    if (st == HINGE_OK && (!a->cand || !a->items || !a->obs || !a->h || !a->w || !a->calib || !a->inv_norm || !a->inv_map || !a->guess || !a->rank_score ||
                           !a->order || !a->frame))
        st = hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory for the attack");
    if (st != HINGE_OK) {
        atk_destroy(a);
        return st;
    }
    const weight *e = &m->tok_embd;
    size_t rb = quant_row_bytes(e->type, e->cols);
    for (size_t v = 0; v < nv; v++) {
        quant_dequant_row(e->type, (const uint8_t *)e->data + v * rb, a->w, d);
        double ss = 0.0;
        for (size_t j = 0; j < d; j++)
            ss += (double)a->w[j] * a->w[j];
        a->inv_norm[v] = ss > 0.0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    }
    *out = a;
    return HINGE_OK;
}

/* ---- the learned inverse map (ranking) ---- */

/* Solves (G + lam I) X = C in place of C for d right-hand columns by
 * Cholesky (G symmetric, its upper triangle filled; destroyed). */
static void ridge_solve(double *G, double *C, size_t d)
{
    double tr = 0.0;
    for (size_t i = 0; i < d; i++)
        tr += G[i * d + i];
    double lam = 1e-3 * tr / (double)d + 1e-12;
    for (size_t i = 0; i < d; i++) { /* G = R^T R, R upper triangular, in G's upper triangle */
        G[i * d + i] += lam;
        for (size_t k = 0; k < i; k++)
            G[i * d + i] -= G[k * d + i] * G[k * d + i];
        G[i * d + i] = sqrt(G[i * d + i]);
        for (size_t j = i + 1; j < d; j++) {
            double v = G[i * d + j];
            for (size_t k = 0; k < i; k++)
                v -= G[k * d + i] * G[k * d + j];
            G[i * d + j] = v / G[i * d + i];
        }
    }
    for (size_t i = 0; i < d; i++) { /* R^T Y = C, forward */
        for (size_t k = 0; k < i; k++)
            for (size_t j = 0; j < d; j++)
                C[i * d + j] -= G[k * d + i] * C[k * d + j];
        for (size_t j = 0; j < d; j++)
            C[i * d + j] /= G[i * d + i];
    }
    for (size_t i = d; i-- > 0;) { /* R X = Y, backward */
        for (size_t k = i + 1; k < d; k++)
            for (size_t j = 0; j < d; j++)
                C[i * d + j] -= G[i * d + k] * C[k * d + j];
        for (size_t j = 0; j < d; j++)
            C[i * d + j] /= G[i * d + i];
    }
}

/* The attacker's calibration, once per cut: it runs its own text (never
 * the prompts), then random tokens, through layers [0, k) and fits by
 * ridge regression the linear map from a boundary row back to its token's
 * embedding row. Ranking the vocabulary by the cosine of the mapped
 * observed row with each embedding row puts the true token near the top
 * even where the layers have moved the row far from its embedding. */
static hinge_status calibrate(atk *a, char *err, size_t errlen)
{
    const size_t d = a->m->hp.n_embd, len = a->max_len, nv = a->m->hp.n_vocab;
    double *G = calloc(d * d, sizeof *G), *C = calloc(d * d, sizeof *C);
    float *e = malloc(len * d * sizeof *e);
    int32_t *tok = malloc(len * sizeof *tok);
    hinge_status st = G && C && e && tok ? HINGE_OK : hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    int32_t bos = tok_bos(a->m->tok);
    uint64_t x = UINT64_C(0x243f6a8885a308d3);
    for (int seq = 0; st == HINGE_OK && seq < CAL_SEQS; seq++) {
        for (size_t i = 0; i < len; i++) { /* its text first, then random tokens */
            size_t at = (size_t)seq * (len - 1) + i - 1;
            x = x * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
            tok[i] = i == 0 && bos >= 0 ? bos : at < a->n_calib ? a->calib[at] : (int32_t)((x >> 33) % nv);
        }
        if ((st = fwd_embed(a->device, tok, len, e)) != HINGE_OK)
            break;
        memcpy(a->obs, e, len * d * sizeof *e);
        if ((st = fwd_layers(a->device, 0, len, a->obs)) != HINGE_OK)
            break;
        for (size_t r = bos >= 0; r < len; r++) {
            const float *h = a->obs + r * d, *t = e + r * d;
            for (size_t i = 0; i < d; i++) {
                for (size_t j = i; j < d; j++)
                    G[i * d + j] += (double)h[i] * h[j];
                for (size_t j = 0; j < d; j++)
                    C[i * d + j] += (double)h[i] * t[j];
            }
        }
    }
    if (st == HINGE_OK) {
        ridge_solve(G, C, d);
        for (size_t i = 0; i < d * d; i++)
            a->inv_map[i] = (float)C[i];
    } else
        hinge_fail(err, errlen, st, "calibration: %s", fwd_errmsg(a->device));
    free(G);
    free(C);
    free(e);
    free(tok);
    return st;
}

/* guess = the inverse map applied to o. */
static void map_back(atk *a, const float *o)
{
    size_t d = a->m->hp.n_embd;
    memset(a->guess, 0, d * sizeof(float));
    for (size_t i = 0; i < d; i++)
        for (size_t j = 0; j < d; j++)
            a->guess[j] += a->inv_map[i * d + j] * o[i];
}

/* Contexts of layers [0, k), made when the cut changes. */
static hinge_status use_cut(atk *a, uint32_t k, char *err, size_t errlen)
{
    if (a->cut == k)
        return HINGE_OK;
    free_ctxs(a);
    fwd_config fc = {.layer_begin = 0, .layer_end = k, .ctx = a->max_len, .max_batch = 64};
    hinge_status st = fwd_create(a->m, a->tp, &fc, &a->device, err, errlen);
    if (st == HINGE_OK)
        st = fwd_create(a->m, a->tp, &fc, &a->mine, err, errlen);
    fc.max_batch = 1;
    for (uint32_t i = 0; st == HINGE_OK && i < a->batch; i++)
        st = fwd_create(a->m, a->tp, &fc, &a->cand[i], err, errlen);
    if (st == HINGE_OK && (st = calibrate(a, err, errlen)) == HINGE_OK)
        a->cut = k;
    return st;
}

/* The rows through the codec, in place (one frame, as the device sends). */
static hinge_status through_wire(atk *a, tx_codec c, float *rows, uint32_t n, uint32_t pos0, char *err,
                                 size_t errlen)
{
    uint32_t d = a->m->hp.n_embd;
    tx_frame_limits lim = {.codec = c, .dim = d, .max_n = a->max_len};
    size_t len = 0;
    hinge_status st = tx_frame_encode(c, 0, pos0, n, d, rows, a->frame, a->frame_cap, &len, err, errlen);
    if (st == HINGE_OK)
        st = tx_frame_decode(a->frame, len, &lim, rows, (size_t)n * d, NULL, err, errlen);
    return st;
}

/* ---- ranking ---- */

typedef struct rank_job {
    const atk *a;
    const float *o;
} rank_job;

static void rank_task(void *ctx, int task, int n_tasks, int thread)
{
    (void)thread;
    rank_job *j = ctx;
    const weight *e = &j->a->m->tok_embd;
    size_t nv = j->a->m->hp.n_vocab, per = (nv + (size_t)n_tasks - 1) / (size_t)n_tasks;
    size_t lo = (size_t)task * per, hi = lo + per < nv ? lo + per : nv;
    if (lo >= hi)
        return;
    quant_matvec(e->type, e->data, e->cols, j->o, j->a->rank_score, lo, hi);
    for (size_t v = lo; v < hi; v++)
        j->a->rank_score[v] *= j->a->inv_norm[v];
}

/* Min-heap of candidate ids on rank_score: the top `cap` of the vocabulary. */
static void sift_down(const float *sc, int32_t *hp, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && sc[hp[l]] < sc[hp[m]])
            m = l;
        if (r < n && sc[hp[r]] < sc[hp[m]])
            m = r;
        if (m == i)
            return;
        int32_t t = hp[i];
        hp[i] = hp[m];
        hp[m] = t;
        i = m;
    }
}

/* a->order[0..cap) = the cap candidates of highest cosine with o, best first. */
static void rank(atk *a, const float *o, size_t cap)
{
    rank_job j = {.a = a, .o = o};
    tp_run(a->tp, rank_task, &j, 4 * tp_threads(a->tp));
    const float *sc = a->rank_score;
    size_t nv = a->m->hp.n_vocab, n = 0;
    int32_t *hp = a->order;
    for (size_t v = 0; v < nv; v++) {
        if (n < cap) {
            hp[n++] = (int32_t)v;
            if (n == cap)
                for (size_t i = cap / 2; i-- > 0;)
                    sift_down(sc, hp, cap, i);
        } else if (sc[v] > sc[hp[0]]) {
            hp[0] = (int32_t)v;
            sift_down(sc, hp, cap, 0);
        }
    }
    if (n < cap) /* a vocabulary smaller than cap: heapify what there is */
        for (size_t i = n / 2; i-- > 0;)
            sift_down(sc, hp, n, i);
    for (size_t end = n; end > 1; end--) { /* heap sort: the smallest go to the back */
        int32_t t = hp[0];
        hp[0] = hp[end - 1];
        hp[end - 1] = t;
        sift_down(sc, hp, end - 1, 0);
    }
}

/* ---- scoring ---- */

/* What the attacker knows of the wire's distortion for a candidate row h:
 * the variance per value of the noise and of the codec's rounding. */
static double distortion_var(const atk_params *p, const float *h, size_t d)
{
    double ss = 0.0, mx = 0.0;
    for (size_t j = 0; j < d; j++) {
        ss += (double)h[j] * h[j];
        mx = fabs(h[j]) > mx ? fabs(h[j]) : mx;
    }
    double var = (double)p->noise * p->noise * ss / (double)d;
    if (p->codec == TX_CODEC_Q8)
        var += (mx / 127.0) * (mx / 127.0) / 12.0;
    else if (p->codec == TX_CODEC_F16)
        var += ss / (double)d * (1.0 / (2048.0 * 2048.0 * 12.0));
    return var;
}

typedef struct best {
    int32_t tok;
    double score;
    bool accepted;
} best;

/* Scores candidate row h against the observed row o; updates *b. */
static hinge_status score(atk *a, const atk_params *p, const float *h, const float *o, uint32_t t, int32_t tok,
                          best *b, char *err, size_t errlen)
{
    size_t d = a->m->hp.n_embd;
    double err2 = 0.0, o2 = 0.0, sc;
    bool ok;
    if (p->noise <= 0.0f) { /* deterministic wire: the true token's row, encoded, is the observed row */
        memcpy(a->w, h, d * sizeof(float));
        hinge_status st = through_wire(a, p->codec, a->w, 1, t, err, errlen);
        if (st != HINGE_OK)
            return st;
        for (size_t j = 0; j < d; j++) {
            double e = (double)a->w[j] - o[j];
            err2 += e * e;
            o2 += (double)o[j] * o[j];
        }
        sc = err2;
        ok = err2 <= 1e-8 * o2;

    } else { /* Gaussian noise of known law: the likelihood of o given h */
        for (size_t j = 0; j < d; j++) {
            double e = (double)h[j] - o[j];
            err2 += e * e;
        }
        double var = distortion_var(p, h, d);
        sc = err2 / (2.0 * var) + 0.5 * (double)d * log(var);
        ok = false; /* many candidates fit within the noise: the most likely of all of them wins */
    }
    if (b->tok < 0 || sc < b->score)
        *b = (best){.tok = tok, .score = sc, .accepted = ok};
    return HINGE_OK;
}

/* Candidates order[lo, hi) at position t, in batches. */
static hinge_status try_range(atk *a, const atk_params *p, const float *o, uint32_t t, size_t lo, size_t hi, best *b,
                              char *err, size_t errlen)
{
    size_t d = a->m->hp.n_embd;
    for (size_t at = lo; at < hi; at += a->batch) {
        uint32_t n = (uint32_t)(hi - at < a->batch ? hi - at : a->batch);
        fwd_ctx *f = a->cand[0];
        hinge_status st = fwd_embed(f, a->order + at, n, a->h);
        for (uint32_t i = 0; st == HINGE_OK && i < n; i++)
            a->items[i] = (fwd_item){.f = a->cand[i], .pos0 = t, .n = 1, .hidden = a->h + i * d};
        if (st == HINGE_OK && (st = fwd_batch_run(a->fb, a->items, n)) != HINGE_OK)
            return hinge_fail(err, errlen, st, "candidates: %s", fwd_batch_errmsg(a->fb));
        for (uint32_t i = 0; st == HINGE_OK && i < n; i++)
            st = score(a, p, a->h + i * d, o, t, a->order[at + i], b, err, errlen);
        if (st != HINGE_OK)
            return st;
    }
    return HINGE_OK;
}

/* The best candidate for position t (rounds widening from p->first). */
static hinge_status search(atk *a, const atk_params *p, uint32_t t, int32_t *tok, atk_result *r, char *err,
                           size_t errlen)
{
    size_t d = a->m->hp.n_embd, nv = a->m->hp.n_vocab;
    size_t cap = p->max_cand && p->max_cand < nv ? p->max_cand : nv, first = p->first ? p->first : DEF_FIRST;
    const float *o = a->obs + (size_t)t * d;
    map_back(a, o);
    rank(a, a->guess, cap);

    best b = {.tok = -1};
    for (size_t lo = 0, hi = first; lo < cap && !b.accepted; lo = hi, hi *= WIDEN) {
        hi = hi < cap ? hi : cap;
        hinge_status st = try_range(a, p, o, t, lo, hi, &b, err, errlen);
        if (st != HINGE_OK)
            return st;
        r->candidates += hi - lo;
        r->widened += lo == first;
    }
    *tok = b.tok;
    return HINGE_OK;
}

/* Token tok at position t becomes part of the recovered prefix: its KV
 * rows, computed once, go into every candidate context. */
static hinge_status adopt(atk *a, uint32_t t, int32_t tok, char *err, size_t errlen)
{
    hinge_status st = fwd_embed(a->mine, &tok, 1, a->h);
    if (st == HINGE_OK)
        st = fwd_layers(a->mine, t, 1, a->h);
    for (uint32_t i = 0; st == HINGE_OK && i < a->batch; i++)
        st = fwd_cache_copy(a->cand[i], a->mine, t, 1);
    if (st != HINGE_OK)
        return hinge_fail(err, errlen, st, "prefix: %s", fwd_errmsg(a->mine));
    return HINGE_OK;
}

hinge_status atk_run(atk *a, const atk_params *p, const int32_t *tokens, size_t n, atk_result *r, char *err,
                     size_t errlen)
{
    *r = (atk_result){0};
    if (n == 0 || n > a->max_len || p->cut > a->m->hp.n_layer)
        return hinge_fail(err, errlen, HINGE_ERR_RANGE, "%zu tokens (at most %u) or cut %u out of range", n,
                          a->max_len, p->cut);
    hinge_status st = use_cut(a, p->cut, err, errlen);
    /* the device: its layers, its noise, its codec: what the edge decodes */
    uint32_t d = a->m->hp.n_embd;
    if (st == HINGE_OK && ((st = fwd_embed(a->device, tokens, n, a->obs)) != HINGE_OK ||
                           (st = fwd_layers(a->device, 0, n, a->obs)) != HINGE_OK))
        return hinge_fail(err, errlen, st, "device: %s", fwd_errmsg(a->device));
    if (st != HINGE_OK)
        return st;
    tx_noise_add(a->obs, (uint32_t)n, d, 0, p->noise, p->noise_seed);
    if ((st = through_wire(a, p->codec, a->obs, (uint32_t)n, 0, err, errlen)) != HINGE_OK)
        return st;
    /* the edge: position by position */
    double t0 = clk_now_s();
    int32_t bos = a->m->tok ? tok_bos(a->m->tok) : -1;
    for (uint32_t t = 0; t < n; t++) {
        bool known = t == 0 && bos >= 0 && tokens[0] == bos; /* every session starts with BOS */
        int32_t got = bos;
        if (!known && (st = search(a, p, t, &got, r, err, errlen)) != HINGE_OK)
            return st;
        if ((st = adopt(a, t, got, err, errlen)) != HINGE_OK)
            return st;
        r->positions += !known;
        r->recovered += !known && got == tokens[t];
    }
    r->seconds = clk_now_s() - t0;
    return HINGE_OK;
}
