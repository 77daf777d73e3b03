/* Tests of transport/frame.c: codec round trips with their error bounds,
 * the documented byte layout, and every malformed frame rejected with a
 * message that names the problem. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "transport.h"

enum { DIM = 64, ROWS = 5 };

typedef struct fixture {
    float x[ROWS * DIM];
    float y[ROWS * DIM];
    uint8_t buf[TX_FRAME_HEADER_BYTES + ROWS * DIM * 4 + 16];
    size_t len;
    char err[HINGE_ERRMSG_MAX];
} fixture;

/* Deterministic values spanning magnitudes: small, large, negative, zero. */
static void fill(float *x, size_t n, uint32_t seed)
{
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        float u = (float)(s >> 8) / 16777216.0f - 0.5f;
        float scale = (i % 7 == 0) ? 300.0f : (i % 5 == 0 ? 1e-3f : 4.0f);
        x[i] = (i % 11 == 0) ? 0.0f : u * scale;
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    fill(f->x, ROWS * DIM, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static tx_frame_limits limits(tx_codec c)
{
    return (tx_frame_limits){.codec = c, .dim = DIM, .max_n = ROWS};
}

static void encode(fixture *f, tx_codec c, uint32_t n)
{
    assert_int_equal(tx_frame_encode(c, 0, 7, n, DIM, f->x, f->buf, sizeof f->buf, &f->len, f->err, sizeof f->err),
                     HINGE_OK);
    size_t want;
    assert_int_equal(tx_frame_size(c, n, DIM, &want), HINGE_OK);
    assert_int_equal(f->len, want);
}

static hinge_status decode(fixture *f, tx_codec c, size_t len)
{
    tx_frame_limits lim = limits(c);
    f->err[0] = '\0';
    return tx_frame_decode(f->buf, len, &lim, f->y, ROWS * DIM, NULL, f->err, sizeof f->err);
}

static void expect_reject(fixture *f, tx_codec c, size_t len, hinge_status want, const char *needle)
{
    hinge_status s = decode(f, c, len);
    assert_int_equal(s, want);
    if (!strstr(f->err, needle))
        fail_msg("error '%s' does not mention '%s'", f->err, needle);
}

/* ---- round trips ---- */

static void test_f32_exact(void **state)
{
    fixture *f = *state;
    encode(f, TX_CODEC_F32, ROWS);
    tx_frame_header h;
    tx_frame_limits lim = limits(TX_CODEC_F32);
    assert_int_equal(tx_frame_decode(f->buf, f->len, &lim, f->y, ROWS * DIM, &h, f->err, sizeof f->err), HINGE_OK);
    assert_memory_equal(f->x, f->y, sizeof f->x);
    assert_int_equal(h.pos, 7);
    assert_int_equal(h.n, ROWS);
    assert_int_equal(h.dim, DIM);
    assert_int_equal(h.codec, TX_CODEC_F32);
    assert_int_equal(h.payload_len, ROWS * DIM * 4);
}

static void test_f16_bound(void **state)
{
    fixture *f = *state;
    f->x[2 * DIM + 9] = 1e5f; /* row 2 needs a scale of 2 */
    f->x[3 * DIM + 1] = -3e9f; /* row 3 a scale of 2^16 */
    encode(f, TX_CODEC_F16, ROWS);
    assert_int_equal(f->len, TX_FRAME_HEADER_BYTES + ROWS * (4 + DIM * 2));
    assert_int_equal(decode(f, TX_CODEC_F16, f->len), HINGE_OK);
    static const double scale[ROWS] = {1, 1, 2, 65536, 1};
    for (size_t i = 0; i < ROWS * DIM; i++) {
        /* round to nearest: half an ulp, 2^-11 relative for normals, 2^-25 absolute (times the
           row's scale) below */
        double bound = fmax(fabs((double)f->x[i]) * 0x1p-11, 0x1p-25 * scale[i / DIM]);
        if (fabs((double)f->y[i] - (double)f->x[i]) > bound)
            fail_msg("f16: x[%zu] = %g decoded as %g", i, (double)f->x[i], (double)f->y[i]);
    }
}

static void test_q8_bound(void **state)
{
    fixture *f = *state;
    encode(f, TX_CODEC_Q8, ROWS);
    assert_int_equal(f->len, TX_FRAME_HEADER_BYTES + ROWS * (4 + DIM));
    assert_int_equal(decode(f, TX_CODEC_Q8, f->len), HINGE_OK);
    for (size_t r = 0; r < ROWS; r++) {
        double absmax = 0;
        for (size_t j = 0; j < DIM; j++)
            absmax = fmax(absmax, fabs((double)f->x[r * DIM + j]));
        double bound = absmax / 254.0 * (1 + 1e-5) + 1e-30; /* half a step of absmax/127 */
        for (size_t j = 0; j < DIM; j++) {
            size_t i = r * DIM + j;
            if (fabs((double)f->y[i] - (double)f->x[i]) > bound)
                fail_msg("q8: row %zu x = %g decoded as %g (bound %g)", r, (double)f->x[i], (double)f->y[i], bound);
        }
    }
}

static void test_q8_zero_row(void **state)
{
    fixture *f = *state;
    memset(f->x, 0, sizeof f->x);
    encode(f, TX_CODEC_Q8, 2);
    assert_int_equal(decode(f, TX_CODEC_Q8, f->len), HINGE_OK);
    for (size_t i = 0; i < 2 * DIM; i++)
        assert_true(f->y[i] == 0.0f);
}

/* A row whose absmax is subnormal: 127/absmax overflows float (a fuzzer
 * find). It must encode and decode to finite values near zero. */
static void test_q8_subnormal_row(void **state)
{
    fixture *f = *state;
    memset(f->x, 0, sizeof f->x);
    f->x[5] = 1e-40f;
    f->x[DIM + 1] = -3e-45f;
    encode(f, TX_CODEC_Q8, 2);
    assert_int_equal(decode(f, TX_CODEC_Q8, f->len), HINGE_OK);
    for (size_t i = 0; i < 2 * DIM; i++)
        assert_true(isfinite(f->y[i]) && fabsf(f->y[i] - f->x[i]) <= 1e-38f);
}

static void test_layout(void **state)
{
    fixture *f = *state;
    assert_int_equal(tx_frame_encode(TX_CODEC_F16, TX_FLAG_NO_SAMPLE, 0x01020304, 2, DIM, f->x, f->buf,
                                     sizeof f->buf, &f->len, f->err, sizeof f->err),
                     HINGE_OK);
    static const uint8_t want[TX_FRAME_HEADER_BYTES] = {
        'H', 'N', 'G', 'A', 1, 2, 1, 0,  /* magic, version, codec f16, flags */
        4, 3, 2, 1, 2, 0, 0, 0,          /* pos, n */
        DIM, 0, 0, 0, 0, 0, 0, 0,        /* dim, reserved */
        (2 * (4 + DIM * 2)) & 0xff, (2 * (4 + DIM * 2)) >> 8, 0, 0, 0, 0, 0, 0, /* payload_len */
    };
    assert_memory_equal(f->buf, want, sizeof want);
    static const uint8_t one[4] = {0, 0, 0x80, 0x3f}; /* row 0's f16 scale: 1.0f */
    assert_memory_equal(f->buf + TX_FRAME_HEADER_BYTES, one, 4);
}

static void test_codec_names(void **state)
{
    (void)state;
    tx_codec c;
    assert_int_equal(tx_codec_parse("q8", &c), HINGE_OK);
    assert_int_equal(c, TX_CODEC_Q8);
    assert_int_equal(tx_codec_parse("f32", &c), HINGE_OK);
    assert_int_equal(c, TX_CODEC_F32);
    assert_int_equal(tx_codec_parse("F32", &c), HINGE_ERR_INVALID);
    assert_int_equal(tx_codec_parse("", &c), HINGE_ERR_INVALID);
    assert_int_equal(tx_codec_parse(NULL, &c), HINGE_ERR_INVALID);
    assert_string_equal(tx_codec_name((tx_codec)9), "unknown");
    size_t n;
    assert_int_equal(tx_frame_size((tx_codec)0, 1, DIM, &n), HINGE_ERR_INVALID);
    assert_int_equal(tx_frame_size(TX_CODEC_F32, 0, DIM, &n), HINGE_ERR_RANGE);
    assert_int_equal(tx_frame_size(TX_CODEC_F32, 1, 0, &n), HINGE_ERR_RANGE);
    assert_int_equal(tx_frame_size(TX_CODEC_F32, TX_FRAME_MAX_POSITIONS + 1, DIM, &n), HINGE_ERR_RANGE);
    assert_int_equal(tx_frame_size(TX_CODEC_F32, 1, TX_FRAME_MAX_DIM + 1, &n), HINGE_ERR_RANGE);
    assert_int_equal(tx_frame_size(TX_CODEC_F32, TX_FRAME_MAX_POSITIONS, TX_FRAME_MAX_DIM, &n), HINGE_OK);
}

/* ---- the encoder refuses ---- */

static void test_encode_rejects(void **state)
{
    fixture *f = *state;
    size_t len = 12345;
    f->x[DIM + 3] = NAN;
    assert_int_equal(tx_frame_encode(TX_CODEC_F32, 0, 0, 2, DIM, f->x, f->buf, sizeof f->buf, &len, f->err,
                                     sizeof f->err),
                     HINGE_ERR_RANGE);
    assert_non_null(strstr(f->err, "row 1 column 3"));
    f->x[DIM + 3] = INFINITY;
    assert_int_equal(tx_frame_encode(TX_CODEC_Q8, 0, 0, 2, DIM, f->x, f->buf, sizeof f->buf, &len, f->err,
                                     sizeof f->err),
                     HINGE_ERR_RANGE);
    assert_int_equal(tx_frame_encode(TX_CODEC_F32, 0, 0, 2, DIM, f->x, f->buf, 100, &len, f->err, sizeof f->err),
                     HINGE_ERR_NOMEM);
    assert_int_equal(tx_frame_encode(TX_CODEC_F32, 0x8000, 0, 1, DIM, f->x, f->buf, sizeof f->buf, &len, f->err,
                                     sizeof f->err),
                     HINGE_ERR_INVALID);
    assert_int_equal(tx_frame_encode(TX_CODEC_F32, 0, UINT32_MAX, 1, DIM, f->x, f->buf, sizeof f->buf, &len,
                                     f->err, sizeof f->err),
                     HINGE_ERR_INVALID);
    assert_int_equal(len, 12345); /* untouched on failure */
}

/* ---- the decoder refuses ---- */

static void poke_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void poke_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void test_truncated(void **state)
{
    fixture *f = *state;
    encode(f, TX_CODEC_F32, 3);
    for (size_t len = 0; len < TX_FRAME_HEADER_BYTES; len++)
        expect_reject(f, TX_CODEC_F32, len, HINGE_ERR_FORMAT, "truncated");
    for (size_t len = TX_FRAME_HEADER_BYTES; len < f->len; len++)
        expect_reject(f, TX_CODEC_F32, len, HINGE_ERR_FORMAT, "payload");
    expect_reject(f, TX_CODEC_F32, f->len + 1, HINGE_ERR_FORMAT, "payload"); /* trailing byte */
    assert_int_equal(decode(f, TX_CODEC_F32, f->len), HINGE_OK);
}

static void test_bad_header_fields(void **state)
{
    fixture *f = *state;
    encode(f, TX_CODEC_F32, 2);
    uint8_t good[TX_FRAME_HEADER_BYTES];
    memcpy(good, f->buf, sizeof good);

    f->buf[0] = 'X';
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_FORMAT, "magic");
    memcpy(f->buf, good, sizeof good);
    f->buf[4] = 2;
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_UNSUPPORTED, "version");
    memcpy(f->buf, good, sizeof good);
    f->buf[5] = 0;
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_UNSUPPORTED, "codec");
    f->buf[5] = 4;
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_UNSUPPORTED, "codec");
    memcpy(f->buf, good, sizeof good);
    expect_reject(f, TX_CODEC_F16, f->len, HINGE_ERR_FORMAT, "codec"); /* the session expects f16 */
    f->buf[6] = 0x04;
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_FORMAT, "flags");
    f->buf[6] = 0x03; /* NO_SAMPLE with VERIFY */
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_FORMAT, "flags");
    f->buf[6] = 0x02; /* VERIFY on 2 rows: fine */
    assert_int_equal(decode(f, TX_CODEC_F32, f->len), HINGE_OK);
    memcpy(f->buf, good, sizeof good);
    poke_u32(f->buf + 16, DIM + 1);
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_FORMAT, "dim");
    memcpy(f->buf, good, sizeof good);
    poke_u32(f->buf + 20, 1);
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_FORMAT, "reserved");
    memcpy(f->buf, good, sizeof good);
    poke_u32(f->buf + 12, 0);
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_FORMAT, "0 positions");
    memcpy(f->buf, good, sizeof good);
    poke_u32(f->buf + 12, ROWS + 1);
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_RANGE, "positions");
    poke_u32(f->buf + 12, UINT32_MAX); /* huge n */
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_RANGE, "positions");
    memcpy(f->buf, good, sizeof good);
    poke_u64(f->buf + 24, 2 * DIM * 4 + 1);
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_FORMAT, "payload length");
    poke_u64(f->buf + 24, UINT64_MAX);
    expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_FORMAT, "payload length");
    memcpy(f->buf, good, sizeof good);
    assert_int_equal(decode(f, TX_CODEC_F32, f->len), HINGE_OK);
}

