/* Activation frames: see transport.h for the layout. */
#include <math.h>
#include <string.h>

#include "quant.h"
#include "transport.h"

/* ---- little-endian access, independent of the host's byte order ---- */

static inline void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static inline void put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put_u32(p, u);
}

static inline float get_f32(const uint8_t *p)
{
    uint32_t u = get_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- codecs ---- */

const char *tx_codec_name(tx_codec c)
{
    switch (c) {
    case TX_CODEC_F32: return "f32";
    case TX_CODEC_F16: return "f16";
    case TX_CODEC_Q8: return "q8";
    }
    return "unknown";
}

hinge_status tx_codec_parse(const char *name, tx_codec *out)
{
    static const tx_codec all[] = {TX_CODEC_F32, TX_CODEC_F16, TX_CODEC_Q8};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, tx_codec_name(all[i])) == 0) {
            *out = all[i];
            return HINGE_OK;
        }
    }
    return HINGE_ERR_INVALID;
}

size_t tx_codec_row_bytes(tx_codec c, uint32_t dim)
{
    if (dim == 0 || dim > TX_FRAME_MAX_DIM)
        return 0;
    switch (c) {
    case TX_CODEC_F32: return (size_t)dim * 4;
    case TX_CODEC_F16: return 4 + (size_t)dim * 2;
    case TX_CODEC_Q8: return 4 + (size_t)dim;
    }
    return 0;
}

hinge_status tx_frame_size(tx_codec c, uint32_t n, uint32_t dim, size_t *bytes)
{
    if (tx_codec_row_bytes(c, 1) == 0)
        return HINGE_ERR_INVALID;
    size_t row = tx_codec_row_bytes(c, dim);
    if (row == 0 || n == 0 || n > TX_FRAME_MAX_POSITIONS)
        return HINGE_ERR_RANGE;
    /* row <= 2^18 and n <= 2^20: the product fits in 64 bits */
    uint64_t total = (uint64_t)TX_FRAME_HEADER_BYTES + (uint64_t)n * row;
    if (total > SIZE_MAX)
        return HINGE_ERR_RANGE;
    *bytes = (size_t)total;
    return HINGE_OK;
}

/* ---- encoding ---- */

enum { F16_MAX = 65504 };

/* The f16 row scale: 1, or the smallest power of two that brings absmax
 * within f16's range (Gemma's residual stream holds values near 1e5).
 * Scaling by a power of two is exact, so precision stays f16's 2^-11. */
static float f16_row_scale(float absmax)
{
    float s = 1.0f;
    while (absmax / s > (float)F16_MAX)
        s *= 2.0f;
    return s;
}

static hinge_status encode_row(tx_codec c, const float *x, uint32_t dim, uint8_t *p, uint32_t row, char *err,
                               size_t errlen)
{
    float absmax = 0.0f;
    for (uint32_t j = 0; j < dim; j++) {
        if (!isfinite(x[j]))
            return hinge_fail(err, errlen, HINGE_ERR_RANGE, "row %u column %u is not finite", row, j);
        float a = fabsf(x[j]);
        absmax = a > absmax ? a : absmax;
    }
    if (c == TX_CODEC_F32) {
        for (uint32_t j = 0; j < dim; j++)
            put_f32(p + 4 * (size_t)j, x[j]);
    } else if (c == TX_CODEC_F16) {
        float scale = f16_row_scale(absmax), inv = 1.0f / scale; /* both powers of two: exact */
        put_f32(p, scale);
        for (uint32_t j = 0; j < dim; j++)
            put_u16(p + 4 + 2 * (size_t)j, quant_f32_to_f16(x[j] * inv));
    } else {
        /* In double: 127/absmax overflows float for a subnormal absmax.
         * (Such rows decode to about zero: scale underflows; harmless for
         * activations, whose rows are far from 1e-38.) */
        double inv = absmax > 0.0f ? 127.0 / (double)absmax : 0.0;
        put_f32(p, absmax / 127.0f);
        for (uint32_t j = 0; j < dim; j++) {
            double q = round((double)x[j] * inv);
            q = q > 127.0 ? 127.0 : (q < -127.0 ? -127.0 : q);
            p[4 + j] = (uint8_t)(int8_t)q;
        }
    }
    return HINGE_OK;
}

