/* Unit tests of the SentencePiece parts of the tokenizer, on tokenizer.json files built here:
 * the Unigram model (Viterbi ties, unknowns fused, the unk piece matched literally, byte
 * fallback, no unk_id, load errors) and the Precompiled normalizer on hand-built darts-clone
 * charsmaps (a key's replacement, the whole-cluster rule for clusters under 6 bytes, trie and
 * offset bounds, bad blobs as load errors naming the JSON path); grapheme clusters against
 * Unicode's GraphemeBreakTest.txt when Debian's unicode-data is installed. Expected ids were
 * worked out by hand from the vocabularies (HF's encode_optimized) and checked with the peer. */
#include "lmx_test.h"
#include "lmx_test_json.h"
#include "lmx_tokenizer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>


/* ids: 0 <unk>, 1 a, 2 b, 3 ab, 4 c, 5 bc, 6 abc, 7 <0x78> ("x") */
enum { UNK, A, B, AB, C, BC, ABC, X };

/* A Unigram tokenizer.json with that vocabulary; norm: a normalizer JSON value. */
static void make_uni(const char *unk_id, int byte_fallback, const char *norm)
{
    jb.len = 0;
    J("{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":%s,\"pre_tokenizer\":null,"
      "\"decoder\":null,\"model\":{\"type\":\"Unigram\",\"unk_id\":%s,\"byte_fallback\":%s,"
      "\"vocab\":[[\"<unk>\",0.0],[\"a\",-1.0],[\"b\",-1],[\"ab\",-2.0],[\"c\",-1.0],[\"bc\",-2.0],"
      "[\"abc\",-3.5],[\"<0x78>\",-5.0]]}}",
      norm, unk_id, byte_fallback ? "true" : "false");
}

static lmx_tokenizer *open_json(lmx_error *err)
{
    lmx_tokenizer_options o = {0};
    lmx_tokenizer *t = NULL;
    if (lmx__tokenizer_open_buffer(jb.data, jb.len, NULL, 0, &o, &t, err) != LMX_OK)
        return NULL;
    return t;
}

static void check_ids(lmx_encoder *enc, const char *text, const uint32_t *want, size_t n)
{
    lmx_ids ids = {0};
    lmx_error err = {0};
    CHECK_EQ_INT(lmx__encode(enc, text, strlen(text), &ids, &err), LMX_OK);
    int same = ids.n == n && memcmp(ids.v, want, n * sizeof *want) == 0;
    if (!same) {
        fprintf(stderr, "\"%s\": got [", text);
        for (size_t i = 0; i < ids.n; i++)
            fprintf(stderr, "%s%u", i ? "," : "", ids.v[i]);
        fprintf(stderr, "]\n");
    }
    CHECK(same);
    lmx__ids_free(&ids);
}
#define IDS(enc, text, ...)                                                                      \
    do {                                                                                         \
        static const uint32_t w_[] = {__VA_ARGS__};                                              \
        check_ids(enc, text, w_, sizeof w_ / sizeof w_[0]);                                      \
    } while (0)

