/* Fast field extraction from JSON Lines records: see lmx_jsonl.h.
 *
 * The parser accepts exactly jansson's grammar for json_loadb(..., JSON_ALLOW_NUL) (strict JSON,
 * whitespace ' ' '\t' '\n' '\r', nothing after the top-level value) and answers "use jansson"
 * (NULL inside, 0 outside) wherever reproducing jansson would take more than a few lines: invalid
 * JSON (so errors keep jansson's message), escapes in object keys (jansson rejects \u0000 there
 * and compares decoded keys), \u escapes of surrogates that do not pair (jansson rejects them,
 * `longmixd tokenize` turns them into U+FFFD), numbers that could overflow jansson's integer or
 * real, nesting deeper than FJ_MAX_DEPTH, a missing, non-string or repeated "text", and a repeated
 * key on the field path (jansson keeps the last one). */
#include "lmx_jsonl.h"

#include "lmx_utf8.h"

#include <stdint.h>
#include <string.h>

#define FJ_MAX_DEPTH 32

static inline int fj_hex4(const char *p, const char *end, uint32_t *v)
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

static inline const char *fj_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* True when some byte of v is '"', '\\' or below 0x20 (SWAR: the classic has-zero-byte test on
 * v ^ '"', v ^ '\\' and v & 0xE0). */
static inline int fj_special8(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\'), c = v & (ones * 0xE0);
    return (((q - ones) & ~q) | ((b - ones) & ~b) | ((c - ones) & ~c)) & highs ? 1 : 0;
}

/* String body at p (just after the opening quote). dst: where to decode it (must have room for
 * end - p bytes: decoding never grows), NULL to only validate. key: escapes not handled (-> 0).
 * Returns the position after the closing quote, or NULL for "use jansson". */
static const char *fj_string(const char *p, const char *end, char *dst, size_t *dlen, int key)
{
    char *o = dst;
    for (;;) {
        const char *q = p;
        while (end - q >= 8) {
            uint64_t v;
            memcpy(&v, q, 8);
            if (fj_special8(v))
                break;
            q += 8;
        }
        while (q < end && (unsigned char)*q >= 0x20 && *q != '"' && *q != '\\')
            q++;
        if (o) {
            memcpy(o, p, (size_t)(q - p));
            o += q - p;
        }
        if (q >= end || (unsigned char)*q < 0x20)
            return NULL; /* unterminated, or a raw control char (a jansson error) */
        if (*q == '"') {
            if (dlen)
                *dlen = (size_t)(o - dst);
            return q + 1;
        }
        if (key || end - q < 2)
            return NULL;
        char c = q[1], ch;
        q += 2;
        switch (c) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (!fj_hex4(q, end, &cp))
                return NULL;
            q += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return NULL;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - q < 6 || q[0] != '\\' || q[1] != 'u' || !fj_hex4(q + 2, end, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return NULL;
                q += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (o) {
                if (cp < 0x80) {
                    *o++ = (char)cp;
                } else if (cp < 0x800) {
                    *o++ = (char)(0xC0 | cp >> 6);
                    *o++ = (char)(0x80 | (cp & 0x3F));
                } else if (cp < 0x10000) {
                    *o++ = (char)(0xE0 | cp >> 12);
                    *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                    *o++ = (char)(0x80 | (cp & 0x3F));
                } else {
                    *o++ = (char)(0xF0 | cp >> 18);
                    *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                    *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                    *o++ = (char)(0x80 | (cp & 0x3F));
                }
            }
            p = q;
            continue;
        }
        default:
            return NULL;
        }
        if (o)
            *o++ = ch;
        p = q;
    }
}

static const char *fj_value(const char *p, const char *end, int depth);

/* Object or array body after '{' / '['. */
static const char *fj_container(const char *p, const char *end, int depth, int is_obj)
{
    if (depth > FJ_MAX_DEPTH)
        return NULL;
    char close = is_obj ? '}' : ']';
    p = fj_ws(p, end);
    if (p < end && *p == close)
        return p + 1;
    for (;;) {
        if (is_obj) {
            if (p >= end || *p != '"' || !(p = fj_string(p + 1, end, NULL, NULL, 1)))
                return NULL;
            p = fj_ws(p, end);
            if (p >= end || *p != ':')
                return NULL;
            p = fj_ws(p + 1, end);
        }
        if (!(p = fj_value(p, end, depth)))
            return NULL;
        p = fj_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == close)
            return p + 1;
        if (*p != ',')
            return NULL;
        p = fj_ws(p + 1, end);
    }
}

