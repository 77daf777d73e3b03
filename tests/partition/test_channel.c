/* Tests of partition/channel.c (and profile_json.c): a valid profile, every
 * malformed or impossible one refused with a message naming the file and
 * the field, and every shipped channel profile loads. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "partition.h"

#define FIG(v) "{\"value\": " v ", \"source\": \"test\"}"

static const char *good_fields[] = {
    "\"kind\": \"channel\"", "\"name\": \"t\"", "\"uplink_mbps\": " FIG("10"), "\"downlink_mbps\": " FIG("40"),
    "\"rtt_ms\": " FIG("50"), "\"jitter_ms\": " FIG("5"), "\"loss\": " FIG("0.01"),
};
enum { N_FIELDS = sizeof good_fields / sizeof good_fields[0] };

/* The good profile with field i replaced by repl (NULL: dropped). */
static void build(char *buf, size_t cap, int i, const char *repl)
{
    size_t n = (size_t)snprintf(buf, cap, "{");
    bool first = true;
    for (int j = 0; j < N_FIELDS; j++) {
        const char *f = j == i ? repl : good_fields[j];
        if (!f)
            continue;
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", first ? "" : ", ", f);
        first = false;
    }
    snprintf(buf + n, cap - n, "}");
}

static void test_good(void **state)
{
    (void)state;
    char buf[1024], err[HINGE_ERRMSG_MAX];
    part_channel ch;
    build(buf, sizeof buf, -1, NULL);
    assert_int_equal(part_channel_parse(buf, strlen(buf), "good.json", &ch, err, sizeof err), HINGE_OK);
    assert_string_equal(ch.name, "t");
    assert_true(ch.up_bps == 10e6 && ch.down_bps == 40e6);
    assert_true(ch.rtt_s == 0.050 && ch.jitter_s == 0.005 && ch.loss == 0.01);
}

/* field i replaced by repl fails with status want, and err names file and field. */
static void expect_bad(int i, const char *repl, hinge_status want, const char *field)
{
    char buf[1024], err[HINGE_ERRMSG_MAX] = "";
    part_channel ch = {.up_bps = -1};
    build(buf, sizeof buf, i, repl);
    hinge_status s = part_channel_parse(buf, strlen(buf), "bad.json", &ch, err, sizeof err);
    if (s != want || !strstr(err, "bad.json") || !strstr(err, field))
        fail_msg("%s: got %s '%s', want %s naming '%s'", buf, hinge_strerror(s), err, hinge_strerror(want), field);
    assert_true(ch.up_bps == -1); /* untouched */
}

static void test_malformed(void **state)
{
    (void)state;
    expect_bad(2, "\"uplink_mbps\": " FIG("-1"), HINGE_ERR_RANGE, "uplink_mbps");
    expect_bad(2, "\"uplink_mbps\": " FIG("0"), HINGE_ERR_RANGE, "uplink_mbps");
    expect_bad(3, "\"downlink_mbps\": " FIG("\"fast\""), HINGE_ERR_FORMAT, "downlink_mbps");
    expect_bad(4, NULL, HINGE_ERR_FORMAT, "rtt_ms");
    expect_bad(4, "\"rtt_ms\": " FIG("-3"), HINGE_ERR_RANGE, "rtt_ms");
    expect_bad(5, "\"jitter_ms\": 5", HINGE_ERR_FORMAT, "jitter_ms"); /* a bare number: no source */
    expect_bad(6, "\"loss\": " FIG("1.5"), HINGE_ERR_RANGE, "loss");
    expect_bad(6, "\"loss\": " FIG("1"), HINGE_ERR_RANGE, "loss");
    expect_bad(6, "\"loss\": {\"value\": 0.1}", HINGE_ERR_FORMAT, "loss");
    expect_bad(6, "\"loss\": {\"value\": 0.1, \"source\": \"\"}", HINGE_ERR_FORMAT, "loss");
    expect_bad(6, "\"loss\": {\"value\": 0.1, \"source\": \"x\", \"unit\": \"%\"}", HINGE_ERR_FORMAT, "loss");
    expect_bad(0, "\"kind\": \"device\"", HINGE_ERR_FORMAT, "kind");
    expect_bad(1, NULL, HINGE_ERR_FORMAT, "name");
    expect_bad(1, "\"name\": \"t\", \"uplnk_mbps\": 3", HINGE_ERR_FORMAT, "uplnk_mbps");
}

static void test_not_json(void **state)
{
    (void)state;
    char err[HINGE_ERRMSG_MAX];
    part_channel ch;
    const char *texts[] = {"", "{", "[1, 2]", "{\"kind\": \"channel\",}", "{\"a\": 1, \"a\": 2}"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        assert_int_equal(part_channel_parse(texts[i], strlen(texts[i]), "x.json", &ch, err, sizeof err),
                         HINGE_ERR_FORMAT);
        assert_non_null(strstr(err, "x.json"));
    }
    assert_int_equal(part_channel_load("/nonexistent/ch.json", &ch, err, sizeof err), HINGE_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/ch.json"));
}

static void test_shipped(void **state)
{
    (void)state;
    const char *dir = HINGE_SOURCE_DIR "/profiles/channels";
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        char path[1024], err[HINGE_ERRMSG_MAX];
        part_channel ch;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        hinge_status s = part_channel_load(path, &ch, err, sizeof err);
        if (s != HINGE_OK)
            fail_msg("%s", err);
        n++;
    }
    closedir(d);
    assert_true(n >= 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_shipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
