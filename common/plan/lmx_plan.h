/* Mixture plans and packing (proto/PLANS.md): a plan turns an index into an endless, seeded,
 * randomly addressable stream of tokens cut into seq_len sequences. Global sequence g is a pure
 * function of (index content, resolved spec, g). */
#ifndef LMX_PLAN_H
#define LMX_PLAN_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include "lmx_error.h"
#include "lmx_index.h"
#include "lmx_util.h"

enum lmx_strategy { LMX_ORIGINAL = 0, LMX_CUT = 1, LMX_PER_SOURCE = 2, LMX_GLOBAL = 3 };

#define LMX_MAX_WEIGHTS 256

typedef struct lmx_plan_spec {
    int strategy;
    uint32_t seq_len;
    uint32_t global_batch;
    uint64_t seed;
    uint64_t long_threshold;
    double short_keep;
    int bos, eos; /* 1/0; -1 (key absent) = the tokenizer's convention, set by lmx__plan_create */
    char *sep_token[2]; /* owned: "bos_token" / "eos_token" named explicitly (implies bos/eos) */
    uint64_t cut_len;
    uint64_t total_tokens; /* 0 = endless */
    int cu_seqlens;
    int cross_doc_labels; /* wire v2 labels: keep targets across document boundaries (default 0) */
    int32_t ignore_index; /* wire v2 label of positions without a target (default -100) */
    uint32_t pad_multiple; /* every item padded to a multiple of it (default 1 = off) */
    char *pad_token;       /* owned: the pad token named by string (default: the plan's EOS) */
    uint32_t n_weights;
    char *weight_names[LMX_MAX_WEIGHTS]; /* owned */
    double weights[LMX_MAX_WEIGHTS];
} lmx_plan_spec;

/* Parses one plan object of the config (contract keys + extensions), applying defaults.
 * Unknown keys and bad values are LMX_EINVAL errors naming "plans.NAME.KEY". */
int lmx__plan_spec_parse(const char *name, const json_t *obj, lmx_plan_spec *out, lmx_error *err);
void lmx__plan_spec_free(lmx_plan_spec *spec);
/* The resolved spec as JSON (new reference). */
json_t *lmx__plan_spec_json(const lmx_plan_spec *spec);

typedef struct lmx_plan lmx_plan;

/* Binds spec to ix (which must outlive the plan): checks domain names, computes weights and the
 * per-domain item tables. Thread-safe afterwards; caller owns the plan (free accepts NULL).
 * stop (borrowed, may be NULL; must outlive the plan): when another thread sets it, a long build
 * gives up soon (LMX_ETIMEOUT, "stopped"; nothing is kept), e.g. a reload's build when the daemon
 * stops, and so do the plan's epoch walks later (a request then fails instead of holding the
 * daemon's drain for a walk of minutes). */
int lmx__plan_create(const lmx_index *ix, const char *name, const lmx_plan_spec *spec, const atomic_int *stop,
                     lmx_plan **out, lmx_error *err);
void lmx__plan_free(lmx_plan *p);
/* Epoch walks so far (docs/SCALING.md): out[0] by requests, out[1] in the background. */
void lmx__plan_walk_counts(lmx_plan *p, uint64_t out[2]);

const char *lmx__plan_name(const lmx_plan *p);
const lmx_plan_spec *lmx__plan_spec(const lmx_plan *p);
/* Hex of the 16-byte plan id (BLAKE2b of the index identity and the resolved spec). */
const char *lmx__plan_id_hex(const lmx_plan *p);
const uint8_t *lmx__plan_id(const lmx_plan *p);
/* The separators the plan inserts: {"bos": {"id", "token"} or null, "eos": ...}, and for a padded
 * plan "pad": {"id", "token"} (new ref). */
json_t *lmx__plan_separators_json(const lmx_plan *p);
/* Number of steps when total_tokens is set, else UINT64_MAX. */
uint64_t lmx__plan_max_steps(const lmx_plan *p);

/* Builds the wire body (proto/WIRE.md) of batch `step` for rank of world into out (reset first).
 * Errors: LMX_EINVAL (rank >= world, world does not divide global_batch), LMX_ERANGE (step past
 * total_tokens), LMX_ENOMEM. */
int lmx__plan_batch(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, lmx_buf *out, lmx_error *err);
/* lmx__plan_batch as wire v2 (proto/WIRE.md): every sequence reduced to context-parallel rank
 * cp_rank's zigzag slice (chunks cp_rank and 2*cp_size-1-cp_rank of 2*cp_size), with labels,
 * position ids and the whole sequence's cu_seqlens. Errors: those of lmx__plan_batch; LMX_EINVAL
 * naming cp_size or cp_rank (cp_size 0 or over LMX_MAX_CP_SIZE, cp_rank >= cp_size, seq_len not
 * a multiple of 2*cp_size when cp_size > 1). */
int lmx__plan_batch_cp(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, uint32_t cp_rank,
                       uint32_t cp_size, lmx_buf *out, lmx_error *err);
/* lmx__plan_batch_cp with a CP layout: LMX_CP_ZIGZAG (the same bytes) or LMX_CP_THD, Transformer
 * Engine's per-document split (chunks cp_rank and 2*cp_size-1-cp_rank of every padded segment);
 * thd needs a plan whose pad_multiple is a multiple of 2*cp_size (else LMX_EINVAL naming
 * cp_layout and pad_multiple). Padded plans answer wire v3 (proto/WIRE.md). */
int lmx__plan_batch_layout(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, uint32_t cp_rank,
                           uint32_t cp_size, uint32_t cp_layout, lmx_buf *out, lmx_error *err);
/* The body of one global sequence g (a batch of one, step = g, rank 0, world 1). */
int lmx__plan_sequence(lmx_plan *p, uint64_t g, lmx_buf *out, lmx_error *err);

/* Mixture statistics of the plan: target and realized domain shares, long-token shares, length
 * buckets and epochs, over the plan's first window_tokens tokens (0 = default window). New
 * reference; NULL on allocation failure. */
json_t *lmx__plan_stats(lmx_plan *p, uint64_t window_tokens);

/* Removes stale item tables from DIR (lmx_plan_table.c): every `<plan id>.items` (and its
 * `.items.ok`) whose id is not among keep (n hex ids), whose last use (build, or a start that
 * mapped it) is more than grace_s seconds ago, and which no process holds mapped (each mapping
 * holds flock(LOCK_SH) on its file: a daemon serving the same index from another config keeps
 * its tables). Returns the number of tables removed (best effort: errors leave files). */
size_t lmx__plan_table_gc(const char *dir, const char *const *keep, size_t n, double grace_s);

#endif
