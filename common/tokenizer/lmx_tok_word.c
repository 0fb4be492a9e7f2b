/* tokenizer.json encoding: one pre-token through BPE (HF BPE::tokenize). Short words go through
 * the hot cache; a long word (LLaMA-2: a whole document) is first cut where no merge can cross. */
#include "lmx_tok_hot.h"

/* HF BPE::tokenize for one pre-token. */
int lmx__tok_bpe_word(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    if (!n)
        return LMX_OK;
    if (!(tj->seg_enabled || tj->cut_enabled) || n <= LMX_TOK_CACHE_MAX_KEY / 2)
        return lmx__tok_bpe_hot(e, w, n, out);
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
                  !(i >= 3 && w[i - 3] == sc[0] && w[i - 2] == sc[1] && x == sc[2]) &&
                  !(x < 0x80 && (tj->seg_block[x >> 6] >> (x & 63) & 1));
        if (!cut)
            continue;
        int rc = hot ? lmx__tok_bpe_hot(e, w + start, i - start, out)
                     : lmx__tok_bpe_cached(e, w + start, i - start, out);
        if (rc)
            return rc;
        start = i;
    }
    return hot ? lmx__tok_bpe_hot(e, w + start, n - start, out)
               : lmx__tok_bpe_cached(e, w + start, n - start, out);
}
