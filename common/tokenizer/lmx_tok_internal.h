/* Internals of the tokenizer.json tokenizer, shared by the files of common/tokenizer/ and
 * declared only here (never included outside this folder). The loader (lmx_tok_load*.c,
 * lmx_tok_vocab_scan.c) fills an lmx_tokjson from JSON once; the encoder (lmx_tok_encode.c,
 * lmx_tok_normalize.c, lmx_tok_pretok.c, lmx_tok_bpe.c) and the decoder (lmx_tok_decode.c) only
 * read its plain tables, never JSON. Semantics follow HuggingFace tokenizers; proto/TOKENIZER.md
 * is the spec. Sections below, by file. */
#ifndef LMX_TOK_INTERNAL_H
#define LMX_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "lmx_error.h"
#include "lmx_tokenizer.h"
#include "lmx_util.h"
#include "lmx_utf8.h"
#include "lmx_unicode_tables.h"

#define LMX_TOK_MAX_ID (1u << 24)   /* ids at or above this are rejected at load time */
#define LMX_TOK_MAX_STEPS 16        /* normalizer / pre-tokenizer / decoder steps */
#define LMX_TOK_MAX_AFFIX 64        /* continuing_subword_prefix / end_of_word_suffix bytes */

/* ---- memory (lmx_tok_mem.c, a leaf) ------------------------------------------------------- */

/* Memory for the big randomly accessed tables (vocab and merge maps, word caches): from 2 MB
 * up, 2 MB aligned and, where the system offers transparent huge pages, backed by them (their
 * lookups otherwise miss the TLB as well as the caches). Zeroed when zero; freed with free(). */
void *lmx__tok_table_alloc(size_t bytes, int zero);

/* Grows *p (elements of elem bytes, capacity *cap) to hold need elements (doubling). */
int lmx__tok_grow(void **p, size_t *cap, size_t need, size_t elem);

/* ---- hashing and maps (lmx_tok_maps.c) ---------------------------------------------------- */

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
/* The same with h = lmx__tok_hash(s, n) already computed. */
int lmx__tok_strmap_put_h(lmx_tok_strmap *m, const uint8_t *s, size_t n, uint32_t id, uint64_t h);
/* Inserts the key already at m->arena.data + off (no copy), h its hash. The caller sized the
 * map for every key (no growth). Returns 1 when the key was present (its id is overwritten),
 * else 0. */
int lmx__tok_strmap_put_at(lmx_tok_strmap *m, uint32_t off, size_t n, uint32_t id, uint64_t h);
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

/* Sized for `expected` merges (load <= 2/3), all slots empty. */
int lmx__tok_mergemap_init(lmx_tok_mergemap *m, uint32_t expected);
/* Later duplicates overwrite earlier ones, as HF's HashMap collect does. */
void lmx__tok_mergemap_put(lmx_tok_mergemap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id);

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

enum { LMX_NORM_PREPEND = 1, LMX_NORM_REPLACE, LMX_NORM_NFC, LMX_NORM_NFD, LMX_NORM_NFKC,
       LMX_NORM_NFKD, LMX_NORM_LOWERCASE, LMX_NORM_STRIP, LMX_NORM_STRIP_ACCENTS };
#define LMX_NORM_PRECOMPILED 100 /* SentencePiece charsmap (lmx_tok_precompiled.c) */
struct lmx_tok_regex;
struct lmx_tok_charsmap;
typedef struct lmx_tok_norm {
    int type;
    struct lmx_tok_regex *rx; /* Replace with a Regex pattern */
    struct lmx_tok_charsmap *cm; /* Precompiled */
    int left, right;          /* Strip */
    unsigned bert;            /* BertNormalizer: LMX_BERT_* options */
    char *a; size_t alen; /* Prepend: prepend; Replace: pattern */
    char *b; size_t blen; /* Replace: content */
} lmx_tok_norm;

/* BertNormalizer (type below) and its options. strip_accents null follows lowercase: resolved
 * at load. */
enum { LMX_NORM_BERT = 32 };
enum { LMX_BERT_CLEAN = 1, LMX_BERT_CJK = 2, LMX_BERT_STRIP = 4, LMX_BERT_LOWER = 8 };

