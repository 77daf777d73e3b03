/* hinge generate: a generation, local or split across an edge, through
 * libhinge's public API. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"

enum { MAX_EDGES = 16 };

typedef struct gen_opts {
    const char *model, *prompt, *edge, *cacert, *wire, *codecs, *api_key;
    const char *system, *chat_template; /* --chat */
    const char *edges[MAX_EDGES]; /* --edge, in order: edge is edges[0] */
    uint32_t n_edges, timeout_ms;
    bool no_local_fallback;
    const char *device, *channel, *edge_profile, *privacy_profile;
    uint32_t n_new, ctx, min_cut, threads;
    uint32_t speculate; /* most drafts per step; 0: off */
    uint32_t private_head; /* J: the last J layers and the head stay here (docs/privacy.md); 0: off */
    float noise, max_recovery;
    uint64_t noise_seed;
    uint64_t mem_cap;
    double energy_weight;
    int cut; /* -3: unset */
    hinge_backend backend;
    float temp, top_p;
    uint32_t top_k;
    uint64_t seed;
    bool json, ignore_eos, verbose, chat;
} gen_opts;

enum { CUT_UNSET = -3 };

enum { O_TEMP = 256, O_TOPK, O_TOPP, O_SEED, O_JSON, O_THREADS, O_CTX, O_IGNORE_EOS, O_BACKEND, O_CUT, O_EDGE,
       O_WIRE, O_CACERT, O_DEVICE, O_CHANNEL, O_EDGE_PROFILE, O_MIN_CUT, O_MEM_CAP, O_ENERGY, O_CODECS, O_TIMEOUT,
       O_NO_LOCAL, O_API_KEY, O_CHAT, O_SYSTEM, O_CHAT_TEMPLATE, O_SPECULATE, O_NOISE, O_NOISE_SEED,
       O_MAX_RECOVERY, O_PRIVACY_PROFILE, O_PRIVATE_HEAD };

enum { SPECULATE_DEFAULT = 6 };

