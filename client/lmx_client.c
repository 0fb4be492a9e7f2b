#define _POSIX_C_SOURCE 200809L
/* liblongmix: libcurl fetches with retries, backoff and replica failover, a background prefetch
 * worker per client; every batch verified before it is returned. */
#include "longmix.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <unistd.h>
#include <time.h>
#include <zstd.h>

#include "lmx_client_internal.h"
#include "lmx_util.h"
#include "lmx_wire.h"

#define MAX_REPLICAS 32
#define MAX_PREFETCH 1024

/* One prefetched result: a verified batch or the error that ended the worker's attempts. */
typedef struct pf_item {
    uint64_t step;
    int rc;
    lmx_batch *b;
    lmx_error e;
} pf_item;

struct lmx_client {
    char *urls[MAX_REPLICAS];
    int n_urls;
    atomic_int cur; /* the replica tried first; moves on failure (sticky failover) */
    _Atomic uint64_t learned_limit; /* max_batch_bytes from the plan's shape; 0 = not known yet */
    char *plan, *auth_header;
    lmx_client_options o; /* copies of the caller's numbers; its string pointers are not kept */

    pthread_mutex_t io_lock; /* the synchronous handle `curl` (fetch, fetch_into, next without prefetch) */
    CURL *curl;

    pthread_mutex_t lock; /* everything below */
    uint64_t pos;
    char plan_id[2 * LMX_PLAN_ID_BYTES + 1]; /* learnt from the first batch */

    /* prefetch: one worker thread with its own curl handle fills a ring of results for the steps
     * pos, pos+1, ... in order; `gen` changes on seek so in-flight work for old steps is dropped. */
    int worker_started;
    pthread_t worker;
    CURL *wcurl;
    pthread_cond_t ready, space;
    pf_item *q;
    uint32_t q_head, q_n, q_cap;
    uint64_t want; /* next step the worker fetches */
    int paused;    /* the worker stopped after an error; next() restarts it */
    atomic_uint gen;
    atomic_int stop;
    int busy;             /* the worker is fetching (c->lock released) */
    int forking;          /* fork() in progress: the worker stays parked (lmx_client_fork.c) */
    pthread_cond_t idle;  /* busy went to 0 */
    lmx__fork_hook fork_hook;
    pid_t owner; /* the process that opened it: after fork() the child has no worker thread */
};

/* In a forked child the client's worker thread is gone, its locks may have been taken at the
 * moment of fork, and its keep-alive socket is shared with the parent: nothing may touch them. */
static int forked_child(const lmx_client *c, lmx_error *err)
{
    pid_t now = getpid();
    if (now == c->owner)
        return 0;
    lmx__err(err, LMX_EINVAL, "client: opened in process %ld, used in process %ld after fork(); open a new client in the child",
             (long)c->owner, (long)now);
    return 1;
}

/* Before fork(): park the worker (no lock, allocation or libcurl call in progress) and keep
 * c->lock until after it, so the child's memory holds nothing the worker took mid-call. A request
 * in flight is abandoned (gen changes: cancelled() aborts it) and fetched again afterwards. */
static void fork_hold(void *arg)
{
    lmx_client *c = arg;
    pthread_mutex_lock(&c->lock);
    c->forking = 1;
    atomic_fetch_add(&c->gen, 1);
    while (c->busy)
        pthread_cond_wait(&c->idle, &c->lock);
}

