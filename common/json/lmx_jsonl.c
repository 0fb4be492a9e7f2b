/* Fast field extraction from JSON Lines records: see lmx_jsonl.h.
 *
 * The record walker below runs on the project's JSON scanner (lmx_json_scan.h), which
 * accepts exactly jansson's grammar for json_loadb(..., JSON_ALLOW_NUL) (strict JSON,
 * whitespace ' ' '\t' '\n' '\r', nothing after the top-level value) and answers "use jansson"
 * (NULL inside, 0 outside) wherever reproducing jansson would take more than a few lines: invalid
 * JSON (so errors keep jansson's message), escapes in the keys of the record and of the objects on
 * the field path (jansson compares decoded keys), \u escapes of surrogates that do not pair (jansson rejects them,
 * `longmixd tokenize` turns them into U+FFFD), numbers that could overflow jansson's integer or
 * real, nesting deeper than FJ_MAX_DEPTH, a missing, non-string or repeated text key, and a
 * repeated key on a field path (jansson keeps the last one). */
#include "lmx_jsonl.h"

#include "lmx_json_scan.h"
#include "lmx_utf8.h"

#include <stdint.h>
#include <string.h>

#define FJ_MAX_DEPTH 32

/* ---- the record: the text at a top-level key, up to two field paths through nested objects ---- */

#define FJ_MAX_FIELDS 2

typedef struct fj_ctx {
    const char *end;
    const char *text_key; /* the top-level key of the text ("text", or --text-field) */
    size_t text_key_len;
    lmx_buf *text;
    int text_found;
    size_t n_fields;
    const lmx__jsonl_path *const *paths;
    lmx_buf *const *fields;
    int found[FJ_MAX_FIELDS];
} fj_ctx;

/* Body (after '{') of an object on a field path: the root (lvl 0) or the object reached by
 * segments [0, lvl) of the paths in mask `on`. Decodes the text (root only) and the fields; every
 * other value is only validated. */
static const char *fj_record(fj_ctx *c, const char *p, int depth, int lvl, unsigned on)
{
    const char *end = c->end;
    unsigned seen = 0; /* fields whose segment at lvl was met in this object */
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
        unsigned match = 0, deeper = 0;
        for (size_t f = 0; f < c->n_fields; f++) {
            const lmx__jsonl_path *path = c->paths[f];
            if ((on >> f & 1) && lvl < path->n && klen == path->len[lvl] && memcmp(k, path->seg[lvl], klen) == 0) {
                match |= 1u << f;
                deeper |= (unsigned)(lvl + 1 < path->n) << f;
            }
        }
        if (lvl == 0 && klen == c->text_key_len && memcmp(k, c->text_key, klen) == 0) {
            /* a second text would replace the first in jansson; a non-string is an error there */
            if (c->text_found || p >= end || *p != '"')
                return NULL;
            c->text_found = 1;
            p = lmx__jscan_string(p + 1, end, 0, (char *)c->text->data, &c->text->len);
        } else if (match) {
            if (match & seen)
                return NULL; /* jansson keeps the last of repeated keys */
            seen |= match;
            unsigned last = match & ~deeper;
            if (last && p < end && *p == '"') {
                /* decode once into the first field ending here, copy to any other */
                const char *q = p;
                lmx_buf *first = NULL;
                for (size_t f = 0; f < c->n_fields && q; f++) {
                    if (!(last >> f & 1))
                        continue;
                    lmx_buf *out = c->fields[f];
                    if (!first) {
                        q = lmx__jscan_string(p + 1, end, 0, (char *)out->data, &out->len);
                        first = out;
                    } else {
                        memcpy(out->data, first->data, first->len);
                        out->len = first->len;
                    }
                    c->found[f] = 1;
                }
                p = q;
            } else if (deeper && p < end && *p == '{') {
                p = fj_record(c, p + 1, depth + 1, lvl + 1, deeper);
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
    return lmx__jsonl_fast_fields(s, n, flags, text_key, text, path ? 1 : 0, &path, &field, field_found);
}

int lmx__jsonl_fast_fields(const char *s, size_t n, unsigned flags, const char *text_key, lmx_buf *text,
                           size_t n_fields, const lmx__jsonl_path *const *paths, lmx_buf *const *fields, int *found)
{
    size_t tk = strlen(text_key);
    if (n_fields > FJ_MAX_FIELDS || tk == 0 || memchr(text_key, '.', tk))
        return 0;
    /* a text key the walk cannot tell from a field path's first segment is left to jansson */
    for (size_t f = 0; f < n_fields; f++)
        if (paths[f]->n == 0 || (paths[f]->len[0] == tk && memcmp(paths[f]->seg[0], text_key, tk) == 0))
            return 0;
    const char *end = s + n, *p = lmx__jscan_ws(s, end);
    if (p >= end || *p != '{')
        return 0; /* not an object (or not JSON): jansson's answer */
    /* jansson checks UTF-8 as it reads; outside strings any byte >= 0x80 is a syntax error the
     * parser declines anyway, so one pass over the line is the same check */
    if ((flags & LMX__JSONL_UTF8) && lmx__utf8_valid_prefix((const uint8_t *)s, n) != n)
        return 0;
    /* decoding never grows a string, so n bytes hold the text and n + 1 a field with its NUL */
    text->len = 0;
    if (lmx__buf_reserve(text, n) != LMX_OK)
        return 0;
    for (size_t f = 0; f < n_fields; f++) {
        fields[f]->len = 0;
        if (lmx__buf_reserve(fields[f], n + 1) != LMX_OK)
            return 0;
    }
    fj_ctx c = {end, text_key, tk, text, 0, n_fields, paths, fields, {0}};
    p = fj_record(&c, p + 1, 1, 0, (1u << n_fields) - 1);
    if (!p || !c.text_found || lmx__jscan_ws(p, end) != end)
        return 0;
    for (size_t f = 0; f < n_fields; f++) {
        /* a NUL-terminated copy like json_string_value(): users stop at an embedded NUL alike */
        if (!c.found[f])
            fields[f]->len = 0;
        fields[f]->data[fields[f]->len] = '\0';
        found[f] = c.found[f];
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
