/* Tests of partition/linkemu.c on 127.0.0.1: a 1 MiB transfer through a
 * 10 Mbit/s, 20 ms link takes 8 * (1 MiB + headers) / 10 Mbit/s + RTT
 * (within a loose bound), small round trips take the RTT, loss turns into
 * delay, a small queue still carries a large transfer, and bad
 * configurations are refused. Every socket has a timeout: nothing blocks
 * for more than a few seconds. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "linkemu.h"

enum { MIB = 1 << 20, PING = 100 };

typedef struct sink {
    int lfd;
    uint16_t port;
    size_t expect; /* > 0: read this much, then answer one byte; 0: echo PING-byte messages until EOF */
    pthread_t th;
} sink;

typedef struct emu {
    part_linkemu *l;
    pthread_t th;
} emu;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void timeouts(int fd)
{
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Reads exactly n bytes (or fewer at EOF/timeout); returns bytes read. */
static size_t read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

static void *sink_main(void *arg)
{
    sink *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    timeouts(fd);
    static char buf[64 * 1024];
    if (s->expect) {
        size_t total = 0;
        for (ssize_t r; total < s->expect && (r = read(fd, buf, sizeof buf)) > 0;)
            total += (size_t)r;
        if (total == s->expect && write(fd, "k", 1) != 1)
            total = 0;
    } else {
        while (read_full(fd, buf, PING) == PING && write(fd, buf, PING) == PING)
            ;
    }
    close(fd);
    return NULL;
}

static void sink_start(sink *s, size_t expect)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    s->expect = expect;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    struct timeval tv = {.tv_sec = 10}; /* accept gives up too */
    setsockopt(s->lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(pthread_create(&s->th, NULL, sink_main, s), 0);
}

static void sink_stop(sink *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
}

static void *emu_main(void *arg)
{
    emu *e = arg;
    part_linkemu_run(e->l);
    return NULL;
}

static void emu_start(emu *e, part_linkemu_config *cfg, uint16_t upstream)
{
    char up[32], err[HINGE_ERRMSG_MAX];
    snprintf(up, sizeof up, "127.0.0.1:%u", upstream);
    cfg->listen = "127.0.0.1:0";
    cfg->upstream = up;
    hinge_status s = part_linkemu_create(cfg, &e->l, err, sizeof err);
    if (s != HINGE_OK)
        fail_msg("%s", err);
    assert_int_equal(pthread_create(&e->th, NULL, emu_main, e), 0);
}

static void emu_stop(emu *e, part_linkemu_stats *st)
{
    part_linkemu_stop(e->l);
    pthread_join(e->th, NULL);
    if (st)
        part_linkemu_get_stats(e->l, st);
    part_linkemu_destroy(e->l);
}

static int dial(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    timeouts(fd);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Sends MIB bytes through the emulator and waits for the sink's byte. */
static double transfer(part_linkemu_config *cfg, part_linkemu_stats *st)
{
    sink s;
    emu e;
    sink_start(&s, MIB);
    emu_start(&e, cfg, s.port);
    static char buf[MIB];
    memset(buf, 'x', sizeof buf);
    int fd = dial(part_linkemu_port(e.l));
    double t0 = now_s();
    size_t sent = 0;
    for (ssize_t w; sent < MIB && (w = write(fd, buf + sent, MIB - sent)) > 0;)
        sent += (size_t)w;
    char ack = 0;
    ssize_t r = read(fd, &ack, 1);
    double dt = now_s() - t0;
    close(fd);
    sink_stop(&s);
    emu_stop(&e, st);
    assert_int_equal(sent, MIB);
    assert_int_equal(r, 1);
    assert_int_equal(ack, 'k');
    return dt;
}

static void test_bandwidth_and_delay(void **state)
{
    (void)state;
    part_linkemu_config cfg = {.up = {.rate_bps = 10e6, .delay_s = 0.010}, .down = {.rate_bps = 10e6, .delay_s = 0.010}};
    part_linkemu_stats st;
    double dt = transfer(&cfg, &st);
    double chunks = (double)st.chunks_up;
    double want = (MIB + chunks * LINKEMU_SEG_HEADER) * 8 / 10e6 + 0.020;
    print_message("1 MiB through 10 Mbit/s, 20 ms RTT: %.3f s (model %.3f s, %.0f chunks)\n", dt, want, chunks);
    assert_true(st.bytes_up == MIB && st.bytes_down == 1 && st.conns == 1);
    assert_true(dt > 0.8 && dt > want * 0.97);
    assert_true(dt < want * 1.3);
}

static void test_small_queue_still_carries(void **state)
{
    (void)state;
    part_linkemu_config cfg = {.up = {.rate_bps = 50e6, .delay_s = 0.002}, .down = {.delay_s = 0.002},
                               .queue_bytes = 16 * 1024};
    double dt = transfer(&cfg, NULL);
    double want = MIB * 1.036 * 8 / 50e6 + 0.004;
    print_message("1 MiB through 50 Mbit/s with a 16 KiB queue: %.3f s (model %.3f s)\n", dt, want);
    assert_true(dt > want * 0.95 && dt < want * 2.0); /* a small queue may cost some throughput, never data */
}

/* Mean round trip of n PING-byte echoes. */
static double ping(part_linkemu_config *cfg, int n, part_linkemu_stats *st, double *min, double *max)
{
    sink s;
    emu e;
    sink_start(&s, 0);
    emu_start(&e, cfg, s.port);
    int fd = dial(part_linkemu_port(e.l));
    char buf[PING] = {0};
    double sum = 0;
    *min = 1e9;
    *max = 0;
    for (int i = 0; i < n; i++) {
        double t0 = now_s();
        assert_int_equal(write(fd, buf, PING), PING);
        assert_int_equal(read_full(fd, buf, PING), PING);
        double dt = now_s() - t0;
        sum += dt;
        *min = dt < *min ? dt : *min;
        *max = dt > *max ? dt : *max;
    }
    close(fd);
    sink_stop(&s);
    emu_stop(&e, st);
    return sum / n;
}

static void test_round_trip(void **state)
{
    (void)state;
    part_linkemu_config cfg = {.up = {.rate_bps = 10e6, .delay_s = 0.010}, .down = {.rate_bps = 10e6, .delay_s = 0.010}};
    double lo, hi, mean = ping(&cfg, 10, NULL, &lo, &hi);
    print_message("round trip through a 20 ms link: mean %.2f ms (%.2f .. %.2f)\n", mean * 1e3, lo * 1e3, hi * 1e3);
    assert_true(lo >= 0.020 && mean < 0.030);
    cfg.up.jitter_s = cfg.down.jitter_s = 0.005;
    mean = ping(&cfg, 20, NULL, &lo, &hi);
    print_message("with +-5 ms jitter each way: mean %.2f ms (%.2f .. %.2f)\n", mean * 1e3, lo * 1e3, hi * 1e3);
    assert_true(lo >= 0.0099 && hi < 0.050 && mean > 0.015 && mean < 0.035);
}

static void test_loss_is_delay(void **state)
{
    (void)state;
    part_linkemu_config cfg = {.up = {.loss = 0.5, .loss_penalty_s = 0.020}, .down = {.loss = 0.5, .loss_penalty_s = 0.020},
                               .seed = 7};
    part_linkemu_stats st;
    double lo, hi, mean = ping(&cfg, 20, &st, &lo, &hi);
    print_message("50%% loss, 20 ms recovery: mean %.2f ms, %llu + %llu chunks lost\n", mean * 1e3,
                  (unsigned long long)st.lost_up, (unsigned long long)st.lost_down);
    assert_true(st.lost_up + st.lost_down >= 5 && st.lost_up + st.lost_down <= 35);
    assert_true(mean > 0.008 && mean < 0.040); /* expected 20 ms: one of two chunks lost on average */
    assert_true(st.bytes_up == 20 * PING && st.bytes_down == 20 * PING); /* nothing is dropped */
}

static void test_bad_config(void **state)
{
    (void)state;
    part_linkemu *l = NULL;
    char err[HINGE_ERRMSG_MAX];
    part_linkemu_config cfg = {.listen = "127.0.0.1:0", .upstream = "127.0.0.1:1", .up = {.loss = 1.0}};
    assert_int_equal(part_linkemu_create(&cfg, &l, err, sizeof err), HINGE_ERR_INVALID);
    cfg.up.loss = 0;
    cfg.down.rate_bps = -5;
    assert_int_equal(part_linkemu_create(&cfg, &l, err, sizeof err), HINGE_ERR_INVALID);
    cfg.down.rate_bps = 0;
    cfg.listen = "localhost:0";
    assert_int_equal(part_linkemu_create(&cfg, &l, err, sizeof err), HINGE_ERR_INVALID);
    cfg.listen = "127.0.0.1:99999";
    assert_int_equal(part_linkemu_create(&cfg, &l, err, sizeof err), HINGE_ERR_INVALID);
    cfg.listen = "127.0.0.1:0";
    cfg.upstream = NULL;
    assert_int_equal(part_linkemu_create(&cfg, &l, err, sizeof err), HINGE_ERR_INVALID);
    assert_null(l);
}

static void test_upstream_refused(void **state)
{
    (void)state;
    sink s; /* a port with nothing listening: bind, then close */
    sink_start(&s, 1);
    int probe = dial(s.port); /* let the sink thread finish */
    close(probe);
    sink_stop(&s);
    emu e;
    part_linkemu_config cfg = {0};
    emu_start(&e, &cfg, s.port);
    int fd = dial(part_linkemu_port(e.l));
    char c;
    double t0 = now_s();
    ssize_t r = read(fd, &c, 1); /* closed at once, not hung */
    assert_true(r <= 0);
    assert_true(now_s() - t0 < 5);
    close(fd);
    emu_stop(&e, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bandwidth_and_delay),
        cmocka_unit_test(test_small_queue_still_carries),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_loss_is_delay),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_upstream_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
