/* Parquet metadata in the Thrift compact protocol: FileMetaData (the footer) and PageHeader.
 * Field ids follow parquet.thrift; fields we do not use (statistics, key/value metadata, column
 * indexes, ...) and fields added by later format versions are skipped by type, so newer writers
 * stay readable. Every length and element count is checked against the bytes left, and nesting is
 * capped, so corrupt metadata is an error and never a large allocation or a deep recursion. */
#include <stdlib.h>
#include <string.h>

#include "lmx_parquet_internal.h"

/* Compact protocol types. */
enum {
    T_STOP, T_TRUE, T_FALSE, T_BYTE, T_I16, T_I32, T_I64, T_DOUBLE, T_BINARY, T_LIST, T_SET, T_MAP, T_STRUCT,
};
#define MAX_DEPTH 32

typedef struct tc {
    const uint8_t *p, *end;
    int bad;
    int depth;
} tc;

static uint64_t tc_varint(tc *t)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (t->p >= t->end) {
            t->bad = 1;
            return 0;
        }
        uint8_t b = *t->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    t->bad = 1;
    return 0;
}

static int64_t tc_zigzag(tc *t)
{
    uint64_t u = tc_varint(t);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static int32_t tc_i32(tc *t)
{
    int64_t v = tc_zigzag(t);
    if (v < INT32_MIN || v > INT32_MAX) {
        t->bad = 1;
        return 0;
    }
    return (int32_t)v;
}

/* A binary/string: its bytes (not copied) and length. */
static const uint8_t *tc_binary(tc *t, size_t *n)
{
    uint64_t len = tc_varint(t);
    if (t->bad || len > (uint64_t)(t->end - t->p)) {
        t->bad = 1;
        *n = 0;
        return NULL;
    }
    const uint8_t *s = t->p;
    t->p += len;
    *n = (size_t)len;
    return s;
}

/* A list/set header: the element count (bounded by the bytes left: every element takes at least
 * one byte) and *elem its element type. */
static size_t tc_list(tc *t, int *elem)
{
    if (t->p >= t->end) {
        t->bad = 1;
        return 0;
    }
    uint8_t h = *t->p++;
    *elem = h & 0x0f;
    uint64_t n = h >> 4;
    if (n == 15)
        n = tc_varint(t);
    if (t->bad || n > (uint64_t)(t->end - t->p)) {
        t->bad = 1;
        return 0;
    }
    return (size_t)n;
}

/* The next field header: its id (0 at STOP) and *type; boolean fields carry their value in the
 * type (T_TRUE/T_FALSE). */
static int tc_field(tc *t, int *last_id, int *type)
{
    if (t->p >= t->end) {
        t->bad = 1;
        return 0;
    }
    uint8_t h = *t->p++;
    *type = h & 0x0f;
    if (*type == T_STOP)
        return 0;
    int delta = h >> 4;
    int id = delta ? *last_id + delta : (int)tc_zigzag(t);
    if (t->bad || id <= 0 || id > 32767) {
        t->bad = 1;
        return 0;
    }
    *last_id = id;
    return id;
}

static void tc_skip(tc *t, int type);

static void tc_skip_struct(tc *t)
{
    if (++t->depth > MAX_DEPTH) {
        t->bad = 1;
        return;
    }
    int last = 0, type;
    while (!t->bad && tc_field(t, &last, &type))
        tc_skip(t, type);
    t->depth--;
}

/* Skips one value of type (inside a list, booleans take one byte). */
static void tc_skip(tc *t, int type)
{
    size_t n;
    int elem;
    switch (type) {
    case T_TRUE:
    case T_FALSE:
        break; /* a field's value is in its header */
    case T_BYTE:
        if (t->p >= t->end)
            t->bad = 1;
        else
            t->p++;
        break;
    case T_I16:
    case T_I32:
    case T_I64:
        tc_varint(t);
        break;
    case T_DOUBLE:
        if (t->end - t->p < 8)
            t->bad = 1;
        else
            t->p += 8;
        break;
    case T_BINARY:
        tc_binary(t, &n);
        break;
    case T_LIST:
    case T_SET:
        n = tc_list(t, &elem);
        if (++t->depth > MAX_DEPTH)
            t->bad = 1;
        for (size_t i = 0; i < n && !t->bad; i++)
            tc_skip(t, elem == T_TRUE || elem == T_FALSE ? T_BYTE : elem);
        t->depth--;
        break;
    case T_MAP: {
        uint64_t m = tc_varint(t);
        if (t->bad || m > (uint64_t)(t->end - t->p)) {
            t->bad = 1;
            break;
        }
        if (m == 0)
            break;
        uint8_t kv = *t->p++;
        int kt = kv >> 4, vt = kv & 0x0f;
        kt = kt == T_TRUE || kt == T_FALSE ? T_BYTE : kt;
        vt = vt == T_TRUE || vt == T_FALSE ? T_BYTE : vt;
        if (++t->depth > MAX_DEPTH)
            t->bad = 1;
        for (uint64_t i = 0; i < m && !t->bad; i++) {
            tc_skip(t, kt);
            tc_skip(t, vt);
        }
        t->depth--;
        break;
    }
    case T_STRUCT:
        tc_skip_struct(t);
        break;
    default:
        t->bad = 1;
    }
}

/* Reads an integer field of the expected type, else marks the input bad. */
static int64_t tc_int(tc *t, int type, int want)
{
    if (type != want) {
        t->bad = 1;
        return 0;
    }
    return want == T_I64 ? tc_zigzag(t) : tc_i32(t);
}

/* ---- SchemaElement ---- */

/* The LogicalType union: only which member is set. */
static int decode_logical(tc *t)
{
    int last = 0, type, id, which = 0;
    while (!t->bad && (id = tc_field(t, &last, &type))) {
        which = id;
        tc_skip(t, type);
    }
    return which;
}

static void decode_schema_el(tc *t, pq_schema_el *e)
{
    *e = (pq_schema_el){.type = -1, .repetition = -1, .converted_type = -1};
    int last = 0, type, id;
    size_t n;
    while (!t->bad && (id = tc_field(t, &last, &type))) {
        switch (id) {
        case 1: e->type = (int)tc_int(t, type, T_I32); break;
        case 3: e->repetition = (int)tc_int(t, type, T_I32); break;
        case 4: {
            if (type != T_BINARY) {
                t->bad = 1;
                break;
            }
            const uint8_t *s = tc_binary(t, &n);
            if (t->bad || e->name)
                break;
            e->name = malloc(n + 1);
            if (!e->name) {
                t->bad = 1;
                break;
            }
            memcpy(e->name, s, n);
            e->name[n] = 0;
            break;
        }
        case 5: e->num_children = (int32_t)tc_int(t, type, T_I32); break;
        case 6: e->converted_type = (int)tc_int(t, type, T_I32); break;
        case 10:
            if (type != T_STRUCT)
                t->bad = 1;
            else if (++t->depth > MAX_DEPTH)
                t->bad = 1;
            else {
                e->logical_type = decode_logical(t);
                t->depth--;
            }
            break;
        default: tc_skip(t, type);
        }
    }
}

/* ---- ColumnChunk / ColumnMetaData ---- */

static void decode_col_meta(tc *t, pq_chunk *c)
{
    int last = 0, type, id;
    c->has_meta = 1;
    while (!t->bad && (id = tc_field(t, &last, &type))) {
        switch (id) {
        case 1: c->type = (int)tc_int(t, type, T_I32); break;
        case 4: c->codec = (int)tc_int(t, type, T_I32); break;
        case 5: c->num_values = tc_int(t, type, T_I64); break;
        case 7: c->total_compressed_size = tc_int(t, type, T_I64); break;
        case 9: c->data_page_offset = tc_int(t, type, T_I64); break;
        case 11: c->dictionary_page_offset = tc_int(t, type, T_I64); break;
        default: tc_skip(t, type);
        }
    }
}

static void decode_chunk(tc *t, pq_chunk *c)
{
    *c = (pq_chunk){.type = -1, .codec = -1};
    int last = 0, type, id;
    while (!t->bad && (id = tc_field(t, &last, &type))) {
        if (id == 1)
            c->has_file_path = 1;
        if (id == 8 || id == 9)
            c->encrypted = 1;
        if (id == 3 && type == T_STRUCT) {
            if (++t->depth > MAX_DEPTH)
                t->bad = 1;
            else
                decode_col_meta(t, c);
            t->depth--;
        } else
            tc_skip(t, type);
    }
}

static void decode_row_group(tc *t, pq_row_group *rg)
{
    int last = 0, type, id, elem;
    while (!t->bad && (id = tc_field(t, &last, &type))) {
        if (id == 1 && type == T_LIST && !rg->cols) {
            size_t n = tc_list(t, &elem);
            if (t->bad || elem != T_STRUCT || !(rg->cols = calloc(n ? n : 1, sizeof *rg->cols))) {
                t->bad = 1;
                break;
            }
            t->depth++;
            for (size_t i = 0; i < n && !t->bad; i++, rg->n_cols++)
                decode_chunk(t, &rg->cols[i]);
            t->depth--;
        } else if (id == 3)
            rg->num_rows = tc_int(t, type, T_I64);
        else
            tc_skip(t, type);
    }
}

void lmx__pq_meta_free(pq_meta *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_schema; i++)
        free(m->schema[i].name);
    free(m->schema);
    for (size_t i = 0; i < m->n_rgs; i++)
        free(m->rgs[i].cols);
    free(m->rgs);
    memset(m, 0, sizeof *m);
}

