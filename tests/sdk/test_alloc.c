/* Allocation failures, in nghttp2's manner: for every i, the i-th
 * allocation of a call fails (then, in a second run, every allocation from
 * the i-th on), until a run no longer reaches allocation i.
 *
 *   - hinge_model_load, hinge_session_create (local; cut 2 with the q8
 *     wire, which emulates the wire through a frame; HINGE_CUT_AUTO; an edge
 *     nobody listens on; Vulkan where there is a device), hinge_tokenize,
 *     hinge_partition_plan and hinge_generate each return HINGE_ERR_NOMEM
 *     with a message, leave their out-parameter untouched, free what they
 *     allocated and do not crash;
 *   - hinge_generate allocates nothing per token: 1 token and 20 tokens make
 *     the same number of allocations.
 *
 * Linked against the static libhinge with -Wl,--wrap for each allocator, so
 * that the wrappers below see every allocation of hinge's own code (not
 * those inside libc, libcurl, jansson, OpenSSL or the Vulkan driver). The
 * wrappers keep the set of live blocks: the test checks that nothing leaks
 * without LeakSanitizer too. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hinge/hinge.h>

#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"
#define DEVICE_PROFILE HINGE_SOURCE_DIR "/profiles/devices/snapdragon-8-gen3.json"
#define CHANNEL_PROFILE HINGE_SOURCE_DIR "/profiles/channels/5g-midband-good.json"
#define EDGE_PROFILE HINGE_SOURCE_DIR "/profiles/edges/h100-sxm.json"

enum {
    TRACK_MAX = 1 << 14, /* live blocks the wrappers can follow */
    MAX_STEPS = 10000,   /* allocations one call may make before the test gives up */
};

/* ---- the allocator wrappers (-Wl,--wrap=malloc,...) ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__real_aligned_alloc(size_t align, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
char *__real_strdup(const char *s);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
void *__wrap_aligned_alloc(size_t align, size_t n);
int __wrap_posix_memalign(void **p, size_t align, size_t n);
char *__wrap_strdup(const char *s);

/* Threads of a session's pool free what their creator allocated: one lock. */
static struct heap {
    pthread_mutex_t mu;
    void *live[TRACK_MAX]; /* blocks hinge's code allocated and has not freed */
    size_t n_live;
    long calls;      /* allocation calls since arm() */
    long fail_at;    /* the call that fails; -1: none */
    bool persistent; /* every call from fail_at on fails */
    bool hit;        /* a call was failed since arm() */
} heap = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_at = -1};

/* Counts one allocation call; true when it is to fail. */
static bool next_fails(void)
{
    pthread_mutex_lock(&heap.mu);
    long i = heap.calls++;
    bool fail = heap.fail_at >= 0 && (i == heap.fail_at || (heap.persistent && i > heap.fail_at));
    heap.hit |= fail;
    pthread_mutex_unlock(&heap.mu);
    if (fail)
        errno = ENOMEM;
    return fail;
}

/* Called with heap.mu held. */
static void track_locked(void *p)
{
    if (!p)
        return;
    if (heap.n_live == TRACK_MAX) {
        fprintf(stderr, "test_alloc: more than %d live blocks\n", TRACK_MAX);
        abort();
    }
    heap.live[heap.n_live++] = p;
}

/* Called with heap.mu held; false when p is not ours (libc, jansson ...). */
static bool untrack_locked(void *p)
{
    for (size_t i = heap.n_live; i-- > 0;)
        if (heap.live[i] == p) {
            heap.live[i] = heap.live[--heap.n_live];
            return true;
        }
    return false;
}

static void *track(void *p)
{
    pthread_mutex_lock(&heap.mu);
    track_locked(p);
    pthread_mutex_unlock(&heap.mu);
    return p;
}

void *__wrap_malloc(size_t n) { return next_fails() ? NULL : track(__real_malloc(n)); }
void *__wrap_calloc(size_t n, size_t size) { return next_fails() ? NULL : track(__real_calloc(n, size)); }
void *__wrap_aligned_alloc(size_t align, size_t n)
{
    return next_fails() ? NULL : track(__real_aligned_alloc(align, n));
}
char *__wrap_strdup(const char *s) { return next_fails() ? NULL : track(__real_strdup(s)); }

int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    if (next_fails())
        return ENOMEM;
    int rc = __real_posix_memalign(p, align, n);
    if (rc == 0)
        track(*p);
    return rc;
}

/* Under the lock from untrack to the real call: no other thread can be
 * handed the address and track it in between. */
