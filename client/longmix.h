/* liblongmix: batches from longmixd into trainer processes.
 *
 * Introduction
 *
 * A trainer rank opens one lmx_client for (replica URLs, plan, rank, world) and either iterates
 * with lmx_client_next() (steps start_step, start_step+1, ...; the next `prefetch` batches are
 * fetched ahead by a background thread) or asks for any step with lmx_client_fetch(). Each
 * returned lmx_batch is an immutable, verified, decoded batch (proto/WIRE.md) whose accessors
 * read straight from its buffer.
 *
 *     lmx_client_options o;
 *     lmx_client_options_init(&o);
 *     o.urls = "http://10.0.0.1:8470,http://10.0.0.2:8470";
 *     o.plan = "per-source"; o.rank = rank; o.world = world;
 *     lmx_client *c; lmx_error e;
 *     if (lmx_client_open(&o, &c, &e) != LMX_OK) { fprintf(stderr, "%s\n", e.message); exit(1); }
 *     for (;;) {
 *         lmx_batch *b;
 *         if (lmx_client_next(c, &b, &e) != LMX_OK) { fprintf(stderr, "%s\n", e.message); break; }
 *         train_on(lmx_batch_tokens(b), lmx_batch_n_seqs(b), lmx_batch_seq_len(b));
 *         lmx_batch_free(b);
 *     }
 *     lmx_client_close(c);
 *
 * Rules that hold for every function here:
 *
 * - Errors: functions return LMX_OK (0) or a negative LMX_E* code (longmix_errors.h;
 *   lmx_strerror() names a code). Those that take an `lmx_error *err` fill it on failure (err may
 *   be NULL) with the same code and a one-line message; for network and HTTP errors the message
 *   names the request URL, the HTTP status and the server's own {"error", "detail"}. On success
 *   *err is left untouched.
 * - Ownership: objects returned through `**out` belong to the caller and are released with their
 *   matching free/close function, which accepts NULL. On failure *out is set to NULL. Pointers
 *   returned by batch accessors point into the batch and stay valid until lmx_batch_free().
 *   Strings passed in (options) are copied; the caller may free them after the call.
 * - Threads: every lmx_client function may be called from several threads at once on the same
 *   handle (state is locked internally; concurrent lmx_client_next() calls each get a distinct
 *   consecutive step). Batches are immutable and may be read from any thread, and freed from a
 *   thread other than the one that fetched them. Any number of clients per process; they share
 *   nothing. lmx_client_close() must not race with other calls on the same handle.
 * - Verification: every batch is checked before it is returned: the BLAKE2b-256 digest the server
 *   sent (X-Longmix-Digest) against the uncompressed body, the wire format (magic, version,
 *   sizes, span and cu_seqlens bounds), its identity (step, rank, world as asked; the plan id in
 *   the body equals the X-Longmix-Plan-Id header and the plan id of the first batch this client
 *   saw). A batch that fails a check is fetched again, from the next replica; a failure that
 *   persists through the retry budget is an error, never a wrong batch.
 * - Retries: a network error, timeout, 5xx, 408, 429 or a batch failing verification moves on to
 *   the next replica at once; after each full round over the replicas the client sleeps with
 *   exponential backoff (50 ms doubling, at most 2 s) and random jitter. A 4xx other than 408/429
 *   means the request itself is wrong and is returned at once, without retry.
 * - Timeouts: `timeout_ms` bounds each HTTP request (connect + transfer); `deadline_ms`, when
 *   set, bounds all attempts for one batch together. Without a deadline the worst case for one
 *   batch is about retries * timeout_ms plus the backoff sleeps.
 * - fork(): a client belongs to the process that opened it (its prefetch thread does not
 *   survive fork, its locks may be held at that moment, its keep-alive socket would be shared
 *   with the parent). In a forked child, next/fetch/fetch_into on an inherited client fail with
 *   LMX_EINVAL and lmx_client_close() on it does nothing (the child's copy is leaked); open a
 *   new client there. */
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

/* lmx_version(): the library's version as "MAJOR.MINOR.PATCH" ("0.1.0"). Static string. */
LMX_API const char *lmx_version(void);

typedef struct lmx_client lmx_client;
typedef struct lmx_batch lmx_batch;

