/* tokenizer.json loader, the fast scanner for model.vocab and model.merges.
 *
 * jansson needs ~0.2 s and ~10 allocations per entry for a 9 MB tokenizer.json, most of it in
 * model.vocab and model.merges, which the loader only reads once into its own tables. This file
 * parses those two values straight into lmx_tok_lists, on the project's JSON scanner
 * (common/json/lmx_json_scan.h), and the rest of the file goes to jansson with them replaced by
 * {} / []. It accepts only what jansson accepts and reads the same way; anything else (a syntax
 * error, escapes in keys on the way to the model, \u0000 in a vocab key, unpaired surrogate
 * escapes, ids that are not plain integers below LMX_TOK_MAX_ID, merges that are not "A B" or
 * ["A","B"], duplicate keys, invalid UTF-8, or jansson failing on the shortened text) makes it
 * give up, and the plain jansson path then decides, with its own error messages (and line/column
 * numbers of the real file). */
#include "lmx_tok_internal.h"

#include "lmx_json_scan.h"

#include <stdlib.h>
#include <string.h>

/* Nesting allowed in the values skipped on the way (jansson re-reads them anyway). */
#define SKIP_DEPTH 64

typedef struct vscan {
    const char *p, *end;
    char *base;         /* the file, writable: strings are decoded in place (never longer) */
    size_t start, slen; /* the last string read: base + start, slen bytes (decoded) */
    lmx_buf *undo;      /* raw text of the strings decoded in place: {u32 off, u32 len, bytes} */
} vscan;

/* The string at v->p (on its opening quote), decoded in place when it has escapes (its raw text
 * logged in v->undo first). Raw text must be valid UTF-8, as jansson requires. */
static int vs_string(vscan *v, unsigned flags)
{
    if (v->p >= v->end || *v->p != '"')
        return 0;
    const char *s = v->p + 1;
    size_t dlen;
    const char *q = lmx__jscan_string(s, v->end, flags | LMX_JSCAN_UTF8, NULL, &dlen);
    if (!q)
        return 0;
    size_t start = (size_t)(s - v->base), raw = (size_t)(q - 1 - s);
    if (dlen != raw) {
        /* one reservation for header and bytes: a log never ends in a header without its bytes */
        if (start > UINT32_MAX || raw > UINT32_MAX || lmx__buf_reserve(v->undo, 8 + raw))
            return 0;
        uint32_t hdr[2] = {(uint32_t)start, (uint32_t)raw};
        lmx__buf_append(v->undo, hdr, sizeof hdr);
        lmx__buf_append(v->undo, s, raw);
        lmx__jscan_string(s, v->end, flags | LMX_JSCAN_UTF8, v->base + start, &dlen);
    }
    v->p = q;
    v->start = start;
    v->slen = dlen;
    return start <= UINT32_MAX && start + dlen <= UINT32_MAX;
}

/* A member's key and the ':' after it; *k and *kl: the raw key (keys with escapes are refused:
 * they are compared as written). Leaves v at the value. */
static int vs_key(vscan *v, const char **k, size_t *kl)
{
    if (v->p >= v->end || *v->p != '"')
        return 0;
    *k = v->p + 1;
    const char *q = lmx__jscan_string(*k, v->end, LMX_JSCAN_RAW | LMX_JSCAN_UTF8, NULL, NULL);
    if (!q)
        return 0;
    *kl = (size_t)(q - 1 - *k);
    return (v->p = lmx__jscan_colon(q, v->end)) != NULL;
}

static int vs_skip(vscan *v)
{
    return (v->p = lmx__jscan_value(v->p, v->end, LMX_JSCAN_UTF8, SKIP_DEPTH)) != NULL;
}

