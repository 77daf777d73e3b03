/* hinge experiment privacy: what the edge can learn of the prompt from the
 * boundary activations, per cut, wire codec and noise strength, and what
 * each defence costs (docs/privacy.md).
 *
 *   hinge experiment privacy --model M --cuts LIST --codecs LIST --noise LIST --out DIR
 *
 * writes DIR/privacy.csv (one row per cell), DIR/privacy.json (the summary,
 * also the model's privacy profile for the partitioner: profiles/privacy/)
 * and the PNG plots (scripts/privacy-plot). The attack is privacy_attack.h,
 * the cost privacy_utility.h. */
#include <errno.h>
#include <getopt.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "privacy_attack.h"
#include "privacy_utility.h"

#ifndef HINGE_PRIVACY_PLOT
#define HINGE_PRIVACY_PLOT "scripts/privacy-plot"
#endif
#ifndef HINGE_PRIVACY_DATA
#define HINGE_PRIVACY_DATA "tests/data"
#endif

enum { MAX_LIST = 64, MAX_PROMPTS = 4096, MAX_FILE = 16 << 20, BATCH = 64 };

typedef struct opts {
    const char *model, *out, *prompts, *passage, *calib;
    uint32_t cuts[MAX_LIST], n_cuts;
    hinge_wire codecs[MAX_LIST];
    uint32_t n_codecs;
    float noise[MAX_LIST];
    uint32_t n_noise;
    uint32_t n_prompts, max_len, first, max_cand, threads, gen, window;
    uint64_t seed;
    bool plots, utility;
} opts;

enum { O_CUTS = 256, O_CODECS, O_NOISE, O_OUT, O_PROMPTS, O_N_PROMPTS, O_PASSAGE, O_MAX_LEN, O_FIRST, O_MAX_CAND,
       O_THREADS, O_GEN, O_SEED, O_NO_PLOTS, O_NO_UTILITY, O_WINDOW, O_CALIB };

static const struct option OPTIONS[] = {
    {"model", required_argument, NULL, 'm'},          {"cuts", required_argument, NULL, O_CUTS},
    {"codecs", required_argument, NULL, O_CODECS},    {"noise", required_argument, NULL, O_NOISE},
    {"out", required_argument, NULL, O_OUT},          {"prompts", required_argument, NULL, O_PROMPTS},
    {"n-prompts", required_argument, NULL, O_N_PROMPTS}, {"passage", required_argument, NULL, O_PASSAGE},
    {"max-len", required_argument, NULL, O_MAX_LEN},  {"first", required_argument, NULL, O_FIRST},
    {"max-candidates", required_argument, NULL, O_MAX_CAND}, {"threads", required_argument, NULL, O_THREADS},
    {"gen", required_argument, NULL, O_GEN},          {"seed", required_argument, NULL, O_SEED},
    {"window", required_argument, NULL, O_WINDOW},    {"no-plots", no_argument, NULL, O_NO_PLOTS},
    {"no-utility", no_argument, NULL, O_NO_UTILITY},  {"calib", required_argument, NULL, O_CALIB},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hinge experiment privacy [--model M] --cuts LIST --codecs LIST --noise LIST --out DIR\n"
            "         [--prompts FILE] [--n-prompts N] [--max-len N] [--first N] [--max-candidates N]\n"
            "         [--passage FILE] [--calib FILE] [--gen N] [--window N] [--seed S] [--threads N] [--no-utility] [--no-plots]\n"
            "  --cuts 0,1,2      layers on the device (k: the edge sees the rows after layer k-1)\n"
            "  --codecs f32,q8   wire codecs\n"
            "  --noise 0,0.5     noise std relative to each row's RMS (0: none)\n"
            "  --prompts FILE    one prompt a line (default the source tree's tests/data/privacy-prompts.txt);\n"
            "                    --n-prompts N: the first N\n"
            "  --max-len N       tokens per prompt at most, BOS included (default 64)\n"
            "  --first N         candidates of the attack's first round (default 16)\n"
            "  --max-candidates N  candidates per position at most (default: the vocabulary)\n"
            "  --passage FILE    text for the perplexity cost (default tests/data/passage.txt)\n"
            "  --calib FILE      the attacker's own text for fitting its ranking (default: the passage)\n"
            "  --gen N           tokens of the greedy-agreement run (default 200)\n"
            "  --no-utility      attack only;  --no-plots: CSV and JSON only\n");
}

