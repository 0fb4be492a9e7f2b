/* Plan specs: parsing a plan object of the config with its defaults (proto/PLANS.md), and the
 * resolved spec as canonical JSON (hashed into the plan id). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_plan_internal.h"

static const char *const strategy_names[] = {"original", "cut", "per_source", "global"};

static int get_uint(const json_t *obj, const char *plan, const char *key, uint64_t min, uint64_t max,
                    uint64_t *out, lmx_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return LMX_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min ||
        (uint64_t)json_integer_value(v) > max)
        return lmx__err(err, LMX_EINVAL, "plans.%s.%s: must be an integer in [%llu, %llu]", plan, key,
                        (unsigned long long)min, (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return LMX_OK;
}

static int get_bool(const json_t *obj, const char *plan, const char *key, int *out, lmx_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return LMX_OK;
    if (!json_is_boolean(v))
        return lmx__err(err, LMX_EINVAL, "plans.%s.%s: must be true or false", plan, key);
    *out = json_is_true(v);
    return LMX_OK;
}

static int check_keys(const char *name, const json_t *obj, lmx_error *err)
{
    static const char *const known[] = {"strategy", "seq_len", "global_batch", "seed", "long_threshold",
                                        "short_keep", "bos", "eos", "bos_token", "eos_token",
                                        "cut_len", "total_tokens", "domain_weights", "cu_seqlens",
                                        "cross_doc_labels", "ignore_index", "pad_multiple", "pad_token", NULL};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++)
            ok = strcmp(known[i], key) == 0;
        if (!ok)
            return lmx__err(err, LMX_EINVAL, "plans.%s.%s: unknown key", name, key);
    }
    return LMX_OK;
}

static int parse_strategy(const char *name, const json_t *obj, lmx_plan_spec *s, lmx_error *err)
{
    json_t *st = json_object_get(obj, "strategy");
    if (!json_is_string(st))
        return lmx__err(err, LMX_EINVAL, "plans.%s.strategy: missing (original, cut, per_source or global)", name);
    s->strategy = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(json_string_value(st), strategy_names[i]) == 0)
            s->strategy = i;
    if (s->strategy < 0)
        return lmx__err(err, LMX_EINVAL, "plans.%s.strategy: unknown strategy '%s' (original, cut, per_source, global)",
                        name, json_string_value(st));
    if (s->strategy == LMX_PER_SOURCE || s->strategy == LMX_GLOBAL)
        s->short_keep = 0.1;
    return LMX_OK;
}

static int parse_numbers(const char *name, const json_t *obj, lmx_plan_spec *s, lmx_error *err)
{
    uint64_t u = s->seq_len;
    int rc;
    if ((rc = get_uint(obj, name, "seq_len", 2, LMX_MAX_SEQ_LEN, &u, err)))
        return rc;
    s->seq_len = (uint32_t)u;
    u = s->global_batch;
    if ((rc = get_uint(obj, name, "global_batch", 1, LMX_MAX_SEQS_PER_BATCH, &u, err)))
        return rc;
    s->global_batch = (uint32_t)u;
    if ((rc = get_uint(obj, name, "seed", 0, UINT64_MAX >> 1, &s->seed, err)) ||
        (rc = get_uint(obj, name, "long_threshold", 1, UINT32_MAX, &s->long_threshold, err)) ||
        (rc = get_uint(obj, name, "cut_len", 1, UINT32_MAX, &s->cut_len, err)) ||
        (rc = get_uint(obj, name, "total_tokens", 1, UINT64_MAX >> 2, &s->total_tokens, err)) ||
        (rc = get_bool(obj, name, "bos", &s->bos, err)) || (rc = get_bool(obj, name, "eos", &s->eos, err)) ||
        (rc = get_bool(obj, name, "cu_seqlens", &s->cu_seqlens, err)) ||
        (rc = get_bool(obj, name, "cross_doc_labels", &s->cross_doc_labels, err)))
        return rc;
    json_t *ii = json_object_get(obj, "ignore_index");
    if (ii) {
        if (!json_is_integer(ii) || json_integer_value(ii) >= 0 || json_integer_value(ii) < INT32_MIN)
            return lmx__err(err, LMX_EINVAL, "plans.%s.ignore_index: must be a negative integer >= %d", name,
                            INT32_MIN);
        s->ignore_index = (int32_t)json_integer_value(ii);
    }
    json_t *k = json_object_get(obj, "short_keep");
    if (k) {
        if (s->strategy != LMX_PER_SOURCE && s->strategy != LMX_GLOBAL)
            return lmx__err(err, LMX_EINVAL, "plans.%s.short_keep: only per_source and global drop short documents", name);
        if (!json_is_number(k) || !(json_number_value(k) > 0.0 && json_number_value(k) <= 1.0))
            return lmx__err(err, LMX_EINVAL, "plans.%s.short_keep: must be a number in (0, 1]", name);
        s->short_keep = json_number_value(k);
    }
    if (json_object_get(obj, "cut_len") && s->strategy != LMX_CUT)
        return lmx__err(err, LMX_EINVAL, "plans.%s.cut_len: only for strategy cut", name);
    return LMX_OK;
}

/* pad_multiple M > 1: every item padded to a multiple of M (Transformer Engine's THD layout with
 * CP needs every document a multiple of 2*cp_size). Sequences must hold whole M-blocks, and the
 * padded segments only make sense with per-document boundaries and masked cross-document labels. */
