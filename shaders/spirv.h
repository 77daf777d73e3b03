/* hinge: the compute shaders, compiled to SPIR-V by meson at build time and
 * embedded here (shaders/meson.build generates the table). */
#ifndef HINGE_SPIRV_H
#define HINGE_SPIRV_H

#include <stddef.h>
#include <stdint.h>

typedef struct dev_spirv {
    const char *name;     /* "<kernel>[_<type>][_<variant>]", e.g. "matvec_q4_k_sg" */
    const uint32_t *code; /* static */
    size_t bytes;
} dev_spirv;

/* The shader called name, or NULL. */
const dev_spirv *dev_spirv_find(const char *name);
/* All shaders: *n gets the count. */
const dev_spirv *dev_spirv_all(size_t *n);

#endif
