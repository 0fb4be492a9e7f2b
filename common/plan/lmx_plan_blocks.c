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

/* Per-domain state of one block's interleaving. */
typedef struct wfq {
    uint64_t *Q0, *Q1;  /* quotas at the block's start and end */
    uint64_t *pos;      /* next piece per domain */
    uint64_t *used;     /* tokens placed per domain */
    piece_list *per;    /* each domain's pieces for the block */
} wfq;

/* Weighted fair queueing: next is the domain whose next piece finishes earliest relative to
 * its quota, (used + len) / quota, compared exactly by cross-multiplication. A domain's first
 * piece that continues an item from the previous block goes first (highest domain first),
 * matching the tie order at the end of a block, so the item that ended the last block
 * usually continues at the start of this one. */
static uint32_t next_domain(const wfq *q, uint32_t nd)
{
    uint32_t best = UINT32_MAX;
    int best_cont = 0;
    for (uint32_t d = 0; d < nd; d++) {
        if (q->pos[d] == q->per[d].n)
            continue;
        const piece *pc = &q->per[d].v[q->pos[d]];
        int cont = q->pos[d] == 0 && pc->item_off > 0;
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
        uint64_t fa = q->used[d] + pc->len, fb = q->used[best] + q->per[best].v[q->pos[best]].len;
        if (fa * qb < fb * qa)
            best = d;
    }
    return best;
}

static void wfq_free(wfq *q, uint32_t nd)
{
    for (uint32_t d = 0; q->per && d < nd; d++)
        free(q->per[d].v);
    free(q->per);
    free(q->Q0);
    free(q->Q1);
    free(q->pos);
    free(q->used);
}

/* Gathers every domain's pieces of block b into q; their count in *total. */
static int wfq_init(lmx_plan *p, uint64_t b, wfq *q, uint64_t *total, lmx_error *err)
{
    uint32_t nd = p->n_doms;
    q->Q0 = calloc(nd + 1, sizeof *q->Q0);
    q->Q1 = calloc(nd + 1, sizeof *q->Q1);
    q->per = calloc(nd + 1, sizeof *q->per);
    q->pos = calloc(nd + 1, sizeof *q->pos);
    q->used = calloc(nd + 1, sizeof *q->used);
    if (!q->Q0 || !q->Q1 || !q->per || !q->pos || !q->used)
        return lmx__err(err, LMX_ENOMEM, "plan: out of memory");
    lmx__plan_quotas(p, b, q->Q0);
    lmx__plan_quotas(p, b + 1, q->Q1);
    *total = 0;
    for (uint32_t d = 0; d < nd; d++) {
        int rc = lmx__plan_domain_pieces(p, d, q->Q0[d], q->Q1[d] - q->Q0[d], &q->per[d], err);
        if (rc)
            return rc;
        *total += q->per[d].n;
    }
    return LMX_OK;
}

static block *build_block(lmx_plan *p, uint64_t b, lmx_error *err)
{
    wfq q = {0};
    uint64_t total = 0;
    block *blk = calloc(1, sizeof *blk);
    int rc = blk ? wfq_init(p, b, &q, &total, err) : lmx__err(err, LMX_ENOMEM, "plan: out of memory");
    if (rc == LMX_OK && !(blk->pieces = malloc((total + 1) * sizeof *blk->pieces)))
        rc = lmx__err(err, LMX_ENOMEM, "plan: out of memory");
    uint64_t at = 0;
    while (rc == LMX_OK && blk->n < total) {
        uint32_t best = next_domain(&q, p->n_doms);
        piece pc = q.per[best].v[q.pos[best]++];
        q.used[best] += pc.len;
        pc.start = at;
        at += pc.len;
        blk->pieces[blk->n++] = pc;
    }
    if (rc == LMX_OK && at != p->B)
        rc = lmx__err(err, LMX_EINTERNAL, "plan %s: block %llu has %llu tokens, want %llu", p->name,
                      (unsigned long long)b, (unsigned long long)at, (unsigned long long)p->B);
    wfq_free(&q, p->n_doms);
    if (rc != LMX_OK) {
        if (blk)
            free(blk->pieces);
        free(blk);
        return NULL;
    }
    blk->b = b;
    return blk;
}

/* Returns block b with a reference held (release with lmx__plan_put_block). Caller holds p->lock. */
block *lmx__plan_get_block(lmx_plan *p, uint64_t b, lmx_error *err)
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
