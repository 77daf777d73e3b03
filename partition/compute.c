/* Device and edge profiles: profiles/devices/, profiles/edges/
 * (docs/partitioning.md has the format). A profile costs a model either
 * from its "measured" block (`hinge profile`: per-layer times of one model)
 * or from its "roofline" block (published peak FLOP/s and bandwidth with
 * achieved fractions); it may hold both. */
#include <stdlib.h>
#include <string.h>

#include "partition.h"
#include "profile_json.h"

static const char *const top_keys[] = {
    "kind", "name", "description", "notes", "roofline", "measured", "memory_available_mb", "kv_bytes_per_elem",
    "power_compute_w", "power_tx_w", "power_rx_w", "power_idle_w", "request_overhead_us", "setup_overhead_us",
    NULL};
static const char *const roof_keys[] = {"peak_tflops", "mem_bw_gbytes_s", "compute_efficiency",
                                        "memory_efficiency", "layer_overhead_us", "prefill_chunk", NULL};
static const char *const meas_keys[] = {"source", "tool", "engine", "threads", "model", "contexts",
                                        "embed_us_per_pos", "step_us", "head_us", "head_first_touch_us",
                                        "encode_us_per_pos", "layers", NULL};
static const char *const layer_keys[] = {"prefill_us_per_pass", "prefill_us_per_pos", "prefill_us_per_attended",
                                         "decode_us", "decode_us_per_attended", "first_touch_us", NULL};

static const pj_range r_pos = {.lo = 0, .hi = 1e12, .lo_open = true};
static const pj_range r_nonneg = {.lo = 0, .hi = 1e12};
static const pj_range r_frac = {.lo = 0, .hi = 1, .lo_open = true};
static const pj_range r_us = {.lo = 0, .hi = 1e9};

static hinge_status read_roofline(const pj_ctx *c, json_t *o, part_roofline *r)
{
    static const pj_range chunk = {.lo = 1, .hi = 1 << 20};
    double tf = 0, bw = 0, ec = 0, em = 0, ov = 0, ch = 0;
    hinge_status s = pj_known_keys(c, o, "roofline", roof_keys);
    if (s == HINGE_OK)
        s = pj_figure(c, o, "roofline", "peak_tflops", true, &r_pos, 0, &tf);
    if (s == HINGE_OK)
        s = pj_figure(c, o, "roofline", "mem_bw_gbytes_s", true, &r_pos, 0, &bw);
    if (s == HINGE_OK)
        s = pj_figure(c, o, "roofline", "compute_efficiency", true, &r_frac, 0, &ec);
    if (s == HINGE_OK)
        s = pj_figure(c, o, "roofline", "memory_efficiency", true, &r_frac, 0, &em);
    if (s == HINGE_OK)
        s = pj_figure(c, o, "roofline", "layer_overhead_us", true, &r_us, 0, &ov);
    if (s == HINGE_OK)
        s = pj_figure(c, o, "roofline", "prefill_chunk", false, &chunk, PART_DEFAULT_MAX_STEP, &ch);
    if (s != HINGE_OK)
        return s;
    *r = (part_roofline){.present = true, .flops_per_s = tf * 1e12, .mem_bytes_per_s = bw * 1e9,
                         .eff_compute = ec, .eff_memory = em, .layer_overhead_us = ov, .prefill_chunk = (uint32_t)ch};
    return HINGE_OK;
}

static hinge_status read_layer(const pj_ctx *c, json_t *o, size_t i, part_layer_cost *l)
{
    char path[48];
    snprintf(path, sizeof path, "measured.layers[%zu]", i);
    if (!json_is_object(o))
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field '%s' is not an object", c->file, path);
    hinge_status s = pj_known_keys(c, o, path, layer_keys);
    if (s == HINGE_OK)
        s = pj_number(c, o, path, "prefill_us_per_pass", false, &r_us, 0, &l->prefill_us_per_pass);
    if (s == HINGE_OK)
        s = pj_number(c, o, path, "prefill_us_per_pos", true, &r_us, 0, &l->prefill_us_per_pos);
    if (s == HINGE_OK)
        s = pj_number(c, o, path, "prefill_us_per_attended", true, &r_us, 0, &l->prefill_us_per_attended);
    if (s == HINGE_OK)
        s = pj_number(c, o, path, "decode_us", true, &r_us, 0, &l->decode_us);
    if (s == HINGE_OK)
        s = pj_number(c, o, path, "decode_us_per_attended", true, &r_us, 0, &l->decode_us_per_attended);
    if (s == HINGE_OK)
        s = pj_number(c, o, path, "first_touch_us", false, &r_us, 0, &l->first_touch_us);
    return s;
}

