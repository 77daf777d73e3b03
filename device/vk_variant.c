/* Which kernel variants a dev_ops runs: chosen from the device's features
 * and limits, overridden by HINGE_VK_FORCE (syntax in vk_ops.h) so that
 * every choice a phone GPU would get can be run, and tested, on lavapipe.
 *
 * The choices:
 *   matvec   CPU devices: rows (one row per invocation; with subgroup
 *            shuffles in subgroups of >= 8 that divide the workgroup, the
 *            kernels shaped for llvmpipe: matvec_rows.comp,
 *            attention_rows.comp). GPUs: 8 lanes per row meeting through
 *            subgroup shuffles (subgroups >= 8), else through shared
 *            memory (subgroups of 4, none, or no shuffles).
 *   reduce   subgroup arithmetic where the device has it, else shared memory.
 *   shared   the limit on a kernel's shared memory: attention_rows.comp
 *            needs 64 + 1024 * ceil(head / 32) bytes (vk_attention.c falls
 *            back to attention.comp beyond it), the split products stage
 *            their normed input (vk_matmul.c, vk_qkv_rope.c: only where it
 *            fits). Workgroups are HK_WG = 64 invocations (Vulkan promises
 *            128) with at most 4 KiB of shared memory otherwise.
 *   batch    positions per prefill dispatch: no cap, but 32 on Qualcomm
 *            Adreno, whose driver loses the device on larger batches
 *            (llama.cpp #12139).
 *   fuse     the fused decode kernels, on unless forced off.
 *   layer    a small layer's decode step in one dispatch (layer.comp):
 *            with fuse unless forced; dev_prepare_layer decides by size.
 *   tiled    prefill products in shared-memory tiles (matmul_tiled.comp)
 *            on GPUs with HK_MT_SHARED bytes of shared memory; CPU devices
 *            keep matvec_rows.comp (lavapipe loads shared memory one lane
 *            at a time) unless forced.
 * 16-bit storage and float16 arithmetic are not a choice: every kernel
 * reads 16-bit data (f16 weights, block scales) from 32-bit words with
 * unpackHalf2x16, which needs neither feature and is bit-exact, so one set
 * of kernels serves devices with and without them; float16 arithmetic would
 * change results against the CPU engine (the split is exact: DESIGN.md).
 * A forced choice the device cannot run fails with HINGE_ERR_UNSUPPORTED
 * when the kernels are made (vk_ops.c), never silently. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_ops_impl.h"

enum { VENDOR_QUALCOMM = 0x5143, ADRENO_BATCH = 32, FORCE_MAX = 256 };
/* Shared memory every kernel fits in without its big-memory variant
 * (attention.comp, rope_kv.comp, qkv_rope.comp's head and sums); Vulkan
 * promises 16 KiB. */
enum { OPS_MIN_SHARED = 4096 };

/* The overrides read from HINGE_VK_FORCE; -1 (or NULL) where not given. */
typedef struct force {
    int matvec;          /* dev_mv_variant */
    int reduce;          /* 1 subgroup, 0 shared */
    long subgroup;       /* pretended subgroup size; 0: none */
    long shared;         /* pretended shared-memory limit in bytes */
    long batch;
    int fuse, selftest, tiled, layer;
} force;

static int parse_long(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi)
        return -1;
    *out = n;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
        return -1;
    *out = v[0] == '1';
    return 0;
}

