/* tokenizer.json encoding: added tokens -> normalizer -> pre-tokenizer -> BPE, mirroring
 * HuggingFace tokenizers' encode() (see proto/TOKENIZER.md). Hot path: no JSON, no allocation
 * once the encoder's scratch has grown to the largest document seen. */
#include "lmx_tok_internal.h"
#include "lmx_unicode_tables.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_SLOTS (1u << 16)
#define CACHE_ARENA (8u << 20)
#define CACHE_MAX_KEY 128
#define CACHE_MAX_IDS 64
#define SCRATCH_KEEP (64u << 20) /* scratch above this is released after the document */
/* Hot cache: 64K lines of 64 bytes (4 MB) per encoder, 2-way set associative, for pre-tokens of
 * up to LMX_TOK_HOT_KEY bytes (longer ones use the big cache below). English text needs a few
 * thousand distinct words for most of its pre-tokens; a lookup touches one pair of adjacent
 * lines, and a miss replaces the least recently used entry of its set (bounded, never
 * cleared). On 25 MB of prose, 2 ways miss ~25% less than direct mapping, and 64K lines ~25%
 * less than 32K. */
#define HOT_SLOTS (1u << 16)

/* ---- character classes --------------------------------------------------------------------- */

/* ASCII: letters, digits and the six White_Space chars (\t \n \v \f \r space). The rest of the
 * code points come from the generated tables. */
#define ACLS(c) ((((c) | 0x20) >= 'a' && ((c) | 0x20) <= 'z') ? LMX_UNI_L                       \
                 : ((c) >= '0' && (c) <= '9')                 ? LMX_UNI_N                       \
                 : ((c) == ' ' || ((c) >= 0x09 && (c) <= 0x0D)) ? LMX_UNI_WS                    \
                                                               : 0u)
#define ACLS4(c) ACLS(c), ACLS((c) + 1), ACLS((c) + 2), ACLS((c) + 3)
#define ACLS16(c) ACLS4(c), ACLS4((c) + 4), ACLS4((c) + 8), ACLS4((c) + 12)
/* 256 entries, non-ASCII bytes 0: a byte loop needs no separate < 0x80 test */
static const uint8_t ascii_cls[256] = {
    ACLS16(0x00), ACLS16(0x10), ACLS16(0x20), ACLS16(0x30),
    ACLS16(0x40), ACLS16(0x50), ACLS16(0x60), ACLS16(0x70),
};

static inline unsigned cls_cp(uint32_t cp)
{
    if (cp < 0x80)
        return ascii_cls[cp];
    return lmx__uni_flags(cp) & (LMX_UNI_L | LMX_UNI_N | LMX_UNI_WS);
}

/* Class and length of the char at p[i] (i < n, valid UTF-8). */
static inline unsigned cls_at(const uint8_t *p, size_t i, size_t n, int *len, uint32_t *cpo)
{
    uint32_t cp;
    if (p[i] < 0x80) {
        *len = 1;
        cp = p[i];
        if (cpo)
            *cpo = cp;
        return ascii_cls[cp];
    }
    *len = lmx__utf8_dec(p + i, n - i, &cp);
    if (cpo)
        *cpo = cp;
    return cls_cp(cp);
}

/* End of the run of chars at i whose class intersects `want` (or, with neg, does not). */
static inline size_t run_of(const uint8_t *p, size_t i, size_t n, unsigned want, int neg)
{
    while (i < n) {
        unsigned c;
        size_t l = 1;
        if (p[i] < 0x80) {
            c = ascii_cls[p[i]]; /* most text: one table load per char */
        } else {
            int dl;
            c = cls_at(p, i, n, &dl, NULL);
            l = (size_t)dl;
        }
        if (neg ? (c & want) != 0 : (c & want) == 0)
            break;
        i += l;
    }
    return i;
}

static inline int fold_is(uint32_t cp, char lower)
{
    if (cp < 0x80)
        return (char)(cp | 0x20) == lower && ((cp | 0x20) >= 'a');
    for (uint32_t k = 0; k < lmx__uni_fold_ascii_n; k++)
        if (lmx__uni_fold_ascii[k].cp == cp && lmx__uni_fold_ascii[k].ascii == (uint32_t)lower)
            return 1;
    return 0;
}

