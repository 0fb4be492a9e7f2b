/* Internals shared by the files of common/index/ (declared once, here). Not used outside. */
#ifndef LMX_INDEX_INTERNAL_H
#define LMX_INDEX_INTERNAL_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>

#include "lmx_index.h"
#include "lmx_inputs.h"
#include "lmx_pool.h"
#include "lmx_tokenizer.h"

/* ---- jobs and their discovery (lmx_index_discover.c) ----
 * One job = one shard: an input file, a folder of .txt files, a Megatron pair, ... */
typedef struct lmx_job {
    const lmx_input_format *fmt;
    char *path;    /* the job's input as reached from INPUT (the folder for .txt, PREFIX.bin) */
    char *domain;  /* forced domain or NULL */
    char **files;  /* every file the job reads (stat, access and reuse key): path, the .txt
                      files, PREFIX.bin + PREFIX.idx */
    size_t n_files;
    uint64_t size, mtime_ns;
    json_t *entry;  /* result: the manifest entry (own reference) */
    json_t *reused; /* borrowed from the previous manifest when the input is unchanged */
    lmx_error err;
    uint64_t skipped;
} lmx_job;

typedef struct lmx_job_list {
    lmx_job *v;
    size_t n, cap;
    int domain_later; /* --domain-from-path will set domains: inputs needing one are let through */
} lmx_job_list;

/* Adds the jobs of one INPUT argument (file, folder, DOMAIN=PATH, Megatron PREFIX). */
int lmx__jobs_add_input(lmx_job_list *jobs, const char *arg, lmx_error *err);
/* --domain-from-path: the domain of every job not forced by DOMAIN= from its path; a job whose
 * path does not match the pattern is LMX_EINVAL naming both. */
int lmx__jobs_domain_from_path(lmx_job_list *jobs, const char *pattern, lmx_error *err);
/* Sorts by path; a path twice is LMX_EINVAL. */
int lmx__jobs_sort(lmx_job_list *jobs, lmx_error *err);
/* --shard I/N: keeps the jobs k with k % N == I (frees the others). */
int lmx__jobs_keep_slice(lmx_job_list *jobs, uint32_t index, uint32_t count, lmx_error *err);
/* Sums the sizes and takes the newest mtime of each job's files. */
void lmx__jobs_stat(lmx_job_list *jobs);
void lmx__jobs_free(lmx_job_list *jobs);
/* How a job's records become documents: the domain ("forced:NAME", "folder", "field:PATH"), then
 * ";text:PATH" / ";id:PATH" / ";dtype:N" when not the defaults and the format has fields (so indexes written before these
 * options keep their key). Part of the reuse key: another --domain-field, DOMAIN=,
 * --domain-from-path, --text-field, --id-field or --token-dtype re-indexes. */
void lmx__job_domain_rule(const lmx_index_options *opts, const lmx_job *j, char *out, size_t n);

/* ---- shard writer (lmx_shard_writer.c; layout in proto/INDEX.md) ---- */
typedef struct lmx_shard_writer {
    char *tmp_path, *final_path;
    FILE *f;
    uint32_t token_bytes;
    uint64_t n_tokens, n_docs;
    /* The sections that follow the tokens are spilled to unlinked temporary files beside the
     * shard and copied in at finish, so memory does not grow with the documents of an input. */
    FILE *docs;     /* document records; SOURCE holds the source's ordinal (+ n_domains at finish) */
    char **strings; /* domains first (n_domains), then sources */
    FILE *ids;      /* per document: u64 end offset of its id in the blob (ids section) */
    FILE *id_blob;  /* the documents' ids, each NUL-terminated ("" = none) */
    uint64_t blob_len;
    int has_ids;     /* some document has an id: the shard gets an ids section */
    uint32_t n_strings, n_domains, cap_strings;
    lmx_domain_stats *dstats; /* per shard-local domain */
} lmx_shard_writer;

/* Creates out_dir/shards/NAME.tmp.PID with a placeholder header. */
int lmx__shard_open(lmx_shard_writer *w, const char *out_dir, const char *name, uint32_t token_bytes,
                    lmx_error *err);
/* One document whose n_tokens ids are packed little-endian in token_bytes each. */
int lmx__shard_add(lmx_shard_writer *w, const uint8_t *toks, uint64_t n_tokens, const char *domain,
                   const char *source, uint64_t line, const char *doc_id, lmx_error *err);
/* Sections, header, fsync; hashes the file as written and renames it into place. */
int lmx__shard_finish(lmx_shard_writer *w, char hex_sum[65], uint64_t *file_size, lmx_error *err);
/* Removes the temp file of an unfinished shard. */
void lmx__shard_abort(lmx_shard_writer *w);
void lmx__shard_free(lmx_shard_writer *w);
/* Packs n ids into out (n * token_bytes bytes, little endian). */
void lmx__pack_ids(uint8_t *out, const uint32_t *ids, size_t n, uint32_t token_bytes);

