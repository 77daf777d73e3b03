/* hinge_profile_measure on the Vulkan executor: the layer times are the
 * GPU timestamps of each pass, scaled so that the layers add up to the
 * pass's wall time minus that of an embedding-only pass (the engine's
 * fixed cost per pass: submit, wait, read-back, which goes to step_us).
 * A new executor's first use (lavapipe compiles and touches on first
 * dispatch, tens of milliseconds) is shared out over the layers as their
 * first_touch_us. Built only with Vulkan (HINGE_HAVE_VULKAN). */
#include <stdlib.h>
#include <string.h>

#include "measure.h"
#include "profile_impl.h"

typedef struct vk_run {
    dev_ctx *c;
    vk_exec *all;   /* embed + all layers */
    vk_exec *embed; /* embed alone: a step's fixed cost */
    double *lt;     /* n_layer + 1: scratch for vk_exec_layer_times */
} vk_run;

/* Wall time of a decode step at pos, median of PROF_REPS (profiling off). */
static double vk_wall_us(prof *p, vk_exec *e, uint32_t pos)
{
    double reps[PROF_REPS];
    for (int r = 0; r < PROF_REPS; r++) {
        double t0 = clk_now_s();
        vk_exec_run(e, &p->tok[pos], 1, pos, p->row);
        reps[r] = (clk_now_s() - t0) * 1e6;
    }
    return meas_median(reps, PROF_REPS);
}

/* GPU time per layer of decode context i (median over PROF_REPS), scaled
 * so that the layers add up to the step's wall time minus that of an
 * embedding-only step, which is the engine's fixed cost per pass. */
static hinge_status vk_decode(prof *p, vk_run *v, int i, double *dec_us /* (n_layer, PROF_N_DEC) */)
{
    uint32_t N = p->m->hp.n_layer, pos = p->dec_pos[i];
    double wall = vk_wall_us(p, v->all, pos), fixed = vk_wall_us(p, v->embed, pos);
    double reps[PROF_REPS], gpu_sum = 0;
    double *per = calloc((size_t)N * PROF_REPS, sizeof *per);
    if (!per || vk_exec_set_profiling(v->all, true) != HINGE_OK) {
        free(per);
        return prof_fail(p, "Vulkan profiling", HINGE_ERR_UNSUPPORTED, "no timestamps on this device");
    }
    for (int r = 0; r < PROF_REPS; r++) {
        vk_exec_run(v->all, &p->tok[pos], 1, pos, p->row);
        vk_exec_layer_times(v->all, v->lt);
        for (uint32_t l = 0; l < N; l++)
            per[(size_t)l * PROF_REPS + r] = v->lt[l + 1] * 1e-3;
    }
    vk_exec_set_profiling(v->all, false);
    for (uint32_t l = 0; l < N; l++) {
        memcpy(reps, per + (size_t)l * PROF_REPS, sizeof reps);
        dec_us[(size_t)l * PROF_N_DEC + i] = meas_median(reps, PROF_REPS);
        gpu_sum += dec_us[(size_t)l * PROF_N_DEC + i];
    }
    double scale = gpu_sum > 0 && wall > fixed ? (wall - fixed) / gpu_sum : 1.0;
    for (uint32_t l = 0; l < N; l++)
        dec_us[(size_t)l * PROF_N_DEC + i] *= scale;
    p->pc.meas.step_us += fixed / PROF_N_DEC; /* the mean over the contexts */
    free(per);
    return HINGE_OK;
}

/* The prefill passes: per-layer GPU times (us) and each pass's wall time;
 * scaled to wall once the fixed cost is known. */