/* A header-only check sees n over the cap before any payload arrives. */
static void test_header_early(void **state)
{
    fixture *f = *state;
    encode(f, TX_CODEC_F32, 2);
    tx_frame_limits lim = {.codec = TX_CODEC_F32, .dim = DIM, .max_n = 1};
    tx_frame_header h;
    assert_int_equal(tx_frame_parse_header(f->buf, TX_FRAME_HEADER_BYTES, &lim, &h, f->err, sizeof f->err),
                     HINGE_ERR_RANGE);
    lim.max_n = 2;
    assert_int_equal(tx_frame_parse_header(f->buf, TX_FRAME_HEADER_BYTES, &lim, &h, f->err, sizeof f->err),
                     HINGE_OK);
    assert_int_equal(h.n, 2);
}

static void test_nonfinite(void **state)
{
    fixture *f = *state;
    static const uint32_t bad_f32[] = {0x7fc00000u, 0x7f800000u, 0xff800000u, 0x7f800001u};
    for (size_t i = 0; i < sizeof bad_f32 / sizeof bad_f32[0]; i++) {
        encode(f, TX_CODEC_F32, 2);
        poke_u32(f->buf + TX_FRAME_HEADER_BYTES + (DIM + 5) * 4, bad_f32[i]);
        expect_reject(f, TX_CODEC_F32, f->len, HINGE_ERR_FORMAT, "row 1 column 5 is not finite");
    }
    static const uint16_t bad_f16[] = {0x7c00u, 0xfc00u, 0x7e00u, 0x7c01u};
    for (size_t i = 0; i < sizeof bad_f16 / sizeof bad_f16[0]; i++) {
        encode(f, TX_CODEC_F16, 2);
        uint8_t *p = f->buf + TX_FRAME_HEADER_BYTES + 4 + 2 * 3;
        p[0] = (uint8_t)bad_f16[i];
        p[1] = (uint8_t)(bad_f16[i] >> 8);
        expect_reject(f, TX_CODEC_F16, f->len, HINGE_ERR_FORMAT, "row 0 column 3 is not finite");
    }
    static const uint32_t bad_f16_scale[] = {0x7fc00000u, 0x7f800000u, 0xbf800000u /* -1 */, 0 /* 0 */,
                                             0x40400000u /* 3 */, 0x3f000000u /* 0.5 */};
    for (size_t i = 0; i < sizeof bad_f16_scale / sizeof bad_f16_scale[0]; i++) {
        encode(f, TX_CODEC_F16, 2);
        poke_u32(f->buf + TX_FRAME_HEADER_BYTES + (4 + 2 * DIM), bad_f16_scale[i]);
        expect_reject(f, TX_CODEC_F16, f->len, HINGE_ERR_FORMAT, "row 1 has scale");
    }
    encode(f, TX_CODEC_F16, 1);
    poke_u32(f->buf + TX_FRAME_HEADER_BYTES, 0x7f000000u); /* 2^127 * a large half overflows */
    f->buf[TX_FRAME_HEADER_BYTES + 4 + 1] = 0x7b;
    expect_reject(f, TX_CODEC_F16, f->len, HINGE_ERR_FORMAT, "not finite");
    static const uint32_t bad_scale[] = {0x7fc00000u, 0x7f800000u, 0xbf800000u /* -1 */};
    for (size_t i = 0; i < sizeof bad_scale / sizeof bad_scale[0]; i++) {
        encode(f, TX_CODEC_Q8, 2);
        poke_u32(f->buf + TX_FRAME_HEADER_BYTES + (4 + DIM), bad_scale[i]);
        expect_reject(f, TX_CODEC_Q8, f->len, HINGE_ERR_FORMAT, "scale");
    }
    encode(f, TX_CODEC_Q8, 2);
    f->buf[TX_FRAME_HEADER_BYTES + 4 + 9] = 0x80; /* -128 is outside the codec */
    expect_reject(f, TX_CODEC_Q8, f->len, HINGE_ERR_FORMAT, "-128");
    encode(f, TX_CODEC_Q8, 1);
    poke_u32(f->buf + TX_FRAME_HEADER_BYTES, 0x7f7fffffu); /* FLT_MAX * 127 overflows */
    f->buf[TX_FRAME_HEADER_BYTES + 4] = 127;
    expect_reject(f, TX_CODEC_Q8, f->len, HINGE_ERR_FORMAT, "not finite");
}

