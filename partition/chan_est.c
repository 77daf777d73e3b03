/* The live channel estimate (docs/partitioning.md, "Live estimate").
 *
 * Each step gives y = request_us - edge_us - queue_us - downlink time: the
 * time its requests spent on the link and in HTTP/2/TLS processing. The
 * model is y = a * r + c * x, with r the step's requests and x its uplink
 * bytes on the link: a is RTT + processing per request, c = 8e6 / goodput
 * (us per byte). a and c are the least-squares fit over exponentially
 * weighted sums (newest step weight 1, older ones decayed by 1 - alpha).
 * The prior enters as two pseudo-steps: (r = 1, x = 0, y = a0) with
 * prior_weight, decayed like a real step, so that the RTT soon follows the
 * data; and (r = 0, x = X0, y = c0 * X0) with a small weight that never
 * decays, so that with only decode steps (all of one size, which cannot
 * separate RTT from goodput)
 * the slope stays near the prior's, and large prefills move it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "partition_impl.h"
#include "profile_json.h"

enum { PRIOR_X_BYTES = 65536 };
#define SLOPE_PRIOR_SHARE 0.05 /* the slope pseudo-step's weight, as a share of prior_weight */

typedef struct ew_sums {
    double rr, rx, xx, ry, xy; /* weighted sums of products */
    double w;                  /* total weight */
} ew_sums;

struct part_chan_est {
    part_channel prior;
    double alpha, prior_weight, overhead_us;
    ew_sums s;
    double mad_us;   /* EWMA of |residual| per request */
    double queue_us; /* EWMA of queue_us per request; -1: none */
    uint64_t steps;
};

hinge_status part_chan_est_create(const part_chan_est_config *cfg, part_chan_est **out, char *err, size_t errlen)
{
    double alpha = cfg && cfg->alpha > 0 ? cfg->alpha : 0.1;
    double pw = cfg && cfg->prior_weight > 0 ? cfg->prior_weight : 2.0;
    double ov = cfg ? cfg->request_overhead_us : 0.0;
    if (!(alpha <= 1.0) || !(pw < 1e6) || !(ov >= 0 && ov < 1e9))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "estimator: alpha %g not in (0, 1], prior weight %g or "
                          "overhead %g us out of range", alpha, pw, ov);
    part_chan_est *e = calloc(1, sizeof *e);
    if (!e)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "estimator: out of memory");
    e->prior = cfg && cfg->prior ? *cfg->prior
                                 : (part_channel){.up_bps = 10e6, .down_bps = 10e6, .rtt_s = 0.050};
    e->alpha = alpha;
    e->prior_weight = pw;
    e->overhead_us = ov;
    double a0 = e->prior.rtt_s * 1e6 + ov; /* the intercept pseudo-step, decayed with the data */
    e->s = (ew_sums){.rr = pw, .ry = pw * a0, .w = pw};
    e->queue_us = -1;
    *out = e;
    return HINGE_OK;
}

void part_chan_est_destroy(part_chan_est *e)
{
    free(e);
}

/* a (us per request) and c (us per uplink byte). */
static void solve(const part_chan_est *e, double *a, double *c)
{
    double c0 = 8e6 / e->prior.up_bps;
    double w = e->prior_weight * SLOPE_PRIOR_SHARE, X = PRIOR_X_BYTES;
    double rr = e->s.rr, xx = e->s.xx + w * X * X, rx = e->s.rx;
    double ry = e->s.ry, xy = e->s.xy + w * X * c0 * X;
    double det = rr * xx - rx * rx;
    double sc = c0, sa = rr > 0 ? (ry - rx * c0) / rr : 0;
    if (det > 1e-12 * rr * xx) {
        sa = (ry * xx - rx * xy) / det;
        sc = (rr * xy - rx * ry) / det;
    }
    if (sc < 1e-6) { /* faster than 8 Tbit/s: the fit is noise; keep the intercept honest */
        sc = 1e-6;
        sa = rr > 0 ? (ry - rx * sc) / rr : 0;
    }
    *a = fmax(sa, 0.0);
    *c = sc;
}

