/* hinge transport: what the device and the edge both speak (protocol v1,
 * docs/protocol.md).
 *
 * 1. The activation frame: the wire format of the boundary activations
 *    between layer k-1 (device) and layer k (edge). A frame is a fixed
 *    32-byte little-endian header followed by n rows of dim values in one
 *    of three codecs:
 *
 *      offset size field
 *           0    4 magic        "HNGA" (bytes 48 4e 47 41)
 *           4    1 version      1
 *           5    1 codec        1 f32, 2 f16, 3 q8
 *           6    2 flags        bit 0: TX_FLAG_NO_SAMPLE, bit 1: TX_FLAG_VERIFY;
 *                                  others must be 0
 *           8    4 pos          start position of row 0
 *          12    4 n            positions (rows), >= 1
 *          16    4 dim          values per row (the model's n_embd)
 *          20    4 reserved     0
 *          24    8 payload_len  bytes after the header = n * row_bytes
 *
 *    Row layouts (all little-endian):
 *      f32: dim IEEE binary32.
 *      f16: one binary32 scale s, then dim IEEE binary16 h (round to nearest
 *           even); value = s * h. s is 1, or the smallest power of two that
 *           brings the row within f16's range (exact: precision stays 2^-11).
 *      q8:  one binary32 scale s = absmax/127, then dim int8 q in
 *           [-127, 127]; value = s * q.
 *
 *    Encoding and decoding allocate nothing: buffers are the caller's.
 *
 * 2. The client: libcurl, HTTP/2 over TLS (or h2c with prior knowledge for
 *    http:// URLs), one connection per client reused by every request of
 *    every session opened through it.
 *
 * Threads: frame functions are reentrant. A client and the sessions opened
 * through it must be used from one thread at a time. */
#ifndef HINGE_TRANSPORT_H
#define HINGE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sampler.h"
#include "status.h"

/* ------------------------------------------------------------------ */
/* Activation frames                                                  */

enum {
    TX_PROTOCOL_VERSION = 1,
    TX_FRAME_HEADER_BYTES = 32,
    TX_FRAME_MAX_DIM = 1 << 16,       /* hard cap on dim, whatever the session */
    TX_FRAME_MAX_POSITIONS = 1 << 20, /* hard cap on n, whatever the session */
};

/* "HNGA" read as a little-endian u32. */
#define TX_FRAME_MAGIC UINT32_C(0x41474e48)

typedef enum tx_codec {
    TX_CODEC_F32 = 1,
    TX_CODEC_F16 = 2,
    TX_CODEC_Q8 = 3,
} tx_codec;

/* Frame flags. */
enum {
    /* A prefill chunk that is not the last: the edge runs its layers on the
     * rows but neither the head nor the sampler, and answers token -1. */
    TX_FLAG_NO_SAMPLE = 1u << 0,
    /* Speculative lookahead: row 0 is the last accepted token, rows 1.. the
     * device's drafts. The edge samples a token from every row (n draws of
     * its sampler) and answers them all; at most TX_VERIFY_MAX rows. The
     * next step may then start anywhere in [pos + 1, pos + n]: the positions
     * of rejected drafts are rewritten. Not with TX_FLAG_NO_SAMPLE. */
    TX_FLAG_VERIFY = 1u << 1,
    TX_FLAGS_KNOWN = TX_FLAG_NO_SAMPLE | TX_FLAG_VERIFY,
};

/* Most rows of a TX_FLAG_VERIFY frame: the last accepted token and 15 drafts. */
enum { TX_VERIFY_MAX = 16 };

typedef struct tx_frame_header {
    uint32_t magic;
    uint8_t version;
    uint8_t codec;  /* tx_codec */
    uint16_t flags; /* TX_FLAG_* */
    uint32_t pos;   /* start position */
    uint32_t n;     /* rows */
    uint32_t dim;   /* values per row */
    uint32_t reserved;
    uint64_t payload_len; /* bytes after the header */
} tx_frame_header;

