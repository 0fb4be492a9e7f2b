/* Internals of the tokenizer.json tokenizer, shared by lmx_tok_*.c (never included outside
 * common/lmx_tok*.c and lmx_tokenizer.c). The loader (lmx_tok_json.c) fills an lmx_tokjson
 * from JSON once; the encoder (lmx_tok_encode.c) only reads these plain tables, never JSON.
 * Semantics follow HuggingFace tokenizers; proto/TOKENIZER.md is the spec. */
#ifndef LMX_TOK_INTERNAL_H
#define LMX_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "lmx_error.h"
#include "lmx_tokenizer.h"
#include "lmx_util.h"
#include "lmx_utf8.h"

#define LMX_TOK_MAX_ID (1u << 24)   /* ids at or above this are rejected at load time */
#define LMX_TOK_MAX_STEPS 16        /* normalizer / pre-tokenizer / decoder steps */
#define LMX_TOK_MAX_AFFIX 64        /* continuing_subword_prefix / end_of_word_suffix bytes */

/* ---- hashing and maps ---------------------------------------------------------------------- */

static inline uint64_t lmx__tok_load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8); /* native order is fine: only equality of hashes within a process matters */
    return v;
}
static inline uint32_t lmx__tok_load32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t lmx__tok_hash(const uint8_t *p, size_t n)
{
    /* 64-bit multiplicative hash, 8 bytes at a time; only needs to spread, not resist attack
     * (tables are sized from the tokenizer file, not from document text; the word caches are
     * bounded and simply lose entries on collisions). The tail is read with overlapping loads
     * instead of a byte loop: most keys are short words, so the tail is most of the work. */
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    size_t len = n;
    while (n > 8) {
        h = (h ^ lmx__tok_load64(p)) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t v;
    if (len >= 8)
        v = lmx__tok_load64(p + n - 8); /* the last 8 bytes of the key (may overlap) */
    else if (n >= 4)
        v = (uint64_t)lmx__tok_load32(p) | (uint64_t)lmx__tok_load32(p + n - 4) << 32;
    else if (n)
        v = (uint64_t)p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16;
    else
        v = 0;
    h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 32;
    return h;
}

/* Memory for the big randomly accessed tables (vocab and merge maps, word caches): from 2 MB
 * up, 2 MB aligned and, where the system offers transparent huge pages, backed by them (their
 * lookups otherwise miss the TLB as well as the caches). Zeroed when zero; freed with free(). */
void *lmx__tok_table_alloc(size_t bytes, int zero);

/* a[0..n) == b[0..n) for the short keys of the maps, without a call: overlapping loads. */
static inline int lmx__tok_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8)
            if (lmx__tok_load64(a + i) != lmx__tok_load64(b + i))
                return 0;
        return lmx__tok_load64(a + n - 8) == lmx__tok_load64(b + n - 8);
    }
    if (n >= 4)
        return lmx__tok_load32(a) == lmx__tok_load32(b) &&
               lmx__tok_load32(a + n - 4) == lmx__tok_load32(b + n - 4);
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* String -> id map (open addressing, strings in an arena owned by the map). A slot holds the
 * whole entry, so a lookup touches one slot line and then the key bytes. */
typedef struct lmx_tok_strmap_slot {
    uint32_t hash32; /* upper hash bits | 1; 0 = empty slot */
    uint32_t off, len, id;
} lmx_tok_strmap_slot;
typedef struct lmx_tok_strmap {
    lmx_tok_strmap_slot *slots;
    uint32_t mask;
    uint32_t n;
    lmx_buf arena;
} lmx_tok_strmap;

int lmx__tok_strmap_init(lmx_tok_strmap *m, uint32_t expected);
/* Inserts or overwrites (later wins, like a JSON object decoded into a HashMap). */
int lmx__tok_strmap_put(lmx_tok_strmap *m, const uint8_t *s, size_t n, uint32_t id);
void lmx__tok_strmap_free(lmx_tok_strmap *m);

