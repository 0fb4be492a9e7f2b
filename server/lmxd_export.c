/* longmixd export: a plan's first N steps written to files for trainers that cannot reach a data
 * node (proto/EXPORT.md): Megatron-LM .bin/.idx or NumPy arrays, plus a manifest. Every output is
 * built as PREFIX.<file>.partial, appended step by step; PREFIX.export-progress.json (written
 * atomically after an fsync of the partials) records how far they are valid, so a killed export
 * is finished by running the same command again. At the end the partials get their headers, are
 * fsynced and renamed, and the manifest (last, atomically) records each file's BLAKE2b-256; a
 * rerun over a finished export re-reads and verifies every file. */
#define _POSIX_C_SOURCE 200809L
#include "lmxd_export.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmx_index.h"
#include "lmx_plan.h"
#include "lmx_util.h"
#include "lmx_wire.h"
#include "lmxd_config.h"

#define EXPORT_FORMAT "longmix-export"
#define EXPORT_VERSION 1
#define NPY_HEADER 128 /* bytes reserved for a .npy header (magic, version, length, dict, padding) */
#define SYNC_EVERY 64  /* steps between progress records */
#define MAX_STREAMS 5
#define MEGA_MAX_TOKENS 2147483647ull /* one Megatron sequence: int32 length */

typedef struct stream {
    const char *name;  /* file suffix: "bin", "tokens.npy", ... */
    const char *descr; /* numpy dtype for .npy ("<u2"), NULL for raw */
    int fd;
    uint64_t len;      /* bytes valid in the partial */
    uint64_t items;    /* elements written (npy shape) */
    lmx_buf pending;   /* appended, not yet written */
} stream;

typedef struct exporter {
    const char *prefix, *format, *plan_name;
    int megatron;
    uint64_t steps, done;
    uint32_t last_next; /* next token of the last exported sequence (megatron: the final label) */
    lmx_plan *plan;
    uint32_t seq_len, gb, token_bytes;
    stream s[MAX_STREAMS];
    int n;
} exporter;

static void path_of(const exporter *x, const char *suffix, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%s", x->prefix, suffix);
}

static int errno_err(lmx_error *err, const char *what, const char *path)
{
    return lmx__err(err, LMX_EIO, "%s %s: %s", what, path, strerror(errno));
}

static int write_all(int fd, const void *p, size_t n, const char *path, lmx_error *err)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return errno_err(err, "cannot write", path);
        b += w;
        n -= (size_t)w;
    }
    return LMX_OK;
}

static int flush_stream(exporter *x, stream *s, lmx_error *err)
{
    char p[4200];
    path_of(x, s->name, p, sizeof p);
    strcat(p, ".partial");
    if (s->pending.len && write_all(s->fd, s->pending.data, s->pending.len, p, err))
        return err->code;
    s->len += s->pending.len;
    s->pending.len = 0;
    return LMX_OK;
}

static int put(stream *s, const void *p, size_t n, lmx_error *err)
{
    if (lmx__buf_append(&s->pending, p, n) != LMX_OK)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    return LMX_OK;
}

static int put_u32(stream *s, uint32_t v, lmx_error *err)
{
    uint8_t b[4];
    lmx__put32(b, v);
    s->items++;
    return put(s, b, 4, err);
}

static int put_i64(stream *s, uint64_t v, lmx_error *err)
{
    uint8_t b[8];
    lmx__put64(b, v);
    s->items++;
    return put(s, b, 8, err);
}

/* ---- progress ---- */

static int save_progress(exporter *x, lmx_error *err)
{
    for (int i = 0; i < x->n; i++) {
        if (flush_stream(x, &x->s[i], err))
            return err->code;
        if (fsync(x->s[i].fd) != 0)
            return errno_err(err, "cannot fsync the partial of", x->s[i].name);
    }
    json_t *o = json_object(), *lens = json_object(), *items = json_object();
    json_object_set_new(o, "plan_id", json_string(lmx__plan_id_hex(x->plan)));
    json_object_set_new(o, "format", json_string(x->format));
    json_object_set_new(o, "steps", json_integer((json_int_t)x->steps));
    json_object_set_new(o, "done", json_integer((json_int_t)x->done));
    json_object_set_new(o, "last_next", json_integer(x->last_next));
    for (int i = 0; i < x->n; i++) {
        json_object_set_new(lens, x->s[i].name, json_integer((json_int_t)x->s[i].len));
        json_object_set_new(items, x->s[i].name, json_integer((json_int_t)x->s[i].items));
    }
    json_object_set_new(o, "bytes", lens);
    json_object_set_new(o, "items", items);
    char *txt = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    char p[4200];
    path_of(x, "export-progress.json", p, sizeof p);
    int rc = txt ? lmx__write_file_atomic(p, txt, strlen(txt), err) : lmx__err(err, LMX_ENOMEM, "out of memory");
    free(txt);
    return rc;
}