/* 's 't 're 've 'm 'll 'd after the apostrophe at p[i]; returns the match end or 0. */
static size_t contraction(const uint8_t *p, size_t i, size_t n, int ci)
{
    size_t j = i + 1;
    if (j >= n)
        return 0;
    uint32_t c1, c2 = 0;
    int l1 = lmx__utf8_dec(p + j, n - j, &c1), l2 = 0;
    if (j + (size_t)l1 < n)
        l2 = lmx__utf8_dec(p + j + l1, n - j - (size_t)l1, &c2);
    if (!ci) {
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
            return j + 1;
        if (l2 && ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')))
            return j + 2;
        return 0;
    }
    if (fold_is(c1, 's') || fold_is(c1, 't'))
        return j + (size_t)l1;
    if (l2 && ((fold_is(c1, 'r') && fold_is(c2, 'e')) || (fold_is(c1, 'v') && fold_is(c2, 'e'))))
        return j + (size_t)l1 + (size_t)l2;
    if (fold_is(c1, 'm'))
        return j + (size_t)l1;
    if (l2 && fold_is(c1, 'l') && fold_is(c2, 'l'))
        return j + (size_t)l1 + (size_t)l2;
    if (fold_is(c1, 'd'))
        return j + (size_t)l1;
    return 0;
}

/* Whitespace alternatives shared by both patterns, at a White_Space char at i:
 *   [LLaMA-3 only] \s*[\r\n]+   then   \s+(?!\S)   then   \s+   */
static size_t ws_tail(const uint8_t *p, size_t i, size_t n, int llama3)
{
    size_t j = i, last_nl = SIZE_MAX, last_start = i;
    int nchars = 0;
    while (j < n) {
        int l;
        unsigned c = cls_at(p, j, n, &l, NULL);
        if (!(c & LMX_UNI_WS))
            break;
        if (p[j] == '\r' || p[j] == '\n')
            last_nl = j;
        last_start = j;
        j += (size_t)l;
        nchars++;
    }
    if (llama3 && last_nl != SIZE_MAX)
        return last_nl + 1;
    if (j == n || nchars < 2)
        return j;
    return last_start;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,K}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+   (leftmost-first alternation, as Oniguruma runs it) */
static size_t re_llama3(const uint8_t *p, size_t i, size_t n, int digits)
{
    int l;
    uint32_t cp;
    unsigned c = cls_at(p, i, n, &l, &cp);
    if (cp == '\'') {
        size_t e = contraction(p, i, n, 1);
        if (e)
            return e;
    }
    if (c & LMX_UNI_L)
        return run_of(p, i + (size_t)l, n, LMX_UNI_L, 0);
    if (c & LMX_UNI_N) {
        size_t j = i + (size_t)l;
        for (int k = 1; k < digits && j < n; k++) {
            int l2;
            if (!(cls_at(p, j, n, &l2, NULL) & LMX_UNI_N))
                break;
            j += (size_t)l2;
        }
        return j;
    }
    size_t j = i + (size_t)l;
    if (cp != '\r' && cp != '\n' && j < n) {
        int l2;
        if (cls_at(p, j, n, &l2, NULL) & LMX_UNI_L)
            return run_of(p, j + (size_t)l2, n, LMX_UNI_L, 0);
    }
    size_t k = SIZE_MAX;
    if (!(c & LMX_UNI_WS))
        k = i;
    else if (cp == ' ' && j < n) {
        int l2;
        if (!(cls_at(p, j, n, &l2, NULL) & (LMX_UNI_WS | LMX_UNI_L | LMX_UNI_N)))
            k = j;
    }
    if (k != SIZE_MAX) {
        k = run_of(p, k, n, LMX_UNI_WS | LMX_UNI_L | LMX_UNI_N, 1);
        while (k < n && (p[k] == '\r' || p[k] == '\n'))
            k++;
        return k;
    }
    return ws_tail(p, i, n, 1);
}

/* re_llama3 for the commonest pieces, " word" and "word" in ASCII (the \p{L}+ alternative,
 * preceded by an optional space), without its call; anything else, or a letter run that goes
 * on past ASCII, takes the full matcher from the start. */
static inline size_t re_llama3_fast(const uint8_t *p, size_t i, size_t n, int digits)
{
    size_t j = i + (p[i] == ' ' && i + 1 < n);
    if (ascii_cls[p[j]] & LMX_UNI_L) {
        j++;
        while (j < n && (ascii_cls[p[j]] & LMX_UNI_L))
            j++;
        if (j == n || p[j] < 0x80)
            return j;
    }
    return re_llama3(p, i, n, digits);
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t re_gpt2(const uint8_t *p, size_t i, size_t n)
{
    int l;
    uint32_t cp;
    unsigned c = cls_at(p, i, n, &l, &cp);
    if (cp == '\'') {
        size_t e = contraction(p, i, n, 0);
        if (e)
            return e;
    }
    size_t s = i;
    if (cp == ' ' && i + 1 < n) {
        int l2;
        unsigned c2 = cls_at(p, i + 1, n, &l2, NULL);
        if (!(c2 & LMX_UNI_WS)) {
            s = i + 1;
            c = c2;
            l = l2;
        }
    }
    if (c & LMX_UNI_L)
        return run_of(p, s + (size_t)l, n, LMX_UNI_L, 0);
    if (c & LMX_UNI_N)
        return run_of(p, s + (size_t)l, n, LMX_UNI_N, 0);
    if (!(c & LMX_UNI_WS))
        return run_of(p, s + (size_t)l, n, LMX_UNI_WS | LMX_UNI_L | LMX_UNI_N, 1);
    return ws_tail(p, i, n, 0);
}

/* ---- scratch ------------------------------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return LMX_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np)
        return LMX_ENOMEM;
    *p = np;
    *cap = nc;
    return LMX_OK;
}

int lmx__tokjson_enc_init(lmx_tokjson_enc *e, const lmx_tokjson *tj, int match_added)
{
    memset(e, 0, sizeof *e);
    e->tj = tj;
    e->match_added = match_added;
    e->cache = calloc(CACHE_SLOTS, sizeof *e->cache);
    e->cache_arena = lmx__tok_table_alloc(CACHE_ARENA, 0);
    /* 2 MB aligned, so a set (two 64-byte entries) is exactly one pair of cache lines */
    _Static_assert(HOT_SLOTS * sizeof(lmx_tok_hot) >= (2u << 20), "the hot cache must be 2 MB aligned");
    e->hot = lmx__tok_table_alloc(HOT_SLOTS * sizeof *e->hot, 1);
    if (!e->cache || !e->cache_arena || !e->hot) {
        lmx__tokjson_enc_free(e);
        return LMX_ENOMEM;
    }
    e->cache_mask = CACHE_SLOTS - 1;
    e->cache_arena_cap = CACHE_ARENA;
    return LMX_OK;
}

void lmx__tokjson_enc_free(lmx_tokjson_enc *e)
{
    if (!e)
        return;
    lmx__buf_free(&e->valid);
    for (int i = 0; i < 2; i++) {
        lmx__buf_free(&e->nbuf[i]);
        lmx__buf_free(&e->pbuf[i]);
        free(e->spans[i]);
    }
    free(e->u32);
    free(e->pieces);
    free(e->syms);
    free(e->heap);
    free(e->cache);
    free(e->cache_arena);
    free(e->hot);
    memset(e, 0, sizeof *e);
}

static void trim_scratch(lmx_tokjson_enc *e)
{
    if (e->sym_cap * sizeof *e->syms > SCRATCH_KEEP) {
        free(e->syms);
        e->syms = NULL;
        e->sym_cap = 0;
    }
    if (e->heap_cap * sizeof *e->heap > SCRATCH_KEEP) {
        free(e->heap);
        e->heap = NULL;
        e->heap_cap = 0;
    }
    for (int i = 0; i < 2; i++) {
        if (e->span_cap[i] * sizeof(lmx_tok_span) > SCRATCH_KEEP) {
            free(e->spans[i]);
            e->spans[i] = NULL;
            e->span_cap[i] = 0;
        }
        if (e->nbuf[i].cap > SCRATCH_KEEP) lmx__buf_free(&e->nbuf[i]);
        if (e->pbuf[i].cap > SCRATCH_KEEP) lmx__buf_free(&e->pbuf[i]);
    }
    if (e->valid.cap > SCRATCH_KEEP) lmx__buf_free(&e->valid);
    if (e->u32_cap * 4 > SCRATCH_KEEP) {
        free(e->u32);
        e->u32 = NULL;
        e->u32_cap = 0;
    }
}

/* ---- BPE ----------------------------------------------------------------------------------- */

static inline int heap_less(const lmx_tok_heapent *a, const lmx_tok_heapent *b)
{
    return a->key < b->key;
}

static inline void heap_push(lmx_tok_heapent *h, size_t *n, uint64_t key, uint32_t new_id)
{
    size_t i = (*n)++;
    lmx_tok_heapent x = {key, new_id};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&x, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = x;
}

static inline lmx_tok_heapent heap_pop(lmx_tok_heapent *h, size_t *n)
{
    lmx_tok_heapent top = h[0];
    lmx_tok_heapent x = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= m)
            break;
        size_t c = (l + 1 < m && heap_less(&h[l + 1], &h[l])) ? l + 1 : l;
        if (!heap_less(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    if (m)
        h[i] = x;
    return top;
}

/* Word::merge_all of HF: a min-heap on (rank, position) over the linked list of symbols, with
 * stale entries skipped when the pair at that position no longer yields the same new id. */
static void merge_all(lmx_tokjson_enc *e, size_t ns)
{
    const lmx_tok_mergemap *mm = &e->tj->merges;
    lmx_tok_sym *s = e->syms;
    lmx_tok_heapent *h = e->heap;
    size_t hn = 0;
    for (size_t i = 0; i + 1 < ns && i < 64; i++)
        lmx__tok_merge_prefetch(mm, s[i].id, s[i + 1].id);
    for (size_t i = 0; i + 1 < ns; i++) {
        if (i + 64 + 1 < ns)
            lmx__tok_merge_prefetch(mm, s[i + 64].id, s[i + 65].id);
        const lmx_tok_merge *m = lmx__tok_merge_get(mm, s[i].id, s[i + 1].id);
        if (m) {
            heap_push(h, &hn, (uint64_t)m->rank << 32 | i, m->new_id);
            /* the pairs this merge would form (if its neighbours stay): their lookups are the
             * misses of the merge loop, so they are started now */
            if (i > 0)
                lmx__tok_merge_prefetch(mm, s[i - 1].id, m->new_id);
            if (i + 2 < ns)
                lmx__tok_merge_prefetch(mm, m->new_id, s[i + 2].id);
        }
    }
    while (hn) {
        lmx_tok_heapent top = heap_pop(h, &hn);
        uint32_t pos = (uint32_t)top.key;
        if (!s[pos].alive || s[pos].next < 0)
            continue;
        int32_t nx = s[pos].next;
        const lmx_tok_merge *m = lmx__tok_merge_get(mm, s[pos].id, s[nx].id);
        if (!m || m->new_id != top.new_id)
            continue;
        s[pos].id = top.new_id;
        s[pos].next = s[nx].next;
        s[nx].alive = 0;
        if (s[nx].next >= 0)
            s[s[nx].next].prev = (int32_t)pos;
        if (s[pos].prev >= 0 && s[pos].next >= 0) {
            lmx__tok_merge_prefetch(mm, s[s[pos].prev].id, s[pos].id);
            lmx__tok_merge_prefetch(mm, s[pos].id, s[s[pos].next].id);
        }
        if (s[pos].prev >= 0) {
            int32_t pv = s[pos].prev;
            const lmx_tok_merge *m2 = lmx__tok_merge_get(mm, s[pv].id, s[pos].id);
            if (m2) {
                heap_push(h, &hn, (uint64_t)m2->rank << 32 | (uint32_t)pv, m2->new_id);
                if (s[pv].prev >= 0)
                    lmx__tok_merge_prefetch(mm, s[s[pv].prev].id, m2->new_id);
                if (s[pos].next >= 0)
                    lmx__tok_merge_prefetch(mm, m2->new_id, s[s[pos].next].id);
            }
        }
        if (s[pos].next >= 0) {
            int32_t nx2 = s[pos].next;
            const lmx_tok_merge *m2 = lmx__tok_merge_get(mm, s[pos].id, s[nx2].id);
            if (m2) {
                heap_push(h, &hn, (uint64_t)m2->rank << 32 | pos, m2->new_id);
                if (s[pos].prev >= 0)
                    lmx__tok_merge_prefetch(mm, s[s[pos].prev].id, m2->new_id);
                if (s[nx2].next >= 0)
                    lmx__tok_merge_prefetch(mm, m2->new_id, s[s[nx2].next].id);
            }
        }
    }
}

static inline void sym_add(lmx_tok_sym *s, size_t *ns, uint32_t id)
{
    size_t i = (*ns)++;
    s[i].id = id;
    s[i].prev = (int32_t)i - 1;
    s[i].next = -1;
    s[i].alive = 1;
    if (i)
        s[i - 1].next = (int32_t)i;
}

/* Builds the initial symbols of w (HF BPE::merge_word) and merges them; appends ids. */
static int bpe_merge_word(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    size_t max_syms = tj->byte_fallback ? n * (1 + tj->cont_prefix_len + tj->eow_suffix_len) : n;
    if (max_syms > INT32_MAX - 8)
        return LMX_ENOMEM;
    if (grow((void **)&e->syms, &e->sym_cap, max_syms + 1, sizeof *e->syms) ||
        grow((void **)&e->heap, &e->heap_cap, 3 * max_syms + 8, sizeof *e->heap))
        return LMX_ENOMEM;
    lmx_tok_sym *s = e->syms;
    size_t ns = 0;
    uint32_t unk = LMX_TOKEN_NONE; /* pending (possibly fused) unk */
    if (tj->byte_level) {
        for (size_t i = 0; i < n; i++) {
            uint32_t id = tj->byte_ids[w[i]];
            if (id != LMX_TOKEN_NONE) {
                if (unk != LMX_TOKEN_NONE) {
                    sym_add(s, &ns, unk);
                    unk = LMX_TOKEN_NONE;
                }
                sym_add(s, &ns, id);
            } else if (tj->unk_id != LMX_TOKEN_NONE) {
                if (unk != LMX_TOKEN_NONE && !tj->fuse_unk)
                    sym_add(s, &ns, unk);
                unk = tj->unk_id;
            }
        }
    } else {
        uint8_t tmp[4 + 2 * LMX_TOK_MAX_AFFIX];
        int affix = tj->cont_prefix_len || tj->eow_suffix_len;
        for (size_t i = 0; i < n;) {
            size_t cl = w[i] < 0x80 ? 1 : lmx__utf8_len(w[i]);
            if (cl > n - i)
                cl = n - i;
            uint32_t id;
            const uint8_t *str = w + i;
            size_t slen = cl;
            if (!affix) {
                id = w[i] < 0x80 ? tj->ascii_ids[w[i]] : lmx__tok_strmap_get(&tj->vocab, str, slen);
            } else {
                size_t k = 0;
                if (i > 0) {
                    memcpy(tmp, tj->cont_prefix, tj->cont_prefix_len);
                    k = tj->cont_prefix_len;
                }
                memcpy(tmp + k, w + i, cl);
                k += cl;
                if (i + cl == n) {
                    memcpy(tmp + k, tj->eow_suffix, tj->eow_suffix_len);
                    k += tj->eow_suffix_len;
                }
                str = tmp;
                slen = k;
                id = lmx__tok_strmap_get(&tj->vocab, str, slen);
            }
            i += cl;
            if (id != LMX_TOKEN_NONE) {
                if (unk != LMX_TOKEN_NONE) {
                    sym_add(s, &ns, unk);
                    unk = LMX_TOKEN_NONE;
                }
                sym_add(s, &ns, id);
                continue;
            }
            if (tj->byte_fallback) {
                size_t k = 0;
                while (k < slen && tj->byte_ids[str[k]] != LMX_TOKEN_NONE)
                    k++;
                if (k == slen) {
                    /* HF quirk kept: a pending unk is not flushed before fallback bytes */
                    for (k = 0; k < slen; k++)
                        sym_add(s, &ns, tj->byte_ids[str[k]]);
                    continue;
                }
            }
            if (tj->unk_id != LMX_TOKEN_NONE) {
                if (unk != LMX_TOKEN_NONE && !tj->fuse_unk)
                    sym_add(s, &ns, unk);
                unk = tj->unk_id;
            }
        }
    }
    if (unk != LMX_TOKEN_NONE)
        sym_add(s, &ns, unk);
    if (ns > 1)
        merge_all(e, ns);
    if (lmx__ids_reserve(out, ns) != LMX_OK)
        return LMX_ENOMEM;
    for (size_t i = 0; i < ns;) {
        out->v[out->n++] = s[i].id;
        if (s[i].next < 0)
            break;
        i = (size_t)s[i].next;
    }
    return LMX_OK;
}

/* Word cache (per encoder): word bytes -> ids. Cleared wholesale when full. */
static void cache_clear(lmx_tokjson_enc *e)
{
    memset(e->cache, 0, (size_t)(e->cache_mask + 1) * sizeof *e->cache);
    e->cache_n = 0;
    e->cache_arena_len = 0;
}

static int bpe_cached(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out)
{
    if (n > CACHE_MAX_KEY)
        return bpe_merge_word(e, w, n, out);
    uint64_t h = lmx__tok_hash(w, n) | 1u;
    uint32_t i = (uint32_t)h & e->cache_mask;
    for (;;) {
        lmx_tok_cache_slot *sl = &e->cache[i];
        if (!sl->hash)
            break;
        if (sl->hash == h && sl->klen == n && memcmp(e->cache_arena + sl->off, w, n) == 0) {
            if (lmx__ids_reserve(out, sl->nids) != LMX_OK)
                return LMX_ENOMEM;
            uint32_t off = (sl->off + sl->klen + 3u) & ~3u;
            memcpy(out->v + out->n, e->cache_arena + off, (size_t)sl->nids * 4);
            out->n += sl->nids;
            return LMX_OK;
        }
        i = (i + 1) & e->cache_mask;
    }
    size_t before = out->n;
    int rc = bpe_merge_word(e, w, n, out);
    if (rc)
        return rc;
    size_t nids = out->n - before;
    if (nids > CACHE_MAX_IDS)
        return LMX_OK;
    size_t need = ((e->cache_arena_len + n + 3u) & ~(size_t)3u) + nids * 4;
    if (need > e->cache_arena_cap || e->cache_n * 2 > e->cache_mask) {
        cache_clear(e);
        need = ((n + 3u) & ~(size_t)3u) + nids * 4;
        i = (uint32_t)h & e->cache_mask;
    }
    lmx_tok_cache_slot *sl = &e->cache[i];
    sl->hash = h;
    sl->off = (uint32_t)e->cache_arena_len;
    sl->klen = (uint16_t)n;
    sl->nids = (uint16_t)nids;
    memcpy(e->cache_arena + sl->off, w, n);
    memcpy(e->cache_arena + ((sl->off + n + 3u) & ~(size_t)3u), out->v + before, nids * 4);
    e->cache_arena_len = need;
    e->cache_n++;
    return LMX_OK;
}

/* Ids of one pre-token (HF BPE::tokenize): whole-word vocab hit under ignore_merges, else the
 * merge result (through the big word cache). */
static int bpe_short(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    if (tj->ignore_merges) {
        uint32_t id = lmx__tok_strmap_get(&tj->vocab, w, n);
        if (id != LMX_TOKEN_NONE)
            return lmx__ids_push(out, id);
    }
    /* words the hot cache can hold go straight to the merge: it is the bigger cache for them,
     * so the big one would rarely hit and only cost a lookup */
    return n <= LMX_TOK_HOT_KEY ? bpe_merge_word(e, w, n, out) : bpe_cached(e, w, n, out);
}

/* a[0..n) == b[0..n) for n <= 32, with a few overlapping word loads instead of a memcmp call
 * (the hot cache compares a key on every hit). */
static inline int short_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
    if (n >= 8) {
        uint64_t d = (lmx__tok_load64(a) ^ lmx__tok_load64(b)) |
                     (lmx__tok_load64(a + n - 8) ^ lmx__tok_load64(b + n - 8));
        if (n > 16)
            d |= (lmx__tok_load64(a + 8) ^ lmx__tok_load64(b + 8)) |
                 (lmx__tok_load64(a + n - 16) ^ lmx__tok_load64(b + n - 16));
        return d == 0;
    }
    if (n >= 4)
        return ((lmx__tok_load32(a) ^ lmx__tok_load32(b)) |
                (lmx__tok_load32(a + n - 4) ^ lmx__tok_load32(b + n - 4))) == 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

static inline lmx_tok_hot *hot_set(lmx_tokjson_enc *e, uint64_t h)
{
    return &e->hot[(h & (HOT_SLOTS / 2 - 1)) * 2];
}

/* bpe_short behind the hot cache; h = lmx__tok_hash(w, n), n <= LMX_TOK_HOT_KEY. */
static inline int bpe_hot_h(lmx_tokjson_enc *e, const uint8_t *w, size_t n, uint64_t h,
                            lmx_ids *out)
{
    lmx_tok_hot *set = hot_set(e, h);
    uint32_t h32 = (uint32_t)(h >> 32);
    for (int way = 0; way < 2; way++) {
        lmx_tok_hot *sl = &set[way];
        if (sl->hash32 == h32 && sl->klen == n && sl->nids && short_eq(sl->key, w, n)) {
            if (out->cap - out->n < LMX_TOK_HOT_IDS &&
                lmx__ids_reserve(out, LMX_TOK_HOT_IDS) != LMX_OK)
                return LMX_ENOMEM;
            /* copy the whole fixed-size array: cheaper than a variable-length copy */
            memcpy(out->v + out->n, sl->ids, sizeof sl->ids);
            out->n += sl->nids;
            if (way) {
                /* most recently used first: the older entry is the one a miss replaces */
                lmx_tok_hot t = set[0];
                set[0] = set[1];
                set[1] = t;
            }
            return LMX_OK;
        }
    }
    size_t before = out->n;
    int rc = bpe_short(e, w, n, out);
    size_t nids = out->n - before;
    if (rc || nids == 0 || nids > LMX_TOK_HOT_IDS)
        return rc;
    set[1] = set[0];
    lmx_tok_hot *sl = &set[0];
    sl->hash32 = h32;
    sl->klen = (uint8_t)n;
    sl->nids = (uint8_t)nids;
    memcpy(sl->key, w, n);
    memcpy(sl->ids, out->v + before, nids * sizeof *out->v);
    return LMX_OK;
}

static inline int bpe_hot(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out)
{
    if (n > LMX_TOK_HOT_KEY)
        return bpe_short(e, w, n, out);
    return bpe_hot_h(e, w, n, lmx__tok_hash(w, n), out);
}

/* HF BPE::tokenize for one pre-token. */
static int bpe_word(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    if (!n)
        return LMX_OK;
    if (!(tj->seg_enabled || tj->cut_enabled) || n <= CACHE_MAX_KEY / 2)
        return bpe_hot(e, w, n, out);
    if (tj->ignore_merges) {
        uint32_t id = lmx__tok_strmap_get(&tj->vocab, w, n);
        if (id != LMX_TOKEN_NONE)
            return lmx__ids_push(out, id);
    }
    /* A long word (LLaMA-2: the whole document) is cut where no merge can cross, and the parts
     * are merged independently (see lmx_tokjson.seg_enabled / cut_enabled): before each
     * seg_char that follows another char, and between ASCII chars allowed by cut_ok. Parts are
     * merged without the ignore_merges lookup (it applies to whole words only), so they share
     * the hot cache with whole words only when ignore_merges is off (bpe_short == bpe_cached). */
    int hot = !tj->ignore_merges;
    const uint8_t *sc = tj->seg_char;
    size_t start = 0;
    for (size_t i = 1; i < n; i++) {
        uint8_t x = w[i - 1], y = w[i];
        int cut;
        if ((x | y) < 0x80)
            cut = tj->cut_enabled && (tj->cut_ok[x][y >> 6] >> (y & 63) & 1);
        else
            cut = tj->seg_enabled && y == sc[0] && i + 3 <= n && w[i + 1] == sc[1] &&
                  w[i + 2] == sc[2] &&
                  !(i >= 3 && w[i - 3] == sc[0] && w[i - 2] == sc[1] && x == sc[2]);
        if (!cut)
            continue;
        int rc = hot ? bpe_hot(e, w + start, i - start, out)
                     : bpe_cached(e, w + start, i - start, out);
        if (rc)
            return rc;
        start = i;
    }
    return hot ? bpe_hot(e, w + start, n - start, out)
               : bpe_cached(e, w + start, n - start, out);
}

/* ---- normalizer ---------------------------------------------------------------------------- */

/* Replace with a one-byte pattern (rp->alen == 1, rp->blen <= 8) of s[0..n) written at o, which
 * has room for n * max(blen, 1) bytes; returns the end. */
static uint8_t *replace1(uint8_t *o, const uint8_t *s, size_t n, const lmx_tok_norm *rp)
{
    uint8_t pc = (uint8_t)rp->a[0];
    const uint8_t *rep = (const uint8_t *)rp->b;
    size_t rl = rp->blen;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != pc) {
            *o++ = s[i];
        } else {
            for (size_t r = 0; r < rl; r++)
                *o++ = rep[r];
        }
    }
    return o;
}

