#include "log.h"

#include <stdarg.h>
#include <stdio.h>

void hinge_log(const hinge_logger *lg, hinge_log_level level, const char *fmt, ...)
{
    if (!lg || !lg->fn || level > lg->level)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    lg->fn(lg->user, level, line);
}

void hinge_log_stderr(void *user, hinge_log_level level, const char *line)
{
    static const char *const names[] = {"error", "warn", "info", "debug", "trace"};
    (void)user;
    fprintf(stderr, "hinge: %s: %s\n", names[level <= HINGE_LOG_TRACE ? level : HINGE_LOG_TRACE], line);
}
