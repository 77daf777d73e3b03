/* libhinge: split LLM inference for the mobile edge. The one public header.
 *
 * A hinge_model is a loaded GGUF file: read-only after loading, shared by any
 * number of threads and sessions. A hinge_session is one conversation: the
 * device's layers and KV cache, and (with an edge) its HTTP/2 connection and
 * edge session. The device runs the embedding and the first `cut` layers
 * (on the CPU or on Vulkan); the edge, or this process when there is no
 * edge, runs the rest, the head and the sampler.
 *
 *   hinge_model *m;    hinge_model_load("model.gguf", &m);
 *   hinge_session_config c;  hinge_session_config_init(&c);
 *   c.edge_url = "https://edge.example:8443";  c.cut = 6;
 *   hinge_session *s;  hinge_session_create(m, &c, &s);
 *   hinge_generate(s, "The capital of France is", 32, on_piece, NULL);
 *   hinge_session_free(s);  hinge_model_free(m);
 *
 * Errors. Every call that can fail returns a hinge_status: HINGE_OK (0) or a
 * negative code. Out-parameters are written only on success. The detail
 * (which file, which field, what the edge said) is in hinge_last_error() of
 * the calling thread until that thread's next failing call.
 *
 * Threads. A model may be used by any number of threads at once. A session
 * is used by one thread at a time (no two calls on one session run
 * concurrently), except hinge_cancel, which any thread may call at any time.
 * Callbacks run on the thread that called into the library and must not call
 * into the same session (hinge_cancel excepted).
 *
 * Docs: docs/sdk.md (lifecycle, memory per session, wrappers for Kotlin/JNI
 * and Swift). */
#ifndef HINGE_HINGE_H
#define HINGE_HINGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HINGE_VERSION_MAJOR 0
#define HINGE_VERSION_MINOR 2
#define HINGE_VERSION_PATCH 0

/* 0 is success; every error is negative. */
typedef enum hinge_status {
    HINGE_OK = 0,
    HINGE_ERR_INVALID = -1,     /* bad argument from the caller */
    HINGE_ERR_NOMEM = -2,       /* allocation failed, or over a memory limit */
    HINGE_ERR_IO = -3,          /* open/read/mmap failed */
    HINGE_ERR_FORMAT = -4,      /* malformed file, frame or message */
    HINGE_ERR_UNSUPPORTED = -5, /* well-formed but not handled (type, arch, backend not built) */
    HINGE_ERR_NOT_FOUND = -6,   /* key, tensor or session does not exist */
    HINGE_ERR_RANGE = -7,       /* count or position out of range (e.g. the context is full) */
    HINGE_ERR_VULKAN = -8,      /* Vulkan driver error, or no Vulkan device */
    HINGE_ERR_NETWORK = -9,     /* connection, TLS or timeout */
    HINGE_ERR_PROTOCOL = -10,   /* the peer broke the protocol */
    HINGE_CANCELLED = -11,      /* hinge_cancel stopped the call */
} hinge_status;

typedef struct hinge_model hinge_model;     /* a loaded GGUF; read-only, shareable across threads and sessions */
typedef struct hinge_session hinge_session; /* one conversation: device layers, KV cache, edge connection */

/* Gets each generated piece of text (UTF-8 bytes of one token, not
 * NUL-terminated; a multi-byte character may be split across pieces).
 * A nonzero return stops the generation (hinge_generate returns HINGE_OK). */
typedef int (*hinge_token_cb)(const char *piece, size_t len, void *user);

typedef enum hinge_log_level {
    HINGE_LOG_ERROR = 0, /* the call fails */
    HINGE_LOG_WARN = 1,  /* degraded but continuing */
    HINGE_LOG_INFO = 2,  /* once per model load or session */
    HINGE_LOG_DEBUG = 3, /* once per request */
    HINGE_LOG_TRACE = 4, /* per token or per layer */
} hinge_log_level;

/* One formatted line, no trailing newline. Called from the thread that logs;
 * must not call into hinge. */
