/* hinge-edge: the edge server's command line.
 *
 *   hinge-edge --model M.gguf --listen 0.0.0.0:8443 --cert C.pem --key K.pem
 *   hinge-edge --model M.gguf --listen 127.0.0.1:0 --insecure-h2c
 *
 * Prints "listening on ADDR:PORT" on stdout once it accepts connections
 * (and nothing else on stdout); logs go to stderr, one line each with a UTC
 * timestamp (--log-format json: one JSON object a line). SIGTERM or
 * SIGINT: no new sessions, the open ones finish (at most
 * --drain-timeout-ms), exit 0. SIGHUP: reload certificate, key and API
 * keys. Exit 1 on a runtime error, 2 on a usage error. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
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
    "  --backend cpu|vulkan    where the sessions' layers and head run (default cpu); vulkan: on the\n"
    "                          first Vulkan device, one session after another (docs/edge.md)\n"
    "  --threads N             compute threads (default: online CPUs)\n"
    "  --max-sessions N        concurrent sessions (default 16)\n"
    "  --max-conns N           concurrent connections (default 64)\n"
    "  --max-ctx N             most positions per session (default min(4096, trained context))\n"
    "  --max-step N            most positions per step request (default 512)\n"
    "  --kv-budget BYTES       KV cache bytes of all sessions together (suffix K, M or G: KiB, MiB,\n"
    "                          GiB); sessions and steps that do not fit get 503 (default: no limit)\n"
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
    "  --record-dir DIR        debug: write every request received (and each step's reply) into DIR\n"
    "  --log-level L           error, warn, info (default) or debug\n"
    "  --log-format F          text (default) or json: one JSON object a line\n"
    "authentication (a non-loopback address needs one of them, or --no-auth):\n"
    "  --api-keys FILE         per line: lowercase hex SHA-256 of a token [space client-name];\n"
    "                          clients send Authorization: Bearer TOKEN; reread on SIGHUP\n"
    "  --client-ca PEM         require client certificates signed by these CAs (mutual TLS);\n"
    "                          the client is the certificate's subject\n"
    "  --no-auth               serve anyone, on any address\n"
    "per-client quotas and connection hygiene:\n"
    "  --client-max-sessions N sessions one client may hold (default --max-sessions)\n"
    "  --client-kv-bytes N     session bytes (KV cache, buffers) one client may hold; K, M, G\n"
    "                          suffixes (default: no limit)\n"
    "  --max-conns-per-addr N  connections from one IP address (default: --max-conns; mind carrier NAT)\n"
    "  --handshake-timeout-ms N  a TLS handshake must finish within this (default 5000)\n"
    "  --session-grace-ms N    a session outlives its connection this long, for the client to\n"
    "                          reconnect (default 30000)\n"
    "  --config FILE           key = value lines, one per option (long name); flags override\n"
    "  --version               print the version\n";

enum {
    OPT_CERT = 256, OPT_KEY, OPT_H2C, OPT_THREADS, OPT_MAX_SESSIONS, OPT_MAX_CONNS, OPT_MAX_CTX, OPT_MAX_STEP,
    OPT_STALL, OPT_IDLE, OPT_SESSION_TO, OPT_DRAIN, OPT_NO_MEASURE, OPT_RECORD, OPT_LOG_LEVEL, OPT_SPIN,
    OPT_PROFILE, OPT_PREFILL_CHUNK, OPT_API_KEYS, OPT_CLIENT_CA, OPT_NO_AUTH, OPT_CLIENT_SESSIONS, OPT_CLIENT_KV,
    OPT_CONNS_PER_ADDR, OPT_HANDSHAKE, OPT_GRACE, OPT_LOG_FORMAT, OPT_CONFIG, OPT_VERSION, OPT_KV_BUDGET,
    OPT_INSTANCE, OPT_MODEL_MEMORY, OPT_BACKEND,
};

static const struct option long_opts[] = {
    {"model", required_argument, NULL, 'm'},
    {"listen", required_argument, NULL, 'l'},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"insecure-h2c", no_argument, NULL, OPT_H2C},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"max-ctx", required_argument, NULL, OPT_MAX_CTX},
    {"max-step", required_argument, NULL, OPT_MAX_STEP},
    {"prefill-chunk", required_argument, NULL, OPT_PREFILL_CHUNK},
    {"kv-budget", required_argument, NULL, OPT_KV_BUDGET},
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
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"api-keys", required_argument, NULL, OPT_API_KEYS},
    {"client-ca", required_argument, NULL, OPT_CLIENT_CA},
    {"no-auth", no_argument, NULL, OPT_NO_AUTH},
    {"client-max-sessions", required_argument, NULL, OPT_CLIENT_SESSIONS},
    {"client-kv-bytes", required_argument, NULL, OPT_CLIENT_KV},
    {"max-conns-per-addr", required_argument, NULL, OPT_CONNS_PER_ADDR},
    {"handshake-timeout-ms", required_argument, NULL, OPT_HANDSHAKE},
    {"session-grace-ms", required_argument, NULL, OPT_GRACE},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"version", no_argument, NULL, OPT_VERSION},
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

/* A byte count with an optional K, M or G (powers of 1024). */
static int parse_bytes(const char *s, const char *what, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
    if (shift)
        end++;
    if (errno || end == s || *end || s[0] == '-' || v > (1ull << 50) >> shift) {
        fprintf(stderr, "hinge-edge: --%s: '%s' is not a byte count (N, NK, NM or NG)\n", what, s);
        return -1;
    }
    *out = (uint64_t)v << shift;
    return 0;
}

