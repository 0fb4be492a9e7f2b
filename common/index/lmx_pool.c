/* The line-batch worker pool: see lmx_pool.h. */
#include "lmx_pool.h"

int lmx__pool_init(lmx_pool *p, size_t max_inflight, lmx_pool_work_fn work)
{
    *p = (lmx_pool){0};
    p->work = work;
    p->max_inflight = max_inflight ? max_inflight : 1;
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        return -1;
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        return -1;
    }
    return 0;
}

void lmx__pool_destroy(lmx_pool *p)
{
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

int lmx__pool_claim(lmx_pool *p, size_t *next, size_t n, size_t *task)
{
    pthread_mutex_lock(&p->mu);
    int got = *next < n;
    if (got) {
        *task = (*next)++;
        p->producers++;
    }
    pthread_mutex_unlock(&p->mu);
    return got;
}

void lmx__pool_release(lmx_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->producers--;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Processes the oldest queued item (p->mu held on entry and on return); 0 when none. */
static int help_one(lmx_pool *p, void *worker)
{
    lmx_pool_item *it = p->q_head;
    if (!it)
        return 0;
    p->q_head = it->qnext;
    if (!p->q_head)
        p->q_tail = NULL;
    it->qnext = NULL;
    pthread_mutex_unlock(&p->mu);
    p->work(it, worker);
    pthread_mutex_lock(&p->mu);
    it->done = 1;
    pthread_cond_broadcast(&p->cv);
    return 1;
}

void lmx__pool_help(lmx_pool *p, void *worker)
{
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (help_one(p, worker))
            continue;
        if (p->producers == 0)
            break;
        pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
}

typedef struct stream {
    lmx_pool_item *head, *tail;
    size_t inflight;
    int ended; /* no more items to produce */
} stream;

/* Submits it (or gives its window slot back when NULL); p->mu held. */
static void submit(lmx_pool *p, stream *s, lmx_pool_item *it)
{
    if (!it) {
        s->ended = 1;
        s->inflight--;
        p->inflight--;
        return;
    }
    it->qnext = it->snext = NULL;
    it->done = 0;
    if (s->tail)
        s->tail->snext = it;
    else
        s->head = it;
    s->tail = it;
    if (p->q_tail)
        p->q_tail->qnext = it;
    else
        p->q_head = it;
    p->q_tail = it;
    pthread_cond_broadcast(&p->cv);
}

void lmx__pool_run_stream(lmx_pool *p, const lmx_pool_stream_ops *ops, void *ctx, void *worker)
{
    stream s = {0};
    pthread_mutex_lock(&p->mu);
    for (;;) {
        lmx_pool_item *h = s.head;
        if (h && h->done) {
            s.head = h->snext;
            if (!s.head)
                s.tail = NULL;
            pthread_mutex_unlock(&p->mu);
            int stop = ops->consume(ctx, h);
            pthread_mutex_lock(&p->mu);
            s.inflight--;
            p->inflight--;
            s.ended |= stop != 0;
            pthread_cond_broadcast(&p->cv);
            continue;
        }
        if (s.ended && s.inflight == 0)
            break;
        if (!s.ended && p->inflight < p->max_inflight) {
            p->inflight++;
            s.inflight++;
            pthread_mutex_unlock(&p->mu);
            lmx_pool_item *it = ops->produce(ctx);
            pthread_mutex_lock(&p->mu);
            submit(p, &s, it);
            continue;
        }
        if (!help_one(p, worker))
            pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
}