typedef void (*hinge_log_cb)(void *user, hinge_log_level level, const char *line);

/* ---- library ---- */

const char *hinge_version(void);            /* "0.2.0"; static */
const char *hinge_strerror(hinge_status s); /* static, never NULL */
const char *hinge_last_error(void);         /* detail of this thread's last failure; "" if none */
void hinge_free(void *p);                   /* frees what a hinge_* call returned as malloc'd (JSON text) */

/* ---- models ---- */

typedef struct hinge_model_config {
    uint32_t size;           /* sizeof(hinge_model_config): set by hinge_model_config_init */
    hinge_log_cb log;        /* NULL: no log */
    void *log_user;          /* borrowed; passed to log */
    hinge_log_level log_level;
} hinge_model_config;

void hinge_model_config_init(hinge_model_config *c);

/* Opens and checks the GGUF at path (every tensor's presence, type, shape
 * and offset). Errors: HINGE_ERR_INVALID (NULL argument), HINGE_ERR_IO,
 * HINGE_ERR_FORMAT, HINGE_ERR_UNSUPPORTED (architecture, weight type),
 * HINGE_ERR_NOMEM. */
hinge_status hinge_model_load(const char *path, hinge_model **out);
/* The same with a logger. c may be NULL (the defaults). */
hinge_status hinge_model_load_ex(const char *path, const hinge_model_config *c, hinge_model **out);
/* NULL is a no-op. Every session of m must be freed first. */
void hinge_model_free(hinge_model *m);

typedef struct hinge_model_info {
    const char *name;     /* general.name; owned by the model */
    const char *arch;     /* "llama", "gemma3", "qwen2", "qwen3", "phi3" */
    uint32_t n_layer, n_embd, n_vocab, n_ctx_train;
    int32_t bos, eos;     /* -1 when the vocabulary has none */
    uint64_t file_bytes;  /* size of the GGUF */
    uint64_t weight_bytes;
} hinge_model_info;

void hinge_model_get_info(const hinge_model *m, hinge_model_info *out);

/* sha256 of the model file as 64 hex digits and a NUL into hex (65 bytes):
 * the model's identity, which an edge checks. Reads the whole file the first
 * time (thread-safe). Errors: HINGE_ERR_INVALID, HINGE_ERR_IO. */
hinge_status hinge_model_sha256(hinge_model *m, char hex[65]);

/* ---- tokens (token-level calls, for researchers) ---- */

/* Text to token ids. add_bos: put BOS first when the model asks for it (or
 * when text is empty). Writes at most cap ids; *n_out is the count.
 * Errors: HINGE_ERR_INVALID, HINGE_ERR_RANGE (more than cap tokens). */
hinge_status hinge_tokenize(const hinge_model *m, const char *text, size_t len, int add_bos, int32_t *out,
                            size_t cap, size_t *n_out);
/* The text of token tok when it follows prev (prev matters for the leading
 * space of SentencePiece; -1: none). Writes at most cap bytes, no NUL;
 * *len_out is the count. Errors: HINGE_ERR_INVALID, HINGE_ERR_RANGE (id
 * outside the vocabulary, or the piece is longer than cap). */
hinge_status hinge_token_to_piece(const hinge_model *m, int32_t prev, int32_t tok, char *buf, size_t cap,
                                  size_t *len_out);
/* 1 when tok ends a generation (EOS, end of turn), else 0. */
int hinge_token_is_eog(const hinge_model *m, int32_t tok);

/* ---- sessions ---- */

enum {
    HINGE_CUT_ALL = -1,  /* every layer on the device (the default) */
    HINGE_CUT_AUTO = -2, /* the partitioner picks the cut and the wire per request */
};

typedef enum hinge_backend {
    HINGE_BACKEND_CPU = 0,
    HINGE_BACKEND_VULKAN = 1, /* HINGE_ERR_UNSUPPORTED where built with -Dvulkan=disabled */
} hinge_backend;

