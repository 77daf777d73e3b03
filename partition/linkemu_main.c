/* hinge-linkemu: the link emulator's command line.
 *
 *   hinge-linkemu --upstream 127.0.0.1:8443 --channel profiles/channels/lte.json
 *   hinge-linkemu --upstream 127.0.0.1:8443 --up-mbps 10 --down-mbps 40 --rtt-ms 50
 *
 * Prints "listening on ADDR:PORT" on stdout once it accepts connections;
 * SIGTERM or SIGINT stops it and prints its counters on stderr. Exit 1 on
 * a runtime error, 2 on a usage error. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linkemu.h"
#include "partition.h"

static const char usage_text[] =
    "usage: hinge-linkemu --upstream ADDR:PORT [--listen ADDR:PORT] [--channel FILE] [link options]\n"
    "  --listen ADDR:PORT   numeric IPv4 address to listen on (default 127.0.0.1:0: a free port)\n"
    "  --upstream ADDR:PORT where to forward each connection (hinge-edge)\n"
    "  --channel FILE       a channel profile: bandwidths, RTT (split evenly), jitter, loss\n"
    "  --up-mbps X, --down-mbps X   link rates in Mbit/s, IP headers included (0: unlimited)\n"
    "  --rtt-ms X           round-trip delay, half each way\n"
    "  --jitter-ms X        one-way delay variation, uniform +-X\n"
    "  --loss P             per-segment loss probability in [0, 1), emulated as recovery delay\n"
    "  --loss-penalty-ms X  recovery delay of a lost segment (default max(2 RTT, 10 ms))\n"
    "  --queue-kb N         bytes held per direction and connection (default 2048)\n"
    "  --seed N             seed of the jitter and loss draws (default 1)\n"
    "  --then-channel FILE  with --after-s: the channel the link becomes later\n"
    "  --after-s T          seconds after the start when the link becomes --then-channel's\n"
    "Options after --channel override its figures. SIGUSR1 cuts every connection (a handover).\n";

enum { OPT_LISTEN = 256, OPT_UPSTREAM, OPT_CHANNEL, OPT_UP, OPT_DOWN, OPT_RTT, OPT_JITTER, OPT_LOSS, OPT_PENALTY,
       OPT_QUEUE, OPT_SEED, OPT_THEN, OPT_AFTER };

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN}, {"upstream", required_argument, NULL, OPT_UPSTREAM},
    {"channel", required_argument, NULL, OPT_CHANNEL}, {"up-mbps", required_argument, NULL, OPT_UP},
    {"down-mbps", required_argument, NULL, OPT_DOWN}, {"rtt-ms", required_argument, NULL, OPT_RTT},
    {"jitter-ms", required_argument, NULL, OPT_JITTER}, {"loss", required_argument, NULL, OPT_LOSS},
    {"loss-penalty-ms", required_argument, NULL, OPT_PENALTY}, {"queue-kb", required_argument, NULL, OPT_QUEUE},
    {"seed", required_argument, NULL, OPT_SEED}, {"then-channel", required_argument, NULL, OPT_THEN},
    {"after-s", required_argument, NULL, OPT_AFTER}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
};

static int parse_num(const char *s, const char *what, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "hinge-linkemu: --%s: '%s' is not a number in [%g, %g]\n", what, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static bool have_then; /* --then-channel given */

static void apply_channel(const part_channel *ch, part_link_dir *up, part_link_dir *down)
{
    up->rate_bps = ch->up_bps;
    down->rate_bps = ch->down_bps;
    up->delay_s = down->delay_s = ch->rtt_s / 2;
    up->jitter_s = down->jitter_s = ch->jitter_s;
    up->loss = down->loss = ch->loss;
}

