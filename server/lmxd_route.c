#include "lmxd_route.h"

#include <stdio.h>
#include <string.h>

#include "lmx_proto.h"
#include "lmx_util.h"

static int reject(lmxd_request *r, int status, const char *error, const char *detail)
{
    r->status = status;
    snprintf(r->error, sizeof r->error, "%s", error);
    snprintf(r->detail, sizeof r->detail, "%s", detail);
    return status;
}

int lmxd_valid_plan_name(const char *s, size_t n)
{
    if (n == 0 || n > LMXD_MAX_PLAN_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return 0;
    }
    return !(s[0] == '.' && (n == 1 || (n == 2 && s[1] == '.'))); /* not "." or ".." */
}

/* Unsigned parameter: absent -> dflt; junk, sign, overflow or > max -> 400 naming it. */
static int uint_arg(lmxd_request *r, lmxd_arg_fn arg, void *ctx, const char *key, uint64_t dflt, uint64_t max,
                    uint64_t *out)
{
    const char *v = arg ? arg(ctx, key) : NULL;
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (lmx__parse_u64(v, max, out) != 0) {
        char d[200];
        snprintf(d, sizeof d, "parameter '%s' must be an integer in [0, %llu], got '%.60s'", key,
                 (unsigned long long)max, v);
        return reject(r, 400, "bad_parameter", d);
    }
    return 0;
}