/* One key=value item into f; -1 when the key or the value is not known. */
static int parse_item(const char *key, const char *v, force *f)
{
    if (strcmp(key, "matvec") == 0) {
        f->matvec = strcmp(v, "rows") == 0       ? DEV_MV_ROWS
                    : strcmp(v, "subgroup") == 0 ? DEV_MV_SPLIT_SUBGROUP
                    : strcmp(v, "shared") == 0   ? DEV_MV_SPLIT_SHARED
                                                 : -2;
        return f->matvec == -2 ? -1 : 0;
    }
    if (strcmp(key, "reduce") == 0) {
        f->reduce = strcmp(v, "subgroup") == 0 ? 1 : strcmp(v, "shared") == 0 ? 0 : -2;
        return f->reduce == -2 ? -1 : 0;
    }
    if (strcmp(key, "subgroup") == 0)
        return parse_long(v, 0, 1024, &f->subgroup);
    if (strcmp(key, "shared") == 0)
        return parse_long(v, OPS_MIN_SHARED, 1 << 20, &f->shared);
    if (strcmp(key, "batch") == 0)
        return parse_long(v, 1, 4096, &f->batch);
    if (strcmp(key, "fuse") == 0)
        return parse_bool(v, &f->fuse);
    if (strcmp(key, "selftest") == 0)
        return parse_bool(v, &f->selftest);
    if (strcmp(key, "tiled") == 0)
        return parse_bool(v, &f->tiled);
    if (strcmp(key, "layer") == 0)
        return parse_bool(v, &f->layer);
    return -1;
}

/* HINGE_VK_FORCE, and the older HINGE_VK_MATVEC / HINGE_VK_SUBGROUP. */
static hinge_status read_force(dev_ctx *c, force *f)
{
    *f = (force){.matvec = -1, .reduce = -1, .subgroup = -1, .shared = -1, .batch = -1, .fuse = -1, .selftest = -1,
              .tiled = -1, .layer = -1};
    const char *mv = getenv("HINGE_VK_MATVEC"), *sg = getenv("HINGE_VK_SUBGROUP");
    if (mv && *mv && parse_item("matvec", mv, f) != 0)
        return dev_fail(c, HINGE_ERR_INVALID, "HINGE_VK_MATVEC=%s: not rows, subgroup or shared", mv);
    if (sg && *sg && strcmp(sg, "0") != 0 && strcmp(sg, "1") != 0)
        return dev_fail(c, HINGE_ERR_INVALID, "HINGE_VK_SUBGROUP=%s: not 0 or 1", sg);
    if (sg && *sg)
        f->reduce = sg[0] == '1';
    const char *env = getenv("HINGE_VK_FORCE");
    if (!env || !*env)
        return HINGE_OK;
    char buf[FORCE_MAX];
    if (strlen(env) >= sizeof buf)
        return dev_fail(c, HINGE_ERR_INVALID, "HINGE_VK_FORCE: longer than %d characters", FORCE_MAX - 1);
    strcpy(buf, env);
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (eq)
            *eq = '\0';
        if (!eq || parse_item(item, eq + 1, f) != 0)
            return dev_fail(c, HINGE_ERR_INVALID, "HINGE_VK_FORCE=%s: '%s%s%s' is not one of matvec=rows|subgroup|"
                            "shared, reduce=subgroup|shared, subgroup=N, shared=BYTES, batch=N, fuse=0|1, selftest=0|1, tiled=0|1, layer=0|1", env, item, eq ? "=" : "", eq ? eq + 1 : "");
    }
    return HINGE_OK;
}

static dev_mv_variant auto_matvec(const dev_features *f, uint32_t sg_size, bool shuffle)
{
    /* A CPU device runs a subgroup as one SIMD register: loads every lane
     * shares are cheap, per-lane loads are not, so one row per lane (x read
     * by all lanes alike) wins. GPUs want neighbouring lanes on neighbouring
     * bytes of a row. */
    if (f->type == VK_PHYSICAL_DEVICE_TYPE_CPU)
        return DEV_MV_ROWS;
    return shuffle && sg_size >= HK_MV_LANES ? DEV_MV_SPLIT_SUBGROUP : DEV_MV_SPLIT_SHARED;
}