void __wrap_free(void *p)
{
    pthread_mutex_lock(&heap.mu);
    if (p)
        untrack_locked(p);
    __real_free(p);
    pthread_mutex_unlock(&heap.mu);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (next_fails())
        return NULL;
    pthread_mutex_lock(&heap.mu);
    void *q = __real_realloc(p, n);
    if (q && (!p || untrack_locked(p)))
        track_locked(q);
    pthread_mutex_unlock(&heap.mu);
    return q;
}

/* From the next allocation call on, call number at fails (-1: none). */
static void arm(long at, bool persistent)
{
    pthread_mutex_lock(&heap.mu);
    heap.calls = 0;
    heap.fail_at = at;
    heap.persistent = persistent;
    heap.hit = false;
    pthread_mutex_unlock(&heap.mu);
}

/* Stops failing; true when a call was failed since arm(). */
static bool disarm(void)
{
    pthread_mutex_lock(&heap.mu);
    heap.fail_at = -1;
    bool hit = heap.hit;
    pthread_mutex_unlock(&heap.mu);
    return hit;
}

static long n_calls(void)
{
    pthread_mutex_lock(&heap.mu);
    long n = heap.calls;
    pthread_mutex_unlock(&heap.mu);
    return n;
}

static size_t n_live(void)
{
    pthread_mutex_lock(&heap.mu);
    size_t n = heap.n_live;
    pthread_mutex_unlock(&heap.mu);
    return n;
}

/* ---- one call, failed at every allocation ---- */

static char sentinel; /* what out-parameters hold before a call: untouched on failure */

/* A call under test. obj: its out-parameter's value after the call (set to
 * &sentinel before it). */
typedef struct alloc_case {
    const char *what;
    hinge_status (*call)(struct alloc_case *c, void **obj);
    void (*release)(void *obj);    /* frees what a successful call made; NULL: nothing */
    hinge_status (*prepare)(struct alloc_case *c); /* before arming (NULL: nothing) */
    void (*finish)(struct alloc_case *c);           /* after the call, before the leak check */
    hinge_status clean;            /* the status without injected failures */
    hinge_status alt;              /* another status an injected failure may give; HINGE_OK: none */
    hinge_model *m;
    hinge_session_config cfg;
    hinge_plan_config plan;
    hinge_session *s;              /* of prepare */
} alloc_case;

/* This thread's hinge_last_error() becomes a known text, so that a failing
 * call that sets no message is seen. */
static const char *mark_last_error(void)
{
    hinge_model *m = (hinge_model *)&sentinel;
    assert_int_equal(hinge_model_load(NULL, &m), HINGE_ERR_INVALID);
    return hinge_last_error();
}

static void check_failure(const alloc_case *c, long i, bool persistent, hinge_status st, void *obj,
                          const char *marked)
{
    const char *how = persistent ? "from" : "at";
    if (st == HINGE_OK)
        fail_msg("%s: allocation %ld failed (%s on), yet the call succeeded", c->what, i, how);
    if (st != HINGE_ERR_NOMEM && st != c->alt)
        fail_msg("%s: allocations failing %s %ld gave %s (%s), not HINGE_ERR_NOMEM", c->what, how, i,
                 hinge_strerror(st), hinge_last_error());
    if (obj != &sentinel)
        fail_msg("%s: allocations failing %s %ld: the out-parameter was written", c->what, how, i);
    const char *msg = hinge_last_error();
    if (msg[0] == '\0' || strcmp(msg, marked) == 0)
        fail_msg("%s: allocations failing %s %ld: no message in hinge_last_error()", c->what, how, i);
}

/* One run with allocation i failing; true when the call reached it. */
static bool run_once(alloc_case *c, long i, bool persistent)
{
    size_t live0 = n_live();
    char marked[512];
    snprintf(marked, sizeof marked, "%s", mark_last_error());
    if (c->prepare && c->prepare(c) != HINGE_OK)
        fail_msg("%s: preparing: %s", c->what, hinge_last_error());
    void *obj = &sentinel;
    arm(i, persistent);
    hinge_status st = c->call(c, &obj);
    bool hit = disarm();
    if (hit) {
        check_failure(c, i, persistent, st, obj, marked);
    } else if (st != c->clean) {
        fail_msg("%s: without a failed allocation: %s (%s), expected %s", c->what, hinge_strerror(st),
                 hinge_last_error(), hinge_strerror(c->clean));
    }
    if (st == HINGE_OK && c->release)
        c->release(obj);
    if (c->finish)
        c->finish(c);
    if (n_live() != live0)
        fail_msg("%s: allocations failing %s %ld: %zu blocks leaked", c->what, persistent ? "from" : "at", i,
                 n_live() - live0);
    return hit;
}

