/* What the subcommands share: see cli.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

int cli_u32(const char *s, const char *what, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max) {
        fprintf(stderr, "hinge: %s: '%s' is not an integer in [0, %u]\n", what, s, max);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int cli_u64(const char *s, const char *what, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "hinge: %s: '%s' is not an unsigned integer\n", what, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_f64(const char *s, const char *what, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "hinge: %s: '%s' is not a number in [%g, %g]\n", what, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_f32(const char *s, const char *what, float lo, float hi, float *out)
{
    double v;
    if (cli_f64(s, what, (double)lo, (double)hi, &v) != 0)
        return -1;
    *out = (float)v;
    return 0;
}

int cli_backend(const char *s, hinge_backend *out)
{
    if (strcmp(s, "cpu") == 0 || strcmp(s, "vulkan") == 0) {
        *out = s[0] == 'v' ? HINGE_BACKEND_VULKAN : HINGE_BACKEND_CPU;
        return 0;
    }
    fprintf(stderr, "hinge: --backend: '%s' is not cpu or vulkan\n", s);
    return -1;
}

static const char *const WIRES[] = {"f32", "f16", "q8"};

int cli_wire(const char *s, hinge_wire *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, WIRES[i]) == 0) {
            *out = (hinge_wire)i;
            return 0;
        }
    fprintf(stderr, "hinge: --wire: '%s' is not f32, f16 or q8\n", s);
    return -1;
}

const char *cli_wire_name(hinge_wire w) { return (unsigned)w < 3 ? WIRES[w] : "unknown"; }

int cli_getopt(int argc, char **argv, const char *cmd, const char *short_opts, const struct option *opts,
               cli_opt_fn one, void *user, void (*usage)(FILE *out))
{
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, short_opts, opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (one(c, optarg, user) != 0) {
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hinge: %s: unexpected argument '%s'\n", cmd, argv[optind]);
        return 2;
    }
    return 0;
}

const char *cli_default_model(void)
{
    static char path[4096];
    const char *env = getenv("HINGE_MODEL");
    if (env && *env)
        return env;
    const char *home = getenv("HOME");
    snprintf(path, sizeof path, "%s/%s", home ? home : ".", CLI_DEFAULT_MODEL_REL);
    return path;
}

void cli_log(void *user, hinge_log_level level, const char *line)
{
    static const char *const names[] = {"error", "warning", "info", "debug", "trace"};
    (void)user;
    fprintf(stderr, "hinge: %s: %s\n", names[level <= HINGE_LOG_TRACE ? level : HINGE_LOG_TRACE], line);
}

int cli_load_model(const char *path, bool verbose, hinge_model **out)
{
    hinge_model_config mc;
    hinge_model_config_init(&mc);
    mc.log = cli_log;
    mc.log_level = verbose ? HINGE_LOG_DEBUG : HINGE_LOG_WARN;
    hinge_status s = hinge_model_load_ex(path, &mc, out);
    if (s != HINGE_OK) {
        fprintf(stderr, "hinge: cannot load model %s (%s)\n", hinge_last_error(), hinge_strerror(s));
        return -1;
    }
    return 0;
}

int cli_fail(const char *what, hinge_status s)
{
    fprintf(stderr, "hinge: %s: %s (%s)\n", what, hinge_last_error(), hinge_strerror(s));
    return 1;
}

char *cli_read_file(const char *path, size_t max, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, fp) : 0;
    fclose(fp);
    if (!buf || n > max) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

double cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