typedef enum hinge_wire {
    HINGE_WIRE_F32 = 0, /* exact */
    HINGE_WIRE_F16 = 1,
    HINGE_WIRE_Q8 = 2,  /* int8 per row with an f32 scale */
} hinge_wire;

typedef struct hinge_session_config {
    uint32_t size;          /* sizeof(hinge_session_config): set by hinge_session_config_init; lets the
                               library grow the struct without breaking older apps */
    const char *edge_url;   /* https://host:port (http:// only on loopback); NULL: everything local */
    const char *ca_file;    /* PEM to trust for the edge; NULL: the system store */
    int cut;                /* layers on this device, 0..n_layer; HINGE_CUT_ALL; or HINGE_CUT_AUTO */
    hinge_backend backend;  /* where the device's layers run */
    hinge_wire wire;        /* activation codec on the wire; without an edge, applied in-process at the
                               cut (to study a codec's effect) */
    uint32_t n_ctx;         /* positions the session holds (all turns); 0: min(4096, the model's) */
    int n_threads;          /* CPU threads of this session; 0: every online CPU */
    float temperature;      /* 0: greedy */
    uint32_t top_k;         /* 0: no top-k cut */
    float top_p;            /* 0 or 1: no nucleus cut */
    uint64_t seed;          /* same seed, same tokens */
    int ignore_eos;         /* nonzero: do not stop at end-of-generation tokens */
    /* The partitioner (cut == HINGE_CUT_AUTO); profiles/ has examples. */
    const char *device_profile;  /* JSON of this device (hinge profile); required for HINGE_CUT_AUTO */
    const char *channel_profile; /* JSON of the link's prior; required for HINGE_CUT_AUTO with an edge */
    const char *edge_profile;    /* NULL: the one the edge serves at GET /v1/profile */
    const char *channel_cache;   /* file keeping the live channel estimate across sessions; NULL: none */
    uint32_t min_cut;       /* privacy floor: never fewer layers on the device (checked for a fixed cut too) */
    uint64_t mem_limit;     /* device bytes for the weights of the device's layers + what the session
                               allocates (KV cache, scratch): over it, hinge_session_create fails with
                               HINGE_ERR_NOMEM; HINGE_CUT_AUTO picks a cut that fits. 0: no limit (auto: the
                               device profile's) */
    double energy_weight;   /* seconds per joule of device energy in the partitioner's objective */
    const char *codecs;     /* wire codecs the partitioner may pick, "f32,f16,q8"; NULL: f32 and f16
                               (q8 only when asked for) */
    uint32_t prompt_hint;   /* prompt length the decision assumes before a prompt is known; 0: 128 */
    uint32_t max_new_hint;  /* new tokens the decision assumes; 0: 64 */
    /* Edge connection. */
    uint32_t max_step;      /* positions per request (a longer prefill is chunked); 0: the edge's */
    uint32_t timeout_ms;    /* per request, the most a step may take; 0: 30000. Once decode steps
                               have been seen, a decode step's deadline is derived from their time
                               (10x the recent average + 1 s, at most this) */
    uint32_t spin_us;       /* busy-poll the socket this long before sleeping; 0: never */
    /* Logging. */
    hinge_log_cb log;       /* NULL: no log */
    void *log_user;
    hinge_log_level log_level;
    /* Never lose a token (fields added in 0.2; older structs get the defaults). */
    const char *const *fallback_edges; /* more edges, tried in order after edge_url when it fails; borrowed
                                          for the session's life */
    uint32_t n_fallback_edges;
    int no_local_fallback;  /* nonzero: when no edge answers, fail rather than finish on this device */
    /* Authentication (added in 0.2; older structs get none). */
    const char *api_key;    /* sent as "Authorization: Bearer API_KEY" to edge_url, the fallback edges and
                               GET /v1/profile; NULL: none. Copied. */
    /* Chat (added after 0.2.0; older structs get NULL). */
    const char *chat_template; /* hinge_chat's template: a name ("chatml", "llama3", "gemma", "phi3") or a
                                  template's text; NULL: the model's tokenizer.chat_template */
    /* Speculative lookahead across the split (added in 0.2; older structs get 0). With an edge, each
       decode step may carry up to this many draft tokens taken from the context (prompt lookup, no
       draft model); the edge verifies them in the same round trip, so one round trip can yield several
       tokens. Greedy output is unchanged, and so is the sampled distribution. Fewer drafts, or none,
       when the observed acceptance and step times say they do not pay. 0: off; at most 15. */
    uint32_t speculate;
    /* Privacy (docs/privacy.md; fields added in 0.2). */
    float wire_noise;       /* Gaussian noise added to the boundary rows before they are encoded, wherever rows
                               cross the cut (an edge, or a fixed cut in-process): its standard deviation
                               relative to each row's RMS; 0: none */
    uint64_t noise_seed;    /* the noise's seed; 0: a fresh random one per session (the edge must not know it) */
    float max_recovery;     /* privacy policy: never a (cut, wire, wire_noise) whose measured token recovery
                               (privacy_profile) is over this fraction; unmeasured ones are refused. A fixed cut
                               over it fails with HINGE_ERR_INVALID; HINGE_CUT_AUTO picks among the allowed.
                               0: no policy */
    const char *privacy_profile; /* the model's privacy profile (hinge experiment privacy; profiles/privacy/);
                                    required with max_recovery */
    /* Private head, a U-shaped split (docs/privacy.md; added after 0.2; older structs get 0): this device
       also runs the last private_head layers, the final norm, the head and the sampler; the edge runs
       only layers [cut, N - private_head) and returns their output rows, so no output token ever crosses
       the wire. Needs cut + private_head <= N; not with speculate. 0: off */
    uint32_t private_head;
} hinge_session_config;

