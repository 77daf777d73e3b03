/* edge: the structures the edge's files share. Private to edge/.
 *
 *   server.c   create/destroy, the epoll loop, accept, timers, drain
 *   conn.c     one client connection: TLS, socket I/O, the nghttp2 session
 *   http.c     nghttp2 callbacks, stream slots, submitting responses
 *   api.c      the v1 resources: health, profile, sessions, steps
 *   session.c  the session table
 *   worker.c   the compute worker thread, its queues and eventfd
 *   sched.c    the batching scheduler the worker runs: admitted steps,
 *              decode steps and prefill chunks of many sessions as one
 *              batched forward pass (model/batch.h)
 *   metrics.c  /metrics (Prometheus text) from the batch statistics
 *   profile.c  per-layer timing and the /v1/profile document
 *   models.c   the models served (--model ...), loaded on first use and
 *              evicted under --model-memory
 *   request.c  routing and the JSON request parser (request.h)
 *   tls.c      the OpenSSL server context (and client certificates)
 *   auth.c     API keys (hashed, reloaded on SIGHUP) and client identities
 *   ratelog.c  log lines that may repeat, at most one a second per kind
 *   openai.c   the OpenAI-compatible thin-client endpoints: whole-model
 *              sessions (cut 0) the edge feeds from its own tokenizer
 *   record.c   --record-dir
 *   vk.c       --backend vulkan: the device context, each session's
 *              executor of [cut, N) + head, each model's batch executor
 *              that runs a batch's sessions together (device/vk_exec.h)
 *
 * Threads: everything here belongs to the loop thread, except
 *   - a session whose `busy` flag is set: its compute state (t, hidden, rx,
 *     done_rows, step) belongs to the worker from edge_worker_submit until
 *     the worker hands it back through edge_worker_collect, across every
 *     batch its step runs in (a long prefill runs in several);
 *   - the worker's scheduler (edge_sched) and fwd_batch: the worker's alone;
 *   - the worker's queues and published statistics: under its mutex;
 *   - the count of batches started: an atomic, written by the worker, read
 *     by the loop to stamp each step it submits. */
#ifndef HINGE_EDGE_IMPL_H
#define HINGE_EDGE_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "batch.h"
#include "edge.h"
#include "forward.h"
#include "kv.h"
#include "model.h"
#include "request.h"
#include "sampler.h"
#include "tail.h"
#include "threadpool.h"
#include "transport.h"

enum {
    EDGE_MAX_STREAMS = 16,   /* SETTINGS_MAX_CONCURRENT_STREAMS: stream slots per connection */
    EDGE_PATH_MAX = 256,     /* longer :path values are answered 414 */
    EDGE_RESP_SMALL = 512,   /* per-stream response buffer (steps, errors) */
    EDGE_RESP_MAX = 65536,   /* cap on a heap response (profile) */
    EDGE_OUTBUF = 65536,     /* per-connection bytes waiting for the socket */
    EDGE_READ_CHUNK = 16384, /* bytes read per call */
    EDGE_READS_PER_WAKE = 64,
    EDGE_TICK_MS = 50,       /* timer resolution of stalls and idles */
    EDGE_METRICS_MAX = 49152, /* the /metrics document (about 16 KB with several models) */
    EDGE_CLIENT_MAX = 128,   /* a client's identity (key name, certificate subject), NUL included */
    EDGE_ADDR_MAX = 48,      /* a peer's IP address as text */
    EDGE_MODELS_MAX = 16,    /* --model given this many times at most */
};

typedef enum edge_watch_kind {
    EDGE_W_LISTEN,
    EDGE_W_STOP,   /* eventfd written by hinge_edge_stop */
    EDGE_W_SIGNAL, /* signalfd (SIGTERM, SIGINT, SIGHUP) */
    EDGE_W_WORKER, /* eventfd: steps done */
    EDGE_W_CONN,
} edge_watch_kind;

/* What an epoll event's data.ptr points at. */
typedef struct edge_watch {
    edge_watch_kind kind;
    void *obj; /* edge_conn for EDGE_W_CONN */
} edge_watch;

