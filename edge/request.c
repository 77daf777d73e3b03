/* Routing and the JSON request parser: see request.h. */
#include "request.h"

#include <math.h>
#include <string.h>

#include <jansson.h>

static bool prefix(const char *p, size_t len, const char *lit, size_t *rest)
{
    size_t n = strlen(lit);
    if (len < n || memcmp(p, lit, n) != 0)
        return false;
    *rest = n;
    return true;
}

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Copies seg[0..n) into sid when it is a well-formed id; "" otherwise. */
static void take_sid(const char *seg, size_t n, char sid[EDGE_SID_MAX])
{
    sid[0] = '\0';
    if (n != EDGE_SID_HEX)
        return;
    for (size_t i = 0; i < n; i++)
        if (!is_lower_hex(seg[i]))
            return;
    memcpy(sid, seg, n);
    sid[n] = '\0';
}

edge_route edge_route_path(const char *path, size_t len, char sid[EDGE_SID_MAX])
{
    sid[0] = '\0';
    const char *q = memchr(path, '?', len);
    if (q)
        len = (size_t)(q - path);
    if (len == 10 && memcmp(path, "/v1/health", 10) == 0)
        return EDGE_ROUTE_HEALTH;
    if (len == 11 && memcmp(path, "/v1/profile", 11) == 0)
        return EDGE_ROUTE_PROFILE;
    if (len == 8 && memcmp(path, "/metrics", 8) == 0)
        return EDGE_ROUTE_METRICS;
    if (len == 15 && memcmp(path, "/v1/completions", 15) == 0)
        return EDGE_ROUTE_OA_COMPLETIONS;
    if (len == 20 && memcmp(path, "/v1/chat/completions", 20) == 0)
        return EDGE_ROUTE_OA_CHAT;
    if (len == 10 && memcmp(path, "/v1/models", 10) == 0)
        return EDGE_ROUTE_OA_MODELS;
    size_t off;
    if (!prefix(path, len, "/v1/sessions", &off))
        return EDGE_ROUTE_NONE;
    if (off == len)
        return EDGE_ROUTE_SESSIONS;
    if (path[off] != '/' || off + 1 == len)
        return EDGE_ROUTE_NONE;
    const char *seg = path + off + 1;
    size_t seg_len = len - off - 1;
    const char *slash = memchr(seg, '/', seg_len);
    if (!slash) {
        take_sid(seg, seg_len, sid);
        return EDGE_ROUTE_SESSION;
    }
    size_t id_len = (size_t)(slash - seg), tail = seg_len - id_len;
    if (tail != 6 || memcmp(slash, "/steps", 6) != 0)
        return EDGE_ROUTE_NONE;
    take_sid(seg, id_len, sid);
    return EDGE_ROUTE_STEPS;
}

void edge_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static hinge_status parse_sha(const json_t *v, uint8_t out[32], char *err, size_t errlen)
{
    const char *s = json_string_value(v);
    if (!s || json_string_length(v) != 64)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "model_sha256 must be a string of 64 hex digits");
    for (size_t i = 0; i < 32; i++) {
        int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "model_sha256 holds a non-hex character");
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return HINGE_OK;
}

/* An integer field in [lo, hi]. */
static hinge_status get_uint(const json_t *v, const char *name, json_int_t lo, json_int_t hi, uint64_t *out,
                             char *err, size_t errlen)
{
    if (!json_is_integer(v))
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s must be an integer", name);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s = %lld is outside [%lld, %lld]", name, (long long)x,
                          (long long)lo, (long long)hi);
    *out = (uint64_t)x;
    return HINGE_OK;
}

/* A number field in [lo, hi]. */
static hinge_status get_real(const json_t *v, const char *name, double lo, double hi, float *out, char *err,
                             size_t errlen)
{
    if (!json_is_number(v))
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s must be a number", name);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s = %g is outside [%g, %g]", name, x, lo, hi);
    *out = (float)x;
    return HINGE_OK;
}

static hinge_status parse_sampling(const json_t *obj, sampler_params *sp, uint64_t *skip, char *err, size_t errlen)
{
    if (!json_is_object(obj))
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "sampling must be an object");
    const char *key;
    const json_t *v;
    hinge_status s = HINGE_OK;
    json_object_foreach((json_t *)obj, key, v) {
        uint64_t u = 0;
        if (strcmp(key, "temp") == 0)
            s = get_real(v, "sampling.temp", 0.0, 100.0, &sp->temp, err, errlen);
        else if (strcmp(key, "top_p") == 0)
            s = get_real(v, "sampling.top_p", 0.0, 1.0, &sp->top_p, err, errlen);
        else if (strcmp(key, "top_k") == 0) {
            s = get_uint(v, "sampling.top_k", 0, INT32_MAX, &u, err, errlen);
            sp->top_k = (uint32_t)u;
        } else if (strcmp(key, "seed") == 0) {
            s = get_uint(v, "sampling.seed", 0, INT64_MAX, &u, err, errlen);
            sp->seed = u;
        } else if (strcmp(key, "skip") == 0)
            s = get_uint(v, "sampling.skip", 0, INT64_MAX, skip, err, errlen);
        else
            s = hinge_fail(err, errlen, HINGE_ERR_FORMAT, "unknown key sampling.%.64s", key);
        if (s != HINGE_OK)
            return s;
    }
    return HINGE_OK;
}

