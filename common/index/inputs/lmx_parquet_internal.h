/* Internals of the Parquet reader (lmx_parquet*.c), declared once:
 *   footer/page metadata  lmx_parquet_thrift.c   (Thrift compact protocol, parquet.thrift ids)
 *   page decompression    lmx_parquet_codec.c
 *   value/level encodings lmx_parquet_encoding.c (RLE/bit-packed hybrid, DELTA_BINARY_PACKED)
 *   files and schema      lmx_parquet.c      (mmap, footer, leaf columns by dotted path)
 *   column cursors        lmx_parquet_col.c  (row group -> pages -> levels and values) */
#ifndef LMX_PARQUET_INTERNAL_H
#define LMX_PARQUET_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "lmx_parquet.h"

/* ---- parquet.thrift enums (the values we act on) ---- */
enum { PQ_BOOLEAN, PQ_INT32, PQ_INT64, PQ_INT96, PQ_FLOAT, PQ_DOUBLE, PQ_BYTE_ARRAY, PQ_FIXED_LEN_BYTE_ARRAY };
enum { PQ_REQUIRED, PQ_OPTIONAL, PQ_REPEATED };
enum { PQ_CT_UTF8 = 0, PQ_CT_MAP = 1, PQ_CT_MAP_KEY_VALUE = 2, PQ_CT_LIST = 3 };
enum { PQ_LT_MAP = 2, PQ_LT_LIST = 3 }; /* LogicalType union member ids */
enum {
    PQ_ENC_PLAIN = 0, PQ_ENC_PLAIN_DICTIONARY = 2, PQ_ENC_RLE = 3, PQ_ENC_BIT_PACKED = 4,
    PQ_ENC_DELTA_BINARY_PACKED = 5, PQ_ENC_DELTA_LENGTH_BYTE_ARRAY = 6, PQ_ENC_DELTA_BYTE_ARRAY = 7,
    PQ_ENC_RLE_DICTIONARY = 8,
};
enum {
    PQ_CODEC_UNCOMPRESSED, PQ_CODEC_SNAPPY, PQ_CODEC_GZIP, PQ_CODEC_LZO, PQ_CODEC_BROTLI, PQ_CODEC_LZ4,
    PQ_CODEC_ZSTD, PQ_CODEC_LZ4_RAW,
};
enum { PQ_PAGE_DATA = 0, PQ_PAGE_INDEX = 1, PQ_PAGE_DICTIONARY = 2, PQ_PAGE_DATA_V2 = 3 };

/* ---- footer (FileMetaData), only the fields the reader uses ---- */
typedef struct pq_schema_el {
    int type;            /* -1 when absent (a group) */
    int repetition;      /* -1 when absent (the root) */
    int converted_type;  /* -1 when absent */
    int logical_type;    /* the LogicalType union member id, 0 when absent */
    int32_t num_children;
    char *name;
} pq_schema_el;

typedef struct pq_chunk {
    int type, codec;
    int has_meta, has_file_path, encrypted;
    int64_t num_values, total_compressed_size, data_page_offset, dictionary_page_offset;
} pq_chunk;

typedef struct pq_row_group {
    int64_t num_rows;
    pq_chunk *cols;
    size_t n_cols;
} pq_row_group;

typedef struct pq_meta {
    int64_t num_rows;
    pq_schema_el *schema;
    size_t n_schema;
    pq_row_group *rgs;
    size_t n_rgs;
    int encrypted; /* encryption_algorithm present (plaintext-footer encryption) */
} pq_meta;

/* Decodes FileMetaData from [p, p+n); LMX_EFORMAT with a message (no file name) when corrupt. */
int lmx__pq_meta_decode(const uint8_t *p, size_t n, pq_meta *m, lmx_error *err);
void lmx__pq_meta_free(pq_meta *m);

typedef struct pq_page_header {
    int type;
    int32_t uncompressed_size, compressed_size;
    int has_v1, has_v2, has_dict;
    int32_t num_values;         /* v1, v2, dictionary */
    int encoding;               /* v1, v2, dictionary */
    int def_encoding;           /* v1 */
    int rep_encoding;           /* v1 */
    int32_t def_len, rep_len;   /* v2 */
    int is_compressed;          /* v2 (default true) */
} pq_page_header;

