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
    /* hinge profile / hinge partition */
    const char *output;         /* -o FILE: the profile written */
    const char *role;           /* --role device|edge */
    const char *name;           /* --name: the profile's name */
    const char *device_profile; /* --device FILE */
    const char *channel;        /* --channel FILE */
    const char *edge_profile;   /* --edge-profile FILE (partition also takes --edge FILE) */
    const char *edge_load;      /* --edge-load FILE: a saved GET /v1/profile reply */
    const char *codecs;         /* --codecs f32,f16,q8: the codecs the partitioner may pick */
    uint32_t prompt_len;        /* --prompt-len P (partition; 0: 128) */
    uint32_t min_cut;           /* --min-cut K: privacy floor */
    uint64_t mem_cap;           /* --mem-cap BYTES: device memory for the model; 0: the profile's */
    double energy_weight;       /* --energy-weight W: seconds per joule of device energy */
    int connected;              /* --connected: the edge connection is already open */
    int cold_start;             /* --cold-start: the device's weights are not paged in yet */
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
int cmd_profile(const opts *o);
int cmd_partition(const opts *o);

#endif