typedef enum edge_method {
    EDGE_M_OTHER = 0,
    EDGE_M_GET,
    EDGE_M_POST,
    EDGE_M_DELETE,
} edge_method;

typedef enum edge_stream_state {
    ES_FREE = 0,
    ES_HEADERS,   /* receiving the header block */
    ES_BODY,      /* routed; receiving the body */
    ES_COMPUTE,   /* its step is with the worker */
    ES_RESPONDED, /* a response is submitted; further body bytes are dropped */
} edge_stream_state;

struct edge_session;

/* One request/response exchange. Slots live in their connection and are
 * reused: nothing is allocated per request except a large response. */
typedef struct edge_stream {
    int32_t id;
    edge_stream_state state;
    edge_method method;
    edge_route route;
    bool path_too_long;
    bool req_done;           /* END_STREAM received */
    bool header_checked;     /* steps: the frame header has been checked */
    bool has_length;         /* content-length was given */
    uint64_t content_length;
    uint64_t received;       /* body bytes received, whatever the route */
    uint64_t last_ms;        /* last progress, for the stall timeout */
    uint64_t t_start_us;     /* headers complete */
    uint64_t answered_ms;    /* the response ended before the request did: when (0: not so). The
                                rest of the body is read and dropped until the client ends the stream
                                or stall_ms pass, then the stream is reset. (A reset sent with the
                                response makes libcurl 7.88 drop the response.) */
    char path[EDGE_PATH_MAX];
    char sid[EDGE_SID_MAX];
    bool auth_given;         /* an authorization header came */
    bool auth_bad;           /* ... and it was not a known bearer token */
    char client[EDGE_CLIENT_MAX]; /* who asks: the key's name, else the connection's certificate; "" none */
    struct edge_session *sess; /* steps: the session whose rx takes the body */
    struct edge_oa *oa;      /* OpenAI routes: the request and its generation (owned; openai.c) */
    size_t json_len;
    char json[EDGE_JSON_MAX]; /* JSON request body */
    /* response */
    int status;
    char status_str[4];
    char length_str[24];
    char edge_us_str[24], queue_us_str[24]; /* a frame reply's timing headers */
    char resp[EDGE_RESP_SMALL];
    char *resp_heap;         /* owned; used instead of resp when set */
    size_t resp_len, resp_off;
} edge_stream;

typedef struct edge_conn {
    hinge_edge *e;
    edge_watch watch;
    uint64_t id;             /* unique over the server's life */
    int fd;
    SSL *ssl;                /* NULL for h2c */
    bool handshaken;         /* TLS done (always true for h2c) */
    bool read_pending;       /* stopped reading with input maybe left (fairness cap) */
    bool tls_wants_out;      /* SSL_read needs the socket writable before it can go on */
    bool dead;               /* close at the end of this event */
    nghttp2_session *h2;     /* created once TLS is up */
    uint32_t events;         /* current epoll interest */
    uint64_t created_ms, last_io_ms;
    uint64_t last_stream_ms; /* a stream last opened or closed: idleness ignores PINGs and the like */
    uint64_t last_write_ms;  /* output last went out (or began waiting): a reader that stops is dropped */
    char peer[64];
    char addr[EDGE_ADDR_MAX]; /* peer without the port: the per-address cap */
    char cert_client[EDGE_CLIENT_MAX]; /* the client certificate's subject (mutual TLS); "" none */
    size_t out_len, out_off; /* out[out_off..out_len) waits for the socket */
    uint8_t out[EDGE_OUTBUF];
    edge_stream streams[EDGE_MAX_STREAMS];
} edge_conn;

/* The step a session has with the worker: request by the loop, result by
 * the worker. */
typedef struct edge_step {
    uint64_t conn_id;   /* where the answer goes, if still there */
    int32_t stream_id;
    uint64_t t_queued_us, t_start_us, t_end_us; /* start: its first batch; end: its last */
    uint64_t seq_queued; /* batches started when the loop queued it */
    uint32_t wait_batches; /* batches started after it was queued and before its first */
    uint32_t batches;   /* batches it ran in (prefill chunks) */
    tx_frame_header hdr;
    int http;           /* 200, or the status of the error in err */
    int32_t token;      /* -1 for TX_FLAG_NO_SAMPLE */
    int32_t tokens[TX_VERIFY_MAX]; /* TX_FLAG_VERIFY: the sample of each row */
    bool embedded;      /* hidden holds the step's rows already (thin clients): no frame to decode */
    uint64_t rec_seq;   /* --record-dir: the request's number (its reply is recorded as NNNNNN.reply) */
    char err[HINGE_ERRMSG_MAX];
} edge_step;

