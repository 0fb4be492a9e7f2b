/* Each domain's endless substream (proto/PLANS.md): epoch after epoch, its items in a seeded
 * order that merges a permutation of the long ones and one of the short ones in proportion to
 * their tokens, short items kept by stratified coins. Any position is reached without replay:
 * closed-form epoch sums, then a checkpointed merge inside the epoch. */
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_plan_internal.h"

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

int lmx__plan_walk_epoch(lmx_plan *p, uint32_t dom, uint64_t E, ckpt *ck, uint64_t *total, const atomic_int *stop,
                         lmx_error *err)
{
    pdom *d = &p->doms[dom];
    cursor c;
    cursor_init(&c, p, d, dom, E);
    for (uint64_t j = 0; j < d->n; j++) {
        if (j % CKPT_EVERY == 0) {
            ck[j / CKPT_EVERY] = (ckpt){c.li, c.lt, c.lt + c.st};
            if (j % (CKPT_EVERY << 10) == 0 && ((stop && atomic_load(stop)) || (p->stop && atomic_load(p->stop))))
                return lmx__err(err, LMX_ETIMEOUT, "plan %s: walk of epoch %llu of %s stopped", p->name,
                                (unsigned long long)E, lmx__index_domain_name(p->ix, d->ixdom));
        }
        uint64_t len;
        cursor_next(p, d, &c, &len);
    }
    if (c.lt != c.L)
        return lmx__err(err, LMX_EINTERNAL, "plan %s: epoch %llu of %s has %llu long stream tokens, want %llu", p->name,
                        (unsigned long long)E, lmx__index_domain_name(p->ix, d->ixdom), (unsigned long long)c.lt,
                        (unsigned long long)c.L);
    *total = c.lt + c.st;
    return LMX_OK;
}

uint64_t lmx__plan_n_ckpt(const pdom *d) { return d->n / CKPT_EVERY + 2; }

epoch_index *lmx__plan_epoch_victim(pdom *d)
{
    epoch_index *victim = &d->ep[0];
    for (int i = 0; i < EPOCH_CACHE; i++)
        if (!d->ep[i].valid || d->ep[i].used < victim->used)
            victim = &d->ep[i];
    return victim;
}

/* What the slot of ei's epoch holds now: ei's file when ei was just written there and maps it
 * (so an eviction of ei reads the file again instead of walking), else unknown. */
static void note_slot(pdom *d, const epoch_index *ei)
{
    const unsigned s = ei->epoch % EPOCH_SLOTS;
    d->slot_ok[s] = (uint8_t)(ei->file_mapped != 0);
    d->slot_epoch[s] = ei->epoch;
    d->slot_cum[s] = ei->cum;
    d->slot_total[s] = ei->total;
}

int lmx__plan_epoch_build(lmx_plan *p, uint32_t dom, uint64_t E, uint64_t cum, epoch_index *out,
                          const atomic_int *stop, lmx_error *err)
{
    const uint64_t nck = lmx__plan_n_ckpt(&p->doms[dom]);
    *out = (epoch_index){.epoch = E, .cum = cum, .ck = malloc(nck * sizeof(ckpt))};
    if (!out->ck)
        return lmx__err(err, LMX_ENOMEM, "plan %s: out of memory for the epoch index", p->name);
    int rc = lmx__plan_walk_epoch(p, dom, E, out->ck, &out->total, stop, err);
    if (rc == LMX_OK)
        lmx__plan_epoch_save(p, dom, nck, out);
    else
        lmx__plan_epoch_release(out);
    return rc;
}

/* The epoch holding substream position from, read from a file a previous run left, or NULL. */
static void read_slots(lmx_plan *p, pdom *d, uint32_t dom)
{
    if (!d->slots_read) {
        d->slots_read = 1;
        for (unsigned s = 0; s < EPOCH_SLOTS; s++)
            d->slot_ok[s] = (uint8_t)lmx__plan_epoch_peek(p, dom, s, &d->slot_epoch[s], &d->slot_cum[s], &d->slot_total[s]);
    }
}

epoch_index *lmx__plan_epoch_cached(pdom *d, uint64_t E, uint64_t cum)
{
    for (int i = 0; i < EPOCH_CACHE; i++)
        if (d->ep[i].valid && d->ep[i].epoch == E && d->ep[i].cum == cum)
            return &d->ep[i];
    return NULL;
}

static epoch_index *epoch_from_file(lmx_plan *p, pdom *d, uint32_t dom, uint64_t from)
{
    read_slots(p, d, dom);
    for (unsigned s = 0; s < EPOCH_SLOTS; s++) {
        if (!d->slot_ok[s] || d->slot_cum[s] > from || from - d->slot_cum[s] >= d->slot_total[s])
            continue;
        d->slot_ok[s] = 0; /* read at most once */
        epoch_index *victim = lmx__plan_epoch_victim(d);
        victim->valid = 0;
        if (!lmx__plan_epoch_load(p, dom, s, d->slot_epoch[s], lmx__plan_n_ckpt(d), victim))
            return NULL;
        victim->valid = 1;
        victim->used = ++p->tick;
        return victim;
    }
    return NULL;
}