/* ---- general regex path (lmx_tok_regex.c, a leaf; Oniguruma, as HF) ----------------------- */

typedef struct lmx_tok_regex lmx_tok_regex;
/* Compiles a tokenizer.json pattern (general-category classes rewritten into Unicode 16
 * ranges). On error a message in msg[0..cap). *out is freed with lmx__tok_regex_free (NULL ok). */
int lmx__tok_regex_compile(const char *pat, size_t n, lmx_tok_regex **out, char *msg, size_t cap);
void lmx__tok_regex_free(lmx_tok_regex *r);
/* Match positions (one per encoder: searches share the compiled regex across threads). */
void *lmx__tok_regex_region_new(void);
void lmx__tok_regex_region_free(void *region);
/* find_iter state over one haystack: start with {0}. */
typedef struct lmx_tok_refind {
    size_t last_end, last_match_end;
    int has_last;
} lmx_tok_refind;
/* Next match of r in s[0..n) as the onig crate's find_iter gives it (HF's Split): 1 with
 * [*ms, *me), 0 when there is none, LMX_EINTERNAL when the engine fails (retry limit). */
int lmx__tok_regex_next(const lmx_tok_regex *r, void *region, const uint8_t *s, size_t n,
                        lmx_tok_refind *st, size_t *ms, size_t *me);
/* General category of cp (LMX_GC_* index, lmx_unicode_tables.h). */
uint32_t lmx__uni_gc(uint32_t cp);

/* Hand-written matchers for the regexes of known tokenizers (see proto/TOKENIZER.md); 0 = none
 * (the pattern runs on Oniguruma). */
/* LMX_RE_DEEPSEEK and later have positions without a match (digits, controls): their gaps come
 * out as pieces, so they are used only under Isolated without invert. */
enum { LMX_RE_LLAMA3 = 1, LMX_RE_GPT2, LMX_RE_O200K, LMX_RE_DEEPSEEK, LMX_RE_DIGITS3, LMX_RE_DSCJK };
/* not a step's scanner: DeepSeek-V3's three Splits scanned as one (lmx__tok_scan_ds3) */
enum { LMX_RE_DS3 = 16 };
enum { LMX_SPLIT_ISOLATED = 1, LMX_SPLIT_REMOVED, LMX_SPLIT_MERGED_PREV, LMX_SPLIT_MERGED_NEXT,
       LMX_SPLIT_CONTIGUOUS };
enum { LMX_PRE_SPLIT_RE = 1, LMX_PRE_SPLIT_STR, LMX_PRE_BYTELEVEL, LMX_PRE_METASPACE,
       LMX_PRE_SPLIT_CHAR };
/* LMX_PRE_SPLIT_CHAR: every char the predicate holds for is its own match (HF's Fn(char)
 * pattern): Digits (char::is_numeric, N*), WhitespaceSplit (White_Space), Punctuation (ASCII punctuation
 * or general category P*), CharDelimiterSplit (one char). */
