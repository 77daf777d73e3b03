/* The cost model: predictions for one cut k (docs/partitioning.md).
 *
 * A request is one prefill step (P positions: the device runs embed and
 * layers [0, k) on all of them, then sends them in ceil(P / max_step)
 * requests; the edge runs layers [k, N) on each and the head on the last)
 * and n - 1 decode steps (one position each). Per request:
 *   network = RTT + HTTP/2/TLS processing + wire_up / B_up + wire_down / B_down
 *             + expected loss recovery
 *   queue   = the edge's observed wait, or its load times a full step's time
 * k = N is a local run: embed, all layers, head and sampling on the device.
 * A private head J (policy.private_head): the edge runs [k, N - J) and
 * answers each request with a frame of its rows; the device decodes them
 * and runs [N - J, N), the head and the sampler. */
#include <math.h>
#include <string.h>

#include "partition_impl.h"

typedef struct costing {
    const part_inputs *in;
    const part_model *m;
    bool dev_meas, edge_meas; /* cost from the measured block (else the roofline) */
    uint32_t max_step;
} costing;

/* Per-step sums, seconds and bytes. */
typedef struct step_cost {
    part_split sp;
    double up_bytes, down_bytes; /* on the link */
    double air_up_s, air_down_s; /* the device's radio busy sending / receiving */
} step_cost;

bool part_measured_fits(const part_compute *c, const part_model *m)
{
    const part_measured *me = &c->meas;
    return me->present && me->n_layer == m->n_layer && me->n_embd == m->n_embd &&
           (!me->model_sha256[0] || !m->sha256[0] || strcmp(me->model_sha256, m->sha256) == 0);
}

double part_wire_bytes(double payload)
{
    double tls = payload + ceil(payload / PART_TLS_RECORD) * PART_TLS_RECORD_OVH;
    return tls + ceil(tls / PART_SEG_PAYLOAD) * PART_SEG_HEADER;
}

double part_loss_delay_s(const part_channel *ch, double wire)
{
    if (ch->loss <= 0)
        return 0;
    double segs = ceil(wire / (PART_SEG_PAYLOAD + PART_SEG_HEADER));
    double penalty = fmax(2.0 * ch->rtt_s, PART_LOSS_PENALTY_MIN_S);
    return (1.0 - pow(1.0 - ch->loss, segs)) * penalty;
}

/* Roofline seconds of flops and bytes in passes passes. */
static double roof_s(const part_roofline *r, double flops, double bytes, double passes)
{
    double tc = flops / (r->flops_per_s * r->eff_compute);
    double tm = bytes / (r->mem_bytes_per_s * r->eff_memory);
    return fmax(tc, tm) + passes * r->layer_overhead_us * 1e-6;
}

/* Seconds of layer i on n positions from pos0: one pass of n positions
 * (prefill), or n decode steps of one position each (decode). */
static double layer_s(const part_compute *c, bool meas, const part_model *m, uint32_t i, uint32_t pos0, uint32_t n,
                      bool decode)
{
    const part_model_layer *L = &m->layer[i];
    double att = part_attended_sum(L->window, pos0, n);
    if (meas) {
        const part_layer_cost *lc = &c->meas.layer[i];
        double us = decode ? n * lc->decode_us + att * lc->decode_us_per_attended
                           : ceil((double)n / PART_ENGINE_PASS) * lc->prefill_us_per_pass +
                                 n * lc->prefill_us_per_pos + att * lc->prefill_us_per_attended;
        return us * 1e-6;
    }
    const part_roofline *r = &c->roof;
    double passes = decode ? n : ceil((double)n / r->prefill_chunk);
    double flops = n * L->flops_per_pos + att * L->flops_per_attended;
    double bytes = passes * L->weight_bytes + c->kv_elem_bytes * L->kv_elems_per_pos * (att + n);
    return roof_s(r, flops, bytes, passes);
}

static double layers_s(const part_compute *c, bool meas, const part_model *m, uint32_t a, uint32_t b, uint32_t pos0,
                       uint32_t n, bool decode)
{
    double t = 0;
    for (uint32_t i = a; i < b; i++)
        t += layer_s(c, meas, m, i, pos0, n, decode);
    return t;
}

/* Embedding of n positions in passes passes, with the engine's fixed cost
 * per pass. */
