/* Index reader: the manifest (lmx_index_manifest.c) and mmapped shards; statistics. */
#include "lmx_index_internal.h"

#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmx_util.h"

typedef struct shard {
    char *path;
    char *kind; /* the manifest entry's input kind ("jsonl", "mds", ...), "" when absent */
    uint8_t *map;
    size_t size;
    uint64_t n_docs, n_tokens, doc_base;
    uint32_t token_bytes, n_domains;
    uint64_t n_strings;
    const uint8_t *tokens, *docs, *str_offsets, *str_blob;
    const uint8_t *id_offsets, *id_blob; /* the ids section (--id-field), or NULL */
    uint64_t str_blob_size, id_blob_size;
    uint32_t *domain_map; /* local domain string index -> global domain */
} shard;

struct lmx_index {
    char *dir;
    shard *shards;
    size_t n_shards;
    uint64_t n_docs, n_tokens;
    uint32_t token_bytes, bos, eos, vocab_size;
    int add_bos, add_eos;
    char *sep_token[2]; /* BOS / EOS strings or NULL */
    char **domains;
    uint32_t n_domains;
    lmx_domain_stats *stats;
    char identity[65];
    char *tokenizer_identity;
    char *table_dir; /* plans' item tables (lmx__index_set_table_dir), NULL = heap */
    lmx_gate *gate;  /* verify: background (lmx_index_gate.c), NULL = reads are not gated */
    const char **gate_paths;
};

const char *lmx__index_shard_at(const lmx_index *ix, const void *addr)
{
    const uint8_t *a = addr;
    for (size_t i = 0; ix && a && i < ix->n_shards; i++)
        if (ix->shards[i].map && a >= ix->shards[i].map && a < ix->shards[i].map + ix->shards[i].size)
            return ix->shards[i].path;
    return NULL;
}

int lmx__bucket_of(uint64_t n)
{
    int b = 0;
    uint64_t limit = 1024;
    while (b < LMX_N_BUCKETS - 1 && n >= limit) {
        b++;
        limit *= 2;
    }
    return b;
}

void lmx__stats_add(lmx_domain_stats *s, uint64_t n, uint64_t long_threshold)
{
    s->docs++;
    s->tokens += n;
    if (n >= long_threshold)
        s->long_tokens += n;
    s->buckets[lmx__bucket_of(n)] += n;
}

/* String i (< n_strings) of the table, or NULL when its entry is damaged: checked where it is
 * used, so open does not walk a table that has one string per document for `.txt` inputs. */
static const char *shard_string(const shard *s, uint64_t i)
{
    uint64_t a = lmx__get64(s->str_offsets + 8 * i), b = lmx__get64(s->str_offsets + 8 * (i + 1));
    if (a >= b || b > s->str_blob_size || s->str_blob[b - 1] != '\0')
        return NULL;
    return (const char *)s->str_blob + a;
}

/* The optional ids section at off (after the strings): n_docs + 1 increasing u64 offsets into
 * the blob after them, first 0, each id NUL-terminated. Only its placement is checked here; each
 * document's entry is checked when it is read (doc_id_of). */
static int check_ids(shard *s, uint64_t off, uint64_t fsize, lmx_error *err)
{
    uint64_t strings_end = (uint64_t)(s->str_blob - s->map);
    if (off % 8 || off < strings_end || off > fsize || s->n_docs >= (fsize - off) / 8)
        return lmx__err(err, LMX_EFORMAT, "%s: ids section offset inconsistent with the file size", s->path);
    s->id_offsets = s->map + off;
    s->id_blob = s->id_offsets + 8 * (s->n_docs + 1);
    s->id_blob_size = fsize - (uint64_t)(s->id_blob - s->map);
    return LMX_OK;
}

/* The id of local document i, "" for none; NULL when its entry is damaged. */
static const char *doc_id_of(const shard *s, uint64_t i)
{
    uint64_t a = lmx__get64(s->id_offsets + 8 * i), b = lmx__get64(s->id_offsets + 8 * (i + 1));
    if ((i == 0 && a != 0) || a >= b || b > s->id_blob_size || s->id_blob[b - 1] != '\0')
        return NULL;
    return (const char *)s->id_blob + a;
}

