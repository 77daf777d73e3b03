/* Tests of edge/request.c: routing and the POST /v1/sessions parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "request.h"

#define SHA "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"
#define ID "0123456789abcdef0123456789abcdef"

static edge_route route(const char *path, char *sid)
{
    return edge_route_path(path, strlen(path), sid);
}

static void test_routes(void **state)
{
    (void)state;
    char sid[EDGE_SID_MAX];
    assert_int_equal(route("/v1/health", sid), EDGE_ROUTE_HEALTH);
    assert_int_equal(route("/v1/health?x=1", sid), EDGE_ROUTE_HEALTH);
    assert_int_equal(route("/v1/profile", sid), EDGE_ROUTE_PROFILE);
    assert_int_equal(route("/v1/sessions", sid), EDGE_ROUTE_SESSIONS);
    assert_int_equal(route("/v1/sessions/" ID, sid), EDGE_ROUTE_SESSION);
    assert_string_equal(sid, ID);
    assert_int_equal(route("/v1/sessions/" ID "/steps", sid), EDGE_ROUTE_STEPS);
    assert_string_equal(sid, ID);
    /* malformed ids route, but to no session */
    assert_int_equal(route("/v1/sessions/0123/steps", sid), EDGE_ROUTE_STEPS);
    assert_string_equal(sid, "");
    assert_int_equal(route("/v1/sessions/0123456789ABCDEF0123456789abcdef", sid), EDGE_ROUTE_SESSION);
    assert_string_equal(sid, "");
    assert_int_equal(route("/v1/completions", sid), EDGE_ROUTE_OA_COMPLETIONS);
    assert_int_equal(route("/v1/chat/completions", sid), EDGE_ROUTE_OA_CHAT);
    assert_int_equal(route("/v1/models?x", sid), EDGE_ROUTE_OA_MODELS);
    static const char *const none[] = {
        "/v1/completion", "/v1/chat/completions/", "/v1/chat", "/v1/models/x",
        "", "/", "/v1", "/v1/", "/v1/healthz", "/v2/health", "/v1/sessions/", "/v1/sessionsx",
        "/v1/sessions/" ID "/steps/", "/v1/sessions/" ID "/step", "/v1/sessions/" ID "/x/steps", "v1/health",
    };
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        if (route(none[i], sid) != EDGE_ROUTE_NONE)
            fail_msg("'%s' should not route", none[i]);
}

static hinge_status parse(const char *json, edge_session_req *r, char *err)
{
    return edge_parse_session_req(json, strlen(json), r, err, HINGE_ERRMSG_MAX);
}

static void test_parse_ok(void **state)
{
    (void)state;
    edge_session_req r;
    char err[HINGE_ERRMSG_MAX];
    assert_int_equal(parse("{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"q8\",\"ctx\":300,\"max_step\":64,"
                           "\"sampling\":{\"temp\":0.8,\"top_k\":40,\"top_p\":0.95,\"seed\":7}}",
                           &r, err),
                     HINGE_OK);
    assert_int_equal(r.cut, 2);
    assert_int_equal(r.codec, TX_CODEC_Q8);
    assert_int_equal(r.ctx, 300);
    assert_int_equal(r.max_step, 64);
    assert_int_equal(r.sampling.top_k, 40);
    assert_int_equal(r.sampling.seed, 7);
    assert_true(r.sampling.temp == 0.8f && r.sampling.top_p == 0.95f);
    assert_int_equal(r.model_sha256[0], 0x27);
    assert_int_equal(r.model_sha256[31], 0x6d);
    /* sampling and max_step are optional: greedy */
    assert_int_equal(parse("{\"model_sha256\":\"" SHA "\",\"cut\":0,\"codec\":\"f32\",\"ctx\":1}", &r, err), HINGE_OK);
    assert_true(r.sampling.temp == 0.0f && r.sampling.top_p == 1.0f);
    assert_int_equal(r.max_step, 0);
    assert_int_equal(r.private_head, 0);
    assert_int_equal(parse("{\"model_sha256\":\"" SHA "\",\"cut\":1,\"codec\":\"f32\",\"ctx\":8,\"private_head\":3}",
                           &r, err),
                     HINGE_OK);
    assert_int_equal(r.private_head, 3);
}

