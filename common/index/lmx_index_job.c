/* One job: an input's records -> one shard, tokenized by every thread of the run.
 *
 * The thread that claims a job (its producer) reads the input (inputs/: decompression, line
 * splitting, provenance) into batches of records and submits them to the run's pool; any thread
 * (the producer too, while its window is full) parses and tokenizes a batch with its own
 * encoder; the producer appends finished batches to the shard strictly in input order. So the
 * shard does not depend on the thread count, and records are written, rejected or failed in
 * input order: the first error in input order wins. */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmx_index_internal.h"

#define BATCH_BYTES ((size_t)1 << 20)
#define BATCH_RECS 1024
#define NONE ((size_t)-1)

/* A record inside a batch; its strings and bytes live in the batch's buffers. */
typedef struct brec {
    int kind;        /* enum lmx_rec_kind in; LMX_REC_TOKENS (a document) or _BAD or FATAL out */
    size_t off, len; /* RAW/TEXT bytes in text */
    size_t src_off;  /* source path in strs */
    size_t dom_off;  /* domain in strs, or NONE */
    size_t why_off;  /* BAD: the reason in strs */
    size_t id_off;   /* the document's --id-field value in strs, or NONE */
    size_t tok_off;  /* a document: packed ids in toks */
    uint64_t n_tokens, where, bytes;
} brec;

#define FATAL (-1) /* brec.kind: tokenizing failed (err); the batch stops there */

typedef struct job_ctx job_ctx;

typedef struct batch {
    lmx_pool_item item; /* first: the pool hands it back as this batch */
    job_ctx *jc;
    lmx_buf text, toks, strs;
    brec *recs;
    size_t n, cap, n_res; /* n_res: records processed (processing stops after a FATAL) */
    lmx_error err;        /* FATAL */
} batch;

struct job_ctx {
    lmx_build *B;
    lmx_job *j;
    lmx_input *in;
    lmx_shard_writer *w;
    int ended;        /* the reader is done (end, error) or a record failed the job */
    int rc;           /* the first failure in input order */
    lmx_error *err;
    int read_rc;      /* an error of the reader: reported after the records before it */
    lmx_error read_err;
    uint64_t in_seen; /* in->bytes_read already added to the run's in_done */
};

static void batch_free(batch *b)
{
    if (!b)
        return;
    lmx__buf_free(&b->text);
    lmx__buf_free(&b->toks);
    lmx__buf_free(&b->strs);
    free(b->recs);
    free(b);
}

/* Appends s (NUL-terminated) to b->strs, reusing *last when it holds the same string; the
 * offset, or NONE when out of memory. */
static size_t put_str(batch *b, const char *s, size_t *last)
{
    if (*last != NONE && strcmp((const char *)b->strs.data + *last, s) == 0)
        return *last;
    size_t off = b->strs.len;
    if (lmx__buf_append(&b->strs, s, strlen(s) + 1) != LMX_OK)
        return NONE;
    return *last = off;
}

