/* Parquet column cursors (see lmx_parquet.h): per cursor, row group -> column chunk -> pages ->
 * (repetition level, definition level, value) per entry, with the row group's dictionary. Files,
 * footer and schema are in lmx_parquet.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_parquet_internal.h"
#include "lmx_util.h"

#define MAX_PAGE ((size_t)1 << 30)   /* a page (uncompressed) or a value longer than this is refused */

typedef struct pq_sv {
    const uint8_t *p;
    size_t n;
} pq_sv;

struct lmx_parquet_col {
    lmx_parquet *pq;
    size_t col;
    const pq_leaf *leaf;
    size_t rg;                /* the current row group; n_rgs at the end */
    int started, done;
    int64_t entries_left;     /* level entries of the column chunk not yet read (flat: its rows) */
    int64_t rows_seen;        /* rows of the row group begun so far */
    const pq_chunk *chunk;
    const uint8_t *cp, *cend; /* the next page header, the end of the column chunk */
    long page_no;             /* 0-based page of the chunk (for messages), -1 before the first */
    size_t page_off;          /* its file offset */
    /* the row group's dictionary */
    int has_dict;
    uint8_t *dict_buf;
    size_t dict_cap, dict_n;
    pq_sv *dict_sv;
    int64_t *dict_i;
    /* the current data page */
    uint8_t *page_buf;
    size_t page_cap;
    int64_t page_left;        /* level entries (rows) not yet returned */
    int encoding;
    int has_def, has_rep;
    pq_rle def, rep;
    const uint8_t *vp, *vend; /* the values section (PLAIN: the next value) */
    int values_ready;         /* the encoding's decoder is set up (lazily: all-null pages may have none) */
    pq_rle idx;
    pq_dbp d1, d2;
    lmx_buf cur[2];           /* DELTA_BYTE_ARRAY: the previous and the current value */
    int cur_i;
    uint64_t dba_left;        /* DELTA_BYTE_ARRAY: bytes the page may still expand to */
    pq_codec_ctx *codec;
    /* list cursors: the entry read ahead (the first of the next row), the row's elements */
    int has_pending;
    uint32_t p_rep, p_def;
    int64_t p_val;
    int64_t *list;
    size_t list_cap;
};

/* ---- errors ---- */

static int col_err(lmx_parquet_col *c, lmx_error *err, int code, const char *fmt, ...) LMX_PRINTF(4, 5);
static int col_err(lmx_parquet_col *c, lmx_error *err, int code, const char *fmt, ...)
{
    char msg[LMX_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->page_no >= 0)
        return lmx__err(err, code, "%s: row group %zu, column '%s', page %ld (offset %zu): %s", c->pq->path, c->rg,
                        c->leaf->path, c->page_no, c->page_off, msg);
    return lmx__err(err, code, "%s: row group %zu, column '%s': %s", c->pq->path, c->rg, c->leaf->path, msg);
}

/* Adds the cursor's context to an error from a helper (codec, encoding). */
static int col_wrap(lmx_parquet_col *c, lmx_error *err, int rc)
{
    char inner[LMX_ERROR_MESSAGE_MAX];
    snprintf(inner, sizeof inner, "%s", err ? err->message : "");
    return col_err(c, err, rc, "%s", inner);
}

/* ---- cursors ---- */

void lmx__parquet_col_close(lmx_parquet_col *c)
{
    if (!c)
        return;
    free(c->dict_buf);
    free(c->dict_sv);
    free(c->dict_i);
    free(c->page_buf);
    lmx__pq_dbp_free(&c->d1);
    lmx__pq_dbp_free(&c->d2);
    lmx__buf_free(&c->cur[0]);
    lmx__buf_free(&c->cur[1]);
    lmx__pq_codec_free(c->codec);
    free(c->list);
    free(c);
}

int lmx__parquet_col_open(lmx_parquet *pq, size_t col, lmx_parquet_col **out, lmx_error *err)
{
    *out = NULL;
    if (col >= pq->n_leaves)
        return lmx__err(err, LMX_EINVAL, "%s: no column %zu", pq->path, col);
    lmx_parquet_col *c = calloc(1, sizeof *c);
    if (!c)
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", pq->path);
    c->pq = pq;
    c->col = col;
    c->leaf = &pq->leaves[col];
    c->page_no = -1;
    c->cur[0].cap_limit = c->cur[1].cap_limit = MAX_PAGE;
    *out = c;
    return LMX_OK;
}

