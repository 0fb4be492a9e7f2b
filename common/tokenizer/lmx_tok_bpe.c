/* tokenizer.json encoding, the BPE model: HF's merge loop over one pre-token, behind the big word
 * cache. The hot cache (lmx_tok_hot.h) and the cutting of long words (lmx_tok_word.c) sit in
 * front of it. */
#include "lmx_tok_internal.h"

#include <stdlib.h>
#include <string.h>

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

/* Only the id: the links are set once the word is complete (link_syms), and only when the
 * heap merge needs them. */
static inline void sym_add(lmx_tok_sym *s, size_t *ns, uint32_t id)
{
    s[(*ns)++].id = id;
}

static void link_syms(lmx_tok_sym *s, size_t ns)
{
    for (size_t i = 0; i < ns; i++) {
        s[i].prev = (int32_t)i - 1;
        s[i].next = i + 1 < ns ? (int32_t)(i + 1) : -1;
        s[i].alive = 1;
    }
}

/* Words of up to SMALL_SYMS symbols (nearly every pre-token that misses the hot cache): the same
 * result as merge_all with flat arrays instead of a heap and a linked list. Each step merges the
 * leftmost pair of lowest rank, which is what the heap pops: HF orders merges by (rank,
 * position), and a stale heap entry never passes its check (the pair at a position only grows,
 * so it cannot again give the same new id). Returns the new symbol count. */
#define SMALL_SYMS 64

static inline void pair_rank(const lmx_tok_mergemap *mm, const uint32_t *id, size_t i,
                             uint32_t *rank, uint32_t *nid)
{
    const lmx_tok_merge *m = lmx__tok_merge_get(mm, id[i], id[i + 1]);
    rank[i] = m ? m->rank : UINT32_MAX;
    nid[i] = m ? m->new_id : 0;
}

static size_t merge_small(const lmx_tok_mergemap *mm, uint32_t *id, size_t ns)
{
    uint32_t rank[SMALL_SYMS], nid[SMALL_SYMS];
    /* no prefetch pass: these lookups are independent loads the CPU overlaps anyway, and the
     * pre-tokenizer loop already prefetched the first pairs of a hot-cache miss (piece_peek) */
    for (size_t i = 0; i + 1 < ns; i++)
        pair_rank(mm, id, i, rank, nid);
    while (ns > 1) {
        size_t best = 0;
        uint32_t br = rank[0];
        for (size_t i = 1; i + 1 < ns; i++)
            if (rank[i] < br) {
                br = rank[i];
                best = i;
            }
        if (br == UINT32_MAX)
            break;
        uint32_t x = nid[best];
        id[best] = x;
        /* the neighbours' pairs are looked up next: start both loads first */
        if (best > 0)
            lmx__tok_merge_prefetch(mm, id[best - 1], x);
        if (best + 2 < ns)
            lmx__tok_merge_prefetch(mm, x, id[best + 2]);
        /* a loop, not memmove: a few elements, where a libc call per merge would cost more */
        for (size_t j = best + 1; j + 1 < ns; j++)
            id[j] = id[j + 1];
        for (size_t j = best + 1; j + 2 < ns; j++) {
            rank[j] = rank[j + 1];
            nid[j] = nid[j + 1];
        }
        ns--;
        if (best > 0)
            pair_rank(mm, id, best - 1, rank, nid);
        if (best + 1 < ns)
            pair_rank(mm, id, best, rank, nid);
    }
    return ns;
}

/* Builds the initial symbols of w (HF BPE::merge_word) and merges them; appends ids. */
static int bpe_merge_word(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    size_t max_syms = tj->byte_fallback ? n * (1 + tj->cont_prefix_len + tj->eow_suffix_len) : n;
    if (max_syms > INT32_MAX - 8)
        return LMX_ENOMEM;
    if (lmx__tok_grow((void **)&e->syms, &e->sym_cap, max_syms + 1, sizeof *e->syms) ||
        lmx__tok_grow((void **)&e->heap, &e->heap_cap, 3 * max_syms + 8, sizeof *e->heap))
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
                if (i > 0 && tj->cont_prefix_len) { /* either affix may be absent (NULL) */
                    memcpy(tmp, tj->cont_prefix, tj->cont_prefix_len);
                    k = tj->cont_prefix_len;
                }
                memcpy(tmp + k, w + i, cl);
                k += cl;
                if (i + cl == n && tj->eow_suffix_len) {
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
    if (ns <= SMALL_SYMS) {
        uint32_t id[SMALL_SYMS];
        for (size_t i = 0; i < ns; i++)
            id[i] = s[i].id;
        ns = merge_small(&tj->merges, id, ns);
        if (lmx__ids_reserve(out, ns) != LMX_OK)
            return LMX_ENOMEM;
        if (ns) /* out->v may still be NULL */
            memcpy(out->v + out->n, id, ns * sizeof *id);
        out->n += ns;
        return LMX_OK;
    }
    link_syms(s, ns);
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

int lmx__tok_bpe_cached(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out)
{
    if (n > LMX_TOK_CACHE_MAX_KEY)
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
    if (nids > LMX_TOK_CACHE_MAX_IDS)
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
int lmx__tok_bpe_short(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    if (tj->uni) /* the Unigram model, behind the same word caches */
        return lmx__tok_unigram_word(e, w, n, out);
    if (tj->ignore_merges) {
        uint32_t id = lmx__tok_strmap_get(&tj->vocab, w, n);
        if (id != LMX_TOKEN_NONE)
            return lmx__ids_push(out, id);
    }
    /* words the hot cache can hold go straight to the merge: it is the bigger cache for them,
     * so the big one would rarely hit and only cost a lookup */
    return n <= LMX_TOK_HOT_KEY ? bpe_merge_word(e, w, n, out) : lmx__tok_bpe_cached(e, w, n, out);
}
