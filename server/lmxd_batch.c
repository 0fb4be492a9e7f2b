/* The batch and sequence endpoint: ETag/If-None-Match, the body built once into one buffer
 * (compressed into a second one when the client takes zstd) and kept in the bounded response cache
 * (lmxd_cache.h), which libmicrohttpd sends from without a copy. */
#define _GNU_SOURCE /* strcasestr */
#include "lmxd_internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "lmx_proto.h"

static int accepts_zstd(struct MHD_Connection *c)
{
    const char *ae = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept-Encoding");
    return ae && strcasestr(ae, "zstd") != NULL;
}

/* One compression context per MHD worker thread, freed when the thread exits (MHD_stop_daemon). */
static pthread_key_t cctx_key;
static pthread_once_t cctx_once = PTHREAD_ONCE_INIT;
static void free_cctx(void *p) { ZSTD_freeCCtx(p); }
static void make_cctx_key(void) { (void)pthread_key_create(&cctx_key, free_cctx); }

static ZSTD_CCtx *thread_cctx(void)
{
    pthread_once(&cctx_once, make_cctx_key);
    ZSTD_CCtx *c = pthread_getspecific(cctx_key);
    if (!c && (c = ZSTD_createCCtx()) != NULL && pthread_setspecific(cctx_key, c) != 0) {
        ZSTD_freeCCtx(c);
        c = NULL;
    }
    return c;
}

/* Builds the response body for key: the wire body, its digest, and its compression when key asks
 * for zstd. On success *out is a new entry holding the caller's reference. When compression fails
 * the entry holds the identity body (entry->zstd 0): still a correct answer, only larger. */
static int build_entry(server *s, plan_ref *r, const lmxd_request *rq, const lmxd_cache_key *key, lmxd_cache_entry **out,
                       int *gate_fault, const char **gate_shard, lmx_error *err)
{
    lmx_buf body = {0};
    lmxd_guard_begin();
    int rc = rq->kind != LMXD_R_BATCH ? lmx__plan_sequence(r->plan, rq->step, &body, err)
             : rq->cp_size ? lmx__plan_batch_layout(r->plan, rq->step, rq->rank, rq->world, rq->cp_rank, rq->cp_size,
                                                    rq->cp_layout, &body, err)
                           : lmx__plan_batch(r->plan, rq->step, rq->rank, rq->world, &body, err);
    const void *bad = lmxd_guard_end();
    *gate_fault = lmx__gate_end(gate_shard);
    if (bad) { /* a fault under the daemon outranks a gate refusal */
        lmxd_index_damage(s, bad);
        rc = lmx__err(err, LMX_EIO, "%s", s->damage);
        *gate_fault = LMX_OK;
    } else if (*gate_fault && rc == LMX_OK) { /* built from a shard not (yet) verified: thrown away */
        rc = lmx__err(err, *gate_fault, "shard %s not verified", *gate_shard);
    } else {
        *gate_fault = LMX_OK;
    }
    if (rc != LMX_OK) {
        lmx__buf_free(&body);
        return rc;
    }
    uint8_t h[32];
    char digest[80];
    crypto_generichash(h, sizeof h, body.data, body.len, NULL, 0);
    memcpy(digest, LMX_DIGEST_PREFIX, strlen(LMX_DIGEST_PREFIX));
    lmx__hex(h, sizeof h, digest + strlen(LMX_DIGEST_PREFIX));
    void *data = body.data;
    size_t len = body.len;
    int zstd = 0;
    if (key->zstd) {
        ZSTD_CCtx *cctx = thread_cctx();
        size_t bound = ZSTD_compressBound(body.len);
        void *z = malloc(bound);
        size_t zn = z && cctx ? ZSTD_compressCCtx(cctx, z, bound, body.data, body.len, key->zstd_level) : 0;
        if (!z || ZSTD_isError(zn)) {
            free(z);
        } else {
            free(body.data);
            data = z;
            len = zn;
            zstd = 1;
        }
    }
    if (!(*out = lmxd_cache_entry_new(key, data, len, zstd, digest)))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    return LMX_OK;
}

