#version 450
#extension GL_GOOGLE_include_directive : require
// hinge: decode-time y = W x for GPUs: HK_MV_LANES lanes share a row and
// take its chunks in turn, so that neighbouring lanes read neighbouring
// bytes; HK_WG / HK_MV_LANES rows per workgroup. The lanes of a row meet
// through subgroup shuffles (USE_SUBGROUP) or shared memory (split_dot.glsl,
// shared with qkv_rope.comp). Grid: (ceil(nrows / (HK_WG / HK_MV_LANES)), 1).
// Flags (specialization constant), bindings and push-constant block as
// matmul.comp.
#include "common.glsl"

layout(push_constant) uniform P {
    uint ncols, stride, nrows, row0, m, x_off, x_stride, y_off, y_stride;
    float eps;
} p;

#include "split_dot.glsl"

void main()
{
#ifdef USE_SUBGROUP
    // Rows follow subgroups, so that a row's lanes are one subgroup's.
    uint lane = gl_SubgroupInvocationID % HK_MV_LANES;
    uint r = gl_WorkGroupID.x * (HK_WG / HK_MV_LANES) +
             gl_SubgroupID * (gl_SubgroupSize / HK_MV_LANES) + gl_SubgroupInvocationID / HK_MV_LANES;
#else
    uint lane = gl_LocalInvocationIndex % HK_MV_LANES;
    uint r = gl_WorkGroupID.x * (HK_WG / HK_MV_LANES) + gl_LocalInvocationIndex / HK_MV_LANES;
#endif
    bool live = r < p.nrows;
    split_prologue();
    vec2 acc = split_dot((live ? r : 0u) * p.stride, lane, false);
    acc = row_sum(acc, lane);
    if (!live || lane != 0u)
        return;
    float v = acc.x;
    if ((FLAGS & HK_F_SWIGLU) != 0u)
        v = silu(v) * acc.y;
    else if ((FLAGS & HK_F_GEGLU) != 0u)
        v = gelu_tanh(v) * acc.y;
    uint yi = p.y_off + p.row0 + r;
    if ((FLAGS & HK_F_ACC) != 0u)
        v += y[yi];
    y[yi] = v;
}