static void test_parse_rejects(void **state)
{
    (void)state;
    static const struct {
        const char *json, *needle;
    } bad[] = {
        {"", "not JSON"},
        {"[]", "object"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\"}", "required"},
        {"{\"model_sha256\":\"abc\",\"cut\":2,\"codec\":\"f32\",\"ctx\":9}", "64 hex"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":-1,\"codec\":\"f32\",\"ctx\":9}", "cut"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":\"2\",\"codec\":\"f32\",\"ctx\":9}", "cut must be an integer"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"bf16\",\"ctx\":9}", "codec"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\",\"ctx\":0}", "ctx"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\",\"ctx\":99999999999}", "ctx"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\",\"ctx\":9,\"max_step\":10}", "max_step"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\",\"ctx\":9,\"prompt\":\"hi\"}", "unknown key"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\",\"ctx\":9,\"sampling\":{\"temp\":-1}}", "temp"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\",\"ctx\":9,\"sampling\":{\"top_p\":1.5}}", "top_p"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\",\"ctx\":9,\"sampling\":{\"x\":1}}", "unknown key"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\",\"ctx\":9,\"sampling\":[]}", "object"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"cut\":3,\"codec\":\"f32\",\"ctx\":9}", "not JSON"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\",\"ctx\":9,\"private_head\":-1}", "private_head"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\",\"ctx\":9,\"private_head\":\"1\"}", "private_head"},
        {"{\"model_sha256\":\"" SHA "\",\"cut\":2,\"codec\":\"f32\",\"ctx\":9,\"private_head\":99999999}", "private_head"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        edge_session_req r;
        char err[HINGE_ERRMSG_MAX] = "";
        if (parse(bad[i].json, &r, err) != HINGE_ERR_FORMAT)
            fail_msg("accepted: %s", bad[i].json);
        if (!strstr(err, bad[i].needle))
            fail_msg("'%s' -> '%s' lacks '%s'", bad[i].json, err, bad[i].needle);
    }
    char big[EDGE_JSON_MAX + 2];
    memset(big, ' ', sizeof big);
    edge_session_req r;
    char err[HINGE_ERRMSG_MAX];
    assert_int_equal(edge_parse_session_req(big, sizeof big, &r, err, sizeof err), HINGE_ERR_FORMAT);
}

/* clean(in, final) as a string, and the bytes used. */
static size_t clean(const char *in, size_t n, bool final, char *out)
{
    size_t used = 0, len = edge_utf8_clean(in, n, final, out, &used);
    out[len] = '\0';
    return used;
}

static void test_utf8_clean(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(clean("h\xc3\xa9llo", 6, false, out), 6);
    assert_string_equal(out, "h\xc3\xa9llo");
    /* an unfinished character waits for the next token, unless final */
    assert_int_equal(clean("h\xc3", 2, false, out), 1);
    assert_string_equal(out, "h");
    assert_int_equal(clean("\xf0\x9f\x98", 3, false, out), 0);
    assert_int_equal(clean("\xf0\x9f\x98\x80", 4, false, out), 4);
    assert_string_equal(out, "\xf0\x9f\x98\x80");
    assert_int_equal(clean("h\xc3", 2, true, out), 2);
    assert_string_equal(out, "h\xef\xbf\xbd");
    /* not UTF-8: a stray byte, an overlong form, a surrogate, beyond U+10FFFF */
    assert_int_equal(clean("a\xff" "b", 3, false, out), 3);
    assert_string_equal(out, "a\xef\xbf\xbd" "b");
    clean("\xc0\xaf", 2, false, out);
    assert_string_equal(out, "\xef\xbf\xbd\xef\xbf\xbd");
    clean("\xed\xa0\x80", 3, false, out);
    assert_string_equal(out, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    clean("\xf4\x90\x80\x80", 4, false, out);
    assert_int_equal(strlen(out), 12);
    /* whatever the bytes, jansson takes the result as a JSON string */
    uint32_t x = 12345;
    for (int t = 0; t < 20000; t++) {
        char in[16];
        size_t n = (size_t)(t % 16);
        for (size_t i = 0; i < n; i++) {
            x = x * 1664525u + 1013904223u;
            in[i] = (char)(x >> 24);
        }
        char o[3 * sizeof in + 1];
        size_t used = 0, len = edge_utf8_clean(in, n, t % 2 == 0, o, &used);
        json_t *j = json_stringn(o, len);
        if (!j || (t % 2 == 0 && used != n) || n - used > 3)
            fail_msg("case %d: not taken (%zu of %zu bytes used)", t, used, n);
        json_decref(j);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_utf8_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
