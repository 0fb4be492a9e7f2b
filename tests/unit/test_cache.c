/* server/lmxd_cache.c: the response cache's keys, LRU order, byte budget and reference counts. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_test.h"
#include "lmxd_cache.h"

#define PLAN_A "0123456789abcdef0123456789abcdef"
#define PLAN_B "fedcba9876543210fedcba9876543210"

static lmxd_cache_key key(const char *plan, uint64_t step, int zstd)
{
    lmxd_cache_key k;
    lmxd_cache_key_init(&k, plan, 4, step, 1, 2, zstd, 3);
    return k;
}

/* An entry whose body is len bytes of fill. */
static lmxd_cache_entry *entry(const lmxd_cache_key *k, size_t len, int fill)
{
    uint8_t *b = malloc(len ? len : 1);
    memset(b, fill, len);
    return lmxd_cache_entry_new(k, b, len, k->zstd, "blake2b-256=00");
}

static void test_null_cache(void)
{
    CHECK(lmxd_cache_create(0) == NULL);
    lmxd_cache_key k = key(PLAN_A, 0, 0);
    CHECK(lmxd_cache_get(NULL, &k) == NULL);
    lmxd_cache_entry *e = entry(&k, 10, 1);
    CHECK_EQ_INT(lmxd_cache_put(NULL, e), 0);
    lmxd_cache_stats st;
    lmxd_cache_get_stats(NULL, &st);
    CHECK_EQ_U64(st.hits + st.misses + st.bytes + st.entries + st.budget, 0);
    lmxd_cache_entry_unref(e);
    lmxd_cache_entry_unref(NULL);
    lmxd_cache_free(NULL);
}

static void test_keys(void)
{
    lmxd_cache *c = lmxd_cache_create(1 << 20);
    lmxd_cache_key ks[] = {key(PLAN_A, 0, 0), key(PLAN_A, 0, 1), key(PLAN_B, 0, 0), key(PLAN_A, 1, 0)};
    lmxd_cache_key other_level = key(PLAN_A, 0, 1), other_kind = key(PLAN_A, 0, 0), other_rank = key(PLAN_A, 0, 0);
    other_level.zstd_level = 19;
    other_kind.kind = 5;
    other_rank.rank = 0;
    for (int i = 0; i < 4; i++) {
        lmxd_cache_entry *e = entry(&ks[i], 100, i);
        CHECK_EQ_INT(lmxd_cache_put(c, e), 1);
        lmxd_cache_entry_unref(e);
    }
    for (int i = 0; i < 4; i++) {
        lmxd_cache_entry *e = lmxd_cache_get(c, &ks[i]);
        CHECK(e && e->body[0] == i && e->len == 100);
        lmxd_cache_entry_unref(e);
    }
    CHECK(lmxd_cache_get(c, &other_level) == NULL);
    CHECK(lmxd_cache_get(c, &other_kind) == NULL);
    CHECK(lmxd_cache_get(c, &other_rank) == NULL);
    /* The level of an identity body does not matter (it is normalized away). */
    lmxd_cache_key plain_other_level;
    lmxd_cache_key_init(&plain_other_level, PLAN_A, 4, 0, 1, 2, 0, 19);
    lmxd_cache_entry *e = lmxd_cache_get(c, &plain_other_level);
    CHECK(e && e->body[0] == 0);
    lmxd_cache_entry_unref(e);
    /* A second put of a cached key keeps the first entry. */
    e = entry(&ks[0], 100, 9);
    CHECK_EQ_INT(lmxd_cache_put(c, e), 0);
    lmxd_cache_entry_unref(e);
    e = lmxd_cache_get(c, &ks[0]);
    CHECK(e && e->body[0] == 0);
    lmxd_cache_entry_unref(e);
    lmxd_cache_stats st;
    lmxd_cache_get_stats(c, &st);
    CHECK_EQ_U64(st.hits, 6);
    CHECK_EQ_U64(st.misses, 3);
    CHECK_EQ_U64(st.entries, 4);
    lmxd_cache_free(c);
}