static void fork_release(void *arg)
{
    lmx_client *c = arg;
    c->forking = 0;
    pthread_cond_broadcast(&c->space);
    pthread_mutex_unlock(&c->lock);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_ok;
static void global_init(void) { global_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == 0 && sodium_init() >= 0; }

const char *lmx_version(void) { return LMX_VERSION; } /* from project(VERSION) in CMakeLists.txt */

void lmx_client_options_init(lmx_client_options *o)
{
    memset(o, 0, sizeof *o);
    o->world = 1;
    o->prefetch = 2;
    o->timeout_ms = 60000;
    o->retries = 6;
}

int lmx_client_open(const lmx_client_options *o, lmx_client **out, lmx_error *err)
{
    if (!out)
        return lmx__err(err, LMX_EINVAL, "client: no place for the client (out is NULL)");
    *out = NULL;
    pthread_once(&global_once, global_init);
    if (!global_ok)
        return lmx__err(err, LMX_EINTERNAL, "libcurl or libsodium failed to initialize");
    if (!o || !o->urls || !*o->urls)
        return lmx__err(err, LMX_EINVAL, "client: no server URL given");
    if (!o->plan || !*o->plan)
        return lmx__err(err, LMX_EINVAL, "client: no plan given");
    uint32_t world = o->world ? o->world : 1;
    if (o->rank >= world)
        return lmx__err(err, LMX_EINVAL, "client: rank %u must be below world %u", o->rank, world);
    if (o->cp_size > LMX_MAX_CP_SIZE || (o->cp_size && o->cp_rank >= o->cp_size))
        return lmx__err(err, LMX_EINVAL, "client: cp_rank %u of cp_size %u (want cp_rank < cp_size <= %u)", o->cp_rank,
                        o->cp_size, LMX_MAX_CP_SIZE);
    if (o->cp_layout != LMX_CP_LAYOUT_ZIGZAG && o->cp_layout != LMX_CP_LAYOUT_THD)
        return lmx__err(err, LMX_EINVAL, "client: cp_layout %u (want zigzag 0 or thd 1)", o->cp_layout);
    if (o->cp_layout == LMX_CP_LAYOUT_THD && !o->cp_size)
        return lmx__err(err, LMX_EINVAL, "client: cp_layout thd needs cp_size >= 1");
    if (o->prefetch > MAX_PREFETCH)
        return lmx__err(err, LMX_EINVAL, "client: prefetch %u is above the limit of %d batches", o->prefetch,
                        MAX_PREFETCH);
    for (const char *p = o->plan; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-_.", *p)))
            return lmx__err(err, LMX_EINVAL, "client: plan name '%s' has characters outside [A-Za-z0-9._-]", o->plan);
    if (o->token)
        for (const char *p = o->token; *p; p++)
            if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
                return lmx__err(err, LMX_EINVAL, "client: the token has a space or control character");
    lmx_client *c = calloc(1, sizeof *c);
    if (!c)
        return lmx__err(err, LMX_ENOMEM, "client: out of memory");
    c->o = *o;
    c->o.urls = c->o.plan = c->o.token = NULL;
    c->o.world = world;
    if (!c->o.timeout_ms)
        c->o.timeout_ms = 60000;
    if (!c->o.retries)
        c->o.retries = 6;
    c->pos = c->want = o->start_step;
    c->owner = getpid();
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->io_lock, NULL);
    pthread_cond_init(&c->ready, NULL);
    pthread_cond_init(&c->space, NULL);
    pthread_cond_init(&c->idle, NULL);
    if (c->o.prefetch) { /* a worker thread may run: park it around fork() */
        c->fork_hook = (lmx__fork_hook){.hold = fork_hold, .release = fork_release, .arg = c};
        lmx__fork_register(&c->fork_hook);
    }
    if (!(c->plan = strdup(o->plan))) {
        lmx_client_close(c);
        return lmx__err(err, LMX_ENOMEM, "client: out of memory");
    }
    const char *p = o->urls;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && (*p == ' ' || *p == '\t'))
            p++, n--;
        while (n && (p[n - 1] == ' ' || p[n - 1] == '/'))
            n--;
        if (n) {
            if (c->n_urls == MAX_REPLICAS || (strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0)) {
                lmx__err(err, LMX_EINVAL, "client: '%.*s' is not an http:// or https:// URL (or more than %d replicas)",
                         (int)n, p, MAX_REPLICAS);
                lmx_client_close(c);
                return LMX_EINVAL;
            }
            if (!(c->urls[c->n_urls++] = strndup(p, n))) {
                lmx_client_close(c);
                return lmx__err(err, LMX_ENOMEM, "client: out of memory");
            }
        }
        p += n;
        while (*p == ',' || *p == ' ' || *p == '/')
            p++;
    }
    if (c->n_urls == 0) {
        lmx_client_close(c);
        return lmx__err(err, LMX_EINVAL, "client: no server URL given");
    }
    if (o->token && *o->token) {
        size_t n = strlen(o->token) + 32;
        if (!(c->auth_header = malloc(n))) {
            lmx_client_close(c);
            return lmx__err(err, LMX_ENOMEM, "client: out of memory");
        }
        snprintf(c->auth_header, n, "Authorization: Bearer %s", o->token);
    }
    c->curl = curl_easy_init();
    if (!c->curl) {
        lmx_client_close(c);
        return lmx__err(err, LMX_ENOMEM, "client: curl_easy_init failed");
    }
    *out = c;
    return LMX_OK;
}

static void drop_queue(lmx_client *c)
{
    for (uint32_t i = 0; i < c->q_n; i++)
        lmx_batch_free(c->q[(c->q_head + i) % c->q_cap].b);
    c->q_head = c->q_n = 0;
}

void lmx_client_close(lmx_client *c)
{
    if (!c || forked_child(c, NULL))
        return; /* in a forked child the copy is leaked: its thread, locks and socket are the parent's */
    lmx__fork_unregister(&c->fork_hook); /* before c->lock: the fork handler takes them in that order */
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->stop, 1);
    pthread_cond_broadcast(&c->space);
    pthread_cond_broadcast(&c->ready);
    int started = c->worker_started;
    pthread_mutex_unlock(&c->lock);
    if (started)
        pthread_join(c->worker, NULL);
    if (c->q)
        drop_queue(c);
    free(c->q);
    for (int i = 0; i < c->n_urls; i++)
        free(c->urls[i]);
    free(c->plan);
    if (c->auth_header) {
        sodium_memzero(c->auth_header, strlen(c->auth_header));
        free(c->auth_header);
    }
    if (c->curl)
        curl_easy_cleanup(c->curl);
    if (c->wcurl)
        curl_easy_cleanup(c->wcurl);
    pthread_cond_destroy(&c->ready);
    pthread_cond_destroy(&c->space);
    pthread_cond_destroy(&c->idle);
    pthread_mutex_destroy(&c->io_lock);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- one HTTP exchange ---- */

