/* tokenizer.json loader, the BPE model: options, model.vocab and model.merges (as lists, from
 * the fast scanner or from jansson's tree) into the vocab and merge maps, and the word-cutting
 * analysis the encoder's long-word path relies on (lmx_tokjson.seg_enabled / cut_enabled). */
#include "lmx_tok_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- vocab and merges lists from jansson's tree (the list type: lmx_tok_lists.c) ---------- */

/* Appends string s[0..n) to the arena; its offset in *off. */
static int arena_str(lmx_tok_lists *L, const void *s, size_t n, uint32_t *off)
{
    if (L->arena.len + n > UINT32_MAX)
        return LMX_ENOMEM;
    *off = (uint32_t)L->arena.len;
    return n ? lmx__buf_append(&L->arena, s, n) : LMX_OK;
}


/* jansson path: vocab object -> lists (ids checked, errors name the key). */
static int vocab_from_json(lmx_tok_loadctx *c, json_t *vocab, lmx_tok_lists *L)
{
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        uint32_t id = 0, off;
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= (json_int_t)LMX_TOK_MAX_ID) {
            char path[512], q[80];
            lmx__tokload_quote(q, sizeof q, key, strlen(key));
            snprintf(path, sizeof path, "model.vocab[\"%s\"]", q);
            return lmx__tokload_id(c, val, path, &id);
        }
        id = (uint32_t)json_integer_value(val);
        size_t klen = strlen(key); /* jansson object keys cannot hold NUL */
        if (arena_str(L, key, klen, &off) || lmx__toklists_vocab_add(L, off, klen, id))
            return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
    }
    return LMX_OK;
}

/* jansson path: merges array -> lists. A malformed entry stops the list and is reported by the
 * merge loop when it gets there (after the errors of earlier entries, as before). */
static int merges_from_json(lmx_tok_loadctx *c, json_t *merges, lmx_tok_lists *L)
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
        if (arena_str(L, a, al, &ao) || arena_str(L, b, bl, &bo) || lmx__toklists_merge_add(L, ao, al, bo, bl))
            return lmx__tokload_bad(c, LMX_ENOMEM, "model.merges: out of memory");
    }
    return LMX_OK;
}

static int model_tables(lmx_tok_loadctx *c, json_t *m, json_t *added, lmx_tok_lists *L);

int lmx__tokload_model(lmx_tok_loadctx *c, json_t *m, json_t *added)
{
    lmx_tokjson *t = c->t;
    int rc;
    if (!json_is_object(m))
        return lmx__tokload_bad(c, LMX_EFORMAT, "model: expected an object");
    const char *type = lmx__tokload_type(m);
    if (type && strcmp(type, "BPE") != 0)
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "model.type: model \"%s\" is not supported (only BPE and Unigram)", type);
    if (!type && !json_object_get(m, "merges"))
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "model.type: missing and the model has no merges (only BPE "
                   "and Unigram are supported)");
    json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout) &&
        !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "model.dropout: BPE dropout is not supported (ids would be random)");
    if ((rc = lmx__tokload_getbool(c, m, "fuse_unk", "model", 0, &t->fuse_unk)) ||
        (rc = lmx__tokload_getbool(c, m, "byte_fallback", "model", 0, &t->byte_fallback)) ||
        (rc = lmx__tokload_getbool(c, m, "ignore_merges", "model", 0, &t->ignore_merges)))
        return rc;
    json_t *v;
    if ((v = json_object_get(m, "continuing_subword_prefix")) && !json_is_null(v) &&
        (rc = lmx__tokload_dupstr(c, v, "model.continuing_subword_prefix", &t->cont_prefix, &t->cont_prefix_len)))
        return rc;
    if ((v = json_object_get(m, "end_of_word_suffix")) && !json_is_null(v) &&
        (rc = lmx__tokload_dupstr(c, v, "model.end_of_word_suffix", &t->eow_suffix, &t->eow_suffix_len)))
        return rc;
    if (t->cont_prefix_len > LMX_TOK_MAX_AFFIX || t->eow_suffix_len > LMX_TOK_MAX_AFFIX)
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "model: continuing_subword_prefix/end_of_word_suffix longer "
                   "than %d bytes", LMX_TOK_MAX_AFFIX);
    if (t->byte_level && (t->cont_prefix_len || t->eow_suffix_len || t->byte_fallback))
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "model: continuing_subword_prefix, end_of_word_suffix or "
                   "byte_fallback together with a ByteLevel pre-tokenizer is not supported");

    lmx_tok_lists *L = c->fast ? c->fast : &c->own;
    if (!c->fast) {
        json_t *vocab = json_object_get(m, "vocab");
        if (!json_is_object(vocab))
            return lmx__tokload_bad(c, LMX_EFORMAT, "model.vocab: expected an object");
        if (json_object_size(vocab) >= LMX_TOK_MAX_ID)
            return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "model.vocab: more than %u tokens", LMX_TOK_MAX_ID);
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
                             const lmx_tok_lists *L, size_t i, vocab_ahead *r)
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
    int short_b; /* the right token is shorter than the prefix or the cut is inside a char */
    uint8_t cat[MERGE_CAT];
} merge_ahead;

