// hinge: definitions shared by the kernels. Included once per shader.
#ifndef HINGE_COMMON_GLSL
#define HINGE_COMMON_GLSL

#extension GL_EXT_control_flow_attributes : require

#include "kernel_abi.h"

// Weight types as numbers, for `#if WT == TY_Q4_K` (and for dequant.glsl's
// DQ_T, which lets one shader read two types).
#define TY_F32 1
#define TY_F16 2
#define TY_Q8_0 3
#define TY_Q4_0 4
#define TY_Q5_0 5
#define TY_Q4_K 6
#define TY_Q6_K 7
#define TY_Q4_1 8

// The weight type of this variant: exactly one of T_F32, T_F16, T_Q8_0,
// T_Q4_0, T_Q5_0, T_Q4_K, T_Q6_K, T_Q4_1 is defined by the build (kernels without
// weights define none); WT is its number. A second type (qkv_rope.comp's V
// rows) comes as T2 = TY_* on the command line.
#if defined(T_F32)
#define WT TY_F32
#elif defined(T_F16)
#define WT TY_F16
#elif defined(T_Q8_0)
#define WT TY_Q8_0
#elif defined(T_Q4_0)
#define WT TY_Q4_0
#elif defined(T_Q5_0)
#define WT TY_Q5_0
#elif defined(T_Q4_K)
#define WT TY_Q4_K
#elif defined(T_Q6_K)
#define WT TY_Q6_K
#elif defined(T_Q4_1)
#define WT TY_Q4_1
#else
#define WT 0
#endif
#if WT == TY_Q4_K || WT == TY_Q4_1
#define HAS_MIN 1 // weight = scale * q + min
#endif
#if defined(HAS_MIN) || WT == TY_Q6_K
#define MAY_MIN 1 // so, or for a sub-layout (q6_k's q2_k): MIN_A in dequant.glsl
#endif
#if WT == TY_F32 || WT == TY_F16
#define HAS_TAIL 1 // rows need not be a whole number of chunks
#endif

// Four int8 in a word, low byte first, as floats.
vec4 s8x4(uint v)
{
    int i = int(v);
    return vec4(ivec4(i << 24, i << 16, i << 8, i) >> 24);
}

// Nibbles 0, 2, 4, 6 (shift 0) or 1, 3, 5, 7 (shift 4) of a word.
vec4 nib4(uint v, uint shift)
{
    return vec4((uvec4(v, v >> 8, v >> 16, v >> 24) >> shift) & 0xFu);
}

// Bits b, b+1, b+2, b+3 of h, each as 0 or 16.
vec4 hbit4(uint h, uint b)
{
    return vec4(((uvec4(h) >> uvec4(b, b + 1u, b + 2u, b + 3u)) & 1u) << 4);
}

// Bit b of each byte of v.
vec4 bit4(uint v, uint b)
{
    return vec4((uvec4(v, v >> 8, v >> 16, v >> 24) >> b) & 1u);
}

// q5_k: a chunk's quants q plus 16 where bit s of the byte of h0, h1 (byte l: weight l) is set.
void add_hbits(uvec4 h0, uvec4 h1, uint s, inout vec4 q[8])
{
    [[unroll]] for (uint k = 0u; k < 4u; k++) {
        q[k] += bit4(h0[k], s) * 16.0;
        q[k + 4u] += bit4(h1[k], s) * 16.0;
    }
}

// Two bits of each byte of v at shift s (0, 2, 4, 6).
vec4 b2x4(uint v, uint s)
{
    return vec4((uvec4(v, v >> 8, v >> 16, v >> 24) >> s) & 3u);
}

// IQ4_NL's values (model/quant_k.c quant_iq4_nl_values) for the nibbles of
// v at shift 0 or 4 (as nib4): the int8 table in four words, picked with
// selects and a shift (no indexed array: a CPU device's SIMD lanes would
// each take a load).
vec4 iq4nl4(uint v, uint shift)
{
    uvec4 i = (uvec4(v, v >> 8, v >> 16, v >> 24) >> shift) & 0xFu;
    uvec4 lo = mix(uvec4(0xBFAD9881u), uvec4(0xF6EADDCFu), greaterThanEqual(i, uvec4(4u)));
    uvec4 hi = mix(uvec4(0x26190D01u), uvec4(0x71594535u), greaterThanEqual(i, uvec4(12u)));
    uvec4 w = mix(lo, hi, greaterThanEqual(i, uvec4(8u)));
    return vec4(ivec4(w << (24u - 8u * (i & 3u))) >> 24);
}

// Two bits of each byte of v at shift s (0, 2, 4, 6), times 16.
vec4 h2x4(uint v, uint s)
{
    return vec4(((uvec4(v, v >> 8, v >> 16, v >> 24) >> s) & 3u) << 4);
}

float silu(float x)
{
    return x / (1.0 + exp(-x));
}

// tanh-approximated GELU, as model/ops.c op_geglu. tanh is written through
// exp(-2|a|) so that large |a| cannot overflow into inf/inf.
float gelu_tanh(float x)
{
    const float k = 0.7978845608028654;
    float a = k * (x + 0.044715 * x * x * x);
    float t = exp(-2.0 * abs(a));
    float th = sign(a) * (1.0 - t) / (1.0 + t);
    return 0.5 * x * (1.0 + th);
}

#endif
