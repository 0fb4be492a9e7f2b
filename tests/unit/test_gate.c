/* common/index/lmx_index_gate.c: the verification gate of `verify: background`. A read of a
 * verified shard passes; of a shard not yet verified it waits (bounded, or until marked) and
 * notes a fault (timeout or bad) naming the shard; faults are per thread and cleared by begin. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "lmx_index.h"
#include "lmx_index_internal.h"
#include "lmx_test.h"
#include "lmx_util.h"

static const char *paths[3] = {"s0.lmxs", "s1.lmxs", "s2.lmxs"};

static void *mark_later(void *arg)
{
    nanosleep(&(struct timespec){0, 50000000L}, NULL);
    lmx__gate_mark(arg, 2, 1);
    return NULL;
}

static void test_gate(void)
{
    lmx_gate *g = lmx__gate_new(3, paths, 0.05);
    CHECK(g != NULL);
    size_t good, bad, total;
    lmx__gate_counts(g, &good, &bad, &total);
    CHECK(good == 0 && bad == 0 && total == 3);

    const char *shard = NULL;
    lmx__gate_begin(); /* not yet verified: waits the bound, then a timeout fault */
    double t0 = lmx__now();
    lmx__gate_pass(g, 0, 0);
    CHECK(lmx__now() - t0 >= 0.04);
    CHECK_EQ_INT(lmx__gate_end(&shard), LMX_ETIMEOUT);
    CHECK_EQ_STR(shard, "s0.lmxs");
    CHECK_EQ_INT(lmx__gate_end(&shard), LMX_OK); /* end clears */

    lmx__gate_mark(g, 0, 1);
    lmx__gate_mark(g, 1, 0);
    lmx__gate_begin();
    lmx__gate_pass(g, 0, 0);
    CHECK_EQ_INT(lmx__gate_end(NULL), LMX_OK);
    lmx__gate_begin();
    lmx__gate_pass(g, 1, 1); /* bad: no wait, even until_done */
    lmx__gate_pass(g, 0, 0);
    CHECK_EQ_INT(lmx__gate_end(&shard), LMX_ECHECKSUM);
    CHECK_EQ_STR(shard, "s1.lmxs");
    CHECK_EQ_STR(lmx__gate_first_bad(g), "s1.lmxs");

    pthread_t t; /* until_done waits for the mark, however long the bound */
    pthread_create(&t, NULL, mark_later, g);
    lmx__gate_begin();
    lmx__gate_pass(g, 2, 1);
    CHECK_EQ_INT(lmx__gate_end(NULL), LMX_OK);
    pthread_join(t, NULL);

    lmx__gate_mark(g, 1, 1); /* re-marking moves the counts */
    lmx__gate_counts(g, &good, &bad, &total);
    CHECK(good == 3 && bad == 0);
    CHECK(lmx__gate_first_bad(g) == NULL);
    lmx__gate_free(g);

    g = lmx__gate_new(2, paths, 10);
    lmx__gate_mark(g, 0, 1);
    lmx__gate_settle(g); /* verification ended: what is left unmarked is refused */
    lmx__gate_counts(g, &good, &bad, &total);
    CHECK(good == 1 && bad == 1);
    lmx__gate_begin();
    lmx__gate_pass(g, 1, 0);
    CHECK_EQ_INT(lmx__gate_end(&shard), LMX_ECHECKSUM);
    lmx__gate_free(g);
    lmx__gate_free(NULL);
}

int main(void)
{
    test_gate();
    TEST_MAIN_END();
}