static void test_unigram(void)
{
    lmx_error err = {0};
    make_uni("0", 1, "null");
    lmx_tokenizer *t = open_json(&err);
    CHECK_EQ_STR(err.message, "");
    if (!t)
        return;
    lmx_encoder *enc = NULL;
    CHECK_EQ_INT(lmx__encoder_create(t, &enc, &err), LMX_OK);
    IDS(enc, "ab", AB);         /* a + b ties with ab (-2): the first path found (ab) stays */
    IDS(enc, "abc", A, BC);     /* a + bc (-3) beats abc (-3.5) and ab + c (-3, found later) */
    IDS(enc, "x", X);           /* unknown, fused alone: "x" is not a piece, <0x78> is */
    IDS(enc, "axa", A, X, A);
    IDS(enc, "xyz", UNK);       /* one fused run; <0x79> missing: unk, not three */
    IDS(enc, "\xc3\xa9\xc3\xa9", UNK);
    IDS(enc, "<unk>", UNK);     /* the unk piece, matched literally */
    IDS(enc, "a<unk>", A, UNK);
    IDS(enc, "x<unk>", UNK);    /* fused with the unknown before it: "x<unk>" -> unk */
    IDS(enc, "cabc", C, A, BC);
    /* decode gives the pieces back */
    lmx_buf out = {0};
    static const uint32_t d[] = {A, BC, X};
    CHECK_EQ_INT(lmx__decode(t, d, 3, &out, &err), LMX_OK);
    CHECK(out.len == 9 && memcmp(out.data, "abc<0x78>", 9) == 0);
    lmx__buf_free(&out);
    lmx__encoder_free(enc);
    lmx__tokenizer_free(t);

    make_uni("0", 0, "null"); /* without byte fallback */
    t = open_json(&err);
    CHECK(t != NULL);
    if (t && lmx__encoder_create(t, &enc, &err) == LMX_OK) {
        IDS(enc, "x", UNK);
        IDS(enc, "axxa", A, UNK, A);
        lmx__encoder_free(enc);
    }
    lmx__tokenizer_free(t);

    make_uni("null", 1, "null"); /* no unk_id: known text encodes, an unknown char fails */
    t = open_json(&err);
    CHECK(t != NULL);
    if (t && lmx__encoder_create(t, &enc, &err) == LMX_OK) {
        IDS(enc, "abc", A, BC);
        lmx_ids ids = {0};
        CHECK_EQ_INT(lmx__encode(enc, "aq", 2, &ids, &err), LMX_EUNSUPPORTED);
        CHECK_CONTAINS(err.message, "unk_id");
        lmx__ids_free(&ids);
        lmx__encoder_free(enc);
    }
    lmx__tokenizer_free(t);

    /* scores are read as serde_json reads them (HF): "-48.382277801338157" is one ulp above
     * strtod's value there, so a + b (-1 + -47.382277801338155) beats ab instead of tying */
    jb.len = 0;
    J("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],[\"a\",-1.0],"
      "[\"b\",-47.382277801338155],[\"ab\",-48.382277801338157]]}}");
    t = open_json(&err);
    CHECK(t != NULL);
    if (t && lmx__encoder_create(t, &enc, &err) == LMX_OK) {
        IDS(enc, "ab", 1, 2);
        lmx__encoder_free(enc);
    }
    lmx__tokenizer_free(t);

    /* load errors name the JSON path */
    make_uni("8", 1, "null");
    CHECK(open_json(&err) == NULL);
    CHECK_EQ_INT(err.code, LMX_EFORMAT);
    CHECK_CONTAINS(err.message, "model.unk_id");
    jb.len = 0;
    J("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],[\"a\"]]}}");
    CHECK(open_json(&err) == NULL);
    CHECK_CONTAINS(err.message, "model.vocab[1]");
    jb.len = 0;
    J("{\"model\":{\"type\":\"Unigram\",\"unk_id\":null,\"vocab\":[]}}");
    CHECK(open_json(&err) == NULL);
    CHECK_CONTAINS(err.message, "model.vocab");
}

/* ---- Precompiled ----------------------------------------------------------------------------- */

/* A charsmap blob: u32 trie size, units, replacement strings. */
static size_t blob(uint8_t *o, const uint32_t *units, size_t nu, const char *norm, size_t nl)
{
    uint32_t sz = (uint32_t)(nu * 4);
    memcpy(o, &sz, 4); /* little endian host (x86-64, arm64) */
    memcpy(o + 4, units, nu * 4);
    memcpy(o + 4 + nu * 4, norm, nl);
    return 4 + nu * 4 + nl;
}

static void b64(const uint8_t *s, size_t n, char *o)
{
    static const char A64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        o[k++] = A64[w >> 18];
        o[k++] = A64[(w >> 12) & 63];
        o[k++] = i + 1 < n ? A64[(w >> 6) & 63] : '=';
        o[k++] = i + 2 < n ? A64[w & 63] : '=';
    }
    o[k] = 0;
}

/* The trie of one key, "a": the root's offset 1 puts its child for byte 0x61 at unit 0x60, whose
 * leaf value (unit 0x61) is the replacement's offset. */
static size_t one_key(uint8_t *o, uint32_t root, uint32_t value, const char *norm, size_t nl)
{
    uint32_t u[98] = {0};
    u[0] = root;
    u[0x60] = 0x61u | 1u << 8 | 1u << 10; /* label 'a', has leaf, offset 1 */
    u[0x61] = value;
    return blob(o, u, 98, norm, nl);
}