int lmx__pq_meta_decode(const uint8_t *p, size_t n, pq_meta *m, lmx_error *err)
{
    tc t = {.p = p, .end = p + n};
    memset(m, 0, sizeof *m);
    int last = 0, type, id, elem, have_rows = 0;
    while (!t.bad && (id = tc_field(&t, &last, &type))) {
        if (id == 2 && type == T_LIST && !m->schema) {
            size_t k = tc_list(&t, &elem);
            if (t.bad || elem != T_STRUCT || !(m->schema = calloc(k ? k : 1, sizeof *m->schema))) {
                t.bad = 1;
                break;
            }
            t.depth++;
            for (size_t i = 0; i < k && !t.bad; i++, m->n_schema++)
                decode_schema_el(&t, &m->schema[i]);
            t.depth--;
        } else if (id == 3) {
            m->num_rows = tc_int(&t, type, T_I64);
            have_rows = 1;
        } else if (id == 4 && type == T_LIST && !m->rgs) {
            size_t k = tc_list(&t, &elem);
            if (t.bad || elem != T_STRUCT || !(m->rgs = calloc(k ? k : 1, sizeof *m->rgs))) {
                t.bad = 1;
                break;
            }
            t.depth++;
            for (size_t i = 0; i < k && !t.bad; i++, m->n_rgs++)
                decode_row_group(&t, &m->rgs[i]);
            t.depth--;
        } else {
            if (id == 8)
                m->encrypted = 1;
            tc_skip(&t, type);
        }
    }
    if (t.bad || !m->schema || !have_rows) {
        lmx__pq_meta_free(m);
        return lmx__err(err, LMX_EFORMAT, "corrupt footer (FileMetaData)");
    }
    return LMX_OK;
}

