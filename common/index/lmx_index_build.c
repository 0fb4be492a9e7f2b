/* `longmixd index`: INPUTs -> jobs -> one shard per job (every thread tokenizes every input) ->
 * manifest, written last (proto/INDEX.md). The phases of lmx__index_build, in order: discover the
 * jobs, open the tokenizer, take the folder, load the previous manifest, mark unchanged inputs
 * for reuse, run the jobs, publish the manifest; a failed run removes what it created. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lmx_index_internal.h"

#define MAX_THREADS 256

static const char *str_or(const char *s, const char *dflt) { return s ? s : dflt; }
static const char *entry_str(json_t *e, const char *key) { return str_or(json_string_value(json_object_get(e, key)), ""); }
static uint64_t entry_u64(json_t *e, const char *key) { return (uint64_t)json_integer_value(json_object_get(e, key)); }

/* The jobs of every INPUT, sorted by path, this run's --shard slice only. */
static int discover(const lmx_index_options *opts, char *const *inputs, int n_inputs, lmx_job_list *jobs,
                    lmx_error *err)
{
    int rc = LMX_OK;
    for (int i = 0; rc == LMX_OK && i < n_inputs; i++)
        rc = lmx__jobs_add_input(jobs, inputs[i], err);
    if (rc == LMX_OK)
        rc = lmx__jobs_domain_from_path(jobs, opts->domain_from_path, err);
    if (rc == LMX_OK)
        rc = lmx__jobs_sort(jobs, err);
    if (rc == LMX_OK)
        rc = lmx__jobs_keep_slice(jobs, opts->shard_index, opts->shard_count, err);
    return rc;
}

/* Creates DIR/shards and takes the writers' lock. *created: 1 when this run may clean up after
 * a failure, 2 when it also created DIR. Returns the lock descriptor or an LMX_E* code. */
static int take_folder(const char *out_dir, int *created, lmx_error *err)
{
    char sh[4096];
    snprintf(sh, sizeof sh, "%s/shards", out_dir);
    *created = access(out_dir, F_OK) == 0 ? 1 : 2;
    int rc = lmx__mkdirs(sh, err), fd = rc == LMX_OK ? lmx__index_lock(out_dir, err) : rc;
    if (fd < 0) {
        *created = 0;
        return fd;
    }
    lmx__index_remove_stale_temps(out_dir);
    return fd;
}

/* The previous manifest (NULL when there is none); it must have the same tokenizer. */
static int load_previous(const char *out_dir, const lmx_tokenizer *tok, json_t **old, lmx_error *err)
{
    lmx_manifest_info info;
    int rc = lmx__manifest_load(out_dir, old, &info, err);
    if (rc == LMX_ENOTFOUND) {
        lmx__err_clear(err);
        return LMX_OK;
    }
    if (rc != LMX_OK) {
        char msg[LMX_ERROR_MESSAGE_MAX];
        snprintf(msg, sizeof msg, "%s", err->message);
        return lmx__err(err, rc, "%s (remove the folder to start over)", msg);
    }
    if (strcmp(info.tokenizer_identity, lmx__tokenizer_identity(tok)) != 0)
        return lmx__err(err, LMX_EINVAL, "%s was built with tokenizer %s, not %s: use another --out", out_dir,
                        info.tokenizer_identity, lmx__tokenizer_identity(tok));
    return LMX_OK;
}

/* Whether the previous entry e still holds job j: same path and domain rule, shard still there,
 * and the same size and mtime, or (a touched or copied input) the same content hash. */
