/* The global stream in blocks of B tokens (proto/PLANS.md): domain d contributes exactly
 * Q_d(b+1) - Q_d(b) tokens to block b, Q_d(b) = b*B*w_d rounded by largest remainder, and its
 * pieces are interleaved by weighted fair queueing. Built blocks are cached (BLOCK_CACHE). */
#include <stdlib.h>
#include <string.h>

#include "lmx_plan_internal.h"

/* Cumulative quota of every domain at block b (sum exactly b*B): floors of b*B*W/2^40 plus one
 * token for the domains with the largest remainders. A padded plan (pad_multiple M > 1) does this
 * in units of M tokens, so every quota, hence every piece cut at a block edge, is M-aligned. */
void lmx__plan_quotas(const lmx_plan *p, uint64_t b, uint64_t *Q)
{
    const uint64_t M = p->spec.pad_multiple > 1 ? p->spec.pad_multiple : 1;
    uint64_t pos = b * (p->B / M), sum = 0;
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
    for (uint32_t d = 0; M > 1 && d < p->n_doms; d++)
        Q[d] *= M;
    free(rem);
}

/* Per-domain state of one block's interleaving: quotas at the block's start and end (q = Q1 -
 * Q0), each domain's piece generator and its next piece (head, valid when has), tokens placed
 * per domain (used), and whether a domain's head may continue an item of the previous block. */
typedef struct wfq {
    uint64_t *Q0, *Q1, *used;
    dgen *g;
    piece *head;
    uint8_t *has, *first;
} wfq;

/* Weighted fair queueing: next is the domain whose next piece finishes earliest relative to
 * its quota, (used + len) / quota, compared exactly by cross-multiplication (ties to the lower
 * domain). A domain's first piece that continues an item from the previous block goes first
 * (highest domain first), matching the tie order at the end of a block, so the item that ended
 * the last block usually continues at the start of this one. Since each domain's finish times
 * increase, the block is the merge of the domains' pieces by (finish time, domain) after those
 * continuations: what lets build_range start anywhere (below). */
static uint32_t next_domain(const wfq *q, uint32_t nd)
{
    uint32_t best = UINT32_MAX;
    int best_cont = 0;
    for (uint32_t d = 0; d < nd; d++) {
        if (!q->has[d])
            continue;
        const piece *pc = &q->head[d];
        int cont = q->first[d] && pc->item_off > 0;
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
        uint64_t qa = q->Q1[d] - q->Q0[d], qb = q->Q1[best] - q->Q0[best];
        uint64_t fa = q->used[d] + pc->len, fb = q->used[best] + q->head[best].len;
        if (fa * qb < fb * qa)
            best = d;
    }
    return best;
}

static void wfq_free(wfq *q)
{
    free(q->Q0);
    free(q->Q1);
    free(q->used);
    free(q->g);
    free(q->head);
    free(q->has);
}

/* Starts domain d's generator at its block offset c (a piece boundary) and takes its head. */
static int wfq_start(lmx_plan *p, wfq *q, uint32_t d, uint64_t c, lmx_error *err)
{
    int rc = lmx__plan_dgen_init(p, d, q->Q0[d] + c, q->Q1[d] - q->Q0[d] - c, &q->g[d], err);
    q->used[d] = c;
    q->has[d] = rc == LMX_OK && lmx__plan_dgen_next(p, &q->g[d], &q->head[d]);
    return rc;
}

/* Domain d's tokens among the pieces that come before every piece finishing after x/B (x < B):
 * its pieces ending at block offset <= X = floor(x * q / B), i.e. up to the start of the item
 * holding X; or, when that item began before the block (it continues an item of the previous
 * block: such pieces come first), to its end (at most q). */
static int offset_at(lmx_plan *p, wfq *q, uint32_t d, uint64_t x, uint64_t *c, lmx_error *err)
{
    uint64_t qd = q->Q1[d] - q->Q0[d];
    uint64_t X = x * qd / p->B; /* x, qd <= B < 2^27 (seq_len <= 2^24): fits */
    *c = 0;
    if (qd == 0)
        return LMX_OK;
    dgen g;
    int rc = lmx__plan_dgen_init(p, d, q->Q0[d] + X, qd - X, &g, err);
    if (rc == LMX_OK && X >= g.off)
        *c = X - g.off;
    else if (rc == LMX_OK) /* the item began before the block: the end of its continuation */
        *c = g.len - (g.off - X) < qd ? g.len - (g.off - X) : qd;
    return rc;
}

/* Sum over the domains of offset_at(x), each into cx[d]. */
static int prefix_at(lmx_plan *p, wfq *q, uint64_t x, uint64_t *cx, uint64_t *P, lmx_error *err)
{
    int rc = LMX_OK;
    *P = 0;
    for (uint32_t d = 0; rc == LMX_OK && d < p->n_doms; d++) {
        rc = offset_at(p, q, d, x, &cx[d], err);
        *P += cx[d];
    }
    return rc;
}

/* Block b's pieces covering positions [lo, hi). From position 0: the domains' continuations,
 * then the merge. Else the merge resumes at a prefix S of the block: for x <= lo, the pieces
 * finishing by x/B (and the continuations) are a prefix (the merge's order), each domain's
 * part of it ending at a piece boundary found by offset_at; the largest x whose prefix ends at
 * or before lo is searched (x = lo almost always), and the merge goes on from there with the
 * same state the whole merge would have (tokens used per domain, next pieces), so the pieces
 * are the same. Only the epochs around lo are touched, not the one at the block's start. */
