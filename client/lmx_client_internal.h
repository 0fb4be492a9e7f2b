/* liblongmix internals shared by its files (client, batch, sink, escaper, fork guard) and the fuzz target. */
#ifndef LMX_CLIENT_INTERNAL_H
#define LMX_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#include "lmx_error.h"
#include "lmx_wire.h"

/* Bytes of a non-2xx answer kept for its error message; the transfer stops there. */
#define LMX__ERROR_BODY_MAX 4096
/* max_batch_bytes when neither the caller nor the plan's shape gives one. */
#define LMX__DEFAULT_MAX_BATCH ((uint64_t)1 << 30)
/* Largest 2xx body lmx_get() accepts (stats and plan JSON are kilobytes). */
#define LMX__GET_MAX ((uint64_t)64 << 20)

/* A bounded receiver for one answer's body, fed chunk by chunk as libcurl delivers it. The
 * uncompressed bytes go to the caller's buffer (fetch_into) or to one malloc'ed buffer; a zstd
 * body is decompressed as it arrives. Nothing beyond `limit` uncompressed bytes (and never
 * beyond a caller buffer) is ever allocated or written: a body that would exceed it fails at
 * once, without reading the rest. */
typedef struct lmx__sink {
    uint64_t limit;      /* most uncompressed bytes accepted */
    uint8_t *caller;     /* caller buffer or NULL */
    size_t caller_cap;
    int zstd;            /* the body is one zstd frame (set by lmx__sink_begin) */
    int started;
    uint8_t *buf;        /* destination: caller or owned */
    size_t cap, len;     /* capacity of buf, bytes written */
    int owned;           /* buf was malloc'ed here */
    uint64_t want;       /* zstd: the frame's content size (0 until its header is in) */
    int have_want;
    ZSTD_DStream *zd;
    uint8_t hdr[18]; /* the frame header is at most 18 bytes (ZSTD_FRAMEHEADERSIZE_MAX) */
    size_t hdr_len;
    size_t zret;         /* last ZSTD_decompressStream result: 0 = frame complete */
    uint64_t needed;     /* the size a too-small caller buffer would have needed (LMX_ENOMEM) */
} lmx__sink;

/* Prepares s for a body of at most limit uncompressed bytes (into caller/caller_cap if given). */
void lmx__sink_init(lmx__sink *s, uint64_t limit, void *caller, size_t caller_cap);
/* Called before the first byte: zstd = Content-Encoding zstd; content_length -1 when unknown.
 * Errors: LMX_EFORMAT (over the limit), LMX_ENOMEM (caller buffer too small: s->needed set). */
int lmx__sink_begin(lmx__sink *s, int zstd, int64_t content_length, lmx_error *err);
/* One chunk of the body as received. Errors: LMX_EFORMAT (over the limit, bad zstd, bytes after
 * the frame), LMX_ENOMEM (allocation, or the caller buffer is too small: s->needed set). */
int lmx__sink_write(lmx__sink *s, const void *p, size_t n, lmx_error *err);
/* After the last chunk: a zstd frame must be complete and exactly its announced size. */
int lmx__sink_finish(lmx__sink *s, lmx_error *err);
/* The owned buffer (NULL when the caller's was used); the sink no longer frees it. */
uint8_t *lmx__sink_take(lmx__sink *s);
/* Frees what the sink owns. Accepts a sink that was never begun. */
void lmx__sink_free(lmx__sink *s);

/* Copies n bytes of server-provided text into dst (cap >= 1) as one printable line: control
 * characters (C0, DEL, C1) become \n, \r, \t, \\xNN or \\u00NN escapes, bytes that are not valid
 * UTF-8 become \\xNN; output is cut (ending in "...") rather than overflowing. Always
 * NUL-terminates; returns strlen(dst). */
size_t lmx__escape_text(char *dst, size_t cap, const char *src, size_t n);


/* Fork safety (lmx_client_fork.c). A registered hook's hold() runs in the forking thread before
 * fork() and must leave the client's worker parked; release() runs in the parent after it. The
 * hook is owned by its client; register without holding any client lock (the fork handler takes
 * the registry lock first, then each client's). */
typedef struct lmx__fork_hook {
    struct lmx__fork_hook *prev, *next;
    void (*hold)(void *arg);
    void (*release)(void *arg);
    void *arg;
    int registered;
} lmx__fork_hook;

void lmx__fork_register(lmx__fork_hook *h);
/* Accepts a hook never registered. */
void lmx__fork_unregister(lmx__fork_hook *h);


/* A decoded batch (lmx_batch.c has its accessors; lmx_client.c builds it from a verified body). */
struct lmx_batch {
    lmx_wire_view v;
    uint8_t *owned; /* NULL when the body lives in a caller buffer */
    size_t size;
    char plan_id[2 * LMX_PLAN_ID_BYTES + 1];
    char **domains; /* NUL-terminated copies of the wire's domain names */
};

#endif
