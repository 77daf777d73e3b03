#include "status.h"

#include <stdarg.h>
#include <stdio.h>

const char *hinge_strerror(hinge_status s)
{
    switch (s) {
    case HINGE_OK: return "success";
    case HINGE_ERR_INVALID: return "invalid argument";
    case HINGE_ERR_NOMEM: return "out of memory";
    case HINGE_ERR_IO: return "i/o error";
    case HINGE_ERR_FORMAT: return "malformed input";
    case HINGE_ERR_UNSUPPORTED: return "unsupported";
    case HINGE_ERR_NOT_FOUND: return "not found";
    case HINGE_ERR_RANGE: return "out of range";
    case HINGE_ERR_VULKAN: return "vulkan error";
    case HINGE_ERR_NETWORK: return "network error";
    case HINGE_ERR_PROTOCOL: return "protocol error";
    case HINGE_CANCELLED: return "cancelled";
    }
    return "unknown status";
}

hinge_status hinge_fail(char *err, size_t errlen, hinge_status s, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return s;
}
