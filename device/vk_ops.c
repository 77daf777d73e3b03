/* The kernel set: pipelines, descriptor sets, recording. See vk_ops.h; the
 * variants are chosen in vk_variant.c; the per-kernel host code is in
 * vk_matmul.c, vk_embed.c, vk_rmsnorm.c, vk_rope_kv.c, vk_attention.c,
 * vk_eltwise.c and vk_qkv_rope.c. */
#include "vk_ops_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "spirv.h"

enum { SETS_PER_POOL = 256 };
_Static_assert(HK_MM_BINDINGS <= OPS_MAX_BINDINGS && HK_RN_BINDINGS <= OPS_MAX_BINDINGS &&
                   HK_RK_BINDINGS <= OPS_MAX_BINDINGS && HK_AT_BINDINGS <= OPS_MAX_BINDINGS &&
                   HK_QR_BINDINGS <= OPS_MAX_BINDINGS && HK_LY_BINDINGS <= OPS_MAX_BINDINGS,
               "bindings per kernel");

static const uint32_t type_order[OPS_NTYPES] = {QT_F32, QT_F16, QT_Q8_0, QT_Q4_0, QT_Q5_0, QT_Q4_1, QT_Q4_K, QT_Q6_K};
static const char *const type_names[OPS_NTYPES] = {"f32", "f16", "q8_0", "q4_0", "q5_0", "q4_1", "q4_k", "q6_k"};

/* The types read by another type's kernels in a sub-layout of its layout
 * (shaders/kernel_abi.h): no SPIR-V variants of their own. */
static const struct {
    uint32_t type, base, sub;
} sub_types[] = {
    {QT_IQ4_NL, QT_Q4_0, HK_SUB_IQ4_NL}, {QT_Q5_1, QT_Q4_1, HK_SUB_Q5_1}, {QT_Q5_K, QT_Q4_K, HK_SUB_Q5_K},
    {QT_Q3_K, QT_Q6_K, HK_SUB_Q3_K},     {QT_Q2_K, QT_Q6_K, HK_SUB_Q2_K},
};
enum { N_SUB_TYPES = sizeof sub_types / sizeof sub_types[0] };

int ops_type_index(uint32_t qtype)
{
    for (int j = 0; j < N_SUB_TYPES; j++)
        if (sub_types[j].type == qtype)
            qtype = sub_types[j].base;
    for (int i = 0; i < OPS_NTYPES; i++)
        if (type_order[i] == qtype)
            return i;
    return -1;
}

uint32_t ops_type_sub(uint32_t qtype)
{
    for (int j = 0; j < N_SUB_TYPES; j++)
        if (sub_types[j].type == qtype)
            return sub_types[j].sub;
    return 0;
}

uint32_t ops_sub_flags(uint32_t type, uint32_t type2)
{
    return ops_type_sub(type) << HK_F_SUB_SHIFT | ops_type_sub(type2) << HK_F_SUB2_SHIFT;
}

/* Bit (1u << qtype) of every type kernel ti reads. */
static uint32_t type_bits(int ti)
{
    uint32_t b = 1u << type_order[ti];
    for (int j = 0; j < N_SUB_TYPES; j++)
        if (sub_types[j].base == type_order[ti])
            b |= 1u << sub_types[j].type;
    return b;
}

const char *ops_type_name(uint32_t qtype)
{
    int i = ops_type_index(qtype);
    return i < 0 ? "unsupported" : type_names[i];
}

/* ---- kernels ---- */

