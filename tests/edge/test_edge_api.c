/* Integration: a real hinge-edge (TLS, certificate made here) fed bad
 * input of every kind, each answered 4xx/5xx with {"error", "detail"},
 * while a healthy session generates concurrently on its own connection and
 * must produce exactly the tokens of a local run (both generate through
 * libhinge's public API).
 *
 *   HINGE_EDGE_BIN=build/edge/hinge-edge test_edge_api
 *
 * The edge runs with --max-sessions 4 --max-step 16 --stall-timeout-ms 400. */
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include <hinge/hinge.h>

#include "edge_proc.h"
#include "transport.h"

enum { DIM = 64, HEALTHY_N = 1500, HEALTHY_CUT = 2, RESP = 4096 };

typedef struct world world;

/* One generation of HEALTHY_N tokens from BOS at cut HEALTHY_CUT, through
 * libhinge's public API. */
typedef struct healthy {
    world *pace;                 /* paces the tokens and reports progress; NULL: full speed */
    int32_t tokens[HEALTHY_N];   /* each step's sampled token */
    size_t n;
    hinge_stats stats;           /* of the session, before it closed */
    hinge_status status;
    char err[HINGE_ERRMSG_MAX];  /* hinge_last_error() of the generating thread */
} healthy;

struct world {
    const char *edge_bin;
    hinge_model *hm;
    char sha[65];
    edge_proc p;
    healthy ref;               /* local run: the healthy session must match it */
    pthread_t healthy;
    bool healthy_started;
    atomic_bool done;          /* the bad-input tests are over */
    atomic_size_t progress;    /* tokens the healthy session has made */
    healthy got;               /* the run against the edge */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the healthy session ---- */

static void on_step(const hinge_step_info *t, void *user)
{
    healthy *h = user;
    if (h->n < HEALTHY_N)
        h->tokens[h->n++] = t->token;
}

static int on_piece(const char *piece, size_t len, void *user)
{
    (void)piece;
    (void)len;
    healthy *h = user;
    if (!h->pace)
        return 0;
    atomic_fetch_add(&h->pace->progress, 1);
    if (!atomic_load(&h->pace->done))
        usleep(5000); /* at most 7.5 s over the whole run, then full speed once the tests are done */
    return 0;
}

/* url NULL: every layer in this process (the reference). */
static void healthy_run(world *w, const char *url, healthy *h)
{
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.edge_url = url;
    c.ca_file = url ? w->p.cacert : NULL;
    c.cut = HEALTHY_CUT;
    c.wire = HINGE_WIRE_F32;
    c.n_ctx = HEALTHY_N + 1;
    c.n_threads = 1;
    c.ignore_eos = 1;
    hinge_session *s = NULL;
    h->status = hinge_session_create(w->hm, &c, &s);
    if (h->status == HINGE_OK) {
        hinge_session_set_step_cb(s, on_step, h);
        h->status = hinge_generate(s, "", HEALTHY_N, on_piece, h);
        hinge_session_get_stats(s, &h->stats);
    }
    if (h->status != HINGE_OK)
        snprintf(h->err, sizeof h->err, "%s (%s)", hinge_last_error(), hinge_strerror(h->status));
    hinge_session_free(s);
}

static void *healthy_main(void *arg)
{
    world *w = arg;
    w->got.pace = w;
    healthy_run(w, w->p.url, &w->got);
    return NULL;
}

/* ---- helpers ---- */

static long req(world *w, const char *method, const char *path, const void *body, size_t len, char *resp)
{
    return edge_req(&w->p, method, path, body, len, 0, resp, RESP);
}

static void expect(world *w, long want, const char *code, const char *method, const char *path, const void *body,
                   size_t len)
{
    char resp[RESP];
    long got = req(w, method, path, body, len, resp);
    if (got != want || !edge_is_error(resp, code))
        fail_msg("%s %s: got %ld %s; expected %ld %s", method, path, got, resp, want, code);
}

/* Opens a session; returns the HTTP status, the id in id[33]. */
static long open_session(world *w, const char *sha, uint32_t cut, const char *codec, uint32_t ctx, char *id)
{
    char body[512], resp[RESP];
    snprintf(body, sizeof body, "{\"model_sha256\":\"%s\",\"cut\":%u,\"codec\":\"%s\",\"ctx\":%u}", sha, cut, codec,
             ctx);
    long st = req(w, "POST", "/v1/sessions", body, strlen(body), resp);
    id[0] = '\0';
    json_t *j = json_loads(resp, 0, NULL);
    const char *s = NULL;
    if (st == 201 && j && json_unpack(j, "{s:s}", "id", &s) == 0 && strlen(s) == 32)
        memcpy(id, s, 33);
    json_decref(j);
    return st;
}

static size_t frame_flags(tx_codec c, uint16_t flags, uint32_t pos, uint32_t n, uint8_t *buf, size_t cap)
{
    float x[32 * DIM];
    for (size_t i = 0; i < n * DIM; i++)
        x[i] = 0.01f * (float)((i * 7) % 23) - 0.1f;
    size_t len = 0;
    char err[HINGE_ERRMSG_MAX];
    assert_int_equal(tx_frame_encode(c, flags, pos, n, DIM, x, buf, cap, &len, err, sizeof err), HINGE_OK);
    return len;
}

static size_t frame(tx_codec c, uint32_t pos, uint32_t n, uint8_t *buf, size_t cap)
{
    return frame_flags(c, 0, pos, n, buf, cap);
}

static void steps_path(const char *id, char *path)
{
    snprintf(path, 128, "/v1/sessions/%s/steps", id);
}

/* A good step: 200 with a token and the next position. */
/* A step that must succeed; its token. */
static int32_t good_step(world *w, const char *id, uint32_t pos, uint32_t n)
{
    uint8_t buf[TX_FRAME_HEADER_BYTES + 32 * DIM * 4];
    char path[128], resp[RESP];
    steps_path(id, path);
    size_t len = frame(TX_CODEC_F32, pos, n, buf, sizeof buf);
    long st = req(w, "POST", path, buf, len, resp);
    json_t *j = json_loads(resp, 0, NULL);
    json_int_t tok = -2, next = -1;
    if (st != 200 || !j || json_unpack(j, "{s:I, s:I}", "token", &tok, "pos", &next) != 0 || tok < 0 ||
        next != pos + n)
        fail_msg("step at %u: %ld %s", pos, st, resp);
    json_decref(j);
    return (int32_t)tok;
}

/* ---- setup ---- */

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    if (!w || !(w->edge_bin = getenv("HINGE_EDGE_BIN")))
        return -1;
    if (hinge_model_load(HINGE_SHARED_DIR "/models/stories260K.gguf", &w->hm) != HINGE_OK ||
        hinge_model_sha256(w->hm, w->sha) != HINGE_OK) {
        fprintf(stderr, "stories260K: %s\n", hinge_last_error());
        return -1;
    }
    healthy_run(w, NULL, &w->ref);
    if (w->ref.status != HINGE_OK || w->ref.n != HEALTHY_N) {
        fprintf(stderr, "the local reference run: %s, %zu tokens\n", w->ref.err, w->ref.n);
        return -1;
    }
    static const char *const extra[] = {"--max-sessions", "4", "--max-step", "16", "--stall-timeout-ms", "400",
                                        "--handshake-timeout-ms", "400", "--threads", "1", NULL};
    if (edge_proc_cert(&w->p) != 0 ||
        edge_proc_start(&w->p, w->edge_bin, HINGE_SHARED_DIR "/models/stories260K.gguf", true, extra) != 0)
        return -1;
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    atomic_store(&w->done, true);
    if (w->healthy_started)
        pthread_join(w->healthy, NULL);
    int rc = edge_proc_stop(&w->p);
    if (rc != 0)
        fprintf(stderr, "hinge-edge exited with %d after SIGTERM (log in %s)\n", rc, w->p.dir);
    else
        edge_proc_cleanup(&w->p);
    hinge_model_free(w->hm);
    free(w);
    return rc == 0 ? 0 : -1;
}

