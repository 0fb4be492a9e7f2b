/* libFuzzer target: lmx__encode (common/tokenizer/lmx_tok_encode.c and the files it calls) on
 * arbitrary text with small fixed
 * tokenizer.json files built in code at start-up:
 *   0 llama3-style byte-level BPE: Split(LLaMA-3 regex, Isolated) + ByteLevel(use_regex=false)
 *   1 GPT-2-style byte-level BPE: ByteLevel(use_regex=true) pre-tokenizer
 *   2 SentencePiece-style BPE with byte_fallback: Prepend/Replace normalizers (LLaMA-2)
 *   3 SentencePiece-style BPE with byte_fallback and a Metaspace pre-tokenizer (Mistral/LLaMA-2
 *     newer exports)
 * each opened twice (added tokens as text / matched). Input byte 0 picks the tokenizer (bits 0-1)
 * and the option (bit 2); the rest is the document text.
 * Checked: encode succeeds, every id < vocab size, and decode(encode(x)) == x for valid UTF-8 x,
 * except where HF itself does not round-trip (SentencePiece kinds: a literal U+2581, a leading
 * space under Metaspace prepend_scheme=first, matched added tokens). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "lmx_tokenizer.h"

#define N_KINDS 4

static lmx_tokenizer *toks[N_KINDS][2];
static lmx_encoder *encs[N_KINDS][2];

/* ---- building the tokenizer.json files ---- */

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 + k. */
static void byte_char(unsigned b, char out[3])
{
    unsigned cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        unsigned k = 0;
        for (unsigned x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255)))
                k++;
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

/* Adds merges building `pieces` left to right (p0 p1 -> p0p1, p0p1 p2 -> ...), adding every new
 * token to the vocab. */
static void add_word(json_t *vocab, json_t *merges, const char *const *pieces)
{
    char cur[256];
    snprintf(cur, sizeof cur, "%s", pieces[0]);
    for (int i = 1; pieces[i]; i++) {
        char merge[512], next[256];
        snprintf(merge, sizeof merge, "%s %s", cur, pieces[i]);
        snprintf(next, sizeof next, "%s%s", cur, pieces[i]);
        if (!json_object_get(vocab, next)) {
            json_object_set_new(vocab, next, json_integer((json_int_t)json_object_size(vocab)));
            json_array_append_new(merges, json_string(merge));
        }
        snprintf(cur, sizeof cur, "%s", next);
    }
}

static const char *const words[] = {"the", " the", " a", "in", "ing", " and", "er", "on", " of", "re", "tion",
                                    " to", "  ", "    ", "\n\n", "12", "123", "'s", " café", "日本", NULL};

/* Byte-level pieces of an ASCII/UTF-8 word. */
static void add_bytelevel_word(json_t *vocab, json_t *merges, const char *w)
{
    char buf[32][3];
    const char *pieces[33];
    size_t n = strlen(w);
    for (size_t i = 0; i < n && i < 32; i++) {
        byte_char((uint8_t)w[i], buf[i]);
        pieces[i] = buf[i];
    }
    pieces[n < 32 ? n : 32] = NULL;
    add_word(vocab, merges, pieces);
}

static json_t *added(unsigned id, const char *content)
{
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (int)id, "content", content, "single_word", 0,
                     "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1);
}

static json_t *bytelevel_json(int gpt2)
{
    json_t *vocab = json_object(), *merges = json_array();
    for (unsigned b = 0; b < 256; b++) {
        char c[3];
        byte_char(b, c);
        json_object_set_new(vocab, c, json_integer(b));
    }
    for (int i = 0; words[i]; i++)
        add_bytelevel_word(vocab, merges, words[i]);
    unsigned n = (unsigned)json_object_size(vocab);
    json_t *pre;
    if (gpt2) {
        pre = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
                        "use_regex", 1);
    } else {
        const char *re = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                         "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        pre = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence",
                        "pretokenizers", "type", "Split", "pattern", "Regex", re, "behavior", "Isolated", "invert",
                        0, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0);
    }
    return json_pack("{s:s, s:n, s:n, s:[o, o], s:n, s:o, s:n, s:{s:s, s:b, s:b, s:b}, "
                     "s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}}",
                     "version", "1.0", "truncation", "padding", "added_tokens", added(n, "<|begin_of_text|>"),
                     added(n + 1, "<|end_of_text|>"), "normalizer", "pre_tokenizer", pre, "post_processor",
                     "decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1,
                     "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix",
                     "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", !gpt2, "vocab",
                     vocab, "merges", merges);
}

/* Splits a UTF-8 string into code points for add_word. */
static void add_utf8_word(json_t *vocab, json_t *merges, const char *w)
{
    char buf[32][5];
    const char *pieces[33];
    int n = 0;
    for (const char *p = w; *p && n < 32;) {
        int l = ((uint8_t)*p < 0x80) ? 1 : ((uint8_t)*p < 0xE0) ? 2 : ((uint8_t)*p < 0xF0) ? 3 : 4;
        memcpy(buf[n], p, (size_t)l);
        buf[n][l] = 0;
        pieces[n] = buf[n];
        n++;
        p += l;
    }
    pieces[n] = NULL;
    for (int i = 0; i < n; i++)
        if (!json_object_get(vocab, pieces[i]))
            json_object_set_new(vocab, pieces[i], json_integer((json_int_t)json_object_size(vocab)));
    add_word(vocab, merges, pieces);
}