/* ---- logs: a UTC timestamp per line, or one JSON object a line ---- */

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

static void stamp(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void log_text(void *user, hinge_log_level level, const char *line)
{
    (void)user;
    char ts[40];
    stamp(ts, sizeof ts);
    fprintf(stderr, "%s hinge-edge %s: %s\n", ts, level_names[level <= HINGE_LOG_TRACE ? level : HINGE_LOG_TRACE],
            line);
}

static void log_json(void *user, hinge_log_level level, const char *line)
{
    (void)user;
    char ts[40], msg[1200];
    size_t n = 0;
    stamp(ts, sizeof ts);
    for (const unsigned char *p = (const unsigned char *)line; *p && n < sizeof msg - 7; p++) {
        if (*p == '"' || *p == '\\') {
            msg[n++] = '\\';
            msg[n++] = (char)*p;
        } else if (*p < 0x20 || *p >= 0x7f) { /* peer bytes may not be UTF-8: the line stays valid JSON */
            n += (size_t)snprintf(msg + n, sizeof msg - n, "\\u%04x", *p);
        } else {
            msg[n++] = (char)*p;
        }
    }
    msg[n] = '\0';
    fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n", ts,
            level_names[level <= HINGE_LOG_TRACE ? level : HINGE_LOG_TRACE], msg);
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
    case OPT_CLIENT_SESSIONS: return parse_u32(arg, "client-max-sessions", 1, 4096, &cfg->client_max_sessions);
    case OPT_CONNS_PER_ADDR: return parse_u32(arg, "max-conns-per-addr", 1, 4096, &cfg->max_conns_per_addr);
    case OPT_HANDSHAKE: return parse_u32(arg, "handshake-timeout-ms", 1, 600000, &cfg->handshake_timeout_ms);
    case OPT_GRACE: return parse_u32(arg, "session-grace-ms", 1, 86400000, &cfg->session_grace_ms);
    case OPT_CLIENT_KV: return parse_bytes(arg, "client-kv-bytes", &cfg->client_kv_bytes);
    }
    return -1;
}

enum { MODELS_MAX = 16 };
static const char *model_paths[MODELS_MAX]; /* --model, in order: the first is the default */

/* Options that take a string or nothing; 1 when opt is not one of them. */
static int parse_other(int opt, const char *arg, hinge_edge_config *cfg, hinge_logger *lg)
{
    switch (opt) {
    case 'm':
        if (cfg->n_models == MODELS_MAX) {
            fprintf(stderr, "hinge-edge: at most %d --model\n", MODELS_MAX);
            return -1;
        }
        model_paths[cfg->n_models++] = arg;
        cfg->model_paths = model_paths;
        return 0;
    case OPT_MODEL_MEMORY: return parse_bytes(arg, "model-memory", &cfg->model_memory) != 0 ? -1 : 0;
    case OPT_INSTANCE: cfg->instance_id = arg; return 0;
    case 'l': cfg->listen = arg; return 0;
    case OPT_CERT: cfg->cert = arg; return 0;
    case OPT_KEY: cfg->key = arg; return 0;
    case OPT_H2C: cfg->insecure_h2c = true; return 0;
    case OPT_NO_MEASURE: cfg->no_measure = true; return 0;
    case OPT_PROFILE: cfg->profile = arg; return 0;
    case OPT_RECORD: cfg->record_dir = arg; return 0;
    case OPT_KV_BUDGET: return parse_bytes(arg, "kv-budget", &cfg->kv_budget) != 0 ? -1 : 0;
    case OPT_API_KEYS: cfg->api_keys = arg; return 0;
    case OPT_CLIENT_CA: cfg->client_ca = arg; return 0;
    case OPT_NO_AUTH: cfg->no_auth = true; return 0;
    case OPT_CONFIG: return 0; /* read before the command line */
    case OPT_BACKEND:
        if (strcmp(arg, "cpu") == 0 || strcmp(arg, "vulkan") == 0) {
            cfg->backend = arg;
            return 0;
        }
        fprintf(stderr, "hinge-edge: --backend: '%s' is not cpu or vulkan\n", arg);
        return -1;
    case OPT_LOG_LEVEL: return parse_level(arg, &lg->level) != 0 ? -1 : 0;
    case OPT_LOG_FORMAT:
        if (strcmp(arg, "json") == 0 || strcmp(arg, "text") == 0) {
            lg->fn = arg[0] == 'j' ? log_json : log_text;
            return 0;
        }
        fprintf(stderr, "hinge-edge: --log-format: '%s' is not text or json\n", arg);
        return -1;
    }
    return 1;
}