typedef struct exchange {
    long status; /* of the last status line (after 1xx or redirects) */
    int64_t content_length; /* -1 when not announced */
    char digest[96];
    char plan_id[64];
    int zstd;
    lmx__sink *sink;   /* a 2xx body goes here (bounded); NULL: kept like an error body */
    int sink_rc;       /* the sink refused the body: the transfer was stopped */
    lmx_error sink_err;
    char small[LMX__ERROR_BODY_MAX]; /* the first bytes of any other answer */
    size_t small_len;
    int small_full;    /* the transfer was stopped once `small` was full */
} exchange;

static void exchange_init(exchange *x, lmx__sink *sink)
{
    memset(x, 0, sizeof *x);
    x->content_length = -1;
    x->sink = sink;
}

/* Body bytes as they arrive: a 2xx answer into the bounded sink, anything else into a few KB
 * for the error message. Returning less than given stops the transfer (nothing more is read). */
static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    exchange *x = ud;
    size_t len = size * n;
    if (x->sink && x->status >= 200 && x->status < 300) {
        if (!x->sink->started &&
            (x->sink_rc = lmx__sink_begin(x->sink, x->zstd, x->content_length, &x->sink_err)) != LMX_OK)
            return 0;
        if ((x->sink_rc = lmx__sink_write(x->sink, p, len, &x->sink_err)) != LMX_OK)
            return 0;
        return len;
    }
    size_t room = sizeof x->small - x->small_len, take = len < room ? len : room;
    memcpy(x->small + x->small_len, p, take);
    x->small_len += take;
    if (take < len || x->small_len == sizeof x->small) {
        x->small_full = 1;
        return 0;
    }
    return len;
}

static void header_value(const char *line, size_t len, const char *name, char *dst, size_t cap)
{
    size_t nl = strlen(name);
    if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    size_t vn = len - nl - 1;
    while (vn && (*v == ' ' || *v == '\t'))
        v++, vn--;
    while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n' || v[vn - 1] == ' '))
        vn--;
    if (vn >= cap)
        vn = cap - 1;
    memcpy(dst, v, vn);
    dst[vn] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    exchange *x = ud;
    size_t len = size * n;
    char enc[32] = "", cl[32] = "";
    if (len >= 12 && strncmp(p, "HTTP/", 5) == 0) { /* a new response (after 1xx or a redirect) */
        x->digest[0] = x->plan_id[0] = '\0';
        x->zstd = 0;
        x->content_length = -1;
        const char *sp = memchr(p, ' ', len);
        x->status = sp && sp + 4 <= p + len ? strtol(sp + 1, NULL, 10) : 0;
    }
    header_value(p, len, LMX_HDR_DIGEST, x->digest, sizeof x->digest);
    header_value(p, len, LMX_HDR_PLAN_ID, x->plan_id, sizeof x->plan_id);
    header_value(p, len, "Content-Encoding", enc, sizeof enc);
    header_value(p, len, "Content-Length", cl, sizeof cl);
    if (enc[0])
        x->zstd = strcasecmp(enc, "zstd") == 0;
    uint64_t v;
    if (cl[0] && lmx__parse_u64(cl, INT64_MAX, &v) == 0)
        x->content_length = (int64_t)v;
    return len;
}

static int fail_batch(lmx_batch *b, int rc)
{
    lmx_batch_free(b);
    return rc;
}

/* Checks a 200 body (already decompressed by the sink, within max_batch_bytes) and makes it a
 * batch: digest of the uncompressed body, wire format, identity (step, rank, world, plan id
 * against the header and against the run's first batch). Takes the sink's buffer. */
