/* Plans: the mixture stream and its packing. The design is in proto/PLANS.md; in short:
 * - each domain has an endless substream: epoch after epoch, its items (documents, or pieces for
 *   `cut`) in a seeded order that merges a permutation of the long ones and one of the short
 *   ones in proportion to their tokens, short items kept by stratified coins;
 * - the global stream is cut into blocks of B tokens; domain d contributes exactly Q_d(b+1) -
 *   Q_d(b) tokens to block b, Q_d(b) = b*B*w_d rounded by largest remainder, so the start of any
 *   block in every substream is known without replay;
 * - inside a block the domains' pieces are interleaved by weighted fair queueing.
 * Everything is integer arithmetic, so replicas on any machine agree bit for bit. */
#include "lmx_plan.h"

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_wire.h"

/* Bump when any change makes some sequence's bytes differ for the same index and spec. */
#define LMX_PLAN_ALGORITHM "longmix-plan-v2"
#define WEIGHT_ONE ((uint64_t)1 << 40) /* weights are fixed point, summing exactly to 2^40 */
#define BLOCK_TARGET ((uint64_t)1 << 26)
#define CKPT_EVERY 64
#define EPOCH_CACHE 4
#define CUM_CACHE 32
#define BLOCK_CACHE 6

/* ---- spec ---- */

static const char *const strategy_names[] = {"original", "cut", "per_source", "global"};

static int get_uint(const json_t *obj, const char *plan, const char *key, uint64_t min, uint64_t max,
                    uint64_t *out, lmx_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return LMX_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min ||
        (uint64_t)json_integer_value(v) > max)
        return lmx__err(err, LMX_EINVAL, "plans.%s.%s: must be an integer in [%llu, %llu]", plan, key,
                        (unsigned long long)min, (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return LMX_OK;
}

static int get_bool(const json_t *obj, const char *plan, const char *key, int *out, lmx_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return LMX_OK;
    if (!json_is_boolean(v))
        return lmx__err(err, LMX_EINVAL, "plans.%s.%s: must be true or false", plan, key);
    *out = json_is_true(v);
    return LMX_OK;
}

int lmx__plan_spec_parse(const char *name, const json_t *obj, lmx_plan_spec *s, lmx_error *err)
{
    static const char *const known[] = {"strategy", "seq_len", "global_batch", "seed", "long_threshold",
                                        "short_keep", "bos", "eos", "cut_len", "total_tokens",
                                        "domain_weights", "cu_seqlens", NULL};
    memset(s, 0, sizeof *s);
    s->seq_len = 131072;
    s->global_batch = 32;
    s->long_threshold = LMX_LONG_THRESHOLD;
    s->short_keep = 1.0;
    s->bos = 1;
    s->cut_len = 4096;
    s->cu_seqlens = 1;
    if (!json_is_object(obj))
        return lmx__err(err, LMX_EINVAL, "plans.%s: must be an object", name);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++)
            ok = strcmp(known[i], key) == 0;
        if (!ok)
            return lmx__err(err, LMX_EINVAL, "plans.%s.%s: unknown key", name, key);
    }
    json_t *st = json_object_get(obj, "strategy");
    if (!json_is_string(st))
        return lmx__err(err, LMX_EINVAL, "plans.%s.strategy: missing (original, cut, per_source or global)", name);
    s->strategy = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(json_string_value(st), strategy_names[i]) == 0)
            s->strategy = i;
    if (s->strategy < 0)
        return lmx__err(err, LMX_EINVAL, "plans.%s.strategy: unknown strategy '%s' (original, cut, per_source, global)",
                        name, json_string_value(st));
    if (s->strategy == LMX_PER_SOURCE || s->strategy == LMX_GLOBAL)
        s->short_keep = 0.1;
    uint64_t u;
    int rc;
    u = s->seq_len;
    if ((rc = get_uint(obj, name, "seq_len", 2, LMX_MAX_SEQ_LEN, &u, err)))
        return rc;
    s->seq_len = (uint32_t)u;
    u = s->global_batch;
    if ((rc = get_uint(obj, name, "global_batch", 1, LMX_MAX_SEQS_PER_BATCH, &u, err)))
        return rc;
    s->global_batch = (uint32_t)u;
    if ((rc = get_uint(obj, name, "seed", 0, UINT64_MAX >> 1, &s->seed, err)) ||
        (rc = get_uint(obj, name, "long_threshold", 1, UINT32_MAX, &s->long_threshold, err)) ||
        (rc = get_uint(obj, name, "cut_len", 1, UINT32_MAX, &s->cut_len, err)) ||
        (rc = get_uint(obj, name, "total_tokens", 1, UINT64_MAX >> 2, &s->total_tokens, err)) ||
        (rc = get_bool(obj, name, "bos", &s->bos, err)) || (rc = get_bool(obj, name, "eos", &s->eos, err)) ||
        (rc = get_bool(obj, name, "cu_seqlens", &s->cu_seqlens, err)))
        return rc;
    json_t *k = json_object_get(obj, "short_keep");
    if (k) {
        if (s->strategy != LMX_PER_SOURCE && s->strategy != LMX_GLOBAL)
            return lmx__err(err, LMX_EINVAL, "plans.%s.short_keep: only per_source and global drop short documents", name);
        if (!json_is_number(k) || !(json_number_value(k) > 0.0 && json_number_value(k) <= 1.0))
            return lmx__err(err, LMX_EINVAL, "plans.%s.short_keep: must be a number in (0, 1]", name);
        s->short_keep = json_number_value(k);
    }
    if (json_object_get(obj, "cut_len") && s->strategy != LMX_CUT)
        return lmx__err(err, LMX_EINVAL, "plans.%s.cut_len: only for strategy cut", name);
    json_t *w = json_object_get(obj, "domain_weights");
    if (w) {
        if (s->strategy != LMX_PER_SOURCE)
            return lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights: only for strategy per_source", name);
        if (!json_is_object(w) || json_object_size(w) == 0 || json_object_size(w) > LMX_MAX_WEIGHTS)
            return lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights: must be a non-empty object of domain -> weight", name);
        double sum = 0;
        json_object_foreach(w, key, v)
        {
            if (!json_is_number(v) || !(json_number_value(v) > 0.0) || !isfinite(json_number_value(v)))
                return lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights.%s: must be a number > 0", name, key);
            s->weight_names[s->n_weights] = strdup(key);
            s->weights[s->n_weights++] = json_number_value(v);
            sum += json_number_value(v);
        }
        if (!(sum > 0))
            return lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights: all zero", name);
    }
    if (s->global_batch == 0)
        return lmx__err(err, LMX_EINVAL, "plans.%s.global_batch: must be >= 1", name);
    return LMX_OK;
}