/* A body being sent: its entry's reference and its charge against inflight_mb. MHD's free
 * callback releases both once the last byte is sent or the connection is closed. */
typedef struct sent_body {
    server *s;
    lmxd_cache_entry *e;
} sent_body;

static void release_sent(void *p)
{
    sent_body *b = p;
    atomic_fetch_sub(&b->s->body_bytes, b->e->len);
    lmxd_cache_entry_unref(b->e);
    free(b);
}

static size_t limit_for(server *s, size_t len)
{
    size_t budget = (size_t)s->cfg.inflight_mb << 20;
    return len <= LMXD_SMALL_BODY ? budget : budget - budget / 8;
}

/* Whether a body of at least len bytes could be charged now (checked before building one). */
static int fits(server *s, size_t len)
{
    size_t prev = atomic_load(&s->body_bytes);
    return !s->cfg.inflight_mb || prev == 0 || prev + len <= limit_for(s, len);
}

/* The token bytes of the body rq asks for: a lower bound of its identity size. */
static size_t token_bytes_of(server *s, plan_ref *r, const lmxd_request *rq)
{
    const lmx_plan_spec *sp = lmx__plan_spec(r->plan);
    size_t n = rq->kind == LMXD_R_BATCH && rq->world ? sp->global_batch / rq->world : 1;
    size_t per_seq = rq->cp_size ? sp->seq_len / rq->cp_size : sp->seq_len; /* a CP slice */
    return n * per_seq * lmx__index_token_bytes(s->ix);
}

static enum MHD_Result busy(server *s, struct MHD_Connection *c)
{
    atomic_fetch_add(&s->busy, 1);
    char d[160];
    snprintf(d, sizeof d, "inflight_mb (%d MiB of response bodies being sent) is used up; retry shortly",
             s->cfg.inflight_mb);
    return lmxd_send_busy(c, 1, d);
}

/* Charges len bytes against inflight_mb. Bodies over LMXD_SMALL_BODY may fill only 7/8 of it:
 * the rest is kept for small bodies, which slow readers cannot pin (they fit the socket buffers
 * and are released at once), so clients of small batches get through while slow readers of large
 * ones hold their share. One body is always allowed when nothing else is in flight (a plan whose
 * batches exceed the budget still works, one at a time). */
static int charge(server *s, size_t len)
{
    size_t prev = atomic_fetch_add(&s->body_bytes, len);
    if (s->cfg.inflight_mb && prev > 0 && prev + len > limit_for(s, len)) {
        atomic_fetch_sub(&s->body_bytes, len);
        return -1;
    }
    return 0;
}

