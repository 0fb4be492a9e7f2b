/* tokenizer.json loader: JSON (jansson) -> the plain tables of lmx_tokjson. The only file of the
 * tokenizer that touches JSON. Every error names the JSON path of the offending value. */
/* MADV_HUGEPAGE (Linux) is outside POSIX: ask libc for its extensions in this file. */
#define _DEFAULT_SOURCE 1
#include "lmx_tok_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- maps ---------------------------------------------------------------------------------- */

void *lmx__tok_table_alloc(size_t bytes, int zero)
{
    const size_t huge = (size_t)2 << 20;
    if (bytes < huge)
        return zero ? calloc(1, bytes ? bytes : 1) : malloc(bytes ? bytes : 1);
    if (bytes > SIZE_MAX - huge)
        return NULL;
    size_t rounded = (bytes + huge - 1) & ~(huge - 1);
    void *p = aligned_alloc(huge, rounded);
    if (!p)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, rounded, MADV_HUGEPAGE); /* a hint: without it, plain pages */
#endif
    if (zero)
        memset(p, 0, rounded);
    return p;
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t p = 16;
    while (p < n && p < (1u << 30))
        p <<= 1;
    return p;
}

/* Load at most 3/4 (checked on insert); a table sized for `expected` starts at most 2/3 full. */
int lmx__tok_strmap_init(lmx_tok_strmap *m, uint32_t expected)
{
    memset(m, 0, sizeof *m);
    uint32_t size = pow2_at_least((uint64_t)expected * 3 / 2 + 16);
    m->slots = lmx__tok_table_alloc((size_t)size * sizeof *m->slots, 1);
    if (!m->slots)
        return LMX_ENOMEM;
    m->mask = size - 1;
    return LMX_OK;
}

static int strmap_grow(lmx_tok_strmap *m)
{
    uint32_t size = (m->mask + 1) * 2;
    lmx_tok_strmap_slot *ns = lmx__tok_table_alloc((size_t)size * sizeof *ns, 1);
    if (!ns)
        return LMX_ENOMEM;
    for (uint32_t i = 0; i <= m->mask; i++) {
        const lmx_tok_strmap_slot *sl = &m->slots[i];
        if (!sl->hash32)
            continue;
        uint32_t j = (uint32_t)lmx__tok_hash(m->arena.data + sl->off, sl->len) & (size - 1);
        while (ns[j].hash32)
            j = (j + 1) & (size - 1);
        ns[j] = *sl;
    }
    free(m->slots);
    m->slots = ns;
    m->mask = size - 1;
    return LMX_OK;
}

/* The slot of key s[0..n) (hash h): its own when present (*found = 1), else the empty one where
 * it goes. */
static lmx_tok_strmap_slot *strmap_find(lmx_tok_strmap *m, const uint8_t *s, size_t n,
                                        uint64_t h, int *found)
{
    uint32_t h32 = (uint32_t)(h >> 32) | 1u;
    uint32_t i = (uint32_t)h & m->mask;
    for (;;) {
        lmx_tok_strmap_slot *sl = &m->slots[i];
        if (!sl->hash32) {
            *found = 0;
            return sl;
        }
        if (sl->hash32 == h32 && sl->len == n && lmx__tok_eq(m->arena.data + sl->off, s, n)) {
            *found = 1;
            return sl;
        }
        i = (i + 1) & m->mask;
    }
}

/* lmx__tok_strmap_put with h = lmx__tok_hash(s, n) already computed. */
static int strmap_put_h(lmx_tok_strmap *m, const uint8_t *s, size_t n, uint32_t id, uint64_t h)
{
    if (n > UINT32_MAX / 2)
        return LMX_ENOMEM;
    if ((uint64_t)(m->n + 1) * 4 > (uint64_t)(m->mask + 1) * 3 && strmap_grow(m) != LMX_OK)
        return LMX_ENOMEM;
    int found;
    lmx_tok_strmap_slot *sl = strmap_find(m, s, n, h, &found);
    if (found) {
        sl->id = id;
        return LMX_OK;
    }
    if (m->arena.len + n > UINT32_MAX)
        return LMX_ENOMEM;
    uint32_t off = (uint32_t)m->arena.len;
    if (n && lmx__buf_append(&m->arena, s, n) != LMX_OK)
        return LMX_ENOMEM;
    *sl = (lmx_tok_strmap_slot){(uint32_t)(h >> 32) | 1u, off, (uint32_t)n, id};
    m->n++;
    return LMX_OK;
}