/* Checks a mapped shard's header and sections against the file size and the manifest entry: a
 * constant amount of work per shard. The document records, the source strings and the ids are
 * checked one by one where they are read (record_fault, shard_string, doc_id_of), so opening an
 * index does not read its records (docs/SCALING.md); `longmixd verify` checks them all
 * (lmx__index_check_records). */
static int check_shard(shard *s, uint64_t want_docs, uint64_t want_tokens, lmx_error *err)
{
    const uint8_t *h = s->map;
    if (s->size < LMX_SHARD_HEADER_SIZE || memcmp(h, LMX_SHARD_MAGIC, 8) != 0)
        return lmx__err(err, LMX_EFORMAT, "%s: not a longmix shard (bad magic or truncated)", s->path);
    if (lmx__get32(h + LMX_SH_VERSION) != LMX_SHARD_VERSION)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: shard version %u (this build reads %d)", s->path,
                        lmx__get32(h + LMX_SH_VERSION), LMX_SHARD_VERSION);
    s->token_bytes = lmx__get32(h + LMX_SH_TOKEN_BYTES);
    s->n_docs = lmx__get64(h + LMX_SH_N_DOCS);
    s->n_tokens = lmx__get64(h + LMX_SH_N_TOKENS);
    uint64_t tok_off = lmx__get64(h + LMX_SH_TOKENS_OFFSET), doc_off = lmx__get64(h + LMX_SH_DOCS_OFFSET);
    uint64_t str_off = lmx__get64(h + LMX_SH_STRINGS_OFFSET), fsize = lmx__get64(h + LMX_SH_FILE_SIZE);
    s->n_strings = lmx__get64(h + LMX_SH_N_STRINGS);
    s->n_domains = lmx__get32(h + LMX_SH_N_DOMAINS);
    if (fsize != s->size)
        return lmx__err(err, LMX_EFORMAT, "%s: file is %zu bytes, header says %llu (truncated?)", s->path,
                        s->size, (unsigned long long)fsize);
    if (s->token_bytes != 2 && s->token_bytes != 4)
        return lmx__err(err, LMX_EFORMAT, "%s: token_bytes %u", s->path, s->token_bytes);
    if (s->n_docs != want_docs || s->n_tokens != want_tokens)
        return lmx__err(err, LMX_EFORMAT, "%s: holds %llu docs / %llu tokens, manifest says %llu / %llu",
                        s->path, (unsigned long long)s->n_docs, (unsigned long long)s->n_tokens,
                        (unsigned long long)want_docs, (unsigned long long)want_tokens);
    /* Offsets are checked against fsize first: the differences below would wrap otherwise. */
    if (tok_off != LMX_SHARD_HEADER_SIZE || doc_off > fsize || str_off > fsize ||
        s->n_tokens > (fsize - tok_off) / s->token_bytes ||
        doc_off < tok_off + s->n_tokens * s->token_bytes || doc_off % 8 ||
        s->n_docs > (fsize - doc_off) / LMX_SHARD_DOC_SIZE ||
        str_off < doc_off + s->n_docs * LMX_SHARD_DOC_SIZE || str_off % 8 || s->n_strings >= (fsize - str_off) / 8 ||
        s->n_domains > s->n_strings)
        return lmx__err(err, LMX_EFORMAT, "%s: section offsets inconsistent with the file size", s->path);
    s->tokens = s->map + tok_off;
    s->docs = s->map + doc_off;
    s->str_offsets = s->map + str_off;
    s->str_blob = s->str_offsets + 8 * (s->n_strings + 1);
    uint64_t blob_end = fsize, ids_off = lmx__get64(h + LMX_SH_IDS_OFFSET);
    if (ids_off) {
        int rc = check_ids(s, ids_off, fsize, err);
        if (rc != LMX_OK)
            return rc;
        blob_end = ids_off;
    }
    s->str_blob_size = blob_end - (uint64_t)(s->str_blob - s->map);
    return LMX_OK;
}

