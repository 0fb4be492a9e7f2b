/* UTF-8 helpers shared by the JSON scanner, the tokenizer and `longmixd tokenize` (which must
 * repair input exactly as the encoder does). */
#ifndef LMX_UTF8_H
#define LMX_UTF8_H

#include "lmx_util.h"

#include <stddef.h>
#include <stdint.h>

/* Length of the longest valid UTF-8 prefix of s[0..n). */
size_t lmx__utf8_valid_prefix(const uint8_t *s, size_t n);
/* Appends s[0..n) to out with each maximal invalid subsequence replaced by U+FFFD, exactly like
 * Rust's String::from_utf8_lossy (and WHATWG's decoder, which node uses). LMX_OK or LMX_ENOMEM. */
int lmx__utf8_lossy(const uint8_t *s, size_t n, lmx_buf *out);

/* Decodes one valid UTF-8 char at s (n > 0 bytes available); returns its length. */
static inline int lmx__utf8_dec(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    if (c < 0xE0 && n >= 2) { *cp = (uint32_t)(c & 0x1F) << 6 | (s[1] & 0x3F); return 2; }
    if (c < 0xF0 && n >= 3) {
        *cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        return 3;
    }
    if (n >= 4) {
        *cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
              (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
        return 4;
    }
    *cp = 0xFFFD;
    return 1;
}
static inline int lmx__utf8_enc(uint32_t cp, uint8_t *o)
{
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | cp >> 6); o[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12); o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18); o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}
static inline size_t lmx__utf8_len(uint8_t c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

#endif
