/* Tests of partition/edge_load.c: the load of hinge-edge's GET /v1/profile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "partition.h"

static void test_profile_reply(void **state)
{
    (void)state;
    const char *reply = "{\"protocol\": \"v1\", \"model\": {\"n_layer\": 5}, "
                        "\"load\": {\"sessions\": 1, \"connections\": 2, \"queued_steps\": 3, \"running_steps\": 1, "
                        "\"steps_done\": 200, \"requests\": 214, \"errors\": 3, \"draining\": false}}";
    part_edge_load ld;
    char err[HINGE_ERRMSG_MAX];
    assert_int_equal(part_edge_load_parse(reply, strlen(reply), &ld, err, sizeof err), HINGE_OK);
    assert_int_equal(ld.queued_steps, 3);
    assert_int_equal(ld.running_steps, 1);
    assert_false(ld.draining);
    assert_true(ld.queue_us < 0);
}

static void test_bad(void **state)
{
    (void)state;
    const char *bad[] = {
        "{}",
        "{\"load\": []}",
        "{\"load\": {\"queued_steps\": -1, \"running_steps\": 0, \"draining\": false}}",
        "{\"load\": {\"queued_steps\": 1.5, \"running_steps\": 0, \"draining\": false}}",
        "{\"load\": {\"queued_steps\": 1, \"draining\": false}}",
        "{\"load\": {\"queued_steps\": 1, \"running_steps\": 0, \"draining\": 0}}",
        "not json",
    };
    const char *field[] = {"load", "load", "queued_steps", "queued_steps", "running_steps", "draining", "JSON"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        part_edge_load ld = {.queued_steps = 77};
        char err[HINGE_ERRMSG_MAX] = "";
        assert_int_equal(part_edge_load_parse(bad[i], strlen(bad[i]), &ld, err, sizeof err), HINGE_ERR_FORMAT);
        if (!strstr(err, field[i]))
            fail_msg("'%s': message '%s' does not name %s", bad[i], err, field[i]);
        assert_int_equal(ld.queued_steps, 77);
    }
}

/* part_edge_load_load: a saved reply from a file; a missing file is an I/O error. */
static void test_file(void **state)
{
    (void)state;
    char path[] = "/tmp/hinge-test-edge-load-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *reply = "{\"load\": {\"queued_steps\": 2, \"running_steps\": 0, \"draining\": true}}";
    assert_int_equal(write(fd, reply, strlen(reply)), (ssize_t)strlen(reply));
    close(fd);
    part_edge_load ld;
    char err[HINGE_ERRMSG_MAX] = "";
    assert_int_equal(part_edge_load_load(path, &ld, err, sizeof err), HINGE_OK);
    assert_int_equal(ld.queued_steps, 2);
    assert_true(ld.draining);
    unlink(path);
    assert_int_equal(part_edge_load_load(path, &ld, err, sizeof err), HINGE_ERR_IO);
    assert_non_null(strstr(err, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profile_reply),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
