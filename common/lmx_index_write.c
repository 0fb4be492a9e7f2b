/* Index writer (`longmixd index`): inputs -> one shard per input file (or .txt folder) ->
 * manifest, written last. See proto/INDEX.md. */
#include "lmx_index.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "lmx_tokenizer.h"
#include "lmx_util.h"

#define LONG_THRESHOLD 4096
#define MAX_LINE ((size_t)1 << 30)

enum job_kind { JOB_JSONL, JOB_JSONL_ZST, JOB_TXT_DIR };

typedef struct job {
    enum job_kind kind;
    char *path;          /* the input file (or the folder for JOB_TXT_DIR) as reached from INPUT */
    char *domain;        /* forced domain or NULL */
    char **files;        /* JOB_TXT_DIR: the .txt files */
    size_t n_files;
    uint64_t size, mtime_ns;
    json_t *entry;       /* result: manifest entry (new reference) */
    json_t *reused;      /* borrowed from the previous manifest when unchanged */
    lmx_error err;
    uint64_t skipped;
} job;

typedef struct run {
    const lmx_index_options *opts;
    const lmx_tokenizer *tok;
    job *jobs;
    size_t n_jobs;
    atomic_size_t next;
    atomic_int failed;
    atomic_uint_fast64_t bytes_done, tokens_done, files_done;
    uint32_t token_bytes;
} run;

/* ---- input enumeration ---- */

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s%s", a, (a[0] && a[strlen(a) - 1] == '/') ? "" : "/", b);
    return p;
}

typedef struct job_list {
    job *v;
    size_t n, cap;
} job_list;

