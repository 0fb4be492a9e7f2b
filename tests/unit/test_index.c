/* common/index/ and inputs/: build an index with the `bytes` tokenizer from a
 * generated corpus (.jsonl, .jsonl.zst, folders of .txt), read it back, statistics, provenance,
 * verification, error reporting for bad inputs. */
#include <jansson.h>
#include <string.h>
#include <zstd.h>

#include "lmx_index.h"
#include "lmx_test.h"
#include "lmx_util.h"

static char root[256];

typedef struct expect_doc {
    char source[512];
    uint64_t line;
    const char *domain;
    char *text; /* expected token bytes (owned) */
    size_t len;
} expect_doc;

static expect_doc want[32];
static int n_want;

static void expect(const char *source, uint64_t line, const char *domain, const char *text, size_t len)
{
    expect_doc *e = &want[n_want++];
    snprintf(e->source, sizeof e->source, "%s", source);
    e->line = line;
    e->domain = domain;
    e->text = malloc(len + 1);
    memcpy(e->text, text, len);
    e->len = len;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(c + (char)(i % 7));
    s[n] = '\0';
    return s;
}

static void write_zst(const char *path, const char *src, size_t n, size_t cut)
{
    size_t cap = ZSTD_compressBound(n);
    void *dst = malloc(cap);
    size_t z = ZSTD_compress(dst, cap, src, n, 3);
    if (ZSTD_isError(z)) {
        fprintf(stderr, "zstd: %s\n", ZSTD_getErrorName(z));
        exit(2);
    }
    lmx_test_write(path, dst, z - cut);
    free(dst);
}

/* Corpus under root/in: a.jsonl, b.jsonl.zst, books/{x,y}.txt, books/sub/z.txt. */
static void make_corpus(void)
{
    char p[512], dir[512];
    snprintf(dir, sizeof dir, "%s/in", root);
    CHECK_EQ_INT(lmx__mkdirs(dir, NULL), LMX_OK);

    /* a.jsonl: blank line 2, a long book at line 4, last line without '\n' */
    char *book = repeat('a', 5000);
    lmx_buf j = {0};
    lmx__buf_printf(&j, "{\"text\": \"hello world\", \"meta\": {\"redpajama_set_name\": \"RedPajamaC4\"}}\n");
    lmx__buf_printf(&j, "   \n");
    lmx__buf_printf(&j, "{\"meta\": {\"redpajama_set_name\": \"RedPajamaWikipedia\"}, \"text\": \"caf\\u00e9 \\\"q\\\"\\n\"}\n");
    lmx__buf_printf(&j, "{\"text\": \"%s\", \"meta\": {\"redpajama_set_name\": \"RedPajamaBook\", \"x\": 1}}\n", book);
    lmx__buf_printf(&j, "{\"text\": \"last\", \"meta\": {\"redpajama_set_name\": \"RedPajamaC4\"}}");
    snprintf(p, sizeof p, "%s/a.jsonl", dir);
    lmx_test_write(p, j.data, j.len);
    expect(p, 1, "RedPajamaC4", "hello world", 11);
    expect(p, 3, "RedPajamaWikipedia", "caf\xc3\xa9 \"q\"\n", 10);
    expect(p, 4, "RedPajamaBook", book, 5000);
    expect(p, 5, "RedPajamaC4", "last", 4);
    lmx__buf_free(&j);
    free(book);

    /* b.jsonl.zst: larger than one zstd output buffer (a 200000-token document: bucket 128K+) */
    char *mid = repeat('A', 1500), *huge = repeat('0', 200000);
    lmx_buf z = {0};
    lmx__buf_printf(&z, "{\"text\": \"%s\", \"meta\": {\"redpajama_set_name\": \"RedPajamaArXiv\"}}\n", mid);
    lmx__buf_printf(&z, "{\"text\": \"%s\", \"meta\": {\"redpajama_set_name\": \"RedPajamaArXiv\"}}\n", huge);
    lmx__buf_printf(&z, "{\"text\": \"x\", \"meta\": {\"redpajama_set_name\": \"RedPajamaArXiv\"}}\n");
    snprintf(p, sizeof p, "%s/b.jsonl.zst", dir);
    write_zst(p, (const char *)z.data, z.len, 0);
    expect(p, 1, "RedPajamaArXiv", mid, 1500);
    expect(p, 2, "RedPajamaArXiv", huge, 200000);
    expect(p, 3, "RedPajamaArXiv", "x", 1);
    lmx__buf_free(&z);
    free(mid);
    free(huge);

    /* books/: x.txt 4095 bytes (short), y.txt 4096 bytes (long: the threshold is inclusive);
     * books/sub/z.txt: domain "sub". Files other than .txt/.jsonl/.jsonl.zst are ignored. */
    snprintf(p, sizeof p, "%s/books/sub", dir);
    CHECK_EQ_INT(lmx__mkdirs(p, NULL), LMX_OK);
    char *x = repeat('k', 4095), *y = repeat('m', 4096);
    snprintf(p, sizeof p, "%s/books/x.txt", dir);
    lmx_test_write(p, x, 4095);
    expect(p, 0, "books", x, 4095);
    snprintf(p, sizeof p, "%s/books/y.txt", dir);
    lmx_test_write(p, y, 4096);
    expect(p, 0, "books", y, 4096);
    snprintf(p, sizeof p, "%s/books/README.md", dir);
    lmx_test_write(p, "ignored", 7);
    snprintf(p, sizeof p, "%s/books/sub/z.txt", dir);
    lmx_test_write(p, "zed\n", 4);
    expect(p, 0, "sub", "zed\n", 4);
    free(x);
    free(y);
}

