/* Mixture statistics of a plan: target and realized shares over a window of the stream. */
#include <stdlib.h>
#include <string.h>

#include "lmx_plan_internal.h"

#define ACC_N (3 + LMX_N_BUCKETS) /* per domain: stream, document, long tokens, buckets */

/* Accumulates the first `window` stream tokens into acc; the error, if any, in *err. Caller
 * holds p->lock. */
static void accumulate(lmx_plan *p, uint64_t window, uint64_t (*acc)[ACC_N], lmx_error *err)
{
    uint64_t remaining = window, b = 0;
    while (remaining > 0) {
        block *k = lmx__plan_get_block(p, b, err);
        if (!k)
            break;
        for (uint64_t i = 0; i < k->n && remaining > 0; i++) {
            const piece *pc = &k->pieces[i];
            uint64_t n = pc->len < remaining ? pc->len : remaining;
            const item *it = &p->doms[pc->dom].items[pc->item];
            /* document tokens of this piece: stream tokens minus the separators it covers */
            uint64_t lo = pc->item_off, hi = pc->item_off + n, dlo = p->spec.bos ? 1 : 0, dhi = dlo + it->len;
            uint64_t top = hi < dhi ? hi : dhi, bot = lo > dlo ? lo : dlo;
            uint64_t doc_tokens = top > bot ? top - bot : 0;
            acc[pc->dom][0] += n;
            acc[pc->dom][1] += doc_tokens;
            if (is_long(p, it))
                acc[pc->dom][2] += doc_tokens;
            acc[pc->dom][3 + lmx__bucket_of(it->len)] += doc_tokens;
            remaining -= n;
        }
        lmx__plan_put_block(p, k);
        b++;
    }
}

/* One domain's statistics object. Qt: quotas at total_tokens' last whole block, or NULL. */
static json_t *domain_json(const lmx_plan *p, uint32_t d, const uint64_t *a, uint64_t doc_total, const uint64_t *Qt)
{
    static const char *const names[] = LMX_BUCKET_NAMES;
    const pdom *pd = &p->doms[d];
    json_t *o = json_object(), *bk = json_object();
    double keep = (double)pd->K / 4294967296.0;
    double rate = (double)pd->long_slen + (double)pd->short_slen * keep;
    double ktok = (double)pd->long_tok + (double)pd->short_tok * keep;
    json_object_set_new(o, "target_share", json_real(pd->share));
    json_object_set_new(o, "realized_share", json_real(doc_total ? (double)a[1] / (double)doc_total : 0));
    json_object_set_new(o, "expected_long_share", json_real(ktok > 0 ? (double)pd->long_tok / ktok : 0));
    json_object_set_new(o, "realized_long_share", json_real(a[1] ? (double)a[2] / (double)a[1] : 0));
    json_object_set_new(o, "tokens", json_integer((json_int_t)a[1]));
    json_object_set_new(o, "epochs", json_real(rate > 0 ? (double)a[0] / rate : 0));
    if (Qt) {
        uint64_t T = p->spec.total_tokens;
        double q = (double)Qt[d] + (double)(T % p->B) * ((double)pd->W / (double)WEIGHT_ONE);
        json_object_set_new(o, "epochs_at_total_tokens", json_real(rate > 0 ? q / rate : 0));
    }
    for (int q = 0; q < LMX_N_BUCKETS; q++)
        json_object_set_new(bk, names[q], json_integer((json_int_t)a[3 + q]));
    json_object_set_new(o, "buckets", bk);
    return o;
}

json_t *lmx__plan_stats(lmx_plan *p, uint64_t window)
{
    if (!window)
        window = p->spec.total_tokens && p->spec.total_tokens < 4 * p->B ? p->spec.total_tokens : 4 * p->B;
    pthread_mutex_lock(&p->lock);
    if (p->stats_cache && (uint64_t)json_integer_value(json_object_get(p->stats_cache, "window_tokens")) == window) {
        json_t *r = json_incref(p->stats_cache);
        pthread_mutex_unlock(&p->lock);
        return r;
    }
    uint32_t nd = p->n_doms;
    uint64_t(*acc)[ACC_N] = calloc(nd + 1, sizeof *acc);
    lmx_error err = {0};
    if (acc)
        accumulate(p, window, acc, &err);
    json_t *root = json_object(), *doms = json_object();
    json_object_set_new(root, "plan", json_string(p->name));
    json_object_set_new(root, "plan_id", json_string(p->id_hex));
    json_object_set_new(root, "strategy", json_string(lmx__plan_strategy_name(p->spec.strategy)));
    json_object_set_new(root, "window_tokens", json_integer((json_int_t)window));
    if (err.code)
        json_object_set_new(root, "error", json_string(err.message));
    uint64_t doc_total = 0;
    for (uint32_t d = 0; acc && d < nd; d++)
        doc_total += acc[d][1];
    uint64_t *Qt = p->spec.total_tokens ? calloc(nd + 1, sizeof *Qt) : NULL;
    if (Qt)
        lmx__plan_quotas(p, p->spec.total_tokens / p->B, Qt); /* whole blocks exactly; the rest of the last below */
    for (uint32_t d = 0; acc && d < nd; d++)
        json_object_set_new(doms, lmx__index_domain_name(p->ix, d), domain_json(p, d, acc[d], doc_total, Qt));
    free(Qt);
    free(acc);
    json_object_set_new(root, "domains", doms);
    json_decref(p->stats_cache);
    p->stats_cache = json_incref(root);
    pthread_mutex_unlock(&p->lock);
    return root;
}