int lmxd_route(const char *method, const char *url, lmxd_arg_fn arg, void *ctx, lmxd_request *r)
{
    memset(r, 0, sizeof *r);
    r->world = 1;
    r->head = strcmp(method, "HEAD") == 0;
    size_t ulen = strlen(url);
    if (ulen > LMXD_MAX_URL)
        return reject(r, 414, "uri_too_long", "the request path is longer than 2048 bytes");
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    const char *seg[8];
    size_t len[8], n = 0;
    const char *p = url;
    if (*p != '/')
        return reject(r, 400, "bad_path", "the path must start with '/'");
    /* The path is routed as sent: no name or number here needs escaping, and decoding would let
     * %00 cut a path or %2F make separators that a proxy in front did not see. */
    if (strchr(url, '%')) {
        char d[200];
        snprintf(d, sizeof d, "percent-encoding is not allowed in the path: '%.120s'", url);
        return reject(r, 400, "bad_path", d);
    }
    while (*p == '/') {
        p++;
        if (!*p && n > 0) /* one path per resource: /metrics/ is not /metrics (a proxy rule sees one) */
            return reject(r, 404, "not_found", "no such path (no trailing '/')");
        if (!*p)
            break;
        if (n == 8)
            return reject(r, 404, "not_found", "no such path");
        const char *e = strchr(p, '/');
        seg[n] = p;
        len[n] = e ? (size_t)(e - p) : strlen(p);
        p += len[n];
        n++;
    }
#define SEG(i, s) (len[i] == strlen(s) && memcmp(seg[i], s, len[i]) == 0)
    if (n == 0) {
        r->kind = LMXD_R_DASHBOARD;
    } else if (n == 1 && SEG(0, "healthz")) {
        r->kind = LMXD_R_HEALTH;
    } else if (n == 1 && SEG(0, "metrics")) {
        r->kind = LMXD_R_METRICS;
    } else if (n == 2 && SEG(0, "v1") && SEG(1, "stats")) {
        r->kind = LMXD_R_STATS;
        const char *pl = arg ? arg(ctx, "plan") : NULL;
        if (pl) {
            if (!lmxd_valid_plan_name(pl, strlen(pl)))
                return reject(r, 400, "bad_parameter", "parameter 'plan' is not a valid plan name");
            memcpy(r->plan, pl, strlen(pl) + 1);
        }
    } else if (n == 2 && SEG(0, "v1") && SEG(1, "plans")) {
        if (strcmp(method, "POST") == 0) {
            r->kind = LMXD_R_PLAN_ADD;
            r->admin = 1;
            return 0;
        }
        r->kind = LMXD_R_PLANS;
    } else if (n >= 3 && SEG(0, "v1") && SEG(1, "plans")) {
        if (!lmxd_valid_plan_name(seg[2], len[2]))
            return reject(r, 404, "unknown_plan", "plan names are 1-64 characters of [A-Za-z0-9._-]");
        memcpy(r->plan, seg[2], len[2]);
        r->plan[len[2]] = '\0';
        if (n == 3 && strcmp(method, "DELETE") == 0) {
            r->kind = LMXD_R_PLAN_DELETE;
            r->admin = 1;
            return 0;
        }
        if (n == 3) {
            r->kind = LMXD_R_PLANS; /* one plan */
        } else if (n == 5 && (SEG(3, "batches") || SEG(3, "sequences"))) {
            char num[24];
            if (len[4] == 0 || len[4] >= sizeof num)
                return reject(r, 400, "bad_step", "STEP must be an integer in [0, 2^62)");
            memcpy(num, seg[4], len[4]);
            num[len[4]] = '\0';
            if (lmx__parse_u64(num, UINT64_MAX >> 2, &r->step) != 0) {
                char d[200];
                snprintf(d, sizeof d, "'%s' is not a step: want an integer in [0, 2^62)", num);
                return reject(r, 400, "bad_step", d);
            }
            if (SEG(3, "batches")) {
                uint64_t rank, world;
                r->kind = LMXD_R_BATCH;
                if (uint_arg(r, arg, ctx, "rank", 0, 1u << 30, &rank) || uint_arg(r, arg, ctx, "world", 1, 1u << 30, &world))
                    return r->status;
                if (world == 0)
                    return reject(r, 400, "bad_parameter", "parameter 'world' must be at least 1");
                if (rank >= world) {
                    char d[200];
                    snprintf(d, sizeof d, "rank=%llu must be below world=%llu", (unsigned long long)rank,
                             (unsigned long long)world);
                    return reject(r, 400, "bad_rank", d);
                }
                r->rank = (uint32_t)rank;
                r->world = (uint32_t)world;
                /* Either CP parameter asks for wire v2 (proto/WIRE.md); absent, v1 as before. */
                if (arg && (arg(ctx, "cp_rank") || arg(ctx, "cp_size"))) {
                    uint64_t cr, cs;
                    if (uint_arg(r, arg, ctx, "cp_rank", 0, LMX_MAX_CP_SIZE, &cr) ||
                        uint_arg(r, arg, ctx, "cp_size", 1, LMX_MAX_CP_SIZE, &cs))
                        return r->status;
                    if (cs == 0)
                        return reject(r, 400, "bad_parameter", "parameter 'cp_size' must be at least 1");
                    if (cr >= cs) {
                        char d[200];
                        snprintf(d, sizeof d, "parameter 'cp_rank'=%llu must be below cp_size=%llu",
                                 (unsigned long long)cr, (unsigned long long)cs);
                        return reject(r, 400, "bad_parameter", d);
                    }
                    r->cp_rank = (uint32_t)cr;
                    r->cp_size = (uint32_t)cs;
                }
                /* The CP layout (whether the plan allows it is checked when the batch is built). */
                const char *lay = arg ? arg(ctx, "cp_layout") : NULL;
                if (lay && !r->cp_size)
                    return reject(r, 400, "bad_parameter",
                                  "parameter 'cp_layout' needs cp_rank/cp_size (padding is for context parallelism)");
                if (lay && strcmp(lay, "thd") == 0)
                    r->cp_layout = LMX_CP_THD;
                else if (lay && strcmp(lay, "zigzag") != 0)
                    return reject(r, 400, "bad_parameter", "parameter 'cp_layout' must be 'zigzag' or 'thd'");
            } else {
                r->kind = LMXD_R_SEQUENCE;
                const char *f = arg ? arg(ctx, "format") : NULL;
                if (f && strcmp(f, "text") != 0 && strcmp(f, "binary") != 0)
                    return reject(r, 400, "bad_parameter", "parameter 'format' must be 'text' or 'binary'");
                r->text = f && strcmp(f, "text") == 0;
            }
        } else {
            return reject(r, 404, "not_found", "no such path under /v1/plans/NAME");
        }
    } else {
        return reject(r, 404, "not_found", "no such path");
    }
    if (!get)
        return reject(r, 405, "method_not_allowed", "this path answers GET only");
    return 0;
#undef SEG
}
