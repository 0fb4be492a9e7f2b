/* The HTTP service's private state and the functions its files share (server/README.md says
 * which file owns what). Not installed; included by server/lmxd_*.c only. */
#ifndef LMXD_INTERNAL_H
#define LMXD_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lmx_error.h"
#include "lmx_index.h"
#include "lmx_plan.h"
#include "lmx_tokenizer.h"
#include "lmx_util.h"
#include "lmxd_cache.h"
#include "lmxd_config.h"
#include "lmxd_route.h"
#include "lmxd_serve.h"

#define LMXD_N_LAT_BUCKETS 12 /* request latency histogram (lmxd_metrics.c) */
#define LMXD_N_STATUS 15      /* status codes counted one by one, plus "other" */
#define LMXD_MAX_BODY 65536   /* request bodies (POST /v1/plans); larger ones get 413 */
#define LMXD_SMALL_BODY (1u << 20) /* bodies up to this size keep 1/8 of inflight_mb for themselves */
#define LMXD_MAX_PARAMS 32    /* query parameters; more get 414 (routes use at most three) */
#define LMXD_MAX_QUERY 2048   /* query string bytes; more get 414 */
#define LMXD_MAX_RUNTIME_PLANS 256 /* plans added over HTTP */
#define LMXD_RANK_SLOTS 8192  /* open-addressing table of (world, rank) per plan, power of two */
#define LMXD_RANK_CAP 4096    /* at most this many (world, rank) pairs tracked per plan */

#define LMXD_RANK_REWIND 256 /* a step this far behind a rank's position moves it back (lmxd_ranks.c) */

typedef struct rank_slot {
    uint32_t world, rank;
    uint64_t step1; /* the rank's position (lmxd_ranks.c) + 1; 0 = free slot */
} rank_slot;

/* A served plan, reference counted: a request holds one from lmxd_plan_find to lmxd_plan_put, so
 * a reload or DELETE never frees a plan under a request. */
typedef struct plan_ref {
    lmx_plan *plan;
    atomic_int refs;
    int runtime;       /* added by POST /v1/plans (else: from the config) */
    json_t *spec_json; /* runtime plans: the spec as posted, what the state file keeps */
    atomic_uint_fast64_t batches, bytes;
    pthread_mutex_t rk_lock; /* guards ranks, n_ranks, ranks_dropped */
    rank_slot *ranks;        /* LMXD_RANK_SLOTS entries, allocated at the first batch */
    size_t n_ranks;
    uint64_t ranks_dropped; /* batches whose (world, rank) did not fit in LMXD_RANK_CAP */
} plan_ref;

/* lmxd_conn.c: a connection's phase, each with its own total deadline. */
enum { LMXD_PHASE_HEADERS, LMXD_PHASE_BODY, LMXD_PHASE_SEND, LMXD_N_PHASES };
typedef struct lmxd_conn lmxd_conn;