/* Copies one record of the reader into b. */
static int batch_add(batch *b, const lmx_input_rec *rec, size_t *last_src, size_t *last_dom, lmx_error *err)
{
    const lmx_job *j = b->jc->j;
    uint32_t tb = b->jc->B->token_bytes;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        brec *v = realloc(b->recs, cap * sizeof *v);
        if (!v)
            return lmx__err(err, LMX_ENOMEM, "out of memory");
        b->recs = v;
        b->cap = cap;
    }
    brec *x = &b->recs[b->n];
    const char *dom = j->domain ? j->domain : rec->domain;
    *x = (brec){.kind = rec->kind, .off = b->text.len, .len = rec->len, .where = rec->where, .bytes = rec->bytes,
                .dom_off = NONE, .id_off = NONE, .tok_off = b->toks.len, .n_tokens = rec->n_ids};
    x->src_off = put_str(b, rec->source, last_src);
    int oom = x->src_off == NONE || (dom && (x->dom_off = put_str(b, dom, last_dom)) == NONE);
    if (rec->doc_id && rec->kind != LMX_REC_BAD) {
        x->id_off = b->strs.len;
        oom |= lmx__buf_append(&b->strs, rec->doc_id, strlen(rec->doc_id) + 1) != LMX_OK;
    }
    if (rec->kind == LMX_REC_BAD) {
        x->why_off = b->strs.len;
        oom |= lmx__buf_append(&b->strs, rec->why, strlen(rec->why) + 1) != LMX_OK;
    } else if (rec->kind == LMX_REC_RAW || rec->kind == LMX_REC_TEXT) {
        oom |= rec->len && lmx__buf_append(&b->text, rec->data, rec->len) != LMX_OK;
    } else if (rec->kind == LMX_REC_TOKENS) {
        oom |= lmx__buf_reserve(&b->toks, rec->n_ids * tb) != LMX_OK;
        if (!oom) {
            lmx__pack_ids(b->toks.data + b->toks.len, rec->ids, rec->n_ids, tb);
            b->toks.len += rec->n_ids * tb;
        }
    }
    if (oom)
        return lmx__err(err, LMX_ENOMEM, "%s:%llu: out of memory", rec->source, (unsigned long long)rec->where);
    b->n++;
    return LMX_OK;
}

/* The pool's producer: the next batch of records, or NULL once the reader is done. */
static lmx_pool_item *produce(void *arg)
{
    job_ctx *jc = arg;
    if (jc->ended)
        return NULL;
    batch *b = calloc(1, sizeof *b);
    if (!b) {
        jc->read_rc = lmx__err(&jc->read_err, LMX_ENOMEM, "out of memory");
        jc->ended = 1;
        return NULL;
    }
    b->jc = jc;
    b->text.cap_limit = LMX_INPUT_MAX_RECORD + BATCH_BYTES;
    b->toks.cap_limit = (size_t)1 << 34;
    size_t last_src = NONE, last_dom = NONE;
    lmx_input_rec rec;
    while (!jc->ended && b->n < BATCH_RECS && b->text.len + b->toks.len < BATCH_BYTES) {
        memset(&rec, 0, offsetof(lmx_input_rec, why));
        int got = jc->in->fmt->next(jc->in, &rec, &jc->read_err);
        if (got > 0 && batch_add(b, &rec, &last_src, &last_dom, &jc->read_err) != LMX_OK)
            got = jc->read_err.code;
        if (got < 0)
            jc->read_rc = got;
        jc->ended = got <= 0;
    }
    atomic_fetch_add(&jc->B->in_done, jc->in->bytes_read - jc->in_seen);
    jc->in_seen = jc->in->bytes_read;
    if (b->n == 0) {
        batch_free(b);
        return NULL;
    }
    return &b->item;
}

/* Tokenizes text into b->toks as record x's document; FATAL on an encoder error. */
static void tokenize(batch *b, brec *x, const char *text, size_t len, lmx_build_worker *wk)
{
    uint32_t tb = wk->B->token_bytes;
    wk->ids.n = 0;
    int rc = lmx__encode(wk->enc, text, len, &wk->ids, &b->err);
    if (rc == LMX_OK && lmx__buf_reserve(&b->toks, wk->ids.n * tb) != LMX_OK)
        rc = lmx__err(&b->err, LMX_ENOMEM, "out of memory");
    if (rc != LMX_OK) {
        const char *src = (const char *)b->strs.data + x->src_off;
        x->kind = FATAL;
        if (x->where)
            lmx__err_prefix(&b->err, "%s:%llu: ", src, (unsigned long long)x->where);
        else
            lmx__err_prefix(&b->err, "%s: ", src);
        return;
    }
    x->kind = LMX_REC_TOKENS;
    x->tok_off = b->toks.len;
    x->n_tokens = wk->ids.n;
    lmx__pack_ids(b->toks.data + b->toks.len, wk->ids.v, wk->ids.n, tb);
    b->toks.len += wk->ids.n * tb;
    atomic_fetch_add(&wk->B->tokens_done, wk->ids.n);
}