static int make_batch(lmx_client *c, exchange *x, lmx__sink *sk, uint64_t step, lmx_batch **out, const char *url,
                      lmx_error *err)
{
    lmx_batch *b = calloc(1, sizeof *b);
    if (!b)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    if (!x->digest[0])
        return fail_batch(b, lmx__err(err, LMX_EFORMAT, "%s: response has no %s header (not a longmixd batch)", url,
                                      LMX_HDR_DIGEST));
    size_t size = sk->len;
    uint8_t *dst = sk->buf;
    b->owned = lmx__sink_take(sk);
    b->size = size;
    /* digest of the uncompressed body, compared in constant time */
    uint8_t h[32];
    char hex[65], want[96];
    crypto_generichash(h, sizeof h, dst, size, NULL, 0);
    lmx__hex(h, sizeof h, hex);
    snprintf(want, sizeof want, "%s%s", LMX_DIGEST_PREFIX, hex);
    if (strlen(x->digest) != strlen(want) || sodium_memcmp(want, x->digest, strlen(want)) != 0) {
        char said[200];
        lmx__escape_text(said, sizeof said, x->digest, strlen(x->digest));
        return fail_batch(b, lmx__err(err, LMX_ECHECKSUM, "%s: digest mismatch: the body hashes to %s, the %s header says %s",
                                      url, want, LMX_HDR_DIGEST, said));
    }
    int rc = lmx__wire_parse(dst, size, &b->v, err);
    if (rc != LMX_OK) {
        lmx__err_prefix(err, "%s: ", url);
        return fail_batch(b, rc);
    }
    lmx__hex(b->v.h.plan_id, LMX_PLAN_ID_BYTES, b->plan_id);
    if (b->v.h.step != step || b->v.h.rank != c->o.rank || b->v.h.world != c->o.world)
        return fail_batch(b, lmx__err(err, LMX_EFORMAT, "%s: got batch step %llu rank %u/%u, asked for %llu rank %u/%u",
                                      url, (unsigned long long)b->v.h.step, b->v.h.rank, b->v.h.world,
                                      (unsigned long long)step, c->o.rank, c->o.world));
    /* v3 answers any request for a padded plan; otherwise v2 with cp options, v1 without */
    const uint32_t ver = b->v.h.version;
    if (c->o.cp_size && ver != LMX_WIRE_VERSION_CP && ver != LMX_WIRE_VERSION_PAD)
        return fail_batch(b, lmx__err(err, LMX_EFORMAT,
                                      "%s: answered wire v%u to a request with cp_size: that longmixd predates "
                                      "context-parallel slices (upgrade it)", url, ver));
    if (!c->o.cp_size && ver != LMX_WIRE_VERSION && ver != LMX_WIRE_VERSION_PAD)
        return fail_batch(b, lmx__err(err, LMX_EFORMAT, "%s: answered wire v%u, asked for v1", url, ver));
    const uint32_t want_rank = c->o.cp_size ? c->o.cp_rank : 0, want_size = c->o.cp_size ? c->o.cp_size : 1;
    if (b->v.h.cp_rank != want_rank || b->v.h.cp_size != want_size || b->v.h.cp_layout != c->o.cp_layout)
        return fail_batch(b, lmx__err(err, LMX_EFORMAT, "%s: got cp slice %u of %u (layout %u), asked for %u of %u (layout %u)",
                                      url, b->v.h.cp_rank, b->v.h.cp_size, b->v.h.cp_layout, want_rank, want_size,
                                      c->o.cp_layout));
    if (x->plan_id[0] && strcmp(x->plan_id, b->plan_id) != 0) {
        char said[200];
        lmx__escape_text(said, sizeof said, x->plan_id, strlen(x->plan_id));
        return fail_batch(b, lmx__err(err, LMX_EFORMAT, "%s: plan id header %s differs from the body's %s", url, said,
                                      b->plan_id));
    }
    if (!(b->domains = calloc(b->v.h.n_domains + 1, sizeof *b->domains)))
        return fail_batch(b, lmx__err(err, LMX_ENOMEM, "out of memory"));
    for (uint32_t i = 0; i < b->v.h.n_domains; i++) {
        uint32_t n;
        const char *s = lmx__wire_domain(&b->v, i, &n);
        if (!(b->domains[i] = strndup(s, n)))
            return fail_batch(b, lmx__err(err, LMX_ENOMEM, "out of memory"));
    }
    pthread_mutex_lock(&c->lock);
    int changed = c->plan_id[0] && strcmp(c->plan_id, b->plan_id) != 0;
    char first[sizeof c->plan_id];
    memcpy(first, c->plan_id, sizeof first);
    if (!changed)
        memcpy(c->plan_id, b->plan_id, sizeof c->plan_id);
    pthread_mutex_unlock(&c->lock);
    if (changed)
        return fail_batch(b, lmx__err(err, LMX_EHTTP,
                                      "%s: plan '%s' changed on the server (id %s, this run started with %s): refusing "
                                      "to mix two plans in one run",
                                      url, c->plan, b->plan_id, first));
    *out = b;
    return LMX_OK;
}

/* What may cancel a fetch: the client closing, or (for the prefetch worker) a seek. */
typedef struct cancel {
    lmx_client *c;
    int worker;
    unsigned gen;
} cancel;

static int cancelled(const cancel *k)
{
    return atomic_load(&k->c->stop) || (k->worker && atomic_load(&k->c->gen) != k->gen);
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return cancelled(ud);
}

static double now_ms(void) { return lmx__now() * 1e3; }

/* Exponential backoff with jitter before retry round `round` (1, 2, ...): 50 ms doubling up to
 * 2 s, then a uniform draw from [half, full] (libsodium's randombytes) so clients that failed
 * together do not come back in lockstep. Sleeps in slices so a close or seek cuts it short, and
 * never past the deadline. */
