/* The edge's load from its GET /v1/profile reply (docs/protocol.md):
 *   {"protocol": "v1", ..., "load": {"queued_steps": 0, "running_steps": 1,
 *    "draining": false, ...}} */
#include <stdlib.h>

#include "partition.h"
#include "profile_json.h"

static hinge_status count(const pj_ctx *c, json_t *load, const char *key, uint32_t *out)
{
    json_t *v = json_object_get(load, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field 'load.%s' is not a count", c->file, key);
    *out = (uint32_t)json_integer_value(v);
    return HINGE_OK;
}

hinge_status part_edge_load_parse(const char *text, size_t len, part_edge_load *out, char *err, size_t errlen)
{
    pj_ctx c = {.file = "edge profile reply", .err = err, .errlen = errlen};
    json_t *j = NULL, *load = NULL;
    part_edge_load ld = {.queue_us = -1};
    hinge_status s = pj_parse(&c, text, len, &j);
    if (s == HINGE_OK)
        s = pj_object(&c, j, "", "load", true, &load);
    if (s == HINGE_OK)
        s = count(&c, load, "queued_steps", &ld.queued_steps);
    if (s == HINGE_OK)
        s = count(&c, load, "running_steps", &ld.running_steps);
    if (s == HINGE_OK) {
        json_t *d = json_object_get(load, "draining");
        if (!json_is_boolean(d))
            s = hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s: field 'load.draining' is not a boolean", c.file);
        else
            ld.draining = json_is_true(d);
    }
    json_decref(j);
    if (s == HINGE_OK)
        *out = ld;
    return s;
}

hinge_status part_edge_load_load(const char *path, part_edge_load *out, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    hinge_status s = pj_read_file(path, &text, &len, err, errlen);
    if (s == HINGE_OK)
        s = part_edge_load_parse(text, len, out, err, errlen);
    free(text);
    return s;
}
