/* The HTTP service: libmicrohttpd thread pool + epoll, a plan registry swapped on reload, batch
 * bodies built once into one buffer (compressed into a second one when the client takes zstd) and
 * kept in a bounded response cache (lmxd_cache.h) that libmicrohttpd sends from without a copy. */
#define _GNU_SOURCE /* strcasestr */
#include "lmxd_serve.h"
#include "lmx_tokenizer.h"
#include "lmx_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/file.h>
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
#include "lmxd_cache.h"
#include "lmxd_config.h"
#include "lmxd_route.h"

#define N_LAT_BUCKETS 12
static const double lat_bounds[N_LAT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,   0.25,   0.5,   1.0,  2.5,   5.0};
#define N_STATUS 15
static const int status_codes[N_STATUS] = {200, 201, 304, 400, 401, 403, 404, 405,
                                           409, 413, 414, 416, 431, 500, 503};

#define MAX_BODY 65536         /* request bodies (POST /v1/plans); larger ones get 413 */
#define MAX_RUNTIME_PLANS 256  /* plans added over HTTP */
#define MAX_STATE_FILE (16u << 20)
#define RANK_SLOTS 8192        /* open-addressing table of (world, rank) per plan, power of two */
#define RANK_CAP 4096          /* at most this many (world, rank) pairs tracked per plan */
#define STATE_FILE "plans.json"

typedef struct rank_slot {
    uint32_t world, rank;
    uint64_t step1; /* highest step served + 1; 0 = free slot */
} rank_slot;

typedef struct plan_ref {
    lmx_plan *plan;
    atomic_int refs;
    int runtime;       /* added by POST /v1/plans (else: from the config) */
    json_t *spec_json; /* runtime plans: the spec as posted, what the state file keeps */
    atomic_uint_fast64_t max_step; /* highest step served + 1 (0 = none) */
    atomic_uint_fast64_t batches, bytes;
    pthread_mutex_t rk_lock; /* guards ranks, n_ranks, ranks_dropped */
    rank_slot *ranks;        /* RANK_SLOTS entries, allocated at the first batch */
    size_t n_ranks;
    uint64_t ranks_dropped; /* batches whose (world, rank) did not fit in RANK_CAP */
} plan_ref;

typedef struct server {
    lmxd_serve_options opts;
    lmxd_config cfg; /* from the start; a reload replaces only the plans and the token lists */
    int loopback;     /* the listen address is a loopback one */
    lmx_index *ix;
    char *state_path;      /* STATE_DIR/plans.json, NULL without state_dir */
    int lock_fd;           /* STATE_DIR/lock, held (flock) while running; -1 without state_dir */
    pthread_mutex_t admin; /* serializes registry changes: POST, DELETE, reload */
    pthread_rwlock_t lock; /* guards plans/n_plans (the array, not the plans) */
    plan_ref **plans;
    size_t n_plans;
    struct MHD_Daemon *mhd;
    lmxd_cache *cache; /* batch/sequence bodies; NULL when cache_mb is 0 */
    atomic_int inflight; /* request line parsed, not completed */
    atomic_int active;   /* headers complete and handled: what SIGTERM waits for */
    atomic_uint_fast64_t requests, bytes_out, latency[N_LAT_BUCKETS + 1], status[N_STATUS + 1];
    _Atomic double latency_sum;
    double started;
    pthread_mutex_t detok_lock; /* guards detok, detok_tried */
    lmx_tokenizer *detok;       /* the index's tokenizer, loaded at the first text request */
    int detok_tried;
    char detok_error[LMX_ERROR_MESSAGE_MAX];
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

static plan_ref *new_ref(lmx_plan *p, int runtime, json_t *spec_json)
{
    plan_ref *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->plan = p;
    r->runtime = runtime;
    r->spec_json = spec_json;
    pthread_mutex_init(&r->rk_lock, NULL);
    atomic_store(&r->refs, 1);
    return r;
}

static void ref_put(plan_ref *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        lmx__plan_free(r->plan);
        json_decref(r->spec_json);
        free(r->ranks);
        pthread_mutex_destroy(&r->rk_lock);
        free(r);
    }
}

static void refs_put(plan_ref **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        ref_put(v[i]);
    free(v);
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

/* The current plans, each with a reference taken (refs_put releases them). */
static plan_ref **snapshot(server *s, size_t *n)
{
    pthread_rwlock_rdlock(&s->lock);
    *n = s->n_plans;
    plan_ref **v = calloc(*n + 1, sizeof *v);
    for (size_t i = 0; v && i < *n; i++) {
        v[i] = s->plans[i];
        atomic_fetch_add(&v[i]->refs, 1);
    }
    pthread_rwlock_unlock(&s->lock);
    if (!v)
        *n = 0;
    return v;
}

/* Builds plan objects for the config's plans, reusing unchanged config plans (same id) from the
 * registry so their caches and step tracking survive a reload. */
static int build_plans(server *s, const lmxd_plan_cfg *pc, size_t n, plan_ref ***out, lmx_error *err)
{
    plan_ref **v = calloc(n + 1, sizeof *v);
    if (!v)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        lmx_plan *p;
        int rc = lmx__plan_create(s->ix, pc[i].name, &pc[i].spec, &p, err);
        if (rc != LMX_OK) {
            refs_put(v, i);
            return rc;
        }
        plan_ref *old = find_plan(s, pc[i].name);
        if (old && !old->runtime && strcmp(lmx__plan_id_hex(old->plan), lmx__plan_id_hex(p)) == 0) {
            lmx__plan_free(p); /* unchanged: keep the warm caches */
            v[i] = old;
            continue;
        }
        ref_put(old);
        if (!(v[i] = new_ref(p, 0, NULL))) {
            lmx__plan_free(p);
            refs_put(v, i);
            return lmx__err(err, LMX_ENOMEM, "out of memory");
        }
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
    refs_put(old, old_n);
}

/* A runtime plan from its name and posted spec object. */
static int make_runtime_ref(server *s, const char *name, json_t *spec_obj, plan_ref **out, lmx_error *err)
{
    lmx_plan_spec spec;
    memset(&spec, 0, sizeof spec);
    int rc = lmx__plan_spec_parse(name, spec_obj, &spec, err);
    lmx_plan *p = NULL;
    if (rc == LMX_OK)
        rc = lmx__plan_create(s->ix, name, &spec, &p, err);
    lmx__plan_spec_free(&spec);
    if (rc != LMX_OK)
        return rc;
    json_t *copy = json_deep_copy(spec_obj);
    if (!copy || !(*out = new_ref(p, 1, copy))) {
        json_decref(copy);
        lmx__plan_free(p);
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    }
    return LMX_OK;
}

/* Writes the runtime plans among v to the state file: temp file, fsync, rename, fsync dir. */
static int save_state(server *s, plan_ref *const *v, size_t n, lmx_error *err)
{
    if (!s->state_path)
        return LMX_OK;
    json_t *root = json_object(), *plans = json_object();
    json_object_set_new(root, "version", json_integer(1));
    for (size_t i = 0; i < n; i++)
        if (v[i]->runtime)
            json_object_set(plans, lmx__plan_name(v[i]->plan), v[i]->spec_json);
    json_object_set_new(root, "plans", plans);
    char *txt = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!txt)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    size_t len = strlen(txt);
    txt[len] = '\n'; /* json_dumps's NUL becomes the final newline */
    int rc = lmx__write_file_atomic(s->state_path, txt, len + 1, err);
    free(txt);
    return rc;
}

