/* hinge partition: choosing the cut k (and the wire codec) of a request.
 *
 * Inputs (docs/partitioning.md has the model and the file formats):
 *   - a model profile, derived from the GGUF (part_model_from_gguf): per
 *     layer FLOPs, weight bytes, KV bytes, attention window; embedding,
 *     head and the frame bytes of each codec;
 *   - a device profile and an edge profile (part_compute_load): measured
 *     per-layer costs of one model (`hinge profile`) and/or published
 *     roofline figures (peak FLOP/s, memory bandwidth), memory, power;
 *   - a channel (part_channel_load, or a live estimate: part_chan_est);
 *   - the edge's load (part_edge_load_parse of GET /v1/profile);
 *   - the request (prompt length, new tokens) and the policy (privacy
 *     floor, memory cap, weight of device energy against latency).
 * Output: for every k in 0..N a prediction (TTFT, time per output token,
 * bytes, device energy, device memory) and the chosen k and codec.
 * k = N runs everything on the device, head and sampler included; it is
 * the only candidate when no edge is reachable.
 *
 * The library depends on model/ and jansson only. Nothing here keeps
 * global state; profile structs are plain data (fixed caps, no pointers)
 * that a caller may also fill by hand. Every function that can fail
 * returns a hinge_status and writes the detail (file, field, value) to
 * err; out-parameters are untouched on failure. */
#ifndef HINGE_PARTITION_H
#define HINGE_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "status.h"

enum {
    PART_MAX_LAYERS = 256, /* hard cap on n_layer for every profile */
    PART_NAME_MAX = 64,
    PART_NCODEC = 4,       /* codec values 1..3 index arrays of this size */
    PART_FRAME_HEADER_BYTES = 32,
    PART_DEFAULT_MAX_STEP = 512, /* hinge-edge's default positions per request */
    PART_ENGINE_PASS = 64,       /* positions per pass of hinge's engines (fwd, vk_exec defaults) */
};

/* ------------------------------------------------------------------ */
/* Wire codecs: the same numbers as transport's tx_codec (docs/protocol.md);
 * the partitioner does not link transport, tests check that the two agree. */

typedef enum part_codec {
    PART_CODEC_NONE = 0, /* k = N: nothing is sent */
    PART_CODEC_F32 = 1,
    PART_CODEC_F16 = 2,
    PART_CODEC_Q8 = 3,
} part_codec;

enum {
    PART_CODEC_BIT_F32 = 1u << PART_CODEC_F32,
    PART_CODEC_BIT_F16 = 1u << PART_CODEC_F16,
    PART_CODEC_BIT_Q8 = 1u << PART_CODEC_Q8,
    /* f32 is exact; f16 keeps 11 bits of precision per value. q8 changes
     * tokens measurably and must be asked for. */
    PART_CODEC_MASK_DEFAULT = PART_CODEC_BIT_F32 | PART_CODEC_BIT_F16,
    PART_CODEC_MASK_ALL = PART_CODEC_BIT_F32 | PART_CODEC_BIT_F16 | PART_CODEC_BIT_Q8,
};

/* "f32", "f16", "q8", "none"; "unknown" otherwise. */
const char *part_codec_name(part_codec c);
/* "f32" | "f16" | "q8". HINGE_ERR_INVALID otherwise. */
hinge_status part_codec_parse(const char *s, part_codec *out);
/* Bytes of one row of dim values (as tx_codec_row_bytes); 0 for NONE or an
 * unknown codec. */
size_t part_codec_row_bytes(part_codec c, uint32_t dim);
/* "f32,f16" etc. into a mask of PART_CODEC_BIT_*. HINGE_ERR_INVALID names
 * the bad entry. */