static void uni_with_charsmap(const uint8_t *bl, size_t n)
{
    char enc[1024], norm[1200];
    b64(bl, n, enc);
    snprintf(norm, sizeof norm, "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"%s\"}", enc);
    make_uni("0", 1, norm);
}

static void test_precompiled(void)
{
    uint8_t bl[1024];
    lmx_error err = {0};
    /* "a" -> "b" */
    uni_with_charsmap(bl, one_key(bl, 1u << 10, 0, "b\0", 2));
    lmx_tokenizer *t = open_json(&err);
    CHECK_EQ_STR(err.message, "");
    lmx_encoder *enc = NULL;
    if (t && lmx__encoder_create(t, &enc, &err) == LMX_OK) {
        IDS(enc, "a", B);
        IDS(enc, "ca", C, B);
        /* a cluster under 6 bytes with a key as prefix becomes that key's replacement: the
         * accent goes (HF); at 6 bytes and more each char is looked up on its own */
        IDS(enc, "a\xcc\x81", B);
        IDS(enc, "a\xcc\x81\xcc\x81", B);
        IDS(enc, "a\xcc\x81\xcc\x81\xcc\x81", B, UNK);
        IDS(enc, "\r\na", UNK, B);
        lmx__encoder_free(enc);
    }
    lmx__tokenizer_free(t);

    /* the same through the raw hook: "a" -> "" (offset at the NUL) deletes */
    lmx_buf out = {0};
    size_t n = one_key(bl, 1u << 10, 1, "b\0", 2);
    CHECK_EQ_INT(lmx__tokenizer_charsmap_apply(bl, n, (const uint8_t *)"xay", 3, &out, &err), LMX_OK);
    CHECK(out.len == 2 && memcmp(out.data, "xy", 2) == 0);
    out.len = 0;
    /* a replacement running to the end of the strings (no NUL) */
    n = one_key(bl, 1u << 10, 0, "zz", 2);
    CHECK_EQ_INT(lmx__tokenizer_charsmap_apply(bl, n, (const uint8_t *)"a", 1, &out, &err), LMX_OK);
    CHECK(out.len == 2 && memcmp(out.data, "zz", 2) == 0);
    out.len = 0;
    /* the root's children beyond the array: no key matches, nothing is read out of bounds */
    n = one_key(bl, 0x3FFu << 10, 0, "b\0", 2);
    CHECK_EQ_INT(lmx__tokenizer_charsmap_apply(bl, n, (const uint8_t *)"abc", 3, &out, &err), LMX_OK);
    CHECK(out.len == 3 && memcmp(out.data, "abc", 3) == 0);
    lmx__buf_free(&out);

    /* bad blobs: load errors naming the JSON path */
    struct { size_t n; const char *msg; } bad[5];
    uint8_t bads[5][1024];
    bad[0].n = one_key(bads[0], 1u << 10, 5, "b\0", 2);   /* offset past the strings */
    bad[0].msg = "outside";
    bad[1].n = one_key(bads[1], 1u << 10, 1, "\xc3\xa9\0", 3); /* inside a char */
    bad[1].msg = "outside";
    bad[2].n = one_key(bads[2], 1u << 10, 0, "\xff\0", 2); /* strings not UTF-8 */
    bad[2].msg = "UTF-8";
    bad[3].n = one_key(bads[3], 1u << 10, 0, "b\0", 2) - 300; /* truncated trie */
    bad[3].msg = "larger than";
    memset(bads[4], 0, 8);
    bad[4].n = 6; /* an empty trie */
    bad[4].msg = "empty";
    for (int i = 0; i < 5; i++) {
        uni_with_charsmap(bads[i], bad[i].n);
        CHECK(open_json(&err) == NULL);
        CHECK_EQ_INT(err.code, LMX_EFORMAT);
        CHECK_CONTAINS(err.message, "normalizer.precompiled_charsmap");
        CHECK_CONTAINS(err.message, bad[i].msg);
    }
    make_uni("0", 1, "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"AAA*\"}");
    CHECK(open_json(&err) == NULL);
    CHECK_CONTAINS(err.message, "base64");
    make_uni("0", 1, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Precompiled\"}]}");
    CHECK(open_json(&err) == NULL);
    CHECK_CONTAINS(err.message, "normalizer.normalizers[0].precompiled_charsmap");
}