/* Comma-separated list into out (at most MAX_LIST); one(item) parses one. */
typedef int (*item_fn)(const char *s, void *out, uint32_t i);

static int parse_list(const char *arg, const char *what, item_fn one, void *out, uint32_t *n)
{
    char buf[1024];
    if (strlen(arg) >= sizeof buf) {
        fprintf(stderr, "hinge: %s: list too long\n", what);
        return -1;
    }
    strcpy(buf, arg);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_LIST || one(t, out, *n) != 0)
            return -1;
        (*n)++;
    }
    if (*n == 0)
        fprintf(stderr, "hinge: %s: empty list\n", what);
    return *n ? 0 : -1;
}

static int one_cut(const char *s, void *out, uint32_t i) { return cli_u32(s, "--cuts", 4096, (uint32_t *)out + i); }
static int one_codec(const char *s, void *out, uint32_t i) { return cli_wire(s, (hinge_wire *)out + i); }
static int one_noise(const char *s, void *out, uint32_t i) { return cli_f32(s, "--noise", 0.0f, 100.0f, (float *)out + i); }

static int one_opt(int c, const char *arg, void *user)
{
    opts *o = user;
    switch (c) {
    case 'm': o->model = arg; return 0;
    case O_CUTS: return parse_list(arg, "--cuts", one_cut, o->cuts, &o->n_cuts);
    case O_CODECS: return parse_list(arg, "--codecs", one_codec, o->codecs, &o->n_codecs);
    case O_NOISE: return parse_list(arg, "--noise", one_noise, o->noise, &o->n_noise);
    case O_OUT: o->out = arg; return 0;
    case O_PROMPTS: o->prompts = arg; return 0;
    case O_N_PROMPTS: return cli_u32(arg, "--n-prompts", MAX_PROMPTS, &o->n_prompts);
    case O_PASSAGE: o->passage = arg; return 0;
    case O_CALIB: o->calib = arg; return 0;
    case O_MAX_LEN: return cli_u32(arg, "--max-len", 4096, &o->max_len);
    case O_FIRST: return cli_u32(arg, "--first", 1u << 20, &o->first);
    case O_MAX_CAND: return cli_u32(arg, "--max-candidates", 1u << 24, &o->max_cand);
    case O_THREADS: return cli_u32(arg, "--threads", 256, &o->threads);
    case O_GEN: return cli_u32(arg, "--gen", 4096, &o->gen);
    case O_WINDOW: return cli_u32(arg, "--window", 1u << 16, &o->window);
    case O_SEED: return cli_u64(arg, "--seed", &o->seed);
    case O_NO_PLOTS: o->plots = false; return 0;
    case O_NO_UTILITY: o->utility = false; return 0;
    default: return -1;
    }
}

/* ---- inputs ---- */

typedef struct prompt_set {
    int32_t *tok;     /* (n, max_len) */
    uint32_t *len;    /* (n) */
    uint32_t n;
} prompt_set;

static hinge_status load_prompts(hinge_model *m, const opts *o, prompt_set *ps)
{
    size_t len = 0;
    char *text = cli_read_file(o->prompts, MAX_FILE, &len);
    if (!text)
        return HINGE_ERR_IO;
    uint32_t cap = o->n_prompts ? o->n_prompts : MAX_PROMPTS;
    ps->tok = malloc((size_t)cap * o->max_len * sizeof *ps->tok);
    ps->len = malloc(cap * sizeof *ps->len);
    int32_t *buf = malloc((len + 2) * sizeof *buf);
    hinge_status st = ps->tok && ps->len && buf ? HINGE_OK : HINGE_ERR_NOMEM;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); st == HINGE_OK && line && ps->n < cap;
         line = strtok_r(NULL, "\n", &save)) {
        size_t n = 0;
        if (!*line)
            continue;
        if ((st = hinge_tokenize(m, line, strlen(line), 1, buf, len + 2, &n)) != HINGE_OK)
            break;
        ps->len[ps->n] = (uint32_t)(n < o->max_len ? n : o->max_len);
        memcpy(ps->tok + (size_t)ps->n * o->max_len, buf, ps->len[ps->n] * sizeof *buf);
        ps->n++;
    }
    free(buf);
    free(text);
    if (st == HINGE_OK && ps->n == 0)
        st = HINGE_ERR_FORMAT;
    return st;
}

