/* Decompressed byte streams over input files: see lmx_input_stream.h. */
#include "lmx_input_stream.h"

#include <stdlib.h>
#include <string.h>

int lmx__instream_sniff(const char *path, int *codec, lmx_error *err)
{
    uint8_t m[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return lmx__err_errno(err, "open %s", path);
    size_t n = fread(m, 1, sizeof m, f);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return lmx__err_errno(err, "read %s", path);
    if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
        *codec = LMX_CODEC_GZIP;
    else if (n == 4 && ((m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd) ||
                        ((m[0] & 0xf0) == 0x50 && m[1] == 0x2a && m[2] == 0x4d && m[3] == 0x18)))
        *codec = LMX_CODEC_ZSTD;
    else
        *codec = LMX_CODEC_NONE;
    return LMX_OK;
}

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
    if (codec == LMX_CODEC_GZIP) {
        s->in_cap = s->out_cap = (size_t)1 << 18;
        if (inflateInit2(&s->z, 15 + 16) != Z_OK) /* gzip wrapper only */
            return lmx__err(err, LMX_ENOMEM, "%s: cannot initialize zlib", path);
        s->z_live = 1;
    }
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
    if (s->z_live)
        inflateEnd(&s->z);
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

/* gzip, any number of members back to back (`cat a.gz b.gz`, pigz/bgzip blocks): each member's
 * CRC and length are checked by zlib; bytes after a member that do not start another one, and a
 * member cut short, are errors. */
static int read_gzip(lmx_instream *s, uint64_t line, const uint8_t **data, size_t *len, lmx_error *err)
{
    for (;;) {
        if (s->z.avail_in == 0) {
            long n = read_raw(s, s->in, s->in_cap, err);
            if (n < 0)
                return (int)n;
            if (n == 0) {
                if (s->z_in_member)
                    return lmx__err(err, LMX_EFORMAT, "%s: truncated gzip stream (ends inside line %llu)", s->path,
                                    (unsigned long long)line);
                return 0;
            }
            s->z.next_in = s->in;
            s->z.avail_in = (uInt)n;
        }
        if (!s->z_in_member) {
            /* a new member must start with the gzip magic (zlib would also take it, but would
             * report trailing garbage as a "bad header" without saying where) */
            if (s->z.next_in[0] != 0x1f || (s->z.avail_in > 1 && s->z.next_in[1] != 0x8b))
                return lmx__err(err, LMX_EFORMAT, "%s: data after the end of a gzip member (near line %llu) is not gzip",
                                s->path, (unsigned long long)line);
            s->z_in_member = 1;
        }
        s->z.next_out = s->out;
        s->z.avail_out = (uInt)s->out_cap;
        int zr = inflate(&s->z, Z_NO_FLUSH);
        size_t got = s->out_cap - s->z.avail_out;
        if (zr == Z_STREAM_END) {
            s->z_in_member = 0;
            if (inflateReset(&s->z) != Z_OK)
                return lmx__err(err, LMX_EINTERNAL, "%s: zlib reset failed", s->path);
        } else if (zr != Z_OK && !(zr == Z_BUF_ERROR && s->z.avail_in == 0)) {
            return lmx__err(err, LMX_EFORMAT, "%s: corrupt gzip data at compressed byte %llu (line %llu or later): %s",
                            s->path, (unsigned long long)(s->raw_bytes - s->z.avail_in), (unsigned long long)line,
                            s->z.msg ? s->z.msg : zError(zr));
        }
        if (got) {
            *data = s->out;
            *len = got;
            return 1;
        }
    }
}

int lmx__instream_read(lmx_instream *s, uint64_t line, const uint8_t **data, size_t *len, lmx_error *err)
{
    if (s->codec == LMX_CODEC_GZIP)
        return read_gzip(s, line, data, len, err);
    if (s->codec == LMX_CODEC_ZSTD)
        return read_zstd(s, line, data, len, err);
    long n = read_raw(s, s->out, s->out_cap, err);
    if (n <= 0)
        return (int)n;
    *data = s->out;
    *len = (size_t)n;
    return 1;
}
