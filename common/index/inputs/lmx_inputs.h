/* Input formats of `longmixd index` (proto/INDEX.md, "Inputs"): one file per format behind this
 * small interface. A format is one row of the table in lmx_inputs.c; adding a format = adding
 * its file and that row.
 *
 * A reader is opened on one job (one input file, one folder of .txt files, one Megatron pair,
 * ...) and yields its records strictly in input order, each with its provenance (the file and
 * the 1-based line, row or document number). The indexer turns records into documents:
 *   LMX_REC_RAW     bytes the format's parse() turns into text (+ domain), on any thread;
 *   LMX_REC_TEXT    UTF-8 text, tokenized by the indexer (without special tokens);
 *   LMX_REC_TOKENS  token ids, checked by the reader against params->vocab_size;
 *   LMX_REC_BAD     a bad record (why says what): fails the run or, with --on-error=skip, is
 *                   counted and reported as "SOURCE:WHERE: why";
 *   LMX_REC_SKIP    neither a document nor an error (a blank line), only counted in `where`.
 * Errors of next()/open() (unreadable or corrupt input: truncated compression, a broken
 * container) are LMX_E* codes whose message names the file and the line/row/shard.
 *
 * Threads: one reader is used by one thread; parse() may run on any thread concurrently.
 * May include: base/, json/, tokenizer/ (not the rest of index/). */
#ifndef LMX_INPUTS_H
#define LMX_INPUTS_H

#include <stddef.h>
#include <jansson.h>
#include <stdint.h>
#include "lmx_error.h"
#include "lmx_util.h"

/* Longest record (a line, a .txt file, a sample): bigger ones are an error naming it. */
#define LMX_INPUT_MAX_RECORD ((size_t)1 << 30)
#define LMX_INPUT_WHY_MAX 400

enum lmx_rec_kind { LMX_REC_SKIP, LMX_REC_RAW, LMX_REC_TEXT, LMX_REC_TOKENS, LMX_REC_BAD };

/* One record. Every pointer is owned by the reader and valid until its next next()/close(). */
typedef struct lmx_input_rec {
    int kind;                 /* enum lmx_rec_kind */
    const char *data;         /* RAW, TEXT: the bytes */
    size_t len;
    const uint32_t *ids;      /* TOKENS */
    size_t n_ids;
    const char *domain;       /* TEXT, TOKENS: the record's domain; NULL = the job's */
    const char *doc_id;       /* TEXT, TOKENS: the record's --id-field value (provenance), or NULL */
    const char *source;       /* provenance: the file the record comes from */
    uint64_t where;           /* 1-based line / row / document in source; 0 = the whole file */
    uint64_t bytes;           /* text bytes the record stands for (progress only) */
    char why[LMX_INPUT_WHY_MAX]; /* BAD */
} lmx_input_rec;

/* What a job asks of its reader; strings are borrowed for the reader's lifetime. Field paths are
 * dotted (`meta.redpajama_set_name`: a field inside a nested object/struct); every format that
 * has named fields (JSON Lines, Parquet columns, MDS columns) honours all three, so the same
 * options mean the same thing for every input. */
typedef struct lmx_input_params {
    const char *path;          /* the job's input as reached from INPUT (file, folder, PREFIX.bin) */
    char *const *files;        /* text folders: the .txt files (sorted); else NULL */
    size_t n_files;
    const char *domain;        /* forced domain (DOMAIN=PATH, --domain-from-path) or NULL */
    const char *domain_field;  /* --domain-field: dotted path of the domain */
    const char *text_field;    /* --text-field: dotted path of the text (or of a token column) */
    const char *id_field;      /* --id-field: dotted path of a document id kept as provenance, or NULL */
    int token_dtype;           /* --token-dtype: enum lmx_token_dtype, for untyped token bytes (MDS bytes) */
    uint32_t vocab_size;       /* pre-tokenized inputs: ids must be below it */
} lmx_input_params;

/* Element type of pre-tokenized ids stored as untyped bytes; 0 = not given. */
enum lmx_token_dtype { LMX_DTYPE_NONE, LMX_DTYPE_U16, LMX_DTYPE_U32, LMX_DTYPE_I32, LMX_DTYPE_I64 };

/* The result of parse() for a RAW record. */
typedef struct lmx_input_parsed {
    const char *text;    /* NULL: bad record, reason in why */
    size_t text_len;
    const char *domain;  /* NULL when the record has none (then the job's forced domain, if any) */
    const char *doc_id;  /* the --id-field value, or NULL when not asked or absent */
    char why[LMX_INPUT_WHY_MAX];
    lmx_buf scratch[3];  /* owned by the caller, reused across calls; free with lmx__buf_free */
} lmx_input_parsed;