/* Every i, once failing call i alone and once failing every call from i on.
 * Returns the number of allocations a clean call makes. */
static long run_case(alloc_case *c)
{
    long i = 0;
    while (run_once(c, i, false)) {
        run_once(c, i, true);
        if (++i == MAX_STEPS)
            fail_msg("%s: more than %d allocations", c->what, MAX_STEPS);
    }
    print_message("%s: %ld allocations, each failed\n", c->what, i);
    return i;
}

/* ---- the calls ---- */

static hinge_status call_model_load(alloc_case *c, void **obj)
{
    (void)c;
    hinge_model *m = (hinge_model *)&sentinel;
    hinge_status st = hinge_model_load(STORIES, &m);
    *obj = m;
    return st;
}

static void release_model(void *obj) { hinge_model_free(obj); }

static hinge_status call_session_create(alloc_case *c, void **obj)
{
    hinge_session *s = (hinge_session *)&sentinel;
    hinge_status st = hinge_session_create(c->m, &c->cfg, &s);
    *obj = s;
    return st;
}

static void release_session(void *obj) { hinge_session_free(obj); }

static hinge_status call_tokenize(alloc_case *c, void **obj)
{
    int32_t ids[64];
    size_t n = 12345;
    hinge_status st = hinge_tokenize(c->m, "Once upon a time, <s> there was", 31, 1, ids, 64, &n);
    *obj = n == 12345 ? (void *)&sentinel : NULL;
    return st;
}

static hinge_status call_plan(alloc_case *c, void **obj)
{
    char *json = &sentinel;
    hinge_status st = hinge_partition_plan(c->m, &c->plan, &json);
    *obj = json;
    return st;
}

static void release_json(void *obj) { hinge_free(obj); }

static hinge_status prepare_session(alloc_case *c) { return hinge_session_create(c->m, &c->cfg, &c->s); }

static void finish_session(alloc_case *c)
{
    hinge_session_free(c->s);
    c->s = NULL;
}

/* A failed hinge_generate leaves a session to be freed: each run has its own. */
static hinge_status call_generate(alloc_case *c, void **obj)
{
    (void)obj;
    return hinge_generate(c->s, "Once upon a time", 4, NULL, NULL);
}

/* ---- tests ---- */

static int setup(void **state)
{
    hinge_model *m = NULL;
    if (hinge_model_load(STORIES, &m) != HINGE_OK) {
        fprintf(stderr, "cannot load %s: %s\n", STORIES, hinge_last_error());
        return -1;
    }
    *state = m;
    return 0;
}

static int teardown(void **state)
{
    hinge_model_free(*state);
    return 0;
}

static alloc_case session_case(void **state, const char *what)
{
    alloc_case c = {.what = what, .call = call_session_create, .release = release_session, .m = *state};
    hinge_session_config_init(&c.cfg);
    c.cfg.n_ctx = 64;
    c.cfg.n_threads = 2; /* the pool's threads and their arguments */
    return c;
}

static void test_wrappers_see_hinge(void **state)
{
    (void)state;
    size_t live0 = n_live();
    hinge_model *m = NULL;
    arm(-1, false);
    assert_int_equal(hinge_model_load(STORIES, &m), HINGE_OK);
    assert_true(n_calls() > 5);
    assert_true(n_live() > live0);
    hinge_model_free(m);
    assert_int_equal(n_live(), live0);
}

static void test_model_load(void **state)
{
    (void)state;
    alloc_case c = {.what = "hinge_model_load", .call = call_model_load, .release = release_model};
    assert_true(run_case(&c) > 5);
}

static void test_session_local(void **state)
{
    alloc_case c = session_case(state, "hinge_session_create (local)");
    assert_true(run_case(&c) > 5);
}

static void test_session_cut_q8(void **state)
{
    alloc_case c = session_case(state, "hinge_session_create (cut 2, q8 wire)");
    c.cfg.cut = 2;
    c.cfg.wire = HINGE_WIRE_Q8;
    assert_true(run_case(&c) > 5);
}

static void test_session_auto(void **state)
{
    alloc_case c = session_case(state, "hinge_session_create (HINGE_CUT_AUTO, local)");
    c.cfg.cut = HINGE_CUT_AUTO;
    c.cfg.device_profile = DEVICE_PROFILE;
    assert_true(run_case(&c) > 5);
}

/* Nobody listens on port 1: the edge connection fails after hinge's own
 * allocations (client, edge session request). */
