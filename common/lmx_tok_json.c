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
    /* load <= 2/3: a smaller table (8 MB for LLaMA-3) misses the CPU caches less than a sparser one */
    uint32_t size = pow2_at_least((uint64_t)expected * 3 / 2 + 16);
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

/* model.vocab and model.merges as flat lists of strings in one arena (offsets, so the arena may
 * grow). Filled either by the fast scanner straight from the file text or from jansson's tree. */
typedef struct vocablists {
    lmx_buf arena;
    uint32_t *v;  /* vocab entry i: key at v[3i] (offset), v[3i+1] (length), id v[3i+2] */
    size_t nv, vcap;
    uint32_t *m;  /* merge i: a at m[4i], m[4i+1]; b at m[4i+2], m[4i+3] */
    size_t nm, mcap;
    /* jansson path only: index of the first malformed merge (its error is reported when the
     * merge loop reaches it, keeping the old order of errors) and its message kind */
    size_t bad_merge;
    int bad_merge_kind;
} vocablists;

typedef struct loadctx {
    lmx_tokjson *t;
    lmx_error *err;
    lmx_tok_strmap orig; /* vocab keys as written in tokenizer.json */
    vocablists *fast;    /* set when the fast scanner parsed vocab and merges */
} loadctx;

/* Returned (internally) when the fast scanner's result turns out unusable (a duplicate vocab
 * key): the load restarts on the plain jansson path. */
#define FAST_FALLBACK (-1000)

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

static int isalnum_ascii(int c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* ByteLevel: converts a vocab string to the raw bytes it stands for; 0 when a char is outside
 * the 256-char alphabet (such a token can never be produced from text). */
static int bytelevel_unmap(const int32_t *inv, const char *s, size_t n, uint8_t *out, size_t *on)
{
    size_t j = 0;
    if (lmx__utf8_valid_prefix((const uint8_t *)s, n) != n)
        return 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)lmx__utf8_dec((const uint8_t *)s + i, n - i, &cp);
        if (cp >= 0x144 || inv[cp] < 0)
            return 0;
        out[j++] = (uint8_t)inv[cp];
    }
    *on = j;
    return 1;
}

/* ---- vocab and merges lists ---------------------------------------------------------------- */

static void lists_free(vocablists *L)
{
    lmx__buf_free(&L->arena);
    free(L->v);
    free(L->m);
    memset(L, 0, sizeof *L);
}

/* Appends string s[0..n) to the arena; its offset in *off. */
static int arena_str(vocablists *L, const void *s, size_t n, uint32_t *off)
{
    if (L->arena.len + n > UINT32_MAX)
        return LMX_ENOMEM;
    *off = (uint32_t)L->arena.len;
    return n ? lmx__buf_append(&L->arena, s, n) : LMX_OK;
}

static int vocab_add(vocablists *L, uint32_t off, size_t len, uint32_t id)
{
    if (L->nv == L->vcap) {
        size_t nc = L->vcap ? L->vcap * 2 : 1024;
        uint32_t *nv = realloc(L->v, nc * 3 * sizeof *nv);
        if (!nv)
            return LMX_ENOMEM;
        L->v = nv;
        L->vcap = nc;
    }
    L->v[3 * L->nv] = off;
    L->v[3 * L->nv + 1] = (uint32_t)len;
    L->v[3 * L->nv + 2] = id;
    L->nv++;
    return LMX_OK;
}

static int merge_add(vocablists *L, uint32_t aoff, size_t al, uint32_t boff, size_t bl)
{
    if (L->nm == L->mcap) {
        size_t nc = L->mcap ? L->mcap * 2 : 1024;
        uint32_t *nm = realloc(L->m, nc * 4 * sizeof *nm);
        if (!nm)
            return LMX_ENOMEM;
        L->m = nm;
        L->mcap = nc;
    }
    uint32_t *e = L->m + 4 * L->nm++;
    e[0] = aoff;
    e[1] = (uint32_t)al;
    e[2] = boff;
    e[3] = (uint32_t)bl;
    return LMX_OK;
}

