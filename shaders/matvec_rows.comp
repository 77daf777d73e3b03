#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// hinge: y = W x for CPU devices (lavapipe): one weight row per invocation,
// each carrying MM_POS positions (1: decode; prefill is matmul_rows.comp's),
// as matmul.comp computes it, shaped for llvmpipe.
//
// llvmpipe runs a subgroup as one SIMD register, and a storage-buffer load
// whose address is not a push-constant expression becomes a loop over the
// lanes, one scalar load per lane and component: loads, not arithmetic, set
// the pace. So:
//  - weights and x are uniform texel buffers of 16-byte texels, which
//    llvmpipe fetches with vector gathers (half the CPU cycles of a Gemma 3
//    270M decode step against storage buffers, measured with perf);
//  - x is shared through the subgroup: lane i of each 8 reads vec4 i of a
//    32-weight chunk and the lanes swap them with subgroupShuffle (register
//    moves), one vec4 per lane per chunk and position instead of eight. The
//    rms of x (HK_F_NORM) is summed the same way.
//  - weights are read in the widest aligned pieces their layout allows
//    (kernel_abi.h), each once: q4_k and q6_k a 256-weight block at a time
//    (scales once per block, each quant word once), q5_0 four chunks at a
//    time (their high bits in one uvec4), the rest a chunk at a time.
//
// Needs subgroup shuffles and arithmetic in subgroups of >= 8 consecutive
// invocations. Every lane runs every iteration (the shuffles need them all):
// rows past the end repeat the last row and are not stored, positions past m
// repeat the last and are not stored. Grid: (ceil(nrows / (HK_WG * RPL)),
// ceil(m / MM_POS)), RPL (specialization constant 2: 1, 2 or 4) rows per
// invocation. Flags (specialization constant), bindings and push
// block as matmul.comp; the row code is rows_dot.glsl (shared with
// qkv_rope.comp).
#include "common.glsl"

#ifndef MM_POS
#define MM_POS 1
#endif

layout(push_constant) uniform P {
    uint ncols, stride, nrows, row0, m, x_off, x_stride, y_off, y_stride;
    float eps;
} p;

#include "rows_dot.glsl"

// acc, acc2 of row `row` into y.
void store(uint row, uint j0)
{
    [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
        if (j0 + t >= p.m)
            break;
        float v = acc[t];
        if ((FLAGS & HK_F_SWIGLU) != 0u)
            v = silu(v) * acc2[t];
        else if ((FLAGS & HK_F_GEGLU) != 0u)
            v = gelu_tanh(v) * acc2[t];
        uint yi = p.y_off + (j0 + t) * p.y_stride + p.row0 + row;
        if ((FLAGS & HK_F_ACC) != 0u)
            v += y[yi];
        y[yi] = v;
    }
}

void one_row(uint k, uint j0)
{
    uint row = gl_WorkGroupID.x * HK_WG * RPL + k * HK_WG + gl_LocalInvocationIndex;
    [[unroll]] for (uint t = 0u; t < MM_POS; t++) {
        acc[t] = 0.0;
        acc2[t] = 0.0;
    }
    row_dot(min(row, p.nrows - 1u) * p.stride);
    if (row < p.nrows)
        store(row, j0);
}

void main()
{
    // RPL rows per invocation, HK_WG apart: the workgroup's HK_WG * RPL rows
    uint j0 = gl_WorkGroupID.y * MM_POS;
    prologue(j0);
    if (RPL == 1u) { // (no loop: llvmpipe keeps a loop of one trip around the row, ~20% slower)
        uint row = gl_GlobalInvocationID.x;
        row_dot(min(row, p.nrows - 1u) * p.stride);
        if (row < p.nrows)
            store(row, j0);
        return;
    }
    // (unrolled: llvmpipe keeps a loop around the row, 5-15% slower)
    one_row(0u, j0);
    one_row(1u, j0);
    if (RPL > 2u) {
        one_row(2u, j0);
        one_row(3u, j0);
    }
    if (RPL > 4u) {
        one_row(4u, j0);
        one_row(5u, j0);
        one_row(6u, j0);
        one_row(7u, j0);
    }
}