/* One pass of getopt over argv (the config file's, then the command
 * line's: the later wins). 1: printed help or version. */
static int parse_pass(int argc, char **argv, hinge_edge_config *cfg, hinge_logger *lg)
{
    int opt;
    optind = 0; /* glibc: a full reset, for the second pass */
    while ((opt = getopt_long(argc, argv, "m:l:h", long_opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(usage_text, stdout);
            return 1;
        }
        if (opt == OPT_VERSION) {
            printf("hinge-edge %s\n", HINGE_EDGE_VERSION);
            return 1;
        }
        if (opt == '?') {
            fputs(usage_text, stderr);
            return 2;
        }
        int rc = parse_other(opt, optarg, cfg, lg);
        if (rc == 1)
            rc = parse_number(opt, optarg, cfg);
        if (rc != 0)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "hinge-edge: unexpected argument '%s'\n%s", argv[optind], usage_text);
        return 2;
    }
    return 0;
}

/* The --config FILE of the command line, if any (last one wins). */
static const char *config_path(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
    }
    return path;
}

static int parse_args(int argc, char **argv, edge_config_args *file, hinge_edge_config *cfg, hinge_logger *lg)
{
    const char *path = config_path(argc, argv);
    char err[256];
    if (path && edge_config_read(path, long_opts, file, err, sizeof err) != 0) {
        fprintf(stderr, "hinge-edge: --config: %s\n", err);
        return 2;
    }
    int rc = file->argv ? parse_pass(file->argc, file->argv, cfg, lg) : 0;
    if (rc == 0)
        rc = parse_pass(argc, argv, cfg, lg);
    if (rc != 0)
        return rc;
    if (!cfg->n_models)
        cfg->model_path = getenv("HINGE_MODEL");
    if (!cfg->n_models && (!cfg->model_path || !*cfg->model_path)) {
        fprintf(stderr, "hinge-edge: --model PATH is required (or $HINGE_MODEL)\n");
        return 2;
    }
    return 0;
}

/* SIGTERM/SIGINT/SIGHUP go to the edge's signalfd: block them before any thread
 * starts; SIGPIPE is ignored (peers may close mid-write). */
static int setup_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    struct sigaction ign = {.sa_handler = SIG_IGN};
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 || sigaction(SIGPIPE, &ign, NULL) != 0) {
        perror("hinge-edge: signals");
        return -1;
    }
    return 0;
}

static int run(const hinge_edge_config *cfg)
{
    if (cfg->insecure_h2c && (cfg->cert || cfg->key)) {
        fprintf(stderr, "hinge-edge: --insecure-h2c and --cert/--key exclude each other\n");
        return 2;
    }
    if (setup_signals() != 0)
        return 1;
    char err[256] = "";
    hinge_edge *e = NULL;
    hinge_status s = hinge_edge_create(cfg, &e, err, sizeof err);
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

int main(int argc, char **argv)
{
    hinge_logger lg = {.fn = log_text, .user = NULL, .level = HINGE_LOG_INFO};
    hinge_edge_config cfg = {.handle_signals = true, .log = &lg};
    edge_config_args file = {0};
    int rc = parse_args(argc, argv, &file, &cfg, &lg);
    if (rc == 1) /* help or version */
        rc = 0;
    else if (rc == 0)
        rc = run(&cfg);
    edge_config_free(&file); /* cfg's strings may point into it: only now */
    return rc;
}
