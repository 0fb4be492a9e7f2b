/* The verification gate of `verify: background` (server/lmxd_serve.c): shards are mapped before
 * their BLAKE2b is checked, so every read of a shard's documents passes here first. A verified
 * shard passes at the cost of one atomic load; an unverified one makes the reader wait for its
 * verification (bounded for token reads, until done for the plan builder's scan); a shard still
 * unverified after the bound, or bad, is noted as this thread's fault. The read still returns
 * (no error path in the hot loops, as with the SIGBUS guard); the caller checks
 * lmx__gate_end and throws the result away, so nothing built from unchecked bytes is served. */
#include "lmx_index_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lmx_util.h"

struct lmx_gate {
    size_t n;
    const char **paths; /* borrowed from the index's shards */
    atomic_int *state;  /* 0 = not yet verified, 1 = good, -1 = bad */
    atomic_size_t good, bad;
    double wait_s;
    pthread_mutex_t lock;
    pthread_cond_t cv; /* broadcast on every state change */
};

/* This thread's first fault since lmx__gate_begin: LMX_OK, LMX_ETIMEOUT, LMX_ECHECKSUM or
 * LMX_EFORMAT (a damaged document record, lmx__gate_record_fault: found with or without a gate). */
static _Thread_local int fault;
static _Thread_local const char *fault_path;
static _Thread_local const char *record_path; /* the first damaged record's shard since begin */
static _Thread_local char record_msg[LMX_ERROR_MESSAGE_MAX];

lmx_gate *lmx__gate_new(size_t n, const char **paths, double wait_s)
{
    lmx_gate *g = calloc(1, sizeof *g);
    if (!g || !(g->state = calloc(n + 1, sizeof *g->state)) || !(g->paths = calloc(n + 1, sizeof *g->paths))) {
        if (g)
            free(g->state);
        free(g);
        return NULL;
    }
    g->n = n;
    memcpy(g->paths, paths, n * sizeof *paths);
    for (size_t i = 0; i < n; i++)
        atomic_init(&g->state[i], 0);
    atomic_init(&g->good, 0);
    atomic_init(&g->bad, 0);
    g->wait_s = wait_s;
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* lmx__now's clock: deadlines below */
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    return g;
}

void lmx__gate_free(lmx_gate *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cv);
    free(g->state);
    free(g->paths);
    free(g);
}

void lmx__gate_mark(lmx_gate *g, size_t shard, int good)
{
    if (!g || shard >= g->n)
        return;
    pthread_mutex_lock(&g->lock);
    int was = atomic_exchange(&g->state[shard], good ? 1 : -1);
    if (was != (good ? 1 : -1)) {
        if (was == 1)
            atomic_fetch_sub(&g->good, 1);
        if (was == -1)
            atomic_fetch_sub(&g->bad, 1);
        atomic_fetch_add(good ? &g->good : &g->bad, 1);
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->lock);
}

void lmx__gate_settle(lmx_gate *g)
{
    for (size_t i = 0; g && i < g->n; i++)
        if (atomic_load(&g->state[i]) == 0)
            lmx__gate_mark(g, i, 0);
}

void lmx__gate_counts(const lmx_gate *g, size_t *good, size_t *bad, size_t *total)
{
    *good = g ? atomic_load(&((lmx_gate *)g)->good) : 0;
    *bad = g ? atomic_load(&((lmx_gate *)g)->bad) : 0;
    *total = g ? g->n : 0;
}

const char *lmx__gate_first_bad(const lmx_gate *g)
{
    for (size_t i = 0; g && i < g->n; i++)
        if (atomic_load(&((lmx_gate *)g)->state[i]) < 0)
            return g->paths[i];
    return NULL;
}

void lmx__gate_pass(lmx_gate *g, size_t shard, int until_done)
{
    if (atomic_load_explicit(&g->state[shard], memory_order_acquire) == 1 || fault)
        return; /* after a fault the result is thrown away anyway: no more waiting */
    double deadline = lmx__now() + g->wait_s;
    pthread_mutex_lock(&g->lock);
    while (atomic_load(&g->state[shard]) == 0) {
        if (until_done) {
            pthread_cond_wait(&g->cv, &g->lock);
            continue;
        }
        double now = lmx__now();
        if (now >= deadline)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double d = deadline - now;
        ts.tv_sec += (time_t)d;
        ts.tv_nsec += (long)((d - (double)(time_t)d) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cv, &g->lock, &ts);
    }
    int st = atomic_load(&g->state[shard]);
    pthread_mutex_unlock(&g->lock);
    if (st != 1) {
        fault = st < 0 ? LMX_ECHECKSUM : LMX_ETIMEOUT;
        fault_path = g->paths[shard];
    }
}

void lmx__gate_record_fault(const char *path, const char *msg)
{
    if (record_path)
        return;
    record_path = path;
    snprintf(record_msg, sizeof record_msg, "%s", msg);
    if (!fault) {
        fault = LMX_EFORMAT;
        fault_path = path;
    }
}

const char *lmx__gate_record_fault_shard(void) { return record_path; }

const char *lmx__gate_fault_message(void) { return record_msg; }

void lmx__gate_begin(void)
{
    fault = LMX_OK;
    fault_path = NULL;
    record_path = NULL;
    record_msg[0] = '\0';
}

int lmx__gate_end(const char **shard)
{
    int f = fault;
    if (shard)
        *shard = fault_path;
    fault = LMX_OK;
    fault_path = NULL;
    return f;
}
