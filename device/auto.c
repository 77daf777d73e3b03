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
                         .noise = c->wire_noise, .privacy = priv, .private_head = c->private_head};
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

/* Asks edge c for its profile and load. An edge that cannot be reached
 * leaves in->have_edge false (a warning). */
static hinge_status fetch_edge(hinge_session *s, tx_client *c, const char *url, auto_inputs *in, char *err,
                               size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    hinge_status st = tx_client_profile(c, &text, &len, err, errlen);
    if (st == HINGE_ERR_NETWORK) { /* no connection, timeout, or a TLS peer we do not trust */
        hinge_log(&s->lg, HINGE_LOG_WARN, "HINGE_CUT_AUTO: the edge %s cannot be reached (%s)", url, err);
        in->have_edge = false;
        return HINGE_OK;
    }
    if (st == HINGE_OK)
        st = read_edge(s->m, text, len, in, err, errlen);
    free(text);
    return st;
}

/* With several edges: edge i's profile and load, and a round trip timed
 * on the warm connection (a second GET /v1/profile). An edge that fails
 * otherwise (another model, no profile) is left out with a warning. */
static void probe_edge(hinge_session *s, uint32_t i, tx_client **c, auto_inputs *in, double *rtt_s)
{
    char err[HINGE_ERRMSG_MAX];
    tx_client_config cc = {.base_url = s->edges[i], .cacert = s->ca_file, .timeout_ms = s->cfg.timeout_ms,
                           .spin_us = s->cfg.spin_us};
    hinge_status st = *c ? HINGE_OK : tx_client_create(&cc, c, err, sizeof err);
    if (st == HINGE_OK)
        st = fetch_edge(s, *c, s->edges[i], in, err, sizeof err);
    if (st != HINGE_OK) {
        hinge_log(&s->lg, HINGE_LOG_WARN, "HINGE_CUT_AUTO: leaving out the edge %s: %s", s->edges[i], err);
        in->have_edge = false;
    }
    if (!in->have_edge)
        return;
    char *text = NULL;
    size_t len = 0;
    double t0 = clk_now_s();
    if (tx_client_profile(*c, &text, &len, err, sizeof err) == HINGE_OK)
        *rtt_s = clk_now_s() - t0;
    free(text);
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

/* Makes edge i the session's edge (its client kept, the others' closed):
 * the rest stay fall-backs in ring order after it (recover). */
static void choose_edge(hinge_session *s, uint32_t i, tx_client **clients, uint32_t n)
{
    for (uint32_t j = 0; j < n; j++)
        if (j != i && clients[j] != s->client)
            tx_client_destroy(clients[j]);
    if (clients[i] != s->client) {
        tx_client_destroy(s->client);
        s->client = clients[i];
    }
    s->edge_i = (int)i;
    s->edge_url = s->edges[i];
}

hinge_status auto_decide(hinge_session *s, uint32_t n_prompt, char *err, size_t errlen)
{
    const hinge_session_config *c = &s->cfg;
    uint32_t n = s->client ? s->n_edges : 1; /* the edges to weigh */
    auto_inputs *in = calloc(n, sizeof *in);
    tx_client **clients = calloc(n, sizeof *clients);
    double *rtt = calloc(n, sizeof *rtt);
    if (!in || !clients || !rtt) {
        free(in);
        free(clients);
        free(rtt);
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    }
    in[0].load.queue_us = -1;
    hinge_status st = load_inputs(s, &in[0], err, errlen);
    for (uint32_t i = 1; i < n; i++)
        in[i] = in[0];
    if (st == HINGE_OK && s->client && n == 1)
        st = fetch_edge(s, s->client, s->edge_url, &in[0], err, errlen);
    else if (st == HINGE_OK && s->client) {
        clients[s->edge_i] = s->client;
        for (uint32_t i = 0; i < n; i++)
            probe_edge(s, i, &clients[i], &in[i], &rtt[i]);
    }
    /* one live estimate of this device's link; each edge further away by
     * its measured round trip over the nearest one's */
    auto_inputs base = in[0];
    double rtt_min = -1.0;
    bool split = false;
    for (uint32_t i = 0; i < n; i++)
        if (st == HINGE_OK && s->client && in[i].have_edge) {
            split = true;
            rtt_min = rtt_min < 0.0 || rtt[i] < rtt_min ? rtt[i] : rtt_min;
        }
    if (split)
        st = open_estimate(s, &base, err, errlen);
    part_decision best = {0};
    uint32_t best_i = 0;
    bool have_best = false;
    for (uint32_t i = 0; st == HINGE_OK && i < n; i++) {
        bool remote = split && in[i].have_edge;
        if (!remote && have_best)
            continue;
        part_channel live = base.live;
        live.rtt_s += rtt[i] - rtt_min;
        if (i == (uint32_t)s->edge_i && base.load.queue_us >= 0) /* the estimate is of the first edge */
            in[i].load.queue_us = base.load.queue_us;
        part_edge_load load = in[i].load;
        part_inputs pi = {.model = &in[0].pm, .device = &in[0].dev, .edge = remote ? &in[i].edge : NULL,
                          .load = load, .channel = remote ? &live : NULL,
                          .req = {.prompt_len = n_prompt, .new_tokens = c->max_new_hint ? c->max_new_hint : 64},
                          .pol = policy(c, &in[0].priv)};
        if (c->codecs)
            st = part_codec_mask_parse(c->codecs, &pi.pol.codec_mask, err, errlen);
        part_decision d;
        if (st == HINGE_OK)
            st = part_decide(&pi, NULL, 0, &d, err, errlen);
        if (st == HINGE_ERR_RANGE && (have_best || i + 1 < n)) { /* nothing feasible with this edge (or none) */
            st = HINGE_OK;
            continue;
        }
        if (st == HINGE_OK && remote && n > 1)
            hinge_log(&s->lg, HINGE_LOG_INFO, "edge %s: round trip %.2f ms, %u steps queued: k=%u, objective %.4f",
                      s->edges[i], rtt[i] * 1e3, load.queued_steps, d.cut, d.chosen.objective);
        if (st == HINGE_OK && (!have_best || d.chosen.objective < best.chosen.objective)) {
            best = d;
            best_i = i;
            have_best = true;
            s->remote = remote && d.cut < in[0].pm.n_layer;
        }
    }
    if (st == HINGE_OK) {
        s->cut = best.cut;
        s->codec = best.codec == PART_CODEC_NONE ? TX_CODEC_F32 : (tx_codec)best.codec;
        if (n > 1 && s->remote)
            choose_edge(s, best_i, clients, n);
        if (s->remote && (s->ai = malloc(sizeof *s->ai))) /* kept to decide again (re-cut) */
            *s->ai = in[best_i];
        s->stats.first_cut = (int)best.cut;
        hinge_log(&s->lg, HINGE_LOG_INFO, "HINGE_CUT_AUTO chose k=%u, %s%s%s (predicted TTFT %.1f ms, %.2f ms per "
                  "token, channel %s)", best.cut, part_codec_name(best.codec), s->remote ? " on " : "",
                  s->remote ? s->edge_url : "", best.chosen.ttft_s * 1e3, best.chosen.tpot_s * 1e3,
                  split ? base.live.name : "none");
    } else
        s->remote = false;
    if (n > 1 && !(st == HINGE_OK && s->remote)) /* keep only the session's own client */
        for (uint32_t j = 0; j < n; j++)
            if (clients[j] != s->client)
                tx_client_destroy(clients[j]);
    if (!s->remote) { /* local: no step will tell anything about the link */
        part_chan_est_destroy(s->est);
        s->est = NULL;
    }
    free(in);
    free(clients);
    free(rtt);
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

/* Re-cut: every RECONSIDER_STEPS decode steps the decision is made again
 * for the tokens left, with the live channel estimate; another cut is
 * taken when its whole cost (the move: the prefix replayed at the new cut,
 * then its decode steps) beats staying by RECUT_MARGIN. The margin and the
 * wait between two looks are the hysteresis: a cut does not flap on noise. */
enum { RECONSIDER_STEPS = 8 };
static const double RECUT_MARGIN = 0.25;

void auto_reconsider(hinge_session *s)
{
    /* a private head's device layers are two ranges: a re-cut would have to move
     * both; the first decision stands */
    if (!s->ai || !s->est || !s->sess || s->pj || ++s->since_recut < RECONSIDER_STEPS)
        return;
    s->since_recut = 0;
    const hinge_session_config *c = &s->cfg;
    auto_inputs *in = s->ai;
    uint32_t n_layer = in->pm.n_layer;
    uint32_t left = s->left ? s->left : c->max_new_hint ? c->max_new_hint : 64;
    if (left < 2 * RECONSIDER_STEPS)
        return; /* too few tokens left to pay for a move */
    part_channel live;
    part_chan_est_get(s->est, &live);
    part_edge_load load = in->load;
    if (part_chan_est_queue_us(s->est) >= 0)
        load.queue_us = part_chan_est_queue_us(s->est);
    part_inputs pi = {.model = &in->pm, .device = &in->dev, .edge = &in->edge, .load = load, .channel = &live,
                      .req = {.prompt_len = s->pos, .new_tokens = left},
                      .pol = policy(c, &in->priv)};
    char err[HINGE_ERRMSG_MAX];
    part_prediction *table = calloc(n_layer + 1, sizeof *table);
    part_decision d;
    hinge_status st = table ? HINGE_OK : HINGE_ERR_NOMEM;
    if (st == HINGE_OK && c->codecs)
        st = part_codec_mask_parse(c->codecs, &pi.pol.codec_mask, err, sizeof err);
    if (st == HINGE_OK)
        st = part_decide(&pi, table, n_layer + 1, &d, err, sizeof err);
    double stay = st == HINGE_OK ? left * table[s->cut].tpot_s : 0.0;
    free(table);
    if (st != HINGE_OK || d.cut == s->cut || !(d.chosen.total_s < (1.0 - RECUT_MARGIN) * stay))
        return;
    hinge_log(&s->lg, HINGE_LOG_INFO, "re-cut: k=%u predicts %.1f ms for the %u tokens left (the move included), "
              "k=%u %.1f ms (channel now %.1f ms round trip, %.1f Mbit/s up)", d.cut, d.chosen.total_s * 1e3, left,
              s->cut, stay * 1e3, live.rtt_s * 1e3, live.up_bps * 1e-6);
    tx_codec codec = d.codec == PART_CODEC_NONE ? TX_CODEC_F32 : (tx_codec)d.codec;
    if ((st = recut(s, d.cut, codec)) != HINGE_OK && (st = recover(s, st)) != HINGE_OK)
        hinge_log(&s->lg, HINGE_LOG_ERROR, "re-cut to k=%u failed and nothing recovered: %s", d.cut, s->err);
}

void auto_finish(hinge_session *s)
{
    free(s->ai);
    s->ai = NULL;
    if (!s->est)
        return;
    char err[HINGE_ERRMSG_MAX];
    if (s->cfg.channel_cache && part_chan_est_steps(s->est) > 0 &&
        part_chan_est_save(s->est, s->cfg.channel_cache, err, sizeof err) != HINGE_OK)
        hinge_log(&s->lg, HINGE_LOG_WARN, "cannot keep the channel estimate: %s", err);
    part_chan_est_destroy(s->est);
    s->est = NULL;
}
