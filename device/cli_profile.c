/* hinge profile: measures this machine and writes a device (or edge)
 * profile for the partitioner (docs/partitioning.md).
 *
 *   hinge profile --model M [--backend cpu|vulkan] [--threads N] [--ctx C]
 *                 [--role device|edge] [--name NAME]
 *                 [--edge URL [--cacert PEM]] -o FILE
 *
 * Per layer: a prefill over positions [0, C) in passes of 64 (each pass
 * timed; fitted as us per position + us per attended key), and decode
 * steps at four context lengths (median of 7 each; fitted likewise). The
 * head (final norm, output, greedy sampling) and the frame encoding run on
 * the CPU in both backends; on Vulkan the layer times are the GPU
 * timestamps scaled so that they add up to the measured wall time of a
 * step (the submit and wait overhead of a step goes to the embedding).
 * first_touch_us is the cost of the first pass of a fresh process: page
 * faults on the mapped weights (CPU engine; none once the file was hashed),
 * or a new executor's first use (Vulkan: lavapipe compiles and touches on
 * first dispatch, tens of milliseconds) shared out over the layers.
 * With --edge, the HTTP/2 + TLS overhead of a step and of opening a
 * session are measured against that edge (normally one on loopback). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "partition.h"
#include "transport.h"
#include "vk_context.h"
#include "vk_exec.h"

enum { PASS = 64, REPS = 7, N_DEC = 4, HTTP_STEPS = 24, DEFAULT_CTX = 1024, MAX_CTX = 4096, MAX_PASSES = 1024 };

/* Prefill pass sizes, cycled: several sizes separate the cost of a pass
 * (decoding the weights once) from the cost per position. */
static const uint32_t PASS_SIZES[] = {64, 8, 48, 16, 32, 64, 24, 56, 4, 40};

/* What this machine cannot measure (no power counters in a VM). */
#define POWER_SOURCE \
    "assumption, not measured: no power counters readable here; typical figures for one busy x86 core " \
    "package share, a Wi-Fi/Ethernet NIC sending, receiving, and an idle host"
static const double ASSUMED_POWER_W[4] = {15.0, 1.5, 1.0, 3.0}; /* compute, tx, rx, idle */

typedef struct prof {
    engine *en;
    const opts *o;
    uint32_t ctx, d;
    uint32_t dec_pos[N_DEC];
    uint32_t n_pass;  /* prefill passes covering [0, ctx) */
    uint32_t pass_pos[MAX_PASSES], pass_n[MAX_PASSES];
    int32_t *tok;     /* ctx synthetic token ids */
    float *h;         /* (ctx, d) */
    float *row;       /* d */
    part_compute pc;
    double first_use_us; /* Vulkan: a new executor's first pass over its warm-up */
    char err[HINGE_ERRMSG_MAX];
} prof;