/* Why record r of shard s cannot be used, or NULL when it is inside the sections. */
static const char *record_fault(const shard *s, const uint8_t *r)
{
    uint64_t st = lmx__get64(r + LMX_SD_TOKEN_START), n = lmx__get64(r + LMX_SD_N_TOKENS);
    if (st > s->n_tokens || n > s->n_tokens - st)
        return "token range outside the token section";
    if (lmx__get32(r + LMX_SD_DOMAIN) >= s->n_domains)
        return "domain outside the shard's domains";
    if (lmx__get32(r + LMX_SD_SOURCE) >= s->n_strings)
        return "source outside the string table";
    return NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int lmx__index_domain_find(const lmx_index *ix, const char *name)
{
    char *const *hit = bsearch(&name, ix->domains, ix->n_domains, sizeof *ix->domains, cmp_str);
    return hit ? (int)(hit - ix->domains) : -1;
}

/* Maps shard i of the manifest and checks it against its entry (already validated). */
static int open_shard(lmx_index *ix, json_t *e, size_t i, lmx_error *err)
{
    shard *s = &ix->shards[i];
    const char *file = json_string_value(json_object_get(e, "file"));
    uint64_t nd = (uint64_t)json_integer_value(json_object_get(e, "docs"));
    uint64_t nt = (uint64_t)json_integer_value(json_object_get(e, "tokens"));
    size_t plen = strlen(ix->dir) + strlen(file) + 16;
    s->path = malloc(plen);
    if (!s->path)
        return lmx__err(err, LMX_ENOMEM, "index: out of memory");
    snprintf(s->path, plen, "%s/shards/%s", ix->dir, file);
    const char *kind = json_string_value(json_object_get(e, "kind"));
    if (!(s->kind = strdup(kind ? kind : "")))
        return lmx__err(err, LMX_ENOMEM, "index: out of memory");
    int rc;
    if ((rc = lmx__map_file(s->path, &s->map, &s->size, err)) || (rc = check_shard(s, nd, nt, err)))
        return rc;
    if (s->token_bytes != ix->token_bytes)
        return lmx__err(err, LMX_EFORMAT, "%s: token_bytes %u, manifest says %u", s->path, s->token_bytes,
                        ix->token_bytes);
    s->doc_base = ix->n_docs;
    ix->n_docs += s->n_docs;
    ix->n_tokens += s->n_tokens;
    s->domain_map = calloc(s->n_domains + 1, sizeof *s->domain_map);
    if (!s->domain_map)
        return lmx__err(err, LMX_ENOMEM, "index: out of memory");
    for (uint32_t d = 0; d < s->n_domains; d++) {
        if (!shard_string(s, d))
            return lmx__err(err, LMX_EFORMAT, "%s: string table entry %u invalid", s->path, d);
        int g = lmx__index_domain_find(ix, shard_string(s, d));
        if (g < 0)
            return lmx__err(err, LMX_EFORMAT, "%s: domain '%s' not listed in the manifest", s->path,
                            shard_string(s, d));
        s->domain_map[d] = (uint32_t)g;
    }
    posix_madvise(s->map, s->size, POSIX_MADV_RANDOM);
    return LMX_OK;
}

/* Domain names (sorted) and their statistics from the manifest (exact, computed when the shards
 * were written). */
static int load_domains(lmx_index *ix, json_t *doms)
{
    ix->n_domains = (uint32_t)json_object_size(doms);
    ix->domains = calloc(ix->n_domains + 1, sizeof *ix->domains);
    ix->stats = calloc(ix->n_domains + 1, sizeof *ix->stats);
    if (!ix->domains || !ix->stats)
        return LMX_ENOMEM;
    const char *name;
    json_t *v;
    uint32_t i = 0;
    json_object_foreach(doms, name, v)
    {
        if (!(ix->domains[i++] = strdup(name)))
            return LMX_ENOMEM;
    }
    qsort(ix->domains, ix->n_domains, sizeof *ix->domains, cmp_str);
    for (uint32_t d = 0; d < ix->n_domains; d++) {
        json_t *o = json_object_get(doms, ix->domains[d]), *bk = json_object_get(o, "buckets");
        lmx_domain_stats *st = &ix->stats[d];
        st->docs = (uint64_t)json_integer_value(json_object_get(o, "docs"));
        st->tokens = (uint64_t)json_integer_value(json_object_get(o, "tokens"));
        st->long_tokens = (uint64_t)json_integer_value(json_object_get(o, "long_tokens"));
        for (int b = 0; b < LMX_N_BUCKETS; b++)
            st->buckets[b] = (uint64_t)json_integer_value(json_array_get(bk, (size_t)b));
    }
    return LMX_OK;
}

int lmx__index_open(const char *dir, lmx_index **out, lmx_error *err)
{
    *out = NULL;
    json_t *m = NULL;
    lmx_manifest_info info;
    int rc = lmx__manifest_load(dir, &m, &info, err);
    if (rc != LMX_OK)
        return rc;
    lmx_index *ix = calloc(1, sizeof *ix);
    json_t *shards = json_object_get(m, "shards");
    if (ix) {
        ix->dir = strdup(dir);
        ix->token_bytes = info.token_bytes;
        ix->bos = info.bos;
        ix->eos = info.eos;
        ix->vocab_size = info.vocab_size;
        ix->tokenizer_identity = strdup(info.tokenizer_identity);
        ix->add_bos = info.add_bos;
        ix->add_eos = info.add_eos;
        ix->sep_token[0] = info.bos_token ? strdup(info.bos_token) : NULL;
        ix->sep_token[1] = info.eos_token ? strdup(info.eos_token) : NULL;
        ix->n_shards = json_array_size(shards);
        ix->shards = calloc(ix->n_shards + 1, sizeof *ix->shards);
    }
    if (!ix || !ix->dir || !ix->tokenizer_identity || !ix->shards ||
        load_domains(ix, json_object_get(m, "domains")) != LMX_OK)
        rc = lmx__err(err, LMX_ENOMEM, "index: out of memory");
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    if (rc == LMX_OK)
        crypto_generichash_update(&hs, (const uint8_t *)ix->tokenizer_identity, strlen(ix->tokenizer_identity) + 1);
    for (size_t i = 0; rc == LMX_OK && i < ix->n_shards; i++) {
        json_t *e = json_array_get(shards, i);
        const char *sum = json_string_value(json_object_get(e, "blake2b"));
        crypto_generichash_update(&hs, (const uint8_t *)sum, strlen(sum) + 1);
        rc = open_shard(ix, e, i, err);
    }
    json_decref(m);
    if (rc != LMX_OK) {
        lmx__index_close(ix);
        return rc;
    }
    uint8_t idh[32];
    crypto_generichash_final(&hs, idh, sizeof idh);
    lmx__hex(idh, sizeof idh, ix->identity);
    *out = ix;
    return LMX_OK;
}

void lmx__index_close(lmx_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n_shards; i++) {
        if (ix->shards[i].map)
            munmap(ix->shards[i].map, ix->shards[i].size);
        free(ix->shards[i].path);
        free(ix->shards[i].kind);
        free(ix->shards[i].domain_map);
    }
    for (uint32_t d = 0; d < ix->n_domains; d++)
        free(ix->domains[d]);
    free(ix->domains);
    free(ix->stats);
    free(ix->shards);
    free(ix->dir);
    free(ix->tokenizer_identity);
    free(ix->table_dir);
    lmx__gate_free(ix->gate);
    free(ix->gate_paths);
    free(ix->sep_token[0]);
    free(ix->sep_token[1]);
    free(ix);
}

