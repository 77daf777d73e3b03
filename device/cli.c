/* hinge: the command-line front end.
 *
 *   hinge generate   --model PATH --prompt TEXT -n N [sampling] [--json]
 *   hinge perplexity --model PATH --file TEXT [--ctx N]
 *
 * Generated text goes to stdout as it is made and nothing else does;
 * diagnostics go to stderr. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_auto.h"

#define DEFAULT_MODEL_REL ".cache/hinge/models/gemma-3-270m-q4_k_m.gguf"

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_u32(const char *s, const char *what, uint32_t max, uint32_t *out)
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

static int parse_f32(const char *s, const char *what, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "hinge: %s: '%s' is not a number in [%g, %g]\n", what, s, (double)lo, (double)hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u64(const char *s, const char *what, uint64_t *out)
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

static const char *default_model(void)
{
    static char path[4096];
    const char *env = getenv("HINGE_MODEL");
    if (env && *env)
        return env;
    const char *home = getenv("HOME");
    snprintf(path, sizeof path, "%s/%s", home ? home : ".", DEFAULT_MODEL_REL);
    return path;
}

enum { OPT_TEMP = 256, OPT_TOPK, OPT_TOPP, OPT_SEED, OPT_JSON, OPT_THREADS, OPT_CTX, OPT_IGNORE_EOS,
       OPT_BACKEND, OPT_CUT, OPT_EDGE, OPT_WIRE, OPT_CACERT,
       /* hinge profile / hinge partition (parse_part_opt) */
       OPT_PART_FIRST, OPT_ROLE = OPT_PART_FIRST, OPT_NAME, OPT_DEVICE, OPT_CHANNEL, OPT_EDGE_PROFILE, OPT_EDGE_LOAD,
       OPT_PROMPT_LEN, OPT_MIN_CUT, OPT_MEM_CAP, OPT_ENERGY_WEIGHT, OPT_CODECS, OPT_CONNECTED, OPT_COLD_START, OPT_PART_LAST };

static const struct option long_opts[] = {
    {"model", required_argument, NULL, 'm'},
    {"prompt", required_argument, NULL, 'p'},
    {"file", required_argument, NULL, 'f'},
    {"n", required_argument, NULL, 'n'},
    {"temp", required_argument, NULL, OPT_TEMP},
    {"top-k", required_argument, NULL, OPT_TOPK},
    {"top-p", required_argument, NULL, OPT_TOPP},
    {"seed", required_argument, NULL, OPT_SEED},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"ctx", required_argument, NULL, OPT_CTX},
    {"json", no_argument, NULL, OPT_JSON},
    {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"cut", required_argument, NULL, OPT_CUT},
    {"layers", required_argument, NULL, OPT_CUT},
    {"edge", required_argument, NULL, OPT_EDGE},
    {"wire", required_argument, NULL, OPT_WIRE},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"output", required_argument, NULL, 'o'},
    {"role", required_argument, NULL, OPT_ROLE},
    {"name", required_argument, NULL, OPT_NAME},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"channel", required_argument, NULL, OPT_CHANNEL},
    {"edge-profile", required_argument, NULL, OPT_EDGE_PROFILE},
    {"edge-load", required_argument, NULL, OPT_EDGE_LOAD},
    {"prompt-len", required_argument, NULL, OPT_PROMPT_LEN},
    {"new-tokens", required_argument, NULL, 'n'},
    {"min-cut", required_argument, NULL, OPT_MIN_CUT},
    {"mem-cap", required_argument, NULL, OPT_MEM_CAP},
    {"energy-weight", required_argument, NULL, OPT_ENERGY_WEIGHT},
    {"codecs", required_argument, NULL, OPT_CODECS},
    {"connected", no_argument, NULL, OPT_CONNECTED},
    {"cold-start", no_argument, NULL, OPT_COLD_START},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {0, 0, 0, 0},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hinge generate   [--model PATH] --prompt TEXT [-n N] [--temp T] [--top-k K]\n"
            "                        [--top-p P] [--seed S] [--threads N] [--ctx N] [--ignore-eos] [--json]\n"
            "                        [--backend cpu|vulkan] [--layers K] [--edge URL --cut K|auto --wire f32|f16|q8\n"
            "                        [--cacert FILE]]\n"
            "                        --cut auto: --device FILE [--channel FILE] [--edge-profile FILE]\n"
            "                        [--min-cut K] [--mem-cap BYTES] [--energy-weight W] [--codecs LIST]\n"
            "       hinge perplexity [--model PATH] --file TEXT [--ctx N] [--threads N] [--json]\n"
            "       hinge profile    [--model PATH] [--backend cpu|vulkan] [--threads N] [--ctx N]\n"
            "                        [--role device|edge] [--name NAME] [--edge URL [--cacert FILE]] -o FILE\n"
            "       hinge partition  [--model PATH] --device FILE [--channel FILE --edge FILE]\n"
            "                        [--prompt-len P] [--new-tokens N] [--min-cut K] [--mem-cap BYTES]\n"
            "                        [--energy-weight W] [--codecs f32,f16,q8] [--edge-load FILE] [--connected]\n"
            "                        [--cold-start] [--json]\n"
            "The model defaults to $HINGE_MODEL, else ~/" DEFAULT_MODEL_REL ".\n");
}

static int parse_f64(const char *s, const char *what, double lo, double hi, double *out)
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

