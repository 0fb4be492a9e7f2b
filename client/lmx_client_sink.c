/* The bounded body receiver (lmx_client_internal.h): a hostile or broken server cannot make the
 * client allocate or write more than the limit, whatever it announces or sends. */
#include "lmx_client_internal.h"

#include <stdlib.h>
#include <string.h>

void lmx__sink_init(lmx__sink *s, uint64_t limit, void *caller, size_t caller_cap)
{
    memset(s, 0, sizeof *s);
    s->limit = limit;
    s->caller = caller;
    s->caller_cap = caller_cap;
}

/* Points buf at the destination for `size` bytes (exact when known, else grown on demand). */
static int take_dest(lmx__sink *s, uint64_t size, int exact, lmx_error *err)
{
    if (s->caller) {
        if (exact && size > s->caller_cap) {
            s->needed = size;
            return lmx__err(err, LMX_ENOMEM, "batch of %llu bytes does not fit the caller's %zu",
                            (unsigned long long)size, s->caller_cap);
        }
        s->buf = s->caller;
        s->cap = s->caller_cap;
        return LMX_OK;
    }
    if (!exact)
        return LMX_OK; /* grown in write_plain */
    if (size > SIZE_MAX - 1 || !(s->buf = malloc(size ? (size_t)size : 1)))
        return lmx__err(err, LMX_ENOMEM, "out of memory for a %llu-byte batch", (unsigned long long)size);
    s->owned = 1;
    s->cap = (size_t)size;
    return LMX_OK;
}

int lmx__sink_begin(lmx__sink *s, int zstd, int64_t content_length, lmx_error *err)
{
    s->started = 1;
    s->zstd = zstd;
    if (zstd) {
        if (!(s->zd = ZSTD_createDStream()) || ZSTD_isError(ZSTD_initDStream(s->zd)))
            return lmx__err(err, LMX_ENOMEM, "out of memory for a zstd decoder");
        s->zret = 1;
        return LMX_OK;
    }
    if (content_length >= 0 && (uint64_t)content_length > s->limit)
        return lmx__err(err, LMX_EFORMAT, "the answer announces %lld bytes, above max_batch_bytes %llu",
                        (long long)content_length, (unsigned long long)s->limit);
    return take_dest(s, content_length >= 0 ? (uint64_t)content_length : 0, content_length >= 0, err);
}

