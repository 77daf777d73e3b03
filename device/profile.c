/* hinge_profile_measure: measures this machine running a model and returns
 * a device (or edge) profile for the partitioner (`hinge profile`,
 * docs/partitioning.md).
 *
 * Per layer: a prefill over positions [0, C) in passes of 4..64 positions
 * (each pass timed; fitted as us per pass + per position + per attended
 * key), and decode steps at four context lengths (median of 7 each; fitted
 * likewise). The head (final norm, output, greedy sampling) and the frame
 * encoding run on the CPU in both backends; the Vulkan executor's layers
 * are measured in profile_vk.c. first_touch_us is the cost of the first
 * pass of a fresh process: page faults on the mapped weights (CPU engine;
 * none once the file was hashed, so this process's mappings are dropped
 * first), or a new executor's first use (Vulkan). With an edge URL, the
 * HTTP/2 + TLS overhead of a step and of opening a session are measured
 * against that edge (normally one on loopback). The timing helpers are
 * model/measure.h's. Progress goes to the model's logger. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "measure.h"
#include "profile_impl.h"

enum { HTTP_STEPS = 24, DEFAULT_CTX = 1024 };

/* Prefill pass sizes, cycled: several sizes separate the cost of a pass
 * (decoding the weights once) from the cost per position. */
static const uint32_t PASS_SIZES[] = {64, 8, 48, 16, 32, 64, 24, 56, 4, 40};

/* What this machine cannot measure (no power counters in a VM). */
#define POWER_SOURCE \
    "assumption, not measured: no power counters readable here; typical figures for one busy x86 core " \
    "package share, a Wi-Fi/Ethernet NIC sending, receiving, and an idle host"
static const double ASSUMED_POWER_W[4] = {15.0, 1.5, 1.0, 3.0}; /* compute, tx, rx, idle */

void hinge_profile_config_init(hinge_profile_config *c)
{
    if (c)
        *c = (hinge_profile_config){.size = sizeof *c, .backend = HINGE_BACKEND_CPU};
}

hinge_status prof_fail(prof *p, const char *what, hinge_status s, const char *msg)
{
    char copy[HINGE_ERRMSG_MAX];
    snprintf(copy, sizeof copy, "%s", msg ? msg : "");
    return hinge_fail(p->err, sizeof p->err, s, "%s: %s", what, copy);
}

/* Prefill: us = per_pass + per_pos * n + per_attended * attended; decode:
 * us = decode + per_attended * attended. */
void prof_fit_layer(prof *p, uint32_t il, const double *pass_us, const double *dec_us)
{
    part_layer_cost *out = &p->pc.meas.layer[il];
    uint32_t win = model_layer_is_swa(&p->m->hp, il) ? p->m->hp.swa_window : 0;
    double(*x)[MEAS_FIT_MAX] = calloc(p->n_pass, sizeof *x);
    if (!x)
        return;
    for (uint32_t j = 0; j < p->n_pass; j++) {
        x[j][0] = 1.0;
        x[j][1] = p->pass_n[j];
        x[j][2] = part_attended_sum(win, p->pass_pos[j], p->pass_n[j]);
    }
    double c[MEAS_FIT_MAX];
    meas_fit_nonneg((const double(*)[MEAS_FIT_MAX])x, pass_us, p->n_pass, 3, c);
    out->prefill_us_per_pass = c[0];
    out->prefill_us_per_pos = c[1];
    out->prefill_us_per_attended = c[2];
    double xd[PROF_N_DEC][MEAS_FIT_MAX] = {{0}};
    for (int i = 0; i < PROF_N_DEC; i++) {
        xd[i][0] = 1.0;
        xd[i][1] = part_attended_sum(win, p->dec_pos[i], 1);
    }
    meas_fit_nonneg((const double(*)[MEAS_FIT_MAX])xd, dec_us, PROF_N_DEC, 2, c);
    out->decode_us = c[0];
    out->decode_us_per_attended = c[1];
    free(x);
}

/* ---- CPU engine ---- */

/* Layers [a, b) of the CPU engine: pass and decode times; with touch, the
 * first pass's page-fault cost (the pages were dropped) into *touch_us. */
