/* `longmixd tokenize`: JSON Lines with a "text" field on stdin -> one JSON array of token ids per
 * line on stdout, in input order, no special tokens added (the I/O contract of
 * ../shared/peers/hf-tokenize.js; see proto/TOKENIZER.md).
 *
 * The main thread reads batches of lines into the one line-batch worker pool (common/index/
 * lmx_pool.h); every thread (main included) takes whole batches (JSON parse + encode + format
 * into the batch's output), and the main thread writes finished batches in input order. Lines
 * that are empty or only whitespace produce no output line (as the peer).
 * Input that is not valid UTF-8 is decoded lossily first (U+FFFD), as node's readline does, and a
 * lone UTF-16 surrogate escape ("\ud800" without its pair), which jansson rejects, becomes U+FFFD
 * like JavaScript's JSON.parse followed by the UTF-8 conversion into HF tokenizers. */
#include "lmx_jsonl.h"
#include "lmx_pool.h"
#include "lmx_tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_tokenize.h"

#define BATCH_BYTES (1u << 20)
#define BATCH_LINES 1024u
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
    size_t off, len; /* in the batch's text */
    uint64_t lineno; /* 1-based input line number */
} line_ref;

/* A batch of lines; processed by one thread of the pool, written in order by the main thread. */
typedef struct batch {
    lmx_pool_item item; /* first: the pool hands it back as this batch */
    lmx_buf text;
    line_ref *lines;
    size_t n, cap;
    lmx_buf out; /* formatted ids of every line, in order */
    int failed;  /* the first failing line stops the batch */
    uint64_t fail_line;
    char fail_msg[LMX_ERROR_MESSAGE_MAX + 64];
} batch;

/* A thread's tokenizing state. */
typedef struct worker {
    lmx_pool *pool;
    pthread_t th;
    lmx_encoder *enc;
    lmx_ids ids;
    lmx_buf fix; /* lossy UTF-8 repair of a line */
    lmx_buf txt; /* decoded "text" (fast path, lmx__jsonl_fast) */
} worker;

/* The main thread's reading and writing state. */
typedef struct stdin_ctx {
    char *line;
    size_t cap;
    uint64_t lineno;
    int done; /* end of input, a read error or a failed batch */
    int rc;   /* exit status: 0, or 1 once an error was reported */
} stdin_ctx;

static void fail(batch *b, uint64_t lineno, const char *msg)
{
    b->failed = 1;
    b->fail_line = lineno;
    snprintf(b->fail_msg, sizeof b->fail_msg, "%s", msg);
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
static json_t *parse_line(worker *w, batch *b, const line_ref *L, const char *s, size_t n, json_t **textp)
{
    char msg[LMX_ERROR_MESSAGE_MAX + 64];
    json_error_t jerr;
    json_t *root = json_loadb(s, n, JSON_ALLOW_NUL, &jerr);
    if (!root && strstr(jerr.text, "invalid Unicode")) {
        if (s != (const char *)w->fix.data) {
            w->fix.len = 0;
            if (lmx__buf_append(&w->fix, s, n) != LMX_OK) {
                fail(b, L->lineno, "out of memory");
                return NULL;
            }
            s = (const char *)w->fix.data;
        }
        if (fix_lone_surrogates((char *)w->fix.data, n))
            root = json_loadb(s, n, JSON_ALLOW_NUL, &jerr);
    }
    if (!root) {
        snprintf(msg, sizeof msg, "invalid JSON at column %d: %s", jerr.column, jerr.text);
        fail(b, L->lineno, msg);
        return NULL;
    }
    json_t *text = json_is_object(root) ? json_object_get(root, "text") : NULL;
    if (!json_is_string(text)) {
        json_decref(root);
        fail(b, L->lineno, "no string field \"text\"");
        return NULL;
    }
    *textp = text;
    return root;
}

static void do_line(worker *w, batch *b, const line_ref *L)
{
    const char *s = (const char *)b->text.data + L->off;
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
            fail(b, L->lineno, "out of memory");
            return;
        }
        s = (const char *)w->fix.data;
        n = w->fix.len;
    }
    if (lmx__jsonl_fast(s, n, 0, NULL, &w->txt, NULL, NULL)) {
        rc = lmx__encode(w->enc, (const char *)w->txt.data, w->txt.len, &w->ids, &err);
    } else {
        json_t *text = NULL, *root = parse_line(w, b, L, s, n, &text);
        if (!root)
            return;
        rc = lmx__encode(w->enc, json_string_value(text), json_string_length(text), &w->ids, &err);
        json_decref(root);
    }