/* Applies the normalizer chain to s, result in *out (may point to s when nothing changed). */
static int normalize(const lmx_tokjson *tj, const uint8_t *s, size_t n, lmx_buf bufs[2],
                     uint32_t **u32, size_t *u32cap, const uint8_t **out, size_t *out_len)
{
    const uint8_t *cur = s;
    size_t cn = n;
    int which = 0;
    for (int k = 0; k < tj->n_norm; k++) {
        const lmx_tok_norm *nm = &tj->norm[k];
        lmx_buf *b = &bufs[which];
        b->len = 0;
        switch (nm->type) {
        case LMX_NORM_PREPEND:
            if (!cn)
                continue;
            if (k + 1 < tj->n_norm && tj->norm[k + 1].type == LMX_NORM_REPLACE &&
                tj->norm[k + 1].alen == 1 && tj->norm[k + 1].blen <= 8) {
                /* Prepend then a one-byte Replace (SentencePiece: "▁" + " " -> "▁") in one
                 * pass: the pattern cannot span the junction, so replacing in the prefix and in
                 * the text separately gives the same string */
                const lmx_tok_norm *rp = &tj->norm[k + 1];
                size_t mul = rp->blen > 1 ? rp->blen : 1;
                if (cn > (SIZE_MAX - 8) / 8 - nm->alen || lmx__buf_reserve(b, (nm->alen + cn) * mul))
                    return LMX_ENOMEM;
                uint8_t *o = replace1(b->data, (const uint8_t *)nm->a, nm->alen, rp);
                b->len = (size_t)(replace1(o, cur, cn, rp) - b->data);
                k++;
                break;
            }
            if (lmx__buf_reserve(b, nm->alen + cn) != LMX_OK)
                return LMX_ENOMEM;
            memcpy(b->data, nm->a, nm->alen);
            memcpy(b->data + nm->alen, cur, cn);
            b->len = nm->alen + cn;
            break;
        case LMX_NORM_REPLACE: {
            const uint8_t *pat = (const uint8_t *)nm->a;
            size_t pl = nm->alen, i = 0, last = 0;
            if (!memchr(cur, pat[0], cn))
                continue;
            if (pl == 1 && nm->blen <= 8) {
                /* one-byte pattern (SentencePiece's " " -> "▁" replaces every word boundary):
                 * one pass writing into room reserved for the worst case, instead of two
                 * appends per match */
                if (cn > (SIZE_MAX - 8) / 8 || lmx__buf_reserve(b, cn * (nm->blen > 1 ? nm->blen : 1)))
                    return LMX_ENOMEM;
                b->len = (size_t)(replace1(b->data, cur, cn, nm) - b->data);
                break;
            }
            while (i + pl <= cn) {
                const uint8_t *f = memchr(cur + i, pat[0], cn - i - pl + 1);
                if (!f)
                    break;
                i = (size_t)(f - cur);
                if (memcmp(f, pat, pl) == 0) {
                    if (lmx__buf_append(b, cur + last, i - last) ||
                        lmx__buf_append(b, nm->b, nm->blen))
                        return LMX_ENOMEM;
                    i += pl;
                    last = i;
                } else {
                    i++;
                }
            }
            if (lmx__buf_append(b, cur + last, cn - last))
                return LMX_ENOMEM;
            break;
        }
        case LMX_NORM_NFC:
            if (lmx__nfc(cur, cn, b, u32, u32cap) != LMX_OK)
                return LMX_ENOMEM;
            break;
        default:
            return LMX_EINTERNAL;
        }
        cur = b->data ? b->data : (const uint8_t *)"";
        cn = b->len;
        which ^= 1;
    }
    *out = cur;
    *out_len = cn;
    return LMX_OK;
}

