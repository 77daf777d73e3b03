/* hinge generate --cut auto: the partitioner picks k and the wire codec for
 * this request from the device and edge profiles and the channel: the live
 * estimate of earlier runs against the same edge when there is one, else the
 * --channel profile. Each step's timing then refines the estimate, which is
 * saved for the next run. */
#ifndef HINGE_CLI_AUTO_H
#define HINGE_CLI_AUTO_H

#include <stdint.h>

#include "cli.h"
#include "gen.h"

enum { CUT_AUTO = -2 }; /* opts.cut for --cut auto */

typedef struct cut_auto cut_auto;

/* Decides k (into gc->cut) and the codec (gc->codec) for a prompt of
 * n_prompt tokens and o->n_new new ones; prints the choice to stderr with
 * --verbose. With an edge, client (a client of o->edge) first asks it for
 * GET /v1/profile: the edge's model must be ours, its load goes into the
 * decision, and so does the profile it serves unless --edge-profile names
 * one; an edge that cannot be reached leaves k = N (a warning on stderr).
 * Returns -1 with a message on stderr when the inputs are missing or bad.
 * *out (may stay NULL without an edge) must be passed to cut_auto_finish. */
int cut_auto_decide(const engine *e, const opts *o, uint32_t n_prompt, tx_client *client, gen_config *gc,
                    cut_auto **out);
/* Adds one step's timing to the live channel estimate. NULL a is a no-op. */
void cut_auto_observe(cut_auto *a, const gen_timing *t);
/* Saves the estimate for the next run and frees a. NULL is a no-op. */
void cut_auto_finish(cut_auto *a);

#endif
