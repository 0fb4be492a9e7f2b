/* Shard writer: one .lmxs file (proto/INDEX.md, "Shard file"), written to a temp name, fsynced,
 * hashed as written and renamed into place. */
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lmx_index_internal.h"

/* An unlinked temporary file next to path (its name removed at once: gone with the process). */
static FILE *spill_open(const char *path, const char *tag)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%s", path, tag);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
    unlink(tmp);
    FILE *f = fdopen(fd, "w+b");
    if (!f) {
        close(fd);
        return NULL;
    }
    setvbuf(f, NULL, _IOFBF, (size_t)1 << 16);
    return f;
}

int lmx__shard_open(lmx_shard_writer *w, const char *out_dir, const char *name, uint32_t token_bytes, lmx_error *err)
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
    if (!(w->docs = spill_open(w->tmp_path, "docs")) || !(w->ids = spill_open(w->tmp_path, "ids")) ||
        !(w->id_blob = spill_open(w->tmp_path, "blob")))
        return lmx__err_errno(err, "create a temporary file beside %s", w->tmp_path);
    return LMX_OK;
}

static void spill_close(lmx_shard_writer *w)
{
    FILE **f[3] = {&w->docs, &w->ids, &w->id_blob};
    for (int i = 0; i < 3; i++)
        if (*f[i]) {
            fclose(*f[i]);
            *f[i] = NULL;
        }
}

void lmx__shard_abort(lmx_shard_writer *w)
{
    spill_close(w);
    if (w->f) {
        fclose(w->f);
        w->f = NULL;
    }
    if (w->tmp_path)
        unlink(w->tmp_path);
}

void lmx__shard_free(lmx_shard_writer *w)
{
    for (uint32_t i = 0; i < w->n_strings; i++)
        free(w->strings[i]);
    free(w->strings);
    free(w->dstats);
    free(w->tmp_path);
    free(w->final_path);
    spill_close(w);
}

/* Domains must all be added before the first source string: domains are strings [0, n_domains). */
static int add_string(lmx_shard_writer *w, const char *s, int is_domain, uint32_t *idx)
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
        *idx = w->n_domains++; /* sources moved up by one: records hold ordinals, fixed at finish */
    } else {
        w->strings[w->n_strings] = strdup(s);
        *idx = w->n_strings;
    }
    w->n_strings++;
    return LMX_OK;
}

/* Appends the document record (tokens start at the writer's current token count); *di is the
 * domain's string index, for the statistics the caller adds once the tokens are written. */
static int doc_record(lmx_shard_writer *w, uint64_t n_tokens, const char *domain, const char *source, uint64_t line,
                         uint32_t *di, lmx_error *err)
{
    uint32_t si;
    if (add_string(w, domain, 1, di) || add_string(w, source, 0, &si))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    uint8_t rec[LMX_SHARD_DOC_SIZE] = {0};
    lmx__put64(rec + LMX_SD_TOKEN_START, w->n_tokens);
    lmx__put64(rec + LMX_SD_N_TOKENS, n_tokens);
    lmx__put32(rec + LMX_SD_DOMAIN, *di);
    lmx__put32(rec + LMX_SD_SOURCE, si - w->n_domains); /* its ordinal among the sources */
    lmx__put64(rec + LMX_SD_LINE, line);
    if (fwrite(rec, 1, sizeof rec, w->docs) != sizeof rec)
        return lmx__err_errno(err, "write beside %s", w->tmp_path);
    return LMX_OK;
}

/* One document whose tokens are already packed (n_tokens little-endian ids of token_bytes). */
int lmx__shard_add(lmx_shard_writer *w, const uint8_t *toks, uint64_t n_tokens, const char *domain,
                         const char *source, uint64_t line, const char *doc_id, lmx_error *err)
{
    uint32_t di = 0;
    int rc = doc_record(w, n_tokens, domain, source, line, &di, err);
    if (rc != LMX_OK)
        return rc;
    /* Every document gets an ids entry ("" = none): whether the section is written is only known
     * at the end. */
    uint8_t end[8];
    const char *id = doc_id ? doc_id : "";
    size_t il = strlen(id) + 1;
    w->blob_len += il;
    lmx__put64(end, w->blob_len);
    if (fwrite(id, 1, il, w->id_blob) != il || fwrite(end, 1, 8, w->ids) != 8)
        return lmx__err_errno(err, "write beside %s", w->tmp_path);
    w->has_ids |= *id != '\0';
    size_t nb = (size_t)n_tokens * w->token_bytes;
    if (nb && fwrite(toks, 1, nb, w->f) != nb)
        return lmx__err_errno(err, "write %s", w->tmp_path);
    w->n_tokens += n_tokens;
    w->n_docs++;
    lmx__stats_add(&w->dstats[di], n_tokens, LMX_LONG_THRESHOLD);
    return LMX_OK;
}

void lmx__pack_ids(uint8_t *out, const uint32_t *ids, size_t n, uint32_t token_bytes)
{
    for (size_t i = 0; i < n; i++, out += token_bytes) {
        if (token_bytes == 2)
            lmx__put16(out, (uint16_t)ids[i]);
        else
            lmx__put32(out, ids[i]);
    }
}

static int write_pad(FILE *f, uint64_t *off)
{
    static const uint8_t z[8];
    size_t pad = (size_t)((8 - *off % 8) % 8);
    *off += pad;
    return pad && fwrite(z, 1, pad, f) != pad ? -1 : 0;
}

/* Appends spill file f (from its start) to the shard; with add, every record's SOURCE field gets
 * add (the source ordinals become string indices). 0 or -1. */
