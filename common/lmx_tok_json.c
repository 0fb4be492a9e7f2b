/* tokenizer.json loader: JSON (jansson) -> the plain tables of lmx_tokjson. The only file of the
 * tokenizer that touches JSON. Every error names the JSON path of the offending value. */
#include "lmx_tok_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- maps ---------------------------------------------------------------------------------- */

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t p = 16;
    while (p < n && p < (1u << 30))
        p <<= 1;
    return p;
}

int lmx__tok_strmap_init(lmx_tok_strmap *m, uint32_t expected)
{
    memset(m, 0, sizeof *m);
    uint32_t size = pow2_at_least((uint64_t)expected * 2 + 16);
    m->slots = calloc(size, sizeof *m->slots);
    m->cap = expected + 16;
    m->ents = malloc(m->cap * sizeof *m->ents);
    if (!m->slots || !m->ents) {
        lmx__tok_strmap_free(m);
        return LMX_ENOMEM;
    }
    m->mask = size - 1;
    return LMX_OK;
}

static int strmap_grow(lmx_tok_strmap *m)
{
    uint32_t size = (m->mask + 1) * 2;
    lmx_tok_strmap_slot *ns = calloc(size, sizeof *ns);
    if (!ns)
        return LMX_ENOMEM;
    for (uint32_t i = 0; i <= m->mask; i++) {
        if (!m->slots[i].entry)
            continue;
        const lmx_tok_strmap_ent *e = &m->ents[m->slots[i].entry - 1];
        uint32_t j = (uint32_t)lmx__tok_hash(m->arena.data + e->off, e->len) & (size - 1);
        while (ns[j].entry)
            j = (j + 1) & (size - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->mask = size - 1;
    return LMX_OK;
}

int lmx__tok_strmap_put(lmx_tok_strmap *m, const uint8_t *s, size_t n, uint32_t id)
{
    if (n > UINT32_MAX / 2)
        return LMX_ENOMEM;
    if ((uint64_t)(m->n + 1) * 2 > m->mask + 1 && strmap_grow(m) != LMX_OK)
        return LMX_ENOMEM;
    uint64_t h = lmx__tok_hash(s, n);
    uint32_t h32 = (uint32_t)(h >> 32) | 1u;
    uint32_t i = (uint32_t)h & m->mask;
    for (;;) {
        lmx_tok_strmap_slot *sl = &m->slots[i];
        if (!sl->entry)
            break;
        if (sl->hash32 == h32) {
            lmx_tok_strmap_ent *e = &m->ents[sl->entry - 1];
            if (e->len == n && memcmp(m->arena.data + e->off, s, n) == 0) {
                e->id = id;
                return LMX_OK;
            }
        }
        i = (i + 1) & m->mask;
    }
    if (m->n == m->cap) {
        uint32_t nc = m->cap * 2;
        lmx_tok_strmap_ent *ne = realloc(m->ents, (size_t)nc * sizeof *ne);
        if (!ne)
            return LMX_ENOMEM;
        m->ents = ne;
        m->cap = nc;
    }
    if (m->arena.len + n > UINT32_MAX)
        return LMX_ENOMEM;
    uint32_t off = (uint32_t)m->arena.len;
    if (n && lmx__buf_append(&m->arena, s, n) != LMX_OK)
        return LMX_ENOMEM;
    m->ents[m->n] = (lmx_tok_strmap_ent){off, (uint32_t)n, id};
    m->slots[i].hash32 = h32;
    m->slots[i].entry = ++m->n;
    return LMX_OK;
}

void lmx__tok_strmap_free(lmx_tok_strmap *m)
{
    if (!m)
        return;
    free(m->slots);
    free(m->ents);
    lmx__buf_free(&m->arena);
    memset(m, 0, sizeof *m);
}

static int mergemap_init(lmx_tok_mergemap *m, uint32_t expected)
{
    uint32_t size = pow2_at_least((uint64_t)expected * 2 + 16);
    m->slots = malloc((size_t)size * sizeof *m->slots);
    if (!m->slots)
        return LMX_ENOMEM;
    for (uint32_t i = 0; i < size; i++)
        m->slots[i].key = UINT64_MAX;
    m->mask = size - 1;
    m->shift = 64;
    for (uint32_t s = size; s > 1; s >>= 1)
        m->shift--;
    m->n = 0;
    return LMX_OK;
}

/* Later duplicates overwrite earlier ones, as HF's HashMap collect does. */
static void mergemap_put(lmx_tok_mergemap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id)
{
    uint64_t key = (uint64_t)a << 32 | b;
    uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> m->shift;
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    if (m->slots[i].key == UINT64_MAX)
        m->n++;
    m->slots[i] = (lmx_tok_merge){key, rank, id};
}

/* ---- trie of added tokens ------------------------------------------------------------------ */

static int trie_add(lmx_tok_trie *t, const uint8_t *s, size_t n, int32_t token)
{
    if (!t->nodes) {
        t->cap = 64;
        t->nodes = calloc(t->cap, sizeof *t->nodes);
        if (!t->nodes)
            return LMX_ENOMEM;
        t->n = 1;
        t->nodes[0].token = -1;
    }
    if (!n)
        return LMX_OK; /* an empty added token never matches */
    t->first[s[0]] = 1;
    uint32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = t->nodes[cur].first_child;
        while (c && t->nodes[c].byte != s[i])
            c = t->nodes[c].next_sibling;
        if (!c) {
            if (t->n == t->cap) {
                lmx_tok_trie_node *nn = realloc(t->nodes, (size_t)t->cap * 2 * sizeof *nn);
                if (!nn)
                    return LMX_ENOMEM;
                t->nodes = nn;
                t->cap *= 2;
            }
            c = t->n++;
            t->nodes[c] = (lmx_tok_trie_node){0, t->nodes[cur].first_child, -1, s[i]};
            t->nodes[cur].first_child = c;
        }
        cur = c;
    }
    if (t->nodes[cur].token < 0)
        t->nodes[cur].token = token; /* first of duplicate contents wins */
    return LMX_OK;
}

/* ---- JSON helpers -------------------------------------------------------------------------- */

typedef struct loadctx {
    lmx_tokjson *t;
    lmx_error *err;
    lmx_tok_strmap orig; /* vocab keys as written in tokenizer.json */
} loadctx;

static int bad(loadctx *c, int code, const char *fmt, ...) LMX_PRINTF(3, 4);
static int bad(loadctx *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = lmx__verr(c->err, code, fmt, ap);
    va_end(ap);
    return rc;
}

/* Copies a JSON string into a malloc'ed NUL-terminated buffer. */
static int dupstr(loadctx *c, json_t *v, const char *path, char **out, size_t *len)
{
    if (!json_is_string(v))
        return bad(c, LMX_EFORMAT, "%s: expected a string", path);
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (!s)
        return bad(c, LMX_ENOMEM, "%s: out of memory", path);
    memcpy(s, json_string_value(v), n);
    s[n] = 0;
    *out = s;
    if (len)
        *len = n;
    return LMX_OK;
}

/* Optional boolean: absent or null -> def. */
static int getbool(loadctx *c, json_t *o, const char *key, const char *path, int def, int *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return LMX_OK;
    }
    if (!json_is_boolean(v))
        return bad(c, LMX_EFORMAT, "%s.%s: expected true or false", path, key);
    *out = json_is_true(v);
    return LMX_OK;
}