void lmx__plan_spec_free(lmx_plan_spec *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->n_weights; i++)
        free(s->weight_names[i]);
    s->n_weights = 0;
}

json_t *lmx__plan_spec_json(const lmx_plan_spec *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "strategy", json_string(strategy_names[s->strategy]));
    json_object_set_new(o, "seq_len", json_integer(s->seq_len));
    json_object_set_new(o, "global_batch", json_integer(s->global_batch));
    json_object_set_new(o, "seed", json_integer((json_int_t)s->seed));
    json_object_set_new(o, "long_threshold", json_integer((json_int_t)s->long_threshold));
    json_object_set_new(o, "short_keep", json_real(s->short_keep));
    json_object_set_new(o, "bos", json_boolean(s->bos));
    json_object_set_new(o, "eos", json_boolean(s->eos));
    if (s->strategy == LMX_CUT)
        json_object_set_new(o, "cut_len", json_integer((json_int_t)s->cut_len));
    if (s->total_tokens)
        json_object_set_new(o, "total_tokens", json_integer((json_int_t)s->total_tokens));
    json_object_set_new(o, "cu_seqlens", json_boolean(s->cu_seqlens));
    if (s->n_weights) {
        json_t *w = json_object();
        for (uint32_t i = 0; i < s->n_weights; i++)
            json_object_set_new(w, s->weight_names[i], json_real(s->weights[i]));
        json_object_set_new(o, "domain_weights", w);
    }
    return o;
}

/* ---- integer helpers ---- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* 64x64 -> 128 multiply, portable. */
static void mul128(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
    *lo = (mid << 32) | (uint32_t)p00;
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

/* floor((a*b + add) / 2^shift) for shift in (0, 64), assuming the result fits in 64 bits. */
static uint64_t mul_add_shr(uint64_t a, uint64_t b, uint64_t add, unsigned shift, uint64_t *rem)
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
    ckpt *ck;
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
    uint64_t cum_e[CUM_CACHE], cum_v[CUM_CACHE];
    unsigned cum_next;
} pdom;

typedef struct piece {
    uint64_t start;    /* position in the block */
    uint64_t item;     /* index in its domain's items */
    uint32_t dom;      /* plan domain */
    uint32_t item_off; /* offset in the item's stream tokens (BOS + tokens + EOS) */
    uint32_t len;
} piece;

typedef struct block {
    uint64_t b;
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
    uint64_t coin_key;
    pthread_mutex_t lock;
    block *blocks[BLOCK_CACHE];
    uint64_t tick;
    const char **domain_names; /* index domain names, for the wire's domain table */
    json_t *stats_cache;
};

static uint64_t slen(const lmx_plan *p, const item *it) { return it->len + p->nsep; }

static int is_long(const lmx_plan *p, const item *it) { return it->len >= p->spec.long_threshold; }

static uint32_t coin(const lmx_plan *p, uint64_t doc) { return (uint32_t)(mix64(doc ^ p->coin_key) >> 32); }

/* Stratified coins: a short item is kept in epoch e iff (U + e*K) mod 2^32 >= 2^32 - K, so each
 * epoch keeps it with probability K/2^32, and over any E epochs it was kept exactly
 * floor((U + E*K) / 2^32) times: epoch sums have a closed form (no replay). */
static int kept(const lmx_plan *p, const pdom *d, const item *it, uint64_t e)
{
    if (d->K == ((uint64_t)1 << 32) || is_long(p, it))
        return 1;
    uint64_t x = (coin(p, it->doc) + e * d->K) & 0xffffffffu;
    return x >= ((uint64_t)1 << 32) - d->K;
}

/* The permutation of one class of domain dom's items in epoch `epoch`: n items, `tag` "lmx-perL"
 * (long class) or "lmx-perS" (short class). */
static void perm_init(perm *pm, const lmx_plan *p, uint32_t dom, uint64_t epoch, const char *tag, uint64_t n)
{
    pm->n = n;
    unsigned bits = 2;
    while (bits < 62 && ((uint64_t)1 << bits) < pm->n)
        bits++;
    pm->lbits = (bits + 1) / 2;
    pm->rbits = bits / 2;
    uint8_t msg[64], out[32];
    memset(msg, 0, sizeof msg);
    memcpy(msg, tag, 8);
    lmx__put64(msg + 8, p->spec.seed);
    lmx__put64(msg + 16, epoch);
    const char *dn = lmx__index_domain_name(p->ix, p->doms[dom].ixdom);
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, sizeof out);
    crypto_generichash_update(&hs, msg, 24);
    crypto_generichash_update(&hs, (const uint8_t *)dn, strlen(dn));
    crypto_generichash_final(&hs, out, sizeof out);
    for (int i = 0; i < 4; i++)
        pm->keys[i] = lmx__get64(out + 8 * i);
}

/* Feistel network on bits = max(2, ceil(log2 n)) bits with cycle walking: a bijection on [0, n)
 * (fewer than 2 tries expected). The halves have lbits = ceil(bits/2) and rbits = floor(bits/2)
 * bits; each round swaps them, so after the 4 rounds they have their original widths again. */
static uint64_t perm_apply(const perm *pm, uint64_t x)
{
    if (pm->n <= 1)
        return 0;
    const unsigned rb = pm->rbits;
    const uint64_t lmask = ((uint64_t)1 << pm->lbits) - 1, rmask = ((uint64_t)1 << rb) - 1;
    do {
        uint64_t l = x >> rb, r = x & rmask, t; /* l: lbits wide, r: rbits wide */
        t = l ^ (mix64(r ^ pm->keys[0]) & lmask); /* -> (r: rbits, t: lbits) */
        l = r ^ (mix64(t ^ pm->keys[1]) & rmask); /* -> (t: lbits, l: rbits) */
        r = t ^ (mix64(l ^ pm->keys[2]) & lmask); /* -> (l: rbits, r: lbits) */
        t = l ^ (mix64(r ^ pm->keys[3]) & rmask); /* -> (r: lbits, t: rbits) */
        x = (r << rb) | t;
    } while (x >= pm->n);
    return x;
}

/* Stream tokens of domain d in epochs [0, E). */
static uint64_t cum_tokens(lmx_plan *p, pdom *d, uint64_t E)
{
    if (E == 0)
        return 0;
    for (unsigned i = 0; i < CUM_CACHE; i++)
        if (d->cum_e[i] == E && d->cum_v[i])
            return d->cum_v[i];
    uint64_t total = d->long_slen * E;
    if (d->K == ((uint64_t)1 << 32)) /* every item is kept in every epoch */
        total += d->short_slen * E;
    else if (d->short_slen) {
        for (uint64_t i = 0; i < d->n; i++) {
            const item *it = &d->items[i];
            if (!is_long(p, it))
                total += slen(p, it) * mul_add_shr(E, d->K, coin(p, it->doc), 32, NULL);
        }
    }
    d->cum_e[d->cum_next] = E;
    d->cum_v[d->cum_next] = total;
    d->cum_next = (d->cum_next + 1) % CUM_CACHE;
    return total;
}

