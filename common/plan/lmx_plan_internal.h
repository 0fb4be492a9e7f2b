/* Cross-file internals of common/plan/ (design: proto/PLANS.md). Included only by the .c files of this folder.
 * Files: lmx_plan_spec.c (spec parsing), lmx_plan_create.c (binding a spec to an index: items,
 * weights, plan id), lmx_plan_stream.c (each domain's seeded substream), lmx_plan_blocks.c
 * (quotas and the packing of blocks), lmx_plan_batch.c (wire output), lmx_plan_stats.c,
 * lmx_plan_table.c (item tables in files), lmx_plan_epochs.c (epoch indexes in files),
 * lmx_plan_prewalk.c (epoch walks off the request path). */
#ifndef LMX_PLAN_INTERNAL_H
#define LMX_PLAN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "lmx_plan.h"

/* Bump when any change makes some sequence's bytes differ for the same index and spec. */
#define LMX_PLAN_ALGORITHM "longmix-plan-v2"
#define WEIGHT_ONE ((uint64_t)1 << 40) /* weights are fixed point, summing exactly to 2^40 */
#define BLOCK_TARGET ((uint64_t)1 << 26)
#define CKPT_EVERY 64
#define EPOCH_CACHE 4
#define EPOCH_SLOTS 4                /* epoch index files kept per domain (lmx_plan_epochs.c) */
#define CUM_CACHE 32
#define BLOCK_CACHE 6
#define RANGE_TOKENS ((uint64_t)1 << 16) /* batches build blocks in ranges of about this many tokens */