/* Opens the partials: resumed at the recorded lengths when a progress record of the same plan,
 * format and steps exists, else from the start. */
static int open_streams(exporter *x, lmx_error *err)
{
    char p[4200];
    path_of(x, "export-progress.json", p, sizeof p);
    json_t *prog = json_load_file(p, 0, NULL);
    int resume = prog && json_is_string(json_object_get(prog, "plan_id")) &&
                 strcmp(json_string_value(json_object_get(prog, "plan_id")), lmx__plan_id_hex(x->plan)) == 0 &&
                 json_is_string(json_object_get(prog, "format")) &&
                 strcmp(json_string_value(json_object_get(prog, "format")), x->format) == 0 &&
                 (uint64_t)json_integer_value(json_object_get(prog, "steps")) == x->steps;
    /* every partial at least as long as recorded (fsynced before the record), else start over */
    for (int i = 0; resume && i < x->n; i++) {
        json_t *b = json_object_get(json_object_get(prog, "bytes"), x->s[i].name);
        json_t *it = json_object_get(json_object_get(prog, "items"), x->s[i].name);
        struct stat st;
        path_of(x, x->s[i].name, p, sizeof p);
        strcat(p, ".partial");
        resume = json_is_integer(b) && json_is_integer(it) && stat(p, &st) == 0 &&
                 (uint64_t)st.st_size >= (uint64_t)json_integer_value(b);
        if (resume) {
            x->s[i].len = (uint64_t)json_integer_value(b);
            x->s[i].items = (uint64_t)json_integer_value(it);
        }
    }
    if (resume) {
        x->done = (uint64_t)json_integer_value(json_object_get(prog, "done"));
        x->last_next = (uint32_t)json_integer_value(json_object_get(prog, "last_next"));
    }
    int rc = LMX_OK;
    for (int i = 0; rc == LMX_OK && i < x->n; i++) {
        stream *s = &x->s[i];
        path_of(x, s->name, p, sizeof p);
        strcat(p, ".partial");
        if ((s->fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
            rc = errno_err(err, "cannot open", p);
            break;
        }
        if (!resume) { /* .npy: the header is written at the end; zeros until then */
            s->len = s->descr ? NPY_HEADER : 0;
            s->items = 0;
        }
        if (ftruncate(s->fd, (off_t)(resume ? s->len : 0)) != 0 || lseek(s->fd, 0, SEEK_SET) < 0) {
            rc = errno_err(err, "cannot truncate", p);
            break;
        }
        if (!resume && s->descr) {
            uint8_t z[NPY_HEADER] = {0};
            if ((rc = write_all(s->fd, z, sizeof z, p, err)))
                break;
        }
        if (lseek(s->fd, (off_t)s->len, SEEK_SET) < 0)
            rc = errno_err(err, "cannot seek in", p);
    }
    json_decref(prog);
    if (rc == LMX_OK && resume && x->done)
        fprintf(stderr, "longmixd export: resuming at step %llu of %llu\n", (unsigned long long)x->done,
                (unsigned long long)x->steps);
    return rc;
}

/* ---- one step ---- */

/* A damaged document record read since lmx__gate_begin (the plan code does not look at the
 * reader's errors; the reader notes them as the thread's fault): rc, or the record's error. */
static int record_check(int rc, lmx_error *err)
{
    int fault = lmx__gate_end(NULL);
    if (fault == LMX_EFORMAT)
        return lmx__err(err, LMX_EFORMAT, "%s", lmx__gate_fault_message());
    return rc;
}

static int export_step(exporter *x, uint64_t step, lmx_buf *body, lmx_error *err)
{
    lmx__gate_begin();
    int rc = record_check(lmx__plan_batch(x->plan, step, 0, 1, body, err), err);
    lmx_wire_view v;
    if (rc || (rc = lmx__wire_parse(body->data, body->len, &v, err)))
        return rc;
    stream *tok = &x->s[0];
    /* The wire's tokens are little endian token_bytes each: the bytes of both formats. */
    rc = put(tok, body->data + v.at.tokens, (size_t)v.h.n_seqs * v.h.seq_len * v.h.token_bytes, err);
    tok->items += (uint64_t)v.h.n_seqs * v.h.seq_len;
    for (uint32_t s = 0; rc == LMX_OK && s < v.h.n_seqs; s++) {
        x->last_next = lmx__wire_next_token(&v, s);
        if (x->megatron)
            continue;
        rc = put_u32(&x->s[1], x->last_next, err);
        uint32_t a, e;
        lmx__wire_seq_cu(&v, s, &a, &e);
        if (e == a) { /* the plan has cu_seqlens off: one segment */
            rc = rc ? rc : put_u32(&x->s[2], v.h.seq_len, err);
        } else {
            for (uint32_t i = a + 1; rc == LMX_OK && i < e; i++)
                rc = put_u32(&x->s[2], (uint32_t)(lmx__wire_cu(&v, i) - lmx__wire_cu(&v, i - 1)), err);
        }
        rc = rc ? rc : put_i64(&x->s[3], x->s[2].items, err); /* prefix count after this sequence */
    }
    return rc;
}

/* ---- finishing ---- */

static int npy_header(const stream *s, uint64_t rows, uint64_t cols, uint8_t out[NPY_HEADER], lmx_error *err)
{
    char dict[NPY_HEADER];
    int n = cols ? snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%llu, %llu), }",
                            s->descr, (unsigned long long)rows, (unsigned long long)cols)
                 : snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%llu,), }", s->descr,
                            (unsigned long long)rows);
    if (n < 0 || n > NPY_HEADER - 11)
        return lmx__err(err, LMX_EINTERNAL, ".npy header too long");
    /* NumPy format 1.0: magic, version, u16 header length; dict padded with spaces, ends in \n */
    memset(out, ' ', NPY_HEADER);
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    lmx__put16(out + 8, NPY_HEADER - 10);
    memcpy(out + 10, dict, (size_t)n);
    out[NPY_HEADER - 1] = '\n';
    return LMX_OK;
}

