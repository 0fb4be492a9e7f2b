/* Binding a spec to an index (proto/PLANS.md): each domain's items (long class first), keep
 * rates, fixed-point weights and the plan id. */
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_plan_internal.h"
#include "lmx_tokenizer.h"

/* The build's stop flag is checked every this many documents. */
#define STOP_EVERY ((uint64_t)1 << 20)

static int stopped(const lmx_plan *p, const atomic_int *stop, lmx_error *err)
{
    if (stop && atomic_load(stop))
        return lmx__err(err, LMX_ETIMEOUT, "plan %s: build stopped", p->name);
    return LMX_OK;
}

/* Items per domain and long-class items per domain (count[0, nd), nlong[0, nd)). */
static int count_items(lmx_plan *p, uint64_t *count, uint64_t *nlong, const atomic_int *stop, lmx_error *err)
{
    const lmx_plan_spec *spec = &p->spec;
    uint64_t n_docs = lmx__index_n_docs(p->ix);
    for (uint64_t id = 0; id < n_docs; id++) {
        if (id % STOP_EVERY == 0 && stopped(p, stop, err))
            return err ? err->code : LMX_ETIMEOUT;
        uint64_t len;
        uint32_t dm;
        lmx__index_doc_meta(p->ix, id, &len, &dm);
        if (len == 0)
            continue;
        if (spec->strategy != LMX_CUT && len > UINT32_MAX)
            return lmx__err(err, LMX_EUNSUPPORTED, "plan %s: document %llu has %llu tokens (limit 2^32)", p->name,
                            (unsigned long long)id, (unsigned long long)len);
        uint64_t k = spec->strategy == LMX_CUT ? (len + spec->cut_len - 1) / spec->cut_len : 1;
        count[dm] += k;
        if (len >= spec->long_threshold)
            nlong[dm] += k;
    }
    return LMX_OK;
}

/* Places document id's items (pieces for `cut`) into its domain; nl counts long-class items
 * placed so far per domain. */
static void place_items(lmx_plan *p, uint64_t id, uint64_t *nl)
{
    const lmx_plan_spec *spec = &p->spec;
    uint64_t len;
    uint32_t dm;
    lmx__index_doc_meta(p->ix, id, &len, &dm);
    pdom *d = &p->doms[dm];
    int cls_long = len >= spec->long_threshold;
    uint64_t step = spec->strategy == LMX_CUT ? spec->cut_len : len;
    for (uint64_t off = 0, k = 0; off < len; off += step, k++) {
        item *it = &d->items[cls_long ? nl[dm]++ : d->n_long + (d->n - nl[dm])];
        d->n++;
        it->doc = id;
        it->piece = (uint32_t)k;
        it->len = (uint32_t)(len - off < step ? len - off : step);
        if (cls_long)
            d->cls_long_slen += slen(p, it);
        if (is_long(p, it)) {
            d->long_slen += slen(p, it);
            d->long_tok += it->len;
        } else {
            d->short_slen += slen(p, it);
            d->short_tok += it->len;
        }
    }
}

/* Items per domain, in document order: those of long documents first (the long class, see
 * the cursor in lmx_plan_stream.c), then the others. With the index's table folder they live
 * in a mapped file (lmx_plan_table.c): mapped as they are when a valid one exists, else built
 * straight into a new one; on the heap when there is no folder or it cannot be written. */
