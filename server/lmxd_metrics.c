/* GET /v1/stats (plan statistics as JSON) and GET /metrics (Prometheus text), and the request
 * counters behind them. */
#include "lmxd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double lat_bounds[LMXD_N_LAT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,   0.25,   0.5,   1.0,  2.5,   5.0};
static const int status_codes[LMXD_N_STATUS] = {200, 201, 304, 400, 401, 403, 404, 405,
                                                409, 413, 414, 416, 431, 500, 503};

enum MHD_Result lmxd_handle_stats(server *s, struct MHD_Connection *c, const lmxd_request *rq)
{
    json_t *root = json_object(), *plans = json_object(), *ixs = lmx__index_stats_json(s->ix);
    json_object_set_new(root, "index", ixs ? ixs : json_null());
    size_t n;
    plan_ref **v = lmxd_plans_snapshot(s, &n);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (!rq->plan[0] || strcmp(rq->plan, lmx__plan_name(v[i]->plan)) == 0) {
            json_object_set_new(plans, lmx__plan_name(v[i]->plan), lmx__plan_stats(v[i]->plan, 0));
            found = 1;
        }
    }
    lmxd_plans_put(v, n);
    if (rq->plan[0] && !found) {
        json_decref(root);
        json_decref(plans);
        return lmxd_send_error(c, 404, "unknown_plan", rq->plan);
    }
    json_object_set_new(root, "plans", plans);
    json_object_set_new(root, "verify", lmxd_verify_json(s));
    json_object_set_new(root, "reload", lmxd_reload_json(s));
    return lmxd_send_json(c, 200, root);
}

/* Per-(world, rank) progress of each plan, one buffer per metric family. */
enum { F_PLAN_LAG, F_PLAN_TRACKED, F_PLAN_UNTRACKED, F_WORLD_MAX, F_WORLD_SEEN, F_WORLD_LAG, F_RANK_BEHIND, N_FAM };
static const char *const fam_meta[N_FAM][3] = {
    {"longmix_plan_lagging_ranks", "gauge", "Ranks more than lag_steps steps behind the highest step of their world size."},
    {"longmix_plan_tracked_ranks", "gauge", "(world, rank) pairs tracked per plan (at most 4096)."},
    {"longmix_plan_untracked_batches_total", "counter", "Batches whose (world, rank) was not tracked (table full)."},
    {"longmix_world_max_step", "gauge", "Highest position (step last asked for) of the ranks of a world size."},
    {"longmix_world_ranks_seen", "gauge", "Ranks of a world size that fetched at least one batch."},
    {"longmix_world_lagging_ranks", "gauge", "Lagging ranks of a world size."},
    {"longmix_rank_steps_behind", "gauge", "Steps a lagging rank is behind the highest step of its world size."}};

static void metrics_ranks(server *s, plan_ref *r, lmx_buf fam[N_FAM])
{
    const char *name = lmx__plan_name(r->plan);
    size_t n;
    uint64_t dropped;
    rank_slot *v = lmxd_ranks_sorted(r, &n, &dropped);
    uint64_t lagging = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint64_t top = 0;
        for (; j < n && v[j].world == v[i].world; j++)
            if (v[j].step1 > top)
                top = v[j].step1;
        uint64_t lag_here = 0;
        for (size_t k = i; k < j; k++) {
            uint64_t behind = top - v[k].step1;
            if (behind > (uint64_t)s->cfg.lag_steps) {
                lag_here++;
                lmx__buf_printf(&fam[F_RANK_BEHIND], "longmix_rank_steps_behind{plan=\"%s\",world=\"%u\",rank=\"%u\"} %llu\n",
                                name, v[k].world, v[k].rank, (unsigned long long)behind);
            }
        }
        lmx__buf_printf(&fam[F_WORLD_MAX], "longmix_world_max_step{plan=\"%s\",world=\"%u\"} %llu\n", name, v[i].world,
                        (unsigned long long)(top - 1));
        lmx__buf_printf(&fam[F_WORLD_SEEN], "longmix_world_ranks_seen{plan=\"%s\",world=\"%u\"} %zu\n", name, v[i].world,
                        j - i);
        lmx__buf_printf(&fam[F_WORLD_LAG], "longmix_world_lagging_ranks{plan=\"%s\",world=\"%u\"} %llu\n", name,
                        v[i].world, (unsigned long long)lag_here);
        lagging += lag_here;
        i = j;
    }
    free(v);
    lmx__buf_printf(&fam[F_PLAN_LAG], "longmix_plan_lagging_ranks{plan=\"%s\"} %llu\n", name, (unsigned long long)lagging);
    lmx__buf_printf(&fam[F_PLAN_TRACKED], "longmix_plan_tracked_ranks{plan=\"%s\"} %zu\n", name, n);
    lmx__buf_printf(&fam[F_PLAN_UNTRACKED], "longmix_plan_untracked_batches_total{plan=\"%s\"} %llu\n", name,
                    (unsigned long long)dropped);
}

