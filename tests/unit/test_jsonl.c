/* common/lmx_jsonl.c: the fast JSON Lines record parser must agree with jansson (the slow path of
 * `longmixd tokenize` and the indexer) whenever it answers, and must answer for ordinary records.
 * Every case runs through both: when the fast path returns 1, json_loadb(JSON_ALLOW_NUL) of the
 * same line must give an object whose "text" has the same bytes and whose field
 * (lmx__jsonl_get_path) is the same string or equally missing. Without LMX__JSONL_UTF8 (tokenize)
 * the reference is jansson on the line repaired by lmx__utf8_lossy, and the fast text repaired
 * the same way (and the field) must match. */
#include <jansson.h>
#include <string.h>

#include "lmx_jsonl.h"
#include "lmx_test.h"
#include "lmx_tokenizer.h"

enum { DECLINE = 0, FAST = 1, EITHER = 2 };

/* Fast path vs jansson on s[0..n) with the dotted field (NULL: text only). Returns the fast
 * path's answer; records a failure on any disagreement and when expect (FAST/DECLINE) is not met. */
static int check_line_n(const char *s, size_t n, const char *field, unsigned flags, int expect, int line)
{
    lmx__jsonl_path path;
    lmx_buf text = {0}, fval = {0}, fixed = {0}, fixed_text = {0}, fixed_field = {0};
    int found = -1, fast = 0;
    if (!field || lmx__jsonl_path_init(&path, field))
        fast = lmx__jsonl_fast(s, n, flags, field ? &path : NULL, &text, &fval, &found);
    if (expect != EITHER && fast != expect) {
        fprintf(stderr, "%s:%d: fast path answered %d, expected %d for %.*s (field %s)\n", __FILE__, line, fast,
                expect, (int)n, s, field ? field : "-");
        lmx_test_failures++;
    }
    if (fast) {
        const char *ref = s;
        size_t ref_n = n;
        const char *got = (const char *)text.data;
        size_t got_n = text.len;
        if (!(flags & LMX__JSONL_UTF8)) {
            CHECK(lmx__utf8_lossy((const uint8_t *)s, n, &fixed) == LMX_OK);
            CHECK(lmx__utf8_lossy(text.data, text.len, &fixed_text) == LMX_OK);
            ref = (const char *)fixed.data;
            ref_n = fixed.len;
            got = (const char *)fixed_text.data;
            got_n = fixed_text.len;
        }
        json_error_t je;
        json_t *doc = json_loadb(ref ? ref : "", ref_n, JSON_ALLOW_NUL, &je);
        json_t *t = json_is_object(doc) ? json_object_get(doc, "text") : NULL;
        if (!json_is_string(t) || json_string_length(t) != got_n || memcmp(json_string_value(t), got, got_n) != 0) {
            fprintf(stderr, "%s:%d: fast text differs from jansson's (%s) for %.*s\n", __FILE__, line,
                    doc ? "text" : je.text, (int)n, s);
            lmx_test_failures++;
        }
        if (field) {
            const char *want = doc ? lmx__jsonl_get_path(doc, field) : NULL, *gotf = (const char *)fval.data;
            if (want && !(flags & LMX__JSONL_UTF8)) { /* repaired like the line; ends at a NUL */
                CHECK(lmx__utf8_lossy(fval.data, strlen(gotf), &fixed_field) == LMX_OK);
                CHECK(lmx__buf_append(&fixed_field, "", 1) == LMX_OK);
                gotf = (const char *)fixed_field.data;
            }
            if ((want != NULL) != (found == 1) || (want && strcmp(want, gotf) != 0)) {
                fprintf(stderr, "%s:%d: field %s: fast %s, jansson %s for %.*s\n", __FILE__, line, field,
                        found == 1 ? (const char *)fval.data : "(missing)", want ? want : "(missing)", (int)n, s);
                lmx_test_failures++;
            }
        }
        json_decref(doc);
    }
    lmx__buf_free(&text);
    lmx__buf_free(&fval);
    lmx__buf_free(&fixed);
    lmx__buf_free(&fixed_text);
    lmx__buf_free(&fixed_field);
    return fast;
}