hinge_status ops_kernel_init(dev_ops *o, struct dev_kernel *k, const char *spv_name, uint32_t n_bind,
                             uint32_t push_bytes, const VkFormat *texel)
{
    if (k->module)
        return HINGE_OK;
    dev_ctx *c = o->c;
    VkDevice d = dev_ctx_device(c);
    snprintf(k->name, sizeof k->name, "%s", spv_name);
    k->n_bind = n_bind;
    k->push_bytes = push_bytes;
    const dev_spirv *spv = dev_spirv_find(spv_name);
    if (!spv)
        return dev_fail(c, HINGE_ERR_UNSUPPORTED, "shader %s is not in this build", spv_name);
    VkDescriptorSetLayoutBinding b[OPS_MAX_BINDINGS];
    for (uint32_t i = 0; i < n_bind; i++) {
        k->texel[i] = texel ? texel[i] : VK_FORMAT_UNDEFINED;
        b[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = k->texel[i] ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    }
    VkDescriptorSetLayoutCreateInfo lci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = n_bind,
        .pBindings = b,
    };
    VkResult r = vkCreateDescriptorSetLayout(d, &lci, NULL, &k->dsl);
    if (r != VK_SUCCESS) {
        k->dsl = VK_NULL_HANDLE;
        return dev_vk_fail(c, r, "vkCreateDescriptorSetLayout", spv_name);
    }
    VkPushConstantRange pcr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = push_bytes};
    VkPipelineLayoutCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &k->dsl,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pcr,
    };
    r = vkCreatePipelineLayout(d, &pci, NULL, &k->layout);
    if (r != VK_SUCCESS) {
        k->layout = VK_NULL_HANDLE;
        return dev_vk_fail(c, r, "vkCreatePipelineLayout", spv_name);
    }
    VkShaderModuleCreateInfo mci = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = spv->bytes,
        .pCode = spv->code,
    };
    r = vkCreateShaderModule(d, &mci, NULL, &k->module);
    if (r != VK_SUCCESS) {
        k->module = VK_NULL_HANDLE;
        return dev_vk_fail(c, r, "vkCreateShaderModule", spv_name);
    }
    return HINGE_OK;
}

/* A kernel with its unspecialized pipeline (the kernels whose prepare
 * functions use k->pipe). */
static hinge_status kernel_create(dev_ops *o, const char *spv_name, uint32_t n_bind, uint32_t push_bytes,
                                  const VkFormat *texel, struct dev_kernel *k)
{
    hinge_status s = ops_kernel_init(o, k, spv_name, n_bind, push_bytes, texel);
    return s == HINGE_OK ? ops_pipeline(o, k, 0, &k->pipe) : s;
}

hinge_status ops_pipeline(dev_ops *o, struct dev_kernel *k, uint32_t value, VkPipeline *out)
{
    const uint32_t v[OPS_SPEC_IDS] = {value};
    return ops_pipeline_spec(o, k, v, out);
}

hinge_status ops_pipeline_spec(dev_ops *o, struct dev_kernel *k, const uint32_t v[OPS_SPEC_IDS], VkPipeline *out)
{
    for (uint32_t i = 0; i < k->n_spec; i++)
        if (memcmp(k->specs[i].value, v, sizeof k->specs[i].value) == 0) {
            *out = k->specs[i].pipe;
            return HINGE_OK;
        }
    if (k->n_spec == OPS_SPECS)
        return dev_fail(o->c, HINGE_ERR_UNSUPPORTED, "%s: more than %d specializations", k->name, OPS_SPECS);
    if (k->n_spec == k->cap_spec) {
        uint32_t cap = k->cap_spec ? 2 * k->cap_spec : 8;
        struct ops_spec *n = realloc(k->specs, cap * sizeof *n);
        if (!n)
            return dev_fail(o->c, HINGE_ERR_NOMEM, "%s: out of host memory", k->name);
        k->specs = n;
        k->cap_spec = cap;
    }
    VkSpecializationMapEntry entries[OPS_SPEC_IDS];
    uint32_t n = 0;
    for (uint32_t i = 0; i < OPS_SPEC_IDS; i++)
        if (v[i])
            entries[n++] = (VkSpecializationMapEntry){.constantID = i, .offset = i * 4, .size = sizeof(uint32_t)};
    VkSpecializationInfo spec = {.mapEntryCount = n, .pMapEntries = entries, .dataSize = OPS_SPEC_IDS * 4, .pData = v};
    VkComputePipelineCreateInfo cci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage =
            {
                .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = k->module,
                .pName = "main",
                .pSpecializationInfo = n ? &spec : NULL,
            },
        .layout = k->layout,
    };
    VkPipeline pipe;
    VkResult r = vkCreateComputePipelines(dev_ctx_device(o->c), VK_NULL_HANDLE, 1, &cci, NULL, &pipe);
    if (r != VK_SUCCESS) {
        char what[80];
        snprintf(what, sizeof what, "%s, specialization 0x%x/%u/%u/%u", k->name, v[0], v[1], v[2], v[3]);
        return dev_vk_fail(o->c, r, "vkCreateComputePipelines", what);
    }
    memcpy(k->specs[k->n_spec].value, v, sizeof k->specs[0].value);
    k->specs[k->n_spec++].pipe = pipe;
    *out = pipe;
    return HINGE_OK;
}