/* UnicodeScripts: a split on the script of each char (lmx_tok_scripts.c) */
enum { LMX_PRE_SCRIPTS = 32 };
enum { LMX_CHAR_DIGIT = 1, LMX_CHAR_WS, LMX_CHAR_PUNCT, LMX_CHAR_EQ };
enum { LMX_PREPEND_ALWAYS = 0, LMX_PREPEND_FIRST, LMX_PREPEND_NEVER };
typedef struct lmx_tok_pre {
    int type;
    int re;          /* LMX_RE_* for SPLIT_RE; 0: rx */
    lmx_tok_regex *rx; /* SPLIT_RE: the compiled pattern (always, also behind a fast scanner) */
    int re_digits;   /* LLaMA-3 family: max digits per \p{N}{1,k} piece (1 or 3) */
    int behavior;    /* LMX_SPLIT_* */
    int invert;
    char *str; size_t slen; /* SPLIT_STR pattern; METASPACE replacement (UTF-8) */
    int add_prefix_space, use_regex; /* BYTELEVEL */
    int prepend_scheme, split;       /* METASPACE */
    int pred; uint32_t pred_cp;      /* SPLIT_CHAR: LMX_CHAR_*, the char for LMX_CHAR_EQ */
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

/* Adds s[0..n) for added token `token` (index into lmx_tokjson.added); the trie is created on
 * first use. An empty content never matches; the first of duplicate contents wins. */
int lmx__tok_trie_add(lmx_tok_trie *t, const uint8_t *s, size_t n, int32_t token);

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
     * Verified against every merge at load time; see lmx_tok_load_bpe.c. */
    int seg_enabled;
    uint8_t seg_char[4]; size_t seg_char_len;
    uint64_t seg_block[2]; /* ASCII chars x with a merge x + "seg_char...": no cut after them */
    /* Same idea for ASCII: bit y of cut_ok[x] says the word may be cut between ASCII chars x and
     * y because no merge can join a symbol ending in x to one starting with y (and neither char
     * can be unk, dropped, or a byte-fallback symbol that merges). Built from every merge at
     * load time (lmx_tok_load_bpe.c); limited to pairs with a non-alphanumeric side. */
    int cut_enabled;
    uint64_t cut_ok[128][2];

    /* Unigram model (lmx_tok_load_unigram.c; NULL: BPE). vocab, byte_ids (<0xXX>), unk_id and
     * byte_fallback above are shared with BPE. */
    struct lmx_tok_unigram *uni;

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

    /* document separators (lmx_tok_load_sep.c): the model's BOS/EOS tokens and its convention */
    uint32_t bos, eos;
    int add_bos, add_eos;
    /* tokenizer_config.json changed them (vs tokenizer.json alone): part of the identity */
    int seps_from_config;
} lmx_tokjson;

typedef struct lmx_tok_seps {
    uint32_t bos, eos;
    int add_bos, add_eos;
} lmx_tok_seps;

/* ---- loader (lmx_tok_load.c, lmx_tok_load_pipeline.c, lmx_tok_load_bpe.c, lmx_tok_vocab_scan.c) */

/* Loader: parses tokenizer.json bytes. cfg (tokenizer_config.json bytes) may be NULL. data is
 * used as scratch (strings are decoded in place) and is as it was again when this returns. */
int lmx__tokjson_load(char *data, size_t len, const char *cfg, size_t cfg_len,
                      lmx_tokjson **out, lmx_error *err);
void lmx__tokjson_free(lmx_tokjson *t);

struct json_t; /* jansson's value: only the loader files include <jansson.h> */

/* model.vocab and model.merges as flat lists of strings in one arena (offsets, so the arena may
 * grow). Filled either by the fast scanner straight from the file text or from jansson's tree. */
typedef struct lmx_tok_lists {
    lmx_buf arena;
    uint32_t *v;  /* vocab entry i: key at v[3i] (offset), v[3i+1] (length), id v[3i+2] */
    size_t nv, vcap;
    uint32_t *m;  /* merge i: a at m[4i], m[4i+1]; b at m[4i+2], m[4i+3] */
    size_t nm, mcap;
    /* jansson path only: index of the first malformed merge (its error is reported when the
     * merge loop reaches it, keeping the old order of errors) and its message kind */
    size_t bad_merge;
    int bad_merge_kind;
    int arena_borrowed; /* fast scanner: the arena is the file text itself */
} lmx_tok_lists;

typedef struct lmx_tok_loadctx {
    lmx_tokjson *t;
    lmx_error *err;
    lmx_tok_strmap orig; /* vocab keys as written in tokenizer.json */
    int orig_borrowed;   /* orig's arena is the lists' arena (byte level: no copies) */
    lmx_tok_lists *fast; /* set when the fast scanner parsed vocab and merges */
    lmx_tok_lists own;   /* the lists from jansson's tree otherwise (kept while orig is used) */
    const char *doc;     /* the text jansson parsed (Unigram scores are re-read from it) */
    size_t doc_len;
} lmx_tok_loadctx;

/* Returned (internally) when the fast scanner's result turns out unusable (a duplicate vocab
 * key): the load restarts on the plain jansson path. */
#define LMX_TOKLOAD_FALLBACK (-1000)

/* Shared helpers (lmx_tok_load_util.c, a leaf). _bad sets c->err and returns code. */
int lmx__tokload_bad(lmx_tok_loadctx *c, int code, const char *fmt, ...) LMX_PRINTF(3, 4);
/* Copies a JSON string into a malloc'ed NUL-terminated buffer (*len may be NULL). */
int lmx__tokload_dupstr(lmx_tok_loadctx *c, struct json_t *v, const char *path, char **out,
                        size_t *len);