static void test_lru_budget(void)
{
    size_t overhead = LMXD_CACHE_ENTRY_OVERHEAD, body = 1000, budget = 3 * (body + overhead);
    lmxd_cache *c = lmxd_cache_create(budget);
    lmxd_cache_key k[5];
    for (int i = 0; i < 5; i++)
        k[i] = key(PLAN_A, (uint64_t)i, 0);
    for (int i = 0; i < 3; i++) {
        lmxd_cache_entry *e = entry(&k[i], body, i);
        CHECK_EQ_INT(lmxd_cache_put(c, e), 1);
        lmxd_cache_entry_unref(e);
    }
    /* Touch 0: 1 becomes the least recently used and goes first. */
    lmxd_cache_entry_unref(lmxd_cache_get(c, &k[0]));
    /* Hold a reference to 1 across its eviction: it must stay readable (ASan checks). */
    lmxd_cache_entry *held = lmxd_cache_get(c, &k[1]);
    lmxd_cache_entry_unref(lmxd_cache_get(c, &k[2]));
    lmxd_cache_entry_unref(lmxd_cache_get(c, &k[0]));
    /* LRU order now (oldest first): 1, 2, 0. */
    lmxd_cache_entry *e = entry(&k[3], body, 3);
    CHECK_EQ_INT(lmxd_cache_put(c, e), 1);
    lmxd_cache_entry_unref(e);
    CHECK(lmxd_cache_get(c, &k[1]) == NULL);
    CHECK(held && held->len == body && held->body[body - 1] == 1);
    lmxd_cache_entry_unref(held);
    lmxd_cache_stats st;
    lmxd_cache_get_stats(c, &st);
    CHECK_EQ_U64(st.entries, 3);
    CHECK_EQ_U64(st.evictions, 1);
    CHECK(st.bytes <= budget);
    CHECK_EQ_U64(st.bytes, 3 * (body + overhead));
    /* A body needing two slots evicts the two oldest (2, then 0); 3 stays. */
    e = entry(&k[4], 2 * body + overhead, 4);
    CHECK_EQ_INT(lmxd_cache_put(c, e), 1);
    lmxd_cache_entry_unref(e);
    lmxd_cache_get_stats(c, &st);
    CHECK_EQ_U64(st.entries, 2);
    CHECK(st.bytes <= budget);
    e = lmxd_cache_get(c, &k[3]);
    CHECK(e != NULL);
    lmxd_cache_entry_unref(e);
    CHECK(lmxd_cache_get(c, &k[2]) == NULL);
    CHECK(lmxd_cache_get(c, &k[0]) == NULL);
    /* Larger than the whole budget: not cached, nothing evicted. */
    lmxd_cache_key big = key(PLAN_B, 0, 0);
    e = entry(&big, budget, 7);
    CHECK_EQ_INT(lmxd_cache_put(c, e), 0);
    CHECK(e->body[budget - 1] == 7);
    lmxd_cache_entry_unref(e);
    lmxd_cache_get_stats(c, &st);
    CHECK_EQ_U64(st.entries, 2);
    /* Freeing the cache while an entry is held leaves that entry valid. */
    held = lmxd_cache_get(c, &k[4]);
    lmxd_cache_free(c);
    CHECK(held && held->body[0] == 4);
    lmxd_cache_entry_unref(held);
}

/* Many inserts grow the bucket array; every entry is still found. */
static void test_many(void)
{
    lmxd_cache *c = lmxd_cache_create(64u << 20);
    for (uint64_t i = 0; i < 5000; i++) {
        lmxd_cache_key k = key(PLAN_A, i, (int)(i & 1));
        lmxd_cache_entry *e = entry(&k, 8, (int)(i & 0xff));
        CHECK_EQ_INT(lmxd_cache_put(c, e), 1);
        lmxd_cache_entry_unref(e);
    }
    int found = 0;
    for (uint64_t i = 0; i < 5000; i++) {
        lmxd_cache_key k = key(PLAN_A, i, (int)(i & 1));
        lmxd_cache_entry *e = lmxd_cache_get(c, &k);
        found += e && e->body[0] == (uint8_t)(i & 0xff);
        lmxd_cache_entry_unref(e);
    }
    CHECK_EQ_INT(found, 5000);
    lmxd_cache_free(c);
}

/* Threads racing on a small budget: lookups, inserts and evictions; bodies must never change
 * under a reader (ASan/TSan catch use after free). */
typedef struct {
    lmxd_cache *c;
    int seed;
    int bad;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    unsigned x = (unsigned)a->seed * 2654435761u + 1;
    for (int i = 0; i < 20000; i++) {
        x = x * 1103515245u + 12345u;
        uint64_t step = (x >> 8) % 64;
        lmxd_cache_key k = key(PLAN_A, step, 0);
        lmxd_cache_entry *e = lmxd_cache_get(a->c, &k);
        if (!e) {
            e = entry(&k, 512, (int)step);
            lmxd_cache_put(a->c, e);
        }
        for (size_t j = 0; j < e->len; j += 97)
            a->bad += e->body[j] != (uint8_t)step;
        lmxd_cache_entry_unref(e);
    }
    return NULL;
}

static void test_threads(void)
{
    size_t budget = 16 * (512 + LMXD_CACHE_ENTRY_OVERHEAD);
    lmxd_cache *c = lmxd_cache_create(budget);
    pthread_t t[4];
    worker_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (worker_arg){c, i, 0};
        pthread_create(&t[i], NULL, worker, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(a[i].bad, 0);
    }
    lmxd_cache_stats st;
    lmxd_cache_get_stats(c, &st);
    CHECK(st.bytes <= budget && st.entries <= 16);
    CHECK_EQ_U64(st.hits + st.misses, 80000);
    CHECK(st.hits > 0 && st.evictions > 0);
    lmxd_cache_free(c);
}

int main(void)
{
    test_null_cache();
    test_keys();
    test_lru_budget();
    test_many();
    test_threads();
    return lmx_test_failures ? 1 : 0;
}