static hinge_status cpu_range(prof *p, uint32_t a, uint32_t b, double *pass_us, double *dec_us, double *touch_us)
{
    fwd_config fc = {.layer_begin = a, .layer_end = b, .ctx = p->ctx, .max_batch = PROF_PASS};
    fwd_ctx *f = NULL;
    hinge_status s = fwd_create(p->m, p->tp, &fc, &f, p->err, sizeof p->err);
    if (s != HINGE_OK)
        return prof_fail(p, "layer context", s, p->err);
    uint32_t n0 = PROF_PASS < p->ctx ? PROF_PASS : p->ctx;
    double t[2];
    fwd_embed(f, p->tok, p->ctx, p->h);
    for (int r = 0; r < 2; r++) { /* cold, then warm: the passes below rewind */
        double t0 = clk_now_s();
        fwd_layers(f, 0, n0, p->h);
        t[r] = (clk_now_s() - t0) * 1e6;
    }
    if (touch_us)
        *touch_us = t[0] > t[1] ? t[0] - t[1] : 0;
    meas_plan plan = {.n_pass = p->n_pass, .pass_pos = p->pass_pos, .pass_n = p->pass_n, .n_dec = PROF_N_DEC,
                      .dec_pos = p->dec_pos, .reps = PROF_REPS};
    fwd_embed(f, p->tok, p->ctx, p->h);
    meas_time_layers(f, &plan, p->h, p->row, p->d, pass_us, dec_us);
    fwd_destroy(f);
    return HINGE_OK;
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

/* pass and dec hold n_layer + 1 rows: each layer alone, then the stack. */
static void cpu_fit(prof *p, double *pass, double *dec)
{
    uint32_t N = p->m->hp.n_layer;
    size_t np = p->n_pass;
    double lp = 0, ld = 0, sp = pass[(size_t)N * np], sd = dec[(size_t)N * PROF_N_DEC];
    for (uint32_t l = 0; l < N; l++) {
        lp += pass[(size_t)l * np];
        ld += dec[(size_t)l * PROF_N_DEC];
    }
    hinge_log(&p->hm->lg, HINGE_LOG_INFO, "profile: whole stack / layers alone: prefill x%.2f, decode x%.2f",
              lp > 0 ? sp / lp : 0, ld > 0 ? sd / ld : 0);
    scale_to_stack(pass, pass + (size_t)N * np, N, np);
    scale_to_stack(dec, dec + (size_t)N * PROF_N_DEC, N, PROF_N_DEC);
    for (uint32_t l = 0; l < N; l++)
        prof_fit_layer(p, l, pass + l * np, dec + l * PROF_N_DEC);
}

static hinge_status cpu_layers(prof *p)
{
    uint32_t N = p->m->hp.n_layer;
    size_t np = p->n_pass;
    double *pass = calloc((size_t)(N + 1) * np, sizeof *pass);
    double *dec = calloc((size_t)(N + 1) * PROF_N_DEC, sizeof *dec);
    hinge_status s = pass && dec ? HINGE_OK : prof_fail(p, "profile", HINGE_ERR_NOMEM, "out of memory");
    for (uint32_t il = 0; s == HINGE_OK && il < N; il++)
        s = cpu_range(p, il, il + 1, pass + il * np, dec + il * PROF_N_DEC, &p->pc.meas.layer[il].first_touch_us);
    if (s == HINGE_OK) /* row N: the whole stack */
        s = cpu_range(p, 0, N, pass + (size_t)N * np, dec + (size_t)N * PROF_N_DEC, NULL);
    if (s == HINGE_OK)
        cpu_fit(p, pass, dec);
    free(pass);
    free(dec);
    return s;
}

/* Embedding (per position) on the CPU engine. */
static hinge_status cpu_embed(prof *p)
{
    fwd_config fc = {.ctx = PROF_PASS};
    fwd_ctx *f = NULL;
    hinge_status s = fwd_create(p->m, p->tp, &fc, &f, p->err, sizeof p->err);
    if (s != HINGE_OK)
        return prof_fail(p, "embedding context", s, p->err);
    double reps[PROF_REPS];
    uint32_t n = PROF_PASS < p->ctx ? PROF_PASS : p->ctx;
    for (int r = 0; r < PROF_REPS; r++) {
        double t0 = clk_now_s();
        fwd_embed(f, p->tok, n, p->h);
        reps[r] = (clk_now_s() - t0) * 1e6 / n;
    }
    p->pc.meas.embed_us_per_pos = meas_median(reps, PROF_REPS);
    fwd_destroy(f);
    return HINGE_OK;
}

/* Final norm + output matrix + greedy sampling of one position (CPU). */
static hinge_status cpu_head(prof *p)
{
    fwd_config fc = {.ctx = 1};
    fwd_ctx *f = NULL;
    sampler *smp = NULL;
    sampler_params sp = {0};
    float *logits = malloc((size_t)p->m->hp.n_vocab * sizeof(float));
    hinge_status s = fwd_create(p->m, p->tp, &fc, &f, p->err, sizeof p->err);
    if (s == HINGE_OK && (!logits || sampler_create(&sp, p->m->hp.n_vocab, &smp) != HINGE_OK))
        s = hinge_fail(p->err, sizeof p->err, HINGE_ERR_NOMEM, "out of memory for logits");
    if (s == HINGE_OK) {
        double cold = 0, warm = meas_head_us(f, p->h, logits, smp, PROF_REPS, &cold);
        p->pc.meas.head_us = warm;
        p->pc.meas.head_first_touch_us = cold > warm ? cold - warm : 0;
    }
    sampler_destroy(smp);
    fwd_destroy(f);
    free(logits);
    return s == HINGE_OK ? HINGE_OK : prof_fail(p, "head", s, p->err);
}

/* Encoding a frame of PROF_PASS rows, per row, for each codec. */
static hinge_status measure_encode(prof *p)
{
    uint32_t n = PROF_PASS < p->ctx ? PROF_PASS : p->ctx;
    size_t cap = TX_FRAME_HEADER_BYTES + (size_t)n * tx_codec_row_bytes(TX_CODEC_F32, p->d);
    void *buf = malloc(cap);
    if (!buf)
        return prof_fail(p, "encode", HINGE_ERR_NOMEM, "out of memory");
    for (int c = TX_CODEC_F32; c <= TX_CODEC_Q8; c++) {
        double reps[PROF_REPS];
        size_t len;
        for (int r = 0; r < PROF_REPS; r++) {
            double t0 = clk_now_s();
            tx_frame_encode((tx_codec)c, 0, 0, n, p->d, p->h, buf, cap, &len, NULL, 0);
            reps[r] = (clk_now_s() - t0) * 1e6 / n;
        }
        p->pc.meas.encode_us_per_pos[c] = meas_median(reps, PROF_REPS);
    }
    free(buf);
    return HINGE_OK;
}

/* ---- HTTP/2 + TLS overhead against an edge ---- */

static hinge_status measure_http(prof *p)
{
    tx_client_config cc = {.base_url = p->cfg.edge_url, .cacert = p->cfg.ca_file, .api_key = p->cfg.api_key};
    tx_session_config sc = {.cut = p->m->hp.n_layer, .codec = TX_CODEC_F32, .ctx = HTTP_STEPS};
    memcpy(sc.model_sha256, p->m->sha256, sizeof sc.model_sha256);
    tx_client *c = NULL;
    tx_session *ss = NULL;
    double t0 = clk_now_s(), reps[HTTP_STEPS];
    hinge_status s = tx_client_create(&cc, &c, p->err, sizeof p->err);
    if (s == HINGE_OK)
        s = tx_session_open(c, &sc, &ss, p->err, sizeof p->err);
    double setup_us = (clk_now_s() - t0) * 1e6;
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
        return prof_fail(p, p->cfg.edge_url, s, p->err);
    p->pc.request_overhead_us = meas_median(reps + 1, HTTP_STEPS - 1); /* the first step warms HPACK */
    p->pc.setup_overhead_us = setup_us;
    return HINGE_OK;
}

/* ---- the machine ---- */

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

/* Drops this process's page mappings of the model file (the page cache
 * keeps the data): the next touch of each page faults, as in a fresh
 * process that did not hash the file. Other users of the model only see
 * those faults too. */
static void drop_pages(const prof *p)
{
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t base = (uintptr_t)gguf_file_bytes(p->m->file), page = ps > 0 ? (uintptr_t)ps : 4096;
    uintptr_t lo = (base + page - 1) & ~(page - 1), hi = (base + gguf_file_size(p->m->file)) & ~(page - 1);
    if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0)
        hinge_log(&p->hm->lg, HINGE_LOG_WARN, "profile: madvise: %s: first-touch costs will read 0", strerror(errno));
}