static const char *type_of(json_t *o)
{
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

/* {"String": s} or {"Regex": r}: sets *is_regex and *s. */
static int get_pattern(loadctx *c, json_t *o, const char *path, int *is_regex, char **s,
                       size_t *n)
{
    json_t *p = json_object_get(o, "pattern");
    char sub[300];
    snprintf(sub, sizeof sub, "%s.pattern", path);
    if (!json_is_object(p))
        return bad(c, LMX_EFORMAT, "%s: expected {\"String\": ...} or {\"Regex\": ...}", sub);
    json_t *v = json_object_get(p, "String");
    *is_regex = 0;
    if (!v) {
        v = json_object_get(p, "Regex");
        *is_regex = 1;
    }
    if (!v)
        return bad(c, LMX_EFORMAT, "%s: expected {\"String\": ...} or {\"Regex\": ...}", sub);
    snprintf(sub, sizeof sub, "%s.pattern.%s", path, *is_regex ? "Regex" : "String");
    return dupstr(c, v, sub, s, n);
}

/* ---- normalizer ---------------------------------------------------------------------------- */

static int load_normalizer(loadctx *c, json_t *o, const char *path)
{
    lmx_tokjson *t = c->t;
    if (!o || json_is_null(o))
        return LMX_OK;
    if (!json_is_object(o))
        return bad(c, LMX_EFORMAT, "%s: expected an object or null", path);
    const char *type = type_of(o);
    if (!type)
        return bad(c, LMX_EFORMAT, "%s.type: missing", path);
    char sub[300];
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(o, "normalizers");
        if (!json_is_array(arr))
            return bad(c, LMX_EFORMAT, "%s.normalizers: expected an array", path);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
            int rc = load_normalizer(c, json_array_get(arr, i), sub);
            if (rc)
                return rc;
        }
        return LMX_OK;
    }
    if (t->n_norm == LMX_TOK_MAX_STEPS)
        return bad(c, LMX_EUNSUPPORTED, "%s: more than %d normalizer steps", path, LMX_TOK_MAX_STEPS);
    lmx_tok_norm *n = &t->norm[t->n_norm];
    memset(n, 0, sizeof *n);
    int rc;
    if (strcmp(type, "Prepend") == 0) {
        n->type = LMX_NORM_PREPEND;
        snprintf(sub, sizeof sub, "%s.prepend", path);
        rc = dupstr(c, json_object_get(o, "prepend"), sub, &n->a, &n->alen);
    } else if (strcmp(type, "Replace") == 0) {
        int is_re;
        n->type = LMX_NORM_REPLACE;
        rc = get_pattern(c, o, path, &is_re, &n->a, &n->alen);
        if (!rc && is_re)
            rc = bad(c, LMX_EUNSUPPORTED,
                     "%s.pattern.Regex: Replace with a regex is not supported (only String patterns)",
                     path);
        if (!rc && n->alen == 0)
            rc = bad(c, LMX_EUNSUPPORTED, "%s.pattern.String: empty pattern is not supported", path);
        snprintf(sub, sizeof sub, "%s.content", path);
        if (!rc)
            rc = dupstr(c, json_object_get(o, "content"), sub, &n->b, &n->blen);
    } else if (strcmp(type, "NFC") == 0) {
        n->type = LMX_NORM_NFC;
        rc = LMX_OK;
    } else {
        return bad(c, LMX_EUNSUPPORTED,
                   "%s.type: normalizer \"%s\" is not supported (supported: Sequence, Prepend, "
                   "Replace with a String pattern, NFC)", path, type);
    }
    t->n_norm++; /* counted even on error so free() releases the strings */
    return rc;
}