static int fail(const char *what, hinge_status s, const char *msg)
{
    fprintf(stderr, "hinge profile: %s: %s (%s)\n", what, msg, hinge_strerror(s));
    return -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Solves the k x k system a c = b (Gaussian elimination, partial
 * pivoting); false when singular. */
static bool solve(double a[3][3], double b[3], int k, double *c)
{
    for (int i = 0; i < k; i++) {
        int piv = i;
        for (int r = i + 1; r < k; r++)
            if (fabs(a[r][i]) > fabs(a[piv][i]))
                piv = r;
        if (fabs(a[piv][i]) < 1e-300)
            return false;
        for (int j = 0; j < 3; j++) {
            double t = a[i][j];
            a[i][j] = a[piv][j];
            a[piv][j] = t;
        }
        double t = b[i];
        b[i] = b[piv];
        b[piv] = t;
        for (int r = i + 1; r < k; r++) {
            double f = a[r][i] / a[i][i];
            for (int j = i; j < k; j++)
                a[r][j] -= f * a[i][j];
            b[r] -= f * b[i];
        }
    }
    for (int i = k - 1; i >= 0; i--) {
        double v = b[i];
        for (int j = i + 1; j < k; j++)
            v -= a[i][j] * c[j];
        c[i] = v / a[i][i];
    }
    return true;
}

/* Least squares y = sum_j coef[j] * x[i][j] over rows i, with every coef
 * >= 0 (no cost can be negative: a negative coefficient is noise, dropped
 * and the rest refitted). x is (rows, 3); only the first k columns count. */
static void fit_nonneg(const double (*x)[3], const double *y, size_t rows, int k, double *coef)
{
    bool on[3] = {k > 0, k > 1, k > 2};
    for (int round = 0; round < 3; round++) {
        int idx[3], m = 0;
        for (int j = 0; j < k; j++)
            if (on[j])
                idx[m++] = j;
        double a[3][3] = {{0}}, b[3] = {0}, c[3] = {0};
        for (size_t i = 0; i < rows; i++)
            for (int r = 0; r < m; r++) {
                b[r] += x[i][idx[r]] * y[i];
                for (int q = 0; q < m; q++)
                    a[r][q] += x[i][idx[r]] * x[i][idx[q]];
            }
        bool ok = m > 0 && solve(a, b, m, c);
        bool neg = false;
        for (int j = 0; j < k; j++)
            coef[j] = 0;
        for (int r = 0; ok && r < m; r++) {
            coef[idx[r]] = c[r];
            if (c[r] < 0) {
                on[idx[r]] = false;
                neg = true;
            }
        }
        if (!neg)
            break;
    }
    for (int j = 0; j < k; j++)
        coef[j] = coef[j] > 0 ? coef[j] : 0;
}

/* Fits one layer: prefill pass j (p->pass_pos/n) took pass_us[j]; a decode
 * step at p->dec_pos[i] dec_us[i]. Prefill: us = per_pass + per_pos * n +
 * per_attended * attended; decode: us = decode + per_attended * attended. */
static void fit_layer(const prof *p, uint32_t il, const double *pass_us, const double *dec_us, part_layer_cost *out)
{
    uint32_t win = model_layer_is_swa(&p->en->m->hp, il) ? p->en->m->hp.swa_window : 0;
    double (*x)[3] = calloc(p->n_pass, sizeof *x);
    if (!x)
        return;
    for (uint32_t j = 0; j < p->n_pass; j++) {
        x[j][0] = 1.0;
        x[j][1] = p->pass_n[j];
        x[j][2] = part_attended_sum(win, p->pass_pos[j], p->pass_n[j]);
    }
    double c[3];
    fit_nonneg((const double (*)[3])x, pass_us, p->n_pass, 3, c);
    out->prefill_us_per_pass = c[0];
    out->prefill_us_per_pos = c[1];
    out->prefill_us_per_attended = c[2];
    double xd[N_DEC][3];
    for (int i = 0; i < N_DEC; i++) {
        xd[i][0] = 1.0;
        xd[i][1] = part_attended_sum(win, p->dec_pos[i], 1);
    }
    fit_nonneg((const double (*)[3])xd, dec_us, N_DEC, 2, c);
    out->decode_us = c[0];
    out->decode_us_per_attended = c[1];
    free(x);
}

/* ---- CPU engine ---- */

/* Times the prefill passes (pass_us[j]) and the decode steps (dec_us[i],
 * median of REPS) of f's layers; hidden rows come from p->h. */
static void time_stage(prof *p, fwd_ctx *f, double *pass_us, double *dec_us)
{
    double reps[REPS];
    fwd_embed(f, p->tok, p->ctx, p->h);
    for (uint32_t j = 0; j < p->n_pass; j++) {
        double t0 = now_s();
        fwd_layers(f, p->pass_pos[j], p->pass_n[j], p->h + (size_t)p->pass_pos[j] * p->d);
        pass_us[j] = (now_s() - t0) * 1e6;
    }
    for (int i = 0; i < N_DEC; i++) {
        for (int r = 0; r < REPS; r++) {
            memcpy(p->row, p->h + (size_t)p->dec_pos[i] * p->d, p->d * sizeof(float));
            double t0 = now_s();
            fwd_layers(f, p->dec_pos[i], 1, p->row);
            reps[r] = (now_s() - t0) * 1e6;
        }
        dec_us[i] = median(reps, REPS);
    }
}

/* Layers [a, b) of the CPU engine: pass and decode times; with touch, the
 * first pass's page-fault cost (the pages were dropped) into *touch_us. */
static int cpu_range(prof *p, uint32_t a, uint32_t b, double *pass_us, double *dec_us, double *touch_us)
{
    fwd_config fc = {.layer_begin = a, .layer_end = b, .ctx = p->ctx, .max_batch = PASS};
    fwd_ctx *f = NULL;
    hinge_status s = fwd_create(p->en->m, p->en->tp, &fc, &f, p->err, sizeof p->err);
    if (s != HINGE_OK)
        return fail("layer context", s, p->err);
    uint32_t n0 = PASS < p->ctx ? PASS : p->ctx;
    double t[2];
    fwd_embed(f, p->tok, p->ctx, p->h);
    for (int r = 0; r < 2; r++) { /* cold, then warm: the passes below rewind */
        double t0 = now_s();
        fwd_layers(f, 0, n0, p->h);
        t[r] = (now_s() - t0) * 1e6;
    }
    if (touch_us)
        *touch_us = t[0] > t[1] ? t[0] - t[1] : 0;
    time_stage(p, f, pass_us, dec_us);
    fwd_destroy(f);
    return 0;
}

/* Scales each column (pass or decode context) of the per-layer times
 * (n_layer rows of cols) so that the layers add up to the whole stack's
 * time: a layer timed alone keeps its few MB of weights in the last
 * level cache, which a real step, streaming every layer, does not. */
static void scale_to_stack(double *per_layer, const double *stack, uint32_t n_layer, size_t cols)
{
    for (size_t j = 0; j < cols; j++) {
        double sum = 0;
        for (uint32_t l = 0; l < n_layer; l++)
            sum += per_layer[(size_t)l * cols + j];
        double k = sum > 0 ? stack[j] / sum : 1.0;
        for (uint32_t l = 0; l < n_layer; l++)
            per_layer[(size_t)l * cols + j] *= k;
    }
}

static int cpu_layers(prof *p)
{
    uint32_t N = p->en->m->hp.n_layer;
    size_t np = p->n_pass;
    double *pass = calloc((size_t)(N + 1) * np, sizeof *pass), *dec = calloc((size_t)(N + 1) * N_DEC, sizeof *dec);
    int rc = pass && dec ? 0 : fail("profile", HINGE_ERR_NOMEM, "out of memory");
    for (uint32_t il = 0; rc == 0 && il < N; il++)
        rc = cpu_range(p, il, il + 1, pass + il * np, dec + il * N_DEC, &p->pc.meas.layer[il].first_touch_us);
    if (rc == 0) /* row N: the whole stack */
        rc = cpu_range(p, 0, N, pass + (size_t)N * np, dec + (size_t)N * N_DEC, NULL);
    if (rc == 0) {
        double sp = 0, sd = 0, lp = 0, ld = 0;
        for (uint32_t l = 0; l < N; l++) {
            lp += pass[(size_t)l * np];
            ld += dec[(size_t)l * N_DEC];
        }
        sp = pass[(size_t)N * np];
        sd = dec[(size_t)N * N_DEC];
        fprintf(stderr, "hinge profile: whole stack / layers alone: prefill x%.2f, decode x%.2f\n", lp > 0 ? sp / lp : 0,
                ld > 0 ? sd / ld : 0);
        scale_to_stack(pass, pass + (size_t)N * np, N, np);
        scale_to_stack(dec, dec + (size_t)N * N_DEC, N, N_DEC);
        for (uint32_t l = 0; l < N; l++)
            fit_layer(p, l, pass + l * np, dec + l * N_DEC, &p->pc.meas.layer[l]);
    }
    free(pass);
    free(dec);
    return rc;
}

/* Embedding (per position) on the CPU engine. */
static int cpu_embed(prof *p)
{
    fwd_config fc = {.ctx = PASS};
    fwd_ctx *f = NULL;
    hinge_status s = fwd_create(p->en->m, p->en->tp, &fc, &f, p->err, sizeof p->err);
    if (s != HINGE_OK)
        return fail("embedding context", s, p->err);
    double reps[REPS];
    uint32_t n = PASS < p->ctx ? PASS : p->ctx;
    for (int r = 0; r < REPS; r++) {
        double t0 = now_s();
        fwd_embed(f, p->tok, n, p->h);
        reps[r] = (now_s() - t0) * 1e6 / n;
    }
    p->pc.meas.embed_us_per_pos = median(reps, REPS);
    fwd_destroy(f);
    return 0;
}

/* Final norm + output matrix + greedy sampling of one position (CPU). */
static int cpu_head(prof *p)
{
    const model *m = p->en->m;
    fwd_config fc = {.ctx = 1};
    fwd_ctx *f = NULL;
    sampler *smp = NULL;
    sampler_params sp = {0};
    float *logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
    hinge_status s = fwd_create(m, p->en->tp, &fc, &f, p->err, sizeof p->err);
    if (s == HINGE_OK && (!logits || sampler_create(&sp, m->hp.n_vocab, &smp) != HINGE_OK))
        s = hinge_fail(p->err, sizeof p->err, HINGE_ERR_NOMEM, "out of memory for logits");
    double reps[REPS], cold = 0;
    for (int r = -1; s == HINGE_OK && r < REPS; r++) { /* r = -1: the first, cold */
        double t0 = now_s();
        fwd_head(f, p->h, 1, logits);
        volatile int32_t t = sampler_sample(smp, logits);
        (void)t;
        if (r < 0)
            cold = (now_s() - t0) * 1e6;
        else
            reps[r] = (now_s() - t0) * 1e6;
    }
    if (s == HINGE_OK) {
        p->pc.meas.head_us = median(reps, REPS);
        p->pc.meas.head_first_touch_us = cold > p->pc.meas.head_us ? cold - p->pc.meas.head_us : 0;
    }
    sampler_destroy(smp);
    fwd_destroy(f);
    free(logits);
    return s == HINGE_OK ? 0 : fail("head", s, p->err);
}

/* Encoding a frame of PASS rows, per row, for each codec. */
static int measure_encode(prof *p)
{
    uint32_t n = PASS < p->ctx ? PASS : p->ctx;
    size_t cap = TX_FRAME_HEADER_BYTES + (size_t)n * tx_codec_row_bytes(TX_CODEC_F32, p->d);
    void *buf = malloc(cap);
    if (!buf)
        return fail("encode", HINGE_ERR_NOMEM, "out of memory");
    for (int c = TX_CODEC_F32; c <= TX_CODEC_Q8; c++) {
        double reps[REPS];
        size_t len;
        for (int r = 0; r < REPS; r++) {
            double t0 = now_s();
            tx_frame_encode((tx_codec)c, 0, 0, n, p->d, p->h, buf, cap, &len, NULL, 0);
            reps[r] = (now_s() - t0) * 1e6 / n;
        }
        p->pc.meas.encode_us_per_pos[c] = median(reps, REPS);
    }
    free(buf);
    return 0;
}

/* ---- Vulkan executor ---- */

typedef struct vk_run {
    dev_ctx *c;
    vk_exec *all;   /* embed + all layers */
    vk_exec *embed; /* embed alone: a step's fixed cost */
    double *lt;     /* n_layer + 1 */
} vk_run;

/* Wall time of a decode step at pos, median of REPS (profiling off). */
static double vk_wall_us(prof *p, vk_exec *e, uint32_t pos)
{
    double reps[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = now_s();
        vk_exec_run(e, &p->tok[pos], 1, pos, p->row);
        reps[r] = (now_s() - t0) * 1e6;
    }
    return median(reps, REPS);
}

/* GPU time per layer of a decode step at pos (median over REPS), scaled so
 * that the layers add up to the step's wall time minus that of an
 * embedding-only step, which is the engine's fixed cost per pass. */
static int vk_decode(prof *p, vk_run *v, int i, double *dec_us /* (n_layer, N_DEC) */)
{
    uint32_t N = p->en->m->hp.n_layer, pos = p->dec_pos[i];
    double wall = vk_wall_us(p, v->all, pos), fixed = vk_wall_us(p, v->embed, pos);
    double reps[REPS], gpu_sum = 0;
    double *per = calloc((size_t)N * REPS, sizeof *per);
    if (!per || vk_exec_set_profiling(v->all, true) != HINGE_OK) {
        free(per);
        return fail("Vulkan profiling", HINGE_ERR_UNSUPPORTED, "no timestamps on this device");
    }
    for (int r = 0; r < REPS; r++) {
        vk_exec_run(v->all, &p->tok[pos], 1, pos, p->row);
        vk_exec_layer_times(v->all, v->lt);
        for (uint32_t l = 0; l < N; l++)
            per[(size_t)l * REPS + r] = v->lt[l + 1] * 1e-3;
    }
    vk_exec_set_profiling(v->all, false);
    for (uint32_t l = 0; l < N; l++) {
        memcpy(reps, per + (size_t)l * REPS, sizeof reps);
        dec_us[(size_t)l * N_DEC + i] = median(reps, REPS);
        gpu_sum += dec_us[(size_t)l * N_DEC + i];
    }
    double scale = gpu_sum > 0 && wall > fixed ? (wall - fixed) / gpu_sum : 1.0;
    for (uint32_t l = 0; l < N; l++)
        dec_us[(size_t)l * N_DEC + i] *= scale;
    p->pc.meas.step_us += fixed / N_DEC; /* the mean over the contexts */
    free(per);
    return 0;
}

/* The prefill passes: per-layer GPU times (us) and each pass's wall time;
 * scaled to wall once the fixed cost is known. */
static int vk_prefill(prof *p, vk_run *v, double *pass_us /* (n_layer, passes) */, double *wall_us, size_t passes)
{
    uint32_t N = p->en->m->hp.n_layer;
    double t[3];
    for (int r = 0; r < 3; r++) { /* a new executor's first pass (shader compilation, buffers) over the warm ones */
        double t0 = now_s();
        vk_exec_run(v->all, p->tok, p->pass_n[0], 0, p->h);
        t[r] = (now_s() - t0) * 1e6;
    }
    double warm = t[1] < t[2] ? t[1] : t[2];
    p->first_use_us = t[0] > warm ? t[0] - warm : 0;
    for (uint32_t np = 0; np < p->n_pass; np++) {
        uint32_t pos = p->pass_pos[np], n = p->pass_n[np];
        vk_exec_set_profiling(v->all, false);
        double t0 = now_s();
        hinge_status s = vk_exec_run(v->all, p->tok + pos, n, pos, p->h);
        wall_us[np] = (now_s() - t0) * 1e6;
        if (s == HINGE_OK && (s = vk_exec_set_profiling(v->all, true)) == HINGE_OK)
            s = vk_exec_run(v->all, p->tok + pos, n, pos, p->h); /* rewinds: the same pass, timed */
        if (s != HINGE_OK)
            return fail("Vulkan prefill", s, vk_exec_errmsg(v->all));
        vk_exec_layer_times(v->all, v->lt);
        for (uint32_t l = 0; l < N; l++)
            pass_us[(size_t)l * passes + np] = v->lt[l + 1] * 1e-3;
    }
    vk_exec_set_profiling(v->all, false);
    return 0;
}

/* Scales each pass's layer times to its wall time minus the fixed cost. */
static void vk_scale_passes(const prof *p, double *pass_us, const double *wall_us, size_t passes)
{
    uint32_t N = p->en->m->hp.n_layer;
    for (size_t j = 0; j < passes; j++) {
        double gpu = 0;
        for (uint32_t l = 0; l < N; l++)
            gpu += pass_us[(size_t)l * passes + j];
        double rest = wall_us[j] - p->pc.meas.step_us;
        double scale = gpu > 0 && rest > 0 ? rest / gpu : 1.0;
        for (uint32_t l = 0; l < N; l++)
            pass_us[(size_t)l * passes + j] *= scale;
    }
}

static int vk_measure(prof *p, vk_run *v)
{
    uint32_t N = p->en->m->hp.n_layer;
    size_t passes = p->n_pass;
    double *pass_us = calloc((size_t)N * passes, sizeof *pass_us);
    double *wall_us = calloc(passes, sizeof *wall_us);
    double *dec_us = calloc((size_t)N * N_DEC, sizeof *dec_us);
    int rc = pass_us && wall_us && dec_us ? 0 : fail("Vulkan", HINGE_ERR_NOMEM, "out of memory");
    if (rc == 0)
        rc = vk_prefill(p, v, pass_us, wall_us, passes);
    for (int i = 0; rc == 0 && i < N_DEC; i++)
        rc = vk_decode(p, v, i, dec_us);
    if (rc == 0)
        vk_scale_passes(p, pass_us, wall_us, passes);
    double sum0 = 0; /* the first-use cost, shared out as the layers share the first pass */
    for (uint32_t l = 0; rc == 0 && l < N; l++)
        sum0 += pass_us[(size_t)l * passes];
    for (uint32_t l = 0; rc == 0 && l < N; l++)
        p->pc.meas.layer[l].first_touch_us = sum0 > 0 ? p->first_use_us * pass_us[(size_t)l * passes] / sum0 : 0;
    for (uint32_t l = 0; rc == 0 && l < N; l++) {
        double dec[N_DEC];
        for (int i = 0; i < N_DEC; i++)
            dec[i] = dec_us[(size_t)l * N_DEC + i];
        fit_layer(p, l, pass_us + (size_t)l * passes, dec, &p->pc.meas.layer[l]);
    }
    free(pass_us);
    free(wall_us);
    free(dec_us);
    return rc;
}

static int vk_layers(prof *p)
{
    uint32_t N = p->en->m->hp.n_layer;
    vk_run v = {.lt = calloc(N + 1, sizeof(double))};
    dev_ctx_config cc = {.log = &p->en->lg};
    hinge_status s = v.lt ? dev_ctx_create(&cc, &v.c, p->err, sizeof p->err) : HINGE_ERR_NOMEM;
    if (s == HINGE_OK)
        s = vk_exec_create(v.c, p->en->m, N, p->ctx, PASS, &v.all, p->err, sizeof p->err);
    if (s == HINGE_OK)
        s = vk_exec_create(v.c, p->en->m, 0, p->ctx, PASS, &v.embed, p->err, sizeof p->err);
    int rc = s == HINGE_OK ? 0 : fail("Vulkan executor", s, p->err);
    if (rc == 0) {
        fprintf(stderr, "hinge profile: Vulkan device %s\n", dev_ctx_features(v.c)->name);
        p->pc.meas.embed_us_per_pos = 0; /* in the fixed cost per pass */
        rc = vk_measure(p, &v);
    }
    vk_exec_destroy(v.embed);
    vk_exec_destroy(v.all);
    dev_ctx_destroy(v.c);
    free(v.lt);
    return rc;
}

/* ---- HTTP/2 + TLS overhead against an edge ---- */

static int measure_http(prof *p)
{
    const opts *o = p->o;
    tx_client_config cc = {.base_url = o->edge, .cacert = o->cacert};
    tx_session_config sc = {.cut = p->en->m->hp.n_layer, .codec = TX_CODEC_F32, .ctx = HTTP_STEPS};
    memcpy(sc.model_sha256, p->en->m->sha256, sizeof sc.model_sha256);
    tx_client *c = NULL;
    tx_session *ss = NULL;
    double t0 = now_s(), reps[HTTP_STEPS];
    hinge_status s = tx_client_create(&cc, &c, p->err, sizeof p->err);
    if (s == HINGE_OK)
        s = tx_session_open(c, &sc, &ss, p->err, sizeof p->err);
    double setup_us = (now_s() - t0) * 1e6;
    for (uint32_t i = 0; s == HINGE_OK && i < HTTP_STEPS; i++) {
        tx_timing t;
        int32_t tok;
        s = tx_session_step(ss, i, 1, p->h, &tok, &t);
        reps[i] = (double)t.network_us;
        if (s != HINGE_OK)
            hinge_fail(p->err, sizeof p->err, s, "%s", tx_session_errmsg(ss));
    }
    tx_session_close(ss, NULL, 0);
    tx_client_destroy(c);
    if (s != HINGE_OK)
        return fail(o->edge, s, p->err);
    p->pc.request_overhead_us = median(reps + 1, HTTP_STEPS - 1); /* the first step warms HPACK */
    p->pc.setup_overhead_us = setup_us;
    return 0;
}

/* ---- the profile ---- */

/* "model name" of /proc/cpuinfo and the CPU count. */
static void describe_cpu(char *buf, size_t cap)
{
    char line[256], name[128] = "unknown CPU";
    int cpus = 0;
    FILE *fp = fopen("/proc/cpuinfo", "r");
    while (fp && fgets(line, sizeof line, fp)) {
        if (strncmp(line, "processor", 9) == 0)
            cpus++;
        const char *colon = strchr(line, ':');
        if (cpus == 1 && colon && strncmp(line, "model name", 10) == 0)
            snprintf(name, sizeof name, "%.*s", (int)strcspn(colon + 2, "\n"), colon + 2);
    }
    if (fp)
        fclose(fp);
    snprintf(buf, cap, "%s, %d CPUs", name, cpus);
}

/* MemAvailable of /proc/meminfo in bytes; 0 when unreadable. */
static double mem_available(void)
{
    char line[256];
    double bytes = 0;
    FILE *fp = fopen("/proc/meminfo", "r");
    while (fp && fgets(line, sizeof line, fp)) {
        if (strncmp(line, "MemAvailable:", 13) != 0)
            continue;
        char *end;
        errno = 0;
        unsigned long long kb = strtoull(line + 13, &end, 10);
        if (!errno && end != line + 13 && strncmp(end, " kB", 3) == 0)
            bytes = (double)kb * 1024.0;
    }
    if (fp)
        fclose(fp);
    return bytes;
}

static int prof_init(prof *p, engine *e, const opts *o)
{
    const model_hparams *hp = &e->m->hp;
    uint32_t ctx = o->ctx ? o->ctx : DEFAULT_CTX;
    if (ctx > hp->n_ctx_train)
        ctx = hp->n_ctx_train;
    if (ctx < 2 * PASS || ctx > MAX_CTX) {
        fprintf(stderr, "hinge profile: --ctx %u: measure between %d and %d positions (and within the model's %u)\n",
                ctx, 2 * PASS, MAX_CTX, hp->n_ctx_train);
        return -1;
    }
    *p = (prof){.en = e, .o = o, .ctx = ctx, .d = hp->n_embd, .dec_pos = {15, ctx / 4, ctx / 2, ctx - 1}};
    p->tok = malloc(ctx * sizeof *p->tok);
    p->h = malloc((size_t)ctx * p->d * sizeof(float));
    p->row = malloc(p->d * sizeof(float));
    if (!p->tok || !p->h || !p->row)
        return fail("profile", HINGE_ERR_NOMEM, "out of memory");
    for (uint32_t pos = 0; pos < ctx; p->n_pass++) {
        uint32_t n = PASS_SIZES[p->n_pass % (sizeof PASS_SIZES / sizeof PASS_SIZES[0])];
        p->pass_pos[p->n_pass] = pos;
        p->pass_n[p->n_pass] = ctx - pos < n ? ctx - pos : n;
        pos += p->pass_n[p->n_pass];
    }
    for (uint32_t i = 0; i < ctx; i++) /* synthetic ids away from the special tokens at the start */
        p->tok[i] = (int32_t)((1000u + 7919u * i) % hp->n_vocab);
    return 0;
}

static void prof_finish(prof *p)
{
    free(p->tok);
    free(p->h);
    free(p->row);
}

/* Drops this process's page mappings of the model file (the page cache
 * keeps the data): the next touch of each page faults, as in a fresh
 * process that did not hash the file. */
static void drop_pages(const model *m)
{
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t base = (uintptr_t)gguf_file_bytes(m->file), page = ps > 0 ? (uintptr_t)ps : 4096;
    uintptr_t lo = (base + page - 1) & ~(page - 1), hi = (base + gguf_file_size(m->file)) & ~(page - 1);
    if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0)
        fprintf(stderr, "hinge profile: warning: madvise: %s: first-touch costs will read 0\n", strerror(errno));
}

