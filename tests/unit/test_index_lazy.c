/* Lazy record checks (issue #15): opening an index costs work per shard, not per document, and
 * every read of a document record checks that record first. A damaged record is refused where it
 * is read, with a message naming the shard and the document; the plan build and batch paths
 * (whose loops ignore the reader's return codes) see it as the thread's read fault. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmx_index_internal.h"
#include "lmx_plan.h"
#include "lmx_test.h"
#include "lmx_util.h"

static char root[256];

static int build(const char *out, const char *input, lmx_error *err)
{
    lmx_index_options o = {0};
    o.tokenizer = "bytes";
    o.out_dir = out;
    o.threads = 1;
    char *inputs[] = {(char *)input};
    return lmx__index_build(&o, inputs, 1, err);
}

/* The one shard of the index at out (its manifest's first entry). */
static void only_shard(const char *out, char *path, size_t n)
{
    char mp[600];
    snprintf(mp, sizeof mp, "%s/manifest.json", out);
    json_t *m = json_load_file(mp, 0, NULL);
    const char *f = json_string_value(json_object_get(json_array_get(json_object_get(m, "shards"), 0), "file"));
    snprintf(path, n, "%s/shards/%s", out, f ? f : "?");
    json_decref(m);
}

static uint64_t get_at(const char *path, long off, int width)
{
    uint8_t b[8] = {0};
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (f) {
        fseek(f, off, SEEK_SET);
        CHECK_EQ_U64(fread(b, 1, (size_t)width, f), (uint64_t)width);
        fclose(f);
    }
    return width == 8 ? lmx__get64(b) : lmx__get32(b);
}

static void put_at(const char *path, long off, uint64_t v, int width)
{
    uint8_t b[8];
    if (width == 8)
        lmx__put64(b, v);
    else
        lmx__put32(b, (uint32_t)v);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, off, SEEK_SET);
        fwrite(b, 1, (size_t)width, f);
        fclose(f);
    }
}

/* Record fields patched one at a time past their section: open still succeeds (it reads no
 * record; the old reader refused the whole index here), the other documents read as before, and
 * the damaged one is refused by every reader with the shard and the document named. */
