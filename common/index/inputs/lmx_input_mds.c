/* MosaicML Streaming MDS input: a folder with index.json and its shards (`shard.NNNNN.mds`, or
 * compressed `.mds.zstd` / `.mds.gz` when only those are present). One job per folder; one
 * record per sample, in shard order, its provenance the shard file and the 1-based sample
 * number. The --text-field column is `str` (TEXT) or a token column (`ndarray` of integers, or
 * `bytes` with --token-dtype: TOKENS checked against the vocabulary); --domain-field and
 * --id-field name further columns. Memory: one (decompressed) shard at a time. The parsing is in
 * lmx_mds.c. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include <sodium.h>

#include "lmx_inputs.h"
#include "lmx_mds.h"
#include "lmx_utf8.h"

typedef struct mds {
    lmx_input base;
    char *dir;
    lmx_mds_index ix;
    crypto_generichash_state hash; /* index.json, then every shard file as read */
    size_t shard;                  /* the next shard to load */
    char *file;                    /* the shard file being read (provenance) */
    uint8_t *data;                 /* its decompressed bytes */
    size_t size;
    uint64_t sample, n_samples;    /* next sample of the loaded shard */
    int text_col, dom_col, id_col;
    lmx_mds_value *vals;
    lmx_ids ids;
    lmx_buf dom, id;
} mds;

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *dir_of(const char *index_json)
{
    const char *slash = strrchr(index_json, '/');
    return slash ? strndup(index_json, slash == index_json ? 1 : (size_t)(slash - index_json)) : strdup(".");
}

static int mds_match(const char *path, char **job_path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strcmp(base, "index.json") != 0)
        return 0;
    /* Other JSON index.json files stay ignored; an unparsable one is taken, so that open() says
     * what is wrong with it. */
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    int is = !doc || json_is_array(json_object_get(doc, "shards"));
    json_decref(doc);
    if (is)
        *job_path = dir_of(path);
    return is;
}

/* The shard file a job reads: the raw one when present, else the compressed one. */
static char *shard_file(const char *dir, const lmx_mds_shard *s)
{
    char *raw = join(dir, s->raw_name);
    struct stat st;
    if (!raw || stat(raw, &st) == 0 || !s->zip_name)
        return raw;
    free(raw);
    return join(dir, s->zip_name);
}

static int load_index(const char *dir, lmx_mds_index *ix, uint8_t **text, size_t *len, lmx_error *err)
{
    char *p = join(dir, "index.json");
    if (!p)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    char *t = NULL;
    int rc = lmx__read_file(p, (size_t)1 << 30, &t, len, err);
    if (rc == LMX_OK)
        rc = lmx__mds_index_parse(t, *len, p, ix, err);
    free(p);
    if (text && rc == LMX_OK)
        *text = (uint8_t *)t;
    else
        free(t);
    return rc;
}

/* index.json and every shard file (size/mtime reuse key, readability check). A broken
 * index.json lists only itself: the job's open() then reports it (and --bad-input skip applies). */
static int mds_files(const char *dir, char ***files, size_t *n, lmx_error *err)
{
    lmx_mds_index ix;
    size_t len;
    lmx_error ignored = {0};
    int rc = load_index(dir, &ix, NULL, &len, &ignored);
    if (rc != LMX_OK && rc != LMX_ENOMEM) {
        lmx__mds_index_free(&ix);
        ix.n = 0;
        rc = LMX_OK;
    }
    char **v = rc == LMX_OK ? calloc(ix.n + 1, sizeof *v) : NULL;
    if (rc == LMX_OK && !v)
        rc = lmx__err(err, LMX_ENOMEM, "out of memory");
    if (rc == LMX_OK && !(v[0] = join(dir, "index.json")))
        rc = lmx__err(err, LMX_ENOMEM, "out of memory");
    for (size_t i = 0; rc == LMX_OK && i < ix.n; i++)
        if (!(v[i + 1] = shard_file(dir, &ix.shards[i])))
            rc = lmx__err(err, LMX_ENOMEM, "out of memory");
    if (rc == LMX_OK) {
        *files = v;
        *n = ix.n + 1;
    } else if (v) {
        for (size_t i = 0; i <= ix.n; i++)
            free(v[i]);
        free(v);
    }
    lmx__mds_index_free(&ix);
    return rc;
}