typedef struct server {
    lmxd_serve_options opts;
    lmxd_config cfg; /* from the start; a reload replaces only the plans and the token lists */
    int loopback;     /* the listen address is a loopback one */
    lmx_index *ix;
    char *state_path;      /* STATE_DIR/plans.json, NULL without state_dir */
    int lock_fd;           /* STATE_DIR itself, held (flock) while running; -1 without state_dir */
    pthread_mutex_t admin; /* serializes registry changes: POST, DELETE, reload */
    pthread_rwlock_t lock; /* guards plans/n_plans (the array, not the plans) */
    plan_ref **plans;
    size_t n_plans;
    struct MHD_Daemon *mhd;
    lmxd_cache *cache; /* batch/sequence bodies; NULL when cache_mb is 0 */
    pthread_mutex_t conn_lock; /* guards conns and watchdog_stop (lmxd_conn.c) */
    pthread_cond_t watchdog_cv;
    lmxd_conn *conns;          /* every open connection */
    pthread_t watchdog;
    int watchdog_on, watchdog_stop;
    atomic_uint_fast64_t cut[LMXD_N_PHASES]; /* connections shut down past their deadline, by phase */
    atomic_size_t body_bytes;  /* batch/sequence body bytes queued and not yet sent (inflight_mb) */
    atomic_uint_fast64_t busy; /* 503s for want of inflight_mb */
    atomic_int damage_claimed, damaged; /* a shard faulted (lmxd_guard.c); damage says which */
    char damage[LMX_ERROR_MESSAGE_MAX];
    atomic_int inflight; /* request line parsed, not completed */
    atomic_int active;   /* headers complete and handled: what SIGTERM waits for */
    atomic_uint_fast64_t requests, bytes_out, latency[LMXD_N_LAT_BUCKETS + 1], status[LMXD_N_STATUS + 1];
    _Atomic double latency_sum;
    double started;
    pthread_mutex_t detok_lock; /* guards detok, detok_tried */
    lmx_tokenizer *detok;       /* the index's tokenizer, loaded at the first text request */
    int detok_tried;
    char detok_error[LMX_ERROR_MESSAGE_MAX];
    /* verify: background (lmxd_verify.c) */
    pthread_t verify_thread;
    int verify_running;                   /* the thread is joinable */
    atomic_int verify_cancel, verify_done;
    atomic_ullong verify_bytes;
    double verify_t0, verify_seconds; /* verify_seconds is written before verify_done is set */
    /* SIGHUP reloads run on their own thread (lmxd_serve.c): plan builds may wait for background
     * verification, and the main thread keeps taking signals meanwhile */
    pthread_mutex_t reload_lock; /* guards the four below */
    pthread_t reload_thread;
    int reload_joinable; /* reload_thread was started and not yet joined */
    int reload_busy;     /* a reload is running */
    int reload_again;    /* SIGHUP(s) during it: the config is read once more when it ends */
    atomic_int stopping; /* SIGTERM/SIGINT: a reload still building throws its plans away */
    atomic_uint_fast64_t reloads_ok, reloads_failed; /* reloads ended since start */
} server;

/* lmxd_log.c: one line on stderr, prefixed "longmixd: ". */
void lmxd_log(const char *fmt, ...) LMX_PRINTF(1, 2);

/* lmxd_dispatch.c: the libmicrohttpd callbacks (cls is the server). */
void *lmxd_on_uri(void *cls, const char *uri, struct MHD_Connection *c);
enum MHD_Result lmxd_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                const char *version, const char *upload, size_t *upload_size, void **con_cls);
void lmxd_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe);

/* lmxd_conn.c: per-connection deadlines. lmxd_on_connection is MHD's connection notification;
 * lmxd_conn_of returns NULL for a connection it could not track (out of memory). */
void lmxd_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode code);
lmxd_conn *lmxd_conn_of(struct MHD_Connection *c);
void lmxd_conn_phase(server *s, lmxd_conn *k, int phase); /* k may be NULL */
int lmxd_watchdog_start(server *s);
void lmxd_watchdog_stop(server *s); /* after MHD_stop_daemon; no-op when not started */

/* lmxd_guard.c: index reads that survive a shard truncated while mapped. Wrap each call that
 * reads the index in begin/end; a non-NULL end() means the result is garbage: call
 * lmxd_index_damage with it and answer 503. lmxd_index_damaged: NULL, or why no body is served. */
int lmxd_guard_install(void);
void lmxd_guard_begin(void);
const void *lmxd_guard_end(void);
void lmxd_index_damage(server *s, const void *addr);
const char *lmxd_index_damaged(server *s);

/* lmxd_verify.c: verify: background. start: the gate on the index and the verifying thread;
 * stop: cancels and joins it (no-op when not started); json: progress for /v1/stats and /metrics;
 * send_gate_fault: the 503 for a read that lmx__gate_end refused (fault, shard from it). */
int lmxd_verify_start(server *s, lmx_error *err);
void lmxd_verify_stop(server *s);
json_t *lmxd_verify_json(server *s);
/* lmxd_serve.c: /v1/stats "reload": {"running", "queued", "ok", "failed"} (new reference). */
json_t *lmxd_reload_json(server *s);
enum MHD_Result lmxd_send_gate_fault(server *s, struct MHD_Connection *c, int fault, const char *shard);

/* lmxd_plans.c: the registry. Functions returning plan_ref pointers hand the caller a reference
 * (release with lmxd_plan_put / lmxd_plans_put, which also free the array). */