static void write_header(uint8_t *p, tx_codec c, uint16_t flags, uint32_t pos, uint32_t n, uint32_t dim,
                         uint64_t payload_len)
{
    put_u32(p + 0, TX_FRAME_MAGIC);
    p[4] = TX_PROTOCOL_VERSION;
    p[5] = (uint8_t)c;
    put_u16(p + 6, flags);
    put_u32(p + 8, pos);
    put_u32(p + 12, n);
    put_u32(p + 16, dim);
    put_u32(p + 20, 0);
    put_u64(p + 24, payload_len);
}

hinge_status tx_frame_encode(tx_codec c, uint16_t flags, uint32_t pos, uint32_t n, uint32_t dim,
                             const float *hidden, void *buf, size_t cap, size_t *len, char *err,
                             size_t errlen)
{
    size_t total;
    hinge_status s = tx_frame_size(c, n, dim, &total);
    if (s != HINGE_OK)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "cannot encode codec %d, n %u, dim %u", (int)c, n, dim);
    if ((flags & ~(unsigned)TX_FLAGS_KNOWN) || flags == TX_FLAGS_KNOWN)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "unknown frame flags 0x%x", flags);
    if ((flags & TX_FLAG_VERIFY) && (n < 2 || n > TX_VERIFY_MAX))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "a verify frame has 2..%d rows, not %u", TX_VERIFY_MAX, n);
    if (!hidden || !buf)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "NULL buffer");
    if (cap < total)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "frame needs %zu bytes, buffer holds %zu", total, cap);
    if ((uint64_t)pos + n > UINT32_MAX)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "positions %u + %u overflow", pos, n);
    uint8_t *p = buf;
    size_t row = tx_codec_row_bytes(c, dim);
    for (uint32_t i = 0; i < n; i++) {
        s = encode_row(c, hidden + (size_t)i * dim, dim, p + TX_FRAME_HEADER_BYTES + (size_t)i * row, i, err,
                       errlen);
        if (s != HINGE_OK)
            return s;
    }
    write_header(p, c, flags, pos, n, dim, (uint64_t)n * row);
    *len = total;
    return HINGE_OK;
}

/* ---- decoding ---- */

static hinge_status check_header(const tx_frame_header *h, const tx_frame_limits *lim, char *err, size_t errlen)
{
    if (h->magic != TX_FRAME_MAGIC)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "bad magic 0x%08x (expected 0x%08x, \"HNGA\")", h->magic,
                          (unsigned)TX_FRAME_MAGIC);
    if (h->version != TX_PROTOCOL_VERSION)
        return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED, "frame version %u (this edge speaks %d)",
                          h->version, TX_PROTOCOL_VERSION);
    if (tx_codec_row_bytes((tx_codec)h->codec, 1) == 0)
        return hinge_fail(err, errlen, HINGE_ERR_UNSUPPORTED, "unknown codec %u", h->codec);
    if (h->codec != (uint8_t)lim->codec)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "codec %s, but the session uses %s",
                          tx_codec_name((tx_codec)h->codec), tx_codec_name(lim->codec));
    if ((h->flags & ~(unsigned)TX_FLAGS_KNOWN) || h->flags == TX_FLAGS_KNOWN)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "unknown flags 0x%x (or NO_SAMPLE with VERIFY)", h->flags);
    if (h->reserved != 0)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "reserved field is %u, not 0", h->reserved);
    if (h->dim != lim->dim)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "dim %u, but the model's n_embd is %u", h->dim, lim->dim);
    if (h->n == 0)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "frame of 0 positions");
    uint32_t max_n = lim->max_n < TX_FRAME_MAX_POSITIONS ? lim->max_n : TX_FRAME_MAX_POSITIONS;
    if (h->n > max_n)
        return hinge_fail(err, errlen, HINGE_ERR_RANGE, "frame of %u positions, at most %u allowed", h->n, max_n);
    if ((h->flags & TX_FLAG_VERIFY) && (h->n < 2 || h->n > TX_VERIFY_MAX))
        return hinge_fail(err, errlen, HINGE_ERR_RANGE, "a verify frame of %u positions: 2..%d allowed", h->n,
                          TX_VERIFY_MAX);
    size_t row = tx_codec_row_bytes((tx_codec)h->codec, h->dim);
    if (row == 0 || h->payload_len != (uint64_t)h->n * row)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT,
                          "payload length %llu, but %u rows of %s dim %u take %llu bytes",
                          (unsigned long long)h->payload_len, h->n, tx_codec_name((tx_codec)h->codec), h->dim,
                          (unsigned long long)((uint64_t)h->n * row));
    return HINGE_OK;
}

