/* libFuzzer target: the tokenizer.json loader (common/tokenizer/lmx_tok_load*.c and
 * lmx_tok_vocab_scan.c, on common/json/lmx_json_scan.c, via
 * lmx__tokenizer_open_buffer) on arbitrary bytes.
 * Input: tokenizer.json bytes, optionally followed by a NUL byte and tokenizer_config.json bytes
 * (BOS/EOS discovery). When a tokenizer opens, its tables are exercised: BOS/EOS and a few token
 * lookups, an encoder encodes a fixed sample and the input itself (capped), every id must be below
 * the vocab size, and the ids are decoded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "lmx_tokenizer.h"

static const char sample[] = "Hello world! The café's 12345 tokens,\n\n  indented\t<s> <|begin_of_text|> \xe2\x96\x81x "
                             "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 \xff\xfe bad utf8";

static void exercise(lmx_tokenizer *tok, const uint8_t *extra, size_t extra_len)
{
    uint32_t vocab = lmx__tokenizer_vocab_size(tok);
    uint32_t bos = lmx__tokenizer_bos(tok), eos = lmx__tokenizer_eos(tok);
    FUZZ_CHECK(bos == LMX_TOKEN_NONE || bos < vocab);
    FUZZ_CHECK(eos == LMX_TOKEN_NONE || eos < vocab);
    FUZZ_CHECK(strncmp(lmx__tokenizer_identity(tok), "blake2b-256:", 12) == 0);
    static const char *const probes[] = {"<s>", "</s>", "<unk>", "<|begin_of_text|>", "a", ""};
    for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) {
        uint32_t id = lmx__tokenizer_token_id(tok, probes[i], strlen(probes[i]));
        FUZZ_CHECK(id == LMX_TOKEN_NONE || id < vocab);
    }
    lmx_encoder *enc;
    lmx_error err = {0};
    if (lmx__encoder_create(tok, &enc, &err) != LMX_OK)
        return;
    const char *texts[2] = {sample, (const char *)extra};
    size_t lens[2] = {sizeof sample - 1, extra_len > 512 ? 512 : extra_len};
    for (int t = 0; t < 2; t++) {
        lmx_ids ids = {0};
        if (lmx__encode(enc, texts[t], lens[t], &ids, &err) == LMX_OK) {
            for (size_t i = 0; i < ids.n; i++)
                FUZZ_CHECK(ids.v[i] < vocab);
            lmx_buf out = {0};
            lmx__decode(tok, ids.v, ids.n, &out, &err);
            lmx__buf_free(&out);
        }
        lmx__ids_free(&ids);
    }
    /* Ids at and past the vocab boundary must be rejected or decoded, never read out of bounds. */
    uint32_t edge[4] = {0, vocab ? vocab - 1 : 0, vocab, UINT32_MAX};
    lmx_buf out = {0};
    lmx__decode(tok, edge, 4, &out, &err);
    lmx__buf_free(&out);
    lmx__encoder_free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    const uint8_t *cfg = nul ? nul + 1 : NULL;
    size_t cfg_len = nul ? size - json_len - 1 : 0;
    /* Exact-size copies so ASan catches reads past either buffer. */
    uint8_t *j = malloc(json_len ? json_len : 1), *c = cfg ? malloc(cfg_len ? cfg_len : 1) : NULL;
    if (!j || (cfg && !c)) {
        free(j);
        free(c);
        return 0;
    }
    memcpy(j, data, json_len);
    if (cfg)
        memcpy(c, cfg, cfg_len);
    for (int m = 0; m < 2; m++) {
        lmx_tokenizer_options o = {.match_added_tokens = m};
        lmx_tokenizer *tok = NULL;
        lmx_error err = {0};
        int rc = lmx__tokenizer_open_buffer(j, json_len, c, cfg_len, &o, &tok, &err);
        if (rc != LMX_OK) {
            FUZZ_CHECK(tok == NULL && err.code == rc && err.message[0]);
            break; /* the option does not change what loads */
        }
        exercise(tok, data, json_len);
        lmx__tokenizer_free(tok);
    }
    free(j);
    free(c);
    return 0;
}