/* Decodes a PageHeader at p (at most n bytes); *used gets its length. */
int lmx__pq_page_header_decode(const uint8_t *p, size_t n, pq_page_header *h, size_t *used, lmx_error *err);

/* ---- codecs ---- */
typedef struct pq_codec_ctx pq_codec_ctx; /* reusable decompression state (zstd, zlib) */
void lmx__pq_codec_free(pq_codec_ctx *c);  /* accepts NULL */
/* Decompresses exactly dst_n bytes from src[0..n) with codec into dst; *ctx is created on first
 * use. LMX_EFORMAT when the data is corrupt or not exactly dst_n bytes, LMX_EUNSUPPORTED for a
 * codec we do not read (LZO). */
int lmx__pq_decompress(pq_codec_ctx **ctx, int codec, const uint8_t *src, size_t n, uint8_t *dst, size_t dst_n,
                       lmx_error *err);
const char *lmx__pq_codec_name(int codec);

/* ---- encodings ---- */
/* RLE/bit-packed hybrid stream of bit width w (0..32) over [p, end). */
typedef struct pq_rle {
    const uint8_t *p, *end;
    unsigned w;
    uint32_t run_left; /* values left in the current run */
    int packed;        /* the current run is bit-packed */
    uint32_t value;    /* RLE run value */
    uint32_t buf[8];   /* bit-packed: the current group of 8 */
    unsigned buf_pos, buf_n;
} pq_rle;

void lmx__pq_rle_init(pq_rle *r, const uint8_t *p, const uint8_t *end, unsigned w);
/* The next value: 0, or -1 when the stream is exhausted or corrupt. */
int lmx__pq_rle_next(pq_rle *r, uint32_t *v);

/* DELTA_BINARY_PACKED stream, decoded one miniblock at a time. */
typedef struct pq_dbp {
    const uint8_t *p, *end; /* the next byte to read */
    uint64_t total, left;   /* values in the stream, values not yet returned */
    uint32_t block_size, n_mb, per_mb;
    const uint8_t *widths;  /* the current block's miniblock bit widths */
    uint32_t mb;            /* the current miniblock in the block */
    uint64_t min_delta, last;
    uint64_t *vals;         /* the current miniblock's values (per_mb), malloc'ed */
    uint32_t pos, n;        /* next index in vals, values in vals */
    int first;              /* the first value is not yet returned */
} pq_dbp;

/* Reads the header at [p, end) and walks the blocks to *data_end (the first byte after the
 * stream). LMX_EFORMAT / LMX_EUNSUPPORTED / LMX_ENOMEM with a message without context. */
int lmx__pq_dbp_init(pq_dbp *d, const uint8_t *p, const uint8_t *end, const uint8_t **data_end, lmx_error *err);
/* The next value (two's complement, wrapping): 0, or -1 when exhausted or corrupt. */
int lmx__pq_dbp_next(pq_dbp *d, uint64_t *v);
void lmx__pq_dbp_free(pq_dbp *d);

/* Bits needed for values 0..max. */
unsigned lmx__pq_bit_width(uint32_t max);

/* ---- files (lmx_parquet.c), read by the cursors (lmx_parquet_col.c) ---- */
typedef struct pq_leaf {
    char *path;  /* dotted */
    int type;    /* physical type, -1 for a childless group */
    int max_def, max_rep;
    int rep_def; /* the definition level of the (innermost) repeated node: below it, no element */
    int in_list; /* repeated itself or below a repeated/LIST/MAP node */
    int in_map;  /* below a MAP node */
} pq_leaf;

struct lmx_parquet {
    char *path;
    const uint8_t *data;
    size_t size;
    int mapped;
    size_t meta_start; /* first byte of the footer: column chunks must end before it */
    pq_meta m;
    pq_leaf *leaves;
    size_t n_leaves;
};

/* The name of a physical type ("group" when not one). */
const char *lmx__pq_type_name(int t);

#endif