typedef struct lmx_client_options {
    const char *urls;     /* required: base URL(s), comma separated replicas: "http://a:8470,http://b:8470" */
    const char *plan;     /* required: plan name ([A-Za-z0-9._-]) */
    uint32_t rank;        /* this trainer's rank, < world */
    uint32_t world;       /* number of ranks; must divide the plan's global_batch (0 is taken as 1) */
    const char *token;    /* bearer token, or NULL when the server has no auth */
    uint64_t start_step;  /* first step lmx_client_next() returns */
    uint32_t prefetch;    /* batches fetched ahead in the background by lmx_client_next(); 0 = none, max 1024 */
    uint32_t timeout_ms;  /* per HTTP request (0 = default 60000) */
    uint32_t retries;     /* attempts per batch across all replicas before giving up (0 = default 6) */
    int no_zstd;          /* 1: do not ask for zstd (the server sends the body uncompressed) */
    uint32_t deadline_ms; /* total time for all attempts of one batch; 0 = no limit beyond retries */
    uint64_t max_batch_bytes; /* largest uncompressed batch accepted; 0 = derived from the plan (see below) */
    /* Context parallelism (appended after max_batch_bytes; proto/WIRE.md "Wire v2"). cp_size 0
     * (the default): whole sequences (wire v1). cp_size K >= 1: every sequence reduced to CP
     * rank cp_rank's zigzag slice of seq_len / K positions, with labels and position ids
     * (lmx_batch_labels). */
    uint32_t cp_rank;     /* < cp_size */
    uint32_t cp_size;     /* 0 = off; 1..65536; the plan's seq_len must be a multiple of 2*cp_size when > 1 */
    /* Appended after cp_size: LMX_CP_LAYOUT_ZIGZAG (default, the whole-sequence zigzag above) or
     * LMX_CP_LAYOUT_THD (needs cp_size >= 1 and a plan with pad_multiple a multiple of 2*cp_size):
     * Transformer Engine's THD split, chunks cp_rank and 2*cp_size-1-cp_rank of every padded
     * document (cu_seqlens_padded segment), segment after segment (proto/WIRE.md "Wire v3"). */
    uint32_t cp_layout;
} lmx_client_options;

enum { LMX_CP_LAYOUT_ZIGZAG = 0, LMX_CP_LAYOUT_THD = 1 };

/* lmx_client_options_init():
 * Fills *o with the defaults: no URL or plan, rank 0, world 1, no token, start_step 0,
 * prefetch 2, timeout_ms 60000, retries 6, zstd on, no deadline, max_batch_bytes 0, cp_rank 0,
 * cp_size 0 (off), cp_layout zigzag. Always call it first so fields added in later versions get their defaults.
 *
 * max_batch_bytes bounds the memory one answer can take: a batch whose (uncompressed) size is
 * larger is refused as soon as its Content-Length or zstd frame header says so, or as soon as
 * that many bytes have arrived, and counts as a bad answer (next replica; LMX_EFORMAT naming the
 * limit once the retries are spent). zstd bodies are decompressed as they arrive, straight into
 * the batch's buffer. With 0 the client asks GET /v1/plans/NAME once before its first batch and
 * derives the limit from the plan's seq_len, global_batch and world (every token with its own
 * span and cu_seqlens entry, plus 4 MiB for the domain table); when the server does not say,
 * 1 GiB. Error answers (non-2xx) are read up to 4 KB, never further. */
LMX_API void lmx_client_options_init(lmx_client_options *o);

/* lmx_client_open():
 * Creates a client and stores it in *out. No request is made (and no thread started) until the
 * first fetch. The strings in *o are copied.
 * Errors: LMX_EINVAL (missing URL or plan, a URL that is not http:// or https://, more than 32
 * replicas, rank >= world, cp_size over 65536 or cp_rank >= cp_size when cp_size > 0, cp_layout
 * neither zigzag nor thd, thd without cp_size, a plan name or token with forbidden characters, prefetch > 1024),
 * LMX_ENOMEM, LMX_EINTERNAL (libcurl or libsodium failed to initialize).
 * Thread-safe: yes (any number of clients, from any thread). */
LMX_API int lmx_client_open(const lmx_client_options *o, lmx_client **out, lmx_error *err);

/* lmx_client_close():
 * Stops the prefetch thread (an in-flight request is abandoned within about a second), drops
 * prefetched batches, closes the connections and frees the client. Batches already returned
 * stay valid and must still be freed. Accepts NULL. Must not race with other calls on c. */
LMX_API void lmx_client_close(lmx_client *c);

/* lmx_client_next():
 * Returns in *out the batch at the client's position (start_step, then one more per successful
 * call) and advances the position by one. With prefetch K > 0 the first call starts one worker
 * thread for this handle which keeps the results for the next K steps in a bounded queue; results
 * are the same bytes as without prefetch (each batch is verified for its own step). On error the
 * position does not move, so calling again retries the same step.
 * Errors: as lmx_client_fetch(); LMX_ENOMEM when the worker cannot be started.
 * Ownership: the caller frees *out with lmx_batch_free().
 * Thread-safe: yes; concurrent callers get distinct consecutive steps. */
