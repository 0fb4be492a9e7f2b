/* Parquet files (see lmx_parquet.h): mmap, the footer and schema (leaf columns with dotted paths
 * and their definition/repetition levels), columns found by path. The column cursors are in
 * lmx_parquet_col.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lmx_parquet_internal.h"
#include "lmx_util.h"

#define MAX_SCHEMA_DEPTH 64

/* ---- schema ---- */

typedef struct walk {
    lmx_parquet *pq;
    size_t next; /* the next schema element */
    size_t cap;
    lmx_buf path;
    int bad;
} walk;

static void walk_node(walk *w, int depth, int def, int rep, int rep_def, int in_list, int in_map)
{
    if (w->bad || w->next >= w->pq->m.n_schema || depth > MAX_SCHEMA_DEPTH) {
        w->bad = 1;
        return;
    }
    const pq_schema_el *e = &w->pq->m.schema[w->next++];
    size_t saved = w->path.len;
    if (depth > 0) { /* the root's name is not part of paths */
        const char *name = e->name ? e->name : "";
        if ((saved && lmx__buf_append(&w->path, ".", 1) != LMX_OK) ||
            lmx__buf_append(&w->path, name, strlen(name)) != LMX_OK) {
            w->bad = 1;
            return;
        }
        def += e->repetition == PQ_OPTIONAL || e->repetition == PQ_REPEATED;
        if (e->repetition == PQ_REPEATED) {
            rep++;
            rep_def = def;
        }
        in_map |= e->converted_type == PQ_CT_MAP || e->converted_type == PQ_CT_MAP_KEY_VALUE ||
                  e->logical_type == PQ_LT_MAP;
        in_list |= e->repetition == PQ_REPEATED || e->converted_type == PQ_CT_LIST ||
                   e->converted_type == PQ_CT_MAP || e->converted_type == PQ_CT_MAP_KEY_VALUE ||
                   e->logical_type == PQ_LT_LIST || e->logical_type == PQ_LT_MAP;
    }
    if (e->num_children < 0 || (size_t)e->num_children > w->pq->m.n_schema - w->next) {
        w->bad = 1;
        return;
    }
    if (e->num_children == 0 && depth > 0) {
        if (w->pq->n_leaves == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 8;
            pq_leaf *v = realloc(w->pq->leaves, cap * sizeof *v);
            if (!v) {
                w->bad = 1;
                return;
            }
            w->pq->leaves = v;
            w->cap = cap;
        }
        pq_leaf *l = &w->pq->leaves[w->pq->n_leaves];
        if (!(l->path = malloc(w->path.len + 1))) {
            w->bad = 1;
            return;
        }
        if (w->path.len)
            memcpy(l->path, w->path.data, w->path.len);
        l->path[w->path.len] = 0;
        l->type = e->type;
        l->max_def = def;
        l->max_rep = rep;
        l->rep_def = rep_def;
        l->in_list = in_list;
        l->in_map = in_map;
        w->pq->n_leaves++;
    }
    for (int32_t i = 0; i < e->num_children && !w->bad; i++)
        walk_node(w, depth + 1, def, rep, rep_def, in_list, in_map);
    w->path.len = saved;
}

/* ---- files ---- */

void lmx__parquet_close(lmx_parquet *pq)
{
    if (!pq)
        return;
    if (pq->mapped && pq->data)
        munmap((void *)(uintptr_t)pq->data, pq->size);
    lmx__pq_meta_free(&pq->m);
    for (size_t i = 0; i < pq->n_leaves; i++)
        free(pq->leaves[i].path);
    free(pq->leaves);
    free(pq->path);
    free(pq);
}

static int open_common(lmx_parquet *pq, lmx_error *err)
{
    const uint8_t *d = pq->data;
    size_t n = pq->size;
    if (n >= 4 && memcmp(d + n - 4, "PARE", 4) == 0)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: encrypted Parquet files are not supported", pq->path);
    if (n < 12 || memcmp(d, "PAR1", 4) != 0 || memcmp(d + n - 4, "PAR1", 4) != 0)
        return lmx__err(err, LMX_EFORMAT, "%s: not a Parquet file or truncated (no PAR1 magic at %s)", pq->path,
                        n >= 4 && memcmp(d, "PAR1", 4) == 0 ? "the end" : "the start");
    uint32_t flen = lmx__get32(d + n - 8);
    if (flen > n - 12)
        return lmx__err(err, LMX_EFORMAT, "%s: truncated or corrupt (footer of %u bytes in a %zu-byte file)", pq->path,
                        flen, n);
    pq->meta_start = n - 8 - flen;
    if (lmx__pq_meta_decode(d + pq->meta_start, flen, &pq->m, err) != LMX_OK)
        return lmx__err_prefix(err, "%s: ", pq->path);
    if (pq->m.encrypted)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: encrypted Parquet files are not supported", pq->path);
    walk w = {.pq = pq};
    walk_node(&w, 0, 0, 0, 0, 0, 0);
    lmx__buf_free(&w.path);
    if (w.bad || w.next != pq->m.n_schema)
        return lmx__err(err, LMX_EFORMAT, "%s: corrupt footer (schema tree)", pq->path);
    int64_t rows = 0;
    for (size_t i = 0; i < pq->m.n_rgs; i++) {
        const pq_row_group *rg = &pq->m.rgs[i];
        if (rg->n_cols != pq->n_leaves || rg->num_rows < 0 || rg->num_rows > INT64_MAX - rows)
            return lmx__err(err, LMX_EFORMAT, "%s: corrupt footer (row group %zu: %zu columns for %zu in the schema)",
                            pq->path, i, rg->n_cols, pq->n_leaves);
        rows += rg->num_rows;
    }
    if (rows != pq->m.num_rows)
        return lmx__err(err, LMX_EFORMAT, "%s: corrupt footer (%lld rows in row groups, %lld in the file)", pq->path,
                        (long long)rows, (long long)pq->m.num_rows);
    return LMX_OK;
}

