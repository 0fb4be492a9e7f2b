/* Request routing and validation, separate from libmicrohttpd so it can be fuzzed
 * (tests/fuzz/fuzz_route.c). Paths and parameters: proto/HTTP.md. */
#ifndef LMXD_ROUTE_H
#define LMXD_ROUTE_H

#include <stddef.h>
#include <stdint.h>

enum lmxd_route_kind {
    LMXD_R_HEALTH,
    LMXD_R_PLANS,       /* GET /v1/plans */
    LMXD_R_PLAN_ADD,    /* POST /v1/plans */
    LMXD_R_PLAN_DELETE, /* DELETE /v1/plans/NAME */
    LMXD_R_BATCH,       /* GET /v1/plans/NAME/batches/STEP?rank=R&world=W[&cp_rank=C&cp_size=K[&cp_layout=L]] */
    LMXD_R_SEQUENCE,    /* GET /v1/plans/NAME/sequences/G[?format=text] */
    LMXD_R_STATS,       /* GET /v1/stats[?plan=NAME] */
    LMXD_R_METRICS,     /* GET /metrics */
    LMXD_R_DASHBOARD    /* GET / */
};

#define LMXD_MAX_URL 2048
#define LMXD_MAX_PLAN_NAME 64

typedef struct lmxd_request {
    int kind;
    int admin;                         /* needs the admin role */
    char plan[LMXD_MAX_PLAN_NAME + 1]; /* "" when the route has none */
    uint64_t step;                     /* STEP or G */
    uint32_t rank, world;
    int text; /* format=text */
    int head; /* HEAD: answered like GET, but not counted as served */
    uint32_t cp_rank, cp_size; /* batches: cp_size 0 = no cp_rank/cp_size given (wire v1) */
    uint32_t cp_layout;        /* LMX_CP_ZIGZAG (default) or LMX_CP_THD; only with cp_size */
    /* on rejection */
    int status;
    char error[48];
    char detail[200];
} lmxd_request;

/* 1 when s[0..n) is a plan name: 1-64 characters of [A-Za-z0-9._-], not "." or "..". */
int lmxd_valid_plan_name(const char *s, size_t n);

/* Returns a query argument's value or NULL. */
typedef const char *(*lmxd_arg_fn)(void *ctx, const char *key);

/* Parses and validates method + url (the path as sent, not percent-decoded; no query string) +
 * arguments. Returns 0 and fills
 * req, or an HTTP status (400, 404, 405, 414) with req->error/detail set for the JSON error body. */
int lmxd_route(const char *method, const char *url, lmxd_arg_fn arg, void *ctx, lmxd_request *req);

#endif
