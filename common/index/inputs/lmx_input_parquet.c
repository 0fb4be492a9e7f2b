/* Parquet input (`*.parquet`): one document per row, the text in the string column
 * --text-field (default `text`) or, when that column is a list of integers (`input_ids`),
 * pre-tokenized ids (TOKENS records, checked against the tokenizer's vocabulary), the domain in --domain-field (default
 * `meta.redpajama_set_name`, a struct member as in the Hub's SlimPajama files), the optional
 * --id-field kept as provenance; `where` = the 1-based row in the file. Records are TEXT (the
 * reader decodes columns itself; tokenizing still runs on every thread). A column the file lacks
 * or cannot give one value per row (list/map) is an open error naming the file and column; a null
 * or non-UTF-8 text is a bad record; corrupt pages fail the job naming row group, column and page. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_inputs.h"
#include "lmx_parquet.h"
#include "lmx_utf8.h"

enum { COL_TEXT, COL_DOMAIN, COL_ID, N_COLS };

typedef struct pq_input {
    lmx_input base;
    lmx_parquet *pq;
    lmx_parquet_col *col[N_COLS]; /* NULL when not read */
    int type[N_COLS];
    int tokens;         /* the text column is a list of token ids */
    uint32_t *ids;
    size_t ids_cap;
    uint64_t row, rows;
    size_t file_size;
    lmx_buf domain, id; /* NUL-terminated copies for the record */
} pq_input;

static int parquet_match(const char *path, char **job_path)
{
    (void)job_path;
    return lmx__ends_with(path, ".parquet");
}

static void parquet_close(lmx_input *in)
{
    if (!in)
        return;
    pq_input *r = (pq_input *)in;
    for (int i = 0; i < N_COLS; i++)
        lmx__parquet_col_close(r->col[i]);
    lmx__parquet_close(r->pq);
    lmx__buf_free(&r->domain);
    lmx__buf_free(&r->id);
    free(r->ids);
    free(r);
}

/* Opens a cursor on the column at path; which names the option for the message. */
static int open_col(pq_input *r, int k, const char *path, const char *which, lmx_error *err)
{
    size_t c;
    int rc = LMX_EINVAL;
    if (k == COL_TEXT) { /* a list of integers: pre-tokenized */
        rc = lmx__parquet_find_list(r->pq, path, &c, &r->type[k], err);
        r->tokens = rc == LMX_OK;
    }
    if (rc == LMX_EINVAL) { /* not a list: a column of one value per row */
        lmx__err_clear(err);
        rc = lmx__parquet_find(r->pq, path, &c, &r->type[k], err);
    }
    if (rc == LMX_ENOTFOUND) {
        char msg[LMX_ERROR_MESSAGE_MAX];
        snprintf(msg, sizeof msg, "%s", err->message);
        return lmx__err(err, rc, "%s (set %s%s)", msg, which,
                        k == COL_DOMAIN ? ", --domain-from-path or DOMAIN=PATH" : "");
    }
    if (rc != LMX_OK)
        return rc;
    if (k != COL_ID && r->type[k] != LMX_PQ_BYTES && !r->tokens)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: column '%s' (%s) holds integers, not strings",
                        r->base.params->path, path, which);
    return lmx__parquet_col_open(r->pq, c, &r->col[k], err);
}

static int parquet_open(const lmx_input_params *p, lmx_input **out, lmx_error *err)
{
    pq_input *r = calloc(1, sizeof *r);
    if (!r)
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", p->path);
    r->base.params = p;
    r->base.kind = "parquet";
    *out = &r->base;
    int rc = lmx__parquet_open(p->path, &r->pq, err);
    if (rc != LMX_OK)
        return rc;
    r->rows = lmx__parquet_num_rows(r->pq);
    FILE *f = fopen(p->path, "rb");
    if (f && fseek(f, 0, SEEK_END) == 0)
        r->file_size = (size_t)ftell(f);
    if (f)
        fclose(f);
    rc = open_col(r, COL_TEXT, p->text_field ? p->text_field : "text", "--text-field", err);
    if (rc == LMX_OK && !p->domain)
        rc = open_col(r, COL_DOMAIN, p->domain_field, "--domain-field", err);
    if (rc == LMX_OK && p->id_field)
        rc = open_col(r, COL_ID, p->id_field, "--id-field", err);
    return rc;
}

/* The next value of column k (which must have one: all columns have the file's rows). */
static int next_value(pq_input *r, int k, lmx_parquet_value *v, lmx_error *err)
{
    int rc = lmx__parquet_col_next(r->col[k], v, err);
    if (rc == 0)
        return lmx__err(err, LMX_EFORMAT, "%s: row %llu: column '%s' ends before the others", r->base.params->path,
                        (unsigned long long)r->row, k == COL_TEXT ? "text" : "domain/id");
    return rc < 0 ? rc : LMX_OK;
}

/* v as a NUL-terminated string in b: strings as they are, integers in decimal. */
static int value_text(const lmx_parquet_value *v, int type, lmx_buf *b)
{
    b->len = 0;
    if (type == LMX_PQ_BYTES)
        return lmx__buf_append(b, v->data, v->len) == LMX_OK && lmx__buf_append(b, "", 1) == LMX_OK ? 0 : -1;
    return lmx__buf_printf(b, "%lld", (long long)v->i) == LMX_OK ? 0 : -1;
}

