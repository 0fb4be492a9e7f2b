/* The index (proto/INDEX.md): a reader that maps shards without reading them whole, the
 * statistics, verification, and the writer (`longmixd index`). */
#ifndef LMX_INDEX_H
#define LMX_INDEX_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "lmx_error.h"
#include "lmx_proto.h"

#include <jansson.h>

typedef struct lmx_domain_stats {
    uint64_t docs, tokens, long_tokens;
    uint64_t buckets[LMX_N_BUCKETS];
} lmx_domain_stats;

/* Bucket of a document of n tokens (K = 1024). */
int lmx__bucket_of(uint64_t n_tokens);
/* Adds one document of n tokens to s (long = at least long_threshold tokens). */
void lmx__stats_add(lmx_domain_stats *s, uint64_t n_tokens, uint64_t long_threshold);

/* ---- reader ---- */
typedef struct lmx_index lmx_index;

typedef struct lmx_doc {
    uint64_t id;
    uint64_t n_tokens;
    uint32_t domain;      /* global domain index (lmx__index_domain_name) */
    uint32_t token_bytes; /* 2 or 4 */
    const uint8_t *tokens; /* n_tokens little-endian ids inside the mapping */
    const char *source;   /* NUL-terminated, owned by the index */
    uint64_t line;
    const char *doc_id;   /* the --id-field value kept at index time, or NULL */
    const char *kind;     /* the input kind of its shard (manifest "kind": "jsonl", "mds", ...) */
} lmx_doc;

/* Opens DIR: parses the manifest, maps every shard and checks each header against the manifest
 * and the file size: work per shard, not per document (`verify` checks the BLAKE2b sums and
 * every record). Document records are checked when they are read (lmx__index_doc,
 * lmx__index_doc_meta). The index is immutable and thread-safe; the caller owns it
 * (lmx__index_close accepts NULL).
 * Errors: LMX_EIO, LMX_EFORMAT (naming the file and the field), LMX_EUNSUPPORTED (version). */
int lmx__index_open(const char *dir, lmx_index **out, lmx_error *err);
void lmx__index_close(lmx_index *ix);

uint64_t lmx__index_n_docs(const lmx_index *ix);
uint64_t lmx__index_n_tokens(const lmx_index *ix);
uint32_t lmx__index_token_bytes(const lmx_index *ix);
uint32_t lmx__index_n_domains(const lmx_index *ix);
const char *lmx__index_domain_name(const lmx_index *ix, uint32_t d);
/* Returns the domain index of name or -1. */
int lmx__index_domain_find(const lmx_index *ix, const char *name);
const lmx_domain_stats *lmx__index_domain_stats(const lmx_index *ix, uint32_t d);
/* Hex BLAKE2b-256 over the tokenizer identity and every shard checksum: changes with content. */
const char *lmx__index_identity(const lmx_index *ix);
const char *lmx__index_tokenizer_identity(const lmx_index *ix);
const char *lmx__index_dir(const lmx_index *ix);
/* Where plans over ix keep their item tables (files, mmap'd; common/plan/lmx_plan_table.c);
 * NULL (the default) = on the heap. The string is copied; LMX_OK or LMX_ENOMEM. Set it before
 * plans are created (not thread-safe against lmx__plan_create). */
int lmx__index_set_table_dir(lmx_index *ix, const char *dir);
const char *lmx__index_table_dir(const lmx_index *ix);
uint32_t lmx__index_bos(const lmx_index *ix);
uint32_t lmx__index_eos(const lmx_index *ix);
/* The tokenizer's document-separator convention (plan defaults for bos/eos) and the BOS/EOS
 * strings (NULL when unknown or none); proto/TOKENIZER.md "Document separators". */
int lmx__index_default_bos(const lmx_index *ix);
int lmx__index_default_eos(const lmx_index *ix);
const char *lmx__index_sep_token(const lmx_index *ix, int eos);
/* {"bos": {"id", "token", "default"}, "eos": {...}} (new reference). */
json_t *lmx__index_separators_json(const lmx_index *ix);
uint32_t lmx__index_vocab_size(const lmx_index *ix);

/* The path of the shard whose mapping holds addr (borrowed from ix), or NULL: names the file
 * behind a SIGBUS (a shard truncated while mapped; server/lmxd_guard.c). */
const char *lmx__index_shard_at(const lmx_index *ix, const void *addr);

