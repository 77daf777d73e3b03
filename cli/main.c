/* hinge: the command-line front end.
 *
 *   hinge generate    a generation, local or split across an edge
 *   hinge perplexity  perplexity of a text file
 *   hinge profile     measures this machine: a profile for the partitioner
 *   hinge partition   the partitioner's decision for one request
 *
 * `hinge COMMAND --help` lists a command's options. */
#include <string.h>

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

static void usage(FILE *out)
{
    fprintf(out, "usage: hinge COMMAND [OPTIONS]   (hinge COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-11s %s\n", COMMANDS[i].name, COMMANDS[i].what);
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
    fprintf(stderr, "hinge: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