/* A row of pre-tokenized ids: TOKENS when every id is inside the vocabulary, else BAD. */
static int tokens_record(pq_input *r, const lmx_parquet_list *l, const char *col, lmx_input_rec *rec,
                         lmx_error *err)
{
    uint32_t vocab = r->base.params->vocab_size;
    if (l->is_null || l->null_elements) {
        lmx__rec_bad(rec, "column '%s' is null or holds nulls", col);
        return LMX_OK;
    }
    if (l->n > r->ids_cap) {
        uint32_t *v = realloc(r->ids, l->n * sizeof *v);
        if (!v)
            return lmx__err(err, LMX_ENOMEM, "%s: row %llu: out of memory", r->base.params->path,
                            (unsigned long long)r->row);
        r->ids = v;
        r->ids_cap = l->n;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i] < 0 || (uint64_t)l->v[i] >= vocab) {
            lmx__rec_bad(rec, "column '%s': token id %lld at position %zu is outside the vocabulary (%u ids)", col,
                         (long long)l->v[i], i, vocab);
            return LMX_OK;
        }
        r->ids[i] = (uint32_t)l->v[i];
    }
    rec->kind = LMX_REC_TOKENS;
    rec->ids = r->ids;
    rec->n_ids = l->n;
    return LMX_OK;
}

static int parquet_next(lmx_input *in, lmx_input_rec *rec, lmx_error *err)
{
    pq_input *r = (pq_input *)in;
    lmx_parquet_value t = {0}, d, id;
    lmx_parquet_list l = {0};
    int rc = r->tokens ? lmx__parquet_col_next_list(r->col[COL_TEXT], &l, err)
                       : lmx__parquet_col_next(r->col[COL_TEXT], &t, err);
    if (rc <= 0)
        return rc;
    r->row++;
    if (r->col[COL_DOMAIN] && (rc = next_value(r, COL_DOMAIN, &d, err)) != LMX_OK)
        return rc;
    if (r->col[COL_ID] && (rc = next_value(r, COL_ID, &id, err)) != LMX_OK)
        return rc;
    if (r->rows)
        in->bytes_read = (uint64_t)((double)r->file_size * (double)r->row / (double)r->rows);
    rec->source = in->params->path;
    rec->where = r->row;
    rec->bytes = r->tokens ? l.n * 4 : t.len;
    const char *text_col = in->params->text_field ? in->params->text_field : "text";
    if (r->tokens) {
        if ((rc = tokens_record(r, &l, text_col, rec, err)) != LMX_OK)
            return rc;
    } else if (t.is_null) {
        lmx__rec_bad(rec, "column '%s' is null", text_col);
        return 1;
    } else if (t.len > LMX_INPUT_MAX_RECORD) {
        lmx__rec_bad(rec, "column '%s' is longer than %zu bytes", text_col, LMX_INPUT_MAX_RECORD);
        return 1;
    } else if (lmx__utf8_valid_prefix((const uint8_t *)t.data, t.len) != t.len) {
        lmx__rec_bad(rec, "column '%s' is not valid UTF-8 (first bad byte at offset %zu)", text_col,
                     lmx__utf8_valid_prefix((const uint8_t *)t.data, t.len));
        return 1;
    } else {
        rec->kind = LMX_REC_TEXT;
        rec->data = t.data;
        rec->len = t.len;
    }
    if (rec->kind == LMX_REC_BAD)
        return 1;
    if (r->col[COL_DOMAIN] && !d.is_null) { /* a null domain: the indexer reports the record */
        if (value_text(&d, r->type[COL_DOMAIN], &r->domain) != 0)
            return lmx__err(err, LMX_ENOMEM, "%s: row %llu: out of memory", in->params->path,
                            (unsigned long long)r->row);
        rec->domain = (const char *)r->domain.data;
    }
    if (r->col[COL_ID] && !id.is_null) {
        if (value_text(&id, r->type[COL_ID], &r->id) != 0)
            return lmx__err(err, LMX_ENOMEM, "%s: row %llu: out of memory", in->params->path,
                            (unsigned long long)r->row);
        rec->doc_id = (const char *)r->id.data;
    }
    /* the indexer checks the domain of TEXT records only (TOKENS formats usually force one) */
    if (rec->kind == LMX_REC_TOKENS && !rec->domain && !in->params->domain)
        lmx__rec_bad(rec, "domain field '%s' missing or not a string", in->params->domain_field);
    return 1;
}

static int parquet_finish(lmx_input *in, char hex[65], lmx_error *err)
{
    if (lmx__file_blake2b(in->params->path, hex) != 0)
        return lmx__err_errno(err, "read %s", in->params->path);
    return LMX_OK;
}

const lmx_input_format lmx__input_parquet = {
    .name = "parquet",
    .flags = LMX_INPUT_HASH_REUSE,
    .match = parquet_match,
    .open = parquet_open,
    .next = parquet_next,
    .finish = parquet_finish,
    .close = parquet_close,
};
