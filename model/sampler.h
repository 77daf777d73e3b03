/* hinge: token sampling: greedy, temperature, top-k, top-p; seeded. */
#ifndef HINGE_SAMPLER_H
#define HINGE_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct sampler_params {
    float temp;    /* 0: greedy (argmax, lowest id on ties) */
    uint32_t top_k; /* 0: no top-k cut */
    float top_p;   /* 0 or >= 1: no nucleus cut */
    uint64_t seed; /* the same seed and logits give the same tokens */
} sampler_params;

typedef struct sampler sampler;

/* Scratch for n_vocab candidates is allocated here, never per token.
 * Errors: HINGE_ERR_INVALID (negative temperature, top_p < 0, n_vocab 0),
 * HINGE_ERR_NOMEM. */
hinge_status sampler_create(const sampler_params *p, uint32_t n_vocab, sampler **out);
void sampler_destroy(sampler *s); /* NULL is a no-op */
/* Scratch bytes a sampler holds per vocabulary entry. */
size_t sampler_bytes_per_token(void);

/* Advances the random state as n samples would (a sampler rebuilt after a
 * failover then continues the same sequence). Greedy samplers draw nothing. */
void sampler_skip(sampler *s, uint64_t n);

/* Picks a token from logits[0..n_vocab). Logits that are NaN are never
 * picked; if all are, token 0 is returned. */
int32_t sampler_sample(sampler *s, const float *logits);

#endif
