/* Decompressed byte streams over input files: see lmx_input_stream.h. */
#include "lmx_input_stream.h"

#include <stdlib.h>
#include <string.h>

int lmx__instream_open(lmx_instream *s, const char *path, int codec, lmx_error *err)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    s->codec = codec;
    crypto_generichash_init(&s->hash, NULL, 0, 32);
    s->f = fopen(path, "rb");
    if (!s->f)
        return lmx__err_errno(err, "open %s", path);
    s->in_cap = ZSTD_DStreamInSize();
    s->out_cap = codec == LMX_CODEC_ZSTD ? ZSTD_DStreamOutSize() : (size_t)1 << 17;
    s->in = malloc(s->in_cap);
    s->out = malloc(s->out_cap);
    if (codec == LMX_CODEC_ZSTD)
        s->dctx = ZSTD_createDCtx();
    if (!s->in || !s->out || (codec == LMX_CODEC_ZSTD && !s->dctx))
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", path);
    return LMX_OK;
}

void lmx__instream_close(lmx_instream *s)
{
    if (s->f)
        fclose(s->f);
    ZSTD_freeDCtx(s->dctx);
    free(s->in);
    free(s->out);
    memset(s, 0, sizeof *s);
}

void lmx__instream_hash(lmx_instream *s, char hex[65])
{
    uint8_t h[32];
    crypto_generichash_final(&s->hash, h, sizeof h);
    lmx__hex(h, sizeof h, hex);
}

/* Reads raw bytes into buf: the count, 0 at EOF, <0 on a read error. */
static long read_raw(lmx_instream *s, uint8_t *buf, size_t cap, lmx_error *err)
{
    size_t n = fread(buf, 1, cap, s->f);
    if (n == 0)
        return ferror(s->f) ? lmx__err_errno(err, "read %s", s->path) : 0;
    crypto_generichash_update(&s->hash, buf, n);
    s->raw_bytes += n;
    return (long)n;
}

static int read_zstd(lmx_instream *s, uint64_t line, const uint8_t **data, size_t *len, lmx_error *err)
{
    for (;;) {
        if (s->zin.pos == s->zin.size) {
            long n = read_raw(s, s->in, s->in_cap, err);
            if (n < 0)
                return (int)n;
            if (n == 0) {
                if (s->last_ret != 0)
                    return lmx__err(err, LMX_EFORMAT, "%s: truncated zstd stream (ends inside line %llu)", s->path,
                                    (unsigned long long)line);
                return 0;
            }
            s->zin = (ZSTD_inBuffer){s->in, (size_t)n, 0};
        }
        ZSTD_outBuffer zout = {s->out, s->out_cap, 0};
        size_t ret = ZSTD_decompressStream(s->dctx, &zout, &s->zin);
        if (ZSTD_isError(ret))
            return lmx__err(err, LMX_EFORMAT, "%s: corrupt zstd data near line %llu: %s", s->path,
                            (unsigned long long)line, ZSTD_getErrorName(ret));
        s->last_ret = ret;
        if (zout.pos) {
            *data = s->out;
            *len = zout.pos;
            return 1;
        }
    }
}

int lmx__instream_read(lmx_instream *s, uint64_t line, const uint8_t **data, size_t *len, lmx_error *err)
{
    if (s->codec == LMX_CODEC_ZSTD)
        return read_zstd(s, line, data, len, err);
    long n = read_raw(s, s->out, s->out_cap, err);
    if (n <= 0)
        return (int)n;
    *data = s->out;
    *len = (size_t)n;
    return 1;
}