static int measure_all(prof *p)
{
    const model *m = p->en->m;
    int rc = 0;
    drop_pages(m);
    if (p->o->backend == 1) {
        rc = vk_layers(p);
    } else {
        rc = cpu_layers(p);
        if (rc == 0)
            rc = cpu_embed(p);
    }
    if (rc == 0)
        rc = cpu_head(p);
    if (rc == 0)
        rc = measure_encode(p);
    if (rc == 0 && p->o->edge)
        rc = measure_http(p);
    return rc;
}

/* The scalar figures and the identity of the measured model. */
static void fill_profile(prof *p, part_role role, const char *name)
{
    part_compute *pc = &p->pc;
    const model *m = p->en->m;
    pc->role = role;
    snprintf(pc->name, sizeof pc->name, "%s", name);
    pc->meas.present = true;
    pc->meas.n_layer = m->hp.n_layer;
    pc->meas.n_embd = m->hp.n_embd;
    for (int i = 0; i < 32; i++)
        snprintf(pc->meas.model_sha256 + 2 * i, 3, "%02x", m->sha256[i]);
    pc->mem_bytes = mem_available();
    pc->kv_elem_bytes = 4; /* both engines keep K and V in f32 */
    if (role == PART_ROLE_DEVICE) {
        pc->power_compute_w = ASSUMED_POWER_W[0];
        pc->power_tx_w = ASSUMED_POWER_W[1];
        pc->power_rx_w = ASSUMED_POWER_W[2];
        pc->power_idle_w = ASSUMED_POWER_W[3];
    }
    if (!p->o->edge) { /* not measured: the defaults part_compute_load assumes */
        pc->request_overhead_us = role == PART_ROLE_DEVICE ? 500 : 0;
        pc->setup_overhead_us = role == PART_ROLE_DEVICE ? 5000 : 0;
    } else if (role == PART_ROLE_EDGE) { /* measured from the device's side: both ends are in its figure */
        pc->request_overhead_us = pc->setup_overhead_us = 0;
    }
}