int lmx__tok_strmap_put(lmx_tok_strmap *m, const uint8_t *s, size_t n, uint32_t id)
{
    return strmap_put_h(m, s, n, id, lmx__tok_hash(s, n));
}

void lmx__tok_strmap_free(lmx_tok_strmap *m)
{
    if (!m)
        return;
    free(m->slots);
    lmx__buf_free(&m->arena);
    memset(m, 0, sizeof *m);
}

/* Inserts the key already at m->arena.data + off (no copy), h its hash. The caller sized the
 * map for every key (no growth). Returns 1 when the key was present (its id is overwritten),
 * else 0. */
static int strmap_put_at(lmx_tok_strmap *m, uint32_t off, size_t n, uint32_t id, uint64_t h)
{
    const uint8_t *s = m->arena.data + off;
    int found;
    lmx_tok_strmap_slot *sl = strmap_find(m, s, n, h, &found);
    if (found) {
        sl->id = id;
        return 1;
    }
    *sl = (lmx_tok_strmap_slot){(uint32_t)(h >> 32) | 1u, off, (uint32_t)n, id};
    m->n++;
    return 0;
}

static int mergemap_init(lmx_tok_mergemap *m, uint32_t expected)
{
    /* load <= 2/3: a smaller table (8 MB for LLaMA-3) misses the CPU caches less than a sparser one */
    uint32_t size = pow2_at_least((uint64_t)expected * 3 / 2 + 16);
    m->slots = lmx__tok_table_alloc((size_t)size * sizeof *m->slots, 0);
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
    int arena_borrowed; /* fast scanner: the arena is the file text itself */
} vocablists;

