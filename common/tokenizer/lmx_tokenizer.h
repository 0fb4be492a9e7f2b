/* Tokenizers: the built-in `bytes` tokenizer and HuggingFace tokenizer.json (BPE family).
 *
 * A tokenizer is immutable once opened and may be shared by any number of threads. Encoding
 * needs scratch memory, held by an lmx_encoder: one encoder per thread, reused across documents
 * (no allocation per document in steady state). */
#ifndef LMX_TOKENIZER_H
#define LMX_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "lmx_error.h"
#include "lmx_util.h"
#include "lmx_utf8.h"

typedef struct lmx_tokenizer lmx_tokenizer;
typedef struct lmx_encoder lmx_encoder;

#define LMX_TOKEN_NONE UINT32_MAX

typedef struct lmx_tokenizer_options {
    /* How added tokens (e.g. "<s>", "<|begin_of_text|>") found inside document text are handled.
     * 0 (default): as plain text, so a document can never inject control tokens into the stream;
     * 1: matched and emitted as their ids, the way HF's encode() does. */
    int match_added_tokens;
} lmx_tokenizer_options;

/* Appended to the identity of a tokenizer.json opened with match_added_tokens. */
#define LMX_TOKENIZER_MATCH_ADDED_SUFFIX "+match-added-tokens"

/* Opens "bytes" (built-in: id = UTF-8 byte value, BOS 256, EOS 257) or a tokenizer.json path.
 * opts may be NULL (defaults). On success *out is owned by the caller (lmx__tokenizer_free).
 * Errors: LMX_EIO (unreadable file), LMX_EFORMAT (malformed JSON, with the JSON path),
 * LMX_EUNSUPPORTED (a component longmix does not implement, named), LMX_ENOMEM. */
int lmx__tokenizer_open(const char *spec, const lmx_tokenizer_options *opts, lmx_tokenizer **out,
                        lmx_error *err);
void lmx__tokenizer_free(lmx_tokenizer *tok);

/* Like lmx__tokenizer_open for tokenizer.json bytes already in memory (fuzzing, tests, embedded
 * tokenizers). config/config_len: tokenizer_config.json bytes for BOS/EOS discovery, may be
 * NULL. The buffers are only read during the call. Same errors as lmx__tokenizer_open. */
int lmx__tokenizer_open_buffer(const void *data, size_t len, const void *config,
                               size_t config_len, const lmx_tokenizer_options *opts,
                               lmx_tokenizer **out, lmx_error *err);

/* "bytes" or "tokenizer.json". */
const char *lmx__tokenizer_kind(const lmx_tokenizer *tok);
/* Identity recorded in an index: "bytes" or "blake2b-256:<hex of the tokenizer.json bytes>",
 * then "+match-added-tokens" and "+separators:..." when tokenizer_config.json changed them. */
const char *lmx__tokenizer_identity(const lmx_tokenizer *tok);
/* One more than the largest id the tokenizer can produce (bytes: 258). */
uint32_t lmx__tokenizer_vocab_size(const lmx_tokenizer *tok);
/* Ids of the model's BOS / document-end EOS tokens, LMX_TOKEN_NONE when it has none (never a
 * chat turn end; proto/TOKENIZER.md "Document separators"). */
uint32_t lmx__tokenizer_bos(const lmx_tokenizer *tok);
uint32_t lmx__tokenizer_eos(const lmx_tokenizer *tok);
/* The model's convention: 1 when a document gets BOS before it / EOS after it (the plan
 * defaults). bytes: BOS yes, EOS no. */
int lmx__tokenizer_default_bos(const lmx_tokenizer *tok);
int lmx__tokenizer_default_eos(const lmx_tokenizer *tok);
/* The string of token id as written in tokenizer.json (borrowed, *len bytes, not terminated);
 * NULL for bytes or an id without one. */
const char *lmx__tokenizer_token_str(const lmx_tokenizer *tok, uint32_t id, size_t *len);
/* Id of the token whose string (as written in tokenizer.json; added tokens first) is s[0..n),
 * LMX_TOKEN_NONE if none. A linear scan: for setup code, not hot paths. */
uint32_t lmx__tokenizer_token_id(const lmx_tokenizer *tok, const char *s, size_t n);

/* Per-thread encoding state. Owned by the caller; free accepts NULL. An encoder keeps word
 * caches (~13 MB) and scratch that grows with the largest document (about 40 bytes per input byte
 * for a document that is one BPE word, released after documents above 64 MB of scratch). */
int lmx__encoder_create(const lmx_tokenizer *tok, lmx_encoder **out, lmx_error *err);
void lmx__encoder_free(lmx_encoder *enc);

/* Appends the ids of text[0..len) to ids (no special tokens added). Text is UTF-8; what happens
 * to invalid UTF-8 is documented per tokenizer kind in proto/TOKENIZER.md.
 * Errors: LMX_ENOMEM, LMX_EINVAL. On error ids may hold a partial result. */
int lmx__encode(lmx_encoder *enc, const char *text, size_t len, lmx_ids *ids, lmx_error *err);

/* Appends the decoded UTF-8 text of ids to out. Unknown ids are an LMX_EINVAL error. */
int lmx__decode(const lmx_tokenizer *tok, const uint32_t *ids, size_t n, lmx_buf *out,
                lmx_error *err);

/* Test hook (tests/fuzz/fuzz_pretok.c, unit tests): pre-tokenizes valid UTF-8 s[0..n) with fast
 * scanner `which` (0 LLaMA-3/cl100k, 1 Qwen2/3, 2 GPT-2, 3 o200k, 4 DeepSeek-V3, 5 \p{N}{1,3}, 6 DeepSeek's CJK) and with
 * Oniguruma running the same pattern; 7: DeepSeek-V3's three Splits in one pass against the
 * three patterns applied one after the other. 0: identical pieces; 1: they differ, *at is where;
 * LMX_EINVAL: bad which or invalid UTF-8. Implemented in lmx_tok_selftest.c. */
int lmx__tokenizer_pretok_diff(int which, const uint8_t *s, size_t n, size_t *at);

/* Test hooks of the SentencePiece parts (lmx_tok_selftest_sp.c; tests/fuzz/fuzz_charsmap.c, unit
 * tests). charsmap_apply: parses a raw precompiled charsmap blob[0..n) (as the Precompiled
 * normalizer does after base64) and, when it loads, appends the normalization of valid UTF-8
 * text[0..tn) to out; LMX_OK, or the load error (LMX_EFORMAT, message in err). grapheme_end: end
 * of the extended grapheme cluster starting at s[i] (i < n) of valid UTF-8 s[0..n). */
int lmx__tokenizer_charsmap_apply(const uint8_t *blob, size_t n, const uint8_t *text, size_t tn,
                                  lmx_buf *out, lmx_error *err);
size_t lmx__tokenizer_grapheme_end(const uint8_t *s, size_t i, size_t n);

#endif