hinge_status tx_frame_parse_header(const void *buf, size_t len, const tx_frame_limits *lim,
                                   tx_frame_header *out, char *err, size_t errlen)
{
    if (!buf || len < TX_FRAME_HEADER_BYTES)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "truncated frame header: %zu of %d bytes", buf ? len : 0,
                          TX_FRAME_HEADER_BYTES);
    const uint8_t *p = buf;
    tx_frame_header h = {
        .magic = get_u32(p),
        .version = p[4],
        .codec = p[5],
        .flags = get_u16(p + 6),
        .pos = get_u32(p + 8),
        .n = get_u32(p + 12),
        .dim = get_u32(p + 16),
        .reserved = get_u32(p + 20),
        .payload_len = get_u64(p + 24),
    };
    hinge_status s = check_header(&h, lim, err, errlen);
    if (s != HINGE_OK)
        return s;
    *out = h;
    return HINGE_OK;
}

static hinge_status decode_row(tx_codec c, const uint8_t *p, uint32_t dim, float *y, uint32_t row, char *err,
                               size_t errlen)
{
    if (c == TX_CODEC_F32) {
        for (uint32_t j = 0; j < dim; j++) {
            y[j] = get_f32(p + 4 * (size_t)j);
            if (!isfinite(y[j]))
                return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "row %u column %u is not finite", row, j);
        }
    } else if (c == TX_CODEC_F16) {
        float scale = get_f32(p);
        int e;
        if (!isfinite(scale) || !(scale >= 1.0f) || frexpf(scale, &e) != 0.5f)
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "row %u has scale %g, not a power of two >= 1", row,
                              (double)scale);
        for (uint32_t j = 0; j < dim; j++) {
            uint16_t h = get_u16(p + 4 + 2 * (size_t)j);
            if ((h & 0x7c00u) == 0x7c00u) /* exponent all ones: inf or NaN */
                return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "row %u column %u is not finite", row, j);
            y[j] = scale * quant_f16_to_f32(h);
            if (!isfinite(y[j]))
                return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "row %u column %u is not finite", row, j);
        }
    } else {
        float scale = get_f32(p);
        if (!isfinite(scale) || scale < 0.0f)
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "row %u has scale %g", row, (double)scale);
        for (uint32_t j = 0; j < dim; j++) {
            int8_t q = (int8_t)p[4 + j];
            if (q == -128)
                return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "row %u column %u holds -128", row, j);
            y[j] = scale * (float)q;
            if (!isfinite(y[j]))
                return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "row %u column %u is not finite", row, j);
        }
    }
    return HINGE_OK;
}

hinge_status tx_frame_decode(const void *buf, size_t len, const tx_frame_limits *lim, float *out,
                             size_t out_cap, tx_frame_header *hdr, char *err, size_t errlen)
{
    tx_frame_header h;
    hinge_status s = tx_frame_parse_header(buf, len, lim, &h, err, errlen);
    if (s != HINGE_OK)
        return s;
    if (len - TX_FRAME_HEADER_BYTES != h.payload_len)
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "payload is %zu bytes, header says %llu",
                          len - TX_FRAME_HEADER_BYTES, (unsigned long long)h.payload_len);
    if (!out || out_cap / h.dim < h.n)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "%u rows of %u do not fit in %zu floats", h.n, h.dim,
                          out_cap);
    const uint8_t *p = (const uint8_t *)buf + TX_FRAME_HEADER_BYTES;
    size_t row = tx_codec_row_bytes((tx_codec)h.codec, h.dim);
    for (uint32_t i = 0; i < h.n; i++) {
        s = decode_row((tx_codec)h.codec, p + (size_t)i * row, h.dim, out + (size_t)i * h.dim, i, err, errlen);
        if (s != HINGE_OK)
            return s;
    }
    if (hdr)
        *hdr = h;
    return HINGE_OK;
}