static const struct option OPTIONS[] = {
    {"model", required_argument, NULL, 'm'},     {"prompt", required_argument, NULL, 'p'},
    {"n", required_argument, NULL, 'n'},         {"temp", required_argument, NULL, O_TEMP},
    {"top-k", required_argument, NULL, O_TOPK},  {"top-p", required_argument, NULL, O_TOPP},
    {"seed", required_argument, NULL, O_SEED},   {"threads", required_argument, NULL, O_THREADS},
    {"ctx", required_argument, NULL, O_CTX},     {"json", no_argument, NULL, O_JSON},
    {"ignore-eos", no_argument, NULL, O_IGNORE_EOS}, {"backend", required_argument, NULL, O_BACKEND},
    {"cut", required_argument, NULL, O_CUT},     {"layers", required_argument, NULL, O_CUT},
    {"edge", required_argument, NULL, O_EDGE},   {"wire", required_argument, NULL, O_WIRE},
    {"cacert", required_argument, NULL, O_CACERT}, {"device", required_argument, NULL, O_DEVICE},
    {"channel", required_argument, NULL, O_CHANNEL}, {"edge-profile", required_argument, NULL, O_EDGE_PROFILE},
    {"min-cut", required_argument, NULL, O_MIN_CUT}, {"mem-cap", required_argument, NULL, O_MEM_CAP},
    {"energy-weight", required_argument, NULL, O_ENERGY}, {"codecs", required_argument, NULL, O_CODECS},
    {"timeout-ms", required_argument, NULL, O_TIMEOUT}, {"no-local-fallback", no_argument, NULL, O_NO_LOCAL},
    {"api-key", required_argument, NULL, O_API_KEY},
    {"chat", no_argument, NULL, O_CHAT},         {"system", required_argument, NULL, O_SYSTEM},
    {"chat-template", required_argument, NULL, O_CHAT_TEMPLATE},
    {"speculate", optional_argument, NULL, O_SPECULATE},
    {"noise", required_argument, NULL, O_NOISE}, {"noise-seed", required_argument, NULL, O_NOISE_SEED},
    {"max-recovery", required_argument, NULL, O_MAX_RECOVERY},
    {"privacy-profile", required_argument, NULL, O_PRIVACY_PROFILE},
    {"private-head", required_argument, NULL, O_PRIVATE_HEAD},
    {"verbose", no_argument, NULL, 'v'},          {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hinge generate [--model PATH] --prompt TEXT [-n N] [options]\n"
            "  -m, --model PATH      GGUF model (default $HINGE_MODEL, else ~/" CLI_DEFAULT_MODEL_REL ")\n"
            "  -p, --prompt TEXT     the prompt; \"\" starts from BOS alone\n"
            "  -n N                  new tokens (default 64)\n"
            "  --temp T --top-k K --top-p P --seed S   sampling (default 0.8, 40, 0.95, 0)\n"
            "  --threads N           CPU threads (default: all)\n"
            "  --ctx N               positions (default: prompt + N)\n"
            "  --ignore-eos          do not stop at end-of-generation tokens\n"
            "  --chat                the prompt is a user message: the model's chat template wraps it and the\n"
            "                        reply is the assistant's turn (ChatML, Llama 3, Gemma, Phi-3)\n"
            "  --system TEXT         with --chat: a system message first\n"
            "  --chat-template T     with --chat: this template instead of the model's (chatml, llama3, gemma,\n"
            "                        phi3, or a template's text)\n"
            "  --backend cpu|vulkan  where the device's layers run (default cpu)\n"
            "  --layers K            local run: K layers on the backend, the rest on the CPU\n"
            "  --edge URL            split: the layers after the cut run on this edge (https://, or http:// on\n"
            "                        loopback); given again, the next edges to fail over to, in order\n"
            "  --timeout-ms MS       an edge that does not answer a step within MS is failed over (default 30000)\n"
            "  --no-local-fallback   when no edge answers, fail instead of finishing on this device\n"
            "  --cut K|auto          layers on this device; auto: the partitioner decides\n"
            "  --wire f32|f16|q8     activation codec on the wire (default f32: exact)\n"
            "  --cacert FILE         PEM certificate(s) to trust for the edge\n"
            "  --api-key TOKEN       sent to the edges as Authorization: Bearer TOKEN (default $HINGE_API_KEY)\n"
            "  --noise S             privacy: Gaussian noise on the rows sent at the cut, std S times each row's\n"
            "                        RMS (docs/privacy.md); --noise-seed N fixes its seed (default: random)\n"
            "  --max-recovery R      privacy policy: no (cut, wire, noise) whose measured token recovery is over R\n"
            "                        (0..1); needs --privacy-profile FILE (profiles/privacy/)\n"
            "  --private-head J      privacy: the last J layers, the head and the sampler also run here; the\n"
            "                        edge returns its rows and never sees an output token (not with --speculate)\n"
            "  --cut auto takes: --device FILE (required) [--channel FILE (required with --edge)]\n"
            "                    [--edge-profile FILE] [--min-cut K] [--mem-cap BYTES] [--energy-weight W]\n"
            "                    [--codecs f32,f16,q8]\n"
            "  --speculate[=D]       with an edge: each decode step carries up to D draft tokens from the\n"
            "                        context (default 6, at most 15), verified in the same round trip\n"
            "  --json                one summary object on stdout instead of the text\n"
            "  -v, --verbose         what was decided and how fast it ran, on stderr\n");
}

static int parse_cut(const char *s, gen_opts *o)
{
    if (strcmp(s, "auto") == 0) {
        o->cut = HINGE_CUT_AUTO;
        return 0;
    }
    uint32_t k;
    if (cli_u32(s, "--cut/--layers", 4096, &k) != 0)
        return -1;
    o->cut = (int)k;
    return 0;
}

