/* A focused Apache Parquet reader (format spec: apache/parquet-format parquet.thrift and
 * Encodings.md) for the columns text corpora use: one value per row of a BYTE_ARRAY (strings),
 * INT32 or INT64 leaf column, possibly inside structs (addressed by dotted paths such as
 * "meta.redpajama_set_name") and possibly null. Supported: data pages v1 and v2, dictionary pages,
 * encodings PLAIN, PLAIN_DICTIONARY/RLE_DICTIONARY, DELTA_BINARY_PACKED, DELTA_LENGTH_BYTE_ARRAY,
 * DELTA_BYTE_ARRAY, RLE/bit-packed levels, codecs UNCOMPRESSED, SNAPPY, GZIP, BROTLI, LZ4 (Hadoop
 * framing), LZ4_RAW and ZSTD; also lists of INT32/INT64 (pre-tokenized `input_ids`), one list per
 * row. Refused with LMX_EUNSUPPORTED naming the file and column: maps, nested lists, lists of
 * strings or structs, encrypted files, column chunks stored in other files.
 *
 * The file is mmap'ed; a column cursor holds one decompressed page and its row group's
 * dictionary, so memory is bounded by a page (+ dictionary) per open column, not by the file.
 * Every length read from the file is checked against the bytes that hold it: a corrupt or
 * truncated file is LMX_EFORMAT naming the file, row group, column and page.
 *
 * Threads: an lmx_parquet and its cursors are used by one thread at a time. */
#ifndef LMX_PARQUET_H
#define LMX_PARQUET_H

#include <stddef.h>
#include <stdint.h>
#include "lmx_error.h"

typedef struct lmx_parquet lmx_parquet;         /* an open file: its mapping and footer */
typedef struct lmx_parquet_col lmx_parquet_col; /* a cursor over one leaf column, row by row */

enum lmx_parquet_type { LMX_PQ_BYTES, LMX_PQ_INT32, LMX_PQ_INT64 };

/* One row's value. data is owned by the cursor and valid until its next next()/close(). */
typedef struct lmx_parquet_value {
    int is_null;
    const char *data; /* LMX_PQ_BYTES */
    size_t len;
    int64_t i;        /* LMX_PQ_INT32, LMX_PQ_INT64 */
} lmx_parquet_value;

/* One row of a list column. v is owned by the cursor, valid until its next call/close. */
typedef struct lmx_parquet_list {
    int is_null;          /* the list itself is null (n == 0) */
    size_t n;
    const int64_t *v;
    size_t null_elements; /* null elements (not in v) */
} lmx_parquet_list;

/* Opens and maps path (copied) and decodes its footer. */
int lmx__parquet_open(const char *path, lmx_parquet **out, lmx_error *err);
/* The same over bytes the caller keeps alive until close (fuzzing, tests); name is for messages. */
int lmx__parquet_open_mem(const char *name, const uint8_t *data, size_t size, lmx_parquet **out, lmx_error *err);
void lmx__parquet_close(lmx_parquet *pq); /* accepts NULL; close the cursors first */

uint64_t lmx__parquet_num_rows(const lmx_parquet *pq);
size_t lmx__parquet_num_row_groups(const lmx_parquet *pq);
size_t lmx__parquet_num_columns(const lmx_parquet *pq);
/* The dotted path of leaf column i (owned by pq). */
const char *lmx__parquet_column_path(const lmx_parquet *pq, size_t i);

/* The leaf column at dotted path: LMX_OK with *col, LMX_ENOTFOUND when the file has no such
 * column (or path names a group), LMX_EUNSUPPORTED for a list/map column or a type other than
 * BYTE_ARRAY/INT32/INT64; *type (optional) gets enum lmx_parquet_type. */
int lmx__parquet_find(const lmx_parquet *pq, const char *path, size_t *col, int *type, lmx_error *err);

/* The list column at path (the list group, e.g. "input_ids", or its leaf
 * "input_ids.list.element"): one level of repetition over one INT32/INT64 leaf. LMX_OK with *col
 * and *type; LMX_EINVAL when path is a column but not a list; LMX_ENOTFOUND; LMX_EUNSUPPORTED for
 * maps, nested lists, lists of other types. */
int lmx__parquet_find_list(const lmx_parquet *pq, const char *path, size_t *col, int *type, lmx_error *err);

/* A cursor over column col from the first row of the first row group. */
int lmx__parquet_col_open(lmx_parquet *pq, size_t col, lmx_parquet_col **out, lmx_error *err);
/* The next row's value: 1 with *v, 0 after the last row, or LMX_EFORMAT/LMX_EUNSUPPORTED/
 * LMX_ENOMEM naming file, row group, column and page. */
int lmx__parquet_col_next(lmx_parquet_col *c, lmx_parquet_value *v, lmx_error *err);
/* The next row of a list column (found by lmx__parquet_find_list): 1, 0 after the last row, or
 * an error as for lmx__parquet_col_next. */
int lmx__parquet_col_next_list(lmx_parquet_col *c, lmx_parquet_list *out, lmx_error *err);
void lmx__parquet_col_close(lmx_parquet_col *c); /* accepts NULL */

#endif
