/* The HTTP service: libmicrohttpd thread pool + epoll, a plan registry swapped on reload, batch
 * bodies built once into one buffer (compressed into a second one when the client takes zstd). */
#define _GNU_SOURCE /* strcasestr */
#include "lmxd_serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>
#ifdef LMX_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "lmx_index.h"
#include "lmx_plan.h"
#include "lmx_proto.h"
#include "lmx_util.h"
#include "lmxd_config.h"
#include "lmxd_route.h"

#define N_LAT_BUCKETS 12
static const double lat_bounds[N_LAT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,   0.25,   0.5,   1.0,  2.5,   5.0};
#define N_STATUS 12
static const int status_codes[N_STATUS] = {200, 304, 400, 401, 403, 404, 405, 413, 414, 416, 500, 503};

typedef struct plan_ref {
    lmx_plan *plan;
    atomic_int refs;
    atomic_uint_fast64_t max_step; /* highest step served + 1 (0 = none) */
    atomic_uint_fast64_t batches, bytes;
} plan_ref;

typedef struct server {
    lmxd_serve_options opts;
    lmxd_config cfg;
    lmx_index *ix;
    pthread_rwlock_t lock; /* guards plans/n_plans (the array, not the plans) */
    plan_ref **plans;
    size_t n_plans;
    struct MHD_Daemon *mhd;
    atomic_int inflight;
    atomic_uint_fast64_t requests, bytes_out, latency[N_LAT_BUCKETS + 1], status[N_STATUS + 1];
    _Atomic double latency_sum;
    double started;
} server;

static void logf_(const char *fmt, ...) LMX_PRINTF(1, 2);
static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("longmixd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void notify(const char *state)
{
#ifdef LMX_HAVE_SYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

/* ---- plan registry ---- */

static void ref_put(plan_ref *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        lmx__plan_free(r->plan);
        free(r);
    }
}

static plan_ref *find_plan(server *s, const char *name)
{
    plan_ref *hit = NULL;
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->n_plans; i++)
        if (strcmp(lmx__plan_name(s->plans[i]->plan), name) == 0) {
            hit = s->plans[i];
            atomic_fetch_add(&hit->refs, 1);
            break;
        }
    pthread_rwlock_unlock(&s->lock);
    return hit;
}

/* Builds plan objects for cfg's plans, reusing unchanged ones (same id) from the registry. */
static int build_plans(server *s, const lmxd_plan_cfg *pc, size_t n, plan_ref ***out, lmx_error *err)
{
    plan_ref **v = calloc(n + 1, sizeof *v);
    if (!v)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        lmx_plan *p;
        int rc = lmx__plan_create(s->ix, pc[i].name, &pc[i].spec, &p, err);
        if (rc != LMX_OK) {
            for (size_t k = 0; k < i; k++)
                ref_put(v[k]);
            free(v);
            return rc;
        }
        plan_ref *old = find_plan(s, pc[i].name);
        if (old && strcmp(lmx__plan_id_hex(old->plan), lmx__plan_id_hex(p)) == 0) {
            lmx__plan_free(p); /* unchanged: keep the warm caches */
            v[i] = old;
            continue;
        }
        ref_put(old);
        v[i] = calloc(1, sizeof **v);
        v[i]->plan = p;
        atomic_store(&v[i]->refs, 1);
    }
    *out = v;
    return LMX_OK;
}

static void swap_plans(server *s, plan_ref **v, size_t n)
{
    pthread_rwlock_wrlock(&s->lock);
    plan_ref **old = s->plans;
    size_t old_n = s->n_plans;
    s->plans = v;
    s->n_plans = n;
    pthread_rwlock_unlock(&s->lock);
    for (size_t i = 0; i < old_n; i++)
        ref_put(old[i]);
    free(old);
}

/* ---- responses ---- */

