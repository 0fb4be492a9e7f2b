/* liblongmix: batches from longmixd into trainer processes.
 *
 * Rules that hold for every function here:
 * - Errors: functions return LMX_OK (0) or a negative LMX_E* code (longmix_errors.h). Those that
 *   take an `lmx_error *err` fill it on failure (it may be NULL); the message names the server
 *   URL, HTTP status and the server's own error detail where there is one.
 * - Ownership: objects returned through `**out` belong to the caller and are released with their
 *   matching free/close function, which accepts NULL. Pointers returned by accessors point into
 *   the object they were read from and stay valid until that object is freed.
 * - Threads: an lmx_client may be used from several threads (calls are serialized internally);
 *   batches are immutable and may be read from any thread. Any number of clients per process.
 * - Every batch is checked before it is returned: the BLAKE2b-256 digest the server sent, the
 *   wire format (proto/WIRE.md), and its identity (plan id, step, rank, world, sizes). A batch
 *   that fails a check is fetched again, from the next replica; a failure that persists is an
 *   error, never a wrong batch. */
#ifndef LONGMIX_H
#define LONGMIX_H

#include <stddef.h>
#include <stdint.h>

#include "longmix_errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LONGMIX_VERSION_MAJOR 0
#define LONGMIX_VERSION_MINOR 1
#define LONGMIX_VERSION_PATCH 0

/* "0.1.0" */
LMX_API const char *lmx_version(void);

typedef struct lmx_client lmx_client;
typedef struct lmx_batch lmx_batch;

typedef struct lmx_client_options {
    const char *urls;    /* required: base URL(s), comma separated replicas: "http://a:8470,http://b:8470" */
    const char *plan;    /* required: plan name */
    uint32_t rank;       /* this trainer's rank, < world */
    uint32_t world;      /* number of ranks; must divide the plan's global_batch */
    const char *token;   /* bearer token, or NULL when the server has no auth */
    uint64_t start_step; /* first step lmx_client_next() returns */
    uint32_t prefetch;   /* batches fetched ahead in the background by lmx_client_next(); 0 = none */
    uint32_t timeout_ms; /* per HTTP request */
    uint32_t retries;    /* attempts per batch across all replicas before giving up */
    int no_zstd;         /* 1: do not ask for zstd (the server sends the body uncompressed) */
} lmx_client_options;

/* Fills o with the defaults: world 1, prefetch 2, timeout 60000 ms, retries 6, zstd on. */
LMX_API void lmx_client_options_init(lmx_client_options *o);

/* Creates a client. No request is made until the first fetch. The strings in o are copied.
 * Errors: LMX_EINVAL (missing url or plan, rank >= world, malformed URL list), LMX_ENOMEM. */
LMX_API int lmx_client_open(const lmx_client_options *o, lmx_client **out, lmx_error *err);

/* Stops background prefetching and frees the client. Batches already returned stay valid. */
LMX_API void lmx_client_close(lmx_client *c);

/* Returns the batch at the client's position and advances the position by one.
 * Errors: as lmx_client_fetch. */
LMX_API int lmx_client_next(lmx_client *c, lmx_batch **out, lmx_error *err);

/* Fetches batch `step` for this client's rank and world (random access; position unchanged).
 * Errors: LMX_ENETWORK (no replica reachable within the retry budget), LMX_ETIMEOUT,
 * LMX_EHTTP (the server rejected the request: 4xx are not retried; message has the detail),
 * LMX_ERANGE (step past the plan's total_tokens: HTTP 416), LMX_ENOTFOUND (unknown plan: 404),
 * LMX_EAUTH (401), LMX_ECHECKSUM / LMX_EFORMAT (every attempt returned a corrupt batch),
 * LMX_ENOMEM. */
LMX_API int lmx_client_fetch(lmx_client *c, uint64_t step, lmx_batch **out, lmx_error *err);

/* Like lmx_client_fetch, but the batch body is decoded into the caller's buffer (e.g. pinned
 * memory) of `cap` bytes, which must stay valid until the batch is freed. LMX_ENOMEM when the
 * body (lmx_batch_body_size) does not fit; `*needed` (if not NULL) then holds the size. */
LMX_API int lmx_client_fetch_into(lmx_client *c, uint64_t step, void *buf, size_t cap, size_t *needed,
                                  lmx_batch **out, lmx_error *err);

/* Sets the position of lmx_client_next() (to resume after a restart); prefetched batches for
 * other steps are dropped. */
LMX_API int lmx_client_seek(lmx_client *c, uint64_t step);
LMX_API uint64_t lmx_client_position(const lmx_client *c);

LMX_API void lmx_batch_free(lmx_batch *b);

/* Identity */
LMX_API const char *lmx_batch_plan_id(const lmx_batch *b); /* 32 hex characters */
LMX_API uint64_t lmx_batch_step(const lmx_batch *b);
LMX_API uint32_t lmx_batch_rank(const lmx_batch *b);
LMX_API uint32_t lmx_batch_world(const lmx_batch *b);

/* Shape */
LMX_API uint32_t lmx_batch_n_seqs(const lmx_batch *b);
LMX_API uint32_t lmx_batch_seq_len(const lmx_batch *b);
LMX_API uint32_t lmx_batch_token_bytes(const lmx_batch *b); /* 2 (u16) or 4 (u32) */

/* n_seqs * seq_len little-endian token ids of token_bytes each, sequence after sequence. */
LMX_API const void *lmx_batch_tokens(const lmx_batch *b);
/* Copies the tokens widened to u32 into dst (capacity n_dst ids). LMX_EINVAL if too small. */
LMX_API int lmx_batch_tokens_u32(const lmx_batch *b, uint32_t *dst, size_t n_dst);
/* The token that follows sequence seq in the plan's stream. */
LMX_API uint32_t lmx_batch_next_token(const lmx_batch *b, uint32_t seq);

typedef struct lmx_span_info {
    uint64_t doc;       /* document id in the server's index (longmixd doc) */
    uint64_t offset;    /* first covered token's offset in the document's ids */
    uint32_t start;     /* position in the sequence */
    uint32_t length;
    const char *domain; /* NUL-terminated, owned by the batch */
} lmx_span_info;

/* Spans of sequence seq: tokens[start, start+length) are document tokens [offset, offset+length).
 * Uncovered positions hold separators (BOS/EOS). */
LMX_API uint32_t lmx_batch_n_spans(const lmx_batch *b, uint32_t seq);
LMX_API int lmx_batch_span(const lmx_batch *b, uint32_t seq, uint32_t i, lmx_span_info *out);

/* Document boundaries of sequence seq as FlashAttention varlen cu_seqlens (0, ..., seq_len):
 * returns the count (0 when the plan has cu_seqlens off) and copies min(count, cap) into dst. */
LMX_API uint32_t lmx_batch_cu_seqlens(const lmx_batch *b, uint32_t seq, int32_t *dst, uint32_t cap);

/* The uncompressed wire body (proto/WIRE.md), e.g. to store it. */
LMX_API const void *lmx_batch_body(const lmx_batch *b, size_t *size);
LMX_API size_t lmx_batch_body_size(const lmx_batch *b);

/* GET of any server path (e.g. "/v1/stats") with the same replica failover as batches; the
 * response body is returned NUL-terminated in *body (free with lmx_free). Non-2xx answers are
 * errors as for lmx_client_fetch. */
LMX_API int lmx_get(const char *urls, const char *token, const char *path, uint32_t timeout_ms, char **body,
                    size_t *len, lmx_error *err);
LMX_API void lmx_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