/* ---- pre-tokenizer ------------------------------------------------------------------------- */

/* The regexes longmix implements by hand (exact strings as they appear in tokenizer.json). */
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int load_pretok(loadctx *c, json_t *o, const char *path)
{
    lmx_tokjson *t = c->t;
    if (!o || json_is_null(o))
        return LMX_OK;
    if (!json_is_object(o))
        return bad(c, LMX_EFORMAT, "%s: expected an object or null", path);
    const char *type = type_of(o);
    if (!type)
        return bad(c, LMX_EFORMAT, "%s.type: missing", path);
    char sub[300];
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(o, "pretokenizers");
        if (!json_is_array(arr))
            return bad(c, LMX_EFORMAT, "%s.pretokenizers: expected an array", path);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", path, i);
            int rc = load_pretok(c, json_array_get(arr, i), sub);
            if (rc)
                return rc;
        }
        return LMX_OK;
    }
    if (t->n_pre == LMX_TOK_MAX_STEPS)
        return bad(c, LMX_EUNSUPPORTED, "%s: more than %d pre-tokenizer steps", path,
                   LMX_TOK_MAX_STEPS);
    if (t->byte_level)
        return bad(c, LMX_EUNSUPPORTED,
                   "%s: a pre-tokenizer after ByteLevel is not supported", path);
    lmx_tok_pre *p = &t->pre[t->n_pre];
    memset(p, 0, sizeof *p);
    int rc;
    if (strcmp(type, "Split") == 0) {
        int is_re;
        char *pat = NULL;
        size_t plen = 0;
        rc = get_pattern(c, o, path, &is_re, &pat, &plen);
        if (rc)
            return rc;
        t->n_pre++;
        if (is_re) {
            p->type = LMX_PRE_SPLIT_RE;
            if (strcmp(pat, RE_LLAMA3) == 0) { p->re = LMX_RE_LLAMA3; p->re_digits = 3; }
            else if (strcmp(pat, RE_QWEN2) == 0) { p->re = LMX_RE_LLAMA3; p->re_digits = 1; }
            else if (strcmp(pat, RE_GPT2) == 0) p->re = LMX_RE_GPT2;
            else {
                rc = bad(c, LMX_EUNSUPPORTED,
                         "%s.pattern.Regex: regex %.120s%s is not supported (longmix implements the "
                         "LLaMA-3, Qwen2 and GPT-2 patterns by hand, no general regex engine)",
                         path, pat, plen > 120 ? "..." : "");
                free(pat);
                return rc;
            }
            free(pat);
        } else {
            p->type = LMX_PRE_SPLIT_STR;
            p->str = pat;
            p->slen = plen;
            if (!plen)
                return bad(c, LMX_EUNSUPPORTED, "%s.pattern.String: empty pattern is not supported",
                           path);
        }
        json_t *b = json_object_get(o, "behavior");
        const char *bs = json_is_string(b) ? json_string_value(b) : "";
        if (strcmp(bs, "Isolated") == 0) p->behavior = LMX_SPLIT_ISOLATED;
        else if (strcmp(bs, "Removed") == 0) p->behavior = LMX_SPLIT_REMOVED;
        else if (strcmp(bs, "MergedWithPrevious") == 0) p->behavior = LMX_SPLIT_MERGED_PREV;
        else if (strcmp(bs, "MergedWithNext") == 0) p->behavior = LMX_SPLIT_MERGED_NEXT;
        else if (strcmp(bs, "Contiguous") == 0) p->behavior = LMX_SPLIT_CONTIGUOUS;
        else
            return bad(c, LMX_EFORMAT, "%s.behavior: expected Isolated, Removed, MergedWithPrevious, "
                       "MergedWithNext or Contiguous", path);
        return getbool(c, o, "invert", path, 0, &p->invert);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        p->type = LMX_PRE_BYTELEVEL;
        t->n_pre++;
        t->byte_level = 1;
        rc = getbool(c, o, "add_prefix_space", path, 1, &p->add_prefix_space);
        if (!rc)
            rc = getbool(c, o, "use_regex", path, 1, &p->use_regex);
        return rc;
    }
    if (strcmp(type, "Metaspace") == 0) {
        p->type = LMX_PRE_METASPACE;
        t->n_pre++;
        json_t *r = json_object_get(o, "replacement");
        snprintf(sub, sizeof sub, "%s.replacement", path);
        if ((rc = dupstr(c, r, sub, &p->str, &p->slen)) != LMX_OK)
            return rc;
        if (p->slen == 0 || lmx__utf8_len((uint8_t)p->str[0]) != p->slen)
            return bad(c, LMX_EFORMAT, "%s: expected exactly one character", sub);
        json_t *ps = json_object_get(o, "prepend_scheme");
        if (json_is_string(ps)) {
            const char *s = json_string_value(ps);
            if (strcmp(s, "always") == 0) p->prepend_scheme = LMX_PREPEND_ALWAYS;
            else if (strcmp(s, "first") == 0) p->prepend_scheme = LMX_PREPEND_FIRST;
            else if (strcmp(s, "never") == 0) p->prepend_scheme = LMX_PREPEND_NEVER;
            else
                return bad(c, LMX_EFORMAT, "%s.prepend_scheme: expected always, first or never", path);
        } else {
            int aps = 1;
            if ((rc = getbool(c, o, "add_prefix_space", path, 1, &aps)) != LMX_OK)
                return rc;
            p->prepend_scheme = aps ? LMX_PREPEND_ALWAYS : LMX_PREPEND_NEVER;
        }
        return getbool(c, o, "split", path, 1, &p->split);
    }
    return bad(c, LMX_EUNSUPPORTED,
               "%s.type: pre-tokenizer \"%s\" is not supported (supported: Sequence, Split, "
               "ByteLevel, Metaspace)", path, type);
}