/* Megatron MMIDIDX version 1: one sequence (and one document) holding the whole stream, so that
 * GPTDataset's document shuffle has nothing to reorder (proto/EXPORT.md). */
static int write_megatron_idx(exporter *x, uint64_t n_tokens, lmx_error *err)
{
    uint8_t idx[34 + 4 + 8 + 16];
    memcpy(idx, "MMIDIDX\0\0", 9);
    lmx__put64(idx + 9, 1);
    idx[17] = x->token_bytes == 2 ? 8 : 4; /* uint16 or int32 */
    lmx__put64(idx + 18, 1);               /* sequences */
    lmx__put64(idx + 26, 2);               /* document_indices entries */
    lmx__put32(idx + 34, (uint32_t)n_tokens);
    lmx__put64(idx + 38, 0);               /* byte offset of the sequence in .bin */
    lmx__put64(idx + 46, 0);
    lmx__put64(idx + 54, 1);
    char p[4200];
    path_of(x, "idx", p, sizeof p);
    return lmx__write_file_atomic(p, idx, sizeof idx, err);
}

static int file_digest(const char *path, char hex[65], uint64_t *size, lmx_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno_err(err, "cannot read", path);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    static uint8_t buf[1 << 20];
    size_t n;
    *size = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        crypto_generichash_update(&st, buf, n);
        *size += n;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return errno_err(err, "cannot read", path);
    uint8_t h[32];
    crypto_generichash_final(&st, h, sizeof h);
    lmx__hex(h, sizeof h, hex);
    return LMX_OK;
}

