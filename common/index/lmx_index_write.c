/* Index writer (`longmixd index`): inputs -> one shard per input file (or .txt folder) ->
 * manifest, written last. See proto/INDEX.md. */
#include "lmx_index.h"
#include "lmx_jsonl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "lmx_tokenizer.h"
#include "lmx_util.h"

#define MAX_LINE ((size_t)1 << 30)

enum job_kind { JOB_JSONL, JOB_JSONL_ZST, JOB_TXT_DIR, JOB_MEGATRON };

typedef struct job {
    enum job_kind kind;
    char *path;          /* the input file (or the folder for JOB_TXT_DIR, PREFIX.bin for JOB_MEGATRON) as
                            reached from INPUT */
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
    atomic_int failed;
    atomic_uint_fast64_t bytes_done, tokens_done, files_done;
    atomic_uint_fast64_t in_done; /* input bytes read (compressed for .zst), for the ETA */
    uint64_t in_total;            /* input bytes of the inputs to (re)index */
    uint32_t token_bytes;
    /* The shared work: files are claimed in order; batches of lines of any file are tokenized
     * by any thread (see run_jsonl). All below under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t next;          /* next job to claim */
    size_t owners;        /* threads running a job */
    struct batch *q_head, *q_tail;
    size_t inflight, max_inflight;
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

/* For "X.bin": whether "X.idx" exists too (a Megatron indexed dataset). */
static int megatron_sibling_exists(const char *bin)
{
    size_t n = strlen(bin);
    char *idx = strdup(bin);
    if (!idx)
        return 0;
    memcpy(idx + n - 4, ".idx", 4);
    struct stat st;
    int ok = stat(idx, &st) == 0 && S_ISREG(st.st_mode);
    free(idx);
    return ok;
}

/* Walks dir recursively (sorted), adding .jsonl/.jsonl.zst files and one job per folder of .txt. */
static int walk(const char *dir, const char *domain, job_list *jobs, lmx_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return lmx__err_errno(err, "open folder %s", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int oom = 0;
    while (!oom && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) {
                oom = 1; /* a partial listing would silently drop files */
                break;
            }
            names = p;
        }
        if (!(names[n] = strdup(e->d_name)))
            oom = 1;
        else
            n++;
    }
    closedir(d);
    if (oom) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return lmx__err(err, LMX_ENOMEM, "listing folder %s: out of memory", dir);
    }
    if (n) /* names is NULL for an empty folder: qsort(NULL, ...) is undefined */
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
        } else if (ends_with(p, ".bin") && megatron_sibling_exists(p)) {
            if (!domain) {
                rc = lmx__err(err, LMX_EINVAL,
                              "input %s: a Megatron .bin/.idx pair needs its domain: give the folder as DOMAIN=%s", p, dir);
                free(p);
                break;
            }
            job *j = push_job(jobs);
            j->kind = JOB_MEGATRON;
            j->path = p;
            j->domain = strdup(domain);
        } else if (ends_with(p, ".txt")) {
            if (!txt) {
                txt = push_job(jobs);
                txt->kind = JOB_TXT_DIR;
                txt->path = strdup(dir);
                /* "dir/" names the same folder as "dir": the domain is its last component */
                for (size_t l = txt->path ? strlen(txt->path) : 0; l > 1 && txt->path[l - 1] == '/'; l--)
                    txt->path[l - 1] = '\0';
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
    char *mbin = NULL; /* Megatron: PREFIX.bin when PREFIX.bin and PREFIX.idx exist */
    if (stat(path, &st) != 0 || ends_with(path, ".bin") || ends_with(path, ".idx")) {
        size_t n = strlen(path);
        mbin = malloc(n + 5);
        if (mbin) {
            if (ends_with(path, ".bin") || ends_with(path, ".idx"))
                snprintf(mbin, n + 5, "%.*s.bin", (int)(n - 4), path);
            else
                snprintf(mbin, n + 5, "%s.bin", path);
            struct stat sb;
            if (stat(mbin, &sb) != 0 || !megatron_sibling_exists(mbin)) {
                free(mbin);
                mbin = NULL;
            }
        }
    }
    if (mbin) {
        if (!domain) {
            rc = lmx__err(err, LMX_EINVAL, "input %s: a Megatron dataset needs its domain: write DOMAIN=%s", path, path);
            free(mbin);
        } else {
            job *j = push_job(jobs);
            j->kind = JOB_MEGATRON;
            j->path = mbin;
            j->domain = strdup(domain);
        }
    } else if (stat(path, &st) != 0) {
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
        rc = lmx__err(err, LMX_EINVAL,
                      "input %s: not a .jsonl, .jsonl.zst, .txt file, a folder or a Megatron PREFIX (PREFIX.bin + PREFIX.idx)",
                      path);
    }
    free(domain);
    return rc;
}

static const char *str_or(const char *s, const char *dflt) { return s ? s : dflt; }

/* How an input's documents get their domain; part of the reuse key, so re-running with another
 * --domain-field or DOMAIN= re-indexes instead of keeping shards labelled the old way. */
static void domain_rule(const lmx_index_options *opts, const job *j, char *out, size_t n)
{
    if (j->domain)
        snprintf(out, n, "forced:%s", j->domain);
    else if (j->kind == JOB_TXT_DIR)
        snprintf(out, n, "folder");
    else
        snprintf(out, n, "field:%s", opts->domain_field);
}

/* BLAKE2b-256 (hex) of a whole file, the way run_jsonl hashes its raw input. */
static int file_blake2b(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    uint8_t buf[1 << 16], h[32];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        crypto_generichash_update(&hs, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return -1;
    crypto_generichash_final(&hs, h, sizeof h);
    lmx__hex(h, sizeof h, hex);
    return 0;
}

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

/* Appends the document record (tokens start at the writer's current token count); *di is the
 * domain's string index, for the statistics the caller adds once the tokens are written. */
static int sw_doc_record(shard_writer *w, uint64_t n_tokens, const char *domain, const char *source, uint64_t line,
                         uint32_t *di, lmx_error *err)
{
    uint32_t si;
    if (sw_string(w, domain, 1, di) || sw_string(w, source, 0, &si))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    uint8_t rec[LMX_SHARD_DOC_SIZE] = {0};
    lmx__put64(rec + LMX_SD_TOKEN_START, w->n_tokens);
    lmx__put64(rec + LMX_SD_N_TOKENS, n_tokens);
    lmx__put32(rec + LMX_SD_DOMAIN, *di);
    lmx__put32(rec + LMX_SD_SOURCE, si);
    lmx__put64(rec + LMX_SD_LINE, line);
    if (lmx__buf_append(&w->docs, rec, sizeof rec))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    return LMX_OK;
}

/* One document whose tokens are already packed (n_tokens little-endian ids of token_bytes). */
static int sw_add_packed(shard_writer *w, const uint8_t *toks, uint64_t n_tokens, const char *domain,
                         const char *source, uint64_t line, lmx_error *err)
{
    uint32_t di;
    int rc = sw_doc_record(w, n_tokens, domain, source, line, &di, err);
    if (rc != LMX_OK)
        return rc;
    size_t nb = (size_t)n_tokens * w->token_bytes;
    if (nb && fwrite(toks, 1, nb, w->f) != nb)
        return lmx__err_errno(err, "write %s", w->tmp_path);
    w->n_tokens += n_tokens;
    w->n_docs++;
    lmx__stats_add(&w->dstats[di], n_tokens, LMX_LONG_THRESHOLD);
    return LMX_OK;
}

static int sw_add_doc(shard_writer *w, const lmx_ids *ids, const char *domain, const char *source, uint64_t line,
                      lmx_error *err)
{
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
    return sw_add_packed(w, w->scratch.data, ids->n, domain, source, line, err);
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

/* The shard's file name: a hash of the input path, size and mtime, so a changed input gets a new
 * file and the published manifest's shards stay intact until the new manifest replaces it. */
static void shard_name(const job *j, char out[32])
{
    uint8_t h[8], key[16];
    char hex[17];
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, sizeof h);
    crypto_generichash_update(&hs, (const uint8_t *)j->path, strlen(j->path) + 1);
    lmx__put64(key, j->size);
    lmx__put64(key + 8, j->mtime_ns);
    crypto_generichash_update(&hs, key, sizeof key);
    crypto_generichash_final(&hs, h, sizeof h);
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
    char where[32] = "";
    if (line)
        snprintf(where, sizeof where, ":%llu", (unsigned long long)line);
    if (R->opts->on_error == LMX_ON_ERROR_SKIP) {
        if (j->skipped++ < 5)
            fprintf(stderr, "longmixd index: skipped %s%s: %s\n", path, where, fmt);
        return LMX_OK;
    }
    return lmx__err(err, LMX_EINVAL, "%s%s: %s (use --on-error=skip to skip such records)", path, where, fmt);
}

/* ---- .jsonl(.zst): one reader/writer per file, tokenization spread over every thread ----
 * The thread that claims a file (its owner) reads it (decompression, line splitting, 1-based
 * line numbers) into batches of lines and queues them in the run's global queue; any thread
 * (the owner too, when its window is full) takes queued batches and parses, extracts the domain
 * and tokenizes them with its own encoder; the owner appends finished batches to the shard
 * strictly in input order. At most 2 x threads batches are in flight over the whole run, so
 * memory is bounded, and the shard does not depend on the thread count: records are written,
 * rejected or failed in input order, so the first error in input order wins. */

#define BATCH_BYTES ((size_t)1 << 20)
#define BATCH_LINES 1024

enum rec_kind { REC_BLANK, REC_DOC, REC_REJECT, REC_FATAL };

typedef struct rec {
    size_t off, len;  /* the line in batch->text */
    uint64_t line;    /* 1-based */
    int kind;         /* enum rec_kind, set by the tokenizing thread */
    size_t tok_off;   /* REC_DOC: packed tokens in batch->toks */
    uint64_t n_tokens;
    size_t str_off;   /* REC_DOC: domain; REC_REJECT: the reason (in batch->strs) */
} rec;

typedef struct batch {
    struct file_ctx *fc;
    lmx_buf text, toks, strs;
    rec *recs;
    size_t n, cap;
    uint64_t raw_bytes; /* line bytes including '\n' */
    size_t n_res;       /* records processed (processing stops after a REC_FATAL) */
    lmx_error err;      /* REC_FATAL */
    int done;
    struct batch *qnext; /* global queue */
    struct batch *fnext; /* the file's batches in input order */
} batch;

typedef struct file_ctx {
    run *R;
    job *j;
    batch *head, *tail; /* in flight, input order */
    size_t inflight;
} file_ctx;

static void batch_free(batch *b)
{
    if (!b)
        return;
    lmx__buf_free(&b->text);
    lmx__buf_free(&b->toks);
    lmx__buf_free(&b->strs);
    free(b->recs);
    free(b);
}

/* Parses, extracts the domain and tokenizes every record of b (any thread; enc is its own).
 * Ordinary records take lmx__jsonl_fast (no jansson tree per line, which was a third of the
 * indexer's time); any other line, and every field path it does not handle, goes through
 * jansson, which gives the rejection reasons. */
static void batch_process(batch *b, lmx_encoder *enc, lmx_ids *ids)
{
    run *R = b->fc->R;
    job *j = b->fc->j;
    uint32_t tb = R->token_bytes;
    lmx__jsonl_path path;
    int fast_ok = j->domain || lmx__jsonl_path_init(&path, R->opts->domain_field);
    lmx_buf ftext = {0}, fdomain = {0}; /* decoded by the fast path */
    b->n_res = 0;
    for (size_t i = 0; i < b->n; i++) {
        rec *r = &b->recs[i];
        const char *line = (const char *)b->text.data + r->off;
        size_t len = r->len, k = 0;
        b->n_res = i + 1;
        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
            k++;
        if (k == len) {
            r->kind = REC_BLANK;
            continue;
        }
        char why[300];
        json_error_t je;
        json_t *doc = NULL;
        const char *text = NULL, *domain = NULL;
        size_t text_len = 0;
        int found = 0, fast = fast_ok && lmx__jsonl_fast(line, len, LMX__JSONL_UTF8, j->domain ? NULL : &path,
                                                         &ftext, &fdomain, &found);
        if (fast) {
            text = (const char *)ftext.data;
            text_len = ftext.len;
            domain = j->domain ? j->domain : found ? (const char *)fdomain.data : NULL;
        } else {
            doc = json_loadb(line, len, JSON_ALLOW_NUL, &je);
            if (doc && json_is_object(doc)) {
                json_t *t = json_object_get(doc, "text");
                if (json_is_string(t)) {
                    text = json_string_value(t);
                    text_len = json_string_length(t);
                }
                domain = j->domain ? j->domain : lmx__jsonl_get_path(doc, R->opts->domain_field);
            }
        }
        r->kind = REC_REJECT;
        if (!fast && (!doc || !json_is_object(doc))) {
            snprintf(why, sizeof why, "invalid JSON: %s", doc ? "not an object" : je.text);
        } else if (!text) {
            snprintf(why, sizeof why, "field 'text' missing or not a string");
        } else if (!domain || !*domain) {
            snprintf(why, sizeof why, "domain field '%s' missing or not a string", R->opts->domain_field);
        } else {
            ids->n = 0;
            r->kind = REC_DOC;
            int rc = lmx__encode(enc, text, text_len, ids, &b->err);
            if (rc == LMX_OK) {
                r->str_off = b->strs.len;
                r->tok_off = b->toks.len;
                r->n_tokens = ids->n;
                if (lmx__buf_append(&b->strs, domain, strlen(domain) + 1) != LMX_OK ||
                    lmx__buf_reserve(&b->toks, ids->n * tb) != LMX_OK)
                    rc = lmx__err(&b->err, LMX_ENOMEM, "out of memory");
            } else {
                lmx__err_prefix(&b->err, "%s:%llu: ", j->path, (unsigned long long)r->line);
            }
            if (rc == LMX_OK) {
                uint8_t *p = b->toks.data + b->toks.len;
                for (size_t t = 0; t < ids->n; t++, p += tb) {
                    if (tb == 2)
                        lmx__put16(p, (uint16_t)ids->v[t]);
                    else
                        lmx__put32(p, ids->v[t]);
                }
                b->toks.len += ids->n * tb;
                atomic_fetch_add(&R->tokens_done, ids->n);
            } else {
                r->kind = REC_FATAL;
            }
        }
        json_decref(doc);
        if (r->kind == REC_FATAL)
            break;
        if (r->kind == REC_REJECT) {
            r->str_off = b->strs.len;
            if (lmx__buf_append(&b->strs, why, strlen(why) + 1) != LMX_OK) {
                r->kind = REC_FATAL;
                lmx__err(&b->err, LMX_ENOMEM, "out of memory");
                break;
            }
        }
    }
    lmx__buf_free(&ftext);
    lmx__buf_free(&fdomain);
}

/* Takes the oldest queued batch (R->mu held) or NULL. */
static batch *queue_pop(run *R)
{
    batch *b = R->q_head;
    if (b) {
        R->q_head = b->qnext;
        if (!R->q_head)
            R->q_tail = NULL;
        b->qnext = NULL;
    }
    return b;
}

/* Processes one queued batch (R->mu held on entry and on return); 0 when the queue was empty. */
static int help_one(run *R, lmx_encoder *enc, lmx_ids *ids)
{
    batch *b = queue_pop(R);
    if (!b)
        return 0;
    pthread_mutex_unlock(&R->mu);
    batch_process(b, enc, ids);
    pthread_mutex_lock(&R->mu);
    b->done = 1;
    pthread_cond_broadcast(&R->cv);
    return 1;
}

/* Reads the next batch of lines (owner only). Returns 1 with *out (possibly NULL at EOF), or <0. */
static int batch_read(file_ctx *fc, line_reader *r, uint64_t *line_no, batch **out, lmx_error *err)
{
    *out = NULL;
    batch *b = calloc(1, sizeof *b);
    if (!b)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    b->fc = fc;
    b->text.cap_limit = MAX_LINE + BATCH_BYTES;
    b->toks.cap_limit = (size_t)1 << 34;
    int rc = LMX_OK;
    while (b->n < BATCH_LINES && b->text.len < BATCH_BYTES) {
        const char *line = NULL;
        size_t len = 0;
        int got = lr_next(r, *line_no + 1, &line, &len, err);
        if (got < 0)
            rc = got;
        if (got <= 0)
            break;
        if (b->n == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 64;
            rec *v = realloc(b->recs, cap * sizeof *v);
            if (!v) {
                rc = lmx__err(err, LMX_ENOMEM, "out of memory");
                break;
            }
            b->recs = v;
            b->cap = cap;
        }
        rec *x = &b->recs[b->n];
        memset(x, 0, sizeof *x);
        x->off = b->text.len;
        x->len = len;
        x->line = ++*line_no;
        if (len && lmx__buf_append(&b->text, line, len) != LMX_OK) {
            rc = lmx__err(err, LMX_ENOMEM, "%s:%llu: out of memory", fc->j->path, (unsigned long long)x->line);
            break;
        }
        b->raw_bytes += len + 1;
        b->n++;
    }
    if (b->n == 0) {
        batch_free(b);
        b = NULL;
    }
    *out = b;
    return rc < 0 ? rc : 1;
}

/* Appends a finished batch to the shard in order (owner only). */
static int batch_write(file_ctx *fc, batch *b, shard_writer *w, lmx_error *err)
{
    run *R = fc->R;
    job *j = fc->j;
    int rc = LMX_OK;
    for (size_t i = 0; rc == LMX_OK && i < b->n_res; i++) {
        const rec *r = &b->recs[i];
        switch (r->kind) {
        case REC_BLANK:
            break;
        case REC_REJECT:
            rc = reject(R, j, err, (const char *)b->strs.data + r->str_off, j->path, r->line);
            break;
        case REC_FATAL:
            *err = b->err;
            rc = err->code ? err->code : LMX_EINTERNAL;
            break;
        default:
            rc = sw_add_packed(w, b->toks.data + r->tok_off, r->n_tokens, (const char *)b->strs.data + r->str_off,
                               j->path, r->line, err);
        }
    }
    atomic_fetch_add(&R->bytes_done, b->raw_bytes);
    return rc;
}

static int run_jsonl(run *R, job *j, shard_writer *w, lmx_encoder *enc, lmx_ids *ids, char hash_hex[65],
                     lmx_error *err)
{
    line_reader r;
    int rc = lr_open(&r, j->path, j->kind == JOB_JSONL_ZST, err);
    if (rc != LMX_OK) {
        lr_close(&r);
        return rc;
    }
    file_ctx fc = {.R = R, .j = j};
    uint64_t line_no = 0, raw_seen = 0;
    int eof = 0;          /* no more batches to read (EOF, read error or a failed record) */
    int read_rc = LMX_OK; /* an error of the reader: reported after the records before it */
    lmx_error read_err = {0};
    pthread_mutex_lock(&R->mu);
    for (;;) {
        batch *h = fc.head;
        if (h && h->done) {
            fc.head = h->fnext;
            if (!fc.head)
                fc.tail = NULL;
            pthread_mutex_unlock(&R->mu);
            if (rc == LMX_OK)
                rc = batch_write(&fc, h, w, err);
            batch_free(h);
            pthread_mutex_lock(&R->mu);
            fc.inflight--;
            R->inflight--;
            if (rc != LMX_OK)
                eof = 1;
            pthread_cond_broadcast(&R->cv);
            continue;
        }
        if (eof && fc.inflight == 0)
            break;
        if (!eof && R->inflight < R->max_inflight) {
            R->inflight++;
            fc.inflight++;
            pthread_mutex_unlock(&R->mu);
            batch *b = NULL;
            int got = batch_read(&fc, &r, &line_no, &b, &read_err);
            if (got < 0) {
                read_rc = got;
                eof = 1;
            } else if (!b) {
                eof = 1;
            }
            atomic_fetch_add(&R->in_done, r.raw_bytes - raw_seen);
            raw_seen = r.raw_bytes;
            pthread_mutex_lock(&R->mu);
            if (b) {
                if (fc.tail)
                    fc.tail->fnext = b;
                else
                    fc.head = b;
                fc.tail = b;
                if (R->q_tail)
                    R->q_tail->qnext = b;
                else
                    R->q_head = b;
                R->q_tail = b;
                pthread_cond_broadcast(&R->cv);
            } else {
                R->inflight--;
                fc.inflight--;
            }
            continue;
        }
        if (!help_one(R, enc, ids))
            pthread_cond_wait(&R->cv, &R->mu);
    }
    pthread_mutex_unlock(&R->mu);
    if (rc == LMX_OK && read_rc != LMX_OK) {
        rc = read_rc;
        *err = read_err;
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
        size_t valid = lmx__utf8_valid_prefix((const uint8_t *)text, len);
        if (len == 0 || valid != len) {
            char why[160];
            if (len == 0)
                snprintf(why, sizeof why, "empty file (no text)");
            else
                snprintf(why, sizeof why, "not valid UTF-8 (first bad byte at offset %zu)", valid);
            rc = reject(R, j, err, why, j->files[i], 0);
            free(text);
            continue;
        }
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

/* ---- Megatron-LM indexed datasets (PREFIX.bin + PREFIX.idx, "MMIDIDX") ----
 * The .idx and .bin are mmapped and read in place; the shard format keeps every token inside
 * the shard (one file, one checksum), so tokens are copied once, streaming, into the shard:
 * straight from the mapping when the dtype already is the shard's token width, else converted
 * in bounded chunks. */

#define MEGA_HDR_SIZE 34 /* 9 magic + 8 version + 1 dtype + 8 sequence count + 8 document count */
#define MEGA_CHUNK 65536

/* Maps a Megatron file for one sequential pass. */
static int mega_map(const char *path, const uint8_t **map, size_t *size, lmx_error *err)
{
    uint8_t *m;
    int rc = lmx__map_file(path, &m, size, err);
    if (rc == LMX_OK && m)
        posix_madvise(m, *size, POSIX_MADV_SEQUENTIAL);
    *map = rc == LMX_OK ? m : NULL;
    return rc;
}

/* Megatron's DType codes (megatron/core/datasets/indexed_dataset.py): item size and signedness;
 * 0 for codes that are not integer token types. */
static int mega_dtype(uint8_t code, int *is_signed)
{
    *is_signed = code == 2 || code == 3 || code == 4 || code == 5;
    switch (code) {
    case 1: return 1; /* uint8 */
    case 2: return 1; /* int8 */
    case 3: return 2; /* int16 */
    case 4: return 4; /* int32 */
    case 5: return 8; /* int64 */
    case 8: return 2; /* uint16 */
    default: return 0; /* 6 float64, 7 float32, unknown */
    }
}

static int64_t mega_get(const uint8_t *p, int item, int is_signed)
{
    switch (item) {
    case 1: return is_signed ? (int64_t)(int8_t)p[0] : (int64_t)p[0];
    case 2: return is_signed ? (int64_t)(int16_t)lmx__get16(p) : (int64_t)lmx__get16(p);
    case 4: return is_signed ? (int64_t)(int32_t)lmx__get32(p) : (int64_t)lmx__get32(p);
    default: return (int64_t)lmx__get64(p);
    }
}

typedef struct mega {
    const char *idx_path, *bin_path;
    const uint8_t *idx, *bin;
    size_t idx_size, bin_size;
    int item, is_signed;
    uint64_t n_seqs, n_docs; /* n_docs = documents (the header's count minus the leading 0) */
    const uint8_t *lengths, *pointers, *doc_idx;
} mega;

/* Validates the .idx against itself and the .bin size; every error names the .idx. */
static int mega_check(mega *m, lmx_error *err)
{
    const uint8_t *h = m->idx;
    const char *p = m->idx_path;
    if (m->idx_size < MEGA_HDR_SIZE || memcmp(h, "MMIDIDX\0\0", 9) != 0)
        return lmx__err(err, LMX_EFORMAT, "%s: not a Megatron index (bad MMIDIDX magic or shorter than its header)", p);
    uint64_t version = lmx__get64(h + 9);
    if (version != 1)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: Megatron index version %llu (this build reads 1)", p,
                        (unsigned long long)version);
    uint8_t code = h[17];
    m->item = mega_dtype(code, &m->is_signed);
    if (!m->item)
        return lmx__err(err, LMX_EFORMAT, "%s: dtype code %u is not an integer token type (want 1-5 or 8)", p, code);
    m->n_seqs = lmx__get64(h + 18);
    uint64_t doc_count = lmx__get64(h + 26), avail = m->idx_size - MEGA_HDR_SIZE;
    if (m->n_seqs > avail / 12 || doc_count > (avail - m->n_seqs * 12) / 8)
        return lmx__err(err, LMX_EFORMAT,
                        "%s: %llu sequences and %llu document indices need more bytes than the file's %zu", p,
                        (unsigned long long)m->n_seqs, (unsigned long long)doc_count, m->idx_size);
    if (doc_count < 1)
        return lmx__err(err, LMX_EFORMAT, "%s: document count 0 (the document indices start with 0)", p);
    m->n_docs = doc_count - 1;
    m->lengths = h + MEGA_HDR_SIZE;
    m->pointers = m->lengths + 4 * m->n_seqs;
    m->doc_idx = m->pointers + 8 * m->n_seqs;
    for (uint64_t i = 0; i < m->n_seqs; i++) {
        int64_t len = (int32_t)lmx__get32(m->lengths + 4 * i), ptr = (int64_t)lmx__get64(m->pointers + 8 * i);
        if (len < 0 || ptr < 0 || (uint64_t)ptr > m->bin_size ||
            (uint64_t)len > (m->bin_size - (uint64_t)ptr) / (uint64_t)m->item)
            return lmx__err(err, LMX_EFORMAT,
                            "%s: sequence %llu (pointer %lld, length %lld) lies outside %s (%zu bytes)", p,
                            (unsigned long long)i, (long long)ptr, (long long)len, m->bin_path, m->bin_size);
    }
    int64_t prev = 0;
    for (uint64_t i = 0; i < doc_count; i++) {
        int64_t v = (int64_t)lmx__get64(m->doc_idx + 8 * i);
        if ((i == 0 && v != 0) || v < prev || (uint64_t)v > m->n_seqs)
            return lmx__err(err, LMX_EFORMAT,
                            "%s: document index %llu is %lld (want non-decreasing values from 0 to the sequence count %llu)",
                            p, (unsigned long long)i, (long long)v, (unsigned long long)m->n_seqs);
        prev = v;
    }
    if ((uint64_t)prev != m->n_seqs)
        return lmx__err(err, LMX_EFORMAT, "%s: the last document index is %lld, not the sequence count %llu", p,
                        (long long)prev, (unsigned long long)m->n_seqs);
    return LMX_OK;
}

/* One Megatron document (sequences [s0, s1)) into the shard; the ids were checked already. */
static int mega_write_doc(shard_writer *w, const mega *m, uint64_t s0, uint64_t s1, const char *domain,
                          uint64_t line, lmx_error *err)
{
    uint64_t n = 0;
    for (uint64_t s = s0; s < s1; s++)
        n += (uint32_t)lmx__get32(m->lengths + 4 * s);
    uint32_t di;
    int rc = sw_doc_record(w, n, domain, m->bin_path, line, &di, err);
    if (rc != LMX_OK)
        return rc;
    const uint16_t one = 1;
    int little = *(const uint8_t *)&one == 1;
    int direct = little && (uint32_t)m->item == w->token_bytes && !(m->is_signed && m->item == 2);
    if (!direct && lmx__buf_reserve(&w->scratch, MEGA_CHUNK * 4))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    for (uint64_t s = s0; s < s1; s++) {
        uint64_t len = (uint32_t)lmx__get32(m->lengths + 4 * s);
        const uint8_t *src = m->bin + lmx__get64(m->pointers + 8 * s);
        if (direct) {
            size_t nb = (size_t)len * (size_t)m->item;
            if (nb && fwrite(src, 1, nb, w->f) != nb)
                return lmx__err_errno(err, "write %s", w->tmp_path);
            continue;
        }
        for (uint64_t k = 0; k < len; k += MEGA_CHUNK) {
            uint64_t c = len - k < MEGA_CHUNK ? len - k : MEGA_CHUNK;
            uint8_t *d = w->scratch.data;
            for (uint64_t t = 0; t < c; t++, d += w->token_bytes) {
                uint32_t id = (uint32_t)mega_get(src + (k + t) * (uint64_t)m->item, m->item, m->is_signed);
                if (w->token_bytes == 2)
                    lmx__put16(d, (uint16_t)id);
                else
                    lmx__put32(d, id);
            }
            size_t nb = (size_t)c * w->token_bytes;
            if (fwrite(w->scratch.data, 1, nb, w->f) != nb)
                return lmx__err_errno(err, "write %s", w->tmp_path);
        }
    }
    w->n_tokens += n;
    w->n_docs++;
    lmx__stats_add(&w->dstats[di], n, LMX_LONG_THRESHOLD);
    return LMX_OK;
}

static int run_megatron(run *R, job *j, shard_writer *w, char hash_hex[65], lmx_error *err)
{
    mega m = {0};
    size_t n = strlen(j->path);
    char *idx_path = strdup(j->path);
    if (!idx_path)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    memcpy(idx_path + n - 4, ".idx", 4);
    m.idx_path = idx_path;
    m.bin_path = j->path;
    int rc = mega_map(idx_path, &m.idx, &m.idx_size, err);
    if (rc == LMX_OK)
        rc = mega_map(j->path, &m.bin, &m.bin_size, err);
    if (rc == LMX_OK)
        rc = mega_check(&m, err);
    uint32_t vocab = lmx__tokenizer_vocab_size(R->tok);
    for (uint64_t d = 0; rc == LMX_OK && d < m.n_docs; d++) {
        uint64_t s0 = lmx__get64(m.doc_idx + 8 * d), s1 = lmx__get64(m.doc_idx + 8 * (d + 1));
        char why[400] = "";
        uint64_t bytes = 0;
        for (uint64_t s = s0; s < s1 && !why[0]; s++) {
            uint64_t len = (uint32_t)lmx__get32(m.lengths + 4 * s);
            const uint8_t *src = m.bin + lmx__get64(m.pointers + 8 * s);
            bytes += len * (uint64_t)m.item;
            for (uint64_t t = 0; t < len; t++) {
                int64_t id = mega_get(src + t * (uint64_t)m.item, m.item, m.is_signed);
                if (id < 0 || (uint64_t)id >= vocab) {
                    snprintf(why, sizeof why,
                             "token id %lld at position %llu of sequence %llu is outside the tokenizer's vocabulary (size %u)",
                             (long long)id, (unsigned long long)t, (unsigned long long)s, vocab);
                    break;
                }
            }
        }
        if (why[0])
            rc = reject(R, j, err, why, j->path, d + 1);
        else
            rc = mega_write_doc(w, &m, s0, s1, j->domain, d + 1, err);
        atomic_fetch_add(&R->bytes_done, bytes);
        if (!why[0])
            atomic_fetch_add(&R->tokens_done, bytes / (uint64_t)m.item);
    }
    if (rc == LMX_OK) {
        crypto_generichash_state hs;
        uint8_t h[32];
        crypto_generichash_init(&hs, NULL, 0, 32);
        if (m.idx_size)
            crypto_generichash_update(&hs, m.idx, m.idx_size);
        if (m.bin_size)
            crypto_generichash_update(&hs, m.bin, m.bin_size);
        crypto_generichash_final(&hs, h, sizeof h);
        lmx__hex(h, sizeof h, hash_hex);
    }
    if (m.idx)
        munmap((void *)m.idx, m.idx_size);
    if (m.bin)
        munmap((void *)m.bin, m.bin_size);
    free(idx_path);
    return rc;
}

static int run_job(run *R, job *j, lmx_encoder *enc, lmx_ids *ids)
{
    char name[32], sum[65], input_hash[65] = "";
    shard_name(j, name);
    shard_writer w;
    lmx_error *err = &j->err;
    /* An input that cannot be read is a whole-input rejection: with --on-error=skip it is
     * counted and gets no shard (it is looked at again on the next run). */
    {
        const char *unreadable = NULL;
        char *idx = NULL;
        if (j->kind == JOB_TXT_DIR) {
            for (size_t i = 0; i < j->n_files && !unreadable; i++)
                if (access(j->files[i], R_OK) != 0)
                    unreadable = j->files[i];
        } else if (access(j->path, R_OK) != 0) {
            unreadable = j->path;
        } else if (j->kind == JOB_MEGATRON && (idx = strdup(j->path))) {
            memcpy(idx + strlen(idx) - 4, ".idx", 4);
            if (access(idx, R_OK) != 0)
                unreadable = idx;
        }
        if (unreadable) {
            int e = errno;
            int rc = LMX_OK;
            if (R->opts->on_error == LMX_ON_ERROR_SKIP) {
                j->skipped++;
                fprintf(stderr, "longmixd index: skipped %s: cannot read it: %s\n", unreadable, strerror(e));
            } else {
                rc = lmx__err(err, LMX_EIO, "cannot read %s: %s (use --on-error=skip to skip such inputs)", unreadable,
                              strerror(e));
            }
            free(idx);
            return rc;
        }
        free(idx);
    }
    int rc = sw_open(&w, R->opts->out_dir, name, R->token_bytes, err);
    if (rc == LMX_OK)
        rc = j->kind == JOB_TXT_DIR    ? run_txt(R, j, &w, enc, ids, input_hash, err)
             : j->kind == JOB_MEGATRON ? run_megatron(R, j, &w, input_hash, err)
                                       : run_jsonl(R, j, &w, enc, ids, input_hash, err);
    if (rc == LMX_OK && w.n_docs == 0 && j->skipped == 0) {
        if (R->opts->on_error == LMX_ON_ERROR_SKIP) {
            j->skipped++;
            fprintf(stderr, "longmixd index: skipped %s: no documents (empty input)\n", j->path);
            sw_abort(&w);
            sw_free(&w);
            return LMX_OK;
        }
        rc = lmx__err(err, LMX_EINVAL, "%s: no documents (empty input; use --on-error=skip to skip such inputs)",
                      j->path);
    }
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
    json_object_set_new(e, "kind", json_string(j->kind == JOB_TXT_DIR ? "txt" : j->kind == JOB_JSONL ? "jsonl" : j->kind == JOB_MEGATRON ? "megatron" : "jsonl.zst"));
    json_object_set_new(e, "input_size", json_integer((json_int_t)j->size));
    json_object_set_new(e, "input_mtime_ns", json_integer((json_int_t)j->mtime_ns));
    json_object_set_new(e, "input_blake2b", json_string(input_hash));
    char rule[600];
    domain_rule(R->opts, j, rule, sizeof rule);
    json_object_set_new(e, "domain_rule", json_string(rule));
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

/* Every thread: claims the next input (in order) and runs it; when none is left, tokenizes
 * batches of the inputs still running, until no input is running. */
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
    pthread_mutex_lock(&R->mu);
    for (;;) {
        if (R->next < R->n_jobs && !atomic_load(&R->failed)) {
            job *j = &R->jobs[R->next++];
            if (j->reused) {
                atomic_fetch_add(&R->files_done, 1);
                continue;
            }
            R->owners++;
            pthread_mutex_unlock(&R->mu);
            if (run_job(R, j, enc, &ids) != LMX_OK)
                atomic_store(&R->failed, 1);
            if (j->kind != JOB_JSONL && j->kind != JOB_JSONL_ZST) /* .jsonl count as they are read */
                atomic_fetch_add(&R->in_done, j->size);
            atomic_fetch_add(&R->files_done, 1);
            pthread_mutex_lock(&R->mu);
            R->owners--;
            pthread_cond_broadcast(&R->cv);
            continue;
        }
        if (help_one(R, enc, &ids))
            continue;
        if (R->owners == 0)
            break;
        pthread_cond_wait(&R->cv, &R->mu);
    }
    pthread_mutex_unlock(&R->mu);
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
        } else if (j->kind == JOB_MEGATRON) {
            /* the .bin and the .idx: sizes summed, the later mtime */
            char *idx = strdup(j->path);
            if (idx)
                memcpy(idx + strlen(idx) - 4, ".idx", 4);
            for (int k = 0; k < 2; k++)
                if ((!k || idx) && stat(k ? idx : j->path, &st) == 0) {
                    j->size += (uint64_t)st.st_size;
                    uint64_t t = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
                    j->mtime_ns = t > j->mtime_ns ? t : j->mtime_ns;
                }
            free(idx);
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
    uint64_t in = atomic_load(&R->in_done);
    char eta[48] = "";
    if (!final && in > 0 && dt > 1 && R->in_total > in) {
        double s = (double)(R->in_total - in) / ((double)in / dt);
        if (s < 3600)
            snprintf(eta, sizeof eta, ", ETA %d:%02d", (int)s / 60, (int)s % 60);
        else
            snprintf(eta, sizeof eta, ", ETA %dh%02dm", (int)(s / 3600), (int)s % 3600 / 60);
    }
    fprintf(stderr, "%sindexed %zu/%zu files, %.1f MB, %llu tokens, %.1f MB/s%s%s", final ? "" : "\r",
            (size_t)atomic_load(&R->files_done), R->n_jobs, mb, (unsigned long long)atomic_load(&R->tokens_done),
            dt > 0 ? mb / dt : 0.0, eta, final ? "\n" : "   ");
}

/* One writer per index folder: an exclusive flock on DIR/.lock (kept as an empty file), held
 * until the run ends. Returns the descriptor (>= 0) or an error code. */
static int lock_out(const char *out_dir, lmx_error *err)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/.lock", out_dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return lmx__err_errno(err, "create %s", p);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return lmx__err(err, LMX_EIO, "%s: another longmixd index is writing this folder (%s is locked)", out_dir, p);
        errno = e;
        return lmx__err_errno(err, "lock %s", p);
    }
    return fd;
}

/* Temp files of runs that were killed (NAME.tmp.PID whose PID is gone) in DIR and DIR/shards. */
static void remove_stale_temps(const char *out_dir)
{
    for (int sub = 0; sub < 2; sub++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s%s", out_dir, sub ? "/shards" : "");
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            const char *t = strstr(e->d_name, ".tmp.");
            char *end = NULL;
            if (!t)
                continue;
            long pid = strtol(t + 5, &end, 10);
            if (!end || *end || pid <= 0 || (pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM)))
                continue;
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
}

/* Whether manifest m lists shard file name. */
static int listed_in(json_t *m, const char *file)
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

/* After a manifest is published: shard files it does not list (earlier versions of changed
 * inputs, leftovers of killed runs) are deleted. A daemon that still maps one keeps its mapping. */
static void remove_unlisted_shards(const char *out_dir, json_t *manifest)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/shards", out_dir);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, ".lmxs") || listed_in(manifest, e->d_name))
            continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* The manifest over shard entries (borrowed; sorted here by input path so document ids do not
 * depend on run history or on how the inputs were split over machines); takes tokenizer. */
static json_t *make_manifest(json_t *tokenizer, uint32_t token_bytes, json_t *shards)
{
    json_t *manifest = json_object(), *doms = json_object();
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

/* Copies tokenizer.json (and tokenizer_config.json, which may name BOS/EOS) from tokenizer_json's
 * folder into the index, so the index is self-describing: the server decodes text with it and
 * its identity hash stays that of the bytes copied. No-op for the built-in `bytes` tokenizer. */
static int copy_tokenizer_files(const char *tokenizer_json, const char *out_dir, lmx_error *err)
{
    if (strcmp(tokenizer_json, "bytes") == 0)
        return LMX_OK;
    static const char *const names[] = {"tokenizer.json", "tokenizer_config.json"};
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tokenizer_json);
    char *slash = strrchr(dir, '/');
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char src[4200], dst[4200];
        if (i == 0)
            snprintf(src, sizeof src, "%s", tokenizer_json);
        else if (slash)
            snprintf(src, sizeof src, "%.*s/%s", (int)(slash - dir), dir, names[i]);
        else
            snprintf(src, sizeof src, "%s", names[i]);
        snprintf(dst, sizeof dst, "%s/%s", out_dir, names[i]);
        if (strcmp(src, dst) == 0)
            continue;
        if (i > 0 && access(src, R_OK) != 0)
            continue; /* optional */
        char *data = NULL;
        size_t len = 0;
        int rc = lmx__read_file(src, (size_t)1 << 30, &data, &len, err);
        if (rc == LMX_OK)
            rc = lmx__write_file_atomic(dst, data, len, err);
        free(data);
        if (rc != LMX_OK)
            return rc;
    }
    return LMX_OK;
}

