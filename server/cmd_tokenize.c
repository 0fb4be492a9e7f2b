/* `longmixd tokenize`: JSON Lines with a "text" field on stdin -> one JSON array of token ids per
 * line on stdout, in input order, no special tokens added (the I/O contract of
 * ../shared/peers/hf-tokenize.js; see proto/TOKENIZER.md).
 *
 * The main thread reads a batch of lines, every thread (main included) takes lines from it
 * (JSON parse + encode + format into a per-thread buffer), then the main thread writes the
 * batch in order. Lines that are empty or only whitespace produce no output line (as the peer).
 * Input that is not valid UTF-8 is decoded lossily first (U+FFFD), as node's readline does, and a
 * lone UTF-16 surrogate escape ("\ud800" without its pair), which jansson rejects, becomes U+FFFD
 * like JavaScript's JSON.parse followed by the UTF-8 conversion into HF tokenizers. */
#include "lmx_jsonl.h"
#include "lmx_tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_tokenize.h"

#define BATCH_BYTES (32u << 20)
#define BATCH_LINES 16384u
#define MAX_THREADS 256

static const char USAGE[] =
    "usage: longmixd tokenize --tokenizer FILE|bytes [--threads N] [--match-added-tokens]\n"
    "\n"
    "Reads JSON Lines with a \"text\" field on stdin and writes one JSON array of token ids per\n"
    "line on stdout, in input order, without special tokens (same contract as the reference\n"
    "hf-tokenize.js). Blank lines are skipped.\n"
    "\n"
    "  --tokenizer FILE      HuggingFace tokenizer.json (BPE family), or 'bytes'\n"
    "  --threads N           worker threads (default: online CPUs)\n"
    "  --match-added-tokens  match added/special tokens (\"<s>\", \"<|begin_of_text|>\") inside\n"
    "                        the text and emit their ids, exactly like HF encode(); by default\n"
    "                        they are tokenized as plain text so documents cannot inject\n"
    "                        control tokens\n"
    "  --help                this text\n";

typedef struct line_ref {
    size_t off, len;   /* in the batch arena */
    uint64_t lineno;   /* 1-based input line number */
    int out_thread;    /* which worker formatted it */
    size_t out_off, out_len;
} line_ref;

typedef struct worker worker;
typedef struct shared {
    const lmx_tokenizer *tok;
    lmx_buf arena;
    line_ref *lines;
    size_t nlines, lines_cap;
    atomic_size_t next;
    atomic_int failed;
    uint64_t fail_line;
    char fail_msg[LMX_ERROR_MESSAGE_MAX + 64];
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    uint64_t generation;
    int pending, quit;
    int nthreads;
    worker *workers;
} shared;

struct worker {
    shared *sh;
    int index;
    lmx_encoder *enc;
    lmx_ids ids;
    lmx_buf out;
    lmx_buf fix; /* lossy UTF-8 repair of a line */
    lmx_buf txt; /* decoded "text" (fast path, lmx__jsonl_fast) */
    pthread_t th;
};

static void fail(shared *sh, uint64_t lineno, const char *msg)
{
    pthread_mutex_lock(&sh->mu);
    if (!atomic_load(&sh->failed) || lineno < sh->fail_line) {
        sh->fail_line = lineno;
        snprintf(sh->fail_msg, sizeof sh->fail_msg, "%s", msg);
    }
    atomic_store(&sh->failed, 1);
    pthread_mutex_unlock(&sh->mu);
}

/* Output formatting is a visible share of the whole command (a token costs ~4 bytes of input,
 * ~6 of output), so ids are written from tables of 4-digit groups: dig_pad[g] is g as 4 digits,
 * dig_left[g] the same without leading zeros, left-aligned, dig_len[g] its length. Built once
 * before the workers start (fmt_init). */
static char dig_pad[10000][4], dig_left[10000][4];
static uint8_t dig_len[10000];

static void fmt_init(void)
{
    for (int g = 0; g < 10000; g++) {
        char t[4] = {(char)('0' + g / 1000), (char)('0' + g / 100 % 10), (char)('0' + g / 10 % 10),
                     (char)('0' + g % 10)};
        int skip = g >= 1000 ? 0 : g >= 100 ? 1 : g >= 10 ? 2 : 3;
        memcpy(dig_pad[g], t, 4);
        memset(dig_left[g], 0, 4);
        memcpy(dig_left[g], t + skip, (size_t)(4 - skip));
        dig_len[g] = (uint8_t)(4 - skip);
    }
}

/* Decimal digits of v at p; returns the end. Writes up to 8 bytes past the digits' start even
 * for short numbers (fixed-size copies; the caller reserves 11 bytes per id). */