static int finish(exporter *x, const lmx_index *ix, lmx_error *err)
{
    int rc = LMX_OK;
    uint64_t n_seqs = x->steps * x->gb;
    if (x->megatron) { /* the final label: the token after the last sequence */
        uint8_t t[4];
        lmx__put32(t, x->last_next);
        rc = put(&x->s[0], t, x->token_bytes, err);
        x->s[0].items++;
    }
    for (int i = 0; rc == LMX_OK && i < x->n; i++)
        rc = flush_stream(x, &x->s[i], err);
    for (int i = 0; rc == LMX_OK && i < x->n; i++) {
        stream *s = &x->s[i];
        char p[4200], q[4200];
        path_of(x, s->name, q, sizeof q);
        snprintf(p, sizeof p, "%s.partial", q);
        if (s->descr) {
            uint8_t h[NPY_HEADER];
            uint64_t rows = i == 0 ? n_seqs : s->items, cols = i == 0 ? x->seq_len : 0;
            if ((rc = npy_header(s, rows, cols, h, err)))
                break;
            if (pwrite(s->fd, h, sizeof h, 0) != (ssize_t)sizeof h) {
                rc = errno_err(err, "cannot write", p);
                break;
            }
        }
        if (fsync(s->fd) != 0 || close(s->fd) != 0) {
            s->fd = -1;
            rc = errno_err(err, "cannot fsync", p);
            break;
        }
        s->fd = -1;
        if (rename(p, q) != 0)
            rc = errno_err(err, "cannot rename to", q);
    }
    if (rc == LMX_OK && x->megatron)
        rc = write_megatron_idx(x, x->s[0].items, err);
    /* the manifest, last: each file's size and BLAKE2b read back from disk */
    json_t *m = json_object(), *files = json_object();
    json_object_set_new(m, "format", json_string(EXPORT_FORMAT));
    json_object_set_new(m, "version", json_integer(EXPORT_VERSION));
    json_object_set_new(m, "export_format", json_string(x->format));
    json_object_set_new(m, "plan", json_string(x->plan_name));
    json_object_set_new(m, "plan_id", json_string(lmx__plan_id_hex(x->plan)));
    json_object_set_new(m, "index_id", json_string(lmx__index_identity(ix)));
    json_object_set_new(m, "spec", lmx__plan_spec_json(lmx__plan_spec(x->plan)));
    json_object_set_new(m, "steps", json_integer((json_int_t)x->steps));
    json_object_set_new(m, "first_step", json_integer(0));
    json_object_set_new(m, "seq_len", json_integer(x->seq_len));
    json_object_set_new(m, "global_batch", json_integer(x->gb));
    json_object_set_new(m, "sequences", json_integer((json_int_t)n_seqs));
    json_object_set_new(m, "token_bytes", json_integer(x->token_bytes));
    const char *names[MAX_STREAMS + 1];
    int nn = 0;
    for (int i = 0; i < x->n; i++)
        names[nn++] = x->s[i].name;
    if (x->megatron)
        names[nn++] = "idx";
    for (int i = 0; rc == LMX_OK && i < nn; i++) {
        char p[4200], hex[65];
        uint64_t size;
        path_of(x, names[i], p, sizeof p);
        if ((rc = file_digest(p, hex, &size, err)))
            break;
        json_t *f = json_object();
        const char *base = strrchr(p, '/');
        json_object_set_new(f, "bytes", json_integer((json_int_t)size));
        json_object_set_new(f, "blake2b", json_string(hex));
        json_object_set_new(files, base ? base + 1 : p, f);
    }
    json_object_set_new(m, "files", files);
    char *txt = rc == LMX_OK ? json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    json_decref(m);
    if (rc == LMX_OK && !txt)
        rc = lmx__err(err, LMX_ENOMEM, "out of memory");
    char p[4200];
    path_of(x, "manifest.json", p, sizeof p);
    if (rc == LMX_OK)
        rc = lmx__write_file_atomic(p, txt, strlen(txt), err);
    free(txt);
    if (rc == LMX_OK) {
        path_of(x, "export-progress.json", p, sizeof p);
        unlink(p);
        rc = lmx__fsync_dir_of(p, err);
    }
    return rc;
}

/* A finished export (manifest present) is verified, not redone: every file's size and BLAKE2b. */
static int verify_existing(exporter *x, json_t *m, lmx_error *err)
{
    const char *id = json_string_value(json_object_get(m, "plan_id"));
    const char *fmt = json_string_value(json_object_get(m, "export_format"));
    if (!id || !fmt || strcmp(id, lmx__plan_id_hex(x->plan)) != 0 || strcmp(fmt, x->format) != 0 ||
        (uint64_t)json_integer_value(json_object_get(m, "steps")) != x->steps)
        return lmx__err(err, LMX_EINVAL,
                        "%s.manifest.json is a finished export of another plan id, format or step count; "
                        "remove it (and its files) or choose another --out", x->prefix);
    const char *name;
    json_t *f;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", x->prefix);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = '\0';
    else
        dir[0] = '\0';
    json_object_foreach(json_object_get(m, "files"), name, f)
    {
        char p[4400], hex[65];
        uint64_t size;
        snprintf(p, sizeof p, "%s%s", dir, name);
        int rc = file_digest(p, hex, &size, err);
        if (rc)
            return rc;
        const char *want = json_string_value(json_object_get(f, "blake2b"));
        if (size != (uint64_t)json_integer_value(json_object_get(f, "bytes")) || !want || strcmp(want, hex) != 0)
            return lmx__err(err, LMX_ECHECKSUM, "%s: size or BLAKE2b differs from the manifest (damaged)", p);
    }
    return LMX_OK;
}