static int reusable(const lmx_index_options *opts, lmx_job *j, json_t *e)
{
    char rule[600], sp[4096];
    lmx__job_domain_rule(opts, j, rule, sizeof rule);
    if (strcmp(entry_str(e, "input"), j->path) != 0 || strcmp(entry_str(e, "domain_rule"), rule) != 0)
        return 0;
    struct stat st;
    snprintf(sp, sizeof sp, "%s/shards/%s", opts->out_dir, str_or(json_string_value(json_object_get(e, "file")), "?"));
    if (entry_u64(e, "input_size") != j->size || stat(sp, &st) != 0 || (uint64_t)st.st_size != entry_u64(e, "size"))
        return 0;
    if (entry_u64(e, "input_mtime_ns") == j->mtime_ns)
        return 1;
    char hex[65];
    if (!(j->fmt->flags & LMX_INPUT_HASH_REUSE) || lmx__files_blake2b(j->files, j->n_files, hex) != 0 ||
        strcmp(hex, entry_str(e, "input_blake2b")) != 0)
        return 0;
    json_object_set_new(e, "input_mtime_ns", json_integer((json_int_t)j->mtime_ns));
    return 1;
}

static void mark_reused(lmx_build *B, json_t *old)
{
    json_t *os = json_object_get(old, "shards");
    for (size_t i = 0; i < B->jobs.n; i++) {
        lmx_job *j = &B->jobs.v[i];
        for (size_t k = 0; k < json_array_size(os) && !j->reused; k++)
            if (reusable(B->opts, j, json_array_get(os, k)))
                j->reused = json_array_get(os, k);
        if (!j->reused)
            B->in_total += j->size;
    }
}

/* Every thread: claims the next job (in order) and runs it; when none is left, tokenizes
 * batches of the jobs still running, until no job is running. */
static void *worker_main(void *arg)
{
    lmx_build *B = arg;
    lmx_build_worker wk = {.B = B};
    lmx_error e = {0};
    if (lmx__encoder_create(B->tok, &wk.enc, &e) != LMX_OK) {
        atomic_store(&B->failed, 1);
        fprintf(stderr, "longmixd index: %s\n", e.message);
        return NULL;
    }
    size_t k;
    while (!atomic_load(&B->failed) && lmx__pool_claim(&B->pool, &B->next_job, B->jobs.n, &k)) {
        lmx_job *j = &B->jobs.v[k];
        if (!j->reused && lmx__job_run(B, j, &wk) != LMX_OK)
            atomic_store(&B->failed, 1);
        atomic_fetch_add(&B->files_done, 1);
        lmx__pool_release(&B->pool);
    }
    lmx__pool_help(&B->pool, &wk);
    lmx__ids_free(&wk.ids);
    lmx__encoder_free(wk.enc);
    return NULL;
}

static void progress(lmx_build *B, double t0, int final)
{
    double dt = lmx__now() - t0;
    double mb = (double)atomic_load(&B->bytes_done) / 1e6;
    uint64_t in = atomic_load(&B->in_done);
    char eta[48] = "";
    if (!final && in > 0 && dt > 1 && B->in_total > in) {
        double s = (double)(B->in_total - in) / ((double)in / dt);
        if (s < 3600)
            snprintf(eta, sizeof eta, ", ETA %d:%02d", (int)s / 60, (int)s % 60);
        else
            snprintf(eta, sizeof eta, ", ETA %dh%02dm", (int)(s / 3600), (int)s % 3600 / 60);
    }
    fprintf(stderr, "%sindexed %zu/%zu files, %.1f MB, %llu tokens, %.1f MB/s%s%s", final ? "" : "\r",
            (size_t)atomic_load(&B->files_done), B->jobs.n, mb, (unsigned long long)atomic_load(&B->tokens_done),
            dt > 0 ? mb / dt : 0.0, eta, final ? "\n" : "   ");
}

/* Threads serve every input: a single large file is tokenized by all of them. Returns the first
 * job error in job order. */
