#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// hinge: Y = W X for CPU devices (lavapipe) in prefill: RPL weight rows per
// invocation (specialization constant 2: 1, 2, 4 or 8; HK_WG apart), MM_POS
// positions each (specialization constant 3: HK_MR_POS by default, 1, 2,
// 4 ... for fewer rows, vk_matmul.c's few_positions; llvmpipe unrolls the
// positions once the pipeline's value is known, as for a define: measured).
//
// matvec_rows.comp (decode) explains the shape for llvmpipe: a subgroup is
// one SIMD register, weights and x are texel buffers, and each lane of a
// group of 8 fetches one vec4 of a chunk of x, shared with the others by
// subgroupShuffle (a vpermd per component on x86). The old prefill product
// (matvec_rows.comp with MM_POS 8) paid, per row and position, a texel fetch
// and 32 shuffled components for 32 FMAs, and dequantized each chunk of
// weights for 8 positions only. Here (each measured on Gemma 3 270M):
//  - a chunk is dequantized once for 32 positions (16: 10% slower, 64:
//    slower again, the positions' accumulators no longer fit);
//  - each shuffled vec4 of x serves RPL rows (2 for plain products; the
//    gated ones have W2 for the same x already, and are slower with 2);
//  - the loop takes a vec4 of weights at a time against every position,
//    with fused multiply-adds, rather than a position at a time against
//    all 32 weights with dot().
// Together a third less CPU time per prefill token than the old kernel.
//
// Batch invariance (the edge batches sessions through these kernels and
// needs each row's result the same whatever the batch): the arithmetic of
// one row and one position does not depend on MM_POS, RPL or m. Each chunk
// of weights is dequantized (sc * q + mn) the same way for every position,
// then acc = fma(w, x, acc) weight by weight in the row's order, chunk after
// chunk, then the tail elements of f32/f16 rows the same way. So MM_POS may
// be 1, 2, 4, 8 ... (pipelines by positions count) and RPL chosen by size,
// and a row's result stays the same (rows_dot.glsl's positions contract).
//
// Grid: (ceil(nrows / (HK_WG * RPL)), ceil(m / MM_POS)). Rows past the end
// repeat the last row and positions past m the last position (every lane
// runs every iteration: the shuffles need them all); neither is stored.
// Flags, bindings and push block as matmul.comp; the texel buffers, the
// input's norm (prologue, input4) and the weight decoders (dq32_a, dq32_b)
// are rows_dot.glsl's.
#include "common.glsl"

layout(constant_id = 3) const uint MM_POS_SPEC = HK_MR_POS;
#define MM_POS MM_POS_SPEC

layout(push_constant) uniform P {
    uint ncols, stride, nrows, row0, m, x_off, x_stride, y_off, y_stride;
    float eps;
} p;

#include "rows_dot.glsl"

#define MAX_RPL HK_MR_MAX_RPL // RPL's largest

float ya[MAX_RPL][MM_POS], yb[MAX_RPL][MM_POS]; // W and W2 products of row r, position t

// Chunk c of the row at word rb, dequantized: weight 4k+i is w[k][i].
void chunk(uint rb, uint c, bool second, out vec4 w[8])
{
    vec4 q[8];
    vec2 sc, mn;
    if (second)
        dq32_b(rb, c, p.ncols, q, sc, mn);
    else
        dq32_a(rb, c, p.ncols, q, sc, mn);
    [[unroll]] for (uint k = 0u; k < 8u; k++)
        w[k] = q[k] * sc[k >> 2] + mn[k >> 2];
}

// a + w . xv, one fused multiply-add per weight, in this order.
float fma4(vec4 w, vec4 xv, float a)
{
    return fma(w.w, xv.w, fma(w.z, xv.z, fma(w.y, xv.y, fma(w.x, xv.x, a))));
}

void rows(uint rb[MAX_RPL])
{
    uint nfull = p.ncols / HK_CHUNK;
    for (uint c = 0u; c < nfull; c++) {
        vec4 wa[MAX_RPL][8], wb[MAX_RPL][8];
        [[unroll]] for (uint r = 0u; r < RPL; r++) {
            chunk(rb[r], c, false, wa[r]);
            if (GLU)
                chunk(rb[r], c, true, wb[r]);
        }
        // each position's vec4 of the chunk first, then a vec4 of weights
        // at a time against every position (fewer registers live than a
        // position at a time against all the weights: measured faster)
        vec4 mine[MM_POS];
        [[unroll]] for (uint t = 0u; t < MM_POS; t++)
            mine[t] = input4(t, c * 8u + lane);
        [[unroll]] for (uint k = 0u; k < 8u; k++) {
            [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
                vec4 xv = SHARE8(mine[t], k);
                [[unroll]] for (uint r = 0u; r < RPL; r++) {
                    ya[r][t] = fma4(wa[r][k], xv, ya[r][t]);
                    if (GLU)
                        yb[r][t] = fma4(wb[r][k], xv, yb[r][t]);
                }
            }
        }
    }
#ifdef HAS_TAIL
    for (uint i = nfull * HK_CHUNK; i < p.ncols; i++) {
        [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
            float xv = res1(t, i);
            if (NORM)
                xv = xv * ri[t] * nw(i);
            [[unroll]] for (uint r = 0u; r < RPL; r++) {
                ya[r][t] = fma(wel_a(rb[r], i), xv, ya[r][t]);
                if (GLU)
                    yb[r][t] = fma(wel_b(rb[r], i), xv, yb[r][t]);
            }
        }
    }
#endif
}

void main()
{
    uint j0 = gl_WorkGroupID.y * MM_POS;
    prologue(j0);
    uint row[MAX_RPL], rb[MAX_RPL];
    [[unroll]] for (uint r = 0u; r < RPL; r++) {
        row[r] = gl_WorkGroupID.x * HK_WG * RPL + r * HK_WG + gl_LocalInvocationIndex;
        rb[r] = min(row[r], p.nrows - 1u) * p.stride;
        [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
            ya[r][t] = 0.0;
            yb[r][t] = 0.0;
        }
    }
    rows(rb);
    [[unroll]] for (uint r = 0u; r < RPL; r++) {
        [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
            if (row[r] >= p.nrows || j0 + t >= p.m)
                continue;
            float v = ya[r][t];
            if ((FLAGS & HK_F_SWIGLU) != 0u)
                v = silu(v) * yb[r][t];
            else if ((FLAGS & HK_F_GEGLU) != 0u)
                v = gelu_tanh(v) * yb[r][t];
            uint yi = p.y_off + (j0 + t) * p.y_stride + p.row0 + row[r];
            if ((FLAGS & HK_F_ACC) != 0u)
                v += y[yi];
            y[yi] = v;
        }
    }
}
