#include "lmxd_config.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmx_util.h"

#define HASH_PREFIX "blake2b-256:"

void lmxd_token_hash(const char *token, uint8_t out[32])
{
    crypto_generichash(out, 32, (const uint8_t *)token, strlen(token), NULL, 0);
}

static int parse_hashes(const char *path, json_t *arr, const char *role, uint8_t (*out)[32], int *n, lmx_error *err)
{
    if (!arr)
        return LMX_OK;
    if (!json_is_array(arr) || json_array_size(arr) > LMXD_MAX_TOKENS)
        return lmx__err(err, LMX_EINVAL, "%s: auth.%s: must be an array of at most %d token hashes", path, role,
                        LMXD_MAX_TOKENS);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *h = json_string_value(json_array_get(arr, i));
        if (!h || strncmp(h, HASH_PREFIX, strlen(HASH_PREFIX)) != 0 ||
            lmx__unhex(h + strlen(HASH_PREFIX), out[*n], 32) != 0)
            return lmx__err(err, LMX_EINVAL,
                            "%s: auth.%s[%zu]: not a token hash (want \"blake2b-256:<64 hex>\" from `longmixd keygen`)",
                            path, role, i);
        (*n)++;
    }
    return LMX_OK;
}

int lmxd_config_parse_plans(const json_t *plans, lmxd_plan_cfg **out, size_t *n, lmx_error *err)
{
    *out = NULL;
    *n = 0;
    if (!json_is_object(plans) || json_object_size(plans) == 0)
        return lmx__err(err, LMX_EINVAL, "plans: must be a non-empty object of NAME -> plan");
    lmxd_plan_cfg *v = calloc(json_object_size(plans), sizeof *v);
    if (!v)
        return lmx__err(err, LMX_ENOMEM, "plans: out of memory");
    const char *name;
    json_t *obj;
    int rc = LMX_OK;
    json_object_foreach((json_t *)plans, name, obj)
    {
        size_t len = strlen(name);
        int ok = len > 0 && len <= 64;
        for (size_t i = 0; ok && i < len; i++)
            ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                 (name[i] >= '0' && name[i] <= '9') || name[i] == '-' || name[i] == '_' || name[i] == '.';
        if (ok && (strcmp(name, ".") == 0 || strcmp(name, "..") == 0))
            ok = 0; /* the router answers 404 for these (path segments) */
        if (!ok) {
            rc = lmx__err(err, LMX_EINVAL, "plans.%.80s: a plan name is 1-64 characters of [A-Za-z0-9._-], not . or ..", name);
            break;
        }
        if ((rc = lmx__plan_spec_parse(name, obj, &v[*n].spec, err)) != LMX_OK) {
            lmx__plan_spec_free(&v[*n].spec);
            break;
        }
        v[*n].name = strdup(name);
        (*n)++;
    }
    if (rc != LMX_OK) {
        lmxd_plans_free(v, *n);
        *n = 0;
        return rc;
    }
    *out = v;
    return LMX_OK;
}

void lmxd_plans_free(lmxd_plan_cfg *plans, size_t n)
{
    for (size_t i = 0; plans && i < n; i++) {
        free(plans[i].name);
        lmx__plan_spec_free(&plans[i].spec);
    }
    free(plans);
}

/* The config must be a regular file: opened without blocking (a FIFO would wait for a writer,
 * holding up a reload and then SIGTERM), checked with fstat, read whole (at most 16 MiB). */
static int read_regular(const char *path, char **out, size_t *out_len, int *mode, lmx_error *err)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return lmx__err_errno(err, "config %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lmx__err(err, LMX_EINVAL, "config %s: not a regular file", path);
    }
    if (st.st_size > LMXD_CONFIG_MAX) {
        close(fd);
        return lmx__err(err, LMX_EINVAL, "config %s: larger than %d bytes", path, LMXD_CONFIG_MAX);
    }
    *mode = (int)(st.st_mode & 07777);
    lmx_buf b = {0};
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            lmx__buf_free(&b);
            errno = e;
            return lmx__err_errno(err, "config %s: read", path);
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > LMXD_CONFIG_MAX || lmx__buf_append(&b, chunk, (size_t)n) != LMX_OK) {
            close(fd);
            lmx__buf_free(&b);
            return lmx__err(err, LMX_EINVAL, "config %s: larger than %d bytes", path, LMXD_CONFIG_MAX);
        }
    }
    close(fd);
    *out = (char *)b.data;
    *out_len = b.len;
    return LMX_OK;
}

