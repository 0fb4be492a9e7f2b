/* Response cache: a chained hash table plus a doubly linked LRU list under one mutex. */
#include "lmxd_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_BUCKETS 1024

struct lmxd_cache {
    pthread_mutex_t lock; /* guards everything below */
    size_t budget, bytes, n;
    lmxd_cache_entry **buckets;
    size_t n_buckets; /* power of two */
    lmxd_cache_entry *lru_head, *lru_tail; /* head = most recently used */
    uint64_t hits, misses, evictions;
};

void lmxd_cache_key_init(lmxd_cache_key *k, const char *plan_id, int kind, uint64_t step, uint32_t rank,
                         uint32_t world, int zstd, int zstd_level)
{
    memset(k, 0, sizeof *k);
    snprintf(k->plan_id, sizeof k->plan_id, "%s", plan_id);
    k->kind = kind;
    k->step = step;
    k->rank = rank;
    k->world = world;
    k->zstd = zstd != 0;
    k->zstd_level = zstd ? zstd_level : 0; /* the level does not change an identity body */
}

static int key_eq(const lmxd_cache_key *a, const lmxd_cache_key *b)
{
    return a->step == b->step && a->rank == b->rank && a->world == b->world && a->kind == b->kind &&
           a->zstd == b->zstd && a->zstd_level == b->zstd_level && a->cp_rank == b->cp_rank &&
           a->cp_size == b->cp_size && a->cp_layout == b->cp_layout && strcmp(a->plan_id, b->plan_id) == 0;
}

static uint64_t key_hash(const lmxd_cache_key *k)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the plan id, then the numbers mixed in */
    for (const char *p = k->plan_id; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    uint64_t v[4] = {k->step, (uint64_t)k->rank << 32 | k->world, (uint64_t)(uint32_t)k->kind << 32 | (uint32_t)k->zstd,
                     (uint64_t)(uint32_t)k->zstd_level ^ ((uint64_t)k->cp_rank << 32 | k->cp_size) << 8 ^
                     (uint64_t)k->cp_layout << 63};
    for (int i = 0; i < 4; i++) {
        h ^= v[i] + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
    }
    return h;
}

lmxd_cache *lmxd_cache_create(size_t budget)
{
    if (budget == 0)
        return NULL;
    lmxd_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->n_buckets = MIN_BUCKETS;
    if (!(c->buckets = calloc(c->n_buckets, sizeof *c->buckets))) {
        free(c);
        return NULL;
    }
    c->budget = budget;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void lmxd_cache_free(lmxd_cache *c)
{
    if (!c)
        return;
    for (lmxd_cache_entry *e = c->lru_head, *next; e; e = next) {
        next = e->lru_next;
        e->lru_prev = e->lru_next = e->chain = NULL;
        lmxd_cache_entry_unref(e);
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

lmxd_cache_entry *lmxd_cache_entry_new(const lmxd_cache_key *k, void *body, size_t len, int zstd, const char *digest)
{
    lmxd_cache_entry *e = calloc(1, sizeof *e);
    if (!e) {
        free(body);
        return NULL;
    }
    /* Body buffers grow by doubling (up to 2x their length) and zstd output sits in a
     * ZSTD_compressBound buffer: give the slack back so the budget counts what is held. glibc
     * shrinks in place (mremap or a chunk split); other allocators may copy, which is fine. */
    if (len > 0) {
        void *p = realloc(body, len);
        if (p)
            body = p;
    }
    e->key = *k;
    e->body = body;
    e->len = len;
    e->zstd = zstd != 0;
    snprintf(e->digest, sizeof e->digest, "%s", digest);
    e->charge = len + LMXD_CACHE_ENTRY_OVERHEAD;
    atomic_init(&e->refs, 1);
    return e;
}

void lmxd_cache_entry_ref(lmxd_cache_entry *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

void lmxd_cache_entry_unref(lmxd_cache_entry *e)
{
    if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
        free(e->body);
        free(e);
    }
}

/* ---- under c->lock ---- */

static void lru_unlink(lmxd_cache *c, lmxd_cache_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(lmxd_cache *c, lmxd_cache_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

static lmxd_cache_entry **bucket_of(lmxd_cache *c, const lmxd_cache_key *k)
{
    return &c->buckets[key_hash(k) & (c->n_buckets - 1)];
}

static void table_remove(lmxd_cache *c, lmxd_cache_entry *e)
{
    for (lmxd_cache_entry **p = bucket_of(c, &e->key); *p; p = &(*p)->chain)
        if (*p == e) {
            *p = e->chain;
            e->chain = NULL;
            return;
        }
}

/* Doubles the bucket array when it gets crowded; a failed allocation just keeps longer chains. */
static void maybe_grow(lmxd_cache *c)
{
    if (c->n < c->n_buckets)
        return;
    size_t nb = c->n_buckets * 2;
    lmxd_cache_entry **b = calloc(nb, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < c->n_buckets; i++)
        for (lmxd_cache_entry *e = c->buckets[i], *next; e; e = next) {
            next = e->chain;
            size_t j = key_hash(&e->key) & (nb - 1);
            e->chain = b[j];
            b[j] = e;
        }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = nb;
}

/* ---- API ---- */

lmxd_cache_entry *lmxd_cache_get(lmxd_cache *c, const lmxd_cache_key *k)
{
    if (!c)
        return NULL;
    pthread_mutex_lock(&c->lock);
    lmxd_cache_entry *e = *bucket_of(c, k);
    while (e && !key_eq(&e->key, k))
        e = e->chain;
    if (e) {
        c->hits++;
        lmxd_cache_entry_ref(e);
        if (c->lru_head != e) {
            lru_unlink(c, e);
            lru_push_front(c, e);
        }
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->lock);
    return e;
}

int lmxd_cache_put(lmxd_cache *c, lmxd_cache_entry *e)
{
    if (!c || !e || e->charge > c->budget)
        return 0;
    lmxd_cache_entry *victims = NULL; /* released after the lock: freeing 16 MiB bodies takes time */
    pthread_mutex_lock(&c->lock);
    lmxd_cache_entry **b = bucket_of(c, &e->key), *x = *b;
    while (x && !key_eq(&x->key, &e->key))
        x = x->chain;
    if (x) {
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    while (e->charge > c->budget - c->bytes && c->lru_tail) { /* bytes <= budget always: no wrap */
        lmxd_cache_entry *v = c->lru_tail;
        lru_unlink(c, v);
        table_remove(c, v);
        c->bytes -= v->charge;
        c->n--;
        c->evictions++;
        v->chain = victims;
        victims = v;
    }
    lmxd_cache_entry_ref(e);
    b = bucket_of(c, &e->key);
    e->chain = *b;
    *b = e;
    lru_push_front(c, e);
    c->bytes += e->charge;
    c->n++;
    maybe_grow(c);
    pthread_mutex_unlock(&c->lock);
    while (victims) {
        lmxd_cache_entry *next = victims->chain;
        victims->chain = NULL;
        lmxd_cache_entry_unref(victims);
        victims = next;
    }
    return 1;
}

void lmxd_cache_get_stats(lmxd_cache *c, lmxd_cache_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    st->hits = c->hits;
    st->misses = c->misses;
    st->evictions = c->evictions;
    st->bytes = c->bytes;
    st->entries = c->n;
    st->budget = c->budget;
    pthread_mutex_unlock(&c->lock);
}