/* The epoch holding substream position pos: the largest E with cum_tokens(E) <= pos. */
static uint64_t find_epoch(lmx_plan *p, pdom *d, uint64_t pos)
{
    double rate = (double)d->long_slen + (double)d->short_slen * ((double)d->K / 4294967296.0);
    double S = (double)d->short_slen;
    double lo_d = floor(((double)pos - S) / rate) - 1, hi_d = floor(((double)pos + S) / rate) + 2;
    uint64_t lo = lo_d > 0 ? (uint64_t)lo_d : 0, hi = (uint64_t)hi_d;
    /* The bounds come from |cum(E) - E*rate| <= S; widen if rounding made them wrong. */
    while (lo > 0 && cum_tokens(p, d, lo) > pos)
        lo /= 2;
    while (cum_tokens(p, d, hi) <= pos)
        hi = hi * 2 + 1;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (cum_tokens(p, d, mid) <= pos)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* a*b < c*d, exactly (64x64 -> 128-bit products). */
static int mul_lt(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    if (((a | b | c | d) >> 32) == 0)
        return a * b < c * d;
    uint64_t h1, l1, h2, l2;
    mul128(a, b, &h1, &l1);
    mul128(c, d, &h2, &l2);
    return h1 < h2 || (h1 == h2 && l1 < l2);
}

/* The order of one epoch of a domain: the token-proportional merge of two seeded permutations,
 * one of the long-class items (document length >= long_threshold), one of the short-class
 * items. The next item is long when long items remain and either no short items remain or
 * lt*S < st*L (lt/st: stream tokens emitted so far by each class in this epoch; L: stream
 * tokens of the long class, S: kept stream tokens of the short class in an average epoch,
 * floor(short class stream tokens * K / 2^32); exact 128-bit products); else it is the next
 * short item (one that its coin drops in this epoch emits 0 tokens and is passed over). Ties,
 * e.g. at the start of an epoch, go to the short class, so an epoch does not open with its
 * heaviest kind of item. The long share of every prefix of the epoch is L/(L+S), the issue's
 * target, up to about one item, until a class runs out: the epoch's coins may keep a little
 * more or less than S, and that difference comes as a run at the end of the epoch. */
#define AHEAD 8 /* items of each class computed (and prefetched) ahead of the merge */
typedef struct cursor {
    perm pl, ps;
    uint64_t E, nl, ns; /* epoch, items per class */
    uint64_t li, si;    /* items taken per class */
    uint64_t lt, st;    /* stream tokens emitted per class */
    uint64_t L, S;
    uint64_t al[AHEAD], as[AHEAD]; /* al[k % AHEAD] = item index of long position k, k in [li, li+AHEAD) */
} cursor;

/* Item index of long (short) position k, prefetched. */
static uint64_t ahead_long(const pdom *d, const cursor *c, uint64_t k)
{
    uint64_t ii = perm_apply(&c->pl, k);
    LMX_PREFETCH(&d->items[ii]);
    return ii;
}

static uint64_t ahead_short(const pdom *d, const cursor *c, uint64_t k)
{
    uint64_t ii = c->nl + perm_apply(&c->ps, k);
    LMX_PREFETCH(&d->items[ii]);
    return ii;
}

/* Puts the merge at li/si items taken and lt/st tokens emitted (the state of a checkpoint). */
static void cursor_seek(cursor *c, const pdom *d, uint64_t li, uint64_t si, uint64_t lt, uint64_t st)
{
    c->li = li;
    c->si = si;
    c->lt = lt;
    c->st = st;
    for (uint64_t k = li; k < li + AHEAD && k < c->nl; k++)
        c->al[k % AHEAD] = ahead_long(d, c, k);
    for (uint64_t k = si; k < si + AHEAD && k < c->ns; k++)
        c->as[k % AHEAD] = ahead_short(d, c, k);
}

static void cursor_init(cursor *c, const lmx_plan *p, const pdom *d, uint32_t dom, uint64_t E)
{
    c->E = E;
    c->nl = d->n_long;
    c->ns = d->n - d->n_long;
    perm_init(&c->pl, p, dom, E, "lmx-perL", c->nl);
    perm_init(&c->ps, p, dom, E, "lmx-perS", c->ns);
    c->L = d->cls_long_slen;
    c->S = d->cls_short_kept;
    cursor_seek(c, d, 0, 0, 0, 0);
}

/* Takes the next item of the epoch (there must be one): its index in d->items; its stream tokens
 * in this epoch (0 when dropped) in *len. */
static uint64_t cursor_next(const lmx_plan *p, const pdom *d, cursor *c, uint64_t *len)
{
    if (c->li < c->nl && (c->si == c->ns || mul_lt(c->lt, c->S, c->st, c->L))) {
        uint64_t ii = c->al[c->li % AHEAD];
        if (c->li + AHEAD < c->nl)
            c->al[c->li % AHEAD] = ahead_long(d, c, c->li + AHEAD);
        c->li++;
        *len = slen(p, &d->items[ii]);
        c->lt += *len;
        return ii;
    }
    uint64_t ii = c->as[c->si % AHEAD];
    if (c->si + AHEAD < c->ns)
        c->as[c->si % AHEAD] = ahead_short(d, c, c->si + AHEAD);
    c->si++;
    const item *it = &d->items[ii];
    *len = kept(p, d, it, c->E) ? slen(p, it) : 0;
    c->st += *len;
    return ii;
}

static epoch_index *get_epoch_index(lmx_plan *p, pdom *d, uint32_t dom, uint64_t E, lmx_error *err)
{
    epoch_index *victim = &d->ep[0];
    for (int i = 0; i < EPOCH_CACHE; i++) {
        if (d->ep[i].valid && d->ep[i].epoch == E) {
            d->ep[i].used = ++p->tick;
            return &d->ep[i];
        }
        if (!d->ep[i].valid || d->ep[i].used < victim->used)
            victim = &d->ep[i];
    }
    uint64_t nck = d->n / CKPT_EVERY + 2;
    ckpt *ck = victim->ck ? victim->ck : malloc(nck * sizeof *ck);
    if (!ck) {
        lmx__err(err, LMX_ENOMEM, "plan %s: out of memory for the epoch index", p->name);
        return NULL;
    }
    victim->ck = ck;
    victim->valid = 0;
    cursor c;
    cursor_init(&c, p, d, dom, E);
    for (uint64_t j = 0; j < d->n; j++) {
        if (j % CKPT_EVERY == 0)
            ck[j / CKPT_EVERY] = (ckpt){c.li, c.lt, c.lt + c.st};
        uint64_t len;
        cursor_next(p, d, &c, &len);
    }
    if (c.lt != c.L) {
        lmx__err(err, LMX_EINTERNAL, "plan %s: epoch %llu of %s has %llu long stream tokens, want %llu", p->name,
                 (unsigned long long)E, lmx__index_domain_name(p->ix, d->ixdom), (unsigned long long)c.lt,
                 (unsigned long long)c.L);
        return NULL;
    }
    victim->valid = 1;
    victim->epoch = E;
    victim->total = c.lt + c.st;
    victim->used = ++p->tick;
    return victim;
}

/* ---- plan creation ---- */

int lmx__plan_create(const lmx_index *ix, const char *name, const lmx_plan_spec *spec, lmx_plan **out, lmx_error *err)
{
    *out = NULL;
    if (sodium_init() < 0)
        return lmx__err(err, LMX_EINTERNAL, "libsodium failed to initialize");
    lmx_plan *p = calloc(1, sizeof *p);
    if (!p)
        return lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", name);
    pthread_mutex_init(&p->lock, NULL);
    p->ix = ix;
    p->name = strdup(name);
    p->spec = *spec;
    for (uint32_t i = 0; i < spec->n_weights; i++)
        p->spec.weight_names[i] = strdup(spec->weight_names[i]);
    int rc = LMX_OK;
    uint32_t nd = lmx__index_n_domains(ix);
    if (lmx__index_n_docs(ix) == 0) {
        rc = lmx__err(err, LMX_EINVAL, "plan %s: the index has no documents", name);
        goto fail;
    }
    p->bos_id = lmx__index_bos(ix);
    p->eos_id = lmx__index_eos(ix);
    if ((spec->bos && p->bos_id == UINT32_MAX) || (spec->eos && p->eos_id == UINT32_MAX)) {
        rc = lmx__err(err, LMX_EINVAL, "plans.%s.%s: the index's tokenizer has no such token", name, spec->bos ? "bos" : "eos");
        goto fail;
    }
    p->nsep = (uint32_t)(spec->bos != 0) + (uint32_t)(spec->eos != 0);
    p->B = (uint64_t)spec->seq_len * ((BLOCK_TARGET + spec->seq_len - 1) / spec->seq_len);
    {
        uint8_t h[8];
        uint8_t msg[16] = "lmx-coin";
        lmx__put64(msg + 8, spec->seed);
        crypto_generichash(h, sizeof h, msg, sizeof msg, NULL, 0);
        p->coin_key = lmx__get64(h);
    }
    p->domain_names = calloc(nd + 1, sizeof *p->domain_names);
    p->doms = calloc(nd + 1, sizeof *p->doms);
    if (!p->domain_names || !p->doms) {
        rc = lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", name);
        goto fail;
    }
    for (uint32_t d = 0; d < nd; d++)
        p->domain_names[d] = lmx__index_domain_name(ix, d);
    for (uint32_t i = 0; i < spec->n_weights; i++)
        if (lmx__index_domain_find(ix, spec->weight_names[i]) < 0) {
            rc = lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights.%s: no such domain in the index", name,
                          spec->weight_names[i]);
            goto fail;
        }
    /* Items per domain, in document order: those of long documents first (the long class, see
     * cursor), then the others. */
    {
        uint64_t *count = calloc(2 * (nd + 1), sizeof *count), *nlong = count ? count + nd + 1 : NULL;
        if (!count) {
            rc = lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", name);
            goto fail;
        }
        uint64_t n_docs = lmx__index_n_docs(ix);
        for (uint64_t id = 0; id < n_docs; id++) {
            uint64_t len;
            uint32_t dm;
            lmx__index_doc_meta(ix, id, &len, &dm);
            if (len == 0)
                continue;
            if (spec->strategy != LMX_CUT && len > UINT32_MAX) {
                free(count);
                rc = lmx__err(err, LMX_EUNSUPPORTED, "plan %s: document %llu has %llu tokens (limit 2^32)", name,
                              (unsigned long long)id, (unsigned long long)len);
                goto fail;
            }
            uint64_t k = spec->strategy == LMX_CUT ? (len + spec->cut_len - 1) / spec->cut_len : 1;
            count[dm] += k;
            if (len >= spec->long_threshold)
                nlong[dm] += k;
        }
        for (uint32_t d = 0; d < nd; d++) {
            p->doms[d].ixdom = d;
            p->doms[d].n_long = nlong[d];
            p->doms[d].items = count[d] ? malloc(count[d] * sizeof(item)) : NULL;
            if (count[d] && !p->doms[d].items) {
                unsigned long long wanted = (unsigned long long)count[d];
                free(count);
                rc = lmx__err(err, LMX_ENOMEM, "plan %s: out of memory for %llu items", name, wanted);
                goto fail;
            }
        }
        uint64_t *nl = count; /* reused: long-class items placed so far per domain */
        memset(nl, 0, (nd + 1) * sizeof *nl);
        for (uint64_t id = 0; id < n_docs; id++) {
            uint64_t len;
            uint32_t dm;
            lmx__index_doc_meta(ix, id, &len, &dm);
            pdom *d = &p->doms[dm];
            int cls_long = len >= spec->long_threshold;
            uint64_t step = spec->strategy == LMX_CUT ? spec->cut_len : len;
            for (uint64_t off = 0, k = 0; off < len; off += step, k++) {
                item *it = &d->items[cls_long ? nl[dm]++ : d->n_long + (d->n - nl[dm])];
                d->n++;
                it->doc = id;
                it->piece = (uint32_t)k;
                it->len = (uint32_t)(len - off < step ? len - off : step);
                if (cls_long)
                    d->cls_long_slen += slen(p, it);
                if (is_long(p, it)) {
                    d->long_slen += slen(p, it);
                    d->long_tok += it->len;
                } else {
                    d->short_slen += slen(p, it);
                    d->short_tok += it->len;
                }
            }
        }
        free(count);
    }
    /* Keep rates and raw weights. */
    {
        double k = (spec->strategy == LMX_PER_SOURCE || spec->strategy == LMX_GLOBAL) ? spec->short_keep : 1.0;
        uint64_t K = (uint64_t)llround(k * 4294967296.0);
        if (K < 1)
            K = 1;
        double *raw = calloc(nd + 1, sizeof *raw), sum = 0, natural_total = 0;
        for (uint32_t d = 0; d < nd; d++)
            natural_total += (double)(p->doms[d].long_tok + p->doms[d].short_tok);
        for (uint32_t d = 0; d < nd; d++) {
            pdom *pd = &p->doms[d];
            pd->K = K;
            pd->cls_short_kept = mul_add_shr(pd->long_slen + pd->short_slen - pd->cls_long_slen, K, 0, 32, NULL);
            if (pd->n == 0)
                continue;
            switch (spec->strategy) {
            case LMX_PER_SOURCE:
                raw[d] = (double)(pd->long_tok + pd->short_tok) / natural_total;
                for (uint32_t i = 0; i < spec->n_weights; i++)
                    if (strcmp(spec->weight_names[i], lmx__index_domain_name(ix, d)) == 0)
                        raw[d] = spec->weights[i];
                break;
            case LMX_GLOBAL:
                raw[d] = (double)pd->long_slen + (double)pd->short_slen * ((double)K / 4294967296.0);
                break;
            default:
                raw[d] = (double)(pd->long_slen + pd->short_slen);
            }
            sum += raw[d];
        }
        for (uint32_t i = 0; i < spec->n_weights; i++) {
            int d = lmx__index_domain_find(ix, spec->weight_names[i]);
            if (p->doms[d].n == 0) {
                free(raw);
                rc = lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights.%s: the domain has no tokens", name,
                              spec->weight_names[i]);
                goto fail;
            }
        }
        /* per_source's shares are of document tokens, but quotas count stream tokens (with the
         * separators): scale each share by its domain's stream/document tokens of one epoch, so
         * that domains of short documents (more separators per token) still get their share. */
        double ssum = 0;
        for (uint32_t d = 0; d < nd; d++) {
            const pdom *pd = &p->doms[d];
            p->doms[d].share = raw[d] / sum;
            double ktok = (double)pd->long_tok + (double)pd->short_tok * ((double)K / 4294967296.0);
            double kslen = (double)pd->long_slen + (double)pd->short_slen * ((double)K / 4294967296.0);
            if (spec->strategy == LMX_PER_SOURCE && pd->n && ktok > 0)
                raw[d] = p->doms[d].share * (kslen / ktok);
            else
                raw[d] = p->doms[d].share;
            ssum += raw[d];
        }
        /* Fixed point weights summing to exactly 2^40 (remainder to the largest). */
        uint64_t acc = 0;
        uint32_t largest = 0;
        for (uint32_t d = 0; d < nd; d++) {
            p->doms[d].W = (uint64_t)floor(raw[d] / ssum * (double)WEIGHT_ONE);
            if (p->doms[d].n && p->doms[d].W == 0)
                p->doms[d].W = 1;
            acc += p->doms[d].W;
            if (p->doms[d].W > p->doms[largest].W)
                largest = d;
        }
        p->doms[largest].W += WEIGHT_ONE - acc;
        free(raw);
        for (uint32_t d = 0; d < nd; d++)
            if (p->doms[d].n && p->doms[d].W * p->B < WEIGHT_ONE) {
                rc = lmx__err(err, LMX_EINVAL, "plan %s: domain %s's weight %.3g is below 1/%llu, the block size", name,
                              lmx__index_domain_name(ix, d), p->doms[d].share, (unsigned long long)p->B);
                goto fail;
            }
    }
    p->n_doms = nd;
    /* Plan id: BLAKE2b of the stream algorithm's version, the index identity and the canonical
     * resolved spec. The version makes replicas running different releases of the algorithm
     * disagree on the id (clients then refuse to mix their batches) instead of on the bytes. */
    {
        json_t *sj = lmx__plan_spec_json(&p->spec);
        char *txt = sj ? json_dumps(sj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(sj);
        if (!txt) {
            rc = lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", name);
            goto fail;
        }
        const char *iid = lmx__index_identity(ix);
        crypto_generichash_state hs;
        crypto_generichash_init(&hs, NULL, 0, LMX_PLAN_ID_BYTES);
        crypto_generichash_update(&hs, (const uint8_t *)LMX_PLAN_ALGORITHM, sizeof LMX_PLAN_ALGORITHM);
        crypto_generichash_update(&hs, (const uint8_t *)iid, strlen(iid) + 1);
        crypto_generichash_update(&hs, (const uint8_t *)txt, strlen(txt));
        crypto_generichash_final(&hs, p->id, LMX_PLAN_ID_BYTES);
        lmx__hex(p->id, LMX_PLAN_ID_BYTES, p->id_hex);
        free(txt);
    }
    *out = p;
    return LMX_OK;
fail:
    lmx__plan_free(p);
    return rc;
}