/* ---- tests, in order ---- */

static void test_start_healthy(void **state)
{
    world *w = *state;
    assert_int_equal(pthread_create(&w->healthy, NULL, healthy_main, w), 0);
    w->healthy_started = true;
    usleep(50000);
}

static void test_bad_frames(void **state)
{
    world *w = *state;
    char id[33], path[128];
    assert_int_equal(open_session(w, w->sha, 2, "f32", 64, id), 201);
    steps_path(id, path);
    uint8_t buf[TX_FRAME_HEADER_BYTES + 32 * DIM * 4 + 64];
    size_t len = frame(TX_CODEC_F32, 0, 1, buf, sizeof buf);
    expect(w, 400, "bad_frame", "POST", path, buf, 10);           /* truncated header */
    expect(w, 400, "bad_frame", "POST", path, buf, len - 8);      /* truncated payload */
    expect(w, 400, "bad_frame", "POST", path, buf, len + 4);      /* trailing bytes */
    expect(w, 400, "bad_frame", "POST", path, buf, 0);            /* empty */
    buf[0] = 'X';
    expect(w, 400, "bad_frame", "POST", path, buf, len);          /* magic */
    frame(TX_CODEC_F32, 0, 1, buf, sizeof buf);
    buf[4] = 9;
    expect(w, 400, "bad_frame", "POST", path, buf, len);          /* version */
    len = frame(TX_CODEC_F16, 0, 1, buf, sizeof buf);
    expect(w, 400, "bad_frame", "POST", path, buf, len);          /* codec of another session */
    len = frame(TX_CODEC_F32, 0, 1, buf, sizeof buf);
    buf[16] = 32;
    expect(w, 400, "bad_frame", "POST", path, buf, len);          /* dim */
    len = frame(TX_CODEC_F32, 0, 17, buf, sizeof buf);
    expect(w, 413, "payload_too_large", "POST", path, buf, len);  /* 17 rows > max_step 16 */
    expect(w, 413, "payload_too_large", "POST", path, buf, 40);   /* header says 17 rows */
    uint8_t *big = calloc(1, 1 << 20);
    memcpy(big, buf, TX_FRAME_HEADER_BYTES);
    expect(w, 413, "payload_too_large", "POST", path, big, 1 << 20);
    free(big);
    len = frame(TX_CODEC_F32, 0, 2, buf, sizeof buf);
    static const uint32_t bad[] = {0x7fc00000u, 0x7f800000u, 0xff800000u};
    for (int i = 0; i < 3; i++) {
        memcpy(buf + TX_FRAME_HEADER_BYTES + (DIM + 3) * 4, &bad[i], 4);
        expect(w, 400, "bad_request", "POST", path, buf, len);    /* NaN / Inf, refused by the worker */
    }
    good_step(w, id, 0, 1); /* none of the above touched the session */
    expect(w, 404, "unknown_session", "POST", "/v1/sessions/0123456789abcdef0123456789abcdef/steps", buf, len);
    expect(w, 404, "unknown_session", "POST", "/v1/sessions/xyz/steps", buf, len);
}