static hinge_status read_model_id(const pj_ctx *c, json_t *mo, part_measured *m)
{
    static const pj_range layers = {.lo = 1, .hi = PART_MAX_LAYERS};
    static const pj_range width = {.lo = 1, .hi = 1 << 20};
    const char *sha = NULL, *name = NULL;
    double nl = 0, ne = 0;
    hinge_status s = pj_string(c, mo, "measured.model", "sha256", false, &sha);
    if (s == HINGE_OK)
        s = pj_string(c, mo, "measured.model", "name", false, &name);
    if (s == HINGE_OK)
        s = pj_number(c, mo, "measured.model", "n_layer", true, &layers, 0, &nl);
    if (s == HINGE_OK)
        s = pj_number(c, mo, "measured.model", "n_embd", true, &width, 0, &ne);
    if (s == HINGE_OK && sha && *sha && (strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64))
        s = hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT,
                       "%s: field 'measured.model.sha256' is not 64 lowercase hex digits", c->file);
    if (s != HINGE_OK)
        return s;
    pj_copy(m->model_sha256, sizeof m->model_sha256, sha);
    m->n_layer = (uint32_t)nl;
    m->n_embd = (uint32_t)ne;
    return HINGE_OK;
}

static hinge_status read_encode(const pj_ctx *c, json_t *mo, part_measured *m)
{
    json_t *enc = NULL;
    hinge_status s = pj_object(c, mo, "measured", "encode_us_per_pos", false, &enc);
    for (int k = PART_CODEC_F32; s == HINGE_OK && enc && k <= PART_CODEC_Q8; k++)
        s = pj_number(c, enc, "measured.encode_us_per_pos", part_codec_name((part_codec)k), false, &r_us, 0,
                      &m->encode_us_per_pos[k]);
    return s;
}

static hinge_status read_measured(const pj_ctx *c, json_t *mo, part_measured *m)
{
    const char *src;
    json_t *model_obj = NULL;
    hinge_status s = pj_known_keys(c, mo, "measured", meas_keys);
    if (s == HINGE_OK)
        s = pj_string(c, mo, "measured", "source", true, &src);
    if (s == HINGE_OK)
        s = pj_object(c, mo, "measured", "model", true, &model_obj);
    if (s == HINGE_OK)
        s = read_model_id(c, model_obj, m);
    if (s == HINGE_OK)
        s = pj_number(c, mo, "measured", "embed_us_per_pos", true, &r_us, 0, &m->embed_us_per_pos);
    if (s == HINGE_OK)
        s = pj_number(c, mo, "measured", "step_us", false, &r_us, 0, &m->step_us);
    if (s == HINGE_OK)
        s = pj_number(c, mo, "measured", "head_us", true, &r_us, 0, &m->head_us);
    if (s == HINGE_OK)
        s = pj_number(c, mo, "measured", "head_first_touch_us", false, &r_us, 0, &m->head_first_touch_us);
    if (s == HINGE_OK)
        s = read_encode(c, mo, m);
    if (s != HINGE_OK)
        return s;
    json_t *layers = json_object_get(mo, "layers");
    if (!json_is_array(layers) || json_array_size(layers) != m->n_layer)
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT,
                          "%s: field 'measured.layers' must be an array of measured.model.n_layer = %u objects",
                          c->file, m->n_layer);
    for (size_t i = 0; s == HINGE_OK && i < m->n_layer; i++)
        s = read_layer(c, json_array_get(layers, i), i, &m->layer[i]);
    m->present = s == HINGE_OK;
    return s;
}