/* The column called field in every shard (same position and kind), or -1 when absent in all. */
static int find_col(mds *m, const char *field, const char *what, lmx_error *err)
{
    int c0 = lmx__mds_col(&m->ix.shards[0], field);
    for (size_t i = 1; i < m->ix.n; i++) {
        int c = lmx__mds_col(&m->ix.shards[i], field);
        if (c != c0 || (c >= 0 && m->ix.shards[i].cols[c].kind != m->ix.shards[0].cols[c].kind))
            return lmx__err(err, LMX_EFORMAT, "%s/index.json: the %s column '%s' differs between shard 0 and shard %zu",
                            m->dir, what, field, i);
    }
    return c0 < 0 ? -1 : c0;
}

static int pick_columns(mds *m, lmx_error *err)
{
    const lmx_input_params *p = m->base.params;
    const lmx_mds_shard *s = &m->ix.shards[0];
    int rc = find_col(m, p->text_field, "text", err);
    if (rc < -1)
        return rc;
    if (rc < 0)
        return lmx__err(err, LMX_EINVAL, "%s: no column '%s' (columns: %s%s%s%s; choose one with --text-field)",
                        m->dir, p->text_field, s->cols[0].name, s->n_cols > 1 ? ", " : "",
                        s->n_cols > 1 ? s->cols[1].name : "", s->n_cols > 2 ? ", ..." : "");
    m->text_col = rc;
    const lmx_mds_col *tc = &s->cols[rc];
    if (tc->kind == LMX_MDS_BYTES && !p->token_dtype)
        return lmx__err(err, LMX_EINVAL, "%s: column '%s' is 'bytes': give the element type of its token ids with "
                        "--token-dtype uint16|uint32|int32|int64", m->dir, tc->name);
    if (tc->kind != LMX_MDS_STR && tc->kind != LMX_MDS_BYTES && tc->kind != LMX_MDS_NDARRAY)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: column '%s' has encoding '%s': text must be 'str', token ids "
                        "'ndarray' or 'bytes'", m->dir, tc->name, tc->encoding);
    m->dom_col = m->id_col = -1;
    if (!p->domain) {
        if ((rc = find_col(m, p->domain_field, "domain", err)) < -1)
            return rc;
        if (rc < 0 || s->cols[rc].kind != LMX_MDS_STR)
            return lmx__err(err, LMX_EINVAL, "%s: no 'str' column '%s' for the domain: give DOMAIN=%s, "
                            "--domain-from-path or --domain-field COLUMN", m->dir, p->domain_field, m->dir);
        m->dom_col = rc;
    }
    if (p->id_field) {
        if ((rc = find_col(m, p->id_field, "id", err)) < -1)
            return rc;
        if (rc >= 0 && s->cols[rc].kind != LMX_MDS_STR && s->cols[rc].kind != LMX_MDS_INT)
            return lmx__err(err, LMX_EUNSUPPORTED, "%s: id column '%s' has encoding '%s' (want str or an integer)",
                            m->dir, s->cols[rc].name, s->cols[rc].encoding);
        m->id_col = rc; /* absent: no ids, like a JSON line without the field */
    }
    return LMX_OK;
}

