/* server/lmxd_config.c: `longmixd serve` configuration; errors name the file and the key. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "lmx_test.h"
#include "lmx_util.h"
#include "lmxd_config.h"

static char dir[256], path[512];

static int load_text(const char *text, lmxd_config *cfg, lmx_error *err)
{
    lmx_test_write(path, text, strlen(text));
    lmx__err_clear(err);
    return lmxd_config_load(path, cfg, err);
}

/* Expects LMX_EINVAL whose message names the config file and contains `what`. */
static void expect_error(const char *text, const char *what)
{
    lmxd_config cfg;
    lmx_error err = {0};
    int rc = load_text(text, &cfg, &err);
    if (rc != LMX_EINVAL || !strstr(err.message, path) || !strstr(err.message, what)) {
        fprintf(stderr, "config %s\n  gave %d '%s', want LMX_EINVAL naming %s and '%s'\n", text, rc, err.message, path,
                what);
        lmx_test_failures++;
    }
    /* the config is left empty on failure */
    CHECK(cfg.plans == NULL && cfg.n_plans == 0 && cfg.listen == NULL && cfg.index_dir == NULL);
}

static const char *find_plan(const lmxd_config *cfg, const char *name, const lmx_plan_spec **spec)
{
    for (size_t i = 0; i < cfg->n_plans; i++)
        if (strcmp(cfg->plans[i].name, name) == 0) {
            *spec = &cfg->plans[i].spec;
            return cfg->plans[i].name;
        }
    *spec = NULL;
    return NULL;
}

