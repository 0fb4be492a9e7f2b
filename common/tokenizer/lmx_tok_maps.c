/* The tokenizer's tables: string -> id maps, the merge map, the trie of added tokens, and the
 * (lmx_tok_internal.h declares them; lookups are inline there; their memory: lmx_tok_mem.c). */
#include "lmx_tok_internal.h"

#include <stdlib.h>
#include <string.h>

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t p = 16;
    while (p < n && p < (1u << 30))
        p <<= 1;
    return p;
}

/* Load at most 3/4 (checked on insert); a table sized for `expected` starts at most 2/3 full. */
int lmx__tok_strmap_init(lmx_tok_strmap *m, uint32_t expected)
{
    memset(m, 0, sizeof *m);
    uint32_t size = pow2_at_least((uint64_t)expected * 3 / 2 + 16);
    m->slots = lmx__tok_table_alloc((size_t)size * sizeof *m->slots, 1);
    if (!m->slots)
        return LMX_ENOMEM;
    m->mask = size - 1;
    return LMX_OK;
}

static int strmap_grow(lmx_tok_strmap *m)
{
    uint32_t size = (m->mask + 1) * 2;
    lmx_tok_strmap_slot *ns = lmx__tok_table_alloc((size_t)size * sizeof *ns, 1);
    if (!ns)
        return LMX_ENOMEM;
    for (uint32_t i = 0; i <= m->mask; i++) {
        const lmx_tok_strmap_slot *sl = &m->slots[i];
        if (!sl->hash32)
            continue;
        uint32_t j = (uint32_t)lmx__tok_hash(m->arena.data + sl->off, sl->len) & (size - 1);
        while (ns[j].hash32)
            j = (j + 1) & (size - 1);
        ns[j] = *sl;
    }
    free(m->slots);
    m->slots = ns;
    m->mask = size - 1;
    return LMX_OK;
}

/* The slot of key s[0..n) (hash h): its own when present (*found = 1), else the empty one where
 * it goes. */
static lmx_tok_strmap_slot *strmap_find(lmx_tok_strmap *m, const uint8_t *s, size_t n,
                                        uint64_t h, int *found)
{
    uint32_t h32 = (uint32_t)(h >> 32) | 1u;
    uint32_t i = (uint32_t)h & m->mask;
    for (;;) {
        lmx_tok_strmap_slot *sl = &m->slots[i];
        if (!sl->hash32) {
            *found = 0;
            return sl;
        }
        if (sl->hash32 == h32 && sl->len == n && lmx__tok_eq(m->arena.data + sl->off, s, n)) {
            *found = 1;
            return sl;
        }
        i = (i + 1) & m->mask;
    }
}

/* lmx__tok_strmap_put with h = lmx__tok_hash(s, n) already computed. */
int lmx__tok_strmap_put_h(lmx_tok_strmap *m, const uint8_t *s, size_t n, uint32_t id, uint64_t h)
{
    if (n > UINT32_MAX / 2)
        return LMX_ENOMEM;
    if ((uint64_t)(m->n + 1) * 4 > (uint64_t)(m->mask + 1) * 3 && strmap_grow(m) != LMX_OK)
        return LMX_ENOMEM;
    int found;
    lmx_tok_strmap_slot *sl = strmap_find(m, s, n, h, &found);
    if (found) {
        sl->id = id;
        return LMX_OK;
    }
    if (m->arena.len + n > UINT32_MAX)
        return LMX_ENOMEM;
    uint32_t off = (uint32_t)m->arena.len;
    if (n && lmx__buf_append(&m->arena, s, n) != LMX_OK)
        return LMX_ENOMEM;
    *sl = (lmx_tok_strmap_slot){(uint32_t)(h >> 32) | 1u, off, (uint32_t)n, id};
    m->n++;
    return LMX_OK;
}

int lmx__tok_strmap_put(lmx_tok_strmap *m, const uint8_t *s, size_t n, uint32_t id)
{
    return lmx__tok_strmap_put_h(m, s, n, id, lmx__tok_hash(s, n));
}

void lmx__tok_strmap_free(lmx_tok_strmap *m)
{
    if (!m)
        return;
    free(m->slots);
    lmx__buf_free(&m->arena);
    memset(m, 0, sizeof *m);
}

/* Inserts the key already at m->arena.data + off (no copy), h its hash. The caller sized the
 * map for every key (no growth). Returns 1 when the key was present (its id is overwritten),
 * else 0. */
int lmx__tok_strmap_put_at(lmx_tok_strmap *m, uint32_t off, size_t n, uint32_t id, uint64_t h)
{
    const uint8_t *s = m->arena.data + off;
    int found;
    lmx_tok_strmap_slot *sl = strmap_find(m, s, n, h, &found);
    if (found) {
        sl->id = id;
        return 1;
    }
    *sl = (lmx_tok_strmap_slot){(uint32_t)(h >> 32) | 1u, off, (uint32_t)n, id};
    m->n++;
    return 0;
}

int lmx__tok_mergemap_init(lmx_tok_mergemap *m, uint32_t expected)
{
    /* load <= 2/3: a smaller table (8 MB for LLaMA-3) misses the CPU caches less than a sparser one */
    uint32_t size = pow2_at_least((uint64_t)expected * 3 / 2 + 16);
    m->slots = lmx__tok_table_alloc((size_t)size * sizeof *m->slots, 0);
    if (!m->slots)
        return LMX_ENOMEM;
    for (uint32_t i = 0; i < size; i++)
        m->slots[i].key = UINT64_MAX;
    m->mask = size - 1;
    m->shift = 64;
    for (uint32_t s = size; s > 1; s >>= 1)
        m->shift--;
    m->n = 0;
    return LMX_OK;
}

/* Later duplicates overwrite earlier ones, as HF's HashMap collect does. */
void lmx__tok_mergemap_put(lmx_tok_mergemap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id)
{
    uint64_t key = (uint64_t)a << 32 | b;
    uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> m->shift;
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    if (m->slots[i].key == UINT64_MAX)
        m->n++;
    m->slots[i] = (lmx_tok_merge){key, rank, id};
}

/* ---- trie of added tokens ------------------------------------------------------------------ */

int lmx__tok_trie_add(lmx_tok_trie *t, const uint8_t *s, size_t n, int32_t token)
{
    if (!t->nodes) {
        t->cap = 64;
        t->nodes = calloc(t->cap, sizeof *t->nodes);
        if (!t->nodes)
            return LMX_ENOMEM;
        t->n = 1;
        t->nodes[0].token = -1;
    }
    if (!n)
        return LMX_OK; /* an empty added token never matches */
    t->first[s[0]] = 1;
    uint32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = t->nodes[cur].first_child;
        while (c && t->nodes[c].byte != s[i])
            c = t->nodes[c].next_sibling;
        if (!c) {
            if (t->n == t->cap) {
                lmx_tok_trie_node *nn = realloc(t->nodes, (size_t)t->cap * 2 * sizeof *nn);
                if (!nn)
                    return LMX_ENOMEM;
                t->nodes = nn;
                t->cap *= 2;
            }
            c = t->n++;
            t->nodes[c] = (lmx_tok_trie_node){0, t->nodes[cur].first_child, -1, s[i]};
            t->nodes[cur].first_child = c;
        }
        cur = c;
    }
    if (t->nodes[cur].token < 0)
        t->nodes[cur].token = token; /* first of duplicate contents wins */
    return LMX_OK;
}