/* What the receiver expects of a frame (the session's parameters). */
typedef struct tx_frame_limits {
    tx_codec codec;
    uint32_t dim;   /* exact */
    uint32_t max_n; /* 1 <= n <= max_n (and <= TX_FRAME_MAX_POSITIONS) */
} tx_frame_limits;

/* "f32", "f16", "q8"; "unknown" for other values. */
const char *tx_codec_name(tx_codec c);

/* Parses "f32" | "f16" | "q8". HINGE_ERR_INVALID for anything else. */
hinge_status tx_codec_parse(const char *name, tx_codec *out);

/* Bytes of one row of dim values; 0 for an unknown codec or a dim of 0 or
 * over TX_FRAME_MAX_DIM. */
size_t tx_codec_row_bytes(tx_codec c, uint32_t dim);

/* *bytes = TX_FRAME_HEADER_BYTES + n * row_bytes. HINGE_ERR_INVALID for an
 * unknown codec, HINGE_ERR_RANGE for n or dim of 0 or over the caps. */
hinge_status tx_frame_size(tx_codec c, uint32_t n, uint32_t dim, size_t *bytes);

/* Encodes n rows of dim floats (hidden, row-major) starting at position pos
 * into buf[0..cap). *len = the frame's size. Errors: HINGE_ERR_INVALID (bad
 * codec, n, dim or flags), HINGE_ERR_NOMEM (cap too small), HINGE_ERR_RANGE
 * (a NaN or infinite value). On failure *len is
 * untouched and err names the row and column. */
hinge_status tx_frame_encode(tx_codec c, uint16_t flags, uint32_t pos, uint32_t n, uint32_t dim,
                             const float *hidden, void *buf, size_t cap, size_t *len, char *err,
                             size_t errlen);

/* Reads and checks the header of the frame in buf[0..len): magic, version,
 * codec (known and == lim->codec), flags, dim == lim->dim, 1 <= n <=
 * lim->max_n, reserved == 0, payload_len == n * row_bytes. len may be short
 * of the whole frame (an edge checks the header as soon as it has it), but
 * must hold the header. Errors: HINGE_ERR_FORMAT (truncated header, bad
 * magic or a field that disagrees with lim), HINGE_ERR_UNSUPPORTED (version
 * or codec unknown), HINGE_ERR_RANGE (n over lim->max_n). *out is written
 * only on success. */
hinge_status tx_frame_parse_header(const void *buf, size_t len, const tx_frame_limits *lim,
                                   tx_frame_header *out, char *err, size_t errlen);

/* Checks the whole frame buf[0..len) (as tx_frame_parse_header, plus len ==
 * header + payload_len exactly) and decodes its rows into out (n * dim
 * floats; out_cap is the number of floats out holds). Every decoded value
 * must be finite (HINGE_ERR_FORMAT naming the row and column otherwise; the
 * f16 scale must be a power of two >= 1, the q8 scale finite and >= 0, q8's
 * q != -128). HINGE_ERR_NOMEM if
 * out_cap is too small. *hdr (may be NULL) is written only on success; out
 * may be partly written on failure. */
hinge_status tx_frame_decode(const void *buf, size_t len, const tx_frame_limits *lim, float *out,
                             size_t out_cap, tx_frame_header *hdr, char *err, size_t errlen);

/* The noise defence (docs/privacy.md): adds to each of n rows (dim floats,
 * positions pos0..) Gaussian noise of standard deviation rel_std times the
 * row's RMS, before the row is encoded. The noise is a fixed function of
 * (seed, position, column): a replayed prefix gets the same noise. rel_std
 * <= 0: nothing. The seed must stay secret to the device: whoever knows it
 * can subtract the noise. */
void tx_noise_add(float *rows, uint32_t n, uint32_t dim, uint32_t pos0, float rel_std, uint64_t seed);

/* ------------------------------------------------------------------ */
/* The client                                                         */

typedef struct tx_client tx_client;
typedef struct tx_session tx_session;