/* Optional boolean o[key]: absent or null -> def. */
int lmx__tokload_getbool(lmx_tok_loadctx *c, struct json_t *o, const char *key, const char *path,
                         int def, int *out);
/* o's "type" string, or NULL. */
const char *lmx__tokload_type(struct json_t *o);
/* An id in [0, LMX_TOK_MAX_ID). */
int lmx__tokload_id(lmx_tok_loadctx *c, struct json_t *v, const char *path, uint32_t *id);
/* Short, printable rendition of token s[0..n) for messages. */
void lmx__tokload_quote(char *dst, size_t cap, const char *s, size_t n);

/* The pipeline steps (lmx_tok_load_pipeline.c): o is one step or a Sequence of steps, or
 * NULL/null (none). */
int lmx__tokload_normalizer(lmx_tok_loadctx *c, struct json_t *o, const char *path);
int lmx__tokload_pretok(lmx_tok_loadctx *c, struct json_t *o, const char *path);
int lmx__tokload_decoder(lmx_tok_loadctx *c, struct json_t *o, const char *path);

/* The document separators (lmx_tok_load_sep.c) from the post_processor of root and cfg
 * (tokenizer_config.json's object, or NULL); needs the added tokens and vocab loaded. */
void lmx__tokload_separators(lmx_tok_loadctx *c, struct json_t *root, struct json_t *cfg,
                             lmx_tok_seps *out);

/* The BPE model (lmx_tok_load_bpe.c; a Unigram model goes to lmx__tokload_unigram instead): m = the "model" object, added = "added_tokens" (ids
 * counted into the id limit). Uses c->fast's lists when set, else reads them from m. */
int lmx__tokload_model(lmx_tok_loadctx *c, struct json_t *m, struct json_t *added);
/* The lists (lmx_tok_lists.c, a leaf). */
void lmx__toklists_free(lmx_tok_lists *L);
int lmx__toklists_vocab_add(lmx_tok_lists *L, uint32_t off, size_t len, uint32_t id);
int lmx__toklists_merge_add(lmx_tok_lists *L, uint32_t aoff, size_t al, uint32_t boff, size_t bl);

/* The fast scanner (lmx_tok_vocab_scan.c): walks the top-level object to model.vocab and
 * model.merges (on the JSON scanner of common/json/), parses them into L and writes the document
 * with both replaced by {} / [] to copy (len bytes available), its length to *copy_len. Strings
 * are decoded in place in data; the raw text of those it changed is logged in undo as {u32 off,
 * u32 len, bytes} records, for the caller to put back. 1 = done; 0 = use the plain jansson path. */
int lmx__tok_vocab_scan(char *data, size_t len, char *copy, size_t *copy_len, lmx_tok_lists *L,
                        lmx_buf *undo);

/* ---- encoder (lmx_tok_encode.c; scratch inside lmx_encoder) ------------------------------- */

/* Big word cache: pre-tokens of up to LMX_TOK_CACHE_MAX_KEY bytes giving at most
 * LMX_TOK_CACHE_MAX_IDS ids, cleared wholesale when full. */
#define LMX_TOK_CACHE_SLOTS (1u << 16)
#define LMX_TOK_CACHE_ARENA (8u << 20)
#define LMX_TOK_CACHE_MAX_KEY 128
#define LMX_TOK_CACHE_MAX_IDS 64
/* Hot cache: 64K lines of 64 bytes (4 MB) per encoder, 2-way set associative, for pre-tokens of
 * up to LMX_TOK_HOT_KEY bytes (longer ones use the big cache). English text needs a few
 * thousand distinct words for most of its pre-tokens; a lookup touches one pair of adjacent
 * lines, and a miss replaces the least recently used entry of its set (bounded, never
 * cleared). On 25 MB of prose, 2 ways miss ~25% less than direct mapping, and 64K lines ~25%
 * less than 32K. */