/* jansson path: vocab object -> lists (ids checked, errors name the key). */
static int vocab_from_json(loadctx *c, json_t *vocab, vocablists *L)
{
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        uint32_t id = 0, off;
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= (json_int_t)LMX_TOK_MAX_ID) {
            char path[512], q[80];
            quote(q, sizeof q, key, strlen(key));
            snprintf(path, sizeof path, "model.vocab[\"%s\"]", q);
            return get_id(c, val, path, &id);
        }
        id = (uint32_t)json_integer_value(val);
        size_t klen = strlen(key); /* jansson object keys cannot hold NUL */
        if (arena_str(L, key, klen, &off) || vocab_add(L, off, klen, id))
            return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
    }
    return LMX_OK;
}

/* jansson path: merges array -> lists. A malformed entry stops the list and is reported by the
 * merge loop when it gets there (after the errors of earlier entries, as before). */
static int merges_from_json(loadctx *c, json_t *merges, vocablists *L)
{
    if (!merges || json_is_null(merges))
        return LMX_OK;
    if (!json_is_array(merges)) {
        L->bad_merge_kind = 3;
        return LMX_OK;
    }
    size_t nm = json_array_size(merges);
    for (size_t i = 0; i < nm; i++) {
        json_t *e = json_array_get(merges, i);
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(e)) {
            const char *s = json_string_value(e);
            size_t n = json_string_length(e);
            const char *sp = memchr(s, ' ', n);
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
                L->bad_merge = i;
                L->bad_merge_kind = 1;
                return LMX_OK;
            }
            a = s; al = (size_t)(sp - s); b = sp + 1; bl = n - al - 1;
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0));
            al = json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            bl = json_string_length(json_array_get(e, 1));
        } else {
            L->bad_merge = i;
            L->bad_merge_kind = 2;
            return LMX_OK;
        }
        uint32_t ao, bo;
        if (arena_str(L, a, al, &ao) || arena_str(L, b, bl, &bo) || merge_add(L, ao, al, bo, bl))
            return bad(c, LMX_ENOMEM, "model.merges: out of memory");
    }
    return LMX_OK;
}

/* ---- fast scanner ----------------------------------------------------------------------------
 *
 * jansson needs ~0.2 s and ~10 allocations per entry for a 9 MB tokenizer.json, most of it in
 * model.vocab and model.merges, which the loader only reads once into its own tables. The scanner
 * parses those two values straight into vocablists and the rest of the file goes to jansson with
 * them blanked to {} / [] (same length, newlines kept, so jansson's line/column in errors do not
 * move). It accepts only what jansson accepts and reads the same way; anything else (a syntax
 * error, escapes in keys on the way to the model, \u0000 in a vocab key, unpaired surrogate
 * escapes, ids that are not plain integers below LMX_TOK_MAX_ID, merges that are not "A B" or
 * ["A","B"], duplicate keys, invalid UTF-8) makes it give up, and the plain jansson path then
 * decides, with its own error messages. */

typedef struct fscan {
    const char *p, *end;
    lmx_buf *dst;        /* decoded strings are appended here (the lists' arena) */
    size_t start, slen;  /* the last decoded string: dst->data + start, slen bytes */
} fscan;

static void fs_ws(fscan *f)
{
    while (f->p < f->end && (*f->p == ' ' || *f->p == '\t' || *f->p == '\n' || *f->p == '\r'))
        f->p++;
}

static int fs_hex4(const char *p, const char *end, uint32_t *v)
{
    if (end - p < 4)
        return 0;
    uint32_t x = 0;
    for (int k = 0; k < 4; k++) {
        char ch = p[k];
        int h = ch >= '0' && ch <= '9' ? ch - '0' : (ch | 0x20) >= 'a' && (ch | 0x20) <= 'f' ? (ch | 0x20) - 'a' + 10 : -1;
        if (h < 0)
            return 0;
        x = x << 4 | (uint32_t)h;
    }
    *v = x;
    return 1;
}

/* String at f->p (on the opening quote), decoded onto f->dst (when decode; see f->start/slen)
 * or only validated.
 * raw_key: the string must have no escapes (keys compared as written). nul_ok: \u0000 allowed. */