/* One model the edge serves (models.c). */
typedef struct edge_model {
    char path[512];
    char file[128];       /* the file's base name: its id in /v1/models */
    uint8_t sha256[32];   /* of the file, computed at start-up: what sessions name */
    model *m;             /* NULL: not loaded */
    fwd_batch *fb;        /* the worker's batched pass over m, made with it; only the worker runs it */
    struct vk_model *vw;  /* --backend vulkan: m's layers and head on the device, uploaded at its first
                             session and shared by its sessions' executors (vk.c); NULL: none yet */
    struct vk_exec *vbx;  /* --backend vulkan: the batch executor over vw that runs its sessions' steps
                             together (vk.c); made with vw, used by the worker under the vk lock */
    size_t bytes;         /* while loaded: m's weights and fb's buffers, and vk_bytes */
    size_t vk_bytes;      /* --backend vulkan: vw's and vbx's device memory, counted in bytes once both are
                             made (--model-memory; vk.c) */
    uint32_t sessions;    /* open sessions and thin-client requests on it: it stays loaded while > 0 */
    bool pinned;          /* the default (first) model: loaded for the edge's life */
    uint64_t uses, loads, last_use_ms;
    double load_s;        /* the last load's time (start-up's check for a model not yet used) */
} edge_model;

typedef struct edge_session {
    bool used;
    bool busy;          /* a step is queued or running */
    bool closing;       /* deleted while busy: free when the step returns */
    char id[EDGE_SID_MAX];
    uint32_t cut;
    uint32_t private_head; /* J > 0: layers [cut, N - J) only; a step answers with its rows, no sampling */
    tx_codec codec;
    uint32_t ctx, max_step;
    uint32_t next_pos;  /* the pos the next step must start at, or any back to rewind_floor */
    uint32_t rewind_floor; /* after a verify step at p: p + 1 (its rejected drafts); else next_pos */
    sampler_params sp;
    edge_model *em;     /* the session's model (pinned by it) */
    const model *m;     /* em->m */
    tail *t;            /* layers [cut, N) with their KV cache, the head, the sampler (vulkan: the sampler
                           and the logit row only) */
    struct vk_exec *vx; /* --backend vulkan: layers [cut, N) + head on the device (vk.c); NULL: the CPU */
    size_t vx_kv;       /* bytes of vx's KV cache taken from the budget */
    float *hidden;      /* (max_step, n_embd) */
    uint8_t *rx;        /* rx_cap bytes: one frame of max_step rows */
    size_t rx_cap, rx_len;
    uint32_t done_rows; /* worker: rows of the step already run */
    edge_stream *rx_owner; /* the stream filling rx; NULL when none */
    char owner[EDGE_CLIENT_MAX]; /* the client that opened it: nobody else sees it */
    size_t bytes;       /* KV cache and buffers (the per-client quota counts these) */
    uint64_t conn_id;   /* the connection of its last request */
    uint64_t orphan_ms; /* when that connection closed (0: open): freed session_grace_ms later */
    uint64_t last_ms;
    uint64_t steps;
    struct edge_oa *oa; /* a thin client's generation driving this session (openai.c); NULL: split */
    edge_step step;
} edge_session;

/* Measured costs of a cut's layer range [cut, N) + head, from served steps. */
typedef struct edge_cut_stats {
    uint64_t decode_steps, decode_us;     /* steps of 1 position */
    uint64_t prefill_positions, prefill_us; /* steps of more */
} edge_cut_stats;

/* Batch statistics: counters and histograms (counts per bucket, not yet
 * cumulative; the last bucket is +Inf). Written by the worker, published
 * under its mutex after each batch. */
