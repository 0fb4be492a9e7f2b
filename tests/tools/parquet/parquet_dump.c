/* parquet_dump FILE COLUMN...: the rows of the named columns as read by longmix's Parquet reader,
 * one JSON array per row (strings as JSON strings, integers as decimal strings, null as null,
 * a list of integers as an array of decimal strings).
 * For tests (parquet.independent_writers) and the reader benchmark (`--count`: only counts rows
 * and bytes, like reading the columns to /dev/null). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_parquet.h"

static void put_json_string(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

int main(int argc, char **argv)
{
    int count = argc > 1 && strcmp(argv[1], "--count") == 0;
    if (argc < 3 + count) {
        fprintf(stderr, "usage: parquet_dump [--count] FILE COLUMN...\n");
        return 2;
    }
    const char *file = argv[1 + count];
    int ncol = argc - 2 - count;
    lmx_error err = {0};
    lmx_parquet *pq;
    if (lmx__parquet_open(file, &pq, &err) != LMX_OK) {
        fprintf(stderr, "parquet_dump: %s\n", err.message);
        return 1;
    }
    lmx_parquet_col **cols = calloc((size_t)ncol, sizeof *cols);
    int *types = calloc((size_t)ncol, sizeof *types), *lists = calloc((size_t)ncol, sizeof *lists);
    for (int i = 0; i < ncol; i++) {
        size_t c;
        int rc = lmx__parquet_find(pq, argv[2 + count + i], &c, &types[i], &err);
        if (rc == LMX_EUNSUPPORTED && lmx__parquet_find_list(pq, argv[2 + count + i], &c, &types[i], &err) == LMX_OK)
            rc = LMX_OK, lists[i] = 1;
        if (rc != LMX_OK || lmx__parquet_col_open(pq, c, &cols[i], &err) != LMX_OK) {
            fprintf(stderr, "parquet_dump: %s\n", err.message);
            return 1;
        }
    }
    uint64_t rows = 0, bytes = 0;
    for (;;) {
        int end = 0;
        for (int i = 0; i < ncol; i++) {
            lmx_parquet_value v = {0};
            lmx_parquet_list l = {0};
            int rc = lists[i] ? lmx__parquet_col_next_list(cols[i], &l, &err) : lmx__parquet_col_next(cols[i], &v, &err);
            if (rc < 0) {
                fprintf(stderr, "parquet_dump: %s\n", err.message);
                return 1;
            }
            if (rc == 0) {
                end = 1;
                break;
            }
            if (count) {
                bytes += lists[i] ? l.n * 4 : v.len;
                continue;
            }
            fputs(i ? "," : "[", stdout);
            if (lists[i] && l.is_null)
                fputs("null", stdout);
            else if (lists[i]) {
                putchar('[');
                for (size_t k = 0; k < l.n; k++)
                    printf("%s\"%" PRId64 "\"", k ? "," : "", l.v[k]);
                putchar(']');
            } else if (v.is_null)
                fputs("null", stdout);
            else if (types[i] == LMX_PQ_BYTES)
                put_json_string(v.data, v.len);
            else
                printf("\"%" PRId64 "\"", v.i);
        }
        if (end)
            break;
        rows++;
        if (!count)
            fputs("]\n", stdout);
    }
    if (count)
        printf("%" PRIu64 " rows, %" PRIu64 " bytes\n", rows, bytes);
    for (int i = 0; i < ncol; i++)
        lmx__parquet_col_close(cols[i]);
    free(cols);
    free(types);
    free(lists);
    lmx__parquet_close(pq);
    return 0;
}