enum MHD_Result lmxd_handle_metrics(server *s, struct MHD_Connection *c)
{
    lmx_buf b = {0};
    lmx__buf_printf(&b, "# HELP longmix_requests_total HTTP requests answered.\n# TYPE longmix_requests_total counter\n");
    lmx__buf_printf(&b, "longmix_requests_total %llu\n", (unsigned long long)atomic_load(&s->requests));
    lmx__buf_printf(&b, "# HELP longmix_responses_total Responses by status code.\n# TYPE longmix_responses_total counter\n");
    for (int i = 0; i < LMXD_N_STATUS; i++)
        lmx__buf_printf(&b, "longmix_responses_total{code=\"%d\"} %llu\n", status_codes[i],
                        (unsigned long long)atomic_load(&s->status[i]));
    lmx__buf_printf(&b, "longmix_responses_total{code=\"other\"} %llu\n", (unsigned long long)atomic_load(&s->status[LMXD_N_STATUS]));
    lmx__buf_printf(&b, "# HELP longmix_errors_total Error responses (4xx, 5xx, aborted) by status code.\n"
                        "# TYPE longmix_errors_total counter\n");
    for (int i = 0; i < LMXD_N_STATUS; i++)
        if (status_codes[i] >= 400)
            lmx__buf_printf(&b, "longmix_errors_total{code=\"%d\"} %llu\n", status_codes[i],
                            (unsigned long long)atomic_load(&s->status[i]));
    lmx__buf_printf(&b, "longmix_errors_total{code=\"other\"} %llu\n", (unsigned long long)atomic_load(&s->status[LMXD_N_STATUS]));
    lmx__buf_printf(&b, "# HELP longmix_response_bytes_total Batch body bytes sent (after compression).\n# TYPE longmix_response_bytes_total counter\n");
    lmx__buf_printf(&b, "longmix_response_bytes_total %llu\n", (unsigned long long)atomic_load(&s->bytes_out));
    lmx__buf_printf(&b, "# HELP longmix_connections_cut_total Connections shut down past their deadline, by phase "
                        "(header_timeout, body_timeout, send_timeout).\n# TYPE longmix_connections_cut_total counter\n");
    static const char *const phase_name[LMXD_N_PHASES] = {"headers", "body", "send"};
    for (int i = 0; i < LMXD_N_PHASES; i++)
        lmx__buf_printf(&b, "longmix_connections_cut_total{phase=\"%s\"} %llu\n", phase_name[i],
                        (unsigned long long)atomic_load(&s->cut[i]));
    lmx__buf_printf(&b, "# HELP longmix_inflight_body_bytes Batch and sequence body bytes queued and not yet sent.\n"
                        "# TYPE longmix_inflight_body_bytes gauge\nlongmix_inflight_body_bytes %zu\n",
                    atomic_load(&s->body_bytes));
    lmx__buf_printf(&b, "# HELP longmix_inflight_body_budget_bytes The budget for them (inflight_mb; 0: none).\n"
                        "# TYPE longmix_inflight_body_budget_bytes gauge\nlongmix_inflight_body_budget_bytes %zu\n",
                    (size_t)s->cfg.inflight_mb << 20);
    lmx__buf_printf(&b, "# HELP longmix_busy_total 503 answers for want of inflight_mb.\n"
                        "# TYPE longmix_busy_total counter\nlongmix_busy_total %llu\n",
                    (unsigned long long)atomic_load(&s->busy));
    lmx__buf_printf(&b, "# HELP longmix_inflight_requests Requests being read, built or sent.\n# TYPE longmix_inflight_requests gauge\n");
    lmx__buf_printf(&b, "longmix_inflight_requests %d\n", atomic_load(&s->inflight));
    /* Snapshot the buckets first so that _count, +Inf and the buckets agree with each other. */
    uint64_t bk[LMXD_N_LAT_BUCKETS + 1], cum = 0;
    for (int i = 0; i <= LMXD_N_LAT_BUCKETS; i++)
        bk[i] = atomic_load(&s->latency[i]);
    lmx__buf_printf(&b, "# HELP longmix_request_seconds Time from the request line to the last byte sent.\n"
                        "# TYPE longmix_request_seconds histogram\n");
    for (int i = 0; i < LMXD_N_LAT_BUCKETS; i++) {
        cum += bk[i];
        lmx__buf_printf(&b, "longmix_request_seconds_bucket{le=\"%g\"} %llu\n", lat_bounds[i], (unsigned long long)cum);
    }
    cum += bk[LMXD_N_LAT_BUCKETS];
    lmx__buf_printf(&b, "longmix_request_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    lmx__buf_printf(&b, "longmix_request_seconds_sum %.6f\nlongmix_request_seconds_count %llu\n",
                    atomic_load(&s->latency_sum), (unsigned long long)cum);
    size_t n;
    plan_ref **v = lmxd_plans_snapshot(s, &n);
    lmx__buf_printf(&b, "# HELP longmix_plans Plans served, by source.\n# TYPE longmix_plans gauge\n");
    size_t n_rt = 0;
    for (size_t i = 0; i < n; i++)
        n_rt += v[i]->runtime;
    lmx__buf_printf(&b, "longmix_plans{source=\"config\"} %zu\nlongmix_plans{source=\"runtime\"} %zu\n", n - n_rt, n_rt);
    lmx__buf_printf(&b, "# HELP longmix_plan_max_step Highest position of a tracked rank per plan (-1: none yet).\n"
                        "# TYPE longmix_plan_max_step gauge\n");
    for (size_t i = 0; i < n; i++) {
        size_t nr;
        uint64_t dropped, ms = 0;
        rank_slot *rs = lmxd_ranks_sorted(v[i], &nr, &dropped);
        for (size_t k = 0; k < nr; k++)
            ms = rs[k].step1 > ms ? rs[k].step1 : ms;
        free(rs);
        lmx__buf_printf(&b, "longmix_plan_max_step{plan=\"%s\"} %lld\n", lmx__plan_name(v[i]->plan),
                        ms ? (long long)(ms - 1) : -1LL);
    }
    lmx__buf_printf(&b, "# HELP longmix_plan_batches_total Batches served per plan.\n# TYPE longmix_plan_batches_total counter\n");
    for (size_t i = 0; i < n; i++)
        lmx__buf_printf(&b, "longmix_plan_batches_total{plan=\"%s\"} %llu\n", lmx__plan_name(v[i]->plan),
                        (unsigned long long)atomic_load(&v[i]->batches));
    lmx__buf_printf(&b, "# HELP longmix_plan_bytes_total Batch body bytes sent per plan (after compression).\n"
                        "# TYPE longmix_plan_bytes_total counter\n");
    for (size_t i = 0; i < n; i++)
        lmx__buf_printf(&b, "longmix_plan_bytes_total{plan=\"%s\"} %llu\n", lmx__plan_name(v[i]->plan),
                        (unsigned long long)atomic_load(&v[i]->bytes));
    lmx__buf_printf(&b, "# HELP longmix_plan_epoch_walks_total Epoch indexes computed by walking a domain, by a waiting "
                        "request or in the background.\n# TYPE longmix_plan_epoch_walks_total counter\n");
    for (size_t i = 0; i < n; i++) {
        uint64_t w[2];
        lmx__plan_walk_counts(v[i]->plan, w);
        for (int k = 0; k < 2; k++)
            lmx__buf_printf(&b, "longmix_plan_epoch_walks_total{plan=\"%s\",by=\"%s\"} %llu\n",
                            lmx__plan_name(v[i]->plan), k ? "background" : "request", (unsigned long long)w[k]);
    }
    lmx_buf fam[N_FAM];
    memset(fam, 0, sizeof fam);
    for (size_t i = 0; i < n; i++)
        metrics_ranks(s, v[i], fam);
    lmxd_plans_put(v, n);
    for (int f = 0; f < N_FAM; f++) {
        lmx__buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", fam_meta[f][0], fam_meta[f][2], fam_meta[f][0], fam_meta[f][1]);
        if (fam[f].len)
            lmx__buf_append(&b, fam[f].data, fam[f].len);
        lmx__buf_free(&fam[f]);
    }
    lmxd_cache_stats cs;
    lmxd_cache_get_stats(s->cache, &cs);
    lmx__buf_printf(&b, "# HELP longmix_cache_hits_total Batch and sequence bodies served from the response cache.\n"
                        "# TYPE longmix_cache_hits_total counter\nlongmix_cache_hits_total %llu\n",
                    (unsigned long long)cs.hits);
    lmx__buf_printf(&b, "# HELP longmix_cache_misses_total Batch and sequence bodies looked up in the response cache "
                        "and not found.\n"
                        "# TYPE longmix_cache_misses_total counter\nlongmix_cache_misses_total %llu\n",
                    (unsigned long long)cs.misses);
    lmx__buf_printf(&b, "# HELP longmix_cache_evictions_total Entries evicted from the response cache to fit its "
                        "budget.\n"
                        "# TYPE longmix_cache_evictions_total counter\nlongmix_cache_evictions_total %llu\n",
                    (unsigned long long)cs.evictions);
    lmx__buf_printf(&b, "# HELP longmix_cache_bytes Bytes held by the response cache (bodies and entry overhead).\n"
                        "# TYPE longmix_cache_bytes gauge\nlongmix_cache_bytes %zu\n", cs.bytes);
    lmx__buf_printf(&b, "# HELP longmix_cache_entries Entries in the response cache.\n"
                        "# TYPE longmix_cache_entries gauge\nlongmix_cache_entries %zu\n", cs.entries);
    lmx__buf_printf(&b, "# HELP longmix_cache_budget_bytes The response cache's budget (cache_mb; 0: off).\n"
                        "# TYPE longmix_cache_budget_bytes gauge\nlongmix_cache_budget_bytes %zu\n", cs.budget);
    json_t *vj = lmxd_verify_json(s);
    lmx__buf_printf(&b, "# HELP longmix_index_shards Shards of the index.\n# TYPE longmix_index_shards gauge\n"
                        "longmix_index_shards %lld\n", (long long)json_integer_value(json_object_get(vj, "shards")));
    lmx__buf_printf(&b, "# HELP longmix_index_shards_verified Shards whose BLAKE2b is checked (all before serving with "
                        "verify: foreground; growing with background; 0 with --skip-verify).\n"
                        "# TYPE longmix_index_shards_verified gauge\nlongmix_index_shards_verified %lld\n",
                    (long long)json_integer_value(json_object_get(vj, "verified")));
    lmx__buf_printf(&b, "# HELP longmix_index_shards_bad Shards that failed background verification (never served).\n"
                        "# TYPE longmix_index_shards_bad gauge\nlongmix_index_shards_bad %lld\n",
                    (long long)json_integer_value(json_object_get(vj, "bad")));
    lmx__buf_printf(&b, "# HELP longmix_index_verify_done 1 once no shard is waiting for verification.\n"
                        "# TYPE longmix_index_verify_done gauge\nlongmix_index_verify_done %d\n",
                    json_is_true(json_object_get(vj, "done")));
    json_decref(vj);
    json_t *rj = lmxd_reload_json(s);
    lmx__buf_printf(&b, "# HELP longmix_reload_running 1 while a SIGHUP reload builds its plans (the running ones serve).\n"
                        "# TYPE longmix_reload_running gauge\nlongmix_reload_running %d\n",
                    json_is_true(json_object_get(rj, "running")));
    lmx__buf_printf(&b, "# HELP longmix_reloads_total SIGHUP reloads ended since start, by result.\n"
                        "# TYPE longmix_reloads_total counter\nlongmix_reloads_total{result=\"ok\"} %lld\n"
                        "longmix_reloads_total{result=\"failed\"} %lld\n",
                    (long long)json_integer_value(json_object_get(rj, "ok")),
                    (long long)json_integer_value(json_object_get(rj, "failed")));
    json_decref(rj);
    lmx__buf_printf(&b, "# HELP longmix_uptime_seconds Seconds since start.\n# TYPE longmix_uptime_seconds gauge\n");
    lmx__buf_printf(&b, "longmix_uptime_seconds %.1f\n", lmx__now() - s->started);
    if (!b.data)
        return MHD_NO;
    return lmxd_send_buf(c, 200, b.data, b.len, "text/plain; version=0.0.4; charset=utf-8");
}

void lmxd_metrics_record(server *s, unsigned code, double dt)
{
    int k = LMXD_N_STATUS;
    for (int i = 0; i < LMXD_N_STATUS; i++)
        if (status_codes[i] == (int)code)
            k = i;
    atomic_fetch_add(&s->status[k], 1);
    atomic_fetch_add(&s->requests, 1);
    int b = 0;
    while (b < LMXD_N_LAT_BUCKETS && dt > lat_bounds[b])
        b++;
    atomic_fetch_add(&s->latency[b], 1);
    double cur = atomic_load(&s->latency_sum);
    while (!atomic_compare_exchange_weak(&s->latency_sum, &cur, cur + dt))
        ;
}
