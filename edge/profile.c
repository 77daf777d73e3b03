/* /v1/profile: what the edge serves, what its layers cost, and its load.
 *
 * At start-up each layer is timed alone on one decode position (a fwd_ctx
 * of one layer after a short prefill, the median of a few steps: model/
 * measure.h), and the head likewise: the partitioner's E(k, 1) is then the
 * sum over layers >= k plus the head. With --backend vulkan they are timed
 * on the edge's Vulkan device instead (measure_vk). Served steps add
 * measured figures per cut. */
#include <stdlib.h>
#include <string.h>

#include "edge_impl.h"
#include "measure.h"
#include "partition.h"
#ifdef HINGE_EDGE_VULKAN
#include "clock.h"
#include "vk_exec.h"
#endif

enum { MEASURE_REPS = 7, MEASURE_CTX = 16, MEASURE_POS = MEASURE_CTX / 2 };

/* Median time, us, of one decode position at MEASURE_POS through layer il
 * (il == n_layer: the head); -1 when it cannot be set up. h: (MEASURE_CTX,
 * n_embd), row: n_embd, logits: n_vocab floats of scratch. */
static double time_stage(hinge_edge *e, uint32_t il, float *h, float *row, float *logits)
{
    const model_hparams *hp = &e->m->hp;
    bool head = il == hp->n_layer;
    fwd_config fc = {.layer_begin = head ? 0 : il, .layer_end = head ? 0 : il + 1, .ctx = MEASURE_CTX};
    fwd_ctx *f = NULL;
    if (fwd_create(e->m, e->tp, &fc, &f, NULL, 0) != HINGE_OK)
        return -1.0;
    int32_t tok[MEASURE_CTX];
    for (uint32_t i = 0; i < MEASURE_CTX; i++)
        tok[i] = 1;
    fwd_embed(f, tok, MEASURE_CTX, h);
    const uint32_t pass_pos = 0, pass_n = MEASURE_POS, dec_pos = MEASURE_POS;
    meas_plan plan = {.n_pass = 1, .pass_pos = &pass_pos, .pass_n = &pass_n, .n_dec = 1, .dec_pos = &dec_pos,
                      .reps = MEASURE_REPS};
    double pass_us, us;
    if (head)
        us = meas_head_us(f, h, logits, NULL, MEASURE_REPS, NULL);
    else
        meas_time_layers(f, &plan, h, row, hp->n_embd, &pass_us, &us);
    fwd_destroy(f);
    return us;
}

#ifdef HINGE_EDGE_VULKAN
/* --backend vulkan: the layers and the head timed on the edge's device,
 * through an executor of [0, N) + head with hidden rows in, as a session's
 * step runs them: GPU timestamps of one decode position at MEASURE_POS
 * after a MEASURE_POS-row pass (medians of MEASURE_REPS). The step's cost
 * outside the shaders (submit, wait, the logits' read-back) is paid once a
 * step whatever the cut: it goes to the head. Runs at start-up, before the
 * worker and the loop use the context. False where it cannot be set up
 * (the CPU figures are then left unmeasured, not served as the device's). */
static bool measure_vk(hinge_edge *e, const float *h, float *logits)
{
    const model_hparams *hp = &e->m->hp;
    uint32_t n = hp->n_layer;
    /* the default model's weights, uploaded at start-up (vk.c): borrowed, not uploaded again */
    vk_exec_config c = {.end = n, .head = true, .ctx = MEASURE_CTX, .max_batch = MEASURE_CTX,
                        .weights = e->models[0].vw, .no_selftest = true};
    vk_exec *x = NULL;
    double *lt = calloc(n + 2, sizeof *lt), *per = calloc((size_t)(n + 1) * MEASURE_REPS, sizeof *per);
    double wall[MEASURE_REPS], gpu[MEASURE_REPS];
    char err[HINGE_ERRMSG_MAX];
    bool ok = lt && per && vk_exec_create_range(edge_vk_ctx(e), e->m, &c, &x, err, sizeof err) == HINGE_OK &&
              vk_exec_run_hidden(x, h, MEASURE_POS, 0, logits) == HINGE_OK;
    const float *row = h + (size_t)MEASURE_POS * hp->n_embd;
    for (int r = 0; ok && r < MEASURE_REPS; r++) { /* unprofiled: the step's wall time */
        double t0 = clk_now_s();
        ok = vk_exec_run_hidden(x, row, 1, MEASURE_POS, logits) == HINGE_OK;
        wall[r] = (clk_now_s() - t0) * 1e6;
    }
    ok = ok && vk_exec_set_profiling(x, true) == HINGE_OK;
    for (int r = 0; ok && r < MEASURE_REPS; r++) {
        ok = vk_exec_run_hidden(x, row, 1, MEASURE_POS, logits) == HINGE_OK && vk_exec_layer_times(x, lt) == HINGE_OK;
        gpu[r] = 0;
        for (uint32_t l = 0; ok && l <= n; l++) { /* lt[1 + l]: layer l; lt[1 + n]: the head */
            per[(size_t)l * MEASURE_REPS + r] = lt[1 + l] * 1e-3;
            gpu[r] += lt[1 + l] * 1e-3;
        }
    }
    if (ok) {
        double step = meas_median(wall, MEASURE_REPS), shaders = meas_median(gpu, MEASURE_REPS);
        for (uint32_t l = 0; l <= n; l++) {
            double us = meas_median(per + (size_t)l * MEASURE_REPS, MEASURE_REPS);
            if (l < n)
                e->layer_us[l] = us;
            else
                e->head_us = us + (step > shaders ? step - shaders : 0);
        }
    } else {
        hinge_log(&e->log, HINGE_LOG_WARN, "profile: the Vulkan layers could not be timed: %s",
                  x ? vk_exec_errmsg(x) : err);
    }
    vk_exec_destroy(x);
    free(lt);
    free(per);
    return ok;
}
#endif