encoded:
    if (rc) {
        fail(b, L->lineno, err.message);
        return;
    }
    if (lmx__buf_reserve(&b->out, w->ids.n * 11 + 3) != LMX_OK) {
        fail(b, L->lineno, "out of memory formatting ids");
        return;
    }
    char *p = (char *)b->out.data + b->out.len, *p0 = p;
    *p++ = '[';
    for (size_t i = 0; i < w->ids.n; i++) {
        if (i)
            *p++ = ',';
        p = fmt_u32(p, w->ids.v[i]);
    }
    *p++ = ']';
    *p++ = '\n';
    b->out.len += (size_t)(p - p0);
}

/* The pool's work: every line of the batch, in order, until one fails. */
static void work(lmx_pool_item *it, void *arg)
{
    batch *b = (batch *)it;
    for (size_t i = 0; i < b->n && !b->failed; i++)
        do_line(arg, b, &b->lines[i]);
}

static void batch_free(batch *b)
{
    if (!b)
        return;
    lmx__buf_free(&b->text);
    lmx__buf_free(&b->out);
    free(b->lines);
    free(b);
}

static int blank(const char *s, size_t n);

/* Adds one input line to b; 0 or -1 (out of memory, reported). */
static int batch_add(batch *b, const char *line, size_t len, uint64_t lineno)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        line_ref *nl = realloc(b->lines, nc * sizeof *nl);
        if (!nl) {
            fprintf(stderr, "longmixd tokenize: out of memory\n");
            return -1;
        }
        b->lines = nl;
        b->cap = nc;
    }
    b->lines[b->n] = (line_ref){b->text.len, len, lineno};
    if (lmx__buf_append(&b->text, line, len) != LMX_OK) {
        fprintf(stderr, "longmixd tokenize: stdin line %llu: out of memory\n", (unsigned long long)lineno);
        return -1;
    }
    b->n++;
    return 0;
}

/* The pool's producer: the next batch of non-blank stdin lines, or NULL at the end. */
static lmx_pool_item *produce(void *arg)
{
    stdin_ctx *c = arg;
    batch *b = c->done ? NULL : calloc(1, sizeof *b);
    if (!b && !c->done) {
        fprintf(stderr, "longmixd tokenize: out of memory\n");
        c->rc = 1;
    }
    while (b && !c->done && b->text.len < BATCH_BYTES && b->n < BATCH_LINES) {
        errno = 0;
        ssize_t n = getline(&c->line, &c->cap, stdin);
        if (n < 0) {
            if (ferror(stdin)) {
                fprintf(stderr, "longmixd tokenize: reading stdin: %s\n", strerror(errno));
                c->rc = 1;
            }
            c->done = 1;
            break;
        }
        c->lineno++;
        size_t len = (size_t)n;
        if (len && c->line[len - 1] == '\n')
            len--;
        if (len && c->line[len - 1] == '\r')
            len--;
        if (!blank(c->line, len) && batch_add(b, c->line, len, c->lineno) != 0)
            c->rc = 1;
    }
    if (c->rc)
        c->done = 1;
    if (b && b->n == 0) {
        batch_free(b);
        b = NULL;
    }
    return b ? &b->item : NULL;
}

/* The pool's consumer (main thread, input order): writes the batch, or reports its error. */
static int consume(void *arg, lmx_pool_item *it)
{
    stdin_ctx *c = arg;
    batch *b = (batch *)it;
    if (c->rc == 0 && b->failed) {
        fprintf(stderr, "longmixd tokenize: stdin line %llu: %s\n", (unsigned long long)b->fail_line, b->fail_msg);
        c->rc = 1;
    } else if (c->rc == 0 && b->out.len && fwrite(b->out.data, 1, b->out.len, stdout) != b->out.len) {
        fprintf(stderr, "longmixd tokenize: writing stdout: %s\n", strerror(errno));
        c->rc = 1;
    }
    batch_free(b);
    c->done |= c->rc != 0;
    return c->rc != 0;
}

/* A line the reference skips: JavaScript's String.prototype.trim() leaves nothing, i.e. only
 * WhiteSpace and LineTerminator chars (\t \n \v \f \r, Zs, U+2028, U+2029, U+FEFF), matched
 * here as their exact UTF-8 bytes (invalid bytes become U+FFFD there: not blank). */
static int blank(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == ' ' || (c >= '\t' && c <= '\r')) {
            i++;
        } else if (c == 0xC2 && i + 1 < n && s[i + 1] == 0xA0) {
            i += 2;
        } else if (i + 2 < n && ((c == 0xE1 && s[i + 1] == 0x9A && s[i + 2] == 0x80) ||  /* U+1680 */
                                 (c == 0xE2 && s[i + 1] == 0x80 &&                        /* U+2000..200A, */
                                  (s[i + 2] <= 0x8A || s[i + 2] == 0xA8 ||                /* U+2028, 2029, */
                                   s[i + 2] == 0xA9 || s[i + 2] == 0xAF)) ||              /* U+202F */
                                 (c == 0xE2 && s[i + 1] == 0x81 && s[i + 2] == 0x9F) ||  /* U+205F */
                                 (c == 0xE3 && s[i + 1] == 0x80 && s[i + 2] == 0x80) ||  /* U+3000 */
                                 (c == 0xEF && s[i + 1] == 0xBB && s[i + 2] == 0xBF))) { /* U+FEFF */
            i += 3;
        } else {
            return 0;
        }
    }
    return 1;
}

