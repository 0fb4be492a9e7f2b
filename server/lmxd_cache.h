/* A bounded in-memory cache of batch response bodies for `longmixd serve` (proto/HTTP.md,
 * "Response cache"). A body is a pure function of its key, so a hit skips building, hashing and
 * compressing. Entries are reference counted and immutable once created: libmicrohttpd sends
 * straight from an entry's buffer, and an entry evicted while a response is still being sent lives
 * until its last reference is dropped. Thread-safe: one mutex guards the table and the LRU list;
 * entries are built and hashed outside it. */
#ifndef LMXD_CACHE_H
#define LMXD_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "lmx_proto.h"

/* Everything that changes the bytes of a response. Build it with lmxd_cache_key_init. */
typedef struct lmxd_cache_key {
    char plan_id[2 * LMX_PLAN_ID_BYTES + 1]; /* the content hash: a changed plan never hits old entries */
    uint64_t step;                           /* STEP, or G for the sequences route */
    uint32_t rank, world;
    int kind;       /* the route (batch or sequence), as the caller numbers them */
    int zstd;       /* 0: identity body; 1: zstd-compressed */
    int zstd_level; /* only meaningful with zstd */
    uint32_t cp_rank, cp_size; /* cp_size 0: wire v1; else the v2 slice (set after init) */
    uint32_t cp_layout;        /* LMX_CP_ZIGZAG or LMX_CP_THD (set after init) */
} lmxd_cache_key;

typedef struct lmxd_cache_entry {
    lmxd_cache_key key;
    uint8_t *body; /* owned by the entry; never written after lmxd_cache_entry_new */
    size_t len;
    int zstd;         /* the body is zstd-compressed (Content-Encoding) */
    char digest[80];  /* X-Longmix-Digest value: "blake2b-256=<hex>" of the uncompressed body */
    /* private: */
    _Atomic long refs;
    size_t charge;                                   /* bytes counted against the budget */
    struct lmxd_cache_entry *lru_prev, *lru_next;    /* guarded by the cache's mutex */
    struct lmxd_cache_entry *chain;                  /* hash bucket chain, same */
} lmxd_cache_entry;

/* What an entry costs beyond its body: the entry and its share of the bucket array. */
#define LMXD_CACHE_ENTRY_OVERHEAD (sizeof(lmxd_cache_entry) + 2 * sizeof(void *))

typedef struct lmxd_cache lmxd_cache;

typedef struct lmxd_cache_stats {
    uint64_t hits, misses, evictions;
    size_t bytes, entries, budget;
} lmxd_cache_stats;

/* Zeroes *k (so padding never matters) and fills it; plan_id is the 32-hex plan id. */
void lmxd_cache_key_init(lmxd_cache_key *k, const char *plan_id, int kind, uint64_t step, uint32_t rank,
                         uint32_t world, int zstd, int zstd_level);

/* A cache holding at most budget bytes of entries (body lengths plus per-entry overhead).
 * Returns NULL when budget is 0 (caching off) or out of memory; every function accepts a NULL
 * cache and then caches nothing. The caller owns the cache (lmxd_cache_free). */
lmxd_cache *lmxd_cache_create(size_t budget);
/* Drops the cache's references; entries still held elsewhere (responses being sent) stay valid. */
void lmxd_cache_free(lmxd_cache *c);

/* A new entry with one reference, owned by the caller. Takes ownership of body (malloc'ed, len
 * bytes; it may be shrunk in place with realloc to its length) also on failure; digest is copied.
 * Returns NULL when out of memory (body is freed then). */
lmxd_cache_entry *lmxd_cache_entry_new(const lmxd_cache_key *k, void *body, size_t len, int zstd, const char *digest);
/* Adds a reference. */
void lmxd_cache_entry_ref(lmxd_cache_entry *e);
/* Drops a reference; the last one frees the entry and its body. Accepts NULL. */
void lmxd_cache_entry_unref(lmxd_cache_entry *e);

/* The entry for k with a reference for the caller (lmxd_cache_entry_unref), marked most recently
 * used; NULL on a miss. Counts a hit or a miss (nothing when c is NULL). */
lmxd_cache_entry *lmxd_cache_get(lmxd_cache *c, const lmxd_cache_key *k);
/* Inserts e, fresh from lmxd_cache_entry_new (the cache takes its own reference; the caller
 * keeps its own), evicting least recently used entries until it fits. An entry larger than the
 * budget, or whose key is already cached (two threads missed at once: the bytes are the same),
 * is not inserted. Returns 1 when inserted, else 0. */
int lmxd_cache_put(lmxd_cache *c, lmxd_cache_entry *e);

/* A consistent snapshot of the counters (all zero when c is NULL). */
void lmxd_cache_get_stats(lmxd_cache *c, lmxd_cache_stats *st);

#endif
