/* `longmixd serve`: start-up (config, index, state directory, plans, libmicrohttpd thread pool +
 * poll), SIGHUP reload, SIGTERM drain. The request path starts in lmxd_dispatch.c. */
#include "lmxd_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#ifdef LMX_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define STATE_FILE "plans.json"
#define LMXD_RELOAD_READ_S 10 /* seconds a SIGHUP waits for the config to be read */

static void notify(const char *state)
{
#ifdef LMX_HAVE_SYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

/* ---- start-up ---- */

static int parse_listen(const char *hp, struct sockaddr_storage *sa, int *loopback, lmx_error *err)
{
    char host[256];
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp || (size_t)(colon - hp) >= sizeof host)
        return lmx__err(err, LMX_EINVAL, "listen '%s': want HOST:PORT", hp);
    uint64_t port;
    if (lmx__parse_u64(colon + 1, 65535, &port) != 0)
        return lmx__err(err, LMX_EINVAL, "listen '%s': bad port", hp);
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    memset(sa, 0, sizeof *sa);
    struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    } else {
        return lmx__err(err, LMX_EINVAL, "listen '%s': HOST must be an IPv4 or IPv6 address", hp);
    }
    return LMX_OK;
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* What SIGHUP does with a freshly read config: plans and token lists follow it; the rest keeps
 * its start value (listen and index changes are named: they need a restart). 0 when applied. */
static int apply_reload(server *s, lmxd_config *cfg)
{
    lmx_error err = {0};
    if (!s->opts.listen && !same(cfg->listen, s->cfg.listen))
        lmxd_log("reload: \"listen\" changed to %s: that needs a restart (still listening on %s)",
                 cfg->listen ? cfg->listen : "(default)", s->cfg.listen ? s->cfg.listen : "the start address");
    if (!s->opts.index_dir && !same(cfg->index_dir, s->cfg.index_dir))
        lmxd_log("reload: \"index\" changed to %s: that needs a restart (still serving %s)",
                 cfg->index_dir ? cfg->index_dir : "(none)", lmx__index_dir(s->ix));
    if (cfg->exposed)
        lmxd_log("warning: %s holds token hashes and is readable by group or others (chmod 600 it)",
                 s->opts.config_path);
    /* Built outside the admin lock (a build may wait for background verification): POST and
     * DELETE go on meanwhile; the runtime plans are taken under it, at the swap. */
    plan_ref **cv;
    if (lmxd_plans_build(s, cfg->plans, cfg->n_plans, &cv, &err) != LMX_OK) {
        if (atomic_load(&s->stopping))
            lmxd_log("reload abandoned: stopping");
        else
            lmxd_log("reload failed, keeping the running plans: %s", err.message);
        return -1;
    }
    if (atomic_load(&s->stopping)) {
        lmxd_plans_put(cv, cfg->n_plans);
        lmxd_log("reload abandoned: stopping");
        return -1;
    }
    pthread_mutex_lock(&s->admin);
    /* The runtime plans carry over (the config wins on a name clash). */
    size_t n, nr = 0;
    plan_ref **rv = lmxd_plans_snapshot(s, &n);
    for (size_t i = 0; rv && i < n; i++) {
        if (rv[i]->runtime)
            rv[nr++] = rv[i];
        else
            lmxd_plan_put(rv[i]);
    }
    size_t total;
    plan_ref **v = lmxd_plans_assemble(s, cv, cfg->n_plans, rv, nr, &total);
    lmxd_plans_swap(s, v, total);
    lmxd_plans_gc_tables(s);
    /* Token lists follow the config too (rotation without a restart). Turning auth off takes an
     * explicit "auth": "none" (a config that merely lost its "auth" keeps the tokens: behind a
     * same-host proxy "loopback" is every client), and never on a non-loopback address without
     * --insecure, as at start. Every change is logged. */
    if (!cfg->has_auth && s->cfg.has_auth && !cfg->auth_none) {
        lmxd_log("reload: the config has no \"auth\"; keeping the current tokens (\"auth\": \"none\" turns "
                 "authentication off)");
    } else if (!cfg->has_auth && !s->loopback && !s->opts.insecure) {
        lmxd_log("reload: the config has no tokens but the address is not loopback; keeping the current tokens");
    } else {
        if (s->cfg.has_auth && !cfg->has_auth)
            lmxd_log("reload: authentication turned OFF (\"auth\": \"none\"): anyone who reaches the port reads "
                     "and changes plans");
        else if (cfg->has_auth)
            lmxd_log("reload: authentication %s: %d read and %d admin token hash(es)",
                     s->cfg.has_auth ? "on" : "turned ON", cfg->n_read, cfg->n_admin);
        pthread_rwlock_wrlock(&s->lock);
        s->cfg.has_auth = cfg->has_auth;
        s->cfg.n_read = cfg->n_read;
        s->cfg.n_admin = cfg->n_admin;
        memcpy(s->cfg.read_hashes, cfg->read_hashes, sizeof cfg->read_hashes);
        memcpy(s->cfg.admin_hashes, cfg->admin_hashes, sizeof cfg->admin_hashes);
        pthread_rwlock_unlock(&s->lock);
    }
    pthread_mutex_unlock(&s->admin);
    lmxd_log("reloaded %s: %zu plan(s) from the config, %zu in all", s->opts.config_path, cfg->n_plans, total);
    return 0;
}