/* ---- the measurement ---- */

/* The positions and passes measured, the synthetic prompt. */
static hinge_status prof_init(prof *p)
{
    const model_hparams *hp = &p->m->hp;
    uint32_t ctx = p->cfg.n_ctx ? p->cfg.n_ctx : DEFAULT_CTX;
    if (ctx > hp->n_ctx_train)
        ctx = hp->n_ctx_train;
    if (ctx < PROF_MIN_CTX || ctx > PROF_MAX_CTX)
        return hinge_fail(p->err, sizeof p->err, HINGE_ERR_INVALID,
                          "n_ctx %u: measure between %d and %d positions (and within the model's %u)", ctx,
                          PROF_MIN_CTX, PROF_MAX_CTX, hp->n_ctx_train);
    p->ctx = ctx;
    p->d = hp->n_embd;
    memcpy(p->dec_pos, (uint32_t[PROF_N_DEC]){15, ctx / 4, ctx / 2, ctx - 1}, sizeof p->dec_pos);
    p->tok = malloc(ctx * sizeof *p->tok);
    p->h = malloc((size_t)ctx * p->d * sizeof(float));
    p->row = malloc(p->d * sizeof(float));
    if (!p->tok || !p->h || !p->row)
        return hinge_fail(p->err, sizeof p->err, HINGE_ERR_NOMEM, "out of memory for %u positions", ctx);
    /* a short context takes passes of at most half of it: several passes to fit */
    uint32_t max_n = ctx / 2 < PROF_PASS ? ctx / 2 : PROF_PASS;
    for (uint32_t pos = 0, i = 0; pos < ctx; i++) {
        uint32_t n = PASS_SIZES[i % (sizeof PASS_SIZES / sizeof PASS_SIZES[0])];
        if (n > max_n)
            continue;
        p->pass_pos[p->n_pass] = pos;
        p->pass_n[p->n_pass] = ctx - pos < n ? ctx - pos : n;
        pos += p->pass_n[p->n_pass++];
    }
    for (uint32_t i = 0; i < ctx; i++) /* synthetic ids away from the special tokens at the start */
        p->tok[i] = (int32_t)((1000u + 7919u * i) % hp->n_vocab);
    return HINGE_OK;
}