/* Reads the state file's runtime plans (none when the file does not exist). */
static int load_state(server *s, plan_ref ***out, size_t *n_out, lmx_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (!s->state_path || access(s->state_path, F_OK) != 0)
        return LMX_OK;
    char *txt = NULL;
    size_t len = 0;
    int rc = lmx__read_file(s->state_path, MAX_STATE_FILE, &txt, &len, err);
    if (rc != LMX_OK)
        return rc;
    json_error_t je;
    json_t *root = json_loadb(txt, len, JSON_REJECT_DUPLICATES, &je);
    free(txt);
    json_t *plans = root ? json_object_get(root, "plans") : NULL;
    if (!root || !json_is_object(plans)) {
        json_decref(root);
        return lmx__err(err, LMX_EFORMAT, "state file %s: not a JSON object with \"plans\"", s->state_path);
    }
    size_t n = json_object_size(plans);
    plan_ref **v = calloc(n + 1, sizeof *v);
    size_t k = 0;
    const char *name;
    json_t *spec;
    rc = v ? LMX_OK : lmx__err(err, LMX_ENOMEM, "out of memory");
    json_object_foreach(plans, name, spec)
    {
        if (rc != LMX_OK)
            break;
        if (!lmxd_valid_plan_name(name, strlen(name)))
            rc = lmx__err(err, LMX_EINVAL, "plans.%.80s: a plan name is 1-64 characters of [A-Za-z0-9._-]", name);
        else if ((rc = make_runtime_ref(s, name, spec, &v[k], err)) == LMX_OK)
            k++;
    }
    json_decref(root);
    if (rc != LMX_OK) {
        refs_put(v, k);
        return lmx__err_prefix(err, "state file %s: ", s->state_path);
    }
    *out = v;
    *n_out = k;
    return LMX_OK;
}

/* The served set: config plans first, then runtime plans whose names no config plan takes (the
 * config wins; a shadowed runtime plan is dropped and the state file rewritten). Consumes the
 * references in cv and rv. */
static plan_ref **assemble(server *s, plan_ref **cv, size_t nc, plan_ref **rv, size_t nr, size_t *n_out)
{
    plan_ref **v = calloc(nc + nr + 1, sizeof *v);
    size_t n = 0, shadowed = 0;
    if (!v) {
        refs_put(rv, nr);
        *n_out = nc;
        return cv; /* out of memory: serve the config plans only */
    }
    for (size_t i = 0; i < nc; i++)
        v[n++] = cv[i];
    free(cv);
    for (size_t i = 0; i < nr; i++) {
        int clash = 0;
        for (size_t j = 0; j < nc && !clash; j++)
            clash = strcmp(lmx__plan_name(v[j]->plan), lmx__plan_name(rv[i]->plan)) == 0;
        if (clash) {
            logf_("plan %s: the config defines it, dropping the runtime plan of that name", lmx__plan_name(rv[i]->plan));
            ref_put(rv[i]);
            shadowed++;
        } else {
            v[n++] = rv[i];
        }
    }
    free(rv);
    if (shadowed) {
        lmx_error err = {0};
        if (save_state(s, v, n, &err) != LMX_OK)
            logf_("cannot rewrite the state file: %s", err.message);
    }
    *n_out = n;
    return v;
}

/* ---- per-rank step tracking ---- */

