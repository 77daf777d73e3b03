// hinge: workgroup-wide sum and max of one float per invocation, for
// workgroups of HK_WG. With USE_SUBGROUP (subgroup arithmetic supported) the
// subgroups reduce in registers and meet in shared memory; without it a
// shared-memory tree does all of it. Every invocation of the workgroup must
// call these (they contain barriers) and gets the result.
#ifndef HINGE_REDUCE_GLSL
#define HINGE_REDUCE_GLSL

#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

shared float red_buf[HK_WG];

float wg_sum(float v)
{
#ifdef USE_SUBGROUP
    v = subgroupAdd(v);
    if (gl_NumSubgroups == 1u)
        return v;
    if (subgroupElect())
        red_buf[gl_SubgroupID] = v;
    barrier();
    float s = 0.0;
    for (uint i = 0u; i < gl_NumSubgroups; i++)
        s += red_buf[i];
    barrier();
    return s;
#else
    uint l = gl_LocalInvocationIndex;
    red_buf[l] = v;
    barrier();
    for (uint s = HK_WG / 2; s > 0u; s >>= 1) {
        if (l < s)
            red_buf[l] += red_buf[l + s];
        barrier();
    }
    float r = red_buf[0];
    barrier();
    return r;
#endif
}

float wg_max(float v)
{
#ifdef USE_SUBGROUP
    v = subgroupMax(v);
    if (gl_NumSubgroups == 1u)
        return v;
    if (subgroupElect())
        red_buf[gl_SubgroupID] = v;
    barrier();
    float s = red_buf[0];
    for (uint i = 1u; i < gl_NumSubgroups; i++)
        s = max(s, red_buf[i]);
    barrier();
    return s;
#else
    uint l = gl_LocalInvocationIndex;
    red_buf[l] = v;
    barrier();
    for (uint s = HK_WG / 2; s > 0u; s >>= 1) {
        if (l < s)
            red_buf[l] = max(red_buf[l], red_buf[l + s]);
        barrier();
    }
    float r = red_buf[0];
    barrier();
    return r;
#endif
}

#endif
