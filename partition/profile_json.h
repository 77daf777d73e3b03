/* partition internal: reading profile files with jansson.
 *
 * A figure is {"value": NUMBER, "source": "where it comes from"}, or a
 * bare number inside an object that carries a "source" string for all its
 * figures (a measured block). Every error names the file and the field's
 * path ("roofline.peak_tflops"). */
#ifndef HINGE_PART_PROFILE_JSON_H
#define HINGE_PART_PROFILE_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "status.h"

enum { PJ_MAX_FILE_BYTES = 1 << 20 }; /* a profile larger than 1 MiB is refused */

typedef struct pj_ctx {
    const char *file; /* for messages */
    char *err;
    size_t errlen;
} pj_ctx;

/* Allowed values of a figure: lo <= v <= hi, with open ends when asked. */
typedef struct pj_range {
    double lo, hi;
    bool lo_open, hi_open;
} pj_range;

/* Reads path (at most PJ_MAX_FILE_BYTES) into a NUL-terminated buffer the
 * caller frees. HINGE_ERR_IO, HINGE_ERR_NOMEM, HINGE_ERR_RANGE (too big). */
hinge_status pj_read_file(const char *path, char **text, size_t *len, char *err, size_t errlen);

/* Parses text into an object. HINGE_ERR_FORMAT with line and column. */
hinge_status pj_parse(const pj_ctx *c, const char *text, size_t len, json_t **out);

/* Reads figure key of obj (path names obj, "" at the top). Absent and not
 * required: *out = dflt. HINGE_ERR_FORMAT (absent, not a figure, no
 * source), HINGE_ERR_RANGE (out of r or not finite). */
hinge_status pj_figure(const pj_ctx *c, json_t *obj, const char *path, const char *key, bool required,
                       const pj_range *r, double dflt, double *out);

/* A bare number (inside a measured block whose "source" the caller has
 * checked). Absent and not required: *out = dflt. */
hinge_status pj_number(const pj_ctx *c, json_t *obj, const char *path, const char *key, bool required,
                       const pj_range *r, double dflt, double *out);

/* A string field; absent and not required: *out = NULL. */
hinge_status pj_string(const pj_ctx *c, json_t *obj, const char *path, const char *key, bool required,
                       const char **out);

/* An object field; absent and not required: *out = NULL. */
hinge_status pj_object(const pj_ctx *c, json_t *obj, const char *path, const char *key, bool required,
                       json_t **out);

/* HINGE_ERR_FORMAT naming the first key of obj not in allowed (NULL-ended). */
hinge_status pj_known_keys(const pj_ctx *c, json_t *obj, const char *path, const char *const *allowed);

/* Copies s into dst[cap], truncating. */
void pj_copy(char *dst, size_t cap, const char *s);

#endif
