/* The libmicrohttpd callbacks: per-request state, routing, auth and body limits, then one
 * handler per route. */
#include "lmxd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *get_arg(void *ctx, const char *key)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)ctx, MHD_GET_ARGUMENT_KIND, key);
}

typedef struct req_state {
    double t0;
    int routed;      /* the first call of the access handler happened */
    int query_bad;   /* the query string passed LMXD_MAX_PARAMS or LMXD_MAX_QUERY (then cut, see on_uri) */
    int too_big;     /* the body passed LMXD_MAX_BODY */
    char *path;      /* the path as sent (not decoded), at most LMXD_MAX_URL + 1 bytes; NULL: none */
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

/* Called once the request line is parsed: the state lives from here to lmxd_on_completed, so
 * requests that MHD itself rejects (431 headers too large) are counted and timed too. MHD calls
 * lmxd_on_completed for every state made here (it closes each connection through one function
 * that does), so the in-flight gauge cannot leak as long as MHD answers or closes.
 *
 * The query string is checked here, before MHD parses it: libmicrohttpd 0.9.75 stores each query
 * parameter in the connection's memory pool, and when the pool runs out (about 1000 parameters)
 * it queues a 431 and then overwrites its own state, so the connection hangs without an answer.
 * A query we would refuse anyway is cut to nothing in MHD's buffer (the string MHD passes here is
 * that buffer; the query is parsed right after this callback returns) and answered with 414 once
 * the headers are in. */
void *lmxd_on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)c;
    req_state *st = new_state(cls);
    const char *q = uri ? strchr(uri, '?') : NULL;
    if (st && uri) {
        size_t n = q ? (size_t)(q - uri) : strlen(uri);
        st->path = strndup(uri, n > LMXD_MAX_URL ? LMXD_MAX_URL + 1 : n); /* longer: 414 all the same */
    }
    if (st && q) {
        size_t n = 1, len = strlen(q + 1);
        for (const char *p = q + 1; *p; p++)
            n += *p == '&';
        if (n > LMXD_MAX_PARAMS || len > LMXD_MAX_QUERY) {
            st->query_bad = 1;
            ((char *)q)[1] = '\0';
        }
    }
    return st;
}

static unsigned too_big(lmxd_request *rq)
{
    snprintf(rq->error, sizeof rq->error, "body_too_large");
    snprintf(rq->detail, sizeof rq->detail, "request bodies are limited to %d bytes", LMXD_MAX_BODY);
    return 413;
}

/* First call, headers only: the query limits, the route, auth and the Content-Length cap, so
 * that a refused body is never read. Returns 0, or an HTTP status with rq->error/detail set. */
static unsigned check_request(server *s, struct MHD_Connection *c, req_state *st, const char *method,
                              const char *url)
{
    lmxd_request *rq = &st->rq;
    if (st->query_bad) {
        snprintf(rq->error, sizeof rq->error, "query_too_long");
        snprintf(rq->detail, sizeof rq->detail, "the query string is limited to %d parameters and %d bytes",
                 LMXD_MAX_PARAMS, LMXD_MAX_QUERY);
        return 414;
    }
    /* Routed on the path as sent: MHD's url is percent-decoded (lmxd_route refuses any '%'). */
    int code = lmxd_route(method, st->path ? st->path : url, get_arg, c, rq);
    if (code)
        return (unsigned)code;
    if (rq->kind != LMXD_R_HEALTH && rq->kind != LMXD_R_DASHBOARD) {
        int role = lmxd_role_of(s, c);
        if (role == ROLE_NONE) {
            snprintf(rq->error, sizeof rq->error, "unauthorized");
            snprintf(rq->detail, sizeof rq->detail, "a valid token is required (Authorization: Bearer TOKEN)");
            return 401;
        }
        if (rq->admin && role != ROLE_ADMIN) {
            snprintf(rq->error, sizeof rq->error, "forbidden");
            snprintf(rq->detail, sizeof rq->detail, "this request needs a token with the admin role");
            return 403;
        }
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    uint64_t n;
    if (cl && lmx__parse_u64(cl, UINT64_MAX, &n) == 0 && n > LMXD_MAX_BODY)
        return too_big(rq);
    return 0;
}

/* The route's handler, once the request (and its body, if any) is complete. */
static enum MHD_Result handle(server *s, struct MHD_Connection *c, req_state *st)
{
    const lmxd_request *rq = &st->rq;
    /* Every kind lmxd_route returns has a case (-Wswitch names one left out). */
    switch ((enum lmxd_route_kind)rq->kind) {
    case LMXD_R_HEALTH: {
        const char *damaged = lmxd_index_damaged(s);
        if (damaged) /* a load balancer takes this node out */
            return lmxd_send_error(c, 503, "index_damaged", damaged);
        static char ok[] = "ok\n";
        struct MHD_Response *r = MHD_create_response_from_buffer(3, ok, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Content-Type", "text/plain");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    case LMXD_R_PLANS: return lmxd_handle_plans(s, c, rq);
    case LMXD_R_PLAN_ADD: return lmxd_handle_plan_add(s, c, &st->body);
    case LMXD_R_PLAN_DELETE: return lmxd_handle_plan_delete(s, c, rq->plan);
    case LMXD_R_BATCH:
    case LMXD_R_SEQUENCE: return lmxd_handle_body(s, c, rq);
    case LMXD_R_STATS: return lmxd_handle_stats(s, c, rq);
    case LMXD_R_METRICS: return lmxd_handle_metrics(s, c);
    case LMXD_R_DASHBOARD: return lmxd_handle_dashboard(c);
    }
    return MHD_NO; /* not reached */
}

enum MHD_Result lmxd_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
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
        st->routed = 1;
        atomic_fetch_add(&s->active, 1);
        /* Headers are in: a body (if any) now has body_timeout. */
        lmxd_conn_phase(s, lmxd_conn_of(c), LMXD_PHASE_BODY);
        unsigned code = check_request(s, c, st, method, url);
        if (code) {
            lmxd_conn_phase(s, lmxd_conn_of(c), LMXD_PHASE_SEND);
            return lmxd_send_error(c, code, rq->error, rq->detail);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        st->body_seen += *upload_size;
        if (st->body_seen > LMXD_MAX_BODY)
            st->too_big = 1;
        else if (rq->kind == LMXD_R_PLAN_ADD && lmx__buf_append(&st->body, upload, *upload_size) != LMX_OK)
            st->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    /* The request is complete: from here the answer has send_timeout (building it included). */
    lmxd_conn_phase(s, lmxd_conn_of(c), LMXD_PHASE_SEND);
    if (st->too_big) {
        unsigned code = too_big(rq);
        return lmxd_send_error(c, code, rq->error, rq->detail);
    }
    return handle(s, c, st);
}

void lmxd_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    server *s = cls;
    req_state *st = *con_cls;
    if (!st)
        return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
    unsigned code = ci ? ci->http_status : 0;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && code < 400)
        code = 0; /* aborted: counted as "other" */
    double dt = lmx__now() - st->t0;
    lmxd_metrics_record(s, code, dt);
    if (s->cfg.access_log)
        lmxd_log("access %u %.1f ms", code, dt * 1e3);
    int routed = st->routed;
    /* The connection waits for its next request: headers have header_timeout again. */
    lmxd_conn_phase(s, lmxd_conn_of(c), LMXD_PHASE_HEADERS);
    lmx__buf_free(&st->body);
    free(st->path);
    free(st);
    *con_cls = NULL;
    if (routed)
        atomic_fetch_sub(&s->active, 1);
    atomic_fetch_sub(&s->inflight, 1);
}
