/* libFuzzer target: the server config parser (server/lmxd_config.c) and the plan spec parser
 * (common/plan/lmx_plan_spec.c lmx__plan_spec_parse) on arbitrary JSON bytes.
 * - the bytes as a config file through lmxd_config_load (the path longmixd serve takes);
 * - the parsed JSON's "plans" through lmxd_config_parse_plans (also used for POST /v1/plans),
 *   each resolved spec rendered back with lmx__plan_spec_json;
 * - the JSON itself, and each member of it, as one plan object through lmx__plan_spec_parse. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "lmx_plan.h"
#include "lmx_proto.h"
#include "lmxd_config.h"

static void check_spec(const lmx_plan_spec *s)
{
    FUZZ_CHECK(s->strategy >= LMX_ORIGINAL && s->strategy <= LMX_GLOBAL);
    FUZZ_CHECK(s->seq_len >= 2 && s->seq_len <= LMX_MAX_SEQ_LEN);
    FUZZ_CHECK(s->global_batch >= 1 && s->global_batch <= LMX_MAX_SEQS_PER_BATCH);
    FUZZ_CHECK(s->short_keep > 0.0 && s->short_keep <= 1.0);
    FUZZ_CHECK(s->n_weights <= LMX_MAX_WEIGHTS);
    for (uint32_t i = 0; i < s->n_weights; i++)
        FUZZ_CHECK(s->weight_names[i] && s->weights[i] > 0.0);
    json_t *j = lmx__plan_spec_json(s);
    FUZZ_CHECK(j);
    char *txt = json_dumps(j, JSON_COMPACT);
    FUZZ_CHECK(txt);
    free(txt);
    json_decref(j);
}

static void spec_parse(const char *name, const json_t *obj)
{
    lmx_plan_spec spec;
    lmx_error err = {0};
    if (lmx__plan_spec_parse(name, obj, &spec, &err) == LMX_OK)
        check_spec(&spec);
    else
        FUZZ_CHECK(err.code != LMX_OK && err.message[0]);
    lmx__plan_spec_free(&spec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* 1. As a config file. */
    static char path[300];
    if (!path[0])
        snprintf(path, sizeof path, "%s/config.json", fuzz_scratch_dir("config"));
    if (fuzz_write_file(path, data, size) == 0) {
        lmxd_config cfg;
        lmx_error err = {0};
        if (lmxd_config_load(path, &cfg, &err) == LMX_OK) {
            FUZZ_CHECK(cfg.n_plans >= 1 && cfg.plans);
            FUZZ_CHECK(cfg.threads >= 1 && cfg.threads <= 256);
            FUZZ_CHECK(cfg.n_read <= LMXD_MAX_TOKENS && cfg.n_admin <= LMXD_MAX_TOKENS);
            for (size_t i = 0; i < cfg.n_plans; i++) {
                FUZZ_CHECK(cfg.plans[i].name && strlen(cfg.plans[i].name) <= 64);
                check_spec(&cfg.plans[i].spec);
            }
            lmxd_config_free(&cfg);
        } else {
            FUZZ_CHECK(err.code != LMX_OK && err.message[0]);
        }
    }

    /* 2. The parsed JSON through the plan parsers. */
    json_error_t je;
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return 0;
    const json_t *plans = json_is_object(root) ? json_object_get(root, "plans") : NULL;
    if (plans) {
        lmxd_plan_cfg *v = NULL;
        size_t n = 0;
        lmx_error err = {0};
        if (lmxd_config_parse_plans(plans, &v, &n, &err) == LMX_OK) {
            FUZZ_CHECK(n == json_object_size(plans));
            for (size_t i = 0; i < n; i++)
                check_spec(&v[i].spec);
        } else {
            FUZZ_CHECK(v == NULL && n == 0);
        }
        lmxd_plans_free(v, n);
    }
    spec_parse("fuzz", root);
    if (json_is_object(root)) {
        const char *key;
        json_t *val;
        json_object_foreach(root, key, val) spec_parse(key, val);
    }
    json_decref(root);
    return 0;
}
