/* hinge: the command line, on libhinge's public API alone.
 *
 * Each subcommand owns its options, its usage text and its --help; this
 * header is what they share: checked number parsing, the default model,
 * loading it with a log on stderr. Generated text goes to stdout and
 * nothing else does; diagnostics go to stderr. Exit codes: 0 success,
 * 1 failure, 2 usage error. */
#ifndef HINGE_CLI_H
#define HINGE_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <getopt.h>
#include <stdio.h>

#include <hinge/hinge.h>

#define CLI_DEFAULT_MODEL_REL ".cache/hinge/models/gemma-3-270m-q4_k_m.gguf"

/* Each parser prints "hinge: WHAT: 'S' is not ..." and returns -1 when s is
 * not a number in range; *out is written only on success. */
int cli_u32(const char *s, const char *what, uint32_t max, uint32_t *out);
int cli_u64(const char *s, const char *what, uint64_t *out);
int cli_f32(const char *s, const char *what, float lo, float hi, float *out);
int cli_f64(const char *s, const char *what, double lo, double hi, double *out);
int cli_backend(const char *s, hinge_backend *out); /* cpu | vulkan */
int cli_wire(const char *s, hinge_wire *out);       /* f32 | f16 | q8 */
const char *cli_wire_name(hinge_wire w);

/* One subcommand's options: getopt_long over argv with short and opts,
 * each option handed to one(c, optarg, user) (0: taken, else a bad value);
 * -h prints usage to stdout. Returns 0 to run, 1 after --help, 2 on a usage
 * error (printed, with usage on stderr) or a positional argument. */
typedef int (*cli_opt_fn)(int c, const char *arg, void *user);
int cli_getopt(int argc, char **argv, const char *cmd, const char *short_opts, const struct option *opts,
               cli_opt_fn one, void *user, void (*usage)(FILE *out));

/* $HINGE_MODEL, else ~/CLI_DEFAULT_MODEL_REL. */
const char *cli_default_model(void);

/* The log sink of every subcommand: "hinge: LEVEL: line" on stderr. */
void cli_log(void *user, hinge_log_level level, const char *line);

/* Loads path with the log at WARN (DEBUG with verbose); prints why not and
 * returns -1 on failure. */
int cli_load_model(const char *path, bool verbose, hinge_model **out);

/* Prints "hinge: WHAT: STATUS (DETAIL)" for a failed call; returns 1. */
int cli_fail(const char *what, hinge_status s);

/* The whole file at path (NUL-terminated, at most max bytes) or NULL. */
char *cli_read_file(const char *path, size_t max, size_t *len);

/* Seconds on a monotonic clock. */
double cli_now_s(void);

int cmd_generate(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_partition(int argc, char **argv);

#endif
