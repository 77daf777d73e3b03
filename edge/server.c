/* The server: creation, the epoll loop, accepting, timers and the drain
 * on stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "edge_impl.h"

enum {
    DEF_MAX_SESSIONS = 16,
    DEF_MAX_CONNS = 64,
    DEF_MAX_CTX = 4096,
    DEF_MAX_STEP = 512,
    DEF_PREFILL_CHUNK = 64,
    LIMIT_PREFILL_CHUNK = 4096,
    DEF_STALL_MS = 10000,
    DEF_IDLE_MS = 120000,
    DEF_SESSION_MS = 600000,
    DEF_DRAIN_MS = 30000,
    DEF_HANDSHAKE_MS = 5000,
    DEF_GRACE_MS = 30000,
    DRAIN_END_MS = 2000, /* after the drain timeout: for the steps in flight to answer */
    BACKOFF_MIN_MS = 50, /* accept paused on EMFILE: doubling up to BACKOFF_MAX_MS */
    BACKOFF_MAX_MS = 1000,
    MAX_EVENTS = 64,
    ACCEPTS_PER_WAKE = 64,
    LIMIT_SESSIONS = 4096,
    LIMIT_CONNS = 4096,
    LIMIT_SPIN_US = 100000,
};

uint64_t edge_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t edge_now_ms(void)
{
    return edge_now_us() / 1000u;
}

int edge_epoll_mod(hinge_edge *e, int fd, edge_watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(e->ep, EPOLL_CTL_MOD, fd, &ev);
}

static int watch_fd(hinge_edge *e, int fd, edge_watch *w, edge_watch_kind kind)
{
    *w = (edge_watch){kind, e};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
    return epoll_ctl(e->ep, EPOLL_CTL_ADD, fd, &ev);
}

/* ---- the listening socket ---- */

/* Splits "ADDR:PORT" / "[ADDR]:PORT" and fills ss. */
static hinge_status parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len, char *err,
                                 size_t errlen)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    const char *h = spec, *h_end = colon;
    if (spec[0] == '[') {
        h = spec + 1;
        h_end = strchr(spec, ']');
        if (!h_end || h_end[1] != ':')
            return hinge_fail(err, errlen, HINGE_ERR_INVALID, "listen '%s': expected [ADDR]:PORT", spec);
        colon = h_end + 1;
    }
    if (!colon || !h_end || (size_t)(h_end - h) >= sizeof host)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "listen '%s': expected ADDR:PORT", spec);
    memcpy(host, h, (size_t)(h_end - h));
    host[h_end - h] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || colon[1] == '-' || port > 65535)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "listen '%s': port is not in [0, 65535]", spec);
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
    } else {
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "listen '%s': '%s' is not a numeric address", spec, host);
    }
    return HINGE_OK;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
        port = ntohs(v4->sin_port);
        snprintf(out, cap, "%s:%u", host, port);
    } else {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
        port = ntohs(v6->sin6_port);
        snprintf(out, cap, "[%s]:%u", host, port);
    }
}

/* The IP address alone (the per-address cap). */
static void format_host(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    const void *a = ss->ss_family == AF_INET ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                                             : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (!inet_ntop(ss->ss_family, a, out, (socklen_t)cap))
        snprintf(out, cap, "?");
}

static hinge_status open_listener(hinge_edge *e, const char *spec, const hinge_edge_config *cfg, char *err,
                                  size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    hinge_status s = parse_listen(spec, &ss, &len, err, errlen);
    if (s != HINGE_OK)
        return s;
    if (cfg->insecure_h2c && !is_loopback(&ss))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID,
                          "--insecure-h2c serves cleartext: only on a loopback address, not %s", spec);
    if (!e->auth_on && !cfg->no_auth && !is_loopback(&ss))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID,
                          "%s is not a loopback address: give --api-keys or --client-ca (or --no-auth to serve "
                          "anyone)",
                          spec);
    e->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (e->listen_fd < 0 || setsockopt(e->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(e->listen_fd, (struct sockaddr *)&ss, len) != 0 || listen(e->listen_fd, 128) != 0)
        return hinge_fail(err, errlen, HINGE_ERR_IO, "cannot listen on %s: %s", spec, strerror(errno));
    len = sizeof ss;
    if (getsockname(e->listen_fd, (struct sockaddr *)&ss, &len) != 0)
        return hinge_fail(err, errlen, HINGE_ERR_IO, "getsockname: %s", strerror(errno));
    format_addr(&ss, e->address, sizeof e->address);
    if (watch_fd(e, e->listen_fd, &e->w_listen, EDGE_W_LISTEN) != 0)
        return hinge_fail(err, errlen, HINGE_ERR_IO, "epoll: %s", strerror(errno));
    return HINGE_OK;
}

