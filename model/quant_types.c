/* The table of weight types: block sizes, names, f16 conversion. */
#include "quant.h"

#include <string.h>

typedef struct type_info {
    uint32_t type;
    const char *name;
    uint32_t block_elems;
    size_t block_bytes;
} type_info;

static const type_info infos[] = {
    {QT_F32, "f32", 1, 4},
    {QT_F16, "f16", 1, 2},
    {QT_BF16, "bf16", 1, 2},
    {QT_Q4_0, "q4_0", QK_0, sizeof(block_q4_0)},
    {QT_Q4_1, "q4_1", QK_0, sizeof(block_q4_1)},
    {QT_Q5_0, "q5_0", QK_0, sizeof(block_q5_0)},
    {QT_Q5_1, "q5_1", QK_0, sizeof(block_q5_1)},
    {QT_Q8_0, "q8_0", QK_0, sizeof(block_q8_0)},
    {QT_Q4_K, "q4_k", QK_K, sizeof(block_q4_k)},
    {QT_Q6_K, "q6_k", QK_K, sizeof(block_q6_k)},
    {QT_Q2_K, "q2_k", QK_K, sizeof(block_q2_k)},
    {QT_Q3_K, "q3_k", QK_K, sizeof(block_q3_k)},
    {QT_Q5_K, "q5_k", QK_K, sizeof(block_q5_k)},
    {QT_IQ4_NL, "iq4_nl", QK_0, sizeof(block_iq4_nl)},
};

static const type_info *find(uint32_t t)
{
    for (size_t i = 0; i < sizeof infos / sizeof infos[0]; i++)
        if (infos[i].type == t)
            return &infos[i];
    return NULL;
}

bool quant_supported(uint32_t t) { return find(t) != NULL; }

const char *quant_name(uint32_t t)
{
    const type_info *ti = find(t);
    return ti ? ti->name : "unknown";
}

uint32_t quant_block_elems(uint32_t t)
{
    const type_info *ti = find(t);
    return ti ? ti->block_elems : 0;
}

size_t quant_block_bytes(uint32_t t)
{
    const type_info *ti = find(t);
    return ti ? ti->block_bytes : 0;
}

size_t quant_row_bytes(uint32_t t, uint64_t n)
{
    const type_info *ti = find(t);
    if (!ti)
        return 0;
    return (size_t)(n / ti->block_elems) * ti->block_bytes;
}

float quant_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf or nan */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        exp = 113;
        while (!(man & 0x400)) {
            man <<= 1;
            exp--;
        }
        bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t quant_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* below the smallest normal half: subnormal */
        if (absx < 0x33000000u)
            return (uint16_t)sign;
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t r = absx + 0xfff + ((absx >> 13) & 1); /* round to nearest even */
    return (uint16_t)(sign | (((r >> 23) - 112) << 10) | ((r >> 13) & 0x3ff));
}
