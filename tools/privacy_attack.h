/* The white-box inversion attack of `hinge experiment privacy`
 * (docs/privacy.md).
 *
 * The attacker is the edge: it has the model's weights and sees, for every
 * prompt position, the boundary row after layer k exactly as it arrives on
 * the wire (the device's noise added, the codec encoded and decoded). It
 * recovers the prompt position by position (as SipIt, Nikolaou et al.
 * 2025): at position t, with the tokens < t it recovered already in its own
 * KV cache, it runs candidate tokens at position t through layers [0, k)
 * as one batch and keeps the candidate whose row best explains the observed
 * one. Candidates are ranked by the cosine of each embedding row with the
 * observed row mapped back to embedding space (a linear map the attacker
 * fits per cut on its own text and random tokens: privacy_attack.c),
 * tried in widening rounds. With no noise the search stops at the round
 * that holds a candidate reproducing the observed row exactly (after the
 * codec); otherwise, and always under noise (many candidates then fit
 * within the noise: the most likely of them all must win), it widens up to
 * max_cand candidates (the whole vocabulary by default) and keeps the best.
 *
 * The score is the attacker's best estimator under the known noise law:
 * with no noise, the distance between the candidate's row after the codec
 * and the observed row (0 for the true token: the device's computation is
 * deterministic); with Gaussian noise of relative std s, the Gaussian
 * negative log-likelihood with variance s^2 * ms(h) (+ the codec's
 * rounding variance), i.e. the maximum-likelihood token. */
#ifndef HINGE_TOOLS_PRIVACY_ATTACK_H
#define HINGE_TOOLS_PRIVACY_ATTACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "status.h"
#include "threadpool.h"
#include "transport.h"

typedef struct atk atk;

typedef struct atk_params {
    uint32_t cut;        /* k: the rows after layer k-1 are observed (0: the embeddings) */
    tx_codec codec;      /* the wire's */
    float noise;         /* the device's noise, std relative to the row's RMS; 0: none */
    uint64_t noise_seed; /* the device's seed (the attacker does not use it) */
    uint32_t first;      /* candidates of the first round; 0: 16 */
    uint32_t max_cand;   /* candidates at most per position; 0: the vocabulary */
} atk_params;

typedef struct atk_result {
    uint32_t positions;  /* attacked (a leading BOS is known and not counted) */
    uint32_t recovered;  /* of which the true token came out */
    uint64_t candidates; /* run through the layers, all positions */
    uint32_t widened;    /* positions that needed more than the first round */
    double seconds;      /* the attack's wall time (not the device's forward pass) */
} atk_result;

/* Up to max_len positions per prompt, batches of up to `batch` candidates;
 * calib[0..n_calib) is the attacker's own text (token ids, copied) for
 * fitting the ranking map. m and tp are borrowed. */
hinge_status atk_create(const model *m, threadpool *tp, uint32_t max_len, uint32_t batch, const int32_t *calib,
                        size_t n_calib, atk **out, char *err, size_t errlen);
void atk_destroy(atk *a);

/* Computes what the edge sees for tokens[0..n) under p (the device's side)
 * and attacks it; *r gets the counts. Detail of a failure in err. */
hinge_status atk_run(atk *a, const atk_params *p, const int32_t *tokens, size_t n, atk_result *r, char *err,
                     size_t errlen);

#endif
