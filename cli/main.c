/* hinge: the command-line front end.
 *
 *   hinge generate    a generation, local or split across an edge
 *   hinge perplexity  perplexity of a text file
 *   hinge profile     measures this machine: a profile for the partitioner
 *   hinge partition   the partitioner's decision for one request
 *
 * `hinge COMMAND --help` lists a command's options. Any other COMMAND runs
 * the program hinge-COMMAND, as git runs its external commands: found beside
 * this binary, in ../tools/ of a build tree, or on PATH. Benchmarks of the
 * internals (hinge bench-device: tools/hinge-bench-device) live there, so
 * that this program needs nothing but the public API. Experiments take a
 * second word: hinge experiment NAME runs hinge-experiment-NAME. */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *what;
} command;

static const command COMMANDS[] = {
    {"generate", cmd_generate, "a generation, local or split across an edge"},
    {"perplexity", cmd_perplexity, "perplexity of a text file"},
    {"profile", cmd_profile, "measure this machine: a device or edge profile for the partitioner"},
    {"partition", cmd_partition, "the partitioner's decision for one request"},
};

/* execv of hinge-NAME from dir when it is there; returns only on failure. */
static void try_exec(const char *dir, const char *name, char **argv)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/hinge-%s", dir, name) >= (int)sizeof path || access(path, X_OK) != 0)
        return;
    argv[0] = path;
    execv(path, argv);
    fprintf(stderr, "hinge: cannot run %s: %s\n", path, strerror(errno));
}

/* hinge NAME ARGS... as hinge-NAME ARGS...; returns only when there is none. */
static int run_external(const char *name, char **argv)
{
    if (strchr(name, '/') || name[0] == '-')
        return 2;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            try_exec(self, name, argv);
            char tools[PATH_MAX];
            if (snprintf(tools, sizeof tools, "%s/../tools", self) < (int)sizeof tools)
                try_exec(tools, name, argv);
        }
    }
    char prog[256];
    if (snprintf(prog, sizeof prog, "hinge-%s", name) < (int)sizeof prog) {
        argv[0] = prog;
        execvp(prog, argv);
    }
    return 2;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: hinge COMMAND [OPTIONS]   (hinge COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].what);
    fprintf(out, "  %-12s %s\n", "bench-device", "benchmark the Vulkan executor (the program hinge-bench-device)");
    fprintf(out, "  %-12s %s\n", "experiment", "experiment privacy|latency: sweeps with CSV, JSON and plots");
    fprintf(out, "\n  --version   libhinge's version\n  --help      this text\n"
                 "The model defaults to $HINGE_MODEL, else ~/" CLI_DEFAULT_MODEL_REL ".\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("hinge %s\n", hinge_version());
        return 0;
    }
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(cmd, COMMANDS[i].name) == 0)
            return COMMANDS[i].run(argc - 1, argv + 1);
    if (strcmp(cmd, "experiment") == 0) {
        if (argc < 3 || argv[2][0] == '-') {
            fprintf(stderr, "usage: hinge experiment privacy|latency [OPTIONS]\n");
            return 2;
        }
        const char *name = argv[2];
        char sub[128];
        if (snprintf(sub, sizeof sub, "experiment-%s", name) < (int)sizeof sub)
            run_external(sub, argv + 2);
        fprintf(stderr, "hinge: unknown experiment '%s'\n", name);
        return 2;
    }
    run_external(cmd, argv + 1);
    fprintf(stderr, "hinge: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