static int build(const char *out, char *const *inputs, int n, int on_error, lmx_error *err)
{
    lmx_index_options o = {0};
    o.tokenizer = "bytes";
    o.out_dir = out;
    o.threads = 2;
    o.domain_field = NULL; /* documented default: meta.redpajama_set_name */
    o.on_error = on_error;
    return lmx__index_build(&o, inputs, n, err);
}

static const lmx_domain_stats *stats_of(const lmx_index *ix, const char *name)
{
    int d = lmx__index_domain_find(ix, name);
    CHECK(d >= 0);
    return d >= 0 ? lmx__index_domain_stats(ix, (uint32_t)d) : NULL;
}

static void check_stats(const lmx_index *ix)
{
    /* docs per domain */
    static const struct {
        const char *name;
        uint64_t docs, tokens, long_tokens;
    } dom[] = {
        {"RedPajamaArXiv", 3, 1500 + 200000 + 1, 200000},
        {"RedPajamaBook", 1, 5000, 5000},
        {"RedPajamaC4", 2, 15, 0},
        {"RedPajamaWikipedia", 1, 10, 0},
        {"books", 2, 4095 + 4096, 4096},
        {"sub", 1, 4, 0},
    };
    CHECK_EQ_U64(lmx__index_n_domains(ix), 6);
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof dom / sizeof *dom; i++) {
        const lmx_domain_stats *s = stats_of(ix, dom[i].name);
        if (!s)
            continue;
        CHECK_EQ_STR(lmx__index_domain_name(ix, (uint32_t)lmx__index_domain_find(ix, dom[i].name)), dom[i].name);
        CHECK_EQ_U64(s->docs, dom[i].docs);
        CHECK_EQ_U64(s->tokens, dom[i].tokens);
        CHECK_EQ_U64(s->long_tokens, dom[i].long_tokens);
        uint64_t sum = 0;
        for (int b = 0; b < LMX_N_BUCKETS; b++)
            sum += s->buckets[b];
        CHECK_EQ_U64(sum, s->tokens);
        total += s->tokens;
    }
    CHECK_EQ_U64(total, lmx__index_n_tokens(ix));
    CHECK(lmx__index_domain_find(ix, "nope") < 0);
    /* token-weighted buckets */
    const lmx_domain_stats *ax = stats_of(ix, "RedPajamaArXiv"), *bk = stats_of(ix, "books"),
                           *pb = stats_of(ix, "RedPajamaBook");
    if (ax) {
        CHECK_EQ_U64(ax->buckets[0], 1);
        CHECK_EQ_U64(ax->buckets[1], 1500);
        CHECK_EQ_U64(ax->buckets[8], 200000);
    }
    if (bk) {
        CHECK_EQ_U64(bk->buckets[2], 4095);
        CHECK_EQ_U64(bk->buckets[3], 4096);
    }
    if (pb)
        CHECK_EQ_U64(pb->buckets[3], 5000);

    /* stats --json carries the same numbers under the contract's names */
    json_t *j = lmx__index_stats_json(ix);
    CHECK(j != NULL);
    CHECK_EQ_U64(json_integer_value(json_object_get(j, "total_tokens")), lmx__index_n_tokens(ix));
    json_t *ax_j = json_object_get(json_object_get(j, "domains"), "RedPajamaArXiv");
    CHECK_EQ_U64(json_integer_value(json_object_get(ax_j, "docs")), 3);
    CHECK_EQ_U64(json_integer_value(json_object_get(ax_j, "long_tokens")), 200000);
    CHECK_EQ_U64(json_integer_value(json_object_get(json_object_get(ax_j, "buckets"), "128K+")), 200000);
    CHECK_EQ_U64(json_integer_value(json_object_get(json_object_get(ax_j, "buckets"), "1K-2K")), 1500);
    CHECK_EQ_U64(json_object_size(json_object_get(ax_j, "buckets")), LMX_N_BUCKETS);
    json_decref(j);
}

