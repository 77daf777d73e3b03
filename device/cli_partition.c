/* hinge partition: the partitioner's predictions for every cut and its
 * choice (docs/partitioning.md).
 *
 *   hinge partition --model M --device D.json [--channel C.json --edge E.json]
 *                   [--prompt-len P] [--new-tokens N] [--min-cut K] [--mem-cap BYTES]
 *                   [--energy-weight W] [--codecs f32,f16,q8] [--edge-load PROFILE.json]
 *                   [--connected] [--cold-start] [--json]
 *
 * Without a channel and an edge profile no edge is reachable and the
 * answer is k = N. --edge takes the edge's profile file here (not a URL);
 * --edge-load a saved GET /v1/profile reply of that edge, for its load.
 * The table goes to stdout; with --json one object:
 *   {"cut": K, "codec": "f16", "decision_us": ..., "chosen": {...},
 *    "candidates": [{"cut": 0, ...}, ..., {"cut": N, ...}], ...} */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "partition.h"

enum { DECIDE_REPS = 2000 };

/* Everything one decision needs; big (fixed-size profiles), so on the heap. */
typedef struct part_cli {
    part_model model;
    part_compute device, edge;
    part_channel channel;
    part_inputs in;
    part_prediction table[PART_MAX_LAYERS + 1];
    part_decision dec;
    double decide_us;
    char err[HINGE_ERRMSG_MAX];
} part_cli;

static int fail(hinge_status s, const char *msg)
{
    fprintf(stderr, "hinge partition: %s (%s)\n", msg, hinge_strerror(s));
    return -1;
}

static bool is_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

static int load_edge_load(part_cli *c, const char *path)
{
    char *text = NULL;
    size_t cap = 1 << 20, len = 0;
    FILE *fp = fopen(path, "rb");
    if (fp && (text = malloc(cap)))
        len = fread(text, 1, cap, fp);
    if (fp)
        fclose(fp);
    if (!text || len == cap) {
        free(text);
        fprintf(stderr, "hinge partition: --edge-load %s: cannot read it (or over 1 MiB)\n", path);
        return -1;
    }
    hinge_status s = part_edge_load_parse(text, len, &c->in.load, c->err, sizeof c->err);
    free(text);
    return s == HINGE_OK ? 0 : fail(s, c->err);
}

/* Profiles named by the options into c->in. */
static int load_inputs(part_cli *c, const opts *o)
{
    const char *edge = o->edge_profile ? o->edge_profile : o->edge;
    if (!o->device_profile) {
        fprintf(stderr, "hinge partition: --device FILE (a device profile) is required\n");
        return -1;
    }
    if (edge && is_url(edge)) {
        fprintf(stderr, "hinge partition: --edge takes the edge's profile file here, not a URL\n");
        return -1;
    }
    hinge_status s = part_compute_load(o->device_profile, PART_ROLE_DEVICE, &c->device, c->err, sizeof c->err);
    if (s == HINGE_OK && o->channel)
        s = part_channel_load(o->channel, &c->channel, c->err, sizeof c->err);
    if (s == HINGE_OK && edge)
        s = part_compute_load(edge, PART_ROLE_EDGE, &c->edge, c->err, sizeof c->err);
    if (s != HINGE_OK)
        return fail(s, c->err);
    c->in.load.queue_us = -1;
    c->in.model = &c->model;
    c->in.device = &c->device;
    c->in.channel = o->channel && edge ? &c->channel : NULL;
    c->in.edge = o->channel && edge ? &c->edge : NULL;
    if ((o->channel != NULL) != (edge != NULL))
        fprintf(stderr, "hinge partition: warning: %s given without %s: no edge is reachable\n",
                o->channel ? "--channel" : "--edge", o->channel ? "--edge" : "--channel");
    return o->edge_load ? load_edge_load(c, o->edge_load) : 0;
}

static int set_request(part_cli *c, const opts *o)
{
    c->in.req = (part_request){.prompt_len = o->prompt_len ? o->prompt_len : 128, .new_tokens = o->n_new,
                               .connected = o->connected != 0,
                               .cold_start = o->cold_start != 0};
    c->in.pol = (part_policy){.min_cut = o->min_cut, .mem_cap_bytes = (double)o->mem_cap,
                              .energy_weight = o->energy_weight};
    if (o->codecs) {
        hinge_status s = part_codec_mask_parse(o->codecs, &c->in.pol.codec_mask, c->err, sizeof c->err);
        if (s != HINGE_OK)
            return fail(s, c->err);
    }
    part_codec w;
    if (o->wire && part_codec_parse(o->wire, &w) != HINGE_OK) {
        fprintf(stderr, "hinge partition: --wire: '%s' is not f32, f16 or q8\n", o->wire);
        return -1;
    }
    if (o->wire)
        c->in.pol.codec_mask = 1u << w;
    return 0;
}

