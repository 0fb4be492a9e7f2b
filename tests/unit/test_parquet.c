/* Unit tests of the Parquet reader (common/index/inputs/lmx_parquet*.c) on files written by
 * independent writers (tests/unit/parquet/: DuckDB, Arrow's Rust writer via parquet-wasm,
 * hyparquet-writer; regenerate with `node tests/tools/parquet/gen.mjs tests/unit/parquet 120`):
 * every file's rows equal expected.jsonl; list/map/float columns, groups, missing columns and
 * encrypted files are refused by name; truncated and corrupted files fail with an error naming the
 * file (and row group/column/page) and never crash; the spec's encoding examples decode. */
#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>

#include "lmx_parquet.h"
#include "lmx_inputs.h"
#include "lmx_parquet_internal.h"
#include "lmx_test.h"
#include "lmx_util.h"

#define DIR_ LMX_SOURCE_DIR "/tests/unit/parquet"

static const char *const COLS[4] = {"text", "meta.redpajama_set_name", "id", "n"};

/* Reads the 4 columns of every row of an open file; LMX_OK or the first error. */
static int read_all(lmx_parquet *pq, json_t *expected, size_t *rows, lmx_error *err)
{
    lmx_parquet_col *c[4] = {0};
    int types[4], rc = LMX_OK;
    *rows = 0;
    for (int i = 0; i < 4 && rc == LMX_OK; i++) {
        size_t col;
        rc = lmx__parquet_find(pq, COLS[i], &col, &types[i], err);
        if (rc == LMX_OK)
            rc = lmx__parquet_col_open(pq, col, &c[i], err);
    }
    while (rc == LMX_OK) {
        lmx_parquet_value v[4];
        int got = 0;
        for (int i = 0; i < 4 && rc == LMX_OK; i++) {
            int r = lmx__parquet_col_next(c[i], &v[i], err);
            if (r < 0)
                rc = r;
            got += r == 1;
        }
        if (rc != LMX_OK || got == 0)
            break;
        CHECK_EQ_INT(got, 4);
        json_t *e = expected ? json_array_get(expected, *rows) : NULL;
        if (expected && e) {
            json_t *t = json_object_get(e, "text"), *d = json_object_get(e, "domain");
            CHECK_EQ_INT(v[0].is_null, json_is_null(t));
            if (!v[0].is_null && json_is_string(t)) {
                CHECK_EQ_U64(v[0].len, json_string_length(t));
                CHECK(v[0].len == json_string_length(t) && memcmp(v[0].data, json_string_value(t), v[0].len) == 0);
            }
            CHECK_EQ_INT(v[1].is_null, json_is_null(d));
            if (!v[1].is_null && json_is_string(d))
                CHECK(v[1].len == strlen(json_string_value(d)) && memcmp(v[1].data, json_string_value(d), v[1].len) == 0);
            CHECK_EQ_INT(types[2], LMX_PQ_INT64);
            CHECK_EQ_INT(types[3], LMX_PQ_INT32);
            char id[32];
            snprintf(id, sizeof id, "%" PRId64, v[2].i);
            CHECK_EQ_STR(id, json_string_value(json_object_get(e, "id")));
            CHECK_EQ_INT(v[3].i, json_integer_value(json_object_get(e, "n")));
        }
        ++*rows;
    }
    for (int i = 0; i < 4; i++)
        lmx__parquet_col_close(c[i]);
    return rc;
}

static json_t *load_expected(void)
{
    json_t *arr = json_array();
    FILE *f = fopen(DIR_ "/expected.jsonl", "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_array_append_new(arr, json_loads(line, 0, &je));
    }
    free(line);
    if (f)
        fclose(f);
    return arr;
}

