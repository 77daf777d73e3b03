/* hinge partition: the partitioner's prediction for every cut and its
 * choice for one request (hinge_partition_plan; docs/partitioning.md).
 * A table on stdout, or with --json the library's document as it is. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

typedef struct part_opts {
    const char *model, *device, *channel, *edge, *edge_load, *codecs, *privacy_profile;
    uint32_t prompt_len, new_tokens, min_cut, private_head;
    float max_recovery, noise;
    uint64_t mem_cap;
    double energy_weight;
    uint32_t speculate;  /* most drafts; 0: not modelled */
    double accept_rate;
    bool connected, cold_start, json, verbose;
} part_opts;

enum { O_DEVICE = 256, O_CHANNEL, O_EDGE, O_EDGE_LOAD, O_PROMPT_LEN, O_MIN_CUT, O_MEM_CAP, O_ENERGY, O_CODECS,
       O_CONNECTED, O_COLD_START, O_JSON, O_SPECULATE, O_ACCEPT, O_MAX_RECOVERY, O_PRIVACY_PROFILE, O_NOISE,
       O_PRIVATE_HEAD };

static const struct option OPTIONS[] = {
    {"model", required_argument, NULL, 'm'},           {"device", required_argument, NULL, O_DEVICE},
    {"channel", required_argument, NULL, O_CHANNEL},   {"edge", required_argument, NULL, O_EDGE},
    {"edge-profile", required_argument, NULL, O_EDGE}, {"edge-load", required_argument, NULL, O_EDGE_LOAD},
    {"prompt-len", required_argument, NULL, O_PROMPT_LEN}, {"new-tokens", required_argument, NULL, 'n'},
    {"min-cut", required_argument, NULL, O_MIN_CUT},   {"mem-cap", required_argument, NULL, O_MEM_CAP},
    {"energy-weight", required_argument, NULL, O_ENERGY}, {"codecs", required_argument, NULL, O_CODECS},
    {"connected", no_argument, NULL, O_CONNECTED},     {"cold-start", no_argument, NULL, O_COLD_START},
    {"json", no_argument, NULL, O_JSON},               {"verbose", no_argument, NULL, 'v'},
    {"speculate", required_argument, NULL, O_SPECULATE}, {"accept", required_argument, NULL, O_ACCEPT},
    {"max-recovery", required_argument, NULL, O_MAX_RECOVERY}, {"noise", required_argument, NULL, O_NOISE},
    {"privacy-profile", required_argument, NULL, O_PRIVACY_PROFILE},
    {"private-head", required_argument, NULL, O_PRIVATE_HEAD},
    {"help", no_argument, NULL, 'h'},                  {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hinge partition [--model PATH] --device FILE [--channel FILE --edge FILE] [options]\n"
            "The partitioner's prediction for every cut k (TTFT, TPOT, bytes, energy, memory) and its choice\n"
            "for one request. Without both --channel and --edge no edge is reachable: k = N.\n"
            "  -m, --model PATH        GGUF model (default $HINGE_MODEL, else ~/" CLI_DEFAULT_MODEL_REL ")\n"
            "  --device FILE           device profile (hinge profile; profiles/devices/) (required)\n"
            "  --channel FILE          channel profile (profiles/channels/)\n"
            "  --edge FILE             the edge's profile file, not a URL (also --edge-profile)\n"
            "  --edge-load FILE        a saved GET /v1/profile reply of that edge: its queue (default: idle)\n"
            "  --prompt-len P          prompt positions (default 128)\n"
            "  -n, --new-tokens N      new tokens (default 64)\n"
            "  --min-cut K             privacy floor: at least K layers on the device\n"
            "  --max-recovery R        privacy policy: no (cut, codec) whose measured token recovery at the\n"
            "                          session's --noise S is over R; needs --privacy-profile FILE (docs/privacy.md)\n"
            "  --private-head J        every split keeps the last J layers, the head and the sampler on the\n"
            "                          device; the edge returns rows (their bytes down and the device's time count)\n"
            "  --mem-cap BYTES         device memory for the model (default: the device profile's)\n"
            "  --energy-weight W       seconds of latency one joule of device energy is worth (default 0)\n"
            "  --codecs LIST           wire codecs to consider, e.g. f32,f16,q8 (default f32,f16)\n"
            "  --connected             the edge connection is already open: no set-up cost\n"
            "  --cold-start            the device's weights are not paged in yet\n"
            "  --speculate D           also model speculative lookahead with up to D drafts a step\n"
            "  --accept A              ... each accepted with probability A (default 0.5)\n"
            "  --json                  one JSON object with every candidate instead of the table\n"
            "  -v, --verbose           the library's log down to DEBUG on stderr\n");
}

