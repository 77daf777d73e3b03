/* hinge-bench-device: where the device half's time goes, layer by layer. A
 * benchmark of the Vulkan executor (and of the CPU engine for comparison),
 * not a user command: it drives the engines through their private headers.
 *
 *   hinge-bench-device --model M --backend vulkan|cpu [--layers K] [-n STEPS]
 *                      [--threads N] [--ctx N] [--prompt TEXT] [--json]
 *
 * Runs embed + layers [0, K) (K defaults to all) on a 128-position prompt
 * (synthetic ids, or --prompt's tokens) and then STEPS decode steps (default
 * 64), and prints per layer the prefill time per position and the decode
 * time per token: from GPU timestamp queries on Vulkan, from wall time on
 * the CPU engine (fwd_layers run one layer at a time). Then tokens/s of the
 * device part alone and with the CPU running the rest ([K, N) + head, greedy)
 * as a local generation would, and, on Vulkan, dispatches, submits and waits
 * per decode step and the share of a step spent outside the shaders (wall
 * time minus the summed GPU timestamps, over wall time). The last line,
 * "summary ...", is key=value pairs for scripts (scripts/bench-device).
 * Output goes to stdout. With --json, stdout gets one JSON object instead
 * (see print_json; the names decode_tokens_per_s, prefill_tokens_per_s and
 * dispatches_per_step are a contract with scripts).
 *
 * Timing protocol, for machines shared with other work: decode tokens/s
 * come from the median step (the mean is printed too), prefill from the
 * better of two runs; the tables are means over the profiled steps. The
 * tail's KV cache holds no prompt (it only times the work). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "forward.h"
#include "measure.h"
#include "model.h"
#include "threadpool.h"
#include "vk_context.h"
#include "vk_exec.h"

enum { PROMPT = 128, MAX_NAMES = 16 };

/* GPU time summed by op name ("qkv", "attention", ...). */
typedef struct by_op {
    const char *names[MAX_NAMES];
    double ns[MAX_NAMES];
    uint32_t n;
} by_op;

typedef struct bench {
    const model *m;
    threadpool *tp;
    hinge_logger lg;
    uint32_t k, n_layer, d, n_dec, n_prompt, ctx;
    int32_t prompt[PROMPT];
    double *pre_ns;     /* k + 1: embed, layers; per position */
    double *dec_ns;     /* k + 1: per token */
    double prefill_s;   /* wall, the whole prompt: the better of two runs */
    double prefill_cpu_s; /* the process's CPU time (all its threads, lavapipe's too) in the same run */
    double dec_s;       /* wall per decode step, device part: median */
    double dec_tail_s;  /* wall per decode step, CPU [k, N) + head + sampling: median */
    double dec_mean_s;  /* mean of device + tail */
    double *step_dev, *step_tail; /* n_dec: wall per decode step */
    double gpu_step_s;  /* profiled decode: summed timestamps per step */
    double wall_step_s; /* profiled decode: wall per step */
    double dispatches, submits, waits;
    by_op dec_ops;      /* decode GPU time by op, summed over the profiled steps */
    by_op pre_ops;      /* prefill GPU time by op, the profiled run */
    double *lt;         /* k + 1: scratch for vk_exec_layer_times */
    char device[256];   /* the Vulkan device's name; "cpu" */
    char kernels[128];  /* the executor's kernel variants (vk_exec_describe) */
    double ready_s;     /* executor creation (Vulkan: uploads, pipelines, self-test) */
    bool json;          /* --json: nothing but the JSON object on stdout */
    float *h, *logits;  /* (PROMPT, d), n_vocab */
    fwd_ctx *tail;      /* [k, N) and the head */
} bench;

/* CPU time of the whole process: on a machine shared with other work, a
 * steadier measure of lavapipe's work than wall time (a figure to compare
 * kernels by, not a speed). */
static double cpu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Keeps the better prefill run's wall and CPU time. */
static void prefill_keep(bench *b, double wall, double cpu)
{
    if (wall < b->prefill_s) {
        b->prefill_s = wall;
        b->prefill_cpu_s = cpu;
    }
}