/* The list column input_ids (pre-tokenized ids) row by row: null, empty and filled lists. */
static void check_lists(lmx_parquet *pq, json_t *expected)
{
    lmx_error err = {0};
    size_t col;
    int type;
    lmx_parquet_col *c = NULL;
    CHECK_EQ_INT(lmx__parquet_find(pq, "input_ids", &col, NULL, &err), LMX_EUNSUPPORTED);
    CHECK_EQ_INT(lmx__parquet_find_list(pq, "input_ids", &col, &type, &err), LMX_OK);
    CHECK_EQ_INT(type, LMX_PQ_INT32);
    CHECK_EQ_INT(lmx__parquet_col_open(pq, col, &c, &err), LMX_OK);
    lmx_parquet_list l;
    lmx_parquet_value v;
    CHECK_EQ_INT(lmx__parquet_col_next(c, &v, &err), LMX_EINVAL); /* a list needs next_list */
    size_t row = 0;
    int rc;
    while ((rc = lmx__parquet_col_next_list(c, &l, &err)) == 1) {
        json_t *want = json_object_get(json_array_get(expected, row), "input_ids");
        CHECK_EQ_INT(l.is_null, json_is_null(want));
        CHECK_EQ_U64(l.n, json_array_size(want));
        CHECK_EQ_U64(l.null_elements, 0);
        for (size_t k = 0; k < l.n && k < json_array_size(want); k++)
            CHECK_EQ_INT(l.v[k], json_integer_value(json_array_get(want, k)));
        row++;
    }
    if (rc < 0)
        fprintf(stderr, "%s\n", err.message);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_U64(row, json_array_size(expected));
    lmx__parquet_col_close(c);
}

static void test_fixtures(json_t *expected)
{
    DIR *d = opendir(DIR_);
    CHECK(d != NULL);
    struct dirent *e;
    int files = 0;
    while (d && (e = readdir(d))) {
        if (!lmx__ends_with(e->d_name, ".parquet") || strstr(e->d_name, "lists"))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", DIR_, e->d_name);
        lmx_error err = {0};
        lmx_parquet *pq;
        int rc = lmx__parquet_open(path, &pq, &err);
        if (rc != LMX_OK) {
            fprintf(stderr, "%s\n", err.message);
            CHECK(rc == LMX_OK);
            continue;
        }
        size_t rows;
        rc = read_all(pq, expected, &rows, &err);
        if (rc != LMX_OK)
            fprintf(stderr, "%s\n", err.message);
        CHECK_EQ_INT(rc, LMX_OK);
        CHECK_EQ_U64(rows, json_array_size(expected));
        CHECK_EQ_U64(lmx__parquet_num_rows(pq), json_array_size(expected));
        check_lists(pq, expected);
        lmx__parquet_close(pq);
        files++;
    }
    if (d)
        closedir(d);
    CHECK(files >= 15); /* 6 DuckDB, 6 arrow-rs, 3 hyparquet-writer */
}

static void expect_find(lmx_parquet *pq, const char *path, int code, const char *needle)
{
    lmx_error err = {0};
    size_t col;
    CHECK_EQ_INT(lmx__parquet_find(pq, path, &col, NULL, &err), code);
    CHECK_CONTAINS(err.message, needle);
    CHECK_CONTAINS(err.message, ".parquet");
}