int lmx__tokjson_normalize(const lmx_tokjson *tj, const uint8_t *s, size_t n, lmx_buf *out,
                           lmx_buf *tmp, uint32_t **u32, size_t *u32cap);
int lmx__tokjson_normalize(const lmx_tokjson *tj, const uint8_t *s, size_t n, lmx_buf *out,
                           lmx_buf *tmp, uint32_t **u32, size_t *u32cap)
{
    lmx_buf bufs[2] = {*out, *tmp};
    const uint8_t *r;
    size_t rn;
    int rc = normalize(tj, s, n, bufs, u32, u32cap, &r, &rn);
    if (!rc && r != bufs[0].data) {
        /* result is in bufs[1] or is s itself: move it into out */
        lmx_buf copy = {0};
        rc = lmx__buf_append(&copy, r, rn) ? LMX_ENOMEM : LMX_OK;
        lmx__buf_free(&bufs[0]);
        bufs[0] = copy;
    }
    *out = bufs[0];
    *tmp = bufs[1];
    return rc;
}

/* ---- pre-tokenizer ------------------------------------------------------------------------- */

typedef struct piece {
    uint32_t start, end;
    int is_match;
} piece;

/* Applies a split behavior to pieces[0..np) (in place) and appends the resulting non-empty
 * spans to out. HF SplitDelimiterBehavior. */