/* Marks x bad with reason why (copied into b->strs); FATAL when out of memory. */
static void mark_bad(batch *b, brec *x, const char *why)
{
    x->kind = LMX_REC_BAD;
    x->why_off = b->strs.len;
    if (lmx__buf_append(&b->strs, why, strlen(why) + 1) != LMX_OK) {
        x->kind = FATAL;
        lmx__err(&b->err, LMX_ENOMEM, "out of memory");
    }
}

/* A RAW or TEXT record: its text and domain, then its tokens. */
static void process_text(batch *b, brec *x, lmx_input_parsed *parsed, const lmx_input_params *p, lmx_build_worker *wk)
{
    const char *text = (const char *)b->text.data + x->off;
    size_t len = x->len;
    if (x->kind == LMX_REC_RAW) {
        b->jc->j->fmt->parse(p, text, len, parsed);
        if (!parsed->text) {
            mark_bad(b, x, parsed->why);
            return;
        }
        text = parsed->text;
        len = parsed->text_len;
        if (parsed->doc_id) {
            x->id_off = b->strs.len;
            if (lmx__buf_append(&b->strs, parsed->doc_id, strlen(parsed->doc_id) + 1) != LMX_OK) {
                mark_bad(b, x, "out of memory");
                return;
            }
        }
        if (x->dom_off == NONE && parsed->domain) {
            x->dom_off = b->strs.len;
            if (lmx__buf_append(&b->strs, parsed->domain, strlen(parsed->domain) + 1) != LMX_OK) {
                mark_bad(b, x, "out of memory");
                return;
            }
        }
    }
    if (x->dom_off == NONE || !b->strs.data[x->dom_off]) {
        char why[LMX_INPUT_WHY_MAX];
        snprintf(why, sizeof why, "domain field '%s' missing or not a string", p->domain_field);
        mark_bad(b, x, why);
        return;
    }
    tokenize(b, x, text, len, wk);
}

void lmx__job_batch_work(lmx_pool_item *it, void *worker)
{
    batch *b = (batch *)it;
    const lmx_input_params *p = b->jc->in->params;
    lmx_input_parsed parsed = {0};
    b->n_res = 0;
    for (size_t i = 0; i < b->n; i++) {
        brec *x = &b->recs[i];
        b->n_res = i + 1;
        if (x->kind == LMX_REC_RAW || x->kind == LMX_REC_TEXT)
            process_text(b, x, &parsed, p, worker);
        if (x->kind == FATAL)
            break;
    }
    lmx__buf_free(&parsed.scratch[0]);
    lmx__buf_free(&parsed.scratch[1]);
    lmx__buf_free(&parsed.scratch[2]);
}

/* A bad record: with --on-error=skip it is counted and reported, else it fails the job. */
static int reject(lmx_build *B, lmx_job *j, const char *why, const char *source, uint64_t where, lmx_error *err)
{
    char at[32] = "";
    if (where)
        snprintf(at, sizeof at, ":%llu", (unsigned long long)where);
    if (B->opts->on_error == LMX_ON_ERROR_SKIP) {
        if (j->skipped++ < 5)
            fprintf(stderr, "longmixd index: skipped %s%s: %s\n", source, at, why);
        return LMX_OK;
    }
    return lmx__err(err, LMX_EINVAL, "%s%s: %s (use --on-error=skip to skip such records)", source, at, why);
}