void lmx__plan_free(lmx_plan *p)
{
    if (!p)
        return;
    for (uint32_t d = 0; p->doms && d < lmx__index_n_domains(p->ix); d++) {
        free(p->doms[d].items);
        for (int i = 0; i < EPOCH_CACHE; i++)
            free(p->doms[d].ep[i].ck);
    }
    for (int i = 0; i < BLOCK_CACHE; i++)
        if (p->blocks[i]) {
            free(p->blocks[i]->pieces);
            free(p->blocks[i]);
        }
    free(p->doms);
    free(p->domain_names);
    json_decref(p->stats_cache);
    lmx__plan_spec_free(&p->spec);
    pthread_mutex_destroy(&p->lock);
    free(p->name);
    free(p);
}

const char *lmx__plan_name(const lmx_plan *p) { return p->name; }
const lmx_plan_spec *lmx__plan_spec(const lmx_plan *p) { return &p->spec; }
const char *lmx__plan_id_hex(const lmx_plan *p) { return p->id_hex; }
const uint8_t *lmx__plan_id(const lmx_plan *p) { return p->id; }

uint64_t lmx__plan_max_steps(const lmx_plan *p)
{
    if (!p->spec.total_tokens)
        return UINT64_MAX;
    return p->spec.total_tokens / ((uint64_t)p->spec.global_batch * p->spec.seq_len);
}