/* Fills c with the defaults: local, cut HINGE_CUT_ALL, CPU, f32 wire, greedy. */
void hinge_session_config_init(hinge_session_config *c);

/* Creates a session on m (borrowed: it must outlive the session). Allocates
 * everything a step needs (KV cache, scratch, Vulkan buffers); with an edge,
 * connects and opens the edge session (one TLS handshake); with
 * HINGE_CUT_AUTO, asks the edge (each edge, when fallback_edges are given:
 * the best (edge, cut) wins, the others stay fall-backs) for its profile and
 * load and decides.
 * An edge that cannot be reached with HINGE_CUT_AUTO gives a local session
 * (a WARN in the log); with a fixed cut the fallback edges are tried, then
 * it is an error.
 *
 * Failover: the session keeps the tokens it has fed (4 bytes a position).
 * When the edge fails during a step (connection lost, 5xx, draining, the
 * session gone, no answer by the step's deadline), the session opens a new edge
 * session (same edge first, then the fallback edges), recomputes the
 * boundary rows of the positions so far with its own layers and replays
 * them as one prefill; when no edge answers it finishes on this device
 * (unless no_local_fallback), rebuilding the KV cache of the layers after
 * the cut. The output, greedy or seeded sampling, is identical to an
 * uninterrupted run (a new edge's sampler skips the draws already made).
 * Each recovery is a WARN in the log and counted in hinge_stats.
 * Errors: HINGE_ERR_INVALID (bad config: cut outside [0, n_layer] or under
 * min_cut, edge_url given with HINGE_CUT_ALL, n_ctx over the model's),
 * HINGE_ERR_NOMEM (also: over mem_limit), HINGE_ERR_UNSUPPORTED (backend not built), HINGE_ERR_VULKAN,
 * HINGE_ERR_NETWORK, HINGE_ERR_PROTOCOL, and the edge's refusals
 * (HINGE_ERR_RANGE: no free session; HINGE_ERR_FORMAT: it refused the request). */
hinge_status hinge_session_create(hinge_model *m, const hinge_session_config *c, hinge_session **out);