/* Out of descriptors (or memory): a waiting connection stays in the
 * backlog, so the listening socket would wake the loop at once, forever.
 * Take it out of the epoll set for a while instead (doubling while it
 * lasts); tick() puts it back. */
static void accept_pause(hinge_edge *e, int err)
{
    e->accept_backoff_ms = e->accept_backoff_ms ? e->accept_backoff_ms * 2 : BACKOFF_MIN_MS;
    if (e->accept_backoff_ms > BACKOFF_MAX_MS)
        e->accept_backoff_ms = BACKOFF_MAX_MS;
    e->accept_paused = true;
    e->accept_resume_ms = edge_now_ms() + e->accept_backoff_ms;
    e->conns_refused++;
    edge_epoll_mod(e, e->listen_fd, &e->w_listen, 0);
    edge_log_limited(e, EDGE_RL_ACCEPT, HINGE_LOG_WARN, "accept: %s: not accepting for %u ms (%u connections open)",
                     strerror(err), e->accept_backoff_ms, e->n_conns);
}

static void accept_resume(hinge_edge *e, uint64_t now)
{
    if (!e->accept_paused || now < e->accept_resume_ms || e->listen_fd < 0)
        return;
    e->accept_paused = false;
    edge_epoll_mod(e, e->listen_fd, &e->w_listen, EPOLLIN);
}

static void accept_one(hinge_edge *e, int fd, const struct sockaddr_storage *ss)
{
    char peer[64], addr[EDGE_ADDR_MAX];
    format_addr(ss, peer, sizeof peer);
    format_host(ss, addr, sizeof addr);
    const char *no = edge_conn_admit(e, addr);
    edge_conn *c = NULL;
    hinge_status s = no ? HINGE_ERR_RANGE : edge_conn_open(e, fd, peer, addr, &c);
    if (s != HINGE_OK) {
        e->conns_refused++;
        edge_log_limited(e, EDGE_RL_REFUSE, HINGE_LOG_WARN, "refusing %s: %s", peer, no ? no : hinge_strerror(s));
        close(fd);
        return;
    }
    e->conns_accepted++;
    e->accept_backoff_ms = 0;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    hinge_log(&e->log, HINGE_LOG_DEBUG, "%s: connected", peer);
    edge_conn_flush(c); /* h2c: the server's SETTINGS */
}