/* A reload reads the config on a helper thread and waits at most LMXD_RELOAD_READ_S for it: a hung
 * file system costs a failed reload. An abandoned read frees its own job whenever it returns. */
typedef struct load_job {
    char *path;
    lmxd_config cfg;
    lmx_error err;
    int rc;
    atomic_int state; /* 0 reading, 1 read, 2 abandoned */
} load_job;

static void job_free(load_job *j)
{
    if (j->rc == LMX_OK)
        lmxd_config_free(&j->cfg);
    free(j->path);
    free(j);
}

static void *load_main(void *p)
{
    load_job *j = p;
    j->rc = lmxd_config_load(j->path, &j->cfg, &j->err);
    int reading = 0;
    if (!atomic_compare_exchange_strong(&j->state, &reading, 1))
        job_free(j);
    return NULL;
}

/* One reload on the reload thread: reads the config (bounded: a hung file system costs a failed
 * reload) and applies it; the running plans serve until the new ones replace them. 0 when
 * applied. */
static int reload_once(server *s)
{
    load_job *j = calloc(1, sizeof *j);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (!j || !(j->path = strdup(s->opts.config_path)) || pthread_create(&t, &attr, load_main, j) != 0) {
        pthread_attr_destroy(&attr);
        if (j)
            free(j->path);
        free(j);
        lmxd_log("reload failed: cannot start the config reader");
        return -1;
    }
    pthread_attr_destroy(&attr);
    double deadline = lmx__now() + LMXD_RELOAD_READ_S;
    while (!atomic_load(&s->stopping) && atomic_load(&j->state) == 0 && lmx__now() < deadline)
        nanosleep(&(struct timespec){0, 20000000L}, NULL);
    int reading = 0;
    if (atomic_compare_exchange_strong(&j->state, &reading, 2)) {
        if (!atomic_load(&s->stopping))
            lmxd_log("reload failed, keeping the running config: reading %s took more than %d s (hung file system?)",
                     s->opts.config_path, LMXD_RELOAD_READ_S);
        return -1;
    }
    int rc = -1;
    if (!atomic_load(&s->stopping) && j->rc != LMX_OK)
        lmxd_log("reload failed, keeping the running plans: %s", j->err.message);
    else if (!atomic_load(&s->stopping))
        rc = apply_reload(s, &j->cfg);
    job_free(j);
    return rc;
}

static void *reload_main(void *arg)
{
    server *s = arg;
    char msg[64];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* MONOTONIC_USEC: what systemd's Type=notify-reload wants alongside RELOADING=1. */
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    notify(msg);
    for (;;) {
        atomic_fetch_add(reload_once(s) == 0 ? &s->reloads_ok : &s->reloads_failed, 1);
        pthread_mutex_lock(&s->reload_lock);
        int again = s->reload_again && !atomic_load(&s->stopping);
        s->reload_again = 0;
        s->reload_busy = again;
        pthread_mutex_unlock(&s->reload_lock);
        if (!again)
            break;
        lmxd_log("reload: reading %s again for the SIGHUP received during the last reload", s->opts.config_path);
    }
    if (!atomic_load(&s->stopping))
        notify("READY=1");
    return NULL;
}