uint64_t lmx__index_n_docs(const lmx_index *ix) { return ix->n_docs; }
uint64_t lmx__index_n_tokens(const lmx_index *ix) { return ix->n_tokens; }
uint32_t lmx__index_token_bytes(const lmx_index *ix) { return ix->token_bytes; }
uint32_t lmx__index_n_domains(const lmx_index *ix) { return ix->n_domains; }
const char *lmx__index_domain_name(const lmx_index *ix, uint32_t d) { return ix->domains[d]; }
const lmx_domain_stats *lmx__index_domain_stats(const lmx_index *ix, uint32_t d) { return &ix->stats[d]; }
const char *lmx__index_identity(const lmx_index *ix) { return ix->identity; }
const char *lmx__index_tokenizer_identity(const lmx_index *ix) { return ix->tokenizer_identity; }
const char *lmx__index_dir(const lmx_index *ix) { return ix->dir; }
const char *lmx__index_table_dir(const lmx_index *ix) { return ix->table_dir; }
size_t lmx__index_n_shards(const lmx_index *ix) { return ix->n_shards; }
lmx_gate *lmx__index_gate(const lmx_index *ix) { return ix->gate; }

int lmx__index_gate_enable(lmx_index *ix, double wait_s, lmx_error *err)
{
    if (ix->gate)
        return LMX_OK;
    if (!(ix->gate_paths = calloc(ix->n_shards + 1, sizeof *ix->gate_paths)))
        return lmx__err(err, LMX_ENOMEM, "index: out of memory");
    for (size_t i = 0; i < ix->n_shards; i++)
        ix->gate_paths[i] = ix->shards[i].path;
    if (!(ix->gate = lmx__gate_new(ix->n_shards, ix->gate_paths, wait_s)))
        return lmx__err(err, LMX_ENOMEM, "index: out of memory");
    return LMX_OK;
}

