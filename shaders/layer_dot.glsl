// hinge: rows of one matrix (two: DQ32B) times a vector in shared memory,
// for layer.comp. Included after dequant.glsl, with DOT the name of the
// function to define, DQ32 and WEL the weights' decoder and element reader
// (see dequant.glsl), and for gate | up DQ32B and WELB those of a second
// matrix read with the same rows and input.
//
// DOT(base, base2, r0, nr, stride, nrows, xb, n, acc, acc2): acc[k]
// (acc2[k]) = row r0 + k * HK_WG (clamped to nrows - 1) of the matrix at
// word base (base2), n weights from word base + row * stride, .
// sm[xb .. xb + n), for k < nr <= LY_NR (nr may be 0: every
// invocation runs the chunks, for the shuffles). The input is read once for
// all of an invocation's rows, and with USE_SHUFFLE (CPU devices) one vec4
// a lane, swapped through the subgroup: llvmpipe loads shared memory one
// lane at a time (see matvec_rows.comp).
void DOT(uint base, uint base2, uint r0, uint nr, uint stride, uint nrows, uint xb, uint n, out float acc[LY_NR],
         out float acc2[LY_NR])
{
    uint rb[LY_NR], rb2[LY_NR];
    [[unroll]] for (uint k = 0u; k < LY_NR; k++) {
        rb[k] = base + min(r0 + k * HK_WG, nrows - 1u) * stride;
        rb2[k] = base2 + min(r0 + k * HK_WG, nrows - 1u) * stride;
        acc[k] = 0.0;
        acc2[k] = 0.0;
    }
    uint nc = n / HK_CHUNK;
    for (uint c = 0u; c < nc; c++) {
        vec4 xv[8];
        float xs[2] = float[2](0.0, 0.0);
#ifdef USE_SHUFFLE
        // lane k of each 8 loads the chunk's vec4 k; the lanes swap them
        uint i = xb + c * HK_CHUNK + 4u * (gl_SubgroupInvocationID & 7u);
        vec4 mine = vec4(sm[i], sm[i + 1u], sm[i + 2u], sm[i + 3u]);
        [[unroll]] for (uint k = 0u; k < 8u; k++)
            xv[k] = SHARE8(mine, k);
#else
        [[unroll]] for (uint k = 0u; k < 8u; k++) {
            uint i = xb + c * HK_CHUNK + 4u * k;
            xv[k] = vec4(sm[i], sm[i + 1u], sm[i + 2u], sm[i + 3u]);
        }
#endif
        [[unroll]] for (uint k = 0u; k < 8u; k++)
            xs[k >> 2] += xv[k].x + xv[k].y + xv[k].z + xv[k].w;
        [[unroll]] for (uint r = 0u; r < LY_NR; r++) {
            if (r >= nr)
                break;
            vec4 q[8];
            vec2 sc, mn;
            DQ32(rb[r], c, n, q, sc, mn);
            vec2 d2 = vec2(0.0);
            [[unroll]] for (uint k = 0u; k < 8u; k++)
                d2[k >> 2] += dot(q[k], xv[k]);
            acc[r] += sc.x * d2.x + sc.y * d2.y + mn.x * xs[0] + mn.y * xs[1];
#ifdef DQ32B
            DQ32B(rb2[r], c, n, q, sc, mn);
            d2 = vec2(0.0);
            [[unroll]] for (uint k = 0u; k < 8u; k++)
                d2[k >> 2] += dot(q[k], xv[k]);
            acc2[r] += sc.x * d2.x + sc.y * d2.y + mn.x * xs[0] + mn.y * xs[1];
#endif
        }
    }
#ifdef HAS_TAIL
    for (uint i = nc * HK_CHUNK; i < n; i++) {
        float xi = sm[xb + i];
        [[unroll]] for (uint r = 0u; r < LY_NR; r++) {
            if (r >= nr)
                break;
            acc[r] += WEL(rb[r], i) * xi;
#ifdef DQ32B
            acc2[r] += WELB(rb2[r], i) * xi;
#endif
        }
    }
#endif
}