/* ---- grapheme clusters ---------------------------------------------------------------------- */

/* Whether the clusters of s[0, n) end exactly at want[0..nw). */
static int clusters_are(const uint8_t *s, size_t n, const size_t *want, size_t nw)
{
    size_t k = 0, i = 0;
    while (i < n) {
        i = lmx__tokenizer_grapheme_end(s, i, n);
        if (k >= nw || want[k++] != i)
            return 0;
    }
    return k == nw;
}

/* GB9c (Indic conjuncts, Unicode 15.1), which HF's segmentation applies (probed: the Precompiled
 * normalizer keeps U+0301 after "क्क़" and drops it after "कक़"); the cases of Unicode 16's
 * GraphemeBreakTest.txt with U+0915 KA, U+094D VIRAMA, U+0924 TA. Each string: code points
 * with '|' where a cluster ends. */
static void test_gb9c(void)
{
    static const char *const cases[] = {
        "0915 094D 0924|", "0915 094D 200D 0924|", "0915 094D 094D 0924|", "0915 093C 094D 0924|",
        "0915 093C 200D 094D 0924|", "0915 094D 0924 094D 092F|", "0915 094D|0061|",
        "0061 094D|0924|", "003F 094D|0924|", "0915|0924|", "0995 09CD 09B7|", "0915 094D 0995|",
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        uint8_t s[64];
        size_t n = 0, want[8], nw = 0;
        for (const char *p = cases[c]; *p;) {
            if (*p == '|') {
                want[nw++] = n;
                p++;
            } else if (*p == ' ') {
                p++;
            } else {
                char *e;
                n += (size_t)lmx__utf8_enc((uint32_t)strtoul(p, &e, 16), s + n);
                p = e;
            }
        }
        int ok = clusters_are(s, n, want, nw);
        if (!ok)
            fprintf(stderr, "GB9c: %s\n", cases[c]);
        CHECK(ok);
    }
}

static void test_graphemes(void)
{
    FILE *f = fopen("/usr/share/unicode/auxiliary/GraphemeBreakTest.txt", "r");
    if (!f) {
        printf("test_graphemes: skipped (no /usr/share/unicode: Debian package unicode-data)\n");
        return;
    }
    char line[4096];
    int cases = 0, wrong = 0;
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        uint8_t s[512];
        size_t n = 0, want[64], nw = 0;
        char *p = line;
        int any = 0;
        for (;;) {
            while (*p == ' ' || *p == '\t')
                p++;
            if (!strncmp(p, "\xc3\xb7", 2)) { /* ÷ */
                if (n)
                    want[nw++] = n;
                p += 2;
            } else if (!strncmp(p, "\xc3\x97", 2)) { /* × */
                p += 2;
            } else if ((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F')) {
                unsigned cp = (unsigned)strtoul(p, &p, 16);
                if (cp >= 0xD800 && cp < 0xE000)
                    cp = 0xFFFD;
                n += (size_t)lmx__utf8_enc(cp, s + n);
                any = 1;
            } else {
                break;
            }
        }
        if (!any)
            continue;
        cases++;
        int ok = clusters_are(s, n, want, nw);
        if (!ok && wrong++ < 5)
            fprintf(stderr, "GraphemeBreakTest: %s\n", line);
    }
    fclose(f);
    printf("test_graphemes: %d cases, %d differ\n", cases, wrong);
    CHECK(cases > 500);
    CHECK_EQ_INT(wrong, 0);
}

/* The repository's real SentencePiece file (tests/fixtures/tokenizers/spm-unigram): ids and the
 * decoded text (Metaspace decoder) as the HF peer gives them. The cluster "Ａ" + U+0301 loses its
 * accent and "\r\n" becomes one space (Precompiled's whole-cluster rule). */