static void accept_all(hinge_edge *e)
{
    for (int i = 0; i < ACCEPTS_PER_WAKE && e->listen_fd >= 0 && !e->accept_paused; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(e->listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accept_one(e, fd, &ss);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            accept_pause(e, errno);
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
            edge_log_limited(e, EDGE_RL_ACCEPT, HINGE_LOG_WARN, "accept: %s", strerror(errno));
        return;
    }
}

/* ---- creation ---- */

static void copy_limits(hinge_edge *e, const hinge_edge_config *cfg)
{
    uint32_t ctx_cap = e->m->hp.n_ctx_train ? e->m->hp.n_ctx_train : DEF_MAX_CTX;
    e->max_sessions = cfg->max_sessions ? cfg->max_sessions : DEF_MAX_SESSIONS;
    e->max_conns = cfg->max_conns ? cfg->max_conns : DEF_MAX_CONNS;
    e->max_ctx = cfg->max_ctx ? cfg->max_ctx : (ctx_cap < DEF_MAX_CTX ? ctx_cap : DEF_MAX_CTX);
    e->max_step = cfg->max_step ? cfg->max_step : DEF_MAX_STEP;
    e->stall_ms = cfg->stall_timeout_ms ? cfg->stall_timeout_ms : DEF_STALL_MS;
    e->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : DEF_IDLE_MS;
    e->session_ms = cfg->session_timeout_ms ? cfg->session_timeout_ms : DEF_SESSION_MS;
    e->drain_ms = cfg->drain_timeout_ms ? cfg->drain_timeout_ms : DEF_DRAIN_MS;
    e->spin_us = cfg->spin_us < LIMIT_SPIN_US ? cfg->spin_us : LIMIT_SPIN_US;
    e->prefill_chunk = cfg->prefill_chunk ? cfg->prefill_chunk : DEF_PREFILL_CHUNK;
    e->client_max_sessions = cfg->client_max_sessions ? cfg->client_max_sessions : e->max_sessions;
    e->client_kv_bytes = cfg->client_kv_bytes;
    /* off by default: phones behind a carrier NAT share an address */
    e->max_conns_per_addr = cfg->max_conns_per_addr ? cfg->max_conns_per_addr : e->max_conns;
    e->handshake_ms = cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : DEF_HANDSHAKE_MS;
    e->session_grace_ms = cfg->session_grace_ms ? cfg->session_grace_ms : DEF_GRACE_MS;
    e->conn_slots = e->max_conns + ACCEPTS_PER_WAKE;
}

static hinge_status check_config(const hinge_edge_config *cfg, char *err, size_t errlen)
{
    if (!cfg->model_path && !cfg->n_models)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "no model path");
    if (!cfg->insecure_h2c && (!cfg->cert || !cfg->key))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID,
                          "TLS needs --cert and --key (cleartext h2c only with --insecure-h2c on loopback)");
    if (cfg->insecure_h2c && cfg->client_ca)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "--client-ca needs TLS, not --insecure-h2c");
    if (cfg->no_auth && (cfg->api_keys || cfg->client_ca))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "--no-auth excludes --api-keys and --client-ca");
    if (cfg->max_sessions > LIMIT_SESSIONS || cfg->max_conns > LIMIT_CONNS)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "max sessions and connections are capped at %d",
                          LIMIT_SESSIONS);
    if (cfg->max_step > EDGE_REQ_MAX_CTX || cfg->max_ctx > EDGE_REQ_MAX_CTX)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "max ctx and step are capped at %d", EDGE_REQ_MAX_CTX);
    if (cfg->instance_id && (strlen(cfg->instance_id) != EDGE_INSTANCE_HEX ||
                             strspn(cfg->instance_id, "0123456789abcdef") != EDGE_INSTANCE_HEX))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "the instance id must be %d lowercase hex digits",
                          EDGE_INSTANCE_HEX);
    if (cfg->prefill_chunk > LIMIT_PREFILL_CHUNK)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "the prefill chunk is capped at %d positions",
                          LIMIT_PREFILL_CHUNK);
    return HINGE_OK;
}

static hinge_status open_fds(hinge_edge *e, const hinge_edge_config *cfg, char *err, size_t errlen)
{
    e->ep = epoll_create1(EPOLL_CLOEXEC);
    e->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->ep < 0 || e->stop_fd < 0 || watch_fd(e, e->stop_fd, &e->w_stop, EDGE_W_STOP) != 0 ||
        watch_fd(e, edge_worker_fd(e->worker), &e->w_worker, EDGE_W_WORKER) != 0)
        return hinge_fail(err, errlen, HINGE_ERR_IO, "epoll/eventfd: %s", strerror(errno));
    if (cfg->handle_signals) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        e->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (e->sig_fd < 0 || watch_fd(e, e->sig_fd, &e->w_sig, EDGE_W_SIGNAL) != 0)
            return hinge_fail(err, errlen, HINGE_ERR_IO, "signalfd: %s", strerror(errno));
    }
    return open_listener(e, cfg->listen ? cfg->listen : "127.0.0.1:8443", cfg, err, errlen);
}

static char *dup_or_null(const char *s, bool *ok)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *ok = false;
    return d;
}

/* Paths kept for reloads; the API keys read. */
static hinge_status copy_auth(hinge_edge *e, const hinge_edge_config *cfg, char *err, size_t errlen)
{
    bool ok = true;
    e->cert_path = dup_or_null(cfg->cert, &ok);
    e->key_path = dup_or_null(cfg->key, &ok);
    e->client_ca_path = dup_or_null(cfg->client_ca, &ok);
    e->keys_path = dup_or_null(cfg->api_keys, &ok);
    if (!ok)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    e->auth_on = cfg->api_keys || cfg->client_ca;
    return cfg->api_keys ? edge_auth_load(e, cfg->api_keys, err, errlen) : HINGE_OK;
}