enum { EDGE_HIST_MAX = 12 };
typedef struct edge_hist {
    uint64_t bucket[EDGE_HIST_MAX];
    double sum;
    uint64_t count;
} edge_hist;

typedef enum edge_hist_kind {
    EDGE_H_BATCH_SIZE,    /* sessions per batch */
    EDGE_H_BATCH_ROWS,    /* positions per batch */
    EDGE_H_BATCH_SECONDS, /* wall time of a batch */
    EDGE_H_DECODE_WAIT,   /* batches a one-position step waited before its own */
    EDGE_H_COUNT
} edge_hist_kind;

typedef struct edge_batch_stats {
    uint64_t batches;
    uint64_t mixed_batches;      /* with one-position steps and prefill rows */
    uint64_t steps, step_errors; /* steps finished (200), failed */
    uint64_t tokens;             /* tokens sampled */
    uint64_t decode_positions;   /* rows of one-position steps */
    uint64_t prefill_positions;  /* rows of longer steps */
    uint64_t prefill_chunks;     /* (longer step, batch) pairs */
    edge_hist h[EDGE_H_COUNT];
} edge_batch_stats;

typedef struct edge_worker edge_worker;
typedef struct edge_sched edge_sched;

/* Why a session was refused (hinge_edge_sessions_rejected_total{reason}). */
typedef enum edge_reject {
    EDGE_REJ_FULL,          /* 503: --max-sessions */
    EDGE_REJ_DRAINING,      /* 503 */
    EDGE_REJ_QUOTA_SESSIONS, /* 429: --client-max-sessions */
    EDGE_REJ_QUOTA_KV,      /* 429: --client-kv-bytes */
    EDGE_REJ_MEMORY,        /* 503: allocation failed */
    EDGE_REJ_INVALID,       /* 400/422 */
    EDGE_REJ_COUNT
} edge_reject;

/* Log lines that an attacker could repeat (ratelog.c). */
typedef enum edge_rl_kind {
    EDGE_RL_ACCEPT,    /* accept failed (EMFILE ...) */
    EDGE_RL_REFUSE,    /* connection refused: caps */
    EDGE_RL_HANDSHAKE, /* TLS handshake failed or timed out */
    EDGE_RL_AUTH,      /* 401 */
    EDGE_RL_COUNT
} edge_rl_kind;

typedef struct edge_ratelog {
    uint64_t last_ms[EDGE_RL_COUNT];
    uint64_t suppressed[EDGE_RL_COUNT];
} edge_ratelog;

/* One API key: the SHA-256 of its token, and the client's name. */
typedef struct edge_key {
    uint8_t hash[32];
    char name[EDGE_CLIENT_MAX];
} edge_key;

/* Latency histograms the loop keeps (bounds in metrics.c). */
typedef enum edge_lat_kind {
    EDGE_L_STEP,  /* a step's compute: its first batch's start to its last's end */
    EDGE_L_QUEUE, /* a step's wait for the worker */
    EDGE_L_COUNT
} edge_lat_kind;