static int build_items(lmx_plan *p, uint32_t nd, const atomic_int *stop, lmx_error *err)
{
    const char *dir = lmx__index_table_dir(p->ix);
    if (dir && lmx__plan_table_load(p, dir, nd))
        return LMX_OK;
    uint64_t *count = calloc(2 * (nd + 1), sizeof *count), *nlong = count ? count + nd + 1 : NULL;
    if (!count)
        return lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", p->name);
    int rc = count_items(p, count, nlong, stop, err);
    int mapped = rc == LMX_OK && dir && lmx__plan_table_create(p, dir, nd, count, NULL) == LMX_OK;
    if (dir && rc == LMX_OK && !mapped)
        lmx__plan_table_drop(p);
    for (uint32_t d = 0; rc == LMX_OK && d < nd; d++) {
        p->doms[d].ixdom = d;
        p->doms[d].n_long = nlong[d];
        if (mapped)
            continue;
        p->doms[d].items = count[d] ? malloc(count[d] * sizeof(item)) : NULL;
        if (count[d] && !p->doms[d].items)
            rc = lmx__err(err, LMX_ENOMEM, "plan %s: out of memory for %llu items", p->name,
                          (unsigned long long)count[d]);
    }
    if (rc == LMX_OK) {
        uint64_t *nl = count; /* reused: long-class items placed so far per domain */
        memset(nl, 0, (nd + 1) * sizeof *nl);
        uint64_t n_docs = lmx__index_n_docs(p->ix);
        for (uint64_t id = 0; rc == LMX_OK && id < n_docs; id++) {
            place_items(p, id, nl);
            if (id % STOP_EVERY == STOP_EVERY - 1)
                rc = stopped(p, stop, err);
        }
        if (rc == LMX_OK && mapped) /* not persisted: only costs a rebuild next start */
            p->table_built = lmx__plan_table_finish(p, dir, nd, NULL) == LMX_OK;
    }
    free(count);
    return rc;
}

/* Raw (unnormalized) weight of each domain by strategy, into raw[0, nd); *sum their total. */
static void raw_weights(lmx_plan *p, uint32_t nd, uint64_t K, double *raw, double *sum)
{
    const lmx_plan_spec *spec = &p->spec;
    double natural_total = 0;
    for (uint32_t d = 0; d < nd; d++)
        natural_total += (double)(p->doms[d].long_tok + p->doms[d].short_tok);
    *sum = 0;
    for (uint32_t d = 0; d < nd; d++) {
        pdom *pd = &p->doms[d];
        pd->K = K;
        pd->cls_short_kept = mul_add_shr(pd->long_slen + pd->short_slen - pd->cls_long_slen, K, 0, 32, NULL);
        if (pd->n == 0)
            continue;
        switch (spec->strategy) {
        case LMX_PER_SOURCE:
            raw[d] = (double)(pd->long_tok + pd->short_tok) / natural_total;
            for (uint32_t i = 0; i < spec->n_weights; i++)
                if (strcmp(spec->weight_names[i], lmx__index_domain_name(p->ix, d)) == 0)
                    raw[d] = spec->weights[i];
            break;
        case LMX_GLOBAL:
            raw[d] = (double)pd->long_slen + (double)pd->short_slen * ((double)K / 4294967296.0);
            break;
        default:
            raw[d] = (double)(pd->long_slen + pd->short_slen);
        }
        *sum += raw[d];
    }
}

/* Shares from raw weights, then fixed-point weights summing to exactly 2^40 (remainder to the
 * largest). per_source's shares are of document tokens, but quotas count stream tokens (with
 * the separators): each share is scaled by its domain's stream/document tokens of one epoch,
 * so that domains of short documents (more separators per token) still get their share. */
static void fixed_weights(lmx_plan *p, uint32_t nd, uint64_t K, double *raw, double sum)
{
    double ssum = 0;
    for (uint32_t d = 0; d < nd; d++) {
        const pdom *pd = &p->doms[d];
        p->doms[d].share = raw[d] / sum;
        double ktok = (double)pd->long_tok + (double)pd->short_tok * ((double)K / 4294967296.0);
        double kslen = (double)pd->long_slen + (double)pd->short_slen * ((double)K / 4294967296.0);
        if (p->spec.strategy == LMX_PER_SOURCE && pd->n && ktok > 0)
            raw[d] = p->doms[d].share * (kslen / ktok);
        else
            raw[d] = p->doms[d].share;
        ssum += raw[d];
    }
    uint64_t acc = 0;
    uint32_t largest = 0;
    for (uint32_t d = 0; d < nd; d++) {
        p->doms[d].W = (uint64_t)floor(raw[d] / ssum * (double)WEIGHT_ONE);
        if (p->doms[d].n && p->doms[d].W == 0)
            p->doms[d].W = 1;
        acc += p->doms[d].W;
        if (p->doms[d].W > p->doms[largest].W)
            largest = d;
    }
    p->doms[largest].W += WEIGHT_ONE - acc;
}

