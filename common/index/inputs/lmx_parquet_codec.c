/* Page decompression with Debian's codec libraries. The page header gives the exact
 * uncompressed size, so every codec decompresses into a buffer of that size and anything else
 * (short output, trailing garbage the codec reports, overflow) is corrupt data. */
#include <brotli/decode.h>
#include <lz4.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "lmx_parquet_internal.h"

struct pq_codec_ctx {
    ZSTD_DCtx *zstd;
    z_stream z;
    int z_init;
};

void lmx__pq_codec_free(pq_codec_ctx *c)
{
    if (!c)
        return;
    ZSTD_freeDCtx(c->zstd);
    if (c->z_init)
        inflateEnd(&c->z);
    free(c);
}

const char *lmx__pq_codec_name(int codec)
{
    static const char *const names[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"};
    return codec >= 0 && codec < 8 ? names[codec] : "unknown";
}

/* gzip (one or more members, as zlib's gzip writers and Java's GZIPOutputStream produce). */
static int gunzip(pq_codec_ctx *c, const uint8_t *src, size_t n, uint8_t *dst, size_t dst_n)
{
    if (!c->z_init) {
        if (inflateInit2(&c->z, 15 + 32) != Z_OK)
            return -1;
        c->z_init = 1;
    } else if (inflateReset(&c->z) != Z_OK)
        return -1;
    c->z.next_in = (Bytef *)(uintptr_t)src;
    c->z.next_out = dst;
    size_t in_left = n, out_left = dst_n;
    for (;;) {
        uInt ai = in_left > UINT32_MAX ? UINT32_MAX : (uInt)in_left;
        uInt ao = out_left > UINT32_MAX ? UINT32_MAX : (uInt)out_left;
        c->z.avail_in = ai;
        c->z.avail_out = ao;
        int rc = inflate(&c->z, Z_NO_FLUSH);
        in_left -= ai - c->z.avail_in;
        out_left -= ao - c->z.avail_out;
        if (rc == Z_STREAM_END) {
            if (in_left == 0 || out_left == 0)
                return out_left == 0 ? 0 : -1;
            if (inflateReset(&c->z) != Z_OK) /* another member */
                return -1;
            continue;
        }
        if (rc != Z_OK || (ai == c->z.avail_in && ao == c->z.avail_out))
            return -1; /* corrupt, or truncated (no progress) */
    }
}

/* Hadoop's LZ4 framing (codec LZ4, deprecated): blocks of [u32 BE raw size][u32 BE compressed
 * size][LZ4 block]; some old writers wrote a bare LZ4 block instead, which is tried second. */
static int lz4_hadoop(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_n)
{
    const uint8_t *p = src, *end = src + n;
    size_t out = 0;
    while (end - p >= 8) {
        uint32_t raw = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        uint32_t comp = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
        p += 8;
        if (comp > (size_t)(end - p) || raw > dst_n - out || comp > INT32_MAX || raw > INT32_MAX)
            goto bare;
        int got = LZ4_decompress_safe((const char *)p, (char *)dst + out, (int)comp, (int)raw);
        if (got < 0 || (uint32_t)got != raw)
            goto bare;
        p += comp;
        out += raw;
    }
    if (p == end && out == dst_n)
        return 0;
bare:
    if (n > INT32_MAX || dst_n > INT32_MAX)
        return -1;
    return LZ4_decompress_safe((const char *)src, (char *)dst, (int)n, (int)dst_n) == (int)dst_n ? 0 : -1;
}

int lmx__pq_decompress(pq_codec_ctx **ctx, int codec, const uint8_t *src, size_t n, uint8_t *dst, size_t dst_n,
                       lmx_error *err)
{
    if (!*ctx && !(*ctx = calloc(1, sizeof **ctx)))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    pq_codec_ctx *c = *ctx;
    int bad = 0;
    switch (codec) {
    case PQ_CODEC_UNCOMPRESSED:
        bad = n != dst_n;
        if (!bad && n)
            memcpy(dst, src, n);
        break;
    case PQ_CODEC_SNAPPY: {
        size_t len;
        bad = snappy_uncompressed_length((const char *)src, n, &len) != SNAPPY_OK || len != dst_n ||
              snappy_uncompress((const char *)src, n, (char *)dst, &len) != SNAPPY_OK || len != dst_n;
        break;
    }
    case PQ_CODEC_GZIP:
        bad = gunzip(c, src, n, dst, dst_n) != 0;
        break;
    case PQ_CODEC_BROTLI: {
        size_t len = dst_n;
        bad = BrotliDecoderDecompress(n, src, &len, dst) != BROTLI_DECODER_RESULT_SUCCESS || len != dst_n;
        break;
    }
    case PQ_CODEC_LZ4:
        bad = lz4_hadoop(src, n, dst, dst_n) != 0;
        break;
    case PQ_CODEC_LZ4_RAW:
        bad = n > INT32_MAX || dst_n > INT32_MAX ||
              LZ4_decompress_safe((const char *)src, (char *)dst, (int)n, (int)dst_n) != (int)dst_n;
        break;
    case PQ_CODEC_ZSTD: {
        if (!c->zstd && !(c->zstd = ZSTD_createDCtx()))
            return lmx__err(err, LMX_ENOMEM, "out of memory");
        size_t got = ZSTD_decompressDCtx(c->zstd, dst, dst_n, src, n);
        bad = ZSTD_isError(got) || got != dst_n;
        break;
    }
    default:
        return lmx__err(err, LMX_EUNSUPPORTED, "compression codec %s (%d) is not supported",
                        lmx__pq_codec_name(codec), codec);
    }
    if (bad)
        return lmx__err(err, LMX_EFORMAT, "corrupt %s data (%zu bytes, expected %zu bytes uncompressed)",
                        lmx__pq_codec_name(codec), n, dst_n);
    return LMX_OK;
}
