/* HINGE_CUT_AUTO: the partitioner picks the cut and the wire codec for a
 * session from the device and edge profiles and the channel: the live
 * estimate of earlier sessions against the same edge (cfg.channel_cache)
 * when there is one, else the channel profile. Each step's timing then
 * refines the estimate, which is saved when the session ends. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "session_impl.h"

typedef struct auto_inputs {
    part_model pm;
    part_compute dev, edge;
    part_channel prior, live;
    part_edge_load load;
    bool have_edge; /* cfg.edge_profile, or the edge's served one */
    part_privacy priv; /* cfg.privacy_profile, with cfg.max_recovery */
} auto_inputs;

hinge_status auto_load_privacy(hinge_model *hm, const char *path, part_privacy *p, char *err, size_t errlen)
{
    if (!path)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "max_recovery needs privacy_profile (the model's measured "
                          "recovery: hinge experiment privacy, profiles/privacy/)");
    hinge_status st = part_privacy_load(path, p, err, errlen);
    if (st == HINGE_OK)
        st = api_model_hash(hm, err, errlen);
    char ours[65];
    for (int i = 0; i < 32; i++)
        snprintf(ours + 2 * i, 3, "%02x", hm->m->sha256[i]);
    if (st == HINGE_OK && strcmp(p->sha256, ours) != 0)
        st = hinge_fail(err, errlen, HINGE_ERR_INVALID, "the privacy profile %s is for another model (sha256 %.12s, "
                        "ours %.12s)", path, p->sha256, ours);
    return st;
}

static part_policy policy(const hinge_session_config *c, const part_privacy *priv)
{
    return (part_policy){.min_cut = c->min_cut, .mem_cap_bytes = (double)c->mem_limit,
                         .energy_weight = c->energy_weight, .max_recovery = c->max_recovery,
                         .noise = c->wire_noise, .privacy = priv};
}

hinge_status auto_check_privacy(hinge_session *s, char *err, size_t errlen)
{
    const hinge_session_config *c = &s->cfg;
    if (!(c->max_recovery > 0.0f) || c->cut < 0 || s->cut >= s->m->hp.n_layer)
        return HINGE_OK;
    part_privacy *p = malloc(sizeof *p);
    hinge_status st = p ? auto_load_privacy(s->hm, c->privacy_profile, p, err, errlen)
                        : hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    part_policy pol = policy(c, p);
    if (st == HINGE_OK && !part_privacy_allows(&pol, s->cut, s->m->hp.n_layer, (part_codec)s->codec)) {
        double rec = part_privacy_recovery(p, s->cut, (part_codec)s->codec, c->wire_noise);
        st = rec < 0 ? hinge_fail(err, errlen, HINGE_ERR_INVALID, "cut %u, %s, noise %g: not measured in the "
                                  "privacy profile, so over the policy", s->cut, tx_codec_name(s->codec),
                                  (double)c->wire_noise)
                     : hinge_fail(err, errlen, HINGE_ERR_INVALID, "cut %u, %s, noise %g: measured token recovery "
                                  "%.3f is over the policy's %.3f", s->cut, tx_codec_name(s->codec),
                                  (double)c->wire_noise, rec, (double)c->max_recovery);
    }
    free(p);
    return st;
}

static hinge_status load_inputs(hinge_session *s, auto_inputs *in, char *err, size_t errlen)
{
    const hinge_session_config *c = &s->cfg;
    if (!c->device_profile || (c->edge_url && !c->channel_profile))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "HINGE_CUT_AUTO needs device_profile, and with an edge "
                          "also channel_profile (the prior of the live channel estimate; profiles/)");
    hinge_status st = part_model_from_gguf(s->m, &in->pm, err, errlen);
    if (st == HINGE_OK)
        st = part_compute_load(c->device_profile, PART_ROLE_DEVICE, &in->dev, err, errlen);
    if (st == HINGE_OK)
        st = part_compute_check(&in->dev, &in->pm, err, errlen);
    if (st == HINGE_OK && c->edge_profile)
        st = part_compute_load(c->edge_profile, PART_ROLE_EDGE, &in->edge, err, errlen);
    if (st == HINGE_OK && c->edge_profile)
        st = part_compute_check(&in->edge, &in->pm, err, errlen);
    if (st == HINGE_OK && c->edge_url)
        st = part_channel_load(c->channel_profile, &in->prior, err, errlen);
    in->have_edge = c->edge_profile != NULL;
    if (st == HINGE_OK && c->max_recovery > 0.0f)
        st = auto_load_privacy(s->hm, c->privacy_profile, &in->priv, err, errlen);
    return st;
}

/* The reply of GET /v1/profile: the edge must serve our model; its load,
 * and its profile unless cfg.edge_profile names one. */