/* SIGHUP: starts a reload on its own thread, or, when one is running, marks that the config is to
 * be read once more after it (SIGHUPs during a reload coalesce into that one). */
static void reload_request(server *s)
{
    pthread_mutex_lock(&s->reload_lock);
    if (s->reload_busy) {
        if (!s->reload_again)
            lmxd_log("reload: SIGHUP during a reload: %s is read again when it ends (further SIGHUPs until then "
                     "coalesce into that one)",
                     s->opts.config_path);
        s->reload_again = 1;
    } else {
        if (s->reload_joinable) /* the last reload's thread has ended */
            pthread_join(s->reload_thread, NULL);
        s->reload_joinable = 0;
        if (pthread_create(&s->reload_thread, NULL, reload_main, s) != 0) {
            lmxd_log("reload failed: cannot start the reload thread");
        } else {
            s->reload_joinable = s->reload_busy = 1;
            lmxd_log("reload: reading %s; the running plans serve until the new ones are ready", s->opts.config_path);
        }
    }
    pthread_mutex_unlock(&s->reload_lock);
}

json_t *lmxd_reload_json(server *s)
{
    pthread_mutex_lock(&s->reload_lock);
    int running = s->reload_busy, queued = s->reload_again;
    pthread_mutex_unlock(&s->reload_lock);
    return json_pack("{s:b, s:b, s:I, s:I}", "running", running, "queued", queued, "ok",
                     (json_int_t)atomic_load(&s->reloads_ok), "failed", (json_int_t)atomic_load(&s->reloads_failed));
}

/* At stop, after lmxd_verify_stop (which ends the waits of a build on verification): waits for a
 * running reload, which throws its plans away. */
static void reload_join(server *s)
{
    atomic_store(&s->stopping, 1);
    pthread_mutex_lock(&s->reload_lock);
    int joinable = s->reload_joinable;
    s->reload_joinable = 0;
    pthread_mutex_unlock(&s->reload_lock);
    if (joinable)
        pthread_join(s->reload_thread, NULL);
}

/* Plans keep their item tables in files, mapped (common/plan/lmx_plan_table.c): in
 * INDEX/plan-tables when the index folder is writable (like verified.json), else in
 * STATE_DIR/plan-tables, else on the heap. Built once per (index, spec); a restart maps them. */
static void set_table_dir(server *s, const char *index_dir, char *note, size_t cap)
{
    const char *base = access(index_dir, W_OK) == 0 ? index_dir : s->cfg.state_dir;
    char dir[4200];
    if (!base) {
        snprintf(note, cap, "plan tables on the heap: %s is not writable and there is no state_dir", index_dir);
        return;
    }
    snprintf(dir, sizeof dir, "%s/plan-tables", base);
    lmx__index_set_table_dir(s->ix, dir);
}

