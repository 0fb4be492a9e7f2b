/* server/lmxd_route.c: request routing and validation of paths and query parameters. */
#include <string.h>

#include "lmx_test.h"
#include "lmxd_route.h"

/* Query arguments: a NULL-terminated list of key, value pairs. */
static const char *args_fn(void *ctx, const char *key)
{
    const char *const *kv = ctx;
    for (; kv && kv[0]; kv += 2)
        if (strcmp(kv[0], key) == 0)
            return kv[1];
    return NULL;
}

static int route(const char *method, const char *url, const char *const *kv, lmxd_request *r)
{
    return lmxd_route(method, url, args_fn, (void *)kv, r);
}

/* Expects a rejection with status, error code and (if given) a detail substring. */
static void expect_reject(const char *method, const char *url, const char *const *kv, int status, const char *error,
                          const char *detail)
{
    lmxd_request r;
    int rc = route(method, url, kv, &r);
    if (rc != status || r.status != status || strcmp(r.error, error) != 0 || (detail && !strstr(r.detail, detail)) ||
        !r.detail[0]) {
        fprintf(stderr, "%s %.80s: got %d/%d '%s' '%s', want %d '%s' '%s'\n", method, url, rc, r.status, r.error,
                r.detail, status, error, detail ? detail : "");
        lmx_test_failures++;
    }
}

static void test_simple_routes(void)
{
    lmxd_request r;
    CHECK_EQ_INT(route("GET", "/", NULL, &r), 0);
    CHECK_EQ_INT(r.kind, LMXD_R_DASHBOARD);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_INT(route("GET", "/healthz", NULL, &r), 0);
    CHECK_EQ_INT(r.kind, LMXD_R_HEALTH);
    CHECK_EQ_INT(r.admin, 0);
    CHECK_EQ_INT(route("HEAD", "/healthz", NULL, &r), 0);
    CHECK_EQ_INT(r.kind, LMXD_R_HEALTH);
    CHECK_EQ_INT(route("GET", "/metrics", NULL, &r), 0);
    CHECK_EQ_INT(r.kind, LMXD_R_METRICS);
    CHECK_EQ_INT(route("GET", "/v1/stats", NULL, &r), 0);
    CHECK_EQ_INT(r.kind, LMXD_R_STATS);
    CHECK_EQ_STR(r.plan, "");
    const char *sp[] = {"plan", "books-4k", NULL};
    CHECK_EQ_INT(route("GET", "/v1/stats", sp, &r), 0);
    CHECK_EQ_STR(r.plan, "books-4k");
    const char *bad_plan[] = {"plan", "../etc", NULL};
    expect_reject("GET", "/v1/stats", bad_plan, 400, "bad_parameter", "'plan'");
    const char *empty_plan[] = {"plan", "", NULL};
    expect_reject("GET", "/v1/stats", empty_plan, 400, "bad_parameter", "'plan'");

    CHECK_EQ_INT(route("GET", "/v1/plans", NULL, &r), 0);
    CHECK_EQ_INT(r.kind, LMXD_R_PLANS);
    CHECK_EQ_STR(r.plan, "");
    CHECK_EQ_INT(route("GET", "/v1/plans/per-source", NULL, &r), 0);
    CHECK_EQ_INT(r.kind, LMXD_R_PLANS);
    CHECK_EQ_STR(r.plan, "per-source");
    /* admin routes */
    CHECK_EQ_INT(route("POST", "/v1/plans", NULL, &r), 0);
    CHECK_EQ_INT(r.kind, LMXD_R_PLAN_ADD);
    CHECK_EQ_INT(r.admin, 1);
    CHECK_EQ_INT(route("DELETE", "/v1/plans/old_plan", NULL, &r), 0);
    CHECK_EQ_INT(r.kind, LMXD_R_PLAN_DELETE);
    CHECK_EQ_INT(r.admin, 1);
    CHECK_EQ_STR(r.plan, "old_plan");
}