static int parse_option(int opt, const char *arg, part_linkemu_config *cfg)
{
    double v = 0;
    char err[HINGE_ERRMSG_MAX];
    part_channel ch;
    switch (opt) {
    case OPT_LISTEN: cfg->listen = arg; return 0;
    case OPT_UPSTREAM: cfg->upstream = arg; return 0;
    case OPT_CHANNEL:
    case OPT_THEN:
        if (part_channel_load(arg, &ch, err, sizeof err) != HINGE_OK) {
            fprintf(stderr, "hinge-linkemu: %s\n", err);
            return -1;
        }
        if (opt == OPT_CHANNEL)
            apply_channel(&ch, &cfg->up, &cfg->down);
        else
            apply_channel(&ch, &cfg->then_up, &cfg->then_down);
        have_then |= opt == OPT_THEN;
        return 0;
    case OPT_AFTER: if (parse_num(arg, "after-s", 0.001, 86399, &v)) return -1; cfg->then_after_s = v; return 0;
    case OPT_UP: if (parse_num(arg, "up-mbps", 0, 1e7, &v)) return -1; cfg->up.rate_bps = v * 1e6; return 0;
    case OPT_DOWN: if (parse_num(arg, "down-mbps", 0, 1e7, &v)) return -1; cfg->down.rate_bps = v * 1e6; return 0;
    case OPT_RTT:
        if (parse_num(arg, "rtt-ms", 0, 60000, &v)) return -1;
        cfg->up.delay_s = cfg->down.delay_s = v * 0.5e-3;
        return 0;
    case OPT_JITTER:
        if (parse_num(arg, "jitter-ms", 0, 60000, &v)) return -1;
        cfg->up.jitter_s = cfg->down.jitter_s = v * 1e-3;
        return 0;
    case OPT_LOSS:
        if (parse_num(arg, "loss", 0, 0.999999, &v)) return -1;
        cfg->up.loss = cfg->down.loss = v;
        return 0;
    case OPT_PENALTY:
        if (parse_num(arg, "loss-penalty-ms", 0, 60000, &v)) return -1;
        cfg->up.loss_penalty_s = cfg->down.loss_penalty_s = v * 1e-3;
        return 0;
    case OPT_QUEUE: if (parse_num(arg, "queue-kb", 4, 1 << 20, &v)) return -1; cfg->queue_bytes = (size_t)v * 1024; return 0;
    case OPT_SEED: if (parse_num(arg, "seed", 0, 9e15, &v)) return -1; cfg->seed = (uint64_t)v; return 0;
    }
    return -1;
}

/* Waits for SIGTERM or SIGINT (blocked in every thread) and stops the
 * loop; SIGUSR1 cuts every connection (an emulated handover). */
static void *signal_thread(void *arg)
{
    sigset_t set;
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    while (sigwait(&set, &sig) == 0 && sig == SIGUSR1)
        part_linkemu_cut(arg);
    part_linkemu_stop(arg);
    return NULL;
}

static int serve(const part_linkemu_config *cfg)
{
    char err[HINGE_ERRMSG_MAX] = "";
    part_linkemu *l = NULL;
    hinge_status s = part_linkemu_create(cfg, &l, err, sizeof err);
    if (s != HINGE_OK) {
        fprintf(stderr, "hinge-linkemu: %s (%s)\n", err, hinge_strerror(s));
        return 1;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, signal_thread, l) != 0) {
        fprintf(stderr, "hinge-linkemu: cannot start the signal thread\n");
        part_linkemu_destroy(l);
        return 1;
    }
    printf("listening on %.*s:%u\n", (int)strcspn(cfg->listen, ":"), cfg->listen, part_linkemu_port(l));
    fflush(stdout);
    s = part_linkemu_run(l);
    pthread_join(th, NULL);
    part_linkemu_stats st;
    part_linkemu_get_stats(l, &st);
    const char *msg = part_linkemu_errmsg(l);
    fprintf(stderr, "hinge-linkemu: %llu connections (%llu refused, %llu reset); up %llu B in %llu chunks (%llu lost); "
            "down %llu B in %llu chunks (%llu lost)%s%s\n", (unsigned long long)st.conns,
            (unsigned long long)st.refused, (unsigned long long)st.resets, (unsigned long long)st.bytes_up,
            (unsigned long long)st.chunks_up, (unsigned long long)st.lost_up, (unsigned long long)st.bytes_down,
            (unsigned long long)st.chunks_down, (unsigned long long)st.lost_down, *msg ? "; last error: " : "", msg);
    part_linkemu_destroy(l);
    return s == HINGE_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    part_linkemu_config cfg = {.listen = "127.0.0.1:0", .seed = 1};
    int opt;
    while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(usage_text, stdout);
            return 0;
        }
        if (opt == '?' || parse_option(opt, optarg, &cfg) != 0) {
            fputs(usage_text, stderr);
            return 2;
        }
    }
    if (have_then != (cfg.then_after_s > 0)) {
        fprintf(stderr, "hinge-linkemu: --then-channel and --after-s go together\n");
        return 2;
    }
    if (optind < argc || !cfg.upstream) {
        fprintf(stderr, "hinge-linkemu: %s\n", optind < argc ? "unexpected argument" : "--upstream is required");
        fputs(usage_text, stderr);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return serve(&cfg);
}