/* The pool's consumer: appends a finished batch to the shard (in order). */
static int consume(void *arg, lmx_pool_item *it)
{
    job_ctx *jc = arg;
    batch *b = (batch *)it;
    const char *strs = (const char *)b->strs.data;
    uint64_t bytes = 0;
    for (size_t i = 0; jc->rc == LMX_OK && i < b->n_res; i++) {
        const brec *x = &b->recs[i];
        bytes += x->bytes;
        if (x->kind == LMX_REC_BAD)
            jc->rc = reject(jc->B, jc->j, strs + x->why_off, strs + x->src_off, x->where, jc->err);
        else if (x->kind == FATAL) {
            *jc->err = b->err;
            jc->rc = b->err.code ? b->err.code : LMX_EINTERNAL;
        } else if (x->kind == LMX_REC_TOKENS)
            jc->rc = lmx__shard_add(jc->w, b->toks.data + x->tok_off, x->n_tokens, strs + x->dom_off,
                                    strs + x->src_off, x->where, x->id_off == NONE ? NULL : strs + x->id_off,
                                    jc->err);
    }
    atomic_fetch_add(&jc->B->bytes_done, bytes);
    batch_free(b);
    if (jc->rc != LMX_OK)
        jc->ended = 1;
    return jc->rc != LMX_OK;
}

/* Reads the whole input into the shard; the input's hash in hex on success. */
static int read_input(lmx_build *B, lmx_job *j, lmx_shard_writer *w, lmx_build_worker *wk, const char **kind,
                      char hex[65])
{
    lmx_input_params p = {.path = j->path, .files = j->files, .n_files = j->n_files, .domain = j->domain,
                          .domain_field = B->opts->domain_field, .text_field = B->opts->text_field,
                          .id_field = B->opts->id_field, .token_dtype = B->opts->token_dtype,
                          .vocab_size = lmx__tokenizer_vocab_size(B->tok)};
    job_ctx jc = {.B = B, .j = j, .w = w, .err = &j->err};
    int rc = j->fmt->open(&p, &jc.in, &j->err);
    if (rc == LMX_OK) {
        jc.in->fmt = j->fmt;
        jc.in->params = &p;
        static const lmx_pool_stream_ops ops = {produce, consume};
        lmx__pool_run_stream(&B->pool, &ops, &jc, wk);
        rc = jc.rc;
        if (rc == LMX_OK && jc.read_rc != LMX_OK) {
            rc = jc.read_rc;
            j->err = jc.read_err;
        }
    }
    if (rc == LMX_OK)
        rc = j->fmt->finish(jc.in, hex, &j->err);
    if (jc.in) {
        *kind = jc.in->kind ? jc.in->kind : j->fmt->name;
        j->fmt->close(jc.in);
    }
    if (j->size > jc.in_seen) /* progress: inputs that count as they are read add the rest */
        atomic_fetch_add(&B->in_done, j->size - jc.in_seen);
    return rc;
}

/* An input that cannot be read is a whole-input rejection: with --on-error=skip it is counted
 * and gets no shard (it is looked at again on the next run). 1 when rejected. */
static int unreadable(lmx_build *B, lmx_job *j, int *rc)
{
    for (size_t i = 0; i < j->n_files; i++) {
        if (access(j->files[i], R_OK) == 0)
            continue;
        int e = errno;
        if (B->opts->on_error == LMX_ON_ERROR_SKIP) {
            j->skipped++;
            fprintf(stderr, "longmixd index: skipped %s: cannot read it: %s\n", j->files[i], strerror(e));
            *rc = LMX_OK;
        } else {
            *rc = lmx__err(&j->err, LMX_EIO, "cannot read %s: %s (use --on-error=skip to skip such inputs)",
                           j->files[i], strerror(e));
        }
        return 1;
    }
    return 0;
}

/* The shard's file name: a hash of the input path, size and mtime, so a changed input gets a new
 * file and the published manifest's shards stay intact until the new manifest replaces it. */