static void track_rank(plan_ref *r, uint32_t world, uint32_t rank, uint64_t step)
{
    pthread_mutex_lock(&r->rk_lock);
    if (!r->ranks)
        r->ranks = calloc(RANK_SLOTS, sizeof *r->ranks);
    if (r->ranks) {
        uint64_t h = ((uint64_t)world << 32 | rank) * 0x9E3779B97F4A7C15ull;
        size_t i = (size_t)(h >> 40) & (RANK_SLOTS - 1);
        for (;; i = (i + 1) & (RANK_SLOTS - 1)) {
            rank_slot *sl = &r->ranks[i];
            if (sl->step1 == 0) {
                if (r->n_ranks >= RANK_CAP) {
                    r->ranks_dropped++;
                } else {
                    sl->world = world;
                    sl->rank = rank;
                    sl->step1 = step + 1;
                    r->n_ranks++;
                }
                break;
            }
            if (sl->world == world && sl->rank == rank) {
                if (sl->step1 < step + 1)
                    sl->step1 = step + 1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&r->rk_lock);
}

static int slot_cmp(const void *a, const void *b)
{
    const rank_slot *x = a, *y = b;
    if (x->world != y->world)
        return x->world < y->world ? -1 : 1;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
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

/* {"error": ..., "detail": ...[, "field": ...]}; field names the offending request field. */
static enum MHD_Result send_error_field(struct MHD_Connection *c, unsigned status, const char *error,
                                        const char *detail, const char *field)
{
    json_t *j = json_object();
    json_object_set_new(j, "error", json_string(error));
    json_object_set_new(j, "detail", json_string(detail));
    if (field)
        json_object_set_new(j, "field", json_string(field));
    return send_json(c, status, j);
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *error, const char *detail)
{
    return send_error_field(c, status, error, detail, NULL);
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
    json_object_set_new(o, "source", json_string(r->runtime ? "runtime" : "config"));
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

/* A plan-spec error "plans.NAME.KEY: why" becomes field "spec.KEY", detail "spec.KEY: why". */
static void spec_error(const char *name, const char *msg, char *field, size_t fn, char *detail, size_t dn)
{
    char pre[96];
    snprintf(pre, sizeof pre, "plans.%s", name);
    size_t pl = strlen(pre);
    if (strncmp(msg, pre, pl) == 0 && (msg[pl] == '.' || msg[pl] == ':')) {
        const char *rest = msg + pl;
        const char *colon = strstr(rest, ": ");
        int keylen = (int)(colon ? (size_t)(colon - rest) : strlen(rest));
        snprintf(field, fn, "spec%.*s", keylen, rest);
        snprintf(detail, dn, "spec%s", rest);
    } else {
        snprintf(field, fn, "spec");
        snprintf(detail, dn, "%s", msg);
    }
}

/* POST /v1/plans {"name": NAME, "spec": {...plan keys as in the config...}} */
static enum MHD_Result handle_plan_add(server *s, struct MHD_Connection *c, const lmx_buf *body)
{
    json_error_t je;
    char d[LMX_ERROR_MESSAGE_MAX + 64], field[128];
    if (body->len == 0)
        return send_error_field(c, 400, "bad_json", "body: empty (want {\"name\": NAME, \"spec\": {...}})", "body");
    json_t *root = json_loadb((const char *)body->data, body->len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(d, sizeof d, "body:%d:%d: invalid JSON: %s", je.line, je.column, je.text);
        return send_error_field(c, 400, "bad_json", d, "body");
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return send_error_field(c, 400, "bad_request", "the body must be a JSON object {\"name\": NAME, \"spec\": {...}}",
                                "body");
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "name") != 0 && strcmp(key, "spec") != 0) {
            snprintf(d, sizeof d, "%.80s: unknown key (the body is {\"name\": NAME, \"spec\": {...}})", key);
            snprintf(field, sizeof field, "%.80s", key);
            json_decref(root);
            return send_error_field(c, 400, "bad_request", d, field);
        }
    }
    const char *name = json_string_value(json_object_get(root, "name"));
    json_t *spec = json_object_get(root, "spec");
    if (!name || !lmxd_valid_plan_name(name, strlen(name))) {
        json_decref(root);
        return send_error_field(c, 400, "bad_request", "name: must be a plan name, 1-64 characters of [A-Za-z0-9._-]",
                                "name");
    }
    if (!json_is_object(spec)) {
        json_decref(root);
        return send_error_field(c, 400, "bad_request", "spec: must be an object of plan keys (as in the config)",
                                "spec");
    }
    if (!s->state_path) {
        json_decref(root);
        return send_error(c, 409, "no_state_dir",
                          "runtime plans need \"state_dir\" in the config (they are persisted there)");
    }
    pthread_mutex_lock(&s->admin);
    enum MHD_Result ret;
    plan_ref *old = find_plan(s, name), *r = NULL;
    lmx_error err = {0};
    size_t n_rt = 0;
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->n_plans; i++)
        n_rt += s->plans[i]->runtime;
    pthread_rwlock_unlock(&s->lock);
    if (old && !old->runtime) {
        snprintf(d, sizeof d, "plan '%s' comes from the config, which wins over runtime plans (edit the config and "
                 "send SIGHUP to change it)", name);
        ret = send_error_field(c, 409, "plan_exists", d, "name");
    } else if (!old && n_rt >= MAX_RUNTIME_PLANS) {
        snprintf(d, sizeof d, "at most %d runtime plans (DELETE some first)", MAX_RUNTIME_PLANS);
        ret = send_error(c, 409, "too_many_plans", d);
    } else if (make_runtime_ref(s, name, spec, &r, &err) != LMX_OK) {
        char det[LMX_ERROR_MESSAGE_MAX + 8];
        spec_error(name, err.message, field, sizeof field, det, sizeof det);
        unsigned st = err.code == LMX_EINVAL || err.code == LMX_EFORMAT ? 400 : 500;
        ret = send_error_field(c, st, st == 400 ? "bad_plan" : "internal", det, field);
    } else if (old) {
        if (strcmp(lmx__plan_id_hex(old->plan), lmx__plan_id_hex(r->plan)) == 0) {
            ret = send_json(c, 200, plan_json(old)); /* the same plan again: nothing to do */
        } else {
            snprintf(d, sizeof d, "a different runtime plan '%s' exists (DELETE /v1/plans/%s first)", name, name);
            ret = send_error_field(c, 409, "plan_exists", d, "name");
        }
        ref_put(r);
    } else {
        size_t n;
        plan_ref **cur = snapshot(s, &n);
        plan_ref **nv = cur ? realloc(cur, (n + 2) * sizeof *nv) : NULL;
        if (!nv) {
            refs_put(cur, n);
            ref_put(r);
            ret = send_error(c, 500, "internal", "out of memory");
        } else {
            nv[n] = r;
            if (save_state(s, nv, n + 1, &err) != LMX_OK) {
                logf_("POST /v1/plans %s: %s", name, err.message);
                refs_put(nv, n + 1);
                ret = send_error(c, 500, "state_write_failed", err.message);
            } else {
                atomic_fetch_add(&r->refs, 1);
                swap_plans(s, nv, n + 1);
                logf_("plan %s added at runtime (id %s)", name, lmx__plan_id_hex(r->plan));
                ret = send_json(c, 201, plan_json(r));
                ref_put(r);
            }
        }
    }
    ref_put(old);
    pthread_mutex_unlock(&s->admin);
    json_decref(root);
    return ret;
}

/* DELETE /v1/plans/NAME: runtime plans only. */
static enum MHD_Result handle_plan_delete(server *s, struct MHD_Connection *c, const char *name)
{
    char d[256];
    enum MHD_Result ret;
    pthread_mutex_lock(&s->admin);
    plan_ref *old = find_plan(s, name);
    if (!old) {
        snprintf(d, sizeof d, "no plan named '%s'", name);
        ret = send_error(c, 404, "unknown_plan", d);
    } else if (!old->runtime) {
        snprintf(d, sizeof d, "plan '%s' comes from the config (remove it there and send SIGHUP)", name);
        ret = send_error(c, 409, "config_plan", d);
    } else {
        size_t n, k = 0;
        plan_ref **v = snapshot(s, &n);
        for (size_t i = 0; v && i < n; i++) {
            if (v[i] == old)
                ref_put(v[i]);
            else
                v[k++] = v[i];
        }
        lmx_error err = {0};
        if (!v) {
            ret = send_error(c, 500, "internal", "out of memory");
        } else if (save_state(s, v, k, &err) != LMX_OK) {
            logf_("DELETE /v1/plans/%s: %s", name, err.message);
            refs_put(v, k);
            ret = send_error(c, 500, "state_write_failed", err.message);
        } else {
            swap_plans(s, v, k);
            logf_("plan %s deleted", name);
            json_t *o = json_object();
            json_object_set_new(o, "deleted", json_string(name));
            json_object_set_new(o, "plan_id", json_string(lmx__plan_id_hex(old->plan)));
            ret = send_json(c, 200, o);
        }
    }
    ref_put(old);
    pthread_mutex_unlock(&s->admin);
    return ret;
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

/* The index's own tokenizer (INDEX/tokenizer.json, copied there by `longmixd index`), loaded
 * once on demand: decoding is for humans (`longmix show`), so it must not slow the start. */
static const lmx_tokenizer *get_detok(server *s)
{
    pthread_mutex_lock(&s->detok_lock);
    if (!s->detok_tried) {
        s->detok_tried = 1;
        lmx_error err = {0};
        char path[4200];
        const char *id = lmx__index_tokenizer_identity(s->ix);
        if (id && strcmp(id, "bytes") == 0)
            snprintf(path, sizeof path, "bytes");
        else
            snprintf(path, sizeof path, "%s/tokenizer.json", lmx__index_dir(s->ix));
        size_t il = id ? strlen(id) : 0, sl = strlen(LMX_TOKENIZER_MATCH_ADDED_SUFFIX);
        lmx_tokenizer_options topts = {
            .match_added_tokens = il > sl && strcmp(id + il - sl, LMX_TOKENIZER_MATCH_ADDED_SUFFIX) == 0};
        if (lmx__tokenizer_open(path, &topts, &s->detok, &err) != LMX_OK)
            snprintf(s->detok_error, sizeof s->detok_error, "cannot decode: %s", err.message);
        else if (!id || strcmp(lmx__tokenizer_identity(s->detok), id) != 0) {
            snprintf(s->detok_error, sizeof s->detok_error, "cannot decode: %s is not the tokenizer the index was built with",
                     path);
            lmx__tokenizer_free(s->detok);
            s->detok = NULL;
        }
        if (!s->detok)
            logf_("%s", s->detok_error);
    }
    pthread_mutex_unlock(&s->detok_lock);
    return s->detok;
}

/* GET /v1/plans/NAME/sequences/G?format=text: the sequence's spans with their decoded text. */
static enum MHD_Result handle_text(server *s, struct MHD_Connection *c, const lmxd_request *rq, plan_ref *r)
{
    const lmx_tokenizer *tok = get_detok(s);
    if (!tok) {
        ref_put(r);
        return send_error(c, 409, "no_tokenizer", s->detok_error);
    }
    lmx_buf body = {0}, text = {0}, clean = {0};
    lmx_ids ids = {0};
    lmx_error err = {0};
    lmx_wire_view v;
    int rc = lmx__plan_sequence(r->plan, rq->step, &body, &err);
    if (rc == LMX_OK)
        rc = lmx__wire_parse(body.data, body.len, &v, &err);
    json_t *out = NULL;
    if (rc == LMX_OK) {
        out = json_pack("{s:s, s:I, s:I}", "plan", lmx__plan_name(r->plan), "sequence", (json_int_t)rq->step,
                        "seq_len", (json_int_t)v.h.seq_len);
        json_t *spans = json_array();
        json_object_set_new(out, "spans", spans);
        uint32_t first, end, covered = 0;
        lmx__wire_seq_spans(&v, 0, &first, &end);
        for (uint32_t i = first; i < end && rc == LMX_OK; i++) {
            lmx_span sp = lmx__wire_span(&v, i);
            ids.n = text.len = clean.len = 0;
            rc = lmx__ids_reserve(&ids, sp.length);
            for (uint32_t k = 0; rc == LMX_OK && k < sp.length; k++)
                ids.v[ids.n++] = lmx__wire_token(&v, 0, sp.start + k);
            if (rc == LMX_OK)
                rc = lmx__decode(tok, ids.v, ids.n, &text, &err);
            /* A piece may start or end inside a multi-byte character: repair as U+FFFD for JSON. */
            if (rc == LMX_OK)
                rc = lmx__utf8_lossy(text.data, text.len, &clean);
            if (rc != LMX_OK)
                break;
            uint32_t dlen;
            const char *dname = lmx__wire_domain(&v, sp.domain, &dlen);
            json_array_append_new(spans, json_pack("{s:s#, s:I, s:I, s:I, s:I, s:s#}", "domain", dname, (int)dlen, "doc",
                                                   (json_int_t)sp.doc, "offset", (json_int_t)sp.offset, "start",
                                                   (json_int_t)sp.start, "length", (json_int_t)sp.length, "text",
                                                   clean.len ? (const char *)clean.data : "", (int)clean.len));
            covered += sp.length;
        }
        json_object_set_new(out, "separators", json_integer((json_int_t)(v.h.seq_len - covered)));
    }
    ref_put(r);
    lmx__buf_free(&body);
    lmx__buf_free(&text);
    lmx__buf_free(&clean);
    lmx__ids_free(&ids);
    if (rc != LMX_OK) {
        json_decref(out);
        unsigned st = status_of(rc);
        return send_error(c, st, st == 416 ? "step_out_of_range" : st == 400 ? "bad_parameter" : "internal", err.message);
    }
    return send_json(c, 200, out);
}

/* Builds the response body for key: the wire body, its digest, and its compression when key asks
 * for zstd. On success *out is a new entry holding the caller's reference. When compression fails
 * the entry holds the identity body (entry->zstd 0): still a correct answer, only larger. */
static int build_entry(plan_ref *r, const lmxd_request *rq, const lmxd_cache_key *key, lmxd_cache_entry **out,
                       lmx_error *err)
{
    lmx_buf body = {0};
    int rc = rq->kind == LMXD_R_BATCH ? lmx__plan_batch(r->plan, rq->step, rq->rank, rq->world, &body, err)
                                      : lmx__plan_sequence(r->plan, rq->step, &body, err);
    if (rc != LMX_OK) {
        lmx__buf_free(&body);
        return rc;
    }
    uint8_t h[32];
    char digest[80];
    crypto_generichash(h, sizeof h, body.data, body.len, NULL, 0);
    memcpy(digest, LMX_DIGEST_PREFIX, strlen(LMX_DIGEST_PREFIX));
    lmx__hex(h, sizeof h, digest + strlen(LMX_DIGEST_PREFIX));
    void *data = body.data;
    size_t len = body.len;
    int zstd = 0;
    if (key->zstd) {
        ZSTD_CCtx *cctx = thread_cctx();
        size_t bound = ZSTD_compressBound(body.len);
        void *z = malloc(bound);
        size_t zn = z && cctx ? ZSTD_compressCCtx(cctx, z, bound, body.data, body.len, key->zstd_level) : 0;
        if (!z || ZSTD_isError(zn)) {
            free(z);
        } else {
            free(body.data);
            data = z;
            len = zn;
            zstd = 1;
        }
    }
    if (!(*out = lmxd_cache_entry_new(key, data, len, zstd, digest)))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    return LMX_OK;
}

/* MHD's free callback for a response sent from a cache entry. */
static void release_entry(void *entry)
{
    lmxd_cache_entry_unref(entry);
}

static enum MHD_Result handle_body(server *s, struct MHD_Connection *c, const lmxd_request *rq)
{
    plan_ref *r = find_plan(s, rq->plan);
    if (!r) {
        char d[160];
        snprintf(d, sizeof d, "no plan named '%s' (GET /v1/plans lists them)", rq->plan);
        return send_error(c, 404, "unknown_plan", d);
    }
    if (rq->kind == LMXD_R_SEQUENCE && rq->text)
        return handle_text(s, c, rq, r);
    /* A strong ETag names one representation: the zstd body gets its own. */
    char etag[104];
    int zstd = accepts_zstd(c);
    snprintf(etag, sizeof etag, "\"%s-%llu-%u-%u%s%s\"", lmx__plan_id_hex(r->plan), (unsigned long long)rq->step, rq->rank,
             rq->world, rq->kind == LMXD_R_SEQUENCE ? "-seq" : "", zstd ? "-zstd" : "");
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
    if (inm && strcmp(inm, etag) == 0) {
        ref_put(r);
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "ETag", etag);
        enum MHD_Result ret = MHD_queue_response(c, 304, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    lmxd_cache_key key;
    lmxd_cache_key_init(&key, lmx__plan_id_hex(r->plan), rq->kind, rq->step, rq->rank, rq->world, zstd,
                        s->cfg.zstd_level);
    lmxd_cache_entry *e = lmxd_cache_get(s->cache, &key);
    if (!e) {
        lmx_error err = {0};
        int rc = build_entry(r, rq, &key, &e, &err);
        if (rc != LMX_OK) {
            ref_put(r);
            unsigned st = status_of(rc);
            return send_error(c, st,
                              st == 416   ? "step_out_of_range"
                              : st == 400 ? "bad_parameter"
                                          : "internal",
                              err.message);
        }
        /* Errors are never cached, so a hit has passed the world and step checks. An identity
         * body from a failed compression answers this request but is not the zstd entry. */
        if (e->zstd == key.zstd)
            lmxd_cache_put(s->cache, e);
    }
    if (zstd && !e->zstd) {
        char *suffix = strstr(etag, "-zstd\"");
        if (suffix)
            memcpy(suffix, "\"", 2);
    }
    if (rq->kind == LMXD_R_BATCH) {
        uint64_t want = rq->step + 1, cur = atomic_load(&r->max_step);
        while (cur < want && !atomic_compare_exchange_weak(&r->max_step, &cur, want))
            ;
        atomic_fetch_add(&r->batches, 1);
        track_rank(r, rq->world, rq->rank, rq->step);
    }
    atomic_fetch_add(&r->bytes, e->len);
    char plan_id[2 * LMX_PLAN_ID_BYTES + 1];
    snprintf(plan_id, sizeof plan_id, "%s", lmx__plan_id_hex(r->plan));
    ref_put(r);
    /* Zero copy: MHD sends from the entry's buffer and drops our reference when done with it, so
     * an entry evicted meanwhile stays alive until then. */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback_cls(e->len, e->body, release_entry, e);
    if (!resp) {
        lmxd_cache_entry_unref(e);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", LMX_MEDIA_BATCH);
    MHD_add_response_header(resp, LMX_HDR_DIGEST, e->digest);
    MHD_add_response_header(resp, LMX_HDR_PLAN_ID, plan_id);
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Cache-Control", "public, max-age=31536000, immutable");
    MHD_add_response_header(resp, "Vary", "Accept-Encoding");
    if (e->zstd)
        MHD_add_response_header(resp, "Content-Encoding", "zstd");
    atomic_fetch_add(&s->bytes_out, e->len);
    enum MHD_Result ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result handle_stats(server *s, struct MHD_Connection *c, const lmxd_request *rq)
{
    json_t *root = json_object(), *plans = json_object(), *ixs = lmx__index_stats_json(s->ix);
    json_object_set_new(root, "index", ixs ? ixs : json_null());
    size_t n;
    plan_ref **v = snapshot(s, &n);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (!rq->plan[0] || strcmp(rq->plan, lmx__plan_name(v[i]->plan)) == 0) {
            json_object_set_new(plans, lmx__plan_name(v[i]->plan), lmx__plan_stats(v[i]->plan, 0));
            found = 1;
        }
    }
    refs_put(v, n);
    if (rq->plan[0] && !found) {
        json_decref(root);
        json_decref(plans);
        return send_error(c, 404, "unknown_plan", rq->plan);
    }
    json_object_set_new(root, "plans", plans);
    return send_json(c, 200, root);
}

/* Per-(world, rank) progress of each plan, one buffer per metric family. */
enum { F_PLAN_LAG, F_PLAN_TRACKED, F_PLAN_UNTRACKED, F_WORLD_MAX, F_WORLD_SEEN, F_WORLD_LAG, F_RANK_BEHIND, N_FAM };
static const char *const fam_meta[N_FAM][3] = {
    {"longmix_plan_lagging_ranks", "gauge", "Ranks more than lag_steps steps behind the highest step of their world size."},
    {"longmix_plan_tracked_ranks", "gauge", "(world, rank) pairs tracked per plan (at most 4096)."},
    {"longmix_plan_untracked_batches_total", "counter", "Batches whose (world, rank) was not tracked (table full)."},
    {"longmix_world_max_step", "gauge", "Highest step served to any rank of a world size."},
    {"longmix_world_ranks_seen", "gauge", "Ranks of a world size that fetched at least one batch."},
    {"longmix_world_lagging_ranks", "gauge", "Lagging ranks of a world size."},
    {"longmix_rank_steps_behind", "gauge", "Steps a lagging rank is behind the highest step of its world size."}};

static void metrics_ranks(server *s, plan_ref *r, lmx_buf fam[N_FAM])
{
    const char *name = lmx__plan_name(r->plan);
    pthread_mutex_lock(&r->rk_lock);
    size_t n = 0;
    rank_slot *v = r->n_ranks ? malloc(r->n_ranks * sizeof *v) : NULL;
    for (size_t i = 0; v && r->ranks && i < RANK_SLOTS; i++)
        if (r->ranks[i].step1)
            v[n++] = r->ranks[i];
    uint64_t dropped = r->ranks_dropped;
    pthread_mutex_unlock(&r->rk_lock);
    if (n > 1)
        qsort(v, n, sizeof *v, slot_cmp);
    uint64_t lagging = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint64_t top = 0;
        for (; j < n && v[j].world == v[i].world; j++)
            if (v[j].step1 > top)
                top = v[j].step1;
        uint64_t lag_here = 0;
        for (size_t k = i; k < j; k++) {
            uint64_t behind = top - v[k].step1;
            if (behind > (uint64_t)s->cfg.lag_steps) {
                lag_here++;
                lmx__buf_printf(&fam[F_RANK_BEHIND], "longmix_rank_steps_behind{plan=\"%s\",world=\"%u\",rank=\"%u\"} %llu\n",
                                name, v[k].world, v[k].rank, (unsigned long long)behind);
            }
        }
        lmx__buf_printf(&fam[F_WORLD_MAX], "longmix_world_max_step{plan=\"%s\",world=\"%u\"} %llu\n", name, v[i].world,
                        (unsigned long long)(top - 1));
        lmx__buf_printf(&fam[F_WORLD_SEEN], "longmix_world_ranks_seen{plan=\"%s\",world=\"%u\"} %zu\n", name, v[i].world,
                        j - i);
        lmx__buf_printf(&fam[F_WORLD_LAG], "longmix_world_lagging_ranks{plan=\"%s\",world=\"%u\"} %llu\n", name,
                        v[i].world, (unsigned long long)lag_here);
        lagging += lag_here;
        i = j;
    }
    free(v);
    lmx__buf_printf(&fam[F_PLAN_LAG], "longmix_plan_lagging_ranks{plan=\"%s\"} %llu\n", name, (unsigned long long)lagging);
    lmx__buf_printf(&fam[F_PLAN_TRACKED], "longmix_plan_tracked_ranks{plan=\"%s\"} %zu\n", name, n);
    lmx__buf_printf(&fam[F_PLAN_UNTRACKED], "longmix_plan_untracked_batches_total{plan=\"%s\"} %llu\n", name,
                    (unsigned long long)dropped);
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
    lmx__buf_printf(&b, "# HELP longmix_errors_total Error responses (4xx, 5xx, aborted) by status code.\n"
                        "# TYPE longmix_errors_total counter\n");
    for (int i = 0; i < N_STATUS; i++)
        if (status_codes[i] >= 400)
            lmx__buf_printf(&b, "longmix_errors_total{code=\"%d\"} %llu\n", status_codes[i],
                            (unsigned long long)atomic_load(&s->status[i]));
    lmx__buf_printf(&b, "longmix_errors_total{code=\"other\"} %llu\n", (unsigned long long)atomic_load(&s->status[N_STATUS]));
    lmx__buf_printf(&b, "# HELP longmix_response_bytes_total Batch body bytes sent (after compression).\n# TYPE longmix_response_bytes_total counter\n");
    lmx__buf_printf(&b, "longmix_response_bytes_total %llu\n", (unsigned long long)atomic_load(&s->bytes_out));
    lmx__buf_printf(&b, "# HELP longmix_inflight_requests Requests being read, built or sent.\n# TYPE longmix_inflight_requests gauge\n");
    lmx__buf_printf(&b, "longmix_inflight_requests %d\n", atomic_load(&s->inflight));
    /* Snapshot the buckets first so that _count, +Inf and the buckets agree with each other. */
    uint64_t bk[N_LAT_BUCKETS + 1], cum = 0;
    for (int i = 0; i <= N_LAT_BUCKETS; i++)
        bk[i] = atomic_load(&s->latency[i]);
    lmx__buf_printf(&b, "# HELP longmix_request_seconds Time from the request line to the last byte sent.\n"
                        "# TYPE longmix_request_seconds histogram\n");
    for (int i = 0; i < N_LAT_BUCKETS; i++) {
        cum += bk[i];
        lmx__buf_printf(&b, "longmix_request_seconds_bucket{le=\"%g\"} %llu\n", lat_bounds[i], (unsigned long long)cum);
    }
    cum += bk[N_LAT_BUCKETS];
    lmx__buf_printf(&b, "longmix_request_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    lmx__buf_printf(&b, "longmix_request_seconds_sum %.6f\nlongmix_request_seconds_count %llu\n",
                    atomic_load(&s->latency_sum), (unsigned long long)cum);
    size_t n;
    plan_ref **v = snapshot(s, &n);
    lmx__buf_printf(&b, "# HELP longmix_plans Plans served, by source.\n# TYPE longmix_plans gauge\n");
    size_t n_rt = 0;
    for (size_t i = 0; i < n; i++)
        n_rt += v[i]->runtime;
    lmx__buf_printf(&b, "longmix_plans{source=\"config\"} %zu\nlongmix_plans{source=\"runtime\"} %zu\n", n - n_rt, n_rt);
    lmx__buf_printf(&b, "# HELP longmix_plan_max_step Highest step served per plan (-1: none yet).\n"
                        "# TYPE longmix_plan_max_step gauge\n");
    for (size_t i = 0; i < n; i++) {
        uint64_t ms = atomic_load(&v[i]->max_step);
        lmx__buf_printf(&b, "longmix_plan_max_step{plan=\"%s\"} %lld\n", lmx__plan_name(v[i]->plan),
                        ms ? (long long)(ms - 1) : -1LL);
    }
    lmx__buf_printf(&b, "# HELP longmix_plan_batches_total Batches served per plan.\n# TYPE longmix_plan_batches_total counter\n");
    for (size_t i = 0; i < n; i++)
        lmx__buf_printf(&b, "longmix_plan_batches_total{plan=\"%s\"} %llu\n", lmx__plan_name(v[i]->plan),
                        (unsigned long long)atomic_load(&v[i]->batches));
    lmx__buf_printf(&b, "# HELP longmix_plan_bytes_total Batch body bytes sent per plan (after compression).\n"
                        "# TYPE longmix_plan_bytes_total counter\n");
    for (size_t i = 0; i < n; i++)
        lmx__buf_printf(&b, "longmix_plan_bytes_total{plan=\"%s\"} %llu\n", lmx__plan_name(v[i]->plan),
                        (unsigned long long)atomic_load(&v[i]->bytes));
    lmx_buf fam[N_FAM];
    memset(fam, 0, sizeof fam);
    for (size_t i = 0; i < n; i++)
        metrics_ranks(s, v[i], fam);
    refs_put(v, n);
    for (int f = 0; f < N_FAM; f++) {
        lmx__buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", fam_meta[f][0], fam_meta[f][2], fam_meta[f][0], fam_meta[f][1]);
        if (fam[f].len)
            lmx__buf_append(&b, fam[f].data, fam[f].len);
        lmx__buf_free(&fam[f]);
    }
    lmxd_cache_stats cs;
    lmxd_cache_get_stats(s->cache, &cs);
    lmx__buf_printf(&b, "# HELP longmix_cache_hits_total Batch and sequence bodies served from the response cache.\n"
                        "# TYPE longmix_cache_hits_total counter\nlongmix_cache_hits_total %llu\n",
                    (unsigned long long)cs.hits);
    lmx__buf_printf(&b, "# HELP longmix_cache_misses_total Batch and sequence bodies looked up in the response cache "
                        "and not found.\n"
                        "# TYPE longmix_cache_misses_total counter\nlongmix_cache_misses_total %llu\n",
                    (unsigned long long)cs.misses);
    lmx__buf_printf(&b, "# HELP longmix_cache_evictions_total Entries evicted from the response cache to fit its "
                        "budget.\n"
                        "# TYPE longmix_cache_evictions_total counter\nlongmix_cache_evictions_total %llu\n",
                    (unsigned long long)cs.evictions);
    lmx__buf_printf(&b, "# HELP longmix_cache_bytes Bytes held by the response cache (bodies and entry overhead).\n"
                        "# TYPE longmix_cache_bytes gauge\nlongmix_cache_bytes %zu\n", cs.bytes);
    lmx__buf_printf(&b, "# HELP longmix_cache_entries Entries in the response cache.\n"
                        "# TYPE longmix_cache_entries gauge\nlongmix_cache_entries %zu\n", cs.entries);
    lmx__buf_printf(&b, "# HELP longmix_cache_budget_bytes The response cache's budget (cache_mb; 0: off).\n"
                        "# TYPE longmix_cache_budget_bytes gauge\nlongmix_cache_budget_bytes %zu\n", cs.budget);
    lmx__buf_printf(&b, "# HELP longmix_uptime_seconds Seconds since start.\n# TYPE longmix_uptime_seconds gauge\n");
    lmx__buf_printf(&b, "longmix_uptime_seconds %.1f\n", lmx__now() - s->started);
    if (!b.data)
        return MHD_NO;
    return send_buf(c, 200, b.data, b.len, "text/plain; version=0.0.4; charset=utf-8");
}

static const char dashboard_html[] =
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\"><title>longmix</title>\n"
    "<style>\n"
    "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\n"
    ".plan{margin:1em 0;padding:.5em 1em;border:1px solid #ddd;border-radius:6px}\n"
    "svg{display:block;margin:.5em 0}\n"
    "svg text{font-size:11px}\n"
    ".error{color:#b00}\n"
    "</style></head><body>\n"
    "<h1>longmix</h1>\n"
    "<p id=\"status\">loading /v1/stats&hellip;</p>\n"
    "<div id=\"plans\"></div>\n"
    "<p><a href=\"/v1/stats\">/v1/stats</a> &middot; <a href=\"/v1/plans\">/v1/plans</a> &middot; <a href=\"/metrics\">/metrics</a>\n"
    "&middot; with auth on, open this page as <code>/#token=TOKEN</code></p>\n"
    "<script>\n"
    "\"use strict\";\n"
    "var NS = \"http://www.w3.org/2000/svg\";\n"
    "var token = new URLSearchParams(location.hash.slice(1)).get(\"token\");\n"
    "function el(tag, attrs, text) {\n"
    "  var e = document.createElementNS(NS, tag);\n"
    "  for (var k in attrs) e.setAttribute(k, attrs[k]);\n"
    "  if (text != null) e.textContent = text;\n"
    "  return e;\n"
    "}\n"
    "function h(tag, attrs, text) {\n"
    "  var e = document.createElement(tag);\n"
    "  for (var k in attrs) e.setAttribute(k, attrs[k]);\n"
    "  if (text != null) e.textContent = text;\n"
    "  return e;\n"
    "}\n"
    "function pct(x) { return (100 * x).toFixed(1) + \"%\"; }\n"
    "/* Horizontal grouped bars: one row per label, one bar per series. */\n"
    "function chart(cls, plan, title, series, rows) {\n"
    "  var rowH = 14 * series.length + 8, left = 170, width = 420, top = 36, max = 0;\n"
    "  rows.forEach(function (r) { r.values.forEach(function (v) { if (v > max) max = v; }); });\n"
    "  if (!(max > 0)) max = 1;\n"
    "  var svg = el(\"svg\", {\"class\": \"chart \" + cls, \"data-plan\": plan, \"width\": left + width + 70,\n"
    "                       \"height\": top + rows.length * rowH + 4, \"role\": \"img\"});\n"
    "  svg.appendChild(el(\"title\", {}, plan + \": \" + title));\n"
    "  svg.appendChild(el(\"text\", {\"x\": 0, \"y\": 14, \"font-weight\": \"bold\"}, title));\n"
    "  series.forEach(function (s, j) {\n"
    "    svg.appendChild(el(\"rect\", {\"x\": left + 110 * j, \"y\": 20, \"width\": 10, \"height\": 10, \"fill\": s.color}));\n"
    "    svg.appendChild(el(\"text\", {\"x\": left + 110 * j + 14, \"y\": 29}, s.name));\n"
    "  });\n"
    "  rows.forEach(function (r, i) {\n"
    "    var y = top + i * rowH;\n"
    "    svg.appendChild(el(\"text\", {\"class\": \"label\", \"x\": left - 6, \"y\": y + rowH / 2, \"text-anchor\": \"end\"}, r.label));\n"
    "    r.values.forEach(function (v, j) {\n"
    "      var w = Math.max(0, width * v / max);\n"
    "      var bar = el(\"rect\", {\"class\": \"bar \" + series[j].cls, \"x\": left, \"y\": y + j * 14, \"width\": w.toFixed(1),\n"
    "                            \"height\": 12, \"fill\": series[j].color, \"data-label\": r.label, \"data-value\": v});\n"
    "      bar.appendChild(el(\"title\", {}, r.label + \" \" + series[j].name + \": \" + pct(v)));\n"
    "      svg.appendChild(bar);\n"
    "      svg.appendChild(el(\"text\", {\"x\": left + w + 4, \"y\": y + j * 14 + 10}, pct(v)));\n"
    "    });\n"
    "  });\n"
    "  return svg;\n"
    "}\n"
    "function render(st) {\n"
    "  var root = document.getElementById(\"plans\"), plans = st.plans || {};\n"
    "  root.textContent = \"\";\n"
    "  Object.keys(plans).forEach(function (name) {\n"
    "    var p = plans[name], doms = p.domains || {}, dn = Object.keys(doms);\n"
    "    var sec = h(\"section\", {\"class\": \"plan\", \"data-plan\": name});\n"
    "    sec.appendChild(h(\"h2\", {}, name));\n"
    "    sec.appendChild(h(\"p\", {}, (p.strategy || \"\") + \" \\u00b7 plan id \" + (p.plan_id || \"\") + (p.error ? \" \\u00b7 \" + p.error : \"\")));\n"
    "    sec.appendChild(chart(\"shares\", name, \"domain shares: target vs realized\",\n"
    "      [{name: \"target\", cls: \"target\", color: \"#8aa9d6\"}, {name: \"realized\", cls: \"realized\", color: \"#1f5fad\"}],\n"
    "      dn.map(function (d) { return {label: d, values: [doms[d].target_share || 0, doms[d].realized_share || 0]}; })));\n"
    "    var names = [], tot = {}, sum = 0;\n"
    "    dn.forEach(function (d) {\n"
    "      var b = doms[d].buckets || {};\n"
    "      Object.keys(b).forEach(function (k) {\n"
    "        if (!(k in tot)) { tot[k] = 0; names.push(k); }\n"
    "        tot[k] += b[k]; sum += b[k];\n"
    "      });\n"
    "    });\n"
    "    sec.appendChild(chart(\"buckets\", name, \"length buckets: share of realized tokens\",\n"
    "      [{name: \"tokens\", cls: \"tokens\", color: \"#4a9c5d\"}],\n"
    "      names.map(function (k) { return {label: k, values: [sum ? tot[k] / sum : 0]}; })));\n"
    "    root.appendChild(sec);\n"
    "  });\n"
    "  var s = document.getElementById(\"status\");\n"
    "  s.className = \"\";\n"
    "  s.textContent = Object.keys(plans).length + \" plan(s), updated \" + new Date().toLocaleTimeString();\n"
    "  document.body.setAttribute(\"data-rendered\", \"1\");\n"
    "}\n"
    "function fail(m) {\n"
    "  var s = document.getElementById(\"status\");\n"
    "  s.textContent = m;\n"
    "  s.className = \"error\";\n"
    "}\n"
    "function load() {\n"
    "  var x = new XMLHttpRequest();\n"
    "  x.open(\"GET\", \"/v1/stats\");\n"
    "  if (token) x.setRequestHeader(\"Authorization\", \"Bearer \" + token);\n"
    "  x.onload = function () {\n"
    "    if (x.status !== 200) return fail(\"/v1/stats: HTTP \" + x.status);\n"
    "    try { render(JSON.parse(x.responseText)); } catch (e) { fail(\"/v1/stats: \" + e); }\n"
    "  };\n"
    "  x.onerror = function () { fail(\"/v1/stats: network error\"); };\n"
    "  x.send();\n"
    "}\n"
    "load();\n"
    "setInterval(load, 15000);\n"
    "</script>\n"
    "</body></html>\n";

/* A static page: the data comes from /v1/stats (with the token from /#token=TOKEN when auth is on). */
static enum MHD_Result handle_dashboard(struct MHD_Connection *c)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof dashboard_html - 1, (void *)dashboard_html, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

enum { ROLE_NONE, ROLE_READ, ROLE_ADMIN };

/* The token lists are replaced by a reload, under s->lock. */
static int role_of(server *s, struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    uint8_t hash[32];
    int bearer = h && strncasecmp(h, "Bearer ", 7) == 0;
    if (bearer)
        lmxd_token_hash(h + 7, hash);
    int admin = 0, read = 0;
    pthread_rwlock_rdlock(&s->lock);
    int has_auth = s->cfg.has_auth;
    /* Compare against every hash (constant time each) so timing says nothing about which matched. */
    for (int i = 0; bearer && has_auth && i < s->cfg.n_admin; i++)
        admin |= sodium_memcmp(hash, s->cfg.admin_hashes[i], 32) == 0;
    for (int i = 0; bearer && has_auth && i < s->cfg.n_read; i++)
        read |= sodium_memcmp(hash, s->cfg.read_hashes[i], 32) == 0;
    pthread_rwlock_unlock(&s->lock);
    if (!has_auth)
        return ROLE_ADMIN;
    return admin ? ROLE_ADMIN : read ? ROLE_READ : ROLE_NONE;
}

typedef struct req_state {
    double t0;
    int routed;      /* the first call of the access handler happened */
    int too_big;     /* the body passed MAX_BODY */
    lmxd_request rq;
    lmx_buf body;    /* POST /v1/plans only */
    size_t body_seen;
} req_state;

static req_state *new_state(server *s)
{
    req_state *st = calloc(1, sizeof *st);
    if (st) {
        st->t0 = lmx__now();
        atomic_fetch_add(&s->inflight, 1);
    }
    return st;
}

/* Called once the request line is parsed: the state lives from here to on_completed, so requests
 * that MHD itself rejects (431 headers too large) are counted and timed too. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)uri;
    (void)c;
    return new_state(cls);
}

static enum MHD_Result too_big(struct MHD_Connection *c)
{
    char d[96];
    snprintf(d, sizeof d, "request bodies are limited to %d bytes", MAX_BODY);
    return send_error(c, 413, "body_too_large", d);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    server *s = cls;
    (void)version;
    req_state *st = *con_cls;
    if (!st) {
        if (!(st = new_state(s)))
            return MHD_NO;
        *con_cls = st;
    }
    lmxd_request *rq = &st->rq;
    if (!st->routed) {
        /* First call, headers only: reject early so that a refused body is never read. */
        st->routed = 1;
        atomic_fetch_add(&s->active, 1);
        int code = lmxd_route(method, url, get_arg, c, rq);
        if (code)
            return send_error(c, (unsigned)code, rq->error, rq->detail);
        if (rq->kind != LMXD_R_HEALTH && rq->kind != LMXD_R_DASHBOARD) {
            int role = role_of(s, c);
            if (role == ROLE_NONE)
                return send_error(c, 401, "unauthorized", "a valid token is required (Authorization: Bearer TOKEN)");
            if (rq->admin && role != ROLE_ADMIN)
                return send_error(c, 403, "forbidden", "this request needs a token with the admin role");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        uint64_t n;
        if (cl && lmx__parse_u64(cl, UINT64_MAX, &n) == 0 && n > MAX_BODY)
            return too_big(c);
        return MHD_YES;
    }
    if (*upload_size) {
        st->body_seen += *upload_size;
        if (st->body_seen > MAX_BODY)
            st->too_big = 1;
        else if (rq->kind == LMXD_R_PLAN_ADD && lmx__buf_append(&st->body, upload, *upload_size) != LMX_OK)
            st->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (st->too_big)
        return too_big(c);
    switch (rq->kind) {
    case LMXD_R_HEALTH: {
        static char ok[] = "ok\n";
        struct MHD_Response *r = MHD_create_response_from_buffer(3, ok, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Content-Type", "text/plain");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    case LMXD_R_PLANS: return handle_plans(s, c, rq);
    case LMXD_R_PLAN_ADD: return handle_plan_add(s, c, &st->body);
    case LMXD_R_PLAN_DELETE: return handle_plan_delete(s, c, rq->plan);
    case LMXD_R_BATCH:
    case LMXD_R_SEQUENCE: return handle_body(s, c, rq);
    case LMXD_R_STATS: return handle_stats(s, c, rq);
    case LMXD_R_METRICS: return handle_metrics(s, c);
    case LMXD_R_DASHBOARD: return handle_dashboard(c);
    default: return send_error(c, 405, "not_supported", "this route is not available in this build");
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    server *s = cls;
    req_state *st = *con_cls;
    if (!st)
        return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
    unsigned code = ci ? ci->http_status : 0;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && code < 400)
        code = 0; /* aborted: counted as "other" */
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
    int routed = st->routed;
    lmx__buf_free(&st->body);
    free(st);
    *con_cls = NULL;
    if (routed)
        atomic_fetch_sub(&s->active, 1);
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
    char msg[64];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* MONOTONIC_USEC: what systemd's Type=notify-reload wants alongside RELOADING=1. */
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    notify(msg);
    if (lmxd_config_load(s->opts.config_path, &cfg, &err) != LMX_OK) {
        logf_("reload failed, keeping the running plans: %s", err.message);
        notify("READY=1");
        return -1;
    }
    pthread_mutex_lock(&s->admin);
    plan_ref **cv;
    if (build_plans(s, cfg.plans, cfg.n_plans, &cv, &err) != LMX_OK) {
        pthread_mutex_unlock(&s->admin);
        logf_("reload failed, keeping the running plans: %s", err.message);
        lmxd_config_free(&cfg);
        notify("READY=1");
        return -1;
    }
    /* The runtime plans carry over (the config wins on a name clash). */
    size_t n, nr = 0;
    plan_ref **rv = snapshot(s, &n);
    for (size_t i = 0; rv && i < n; i++) {
        if (rv[i]->runtime)
            rv[nr++] = rv[i];
        else
            ref_put(rv[i]);
    }
    size_t total;
    plan_ref **v = assemble(s, cv, cfg.n_plans, rv, nr, &total);
    swap_plans(s, v, total);
    /* Token lists follow the config too (rotation without a restart); dropping auth is refused
     * on a non-loopback address unless --insecure, as at start. */
    if (!cfg.has_auth && !s->loopback && !s->opts.insecure) {
        logf_("reload: the config has no \"auth\" but the address is not loopback; keeping the current tokens");
    } else {
        pthread_rwlock_wrlock(&s->lock);
        s->cfg.has_auth = cfg.has_auth;
        s->cfg.n_read = cfg.n_read;
        s->cfg.n_admin = cfg.n_admin;
        memcpy(s->cfg.read_hashes, cfg.read_hashes, sizeof cfg.read_hashes);
        memcpy(s->cfg.admin_hashes, cfg.admin_hashes, sizeof cfg.admin_hashes);
        pthread_rwlock_unlock(&s->lock);
    }
    pthread_mutex_unlock(&s->admin);
    logf_("reloaded %s: %zu plan(s) from the config, %zu in all", s->opts.config_path, cfg.n_plans, total);
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
    s->lock_fd = -1;
    s->started = lmx__now();
    pthread_rwlock_init(&s->lock, NULL);
    pthread_mutex_init(&s->detok_lock, NULL);
    pthread_mutex_init(&s->admin, NULL);
    /* A SIGHUP during start-up (index verification can take minutes) must not kill the daemon:
     * it stays pending and becomes a reload once serving. SIGTERM keeps its default until then. */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);
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
    s->loopback = loopback;
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
    if (s->cfg.state_dir) {
        if (lmx__mkdirs(s->cfg.state_dir, &err) != LMX_OK) {
            logf_("state_dir: %s", err.message);
            goto out;
        }
        size_t sl = strlen(s->cfg.state_dir) + sizeof "/" STATE_FILE;
        if (!(s->state_path = malloc(sl)))
            goto out;
        /* One daemon per state directory: two would overwrite each other's runtime plans. */
        snprintf(s->state_path, sl, "%s/%s", s->cfg.state_dir, "lock");
        s->lock_fd = open(s->state_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            logf_("state_dir %s: %s", s->cfg.state_dir,
                  s->lock_fd >= 0 && errno == EWOULDBLOCK ? "in use by another longmixd (one daemon per state_dir)"
                                                          : strerror(errno));
            goto out;
        }
        snprintf(s->state_path, sl, "%s/%s", s->cfg.state_dir, STATE_FILE);
    }
    if (s->cfg.cache_mb > 0 && !(s->cache = lmxd_cache_create((size_t)s->cfg.cache_mb << 20))) {
        logf_("cache_mb %d: out of memory", s->cfg.cache_mb);
        goto out;
    }
    plan_ref **cv, **rv;
    size_t nr, total;
    if (build_plans(s, s->cfg.plans, s->cfg.n_plans, &cv, &err) != LMX_OK) {
        logf_("%s: %s", opts->config_path, err.message);
        goto out;
    }
    if (load_state(s, &rv, &nr, &err) != LMX_OK) {
        refs_put(cv, s->cfg.n_plans);
        logf_("%s", err.message);
        goto out;
    }
    if (nr)
        logf_("restored %zu runtime plan(s) from %s", nr, s->state_path);
    plan_ref **v = assemble(s, cv, s->cfg.n_plans, rv, nr, &total);
    swap_plans(s, v, total);

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
                              on_completed, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_END);
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
    /* Requests whose headers are still arriving are not waited for (a slow client could hold the
     * stop for the whole connection timeout); requests being handled or sent are. */
    logf_("stopping: draining %d in-flight request(s)", atomic_load(&s->active));
    MHD_quiesce_daemon(s->mhd);
    for (int i = 0; i < 300 && atomic_load(&s->active) > 0; i++)
        nanosleep(&(struct timespec){0, 100000000L}, NULL);
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
    logf_("stopped");
    exit_code = 0;
out:
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    swap_plans(s, NULL, 0);
    lmxd_cache_free(s->cache); /* after MHD stopped: every response has released its entry */
    lmx__index_close(s->ix);
    lmxd_config_free(&s->cfg);
    pthread_rwlock_destroy(&s->lock);
    lmx__tokenizer_free(s->detok);
    pthread_mutex_destroy(&s->detok_lock);
    pthread_mutex_destroy(&s->admin);
    free(s->state_path);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s);
    return exit_code;
}
