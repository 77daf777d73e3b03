// hinge: RoPE's angles, shared by rope_kv.comp and qkv_rope.comp.
#ifndef HINGE_ROPE_GLSL
#define HINGE_ROPE_GLSL

// cos and sin of t, computed here rather than with the built-ins: Vulkan
// only promises 2^-11 absolute error for sin/cos, and large angles need an
// exact reduction. t - j * pi/2 in three parts (j * P1 and j * P2 exact for
// j < 2^13, t < ~12800 rad: positions beyond that lose ~1 ulp per doubling),
// `precise` so that no compiler regroups it, then cephes' sinf/cosf
// polynomials on [-pi/4, pi/4] (about 1 ulp) and the quadrant of j.
vec2 cos_sin(float t)
{
    const float P1 = 1.5703125, P2 = 4.837512969970703125e-4, P3 = 7.54978995489188216e-8;
    float j = round(t * 0.6366197723675814);
    precise float r = ((t - j * P1) - j * P2) - j * P3;
    float z = r * r;
    float sn = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
    float cs = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
    uint q = uint(int(j)) & 3u;
    vec2 v = q == 0u ? vec2(cs, sn) : q == 1u ? vec2(-sn, cs) : q == 2u ? vec2(-cs, -sn) : vec2(sn, -cs);
    return v;
}

#endif