typedef struct lmx_input_format lmx_input_format;

/* The state every reader starts with (formats embed it as their first member). */
typedef struct lmx_input {
    const lmx_input_format *fmt;
    const lmx_input_params *params;
    uint64_t bytes_read; /* raw input bytes consumed so far (progress: the ETA) */
    const char *kind;    /* manifest `kind` of this job, set by open (e.g. "jsonl.zst") */
} lmx_input;

enum {
    LMX_INPUT_FOLDER_JOB = 1,   /* all matching files directly in one folder form one job (.txt) */
    LMX_INPUT_NEEDS_DOMAIN = 2, /* records carry no domain: DOMAIN=PATH is required */
    LMX_INPUT_HASH_REUSE = 4,   /* a touched input (new mtime) whose bytes hash the same is reused:
                                   finish()'s hash = lmx__files_blake2b of the job's files */
    LMX_INPUT_NO_FIELDS = 8,    /* no named fields: --text-field/--id-field/--token-dtype do not
                                   change its documents (nor its reuse key) */
};

struct lmx_input_format {
    const char *name; /* the format (also the manifest `kind` unless open sets another) */
    const char *what; /* what INPUT it takes, for messages ("a .txt file", "an MDS folder (index.json)") */
    unsigned flags;   /* LMX_INPUT_* */
    /* Whether a regular file found at path belongs to this format; for a pair of files (Megatron
     * PREFIX.bin + PREFIX.idx) it names the job path in *job_path (malloc'ed) else leaves it NULL. */
    int (*match)(const char *path, char **job_path);
    /* Optional: every file a job at job_path reads (malloc'ed array of malloc'ed paths), for its
     * size/mtime reuse key and the readability check; default: job_path alone. */
    int (*list_files)(const char *job_path, char ***files, size_t *n_files, lmx_error *err);
    int (*open)(const lmx_input_params *p, lmx_input **out, lmx_error *err);
    /* 1 with *rec filled, 0 at the end, or a negative LMX_E* code naming file and line/row. */
    int (*next)(lmx_input *in, lmx_input_rec *rec, lmx_error *err);
    /* After next() returned 0: hex BLAKE2b-256 of the raw input (the manifest's input_blake2b). */
    int (*finish)(lmx_input *in, char hex[65], lmx_error *err);
    void (*close)(lmx_input *in); /* accepts NULL */
    /* RAW records only (else NULL): text and domain of data[0..len), thread-safe. */
    void (*parse)(const lmx_input_params *p, const char *data, size_t len, lmx_input_parsed *out);
};

/* The table, in match order; NULL-terminated. */
extern const lmx_input_format *const lmx__input_formats[];

/* The format a regular file belongs to (by name, and for compressed JSON Lines also by magic
 * bytes), or NULL; *job_path as for match(). */
const lmx_input_format *lmx__input_match(const char *path, char **job_path);
/* "A, B or C" over the table's `what`s, for "not an input" messages (static storage). */
const char *lmx__input_kinds(void);
/* The format called name, or NULL. */
const lmx_input_format *lmx__input_format(const char *name);

/* The formats (one file each). */
extern const lmx_input_format lmx__input_jsonl;
extern const lmx_input_format lmx__input_text;
extern const lmx_input_format lmx__input_megatron;
extern const lmx_input_format lmx__input_mds;
extern const lmx_input_format lmx__input_parquet;

/* Megatron: PREFIX.bin when PATH is PREFIX, PREFIX.bin or PREFIX.idx and both files exist, else
 * NULL (malloc'ed). */
char *lmx__megatron_bin_of(const char *path);

/* ---- helpers shared by the readers (lmx_inputs.c) ---- */

int lmx__ends_with(const char *s, const char *suffix);
/* BLAKE2b-256 (hex) of the files' bytes one after the other (a job's list_files order); 0 or -1.
 * A LMX_INPUT_HASH_REUSE format's finish() must give the same hash. */
int lmx__files_blake2b(char *const *files, size_t n, char hex[65]);
/* BLAKE2b-256 (hex) of one whole file; 0 or -1. */
int lmx__file_blake2b(const char *path, char hex[65]);
/* The value at dotted path in a jansson object (NULL when absent or a non-object on the way). */
json_t *lmx__json_at_path(json_t *doc, const char *path);
/* A document id for provenance: a string as it is, a number as its JSON text, into out
 * (NUL-terminated); 0, or -1 (not a string/number, out of memory). */
int lmx__json_id_text(json_t *v, lmx_buf *out);
/* Fills rec as LMX_REC_BAD with the formatted reason. */
void lmx__rec_bad(lmx_input_rec *rec, const char *fmt, ...) LMX_PRINTF(2, 3);

#endif