hinge_status hinge_edge_reload(hinge_edge *e, char *err, size_t errlen)
{
    edge_key *old_keys = e->keys;
    size_t old_n = e->n_keys;
    if (e->keys_path) {
        e->keys = NULL; /* edge_auth_load replaces them only on success */
        hinge_status s = edge_auth_load(e, e->keys_path, err, errlen);
        if (s != HINGE_OK) {
            e->keys = old_keys;
            e->n_keys = old_n;
            return s;
        }
    }
    if (e->tls) {
        SSL_CTX *ctx = edge_tls_create(e->cert_path, e->key_path, e->client_ca_path, !e->keys, err, errlen);
        if (!ctx) {
            if (e->keys != old_keys) {
                free(e->keys);
                e->keys = old_keys;
                e->n_keys = old_n;
            }
            return HINGE_ERR_IO;
        }
        SSL_CTX_free(e->tls); /* open connections keep a reference to the old one */
        e->tls = ctx;
    }
    if (e->keys != old_keys)
        free(old_keys);
    e->reloads++;
    return HINGE_OK;
}

static hinge_status edge_init(hinge_edge *e, const hinge_edge_config *cfg, char *err, size_t errlen)
{
    const char *const *paths = cfg->n_models ? cfg->model_paths : &cfg->model_path;
    hinge_status s = edge_models_init(e, paths, cfg->n_models ? cfg->n_models : 1, err, errlen);
    if (s != HINGE_OK)
        return s;
    e->model_memory = cfg->model_memory;
    copy_limits(e, cfg);
    snprintf(e->model_file, sizeof e->model_file, "%s", e->models[0].file);
    snprintf(e->instance_id, sizeof e->instance_id, "%s", cfg->instance_id ? cfg->instance_id : "");
    if (tp_create(cfg->threads, &e->tp) != HINGE_OK)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "cannot start %d compute threads", cfg->threads);
    if ((s = copy_auth(e, cfg, err, errlen)) != HINGE_OK)
        return s;
    if (!cfg->insecure_h2c &&
        !(e->tls = edge_tls_create(cfg->cert, cfg->key, cfg->client_ca, !e->keys, err, errlen)))
        return HINGE_ERR_IO;
    e->sessions = calloc(e->max_sessions, sizeof *e->sessions);
    e->conns = calloc(e->conn_slots, sizeof *e->conns);
    e->cuts = calloc(e->m->hp.n_layer + 1, sizeof *e->cuts);
    if (kv_pool_create((size_t)cfg->kv_budget, &e->kv) != HINGE_OK)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    bool vulkan = cfg->backend && strcmp(cfg->backend, "vulkan") == 0;
    if (cfg->backend && !vulkan && strcmp(cfg->backend, "cpu") != 0)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "backend '%s' is not cpu or vulkan", cfg->backend);
    if (vulkan && (s = edge_vk_open(e, err, errlen)) != HINGE_OK)
        return s;
    if (cfg->record_dir && !(e->record_dir = strdup(cfg->record_dir)))
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    if (!e->sessions || !e->conns || !e->cuts)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    if (cfg->profile && (s = edge_profile_load(e, cfg->profile, err, errlen)) != HINGE_OK)
        return s;
    if (!cfg->no_measure)
        edge_profile_measure(e);
    const char *code;
    if (edge_model_ensure(e, &e->models[0], &code, err, errlen) != 0)
        return HINGE_ERR_NOMEM;
    if (edge_worker_create(e, e->max_sessions, e->prefill_chunk, &e->worker) != HINGE_OK)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "cannot start the compute worker");
    return open_fds(e, cfg, err, errlen);
}

