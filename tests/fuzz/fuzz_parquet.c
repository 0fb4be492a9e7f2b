/* libFuzzer target: the Parquet reader (common/index/inputs/lmx_parquet*.c: Thrift footer and
 * page headers, schema tree, codecs, levels and value encodings) on arbitrary file bytes.
 * Checked: an error names the file; every column (lists of integers row by row) of an accepted file reads (at most 20000 rows per
 * column, so a footer claiming billions of rows does not time out) to its end or to an error
 * naming the file, and every value's bytes are readable (ASan). */
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "lmx_parquet.h"

#define NAME "fuzz.parquet"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmx_parquet *pq;
    lmx_error err = {0};
    if (lmx__parquet_open_mem(NAME, data, size, &pq, &err) != LMX_OK) {
        FUZZ_CHECK(err.code < 0 && strstr(err.message, NAME));
        return 0;
    }
    size_t n = lmx__parquet_num_columns(pq);
    for (size_t i = 0; i < n && i < 8; i++) {
        size_t col;
        int type;
        const char *path = lmx__parquet_column_path(pq, i);
        int list = 0;
        if (lmx__parquet_find(pq, path, &col, &type, &err) != LMX_OK) {
            FUZZ_CHECK(strstr(err.message, NAME));
            if (lmx__parquet_find_list(pq, path, &col, &type, &err) != LMX_OK) {
                FUZZ_CHECK(strstr(err.message, NAME));
                continue;
            }
            list = 1;
        }
        lmx_parquet_col *c;
        FUZZ_CHECK(lmx__parquet_col_open(pq, col, &c, &err) == LMX_OK);
        volatile uint8_t sink = 0;
        lmx_parquet_value v;
        int rc = 1;
        lmx_parquet_list l;
        for (int k = 0; k < 20000 && list && (rc = lmx__parquet_col_next_list(c, &l, &err)) == 1; k++)
            if (l.n)
                sink ^= (uint8_t)(l.v[0] ^ l.v[l.n - 1]);
        for (int k = 0; k < 20000 && !list && (rc = lmx__parquet_col_next(c, &v, &err)) == 1; k++) {
            FUZZ_CHECK(!v.is_null || v.len == 0);
            if (type == LMX_PQ_BYTES && v.len)
                sink ^= (uint8_t)(v.data[0] ^ v.data[v.len - 1]);
        }
        (void)sink;
        if (rc < 0)
            FUZZ_CHECK(strstr(err.message, NAME));
        lmx__parquet_col_close(c);
    }
    lmx__parquet_close(pq);
    return 0;
}