static void kernel_destroy(VkDevice d, struct dev_kernel *k)
{
    for (uint32_t i = 0; i < k->n_spec; i++)
        vkDestroyPipeline(d, k->specs[i].pipe, NULL);
    free(k->specs);
    if (k->module)
        vkDestroyShaderModule(d, k->module, NULL);
    if (k->layout)
        vkDestroyPipelineLayout(d, k->layout, NULL);
    if (k->dsl)
        vkDestroyDescriptorSetLayout(d, k->dsl, NULL);
    memset(k, 0, sizeof *k);
}

/* The matrix kernels of one weight type (pipelines come with their flags,
 * at prepare) and its embedding kernel. */
static hinge_status create_type_kernels(dev_ops *o, int ti)
{
    char name[40];
    const char *t = type_names[ti];
    const char *mv = o->mv == DEV_MV_SPLIT_SUBGROUP ? "sg" : o->mv == DEV_MV_ROWS ? "rows" : "sh";
    snprintf(name, sizeof name, "matmul_%s_1", t);
    hinge_status s = ops_kernel_init(o, &o->matmul1[ti], name, HK_MM_BINDINGS, dev_mm_push_bytes, NULL);
    snprintf(name, sizeof name, "matmul_%s_n", t);
    if (s == HINGE_OK)
        s = ops_kernel_init(o, &o->matmuln[ti], name, HK_MM_BINDINGS, dev_mm_push_bytes, NULL);
    snprintf(name, sizeof name, "matvec_%s_%s", t, mv);
    if (s == HINGE_OK && (o->mv != DEV_MV_ROWS || o->rows_sg))
        s = ops_kernel_init(o, &o->matvec[ti], name, HK_MM_BINDINGS, dev_mm_push_bytes,
                            o->rows_sg ? ops_rows_texels() : NULL);
    snprintf(name, sizeof name, "matmul_%s_rows", t);
    if (s == HINGE_OK && o->rows_sg)
        s = ops_kernel_init(o, &o->matmulr[ti], name, HK_MM_BINDINGS, dev_mm_push_bytes, ops_rows_texels());
    snprintf(name, sizeof name, "matmul_%s_tile", t);
    if (s == HINGE_OK && o->v.tiled)
        s = ops_kernel_init(o, &o->matmult[ti], name, HK_MM_BINDINGS, dev_mm_push_bytes, NULL);
    snprintf(name, sizeof name, "embed_%s", t);
    if (s == HINGE_OK)
        s = kernel_create(o, name, HK_EM_BINDINGS, dev_embed_push_bytes, NULL, &o->embed[ti]);
    return s;
}

