/* hinge profile: measures this machine running a model and writes a device
 * (or edge) profile for the partitioner (hinge_profile_measure;
 * docs/partitioning.md). The profile goes to -o FILE, one summary line to
 * stdout, the measurement's progress to stderr. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

typedef struct prof_opts {
    const char *model, *role, *name, *edge, *cacert, *output, *api_key;
    uint32_t threads, ctx;
    hinge_backend backend;
    bool verbose;
} prof_opts;

enum { O_BACKEND = 256, O_THREADS, O_CTX, O_ROLE, O_NAME, O_EDGE, O_CACERT, O_API_KEY };

static const struct option OPTIONS[] = {
    {"model", required_argument, NULL, 'm'},       {"backend", required_argument, NULL, O_BACKEND},
    {"threads", required_argument, NULL, O_THREADS}, {"ctx", required_argument, NULL, O_CTX},
    {"role", required_argument, NULL, O_ROLE},     {"name", required_argument, NULL, O_NAME},
    {"edge", required_argument, NULL, O_EDGE},     {"cacert", required_argument, NULL, O_CACERT},
    {"api-key", required_argument, NULL, O_API_KEY},
    {"output", required_argument, NULL, 'o'},      {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hinge profile [--model PATH] [options] -o FILE\n"
            "Measures this machine running the model: each layer's prefill and decode cost, the head, the\n"
            "wire codecs and, with --edge, the HTTP/2 + TLS overhead; writes the profile the partitioner\n"
            "reads (hinge partition, hinge generate --cut auto, hinge-edge --profile).\n"
            "  -m, --model PATH      GGUF model (default $HINGE_MODEL, else ~/" CLI_DEFAULT_MODEL_REL ")\n"
            "  -o, --output FILE     where the profile (JSON) goes (required)\n"
            "  --backend cpu|vulkan  where the layers run (default cpu)\n"
            "  --threads N           CPU threads (default: all)\n"
            "  --ctx N               positions the costs are fitted over (default 1024; 64..4096)\n"
            "  --role device|edge    a device profile (default) or an edge profile\n"
            "  --name NAME           the profile's name (default this-machine-cpu or this-machine-vulkan)\n"
            "  --edge URL            also measure the HTTP/2 overhead of a step against this edge\n"
            "  --cacert FILE         PEM certificate(s) to trust for the edge\n"
            "  --api-key TOKEN       bearer token for the edge (default $HINGE_API_KEY)\n"
            "  -v, --verbose         the library's log down to DEBUG on stderr\n");
}

/* One option; -1 on a bad value. */
static int parse_one(int c, const char *arg, void *user)
{
    prof_opts *o = user;
    switch (c) {
    case 'm': o->model = arg; return 0;
    case 'o': o->output = arg; return 0;
    case O_BACKEND: return cli_backend(arg, &o->backend);
    case O_THREADS: return cli_u32(arg, "--threads", 256, &o->threads);
    case O_CTX: return cli_u32(arg, "--ctx", 1u << 20, &o->ctx);
    case O_ROLE:
        if (strcmp(arg, "device") != 0 && strcmp(arg, "edge") != 0) {
            fprintf(stderr, "hinge: --role: '%s' is not device or edge\n", arg);
            return -1;
        }
        o->role = arg;
        return 0;
    case O_NAME: o->name = arg; return 0;
    case O_EDGE: o->edge = arg; return 0;
    case O_CACERT: o->cacert = arg; return 0;
    case O_API_KEY: o->api_key = arg; return 0;
    case 'v': o->verbose = true; return 0;
    }
    return -1;
}

/* 0: run; 1: --help was printed; 2: usage error (printed). */
static int parse(int argc, char **argv, prof_opts *o)
{
    *o = (prof_opts){.backend = HINGE_BACKEND_CPU};
    int rc = cli_getopt(argc, argv, "profile", "m:o:vh", OPTIONS, parse_one, o, usage);
    if (rc)
        return rc;
    if (!o->output) {
        fprintf(stderr, "hinge: profile: -o FILE is required\n");
        return 2;
    }
    if (!o->model)
        o->model = cli_default_model();
    return 0;
}

/* The log of a profile: warnings and errors, the measurement's own INFO
 * lines ("profile: ..."); everything with --verbose (user: the prof_opts). */
static void prof_log(void *user, hinge_log_level level, const char *line)
{
    const prof_opts *o = user;
    if (o->verbose || level <= HINGE_LOG_WARN || strncmp(line, "profile: ", 9) == 0)
        cli_log(NULL, level, line);
}

static int load_model(const prof_opts *o, hinge_model **out)
{
    hinge_model_config mc;
    hinge_model_config_init(&mc);
    mc.log = prof_log;
    mc.log_user = (void *)o;
    mc.log_level = o->verbose ? HINGE_LOG_DEBUG : HINGE_LOG_INFO;
    hinge_status s = hinge_model_load_ex(o->model, &mc, out);
    if (s != HINGE_OK) {
        fprintf(stderr, "hinge: cannot load model %s (%s)\n", hinge_last_error(), hinge_strerror(s));
        return -1;
    }
    return 0;
}

static int write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    size_t len = strlen(text);
    bool ok = fp && fwrite(text, 1, len, fp) == len && fputc('\n', fp) != EOF;
    int e = errno;
    if (fp && fclose(fp) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok)
        fprintf(stderr, "hinge: profile: cannot write %s: %s\n", path, strerror(e));
    return ok ? 0 : -1;
}

/* A figure: {"value": V, "source": ...} or a bare number; 0 when absent. */
static double figure(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    return json_is_object(v) ? json_number_value(json_object_get(v, "value")) : json_number_value(v);
}

/* "wrote FILE: ..." from the profile: a decode step at 16 positions. */
static void summary(const char *path, const char *text)
{
    json_t *j = json_loads(text, 0, NULL), *me = json_object_get(j, "measured");
    json_t *layers = json_object_get(me, "layers");
    double dec = figure(me, "step_us") + figure(me, "embed_us_per_pos"), pre = 0;
    for (size_t l = 0; l < json_array_size(layers); l++) {
        json_t *c = json_array_get(layers, l);
        dec += figure(c, "decode_us") + figure(c, "decode_us_per_attended") * 16;
        pre += figure(c, "prefill_us_per_pos");
    }
    printf("wrote %s: %zu layers; decode %.3f ms/token + head %.3f ms; prefill %.3f ms/position; "
           "request overhead %.0f us, session set-up %.0f us\n",
           path, json_array_size(layers), dec * 1e-3, figure(me, "head_us") * 1e-3, pre * 1e-3,
           figure(j, "request_overhead_us"), figure(j, "setup_overhead_us"));
    json_decref(j);
}

int cmd_profile(int argc, char **argv)
{
    prof_opts o;
    int rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    hinge_model *m = NULL;
    if (load_model(&o, &m) != 0)
        return 1;
    hinge_profile_config c;
    hinge_profile_config_init(&c);
    c.backend = o.backend;
    c.edge_role = o.role && strcmp(o.role, "edge") == 0;
    c.name = o.name;
    c.n_ctx = o.ctx;
    c.n_threads = (int)o.threads;
    c.edge_url = o.edge;
    c.ca_file = o.cacert;
    c.api_key = o.api_key ? o.api_key : getenv("HINGE_API_KEY");
    char *json = NULL;
    hinge_status s = hinge_profile_measure(m, &c, &json);
    if (s != HINGE_OK)
        rc = cli_fail("profile", s);
    else if (write_file(o.output, json) != 0)
        rc = 1;
    else
        summary(o.output, json);
    hinge_free(json);
    hinge_model_free(m);
    return rc;
}