/* dec_s, dec_tail_s and dec_mean_s from the steps. */
static void decode_summary(bench *b)
{
    double sum = 0;
    for (uint32_t i = 0; i < b->n_dec; i++)
        sum += b->step_dev[i] + b->step_tail[i];
    b->dec_mean_s = sum / b->n_dec;
    b->dec_s = meas_median(b->step_dev, b->n_dec);
    b->dec_tail_s = meas_median(b->step_tail, b->n_dec);
}

static int32_t argmax(const float *v, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return (int32_t)best;
}

static int fail(const char *what, hinge_status s, const char *msg)
{
    fprintf(stderr, "hinge-bench-device: %s: %s (%s)\n", what, msg, hinge_strerror(s));
    return -1;
}

/* The CPU's share of a step after the device part: [k, N), head, argmax. */
static int tail_step(bench *b, uint32_t pos, int32_t *next)
{
    hinge_status s = fwd_layers(b->tail, pos, 1, b->h);
    if (s == HINGE_OK)
        s = fwd_head(b->tail, b->h, 1, b->logits);
    if (s != HINGE_OK)
        return fail("CPU tail", s, fwd_errmsg(b->tail));
    *next = argmax(b->logits, b->m->hp.n_vocab);
    return 0;
}

/* ---- Vulkan ---- */

static void add_name(by_op *t, const char *name, double ns)
{
    uint32_t i = 0;
    while (i < t->n && strcmp(t->names[i], name) != 0)
        i++;
    if (i == t->n && t->n == MAX_NAMES)
        return;
    if (i == t->n)
        t->names[t->n++] = name;
    t->ns[i] += ns;
}

/* Adds the GPU times of the last (profiled) run's ops. */
static void add_ops(by_op *t, const vk_exec *e)
{
    for (uint32_t o = 0; o < vk_exec_op_count(e); o++) {
        vk_exec_op_info oi;
        vk_exec_op(e, o, &oi);
        add_name(t, oi.name, oi.ns);
    }
}

static double op_total(const by_op *t)
{
    double sum = 0;
    for (uint32_t i = 0; i < t->n; i++)
        sum += t->ns[i];
    return sum > 0 ? sum : 1;
}

/* steps decode steps from position pos0 (token t first); with prof, the
 * per-layer GPU times and counters are summed. */
static int vk_decode(bench *b, vk_exec *e, uint32_t pos0, bool prof)
{
    int32_t t = b->prompt[b->n_prompt - 1];
    double *lt = b->lt;
    for (uint32_t i = 0; i < b->n_dec; i++) {
        double t0 = clk_now_s();
        hinge_status s = vk_exec_run(e, &t, 1, pos0 + i, b->h);
        if (s != HINGE_OK)
            return fail("decode", s, vk_exec_errmsg(e));
        double t1 = clk_now_s();
        if (tail_step(b, pos0 + i, &t) != 0)
            return -1;
        if (!prof) {
            b->step_dev[i] = t1 - t0;
            b->step_tail[i] = clk_now_s() - t1;
        }
        vk_exec_stats st;
        vk_exec_get_stats(e, &st);
        b->dispatches += st.dispatches;
        b->submits += st.submits;
        b->waits += st.waits;
        if (!prof)
            continue;
        b->gpu_step_s += st.gpu_ns * 1e-9;
        b->wall_step_s += st.wall_ns * 1e-9;
        vk_exec_layer_times(e, lt);
        for (uint32_t l = 0; l <= b->k; l++)
            b->dec_ns[l] += lt[l];
        add_ops(&b->dec_ops, e);
    }
    if (!prof)
        decode_summary(b);
    return 0;
}