/* Generates up to max_tokens tokens after prompt, calling cb (may be NULL)
 * with each piece. Continues the conversation: the prompt follows what the
 * session has already seen and generated. On a fresh session the prompt
 * starts with BOS when the model asks for one; "" starts from BOS alone.
 * Stops at an end-of-generation token (unless ignore_eos), at max_tokens,
 * when cb returns nonzero, or when the context is full.
 * Errors: HINGE_ERR_INVALID, HINGE_ERR_RANGE (the prompt does not fit in what
 * is left of the context), HINGE_CANCELLED, and a step's errors (network,
 * protocol, Vulkan). After an error other than HINGE_CANCELLED the session
 * should be freed; after HINGE_CANCELLED it is usable. */
hinge_status hinge_generate(hinge_session *s, const char *prompt, int max_tokens, hinge_token_cb cb, void *user);

/* ---- chat ---- */

/* One message of a conversation; both strings NUL-terminated UTF-8,
 * borrowed for the call. Roles: "system", "user", "assistant". */
typedef struct hinge_chat_message {
    const char *role;
    const char *content;
} hinge_chat_message;

/* Renders msgs[0..n) as the prompt text m's chat template makes of them
 * (its special tokens as text, e.g. "<|im_start|>"; hinge_generate turns
 * that text back into the special tokens), then the assistant's opening when
 * add_assistant is nonzero. The template is recognised by its markers (ChatML,
 * Llama 3, Gemma, Phi-3) and applied as llama.cpp applies it; no Jinja runs.
 * tmpl overrides the model's tokenizer.chat_template: a name ("chatml",
 * "llama3", "gemma", "phi3") or a template's text; NULL: the model's.
 * Writes at most cap bytes and a NUL to buf (NULL when cap is 0). Unlike the
 * other calls, *len_out (the text's length without the NUL) is written on
 * HINGE_ERR_RANGE too: call with cap 0 to learn the size.
 * Errors: HINGE_ERR_INVALID (NULL argument, a message with a NULL role or
 * content), HINGE_ERR_NOT_FOUND (the model has no template and tmpl is NULL),
 * HINGE_ERR_UNSUPPORTED (a template hinge does not recognise: give tmpl),
 * HINGE_ERR_RANGE (cap <= the length). */
hinge_status hinge_chat_format(const hinge_model *m, const char *tmpl, const hinge_chat_message *msgs, size_t n,
                               int add_assistant, char *buf, size_t cap, size_t *len_out);

/* Generates the assistant's reply to msgs[0..n): the turns that follow what
 * the session has seen (on a fresh session the whole conversation, system
 * message included; after a reply, the next user message). They are
 * rendered with the session's chat_template (else the model's), followed by
 * the assistant's opening, and generated from as hinge_generate does (same
 * stops, callback, stats and errors). When the session's last call was
 * hinge_chat, its reply is closed first as the template closes an assistant
 * turn (a reply that stopped at its end-of-turn token, or at max_tokens), so
 * the model sees the template's text of the whole conversation. The reply
 * does not include the end-of-turn token.
 * Errors: as hinge_chat_format (template) and hinge_generate. */
hinge_status hinge_chat(hinge_session *s, const hinge_chat_message *msgs, size_t n, int max_tokens,
                        hinge_token_cb cb, void *user);

/* Asks the running (or the next) hinge_generate or hinge_session_step of s
 * to return HINGE_CANCELLED before its next step. Any thread, any time;
 * async-signal-safe. The request is consumed by the call it stops. */
void hinge_cancel(hinge_session *s);

/* Closes the edge session (DELETE) and frees everything. NULL is a no-op. */
void hinge_session_free(hinge_session *s);

/* Forgets the conversation: the next call starts at position 0 (an edge
 * session is reopened on the same connection). */
hinge_status hinge_session_reset(hinge_session *s);

/* ---- where the time went ---- */

