/* The privacy policy in the partitioner (partition/privacy.c, decide.c):
 * a privacy profile read from JSON maps (cut, codec, noise) to the measured
 * token recovery, and the decision never picks a (cut, codec) whose
 * recovery at the session's noise is over max_recovery, nor one the
 * profile does not measure; k = N (nothing on the wire) is always allowed. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>

#include "part_fixture.h"

enum { N = 8 };

static const double NOISES[] = {0.0, 0.5, 1.0};

/* Made-up measurements: recovery falls with k, with noise and for q8; f16
 * is measured everywhere, q8 and f32 only at some cuts. */
static double made_up(uint32_t k, part_codec c, double noise)
{
    return exp(-0.35 * k - 1.5 * noise) * (c == PART_CODEC_Q8 ? 0.8 : 1.0);
}

static void write_profile(const char *path, const char *kind)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"kind\": \"%s\", \"sha256\": \"%064d\", \"cells\": [", kind, 0);
    const char *names[] = {"", "f32", "f16", "q8"};
    bool first = true;
    for (uint32_t k = 0; k < N; k++)
        for (int c = PART_CODEC_F32; c <= PART_CODEC_Q8; c++)
            for (size_t i = 0; i < 3; i++) {
                if ((c == PART_CODEC_Q8 && k % 2) || (c == PART_CODEC_F32 && k > 4))
                    continue; /* unmeasured */
                fprintf(f, "%s{\"cut\": %u, \"codec\": \"%s\", \"noise\": %g, \"token_recovery\": %.6f}",
                        first ? "" : ",", k, names[c], NOISES[i], made_up(k, (part_codec)c, NOISES[i]));
                first = false;
            }
    fprintf(f, "]}\n");
    fclose(f);
}

typedef struct fixture {
    part_model m;
    part_compute dev, edge;
    part_channel ch;
    part_inputs in;
    part_privacy priv;
    part_prediction table[N + 1];
    part_decision d;
    char path[64];
    char err[HINGE_ERRMSG_MAX];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    fx_model(&f->m, N);
    fx_compute(&f->dev, PART_ROLE_DEVICE, &f->m, 1000, 100, 2000);
    fx_compute(&f->edge, PART_ROLE_EDGE, &f->m, 100, 10, 200);
    fx_channel(&f->ch, 1000, 1000, 0.1);
    fx_inputs(&f->in, &f->m, &f->dev, &f->edge, &f->ch, 32, 16);
    snprintf(f->path, sizeof f->path, "/tmp/hinge-privacy-%d.json", (int)getpid());
    write_profile(f->path, "hinge-privacy-profile");
    hinge_status s = part_privacy_load(f->path, &f->priv, f->err, sizeof f->err);
    if (s != HINGE_OK)
        fail_msg("part_privacy_load: %s", f->err);
    f->in.pol.privacy = &f->priv;
    f->in.pol.codec_mask = PART_CODEC_BIT_F32 | PART_CODEC_BIT_F16 | PART_CODEC_BIT_Q8;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    unlink(f->path);
    free(f);
    return 0;
}

static void test_load_and_lookup(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->priv.n, 8 * 3 + 4 * 3 + 5 * 3);
    assert_float_equal(part_privacy_recovery(&f->priv, 2, PART_CODEC_F16, 0.0), made_up(2, PART_CODEC_F16, 0.0), 1e-6);
    /* a noise between measured ones reads the weaker measured noise */
    assert_float_equal(part_privacy_recovery(&f->priv, 2, PART_CODEC_F16, 0.7), made_up(2, PART_CODEC_F16, 0.5), 1e-6);
    assert_float_equal(part_privacy_recovery(&f->priv, 2, PART_CODEC_F16, 9.0), made_up(2, PART_CODEC_F16, 1.0), 1e-6);
    assert_true(part_privacy_recovery(&f->priv, 3, PART_CODEC_Q8, 0.0) < 0); /* unmeasured */
    assert_true(part_privacy_recovery(&f->priv, 6, PART_CODEC_F32, 0.0) < 0);
    /* another kind of file is refused */
    write_profile(f->path, "hinge-device-profile");
    part_privacy other;
    assert_int_equal(part_privacy_load(f->path, &other, f->err, sizeof f->err), HINGE_ERR_FORMAT);
}

