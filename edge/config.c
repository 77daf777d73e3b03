/* See config.h. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CONFIG_MAX_SETTINGS = 256, CONFIG_LINE_MAX = 4096 };

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static const struct option *find_opt(const struct option *opts, const char *name)
{
    for (; opts->name; opts++)
        if (strcmp(opts->name, name) == 0)
            return opts;
    return NULL;
}

static int push(edge_config_args *a, const char *s)
{
    char *d = strdup(s);
    if (!d)
        return -1;
    a->argv[a->argc++] = d;
    a->argv[a->argc] = NULL;
    return 0;
}

/* One "key = value" line into a. */
static int parse_line(char *line, const struct option *opts, edge_config_args *a, char *err, size_t errlen,
                      const char *path, int lineno)
{
    char *hash = strstr(line, " #");
    if (hash)
        *hash = '\0';
    char *eq = strchr(line, '=');
    if (!eq) {
        snprintf(err, errlen, "%s:%d: expected key = value", path, lineno);
        return -1;
    }
    *eq = '\0';
    char *key = trim(line), *value = trim(eq + 1);
    const struct option *o = find_opt(opts, key);
    if (!o || strcmp(key, "config") == 0 || strcmp(key, "help") == 0 || strcmp(key, "version") == 0) {
        snprintf(err, errlen, "%s:%d: unknown key '%.64s'", path, lineno, key);
        return -1;
    }
    char opt[80];
    snprintf(opt, sizeof opt, "--%s", key);
    if (o->has_arg == no_argument) {
        bool on = strcmp(value, "true") == 0, off = strcmp(value, "false") == 0;
        if (!on && !off) {
            snprintf(err, errlen, "%s:%d: %s takes true or false", path, lineno, key);
            return -1;
        }
        return on ? push(a, opt) : 0;
    }
    if (!*value) {
        snprintf(err, errlen, "%s:%d: %s needs a value", path, lineno, key);
        return -1;
    }
    if (push(a, opt) != 0 || push(a, value) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int edge_config_read(const char *path, const struct option *opts, edge_config_args *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    edge_config_args a = {calloc(2 * CONFIG_MAX_SETTINGS + 2, sizeof(char *)), 0};
    char line[CONFIG_LINE_MAX];
    int lineno = 0, rc = a.argv ? push(&a, "hinge-edge") : -1;
    if (rc != 0)
        snprintf(err, errlen, "out of memory");
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        if (strlen(line) == sizeof line - 1 && line[sizeof line - 2] != '\n') {
            snprintf(err, errlen, "%s:%d: line over %d bytes", path, lineno, CONFIG_LINE_MAX);
            rc = -1;
            break;
        }
        char *t = trim(line);
        if (!*t || *t == '#')
            continue;
        if (a.argc > 2 * CONFIG_MAX_SETTINGS - 1) {
            snprintf(err, errlen, "%s: over %d settings", path, CONFIG_MAX_SETTINGS);
            rc = -1;
            break;
        }
        rc = parse_line(t, opts, &a, err, errlen, path, lineno);
    }
    fclose(f);
    if (rc != 0) {
        edge_config_free(&a);
        return -1;
    }
    *out = a;
    return 0;
}

void edge_config_free(edge_config_args *a)
{
    for (int i = 0; a->argv && i < a->argc; i++)
        free(a->argv[i]);
    free(a->argv);
    a->argv = NULL;
    a->argc = 0;
}