int lmx__index_build(const lmx_index_options *opts_in, char *const *inputs, int n_inputs, lmx_error *err)
{
    /* Documented default for domain_field (NULL would be dereferenced by every worker). */
    lmx_index_options opts_v = *opts_in;
    if (!opts_v.domain_field || !*opts_v.domain_field)
        opts_v.domain_field = "meta.redpajama_set_name";
    const lmx_index_options *opts = &opts_v;
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
    if (rc == LMX_OK && opts->shard_count > 0) {
        /* --shard I/N: keep the jobs k (in path order) with k % N == I; the rest are other slices'. */
        if (opts->shard_index >= opts->shard_count)
            rc = lmx__err(err, LMX_EINVAL, "--shard %u/%u: I must be in [0, N)", opts->shard_index, opts->shard_count);
        size_t keep = 0;
        for (size_t i = 0; rc == LMX_OK && i < jobs.n; i++) {
            if (i % opts->shard_count == opts->shard_index) {
                jobs.v[keep++] = jobs.v[i];
                continue;
            }
            free(jobs.v[i].path);
            free(jobs.v[i].domain);
            for (size_t k = 0; k < jobs.v[i].n_files; k++)
                free(jobs.v[i].files[k]);
            free(jobs.v[i].files);
        }
        if (rc == LMX_OK)
            jobs.n = keep;
    }
    lmx_tokenizer_options topts = {.match_added_tokens = opts->match_added_tokens};
    if (rc == LMX_OK)
        rc = lmx__tokenizer_open(opts->tokenizer, &topts, &tok, err);
    int created_out = 0; /* 1: this run may clean up after a failure; 2: it also created out_dir */
    int lock_fd = -1;
    if (rc == LMX_OK) {
        char sh[4096];
        snprintf(sh, sizeof sh, "%s/shards", opts->out_dir);
        created_out = access(opts->out_dir, F_OK) == 0 ? 1 : 2;
        rc = lmx__mkdirs(sh, err);
        if (rc == LMX_OK) {
            lock_fd = lock_out(opts->out_dir, err);
            rc = lock_fd < 0 ? lock_fd : LMX_OK;
        }
        if (rc == LMX_OK)
            remove_stale_temps(opts->out_dir);
        else
            created_out = 0;
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
    pthread_mutex_init(&R.mu, NULL);
    pthread_cond_init(&R.cv, NULL);
    if (rc == LMX_OK) {
        R.token_bytes = lmx__tokenizer_vocab_size(tok) <= 65536 ? 2 : 4;
        stat_inputs(jobs.v, jobs.n);
        /* Unchanged inputs are not re-read: same path and domain rule, shard still there, and the
         * same size and mtime, or (a JSON Lines file touched or copied) the same content hash. */
        json_t *os = json_object_get(old, "shards");
        for (size_t i = 0; i < jobs.n; i++) {
            char rule[600];
            domain_rule(opts, &jobs.v[i], rule, sizeof rule);
            for (size_t k = 0; k < json_array_size(os) && !jobs.v[i].reused; k++) {
                json_t *e = json_array_get(os, k);
                if (strcmp(str_or(json_string_value(json_object_get(e, "input")), ""), jobs.v[i].path) != 0 ||
                    strcmp(str_or(json_string_value(json_object_get(e, "domain_rule")), ""), rule) != 0)
                    continue;
                char sp[4096];
                struct stat st;
                snprintf(sp, sizeof sp, "%s/shards/%s", opts->out_dir, str_or(json_string_value(json_object_get(e, "file")), "?"));
                if ((uint64_t)json_integer_value(json_object_get(e, "input_size")) != jobs.v[i].size ||
                    stat(sp, &st) != 0 || (uint64_t)st.st_size != (uint64_t)json_integer_value(json_object_get(e, "size")))
                    continue;
                if ((uint64_t)json_integer_value(json_object_get(e, "input_mtime_ns")) == jobs.v[i].mtime_ns) {
                    jobs.v[i].reused = e;
                } else if (jobs.v[i].kind == JOB_JSONL || jobs.v[i].kind == JOB_JSONL_ZST) {
                    char hex[65];
                    if (file_blake2b(jobs.v[i].path, hex) == 0 &&
                        strcmp(hex, str_or(json_string_value(json_object_get(e, "input_blake2b")), "")) == 0) {
                        json_object_set_new(e, "input_mtime_ns", json_integer((json_int_t)jobs.v[i].mtime_ns));
                        jobs.v[i].reused = e;
                    }
                }
            }
        }
        for (size_t i = 0; i < jobs.n; i++)
            if (!jobs.v[i].reused)
                R.in_total += jobs.v[i].size;
        /* Threads serve every input: a single large file is tokenized by all of them. */
        int nt = opts->threads < 1 ? 1 : opts->threads;
        pthread_t th[256];
        if (nt > 256)
            nt = 256;
        R.max_inflight = 2 * (size_t)nt;
        double t0 = lmx__now();
        for (int t = 0; t < nt; t++)
            if (pthread_create(&th[t], NULL, worker, &R) != 0) {
                nt = t; /* fewer threads; with none, this thread does the work */
                break;
            }
        if (nt == 0)
            worker(&R);
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
                } else if (jobs.v[i].entry) {
                    json_array_append(shards, jobs.v[i].entry);
                }
                skipped += jobs.v[i].skipped;
            }
            json_t *tj = json_object();
            json_object_set_new(tj, "kind", json_string(lmx__tokenizer_kind(tok)));
            json_object_set_new(tj, "identity", json_string(lmx__tokenizer_identity(tok)));
            json_object_set_new(tj, "path", json_string(opts->tokenizer));
            json_object_set_new(tj, "vocab_size", json_integer(lmx__tokenizer_vocab_size(tok)));
            json_object_set_new(tj, "bos", json_integer(lmx__tokenizer_bos(tok)));
            json_object_set_new(tj, "eos", json_integer(lmx__tokenizer_eos(tok)));
            json_decref(manifest);
            json_decref(doms);
            manifest = make_manifest(tj, R.token_bytes, shards);
            json_decref(shards);
            uint64_t total_docs = (uint64_t)json_integer_value(json_object_get(manifest, "total_docs"));
            uint64_t total_tokens = (uint64_t)json_integer_value(json_object_get(manifest, "total_tokens"));
            char *txt = json_dumps(manifest, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
            rc = copy_tokenizer_files(opts->tokenizer, opts->out_dir, err);
            if (rc == LMX_OK)
                rc = txt ? lmx__write_file_atomic(mpath, txt, strlen(txt), err)
                         : lmx__err(err, LMX_ENOMEM, "manifest: out of memory");
            free(txt);
            if (rc == LMX_OK)
                remove_unlisted_shards(opts->out_dir, manifest);
            if (rc == LMX_OK)
                fprintf(stderr, "longmixd index: %zu inputs (%llu unchanged), %llu documents, %llu tokens, %llu records skipped, %.1f s -> %s\n",
                        jobs.n, (unsigned long long)reused, (unsigned long long)total_docs,
                        (unsigned long long)total_tokens, (unsigned long long)skipped, lmx__now() - t0, opts->out_dir);
        }
    }
    if (rc != LMX_OK && created_out && lock_fd >= 0) {
        /* A failed run leaves nothing behind: the shards it finished (not listed by the published
         * manifest) and the folders it created. */
        for (size_t i = 0; i < jobs.n; i++) {
            const char *file = json_string_value(json_object_get(jobs.v[i].entry, "file"));
            if (!file || listed_in(old, file))
                continue;
            char sp[4200];
            snprintf(sp, sizeof sp, "%s/shards/%s", opts->out_dir, file);
            unlink(sp);
        }
        if (!old) {
            char sh[4200];
            snprintf(sh, sizeof sh, "%s/shards", opts->out_dir);
            rmdir(sh);
            if (created_out == 2) {
                snprintf(sh, sizeof sh, "%s/.lock", opts->out_dir);
                unlink(sh);
                rmdir(opts->out_dir);
            }
        }
    }
    if (lock_fd >= 0)
        close(lock_fd);
    pthread_cond_destroy(&R.cv);
    pthread_mutex_destroy(&R.mu);
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

