/* Epoch walks off the request path (issue #15). A batch that starts in an epoch without an index
 * first walks that epoch of its domain (every item, in permuted order) holding the plan's lock:
 * about a minute for a domain of 10^8 items, during which the plan answers nobody.
 * lmx__plan_epochs_ready runs before a range is built, for the position where each domain starts:
 * - A run is sequential: once it is past the middle of an epoch, the next one is made ready:
 *   read from its file if there is one, else walked by one thread per plan without the lock and
 *   put in the domain's epoch cache and file. A request that reaches that epoch first waits for
 *   the walk instead of doing it again.
 * - A jump (a step whose epochs were never used, e.g. step 10^6 on a new daemon) cannot be
 *   foreseen: its domains' missing epochs are walked one domain per core. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <sched.h>
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
        const uint64_t E = d->pre_epoch, cum = d->pre_cum;
        pthread_mutex_unlock(&p->lock);
        epoch_index ei;
        int ok = lmx__plan_epoch_build(p, dom, E, cum, &ei, &p->pre_stop, NULL) == LMX_OK;
        pthread_mutex_lock(&p->lock);
        if (ok) {
            lmx__plan_epoch_put(p, dom, &ei);
            atomic_fetch_add(&p->walks[1], 1);
        }
        lmx__plan_epoch_release(&ei);
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

/* Asks the walker for epoch E (cum stream tokens before it) of domain dom, unless the domain has
 * a walk asked or running. Caller holds p->lock. */
static void prewalk_ask(lmx_plan *p, uint32_t dom, uint64_t E, uint64_t cum)
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

/* Waits (releasing p->lock meanwhile) while domain dom has an asked or running walk of an epoch
 * at or before substream position from. */
static void prewalk_wait(lmx_plan *p, uint32_t dom, uint64_t from)
{
    const pdom *d = &p->doms[dom];
    while (d->pre_state != 0 && d->pre_cum <= from)
        pthread_cond_wait(&p->pre_done, &p->lock);
}

void lmx__plan_walk_counts(lmx_plan *p, uint64_t out[2])
{
    out[0] = atomic_load(&p->walks[0]); /* not under p->lock: /metrics must not wait for a walk */
    out[1] = atomic_load(&p->walks[1]);
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

/* ---- a jump: the missing epochs of a batch's domains, one domain per thread ---- */

typedef struct ahead_job {
    uint32_t dom;
    uint64_t from;
    epoch_index ei;
    int ok;
} ahead_job;

typedef struct ahead_pool {
    lmx_plan *p;
    ahead_job *jobs;
    size_t n;
    atomic_size_t next;
} ahead_pool;

static void *ahead_main(void *arg)
{
    ahead_pool *w = arg;
    for (size_t i; (i = atomic_fetch_add(&w->next, 1)) < w->n;) {
        ahead_job *j = &w->jobs[i];
        j->ok = lmx__plan_epoch_compute(w->p, j->dom, j->from, &j->ei, NULL) == LMX_OK;
    }
    return NULL;
}

/* Cores this process may run on (its affinity mask: a container's share, not the host's). */
static size_t usable_cores(void)
{
    static atomic_size_t n;
    size_t v = atomic_load(&n);
    if (v == 0) {
        cpu_set_t set;
        v = sched_getaffinity(0, sizeof set, &set) == 0 ? (size_t)CPU_COUNT(&set) : 1;
        atomic_store(&n, v ? v : 1);
    }
    return v ? v : 1;
}

void lmx__plan_epochs_ready(lmx_plan *p, const uint64_t *from)
{
    ahead_job *jobs = calloc(p->n_doms + 1, sizeof *jobs);
    if (!jobs)
        return;
    ahead_pool w = {.p = p, .jobs = jobs};
    for (uint32_t dom = 0; dom < p->n_doms; dom++) {
        if (from[dom] == UINT64_MAX || p->doms[dom].n < lmx__plan_epoch_file_min)
            continue;
        prewalk_wait(p, dom, from[dom]);
        if (!lmx__plan_epoch_find(p, dom, from[dom]))
            jobs[w.n++] = (ahead_job){.dom = dom, .from = from[dom]};
    }
    size_t extra = w.n < 2 ? 0 : usable_cores() - 1; /* threads besides this one */
    if (extra > w.n - 1)
        extra = w.n - 1;
    pthread_t *t = extra ? calloc(extra, sizeof *t) : NULL;
    size_t started = 0;
    atomic_init(&w.next, 0);
    if (w.n >= 2) { /* one missing epoch: the batch walks it itself, as before */
        while (t && started < extra && pthread_create(&t[started], NULL, ahead_main, &w) == 0)
            started++;
        ahead_main(&w);
        for (size_t i = 0; i < started; i++)
            pthread_join(t[i], NULL);
        for (size_t i = 0; i < w.n; i++) {
            if (jobs[i].ok) {
                lmx__plan_epoch_put(p, jobs[i].dom, &jobs[i].ei);
                atomic_fetch_add(&p->walks[0], 1);
            }
            lmx__plan_epoch_release(&jobs[i].ei);
        }
    }
    free(t);
    free(jobs);
    for (uint32_t dom = 0; dom < p->n_doms; dom++) { /* past the middle of an epoch: the next one */
        epoch_index *ei = from[dom] == UINT64_MAX || p->doms[dom].n < lmx__plan_epoch_file_min
                              ? NULL : lmx__plan_epoch_find(p, dom, from[dom]);
        if (!ei || from[dom] - ei->cum < ei->total / 2)
            continue;
        const uint64_t E = ei->epoch + 1, cum = ei->cum + ei->total;
        if (!lmx__plan_epoch_cached(&p->doms[dom], E, cum) && !lmx__plan_epoch_find(p, dom, cum))
            prewalk_ask(p, dom, E, cum); /* no file of it either (a damaged one is found now) */
    }
}