static int vk_bench(bench *b)
{
    char err[HINGE_ERRMSG_MAX] = "";
    dev_ctx *c = NULL;
    dev_ctx_config cc = {.log = &b->lg};
    hinge_status s = dev_ctx_create(&cc, &c, err, sizeof err);
    if (s != HINGE_OK)
        return fail("Vulkan", s, err);
    vk_exec *e = NULL;
    double t0 = clk_now_s();
    s = vk_exec_create(c, b->m, b->k, b->ctx, PROMPT, &e, err, sizeof err);
    if (s != HINGE_OK) {
        dev_ctx_destroy(c);
        return fail("executor", s, err);
    }
    b->ready_s = clk_now_s() - t0;
    snprintf(b->device, sizeof b->device, "%s", dev_ctx_features(c)->name);
    snprintf(b->kernels, sizeof b->kernels, "%s", vk_exec_describe(e));
    if (!b->json)
        printf("device: %s; executor ready in %.2f s (%s; LP_NUM_THREADS=%s)\n", b->device, b->ready_s, b->kernels,
               getenv("LP_NUM_THREADS") ? getenv("LP_NUM_THREADS") : "unset");
    int rc = 0;
    double *lt = b->lt;
    /* prefill: timed twice without timestamps, then with them */
    b->prefill_s = 1e30;
    for (int r = 0; r < 2 && rc == 0; r++) {
        t0 = clk_now_s();
        double c0 = cpu_now_s();
        if ((s = vk_exec_run(e, b->prompt, b->n_prompt, 0, b->h)) != HINGE_OK)
            rc = fail("prefill", s, vk_exec_errmsg(e));
        prefill_keep(b, clk_now_s() - t0, cpu_now_s() - c0);
    }
    if (rc == 0 && (s = vk_exec_set_profiling(e, true)) != HINGE_OK)
        rc = fail("profiling", s, vk_exec_errmsg(e));
    if (rc == 0 && (s = vk_exec_run(e, b->prompt, b->n_prompt, 0, b->h)) != HINGE_OK)
        rc = fail("prefill", s, vk_exec_errmsg(e));
    if (rc == 0) {
        vk_exec_layer_times(e, lt);
        for (uint32_t l = 0; l <= b->k; l++)
            b->pre_ns[l] = lt[l] / b->n_prompt;
        add_ops(&b->pre_ops, e);
        vk_exec_set_profiling(e, false);
        rc = vk_decode(b, e, b->n_prompt, false);
    }
    b->dispatches = b->submits = b->waits = 0;
    if (rc == 0 && vk_exec_set_profiling(e, true) == HINGE_OK) /* rewind: the same positions, profiled */
        rc = vk_decode(b, e, b->n_prompt, true);
    for (uint32_t l = 0; l <= b->k; l++)
        b->dec_ns[l] /= b->n_dec;
    vk_exec_destroy(e);
    dev_ctx_destroy(c);
    return rc;
}

/* ---- CPU ---- */

static int cpu_bench(bench *b)
{
    const model *m = b->m;
    fwd_ctx **L = calloc(b->k + 1, sizeof *L);
    int rc = L ? 0 : -1;
    char err[HINGE_ERRMSG_MAX] = "";
    for (uint32_t l = 0; l <= b->k && rc == 0; l++) { /* L[l]: layer l; L[k] embeds */
        fwd_config fc = {.layer_begin = l < b->k ? l : 0, .layer_end = l < b->k ? l + 1 : 0, .ctx = b->ctx,
                         .max_batch = PROMPT};
        hinge_status s = fwd_create(m, b->tp, &fc, &L[l], err, sizeof err);
        if (s != HINGE_OK)
            rc = fail("CPU stage", s, err);
    }
    double t0, t1;
    b->prefill_s = 1e30;
    for (int r = 0; r < 2 && rc == 0; r++) { /* the better of two runs */
        double *ns = r == 0 ? b->lt : b->pre_ns, dt, c0 = cpu_now_s();
        t0 = clk_now_s();
        fwd_embed(L[b->k], b->prompt, b->n_prompt, b->h);
        t1 = clk_now_s();
        ns[0] = (t1 - t0) * 1e9 / b->n_prompt;
        for (uint32_t l = 0; l < b->k; l++, t1 = clk_now_s()) {
            fwd_layers(L[l], 0, b->n_prompt, b->h);
            ns[l + 1] = (clk_now_s() - t1) * 1e9 / b->n_prompt;
        }
        dt = clk_now_s() - t0;
        if (r == 1 && dt > b->prefill_s) /* the first run was the better one */
            memcpy(b->pre_ns, b->lt, (b->k + 1) * sizeof(double));
        prefill_keep(b, dt, cpu_now_s() - c0);
    }
    int32_t t = b->prompt[b->n_prompt - 1];
    for (uint32_t i = 0; i < b->n_dec && rc == 0; i++) {
        uint32_t pos = b->n_prompt + i;
        t0 = clk_now_s();
        fwd_embed(L[b->k], &t, 1, b->h);
        t1 = clk_now_s();
        b->dec_ns[0] += (t1 - t0) * 1e9;
        for (uint32_t l = 0; l < b->k; l++, t1 = clk_now_s()) {
            fwd_layers(L[l], pos, 1, b->h);
            b->dec_ns[l + 1] += (clk_now_s() - t1) * 1e9;
        }
        b->step_dev[i] = clk_now_s() - t0;
        t1 = clk_now_s();
        rc = tail_step(b, pos, &t);
        b->step_tail[i] = clk_now_s() - t1;
    }
    for (uint32_t l = 0; l <= b->k; l++)
        b->dec_ns[l] /= b->n_dec;
    if (rc == 0)
        decode_summary(b);
    for (uint32_t l = 0; L && l <= b->k; l++)
        fwd_destroy(L[l]);
    free(L);
    return rc;
}

