/* The next epoch's index, walked in the background (issue #15). A batch that starts in an epoch
 * with no index walks the whole epoch of its domain first, holding the plan's lock: a minute for
 * a domain of 10^8 items, for every request of the plan. A run is sequential, so the epoch it
 * enters next is known once it is past the middle of the current one: one thread per plan walks
 * it meanwhile, without the lock, and puts it in the domain's epoch cache and file (when there is
 * no valid file of it: lmx_plan_stream.c reads that one instead). A request
 * that reaches it before the walk ends waits for that walk instead of doing it twice. */
#include <stdlib.h>

#include "lmx_plan_internal.h"

static void *walker_main(void *arg)
{
    lmx_plan *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        uint32_t dom = 0;
        while (dom < p->n_doms && p->doms[dom].pre_state != 1)
            dom++;
        if (dom == p->n_doms || atomic_load(&p->pre_stop))
            break;
        pdom *d = &p->doms[dom];
        d->pre_state = 2;
        epoch_index ei = {.epoch = d->pre_epoch, .cum = d->pre_cum};
        pthread_mutex_unlock(&p->lock);
        ei.ck = malloc(lmx__plan_n_ckpt(d) * sizeof *ei.ck);
        int ok = ei.ck && lmx__plan_walk_epoch(p, dom, ei.epoch, ei.ck, &ei.total, &p->pre_stop, NULL) == LMX_OK;
        if (ok)
            lmx__plan_epoch_save(p, dom, lmx__plan_n_ckpt(d), &ei);
        pthread_mutex_lock(&p->lock);
        if (ok && !lmx__plan_epoch_cached(d, ei.epoch, ei.cum)) {
            epoch_index *v = lmx__plan_epoch_victim(d);
            free(v->ck);
            *v = ei;
            v->valid = 1;
            v->used = ++p->tick;
            ei.ck = NULL;
            d->slot_ok[ei.epoch % EPOCH_SLOTS] = 0; /* the slot's header read earlier is stale */
            p->walks[1]++;
        }
        free(ei.ck);
        d->pre_state = 0;
        pthread_cond_broadcast(&p->pre_done);
    }
    for (uint32_t dom = 0; dom < p->n_doms; dom++) /* stopping: nothing stays asked */
        if (p->doms[dom].pre_state == 1)
            p->doms[dom].pre_state = 0;
    p->pre_running = 0;
    pthread_cond_broadcast(&p->pre_done);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

void lmx__plan_prewalk_ask(lmx_plan *p, uint32_t dom, uint64_t E, uint64_t cum)
{
    pdom *d = &p->doms[dom];
    if (d->pre_state != 0 || atomic_load(&p->pre_stop))
        return;
    d->pre_epoch = E;
    d->pre_cum = cum;
    d->pre_state = 1;
    if (p->pre_running)
        return;
    if (p->pre_joinable) /* the last walker left its loop (pre_running 0): ends at once */
        pthread_join(p->pre_thread, NULL);
    p->pre_joinable = pthread_create(&p->pre_thread, NULL, walker_main, p) == 0;
    p->pre_running = p->pre_joinable;
    if (!p->pre_running) /* no thread: the request that needs it walks it */
        d->pre_state = 0;
}

void lmx__plan_prewalk_wait(lmx_plan *p, uint32_t dom, uint64_t from)
{
    const pdom *d = &p->doms[dom];
    while (d->pre_state != 0 && d->pre_cum <= from)
        pthread_cond_wait(&p->pre_done, &p->lock);
}

void lmx__plan_walk_counts(lmx_plan *p, uint64_t out[2])
{
    pthread_mutex_lock(&p->lock);
    out[0] = p->walks[0];
    out[1] = p->walks[1];
    pthread_mutex_unlock(&p->lock);
}

void lmx__plan_prewalk_init(lmx_plan *p)
{
    pthread_cond_init(&p->pre_done, NULL);
    atomic_init(&p->pre_stop, 0);
}

void lmx__plan_prewalk_stop(lmx_plan *p)
{
    atomic_store(&p->pre_stop, 1);
    pthread_mutex_lock(&p->lock);
    int joinable = p->pre_joinable;
    p->pre_joinable = 0;
    pthread_mutex_unlock(&p->lock);
    if (joinable)
        pthread_join(p->pre_thread, NULL);
    pthread_cond_destroy(&p->pre_done);
}
