/* The Precompiled normalizer: SentencePiece's precompiled charsmap as HF tokenizers applies it
 * (normalizers/precompiled.rs on the spm_precompiled crate). The blob, base64 in tokenizer.json,
 * is u32 trie size (little endian) + a darts-clone double array of that many bytes + the
 * replacement strings, NUL-terminated. Text is walked by extended grapheme cluster: a cluster
 * of fewer than 6 bytes that has a key as a prefix becomes the replacement of the SHORTEST such
 * key (the rest of the cluster is dropped, as HF does); otherwise each char on its own is
 * replaced by its key's replacement or kept. The blob is untrusted: its structure and every
 * reachable trie entry are checked at load, and lookups check the array bound. */
#include "lmx_tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* darts-clone unit fields */
static inline int has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t value(uint32_t u) { return u & 0x7FFFFFFFu; }
static inline uint32_t label(uint32_t u) { return u & (0x80000000u | 0xFFu); }
static inline size_t offset(uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); }

/* base64 (standard alphabet, canonical padding, as the base64 crate's STANDARD engine) */
static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static int b64dec(const char *s, size_t n, uint8_t **out, size_t *on)
{
    if (n % 4)
        return 0;
    size_t pad = n && s[n - 1] == '=' ? (n >= 2 && s[n - 2] == '=' ? 2 : 1) : 0;
    uint8_t *o = malloc(n / 4 * 3 + 1);
    if (!o)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int j = 0; j < 4; j++) {
            int last = i + 4 == n && j >= 4 - (int)pad;
            v[j] = last ? 0 : b64val((unsigned char)s[i + j]);
            if (v[j] < 0) {
                free(o);
                return 0;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        o[k++] = (uint8_t)(w >> 16);
        if (!(i + 4 == n && pad == 2))
            o[k++] = (uint8_t)(w >> 8);
        if (!(i + 4 == n && pad >= 1))
            o[k++] = (uint8_t)w;
        /* non-canonical: bits after the last byte must be zero */
        if (i + 4 == n && ((pad == 2 && (w & 0xFFFF)) || (pad == 1 && (w & 0xFF)))) {
            free(o);
            return 0;
        }
    }
    *out = o;
    *on = k;
    return 1;
}

/* The replacement of the shortest key that prefixes s[0..n) (HF transform: the first result of
 * common_prefix_search, which stops at a NUL byte); *rl its length. NULL when none. */
static const uint8_t *first_prefix(const lmx_tok_charsmap *m, const uint8_t *s, size_t n, size_t *rl)
{
    const uint32_t *a = m->array;
    size_t pos = offset(a[0]);
    for (size_t i = 0; i < n && s[i]; i++) {
        pos ^= s[i];
        if (pos >= m->n)
            return NULL; /* HF would index out of bounds (panic); no key there */
        uint32_t u = a[pos];
        if (label(u) != s[i])
            return NULL;
        pos ^= offset(u);
        if (has_leaf(u)) {
            const uint8_t *r = m->norm + value(a[pos]); /* pos < n, value <= norm_len: checked */
            const uint8_t *z = memchr(r, 0, m->norm_len - value(a[pos]));
            *rl = z ? (size_t)(z - r) : m->norm_len - value(a[pos]);
            return r;
        }
    }
    return NULL;
}

/* Checks every entry reachable from the root: each (node, byte) step is tried once (visited
 * bitmap over node positions), leaves must point inside the array and at the start of a char of
 * the replacement strings (HF would panic otherwise). */
static int check_trie(const lmx_tok_charsmap *m, char *msg, size_t cap)
{
    size_t span = (m->n + 255) & ~(size_t)255;
    uint8_t *seen = calloc(span / 8 + 1, 1);
    size_t *stack = malloc(span * sizeof *stack + sizeof *stack);
    if (!seen || !stack) {
        free(seen);
        free(stack);
        snprintf(msg, cap, "out of memory");
        return LMX_ENOMEM;
    }
    size_t sp = 0;
    int rc = LMX_OK;
    size_t root = offset(m->array[0]);
    if (root < span) {
        seen[root / 8] |= (uint8_t)(1u << (root % 8));
        stack[sp++] = root;
    }
    while (sp && !rc) {
        size_t node = stack[--sp];
        for (unsigned c = 1; c < 256; c++) {
            size_t p = node ^ c;
            if (p >= m->n || label(m->array[p]) != c)
                continue;
            size_t next = p ^ offset(m->array[p]);
            if (has_leaf(m->array[p])) {
                uint32_t v = next < m->n ? value(m->array[next]) : UINT32_MAX;
                if (next >= m->n || v > m->norm_len ||
                    (v < m->norm_len && (m->norm[v] & 0xC0) == 0x80)) {
                    snprintf(msg, cap, "trie entry at unit %zu points outside the replacement strings", p);
                    rc = LMX_EFORMAT;
                    break;
                }
            }
            if (next < span && !(seen[next / 8] >> (next % 8) & 1)) {
                seen[next / 8] |= (uint8_t)(1u << (next % 8));
                stack[sp++] = next;
            }
        }
    }
    free(seen);
    free(stack);
    return rc;
}