int lmxd_serve(const lmxd_serve_options *opts)
{
    server *s = calloc(1, sizeof *s);
    lmx_error err = {0};
    int exit_code = 1;
    if (!s)
        return 1;
    s->opts = *opts;
    s->lock_fd = -1;
    s->started = lmx__now();
    pthread_rwlock_init(&s->lock, NULL);
    pthread_mutex_init(&s->detok_lock, NULL);
    pthread_mutex_init(&s->admin, NULL);
    pthread_mutex_init(&s->reload_lock, NULL);
    pthread_mutex_init(&s->conn_lock, NULL);
    pthread_cond_init(&s->watchdog_cv, NULL);
    /* A SIGHUP during start-up (index verification can take minutes) must not kill the daemon:
     * it stays pending and becomes a reload once serving. SIGTERM keeps its default until then. */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);
    if (sodium_init() < 0) {
        lmxd_log("libsodium failed to initialize");
        goto out;
    }
    if (lmxd_config_load(opts->config_path, &s->cfg, &err) != LMX_OK) {
        lmxd_log("%s", err.message);
        goto out;
    }
    if (s->cfg.exposed)
        lmxd_log("warning: %s holds token hashes and is readable by group or others (chmod 600 it)", opts->config_path);
    const char *listen = opts->listen ? opts->listen : s->cfg.listen ? s->cfg.listen : "127.0.0.1:8470";
    const char *index_dir = opts->index_dir ? opts->index_dir : s->cfg.index_dir;
    struct sockaddr_storage sa;
    int loopback = 0;
    if (parse_listen(listen, &sa, &loopback, &err) != LMX_OK) {
        lmxd_log("%s", err.message);
        goto out;
    }
    s->loopback = loopback;
    if (!loopback && !s->cfg.has_auth && !opts->insecure) {
        lmxd_log("refusing to listen on %s without \"auth\" in the config: anyone could read the data (add auth, "
              "bind a loopback address, or pass --insecure)",
              listen);
        goto out;
    }
    if (!index_dir) {
        lmxd_log("no index: set \"index\" in %s or pass --index DIR", opts->config_path);
        goto out;
    }
    char verified[5000] = "";
    if (!opts->skip_verify && !s->cfg.verify_background) {
        /* Only shards the verified record does not vouch for are read (all cores). */
        lmx_verify_options vo = {.changed_only = 1, .state_dir = s->cfg.state_dir};
        lmx_verify_report vr;
        if (lmx__index_verify_run(index_dir, &vo, &vr, &err) != LMX_OK) {
            lmxd_log("index %s failed verification: %s", index_dir, err.message);
            goto out;
        }
        /* logged once serving: a start that fails prints only its reason */
        snprintf(verified, sizeof verified, "index %s: %zu shard(s) verified: %zu read (%.1f MB in %.2f s), %zu remembered%s%s",
                 index_dir, vr.shards, vr.checked, (double)vr.bytes / 1e6, vr.seconds, vr.remembered,
                 vr.record_note[0] ? "; " : "", vr.record_note);
    }
    if (lmx__index_open(index_dir, &s->ix, &err) != LMX_OK) {
        lmxd_log("%s", err.message);
        goto out;
    }
    /* Background: reads of a shard wait for its verification (lmxd_verify.c), plan builds too. */
    if (!opts->skip_verify && s->cfg.verify_background && lmxd_verify_start(s, &err) != LMX_OK) {
        lmxd_log("%s", err.message);
        goto out;
    }
    if (s->cfg.state_dir) {
        if (lmx__mkdirs(s->cfg.state_dir, &err) != LMX_OK) {
            lmxd_log("state_dir: %s", err.message);
            goto out;
        }
        size_t sl = strlen(s->cfg.state_dir) + sizeof "/" STATE_FILE;
        if (!(s->state_path = malloc(sl)))
            goto out;
        /* One daemon per state directory: two would overwrite each other's runtime plans. The lock
         * is on the directory itself, which cannot be deleted away while in use (a lock file
         * could: `rm STATE_DIR/lock` let a second daemon in). */
        s->lock_fd = open(s->cfg.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            lmxd_log("state_dir %s: %s", s->cfg.state_dir,
                  s->lock_fd >= 0 && errno == EWOULDBLOCK ? "in use by another longmixd (one daemon per state_dir)"
                                                          : strerror(errno));
            goto out;
        }
        snprintf(s->state_path, sl, "%s/%s", s->cfg.state_dir, STATE_FILE);
    }
    char tables_note[4200] = "";
    set_table_dir(s, index_dir, tables_note, sizeof tables_note);
    if (s->cfg.cache_mb > 0 && !(s->cache = lmxd_cache_create((size_t)s->cfg.cache_mb << 20))) {
        lmxd_log("cache_mb %d: out of memory", s->cfg.cache_mb);
        goto out;
    }
    plan_ref **cv, **rv;
    size_t nr, total;
    if (lmxd_plans_build(s, s->cfg.plans, s->cfg.n_plans, &cv, &err) != LMX_OK) {
        lmxd_log("%s: %s", opts->config_path, err.message);
        goto out;
    }
    if (lmxd_state_load(s, &rv, &nr, &err) != LMX_OK) {
        lmxd_plans_put(cv, s->cfg.n_plans);
        lmxd_log("%s", err.message);
        goto out;
    }
    if (nr)
        lmxd_log("restored %zu runtime plan(s) from %s", nr, s->state_path);
    plan_ref **v = lmxd_plans_assemble(s, cv, s->cfg.n_plans, rv, nr, &total);
    lmxd_plans_swap(s, v, total);
    lmxd_plans_gc_tables(s);

    /* Signals are taken synchronously by this thread; MHD's threads inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Bodies over 1 MiB (a full 128K x 32 batch is 8-16 MiB) come straight from mmap, so a freed
     * one goes back to the system at once: glibc's default raises the threshold after the first
     * free and the heap then kept freed bodies as RSS (+60 MiB in tests/soak/hostile.py). Smaller
     * ones (a rank's 512 KiB share) stay on the heap, as before (docs/BENCHMARKS.md). */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    if (lmxd_guard_install() != 0) {
        lmxd_log("cannot install the SIGBUS handler: %s", strerror(errno));
        goto out;
    }
    /* poll(), not epoll: with epoll and a thread pool, libmicrohttpd 0.9.75 (Debian 12) can abort
     * in MHD_quiesce_daemon ("Failed to remove listen FD from epoll set") when a worker has just
     * taken the listen socket out of its set at the connection limit (seen in
     * integration.hostile.per_address_limit under ASan). */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_POLL;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* Connections per client address: on a loopback address every client is the local proxy (one
     * address for all), so no cap there unless configured; elsewhere 64 (docs/OPERATIONS.md). */
    if (s->cfg.per_address_limit < 0)
        s->cfg.per_address_limit = loopback ? 0 : 64;
    s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, lmxd_on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->cfg.threads, MHD_OPTION_CONNECTION_LIMIT,
                              s->cfg.connection_limit, MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.connection_timeout_s,
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->cfg.per_address_limit,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536, MHD_OPTION_NOTIFY_COMPLETED,
                              lmxd_on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, lmxd_on_connection, s,
                              MHD_OPTION_URI_LOG_CALLBACK, lmxd_on_uri, s, MHD_OPTION_END);
    if (!s->mhd) {
        lmxd_log("cannot listen on %s: %s", listen, strerror(errno));
        goto out;
    }
    if (lmxd_watchdog_start(s) != 0) {
        lmxd_log("cannot start the connection watchdog thread");
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    if (verified[0])
        lmxd_log("%s", verified);
    if (tables_note[0])
        lmxd_log("%s", tables_note);
    lmxd_log("serving %s (%llu documents, %llu tokens, %zu plan(s)) on %s port %u", index_dir,
          (unsigned long long)lmx__index_n_docs(s->ix), (unsigned long long)lmx__index_n_tokens(s->ix), s->n_plans,
          listen, di ? di->port : 0);
    if (opts->port_file) {
        char port[16];
        int n = snprintf(port, sizeof port, "%u\n", di ? (unsigned)di->port : 0u);
        if (lmx__write_file_atomic(opts->port_file, port, (size_t)n, &err) != LMX_OK) {
            lmxd_log("--port-file: %s", err.message);
            goto out;
        }
    }
    notify("READY=1");
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            reload_request(s);
            continue;
        }
        break;
    }
    notify("STOPPING=1");
    atomic_store(&s->stopping, 1); /* a reload still building gives up rather than swapping */
    lmxd_verify_stop(s); /* first: shards it leaves unverified are refused, so no request waits for them */
    reload_join(s);      /* then a reload building plans ends (its waits for verification did) */
    /* Requests whose headers are still arriving are not waited for (a slow client could hold the
     * stop for the whole connection timeout); requests being handled or sent are. */
    lmxd_log("stopping: draining %d in-flight request(s)", atomic_load(&s->active));
    MHD_quiesce_daemon(s->mhd);
    for (int i = 0; i < 300 && atomic_load(&s->active) > 0; i++)
        nanosleep(&(struct timespec){0, 100000000L}, NULL);
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
    lmxd_watchdog_stop(s);
    lmxd_log("stopped");
    exit_code = 0;
out:
    lmxd_verify_stop(s);
    reload_join(s);
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    lmxd_watchdog_stop(s);
    lmxd_plans_swap(s, NULL, 0);
    lmxd_cache_free(s->cache); /* after MHD stopped: every response has released its entry */
    lmx__index_close(s->ix);
    lmxd_config_free(&s->cfg);
    pthread_rwlock_destroy(&s->lock);
    lmx__tokenizer_free(s->detok);
    pthread_mutex_destroy(&s->detok_lock);
    pthread_mutex_destroy(&s->admin);
    pthread_mutex_destroy(&s->reload_lock);
    pthread_mutex_destroy(&s->conn_lock);
    pthread_cond_destroy(&s->watchdog_cv);
    free(s->state_path);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s);
    return exit_code;
}
