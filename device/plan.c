/* hinge_partition_plan: the partitioner's prediction for every cut and its
 * choice for one request (`hinge partition`, docs/partitioning.md).
 *
 * Without both a channel and an edge profile no edge is reachable and the
 * answer is k = N. The JSON document (scripts/bench-partition and the
 * tests read these fields):
 *   {"model": NAME, "device": NAME, "channel": NAME?, "edge": NAME?,
 *    "request": {"prompt_len", "new_tokens", "connected"},
 *    "policy": {"min_cut", "mem_cap_bytes", "energy_weight", "max_recovery", "noise", "private_head"},
 *    "cut": K, "codec": "f16", "decision_us": ..., "chosen": {PREDICTION},
 *    "candidates": [{PREDICTION of cut 0}, ..., {cut N}]}
 * PREDICTION: {"cut", "codec", "feasible", "why", "setup_ms", "ttft_ms",
 *    "tpot_ms", "total_ms", "energy_j", "objective", "up_bytes",
 *    "down_bytes", "device_mem_mb", "ttft_split", "tpot_split"}, a split
 *    {"device_ms", "network_ms", "edge_ms", "queue_ms"}; null for a figure
 *    that is not finite. With speculate > 0, a split candidate also has
 *    "speculate": {"drafts", "accept_rate", "tokens_per_round_trip",
 *    "tpot_ms"}: a decode step of m rows costs network + queue + m (device +
 *    edge) of its one-row step (compute linear in rows: the case least
 *    favourable to speculation), and part_spec_choose picks the drafts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "session_impl.h"

enum { DECIDE_REPS = 2000, DEFAULT_PROMPT = 128, DEFAULT_NEW = 64 };

/* Everything one decision needs; big (fixed-size profiles), so on the heap. */
typedef struct plan {
    part_model model;
    part_compute device, edge;
    part_channel channel;
    part_inputs in;
    part_prediction table[PART_MAX_LAYERS + 1];
    part_decision dec;
    uint32_t speculate;   /* most drafts; 0: not modelled */
    double accept_rate;
    part_privacy priv;
    double decide_us; /* one decision, the mean of DECIDE_REPS */
    char err[HINGE_ERRMSG_MAX];
} plan;

void hinge_plan_config_init(hinge_plan_config *c)
{
    if (c)
        *c = (hinge_plan_config){.size = sizeof *c};
}

static bool is_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* The caller's config, grown to this library's struct. */
static hinge_status read_config(const hinge_plan_config *c, hinge_plan_config *out)
{
    hinge_plan_config_init(out);
    if (!c)
        return api_fail(HINGE_ERR_INVALID, "hinge_partition_plan: the config must not be NULL");
    if (c->size < offsetof(hinge_plan_config, cold_start) + sizeof c->cold_start || c->size > sizeof *out)
        return api_fail(HINGE_ERR_INVALID, "hinge_plan_config.size is %u: call hinge_plan_config_init first",
                        c->size);
    memcpy(out, c, c->size);
    out->size = sizeof *out;
    if (!out->device_profile)
        return api_fail(HINGE_ERR_INVALID, "hinge_partition_plan: device_profile (a device profile) is required");
    if (out->edge_profile && is_url(out->edge_profile))
        return api_fail(HINGE_ERR_INVALID, "edge_profile %s: the edge's profile file, not a URL", out->edge_profile);
    return HINGE_OK;
}

/* The profiles named by c into p->in. */
static hinge_status load_inputs(hinge_model *hm, plan *p, const hinge_plan_config *c)
{
    hinge_status s = part_compute_load(c->device_profile, PART_ROLE_DEVICE, &p->device, p->err, sizeof p->err);
    if (s == HINGE_OK && c->channel_profile)
        s = part_channel_load(c->channel_profile, &p->channel, p->err, sizeof p->err);
    if (s == HINGE_OK && c->edge_profile)
        s = part_compute_load(c->edge_profile, PART_ROLE_EDGE, &p->edge, p->err, sizeof p->err);
    p->in.load.queue_us = -1;
    if (s == HINGE_OK && c->edge_load)
        s = part_edge_load_load(c->edge_load, &p->in.load, p->err, sizeof p->err);
    if (s != HINGE_OK)
        return s;
    bool reachable = c->channel_profile && c->edge_profile;
    p->in.model = &p->model;
    p->in.device = &p->device;
    p->in.channel = reachable ? &p->channel : NULL;
    p->in.edge = reachable ? &p->edge : NULL;
    if ((c->channel_profile != NULL) != (c->edge_profile != NULL))
        hinge_log(&hm->lg, HINGE_LOG_WARN, "partition: %s given without %s: no edge is reachable",
                  c->channel_profile ? "a channel profile" : "an edge profile",
                  c->channel_profile ? "an edge profile" : "a channel profile");
    return HINGE_OK;
}