static int copy_spill(lmx_shard_writer *w, FILE *f, uint32_t add)
{
    static _Thread_local uint8_t buf[(size_t)1 << 16]; /* a multiple of the record size */
    if (fflush(f) != 0 || fseek(f, 0, SEEK_SET) != 0)
        return -1;
    for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) {
        for (size_t r = 0; add && r + LMX_SHARD_DOC_SIZE <= n; r += LMX_SHARD_DOC_SIZE)
            lmx__put32(buf + r + LMX_SD_SOURCE, lmx__get32(buf + r + LMX_SD_SOURCE) + add);
        if (fwrite(buf, 1, n, w->f) != n)
            return -1;
    }
    return ferror(f) ? -1 : 0;
}

/* The ids section at *off (8-aligned first): n_docs + 1 u64 offsets into the blob (first 0), then
 * the blob of NUL-terminated ids; the new end, or 0 on a write error. */
static uint64_t write_ids(lmx_shard_writer *w, uint64_t off, uint64_t *ids_off)
{
    static const uint8_t zero[8];
    if (write_pad(w->f, &off) || fwrite(zero, 1, 8, w->f) != 8)
        return 0;
    *ids_off = off;
    if (copy_spill(w, w->ids, 0) || copy_spill(w, w->id_blob, 0))
        return 0;
    return off + 8 + 8 * w->n_docs + w->blob_len;
}

/* Writes the doc records, the string table and the ids (if any) after the tokens; returns the
 * file size, or 0 on a write error. */
static uint64_t write_sections(lmx_shard_writer *w, uint64_t *docs_off, uint64_t *str_off, uint64_t *ids_off)
{
    uint64_t off = LMX_SHARD_HEADER_SIZE + w->n_tokens * w->token_bytes, so = 0;
    if (write_pad(w->f, &off))
        return 0;
    *docs_off = off;
    if (copy_spill(w, w->docs, w->n_domains))
        return 0;
    off += w->n_docs * LMX_SHARD_DOC_SIZE;
    if (write_pad(w->f, &off))
        return 0;
    *str_off = off;
    uint8_t b8[8];
    for (uint32_t i = 0; i <= w->n_strings; i++) {
        lmx__put64(b8, so);
        if (fwrite(b8, 1, 8, w->f) != 8)
            return 0;
        if (i < w->n_strings)
            so += strlen(w->strings[i]) + 1;
    }
    for (uint32_t i = 0; i < w->n_strings; i++)
        if (fwrite(w->strings[i], 1, strlen(w->strings[i]) + 1, w->f) != strlen(w->strings[i]) + 1)
            return 0;
    off += 8 * ((uint64_t)w->n_strings + 1) + so;
    return w->has_ids ? write_ids(w, off, ids_off) : off;
}

/* Rewrites the header, flushes, fsyncs and closes the file; 0 or -1. */
static int write_header(lmx_shard_writer *w, uint64_t docs_off, uint64_t str_off, uint64_t ids_off, uint64_t size)
{
    uint8_t hdr[LMX_SHARD_HEADER_SIZE] = {0};
    memcpy(hdr, LMX_SHARD_MAGIC, 8);
    lmx__put32(hdr + LMX_SH_VERSION, LMX_SHARD_VERSION);
    lmx__put32(hdr + LMX_SH_TOKEN_BYTES, w->token_bytes);
    lmx__put64(hdr + LMX_SH_N_DOCS, w->n_docs);
    lmx__put64(hdr + LMX_SH_N_TOKENS, w->n_tokens);
    lmx__put64(hdr + LMX_SH_TOKENS_OFFSET, LMX_SHARD_HEADER_SIZE);
    lmx__put64(hdr + LMX_SH_DOCS_OFFSET, docs_off);
    lmx__put64(hdr + LMX_SH_STRINGS_OFFSET, str_off);
    lmx__put64(hdr + LMX_SH_N_STRINGS, w->n_strings);
    lmx__put64(hdr + LMX_SH_FILE_SIZE, size);
    lmx__put32(hdr + LMX_SH_N_DOMAINS, w->n_domains);
    lmx__put64(hdr + LMX_SH_IDS_OFFSET, ids_off);
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(hdr, 1, sizeof hdr, w->f) != sizeof hdr || fflush(w->f) != 0 ||
        fsync(fileno(w->f)) != 0)
        return -1;
    int rc = fclose(w->f);
    w->f = NULL;
    return rc == 0 ? 0 : -1;
}

/* Hashes what is on disk (page cache), not what we meant to write; 0 or -1. */
static int hash_written(const char *path, uint64_t size, char hex[65])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -1;
    uint8_t h[32];
    crypto_generichash(h, sizeof h, m, (unsigned long long)size, NULL, 0);
    munmap(m, (size_t)size);
    lmx__hex(h, sizeof h, hex);
    return 0;
}

int lmx__shard_finish(lmx_shard_writer *w, char hex_sum[65], uint64_t *file_size, lmx_error *err)
{
    uint64_t docs_off = 0, str_off = 0, ids_off = 0, size = write_sections(w, &docs_off, &str_off, &ids_off);
    if (size != 0)
        spill_close(w); /* copied: their space goes back now */
    if (size == 0 || write_header(w, docs_off, str_off, ids_off, size) != 0 || hash_written(w->tmp_path, size, hex_sum) != 0 ||
        rename(w->tmp_path, w->final_path) != 0) {
        lmx__err_errno(err, "write %s", w->tmp_path);
        lmx__shard_abort(w);
        return LMX_EIO;
    }
    *file_size = size;
    return lmx__fsync_dir_of(w->final_path, err);
}
