/* hinge: one status enum for the whole project. */
#ifndef HINGE_STATUS_H
#define HINGE_STATUS_H

#include <stddef.h>

/* hinge_status (0 success, negative errors) and hinge_strerror() are the
 * public API's, from <hinge/hinge.h>. The human detail of an error goes
 * into the message buffer of the handle (or the caller's err buffer) that
 * the failing call was given. */
#include "hinge/hinge.h"

/* Size of every message buffer in the project. */
enum { HINGE_ERRMSG_MAX = 256 };

/* printf into a caller's message buffer; err may be NULL. Returns s, so that
 * a failing path reads `return hinge_fail(err, n, HINGE_ERR_FORMAT, ...)`. */
hinge_status hinge_fail(char *err, size_t errlen, hinge_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