/* Keep rates and weights of every domain. */
static int set_weights(lmx_plan *p, uint32_t nd, lmx_error *err)
{
    const lmx_plan_spec *spec = &p->spec;
    double k = (spec->strategy == LMX_PER_SOURCE || spec->strategy == LMX_GLOBAL) ? spec->short_keep : 1.0;
    uint64_t K = (uint64_t)llround(k * 4294967296.0);
    if (K < 1)
        K = 1;
    double *raw = calloc(nd + 1, sizeof *raw), sum = 0;
    if (!raw)
        return lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", p->name);
    raw_weights(p, nd, K, raw, &sum);
    for (uint32_t i = 0; i < spec->n_weights; i++) {
        int d = lmx__index_domain_find(p->ix, spec->weight_names[i]);
        if (p->doms[d].n == 0) {
            free(raw);
            return lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights.%s: the domain has no tokens", p->name,
                            spec->weight_names[i]);
        }
    }
    fixed_weights(p, nd, K, raw, sum);
    free(raw);
    /* W/2^40 < 1/B, without the product W·B (it overflows 64 bits for shares above 1/2^(64-40-26)) */
    uint64_t min_w = (WEIGHT_ONE + p->B - 1) / p->B;
    for (uint32_t d = 0; d < nd; d++)
        if (p->doms[d].n && p->doms[d].W < min_w)
            return lmx__err(err, LMX_EINVAL, "plan %s: domain %s's weight %.3g is below 1/%llu, the block size",
                            p->name, lmx__index_domain_name(p->ix, d), p->doms[d].share, (unsigned long long)p->B);
    return LMX_OK;
}

/* Plan id: BLAKE2b of the stream algorithm's version, the index identity and the canonical
 * resolved spec. The version makes replicas running different releases of the algorithm
 * disagree on the id (clients then refuse to mix their batches) instead of on the bytes. */
static int set_id(lmx_plan *p, lmx_error *err)
{
    json_t *sj = lmx__plan_spec_json(&p->spec);
    char *txt = sj ? json_dumps(sj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(sj);
    if (!txt)
        return lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", p->name);
    const char *iid = lmx__index_identity(p->ix);
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, LMX_PLAN_ID_BYTES);
    crypto_generichash_update(&hs, (const uint8_t *)LMX_PLAN_ALGORITHM, sizeof LMX_PLAN_ALGORITHM);
    crypto_generichash_update(&hs, (const uint8_t *)iid, strlen(iid) + 1);
    crypto_generichash_update(&hs, (const uint8_t *)txt, strlen(txt));
    crypto_generichash_final(&hs, p->id, LMX_PLAN_ID_BYTES);
    lmx__hex(p->id, LMX_PLAN_ID_BYTES, p->id_hex);
    free(txt);
    return LMX_OK;
}

/* The id of a token the plan names by string ("bos_token", "eos_token", "pad_token"): looked up in the
 * index's copy of tokenizer.json (added tokens first, then the vocabulary). */
static int named_token(lmx_plan *p, const char *key, const char *want, uint32_t *id, lmx_error *err)
{
    const char *tid = lmx__index_tokenizer_identity(p->ix);
    if (strcmp(tid, "bytes") == 0)
        return lmx__err(err, LMX_EINVAL, "plans.%s.%s: the index's tokenizer is 'bytes' (no named tokens)", p->name, key);
    size_t dl = strlen(lmx__index_dir(p->ix));
    char *path = malloc(dl + sizeof "/tokenizer.json");
    if (!path)
        return lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", p->name);
    memcpy(path, lmx__index_dir(p->ix), dl);
    strcpy(path + dl, "/tokenizer.json");
    lmx_tokenizer *tok = NULL;
    int rc = lmx__tokenizer_open(path, NULL, &tok, err);
    free(path);
    if (rc)
        return lmx__err_prefix(err, "plans.%s.%s: ", p->name, key);
    *id = lmx__tokenizer_token_id(tok, want, strlen(want));
    lmx__tokenizer_free(tok);
    if (*id == LMX_TOKEN_NONE)
        return lmx__err(err, LMX_EINVAL, "plans.%s.%s: \"%s\" is not a token of the index's tokenizer (%s/tokenizer.json, %s)",
                        p->name, key, want, lmx__index_dir(p->ix), tid);
    return LMX_OK;
}

