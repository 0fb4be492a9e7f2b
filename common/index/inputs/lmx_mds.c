/* MDS index.json, sample tables, columns and token values: see lmx_mds.h. Written from the
 * published format (mosaicml-streaming's MDSWriter/MDSReader and its encodings), no code shared. */
#include "lmx_mds.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dtype name -> MDS dtype code (the codes dynamic-dtype ndarrays store in their first byte). */
static const struct {
    const char *name;
    int code;
} dtypes[] = {{"uint8", 8},    {"int8", 9},    {"uint16", 16},  {"int16", 17},   {"float16", 18}, {"uint32", 32},
              {"int32", 33},   {"float32", 34}, {"uint64", 64}, {"int64", 65},   {"float64", 66}};

static int dtype_code(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (strlen(dtypes[i].name) == n && memcmp(dtypes[i].name, name, n) == 0)
            return dtypes[i].code;
    return 0;
}

static const char *dtype_name(int code)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (dtypes[i].code == code)
            return dtypes[i].name;
    return "?";
}

static int is_int_dtype(int code) { return code && code != 18 && code != 34 && code != 66; }
static size_t dtype_bytes(int code) { return code >= 64 ? 8 : code >= 32 ? 4 : code >= 16 ? 2 : 1; }

/* Kind, dtype and static shape of an encoding string. */
static void parse_encoding(lmx_mds_col *c)
{
    const char *e = c->encoding;
    c->kind = LMX_MDS_OTHER;
    if (!strcmp(e, "str") || !strcmp(e, "str_int") || !strcmp(e, "str_float") || !strcmp(e, "str_decimal"))
        c->kind = LMX_MDS_STR;
    else if (!strcmp(e, "bytes"))
        c->kind = LMX_MDS_BYTES;
    else if (!strcmp(e, "int")) {
        c->kind = LMX_MDS_INT;
        c->dtype = 65;
    } else if (strncmp(e, "ndarray", 7) == 0 && (e[7] == '\0' || e[7] == ':')) {
        c->kind = LMX_MDS_NDARRAY;
        if (e[7] == ':') {
            const char *d = e + 8, *colon = strchr(d, ':');
            c->dtype = dtype_code(d, colon ? (size_t)(colon - d) : strlen(d));
            c->static_shape = colon != NULL;
            if (!c->dtype)
                c->kind = LMX_MDS_OTHER;
        }
    } else if (is_int_dtype(dtype_code(e, strlen(e)))) {
        c->kind = LMX_MDS_INT;
        c->dtype = dtype_code(e, strlen(e));
    }
}

static char *dup_str(json_t *v) { return json_is_string(v) ? strdup(json_string_value(v)) : NULL; }

void lmx__mds_index_free(lmx_mds_index *ix)
{
    for (size_t i = 0; ix && i < ix->n; i++) {
        lmx_mds_shard *s = &ix->shards[i];
        free(s->raw_name);
        free(s->zip_name);
        free(s->compression);
        for (size_t c = 0; c < s->n_cols; c++) {
            free(s->cols[c].name);
            free(s->cols[c].encoding);
        }
        free(s->cols);
    }
    if (ix) {
        free(ix->shards);
        ix->shards = NULL;
        ix->n = 0;
    }
}

