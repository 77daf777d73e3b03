/* What a privacy defence costs the user (`hinge experiment privacy`):
 * measured through libhinge's public API, with the same sessions an app
 * would open (a fixed cut, the wire codec and the noise applied by the
 * device half at the cut, the layers after the cut in-process).
 *
 * - perplexity of a text (windows each starting with BOS, as `hinge
 *   perplexity`);
 * - greedy agreement: the undefended run's greedy continuation of a prompt
 *   (gen tokens) is fed to the defended session as one step, and at each of
 *   its positions the defended session's greedy choice is compared with the
 *   undefended one (teacher-forced, so that one early difference does not
 *   count every later position as lost). */
#ifndef HINGE_TOOLS_PRIVACY_UTILITY_H
#define HINGE_TOOLS_PRIVACY_UTILITY_H

#include <stddef.h>
#include <stdint.h>

#include <hinge/hinge.h>

typedef struct util_defence {
    int cut;            /* HINGE_CUT_ALL: undefended, everything local */
    hinge_wire wire;
    float noise;
    uint64_t seed;
    int threads;
} util_defence;

/* exp(mean NLL) of tokens[0..n) (no BOS) in windows of win tokens. */
hinge_status util_perplexity(hinge_model *m, const util_defence *d, const int32_t *tokens, size_t n, uint32_t win,
                             double *ppl);

/* The undefended greedy continuation of prompt[0..n_prompt): gen tokens
 * into out. */
hinge_status util_greedy(hinge_model *m, int threads, const int32_t *prompt, size_t n_prompt, size_t gen,
                         int32_t *out);

/* Fraction of the gen positions after prompt where the defended session's
 * greedy token equals ref[i] (seq = prompt then ref). */
hinge_status util_agreement(hinge_model *m, const util_defence *d, const int32_t *prompt, size_t n_prompt,
                            const int32_t *ref, size_t gen, double *agree);

#endif
