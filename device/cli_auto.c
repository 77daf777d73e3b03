/* hinge generate --cut auto: see cli_auto.h. */
#include "cli_auto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "partition.h"

struct cut_auto {
    part_chan_est *est;
    char path[1024]; /* where the estimate is kept: ~/.cache/hinge/channel/<host>_<port>.json */
};

/* ~/.cache/hinge/channel/<authority>.json for the edge URL, with every
 * character outside [A-Za-z0-9.-] of the authority turned into '_'. */
static void estimate_path(const char *url, char *out, size_t cap)
{
    const char *home = getenv("HINGE_CACHE");
    char base[512];
    if (home && *home)
        snprintf(base, sizeof base, "%s/channel", home);
    else
        snprintf(base, sizeof base, "%s/.cache/hinge/channel", getenv("HOME") ? getenv("HOME") : ".");
    const char *a = strstr(url, "://");
    a = a ? a + 3 : url;
    char auth[256];
    size_t n = 0;
    for (; *a && *a != '/' && n + 1 < sizeof auth; a++)
        auth[n++] = ((*a >= 'a' && *a <= 'z') || (*a >= 'A' && *a <= 'Z') || (*a >= '0' && *a <= '9') || *a == '.' ||
                     *a == '-') ? *a : '_';
    auth[n] = '\0';
    snprintf(out, cap, "%s/%s.json", base, auth);
}

static int load_inputs(const engine *e, const opts *o, part_model *pm, part_compute *dev, part_compute *edge,
                       part_channel *prior)
{
    char err[HINGE_ERRMSG_MAX] = "";
    hinge_status s = part_model_from_gguf(e->m, pm, err, sizeof err);
    if (s == HINGE_OK)
        s = part_compute_load(o->device_profile, PART_ROLE_DEVICE, dev, err, sizeof err);
    if (s == HINGE_OK)
        s = part_compute_check(dev, pm, err, sizeof err);
    if (s == HINGE_OK && o->edge_profile)
        s = part_compute_load(o->edge_profile, PART_ROLE_EDGE, edge, err, sizeof err);
    if (s == HINGE_OK && o->edge_profile)
        s = part_compute_check(edge, pm, err, sizeof err);
    if (s == HINGE_OK && o->edge)
        s = part_channel_load(o->channel, prior, err, sizeof err);
    if (s != HINGE_OK) {
        fprintf(stderr, "hinge: --cut auto: %s (%s)\n", err, hinge_strerror(s));
        return -1;
    }
    return 0;
}

/* The reply of GET /v1/profile: the edge must serve our model; its load
 * into *load, and its profile into *edge unless have_edge (--edge-profile). */
static hinge_status read_edge(const char *text, size_t len, const engine *e, const part_model *pm, bool have_edge,
                              part_compute *edge, part_edge_load *load, char *err, size_t errlen)
{
    json_t *j = json_loadb(text, len, 0, NULL);
    const char *theirs = json_string_value(json_object_get(json_object_get(j, "model"), "sha256"));
    char ours[65];
    for (int i = 0; i < 32; i++)
        snprintf(ours + 2 * i, 3, "%02x", e->m->sha256[i]);
    hinge_status s = HINGE_OK;
    if (!j)
        s = hinge_fail(err, errlen, HINGE_ERR_PROTOCOL, "the edge's /v1/profile is not JSON");
    else if (!theirs)
        s = hinge_fail(err, errlen, HINGE_ERR_PROTOCOL, "the edge's /v1/profile has no model.sha256");
    else if (strcmp(theirs, ours) != 0)
        s = hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED, "the edge serves another model (sha256 %.12s, ours %.12s)",
                       theirs, ours);
    if (s == HINGE_OK)
        s = part_edge_load_parse(text, len, load, err, errlen);
    json_t *prof = json_object_get(j, "profile");
    if (s == HINGE_OK && !have_edge && !json_is_object(prof))
        s = hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED, "the edge serves no profile: start hinge-edge with "
                       "--profile FILE, or give --edge-profile FILE");
    char *ptext = s == HINGE_OK && !have_edge ? json_dumps(prof, JSON_COMPACT) : NULL;
    if (s == HINGE_OK && !have_edge && !ptext)
        s = hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    if (s == HINGE_OK && ptext)
        s = part_compute_parse(ptext, strlen(ptext), "the edge's /v1/profile", PART_ROLE_EDGE, edge, err, errlen);
    if (s == HINGE_OK && ptext)
        s = part_compute_check(edge, pm, err, errlen);
    free(ptext);
    json_decref(j);
    return s;
}

/* Asks the edge for GET /v1/profile (read_edge). 1: the edge cannot be
 * reached (a warning on stderr); -1: a message is on stderr. */
static int fetch_edge(tx_client *cl, const engine *e, const part_model *pm, bool have_edge, part_compute *edge,
                      part_edge_load *load)
{
    char err[HINGE_ERRMSG_MAX] = "", *text = NULL;
    size_t len = 0;
    hinge_status s = tx_client_profile(cl, &text, &len, err, sizeof err);
    if (s == HINGE_ERR_NETWORK) { /* no connection, timeout, or a TLS peer we do not trust */
        fprintf(stderr, "hinge: warning: --cut auto: the edge cannot be reached (%s): running locally\n", err);
        return 1;
    }
    if (s == HINGE_OK)
        s = read_edge(text, len, e, pm, have_edge, edge, load, err, sizeof err);
    free(text);
    if (s != HINGE_OK) {
        fprintf(stderr, "hinge: --cut auto: %s (%s)\n", err, hinge_strerror(s));
        return -1;
    }
    return 0;
}