/* ---- decoder (only needed by decode; an unsupported one fails decode, not load) ------------- */

static int load_decoder(loadctx *c, json_t *o, const char *path, char *unsup, size_t unsup_len)
{
    lmx_tokjson *t = c->t;
    if (!o || json_is_null(o) || unsup[0])
        return LMX_OK;
    const char *type = json_is_object(o) ? type_of(o) : NULL;
    char sub[300];
    if (type && strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(o, "decoders");
        for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", path, i);
            int rc = load_decoder(c, json_array_get(arr, i), sub, unsup, unsup_len);
            if (rc)
                return rc;
        }
        return LMX_OK;
    }
    if (t->n_dec == LMX_TOK_MAX_STEPS) {
        snprintf(unsup, unsup_len, "%s: too many decoder steps", path);
        return LMX_OK;
    }
    lmx_tok_dec *d = &t->dec[t->n_dec];
    memset(d, 0, sizeof *d);
    int is_re = 0, rc = LMX_OK;
    if (!type) {
        snprintf(unsup, unsup_len, "%s.type: missing", path);
    } else if (strcmp(type, "ByteLevel") == 0) {
        d->type = LMX_DEC_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d->type = LMX_DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d->type = LMX_DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        d->type = LMX_DEC_REPLACE;
        t->n_dec++;
        lmx_error tmp;
        lmx_error *save = c->err;
        c->err = &tmp;
        rc = get_pattern(c, o, path, &is_re, &d->a, &d->alen);
        if (!rc) {
            snprintf(sub, sizeof sub, "%s.content", path);
            rc = dupstr(c, json_object_get(o, "content"), sub, &d->b, &d->blen);
        }
        c->err = save;
        if (rc == LMX_ENOMEM)
            return bad(c, rc, "%s", tmp.message);
        if (rc || is_re || !d->alen)
            snprintf(unsup, unsup_len, "%s: only Replace with a non-empty String pattern", path);
        return LMX_OK;
    } else if (strcmp(type, "Strip") == 0) {
        d->type = LMX_DEC_STRIP;
        json_t *ct = json_object_get(o, "content");
        json_t *st = json_object_get(o, "start"), *sp = json_object_get(o, "stop");
        const char *cs = json_is_string(ct) ? json_string_value(ct) : NULL;
        if (!cs || lmx__utf8_len((uint8_t)cs[0]) != strlen(cs) || !json_is_integer(st) ||
            !json_is_integer(sp) || json_integer_value(st) < 0 || json_integer_value(sp) < 0 ||
            json_integer_value(st) > 1000 || json_integer_value(sp) > 1000) {
            snprintf(unsup, unsup_len, "%s: Strip needs one content char and small start/stop", path);
        } else {
            d->a = malloc(strlen(cs) + 1);
            if (!d->a)
                return bad(c, LMX_ENOMEM, "%s: out of memory", path);
            strcpy(d->a, cs);
            d->alen = strlen(cs);
            d->start = (int)json_integer_value(st);
            d->stop = (int)json_integer_value(sp);
        }
    } else if (strcmp(type, "Metaspace") == 0) {
        d->type = LMX_DEC_METASPACE;
        json_t *r = json_object_get(o, "replacement");
        const char *rs = json_is_string(r) ? json_string_value(r) : NULL;
        if (!rs || !*rs || lmx__utf8_len((uint8_t)rs[0]) != strlen(rs)) {
            snprintf(unsup, unsup_len, "%s.replacement: expected one character", path);
        } else {
            d->a = malloc(strlen(rs) + 1);
            if (!d->a)
                return bad(c, LMX_ENOMEM, "%s: out of memory", path);
            strcpy(d->a, rs);
            d->alen = strlen(rs);
            json_t *ps = json_object_get(o, "prepend_scheme");
            json_t *aps = json_object_get(o, "add_prefix_space");
            if (json_is_string(ps))
                d->prepend_scheme = strcmp(json_string_value(ps), "never") == 0
                                        ? LMX_PREPEND_NEVER
                                        : strcmp(json_string_value(ps), "first") == 0
                                              ? LMX_PREPEND_FIRST
                                              : LMX_PREPEND_ALWAYS;
            else
                d->prepend_scheme = json_is_false(aps) ? LMX_PREPEND_NEVER : LMX_PREPEND_ALWAYS;
        }
    } else {
        snprintf(unsup, unsup_len, "%s.type: decoder \"%s\" is not supported", path, type);
    }
    t->n_dec++;
    return rc;
}

/* ---- model --------------------------------------------------------------------------------- */

