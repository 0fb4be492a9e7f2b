/* libFuzzer target: differential test of the hand-written pre-tokenizer scanners
 * (common/tokenizer/lmx_tok_pretok.c) against Oniguruma running the same pattern
 * (lmx_tok_regex.c, HF's engine and semantics), via lmx__tokenizer_pretok_diff.
 * Input: a selector byte (which scanner, modulo their number) + text (made valid UTF-8 the way
 * the encoder does). Any difference in the pieces is a crash. */
#include <stdint.h>
#include <stdio.h>

#include "fuzz_util.h"
#include "lmx_tokenizer.h"

#define N_FAST 8 /* keep equal to LMX_TOK_N_FAST */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int which = data[0] % N_FAST;
    lmx_buf text = {0};
    FUZZ_CHECK(lmx__utf8_lossy(data + 1, size - 1, &text) == LMX_OK);
    size_t at = 0;
    int rc = lmx__tokenizer_pretok_diff(which, text.data ? text.data : (const uint8_t *)"", text.len, &at);
    if (rc != 0)
        fprintf(stderr, "scanner %d differs from Oniguruma at byte %zu (rc %d)\n", which, at, rc);
    FUZZ_CHECK(rc == 0);
    lmx__buf_free(&text);
    return 0;
}
