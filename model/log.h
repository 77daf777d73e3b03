/* hinge: one logger with levels and a caller-supplied sink. */
#ifndef HINGE_LOG_H
#define HINGE_LOG_H

typedef enum hinge_log_level {
    HINGE_LOG_ERROR = 0, /* the call fails */
    HINGE_LOG_WARN = 1,  /* degraded but continuing */
    HINGE_LOG_INFO = 2,  /* once per model load or session */
    HINGE_LOG_DEBUG = 3, /* once per request */
    HINGE_LOG_TRACE = 4, /* per token or per layer: only when asked for */
} hinge_log_level;

/* The sink gets one formatted line without a trailing newline. It may be
 * called from any thread that logs; it must not call back into hinge. */
typedef void (*hinge_log_fn)(void *user, hinge_log_level level, const char *line);

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
