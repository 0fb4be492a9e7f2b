/* UTF-8 validation and lossy repair (Unicode "substitution of maximal subparts"). */
#include "lmx_utf8.h"

#include <string.h>

/* Length of the valid char at s (> 0), or minus the length of the maximal invalid subpart
 * starting there (Unicode "substitution of maximal subparts", which Rust's from_utf8_lossy
 * follows). n > 0. */
static int utf8_step(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else return -1;
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n)
            return -k;
        uint8_t b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
            return -k;
    }
    return need + 1;
}

size_t lmx__utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (v & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        /* two-byte chars inline: ByteLevel vocabularies and most non-Latin text are full of them */
        if (s[i] >= 0xC2 && s[i] <= 0xDF && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
            i += 2;
            continue;
        }
        int k = utf8_step(s + i, n - i);
        if (k < 0)
            return i;
        i += (size_t)k;
    }
    return n;
}

int lmx__utf8_lossy(const uint8_t *s, size_t n, lmx_buf *out)
{
    static const uint8_t fffd[3] = {0xEF, 0xBF, 0xBD};
    size_t i = 0;
    while (i < n) {
        size_t v = lmx__utf8_valid_prefix(s + i, n - i);
        if (v && lmx__buf_append(out, s + i, v) != LMX_OK)
            return LMX_ENOMEM;
        i += v;
        if (i >= n)
            break;
        int k = utf8_step(s + i, n - i);
        if (lmx__buf_append(out, fffd, 3) != LMX_OK)
            return LMX_ENOMEM;
        i += (size_t)(k < 0 ? -k : k);
    }
    return LMX_OK;
}
