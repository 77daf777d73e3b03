/* hinge edge: the HTTP/2 server that finishes split forward passes.
 *
 * It loads one model and serves many sessions over HTTP/2 (TLS 1.3 with
 * ALPN h2, or cleartext h2c with prior knowledge on loopback only). Each
 * session owns the KV cache of layers [k, N) and runs, per step, those
 * layers, the head and the sampler on the activations the device sent
 * (protocol v1: docs/protocol.md).
 *
 * One thread runs the epoll event loop (accept, TLS, HTTP/2, JSON); one
 * compute worker thread runs the steps (with the compute thread pool), fed
 * by a queue and answering through an eventfd, so health checks and other
 * sessions are served while a step runs. The worker batches: the steps of
 * all sessions that are ready go through the model together (the weights
 * read once per batch), long prompts in chunks of prefill_chunk positions
 * between them. A session's tokens do not depend on what it shares a batch
 * with (batch invariance: model/batch.h).
 *
 * The caller must ignore SIGPIPE (a peer may close mid-write). With
 * handle_signals, it must also block SIGTERM, SIGINT and SIGHUP in every
 * thread before hinge_edge_create (which starts threads); the edge then
 * drains on SIGTERM/SIGINT and reloads its certificate, key and API keys
 * on SIGHUP, through a signalfd. */
#ifndef HINGE_EDGE_H
#define HINGE_EDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "status.h"

typedef struct hinge_edge hinge_edge;

/* Zero fields take the defaults in brackets. Strings are borrowed for the
 * duration of hinge_edge_create only. */
typedef struct hinge_edge_config {
    const char *model_path; /* the default model (when model_paths is NULL) */
    const char *const *model_paths; /* several models (at most 16): the first is the default, loaded for
                               good; the others are loaded when a session names one (by sha256) [NULL] */
    uint32_t n_models;      /* entries of model_paths */
    uint64_t model_memory;  /* bytes the loaded models may hold (weights and batch buffers, on the host and,
                               with backend vulkan, on the device); over it, unused
                               models are evicted, least valuable first; the default always stays [0: no limit] */
    const char *listen;     /* "ADDR:PORT" or "[ADDR]:PORT", numeric; port 0 picks a free one [127.0.0.1:8443] */
    const char *cert;       /* PEM certificate chain (TLS) */
    const char *key;        /* PEM private key (TLS) */
    bool insecure_h2c;      /* cleartext HTTP/2 with prior knowledge; refused unless listen is loopback */
    bool handle_signals;    /* stop on SIGTERM/SIGINT (see above) */
    const char *backend;    /* "cpu" or "vulkan": where the sessions' layers [cut, N) and head run. vulkan:
                               on the first Vulkan device (its self-test must pass at start-up), each
                               session with its own executor and device KV cache (counted in kv_budget),
                               a batch's sessions in one device batch (verify steps and private heads
                               too); a model the kernels do not run is refused (422) ["cpu"] */
    int threads;            /* compute threads [online CPUs] */
    uint32_t max_sessions;  /* concurrent sessions [16] */
    uint32_t max_conns;     /* concurrent connections [64] */
    uint32_t max_ctx;       /* most positions a session may hold [min(4096, n_ctx_train)] */
    uint32_t max_step;      /* most positions per step request [512] */
    uint64_t kv_budget;     /* bytes of KV cache all sessions together may hold; a session's cache grows
                               in blocks as it is used, and a new session or a step that does not fit
                               is refused (503, Retry-After) [0: no limit] */
    uint32_t prefill_chunk; /* most positions of longer steps per batch: a longer prompt runs in
                               chunks between decode batches, and decode steps wait at most one [64] */
    uint32_t stall_timeout_ms;   /* a request body or handshake making no progress for this long is dropped (408) [10000] */
    uint32_t idle_timeout_ms;    /* a connection with no open stream and no traffic is closed [120000] */
    uint32_t session_timeout_ms; /* a session without requests is closed [600000] */
    uint32_t drain_timeout_ms;   /* on stop, the longest wait for open sessions to finish [30000] */
    uint32_t spin_us;       /* busy-poll instead of sleeping: the loop while steps are out, the worker
                               after a step, for at most this long [0: never]. Saves thread wake-ups
                               per token on a server with cores to spare; costs a spinning core. */
    bool no_measure;        /* skip timing each layer at start-up (for /v1/profile) */
    const char *profile;    /* an edge profile of this model (`hinge profile --role edge`), checked at
                               start and served whole in /v1/profile for --cut auto; NULL: none */
    const char *instance_id; /* 8 lowercase hex digits that start every session id this edge gives out,
                               so that a proxy in front of several edges routes a session's requests
                               to the edge holding its KV cache (docs/deploy/README-haproxy.md);
                               NULL: ids are random throughout */
    const char *record_dir; /* debug: write every request received (method, path, body) here; NULL: off */
    /* Authentication (docs/deploy/README.md). With neither api_keys nor client_ca the edge is open, which
     * it refuses on a non-loopback address unless no_auth. */
    const char *api_keys;   /* file: per line the lowercase hex SHA-256 of a token, then optionally a space and
                               the client's name; clients send "Authorization: Bearer TOKEN" */
    const char *client_ca;  /* PEM of the CAs that sign client certificates (mutual TLS); the identity is
                               the certificate's subject */
    bool no_auth;           /* serve without authentication on any address */
    /* Quotas per client (an API key's name or a certificate's subject; an open edge has one client). */
    uint32_t client_max_sessions; /* [max_sessions] */
    uint64_t client_kv_bytes;     /* bytes of KV cache and session buffers [0: no limit] */
    /* Connection hygiene. */
    uint32_t max_conns_per_addr;  /* connections from one IP address [max_conns: off, as clients behind a
                                     carrier NAT share one] */
    uint32_t handshake_timeout_ms; /* a TLS handshake must finish within this [5000] */
    uint32_t session_grace_ms;    /* a session whose connection closed lives this long without one [30000] */
    const hinge_logger *log; /* copied; NULL: silent */
} hinge_edge_config;

