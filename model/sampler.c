#include "sampler.h"

#include <math.h>
#include <stdlib.h>

/* Candidates whose logit is below max - CUTOFF/temp have probability below
 * e^-30 relative to the best; with at most 2^24 tokens their total mass is
 * under 2e-6, so they are dropped before sorting. */
static const float CUTOFF = 30.0f;

typedef struct cand {
    int32_t id;
    float p; /* logit, then probability */
} cand;

struct sampler {
    sampler_params p;
    uint32_t n_vocab;
    uint64_t rng; /* xorshift64* state, never 0 */
    cand *c;      /* n_vocab */
};

size_t sampler_bytes_per_token(void) { return sizeof(cand); }

hinge_status sampler_create(const sampler_params *p, uint32_t n_vocab, sampler **out)
{
    if (n_vocab == 0 || !(p->temp >= 0.0f) || !(p->top_p >= 0.0f) || !isfinite(p->temp))
        return HINGE_ERR_INVALID;
    sampler *s = calloc(1, sizeof *s);
    if (!s)
        return HINGE_ERR_NOMEM;
    s->c = malloc((size_t)n_vocab * sizeof *s->c);
    if (!s->c) {
        free(s);
        return HINGE_ERR_NOMEM;
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    /* splitmix64 of the seed: any seed, 0 included, gives a good state */
    uint64_t z = p->seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s->rng = (z ^ (z >> 31)) | 1;
    *out = s;
    return HINGE_OK;
}

void sampler_destroy(sampler *s)
{
    if (!s)
        return;
    free(s->c);
    free(s);
}

/* Uniform in [0, 1). */
static float next_uniform(sampler *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (float)((s->rng * 0x2545f4914f6cdd1dull) >> 40) / 16777216.0f;
}

void sampler_skip(sampler *s, uint64_t n)
{
    if (s->p.temp == 0.0f || s->p.top_k == 1)
        return;
    for (uint64_t i = 0; i < n; i++)
        next_uniform(s);
}

static int32_t argmax(const float *x, uint32_t n)
{
    int32_t best = -1;
    for (uint32_t i = 0; i < n; i++)
        if (x[i] == x[i] && (best < 0 || x[i] > x[best]))
            best = (int32_t)i;
    return best < 0 ? 0 : best;
}

static int by_p_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->p != y->p)
        return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int32_t sampler_sample(sampler *s, const float *logits)
{
    int32_t best = argmax(logits, s->n_vocab);
    if (s->p.temp == 0.0f || s->p.top_k == 1)
        return best;
    float mx = logits[best], floor_logit = mx - CUTOFF * s->p.temp;
    size_t n = 0;
    for (uint32_t i = 0; i < s->n_vocab; i++)
        if (logits[i] >= floor_logit)
            s->c[n++] = (cand){.id = (int32_t)i, .p = logits[i]};
    qsort(s->c, n, sizeof *s->c, by_p_desc);
    if (s->p.top_k > 0 && n > s->p.top_k)
        n = s->p.top_k;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        s->c[i].p = expf((s->c[i].p - mx) / s->p.temp);
        sum += s->c[i].p;
    }
    if (s->p.top_p > 0.0f && s->p.top_p < 1.0f) {
        double acc = 0.0;
        for (size_t i = 0; i < n; i++) {
            acc += s->c[i].p;
            if (acc >= s->p.top_p * sum) {
                n = i + 1;
                sum = acc;
                break;
            }
        }
    }
    double r = next_uniform(s) * sum, acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        acc += s->c[i].p;
        if (r < acc)
            return s->c[i].id;
    }
    return s->c[n - 1].id;
}