/* Decides, and times DECIDE_REPS more decisions. */
static int decide(part_cli *c)
{
    hinge_status s = part_decide(&c->in, c->table, PART_MAX_LAYERS + 1, &c->dec, c->err, sizeof c->err);
    if (s != HINGE_OK)
        return fail(s, c->err);
    part_decision d;
    double t0 = now_s();
    for (int i = 0; i < DECIDE_REPS; i++)
        part_decide(&c->in, NULL, 0, &d, NULL, 0);
    c->decide_us = (now_s() - t0) * 1e6 / DECIDE_REPS;
    return 0;
}

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *split_json(const part_split *s)
{
    return json_pack("{s:o, s:o, s:o, s:o}", "device_ms", num(s->device_s * 1e3), "network_ms",
                     num(s->network_s * 1e3), "edge_ms", num(s->edge_s * 1e3), "queue_ms", num(s->queue_s * 1e3));
}

static json_t *pred_json(const part_prediction *p)
{
    return json_pack("{s:I, s:s, s:b, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "cut",
                     (json_int_t)p->cut, "codec", part_codec_name(p->codec), "feasible", p->why == PART_OK, "why",
                     part_infeasible_name(p->why), "setup_ms", num(p->setup_s * 1e3), "ttft_ms", num(p->ttft_s * 1e3),
                     "tpot_ms", num(p->tpot_s * 1e3), "total_ms", num(p->total_s * 1e3), "energy_j", num(p->energy_j),
                     "objective", num(p->objective), "up_bytes", num(p->up_bytes), "down_bytes", num(p->down_bytes),
                     "device_mem_mb", num(p->device_mem_bytes / 1048576.0), "ttft_split", split_json(&p->ttft),
                     "tpot_split", split_json(&p->tpot));
}

static void print_json(const part_cli *c)
{
    const part_inputs *in = &c->in;
    json_t *cands = json_array();
    for (uint32_t k = 0; k <= c->model.n_layer; k++)
        json_array_append_new(cands, pred_json(&c->table[k]));
    json_t *j = json_pack(
        "{s:s, s:s, s:s?, s:s?, s:{s:I, s:I, s:b}, s:{s:I, s:f, s:f}, s:I, s:s, s:f, s:o, s:o}", "model",
        c->model.name, "device", c->device.name, "channel", in->channel ? in->channel->name : NULL, "edge",
        in->edge ? in->edge->name : NULL, "request", "prompt_len", (json_int_t)in->req.prompt_len, "new_tokens",
        (json_int_t)in->req.new_tokens, "connected", in->req.connected, "policy", "min_cut",
        (json_int_t)in->pol.min_cut, "mem_cap_bytes", in->pol.mem_cap_bytes, "energy_weight", in->pol.energy_weight,
        "cut", (json_int_t)c->dec.cut, "codec", part_codec_name(c->dec.codec), "decision_us", c->decide_us, "chosen",
        pred_json(&c->dec.chosen), "candidates", cands);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(j);
}

static void print_table(const part_cli *c)
{
    const part_inputs *in = &c->in;
    printf("model %s (%u layers); device %s; channel %s; edge %s\n", c->model.name, c->model.n_layer, c->device.name,
           in->channel ? in->channel->name : "(none)", in->edge ? in->edge->name : "(none: local only)");
    printf("request: %u prompt positions, %u new tokens; policy: k >= %u, memory cap %.0f MB, energy weight %g s/J\n",
           in->req.prompt_len, in->req.new_tokens, in->pol.min_cut, in->pol.mem_cap_bytes / 1048576.0,
           in->pol.energy_weight);
    printf("%3s %5s %9s %9s %9s %10s %8s %9s %8s %9s  %s\n", "k", "codec", "setup ms", "TTFT ms", "TPOT ms",
           "total ms", "energy J", "up KB", "mem MB", "objective", "");
    for (uint32_t k = 0; k <= c->model.n_layer; k++) {
        const part_prediction *p = &c->table[k];
        printf("%3u %5s %9.2f %9.2f %9.3f %10.2f %8.3f %9.1f %8.1f %9.4f  %s%s\n", k, part_codec_name(p->codec),
               p->setup_s * 1e3, p->ttft_s * 1e3, p->tpot_s * 1e3, p->total_s * 1e3, p->energy_j, p->up_bytes / 1e3,
               p->device_mem_bytes / 1048576.0, p->objective, p->why == PART_OK ? "" : part_infeasible_name(p->why),
               k == c->dec.cut ? " <- chosen" : "");
    }
    printf("choice: k = %u, codec %s: TTFT %.2f ms, TPOT %.3f ms, total %.2f ms; decision %.2f us\n", c->dec.cut,
           part_codec_name(c->dec.codec), c->dec.chosen.ttft_s * 1e3, c->dec.chosen.tpot_s * 1e3,
           c->dec.chosen.total_s * 1e3, c->decide_us);
}

int cmd_partition(const opts *o)
{
    part_cli *c = calloc(1, sizeof *c);
    if (!c) {
        fprintf(stderr, "hinge partition: out of memory\n");
        return 1;
    }
    engine e = {0};
    int rc = 1;
    hinge_status s;
    if (load_inputs(c, o) != 0 || set_request(c, o) != 0 || engine_open(&e, o, true) != 0)
        goto done;
    if ((s = part_model_from_gguf(e.m, &c->model, c->err, sizeof c->err)) != HINGE_OK) {
        fail(s, c->err);
        goto done;
    }
    if (decide(c) != 0)
        goto done;
    if (o->json)
        print_json(c);
    else
        print_table(c);
    rc = 0;
done:
    engine_close(&e);
    free(c);
    return rc;
}
