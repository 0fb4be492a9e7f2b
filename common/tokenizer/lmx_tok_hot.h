/* The hot word cache: short pre-tokens -> ids, two ways per set, most recently used first. Inline
 * because the pre-tokenizer loop (lmx_tok_pretok.c) and the word splitter (lmx_tok_word.c) call
 * it for every pre-token; a miss goes to the BPE model (lmx_tok_bpe.c). Kept out of
 * lmx_tok_internal.h so the model's file does not include what calls it. */
#ifndef LMX_TOK_HOT_H
#define LMX_TOK_HOT_H

#include "lmx_tok_internal.h"

#include <string.h>

/* a[0..n) == b[0..n) for n <= 32, with a few overlapping word loads instead of a memcmp call
 * (the hot cache compares a key on every hit). */
static inline int lmx__tok_short_eq(const uint8_t *a, const uint8_t *b, size_t n)
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

static inline lmx_tok_hot *lmx__tok_hot_set(lmx_tokjson_enc *e, uint64_t h)
{
    return &e->hot[(h & (LMX_TOK_HOT_SLOTS / 2 - 1)) * 2];
}

/* bpe_short behind the hot cache; h = lmx__tok_hash(w, n), n <= LMX_TOK_HOT_KEY. */
static inline int lmx__tok_bpe_hot_h(lmx_tokjson_enc *e, const uint8_t *w, size_t n, uint64_t h,
                            lmx_ids *out)
{
    lmx_tok_hot *set = lmx__tok_hot_set(e, h);
    uint32_t h32 = (uint32_t)(h >> 32);
    for (int way = 0; way < 2; way++) {
        lmx_tok_hot *sl = &set[way];
        if (sl->hash32 == h32 && sl->klen == n && sl->nids && lmx__tok_short_eq(sl->key, w, n)) {
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
    int rc = lmx__tok_bpe_short(e, w, n, out);
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

static inline int lmx__tok_bpe_hot(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out)
{
    if (n > LMX_TOK_HOT_KEY)
        return lmx__tok_bpe_short(e, w, n, out);
    return lmx__tok_bpe_hot_h(e, w, n, lmx__tok_hash(w, n), out);
}

#endif
