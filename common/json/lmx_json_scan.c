/* The JSON scanner: see lmx_json_scan.h. */
#include "lmx_json_scan.h"

#include "lmx_utf8.h"
#include "lmx_util.h"

#include <stdint.h>
#include <string.h>

static inline int hex4(const char *p, const char *end, uint32_t *v)
{
    if (end - p < 4)
        return 0;
    uint32_t x = 0;
    for (int k = 0; k < 4; k++) {
        int h = lmx__hexval((unsigned char)p[k]);
        if (h < 0)
            return 0;
        x = x << 4 | (uint32_t)h;
    }
    *v = x;
    return 1;
}

/* True when some byte of v is '"', '\\' or below 0x20, or (high) at or above 0x80 (SWAR: the
 * classic has-zero-byte test on v ^ '"', v ^ '\\' and v & 0xE0). */
static inline int stop8(uint64_t v, uint64_t high)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\'), c = v & (ones * 0xE0);
    return (((((q - ones) & ~q) | ((b - ones) & ~b) | ((c - ones) & ~c)) & highs) | (v & high)) != 0;
}

#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#define JSCAN_SSE2 1

/* The first byte of q[0..) that stops the plain run ('"', '\\', below 0x20, or with utf8 at or
 * above 0x80), 16 bytes at a time and exact (the byte loop of the caller then only handles the
 * stop itself: text has an escaped newline every few dozen bytes). Returns a position with
 * fewer than 16 bytes left when there is no stop before it. */
static inline const char *sse2_skip(const char *q, const char *end, int utf8)
{
    const __m128i quote = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\'), c1f = _mm_set1_epi8(0x1F);
    while (end - q >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bs)),
                                 _mm_cmpeq_epi8(_mm_min_epu8(v, c1f), v)); /* v <= 0x1F */
        unsigned mask = (unsigned)_mm_movemask_epi8(m);
        if (utf8)
            mask |= (unsigned)_mm_movemask_epi8(v);
        if (mask)
            return q + __builtin_ctz(mask);
        q += 16;
    }
    return q;
}
#endif

/* Length of the valid UTF-8 char at s (n > 0 bytes, s[0] >= 0x80), 0 if invalid. */
static inline size_t utf8_char(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    size_t len = c >= 0xF0 ? 4 : 3;
    if (c < 0xE0 || c > 0xF4 || n < len)
        return 0;
    return lmx__utf8_valid_prefix(s, len) == len ? len : 0;
}