static int save(prof *p, part_role role)
{
    char cpu[200], source[400], ovh[300], date[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime_r(&now, &tm));
    describe_cpu(cpu, sizeof cpu);
    bool vk = p->o->backend == 1;
    snprintf(source, sizeof source, "measured by hinge profile (%s engine, %d thread(s), up to %u positions) on %s, %s",
             vk ? "Vulkan" : "CPU", tp_threads(p->en->tp), p->ctx, cpu, date);
    if (p->o->edge)
        snprintf(ovh, sizeof ovh, "measured by hinge profile against %s: median network_us of %d steps and the time "
                 "to open a session (both ends' HTTP/2 + TLS processing, no link delay)", p->o->edge, HTTP_STEPS);
    else
        snprintf(ovh, sizeof ovh, "default, not measured (hinge profile without --edge)");
    part_save_info info = {.source = source, .engine = vk ? "vulkan" : "cpu", .threads = (uint32_t)tp_threads(p->en->tp),
                           .model_name = p->en->m->name, .contexts = p->dec_pos, .n_contexts = N_DEC,
                           .mem_source = "MemAvailable in /proc/meminfo when measured", .power_source = POWER_SOURCE,
                           .overhead_source = ovh,
                           .description = role == PART_ROLE_DEVICE ? "this machine as a device" : "this machine as an edge"};
    hinge_status s = part_compute_save(&p->pc, &info, p->o->output, p->err, sizeof p->err);
    return s == HINGE_OK ? 0 : fail("save", s, p->err);
}

