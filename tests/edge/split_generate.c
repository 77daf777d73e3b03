/* split_generate: the test driver of a split run, what `hinge generate
 * --edge` does: embed and layers [0, k) here, the rest on an edge.
 *
 *   split_generate --model M --edge https://127.0.0.1:PORT --cacert C --cut K --wire f32 --prompt "" -n 200
 *   split_generate --model M --local --cut K ...        (the same split, all in-process: the baseline)
 *
 * Prints the generated text on stdout (exactly as `hinge generate`), or
 * with --json one summary object: tokens, timings broken down (device,
 * encode, request, edge, queue, network), bytes on the wire, TLS
 * handshakes, and with --measure (greedy, lossy wire) the token agreement
 * and the largest logit difference against the exact activations. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "split_run.h"
#include "tokenizer.h"

typedef struct args {
    const char *model, *edge, *cacert, *prompt, *prompt_file;
    uint32_t cut, n_new, prompt_tokens, threads, max_step, pause_ms, spin_us;
    tx_codec codec;
    sampler_params sp;
    bool local, json, measure, ignore_eos;
} args;

enum { O_EDGE = 256, O_CACERT, O_CUT, O_WIRE, O_PFILE, O_PTOK, O_THREADS, O_TEMP, O_TOPK, O_TOPP, O_SEED,
       O_LOCAL, O_JSON, O_MEASURE, O_MAXSTEP, O_IGNORE_EOS, O_PAUSE, O_SPIN };

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
    {NULL, 0, NULL, 0},
};

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
    case O_WIRE:
        if (tx_codec_parse(v, &a->codec) != HINGE_OK) {
            fprintf(stderr, "split_generate: --wire must be f32, f16 or q8\n");
            rc = -1;
        }
        break;
    case O_CUT: rc = num(v, "cut", 0, 4096, &d); a->cut = (uint32_t)d; break;
    case 'n': rc = num(v, "n", 1, 1 << 20, &d); a->n_new = (uint32_t)d; break;
    case O_PTOK: rc = num(v, "prompt-tokens", 1, 1 << 20, &d); a->prompt_tokens = (uint32_t)d; break;
    case O_THREADS: rc = num(v, "threads", 1, 256, &d); a->threads = (uint32_t)d; break;
    case O_MAXSTEP: rc = num(v, "max-step", 1, 1 << 20, &d); a->max_step = (uint32_t)d; break;
    case O_PAUSE: rc = num(v, "pause-ms", 0, 60000, &d); a->pause_ms = (uint32_t)d; break;
    case O_SPIN: rc = num(v, "spin-us", 0, 100000, &d); a->spin_us = (uint32_t)d; break;
    case O_TEMP: rc = num(v, "temp", 0, 100, &d); a->sp.temp = (float)d; break;
    case O_TOPK: rc = num(v, "top-k", 0, 1 << 20, &d); a->sp.top_k = (uint32_t)d; break;
    case O_TOPP: rc = num(v, "top-p", 0, 1, &d); a->sp.top_p = (float)d; break;
    case O_SEED: rc = num(v, "seed", 0, 9007199254740992.0, &d); a->sp.seed = (uint64_t)d; break;
    default: rc = -1;
    }
    return rc;
}

static int parse_args(int argc, char **argv, args *a)
{
    *a = (args){.codec = TX_CODEC_F32, .n_new = 32, .sp = {.top_p = 1.0f}};
    int opt;
    while ((opt = getopt_long(argc, argv, "m:p:n:", long_opts, NULL)) != -1)
        if (parse_opt(opt, optarg, a) != 0)
            return -1;
    if (!a->model || (!a->prompt && !a->prompt_file) || (!a->edge && !a->local)) {
        fprintf(stderr, "usage: split_generate --model M (--edge URL [--cacert F] | --local) --cut K [--wire C]\n"
                        "       (--prompt TEXT | --prompt-file F --prompt-tokens N) [-n N] [--json] [--measure]\n");
        return -1;
    }
    return 0;
}

/* --pause-ms: sleep once after the first token (e.g. past the edge's idle
 * timeout, to exercise reconnecting). */
