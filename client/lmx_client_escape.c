/* Server-provided text in error messages: one printable line, so a hostile or broken server
 * cannot move the cursor, recolour or clear a terminal, or forge extra log lines. */
#include "lmx_client_internal.h"

#include <stdio.h>
#include <string.h>

#include "lmx_utf8.h"

/* Code points that steer a terminal or reorder text: C1 controls, line/paragraph separators,
 * bidirectional overrides and isolates. */
static int is_steering(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF;
}

size_t lmx__escape_text(char *dst, size_t cap, const char *src, size_t n)
{
    const uint8_t *s = (const uint8_t *)src;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        char esc[16];
        const char *piece = esc;
        size_t len, adv = 1;
        uint8_t c = s[i];
        if (c >= 0x20 && c < 0x7f) {
            piece = (const char *)s + i;
            len = 1;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\', esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't', esc[2] = 0;
            len = 2;
        } else if (c < 0x80) {
            len = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
        } else {
            size_t cl = lmx__utf8_len(c);
            uint32_t cp;
            if (cl <= n - i && lmx__utf8_valid_prefix(s + i, cl) == cl) {
                lmx__utf8_dec(s + i, cl, &cp);
                adv = cl;
                if (is_steering(cp)) {
                    len = (size_t)snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
                } else {
                    piece = (const char *)s + i;
                    len = cl;
                }
            } else {
                len = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
            }
        }
        if (o + len + 4 > cap) { /* room for "..." and the NUL */
            if (cap >= 4) {
                while (o + 4 > cap)
                    o--;
                memcpy(dst + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(dst + o, piece, len);
        o += len;
        i += adv;
    }
    if (cap)
        dst[o < cap ? o : cap - 1] = '\0';
    return o < cap ? o : cap ? cap - 1 : 0;
}