/* One option; -1 on a bad value. */
static int parse_one(int c, const char *arg, void *user)
{
    gen_opts *o = user;
    switch (c) {
    case 'm': o->model = arg; return 0;
    case 'p': o->prompt = arg; return 0;
    case 'n': return cli_u32(arg, "-n", 1u << 20, &o->n_new);
    case O_TEMP: return cli_f32(arg, "--temp", 0.0f, 100.0f, &o->temp);
    case O_TOPK: return cli_u32(arg, "--top-k", 1u << 24, &o->top_k);
    case O_TOPP: return cli_f32(arg, "--top-p", 0.0f, 1.0f, &o->top_p);
    case O_SEED: return cli_u64(arg, "--seed", &o->seed);
    case O_THREADS: return cli_u32(arg, "--threads", 256, &o->threads);
    case O_CTX: return cli_u32(arg, "--ctx", 1u << 20, &o->ctx);
    case O_JSON: o->json = true; return 0;
    case O_IGNORE_EOS: o->ignore_eos = true; return 0;
    case O_BACKEND: return cli_backend(arg, &o->backend);
    case O_CUT: return parse_cut(arg, o);
    case O_EDGE:
        if (o->n_edges == MAX_EDGES) {
            fprintf(stderr, "hinge: at most %d --edge\n", MAX_EDGES);
            return -1;
        }
        o->edges[o->n_edges++] = arg;
        o->edge = o->edges[0];
        return 0;
    case O_TIMEOUT: return cli_u32(arg, "--timeout-ms", 3600000, &o->timeout_ms);
    case O_NO_LOCAL: o->no_local_fallback = true; return 0;
    case O_SPECULATE:
        o->speculate = SPECULATE_DEFAULT;
        return arg ? cli_u32(arg, "--speculate", 15, &o->speculate) : 0;
    case O_WIRE: o->wire = arg; return 0;
    case O_CACERT: o->cacert = arg; return 0;
    case O_API_KEY: o->api_key = arg; return 0;
    case O_DEVICE: o->device = arg; return 0;
    case O_CHANNEL: o->channel = arg; return 0;
    case O_EDGE_PROFILE: o->edge_profile = arg; return 0;
    case O_MIN_CUT: return cli_u32(arg, "--min-cut", 4096, &o->min_cut);
    case O_PRIVATE_HEAD: return cli_u32(arg, "--private-head", 4096, &o->private_head);
    case O_MEM_CAP: return cli_u64(arg, "--mem-cap", &o->mem_cap);
    case O_ENERGY: return cli_f64(arg, "--energy-weight", 0.0, 1e6, &o->energy_weight);
    case O_CODECS: o->codecs = arg; return 0;
    case O_CHAT: o->chat = true; return 0;
    case O_SYSTEM: o->system = arg; return 0;
    case O_CHAT_TEMPLATE: o->chat_template = arg; return 0;
    case O_NOISE: return cli_f32(arg, "--noise", 0.0f, 100.0f, &o->noise);
    case O_NOISE_SEED: return cli_u64(arg, "--noise-seed", &o->noise_seed);
    case O_MAX_RECOVERY: return cli_f32(arg, "--max-recovery", 0.0f, 1.0f, &o->max_recovery);
    case O_PRIVACY_PROFILE: o->privacy_profile = arg; return 0;
    case 'v': o->verbose = true; return 0;
    }
    return -1;
}

/* 0: run; 1: --help was printed; 2: usage error (printed). */
static int parse(int argc, char **argv, gen_opts *o)
{
    *o = (gen_opts){.n_new = 64, .cut = CUT_UNSET, .temp = 0.8f, .top_k = 40, .top_p = 0.95f};
    int rc = cli_getopt(argc, argv, "generate", "m:p:n:vh", OPTIONS, parse_one, o, usage);
    if (rc)
        return rc;
    if (!o->prompt) {
        fprintf(stderr, "hinge: generate needs --prompt TEXT (it may be empty: BOS alone)\n");
        return 2;
    }
    if ((o->system || o->chat_template) && !o->chat) {
        fprintf(stderr, "hinge: --system and --chat-template go with --chat\n");
        return 2;
    }
    if (o->edge && o->cut == CUT_UNSET) {
        fprintf(stderr, "hinge: --edge needs --cut K or --cut auto\n");
        return 2;
    }
    if (o->cut == HINGE_CUT_AUTO && (!o->device || (o->edge && !o->channel))) {
        fprintf(stderr, "hinge: --cut auto needs --device FILE, and with --edge also --channel FILE (the prior of "
                        "the live channel estimate; profiles/)\n");
        return 2;
    }
    if (!o->model)
        o->model = cli_default_model();
    if (!o->api_key) /* the environment keeps the token out of ps */
        o->api_key = getenv("HINGE_API_KEY");
    return 0;
}