/* The options of hinge profile and hinge partition. */
static int parse_part_opt(int c, const char *arg, opts *o)
{
    switch (c) {
    case OPT_ROLE: o->role = arg; return 0;
    case OPT_NAME: o->name = arg; return 0;
    case OPT_DEVICE: o->device_profile = arg; return 0;
    case OPT_CHANNEL: o->channel = arg; return 0;
    case OPT_EDGE_PROFILE: o->edge_profile = arg; return 0;
    case OPT_EDGE_LOAD: o->edge_load = arg; return 0;
    case OPT_CODECS: o->codecs = arg; return 0;
    case OPT_CONNECTED: o->connected = 1; return 0;
    case OPT_COLD_START: o->cold_start = 1; return 0;
    case OPT_PROMPT_LEN: return parse_u32(arg, "--prompt-len", 1u << 20, &o->prompt_len);
    case OPT_MIN_CUT: return parse_u32(arg, "--min-cut", 4096, &o->min_cut);
    case OPT_MEM_CAP: return parse_u64(arg, "--mem-cap", &o->mem_cap);
    case OPT_ENERGY_WEIGHT: return parse_f64(arg, "--energy-weight", 0.0, 1e6, &o->energy_weight);
    }
    return -1;
}

static int parse_opts(int argc, char **argv, opts *o)
{
    *o = (opts){.n_new = 64, .cut = -1, .sp = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 0}};
    int c;
    int rc = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, "m:p:f:n:o:vh", long_opts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'f': o->file = optarg; break;
        case 'n': rc = parse_u32(optarg, "-n", 1u << 20, &o->n_new); break;
        case OPT_TEMP: rc = parse_f32(optarg, "--temp", 0.0f, 100.0f, &o->sp.temp); break;
        case OPT_TOPK: rc = parse_u32(optarg, "--top-k", 1u << 24, &o->sp.top_k); break;
        case OPT_TOPP: rc = parse_f32(optarg, "--top-p", 0.0f, 1.0f, &o->sp.top_p); break;
        case OPT_SEED: rc = parse_u64(optarg, "--seed", &o->sp.seed); break;
        case OPT_THREADS: {
            uint32_t t;
            rc = parse_u32(optarg, "--threads", 256, &t);
            o->threads = (int)t;
            break;
        }
        case OPT_CTX: rc = parse_u32(optarg, "--ctx", 1u << 20, &o->ctx); break;
        case OPT_JSON: o->json = 1; break;
        case OPT_IGNORE_EOS: o->ignore_eos = 1; break;
        case OPT_BACKEND:
            if (strcmp(optarg, "cpu") == 0 || strcmp(optarg, "vulkan") == 0) {
                o->backend = optarg[0] == 'v';
            } else {
                fprintf(stderr, "hinge: --backend: '%s' is not cpu or vulkan\n", optarg);
                rc = -1;
            }
            break;
        case OPT_CUT: {
            uint32_t k = 0;
            if (strcmp(optarg, "auto") == 0) {
                o->cut = CUT_AUTO;
                break;
            }
            rc = parse_u32(optarg, "--cut/--layers", 4096, &k);
            o->cut = k;
            break;
        }
        case OPT_EDGE: o->edge = optarg; break;
        case OPT_WIRE: o->wire = optarg; break;
        case OPT_CACERT: o->cacert = optarg; break;
        case 'v': o->verbose = 1; break;
        case 'h': usage(stdout); exit(0);
        case 'o': o->output = optarg; break;
        default: rc = c >= OPT_PART_FIRST && c < OPT_PART_LAST ? parse_part_opt(c, optarg, o) : -1;
        }
    }
    if (rc == 0 && optind < argc) {
        fprintf(stderr, "hinge: unexpected argument '%s'\n", argv[optind]);
        rc = -1;
    }
    if (!o->model)
        o->model = default_model();
    return rc;
}

void engine_close(engine *e)
{
    fwd_destroy(e->f);
    tp_destroy(e->tp);
    model_free(e->m);
}

int engine_open(engine *e, const opts *o, bool hash)
{
    char err[HINGE_ERRMSG_MAX] = "";
    *e = (engine){.lg = {.fn = hinge_log_stderr, .level = o->verbose ? HINGE_LOG_DEBUG : HINGE_LOG_WARN}};
    double t0 = now_s();
    hinge_status s = model_load(o->model, hash, &e->lg, &e->m, err, sizeof err);
    if (s != HINGE_OK) {
        fprintf(stderr, "hinge: cannot load model %s: %s (%s)\n", o->model, err, hinge_strerror(s));
        return -1;
    }
    if (tp_create(o->threads, &e->tp) != HINGE_OK) {
        fprintf(stderr, "hinge: cannot start %d threads\n", o->threads);
        engine_close(e);
        return -1;
    }
    e->load_s = now_s() - t0;
    return 0;
}

int engine_stages(engine *e, uint32_t ctx, uint32_t max_batch)
{
    char err[HINGE_ERRMSG_MAX] = "";
    if (ctx > e->m->hp.n_ctx_train) {
        fprintf(stderr, "hinge: %u positions needed, the model's context is %u\n", ctx, e->m->hp.n_ctx_train);
        return -1;
    }
    fwd_config fc = {.layer_begin = 0, .layer_end = e->m->hp.n_layer, .ctx = ctx, .max_batch = max_batch};
    hinge_status s = fwd_create(e->m, e->tp, &fc, &e->f, err, sizeof err);
    if (s != HINGE_OK) {
        fprintf(stderr, "hinge: %s (%s)\n", err, hinge_strerror(s));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    opts o;
    if (parse_opts(argc - 1, argv + 1, &o) != 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(cmd, "generate") == 0)
        return cmd_generate(&o);
    if (strcmp(cmd, "perplexity") == 0)
        return cmd_perplexity(&o);
    if (strcmp(cmd, "profile") == 0)
        return cmd_profile(&o);
    if (strcmp(cmd, "partition") == 0)
        return cmd_partition(&o);
    if (strcmp(cmd, "bench-device") == 0)
        return cmd_bench_device(&o);
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "hinge: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