/* One option; -1 on a bad value. */
static int parse_one(int c, const char *arg, void *user)
{
    part_opts *o = user;
    switch (c) {
    case 'm': o->model = arg; return 0;
    case O_DEVICE: o->device = arg; return 0;
    case O_CHANNEL: o->channel = arg; return 0;
    case O_EDGE: o->edge = arg; return 0;
    case O_EDGE_LOAD: o->edge_load = arg; return 0;
    case O_PROMPT_LEN: return cli_u32(arg, "--prompt-len", 1u << 20, &o->prompt_len);
    case 'n': return cli_u32(arg, "--new-tokens", 1u << 20, &o->new_tokens);
    case O_MIN_CUT: return cli_u32(arg, "--min-cut", 4096, &o->min_cut);
    case O_MEM_CAP: return cli_u64(arg, "--mem-cap", &o->mem_cap);
    case O_ENERGY: return cli_f64(arg, "--energy-weight", 0.0, 1e6, &o->energy_weight);
    case O_CODECS: o->codecs = arg; return 0;
    case O_CONNECTED: o->connected = true; return 0;
    case O_COLD_START: o->cold_start = true; return 0;
    case O_JSON: o->json = true; return 0;
    case O_SPECULATE: return cli_u32(arg, "--speculate", 15, &o->speculate);
    case O_ACCEPT: return cli_f64(arg, "--accept", 0.0, 1.0, &o->accept_rate);
    case O_MAX_RECOVERY: return cli_f32(arg, "--max-recovery", 0.0f, 1.0f, &o->max_recovery);
    case O_NOISE: return cli_f32(arg, "--noise", 0.0f, 100.0f, &o->noise);
    case O_PRIVACY_PROFILE: o->privacy_profile = arg; return 0;
    case O_PRIVATE_HEAD: return cli_u32(arg, "--private-head", 4096, &o->private_head);
    case 'v': o->verbose = true; return 0;
    }
    return -1;
}

/* 0: run; 1: --help was printed; 2: usage error (printed). */
static int parse(int argc, char **argv, part_opts *o)
{
    *o = (part_opts){.new_tokens = 64};
    int rc = cli_getopt(argc, argv, "partition", "m:n:vh", OPTIONS, parse_one, o, usage);
    if (rc)
        return rc;
    if (!o->device) {
        fprintf(stderr, "hinge: partition: --device FILE (a device profile) is required\n");
        return 2;
    }
    if (o->edge && (strncmp(o->edge, "http://", 7) == 0 || strncmp(o->edge, "https://", 8) == 0)) {
        fprintf(stderr, "hinge: partition: --edge takes the edge's profile file here, not a URL\n");
        return 2;
    }
    if (!o->model)
        o->model = cli_default_model();
    return 0;
}

/* A number of the plan; null (not finite) reads as infinity. */
static double num(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : INFINITY;
}

static const char *str(json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : dflt;
}

static void print_row(json_t *p, long chosen)
{
    long k = (long)json_integer_value(json_object_get(p, "cut"));
    bool ok = json_is_true(json_object_get(p, "feasible"));
    printf("%3ld %5s %9.2f %9.2f %9.3f %10.2f %8.3f %9.1f %8.1f %9.4f  %s%s\n", k, str(p, "codec", "?"),
           num(p, "setup_ms"), num(p, "ttft_ms"), num(p, "tpot_ms"), num(p, "total_ms"), num(p, "energy_j"),
           num(p, "up_bytes") / 1e3, num(p, "device_mem_mb"), num(p, "objective"), ok ? "" : str(p, "why", "?"),
           k == chosen ? " <- chosen" : "");
}