static void test_session_unreachable_edge(void **state)
{
    alloc_case c = session_case(state, "hinge_session_create (edge on 127.0.0.1:1)");
    c.cfg.cut = 2;
    c.cfg.edge_url = "http://127.0.0.1:1";
    c.cfg.timeout_ms = 2000;
    c.clean = c.alt = HINGE_ERR_NETWORK;
    assert_true(run_case(&c) > 5);
}

/* The Vulkan backend (lavapipe where there is no GPU); skipped without a
 * Vulkan device or where libhinge was built without Vulkan. */
static void test_session_vulkan(void **state)
{
    alloc_case c = session_case(state, "hinge_session_create (Vulkan, cut 2)");
    c.cfg.cut = 2;
    c.cfg.backend = HINGE_BACKEND_VULKAN;
    hinge_session *s = NULL;
    hinge_status st = hinge_session_create(c.m, &c.cfg, &s);
    if (st == HINGE_ERR_VULKAN || st == HINGE_ERR_UNSUPPORTED)
        skip();
    assert_int_equal(st, HINGE_OK);
    hinge_session_free(s);
    assert_true(run_case(&c) > 5);
}

static void test_tokenize(void **state)
{
    alloc_case c = {.what = "hinge_tokenize", .call = call_tokenize, .m = *state};
    assert_true(run_case(&c) > 0);
}

static void test_partition_plan(void **state)
{
    alloc_case c = {.what = "hinge_partition_plan", .call = call_plan, .release = release_json, .m = *state};
    hinge_plan_config_init(&c.plan);
    c.plan.device_profile = DEVICE_PROFILE;
    c.plan.channel_profile = CHANNEL_PROFILE;
    c.plan.edge_profile = EDGE_PROFILE;
    run_case(&c);
}

static void test_generate(void **state)
{
    alloc_case c = session_case(state, "hinge_generate");
    c.call = call_generate;
    c.release = NULL;
    c.prepare = prepare_session;
    c.finish = finish_session;
    c.cfg.cut = 2;
    c.cfg.wire = HINGE_WIRE_Q8;
    run_case(&c);
}

/* Allocation calls of one hinge_generate of n tokens on s, from a fresh start. */
static long generate_calls(hinge_session *s, int n)
{
    assert_int_equal(hinge_session_reset(s), HINGE_OK);
    arm(-1, false);
    assert_int_equal(hinge_generate(s, "Once upon a time", n, NULL, NULL), HINGE_OK);
    long calls = n_calls();
    hinge_stats st;
    hinge_session_get_stats(s, &st);
    assert_int_equal(st.generated_tokens, (uint32_t)n);
    return calls;
}

static void test_generate_allocates_nothing_per_token(void **state)
{
    static const struct {
        int cut;
        hinge_wire wire;
        hinge_backend backend;
    } kinds[] = {{HINGE_CUT_ALL, HINGE_WIRE_F32, HINGE_BACKEND_CPU},
                 {2, HINGE_WIRE_Q8, HINGE_BACKEND_CPU},
                 {0, HINGE_WIRE_F16, HINGE_BACKEND_CPU},
                 {3, HINGE_WIRE_F32, HINGE_BACKEND_VULKAN}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t live0 = n_live();
        alloc_case c = session_case(state, "");
        c.cfg.cut = kinds[k].cut;
        c.cfg.wire = kinds[k].wire;
        c.cfg.backend = kinds[k].backend;
        c.cfg.ignore_eos = 1;
        hinge_session *s = NULL;
        hinge_status st = hinge_session_create(c.m, &c.cfg, &s);
        if (kinds[k].backend == HINGE_BACKEND_VULKAN && (st == HINGE_ERR_VULKAN || st == HINGE_ERR_UNSUPPORTED))
            continue; /* no Vulkan device, or no Vulkan in this build */
        assert_int_equal(st, HINGE_OK);
        /* after a step: the pool's threads have freed their start arguments */
        long one = generate_calls(s, 1);
        size_t live_session = n_live();
        long twenty = generate_calls(s, 20);
        if (one != twenty)
            fail_msg("cut %d: %ld allocations generating 1 token, %ld generating 20", kinds[k].cut, one, twenty);
        assert_int_equal(n_live(), live_session); /* generate freed what it allocated */
        hinge_session_free(s);
        assert_int_equal(n_live(), live0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrappers_see_hinge),
        cmocka_unit_test(test_model_load),
        cmocka_unit_test(test_session_local),
        cmocka_unit_test(test_session_cut_q8),
        cmocka_unit_test(test_session_auto),
        cmocka_unit_test(test_session_unreachable_edge),
        cmocka_unit_test(test_session_vulkan),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_partition_plan),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_generate_allocates_nothing_per_token),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