static void backoff(unsigned round, const cancel *k, double deadline)
{
    unsigned ms = 50u << (round - 1 < 6 ? round - 1 : 6);
    if (ms > 2000)
        ms = 2000;
    ms = ms / 2 + randombytes_uniform(ms / 2 + 1);
    double until = now_ms() + ms;
    if (deadline > 0 && until > deadline)
        until = deadline;
    for (double t; (t = now_ms()) < until && !cancelled(k);) {
        double left = until - t < 20 ? until - t : 20;
        struct timespec ts = {0, (long)(left * 1e6)};
        nanosleep(&ts, NULL);
    }
}

/* The error of a non-200 answer: status and the server's {"error", "detail"} from the first
 * LMX__ERROR_BODY_MAX bytes, escaped onto one line. */
static int http_error(long status, const exchange *x, const char *url, lmx_error *err)
{
    char detail[600] = "";
    json_t *j = json_loadb(x->small, x->small_len, 0, NULL);
    if (json_is_object(j)) {
        json_t *je = json_object_get(j, "error"), *jd = json_object_get(j, "detail");
        char e[200] = "error", d[380] = "";
        if (json_is_string(je))
            lmx__escape_text(e, sizeof e, json_string_value(je), json_string_length(je));
        if (json_is_string(jd))
            lmx__escape_text(d, sizeof d, json_string_value(jd), json_string_length(jd));
        snprintf(detail, sizeof detail, "%s: %s", e, d);
    }
    json_decref(j);
    int code = status == 404   ? LMX_ENOTFOUND
               : status == 416 ? LMX_ERANGE
               : status == 401 || status == 403 ? LMX_EAUTH
                                                : LMX_EHTTP;
    return lmx__err(err, code, "%s: HTTP %ld %s", url, status, detail[0] ? detail : "(no JSON error body)");
}

#define CANCELLED 1 /* do_get's result when the client closed or seeked meanwhile */

/* One GET of url on curl: a 2xx body into sink (when given), any other answer's first
 * LMX__ERROR_BODY_MAX bytes into x->small. Returns LMX_OK when an answer came (x->status; a 2xx
 * body complete and within the sink's limit), CANCELLED, or an error naming url: LMX_ENETWORK,
 * LMX_ETIMEOUT, LMX_EFORMAT (not HTTP, or a body the sink refused: x->sink_rc set), LMX_ENOMEM. */
static int do_get(lmx_client *c, CURL *curl, const char *url, long timeout, int zstd, lmx__sink *sink,
                  const cancel *k, exchange *x, lmx_error *err)
{
    exchange_init(x, sink);
    struct curl_slist *hdrs = NULL;
    if (zstd)
        hdrs = curl_slist_append(hdrs, "Accept-Encoding: zstd");
    if (c->auth_header)
        hdrs = curl_slist_append(hdrs, c->auth_header);
    curl_easy_reset(curl); /* keeps the connection cache: keep-alive across requests */
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout < 10000 ? timeout : 10000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
    if (k) {
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, (void *)k);
    }
    CURLcode cc = curl_easy_perform(curl);
    curl_slist_free_all(hdrs);
    if (cc == CURLE_WRITE_ERROR && x->small_full)
        cc = CURLE_OK; /* we stopped reading an error body on purpose */
    if (cc == CURLE_WRITE_ERROR && x->sink_rc) {
        if (err)
            *err = x->sink_err;
        return lmx__err_prefix(err, "%s: ", url), x->sink_rc;
    }
    if (cc == CURLE_ABORTED_BY_CALLBACK)
        return CANCELLED;
    if (cc == CURLE_WEIRD_SERVER_REPLY || cc == CURLE_UNSUPPORTED_PROTOCOL)
        return lmx__err(err, LMX_EFORMAT, "%s: the answer is not HTTP (%s)", url, curl_easy_strerror(cc));
    if (cc != CURLE_OK)
        return lmx__err(err, cc == CURLE_OPERATION_TIMEDOUT ? LMX_ETIMEOUT : LMX_ENETWORK, "%s: %s", url,
                        curl_easy_strerror(cc));
    if (sink && x->status >= 200 && x->status < 300 && (x->sink_rc = lmx__sink_finish(sink, &x->sink_err)) != LMX_OK) {
        if (err)
            *err = x->sink_err;
        return lmx__err_prefix(err, "%s: ", url), x->sink_rc;
    }
    return LMX_OK;
}

/* The most uncompressed bytes a batch of a plan of this shape can take (proto/WIRE.md): per
 * sequence its tokens (at most 4 bytes), at most one 32-byte span and one cu_seqlens entry per
 * token, next_token and the two prefix indexes; plus the header and a domain table of up to 4 MiB. */
static uint64_t shape_limit(uint64_t seq_len, uint64_t global_batch, uint32_t world, int cp)
{
    /* wire v2/v3 (cp, or a padded plan): at most 8 more bytes a position (label, position id), a
     * real cu_seqlens entry (v3) and 2 spans cut at chunk edges */
    uint64_t n = global_batch / world ? global_batch / world : 1, per = (cp ? 52 : 40) * seq_len + 128;
    uint64_t cap = (uint64_t)1 << 36; /* 64 GiB: beyond any plan the server accepts */
    if (per > cap / n)
        return cap;
    return n * per + 4096 + ((uint64_t)4 << 20);
}