static double embed_s(const part_compute *c, bool meas, const part_model *m, uint32_t n, double passes)
{
    if (meas)
        return (n * c->meas.embed_us_per_pos + passes * c->meas.step_us) * 1e-6;
    return roof_s(&c->roof, n * m->embed_flops_per_pos, n * m->embed_row_bytes, passes);
}

/* Final norm, output matrix and sampling of one position. */
static double head_s(const part_compute *c, bool meas, const part_model *m)
{
    if (meas)
        return c->meas.head_us * 1e-6;
    return roof_s(&c->roof, m->head_flops, m->head_weight_bytes + 4.0 * m->n_vocab, 1);
}

/* Encoding n rows into a frame: reading n_embd floats and writing the row. */
static double encode_s(const part_compute *c, bool meas, const part_model *m, part_codec codec, uint32_t n)
{
    if (meas)
        return n * c->meas.encode_us_per_pos[codec] * 1e-6;
    double bytes = n * (4.0 * m->n_embd + part_codec_row_bytes(codec, m->n_embd));
    return roof_s(&c->roof, 3.0 * n * m->n_embd, bytes, 0);
}

/* A full decode step of the edge (layers [0, N) + head at position pos):
 * what each step ahead in its queue costs. */
static double queue_per_request_s(const costing *cx, uint32_t pos)
{
    const part_edge_load *ld = &cx->in->load;
    if (ld->queue_us >= 0)
        return ld->queue_us * 1e-6;
    const part_compute *e = cx->in->edge;
    double full = layers_s(e, cx->edge_meas, cx->m, 0, cx->m->n_layer, pos, 1, true) + head_s(e, cx->edge_meas, cx->m);
    return (ld->queued_steps + 0.5 * ld->running_steps) * full;
}

/* Page faults of a cold start: the first pass over layers [0, k) (and the
 * head at k = N) of a process whose mapped weights are not paged in. */
static double first_touch_s(const costing *cx, uint32_t k)
{
    const part_measured *me = &cx->in->device->meas;
    if (!cx->in->req.cold_start || !cx->dev_meas)
        return 0;
    double us = k == cx->m->n_layer ? me->head_first_touch_us : 0.0;
    for (uint32_t i = 0; i < k; i++)
        us += me->layer[i].first_touch_us;
    return us * 1e-6;
}

/* One HTTP request carrying payload_up bytes of frame (and, with a private
 * head, payload_down bytes of frame back): adds its network and queueing
 * time and its bytes. */
static void add_request(const costing *cx, double payload_up, double payload_down, uint32_t pos, step_cost *sc)
{
    const part_channel *ch = cx->in->channel;
    double up = part_wire_bytes(payload_up + PART_HTTP_REQ_BYTES);
    double down = part_wire_bytes(payload_down > 0 ? payload_down + PART_HTTP_RESP_ROWS_BYTES : PART_HTTP_RESP_BYTES);
    double air_up = up * 8.0 / ch->up_bps, air_down = down * 8.0 / ch->down_bps;
    double proc = (cx->in->device->request_overhead_us + cx->in->edge->request_overhead_us) * 1e-6;
    sc->sp.network_s += ch->rtt_s + proc + air_up + air_down + part_loss_delay_s(ch, up) + part_loss_delay_s(ch, down);
    sc->sp.queue_s += queue_per_request_s(cx, pos);
    sc->up_bytes += up;
    sc->down_bytes += down;
    sc->air_up_s += air_up;
    sc->air_down_s += air_down;
}

/* The prefill step: prompt positions [0, P) in, first token out. */
static void prefill_step(const costing *cx, uint32_t k, part_codec codec, step_cost *sc)
{
    const part_model *m = cx->m;
    const part_compute *d = cx->in->device, *e = cx->in->edge;
    uint32_t P = cx->in->req.prompt_len, N = m->n_layer;
    double passes = ceil((double)P / PART_ENGINE_PASS);
    *sc = (step_cost){0};
    sc->sp.device_s = embed_s(d, cx->dev_meas, m, P, passes) + layers_s(d, cx->dev_meas, m, 0, k, 0, P, false) +
                      first_touch_s(cx, k);
    if (k == N) {
        sc->sp.device_s += head_s(d, cx->dev_meas, m);
        return;
    }
    uint32_t J = cx->in->pol.private_head, end = N - J;
    sc->sp.device_s += encode_s(d, cx->dev_meas, m, codec, P);
    for (uint32_t pos = 0; pos < P; pos += cx->max_step) {
        uint32_t n = P - pos < cx->max_step ? P - pos : cx->max_step;
        add_request(cx, part_frame_bytes(m, codec, n), J ? part_frame_bytes(m, codec, n) : 0, pos, sc);
        sc->sp.edge_s += layers_s(e, cx->edge_meas, m, k, end, pos, n, false);
    }
    if (J) /* decoding the rows back (as dear as encoding them), the private head's layers, the head */
        sc->sp.device_s += encode_s(d, cx->dev_meas, m, codec, P) +
                           layers_s(d, cx->dev_meas, m, end, N, 0, P, false) + head_s(d, cx->dev_meas, m);
    else
        sc->sp.edge_s += head_s(e, cx->edge_meas, m);
}