static int parse_padding(const char *name, const json_t *obj, lmx_plan_spec *s, lmx_error *err)
{
    uint64_t m = 1;
    int rc = get_uint(obj, name, "pad_multiple", 1, LMX_MAX_SEQ_LEN, &m, err);
    if (rc)
        return rc;
    s->pad_multiple = (uint32_t)m;
    if (m > 1 && s->seq_len % m != 0)
        return lmx__err(err, LMX_EINVAL, "plans.%s.pad_multiple: %llu does not divide seq_len %u", name,
                        (unsigned long long)m, s->seq_len);
    if (m > 1 && !s->cu_seqlens)
        return lmx__err(err, LMX_EINVAL, "plans.%s.pad_multiple: needs cu_seqlens true (padding is per document)", name);
    if (m > 1 && s->cross_doc_labels)
        return lmx__err(err, LMX_EINVAL,
                        "plans.%s.pad_multiple: conflicts with cross_doc_labels true (a document's last target would be a pad)",
                        name);
    json_t *v = json_object_get(obj, "pad_token");
    if (!v)
        return LMX_OK;
    if (m == 1)
        return lmx__err(err, LMX_EINVAL, "plans.%s.pad_token: only with pad_multiple > 1", name);
    if (!json_is_string(v) || !json_string_length(v))
        return lmx__err(err, LMX_EINVAL, "plans.%s.pad_token: must be a non-empty string (a token of the tokenizer)", name);
    if (!(s->pad_token = strdup(json_string_value(v))))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    return LMX_OK;
}

static int parse_weights(const char *name, const json_t *obj, lmx_plan_spec *s, lmx_error *err)
{
    json_t *w = json_object_get(obj, "domain_weights");
    if (!w)
        return LMX_OK;
    if (s->strategy != LMX_PER_SOURCE)
        return lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights: only for strategy per_source", name);
    if (!json_is_object(w) || json_object_size(w) == 0)
        return lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights: must be a non-empty object of domain -> weight", name);
    if (json_object_size(w) > LMX_MAX_WEIGHTS)
        return lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights: %zu domains, at most %d are allowed", name,
                        json_object_size(w), LMX_MAX_WEIGHTS);
    double sum = 0;
    const char *key;
    json_t *v;
    json_object_foreach(w, key, v)
    {
        if (!json_is_number(v) || !(json_number_value(v) > 0.0) || !isfinite(json_number_value(v)))
            return lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights.%s: must be a number > 0", name, key);
        s->weight_names[s->n_weights] = strdup(key);
        s->weights[s->n_weights++] = json_number_value(v);
        sum += json_number_value(v);
    }
    if (!(sum > 0))
        return lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights: all zero", name);
    return LMX_OK;
}