static void check_docs(const lmx_index *ix)
{
    CHECK_EQ_U64(lmx__index_n_docs(ix), (uint64_t)n_want);
    CHECK_EQ_U64(lmx__index_token_bytes(ix), 2);
    CHECK_EQ_U64(lmx__index_bos(ix), 256);
    CHECK_EQ_U64(lmx__index_eos(ix), 257);
    CHECK_EQ_U64(lmx__index_vocab_size(ix), 258);
    CHECK_EQ_STR(lmx__index_tokenizer_identity(ix), "bytes");
    CHECK_EQ_U64(strlen(lmx__index_identity(ix)), 64);
    uint64_t total = 0;
    /* Doc ids follow the shards sorted by input path, then the order inside each input. */
    for (int i = 0; i < n_want && (uint64_t)i < lmx__index_n_docs(ix); i++) {
        lmx_doc d;
        lmx_error err = {0};
        CHECK_EQ_INT(lmx__index_doc(ix, (uint64_t)i, &d, &err), LMX_OK);
        const expect_doc *e = &want[i];
        CHECK_EQ_U64(d.id, (uint64_t)i);
        CHECK_EQ_STR(d.source, e->source);
        CHECK_EQ_U64(d.line, e->line);
        CHECK_EQ_STR(lmx__index_domain_name(ix, d.domain), e->domain);
        CHECK_EQ_U64(d.token_bytes, 2);
        CHECK_EQ_U64(d.n_tokens, e->len);
        int same = d.n_tokens == e->len;
        for (uint64_t t = 0; same && t < d.n_tokens; t++)
            same = lmx__doc_token(&d, t) == (uint8_t)e->text[t];
        if (!same)
            fprintf(stderr, "doc %d (%s:%llu): tokens differ from the input bytes\n", i, e->source,
                    (unsigned long long)e->line);
        CHECK(same);
        uint64_t n;
        uint32_t dm;
        lmx__index_doc_meta(ix, (uint64_t)i, &n, &dm);
        CHECK_EQ_U64(n, e->len);
        CHECK_EQ_U64(dm, d.domain);
        total += d.n_tokens;
    }
    CHECK_EQ_U64(total, lmx__index_n_tokens(ix));
    lmx_doc d;
    lmx_error err = {0};
    CHECK_EQ_INT(lmx__index_doc(ix, (uint64_t)n_want, &d, &err), LMX_ENOTFOUND);
    CHECK_EQ_INT(lmx__index_doc(ix, UINT64_MAX, &d, &err), LMX_ENOTFOUND);
}

/* Path of the shard holding input `input_suffix`, from the manifest. */
static int shard_path(const char *out, const char *input_suffix, char *path, size_t n)
{
    char mp[512];
    snprintf(mp, sizeof mp, "%s/manifest.json", out);
    json_t *m = json_load_file(mp, 0, NULL);
    json_t *sh = json_object_get(m, "shards");
    int found = 0;
    for (size_t i = 0; i < json_array_size(sh); i++) {
        const char *in = json_string_value(json_object_get(json_array_get(sh, i), "input"));
        size_t a = in ? strlen(in) : 0, b = strlen(input_suffix);
        if (in && a >= b && strcmp(in + a - b, input_suffix) == 0) {
            snprintf(path, n, "%s/shards/%s", out,
                     json_string_value(json_object_get(json_array_get(sh, i), "file")));
            found = 1;
        }
    }
    json_decref(m);
    return found;
}