LMX_API int lmx_client_next(lmx_client *c, lmx_batch **out, lmx_error *err);

/* lmx_client_fetch():
 * Fetches batch `step` for this client's rank and world (random access; the position and the
 * prefetch queue are not touched) and returns it verified in *out.
 * Errors: LMX_ENETWORK (no replica reachable within the retry budget), LMX_ETIMEOUT (the last
 * attempt timed out, or the deadline passed), LMX_EHTTP (the server rejected the request with a
 * 4xx, not retried; or 5xx on every attempt; or the plan id changed during the run),
 * LMX_ERANGE (step past the plan's data: HTTP 416), LMX_ENOTFOUND (unknown plan: 404),
 * LMX_EAUTH (missing or wrong token: 401/403), LMX_ECHECKSUM (every attempt got a body whose
 * digest does not match), LMX_EFORMAT (every attempt got a malformed or foreign answer),
 * LMX_ENOMEM. The message names the URL and, for HTTP errors, the server's error and detail.
 * Ownership: the caller frees *out with lmx_batch_free().
 * Thread-safe: yes (calls on one handle share one connection and are serialized; use one handle
 * per thread for parallel fetches). */
LMX_API int lmx_client_fetch(lmx_client *c, uint64_t step, lmx_batch **out, lmx_error *err);

/* lmx_client_fetch_into():
 * Like lmx_client_fetch(), but the uncompressed body is decoded into the caller's buffer `buf`
 * of `cap` bytes (e.g. pinned memory): the batch's accessors then point into buf, which must
 * stay valid and unmodified until the batch is freed (lmx_batch_free() does not free buf).
 * Errors: as lmx_client_fetch(); LMX_EINVAL when buf is NULL; LMX_ENOMEM when the body does not
 * fit, with the size it needs in *needed (if needed is not NULL) — then call again with a larger
 * buffer. Thread-safe: yes. */
LMX_API int lmx_client_fetch_into(lmx_client *c, uint64_t step, void *buf, size_t cap, size_t *needed,
                                  lmx_batch **out, lmx_error *err);

/* lmx_client_seek():
 * Sets the position of lmx_client_next() to `step` (to resume after a restart). Prefetched
 * batches are dropped and an in-flight prefetch is abandoned. Returns LMX_OK (LMX_EINVAL for a
 * NULL client). Thread-safe: yes. */
LMX_API int lmx_client_seek(lmx_client *c, uint64_t step);

/* lmx_client_position(): the step the next lmx_client_next() returns. Thread-safe: yes. */
LMX_API uint64_t lmx_client_position(const lmx_client *c);

/* lmx_batch_free(): frees a batch (not a caller buffer given to fetch_into). Accepts NULL. */
LMX_API void lmx_batch_free(lmx_batch *b);

/* Identity. The plan id is 32 lower-case hex characters (a hash of index + plan spec); it is
 * the same for every batch of a run. */
LMX_API const char *lmx_batch_plan_id(const lmx_batch *b);
LMX_API uint64_t lmx_batch_step(const lmx_batch *b);
LMX_API uint32_t lmx_batch_rank(const lmx_batch *b);
LMX_API uint32_t lmx_batch_world(const lmx_batch *b);

/* Shape: n_seqs = global_batch / world sequences of seq_len tokens, each token_bytes wide. */
LMX_API uint32_t lmx_batch_n_seqs(const lmx_batch *b);
LMX_API uint32_t lmx_batch_seq_len(const lmx_batch *b);
LMX_API uint32_t lmx_batch_token_bytes(const lmx_batch *b); /* 2 (u16) or 4 (u32) */

/* Context parallelism: cp_rank / cp_size of the batch (0 / 1 without), and slice_len, the
 * positions per sequence in this batch: seq_len / cp_size (= seq_len without CP). Tokens, labels,
 * position ids and spans are of the slice; cu_seqlens and next_token of the whole sequence. */
LMX_API uint32_t lmx_batch_cp_rank(const lmx_batch *b);
LMX_API uint32_t lmx_batch_cp_size(const lmx_batch *b);
LMX_API uint32_t lmx_batch_slice_len(const lmx_batch *b);
/* lmx_batch_cp_layout(): LMX_CP_LAYOUT_ZIGZAG or LMX_CP_LAYOUT_THD. lmx_batch_padded(): 1 when
 * the plan pads every document to a multiple of its pad_multiple (wire v3; such a plan always
 * sends labels and position ids, also without CP options): positions past a document's real
 * end hold the pad token, labels there are the ignore index, and lmx_batch_cu_seqlens() gives
 * the padded boundaries (TE's cu_seqlens_padded), lmx_batch_cu_seqlens_real() the real ones. */
LMX_API uint32_t lmx_batch_cp_layout(const lmx_batch *b);
LMX_API int lmx_batch_padded(const lmx_batch *b);