static int get_id(loadctx *c, json_t *v, const char *path, uint32_t *id)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= (json_int_t)LMX_TOK_MAX_ID)
        return bad(c, LMX_EFORMAT, "%s: expected an id in [0, %u)", path, LMX_TOK_MAX_ID);
    *id = (uint32_t)json_integer_value(v);
    return LMX_OK;
}

static void quote(char *dst, size_t cap, const char *s, size_t n)
{
    /* short, printable rendition of a token for messages */
    size_t j = 0;
    for (size_t i = 0; i < n && j + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') { dst[j++] = '\\'; dst[j++] = (char)ch; }
        else if (ch < 0x20) j += (size_t)snprintf(dst + j, cap - j, "\\x%02x", ch);
        else dst[j++] = (char)ch;
    }
    if (j + 5 >= cap && cap > 4) { dst[j++] = '.'; dst[j++] = '.'; dst[j++] = '.'; }
    dst[j] = 0;
}

static int set_display(loadctx *c, uint32_t id, const char *s, size_t n)
{
    lmx_tokjson *t = c->t;
    if (t->id_arena.len + n > UINT32_MAX)
        return bad(c, LMX_ENOMEM, "tokenizer.json: token strings too large");
    t->id_off[id] = (uint32_t)t->id_arena.len;
    t->id_len[id] = (uint32_t)n;
    if (n && lmx__buf_append(&t->id_arena, s, n) != LMX_OK)
        return bad(c, LMX_ENOMEM, "tokenizer.json: out of memory");
    return LMX_OK;
}

/* ByteLevel: converts a vocab string to the raw bytes it stands for; 0 when a char is outside
 * the 256-char alphabet (such a token can never be produced from text). */
static int bytelevel_unmap(const int32_t *inv, const char *s, size_t n, uint8_t *out, size_t *on)
{
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if (lmx__utf8_valid_prefix((const uint8_t *)s + i, n - i) == 0)
            return 0;
        i += (size_t)lmx__utf8_dec((const uint8_t *)s + i, n - i, &cp);
        if (cp >= 0x144 || inv[cp] < 0)
            return 0;
        out[j++] = (uint8_t)inv[cp];
    }
    *on = j;
    return 1;
}

