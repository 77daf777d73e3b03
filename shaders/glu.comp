#version 450
#extension GL_GOOGLE_include_directive : require
// hinge: a[i] = act(a[i]) * b[i] for i < n, act = silu (HK_F_SWIGLU) or
// tanh-GELU (HK_F_GEGLU): model/ops.c op_swiglu / op_geglu, for when gate
// and up were not fused into the matrix product. Grid (ceil(n / HK_WG)
// capped, 1); the invocations stride over n.
#include "common.glsl"

layout(local_size_x = HK_WG) in;

layout(binding = HK_EW_B_A) buffer A { float a[]; };
layout(binding = HK_EW_B_B) readonly buffer B { float b[]; };

layout(push_constant) uniform P {
    uint n;
    uint flags;
} p;

void main()
{
    uint step = gl_NumWorkGroups.x * HK_WG;
    bool gelu = (p.flags & HK_F_GEGLU) != 0u;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += step) {
        float g = a[i];
        a[i] = (gelu ? gelu_tanh(g) : silu(g)) * b[i];
    }
}