static int fs_string(fscan *f, int decode, int raw_key, int nul_ok)
{
    if (f->p >= f->end || *f->p != '"')
        return 0;
    const char *p = f->p + 1, *end = f->end;
    f->start = f->dst->len;
    for (;;) {
        const char *q = p;
        while (q < end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
            q++;
        if (decode && q > p && lmx__buf_append(f->dst, p, (size_t)(q - p)))
            return 0;
        if (q >= end || (unsigned char)*q < 0x20)
            return 0;
        if (*q == '"') {
            f->p = q + 1;
            /* jansson rejects invalid UTF-8 in strings; decoded strings are the ones that end up
             * in the blanked parts (escapes only ever decode to whole valid chars, so checking
             * the decoded string is checking the raw one). Skipped strings stay in the text
             * jansson parses and are checked there. */
            f->slen = f->dst->len - f->start;
            return !decode ||
                   lmx__utf8_valid_prefix(f->dst->data + f->start, f->slen) == f->slen;
        }
        if (raw_key || end - q < 2)
            return 0;
        char ch = q[1];
        q += 2;
        uint8_t o[4];
        size_t on = 1;
        switch (ch) {
        case '"': o[0] = '"'; break;
        case '\\': o[0] = '\\'; break;
        case '/': o[0] = '/'; break;
        case 'b': o[0] = '\b'; break;
        case 'f': o[0] = '\f'; break;
        case 'n': o[0] = '\n'; break;
        case 'r': o[0] = '\r'; break;
        case 't': o[0] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (!fs_hex4(q, end, &cp))
                return 0;
            q += 4;
            if ((cp >= 0xDC00 && cp <= 0xDFFF) || (cp == 0 && !nul_ok))
                return 0;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - q < 6 || q[0] != '\\' || q[1] != 'u' || !fs_hex4(q + 2, end, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return 0;
                q += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            on = (size_t)lmx__utf8_enc(cp, o);
            break;
        }
        default:
            return 0;
        }
        if (decode && lmx__buf_append(f->dst, o, on))
            return 0;
        p = q;
    }
}

/* Skips any JSON value (strict grammar; numbers only validated for syntax, which is all jansson
 * needs here since the value is re-parsed by jansson anyway). */
/* At '{' of a non-empty object: consumes it and the whitespace after; 0 when not such an object
 * (an empty object is left to the jansson path). */
static int fs_object_open(fscan *f)
{
    if (f->p >= f->end || *f->p != '{')
        return 0;
    f->p++;
    fs_ws(f);
    return f->p < f->end && *f->p != '}';
}

/* A member's key and the ':' after it; *k and *kl: the raw key bytes (keys with escapes are refused by
 * fs_string's raw_key mode). Leaves f at the value. */
static int fs_key(fscan *f, const char **k, size_t *kl)
{
    *k = f->p + 1;
    if (!fs_string(f, 0, 1, 0))
        return 0;
    *kl = (size_t)(f->p - *k - 1);
    fs_ws(f);
    if (f->p >= f->end || *f->p != ':')
        return 0;
    f->p++;
    fs_ws(f);
    return 1;
}

/* After a member's value: 1 when another member follows (',' consumed), 0 at the end of the
 * object ('}' consumed), -1 on anything else. */
static int fs_member_next(fscan *f)
{
    fs_ws(f);
    if (f->p >= f->end)
        return -1;
    if (*f->p == '}') {
        f->p++;
        return 0;
    }
    if (*f->p != ',')
        return -1;
    f->p++;
    fs_ws(f);
    return 1;
}

static int fs_skip(fscan *f, int depth)
{
    if (depth > 64 || f->p >= f->end)
        return 0;
    char ch = *f->p;
    if (ch == '"')
        return fs_string(f, 0, 0, 1);
    if (ch == '{' || ch == '[') {
        char close = ch == '{' ? '}' : ']';
        f->p++;
        fs_ws(f);
        if (f->p < f->end && *f->p == close) {
            f->p++;
            return 1;
        }
        for (;;) {
            if (ch == '{') {
                if (!fs_string(f, 0, 0, 0))
                    return 0;
                fs_ws(f);
                if (f->p >= f->end || *f->p != ':')
                    return 0;
                f->p++;
                fs_ws(f);
            }
            if (!fs_skip(f, depth + 1))
                return 0;
            fs_ws(f);
            if (f->p >= f->end)
                return 0;
            if (*f->p == close) {
                f->p++;
                return 1;
            }
            if (*f->p != ',')
                return 0;
            f->p++;
            fs_ws(f);
        }
    }
    static const char *const lits[3] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(lits[k]);
        if ((size_t)(f->end - f->p) >= n && memcmp(f->p, lits[k], n) == 0) {
            f->p += n;
            return 1;
        }
    }
    const char *q = f->p;
    if (q < f->end && *q == '-')
        q++;
    if (q >= f->end || *q < '0' || *q > '9')
        return 0;
    /* the rest of a number; jansson re-checks it when it parses the blanked document */
    while (q < f->end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' ||
                          *q == '+' || *q == '-'))
        q++;
    f->p = q;
    return 1;
}

