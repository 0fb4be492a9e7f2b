/* Test hooks of the SentencePiece parts: the precompiled charsmap parser + normalizer on a raw
 * blob (tests/fuzz/fuzz_charsmap.c) and the grapheme cluster walk (tests/unit). Nothing in the
 * library calls them. */
#include "lmx_tok_internal.h"

int lmx__tokenizer_charsmap_apply(const uint8_t *blob, size_t n, const uint8_t *text, size_t tn,
                                  lmx_buf *out, lmx_error *err)
{
    lmx_tok_charsmap *m = NULL;
    char msg[200];
    int rc = lmx__tok_charsmap_parse(blob, n, &m, msg, sizeof msg);
    if (rc != LMX_OK)
        return lmx__err(err, rc, "precompiled_charsmap: %s", msg);
    rc = lmx__tok_precompiled(m, text, tn, out);
    lmx__tok_charsmap_free(m);
    return rc;
}

size_t lmx__tokenizer_grapheme_end(const uint8_t *s, size_t i, size_t n)
{
    return lmx__grapheme_end(s, i, n);
}
