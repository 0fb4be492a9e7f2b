/* Small shared helpers: growable buffers with caps, atomic file writes, hashing names. */
#ifndef LMX_UTIL_H
#define LMX_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include "lmx_error.h"

/* A cache hint; compilers without the builtin get nothing (same results, only slower). */
#if defined(__GNUC__) || defined(__clang__)
#define LMX_PREFETCH(p) __builtin_prefetch(p)
#else
#define LMX_PREFETCH(p) ((void)(p))
#endif

/* Growable byte buffer. Owns data; lmx__buf_free() releases it and zeroes the struct.
 * Every append fails with LMX_ENOMEM instead of growing past `cap_limit` (0 = 1 GiB default). */
typedef struct lmx_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t cap_limit;
} lmx_buf;

int lmx__buf_reserve(lmx_buf *b, size_t extra);
int lmx__buf_append(lmx_buf *b, const void *p, size_t n);
int lmx__buf_printf(lmx_buf *b, const char *fmt, ...) LMX_PRINTF(2, 3);
void lmx__buf_free(lmx_buf *b);

/* Growable array of token ids (same ownership rules as lmx_buf). */
typedef struct lmx_ids {
    uint32_t *v;
    size_t n;
    size_t cap;
} lmx_ids;

int lmx__ids_reserve(lmx_ids *ids, size_t extra);
int lmx__ids_push(lmx_ids *ids, uint32_t id);
void lmx__ids_free(lmx_ids *ids);

/* Writes data to path atomically: PATH.tmp.PID, fsync, rename, fsync of the directory. */
int lmx__write_file_atomic(const char *path, const void *data, size_t len, lmx_error *err);
/* Reads a whole (small) file; *out is malloc'ed and NUL-terminated, caller frees. Fails with
 * LMX_ENOMEM for files above max_len. */
int lmx__read_file(const char *path, size_t max_len, char **out, size_t *out_len, lmx_error *err);
/* fsyncs the directory holding path (after a rename). */
int lmx__fsync_dir_of(const char *path, lmx_error *err);
/* Maps a whole file read-only (MAP_SHARED); *map is NULL for an empty file. The caller owns the
 * mapping (munmap(*map, *size) when *map is not NULL). Errors: LMX_EIO naming the path. */
int lmx__map_file(const char *path, uint8_t **map, size_t *size, lmx_error *err);
/* mkdir -p */
int lmx__mkdirs(const char *path, lmx_error *err);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void lmx__hex(const uint8_t *in, size_t n, char *out);
/* Value of one hex digit (either case), or -1. */
int lmx__hexval(int c);
/* Parses exactly 2n hex characters; returns 0 or -1. */
int lmx__unhex(const char *hex, uint8_t *out, size_t n);

/* Strict decimal parse of a whole string into [min,max]; returns 0 or -1 (junk, sign, overflow). */
int lmx__parse_u64(const char *s, uint64_t max, uint64_t *out);

/* Monotonic seconds. */
double lmx__now(void);

/* Little-endian stores/loads, independent of host byte order and alignment. */
static inline void lmx__put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void lmx__put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void lmx__put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t lmx__get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t lmx__get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t lmx__get64(const uint8_t *p)
{
    return (uint64_t)lmx__get32(p) | ((uint64_t)lmx__get32(p + 4) << 32);
}

#endif