static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned status, void *data, size_t len,
                                const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, data, free);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *txt = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!txt)
        return MHD_NO;
    size_t n = strlen(txt);
    txt[n] = '\n'; /* json_dumps's NUL becomes the final newline */
    return send_buf(c, status, txt, n + 1, "application/json");
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *error, const char *detail)
{
    json_t *j = json_object();
    json_object_set_new(j, "error", json_string(error));
    json_object_set_new(j, "detail", json_string(detail));
    return send_json(c, status, j);
}

static unsigned status_of(int code)
{
    switch (code) {
    case LMX_EINVAL: return 400;
    case LMX_ENOTFOUND: return 404;
    case LMX_ERANGE: return 416;
    case LMX_EAUTH: return 401;
    default: return 500;
    }
}

/* ---- handlers ---- */

static const char *get_arg(void *ctx, const char *key)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)ctx, MHD_GET_ARGUMENT_KIND, key);
}

static json_t *plan_json(plan_ref *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(lmx__plan_name(r->plan)));
    json_object_set_new(o, "plan_id", json_string(lmx__plan_id_hex(r->plan)));
    json_object_set_new(o, "spec", lmx__plan_spec_json(lmx__plan_spec(r->plan)));
    uint64_t ms = lmx__plan_max_steps(r->plan);
    if (ms != UINT64_MAX)
        json_object_set_new(o, "max_steps", json_integer((json_int_t)ms));
    return o;
}

static enum MHD_Result handle_plans(server *s, struct MHD_Connection *c, const lmxd_request *rq)
{
    if (rq->plan[0]) {
        plan_ref *r = find_plan(s, rq->plan);
        if (!r)
            return send_error(c, 404, "unknown_plan", rq->plan);
        json_t *o = plan_json(r);
        ref_put(r);
        return send_json(c, 200, o);
    }
    json_t *root = json_object(), *arr = json_object();
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->n_plans; i++)
        json_object_set_new(arr, lmx__plan_name(s->plans[i]->plan), plan_json(s->plans[i]));
    pthread_rwlock_unlock(&s->lock);
    json_object_set_new(root, "index_id", json_string(lmx__index_identity(s->ix)));
    json_object_set_new(root, "plans", arr);
    return send_json(c, 200, root);
}

static int accepts_zstd(struct MHD_Connection *c)
{
    const char *ae = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept-Encoding");
    return ae && strcasestr(ae, "zstd") != NULL;
}

/* One compression context per MHD worker thread, freed when the thread exits (MHD_stop_daemon). */
static pthread_key_t cctx_key;
static pthread_once_t cctx_once = PTHREAD_ONCE_INIT;
static void free_cctx(void *p) { ZSTD_freeCCtx(p); }
static void make_cctx_key(void) { (void)pthread_key_create(&cctx_key, free_cctx); }

static ZSTD_CCtx *thread_cctx(void)
{
    pthread_once(&cctx_once, make_cctx_key);
    ZSTD_CCtx *c = pthread_getspecific(cctx_key);
    if (!c && (c = ZSTD_createCCtx()) != NULL && pthread_setspecific(cctx_key, c) != 0) {
        ZSTD_freeCCtx(c);
        c = NULL;
    }
    return c;
}