void edge_profile_measure(hinge_edge *e)
{
    const model_hparams *hp = &e->m->hp;
    float *h = malloc((size_t)MEASURE_CTX * hp->n_embd * sizeof(float));
    float *row = malloc((size_t)hp->n_embd * sizeof(float));
    float *logits = malloc((size_t)hp->n_vocab * sizeof(float));
    e->layer_us = calloc(hp->n_layer ? hp->n_layer : 1, sizeof(double));
    if (!h || !row || !logits || !e->layer_us) {
        free(e->layer_us);
        e->layer_us = NULL;
    } else if (e->vk) {
#ifdef HINGE_EDGE_VULKAN
        fwd_config fc = {.ctx = MEASURE_CTX}; /* the embedding alone: the rows the device would send */
        fwd_ctx *f = NULL;
        int32_t tok[MEASURE_CTX];
        for (uint32_t i = 0; i < MEASURE_CTX; i++)
            tok[i] = 1;
        bool ok = fwd_create(e->m, e->tp, &fc, &f, NULL, 0) == HINGE_OK;
        if (ok)
            fwd_embed(f, tok, MEASURE_CTX, h);
        fwd_destroy(f);
        if (!ok || !measure_vk(e, h, logits)) {
            free(e->layer_us);
            e->layer_us = NULL;
        }
#endif
    } else {
        for (uint32_t il = 0; il < hp->n_layer; il++)
            e->layer_us[il] = time_stage(e, il, h, row, logits);
        e->head_us = time_stage(e, hp->n_layer, h, row, logits);
    }
    free(h);
    free(row);
    free(logits);
}

static json_t *costs_json(const hinge_edge *e)
{
    const model_hparams *hp = &e->m->hp;
    json_t *layers = json_array();
    for (uint32_t il = 0; e->layer_us && il < hp->n_layer; il++)
        json_array_append_new(layers, json_real(e->layer_us[il]));
    json_t *cuts = json_array();
    for (uint32_t k = 0; k <= hp->n_layer; k++) {
        const edge_cut_stats *cs = &e->cuts[k];
        if (!cs->decode_steps && !cs->prefill_positions)
            continue;
        json_array_append_new(
            cuts, json_pack("{s:I, s:I, s:f, s:I, s:f}", "cut", (json_int_t)k, "decode_steps",
                            (json_int_t)cs->decode_steps, "decode_us_mean",
                            cs->decode_steps ? (double)cs->decode_us / (double)cs->decode_steps : 0.0,
                            "prefill_positions", (json_int_t)cs->prefill_positions, "prefill_us_per_position",
                            cs->prefill_positions ? (double)cs->prefill_us / (double)cs->prefill_positions : 0.0));
    }
    return json_pack("{s:b, s:s, s:o, s:f, s:o}", "measured_at_start", e->layer_us != NULL, "backend",
                     e->vk ? "vulkan" : "cpu", "layer_decode_us", layers, "head_decode_us",
                     e->layer_us ? e->head_us : 0.0, "served", cuts);
}

hinge_status edge_profile_load(hinge_edge *e, const char *path, char *err, size_t errlen)
{
    part_model pm;
    part_compute pc;
    hinge_status s = part_model_from_gguf(e->m, &pm, err, errlen);
    if (s == HINGE_OK)
        s = part_compute_load(path, PART_ROLE_EDGE, &pc, err, errlen);
    if (s == HINGE_OK)
        s = part_compute_check(&pc, &pm, err, errlen);
    if (s != HINGE_OK)
        return s;
    json_error_t je; /* checked above: kept as it is to serve it */
    if (!(e->profile = json_load_file(path, 0, &je)))
        return hinge_fail(err, errlen, HINGE_ERR_IO, "--profile %s: %s", path, je.text);
    return HINGE_OK;
}

json_t *edge_profile_json(hinge_edge *e)
{
    const model_hparams *hp = &e->m->hp;
    char sha[65];
    edge_hex(e->m->sha256, 32, sha);
    uint32_t queued = 0, running = 0;
    edge_worker_load(e->worker, &queued, &running);
    json_t *model = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "name", e->m->name, "arch",
                              model_arch_name(hp->arch), "sha256", sha, "n_layer",
                              (json_int_t)hp->n_layer, "n_embd", (json_int_t)hp->n_embd, "n_vocab",
                              (json_int_t)hp->n_vocab, "n_ctx_train", (json_int_t)hp->n_ctx_train, "weight_bytes",
                              (json_int_t)e->m->weight_bytes);
    json_t *limits = json_pack("{s:I, s:I, s:I, s:I, s:[sss], s:b}", "threads", (json_int_t)tp_threads(e->tp),
                               "max_sessions", (json_int_t)e->max_sessions, "max_ctx", (json_int_t)e->max_ctx,
                               "max_step", (json_int_t)e->max_step, "codecs", "f32", "f16", "q8", "tls",
                               e->tls != NULL);
    json_t *load = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "sessions", (json_int_t)e->n_sessions,
                             "connections", (json_int_t)e->n_conns, "queued_steps", (json_int_t)queued,
                             "running_steps", (json_int_t)running, "steps_done", (json_int_t)e->steps_done,
                             "requests", (json_int_t)e->requests, "errors", (json_int_t)e->errors, "draining",
                             e->draining);
    json_t *j = json_pack("{s:s, s:o, s:o, s:o, s:o}", "protocol", "v1", "model", model, "edge", limits, "costs",
                          costs_json(e), "load", load);
    if (j && e->profile)
        json_object_set(j, "profile", e->profile);
    return j;
}
