/* split_generate: the test driver of a split run, through libhinge's public
 * API alone (<hinge/hinge.h>): embed and layers [0, k) here, the rest on an
 * edge, one hinge_session_step per position.
 *
 *   split_generate --model M --edge https://127.0.0.1:PORT --cacert C --cut K --wire f32 --prompt "" -n 200
 *   split_generate --model M --local --cut K ...        (the same split, all in-process: the baseline)
 *
 * Prints the generated text on stdout (exactly as `hinge generate`), or
 * with --json one summary object: tokens, timings broken down (device,
 * request, edge, queue, network), bytes on the wire, connections and TLS
 * handshakes, and with --measure (greedy, lossy wire) the token agreement
 * and the largest logit difference against the exact activations. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hinge/hinge.h>
#include <jansson.h>

enum { PIECE_MAX = 256, PROMPT_FILE_MAX = 1 << 20, TIMEOUT_MS = 60000 };

typedef struct args {
    const char *model, *edge, *cacert, *prompt, *prompt_file;
    uint32_t cut, n_new, prompt_tokens, threads, max_step, pause_ms, spin_us, private_head;
    hinge_wire wire;
    float temp, top_p;
    uint32_t top_k;
    uint64_t seed;
    bool local, json, measure, ignore_eos;
} args;

/* One generation and what it measured. */
typedef struct run {
    const args *a;
    hinge_model *m;
    uint32_t n_vocab;
    hinge_session *main;          /* the run: tail on the edge, or in-process with --local */
    hinge_session *exact, *lossy; /* --measure: in-process, same cut; wire f32 and wire a->wire */
    float *l_exact, *l_lossy;     /* (n_vocab) logits of a step's last row */
    int32_t *prompt;              /* (n_prompt) */
    size_t n_prompt;
    int32_t *tokens;              /* generated, (n_new) capacity */
    size_t n_gen;
    double *step_us;              /* wall time of each decode step, (n_new) capacity */
    size_t decode_steps;
    double ttft_us;               /* the prefill step: start to first token */
    double decode_us;             /* all decode steps, wall */
    hinge_step_info decode;       /* the decode steps (one position each), summed; ms and bytes */
    uint64_t uplink_bytes, downlink_bytes; /* every step */
    /* measure */
    size_t positions;             /* sampled positions compared */
    size_t agree;                 /* main token == argmax of the exact logits */
    size_t edge_mismatch;         /* main token != argmax of the lossy logits */
    double max_logit_diff;        /* max |exact - lossy| over every compared logit */
} run;

/* A failed hinge_* call: its status and this thread's detail, if any. */
static void print_error(const char *what, hinge_status s)
{
    const char *detail = hinge_last_error();
    fprintf(stderr, "split_generate: %s: %s%s(%s)\n", what, detail, *detail ? " " : "", hinge_strerror(s));
}

/* ---- the command line ---- */

enum { O_EDGE = 256, O_CACERT, O_CUT, O_WIRE, O_PFILE, O_PTOK, O_THREADS, O_TEMP, O_TOPK, O_TOPP, O_SEED,
       O_LOCAL, O_JSON, O_MEASURE, O_MAXSTEP, O_IGNORE_EOS, O_PAUSE, O_SPIN, O_PHEAD };

static const struct option long_opts[] = {
    {"model", required_argument, NULL, 'm'}, {"edge", required_argument, NULL, O_EDGE},
    {"cacert", required_argument, NULL, O_CACERT}, {"cut", required_argument, NULL, O_CUT},
    {"wire", required_argument, NULL, O_WIRE}, {"prompt", required_argument, NULL, 'p'},
    {"prompt-file", required_argument, NULL, O_PFILE}, {"prompt-tokens", required_argument, NULL, O_PTOK},
    {"threads", required_argument, NULL, O_THREADS}, {"temp", required_argument, NULL, O_TEMP},
    {"top-k", required_argument, NULL, O_TOPK}, {"top-p", required_argument, NULL, O_TOPP},
    {"seed", required_argument, NULL, O_SEED}, {"local", no_argument, NULL, O_LOCAL},
    {"json", no_argument, NULL, O_JSON}, {"measure", no_argument, NULL, O_MEASURE},
    {"max-step", required_argument, NULL, O_MAXSTEP}, {"ignore-eos", no_argument, NULL, O_IGNORE_EOS},
    {"pause-ms", required_argument, NULL, O_PAUSE}, {"spin-us", required_argument, NULL, O_SPIN},
    {"private-head", required_argument, NULL, O_PHEAD},
    {NULL, 0, NULL, 0},
};