int lmx__plan_epochs_prepare(lmx_plan *p, const atomic_int *stop, lmx_error *err)
{
    int rc = LMX_OK;
    for (uint32_t dom = 0; rc == LMX_OK && dom < p->n_doms; dom++) {
        pdom *d = &p->doms[dom];
        if (d->n < lmx__plan_epoch_file_min)
            continue;
        epoch_index ei;
        rc = lmx__plan_epoch_build(p, dom, 0, 0, &ei, stop, err);
        lmx__plan_epoch_release(&ei);
    }
    return rc;
}

epoch_index *lmx__plan_epoch_find(lmx_plan *p, uint32_t dom, uint64_t from)
{
    pdom *d = &p->doms[dom];
    for (int i = 0; i < EPOCH_CACHE; i++) /* a cached epoch holding from: no epoch sums */
        if (d->ep[i].valid && d->ep[i].cum <= from && from - d->ep[i].cum < d->ep[i].total) {
            d->ep[i].used = ++p->tick;
            return &d->ep[i];
        }
    return epoch_from_file(p, d, dom, from);
}

int lmx__plan_epoch_compute(lmx_plan *p, uint32_t dom, uint64_t from, epoch_index *out, lmx_error *err)
{
    pdom *d = &p->doms[dom];
    const uint64_t E = find_epoch(p, d, from);
    return lmx__plan_epoch_build(p, dom, E, cum_tokens(p, d, E), out, NULL, err);
}

void lmx__plan_epoch_put(lmx_plan *p, uint32_t dom, epoch_index *ei)
{
    pdom *d = &p->doms[dom];
    if (lmx__plan_epoch_cached(d, ei->epoch, ei->cum))
        return;
    epoch_index *v = lmx__plan_epoch_victim(d);
    lmx__plan_epoch_release(v);
    *v = *ei;
    v->valid = 1;
    v->used = ++p->tick;
    ei->ck = NULL; /* moved */
    ei->file = NULL;
    note_slot(d, v);
}

/* Positions g at domain dom's substream position `from`, with `quota` tokens to give. */
int lmx__plan_dgen_init(lmx_plan *p, uint32_t dom, uint64_t from, uint64_t quota, dgen *g, lmx_error *err)
{
    pdom *d = &p->doms[dom];
    g->dom = dom;
    g->quota = quota;
    g->off = 0;
    g->pending = 0;
    if (quota == 0)
        return LMX_OK;
    epoch_index *ei = lmx__plan_epoch_find(p, dom, from);
    if (!ei) {
        epoch_index fresh;
        int rc = lmx__plan_epoch_compute(p, dom, from, &fresh, err);
        if (rc != LMX_OK)
            return rc;
        atomic_fetch_add(&p->walks[0], 1);
        lmx__plan_epoch_put(p, dom, &fresh);
        lmx__plan_epoch_release(&fresh); /* when it was cached already */
        ei = lmx__plan_epoch_find(p, dom, from);
    }
    if (!ei)
        return lmx__err(err, LMX_EINTERNAL, "plan %s: the epoch index walked for %s does not hold its position",
                        p->name, lmx__index_domain_name(p->ix, d->ixdom));
    const uint64_t E = ei->epoch, r = from - ei->cum;
    /* Last checkpoint at or before r, then resume the merge from it. */
    uint64_t lo = 0, hi = d->n / CKPT_EVERY + (d->n % CKPT_EVERY ? 1 : 0);
    while (hi - lo > 1) {
        uint64_t mid = (lo + hi) / 2;
        if (ei->ck[mid].cum <= r)
            lo = mid;
        else
            hi = mid;
    }
    cursor *c = &g->c;
    cursor_init(c, p, d, dom, E);
    cursor_seek(c, d, ei->ck[lo].li, lo * CKPT_EVERY - ei->ck[lo].li, ei->ck[lo].lt, ei->ck[lo].cum - ei->ck[lo].lt);
    for (;;) {
        if (c->li + c->si == d->n) {
            lmx__err(err, LMX_EINTERNAL, "plan %s: epoch index of %s disagrees with the epoch sums", p->name,
                     lmx__index_domain_name(p->ix, d->ixdom));
            return LMX_EINTERNAL;
        }
        uint64_t acc = c->lt + c->st;
        g->ii = cursor_next(p, d, c, &g->len);
        if (r < acc + g->len) {
            g->off = r - acc;
            break;
        }
    }
    g->pending = 1;
    return LMX_OK;
}

/* The next piece of g (start 0) into *out: 1, or 0 when its quota is given. */
int lmx__plan_dgen_next(lmx_plan *p, dgen *g, piece *out)
{
    const pdom *d = &p->doms[g->dom];
    while (g->quota > 0) {
        if (!g->pending) { /* the next item, crossing into the next epoch as needed */
            if (g->c.li + g->c.si == d->n)
                cursor_init(&g->c, p, d, g->dom, g->c.E + 1);
            g->ii = cursor_next(p, d, &g->c, &g->len);
            g->off = 0;
        }
        g->pending = 0;
        if (g->len > 0) {
            uint64_t take = g->len - g->off;
            if (take > g->quota)
                take = g->quota;
            *out = (piece){0, g->ii, g->dom, (uint32_t)g->off, (uint32_t)take};
            g->quota -= take;
            g->off = 0;
            return 1;
        }
    }
    return 0;
}