enum MHD_Result lmxd_handle_body(server *s, struct MHD_Connection *c, const lmxd_request *rq)
{
    const char *damaged = lmxd_index_damaged(s);
    if (damaged)
        return lmxd_send_error(c, 503, "index_damaged", damaged);
    plan_ref *r = lmxd_plan_find(s, rq->plan);
    if (!r) {
        char d[160];
        snprintf(d, sizeof d, "no plan named '%s' (GET /v1/plans lists them)", rq->plan);
        return lmxd_send_error(c, 404, "unknown_plan", d);
    }
    if (rq->kind == LMXD_R_SEQUENCE && rq->text)
        return lmxd_handle_text(s, c, rq, r);
    /* A strong ETag names one representation: the zstd body gets its own. */
    char etag[128], cp[32] = "";
    int zstd = accepts_zstd(c);
    if (rq->cp_size)
        snprintf(cp, sizeof cp, "-cp%u.%u%s", rq->cp_rank, rq->cp_size, rq->cp_layout == LMX_CP_THD ? "-thd" : "");
    snprintf(etag, sizeof etag, "\"%s-%llu-%u-%u%s%s%s\"", lmx__plan_id_hex(r->plan), (unsigned long long)rq->step,
             rq->rank, rq->world, cp, rq->kind == LMXD_R_SEQUENCE ? "-seq" : "", zstd ? "-zstd" : "");
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
    if (inm && strcmp(inm, etag) == 0) {
        lmxd_plan_put(r);
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "ETag", etag);
        enum MHD_Result ret = MHD_queue_response(c, 304, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    lmxd_cache_key key;
    lmxd_cache_key_init(&key, lmx__plan_id_hex(r->plan), rq->kind, rq->step, rq->rank, rq->world, zstd,
                        s->cfg.zstd_level);
    key.cp_rank = rq->cp_rank;
    key.cp_size = rq->cp_size;
    key.cp_layout = rq->cp_layout;
    lmxd_cache_entry *e = lmxd_cache_get(s->cache, &key);
    if (!e && !fits(s, zstd ? 0 : token_bytes_of(s, r, rq))) {
        lmxd_plan_put(r);
        return busy(s, c); /* refused before the work of building a body that could not be sent */
    }
    if (!e) {
        lmx_error err = {0};
        int gate_fault = LMX_OK;
        const char *gate_shard = NULL;
        int rc = build_entry(s, r, rq, &key, &e, &gate_fault, &gate_shard, &err);
        if (rc != LMX_OK) {
            lmxd_plan_put(r);
            if (gate_fault)
                return lmxd_send_gate_fault(s, c, gate_fault, gate_shard);
            if (lmxd_index_damaged(s))
                return lmxd_send_error(c, 503, "index_damaged", err.message);
            unsigned st = lmxd_status_of(rc);
            return lmxd_send_error(c, st,
                              st == 416   ? "step_out_of_range"
                              : st == 400 ? "bad_parameter"
                                          : "internal",
                              err.message);
        }
        /* Errors are never cached, so a hit has passed the world and step checks. An identity
         * body from a failed compression answers this request but is not the zstd entry. */
        if (e->zstd == key.zstd)
            lmxd_cache_put(s->cache, e);
    }
    if (zstd && !e->zstd) {
        char *suffix = strstr(etag, "-zstd\"");
        if (suffix)
            memcpy(suffix, "\"", 2);
    }
    /* Slow readers pin bodies for as long as they read: beyond the budget, come back later. */
    sent_body *sb = malloc(sizeof *sb);
    if (!sb || charge(s, e->len) != 0) {
        lmxd_plan_put(r);
        lmxd_cache_entry_unref(e);
        if (!sb)
            return MHD_NO;
        free(sb);
        return busy(s, c);
    }
    sb->s = s;
    sb->e = e;
    /* HEAD sends no body: it is neither a served batch nor progress of a rank. */
    if (rq->kind == LMXD_R_BATCH && !rq->head) {
        atomic_fetch_add(&r->batches, 1);
        lmxd_rank_track(r, rq->world, rq->rank, rq->step);
    }
    if (!rq->head)
        atomic_fetch_add(&r->bytes, e->len);
    char plan_id[2 * LMX_PLAN_ID_BYTES + 1];
    snprintf(plan_id, sizeof plan_id, "%s", lmx__plan_id_hex(r->plan));
    lmxd_plan_put(r);
    /* Zero copy: MHD sends from the entry's buffer and drops our reference when done with it, so
     * an entry evicted meanwhile stays alive until then. */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback_cls(e->len, e->body, release_sent, sb);
    if (!resp) {
        release_sent(sb);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", LMX_MEDIA_BATCH);
    MHD_add_response_header(resp, LMX_HDR_DIGEST, e->digest);
    MHD_add_response_header(resp, LMX_HDR_PLAN_ID, plan_id);
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Cache-Control", "public, max-age=31536000, immutable");
    MHD_add_response_header(resp, "Vary", "Accept-Encoding");
    if (e->zstd)
        MHD_add_response_header(resp, "Content-Encoding", "zstd");
    if (!rq->head)
        atomic_fetch_add(&s->bytes_out, e->len);
    enum MHD_Result ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}
