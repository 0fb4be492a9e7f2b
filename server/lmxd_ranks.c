/* Per-(world, rank) step tracking for the lag metrics: an open-addressing table per plan.
 *
 * A rank's position is the step it asked for last, except that a step less than
 * LMXD_RANK_REWIND behind the position leaves it where it is (prefetching workers and retries
 * arrive a little out of order). So one bogus request (any reader can ask for step 3.5e13) moves
 * only the (world, rank) it names, and only until that rank's next real request, which is far
 * behind it and moves it back; a trainer restarted from an older checkpoint is followed too. */
#include "lmxd_internal.h"

#include <stdlib.h>

void lmxd_rank_track(plan_ref *r, uint32_t world, uint32_t rank, uint64_t step)
{
    pthread_mutex_lock(&r->rk_lock);
    if (!r->ranks)
        r->ranks = calloc(LMXD_RANK_SLOTS, sizeof *r->ranks);
    if (r->ranks) {
        uint64_t h = ((uint64_t)world << 32 | rank) * 0x9E3779B97F4A7C15ull;
        size_t i = (size_t)(h >> 40) & (LMXD_RANK_SLOTS - 1);
        for (;; i = (i + 1) & (LMXD_RANK_SLOTS - 1)) {
            rank_slot *sl = &r->ranks[i];
            if (sl->step1 == 0) {
                if (r->n_ranks >= LMXD_RANK_CAP) {
                    r->ranks_dropped++;
                } else {
                    sl->world = world;
                    sl->rank = rank;
                    sl->step1 = step + 1;
                    r->n_ranks++;
                }
                break;
            }
            if (sl->world == world && sl->rank == rank) {
                if (sl->step1 < step + 1 || sl->step1 - (step + 1) >= LMXD_RANK_REWIND)
                    sl->step1 = step + 1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&r->rk_lock);
}

static int slot_cmp(const void *a, const void *b)
{
    const rank_slot *x = a, *y = b;
    if (x->world != y->world)
        return x->world < y->world ? -1 : 1;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

rank_slot *lmxd_ranks_sorted(plan_ref *r, size_t *n_out, uint64_t *dropped)
{
    pthread_mutex_lock(&r->rk_lock);
    size_t n = 0;
    rank_slot *v = r->n_ranks ? malloc(r->n_ranks * sizeof *v) : NULL;
    for (size_t i = 0; v && r->ranks && i < LMXD_RANK_SLOTS; i++)
        if (r->ranks[i].step1)
            v[n++] = r->ranks[i];
    *dropped = r->ranks_dropped;
    pthread_mutex_unlock(&r->rk_lock);
    if (n > 1)
        qsort(v, n, sizeof *v, slot_cmp);
    *n_out = n;
    return v;
}