static hinge_status create_kernels(dev_ops *o)
{
    const char *red = o->sg ? "sg" : "sh";
    char name[40];
    hinge_status s = HINGE_OK;
    for (int ti = 0; ti < OPS_NTYPES && s == HINGE_OK; ti++)
        if (o->types & type_bits(ti))
            s = create_type_kernels(o, ti);
    snprintf(name, sizeof name, "rmsnorm_%s", red);
    if (s == HINGE_OK)
        s = kernel_create(o, name, HK_RN_BINDINGS, dev_rmsnorm_push_bytes, NULL, &o->rmsnorm);
    snprintf(name, sizeof name, "rope_kv_%s", red);
    if (s == HINGE_OK)
        s = ops_kernel_init(o, &o->rope_kv, name, HK_RK_BINDINGS, dev_rope_push_bytes, NULL);
    snprintf(name, sizeof name, "attention_%s", red);
    if (s == HINGE_OK)
        s = kernel_create(o, name, HK_AT_BINDINGS, dev_attn_push_bytes, NULL, &o->attention);
    VkFormat tex[HK_AT_BINDINGS] = {0};
    tex[HK_AT_B_Q] = tex[HK_AT_B_KC] = tex[HK_AT_B_VC] = VK_FORMAT_R32G32B32A32_SFLOAT;
    if (s == HINGE_OK && o->rows_sg)
        s = ops_kernel_init(o, &o->attention_rows, "attention_rows", HK_AT_BINDINGS, dev_attn_push_bytes, tex);
    if (s != HINGE_OK || o->attention_only)
        return s;
    s = kernel_create(o, "glu", HK_EW_BINDINGS, dev_eltwise_push_bytes, NULL, &o->glu);
    return s == HINGE_OK ? kernel_create(o, "add", HK_EW_BINDINGS, dev_eltwise_push_bytes, NULL, &o->add) : s;
}

const VkFormat *ops_rows_texels(void)
{
    /* matvec_rows.comp and qkv_rope.comp's rows flavour read weights, x, o
     * and the norm weights as uniform texel buffers: llvmpipe fetches texels
     * with gathers, storage buffers lane by lane */
    static const VkFormat tex[OPS_MAX_BINDINGS] = {
        [HK_MM_B_W] = VK_FORMAT_R32G32B32A32_UINT,
        [HK_MM_B_W2] = VK_FORMAT_R32G32B32A32_UINT,
        [HK_MM_B_X] = VK_FORMAT_R32G32B32A32_SFLOAT,
        [HK_MM_B_RO] = VK_FORMAT_R32G32B32A32_SFLOAT,
        [HK_MM_B_NORM] = VK_FORMAT_R32G32B32A32_SFLOAT,
        [HK_MM_B_RW] = VK_FORMAT_R32G32B32A32_SFLOAT,
    };
    return tex;
}

hinge_status dev_ops_create(dev_ctx *c, const dev_ops_config *cfg, dev_ops **out)
{
    static const dev_ops_config defaults = {0};
    if (!cfg)
        cfg = &defaults;
    dev_ops *o = calloc(1, sizeof *o);
    if (!o)
        return dev_fail(c, HINGE_ERR_NOMEM, "dev_ops_create: out of host memory");
    o->c = c;
    hinge_status s = ops_choose_variant(c, cfg, &o->v);
    o->mv = o->v.matvec;
    o->sg = o->v.subgroup;
    o->rows_sg = o->v.rows_sg;
    o->few = cfg->few;
    uint32_t all = 0;
    for (int i = 0; i < OPS_NTYPES; i++)
        all |= type_bits(i);
    o->types = cfg->attention_only ? 0 : cfg->types ? cfg->types & all : all;
    o->attention_only = cfg->attention_only;
    if (s == HINGE_OK)
        s = create_kernels(o);
    if (s != HINGE_OK) {
        dev_ops_destroy(o);
        return s;
    }
    ops_describe_variant(&o->v, o->desc, sizeof o->desc);
    hinge_log(dev_ctx_logger(c), HINGE_LOG_INFO, "vulkan: kernels ready (%s)", o->desc);
    *out = o;
    return HINGE_OK;
}