/* Document id -> record in O(log shards). LMX_ENOTFOUND for id >= n_docs; LMX_EFORMAT for a
 * damaged record (token range, domain, source or id entry outside its section), the message
 * naming the shard file and the document, which is also noted as the calling thread's read fault
 * (lmx__gate_end gives LMX_EFORMAT; lmx__gate_fault_message the message). On LMX_EFORMAT *out is
 * an empty document (n_tokens 0, tokens at the shard's token section). */
int lmx__index_doc(const lmx_index *ix, uint64_t id, lmx_doc *out, lmx_error *err);
/* Length and domain only (the plan builder's hot path). id must be < n_docs. A damaged record
 * gives 0 tokens, domain 0 and the thread's read fault (as lmx__index_doc). */
void lmx__index_doc_meta(const lmx_index *ix, uint64_t id, uint64_t *n_tokens, uint32_t *domain);
/* Every document record (with its source string and id entry) of every shard, as lmx__index_doc
 * checks one: `longmixd verify`. LMX_OK or the first damaged record's LMX_EFORMAT. */
int lmx__index_check_records(const lmx_index *ix, lmx_error *err);
/* The first shard known bad: marked by verification (lmx__gate_first_bad), else the shard of a
 * damaged record this thread read since lmx__gate_begin; NULL when none (a plan table built
 * then is not kept). */
const char *lmx__index_first_bad(const lmx_index *ix);

static inline uint32_t lmx__doc_token(const lmx_doc *d, uint64_t i)
{
    const uint8_t *p = d->tokens + i * d->token_bytes;
    return d->token_bytes == 2 ? (uint32_t)(p[0] | p[1] << 8)
                               : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                     (uint32_t)p[3] << 24;
}

/* ---- the verification gate (lmx_index_gate.c): serve's `verify: background`, and the
 * thread's read faults (also damaged records, gate or not) ----
 * With a gate, reads of a shard not yet verified wait for it: lmx__index_doc up to wait_s
 * seconds, lmx__index_doc_meta (the plan builder's scan) until its verification ends. A shard
 * still unverified after that, or bad, becomes the calling thread's fault; the read returns as
 * usual and the caller, which brackets its reads with lmx__gate_begin/lmx__gate_end, throws the
 * result away. Without a gate (the default) reads wait for nothing; a damaged document record
 * is a read fault either way (lmx__index_doc). */
typedef struct lmx_gate lmx_gate;
/* Puts every shard of ix behind a gate (all not yet verified). Call before any reader thread
 * starts; LMX_OK or LMX_ENOMEM. The gate lives as long as ix. */
int lmx__index_gate_enable(lmx_index *ix, double wait_s, lmx_error *err);
lmx_gate *lmx__index_gate(const lmx_index *ix); /* NULL when not enabled */
size_t lmx__index_n_shards(const lmx_index *ix);
/* Shard i (manifest order, as lmx_verify_options.on_shard numbers them) verified good or bad;
 * wakes its waiters. g may be NULL. */
void lmx__gate_mark(lmx_gate *g, size_t shard, int good);
/* Marks every shard not yet marked bad (verification ended without checking it). */
void lmx__gate_settle(lmx_gate *g);
void lmx__gate_counts(const lmx_gate *g, size_t *good, size_t *bad, size_t *total);
/* The path of the first shard marked bad, or NULL (borrowed from the index). */
const char *lmx__gate_first_bad(const lmx_gate *g);
/* Clears / returns this thread's fault: LMX_OK, LMX_ETIMEOUT (a shard still being verified),
 * LMX_ECHECKSUM (a shard that failed) or LMX_EFORMAT (a damaged document record); *shard (may be
 * NULL) = its path, borrowed from the index. */
void lmx__gate_begin(void);
int lmx__gate_end(const char **shard);
/* After lmx__gate_end gave LMX_EFORMAT: the message naming the shard and the document (this
 * thread's buffer, kept until its next lmx__gate_begin); "" when none. */
const char *lmx__gate_fault_message(void);

/* ---- verification (lmx_index_verify.c) ----
 * Recomputes shards' BLAKE2b (on `threads` threads) and compares them with the manifest. Good
 * shards are remembered in DIR/verified.json (or, when DIR is not writable, in
 * STATE_DIR/verified-<hash of DIR's real path>.json), each keyed by its file's size, device,
 * inode, mtime and ctime (ns) and its manifest checksum; with changed_only a shard whose key
 * still matches is not read again. Any write to a shard changes its ctime (which user space
 * cannot set back), so it is read again; bytes that change on the medium without any metadata
 * change are only found by a full run (scrub). */