static void patch_file(const char *path, long off, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f)
        return;
    fseek(f, off, SEEK_SET);
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static void read_at(const char *path, long off, void *bytes, size_t n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    fseek(f, off, SEEK_SET);
    CHECK_EQ_U64(fread(bytes, 1, n, f), n);
    fclose(f);
}

static void test_build_and_read(void)
{
    make_corpus();
    char out[512], in[512];
    snprintf(out, sizeof out, "%s/ix", root);
    snprintf(in, sizeof in, "%s/in", root);
    char *inputs[] = {in};
    lmx_error err = {0};
    int rc = build(out, inputs, 1, LMX_ON_ERROR_FAIL, &err);
    CHECK_EQ_INT(rc, LMX_OK);
    if (rc) {
        fprintf(stderr, "build: %s\n", err.message);
        return;
    }
    lmx_index *ix = NULL;
    rc = lmx__index_open(out, &ix, &err);
    CHECK_EQ_INT(rc, LMX_OK);
    if (rc) {
        fprintf(stderr, "open: %s\n", err.message);
        return;
    }
    CHECK_EQ_STR(lmx__index_dir(ix), out);
    check_docs(ix);
    check_stats(ix);
    char identity[65];
    snprintf(identity, sizeof identity, "%s", lmx__index_identity(ix));
    lmx__index_close(ix);
    lmx__index_close(NULL);

    /* No temp files left in shards/. */
    char shards[600];
    snprintf(shards, sizeof shards, "%s/shards", out);
    CHECK_EQ_INT(lmx_test_count_entries(shards), 4); /* a.jsonl, b.jsonl.zst, books, books/sub */
    CHECK_EQ_INT(lmx__index_verify(out, &err), LMX_OK);

    /* Re-running over the same inputs changes nothing: same identity, same documents. */
    CHECK_EQ_INT(build(out, inputs, 1, LMX_ON_ERROR_FAIL, &err), LMX_OK);
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_OK);
    if (ix) {
        CHECK_EQ_STR(lmx__index_identity(ix), identity);
        check_docs(ix);
        lmx__index_close(ix);
    }

    /* A flipped token byte: open still works (cheap checks), verify names the shard. */
    char sp[600];
    CHECK(shard_path(out, "b.jsonl.zst", sp, sizeof sp));
    uint8_t c;
    read_at(sp, LMX_SHARD_HEADER_SIZE + 1000, &c, 1);
    c ^= 1;
    patch_file(sp, LMX_SHARD_HEADER_SIZE + 1000, &c, 1);
    lmx__err_clear(&err);
    CHECK_EQ_INT(lmx__index_verify(out, &err), LMX_ECHECKSUM);
    CHECK_EQ_INT(err.code, LMX_ECHECKSUM);
    CHECK_CONTAINS(err.message, sp);
    CHECK_CONTAINS(err.message, "1 shard");
    c ^= 1;
    patch_file(sp, LMX_SHARD_HEADER_SIZE + 1000, &c, 1);
    CHECK_EQ_INT(lmx__index_verify(out, &err), LMX_OK);

    /* Corrupt shard headers are rejected by open, naming the file, without reading outside the
     * mapping (run under ASan). */
    struct {
        long off;
        uint64_t value;
        int width;
    } bad[] = {
        {0, 0x5858585858585858ull, 8},                   /* magic */
        {LMX_SH_VERSION, 2, 4},                          /* version */
        {LMX_SH_TOKEN_BYTES, 3, 4},                      /* token_bytes */
        {LMX_SH_N_DOCS, 1000, 8},                        /* disagrees with the manifest */
        {LMX_SH_FILE_SIZE, 1, 8},                        /* file size */
        {LMX_SH_DOCS_OFFSET, (uint64_t)1 << 40, 8},      /* past the end */
        {LMX_SH_STRINGS_OFFSET, (uint64_t)1 << 40, 8},   /* past the end */
        {LMX_SH_STRINGS_OFFSET, UINT64_MAX - 7, 8},      /* wraps */
        {LMX_SH_N_STRINGS, (uint64_t)1 << 60, 8},
        {LMX_SH_N_DOMAINS, 1000, 4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint8_t orig[8], v[8];
        read_at(sp, bad[i].off, orig, 8);
        memcpy(v, orig, 8);
        if (bad[i].width == 8)
            lmx__put64(v, bad[i].value);
        else
            lmx__put32(v, (uint32_t)bad[i].value);
        patch_file(sp, bad[i].off, v, 8);
        lmx__err_clear(&err);
        ix = NULL;
        rc = lmx__index_open(out, &ix, &err);
        if (rc == LMX_OK || ix != NULL || !strstr(err.message, sp)) {
            fprintf(stderr, "corrupt shard header field at %ld: open gave %d '%s'\n", bad[i].off, rc, err.message);
            lmx_test_failures++;
        }
        lmx__index_close(ix);
        patch_file(sp, bad[i].off, orig, 8);
    }
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_OK);
    lmx__index_close(ix);

    /* Manifest problems. */
    char mp[600];
    snprintf(mp, sizeof mp, "%s/manifest.json", out);
    char *manifest = NULL;
    size_t mlen = 0;
    CHECK_EQ_INT(lmx__read_file(mp, 1 << 24, &manifest, &mlen, &err), LMX_OK);
    lmx_test_write(mp, "{\"format\": ", 11);
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_EFORMAT);
    CHECK_CONTAINS(err.message, mp);
    CHECK_EQ_INT(lmx__index_verify(out, &err), LMX_EFORMAT);
    lmx_test_write(mp, "{\"format\": \"longmix-index\", \"version\": 99}", 42);
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_EUNSUPPORTED);
    lmx_test_write(mp, "{\"format\": \"other\", \"version\": 1}", 33);
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_EFORMAT);
    CHECK_CONTAINS(err.message, "format");
    if (manifest)
        lmx_test_write(mp, manifest, mlen);
    free(manifest);
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_OK);
    lmx__index_close(ix);
    unlink(mp);
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_ENOTFOUND);
    CHECK(ix == NULL);
}