/* One step: n positions through both halves, one sampled token. */
typedef struct hinge_step_info {
    uint32_t pos, n;          /* positions [pos, pos + n) */
    int32_t token;            /* sampled */
    double device_ms;         /* embedding + layers [0, cut) on this device */
    double tail_ms;           /* wall time of the rest: in-process compute or the HTTP exchange(s) */
    double edge_ms;           /* compute after the cut (as the edge reports it) */
    double queue_ms;          /* waiting for the edge's compute */
    double network_ms;        /* the HTTP exchange less edge_ms and queue_ms: uplink, downlink, HTTP/TLS
                                 (tail_ms also holds encoding the frame) */
    uint64_t uplink_bytes, downlink_bytes;
    uint32_t requests;        /* HTTP requests (more than 1 for a chunked prefill) */
} hinge_step_info;

typedef enum hinge_stop {
    HINGE_STOP_NONE = 0,     /* not stopped yet, or an error */
    HINGE_STOP_LENGTH = 1,   /* max_tokens reached */
    HINGE_STOP_EOG = 2,      /* end-of-generation token */
    HINGE_STOP_CALLBACK = 3, /* the token callback returned nonzero */
    HINGE_STOP_CONTEXT = 4,  /* the context is full */
    HINGE_STOP_CANCELLED = 5,
} hinge_stop;

typedef struct hinge_stats {
    /* the session */
    int cut;                  /* the cut in use (decided, with HINGE_CUT_AUTO) */
    hinge_wire wire;
    int remote;               /* 1 when an edge runs the layers after the cut */
    uint32_t pos;             /* positions used so far */
    uint32_t n_ctx;
    uint64_t connects, tls_handshakes, requests; /* over the session's life (the current edge's client) */
    int edge_index;           /* the edge in use: 0 edge_url, i fallback_edges[i - 1]; -1 none */
    uint32_t recoveries;      /* failovers over the session's life */
    uint32_t local_fallbacks; /* of which finished on this device */
    uint64_t replayed_positions; /* positions replayed to rebuild state */
    double recovery_ms;       /* time spent recovering */
    /* the last hinge_generate */
    uint32_t prompt_tokens, generated_tokens;
    hinge_stop stop;
    double ttft_ms;           /* call start to the first token: tokenizing + prefill */
    double decode_ms;         /* the steps after the first token */
    uint32_t steps;           /* prefill included */
    double device_ms, network_ms, edge_ms, queue_ms; /* summed over the steps */
    uint64_t uplink_bytes, downlink_bytes;
    uint64_t prefill_uplink_bytes;
    uint32_t resumes;         /* tries to take the same edge session up over a new connection after a
                                 lost connection (not in recoveries: no state was rebuilt) */
    char recovery_cause[96];  /* what the last recovery recovered from ("" none) */
    /* re-cutting (HINGE_CUT_AUTO with an edge), over the session's life */
    uint32_t recuts;          /* moves of the cut between two tokens */
    int first_cut;            /* the cut decided when the session opened */
    double recut_ms;          /* time spent moving */
} hinge_stats;

void hinge_session_get_stats(const hinge_session *s, hinge_stats *out);

/* Bytes the session allocated for itself (KV cache, activations, scratch,
 * buffers of the wire), host and Vulkan device memory. */
uint64_t hinge_session_memory(const hinge_session *s);

/* Called after every step of hinge_generate (NULL: none). */
typedef void (*hinge_step_cb)(const hinge_step_info *step, void *user);
void hinge_session_set_step_cb(hinge_session *s, hinge_step_cb cb, void *user);

/* ---- token-level calls (researchers) ---- */

/* Runs tokens[0..n) at the session's next positions through both halves
 * and samples the next token from the last one into *next. info may be NULL.
 * The session's position advances by n. Errors: HINGE_ERR_INVALID,
 * HINGE_ERR_RANGE (past the context), HINGE_CANCELLED, and as hinge_generate. */
hinge_status hinge_session_step(hinge_session *s, const int32_t *tokens, size_t n, int32_t *next,
                                hinge_step_info *info);