static void test_refusals(void)
{
    lmx_error err = {0};
    lmx_parquet *pq;
    CHECK_EQ_INT(lmx__parquet_open(DIR_ "/duckdb-lists.parquet", &pq, &err), LMX_OK);
    if (pq) {
        size_t col;
        CHECK_EQ_INT(lmx__parquet_find(pq, "text", &col, NULL, &err), LMX_OK);
        expect_find(pq, "input_ids", LMX_EUNSUPPORTED, "'input_ids' is a list or map");
        size_t c2;
        lmx_error e2 = {0};
        CHECK_EQ_INT(lmx__parquet_find_list(pq, "input_ids", &c2, NULL, &e2), LMX_OK);
        CHECK_EQ_INT(lmx__parquet_find_list(pq, "input_ids.list.element", &c2, NULL, &e2), LMX_OK);
        CHECK_EQ_INT(lmx__parquet_find_list(pq, "m", &c2, NULL, &e2), LMX_EUNSUPPORTED);
        CHECK_CONTAINS(e2.message, "'m' is a map");
        CHECK_EQ_INT(lmx__parquet_find_list(pq, "m.key_value.key", &c2, NULL, &e2), LMX_EUNSUPPORTED);
        CHECK_CONTAINS(e2.message, "is a map");
        CHECK_EQ_INT(lmx__parquet_find_list(pq, "nested", &c2, NULL, &e2), LMX_EUNSUPPORTED);
        CHECK_CONTAINS(e2.message, "'nested' is a nested list");
        CHECK_EQ_INT(lmx__parquet_find_list(pq, "strs", &c2, NULL, &e2), LMX_EUNSUPPORTED);
        CHECK_CONTAINS(e2.message, "'strs' is a list of BYTE_ARRAY");
        CHECK_EQ_INT(lmx__parquet_find_list(pq, "text", &c2, NULL, &e2), LMX_EINVAL);
        CHECK_CONTAINS(e2.message, "'text' is not a list");
        expect_find(pq, "m", LMX_EUNSUPPORTED, "'m' is a list or map");
        expect_find(pq, "s.x", LMX_EUNSUPPORTED, "'s.x' is a list or map");
        expect_find(pq, "f", LMX_EUNSUPPORTED, "type DOUBLE");
        expect_find(pq, "nope", LMX_ENOTFOUND, "no column 'nope' (columns: text, input_ids");
        lmx__parquet_close(pq);
    }
    CHECK_EQ_INT(lmx__parquet_open(DIR_ "/duckdb-snappy-v1.parquet", &pq, &err), LMX_OK);
    if (pq) {
        expect_find(pq, "meta", LMX_ENOTFOUND, "'meta' is a group (struct)");
        lmx__parquet_close(pq);
    }
    /* not Parquet, encrypted footer */
    CHECK_EQ_INT(lmx__parquet_open(DIR_ "/expected.jsonl", &pq, &err), LMX_EFORMAT);
    CHECK_CONTAINS(err.message, "expected.jsonl: not a Parquet file");
    static const uint8_t enc[16] = "PAR1\0\0\0\0\0\0\0\0PARE";
    CHECK_EQ_INT(lmx__parquet_open_mem("enc.parquet", enc, sizeof enc, &pq, &err), LMX_EUNSUPPORTED);
    CHECK_CONTAINS(err.message, "enc.parquet: encrypted");
    CHECK_EQ_INT(lmx__parquet_open("/nonexistent/x.parquet", &pq, &err), LMX_EIO);
    CHECK_CONTAINS(err.message, "/nonexistent/x.parquet");
}

/* Every truncation and many single-byte corruptions of a few files: an error naming the file, or
 * (a flipped byte inside plain data) rows; never a crash (ASan/UBSan in CI). */
static void test_corruption(json_t *expected)
{
    static const char *const files[] = {"duckdb-snappy-v1.parquet", "arrowrs-lz4raw-dba-v2.parquet",
                                        "hyparquet-uncompressed-dba.parquet", "arrowrs-gzip-dict-v2.parquet"};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        char path[1024], *data;
        size_t n;
        lmx_error err = {0};
        snprintf(path, sizeof path, "%s/%s", DIR_, files[f]);
        CHECK_EQ_INT(lmx__read_file(path, 1 << 24, &data, &n, &err), LMX_OK);
        uint8_t *buf = malloc(n);
        int page_errors = 0;
        for (size_t cut = 0; cut < n; cut += 1 + cut / 16) {
            memcpy(buf, data, cut);
            lmx_parquet *pq;
            int rc = lmx__parquet_open_mem(files[f], buf, cut, &pq, &err);
            if (rc == LMX_OK) { /* a cut right before a valid footer copy cannot happen: PAR1 at the end */
                size_t rows;
                rc = read_all(pq, NULL, &rows, &err);
                lmx__parquet_close(pq);
            }
            CHECK(rc < 0);
            CHECK_CONTAINS(err.message, files[f]);
        }
        for (size_t pos = 4; pos + 8 < n; pos += 3) {
            memcpy(buf, data, n);
            buf[pos] ^= (uint8_t)(0x5a + pos);
            lmx_parquet *pq;
            int rc = lmx__parquet_open_mem(files[f], buf, n, &pq, &err);
            if (rc == LMX_OK) {
                size_t rows;
                rc = read_all(pq, NULL, &rows, &err);
                lmx__parquet_close(pq);
                if (rc == LMX_OK)
                    CHECK(rows <= json_array_size(expected));
                else if (strstr(err.message, ", page "))
                    page_errors++;
            }
            if (rc != LMX_OK)
                CHECK_CONTAINS(err.message, files[f]);
        }
        CHECK(page_errors > 0); /* corrupt pages are reported with row group, column and page */
        free(buf);
        free(data);
    }
    /* the message of a corrupt page names everything */
    char *data;
    size_t n;
    lmx_error err = {0};
    CHECK_EQ_INT(lmx__read_file(DIR_ "/duckdb-snappy-v1.parquet", 1 << 24, &data, &n, &err), LMX_OK);
    data[16] ^= 0xff; /* inside the first page of column 'text' (snappy data) */
    lmx_parquet *pq;
    CHECK_EQ_INT(lmx__parquet_open_mem("x.parquet", (uint8_t *)data, n, &pq, &err), LMX_OK);
    size_t rows;
    CHECK(read_all(pq, NULL, &rows, &err) < 0);
    CHECK_CONTAINS(err.message, "x.parquet: row group 0, column 'text', page 0");
    lmx__parquet_close(pq);
    free(data);
}