static void test_batches(void)
{
    lmxd_request r;
    CHECK_EQ_INT(route("GET", "/v1/plans/books/batches/17", NULL, &r), 0);
    CHECK_EQ_INT(r.kind, LMXD_R_BATCH);
    CHECK_EQ_STR(r.plan, "books");
    CHECK_EQ_U64(r.step, 17);
    CHECK_EQ_U64(r.rank, 0); /* defaults */
    CHECK_EQ_U64(r.world, 1);
    CHECK_EQ_INT(r.admin, 0);
    const char *rw[] = {"rank", "3", "world", "4", NULL};
    CHECK_EQ_INT(route("GET", "/v1/plans/books/batches/0", rw, &r), 0);
    CHECK_EQ_U64(r.step, 0);
    CHECK_EQ_U64(r.rank, 3);
    CHECK_EQ_U64(r.world, 4);
    /* largest step: 2^62 - 1 */
    CHECK_EQ_INT(route("GET", "/v1/plans/books/batches/4611686018427387903", NULL, &r), 0);
    CHECK_EQ_U64(r.step, 4611686018427387903ull);
    const char *wmax[] = {"world", "1073741824", "rank", "1073741823", NULL};
    CHECK_EQ_INT(route("GET", "/v1/plans/b/batches/1", wmax, &r), 0);
    CHECK_EQ_U64(r.world, 1u << 30);
    CHECK_EQ_U64(r.rank, (1u << 30) - 1);

    /* bad steps */
    const char *steps[] = {"abc", "-1", "+1", "1.5", "0x10", "1e3", " 1", "4611686018427387904",
                           "18446744073709551616", "99999999999999999999999", "123456789012345678901234567890"};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        char url[200];
        snprintf(url, sizeof url, "/v1/plans/books/batches/%s", steps[i]);
        expect_reject("GET", url, NULL, 400, "bad_step", NULL);
        snprintf(url, sizeof url, "/v1/plans/books/sequences/%s", steps[i]);
        expect_reject("GET", url, NULL, 400, "bad_step", NULL);
    }
    /* context parallelism: either parameter asks for v2; bad values name the parameter */
    const char *cp1[] = {"cp_rank", "3", "cp_size", "4", NULL};
    CHECK_EQ_INT(route("GET", "/v1/plans/b/batches/1", cp1, &r), 0);
    CHECK(r.cp_rank == 3 && r.cp_size == 4);
    const char *cp2[] = {"cp_size", "2", NULL};
    CHECK_EQ_INT(route("GET", "/v1/plans/b/batches/1", cp2, &r), 0);
    CHECK(r.cp_rank == 0 && r.cp_size == 2);
    CHECK_EQ_INT(route("GET", "/v1/plans/b/batches/1", rw, &r), 0);
    CHECK(r.cp_size == 0); /* v1 */
    const char *cp3[] = {"cp_rank", "4", "cp_size", "4", NULL};
    expect_reject("GET", "/v1/plans/b/batches/1", cp3, 400, "bad_parameter", "'cp_rank'");
    const char *cp4[] = {"cp_size", "0", NULL};
    expect_reject("GET", "/v1/plans/b/batches/1", cp4, 400, "bad_parameter", "'cp_size'");
    const char *cp5[] = {"cp_size", "65537", NULL};
    expect_reject("GET", "/v1/plans/b/batches/1", cp5, 400, "bad_parameter", "'cp_size'");
    const char *cp6[] = {"cp_rank", "-1", NULL};
    expect_reject("GET", "/v1/plans/b/batches/1", cp6, 400, "bad_parameter", "'cp_rank'");
    /* bad rank/world: 400 naming the parameter */
    const char *r1[] = {"rank", "4", "world", "4", NULL};
    expect_reject("GET", "/v1/plans/b/batches/1", r1, 400, "bad_rank", "rank=4");
    const char *r2[] = {"rank", "1", NULL}; /* world defaults to 1 */
    expect_reject("GET", "/v1/plans/b/batches/1", r2, 400, "bad_rank", "world=1");
    const char *r3[] = {"world", "0", NULL};
    expect_reject("GET", "/v1/plans/b/batches/1", r3, 400, "bad_parameter", "'world'");
    const char *r4[] = {"rank", "-1", NULL};
    expect_reject("GET", "/v1/plans/b/batches/1", r4, 400, "bad_parameter", "'rank'");
    const char *r5[] = {"world", "two", NULL};
    expect_reject("GET", "/v1/plans/b/batches/1", r5, 400, "bad_parameter", "'world'");
    const char *r6[] = {"world", "", NULL};
    expect_reject("GET", "/v1/plans/b/batches/1", r6, 400, "bad_parameter", "'world'");
    const char *r7[] = {"world", "1073741825", NULL};
    expect_reject("GET", "/v1/plans/b/batches/1", r7, 400, "bad_parameter", "'world'");
    const char *r8[] = {"rank", "99999999999999999999", "world", "4", NULL};
    expect_reject("GET", "/v1/plans/b/batches/1", r8, 400, "bad_parameter", "'rank'");
    /* a long junk value is cut in the detail, which stays terminated */
    char junk[1000];
    memset(junk, 'z', sizeof junk - 1);
    junk[sizeof junk - 1] = '\0';
    const char *r9[] = {"rank", junk, NULL};
    lmxd_request rq;
    CHECK_EQ_INT(route("GET", "/v1/plans/b/batches/1", r9, &rq), 400);
    CHECK(strlen(rq.detail) < sizeof rq.detail);

    /* sequences and format */
    CHECK_EQ_INT(route("GET", "/v1/plans/p/sequences/99", NULL, &r), 0);
    CHECK_EQ_INT(r.kind, LMXD_R_SEQUENCE);
    CHECK_EQ_U64(r.step, 99);
    CHECK_EQ_INT(r.text, 0);
    const char *ft[] = {"format", "text", NULL};
    CHECK_EQ_INT(route("GET", "/v1/plans/p/sequences/5", ft, &r), 0);
    CHECK_EQ_INT(r.text, 1);
    const char *fb[] = {"format", "binary", NULL};
    CHECK_EQ_INT(route("GET", "/v1/plans/p/sequences/5", fb, &r), 0);
    CHECK_EQ_INT(r.text, 0);
    const char *fj[] = {"format", "json", NULL};
    expect_reject("GET", "/v1/plans/p/sequences/5", fj, 400, "bad_parameter", "'format'");
}