/* ---- merge (`longmixd index --merge`) ---- */

/* Places src at dst: a hard link when possible, else a copy whose BLAKE2b must equal want. Both
 * go through a temp name and a rename, so dst is never half-written. */
static int place_shard(const char *src, const char *dst, const char *want, lmx_error *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dst, (long)getpid());
    unlink(tmp);
    if (link(src, tmp) != 0) {
        int in = open(src, O_RDONLY | O_CLOEXEC);
        if (in < 0)
            return lmx__err_errno(err, "open %s", src);
        int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out < 0) {
            close(in);
            return lmx__err_errno(err, "create %s", tmp);
        }
        crypto_generichash_state hs;
        crypto_generichash_init(&hs, NULL, 0, 32);
        uint8_t *buf = malloc((size_t)1 << 20);
        int rc = buf ? LMX_OK : lmx__err(err, LMX_ENOMEM, "out of memory");
        while (rc == LMX_OK) {
            ssize_t n = read(in, buf, (size_t)1 << 20);
            if (n < 0) {
                rc = lmx__err_errno(err, "read %s", src);
                break;
            }
            if (n == 0)
                break;
            crypto_generichash_update(&hs, buf, (unsigned long long)n);
            for (ssize_t o = 0; o < n && rc == LMX_OK;) {
                ssize_t w = write(out, buf + o, (size_t)(n - o));
                if (w <= 0)
                    rc = lmx__err_errno(err, "write %s", tmp);
                else
                    o += w;
            }
        }
        free(buf);
        close(in);
        if (rc == LMX_OK && fsync(out) != 0)
            rc = lmx__err_errno(err, "fsync %s", tmp);
        if (close(out) != 0 && rc == LMX_OK)
            rc = lmx__err_errno(err, "close %s", tmp);
        if (rc == LMX_OK) {
            uint8_t h[32];
            char hex[65];
            crypto_generichash_final(&hs, h, sizeof h);
            lmx__hex(h, sizeof h, hex);
            if (strcmp(hex, want) != 0)
                rc = lmx__err(err, LMX_ECHECKSUM, "%s: BLAKE2b %s, its manifest says %s (run longmixd verify on it)", src,
                              hex, want);
        }
        if (rc != LMX_OK) {
            unlink(tmp);
            return rc;
        }
    }
    if (rename(tmp, dst) != 0) {
        int rc = lmx__err_errno(err, "rename %s", tmp);
        unlink(tmp);
        return rc;
    }
    unlink(tmp); /* still there when tmp and dst were links to the same file already */
    return LMX_OK;
}