static int load_model(loadctx *c, json_t *m, json_t *added)
{
    lmx_tokjson *t = c->t;
    int rc;
    if (!json_is_object(m))
        return bad(c, LMX_EFORMAT, "model: expected an object");
    const char *type = type_of(m);
    if (type && strcmp(type, "BPE") != 0)
        return bad(c, LMX_EUNSUPPORTED, "model.type: model \"%s\" is not supported (only BPE)", type);
    if (!type && !json_object_get(m, "merges"))
        return bad(c, LMX_EUNSUPPORTED, "model.type: missing and the model has no merges (only BPE "
                   "is supported)");
    json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout) &&
        !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return bad(c, LMX_EUNSUPPORTED, "model.dropout: BPE dropout is not supported (ids would be random)");
    if ((rc = getbool(c, m, "fuse_unk", "model", 0, &t->fuse_unk)) ||
        (rc = getbool(c, m, "byte_fallback", "model", 0, &t->byte_fallback)) ||
        (rc = getbool(c, m, "ignore_merges", "model", 0, &t->ignore_merges)))
        return rc;
    json_t *v;
    if ((v = json_object_get(m, "continuing_subword_prefix")) && !json_is_null(v) &&
        (rc = dupstr(c, v, "model.continuing_subword_prefix", &t->cont_prefix, &t->cont_prefix_len)))
        return rc;
    if ((v = json_object_get(m, "end_of_word_suffix")) && !json_is_null(v) &&
        (rc = dupstr(c, v, "model.end_of_word_suffix", &t->eow_suffix, &t->eow_suffix_len)))
        return rc;
    if (t->cont_prefix_len > LMX_TOK_MAX_AFFIX || t->eow_suffix_len > LMX_TOK_MAX_AFFIX)
        return bad(c, LMX_EUNSUPPORTED, "model: continuing_subword_prefix/end_of_word_suffix longer "
                   "than %d bytes", LMX_TOK_MAX_AFFIX);
    if (t->byte_level && (t->cont_prefix_len || t->eow_suffix_len || t->byte_fallback))
        return bad(c, LMX_EUNSUPPORTED, "model: continuing_subword_prefix, end_of_word_suffix or "
                   "byte_fallback together with a ByteLevel pre-tokenizer is not supported");

    json_t *vocab = json_object_get(m, "vocab");
    if (!json_is_object(vocab))
        return bad(c, LMX_EFORMAT, "model.vocab: expected an object");
    size_t nv = json_object_size(vocab);
    if (nv >= LMX_TOK_MAX_ID)
        return bad(c, LMX_EUNSUPPORTED, "model.vocab: more than %u tokens", LMX_TOK_MAX_ID);

    /* id limit over vocab and added tokens */
    uint32_t limit = 0;
    const char *key;
    json_t *val;
    char path[512], q[80];
    json_object_foreach(vocab, key, val) {
        uint32_t id;
        quote(q, sizeof q, key, strlen(key));
        snprintf(path, sizeof path, "model.vocab[\"%s\"]", q);
        if ((rc = get_id(c, val, path, &id)))
            return rc;
        if (id + 1 > limit)
            limit = id + 1;
    }
    for (size_t i = 0; json_is_array(added) && i < json_array_size(added); i++) {
        uint32_t id;
        snprintf(path, sizeof path, "added_tokens[%zu].id", i);
        if ((rc = get_id(c, json_object_get(json_array_get(added, i), "id"), path, &id)))
            return rc;
        if (id + 1 > limit)
            limit = id + 1;
    }
    t->id_limit = limit;
    t->id_off = malloc((size_t)(limit ? limit : 1) * sizeof *t->id_off);
    t->id_len = calloc(limit ? limit : 1, sizeof *t->id_len);
    t->id_special = calloc(limit ? limit : 1, 1);
    if (!t->id_off || !t->id_len || !t->id_special)
        return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
    for (uint32_t i = 0; i < limit; i++)
        t->id_off[i] = UINT32_MAX;

    if (lmx__tok_strmap_init(&c->orig, (uint32_t)nv) != LMX_OK)
        return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
    json_object_foreach(vocab, key, val) {
        uint32_t id = (uint32_t)json_integer_value(val);
        size_t klen = strlen(key); /* jansson object keys cannot hold NUL */
        if (lmx__tok_strmap_put(&c->orig, (const uint8_t *)key, klen, id) != LMX_OK)
            return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
        if ((rc = set_display(c, id, key, klen)))
            return rc;
    }

    /* encoding-space vocab */
    if (t->byte_level) {
        int32_t inv[0x144];
        for (int i = 0; i < 0x144; i++)
            inv[i] = -1;
        for (int b = 0; b < 256; b++)
            inv[lmx__bytelevel_char((uint8_t)b)] = b;
        if (lmx__tok_strmap_init(&t->vocab, (uint32_t)nv) != LMX_OK)
            return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
        uint8_t *tmp = NULL;
        size_t tmpcap = 0;
        json_object_foreach(vocab, key, val) {
            size_t klen = strlen(key), on;
            if (klen > tmpcap) {
                free(tmp);
                tmpcap = klen * 2;
                tmp = malloc(tmpcap);
                if (!tmp)
                    return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
            }
            if (bytelevel_unmap(inv, key, klen, tmp, &on) &&
                lmx__tok_strmap_put(&t->vocab, tmp, on, (uint32_t)json_integer_value(val)) != LMX_OK) {
                free(tmp);
                return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
            }
        }
        free(tmp);
        for (int b = 0; b < 256; b++) {
            uint8_t byte = (uint8_t)b;
            t->byte_ids[b] = lmx__tok_strmap_get(&t->vocab, &byte, 1);
        }
    } else {
        t->vocab = c->orig;
        memset(&c->orig, 0, sizeof c->orig);
        for (int b = 0; b < 256; b++) {
            char code[8];
            snprintf(code, sizeof code, "<0x%02X>", b);
            t->byte_ids[b] = t->byte_fallback
                                 ? lmx__tok_strmap_get(&t->vocab, (const uint8_t *)code, 6)
                                 : LMX_TOKEN_NONE;
        }
    }
    const lmx_tok_strmap *ov = t->byte_level ? &c->orig : &t->vocab;
    for (int ch = 0; ch < 128; ch++) {
        uint8_t b = (uint8_t)ch;
        t->ascii_ids[ch] = (t->cont_prefix_len || t->eow_suffix_len)
                               ? LMX_TOKEN_NONE
                               : lmx__tok_strmap_get(&t->vocab, &b, 1);
    }

    t->unk_id = LMX_TOKEN_NONE;
    if ((v = json_object_get(m, "unk_token")) && !json_is_null(v)) {
        if (!json_is_string(v))
            return bad(c, LMX_EFORMAT, "model.unk_token: expected a string or null");
        t->unk_id = lmx__tok_strmap_get(ov, (const uint8_t *)json_string_value(v),
                                        json_string_length(v));
        if (t->unk_id == LMX_TOKEN_NONE) {
            quote(q, sizeof q, json_string_value(v), json_string_length(v));
            return bad(c, LMX_EFORMAT, "model.unk_token: \"%s\" is not in model.vocab", q);
        }
    }

    /* merges */
    json_t *merges = json_object_get(m, "merges");
    if (!merges || json_is_null(merges))
        merges = NULL;
    else if (!json_is_array(merges))
        return bad(c, LMX_EFORMAT, "model.merges: expected an array");
    size_t nm = merges ? json_array_size(merges) : 0;
    if (nm >= UINT32_MAX / 4)
        return bad(c, LMX_EUNSUPPORTED, "model.merges: too many merges");
    if (mergemap_init(&t->merges, (uint32_t)nm) != LMX_OK)
        return bad(c, LMX_ENOMEM, "model.merges: out of memory");
    char *cat = NULL;
    size_t catcap = 0;
    int seg_ok = !t->byte_level && !t->cont_prefix_len && !t->eow_suffix_len;
    static const char meta[] = "\xE2\x96\x81"; /* U+2581, SentencePiece's space */
    if (seg_ok && lmx__tok_strmap_get(&t->vocab, (const uint8_t *)meta, 3) == LMX_TOKEN_NONE)
        seg_ok = 0;
    for (size_t i = 0; i < nm; i++) {
        json_t *e = json_array_get(merges, i);
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(e)) {
            const char *s = json_string_value(e);
            size_t n = json_string_length(e);
            const char *sp = memchr(s, ' ', n);
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
                free(cat);
                return bad(c, LMX_EFORMAT, "model.merges[%zu]: expected \"A B\" with exactly one space", i);
            }
            a = s; al = (size_t)(sp - s); b = sp + 1; bl = n - al - 1;
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0));
            al = json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            bl = json_string_length(json_array_get(e, 1));
        } else {
            free(cat);
            return bad(c, LMX_EFORMAT, "model.merges[%zu]: expected \"A B\" or [\"A\", \"B\"]", i);
        }
        uint32_t ia = lmx__tok_strmap_get(ov, (const uint8_t *)a, al);
        uint32_t ib = lmx__tok_strmap_get(ov, (const uint8_t *)b, bl);
        const char *missing = ia == LMX_TOKEN_NONE ? a : ib == LMX_TOKEN_NONE ? b : NULL;
        size_t mlen = ia == LMX_TOKEN_NONE ? al : bl;
        size_t pl = t->cont_prefix_len;
        if (!missing && pl && (bl < pl || memcmp(b, t->cont_prefix, pl) != 0))
            pl = 0; /* HF strips the prefix length unconditionally; only strip a real prefix */
        size_t cl = al + bl - pl;
        if (cl > catcap) {
            free(cat);
            catcap = cl * 2 + 16;
            cat = malloc(catcap);
            if (!cat)
                return bad(c, LMX_ENOMEM, "model.merges: out of memory");
        }
        uint32_t inew = LMX_TOKEN_NONE;
        if (!missing) {
            memcpy(cat, a, al);
            memcpy(cat + al, b + pl, bl - pl);
            inew = lmx__tok_strmap_get(ov, (const uint8_t *)cat, cl);
            if (inew == LMX_TOKEN_NONE) {
                missing = cat;
                mlen = cl;
            }
        }
        if (missing) {
            quote(q, sizeof q, missing, mlen);
            free(cat);
            return bad(c, LMX_EFORMAT, "model.merges[%zu]: unknown token \"%s\"", i, q);
        }
        mergemap_put(&t->merges, ia, ib, (uint32_t)i, inew);
        if (seg_ok && bl >= 3 && memcmp(b, meta, 3) == 0 && !(al >= 3 && memcmp(a + al - 3, meta, 3) == 0))
            seg_ok = 0;
    }
    free(cat);
    if (seg_ok && t->unk_id != LMX_TOKEN_NONE) {
        uint32_t ul = t->id_len[t->unk_id];
        const uint8_t *us = t->id_arena.data + t->id_off[t->unk_id];
        if (ul >= 3 && memcmp(us + ul - 3, meta, 3) == 0)
            seg_ok = 0;
    }
    t->seg_enabled = seg_ok;
    memcpy(t->seg_char, meta, 3);
    t->seg_char_len = 3;
    return LMX_OK;
}