static void summary(const prof *p)
{
    const part_measured *me = &p->pc.meas;
    double dec = me->step_us + me->embed_us_per_pos, pre = 0;
    for (uint32_t l = 0; l < me->n_layer; l++) {
        dec += me->layer[l].decode_us + me->layer[l].decode_us_per_attended * 16;
        pre += me->layer[l].prefill_us_per_pos;
    }
    printf("wrote %s: %u layers; decode %.3f ms/token + head %.3f ms; prefill %.3f ms/position; "
           "request overhead %.0f us, session set-up %.0f us\n",
           p->o->output, me->n_layer, dec * 1e-3, me->head_us * 1e-3, pre * 1e-3, p->pc.request_overhead_us,
           p->pc.setup_overhead_us);
}

int cmd_profile(const opts *o)
{
    part_role role = PART_ROLE_DEVICE;
    if (!o->output) {
        fprintf(stderr, "hinge profile: -o FILE is required\n");
        return 2;
    }
    if (o->role && strcmp(o->role, "device") != 0 && strcmp(o->role, "edge") != 0) {
        fprintf(stderr, "hinge profile: --role: '%s' is not device or edge\n", o->role);
        return 2;
    }
    if (o->role && strcmp(o->role, "edge") == 0)
        role = PART_ROLE_EDGE;
    engine e;
    prof *p = calloc(1, sizeof *p);
    int rc = 1;
    if (!p || engine_open(&e, o, true) != 0) {
        free(p);
        return 1;
    }
    char name[PART_NAME_MAX];
    snprintf(name, sizeof name, "%s", o->name ? o->name : (o->backend == 1 ? "this-machine-vulkan" : "this-machine-cpu"));
    if (prof_init(p, &e, o) == 0 && measure_all(p) == 0) {
        fill_profile(p, role, name);
        if (save(p, role) == 0) {
            summary(p);
            rc = 0;
        }
    }
    prof_finish(p);
    free(p);
    engine_close(&e);
    return rc;
}