static int write_plain(lmx__sink *s, const uint8_t *p, size_t n, lmx_error *err)
{
    if (n > s->limit - s->len)
        return lmx__err(err, LMX_EFORMAT, "the answer is larger than max_batch_bytes %llu",
                        (unsigned long long)s->limit);
    if (s->len > s->cap || n > s->cap - s->len) {
        if (s->caller) { /* keep counting (bounded by the limit) so *needed is exact */
            s->needed = s->len + n > s->needed ? s->len + n : s->needed;
            s->len += n;
            return LMX_OK;
        }
        size_t nc = s->cap ? s->cap : 65536;
        while (nc < s->len + n)
            nc = nc > SIZE_MAX / 2 ? SIZE_MAX : nc * 2;
        if (nc > s->limit)
            nc = (size_t)s->limit;
        uint8_t *q = realloc(s->owned ? s->buf : NULL, nc);
        if (!q)
            return lmx__err(err, LMX_ENOMEM, "out of memory for a %zu-byte answer", nc);
        s->buf = q;
        s->cap = nc;
        s->owned = 1;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return LMX_OK;
}

/* Feeds compressed bytes to the decoder; the output buffer is exactly the announced size. */
static int feed_zstd(lmx__sink *s, const uint8_t *p, size_t n, lmx_error *err)
{
    ZSTD_inBuffer in = {p, n, 0};
    ZSTD_outBuffer out = {s->buf, (size_t)s->want, s->len};
    while (in.pos < in.size) {
        if (s->zret == 0)
            return lmx__err(err, LMX_EFORMAT, "bytes after the end of the zstd frame");
        size_t ip = in.pos, op = out.pos;
        size_t r = ZSTD_decompressStream(s->zd, &out, &in);
        s->len = out.pos;
        if (ZSTD_isError(r))
            return lmx__err(err, LMX_EFORMAT, "corrupt zstd body (%s)", ZSTD_getErrorName(r));
        s->zret = r;
        if (r != 0 && in.pos == ip && out.pos == op)
            return lmx__err(err, LMX_EFORMAT, "the zstd body expands beyond the %llu bytes its header announces",
                            (unsigned long long)s->want);
    }
    return LMX_OK;
}

/* Once the frame header is in: the content size decides the destination before anything is
 * allocated, then the buffered header bytes go to the decoder. `final`: no more bytes will come. */
static int start_frame(lmx__sink *s, int final, lmx_error *err)
{
    unsigned long long size = ZSTD_getFrameContentSize(s->hdr, s->hdr_len);
    if (size == ZSTD_CONTENTSIZE_ERROR) { /* also: not enough bytes yet */
        if (final || s->hdr_len == sizeof s->hdr)
            return lmx__err(err, LMX_EFORMAT, "the body is not a zstd frame");
        return LMX_OK;
    }
    if (size == ZSTD_CONTENTSIZE_UNKNOWN)
        return lmx__err(err, LMX_EFORMAT, "zstd body without a content size");
    if (size > s->limit)
        return lmx__err(err, LMX_EFORMAT, "the zstd body announces %llu bytes, above max_batch_bytes %llu", size,
                        (unsigned long long)s->limit);
    int rc = take_dest(s, size, 1, err);
    if (rc != LMX_OK)
        return rc;
    s->want = size;
    s->have_want = 1;
    return feed_zstd(s, s->hdr, s->hdr_len, err);
}

int lmx__sink_write(lmx__sink *s, const void *data, size_t n, lmx_error *err)
{
    const uint8_t *p = data;
    if (!s->zstd)
        return write_plain(s, p, n, err);
    if (s->have_want)
        return feed_zstd(s, p, n, err);
    size_t take = sizeof s->hdr - s->hdr_len < n ? sizeof s->hdr - s->hdr_len : n;
    memcpy(s->hdr + s->hdr_len, p, take);
    s->hdr_len += take;
    int rc = start_frame(s, 0, err);
    if (rc != LMX_OK || !s->have_want)
        return rc;
    return feed_zstd(s, p + take, n - take, err);
}

int lmx__sink_finish(lmx__sink *s, lmx_error *err)
{
    int rc;
    if (!s->started && (rc = lmx__sink_begin(s, 0, -1, err)) != LMX_OK)
        return rc;
    if (s->zstd) {
        if (!s->have_want && (rc = start_frame(s, 1, err)) != LMX_OK)
            return rc;
        if (!s->have_want || s->zret != 0 || s->len != s->want)
            return lmx__err(err, LMX_EFORMAT, "truncated zstd body (%zu of %llu bytes decoded)", s->len,
                            (unsigned long long)s->want);
        return LMX_OK;
    }
    if (s->caller && s->len > s->caller_cap) {
        s->needed = s->len;
        return lmx__err(err, LMX_ENOMEM, "batch of %zu bytes does not fit the caller's %zu", s->len, s->caller_cap);
    }
    if (!s->buf && !s->caller && (rc = take_dest(s, 0, 1, err)) != LMX_OK) /* an empty body */
        return rc;
    return LMX_OK;
}

uint8_t *lmx__sink_take(lmx__sink *s)
{
    if (!s->owned)
        return NULL;
    s->owned = 0;
    return s->buf;
}

void lmx__sink_free(lmx__sink *s)
{
    if (s->owned)
        free(s->buf);
    ZSTD_freeDStream(s->zd);
    s->buf = NULL;
    s->owned = 0;
    s->zd = NULL;
}