/* lmx_batch_tokens(): n_seqs * slice_len little-endian token ids of token_bytes each, sequence
 * after sequence, 8-byte aligned inside the batch's buffer (zero copy). Valid until the batch is
 * freed. */
LMX_API const void *lmx_batch_tokens(const lmx_batch *b);
/* lmx_batch_labels(), lmx_batch_position_ids(): n_seqs * slice_len little-endian i32 labels
 * (the next token; lmx_batch_ignore_index() where the plan masks the target) and u32 position
 * ids (0 at every cu_seqlens boundary), computed on the whole sequence and sliced; zero copy,
 * 8-byte aligned. NULL when the client has cp_size 0 and the plan is not padded (they are sent
 * only with CP options or for padded plans). */
LMX_API const int32_t *lmx_batch_labels(const lmx_batch *b);
LMX_API const uint32_t *lmx_batch_position_ids(const lmx_batch *b);
LMX_API int32_t lmx_batch_ignore_index(const lmx_batch *b);
/* lmx_batch_tokens_u32(): copies the tokens widened to u32 into dst (capacity n_dst ids).
 * Errors: LMX_EINVAL if n_dst < n_seqs * slice_len (nothing is written). */
LMX_API int lmx_batch_tokens_u32(const lmx_batch *b, uint32_t *dst, size_t n_dst);
/* lmx_batch_next_token(): the token that follows sequence seq in the plan's stream (the label
 * for its last position); UINT32_MAX when seq >= n_seqs. */
LMX_API uint32_t lmx_batch_next_token(const lmx_batch *b, uint32_t seq);

typedef struct lmx_span_info {
    uint64_t doc;       /* document id in the server's index (longmixd doc) */
    uint64_t offset;    /* first covered token's offset in the document's ids */
    uint32_t start;     /* position in the sequence (in the slice with CP) */
    uint32_t length;
    const char *domain; /* NUL-terminated, owned by the batch */
} lmx_span_info;

/* Spans of sequence seq, in position order: tokens[start, start+length) are document tokens
 * [offset, offset+length). Uncovered positions hold separators (BOS/EOS).
 * lmx_batch_n_spans() gives 0 for seq >= n_seqs; lmx_batch_span() returns LMX_EINVAL for an
 * out-of-range seq or i and leaves *out untouched. */
LMX_API uint32_t lmx_batch_n_spans(const lmx_batch *b, uint32_t seq);
LMX_API int lmx_batch_span(const lmx_batch *b, uint32_t seq, uint32_t i, lmx_span_info *out);

/* lmx_batch_cu_seqlens(): document boundaries of sequence seq as FlashAttention varlen
 * cu_seqlens (0, ..., seq_len) of the whole sequence, also with CP: returns the count (0 when the
 * plan has cu_seqlens off without CP, or seq is out of range) and copies min(count, cap) entries into dst (dst may be NULL to ask the count). */
LMX_API uint32_t lmx_batch_cu_seqlens(const lmx_batch *b, uint32_t seq, int32_t *dst, uint32_t cap);
/* lmx_batch_cu_seqlens_real(): like lmx_batch_cu_seqlens, the cumulated real lengths of the same
 * segments (pads left out: Transformer Engine's cu_seqlens beside cu_seqlens_padded); equal to
 * lmx_batch_cu_seqlens for a plan that does not pad. */
LMX_API uint32_t lmx_batch_cu_seqlens_real(const lmx_batch *b, uint32_t seq, int32_t *dst, uint32_t cap);

/* lmx_batch_body(): the uncompressed, verified wire body (proto/WIRE.md), e.g. to store it; its
 * size in *size (if not NULL). Owned by the batch (or the caller's fetch_into buffer). */
LMX_API const void *lmx_batch_body(const lmx_batch *b, size_t *size);
LMX_API size_t lmx_batch_body_size(const lmx_batch *b);

/* lmx_get():
 * GET of any server path (e.g. "/v1/stats") with replica failover (each replica once; a 4xx is
 * returned at once). The response body is returned NUL-terminated in *body (free with lmx_free),
 * its length without the NUL in *len (if not NULL). timeout_ms 0 = 60000. Bodies above 64 MiB
 * are refused (LMX_EFORMAT) without being read further; error answers are read up to 4 KB.
 * Errors: as lmx_client_fetch() (LMX_EINVAL for a bad URL list). Thread-safe: yes. */
LMX_API int lmx_get(const char *urls, const char *token, const char *path, uint32_t timeout_ms, char **body,
                    size_t *len, lmx_error *err);
/* lmx_free(): frees memory the library returned (lmx_get's body). Accepts NULL. */
LMX_API void lmx_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