/* Memory, KV element size, power and protocol overheads. */
static hinge_status read_scalars(const pj_ctx *c, json_t *j, part_role role, part_compute *p)
{
    static const pj_range kv = {.lo = 0.5, .hi = 8};
    bool dev = role == PART_ROLE_DEVICE;
    double mb = 0;
    hinge_status s = pj_figure(c, j, "", "memory_available_mb", dev, &r_pos, 0, &mb);
    p->mem_bytes = mb * 1048576.0;
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "kv_bytes_per_elem", false, &kv, 4, &p->kv_elem_bytes);
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "power_compute_w", dev, &r_nonneg, 0, &p->power_compute_w);
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "power_tx_w", dev, &r_nonneg, 0, &p->power_tx_w);
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "power_rx_w", false, &r_nonneg, p->power_tx_w, &p->power_rx_w);
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "power_idle_w", false, &r_nonneg, 0, &p->power_idle_w);
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "request_overhead_us", false, &r_us, dev ? 500 : 0, &p->request_overhead_us);
    if (s == HINGE_OK)
        s = pj_figure(c, j, "", "setup_overhead_us", false, &r_us, dev ? 5000 : 0, &p->setup_overhead_us);
    return s;
}

static hinge_status read_compute(const pj_ctx *c, json_t *j, part_role role, part_compute *p)
{
    const char *want = role == PART_ROLE_DEVICE ? "device" : "edge";
    const char *kind = NULL, *name = NULL;
    json_t *roof = NULL, *meas = NULL;
    hinge_status s = pj_known_keys(c, j, "", top_keys);
    if (s == HINGE_OK)
        s = pj_string(c, j, "", "kind", true, &kind);
    if (s == HINGE_OK && strcmp(kind, want) != 0)
        s = hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field 'kind' is \"%s\", expected \"%s\"", c->file,
                       kind, want);
    if (s == HINGE_OK)
        s = pj_string(c, j, "", "name", true, &name);
    if (s == HINGE_OK)
        s = pj_object(c, j, "", "roofline", false, &roof);
    if (s == HINGE_OK)
        s = pj_object(c, j, "", "measured", false, &meas);
    if (s == HINGE_OK && !roof && !meas)
        s = hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT,
                       "%s: field 'roofline' is missing (a profile needs 'roofline' or 'measured')", c->file);
    if (s == HINGE_OK && roof)
        s = read_roofline(c, roof, &p->roof);
    if (s == HINGE_OK && meas)
        s = read_measured(c, meas, &p->meas);
    if (s == HINGE_OK)
        s = read_scalars(c, j, role, p);
    if (s == HINGE_OK) {
        pj_copy(p->name, sizeof p->name, name);
        p->role = role;
    }
    return s;
}

hinge_status part_compute_parse(const char *text, size_t len, const char *name, part_role role, part_compute *out,
                                char *err, size_t errlen)
{
    pj_ctx c = {.file = name ? name : "profile", .err = err, .errlen = errlen};
    part_compute *p = calloc(1, sizeof *p);
    if (!p)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "%s: out of memory", c.file);
    json_t *j = NULL;
    hinge_status s = pj_parse(&c, text, len, &j);
    if (s == HINGE_OK)
        s = read_compute(&c, j, role, p);
    json_decref(j);
    if (s == HINGE_OK)
        *out = *p;
    free(p);
    return s;
}

hinge_status part_compute_load(const char *path, part_role role, part_compute *out, char *err, size_t errlen)
{
    char *text;
    size_t len;
    hinge_status s = pj_read_file(path, &text, &len, err, errlen);
    if (s != HINGE_OK)
        return s;
    s = part_compute_parse(text, len, path, role, out, err, errlen);
    free(text);
    return s;
}

hinge_status part_compute_check(const part_compute *c, const part_model *m, char *err, size_t errlen)
{
    const part_measured *me = &c->meas;
    bool same = me->present && me->n_layer == m->n_layer && me->n_embd == m->n_embd &&
                (!me->model_sha256[0] || !m->sha256[0] || strcmp(me->model_sha256, m->sha256) == 0);
    if (same || c->roof.present)
        return HINGE_OK;
    if (!me->present)
        return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED, "profile '%s' has neither measured costs nor a roofline",
                          c->name);
    return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED,
                      "profile '%s' was measured on another model (%u layers, width %u, sha256 %.12s) than '%s' "
                      "(%u layers, width %u, sha256 %.12s) and has no roofline",
                      c->name, me->n_layer, me->n_embd, me->model_sha256, m->name, m->n_layer, m->n_embd, m->sha256);
}