static int decide(const opts *o, const part_inputs *in, gen_config *gc)
{
    char err[HINGE_ERRMSG_MAX] = "";
    part_decision d;
    hinge_status s = part_decide(in, NULL, 0, &d, err, sizeof err);
    if (s != HINGE_OK) {
        fprintf(stderr, "hinge: --cut auto: %s (%s)\n", err, hinge_strerror(s));
        return -1;
    }
    gc->cut = d.cut;
    gc->codec = d.codec == PART_CODEC_NONE ? TX_CODEC_F32 : (tx_codec)d.codec;
    if (d.cut == in->model->n_layer)
        gc->edge_url = NULL; /* fully local: no edge session at all */
    if (o->verbose)
        fprintf(stderr, "hinge: --cut auto chose k=%u, %s (predicted TTFT %.1f ms, %.2f ms per token, channel %s)\n",
                d.cut, part_codec_name(d.codec), d.chosen.ttft_s * 1e3, d.chosen.tpot_s * 1e3,
                in->channel ? in->channel->name : "none");
    return 0;
}

int cut_auto_decide(const engine *e, const opts *o, uint32_t n_prompt, tx_client *client, gen_config *gc,
                    cut_auto **out)
{
    *out = NULL;
    if (!o->device_profile || (o->edge && !o->channel)) {
        fprintf(stderr, "hinge: --cut auto needs --device FILE, and with --edge also --channel FILE (the prior of "
                        "the live channel estimate; profiles/)\n");
        return -1;
    }
    part_model pm;
    part_compute dev, edge;
    part_channel prior, live;
    part_edge_load load = {.queue_us = -1};
    if (load_inputs(e, o, &pm, &dev, &edge, &prior) != 0)
        return -1;
    int reach = o->edge ? fetch_edge(client, e, &pm, o->edge_profile != NULL, &edge, &load) : 1;
    if (reach < 0)
        return -1;
    part_inputs in = {.model = &pm, .device = &dev, .edge = reach == 0 ? &edge : NULL, .load = load,
                      .req = {.prompt_len = n_prompt, .new_tokens = o->n_new ? o->n_new : 1},
                      .pol = {.min_cut = o->min_cut, .mem_cap_bytes = (double)o->mem_cap,
                              .energy_weight = o->energy_weight}};
    char err[HINGE_ERRMSG_MAX] = "";
    const char *codecs = o->codecs ? o->codecs : o->wire; /* --wire with auto: that codec only */
    if (codecs && part_codec_mask_parse(codecs, &in.pol.codec_mask, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "hinge: --codecs: %s\n", err);
        return -1;
    }
    cut_auto *a = NULL;
    if (o->edge) {
        a = calloc(1, sizeof *a);
        part_chan_est_config cc = {.prior = &prior, .request_overhead_us = dev.request_overhead_us};
        if (!a || part_chan_est_create(&cc, &a->est, err, sizeof err) != HINGE_OK) {
            fprintf(stderr, "hinge: --cut auto: %s\n", a ? err : "out of memory");
            free(a);
            return -1;
        }
        estimate_path(o->edge, a->path, sizeof a->path);
        part_chan_est_load(a->est, a->path, err, sizeof err); /* absent or stale: start from the prior */
        part_chan_est_get(a->est, &live);
        in.channel = &live;
        if (part_chan_est_queue_us(a->est) >= 0)
            in.load.queue_us = part_chan_est_queue_us(a->est);
    }
    if (decide(o, &in, gc) != 0) {
        cut_auto_finish(a);
        return -1;
    }
    if (!gc->edge_url) { /* local: no step will tell anything about the link */
        part_chan_est_destroy(a ? a->est : NULL);
        free(a);
        a = NULL;
    }
    *out = a;
    return 0;
}

void cut_auto_observe(cut_auto *a, const gen_timing *t)
{
    if (!a)
        return;
    part_step_obs obs = {.request_us = (uint64_t)(t->tail_s * 1e6), .edge_us = (uint64_t)(t->edge_s * 1e6),
                         .queue_us = (uint64_t)(t->queue_s * 1e6), .uplink_bytes = t->up_bytes,
                         .downlink_bytes = t->down_bytes, .requests = 1};
    part_chan_est_observe(a->est, &obs);
}

void cut_auto_finish(cut_auto *a)
{
    if (!a)
        return;
    char dir[1024], err[HINGE_ERRMSG_MAX];
    snprintf(dir, sizeof dir, "%s", a->path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        char *up = strrchr(dir, '/');
        if (up) { /* .../hinge/channel: make hinge, then channel */
            *up = '\0';
            mkdir(dir, 0700);
            *up = '/';
        }
        mkdir(dir, 0700);
    }
    if (part_chan_est_steps(a->est) > 0 && part_chan_est_save(a->est, a->path, err, sizeof err) != HINGE_OK)
        fprintf(stderr, "hinge: warning: cannot keep the channel estimate: %s\n", err);
    part_chan_est_destroy(a->est);
    free(a);
}