static hinge_status set_request(plan *p, const hinge_plan_config *c)
{
    p->in.req = (part_request){.prompt_len = c->prompt_len ? c->prompt_len : DEFAULT_PROMPT,
                               .new_tokens = c->new_tokens ? c->new_tokens : DEFAULT_NEW,
                               .connected = c->connected != 0,
                               .cold_start = c->cold_start != 0};
    p->in.pol = (part_policy){.min_cut = c->min_cut, .mem_cap_bytes = (double)c->mem_limit,
                              .energy_weight = c->energy_weight, .private_head = c->private_head};
    if (!(c->energy_weight >= 0) || !isfinite(c->energy_weight))
        return hinge_fail(p->err, sizeof p->err, HINGE_ERR_INVALID, "energy_weight %g is not a number >= 0",
                          c->energy_weight);
    if (c->speculate > TX_VERIFY_MAX - 1 || !(c->accept_rate >= 0 && c->accept_rate <= 1))
        return hinge_fail(p->err, sizeof p->err, HINGE_ERR_INVALID, "speculate %u (at most %d) or accept_rate %g "
                          "(0..1) out of range", c->speculate, TX_VERIFY_MAX - 1, c->accept_rate);
    p->speculate = c->speculate;
    p->accept_rate = c->accept_rate > 0 ? c->accept_rate : 0.5;
    if (!(c->max_recovery >= 0.0f && c->max_recovery <= 1.0f) || !(c->wire_noise >= 0.0f))
        return hinge_fail(p->err, sizeof p->err, HINGE_ERR_INVALID, "max_recovery %g or wire_noise %g out of range",
                          (double)c->max_recovery, (double)c->wire_noise);
    p->in.pol.max_recovery = c->max_recovery;
    p->in.pol.noise = c->wire_noise;
    p->in.pol.privacy = &p->priv;
    if (c->codecs)
        return part_codec_mask_parse(c->codecs, &p->in.pol.codec_mask, p->err, sizeof p->err);
    return HINGE_OK;
}