/* Separators, block size, coin key and the domain tables; checks the spec against the index. */
static int bind_index(lmx_plan *p, uint32_t nd, lmx_error *err)
{
    const lmx_plan_spec *spec = &p->spec;
    const lmx_index *ix = p->ix;
    if (lmx__index_n_docs(ix) == 0)
        return lmx__err(err, LMX_EINVAL, "plan %s: the index has no documents", p->name);
    p->bos_id = lmx__index_bos(ix);
    p->eos_id = lmx__index_eos(ix);
    for (int k = 0; k < 2; k++)
        if (spec->sep_token[k]) {
            int rc = named_token(p, k ? "eos_token" : "bos_token", spec->sep_token[k], k ? &p->eos_id : &p->bos_id, err);
            if (rc)
                return rc;
        }
    /* defaults: the model's own document separators (recorded in the index) */
    if (spec->bos < 0)
        p->spec.bos = lmx__index_default_bos(ix) && p->bos_id != UINT32_MAX;
    if (spec->eos < 0)
        p->spec.eos = lmx__index_default_eos(ix) && p->eos_id != UINT32_MAX;
    for (int k = 0; k < 2; k++)
        if ((k ? spec->eos : spec->bos) > 0 && (k ? p->eos_id : p->bos_id) == UINT32_MAX)
            return lmx__err(err, LMX_EINVAL, "plans.%s.%s: the index's tokenizer (%s/tokenizer.json, %s) has no %s token",
                            p->name, k ? "eos" : "bos", lmx__index_dir(ix), lmx__index_tokenizer_identity(ix),
                            k ? "EOS" : "BOS");
    p->nsep = (uint32_t)(spec->bos != 0) + (uint32_t)(spec->eos != 0);
    /* pad positions hold the named pad token, else the plan's EOS (a special token; the labels
     * mask them anyway) */
    p->pad_id = p->eos_id;
    if (spec->pad_multiple > 1 && spec->pad_token) {
        int rc = named_token(p, "pad_token", spec->pad_token, &p->pad_id, err);
        if (rc)
            return rc;
    }
    if (spec->pad_multiple > 1 && p->pad_id == UINT32_MAX)
        return lmx__err(err, LMX_EINVAL, "plans.%s.pad_token: the index's tokenizer %s has no EOS; name a pad token",
                        p->name, lmx__index_tokenizer_identity(ix));
    p->B = (uint64_t)spec->seq_len * ((BLOCK_TARGET + spec->seq_len - 1) / spec->seq_len);
    uint8_t h[8];
    uint8_t msg[16] = "lmx-coin";
    lmx__put64(msg + 8, spec->seed);
    crypto_generichash(h, sizeof h, msg, sizeof msg, NULL, 0);
    p->coin_key = lmx__get64(h);
    p->domain_names = calloc(nd + 1, sizeof *p->domain_names);
    p->doms = calloc(nd + 1, sizeof *p->doms);
    if (!p->domain_names || !p->doms)
        return lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", p->name);
    for (uint32_t d = 0; d < nd; d++)
        p->domain_names[d] = lmx__index_domain_name(ix, d);
    for (uint32_t i = 0; i < spec->n_weights; i++)
        if (lmx__index_domain_find(ix, spec->weight_names[i]) < 0)
            return lmx__err(err, LMX_EINVAL, "plans.%s.domain_weights.%s: no such domain in the index", p->name,
                            spec->weight_names[i]);
    return LMX_OK;
}

