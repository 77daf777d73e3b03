/* device: the session driver behind libhinge's public API. Private to device/.
 *
 *   api.c       the library and the model: version, errors, load, tokens
 *   session.c   create/free, one step through both halves, logits, reset
 *   generate.c  hinge_generate: prompt, prefill, the decode loop, stats
 *   chat.c      hinge_chat_format, hinge_chat: messages through the model's
 *               chat template (model/chat.c), then hinge_generate
 *   auto.c      HINGE_CUT_AUTO: the partitioner's decision and the live
 *               channel estimate
 *   recover.c   failover: a new edge session with the prefix replayed, or
 *               the rest of the layers on this device
 *   speculate.c speculative lookahead across the split: drafts, one verify
 *               step, what is accepted
 *   profile.c   hinge_profile_measure;  plan.c  hinge_partition_plan
 *
 * Threads: a session belongs to the thread calling into it; only `cancel`
 * is touched by others (atomically). A hinge_model is read-only after load
 * except its sha256, which is computed once under hash_mu. */
#ifndef HINGE_DEVICE_SESSION_IMPL_H
#define HINGE_DEVICE_SESSION_IMPL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "clock.h"
#include "forward.h"
#include "hinge/hinge.h"
#include "model.h"
#include "partition.h"
#include "tail.h"
#include "threadpool.h"
#include "transport.h"

#ifdef HINGE_HAVE_VULKAN
#include "vk_context.h"
#include "vk_exec.h"
#else
typedef struct dev_ctx dev_ctx;
typedef struct vk_exec vk_exec;
#endif

struct hinge_model {
    model *m;
    hinge_logger lg;
    pthread_mutex_t hash_mu;
    atomic_bool hashed; /* m->sha256 is set */
};

struct hinge_session {
    hinge_model *hm;       /* borrowed */
    const model *m;
    hinge_session_config cfg; /* the caller's, strings copied below */
    char **edges;          /* edge_url, then fallback_edges: owned copies */
    uint32_t n_edges;
    int edge_i;            /* the edge in use (index into edges); -1: none */
    char *edge_url;        /* edges[edge_i], or NULL */
    char *ca_file;         /* owned copy */
    char *api_key;         /* owned copy; NULL: none */
    char *channel_cache;   /* owned copy; cfg.channel_cache points at it */
    char *chat_template;   /* owned copy; cfg.chat_template points at it */
    hinge_logger lg;
    threadpool *tp;
    uint32_t cut;          /* layers [0, cut) here */
    tx_codec codec;
    uint32_t ctx;
    bool remote;           /* layers [cut, N) on the edge */
    uint32_t pj;           /* private head J (cfg.private_head when the run is split, else 0): the edge's
                              layers are [cut, N - J), and head runs [N - J, N), the head and the sampler */
    uint64_t noise_seed;   /* cfg.noise_seed, or a random one */
    /* front */
    fwd_ctx *front;        /* CPU: [0, cut) */
    dev_ctx *vk;           /* Vulkan: [0, cut) */
    vk_exec *vx;
    float *hidden;         /* (ctx, n_embd): the boundary rows of a step, then the tail's output */
    /* tail, in-process */
    tail *tail;            /* [cut, N - pj) */
    tail *head;            /* the private head (pj > 0): [N - pj, N), the head, the sampler; kept by failover */
    uint8_t *frame;        /* the emulated wire (codec != f32, no edge): one frame of ctx rows */
    size_t frame_cap;
    /* tail, on the edge */
    tx_client *client;
    tx_session *sess;
    part_chan_est *est;    /* HINGE_CUT_AUTO with an edge: the live channel estimate */
    struct auto_inputs *ai; /* ... and the rest of the decision's inputs, to decide again (re-cut) */
    uint32_t since_recut;  /* decode steps since the cut was last weighed */
    uint32_t left;         /* tokens the running hinge_generate may still make (0: unknown) */
    /* conversation */
    uint32_t pos;          /* next position */
    int32_t pending;       /* sampled and shown, not yet fed; -1: none */
    size_t last_n;         /* rows of the last step (logits) */
    int32_t *tokens;       /* (ctx + 1): the prompt of a hinge_generate call */
    int32_t *hist;         /* (ctx): every token fed, position by position: what a failover replays */
    uint64_t samples;      /* tokens sampled so far (a rebuilt sampler skips as many) */
    double decode_ms;      /* recent average of a decode step's request time (0: none seen yet) */
    uint32_t resumed_pos;  /* the position a resume was last tried at (+1; 0: never) */
    bool chat_open;        /* the last call was hinge_chat: its reply's turn is not closed yet */
    /* speculative lookahead (speculate.c); only with an edge */
    uint32_t spec_max;     /* most drafts per step: cfg.speculate, at most TX_VERIFY_MAX - 1; 0: off */
    double spec_alpha;     /* moving average of a draft's acceptance */
    double spec_net_ms;    /* moving averages (-1: none yet): network + queue of a decode step, */
    double spec_c1_ms;     /* the compute (device + edge) of a one-row step, */
    double spec_row_ms;    /* and what each further row of a verify step adds */
    uint64_t spec_steps;   /* decode steps observed */
    int32_t spec_rows[TX_VERIFY_MAX]; /* the last accepted token, then the drafts */
    int32_t spec_out[TX_VERIFY_MAX];  /* the edge's sample of each row */
    atomic_bool cancel;
    hinge_step_cb step_cb;
    void *step_user;
    hinge_stats stats;
    uint64_t bytes;        /* what create allocated */
    char err[HINGE_ERRMSG_MAX];
};

