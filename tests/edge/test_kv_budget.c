/* The edge's KV budget, end to end: a real hinge-edge (h2c on 127.0.0.1)
 * with --kv-budget, driven with raw sessions and step frames.
 *
 *  - Sessions open with their first KV block per layer until the budget is
 *    spent; the next gets 503 with Retry-After (code kv_budget).
 *  - A step whose new blocks do not fit gets 503 with Retry-After and
 *    leaves its session as it was: once another session is closed, the
 *    same step succeeds and samples the token an untroubled session
 *    samples from the same frames.
 *  - /metrics never shows more KV bytes than the budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <hinge/hinge.h>
#include <jansson.h>

#include "edge_proc.h"
#include "transport.h"

#ifndef HINGE_SHARED_DIR
#define HINGE_SHARED_DIR "../shared"
#endif
#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"

/* stories260K: n_embd 64; a 32-position block of one layer is 8 KiB (4 kv
 * heads of 8 dims, keys and values in f32), so a session at cut 1 opens
 * with 32 KiB and the budget takes 3 of them. */
enum { DIM = 64, BUDGET = 100000, MAX_SESS = 8, RESP = 4096, METRICS_MAX = 32768, ROWS = 40 };

typedef struct world {
    edge_proc edge;
    bool up;
    char sha[65];
} world;

static int setup(void **state)
{
    static world w;
    hinge_model *m = NULL;
    if (hinge_model_load(STORIES, &m) != HINGE_OK || hinge_model_sha256(m, w.sha) != HINGE_OK)
        return -1;
    hinge_model_free(m);
    char budget[32];
    snprintf(budget, sizeof budget, "%d", BUDGET);
    const char *bin = getenv("HINGE_EDGE_BIN");
    const char *const extra[] = {"--threads", "1", "--max-sessions", "8", "--kv-budget", budget, "--no-measure", NULL};
    w.up = bin && edge_proc_start(&w.edge, bin, STORIES, false, extra) == 0;
    *state = &w;
    return w.up ? 0 : -1;
}

static int teardown(void **state)
{
    world *w = *state;
    if (w->up)
        assert_int_equal(edge_proc_stop(&w->edge), 0);
    edge_proc_cleanup(&w->edge);
    return 0;
}

static size_t on_header(char *buf, size_t size, size_t n, void *user)
{
    if (size * n >= 12 && strncasecmp(buf, "retry-after:", 12) == 0)
        *(bool *)user = true;
    return size * n;
}

typedef struct body {
    char *p;
    size_t len, cap;
} body;

static size_t on_body(char *buf, size_t size, size_t n, void *user)
{
    body *b = user;
    size_t k = size * n < b->cap - 1 - b->len ? size * n : b->cap - 1 - b->len;
    memcpy(b->p + b->len, buf, k);
    b->len += k;
    b->p[b->len] = '\0';
    return size * n;
}

/* POST: the status; the response in resp, whether Retry-After came. */
static long post(world *w, const char *path, const void *data, size_t len, char *resp, bool *retry_after)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", w->edge.url, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    body b = {.p = resp, .cap = RESP};
    resp[0] = '\0';
    *retry_after = false;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, retry_after);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    long http = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_cleanup(c);
    return http;
}

/* Opens a session at cut 1; the status, the id in id[33]. */
static long open_session(world *w, char *id, bool *retry_after)
{
    char req[256], resp[RESP];
    snprintf(req, sizeof req, "{\"model_sha256\":\"%s\",\"cut\":1,\"codec\":\"f32\",\"ctx\":128}", w->sha);
    long st = post(w, "/v1/sessions", req, strlen(req), resp, retry_after);
    id[0] = '\0';
    json_t *j = json_loads(resp, 0, NULL);
    const char *s = NULL;
    if (st == 201 && j && json_unpack(j, "{s:s}", "id", &s) == 0 && strlen(s) == 32)
        memcpy(id, s, 33);
    else if (st != 201 && !edge_is_error(resp, "kv_budget"))
        fail_msg("session refused with %ld %s", st, resp);
    json_decref(j);
    return st;
}