static block *build_range(lmx_plan *p, uint64_t b, uint64_t lo, uint64_t hi, lmx_error *err)
{
    uint32_t nd = p->n_doms;
    wfq q = {0};
    block *blk = calloc(1, sizeof *blk);
    q.Q0 = calloc(nd + 1, sizeof *q.Q0);
    q.Q1 = calloc(nd + 1, sizeof *q.Q1);
    q.used = calloc(nd + 1, sizeof *q.used);
    q.g = calloc(nd + 1, sizeof *q.g);
    q.head = calloc(nd + 1, sizeof *q.head);
    q.has = calloc(2 * (nd + 1), 1);
    uint64_t *cx = calloc(nd + 1, sizeof *cx);
    int rc = blk && q.Q0 && q.Q1 && q.used && q.g && q.head && q.has && cx
                 ? LMX_OK : lmx__err(err, LMX_ENOMEM, "plan: out of memory");
    if (rc == LMX_OK) {
        q.first = q.has + nd + 1;
        lmx__plan_quotas(p, b, q.Q0);
        lmx__plan_quotas(p, b + 1, q.Q1);
    }
    uint64_t at = 0, P = 0;
    int fresh = lo == 0;
    if (rc == LMX_OK) { /* where each domain starts (below): missing epochs walked in parallel */
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t qd = q.Q1[d] - q.Q0[d];
            cx[d] = qd ? q.Q0[d] + lo * qd / p->B : UINT64_MAX;
        }
        lmx__plan_epochs_ready(p, cx);
    }
    if (rc == LMX_OK && !fresh && (rc = prefix_at(p, &q, lo, cx, &P, err)) == LMX_OK && P > lo) {
        /* rare (a long continuation): largest x in [0, lo) with prefix_at(x) <= lo, if any */
        rc = prefix_at(p, &q, 0, cx, &P, err);
        fresh = P > lo;
        uint64_t xl = 0, xh = lo;
        while (rc == LMX_OK && !fresh && xh - xl > 1) {
            uint64_t x = xl + (xh - xl) / 2;
            rc = prefix_at(p, &q, x, cx, &P, err);
            if (P <= lo)
                xl = x;
            else
                xh = x;
        }
        if (rc == LMX_OK && !fresh)
            rc = prefix_at(p, &q, xl, cx, &P, err);
    }
    for (uint32_t d = 0; rc == LMX_OK && d < nd; d++) {
        rc = wfq_start(p, &q, d, fresh ? 0 : cx[d], err);
        q.first[d] = (uint8_t)fresh;
    }
    at = fresh ? 0 : P;
    uint64_t cap = 0;
    while (rc == LMX_OK && at < hi) {
        uint32_t best = next_domain(&q, nd);
        if (best == UINT32_MAX)
            break;
        if (blk->n == cap) {
            cap = cap ? 2 * cap : 1024;
            piece *v = realloc(blk->pieces, cap * sizeof *v);
            if (!v) {
                rc = lmx__err(err, LMX_ENOMEM, "plan: out of memory");
                break;
            }
            blk->pieces = v;
        }
        piece pc = q.head[best];
        q.first[best] = 0;
        q.used[best] += pc.len;
        pc.start = at;
        at += pc.len;
        blk->pieces[blk->n++] = pc;
        q.has[best] = lmx__plan_dgen_next(p, &q.g[best], &q.head[best]);
    }
    if (rc == LMX_OK && (at < hi || (hi == p->B && at != p->B)))
        rc = lmx__err(err, LMX_EINTERNAL, "plan %s: block %llu has %llu tokens, want %llu", p->name,
                      (unsigned long long)b, (unsigned long long)at, (unsigned long long)p->B);
    wfq_free(&q);
    free(cx);
    if (rc != LMX_OK) {
        if (blk)
            free(blk->pieces);
        free(blk);
        return NULL;
    }
    blk->b = b;
    blk->lo = lo;
    blk->hi = hi;
    return blk;
}

/* Block b's pieces covering [lo, hi) with a reference held (release with lmx__plan_put_block); a
 * cached block covering them is reused. Caller holds p->lock. */
block *lmx__plan_get_range(lmx_plan *p, uint64_t b, uint64_t lo, uint64_t hi, lmx_error *err)
{
    for (int i = 0; i < BLOCK_CACHE; i++) {
        block *k = p->blocks[i];
        if (k && k->b == b && k->lo <= lo && hi <= k->hi) {
            k->refs++;
            k->used = ++p->tick;
            return k;
        }
    }
    block *k = build_range(p, b, lo, hi, err);
    if (!k)
        return NULL;
    k->refs = 1;
    k->used = ++p->tick;
    /* the victim is chosen now: the build may have let go of p->lock (lmx__plan_epochs_ready) */
    int victim = -1;
    for (int i = 0; i < BLOCK_CACHE; i++) {
        block *c = p->blocks[i];
        if (!c || (c->refs == 0 && (victim < 0 || !p->blocks[victim] || (p->blocks[victim] && c->used < p->blocks[victim]->used))))
            if (victim < 0 || p->blocks[victim])
                victim = i;
    }
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

block *lmx__plan_get_block(lmx_plan *p, uint64_t b, lmx_error *err) { return lmx__plan_get_range(p, b, 0, p->B, err); }

void lmx__plan_put_block(lmx_plan *p, block *k)
{
    k->refs--;
    for (int i = 0; i < BLOCK_CACHE; i++)
        if (p->blocks[i] == k)
            return;
    free(k->pieces);
    free(k);
}

uint64_t lmx__plan_find_piece(const block *k, uint64_t s)
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

void lmx__plan_blocks_free(lmx_plan *p)
{
    for (int i = 0; i < BLOCK_CACHE; i++)
        if (p->blocks[i]) {
            free(p->blocks[i]->pieces);
            free(p->blocks[i]);
            p->blocks[i] = NULL;
        }
}