void part_chan_est_observe(part_chan_est *e, const part_step_obs *o)
{
    if (o->edge_us + o->queue_us > o->request_us)
        return;
    double r = o->requests ? o->requests : 1;
    double x = part_wire_bytes((double)o->uplink_bytes + r * PART_HTTP_REQ_BYTES);
    double down = part_wire_bytes((double)o->downlink_bytes + r * (PART_HTTP_RESP_BYTES - PART_REPLY_BODY_BYTES));
    double y = (double)(o->request_us - o->edge_us - o->queue_us) - down * 8e6 / e->prior.down_bps;
    double a, c;
    solve(e, &a, &c);
    double resid = fabs(y - a * r - c * x) / r;
    double q = (double)o->queue_us / r;
    double k = 1.0 - e->alpha;
    e->s = (ew_sums){.rr = k * e->s.rr + r * r, .rx = k * e->s.rx + r * x, .xx = k * e->s.xx + x * x,
                     .ry = k * e->s.ry + r * y, .xy = k * e->s.xy + x * y, .w = k * e->s.w + 1};
    e->mad_us = e->steps ? k * e->mad_us + e->alpha * resid : resid;
    e->queue_us = e->queue_us < 0 ? q : k * e->queue_us + e->alpha * q;
    e->steps++;
}

void part_chan_est_get(const part_chan_est *e, part_channel *out)
{
    double a, c;
    solve(e, &a, &c);
    *out = (part_channel){.up_bps = 8e6 / c, .down_bps = e->prior.down_bps,
                          .rtt_s = fmax(a - e->overhead_us, 0.0) * 1e-6, .jitter_s = e->mad_us * 0.5e-6};
    snprintf(out->name, sizeof out->name, "live");
}

double part_chan_est_queue_us(const part_chan_est *e)
{
    return e->queue_us;
}

uint64_t part_chan_est_steps(const part_chan_est *e)
{
    return e->steps;
}

hinge_status part_chan_est_save(const part_chan_est *e, const char *path, char *err, size_t errlen)
{
    json_t *j = json_pack("{s:i, s:{s:f, s:f, s:f, s:f, s:f, s:f}, s:f, s:f, s:I}", "version", 1, "sums", "rr",
                          e->s.rr, "rx", e->s.rx, "xx", e->s.xx, "ry", e->s.ry, "xy", e->s.xy, "w", e->s.w, "mad_us",
                          e->mad_us, "queue_us", e->queue_us, "steps", (json_int_t)e->steps);
    if (!j)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "estimator: cannot build its state");
    int rc = json_dump_file(j, path, JSON_INDENT(1));
    json_decref(j);
    if (rc != 0)
        return hinge_fail(err, errlen, HINGE_ERR_IO, "%s: cannot write the estimator's state", path);
    return HINGE_OK;
}

static hinge_status read_state(const pj_ctx *c, json_t *j, part_chan_est *tmp)
{
    static const pj_range any = {.lo = -1e300, .hi = 1e300};
    static const pj_range nonneg = {.lo = 0, .hi = 1e300};
    static const pj_range q = {.lo = -1, .hi = 1e12};
    json_t *s = NULL;
    double steps = 0;
    hinge_status st = pj_object(c, j, "", "sums", true, &s);
    const char *keys[] = {"rr", "rx", "xx", "ry", "xy", "w"};
    double *dst[] = {&tmp->s.rr, &tmp->s.rx, &tmp->s.xx, &tmp->s.ry, &tmp->s.xy, &tmp->s.w};
    const pj_range *rng[] = {&nonneg, &nonneg, &nonneg, &any, &any, &nonneg}; /* y may be < 0 */
    for (size_t i = 0; st == HINGE_OK && i < 6; i++)
        st = pj_number(c, s, "sums", keys[i], true, rng[i], 0, dst[i]);
    if (st == HINGE_OK)
        st = pj_number(c, j, "", "mad_us", true, &nonneg, 0, &tmp->mad_us);
    if (st == HINGE_OK)
        st = pj_number(c, j, "", "queue_us", true, &q, 0, &tmp->queue_us);
    if (st == HINGE_OK)
        st = pj_number(c, j, "", "steps", true, &nonneg, 0, &steps);
    tmp->steps = (uint64_t)steps;
    return st;
}

hinge_status part_chan_est_load(part_chan_est *e, const char *path, char *err, size_t errlen)
{
    char *text;
    size_t len;
    hinge_status s = pj_read_file(path, &text, &len, err, errlen);
    if (s != HINGE_OK)
        return s;
    pj_ctx c = {.file = path, .err = err, .errlen = errlen};
    json_t *j = NULL;
    part_chan_est tmp = *e;
    s = pj_parse(&c, text, len, &j);
    free(text);
    if (s == HINGE_OK)
        s = read_state(&c, j, &tmp);
    json_decref(j);
    if (s == HINGE_OK)
        *e = tmp;
    return s;
}