static char *fmt_u32(char *p, uint32_t v)
{
    if (v < 10000) {
        memcpy(p, dig_left[v], 4);
        return p + dig_len[v];
    }
    if (v < 100000000) {
        uint32_t hi = v / 10000, lo = v % 10000;
        memcpy(p, dig_left[hi], 4);
        p += dig_len[hi];
        memcpy(p, dig_pad[lo], 4);
        return p + 4;
    }
    uint32_t hi = v / 100000000, mid = v / 10000 % 10000, lo = v % 10000;
    memcpy(p, dig_left[hi], 4);
    p += dig_len[hi];
    memcpy(p, dig_pad[mid], 4);
    memcpy(p + 4, dig_pad[lo], 4);
    return p + 8;
}

/* Value of the \uXXXX escape at s[i] (s[i] == '\\'), or -1. */
static long uesc(const char *s, size_t n, size_t i)
{
    if (i + 6 > n || s[i] != '\\' || s[i + 1] != 'u')
        return -1;
    long v = 0;
    for (int k = 2; k < 6; k++) {
        int h = lmx__hexval((unsigned char)s[i + (size_t)k]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Rewrites, in place, each escape of a lone UTF-16 surrogate in JSON text s[0..n) to \uFFFD (the
 * same length); returns how many were rewritten. Escaped backslashes are skipped as pairs, so
 * "\\\\ud800" (a backslash then the text "ud800") is left alone. */
static size_t fix_lone_surrogates(char *s, size_t n)
{
    size_t fixed = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\')
            continue;
        long v = uesc(s, n, i);
        if (v < 0) {
            i++; /* skip the escaped char (\\, \", \n, ...) */
            continue;
        }
        if (v >= 0xD800 && v <= 0xDBFF) {
            long lo = uesc(s, n, i + 6);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                i += 11;
                continue;
            }
        } else if (!(v >= 0xDC00 && v <= 0xDFFF)) {
            i += 5;
            continue;
        }
        memcpy(s + i, "\\uFFFD", 6);
        fixed++;
        i += 5;
    }
    return fixed;
}

/* General path: jansson, with lone surrogate escapes rewritten to U+FFFD. Returns the root (the
 * caller decrefs) with *text set, or NULL after reporting the error. */
static json_t *parse_line(worker *w, line_ref *L, const char *s, size_t n, json_t **textp)
{
    shared *sh = w->sh;
    char msg[LMX_ERROR_MESSAGE_MAX + 64];
    json_error_t jerr;
    json_t *root = json_loadb(s, n, JSON_ALLOW_NUL, &jerr);
    if (!root && strstr(jerr.text, "invalid Unicode")) {
        if (s != (const char *)w->fix.data) {
            w->fix.len = 0;
            if (lmx__buf_append(&w->fix, s, n) != LMX_OK) {
                fail(sh, L->lineno, "out of memory");
                return NULL;
            }
            s = (const char *)w->fix.data;
        }
        if (fix_lone_surrogates((char *)w->fix.data, n))
            root = json_loadb(s, n, JSON_ALLOW_NUL, &jerr);
    }
    if (!root) {
        snprintf(msg, sizeof msg, "invalid JSON at column %d: %s", jerr.column, jerr.text);
        fail(sh, L->lineno, msg);
        return NULL;
    }
    json_t *text = json_is_object(root) ? json_object_get(root, "text") : NULL;
    if (!json_is_string(text)) {
        json_decref(root);
        fail(sh, L->lineno, "no string field \"text\"");
        return NULL;
    }
    *textp = text;
    return root;
}

static void do_line(worker *w, line_ref *L)
{
    shared *sh = w->sh;
    const char *s = (const char *)sh->arena.data + L->off;
    size_t n = L->len;
    lmx_error err = {0};
    w->ids.n = 0;
    int rc;
    /* The fast path (lmx_jsonl.h) takes the common line {"text": "...", ...} without jansson.
     * It runs on the raw line: invalid UTF-8 inside the text reaches lmx__encode,
     * which repairs it exactly as repairing the line first would (an escape always decodes to
     * whole chars, so it never extends or splits an invalid sequence), and syntax does not
     * depend on non-ASCII bytes. */
    if (lmx__jsonl_fast(s, n, 0, NULL, &w->txt, NULL, NULL)) {
        rc = lmx__encode(w->enc, (const char *)w->txt.data, w->txt.len, &w->ids, &err);
        goto encoded;
    }
    if (lmx__utf8_valid_prefix((const uint8_t *)s, n) != n) {
        w->fix.len = 0;
        if (lmx__utf8_lossy((const uint8_t *)s, n, &w->fix) != LMX_OK) {
            fail(sh, L->lineno, "out of memory");
            return;
        }
        s = (const char *)w->fix.data;
        n = w->fix.len;
    }
    if (lmx__jsonl_fast(s, n, 0, NULL, &w->txt, NULL, NULL)) {
        rc = lmx__encode(w->enc, (const char *)w->txt.data, w->txt.len, &w->ids, &err);
    } else {
        json_t *text = NULL, *root = parse_line(w, L, s, n, &text);
        if (!root)
            return;
        rc = lmx__encode(w->enc, json_string_value(text), json_string_length(text), &w->ids, &err);
        json_decref(root);
    }
encoded:
    if (rc) {
        fail(sh, L->lineno, err.message);
        return;
    }
    if (lmx__buf_reserve(&w->out, w->ids.n * 11 + 3) != LMX_OK) {
        fail(sh, L->lineno, "out of memory formatting ids");
        return;
    }
    char *p = (char *)w->out.data + w->out.len, *p0 = p;
    *p++ = '[';
    for (size_t i = 0; i < w->ids.n; i++) {
        if (i)
            *p++ = ',';
        p = fmt_u32(p, w->ids.v[i]);
    }
    *p++ = ']';
    *p++ = '\n';
    L->out_thread = w->index;
    L->out_off = w->out.len;
    L->out_len = (size_t)(p - p0);
    w->out.len += L->out_len;
}

static void run_batch_part(worker *w)
{
    shared *sh = w->sh;
    for (;;) {
        size_t i = atomic_fetch_add(&sh->next, 1);
        if (i >= sh->nlines || atomic_load(&sh->failed))
            break;
        do_line(w, &sh->lines[i]);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&sh->mu);
        while (!sh->quit && sh->generation == seen)
            pthread_cond_wait(&sh->cv_start, &sh->mu);
        if (sh->quit) {
            pthread_mutex_unlock(&sh->mu);
            return NULL;
        }
        seen = sh->generation;
        pthread_mutex_unlock(&sh->mu);
        run_batch_part(w);
        pthread_mutex_lock(&sh->mu);
        if (--sh->pending == 0)
            pthread_cond_signal(&sh->cv_done);
        pthread_mutex_unlock(&sh->mu);
    }
}