/* ---- integer helpers (exact, so replicas agree bit for bit) ---- */

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* 64x64 -> 128 multiply, portable. */
static inline void mul128(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
    *lo = (mid << 32) | (uint32_t)p00;
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

/* floor((a*b + add) / 2^shift) for shift in (0, 64), assuming the result fits in 64 bits. */
static inline uint64_t mul_add_shr(uint64_t a, uint64_t b, uint64_t add, unsigned shift, uint64_t *rem)
{
    uint64_t hi, lo;
    mul128(a, b, &hi, &lo);
    uint64_t nlo = lo + add;
    hi += nlo < lo;
    if (rem)
        *rem = nlo & ((((uint64_t)1) << shift) - 1);
    return (hi << (64 - shift)) | (nlo >> shift);
}

/* ---- per-domain state ---- */

typedef struct item {
    uint64_t doc;
    uint32_t len;   /* tokens of this item (the document, or the piece for `cut`) */
    uint32_t piece; /* piece number (cut); the piece starts at piece * cut_len */
} item;

typedef struct perm {
    uint64_t n;
    unsigned lbits, rbits; /* widths of the two halves: lbits = ceil(bits/2), rbits = floor(bits/2) */
    uint64_t keys[4];
} perm;

/* Merge state before step i*CKPT_EVERY of an epoch: long items taken (the short items taken are
 * i*CKPT_EVERY - li) and stream tokens emitted, long and in all. */
typedef struct ckpt {
    uint64_t li, lt, cum;
} ckpt;

typedef struct epoch_index {
    int valid;
    uint64_t epoch, total, used;
    uint64_t cum; /* stream tokens of the domain before this epoch */
    ckpt *ck;     /* on the heap, or into file (lmx_plan_epochs.c) */
    uint8_t *file; /* the epoch's file when ck points into it: mapped, or read into the heap */
    size_t file_len;
    int file_mapped;
} epoch_index;

typedef struct pdom {
    uint32_t ixdom; /* domain index in the index */
    item *items;    /* long-class items first (items[0, n_long)), then short-class, each in id order */
    uint64_t n, n_long;
    uint64_t cls_long_slen; /* stream tokens of the long-class items (always kept) */
    uint64_t cls_short_kept; /* expected kept stream tokens of the short class per epoch */
    uint64_t long_slen, short_slen; /* stream tokens (with separators) of long/short items */
    uint64_t long_tok, short_tok;   /* document tokens */
    uint64_t W;                     /* weight, fixed point */
    uint64_t K;                     /* keep threshold for short items, scale 2^32 */
    double share;
    epoch_index ep[EPOCH_CACHE];
    int slots_read; /* the headers of its epoch index files were read (at the domain's first use) */
    uint8_t slot_ok[EPOCH_SLOTS];                                  /* file present, header valid */
    uint64_t slot_epoch[EPOCH_SLOTS], slot_cum[EPOCH_SLOTS], slot_total[EPOCH_SLOTS];
    uint64_t cum_e[CUM_CACHE], cum_v[CUM_CACHE];
    unsigned cum_next;
    /* the background walk of an epoch (lmx_plan_prewalk.c), under the plan's lock */
    uint64_t pre_epoch, pre_cum; /* the epoch asked for and the stream tokens before it */
    int pre_state;               /* 0 none, 1 asked, 2 being walked */
} pdom;

typedef struct piece {
    uint64_t start;    /* position in the block */
    uint64_t item;     /* index in its domain's items */
    uint32_t dom;      /* plan domain */
    uint32_t item_off; /* offset in the item's stream tokens (BOS + tokens + EOS) */
    uint32_t len;
} piece;

/* Block b's pieces covering its positions [lo, hi): from the piece holding lo (its start <= lo)
 * to the one holding hi - 1. A whole block has lo = 0, hi = B. */
typedef struct block {
    uint64_t b, lo, hi;
    piece *pieces;
    uint64_t n;
    int refs;
    uint64_t used;
} block;

struct lmx_plan {
    const lmx_index *ix;
    char *name;
    lmx_plan_spec spec;
    uint8_t id[LMX_PLAN_ID_BYTES];
    char id_hex[2 * LMX_PLAN_ID_BYTES + 1];
    pdom *doms;
    uint32_t n_doms;
    uint64_t B; /* block size in tokens, a multiple of seq_len */
    uint32_t bos_id, eos_id, nsep;
    uint32_t pad_id; /* padded plans (spec.pad_multiple > 1): the token of pad positions */
    uint64_t coin_key;
    pthread_mutex_t lock;
    block *blocks[BLOCK_CACHE];
    uint64_t tick;
    const char **domain_names; /* index domain names, for the wire's domain table */
    json_t *stats_cache;
    uint8_t *table;   /* the mapped item table file holding every domain's items, or NULL (heap) */
    size_t table_size;
    char *table_tmp;  /* its temporary name while it is being built */
    int table_built;  /* the table was built by this process (its epoch 0 indexes are written) */
    int table_lock;   /* 1 + a descriptor of the table file holding flock(LOCK_SH) while it is
                         mapped (lmx__plan_table_gc leaves it alone), 0 = none */
    atomic_uint_fast64_t walks[2]; /* epochs walked: [0] by requests, [1] in the background */
    const atomic_int *stop;        /* the creator's stop flag (lmx__plan_create), or NULL */
    /* the background walker (lmx_plan_prewalk.c); fields under lock */
    pthread_cond_t pre_done; /* broadcast when a background walk ends */
    pthread_t pre_thread;
    int pre_joinable, pre_running;
    atomic_int pre_stop;
};



/* Real stream tokens of an item: [BOS] tokens [EOS]. */
static inline uint64_t rslen(const lmx_plan *p, const item *it) { return it->len + p->nsep; }

/* Positions the item occupies in the stream: its real stream padded to a multiple of
 * pad_multiple. Everything that places items (epoch sums, merge, quotas) counts these. */
static inline uint64_t slen(const lmx_plan *p, const item *it)
{
    const uint64_t m = p->spec.pad_multiple, r = rslen(p, it);
    return m > 1 ? (r + m - 1) / m * m : r;
}

static inline int is_long(const lmx_plan *p, const item *it) { return it->len >= p->spec.long_threshold; }

/* The merge state inside one epoch of a domain (lmx_plan_stream.c). */
#define AHEAD 8 /* items of each class computed (and prefetched) ahead of the merge */
typedef struct cursor {
    perm pl, ps;
    uint64_t E, nl, ns; /* epoch, items per class */
    uint64_t li, si;    /* items taken per class */
    uint64_t lt, st;    /* stream tokens emitted per class */
    uint64_t L, S;
    uint64_t al[AHEAD], as[AHEAD]; /* al[k % AHEAD] = item index of long position k, k in [li, li+AHEAD) */
} cursor;

/* A domain's pieces of one block, one at a time (lmx_plan_stream.c): the item at the current
 * substream position (pending: not yet given), the offset into it and the tokens left to give. */
typedef struct dgen {
    cursor c;
    uint32_t dom;
    int pending;
    uint64_t quota, ii, len, off;
} dgen;

/* ---- item tables in files (lmx_plan_table.c) ---- */
/* Maps DIR/<plan id>.items when it is a valid table of this plan (checksum read once per file
 * identity) and points every domain into it; 1 when done, 0 when the caller must build. */
int lmx__plan_table_load(lmx_plan *p, const char *dir, uint32_t nd);
/* Creates the temporary table file sized for count[d] items per domain, maps it and points
 * each domain's items into it (the caller fills them). LMX_OK, or an error (then use the heap). */
int lmx__plan_table_create(lmx_plan *p, const char *dir, uint32_t nd, const uint64_t *count, lmx_error *err);
/* After the items and sums are in: header, checksum, fsync, rename; the mapping stays (read-only)
 * even when persisting fails (returned error: the table is then rebuilt at the next start). */
int lmx__plan_table_finish(lmx_plan *p, const char *dir, uint32_t nd, lmx_error *err);
/* Unmaps the table (and removes an unfinished temporary file). */
void lmx__plan_table_drop(lmx_plan *p);

/* ---- epoch indexes in files (lmx_plan_epochs.c), for plans with a mapped table ---- */
/* Reads the file of slot `slot` of domain dom into ei (its memory released first; ck then points
 * into the file's mapping, or a heap copy; epoch, cum and total set): 1 when it is a valid file of
 * this plan, domain and epoch `want` (UINT64_MAX: any), else 0 (ei untouched; a damaged file is
 * removed). */
int lmx__plan_epoch_load(const lmx_plan *p, uint32_t dom, unsigned slot, uint64_t want, uint64_t nck, epoch_index *ei);
/* Reads only the header of slot `slot`'s file (epoch, cum, total): 1 when it names this plan,
 * domain and item count, else 0. */
int lmx__plan_epoch_peek(const lmx_plan *p, uint32_t dom, unsigned slot, uint64_t *epoch, uint64_t *cum,
                         uint64_t *total);
/* Writes ei (nck checkpoints, on the heap) to its slot, best effort; then ei uses the file's
 * mapping instead of the heap when it can. */
void lmx__plan_epoch_save(const lmx_plan *p, uint32_t dom, uint64_t nck, epoch_index *ei);
/* Frees ei's checkpoints (heap or mapping); ck NULL. */
void lmx__plan_epoch_release(epoch_index *ei);
/* Items a domain needs for its epoch indexes to go to files (2^16; tests lower it). */
extern uint64_t lmx__plan_epoch_file_min;
/* Walks epoch E of domain dom into ck (lmx__plan_n_ckpt entries); its stream tokens in *total.
 * Reads only what plan creation set, so it runs without the plan's lock. Gives up (LMX_ETIMEOUT)
 * when stop (may be NULL) or the plan's own stop flag is set. */
int lmx__plan_walk_epoch(lmx_plan *p, uint32_t dom, uint64_t E, ckpt *ck, uint64_t *total, const atomic_int *stop,
                         lmx_error *err);
/* Checkpoints of an epoch index of domain d. */
uint64_t lmx__plan_n_ckpt(const pdom *d);
/* The epoch cache entry of d to reuse (invalid or least recently used). Caller holds p->lock. */
epoch_index *lmx__plan_epoch_victim(pdom *d);
/* Computes and writes epoch 0's index of every domain worth a file (after a table was built);
 * stop as for lmx__plan_walk_epoch. */
int lmx__plan_epochs_prepare(lmx_plan *p, const atomic_int *stop, lmx_error *err);

/* Epoch E (cum stream tokens before it) of d in the cache, or NULL. Caller holds p->lock. */
epoch_index *lmx__plan_epoch_cached(pdom *d, uint64_t E, uint64_t cum);
/* The epoch of domain dom holding substream position from, from the cache or a file (no walk),
 * or NULL. Caller holds p->lock. */
epoch_index *lmx__plan_epoch_find(lmx_plan *p, uint32_t dom, uint64_t from);
/* A new index of epoch E (cum stream tokens before it) of domain dom into out: walked into the
 * heap, written to its file, then used through the file's mapping when it can be
 * (lmx__plan_epoch_save). out is owned by the caller (lmx__plan_epoch_release), empty on error;
 * stop as for lmx__plan_walk_epoch. Needs no lock (see lmx__plan_walk_epoch). */
int lmx__plan_epoch_build(lmx_plan *p, uint32_t dom, uint64_t E, uint64_t cum, epoch_index *out,
                          const atomic_int *stop, lmx_error *err);
/* The same for the epoch holding from (found by the epoch sums). Touches only domain dom's own
 * state: callers may run one domain per thread while the caller of lmx__plan_epochs_ready holds
 * p->lock. */
int lmx__plan_epoch_compute(lmx_plan *p, uint32_t dom, uint64_t from, epoch_index *out, lmx_error *err);
/* Moves ei (its ck too) into domain dom's epoch cache unless it is there. Caller holds p->lock. */
void lmx__plan_epoch_put(lmx_plan *p, uint32_t dom, epoch_index *ei);

/* ---- epoch walks off the request path (lmx_plan_prewalk.c) ---- */
/* Initializes the walker's fields (at plan creation). */
void lmx__plan_prewalk_init(lmx_plan *p);
/* Stops the walker and waits for it (at plan free, without p->lock). */
void lmx__plan_prewalk_stop(lmx_plan *p);
/* Before a range is built, with every domain about to start at from[d] (UINT64_MAX: not that
 * domain): waits for a background walk of an epoch the range needs; walks the epochs that are
 * neither cached nor in files one domain per thread, up to the number of cores, when there are
 * two or more (a jump); then, for each domain past the middle of its epoch, makes the next epoch
 * ready (its file read, else a background walk of it asked for, on a domain of >=
 * lmx__plan_epoch_file_min items). Caller holds p->lock, which is released while waiting. Best
 * effort: what fails here is computed again, and reported, by the build. */
void lmx__plan_epochs_ready(lmx_plan *p, const uint64_t *from);

/* ---- spec (lmx_plan_spec.c) ---- */
const char *lmx__plan_strategy_name(int strategy);

/* ---- substreams (lmx_plan_stream.c) ---- */
/* Positions g at domain dom's substream position `from` with `quota` tokens to give (g->off:
 * from's offset in its item, so the item starts at from - g->off). Caller holds p->lock.
 * Errors: LMX_ENOMEM, LMX_EINTERNAL. */
int lmx__plan_dgen_init(lmx_plan *p, uint32_t dom, uint64_t from, uint64_t quota, dgen *g, lmx_error *err);
/* g's next piece (its start left 0) into *out: 1, or 0 when the quota is given. */
int lmx__plan_dgen_next(lmx_plan *p, dgen *g, piece *out);

/* ---- blocks (lmx_plan_blocks.c) ---- */
/* Cumulative quota of every domain at block b into Q[0, n_doms). */
void lmx__plan_quotas(const lmx_plan *p, uint64_t b, uint64_t *Q);
/* Block b with a reference held (release with lmx__plan_put_block); NULL with err set. Caller
 * holds p->lock. */
block *lmx__plan_get_block(lmx_plan *p, uint64_t b, lmx_error *err);
/* The same for block b's pieces covering its positions [lo, hi) only (0 <= lo < hi <= B): work in
 * proportion to hi - lo, not to the block. */
block *lmx__plan_get_range(lmx_plan *p, uint64_t b, uint64_t lo, uint64_t hi, lmx_error *err);
void lmx__plan_put_block(lmx_plan *p, block *k);
/* Index of the piece of k covering block position s. */
uint64_t lmx__plan_find_piece(const block *k, uint64_t s);
/* Frees the block cache (at plan free). */
void lmx__plan_blocks_free(lmx_plan *p);

#endif
