/* `verify: background`: the daemon serves while the shards the verified record does not vouch for
 * are hashed on every core by one thread here (lmx__index_verify_run). Reads of a shard wait for it
 * through the index's gate (common/index/lmx_index_gate.c): a batch touching an unverified shard
 * waits up to verify_wait seconds, then answers 503 index_verifying; one touching a bad shard
 * answers 503 index_damaged naming it; nothing is sent from unchecked bytes. */
#include "lmxd_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void on_shard(void *ctx, size_t i, int good, const char *path, const char *why)
{
    server *s = ctx;
    lmx__gate_mark(lmx__index_gate(s->ix), i, good);
    if (!good)
        lmxd_log("background verification: shard %s is bad (%s): requests that read it answer 503 index_damaged; "
                 "replace it and restart",
                 path, why);
}

/* LMX_TEST_VERIFY_HOLD=FILE (tests only, proto/HTTP.md): no shard is read while FILE exists (the
 * shards the verified record vouches for are marked good at once), so a test can observe the
 * daemon before verification deterministically. */
static void test_hold(void *ctx, size_t i)
{
    server *s = ctx;
    (void)i;
    const char *hold = getenv("LMX_TEST_VERIFY_HOLD");
    while (hold && *hold && access(hold, F_OK) == 0 && !atomic_load(&s->verify_cancel))
        nanosleep(&(struct timespec){0, 20000000L}, NULL);
}

static void *verify_main(void *arg)
{
    server *s = arg;
    lmx_verify_options vo = {.changed_only = 1,
                             .before_read = test_hold,
                             .state_dir = s->cfg.state_dir,
                             .quiet = 1,
                             .on_shard = on_shard,
                             .ctx = s,
                             .cancel = &s->verify_cancel};
    lmx_verify_report vr;
    lmx_error err = {0};
    int rc = lmx__index_verify_run(lmx__index_dir(s->ix), &vo, &vr, &err);
    /* Shards left unmarked (cancelled, a reader out of memory, a manifest error) are refused. */
    lmx_gate *g = lmx__index_gate(s->ix);
    size_t good, bad, total;
    lmx__gate_counts(g, &good, &bad, &total);
    if (good + bad < total)
        lmx__gate_settle(g);
    atomic_store(&s->verify_bytes, vr.bytes);
    s->verify_seconds = lmx__now() - s->verify_t0;
    atomic_store(&s->verify_done, 1);
    if (atomic_load(&s->verify_cancel))
        lmxd_log("background verification stopped");
    else if (rc == LMX_OK)
        lmxd_log("index %s: %zu shard(s) verified in the background: %zu read (%.1f MB in %.2f s), %zu remembered%s%s",
                 lmx__index_dir(s->ix), vr.shards, vr.checked, (double)vr.bytes / 1e6, vr.seconds, vr.remembered,
                 vr.record_note[0] ? "; " : "", vr.record_note);
    else
        lmxd_log("background verification: %s", err.message);
    return NULL;
}

int lmxd_verify_start(server *s, lmx_error *err)
{
    int rc = lmx__index_gate_enable(s->ix, s->cfg.verify_wait_s, err);
    if (rc != LMX_OK)
        return rc;
    s->verify_t0 = lmx__now();
    /* Started before the main thread blocks the signals it takes with sigwait: without them
     * blocked here too, a SIGTERM arriving while the main thread is not in sigwait would be
     * delivered to this thread and kill the daemon without its drain. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    errno = pthread_create(&s->verify_thread, NULL, verify_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (errno != 0)
        return lmx__err_errno(err, "cannot start the background verification thread");
    s->verify_running = 1;
    lmxd_log("verifying %zu shard(s) of %s in the background (verify: background)", lmx__index_n_shards(s->ix),
             lmx__index_dir(s->ix));
    return LMX_OK;
}

void lmxd_verify_stop(server *s)
{
    if (!s->verify_running)
        return;
    atomic_store(&s->verify_cancel, 1);
    pthread_join(s->verify_thread, NULL);
    s->verify_running = 0;
}

json_t *lmxd_verify_json(server *s)
{
    lmx_gate *g = lmx__index_gate(s->ix);
    size_t good, bad, total;
    lmx__gate_counts(g, &good, &bad, &total);
    int done = !g || atomic_load(&s->verify_done);
    json_t *o = json_object();
    json_object_set_new(o, "mode", json_string(s->opts.skip_verify ? "skipped" : g ? "background" : "foreground"));
    json_object_set_new(o, "shards", json_integer((json_int_t)lmx__index_n_shards(s->ix)));
    json_object_set_new(o, "verified", json_integer((json_int_t)(g ? good : s->opts.skip_verify ? 0 : lmx__index_n_shards(s->ix))));
    json_object_set_new(o, "bad", json_integer((json_int_t)bad));
    json_object_set_new(o, "done", json_boolean(done));
    if (g && done) {
        json_object_set_new(o, "bytes_read", json_integer((json_int_t)atomic_load(&s->verify_bytes)));
        json_object_set_new(o, "seconds", json_real(s->verify_seconds));
    }
    const char *first = lmx__gate_first_bad(g);
    if (first)
        json_object_set_new(o, "first_bad", json_string(first));
    return o;
}

enum MHD_Result lmxd_send_gate_fault(server *s, struct MHD_Connection *c, int fault, const char *shard)
{
    char d[LMX_ERROR_MESSAGE_MAX];
    if (fault == LMX_EFORMAT) { /* a damaged document record: the message names shard and document */
        static atomic_int logged;
        if (atomic_exchange(&logged, 1) == 0)
            lmxd_log("%s: requests that read it answer 503 index_damaged; replace the shard and restart",
                     lmx__gate_fault_message());
        snprintf(d, sizeof d, "%s: nothing is served from it; replace the shard and restart (docs/OPERATIONS.md)",
                 lmx__gate_fault_message());
        return lmxd_send_error(c, 503, "index_damaged", d);
    }
    if (fault == LMX_ECHECKSUM) {
        snprintf(d, sizeof d, "shard %s failed verification (BLAKE2b differs from the manifest): nothing is served from it; "
                 "replace it and restart (docs/OPERATIONS.md)", shard ? shard : "?");
        return lmxd_send_error(c, 503, "index_damaged", d);
    }
    size_t good, bad, total;
    lmx__gate_counts(lmx__index_gate(s->ix), &good, &bad, &total);
    snprintf(d, sizeof d, "shard %s is still being verified (%zu of %zu shards verified, verify: background): retry shortly",
             shard ? shard : "?", good, total);
    return lmxd_send_retry(c, 503, (unsigned)(s->cfg.verify_wait_s > 0 ? s->cfg.verify_wait_s : 1), "index_verifying", d);
}