/* ---- report ---- */

static void report(const bench *b, bool vk)
{
    const model *m = b->m;
    double pre = 0, dec = 0;
    printf("%-8s %16s %16s\n", "layer", "prefill us/pos", "decode us/tok");
    for (uint32_t l = 0; l <= b->k; l++) {
        char name[16];
        snprintf(name, sizeof name, l ? "%u" : "embed", l - 1);
        printf("%-8s %16.2f %16.2f\n", name, b->pre_ns[l] * 1e-3, b->dec_ns[l] * 1e-3);
        pre += b->pre_ns[l];
        dec += b->dec_ns[l];
    }
    printf("%-8s %16.2f %16.2f   (%s)\n", "sum", pre * 1e-3, dec * 1e-3, vk ? "GPU timestamps" : "wall time");
    for (int pass = 0; vk && pass < 2; pass++) {
        const by_op *t = pass ? &b->pre_ops : &b->dec_ops;
        printf("%s GPU time by op:", pass ? "prefill" : "decode");
        for (uint32_t i = 0; i < t->n; i++)
            printf(" %s %.1f%%", t->names[i], 100.0 * t->ns[i] / op_total(t));
        printf("\n");
    }
    double dec_tok = 1.0 / b->dec_s, full_tok = 1.0 / (b->dec_s + b->dec_tail_s);
    double pre_tok = b->n_prompt / b->prefill_s;
    printf("decode: %.3f ms/token = %.1f tok/s (embed + %u layers); with the CPU's [%u, %u) + head: %.1f tok/s "
           "(medians; mean %.1f tok/s)\n", b->dec_s * 1e3, dec_tok, b->k, b->k, m->hp.n_layer, full_tok,
           1.0 / b->dec_mean_s);
    printf("prefill: %u positions in %.3f s = %.1f tok/s (process CPU time %.3f ms/position)\n", b->n_prompt,
           b->prefill_s, pre_tok, b->prefill_cpu_s * 1e3 / b->n_prompt);
    double outside = vk && b->wall_step_s > 0 ? (b->wall_step_s - b->gpu_step_s) / b->wall_step_s : 0;
    if (vk)
        printf("per decode step: %.0f dispatches, %.0f submits, %.0f waits; outside the shaders %.1f%% (wall %.3f "
               "ms, GPU %.3f ms, profiled)\n", b->dispatches / b->n_dec, b->submits / b->n_dec,
               b->waits / b->n_dec, 100.0 * outside, b->wall_step_s / b->n_dec * 1e3,
               b->gpu_step_s / b->n_dec * 1e3);
    printf("summary backend=%s layers=%u n_layer=%u decode_tok_s=%.2f decode_full_tok_s=%.2f prefill_tok_s=%.2f "
           "dispatches=%.0f submits=%.0f waits=%.0f outside=%.4f\n", vk ? "vulkan" : "cpu", b->k, m->hp.n_layer,
           dec_tok, full_tok, pre_tok, vk ? b->dispatches / b->n_dec : 0, vk ? b->submits / b->n_dec : 0,
           vk ? b->waits / b->n_dec : 0, outside);
}

/* One JSON object with the figures of report(). Per-layer arrays are in
 * microseconds; shares are fractions; null where a figure does not apply
 * to the backend. */