#define LINE(s, field, flags, expect) check_line_n(s, sizeof(s) - 1, field, flags, expect, __LINE__)
#define DOM "meta.redpajama_set_name"
#define U8 LMX__JSONL_UTF8

/* Ordinary records must take the fast path (else the speedup silently disappears). */
static void test_ordinary(void)
{
    LINE("{\"text\": \"hello\", \"meta\": {\"redpajama_set_name\": \"web\"}}", DOM, U8, FAST);
    LINE("{\"meta\": {\"redpajama_set_name\": \"web\"}, \"text\": \"order swapped\"}", DOM, U8, FAST);
    LINE("  {\"text\":\"ws\",\"meta\":{\"redpajama_set_name\":\"a\"}}  \t\r", DOM, U8, FAST);
    LINE("{\"text\": \"esc \\/ \\b\\f\\n\\r\\t \\\" \\\\ \\u00e9 \\uD83D\\uDE00\", \"meta\": {\"redpajama_set_name\": "
         "\"w\\u00e9b\\n\"}}",
         DOM, U8, FAST);
    LINE("{\"text\": \"utf8 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\", \"meta\": {\"redpajama_set_name\": \"w\xc3\xa9"
         "b\"}}",
         DOM, U8, FAST);
    LINE("{\"text\": \"nul \\u0000 inside\", \"meta\": {\"redpajama_set_name\": \"a\\u0000b\"}}", DOM, U8, FAST);
    LINE("{\"text\": \"\", \"a\": true, \"b\": false, \"c\": null, \"n\": [0, -0, 1.25, -12345678901234], "
         "\"o\": {\"x\": {}}, \"meta\": {\"redpajama_set_name\": \"web\"}}",
         DOM, U8, FAST);
    LINE("{\"text\": \"x\", \"x\": [[[[[[[[[[1]]]]]]]]]], \"meta\": {\"redpajama_set_name\": \"web\"}}", DOM, U8, FAST);
    /* the field missing, or not a string, is a fast answer too (the caller rejects the record) */
    LINE("{\"text\": \"no domain\"}", DOM, U8, FAST);
    LINE("{\"text\": \"meta string\", \"meta\": \"web\"}", DOM, U8, FAST);
    LINE("{\"text\": \"meta array\", \"meta\": [\"web\"]}", DOM, U8, FAST);
    LINE("{\"text\": \"meta null\", \"meta\": null}", DOM, U8, FAST);
    LINE("{\"text\": \"number\", \"meta\": {\"redpajama_set_name\": 7}}", DOM, U8, FAST);
    LINE("{\"text\": \"object\", \"meta\": {\"redpajama_set_name\": {\"x\": \"y\"}}}", DOM, U8, FAST);
    LINE("{\"text\": \"empty\", \"meta\": {\"redpajama_set_name\": \"\"}}", DOM, U8, FAST);
    LINE("{\"text\": \"empty meta\", \"meta\": {}}", DOM, U8, FAST);
    LINE("{\"text\": \"nested\", \"meta\": {\"a\": {\"redpajama_set_name\": \"deep\"}, \"redpajama_set_name\": \"w\"}}",
         DOM, U8, FAST);
    LINE("{\"text\": \"nested wrong\", \"meta\": {\"a\": {\"redpajama_set_name\": \"deep\"}}}", DOM, U8, FAST);
    LINE("{\"text\": \"top level\", \"redpajama_set_name\": \"web\"}", DOM, U8, FAST);
    LINE("{\"text\": \"elsewhere\", \"other\": {\"meta\": {\"redpajama_set_name\": \"web\"}}}", DOM, U8, FAST);
    LINE("{\"text\":\"x\",\"meta\":{\"redpajama_set_name\":\"web\",\"redpajama_set_name2\":\"z\"}}", DOM, U8, FAST);
    LINE("{\"text\":\"x\",\"meta\":{\"redpajama_set_nam\":\"web\"}}", DOM, U8, FAST);
    LINE("{\"text\":\"x\",\"a\":{\"b\":{\"c\":\"abc\"}}}", "a.b.c", U8, FAST);
    LINE("{\"text\":\"x\",\"a\":{\"b\":{\"c\":\"abc\"}}}", "a.b", U8, FAST);
    LINE("{\"text\":\"x\",\"a\":{\"b\":{\"c\":\"abc\"}}}", "a.b.c.", U8, FAST);
    LINE("{\"text\":\"x\",\"source\":\"s\"}", "source", U8, FAST);
    /* repeated keys off the path are jansson's business only for the last value: no effect here */
    LINE("{\"text\": \"dup other\", \"x\": 1, \"x\": 2, \"meta\": {\"redpajama_set_name\": \"web\"}}", DOM, U8, FAST);
    /* tokenize mode: text only, bytes >= 0x80 copied (repaired later, like the line would be) */
    LINE("{\"text\": \"bad \xff utf8 \xe2\x82\"}", NULL, 0, FAST);
    LINE("{\"k\xff\": 1, \"text\": \"x\"}", NULL, 0, FAST);
    LINE("{\"text\": \"x\", \"meta\": {\"redpajama_set_name\": \"w\xff\\u0000b\"}}", DOM, 0, FAST);
    LINE("{\"text\": \"hello\", \"meta\": {\"redpajama_set_name\": \"web\"}}", NULL, U8, FAST);
}

