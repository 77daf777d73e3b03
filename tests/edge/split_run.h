/* tests/edge: one split generation, as the device would run it: embed and
 * layers [0, k) locally with the model core, layers [k, N), the head and
 * the sampler on an edge through the transport client (or, for a baseline,
 * in-process). Shared by the split_generate driver and the integration
 * tests. */
#ifndef HINGE_TEST_SPLIT_RUN_H
#define HINGE_TEST_SPLIT_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "model.h"
#include "sampler.h"
#include "transport.h"

typedef struct split_opts {
    const model *m;         /* borrowed, loaded with its sha256 */
    threadpool *tp;         /* borrowed; may be NULL */
    const char *edge_url;   /* NULL: run [k, N) in-process (the local baseline) */
    const char *cacert;
    uint32_t cut;
    tx_codec codec;
    const int32_t *prompt;  /* n_prompt >= 1 tokens */
    size_t n_prompt;
    uint32_t n_new;
    sampler_params sp;
    uint32_t max_step;      /* 0: the edge's default */
    uint32_t spin_us;       /* tx_client_config.spin_us */
    bool ignore_eos;
    /* Lossy-wire measurement (greedy only): beside the edge, run [k, N) +
     * head locally on the exact activations and on the codec's decoding of
     * the very frame sent, and compare logits. */
    bool measure;
    /* Called after each generated token (may be NULL): pacing for tests. */
    void (*on_token)(void *user, size_t i);
    void *user;
} split_opts;

typedef struct split_result {
    int32_t *tokens;        /* generated, n_new capacity; owned (split_result_free) */
    size_t n_gen;
    double ttft_us;         /* start of prefill to first token */
    double decode_us;       /* all decode steps, wall */
    double *step_us;        /* each decode step, wall (n_new capacity); owned */
    size_t decode_steps;
    uint64_t device_us;     /* embed + [0, k), all steps */
    tx_timing wire;         /* summed over steps (zero in-process) */
    tx_timing decode_wire;  /* the decode steps alone (n = 1) */
    uint64_t decode_device_us;
    tx_client_stats stats;
    /* measure */
    size_t positions;       /* sampled positions compared */
    size_t agree;           /* edge token == argmax of the exact logits */
    size_t edge_mismatch;   /* edge token != argmax of the locally decoded frame's logits */
    double max_logit_diff;  /* max |exact - lossy| over all compared logits */
    char err[HINGE_ERRMSG_MAX];
} split_result;

hinge_status split_run(const split_opts *o, split_result *r);
void split_result_free(split_result *r);

#endif