/* DOMAIN=PATH forces the domain; a single .txt INPUT takes its folder's name. */
static void test_forced_domain(void)
{
    char dir[512], f1[600], f2[600], arg1[700], out[600];
    snprintf(dir, sizeof dir, "%s/forced/lonely", root);
    CHECK_EQ_INT(lmx__mkdirs(dir, NULL), LMX_OK);
    snprintf(f1, sizeof f1, "%s/c.jsonl", dir);
    const char *c = "{\"text\": \"ab\", \"meta\": {\"redpajama_set_name\": \"Ignored\"}}\n{\"text\": \"cd\"}\n";
    lmx_test_write(f1, c, strlen(c));
    snprintf(f2, sizeof f2, "%s/one.txt", dir);
    lmx_test_write(f2, "txt", 3);
    snprintf(arg1, sizeof arg1, "mine=%s", f1);
    snprintf(out, sizeof out, "%s/forced-ix", root);
    char *inputs[] = {arg1, f2};
    lmx_error err = {0};
    int rc = build(out, inputs, 2, LMX_ON_ERROR_FAIL, &err);
    CHECK_EQ_INT(rc, LMX_OK);
    if (rc) {
        fprintf(stderr, "forced: %s\n", err.message);
        return;
    }
    lmx_index *ix = NULL;
    CHECK_EQ_INT(lmx__index_open(out, &ix, &err), LMX_OK);
    if (!ix)
        return;
    CHECK_EQ_U64(lmx__index_n_docs(ix), 3);
    CHECK_EQ_U64(lmx__index_n_domains(ix), 2);
    const lmx_domain_stats *m = stats_of(ix, "mine"), *l = stats_of(ix, "lonely");
    if (m)
        CHECK_EQ_U64(m->docs, 2);
    if (l)
        CHECK_EQ_U64(l->docs, 1);
    lmx_doc d;
    CHECK_EQ_INT(lmx__index_doc(ix, 0, &d, &err), LMX_OK);
    CHECK_EQ_STR(d.source, f1); /* the path, without "mine=" */
    CHECK_EQ_U64(d.line, 1);
    CHECK_EQ_INT(lmx__index_doc(ix, 2, &d, &err), LMX_OK);
    CHECK_EQ_STR(d.source, f2);
    CHECK_EQ_U64(d.line, 0);
    CHECK_EQ_STR(lmx__index_domain_name(ix, d.domain), "lonely");
    lmx__index_close(ix);
}

