/* device: hinge_profile_measure's state, shared by profile.c (the CPU
 * engine, the head, the codecs, the HTTP/2 overhead and the profile
 * document) and profile_vk.c (the Vulkan executor). Private to device/. */
#ifndef HINGE_DEVICE_PROFILE_IMPL_H
#define HINGE_DEVICE_PROFILE_IMPL_H

#include "session_impl.h"

enum {
    PROF_PASS = 64,         /* positions per pass of the engines (PART_ENGINE_PASS) */
    PROF_REPS = 7,          /* runs of one measurement; the median counts */
    PROF_N_DEC = 4,         /* decode contexts measured */
    PROF_MIN_CTX = 64,
    PROF_MAX_CTX = 4096,
    PROF_MAX_PASSES = 1024, /* >= PROF_MAX_CTX / the smallest pass size */
};

typedef struct prof {
    hinge_model *hm;           /* borrowed */
    const model *m;
    hinge_profile_config cfg;  /* the caller's, with the defaults */
    threadpool *tp;
    uint32_t ctx, d;           /* positions measured; n_embd */
    uint32_t dec_pos[PROF_N_DEC];
    uint32_t n_pass;           /* prefill passes covering [0, ctx) */
    uint32_t pass_pos[PROF_MAX_PASSES], pass_n[PROF_MAX_PASSES];
    int32_t *tok;              /* ctx synthetic token ids */
    float *h;                  /* (ctx, d) */
    float *row;                /* d */
    part_compute pc;           /* what is measured, becoming the profile */
    double first_use_us;       /* Vulkan: a new executor's first pass over its warm-up */
    char err[HINGE_ERRMSG_MAX];
} prof;

/* Sets p->err to "what: msg" (msg may be p->err) and returns s. */
hinge_status prof_fail(prof *p, const char *what, hinge_status s, const char *msg);

/* Fits layer il's costs from its prefill pass times (pass_us[j] for
 * p->pass_pos/pass_n[j]) and decode step times (dec_us[i] at
 * p->dec_pos[i]) into p->pc.meas.layer[il] (first_touch_us aside). */
void prof_fit_layer(prof *p, uint32_t il, const double *pass_us, const double *dec_us);

#ifdef HINGE_HAVE_VULKAN
/* Every layer on the Vulkan executor (profile_vk.c): fills the layers'
 * costs, first_touch_us, step_us and embed_us_per_pos. Detail in p->err. */
hinge_status prof_vk_layers(prof *p);
#endif

#endif