struct hinge_edge {
    hinge_logger log;
    model *m;             /* the default model: models[0].m */
    edge_model *models;   /* n_models; models.c */
    uint32_t n_models;
    uint64_t model_memory; /* --model-memory: budget of the loaded models' bytes; 0: none */
    size_t model_bytes;   /* of the loaded models */
    uint64_t model_evictions;
    edge_hist model_load_hist;
    threadpool *tp;
    SSL_CTX *tls;         /* NULL: h2c; replaced on reload (connections hold a reference to theirs) */
    char *cert_path, *key_path, *client_ca_path, *keys_path; /* owned; for reloads */
    edge_key *keys;       /* n_keys, sorted by hash; owned */
    EVP_MD *sha256;       /* fetched once: an implicit fetch per request costs microseconds */
    size_t n_keys;
    bool auth_on;         /* keys or client certificates are required */
    uint32_t client_max_sessions, max_conns_per_addr, handshake_ms, session_grace_ms;
    uint64_t client_kv_bytes;
    uint32_t conn_slots;  /* conns has this many: max_conns live plus room for ones evicted and not yet reaped */
    uint32_t n_live;      /* connections not marked dead */
    bool accept_paused;   /* EMFILE: the listening socket is out of the epoll set until accept_resume_ms */
    uint64_t accept_resume_ms;
    uint32_t accept_backoff_ms;
    edge_ratelog rl;
    bool drain_ending;    /* the drain timed out: open sessions are being ended */
    uint64_t drain_end_ms;
    /* counters for /metrics */
    uint64_t rejected[EDGE_REJ_COUNT];
    uint64_t conns_accepted, conns_refused, conns_evicted, handshakes_ok, handshakes_failed, auth_failures;
    uint64_t bytes_in, bytes_out, sessions_opened, sessions_orphaned, reloads;
    uint64_t sessions_resumed; /* taken up by a new connection of their client */
    uint64_t steps_repeated;   /* a step sent again (its reply was lost): answered from the last reply */
    edge_hist lat[EDGE_L_COUNT];
    int ep, listen_fd, stop_fd, sig_fd;
    edge_watch w_listen, w_stop, w_sig, w_worker;
    char address[80];
    char model_file[128]; /* the model's file name: its id in /v1/models */
    char instance_id[EDGE_INSTANCE_HEX + 1]; /* starts every session id; "": none */
    uint32_t max_sessions, max_conns, max_ctx, max_step;
    uint32_t stall_ms, idle_ms, session_ms, drain_ms;
    uint32_t spin_us;     /* see hinge_edge_config.spin_us */
    uint32_t prefill_chunk; /* positions of a step per batch when it has more than one */
    kv_pool *kv;          /* the sessions' KV blocks and their budget (model/kv.h) */
    struct edge_vk *vk;   /* --backend vulkan (vk.c); NULL: cpu */
    uint32_t steps_out;   /* steps handed to the worker and not yet back */
    uint64_t spin_until_us; /* the loop polls without sleeping until then while steps_out > 0 */
    char *record_dir;     /* owned; NULL: off */
    uint64_t record_seq;
    edge_conn **conns;    /* conn_slots slots */
    uint32_t n_conns;
    uint64_t next_conn_id;
    edge_session *sessions; /* max_sessions slots */
    uint32_t n_sessions;
    edge_worker *worker;
    edge_cut_stats *cuts; /* n_layer + 1 */
    double *layer_us;     /* n_layer: one decode position, measured at start; NULL: not measured */
    double head_us;
    json_t *profile;      /* the --profile file, checked; NULL: none */
    bool draining;
    uint64_t drain_deadline_ms;
    uint64_t requests, steps_done, errors;
    char errmsg[HINGE_ERRMSG_MAX];
};

/* ---- server.c ---- */
uint64_t edge_now_ms(void);
/* The connection's session lost its connection: sessions it was the last
 * connection of start their grace period. */
void edge_sessions_orphan(hinge_edge *e, uint64_t conn_id);
uint64_t edge_now_us(void);
/* Changes fd's epoll interest (EPOLLIN, EPOLLOUT). */
int edge_epoll_mod(hinge_edge *e, int fd, edge_watch *w, uint32_t events);

/* ---- conn.c ---- */
/* Makes room for a connection from addr (evicting the connection idle the
 * longest when all max_conns are taken); NULL when there is, else why not:
 * addr has max_conns_per_addr, or none can be evicted. */
const char *edge_conn_admit(hinge_edge *e, const char *addr);
/* HINGE_ERR_RANGE (no room: call edge_conn_admit first), HINGE_ERR_NOMEM, HINGE_ERR_IO. */
hinge_status edge_conn_open(hinge_edge *e, int fd, const char *peer, const char *addr, edge_conn **out);
void edge_conn_event(edge_conn *c, uint32_t events);
/* Sends what nghttp2 has queued, then fixes the epoll interest; marks the
 * connection dead when it is finished or broken. */
void edge_conn_flush(edge_conn *c);
void edge_conn_close(edge_conn *c);
edge_conn *edge_conn_find(hinge_edge *e, uint64_t id);
/* Timeouts: stalled requests (408), handshakes, responses the client does
 * not take, idle connections (no stream for idle_ms; PINGs do not count). */
