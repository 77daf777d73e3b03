/* hinge: one status enum for the whole project. */
#ifndef HINGE_STATUS_H
#define HINGE_STATUS_H

#include <stddef.h>

/* 0 is success; every error is negative. The human detail of an error goes
 * into the message buffer of the handle (or the caller's err buffer) that the
 * failing call was given. */
typedef enum hinge_status {
    HINGE_OK = 0,
    HINGE_ERR_INVALID = -1,     /* bad argument from the caller */
    HINGE_ERR_NOMEM = -2,       /* allocation failed or over a hard cap */
    HINGE_ERR_IO = -3,          /* open/read/mmap failed */
    HINGE_ERR_FORMAT = -4,      /* malformed file, frame or message */
    HINGE_ERR_UNSUPPORTED = -5, /* well-formed but not handled (type, arch) */
    HINGE_ERR_NOT_FOUND = -6,   /* key, tensor or session does not exist */
    HINGE_ERR_RANGE = -7,       /* count or position out of range */
    HINGE_ERR_VULKAN = -8,      /* Vulkan driver error */
    HINGE_ERR_NETWORK = -9,     /* connection, TLS or timeout */
    HINGE_ERR_PROTOCOL = -10,   /* peer broke the protocol */
} hinge_status;

/* Static string naming the status; never NULL. */
const char *hinge_strerror(hinge_status s);

/* Size of every message buffer in the project. */
enum { HINGE_ERRMSG_MAX = 256 };

/* printf into a caller's message buffer; err may be NULL. Returns s, so that
 * a failing path reads `return hinge_fail(err, n, HINGE_ERR_FORMAT, ...)`. */
hinge_status hinge_fail(char *err, size_t errlen, hinge_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
