/* The one line-batch worker pool (used by the indexer and `longmixd tokenize`).
 *
 * Producers read their input into items (batches of lines or records) and submit them as a
 * stream; any thread of the pool processes any queued item with its own worker context; each
 * producer consumes its own items strictly in submission order. The pool has no threads of its
 * own: the callers' threads produce, and help process while they wait (lmx__pool_run_stream) or
 * once they have nothing to produce (lmx__pool_help). At most max_inflight items exist at once
 * over all streams, so memory is bounded, and results never depend on the thread count.
 *
 * Thread-safety: every function may be called from any thread, except that one stream is
 * driven by one thread. Entry point for both users; engine-only (part of lmx_engine). */
#ifndef LMX_POOL_H
#define LMX_POOL_H

#include <pthread.h>
#include <stddef.h>

/* Embedded (as the first member, by convention) in the caller's batch type. */
typedef struct lmx_pool_item {
    struct lmx_pool_item *qnext; /* the pool's queue */
    struct lmx_pool_item *snext; /* its stream, in submission order */
    int done;
} lmx_pool_item;

/* Processes one item on any thread; worker is that thread's context (e.g. its encoder). */
typedef void (*lmx_pool_work_fn)(lmx_pool_item *it, void *worker);

typedef struct lmx_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lmx_pool_work_fn work;
    lmx_pool_item *q_head, *q_tail;
    size_t inflight, max_inflight;
    size_t producers; /* threads between lmx__pool_claim and lmx__pool_release */
} lmx_pool;

typedef struct lmx_pool_stream_ops {
    /* On the producer's thread, without the pool lock: the next item, or NULL when the stream
     * ends (end of input or an error the producer keeps in ctx). */
    lmx_pool_item *(*produce)(void *ctx);
    /* On the producer's thread, in submission order, once processed: uses and frees it. A
     * non-zero return stops producing; the items already submitted are still consumed. */
    int (*consume)(void *ctx, lmx_pool_item *it);
} lmx_pool_stream_ops;

/* max_inflight >= 1 (e.g. 2 x threads). Returns 0 or -1 (pthread init failed). */
int lmx__pool_init(lmx_pool *p, size_t max_inflight, lmx_pool_work_fn work);
void lmx__pool_destroy(lmx_pool *p);

/* Claims task *next of n (tasks are claimed in order) and registers the caller as a producer
 * in the same step, so helpers never stop while a claimed task may still submit items.
 * Returns 1 with *task set (call lmx__pool_release when done), or 0 when all n are claimed. */
int lmx__pool_claim(lmx_pool *p, size_t *next, size_t n, size_t *task);
void lmx__pool_release(lmx_pool *p);

/* Drives one stream to its end (a claimed producer's thread): produces while the window has
 * room, consumes finished items in order, and processes queued items (any stream's) meanwhile. */
void lmx__pool_run_stream(lmx_pool *p, const lmx_pool_stream_ops *ops, void *ctx, void *worker);

/* Processes queued items until no producer is registered and the queue is empty. */
void lmx__pool_help(lmx_pool *p, void *worker);

#endif