void edge_conn_tick(edge_conn *c, uint64_t now_ms);
void edge_conn_goaway(edge_conn *c);
/* True while a response is owed or output is queued. */
bool edge_conn_busy(const edge_conn *c);
/* Frees the connections marked dead; the loop calls it between batches. */
void edge_conns_reap(hinge_edge *e);

/* ---- http.c ---- */
hinge_status edge_h2_session(edge_conn *c);
edge_stream *edge_stream_find(edge_conn *c, int32_t id);
/* Submits a response; body (len bytes) is copied into the stream's buffer
 * (heap when over EDGE_RESP_SMALL, refused over EDGE_RESP_MAX). */
void edge_respond(edge_conn *c, edge_stream *st, int status, const char *body, size_t len);
/* The same with another content-type (a static string). */
void edge_respond_typed(edge_conn *c, edge_stream *st, int status, const char *type, const char *body, size_t len);
/* 200 with an activation frame (a private head's step reply: docs/protocol.md),
 * its timing in the headers hinge-edge-us and hinge-queue-us. A frame over
 * EDGE_RESP_SMALL is copied to the heap (any length: the session's frame
 * buffer bounds it). */
void edge_respond_frame(edge_conn *c, edge_stream *st, const uint8_t *frame, size_t len, uint64_t edge_us,
                        uint64_t queue_us);