/* Decides, and times DECIDE_REPS more decisions. */
static hinge_status decide(plan *p)
{
    hinge_status s = part_decide(&p->in, p->table, PART_MAX_LAYERS + 1, &p->dec, p->err, sizeof p->err);
    if (s != HINGE_OK)
        return s;
    part_decision d;
    double t0 = clk_now_s();
    for (int i = 0; i < DECIDE_REPS; i++)
        part_decide(&p->in, NULL, 0, &d, NULL, 0);
    p->decide_us = (clk_now_s() - t0) * 1e6 / DECIDE_REPS;
    return HINGE_OK;
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

/* The "speculate" member of a split candidate (see the top of the file). */
static json_t *spec_json(const part_prediction *p, uint32_t max_d, double alpha)
{
    double fixed = p->tpot.network_s + p->tpot.queue_s, row = p->tpot.device_s + p->tpot.edge_s;
    uint32_t d = part_spec_choose(alpha, fixed, row, max_d);
    double e = part_spec_tokens(alpha, d);
    return json_pack("{s:I, s:f, s:f, s:o}", "drafts", (json_int_t)d, "accept_rate", alpha, "tokens_per_round_trip", e,
                     "tpot_ms", num((fixed + (d + 1) * row) / e * 1e3));
}

static json_t *pred_json(const plan *pl, const part_prediction *p)
{
    json_t *j = json_pack("{s:I, s:s, s:b, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "cut",
                     (json_int_t)p->cut, "codec", part_codec_name(p->codec), "feasible", p->why == PART_OK, "why",
                     part_infeasible_name(p->why), "setup_ms", num(p->setup_s * 1e3), "ttft_ms", num(p->ttft_s * 1e3),
                     "tpot_ms", num(p->tpot_s * 1e3), "total_ms", num(p->total_s * 1e3), "energy_j", num(p->energy_j),
                     "objective", num(p->objective), "up_bytes", num(p->up_bytes), "down_bytes", num(p->down_bytes),
                     "device_mem_mb", num(p->device_mem_bytes / 1048576.0), "ttft_split", split_json(&p->ttft),
                     "tpot_split", split_json(&p->tpot));
    if (j && pl->speculate && p->cut < pl->model.n_layer && p->why == PART_OK)
        json_object_set_new(j, "speculate", spec_json(p, pl->speculate, pl->accept_rate));
    return j;
}

/* The document (see the top of the file); NULL when out of memory. */
static char *plan_json(const plan *p)
{
    const part_inputs *in = &p->in;
    json_t *cands = json_array();
    for (uint32_t k = 0; cands && k <= p->model.n_layer; k++)
        if (json_array_append_new(cands, pred_json(p, &p->table[k])) != 0) {
            json_decref(cands);
            return NULL;
        }
    json_t *j = json_pack(
        "{s:s, s:s, s:s?, s:s?, s:{s:I, s:I, s:b}, s:{s:I, s:f, s:f, s:f, s:f, s:I}, s:I, s:s, s:f, s:o, s:o}", "model",
        p->model.name, "device", p->device.name, "channel", in->channel ? in->channel->name : NULL, "edge",
        in->edge ? in->edge->name : NULL, "request", "prompt_len", (json_int_t)in->req.prompt_len, "new_tokens",
        (json_int_t)in->req.new_tokens, "connected", in->req.connected, "policy", "min_cut",
        (json_int_t)in->pol.min_cut, "mem_cap_bytes", in->pol.mem_cap_bytes, "energy_weight", in->pol.energy_weight,
        "max_recovery", in->pol.max_recovery, "noise", in->pol.noise, "private_head",
        (json_int_t)in->pol.private_head, "cut", (json_int_t)p->dec.cut, "codec",
        part_codec_name(p->dec.codec), "decision_us", p->decide_us, "chosen",
        pred_json(p, &p->dec.chosen), "candidates", cands);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(j);
    return text;
}

hinge_status hinge_partition_plan(hinge_model *hm, const hinge_plan_config *c, char **json)
{
    if (!hm || !json)
        return api_fail(HINGE_ERR_INVALID, "hinge_partition_plan: model and json must not be NULL");
    hinge_plan_config cfg;
    hinge_status s = read_config(c, &cfg);
    if (s != HINGE_OK)
        return s;
    plan *p = calloc(1, sizeof *p);
    if (!p)
        return api_fail(HINGE_ERR_NOMEM, "out of memory for the partitioner's inputs");
    s = load_inputs(hm, p, &cfg);
    if (s == HINGE_OK)
        s = set_request(p, &cfg);
    if (s == HINGE_OK && cfg.max_recovery > 0.0f)
        s = auto_load_privacy(hm, cfg.privacy_profile, &p->priv, p->err, sizeof p->err);
    if (s == HINGE_OK)
        s = api_model_hash(hm, p->err, sizeof p->err);
    if (s == HINGE_OK)
        s = part_model_from_gguf(hm->m, &p->model, p->err, sizeof p->err);
    if (s == HINGE_OK)
        s = decide(p);
    char *text = s == HINGE_OK ? plan_json(p) : NULL;
    if (s == HINGE_OK && !text)
        s = hinge_fail(p->err, sizeof p->err, HINGE_ERR_NOMEM, "out of memory for the plan's JSON");
    if (s == HINGE_OK) {
        hinge_log(&hm->lg, HINGE_LOG_DEBUG, "partition: k = %u, codec %s, total %.2f ms; decision %.2f us",
                  p->dec.cut, part_codec_name(p->dec.codec), p->dec.chosen.total_s * 1e3, p->decide_us);
        *json = text;
    } else {
        api_fail(s, "%s", p->err);
    }
    free(p);
    return s;
}
