/* libFuzzer target: the fast JSON Lines record parser (common/json/lmx_jsonl.c, on the scanner
 * lmx_json_scan.c) against jansson on arbitrary lines. Input byte 0 picks the mode: bit 0 sets LMX__JSONL_UTF8 (the indexer; else
 * `longmixd tokenize`), bits 1-3 the field path (none, the default domain path, and variants),
 * bit 4 the text key ("text", or "content" as with --text-field content), bits 5-7 a second
 * field path (lmx__jsonl_fast_fields, as the indexer's --id-field).
 * The rest is the line.
 * Checked whenever the fast path answers: json_loadb(JSON_ALLOW_NUL) of the same line (of the line
 * repaired by lmx__utf8_lossy without LMX__JSONL_UTF8, then compared with the repaired fast text
 * and field) is an
 * object whose "text" has the same bytes and whose field (lmx__jsonl_get_path) is the same string
 * or equally missing. Declining is always allowed: the callers then use jansson. */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "lmx_jsonl.h"
#include "lmx_tokenizer.h"

static const char *const FIELDS[8] = {
    NULL, "meta.redpajama_set_name", "meta", "a.b.c", "meta.text", "m", "meta.", "text",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = data[0] & 1 ? LMX__JSONL_UTF8 : 0;
    const char *field = FIELDS[(data[0] >> 1) & 7];
    const char *key = data[0] & 16 ? "content" : "text"; /* bit 4: lmx__jsonl_fast_key's other key */
    const char *s = (const char *)data + 1;
    size_t n = size - 1;

    lmx__jsonl_path path, path2;
    if (field && !lmx__jsonl_path_init(&path, field))
        return 0; /* the caller would use jansson for every line */
    /* bits 5-7: a second field path (the indexer's --id-field) next to the first */
    const char *field2 = field ? FIELDS[(data[0] >> 5) & 7] : NULL;
    if (field2 && !lmx__jsonl_path_init(&path2, field2))
        return 0;
    lmx_buf text = {0}, fval = {0}, fval2 = {0}, fixed = {0}, fixed_text = {0}, fixed_field = {0};
    int found[2] = {-1, -1};
    const lmx__jsonl_path *paths[2] = {&path, &path2};
    lmx_buf *bufs[2] = {&fval, &fval2};
    int fast = lmx__jsonl_fast_fields(s, n, flags, key, &text, field ? (field2 ? 2 : 1) : 0, paths, bufs, found);
    if (fast) {
        const char *ref = s, *got = (const char *)text.data;
        size_t ref_n = n, got_n = text.len;
        if (!flags) {
            FUZZ_CHECK(lmx__utf8_lossy((const uint8_t *)s, n, &fixed) == LMX_OK);
            FUZZ_CHECK(lmx__utf8_lossy(text.data, text.len, &fixed_text) == LMX_OK);
            ref = (const char *)fixed.data;
            ref_n = fixed.len;
            got = (const char *)fixed_text.data;
            got_n = fixed_text.len;
        }
        json_error_t je;
        json_t *doc = json_loadb(ref ? ref : "", ref_n, JSON_ALLOW_NUL, &je);
        FUZZ_CHECK(json_is_object(doc));
        json_t *t = json_object_get(doc, key);
        FUZZ_CHECK(json_is_string(t));
        FUZZ_CHECK(json_string_length(t) == got_n);
        FUZZ_CHECK(got_n == 0 || memcmp(json_string_value(t), got, got_n) == 0);
        if (field) {
            const char *want = lmx__jsonl_get_path(doc, field), *gotf = (const char *)fval.data;
            FUZZ_CHECK((want != NULL) == (found[0] == 1));
            if (want && !flags) { /* the field repaired like the line (it ends at its first NUL) */
                FUZZ_CHECK(lmx__utf8_lossy(fval.data, strlen(gotf), &fixed_field) == LMX_OK);
                FUZZ_CHECK(lmx__buf_append(&fixed_field, "", 1) == LMX_OK);
                gotf = (const char *)fixed_field.data;
            }
            FUZZ_CHECK(!want || strcmp(want, gotf) == 0);
        }
        if (field2) {
            const char *want2 = lmx__jsonl_get_path(doc, field2);
            FUZZ_CHECK((want2 != NULL) == (found[1] == 1));
            FUZZ_CHECK(!want2 || !flags || strcmp(want2, (const char *)fval2.data) == 0);
        }
        json_decref(doc);
    }
    lmx__buf_free(&text);
    lmx__buf_free(&fval);
    lmx__buf_free(&fval2);
    lmx__buf_free(&fixed);
    lmx__buf_free(&fixed_text);
    lmx__buf_free(&fixed_field);
    return 0;
}
