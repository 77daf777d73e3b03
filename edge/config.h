/* hinge-edge's config file (--config FILE): every command-line option has
 * a key, its long name without the dashes. One setting a line:
 *
 *   # comments and blank lines are skipped
 *   model = /var/lib/hinge/gemma-3-270m.gguf
 *   listen = 0.0.0.0:8443
 *   max-sessions = 32
 *   no-measure = true        # options without a value: true or false
 *
 * Whitespace around the key and the value is dropped; a value runs to the
 * end of the line (or to a " #" comment). Options given on the command
 * line override the file's. Private to hinge-edge's main.c. */
#ifndef HINGE_EDGE_CONFIG_H
#define HINGE_EDGE_CONFIG_H

#include <getopt.h>
#include <stddef.h>

/* The file as an argv: "hinge-edge", then "--key" or "--key", "value" per
 * setting, then NULL. Freed with edge_config_free. */
typedef struct edge_config_args {
    char **argv;
    int argc;
} edge_config_args;

/* Reads path; a key not in opts, a flag's value other than true/false, a
 * missing value, or more than 256 settings or lines over 4096 bytes are
 * errors (line number in err). Returns 0, or -1 with err set. */
int edge_config_read(const char *path, const struct option *opts, edge_config_args *out, char *err, size_t errlen);

void edge_config_free(edge_config_args *a);

#endif