#define LMX_TOK_HOT_SLOTS (1u << 16)

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
    void *pieces;             /* split pieces (struct private to lmx_tok_pretok.c) */
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
    lmx_tok_hot *hot;         /* hot word cache, 2-way set associative (below) */
    struct lmx_tok_uninode *uni; /* Unigram lattice, one node per byte + 1 */
    size_t uni_cap;
    void *region;             /* Oniguruma match positions (lmx__tok_regex_region_new) */
} lmx_tokjson_enc;

int lmx__tokjson_enc_init(lmx_tokjson_enc *e, const lmx_tokjson *tj, int match_added);
void lmx__tokjson_enc_free(lmx_tokjson_enc *e);
int lmx__tokjson_encode(lmx_tokjson_enc *e, const uint8_t *text, size_t len, lmx_ids *ids,
                        lmx_error *err);

/* ---- normalizer (lmx_tok_normalize.c) ------------------------------------------------------ */

/* Applies the normalizer chain to s, result in *out (may point to s when nothing changed); bufs
 * and the u32 scratch are reused. */
int lmx__tok_normalize(const lmx_tokjson *tj, const uint8_t *s, size_t n, lmx_buf bufs[2],
                       uint32_t **u32, size_t *u32cap, const uint8_t **out, size_t *out_len);
/* The same with the result always in *out (the loader normalizes added-token contents). */
int lmx__tokjson_normalize(const lmx_tokjson *tj, const uint8_t *s, size_t n, lmx_buf *out,
                           lmx_buf *tmp, uint32_t **u32, size_t *u32cap);

/* ---- BertNormalizer, UnicodeScripts (lmx_tok_bert.c, lmx_tok_scripts.c; HF's own character
 * sets from lmx_hf_char_tables.[ch]) ------------------------------------------------------- */

/* HF BertNormalizer with options nm->bert on valid UTF-8 s[0..n): the result replaces out's
 * contents; u32 is the NFD scratch. */
int lmx__tok_bert_normalize(const lmx_tok_norm *nm, const uint8_t *s, size_t n, lmx_buf *out,
                            uint32_t **u32, size_t *u32cap);
/* HF UnicodeScripts on each span in[0..ns) of buf: the pieces appended to (*out)[*on..]. */
int lmx__tok_scripts_split(const uint8_t *buf, const lmx_tok_span *in, size_t ns,
                           lmx_tok_span **out, size_t *on, size_t *ocap);

/* ---- pre-tokenizer (lmx_tok_pretok.c) ------------------------------------------------------ */

/* Pre-tokenizes text[0..n) (already normalized) and BPE-encodes every piece. `first` tells
 * Metaspace(prepend_scheme=first) that this piece starts the original text. */
int lmx__tok_pretok_and_bpe(lmx_tokjson_enc *e, const uint8_t *text, size_t n, int first,
                            lmx_ids *out);
/* End of the piece of the fast scanner `re` (LMX_RE_*, digits for LLaMA-3) that starts at p[i]
 * (i < n): the leftmost-first match at i, which the known patterns always have. */
size_t lmx__tok_scan_piece(int re, int digits, const uint8_t *p, size_t i, size_t n);
/* DeepSeek-V3's chain (Splits DIGITS3, DSCJK, DEEPSEEK, all Isolated) in one pass: the end of
 * the final piece at i; *seg is scan state, 0 at the start of a text, then passed back. */
size_t lmx__tok_scan_ds3(const uint8_t *p, size_t i, size_t n, size_t *seg);
/* The patterns of the fast scanners (LLaMA-3 and cl100k, Qwen2/3, GPT-2), as tokenizer.json
 * writes them; the loader picks a scanner by exact string equality. */
extern const char lmx__tok_re_llama3[], lmx__tok_re_qwen2[], lmx__tok_re_gpt2[], lmx__tok_re_o200k[],
    lmx__tok_re_deepseek[], lmx__tok_re_digits3[], lmx__tok_re_dscjk[];
#define LMX_TOK_N_FAST 8 /* lmx__tokenizer_pretok_diff's `which`: the 7 patterns with a fast
                          * scanner, then DeepSeek-V3's chain (lmx__tok_scan_ds3) */

/* ---- BPE (lmx_tok_bpe.c: the model; lmx_tok_word.c: one pre-token) ----------------------- */