/* max_batch_bytes for this client: the option; else derived once from the plan's shape
 * (GET /v1/plans/NAME on the replica at hand); else LMX__DEFAULT_MAX_BATCH. A transport failure
 * of that request is returned (the attempt fails over like a failed batch request); any answer
 * that does not give the shape leaves the default for this attempt (re-asked on the next one
 * unless the plan's answer was a 200). */
static int batch_limit(lmx_client *c, CURL *curl, const char *base, long timeout, const cancel *k, uint64_t *limit,
                       lmx_error *err)
{
    *limit = c->o.max_batch_bytes ? c->o.max_batch_bytes : atomic_load(&c->learned_limit);
    if (*limit)
        return LMX_OK;
    *limit = LMX__DEFAULT_MAX_BATCH;
    char url[4096];
    snprintf(url, sizeof url, "%s/v1/plans/%s", base, c->plan);
    lmx__sink sk;
    lmx__sink_init(&sk, (uint64_t)1 << 20, NULL, 0);
    exchange x;
    int rc = do_get(c, curl, url, timeout, 0, &sk, k, &x, err);
    if (rc != LMX_OK && !x.sink_rc) {
        lmx__sink_free(&sk);
        return rc;
    }
    if (rc == LMX_OK && x.status == 200) {
        json_t *j = json_loadb((const char *)sk.buf, sk.len, 0, NULL), *spec = json_object_get(j, "spec");
        json_int_t L = json_integer_value(json_object_get(spec, "seq_len"));
        json_int_t G = json_integer_value(json_object_get(spec, "global_batch"));
        if (L > 0 && G > 0 && L <= INT32_MAX && G <= INT32_MAX)
            *limit = shape_limit((uint64_t)L, (uint64_t)G, c->o.world,
                                 c->o.cp_size != 0 || json_object_get(spec, "pad_multiple") != NULL);
        json_decref(j);
        atomic_store(&c->learned_limit, *limit);
    } else if (x.sink_rc) {
        atomic_store(&c->learned_limit, *limit); /* a 200 too large to be a plan: keep the default */
    }
    lmx__sink_free(&sk);
    return LMX_OK;
}

/* The timeout of the next request: timeout_ms, cut to what is left of the deadline; 0 when the
 * deadline has passed. */
static long request_timeout(const lmx_client *c, double deadline)
{
    long timeout = (long)c->o.timeout_ms;
    if (deadline > 0) {
        double left = deadline - now_ms();
        if (left < 1)
            return 0;
        if (left < timeout)
            timeout = (long)left;
    }
    return timeout;
}

/* Fetches, verifies and returns batch `step` on `curl`, trying the replicas in turn. */
static int fetch_one(lmx_client *c, CURL *curl, uint64_t step, void *buf, size_t cap, size_t *needed, lmx_batch **out,
                     const cancel *k, lmx_error *err)
{
    *out = NULL;
    lmx_error last = {0};
    double deadline = c->o.deadline_ms ? now_ms() + c->o.deadline_ms : 0;
    unsigned attempt;
    for (attempt = 0; attempt < c->o.retries; attempt++) {
        /* A failure moves to the next replica at once; a whole round of failures backs off. */
        if (attempt && attempt % (unsigned)c->n_urls == 0)
            backoff(attempt / (unsigned)c->n_urls, k, deadline);
        if (cancelled(k))
            return lmx__err(err, LMX_EINTERNAL, "batch %llu: cancelled (client closed or seeked)", (unsigned long long)step);
        int ui = atomic_load(&c->cur) % c->n_urls;
        const char *base = c->urls[ui];
        uint64_t limit = 0;
        long timeout = request_timeout(c, deadline);
        int rc = timeout ? batch_limit(c, curl, base, timeout, k, &limit, &last) : LMX_OK;
        if (rc == LMX_OK && !(timeout = request_timeout(c, deadline))) {
            if (!last.code)
                lmx__err(&last, LMX_ETIMEOUT, "deadline of %u ms reached", c->o.deadline_ms);
            break;
        }
        exchange x;
        x.status = 0;
        lmx__sink sk;
        lmx__sink_init(&sk, limit, buf, cap);
        char url[4096];
        int un = snprintf(url, sizeof url, "%s/v1/plans/%s/batches/%llu?rank=%u&world=%u", base, c->plan,
                          (unsigned long long)step, c->o.rank, c->o.world);
        if (c->o.cp_size && un > 0 && (size_t)un < sizeof url)
            snprintf(url + un, sizeof url - (size_t)un, "&cp_rank=%u&cp_size=%u%s", c->o.cp_rank, c->o.cp_size,
                     c->o.cp_layout == LMX_CP_LAYOUT_THD ? "&cp_layout=thd" : "");
        if (rc == LMX_OK)
            rc = do_get(c, curl, url, timeout, !c->o.no_zstd, &sk, k, &x, &last);
        if (rc == CANCELLED) {
            lmx__sink_free(&sk);
            return lmx__err(err, LMX_EINTERNAL, "batch %llu: cancelled (client closed or seeked)", (unsigned long long)step);
        }
        if (rc == LMX_ENOMEM && sk.needed) { /* the caller's buffer is too small: theirs to fix */
            if (needed)
                *needed = (size_t)sk.needed;
            lmx__sink_free(&sk);
            if (err)
                *err = last;
            return rc;
        }
        if (rc == LMX_OK && x.status == 200) {
            if (needed)
                *needed = sk.len;
            rc = make_batch(c, &x, &sk, step, out, url, &last);
            if (rc == LMX_OK || rc == LMX_ENOMEM || rc == LMX_EHTTP) {
                lmx__sink_free(&sk);
                if (rc != LMX_OK && err)
                    *err = last;
                return rc;
            }
        } else if (rc == LMX_OK && x.status >= 400 && x.status < 500 && x.status != 408 && x.status != 429) {
            rc = http_error(x.status, &x, url, err); /* the request itself is wrong: no retry */
            lmx__sink_free(&sk);
            return rc;
        } else if (rc == LMX_OK) {
            http_error(x.status, &x, url, &last); /* 5xx, 408, 429, 1xx/3xx, other 2xx: retried */
        }
        lmx__sink_free(&sk);
        /* fail over: the next attempt goes to the next replica (unless another thread moved on) */
        atomic_compare_exchange_strong(&c->cur, &ui, (ui + 1) % c->n_urls);
    }
    if (err) {
        *err = last;
        lmx__err_prefix(err, "batch %llu: gave up after %u attempt%s; last: ", (unsigned long long)step, attempt,
                        attempt == 1 ? "" : "s");
    }
    return last.code ? last.code : LMX_ENETWORK;
}

