/* hinge CLI: what the command files share. */
#ifndef HINGE_CLI_H
#define HINGE_CLI_H

#include <stdint.h>

#include "forward.h"
#include "model.h"
#include "sampler.h"
#include "threadpool.h"
#include <stdbool.h>

typedef struct opts {
    const char *model;
    const char *prompt;
    const char *file;
    uint32_t n_new;
    uint32_t ctx;
    int threads;
    sampler_params sp;
    int json;
    int ignore_eos;
    int verbose;
    int backend;        /* gen_backend */
    int64_t cut;        /* --cut / --layers K; -1: unset */
    const char *edge;   /* --edge URL */
    const char *wire;   /* --wire f32|f16|q8 */
    const char *cacert; /* --cacert FILE */
} opts;

/* Everything a command needs: model, pool, a stage context for all layers. */
typedef struct engine {
    model *m;
    threadpool *tp;
    fwd_ctx *f;
    hinge_logger lg;
    double load_s;
} engine;

/* Loads o->model and starts the thread pool; prints the reason and returns
 * -1 on failure (e is then safe to close). */
int engine_open(engine *e, const opts *o, bool hash);
/* Creates the all-layer stage context for ctx positions. */
int engine_stages(engine *e, uint32_t ctx, uint32_t max_batch);
void engine_close(engine *e);

double now_s(void);

int cmd_generate(const opts *o);
int cmd_perplexity(const opts *o);
int cmd_bench_device(const opts *o);

#endif