static json_t *sp_json(int metaspace)
{
    json_t *vocab = json_object(), *merges = json_array();
    json_object_set_new(vocab, "<unk>", json_integer(0));
    json_object_set_new(vocab, "<s>", json_integer(1));
    json_object_set_new(vocab, "</s>", json_integer(2));
    for (unsigned b = 0; b < 256; b++) {
        char c[8];
        snprintf(c, sizeof c, "<0x%02X>", b);
        json_object_set_new(vocab, c, json_integer(3 + b));
    }
    static const char *const sp_words[] = {"\xe2\x96\x81the", "\xe2\x96\x81" "a", "in", "ing", "\xe2\x96\x81" "and",
                                           "er", "on", "\xe2\x96\x81of", "re", "tion", "\xe2\x96\x81\xe2\x96\x81",
                                           "caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "xyz", "12", NULL};
    for (int i = 0; sp_words[i]; i++)
        add_utf8_word(vocab, merges, sp_words[i]);
    json_t *norm, *pre;
    if (metaspace) {
        norm = json_null();
        pre = json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement", "\xe2\x96\x81", "prepend_scheme",
                        "first", "split", 0);
    } else {
        norm = json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type", "Sequence", "normalizers", "type",
                         "Prepend", "prepend", "\xe2\x96\x81", "type", "Replace", "pattern", "String", " ", "content",
                         "\xe2\x96\x81");
        pre = json_null();
    }
    json_t *dec = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}", "type", "Sequence",
                            "decoders", "type", "Replace", "pattern", "String", "\xe2\x96\x81", "content", " ", "type",
                            "ByteFallback", "type", "Fuse", "type", "Strip", "content", " ", "start", 1, "stop", 0);
    return json_pack("{s:s, s:n, s:n, s:[o, o, o], s:o, s:o, s:n, s:o, "
                     "s:{s:s, s:n, s:s, s:n, s:n, s:b, s:b, s:o, s:o}}",
                     "version", "1.0", "truncation", "padding", "added_tokens", added(0, "<unk>"), added(1, "<s>"),
                     added(2, "</s>"), "normalizer", norm, "pre_tokenizer", pre, "post_processor", "decoder", dec,
                     "model", "type", "BPE", "dropout", "unk_token", "<unk>", "continuing_subword_prefix",
                     "end_of_word_suffix", "fuse_unk", 1, "byte_fallback", 1, "vocab", vocab, "merges", merges);
}

static void open_all(void)
{
    for (int k = 0; k < N_KINDS; k++) {
        json_t *j = k == 0 ? bytelevel_json(0) : k == 1 ? bytelevel_json(1) : sp_json(k == 3);
        FUZZ_CHECK(j);
        char *txt = json_dumps(j, JSON_COMPACT);
        FUZZ_CHECK(txt);
        if (getenv("LMX_FUZZ_DUMP_TOKENIZERS")) /* make-seeds.sh: the same files as seeds */
            printf("%s\n", txt);
        for (int m = 0; m < 2; m++) {
            lmx_tokenizer_options o = {.match_added_tokens = m};
            lmx_error err = {0};
            if (lmx__tokenizer_open_buffer(txt, strlen(txt), NULL, 0, &o, &toks[k][m], &err) != LMX_OK ||
                lmx__encoder_create(toks[k][m], &encs[k][m], &err) != LMX_OK) {
                fprintf(stderr, "fuzz_encode: tokenizer %d: %s\n", k, err.message);
                abort();
            }
        }
        free(txt);
        json_decref(j);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    open_all();
    return 0;
}

static int has_metaspace_char(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i + 2 < n; i++)
        if (s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int kind = data[0] & 3, match = (data[0] >> 2) & 1;
    const uint8_t *text = data + 1;
    size_t n = size - 1;
    lmx_tokenizer *tok = toks[kind][match];
    uint32_t vocab = lmx__tokenizer_vocab_size(tok);
    lmx_ids ids = {0};
    lmx_error err = {0};
    int rc = lmx__encode(encs[kind][match], (const char *)text, n, &ids, &err);
    if (rc != LMX_OK) {
        fprintf(stderr, "encode failed: %s\n", err.message);
        FUZZ_CHECK(rc == LMX_OK);
    }
    for (size_t i = 0; i < ids.n; i++)
        FUZZ_CHECK(ids.v[i] < vocab);
    if (n)
        FUZZ_CHECK(ids.n > 0);
    /* Decode round trip on valid UTF-8. */
    /* Metaspace with prepend_scheme "first" does not prepend to text that already starts with the
     * replacement (a leading space becomes it), and the decoder strips one leading space: HF drops
     * that space too, so such texts do not round-trip by design. */
    /* With added tokens matched, the SentencePiece normalizer/pre-tokenizer runs on each piece
     * between them (a U+2581 is prepended to each) and Strip only sees the start of the whole
     * text, so HF does not round-trip those either. */
    int sp_skip = kind >= 2 && (match || has_metaspace_char(text, n) || (kind == 3 && n && text[0] == ' '));
    if (lmx__utf8_valid_prefix(text, n) == n && !sp_skip) {
        lmx_buf out = {0};
        rc = lmx__decode(tok, ids.v, ids.n, &out, &err);
        FUZZ_CHECK(rc == LMX_OK);
        if (out.len != n || (n && memcmp(out.data, text, n) != 0)) {
            fprintf(stderr, "round trip of %zu bytes through tokenizer %d (match_added_tokens=%d) gave %zu bytes\n", n,
                    kind, match, out.len);
            abort();
        }
        lmx__buf_free(&out);
    }
    lmx__ids_free(&ids);
    return 0;
}