static int apply_behavior(int behavior, piece *pc, size_t np, lmx_tok_span **out, size_t *on,
                          size_t *ocap)
{
    size_t m = 0;
    switch (behavior) {
    case LMX_SPLIT_ISOLATED:
        m = np;
        break;
    case LMX_SPLIT_REMOVED:
        for (size_t i = 0; i < np; i++)
            if (!pc[i].is_match)
                pc[m++] = pc[i];
        break;
    case LMX_SPLIT_MERGED_PREV: {
        int prev = 0;
        for (size_t i = 0; i < np; i++) {
            int im = pc[i].is_match;
            if (im && !prev && m)
                pc[m - 1].end = pc[i].end;
            else
                pc[m++] = pc[i];
            prev = im;
        }
        break;
    }
    case LMX_SPLIT_MERGED_NEXT: {
        /* right-to-left fold, written into the tail then reversed in place */
        int prev = 0;
        size_t w = np;
        for (size_t ii = np; ii-- > 0;) {
            piece p = pc[ii];
            if (p.is_match && !prev && w < np)
                pc[w].start = p.start;
            else
                pc[--w] = p;
            prev = p.is_match;
        }
        memmove(pc, pc + w, (np - w) * sizeof *pc);
        m = np - w;
        break;
    }
    case LMX_SPLIT_CONTIGUOUS: {
        int prev = 0;
        for (size_t i = 0; i < np; i++) {
            int im = pc[i].is_match;
            if (im == prev && m)
                pc[m - 1].end = pc[i].end;
            else
                pc[m++] = pc[i];
            prev = im;
        }
        break;
    }
    }
    if (grow((void **)out, ocap, *on + m, sizeof **out))
        return LMX_ENOMEM;
    for (size_t i = 0; i < m; i++)
        if (pc[i].end > pc[i].start)
            (*out)[(*on)++] = (lmx_tok_span){pc[i].start, pc[i].end - pc[i].start};
    return LMX_OK;
}

/* Pre-tokenizes text[0..n) (already normalized) and BPE-encodes every piece. `first` tells
 * Metaspace(prepend_scheme=first) that this piece starts the original text. */
#define PIECES_AHEAD 16

/* The regex piece starting at i: its end in *end; for a piece the hot cache can hold, its hash
 * in *h and its hot set prefetched. Returns the end. */
static inline size_t piece_ahead(lmx_tokjson_enc *e, const uint8_t *text, size_t i, size_t n,
                                 int llama3, int dg, size_t *end, uint64_t *h)
{
    size_t j = llama3 ? re_llama3_fast(text, i, n, dg) : re_gpt2(text, i, n);
    *end = j;
    if (j - i <= LMX_TOK_HOT_KEY) {
        *h = lmx__tok_hash(text + i, j - i);
        const lmx_tok_hot *set = hot_set(e, *h);
        LMX_PREFETCH(set);
        LMX_PREFETCH(set + 1);
    } else {
        *h = 0; /* not used: longer pieces go through bpe_word */
    }
    return j;
}

/* Half way to its BPE, the hot set of piece w[0..n) (hash h) has arrived: when it does not
 * hold the piece, what the miss path reads next is prefetched (its vocab slot, and with
 * ByteLevel the merge slots of its first byte pairs). */