static int vs_vocab(vscan *v, lmx_tok_lists *L)
{
    int more = lmx__jscan_open(&v->p, v->end, '{');
    while (more > 0) {
        /* vocab keys are object keys: jansson refuses \u0000 in them */
        if (!vs_string(v, LMX_JSCAN_NO_NUL) || !(v->p = lmx__jscan_colon(v->p, v->end)))
            return 0;
        /* id: 0 or [1-9][0-9]*, below LMX_TOK_MAX_ID, followed by a delimiter */
        const char *q = v->p;
        uint64_t id = 0;
        while (q < v->end && *q >= '0' && *q <= '9' && q - v->p < 9)
            id = id * 10 + (uint64_t)(*q++ - '0');
        if (q == v->p || (*v->p == '0' && q - v->p > 1) || id >= LMX_TOK_MAX_ID || q >= v->end ||
            !(*q == ',' || *q == '}' || *q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            return 0;
        v->p = q;
        if (lmx__toklists_vocab_add(L, (uint32_t)v->start, v->slen, (uint32_t)id))
            return 0;
        more = lmx__jscan_next(&v->p, v->end, '}');
    }
    return more == 0;
}

/* One merge, "A B" or ["A", "B"]: offsets and lengths of A and B in the arena. */
static int vs_merge(vscan *v, uint32_t *ao, size_t *al, uint32_t *bo, size_t *bl)
{
    if (v->p < v->end && *v->p == '"') {
        if (!vs_string(v, 0))
            return 0;
        /* "A B" stays in the arena as is: A and B are its two halves */
        const char *s = v->base + v->start;
        size_t n = v->slen;
        const char *sp = n ? memchr(s, ' ', n) : NULL;
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
            return 0;
        *al = (size_t)(sp - s);
        *bl = n - *al - 1;
        *ao = (uint32_t)v->start;
        *bo = (uint32_t)(v->start + *al + 1);
        return 1;
    }
    if (lmx__jscan_open(&v->p, v->end, '[') != 1 || !vs_string(v, 0))
        return 0;
    *ao = (uint32_t)v->start;
    *al = v->slen;
    if (lmx__jscan_next(&v->p, v->end, ']') != 1 || !vs_string(v, 0))
        return 0;
    *bo = (uint32_t)v->start;
    *bl = v->slen;
    return lmx__jscan_next(&v->p, v->end, ']') == 0;
}

static int vs_merges(vscan *v, lmx_tok_lists *L)
{
    int more = lmx__jscan_open(&v->p, v->end, '[');
    while (more > 0) {
        uint32_t ao, bo;
        size_t al, bl;
        if (!vs_merge(v, &ao, &al, &bo, &bl) || lmx__toklists_merge_add(L, ao, al, bo, bl))
            return 0;
        more = lmx__jscan_next(&v->p, v->end, ']');
    }
    return more == 0;
}

/* Byte ranges of model.vocab and model.merges in the file. */
typedef struct vs_ranges {
    size_t vs, ve, ms, me;
    int seen_vocab, seen_merges;
} vs_ranges;

/* The model object's members (v at its '{'). */
static int vs_model(vscan *v, lmx_tok_lists *L, vs_ranges *r)
{
    int more = lmx__jscan_open(&v->p, v->end, '{');
    if (more != 1)
        return 0;
    while (more > 0) {
        const char *k;
        size_t kl;
        if (!vs_key(v, &k, &kl))
            return 0;
        if (kl == 5 && memcmp(k, "vocab", 5) == 0) {
            r->vs = (size_t)(v->p - v->base);
            if (r->seen_vocab++ || !vs_vocab(v, L))
                return 0;
            r->ve = (size_t)(v->p - v->base);
        } else if (kl == 6 && memcmp(k, "merges", 6) == 0) {
            r->ms = (size_t)(v->p - v->base);
            if (r->seen_merges++ || !vs_merges(v, L))
                return 0;
            r->me = (size_t)(v->p - v->base);
        } else if (!vs_skip(v)) {
            return 0;
        }
        more = lmx__jscan_next(&v->p, v->end, '}');
    }
    return more == 0;
}

/* The document with both ranges (in file order) replaced by their empty containers. */
static size_t shortened(const char *data, size_t len, const vs_ranges *r, char *copy)
{
    size_t r0s = r->vs < r->ms ? r->vs : r->ms, r0e = r->vs < r->ms ? r->ve : r->me;
    size_t r1s = r->vs < r->ms ? r->ms : r->vs, r1e = r->vs < r->ms ? r->me : r->ve;
    char *o = copy;
    memcpy(o, data, r0s);
    o += r0s;
    *o++ = data[r0s];
    *o++ = data[r0e - 1];
    memcpy(o, data + r0e, r1s - r0e);
    o += r1s - r0e;
    *o++ = data[r1s];
    *o++ = data[r1e - 1];
    memcpy(o, data + r1e, len - r1e);
    return (size_t)(o - copy) + (len - r1e);
}

int lmx__tok_vocab_scan(char *data, size_t len, char *copy, size_t *copy_len, lmx_tok_lists *L,
                        lmx_buf *undo)
{
    /* the arena is the file: strings keep their offsets, escapes decode in place */
    L->arena = (lmx_buf){(uint8_t *)data, len, len, 0};
    L->arena_borrowed = 1;
    vscan v = {data, data + len, data, 0, 0, undo};
    vs_ranges r = {0};
    int seen_model = 0;
    v.p = lmx__jscan_ws(v.p, v.end);
    int more = lmx__jscan_open(&v.p, v.end, '{');
    if (more != 1)
        goto fail;
    while (more > 0) {
        const char *k;
        size_t kl;
        if (!vs_key(&v, &k, &kl))
            goto fail;
        if (kl == 5 && memcmp(k, "model", 5) == 0) {
            if (seen_model++ || !vs_model(&v, L, &r))
                goto fail;
        } else if (!vs_skip(&v)) {
            goto fail;
        }
        more = lmx__jscan_next(&v.p, v.end, '}');
    }
    if (more < 0 || lmx__jscan_ws(v.p, v.end) != v.end || !r.seen_vocab || !r.seen_merges ||
        L->nv >= LMX_TOK_MAX_ID)
        goto fail;
    *copy_len = shortened(data, len, &r, copy);
    return 1;
fail:
    lmx__toklists_free(L);
    return 0;
}