static void test_positions(void **state)
{
    world *w = *state;
    char id[33], path[128];
    uint8_t buf[TX_FRAME_HEADER_BYTES + 32 * DIM * 4];
    assert_int_equal(open_session(w, w->sha, 3, "f32", 8, id), 201);
    steps_path(id, path);
    good_step(w, id, 0, 3);
    size_t len = frame(TX_CODEC_F32, 0, 1, buf, sizeof buf);
    expect(w, 409, "position_conflict", "POST", path, buf, len);  /* repeated */
    len = frame(TX_CODEC_F32, 5, 1, buf, sizeof buf);
    expect(w, 409, "position_conflict", "POST", path, buf, len);  /* skipped */
    len = frame(TX_CODEC_F32, 2, 1, buf, sizeof buf);
    expect(w, 409, "position_conflict", "POST", path, buf, len);  /* behind */
    int32_t tok = good_step(w, id, 3, 1);
    /* the last step again (its reply was lost with a connection): the same answer, nothing run */
    assert_int_equal(good_step(w, id, 3, 1), tok);
    len = frame(TX_CODEC_F32, 2, 2, buf, sizeof buf);
    expect(w, 409, "position_conflict", "POST", path, buf, len);  /* not the last step: still a conflict */
    len = frame(TX_CODEC_F32, 4, 5, buf, sizeof buf);
    expect(w, 409, "ctx_exceeded", "POST", path, buf, len);       /* 4 + 5 > ctx 8 */
    good_step(w, id, 4, 4);
}

/* Speculative lookahead: a verify step answers a token per row, and the next
 * step may rewind into it (past its first row), no further. */