typedef struct loadctx {
    lmx_tokjson *t;
    lmx_error *err;
    lmx_tok_strmap orig; /* vocab keys as written in tokenizer.json */
    int orig_borrowed;   /* orig's arena is the lists' arena (byte level: no copies) */
    vocablists *fast;    /* set when the fast scanner parsed vocab and merges */
    vocablists own;      /* the lists from jansson's tree otherwise (kept while orig is used) */
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

/* ---- decoder (only used by decode, but an unsupported one fails the load like any component) */

static int load_decoder(loadctx *c, json_t *o, const char *path)
{
    lmx_tokjson *t = c->t;
    if (!o || json_is_null(o))
        return LMX_OK;
    const char *type = json_is_object(o) ? type_of(o) : NULL;
    char sub[300];
    if (type && strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(o, "decoders");
        if (!json_is_array(arr))
            return bad(c, LMX_EFORMAT, "%s.decoders: expected an array", path);
        for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", path, i);
            int rc = load_decoder(c, json_array_get(arr, i), sub);
            if (rc)
                return rc;
        }
        return LMX_OK;
    }
    if (t->n_dec == LMX_TOK_MAX_STEPS)
        return bad(c, LMX_EUNSUPPORTED, "%s: more than %d decoder steps", path, LMX_TOK_MAX_STEPS);
    lmx_tok_dec *d = &t->dec[t->n_dec];
    memset(d, 0, sizeof *d);
    int is_re = 0, rc = LMX_OK;
    if (!type) {
        return bad(c, LMX_EFORMAT, "%s.type: missing", path);
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
            return bad(c, LMX_EUNSUPPORTED, "%s: decoder Replace is only supported with a "
                       "non-empty String pattern", path);
        return LMX_OK;
    } else if (strcmp(type, "Strip") == 0) {
        d->type = LMX_DEC_STRIP;
        json_t *ct = json_object_get(o, "content");
        json_t *st = json_object_get(o, "start"), *sp = json_object_get(o, "stop");
        const char *cs = json_is_string(ct) ? json_string_value(ct) : NULL;
        if (!cs || lmx__utf8_len((uint8_t)cs[0]) != strlen(cs) || !json_is_integer(st) ||
            !json_is_integer(sp) || json_integer_value(st) < 0 || json_integer_value(sp) < 0 ||
            json_integer_value(st) > 1000 || json_integer_value(sp) > 1000) {
            return bad(c, LMX_EUNSUPPORTED, "%s: decoder Strip is only supported with one content "
                       "char and start/stop in [0, 1000]", path);
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
            return bad(c, LMX_EFORMAT, "%s.replacement: expected one character", path);
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
        return bad(c, LMX_EUNSUPPORTED, "%s.type: decoder \"%s\" is not supported", path, type);
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
    /* s is valid UTF-8: jansson and the fast scanner both check it */
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
    if (!L->arena_borrowed)
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
 * them replaced by {} / []. It accepts only what jansson accepts and reads the same way; anything
 * else (a syntax error, escapes in keys on the way to the model, \u0000 in a vocab key, unpaired
 * surrogate escapes, ids that are not plain integers below LMX_TOK_MAX_ID, merges that are not
 * "A B" or ["A","B"], duplicate keys, invalid UTF-8, or jansson failing on the shortened text)
 * makes it give up, and the plain jansson path then decides, with its own error messages (and
 * line/column numbers of the real file). */

typedef struct fscan {
    const char *p, *end, *base; /* base: start of the file; string offsets are relative to it */
    uint8_t *dst;        /* the file again, writable: strings are decoded in place (never longer) */
    size_t start, slen;  /* the last decoded string: dst + start, slen bytes */
    lmx_buf *undo;       /* raw text of the strings decoded in place: {u32 off, u32 len, bytes} */
} fscan;

/* Byte classes: JSON whitespace; bytes that end the plain ASCII run of a string (controls,
 * '"', '\\', and non-ASCII, which is checked as UTF-8). 2 = FS_STOP, 3 = FS_WS | FS_STOP. */
enum { FS_WS = 1, FS_STOP = 2 };
#define FS_S8 FS_STOP, FS_STOP, FS_STOP, FS_STOP, FS_STOP, FS_STOP, FS_STOP, FS_STOP
#define FS_S64 FS_S8, FS_S8, FS_S8, FS_S8, FS_S8, FS_S8, FS_S8, FS_S8
static const uint8_t fs_cls[256] = {
    [0x00] = 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 2, 2, 3, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    [' '] = FS_WS, ['"'] = FS_STOP, ['\\'] = FS_STOP,
    [0x80] = FS_S64, FS_S64,
};

/* Length of the valid UTF-8 char at s (n > 0 bytes available, s[0] >= 0x80), 0 if invalid. */
static inline size_t fs_utf8_char(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    size_t len = c >= 0xF0 ? 4 : 3;
    if (c < 0xE0 || c > 0xF4 || n < len)
        return 0;
    return lmx__utf8_valid_prefix(s, len) == len ? len : 0;
}

static inline void fs_ws(fscan *f)
{
    const char *p = f->p, *end = f->end;
    while (p < end && (fs_cls[(unsigned char)*p] & FS_WS))
        p++;
    f->p = p;
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

/* String at f->p (on the opening quote), decoded in place in f->dst (when decode; see
 * f->start/slen) or only checked. Its raw text must be valid UTF-8, as jansson requires (escapes
 * only decode to whole valid chars, so the decoded string is valid too).
 * raw_key: the string must have no escapes (keys compared as written). nul_ok: \u0000 allowed. */
static int fs_string(fscan *f, int decode, int raw_key, int nul_ok)
{
    if (f->p >= f->end || *f->p != '"')
        return 0;
    const char *p = f->p + 1, *end = f->end;
    f->start = (size_t)(p - f->base);
    uint8_t *w = NULL; /* write position once an escape shifted the text */
    for (;;) {
        const char *q = p;
        for (;;) {
            while (end - q >= 4) {
                if (fs_cls[(unsigned char)q[0]] & FS_STOP) break;
                if (fs_cls[(unsigned char)q[1]] & FS_STOP) { q += 1; break; }
                if (fs_cls[(unsigned char)q[2]] & FS_STOP) { q += 2; break; }
                if (fs_cls[(unsigned char)q[3]] & FS_STOP) { q += 3; break; }
                q += 4;
            }
            while (q < end && !(fs_cls[(unsigned char)*q] & FS_STOP))
                q++;
            if (q >= end || (unsigned char)*q < 0x80)
                break;
            size_t k = fs_utf8_char((const uint8_t *)q, (size_t)(end - q));
            if (!k)
                return 0;
            q += k;
        }
        if (w && q > p) {
            memmove(w, f->dst + (p - f->base), (size_t)(q - p));
            w += q - p;
        }
        if (q >= end || (unsigned char)*q < 0x20)
            return 0;
        if (*q == '"') {
            f->p = q + 1;
            f->slen = w ? (size_t)(w - (f->dst + f->start)) : (size_t)(q - f->base) - f->start;
            return 1;
        }
        if (raw_key || end - q < 2)
            return 0;
        if (decode && !w) {
            /* first escape: keep the raw string, the file is restored after the load */
            const char *e = q;
            while (e < end && *e != '"')
                e += *e == '\\' ? 2 : 1;
            if (e > end)
                e = end;
            size_t raw_len = (size_t)(e - (f->base + f->start));
            /* one reservation for header and bytes: a log never ends in a header without its bytes */
            if (f->start > UINT32_MAX || raw_len > UINT32_MAX || lmx__buf_reserve(f->undo, 8 + raw_len))
                return 0;
            uint32_t hdr[2] = {(uint32_t)f->start, (uint32_t)raw_len};
            lmx__buf_append(f->undo, hdr, sizeof hdr);
            lmx__buf_append(f->undo, f->base + f->start, raw_len);
            w = f->dst + (q - f->base);
        }
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
        if (decode) {
            memcpy(w, o, on);
            w += on;
        }
        p = q;
    }
}

/* At `open` ('{' or '['): consumes it and the whitespace after; 1 when elements follow, 0 for an
 * empty object/array (closer consumed too), -1 when not at `open`. */
static int fs_open(fscan *f, char open)
{
    if (f->p >= f->end || *f->p != open)
        return -1;
    f->p++;
    fs_ws(f);
    if (f->p < f->end && *f->p == (open == '{' ? '}' : ']')) {
        f->p++;
        return 0;
    }
    return 1;
}

/* The ':' after a key, with the whitespace around it. */
static int fs_colon(fscan *f)
{
    fs_ws(f);
    if (f->p >= f->end || *f->p != ':')
        return 0;
    f->p++;
    fs_ws(f);
    return 1;
}

/* A member's key and the ':' after it; *k and *kl: the raw key bytes (keys with escapes are refused by
 * fs_string's raw_key mode). Leaves f at the value. */
static int fs_key(fscan *f, const char **k, size_t *kl)
{
    *k = f->p + 1;
    if (!fs_string(f, 0, 1, 0))
        return 0;
    *kl = (size_t)(f->p - *k - 1);
    return fs_colon(f);
}

/* After a member or element: 1 when another follows (',' consumed), 0 at the end of the object
 * or array (`close`, '}' or ']', consumed), -1 on anything else. */
static int fs_next(fscan *f, char close)
{
    fs_ws(f);
    if (f->p >= f->end)
        return -1;
    if (*f->p == close) {
        f->p++;
        return 0;
    }
    if (*f->p != ',')
        return -1;
    f->p++;
    fs_ws(f);
    return 1;
}

/* Skips any JSON value (strict grammar; numbers only validated for syntax, which is all jansson
 * needs here since the value is re-parsed by jansson anyway). */
static int fs_skip(fscan *f, int depth)
{
    if (depth > 64 || f->p >= f->end)
        return 0;
    char ch = *f->p;
    if (ch == '"')
        return fs_string(f, 0, 0, 1);
    if (ch == '{' || ch == '[') {
        char close = ch == '{' ? '}' : ']';
        if (fs_open(f, ch) == 0)
            return 1;
        for (;;) {
            if (ch == '{' && !(fs_string(f, 0, 0, 0) && fs_colon(f)))
                return 0;
            if (!fs_skip(f, depth + 1))
                return 0;
            int more = fs_next(f, close);
            if (more <= 0)
                return more == 0;
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
    /* the rest of a number; jansson re-checks it when it parses the shortened document */
    while (q < f->end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' ||
                          *q == '+' || *q == '-'))
        q++;
    f->p = q;
    return 1;
}

static int fs_vocab(fscan *f, vocablists *L)
{
    int any = fs_open(f, '{');
    if (any <= 0)
        return any == 0;
    for (;;) {
        if (!fs_string(f, 1, 0, 0) || !fs_colon(f))
            return 0;
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
        int more = fs_next(f, '}');
        if (more <= 0)
            return more == 0;
    }
}

static int fs_merges(fscan *f, vocablists *L)
{
    int any = fs_open(f, '[');
    if (any <= 0)
        return any == 0;
    for (;;) {
        uint32_t ao, bo;
        size_t al, bl;
        if (f->p < f->end && *f->p == '"') {
            if (!fs_string(f, 1, 0, 1) || f->start + f->slen > UINT32_MAX)
                return 0;
            /* "A B" stays in the arena as is: A and B are its two halves */
            const uint8_t *s = f->dst + f->start;
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
        int more = fs_next(f, ']');
        if (more <= 0)
            return more == 0;
    }
}

/* Walks the top-level object to model.vocab and model.merges, parses them into L and writes the
 * document with both replaced by {} / [] to copy (len bytes available), its length to
 * *copy_len. 1 = done; 0 = use the plain jansson path. */
static int fast_scan(char *data, size_t len, char *copy, size_t *copy_len, vocablists *L,
                     lmx_buf *undo)
{
    /* the arena is the file: strings keep their offsets, escapes decode in place */
    L->arena = (lmx_buf){(uint8_t *)data, len, len, 0};
    L->arena_borrowed = 1;
    fscan f = {data, data + len, data, (uint8_t *)data, 0, 0, undo};
    int ok = 0, seen_model = 0, seen_vocab = 0, seen_merges = 0;
    size_t vs = 0, ve = 0, ms = 0, me = 0;
    fs_ws(&f);
    if (fs_open(&f, '{') != 1)
        goto out;
    for (;;) {
        const char *k;
        size_t kl;
        if (!fs_key(&f, &k, &kl))
            goto out;
        if (kl == 5 && memcmp(k, "model", 5) == 0) {
            if (seen_model++ || fs_open(&f, '{') != 1)
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
                int more = fs_next(&f, '}');
                if (more < 0)
                    goto out;
                if (!more)
                    break;
            }
        } else if (!fs_skip(&f, 1)) {
            goto out;
        }
        int more = fs_next(&f, '}');
        if (more < 0)
            goto out;
        if (!more)
            break;
    }
    fs_ws(&f);
    if (f.p != f.end || !seen_vocab || !seen_merges || L->nv >= LMX_TOK_MAX_ID)
        goto out;
    {
        /* both ranges in file order, each replaced by its empty container */
        size_t r0s = vs < ms ? vs : ms, r0e = vs < ms ? ve : me;
        size_t r1s = vs < ms ? ms : vs, r1e = vs < ms ? me : ve;
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

    vocablists *L = c->fast ? c->fast : &c->own;
    if (!c->fast) {
        json_t *vocab = json_object_get(m, "vocab");
        if (!json_is_object(vocab))
            return bad(c, LMX_EFORMAT, "model.vocab: expected an object");
        if (json_object_size(vocab) >= LMX_TOK_MAX_ID)
            return bad(c, LMX_EUNSUPPORTED, "model.vocab: more than %u tokens", LMX_TOK_MAX_ID);
        if ((rc = vocab_from_json(c, vocab, L)) ||
            (rc = merges_from_json(c, json_object_get(m, "merges"), L)))
            return rc;
    }
    return model_tables(c, m, added, L);
}

/* Vocab entry i's hashes and (byte level) raw bytes, computed ahead of its inserts. */
#define VOCAB_AHEAD 16
#define VOCAB_KEY 128
typedef struct vocab_ahead {
    uint64_t ho, hv; /* hashes of the key as written and of its raw bytes */
    size_t on;
    int ok;          /* the key maps to raw bytes (r->key, on) */
    uint8_t key[VOCAB_KEY];
} vocab_ahead;

static void vocab_look_ahead(const lmx_tokjson *t, const lmx_tok_strmap *orig, const int32_t *inv,
                             const vocablists *L, size_t i, vocab_ahead *r)
{
    const char *key = (const char *)L->arena.data + L->v[3 * i];
    size_t klen = L->v[3 * i + 1];
    r->ho = lmx__tok_hash((const uint8_t *)key, klen);
    lmx__tok_strmap_prefetch(orig, r->ho);
    r->ok = 0;
    r->on = 0;
    r->hv = 0;
    if (klen <= VOCAB_KEY && bytelevel_unmap(inv, key, klen, r->key, &r->on)) {
        r->ok = 1;
        r->hv = lmx__tok_hash(r->key, r->on);
        lmx__tok_strmap_prefetch(&t->vocab, r->hv);
    }
}

/* Merge i's hashes and, when short, the concatenation of its two tokens (the continuing-subword
 * prefix of the right one dropped, as HF does), computed ahead of its lookups. */
#define MERGE_AHEAD 16
#define MERGE_CAT 96
typedef struct merge_ahead {
    uint64_t ha, hb, hc;
    size_t cl;
    uint8_t cat[MERGE_CAT];
} merge_ahead;

static void merge_look_ahead(const lmx_tokjson *t, const lmx_tok_strmap *ov, const vocablists *L,
                             size_t i, merge_ahead *r)
{
    const uint8_t *A = L->arena.data;
    const uint8_t *a = A + L->m[4 * i], *b = A + L->m[4 * i + 2];
    size_t al = L->m[4 * i + 1], bl = L->m[4 * i + 3];
    size_t pl = t->cont_prefix_len;
    if (pl && (bl < pl || memcmp(b, t->cont_prefix, pl) != 0))
        pl = 0; /* HF strips the prefix length unconditionally; only strip a real prefix */
    r->ha = lmx__tok_hash(a, al);
    r->hb = lmx__tok_hash(b, bl);
    lmx__tok_strmap_prefetch(ov, r->ha);
    lmx__tok_strmap_prefetch(ov, r->hb);
    r->cl = al + bl - pl;
    if (r->cl <= MERGE_CAT) {
        memcpy(r->cat, a, al);
        memcpy(r->cat + al, b + pl, bl - pl);
        r->hc = lmx__tok_hash(r->cat, r->cl);
        lmx__tok_strmap_prefetch(ov, r->hc);
    }
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

    /* display strings: one reservation, then plain copies */
    size_t total = 0;
    for (size_t i = 0; i < nv; i++)
        total += VLEN(i);
    if (total > UINT32_MAX || lmx__buf_reserve(&t->id_arena, total) != LMX_OK)
        return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
    if (lmx__tok_strmap_init(&c->orig, (uint32_t)nv) != LMX_OK)
        return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
    if (t->byte_level) {
        /* orig (keys as written) and the encoding-space vocab (raw bytes) in one pass, keys
         * hashed and slots prefetched VOCAB_AHEAD entries ahead. orig only lives during the
         * load: its keys stay where the lists have them. */
        c->orig.arena = L->arena;
        c->orig_borrowed = 1;
        int32_t inv[0x144];
        for (int i = 0; i < 0x144; i++)
            inv[i] = -1;
        for (int b = 0; b < 256; b++)
            inv[lmx__bytelevel_char((uint8_t)b)] = b;
        if (lmx__tok_strmap_init(&t->vocab, (uint32_t)nv) != LMX_OK ||
            lmx__buf_reserve(&t->vocab.arena, total) != LMX_OK)
            return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
        vocab_ahead ring[VOCAB_AHEAD];
        for (size_t j = 0; j < VOCAB_AHEAD && j < nv; j++)
            vocab_look_ahead(t, &c->orig, inv, L, j, &ring[j]);
        uint8_t *big = NULL;
        for (size_t i = 0; i < nv; i++) {
            vocab_ahead *r = &ring[i % VOCAB_AHEAD];
            const char *key = VKEY(i);
            size_t klen = VLEN(i);
            uint32_t id = VID(i);
            /* jansson keeps one entry per key; the fast scanner does not, so it gives up on a
             * duplicate and the jansson path decides */
            if (strmap_put_at(&c->orig, L->v[3 * i], klen, id, r->ho) && c->fast) {
                free(big);
                return FAST_FALLBACK;
            }
            t->id_off[id] = (uint32_t)t->id_arena.len;
            t->id_len[id] = (uint32_t)klen;
            if (klen) /* an all-empty vocabulary leaves the arena NULL */
                memcpy(t->id_arena.data + t->id_arena.len, key, klen);
            t->id_arena.len += klen;
            const uint8_t *raw = r->key;
            size_t on = r->on;
            uint64_t hv = r->hv;
            int ok = r->ok;
            if (klen > VOCAB_KEY) { /* too long for the ring: unmapped here */
                free(big);
                if (!(big = malloc(klen)))
                    return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
                ok = bytelevel_unmap(inv, key, klen, big, &on);
                raw = big;
                hv = ok ? lmx__tok_hash(big, on) : 0;
            }
            if (ok && strmap_put_h(&t->vocab, raw, on, id, hv) != LMX_OK) {
                free(big);
                return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
            }
            if (i + VOCAB_AHEAD < nv)
                vocab_look_ahead(t, &c->orig, inv, L, i + VOCAB_AHEAD, r);
        }
        free(big);
        for (int b = 0; b < 256; b++) {
            uint8_t byte = (uint8_t)b;
            t->byte_ids[b] = lmx__tok_strmap_get(&t->vocab, &byte, 1);
        }
    } else {
        for (size_t i = 0; i < nv; i++) {
            const char *key = VKEY(i);
            size_t klen = VLEN(i);
            uint32_t id = VID(i);
            if (c->fast && lmx__tok_strmap_get(&c->orig, (const uint8_t *)key, klen) != LMX_TOKEN_NONE)
                return FAST_FALLBACK; /* a duplicate key: see above */
            if (lmx__tok_strmap_put(&c->orig, (const uint8_t *)key, klen, id) != LMX_OK)
                return bad(c, LMX_ENOMEM, "model.vocab: out of memory");
            t->id_off[id] = (uint32_t)t->id_arena.len;
            t->id_len[id] = (uint32_t)klen;
            if (klen)
                memcpy(t->id_arena.data + t->id_arena.len, key, klen);
            t->id_arena.len += klen;
        }
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
    /* The lookups miss the CPU caches (megabytes of tables, random order): the hashes of merge
     * i + MERGE_AHEAD are computed and their slots prefetched while merge i is looked up. */
    merge_ahead ring[MERGE_AHEAD];
    for (size_t j = 0; j < MERGE_AHEAD && j < nm; j++)
        merge_look_ahead(t, ov, L, j, &ring[j]);
    for (size_t i = 0; i <= nm; i++) {
        if (i == L->bad_merge && L->bad_merge_kind) {
            free(cat);
            if (L->bad_merge_kind == 1)
                return bad(c, LMX_EFORMAT, "model.merges[%zu]: expected \"A B\" with exactly one space", i);
            return bad(c, LMX_EFORMAT, "model.merges[%zu]: expected \"A B\" or [\"A\", \"B\"]", i);
        }
        if (i == nm)
            break;
        merge_ahead *r = &ring[i % MERGE_AHEAD];
        if (i + MERGE_AHEAD / 2 < nm) {
            /* half way: the slots have arrived, fetch the key bytes they point to */
            const merge_ahead *r2 = &ring[(i + MERGE_AHEAD / 2) % MERGE_AHEAD];
            lmx__tok_strmap_prefetch_key(ov, r2->ha);
            lmx__tok_strmap_prefetch_key(ov, r2->hb);
            if (r2->cl <= MERGE_CAT)
                lmx__tok_strmap_prefetch_key(ov, r2->hc);
        }
        const char *a = (const char *)A + L->m[4 * i], *b = (const char *)A + L->m[4 * i + 2];
        size_t al = L->m[4 * i + 1], bl = L->m[4 * i + 3];
        uint32_t ia = lmx__tok_strmap_get_h(ov, (const uint8_t *)a, al, r->ha);
        uint32_t ib = lmx__tok_strmap_get_h(ov, (const uint8_t *)b, bl, r->hb);
        const char *missing = ia == LMX_TOKEN_NONE ? a : ib == LMX_TOKEN_NONE ? b : NULL;
        size_t mlen = ia == LMX_TOKEN_NONE ? al : bl;
        uint32_t inew = LMX_TOKEN_NONE;
        if (!missing) {
            size_t cl = r->cl;
            const char *cs = (const char *)r->cat;
            uint64_t hc = r->hc;
            if (cl > MERGE_CAT) {
                size_t pl = al + bl - cl;
                if (cl > catcap) {
                    free(cat);
                    catcap = cl * 2 + 16;
                    cat = malloc(catcap);
                    if (!cat)
                        return bad(c, LMX_ENOMEM, "model.merges: out of memory");
                }
                memcpy(cat, a, al);
                memcpy(cat + al, b + pl, bl - pl);
                cs = cat;
                hc = lmx__tok_hash((const uint8_t *)cat, cl);
            }
            inew = lmx__tok_strmap_get_h(ov, (const uint8_t *)cs, cl, hc);
            if (inew == LMX_TOKEN_NONE) {
                missing = cs;
                mlen = cl;
            }
        }
        if (missing) {
            quote(q, sizeof q, missing, mlen);
            free(cat);
            return bad(c, LMX_EFORMAT, "model.merges[%zu]: unknown token \"%s\"", i, q);
        }
        if (i + MERGE_AHEAD < nm)
            merge_look_ahead(t, ov, L, i + MERGE_AHEAD, r);
        /* the strings are not needed any more: the entry keeps the ids for the table pass */
        L->m[4 * i] = ia;
        L->m[4 * i + 1] = ib;
        L->m[4 * i + 2] = inew;
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
    /* in rank order (a later duplicate pair wins, as in HF), prefetching ahead */
    for (size_t i = 0; i < nm; i++) {
        if (i + MERGE_AHEAD < nm)
            lmx__tok_merge_prefetch(&t->merges, L->m[4 * (i + MERGE_AHEAD)],
                                    L->m[4 * (i + MERGE_AHEAD) + 1]);
        mergemap_put(&t->merges, L->m[4 * i], L->m[4 * i + 1], (uint32_t)i, L->m[4 * i + 2]);
    }
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

/* Puts back the raw text of the strings the fast scanner decoded in place. */
static void undo_apply(char *data, const lmx_buf *u)
{
    for (size_t i = 0; i < u->len;) {
        uint32_t hdr[2];
        memcpy(hdr, u->data + i, sizeof hdr);
        memcpy(data + hdr[0], u->data + i + sizeof hdr, hdr[1]);
        i += sizeof hdr + hdr[1];
    }
}

int lmx__tokjson_load(char *data, size_t len, const char *cfgdata, size_t cfg_len,
                      lmx_tokjson **out, lmx_error *err)
{
    *out = NULL;
    vocablists L = {0};
    lmx_buf undo = {0};
    char *copy = len ? malloc(len) : NULL; /* only the part jansson parses is written */
    size_t copy_len = 0;
    int rc = FAST_FALLBACK;
    if (copy && fast_scan(data, len, copy, &copy_len, &L, &undo))
        rc = load_doc(copy, copy_len, cfgdata, cfg_len, &L, out, err);
    lists_free(&L);
    free(copy);
    undo_apply(data, &undo);
    lmx__buf_free(&undo);
    if (rc != FAST_FALLBACK)
        return rc;
    return load_doc(data, len, cfgdata, cfg_len, NULL, out, err);
}

static int load_doc(const char *data, size_t len, const char *cfgdata, size_t cfg_len,
                    vocablists *fast, lmx_tokjson **out, lmx_error *err)
{
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_ALLOW_NUL, &jerr);
    if (!root && fast)
        return FAST_FALLBACK; /* the error is reported with the real file's line and column */
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
    if ((rc = load_decoder(&c, json_object_get(root, "decoder"), "decoder")))
        goto done;

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
    if (c.orig_borrowed)
        memset(&c.orig.arena, 0, sizeof c.orig.arena);
    lmx__tok_strmap_free(&c.orig);
    lists_free(&c.own);
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