/* {"error": code, "detail": printf(fmt, ...)} with status. */
void edge_respond_error(edge_conn *c, edge_stream *st, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Serializes j (taken) and responds with it. */
void edge_respond_json(edge_conn *c, edge_stream *st, int status, json_t *j);

/* ---- api.c ---- */
void edge_api_headers(edge_conn *c, edge_stream *st);
void edge_api_data(edge_conn *c, edge_stream *st, const uint8_t *data, size_t len);
void edge_api_end(edge_conn *c, edge_stream *st);
/* The body stopped arriving for stall_ms: 408, and let go of the session. */
void edge_api_stall(edge_conn *c, edge_stream *st);
/* The stream is going away (closed or reset): let go of its session. */
void edge_api_stream_gone(edge_stream *st);
/* A step came back from the worker. */
void edge_api_step_done(hinge_edge *e, edge_session *s);

/* ---- models.c ---- */
/* Loads, checks and hashes every file; keeps the first loaded (e->m).
 * Errors as model_load, HINGE_ERR_INVALID (0 or too many, or the same
 * model twice). */
hinge_status edge_models_init(hinge_edge *e, const char *const *paths, uint32_t n, char *err, size_t errlen);
void edge_models_free(hinge_edge *e);
edge_model *edge_model_by_sha(hinge_edge *e, const uint8_t sha[32]);
/* By file name (with or without .gguf), sha256 hex, or general.name when loaded. */
edge_model *edge_model_by_name(hinge_edge *e, const char *name);
/* Loads em when it is not (evicting others under the budget). 0, or the
 * HTTP status (503 model_memory_full, 500 model_load_failed) with code
 * and detail. */
int edge_model_ensure(hinge_edge *e, edge_model *em, const char **code, char *detail, size_t detail_len);
/* Counts bytes more of a loaded model under --model-memory (its device
 * half, vk.c), evicting unused models to make room; 503 model_memory_full
 * with code and detail (and a warning in the log) when they do not fit. */
int edge_model_grow(hinge_edge *e, edge_model *em, size_t bytes, const char *what, const char **code, char *detail,
                    size_t detail_len);
void edge_model_shrink(hinge_edge *e, edge_model *em, size_t bytes); /* gives them back */
void edge_model_pin(edge_model *em);   /* a session starts using it */
void edge_model_unpin(edge_model *em); /* a session is gone */
json_t *edge_models_json(hinge_edge *e);
/* The models' part of /metrics into buf; its length, 0 when it does not fit. */
size_t edge_models_metrics(hinge_edge *e, char *buf, size_t cap);

/* ---- openai.c ---- */
bool edge_oa_route(edge_route r);
/* Headers of an OpenAI route are in: takes the request's state (413 over
 * the body cap, 503 out of memory). */
void edge_oa_headers(edge_conn *c, edge_stream *st);
void edge_oa_data(edge_conn *c, edge_stream *st, const uint8_t *data, size_t len);
void edge_oa_end(edge_conn *c, edge_stream *st);
/* The stream is going away: stops its generation, frees its state. */
void edge_oa_stream_gone(edge_stream *st);
/* A thin client's step came back (s->oa is set). */
void edge_oa_step_done(hinge_edge *e, edge_session *s);

/* ---- session.c ---- */
/* Creates a session owned by client (copied); returns the HTTP status (201
 * or the error's: 400, 422, 429 over the client's quota, 503 full or
 * draining) and, for errors, the code and detail. */
int edge_session_open(hinge_edge *e, const edge_session_req *rq, const char *client, edge_session **out,
                      const char **code, char *detail, size_t detail_len);
/* The open session sid that client owns; NULL otherwise (also when another
 * client owns it: its id is not disclosed). */
edge_session *edge_session_find(hinge_edge *e, const char *sid, const char *client);
/* Frees the session, or marks it closing when a step is out. */
void edge_session_close(hinge_edge *e, edge_session *s);
/* Bytes of KV cache the session holds now (grows with its positions,
 * shrinks as its sliding-window layers move on); 0 for NULL. Any thread. */
size_t edge_session_kv_bytes(const edge_session *s);
/* Closes sessions idle for longer than session_ms, orphaned for longer
 * than session_grace_ms, and while draining those idle for a while. */
void edge_session_expire(hinge_edge *e, uint64_t now_ms);
void edge_sessions_free(hinge_edge *e);

/* ---- sched.c (the worker's) ---- */
/* Rows each of n admitted steps runs in the next batch (take[i]), given
 * the rows left of each (left[i] >= 1, arrival order): one-row steps (decode)
 * all go; the others share `chunk` rows, those that fit in one chunk first,
 * then the longer ones, each group oldest first. So a decode step waits at
 * most for the batch in flight (at most `chunk` prefill rows), and a long
 * prompt is cut into chunks between decode batches. Returns how many get
 * rows: always >= 1 when n >= 1 and chunk >= 1. Pure. */
size_t edge_sched_plan(const uint32_t *left, size_t n, uint32_t chunk, uint32_t *take);
/* cap sessions, chunk rows of prefill per batch. HINGE_ERR_NOMEM. */
hinge_status edge_sched_create(const hinge_edge *e, uint32_t cap, uint32_t chunk, edge_sched **out);
void edge_sched_destroy(edge_sched *sc);
/* Takes s's step: decodes its frame into s->hidden. False when the frame
 * is bad (s->step.http says how): the step is finished, not admitted. */
bool edge_sched_admit(edge_sched *sc, edge_session *s);
/* Steps admitted and not finished. */
uint32_t edge_sched_active(const edge_sched *sc);
/* Runs one batch of the admitted steps (edge_sched_plan); puts the steps
 * it finished into out (at most cap) and returns their number; adds to st. */
size_t edge_sched_step(edge_sched *sc, edge_session **out, edge_batch_stats *st);
/* Batches started so far: any thread. */
uint64_t edge_sched_started(const edge_sched *sc);

/* ---- metrics.c ---- */
void edge_hist_observe(edge_hist *h, edge_hist_kind k, double v);
void edge_lat_observe(hinge_edge *e, edge_lat_kind k, double seconds);
/* The /metrics document (Prometheus text format 0.0.4) into buf; its
 * length, or 0 when it does not fit. */
size_t edge_metrics_text(hinge_edge *e, char *buf, size_t cap);

/* ---- worker.c ---- */
/* cap sessions; batches of at most cap steps and chunk prefill rows. */
hinge_status edge_worker_create(const hinge_edge *e, uint32_t cap, uint32_t chunk, edge_worker **out);
void edge_worker_destroy(edge_worker *w);
int edge_worker_fd(const edge_worker *w);
/* Queues s (busy must already be set). False when the queue is full. */
bool edge_worker_submit(edge_worker *w, edge_session *s);
/* Takes up to max finished sessions; clears the eventfd. */
size_t edge_worker_collect(edge_worker *w, edge_session **out, size_t max);
/* Steps queued and not yet started, and steps running. */
void edge_worker_load(edge_worker *w, uint32_t *queued, uint32_t *running);
/* Batches started so far (stamps a step at submission). */
uint64_t edge_worker_batches(const edge_worker *w);
/* A copy of the statistics published after the last batch. */
void edge_worker_stats(edge_worker *w, edge_batch_stats *out);

/* ---- profile.c ---- */
void edge_profile_measure(hinge_edge *e);
/* Reads an edge profile of e's model into e->profile, checked as the
 * partitioner will use it. HINGE_ERR_IO, HINGE_ERR_FORMAT, HINGE_ERR_RANGE,
 * HINGE_ERR_UNSUPPORTED (another role or model), HINGE_ERR_NOMEM. */
hinge_status edge_profile_load(hinge_edge *e, const char *path, char *err, size_t errlen);
json_t *edge_profile_json(hinge_edge *e);

/* ---- tls.c ---- */
/* client_ca: PEM of CAs for client certificates, NULL none; require: a
 * client without a certificate fails the handshake (no API keys to fall
 * back on). */
SSL_CTX *edge_tls_create(const char *cert, const char *key, const char *client_ca, bool require, char *err,
                         size_t errlen);
/* The verified client certificate's subject into out ("" when none). */
void edge_tls_client(SSL *ssl, char *out, size_t cap);

/* ---- auth.c ---- */
/* Reads the API key file into e->keys (replacing them only on success).
 * HINGE_ERR_IO, HINGE_ERR_FORMAT (a line that is not 64 lowercase hex
 * digits, optionally a space and a name), HINGE_ERR_NOMEM. */
hinge_status edge_auth_load(hinge_edge *e, const char *path, char *err, size_t errlen);
/* Checks an authorization header value ("Bearer TOKEN"): the key's name
 * into name (cap bytes) and true when it is one of e's keys. Finds the
 * token's hash among the sorted key hashes; the final equality is checked
 * in constant time. */
bool edge_auth_bearer(const hinge_edge *e, const uint8_t *value, size_t len, char *name, size_t cap);
/* Whom stream st speaks for, or false (and a 401 sent) when the edge
 * requires authentication and st has none. */
bool edge_auth_check(edge_conn *c, edge_stream *st);

/* ---- ratelog.c ---- */
/* hinge_log at most once a second per kind; the lines dropped are counted
 * into the next. */
void edge_log_limited(hinge_edge *e, edge_rl_kind k, hinge_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- record.c ---- */
uint64_t edge_record(hinge_edge *e, const edge_stream *st, const void *body, size_t len);
/* The reply to recorded request seq: NNNNNN.reply (the body as sent). */
void edge_record_reply(hinge_edge *e, uint64_t seq, const void *body, size_t len);

/* ---- vk.c: --backend vulkan ---- */
typedef struct edge_vk edge_vk;
/* The device context and its self-test (a probe executor on the default
 * model); err says why there is none. */
hinge_status edge_vk_open(hinge_edge *e, char *err, size_t errlen);
void edge_vk_close(hinge_edge *e); /* no-op without it */
const char *edge_vk_device(const hinge_edge *e); /* the device's name; "" without it */
#ifdef HINGE_EDGE_VULKAN
/* The edge's Vulkan context (NULL without --backend vulkan); its users
 * hold vk.c's lock, except at start-up (profile.c's measurement). */
struct dev_ctx *edge_vk_ctx(const hinge_edge *e);
#endif
/* The session's executor of [cut, N) + head, its KV cache taken from the
 * budget: 0, or the HTTP status with *code and detail. */
int edge_vk_session_open(hinge_edge *e, edge_session *s, const char **code, char *detail, size_t detail_len);
void edge_vk_session_close(hinge_edge *e, edge_session *s); /* gives the KV bytes back; no-op without */
/* Frees em's device weights (no session of em is left); no-op without. */
void edge_vk_model_drop(hinge_edge *e, edge_model *em);
/* Worker: items[i]'s rows through s[i]'s executor, all of them batched
 * (one model's sessions), the logits into items[i].logits (NULL: none
 * wanted); on failure the detail is in each s[i]->step.err. */
hinge_status edge_vk_run(const hinge_edge *e, edge_session *const *s, const fwd_item *items, size_t n);

#endif