static int cmp_entry_ptr(const void *a, const void *b) { return cmp_entry_input(a, b); }

int lmx__index_merge(const char *out_dir, char *const *srcs, int n_srcs, lmx_error *err)
{
    if (n_srcs < 1)
        return lmx__err(err, LMX_EINVAL, "index --merge: no SRC_DIR given");
    if (sodium_init() < 0)
        return lmx__err(err, LMX_EINTERNAL, "libsodium failed to initialize");
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/%s", out_dir, LMX_INDEX_MANIFEST);
    int rc = LMX_OK;
    if (access(mpath, F_OK) == 0) {
        /* Merging into an existing index only when it is listed as a source (nothing is dropped). */
        struct stat so, ss;
        int listed = 0;
        for (int i = 0; i < n_srcs && !listed; i++)
            listed = stat(out_dir, &so) == 0 && stat(srcs[i], &ss) == 0 && so.st_dev == ss.st_dev && so.st_ino == ss.st_ino;
        if (!listed)
            return lmx__err(err, LMX_EINVAL, "%s already holds an index: list it as a SRC_DIR too, or use another --out",
                            out_dir);
    }
    int lock_fd = -1;
    json_t **ms = calloc((size_t)n_srcs, sizeof *ms);
    json_t *all = json_array(), *tokenizer = NULL;
    uint64_t token_bytes = 0;
    if (!ms || !all) {
        free(ms);
        json_decref(all);
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    }
    for (int i = 0; rc == LMX_OK && i < n_srcs; i++) {
        char sp[4096];
        json_error_t je;
        snprintf(sp, sizeof sp, "%s/%s", srcs[i], LMX_INDEX_MANIFEST);
        ms[i] = json_load_file(sp, 0, &je);
        if (!ms[i]) {
            rc = access(sp, F_OK) != 0 ? lmx__err(err, LMX_ENOTFOUND, "%s: no index here (missing %s)", srcs[i], LMX_INDEX_MANIFEST)
                                       : lmx__err(err, LMX_EFORMAT, "%s:%d: %s", sp, je.line, je.text);
            break;
        }
        json_t *fmt = json_object_get(ms[i], "format"), *tok = json_object_get(ms[i], "tokenizer");
        const char *id = json_string_value(json_object_get(tok, "identity"));
        if (!json_is_string(fmt) || strcmp(json_string_value(fmt), LMX_INDEX_FORMAT) != 0 ||
            json_integer_value(json_object_get(ms[i], "version")) != LMX_INDEX_VERSION || !id ||
            !json_is_array(json_object_get(ms[i], "shards"))) {
            rc = lmx__err(err, LMX_EFORMAT, "%s: not a longmix index manifest of version %d", sp, LMX_INDEX_VERSION);
            break;
        }
        if (json_integer_value(json_object_get(ms[i], "long_threshold")) != LMX_LONG_THRESHOLD) {
            rc = lmx__err(err, LMX_EUNSUPPORTED, "%s: long_threshold %lld (this build writes %d)", sp,
                          (long long)json_integer_value(json_object_get(ms[i], "long_threshold")), LMX_LONG_THRESHOLD);
            break;
        }
        if (!tokenizer) {
            tokenizer = tok;
            token_bytes = (uint64_t)json_integer_value(json_object_get(ms[i], "token_bytes"));
        } else if (strcmp(id, json_string_value(json_object_get(tokenizer, "identity"))) != 0 ||
                   (uint64_t)json_integer_value(json_object_get(ms[i], "token_bytes")) != token_bytes) {
            rc = lmx__err(err, LMX_EINVAL,
                          "%s was built with tokenizer %s, %s with %s: indexes can only be merged when built with the same tokenizer",
                          srcs[i], id, srcs[0], json_string_value(json_object_get(tokenizer, "identity")));
            break;
        }
        json_t *e;
        size_t k;
        json_array_foreach(json_object_get(ms[i], "shards"), k, e)
        {
            const char *file = json_string_value(json_object_get(e, "file"));
            if (!file || !json_is_string(json_object_get(e, "input")) || !json_is_string(json_object_get(e, "blake2b")) ||
                strchr(file, '/') || file[0] == '.') {
                rc = lmx__err(err, LMX_EFORMAT, "%s: shards[%zu] malformed", sp, k);
                break;
            }
            json_object_set_new(e, "_src", json_integer(i));
            json_array_append(all, e);
        }
    }
    /* One entry per input: the same input in two sources must be the same shard. */
    size_t n = json_array_size(all);
    json_t **v = calloc(n + 1, sizeof *v);
    json_t *uniq = json_array();
    for (size_t k = 0; k < n; k++)
        v[k] = json_array_get(all, k);
    if (rc == LMX_OK)
        qsort(v, n, sizeof *v, cmp_entry_ptr);
    for (size_t k = 0; rc == LMX_OK && k < n; k++) {
        if (k > 0 && cmp_entry_input(&v[k - 1], &v[k]) == 0) {
            if (strcmp(json_string_value(json_object_get(v[k - 1], "blake2b")),
                       json_string_value(json_object_get(v[k], "blake2b"))) != 0 ||
                strcmp(json_string_value(json_object_get(v[k - 1], "file")), json_string_value(json_object_get(v[k], "file"))) != 0)
                rc = lmx__err(err, LMX_EINVAL, "input %s is indexed differently in %s and %s (re-index it in one of them)",
                              json_string_value(json_object_get(v[k], "input")),
                              srcs[json_integer_value(json_object_get(v[k - 1], "_src"))],
                              srcs[json_integer_value(json_object_get(v[k], "_src"))]);
            continue;
        }
        json_array_append(uniq, v[k]);
    }
    free(v);
    if (rc == LMX_OK && !tokenizer)
        rc = lmx__err(err, LMX_EINVAL, "index --merge: no sources");
    if (rc == LMX_OK) {
        char sh[4096];
        snprintf(sh, sizeof sh, "%s/shards", out_dir);
        rc = lmx__mkdirs(sh, err);
        if (rc == LMX_OK) {
            lock_fd = lock_out(out_dir, err);
            rc = lock_fd < 0 ? lock_fd : LMX_OK;
        }
        if (rc == LMX_OK)
            remove_stale_temps(out_dir);
    }
    json_t *e;
    size_t k;
    json_array_foreach(uniq, k, e)
    {
        if (rc != LMX_OK)
            break;
        const char *file = json_string_value(json_object_get(e, "file"));
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/shards/%s", srcs[json_integer_value(json_object_get(e, "_src"))], file);
        snprintf(dst, sizeof dst, "%s/shards/%s", out_dir, file);
        struct stat st;
        if (stat(src, &st) != 0)
            rc = lmx__err_errno(err, "shard %s", src);
        else if ((uint64_t)st.st_size != (uint64_t)json_integer_value(json_object_get(e, "size")))
            rc = lmx__err(err, LMX_EFORMAT, "%s: %lld bytes, its manifest says %lld", src, (long long)st.st_size,
                          (long long)json_integer_value(json_object_get(e, "size")));
        else
            rc = place_shard(src, dst, json_string_value(json_object_get(e, "blake2b")), err);
    }
    if (rc == LMX_OK) {
        char dirp[4200];
        snprintf(dirp, sizeof dirp, "%s/shards/x", out_dir);
        rc = lmx__fsync_dir_of(dirp, err);
    }
    if (rc == LMX_OK) {
        json_t *clean = json_array();
        json_array_foreach(uniq, k, e)
        {
            json_t *c = json_deep_copy(e);
            json_object_del(c, "_src");
            json_array_append_new(clean, c);
        }
        json_t *m = make_manifest(json_deep_copy(tokenizer), (uint32_t)token_bytes, clean);
        json_decref(clean);
        char *txt = json_dumps(m, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        char tsrc[4200];
        snprintf(tsrc, sizeof tsrc, "%s/tokenizer.json", srcs[0]);
        if (access(tsrc, R_OK) == 0)
            rc = copy_tokenizer_files(tsrc, out_dir, err);
        if (rc == LMX_OK)
            rc = txt ? lmx__write_file_atomic(mpath, txt, strlen(txt), err) : lmx__err(err, LMX_ENOMEM, "manifest: out of memory");
        free(txt);
        if (rc == LMX_OK)
            fprintf(stderr, "longmixd index --merge: %d sources, %zu inputs, %lld documents, %lld tokens -> %s\n", n_srcs,
                    json_array_size(uniq), (long long)json_integer_value(json_object_get(m, "total_docs")),
                    (long long)json_integer_value(json_object_get(m, "total_tokens")), out_dir);
        json_decref(m);
    }
    if (lock_fd >= 0)
        close(lock_fd);
    json_decref(uniq);
    json_decref(all);
    for (int i = 0; i < n_srcs; i++)
        json_decref(ms[i]);
    free(ms);
    return rc;
}