static int int_field(json_t *o, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* A shard file name must stay inside the dataset folder. */
static int bad_basename(const char *b) { return !b || !*b || strcmp(b, ".") == 0 || strstr(b, "..") || b[0] == '/'; }

static int parse_shard(json_t *o, size_t i, const char *where, lmx_mds_shard *s, lmx_error *err)
{
    uint64_t version = 0;
    const char *fmt = json_string_value(json_object_get(o, "format"));
    if (!json_is_object(o))
        return lmx__err(err, LMX_EFORMAT, "%s: shard %zu is not an object", where, i);
    if (!fmt || strcmp(fmt, "mds") != 0)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: shard %zu has format '%s': only MDS is read", where, i,
                        fmt ? fmt : "?");
    if (int_field(o, "version", 1000, &version) || version != 2)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: shard %zu has version %llu (this build reads 2)", where, i,
                        (unsigned long long)version);
    json_t *names = json_object_get(o, "column_names"), *encs = json_object_get(o, "column_encodings"),
           *sizes = json_object_get(o, "column_sizes"), *raw = json_object_get(o, "raw_data"),
           *zip = json_object_get(o, "zip_data"), *comp = json_object_get(o, "compression");
    size_t n = json_array_size(names);
    if (!json_is_array(names) || n == 0 || json_array_size(encs) != n || json_array_size(sizes) != n)
        return lmx__err(err, LMX_EFORMAT, "%s: shard %zu: column_names, column_encodings and column_sizes must be "
                        "arrays of the same non-zero length", where, i);
    if (int_field(o, "samples", UINT32_MAX, &s->samples))
        return lmx__err(err, LMX_EFORMAT, "%s: shard %zu: 'samples' missing or not a count", where, i);
    if (!json_is_object(raw) || !(s->raw_name = dup_str(json_object_get(raw, "basename"))) ||
        int_field(raw, "bytes", UINT32_MAX, &s->raw_bytes))
        return lmx__err(err, LMX_EFORMAT, "%s: shard %zu: 'raw_data' needs 'basename' and 'bytes' (< 4 GiB)", where, i);
    if (bad_basename(s->raw_name))
        return lmx__err(err, LMX_EFORMAT, "%s: shard %zu: basename '%s' leaves the dataset folder", where, i,
                        s->raw_name);
    if (strchr(s->raw_name, '/'))
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: shard %zu is %s: a merged index.json over sub-datasets is not "
                        "read; give the sub-dataset folders as INPUTs", where, i, s->raw_name);
    if (json_is_object(zip)) {
        if (!(s->zip_name = dup_str(json_object_get(zip, "basename"))) || bad_basename(s->zip_name) ||
            strchr(s->zip_name, '/'))
            return lmx__err(err, LMX_EFORMAT, "%s: shard %zu: 'zip_data' basename missing or outside the folder",
                            where, i);
        int_field(zip, "bytes", UINT64_MAX, &s->zip_bytes);
    } else if (!json_is_null(zip) && zip) {
        return lmx__err(err, LMX_EFORMAT, "%s: shard %zu: 'zip_data' must be an object or null", where, i);
    }
    if (json_is_string(comp))
        s->compression = strdup(json_string_value(comp));
    if (s->zip_name && !s->compression)
        return lmx__err(err, LMX_EFORMAT, "%s: shard %zu has zip_data but no 'compression'", where, i);
    if (!(s->cols = calloc(n, sizeof *s->cols)))
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", where);
    s->n_cols = n;
    for (size_t c = 0; c < n; c++) {
        lmx_mds_col *col = &s->cols[c];
        json_t *sz = json_array_get(sizes, c);
        col->name = dup_str(json_array_get(names, c));
        col->encoding = dup_str(json_array_get(encs, c));
        if (!col->name || !col->encoding)
            return lmx__err(err, LMX_EFORMAT, "%s: shard %zu: column %zu: name and encoding must be strings", where, i,
                            c);
        if (json_is_integer(sz) && json_integer_value(sz) >= 0 && json_integer_value(sz) <= UINT32_MAX)
            col->size = (uint32_t)json_integer_value(sz);
        else if (json_is_null(sz))
            s->n_var++;
        else
            return lmx__err(err, LMX_EFORMAT, "%s: shard %zu: column '%s': size must be an integer or null", where, i,
                            col->name);
        if (json_is_integer(sz) && col->size == 0)
            return lmx__err(err, LMX_EFORMAT, "%s: shard %zu: column '%s': fixed size 0", where, i, col->name);
        parse_encoding(col);
    }
    return LMX_OK;
}

