/* libFuzzer target: the index reader (common/lmx_index_read.c) on an index directory written from
 * the input.
 * Input layout: [flags u8] then chunks [len u16 LE][bytes]: chunk 0 is manifest.json, chunk k >= 1
 * is the file named by the manifest's shards[k-1].file (the last chunk takes whatever remains when
 * its length runs past the end). flags bit 0: patch each shard's file_size header field to the
 * real size, so mutations get past that check; bit 2: run lmx__index_verify too. (Binding a plan
 * is left out: building one batch over a block of 2^26 tokens takes ~0.5 s.)
 * When the index opens, every document is read (all tokens, source, domain) through the
 * accessors, plus stats, identity and verify; an out-of-bounds read shows up under ASan. Open
 * checks no document record: a damaged one must be refused by each read (LMX_EFORMAT naming the
 * shard and the document, and the thread's read fault), never read past its section. */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "lmx_index.h"
#include "lmx_util.h"

#define MAX_SHARDS 4
#define MAX_DOCS_READ 4096

static char dir[300], shard_dir[320], manifest_path[340];

static void clear_shards(void)
{
    DIR *d = opendir(shard_dir);
    if (!d)
        return;
    struct dirent *e;
    char p[640];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", shard_dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

static int next_chunk(const uint8_t **p, size_t *left, const uint8_t **chunk, size_t *len)
{
    if (*left < 2)
        return 0;
    size_t n = lmx__get16(*p);
    *p += 2;
    *left -= 2;
    if (n > *left)
        n = *left;
    *chunk = *p;
    *len = n;
    *p += n;
    *left -= n;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s", fuzz_scratch_dir("index"));
        snprintf(shard_dir, sizeof shard_dir, "%s/shards", dir);
        snprintf(manifest_path, sizeof manifest_path, "%s/manifest.json", dir);
        mkdir(shard_dir, 0700);
    }
    if (size < 1)
        return 0;
    int flags = data[0];
    const uint8_t *p = data + 1, *chunk;
    size_t left = size - 1, len;
    clear_shards();
    unlink(manifest_path);
    if (!next_chunk(&p, &left, &chunk, &len))
        return 0;
    fuzz_write_file(manifest_path, chunk, len);
    json_t *m = json_loadb((const char *)chunk, len, 0, NULL);
    json_t *shards = json_object_get(m, "shards");
    for (size_t k = 0; k < MAX_SHARDS && next_chunk(&p, &left, &chunk, &len); k++) {
        const char *name = json_string_value(json_object_get(json_array_get(shards, k), "file"));
        if (!name || !*name || name[0] == '.' || strchr(name, '/') || strlen(name) > 200)
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", shard_dir, name);
        if ((flags & 1) && len >= LMX_SH_FILE_SIZE + 8) {
            uint8_t *copy = malloc(len);
            memcpy(copy, chunk, len);
            lmx__put64(copy + LMX_SH_FILE_SIZE, len);
            fuzz_write_file(path, copy, len);
            free(copy);
        } else {
            fuzz_write_file(path, chunk, len);
        }
    }
    json_decref(m);

    lmx_index *ix = NULL;
    lmx_error err = {0};
    if (lmx__index_open(dir, &ix, &err) != LMX_OK) {
        FUZZ_CHECK(ix == NULL && err.code != LMX_OK && err.message[0]);
        return 0;
    }
    uint64_t n_docs = lmx__index_n_docs(ix), tokens_seen = 0, acc = 0, bad_records = 0;
    uint32_t nd = lmx__index_n_domains(ix);
    for (uint32_t d = 0; d < nd; d++) {
        const char *name = lmx__index_domain_name(ix, d);
        FUZZ_CHECK(name && lmx__index_domain_find(ix, name) == (int)d);
        acc += lmx__index_domain_stats(ix, d)->tokens;
    }
    for (uint64_t id = 0; id < n_docs && id < MAX_DOCS_READ; id++) {
        lmx_doc doc;
        lmx__gate_begin();
        int rc = lmx__index_doc(ix, id, &doc, &err);
        uint64_t n;
        uint32_t dm;
        lmx__index_doc_meta(ix, id, &n, &dm);
        const char *shard = NULL;
        int fault = lmx__gate_end(&shard);
        if (rc == LMX_EFORMAT) { /* a damaged record, refused where it is read (not at open) */
            FUZZ_CHECK(fault == LMX_EFORMAT && shard && strstr(err.message, shard) && strstr(err.message, "document "));
            /* doc_meta reads the record only: a damaged source or id entry leaves it usable */
            FUZZ_CHECK(doc.n_tokens == 0 && (n == 0 || dm < nd));
            bad_records++;
            continue;
        }
        FUZZ_CHECK(rc == LMX_OK);
        FUZZ_CHECK(doc.id == id && doc.domain < nd);
        FUZZ_CHECK(doc.token_bytes == lmx__index_token_bytes(ix));
        FUZZ_CHECK(n == doc.n_tokens && dm == doc.domain);
        for (uint64_t i = 0; i < doc.n_tokens; i++)
            acc += lmx__doc_token(&doc, i);
        tokens_seen += doc.n_tokens;
        acc += strlen(doc.source) + strlen(lmx__index_domain_name(ix, doc.domain)) + doc.line;
        acc += doc.doc_id ? strlen(doc.doc_id) : 0; /* the ids section (--id-field) */
    }
    /* Documents may overlap in the token array (the reader checks bounds only), so tokens_seen is
     * not compared with n_tokens. */
    (void)tokens_seen;
    /* verify's full pass agrees with the reads (when all of them were made) */
    if (n_docs <= MAX_DOCS_READ)
        FUZZ_CHECK((lmx__index_check_records(ix, &err) == LMX_OK) == (bad_records == 0));
    lmx_doc doc;
    FUZZ_CHECK(lmx__index_doc(ix, n_docs, &doc, &err) == LMX_ENOTFOUND);
    FUZZ_CHECK(strlen(lmx__index_identity(ix)) == 64);
    json_decref(lmx__index_stats_json(ix));
    lmx__index_close(ix);
    /* verify reports bad checksums on stderr; keep the fuzzer's output readable. */
    if (flags & 4) {
        lmx_error verr = {0};
        lmx__index_verify(dir, &verr);
    }
    volatile uint64_t sink = acc;
    (void)sink;
    return 0;
}
