/* One split generation: see split_run.h. */
#include "split_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer.h"

typedef struct run {
    const split_opts *o;
    split_result *r;
    uint32_t dim, ctx;
    fwd_ctx *dev;          /* [0, k) */
    float *hidden;         /* (n_prompt, dim) */
    /* the far half */
    tx_client *client;
    tx_session *sess;
    fwd_ctx *far;          /* in-process [k, N) */
    sampler *smp;
    float *logits;
    /* measure */
    fwd_ctx *exact, *lossy;
    float *h_exact, *h_lossy, *l_exact, *l_lossy;
    uint8_t *frame;
    size_t frame_cap;
    int32_t want_exact, want_lossy; /* argmaxes of the step being measured */
} run;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int32_t argmax(const float *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

static hinge_status make_fwd(run *R, uint32_t a, uint32_t b, fwd_ctx **out)
{
    fwd_config fc = {.layer_begin = a, .layer_end = b, .ctx = R->ctx};
    return fwd_create(R->o->m, R->o->tp, &fc, out, R->r->err, sizeof R->r->err);
}

static hinge_status open_far(run *R)
{
    const split_opts *o = R->o;
    const model_hparams *hp = &o->m->hp;
    if (!o->edge_url) {
        hinge_status s = make_fwd(R, o->cut, hp->n_layer, &R->far);
        if (s == HINGE_OK)
            s = sampler_create(&o->sp, hp->n_vocab, &R->smp);
        return s;
    }
    tx_client_config cc = {.base_url = o->edge_url, .cacert = o->cacert, .timeout_ms = 60000, .spin_us = o->spin_us};
    hinge_status s = tx_client_create(&cc, &R->client, R->r->err, sizeof R->r->err);
    if (s != HINGE_OK)
        return s;
    tx_session_config sc = {.cut = o->cut, .codec = o->codec, .sampling = o->sp, .ctx = R->ctx,
                            .max_step = o->max_step};
    memcpy(sc.model_sha256, o->m->sha256, 32);
    s = tx_session_open(R->client, &sc, &R->sess, R->r->err, sizeof R->r->err);
    if (s == HINGE_OK && tx_session_get_info(R->sess)->n_embd != R->dim)
        s = hinge_fail(R->r->err, sizeof R->r->err, HINGE_ERR_PROTOCOL, "edge n_embd differs");
    return s;
}

static hinge_status open_measure(run *R)
{
    const model_hparams *hp = &R->o->m->hp;
    size_t rows = R->o->n_prompt > 1 ? R->o->n_prompt : 1;
    hinge_status s = make_fwd(R, R->o->cut, hp->n_layer, &R->exact);
    if (s == HINGE_OK)
        s = make_fwd(R, R->o->cut, hp->n_layer, &R->lossy);
    if (s == HINGE_OK)
        s = tx_frame_size(R->o->codec, (uint32_t)rows, R->dim, &R->frame_cap);
    if (s != HINGE_OK)
        return s;
    R->h_exact = malloc(rows * R->dim * sizeof(float));
    R->h_lossy = malloc(rows * R->dim * sizeof(float));
    R->l_exact = malloc(hp->n_vocab * sizeof(float));
    R->l_lossy = malloc(hp->n_vocab * sizeof(float));
    R->frame = malloc(R->frame_cap);
    if (!R->h_exact || !R->h_lossy || !R->l_exact || !R->l_lossy || !R->frame)
        return HINGE_ERR_NOMEM;
    return HINGE_OK;
}

/* Exact and lossy logits of the step's last row, before the edge answers. */
static hinge_status measure_before(run *R, uint32_t pos, uint32_t n)
{
    const model_hparams *hp = &R->o->m->hp;
    size_t len, rows = (size_t)n * R->dim;
    memcpy(R->h_exact, R->hidden, rows * sizeof(float));
    tx_frame_limits lim = {.codec = R->o->codec, .dim = R->dim, .max_n = n};
    hinge_status s = tx_frame_encode(R->o->codec, 0, pos, n, R->dim, R->hidden, R->frame, R->frame_cap, &len,
                                     R->r->err, sizeof R->r->err);
    if (s == HINGE_OK)
        s = tx_frame_decode(R->frame, len, &lim, R->h_lossy, rows, NULL, R->r->err, sizeof R->r->err);
    if (s == HINGE_OK)
        s = fwd_layers(R->exact, pos, n, R->h_exact);
    if (s == HINGE_OK)
        s = fwd_layers(R->lossy, pos, n, R->h_lossy);
    if (s == HINGE_OK)
        s = fwd_head(R->exact, R->h_exact + (size_t)(n - 1) * R->dim, 1, R->l_exact);
    if (s == HINGE_OK)
        s = fwd_head(R->lossy, R->h_lossy + (size_t)(n - 1) * R->dim, 1, R->l_lossy);
    if (s != HINGE_OK)
        return s;
    double d = 0;
    for (uint32_t i = 0; i < hp->n_vocab; i++)
        d = fmax(d, fabs((double)R->l_exact[i] - (double)R->l_lossy[i]));
    R->r->max_logit_diff = fmax(R->r->max_logit_diff, d);
    R->want_exact = argmax(R->l_exact, hp->n_vocab);
    R->want_lossy = argmax(R->l_lossy, hp->n_vocab);
    return HINGE_OK;
}

static void measure_after(run *R, int32_t tok)
{
    R->r->positions++;
    R->r->agree += tok == R->want_exact;
    R->r->edge_mismatch += tok != R->want_lossy;
}

static void add_timing(tx_timing *sum, const tx_timing *t)
{
    sum->encode_us += t->encode_us;
    sum->request_us += t->request_us;
    sum->edge_us += t->edge_us;
    sum->queue_us += t->queue_us;
    sum->network_us += t->network_us;
    sum->uplink_bytes += t->uplink_bytes;
    sum->downlink_bytes += t->downlink_bytes;
    sum->requests += t->requests;
}

/* Device half on tokens, then the far half; *tok is the sampled token. */
static hinge_status step(run *R, const int32_t *tokens, uint32_t pos, uint32_t n, int32_t *tok)
{
    double t0 = now_us();
    hinge_status s = fwd_embed(R->dev, tokens, n, R->hidden);
    if (s == HINGE_OK)
        s = fwd_layers(R->dev, pos, n, R->hidden);
    uint64_t dev_us = (uint64_t)(now_us() - t0);
    R->r->device_us += dev_us;
    if (n == 1)
        R->r->decode_device_us += dev_us;
    if (s == HINGE_OK && R->o->measure)
        s = measure_before(R, pos, n);
    if (s != HINGE_OK)
        return s;
    if (R->sess) {
        tx_timing t;
        s = tx_session_step(R->sess, pos, n, R->hidden, tok, &t);
        add_timing(&R->r->wire, &t);
        if (n == 1)
            add_timing(&R->r->decode_wire, &t);
        if (s != HINGE_OK)
            return hinge_fail(R->r->err, sizeof R->r->err, s, "%s", tx_session_errmsg(R->sess));
    } else {
        s = fwd_layers(R->far, pos, n, R->hidden);
        if (s == HINGE_OK)
            s = fwd_head(R->far, R->hidden + (size_t)(n - 1) * R->dim, 1, R->logits);
        if (s != HINGE_OK)
            return s;
        *tok = sampler_sample(R->smp, R->logits);
    }
    if (R->o->measure)
        measure_after(R, *tok);
    return HINGE_OK;
}

static hinge_status generate(run *R)
{
    const split_opts *o = R->o;
    split_result *r = R->r;
    int32_t tok;
    double t0 = now_us();
    hinge_status s = step(R, o->prompt, 0, (uint32_t)o->n_prompt, &tok);
    r->ttft_us = now_us() - t0;
    for (uint32_t i = 0; s == HINGE_OK && i < o->n_new; i++) {
        if (tok_is_eog(o->m->tok, tok) && !o->ignore_eos)
            break;
        r->tokens[r->n_gen++] = tok;
        if (o->on_token)
            o->on_token(o->user, i);
        if (i + 1 == o->n_new)
            break;
        t0 = now_us();
        s = step(R, &tok, (uint32_t)o->n_prompt + i, 1, &tok);
        double dt = now_us() - t0;
        r->decode_us += dt;
        r->step_us[r->decode_steps++] = dt;
    }
    return s;
}

static hinge_status setup(run *R)
{
    const split_opts *o = R->o;
    const model_hparams *hp = &o->m->hp;
    R->dim = hp->n_embd;
    R->ctx = (uint32_t)o->n_prompt + o->n_new;
    R->r->tokens = calloc(o->n_new ? o->n_new : 1, sizeof(int32_t));
    R->r->step_us = calloc(o->n_new ? o->n_new : 1, sizeof(double));
    R->hidden = malloc(o->n_prompt * R->dim * sizeof(float));
    R->logits = malloc(hp->n_vocab * sizeof(float));
    if (!R->r->tokens || !R->r->step_us || !R->hidden || !R->logits)
        return HINGE_ERR_NOMEM;
    hinge_status s = make_fwd(R, 0, o->cut, &R->dev);
    if (s == HINGE_OK)
        s = open_far(R);
    if (s == HINGE_OK && o->measure)
        s = open_measure(R);
    return s;
}

hinge_status split_run(const split_opts *o, split_result *r)
{
    memset(r, 0, sizeof *r);
    if (!o->n_prompt || o->cut > o->m->hp.n_layer)
        return hinge_fail(r->err, sizeof r->err, HINGE_ERR_INVALID, "empty prompt or cut beyond the model");
    run R = {.o = o, .r = r};
    hinge_status s = setup(&R);
    if (s == HINGE_OK)
        s = generate(&R);
    char ignored[HINGE_ERRMSG_MAX];
    hinge_status c = tx_session_close(R.sess, ignored, sizeof ignored);
    if (s == HINGE_OK && c != HINGE_OK)
        s = hinge_fail(r->err, sizeof r->err, c, "closing the session: %s", ignored);
    if (R.client)
        tx_client_get_stats(R.client, &r->stats);
    tx_client_destroy(R.client);
    fwd_destroy(R.dev);
    fwd_destroy(R.far);
    fwd_destroy(R.exact);
    fwd_destroy(R.lossy);
    sampler_destroy(R.smp);
    free(R.hidden);
    free(R.logits);
    free(R.h_exact);
    free(R.h_lossy);
    free(R.l_exact);
    free(R.l_lossy);
    free(R.frame);
    if (s != HINGE_OK && !r->err[0])
        hinge_fail(r->err, sizeof r->err, s, "%s", hinge_strerror(s));
    return s;
}

void split_result_free(split_result *r)
{
    free(r->tokens);
    free(r->step_us);
    r->tokens = NULL;
    r->step_us = NULL;
}
