#version 450
#extension GL_GOOGLE_include_directive : require
// hinge: a[i] += b[i] for i < n (model/ops.c op_add): the residual add when
// it was not fused into a product (HK_F_ACC) or a norm (HK_F_ADD). Grid
// (ceil(n / HK_WG) capped, 1); the invocations stride over n.
#include "common.glsl"

layout(local_size_x = HK_WG) in;

layout(binding = HK_EW_B_A) buffer A { float a[]; };
layout(binding = HK_EW_B_B) readonly buffer B { float b[]; };

layout(push_constant) uniform P {
    uint n;
    uint flags; // unused; keeps the block the same as glu.comp's
} p;

void main()
{
    uint step = gl_NumWorkGroups.x * HK_WG;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += step)
        a[i] += b[i];
}