static int fs_vocab(fscan *f, vocablists *L)
{
    if (f->p >= f->end || *f->p != '{')
        return 0;
    f->p++;
    fs_ws(f);
    if (f->p < f->end && *f->p == '}') {
        f->p++;
        return 1;
    }
    for (;;) {
        if (!fs_string(f, 1, 0, 0))
            return 0;
        fs_ws(f);
        if (f->p >= f->end || *f->p != ':')
            return 0;
        f->p++;
        fs_ws(f);
        /* id: 0 or [1-9][0-9]*, below LMX_TOK_MAX_ID, followed by a delimiter */
        const char *q = f->p;
        uint64_t id = 0;
        while (q < f->end && *q >= '0' && *q <= '9' && q - f->p < 9)
            id = id * 10 + (uint64_t)(*q++ - '0');
        if (q == f->p || (*f->p == '0' && q - f->p > 1) || id >= LMX_TOK_MAX_ID || q >= f->end ||
            !(*q == ',' || *q == '}' || *q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            return 0;
        f->p = q;
        if (f->start > UINT32_MAX - f->slen || vocab_add(L, (uint32_t)f->start, f->slen, (uint32_t)id))
            return 0;
        fs_ws(f);
        if (f->p >= f->end)
            return 0;
        if (*f->p == '}') {
            f->p++;
            return 1;
        }
        if (*f->p != ',')
            return 0;
        f->p++;
        fs_ws(f);
    }
}

static int fs_merges(fscan *f, vocablists *L)
{
    if (f->p >= f->end || *f->p != '[')
        return 0;
    f->p++;
    fs_ws(f);
    if (f->p < f->end && *f->p == ']') {
        f->p++;
        return 1;
    }
    for (;;) {
        uint32_t ao, bo;
        size_t al, bl;
        if (f->p < f->end && *f->p == '"') {
            if (!fs_string(f, 1, 0, 1) || f->start + f->slen > UINT32_MAX)
                return 0;
            /* "A B" stays in the arena as is: A and B are its two halves */
            const uint8_t *s = f->dst->data + f->start;
            size_t n = f->slen;
            const uint8_t *sp = n ? memchr(s, ' ', n) : NULL;
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
                return 0;
            al = (size_t)(sp - s);
            bl = n - al - 1;
            ao = (uint32_t)f->start;
            bo = (uint32_t)(f->start + al + 1);
        } else if (f->p < f->end && *f->p == '[') {
            f->p++;
            fs_ws(f);
            if (!fs_string(f, 1, 0, 1) || f->start + f->slen > UINT32_MAX)
                return 0;
            ao = (uint32_t)f->start;
            al = f->slen;
            fs_ws(f);
            if (f->p >= f->end || *f->p != ',')
                return 0;
            f->p++;
            fs_ws(f);
            if (!fs_string(f, 1, 0, 1) || f->start + f->slen > UINT32_MAX)
                return 0;
            bo = (uint32_t)f->start;
            bl = f->slen;
            fs_ws(f);
            if (f->p >= f->end || *f->p != ']')
                return 0;
            f->p++;
        } else {
            return 0;
        }
        if (merge_add(L, ao, al, bo, bl))
            return 0;
        fs_ws(f);
        if (f->p >= f->end)
            return 0;
        if (*f->p == ']') {
            f->p++;
            return 1;
        }
        if (*f->p != ',')
            return 0;
        f->p++;
        fs_ws(f);
    }
}

/* Appends data[s..e) (a container value) to o blanked: the brackets stay, then the region's
 * newlines, then one space per char after its last newline, so jansson's line and column
 * numbers (it counts chars, not bytes) for anything after it are unchanged. Returns the new end
 * of o. */
static char *blank_range(char *o, const char *data, size_t s, size_t e)
{
    *o++ = data[s];
    size_t i = s + 1, last = s + 1;
    for (;;) {
        const char *nl = memchr(data + i, '\n', e - 1 - i);
        if (!nl)
            break;
        *o++ = '\n';
        i = (size_t)(nl - data) + 1;
        last = i;
    }
    for (size_t k = last; k + 1 < e; k++)
        if (((unsigned char)data[k] & 0xC0) != 0x80)
            *o++ = ' ';
    *o++ = data[e - 1];
    return o;
}

/* Walks the top-level object to model.vocab and model.merges, parses them into L and writes the
 * document with both blanked to copy (len bytes available), its length to *copy_len.
 * 1 = done; 0 = use the plain jansson path. */
static int fast_scan(const char *data, size_t len, char *copy, size_t *copy_len, vocablists *L)
{
    /* decoded strings are never longer than the file: one reservation, no regrowth */
    if (lmx__buf_reserve(&L->arena, len) != LMX_OK)
        return 0;
    fscan f = {data, data + len, &L->arena, 0, 0};
    int ok = 0, seen_model = 0, seen_vocab = 0, seen_merges = 0;
    size_t vs = 0, ve = 0, ms = 0, me = 0;
    fs_ws(&f);
    if (!fs_object_open(&f))
        goto out;
    for (;;) {
        const char *k;
        size_t kl;
        if (!fs_key(&f, &k, &kl))
            goto out;
        if (kl == 5 && memcmp(k, "model", 5) == 0) {
            if (seen_model++ || !fs_object_open(&f))
                goto out;
            for (;;) {
                const char *mk;
                size_t mkl;
                if (!fs_key(&f, &mk, &mkl))
                    goto out;
                if (mkl == 5 && memcmp(mk, "vocab", 5) == 0) {
                    vs = (size_t)(f.p - data);
                    if (seen_vocab++ || !fs_vocab(&f, L))
                        goto out;
                    ve = (size_t)(f.p - data);
                } else if (mkl == 6 && memcmp(mk, "merges", 6) == 0) {
                    ms = (size_t)(f.p - data);
                    if (seen_merges++ || !fs_merges(&f, L))
                        goto out;
                    me = (size_t)(f.p - data);
                } else if (!fs_skip(&f, 2)) {
                    goto out;
                }
                int more = fs_member_next(&f);
                if (more < 0)
                    goto out;
                if (!more)
                    break;
            }
        } else if (!fs_skip(&f, 1)) {
            goto out;
        }
        int more = fs_member_next(&f);
        if (more < 0)
            goto out;
        if (!more)
            break;
    }
    fs_ws(&f);
    if (f.p != f.end || !seen_vocab || !seen_merges || L->nv >= LMX_TOK_MAX_ID)
        goto out;
    {
        /* both ranges in file order */
        size_t r0s = vs < ms ? vs : ms, r0e = vs < ms ? ve : me;
        size_t r1s = vs < ms ? ms : vs, r1e = vs < ms ? me : ve;
        char *o = copy;
        memcpy(o, data, r0s);
        o = blank_range(o + r0s, data, r0s, r0e);
        memcpy(o, data + r0e, r1s - r0e);
        o = blank_range(o + (r1s - r0e), data, r1s, r1e);
        memcpy(o, data + r1e, len - r1e);
        *copy_len = (size_t)(o - copy) + (len - r1e);
    }
    ok = 1;
out:
    if (!ok)
        lists_free(L);
    return ok;
}

static int model_tables(loadctx *c, json_t *m, json_t *added, vocablists *L);

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

    vocablists own = {0}, *L = c->fast ? c->fast : &own;
    if (!c->fast) {
        json_t *vocab = json_object_get(m, "vocab");
        if (!json_is_object(vocab))
            return bad(c, LMX_EFORMAT, "model.vocab: expected an object");
        if (json_object_size(vocab) >= LMX_TOK_MAX_ID)
            return bad(c, LMX_EUNSUPPORTED, "model.vocab: more than %u tokens", LMX_TOK_MAX_ID);
        if ((rc = vocab_from_json(c, vocab, &own)) ||
            (rc = merges_from_json(c, json_object_get(m, "merges"), &own))) {
            lists_free(&own);
            return rc;
        }
    }
    rc = model_tables(c, m, added, L);
    lists_free(&own);
    return rc;
}

/* The vocab/merges part of load_model, on the lists. */
static int model_tables(loadctx *c, json_t *m, json_t *added, vocablists *L)
{
    lmx_tokjson *t = c->t;
    int rc;
    json_t *v;
    size_t nv = L->nv;
    const uint8_t *A = L->arena.data;
#define VKEY(i) ((const char *)A + L->v[3 * (i)])
#define VLEN(i) ((size_t)L->v[3 * (i) + 1])
#define VID(i) (L->v[3 * (i) + 2])

    /* id limit over vocab and added tokens */
    uint32_t limit = 0;
    char path[512], q[80];
    for (size_t i = 0; i < nv; i++)
        if (VID(i) + 1 > limit)
            limit = VID(i) + 1;
    for (size_t i = 0; json_is_array(added) && i < json_array_size(added); i++) {
        uint32_t id = 0;
        json_t *iv = json_object_get(json_array_get(added, i), "id");
        if (!json_is_integer(iv) || json_integer_value(iv) < 0 ||
            json_integer_value(iv) >= (json_int_t)LMX_TOK_MAX_ID) {
            snprintf(path, sizeof path, "added_tokens[%zu].id", i);
            if ((rc = get_id(c, iv, path, &id)))
                return rc;
        }
        id = (uint32_t)json_integer_value(iv);
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
    for (size_t i = 0; i < nv; i++) {
        const char *key = VKEY(i);
        size_t klen = VLEN(i);
        uint32_t id = VID(i);
        /* jansson keeps one entry per key; the fast scanner does not, so it gives up on a
         * duplicate and the jansson path decides */
        if (c->fast && lmx__tok_strmap_get(&c->orig, (const uint8_t *)key, klen) != LMX_TOKEN_NONE)
            return FAST_FALLBACK;
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
        for (size_t i = 0; i < nv; i++) {
            const char *key = VKEY(i);
            size_t klen = VLEN(i), on;
            if (klen > tmpcap) {
                free(tmp);
                tmpcap = klen * 2;
                tmp = malloc(tmpcap);
                if (!tmp)
                    return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
            }
            if (bytelevel_unmap(inv, key, klen, tmp, &on) &&
                lmx__tok_strmap_put(&t->vocab, tmp, on, VID(i)) != LMX_OK) {
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
    if (L->bad_merge_kind == 3)
        return bad(c, LMX_EFORMAT, "model.merges: expected an array");
    size_t nm = L->nm;
    if (nm >= UINT32_MAX / 4)
        return bad(c, LMX_EUNSUPPORTED, "model.merges: too many merges");
    if (mergemap_init(&t->merges, (uint32_t)nm) != LMX_OK)
        return bad(c, LMX_ENOMEM, "model.merges: out of memory");
    char *cat = NULL;
    size_t catcap = 0;
    int seg_ok = !t->byte_level && !t->cont_prefix_len && !t->eow_suffix_len;
    /* ASCII cuts (see lmx_tokjson.cut_ok): bad[x] bit y = some merge may join across x|y */
    int cut_ok = seg_ok;
    uint64_t bad_pair[128][2];
    uint32_t fb_sym[128]; /* byte-fallback symbol of an ASCII char not in the vocab, else NONE */
    int fb_merged[128] = {0};
    memset(bad_pair, 0, sizeof bad_pair);
    for (int x = 0; x < 128; x++)
        fb_sym[x] = t->ascii_ids[x] == LMX_TOKEN_NONE && t->byte_fallback ? t->byte_ids[x]
                                                                         : LMX_TOKEN_NONE;
    /* ids outside [fb_lo, fb_hi] are no fallback symbol: a quick filter for the merge loop */
    uint32_t fb_lo = UINT32_MAX, fb_hi = 0;
    for (int x = 0; x < 128; x++)
        if (fb_sym[x] != LMX_TOKEN_NONE) {
            fb_lo = fb_sym[x] < fb_lo ? fb_sym[x] : fb_lo;
            fb_hi = fb_sym[x] > fb_hi ? fb_sym[x] : fb_hi;
        }
    static const char meta[] = "\xE2\x96\x81"; /* U+2581, SentencePiece's space */
    if (seg_ok && lmx__tok_strmap_get(&t->vocab, (const uint8_t *)meta, 3) == LMX_TOKEN_NONE)
        seg_ok = 0;
    for (size_t i = 0; i <= nm; i++) {
        if (i == L->bad_merge && L->bad_merge_kind) {
            free(cat);
            if (L->bad_merge_kind == 1)
                return bad(c, LMX_EFORMAT, "model.merges[%zu]: expected \"A B\" with exactly one space", i);
            return bad(c, LMX_EFORMAT, "model.merges[%zu]: expected \"A B\" or [\"A\", \"B\"]", i);
        }
        if (i == nm)
            break;
        const char *a = (const char *)A + L->m[4 * i], *b = (const char *)A + L->m[4 * i + 2];
        size_t al = L->m[4 * i + 1], bl = L->m[4 * i + 3];
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
        if (cut_ok) {
            /* token strings concatenate (no affixes here), so a symbol ending at the cut ends
             * with the char before it: a merge can join across x|y only if its left string
             * ends with x and its right one starts with y */
            uint8_t x = al ? (uint8_t)a[al - 1] : 0xFF, y = bl ? (uint8_t)b[0] : 0xFF;
            if (x < 128 && y < 128)
                bad_pair[x][y >> 6] |= 1ull << (y & 63);
            if ((ia >= fb_lo && ia <= fb_hi) || (ib >= fb_lo && ib <= fb_hi))
                for (int ch = 0; ch < 128; ch++)
                    if (fb_sym[ch] != LMX_TOKEN_NONE && (fb_sym[ch] == ia || fb_sym[ch] == ib))
                        fb_merged[ch] = 1;
        }
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
    if (cut_ok) {
        /* unk can only arise when some byte has no fallback token */
        int unk_possible = t->unk_id != LMX_TOKEN_NONE;
        if (t->byte_fallback) {
            int all = 1;
            for (int b = 0; b < 256; b++)
                if (t->byte_ids[b] == LMX_TOKEN_NONE)
                    all = 0;
            if (all)
                unk_possible = 0;
        }
        memset(t->cut_ok, 0, sizeof t->cut_ok);
        int any = 0;
        for (int x = 0; x < 128; x++) {
            for (int y = 0; y < 128; y++) {
                int ok = !(bad_pair[x][y >> 6] >> (y & 63) & 1);
                /* only cuts next to punctuation, space or control chars: words stay whole,
                 * which keeps the pieces frequent (cache hits) */
                ok = ok && !(isalnum_ascii(x) && isalnum_ascii(y));
                for (int k = 0; k < 2 && ok; k++) {
                    int ch = k ? y : x;
                    if (t->ascii_ids[ch] != LMX_TOKEN_NONE)
                        continue; /* its own token: covered by bad_pair */
                    /* not in the vocab: a byte-fallback symbol is fine only if no merge uses it
                     * and no unk can be pending (HF emits fallback bytes before a pending unk);
                     * an unk or dropped char is never cut next to */
                    ok = fb_sym[ch] != LMX_TOKEN_NONE && !fb_merged[ch] && !unk_possible;
                }
                if (ok) {
                    t->cut_ok[x][y >> 6] |= 1ull << (y & 63);
                    any = 1;
                }
            }
        }
        t->cut_enabled = any;
    }
    memcpy(t->seg_char, meta, 3);
    t->seg_char_len = 3;
    return LMX_OK;
#undef VKEY
#undef VLEN
#undef VID
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
        char *content = NULL; /* initialized: GCC -O2 cannot see that bad() returns non-zero */
        size_t clen = 0;
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

static int load_doc(const char *data, size_t len, const char *cfgdata, size_t cfg_len,
                    vocablists *fast, lmx_tokjson **out, lmx_error *err);

int lmx__tokjson_load(const char *data, size_t len, const char *cfgdata, size_t cfg_len,
                      lmx_tokjson **out, lmx_error *err)
{
    *out = NULL;
    vocablists L = {0};
    char *copy = len ? malloc(len) : NULL;
    size_t copy_len = 0;
    if (copy && fast_scan(data, len, copy, &copy_len, &L)) {
        int rc = load_doc(copy, copy_len, cfgdata, cfg_len, &L, out, err);
        lists_free(&L);
        free(copy);
        if (rc != FAST_FALLBACK)
            return rc;
    } else {
        free(copy);
    }
    return load_doc(data, len, cfgdata, cfg_len, NULL, out, err);
}

static int load_doc(const char *data, size_t len, const char *cfgdata, size_t cfg_len,
                    vocablists *fast, lmx_tokjson **out, lmx_error *err)
{
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_ALLOW_NUL, &jerr);
    if (!root)
        return lmx__err(err, LMX_EFORMAT, "tokenizer.json: line %d column %d: %s", jerr.line,
                        jerr.column, jerr.text);
    loadctx c = {0};
    c.err = err;
    c.fast = fast;
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