typedef struct lmx_verify_options {
    int threads;           /* 0 = every online CPU */
    int changed_only;      /* skip shards the record vouches for */
    int scrub;             /* drop each shard's cached pages first, so the bytes come from the disk */
    double rate_mb;        /* MB/s over all threads; 0 = unlimited */
    const char *state_dir; /* the record's place when DIR is not writable; NULL = not remembered then */
    int quiet;             /* no "BAD PATH: why" lines on stderr */
    /* Called once per shard (index i in manifest order) as soon as its state is known: good (read
     * and matching, or vouched for by the record) or not; from any verifying thread. */
    void (*on_shard)(void *ctx, size_t i, int good, const char *path, const char *why);
    /* Called (may be NULL) before shard i is read, after the record's shards were reported:
     * serve's test hold (server/lmxd_verify.c). */
    void (*before_read)(void *ctx, size_t i);
    void *ctx;
    const atomic_int *cancel; /* non-zero: stop taking shards (those left count as not checked) */
} lmx_verify_options;

typedef struct lmx_verify_report {
    size_t shards, checked, remembered, bad;
    uint64_t bytes; /* read and hashed */
    double seconds;
    char record[4200];     /* the record file used or written ("" when none) */
    char record_note[600]; /* why the record could not be written ("" when it was) */
} lmx_verify_report;

/* Options NULL = every shard, all cores, unlimited. Prints one line per bad file to stderr (unless
 * quiet); returns LMX_ECHECKSUM (message names the first bad file; a missing or unreadable shard
 * counts as bad), an error of the manifest, or LMX_OK. rep (may be NULL) is filled either way. */
int lmx__index_verify_run(const char *dir, const lmx_verify_options *o, lmx_verify_report *rep, lmx_error *err);
/* lmx__index_verify_run(dir, NULL, NULL, err). */
int lmx__index_verify(const char *dir, lmx_error *err);

/* The `stats --json` document (contract) for ix: a new reference (json_decref), NULL on ENOMEM.
 * long_tokens count documents of at least LMX_LONG_THRESHOLD tokens, fixed at index time. */
json_t *lmx__index_stats_json(const lmx_index *ix);

/* ---- writer ---- */
enum { LMX_ON_ERROR_FAIL = 0, LMX_ON_ERROR_SKIP = 1 };

typedef struct lmx_index_options {
    const char *tokenizer;    /* "bytes" or a tokenizer.json path */
    const char *out_dir;
    int threads;              /* >= 1 */
    const char *domain_field; /* dotted JSON path, default "meta.redpajama_set_name" */
    const char *text_field;   /* dotted path of the text (or token column), default "text" */
    const char *id_field;     /* dotted path of a per-document id kept as provenance, or NULL */
    const char *domain_from_path; /* --domain-from-path pattern (data/{domain}/...), or NULL */
    int token_dtype;          /* enum lmx_token_dtype (inputs/lmx_inputs.h): untyped token bytes */
    int on_error;             /* LMX_ON_ERROR_* */
    int progress;             /* print progress to stderr */
    uint32_t shard_index;     /* --shard I/N: index only the inputs k (sorted by path) with */
    uint32_t shard_count;     /* k % N == I (0-based I); shard_count 0 = every input */
    int match_added_tokens;   /* added-token strings in text give their ids (HF's encode) */
} lmx_index_options;

/* Indexes INPUTs (files, folders, DOMAIN=PATH) into opts->out_dir; see proto/INDEX.md. */
int lmx__index_build(const lmx_index_options *opts, char *const *inputs, int n_inputs, lmx_error *err);

/* Merges the indexes in srcs (each a `longmixd index` output, e.g. one per --shard slice) into
 * out_dir without re-tokenizing: shard files are hard-linked (copied, with their BLAKE2b checked,
 * across file systems) and one manifest is written last. All sources must have the same tokenizer
 * identity; an input indexed in two sources must have the same shard checksum in both. The
 * result equals a single run over all the inputs (same documents in the same id order, same
 * statistics, same index identity). out_dir must not hold an index unless it is one of srcs. */
int lmx__index_merge(const char *out_dir, char *const *srcs, int n_srcs, lmx_error *err);

#endif