int lmxd_config_load(const char *path, lmxd_config *cfg, lmx_error *err)
{
    static const char *const known[] = {"listen", "index", "threads", "auth", "plans", "state_dir", "zstd_level",
                                        "connection_limit", "connection_timeout", "access_log", "lag_steps", "cache_mb",
                                        "header_timeout", "body_timeout", "per_address_limit", "send_timeout",
                                        "inflight_mb", "verify", "verify_wait", "plan_table_grace", NULL};
    memset(cfg, 0, sizeof *cfg);
    cfg->threads = 2;
    cfg->zstd_level = 1;
    cfg->connection_limit = 1024;
    cfg->connection_timeout_s = 30;
    cfg->lag_steps = 2;
    cfg->cache_mb = LMXD_CACHE_MB_DEFAULT;
    char *text = NULL;
    size_t len = 0;
    int mode = 0;
    if (read_regular(path, &text, &len, &mode, err) != LMX_OK)
        return err->code;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return lmx__err(err, LMX_EINVAL, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
    int rc = LMX_OK;
    if (!json_is_object(root)) {
        rc = lmx__err(err, LMX_EINVAL, "%s: the config must be a JSON object", path);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++)
            ok = strcmp(known[i], key) == 0;
        if (!ok) {
            rc = lmx__err(err, LMX_EINVAL, "%s: unknown key '%s'", path, key);
            goto out;
        }
    }
#define STR_KEY(k, dst)                                                                     \
    if ((v = json_object_get(root, k))) {                                                   \
        if (!json_is_string(v) || !*json_string_value(v)) {                                 \
            rc = lmx__err(err, LMX_EINVAL, "%s: %s: must be a non-empty string", path, k); \
            goto out;                                                                       \
        }                                                                                   \
        dst = strdup(json_string_value(v));                                                 \
    }
    STR_KEY("listen", cfg->listen)
    STR_KEY("index", cfg->index_dir)
    STR_KEY("state_dir", cfg->state_dir)
#undef STR_KEY
#define INT_KEY(k, dst, lo, hi)                                                                            \
    if ((v = json_object_get(root, k))) {                                                                  \
        if (!json_is_integer(v) || json_integer_value(v) < (lo) || json_integer_value(v) > (hi)) {         \
            rc = lmx__err(err, LMX_EINVAL, "%s: %s: must be an integer in [%d, %d]", path, k, (lo), (hi)); \
            goto out;                                                                                      \
        }                                                                                                  \
        dst = (int)json_integer_value(v);                                                                  \
    }
    INT_KEY("threads", cfg->threads, 1, 256)
    INT_KEY("zstd_level", cfg->zstd_level, -7, 19)
    INT_KEY("lag_steps", cfg->lag_steps, 0, 1000000)
    INT_KEY("cache_mb", cfg->cache_mb, 0, LMXD_CACHE_MB_MAX)
    int limit = (int)cfg->connection_limit, timeout = (int)cfg->connection_timeout_s;
    INT_KEY("connection_limit", limit, 1, 65536)
    INT_KEY("connection_timeout", timeout, 1, 3600)
    cfg->connection_limit = (unsigned)limit;
    cfg->connection_timeout_s = (unsigned)timeout;
    cfg->header_timeout_s = cfg->body_timeout_s = timeout;
    INT_KEY("header_timeout", cfg->header_timeout_s, 1, 3600)
    INT_KEY("body_timeout", cfg->body_timeout_s, 1, 3600)
    cfg->send_timeout_s = 120;
    INT_KEY("send_timeout", cfg->send_timeout_s, 1, 86400)
    cfg->inflight_mb = LMXD_INFLIGHT_MB_DEFAULT;
    INT_KEY("inflight_mb", cfg->inflight_mb, 0, LMXD_CACHE_MB_MAX)
    cfg->per_address_limit = -1;
    INT_KEY("per_address_limit", cfg->per_address_limit, 0, 65536)
    cfg->verify_wait_s = 10;
    INT_KEY("verify_wait", cfg->verify_wait_s, 0, 3600)
    cfg->plan_table_grace_s = 7 * 86400;
    INT_KEY("plan_table_grace", cfg->plan_table_grace_s, 0, 365 * 86400)
#undef INT_KEY
    if ((v = json_object_get(root, "verify"))) {
        const char *m = json_string_value(v);
        if (!m || (strcmp(m, "foreground") != 0 && strcmp(m, "background") != 0)) {
            rc = lmx__err(err, LMX_EINVAL, "%s: verify: must be \"foreground\" or \"background\"", path);
            goto out;
        }
        cfg->verify_background = strcmp(m, "background") == 0;
    }
    if ((v = json_object_get(root, "access_log"))) {
        if (!json_is_boolean(v)) {
            rc = lmx__err(err, LMX_EINVAL, "%s: access_log: must be true or false", path);
            goto out;
        }
        cfg->access_log = json_is_true(v);
    }
    if ((v = json_object_get(root, "auth")) && json_is_string(v) && strcmp(json_string_value(v), "none") == 0) {
        cfg->auth_none = 1; /* explicit: what a reload needs to turn auth off */
    } else if (v) {
        if (!json_is_object(v)) {
            rc = lmx__err(err, LMX_EINVAL,
                          "%s: auth: must be an object {\"read\": [...], \"admin\": [...]} or \"none\"", path);
            goto out;
        }
        json_t *role_v;
        json_object_foreach(v, key, role_v)
        {
            if (strcmp(key, "read") != 0 && strcmp(key, "admin") != 0) {
                rc = lmx__err(err, LMX_EINVAL, "%s: auth.%s: unknown role (read, admin)", path, key);
                goto out;
            }
        }
        if ((rc = parse_hashes(path, json_object_get(v, "read"), "read", cfg->read_hashes, &cfg->n_read, err)) ||
            (rc = parse_hashes(path, json_object_get(v, "admin"), "admin", cfg->admin_hashes, &cfg->n_admin, err)))
            goto out;
        cfg->has_auth = 1;
        cfg->exposed = (mode & 077) != 0;
    }
    if (!(v = json_object_get(root, "plans"))) {
        rc = lmx__err(err, LMX_EINVAL, "%s: plans: missing (at least one plan is needed)", path);
        goto out;
    }
    if ((rc = lmxd_config_parse_plans(v, &cfg->plans, &cfg->n_plans, err)) != LMX_OK) {
        lmx__err_prefix(err, "%s: ", path);
        goto out;
    }
out:
    json_decref(root);
    if (rc != LMX_OK)
        lmxd_config_free(cfg);
    return rc;
}

void lmxd_config_free(lmxd_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->listen);
    free(cfg->index_dir);
    free(cfg->state_dir);
    lmxd_plans_free(cfg->plans, cfg->n_plans);
    memset(cfg, 0, sizeof *cfg);
}