static void test_damaged_record(void)
{
    char in[512], out[512], sp[700];
    snprintf(in, sizeof in, "%s/in.jsonl", root);
    snprintf(out, sizeof out, "%s/ix", root);
    const char *corpus = "{\"text\": \"alpha\", \"meta\": {\"redpajama_set_name\": \"A\"}}\n"
                         "{\"text\": \"bravo bravo\", \"meta\": {\"redpajama_set_name\": \"B\"}}\n"
                         "{\"text\": \"charlie\", \"meta\": {\"redpajama_set_name\": \"A\"}}\n";
    lmx_test_write(in, corpus, strlen(corpus));
    lmx_error err = {0};
    CHECK_EQ_INT(build(out, in, &err), LMX_OK);
    only_shard(out, sp, sizeof sp);
    uint64_t n_tokens = get_at(sp, LMX_SH_N_TOKENS, 8);
    long rec1 = (long)get_at(sp, LMX_SH_DOCS_OFFSET, 8) + LMX_SHARD_DOC_SIZE; /* document 1 */
    struct {
        long off;
        int width;
        uint64_t value;
        const char *why;
    } bad[] = {
        {LMX_SD_TOKEN_START, 8, n_tokens, "token range"},         /* starts at the end, 11 tokens */
        {LMX_SD_TOKEN_START, 8, UINT64_MAX - 3, "token range"},   /* start + n wraps */
        {LMX_SD_N_TOKENS, 8, n_tokens + 1, "token range"},        /* longer than the section */
        {LMX_SD_DOMAIN, 4, 7, "domain"},                          /* 2 domains in the shard */
        {LMX_SD_SOURCE, 4, 1000, "source"},                       /* past the string table */
    };
    char want_doc[64];
    snprintf(want_doc, sizeof want_doc, "document 1 (record 1 of the shard)");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t orig = get_at(sp, rec1 + bad[i].off, bad[i].width);
        put_at(sp, rec1 + bad[i].off, bad[i].value, bad[i].width);
        lmx_index *ix = NULL;
        int rc = lmx__index_open(out, &ix, &err);
        CHECK_EQ_INT(rc, LMX_OK);
        if (rc != LMX_OK) {
            fprintf(stderr, "open with damaged record field %ld: %s\n", bad[i].off, err.message);
            put_at(sp, rec1 + bad[i].off, orig, bad[i].width);
            continue;
        }
        lmx_doc d;
        CHECK_EQ_INT(lmx__index_doc(ix, 0, &d, &err), LMX_OK);
        CHECK_EQ_U64(d.n_tokens, 5);
        CHECK_EQ_INT(lmx__index_doc(ix, 2, &d, &err), LMX_OK);
        CHECK_EQ_U64(d.n_tokens, 7);
        lmx__gate_begin();
        CHECK_EQ_INT(lmx__index_doc(ix, 1, &d, &err), LMX_EFORMAT);
        CHECK_CONTAINS(err.message, sp);
        CHECK_CONTAINS(err.message, want_doc);
        CHECK_CONTAINS(err.message, bad[i].why);
        CHECK_EQ_U64(d.n_tokens, 0); /* an empty document for callers that ignore the code */
        const char *shard = NULL;
        CHECK_EQ_INT(lmx__gate_end(&shard), LMX_EFORMAT); /* the thread's fault, gate or not */
        CHECK_EQ_STR(shard, sp);
        CHECK_CONTAINS(lmx__gate_fault_message(), want_doc);
        /* the plan builder's scan */
        lmx__gate_begin();
        uint64_t n = 99;
        uint32_t dm = 99;
        lmx__index_doc_meta(ix, 0, &n, &dm);
        CHECK_EQ_INT(lmx__gate_end(NULL), LMX_OK);
        lmx__gate_begin();
        lmx__index_doc_meta(ix, 1, &n, &dm);
        CHECK(n == 0 && dm == 0);
        CHECK_EQ_INT(lmx__gate_end(NULL), LMX_EFORMAT);
        CHECK_CONTAINS(lmx__gate_fault_message(), sp);
        /* `longmixd verify`'s full pass */
        lmx__err_clear(&err);
        CHECK_EQ_INT(lmx__index_check_records(ix, &err), LMX_EFORMAT);
        CHECK_CONTAINS(err.message, want_doc);
        lmx__index_close(ix);
        put_at(sp, rec1 + bad[i].off, orig, bad[i].width);
    }

    /* A plan over the damaged record: the build sees the fault, and its item table is not kept. */
    char tables[600];
    snprintf(tables, sizeof tables, "%s/tables", root);
    uint64_t dom1 = get_at(sp, rec1 + LMX_SD_DOMAIN, 4);
    put_at(sp, rec1 + LMX_SD_DOMAIN, 7, 4);
    lmx_index *ix = NULL;
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_OK);
    if (ix) {
        CHECK_EQ_INT(lmx__index_set_table_dir(ix, tables), LMX_OK);
        lmx_plan_spec spec;
        memset(&spec, 0, sizeof spec);
        json_t *so = json_pack("{s:s, s:i, s:i}", "strategy", "original", "seq_len", 16, "global_batch", 1);
        CHECK_EQ_INT(lmx__plan_spec_parse("p", so, &spec, &err), LMX_OK);
        json_decref(so);
        lmx_plan *p = NULL;
        lmx__gate_begin();
        int rc = lmx__plan_create(ix, "p", &spec, NULL, &p, &err);
        CHECK_EQ_INT(lmx__gate_end(NULL), LMX_EFORMAT);
        CHECK_CONTAINS(lmx__gate_fault_message(), want_doc);
        if (rc == LMX_OK)
            lmx__plan_free(p);
        lmx__plan_spec_free(&spec);
        CHECK(lmx_test_count_entries(tables) <= 0); /* no table file kept (none, or no folder) */
        lmx__index_close(ix);
    }
    put_at(sp, rec1 + LMX_SD_DOMAIN, dom1, 4);

    /* A damaged source string entry (the strings are checked per read too). */
    long str_off = (long)get_at(sp, LMX_SH_STRINGS_OFFSET, 8);
    uint32_t src = (uint32_t)get_at(sp, rec1 + LMX_SD_SOURCE, 4);
    uint64_t orig = get_at(sp, str_off + 8 * (src + 1), 8);
    put_at(sp, str_off + 8 * (src + 1), 1u << 30, 8);
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_OK);
    if (ix) {
        lmx_doc d;
        CHECK_EQ_INT(lmx__index_doc(ix, 1, &d, &err), LMX_EFORMAT);
        CHECK_CONTAINS(err.message, "string table");
        CHECK_CONTAINS(err.message, want_doc);
        lmx__index_close(ix);
    }
    put_at(sp, str_off + 8 * (src + 1), orig, 8);
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_OK);
    if (ix) {
        CHECK_EQ_INT(lmx__index_check_records(ix, &err), LMX_OK);
        lmx__index_close(ix);
    }
}

/* Resident pages of the mappings of path in this process (/proc/self/smaps "Rss"), in bytes:
 * what this process has touched (or had mapped around a touch), whatever the page cache holds. */
