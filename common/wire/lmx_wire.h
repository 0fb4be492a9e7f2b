/* Batch wire formats v1, v2 and v3 (proto/WIRE.md): layout, writer and validating reader. v2 is v1
 * with a context-parallel slice of each sequence and per-position labels and position ids; v3 is
 * v2 for padded plans, with the real cu_seqlens beside the padded ones and a CP layout. */
#ifndef LMX_WIRE_H
#define LMX_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include "lmx_error.h"
#include "lmx_proto.h"
#include "lmx_util.h"

typedef struct lmx_span {
    uint64_t doc;    /* global document id in the index */
    uint64_t offset; /* offset of the first covered token in the document's ids */
    uint32_t start;  /* position in the sequence */
    uint32_t length;
    uint32_t domain; /* index into the batch's domain table */
} lmx_span;

typedef struct lmx_wire_header {
    uint32_t version; /* LMX_WIRE_VERSION (1) or LMX_WIRE_VERSION_CP (2); the writer takes 0 as 1 */
    uint32_t flags;
    uint8_t plan_id[LMX_PLAN_ID_BYTES];
    uint64_t step;
    uint32_t rank, world, seq_len, n_seqs, token_bytes, n_domains, n_spans, n_cu;
    uint64_t total_size;
    /* v2 only (v1: 0, 1, 0) */
    uint32_t cp_rank, cp_size;
    int32_t ignore_index;
    /* v3 only (else LMX_CP_ZIGZAG) */
    uint32_t cp_layout;
} lmx_wire_header;

/* Whether the body has labels and position ids (v2, v3). */
static inline int lmx__wire_has_labels(const lmx_wire_header *h)
{
    return h->version == LMX_WIRE_VERSION_CP || h->version == LMX_WIRE_VERSION_PAD;
}

/* Positions per sequence in the body: seq_len / cp_size (v1: seq_len). */
static inline uint32_t lmx__wire_slice_len(const lmx_wire_header *h)
{
    return lmx__wire_has_labels(h) && h->cp_size > 0 ? h->seq_len / h->cp_size : h->seq_len;
}

/* Section offsets from the start of the body (8-aligned except domain_bytes); labels and
 * positions are empty (offset = next section) in v1, cu_real outside v3. */
typedef struct lmx_wire_layout {
    uint64_t tokens, labels, positions, next_tokens, span_index, spans, cu_index, cu, cu_real, domain_offsets,
        domain_bytes, end;
} lmx_wire_layout;

/* Computes the layout for h (with domain_blob = total bytes of the domain names); fails with
 * LMX_EFORMAT when a count is over the limits of lmx_proto.h or the sizes overflow. */
int lmx__wire_layout(const lmx_wire_header *h, uint64_t domain_blob, lmx_wire_layout *out,
                     lmx_error *err);

/* A validated, zero-copy view of a body. Pointers point into the caller's buffer, which must
 * outlive the view. Integers in the sections are little endian: read them with the accessors. */
typedef struct lmx_wire_view {
    lmx_wire_header h;
    lmx_wire_layout at;
    const uint8_t *base;
} lmx_wire_view;

/* Validates everything a consumer relies on: magic, version, sizes (a truncated or padded body
 * is rejected), span and cu_seqlens bounds, domain table. Errors: LMX_EFORMAT naming the field. */
int lmx__wire_parse(const uint8_t *buf, size_t len, lmx_wire_view *v, lmx_error *err);

/* pos < lmx__wire_slice_len(&v->h). labels and position ids: v2 only. */
uint32_t lmx__wire_token(const lmx_wire_view *v, uint32_t seq, uint32_t pos);
int32_t lmx__wire_label(const lmx_wire_view *v, uint32_t seq, uint32_t pos);
uint32_t lmx__wire_position(const lmx_wire_view *v, uint32_t seq, uint32_t pos);
uint32_t lmx__wire_next_token(const lmx_wire_view *v, uint32_t seq);
/* Spans of sequence seq are [first, end). */
void lmx__wire_seq_spans(const lmx_wire_view *v, uint32_t seq, uint32_t *first, uint32_t *end);
lmx_span lmx__wire_span(const lmx_wire_view *v, uint32_t i);
void lmx__wire_seq_cu(const lmx_wire_view *v, uint32_t seq, uint32_t *first, uint32_t *end);
int32_t lmx__wire_cu(const lmx_wire_view *v, uint32_t i);
/* v3: entry i of the real cu_seqlens (cumulated real lengths), indexed like lmx__wire_cu. */
int32_t lmx__wire_cu_real(const lmx_wire_view *v, uint32_t i);
/* Domain name i (not NUL-terminated) and its length. */
const char *lmx__wire_domain(const lmx_wire_view *v, uint32_t i, uint32_t *len);

/* Writer. Usage: begin (reserves header + tokens + next_tokens), fill tokens/next in place via
 * lmx__wire_tokens(), add spans and cu entries sequence by sequence, then finish with the domain
 * table. The body is built once, in one buffer; the caller owns `out` (lmx__buf_free). */
typedef struct lmx_wire_writer {
    lmx_wire_header h;
    lmx_buf *out;
    lmx_buf spans;  /* 32-byte records, copied after the fixed sections at finish */
    lmx_buf cu;     /* i32 entries */
    lmx_buf cu_real; /* v3: i32 entries, one per cu entry */
    lmx_buf sidx;   /* u32 span_index */
    lmx_buf cidx;   /* u32 cu_index */
    uint64_t labels, positions, next_tokens; /* section offsets fixed by begin */
} lmx_wire_writer;

int lmx__wire_begin(lmx_wire_writer *w, const lmx_wire_header *h, lmx_buf *out, lmx_error *err);
/* Start of sequence seq's tokens inside out (token_bytes each, little endian; slice_len of
 * them). v2: its labels (i32) and position ids (u32), slice_len each, little endian. */
uint8_t *lmx__wire_tokens(lmx_wire_writer *w, uint32_t seq);
uint8_t *lmx__wire_labels(lmx_wire_writer *w, uint32_t seq);
uint8_t *lmx__wire_positions(lmx_wire_writer *w, uint32_t seq);
void lmx__wire_set_next(lmx_wire_writer *w, uint32_t seq, uint32_t next_token);
/* Spans and cu entries must be added in sequence order; end_seq closes the current sequence. */
int lmx__wire_add_span(lmx_wire_writer *w, const lmx_span *s);
int lmx__wire_add_cu(lmx_wire_writer *w, int32_t boundary);
/* v3: the real cu_seqlens entry that goes with each lmx__wire_add_cu (same count). */
int lmx__wire_add_cu_real(lmx_wire_writer *w, int32_t boundary);
int lmx__wire_end_seq(lmx_wire_writer *w);
int lmx__wire_finish(lmx_wire_writer *w, const char *const *domains, uint32_t n_domains,
                     lmx_error *err);
/* Frees the writer's scratch (not `out`); accepts a zeroed or finished writer. */
void lmx__wire_writer_free(lmx_wire_writer *w);

#endif