/* ---- one cell ---- */

typedef struct cell {
    uint32_t cut;
    hinge_wire wire;
    float noise;
    uint32_t positions, recovered, exact, widened;
    uint64_t candidates;
    double attack_s, ppl, ppl_cost, agreement;
    bool utility;
} cell;

typedef struct run_ctx {
    const opts *o;
    hinge_model *hm;
    const model *m;
    atk *a;
    prompt_set ps;
    int32_t *passage, *ref;
    size_t n_passage;
    double base_ppl;
    FILE *csv;
    json_t *cells;
} run_ctx;

static hinge_status attack_cell(run_ctx *r, cell *c, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < r->ps.n; i++) {
        atk_params p = {.cut = c->cut, .codec = (tx_codec)(c->wire + 1), .noise = c->noise,
                        .noise_seed = r->o->seed + i, .first = r->o->first, .max_cand = r->o->max_cand};
        atk_result res;
        hinge_status st = atk_run(r->a, &p, r->ps.tok + (size_t)i * r->o->max_len, r->ps.len[i], &res, err, errlen);
        if (st != HINGE_OK)
            return st;
        c->positions += res.positions;
        c->recovered += res.recovered;
        c->exact += res.recovered == res.positions;
        c->widened += res.widened;
        c->candidates += res.candidates;
        c->attack_s += res.seconds;
    }
    return HINGE_OK;
}

static hinge_status utility_cell(run_ctx *r, cell *c)
{
    c->utility = true;
    if (c->wire == HINGE_WIRE_F32 && c->noise == 0.0f) { /* the f32 wire is exact: the undefended run, bitwise */
        c->ppl = r->base_ppl;
        c->agreement = 1.0;
        return HINGE_OK;
    }
    util_defence d = {.cut = (int)c->cut, .wire = c->wire, .noise = c->noise, .seed = r->o->seed,
                      .threads = (int)r->o->threads};
    hinge_status st = util_perplexity(r->hm, &d, r->passage, r->n_passage, r->o->window, &c->ppl);
    if (st == HINGE_OK)
        st = util_agreement(r->hm, &d, r->ps.tok, r->ps.len[0], r->ref, r->o->gen, &c->agreement);
    return st;
}

static void emit(run_ctx *r, const cell *c)
{
    double rec = c->positions ? (double)c->recovered / c->positions : 0.0;
    double exact = (double)c->exact / r->ps.n, per = c->positions ? c->attack_s / c->positions : 0.0;
    double cand = c->positions ? (double)c->candidates / c->positions : 0.0;
    double ppl_cost = c->utility ? c->ppl / r->base_ppl - 1.0 : 0.0;
    fprintf(r->csv, "%u,%s,%g,%.6f,%.6f,%u,%u,%.6g,%.1f,%u", c->cut, cli_wire_name(c->wire), (double)c->noise, rec,
            exact, c->positions, r->ps.n, per, cand, c->widened);
    if (c->utility)
        fprintf(r->csv, ",%.6f,%.6f,%.6f\n", c->ppl, ppl_cost, c->agreement);
    else
        fprintf(r->csv, ",,,\n");
    fflush(r->csv);
    char noise[32];
    snprintf(noise, sizeof noise, "%g", (double)c->noise); /* 0.01, not the float's 0.0099999998 */
    json_t *j = json_pack("{s:i, s:s, s:f, s:f, s:f, s:i, s:f, s:f, s:i}", "cut", (int)c->cut, "codec",
                          cli_wire_name(c->wire), "noise", strtod(noise, NULL), "token_recovery", rec, "exact_prompt",
                          exact, "positions", (int)c->positions, "attack_s_per_position", per,
                          "candidates_per_position", cand, "widened", (int)c->widened);
    if (j && c->utility) {
        json_object_set_new(j, "ppl", json_real(c->ppl));
        json_object_set_new(j, "ppl_cost", json_real(ppl_cost));
        json_object_set_new(j, "greedy_agreement", json_real(c->agreement));
    }
    json_array_append_new(r->cells, j);
    fprintf(stderr, "privacy: k=%u %s noise %g: recovery %.3f, exact %.3f, %.3g s/position, %.0f candidates/position%s",
            c->cut, cli_wire_name(c->wire), (double)c->noise, rec, exact, per, cand, c->utility ? "" : "\n");
    if (c->utility)
        fprintf(stderr, ", ppl %.3f (%+.1f%%), agreement %.3f\n", c->ppl, 100.0 * ppl_cost, c->agreement);
}