/* ~/.cache/hinge/channel/<authority>.json ($HINGE_CACHE/channel/...), with
 * every character outside [A-Za-z0-9.-] of the authority turned into '_';
 * the folders are made. */
static void channel_cache(const char *url, char *out, size_t cap)
{
    const char *base = getenv("HINGE_CACHE");
    char dir[1024];
    if (base && *base)
        snprintf(dir, sizeof dir, "%s", base);
    else
        snprintf(dir, sizeof dir, "%s/.cache/hinge", getenv("HOME") ? getenv("HOME") : ".");
    mkdir(dir, 0700);
    size_t len = strlen(dir);
    snprintf(dir + len, sizeof dir - len, "/channel");
    mkdir(dir, 0700);
    const char *a = strstr(url, "://");
    a = a ? a + 3 : url;
    char auth[256];
    size_t n = 0;
    for (; *a && *a != '/' && n + 1 < sizeof auth; a++)
        auth[n++] = ((*a >= 'a' && *a <= 'z') || (*a >= 'A' && *a <= 'Z') || (*a >= '0' && *a <= '9') ||
                     *a == '.' || *a == '-') ? *a : '_';
    auth[n] = '\0';
    snprintf(out, cap, "%s/%s.json", dir, auth);
}

typedef struct out_text {
    char *buf;
    size_t len, cap; /* cap: n_new pieces of at most 256 bytes, and a NUL */
    bool print;
} out_text;

static int on_piece(const char *piece, size_t len, void *user)
{
    out_text *t = user;
    if (t->print && len) {
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
    }
    if (t->len + len < t->cap) {
        memcpy(t->buf + t->len, piece, len);
        t->len += len;
        t->buf[t->len] = '\0';
    }
    return 0;
}

static json_t *breakdown_json(const hinge_stats *st)
{
    double steps = st->generated_tokens > 1 ? (double)(st->generated_tokens - 1) : 0.0;
    return json_pack("{s:f, s:f, s:f, s:f, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:I}",
                     "device_ms", st->device_ms, "network_ms", st->network_ms, "edge_ms", st->edge_ms,
                     "edge_queue_ms", st->queue_ms, "uplink_bytes", (json_int_t)st->uplink_bytes,
                     "downlink_bytes", (json_int_t)st->downlink_bytes,
                     "uplink_bytes_per_token",
                     steps > 0 ? (double)(st->uplink_bytes - st->prefill_uplink_bytes) / steps : 0.0,
                     "ttft_ms", st->ttft_ms, "tpot_ms", steps > 0 ? st->decode_ms / steps : 0.0,
                     "steps", (json_int_t)st->steps, "connects", (json_int_t)st->connects,
                     "tls_handshakes", (json_int_t)st->tls_handshakes);
}