/* The page's bytes uncompressed: src itself when stored plain, else decompressed into *buf. */
static int page_bytes(lmx_parquet_col *c, int codec, const uint8_t *src, size_t n, size_t raw_n, uint8_t **buf,
                      size_t *cap, const uint8_t **out, lmx_error *err)
{
    if (codec == PQ_CODEC_UNCOMPRESSED) {
        if (n != raw_n)
            return col_err(c, err, LMX_EFORMAT, "uncompressed page of %zu bytes says %zu", n, raw_n);
        *out = src;
        return LMX_OK;
    }
    if (raw_n == 0) { /* nothing to decompress (an all-null page): whatever the codec wrote for it */
        *out = src;
        return LMX_OK;
    }
    if (raw_n > MAX_PAGE)
        return col_err(c, err, LMX_EUNSUPPORTED, "page of %zu bytes uncompressed (over %zu)", raw_n, MAX_PAGE);
    if (*cap < raw_n || !*buf) {
        free(*buf);
        if (!(*buf = malloc(raw_n ? raw_n : 1))) {
            *cap = 0;
            return col_err(c, err, LMX_ENOMEM, "out of memory for a page of %zu bytes", raw_n);
        }
        *cap = raw_n;
    }
    int rc = lmx__pq_decompress(&c->codec, codec, src, n, *buf, raw_n, err);
    if (rc != LMX_OK)
        return col_wrap(c, err, rc);
    *out = *buf;
    return LMX_OK;
}