/* One top-level key of the session request. */
static hinge_status parse_field(const char *key, const json_t *v, edge_session_req *r, unsigned *seen,
                                char *err, size_t errlen)
{
    uint64_t u = 0;
    hinge_status s;
    if (strcmp(key, "model_sha256") == 0) {
        *seen |= 1;
        return parse_sha(v, r->model_sha256, err, errlen);
    }
    if (strcmp(key, "cut") == 0) {
        *seen |= 2;
        s = get_uint(v, "cut", 0, EDGE_REQ_MAX_CUT, &u, err, errlen);
        r->cut = (uint32_t)u;
        return s;
    }
    if (strcmp(key, "codec") == 0) {
        *seen |= 4;
        if (!json_is_string(v) || tx_codec_parse(json_string_value(v), &r->codec) != HINGE_OK)
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "codec must be \"f32\", \"f16\" or \"q8\"");
        return HINGE_OK;
    }
    if (strcmp(key, "ctx") == 0) {
        *seen |= 8;
        s = get_uint(v, "ctx", 1, EDGE_REQ_MAX_CTX, &u, err, errlen);
        r->ctx = (uint32_t)u;
        return s;
    }
    if (strcmp(key, "max_step") == 0) {
        s = get_uint(v, "max_step", 0, EDGE_REQ_MAX_CTX, &u, err, errlen);
        r->max_step = (uint32_t)u;
        return s;
    }
    if (strcmp(key, "private_head") == 0) { /* against the model's layers in session.c */
        s = get_uint(v, "private_head", 0, EDGE_REQ_MAX_CUT, &u, err, errlen);
        r->private_head = (uint32_t)u;
        return s;
    }
    if (strcmp(key, "sampling") == 0)
        return parse_sampling(v, &r->sampling, &r->skip, err, errlen);
    return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "unknown key %.64s", key);
}

hinge_status edge_parse_session_req(const char *body, size_t len, edge_session_req *out, char *err,
                                    size_t errlen)
{
    if (len > EDGE_JSON_MAX)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "body of %zu bytes, over %d", len, EDGE_JSON_MAX);
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "not JSON: %s at byte %d", je.text, je.position);
    edge_session_req r = {.sampling = {.temp = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0}};
    hinge_status s = HINGE_OK;
    unsigned seen = 0;
    if (!json_is_object(j))
        s = hinge_fail(err, errlen, HINGE_ERR_FORMAT, "body must be a JSON object");
    const char *key;
    json_t *v;
    if (s == HINGE_OK) {
        json_object_foreach(j, key, v) {
            s = parse_field(key, v, &r, &seen, err, errlen);
            if (s != HINGE_OK)
                break;
        }
    }
    if (s == HINGE_OK && seen != 15)
        s = hinge_fail(err, errlen, HINGE_ERR_FORMAT, "model_sha256, cut, codec and ctx are required");
    if (s == HINGE_OK && r.max_step > r.ctx)
        s = hinge_fail(err, errlen, HINGE_ERR_FORMAT, "max_step %u exceeds ctx %u", r.max_step, r.ctx);
    json_decref(j);
    if (s == HINGE_OK)
        *out = r;
    return s;
}

/* ---- UTF-8 ---- */

/* The length of the UTF-8 sequence at p[0..n): 1..4; 0 when it is valid so
 * far but cut by the end; -1 when it is not UTF-8 (overlong, surrogate,
 * beyond U+10FFFF, a stray continuation byte). */
static int utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    int len = c < 0x80 ? 1 : c < 0xC2 ? -1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : -1;
    if (len <= 1)
        return len;
    uint32_t v = c & (0x7Fu >> len);
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n)
            return 0;
        if ((p[i] & 0xC0) != 0x80)
            return -1;
        v = v << 6 | (p[i] & 0x3Fu);
    }
    if ((len == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) || (len == 4 && (v < 0x10000 || v > 0x10FFFF)))
        return -1;
    return len;
}

size_t edge_utf8_clean(const char *in, size_t n, bool final, char *out, size_t *used)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t i = 0, o = 0;
    while (i < n) {
        int len = utf8_seq(p + i, n - i);
        if (len == 0 && !final)
            break;
        if (len <= 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(out + o, p + i, (size_t)len);
        o += (size_t)len;
        i += (size_t)len;
    }
    *used = i;
    return o;
}