static void test_contract_example(void)
{
    uint8_t h[32];
    char hex[65], cfgtext[4096];
    lmxd_token_hash("reader-token", h);
    lmx__hex(h, 32, hex);
    snprintf(cfgtext, sizeof cfgtext,
             "{\n"
             "  \"listen\": \"127.0.0.1:8470\",\n"
             "  \"index\": \"/var/lib/longmix/index\",\n"
             "  \"threads\": 2,\n"
             "  \"auth\": {\"read\": [\"blake2b-256:%s\"], \"admin\": [\"blake2b-256:%s\"]},\n"
             "  \"plans\": {\n"
             "    \"per-source\": {\"strategy\": \"per_source\", \"seq_len\": 131072, \"global_batch\": 32, \"seed\": 1,\n"
             "                   \"long_threshold\": 4096, \"short_keep\": 0.1, \"bos\": true, \"eos\": false},\n"
             "    \"books\":      {\"strategy\": \"per_source\", \"domain_weights\": {\"RedPajamaBook\": 0.6}, \"short_keep\": 0.1},\n"
             "    \"global\":     {\"strategy\": \"global\", \"short_keep\": 0.1},\n"
             "    \"original\":   {\"strategy\": \"original\"},\n"
             "    \"cut4k\":      {\"strategy\": \"cut\", \"cut_len\": 4096}\n"
             "  }\n"
             "}\n",
             hex, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
    lmxd_config cfg;
    lmx_error err = {0};
    int rc = load_text(cfgtext, &cfg, &err);
    CHECK_EQ_INT(rc, LMX_OK);
    if (rc) {
        fprintf(stderr, "%s\n", err.message);
        return;
    }
    CHECK_EQ_STR(cfg.listen, "127.0.0.1:8470");
    CHECK_EQ_STR(cfg.index_dir, "/var/lib/longmix/index");
    CHECK(cfg.state_dir == NULL);
    CHECK_EQ_INT(cfg.threads, 2);
    CHECK_EQ_INT(cfg.has_auth, 1);
    CHECK_EQ_INT(cfg.n_read, 1);
    CHECK_EQ_INT(cfg.n_admin, 1);
    CHECK(memcmp(cfg.read_hashes[0], h, 32) == 0);
    /* the admin hash is BLAKE2b-256 of the empty token */
    uint8_t empty[32];
    lmxd_token_hash("", empty);
    CHECK(memcmp(cfg.admin_hashes[0], empty, 32) == 0);
    CHECK_EQ_U64(cfg.n_plans, 5);
    const lmx_plan_spec *s;
    CHECK(find_plan(&cfg, "per-source", &s) != NULL);
    if (s) {
        CHECK_EQ_INT(s->strategy, LMX_PER_SOURCE);
        CHECK_EQ_U64(s->seq_len, 131072);
        CHECK_EQ_U64(s->global_batch, 32);
        CHECK_EQ_U64(s->seed, 1);
        CHECK(fabs(s->short_keep - 0.1) < 1e-12);
        CHECK(s->bos == 1 && s->eos == 0);
    }
    CHECK(find_plan(&cfg, "books", &s) != NULL);
    if (s) {
        CHECK_EQ_U64(s->n_weights, 1);
        CHECK_EQ_STR(s->weight_names[0], "RedPajamaBook");
        CHECK(s->weights[0] == 0.6);
    }
    CHECK(find_plan(&cfg, "global", &s) != NULL);
    if (s)
        CHECK_EQ_INT(s->strategy, LMX_GLOBAL);
    CHECK(find_plan(&cfg, "original", &s) != NULL);
    if (s) {
        CHECK_EQ_INT(s->strategy, LMX_ORIGINAL);
        CHECK_EQ_U64(s->seq_len, 131072); /* defaults */
        CHECK_EQ_U64(s->global_batch, 32);
        CHECK_EQ_U64(s->seed, 0);
    }
    CHECK(find_plan(&cfg, "cut4k", &s) != NULL);
    if (s) {
        CHECK_EQ_INT(s->strategy, LMX_CUT);
        CHECK_EQ_U64(s->cut_len, 4096);
    }
    lmxd_config_free(&cfg);
    CHECK(cfg.plans == NULL && cfg.listen == NULL);
    lmxd_config_free(NULL);
}

static void test_defaults(void)
{
    lmxd_config cfg;
    lmx_error err = {0};
    CHECK_EQ_INT(load_text("{\"plans\": {\"o\": {\"strategy\": \"original\"}}}", &cfg, &err), LMX_OK);
    CHECK(cfg.listen == NULL && cfg.index_dir == NULL); /* filled from the command line */
    CHECK_EQ_INT(cfg.threads, 2);
    CHECK_EQ_INT(cfg.zstd_level, 1);
    CHECK_EQ_U64(cfg.connection_limit, 1024);
    CHECK_EQ_U64(cfg.connection_timeout_s, 30);
    CHECK_EQ_INT(cfg.header_timeout_s, 30);
    CHECK_EQ_INT(cfg.body_timeout_s, 30);
    CHECK_EQ_INT(cfg.per_address_limit, -1);
    CHECK_EQ_INT(cfg.send_timeout_s, 120);
    CHECK_EQ_INT(cfg.inflight_mb, 256);
    CHECK_EQ_INT(cfg.verify_background, 0); /* verify: foreground */
    CHECK_EQ_INT(cfg.verify_wait_s, 10);
    CHECK_EQ_INT(cfg.plan_table_grace_s, 7 * 86400);
    CHECK_EQ_INT(cfg.access_log, 0);
    CHECK_EQ_INT(cfg.has_auth, 0); /* no auth section: no auth */
    CHECK_EQ_U64(cfg.n_plans, 1);
    CHECK_EQ_STR(cfg.plans[0].name, "o");
    lmxd_config_free(&cfg);

    CHECK_EQ_INT(load_text("{\"plans\": {\"o\": {\"strategy\": \"original\"}}, \"threads\": 256, \"zstd_level\": -7,"
                           " \"connection_limit\": 1, \"connection_timeout\": 3600, \"access_log\": true,"
                           " \"state_dir\": \"/tmp/s\", \"auth\": {}}",
                           &cfg, &err),
                 LMX_OK);
    CHECK_EQ_INT(cfg.threads, 256);
    CHECK_EQ_INT(cfg.zstd_level, -7);
    CHECK_EQ_U64(cfg.connection_limit, 1);
    CHECK_EQ_U64(cfg.connection_timeout_s, 3600);
    CHECK_EQ_INT(cfg.access_log, 1);
    CHECK_EQ_STR(cfg.state_dir, "/tmp/s");
    CHECK_EQ_INT(cfg.has_auth, 1); /* an auth section with no tokens: nobody gets in */
    CHECK_EQ_INT(cfg.n_read + cfg.n_admin, 0);
    lmxd_config_free(&cfg);
}

static void test_errors(void)
{
    /* missing file: LMX_EIO naming the file */
    lmxd_config cfg;
    lmx_error err = {0};
    char missing[600];
    snprintf(missing, sizeof missing, "%s/none.json", dir);
    CHECK_EQ_INT(lmxd_config_load(missing, &cfg, &err), LMX_EIO);
    CHECK_CONTAINS(err.message, missing);
    CHECK_CONTAINS(err.message, strerror(ENOENT));

    /* malformed JSON: file:line:column */
    char where[600];
    snprintf(where, sizeof where, "%s:3:", path);
    expect_error("{\n\"threads\": 2,\n\"plans\": {,}\n}", where);
    expect_error("", "invalid JSON");
    expect_error("{\"threads\": 1, \"threads\": 2, \"plans\": {\"o\": {\"strategy\": \"original\"}}}", "threads");
    expect_error("[1]", "JSON object");

    const char *P = "\"plans\": {\"o\": {\"strategy\": \"original\"}}";
    char t[1024];
#define E(extra, what)                                   \
    do {                                                 \
        snprintf(t, sizeof t, "{%s, %s}", P, extra);     \
        expect_error(t, what);                           \
    } while (0)
    E("\"listen_on\": \"x\"", "'listen_on'");
    E("\"listen\": 8470", "listen");
    E("\"listen\": \"\"", "listen");
    E("\"index\": null", "index");
    E("\"state_dir\": []", "state_dir");
    E("\"threads\": 0", "threads");
    E("\"threads\": 257", "threads");
    E("\"threads\": \"2\"", "threads");
    E("\"threads\": 1.5", "threads");
    E("\"zstd_level\": 20", "zstd_level");
    E("\"connection_limit\": 0", "connection_limit");
    E("\"connection_timeout\": 3601", "connection_timeout");
    E("\"header_timeout\": 0", "header_timeout");
    E("\"body_timeout\": 3601", "body_timeout");
    E("\"per_address_limit\": -1", "per_address_limit");
    E("\"send_timeout\": 0", "send_timeout");
    E("\"inflight_mb\": -1", "inflight_mb");
    E("\"verify\": \"later\"", "verify");
    E("\"verify\": true", "verify");
    E("\"verify_wait\": 3601", "verify_wait");
    E("\"plan_table_grace\": -1", "plan_table_grace");
    E("\"access_log\": 1", "access_log");
    E("\"auth\": []", "auth");
    E("\"auth\": {\"write\": []}", "auth.write");
    E("\"auth\": {\"read\": \"blake2b-256:00\"}", "auth.read");
    E("\"auth\": {\"read\": [\"secret\"]}", "auth.read[0]");
    E("\"auth\": {\"admin\": [\"blake2b-256:0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8\", 5]}",
      "auth.admin[1]");
    /* 63 and 65 hex digits, bad digit, other algorithm */
    E("\"auth\": {\"read\": [\"blake2b-256:0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a\"]}",
      "auth.read[0]");
    E("\"auth\": {\"read\": [\"blake2b-256:0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a80\"]}",
      "auth.read[0]");
    E("\"auth\": {\"read\": [\"blake2b-256:0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3aZ\"]}",
      "auth.read[0]");
    E("\"auth\": {\"read\": [\"sha256:0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8\"]}",
      "auth.read[0]");
#undef E
    /* too many tokens */
    lmx_buf b = {0};
    lmx__buf_printf(&b, "{%s, \"auth\": {\"read\": [", P);
    for (int i = 0; i <= LMXD_MAX_TOKENS; i++)
        lmx__buf_printf(&b, "%s\"blake2b-256:0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8\"",
                        i ? ", " : "");
    lmx__buf_printf(&b, "]}}");
    expect_error((const char *)b.data, "auth.read");
    lmx__buf_free(&b);

    /* plans */
    expect_error("{\"threads\": 2}", "plans");
    expect_error("{\"plans\": {}}", "plans");
    expect_error("{\"plans\": []}", "plans");
    expect_error("{\"plans\": {\"bad name\": {\"strategy\": \"original\"}}}", "plans.bad name");
    expect_error("{\"plans\": {\"a/b\": {\"strategy\": \"original\"}}}", "plans.a/b");
    expect_error("{\"plans\": {\"..\": {\"strategy\": \"original\"}}}", "plans..."); /* "plans." + ".." */
    expect_error("{\"plans\": {\".\": {\"strategy\": \"original\"}}}", "plans..:");
    expect_error("{\"plans\": {\"\": {\"strategy\": \"original\"}}}", "plans.:");
    expect_error("{\"plans\": {\"p\": {\"strategy\": \"original\", \"seq_len\": -5}}}", "plans.p.seq_len");
    expect_error("{\"plans\": {\"p\": {\"strategy\": \"nope\"}}}", "plans.p.strategy");
    expect_error("{\"plans\": {\"ok\": {\"strategy\": \"original\"}, \"p\": {\"strategy\": \"per_source\", "
                 "\"short_keep\": 2}}}",
                 "plans.p.short_keep");
    expect_error("{\"plans\": {\"p\": {\"strategy\": \"original\", \"colour\": 1}}}", "plans.p.colour");
    char name65[80], txt[300];
    memset(name65, 'n', 65);
    name65[65] = '\0';
    snprintf(txt, sizeof txt, "{\"plans\": {\"%s\": {\"strategy\": \"original\"}}}", name65);
    expect_error(txt, name65);
}

static void test_parse_plans(void)
{
    json_error_t je;
    json_t *o = json_loads("{\"a\": {\"strategy\": \"cut\", \"cut_len\": 64}, \".x-1_B\": {\"strategy\": \"global\"}}", 0,
                           &je);
    lmxd_plan_cfg *plans = NULL;
    size_t n = 0;
    lmx_error err = {0};
    CHECK_EQ_INT(lmxd_config_parse_plans(o, &plans, &n, &err), LMX_OK);
    CHECK_EQ_U64(n, 2);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(plans[i].name, "a") == 0) {
            CHECK_EQ_U64(plans[i].spec.cut_len, 64);
            seen |= 1;
        } else if (strcmp(plans[i].name, ".x-1_B") == 0) {
            CHECK_EQ_INT(plans[i].spec.strategy, LMX_GLOBAL);
            seen |= 2;
        }
    }
    CHECK_EQ_INT(seen, 3);
    lmxd_plans_free(plans, n);
    json_decref(o);
    o = json_loads("{\"a\": {\"strategy\": \"cut\"}, \"b\": {\"strategy\": \"cut\", \"seed\": \"x\"}}", 0, &je);
    plans = (lmxd_plan_cfg *)1;
    CHECK_EQ_INT(lmxd_config_parse_plans(o, &plans, &n, &err), LMX_EINVAL);
    CHECK(plans == NULL && n == 0);
    CHECK_CONTAINS(err.message, "plans.b.seed");
    json_decref(o);
    CHECK_EQ_INT(lmxd_config_parse_plans(NULL, &plans, &n, &err), LMX_EINVAL);
    lmxd_plans_free(NULL, 0);
}

static void test_token_hash(void)
{
    uint8_t h[32];
    char hex[65];
    lmxd_token_hash("abc", h);
    lmx__hex(h, 32, hex);
    CHECK_EQ_STR(hex, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
    lmxd_token_hash("", h);
    lmx__hex(h, 32, hex);
    CHECK_EQ_STR(hex, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
}

int main(void)
{
    lmx_test_tmpdir("config", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/config.json", dir);
    test_token_hash();
    test_contract_example();
    test_defaults();
    test_errors();
    test_parse_plans();
    CHECK_EQ_INT(lmx_test_rmtree(dir), 0);
    TEST_MAIN_END();
}