int lmx_client_fetch(lmx_client *c, uint64_t step, lmx_batch **out, lmx_error *err)
{
    if (!c || !out)
        return lmx__err(err, LMX_EINVAL, "fetch: NULL client or out");
    if (forked_child(c, err))
        return LMX_EINVAL;
    cancel k = {c, 0, 0};
    pthread_mutex_lock(&c->io_lock);
    int rc = fetch_one(c, c->curl, step, NULL, 0, NULL, out, &k, err);
    pthread_mutex_unlock(&c->io_lock);
    return rc;
}

int lmx_client_fetch_into(lmx_client *c, uint64_t step, void *buf, size_t cap, size_t *needed, lmx_batch **out,
                          lmx_error *err)
{
    if (!c || !out)
        return lmx__err(err, LMX_EINVAL, "fetch_into: NULL client or out");
    *out = NULL;
    if (!buf)
        return lmx__err(err, LMX_EINVAL, "fetch_into: no buffer");
    if (forked_child(c, err))
        return LMX_EINVAL;
    cancel k = {c, 0, 0};
    pthread_mutex_lock(&c->io_lock);
    int rc = fetch_one(c, c->curl, step, buf, cap, needed, out, &k, err);
    pthread_mutex_unlock(&c->io_lock);
    return rc;
}