/* Anything jansson would reject, or that the fast path does not reproduce, goes to jansson. */
static void test_declined(void)
{
    static const char *const lines[] = {
        "", "   ", "not json", "[1, 2]", "\"s\"", "42", "{}", "{\"text\": \"x\"", "{\"text\": \"x\"} trailing",
        "{\"text\": \"x\"}}", "{\"meta\": {\"redpajama_set_name\": \"web\"}}", "{\"text\": 5}", "{\"text\": null}",
        "{\"text\": [\"a\"]}", "{\"text\": {}}",
        /* escapes in keys (jansson decodes them; \u0000 is an error there) */
        "{\"text\": \"x\", \"me\\u0074a\": {\"redpajama_set_name\": \"web\"}}",
        "{\"te\\u0078t\": \"x\"}", "{\"text\": \"x\", \"\\u0000\": 1}", "{\"text\": \"x\", \"a\\nb\": 1}",
        /* repeated "text" or path keys: jansson keeps the last */
        "{\"text\": \"1\", \"text\": \"2\"}",
        "{\"text\": \"x\", \"meta\": {\"redpajama_set_name\": \"a\"}, \"meta\": {\"redpajama_set_name\": \"b\"}}",
        "{\"text\": \"x\", \"meta\": {\"redpajama_set_name\": \"a\"}, \"meta\": 5}",
        "{\"text\": \"x\", \"meta\": {\"redpajama_set_name\": \"a\", \"redpajama_set_name\": \"b\"}}",
        /* lone surrogates (jansson: error; tokenize: U+FFFD) */
        "{\"text\": \"\\ud800 x\"}", "{\"text\": \"\\udc00\"}", "{\"text\": \"\\ud800\\ud800\"}",
        "{\"text\": \"\\ud800\\u0041\"}", "{\"text\": \"x\", \"meta\": {\"redpajama_set_name\": \"\\udfff\"}}",
        "{\"text\": \"x\", \"other\": \"\\ud800\"}",
        /* numbers jansson may reject (too big integer, real overflow) and bad numbers */
        "{\"text\": \"x\", \"n\": 123456789012345678901234567890}", "{\"text\": \"x\", \"n\": 1e999}",
        "{\"text\": \"x\", \"n\": -1.5e-3}", "{\"text\": \"x\", \"n\": 1234567890123456}", "{\"text\": \"x\", \"n\": 01}",
        "{\"text\": \"x\", \"n\": 1.}", "{\"text\": \"x\", \"n\": -}", "{\"text\": \"x\", \"n\": .5}",
        "{\"text\": \"x\", \"n\": +1}",
        /* grammar */
        "{\"text\": \"x\", \"a\": tru}", "{\"text\": \"x\",}", "{\"text\": \"x\" \"a\": 1}", "{\"text\": \"x\", 'a': 1}",
        "{\"text\": \"ctrl \x01\"}", "{\"text\": \"tab \t raw\"}", "{\"text\": \"\\x\"}", "{\"text\": \"\\u12\"}",
        "{\"text\": \"\\u12g4\"}", "\f{\"text\": \"x\"}", "{\"text\": \"x\"}\f", "{\"text\": \"x\", \"a\": [1,]}",
        "{\"text\": \"x\", \"a\": [1 2]}", "{\"text\" : \"x\", \"a\": {\"b\" 1}}", "{\"text\": \"x\", \"a\": {1: 2}}",
    };
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        check_line_n(lines[i], strlen(lines[i]), DOM, U8, DECLINE, __LINE__);
        /* text only (tokenize): repeated path keys are fine then; any answer is compared */
        check_line_n(lines[i], strlen(lines[i]), NULL, 0, EITHER, __LINE__);
    }
    /* raw NUL bytes: a control char inside a string, garbage after the value */
    check_line_n("{\"text\": \"a\0b\"}", 14, NULL, 0, DECLINE, __LINE__);
    check_line_n("{\"text\": \"ab\"}\0", 15, NULL, 0, DECLINE, __LINE__);
    /* invalid UTF-8 anywhere is jansson's error when checking UTF-8 */
    LINE("{\"text\": \"bad \xff\", \"meta\": {\"redpajama_set_name\": \"web\"}}", DOM, U8, DECLINE);
    LINE("{\"text\": \"overlong \xc0\xaf\"}", NULL, U8, DECLINE);
    LINE("{\"text\": \"surrogate \xed\xa0\x80\"}", NULL, U8, DECLINE);
    LINE("{\"text\": \"truncated \xe2\x82\"}", NULL, U8, DECLINE);
    LINE("{\"text\": \"x\", \"meta\": {\"redpajama_set_name\": \"bad \xfe\"}}", DOM, U8, DECLINE);
    LINE("{\"text\": \"x\", \"k\xff\": 1}", DOM, U8, DECLINE);
    /* nesting beyond the fast path's limit (jansson's own limit is far deeper) */
    char deep[200];
    int k = snprintf(deep, sizeof deep, "{\"text\": \"x\", \"a\": ");
    for (int i = 0; i < 40; i++)
        deep[k++] = '[';
    for (int i = 0; i < 40; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    check_line_n(deep, (size_t)k, NULL, U8, DECLINE, __LINE__);
}