hinge_status ops_choose_variant(dev_ctx *c, const dev_ops_config *cfg, dev_variant *out)
{
    const dev_features *f = dev_ctx_features(c);
    force fo;
    hinge_status s = read_force(c, &fo);
    if (s != HINGE_OK)
        return s;
    /* what the choices see: the device, or what HINGE_VK_FORCE pretends */
    uint32_t sg_size = fo.subgroup >= 0 ? (uint32_t)fo.subgroup : f->subgroup_size;
    bool no_sg = fo.subgroup == 0;
    bool shuffle = f->subgroup_shuffle && !no_sg, arith = f->subgroup_arith && !no_sg;
    dev_variant v = {
        .subgroup_size = no_sg ? 0 : sg_size,
        .shared_bytes = fo.shared > 0 ? (uint32_t)fo.shared : f->max_shared_bytes,
        .max_batch = fo.batch > 0 ? (uint32_t)fo.batch : f->vendor_id == VENDOR_QUALCOMM ? ADRENO_BATCH : 0,
        .fuse = fo.fuse >= 0 ? fo.fuse == 1 : cfg->fuse >= 0,
        .selftest = fo.selftest != 0,
    };
    v.layer = fo.layer >= 0 ? fo.layer == 1 : v.fuse;
    v.matvec = cfg->matvec != DEV_MV_AUTO ? cfg->matvec : auto_matvec(f, sg_size, shuffle);
    if (fo.matvec >= 0)
        v.matvec = (dev_mv_variant)fo.matvec;
    v.subgroup = cfg->subgroup ? cfg->subgroup > 0 : arith;
    if (fo.reduce >= 0)
        v.subgroup = fo.reduce == 1;
    /* (any buffer one storage descriptor spans fits one texel buffer view) */
    v.rows_sg = v.matvec == DEV_MV_ROWS && shuffle && arith && sg_size >= 8 && HK_WG % sg_size == 0 &&
                (uint64_t)f->max_texel_elements * 16 >= f->max_storage_range;
    if (f->max_wg_invocations < HK_WG || v.shared_bytes < OPS_MIN_SHARED)
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "%s: workgroups of %u invocations and %u bytes of shared memory; "
                        "the kernels need %d and %d", f->name, f->max_wg_invocations, v.shared_bytes, HK_WG,
                        OPS_MIN_SHARED);
    if (v.matvec == DEV_MV_SPLIT_SUBGROUP && !(shuffle && sg_size >= HK_MV_LANES))
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "matvec variant split-subgroup needs subgroup shuffles in subgroups "
                        "of >= %d (%s: size %u%s)", HK_MV_LANES, f->name, sg_size, shuffle ? "" : ", no shuffle");
    v.tiled = fo.tiled >= 0 ? fo.tiled == 1 : v.matvec != DEV_MV_ROWS && v.shared_bytes >= HK_MT_SHARED;
    if (v.tiled && v.shared_bytes < HK_MT_SHARED)
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "tiled prefill needs %d bytes of shared memory (%s: %u)",
                        HK_MT_SHARED, f->name, v.shared_bytes);
    if (v.subgroup && !arith)
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "subgroup reductions need subgroup arithmetic, which %s lacks%s",
                        f->name, no_sg ? " (HINGE_VK_FORCE subgroup=0)" : "");
    *out = v;
    return HINGE_OK;
}

static const char *mv_name(const dev_variant *v)
{
    switch (v->matvec) {
    case DEV_MV_ROWS: return v->rows_sg ? "rows" : "rows (no subgroups)";
    case DEV_MV_SPLIT_SUBGROUP: return "split-subgroup";
    case DEV_MV_SPLIT_SHARED: return "split-shared";
    default: return "auto";
    }
}

void ops_describe_variant(const dev_variant *v, char *buf, size_t len)
{
    char batch[24] = "";
    if (v->max_batch)
        snprintf(batch, sizeof batch, ", batch <= %u", v->max_batch);
    snprintf(buf, len, "matvec %s, reductions %s, subgroup %u, fused %s%s%s%s", mv_name(v),
             v->subgroup ? "subgroup" : "shared memory", v->subgroup_size, v->fuse ? "yes" : "no",
             v->layer ? ", small layers whole" : "",
             v->tiled ? ", prefill tiled" : "", batch);
}