/* HF BPE::tokenize for one pre-token (lmx_tok_word.c). */
int lmx__tok_bpe_word(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out);
/* Ids of one pre-token: whole-word vocab hit under ignore_merges, else the merge result. */
int lmx__tok_bpe_short(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out);

/* Ids of one pre-token through the big word cache, merging on a miss (lmx_tok_bpe.c). */
int lmx__tok_bpe_cached(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out);
/* The hot word cache, inline for the pre-tokenizer loop: lmx_tok_hot.h. */

/* ---- Unigram (lmx_tok_load_unigram.c: the model; lmx_tok_unigram.c: one pre-token) ------- */

/* Byte trie over the pieces: the root's children in a table, the others in one hash map keyed
 * by (node, byte), so a step is one probe and the trie costs no allocation per node. */
typedef struct lmx_tok_uni_edge {
    uint32_t key; /* node << 8 | byte, + 1 (nodes < 2^24); 0 = empty. 8 bytes: half the misses */
    uint32_t child;
} lmx_tok_uni_edge;
#define LMX_TOK_UNI_MAX_NODES ((1u << 24) - 2)
#define LMX_TOK_UNI_NONE 0x7FFFFFFFu /* node_id: no piece ends here */
#define LMX_TOK_UNI_KIDS 0x80000000u /* node_id: the node has children (else the walk stops
                                      * without probing the edge map) */
typedef struct lmx_tok_unigram {
    uint32_t root[256];      /* child of the root per byte, 0 = none (node 0 is the root) */
    lmx_tok_uni_edge *edges;
    uint64_t edge_mask;
    uint32_t *node_id;       /* piece id ending at node (LMX_TOK_UNI_NONE if none) | KIDS */
    uint32_t n_nodes;
    double *score;           /* by id */
    uint32_t n_pieces;
    double unk_score;        /* min score - 10, HF's K_UNK_PENALTY */
} lmx_tok_unigram;

typedef struct lmx_tok_uninode {
    double score;   /* best path score ending here */
    uint32_t start; /* start of the last token of that path, UINT32_MAX = none yet */
    uint32_t id;
} lmx_tok_uninode;

/* model = {"type": "Unigram", ...}: vocab, unk_id, byte_fallback (lmx_tok_load_unigram.c). */
int lmx__tokload_unigram(lmx_tok_loadctx *c, struct json_t *m, struct json_t *added);
void lmx__tok_unigram_free(lmx_tok_unigram *u);
/* HF Unigram::tokenize of one pre-token: Viterbi best path, unknowns fused, byte fallback.
 * LMX_EUNSUPPORTED when a char is unknown and the model has no unk_id (HF fails too). */
int lmx__tok_unigram_word(lmx_tokjson_enc *e, const uint8_t *w, size_t n, lmx_ids *out);
/* The id limit and id -> display arrays over vocab list L and the added tokens
 * (lmx_tok_load_bpe.c). */
int lmx__tokload_id_tables(lmx_tok_loadctx *c, struct json_t *added, const lmx_tok_lists *L);

/* ---- Precompiled normalizer (lmx_tok_precompiled.c) and grapheme clusters (lmx_tok_grapheme.c,
 * lmx_grapheme_tables.c, generated by gen_grapheme_tables.py) ------------------------------- */

/* SentencePiece's precompiled charsmap: a darts-clone double-array trie over UTF-8 keys whose
 * values are offsets of NUL-terminated replacements in norm. Every offset the trie can reach
 * was checked at load, so lookups need only the array bound. */
typedef struct lmx_tok_charsmap {
    uint32_t *array;
    size_t n;
    uint8_t *norm;
    size_t norm_len;
    int32_t ascii[128]; /* replacement offset of each one-byte key, -1 = none */
} lmx_tok_charsmap;
/* Decodes the base64 precompiled_charsmap b64[0..n) and checks it (HF's parse, plus every
 * reachable trie entry). On error LMX_EFORMAT and a message in msg[0..cap). */
int lmx__tok_charsmap_load(const char *b64, size_t n, lmx_tok_charsmap **out, char *msg, size_t cap);
/* The same from the decoded blob[0..n) (not kept). */
int lmx__tok_charsmap_parse(const uint8_t *blob, size_t n, lmx_tok_charsmap **out, char *msg,
                            size_t cap);