/* Offloading pays in this fixture, so the policy is what binds. */
static void test_policy_never_exceeded(void **state)
{
    fixture *f = *state;
    for (size_t i = 0; i < 3; i++)
        for (double max = 0.02; max <= 1.0; max *= 1.3) {
            f->in.pol.noise = NOISES[i] + 0.1 * (double)i; /* on and between measured levels */
            f->in.pol.max_recovery = max;
            assert_int_equal(part_decide(&f->in, f->table, N + 1, &f->d, f->err, sizeof f->err), HINGE_OK);
            if (f->d.cut < N) {
                double rec = part_privacy_recovery(&f->priv, f->d.cut, f->d.codec, f->in.pol.noise);
                assert_true(rec >= 0.0 && rec <= max);
            }
            for (uint32_t k = 0; k < N; k++) /* every feasible entry of the table is within the policy */
                if (f->table[k].why == PART_OK) {
                    double rec = part_privacy_recovery(&f->priv, k, f->table[k].codec, f->in.pol.noise);
                    assert_true(rec >= 0.0 && rec <= max);
                }
        }
}

static void test_policy_binds(void **state)
{
    fixture *f = *state;
    f->in.pol.noise = 0.0;
    f->in.pol.max_recovery = 0.0; /* no policy: offloading everything wins */
    assert_int_equal(part_decide(&f->in, f->table, N + 1, &f->d, f->err, sizeof f->err), HINGE_OK);
    assert_int_equal(f->d.cut, 0);
    f->in.pol.max_recovery = 0.2; /* f16/f32 recover <= 0.2 from k = 5, q8 (0.8x) from k = 4 */
    assert_int_equal(part_decide(&f->in, f->table, N + 1, &f->d, f->err, sizeof f->err), HINGE_OK);
    assert_int_equal(f->d.cut, 4);
    assert_int_equal(f->d.codec, PART_CODEC_Q8);
    assert_int_equal(f->table[3].why, PART_OVER_RECOVERY);
    f->in.pol.noise = 1.0; /* noise buys a lower cut */
    assert_int_equal(part_decide(&f->in, f->table, N + 1, &f->d, f->err, sizeof f->err), HINGE_OK);
    assert_int_equal(f->d.cut, 0);
    f->in.pol.noise = 0.0;
    f->in.pol.max_recovery = 1e-6; /* nothing measured is that private: everything stays on the device */
    assert_int_equal(part_decide(&f->in, f->table, N + 1, &f->d, f->err, sizeof f->err), HINGE_OK);
    assert_int_equal(f->d.cut, N);
    f->in.pol.privacy = NULL; /* a policy without a profile is an error */
    assert_int_equal(part_decide(&f->in, f->table, N + 1, &f->d, f->err, sizeof f->err), HINGE_ERR_INVALID);
}

/* Every shipped profile (profiles/privacy/) loads, and its recovery falls
 * from k = 0 (the embeddings: all of it) to the deepest cut measured. */
static void test_shipped_profiles(void **state)
{
    (void)state;
    const char *dir = HINGE_SOURCE_DIR "/profiles/privacy";
    DIR *d = opendir(dir);
    assert_non_null(d);
    part_privacy *p = malloc(sizeof *p);
    assert_non_null(p);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        char path[512], err[HINGE_ERRMSG_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (part_privacy_load(path, p, err, sizeof err) != HINGE_OK)
            fail_msg("%s: %s", path, err);
        assert_int_equal(strlen(p->sha256), 64);
        assert_true(part_privacy_recovery(p, 0, PART_CODEC_F32, 0.0) >= 0.99);
        n++;
    }
    closedir(d);
    free(p);
    assert_true(n >= 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_and_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_never_exceeded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_binds, setup, teardown),
        cmocka_unit_test(test_shipped_profiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