static void test_verify_rewind(void **state)
{
    world *w = *state;
    char id[33], path[128], resp[RESP];
    uint8_t buf[TX_FRAME_HEADER_BYTES + 32 * DIM * 4];
    assert_int_equal(open_session(w, w->sha, 2, "f32", 16, id), 201);
    steps_path(id, path);
    good_step(w, id, 0, 3);
    size_t len = frame_flags(TX_CODEC_F32, TX_FLAG_VERIFY, 3, 4, buf, sizeof buf);
    assert_int_equal(req(w, "POST", path, buf, len, resp), 200);
    json_t *j = json_loads(resp, 0, NULL), *toks = NULL;
    json_int_t tok = -1, next = -1;
    assert_non_null(j);
    assert_int_equal(json_unpack(j, "{s:I, s:I, s:o}", "token", &tok, "pos", &next, "tokens", &toks), 0);
    assert_int_equal(next, 7);
    assert_int_equal(json_array_size(toks), 4);
    for (size_t i = 0; i < 4; i++)
        assert_true(json_integer_value(json_array_get(toks, i)) >= 0);
    assert_int_equal(json_integer_value(json_array_get(toks, 3)), tok); /* "token": the last row's */
    json_decref(j);
    len = frame(TX_CODEC_F32, 3, 1, buf, sizeof buf);
    expect(w, 409, "position_conflict", "POST", path, buf, len); /* the verify step's first row stays */
    good_step(w, id, 5, 1);                                      /* two drafts accepted: rewind to 5 */
    len = frame(TX_CODEC_F32, 4, 1, buf, sizeof buf);
    expect(w, 409, "position_conflict", "POST", path, buf, len); /* a plain step allows no rewind */
    len = frame_flags(TX_CODEC_F32, TX_FLAG_VERIFY, 6, 3, buf, sizeof buf);
    assert_int_equal(req(w, "POST", path, buf, len, resp), 200);
    char again[RESP];
    assert_int_equal(req(w, "POST", path, buf, len, again), 200); /* the verify step again (reply lost) */
    /* the same tokens: the replies agree up to their timings */
    assert_non_null(strstr(resp, "\"edge_us\""));
    size_t head = (size_t)(strstr(resp, "\"edge_us\"") - resp);
    assert_memory_equal(again, resp, head);
    snprintf(path, sizeof path, "/v1/sessions/%s", id); /* the edge has 4 session slots */
    assert_int_equal(req(w, "DELETE", path, NULL, 0, resp), 204);
}

static void test_sessions(void **state)
{
    world *w = *state;
    char id[33], path[128], resp[RESP];
    char other[65];
    memcpy(other, w->sha, 65);
    other[0] = other[0] == '0' ? '1' : '0';
    assert_int_equal(open_session(w, other, 2, "f32", 64, id), 422);
    assert_int_equal(open_session(w, w->sha, 6, "f32", 64, id), 400);   /* cut > 5 layers */
    assert_int_equal(open_session(w, w->sha, 2, "f32", 5000, id), 400); /* ctx over the edge's 2048 */
    assert_int_equal(open_session(w, w->sha, 2, "f8", 64, id), 400);
    expect(w, 400, "bad_request", "POST", "/v1/sessions", "{", 1);
    expect(w, 400, "bad_request", "POST", "/v1/sessions", "{\"cut\":1}", 9);
    const char *prompt = "{\"prompt\":\"Once upon a time\"}";
    expect(w, 400, "bad_request", "POST", "/v1/sessions", prompt, strlen(prompt));
    char big[5000];
    memset(big, ' ', sizeof big);
    expect(w, 413, "payload_too_large", "POST", "/v1/sessions", big, sizeof big);
    expect(w, 404, "not_found", "GET", "/v1/nothing", NULL, 0);
    expect(w, 405, "method_not_allowed", "GET", "/v1/sessions", NULL, 0);
    expect(w, 405, "method_not_allowed", "PUT", "/v1/health", NULL, 0);
    char longpath[400] = "/v1/";
    memset(longpath + 4, 'a', 300);
    longpath[304] = '\0';
    expect(w, 414, "uri_too_long", "GET", longpath, NULL, 0);
    /* closed sessions */
    assert_int_equal(open_session(w, w->sha, 2, "q8", 16, id), 201);
    snprintf(path, sizeof path, "/v1/sessions/%s", id);
    assert_int_equal(req(w, "GET", path, NULL, 0, resp), 200);
    assert_non_null(strstr(resp, "\"pos\":0"));
    assert_int_equal(req(w, "DELETE", path, NULL, 0, resp), 204);
    expect(w, 404, "unknown_session", "DELETE", path, NULL, 0);
    expect(w, 404, "unknown_session", "GET", path, NULL, 0);
    uint8_t buf[TX_FRAME_HEADER_BYTES + 4 + DIM];
    size_t len = frame(TX_CODEC_Q8, 0, 1, buf, sizeof buf);
    steps_path(id, path);
    expect(w, 404, "unknown_session", "POST", path, buf, len);
}