static void test_bad_paths(void)
{
    expect_reject("GET", "", NULL, 400, "bad_path", NULL);
    expect_reject("GET", "healthz", NULL, 400, "bad_path", NULL);
    expect_reject("GET", "/nope", NULL, 404, "not_found", NULL);
    expect_reject("GET", "/v2/plans", NULL, 404, "not_found", NULL);
    expect_reject("GET", "/v1", NULL, 404, "not_found", NULL);
    expect_reject("GET", "/healthz/x", NULL, 404, "not_found", NULL);
    expect_reject("GET", "//healthz", NULL, 404, "not_found", NULL);
    expect_reject("GET", "/healthz/", NULL, 404, "not_found", NULL);
    expect_reject("GET", "/metrics/", NULL, 404, "not_found", NULL);
    expect_reject("GET", "/v1/plans/", NULL, 404, "not_found", NULL);
    /* Paths are routed as sent: any percent-encoding is refused, naming the path (issue #16). */
    expect_reject("GET", "/v1/plans/per-source%00/batches/0", NULL, 400, "bad_path", "per-source%00");
    expect_reject("GET", "/v1/plans/per-source%2Fbatches%2F0", NULL, 400, "bad_path", "%2F");
    expect_reject("GET", "/%6detrics", NULL, 400, "bad_path", NULL);
    expect_reject("GET", "/v1/plans/p/batches", NULL, 404, "not_found", NULL);
    expect_reject("GET", "/v1/plans/p/batches/1/2", NULL, 404, "not_found", NULL);
    expect_reject("GET", "/v1/plans/p/steps/1", NULL, 404, "not_found", NULL);
    expect_reject("GET", "/a/b/c/d/e/f/g/h/i/j", NULL, 404, "not_found", NULL);
    expect_reject("GET", "/v1/plans/p/batches//1", NULL, 404, "not_found", NULL);
    /* plan names: 1-64 of [A-Za-z0-9._-], not . or .. */
    expect_reject("GET", "/v1/plans/a%2Fb/batches/1", NULL, 400, "bad_path", "a%2Fb");
    expect_reject("GET", "/v1/plans/a b", NULL, 404, "unknown_plan", NULL);
    expect_reject("GET", "/v1/plans/./batches/1", NULL, 404, "unknown_plan", NULL);
    expect_reject("GET", "/v1/plans/../batches/1", NULL, 404, "unknown_plan", NULL);
    expect_reject("GET", "/v1/plans/caf\xc3\xa9", NULL, 404, "unknown_plan", NULL);
    char name[80], url[200];
    memset(name, 'n', 65);
    name[65] = '\0';
    snprintf(url, sizeof url, "/v1/plans/%s/batches/1", name);
    expect_reject("GET", url, NULL, 404, "unknown_plan", NULL);
    name[64] = '\0'; /* 64 is fine */
    snprintf(url, sizeof url, "/v1/plans/%s/batches/1", name);
    lmxd_request r;
    CHECK_EQ_INT(route("GET", url, NULL, &r), 0);
    CHECK_EQ_STR(r.plan, name);
    /* Names that merely start with a dot are valid plan names (the config accepts them). */
    CHECK_EQ_INT(route("GET", "/v1/plans/.a/batches/1", NULL, &r), 0);
    CHECK_EQ_STR(r.plan, ".a");
    CHECK_EQ_INT(route("GET", "/v1/plans/.../batches/1", NULL, &r), 0);
    CHECK_EQ_STR(r.plan, "...");
    CHECK_EQ_INT(route("GET", "/v1/plans/A.b_c-9", NULL, &r), 0);
    const char *stats_dot[] = {"plan", ".hidden", NULL};
    CHECK_EQ_INT(route("GET", "/v1/stats", stats_dot, &r), 0);
    CHECK_EQ_STR(r.plan, ".hidden");

    /* too long */
    char *big = malloc(LMXD_MAX_URL + 2);
    big[0] = '/';
    memset(big + 1, 'x', LMXD_MAX_URL);
    big[LMXD_MAX_URL + 1] = '\0';
    expect_reject("GET", big, NULL, 414, "uri_too_long", NULL);
    big[LMXD_MAX_URL] = '\0'; /* exactly the limit: routed (404), not 414 */
    expect_reject("GET", big, NULL, 404, "not_found", NULL);
    free(big);

    /* methods */
    expect_reject("POST", "/healthz", NULL, 405, "method_not_allowed", NULL);
    expect_reject("PUT", "/v1/plans/p/batches/1", NULL, 405, "method_not_allowed", NULL);
    expect_reject("DELETE", "/v1/plans", NULL, 405, "method_not_allowed", NULL);
    expect_reject("POST", "/v1/plans/p", NULL, 405, "method_not_allowed", NULL);
    expect_reject("get", "/healthz", NULL, 405, "method_not_allowed", NULL);

    /* no argument callback at all: defaults */
    CHECK_EQ_INT(lmxd_route("GET", "/v1/plans/p/batches/3", NULL, NULL, &r), 0);
    CHECK(r.rank == 0 && r.world == 1 && r.step == 3);
}