/* ---- outputs ---- */

static int write_summary(run_ctx *r)
{
    hinge_model_info mi;
    hinge_model_get_info(r->hm, &mi);
    char sha[65] = "";
    if (hinge_model_sha256(r->hm, sha) != HINGE_OK)
        return cli_fail("model sha256", HINGE_ERR_IO);
    size_t positions = 0;
    for (uint32_t i = 0; i < r->ps.n; i++)
        positions += r->ps.len[i];
    json_t *j = json_pack(
        "{s:s, s:i, s:s, s:s, s:i, s:i, s:{s:s, s:i, s:i, s:i, s:i, s:i}, s:{s:b, s:f, s:i, s:i}, s:O}",
        "kind", "hinge-privacy-profile", "version", 1, "model", mi.name, "sha256", sha, "n_layer", (int)mi.n_layer,
        "n_vocab", (int)mi.n_vocab, "attack", "prompts_file", r->o->prompts, "prompts", (int)r->ps.n, "tokens",
        (int)positions, "max_len", (int)r->o->max_len, "first", (int)r->o->first, "max_candidates",
        (int)(r->o->max_cand ? r->o->max_cand : mi.n_vocab), "utility", "measured", r->o->utility, "baseline_ppl",
        r->base_ppl, "gen_tokens", (int)r->o->gen, "passage_tokens", (int)r->n_passage, "cells", r->cells);
    char path[4096];
    snprintf(path, sizeof path, "%s/privacy.json", r->o->out);
    int rc = j && json_dump_file(j, path, JSON_INDENT(1)) == 0 ? 0 : 1;
    if (rc)
        fprintf(stderr, "hinge: cannot write %s\n", path);
    json_decref(j);
    return rc;
}

static int make_plots(const opts *o)
{
    const char *script = getenv("HINGE_PRIVACY_PLOT");
    script = script ? script : HINGE_PRIVACY_PLOT;
    /* Debian's python3 (where apt puts matplotlib) before whatever python3 is first on PATH */
    const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    char *argv[] = {(char *)py, (char *)script, (char *)o->out, NULL};
    pid_t pid;
    extern char **environ;
    int e = posix_spawnp(&pid, py, NULL, NULL, argv, environ), status = 0;
    if (e != 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "hinge: the plots failed (%s %s; python3-matplotlib: scripts/setup)\n", script,
                e ? strerror(e) : "exited with an error");
        return 1;
    }
    return 0;
}

/* ---- main ---- */

static hinge_status prepare_utility(run_ctx *r)
{
    size_t len = 0;
    char *text = cli_read_file(r->o->passage, MAX_FILE, &len);
    if (!text)
        return HINGE_ERR_IO;
    r->passage = malloc((len + 1) * sizeof *r->passage);
    r->ref = malloc((r->o->gen + 1) * sizeof *r->ref);
    hinge_status st = r->passage && r->ref ? HINGE_OK : HINGE_ERR_NOMEM;
    if (st == HINGE_OK)
        st = hinge_tokenize(r->hm, text, len, 0, r->passage, len + 1, &r->n_passage);
    free(text);
    util_defence none = {.cut = HINGE_CUT_ALL, .threads = (int)r->o->threads};
    if (st == HINGE_OK)
        st = util_perplexity(r->hm, &none, r->passage, r->n_passage, r->o->window, &r->base_ppl);
    if (st == HINGE_OK)
        st = util_greedy(r->hm, (int)r->o->threads, r->ps.tok, r->ps.len[0], r->o->gen, r->ref);
    return st;
}