static int load_dictionary(lmx_parquet_col *c, const pq_page_header *h, const uint8_t *src, lmx_error *err)
{
    if (c->has_dict)
        return col_err(c, err, LMX_EFORMAT, "a second dictionary page");
    if (!h->has_dict)
        return col_err(c, err, LMX_EFORMAT, "dictionary page without its header");
    if (h->encoding != PQ_ENC_PLAIN && h->encoding != PQ_ENC_PLAIN_DICTIONARY)
        return col_err(c, err, LMX_EUNSUPPORTED, "dictionary page encoding %d", h->encoding);
    const uint8_t *p;
    int rc = page_bytes(c, c->chunk->codec, src, (size_t)h->compressed_size, (size_t)h->uncompressed_size,
                        &c->dict_buf, &c->dict_cap, &p, err);
    if (rc != LMX_OK)
        return rc;
    size_t n = (size_t)h->num_values, len = (size_t)h->uncompressed_size;
    const uint8_t *end = p + len;
    size_t w = c->leaf->type == PQ_INT32 ? 4 : c->leaf->type == PQ_INT64 ? 8 : 4; /* the least bytes a value takes */
    if (n > len / w)
        return col_err(c, err, LMX_EFORMAT, "dictionary of %zu values in %zu bytes", n, len);
    free(c->dict_sv);
    free(c->dict_i);
    c->dict_sv = NULL;
    c->dict_i = NULL;
    if (c->leaf->type == PQ_BYTE_ARRAY) {
        if (!(c->dict_sv = malloc((n ? n : 1) * sizeof *c->dict_sv)))
            return col_err(c, err, LMX_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            if (end - p < 4 || lmx__get32(p) > (size_t)(end - p - 4))
                return col_err(c, err, LMX_EFORMAT, "dictionary value %zu runs past the page", i);
            c->dict_sv[i] = (pq_sv){p + 4, lmx__get32(p)};
            p += 4 + c->dict_sv[i].n;
        }
    } else {
        if (!(c->dict_i = malloc((n ? n : 1) * sizeof *c->dict_i)))
            return col_err(c, err, LMX_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
            c->dict_i[i] = w == 4 ? (int32_t)lmx__get32(p + 4 * i) : (int64_t)lmx__get64(p + 8 * i);
    }
    c->dict_n = n;
    c->has_dict = 1;
    return LMX_OK;
}

static const char *encoding_name(int e)
{
    static const char *const names[] = {"PLAIN", "GROUP_VAR_INT", "PLAIN_DICTIONARY", "RLE", "BIT_PACKED",
                                        "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
                                        "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"};
    return e >= 0 && e < 10 ? names[e] : "unknown";
}

/* Sets up the values decoder of the current page (on its first non-null value). */
static int values_init(lmx_parquet_col *c, lmx_error *err)
{
    int bytes = c->leaf->type == PQ_BYTE_ARRAY, rc = LMX_OK;
    const uint8_t *e1, *e2;
    c->values_ready = 1;
    switch (c->encoding) {
    case PQ_ENC_PLAIN:
        return LMX_OK;
    case PQ_ENC_PLAIN_DICTIONARY:
    case PQ_ENC_RLE_DICTIONARY:
        if (!c->has_dict)
            return col_err(c, err, LMX_EFORMAT, "dictionary-encoded page without a dictionary page");
        if (c->vp >= c->vend || *c->vp > 32)
            return col_err(c, err, LMX_EFORMAT, "bad dictionary index bit width");
        lmx__pq_rle_init(&c->idx, c->vp + 1, c->vend, *c->vp);
        return LMX_OK;
    case PQ_ENC_DELTA_BINARY_PACKED:
        if (bytes)
            break;
        rc = lmx__pq_dbp_init(&c->d1, c->vp, c->vend, &e1, err);
        break;
    case PQ_ENC_DELTA_LENGTH_BYTE_ARRAY:
        if (!bytes)
            break;
        if ((rc = lmx__pq_dbp_init(&c->d1, c->vp, c->vend, &e1, err)) == LMX_OK)
            c->vp = e1;
        break;
    case PQ_ENC_DELTA_BYTE_ARRAY:
        if (!bytes)
            break;
        if ((rc = lmx__pq_dbp_init(&c->d1, c->vp, c->vend, &e1, err)) == LMX_OK &&
            (rc = lmx__pq_dbp_init(&c->d2, e1, c->vend, &e2, err)) == LMX_OK)
            c->vp = e2;
        c->cur[0].len = c->cur[1].len = 0; /* prefixes refer to values of the same page */
        /* shared prefixes expand a page; bounded so a hostile page cannot make reading quadratic */
        c->dba_left = (uint64_t)(c->vend - c->vp) * 256 + ((uint64_t)1 << 26);
        break;
    default:
        return col_err(c, err, LMX_EUNSUPPORTED, "encoding %s (%d) is not supported for %s", encoding_name(c->encoding),
                       c->encoding, lmx__pq_type_name(c->leaf->type));
    }
    if (rc != LMX_OK)
        return col_wrap(c, err, rc);
    if (c->encoding == PQ_ENC_DELTA_BINARY_PACKED ? bytes : !bytes)
        return col_err(c, err, LMX_EUNSUPPORTED, "encoding %s is not supported for %s", encoding_name(c->encoding),
                       lmx__pq_type_name(c->leaf->type));
    return LMX_OK;
}

static int load_data_page(lmx_parquet_col *c, const pq_page_header *h, const uint8_t *src, lmx_error *err)
{
    const pq_chunk *ch = c->chunk;
    size_t comp = (size_t)h->compressed_size, raw = (size_t)h->uncompressed_size;
    const uint8_t *p, *end;
    int max_def = c->leaf->max_def;
    unsigned w = lmx__pq_bit_width((uint32_t)max_def);
    c->has_def = max_def > 0;
    c->has_rep = c->leaf->max_rep > 0;
    if (h->type == PQ_PAGE_DATA) {
        if (!h->has_v1)
            return col_err(c, err, LMX_EFORMAT, "data page without its header");
        int rc = page_bytes(c, ch->codec, src, comp, raw, &c->page_buf, &c->page_cap, &p, err);
        if (rc != LMX_OK)
            return rc;
        end = p + raw;
        if (c->leaf->max_rep > 0) {
            if (h->rep_encoding != PQ_ENC_RLE)
                return col_err(c, err, LMX_EUNSUPPORTED, "repetition levels encoded %s (only RLE is supported)",
                               encoding_name(h->rep_encoding));
            if (end - p < 4 || lmx__get32(p) > (size_t)(end - p - 4))
                return col_err(c, err, LMX_EFORMAT, "repetition levels run past the page");
            size_t n = lmx__get32(p);
            lmx__pq_rle_init(&c->rep, p + 4, p + 4 + n, lmx__pq_bit_width((uint32_t)c->leaf->max_rep));
            p += 4 + n;
        }
        if (max_def > 0) {
            if (h->def_encoding != PQ_ENC_RLE)
                return col_err(c, err, LMX_EUNSUPPORTED, "definition levels encoded %s (only RLE is supported)",
                               encoding_name(h->def_encoding));
            if (end - p < 4 || lmx__get32(p) > (size_t)(end - p - 4))
                return col_err(c, err, LMX_EFORMAT, "definition levels run past the page");
            size_t n = lmx__get32(p);
            lmx__pq_rle_init(&c->def, p + 4, p + 4 + n, w);
            p += 4 + n;
        }
    } else {
        if (!h->has_v2)
            return col_err(c, err, LMX_EFORMAT, "data page v2 without its header");
        size_t lev = (size_t)h->rep_len + (size_t)h->def_len;
        if (lev > comp || lev > raw)
            return col_err(c, err, LMX_EFORMAT, "levels (%zu bytes) longer than the page", lev);
        if (max_def > 0)
            lmx__pq_rle_init(&c->def, src + h->rep_len, src + lev, w);
        if (c->leaf->max_rep > 0)
            lmx__pq_rle_init(&c->rep, src, src + h->rep_len, lmx__pq_bit_width((uint32_t)c->leaf->max_rep));
        int codec = h->is_compressed ? ch->codec : PQ_CODEC_UNCOMPRESSED;
        int rc = page_bytes(c, codec, src + lev, comp - lev, raw - lev, &c->page_buf, &c->page_cap, &p, err);
        if (rc != LMX_OK)
            return rc;
        end = p + (raw - lev);
    }
    c->vp = p;
    c->vend = end;
    c->encoding = h->encoding;
    c->page_left = h->num_values;
    c->values_ready = 0;
    return LMX_OK;
}

/* Reads page headers until the next data page of the chunk. */
static int next_page(lmx_parquet_col *c, lmx_error *err)
{
    for (;;) {
        c->page_no++;
        c->page_off = (size_t)(c->cp - c->pq->data);
        if (c->cp >= c->cend)
            return col_err(c, err, LMX_EFORMAT, "column chunk ends with %lld of its values missing (truncated?)",
                           (long long)c->entries_left);
        pq_page_header h;
        size_t used;
        if (lmx__pq_page_header_decode(c->cp, (size_t)(c->cend - c->cp), &h, &used, err) != LMX_OK)
            return col_wrap(c, err, LMX_EFORMAT);
        const uint8_t *src = c->cp + used;
        if ((size_t)h.compressed_size > (size_t)(c->cend - src))
            return col_err(c, err, LMX_EFORMAT, "page of %d bytes runs past its column chunk (truncated?)",
                           h.compressed_size);
        c->cp = src + h.compressed_size;
        if (h.type == PQ_PAGE_DICTIONARY) {
            int rc = load_dictionary(c, &h, src, err);
            if (rc != LMX_OK)
                return rc;
        } else if (h.type == PQ_PAGE_DATA || h.type == PQ_PAGE_DATA_V2) {
            int rc = load_data_page(c, &h, src, err);
            if (rc != LMX_OK || c->page_left > 0)
                return rc;
        } /* index pages and page types of later versions are skipped */
    }
}

/* Moves to the next row group with rows: 1, or 0 after the last. */
static int next_row_group(lmx_parquet_col *c, lmx_error *err)
{
    const lmx_parquet *pq = c->pq;
    for (;;) {
        c->rg = c->started ? c->rg + 1 : 0;
        c->started = 1;
        c->page_no = -1;
        c->page_left = 0;
        c->has_dict = 0;
        if (c->rg >= pq->m.n_rgs)
            return 0;
        const pq_row_group *rg = &pq->m.rgs[c->rg];
        const pq_chunk *ch = c->chunk = &rg->cols[c->col];
        c->entries_left = c->leaf->max_rep ? ch->num_values : rg->num_rows;
        c->rows_seen = 0;
        if (rg->num_rows == 0)
            continue;
        if (ch->encrypted)
            return col_err(c, err, LMX_EUNSUPPORTED, "encrypted columns are not supported");
        if (ch->has_file_path)
            return col_err(c, err, LMX_EUNSUPPORTED, "the column chunk is stored in another file");
        if (!ch->has_meta || ch->type != c->leaf->type)
            return col_err(c, err, LMX_EFORMAT, "corrupt footer (column metadata missing or of another type)");
        int64_t start = ch->data_page_offset;
        if (ch->dictionary_page_offset > 0 && ch->dictionary_page_offset < start)
            start = ch->dictionary_page_offset;
        if (start < 4 || ch->total_compressed_size < 0 || (uint64_t)start > pq->meta_start ||
            (uint64_t)ch->total_compressed_size > pq->meta_start - (uint64_t)start)
            return col_err(c, err, LMX_EFORMAT, "column chunk at %lld (+%lld bytes) outside the file's data",
                           (long long)start, (long long)ch->total_compressed_size);
        c->cp = pq->data + start;
        c->cend = c->cp + ch->total_compressed_size;
        return 1;
    }
}

static int next_bytes(lmx_parquet_col *c, lmx_parquet_value *v, lmx_error *err)
{
    uint64_t a, b;
    size_t left = (size_t)(c->vend - c->vp);
    switch (c->encoding) {
    case PQ_ENC_PLAIN:
        if (left < 4 || lmx__get32(c->vp) > left - 4)
            return col_err(c, err, LMX_EFORMAT, "value runs past the page");
        v->len = lmx__get32(c->vp);
        v->data = (const char *)c->vp + 4;
        c->vp += 4 + v->len;
        return LMX_OK;
    case PQ_ENC_DELTA_LENGTH_BYTE_ARRAY:
        if (lmx__pq_dbp_next(&c->d1, &a) != 0 || a > left)
            return col_err(c, err, LMX_EFORMAT, "corrupt DELTA_LENGTH_BYTE_ARRAY lengths");
        v->data = (const char *)c->vp;
        v->len = (size_t)a;
        c->vp += a;
        return LMX_OK;
    case PQ_ENC_DELTA_BYTE_ARRAY: {
        lmx_buf *prev = &c->cur[c->cur_i], *cur = &c->cur[c->cur_i ^ 1];
        if (lmx__pq_dbp_next(&c->d1, &a) != 0 || lmx__pq_dbp_next(&c->d2, &b) != 0 || a > prev->len || b > left)
            return col_err(c, err, LMX_EFORMAT, "corrupt DELTA_BYTE_ARRAY prefix or suffix lengths");
        if (a + b > c->dba_left)
            return col_err(c, err, LMX_EUNSUPPORTED, "DELTA_BYTE_ARRAY page expands to over 256 times its size");
        c->dba_left -= a + b;
        cur->len = 0;
        if (lmx__buf_reserve(cur, (size_t)(a + b) + 1) != LMX_OK)
            return col_err(c, err, LMX_ENOMEM, "value of %llu bytes", (unsigned long long)(a + b));
        if (a)
            memcpy(cur->data, prev->data, (size_t)a);
        if (b)
            memcpy(cur->data + a, c->vp, (size_t)b);
        cur->len = (size_t)(a + b);
        c->vp += b;
        c->cur_i ^= 1;
        v->data = (const char *)cur->data;
        v->len = cur->len;
        return LMX_OK;
    }
    default: { /* dictionary */
        uint32_t k;
        if (lmx__pq_rle_next(&c->idx, &k) != 0)
            return col_err(c, err, LMX_EFORMAT, "corrupt dictionary indices");
        if (k >= c->dict_n)
            return col_err(c, err, LMX_EFORMAT, "dictionary index %u of %zu", k, c->dict_n);
        v->data = (const char *)c->dict_sv[k].p;
        v->len = c->dict_sv[k].n;
        return LMX_OK;
    }
    }
}

static int next_int(lmx_parquet_col *c, lmx_parquet_value *v, lmx_error *err)
{
    int is32 = c->leaf->type == PQ_INT32;
    uint64_t a;
    switch (c->encoding) {
    case PQ_ENC_PLAIN:
        if ((size_t)(c->vend - c->vp) < (is32 ? 4u : 8u))
            return col_err(c, err, LMX_EFORMAT, "value runs past the page");
        v->i = is32 ? (int32_t)lmx__get32(c->vp) : (int64_t)lmx__get64(c->vp);
        c->vp += is32 ? 4 : 8;
        return LMX_OK;
    case PQ_ENC_DELTA_BINARY_PACKED:
        if (lmx__pq_dbp_next(&c->d1, &a) != 0)
            return col_err(c, err, LMX_EFORMAT, "corrupt DELTA_BINARY_PACKED values");
        v->i = is32 ? (int32_t)(uint32_t)a : (int64_t)a;
        return LMX_OK;
    default: {
        uint32_t k;
        if (lmx__pq_rle_next(&c->idx, &k) != 0)
            return col_err(c, err, LMX_EFORMAT, "corrupt dictionary indices");
        if (k >= c->dict_n)
            return col_err(c, err, LMX_EFORMAT, "dictionary index %u of %zu", k, c->dict_n);
        v->i = c->dict_i[k];
        return LMX_OK;
    }
    }
}

/* The next level entry of the column: 1 with its levels and (when defined) value, 0 after the
 * last, or an error. Moves across pages and row groups and checks each row group's row count. */
static int next_entry(lmx_parquet_col *c, uint32_t *rep, uint32_t *def, lmx_parquet_value *v, lmx_error *err)
{
    if (c->done)
        return 0;
    while (!c->started || c->entries_left <= 0) {
        if (c->started && c->rg < c->pq->m.n_rgs) {
            int64_t want = c->pq->m.rgs[c->rg].num_rows;
            if (c->page_left > 0)
                return col_err(c, err, LMX_EFORMAT, "page has %lld values more than its column chunk",
                               (long long)c->page_left);
            if (c->rows_seen != want)
                return col_err(c, err, LMX_EFORMAT, "column has %lld rows, its row group %lld",
                               (long long)c->rows_seen, (long long)want);
        }
        int rc = next_row_group(c, err);
        if (rc <= 0) {
            c->done = rc == 0;
            return rc;
        }
    }
    if (c->page_left == 0) {
        int rc = next_page(c, err);
        if (rc != LMX_OK)
            return rc;
    }
    c->page_left--;
    c->entries_left--;
    memset(v, 0, sizeof *v);
    *rep = *def = 0;
    if (c->has_rep && (lmx__pq_rle_next(&c->rep, rep) != 0 || *rep > (uint32_t)c->leaf->max_rep ||
                       (c->rows_seen == 0 && *rep != 0)))
        return col_err(c, err, LMX_EFORMAT, "corrupt repetition levels");
    if (*rep == 0)
        c->rows_seen++;
    if (c->has_def && (lmx__pq_rle_next(&c->def, def) != 0 || *def > (uint32_t)c->leaf->max_def))
        return col_err(c, err, LMX_EFORMAT, "corrupt definition levels");
    if (c->has_def && *def < (uint32_t)c->leaf->max_def) {
        v->is_null = 1;
        return 1;
    }
    *def = (uint32_t)c->leaf->max_def;
    if (!c->values_ready) {
        int rc = values_init(c, err);
        if (rc != LMX_OK)
            return rc;
    }
    int rc = c->leaf->type == PQ_BYTE_ARRAY ? next_bytes(c, v, err) : next_int(c, v, err);
    return rc == LMX_OK ? 1 : rc;
}

int lmx__parquet_col_next(lmx_parquet_col *c, lmx_parquet_value *v, lmx_error *err)
{
    uint32_t rep, def;
    if (c->leaf->max_rep)
        return lmx__err(err, LMX_EINVAL, "%s: column '%s' is a list: read it with lmx__parquet_col_next_list",
                        c->pq->path, c->leaf->path);
    return next_entry(c, &rep, &def, v, err);
}

int lmx__parquet_col_next_list(lmx_parquet_col *c, lmx_parquet_list *out, lmx_error *err)
{
    const pq_leaf *l = c->leaf;
    if (l->max_rep != 1 || l->type == PQ_BYTE_ARRAY)
        return lmx__err(err, LMX_EINVAL, "%s: column '%s' is not a list of integers", c->pq->path, l->path);
    lmx_parquet_value v;
    if (!c->has_pending) { /* the first row */
        int rc = next_entry(c, &c->p_rep, &c->p_def, &v, err);
        if (rc <= 0)
            return rc;
        c->p_val = v.i;
        c->has_pending = 1;
    }
    memset(out, 0, sizeof *out);
    out->v = c->list;
    uint32_t rep = c->p_rep, def = c->p_def;
    int64_t val = c->p_val;
    c->has_pending = 0;
    for (;;) {
        if (def < (uint32_t)l->rep_def) { /* no element: an empty list, or a null one above it */
            if (rep != 0)
                return col_err(c, err, LMX_EFORMAT, "corrupt levels (an empty list inside a row)");
            out->is_null = (int)def < l->rep_def - 1;
        } else if (def < (uint32_t)l->max_def) {
            out->null_elements++;
        } else {
            if (out->n == c->list_cap) {
                size_t cap = c->list_cap ? c->list_cap * 2 : 1024;
                int64_t *nv = cap > (size_t)1 << 28 ? NULL : realloc(c->list, cap * sizeof *nv);
                if (!nv)
                    return col_err(c, err, LMX_ENOMEM, "a list of more than %zu elements", c->list_cap);
                c->list = nv;
                c->list_cap = cap;
            }
            c->list[out->n++] = val;
        }
        int rc = next_entry(c, &rep, &def, &v, err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
        if (rep == 0) { /* the next row begins */
            c->p_rep = rep;
            c->p_def = def;
            c->p_val = v.i;
            c->has_pending = 1;
            break;
        }
        val = v.i;
    }
    out->v = c->list;
    return 1;
}
