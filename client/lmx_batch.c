/* lmx_batch: the accessors of a decoded batch (longmix.h). The batch owns its body unless it was
 * decoded into a caller buffer (lmx_client_fetch_into); lmx_batch_free releases what it owns. */
#include "longmix.h"
#include "lmx_client_internal.h"

#include <stdlib.h>
#include <string.h>

void lmx_batch_free(lmx_batch *b)
{
    if (!b)
        return;
    for (uint32_t i = 0; b->domains && i < b->v.h.n_domains; i++)
        free(b->domains[i]);
    free(b->domains);
    free(b->owned);
    free(b);
}

const char *lmx_batch_plan_id(const lmx_batch *b) { return b->plan_id; }
uint64_t lmx_batch_step(const lmx_batch *b) { return b->v.h.step; }
uint32_t lmx_batch_rank(const lmx_batch *b) { return b->v.h.rank; }
uint32_t lmx_batch_world(const lmx_batch *b) { return b->v.h.world; }
uint32_t lmx_batch_n_seqs(const lmx_batch *b) { return b->v.h.n_seqs; }
uint32_t lmx_batch_seq_len(const lmx_batch *b) { return b->v.h.seq_len; }
uint32_t lmx_batch_token_bytes(const lmx_batch *b) { return b->v.h.token_bytes; }
const void *lmx_batch_tokens(const lmx_batch *b) { return b->v.base + b->v.at.tokens; }
uint32_t lmx_batch_cp_rank(const lmx_batch *b) { return b->v.h.cp_rank; }
uint32_t lmx_batch_cp_size(const lmx_batch *b) { return b->v.h.cp_size; }
uint32_t lmx_batch_slice_len(const lmx_batch *b) { return lmx__wire_slice_len(&b->v.h); }
int32_t lmx_batch_ignore_index(const lmx_batch *b) { return b->v.h.ignore_index; }
uint32_t lmx_batch_cp_layout(const lmx_batch *b) { return b->v.h.cp_layout; }
int lmx_batch_padded(const lmx_batch *b) { return b->v.h.version == LMX_WIRE_VERSION_PAD; }
/* Zero-copy views like lmx_batch_tokens: sections are 8-aligned in the body; values are little
 * endian, the byte order of the hosts we build for. */
const int32_t *lmx_batch_labels(const lmx_batch *b)
{
    return lmx__wire_has_labels(&b->v.h) ? (const int32_t *)(const void *)(b->v.base + b->v.at.labels) : NULL;
}
const uint32_t *lmx_batch_position_ids(const lmx_batch *b)
{
    return lmx__wire_has_labels(&b->v.h) ? (const uint32_t *)(const void *)(b->v.base + b->v.at.positions) : NULL;
}
uint32_t lmx_batch_next_token(const lmx_batch *b, uint32_t seq)
{
    return seq < b->v.h.n_seqs ? lmx__wire_next_token(&b->v, seq) : UINT32_MAX;
}

int lmx_batch_tokens_u32(const lmx_batch *b, uint32_t *dst, size_t n_dst)
{
    size_t n = (size_t)b->v.h.n_seqs * lmx__wire_slice_len(&b->v.h);
    if (n_dst < n)
        return LMX_EINVAL;
    const uint8_t *p = b->v.base + b->v.at.tokens;
    if (b->v.h.token_bytes == 2)
        for (size_t i = 0; i < n; i++)
            dst[i] = lmx__get16(p + 2 * i);
    else
        for (size_t i = 0; i < n; i++)
            dst[i] = lmx__get32(p + 4 * i);
    return LMX_OK;
}

uint32_t lmx_batch_n_spans(const lmx_batch *b, uint32_t seq)
{
    if (seq >= b->v.h.n_seqs)
        return 0;
    uint32_t a, e;
    lmx__wire_seq_spans(&b->v, seq, &a, &e);
    return e - a;
}

int lmx_batch_span(const lmx_batch *b, uint32_t seq, uint32_t i, lmx_span_info *out)
{
    if (seq >= b->v.h.n_seqs)
        return LMX_EINVAL;
    uint32_t a, e;
    lmx__wire_seq_spans(&b->v, seq, &a, &e);
    if (i >= e - a)
        return LMX_EINVAL;
    lmx_span s = lmx__wire_span(&b->v, a + i);
    out->doc = s.doc;
    out->offset = s.offset;
    out->start = s.start;
    out->length = s.length;
    out->domain = b->domains && b->domains[s.domain] ? b->domains[s.domain] : "";
    return LMX_OK;
}

uint32_t lmx_batch_cu_seqlens(const lmx_batch *b, uint32_t seq, int32_t *dst, uint32_t cap)
{
    if (seq >= b->v.h.n_seqs)
        return 0;
    uint32_t a, e;
    lmx__wire_seq_cu(&b->v, seq, &a, &e);
    for (uint32_t i = a; dst && i < e && i - a < cap; i++)
        dst[i - a] = lmx__wire_cu(&b->v, i);
    return e - a;
}

uint32_t lmx_batch_cu_seqlens_real(const lmx_batch *b, uint32_t seq, int32_t *dst, uint32_t cap)
{
    if (!lmx_batch_padded(b))
        return lmx_batch_cu_seqlens(b, seq, dst, cap);
    if (seq >= b->v.h.n_seqs)
        return 0;
    uint32_t a, e;
    lmx__wire_seq_cu(&b->v, seq, &a, &e);
    for (uint32_t i = a; dst && i < e && i - a < cap; i++)
        dst[i - a] = lmx__wire_cu_real(&b->v, i);
    return e - a;
}

const void *lmx_batch_body(const lmx_batch *b, size_t *size)
{
    if (size)
        *size = b->size;
    return b->v.base;
}

size_t lmx_batch_body_size(const lmx_batch *b) { return b->size; }

void lmx_free(void *p) { free(p); }