int lmx__index_set_table_dir(lmx_index *ix, const char *dir)
{
    char *copy = dir ? strdup(dir) : NULL;
    if (dir && !copy)
        return LMX_ENOMEM;
    free(ix->table_dir);
    ix->table_dir = copy;
    return LMX_OK;
}
uint32_t lmx__index_bos(const lmx_index *ix) { return ix->bos; }
uint32_t lmx__index_eos(const lmx_index *ix) { return ix->eos; }
int lmx__index_default_bos(const lmx_index *ix) { return ix->add_bos; }
int lmx__index_default_eos(const lmx_index *ix) { return ix->add_eos; }
const char *lmx__index_sep_token(const lmx_index *ix, int eos) { return ix->sep_token[eos != 0]; }

json_t *lmx__index_separators_json(const lmx_index *ix)
{
    json_t *o = json_object();
    for (int k = 0; k < 2; k++) {
        uint32_t id = k ? ix->eos : ix->bos;
        json_t *s = json_object();
        json_object_set_new(s, "id", id == UINT32_MAX ? json_null() : json_integer(id));
        json_object_set_new(s, "token", ix->sep_token[k] ? json_string(ix->sep_token[k]) : json_null());
        json_object_set_new(s, "default", json_boolean(k ? ix->add_eos : ix->add_bos));
        json_object_set_new(o, k ? "eos" : "bos", s);
    }
    return o;
}
uint32_t lmx__index_vocab_size(const lmx_index *ix) { return ix->vocab_size; }

static const shard *find_shard(const lmx_index *ix, uint64_t id)
{
    size_t lo = 0, hi = ix->n_shards;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ix->shards[mid].doc_base <= id)
            lo = mid;
        else
            hi = mid;
    }
    return &ix->shards[lo];
}

/* A damaged record of shard s, local document i (global id): the message names both; noted as
 * the calling thread's read fault too, for the callers whose hot loops have no error path. */
static int record_error(const shard *s, uint64_t id, const char *why, lmx_error *err)
{
    char msg[LMX_ERROR_MESSAGE_MAX];
    snprintf(msg, sizeof msg, "%s: document %llu (record %llu of the shard) is damaged: %s", s->path,
             (unsigned long long)id, (unsigned long long)(id - s->doc_base), why);
    lmx__gate_record_fault(s->path, msg);
    return lmx__err(err, LMX_EFORMAT, "%s", msg);
}

void lmx__index_doc_meta(const lmx_index *ix, uint64_t id, uint64_t *n_tokens, uint32_t *domain)
{
    const shard *s = find_shard(ix, id);
    if (ix->gate)
        lmx__gate_pass(ix->gate, (size_t)(s - ix->shards), 1);
    const uint8_t *r = s->docs + (id - s->doc_base) * LMX_SHARD_DOC_SIZE;
    const char *why = record_fault(s, r);
    if (why) { /* an empty document, which plans skip; the caller's lmx__gate_end refuses the result */
        record_error(s, id, why, NULL);
        *n_tokens = 0;
        *domain = 0;
        return;
    }
    *n_tokens = lmx__get64(r + LMX_SD_N_TOKENS);
    *domain = s->domain_map[lmx__get32(r + LMX_SD_DOMAIN)];
}