void lmx__tok_charsmap_free(lmx_tok_charsmap *m);
/* HF's Precompiled normalizer over valid UTF-8 s[0..n), appended to out. */
int lmx__tok_precompiled(const lmx_tok_charsmap *m, const uint8_t *s, size_t n, lmx_buf *out);

/* Grapheme_Cluster_Break classes (Extended_Pictographic folded in as a class of its own). */
enum { LMX_GCB_OTHER = 0, LMX_GCB_CR, LMX_GCB_LF, LMX_GCB_CONTROL, LMX_GCB_EXTEND, LMX_GCB_ZWJ,
       LMX_GCB_RI, LMX_GCB_PREPEND, LMX_GCB_SPACINGMARK, LMX_GCB_L, LMX_GCB_V, LMX_GCB_T,
       LMX_GCB_LV, LMX_GCB_LVT, LMX_GCB_EXTPICT };
unsigned lmx__gcb(uint32_t cp);
/* End of the extended grapheme cluster (UAX #29 without GB9c) that starts at s[i], i < n, in
 * valid UTF-8 s[0..n). */
size_t lmx__grapheme_end(const uint8_t *s, size_t i, size_t n);

/* ---- decoder (lmx_tok_decode.c) ------------------------------------------------------------ */

int lmx__tokjson_decode(const lmx_tokjson *tj, const uint32_t *ids, size_t n, lmx_buf *out,
                        lmx_error *err);

/* ---- character classes (pre-tokenizer matchers, added tokens) ------------------------------ */

/* ASCII: letters, digits and the six White_Space chars (\t \n \v \f \r space). The rest of the
 * code points come from the generated tables. */
#define ACLS(c) ((((c) | 0x20) >= 'a' && ((c) | 0x20) <= 'z') ? LMX_UNI_L                       \
                 : ((c) >= '0' && (c) <= '9')                 ? LMX_UNI_N                       \
                 : ((c) == ' ' || ((c) >= 0x09 && (c) <= 0x0D)) ? LMX_UNI_WS                    \
                                                               : 0u)
#define ACLS4(c) ACLS(c), ACLS((c) + 1), ACLS((c) + 2), ACLS((c) + 3)
#define ACLS16(c) ACLS4(c), ACLS4((c) + 4), ACLS4((c) + 8), ACLS4((c) + 12)
/* 256 entries, non-ASCII bytes 0: a byte loop needs no separate < 0x80 test */
static const uint8_t lmx__tok_ascii_cls[256] = {
    ACLS16(0x00), ACLS16(0x10), ACLS16(0x20), ACLS16(0x30),
    ACLS16(0x40), ACLS16(0x50), ACLS16(0x60), ACLS16(0x70),
};

static inline unsigned lmx__tok_cls_cp(uint32_t cp)
{
    if (cp < 0x80)
        return lmx__tok_ascii_cls[cp];
    return lmx__uni_flags(cp) & (LMX_UNI_L | LMX_UNI_N | LMX_UNI_WS);
}


/* ---- Unicode (lmx_tok_utf8.c) -------------------------------------------------------------- */

/* lmx__utf8_* (validation, repair, decode/encode one char): base/lmx_utf8.h */
/* NFC of valid UTF-8 s[0..n) appended to out; scratch is a reusable u32 buffer. */
int lmx__nfc(const uint8_t *s, size_t n, lmx_buf *out, uint32_t **scratch, size_t *scratch_cap);
/* The same for any form (LMX_NF_*; compatibility data: Unicode 15.0, Debian unicode-data). */
enum { LMX_NF_C = 1, LMX_NF_D, LMX_NF_KC, LMX_NF_KD };
int lmx__unorm(int form, const uint8_t *s, size_t n, lmx_buf *out, uint32_t **scratch,
               size_t *scratch_cap);
/* Rust's char::to_lowercase of every char of valid UTF-8 s[0..n), appended to out. */
int lmx__lowercase(const uint8_t *s, size_t n, lmx_buf *out);
/* GPT-2 bytes_to_unicode: code point standing for byte b. */
uint32_t lmx__bytelevel_char(uint8_t b);
#endif