static void print_json(const gen_opts *o, const hinge_model *m, const hinge_stats *st, const out_text *t,
                       double load_s, int threads)
{
    hinge_model_info mi;
    hinge_model_get_info(m, &mi);
    double steps = st->generated_tokens > 1 ? (double)(st->generated_tokens - 1) : 0.0;
    json_t *j = json_pack("{s:s, s:I, s:I, s:s?, s:f, s:f, s:f, s:i, s:s, s:i, s:s?, s:s?, s:s}",
                          "model", mi.name, "prompt_tokens", (json_int_t)st->prompt_tokens,
                          "generated_tokens", (json_int_t)st->generated_tokens, "text", t->buf,
                          "load_ms", load_s * 1e3,
                          "prefill_tokens_per_s", st->ttft_ms > 0 ? st->prompt_tokens / (st->ttft_ms * 1e-3) : 0.0,
                          "decode_tokens_per_s", st->decode_ms > 0 ? steps / (st->decode_ms * 1e-3) : 0.0,
                          "threads", threads, "backend", o->backend == HINGE_BACKEND_VULKAN ? "vulkan" : "cpu",
                          "cut", st->cut, "edge", st->remote ? o->edges[st->edge_index] : NULL,
                          "wire", st->remote ? cli_wire_name(st->wire) : NULL, "stop",
                          (const char *[]){"none", "length", "eog", "callback", "context", "cancelled"}[st->stop]);
    if (!j) /* the text was not UTF-8 */
        j = json_pack("{s:s, s:I, s:I, s:s}", "model", mi.name, "prompt_tokens", (json_int_t)st->prompt_tokens,
                      "generated_tokens", (json_int_t)st->generated_tokens, "error",
                      "generated text is not valid UTF-8");
    json_object_set_new(j, "breakdown", breakdown_json(st));
    if (o->speculate) /* generated tokens per decode step sent to the edge (the prefill's step is not one) */
        json_object_set_new(j, "tokens_per_round_trip",
                            json_real(st->steps > 1 ? (double)st->generated_tokens / (st->steps - 1) : 0.0));
    json_object_set_new(j, "recovery", json_pack("{s:I, s:I, s:I, s:f, s:I, s:i, s:I, s:f, s:s}", "recoveries",
                                                 (json_int_t)st->recoveries, "local_fallbacks",
                                                 (json_int_t)st->local_fallbacks, "replayed_positions",
                                                 (json_int_t)st->replayed_positions, "recovery_ms", st->recovery_ms,
                                                 "recuts", (json_int_t)st->recuts, "first_cut", st->first_cut,
                                                 "resumes", (json_int_t)st->resumes,
                                                 "recut_ms", st->recut_ms, "cause", st->recovery_cause));
    char *s = json_dumps(j, JSON_COMPACT);
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(j);
}

/* The session's config from the options; n_prompt tokens of prompt. */
static int make_config(const gen_opts *o, uint32_t n_prompt, hinge_session_config *c, char *cache, size_t cap)
{
    hinge_session_config_init(c);
    c->edge_url = o->edge;
    c->fallback_edges = o->n_edges > 1 ? o->edges + 1 : NULL;
    c->n_fallback_edges = o->n_edges > 1 ? o->n_edges - 1 : 0;
    c->timeout_ms = o->timeout_ms;
    c->no_local_fallback = o->no_local_fallback;
    c->speculate = o->speculate;
    c->private_head = o->private_head;
    c->ca_file = o->cacert;
    c->api_key = o->api_key && *o->api_key ? o->api_key : NULL;
    c->cut = o->cut == CUT_UNSET ? HINGE_CUT_ALL : o->cut;
    c->backend = o->backend;
    if (o->wire && cli_wire(o->wire, &c->wire) != 0)
        return -1;
    c->n_ctx = o->ctx ? o->ctx : n_prompt + o->n_new;
    c->n_threads = (int)o->threads;
    c->temperature = o->temp;
    c->top_k = o->top_k;
    c->top_p = o->top_p;
    c->seed = o->seed;
    c->ignore_eos = o->ignore_eos;
    c->device_profile = o->device;
    c->channel_profile = o->channel;
    c->edge_profile = o->edge_profile;
    c->min_cut = o->min_cut;
    c->wire_noise = o->noise;
    c->noise_seed = o->noise_seed;
    c->max_recovery = o->max_recovery;
    c->privacy_profile = o->privacy_profile;
    c->mem_limit = o->mem_cap;
    c->energy_weight = o->energy_weight;
    c->codecs = o->codecs ? o->codecs : (o->cut == HINGE_CUT_AUTO ? o->wire : NULL); /* --wire with auto: that codec */
    c->prompt_hint = n_prompt;
    c->max_new_hint = o->n_new ? o->n_new : 1;
    c->chat_template = o->chat_template;
    c->log = cli_log;
    c->log_level = o->verbose ? HINGE_LOG_INFO : HINGE_LOG_WARN;
    if (o->edge && o->cut == HINGE_CUT_AUTO) {
        channel_cache(o->edge, cache, cap);
        c->channel_cache = cache;
    }
    return 0;
}

/* --chat: the messages (a system message when given, the prompt as the
 * user's) and their text in *text (malloc'd), to count the prompt's tokens. */