typedef struct tx_client_config {
    /* "https://HOST:PORT" (HTTP/2 over TLS, ALPN h2) or "http://HOST:PORT"
     * (cleartext HTTP/2 with prior knowledge). Copied. */
    const char *base_url;
    const char *cacert;          /* PEM file of trusted CAs; NULL: the system store. Copied. */
    uint32_t connect_timeout_ms; /* 0: 5000 */
    uint32_t timeout_ms;         /* whole request (send, edge compute, receive); 0: 30000 */
    /* Busy-poll the socket for up to this long per request before sleeping
     * in poll(): saves a wake-up (tens of microseconds on servers with deep
     * idle states) per token, at the price of a core spinning while the
     * edge computes. 0 (default): never spin. At most 100000. */
    uint32_t spin_us;
    /* Sent as "Authorization: Bearer API_KEY" with every request; NULL: none.
     * Copied. */
    const char *api_key;
} tx_client_config;

/* Counters over the client's life. One generation over TLS should show one
 * connect and one TLS handshake. */
typedef struct tx_client_stats {
    uint64_t connects;       /* new connections (sum of CURLINFO_NUM_CONNECTS) */
    uint64_t tls_handshakes; /* TLS set-ups (libcurl's SSL_CTX callback, once per handshake) */
    uint64_t requests;       /* HTTP requests that got a response */
    uint64_t bytes_up;       /* request bodies */
    uint64_t bytes_down;     /* response bodies */
} tx_client_stats;

/* Creates the client; no connection is made until the first request.
 * Errors: HINGE_ERR_INVALID (URL not http:// or https://, libcurl without
 * HTTP/2), HINGE_ERR_NOMEM. On failure err says why and *out is untouched. */
hinge_status tx_client_create(const tx_client_config *cfg, tx_client **out, char *err, size_t errlen);
/* NULL is a no-op. Sessions opened through c must be closed first. */
void tx_client_destroy(tx_client *c);
void tx_client_get_stats(const tx_client *c, tx_client_stats *out);

/* GET /v1/health. HINGE_OK when the edge answers 200. Detail in err. */
hinge_status tx_client_health(tx_client *c, char *err, size_t errlen);
/* GET /v1/profile: the reply's JSON text in *text (malloc'd, NUL-ended;
 * the caller frees it), its length in *len. Errors as for a session's
 * control requests. */
hinge_status tx_client_profile(tx_client *c, char **text, size_t *len, char *err, size_t errlen);

typedef struct tx_session_config {
    uint8_t model_sha256[32]; /* the device's model identity (model.sha256) */
    uint32_t cut;             /* k: the edge runs layers [k, N), the head and the sampler */
    tx_codec codec;
    sampler_params sampling;
    uint32_t ctx;      /* positions the session holds (prompt + generated) */
    uint32_t max_step; /* most positions per request; 0: the edge's default. A longer
                          prefill is sent in chunks of max_step. */
    uint64_t sample_skip; /* draws the edge's sampler discards first: a sampled stream resumed on a new
                             edge session continues where the old one was */
    uint32_t private_head; /* J > 0: the edge runs layers [k, N - J) only and answers each step with their
                              output rows (tx_session_step_rows), never a token; 0: off */
} tx_session_config;

/* What the edge said when the session was opened. */
typedef struct tx_session_info {
    char id[33];      /* 32 hex digits */
    uint32_t n_embd;  /* must equal the device model's */
    uint32_t n_layer;
    uint32_t ctx;      /* granted */
    uint32_t max_step; /* granted */
} tx_session_info;

/* Where the time of one tx_session_step went, in microseconds. */
typedef struct tx_timing {
    uint64_t encode_us;      /* device: encoding the frame(s) */
    uint64_t request_us;     /* device wall time of the HTTP exchange(s) */
    uint64_t edge_us;        /* edge compute (decode, layers, head, sampling), from the edge */
    uint64_t queue_us;       /* waiting for the edge's compute worker, from the edge */
    uint64_t network_us;     /* request_us - edge_us - queue_us: uplink, downlink, HTTP/TLS */
    uint64_t uplink_bytes;   /* frame bytes sent */
    uint64_t downlink_bytes; /* response body bytes received */
    uint32_t requests;       /* HTTP requests (> 1 for a chunked prefill) */
} tx_timing;