/* Lookup with h = lmx__tok_hash(s, n) already computed (batched loads prefetch the slot). */
static inline uint32_t lmx__tok_strmap_get_h(const lmx_tok_strmap *m, const uint8_t *s, size_t n,
                                             uint64_t h)
{
    uint32_t h32 = (uint32_t)(h >> 32) | 1u;
    uint32_t i = (uint32_t)h & m->mask;
    for (;;) {
        const lmx_tok_strmap_slot *sl = &m->slots[i];
        if (!sl->hash32)
            return LMX_TOKEN_NONE;
        if (sl->hash32 == h32 && sl->len == n && lmx__tok_eq(m->arena.data + sl->off, s, n))
            return sl->id;
        i = (i + 1) & m->mask;
    }
}
static inline uint32_t lmx__tok_strmap_get(const lmx_tok_strmap *m, const uint8_t *s, size_t n)
{
    return lmx__tok_strmap_get_h(m, s, n, lmx__tok_hash(s, n));
}
static inline void lmx__tok_strmap_prefetch(const lmx_tok_strmap *m, uint64_t h)
{
    LMX_PREFETCH(&m->slots[(uint32_t)h & m->mask]);
}
/* Second stage, once the slot is in cache: prefetches the key bytes of a likely match. */
static inline void lmx__tok_strmap_prefetch_key(const lmx_tok_strmap *m, uint64_t h)
{
    const lmx_tok_strmap_slot *sl = &m->slots[(uint32_t)h & m->mask];
    if (sl->hash32)
        LMX_PREFETCH(m->arena.data + sl->off);
}

/* Merge map: (left id, right id) -> (rank, new id). */
typedef struct lmx_tok_merge {
    uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
    uint32_t rank, new_id;
} lmx_tok_merge;
typedef struct lmx_tok_mergemap {
    lmx_tok_merge *slots;
    uint64_t mask;
    uint32_t shift;
    uint32_t n;
} lmx_tok_mergemap;

/* Hints the CPU to load the slot of pair (a, b): the merge table is megabytes, so its lookups
 * are cache misses, and issuing several before using them overlaps their latency. */
static inline void lmx__tok_merge_prefetch(const lmx_tok_mergemap *m, uint32_t a, uint32_t b)
{
    uint64_t key = (uint64_t)a << 32 | b;
    LMX_PREFETCH(&m->slots[(key * 0x9E3779B97F4A7C15ull) >> m->shift]);
}

static inline const lmx_tok_merge *lmx__tok_merge_get(const lmx_tok_mergemap *m, uint32_t a,
                                                      uint32_t b)
{
    uint64_t key = (uint64_t)a << 32 | b;
    uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> m->shift;
    for (;;) {
        const lmx_tok_merge *s = &m->slots[i];
        if (s->key == key)
            return s;
        if (s->key == UINT64_MAX)
            return NULL;
        i = (i + 1) & m->mask;
    }
}

/* ---- pipeline description ----------------------------------------------------------------- */

enum { LMX_NORM_PREPEND = 1, LMX_NORM_REPLACE, LMX_NORM_NFC };
typedef struct lmx_tok_norm {
    int type;
    char *a; size_t alen; /* Prepend: prepend; Replace: pattern */
    char *b; size_t blen; /* Replace: content */
} lmx_tok_norm;

/* Hand-written matchers for the regexes of known tokenizers (see proto/TOKENIZER.md). */
enum { LMX_RE_LLAMA3 = 1, LMX_RE_GPT2 };
enum { LMX_SPLIT_ISOLATED = 1, LMX_SPLIT_REMOVED, LMX_SPLIT_MERGED_PREV, LMX_SPLIT_MERGED_NEXT,
       LMX_SPLIT_CONTIGUOUS };
enum { LMX_PRE_SPLIT_RE = 1, LMX_PRE_SPLIT_STR, LMX_PRE_BYTELEVEL, LMX_PRE_METASPACE };
enum { LMX_PREPEND_ALWAYS = 0, LMX_PREPEND_FIRST, LMX_PREPEND_NEVER };
typedef struct lmx_tok_pre {
    int type;
    int re;          /* LMX_RE_* for SPLIT_RE */
    int re_digits;   /* LLaMA-3 family: max digits per \p{N}{1,k} piece (1 or 3) */
    int behavior;    /* LMX_SPLIT_* */
    int invert;
    char *str; size_t slen; /* SPLIT_STR pattern; METASPACE replacement (UTF-8) */
    int add_prefix_space, use_regex; /* BYTELEVEL */
    int prepend_scheme, split;       /* METASPACE */
} lmx_tok_pre;