int lmx__plan_spec_parse(const char *name, const json_t *obj, lmx_plan_spec *s, lmx_error *err)
{
    memset(s, 0, sizeof *s);
    s->seq_len = 131072;
    s->global_batch = 32;
    s->long_threshold = LMX_LONG_THRESHOLD;
    s->short_keep = 1.0;
    s->bos = -1; /* -1: the tokenizer's convention, resolved when the plan binds its index */
    s->eos = -1;
    s->cut_len = 4096;
    s->cu_seqlens = 1;
    s->ignore_index = -100;
    s->pad_multiple = 1;
    if (!json_is_object(obj))
        return lmx__err(err, LMX_EINVAL, "plans.%s: must be an object", name);
    int rc = check_keys(name, obj, err);
    rc = rc ? rc : parse_strategy(name, obj, s, err);
    rc = rc ? rc : parse_numbers(name, obj, s, err);
    rc = rc ? rc : parse_weights(name, obj, s, err);
    rc = rc ? rc : parse_padding(name, obj, s, err);
    for (int k = 0; k < 2 && rc == LMX_OK; k++) {
        /* a separator named by its string: the plan uses that token (and inserts it) */
        const char *key = k ? "eos_token" : "bos_token";
        json_t *v = json_object_get(obj, key);
        if (!v)
            continue;
        int *on = k ? &s->eos : &s->bos;
        if (!json_is_string(v) || !json_string_length(v))
            rc = lmx__err(err, LMX_EINVAL, "plans.%s.%s: must be a non-empty string (a token of the tokenizer)", name, key);
        else if (*on == 0)
            rc = lmx__err(err, LMX_EINVAL, "plans.%s.%s: conflicts with \"%s\": false", name, key, k ? "eos" : "bos");
        else if (!(s->sep_token[k] = strdup(json_string_value(v))))
            rc = lmx__err(err, LMX_ENOMEM, "out of memory");
        else
            *on = 1;
    }
    if (rc == LMX_OK && s->global_batch == 0)
        rc = lmx__err(err, LMX_EINVAL, "plans.%s.global_batch: must be >= 1", name);
    return rc;
}

void lmx__plan_spec_free(lmx_plan_spec *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->n_weights; i++)
        free(s->weight_names[i]);
    s->n_weights = 0;
    for (int k = 0; k < 2; k++) {
        free(s->sep_token[k]);
        s->sep_token[k] = NULL;
    }
    free(s->pad_token);
    s->pad_token = NULL;
}

json_t *lmx__plan_spec_json(const lmx_plan_spec *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "strategy", json_string(strategy_names[s->strategy]));
    json_object_set_new(o, "seq_len", json_integer(s->seq_len));
    json_object_set_new(o, "global_batch", json_integer(s->global_batch));
    json_object_set_new(o, "seed", json_integer((json_int_t)s->seed));
    json_object_set_new(o, "long_threshold", json_integer((json_int_t)s->long_threshold));
    json_object_set_new(o, "short_keep", json_real(s->short_keep));
    /* resolved specs (lmx__plan_spec of a plan) always have 0/1; null = not yet bound */
    json_object_set_new(o, "bos", s->bos < 0 ? json_null() : json_boolean(s->bos));
    json_object_set_new(o, "eos", s->eos < 0 ? json_null() : json_boolean(s->eos));
    /* only when named: plans without them keep their ids */
    for (int k = 0; k < 2; k++)
        if (s->sep_token[k])
            json_object_set_new(o, k ? "eos_token" : "bos_token", json_string(s->sep_token[k]));
    if (s->strategy == LMX_CUT)
        json_object_set_new(o, "cut_len", json_integer((json_int_t)s->cut_len));
    if (s->total_tokens)
        json_object_set_new(o, "total_tokens", json_integer((json_int_t)s->total_tokens));
    json_object_set_new(o, "cu_seqlens", json_boolean(s->cu_seqlens));
    /* Label keys only when not the default, so plan ids from before they existed stay the same. */
    if (s->cross_doc_labels)
        json_object_set_new(o, "cross_doc_labels", json_true());
    if (s->ignore_index != -100)
        json_object_set_new(o, "ignore_index", json_integer(s->ignore_index));
    if (s->pad_multiple > 1) /* padded plans only: unpadded plan ids stay the same */
        json_object_set_new(o, "pad_multiple", json_integer(s->pad_multiple));
    if (s->pad_token)
        json_object_set_new(o, "pad_token", json_string(s->pad_token));
    if (s->n_weights) {
        json_t *w = json_object();
        for (uint32_t i = 0; i < s->n_weights; i++)
            json_object_set_new(w, s->weight_names[i], json_real(s->weights[i]));
        json_object_set_new(o, "domain_weights", w);
    }
    return o;
}

const char *lmx__plan_strategy_name(int strategy) { return strategy_names[strategy]; }