void dev_ops_destroy(dev_ops *o)
{
    if (!o)
        return;
    VkDevice d = dev_ctx_device(o->c);
    for (uint32_t i = 0; i < o->n_pools; i++)
        vkDestroyDescriptorPool(d, o->pools[i], NULL);
    for (uint32_t i = 0; i < o->n_views; i++)
        vkDestroyBufferView(d, o->views[i], NULL);
    free(o->views);
    for (int i = 0; i < OPS_NTYPES; i++) {
        kernel_destroy(d, &o->matmul1[i]);
        kernel_destroy(d, &o->matmuln[i]);
        kernel_destroy(d, &o->matmulr[i]);
        kernel_destroy(d, &o->matmult[i]);
        kernel_destroy(d, &o->matvec[i]);
        kernel_destroy(d, &o->embed[i]);
        kernel_destroy(d, &o->layer[i]);
    }
    for (int i = 0; i < OPS_NTYPES; i++)
        for (int j = 0; j < OPS_QKV_PAIRS; j++)
            kernel_destroy(d, &o->qkv[i][j]);
    kernel_destroy(d, &o->rmsnorm);
    kernel_destroy(d, &o->rope_kv);
    kernel_destroy(d, &o->attention);
    kernel_destroy(d, &o->attention_rows);
    kernel_destroy(d, &o->glu);
    kernel_destroy(d, &o->add);
    free(o);
}

dev_mv_variant dev_ops_matvec_variant(const dev_ops *o) { return o->mv; }
bool dev_ops_subgroup(const dev_ops *o) { return o->sg; }
const dev_variant *dev_ops_variant(const dev_ops *o) { return &o->v; }
const char *dev_ops_describe(const dev_ops *o) { return o->desc; }

struct dev_kernel *ops_kernel_for(dev_ops *o, struct dev_kernel *arr, uint32_t type, const char *what)
{
    int ti = ops_type_index(type);
    if (ti < 0 || !arr[ti].module) {
        dev_fail(o->c, HINGE_ERR_UNSUPPORTED, "%s: no kernel for %s weights (%s)", what, quant_name(type),
                 ti < 0 ? "the shaders do not read this type" : "not among the types the ops were built for");
        return NULL;
    }
    return &arr[ti];
}

/* ---- descriptor sets (load time only) ---- */

static hinge_status add_pool(dev_ops *o)
{
    if (o->n_pools == sizeof o->pools / sizeof o->pools[0])
        return dev_fail(o->c, HINGE_ERR_NOMEM, "descriptor sets: more than %u prepared ops",
                        o->n_pools * SETS_PER_POOL);
    VkDescriptorPoolSize size[2] = {
        {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = SETS_PER_POOL * OPS_MAX_BINDINGS},
        {.type = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, .descriptorCount = SETS_PER_POOL * OPS_MAX_TEXELS},
    };
    VkDescriptorPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = SETS_PER_POOL,
        .poolSizeCount = 2,
        .pPoolSizes = size,
    };
    VkResult r = vkCreateDescriptorPool(dev_ctx_device(o->c), &pci, NULL, &o->pools[o->n_pools]);
    if (r != VK_SUCCESS)
        return dev_vk_fail(o->c, r, "vkCreateDescriptorPool", "ops");
    o->n_pools++;
    return HINGE_OK;
}

/* A view of 16-byte texels over b (its size rounded down to whole texels),
 * owned by the dev_ops. */