static const char *const wire_names[] = {[HINGE_WIRE_F32] = "f32", [HINGE_WIRE_F16] = "f16",
                                         [HINGE_WIRE_Q8] = "q8"};

static int parse_wire(const char *v, hinge_wire *out)
{
    for (int w = HINGE_WIRE_F32; w <= HINGE_WIRE_Q8; w++)
        if (strcmp(v, wire_names[w]) == 0) {
            *out = (hinge_wire)w;
            return 0;
        }
    fprintf(stderr, "split_generate: --wire must be f32, f16 or q8\n");
    return -1;
}

static int num(const char *s, const char *what, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "split_generate: --%s: '%s' is not a number in [%g, %g]\n", what, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_opt(int opt, const char *v, args *a)
{
    double d = 0;
    int rc = 0;
    switch (opt) {
    case 'm': a->model = v; break;
    case 'p': a->prompt = v; break;
    case O_EDGE: a->edge = v; break;
    case O_CACERT: a->cacert = v; break;
    case O_PFILE: a->prompt_file = v; break;
    case O_LOCAL: a->local = true; break;
    case O_JSON: a->json = true; break;
    case O_MEASURE: a->measure = true; break;
    case O_IGNORE_EOS: a->ignore_eos = true; break;
    case O_WIRE: rc = parse_wire(v, &a->wire); break;
    case O_CUT: rc = num(v, "cut", 0, 4096, &d); a->cut = (uint32_t)d; break;
    case 'n': rc = num(v, "n", 1, 1 << 20, &d); a->n_new = (uint32_t)d; break;
    case O_PTOK: rc = num(v, "prompt-tokens", 1, 1 << 20, &d); a->prompt_tokens = (uint32_t)d; break;
    case O_THREADS: rc = num(v, "threads", 1, 256, &d); a->threads = (uint32_t)d; break;
    case O_MAXSTEP: rc = num(v, "max-step", 1, 1 << 20, &d); a->max_step = (uint32_t)d; break;
    case O_PAUSE: rc = num(v, "pause-ms", 0, 60000, &d); a->pause_ms = (uint32_t)d; break;
    case O_SPIN: rc = num(v, "spin-us", 0, 100000, &d); a->spin_us = (uint32_t)d; break;
    case O_PHEAD: rc = num(v, "private-head", 0, 4096, &d); a->private_head = (uint32_t)d; break;
    case O_TEMP: rc = num(v, "temp", 0, 100, &d); a->temp = (float)d; break;
    case O_TOPK: rc = num(v, "top-k", 0, 1 << 20, &d); a->top_k = (uint32_t)d; break;
    case O_TOPP: rc = num(v, "top-p", 0, 1, &d); a->top_p = (float)d; break;
    case O_SEED: rc = num(v, "seed", 0, 9007199254740992.0, &d); a->seed = (uint64_t)d; break;
    default: rc = -1;
    }
    return rc;
}

static int parse_args(int argc, char **argv, args *a)
{
    *a = (args){.wire = HINGE_WIRE_F32, .n_new = 32, .top_p = 1.0f};
    int opt;
    while ((opt = getopt_long(argc, argv, "m:p:n:", long_opts, NULL)) != -1)
        if (parse_opt(opt, optarg, a) != 0)
            return -1;
    if (!a->model || (!a->prompt && !a->prompt_file) || (!a->edge && !a->local) || optind != argc) {
        fprintf(stderr, "usage: split_generate --model M (--edge URL [--cacert F] | --local) --cut K [--wire C]\n"
                        "       (--prompt TEXT | --prompt-file F --prompt-tokens N) [-n N] [--json] [--measure]\n"
                        "       [--threads N] [--temp T --top-k K --top-p P --seed S] [--ignore-eos]\n"
                        "       [--max-step N] [--spin-us US] [--pause-ms MS] [--private-head J]\n");
        return -1;
    }
    if (a->measure && a->temp > 0.0f) {
        fprintf(stderr, "split_generate: --measure compares argmaxes: it needs greedy sampling (--temp 0)\n");
        return -1;
    }
    return 0;
}

/* ---- the prompt ---- */

/* The whole file, NUL-terminated; NULL (with a message) when it cannot be
 * read or is over PROMPT_FILE_MAX bytes. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "split_generate: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(PROMPT_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, PROMPT_FILE_MAX + 1, f) : 0;
    bool bad = !buf || ferror(f) || n > PROMPT_FILE_MAX;
    fclose(f);
    if (bad) {
        fprintf(stderr, "split_generate: cannot read %s (or it is over %d bytes)\n", path, PROMPT_FILE_MAX);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Tokenizes like `hinge generate`: BOS when the model asks for it or the
 * text is empty; --prompt-tokens keeps the first N. */
static int tokenize(run *R)
{
    const args *a = R->a;
    char *owned = a->prompt_file ? read_file(a->prompt_file) : NULL;
    if (a->prompt_file && !owned)
        return -1;
    const char *text = owned ? owned : a->prompt;
    size_t len = strlen(text), cap = len + 2; /* at most one token per byte, and BOS */
    int rc = -1;
    R->prompt = malloc(cap * sizeof *R->prompt);
    hinge_status s = R->prompt ? hinge_tokenize(R->m, text, len, 1, R->prompt, cap, &R->n_prompt) : HINGE_ERR_NOMEM;
    if (s != HINGE_OK)
        print_error("tokenizing the prompt", s);
    else if (R->n_prompt == 0)
        fprintf(stderr, "split_generate: the prompt gives no tokens\n");
    else if (a->prompt_tokens && R->n_prompt < a->prompt_tokens)
        fprintf(stderr, "split_generate: the prompt has only %zu tokens\n", R->n_prompt);
    else
        rc = 0;
    if (rc == 0 && a->prompt_tokens)
        R->n_prompt = a->prompt_tokens;
    free(owned);
    return rc;
}

/* ---- sessions ---- */

static hinge_status open_session(run *R, const char *edge_url, hinge_wire wire, hinge_session **out)
{
    const args *a = R->a;
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.edge_url = edge_url;
    c.ca_file = a->cacert;
    c.cut = (int)a->cut;
    c.wire = wire;
    c.n_ctx = (uint32_t)R->n_prompt + a->n_new;
    c.n_threads = (int)a->threads;
    c.temperature = a->temp;
    c.top_k = a->top_k;
    c.top_p = a->top_p;
    c.seed = a->seed;
    c.ignore_eos = a->ignore_eos;
    c.max_step = a->max_step;
    c.timeout_ms = TIMEOUT_MS;
    c.spin_us = a->spin_us;
    c.private_head = a->private_head;
    return hinge_session_create(R->m, &c, out);
}

static hinge_status open_all(run *R)
{
    const args *a = R->a;
    size_t cap = a->n_new;
    R->tokens = malloc(cap * sizeof *R->tokens);
    R->step_us = malloc(cap * sizeof *R->step_us);
    if (!R->tokens || !R->step_us)
        return HINGE_ERR_NOMEM;
    hinge_status s = open_session(R, a->local ? NULL : a->edge, a->wire, &R->main);
    if (s != HINGE_OK || !a->measure)
        return s;
    R->l_exact = malloc(R->n_vocab * sizeof *R->l_exact);
    R->l_lossy = malloc(R->n_vocab * sizeof *R->l_lossy);
    if (!R->l_exact || !R->l_lossy)
        return HINGE_ERR_NOMEM;
    s = open_session(R, NULL, HINGE_WIRE_F32, &R->exact);
    if (s == HINGE_OK)
        s = open_session(R, NULL, a->wire, &R->lossy);
    return s;
}

/* Frees the sessions: the edge session's DELETE goes now. */
static void close_all(run *R)
{
    hinge_session_free(R->main);
    hinge_session_free(R->exact);
    hinge_session_free(R->lossy);
    free(R->l_exact);
    free(R->l_lossy);
    free(R->prompt);
    free(R->tokens);
    free(R->step_us);
}

/* ---- generation ---- */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int32_t argmax(const float *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

/* The same tokens through the exact and the lossy in-process sessions;
 * their last row's logits against the main session's token. */
static hinge_status measure(run *R, const int32_t *tokens, size_t n, int32_t tok)
{
    int32_t ignored;
    hinge_status s = hinge_session_step(R->exact, tokens, n, &ignored, NULL);
    if (s == HINGE_OK)
        s = hinge_session_step(R->lossy, tokens, n, &ignored, NULL);
    if (s == HINGE_OK)
        s = hinge_session_logits(R->exact, n - 1, 1, R->l_exact);
    if (s == HINGE_OK)
        s = hinge_session_logits(R->lossy, n - 1, 1, R->l_lossy);
    if (s != HINGE_OK)
        return s;
    for (uint32_t i = 0; i < R->n_vocab; i++)
        R->max_logit_diff = fmax(R->max_logit_diff, fabs((double)R->l_exact[i] - (double)R->l_lossy[i]));
    R->positions++;
    R->agree += tok == argmax(R->l_exact, R->n_vocab);
    R->edge_mismatch += tok != argmax(R->l_lossy, R->n_vocab);
    return HINGE_OK;
}

static hinge_status step(run *R, const int32_t *tokens, size_t n, int32_t *next, hinge_step_info *t)
{
    hinge_status s = hinge_session_step(R->main, tokens, n, next, t);
    if (s != HINGE_OK)
        return s;
    R->uplink_bytes += t->uplink_bytes;
    R->downlink_bytes += t->downlink_bytes;
    return R->exact ? measure(R, tokens, n, *next) : HINGE_OK;
}

static void add_decode(hinge_step_info *sum, const hinge_step_info *t)
{
    sum->device_ms += t->device_ms;
    sum->tail_ms += t->tail_ms;
    sum->edge_ms += t->edge_ms;
    sum->queue_ms += t->queue_ms;
    sum->network_ms += t->network_ms;
    sum->uplink_bytes += t->uplink_bytes;
    sum->downlink_bytes += t->downlink_bytes;
}

/* The prefill, then one step per generated token, as hinge_generate. */
static hinge_status generate(run *R)
{
    const args *a = R->a;
    hinge_step_info t;
    int32_t tok;
    double t0 = now_us();
    hinge_status s = step(R, R->prompt, R->n_prompt, &tok, &t);
    R->ttft_us = now_us() - t0;
    for (uint32_t i = 0; s == HINGE_OK && i < a->n_new; i++) {
        if (hinge_token_is_eog(R->m, tok) && !a->ignore_eos)
            break;
        R->tokens[R->n_gen++] = tok;
        if (i == 0 && a->pause_ms) /* e.g. past the edge's idle timeout, to exercise reconnecting */
            usleep(a->pause_ms * 1000u);
        if (i + 1 == a->n_new)
            break;
        int32_t in = tok; /* step writes the next token before measure reads the input */
        t0 = now_us();
        s = step(R, &in, 1, &tok, &t);
        double dt = now_us() - t0;
        R->decode_us += dt;
        R->step_us[R->decode_steps++] = dt;
        add_decode(&R->decode, &t);
    }
    return s;
}

/* ---- output ---- */

/* The generated text, NUL-terminated (malloc'd); NULL with a message. */
static char *detokenize(const run *R)
{
    size_t cap = R->n_gen * PIECE_MAX + 1, len = 0;
    char *text = malloc(cap);
    int32_t prev = R->prompt[R->n_prompt - 1];
    for (size_t i = 0; text && i < R->n_gen; i++) {
        size_t n = 0;
        hinge_status s = hinge_token_to_piece(R->m, prev, R->tokens[i], text + len, cap - 1 - len, &n);
        if (s != HINGE_OK) {
            print_error("the text of a generated token", s);
            free(text);
            return NULL;
        }
        len += n;
        prev = R->tokens[i];
    }
    if (text)
        text[len] = '\0';
    return text;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of the decode steps' wall times (sorts them). */
static double quantile(run *R, double q)
{
    if (!R->decode_steps)
        return 0.0;
    qsort(R->step_us, R->decode_steps, sizeof R->step_us[0], cmp_double);
    return R->step_us[(size_t)(q * (double)(R->decode_steps - 1) + 0.5)];
}

/* Per decode step (one position): where the time went, and the bytes.
 * request_us is the tail's wall time (the HTTP exchange, or the in-process
 * layers after the cut); the library does not report the frame's encoding
 * apart (encode_us stays 0). */
static json_t *decode_json(run *R)
{
    double n = R->decode_steps ? (double)R->decode_steps : 1.0;
    const hinge_step_info *t = &R->decode;
    double p50 = quantile(R, 0.5), p90 = quantile(R, 0.9);
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "tpot_us", R->decode_us / n,
                     "tpot_p50_us", p50, "tpot_p90_us", p90, "device_us", t->device_ms * 1e3 / n, "encode_us", 0.0,
                     "request_us", t->tail_ms * 1e3 / n, "edge_us", t->edge_ms * 1e3 / n, "queue_us",
                     t->queue_ms * 1e3 / n, "network_us", t->network_ms * 1e3 / n, "uplink_bytes",
                     (double)t->uplink_bytes / n, "downlink_bytes", (double)t->downlink_bytes / n);
}

static json_t *ids_json(const int32_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_integer(ids[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static void add_measure(json_t *j, const run *R)
{
    json_object_set_new(j, "positions", json_integer((json_int_t)R->positions));
    json_object_set_new(j, "agree", json_integer((json_int_t)R->agree));
    json_object_set_new(j, "edge_mismatch", json_integer((json_int_t)R->edge_mismatch));
    json_object_set_new(j, "max_logit_diff", json_real(R->max_logit_diff));
}

/* requests: the client's count, plus the DELETE that hinge_session_free
 * will send (the public API has no close apart from free). */
static int print_json(run *R, const char *text)
{
    const args *a = R->a;
    hinge_stats st;
    hinge_session_get_stats(R->main, &st);
    uint64_t requests = st.requests + (st.remote ? 1 : 0);
    json_t *j = json_pack("{s:s, s:I, s:s, s:I, s:I, s:s?, s:f, s:o, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "mode",
                          a->local ? "local" : "edge", "cut", (json_int_t)a->cut, "wire", wire_names[a->wire],
                          "prompt_tokens", (json_int_t)R->n_prompt, "generated", (json_int_t)R->n_gen, "text", text,
                          "ttft_us", R->ttft_us, "decode", decode_json(R), "uplink_bytes",
                          (json_int_t)R->uplink_bytes, "downlink_bytes", (json_int_t)R->downlink_bytes, "connects",
                          (json_int_t)st.connects, "tls_handshakes", (json_int_t)st.tls_handshakes, "requests",
                          (json_int_t)requests, "tokens", ids_json(R->tokens, R->n_gen), "prompt_ids",
                          ids_json(R->prompt, R->n_prompt));
    if (j && a->measure)
        add_measure(j, R);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        fprintf(stderr, "split_generate: cannot build the JSON summary (text not UTF-8?)\n");
        return -1;
    }
    printf("%s\n", s);
    free(s);
    return 0;
}

static int report(run *R)
{
    char *text = detokenize(R);
    if (!text)
        return -1;
    int rc = 0;
    if (R->a->json)
        rc = print_json(R, text);
    else
        fputs(text, stdout);
    free(text);
    return rc;
}

int main(int argc, char **argv)
{
    args a;
    if (parse_args(argc, argv, &a) != 0)
        return 2;
    run R = {.a = &a};
    hinge_status s = hinge_model_load(a.model, &R.m);
    if (s != HINGE_OK) {
        print_error("loading the model", s);
        return 1;
    }
    hinge_model_info info;
    hinge_model_get_info(R.m, &info);
    R.n_vocab = info.n_vocab;
    int rc = 1;
    if (tokenize(&R) == 0) {
        if ((s = open_all(&R)) != HINGE_OK)
            print_error("opening the session", s);
        else if ((s = generate(&R)) != HINGE_OK)
            print_error("generating", s);
        else if (report(&R) == 0)
            rc = 0;
    }
    close_all(&R);
    hinge_model_free(R.m);
    return rc;
}
