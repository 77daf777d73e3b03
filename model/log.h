/* hinge: one logger with levels and a caller-supplied sink. */
#ifndef HINGE_LOG_H
#define HINGE_LOG_H

/* hinge_log_level and the sink's signature (hinge_log_cb) are the public
 * API's, from <hinge/hinge.h>. */
#include "hinge/hinge.h"

/* The sink gets one formatted line without a trailing newline. It may be
 * called from any thread that logs; it must not call back into hinge. */
typedef hinge_log_cb hinge_log_fn;

typedef struct hinge_logger {
    hinge_log_fn fn;       /* NULL: messages are dropped */
    void *user;            /* borrowed; passed to fn */
    hinge_log_level level; /* messages above this level are dropped */
} hinge_logger;

/* lg may be NULL (drops everything). */
void hinge_log(const hinge_logger *lg, hinge_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A sink writing "hinge: LEVEL: line" to stderr; user is ignored. */
void hinge_log_stderr(void *user, hinge_log_level level, const char *line);

#endif