static const char usage[] =
    "usage: longmixd export --config FILE --plan NAME --steps N --format megatron|npy --out PREFIX\n"
    "\n"
    "Writes the plan's first N steps (all ranks: global_batch sequences a step, in order) to files\n"
    "(proto/EXPORT.md) and PREFIX.manifest.json naming the plan id and each file's BLAKE2b-256.\n"
    "  megatron  PREFIX.bin + PREFIX.idx (MMIDIDX v1): one sequence holding the stream, so that\n"
    "            Megatron's GPTDataset with --seq-length = the plan's seq_len yields the plan's\n"
    "            sequences and labels (at most 2^31-1 tokens)\n"
    "  npy       PREFIX.tokens.npy [sequences, seq_len], PREFIX.next_tokens.npy, PREFIX.doc_lens.npy\n"
    "            (segment lengths) and PREFIX.doc_index.npy (prefix counts per sequence)\n"
    "A killed export is finished by running the same command again; on a finished one the\n"
    "command verifies the files against the manifest.\n";

int lmxd_cmd_export(int argc, char **argv)
{
    static const struct option lo[] = {{"config", 1, 0, 'c'}, {"plan", 1, 0, 'p'}, {"steps", 1, 0, 'n'},
                                       {"format", 1, 0, 'f'}, {"out", 1, 0, 'o'},  {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *config = NULL, *steps_s = NULL;
    exporter x;
    memset(&x, 0, sizeof x);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'p': x.plan_name = optarg; break;
        case 'n': steps_s = optarg; break;
        case 'f': x.format = optarg; break;
        case 'o': x.prefix = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fprintf(stderr, "longmixd export: unknown option (see longmixd export --help)\n"); return 2;
        }
    }
    if (!config || !x.plan_name || !steps_s || !x.format || !x.prefix || optind < argc) {
        fprintf(stderr, "longmixd export: --config, --plan, --steps, --format and --out are required (see --help)\n");
        return 2;
    }
    if (lmx__parse_u64(steps_s, UINT64_MAX >> 2, &x.steps) != 0 || x.steps == 0) {
        fprintf(stderr, "longmixd export: --steps must be an integer >= 1, got '%s'\n", steps_s);
        return 2;
    }
    if (strcmp(x.format, "megatron") != 0 && strcmp(x.format, "npy") != 0) {
        fprintf(stderr, "longmixd export: --format must be megatron or npy, got '%s'\n", x.format);
        return 2;
    }
    x.megatron = strcmp(x.format, "megatron") == 0;
    if (sodium_init() < 0) {
        fprintf(stderr, "longmixd export: libsodium failed to initialize\n");
        return 1;
    }
    lmx_error e = {0};
    lmxd_config cfg;
    memset(&cfg, 0, sizeof cfg);
    lmx_index *ix = NULL;
    lmx_buf body = {0};
    json_t *manifest = NULL;
    int rc = lmxd_config_load(config, &cfg, &e);
    const lmxd_plan_cfg *pc = NULL;
    for (size_t i = 0; rc == LMX_OK && i < cfg.n_plans; i++)
        if (strcmp(cfg.plans[i].name, x.plan_name) == 0)
            pc = &cfg.plans[i];
    if (rc == LMX_OK && !pc)
        rc = lmx__err(&e, LMX_ENOTFOUND, "%s has no plan named '%s'", config, x.plan_name);
    if (rc == LMX_OK)
        rc = lmx__index_open(cfg.index_dir, &ix, &e);
    /* The export formats hold plain token streams and document lengths: no place for pads. */
    if (rc == LMX_OK && pc->spec.pad_multiple > 1)
        rc = lmx__err(&e, LMX_EUNSUPPORTED, "plans.%s.pad_multiple: padded plans are not exported (serve them)", pc->name);
    if (rc == LMX_OK) {
        lmx__gate_begin();
        rc = record_check(lmx__plan_create(ix, pc->name, &pc->spec, NULL, &x.plan, &e), &e);
    }
    if (rc == LMX_OK) {
        x.seq_len = pc->spec.seq_len;
        x.gb = pc->spec.global_batch;
        x.token_bytes = lmx__index_token_bytes(ix);
        if (x.steps > lmx__plan_max_steps(x.plan))
            rc = lmx__err(&e, LMX_ERANGE, "--steps %llu is past the plan's end (%llu steps)",
                          (unsigned long long)x.steps, (unsigned long long)lmx__plan_max_steps(x.plan));
        else if (x.steps > (UINT64_MAX >> 2) / ((uint64_t)x.gb * x.seq_len))
            rc = lmx__err(&e, LMX_ERANGE, "--steps %llu is too large", (unsigned long long)x.steps);
        else if (x.megatron && x.steps * x.gb * x.seq_len + 1 > MEGA_MAX_TOKENS)
            rc = lmx__err(&e, LMX_EINVAL,
                          "%llu steps are %llu tokens, over the %llu of one Megatron sequence; export "
                          "fewer steps per file or use --format npy",
                          (unsigned long long)x.steps, (unsigned long long)(x.steps * x.gb * x.seq_len + 1),
                          MEGA_MAX_TOKENS);
    }
    if (rc == LMX_OK) {
        char p[4200];
        path_of(&x, "manifest.json", p, sizeof p);
        if ((manifest = json_load_file(p, 0, NULL)) != NULL) {
            rc = verify_existing(&x, manifest, &e);
            if (rc == LMX_OK)
                printf("ok: %s is a finished export of plan %s (%s), %llu steps; every file verified\n", x.prefix,
                       x.plan_name, lmx__plan_id_hex(x.plan), (unsigned long long)x.steps);
            goto done;
        }
    }
    if (rc == LMX_OK && strrchr(x.prefix, '/')) { /* the folder of PREFIX */
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", x.prefix);
        *strrchr(dir, '/') = '\0';
        if (dir[0])
            rc = lmx__mkdirs(dir, &e);
    }
    if (rc == LMX_OK) {
        const char *tdescr = x.token_bytes == 2 ? "<u2" : "<u4";
        if (x.megatron) {
            x.s[x.n++] = (stream){.name = "bin", .fd = -1};
        } else {
            x.s[x.n++] = (stream){.name = "tokens.npy", .descr = tdescr, .fd = -1};
            x.s[x.n++] = (stream){.name = "next_tokens.npy", .descr = "<u4", .fd = -1};
            x.s[x.n++] = (stream){.name = "doc_lens.npy", .descr = "<u4", .fd = -1};
            x.s[x.n++] = (stream){.name = "doc_index.npy", .descr = "<i8", .fd = -1};
        }
        rc = open_streams(&x, &e);
        if (rc == LMX_OK && !x.megatron && x.done == 0 && x.s[3].items == 0)
            rc = put_i64(&x.s[3], 0, &e); /* doc_index starts at 0 */
    }
    for (uint64_t step = x.done; rc == LMX_OK && step < x.steps; step++) {
        rc = export_step(&x, step, &body, &e);
        x.done = step + 1;
        if (rc == LMX_OK && (x.done % SYNC_EVERY == 0 || x.done == x.steps))
            rc = save_progress(&x, &e);
    }
    if (rc == LMX_OK)
        rc = finish(&x, ix, &e);
    if (rc == LMX_OK)
        printf("ok: exported %llu steps (%llu sequences of %u tokens) of plan %s (%s) to %s.*\n",
               (unsigned long long)x.steps, (unsigned long long)(x.steps * x.gb), x.seq_len, x.plan_name,
               lmx__plan_id_hex(x.plan), x.prefix);
done:
    for (int i = 0; i < x.n; i++) {
        if (x.s[i].fd >= 0)
            close(x.s[i].fd);
        lmx__buf_free(&x.s[i].pending);
    }
    json_decref(manifest);
    lmx__buf_free(&body);
    lmx__plan_free(x.plan);
    lmx__index_close(ix);
    lmxd_config_free(&cfg);
    if (rc != LMX_OK) {
        fprintf(stderr, "longmixd export: %s\n", e.message[0] ? e.message : lmx_strerror(rc));
        return 1;
    }
    return 0;
}