/* A step of n rows at pos (the same made-up activations for a position
 * whatever the session): the status; the token when 200. */
static long step(world *w, const char *id, uint32_t pos, uint32_t n, int *token, bool *retry_after)
{
    static float x[ROWS * DIM];
    static uint8_t buf[TX_FRAME_HEADER_BYTES + sizeof x];
    for (size_t i = 0; i < (size_t)n * DIM; i++)
        x[i] = 0.02f * (float)(((pos * DIM + i) * 7) % 23) - 0.2f;
    size_t len = 0;
    char err[HINGE_ERRMSG_MAX], path[128], resp[RESP];
    assert_int_equal(tx_frame_encode(TX_CODEC_F32, 0, pos, n, DIM, x, buf, sizeof buf, &len, err, sizeof err),
                     HINGE_OK);
    snprintf(path, sizeof path, "/v1/sessions/%s/steps", id);
    long st = post(w, path, buf, len, resp, retry_after);
    json_t *j = json_loads(resp, 0, NULL);
    json_int_t tok = -1;
    if (st == 200)
        assert_int_equal(json_unpack(j, "{s:I}", "token", &tok), 0);
    else if (st == 503)
        assert_true(edge_is_error(resp, NULL));
    json_decref(j);
    *token = (int)tok;
    return st;
}

static double metric(world *w, const char *name)
{
    static char doc[METRICS_MAX];
    assert_int_equal(edge_req(&w->edge, "GET", "/metrics", NULL, 0, 0, doc, sizeof doc), 200);
    size_t n = strlen(name);
    for (const char *p = doc; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    fail_msg("no %s in /metrics", name);
    return -1;
}

static void close_session(world *w, const char *id)
{
    char path[128], resp[RESP];
    snprintf(path, sizeof path, "/v1/sessions/%s", id);
    assert_int_equal(edge_req(&w->edge, "DELETE", path, NULL, 0, 0, resp, sizeof resp), 204);
}

static void test_budget(void **state)
{
    world *w = *state;
    char ids[MAX_SESS][33], extra[33];
    bool ra = false;
    int n = 0, tok = -1, want = -1;
    while (n < MAX_SESS && open_session(w, ids[n], &ra) == 201)
        n++;
    assert_int_equal(n, 3);
    assert_true(ra);
    double per = metric(w, "hinge_edge_kv_bytes_used") / n;
    assert_true(per > 0 && n * per <= BUDGET && (n + 1) * per > BUDGET);
    assert_int_equal(metric(w, "hinge_edge_kv_bytes_budget"), BUDGET);
    /* positions 0..31 fit the blocks the session opened with; 32..39 need
     * one more per layer, which the budget has not */
    assert_int_equal(step(w, ids[0], 0, 32, &tok, &ra), 200);
    assert_int_equal(step(w, ids[0], 32, 8, &tok, &ra), 503);
    assert_true(ra);
    assert_true(metric(w, "hinge_edge_kv_bytes_used") <= BUDGET);
    assert_true(metric(w, "hinge_edge_kv_refusals_total") >= 2);
    /* room: the refused step runs as if nothing had happened */
    close_session(w, ids[1]);
    close_session(w, ids[2]);
    assert_int_equal(step(w, ids[0], 32, 8, &tok, &ra), 200);
    assert_int_equal(step(w, ids[0], 40, 1, &tok, &ra), 200);
    close_session(w, ids[0]);
    assert_int_equal(open_session(w, extra, &ra), 201);
    assert_int_equal(step(w, extra, 0, 32, &want, &ra), 200);
    assert_int_equal(step(w, extra, 32, 8, &want, &ra), 200);
    assert_int_equal(step(w, extra, 40, 1, &want, &ra), 200);
    assert_int_equal(tok, want);
    assert_true(metric(w, "hinge_edge_kv_bytes_used") <= BUDGET);
    close_session(w, extra);
    assert_int_equal(metric(w, "hinge_edge_kv_bytes_used"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget),
    };
    return cmocka_run_group_tests_name("edge kv budget", tests, setup, teardown);
}
