/* A file read as a stream of decompressed bytes (plain, zstd, gzip), in bounded memory, hashing
 * the raw (compressed) bytes as they are read. The codec comes from the file's first bytes (magic
 * numbers), not its name. Used by the line-oriented readers. */
#ifndef LMX_INPUT_STREAM_H
#define LMX_INPUT_STREAM_H

#include <sodium.h>
#include <stdio.h>
#include <zlib.h>
#include <zstd.h>

#include "lmx_inputs.h"

enum lmx_codec { LMX_CODEC_NONE, LMX_CODEC_ZSTD, LMX_CODEC_GZIP };

typedef struct lmx_instream {
    FILE *f;
    const char *path;
    int codec; /* enum lmx_codec */
    ZSTD_DCtx *dctx;
    z_stream z;       /* gzip */
    int z_live;       /* z initialized */
    int z_in_member;  /* inside a gzip member (its end not reached yet) */
    uint8_t *in, *out;
    size_t in_cap, out_cap;
    ZSTD_inBuffer zin;
    size_t last_ret;
    crypto_generichash_state hash; /* of the raw input bytes */
    uint64_t raw_bytes;
} lmx_instream;

/* The codec of a file from its first bytes: gzip (1f 8b), zstd (28 b5 2f fd; also skippable
 * frames 5? 2a 4d 18), else none; LMX_EIO when it cannot be read. */
int lmx__instream_sniff(const char *path, int *codec, lmx_error *err);
/* Opens path (borrowed) with the given codec. On failure the stream is still safe to close. */
int lmx__instream_open(lmx_instream *s, const char *path, int codec, lmx_error *err);
/* The next decompressed bytes: 1 with *data and *len (valid until the next call), 0 at the clean
 * end, or LMX_EIO / LMX_EFORMAT (corrupt or truncated data) naming the file and `line`, the
 * 1-based line being read. */
int lmx__instream_read(lmx_instream *s, uint64_t line, const uint8_t **data, size_t *len, lmx_error *err);
/* Hex BLAKE2b-256 of every raw byte read. */
void lmx__instream_hash(lmx_instream *s, char hex[65]);
void lmx__instream_close(lmx_instream *s);

#endif
