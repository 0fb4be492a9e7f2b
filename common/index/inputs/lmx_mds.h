/* MosaicML Streaming MDS, the parts that need no files (also the fuzz target's surface): the
 * dataset's index.json, a shard's sample table, a sample's columns, and token columns as ids.
 *
 * Layout followed (mosaicml-streaming MDSWriter, index/shard "version": 2; see proto/INDEX.md):
 *   index.json  {"version": 2, "shards": [{"format": "mds", "version": 2, "column_names": [...],
 *               "column_encodings": [...], "column_sizes": [N|null, ...], "compression": null |
 *               "zstd[:L]" | "gz[:L]" | ..., "samples": N, "raw_data": {"basename", "bytes"},
 *               "zip_data": null | {"basename", "bytes"}}, ...]}
 *   shard       u32 n_samples; u32 offsets[n_samples + 1] (absolute, into the shard); anything
 *               (the writer's JSON config) up to offsets[0]; sample k = bytes [offsets[k],
 *               offsets[k+1]).
 *   sample      u32 size of every variable-size column (column_sizes null), in column order;
 *               then every column's bytes in column order.
 *   ndarray     "ndarray:DTYPE:SHAPE" values only; "ndarray:DTYPE" u8 (ndim << 2 | shape width
 *               code) + ndim shape ints + values; "ndarray" the same after a u8 dtype code.
 * Everything is little endian. Errors name `where` (the index.json path or the shard file) and
 * the shard/sample. */
#ifndef LMX_MDS_H
#define LMX_MDS_H

#include <stddef.h>
#include <stdint.h>

#include "lmx_inputs.h"

enum lmx_mds_kind {
    LMX_MDS_OTHER,   /* anything we do not read (images, pickles, floats, ...) */
    LMX_MDS_STR,     /* str: UTF-8 text */
    LMX_MDS_BYTES,   /* bytes: untyped (tokens need --token-dtype) */
    LMX_MDS_NDARRAY, /* ndarray[:DTYPE[:SHAPE]] */
    LMX_MDS_INT,     /* int, int8..int64, uint8..uint64 scalars; str_int (text) counts as STR */
};

/* Element types by MDS's own dtype codes (uint8 8, int8 9, uint16 16, int16 17, uint32 32,
 * int32 33, uint64 64, int64 65); 0 = not fixed by the encoding. */
typedef struct lmx_mds_col {
    char *name, *encoding;
    int kind;        /* enum lmx_mds_kind */
    int dtype;       /* NDARRAY / INT: the element dtype code, 0 = in each value (NDARRAY) */
    int static_shape;/* NDARRAY: shape given by the encoding (values only) */
    uint32_t size;   /* fixed size in bytes, 0 = variable (column_sizes null) */
} lmx_mds_col;

typedef struct lmx_mds_shard {
    char *raw_name, *zip_name; /* basenames inside the dataset folder; zip_name NULL = none */
    char *compression;         /* NULL = none */
    uint64_t raw_bytes, zip_bytes, samples;
    lmx_mds_col *cols;
    size_t n_cols, n_var;      /* n_var: columns with a size per sample */
} lmx_mds_shard;

typedef struct lmx_mds_index {
    lmx_mds_shard *shards;
    size_t n;
} lmx_mds_index;

/* Parses index.json bytes (where names it in errors): LMX_EFORMAT (not an MDS index, a field
 * missing or wrong, naming shard and field), LMX_EUNSUPPORTED (version, format). *out is freed
 * with lmx__mds_index_free (also after an error). */
int lmx__mds_index_parse(const char *json, size_t len, const char *where, lmx_mds_index *out, lmx_error *err);
void lmx__mds_index_free(lmx_mds_index *ix);
/* The column called name in shard s, or -1. */
int lmx__mds_col(const lmx_mds_shard *s, const char *name);

/* Checks a whole shard's sample table against s (sample count, offsets in order and inside the
 * data): LMX_EFORMAT naming where and the first bad sample. */
int lmx__mds_shard_check(const uint8_t *data, size_t size, const lmx_mds_shard *s, const char *where, lmx_error *err);

/* A column value inside a sample. */
typedef struct lmx_mds_value {
    const uint8_t *p;
    size_t len;
} lmx_mds_value;

/* Sample k (0-based) of a checked shard split into its columns (vals: n_cols entries). 0, or 1
 * with why filled when the sample's column sizes do not fit it. */
int lmx__mds_sample(const uint8_t *data, const lmx_mds_shard *s, uint64_t k, lmx_mds_value *vals, char *why,
                    size_t why_n);

/* A token column value as ids (appended to out after reset): 0, 1 with why (a bad value: not
 * integers, a wrong shape, an id outside [0, vocab)), or LMX_ENOMEM. bytes_dtype: enum
 * lmx_token_dtype for BYTES columns. */
int lmx__mds_tokens(const lmx_mds_col *c, lmx_mds_value v, int bytes_dtype, uint32_t vocab, lmx_ids *out, char *why,
                    size_t why_n);

/* An INT (or STR) column value as decimal text into out (NUL-terminated): 0, or 1 when the value
 * cannot be shown. */
int lmx__mds_id_text(const lmx_mds_col *c, lmx_mds_value v, lmx_buf *out);

#endif