int lmx__index_doc(const lmx_index *ix, uint64_t id, lmx_doc *out, lmx_error *err)
{
    if (id >= ix->n_docs)
        return lmx__err(err, LMX_ENOTFOUND, "document %llu: the index has %llu documents",
                        (unsigned long long)id, (unsigned long long)ix->n_docs);
    const shard *s = find_shard(ix, id);
    if (ix->gate)
        lmx__gate_pass(ix->gate, (size_t)(s - ix->shards), 0);
    const uint8_t *r = s->docs + (id - s->doc_base) * LMX_SHARD_DOC_SIZE;
    /* On error *out is still an empty document inside the shard, for callers that do not look at
     * the result (their lmx__gate_end refuses what they built). */
    *out = (lmx_doc){.id = id, .token_bytes = s->token_bytes, .tokens = s->tokens, .source = "", .kind = s->kind};
    const char *why = record_fault(s, r);
    const char *source = why ? NULL : shard_string(s, lmx__get32(r + LMX_SD_SOURCE));
    const char *doc_id = why || !source || !s->id_offsets ? "" : doc_id_of(s, id - s->doc_base);
    if (!why && !source)
        why = "its source's string table entry is invalid";
    else if (!why && !doc_id)
        why = "its entry in the ids section is invalid";
    if (why)
        return record_error(s, id, why, err);
    out->n_tokens = lmx__get64(r + LMX_SD_N_TOKENS);
    out->domain = s->domain_map[lmx__get32(r + LMX_SD_DOMAIN)];
    out->tokens = s->tokens + lmx__get64(r + LMX_SD_TOKEN_START) * s->token_bytes;
    out->source = source;
    out->line = lmx__get64(r + LMX_SD_LINE);
    out->doc_id = *doc_id ? doc_id : NULL;
    return LMX_OK;
}

int lmx__index_check_records(const lmx_index *ix, lmx_error *err)
{
    for (size_t k = 0; k < ix->n_shards; k++) {
        const shard *s = &ix->shards[k];
        for (uint64_t i = 0; i < s->n_docs; i++) {
            lmx_doc d;
            int rc = lmx__index_doc(ix, s->doc_base + i, &d, err);
            if (rc != LMX_OK)
                return rc;
        }
    }
    return LMX_OK;
}

const char *lmx__index_first_bad(const lmx_index *ix)
{
    const char *bad = lmx__gate_first_bad(ix->gate);
    return bad ? bad : lmx__gate_record_fault_shard();
}

json_t *lmx__index_stats_json(const lmx_index *ix)
{
    static const char *const names[] = LMX_BUCKET_NAMES;
    json_t *root = json_object(), *doms = json_object();
    json_object_set_new(root, "total_tokens", json_integer((json_int_t)ix->n_tokens));
    json_object_set_new(root, "total_docs", json_integer((json_int_t)ix->n_docs));
    json_object_set_new(root, "tokenizer", json_string(ix->tokenizer_identity));
    json_object_set_new(root, "separators", lmx__index_separators_json(ix));
    json_object_set_new(root, "index_id", json_string(ix->identity));
    for (uint32_t d = 0; d < ix->n_domains; d++) {
        const lmx_domain_stats *s = &ix->stats[d];
        json_t *o = json_object(), *b = json_object();
        json_object_set_new(o, "docs", json_integer((json_int_t)s->docs));
        json_object_set_new(o, "tokens", json_integer((json_int_t)s->tokens));
        json_object_set_new(o, "long_tokens", json_integer((json_int_t)s->long_tokens));
        for (int k = 0; k < LMX_N_BUCKETS; k++)
            json_object_set_new(b, names[k], json_integer((json_int_t)s->buckets[k]));
        json_object_set_new(o, "buckets", b);
        json_object_set_new(doms, ix->domains[d], o);
    }
    json_object_set_new(root, "domains", doms);
    return root;
}