/* Field paths the fast path leaves to jansson, and what it accepts. */
static void test_paths(void)
{
    lmx__jsonl_path p;
    CHECK(lmx__jsonl_path_init(&p, DOM) && p.n == 2 && p.len[0] == 4 && p.len[1] == 18);
    CHECK(lmx__jsonl_path_init(&p, "meta.") && p.n == 1); /* a trailing '.' ends the walk */
    CHECK(!lmx__jsonl_path_init(&p, ""));
    CHECK(!lmx__jsonl_path_init(&p, ".meta"));
    CHECK(!lmx__jsonl_path_init(&p, "meta..x"));
    CHECK(!lmx__jsonl_path_init(&p, "text"));
    CHECK(!lmx__jsonl_path_init(&p, "text.x"));
    CHECK(lmx__jsonl_path_init(&p, "meta.text") && p.n == 2);
    CHECK(!lmx__jsonl_path_init(&p, "a.b.c.d.e.f.g.h.i"));
    char big[300];
    memset(big, 'k', 256);
    big[256] = '\0';
    CHECK(!lmx__jsonl_path_init(&p, big));
    big[255] = '\0';
    CHECK(lmx__jsonl_path_init(&p, big));
    /* "text" below the top level is an ordinary key */
    LINE("{\"text\": \"t\", \"meta\": {\"text\": \"inner\"}}", "meta.text", U8, FAST);
    LINE("{\"text\": \"t\", \"meta\": {\"text\": \"a\", \"text\": \"b\"}}", "meta.text", U8, DECLINE);
}