int lmx__mds_index_parse(const char *text, size_t len, const char *where, lmx_mds_index *out, lmx_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *doc = json_loadb(text, len, 0, &je), *shards = json_object_get(doc, "shards");
    uint64_t version = 0;
    int rc = LMX_OK;
    if (!doc)
        rc = lmx__err(err, LMX_EFORMAT, "%s: invalid JSON at line %d: %s", where, je.line, je.text);
    else if (!json_is_array(shards))
        rc = lmx__err(err, LMX_EFORMAT, "%s: not a Streaming index ('shards' missing or not an array)", where);
    else if (int_field(doc, "version", 1000, &version) || version != 2)
        rc = lmx__err(err, LMX_EUNSUPPORTED, "%s: index version %llu (this build reads 2)", where,
                      (unsigned long long)version);
    else if (json_array_size(shards) == 0)
        rc = lmx__err(err, LMX_EFORMAT, "%s: no shards", where);
    else if (!(out->shards = calloc(json_array_size(shards), sizeof *out->shards)))
        rc = lmx__err(err, LMX_ENOMEM, "%s: out of memory", where);
    for (size_t i = 0; rc == LMX_OK && i < json_array_size(shards); i++) {
        out->n = i + 1;
        rc = parse_shard(json_array_get(shards, i), i, where, &out->shards[i], err);
    }
    json_decref(doc);
    return rc;
}

int lmx__mds_col(const lmx_mds_shard *s, const char *name)
{
    for (size_t c = 0; c < s->n_cols; c++)
        if (strcmp(s->cols[c].name, name) == 0)
            return (int)c;
    return -1;
}

int lmx__mds_shard_check(const uint8_t *d, size_t size, const lmx_mds_shard *s, const char *where, lmx_error *err)
{
    if (size < 4)
        return lmx__err(err, LMX_EFORMAT, "%s: shard of %zu bytes has no sample count (truncated?)", where, size);
    uint64_t n = lmx__get32(d);
    if (n != s->samples)
        return lmx__err(err, LMX_EFORMAT, "%s: holds %llu samples, index.json says %llu", where,
                        (unsigned long long)n, (unsigned long long)s->samples);
    if (4 + 4 * (n + 1) > size)
        return lmx__err(err, LMX_EFORMAT, "%s: sample table (%llu samples) runs past the end of the shard "
                        "(%zu bytes; truncated?)", where, (unsigned long long)n, size);
    uint64_t prev = 4 + 4 * (n + 1);
    for (uint64_t k = 0; k <= n; k++) {
        uint64_t o = lmx__get32(d + 4 + 4 * k);
        if (o > size)
            return lmx__err(err, LMX_EFORMAT, "%s: sample index %llu: offset %llu beyond the end of the shard (%zu bytes; "
                            "truncated?)", where, (unsigned long long)(k ? k - 1 : 0), (unsigned long long)o, size);
        if (o < prev)
            return lmx__err(err, LMX_EFORMAT, "%s: sample index %llu: offset %llu overlaps the sample table or the previous sample (ends at %llu)", where,
                            (unsigned long long)k, (unsigned long long)o, (unsigned long long)prev);
        prev = o;
    }
    return LMX_OK;
}