static int print_json(const bench *b, bool vk)
{
    const model *m = b->m;
    json_t *pre = json_array(), *dec = json_array(), *ops = json_object(), *pre_ops = json_object();
    double steps = b->n_dec ? b->n_dec : 1;
    for (uint32_t l = 0; l <= b->k; l++) {
        json_array_append_new(pre, json_real(b->pre_ns[l] * 1e-3));
        json_array_append_new(dec, json_real(b->dec_ns[l] * 1e-3));
    }
    for (uint32_t i = 0; vk && i < b->dec_ops.n; i++)
        json_object_set_new(ops, b->dec_ops.names[i], json_real(b->dec_ops.ns[i] / op_total(&b->dec_ops)));
    for (uint32_t i = 0; vk && i < b->pre_ops.n; i++)
        json_object_set_new(pre_ops, b->pre_ops.names[i], json_real(b->pre_ops.ns[i] / op_total(&b->pre_ops)));
    const char *lp = getenv("LP_NUM_THREADS");
    double outside = vk && b->wall_step_s > 0 ? (b->wall_step_s - b->gpu_step_s) / b->wall_step_s : 0;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:s?}", "model", m->name,
                          "arch", model_arch_name(m->hp.arch), "backend", vk ? "vulkan" : "cpu",
                          "device", vk ? b->device : "cpu", "kernels", vk ? b->kernels : "cpu", "layers", (int)b->k,
                          "n_layer", (int)m->hp.n_layer, "prompt_tokens", (int)b->n_prompt, "decode_steps",
                          (int)b->n_dec, "threads", tp_threads(b->tp), "lp_num_threads", lp);
    int rc = o && pre && dec && ops && pre_ops ? 0 : -1;
    if (rc == 0) {
        json_object_set_new(o, "decode_tokens_per_s", json_real(1.0 / b->dec_s));
        json_object_set_new(o, "decode_full_tokens_per_s", json_real(1.0 / (b->dec_s + b->dec_tail_s)));
        json_object_set_new(o, "decode_mean_tokens_per_s", json_real(1.0 / b->dec_mean_s));
        json_object_set_new(o, "prefill_tokens_per_s", json_real(b->n_prompt / b->prefill_s));
        json_object_set_new(o, "prefill_cpu_ms_per_token", json_real(b->prefill_cpu_s * 1e3 / b->n_prompt));
        json_object_set_new(o, "dispatches_per_step", vk ? json_real(b->dispatches / steps) : json_null());
        json_object_set_new(o, "submits_per_step", vk ? json_real(b->submits / steps) : json_null());
        json_object_set_new(o, "waits_per_step", vk ? json_real(b->waits / steps) : json_null());
        json_object_set_new(o, "outside_shaders_share", vk ? json_real(outside) : json_null());
        json_object_set_new(o, "executor_ready_s", vk ? json_real(b->ready_s) : json_null());
        json_object_set_new(o, "prefill_us_per_position", pre);
        json_object_set_new(o, "decode_us_per_token", dec);
        json_object_set_new(o, "decode_gpu_share_by_op", vk ? ops : json_null());
        json_object_set_new(o, "prefill_gpu_share_by_op", vk ? pre_ops : json_null());
        pre = dec = NULL;
        if (!vk) {
            json_decref(ops);
            json_decref(pre_ops);
        }
        ops = pre_ops = NULL;
        char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
        rc = text ? 0 : -1;
        if (text)
            printf("%s\n", text);
        free(text);
    }
    json_decref(pre);
    json_decref(dec);
    json_decref(ops);
    json_decref(pre_ops);
    json_decref(o);
    return rc == 0 ? 0 : fail("--json", HINGE_ERR_NOMEM, "cannot build the JSON object");
}

/* ---- command line ---- */

#define DEFAULT_MODEL_REL ".cache/hinge/models/gemma-3-270m-q4_k_m.gguf"

typedef struct bench_opts {
    const char *model, *prompt;
    uint32_t layers, n_dec, threads, ctx;
    bool have_layers, vulkan, json;
} bench_opts;

enum { O_BACKEND = 256, O_LAYERS, O_THREADS, O_CTX, O_JSON };

