/* Fast field extraction from JSON Lines records: see lmx_jsonl.h.
 *
 * The record walker below runs on the project's JSON scanner (lmx_json_scan.h), which
 * accepts exactly jansson's grammar for json_loadb(..., JSON_ALLOW_NUL) (strict JSON,
 * whitespace ' ' '\t' '\n' '\r', nothing after the top-level value) and answers "use jansson"
 * (NULL inside, 0 outside) wherever reproducing jansson would take more than a few lines: invalid
 * JSON (so errors keep jansson's message), escapes in the keys of the record and of the objects on
 * the field path (jansson compares decoded keys), \u escapes of surrogates that do not pair (jansson rejects them,
 * `longmixd tokenize` turns them into U+FFFD), numbers that could overflow jansson's integer or
 * real, nesting deeper than FJ_MAX_DEPTH, a missing, non-string or repeated "text", and a repeated
 * key on the field path (jansson keeps the last one). */
#include "lmx_jsonl.h"

#include "lmx_json_scan.h"
#include "lmx_utf8.h"

#include <stdint.h>
#include <string.h>

#define FJ_MAX_DEPTH 32

/* ---- the record: "text" at the top level, the field path through nested objects ---- */

typedef struct fj_ctx {
    const char *end;
    const char *text_key; /* the top-level key of the text ("text", or --text-field) */
    size_t text_key_len;
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
    p = lmx__jscan_ws(p, end);
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        if (p >= end || *p != '"')
            return NULL;
        const char *k = p + 1;
        if (!(p = lmx__jscan_string(k, end, LMX_JSCAN_RAW, NULL, NULL)))
            return NULL;
        size_t klen = (size_t)(p - 1 - k); /* keys have no escapes: raw bytes = decoded key */
        p = lmx__jscan_ws(p, end);
        if (p >= end || *p != ':')
            return NULL;
        p = lmx__jscan_ws(p + 1, end);
        if (lvl == 0 && klen == c->text_key_len && memcmp(k, c->text_key, klen) == 0) {
            /* a second "text" would replace the first in jansson; a non-string is an error there */
            if (c->text_found || p >= end || *p != '"')
                return NULL;
            c->text_found = 1;
            p = lmx__jscan_string(p + 1, end, 0, (char *)c->text->data, &c->text->len);
        } else if (seg && klen == seg_len && memcmp(k, seg, klen) == 0) {
            if (seen_seg)
                return NULL; /* jansson keeps the last of repeated keys */
            seen_seg = 1;
            if (lvl + 1 == path->n && p < end && *p == '"') {
                p = lmx__jscan_string(p + 1, end, 0, (char *)c->field->data, &c->field->len);
                c->field_found = 1;
            } else if (lvl + 1 < path->n && p < end && *p == '{') {
                p = fj_record(c, p + 1, depth + 1, lvl + 1);
            } else {
                /* not a string / not an object: the field is missing */
                p = lmx__jscan_value(p, end, LMX_JSCAN_PLAIN_NUM, FJ_MAX_DEPTH - depth);
            }
        } else {
            p = lmx__jscan_value(p, end, LMX_JSCAN_PLAIN_NUM, FJ_MAX_DEPTH - depth);
        }
        if (!p)
            return NULL;
        p = lmx__jscan_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == '}')
            return p + 1;
        if (*p != ',')
            return NULL;
        p = lmx__jscan_ws(p + 1, end);
    }
}

int lmx__jsonl_fast(const char *s, size_t n, unsigned flags, const lmx__jsonl_path *path, lmx_buf *text,
                    lmx_buf *field, int *field_found)
{
    return lmx__jsonl_fast_key(s, n, flags, "text", path, text, field, field_found);
}

int lmx__jsonl_fast_key(const char *s, size_t n, unsigned flags, const char *text_key, const lmx__jsonl_path *path,
                        lmx_buf *text, lmx_buf *field, int *field_found)
{
    size_t tk = strlen(text_key);
    /* a text key the walk cannot tell from the field path's first segment is left to jansson */
    if (tk == 0 || memchr(text_key, '.', tk) || (path && path->n && path->len[0] == tk &&
                                                  memcmp(path->seg[0], text_key, tk) == 0))
        return 0;
    const char *end = s + n, *p = lmx__jscan_ws(s, end);
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
    fj_ctx c = {end, text_key, tk, path, text, field, 0, 0};
    p = fj_record(&c, p + 1, 1, 0);
    if (!p || !c.text_found || lmx__jscan_ws(p, end) != end)
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