/* Runs the current batch on all threads and writes it; returns 0 or 1 (error reported). */
static int process_batch(shared *sh)
{
    for (int t = 0; t < sh->nthreads; t++)
        sh->workers[t].out.len = 0;
    atomic_store(&sh->next, 0);
    pthread_mutex_lock(&sh->mu);
    sh->pending = sh->nthreads - 1;
    sh->generation++;
    pthread_cond_broadcast(&sh->cv_start);
    pthread_mutex_unlock(&sh->mu);
    run_batch_part(&sh->workers[0]);
    pthread_mutex_lock(&sh->mu);
    while (sh->pending)
        pthread_cond_wait(&sh->cv_done, &sh->mu);
    pthread_mutex_unlock(&sh->mu);
    if (atomic_load(&sh->failed)) {
        fprintf(stderr, "longmixd tokenize: stdin line %llu: %s\n",
                (unsigned long long)sh->fail_line, sh->fail_msg);
        return 1;
    }
    for (size_t i = 0; i < sh->nlines; i++) {
        const line_ref *L = &sh->lines[i];
        if (fwrite(sh->workers[L->out_thread].out.data + L->out_off, 1, L->out_len, stdout) !=
            L->out_len) {
            fprintf(stderr, "longmixd tokenize: writing stdout: %s\n", strerror(errno));
            return 1;
        }
    }
    sh->nlines = 0;
    sh->arena.len = 0;
    return 0;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' || s[i] == '\f' ||
              s[i] == '\v'))
            return 0;
    return 1;
}

