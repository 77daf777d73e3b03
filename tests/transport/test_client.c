/* Tests of the client that need no edge: bad configuration, a refused
 * connection, and a peer that accepts TCP but never speaks (the timeout
 * must fire, bounded). The exchanges with a real edge are in tests/edge. */
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "transport.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_bad_config(void **state)
{
    (void)state;
    char err[HINGE_ERRMSG_MAX] = "";
    tx_client *c = (tx_client *)0x1;
    tx_client_config cfg = {.base_url = "ftp://127.0.0.1:1"};
    assert_int_equal(tx_client_create(&cfg, &c, err, sizeof err), HINGE_ERR_INVALID);
    assert_non_null(strstr(err, "https://"));
    assert_ptr_equal(c, (tx_client *)0x1); /* untouched */
    cfg.base_url = "";
    assert_int_equal(tx_client_create(&cfg, &c, err, sizeof err), HINGE_ERR_INVALID);
    cfg.base_url = NULL;
    assert_int_equal(tx_client_create(&cfg, &c, err, sizeof err), HINGE_ERR_INVALID);
    char long_url[600];
    memset(long_url, 'a', sizeof long_url - 1);
    memcpy(long_url, "https://", 8);
    long_url[sizeof long_url - 1] = '\0';
    cfg.base_url = long_url;
    assert_int_equal(tx_client_create(&cfg, &c, err, sizeof err), HINGE_ERR_INVALID);
    tx_client_destroy(NULL);
    assert_int_equal(tx_session_close(NULL, err, sizeof err), HINGE_OK);
}

/* A port with nothing listening: bind one, note it, close it. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_refused(void **state)
{
    (void)state;
    char url[64], err[HINGE_ERRMSG_MAX] = "";
    snprintf(url, sizeof url, "http://127.0.0.1:%d", dead_port());
    tx_client_config cfg = {.base_url = url, .connect_timeout_ms = 2000, .timeout_ms = 2000};
    tx_client *c;
    assert_int_equal(tx_client_create(&cfg, &c, err, sizeof err), HINGE_OK);
    assert_int_equal(tx_client_health(c, err, sizeof err), HINGE_ERR_NETWORK);
    assert_non_null(strstr(err, "127.0.0.1"));
    tx_session_config sc = {.cut = 1, .codec = TX_CODEC_F32, .ctx = 16};
    tx_session *s = NULL;
    assert_int_equal(tx_session_open(c, &sc, &s, err, sizeof err), HINGE_ERR_NETWORK);
    assert_null(s);
    sc.codec = (tx_codec)7;
    assert_int_equal(tx_session_open(c, &sc, &s, err, sizeof err), HINGE_ERR_INVALID);
    sc.codec = TX_CODEC_F16;
    sc.sampling.seed = UINT64_MAX;
    assert_int_equal(tx_session_open(c, &sc, &s, err, sizeof err), HINGE_ERR_INVALID);
    tx_client_destroy(c);
}

/* TCP is accepted by the kernel's backlog but nobody ever answers. */
static void test_silent_peer_times_out(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    const char *schemes[] = {"http", "https"};
    for (int i = 0; i < 2; i++) {
        char url[64], err[HINGE_ERRMSG_MAX] = "";
        snprintf(url, sizeof url, "%s://127.0.0.1:%d", schemes[i], ntohs(a.sin_port));
        tx_client_config cfg = {.base_url = url, .connect_timeout_ms = 300, .timeout_ms = 300};
        tx_client *c;
        assert_int_equal(tx_client_create(&cfg, &c, err, sizeof err), HINGE_OK);
        double t0 = now_s();
        assert_int_equal(tx_client_health(c, err, sizeof err), HINGE_ERR_NETWORK);
        double dt = now_s() - t0;
        assert_true(dt >= 0.25 && dt < 5.0);
        tx_client_destroy(c);
    }
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_silent_peer_times_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