/* Loads the model (with its sha256), binds and listens, starts the compute
 * worker. Errors: HINGE_ERR_INVALID (bad config, h2c off loopback, TLS
 * without cert/key), HINGE_ERR_IO (model, cert, bind), HINGE_ERR_FORMAT
 * (model), HINGE_ERR_NOMEM. On failure err says why and *out is untouched. */
hinge_status hinge_edge_create(const hinge_edge_config *cfg, hinge_edge **out, char *err, size_t errlen);

/* Stops the worker, closes every connection and session. NULL is a no-op. */
void hinge_edge_destroy(hinge_edge *e);

/* "ADDR:PORT" actually bound (the chosen port when the config said 0). */
const char *hinge_edge_address(const hinge_edge *e);

const char *hinge_edge_errmsg(const hinge_edge *e);

/* Reloads the certificate, key and API keys (what SIGHUP does): new
 * connections use them, open ones keep theirs. On failure the old ones stay
 * and err says why. Loop thread only (or before hinge_edge_run). */
hinge_status hinge_edge_reload(hinge_edge *e, char *err, size_t errlen);

/* Serves until stopped (hinge_edge_stop, or SIGTERM/SIGINT with
 * handle_signals). On stop it opens no new session (503 "draining") but
 * serves the steps of the open ones until they are closed or
 * drain_timeout_ms pass; then it ends the rest (their requests get 503
 * "draining": the SDK fails over), lets the responses go out and returns
 * HINGE_OK. Errors: HINGE_ERR_IO (epoll failed). */
hinge_status hinge_edge_run(hinge_edge *e);

/* Asks hinge_edge_run to stop. Safe from any thread and from a signal
 * handler (it writes an eventfd). */
void hinge_edge_stop(hinge_edge *e);

#endif