int lmxd_cmd_tokenize(int argc, char **argv)
{
    const char *tokpath = NULL;
    long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
    lmx_tokenizer_options opts = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(a, "--tokenizer") == 0 && i + 1 < argc) {
            tokpath = argv[++i];
        } else if (strncmp(a, "--tokenizer=", 12) == 0) {
            tokpath = a + 12;
        } else if ((strcmp(a, "--threads") == 0 && i + 1 < argc) || strncmp(a, "--threads=", 10) == 0) {
            const char *v = a[9] == '=' ? a + 10 : argv[++i];
            uint64_t n;
            if (lmx__parse_u64(v, MAX_THREADS, &n) != 0 || n == 0) {
                fprintf(stderr, "longmixd tokenize: --threads: expected 1..%d, got '%s'\n",
                        MAX_THREADS, v);
                return 2;
            }
            nthreads = (long)n;
        } else if (strcmp(a, "--match-added-tokens") == 0) {
            opts.match_added_tokens = 1;
        } else {
            fprintf(stderr, "longmixd tokenize: unknown or incomplete argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!tokpath) {
        fprintf(stderr, "longmixd tokenize: --tokenizer FILE is required (see --help)\n");
        return 2;
    }
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > MAX_THREADS)
        nthreads = MAX_THREADS;

    fmt_init();
    lmx_error err = {0};
    lmx_tokenizer *tok = NULL;
    if (lmx__tokenizer_open(tokpath, &opts, &tok, &err) != LMX_OK) {
        fprintf(stderr, "longmixd tokenize: %s\n", err.message);
        return 1;
    }
    shared sh;
    memset(&sh, 0, sizeof sh);
    sh.tok = tok;
    sh.nthreads = (int)nthreads;
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv_start, NULL);
    pthread_cond_init(&sh.cv_done, NULL);
    sh.workers = calloc((size_t)nthreads, sizeof *sh.workers);
    int rc = 0, started = 0;
    if (!sh.workers) {
        fprintf(stderr, "longmixd tokenize: out of memory\n");
        rc = 1;
        goto out;
    }
    for (int t = 0; t < sh.nthreads; t++) {
        worker *w = &sh.workers[t];
        w->sh = &sh;
        w->index = t;
        if (lmx__encoder_create(tok, &w->enc, &err) != LMX_OK) {
            fprintf(stderr, "longmixd tokenize: %s\n", err.message);
            rc = 1;
            goto out;
        }
    }
    for (int t = 1; t < sh.nthreads; t++) {
        if (pthread_create(&sh.workers[t].th, NULL, worker_main, &sh.workers[t]) != 0) {
            fprintf(stderr, "longmixd tokenize: cannot start thread %d\n", t);
            rc = 1;
            goto out;
        }
        started = t;
    }

    static char outbuf[1 << 20];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    char *line = NULL;
    size_t cap = 0;
    uint64_t lineno = 0;
    for (;;) {
        errno = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) {
            if (ferror(stdin)) {
                fprintf(stderr, "longmixd tokenize: reading stdin: %s\n", strerror(errno));
                rc = 1;
            }
            break;
        }
        lineno++;
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n')
            len--;
        if (len && line[len - 1] == '\r')
            len--;
        if (blank(line, len))
            continue;
        if (sh.nlines == sh.lines_cap) {
            size_t nc = sh.lines_cap ? sh.lines_cap * 2 : 1024;
            line_ref *nl = realloc(sh.lines, nc * sizeof *nl);
            if (!nl) {
                fprintf(stderr, "longmixd tokenize: out of memory\n");
                rc = 1;
                break;
            }
            sh.lines = nl;
            sh.lines_cap = nc;
        }
        sh.lines[sh.nlines] = (line_ref){sh.arena.len, len, lineno, 0, 0, 0};
        if (lmx__buf_append(&sh.arena, line, len) != LMX_OK) {
            fprintf(stderr, "longmixd tokenize: stdin line %llu: out of memory\n",
                    (unsigned long long)lineno);
            rc = 1;
            break;
        }
        sh.nlines++;
        if ((sh.arena.len >= BATCH_BYTES || sh.nlines >= BATCH_LINES) && (rc = process_batch(&sh)))
            break;
    }
    free(line);
    if (!rc && sh.nlines)
        rc = process_batch(&sh);
    if (!rc && fflush(stdout) != 0) {
        fprintf(stderr, "longmixd tokenize: writing stdout: %s\n", strerror(errno));
        rc = 1;
    }
out:
    pthread_mutex_lock(&sh.mu);
    sh.quit = 1;
    pthread_cond_broadcast(&sh.cv_start);
    pthread_mutex_unlock(&sh.mu);
    for (int t = 1; t <= started; t++)
        pthread_join(sh.workers[t].th, NULL);
    for (int t = 0; sh.workers && t < sh.nthreads; t++) {
        lmx__encoder_free(sh.workers[t].enc);
        lmx__ids_free(&sh.workers[t].ids);
        lmx__buf_free(&sh.workers[t].out);
        lmx__buf_free(&sh.workers[t].fix);
        lmx__buf_free(&sh.workers[t].txt);
    }
    free(sh.workers);
    free(sh.lines);
    lmx__buf_free(&sh.arena);
    pthread_mutex_destroy(&sh.mu);
    pthread_cond_destroy(&sh.cv_start);
    pthread_cond_destroy(&sh.cv_done);
    lmx__tokenizer_free(tok);
    return rc;
}