static const struct option OPTIONS[] = {
    {"model", required_argument, NULL, 'm'},     {"backend", required_argument, NULL, O_BACKEND},
    {"layers", required_argument, NULL, O_LAYERS}, {"cut", required_argument, NULL, O_LAYERS},
    {"n", required_argument, NULL, 'n'},         {"threads", required_argument, NULL, O_THREADS},
    {"ctx", required_argument, NULL, O_CTX},     {"prompt", required_argument, NULL, 'p'},
    {"json", no_argument, NULL, O_JSON},         {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: hinge-bench-device [--model PATH] [--backend vulkan|cpu] [--layers K] [-n STEPS]\n"
                 "                          [--threads N] [--ctx N] [--prompt TEXT] [--json]\n"
                 "  --model PATH          GGUF model (default $HINGE_MODEL, else ~/" DEFAULT_MODEL_REL ")\n"
                 "  --backend vulkan|cpu  the engine measured (default cpu)\n"
                 "  --layers K            embed + layers [0, K) on it (default: all)\n"
                 "  -n STEPS              decode steps (default 64, at most 4096)\n"
                 "  --threads N           CPU threads (default: all)\n"
                 "  --ctx N               KV cache positions (default: prompt + STEPS)\n"
                 "  --prompt TEXT         the prompt's tokens (default: 128 synthetic ids)\n"
                 "  --json                print one JSON object (decode_tokens_per_s, prefill_tokens_per_s,\n"
                 "                        dispatches_per_step, ...) instead of the tables\n");
}