/* The prefetch worker: keeps up to q_cap results for pos, pos+1, ... in the ring. */
static void *prefetch_main(void *arg)
{
    lmx_client *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!atomic_load(&c->stop)) {
        if (c->paused || c->q_n >= c->q_cap || c->forking) {
            pthread_cond_wait(&c->space, &c->lock);
            continue;
        }
        uint64_t step = c->want;
        cancel k = {c, 1, atomic_load(&c->gen)};
        c->busy = 1;
        pthread_mutex_unlock(&c->lock);
        pf_item it = {step, 0, NULL, {0}};
        it.rc = fetch_one(c, c->wcurl, step, NULL, 0, NULL, &it.b, &k, &it.e);
        pthread_mutex_lock(&c->lock);
        c->busy = 0;
        pthread_cond_broadcast(&c->idle);
        if (atomic_load(&c->stop) || atomic_load(&c->gen) != k.gen) { /* closed or seeked meanwhile */
            lmx_batch_free(it.b);
            continue;
        }
        c->q[(c->q_head + c->q_n) % c->q_cap] = it;
        c->q_n++;
        c->want = step + 1;
        if (it.rc != LMX_OK)
            c->paused = 1; /* nothing past an error until the caller has seen it */
        pthread_cond_broadcast(&c->ready);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static int start_worker(lmx_client *c, lmx_error *err)
{
    if (!c->q && !(c->q = calloc(c->o.prefetch, sizeof *c->q)))
        return lmx__err(err, LMX_ENOMEM, "client: out of memory for the prefetch queue");
    c->q_cap = c->o.prefetch;
    if (!c->wcurl && !(c->wcurl = curl_easy_init()))
        return lmx__err(err, LMX_ENOMEM, "client: curl_easy_init failed");
    if (pthread_create(&c->worker, NULL, prefetch_main, c) != 0)
        return lmx__err(err, LMX_ENOMEM, "client: could not start the prefetch thread");
    c->worker_started = 1;
    return LMX_OK;
}

int lmx_client_next(lmx_client *c, lmx_batch **out, lmx_error *err)
{
    if (!c || !out)
        return lmx__err(err, LMX_EINVAL, "next: NULL client or out");
    *out = NULL;
    if (forked_child(c, err))
        return LMX_EINVAL;
    if (c->o.prefetch == 0) {
        cancel k = {c, 0, 0};
        pthread_mutex_lock(&c->io_lock); /* serializes next() callers: each gets its own step */
        pthread_mutex_lock(&c->lock);
        uint64_t step = c->pos;
        pthread_mutex_unlock(&c->lock);
        int rc = fetch_one(c, c->curl, step, NULL, 0, NULL, out, &k, err);
        if (rc == LMX_OK) {
            pthread_mutex_lock(&c->lock);
            if (c->pos == step) /* unless a seek came in meanwhile */
                c->pos++;
            pthread_mutex_unlock(&c->lock);
        }
        pthread_mutex_unlock(&c->io_lock);
        return rc;
    }
    pthread_mutex_lock(&c->lock);
    int rc = LMX_OK;
    if (!c->worker_started && (rc = start_worker(c, err)) != LMX_OK) {
        pthread_mutex_unlock(&c->lock);
        return rc;
    }
    while (c->q_n == 0 && !atomic_load(&c->stop)) {
        if (c->paused) { /* a caller has seen the last error: this call tries that step again */
            c->paused = 0;
            pthread_cond_signal(&c->space);
        }
        pthread_cond_wait(&c->ready, &c->lock);
    }
    if (c->q_n == 0) {
        pthread_mutex_unlock(&c->lock);
        return lmx__err(err, LMX_EINVAL, "next: the client is being closed");
    }
    pf_item it = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_n--;
    if (it.step != c->pos) { /* cannot happen: seek empties the queue */
        lmx_batch_free(it.b);
        pthread_mutex_unlock(&c->lock);
        return lmx__err(err, LMX_EINTERNAL, "next: prefetched step %llu but the position is %llu",
                        (unsigned long long)it.step, (unsigned long long)c->pos);
    }
    if (it.rc == LMX_OK) {
        c->pos++;
        *out = it.b;
    } else {
        c->want = c->pos; /* the worker is paused; the next call fetches this step again */
        if (err)
            *err = it.e;
    }
    pthread_cond_signal(&c->space);
    pthread_mutex_unlock(&c->lock);
    return it.rc;
}

int lmx_client_seek(lmx_client *c, uint64_t step)
{
    if (!c || forked_child(c, NULL))
        return LMX_EINVAL;
    pthread_mutex_lock(&c->lock);
    atomic_fetch_add(&c->gen, 1);
    if (c->q)
        drop_queue(c);
    c->pos = c->want = step;
    c->paused = 0;
    pthread_cond_signal(&c->space);
    pthread_mutex_unlock(&c->lock);
    return LMX_OK;
}

uint64_t lmx_client_position(const lmx_client *c)
{
    if (!c)
        return 0;
    if (forked_child(c, NULL)) /* the child is single-threaded; the parent may have held the lock */
        return c->pos;
    lmx_client *m = (lmx_client *)c; /* the lock is not part of the observable state */
    pthread_mutex_lock(&m->lock);
    uint64_t p = m->pos;
    pthread_mutex_unlock(&m->lock);
    return p;
}

int lmx_get(const char *urls, const char *token, const char *path, uint32_t timeout_ms, char **body, size_t *len,
            lmx_error *err)
{
    *body = NULL;
    lmx_client_options o;
    lmx_client_options_init(&o);
    o.urls = urls;
    o.plan = "_";
    o.token = token;
    if (timeout_ms)
        o.timeout_ms = timeout_ms;
    lmx_client *c;
    int rc = lmx_client_open(&o, &c, err);
    if (rc)
        return rc;
    lmx_error last = {0};
    rc = LMX_ENETWORK;
    for (int i = 0; i < c->n_urls; i++) {
        char url[4096];
        snprintf(url, sizeof url, "%s%s", c->urls[i], path);
        lmx__sink sk;
        lmx__sink_init(&sk, LMX__GET_MAX, NULL, 0);
        exchange x;
        rc = do_get(c, c->curl, url, (long)c->o.timeout_ms, 0, &sk, NULL, &x, &last);
        if (rc == LMX_OK && x.status >= 200 && x.status < 300) {
            uint8_t *p = lmx__sink_take(&sk), *q = realloc(p, sk.len + 1);
            if (!q) {
                free(p);
                rc = lmx__err(&last, LMX_ENOMEM, "%s: out of memory", url);
                break;
            }
            q[sk.len] = '\0';
            *body = (char *)q;
            if (len)
                *len = sk.len;
            lmx_client_close(c);
            return LMX_OK;
        }
        lmx__sink_free(&sk);
        if (rc == LMX_OK) {
            rc = http_error(x.status, &x, url, &last);
            if (x.status < 500)
                break;
        }
    }
    if (err)
        *err = last;
    lmx_client_close(c);
    return rc;
}