static void test_capacity(void **state)
{
    world *w = *state;
    char ids[8][33], path[320], resp[RESP];
    int n = 0;
    long st = 0;
    /* the healthy session holds one of the 4 slots; the others were closed or expire */
    while (n < 8 && (st = open_session(w, w->sha, 1, "f16", 32, ids[n])) == 201)
        n++;
    assert_int_equal(st, 503);
    assert_true(n >= 1 && n <= 3);
    char body[256];
    snprintf(body, sizeof body, "{\"model_sha256\":\"%s\",\"cut\":1,\"codec\":\"f32\",\"ctx\":4}", w->sha);
    expect(w, 503, "too_many_sessions", "POST", "/v1/sessions", body, strlen(body));
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "/v1/sessions/%s", ids[i]);
        assert_int_equal(req(w, "DELETE", path, NULL, 0, resp), 204);
    }
}

static void test_stall(void **state)
{
    world *w = *state;
    char id[33], path[128], resp[RESP];
    uint8_t buf[TX_FRAME_HEADER_BYTES + 32 * DIM * 4];
    assert_int_equal(open_session(w, w->sha, 2, "f32", 64, id), 201);
    steps_path(id, path);
    size_t len = frame(TX_CODEC_F32, 0, 8, buf, sizeof buf);
    double t0 = now_s();
    long st = edge_req(&w->p, "POST", path, buf, len, len / 2, resp, sizeof resp);
    double dt = now_s() - t0;
    if (st != 408 || !edge_is_error(resp, "request_timeout"))
        fail_msg("stalled upload: %ld %s", st, resp);
    assert_true(dt >= 0.35 && dt < 5.0);
    good_step(w, id, 0, 8); /* the session survived */
    /* a TCP connection that never starts TLS is closed after the handshake timeout */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->p.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    char c;
    assert_true(recv(fd, &c, 1, 0) <= 0);
    close(fd);
}

static void test_finish_healthy(void **state)
{
    world *w = *state;
    /* the healthy session was still generating while all of the above ran */
    size_t made = atomic_load(&w->progress);
    atomic_store(&w->done, true);
    if (made == 0 || made >= HEALTHY_N)
        fail_msg("the healthy session made %zu of %d tokens while the bad input ran: not concurrent", made,
                 HEALTHY_N);
    pthread_join(w->healthy, NULL);
    w->healthy_started = false;
    if (w->got.status != HINGE_OK)
        fail_msg("healthy session failed: %s", w->got.err);
    assert_int_equal(w->got.n, HEALTHY_N);
    assert_int_equal(w->got.stats.generated_tokens, HEALTHY_N);
    assert_memory_equal(w->got.tokens, w->ref.tokens, HEALTHY_N * sizeof(int32_t));
    assert_int_equal(w->got.stats.remote, 1);
    assert_int_equal(w->got.stats.connects, 1);
    assert_int_equal(w->got.stats.tls_handshakes, 1);
}

static void test_health_after(void **state)
{
    world *w = *state;
    char resp[RESP];
    assert_int_equal(req(w, "GET", "/v1/health", NULL, 0, resp), 200);
    assert_string_equal(resp, "{\"status\":\"ok\"}");
    assert_int_equal(req(w, "GET", "/v1/profile", NULL, 0, resp), 200);
    json_t *j = json_loads(resp, 0, NULL);
    json_int_t errors = 0, sessions = -1;
    assert_non_null(j);
    assert_int_equal(json_unpack(j, "{s:{s:I, s:I}}", "load", "errors", &errors, "sessions", &sessions), 0);
    assert_true(errors >= 30);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_healthy), cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_positions),     cmocka_unit_test(test_verify_rewind),
        cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_capacity),      cmocka_unit_test(test_stall),
        cmocka_unit_test(test_finish_healthy), cmocka_unit_test(test_health_after),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