static int chat_text(const gen_opts *o, hinge_model *m, hinge_chat_message msgs[2], size_t *n, char **text)
{
    *n = 0;
    if (o->system)
        msgs[(*n)++] = (hinge_chat_message){"system", o->system};
    msgs[(*n)++] = (hinge_chat_message){"user", o->prompt};
    size_t len = 0;
    hinge_status st = hinge_chat_format(m, o->chat_template, msgs, *n, 1, NULL, 0, &len);
    if (st == HINGE_ERR_RANGE && !(*text = malloc(len + 1)))
        st = HINGE_ERR_NOMEM;
    else if (st == HINGE_ERR_RANGE)
        st = hinge_chat_format(m, o->chat_template, msgs, *n, 1, *text, len + 1, &len);
    return st == HINGE_OK ? 0 : cli_fail("--chat", st);
}

static int run(const gen_opts *o, hinge_model *m, double load_s)
{
    hinge_chat_message msgs[2];
    size_t n_msgs = 0;
    char *chat = NULL;
    if (o->chat && chat_text(o, m, msgs, &n_msgs, &chat) != 0)
        return 1;
    const char *text = o->chat ? chat : o->prompt;
    /* at most a token per byte, plus BOS and the dummy prefix's "\u2581" (3 bytes, byte-fallback tokens) */
    size_t plen = strlen(text), n_prompt = 0, cap = plen + 4;
    int32_t *ids = malloc(cap * sizeof *ids);
    out_text t = {.cap = (size_t)o->n_new * 256 + 1, .print = !o->json};
    t.buf = calloc(t.cap, 1);
    hinge_session *s = NULL;
    hinge_session_config c;
    char cache[1200];
    int rc = 1;
    hinge_status st;
    if (!ids || !t.buf)
        goto done;
    if ((st = hinge_tokenize(m, text, plen, 1, ids, cap, &n_prompt)) != HINGE_OK) {
        rc = cli_fail("cannot tokenize the prompt", st);
        goto done;
    }
    if (make_config(o, (uint32_t)n_prompt, &c, cache, sizeof cache) != 0) {
        rc = 2;
        goto done;
    }
    hinge_model_info mi;
    hinge_model_get_info(m, &mi);
    if (c.n_ctx < n_prompt + o->n_new || c.n_ctx > mi.n_ctx_train) {
        fprintf(stderr, "hinge: a context of %u positions cannot hold prompt (%zu) + new tokens (%u) or exceeds the "
                        "model's %u\n", c.n_ctx, n_prompt, o->n_new, mi.n_ctx_train);
        goto done;
    }
    if ((st = hinge_session_create(m, &c, &s)) != HINGE_OK) {
        rc = cli_fail("cannot start the session", st);
        goto done;
    }
    hinge_stats stats;
    hinge_session_get_stats(s, &stats);
    if (o->verbose && o->cut == HINGE_CUT_AUTO)
        fprintf(stderr, "hinge: --cut auto chose k=%d, %s%s\n", stats.cut, cli_wire_name(stats.wire),
                stats.remote ? "" : " (local)");
    st = o->chat ? hinge_chat(s, msgs, n_msgs, (int)o->n_new, on_piece, &t)
                 : hinge_generate(s, o->prompt, (int)o->n_new, on_piece, &t);
    if (st != HINGE_OK) {
        rc = cli_fail("generation failed", st);
        goto done;
    }
    hinge_session_get_stats(s, &stats);
    int threads = o->threads ? (int)o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (o->json)
        print_json(o, m, &stats, &t, load_s, threads);
    else if (o->verbose)
        fprintf(stderr, "\nhinge: %u prompt tokens, %u generated; TTFT %.1f ms, %.1f ms per token\n",
                stats.prompt_tokens, stats.generated_tokens, stats.ttft_ms,
                stats.generated_tokens > 1 ? stats.decode_ms / (stats.generated_tokens - 1) : 0.0);
    rc = 0;
done:
    hinge_session_free(s);
    free(t.buf);
    free(ids);
    free(chat);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    gen_opts o;
    int p = parse(argc, argv, &o);
    if (p)
        return p == 1 ? 0 : 2;
    hinge_model *m = NULL;
    double t0 = cli_now_s();
    if (cli_load_model(o.model, o.verbose, &m) != 0)
        return 1;
    int rc = run(&o, m, cli_now_s() - t0);
    hinge_model_free(m);
    return rc;
}
