/* hinge: measuring the forward pass's stages. The one home of the timing
 * code that hinge_profile_measure (device/profile.c), the edge's start-up
 * timing (edge/profile.c) and the benchmarks share: medians, a
 * non-negative least-squares fit, and the timing of a stage's prefill
 * passes and decode steps on the CPU engine. Clocks: clock.h. */
#ifndef HINGE_MEASURE_H
#define HINGE_MEASURE_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "sampler.h"

enum {
    MEAS_FIT_MAX = 3,  /* columns of a fit */
    MEAS_MAX_REPS = 64 /* runs of one measurement, a median's sample */
};

/* Median of v[0, n) (mean of the middle two for even n); sorts v in place.
 * n >= 1. */
double meas_median(double *v, size_t n);

/* Least squares y[i] ~ sum_j coef[j] * x[i][j] over rows i, with every
 * coef >= 0: no cost can be negative, so a negative coefficient is taken
 * as noise, dropped and the rest refitted. Only the first k (<=
 * MEAS_FIT_MAX) columns count; coef gets k values (0 where dropped, and
 * all 0 when the system is singular). */
void meas_fit_nonneg(const double (*x)[MEAS_FIT_MAX], const double *y, size_t rows, int k, double *coef);

/* What meas_time_layers runs: prefill passes, then decode steps. */
typedef struct meas_plan {
    uint32_t n_pass;
    const uint32_t *pass_pos, *pass_n; /* n_pass: pass j runs positions [pass_pos[j], + pass_n[j]) */
    uint32_t n_dec;
    const uint32_t *dec_pos;           /* n_dec: positions of the decode steps */
    uint32_t reps;                     /* steps per decode position, 1..MEAS_MAX_REPS; the median counts */
} meas_plan;

/* Times the layers of f: each prefill pass j, in order, in place on h's
 * rows at its positions (pass_us[j], microseconds; the passes write the KV
 * cache that later ones attend to); then for each decode position i the
 * median of plan->reps steps of one row, a copy of h's row at that
 * position in row each time (dec_us[i]). h: (ctx, n_embd) f32 covering
 * every position of the plan, overwritten; row: n_embd floats of scratch.
 * The caller guarantees the positions fit f's context. */
void meas_time_layers(fwd_ctx *f, const meas_plan *plan, float *h, float *row, uint32_t n_embd, double *pass_us,
                      double *dec_us);

/* Median wall time, microseconds, of reps (1..MEAS_MAX_REPS) runs of the
 * head on one row (final norm + output into logits: n_vocab floats; then,
 * with smp, a sample). A first run is made before them and not counted:
 * its time, page faults included, goes to *first_us (may be NULL). */
double meas_head_us(fwd_ctx *f, const float *row, float *logits, sampler *smp, uint32_t reps, double *first_us);

#endif
