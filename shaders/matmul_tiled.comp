#version 450
#extension GL_GOOGLE_include_directive : require
// hinge: y = W x for prefill on GPUs, in shared-memory tiles. A workgroup
// computes a tile of HK_MT_ROWS weight rows x HK_MT_POS positions, one
// 32-weight chunk of the rows at a time:
//  1. the first HK_MT_ROWS invocations each dequantize their row's chunk
//     into shared memory (the next HK_MT_ROWS that of W2, for the GLU
//     flags), and all of them load the positions' 32 inputs, once for the
//     whole tile: each weight chunk is read and decoded once per HK_MT_POS
//     positions (matmul.comp: once per HK_MM_POS, by every invocation for
//     its own row);
//  2. each invocation multiplies 2 rows by 4 positions out of shared
//     memory (8 accumulators; 16 with W2): 6 shared loads per 8 FMAs.
// Shared memory: (2 HK_MT_ROWS x 33 + HK_MT_POS x 32) floats, 10.5 KiB.
//
// Bindings, push block and flags as matmul.comp, less HK_F_NORM and
// HK_F_RESNORM (the host keeps matmul.comp for those), and rows a whole
// number of chunks. Grid: (ceil(nrows / HK_MT_ROWS), ceil(m / HK_MT_POS)).
#include "common.glsl"

layout(local_size_x = HK_WG) in;

layout(binding = HK_MM_B_W) readonly buffer Wa { uint wa[]; };
layout(binding = HK_MM_B_W) readonly buffer Wa4 { uvec4 wa4[]; };
layout(binding = HK_MM_B_W2) readonly buffer Wb { uint wb[]; };
layout(binding = HK_MM_B_W2) readonly buffer Wb4 { uvec4 wb4[]; };
layout(binding = HK_MM_B_X) readonly buffer X4 { vec4 x4[]; };
layout(binding = HK_MM_B_Y) buffer Y { float y[]; };

layout(push_constant) uniform P {
    uint ncols, stride, nrows, row0, m, x_off, x_stride, y_off, y_stride;
    float eps; // (unused: no norm here)
} p;

layout(constant_id = 0) const uint FLAGS = 0u; // HK_F_ACC, HK_F_SWIGLU, HK_F_GEGLU

#define W1(i) wa[i]
#define W4(i) wa4[i]
#define DQ32 dq32_a
#define WEL wel_a
#include "dequant.glsl"
#undef W1
#undef W4
#undef DQ32
#undef WEL
#define W1(i) wb[i]
#define W4(i) wb4[i]
#define DQ32 dq32_b
#define WEL wel_b
#define DQ_SUB SUB_B
#include "dequant.glsl"

const bool GLU = (FLAGS & (HK_F_SWIGLU | HK_F_GEGLU)) != 0u;
const uint WS = HK_CHUNK + 1u; // a row's stride in ws: one float apart, for the banks

shared float ws[2u * HK_MT_ROWS * WS]; // the tile's chunk of W (rows 0..), then W2's
shared vec4 xs[HK_MT_POS * 8u];        // the positions' 32 inputs: vec4 k of position t at 8t + k

// Chunk c of row r of the bound W (second: W2), dequantized into ws.
void stage_row(uint r, uint c, bool second)
{
    vec4 q[8];
    vec2 sc, mn;
    uint rb = r * p.stride;
    if (second)
        dq32_b(rb, c, p.ncols, q, sc, mn);
    else
        dq32_a(rb, c, p.ncols, q, sc, mn);
    uint base = ((second ? HK_MT_ROWS : 0u) + gl_LocalInvocationIndex % HK_MT_ROWS) * WS;
    [[unroll]] for (uint k = 0u; k < 8u; k++) {
        vec4 w = q[k] * sc[k >> 2] + mn[k >> 2];
        ws[base + 4u * k] = w.x;
        ws[base + 4u * k + 1u] = w.y;
        ws[base + 4u * k + 2u] = w.z;
        ws[base + 4u * k + 3u] = w.w;
    }
}

void main()
{
    uint li = gl_LocalInvocationIndex;
    uint r0 = gl_WorkGroupID.x * HK_MT_ROWS, j0 = gl_WorkGroupID.y * HK_MT_POS;
    // step 2's share: rows rr, rr + 1 and positions tt .. tt + 3 of the tile
    uint rr = (li % (HK_MT_ROWS / 2u)) * 2u, tt = (li / (HK_MT_ROWS / 2u)) * 4u;
    float acc[8], acc2[8];
    [[unroll]] for (uint i = 0u; i < 8u; i++) {
        acc[i] = 0.0;
        acc2[i] = 0.0;
    }
    // step 1's share: a row to decode (past the end: the last, never stored)
    // and two vec4s of one position's input (past m: the last, never stored)
    uint srow = min(r0 + li % HK_MT_ROWS, p.nrows - 1u);
    bool stage = li < HK_MT_ROWS || GLU;
    uint xt = li / 4u, xk = (li % 4u) * 2u;
    uint xb = (p.x_off + min(j0 + xt, p.m - 1u) * p.x_stride) >> 2;
    uint nchunks = p.ncols / HK_CHUNK;
    for (uint c = 0u; c < nchunks; c++) {
        if (stage)
            stage_row(srow, c, li >= HK_MT_ROWS);
        xs[8u * xt + xk] = x4[xb + 8u * c + xk];
        xs[8u * xt + xk + 1u] = x4[xb + 8u * c + xk + 1u];
        barrier();
        for (uint k4 = 0u; k4 < 8u; k4++) {
            vec4 xv[4];
            [[unroll]] for (uint t = 0u; t < 4u; t++)
                xv[t] = xs[8u * (tt + t) + k4];
            [[unroll]] for (uint i = 0u; i < 2u; i++) {
                uint b = (rr + i) * WS + 4u * k4;
                vec4 w = vec4(ws[b], ws[b + 1u], ws[b + 2u], ws[b + 3u]);
                [[unroll]] for (uint t = 0u; t < 4u; t++)
                    acc[4u * i + t] += dot(w, xv[t]);
                if (GLU) {
                    b += HK_MT_ROWS * WS;
                    vec4 u = vec4(ws[b], ws[b + 1u], ws[b + 2u], ws[b + 3u]);
                    [[unroll]] for (uint t = 0u; t < 4u; t++)
                        acc2[4u * i + t] += dot(u, xv[t]);
                }
            }
        }
        barrier();
    }
    [[unroll]] for (uint i = 0u; i < 2u; i++) {
        uint r = r0 + rr + i;
        [[unroll]] for (uint t = 0u; t < 4u; t++) {
            uint j = j0 + tt + t;
            if (r >= p.nrows || j >= p.m)
                continue;
            float v = acc[4u * i + t];
            if ((FLAGS & HK_F_SWIGLU) != 0u)
                v = silu(v) * acc2[4u * i + t];
            else if ((FLAGS & HK_F_GEGLU) != 0u)
                v = gelu_tanh(v) * acc2[4u * i + t];
            uint yi = p.y_off + j * p.y_stride + p.row0 + r;
            if ((FLAGS & HK_F_ACC) != 0u)
                v += y[yi];
            y[yi] = v;
        }
    }
}