static void test_valid_name(void)
{
    CHECK_EQ_INT(lmxd_valid_plan_name("books", 5), 1);
    CHECK_EQ_INT(lmxd_valid_plan_name("books/x", 5), 1); /* only the first n bytes count */
    CHECK_EQ_INT(lmxd_valid_plan_name("books/x", 7), 0);
    CHECK_EQ_INT(lmxd_valid_plan_name("", 0), 0);
    CHECK_EQ_INT(lmxd_valid_plan_name(".", 1), 0);
    CHECK_EQ_INT(lmxd_valid_plan_name("..", 2), 0);
    CHECK_EQ_INT(lmxd_valid_plan_name(".a", 2), 1);
    CHECK_EQ_INT(lmxd_valid_plan_name("a.", 2), 1);
    CHECK_EQ_INT(lmxd_valid_plan_name("...", 3), 1);
    CHECK_EQ_INT(lmxd_valid_plan_name("a b", 3), 0);
    CHECK_EQ_INT(lmxd_valid_plan_name("a\0b", 3), 0);
    char n[70];
    memset(n, 'q', sizeof n);
    CHECK_EQ_INT(lmxd_valid_plan_name(n, 64), 1);
    CHECK_EQ_INT(lmxd_valid_plan_name(n, 65), 0);
}

int main(void)
{
    test_valid_name();
    test_simple_routes();
    test_batches();
    test_bad_paths();
    TEST_MAIN_END();
}