static int run_all(run_ctx *r)
{
    const opts *o = r->o;
    char err[512] = "", path[4096];
    hinge_status st = load_prompts(r->hm, o, &r->ps);
    if (st != HINGE_OK)
        return cli_fail("reading the prompts", st);
    if (o->utility && (st = prepare_utility(r)) != HINGE_OK)
        return cli_fail("the undefended baseline", st);
    snprintf(path, sizeof path, "%s/privacy.csv", o->out);
    if (!(r->csv = fopen(path, "w"))) {
        fprintf(stderr, "hinge: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(r->csv, "cut,codec,noise,token_recovery,exact_prompt,positions,prompts,attack_s_per_position,"
                    "candidates_per_position,widened,ppl,ppl_cost,greedy_agreement\n");
    for (uint32_t i = 0; i < o->n_cuts; i++)
        for (uint32_t j = 0; j < o->n_codecs; j++)
            for (uint32_t k = 0; k < o->n_noise; k++) {
                cell c = {.cut = o->cuts[i], .wire = o->codecs[j], .noise = o->noise[k]};
                if ((st = attack_cell(r, &c, err, sizeof err)) != HINGE_OK) {
                    fprintf(stderr, "hinge: attack at k=%u: %s\n", c.cut, err);
                    return 1;
                }
                if (o->utility && (st = utility_cell(r, &c)) != HINGE_OK)
                    return cli_fail("the defence's cost", st);
                emit(r, &c);
            }
    if (write_summary(r) != 0)
        return 1;
    return o->plots ? make_plots(o) : 0;
}

int main(int argc, char **argv)
{
    opts o = {.prompts = HINGE_PRIVACY_DATA "/privacy-prompts.txt", .passage = HINGE_PRIVACY_DATA "/passage.txt",
              .max_len = 64,
              .first = 16, .gen = 200, .window = 512, .seed = 1, .plots = true, .utility = true};
    int rc = cli_getopt(argc, argv, "experiment privacy", "m:h", OPTIONS, one_opt, &o, usage);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    if (!o.n_cuts || !o.n_codecs || !o.n_noise || !o.out || o.max_len < 2) {
        fprintf(stderr, "hinge: experiment privacy needs --cuts, --codecs, --noise and --out\n");
        usage(stderr);
        return 2;
    }
    if (!o.model)
        o.model = cli_default_model();
    if (mkdir(o.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "hinge: cannot create %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    run_ctx r = {.o = &o, .cells = json_array()};
    char err[512] = "";
    threadpool *tp = NULL;
    model *m = NULL;
    rc = 1;
    if (cli_load_model(o.model, false, &r.hm) != 0)
        goto out;
    hinge_model_info mi;
    hinge_model_get_info(r.hm, &mi);
    for (uint32_t i = 0; i < o.n_cuts; i++)
        if (o.cuts[i] > mi.n_layer) {
            fprintf(stderr, "hinge: cut %u is over the model's %u layers\n", o.cuts[i], mi.n_layer);
            goto out;
        }
    size_t n_calib = 0, calib_len = 0;
    char *calib_text = cli_read_file(o.calib ? o.calib : o.passage, MAX_FILE, &calib_len);
    int32_t *calib = calib_text ? malloc((calib_len + 1) * sizeof *calib) : NULL;
    if (!calib || hinge_tokenize(r.hm, calib_text, calib_len, 0, calib, calib_len + 1, &n_calib) != HINGE_OK) {
        fprintf(stderr, "hinge: cannot read the calibration text %s\n", o.calib ? o.calib : o.passage);
        free(calib_text);
        free(calib);
        goto out;
    }
    free(calib_text);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (tp_create(o.threads ? (int)o.threads : (int)(cpus > 0 ? cpus : 1), &tp) != HINGE_OK ||
        model_load(o.model, false, NULL, &m, err, sizeof err) != HINGE_OK ||
        atk_create(m, tp, o.max_len, BATCH, calib, n_calib, &r.a, err, sizeof err) != HINGE_OK) {
        fprintf(stderr, "hinge: the attacker's model: %s\n", err);
        free(calib);
        goto out;
    }
    free(calib);
    r.m = m;
    rc = run_all(&r);
out:
    if (r.csv)
        fclose(r.csv);
    atk_destroy(r.a);
    model_free(m);
    tp_destroy(tp);
    hinge_model_free(r.hm);
    json_decref(r.cells);
    free(r.ps.tok);
    free(r.ps.len);
    free(r.passage);
    free(r.ref);
    return rc;
}