int lmx__tok_charsmap_parse(const uint8_t *blob, size_t bl, lmx_tok_charsmap **out, char *msg,
                            size_t cap)
{
    *out = NULL;
    lmx_tok_charsmap *m = calloc(1, sizeof *m);
    int rc = LMX_EFORMAT;
    if (!m) {
        snprintf(msg, cap, "out of memory");
        return LMX_ENOMEM;
    }
    uint32_t tsize = 0;
    if (bl < 4) {
        snprintf(msg, cap, "%zu bytes: shorter than the trie size field", bl);
        goto fail;
    }
    tsize = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 | (uint32_t)blob[3] << 24;
    m->n = tsize / 4;
    if (m->n > (bl - 4) / 4) {
        snprintf(msg, cap, "trie size %u is larger than the %zu bytes that follow", tsize, bl - 4);
        goto fail;
    }
    if (m->n == 0) {
        snprintf(msg, cap, "the trie is empty");
        goto fail;
    }
    m->array = malloc(m->n * sizeof *m->array);
    m->norm_len = bl - 4 - m->n * 4;
    m->norm = malloc(m->norm_len + 1);
    if (!m->array || !m->norm) {
        snprintf(msg, cap, "out of memory");
        rc = LMX_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < m->n; i++) {
        const uint8_t *q = blob + 4 + 4 * i;
        m->array[i] = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
    }
    memcpy(m->norm, blob + 4 + m->n * 4, m->norm_len);
    m->norm[m->norm_len] = 0;
    if (lmx__utf8_valid_prefix(m->norm, m->norm_len) != m->norm_len) {
        snprintf(msg, cap, "the replacement strings are not valid UTF-8");
        goto fail;
    }
    if ((rc = check_trie(m, msg, cap)) != LMX_OK)
        goto fail;
    for (int c = 0; c < 128; c++) {
        uint8_t b = (uint8_t)c;
        size_t rl;
        const uint8_t *rp = first_prefix(m, &b, 1, &rl);
        m->ascii[c] = rp ? (int32_t)(rp - m->norm) : -1;
    }
    *out = m;
    return LMX_OK;
fail:
    lmx__tok_charsmap_free(m);
    return rc;
}

int lmx__tok_charsmap_load(const char *b64, size_t n, lmx_tok_charsmap **out, char *msg, size_t cap)
{
    *out = NULL;
    uint8_t *blob = NULL;
    size_t bl = 0;
    int r = b64dec(b64, n, &blob, &bl);
    if (r < 0) {
        snprintf(msg, cap, "out of memory");
        return LMX_ENOMEM;
    }
    if (!r) {
        snprintf(msg, cap, "not valid base64");
        return LMX_EFORMAT;
    }
    int rc = lmx__tok_charsmap_parse(blob, bl, out, msg, cap);
    free(blob);
    return rc;
}

void lmx__tok_charsmap_free(lmx_tok_charsmap *m)
{
    if (!m)
        return;
    free(m->array);
    free(m->norm);
    free(m);
}

/* One char (or a short cluster) replaced or copied. */
static inline int put(lmx_buf *out, const uint8_t *r, size_t rl)
{
    return rl ? lmx__buf_append(out, r, rl) : LMX_OK;
}

int lmx__tok_precompiled(const lmx_tok_charsmap *m, const uint8_t *s, size_t n, lmx_buf *out)
{
    if (lmx__buf_reserve(out, n) != LMX_OK)
        return LMX_ENOMEM;
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80 && c != '\r' && m->ascii[c] < 0) {
            /* a run of ASCII chars the map keeps, copied at once; its last char goes to the
             * per-char path below when non-ASCII follows (it may start a longer cluster) */
            size_t j = i + 1;
            while (j < n && s[j] < 0x80 && s[j] != '\r' && m->ascii[s[j]] < 0)
                j++;
            if (j < n && s[j] >= 0x80)
                j--;
            if (j > i) {
                if (lmx__buf_append(out, s + i, j - i) != LMX_OK)
                    return LMX_ENOMEM;
                i = j;
                continue;
            }
        }
        if (c < 0x80 && c != '\r' && (i + 1 == n || s[i + 1] < 0x80)) {
            /* an ASCII char followed by ASCII is a cluster of its own (CR LF aside) */
            int32_t v = m->ascii[c];
            if (v < 0) {
                if (out->len < out->cap) {
                    out->data[out->len++] = c;
                } else if (lmx__buf_append(out, &c, 1) != LMX_OK) {
                    return LMX_ENOMEM;
                }
            } else if (put(out, m->norm + v, strlen((const char *)m->norm + v)) != LMX_OK) {
                return LMX_ENOMEM;
            }
            i++;
            continue;
        }
        size_t j = lmx__grapheme_end(s, i, n), rl;
        const uint8_t *r;
        if (j - i < 6 && (r = first_prefix(m, s + i, j - i, &rl)) != NULL) {
            if (put(out, r, rl) != LMX_OK)
                return LMX_ENOMEM;
            i = j;
            continue;
        }
        while (i < j) {
            size_t l = lmx__utf8_len(s[i]);
            r = first_prefix(m, s + i, l, &rl);
            if ((r ? put(out, r, rl) : lmx__buf_append(out, s + i, l)) != LMX_OK)
                return LMX_ENOMEM;
            i += l;
        }
    }
    return LMX_OK;
}
