/* tokenizer.json encoding, the Unigram model: HF's Unigram::encode_optimized (SentencePiece's
 * Viterbi over the piece lattice) and Unigram::tokenize (unknowns fused, then looked up, byte
 * fallback) for one pre-token. Ties keep the first path found (a later candidate must score
 * strictly higher), as HF. No allocation once the lattice scratch has grown. */
#include "lmx_tok_internal.h"

#include <stdlib.h>

static inline uint32_t child(const lmx_tok_unigram *u, uint32_t node, uint8_t b)
{
    uint32_t key = (node << 8 | b) + 1;
    uint64_t j = ((uint64_t)key * 0x9E3779B97F4A7C15ull >> 17) & u->edge_mask;
    for (;;) {
        const lmx_tok_uni_edge *ed = &u->edges[j];
        if (ed->key == key)
            return ed->child;
        if (!ed->key)
            return 0;
        j = (j + 1) & u->edge_mask;
    }
}

static inline void relax(lmx_tok_uninode *t, double cand, uint32_t start, uint32_t id)
{
    if (t->start == UINT32_MAX || cand > t->score) {
        t->score = cand;
        t->start = start;
        t->id = id;
    }
}

/* Pushes the ids of a fused run of unknowns s[0..n) in reverse order (the caller reverses the
 * whole pre-token): the run as a piece if it is one, else its bytes as <0xXX> when every byte
 * has one, else unk. */
static int push_unknown(const lmx_tokjson *tj, const uint8_t *s, size_t n, lmx_ids *out)
{
    uint32_t id = lmx__tok_strmap_get(&tj->vocab, s, n);
    if (id != LMX_TOKEN_NONE)
        return lmx__ids_push(out, id);
    if (tj->byte_fallback) {
        size_t k = 0;
        while (k < n && tj->byte_ids[s[k]] != LMX_TOKEN_NONE)
            k++;
        if (k == n) {
            if (lmx__ids_reserve(out, n) != LMX_OK)
                return LMX_ENOMEM;
            for (size_t i = n; i-- > 0;)
                out->v[out->n++] = tj->byte_ids[s[i]];
            return LMX_OK;
        }
    }
    if (tj->unk_id == LMX_TOKEN_NONE)
        return LMX_EUNSUPPORTED;
    return lmx__ids_push(out, tj->unk_id);
}

int lmx__tok_unigram_word(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    const lmx_tok_unigram *u = tj->uni;
    if (!n)
        return LMX_OK;
    if (n >= UINT32_MAX - 1)
        return LMX_ENOMEM;
    if (lmx__tok_grow((void **)&e->uni, &e->uni_cap, n + 1, sizeof *e->uni))
        return LMX_ENOMEM;
    lmx_tok_uninode *b = e->uni;
    b[0] = (lmx_tok_uninode){0.0, 0, 0};
    for (size_t k = 1; k <= n; k++)
        b[k] = (lmx_tok_uninode){0.0, UINT32_MAX, 0};
    for (size_t i = 0; i < n;) {
        double base = b[i].score;
        size_t mblen = lmx__utf8_len(w[i]);
        if (mblen > n - i)
            mblen = n - i;
        int single = 0;
        size_t k = i;
        uint32_t node = u->root[w[i]];
        while (node) {
            k++;
            uint32_t info = u->node_id[node], id = info & ~LMX_TOK_UNI_KIDS;
            if (id != LMX_TOK_UNI_NONE) {
                relax(&b[k], u->score[id] + base, (uint32_t)i, id);
                if (k - i == mblen)
                    single = 1;
            }
            if (k == n || !(info & LMX_TOK_UNI_KIDS))
                break;
            node = child(u, node, w[k]);
        }
        if (!single) {
            lmx_tok_uninode *t = &b[i + mblen];
            double cand = u->unk_score + base;
            if (t->start == UINT32_MAX || cand > t->score) {
                if (tj->unk_id == LMX_TOKEN_NONE)
                    return LMX_EUNSUPPORTED; /* HF: MissingUnkId */
                relax(t, cand, (uint32_t)i, tj->unk_id);
            }
        }
        i += mblen;
    }
    /* best path, backwards; runs of unk nodes are fused */
    size_t first = out->n, end = n, fuse_end = 0;
    int fusing = 0, rc;
    while (end > 0) {
        const lmx_tok_uninode *t = &b[end];
        if (t->id == tj->unk_id && tj->unk_id != LMX_TOKEN_NONE) {
            if (!fusing)
                fuse_end = end;
            fusing = 1;
        } else {
            if (fusing && (rc = push_unknown(tj, w + end, fuse_end - end, out)) != LMX_OK)
                return rc;
            fusing = 0;
            if (out->n < out->cap) /* no call per id while there is room */
                out->v[out->n++] = t->id;
            else if (lmx__ids_push(out, t->id) != LMX_OK)
                return LMX_ENOMEM;
        }
        end = t->start;
    }
    if (fusing && (rc = push_unknown(tj, w, fuse_end, out)) != LMX_OK)
        return rc;
    for (size_t i = first, j = out->n; i + 1 < j; i++, j--) {
        uint32_t x = out->v[i];
        out->v[i] = out->v[j - 1];
        out->v[j - 1] = x;
    }
    return LMX_OK;
}