/* Logits (n_vocab floats each) of rows [row, row + n_rows) of the last
 * hinge_session_step, after the wire codec. Only where the layers after the
 * cut run in this process (no edge): HINGE_ERR_UNSUPPORTED otherwise;
 * HINGE_ERR_RANGE for rows outside the last step. */
hinge_status hinge_session_logits(hinge_session *s, size_t row, size_t n_rows, float *out);

/* The session's next position (tokens seen so far). */
uint32_t hinge_session_position(const hinge_session *s);

/* ---- profiles and the partitioner (hinge profile, hinge partition) ---- */

typedef struct hinge_profile_config {
    uint32_t size;          /* set by hinge_profile_config_init */
    hinge_backend backend;
    int edge_role;          /* nonzero: write an edge profile rather than a device profile */
    const char *name;       /* the profile's name; NULL: made from the machine */
    uint32_t n_ctx;         /* context the costs are fitted over; 0: 1024 */
    int n_threads;          /* 0: every online CPU */
    const char *edge_url;   /* measure the HTTP/2 overhead of a step against this edge; NULL: none */
    const char *ca_file;
    const char *api_key;    /* bearer token for edge_url; NULL: none (added in 0.2) */
} hinge_profile_config;

void hinge_profile_config_init(hinge_profile_config *c);

/* Measures this machine running m (each layer's prefill and decode cost,
 * the head, the wire codecs, optionally the HTTP/2 overhead) and returns the
 * profile as JSON text in *json (free with hinge_free). Takes seconds to
 * minutes. Errors: as hinge_session_create. */
hinge_status hinge_profile_measure(hinge_model *m, const hinge_profile_config *c, char **json);

typedef struct hinge_plan_config {
    uint32_t size;               /* set by hinge_plan_config_init */
    const char *device_profile;  /* required */
    const char *channel_profile; /* with edge_profile: a split is considered */
    const char *edge_profile;
    const char *edge_load;       /* a saved GET /v1/profile reply: the edge's queue; NULL: idle */
    uint32_t prompt_len;         /* 0: 128 */
    uint32_t new_tokens;         /* 0: 64 */
    uint32_t min_cut;
    uint64_t mem_limit;
    double energy_weight;
    const char *codecs;          /* "f32,f16,q8" (NULL: f32 and f16; q8 only when asked for) */
    int connected;               /* the edge connection is already open */
    int cold_start;              /* the device's weights are not paged in yet */
    /* Speculative lookahead (added in 0.2; older structs get 0): with speculate > 0 every split candidate
       also gets "speculate": the draft length that pays (0..speculate), the tokens per round trip it
       expects and its time per output token, for drafts accepted with probability accept_rate. */
    uint32_t speculate;          /* most drafts per step, at most 15; 0: not modelled */
    double accept_rate;          /* a draft's acceptance, in [0, 1]; 0: 0.5 */
    /* The privacy policy, as hinge_session_config's (added in 0.2). */
    float max_recovery;          /* 0: none */
    float wire_noise;            /* the session's noise the policy reads the profile at */
    const char *privacy_profile; /* required with max_recovery */
    /* A private head, as hinge_session_config's (added after 0.2): every split candidate keeps the last
       private_head layers, the head and the sampler on the device; the edge returns rows. 0: none */
    uint32_t private_head;
} hinge_plan_config;

void hinge_plan_config_init(hinge_plan_config *c);

/* The partitioner's decision for one request with every candidate cut's
 * predicted TTFT, TPOT, bytes and energy, as JSON text in *json (free with
 * hinge_free). Errors: HINGE_ERR_INVALID, HINGE_ERR_IO and
 * HINGE_ERR_FORMAT (profiles), HINGE_ERR_RANGE (no cut fits the limits). */
hinge_status hinge_partition_plan(hinge_model *m, const hinge_plan_config *c, char **json);

#ifdef __cplusplus
}
#endif

#endif
