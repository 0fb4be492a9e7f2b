/* tokenizer.json encoding: added tokens -> normalizer -> pre-tokenizer -> BPE, mirroring
 * HuggingFace tokenizers' encode() (see proto/TOKENIZER.md), and the encoder's scratch. Hot path:
 * no JSON, no allocation once the scratch has grown to the largest document seen. */
#include "lmx_tok_internal.h"

#include <stdlib.h>
#include <string.h>

#define SCRATCH_KEEP (64u << 20) /* scratch above this is released after the document */

/* ---- scratch ------------------------------------------------------------------------------- */

int lmx__tokjson_enc_init(lmx_tokjson_enc *e, const lmx_tokjson *tj, int match_added)
{
    memset(e, 0, sizeof *e);
    e->tj = tj;
    e->match_added = match_added;
    e->cache = calloc(LMX_TOK_CACHE_SLOTS, sizeof *e->cache);
    e->cache_arena = lmx__tok_table_alloc(LMX_TOK_CACHE_ARENA, 0);
    /* 2 MB aligned, so a set (two 64-byte entries) is exactly one pair of cache lines */
    _Static_assert(LMX_TOK_HOT_SLOTS * sizeof(lmx_tok_hot) >= (2u << 20), "the hot cache must be 2 MB aligned");
    e->hot = lmx__tok_table_alloc(LMX_TOK_HOT_SLOTS * sizeof *e->hot, 1);
    e->region = lmx__tok_regex_region_new();
    if (!e->cache || !e->cache_arena || !e->hot || !e->region) {
        lmx__tokjson_enc_free(e);
        return LMX_ENOMEM;
    }
    e->cache_mask = LMX_TOK_CACHE_SLOTS - 1;
    e->cache_arena_cap = LMX_TOK_CACHE_ARENA;
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
    free(e->uni);
    free(e->cache);
    free(e->cache_arena);
    free(e->hot);
    lmx__tok_regex_region_free(e->region);
    memset(e, 0, sizeof *e);
}

static void trim_scratch(lmx_tokjson_enc *e)
{
    if (e->sym_cap * sizeof *e->syms > SCRATCH_KEEP) {
        free(e->syms);
        e->syms = NULL;
        e->sym_cap = 0;
    }
    if (e->uni_cap * sizeof *e->uni > SCRATCH_KEEP) {
        free(e->uni);
        e->uni = NULL;
        e->uni_cap = 0;
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

/* ---- added tokens -------------------------------------------------------------------------- */

static inline int is_word_char(uint32_t cp)
{
    return cp == '_' || (lmx__tok_cls_cp(cp) & (LMX_UNI_L | LMX_UNI_N));
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
                if (!(lmx__tok_cls_cp(cp) & LMX_UNI_WS))
                    break;
                q = r;
            }
            start = q > start_offset ? q : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                uint32_t cp;
                int l = lmx__utf8_dec(s + stop, n - stop, &cp);
                if (!(lmx__tok_cls_cp(cp) & LMX_UNI_WS))
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
    return lmx__tok_pretok_and_bpe(e, s, n, orig_start == 0, out);
}

static int gap_raw(lmx_tokjson_enc *e, const uint8_t *s, size_t n, size_t orig_start,
                   lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    const uint8_t *ns = s;
    size_t nn = n;
    if (tj->n_norm &&
        lmx__tok_normalize(tj, s, n, e->nbuf, &e->u32, &e->u32_cap, &ns, &nn) != LMX_OK)
        return LMX_ENOMEM;
    if (e->match_added && tj->trie_norm.n > 1)
        return split_added(e, &tj->trie_norm, ns, nn, orig_start, gap_normalized, out);
    return lmx__tok_pretok_and_bpe(e, ns, nn, orig_start == 0, out);
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
                        rc == LMX_ENOMEM ? "out of memory"
                        : rc == LMX_EUNSUPPORTED ? "a char is not in the Unigram vocabulary and "
                                                   "model.unk_id is null (HF fails the same way)"
                                                 : "internal error", len);
    return LMX_OK;
}
