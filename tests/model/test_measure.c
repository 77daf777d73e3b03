/* model/measure.c: medians, the non-negative least-squares fit, and the
 * stage timers on stories260K. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdlib.h>

#include <cmocka.h>

#include "measure.h"

#define STORIES HINGE_SHARED_DIR "/models/stories260K.gguf"

static void near(double a, double b, double eps)
{
    if (!(fabs(a - b) <= eps))
        fail_msg("%.17g is not within %g of %.17g", a, eps, b);
}

static void test_median(void **state)
{
    (void)state;
    double odd[] = {5, 1, 3}, even[] = {4, 1, 3, 2}, one[] = {7};
    near(meas_median(odd, 3), 3.0, 0);
    near(meas_median(even, 4), 2.5, 0);
    near(meas_median(one, 1), 7.0, 0);
    assert_true(odd[0] <= odd[1] && odd[1] <= odd[2]); /* sorted in place */
}

static void test_fit_exact(void **state)
{
    (void)state;
    /* y = 2 + 3 a + 0.5 b, exactly */
    double x[6][MEAS_FIT_MAX], y[6], c[MEAS_FIT_MAX];
    for (int i = 0; i < 6; i++) {
        x[i][0] = 1;
        x[i][1] = i * 7 % 5;
        x[i][2] = i * i;
        y[i] = 2 + 3 * x[i][1] + 0.5 * x[i][2];
    }
    meas_fit_nonneg((const double(*)[MEAS_FIT_MAX])x, y, 6, 3, c);
    near(c[0], 2, 1e-9);
    near(c[1], 3, 1e-9);
    near(c[2], 0.5, 1e-9);
    meas_fit_nonneg((const double(*)[MEAS_FIT_MAX])x, y, 6, 1, c); /* the mean alone */
    double mean = 0;
    for (int i = 0; i < 6; i++)
        mean += y[i] / 6;
    near(c[0], mean, 1e-9);
}

static void test_fit_nonneg(void **state)
{
    (void)state;
    /* y = 10 - a: the slope is negative, dropped; the intercept refitted is the mean */
    double x[4][MEAS_FIT_MAX] = {{1, 0, 0}, {1, 1, 0}, {1, 2, 0}, {1, 3, 0}}, y[4] = {10, 9, 8, 7}, c[2];
    meas_fit_nonneg((const double(*)[MEAS_FIT_MAX])x, y, 4, 2, c);
    near(c[1], 0, 0);
    near(c[0], 8.5, 1e-9);
    /* singular (a column of zeros with the intercept): no crash, coefficients >= 0 */
    double z[3][MEAS_FIT_MAX] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}}, w[3] = {1, 2, 3}, d[3];
    meas_fit_nonneg((const double(*)[MEAS_FIT_MAX])z, w, 3, 3, d);
    for (int j = 0; j < 3; j++)
        assert_true(d[j] >= 0);
}

static void test_time_stages(void **state)
{
    (void)state;
    model *m = NULL;
    fwd_ctx *f = NULL, *h = NULL;
    assert_int_equal(model_load(STORIES, false, NULL, &m, NULL, 0), HINGE_OK);
    uint32_t d = m->hp.n_embd, ctx = 32;
    fwd_config fc = {.layer_begin = 0, .layer_end = m->hp.n_layer, .ctx = ctx};
    assert_int_equal(fwd_create(m, NULL, &fc, &f, NULL, 0), HINGE_OK);
    fwd_config hc = {.ctx = 1};
    assert_int_equal(fwd_create(m, NULL, &hc, &h, NULL, 0), HINGE_OK);
    float *hid = calloc((size_t)ctx * d, sizeof *hid), *row = calloc(d, sizeof *row);
    float *logits = calloc(m->hp.n_vocab, sizeof *logits);
    int32_t tok[32];
    for (uint32_t i = 0; i < ctx; i++)
        tok[i] = (int32_t)(1 + i % 100);
    assert_int_equal(fwd_embed(f, tok, ctx, hid), HINGE_OK);
    const uint32_t pass_pos[] = {0, 8, 24}, pass_n[] = {8, 16, 8}, dec_pos[] = {3, 31};
    meas_plan plan = {.n_pass = 3, .pass_pos = pass_pos, .pass_n = pass_n, .n_dec = 2, .dec_pos = dec_pos,
                      .reps = 5};
    double pass_us[3] = {-1, -1, -1}, dec_us[2] = {-1, -1};
    meas_time_layers(f, &plan, hid, row, d, pass_us, dec_us);
    for (int i = 0; i < 3; i++)
        assert_true(pass_us[i] > 0);
    for (int i = 0; i < 2; i++)
        assert_true(dec_us[i] > 0);
    double first = -1, us = meas_head_us(h, hid, logits, NULL, 5, &first);
    assert_true(us > 0 && first > 0);
    free(hid);
    free(row);
    free(logits);
    fwd_destroy(f);
    fwd_destroy(h);
    model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_median),
        cmocka_unit_test(test_fit_exact),
        cmocka_unit_test(test_fit_nonneg),
        cmocka_unit_test(test_time_stages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