static inline void piece_peek(const lmx_tokjson_enc *e, const uint8_t *w, size_t n, uint64_t h)
{
    const lmx_tokjson *tj = e->tj;
    const lmx_tok_hot *set = &e->hot[(h & (HOT_SLOTS / 2 - 1)) * 2];
    uint32_t h32 = (uint32_t)(h >> 32);
    if ((set[0].hash32 == h32 && set[0].nids) || (set[1].hash32 == h32 && set[1].nids))
        return;
    if (tj->ignore_merges)
        lmx__tok_strmap_prefetch(&tj->vocab, h);
    if (tj->byte_level)
        for (size_t i = 0; i + 1 < n && i < 16; i++)
            lmx__tok_merge_prefetch(&tj->merges, tj->byte_ids[w[i]], tj->byte_ids[w[i + 1]]);
}

static int pretok_and_bpe(lmx_tokjson_enc *e, const uint8_t *text, size_t n, int first,
                          lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    if (!n)
        return LMX_OK;
    if (n > UINT32_MAX / 2)
        return LMX_ENOMEM;
    /* fast path: one Isolated regex split (optionally followed by a no-op ByteLevel) */
    int steps = tj->n_pre;
    if (steps && tj->pre[steps - 1].type == LMX_PRE_BYTELEVEL && !tj->pre[steps - 1].add_prefix_space &&
        !tj->pre[steps - 1].use_regex)
        steps--;
    if (steps == 0)
        return bpe_word(e, text, n, out);
    if (steps == 1 && tj->pre[0].type == LMX_PRE_SPLIT_RE && tj->pre[0].behavior == LMX_SPLIT_ISOLATED &&
        !tj->pre[0].invert) {
        int llama3 = tj->pre[0].re == LMX_RE_LLAMA3, dg = tj->pre[0].re_digits;
        /* Pieces are found PIECES_AHEAD ahead of their BPE and the hot-cache set of each is
         * prefetched then (the cache is megabytes: a lookup is a memory access otherwise). */
        size_t ends[PIECES_AHEAD];
        uint64_t hs[PIECES_AHEAD];
        size_t scan = 0, found = 0;
        for (; found < PIECES_AHEAD && scan < n; found++)
            scan = piece_ahead(e, text, scan, n, llama3, dg, &ends[found], &hs[found]);
        for (size_t i = 0, done = 0; done < found; done++) {
            if (done + PIECES_AHEAD / 2 < found) {
                size_t pk = (done + PIECES_AHEAD / 2) % PIECES_AHEAD;
                size_t ps = ends[(pk + PIECES_AHEAD - 1) % PIECES_AHEAD]; /* the piece before ends there */
                if (ends[pk] - ps <= LMX_TOK_HOT_KEY)
                    piece_peek(e, text + ps, ends[pk] - ps, hs[pk]);
            }
            size_t k = done % PIECES_AHEAD, j = ends[k];
            uint64_t h = hs[k];
            int rc = j - i <= LMX_TOK_HOT_KEY ? bpe_hot_h(e, text + i, j - i, h, out)
                                              : bpe_word(e, text + i, j - i, out);
            if (rc)
                return rc;
            i = j;
            if (scan < n) {
                scan = piece_ahead(e, text, scan, n, llama3, dg, &ends[k], &hs[k]);
                found++;
            }
        }
        return LMX_OK;
    }

    /* general path: spans over a buffer, one step at a time */
    const uint8_t *buf = text;
    int sw = 0, pw = -1; /* pbuf holding buf, -1 = the caller's text */
    size_t ns = 1;
    if (grow((void **)&e->spans[0], &e->span_cap[0], 1, sizeof(lmx_tok_span)))
        return LMX_ENOMEM;
    e->spans[0][0] = (lmx_tok_span){0, (uint32_t)n};
    for (int k = 0; k < steps; k++) {
        const lmx_tok_pre *p = &tj->pre[k];
        lmx_tok_span *in = e->spans[sw];
        size_t on = 0;
        int ow = sw ^ 1;
        if (p->type == LMX_PRE_SPLIT_RE || p->type == LMX_PRE_SPLIT_STR ||
            (p->type == LMX_PRE_BYTELEVEL && !p->add_prefix_space)) {
            /* text unchanged: only the spans move */
            int behavior = p->type == LMX_PRE_BYTELEVEL ? LMX_SPLIT_ISOLATED : p->behavior;
            int invert = p->type == LMX_PRE_BYTELEVEL ? 0 : p->invert;
            if (p->type == LMX_PRE_BYTELEVEL && !p->use_regex)
                continue;
            for (size_t si = 0; si < ns; si++) {
                size_t s0 = in[si].start, s1 = s0 + in[si].len;
                size_t np = 0;
                for (size_t i = s0; i < s1;) {
                    size_t ms, me;
                    if (p->type == LMX_PRE_SPLIT_STR) {
                        const uint8_t *f = NULL;
                        for (size_t q = i; q + p->slen <= s1; q++)
                            if (buf[q] == (uint8_t)p->str[0] && memcmp(buf + q, p->str, p->slen) == 0) {
                                f = buf + q;
                                break;
                            }
                        if (!f) {
                            ms = me = s1;
                        } else {
                            ms = (size_t)(f - buf);
                            me = ms + p->slen;
                        }
                    } else {
                        ms = i;
                        me = (p->type == LMX_PRE_BYTELEVEL || p->re == LMX_RE_GPT2)
                                 ? re_gpt2(buf + s0, i - s0, s1 - s0) + s0
                                 : re_llama3(buf + s0, i - s0, s1 - s0, p->re_digits) + s0;
                    }
                    if (grow(&e->pieces, &e->pieces_cap, np + 2, sizeof(piece)))
                        return LMX_ENOMEM;
                    piece *pc = e->pieces;
                    if (ms > i)
                        pc[np++] = (piece){(uint32_t)i, (uint32_t)ms, invert};
                    if (me > ms)
                        pc[np++] = (piece){(uint32_t)ms, (uint32_t)me, !invert};
                    i = me;
                }
                if (np && apply_behavior(behavior, e->pieces, np, &e->spans[ow],
                                         &on, &e->span_cap[ow]))
                    return LMX_ENOMEM;
            }
        } else {
            /* ByteLevel with add_prefix_space, or Metaspace: rewrite the text */
            pw = pw == 0 ? 1 : 0;
            lmx_buf *ob = &e->pbuf[pw];
            ob->len = 0;
            size_t worst = 0;
            for (size_t si = 0; si < ns; si++)
                worst += (size_t)in[si].len * (p->type == LMX_PRE_METASPACE ? p->slen : 1) + 4;
            if (lmx__buf_reserve(ob, worst) ||
                grow((void **)&e->spans[ow], &e->span_cap[ow], ns, sizeof(lmx_tok_span)))
                return LMX_ENOMEM;
            for (size_t si = 0; si < ns; si++) {
                const uint8_t *s = buf + in[si].start;
                size_t sl = in[si].len;
                size_t st = ob->len;
                if (p->type == LMX_PRE_BYTELEVEL) {
                    if (!sl || s[0] != ' ')
                        ob->data[ob->len++] = ' ';
                    memcpy(ob->data + ob->len, s, sl);
                    ob->len += sl;
                } else {
                    int starts = sl && (s[0] == ' ' || (sl >= p->slen && memcmp(s, p->str, p->slen) == 0));
                    int pre = p->prepend_scheme == LMX_PREPEND_ALWAYS ||
                              (p->prepend_scheme == LMX_PREPEND_FIRST && first && in[si].start == 0);
                    if (pre && !starts) {
                        memcpy(ob->data + ob->len, p->str, p->slen);
                        ob->len += p->slen;
                    }
                    for (size_t i = 0; i < sl; i++) {
                        if (s[i] == ' ') {
                            memcpy(ob->data + ob->len, p->str, p->slen);
                            ob->len += p->slen;
                        } else {
                            ob->data[ob->len++] = s[i];
                        }
                    }
                }
                if (ob->len > st)
                    e->spans[ow][on++] = (lmx_tok_span){(uint32_t)st, (uint32_t)(ob->len - st)};
            }
            buf = ob->data;
            int more = (p->type == LMX_PRE_BYTELEVEL && p->use_regex) ||
                       (p->type == LMX_PRE_METASPACE && p->split);
            if (more) {
                /* second half of the step: split the rewritten spans */
                sw = ow;
                ns = on;
                in = e->spans[sw];
                ow = sw ^ 1;
                on = 0;
                for (size_t si = 0; si < ns; si++) {
                    size_t s0 = in[si].start, s1 = s0 + in[si].len;
                    size_t np = 0;
                    for (size_t i = s0; i < s1;) {
                        size_t ms = i, me;
                        if (p->type == LMX_PRE_BYTELEVEL) {
                            me = re_gpt2(buf + s0, i - s0, s1 - s0) + s0;
                        } else {
                            while (ms + p->slen <= s1 && memcmp(buf + ms, p->str, p->slen) != 0)
                                ms++;
                            if (ms + p->slen > s1)
                                ms = me = s1;
                            else
                                me = ms + p->slen;
                        }
                        if (grow(&e->pieces, &e->pieces_cap, np + 2, sizeof(piece)))
                            return LMX_ENOMEM;
                        piece *pc = e->pieces;
                        if (ms > i)
                            pc[np++] = (piece){(uint32_t)i, (uint32_t)ms, 0};
                        if (me > ms)
                            pc[np++] = (piece){(uint32_t)ms, (uint32_t)me, 1};
                        i = me;
                    }
                    int beh = p->type == LMX_PRE_BYTELEVEL ? LMX_SPLIT_ISOLATED : LMX_SPLIT_MERGED_NEXT;
                    if (np && apply_behavior(beh, e->pieces, np, &e->spans[ow], &on,
                                             &e->span_cap[ow]))
                        return LMX_ENOMEM;
                }
            }
        }
        sw = ow;
        ns = on;
    }
    for (size_t si = 0; si < ns; si++) {
        int rc = bpe_word(e, buf + e->spans[sw][si].start, e->spans[sw][si].len, out);
        if (rc)
            return rc;
    }
    return LMX_OK;
}