/* The escape at q (on the backslash): its code point in *cp, the position after it returned. */
static const char *escape(const char *q, const char *end, unsigned flags, uint32_t *cp)
{
    if (end - q < 2)
        return NULL;
    char c = q[1];
    q += 2;
    switch (c) {
    case '"': *cp = '"'; return q;
    case '\\': *cp = '\\'; return q;
    case '/': *cp = '/'; return q;
    case 'b': *cp = '\b'; return q;
    case 'f': *cp = '\f'; return q;
    case 'n': *cp = '\n'; return q;
    case 'r': *cp = '\r'; return q;
    case 't': *cp = '\t'; return q;
    case 'u': {
        uint32_t v, lo;
        if (!hex4(q, end, &v))
            return NULL;
        q += 4;
        if ((v >= 0xDC00 && v <= 0xDFFF) || (v == 0 && (flags & LMX_JSCAN_NO_NUL)))
            return NULL;
        if (v >= 0xD800 && v <= 0xDBFF) {
            if (end - q < 6 || q[0] != '\\' || q[1] != 'u' || !hex4(q + 2, end, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return NULL;
            q += 6;
            v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
        }
        *cp = v;
        return q;
    }
    default:
        return NULL;
    }
}

const char *lmx__jscan_string(const char *p, const char *end, unsigned flags, char *dst,
                              size_t *dlen)
{
    const uint64_t high = (flags & LMX_JSCAN_UTF8) ? 0x8080808080808080ull : 0;
    const char *start = p, *q = p; /* p: start of the plain run not yet copied */
    char *o = dst;
    size_t shrink = 0; /* bytes saved by escapes */
    for (;;) {
#ifdef JSCAN_SSE2
        q = sse2_skip(q, end, high != 0);
        while (end - q >= 8 && end - q < 16) { /* only the tail: sse2_skip stopped exactly */
#else
        while (end - q >= 8) {
#endif
            uint64_t v;
            memcpy(&v, q, 8);
            if (stop8(v, high))
                break;
            q += 8;
        }
        if (q >= end)
            return NULL; /* unterminated */
        unsigned char c = (unsigned char)*q;
        if (c >= 0x80) {
            if (high) {
                size_t k = utf8_char((const uint8_t *)q, (size_t)(end - q));
                if (!k)
                    return NULL;
                q += k;
            } else {
                q++;
            }
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            q++;
            continue;
        }
        if (o) {
            if (o != p)
                memmove(o, p, (size_t)(q - p));
            o += q - p;
        }
        if (c < 0x20)
            return NULL; /* a raw control char: a jansson error */
        if (c == '"') {
            if (dlen)
                *dlen = (size_t)(q - start) - shrink;
            return q + 1;
        }
        if (flags & LMX_JSCAN_RAW)
            return NULL;
        uint32_t cp;
        const char *e = escape(q, end, flags, &cp);
        if (!e)
            return NULL;
        uint8_t u[4];
        int k = lmx__utf8_enc(cp, u);
        shrink += (size_t)(e - q) - (size_t)k;
        if (o && k == 1) { /* \n, \" and the like: no copy call */
            *o++ = (char)u[0];
        } else if (o) {
            memcpy(o, u, (size_t)k);
            o += k;
        }
        p = q = e;
    }
}

const char *lmx__jscan_number(const char *p, const char *end, unsigned flags)
{
    const char *q = p;
    if (q < end && *q == '-')
        q++;
    if (q >= end || *q < '0' || *q > '9')
        return NULL;
    if (*q == '0')
        q++;
    else
        while (q < end && *q >= '0' && *q <= '9')
            q++;
    if (q < end && *q == '.') {
        q++;
        if (q >= end || *q < '0' || *q > '9')
            return NULL;
        while (q < end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        if (flags & LMX_JSCAN_PLAIN_NUM)
            return NULL;
        q++;
        if (q < end && (*q == '+' || *q == '-'))
            q++;
        if (q >= end || *q < '0' || *q > '9')
            return NULL;
        while (q < end && *q >= '0' && *q <= '9')
            q++;
    }
    if ((flags & LMX_JSCAN_PLAIN_NUM) && (q - p > 15 || (q < end && *q >= '0' && *q <= '9')))
        return NULL;
    return q;
}

int lmx__jscan_open(const char **p, const char *end, char open)
{
    const char *q = *p;
    if (q >= end || *q != open)
        return -1;
    q = lmx__jscan_ws(q + 1, end);
    if (q < end && *q == (open == '{' ? '}' : ']')) {
        *p = q + 1;
        return 0;
    }
    *p = q;
    return 1;
}

const char *lmx__jscan_colon(const char *p, const char *end)
{
    p = lmx__jscan_ws(p, end);
    if (p >= end || *p != ':')
        return NULL;
    return lmx__jscan_ws(p + 1, end);
}

int lmx__jscan_next(const char **p, const char *end, char close)
{
    const char *q = lmx__jscan_ws(*p, end);
    if (q >= end)
        return -1;
    if (*q == close) {
        *p = q + 1;
        return 0;
    }
    if (*q != ',')
        return -1;
    *p = lmx__jscan_ws(q + 1, end);
    return 1;
}

/* Body of an object or array whose opener is at p. */
static const char *container(const char *p, const char *end, unsigned flags, int depth_left)
{
    char open = *p, close = open == '{' ? '}' : ']';
    if (depth_left <= 0)
        return NULL;
    int more = lmx__jscan_open(&p, end, open);
    while (more > 0) {
        if (open == '{') {
            if (p >= end || *p != '"')
                return NULL;
            p = lmx__jscan_string(p + 1, end, (flags & ~LMX_JSCAN_RAW) | LMX_JSCAN_NO_NUL, NULL,
                                  NULL);
            if (!p || !(p = lmx__jscan_colon(p, end)))
                return NULL;
        }
        if (!(p = lmx__jscan_value(p, end, flags, depth_left - 1)))
            return NULL;
        more = lmx__jscan_next(&p, end, close);
    }
    return more == 0 ? p : NULL;
}

const char *lmx__jscan_value(const char *p, const char *end, unsigned flags, int depth_left)
{
    if (p >= end)
        return NULL;
    switch (*p) {
    case '"': return lmx__jscan_string(p + 1, end, flags & ~LMX_JSCAN_RAW, NULL, NULL);
    case '{':
    case '[': return container(p, end, flags, depth_left);
    case 't': return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f': return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n': return end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
    default: return lmx__jscan_number(p, end, flags);
    }
}
