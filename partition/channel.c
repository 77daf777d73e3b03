/* Channel profiles: profiles/channels/ (docs/partitioning.md).
 *
 *   {"kind": "channel", "name": "lte", "description": "...",
 *    "uplink_mbps": {"value": 8, "source": "..."}, "downlink_mbps": ...,
 *    "rtt_ms": ..., "jitter_ms": ..., "loss": ...}
 *
 * Bandwidths are goodput of the radio link in Mbit/s (> 0), rtt and jitter
 * in milliseconds (>= 0), loss a per-packet probability in [0, 1). */
#include <stdlib.h>
#include <string.h>

#include "partition.h"
#include "profile_json.h"

static const char *const channel_keys[] = {"kind", "name", "description", "notes", "uplink_mbps",
                                           "downlink_mbps", "rtt_ms", "jitter_ms", "loss", NULL};

static hinge_status check_kind(const pj_ctx *c, json_t *j, const char *want)
{
    const char *kind;
    hinge_status s = pj_string(c, j, "", "kind", true, &kind);
    if (s == HINGE_OK && strcmp(kind, want) != 0)
        s = hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field 'kind' is \"%s\", expected \"%s\"", c->file,
                       kind, want);
    return s;
}

static hinge_status read_channel(const pj_ctx *c, json_t *j, part_channel *ch)
{
    static const pj_range bw = {.lo = 0, .hi = 1e7, .lo_open = true};
    static const pj_range ms = {.lo = 0, .hi = 1e5};
    static const pj_range prob = {.lo = 0, .hi = 1, .hi_open = true};
    const char *name;
    double up, down, rtt, jit, loss;
    hinge_status s = check_kind(c, j, "channel");
    if (s == HINGE_OK)
        s = pj_known_keys(c, j, "", channel_keys);
    if (s == HINGE_OK)
        s = pj_string(c, j, "", "name", true, &name);
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "uplink_mbps", true, &bw, 0, &up);
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "downlink_mbps", true, &bw, 0, &down);
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "rtt_ms", true, &ms, 0, &rtt);
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "jitter_ms", true, &ms, 0, &jit);
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "loss", true, &prob, 0, &loss);
    if (s != HINGE_OK)
        return s;
    *ch = (part_channel){.up_bps = up * 1e6, .down_bps = down * 1e6, .rtt_s = rtt * 1e-3, .jitter_s = jit * 1e-3,
                         .loss = loss};
    pj_copy(ch->name, sizeof ch->name, name);
    return HINGE_OK;
}

hinge_status part_channel_parse(const char *text, size_t len, const char *name, part_channel *out, char *err,
                                size_t errlen)
{
    pj_ctx c = {.file = name ? name : "channel profile", .err = err, .errlen = errlen};
    json_t *j = NULL;
    hinge_status s = pj_parse(&c, text, len, &j);
    part_channel ch;
    if (s == HINGE_OK)
        s = read_channel(&c, j, &ch);
    json_decref(j);
    if (s == HINGE_OK)
        *out = ch;
    return s;
}

hinge_status part_channel_load(const char *path, part_channel *out, char *err, size_t errlen)
{
    char *text;
    size_t len;
    hinge_status s = pj_read_file(path, &text, &len, err, errlen);
    if (s != HINGE_OK)
        return s;
    s = part_channel_parse(text, len, path, out, err, errlen);
    free(text);
    return s;
}