static int run_jobs(lmx_build *B, lmx_error *err)
{
    int nt = B->opts->threads < 1 ? 1 : B->opts->threads > MAX_THREADS ? MAX_THREADS : B->opts->threads;
    pthread_t th[MAX_THREADS];
    double t0 = lmx__now();
    for (int t = 0; t < nt; t++)
        if (pthread_create(&th[t], NULL, worker_main, B) != 0) {
            nt = t; /* fewer threads; with none, this thread does the work */
            break;
        }
    if (nt == 0)
        worker_main(B);
    while (B->opts->progress && atomic_load(&B->files_done) < B->jobs.n && !atomic_load(&B->failed)) {
        progress(B, t0, 0);
        nanosleep(&(struct timespec){0, 250000000L}, NULL);
    }
    for (int t = 0; t < nt; t++)
        pthread_join(th[t], NULL);
    if (B->opts->progress)
        fputc('\n', stderr);
    for (size_t i = 0; i < B->jobs.n; i++)
        if (B->jobs.v[i].err.code) {
            *err = B->jobs.v[i].err;
            return err->code;
        }
    return atomic_load(&B->failed) ? lmx__err(err, LMX_EINTERNAL, "index: a worker failed") : LMX_OK;
}

static json_t *tokenizer_json(const lmx_build *B)
{
    json_t *tj = json_object();
    json_object_set_new(tj, "kind", json_string(lmx__tokenizer_kind(B->tok)));
    json_object_set_new(tj, "identity", json_string(lmx__tokenizer_identity(B->tok)));
    json_object_set_new(tj, "path", json_string(B->opts->tokenizer));
    json_object_set_new(tj, "vocab_size", json_integer(lmx__tokenizer_vocab_size(B->tok)));
    json_object_set_new(tj, "bos", json_integer(lmx__tokenizer_bos(B->tok)));
    json_object_set_new(tj, "eos", json_integer(lmx__tokenizer_eos(B->tok)));
    /* the model's document-separator convention (plan defaults) and the token strings */
    json_object_set_new(tj, "add_bos", json_boolean(lmx__tokenizer_default_bos(B->tok)));
    json_object_set_new(tj, "add_eos", json_boolean(lmx__tokenizer_default_eos(B->tok)));
    for (int k = 0; k < 2; k++) {
        size_t n;
        const char *s = lmx__tokenizer_token_str(B->tok, k ? lmx__tokenizer_eos(B->tok) : lmx__tokenizer_bos(B->tok), &n);
        json_object_set_new(tj, k ? "eos_token" : "bos_token", s ? json_stringn(s, n) : json_null());
    }
    return tj;
}

/* The new manifest: previous entries for inputs not in this run, then this run's (reused or
 * new); written after the tokenizer copy; then unlisted shards go. */
static int publish(lmx_build *B, json_t *old, double t0, lmx_error *err)
{
    json_t *shards = json_array(), *e;
    size_t k;
    uint64_t skipped = 0, reused = 0;
    json_array_foreach(json_object_get(old, "shards"), k, e)
    {
        int mine = 0;
        for (size_t i = 0; i < B->jobs.n && !mine; i++)
            mine = strcmp(B->jobs.v[i].path, entry_str(e, "input")) == 0;
        if (!mine)
            json_array_append(shards, e);
    }
    for (size_t i = 0; i < B->jobs.n; i++) {
        lmx_job *j = &B->jobs.v[i];
        if (j->reused || j->entry)
            json_array_append(shards, j->reused ? j->reused : j->entry);
        reused += j->reused != NULL;
        skipped += j->skipped;
    }
    json_t *m = lmx__manifest_make(tokenizer_json(B), B->token_bytes, shards);
    json_decref(shards);
    int rc = lmx__index_copy_tokenizer(B->opts->tokenizer, B->opts->out_dir, err);
    if (rc == LMX_OK)
        rc = lmx__manifest_write(B->opts->out_dir, m, err);
    if (rc == LMX_OK) {
        lmx__index_remove_unlisted(B->opts->out_dir, m);
        fprintf(stderr,
                "longmixd index: %zu inputs (%llu unchanged), %llu documents, %llu tokens, %llu records skipped, %.1f s -> %s\n",
                B->jobs.n, (unsigned long long)reused, (unsigned long long)entry_u64(m, "total_docs"),
                (unsigned long long)entry_u64(m, "total_tokens"), (unsigned long long)skipped, lmx__now() - t0,
                B->opts->out_dir);
    }
    json_decref(m);
    return rc;
}