int lmx__tokjson_normalize(const lmx_tokjson *tj, const uint8_t *s, size_t n, lmx_buf *out,
                           lmx_buf *tmp, uint32_t **u32, size_t *u32cap);

static int load_added(loadctx *c, json_t *added)
{
    lmx_tokjson *t = c->t;
    if (!added || json_is_null(added))
        return LMX_OK;
    if (!json_is_array(added))
        return bad(c, LMX_EFORMAT, "added_tokens: expected an array");
    size_t n = json_array_size(added);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added)
        return bad(c, LMX_ENOMEM, "added_tokens: out of memory");
    lmx_buf nb = {0}, tmp = {0};
    uint32_t *u32 = NULL;
    size_t u32cap = 0;
    int rc = LMX_OK;
    char path[64];
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *o = json_array_get(added, i);
        lmx_tok_added *a = &t->added[i];
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        if (!json_is_object(o)) {
            rc = bad(c, LMX_EFORMAT, "%s: expected an object", path);
            break;
        }
        char sub[80];
        snprintf(sub, sizeof sub, "%s.id", path);
        if ((rc = get_id(c, json_object_get(o, "id"), sub, &a->id)))
            break;
        snprintf(sub, sizeof sub, "%s.content", path);
        char *content;
        size_t clen;
        if ((rc = dupstr(c, json_object_get(o, "content"), sub, &content, &clen)))
            break;
        int special = 0, lstrip = 0, rstrip = 0, single = 0, normalized = 0;
        if ((rc = getbool(c, o, "special", path, 0, &special)) ||
            (rc = getbool(c, o, "lstrip", path, 0, &lstrip)) ||
            (rc = getbool(c, o, "rstrip", path, 0, &rstrip)) ||
            (rc = getbool(c, o, "single_word", path, 0, &single)) ||
            (rc = getbool(c, o, "normalized", path, !special, &normalized))) {
            free(content);
            break;
        }
        a->special = (uint8_t)special;
        a->lstrip = (uint8_t)lstrip;
        a->rstrip = (uint8_t)rstrip;
        a->single_word = (uint8_t)single;
        a->normalized = (uint8_t)normalized;
        t->n_added++;
        if ((rc = set_display(c, a->id, content, clen))) {
            free(content);
            break;
        }
        t->id_special[a->id] = a->special;
        if (normalized && t->n_norm) {
            nb.len = 0;
            if (lmx__tokjson_normalize(t, (const uint8_t *)content, clen, &nb, &tmp, &u32, &u32cap)) {
                free(content);
                rc = bad(c, LMX_ENOMEM, "%s: out of memory", path);
                break;
            }
            free(content);
            content = malloc(nb.len + 1);
            if (!content) {
                rc = bad(c, LMX_ENOMEM, "%s: out of memory", path);
                break;
            }
            memcpy(content, nb.data, nb.len);
            clen = nb.len;
        }
        a->content = (uint8_t *)content;
        a->len = clen;
        if (trie_add(normalized ? &t->trie_norm : &t->trie_raw, a->content, a->len, (int32_t)i))
            rc = bad(c, LMX_ENOMEM, "%s: out of memory", path);
    }
    lmx__buf_free(&nb);
    lmx__buf_free(&tmp);
    free(u32);
    return rc;
}