static hinge_status texel_view(dev_ops *o, const struct dev_kernel *k, const VkDescriptorBufferInfo *b,
                               VkFormat format, VkBufferView *out)
{
    const dev_features *f = dev_ctx_features(o->c);
    VkDeviceSize range = b->range & ~(VkDeviceSize)15;
    if (range == 0 || range / 16 > f->max_texel_elements || (f->texel_align && b->offset % f->texel_align))
        return dev_fail(o->c, HINGE_ERR_UNSUPPORTED, "%s: a texel view of %llu bytes at %llu (max %u texels, "
                        "alignment %llu)", k->name, (unsigned long long)b->range, (unsigned long long)b->offset,
                        f->max_texel_elements, (unsigned long long)f->texel_align);
    if (o->n_views == o->cap_views) {
        uint32_t cap = o->cap_views ? 2 * o->cap_views : 256;
        VkBufferView *v = cap <= OPS_MAX_VIEWS ? realloc(o->views, cap * sizeof *v) : NULL;
        if (!v)
            return dev_fail(o->c, HINGE_ERR_NOMEM, "%s: more than %u texel views, or out of host memory", k->name,
                            o->cap_views);
        o->views = v;
        o->cap_views = cap;
    }
    VkBufferViewCreateInfo vci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
        .buffer = b->buffer,
        .format = format,
        .offset = b->offset,
        .range = range,
    };
    VkResult r = vkCreateBufferView(dev_ctx_device(o->c), &vci, NULL, out);
    if (r != VK_SUCCESS)
        return dev_vk_fail(o->c, r, "vkCreateBufferView", k->name);
    o->views[o->n_views++] = *out;
    return HINGE_OK;
}

hinge_status ops_write_set(dev_ops *o, const struct dev_kernel *k, const VkDescriptorBufferInfo *infos,
                           VkDescriptorSet *out)
{
    VkDevice d = dev_ctx_device(o->c);
    VkResult r = VK_ERROR_OUT_OF_POOL_MEMORY;
    VkDescriptorSet set = VK_NULL_HANDLE;
    if (o->n_pools) {
        VkDescriptorSetAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = o->pools[o->n_pools - 1],
            .descriptorSetCount = 1,
            .pSetLayouts = &k->dsl,
        };
        r = vkAllocateDescriptorSets(d, &ai, &set);
    }
    if (r == VK_ERROR_OUT_OF_POOL_MEMORY || r == VK_ERROR_FRAGMENTED_POOL) {
        hinge_status s = add_pool(o);
        if (s != HINGE_OK)
            return s;
        VkDescriptorSetAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = o->pools[o->n_pools - 1],
            .descriptorSetCount = 1,
            .pSetLayouts = &k->dsl,
        };
        r = vkAllocateDescriptorSets(d, &ai, &set);
    }
    if (r != VK_SUCCESS)
        return dev_vk_fail(o->c, r, "vkAllocateDescriptorSets", k->name);
    VkWriteDescriptorSet w[OPS_MAX_BINDINGS];
    VkBufferView views[OPS_MAX_BINDINGS];
    for (uint32_t i = 0; i < k->n_bind; i++) {
        w[i] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = set,
            .dstBinding = i,
            .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .pBufferInfo = &infos[i],
        };
        if (!k->texel[i])
            continue;
        hinge_status s = texel_view(o, k, &infos[i], k->texel[i], &views[i]);
        if (s != HINGE_OK)
            return s;
        w[i].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
        w[i].pBufferInfo = NULL;
        w[i].pTexelBufferView = &views[i];
    }
    vkUpdateDescriptorSets(d, k->n_bind, w, 0, NULL);
    *out = set;
    return HINGE_OK;
}

hinge_status ops_buf_info(dev_ops *o, const dev_buf *b, const char *what, VkDescriptorBufferInfo *out)
{
    const dev_features *f = dev_ctx_features(o->c);
    if (!b || !b->buf)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: no buffer", what);
    if (b->size > f->max_storage_range)
        return dev_fail(o->c, HINGE_ERR_UNSUPPORTED, "%s: %llu bytes, more than one storage descriptor spans (%llu)",
                        what, (unsigned long long)b->size, (unsigned long long)f->max_storage_range);
    if (f->storage_align && b->off % f->storage_align)
        return dev_fail(o->c, HINGE_ERR_INVALID, "%s: offset %llu is not a multiple of %llu", what,
                        (unsigned long long)b->off, (unsigned long long)f->storage_align);
    *out = (VkDescriptorBufferInfo){.buffer = b->buf, .offset = b->off, .range = b->size};
    return HINGE_OK;
}