static const char *fj_value(const char *p, const char *end, int depth)
{
    if (p >= end)
        return NULL;
    switch (*p) {
    case '"': return fj_string(p + 1, end, NULL, NULL, 0);
    case '{': return fj_container(p + 1, end, depth + 1, 1);
    case '[': return fj_container(p + 1, end, depth + 1, 0);
    case 't': return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f': return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n': return end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
    default: {
        /* -?(0|[1-9][0-9]*)(\.[0-9]+)?, at most 15 chars (fits jansson's integer and real
         * without overflow); exponents and longer numbers are left to jansson */
        const char *q = p;
        if (*q == '-')
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
        if (q < end && (*q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9')))
            return NULL;
        return q - p <= 15 ? q : NULL;
    }
    }
}


/* ---- the record: "text" at the top level, the field path through nested objects ---- */

typedef struct fj_ctx {
    const char *end;
    const lmx__jsonl_path *path; /* NULL: "text" only */
    lmx_buf *text, *field;
    int text_found, field_found;
} fj_ctx;

/* Body (after '{') of an object on the field path: the root (lvl 0) or the object reached by
 * path segments [0, lvl). Decodes "text" (root only) and the field; every other value is only
 * validated. */
static const char *fj_record(fj_ctx *c, const char *p, int depth, int lvl)
{
    const char *end = c->end;
    const lmx__jsonl_path *path = c->path;
    const char *seg = path && lvl < path->n ? path->seg[lvl] : NULL;
    size_t seg_len = seg ? path->len[lvl] : 0;
    int seen_seg = 0;
    if (depth > FJ_MAX_DEPTH)
        return NULL;
    p = fj_ws(p, end);
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        if (p >= end || *p != '"')
            return NULL;
        const char *k = p + 1;
        if (!(p = fj_string(k, end, NULL, NULL, 1)))
            return NULL;
        size_t klen = (size_t)(p - 1 - k); /* keys have no escapes: raw bytes = decoded key */
        p = fj_ws(p, end);
        if (p >= end || *p != ':')
            return NULL;
        p = fj_ws(p + 1, end);
        if (lvl == 0 && klen == 4 && memcmp(k, "text", 4) == 0) {
            /* a second "text" would replace the first in jansson; a non-string is an error there */
            if (c->text_found || p >= end || *p != '"')
                return NULL;
            c->text_found = 1;
            p = fj_string(p + 1, end, (char *)c->text->data, &c->text->len, 0);
        } else if (seg && klen == seg_len && memcmp(k, seg, klen) == 0) {
            if (seen_seg)
                return NULL; /* jansson keeps the last of repeated keys */
            seen_seg = 1;
            if (lvl + 1 == path->n && p < end && *p == '"') {
                p = fj_string(p + 1, end, (char *)c->field->data, &c->field->len, 0);
                c->field_found = 1;
            } else if (lvl + 1 < path->n && p < end && *p == '{') {
                p = fj_record(c, p + 1, depth + 1, lvl + 1);
            } else {
                p = fj_value(p, end, depth); /* not a string / not an object: field missing */
            }
        } else {
            p = fj_value(p, end, depth);
        }
        if (!p)
            return NULL;
        p = fj_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == '}')
            return p + 1;
        if (*p != ',')
            return NULL;
        p = fj_ws(p + 1, end);
    }
}

int lmx__jsonl_fast(const char *s, size_t n, unsigned flags, const lmx__jsonl_path *path, lmx_buf *text,
                    lmx_buf *field, int *field_found)
{
    const char *end = s + n, *p = fj_ws(s, end);
    if (p >= end || *p != '{')
        return 0; /* not an object (or not JSON): jansson's answer */
    /* jansson checks UTF-8 as it reads; outside strings any byte >= 0x80 is a syntax error the
     * parser declines anyway, so one pass over the line is the same check */
    if ((flags & LMX__JSONL_UTF8) && lmx__utf8_valid_prefix((const uint8_t *)s, n) != n)
        return 0;
    /* decoding never grows a string, so n bytes hold the text and n + 1 the field with its NUL */
    text->len = 0;
    if (lmx__buf_reserve(text, n) != LMX_OK)
        return 0;
    if (path) {
        field->len = 0;
        if (lmx__buf_reserve(field, n + 1) != LMX_OK)
            return 0;
    }
    fj_ctx c = {end, path, text, field, 0, 0};
    p = fj_record(&c, p + 1, 1, 0);
    if (!p || !c.text_found || fj_ws(p, end) != end)
        return 0;
    if (path) {
        /* a NUL-terminated copy like json_string_value(): users stop at an embedded NUL alike */
        if (!c.field_found)
            field->len = 0;
        field->data[field->len] = '\0';
        *field_found = c.field_found;
    }
    return 1;
}

/* ---- the field path ---- */

/* Both functions walk field the same way: segments split at '.', a trailing '.' ends the walk. */
const char *lmx__jsonl_get_path(json_t *doc, const char *field)
{
    char key[256];
    const char *p = field;
    json_t *v = doc;
    while (v && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof key)
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        v = json_object_get(v, key);
        p = dot ? dot + 1 : p + n;
    }
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int lmx__jsonl_path_init(lmx__jsonl_path *path, const char *field)
{
    const char *p = field;
    path->n = 0;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        /* empty keys, over-long ones (lmx__jsonl_get_path gives up) and deep paths are left to
         * jansson; so is a path starting at "text", which would make the text the field too */
        if (n == 0 || n >= 256 || path->n == LMX__JSONL_PATH_MAX ||
            (path->n == 0 && n == 4 && memcmp(p, "text", 4) == 0))
            return 0;
        path->seg[path->n] = p;
        path->len[path->n++] = n;
        p = dot ? dot + 1 : p + n;
    }
    return path->n > 0;
}