/* ---- blocks ---- */

/* Cumulative quota of every domain at block b (sum exactly b*B): floors of b*B*W/2^40 plus one
 * token for the domains with the largest remainders. */
static void quotas(const lmx_plan *p, uint64_t b, uint64_t *Q)
{
    uint64_t pos = b * p->B, sum = 0;
    uint64_t *rem = malloc((p->n_doms + 1) * sizeof *rem);
    for (uint32_t d = 0; d < p->n_doms; d++) {
        Q[d] = mul_add_shr(pos, p->doms[d].W, 0, 40, &rem[d]);
        sum += Q[d];
    }
    for (uint64_t left = pos - sum; left > 0; left--) {
        uint32_t best = UINT32_MAX;
        for (uint32_t d = 0; d < p->n_doms; d++)
            if (p->doms[d].W && rem[d] != UINT64_MAX && (best == UINT32_MAX || rem[d] > rem[best]))
                best = d;
        Q[best]++;
        rem[best] = UINT64_MAX; /* each domain gets at most one */
    }
    free(rem);
}

typedef struct piece_list {
    piece *v;
    uint64_t n, cap;
} piece_list;

static int pl_push(piece_list *l, const piece *pc)
{
    if (l->n == l->cap) {
        uint64_t cap = l->cap ? l->cap * 2 : 1024;
        piece *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return LMX_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *pc;
    return LMX_OK;
}

/* Domain dom's pieces covering substream [from, from + quota). */
static int domain_pieces(lmx_plan *p, uint32_t dom, uint64_t from, uint64_t quota, piece_list *out, lmx_error *err)
{
    pdom *d = &p->doms[dom];
    if (quota == 0)
        return LMX_OK;
    uint64_t E = find_epoch(p, d, from);
    uint64_t r = from - cum_tokens(p, d, E);
    epoch_index *ei = get_epoch_index(p, d, dom, E, err);
    if (!ei)
        return err ? err->code : LMX_EINTERNAL;
    /* Last checkpoint at or before r, then resume the merge from it. */
    uint64_t lo = 0, hi = d->n / CKPT_EVERY + (d->n % CKPT_EVERY ? 1 : 0);
    while (hi - lo > 1) {
        uint64_t mid = (lo + hi) / 2;
        if (ei->ck[mid].cum <= r)
            lo = mid;
        else
            hi = mid;
    }
    cursor c;
    cursor_init(&c, p, d, dom, E);
    cursor_seek(&c, d, ei->ck[lo].li, lo * CKPT_EVERY - ei->ck[lo].li, ei->ck[lo].lt, ei->ck[lo].cum - ei->ck[lo].lt);
    uint64_t off = 0, ii, len;
    for (;;) {
        if (c.li + c.si == d->n) {
            lmx__err(err, LMX_EINTERNAL, "plan %s: epoch index of %s disagrees with the epoch sums", p->name,
                     lmx__index_domain_name(p->ix, d->ixdom));
            return LMX_EINTERNAL;
        }
        uint64_t acc = c.lt + c.st;
        ii = cursor_next(p, d, &c, &len);
        if (r < acc + len) {
            off = r - acc;
            break;
        }
    }
    /* Emit pieces from (E, item ii, off) on, crossing into later epochs as needed. */
    for (;;) {
        if (len > 0) {
            uint64_t take = len - off;
            if (take > quota)
                take = quota;
            piece pc = {0, ii, dom, (uint32_t)off, (uint32_t)take};
            if (pl_push(out, &pc) != LMX_OK)
                return lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", p->name);
            quota -= take;
            off = 0;
        }
        if (quota == 0)
            break;
        if (c.li + c.si == d->n)
            cursor_init(&c, p, d, dom, c.E + 1);
        ii = cursor_next(p, d, &c, &len);
    }
    return LMX_OK;
}

static block *build_block(lmx_plan *p, uint64_t b, lmx_error *err)
{
    uint32_t nd = p->n_doms;
    uint64_t *Q0 = calloc(nd + 1, sizeof *Q0), *Q1 = calloc(nd + 1, sizeof *Q1);
    piece_list *per = calloc(nd + 1, sizeof *per);
    block *blk = calloc(1, sizeof *blk);
    uint64_t *pos = calloc(nd + 1, sizeof *pos), *used = calloc(nd + 1, sizeof *used);
    int rc = (Q0 && Q1 && per && blk && pos && used) ? LMX_OK : lmx__err(err, LMX_ENOMEM, "plan: out of memory");
    if (rc == LMX_OK) {
        quotas(p, b, Q0);
        quotas(p, b + 1, Q1);
    }
    uint64_t total = 0;
    for (uint32_t d = 0; rc == LMX_OK && d < nd; d++) {
        rc = domain_pieces(p, d, Q0[d], Q1[d] - Q0[d], &per[d], err);
        total += per[d].n;
    }
    if (rc == LMX_OK && !(blk->pieces = malloc((total + 1) * sizeof *blk->pieces)))
        rc = lmx__err(err, LMX_ENOMEM, "plan: out of memory");
    /* Weighted fair queueing: next is the domain whose next piece finishes earliest relative to
     * its quota, (used + len) / quota, compared exactly by cross-multiplication. A domain's first
     * piece that continues an item from the previous block goes first (highest domain first),
     * matching the tie order at the end of a block, so the item that ended the last block
     * usually continues at the start of this one. */
    uint64_t at = 0;
    while (rc == LMX_OK && blk->n < total) {
        uint32_t best = UINT32_MAX;
        int best_cont = 0;
        for (uint32_t d = 0; d < nd; d++) {
            if (pos[d] == per[d].n)
                continue;
            const piece *pc = &per[d].v[pos[d]];
            int cont = pos[d] == 0 && pc->item_off > 0;
            if (best == UINT32_MAX) {
                best = d;
                best_cont = cont;
                continue;
            }
            if (cont || best_cont) {
                if (cont)
                    best = d, best_cont = 1; /* later (higher) domains win among continuations */
                continue;
            }
            uint64_t qa = Q1[d] - Q0[d], qb = Q1[best] - Q0[best];
            uint64_t fa = used[d] + pc->len, fb = used[best] + per[best].v[pos[best]].len;
            if (fa * qb < fb * qa)
                best = d;
        }
        piece pc = per[best].v[pos[best]++];
        used[best] += pc.len;
        pc.start = at;
        at += pc.len;
        blk->pieces[blk->n++] = pc;
    }
    if (rc == LMX_OK && at != p->B)
        rc = lmx__err(err, LMX_EINTERNAL, "plan %s: block %llu has %llu tokens, want %llu", p->name,
                      (unsigned long long)b, (unsigned long long)at, (unsigned long long)p->B);
    for (uint32_t d = 0; per && d < nd; d++)
        free(per[d].v);
    free(per);
    free(Q0);
    free(Q1);
    free(pos);
    free(used);
    if (rc != LMX_OK) {
        if (blk)
            free(blk->pieces);
        free(blk);
        return NULL;
    }
    blk->b = b;
    return blk;
}

/* Returns block b with a reference held (release with put_block). Caller holds p->lock. */
static block *get_block(lmx_plan *p, uint64_t b, lmx_error *err)
{
    int victim = -1;
    for (int i = 0; i < BLOCK_CACHE; i++) {
        block *k = p->blocks[i];
        if (k && k->b == b) {
            k->refs++;
            k->used = ++p->tick;
            return k;
        }
        if (!k || (k->refs == 0 && (victim < 0 || !p->blocks[victim] || (p->blocks[victim] && k->used < p->blocks[victim]->used))))
            if (victim < 0 || p->blocks[victim])
                victim = i;
    }
    block *k = build_block(p, b, err);
    if (!k)
        return NULL;
    k->refs = 1;
    k->used = ++p->tick;
    if (victim >= 0) {
        block *old = p->blocks[victim];
        if (old) {
            free(old->pieces);
            free(old);
        }
        p->blocks[victim] = k;
    }
    /* else: every cached block is in use; k is returned uncached and freed on release. */
    return k;
}

static void put_block(lmx_plan *p, block *k)
{
    k->refs--;
    for (int i = 0; i < BLOCK_CACHE; i++)
        if (p->blocks[i] == k)
            return;
    free(k->pieces);
    free(k);
}

static uint64_t find_piece(const block *k, uint64_t s)
{
    uint64_t lo = 0, hi = k->n;
    while (hi - lo > 1) {
        uint64_t mid = (lo + hi) / 2;
        if (k->pieces[mid].start <= s)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static void put_token(uint8_t *dst, uint32_t tb, uint32_t v)
{
    if (tb == 2)
        lmx__put16(dst, (uint16_t)v);
    else
        lmx__put32(dst, v);
}

/* Token at stream position s of block k. */
static uint32_t token_at(const lmx_plan *p, const block *k, uint64_t s)
{
    const piece *pc = &k->pieces[find_piece(k, s)];
    uint64_t o = pc->item_off + (s - pc->start);
    const item *it = &p->doms[pc->dom].items[pc->item];
    if (p->spec.bos && o == 0)
        return p->bos_id;
    o -= p->spec.bos ? 1 : 0;
    if (o >= it->len)
        return p->eos_id;
    lmx_doc doc;
    lmx__index_doc(p->ix, it->doc, &doc, NULL);
    return lmx__doc_token(&doc, (uint64_t)it->piece * p->spec.cut_len * (p->spec.strategy == LMX_CUT) + o);
}

/* Writes global sequence g into sequence slot `slot` of the writer. Caller holds p->lock. */
static int write_sequence(lmx_plan *p, uint64_t g, lmx_wire_writer *w, uint32_t slot, lmx_error *err)
{
    const uint32_t L = p->spec.seq_len, tb = w->h.token_bytes;
    uint64_t pos = g * L, b = pos / p->B, s0 = pos % p->B;
    block *k = get_block(p, b, err);
    if (!k)
        return err ? err->code : LMX_ENOMEM;
    uint8_t *dst = lmx__wire_tokens(w, slot);
    int rc = LMX_OK;
    if (p->spec.cu_seqlens)
        rc = lmx__wire_add_cu(w, 0);
    uint64_t i = find_piece(k, s0);
    uint32_t filled = 0;
    while (rc == LMX_OK && filled < L) {
        const piece *pc = &k->pieces[i++];
        const item *it = &p->doms[pc->dom].items[pc->item];
        uint64_t skip = s0 + filled - pc->start; /* tokens of this piece before the sequence */
        uint64_t o = pc->item_off + skip, end = (uint64_t)pc->item_off + pc->len;
        if (end - o > L - filled)
            end = o + (L - filled);
        /* Every piece after the first is another document segment, also a piece that continues
         * an item cut by the previous block (it has no BOS and need not follow its first part). */
        if (filled > 0 && p->spec.cu_seqlens)
            rc = lmx__wire_add_cu(w, (int32_t)filled);
        /* item stream: [BOS] tokens [EOS] */
        if (p->spec.bos && o == 0 && o < end) {
            put_token(dst + (size_t)filled * tb, tb, p->bos_id);
            filled++;
            o++;
        }
        uint64_t t0 = o - (p->spec.bos ? 1 : 0), t1 = end - (p->spec.bos ? 1 : 0);
        if (t1 > it->len)
            t1 = it->len;
        if (t0 < t1) {
            lmx_doc doc;
            lmx__index_doc(p->ix, it->doc, &doc, NULL);
            uint64_t base = p->spec.strategy == LMX_CUT ? (uint64_t)it->piece * p->spec.cut_len : 0;
            if (doc.token_bytes == tb) {
                memcpy(dst + (size_t)filled * tb, doc.tokens + (base + t0) * tb, (size_t)(t1 - t0) * tb);
            } else {
                for (uint64_t t = t0; t < t1; t++)
                    put_token(dst + (size_t)(filled + (t - t0)) * tb, tb, lmx__doc_token(&doc, base + t));
            }
            lmx_span sp = {it->doc, base + t0, filled, (uint32_t)(t1 - t0), p->doms[pc->dom].ixdom};
            rc = lmx__wire_add_span(w, &sp);
            filled += (uint32_t)(t1 - t0);
            o += t1 - t0;
        }
        if (p->spec.eos && o < end) { /* what is left is the EOS */
            put_token(dst + (size_t)filled * tb, tb, p->eos_id);
            filled++;
        }
    }
    if (rc == LMX_OK && p->spec.cu_seqlens)
        rc = lmx__wire_add_cu(w, (int32_t)L);
    /* next token: first token of the next sequence (maybe in the next block) */
    uint64_t npos = pos + L;
    if (rc == LMX_OK) {
        if (npos / p->B == b) {
            lmx__wire_set_next(w, slot, token_at(p, k, npos % p->B));
        } else {
            block *k2 = get_block(p, b + 1, err);
            if (!k2)
                rc = err ? err->code : LMX_ENOMEM;
            else {
                lmx__wire_set_next(w, slot, token_at(p, k2, 0));
                put_block(p, k2);
            }
        }
    }
    put_block(p, k);
    if (rc == LMX_OK)
        rc = lmx__wire_end_seq(w);
    return rc;
}

static int build_body(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, uint64_t first, uint32_t n,
                      lmx_buf *out, lmx_error *err)
{
    lmx_wire_header h = {0};
    h.flags = p->spec.cu_seqlens ? LMX_WIRE_FLAG_CU_SEQLENS : 0;
    memcpy(h.plan_id, p->id, LMX_PLAN_ID_BYTES);
    h.step = step;
    h.rank = rank;
    h.world = world;
    h.seq_len = p->spec.seq_len;
    h.n_seqs = n;
    h.token_bytes = lmx__index_token_bytes(p->ix);
    lmx_wire_writer w;
    int rc = lmx__wire_begin(&w, &h, out, err);
    if (rc) {
        lmx__wire_writer_free(&w);
        return rc;
    }
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 0; rc == LMX_OK && i < n; i++)
        rc = write_sequence(p, first + i, &w, i, err);
    pthread_mutex_unlock(&p->lock);
    if (rc == LMX_OK)
        rc = lmx__wire_finish(&w, p->domain_names, lmx__index_n_domains(p->ix), err);
    lmx__wire_writer_free(&w);
    return rc;
}

int lmx__plan_batch(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, lmx_buf *out, lmx_error *err)
{
    const uint32_t gb = p->spec.global_batch;
    if (world == 0 || world > gb || gb % world != 0)
        return lmx__err(err, LMX_EINVAL, "world=%u must divide the plan's global_batch %u", world, gb);
    if (rank >= world)
        return lmx__err(err, LMX_EINVAL, "rank=%u must be below world=%u", rank, world);
    if (step >= lmx__plan_max_steps(p))
        return lmx__err(err, LMX_ERANGE, "step %llu is past the plan's end: total_tokens %llu gives %llu steps",
                        (unsigned long long)step, (unsigned long long)p->spec.total_tokens,
                        (unsigned long long)lmx__plan_max_steps(p));
    if (step > (UINT64_MAX >> 2) / ((uint64_t)gb * p->spec.seq_len))
        return lmx__err(err, LMX_ERANGE, "step %llu is too large", (unsigned long long)step);
    uint32_t per = gb / world;
    return build_body(p, step, rank, world, step * gb + (uint64_t)rank * per, per, out, err);
}

int lmx__plan_sequence(lmx_plan *p, uint64_t g, lmx_buf *out, lmx_error *err)
{
    if (g / p->spec.global_batch >= lmx__plan_max_steps(p))
        return lmx__err(err, LMX_ERANGE, "sequence %llu is past the plan's end", (unsigned long long)g);
    if (g > (UINT64_MAX >> 2) / p->spec.seq_len)
        return lmx__err(err, LMX_ERANGE, "sequence %llu is too large", (unsigned long long)g);
    return build_body(p, g, 0, 1, g, 1, out, err);
}

/* ---- statistics ---- */

json_t *lmx__plan_stats(lmx_plan *p, uint64_t window)
{
    static const char *const names[] = LMX_BUCKET_NAMES;
    if (!window)
        window = p->spec.total_tokens && p->spec.total_tokens < 4 * p->B ? p->spec.total_tokens : 4 * p->B;
    pthread_mutex_lock(&p->lock);
    if (p->stats_cache && (uint64_t)json_integer_value(json_object_get(p->stats_cache, "window_tokens")) == window) {
        json_t *r = json_incref(p->stats_cache);
        pthread_mutex_unlock(&p->lock);
        return r;
    }
    uint32_t nd = p->n_doms;
    uint64_t(*acc)[3 + LMX_N_BUCKETS] = calloc(nd + 1, sizeof *acc); /* stream, doc, long, buckets */
    uint64_t remaining = window, b = 0;
    lmx_error err = {0};
    while (remaining > 0 && acc) {
        block *k = get_block(p, b, &err);
        if (!k)
            break;
        for (uint64_t i = 0; i < k->n && remaining > 0; i++) {
            const piece *pc = &k->pieces[i];
            uint64_t n = pc->len < remaining ? pc->len : remaining;
            const item *it = &p->doms[pc->dom].items[pc->item];
            /* document tokens of this piece: stream tokens minus the separators it covers */
            uint64_t lo = pc->item_off, hi = pc->item_off + n, dlo = p->spec.bos ? 1 : 0, dhi = dlo + it->len;
            uint64_t doc_tokens = (hi < dhi ? hi : dhi) > (lo > dlo ? lo : dlo) ? (hi < dhi ? hi : dhi) - (lo > dlo ? lo : dlo) : 0;
            acc[pc->dom][0] += n;
            acc[pc->dom][1] += doc_tokens;
            if (is_long(p, it))
                acc[pc->dom][2] += doc_tokens;
            acc[pc->dom][3 + lmx__bucket_of(it->len)] += doc_tokens;
            remaining -= n;
        }
        put_block(p, k);
        b++;
    }
    json_t *root = json_object(), *doms = json_object();
    json_object_set_new(root, "plan", json_string(p->name));
    json_object_set_new(root, "plan_id", json_string(p->id_hex));
    json_object_set_new(root, "strategy", json_string(strategy_names[p->spec.strategy]));
    json_object_set_new(root, "window_tokens", json_integer((json_int_t)window));
    if (err.code)
        json_object_set_new(root, "error", json_string(err.message));
    uint64_t doc_total = 0;
    for (uint32_t d = 0; acc && d < nd; d++)
        doc_total += acc[d][1];
    uint64_t endQ_total = p->spec.total_tokens;
    uint64_t *Qt = calloc(nd + 1, sizeof *Qt);
    if (endQ_total && Qt)
        quotas(p, endQ_total / p->B, Qt); /* whole blocks exactly; the rest of the last below */
    for (uint32_t d = 0; acc && d < nd; d++) {
        const pdom *pd = &p->doms[d];
        json_t *o = json_object(), *bk = json_object();
        double rate = (double)pd->long_slen + (double)pd->short_slen * ((double)pd->K / 4294967296.0);
        double ktok = (double)pd->long_tok + (double)pd->short_tok * ((double)pd->K / 4294967296.0);
        json_object_set_new(o, "target_share", json_real(pd->share));
        json_object_set_new(o, "realized_share", json_real(doc_total ? (double)acc[d][1] / (double)doc_total : 0));
        json_object_set_new(o, "expected_long_share", json_real(ktok > 0 ? (double)pd->long_tok / ktok : 0));
        json_object_set_new(o, "realized_long_share", json_real(acc[d][1] ? (double)acc[d][2] / (double)acc[d][1] : 0));
        json_object_set_new(o, "tokens", json_integer((json_int_t)acc[d][1]));
        json_object_set_new(o, "epochs", json_real(rate > 0 ? (double)acc[d][0] / rate : 0));
        if (endQ_total && Qt) {
            double q = (double)Qt[d] + (double)(endQ_total % p->B) * ((double)pd->W / (double)WEIGHT_ONE);
            json_object_set_new(o, "epochs_at_total_tokens", json_real(rate > 0 ? q / rate : 0));
        }
        for (int q = 0; q < LMX_N_BUCKETS; q++)
            json_object_set_new(bk, names[q], json_integer((json_int_t)acc[d][3 + q]));
        json_object_set_new(o, "buckets", bk);
        json_object_set_new(doms, lmx__index_domain_name(p->ix, d), o);
    }
    free(Qt);
    free(acc);
    json_object_set_new(root, "domains", doms);
    json_decref(p->stats_cache);
    p->stats_cache = json_incref(root);
    pthread_mutex_unlock(&p->lock);
    return root;
}