static void pause_once(void *user, size_t i)
{
    const args *a = user;
    if (i == 0)
        usleep(a->pause_ms * 1000u);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    enum { CAP = 1 << 20 };
    char *buf = malloc(CAP + 1);
    size_t n = buf ? fread(buf, 1, CAP, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* Tokenizes like `hinge generate`: BOS when the vocabulary asks or the prompt is empty. */
static int32_t *tokenize(const model *m, const args *a, size_t *n)
{
    char *owned = a->prompt_file ? read_file(a->prompt_file) : NULL;
    const char *text = owned ? owned : (a->prompt ? a->prompt : "");
    size_t len = strlen(text), cap = len + 2;
    int32_t *tok = malloc(cap * sizeof *tok);
    bool bos = tok_add_bos(m->tok) || len == 0;
    if (!tok || tok_encode(m->tok, text, len, bos, true, tok, cap, n) != HINGE_OK || *n == 0) {
        free(tok);
        tok = NULL;
    } else if (a->prompt_tokens && *n >= a->prompt_tokens) {
        *n = a->prompt_tokens;
    } else if (a->prompt_tokens) {
        fprintf(stderr, "split_generate: the prompt has only %zu tokens\n", *n);
        free(tok);
        tok = NULL;
    }
    free(owned);
    return tok;
}

static char *detokenize(const model *m, const int32_t *prompt, size_t n_prompt, const split_result *r)
{
    size_t cap = r->n_gen * 64 + 1, len = 0;
    char *text = calloc(cap, 1);
    int32_t prev = prompt[n_prompt - 1];
    for (size_t i = 0; text && i < r->n_gen; i++) {
        bool strip = prev == tok_bos(m->tok) && tok_adds_space_prefix(m->tok);
        len += tok_piece(m->tok, r->tokens[i], strip, text + len, cap - 1 - len);
        prev = r->tokens[i];
    }
    return text;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of the decode steps' wall times (sorts them). */
static double quantile(const split_result *r, double q)
{
    if (!r->decode_steps)
        return 0.0;
    qsort(r->step_us, r->decode_steps, sizeof r->step_us[0], cmp_double);
    return r->step_us[(size_t)(q * (double)(r->decode_steps - 1) + 0.5)];
}

/* Per decode step (one position): where the time went, and the bytes. */
static json_t *decode_json(const split_result *r)
{
    double n = r->decode_steps ? (double)r->decode_steps : 1.0;
    const tx_timing *t = &r->decode_wire;
    double p50 = quantile(r, 0.5), p90 = quantile(r, 0.9);
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "tpot_us", r->decode_us / n,
                     "tpot_p50_us", p50, "tpot_p90_us", p90, "device_us",
                     (double)r->decode_device_us / n, "encode_us", (double)t->encode_us / n, "request_us",
                     (double)t->request_us / n, "edge_us", (double)t->edge_us / n, "queue_us",
                     (double)t->queue_us / n, "network_us", (double)t->network_us / n, "uplink_bytes",
                     (double)t->uplink_bytes / n, "downlink_bytes", (double)t->downlink_bytes / n);
}

static json_t *ids_json(const int32_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static void print_json(const args *a, const int32_t *prompt, size_t n_prompt, const split_result *r,
                       const char *text)
{
    json_t *j = json_pack("{s:s, s:I, s:s, s:I, s:I, s:s?, s:f, s:o, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "mode",
                          a->local ? "local" : "edge", "cut", (json_int_t)a->cut, "wire", tx_codec_name(a->codec),
                          "prompt_tokens", (json_int_t)n_prompt, "generated", (json_int_t)r->n_gen, "text", text,
                          "ttft_us", r->ttft_us, "decode", decode_json(r), "uplink_bytes",
                          (json_int_t)r->wire.uplink_bytes, "downlink_bytes", (json_int_t)r->wire.downlink_bytes,
                          "connects", (json_int_t)r->stats.connects, "tls_handshakes",
                          (json_int_t)r->stats.tls_handshakes, "requests", (json_int_t)r->stats.requests, "tokens",
                          ids_json(r->tokens, r->n_gen), "prompt_ids", ids_json(prompt, n_prompt));
    if (j && a->measure) {
        json_object_set_new(j, "positions", json_integer((json_int_t)r->positions));
        json_object_set_new(j, "agree", json_integer((json_int_t)r->agree));
        json_object_set_new(j, "edge_mismatch", json_integer((json_int_t)r->edge_mismatch));
        json_object_set_new(j, "max_logit_diff", json_real(r->max_logit_diff));
    }
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    printf("%s\n", s ? s : "{\"error\":\"cannot build the summary (text not UTF-8?)\"}");
    free(s);
    json_decref(j);
}

int main(int argc, char **argv)
{
    args a;
    if (parse_args(argc, argv, &a) != 0)
        return 2;
    char err[HINGE_ERRMSG_MAX];
    model *m = NULL;
    threadpool *tp = NULL;
    if (model_load(a.model, true, NULL, &m, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "split_generate: %s\n", err);
        return 1;
    }
    int rc = 1;
    size_t n_prompt = 0;
    int32_t *prompt = tokenize(m, &a, &n_prompt);
    split_result r = {0};
    if (!prompt || tp_create((int)a.threads, &tp) != HINGE_OK) {
        fprintf(stderr, "split_generate: cannot tokenize the prompt or start threads\n");
        goto done;
    }
    split_opts o = {.m = m, .tp = tp, .edge_url = a.local ? NULL : a.edge, .cacert = a.cacert, .cut = a.cut,
                    .codec = a.codec, .prompt = prompt, .n_prompt = n_prompt, .n_new = a.n_new, .sp = a.sp,
                    .max_step = a.max_step, .ignore_eos = a.ignore_eos, .measure = a.measure,
                    .on_token = a.pause_ms ? pause_once : NULL, .user = &a, .spin_us = a.spin_us};
    hinge_status s = split_run(&o, &r);
    if (s != HINGE_OK) {
        fprintf(stderr, "split_generate: %s (%s)\n", r.err, hinge_strerror(s));
        goto done;
    }
    char *text = detokenize(m, prompt, n_prompt, &r);
    if (a.json)
        print_json(&a, prompt, n_prompt, &r, text);
    else
        fputs(text ? text : "", stdout);
    free(text);
    rc = 0;
done:
    split_result_free(&r);
    free(prompt);
    tp_destroy(tp);
    model_free(m);
    return rc;
}