/* Parses the arguments; returns -1 to go on, or the exit status (--help, a usage error). */
static int parse_args(int argc, char **argv, const char **tokpath, long *nthreads, lmx_tokenizer_options *opts)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(a, "--tokenizer") == 0 && i + 1 < argc) {
            *tokpath = argv[++i];
        } else if (strncmp(a, "--tokenizer=", 12) == 0) {
            *tokpath = a + 12;
        } else if ((strcmp(a, "--threads") == 0 && i + 1 < argc) || strncmp(a, "--threads=", 10) == 0) {
            const char *v = a[9] == '=' ? a + 10 : argv[++i];
            uint64_t n;
            if (lmx__parse_u64(v, MAX_THREADS, &n) != 0 || n == 0) {
                fprintf(stderr, "longmixd tokenize: --threads: expected 1..%d, got '%s'\n", MAX_THREADS, v);
                return 2;
            }
            *nthreads = (long)n;
        } else if (strcmp(a, "--match-added-tokens") == 0) {
            opts->match_added_tokens = 1;
        } else {
            fprintf(stderr, "longmixd tokenize: unknown or incomplete argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!*tokpath) {
        fprintf(stderr, "longmixd tokenize: --tokenizer FILE is required (see --help)\n");
        return 2;
    }
    if (*nthreads < 1)
        *nthreads = 1;
    if (*nthreads > MAX_THREADS)
        *nthreads = MAX_THREADS;
    return -1;
}

static void *helper_main(void *arg)
{
    worker *w = arg;
    lmx__pool_help(w->pool, w);
    return NULL;
}

/* Reads stdin through the pool with n workers (the main thread is workers[0]); the exit status. */
static int run(lmx_pool *pool, worker *workers, int n)
{
    stdin_ctx c = {0};
    size_t next = 0, task;
    /* The main thread registers as the producer before the helpers start, so they wait for its
     * batches instead of finding nothing to do. */
    lmx__pool_claim(pool, &next, 1, &task);
    int started = 1;
    for (; started < n; started++)
        if (pthread_create(&workers[started].th, NULL, helper_main, &workers[started]) != 0) {
            fprintf(stderr, "longmixd tokenize: cannot start thread %d\n", started);
            c.rc = c.done = 1;
            break;
        }
    static char outbuf[1 << 20];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    static const lmx_pool_stream_ops ops = {produce, consume};
    lmx__pool_run_stream(pool, &ops, &c, &workers[0]);
    lmx__pool_release(pool);
    for (int t = 1; t < started; t++)
        pthread_join(workers[t].th, NULL);
    free(c.line);
    if (!c.rc && fflush(stdout) != 0) {
        fprintf(stderr, "longmixd tokenize: writing stdout: %s\n", strerror(errno));
        c.rc = 1;
    }
    return c.rc;
}

int lmxd_cmd_tokenize(int argc, char **argv)
{
    const char *tokpath = NULL;
    long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
    lmx_tokenizer_options opts = {0};
    int rc = parse_args(argc, argv, &tokpath, &nthreads, &opts);
    if (rc >= 0)
        return rc;
    fmt_init();
    lmx_error err = {0};
    lmx_tokenizer *tok = NULL;
    if (lmx__tokenizer_open(tokpath, &opts, &tok, &err) != LMX_OK) {
        fprintf(stderr, "longmixd tokenize: %s\n", err.message);
        return 1;
    }
    lmx_pool pool;
    worker *workers = calloc((size_t)nthreads, sizeof *workers);
    rc = 0;
    if (!workers || lmx__pool_init(&pool, 2 * (size_t)nthreads, work) != 0) {
        fprintf(stderr, "longmixd tokenize: out of memory\n");
        free(workers);
        lmx__tokenizer_free(tok);
        return 1;
    }
    for (int t = 0; t < nthreads && rc == 0; t++) {
        workers[t].pool = &pool;
        if (lmx__encoder_create(tok, &workers[t].enc, &err) != LMX_OK) {
            fprintf(stderr, "longmixd tokenize: %s\n", err.message);
            rc = 1;
        }
    }
    if (rc == 0)
        rc = run(&pool, workers, (int)nthreads);
    for (int t = 0; t < nthreads; t++) {
        lmx__encoder_free(workers[t].enc);
        lmx__ids_free(&workers[t].ids);
        lmx__buf_free(&workers[t].fix);
        lmx__buf_free(&workers[t].txt);
    }
    free(workers);
    lmx__pool_destroy(&pool);
    lmx__tokenizer_free(tok);
    return rc;
}
