/* Speculative lookahead in the cost model: what d drafts per decode step
 * are worth. A step of m rows costs base + m * row (the round trip and
 * fixed costs, then each row's compute and bytes); each draft is accepted
 * with probability alpha, independently, and a step yields its accepted
 * prefix plus one token: E(d) = 1 + alpha + ... + alpha^d tokens. */
#include <math.h>

#include "partition.h"

double part_spec_tokens(double alpha, uint32_t d)
{
    if (!(alpha > 0.0))
        return 1.0;
    if (alpha >= 1.0)
        return (double)d + 1.0;
    return (1.0 - pow(alpha, (double)d + 1.0)) / (1.0 - alpha);
}

uint32_t part_spec_choose(double alpha, double base_s, double row_s, uint32_t max_d)
{
    uint32_t best = 0;
    double best_t = base_s + row_s; /* d = 0: one row, one token */
    for (uint32_t d = 1; d <= max_d; d++) {
        double t = (base_s + row_s * (d + 1)) / part_spec_tokens(alpha, d);
        if (t < best_t * (1.0 - 1e-9)) {
            best_t = t;
            best = d;
        }
    }
    return best;
}