void lmxd_plan_put(plan_ref *r);
void lmxd_plans_put(plan_ref **v, size_t n);
plan_ref *lmxd_plan_find(server *s, const char *name);
plan_ref **lmxd_plans_snapshot(server *s, size_t *n);
int lmxd_plans_build(server *s, const lmxd_plan_cfg *pc, size_t n, plan_ref ***out, lmx_error *err);
void lmxd_plans_swap(server *s, plan_ref **v, size_t n); /* takes v's references */
int lmxd_plan_make_runtime(server *s, const char *name, json_t *spec_obj, plan_ref **out, lmx_error *err);
/* Removes the item tables of plans not served here, unused for plan_table_grace seconds and not
 * mapped by any process (lmx__plan_table_gc); at start and after each reload. */
void lmxd_plans_gc_tables(server *s);
plan_ref **lmxd_plans_assemble(server *s, plan_ref **cv, size_t nc, plan_ref **rv, size_t nr, size_t *n_out);
/* lmxd_plans.c: the state file (runtime plans across restarts). */
int lmxd_state_save(server *s, plan_ref *const *v, size_t n, lmx_error *err);
int lmxd_state_load(server *s, plan_ref ***out, size_t *n_out, lmx_error *err);

/* lmxd_ranks.c: per-(world, rank) step tracking. */
void lmxd_rank_track(plan_ref *r, uint32_t world, uint32_t rank, uint64_t step);
/* The tracked pairs sorted by (world, rank), malloc'ed (caller frees; NULL when none), and the
 * batches that did not fit the table. */
rank_slot *lmxd_ranks_sorted(plan_ref *r, size_t *n, uint64_t *dropped);

/* lmxd_respond.c: responses. Each queues the response and returns MHD's verdict. */
enum MHD_Result lmxd_send_buf(struct MHD_Connection *c, unsigned status, void *data, size_t len,
                              const char *type); /* takes data (malloc'ed) */
enum MHD_Result lmxd_send_json(struct MHD_Connection *c, unsigned status, json_t *j); /* takes j */
enum MHD_Result lmxd_send_error_field(struct MHD_Connection *c, unsigned status, const char *error,
                                      const char *detail, const char *field);
enum MHD_Result lmxd_send_error(struct MHD_Connection *c, unsigned status, const char *error, const char *detail);
/* 503 with Retry-After: SECONDS and the JSON error body. */
enum MHD_Result lmxd_send_busy(struct MHD_Connection *c, unsigned retry_after_s, const char *detail);
/* An error body {"error", "detail"} with a Retry-After header. */
enum MHD_Result lmxd_send_retry(struct MHD_Connection *c, unsigned status, unsigned retry_after_s, const char *error,
                                const char *detail);
unsigned lmxd_status_of(int code); /* LMX_E* -> HTTP status */
enum MHD_Result lmxd_handle_dashboard(struct MHD_Connection *c);

/* dashboard.c, generated at build time from server/dashboard.html (server/embed_file.cmake). */
extern const unsigned char lmxd_dashboard_html[];
extern const size_t lmxd_dashboard_html_len;

/* lmxd_auth.c */
enum { ROLE_NONE, ROLE_READ, ROLE_ADMIN };
int lmxd_role_of(server *s, struct MHD_Connection *c);

/* Handlers, one file per concern. lmxd_handle_text takes r's reference. */
enum MHD_Result lmxd_handle_plans(server *s, struct MHD_Connection *c, const lmxd_request *rq);
enum MHD_Result lmxd_handle_plan_add(server *s, struct MHD_Connection *c, const lmx_buf *body);
enum MHD_Result lmxd_handle_plan_delete(server *s, struct MHD_Connection *c, const char *name);
enum MHD_Result lmxd_handle_body(server *s, struct MHD_Connection *c, const lmxd_request *rq);
enum MHD_Result lmxd_handle_text(server *s, struct MHD_Connection *c, const lmxd_request *rq, plan_ref *r);
enum MHD_Result lmxd_handle_stats(server *s, struct MHD_Connection *c, const lmxd_request *rq);
enum MHD_Result lmxd_handle_metrics(server *s, struct MHD_Connection *c);
/* lmxd_metrics.c: counts a finished request (status code, seconds since its request line). */
void lmxd_metrics_record(server *s, unsigned code, double seconds);

#endif