static void prof_free(prof *p)
{
    if (!p)
        return;
    free(p->tok);
    free(p->h);
    free(p->row);
    tp_destroy(p->tp);
    free(p);
}

/* The device's layers, then what both backends measure on the CPU. */
static hinge_status measure_all(prof *p)
{
    hinge_status s = HINGE_OK;
    drop_pages(p);
    if (p->cfg.backend == HINGE_BACKEND_VULKAN) {
#ifdef HINGE_HAVE_VULKAN
        s = prof_vk_layers(p);
#endif
    } else {
        s = cpu_layers(p);
        if (s == HINGE_OK)
            s = cpu_embed(p);
    }
    if (s == HINGE_OK)
        s = cpu_head(p);
    if (s == HINGE_OK)
        s = measure_encode(p);
    if (s == HINGE_OK && p->cfg.edge_url)
        s = measure_http(p);
    return s;
}

/* The scalar figures and the identity of the measured model. */
static void fill_profile(prof *p)
{
    part_compute *pc = &p->pc;
    part_role role = p->cfg.edge_role ? PART_ROLE_EDGE : PART_ROLE_DEVICE;
    const char *dflt = p->cfg.backend == HINGE_BACKEND_VULKAN ? "this-machine-vulkan" : "this-machine-cpu";
    pc->role = role;
    snprintf(pc->name, sizeof pc->name, "%s", p->cfg.name ? p->cfg.name : dflt);
    pc->meas.present = true;
    pc->meas.n_layer = p->m->hp.n_layer;
    pc->meas.n_embd = p->m->hp.n_embd;
    for (int i = 0; i < 32; i++)
        snprintf(pc->meas.model_sha256 + 2 * i, 3, "%02x", p->m->sha256[i]);
    pc->mem_bytes = mem_available();
    pc->kv_elem_bytes = 4; /* both engines keep K and V in f32 */
    if (role == PART_ROLE_DEVICE) {
        pc->power_compute_w = ASSUMED_POWER_W[0];
        pc->power_tx_w = ASSUMED_POWER_W[1];
        pc->power_rx_w = ASSUMED_POWER_W[2];
        pc->power_idle_w = ASSUMED_POWER_W[3];
    }
    if (!p->cfg.edge_url) { /* not measured: the defaults part_compute_load assumes */
        pc->request_overhead_us = role == PART_ROLE_DEVICE ? 500 : 0;
        pc->setup_overhead_us = role == PART_ROLE_DEVICE ? 5000 : 0;
    } else if (role == PART_ROLE_EDGE) { /* measured from the device's side: both ends are in its figure */
        pc->request_overhead_us = pc->setup_overhead_us = 0;
    }
}