/* A failed run leaves nothing behind: the shards it finished (not listed by the published
 * manifest) and the folders it created. */
static void clean_failed(lmx_build *B, json_t *old, int created)
{
    const char *out = B->opts->out_dir;
    char p[4200];
    for (size_t i = 0; i < B->jobs.n; i++) {
        const char *file = json_string_value(json_object_get(B->jobs.v[i].entry, "file"));
        if (!file || lmx__manifest_lists(old, file))
            continue;
        snprintf(p, sizeof p, "%s/shards/%s", out, file);
        unlink(p);
    }
    if (old)
        return;
    snprintf(p, sizeof p, "%s/shards", out);
    rmdir(p);
    if (created == 2) {
        snprintf(p, sizeof p, "%s/.lock", out);
        unlink(p);
        rmdir(out);
    }
}

/* Everything after discovery and the tokenizer: the folder, reuse, the jobs, the manifest. */
static int build_into_folder(lmx_build *B, lmx_error *err)
{
    int created = 0;
    json_t *old = NULL;
    int lock_fd = take_folder(B->opts->out_dir, &created, err);
    int rc = lock_fd < 0 ? lock_fd : load_previous(B->opts->out_dir, B->tok, &old, err);
    double t0 = lmx__now();
    if (rc == LMX_OK) {
        lmx__jobs_stat(&B->jobs);
        mark_reused(B, old);
        rc = run_jobs(B, err);
    }
    if (rc == LMX_OK)
        rc = publish(B, old, t0, err);
    if (rc != LMX_OK && created && lock_fd >= 0)
        clean_failed(B, old, created);
    if (lock_fd >= 0)
        close(lock_fd);
    json_decref(old);
    return rc;
}

int lmx__index_build(const lmx_index_options *opts_in, char *const *inputs, int n_inputs, lmx_error *err)
{
    /* Documented default for domain_field (NULL would be dereferenced by every worker). */
    lmx_index_options opts = *opts_in;
    if (!opts.domain_field || !*opts.domain_field)
        opts.domain_field = "meta.redpajama_set_name";
    if (!opts.text_field || !*opts.text_field)
        opts.text_field = "text";
    if (opts.id_field && !*opts.id_field)
        opts.id_field = NULL;
    if (n_inputs < 1)
        return lmx__err(err, LMX_EINVAL, "index: no INPUT given");
    if (sodium_init() < 0)
        return lmx__err(err, LMX_EINTERNAL, "libsodium failed to initialize");
    lmx_build B = {.opts = &opts};
    lmx_tokenizer *tok = NULL;
    int nt = opts.threads < 1 ? 1 : opts.threads > MAX_THREADS ? MAX_THREADS : opts.threads;
    if (lmx__pool_init(&B.pool, 2 * (size_t)nt, lmx__job_batch_work) != 0)
        return lmx__err(err, LMX_EINTERNAL, "index: cannot initialize the worker pool");
    int rc = discover(&opts, inputs, n_inputs, &B.jobs, err);
    lmx_tokenizer_options topts = {.match_added_tokens = opts.match_added_tokens};
    if (rc == LMX_OK)
        rc = lmx__tokenizer_open(opts.tokenizer, &topts, &tok, err);
    if (rc == LMX_OK) {
        B.tok = tok;
        B.token_bytes = lmx__tokenizer_vocab_size(tok) <= 65536 ? 2 : 4;
        rc = build_into_folder(&B, err);
    }
    lmx__pool_destroy(&B.pool);
    lmx__jobs_free(&B.jobs);
    lmx__tokenizer_free(tok);
    return rc;
}
