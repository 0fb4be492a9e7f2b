/* manifest.json (proto/INDEX.md, "manifest.json"): the one loader and validator (used by the
 * reader, the writer's incremental runs and merge), and the writer's builder. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmx_index_internal.h"

static const char *str_or(const char *s, const char *dflt) { return s ? s : dflt; }

static int get_u64(json_t *obj, const char *key, uint64_t *out, const char *where, lmx_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return lmx__err(err, LMX_EFORMAT, "%s: field '%s' missing or not a non-negative integer", where, key);
    *out = (uint64_t)json_integer_value(v);
    return LMX_OK;
}

static int check_stats(json_t *o, const char *where, lmx_error *err)
{
    uint64_t v;
    int rc;
    if ((rc = get_u64(o, "docs", &v, where, err)) || (rc = get_u64(o, "tokens", &v, where, err)) ||
        (rc = get_u64(o, "long_tokens", &v, where, err)))
        return rc;
    json_t *bk = json_object_get(o, "buckets");
    if (!json_is_array(bk) || json_array_size(bk) != LMX_N_BUCKETS)
        return lmx__err(err, LMX_EFORMAT, "%s: 'buckets' must be an array of %d counts", where, LMX_N_BUCKETS);
    return LMX_OK;
}

static int check_header(json_t *m, const char *mpath, lmx_manifest_info *info, lmx_error *err)
{
    json_t *fmt = json_object_get(m, "format"), *tok = json_object_get(m, "tokenizer");
    uint64_t version = 0, tb = 0, bos = 0, eos = 0, vocab = 0;
    int rc;
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), LMX_INDEX_FORMAT) != 0)
        return lmx__err(err, LMX_EFORMAT, "%s: field 'format' is not \"%s\"", mpath, LMX_INDEX_FORMAT);
    if ((rc = get_u64(m, "version", &version, mpath, err)))
        return rc;
    if (version != LMX_INDEX_VERSION)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: index version %llu (this build reads %d)", mpath,
                        (unsigned long long)version, LMX_INDEX_VERSION);
    if ((rc = get_u64(m, "token_bytes", &tb, mpath, err)))
        return rc;
    if (!json_is_object(tok) || !json_is_string(json_object_get(tok, "identity")) ||
        (rc = get_u64(tok, "bos", &bos, mpath, err)) || (rc = get_u64(tok, "eos", &eos, mpath, err)) ||
        (rc = get_u64(tok, "vocab_size", &vocab, mpath, err)))
        return rc ? rc : lmx__err(err, LMX_EFORMAT, "%s: field 'tokenizer' malformed", mpath);
    info->token_bytes = (uint32_t)tb;
    info->bos = (uint32_t)bos;
    info->eos = (uint32_t)eos;
    info->vocab_size = (uint32_t)vocab;
    info->tokenizer_identity = json_string_value(json_object_get(tok, "identity"));
    json_t *ab = json_object_get(tok, "add_bos"), *ae = json_object_get(tok, "add_eos");
    if ((ab && !json_is_boolean(ab)) || (ae && !json_is_boolean(ae)))
        return lmx__err(err, LMX_EFORMAT, "%s: tokenizer.add_bos/add_eos must be booleans", mpath);
    info->add_bos = ab ? json_is_true(ab) : bos != UINT32_MAX;
    info->add_eos = ae ? json_is_true(ae) : 0;
    info->bos_token = json_string_value(json_object_get(tok, "bos_token"));
    info->eos_token = json_string_value(json_object_get(tok, "eos_token"));
    return LMX_OK;
}

static int check_shards(json_t *shards, const char *mpath, lmx_error *err)
{
    if (!json_is_array(shards))
        return lmx__err(err, LMX_EFORMAT, "%s: field 'shards' missing", mpath);
    json_t *e;
    size_t i;
    json_array_foreach(shards, i, e)
    {
        char where[4200];
        snprintf(where, sizeof where, "%s: shards[%zu]", mpath, i);
        json_t *file = json_object_get(e, "file"), *sum = json_object_get(e, "blake2b");
        uint64_t n;
        int rc;
        if (!json_is_string(file) || !json_is_string(sum) || strchr(json_string_value(file), '/') ||
            json_string_value(file)[0] == '.' || !json_string_value(file)[0])
            return lmx__err(err, LMX_EFORMAT, "%s: 'file' or 'blake2b' missing or invalid", where);
        if ((rc = get_u64(e, "docs", &n, where, err)) || (rc = get_u64(e, "tokens", &n, where, err)))
            return rc;
    }
    return LMX_OK;
}

static int check_domains(json_t *doms, const char *mpath, lmx_error *err)
{
    if (!json_is_object(doms))
        return lmx__err(err, LMX_EFORMAT, "%s: field 'domains' missing", mpath);
    const char *name;
    json_t *v;
    json_object_foreach(doms, name, v)
    {
        char where[4400];
        snprintf(where, sizeof where, "%s: domains.%s", mpath, name);
        int rc = check_stats(v, where, err);
        if (rc != LMX_OK)
            return rc;
    }
    return LMX_OK;
}

int lmx__manifest_load(const char *dir, json_t **out, lmx_manifest_info *info, lmx_error *err)
{
    *out = NULL;
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/%s", dir, LMX_INDEX_MANIFEST);
    json_error_t je;
    json_t *m = json_load_file(mpath, 0, &je);
    if (!m) {
        if (access(mpath, F_OK) != 0)
            return lmx__err(err, LMX_ENOTFOUND, "%s: no index here (missing %s)", dir, LMX_INDEX_MANIFEST);
        return lmx__err(err, LMX_EFORMAT, "%s:%d: %s", mpath, je.line, je.text);
    }
    lmx_manifest_info dummy;
    int rc = check_header(m, mpath, info ? info : &dummy, err);
    if (rc == LMX_OK)
        rc = check_domains(json_object_get(m, "domains"), mpath, err);
    if (rc == LMX_OK)
        rc = check_shards(json_object_get(m, "shards"), mpath, err);
    if (rc != LMX_OK) {
        json_decref(m);
        return rc;
    }
    *out = m;
    return LMX_OK;
}

int lmx__entry_cmp_input(const void *a, const void *b)
{
    return strcmp(str_or(json_string_value(json_object_get(*(json_t *const *)a, "input")), ""),
                  str_or(json_string_value(json_object_get(*(json_t *const *)b, "input")), ""));
}

json_t *lmx__stats_to_json(const lmx_domain_stats *s)
{
    json_t *o = json_object(), *b = json_array();
    json_object_set_new(o, "docs", json_integer((json_int_t)s->docs));
    json_object_set_new(o, "tokens", json_integer((json_int_t)s->tokens));
    json_object_set_new(o, "long_tokens", json_integer((json_int_t)s->long_tokens));
    for (int k = 0; k < LMX_N_BUCKETS; k++)
        json_array_append_new(b, json_integer((json_int_t)s->buckets[k]));
    json_object_set_new(o, "buckets", b);
    return o;
}

/* Adds the stats object ds into the accumulator acc (same shape). */
static void stats_json_add(json_t *acc, json_t *ds)
{
    static const char *const keys[] = {"docs", "tokens", "long_tokens"};
    for (int q = 0; q < 3; q++)
        json_object_set_new(acc, keys[q],
                            json_integer(json_integer_value(json_object_get(acc, keys[q])) +
                                         json_integer_value(json_object_get(ds, keys[q]))));
    json_t *ab = json_object_get(acc, "buckets"), *db = json_object_get(ds, "buckets");
    for (size_t q = 0; q < LMX_N_BUCKETS; q++)
        json_array_set_new(ab, q, json_integer(json_integer_value(json_array_get(ab, q)) +
                                               json_integer_value(json_array_get(db, q))));
}

