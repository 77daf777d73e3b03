// hinge: a row of one weight binding times a vector in shared memory, for
// layer.comp. Included once per binding after dequant.glsl, with DOT the
// name of the function to define, DQ32 and WEL that binding's decoder and
// element reader (see dequant.glsl).
// DOT(rb, xb, n): the row at word rb (n weights) . sm[xb .. xb + n).
float DOT(uint rb, uint xb, uint n)
{
    uint nc = n / HK_CHUNK;
    float acc = 0.0;
    for (uint c = 0u; c < nc; c++) {
        vec4 q[8];
        vec2 sc, mn;
        DQ32(rb, c, n, q, sc, mn);
        uint b = xb + c * HK_CHUNK;
        [[unroll]] for (uint k = 0u; k < 8u; k++) {
            uint i = b + 4u * k;
            vec4 xv = vec4(sm[i], sm[i + 1u], sm[i + 2u], sm[i + 3u]);
            acc += sc[k >> 2] * dot(q[k], xv) + mn[k >> 2] * (xv.x + xv.y + xv.z + xv.w);
        }
    }
#ifdef HAS_TAIL
    for (uint i = nc * HK_CHUNK; i < n; i++)
        acc += WEL(rb, i) * sm[xb + i];
#endif
    return acc;
}