/* The mean decode step over positions P .. P + n - 2 (position P alone
 * when n = 1). */
static void decode_step(const costing *cx, uint32_t k, part_codec codec, step_cost *sc)
{
    const part_model *m = cx->m;
    const part_compute *d = cx->in->device, *e = cx->in->edge;
    uint32_t P = cx->in->req.prompt_len, N = m->n_layer;
    uint32_t steps = cx->in->req.new_tokens > 1 ? cx->in->req.new_tokens - 1 : 1;
    *sc = (step_cost){0};
    double dev = steps * embed_s(d, cx->dev_meas, m, 1, 1) + layers_s(d, cx->dev_meas, m, 0, k, P, steps, true);
    sc->sp.device_s = dev / steps;
    if (k == N) {
        sc->sp.device_s += head_s(d, cx->dev_meas, m);
        return;
    }
    uint32_t J = cx->in->pol.private_head, end = N - J;
    sc->sp.device_s += encode_s(d, cx->dev_meas, m, codec, 1);
    add_request(cx, part_frame_bytes(m, codec, 1), J ? part_frame_bytes(m, codec, 1) : 0, P + steps / 2, sc);
    sc->sp.edge_s = layers_s(e, cx->edge_meas, m, k, end, P, steps, true) / steps;
    if (J)
        sc->sp.device_s += encode_s(d, cx->dev_meas, m, codec, 1) +
                           layers_s(d, cx->dev_meas, m, end, N, P, steps, true) / steps + head_s(d, cx->dev_meas, m);
    else
        sc->sp.edge_s += head_s(e, cx->edge_meas, m);
}

/* Connection, TLS 1.3 handshake and session open. */
static double setup_s(const costing *cx)
{
    const part_channel *ch = cx->in->channel;
    double up = part_wire_bytes(PART_SETUP_UP_BYTES), down = part_wire_bytes(PART_SETUP_DOWN_BYTES);
    double proc = (cx->in->device->setup_overhead_us + cx->in->edge->setup_overhead_us) * 1e-6;
    return PART_SETUP_RTTS * ch->rtt_s + proc + up * 8.0 / ch->up_bps + down * 8.0 / ch->down_bps +
           part_loss_delay_s(ch, up) + part_loss_delay_s(ch, down);
}

/* Resident device memory at cut k: the weights of layers [0, k), their KV
 * cache for P + n positions, the embedding rows touched (the whole table
 * when the head is tied and runs here), and at k = N the head and logits. */
static double device_mem(const costing *cx, uint32_t k)
{
    const part_model *m = cx->m;
    double ctx = (double)cx->in->req.prompt_len + cx->in->req.new_tokens;
    double rows = fmin(m->embed_table_bytes, ctx * fmax(m->embed_row_bytes, 4096.0));
    double mem = 0;
    uint32_t J = k < m->n_layer ? cx->in->pol.private_head : 0; /* a private head's layers are here too */
    for (uint32_t i = 0; i < m->n_layer; i++)
        if (i < k || i + J >= m->n_layer)
            mem += m->layer[i].weight_bytes + m->layer[i].kv_elems_per_pos * cx->in->device->kv_elem_bytes * ctx;
    if (k < m->n_layer && J)
        return mem + (m->head_tied ? m->head_weight_bytes : rows + m->head_weight_bytes) + 4.0 * m->n_vocab;
    if (k < m->n_layer)
        return mem + rows;
    return mem + (m->head_tied ? m->head_weight_bytes : rows + m->head_weight_bytes) + 4.0 * m->n_vocab;
}

