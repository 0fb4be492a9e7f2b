/* libFuzzer target: request routing and validation (server/lmxd_route.c).
 * Input layout: byte 0 picks the method; the rest is "PATH[?QUERY]" (up to the first '?'), both
 * percent-decoded the way libmicrohttpd hands them to the access handler ('+' is a space in the
 * query). Query arguments are "k=v" pairs split on '&'; a lookup returns the first match, like
 * MHD_lookup_connection_value. The route's promises (status codes, bounded plan names, rank <
 * world, step range) are asserted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "lmxd_route.h"

#define MAX_ARGS 16

typedef struct args {
    const char *key[MAX_ARGS], *val[MAX_ARGS];
    int n;
} args;

static const char *get_arg(void *ctx, const char *key)
{
    const args *a = ctx;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->key[i], key) == 0)
            return a->val[i];
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* In-place percent decoding; stops at the first decoded NUL (C strings end there anyway). */
static void unescape(char *s, int plus_is_space)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '%' && hexval(r[1]) >= 0 && hexval(r[2]) >= 0) {
            *w++ = (char)(hexval(r[1]) << 4 | hexval(r[2]));
            r += 2;
        } else if (*r == '+' && plus_is_space) {
            *w++ = ' ';
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > LMXD_MAX_PLAN_NAME)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", s[i]))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "DELETE", "PUT", "OPTIONS", "get", ""};
    if (size < 1)
        return 0;
    const char *method = methods[data[0] & 7];
    char *s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    args a = {.n = 0};
    char *q = strchr(s, '?');
    if (q) {
        *q++ = '\0';
        for (char *tok = q; tok && *tok && a.n < MAX_ARGS;) {
            char *amp = strchr(tok, '&');
            if (amp)
                *amp = '\0';
            char *eq = strchr(tok, '=');
            if (eq) {
                *eq = '\0';
                unescape(eq + 1, 1);
            }
            unescape(tok, 1);
            a.key[a.n] = tok;
            a.val[a.n] = eq ? eq + 1 : ""; /* "?rank" is present with an empty value */
            a.n++;
            tok = amp ? amp + 1 : NULL;
        }
    }
    unescape(s, 0);

    lmxd_request r;
    int rc = lmxd_route(method, s, get_arg, &a, &r);
    /* Also without an argument callback (the route must cope with arg == NULL). */
    lmxd_request r0;
    int rc0 = lmxd_route(method, s, NULL, NULL, &r0);
    FUZZ_CHECK(rc0 == 0 || rc0 == 400 || rc0 == 404 || rc0 == 405 || rc0 == 414);

    FUZZ_CHECK(rc == 0 || rc == 400 || rc == 404 || rc == 405 || rc == 414);
    FUZZ_CHECK(memchr(r.plan, '\0', sizeof r.plan) && memchr(r.error, '\0', sizeof r.error) &&
               memchr(r.detail, '\0', sizeof r.detail));
    if (rc != 0) {
        FUZZ_CHECK(r.status == rc && r.error[0]);
    } else {
        FUZZ_CHECK(r.kind >= LMXD_R_HEALTH && r.kind <= LMXD_R_DASHBOARD);
        FUZZ_CHECK(r.plan[0] == '\0' || valid_name(r.plan));
        FUZZ_CHECK(r.world >= 1 && r.rank < r.world && r.world <= (1u << 30));
        if (r.kind == LMXD_R_BATCH || r.kind == LMXD_R_SEQUENCE)
            FUZZ_CHECK(r.plan[0] && r.step <= (UINT64_MAX >> 2));
        if (r.kind == LMXD_R_PLAN_ADD || r.kind == LMXD_R_PLAN_DELETE)
            FUZZ_CHECK(r.admin);
        else
            FUZZ_CHECK(!r.admin && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0));
    }
    free(s);
    return 0;
}