int lmx__plan_create(const lmx_index *ix, const char *name, const lmx_plan_spec *spec, const atomic_int *stop,
                     lmx_plan **out, lmx_error *err)
{
    *out = NULL;
    if (sodium_init() < 0)
        return lmx__err(err, LMX_EINTERNAL, "libsodium failed to initialize");
    lmx_plan *p = calloc(1, sizeof *p);
    if (!p)
        return lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", name);
    pthread_mutex_init(&p->lock, NULL);
    lmx__plan_prewalk_init(p);
    p->stop = stop;
    p->ix = ix;
    p->name = strdup(name);
    p->spec = *spec;
    for (uint32_t i = 0; i < spec->n_weights; i++)
        p->spec.weight_names[i] = strdup(spec->weight_names[i]);
    for (int k = 0; k < 2; k++)
        p->spec.sep_token[k] = spec->sep_token[k] ? strdup(spec->sep_token[k]) : NULL;
    p->spec.pad_token = spec->pad_token ? strdup(spec->pad_token) : NULL;
    uint32_t nd = lmx__index_n_domains(ix);
    int rc = bind_index(p, nd, err);
    if (rc == LMX_OK) /* the id names the item table file: it depends only on the index and spec */
        rc = set_id(p, err);
    if (rc == LMX_OK)
        rc = build_items(p, nd, stop, err);
    if (rc == LMX_OK)
        rc = set_weights(p, nd, err);
    p->n_doms = nd;
    if (rc == LMX_OK && p->table_built) /* a restart then starts without walking epoch 0 */
        rc = lmx__plan_epochs_prepare(p, stop, err);
    if (rc != LMX_OK) {
        lmx__plan_free(p);
        return rc;
    }
    *out = p;
    return LMX_OK;
}

void lmx__plan_free(lmx_plan *p)
{
    if (!p)
        return;
    lmx__plan_prewalk_stop(p); /* before the items it reads go */
    for (uint32_t d = 0; p->doms && d < lmx__index_n_domains(p->ix); d++) {
        if (!p->table)
            free(p->doms[d].items);
        for (int i = 0; i < EPOCH_CACHE; i++)
            lmx__plan_epoch_release(&p->doms[d].ep[i]);
    }
    lmx__plan_blocks_free(p);
    lmx__plan_table_drop(p);
    free(p->doms);
    free(p->domain_names);
    json_decref(p->stats_cache);
    lmx__plan_spec_free(&p->spec);
    pthread_mutex_destroy(&p->lock);
    free(p->name);
    free(p);
}

const char *lmx__plan_name(const lmx_plan *p) { return p->name; }
const lmx_plan_spec *lmx__plan_spec(const lmx_plan *p) { return &p->spec; }
const char *lmx__plan_id_hex(const lmx_plan *p) { return p->id_hex; }
const uint8_t *lmx__plan_id(const lmx_plan *p) { return p->id; }

json_t *lmx__plan_separators_json(const lmx_plan *p)
{
    json_t *o = json_object();
    for (int k = 0; k < 2; k++) {
        json_t *s = json_null();
        if (k ? p->spec.eos : p->spec.bos) {
            const char *tok = p->spec.sep_token[k] ? p->spec.sep_token[k] : lmx__index_sep_token(p->ix, k);
            s = json_object();
            json_object_set_new(s, "id", json_integer(k ? p->eos_id : p->bos_id));
            json_object_set_new(s, "token", tok ? json_string(tok) : json_null());
        }
        json_object_set_new(o, k ? "eos" : "bos", s);
    }
    if (p->spec.pad_multiple > 1) { /* padded plans only: the others' JSON is unchanged */
        const char *tok = p->spec.pad_token ? p->spec.pad_token
                          : p->spec.sep_token[1] ? p->spec.sep_token[1] : lmx__index_sep_token(p->ix, 1);
        json_object_set_new(o, "pad", json_pack("{s:I, s:o}", "id", (json_int_t)p->pad_id,
                                                 "token", tok ? json_string(tok) : json_null()));
    }
    return o;
}

uint64_t lmx__plan_max_steps(const lmx_plan *p)
{
    if (!p->spec.total_tokens)
        return UINT64_MAX;
    return p->spec.total_tokens / ((uint64_t)p->spec.global_batch * p->spec.seq_len);
}