/* ---- manifest (lmx_index_manifest.c): the one loader and validator ---- */
typedef struct lmx_manifest_info {
    uint32_t token_bytes, bos, eos, vocab_size;
    const char *tokenizer_identity; /* inside the manifest */
    /* separators convention and strings (optional in the manifest: absent in indexes from
     * before #12 = BOS when there is one, no EOS; strings NULL) */
    int add_bos, add_eos;
    const char *bos_token, *eos_token; /* inside the manifest, or NULL */
} lmx_manifest_info;

/* Loads DIR/manifest.json and checks every field the format requires (proto/INDEX.md):
 * LMX_ENOTFOUND (missing), LMX_EFORMAT (invalid JSON, wrong format, a required field missing or
 * of the wrong type, naming the field), LMX_EUNSUPPORTED (version). *out is a new reference;
 * info (may be NULL) points into it. */
int lmx__manifest_load(const char *dir, json_t **out, lmx_manifest_info *info, lmx_error *err);
/* The manifest over shard entries (borrowed; sorted by input, domains and totals summed); takes
 * the tokenizer object. */
json_t *lmx__manifest_make(json_t *tokenizer, uint32_t token_bytes, json_t *shards);
/* Writes m to DIR/manifest.json atomically. */
int lmx__manifest_write(const char *dir, json_t *m, lmx_error *err);
/* Whether manifest m (may be NULL) lists shard file name. */
int lmx__manifest_lists(json_t *m, const char *file);
/* Orders json_t* entries by "input" (qsort comparator). */
int lmx__entry_cmp_input(const void *a, const void *b);
/* The stats object {"docs","tokens","long_tokens","buckets":[9]} of s. */
json_t *lmx__stats_to_json(const lmx_domain_stats *s);

/* ---- the verification gate (lmx_index_gate.c) ----
 * paths (n, borrowed, must outlive the gate) name the shards in fault reports. */
lmx_gate *lmx__gate_new(size_t n, const char **paths, double wait_s);
void lmx__gate_free(lmx_gate *g);
/* Before a read of shard i: returns at once when it is verified, else waits (until_done: until
 * it is marked; else up to wait_s) and notes this thread's fault if it is not good by then. */
void lmx__gate_pass(lmx_gate *g, size_t shard, int until_done);
/* A damaged document record (lmx_index_read.c): the first since lmx__gate_begin becomes this
 * thread's LMX_EFORMAT fault (unless another came first) and its message is kept. */
void lmx__gate_record_fault(const char *path, const char *msg);
/* The shard of this thread's first damaged record since lmx__gate_begin, or NULL. */
const char *lmx__gate_record_fault_shard(void);

/* ---- the index folder (lmx_index_dir.c) ---- */
/* Exclusive flock on DIR/.lock for the whole run: the descriptor (>= 0) or an LMX_E* code. */
int lmx__index_lock(const char *out_dir, lmx_error *err);
/* Removes NAME.tmp.PID files of dead processes in DIR and DIR/shards. */
void lmx__index_remove_stale_temps(const char *out_dir);
/* Removes .lmxs files in DIR/shards that manifest m does not list. */
void lmx__index_remove_unlisted(const char *out_dir, json_t *m);
/* Copies tokenizer.json (+ tokenizer_config.json beside it) into DIR; no-op for "bytes". */
int lmx__index_copy_tokenizer(const char *tokenizer_json, const char *out_dir, lmx_error *err);

/* ---- one build run (lmx_index_build.c) and its jobs (lmx_index_job.c) ---- */
typedef struct lmx_build {
    const lmx_index_options *opts;
    const lmx_tokenizer *tok;
    lmx_job_list jobs;
    uint32_t token_bytes;
    atomic_int failed;
    atomic_uint_fast64_t bytes_done, tokens_done, files_done;
    atomic_uint_fast64_t in_done; /* input bytes read (compressed), for the ETA */
    uint64_t in_total;            /* input bytes of the jobs to (re)index */
    size_t next_job;              /* under the pool's claim */
    lmx_pool pool;
} lmx_build;

/* A thread's tokenizing state. */
typedef struct lmx_build_worker {
    lmx_build *B;
    lmx_encoder *enc;
    lmx_ids ids;
} lmx_build_worker;

/* Runs one job: reads the input through the pool into a new shard; sets j->entry, or j->err
 * and returns its code. An empty or unreadable input is a whole-input rejection. */
int lmx__job_run(lmx_build *B, lmx_job *j, lmx_build_worker *wk);
/* The pool's work function: processes one batch of records (any thread). */
void lmx__job_batch_work(lmx_pool_item *it, void *worker);

#endif