/* Examples of Encodings.md. */
static void test_encodings(void)
{
    /* RLE/bit-packed hybrid, width 3: a bit-packed group 0..7, then an RLE run of five 4s */
    static const uint8_t rle[] = {0x03, 0x88, 0xC6, 0xFA, 0x0A, 0x04};
    pq_rle r;
    lmx__pq_rle_init(&r, rle, rle + sizeof rle, 3);
    uint32_t v;
    for (uint32_t i = 0; i < 8; i++) {
        CHECK_EQ_INT(lmx__pq_rle_next(&r, &v), 0);
        CHECK_EQ_INT(v, i);
    }
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(lmx__pq_rle_next(&r, &v), 0);
        CHECK_EQ_INT(v, 4);
    }
    CHECK_EQ_INT(lmx__pq_rle_next(&r, &v), -1);
    /* DELTA_BINARY_PACKED: 1..5 (all deltas the minimum), then 7 5 3 1 2 3 4 5 */
    static const uint8_t d1[] = {0x80, 0x01, 0x04, 0x05, 0x02, 0x02, 0, 0, 0, 0};
    static const uint8_t d2[] = {0x80, 0x01, 0x04, 0x08, 0x0E, 0x03, 2, 0, 0, 0, 0xC0, 0x3F, 0, 0, 0, 0, 0, 0, 'x'};
    pq_dbp d = {0};
    const uint8_t *end;
    lmx_error err = {0};
    uint64_t x;
    CHECK_EQ_INT(lmx__pq_dbp_init(&d, d1, d1 + sizeof d1, &end, &err), LMX_OK);
    CHECK(end == d1 + sizeof d1);
    for (uint64_t i = 1; i <= 5; i++) {
        CHECK_EQ_INT(lmx__pq_dbp_next(&d, &x), 0);
        CHECK_EQ_U64(x, i);
    }
    CHECK_EQ_INT(lmx__pq_dbp_next(&d, &x), -1);
    CHECK_EQ_INT(lmx__pq_dbp_init(&d, d2, d2 + sizeof d2, &end, &err), LMX_OK);
    CHECK(end == d2 + sizeof d2 - 1); /* the stream ends where the next section ('x') starts */
    static const int64_t want[] = {7, 5, 3, 1, 2, 3, 4, 5};
    for (int i = 0; i < 8; i++) {
        CHECK_EQ_INT(lmx__pq_dbp_next(&d, &x), 0);
        CHECK_EQ_INT((int64_t)x, want[i]);
    }
    /* truncated miniblock */
    CHECK_EQ_INT(lmx__pq_dbp_init(&d, d2, d2 + 11, &end, &err), LMX_EFORMAT);
    lmx__pq_dbp_free(&d);
}

int main(void)
{
    json_t *expected = load_expected();
    CHECK_EQ_U64(json_array_size(expected), 120);
    test_fixtures(expected);
    test_refusals();
    test_corruption(expected);
    test_encodings();
    json_decref(expected);
    TEST_MAIN_END();
}