int lmx__mds_sample(const uint8_t *d, const lmx_mds_shard *s, uint64_t k, lmx_mds_value *vals, char *why, size_t why_n)
{
    uint64_t a = lmx__get32(d + 4 + 4 * k), b = lmx__get32(d + 8 + 4 * k), len = b - a;
    const uint8_t *p = d + a;
    uint64_t pos = 4 * (uint64_t)s->n_var, var = 0;
    if (pos > len) {
        snprintf(why, why_n, "%llu bytes cannot hold the sizes of its %zu variable columns", (unsigned long long)len,
                 s->n_var);
        return 1;
    }
    for (size_t c = 0; c < s->n_cols; c++) {
        uint64_t sz = s->cols[c].size ? s->cols[c].size : lmx__get32(p + 4 * var++);
        if (sz > len - pos) {
            snprintf(why, why_n, "column '%s' (%llu bytes) runs past the sample's end (%llu bytes)", s->cols[c].name,
                     (unsigned long long)sz, (unsigned long long)len);
            return 1;
        }
        vals[c] = (lmx_mds_value){p + pos, (size_t)sz};
        pos += sz;
    }
    return 0;
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

/* Signed value of an n-byte little-endian element of dtype code. */
static int64_t element(const uint8_t *p, int code, size_t n)
{
    uint64_t u = get_le(p, n);
    if (code & 1 && n < 8 && (u >> (8 * n - 1)) & 1) /* odd codes are the signed types */
        u |= ~(uint64_t)0 << (8 * n);
    return (int64_t)u;
}

int lmx__mds_tokens(const lmx_mds_col *c, lmx_mds_value v, int bytes_dtype, uint32_t vocab, lmx_ids *out, char *why,
                    size_t why_n)
{
    static const int from_token_dtype[] = {0, 16, 32, 33, 65}; /* enum lmx_token_dtype -> code */
    const uint8_t *p = v.p;
    size_t len = v.len;
    int code = c->dtype;
    uint64_t count = 0;
    int have_count = 0;
    out->n = 0;
    if (c->kind == LMX_MDS_BYTES) {
        code = bytes_dtype > 0 && bytes_dtype < 5 ? from_token_dtype[bytes_dtype] : 0;
    } else if (c->kind == LMX_MDS_NDARRAY) {
        if (!code) {
            if (len < 1) {
                snprintf(why, why_n, "empty ndarray value");
                return 1;
            }
            code = p[0];
            p++, len--;
        }
        if (!c->static_shape) {
            if (len < 1) {
                snprintf(why, why_n, "ndarray value without its shape");
                return 1;
            }
            size_t ndim = p[0] >> 2, w = (size_t)1 << (p[0] & 3);
            p++, len--;
            if (ndim * w > len) {
                snprintf(why, why_n, "ndarray shape (%zu dimensions) runs past the value", ndim);
                return 1;
            }
            count = 1;
            for (size_t k = 0; k < ndim; k++) {
                uint64_t dim = get_le(p + k * w, w);
                count = dim && count > UINT64_MAX / dim ? UINT64_MAX : count * dim;
            }
            p += ndim * w, len -= ndim * w;
            have_count = 1;
        }
    }
    if (!is_int_dtype(code)) {
        snprintf(why, why_n, "column '%s' (%s) does not hold integer token ids (element type %s)", c->name,
                 c->encoding, code ? dtype_name(code) : "unknown");
        return 1;
    }
    size_t es = dtype_bytes(code);
    if (len % es || (have_count && count != len / es)) {
        snprintf(why, why_n, "column '%s': %zu value bytes do not hold %s%llu %s elements", c->name, len,
                 have_count ? "its shape's " : "whole ", (unsigned long long)(have_count ? count : len / es),
                 dtype_name(code));
        return 1;
    }
    size_t n = len / es;
    if (lmx__ids_reserve(out, n) != LMX_OK)
        return LMX_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int64_t id = element(p + i * es, code, es);
        if (id < 0 || (uint64_t)id >= vocab) {
            snprintf(why, why_n, "token id %lld at position %zu is outside the tokenizer's vocabulary (size %u)",
                     (long long)id, i, vocab);
            return 1;
        }
        out->v[out->n++] = (uint32_t)id;
    }
    return 0;
}

int lmx__mds_id_text(const lmx_mds_col *c, lmx_mds_value v, lmx_buf *out)
{
    out->len = 0;
    char num[32];
    if (c->kind == LMX_MDS_STR)
        return lmx__buf_append(out, v.p, v.len) != LMX_OK || lmx__buf_append(out, "", 1) != LMX_OK ||
               memchr(v.p, 0, v.len) != NULL;
    if (c->kind != LMX_MDS_INT || v.len != dtype_bytes(c->dtype))
        return 1;
    if (c->dtype & 1)
        snprintf(num, sizeof num, "%lld", (long long)element(v.p, c->dtype, v.len));
    else
        snprintf(num, sizeof num, "%llu", (unsigned long long)get_le(v.p, v.len));
    return lmx__buf_append(out, num, strlen(num) + 1) != LMX_OK;
}