static double energy_j(const part_compute *d, const step_cost *pf, const step_cost *dc, double steps, double total)
{
    double compute = pf->sp.device_s + steps * dc->sp.device_s;
    double air_up = pf->air_up_s + steps * dc->air_up_s, air_down = pf->air_down_s + steps * dc->air_down_s;
    double idle = fmax(0.0, total - compute - air_up - air_down);
    return d->power_compute_w * compute + d->power_tx_w * air_up + d->power_rx_w * air_down + d->power_idle_w * idle;
}

static hinge_status check_inputs(const part_inputs *in, uint32_t k, part_codec c, costing *cx, char *err,
                                 size_t errlen)
{
    if (!in || !in->model || !in->device)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "the partitioner needs a model and a device profile");
    const part_model *m = in->model;
    if (k > m->n_layer)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "cut %u is over the model's %u layers", k, m->n_layer);
    if (k < m->n_layer && (c < PART_CODEC_F32 || c > PART_CODEC_Q8))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "cut %u needs a wire codec (f32, f16, q8)", k);
    if (in->req.prompt_len == 0 || in->req.new_tokens == 0)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "a request needs a prompt and at least one new token");
    if (in->pol.private_head >= m->n_layer)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "a private head of %u layers leaves none of the model's %u "
                          "to the edge", in->pol.private_head, m->n_layer);
    hinge_status s = part_compute_check(in->device, m, err, errlen);
    if (s == HINGE_OK && in->edge)
        s = part_compute_check(in->edge, m, err, errlen);
    if (s != HINGE_OK)
        return s;
    *cx = (costing){.in = in, .m = m, .dev_meas = part_measured_fits(in->device, m),
                    .edge_meas = in->edge && part_measured_fits(in->edge, m),
                    .max_step = in->req.max_step ? in->req.max_step : PART_DEFAULT_MAX_STEP};
    return HINGE_OK;
}

static part_infeasible feasibility(const part_inputs *in, uint32_t k, double mem)
{
    double cap = in->pol.mem_cap_bytes > 0 ? in->pol.mem_cap_bytes : in->device->mem_bytes;
    if (in->pol.mem_cap_bytes > 0 && in->device->mem_bytes > 0 && in->device->mem_bytes < cap)
        cap = in->device->mem_bytes;
    if (k < in->pol.min_cut)
        return PART_BELOW_FLOOR;
    if (in->pol.private_head && k < in->model->n_layer && k + in->pol.private_head > in->model->n_layer)
        return PART_IN_PRIVATE_HEAD;
    if (k < in->model->n_layer && (!in->edge || !in->channel || in->load.draining))
        return PART_NO_EDGE;
    if (cap > 0 && mem > cap)
        return PART_OVER_MEMORY;
    return PART_OK;
}

hinge_status part_predict(const part_inputs *in, uint32_t k, part_codec c, part_prediction *out, char *err,
                          size_t errlen)
{
    costing cx;
    hinge_status s = check_inputs(in, k, c, &cx, err, errlen);
    if (s != HINGE_OK)
        return s;
    uint32_t N = in->model->n_layer;
    bool remote = k < N && in->edge && in->channel;
    part_prediction p = {.cut = k, .codec = k < N ? c : PART_CODEC_NONE};
    p.device_mem_bytes = device_mem(&cx, k);
    p.why = feasibility(in, k, p.device_mem_bytes);
    if (k < N && !remote) { /* no edge: nothing to predict the tail with */
        p.ttft_s = p.tpot_s = p.total_s = p.objective = INFINITY;
        *out = p;
        return HINGE_OK;
    }
    step_cost pf, dc;
    prefill_step(&cx, k, c, &pf);
    decode_step(&cx, k, c, &dc);
    double steps = in->req.new_tokens - 1.0;
    p.setup_s = remote && !in->req.connected ? setup_s(&cx) : 0.0;
    p.ttft = pf.sp;
    p.tpot = dc.sp;
    p.ttft_s = pf.sp.device_s + pf.sp.network_s + pf.sp.edge_s + pf.sp.queue_s;
    p.tpot_s = dc.sp.device_s + dc.sp.network_s + dc.sp.edge_s + dc.sp.queue_s;
    p.total_s = p.setup_s + p.ttft_s + steps * p.tpot_s;
    p.up_bytes = pf.up_bytes + steps * dc.up_bytes;
    p.down_bytes = pf.down_bytes + steps * dc.down_bytes;
    p.energy_j = energy_j(in->device, &pf, &dc, steps, p.total_s);
    p.objective = p.total_s + in->pol.energy_weight * p.energy_j;
    *out = p;
    return HINGE_OK;
}
