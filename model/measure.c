/* Measuring the forward pass's stages: see measure.h. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "measure.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double meas_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Solves the k x k system a c = b (Gaussian elimination, partial
 * pivoting); false when singular. */
static bool solve(double a[MEAS_FIT_MAX][MEAS_FIT_MAX], double b[MEAS_FIT_MAX], int k, double *c)
{
    for (int i = 0; i < k; i++) {
        int piv = i;
        for (int r = i + 1; r < k; r++)
            if (fabs(a[r][i]) > fabs(a[piv][i]))
                piv = r;
        if (fabs(a[piv][i]) < 1e-300)
            return false;
        for (int j = 0; j < MEAS_FIT_MAX; j++) {
            double t = a[i][j];
            a[i][j] = a[piv][j];
            a[piv][j] = t;
        }
        double t = b[i];
        b[i] = b[piv];
        b[piv] = t;
        for (int r = i + 1; r < k; r++) {
            double f = a[r][i] / a[i][i];
            for (int j = i; j < k; j++)
                a[r][j] -= f * a[i][j];
            b[r] -= f * b[i];
        }
    }
    for (int i = k - 1; i >= 0; i--) {
        double v = b[i];
        for (int j = i + 1; j < k; j++)
            v -= a[i][j] * c[j];
        c[i] = v / a[i][i];
    }
    return true;
}

/* One round: least squares over the columns that are on; false when a
 * coefficient came out negative (its column is then turned off). */
static bool fit_round(const double (*x)[MEAS_FIT_MAX], const double *y, size_t rows, int k, bool *on, double *coef)
{
    int idx[MEAS_FIT_MAX], m = 0;
    for (int j = 0; j < k; j++)
        if (on[j])
            idx[m++] = j;
    double a[MEAS_FIT_MAX][MEAS_FIT_MAX] = {{0}}, b[MEAS_FIT_MAX] = {0}, c[MEAS_FIT_MAX] = {0};
    for (size_t i = 0; i < rows; i++)
        for (int r = 0; r < m; r++) {
            b[r] += x[i][idx[r]] * y[i];
            for (int q = 0; q < m; q++)
                a[r][q] += x[i][idx[r]] * x[i][idx[q]];
        }
    bool ok = m > 0 && solve(a, b, m, c), neg = false;
    for (int j = 0; j < k; j++)
        coef[j] = 0;
    for (int r = 0; ok && r < m; r++) {
        coef[idx[r]] = c[r];
        if (c[r] < 0) {
            on[idx[r]] = false;
            neg = true;
        }
    }
    return !neg;
}

void meas_fit_nonneg(const double (*x)[MEAS_FIT_MAX], const double *y, size_t rows, int k, double *coef)
{
    if (k > MEAS_FIT_MAX)
        k = MEAS_FIT_MAX;
    bool on[MEAS_FIT_MAX] = {k > 0, k > 1, k > 2};
    for (int round = 0; round < MEAS_FIT_MAX; round++)
        if (fit_round(x, y, rows, k, on, coef))
            break;
    for (int j = 0; j < k; j++)
        coef[j] = coef[j] > 0 ? coef[j] : 0;
}

static uint32_t clamp_reps(uint32_t reps)
{
    return reps < 1 ? 1 : reps > MEAS_MAX_REPS ? MEAS_MAX_REPS : reps;
}

void meas_time_layers(fwd_ctx *f, const meas_plan *plan, float *h, float *row, uint32_t n_embd, double *pass_us,
                      double *dec_us)
{
    double reps[MEAS_MAX_REPS];
    uint32_t n_reps = clamp_reps(plan->reps);
    for (uint32_t j = 0; j < plan->n_pass; j++) {
        double t0 = clk_now_s();
        fwd_layers(f, plan->pass_pos[j], plan->pass_n[j], h + (size_t)plan->pass_pos[j] * n_embd);
        pass_us[j] = (clk_now_s() - t0) * 1e6;
    }
    for (uint32_t i = 0; i < plan->n_dec; i++) {
        for (uint32_t r = 0; r < n_reps; r++) {
            memcpy(row, h + (size_t)plan->dec_pos[i] * n_embd, n_embd * sizeof(float));
            double t0 = clk_now_s();
            fwd_layers(f, plan->dec_pos[i], 1, row);
            reps[r] = (clk_now_s() - t0) * 1e6;
        }
        dec_us[i] = meas_median(reps, n_reps);
    }
}

double meas_head_us(fwd_ctx *f, const float *row, float *logits, sampler *smp, uint32_t reps, double *first_us)
{
    double t[MEAS_MAX_REPS];
    uint32_t n_reps = clamp_reps(reps);
    for (int64_t r = -1; r < (int64_t)n_reps; r++) { /* r = -1: the first, not counted */
        double t0 = clk_now_s();
        fwd_head(f, row, 1, logits);
        if (smp) {
            volatile int32_t tok = sampler_sample(smp, logits);
            (void)tok;
        }
        double us = (clk_now_s() - t0) * 1e6;
        if (r < 0 && first_us)
            *first_us = us;
        else if (r >= 0)
            t[r] = us;
    }
    return meas_median(t, n_reps);
}