void ops_op_init(dev_op *op, dev_op_kind kind, const struct dev_kernel *k, const void *push, uint32_t push_bytes)
{
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->k = k;
    op->pipe = k->pipe;
    op->n_parts = 1;
    memcpy(op->push, push, push_bytes);
    op->push_bytes = push_bytes;
    op->at_m = op->at_pos0 = op->at_row0 = op->at_nrows = DEV_PUSH_NONE;
}

uint64_t ops_floats_after(const dev_buf *b, uint64_t off)
{
    uint64_t n = b->size / 4;
    return off < n ? n - off : 0;
}

uint32_t ops_capacity(const dev_buf *b, uint32_t off, uint32_t stride, uint32_t len)
{
    uint64_t avail = ops_floats_after(b, off);
    if (avail < len)
        return 0;
    if (stride == 0)
        return UINT32_MAX;
    uint64_t m = (avail - len) / stride + 1;
    return m > UINT32_MAX ? UINT32_MAX : (uint32_t)m;
}

/* ---- recording ---- */

static uint32_t div_up(uint64_t a, uint64_t b) { return (uint32_t)((a + b - 1) / b); }

hinge_status dev_op_record(VkCommandBuffer cmd, const dev_op *op, uint32_t m, uint32_t pos0)
{
    if (m == 0)
        return HINGE_OK;
    if (m > op->max_m || (op->max_pos && ((uint64_t)pos0 + m > op->max_pos)))
        return HINGE_ERR_RANGE;
    uint32_t push[DEV_OP_PUSH_WORDS];
    memcpy(push, op->push, sizeof push);
    uint32_t gx = op->groups_x;
    if (op->at_m != DEV_PUSH_NONE)
        push[op->at_m] = op->per_pos ? m * op->per_pos : m;
    if (op->at_pos0 != DEV_PUSH_NONE)
        push[op->at_pos0] = pos0;
    if (op->per_pos) { /* element-wise: a grid-stride loop over m * per_pos */
        uint32_t g = div_up((uint64_t)m * op->per_pos, HK_WG);
        gx = g > 65535 ? 65535 : g;
    }
    VkPipeline pipe = op->pipe;
    uint32_t ppg = op->pos_per_group, rpg = op->rows_per_group;
    for (uint32_t i = 0; i < DEV_OP_FEW; i++)
        if (op->few_pipe[i] && m <= 1u << i) {
            pipe = op->few_pipe[i];
            ppg = 1u << i;
            rpg = op->few_rows[i];
            break;
        }
    uint32_t gy = ppg ? div_up(m, ppg) : 1;
    vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    uint32_t row0 = 0;
    for (uint32_t p = 0; p < op->n_parts; p++) {
        if (op->at_row0 != DEV_PUSH_NONE)
            push[op->at_row0] = row0;
        if (op->at_nrows != DEV_PUSH_NONE)
            push[op->at_nrows] = op->part_rows[p];
        if (rpg)
            gx = div_up(op->part_rows[p], rpg);
        vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, op->k->layout, 0, 1, &op->sets[p], 0, NULL);
        vkCmdPushConstants(cmd, op->k->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, op->push_bytes, push);
        vkCmdDispatch(cmd, gx, gy, 1);
        row0 += op->part_rows[p];
    }
    return HINGE_OK;
}

void dev_rope_freqs(float base, uint32_t rope_dim, float *freq)
{
    for (uint32_t i = 0; i < rope_dim / 2; i++)
        freq[i] = powf(base, -2.0f * (float)i / (float)rope_dim);
}