enum { LMX_DEC_BYTELEVEL = 1, LMX_DEC_BYTEFALLBACK, LMX_DEC_REPLACE, LMX_DEC_FUSE, LMX_DEC_STRIP,
       LMX_DEC_METASPACE };
typedef struct lmx_tok_dec {
    int type;
    char *a; size_t alen; /* Replace pattern / Strip content / Metaspace replacement */
    char *b; size_t blen; /* Replace content */
    int start, stop;      /* Strip */
    int prepend_scheme;   /* Metaspace */
} lmx_tok_dec;

typedef struct lmx_tok_added {
    uint8_t *content; size_t len; /* as matched: normalized content when `normalized` */
    uint32_t id;
    uint8_t special, lstrip, rstrip, single_word, normalized;
} lmx_tok_added;

/* Byte trie over added-token contents for leftmost-longest matching. */
typedef struct lmx_tok_trie_node {
    uint32_t first_child, next_sibling; /* 0 = none (node 0 is the root) */
    int32_t token;                      /* index into added[] or -1 */
    uint8_t byte;
} lmx_tok_trie_node;
typedef struct lmx_tok_trie {
    lmx_tok_trie_node *nodes;
    uint32_t n, cap;
    uint8_t first[256]; /* bytes that start some token; n <= 1 means no tokens */
} lmx_tok_trie;

typedef struct lmx_tokjson {
    /* normalizer and pre-tokenizer chains, applied in order */
    lmx_tok_norm norm[LMX_TOK_MAX_STEPS];
    int n_norm;
    lmx_tok_pre pre[LMX_TOK_MAX_STEPS];
    int n_pre;
    lmx_tok_dec dec[LMX_TOK_MAX_STEPS];
    int n_dec;

    /* BPE model. With a ByteLevel pre-tokenizer, vocab keys are the raw bytes the token stands
     * for (the ByteLevel char map is inverted at load), so encoding works on raw UTF-8 bytes. */
    int byte_level;
    int byte_fallback, fuse_unk, ignore_merges;
    uint32_t unk_id;
    char *cont_prefix; size_t cont_prefix_len;
    char *eow_suffix; size_t eow_suffix_len;
    lmx_tok_strmap vocab;
    lmx_tok_mergemap merges;
    uint32_t byte_ids[256];  /* byte level: id of the one-byte token; byte_fallback: <0xXX> */
    uint32_t ascii_ids[128]; /* char mode without prefix/suffix: id of each ASCII char */
    /* The whole-document-is-one-word case (no pre-tokenizer, e.g. LLaMA-2): when no merge can
     * join a symbol ending in a non-`seg_char` char to one starting with `seg_char`, the word
     * is cut before each such `seg_char` and the parts are merged independently (and cached).
     * Verified against every merge at load time; see lmx_tok_json.c. */
    int seg_enabled;
    uint8_t seg_char[4]; size_t seg_char_len;
    /* Same idea for ASCII: bit y of cut_ok[x] says the word may be cut between ASCII chars x and
     * y because no merge can join a symbol ending in x to one starting with y (and neither char
     * can be unk, dropped, or a byte-fallback symbol that merges). Built from every merge at
     * load time (lmx_tok_json.c); limited to pairs with a non-alphanumeric side. */
    int cut_enabled;
    uint64_t cut_ok[128][2];

    /* added tokens: matched only when match_added_tokens */
    lmx_tok_added *added;
    uint32_t n_added;
    lmx_tok_trie trie_raw;  /* normalized == false */
    lmx_tok_trie trie_norm; /* normalized == true (contents normalized) */

    /* id -> display string (as written in tokenizer.json) for decode; off UINT32_MAX = none */
    uint32_t *id_off, *id_len;
    uint8_t *id_special;
    lmx_buf id_arena;
    uint32_t id_limit; /* max id + 1 */

    uint32_t bos, eos;
} lmx_tokjson;