/* The table of every cut and the choice, from the plan's JSON. */
static int print_table(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    json_t *cands = json_object_get(j, "candidates"), *req = json_object_get(j, "request");
    json_t *pol = json_object_get(j, "policy"), *ch = json_object_get(j, "chosen");
    if (!json_is_array(cands) || json_array_size(cands) == 0 || !json_is_object(ch)) {
        fprintf(stderr, "hinge: partition: the plan is not the expected JSON\n");
        json_decref(j);
        return 1;
    }
    long cut = (long)json_integer_value(json_object_get(j, "cut"));
    printf("model %s (%zu layers); device %s; channel %s; edge %s\n", str(j, "model", "?"),
           json_array_size(cands) - 1, str(j, "device", "?"), str(j, "channel", "(none)"),
           str(j, "edge", "(none: local only)"));
    printf("request: %ld prompt positions, %ld new tokens; policy: k >= %ld, memory cap %.0f MB, energy weight %g "
           "s/J\n", (long)json_integer_value(json_object_get(req, "prompt_len")),
           (long)json_integer_value(json_object_get(req, "new_tokens")),
           (long)json_integer_value(json_object_get(pol, "min_cut")), num(pol, "mem_cap_bytes") / 1048576.0,
           num(pol, "energy_weight"));
    printf("%3s %5s %9s %9s %9s %10s %8s %9s %8s %9s  %s\n", "k", "codec", "setup ms", "TTFT ms", "TPOT ms",
           "total ms", "energy J", "up KB", "mem MB", "objective", "");
    for (size_t i = 0; i < json_array_size(cands); i++)
        print_row(json_array_get(cands, i), cut);
    printf("choice: k = %ld, codec %s: TTFT %.2f ms, TPOT %.3f ms, total %.2f ms; decision %.2f us\n", cut,
           str(j, "codec", "?"), num(ch, "ttft_ms"), num(ch, "tpot_ms"), num(ch, "total_ms"),
           num(j, "decision_us"));
    for (size_t i = 0; i < json_array_size(cands); i++) {
        json_t *p = json_array_get(cands, i), *sp = json_object_get(p, "speculate");
        if (json_is_object(sp))
            printf("speculate at k = %ld: %ld drafts (acceptance %.2f): %.2f tokens per round trip, TPOT %.3f ms "
                   "(without: %.3f)\n", (long)json_integer_value(json_object_get(p, "cut")),
                   (long)json_integer_value(json_object_get(sp, "drafts")), num(sp, "accept_rate"),
                   num(sp, "tokens_per_round_trip"), num(sp, "tpot_ms"), num(p, "tpot_ms"));
    }
    json_decref(j);
    return 0;
}

int cmd_partition(int argc, char **argv)
{
    part_opts o;
    int rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    hinge_model *m = NULL;
    if (cli_load_model(o.model, o.verbose, &m) != 0)
        return 1;
    hinge_plan_config c;
    hinge_plan_config_init(&c);
    c.device_profile = o.device;
    c.channel_profile = o.channel;
    c.edge_profile = o.edge;
    c.edge_load = o.edge_load;
    c.prompt_len = o.prompt_len;
    c.new_tokens = o.new_tokens;
    c.min_cut = o.min_cut;
    c.mem_limit = o.mem_cap;
    c.energy_weight = o.energy_weight;
    c.codecs = o.codecs;
    c.connected = o.connected;
    c.cold_start = o.cold_start;
    c.speculate = o.speculate;
    c.accept_rate = o.accept_rate;
    c.max_recovery = o.max_recovery;
    c.wire_noise = o.noise;
    c.privacy_profile = o.privacy_profile;
    c.private_head = o.private_head;
    char *json = NULL;
    hinge_status s = hinge_partition_plan(m, &c, &json);
    if (s != HINGE_OK)
        rc = cli_fail("partition", s);
    else if (o.json)
        printf("%s\n", json);
    else
        rc = print_table(json);
    hinge_free(json);
    hinge_model_free(m);
    return rc;
}
