/* Hand-made profiles for the partition tests: uniform layers with round
 * numbers, so that a prediction can be worked out on paper. */
#ifndef HINGE_TEST_PART_FIXTURE_H
#define HINGE_TEST_PART_FIXTURE_H

#include "partition.h"

/* n_layer layers of width 64: 1 MB of weights, 1e6 FLOPs per position,
 * 256 K/V values per position each, no attention cost, no window. Embedding
 * table 100 KB, head 100 KB (untied), 1e5 FLOPs. */
void fx_model(part_model *m, uint32_t n_layer);

/* Measured costs of fx_model: every layer decode_us per decode step and
 * prefill_us per prefill position; head head_us; the rest 0. Memory 1 GB,
 * power 1 W computing, 2 W sending, 1 W receiving, 0 idle; request
 * overhead 0. */
void fx_compute(part_compute *c, part_role role, const part_model *m, double decode_us, double prefill_us,
                double head_us);

void fx_channel(part_channel *ch, double up_mbps, double down_mbps, double rtt_ms);

/* Inputs over the given profiles (edge and channel may be NULL), request
 * (P, n), default policy, idle edge. */
void fx_inputs(part_inputs *in, const part_model *m, const part_compute *dev, const part_compute *edge,
               const part_channel *ch, uint32_t prompt_len, uint32_t new_tokens);

#endif