static void test_out_too_small(void **state)
{
    fixture *f = *state;
    encode(f, TX_CODEC_F32, 3);
    tx_frame_limits lim = limits(TX_CODEC_F32);
    assert_int_equal(tx_frame_decode(f->buf, f->len, &lim, f->y, 3 * DIM - 1, NULL, f->err, sizeof f->err),
                     HINGE_ERR_NOMEM);
    assert_int_equal(tx_frame_decode(NULL, 100, &lim, f->y, 3 * DIM, NULL, f->err, sizeof f->err),
                     HINGE_ERR_FORMAT);
}

/* The noise defence: std = rel * row RMS, mean 0, a fixed function of
 * (seed, position): rows noised in one call or one at a time agree, and
 * another seed gives other noise. */
static void test_noise(void **state)
{
    (void)state;
    enum { D = 640, R = 64 };
    float *a = malloc(sizeof(float) * D * R), *b = malloc(sizeof(float) * D * R);
    assert_non_null(a);
    assert_non_null(b);
    for (size_t i = 0; i < (size_t)D * R; i++)
        a[i] = (float)((i % 7) * 3.0 - 9.0) * (i % D == 5 ? 100.0f : 1.0f); /* one massive dimension */
    memcpy(b, a, sizeof(float) * D * R);
    tx_noise_add(a, R, D, 10, 0.5f, 42);
    for (uint32_t r = 0; r < R; r++)
        tx_noise_add(b + (size_t)r * D, 1, D, 10 + r, 0.5f, 42);
    assert_memory_equal(a, b, sizeof(float) * D * R);
    double sum = 0, ss = 0, rms2 = 0;
    for (size_t i = 0; i < (size_t)D * R; i++) {
        float x = (float)((i % 7) * 3.0 - 9.0) * (i % D == 5 ? 100.0f : 1.0f);
        double e = (double)a[i] - x;
        sum += e;
        ss += e * e;
        rms2 += (double)x * x;
    }
    double n = (double)D * R, sd = sqrt(ss / n), want = 0.5 * sqrt(rms2 / n);
    assert_true(fabs(sum / n) < 0.05 * want);
    assert_true(fabs(sd / want - 1.0) < 0.05);
    for (size_t i = 0; i < (size_t)D * R; i++)
        b[i] = (float)((i % 7) * 3.0 - 9.0) * (i % D == 5 ? 100.0f : 1.0f);
    tx_noise_add(b, R, D, 10, 0.0f, 43); /* 0: nothing */
    tx_noise_add(b, R, D, 10, 0.5f, 43);
    size_t same = 0;
    for (size_t i = 0; i < (size_t)D * R; i++)
        same += a[i] == b[i];
    assert_true(same < (size_t)D * R / 100); /* another seed, other noise */
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_f32_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_f16_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_q8_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_q8_zero_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_q8_subnormal_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
        cmocka_unit_test(test_codec_names),
        cmocka_unit_test(test_noise),
        cmocka_unit_test_setup_teardown(test_encode_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_header_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nonfinite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_too_small, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
