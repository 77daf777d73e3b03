/* hinge: Unicode code point properties and UTF-8, for the byte-level BPE
 * pre-tokenizers. The tables are generated at build time from the Unicode
 * Character Database (Debian's unicode-data) by model/unicode_gen.py. */
#ifndef HINGE_UNICODE_H
#define HINGE_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* General categories, in the order of GC in unicode_gen.py (the table's
 * values). Unassigned code points are UNI_CN. */
typedef enum uni_gc {
    UNI_CN, UNI_LU, UNI_LL, UNI_LT, UNI_LM, UNI_LO, UNI_MN, UNI_MC, UNI_ME, UNI_ND,
    UNI_NL, UNI_NO, UNI_PC, UNI_PD, UNI_PS, UNI_PE, UNI_PI, UNI_PF, UNI_PO, UNI_SM,
    UNI_SC, UNI_SK, UNI_SO, UNI_ZS, UNI_ZL, UNI_ZP, UNI_CC, UNI_CF, UNI_CS, UNI_CO,
} uni_gc;

enum {
    UNI_MAX = 0x10ffff,
    UNI_INVALID = 0x110000, /* uni_decode: not a well-formed UTF-8 sequence */
};

/* The generated table (unicode_table.c): per code point, the uni_gc in bits
 * 0..4 and the White_Space property in bit 7. */
extern const uint16_t uni_block[(UNI_MAX + 1) >> 8];
extern const uint8_t uni_row[][256];

static inline uint8_t uni_props(uint32_t cp)
{
    return cp > UNI_MAX ? (uint8_t)UNI_CN : uni_row[uni_block[cp >> 8]][cp & 255];
}

static inline uni_gc uni_category(uint32_t cp) { return (uni_gc)(uni_props(cp) & 31); }

/* \p{L}: Lu, Ll, Lt, Lm, Lo. */
static inline bool uni_is_letter(uint32_t cp)
{
    uni_gc c = uni_category(cp);
    return c >= UNI_LU && c <= UNI_LO;
}

/* \p{N}: Nd, Nl, No. */
static inline bool uni_is_number(uint32_t cp)
{
    uni_gc c = uni_category(cp);
    return c >= UNI_ND && c <= UNI_NO;
}

/* \s: the White_Space property (PropList.txt), as in Rust's and Python's
 * regular expressions. */
static inline bool uni_is_space(uint32_t cp) { return uni_props(cp) & 0x80; }

/* Decodes the UTF-8 sequence at s (n > 0 bytes available) and stores its
 * length in *len. Returns the code point, or UNI_INVALID with *len = 1 when
 * s does not start a well-formed sequence (a stray continuation byte, a
 * truncated sequence, an overlong form, a surrogate, or beyond U+10FFFF). */
uint32_t uni_decode(const char *s, size_t n, size_t *len);

/* Writes cp (<= UNI_MAX) as UTF-8 to out; returns its length, 1..4. */
size_t uni_encode(uint32_t cp, char out[4]);

#endif
