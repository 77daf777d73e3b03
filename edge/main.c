/* hinge-edge: the edge server's command line.
 *
 *   hinge-edge --model M.gguf --listen 0.0.0.0:8443 --cert C.pem --key K.pem
 *   hinge-edge --model M.gguf --listen 127.0.0.1:0 --insecure-h2c
 *
 * Prints "listening on ADDR:PORT" on stdout once it accepts connections
 * (and nothing else on stdout); logs go to stderr. SIGTERM or SIGINT: stop
 * accepting, finish in-flight steps, exit 0. Exit 1 on a runtime error, 2
 * on a usage error. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge.h"

static const char usage_text[] =
    "usage: hinge-edge --model PATH [--listen ADDR:PORT] (--cert PEM --key PEM | --insecure-h2c) [options]\n"
    "  --model PATH            GGUF model to serve (default $HINGE_MODEL); again for more models (at most\n"
    "                          16): the first is the default, the others load when a session names them\n"
    "  --model-memory BYTES    most bytes of loaded models (K, M, G suffixes); unused ones are evicted,\n"
    "                          least valuable first; the default model always stays (default: no limit)\n"
    "  --listen ADDR:PORT      numeric address; port 0 picks a free one (default 127.0.0.1:8443)\n"
    "  --cert PEM, --key PEM   TLS 1.3 certificate chain and private key\n"
    "  --insecure-h2c          cleartext HTTP/2 (prior knowledge); loopback addresses only\n"
    "  --threads N             compute threads (default: online CPUs)\n"
    "  --max-sessions N        concurrent sessions (default 16)\n"
    "  --max-conns N           concurrent connections (default 64)\n"
    "  --max-ctx N             most positions per session (default min(4096, trained context))\n"
    "  --max-step N            most positions per step request (default 512)\n"
    "  --prefill-chunk N       most prefill positions per batch: longer prompts run in chunks\n"
    "                          between decode batches (default 64)\n"
    "  --stall-timeout-ms N    drop a request whose body stops arriving (default 10000)\n"
    "  --idle-timeout-ms N     close idle connections (default 120000)\n"
    "  --session-timeout-ms N  close sessions without requests (default 600000)\n"
    "  --drain-timeout-ms N    on SIGTERM, wait at most this for in-flight steps (default 30000)\n"
    "  --spin-us N             busy-poll up to N us instead of sleeping around steps (default 0: off;\n"
    "                          saves wake-ups per token on a server with cores to spare)\n"
    "  --no-measure            do not time each layer at start-up\n"
    "  --profile FILE          edge profile of this model (hinge profile --role edge), served in\n"
    "                          /v1/profile for devices' --cut auto\n"
    "  --instance-id HEX8      8 lowercase hex digits that start every session id, for a proxy to\n"
    "                          route a session to this edge (docs/deploy/README-haproxy.md)\n"
    "  --record-dir DIR        debug: write every request received into DIR\n"
    "  --log-level L           error, warn, info (default) or debug\n";

enum {
    OPT_CERT = 256, OPT_KEY, OPT_H2C, OPT_THREADS, OPT_MAX_SESSIONS, OPT_MAX_CONNS, OPT_MAX_CTX, OPT_MAX_STEP,
    OPT_STALL, OPT_IDLE, OPT_SESSION_TO, OPT_DRAIN, OPT_NO_MEASURE, OPT_RECORD, OPT_LOG_LEVEL, OPT_SPIN,
    OPT_PROFILE, OPT_PREFILL_CHUNK, OPT_INSTANCE, OPT_MODEL_MEMORY,
};

static const struct option long_opts[] = {
    {"model", required_argument, NULL, 'm'},
    {"listen", required_argument, NULL, 'l'},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"insecure-h2c", no_argument, NULL, OPT_H2C},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"max-ctx", required_argument, NULL, OPT_MAX_CTX},
    {"max-step", required_argument, NULL, OPT_MAX_STEP},
    {"prefill-chunk", required_argument, NULL, OPT_PREFILL_CHUNK},
    {"stall-timeout-ms", required_argument, NULL, OPT_STALL},
    {"idle-timeout-ms", required_argument, NULL, OPT_IDLE},
    {"session-timeout-ms", required_argument, NULL, OPT_SESSION_TO},
    {"drain-timeout-ms", required_argument, NULL, OPT_DRAIN},
    {"spin-us", required_argument, NULL, OPT_SPIN},
    {"no-measure", no_argument, NULL, OPT_NO_MEASURE},
    {"profile", required_argument, NULL, OPT_PROFILE},
    {"record-dir", required_argument, NULL, OPT_RECORD},
    {"instance-id", required_argument, NULL, OPT_INSTANCE},
    {"model-memory", required_argument, NULL, OPT_MODEL_MEMORY},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_u32(const char *s, const char *what, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "hinge-edge: --%s: '%s' is not an integer in [%u, %u]\n", what, s, lo, hi);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_level(const char *s, hinge_log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug", "trace"};
    for (int i = 0; i < 5; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (hinge_log_level)i;
            return 0;
        }
    }
    fprintf(stderr, "hinge-edge: --log-level: '%s' is not error, warn, info or debug\n", s);
    return -1;
}

/* Options that take a u32: where each goes and its range. */
static int parse_number(int opt, const char *arg, hinge_edge_config *cfg)
{
    uint32_t v = 0;
    int rc;
    switch (opt) {
    case OPT_THREADS: rc = parse_u32(arg, "threads", 1, 256, &v); cfg->threads = (int)v; return rc;
    case OPT_MAX_SESSIONS: return parse_u32(arg, "max-sessions", 1, 4096, &cfg->max_sessions);
    case OPT_MAX_CONNS: return parse_u32(arg, "max-conns", 1, 4096, &cfg->max_conns);
    case OPT_MAX_CTX: return parse_u32(arg, "max-ctx", 1, 1u << 24, &cfg->max_ctx);
    case OPT_MAX_STEP: return parse_u32(arg, "max-step", 1, 1u << 24, &cfg->max_step);
    case OPT_PREFILL_CHUNK: return parse_u32(arg, "prefill-chunk", 1, 4096, &cfg->prefill_chunk);
    case OPT_STALL: return parse_u32(arg, "stall-timeout-ms", 1, 3600000, &cfg->stall_timeout_ms);
    case OPT_IDLE: return parse_u32(arg, "idle-timeout-ms", 1, 86400000, &cfg->idle_timeout_ms);
    case OPT_SESSION_TO: return parse_u32(arg, "session-timeout-ms", 1, 86400000, &cfg->session_timeout_ms);
    case OPT_DRAIN: return parse_u32(arg, "drain-timeout-ms", 1, 3600000, &cfg->drain_timeout_ms);
    case OPT_SPIN: return parse_u32(arg, "spin-us", 0, 100000, &cfg->spin_us);
    }
    return -1;
}

