/* libFuzzer target: the Precompiled normalizer's charsmap parser and its application
 * (common/tokenizer/lmx_tok_precompiled.c, lmx_tok_grapheme.c), via
 * lmx__tokenizer_charsmap_apply. Input: u32 blob length (little endian) + the decoded charsmap
 * blob (a tokenizer.json carries it base64) + text (made valid UTF-8 the way the encoder does).
 * A blob that loads must normalize any text into valid UTF-8 without reading out of bounds.
 * Seeds: SentencePiece's nmt_nfkc charsmap (tests/fixtures/tokenizers/spm-unigram) and small
 * hand-built tries. */
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "lmx_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint32_t bl;
    memcpy(&bl, data, 4);
    if (bl > size - 4)
        bl = (uint32_t)(size - 4);
    const uint8_t *blob = data + 4, *raw = data + 4 + bl;
    size_t raw_len = size - 4 - bl;
    lmx_buf text = {0}, out = {0};
    lmx_error err = {0};
    FUZZ_CHECK(lmx__utf8_lossy(raw, raw_len, &text) == LMX_OK);
    int rc = lmx__tokenizer_charsmap_apply(blob, bl, text.data ? text.data : (const uint8_t *)"",
                                           text.len, &out, &err);
    FUZZ_CHECK(rc == LMX_OK || rc == LMX_EFORMAT);
    if (rc == LMX_OK)
        FUZZ_CHECK(lmx__utf8_valid_prefix(out.data, out.len) == out.len);
    lmx__buf_free(&text);
    lmx__buf_free(&out);
    return 0;
}