static hinge_status vk_prefill(prof *p, vk_run *v, double *pass_us /* (n_layer, passes) */, double *wall_us,
                               size_t passes)
{
    uint32_t N = p->m->hp.n_layer;
    double t[3];
    for (int r = 0; r < 3; r++) { /* a new executor's first pass (shader compilation, buffers) over the warm ones */
        double t0 = clk_now_s();
        vk_exec_run(v->all, p->tok, p->pass_n[0], 0, p->h);
        t[r] = (clk_now_s() - t0) * 1e6;
    }
    double warm = t[1] < t[2] ? t[1] : t[2];
    p->first_use_us = t[0] > warm ? t[0] - warm : 0;
    for (uint32_t np = 0; np < p->n_pass; np++) {
        uint32_t pos = p->pass_pos[np], n = p->pass_n[np];
        vk_exec_set_profiling(v->all, false);
        double t0 = clk_now_s();
        hinge_status s = vk_exec_run(v->all, p->tok + pos, n, pos, p->h);
        wall_us[np] = (clk_now_s() - t0) * 1e6;
        if (s == HINGE_OK && (s = vk_exec_set_profiling(v->all, true)) == HINGE_OK)
            s = vk_exec_run(v->all, p->tok + pos, n, pos, p->h); /* rewinds: the same pass, timed */
        if (s != HINGE_OK)
            return prof_fail(p, "Vulkan prefill", s, vk_exec_errmsg(v->all));
        vk_exec_layer_times(v->all, v->lt);
        for (uint32_t l = 0; l < N; l++)
            pass_us[(size_t)l * passes + np] = v->lt[l + 1] * 1e-3;
    }
    vk_exec_set_profiling(v->all, false);
    return HINGE_OK;
}

/* Scales each pass's layer times to its wall time minus the fixed cost. */
static void vk_scale_passes(const prof *p, double *pass_us, const double *wall_us, size_t passes)
{
    uint32_t N = p->m->hp.n_layer;
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

/* The first-use cost, shared out as the layers share the first pass; then
 * each layer's fit. */
static void vk_fit(prof *p, const double *pass_us, const double *dec_us, size_t passes)
{
    uint32_t N = p->m->hp.n_layer;
    double sum0 = 0;
    for (uint32_t l = 0; l < N; l++)
        sum0 += pass_us[(size_t)l * passes];
    for (uint32_t l = 0; l < N; l++) {
        double dec[PROF_N_DEC];
        for (int i = 0; i < PROF_N_DEC; i++)
            dec[i] = dec_us[(size_t)l * PROF_N_DEC + i];
        p->pc.meas.layer[l].first_touch_us = sum0 > 0 ? p->first_use_us * pass_us[(size_t)l * passes] / sum0 : 0;
        prof_fit_layer(p, l, pass_us + (size_t)l * passes, dec);
    }
}

static hinge_status vk_measure(prof *p, vk_run *v)
{
    uint32_t N = p->m->hp.n_layer;
    size_t passes = p->n_pass;
    double *pass_us = calloc((size_t)N * passes, sizeof *pass_us);
    double *wall_us = calloc(passes, sizeof *wall_us);
    double *dec_us = calloc((size_t)N * PROF_N_DEC, sizeof *dec_us);
    hinge_status s = pass_us && wall_us && dec_us ? HINGE_OK
                                                  : prof_fail(p, "Vulkan", HINGE_ERR_NOMEM, "out of memory");
    if (s == HINGE_OK)
        s = vk_prefill(p, v, pass_us, wall_us, passes);
    for (int i = 0; s == HINGE_OK && i < PROF_N_DEC; i++)
        s = vk_decode(p, v, i, dec_us);
    if (s == HINGE_OK) {
        vk_scale_passes(p, pass_us, wall_us, passes);
        vk_fit(p, pass_us, dec_us, passes);
    }
    free(pass_us);
    free(wall_us);
    free(dec_us);
    return s;
}

hinge_status prof_vk_layers(prof *p)
{
    uint32_t N = p->m->hp.n_layer;
    vk_run v = {.lt = calloc(N + 1, sizeof(double))};
    dev_ctx_config cc = {.log = &p->hm->lg};
    hinge_status s = v.lt ? dev_ctx_create(&cc, &v.c, p->err, sizeof p->err)
                          : hinge_fail(p->err, sizeof p->err, HINGE_ERR_NOMEM, "out of memory");
    if (s == HINGE_OK)
        s = vk_exec_create(v.c, p->m, N, p->ctx, PROF_PASS, &v.all, p->err, sizeof p->err);
    if (s == HINGE_OK)
        s = vk_exec_create(v.c, p->m, 0, p->ctx, PROF_PASS, &v.embed, p->err, sizeof p->err);
    if (s != HINGE_OK) {
        prof_fail(p, "Vulkan executor", s, p->err);
    } else {
        hinge_log(&p->hm->lg, HINGE_LOG_INFO, "profile: Vulkan device %s", dev_ctx_features(v.c)->name);
        p->pc.meas.embed_us_per_pos = 0; /* in the fixed cost per pass */
        s = vk_measure(p, &v);
    }
    vk_exec_destroy(v.embed);
    vk_exec_destroy(v.all);
    dev_ctx_destroy(v.c);
    free(v.lt);
    return s;
}