static enum MHD_Result handle_body(server *s, struct MHD_Connection *c, const lmxd_request *rq)
{
    plan_ref *r = find_plan(s, rq->plan);
    if (!r) {
        char d[160];
        snprintf(d, sizeof d, "no plan named '%s' (GET /v1/plans lists them)", rq->plan);
        return send_error(c, 404, "unknown_plan", d);
    }
    char etag[96];
    snprintf(etag, sizeof etag, "\"%s-%llu-%u-%u%s\"", lmx__plan_id_hex(r->plan), (unsigned long long)rq->step, rq->rank,
             rq->world, rq->kind == LMXD_R_SEQUENCE ? "-seq" : "");
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
    int zstd = accepts_zstd(c);
    if (inm && strcmp(inm, etag) == 0) {
        ref_put(r);
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "ETag", etag);
        enum MHD_Result ret = MHD_queue_response(c, 304, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    lmx_buf body = {0};
    lmx_error err = {0};
    int rc = rq->kind == LMXD_R_BATCH ? lmx__plan_batch(r->plan, rq->step, rq->rank, rq->world, &body, &err)
                                      : lmx__plan_sequence(r->plan, rq->step, &body, &err);
    if (rc != LMX_OK) {
        ref_put(r);
        lmx__buf_free(&body);
        unsigned st = status_of(rc);
        return send_error(c, st,
                          st == 416   ? "step_out_of_range"
                          : st == 400 ? "bad_parameter"
                                      : "internal",
                          err.message);
    }
    if (rq->kind == LMXD_R_BATCH) {
        uint64_t want = rq->step + 1, cur = atomic_load(&r->max_step);
        while (cur < want && !atomic_compare_exchange_weak(&r->max_step, &cur, want))
            ;
        atomic_fetch_add(&r->batches, 1);
    }
    uint8_t h[32];
    char digest[80];
    crypto_generichash(h, sizeof h, body.data, body.len, NULL, 0);
    memcpy(digest, LMX_DIGEST_PREFIX, strlen(LMX_DIGEST_PREFIX));
    lmx__hex(h, sizeof h, digest + strlen(LMX_DIGEST_PREFIX));
    void *out = body.data;
    size_t out_len = body.len;
    if (zstd) {
        ZSTD_CCtx *cctx = thread_cctx();
        size_t bound = ZSTD_compressBound(body.len);
        void *z = malloc(bound);
        size_t zn = z && cctx ? ZSTD_compressCCtx(cctx, z, bound, body.data, body.len, s->cfg.zstd_level) : 0;
        if (!z || ZSTD_isError(zn)) {
            free(z);
            zstd = 0;
        } else {
            free(body.data);
            out = z;
            out_len = zn;
        }
    }
    atomic_fetch_add(&r->bytes, out_len);
    char plan_id[2 * LMX_PLAN_ID_BYTES + 1];
    snprintf(plan_id, sizeof plan_id, "%s", lmx__plan_id_hex(r->plan));
    ref_put(r);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(out_len, out, free);
    if (!resp) {
        free(out);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", LMX_MEDIA_BATCH);
    MHD_add_response_header(resp, LMX_HDR_DIGEST, digest);
    MHD_add_response_header(resp, LMX_HDR_PLAN_ID, plan_id);
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Cache-Control", "public, max-age=31536000, immutable");
    MHD_add_response_header(resp, "Vary", "Accept-Encoding");
    if (zstd)
        MHD_add_response_header(resp, "Content-Encoding", "zstd");
    atomic_fetch_add(&s->bytes_out, out_len);
    enum MHD_Result ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result handle_stats(server *s, struct MHD_Connection *c, const lmxd_request *rq)
{
    char *ixs = lmx__index_stats_json(s->ix, 4096);
    json_t *root = json_object(), *plans = json_object();
    json_object_set_new(root, "index", ixs ? json_loads(ixs, 0, NULL) : json_null());
    free(ixs);
    pthread_rwlock_rdlock(&s->lock);
    size_t n = s->n_plans;
    plan_ref **v = calloc(n + 1, sizeof *v);
    for (size_t i = 0; v && i < n; i++) {
        v[i] = s->plans[i];
        atomic_fetch_add(&v[i]->refs, 1);
    }
    pthread_rwlock_unlock(&s->lock);
    int found = 0;
    for (size_t i = 0; v && i < n; i++) {
        if (!rq->plan[0] || strcmp(rq->plan, lmx__plan_name(v[i]->plan)) == 0) {
            json_object_set_new(plans, lmx__plan_name(v[i]->plan), lmx__plan_stats(v[i]->plan, 0));
            found = 1;
        }
        ref_put(v[i]);
    }
    free(v);
    if (rq->plan[0] && !found) {
        json_decref(root);
        json_decref(plans);
        return send_error(c, 404, "unknown_plan", rq->plan);
    }
    json_object_set_new(root, "plans", plans);
    return send_json(c, 200, root);
}

static enum MHD_Result handle_metrics(server *s, struct MHD_Connection *c)
{
    lmx_buf b = {0};
    lmx__buf_printf(&b, "# HELP longmix_requests_total HTTP requests answered.\n# TYPE longmix_requests_total counter\n");
    lmx__buf_printf(&b, "longmix_requests_total %llu\n", (unsigned long long)atomic_load(&s->requests));
    lmx__buf_printf(&b, "# HELP longmix_responses_total Responses by status code.\n# TYPE longmix_responses_total counter\n");
    for (int i = 0; i < N_STATUS; i++)
        lmx__buf_printf(&b, "longmix_responses_total{code=\"%d\"} %llu\n", status_codes[i],
                        (unsigned long long)atomic_load(&s->status[i]));
    lmx__buf_printf(&b, "longmix_responses_total{code=\"other\"} %llu\n", (unsigned long long)atomic_load(&s->status[N_STATUS]));
    lmx__buf_printf(&b, "# HELP longmix_response_bytes_total Body bytes sent (after compression).\n# TYPE longmix_response_bytes_total counter\n");
    lmx__buf_printf(&b, "longmix_response_bytes_total %llu\n", (unsigned long long)atomic_load(&s->bytes_out));
    lmx__buf_printf(&b, "# HELP longmix_request_seconds Time to build a response.\n# TYPE longmix_request_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < N_LAT_BUCKETS; i++) {
        cum += atomic_load(&s->latency[i]);
        lmx__buf_printf(&b, "longmix_request_seconds_bucket{le=\"%g\"} %llu\n", lat_bounds[i], (unsigned long long)cum);
    }
    cum += atomic_load(&s->latency[N_LAT_BUCKETS]);
    lmx__buf_printf(&b, "longmix_request_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    lmx__buf_printf(&b, "longmix_request_seconds_sum %.6f\nlongmix_request_seconds_count %llu\n",
                    atomic_load(&s->latency_sum), (unsigned long long)cum);
    lmx__buf_printf(&b, "# HELP longmix_plan_max_step Highest step served per plan.\n# TYPE longmix_plan_max_step gauge\n");
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->n_plans; i++) {
        plan_ref *r = s->plans[i];
        uint64_t ms = atomic_load(&r->max_step);
        lmx__buf_printf(&b, "longmix_plan_max_step{plan=\"%s\"} %lld\n", lmx__plan_name(r->plan), ms ? (long long)(ms - 1) : -1LL);
        lmx__buf_printf(&b, "longmix_plan_batches_total{plan=\"%s\"} %llu\n", lmx__plan_name(r->plan),
                        (unsigned long long)atomic_load(&r->batches));
    }
    pthread_rwlock_unlock(&s->lock);
    lmx__buf_printf(&b, "# HELP longmix_uptime_seconds Seconds since start.\n# TYPE longmix_uptime_seconds gauge\n");
    lmx__buf_printf(&b, "longmix_uptime_seconds %.1f\n", lmx__now() - s->started);
    return send_buf(c, 200, b.data, b.len, "text/plain; version=0.0.4");
}

static enum MHD_Result handle_dashboard(server *s, struct MHD_Connection *c)
{
    lmx_buf b = {0};
    lmx__buf_printf(&b, "<!doctype html><html><head><meta charset=utf-8><title>longmix</title></head><body>"
                        "<h1>longmix</h1><p>index %s</p><ul>",
                    lmx__index_identity(s->ix));
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->n_plans; i++)
        lmx__buf_printf(&b, "<li>%s (%s)</li>", lmx__plan_name(s->plans[i]->plan), lmx__plan_id_hex(s->plans[i]->plan));
    pthread_rwlock_unlock(&s->lock);
    lmx__buf_printf(&b, "</ul><p><a href=\"/v1/stats\">/v1/stats</a> <a href=\"/metrics\">/metrics</a></p></body></html>\n");
    return send_buf(c, 200, b.data, b.len, "text/html; charset=utf-8");
}

static int authorized(server *s, struct MHD_Connection *c, int admin)
{
    if (!s->cfg.has_auth)
        return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    uint8_t hash[32];
    lmxd_token_hash(h + 7, hash);
    int ok = 0;
    /* Compare against every hash (constant time each) so timing says nothing about which matched. */
    for (int i = 0; i < s->cfg.n_admin; i++)
        ok |= sodium_memcmp(hash, s->cfg.admin_hashes[i], 32) == 0;
    if (!admin)
        for (int i = 0; i < s->cfg.n_read; i++)
            ok |= sodium_memcmp(hash, s->cfg.read_hashes[i], 32) == 0;
    return ok;
}

typedef struct req_state {
    double t0;
} req_state;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    server *s = cls;
    (void)version;
    (void)upload;
    if (!*con_cls) {
        req_state *st = calloc(1, sizeof *st);
        if (!st)
            return MHD_NO;
        st->t0 = lmx__now();
        *con_cls = st;
        atomic_fetch_add(&s->inflight, 1);
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0; /* request bodies are only for admin routes (ignored until then) */
        return MHD_YES;
    }
    lmxd_request rq;
    int st = lmxd_route(method, url, get_arg, c, &rq);
    if (st)
        return send_error(c, (unsigned)st, rq.error, rq.detail);
    if (rq.kind != LMXD_R_HEALTH && !authorized(s, c, rq.admin))
        return send_error(c, 401, "unauthorized",
                          rq.admin ? "this path needs an admin token (Authorization: Bearer TOKEN)"
                                   : "a valid token is required (Authorization: Bearer TOKEN)");
    switch (rq.kind) {
    case LMXD_R_HEALTH: {
        static char ok[] = "ok\n";
        struct MHD_Response *r = MHD_create_response_from_buffer(3, ok, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Content-Type", "text/plain");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    case LMXD_R_PLANS: return handle_plans(s, c, &rq);
    case LMXD_R_BATCH:
    case LMXD_R_SEQUENCE: return handle_body(s, c, &rq);
    case LMXD_R_STATS: return handle_stats(s, c, &rq);
    case LMXD_R_METRICS: return handle_metrics(s, c);
    case LMXD_R_DASHBOARD: return handle_dashboard(s, c);
    default: return send_error(c, 405, "not_supported", "this route is not available in this build");
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    server *s = cls;
    (void)toe;
    req_state *st = *con_cls;
    if (!st)
        return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
    unsigned code = ci ? ci->http_status : 0;
    int k = N_STATUS;
    for (int i = 0; i < N_STATUS; i++)
        if (status_codes[i] == (int)code)
            k = i;
    atomic_fetch_add(&s->status[k], 1);
    atomic_fetch_add(&s->requests, 1);
    double dt = lmx__now() - st->t0;
    int b = 0;
    while (b < N_LAT_BUCKETS && dt > lat_bounds[b])
        b++;
    atomic_fetch_add(&s->latency[b], 1);
    double cur = atomic_load(&s->latency_sum);
    while (!atomic_compare_exchange_weak(&s->latency_sum, &cur, cur + dt))
        ;
    if (s->cfg.access_log)
        logf_("access %u %.1f ms", code, dt * 1e3);
    free(st);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
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

static int reload(server *s)
{
    lmxd_config cfg;
    lmx_error err = {0};
    notify("RELOADING=1");
    if (lmxd_config_load(s->opts.config_path, &cfg, &err) != LMX_OK) {
        logf_("reload failed, keeping the running plans: %s", err.message);
        notify("READY=1");
        return -1;
    }
    plan_ref **v;
    if (build_plans(s, cfg.plans, cfg.n_plans, &v, &err) != LMX_OK) {
        logf_("reload failed, keeping the running plans: %s", err.message);
        lmxd_config_free(&cfg);
        notify("READY=1");
        return -1;
    }
    swap_plans(s, v, cfg.n_plans);
    logf_("reloaded %s: %zu plan(s)", s->opts.config_path, cfg.n_plans);
    lmxd_config_free(&cfg);
    notify("READY=1");
    return 0;
}

int lmxd_serve(const lmxd_serve_options *opts)
{
    server *s = calloc(1, sizeof *s);
    lmx_error err = {0};
    int exit_code = 1;
    if (!s)
        return 1;
    s->opts = *opts;
    s->started = lmx__now();
    pthread_rwlock_init(&s->lock, NULL);
    if (sodium_init() < 0) {
        logf_("libsodium failed to initialize");
        goto out;
    }
    if (lmxd_config_load(opts->config_path, &s->cfg, &err) != LMX_OK) {
        logf_("%s", err.message);
        goto out;
    }
    const char *listen = opts->listen ? opts->listen : s->cfg.listen ? s->cfg.listen : "127.0.0.1:8470";
    const char *index_dir = opts->index_dir ? opts->index_dir : s->cfg.index_dir;
    struct sockaddr_storage sa;
    int loopback = 0;
    if (parse_listen(listen, &sa, &loopback, &err) != LMX_OK) {
        logf_("%s", err.message);
        goto out;
    }
    if (!loopback && !s->cfg.has_auth && !opts->insecure) {
        logf_("refusing to listen on %s without \"auth\" in the config: anyone could read the data (add auth, "
              "bind a loopback address, or pass --insecure)",
              listen);
        goto out;
    }
    if (!index_dir) {
        logf_("no index: set \"index\" in %s or pass --index DIR", opts->config_path);
        goto out;
    }
    if (!opts->skip_verify && lmx__index_verify(index_dir, &err) != LMX_OK) {
        logf_("index %s failed verification: %s", index_dir, err.message);
        goto out;
    }
    if (lmx__index_open(index_dir, &s->ix, &err) != LMX_OK) {
        logf_("%s", err.message);
        goto out;
    }
    plan_ref **v;
    if (build_plans(s, s->cfg.plans, s->cfg.n_plans, &v, &err) != LMX_OK) {
        logf_("%s: %s", opts->config_path, err.message);
        goto out;
    }
    swap_plans(s, v, s->cfg.n_plans);

    /* Signals are taken synchronously by this thread; MHD's threads inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES)
        flags |= MHD_USE_EPOLL;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->cfg.threads, MHD_OPTION_CONNECTION_LIMIT,
                              s->cfg.connection_limit, MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.connection_timeout_s,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536, MHD_OPTION_NOTIFY_COMPLETED,
                              on_completed, s, MHD_OPTION_END);
    if (!s->mhd) {
        logf_("cannot listen on %s: %s", listen, strerror(errno));
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    logf_("serving %s (%llu documents, %llu tokens, %zu plan(s)) on %s port %u", index_dir,
          (unsigned long long)lmx__index_n_docs(s->ix), (unsigned long long)lmx__index_n_tokens(s->ix), s->n_plans,
          listen, di ? di->port : 0);
    if (opts->port_file) {
        char port[16];
        int n = snprintf(port, sizeof port, "%u\n", di ? (unsigned)di->port : 0u);
        if (lmx__write_file_atomic(opts->port_file, port, (size_t)n, &err) != LMX_OK) {
            logf_("--port-file: %s", err.message);
            goto out;
        }
    }
    notify("READY=1");
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            reload(s);
            continue;
        }
        break;
    }
    notify("STOPPING=1");
    logf_("stopping: draining %d in-flight request(s)", atomic_load(&s->inflight));
    MHD_quiesce_daemon(s->mhd);
    for (int i = 0; i < 300 && atomic_load(&s->inflight) > 0; i++)
        nanosleep(&(struct timespec){0, 100000000L}, NULL);
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
    logf_("stopped");
    exit_code = 0;
out:
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    swap_plans(s, NULL, 0);
    lmx__index_close(s->ix);
    lmxd_config_free(&s->cfg);
    pthread_rwlock_destroy(&s->lock);
    free(s);
    return exit_code;
}