static void test_bad_inputs(void)
{
    char dir[512], p[600], out[600];
    snprintf(dir, sizeof dir, "%s/bad", root);
    CHECK_EQ_INT(lmx__mkdirs(dir, NULL), LMX_OK);
    lmx_error err = {0};

    /* Truncated .jsonl.zst: an error naming the file and the line. */
    lmx_buf z = {0};
    for (int i = 0; i < 50; i++)
        lmx__buf_printf(&z, "{\"text\": \"document %d\", \"meta\": {\"redpajama_set_name\": \"D\"}}\n", i);
    snprintf(p, sizeof p, "%s/trunc.jsonl.zst", dir);
    write_zst(p, (const char *)z.data, z.len, 7);
    lmx__buf_free(&z);
    snprintf(out, sizeof out, "%s/out-trunc", root);
    char *in1[] = {p};
    lmx__err_clear(&err);
    CHECK_EQ_INT(build(out, in1, 1, LMX_ON_ERROR_FAIL, &err), LMX_EFORMAT);
    CHECK_CONTAINS(err.message, p);
    CHECK_CONTAINS(err.message, "truncated");
    CHECK_CONTAINS(err.message, "line");
    /* nothing published: no manifest, no shard or temp file */
    char mp[700];
    snprintf(mp, sizeof mp, "%s/manifest.json", out);
    CHECK(access(mp, F_OK) != 0);
    snprintf(mp, sizeof mp, "%s/shards", out);
    CHECK(lmx_test_count_entries(mp) <= 0); /* empty or not created */

    /* Not zstd at all. */
    snprintf(p, sizeof p, "%s/garbage.jsonl.zst", dir);
    lmx_test_write(p, "this is not zstd\n", 17);
    char *in2[] = {p};
    snprintf(out, sizeof out, "%s/out-garbage", root);
    lmx__err_clear(&err);
    CHECK_EQ_INT(build(out, in2, 1, LMX_ON_ERROR_FAIL, &err), LMX_EFORMAT);
    CHECK_CONTAINS(err.message, p);
    CHECK_CONTAINS(err.message, "not zstd data"); /* magic bytes decide, the name only promises */

    /* Malformed JSON at line 3 (after a good line and a blank one); a record without text at
     * line 4 and one without the domain at line 5; a good one at line 6. */
    snprintf(p, sizeof p, "%s/bad.jsonl", dir);
    const char *j = "{\"text\": \"ok\", \"meta\": {\"redpajama_set_name\": \"D\"}}\n"
                    "\n"
                    "{\"text\": \"broken\", \n"
                    "{\"meta\": {\"redpajama_set_name\": \"D\"}}\n"
                    "{\"text\": \"no domain\", \"meta\": {}}\n"
                    "{\"text\": \"fine\", \"meta\": {\"redpajama_set_name\": \"D\"}}\n";
    lmx_test_write(p, j, strlen(j));
    char *in3[] = {p};
    snprintf(out, sizeof out, "%s/out-json", root);
    lmx__err_clear(&err);
    CHECK_EQ_INT(build(out, in3, 1, LMX_ON_ERROR_FAIL, &err), LMX_EINVAL);
    char where[700];
    snprintf(where, sizeof where, "%s:3:", p);
    CHECK_CONTAINS(err.message, where);
    CHECK_CONTAINS(err.message, "invalid JSON");
    snprintf(mp, sizeof mp, "%s/manifest.json", out);
    CHECK(access(mp, F_OK) != 0);

    /* With on_error = skip, bad records are skipped and counted (manifest "skipped"), and the
     * good records keep their true line numbers. */
    lmx__err_clear(&err);
    int rc = build(out, in3, 1, LMX_ON_ERROR_SKIP, &err);
    CHECK_EQ_INT(rc, LMX_OK);
    json_t *m = json_load_file(mp, 0, NULL);
    json_t *sh = json_array_get(json_object_get(m, "shards"), 0);
    CHECK_EQ_U64(json_integer_value(json_object_get(sh, "skipped")), 3);
    CHECK_EQ_U64(json_integer_value(json_object_get(sh, "docs")), 2);
    json_decref(m);
    lmx_index *ix = NULL;
    if (rc == LMX_OK && lmx__index_open(out, &ix, &err) == LMX_OK) {
        lmx_doc d;
        CHECK_EQ_U64(lmx__index_n_docs(ix), 2);
        CHECK_EQ_INT(lmx__index_doc(ix, 1, &d, &err), LMX_OK);
        CHECK_EQ_U64(d.line, 6);
        CHECK_EQ_U64(d.n_tokens, 4);
        lmx__index_close(ix);
    }

    /* The missing-domain message names the field. */
    snprintf(p, sizeof p, "%s/nodomain.jsonl", dir);
    lmx_test_write(p, "{\"text\": \"t\"}\n", 14);
    char *in4[] = {p};
    snprintf(out, sizeof out, "%s/out-nodomain", root);
    lmx__err_clear(&err);
    CHECK_EQ_INT(build(out, in4, 1, LMX_ON_ERROR_FAIL, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "meta.redpajama_set_name");
    snprintf(where, sizeof where, "%s:1:", p);
    CHECK_CONTAINS(err.message, where);

    /* Inputs that are not indexable. */
    snprintf(p, sizeof p, "%s/notes.md", dir);
    lmx_test_write(p, "x", 1);
    char *in5[] = {p};
    lmx__err_clear(&err);
    CHECK_EQ_INT(build(out, in5, 1, LMX_ON_ERROR_FAIL, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, p);
    snprintf(p, sizeof p, "%s/does-not-exist.jsonl", dir);
    char *in6[] = {p};
    lmx__err_clear(&err);
    CHECK_EQ_INT(build(out, in6, 1, LMX_ON_ERROR_FAIL, &err), LMX_EIO);
    CHECK_CONTAINS(err.message, p);
    snprintf(p, sizeof p, "%s/empty", dir);
    CHECK_EQ_INT(lmx__mkdirs(p, NULL), LMX_OK);
    char *in7[] = {p};
    lmx__err_clear(&err);
    CHECK_EQ_INT(build(out, in7, 1, LMX_ON_ERROR_FAIL, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, p);
    CHECK_EQ_INT(build(out, in7, 0, LMX_ON_ERROR_FAIL, &err), LMX_EINVAL);
    /* The same input twice. */
    snprintf(p, sizeof p, "%s/bad.jsonl", dir);
    char *in8[] = {p, p};
    lmx__err_clear(&err);
    CHECK_EQ_INT(build(out, in8, 2, LMX_ON_ERROR_SKIP, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "twice");
}

static void test_buckets(void)
{
    CHECK_EQ_INT(lmx__bucket_of(0), 0);
    CHECK_EQ_INT(lmx__bucket_of(1023), 0);
    CHECK_EQ_INT(lmx__bucket_of(1024), 1);
    CHECK_EQ_INT(lmx__bucket_of(2047), 1);
    CHECK_EQ_INT(lmx__bucket_of(2048), 2);
    CHECK_EQ_INT(lmx__bucket_of(4095), 2);
    CHECK_EQ_INT(lmx__bucket_of(4096), 3);
    CHECK_EQ_INT(lmx__bucket_of(131071), 7);
    CHECK_EQ_INT(lmx__bucket_of(131072), 8);
    CHECK_EQ_INT(lmx__bucket_of(UINT64_MAX), 8);
    lmx_domain_stats s = {0};
    lmx__stats_add(&s, 4095, 4096);
    lmx__stats_add(&s, 4096, 4096);
    lmx__stats_add(&s, 10, 4096);
    CHECK_EQ_U64(s.docs, 3);
    CHECK_EQ_U64(s.tokens, 8201);
    CHECK_EQ_U64(s.long_tokens, 4096);
    CHECK_EQ_U64(s.buckets[0], 10);
    CHECK_EQ_U64(s.buckets[2], 4095);
    CHECK_EQ_U64(s.buckets[3], 4096);
}

int main(void)
{
    lmx_test_tmpdir("index", root, sizeof root);
    test_buckets();
    test_build_and_read();
    test_forced_domain();
    test_bad_inputs();
    for (int i = 0; i < n_want; i++)
        free(want[i].text);
    CHECK_EQ_INT(lmx_test_rmtree(root), 0);
    TEST_MAIN_END();
}
