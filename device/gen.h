/* hinge: one generation, split at a cut k.
 *
 * The front (embed + layers [0, k)) runs on this device, on the CPU engine or
 * on Vulkan; the tail (layers [k, N), head, sampler) runs in-process or on an
 * edge over HTTP/2. Every combination drives the same loop: gen_step takes
 * tokens at positions pos0.. and returns the next token, with the time split
 * into device compute, network and edge compute. */
#ifndef HINGE_GEN_H
#define HINGE_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "sampler.h"
#include "status.h"
#include "threadpool.h"
#include "transport.h"

typedef enum gen_backend {
    GEN_BACKEND_CPU = 0,
    GEN_BACKEND_VULKAN = 1,
} gen_backend;

typedef struct gen_config {
    const model *m;      /* borrowed; loaded with hash_file when edge_url is set */
    threadpool *tp;      /* borrowed; may be NULL */
    uint32_t cut;        /* k: layers on this device; 0..n_layer */
    gen_backend backend; /* where the device's layers run */
    const char *edge_url; /* NULL: the tail runs in-process */
    const char *cacert;   /* PEM file for https edges; NULL: the system store */
    tx_client *client;    /* borrowed: a client of edge_url already in use (its connection is reused);
                             NULL: the generation makes its own */
    tx_codec codec;       /* wire codec; 0: f32 */
    sampler_params sp;
    uint32_t ctx;         /* positions: prompt + new tokens */
} gen_config;

/* Where one step's time went, in seconds, and its bytes on the wire. */
typedef struct gen_timing {
    double device_s;  /* front: embed + layers [0, k) */
    double tail_s;    /* wall time of the tail (in-process compute, or the HTTP exchange) */
    double edge_s;    /* tail compute (edge-reported when remote) */
    double queue_s;   /* waiting for the edge's compute worker */
    double network_s; /* tail_s - edge_s - queue_s: uplink + downlink + HTTP/TLS */
    uint64_t up_bytes, down_bytes;
} gen_timing;

typedef struct gen gen;

/* Prepares both halves: creates stage contexts or the Vulkan executor, and,
 * with an edge, connects and opens a session (one TLS handshake). Errors from
 * any half, with err saying which. */
hinge_status gen_create(const gen_config *cfg, gen **out, char *err, size_t errlen);
void gen_destroy(gen *g); /* NULL is a no-op; closes the edge session */
const char *gen_errmsg(const gen *g);

/* Runs tokens[0..n) at positions pos0.. through both halves and samples the
 * next token from the last position. t (may be NULL) receives the timing. */
hinge_status gen_step(gen *g, const int32_t *tokens, size_t n, uint32_t pos0, int32_t *next, gen_timing *t);

/* Connection counters of the edge client (zeros for an in-process tail). */
void gen_client_stats(const gen *g, tx_client_stats *out);

#endif