hinge_status part_codec_mask_parse(const char *list, uint32_t *mask, char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Model profile                                                      */

typedef struct part_model_layer {
    double flops_per_pos;      /* one position: matmuls, norms, RoPE, activation, residuals */
    double flops_per_attended; /* one query position x one attended key: q.k, softmax, p.v */
    double weight_bytes;       /* the layer's tensors as stored */
    double kv_elems_per_pos;   /* K and V values one position adds: n_head_kv * (head_dim + head_dim_v) */
    uint32_t window;           /* most positions attended (sliding window); 0: all */
} part_model_layer;

typedef struct part_model {
    char name[PART_NAME_MAX];
    char sha256[65]; /* hex, of the GGUF file; "" when not hashed */
    uint32_t n_layer, n_embd, n_vocab, n_ctx_train;
    part_model_layer layer[PART_MAX_LAYERS];
    double embed_flops_per_pos; /* dequantising one row and scaling it */
    double embed_row_bytes;     /* one row of the embedding table */
    double embed_table_bytes;   /* the whole table */
    double head_flops;          /* one position: final norm + output matrix + sampling */
    double head_weight_bytes;   /* final norm + output matrix (the table again when tied) */
    bool head_tied;             /* output == token embedding */
} part_model;

/* Derives the profile from a loaded model (hash_file or not: sha256 is ""
 * when the model was loaded without it). HINGE_ERR_RANGE for more than
 * PART_MAX_LAYERS layers. */
hinge_status part_model_from_gguf(const model *m, part_model *out, char *err, size_t errlen);

/* Attended key positions summed over queries pos0 .. pos0+n-1: sum of
 * min(p + 1, window) (window 0: p + 1). */
double part_attended_sum(uint32_t window, uint32_t pos0, uint32_t n);

/* FLOPs of layers [a, b) for n positions from pos0 (attention included). */
double part_model_flops(const part_model *m, uint32_t a, uint32_t b, uint32_t pos0, uint32_t n);

/* Bytes of the activation frame for n positions (header + rows). */
double part_frame_bytes(const part_model *m, part_codec c, uint32_t n);

/* ------------------------------------------------------------------ */
/* Channel                                                            */

typedef struct part_channel {
    char name[PART_NAME_MAX];
    double up_bps, down_bps; /* goodput of the link in bit/s, IP packets (headers count) */
    double rtt_s;            /* round-trip propagation and queueing, no processing */
    double jitter_s;         /* one-way delay variation (mean absolute deviation) */
    double loss;             /* per-segment loss probability in [0, 1) */
} part_channel;

/* Reads a channel profile (profiles/channels/, docs/partitioning.md).
 * HINGE_ERR_IO (cannot read), HINGE_ERR_FORMAT (not JSON, missing or
 * mistyped field, unknown key), HINGE_ERR_RANGE (impossible value): err
 * names the file and the field. */
hinge_status part_channel_load(const char *path, part_channel *out, char *err, size_t errlen);
/* The same from text; name stands for the file in messages. */
hinge_status part_channel_parse(const char *text, size_t len, const char *name, part_channel *out, char *err,
                                size_t errlen);

/* ------------------------------------------------------------------ */
/* Device and edge profiles                                           */

typedef enum part_role {
    PART_ROLE_DEVICE = 0,
    PART_ROLE_EDGE = 1,
} part_role;

/* Measured cost of one layer, microseconds, as fitted by `hinge profile`. */
typedef struct part_layer_cost {
    double prefill_us_per_pass;     /* per pass of <= PART_ENGINE_PASS positions (weights decoded once) */
    double prefill_us_per_pos;      /* per position of a prefill, attention aside */
    double prefill_us_per_attended; /* per (query, attended key) pair of a prefill */
    double decode_us;               /* one decode position, attention aside */
    double decode_us_per_attended;  /* per attended key of a decode position */
    double first_touch_us;          /* the first pass of a fresh process: page faults on the mapped
                                       weights (CPU engine), the executor's first use (Vulkan) */
} part_layer_cost;

typedef struct part_measured {
    bool present;
    char model_sha256[65]; /* the model these costs are of */
    uint32_t n_layer, n_embd;
    part_layer_cost layer[PART_MAX_LAYERS];
    double embed_us_per_pos;
    double step_us;                         /* per pass of the engine: submit, wait, read-back (Vulkan); 0 on the CPU */
    double head_us;                         /* final norm + output + sampling, one position */
    double head_first_touch_us;             /* the first head of a process: page faults */
    double encode_us_per_pos[PART_NCODEC];  /* frame encoding, indexed by part_codec */
} part_measured;

/* Published figures: a layer costs max(FLOPs / (peak * eff_compute),
 * bytes / (bandwidth * eff_memory)) + layer_overhead per pass. */
typedef struct part_roofline {
    bool present;
    double flops_per_s;       /* peak, the precision the engine computes in */
    double mem_bytes_per_s;   /* peak DRAM bandwidth */
    double eff_compute;       /* (0, 1]: achieved fraction of peak FLOP/s */
    double eff_memory;        /* (0, 1]: achieved fraction of peak bandwidth */
    double layer_overhead_us; /* per layer per pass: kernel launches, barriers */
    uint32_t prefill_chunk;   /* positions per pass (weights are read once per pass) */
} part_roofline;

typedef struct part_compute {
    char name[PART_NAME_MAX];
    part_role role;
    part_measured meas;
    part_roofline roof;
    double mem_bytes;           /* memory an app may use (device); 0: not limited (edge) */
    double kv_elem_bytes;       /* bytes per cached K or V value (4: CPU engine f32) */
    double power_compute_w;     /* device: SoC power while computing */
    double power_tx_w;          /* device: radio power while transmitting */
    double power_rx_w;          /* device: radio power while receiving */
    double power_idle_w;        /* device: while waiting for the edge */
    double request_overhead_us; /* HTTP/2 + TLS processing of one request, both ends */
    double setup_overhead_us;   /* connect + TLS handshake + session open, processing only */
} part_compute;

/* Reads a device or edge profile; role must match the file's "kind".
 * Errors as part_channel_load. */
hinge_status part_compute_load(const char *path, part_role role, part_compute *out, char *err, size_t errlen);
hinge_status part_compute_parse(const char *text, size_t len, const char *name, part_role role, part_compute *out,
                                char *err, size_t errlen);

/* HINGE_OK when c can cost m: its measured costs are of m (same layer
 * count and width; same sha256 when both are known), or it has roofline
 * figures. HINGE_ERR_UNSUPPORTED otherwise, naming both. */
hinge_status part_compute_check(const part_compute *c, const part_model *m, char *err, size_t errlen);

/* What `hinge profile` knows about the measurement, for the file. */
typedef struct part_save_info {
    const char *source;      /* "measured by hinge profile on <cpu>, <date>" */
    const char *description; /* may be NULL */
    const char *engine;      /* "cpu", "vulkan" */
    uint32_t threads;
    const char *model_name;
    const uint32_t *contexts; /* decode contexts measured */
    size_t n_contexts;
    const char *mem_source, *power_source, *overhead_source; /* provenance of those figures */
} part_save_info;

/* c (its measured block and scalar figures) as the JSON text of a profile
 * file that part_compute_parse reads back, into *text (malloc'd: the
 * caller frees it). HINGE_ERR_INVALID (not measured, no source),
 * HINGE_ERR_NOMEM. */
hinge_status part_compute_dump(const part_compute *c, const part_save_info *info, char **text, char *err,
                               size_t errlen);
/* The same written to the file at path. Adds HINGE_ERR_IO. */
hinge_status part_compute_save(const part_compute *c, const part_save_info *info, const char *path, char *err,
                               size_t errlen);

/* ------------------------------------------------------------------ */
/* Edge load                                                          */

typedef struct part_edge_load {
    uint32_t queued_steps;  /* waiting for the edge's compute worker */
    uint32_t running_steps; /* being computed */
    bool draining;          /* the edge is shutting down: not reachable */
    double queue_us;        /* observed wait per request (live EWMA); < 0: unknown */
} part_edge_load;

/* The "load" object of hinge-edge's GET /v1/profile reply (queue_us set to
 * -1). HINGE_ERR_FORMAT names a missing or mistyped field. */
hinge_status part_edge_load_parse(const char *text, size_t len, part_edge_load *out, char *err, size_t errlen);
/* The same from a file holding a saved reply (at most 1 MiB). Adds
 * HINGE_ERR_IO (cannot read), HINGE_ERR_RANGE (too big). */
hinge_status part_edge_load_load(const char *path, part_edge_load *out, char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Request, policy, predictions and the decision                      */

typedef struct part_request {
    uint32_t prompt_len; /* P >= 1 */
    uint32_t new_tokens; /* n >= 1: one prefill step, then n - 1 decode steps */
    uint32_t max_step;   /* the edge's positions per request; 0: PART_DEFAULT_MAX_STEP */
    bool connected;      /* a connection and session are already open: no set-up cost */
    bool cold_start;     /* the device's first pass in a fresh process: page faults on weights not
                            paged in yet (CPU engine, file not hashed), a new Vulkan executor's
                            first use; adds the layers' (and at k = N the head's) first_touch_us */
} part_request;

/* A model's privacy profile (`hinge experiment privacy`, docs/privacy.md):
 * the measured token recovery of the inversion attack per (cut, codec,
 * noise). */
enum { PART_PRIVACY_MAX_CELLS = 4096 };

typedef struct part_privacy_cell {
    uint32_t cut;
    part_codec codec;
    double noise;    /* std relative to the row RMS */
    double recovery; /* fraction of prompt tokens recovered, [0, 1] */
} part_privacy_cell;

typedef struct part_privacy {
    char sha256[65]; /* the model's, hex */
    uint32_t n;
    part_privacy_cell cells[PART_PRIVACY_MAX_CELLS];
} part_privacy;

/* Reads a privacy profile (kind "hinge-privacy-profile", its sha256 and
 * cells with cut, codec, noise, token_recovery). HINGE_ERR_IO,
 * HINGE_ERR_FORMAT, HINGE_ERR_RANGE, with the file and field in err. */
hinge_status part_privacy_load(const char *path, part_privacy *out, char *err, size_t errlen);

/* The measured recovery at cut k, codec c, for a session adding noise: the
 * cell of the strongest measured noise <= noise (less noise never hides
 * more); -1 when nothing is measured there. */
double part_privacy_recovery(const part_privacy *p, uint32_t k, part_codec c, double noise);

typedef struct part_policy {
    uint32_t min_cut;      /* privacy floor: k >= min_cut (k >= 1 keeps token ids on the device) */
    double mem_cap_bytes;  /* device memory for the model; 0: the device profile's */
    double energy_weight;  /* seconds of latency one joule of device energy is worth; 0: latency only */
    uint32_t codec_mask;   /* PART_CODEC_BIT_*; 0: PART_CODEC_MASK_DEFAULT */
    /* The privacy policy: (k, codec) with k < N only where the privacy
     * profile measured a token recovery <= max_recovery at the session's
     * noise; unmeasured choices are refused. */
    double max_recovery;            /* 0: no policy */
    double noise;                   /* the session's wire noise */
    const part_privacy *privacy;    /* required with max_recovery; borrowed */
    /* A private head (U-shaped split, docs/privacy.md): with J > 0 a split at k keeps layers
     * [N - J, N), the head and the sampler on the device; the edge runs [k, N - J) and answers each
     * request with its rows (a frame down instead of a token). Cuts N - J < k < N are infeasible. */
    uint32_t private_head;
} part_policy;

/* True when the policy allows cut k (of n_layer) with codec c. */
bool part_privacy_allows(const part_policy *pol, uint32_t k, uint32_t n_layer, part_codec c);

typedef struct part_inputs {
    const part_model *model;     /* required */
    const part_compute *device;  /* required */
    const part_compute *edge;    /* NULL: no edge reachable */
    const part_channel *channel; /* NULL: no edge reachable */
    part_edge_load load;         /* zero: idle edge, no observation (set queue_us = -1) */
    part_request req;
    part_policy pol;
} part_inputs;

/* Where a step's time goes, seconds. */
typedef struct part_split {
    double device_s;  /* embed + layers [0, k) (+ head at k = N) + frame encoding (+ a private head's
                         layers [N - J, N), head and reply decoding) */
    double network_s; /* transfer both ways + RTTs + HTTP/2/TLS processing + loss recovery */
    double edge_s;    /* layers [k, N) + head + sampling (a private head: [k, N - J) only) */
    double queue_s;   /* waiting for the edge's worker */
} part_split;

typedef enum part_infeasible {
    PART_OK = 0,
    PART_BELOW_FLOOR = 1, /* k < policy.min_cut */
    PART_OVER_MEMORY = 2, /* device memory over the cap */
    PART_NO_EDGE = 3,     /* k < N but no edge is reachable */
    PART_OVER_RECOVERY = 4, /* every allowed codec's measured recovery is over policy.max_recovery */
    PART_IN_PRIVATE_HEAD = 5, /* N - private_head < k < N: the cut falls inside the private head */
} part_infeasible;

const char *part_infeasible_name(part_infeasible why); /* "ok", "privacy floor", ... */

typedef struct part_prediction {
    uint32_t cut;
    part_codec codec;          /* NONE for k = N */
    part_infeasible why;       /* PART_OK: a candidate */
    double setup_s;            /* connect + TLS + session open (0 when connected or k = N) */
    double ttft_s;             /* the prefill step: prompt in, first token out */
    double tpot_s;             /* mean decode step */
    double total_s;            /* setup + TTFT + (n - 1) * TPOT */
    part_split ttft, tpot;     /* their split */
    double up_bytes, down_bytes; /* whole request, on the link (headers included) */
    double energy_j;           /* device energy for the whole request */
    double device_mem_bytes;   /* weights, KV cache and tables resident on the device */
    double objective;          /* total_s + energy_weight * energy_j */
} part_prediction;

/* Predicts cut k with codec c (NONE when k = N; ignored then). The
 * prediction is made even when infeasible (why says so). Errors:
 * HINGE_ERR_INVALID (missing input, k > N, bad codec or request),
 * HINGE_ERR_UNSUPPORTED (a profile cannot cost the model). */
hinge_status part_predict(const part_inputs *in, uint32_t k, part_codec c, part_prediction *out, char *err,
                          size_t errlen);

typedef struct part_decision {
    uint32_t cut;
    part_codec codec;       /* NONE when cut = N */
    part_prediction chosen;
} part_decision;

/* The decision for --cut auto: the feasible (k, codec) of least objective
 * (ties: the larger k, then the more exact codec). table (may be NULL)
 * receives N + 1 predictions, entry k with k's best allowed codec;
 * table_cap must be >= N + 1 when table is given. Allocates nothing; a
 * call takes microseconds. Errors as part_predict, plus
 * HINGE_ERR_RANGE when no cut is feasible (min_cut > N, or the memory cap
 * fits none) and HINGE_ERR_INVALID for a table too small. */
hinge_status part_decide(const part_inputs *in, part_prediction *table, size_t table_cap, part_decision *out,
                         char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Live channel estimate                                              */

/* One step as the client saw it: the fields of transport's tx_timing
 * (request_us, edge_us, queue_us, uplink_bytes, downlink_bytes, requests). */
typedef struct part_step_obs {
    uint64_t request_us;     /* device wall time of the HTTP exchange(s) */
    uint64_t edge_us;        /* edge compute, from the edge */
    uint64_t queue_us;       /* edge queueing, from the edge */
    uint64_t uplink_bytes;   /* frame bytes sent */
    uint64_t downlink_bytes; /* response body bytes */
    uint32_t requests;       /* HTTP requests of the step (0 is taken as 1) */
} part_step_obs;

typedef struct part_chan_est part_chan_est;

typedef struct part_chan_est_config {
    const part_channel *prior;  /* starting point (a channel profile); NULL: 50 ms, 10 Mbit/s */
    double alpha;               /* weight of the newest step, (0, 1]; 0: 0.1 */
    double prior_weight;        /* the prior counts as this many steps; 0: 2 */
    double request_overhead_us; /* HTTP/2 + TLS processing per request (the device profile's) */
} part_chan_est_config;

/* Exponentially weighted least squares of a step's network time
 * (request - edge - queue) against its requests and bytes: the intercept
 * per request is RTT + processing, the slope per uplink byte 8 / goodput.
 * Errors: HINGE_ERR_INVALID (alpha or weight out of range), HINGE_ERR_NOMEM. */
hinge_status part_chan_est_create(const part_chan_est_config *cfg, part_chan_est **out, char *err, size_t errlen);
void part_chan_est_destroy(part_chan_est *e); /* NULL is a no-op */
/* Adds one step; ignores a step whose edge + queue exceed its request time. */
void part_chan_est_observe(part_chan_est *e, const part_step_obs *obs);
/* The current estimate as a channel (name "live"); loss 0: recovery time is
 * in the RTT. The downlink keeps the prior's goodput (replies are too small
 * to measure it). */
void part_chan_est_get(const part_chan_est *e, part_channel *out);
/* EWMA of the edge's queue_us per request; -1 before any step. */
double part_chan_est_queue_us(const part_chan_est *e);
uint64_t part_chan_est_steps(const part_chan_est *e);
/* Saves/restores the estimator's state (one JSON file per edge, e.g.
 * ~/.cache/hinge/channel/<host>_<port>.json) so that a later process starts
 * from it. Load: HINGE_ERR_IO when absent, HINGE_ERR_FORMAT when bad. */
hinge_status part_chan_est_save(const part_chan_est *e, const char *path, char *err, size_t errlen);
hinge_status part_chan_est_load(part_chan_est *e, const char *path, char *err, size_t errlen);

/* ---- speculative lookahead (speculate.c) ----
 *
 * A decode step of m rows costs base + m * row seconds; each of d drafts is
 * accepted with probability alpha (observed), and a step yields its accepted
 * prefix plus one token. */

/* Expected tokens per round trip: 1 + alpha + ... + alpha^d. */
double part_spec_tokens(double alpha, uint32_t d);
/* The draft length in [0, max_d] with the least expected time per token;
 * 0 when speculation does not pay. */
uint32_t part_spec_choose(double alpha, double base_s, double row_s, uint32_t max_d);

#endif