int lmx__parquet_open_mem(const char *name, const uint8_t *data, size_t size, lmx_parquet **out, lmx_error *err)
{
    *out = NULL;
    lmx_parquet *pq = calloc(1, sizeof *pq);
    if (!pq || !(pq->path = strdup(name))) {
        free(pq);
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", name);
    }
    pq->data = data;
    pq->size = size;
    int rc = open_common(pq, err);
    if (rc != LMX_OK) {
        lmx__parquet_close(pq);
        return rc;
    }
    *out = pq;
    return LMX_OK;
}

int lmx__parquet_open(const char *path, lmx_parquet **out, lmx_error *err)
{
    *out = NULL;
    uint8_t *map;
    size_t size;
    int rc = lmx__map_file(path, &map, &size, err);
    if (rc != LMX_OK)
        return rc;
    lmx_parquet *pq = calloc(1, sizeof *pq);
    if (!pq || !(pq->path = strdup(path))) {
        free(pq);
        if (map)
            munmap(map, size);
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", path);
    }
    pq->data = map;
    pq->size = size;
    pq->mapped = 1;
    if (map)
        posix_madvise(map, size, POSIX_MADV_SEQUENTIAL);
    rc = map ? open_common(pq, err) : lmx__err(err, LMX_EFORMAT, "%s: empty file, not Parquet", path);
    if (rc != LMX_OK) {
        lmx__parquet_close(pq);
        return rc;
    }
    *out = pq;
    return LMX_OK;
}

uint64_t lmx__parquet_num_rows(const lmx_parquet *pq) { return (uint64_t)pq->m.num_rows; }
size_t lmx__parquet_num_row_groups(const lmx_parquet *pq) { return pq->m.n_rgs; }
size_t lmx__parquet_num_columns(const lmx_parquet *pq) { return pq->n_leaves; }
const char *lmx__parquet_column_path(const lmx_parquet *pq, size_t i) { return pq->leaves[i].path; }

const char *lmx__pq_type_name(int t)
{
    static const char *const names[] = {"BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY",
                                        "FIXED_LEN_BYTE_ARRAY"};
    return t >= 0 && t < 8 ? names[t] : "group";
}

int lmx__parquet_find(const lmx_parquet *pq, const char *path, size_t *col, int *type, lmx_error *err)
{
    size_t plen = strlen(path);
    for (size_t i = 0; i < pq->n_leaves; i++) {
        const pq_leaf *l = &pq->leaves[i];
        int exact = strcmp(l->path, path) == 0;
        int below = !exact && strncmp(l->path, path, plen) == 0 && l->path[plen] == '.';
        if (!exact && !below)
            continue;
        if (l->in_list)
            return lmx__err(err, LMX_EUNSUPPORTED,
                            "%s: column '%s' is a list or map (repeated) column; only one value per row is supported",
                            pq->path, path);
        if (below)
            return lmx__err(err, LMX_ENOTFOUND, "%s: '%s' is a group (struct), not a column; e.g. '%s'", pq->path,
                            path, l->path);
        if (l->type != PQ_BYTE_ARRAY && l->type != PQ_INT32 && l->type != PQ_INT64)
            return lmx__err(err, LMX_EUNSUPPORTED, "%s: column '%s' has type %s, not a string (BYTE_ARRAY) or integer",
                            pq->path, path, lmx__pq_type_name(l->type));
        *col = i;
        if (type)
            *type = l->type == PQ_BYTE_ARRAY ? LMX_PQ_BYTES : l->type == PQ_INT32 ? LMX_PQ_INT32 : LMX_PQ_INT64;
        return LMX_OK;
    }
    char cols[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < pq->n_leaves && used + 1 < sizeof cols; i++) {
        int k = snprintf(cols + used, sizeof cols - used, "%s%s", i ? ", " : "", pq->leaves[i].path);
        used += k > 0 ? (size_t)k : 0;
    }
    return lmx__err(err, LMX_ENOTFOUND, "%s: no column '%s' (columns: %s)", pq->path, path, cols);
}

int lmx__parquet_find_list(const lmx_parquet *pq, const char *path, size_t *col, int *type, lmx_error *err)
{
    size_t plen = strlen(path), found = 0, at = 0;
    for (size_t i = 0; i < pq->n_leaves; i++) {
        const char *lp = pq->leaves[i].path;
        if (strcmp(lp, path) == 0 || (strncmp(lp, path, plen) == 0 && lp[plen] == '.')) {
            found++;
            at = i;
        }
    }
    if (!found)
        return lmx__parquet_find(pq, path, col, type, err); /* its message lists the columns */
    const pq_leaf *l = &pq->leaves[at];
    if (found == 1 && !l->in_map && l->max_rep == 0)
        return lmx__err(err, LMX_EINVAL, "%s: column '%s' is not a list", pq->path, path);
    if (found > 1 || l->in_map || l->max_rep != 1)
        return lmx__err(err, LMX_EUNSUPPORTED,
                        "%s: column '%s' is %s; only lists of integers (one level) are supported", pq->path, path,
                        l->in_map ? "a map" : found > 1 ? "a group of several columns" : "a nested list");
    if (l->type != PQ_INT32 && l->type != PQ_INT64)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: column '%s' is a list of %s; only lists of INT32/INT64 are supported",
                        pq->path, path, lmx__pq_type_name(l->type));
    *col = at;
    if (type)
        *type = l->type == PQ_INT32 ? LMX_PQ_INT32 : LMX_PQ_INT64;
    return LMX_OK;
}