/* The profile's JSON text, with the provenance of every figure. */
static hinge_status dump(prof *p, char **text)
{
    char cpu[200], source[400], ovh[300], date[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime_r(&now, &tm));
    describe_cpu(cpu, sizeof cpu);
    bool vk = p->cfg.backend == HINGE_BACKEND_VULKAN;
    snprintf(source, sizeof source, "measured by hinge profile (%s engine, %d thread(s), up to %u positions) on %s, %s",
             vk ? "Vulkan" : "CPU", tp_threads(p->tp), p->ctx, cpu, date);
    if (p->cfg.edge_url)
        snprintf(ovh, sizeof ovh, "measured by hinge profile against %s: median network_us of %d steps and the time "
                 "to open a session (both ends' HTTP/2 + TLS processing, no link delay)", p->cfg.edge_url, HTTP_STEPS);
    else
        snprintf(ovh, sizeof ovh, "default, not measured (hinge profile without --edge)");
    part_save_info info = {.source = source, .engine = vk ? "vulkan" : "cpu", .threads = (uint32_t)tp_threads(p->tp),
                           .model_name = p->m->name, .contexts = p->dec_pos, .n_contexts = PROF_N_DEC,
                           .mem_source = "MemAvailable in /proc/meminfo when measured", .power_source = POWER_SOURCE,
                           .overhead_source = ovh,
                           .description = p->pc.role == PART_ROLE_DEVICE ? "this machine as a device"
                                                                         : "this machine as an edge"};
    return part_compute_dump(&p->pc, &info, text, p->err, sizeof p->err);
}

static void log_summary(const prof *p)
{
    const part_measured *me = &p->pc.meas;
    double dec = me->step_us + me->embed_us_per_pos, pre = 0;
    for (uint32_t l = 0; l < me->n_layer; l++) {
        dec += me->layer[l].decode_us + me->layer[l].decode_us_per_attended * 16;
        pre += me->layer[l].prefill_us_per_pos;
    }
    hinge_log(&p->hm->lg, HINGE_LOG_DEBUG, "profile: %u layers; decode %.3f ms/token + head %.3f ms; prefill %.3f "
              "ms/position; request overhead %.0f us, session set-up %.0f us", me->n_layer, dec * 1e-3,
              me->head_us * 1e-3, pre * 1e-3, p->pc.request_overhead_us, p->pc.setup_overhead_us);
}

/* The caller's config, grown to this library's struct, checked. */
static hinge_status read_config(const hinge_profile_config *c, hinge_profile_config *out)
{
    hinge_profile_config_init(out);
    if (!c)
        return HINGE_OK;
    if (c->size < offsetof(hinge_profile_config, ca_file) + sizeof c->ca_file || c->size > sizeof *out)
        return api_fail(HINGE_ERR_INVALID, "hinge_profile_config.size is %u: call hinge_profile_config_init first",
                        c->size);
    memcpy(out, c, c->size);
    out->size = sizeof *out;
    if ((unsigned)out->backend > HINGE_BACKEND_VULKAN || out->n_threads < 0)
        return api_fail(HINGE_ERR_INVALID, "unknown backend %d or n_threads %d", (int)out->backend, out->n_threads);
#ifndef HINGE_HAVE_VULKAN
    if (out->backend == HINGE_BACKEND_VULKAN)
        return api_fail(HINGE_ERR_UNSUPPORTED, "this libhinge was built without Vulkan (-Dvulkan=disabled)");
#endif
    return HINGE_OK;
}

/* Measures into p->pc and dumps it. Detail in p->err. */
static hinge_status measure(prof *p, char **text)
{
    hinge_status s = api_model_hash(p->hm, p->err, sizeof p->err);
    if (s == HINGE_OK && (s = tp_create(p->cfg.n_threads, &p->tp)) != HINGE_OK)
        hinge_fail(p->err, sizeof p->err, s, "cannot start %d threads", p->cfg.n_threads);
    if (s == HINGE_OK)
        s = prof_init(p);
    if (s == HINGE_OK) {
        hinge_log(&p->hm->lg, HINGE_LOG_DEBUG, "profile: %s engine, %d thread(s), %u positions in %u passes",
                  p->cfg.backend == HINGE_BACKEND_VULKAN ? "Vulkan" : "CPU", tp_threads(p->tp), p->ctx, p->n_pass);
        s = measure_all(p);
    }
    if (s == HINGE_OK) {
        fill_profile(p);
        log_summary(p);
        s = dump(p, text);
    }
    return s;
}

hinge_status hinge_profile_measure(hinge_model *hm, const hinge_profile_config *c, char **json)
{
    if (!hm || !json)
        return api_fail(HINGE_ERR_INVALID, "hinge_profile_measure: model and json must not be NULL");
    prof *p = calloc(1, sizeof *p);
    if (!p)
        return api_fail(HINGE_ERR_NOMEM, "out of memory for the profile");
    hinge_status s = read_config(c, &p->cfg);
    if (s != HINGE_OK) {
        prof_free(p);
        return s;
    }
    p->hm = hm;
    p->m = hm->m;
    char *text = NULL;
    s = measure(p, &text);
    if (s == HINGE_OK)
        *json = text;
    else
        api_fail(s, "%s", p->err);
    prof_free(p);
    return s;
}
