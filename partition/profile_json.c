/* Reading profile files: see profile_json.h. */
#include "profile_json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hinge_status pj_read_file(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return hinge_fail(err, errlen, HINGE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(PJ_MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(fp);
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, PJ_MAX_FILE_BYTES + 1, fp);
    bool bad = ferror(fp) != 0;
    fclose(fp);
    hinge_status s = HINGE_OK;
    if (bad)
        s = hinge_fail(err, errlen, HINGE_ERR_IO, "%s: read error", path);
    else if (n > PJ_MAX_FILE_BYTES)
        s = hinge_fail(err, errlen, HINGE_ERR_RANGE, "%s: larger than %d bytes", path, PJ_MAX_FILE_BYTES);
    if (s != HINGE_OK) {
        free(buf);
        return s;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return HINGE_OK;
}

hinge_status pj_parse(const pj_ctx *c, const char *text, size_t len, json_t **out)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: not JSON (line %d, column %d): %s", c->file,
                          je.line, je.column, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: the top level is not an object", c->file);
    }
    *out = j;
    return HINGE_OK;
}

/* "path.key" or "key". */
static void field_name(char *buf, size_t cap, const char *path, const char *key)
{
    snprintf(buf, cap, "%s%s%s", path, *path ? "." : "", key);
}

static bool has_source(json_t *obj)
{
    json_t *s = json_object_get(obj, "source");
    return json_is_string(s) && json_string_length(s) > 0;
}

static bool in_range(double v, const pj_range *r)
{
    if (!isfinite(v))
        return false;
    bool lo_ok = r->lo_open ? v > r->lo : v >= r->lo;
    bool hi_ok = r->hi_open ? v < r->hi : v <= r->hi;
    return lo_ok && hi_ok;
}

hinge_status pj_figure(const pj_ctx *c, json_t *obj, const char *path, const char *key, bool required,
                       const pj_range *r, double dflt, double *out)
{
    char f[160];
    field_name(f, sizeof f, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field '%s' is missing", c->file, f);
        *out = dflt;
        return HINGE_OK;
    }
    json_t *num = v;
    if (json_is_object(v)) {
        num = json_object_get(v, "value");
        if (!has_source(v))
            return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field '%s' has no \"source\" string",
                              c->file, f);
        if (json_object_size(v) != 2)
            return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT,
                              "%s: field '%s' must hold exactly \"value\" and \"source\"", c->file, f);
    } else if (!has_source(obj)) {
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT,
                          "%s: field '%s' is a bare number in an object without a \"source\"", c->file, f);
    }
    if (!json_is_number(num))
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field '%s' is not a number", c->file, f);
    double d = json_number_value(num);
    if (!in_range(d, r))
        return hinge_fail(c->err, c->errlen, HINGE_ERR_RANGE, "%s: field '%s' = %g is outside %s%g, %g%s", c->file,
                          f, d, r->lo_open ? "(" : "[", r->lo, r->hi, r->hi_open ? ")" : "]");
    *out = d;
    return HINGE_OK;
}

hinge_status pj_number(const pj_ctx *c, json_t *obj, const char *path, const char *key, bool required,
                       const pj_range *r, double dflt, double *out)
{
    char f[160];
    field_name(f, sizeof f, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v && !required) {
        *out = dflt;
        return HINGE_OK;
    }
    if (!v)
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field '%s' is missing", c->file, f);
    if (!json_is_number(v))
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field '%s' is not a number", c->file, f);
    double d = json_number_value(v);
    if (!in_range(d, r))
        return hinge_fail(c->err, c->errlen, HINGE_ERR_RANGE, "%s: field '%s' = %g is outside %s%g, %g%s", c->file,
                          f, d, r->lo_open ? "(" : "[", r->lo, r->hi, r->hi_open ? ")" : "]");
    *out = d;
    return HINGE_OK;
}

hinge_status pj_string(const pj_ctx *c, json_t *obj, const char *path, const char *key, bool required,
                       const char **out)
{
    char f[160];
    field_name(f, sizeof f, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v && !required) {
        *out = NULL;
        return HINGE_OK;
    }
    if (!v)
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field '%s' is missing", c->file, f);
    if (!json_is_string(v))
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field '%s' is not a string", c->file, f);
    *out = json_string_value(v);
    return HINGE_OK;
}

hinge_status pj_object(const pj_ctx *c, json_t *obj, const char *path, const char *key, bool required,
                       json_t **out)
{
    char f[160];
    field_name(f, sizeof f, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v && !required) {
        *out = NULL;
        return HINGE_OK;
    }
    if (!v)
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field '%s' is missing", c->file, f);
    if (!json_is_object(v))
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: field '%s' is not an object", c->file, f);
    *out = v;
    return HINGE_OK;
}

hinge_status pj_known_keys(const pj_ctx *c, json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            char f[160];
            field_name(f, sizeof f, path, key);
            return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: unknown field '%s'", c->file, f);
        }
    }
    return HINGE_OK;
}

void pj_copy(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}