static uint64_t mapped_rss(const char *path)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return UINT64_MAX;
    char line[8192], first[256];
    int in = 0;
    uint64_t kb = 0;
    size_t pl = strlen(path);
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n')
            line[--n] = '\0';
        unsigned long long v;
        if (sscanf(line, "%255s", first) != 1)
            continue;
        if (first[strlen(first) - 1] != ':') /* a mapping's header: "START-END PERMS OFFSET DEV INODE PATH" */
            in = n >= pl && strcmp(line + n - pl, path) == 0;
        else if (in && sscanf(line, "Rss: %llu kB", &v) == 1)
            kb += v;
    }
    fclose(f);
    return kb * 1024;
}

/* Opening an index reads no document record: a 1M-document shard (32 MB of records) is opened
 * with a few pages of it mapped in; reading every record maps them all. The old reader scanned
 * the records at open (all 32 MB resident after open). */
static void test_open_reads_no_records(void)
{
    char in[512], out[512], sp[700];
    snprintf(in, sizeof in, "%s/one.jsonl", root);
    snprintf(out, sizeof out, "%s/big", root);
    const char *one = "{\"text\": \"x\", \"meta\": {\"redpajama_set_name\": \"A\"}}\n";
    lmx_test_write(in, one, strlen(one));
    lmx_error err = {0};
    CHECK_EQ_INT(build(out, in, &err), LMX_OK);
    /* The same index with its shard replaced by one of N one-token documents. */
    enum { N = 1000000 };
    char mp[600];
    snprintf(mp, sizeof mp, "%s/manifest.json", out);
    json_t *m = json_load_file(mp, 0, NULL);
    json_t *e = json_array_get(json_object_get(m, "shards"), 0);
    lmx_shard_writer w;
    CHECK_EQ_INT(lmx__shard_open(&w, out, "big.lmxs", 2, &err), LMX_OK);
    uint8_t tok[2] = {'x', 0};
    int rc = LMX_OK;
    for (uint64_t i = 0; rc == LMX_OK && i < N; i++)
        rc = lmx__shard_add(&w, tok, 1, "A", in, i + 1, NULL, &err);
    char sum[65];
    uint64_t size = 0;
    CHECK_EQ_INT(rc, LMX_OK);
    CHECK_EQ_INT(lmx__shard_finish(&w, sum, &size, &err), LMX_OK);
    lmx__shard_free(&w);
    lmx_domain_stats st = {0};
    for (uint64_t i = 0; i < N; i++)
        lmx__stats_add(&st, 1, LMX_LONG_THRESHOLD);
    json_t *doms = json_object();
    json_object_set_new(doms, "A", lmx__stats_to_json(&st));
    json_object_set_new(e, "file", json_string("big.lmxs"));
    json_object_set_new(e, "docs", json_integer(N));
    json_object_set_new(e, "tokens", json_integer(N));
    json_object_set_new(e, "size", json_integer((json_int_t)size));
    json_object_set_new(e, "blake2b", json_string(sum));
    json_object_set(e, "domains", doms);
    json_object_set_new(m, "domains", doms);
    json_object_set_new(m, "total_docs", json_integer(N));
    json_object_set_new(m, "total_tokens", json_integer(N));
    CHECK_EQ_INT(lmx__manifest_write(out, m, &err), LMX_OK);
    json_decref(m);
    snprintf(sp, sizeof sp, "%s/shards/big.lmxs", out);
    const uint64_t records = (uint64_t)N * LMX_SHARD_DOC_SIZE;

    lmx_index *ix = NULL;
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_OK);
    if (!ix) {
        fprintf(stderr, "open: %s\n", err.message);
        return;
    }
    CHECK_EQ_U64(lmx__index_n_docs(ix), N);
    uint64_t after_open = mapped_rss(sp);
    uint64_t n_sum = 0;
    for (uint64_t i = 0; i < N; i++) {
        uint64_t n;
        uint32_t dm;
        lmx__index_doc_meta(ix, i, &n, &dm);
        n_sum += n;
    }
    CHECK_EQ_U64(n_sum, N);
    uint64_t after_scan = mapped_rss(sp);
    if (!(after_open < records / 4 && after_scan >= records)) {
        fprintf(stderr, "shard pages mapped: %llu bytes after open, %llu after reading every record (%llu bytes of records)\n",
                (unsigned long long)after_open, (unsigned long long)after_scan, (unsigned long long)records);
        lmx_test_failures++;
    }
    lmx__index_close(ix);
}

int main(void)
{
    lmx_test_tmpdir("index_lazy", root, sizeof root);
    test_damaged_record();
    test_open_reads_no_records();
    CHECK_EQ_INT(lmx_test_rmtree(root), 0);
    TEST_MAIN_END();
}