static int mds_open(const lmx_input_params *p, lmx_input **out, lmx_error *err)
{
    mds *m = calloc(1, sizeof *m);
    if (!m)
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", p->path);
    m->base.params = p;
    m->base.kind = "mds";
    *out = &m->base;
    crypto_generichash_init(&m->hash, NULL, 0, 32);
    if (!(m->dir = strdup(p->path)))
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", p->path);
    uint8_t *text = NULL;
    size_t len = 0;
    int rc = load_index(m->dir, &m->ix, &text, &len, err);
    if (rc == LMX_OK) {
        crypto_generichash_update(&m->hash, text, len);
        m->base.bytes_read += len;
        rc = pick_columns(m, err);
    }
    free(text);
    size_t maxc = 0;
    for (size_t i = 0; i < m->ix.n; i++)
        maxc = m->ix.shards[i].n_cols > maxc ? m->ix.shards[i].n_cols : maxc;
    if (rc == LMX_OK && !(m->vals = calloc(maxc, sizeof *m->vals)))
        rc = lmx__err(err, LMX_ENOMEM, "%s: out of memory", p->path);
    return rc;
}

static void mds_close(lmx_input *in)
{
    if (!in)
        return;
    mds *m = (mds *)in;
    lmx__mds_index_free(&m->ix);
    free(m->dir);
    free(m->file);
    free(m->data);
    free(m->vals);
    lmx__ids_free(&m->ids);
    lmx__buf_free(&m->dom);
    lmx__buf_free(&m->id);
    free(m);
}

/* Decompresses a whole compressed shard (zstd frames or gzip members) into exactly want bytes. */
static int decompress(const char *file, const char *codec, const uint8_t *z, size_t zlen, uint8_t *out, size_t want,
                      lmx_error *err)
{
    size_t got = 0;
    if (strncmp(codec, "zstd", 4) == 0 && (codec[4] == '\0' || codec[4] == ':')) {
        got = ZSTD_decompress(out, want, z, zlen);
        if (ZSTD_isError(got))
            return lmx__err(err, LMX_EFORMAT, "%s: corrupt or truncated zstd shard: %s", file, ZSTD_getErrorName(got));
    } else if (strncmp(codec, "gz", 2) == 0 && (codec[2] == '\0' || codec[2] == ':')) {
        z_stream zs = {0};
        if (inflateInit2(&zs, 15 + 16) != Z_OK)
            return lmx__err(err, LMX_ENOMEM, "%s: cannot initialize zlib", file);
        zs.next_in = (Bytef *)z;
        zs.avail_in = (uInt)zlen;
        zs.next_out = out;
        zs.avail_out = (uInt)want;
        int zr = inflate(&zs, Z_FINISH);
        got = want - zs.avail_out;
        inflateEnd(&zs);
        if (zr != Z_STREAM_END)
            return lmx__err(err, LMX_EFORMAT, "%s: corrupt or truncated gzip shard: %s", file,
                            zr == Z_BUF_ERROR ? (got == want ? "longer than raw_data.bytes" : "unexpected end")
                                              : zs.msg ? zs.msg : zError(zr));
    } else {
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: shard compression '%s' is not read (zstd and gz are); "
                        "decompress the shards next to index.json", file, codec);
    }
    if (got != want)
        return lmx__err(err, LMX_EFORMAT, "%s: decompressed to %zu bytes, index.json says %zu", file, got, want);
    return LMX_OK;
}

/* Loads shard m->shard: its bytes (decompressed) into m->data, hashed raw, sample table checked. */
static int load_shard(mds *m, lmx_error *err)
{
    const lmx_mds_shard *s = &m->ix.shards[m->shard];
    free(m->file);
    free(m->data);
    m->data = NULL;
    if (!(m->file = shard_file(m->dir, s)))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    char *raw = NULL;
    size_t len = 0;
    int rc = lmx__read_file(m->file, (size_t)UINT32_MAX + 1, &raw, &len, err);
    if (rc != LMX_OK)
        return rc;
    crypto_generichash_update(&m->hash, (const uint8_t *)raw, len);
    m->base.bytes_read += len;
    int compressed = s->zip_name && strcmp(m->file + strlen(m->dir) + 1, s->zip_name) == 0;
    if (compressed) {
        m->data = malloc(s->raw_bytes ? s->raw_bytes : 1);
        rc = m->data ? decompress(m->file, s->compression, (const uint8_t *)raw, len, m->data, s->raw_bytes, err)
                     : lmx__err(err, LMX_ENOMEM, "%s: out of memory", m->file);
        m->size = s->raw_bytes;
        free(raw);
    } else {
        m->data = (uint8_t *)raw;
        m->size = len;
    }
    if (rc == LMX_OK)
        rc = lmx__mds_shard_check(m->data, m->size, s, m->file, err);
    m->sample = 0;
    m->n_samples = s->samples;
    return rc;
}