static void merge_look_ahead(const lmx_tokjson *t, const lmx_tok_strmap *ov, const lmx_tok_lists *L,
                             size_t i, merge_ahead *r)
{
    const uint8_t *A = L->arena.data;
    const uint8_t *a = A + L->m[4 * i], *b = A + L->m[4 * i + 2];
    size_t al = L->m[4 * i + 1], bl = L->m[4 * i + 3];
    /* HF strips the prefix's length from the right token, prefix or not (b[prefix_len..] in
     * BpeBuilder::build; it panics when that is out of bounds or inside a char) */
    size_t pl = t->cont_prefix_len;
    r->short_b = pl && (bl < pl || (bl > pl && (b[pl] & 0xC0) == 0x80));
    if (r->short_b)
        pl = 0;
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

/* Vocab entry i of the lists L: key, length, id. */
#define VKEY(i) ((const char *)L->arena.data + L->v[3 * (i)])
#define VLEN(i) ((size_t)L->v[3 * (i) + 1])
#define VID(i) (L->v[3 * (i) + 2])

/* The id limit (over vocab and added tokens) and the id -> display string arrays. */
int lmx__tokload_id_tables(lmx_tok_loadctx *c, json_t *added, const lmx_tok_lists *L)
{
    lmx_tokjson *t = c->t;
    size_t nv = L->nv;
    int rc;
    /* id limit over vocab and added tokens */
    uint32_t limit = 0;
    char path[512];
    for (size_t i = 0; i < nv; i++)
        if (VID(i) + 1 > limit)
            limit = VID(i) + 1;
    for (size_t i = 0; json_is_array(added) && i < json_array_size(added); i++) {
        uint32_t id = 0;
        json_t *iv = json_object_get(json_array_get(added, i), "id");
        if (!json_is_integer(iv) || json_integer_value(iv) < 0 ||
            json_integer_value(iv) >= (json_int_t)LMX_TOK_MAX_ID) {
            snprintf(path, sizeof path, "added_tokens[%zu].id", i);
            if ((rc = lmx__tokload_id(c, iv, path, &id)))
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
        return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
    for (uint32_t i = 0; i < limit; i++)
        t->id_off[i] = UINT32_MAX;

    return LMX_OK;
}

/* The vocab map(s) and the display strings: with ByteLevel, c->orig holds the keys as written
 * and t->vocab their raw bytes; otherwise t->vocab holds the keys as written. */
static int vocab_maps(lmx_tok_loadctx *c, const lmx_tok_lists *L)
{
    lmx_tokjson *t = c->t;
    size_t nv = L->nv;
    /* display strings: one reservation, then plain copies */
    size_t total = 0;
    for (size_t i = 0; i < nv; i++)
        total += VLEN(i);
    if (total > UINT32_MAX || lmx__buf_reserve(&t->id_arena, total) != LMX_OK)
        return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
    if (lmx__tok_strmap_init(&c->orig, (uint32_t)nv) != LMX_OK)
        return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
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
            return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
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
            if (lmx__tok_strmap_put_at(&c->orig, L->v[3 * i], klen, id, r->ho) && c->fast) {
                free(big);
                return LMX_TOKLOAD_FALLBACK;
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
                    return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
                ok = bytelevel_unmap(inv, key, klen, big, &on);
                raw = big;
                hv = ok ? lmx__tok_hash(big, on) : 0;
            }
            if (ok && lmx__tok_strmap_put_h(&t->vocab, raw, on, id, hv) != LMX_OK) {
                free(big);
                return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
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
                return LMX_TOKLOAD_FALLBACK; /* a duplicate key: see above */
            if (lmx__tok_strmap_put(&c->orig, (const uint8_t *)key, klen, id) != LMX_OK)
                return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
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
    for (int ch = 0; ch < 128; ch++) {
        uint8_t b = (uint8_t)ch;
        t->ascii_ids[ch] = (t->cont_prefix_len || t->eow_suffix_len)
                               ? LMX_TOKEN_NONE
                               : lmx__tok_strmap_get(&t->vocab, &b, 1);
    }

    return LMX_OK;
}

/* The merge map, in rank order, and the word-cutting analysis (lmx_tokjson.seg_enabled and
 * cut_enabled) from the same pass over the merges. */
static int merge_tables(lmx_tok_loadctx *c, lmx_tok_lists *L)
{
    lmx_tokjson *t = c->t;
    const uint8_t *A = L->arena.data;
    const lmx_tok_strmap *ov = t->byte_level ? &c->orig : &t->vocab;
    char q[80];
    if (L->bad_merge_kind == 3)
        return lmx__tokload_bad(c, LMX_EFORMAT, "model.merges: expected an array");
    size_t nm = L->nm;
    if (nm >= UINT32_MAX / 4)
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "model.merges: too many merges");
    if (lmx__tok_mergemap_init(&t->merges, (uint32_t)nm) != LMX_OK)
        return lmx__tokload_bad(c, LMX_ENOMEM, "model.merges: out of memory");
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
                return lmx__tokload_bad(c, LMX_EFORMAT, "model.merges[%zu]: expected \"A B\" with exactly one space", i);
            return lmx__tokload_bad(c, LMX_EFORMAT, "model.merges[%zu]: expected \"A B\" or [\"A\", \"B\"]", i);
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
        if (!missing && r->short_b) {
            lmx__tokload_quote(q, sizeof q, b, bl);
            free(cat);
            return lmx__tokload_bad(c, LMX_EFORMAT, "model.merges[%zu]: right token \"%s\" cannot lose "
                                    "model.continuing_subword_prefix's %zu bytes (HF fails to load)",
                                    i, q, t->cont_prefix_len);
        }
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
                        return lmx__tokload_bad(c, LMX_ENOMEM, "model.merges: out of memory");
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
            lmx__tokload_quote(q, sizeof q, missing, mlen);
            free(cat);
            return lmx__tokload_bad(c, LMX_EFORMAT, "model.merges[%zu]: unknown token \"%s\"", i, q);
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
        if (seg_ok && bl >= 3 && memcmp(b, meta, 3) == 0 && !(al >= 3 && memcmp(a + al - 3, meta, 3) == 0)) {
            /* a merge joins x + "▁...": no cut before a ▁ that follows the char x (Gemma 3 has
             * one, ">" + "▁</"); only for an ordinary token ending in an ASCII x, else no
             * segmentation at all */
            uint8_t x = (uint8_t)a[al - 1];
            int special = ia == t->unk_id;
            for (int k = 0; k < 256 && !special && t->byte_fallback; k++)
                special = t->byte_ids[k] == ia;
            if (x < 0x80 && !special)
                t->seg_block[x >> 6] |= 1ull << (x & 63);
            else
                seg_ok = 0;
        }
    }
    free(cat);
    /* in rank order (a later duplicate pair wins, as in HF), prefetching ahead */
    for (size_t i = 0; i < nm; i++) {
        if (i + MERGE_AHEAD < nm)
            lmx__tok_merge_prefetch(&t->merges, L->m[4 * (i + MERGE_AHEAD)],
                                    L->m[4 * (i + MERGE_AHEAD) + 1]);
        lmx__tok_mergemap_put(&t->merges, L->m[4 * i], L->m[4 * i + 1], (uint32_t)i, L->m[4 * i + 2]);
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
}

/* The vocab/merges part of load_model, on the lists. */
static int model_tables(lmx_tok_loadctx *c, json_t *m, json_t *added, lmx_tok_lists *L)
{
    lmx_tokjson *t = c->t;
    int rc;
    json_t *v;
    char q[80];
    if ((rc = lmx__tokload_id_tables(c, added, L)) || (rc = vocab_maps(c, L)))
        return rc;
    const lmx_tok_strmap *ov = t->byte_level ? &c->orig : &t->vocab;
    t->unk_id = LMX_TOKEN_NONE;
    if ((v = json_object_get(m, "unk_token")) && !json_is_null(v)) {
        if (!json_is_string(v))
            return lmx__tokload_bad(c, LMX_EFORMAT, "model.unk_token: expected a string or null");
        t->unk_id = lmx__tok_strmap_get(ov, (const uint8_t *)json_string_value(v),
                                        json_string_length(v));
        if (t->unk_id == LMX_TOKEN_NONE) {
            lmx__tokload_quote(q, sizeof q, json_string_value(v), json_string_length(v));
            return lmx__tokload_bad(c, LMX_EFORMAT, "model.unk_token: \"%s\" is not in model.vocab", q);
        }
    }

    return merge_tables(c, L);
}
#undef VKEY
#undef VLEN
#undef VID