enum { MODELS_MAX = 16 };

/* BYTES with an optional K, M or G (powers of 1024). */
static int parse_bytes(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
    if (errno || end == s || s[0] == '-' || (shift && end[1]) || (!shift && *end) || v > (UINT64_MAX >> shift)) {
        fprintf(stderr, "hinge-edge: --model-memory: '%s' is not a byte count (e.g. 512M)\n", s);
        return -1;
    }
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_args(int argc, char **argv, hinge_edge_config *cfg, hinge_logger *lg)
{
    static const char *paths[MODELS_MAX];
    int opt;
    while ((opt = getopt_long(argc, argv, "m:l:h", long_opts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            if (cfg->n_models == MODELS_MAX) {
                fprintf(stderr, "hinge-edge: at most %d --model\n", MODELS_MAX);
                return 2;
            }
            paths[cfg->n_models++] = optarg;
            cfg->model_paths = paths;
            break;
        case OPT_MODEL_MEMORY:
            if (parse_bytes(optarg, &cfg->model_memory) != 0)
                return 2;
            break;
        case 'l': cfg->listen = optarg; break;
        case OPT_CERT: cfg->cert = optarg; break;
        case OPT_KEY: cfg->key = optarg; break;
        case OPT_H2C: cfg->insecure_h2c = true; break;
        case OPT_NO_MEASURE: cfg->no_measure = true; break;
        case OPT_PROFILE: cfg->profile = optarg; break;
        case OPT_RECORD: cfg->record_dir = optarg; break;
        case OPT_INSTANCE: cfg->instance_id = optarg; break;
        case OPT_LOG_LEVEL:
            if (parse_level(optarg, &lg->level) != 0)
                return 2;
            break;
        case 'h': fputs(usage_text, stdout); return 1;
        case '?': fputs(usage_text, stderr); return 2;
        default:
            if (parse_number(opt, optarg, cfg) != 0)
                return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hinge-edge: unexpected argument '%s'\n%s", argv[optind], usage_text);
        return 2;
    }
    if (!cfg->n_models)
        cfg->model_path = getenv("HINGE_MODEL");
    if (!cfg->n_models && (!cfg->model_path || !*cfg->model_path)) {
        fprintf(stderr, "hinge-edge: --model PATH is required (or $HINGE_MODEL)\n");
        return 2;
    }
    return 0;
}

/* SIGTERM/SIGINT go to the edge's signalfd: block them before any thread
 * starts; SIGPIPE is ignored (peers may close mid-write). */
static int setup_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    struct sigaction ign = {.sa_handler = SIG_IGN};
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 || sigaction(SIGPIPE, &ign, NULL) != 0) {
        perror("hinge-edge: signals");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    hinge_logger lg = {.fn = hinge_log_stderr, .user = NULL, .level = HINGE_LOG_INFO};
    hinge_edge_config cfg = {.handle_signals = true, .log = &lg};
    int rc = parse_args(argc, argv, &cfg, &lg);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    if (cfg.insecure_h2c && (cfg.cert || cfg.key)) {
        fprintf(stderr, "hinge-edge: --insecure-h2c and --cert/--key exclude each other\n");
        return 2;
    }
    if (setup_signals() != 0)
        return 1;
    char err[256] = "";
    hinge_edge *e = NULL;
    hinge_status s = hinge_edge_create(&cfg, &e, err, sizeof err);
    if (s != HINGE_OK) {
        fprintf(stderr, "hinge-edge: %s (%s)\n", err, hinge_strerror(s));
        return s == HINGE_ERR_INVALID ? 2 : 1;
    }
    printf("listening on %s\n", hinge_edge_address(e));
    fflush(stdout);
    s = hinge_edge_run(e);
    if (s != HINGE_OK)
        fprintf(stderr, "hinge-edge: %s (%s)\n", hinge_edge_errmsg(e), hinge_strerror(s));
    hinge_edge_destroy(e);
    return s == HINGE_OK ? 0 : 1;
}
