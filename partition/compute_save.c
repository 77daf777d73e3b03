/* Writing a measured device or edge profile (`hinge profile`). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "partition.h"

static json_t *figure(double v, const char *source)
{
    return json_pack("{s:f, s:s}", "value", v, "source", source ? source : "not stated");
}

static json_t *layers_json(const part_measured *me)
{
    json_t *a = json_array();
    for (uint32_t i = 0; a && i < me->n_layer; i++) {
        const part_layer_cost *l = &me->layer[i];
        json_array_append_new(a, json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "prefill_us_per_pass",
                                           l->prefill_us_per_pass, "prefill_us_per_pos", l->prefill_us_per_pos,
                                           "prefill_us_per_attended", l->prefill_us_per_attended, "decode_us",
                                           l->decode_us, "decode_us_per_attended", l->decode_us_per_attended,
                                           "first_touch_us", l->first_touch_us));
    }
    return a;
}

static json_t *measured_json(const part_compute *c, const part_save_info *info)
{
    const part_measured *me = &c->meas;
    json_t *ctxs = json_array();
    for (size_t i = 0; ctxs && i < info->n_contexts; i++)
        json_array_append_new(ctxs, json_integer(info->contexts[i]));
    json_t *enc = json_pack("{s:f, s:f, s:f}", "f32", me->encode_us_per_pos[PART_CODEC_F32], "f16",
                            me->encode_us_per_pos[PART_CODEC_F16], "q8", me->encode_us_per_pos[PART_CODEC_Q8]);
    json_t *model = json_pack("{s:s, s:s, s:I, s:I}", "name", info->model_name ? info->model_name : "",
                              "sha256", me->model_sha256, "n_layer", (json_int_t)me->n_layer, "n_embd",
                              (json_int_t)me->n_embd);
    return json_pack("{s:s, s:s, s:s, s:I, s:o, s:o, s:f, s:f, s:f, s:f, s:o, s:o}", "source", info->source,
                     "tool", "hinge profile", "engine", info->engine ? info->engine : "cpu", "threads",
                     (json_int_t)info->threads, "model", model, "contexts", ctxs, "embed_us_per_pos",
                     me->embed_us_per_pos, "step_us", me->step_us, "head_us", me->head_us, "head_first_touch_us",
                     me->head_first_touch_us, "encode_us_per_pos", enc, "layers", layers_json(me));
}

static int add_scalars(json_t *j, const part_compute *c, const part_save_info *info)
{
    int rc = 0;
    if (c->mem_bytes > 0)
        rc |= json_object_set_new(j, "memory_available_mb", figure(c->mem_bytes / 1048576.0, info->mem_source));
    rc |= json_object_set_new(j, "kv_bytes_per_elem",
                              figure(c->kv_elem_bytes, "the engine's KV cache element (CPU engine: f32)"));
    if (c->role == PART_ROLE_DEVICE) {
        rc |= json_object_set_new(j, "power_compute_w", figure(c->power_compute_w, info->power_source));
        rc |= json_object_set_new(j, "power_tx_w", figure(c->power_tx_w, info->power_source));
        rc |= json_object_set_new(j, "power_rx_w", figure(c->power_rx_w, info->power_source));
        rc |= json_object_set_new(j, "power_idle_w", figure(c->power_idle_w, info->power_source));
    }
    rc |= json_object_set_new(j, "request_overhead_us", figure(c->request_overhead_us, info->overhead_source));
    rc |= json_object_set_new(j, "setup_overhead_us", figure(c->setup_overhead_us, info->overhead_source));
    return rc;
}

hinge_status part_compute_dump(const part_compute *c, const part_save_info *info, char **text, char *err,
                               size_t errlen)
{
    if (!c->meas.present || !info || !info->source)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "only a measured profile with a source is saved");
    json_t *j = json_pack("{s:s, s:s, s:s, s:o}", "kind", c->role == PART_ROLE_DEVICE ? "device" : "edge", "name",
                          c->name, "description", info->description ? info->description : "", "measured",
                          measured_json(c, info));
    char *out = j && add_scalars(j, c, info) == 0
                    ? json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(6) | JSON_PRESERVE_ORDER)
                    : NULL;
    json_decref(j);
    if (!out)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "cannot build the profile");
    *text = out;
    return HINGE_OK;
}

hinge_status part_compute_save(const part_compute *c, const part_save_info *info, const char *path, char *err,
                               size_t errlen)
{
    char *text = NULL;
    hinge_status s = part_compute_dump(c, info, &text, err, errlen);
    if (s != HINGE_OK) {
        char msg[HINGE_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", err ? err : "");
        return hinge_fail(err, errlen, s, "%s: %s", path, msg);
    }
    FILE *fp = fopen(path, "wb");
    size_t len = strlen(text);
    bool ok = fp && fwrite(text, 1, len, fp) == len;
    if (fp && fclose(fp) != 0)
        ok = false;
    free(text);
    if (!ok)
        return hinge_fail(err, errlen, HINGE_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    return HINGE_OK;
}
