/* edge: parsing what a client sends before any model is involved: the
 * request path (routing) and the JSON body of POST /v1/sessions. Pure
 * functions, no server state: the fuzz harness tests/fuzz/fuzz_request.c
 * drives them directly. */
#ifndef HINGE_EDGE_REQUEST_H
#define HINGE_EDGE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sampler.h"
#include "status.h"
#include "transport.h"

enum {
    EDGE_SID_HEX = 32,           /* a session id: 128 bits as lowercase hex */
    EDGE_SID_MAX = EDGE_SID_HEX + 1,
    EDGE_INSTANCE_HEX = 8,       /* an edge's instance id: the first hex digits of its session ids */
    EDGE_JSON_MAX = 4096,        /* cap on a JSON request body */
    EDGE_REQ_MAX_CUT = 1 << 16,  /* a cut beyond any model; the model's n_layer is checked later */
    EDGE_REQ_MAX_CTX = 1 << 24,
};

typedef enum edge_route {
    EDGE_ROUTE_NONE = 0,  /* no such resource */
    EDGE_ROUTE_HEALTH,    /* /v1/health */
    EDGE_ROUTE_PROFILE,   /* /v1/profile */
    EDGE_ROUTE_SESSIONS,  /* /v1/sessions */
    EDGE_ROUTE_SESSION,   /* /v1/sessions/{id} */
    EDGE_ROUTE_STEPS,     /* /v1/sessions/{id}/steps */
    EDGE_ROUTE_METRICS,   /* /metrics (Prometheus) */
    EDGE_ROUTE_OA_COMPLETIONS, /* /v1/completions (OpenAI-compatible: openai.c) */
    EDGE_ROUTE_OA_CHAT,   /* /v1/chat/completions */
    EDGE_ROUTE_OA_MODELS, /* /v1/models */
} edge_route;

/* Routes path[0..len) (a query string, if any, is ignored). For the two
 * session routes, sid receives the id segment when it is exactly 32
 * lowercase hex digits, and "" otherwise (which no session matches). */
edge_route edge_route_path(const char *path, size_t len, char sid[EDGE_SID_MAX]);

/* The body of POST /v1/sessions (docs/protocol.md):
 *   {"model_sha256": "<64 hex>", "cut": k, "codec": "f32"|"f16"|"q8",
 *    "sampling": {"temp": t, "top_k": n, "top_p": p, "seed": s, "skip": n},
 *    "ctx": n, "max_step": n, "private_head": j}
 * sampling and each of its fields, max_step and private_head are optional (greedy,
 * no cuts, seed 0, the edge's default step). Unknown keys are errors. */
typedef struct edge_session_req {
    uint8_t model_sha256[32];
    uint32_t cut;
    tx_codec codec;
    sampler_params sampling;
    uint32_t ctx;      /* 1 .. EDGE_REQ_MAX_CTX */
    uint32_t max_step; /* 0: the edge's default; else <= ctx */
    uint64_t skip;     /* sampling.skip: draws the sampler discards first (a resumed stream) */
    uint32_t private_head; /* J: the session's layers are [cut, N - J) and its steps answer with rows; 0: off */
} edge_session_req;

/* Parses and checks (types, ranges) body[0..len), at most EDGE_JSON_MAX
 * bytes. HINGE_ERR_FORMAT with the reason in err; *out untouched then. */
hinge_status edge_parse_session_req(const char *body, size_t len, edge_session_req *out, char *err,
                                    size_t errlen);

/* Copies in[0..n) to out as valid UTF-8 (what a JSON string may hold): a
 * byte that starts no valid sequence (overlong, surrogate, beyond U+10FFFF,
 * stray continuation) becomes U+FFFD; an unfinished character at the end
 * is left unless final (then it is U+FFFD too). out holds 3n bytes. Returns
 * the bytes written; *used gets the input bytes consumed. Pure. */
size_t edge_utf8_clean(const char *in, size_t n, bool final, char *out, size_t *used);

/* 64 lowercase hex digits of sha[0..32) and a NUL into out[65]. */
void edge_hex(const uint8_t *bytes, size_t n, char *out);

#endif