static int parse_u32(const char *s, const char *what, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max) {
        fprintf(stderr, "hinge-bench-device: %s: '%s' is not an integer in [0, %u]\n", what, s, max);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_one(int c, const char *arg, bench_opts *o)
{
    switch (c) {
    case 'm': o->model = arg; return 0;
    case 'p': o->prompt = arg; return 0;
    case 'n': return parse_u32(arg, "-n", 4096, &o->n_dec);
    case O_LAYERS: o->have_layers = true; return parse_u32(arg, "--layers", 4096, &o->layers);
    case O_THREADS: return parse_u32(arg, "--threads", 256, &o->threads);
    case O_CTX: return parse_u32(arg, "--ctx", 1u << 20, &o->ctx);
    case O_JSON: o->json = true; return 0;
    case O_BACKEND:
        if (strcmp(arg, "cpu") != 0 && strcmp(arg, "vulkan") != 0) {
            fprintf(stderr, "hinge-bench-device: --backend: '%s' is not vulkan or cpu\n", arg);
            return -1;
        }
        o->vulkan = arg[0] == 'v';
        return 0;
    }
    return -1;
}

/* 0: run; 1: --help printed; 2: usage error. */
static int parse(int argc, char **argv, bench_opts *o)
{
    static char path[4096];
    *o = (bench_opts){.n_dec = 64};
    int c;
    while ((c = getopt_long(argc, argv, "m:n:p:h", OPTIONS, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (parse_one(c, optarg, o) != 0) {
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hinge-bench-device: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    const char *env = getenv("HINGE_MODEL"), *home = getenv("HOME");
    snprintf(path, sizeof path, "%s/%s", home ? home : ".", DEFAULT_MODEL_REL);
    if (!o->model)
        o->model = env && *env ? env : path;
    return 0;
}

static int make_prompt(bench *b, const char *text)
{
    const model *m = b->m;
    b->n_prompt = PROMPT;
    if (!text) { /* BOS, then ids spread over the vocabulary */
        for (uint32_t i = 0; i < PROMPT; i++)
            b->prompt[i] = i == 0 && tok_bos(m->tok) >= 0 ? tok_bos(m->tok)
                                                          : (int32_t)((i * 7919u + 13u) % m->hp.n_vocab);
        return 0;
    }
    size_t n = 0;
    hinge_status s = tok_encode(m->tok, text, strlen(text), tok_add_bos(m->tok), false, b->prompt, PROMPT, &n);
    if ((s != HINGE_OK && s != HINGE_ERR_RANGE) || n == 0)
        return fail("--prompt", s, "cannot tokenize");
    b->n_prompt = n < PROMPT ? (uint32_t)n : PROMPT;
    return 0;
}

/* The bench's buffers and the CPU tail [k, N) + head. */
static int bench_alloc(bench *b)
{
    const model_hparams *hp = &b->m->hp;
    b->pre_ns = calloc(b->k + 1, sizeof(double));
    b->dec_ns = calloc(b->k + 1, sizeof(double));
    b->lt = calloc(b->k + 1, sizeof(double));
    b->step_dev = calloc(b->n_dec ? b->n_dec : 1, sizeof(double));
    b->step_tail = calloc(b->n_dec ? b->n_dec : 1, sizeof(double));
    b->h = malloc((size_t)PROMPT * hp->n_embd * sizeof(float));
    b->logits = malloc(hp->n_vocab * sizeof(float));
    if (!b->pre_ns || !b->dec_ns || !b->lt || !b->step_dev || !b->step_tail || !b->h || !b->logits)
        return fail("bench", HINGE_ERR_NOMEM, "out of memory");
    char err[HINGE_ERRMSG_MAX] = "";
    fwd_config fc = {.layer_begin = b->k, .layer_end = hp->n_layer, .ctx = b->ctx};
    hinge_status s = fwd_create(b->m, b->tp, &fc, &b->tail, err, sizeof err);
    return s == HINGE_OK ? 0 : fail("CPU tail", s, err);
}

static void bench_free(bench *b)
{
    fwd_destroy(b->tail);
    free(b->pre_ns);
    free(b->dec_ns);
    free(b->lt);
    free(b->step_dev);
    free(b->step_tail);
    free(b->h);
    free(b->logits);
}

/* Checks the options against the model; the prompt, the buffers. */
static int bench_init(bench *b, const bench_opts *o)
{
    const model_hparams *hp = &b->m->hp;
    b->n_layer = hp->n_layer;
    b->d = hp->n_embd;
    b->n_dec = o->n_dec ? o->n_dec : 64;
    b->k = o->have_layers ? o->layers : hp->n_layer;
    if (b->k > hp->n_layer) {
        fprintf(stderr, "hinge-bench-device: --layers %u: the model has %u\n", b->k, hp->n_layer);
        return -1;
    }
    if (make_prompt(b, o->prompt) != 0)
        return -1;
    b->ctx = o->ctx ? o->ctx : b->n_prompt + b->n_dec;
    if (b->ctx < b->n_prompt + b->n_dec) {
        fprintf(stderr, "hinge-bench-device: --ctx %u holds less than %u positions\n", b->ctx, b->n_prompt + b->n_dec);
        return -1;
    }
    return bench_alloc(b);
}

int main(int argc, char **argv)
{
    bench_opts o;
    int rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    bench b = {.lg = {.fn = hinge_log_stderr, .level = HINGE_LOG_WARN}};
    model *m = NULL;
    char err[HINGE_ERRMSG_MAX] = "";
    hinge_status s = model_load(o.model, false, &b.lg, &m, err, sizeof err);
    if (s != HINGE_OK) {
        fprintf(stderr, "hinge-bench-device: cannot load model %s: %s (%s)\n", o.model, err, hinge_strerror(s));
        return 1;
    }
    b.m = m;
    if (tp_create((int)o.threads, &b.tp) != HINGE_OK) {
        fprintf(stderr, "hinge-bench-device: cannot start %u threads\n", o.threads);
        model_free(m);
        return 1;
    }
    b.json = o.json;
    rc = bench_init(&b, &o);
    if (rc == 0 && !o.json) {
        printf("hinge-bench-device: %s (%s, %u layers), backend %s, layers [0, %u), prompt %u, %u decode steps, "
               "CPU threads %d\n", m->name, model_arch_name(m->hp.arch), m->hp.n_layer,
               o.vulkan ? "vulkan" : "cpu", b.k, b.n_prompt, b.n_dec, tp_threads(b.tp));
    }
    if (rc == 0)
        rc = o.vulkan ? vk_bench(&b) : cpu_bench(&b);
    if (rc == 0 && o.json)
        rc = print_json(&b, o.vulkan);
    else if (rc == 0)
        report(&b, o.vulkan);
    bench_free(&b);
    tp_destroy(b.tp);
    model_free(m);
    return rc == 0 ? 0 : 1;
}