static void shard_name(const lmx_job *j, char out[32])
{
    uint8_t h[8], key[16];
    char hex[17];
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, sizeof h);
    crypto_generichash_update(&hs, (const uint8_t *)j->path, strlen(j->path) + 1);
    lmx__put64(key, j->size);
    lmx__put64(key + 8, j->mtime_ns);
    crypto_generichash_update(&hs, key, sizeof key);
    crypto_generichash_final(&hs, h, sizeof h);
    lmx__hex(h, sizeof h, hex);
    snprintf(out, 32, "%s.lmxs", hex);
}

static json_t *make_entry(lmx_build *B, const lmx_job *j, const lmx_shard_writer *w, const char *name,
                          const char *kind, const char *input_hash, const char *sum, uint64_t size)
{
    json_t *e = json_object(), *doms = json_object();
    char rule[600];
    lmx__job_domain_rule(B->opts, j, rule, sizeof rule);
    json_object_set_new(e, "file", json_string(name));
    json_object_set_new(e, "input", json_string(j->path));
    json_object_set_new(e, "kind", json_string(kind));
    json_object_set_new(e, "input_size", json_integer((json_int_t)j->size));
    json_object_set_new(e, "input_mtime_ns", json_integer((json_int_t)j->mtime_ns));
    json_object_set_new(e, "input_blake2b", json_string(input_hash));
    json_object_set_new(e, "domain_rule", json_string(rule));
    json_object_set_new(e, "docs", json_integer((json_int_t)w->n_docs));
    json_object_set_new(e, "tokens", json_integer((json_int_t)w->n_tokens));
    json_object_set_new(e, "skipped", json_integer((json_int_t)j->skipped));
    json_object_set_new(e, "size", json_integer((json_int_t)size));
    json_object_set_new(e, "blake2b", json_string(sum));
    for (uint32_t d = 0; d < w->n_domains; d++)
        json_object_set_new(doms, w->strings[d], lmx__stats_to_json(&w->dstats[d]));
    json_object_set_new(e, "domains", doms);
    return e;
}

int lmx__job_run(lmx_build *B, lmx_job *j, lmx_build_worker *wk)
{
    int rc = LMX_OK;
    if (unreadable(B, j, &rc))
        return rc;
    char name[32], sum[65], input_hash[65] = "";
    const char *kind = j->fmt->name;
    shard_name(j, name);
    lmx_shard_writer w;
    rc = lmx__shard_open(&w, B->opts->out_dir, name, B->token_bytes, &j->err);
    if (rc == LMX_OK)
        rc = read_input(B, j, &w, wk, &kind, input_hash);
    if (rc == LMX_EFORMAT && B->opts->on_error == LMX_ON_ERROR_SKIP) {
        /* a corrupt or truncated input (the reader's error): rejected whole, like an unreadable
         * one, so no partial shard stands for it; looked at again on the next run */
        j->skipped++;
        fprintf(stderr, "longmixd index: skipped corrupt input: %s\n", j->err.message);
        j->err = (lmx_error){0};
        lmx__shard_abort(&w);
        lmx__shard_free(&w);
        return LMX_OK;
    }
    if (rc == LMX_OK && w.n_docs == 0 && j->skipped == 0) {
        if (B->opts->on_error == LMX_ON_ERROR_SKIP) {
            j->skipped++;
            fprintf(stderr, "longmixd index: skipped %s: no documents (empty input)\n", j->path);
            lmx__shard_abort(&w);
            lmx__shard_free(&w);
            return LMX_OK;
        }
        rc = lmx__err(&j->err, LMX_EINVAL, "%s: no documents (empty input; use --on-error=skip to skip such inputs)",
                      j->path);
    }
    uint64_t size = 0;
    if (rc == LMX_OK)
        rc = lmx__shard_finish(&w, sum, &size, &j->err);
    if (rc == LMX_OK)
        j->entry = make_entry(B, j, &w, name, kind, input_hash, sum, size);
    else
        lmx__shard_abort(&w);
    lmx__shard_free(&w);
    return rc;
}