/* ---- added tokens -------------------------------------------------------------------------- */

static inline int is_word_char(uint32_t cp)
{
    return cp == '_' || (cls_cp(cp) & (LMX_UNI_L | LMX_UNI_N));
}

/* Leftmost-longest match of a trie token at or after *pos; returns token index or -1. */
static int32_t trie_find(const lmx_tok_trie *t, const uint8_t *s, size_t n, size_t from,
                         size_t *ms, size_t *me)
{
    for (size_t i = from; i < n; i++) {
        if (!t->first[s[i]])
            continue;
        uint32_t cur = 0;
        int32_t best = -1;
        size_t bend = 0;
        for (size_t j = i; j < n; j++) {
            uint32_t c = t->nodes[cur].first_child;
            while (c && t->nodes[c].byte != s[j])
                c = t->nodes[c].next_sibling;
            if (!c)
                break;
            cur = c;
            if (t->nodes[cur].token >= 0) {
                best = t->nodes[cur].token;
                bend = j + 1;
            }
        }
        if (best >= 0) {
            *ms = i;
            *me = bend;
            return best;
        }
    }
    return -1;
}

/* HF AddedVocabulary::find_matches + split: calls back for gaps, pushes ids for matches. */
typedef int (*gap_fn)(lmx_tokjson_enc *e, const uint8_t *s, size_t n, size_t orig_start,
                      lmx_ids *out);

static int split_added(lmx_tokjson_enc *e, const lmx_tok_trie *t, const uint8_t *s, size_t n,
                       size_t orig_start, gap_fn gap, lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    size_t start_offset = 0, from = 0, ms, me;
    int32_t k;
    while ((k = trie_find(t, s, n, from, &ms, &me)) >= 0) {
        from = me;
        const lmx_tok_added *a = &tj->added[k];
        size_t start = ms, stop = me;
        if (a->single_word) {
            uint32_t cp;
            int before = 0, after = 0;
            if (start > 0) {
                size_t q = start - 1;
                while (q > 0 && (s[q] & 0xC0) == 0x80)
                    q--;
                lmx__utf8_dec(s + q, n - q, &cp);
                before = is_word_char(cp);
            }
            if (stop < n) {
                lmx__utf8_dec(s + stop, n - stop, &cp);
                after = is_word_char(cp);
            }
            if (before || after)
                continue;
        }
        if (a->lstrip) {
            size_t q = start;
            while (q > 0) {
                size_t r = q - 1;
                while (r > 0 && (s[r] & 0xC0) == 0x80)
                    r--;
                uint32_t cp;
                lmx__utf8_dec(s + r, n - r, &cp);
                if (!(cls_cp(cp) & LMX_UNI_WS))
                    break;
                q = r;
            }
            start = q > start_offset ? q : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                uint32_t cp;
                int l = lmx__utf8_dec(s + stop, n - stop, &cp);
                if (!(cls_cp(cp) & LMX_UNI_WS))
                    break;
                stop += (size_t)l;
            }
            from = stop;
        }
        if (start_offset < start) {
            int rc = gap(e, s + start_offset, start - start_offset, orig_start + start_offset, out);
            if (rc)
                return rc;
        }
        if (lmx__ids_push(out, a->id) != LMX_OK)
            return LMX_ENOMEM;
        start_offset = stop;
    }
    if (start_offset < n || n == 0)
        return gap(e, s + start_offset, n - start_offset, orig_start + start_offset, out);
    return LMX_OK;
}

static int gap_normalized(lmx_tokjson_enc *e, const uint8_t *s, size_t n, size_t orig_start,
                          lmx_ids *out)
{
    return pretok_and_bpe(e, s, n, orig_start == 0, out);
}

static int gap_raw(lmx_tokjson_enc *e, const uint8_t *s, size_t n, size_t orig_start,
                   lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    const uint8_t *ns = s;
    size_t nn = n;
    if (tj->n_norm &&
        normalize(tj, s, n, e->nbuf, &e->u32, &e->u32_cap, &ns, &nn) != LMX_OK)
        return LMX_ENOMEM;
    if (e->match_added && tj->trie_norm.n > 1)
        return split_added(e, &tj->trie_norm, ns, nn, orig_start, gap_normalized, out);
    return pretok_and_bpe(e, ns, nn, orig_start == 0, out);
}

int lmx__tokjson_encode(lmx_tokjson_enc *e, const uint8_t *text, size_t len, lmx_ids *ids,
                        lmx_error *err)
{
    const lmx_tokjson *tj = e->tj;
    if (!len)
        return LMX_OK;
    size_t v = lmx__utf8_valid_prefix(text, len);
    if (v < len) {
        /* invalid UTF-8: decode lossily, as Rust's String::from_utf8_lossy would */
        e->valid.len = 0;
        if (lmx__utf8_lossy(text, len, &e->valid) != LMX_OK)
            return lmx__err(err, LMX_ENOMEM, "encode: out of memory (%zu bytes)", len);
        text = e->valid.data;
        len = e->valid.len;
    }
    int rc;
    if (e->match_added && tj->trie_raw.n > 1)
        rc = split_added(e, &tj->trie_raw, text, len, 0, gap_raw, ids);
    else
        rc = gap_raw(e, text, len, 0, ids);
    trim_scratch(e);
    if (rc)
        return lmx__err(err, rc, "encode: %s (document of %zu bytes)",
                        rc == LMX_ENOMEM ? "out of memory" : "internal error", len);
    return LMX_OK;
}