static void test_fixture(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/tokenizers/spm-unigram/tokenizer.json", LMX_SOURCE_DIR);
    lmx_tokenizer_options o = {0};
    lmx_tokenizer *t = NULL;
    lmx_error err = {0};
    CHECK_EQ_INT(lmx__tokenizer_open(path, &o, &t, &err), LMX_OK);
    lmx_encoder *enc = NULL;
    if (!t || lmx__encoder_create(t, &enc, &err) != LMX_OK) {
        lmx__tokenizer_free(t);
        return;
    }
    static const struct { const char *text, *decoded; uint32_t ids[16]; size_t n; } cases[] = {
        {"Hello  world \xef\xac\x81 \xef\xbc\xa1\xcc\x81" "b\r\nx \xc3\xa9\xf0\x9f\x98\x80\xf0\x90\xb5\x90",
         "Hello world fi Ab x \xc3\xa9\xf0\x9f\x98\x80\xf0\x90\xb5\x90",
         {734, 1824, 749, 751, 301, 260, 1291, 446, 394, 386, 729, 7987, 7948}, 13},
        {"  lead and trail  ", "lead and trail", {3672, 1447, 296, 260, 4749}, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_ids(enc, cases[i].text, cases[i].ids, cases[i].n);
        lmx_buf out = {0};
        CHECK_EQ_INT(lmx__decode(t, cases[i].ids, cases[i].n, &out, &err), LMX_OK);
        CHECK(lmx__buf_append(&out, "", 1) == LMX_OK);
        CHECK_EQ_STR((const char *)out.data, cases[i].decoded);
        lmx__buf_free(&out);
    }
    lmx__encoder_free(enc);
    lmx__tokenizer_free(t);
}

/* SentencePiece's Replace " {2,}" -> "▁" is matched without Oniguruma (lmx_tok_regex.c,
 * literal_repeat); "[ ]{2,}" still goes through Oniguruma: both must replace the same runs.
 * Random texts of spaces, 'a', 'b' and a two-byte char; with the pieces "a", "b", "▁" and
 * byte fallback, the ids spell the normalized text. */
static void test_repeat_regex(void)
{
    lmx_tokenizer *t[2] = {NULL, NULL};
    lmx_encoder *enc[2] = {NULL, NULL};
    const char *pats[2] = {" {2,}", "[ ]{2,}"};
    for (int k = 0; k < 2; k++) {
        lmx_error err = {0};
        jb.len = 0;
        J("{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":{\"type\":\"Replace\","
          "\"pattern\":{\"Regex\":\"%s\"},\"content\":\"\u2581\"},\"pre_tokenizer\":null,"
          "\"decoder\":null,\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"byte_fallback\":true,"
          "\"vocab\":[[\"<unk>\",0.0],[\"a\",-1.0],[\"b\",-1.0],[\"\u2581\",-1.0],[\"<0x20>\",-2.0],"
          "[\"<0xC3>\",-2.0],[\"<0xA9>\",-2.0]]}}", pats[k]);
        t[k] = open_json(&err);
        CHECK_EQ_STR(err.message, "");
        if (!t[k] || lmx__encoder_create(t[k], &enc[k], &err) != LMX_OK)
            goto out;
    }
    uint32_t seed = 12345;
    for (int iter = 0; iter < 2000; iter++) {
        char text[64];
        size_t n = 0, len = (size_t)(iter % 40);
        while (n < len) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = seed >> 16 & 7;
            if (r < 4)
                text[n++] = ' ';
            else if (r < 6)
                text[n++] = r == 4 ? 'a' : 'b';
            else {
                text[n++] = (char)0xC3;
                text[n++] = (char)0xA9;
            }
        }
        text[n] = 0;
        lmx_ids ids[2] = {{0}, {0}};
        lmx_error err = {0};
        CHECK_EQ_INT(lmx__encode(enc[0], text, n, &ids[0], &err), LMX_OK);
        CHECK_EQ_INT(lmx__encode(enc[1], text, n, &ids[1], &err), LMX_OK);
        int same = ids[0].n == ids[1].n &&
                   (!ids[0].n || memcmp(ids[0].v, ids[1].v, ids[0].n * sizeof *ids[0].v) == 0);
        if (!same)
            fprintf(stderr, "repeat regex differs on \"%s\"\n", text);
        CHECK(same);
        lmx__ids_free(&ids[0]);
        lmx__ids_free(&ids[1]);
        if (!same)
            break;
    }
out:
    for (int k = 0; k < 2; k++) {
        lmx__encoder_free(enc[k]);
        lmx__tokenizer_free(t[k]);
    }
}

int main(void)
{
    test_unigram();
    test_repeat_regex();
    test_fixture();
    test_precompiled();
    test_graphemes();
    test_gb9c();
    lmx__buf_free(&jb);
    TEST_MAIN_END();
}