static job *push_job(job_list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        job *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    job *j = &l->v[l->n++];
    memset(j, 0, sizeof *j);
    return j;
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Walks dir recursively (sorted), adding .jsonl/.jsonl.zst files and one job per folder of .txt. */
static int walk(const char *dir, const char *domain, job_list *jobs, lmx_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return lmx__err_errno(err, "open folder %s", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(names, cap * sizeof *p);
            if (!p)
                break;
            names = p;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_cstr);
    int rc = LMX_OK;
    job *txt = NULL;
    for (size_t i = 0; i < n; i++) {
        char *p = join(dir, names[i]);
        struct stat st;
        if (!p || stat(p, &st) != 0) {
            rc = lmx__err_errno(err, "stat %s", p ? p : names[i]);
            free(p);
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = walk(p, domain, jobs, err);
            free(p);
        } else if (ends_with(p, ".jsonl") || ends_with(p, ".jsonl.zst")) {
            job *j = push_job(jobs);
            j->kind = ends_with(p, ".zst") ? JOB_JSONL_ZST : JOB_JSONL;
            j->path = p;
            j->domain = domain ? strdup(domain) : NULL;
        } else if (ends_with(p, ".txt")) {
            if (!txt) {
                txt = push_job(jobs);
                txt->kind = JOB_TXT_DIR;
                txt->path = strdup(dir);
                txt->domain = domain ? strdup(domain) : NULL;
            }
            char **f = realloc(txt->files, (txt->n_files + 1) * sizeof *f);
            if (!f) {
                free(p);
                rc = lmx__err(err, LMX_ENOMEM, "out of memory");
                break;
            }
            txt->files = f;
            txt->files[txt->n_files++] = p;
        } else {
            free(p);
        }
        if (rc)
            break;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int add_input(const char *arg, job_list *jobs, lmx_error *err)
{
    char *domain = NULL;
    const char *path = arg;
    const char *eq = strchr(arg, '=');
    struct stat st;
    /* DOMAIN=PATH, unless the whole argument is itself an existing path containing '='. */
    if (eq && eq != arg && stat(arg, &st) != 0) {
        domain = strndup(arg, (size_t)(eq - arg));
        path = eq + 1;
    }
    int rc = LMX_OK;
    if (stat(path, &st) != 0) {
        rc = lmx__err_errno(err, "input %s", path);
    } else if (S_ISDIR(st.st_mode)) {
        size_t before = jobs->n;
        rc = walk(path, domain, jobs, err);
        if (rc == LMX_OK && jobs->n == before)
            rc = lmx__err(err, LMX_EINVAL, "input %s: no .jsonl, .jsonl.zst or .txt files in this folder", path);
    } else if (ends_with(path, ".jsonl") || ends_with(path, ".jsonl.zst")) {
        job *j = push_job(jobs);
        j->kind = ends_with(path, ".zst") ? JOB_JSONL_ZST : JOB_JSONL;
        j->path = strdup(path);
        j->domain = domain ? strdup(domain) : NULL;
    } else if (ends_with(path, ".txt")) {
        job *j = push_job(jobs);
        j->kind = JOB_TXT_DIR;
        j->path = strdup(path);
        j->domain = domain ? strdup(domain) : NULL;
        j->files = malloc(sizeof *j->files);
        j->files[0] = strdup(path);
        j->n_files = 1;
    } else {
        rc = lmx__err(err, LMX_EINVAL, "input %s: not a .jsonl, .jsonl.zst, .txt file or a folder", path);
    }
    free(domain);
    return rc;
}

static const char *str_or(const char *s, const char *dflt) { return s ? s : dflt; }

static int cmp_entry_input(const void *a, const void *b)
{
    return strcmp(str_or(json_string_value(json_object_get(*(json_t *const *)a, "input")), ""),
                  str_or(json_string_value(json_object_get(*(json_t *const *)b, "input")), ""));
}

static int cmp_job(const void *a, const void *b) { return strcmp(((const job *)a)->path, ((const job *)b)->path); }

/* ---- line reader over plain or zstd-compressed files (streaming; bounded memory) ---- */

typedef struct line_reader {
    FILE *f;
    const char *path;
    ZSTD_DCtx *dctx;
    uint8_t *in, *dec;
    size_t in_cap, dec_cap;
    ZSTD_inBuffer zin;
    size_t dec_pos, dec_len, last_ret;
    int eof;
    lmx_buf line;
    crypto_generichash_state hash; /* of the raw input bytes */
    uint64_t raw_bytes;
} line_reader;

static int lr_open(line_reader *r, const char *path, int zst, lmx_error *err)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    r->f = fopen(path, "rb");
    if (!r->f)
        return lmx__err_errno(err, "open %s", path);
    r->in_cap = ZSTD_DStreamInSize();
    r->dec_cap = zst ? ZSTD_DStreamOutSize() : (size_t)1 << 17;
    r->in = malloc(r->in_cap);
    r->dec = malloc(r->dec_cap);
    r->line.cap_limit = MAX_LINE;
    if (zst)
        r->dctx = ZSTD_createDCtx();
    crypto_generichash_init(&r->hash, NULL, 0, 32);
    if (!r->in || !r->dec || (zst && !r->dctx))
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", path);
    return LMX_OK;
}

static void lr_close(line_reader *r)
{
    if (r->f)
        fclose(r->f);
    ZSTD_freeDCtx(r->dctx);
    free(r->in);
    free(r->dec);
    lmx__buf_free(&r->line);
}

/* Refills r->dec; returns 1 when bytes are available, 0 at clean EOF, <0 on error. */
static int lr_fill(line_reader *r, uint64_t line_no, lmx_error *err)
{
    for (;;) {
        if (!r->dctx) {
            size_t n = fread(r->dec, 1, r->dec_cap, r->f);
            if (n == 0)
                return ferror(r->f) ? lmx__err_errno(err, "read %s", r->path) : 0;
            crypto_generichash_update(&r->hash, r->dec, n);
            r->raw_bytes += n;
            r->dec_pos = 0;
            r->dec_len = n;
            return 1;
        }
        if (r->zin.pos == r->zin.size) {
            size_t n = fread(r->in, 1, r->in_cap, r->f);
            if (n == 0) {
                if (ferror(r->f))
                    return lmx__err_errno(err, "read %s", r->path);
                if (r->last_ret != 0)
                    return lmx__err(err, LMX_EFORMAT, "%s: truncated zstd stream (ends inside line %llu)",
                                    r->path, (unsigned long long)line_no);
                return 0;
            }
            crypto_generichash_update(&r->hash, r->in, n);
            r->raw_bytes += n;
            r->zin.src = r->in;
            r->zin.size = n;
            r->zin.pos = 0;
        }
        ZSTD_outBuffer zout = {r->dec, r->dec_cap, 0};
        size_t ret = ZSTD_decompressStream(r->dctx, &zout, &r->zin);
        if (ZSTD_isError(ret))
            return lmx__err(err, LMX_EFORMAT, "%s: corrupt zstd data near line %llu: %s", r->path,
                            (unsigned long long)line_no, ZSTD_getErrorName(ret));
        r->last_ret = ret;
        if (zout.pos) {
            r->dec_pos = 0;
            r->dec_len = zout.pos;
            return 1;
        }
    }
}

/* Next line without its '\n': returns 1 and sets line and len, 0 at EOF, <0 on error. */
static int lr_next(line_reader *r, uint64_t line_no, const char **line, size_t *len, lmx_error *err)
{
    r->line.len = 0;
    for (;;) {
        if (r->dec_pos == r->dec_len) {
            int rc = r->eof ? 0 : lr_fill(r, line_no, err);
            if (rc < 0)
                return rc;
            if (rc == 0) {
                r->eof = 1;
                if (r->line.len == 0)
                    return 0;
                break; /* last line without '\n' */
            }
        }
        uint8_t *s = r->dec + r->dec_pos, *nl = memchr(s, '\n', r->dec_len - r->dec_pos);
        size_t n = nl ? (size_t)(nl - s) : r->dec_len - r->dec_pos;
        if (lmx__buf_append(&r->line, s, n) != LMX_OK)
            return lmx__err(err, LMX_ENOMEM, "%s:%llu: line longer than %zu bytes", r->path,
                            (unsigned long long)line_no, MAX_LINE);
        r->dec_pos += n + (nl ? 1 : 0);
        if (nl)
            break;
    }
    *line = (const char *)r->line.data;
    *len = r->line.len;
    return 1;
}

/* ---- shard writer ---- */

typedef struct shard_writer {
    char *tmp_path, *final_path;
    FILE *f;
    uint32_t token_bytes;
    uint64_t n_tokens, n_docs;
    lmx_buf docs;
    char **strings; /* domains first (n_domains), then sources */
    uint32_t n_strings, n_domains, cap_strings;
    char **domain_names; /* shard-local domain names, index = domain string index */
    lmx_domain_stats *dstats;
    lmx_buf scratch;
} shard_writer;

static int sw_open(shard_writer *w, const char *out_dir, const char *name, uint32_t token_bytes, lmx_error *err)
{
    memset(w, 0, sizeof *w);
    w->token_bytes = token_bytes;
    size_t n = strlen(out_dir) + strlen(name) + 64;
    w->final_path = malloc(n);
    w->tmp_path = malloc(n);
    snprintf(w->final_path, n, "%s/shards/%s", out_dir, name);
    snprintf(w->tmp_path, n, "%s/shards/%s.tmp.%ld", out_dir, name, (long)getpid());
    w->f = fopen(w->tmp_path, "wb");
    if (!w->f)
        return lmx__err_errno(err, "create %s", w->tmp_path);
    static const uint8_t zero[LMX_SHARD_HEADER_SIZE];
    if (fwrite(zero, 1, sizeof zero, w->f) != sizeof zero)
        return lmx__err_errno(err, "write %s", w->tmp_path);
    w->docs.cap_limit = (size_t)1 << 34;
    w->scratch.cap_limit = (size_t)1 << 34;
    return LMX_OK;
}

static void sw_abort(shard_writer *w)
{
    if (w->f) {
        fclose(w->f);
        w->f = NULL;
    }
    if (w->tmp_path)
        unlink(w->tmp_path);
}

static void sw_free(shard_writer *w)
{
    for (uint32_t i = 0; i < w->n_strings; i++)
        free(w->strings[i]);
    free(w->strings);
    free(w->dstats);
    free(w->tmp_path);
    free(w->final_path);
    lmx__buf_free(&w->docs);
    lmx__buf_free(&w->scratch);
}

/* Domains must all be added before the first source string: domains are strings [0, n_domains). */
static int sw_string(shard_writer *w, const char *s, int is_domain, uint32_t *idx)
{
    uint32_t lo = is_domain ? 0 : w->n_domains, hi = is_domain ? w->n_domains : w->n_strings;
    for (uint32_t i = hi; i > lo; i--)
        if (strcmp(w->strings[i - 1], s) == 0) {
            *idx = i - 1;
            return LMX_OK;
        }
    if (w->n_strings == w->cap_strings) {
        uint32_t cap = w->cap_strings ? w->cap_strings * 2 : 16;
        char **p = realloc(w->strings, cap * sizeof *p);
        if (!p)
            return LMX_ENOMEM;
        w->strings = p;
        w->cap_strings = cap;
    }
    if (is_domain) {
        /* Insert before the sources: shift them (rare: domains are few and come first). */
        memmove(&w->strings[w->n_domains + 1], &w->strings[w->n_domains],
                (w->n_strings - w->n_domains) * sizeof *w->strings);
        w->strings[w->n_domains] = strdup(s);
        lmx_domain_stats *ds = realloc(w->dstats, (w->n_domains + 1) * sizeof *ds);
        if (!ds)
            return LMX_ENOMEM;
        w->dstats = ds;
        memset(&ds[w->n_domains], 0, sizeof *ds);
        *idx = w->n_domains++;
        /* Fix source indices already written: every source moved up by one. */
        for (uint64_t d = 0; d < w->n_docs; d++) {
            uint8_t *r = w->docs.data + d * LMX_SHARD_DOC_SIZE;
            lmx__put32(r + LMX_SD_SOURCE, lmx__get32(r + LMX_SD_SOURCE) + 1);
        }
    } else {
        w->strings[w->n_strings] = strdup(s);
        *idx = w->n_strings;
    }
    w->n_strings++;
    return LMX_OK;
}

static int sw_add_doc(shard_writer *w, const lmx_ids *ids, const char *domain, const char *source, uint64_t line,
                      lmx_error *err)
{
    uint32_t di, si;
    if (sw_string(w, domain, 1, &di) || sw_string(w, source, 0, &si))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    uint8_t rec[LMX_SHARD_DOC_SIZE] = {0};
    lmx__put64(rec + LMX_SD_TOKEN_START, w->n_tokens);
    lmx__put64(rec + LMX_SD_N_TOKENS, ids->n);
    lmx__put32(rec + LMX_SD_DOMAIN, di);
    lmx__put32(rec + LMX_SD_SOURCE, si);
    lmx__put64(rec + LMX_SD_LINE, line);
    if (lmx__buf_append(&w->docs, rec, sizeof rec))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    w->scratch.len = 0;
    if (lmx__buf_reserve(&w->scratch, ids->n * w->token_bytes))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    uint8_t *p = w->scratch.data;
    for (size_t i = 0; i < ids->n; i++, p += w->token_bytes) {
        if (w->token_bytes == 2)
            lmx__put16(p, (uint16_t)ids->v[i]);
        else
            lmx__put32(p, ids->v[i]);
    }
    size_t nb = ids->n * w->token_bytes;
    if (nb && fwrite(w->scratch.data, 1, nb, w->f) != nb)
        return lmx__err_errno(err, "write %s", w->tmp_path);
    w->n_tokens += ids->n;
    w->n_docs++;
    lmx__stats_add(&w->dstats[di], ids->n, LONG_THRESHOLD);
    return LMX_OK;
}

static int write_pad(FILE *f, uint64_t *off)
{
    static const uint8_t z[8];
    size_t pad = (size_t)((8 - *off % 8) % 8);
    *off += pad;
    return pad && fwrite(z, 1, pad, f) != pad ? -1 : 0;
}

/* Finishes the file (sections, header, fsync), hashes it, renames it into place. */
static int sw_finish(shard_writer *w, char hex_sum[65], uint64_t *file_size, lmx_error *err)
{
    uint64_t off = LMX_SHARD_HEADER_SIZE + w->n_tokens * w->token_bytes;
    uint8_t hdr[LMX_SHARD_HEADER_SIZE] = {0};
    if (write_pad(w->f, &off))
        goto io;
    uint64_t docs_off = off;
    if (w->docs.len && fwrite(w->docs.data, 1, w->docs.len, w->f) != w->docs.len)
        goto io;
    off += w->docs.len;
    if (write_pad(w->f, &off))
        goto io;
    uint64_t str_off = off, so = 0;
    uint8_t b8[8];
    for (uint32_t i = 0; i <= w->n_strings; i++) {
        lmx__put64(b8, so);
        if (fwrite(b8, 1, 8, w->f) != 8)
            goto io;
        if (i < w->n_strings)
            so += strlen(w->strings[i]) + 1;
    }
    for (uint32_t i = 0; i < w->n_strings; i++)
        if (fwrite(w->strings[i], 1, strlen(w->strings[i]) + 1, w->f) != strlen(w->strings[i]) + 1)
            goto io;
    off += 8 * ((uint64_t)w->n_strings + 1) + so;
    memcpy(hdr, LMX_SHARD_MAGIC, 8);
    lmx__put32(hdr + LMX_SH_VERSION, LMX_SHARD_VERSION);
    lmx__put32(hdr + LMX_SH_TOKEN_BYTES, w->token_bytes);
    lmx__put64(hdr + LMX_SH_N_DOCS, w->n_docs);
    lmx__put64(hdr + LMX_SH_N_TOKENS, w->n_tokens);
    lmx__put64(hdr + LMX_SH_TOKENS_OFFSET, LMX_SHARD_HEADER_SIZE);
    lmx__put64(hdr + LMX_SH_DOCS_OFFSET, docs_off);
    lmx__put64(hdr + LMX_SH_STRINGS_OFFSET, str_off);
    lmx__put64(hdr + LMX_SH_N_STRINGS, w->n_strings);
    lmx__put64(hdr + LMX_SH_FILE_SIZE, off);
    lmx__put32(hdr + LMX_SH_N_DOMAINS, w->n_domains);
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(hdr, 1, sizeof hdr, w->f) != sizeof hdr || fflush(w->f) != 0 ||
        fsync(fileno(w->f)) != 0)
        goto io;
    if (fclose(w->f) != 0) {
        w->f = NULL;
        goto io;
    }
    w->f = NULL;
    /* Hash what is on disk (page cache), not what we meant to write. */
    {
        int fd = open(w->tmp_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            goto io;
        void *m = mmap(NULL, (size_t)off, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (m == MAP_FAILED)
            goto io;
        uint8_t h[32];
        crypto_generichash(h, sizeof h, m, (unsigned long long)off, NULL, 0);
        munmap(m, (size_t)off);
        lmx__hex(h, sizeof h, hex_sum);
    }
    if (rename(w->tmp_path, w->final_path) != 0)
        goto io;
    *file_size = off;
    return lmx__fsync_dir_of(w->final_path, err);
io:
    lmx__err_errno(err, "write %s", w->tmp_path);
    sw_abort(w);
    return LMX_EIO;
}

/* ---- one job ---- */

static const char *domain_from(json_t *doc, const char *field)
{
    char key[256];
    const char *p = field;
    json_t *v = doc;
    while (v && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof key)
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        v = json_object_get(v, key);
        p = dot ? dot + 1 : p + n;
    }
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void shard_name(const job *j, char out[32])
{
    uint8_t h[8];
    char hex[17];
    crypto_generichash(h, sizeof h, (const uint8_t *)j->path, strlen(j->path), NULL, 0);
    lmx__hex(h, sizeof h, hex);
    snprintf(out, 32, "%s.lmxs", hex);
}

static json_t *stats_json(const lmx_domain_stats *s)
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

/* A rejected record: with --on-error=skip it is counted and reported, else it fails the job. */
static int reject(run *R, job *j, lmx_error *err, const char *fmt, const char *path, uint64_t line)
{
    if (R->opts->on_error == LMX_ON_ERROR_SKIP) {
        if (j->skipped++ < 5)
            fprintf(stderr, "longmixd index: skipped %s:%llu: %s\n", path, (unsigned long long)line, fmt);
        return LMX_OK;
    }
    return lmx__err(err, LMX_EINVAL, "%s:%llu: %s (use --on-error=skip to skip such records)", path,
                    (unsigned long long)line, fmt);
}

static int run_jsonl(run *R, job *j, shard_writer *w, lmx_encoder *enc, lmx_ids *ids, char hash_hex[65],
                     lmx_error *err)
{
    line_reader r;
    int rc = lr_open(&r, j->path, j->kind == JOB_JSONL_ZST, err);
    uint64_t line_no = 0;
    while (rc == LMX_OK) {
        const char *line = NULL;
        size_t len = 0;
        int got = lr_next(&r, line_no + 1, &line, &len, err);
        if (got <= 0) {
            rc = got;
            break;
        }
        line_no++;
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
            k++;
        if (k == len)
            continue; /* blank line */
        json_error_t je;
        json_t *doc = json_loadb(line, len, JSON_ALLOW_NUL, &je);
        if (!doc || !json_is_object(doc)) {
            char why[300];
            snprintf(why, sizeof why, "invalid JSON: %s", doc ? "not an object" : je.text);
            json_decref(doc);
            rc = reject(R, j, err, why, j->path, line_no);
            continue;
        }
        json_t *text = json_object_get(doc, "text");
        const char *domain = j->domain ? j->domain : domain_from(doc, R->opts->domain_field);
        if (!json_is_string(text)) {
            rc = reject(R, j, err, "field 'text' missing or not a string", j->path, line_no);
        } else if (!domain || !*domain) {
            char why[300];
            snprintf(why, sizeof why, "domain field '%s' missing or not a string", R->opts->domain_field);
            rc = reject(R, j, err, why, j->path, line_no);
        } else {
            ids->n = 0;
            rc = lmx__encode(enc, json_string_value(text), json_string_length(text), ids, err);
            if (rc)
                lmx__err_prefix(err, "%s:%llu: ", j->path, (unsigned long long)line_no);
            else
                rc = sw_add_doc(w, ids, domain, j->path, line_no, err);
            atomic_fetch_add(&R->tokens_done, ids->n);
        }
        json_decref(doc);
        atomic_fetch_add(&R->bytes_done, len + 1);
    }
    if (rc == LMX_OK) {
        uint8_t h[32];
        crypto_generichash_final(&r.hash, h, sizeof h);
        lmx__hex(h, sizeof h, hash_hex);
    }
    lr_close(&r);
    return rc;
}

static int run_txt(run *R, job *j, shard_writer *w, lmx_encoder *enc, lmx_ids *ids, char hash_hex[65], lmx_error *err)
{
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    int rc = LMX_OK;
    /* Domain = name of the folder holding the file, unless forced. */
    const char *slash = strrchr(j->path, '/');
    char *folder_domain = NULL;
    if (j->n_files == 1 && strcmp(j->files[0], j->path) == 0) {
        /* a single .txt INPUT: its parent folder names the domain */
        char *dup = strdup(j->path), *s = strrchr(dup, '/');
        if (s) {
            *s = '\0';
            s = strrchr(dup, '/');
            folder_domain = strdup(s ? s + 1 : dup);
        } else {
            folder_domain = strdup(".");
        }
        free(dup);
    } else {
        folder_domain = strdup(slash ? slash + 1 : j->path);
    }
    const char *domain = j->domain ? j->domain : folder_domain;
    for (size_t i = 0; rc == LMX_OK && i < j->n_files; i++) {
        char *text = NULL;
        size_t len = 0;
        rc = lmx__read_file(j->files[i], MAX_LINE, &text, &len, err);
        if (rc)
            break;
        crypto_generichash_update(&hs, (const uint8_t *)j->files[i], strlen(j->files[i]) + 1);
        crypto_generichash_update(&hs, (const uint8_t *)text, len);
        ids->n = 0;
        rc = lmx__encode(enc, text, len, ids, err);
        if (rc)
            lmx__err_prefix(err, "%s: ", j->files[i]);
        else
            rc = sw_add_doc(w, ids, domain, j->files[i], 0, err);
        atomic_fetch_add(&R->bytes_done, len);
        atomic_fetch_add(&R->tokens_done, ids->n);
        free(text);
    }
    free(folder_domain);
    uint8_t h[32];
    crypto_generichash_final(&hs, h, sizeof h);
    lmx__hex(h, sizeof h, hash_hex);
    return rc;
}

static int run_job(run *R, job *j, lmx_encoder *enc, lmx_ids *ids)
{
    char name[32], sum[65], input_hash[65] = "";
    shard_name(j, name);
    shard_writer w;
    lmx_error *err = &j->err;
    int rc = sw_open(&w, R->opts->out_dir, name, R->token_bytes, err);
    if (rc == LMX_OK)
        rc = j->kind == JOB_TXT_DIR ? run_txt(R, j, &w, enc, ids, input_hash, err)
                                    : run_jsonl(R, j, &w, enc, ids, input_hash, err);
    if (rc == LMX_OK && w.n_docs == 0 && j->skipped == 0)
        rc = lmx__err(err, LMX_EINVAL, "%s: no documents (empty input)", j->path);
    uint64_t size = 0;
    if (rc == LMX_OK)
        rc = sw_finish(&w, sum, &size, err);
    if (rc != LMX_OK) {
        sw_abort(&w);
        sw_free(&w);
        return rc;
    }
    json_t *e = json_object(), *doms = json_object();
    json_object_set_new(e, "file", json_string(name));
    json_object_set_new(e, "input", json_string(j->path));
    json_object_set_new(e, "kind", json_string(j->kind == JOB_TXT_DIR ? "txt" : j->kind == JOB_JSONL ? "jsonl" : "jsonl.zst"));
    json_object_set_new(e, "input_size", json_integer((json_int_t)j->size));
    json_object_set_new(e, "input_mtime_ns", json_integer((json_int_t)j->mtime_ns));
    json_object_set_new(e, "input_blake2b", json_string(input_hash));
    json_object_set_new(e, "docs", json_integer((json_int_t)w.n_docs));
    json_object_set_new(e, "tokens", json_integer((json_int_t)w.n_tokens));
    json_object_set_new(e, "skipped", json_integer((json_int_t)j->skipped));
    json_object_set_new(e, "size", json_integer((json_int_t)size));
    json_object_set_new(e, "blake2b", json_string(sum));
    for (uint32_t d = 0; d < w.n_domains; d++)
        json_object_set_new(doms, w.strings[d], stats_json(&w.dstats[d]));
    json_object_set_new(e, "domains", doms);
    j->entry = e;
    sw_free(&w);
    return LMX_OK;
}

static void *worker(void *arg)
{
    run *R = arg;
    lmx_encoder *enc = NULL;
    lmx_ids ids = {0};
    lmx_error e = {0};
    if (lmx__encoder_create(R->tok, &enc, &e) != LMX_OK) {
        atomic_store(&R->failed, 1);
        fprintf(stderr, "longmixd index: %s\n", e.message);
        return NULL;
    }
    for (;;) {
        size_t i = atomic_fetch_add(&R->next, 1);
        if (i >= R->n_jobs || atomic_load(&R->failed))
            break;
        job *j = &R->jobs[i];
        if (j->reused) {
            atomic_fetch_add(&R->files_done, 1);
            continue;
        }
        if (run_job(R, j, enc, &ids) != LMX_OK)
            atomic_store(&R->failed, 1);
        atomic_fetch_add(&R->files_done, 1);
    }
    lmx__ids_free(&ids);
    lmx__encoder_free(enc);
    return NULL;
}

static void stat_inputs(job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        job *j = &jobs[i];
        struct stat st;
        if (j->kind == JOB_TXT_DIR) {
            for (size_t k = 0; k < j->n_files; k++)
                if (stat(j->files[k], &st) == 0) {
                    j->size += (uint64_t)st.st_size;
                    uint64_t t = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
                    j->mtime_ns = t > j->mtime_ns ? t : j->mtime_ns;
                }
            j->size += j->n_files; /* adding or removing an empty file changes the key too */
        } else if (stat(j->path, &st) == 0) {
            j->size = (uint64_t)st.st_size;
            j->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
        }
    }
}

static void progress(run *R, double t0, int final)
{
    double dt = lmx__now() - t0;
    double mb = (double)atomic_load(&R->bytes_done) / 1e6;
    fprintf(stderr, "%sindexed %zu/%zu files, %.1f MB, %llu tokens, %.1f MB/s%s", final ? "" : "\r",
            (size_t)atomic_load(&R->files_done), R->n_jobs, mb, (unsigned long long)atomic_load(&R->tokens_done),
            dt > 0 ? mb / dt : 0.0, final ? "\n" : "   ");
}

int lmx__index_build(const lmx_index_options *opts, char *const *inputs, int n_inputs, lmx_error *err)
{
    if (n_inputs < 1)
        return lmx__err(err, LMX_EINVAL, "index: no INPUT given");
    if (sodium_init() < 0)
        return lmx__err(err, LMX_EINTERNAL, "libsodium failed to initialize");
    job_list jobs = {0};
    int rc = LMX_OK;
    for (int i = 0; rc == LMX_OK && i < n_inputs; i++)
        rc = add_input(inputs[i], &jobs, err);
    lmx_tokenizer *tok = NULL;
    json_t *old = NULL, *manifest = NULL;
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/%s", opts->out_dir, LMX_INDEX_MANIFEST);
    if (rc == LMX_OK && jobs.n > 1) {
        qsort(jobs.v, jobs.n, sizeof *jobs.v, cmp_job);
        for (size_t i = 1; rc == LMX_OK && i < jobs.n; i++)
            if (strcmp(jobs.v[i].path, jobs.v[i - 1].path) == 0)
                rc = lmx__err(err, LMX_EINVAL, "input %s given twice", jobs.v[i].path);
    }
    if (rc == LMX_OK)
        rc = lmx__tokenizer_open(opts->tokenizer, NULL, &tok, err);
    if (rc == LMX_OK) {
        char sh[4096];
        snprintf(sh, sizeof sh, "%s/shards", opts->out_dir);
        rc = lmx__mkdirs(sh, err);
    }
    if (rc == LMX_OK && access(mpath, F_OK) == 0) {
        json_error_t je;
        old = json_load_file(mpath, 0, &je);
        const char *oid = json_string_value(json_object_get(json_object_get(old, "tokenizer"), "identity"));
        if (!old)
            rc = lmx__err(err, LMX_EFORMAT, "%s:%d: %s (remove the folder to start over)", mpath, je.line, je.text);
        else if (!oid || strcmp(oid, lmx__tokenizer_identity(tok)) != 0)
            rc = lmx__err(err, LMX_EINVAL, "%s was built with tokenizer %s, not %s: use another --out",
                          opts->out_dir, oid ? oid : "?", lmx__tokenizer_identity(tok));
    }
    run R = {0};
    R.opts = opts;
    R.tok = tok;
    R.jobs = jobs.v;
    R.n_jobs = jobs.n;
    if (rc == LMX_OK) {
        R.token_bytes = lmx__tokenizer_vocab_size(tok) <= 65536 ? 2 : 4;
        stat_inputs(jobs.v, jobs.n);
        /* Unchanged inputs (same path, size and mtime, shard still there) are not re-read. */
        json_t *os = json_object_get(old, "shards");
        for (size_t i = 0; i < jobs.n; i++) {
            for (size_t k = 0; k < json_array_size(os); k++) {
                json_t *e = json_array_get(os, k);
                if (strcmp(str_or(json_string_value(json_object_get(e, "input")), ""), jobs.v[i].path) != 0)
                    continue;
                char sp[4096];
                struct stat st;
                snprintf(sp, sizeof sp, "%s/shards/%s", opts->out_dir, str_or(json_string_value(json_object_get(e, "file")), "?"));
                if ((uint64_t)json_integer_value(json_object_get(e, "input_size")) == jobs.v[i].size &&
                    (uint64_t)json_integer_value(json_object_get(e, "input_mtime_ns")) == jobs.v[i].mtime_ns &&
                    stat(sp, &st) == 0 && (uint64_t)st.st_size == (uint64_t)json_integer_value(json_object_get(e, "size")))
                    jobs.v[i].reused = e;
            }
        }
        int nt = opts->threads < 1 ? 1 : opts->threads;
        if ((size_t)nt > jobs.n)
            nt = (int)jobs.n;
        pthread_t th[256];
        if (nt > 256)
            nt = 256;
        double t0 = lmx__now();
        for (int t = 0; t < nt; t++)
            pthread_create(&th[t], NULL, worker, &R);
        if (opts->progress) {
            while (atomic_load(&R.files_done) < jobs.n && !atomic_load(&R.failed)) {
                progress(&R, t0, 0);
                nanosleep(&(struct timespec){0, 250000000L}, NULL);
            }
        }
        for (int t = 0; t < nt; t++)
            pthread_join(th[t], NULL);
        if (opts->progress)
            fputc('\n', stderr);
        for (size_t i = 0; i < jobs.n; i++)
            if (jobs.v[i].err.code) {
                rc = jobs.v[i].err.code;
                *err = jobs.v[i].err;
                break;
            }
        if (rc == LMX_OK && atomic_load(&R.failed))
            rc = lmx__err(err, LMX_EINTERNAL, "index: a worker failed");
        uint64_t skipped = 0, reused = 0;
        if (rc == LMX_OK) {
            /* Manifest: previous entries for inputs not in this run, then this run's, by input path. */
            manifest = json_object();
            json_t *shards = json_array(), *doms = json_object();
            for (size_t k = 0; k < json_array_size(os); k++) {
                json_t *e = json_array_get(os, k);
                const char *in = str_or(json_string_value(json_object_get(e, "input")), "");
                int mine = 0;
                for (size_t i = 0; i < jobs.n && !mine; i++)
                    mine = strcmp(jobs.v[i].path, in) == 0;
                if (!mine)
                    json_array_append(shards, e);
            }
            for (size_t i = 0; i < jobs.n; i++) {
                if (jobs.v[i].reused) {
                    json_array_append(shards, jobs.v[i].reused);
                    reused++;
                } else {
                    json_array_append(shards, jobs.v[i].entry);
                }
                skipped += jobs.v[i].skipped;
            }
            /* Sort shards by input path so doc ids do not depend on run history. */
            size_t ns = json_array_size(shards);
            json_t **sv = calloc(ns + 1, sizeof *sv);
            for (size_t k = 0; k < ns; k++)
                sv[k] = json_array_get(shards, k);
            qsort(sv, ns, sizeof *sv, cmp_entry_input);
            json_t *sorted = json_array();
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
                    if (!acc) {
                        acc = json_deep_copy(ds);
                        json_object_set_new(doms, dn, acc);
                        continue;
                    }
                    static const char *const keys[] = {"docs", "tokens", "long_tokens"};
                    for (int q = 0; q < 3; q++)
                        json_object_set_new(acc, keys[q],
                                            json_integer(json_integer_value(json_object_get(acc, keys[q])) +
                                                         json_integer_value(json_object_get(ds, keys[q]))));
                    json_t *ab = json_object_get(acc, "buckets"), *db = json_object_get(ds, "buckets");
                    for (size_t q = 0; q < LMX_N_BUCKETS; q++)
                        json_array_set_new(ab, q,
                                           json_integer(json_integer_value(json_array_get(ab, q)) +
                                                        json_integer_value(json_array_get(db, q))));
                }
            }
            free(sv);
            json_decref(shards);
            json_t *tj = json_object();
            json_object_set_new(tj, "kind", json_string(lmx__tokenizer_kind(tok)));
            json_object_set_new(tj, "identity", json_string(lmx__tokenizer_identity(tok)));
            json_object_set_new(tj, "path", json_string(opts->tokenizer));
            json_object_set_new(tj, "vocab_size", json_integer(lmx__tokenizer_vocab_size(tok)));
            json_object_set_new(tj, "bos", json_integer(lmx__tokenizer_bos(tok)));
            json_object_set_new(tj, "eos", json_integer(lmx__tokenizer_eos(tok)));
            json_object_set_new(manifest, "format", json_string(LMX_INDEX_FORMAT));
            json_object_set_new(manifest, "version", json_integer(LMX_INDEX_VERSION));
            json_object_set_new(manifest, "tokenizer", tj);
            json_object_set_new(manifest, "token_bytes", json_integer(R.token_bytes));
            json_object_set_new(manifest, "long_threshold", json_integer(LONG_THRESHOLD));
            json_object_set_new(manifest, "total_docs", json_integer((json_int_t)total_docs));
            json_object_set_new(manifest, "total_tokens", json_integer((json_int_t)total_tokens));
            json_object_set_new(manifest, "domains", doms);
            json_object_set_new(manifest, "shards", sorted);
            char *txt = json_dumps(manifest, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
            rc = txt ? lmx__write_file_atomic(mpath, txt, strlen(txt), err)
                     : lmx__err(err, LMX_ENOMEM, "manifest: out of memory");
            free(txt);
            if (rc == LMX_OK)
                fprintf(stderr, "longmixd index: %zu inputs (%llu unchanged), %llu documents, %llu tokens, %llu records skipped, %.1f s -> %s\n",
                        jobs.n, (unsigned long long)reused, (unsigned long long)total_docs,
                        (unsigned long long)total_tokens, (unsigned long long)skipped, lmx__now() - t0, opts->out_dir);
        }
    }
    for (size_t i = 0; i < jobs.n; i++) {
        free(jobs.v[i].path);
        free(jobs.v[i].domain);
        for (size_t k = 0; k < jobs.v[i].n_files; k++)
            free(jobs.v[i].files[k]);
        free(jobs.v[i].files);
        json_decref(jobs.v[i].entry);
    }
    free(jobs.v);
    json_decref(old);
    json_decref(manifest);
    lmx__tokenizer_free(tok);
    return rc;
}