/* ---- PageHeader ---- */

static void decode_data_v1(tc *t, pq_page_header *h)
{
    int last = 0, type, id;
    h->has_v1 = 1;
    while (!t->bad && (id = tc_field(t, &last, &type))) {
        switch (id) {
        case 1: h->num_values = (int32_t)tc_int(t, type, T_I32); break;
        case 2: h->encoding = (int)tc_int(t, type, T_I32); break;
        case 3: h->def_encoding = (int)tc_int(t, type, T_I32); break;
        case 4: h->rep_encoding = (int)tc_int(t, type, T_I32); break;
        default: tc_skip(t, type);
        }
    }
}

static void decode_data_v2(tc *t, pq_page_header *h)
{
    int last = 0, type, id;
    h->has_v2 = 1;
    h->is_compressed = 1;
    while (!t->bad && (id = tc_field(t, &last, &type))) {
        switch (id) {
        case 1: h->num_values = (int32_t)tc_int(t, type, T_I32); break;
        case 4: h->encoding = (int)tc_int(t, type, T_I32); break;
        case 5: h->def_len = (int32_t)tc_int(t, type, T_I32); break;
        case 6: h->rep_len = (int32_t)tc_int(t, type, T_I32); break;
        case 7:
            if (type == T_TRUE || type == T_FALSE)
                h->is_compressed = type == T_TRUE;
            else
                t->bad = 1;
            break;
        default: tc_skip(t, type);
        }
    }
}

static void decode_dict(tc *t, pq_page_header *h)
{
    int last = 0, type, id;
    h->has_dict = 1;
    while (!t->bad && (id = tc_field(t, &last, &type))) {
        switch (id) {
        case 1: h->num_values = (int32_t)tc_int(t, type, T_I32); break;
        case 2: h->encoding = (int)tc_int(t, type, T_I32); break;
        default: tc_skip(t, type);
        }
    }
}

int lmx__pq_page_header_decode(const uint8_t *p, size_t n, pq_page_header *h, size_t *used, lmx_error *err)
{
    tc t = {.p = p, .end = p + n};
    memset(h, 0, sizeof *h);
    h->type = -1;
    int last = 0, type, id, have_sizes = 0;
    while (!t.bad && (id = tc_field(&t, &last, &type))) {
        int sub = (id == 5 || id == 7 || id == 8) && type == T_STRUCT;
        if (sub && ++t.depth > MAX_DEPTH)
            t.bad = 1;
        else if (id == 1)
            h->type = (int)tc_int(&t, type, T_I32);
        else if (id == 2) {
            h->uncompressed_size = (int32_t)tc_int(&t, type, T_I32);
            have_sizes |= 1;
        } else if (id == 3) {
            h->compressed_size = (int32_t)tc_int(&t, type, T_I32);
            have_sizes |= 2;
        } else if (id == 5 && sub)
            decode_data_v1(&t, h);
        else if (id == 7 && sub)
            decode_dict(&t, h);
        else if (id == 8 && sub)
            decode_data_v2(&t, h);
        else
            tc_skip(&t, type);
        if (sub)
            t.depth--;
    }
    if (t.bad || have_sizes != 3 || h->uncompressed_size < 0 || h->compressed_size < 0 || h->num_values < 0 ||
        h->def_len < 0 || h->rep_len < 0)
        return lmx__err(err, LMX_EFORMAT, "corrupt page header");
    *used = (size_t)(t.p - p);
    return LMX_OK;
}