/* Two field paths (domain and --id-field) and another text key in one pass. */
static void test_two_fields(void)
{
    lmx__jsonl_path a, b;
    const lmx__jsonl_path *paths[2] = {&a, &b};
    lmx_buf text = {0}, f1 = {0}, f2 = {0};
    lmx_buf *bufs[2] = {&f1, &f2};
    int found[2];
    const char *l1 = "{\"content\": \"t\\u00e9\", \"meta\": {\"src\": \"web\", \"id\": \"d\\n7\"}}";
    CHECK(lmx__jsonl_path_init(&a, "meta.src") && lmx__jsonl_path_init(&b, "meta.id"));
    CHECK_EQ_INT(lmx__jsonl_fast_fields(l1, strlen(l1), LMX__JSONL_UTF8, "content", &text, 2, paths, bufs, found), 1);
    CHECK(text.len == 3 && memcmp(text.data, "t\xc3\xa9", 3) == 0);
    CHECK_EQ_STR((const char *)f1.data, "web");
    CHECK_EQ_STR((const char *)f2.data, "d\n7");
    CHECK(found[0] == 1 && found[1] == 1);
    /* the id a number: not found (the caller asks jansson); the same path twice */
    const char *l2 = "{\"content\": \"x\", \"meta\": {\"src\": \"web\", \"id\": 7}}";
    CHECK_EQ_INT(lmx__jsonl_fast_fields(l2, strlen(l2), LMX__JSONL_UTF8, "content", &text, 2, paths, bufs, found), 1);
    CHECK(found[0] == 1 && found[1] == 0);
    paths[1] = &a;
    CHECK_EQ_INT(lmx__jsonl_fast_fields(l2, strlen(l2), LMX__JSONL_UTF8, "content", &text, 2, paths, bufs, found), 1);
    CHECK_EQ_STR((const char *)f2.data, "web");
    /* a repeated key on a path, a missing text key, a dotted text key, a path through the text key */
    const char *l3 = "{\"content\": \"x\", \"meta\": {\"src\": \"a\", \"src\": \"b\"}}";
    CHECK_EQ_INT(lmx__jsonl_fast_fields(l3, strlen(l3), LMX__JSONL_UTF8, "content", &text, 2, paths, bufs, found), 0);
    CHECK_EQ_INT(lmx__jsonl_fast_fields(l1, strlen(l1), LMX__JSONL_UTF8, "text", &text, 2, paths, bufs, found), 0);
    CHECK_EQ_INT(lmx__jsonl_fast_fields(l1, strlen(l1), LMX__JSONL_UTF8, "meta.src", &text, 0, paths, bufs, found), 0);
    CHECK(lmx__jsonl_path_init(&b, "content.x"));
    paths[1] = &b;
    CHECK_EQ_INT(lmx__jsonl_fast_fields(l1, strlen(l1), LMX__JSONL_UTF8, "content", &text, 2, paths, bufs, found), 0);
    lmx__buf_free(&text);
    lmx__buf_free(&f1);
    lmx__buf_free(&f2);
}

int main(void)
{
    test_two_fields();
    test_ordinary();
    test_declined();
    test_paths();
    if (lmx_test_failures)
        fprintf(stderr, "%d failure(s)\n", lmx_test_failures);
    return lmx_test_failures != 0;
}