/* Loader: parses tokenizer.json bytes. cfg (tokenizer_config.json bytes) may be NULL. data is
 * used as scratch (strings are decoded in place) and is as it was again when this returns. */
int lmx__tokjson_load(char *data, size_t len, const char *cfg, size_t cfg_len,
                      lmx_tokjson **out, lmx_error *err);
void lmx__tokjson_free(lmx_tokjson *t);

/* Encoder scratch for tokenizer.json (lives inside lmx_encoder). */
typedef struct lmx_tok_span {
    uint32_t start, len;
} lmx_tok_span;
typedef struct lmx_tok_sym {
    uint32_t id;
    int32_t prev, next;
    uint32_t alive;
} lmx_tok_sym;
typedef struct lmx_tok_heapent {
    uint64_t key; /* rank << 32 | pos */
    uint32_t new_id;
} lmx_tok_heapent;
typedef struct lmx_tok_cache_slot {
    uint64_t hash;
    uint32_t off;   /* into cache arena: key bytes, then ids (4-byte aligned) */
    uint16_t klen, nids;
} lmx_tok_cache_slot;

/* Hot word cache slot: one cache line holding a short pre-token and its ids inline, so a hit
 * costs one hash and one line of memory (the vocab map needs three scattered reads). */
#define LMX_TOK_HOT_KEY 26
#define LMX_TOK_HOT_IDS 8
typedef struct lmx_tok_hot {
    uint32_t hash32;
    uint8_t klen, nids; /* nids 0 = empty slot */
    uint8_t key[LMX_TOK_HOT_KEY];
    uint32_t ids[LMX_TOK_HOT_IDS];
} lmx_tok_hot;
_Static_assert(sizeof(lmx_tok_hot) == 64, "a hot cache entry is one cache line");

typedef struct lmx_tokjson_enc {
    const lmx_tokjson *tj;
    int match_added;
    lmx_buf valid;            /* lossy UTF-8 repair of invalid input */
    lmx_buf nbuf[2];          /* normalizer ping-pong */
    lmx_buf pbuf[2];          /* pre-tokenizer text ping-pong */
    lmx_tok_span *spans[2];
    size_t span_cap[2];
    void *pieces;             /* split pieces (struct private to lmx_tok_encode.c) */
    size_t pieces_cap;
    uint32_t *u32;            /* NFC scratch */
    size_t u32_cap;
    lmx_tok_sym *syms;
    size_t sym_cap;
    lmx_tok_heapent *heap;
    size_t heap_cap;
    lmx_tok_cache_slot *cache;
    uint32_t cache_mask, cache_n;
    uint8_t *cache_arena;
    size_t cache_arena_len, cache_arena_cap;
    lmx_tok_hot *hot;         /* hot word cache, 2-way set associative (lmx_tok_encode.c) */
} lmx_tokjson_enc;

int lmx__tokjson_enc_init(lmx_tokjson_enc *e, const lmx_tokjson *tj, int match_added);
void lmx__tokjson_enc_free(lmx_tokjson_enc *e);
int lmx__tokjson_encode(lmx_tokjson_enc *e, const uint8_t *text, size_t len, lmx_ids *ids,
                        lmx_error *err);
int lmx__tokjson_decode(const lmx_tokjson *tj, const uint32_t *ids, size_t n, lmx_buf *out,
                        lmx_error *err);

/* UTF-8 helpers (lmx_tok_utf8.c). */
/* lmx__utf8_* (validation, repair, decode/encode one char): base/lmx_utf8.h */
/* NFC of valid UTF-8 s[0..n) appended to out; scratch is a reusable u32 buffer. */
int lmx__nfc(const uint8_t *s, size_t n, lmx_buf *out, uint32_t **scratch, size_t *scratch_cap);
/* GPT-2 bytes_to_unicode: code point standing for byte b. */
uint32_t lmx__bytelevel_char(uint8_t b);
#endif