/* POST /v1/sessions. Checks the edge's reply (n_embd, granted ctx and
 * max_step) and allocates the session's frame buffer: steps allocate
 * nothing in hinge code (libcurl and jansson allocate internally).
 * Errors: HINGE_ERR_INVALID (bad config), HINGE_ERR_NETWORK (connect,
 * TLS, timeout), HINGE_ERR_PROTOCOL (not HTTP/2, malformed reply), and for
 * an edge's refusal the status of its HTTP code: 401 INVALID (no or a
 * wrong API key), 404 NOT_FOUND, 409, 429 and 503 RANGE, 413 NOMEM, other
 * 4xx FORMAT, 5xx PROTOCOL. The edge's
 * {"error", "detail"} goes into err. */
hinge_status tx_session_open(tx_client *c, const tx_session_config *cfg, tx_session **out, char *err,
                             size_t errlen);

const tx_session_info *tx_session_get_info(const tx_session *s);

/* Sends n rows of hidden ((n, n_embd) f32, the output of layer k-1 for
 * positions pos .. pos+n-1) and returns the token the edge sampled from the
 * last row. pos must be the session's next position (0, then the previous
 * pos + n); the edge answers 409 otherwise. n > max_step is sent as several
 * requests, all but the last flagged TX_FLAG_NO_SAMPLE. t may be NULL.
 * Errors as tx_session_open, plus HINGE_ERR_RANGE for a NaN or infinite
 * value (nothing is sent). Detail in tx_session_errmsg. */
hinge_status tx_session_step(tx_session *s, uint32_t pos, uint32_t n, const float *hidden, int32_t *token,
                             tx_timing *t);

/* A private-head session's step (docs/protocol.md, "Private head"): sends
 * n rows of hidden as tx_session_step does and replaces them with the
 * rows the edge sent back (the output of layer N - J - 1 at the same
 * positions, decoded from the session's codec). Errors as tx_session_step;
 * HINGE_ERR_PROTOCOL for a reply frame that does not match the request. */
hinge_status tx_session_step_rows(tx_session *s, uint32_t pos, uint32_t n, float *hidden, tx_timing *t);

/* Speculative lookahead (TX_FLAG_VERIFY): n rows at pos (row 0 the last
 * accepted token, rows 1.. drafts; 2 <= n <= min(TX_VERIFY_MAX, max_step)),
 * tokens[i] the edge's sample from row i. pos may be anywhere from the
 * previous verify step's pos + 1 to the session's next position. Errors as
 * tx_session_step. */
hinge_status tx_session_verify(tx_session *s, uint32_t pos, uint32_t n, const float *hidden, int32_t *tokens,
                               tx_timing *t);

/* HTTP status of the session's last request (0 if none got a response). */
long tx_session_http_status(const tx_session *s);
const char *tx_session_errmsg(const tx_session *s);

/* The deadline of each following step request, in ms (0: the client's
 * timeout_ms). A stalled edge is noticed after this long. */
void tx_session_set_deadline(tx_session *s, uint32_t ms);

/* The same edge session, from now on over client c (a new connection to
 * the same edge: the edge keeps a session whose connection was lost for a
 * grace period, and answers a repeated step from its last reply). c is
 * borrowed, like the session's first client. */
void tx_session_rebind(tx_session *s, tx_client *c);

/* True when the client's last request failed by running out of time (the
 * peer stalled) rather than by a lost or refused connection. */
bool tx_client_timed_out(const tx_client *c);

/* DELETE /v1/sessions/{id}, then frees s (whatever the DELETE's outcome,
 * which is returned; detail in err). NULL is a no-op returning HINGE_OK. */
hinge_status tx_session_close(tx_session *s, char *err, size_t errlen);

#endif