hinge_status hinge_edge_create(const hinge_edge_config *cfg, hinge_edge **out, char *err, size_t errlen)
{
    if (!cfg || !out)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "NULL config");
    hinge_status s = check_config(cfg, err, errlen);
    if (s != HINGE_OK)
        return s;
    hinge_edge *e = calloc(1, sizeof *e);
    if (!e)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    e->ep = e->listen_fd = e->stop_fd = e->sig_fd = -1;
    if (cfg->log)
        e->log = *cfg->log;
    s = edge_init(e, cfg, err, errlen);
    if (s != HINGE_OK) {
        hinge_edge_destroy(e);
        return s;
    }
    const model_hparams *hp = &e->m->hp;
    hinge_log(&e->log, HINGE_LOG_INFO,
              "serving %s (%u layers, n_embd %u) on %s over %s; %d compute threads; batches of up to %u sessions, "
              "prefill in chunks of %u positions; backend %s%s%s; %s",
              e->m->name, hp->n_layer, hp->n_embd, e->address, e->tls ? "TLS 1.3 h2" : "cleartext h2c",
              tp_threads(e->tp), e->max_sessions, e->prefill_chunk, e->vk ? "vulkan on " : "cpu", edge_vk_device(e),
              e->vk ? " (the sessions of a batch one after another)" : "",
              e->keys && e->client_ca_path ? "API keys or client certificates"
              : e->keys                    ? "API keys"
              : e->client_ca_path          ? "client certificates"
                                           : "no authentication");
    *out = e;
    return HINGE_OK;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void hinge_edge_destroy(hinge_edge *e)
{
    if (!e)
        return;
    edge_worker_destroy(e->worker); /* joins: no step runs after this */
    for (uint32_t i = 0; e->conns && i < e->conn_slots; i++)
        if (e->conns[i])
            edge_conn_close(e->conns[i]);
    edge_sessions_free(e);
    edge_vk_close(e); /* after the sessions' executors */
    kv_pool_destroy(e->kv); /* after the sessions: they give their blocks back */
    close_fd(&e->listen_fd);
    close_fd(&e->stop_fd);
    close_fd(&e->sig_fd);
    close_fd(&e->ep);
    SSL_CTX_free(e->tls);
    tp_destroy(e->tp);
    edge_models_free(e);
    free(e->sessions);
    free(e->conns);
    free(e->cuts);
    free(e->layer_us);
    json_decref(e->profile);
    free(e->record_dir);
    free(e->keys);
    EVP_MD_free(e->sha256);
    free(e->cert_path);
    free(e->key_path);
    free(e->client_ca_path);
    free(e->keys_path);
    free(e);
}

const char *hinge_edge_address(const hinge_edge *e)
{
    return e->address;
}

const char *hinge_edge_errmsg(const hinge_edge *e)
{
    return e->errmsg;
}

void hinge_edge_stop(hinge_edge *e)
{
    uint64_t one = 1;
    ssize_t n = write(e->stop_fd, &one, sizeof one);
    (void)n; /* a full counter already means "stop" */
}

/* ---- the loop ---- */

/* A drain: no new connection or session; the open sessions go on over
 * their connections (no GOAWAY yet) until they are closed, idle, or
 * drain_ms pass (then ended: drain_end). */
static void start_drain(hinge_edge *e, const char *why)
{
    if (e->draining)
        return;
    e->draining = true;
    e->drain_deadline_ms = edge_now_ms() + e->drain_ms;
    hinge_log(&e->log, HINGE_LOG_INFO, "%s: no new connections or sessions; finishing %u open sessions (at most %u ms)",
              why, e->n_sessions, e->drain_ms);
    close_fd(&e->listen_fd); /* closing removes it from the epoll set */
}

static void goaway_all(hinge_edge *e)
{
    for (uint32_t i = 0; i < e->conn_slots; i++)
        if (e->conns[i])
            edge_conn_goaway(e->conns[i]);
}

static bool drained(hinge_edge *e)
{
    uint32_t queued, running;
    edge_worker_load(e->worker, &queued, &running);
    if (queued || running)
        return false;
    for (uint32_t i = 0; i < e->conn_slots; i++)
        if (e->conns[i] && edge_conn_busy(e->conns[i]))
            return false;
    return true;
}

static void steps_done(hinge_edge *e)
{
    edge_session *done[MAX_EVENTS];
    size_t n = edge_worker_collect(e->worker, done, MAX_EVENTS);
    for (size_t i = 0; i < n; i++)
        edge_api_step_done(e, done[i]);
}