/* Sets this thread's hinge_last_error() and returns s. */
hinge_status api_fail(hinge_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The model's sha256, computed once (api.c). */
hinge_status api_model_hash(hinge_model *hm, char *err, size_t errlen);

/* The session's parts (session.c), for recover.c. */
hinge_status sess_run_front(hinge_session *s, const int32_t *tokens, size_t n, uint32_t pos0);
hinge_status sess_open_front(hinge_session *s);
void sess_close_front(hinge_session *s);
hinge_status sess_open_local_tail(hinge_session *s, bool wire);
hinge_status sess_open_client(hinge_session *s);
/* A new edge session at s->cut; its sampler discards skip draws first (a
 * resumed stream: failover). */
hinge_status sess_open_edge_session(hinge_session *s, uint64_t skip);
hinge_status sess_through_codec(hinge_session *s, size_t n, uint32_t pos0);
/* The private head's replay step: n rows of [0, pos) to the edge and back
 * (their output discarded: the head's own KV cache holds them already). */
hinge_status sess_replay_rows(hinge_session *s, uint32_t n);

/* Failover after a step failed with st (recover.c): a new edge session
 * with the prefix [0, pos) replayed, or the local tail rebuilt. HINGE_OK
 * when the step can be run again; st (or the last error) otherwise. */
bool recover_can(hinge_status st);
hinge_status recover(hinge_session *s, hinge_status st);
/* Re-cut (recover.c): between two steps, the device's layers become
 * [0, k) and the edge's [k, N) with wire codec c (k = N: all here). */
hinge_status recut(hinge_session *s, uint32_t k, tx_codec c);

/* One step (session.c): tokens at positions pos.., both halves, *next
 * sampled. Detail of a failure in s->err. */
hinge_status sess_step(hinge_session *s, const int32_t *tokens, size_t n, int32_t *next, hinge_step_info *info);

/* hinge_generate without its argument checks (generate.c): hinge_chat's
 * generation. Sets hinge_last_error on failure. */
hinge_status gen_text(hinge_session *s, const char *prompt, int max_tokens, hinge_token_cb cb, void *user);

/* A transport step's timing into t (network, edge, queue, bytes, requests). */
void sess_timing(hinge_step_info *t, const tx_timing *tt);

/* Speculative lookahead (speculate.c). Drafts up to max tokens to follow
 * ctx[0..n) by prompt lookup; returns how many (0: no earlier match). */
size_t spec_draft(const int32_t *ctx, size_t n, int32_t *out, size_t max);
/* One decode step of an edge session: last at s->pos, with up to max
 * drafts when they pay. out[0 .. *n_out) (at most TX_VERIFY_MAX) are the
 * tokens it yields: the accepted drafts, fed already, then the sampled one,
 * not yet fed. Errors as sess_step. */
hinge_status spec_step(hinge_session *s, int32_t last, size_t max, int32_t *out, size_t *n_out, hinge_step_info *t);

/* HINGE_CUT_AUTO (auto.c): decides s->cut, s->codec and s->remote for a
 * prompt of n_prompt tokens; client (may be NULL: no edge) is asked for the
 * edge's profile and load first. Creates s->est when the decision is to
 * split. Detail in err. */
hinge_status auto_decide(hinge_session *s, uint32_t n_prompt, char *err, size_t errlen);
/* The model's privacy profile at path (max_recovery): it must be hm's
 * (its sha256). Detail in err. */
hinge_status auto_load_privacy(hinge_model *hm, const char *path, part_privacy *p, char *err, size_t errlen);
/* A fixed cut under cfg.max_recovery: HINGE_ERR_INVALID when the privacy
 * profile does not show its (cut, codec, noise) within the policy. */
hinge_status auto_check_privacy(hinge_session *s, char *err, size_t errlen);
/* Adds one step's timing to s->est (NULL est: nothing). */
void auto_observe(hinge_session *s, const hinge_step_info *t);
/* After a decode step: now and then, the decision again for the tokens
 * left with the live estimate; moves the cut (recut) when another wins
 * by a margin. */
void auto_reconsider(hinge_session *s);
/* Saves s->est to cfg.channel_cache and frees it (and s->ai). */
void auto_finish(hinge_session *s);

#endif