/* ---- decode -------------------------------------------------------------------------------- */

/* Token strings are kept as a list of (off, len) into one buffer, transformed step by step like
 * HF's Decoder::decode_chain. */
typedef struct strlist {
    lmx_buf data;
    size_t *off, *len;
    size_t n, cap;
} strlist;

static int sl_push(strlist *l, const void *s, size_t n)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        size_t *no = realloc(l->off, nc * sizeof *no);
        if (!no)
            return LMX_ENOMEM;
        l->off = no;
        size_t *nl = realloc(l->len, nc * sizeof *nl);
        if (!nl)
            return LMX_ENOMEM;
        l->len = nl;
        l->cap = nc;
    }
    l->off[l->n] = l->data.len;
    l->len[l->n] = n;
    l->n++;
    return n ? lmx__buf_append(&l->data, s, n) : LMX_OK;
}

static void sl_free(strlist *l)
{
    lmx__buf_free(&l->data);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}

/* SentencePiece byte pieces are "<0xAB>" with upper-case hex digits only. */
static int hexval(uint8_t c)
{
    return c >= 'a' && c <= 'f' ? -1 : lmx__hexval(c);
}

static int dec_step(const lmx_tok_dec *d, strlist *in, strlist *out)
{
    const uint8_t *base = in->data.data;
    switch (d->type) {
    case LMX_DEC_BYTELEVEL: {
        /* all tokens -> bytes (a token with a char outside the map stays as is), then one
         * lossy UTF-8 string */
        int32_t inv[0x144];
        for (int i = 0; i < 0x144; i++) inv[i] = -1;
        for (int b = 0; b < 256; b++) inv[lmx__bytelevel_char((uint8_t)b)] = b;
        lmx_buf raw = {0};
        int rc = LMX_OK;
        for (size_t i = 0; i < in->n && !rc; i++) {
            const uint8_t *s = base + in->off[i];
            size_t n = in->len[i], start = raw.len;
            int ok = 1;
            for (size_t j = 0; j < n && ok && !rc;) {
                uint32_t cp;
                size_t vp = lmx__utf8_valid_prefix(s + j, n - j);
                if (!vp) { ok = 0; break; }
                j += (size_t)lmx__utf8_dec(s + j, n - j, &cp);
                if (cp >= 0x144 || inv[cp] < 0) ok = 0;
                else { uint8_t b = (uint8_t)inv[cp]; rc = lmx__buf_append(&raw, &b, 1); }
            }
            if (!ok && !rc) {
                raw.len = start;
                rc = lmx__buf_append(&raw, s, n);
            }
        }
        lmx_buf fixed = {0};
        if (!rc) rc = lmx__utf8_lossy(raw.data ? raw.data : (const uint8_t *)"", raw.len, &fixed);
        if (!rc) rc = sl_push(out, fixed.data, fixed.len);
        lmx__buf_free(&raw);
        lmx__buf_free(&fixed);
        return rc ? LMX_ENOMEM : LMX_OK;
    }
    case LMX_DEC_BYTEFALLBACK: {
        lmx_buf pend = {0};
        size_t npend = 0;
        int rc = LMX_OK;
        for (size_t i = 0; i <= in->n && !rc; i++) {
            const uint8_t *s = i < in->n ? base + in->off[i] : NULL;
            size_t n = i < in->n ? in->len[i] : 0;
            if (s && n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
                hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
                uint8_t b = (uint8_t)(hexval(s[3]) * 16 + hexval(s[4]));
                rc = lmx__buf_append(&pend, &b, 1);
                npend++;
                continue;
            }
            if (npend) {
                if (lmx__utf8_valid_prefix(pend.data, pend.len) == pend.len) {
                    rc = sl_push(out, pend.data, pend.len);
                } else {
                    for (size_t k = 0; k < npend && !rc; k++)
                        rc = sl_push(out, "\xEF\xBF\xBD", 3);
                }
                pend.len = 0;
                npend = 0;
            }
            if (s && !rc)
                rc = sl_push(out, s, n);
        }
        lmx__buf_free(&pend);
        return rc ? LMX_ENOMEM : LMX_OK;
    }
    case LMX_DEC_FUSE: {
        lmx_buf all = {0};
        int rc = LMX_OK;
        for (size_t i = 0; i < in->n && !rc; i++)
            rc = in->len[i] ? lmx__buf_append(&all, base + in->off[i], in->len[i]) : LMX_OK;
        if (!rc) rc = sl_push(out, all.data, all.len);
        lmx__buf_free(&all);
        return rc ? LMX_ENOMEM : LMX_OK;
    }
    case LMX_DEC_REPLACE:
    case LMX_DEC_METASPACE: {
        const char *pat = d->a, *rep = d->type == LMX_DEC_REPLACE ? d->b : " ";
        size_t pl = d->alen, rl = d->type == LMX_DEC_REPLACE ? d->blen : 1;
        lmx_buf t = {0};
        int rc = LMX_OK;
        for (size_t i = 0; i < in->n && !rc; i++) {
            const uint8_t *s = base + in->off[i];
            size_t n = in->len[i];
            t.len = 0;
            for (size_t j = 0; j < n && !rc;) {
                if (j + pl <= n && memcmp(s + j, pat, pl) == 0) {
                    rc = lmx__buf_append(&t, rep, rl);
                    j += pl;
                } else {
                    rc = lmx__buf_append(&t, s + j, 1);
                    j++;
                }
            }
            const uint8_t *r = t.data;
            size_t rn = t.len;
            if (d->type == LMX_DEC_METASPACE && i == 0 && d->prepend_scheme != LMX_PREPEND_NEVER &&
                rn && r[0] == ' ') {
                r++;
                rn--;
            }
            if (!rc) rc = sl_push(out, r, rn);
        }
        lmx__buf_free(&t);
        return rc ? LMX_ENOMEM : LMX_OK;
    }
    case LMX_DEC_STRIP: {
        int rc = LMX_OK;
        for (size_t i = 0; i < in->n && !rc; i++) {
            const uint8_t *s = base + in->off[i];
            size_t n = in->len[i];
            for (int k = 0; k < d->start && n >= d->alen && memcmp(s, d->a, d->alen) == 0; k++) {
                s += d->alen;
                n -= d->alen;
            }
            for (int k = 0; k < d->stop && n >= d->alen && memcmp(s + n - d->alen, d->a, d->alen) == 0; k++)
                n -= d->alen;
            rc = sl_push(out, s, n);
        }
        return rc ? LMX_ENOMEM : LMX_OK;
    }
    }
    return LMX_EINTERNAL;
}

int lmx__tokjson_decode(const lmx_tokjson *tj, const uint32_t *ids, size_t n, lmx_buf *out,
                        lmx_error *err)
{
    strlist a = {0}, b = {0};
    int rc = LMX_OK;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= tj->id_limit || tj->id_off[ids[i]] == UINT32_MAX) {
            sl_free(&a);
            return lmx__err(err, LMX_EINVAL, "decode: id %u is not in the vocabulary", ids[i]);
        }
        if (sl_push(&a, tj->id_arena.data + tj->id_off[ids[i]], tj->id_len[ids[i]])) {
            rc = LMX_ENOMEM;
            break;
        }
    }
    for (int k = 0; k < tj->n_dec && !rc; k++) {
        b.n = 0;
        b.data.len = 0;
        rc = dec_step(&tj->dec[k], &a, &b);
        strlist t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < a.n && !rc; i++)
        if (a.len[i] && lmx__buf_append(out, a.data.data + a.off[i], a.len[i]))
            rc = LMX_ENOMEM;
    sl_free(&a);
    sl_free(&b);
    if (rc)
        return lmx__err(err, rc, "decode: out of memory");
    return LMX_OK;
}