static void reload(hinge_edge *e)
{
    char err[HINGE_ERRMSG_MAX];
    if (hinge_edge_reload(e, err, sizeof err) == HINGE_OK)
        hinge_log(&e->log, HINGE_LOG_INFO, "SIGHUP: reloaded %s%s (%zu API keys)", e->tls ? "certificate, key" : "",
                  e->keys_path ? (e->tls ? " and API keys" : "API keys") : "", e->n_keys);
    else
        hinge_log(&e->log, HINGE_LOG_ERROR, "SIGHUP: reload failed, keeping the old ones: %s", err);
}

static void on_event(hinge_edge *e, edge_watch *w, uint32_t events)
{
    switch (w->kind) {
    case EDGE_W_LISTEN: accept_all(e); break;
    case EDGE_W_WORKER: steps_done(e); break;
    case EDGE_W_CONN: edge_conn_event(w->obj, events); break;
    case EDGE_W_STOP: {
        uint64_t v;
        ssize_t n = read(e->stop_fd, &v, sizeof v);
        (void)n;
        start_drain(e, "stop requested");
        break;
    }
    case EDGE_W_SIGNAL: {
        struct signalfd_siginfo si;
        if (read(e->sig_fd, &si, sizeof si) != (ssize_t)sizeof si)
            break;
        if (si.ssi_signo == SIGHUP)
            reload(e);
        else
            start_drain(e, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    }
}

static void tick(hinge_edge *e, uint64_t now)
{
    for (uint32_t i = 0; i < e->conn_slots; i++)
        if (e->conns[i])
            edge_conn_tick(e->conns[i], now);
    if (e->draining && !e->drain_ending && now >= e->drain_deadline_ms) {
        hinge_log(&e->log, HINGE_LOG_WARN, "drain timed out after %u ms: ending %u open sessions", e->drain_ms,
                  e->n_sessions);
        e->drain_ending = true;
        e->drain_end_ms = now + DRAIN_END_MS;
    }
    edge_session_expire(e, now);
    accept_resume(e, now);
}

/* The drain is over: every session closed and every response out, or
 * drain_ms plus DRAIN_END_MS passed. */
static bool drain_over(hinge_edge *e, uint64_t now)
{
    if (e->drain_ending && now >= e->drain_end_ms)
        return true;
    return e->n_sessions == 0 && drained(e);
}

/* Goes back to connections that stopped reading at the fairness cap;
 * true if any still has input pending. */
static bool serve_pending(hinge_edge *e)
{
    bool more = false;
    for (uint32_t i = 0; i < e->conn_slots; i++) {
        edge_conn *c = e->conns[i];
        if (c && c->read_pending && !c->dead) {
            edge_conn_event(c, EPOLLIN);
            more = more || c->read_pending;
        }
    }
    return more;
}

hinge_status hinge_edge_run(hinge_edge *e)
{
    struct epoll_event evs[MAX_EVENTS];
    uint64_t last_tick = edge_now_ms();
    bool pending = false;
    for (;;) {
        uint64_t now = edge_now_ms();
        if (e->draining && drain_over(e, now))
            break;
        bool spin = e->steps_out > 0 && edge_now_us() < e->spin_until_us;
        int n = epoll_wait(e->ep, evs, MAX_EVENTS, pending || spin ? 0 : EDGE_TICK_MS);
        if (n < 0 && errno != EINTR)
            return hinge_fail(e->errmsg, sizeof e->errmsg, HINGE_ERR_IO, "epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++)
            on_event(e, evs[i].data.ptr, evs[i].events);
        pending = serve_pending(e);
        now = edge_now_ms();
        if (now - last_tick >= EDGE_TICK_MS) {
            tick(e, now);
            last_tick = now;
        }
        edge_conns_reap(e);
    }
    if (!drained(e))
        hinge_log(&e->log, HINGE_LOG_WARN, "responses still owed after the drain: dropped");
    goaway_all(e); /* one try: tells clients this was a clean stop */
    for (uint32_t i = 0; i < e->conn_slots; i++)
        if (e->conns[i])
            edge_conn_close(e->conns[i]);
    hinge_log(&e->log, HINGE_LOG_INFO, "stopped after %llu steps", (unsigned long long)e->steps_done);
    return HINGE_OK;
}