static hinge_status read_edge(const model *m, const char *text, size_t len, auto_inputs *in, char *err,
                              size_t errlen)
{
    json_t *j = json_loadb(text, len, 0, NULL);
    const char *theirs = json_string_value(json_object_get(json_object_get(j, "model"), "sha256"));
    char ours[65];
    for (int i = 0; i < 32; i++)
        snprintf(ours + 2 * i, 3, "%02x", m->sha256[i]);
    hinge_status st = HINGE_OK;
    if (!j)
        st = hinge_fail(err, errlen, HINGE_ERR_PROTOCOL, "the edge's /v1/profile is not JSON");
    else if (!theirs)
        st = hinge_fail(err, errlen, HINGE_ERR_PROTOCOL, "the edge's /v1/profile has no model.sha256");
    else if (strcmp(theirs, ours) != 0)
        st = hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED, "the edge serves another model (sha256 %.12s, ours %.12s)",
                        theirs, ours);
    if (st == HINGE_OK)
        st = part_edge_load_parse(text, len, &in->load, err, errlen);
    json_t *prof = json_object_get(j, "profile");
    if (st == HINGE_OK && !in->have_edge && !json_is_object(prof))
        st = hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED, "the edge serves no profile: start hinge-edge with "
                        "--profile FILE, or give edge_profile");
    char *ptext = st == HINGE_OK && !in->have_edge ? json_dumps(prof, JSON_COMPACT) : NULL;
    if (st == HINGE_OK && !in->have_edge && !ptext)
        st = hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    if (st == HINGE_OK && ptext)
        st = part_compute_parse(ptext, strlen(ptext), "the edge's /v1/profile", PART_ROLE_EDGE, &in->edge, err,
                                errlen);
    if (st == HINGE_OK && ptext)
        st = part_compute_check(&in->edge, &in->pm, err, errlen);
    if (st == HINGE_OK)
        in->have_edge = true;
    free(ptext);
    json_decref(j);
    return st;
}

/* Asks the edge for its profile and load. An edge that cannot be reached
 * leaves in->have_edge false (a warning): the session runs locally. */
static hinge_status fetch_edge(hinge_session *s, auto_inputs *in, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    hinge_status st = tx_client_profile(s->client, &text, &len, err, errlen);
    if (st == HINGE_ERR_NETWORK) { /* no connection, timeout, or a TLS peer we do not trust */
        hinge_log(&s->lg, HINGE_LOG_WARN, "HINGE_CUT_AUTO: the edge cannot be reached (%s): running locally", err);
        in->have_edge = false;
        return HINGE_OK;
    }
    if (st == HINGE_OK)
        st = read_edge(s->m, text, len, in, err, errlen);
    free(text);
    return st;
}

/* The live estimate, from cfg.channel_cache when it holds one. */
static hinge_status open_estimate(hinge_session *s, auto_inputs *in, char *err, size_t errlen)
{
    part_chan_est_config cc = {.prior = &in->prior, .request_overhead_us = in->dev.request_overhead_us};
    hinge_status st = part_chan_est_create(&cc, &s->est, err, errlen);
    if (st != HINGE_OK)
        return st;
    char ignored[HINGE_ERRMSG_MAX];
    if (s->cfg.channel_cache) /* absent or stale: start from the prior */
        part_chan_est_load(s->est, s->cfg.channel_cache, ignored, sizeof ignored);
    part_chan_est_get(s->est, &in->live);
    if (part_chan_est_queue_us(s->est) >= 0)
        in->load.queue_us = part_chan_est_queue_us(s->est);
    return HINGE_OK;
}

hinge_status auto_decide(hinge_session *s, uint32_t n_prompt, char *err, size_t errlen)
{
    const hinge_session_config *c = &s->cfg;
    auto_inputs *in = calloc(1, sizeof *in);
    if (!in)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    in->load.queue_us = -1;
    hinge_status st = load_inputs(s, in, err, errlen);
    if (st == HINGE_OK && s->client)
        st = fetch_edge(s, in, err, errlen);
    bool split = st == HINGE_OK && s->client && in->have_edge;
    if (split)
        st = open_estimate(s, in, err, errlen);
    part_inputs pi = {.model = &in->pm, .device = &in->dev, .edge = split ? &in->edge : NULL, .load = in->load,
                      .channel = split ? &in->live : NULL,
                      .req = {.prompt_len = n_prompt, .new_tokens = c->max_new_hint ? c->max_new_hint : 64},
                      .pol = policy(c, &in->priv)};
    if (st == HINGE_OK && c->codecs)
        st = part_codec_mask_parse(c->codecs, &pi.pol.codec_mask, err, errlen);
    part_decision d;
    if (st == HINGE_OK)
        st = part_decide(&pi, NULL, 0, &d, err, errlen);
    if (st == HINGE_OK) {
        s->cut = d.cut;
        s->codec = d.codec == PART_CODEC_NONE ? TX_CODEC_F32 : (tx_codec)d.codec;
        s->remote = split && d.cut < in->pm.n_layer;
        hinge_log(&s->lg, HINGE_LOG_INFO, "HINGE_CUT_AUTO chose k=%u, %s (predicted TTFT %.1f ms, %.2f ms per token, "
                  "channel %s)", d.cut, part_codec_name(d.codec), d.chosen.ttft_s * 1e3, d.chosen.tpot_s * 1e3,
                  pi.channel ? pi.channel->name : "none");
    }
    if (!s->remote) { /* local: no step will tell anything about the link */
        part_chan_est_destroy(s->est);
        s->est = NULL;
    }
    free(in);
    return st;
}

void auto_observe(hinge_session *s, const hinge_step_info *t)
{
    if (!s->est)
        return;
    part_step_obs obs = {.request_us = (uint64_t)(t->tail_ms * 1e3), .edge_us = (uint64_t)(t->edge_ms * 1e3),
                         .queue_us = (uint64_t)(t->queue_ms * 1e3), .uplink_bytes = t->uplink_bytes,
                         .downlink_bytes = t->downlink_bytes, .requests = 1};
    part_chan_est_observe(s->est, &obs);
}

void auto_finish(hinge_session *s)
{
    if (!s->est)
        return;
    char err[HINGE_ERRMSG_MAX];
    if (s->cfg.channel_cache && part_chan_est_steps(s->est) > 0 &&
        part_chan_est_save(s->est, s->cfg.channel_cache, err, sizeof err) != HINGE_OK)
        hinge_log(&s->lg, HINGE_LOG_WARN, "cannot keep the channel estimate: %s", err);
    part_chan_est_destroy(s->est);
    s->est = NULL;
}
