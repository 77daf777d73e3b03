/* edge/auth.c and edge/config.c: the API key file (hashes, names, what is
 * refused), bearer tokens against it (a thousand keys, each found; near
 * misses not), and hinge-edge's config file turned into options. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "config.h"
#include "edge_impl.h"

static char dir[] = "/tmp/hinge-auth-test-XXXXXX";

static const char *write_tmp(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void sha_hex(const char *token, char out[65])
{
    uint8_t h[32];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(token, strlen(token), h, &n, EVP_sha256(), NULL), 1);
    edge_hex(h, 32, out);
}

static bool bearer(hinge_edge *e, const char *header, char *name)
{
    return edge_auth_bearer(e, (const uint8_t *)header, strlen(header), name, EDGE_CLIENT_MAX);
}

static void test_key_file(void **state)
{
    (void)state;
    hinge_edge e = {0};
    char a[65], b[65], text[400], err[256], name[EDGE_CLIENT_MAX];
    sha_hex("tok-a", a);
    sha_hex("tok-b", b);
    snprintf(text, sizeof text, "# keys\n\n%s alice\r\n%s\n", a, b);
    assert_int_equal(edge_auth_load(&e, write_tmp("keys", text), err, sizeof err), HINGE_OK);
    assert_int_equal(e.n_keys, 2);
    assert_true(bearer(&e, "Bearer tok-a", name));
    assert_string_equal(name, "alice");
    assert_true(bearer(&e, "bearer tok-b", name)); /* the scheme is case-insensitive */
    char unnamed[16];
    snprintf(unnamed, sizeof unnamed, "key-%.8s", b);
    assert_string_equal(name, unnamed);
    assert_false(bearer(&e, "Bearer tok-c", name));
    assert_false(bearer(&e, "Bearer tok-a ", name));
    assert_false(bearer(&e, "Basic tok-a", name));
    assert_false(bearer(&e, "Bearer ", name));
    assert_false(bearer(&e, "tok-a", name));
    /* each bad file is refused whole, and the keys in use stay */
    const char *bad[] = {"0123\n", "not hex at all\n", "", "# only a comment\n"};
    char upper[80], spaced[120], trailing[80];
    snprintf(upper, sizeof upper, "%.63sA\n", a);
    snprintf(spaced, sizeof spaced, "%s two words\n", a);
    snprintf(trailing, sizeof trailing, "%s \n", a);
    const char *more[] = {upper, spaced, trailing};
    for (size_t i = 0; i < 7; i++) {
        const char *t = i < 4 ? bad[i] : more[i - 4];
        hinge_status s = edge_auth_load(&e, write_tmp("bad", t), err, sizeof err);
        if (s != HINGE_ERR_FORMAT)
            fail_msg("file %zu (%s) gave %d", i, t, s);
        assert_int_equal(e.n_keys, 2);
    }
    assert_int_equal(edge_auth_load(&e, "/nonexistent/keys", err, sizeof err), HINGE_ERR_IO);
    assert_true(bearer(&e, "Bearer tok-a", name));
    free(e.keys);
    EVP_MD_free(e.sha256);
}

static void test_many_keys(void **state)
{
    (void)state;
    enum { N = 1000 };
    hinge_edge e = {0};
    size_t cap = N * 80 + 1;
    char *text = malloc(cap), hex[65], tok[32], err[256], name[EDGE_CLIENT_MAX], want[32];
    assert_non_null(text);
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        snprintf(tok, sizeof tok, "token-%d", i);
        sha_hex(tok, hex);
        len += (size_t)snprintf(text + len, cap - len, "%s c%d\n", hex, i);
    }
    assert_int_equal(edge_auth_load(&e, write_tmp("many", text), err, sizeof err), HINGE_OK);
    for (int i = 0; i < N; i++) {
        char hdr[48];
        snprintf(hdr, sizeof hdr, "Bearer token-%d", i);
        snprintf(want, sizeof want, "c%d", i);
        assert_true(bearer(&e, hdr, name));
        assert_string_equal(name, want);
        snprintf(hdr, sizeof hdr, "Bearer token-%d", N + i);
        assert_false(bearer(&e, hdr, name));
    }
    free(text);
    free(e.keys);
    EVP_MD_free(e.sha256);
}

static const struct option opts[] = {
    {"max-sessions", required_argument, NULL, 1},
    {"no-measure", no_argument, NULL, 2},
    {"listen", required_argument, NULL, 3},
    {"config", required_argument, NULL, 4},
    {NULL, 0, NULL, 0},
};

static void test_config(void **state)
{
    (void)state;
    edge_config_args a;
    char err[256];
    const char *good = "# c\n  max-sessions =  8  # eight\nno-measure = true\nlisten = [::1]:0\n\n";
    assert_int_equal(edge_config_read(write_tmp("c1", good), opts, &a, err, sizeof err), 0);
    const char *want[] = {"hinge-edge", "--max-sessions", "8", "--no-measure", "--listen", "[::1]:0"};
    assert_int_equal(a.argc, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(a.argv[i], want[i]);
    assert_null(a.argv[6]);
    edge_config_free(&a);
    assert_int_equal(edge_config_read(write_tmp("c2", "no-measure = false\n"), opts, &a, err, sizeof err), 0);
    assert_int_equal(a.argc, 1);
    edge_config_free(&a);
    const char *bad[] = {"max-sessions\n", "max-sessions =\n", "nope = 1\n", "no-measure = yes\n", "config = x\n"};
    const char *why[] = {"expected key = value", "needs a value", "unknown key", "true or false", "unknown key"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(edge_config_read(write_tmp("c3", bad[i]), opts, &a, err, sizeof err), -1);
        if (!strstr(err, why[i]) || !strstr(err, "c3:1:"))
            fail_msg("'%s': %s", bad[i], err);
    }
    assert_int_equal(edge_config_read("/nonexistent/conf", opts, &a, err, sizeof err), -1);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_file),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