static int mds_next(lmx_input *in, lmx_input_rec *rec, lmx_error *err)
{
    mds *m = (mds *)in;
    while (!m->data || m->sample == m->n_samples) {
        if (m->shard == m->ix.n)
            return 0;
        int rc = load_shard(m, err);
        m->shard++;
        if (rc != LMX_OK)
            return rc;
    }
    const lmx_mds_shard *s = &m->ix.shards[m->shard - 1];
    const lmx_input_params *p = in->params;
    uint64_t k = m->sample++;
    rec->source = m->file;
    rec->where = k + 1;
    char why[LMX_INPUT_WHY_MAX];
    if (lmx__mds_sample(m->data, s, k, m->vals, why, sizeof why))
        return lmx__err(err, LMX_EFORMAT, "%s: sample index %llu (shard %zu of %s/index.json): %s", m->file,
                        (unsigned long long)k, m->shard - 1, m->dir, why);
    lmx_mds_value t = m->vals[m->text_col];
    const lmx_mds_col *tc = &s->cols[m->text_col];
    rec->bytes = t.len;
    if (m->dom_col >= 0) {
        lmx_mds_value d = m->vals[m->dom_col];
        m->dom.len = 0;
        if (d.len == 0 || memchr(d.p, 0, d.len) || lmx__buf_append(&m->dom, d.p, d.len) != LMX_OK ||
            lmx__buf_append(&m->dom, "", 1) != LMX_OK) {
            lmx__rec_bad(rec, "domain column '%s' empty or not text", p->domain_field);
            return 1;
        }
        rec->domain = (const char *)m->dom.data;
    }
    if (m->id_col >= 0 && lmx__mds_id_text(&s->cols[m->id_col], m->vals[m->id_col], &m->id) == 0)
        rec->doc_id = (const char *)m->id.data;
    if (tc->kind == LMX_MDS_STR) {
        size_t valid = lmx__utf8_valid_prefix(t.p, t.len);
        if (valid != t.len) {
            lmx__rec_bad(rec, "column '%s' is not valid UTF-8 (first bad byte at offset %zu)", tc->name, valid);
            return 1;
        }
        rec->kind = LMX_REC_TEXT;
        rec->data = (const char *)t.p;
        rec->len = t.len;
        return 1;
    }
    int rc = lmx__mds_tokens(tc, t, p->token_dtype, p->vocab_size, &m->ids, why, sizeof why);
    if (rc < 0)
        return lmx__err(err, rc, "%s: sample index %llu: out of memory", m->file, (unsigned long long)k);
    if (rc > 0) {
        lmx__rec_bad(rec, "%s", why);
        return 1;
    }
    rec->kind = LMX_REC_TOKENS;
    rec->ids = m->ids.v;
    rec->n_ids = m->ids.n;
    return 1;
}

static int mds_finish(lmx_input *in, char hex[65], lmx_error *err)
{
    (void)err;
    uint8_t h[32];
    crypto_generichash_final(&((mds *)in)->hash, h, sizeof h);
    lmx__hex(h, sizeof h, hex);
    return LMX_OK;
}

const lmx_input_format lmx__input_mds = {
    .name = "mds",
    .what = "an MDS folder (index.json + shards)",
    .flags = LMX_INPUT_HASH_REUSE, /* the hash runs over index.json then the shards, as listed */
    .match = mds_match,
    .list_files = mds_files,
    .open = mds_open,
    .next = mds_next,
    .finish = mds_finish,
    .close = mds_close,
};