json_t *lmx__manifest_make(json_t *tokenizer, uint32_t token_bytes, json_t *shards)
{
    json_t *manifest = json_object(), *doms = json_object(), *sorted = json_array();
    size_t ns = json_array_size(shards);
    json_t **sv = calloc(ns + 1, sizeof *sv);
    for (size_t k = 0; k < ns; k++)
        sv[k] = json_array_get(shards, k);
    /* Sorted by input path, so document ids do not depend on run history or machine split. */
    qsort(sv, ns, sizeof *sv, lmx__entry_cmp_input);
    uint64_t total_docs = 0, total_tokens = 0;
    for (size_t k = 0; k < ns; k++) {
        json_array_append(sorted, sv[k]);
        total_docs += (uint64_t)json_integer_value(json_object_get(sv[k], "docs"));
        total_tokens += (uint64_t)json_integer_value(json_object_get(sv[k], "tokens"));
        const char *dn;
        json_t *ds;
        json_object_foreach(json_object_get(sv[k], "domains"), dn, ds)
        {
            json_t *acc = json_object_get(doms, dn);
            if (acc)
                stats_json_add(acc, ds);
            else
                json_object_set_new(doms, dn, json_deep_copy(ds));
        }
    }
    free(sv);
    json_object_set_new(manifest, "format", json_string(LMX_INDEX_FORMAT));
    json_object_set_new(manifest, "version", json_integer(LMX_INDEX_VERSION));
    json_object_set_new(manifest, "tokenizer", tokenizer);
    json_object_set_new(manifest, "token_bytes", json_integer(token_bytes));
    json_object_set_new(manifest, "long_threshold", json_integer(LMX_LONG_THRESHOLD));
    json_object_set_new(manifest, "total_docs", json_integer((json_int_t)total_docs));
    json_object_set_new(manifest, "total_tokens", json_integer((json_int_t)total_tokens));
    json_object_set_new(manifest, "domains", doms);
    json_object_set_new(manifest, "shards", sorted);
    return manifest;
}

int lmx__manifest_write(const char *dir, json_t *m, lmx_error *err)
{
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/%s", dir, LMX_INDEX_MANIFEST);
    char *txt = json_dumps(m, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    int rc = txt ? lmx__write_file_atomic(mpath, txt, strlen(txt), err)
                 : lmx__err(err, LMX_ENOMEM, "manifest: out of memory");
    free(txt);
    return rc;
}

int lmx__manifest_lists(json_t *m, const char *file)
{
    json_t *e;
    size_t k;
    json_array_foreach(json_object_get(m, "shards"), k, e)
    {
        const char *f = json_string_value(json_object_get(e, "file"));
        if (f && strcmp(f, file) == 0)
            return 1;
    }
    return 0;
}