/* BOS/EOS: tokenizer_config.json's bos_token/eos_token (string or {"content": ...}) when given,
 * else an added token (or vocab entry) named <s>/</s> or <|begin_of_text|>/<|end_of_text|>. */
static uint32_t find_token(loadctx *c, const char *s)
{
    lmx_tokjson *t = c->t;
    size_t n = strlen(s);
    for (uint32_t i = 0; i < t->n_added; i++)
        if (t->id_len[t->added[i].id] == n &&
            memcmp(t->id_arena.data + t->id_off[t->added[i].id], s, n) == 0)
            return t->added[i].id;
    const lmx_tok_strmap *ov = t->byte_level ? &c->orig : &t->vocab;
    return ov->slots ? lmx__tok_strmap_get(ov, (const uint8_t *)s, n) : LMX_TOKEN_NONE;
}

static uint32_t cfg_token(loadctx *c, json_t *cfg, const char *key)
{
    json_t *v = cfg ? json_object_get(cfg, key) : NULL;
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? find_token(c, json_string_value(v)) : LMX_TOKEN_NONE;
}

int lmx__tokjson_load(const char *data, size_t len, const char *cfgdata, size_t cfg_len,
                      lmx_tokjson **out, lmx_error *err)
{
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_ALLOW_NUL, &jerr);
    if (!root)
        return lmx__err(err, LMX_EFORMAT, "tokenizer.json: line %d column %d: %s", jerr.line,
                        jerr.column, jerr.text);
    loadctx c = {0};
    c.err = err;
    c.t = calloc(1, sizeof *c.t);
    int rc;
    if (!c.t) {
        json_decref(root);
        return lmx__err(err, LMX_ENOMEM, "tokenizer.json: out of memory");
    }
    lmx_tokjson *t = c.t;
    if (!json_is_object(root)) {
        rc = bad(&c, LMX_EFORMAT, "tokenizer.json: top level is not an object");
        goto done;
    }
    json_t *model = json_object_get(root, "model");
    if (!model) {
        rc = bad(&c, LMX_EFORMAT, "model: missing");
        goto done;
    }
    if ((rc = load_normalizer(&c, json_object_get(root, "normalizer"), "normalizer")))
        goto done;
    if ((rc = load_pretok(&c, json_object_get(root, "pre_tokenizer"), "pre_tokenizer")))
        goto done;
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added)) {
        rc = bad(&c, LMX_EFORMAT, "added_tokens: expected an array");
        goto done;
    }
    if ((rc = load_model(&c, model, added)))
        goto done;
    if ((rc = load_added(&c, added)))
        goto done;
    char unsup[LMX_ERROR_MESSAGE_MAX] = "";
    if ((rc = load_decoder(&c, json_object_get(root, "decoder"), "decoder", unsup, sizeof unsup)))
        goto done;
    if (unsup[0] && !(t->dec_error = strdup(unsup))) {
        /* decode() reports an unsupported decoder; encoding is unaffected */
        rc = bad(&c, LMX_ENOMEM, "decoder: out of memory");
        goto done;
    }

    json_t *cfg = NULL;
    if (cfgdata)
        cfg = json_loadb(cfgdata, cfg_len, 0, NULL);
    t->bos = cfg_token(&c, cfg, "bos_token");
    t->eos = cfg_token(&c, cfg, "eos_token");
    json_decref(cfg);
    if (t->bos == LMX_TOKEN_NONE)
        t->bos = find_token(&c, "<s>");
    if (t->bos == LMX_TOKEN_NONE)
        t->bos = find_token(&c, "<|begin_of_text|>");
    if (t->eos == LMX_TOKEN_NONE)
        t->eos = find_token(&c, "</s>");
    if (t->eos == LMX_TOKEN_NONE)
        t->eos = find_token(&c, "<|end_of_text|>");
    rc = LMX_OK;
done:
    lmx__tok_strmap_free(&c.orig);
    json_decref(root);
    if (rc) {
        lmx__tokjson_free(t);
        return rc;
    }
    *out = t;
    return LMX_OK;
}

void lmx__tokjson_free(lmx_tokjson *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    for (int i = 0; i < t->n_pre; i++)
        free(t->pre[i].str);
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].a);
        free(t->dec[i].b);
    }
    free(t->dec_error);
    free(t->cont_prefix);
    free(t->eow_suffix);
    lmx__tok_strmap_free(&t->vocab);
    free(t->merges.slots);
    for (uint32_t i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->added);
    free(t->trie_raw.nodes);
    free(t->trie_norm.nodes);
    free(t->id_off);
    free(t->id_len);
    free(t->id_special);
    lmx__buf_free(&t->id_arena);
    free(t);
}
