#include "lmx_wire.h"

#include <string.h>

static uint64_t align8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }

int lmx__wire_layout(const lmx_wire_header *h, uint64_t domain_blob, lmx_wire_layout *at,
                     lmx_error *err)
{
    if (h->token_bytes != 2 && h->token_bytes != 4)
        return lmx__err(err, LMX_EFORMAT, "batch: token_bytes %u (want 2 or 4)", h->token_bytes);
    if (h->seq_len < 1 || h->seq_len > LMX_MAX_SEQ_LEN)
        return lmx__err(err, LMX_EFORMAT, "batch: seq_len %u outside [1, %u]", h->seq_len, LMX_MAX_SEQ_LEN);
    if (h->n_seqs > LMX_MAX_SEQS_PER_BATCH)
        return lmx__err(err, LMX_EFORMAT, "batch: n_seqs %u over %u", h->n_seqs, LMX_MAX_SEQS_PER_BATCH);
    if (lmx__wire_has_labels(h)) {
        if (h->cp_size < 1 || h->cp_size > LMX_MAX_CP_SIZE || h->cp_rank >= h->cp_size)
            return lmx__err(err, LMX_EFORMAT, "batch: cp_rank %u of cp_size %u", h->cp_rank, h->cp_size);
        if (h->cp_size > 1 && h->seq_len % (2 * h->cp_size) != 0)
            return lmx__err(err, LMX_EFORMAT, "batch: seq_len %u is not a multiple of 2*cp_size %u", h->seq_len,
                            2 * h->cp_size);
        if (!(h->flags & LMX_WIRE_FLAG_CU_SEQLENS))
            return lmx__err(err, LMX_EFORMAT, "batch: wire v%u without the cu_seqlens flag", h->version);
        if (h->cp_layout != LMX_CP_ZIGZAG && h->cp_layout != LMX_CP_THD)
            return lmx__err(err, LMX_EFORMAT, "batch: cp_layout %u (want 0 zigzag or 1 thd)", h->cp_layout);
    }
    if (h->n_domains > LMX_MAX_DOMAINS)
        return lmx__err(err, LMX_EFORMAT, "batch: n_domains %u over %u", h->n_domains, LMX_MAX_DOMAINS);
    if (domain_blob > (uint64_t)h->n_domains * LMX_MAX_DOMAIN_NAME)
        return lmx__err(err, LMX_EFORMAT, "batch: domain table of %llu bytes too large",
                        (unsigned long long)domain_blob);
    /* All products below fit in 64 bits given the limits above (n_spans, n_cu are u32). */
    uint64_t n = h->n_seqs, cu_flag = (h->flags & LMX_WIRE_FLAG_CU_SEQLENS) != 0;
    uint64_t S = lmx__wire_slice_len(h), v2 = lmx__wire_has_labels(h), v3 = h->version == LMX_WIRE_VERSION_PAD;
    at->tokens = LMX_WIRE_HEADER_SIZE;
    at->labels = align8(at->tokens + n * S * h->token_bytes);
    at->positions = align8(at->labels + (v2 ? 4 * n * S : 0));
    at->next_tokens = align8(at->positions + (v2 ? 4 * n * S : 0));
    at->span_index = align8(at->next_tokens + 4 * n);
    at->spans = align8(at->span_index + 4 * (n + 1));
    at->cu_index = align8(at->spans + (uint64_t)LMX_WIRE_SPAN_SIZE * h->n_spans);
    at->cu = align8(at->cu_index + (cu_flag ? 4 * (n + 1) : 0));
    at->cu_real = align8(at->cu + 4 * (uint64_t)h->n_cu);
    at->domain_offsets = align8(at->cu_real + (v3 ? 4 * (uint64_t)h->n_cu : 0));
    at->domain_bytes = at->domain_offsets + 4 * ((uint64_t)h->n_domains + 1);
    at->end = align8(at->domain_bytes + domain_blob);
    if (!cu_flag && h->n_cu)
        return lmx__err(err, LMX_EFORMAT, "batch: n_cu %u without the cu_seqlens flag", h->n_cu);
    return LMX_OK;
}

static void read_header(const uint8_t *b, lmx_wire_header *h)
{
    h->version = lmx__get16(b + LMX_WH_VERSION);
    h->flags = lmx__get32(b + LMX_WH_FLAGS);
    memcpy(h->plan_id, b + LMX_WH_PLAN_ID, LMX_PLAN_ID_BYTES);
    h->step = lmx__get64(b + LMX_WH_STEP);
    h->rank = lmx__get32(b + LMX_WH_RANK);
    h->world = lmx__get32(b + LMX_WH_WORLD);
    h->seq_len = lmx__get32(b + LMX_WH_SEQ_LEN);
    h->n_seqs = lmx__get32(b + LMX_WH_N_SEQS);
    h->token_bytes = lmx__get32(b + LMX_WH_TOKEN_BYTES);
    h->n_domains = lmx__get32(b + LMX_WH_N_DOMAINS);
    h->n_spans = lmx__get32(b + LMX_WH_N_SPANS);
    h->n_cu = lmx__get32(b + LMX_WH_N_CU);
    h->total_size = lmx__get64(b + LMX_WH_TOTAL_SIZE);
    h->cp_rank = 0, h->cp_size = 1, h->ignore_index = 0, h->cp_layout = LMX_CP_ZIGZAG;
    if (lmx__wire_has_labels(h)) {
        h->cp_rank = lmx__get32(b + LMX_WH_CP_RANK);
        h->cp_size = lmx__get32(b + LMX_WH_CP_SIZE);
        h->ignore_index = (int32_t)lmx__get32(b + LMX_WH_IGNORE_INDEX);
    }
    if (h->version == LMX_WIRE_VERSION_PAD)
        h->cp_layout = lmx__get32(b + LMX_WH_CP_LAYOUT);
}

static void write_header(uint8_t *b, const lmx_wire_header *h)
{
    memset(b, 0, LMX_WIRE_HEADER_SIZE);
    memcpy(b + LMX_WH_MAGIC, LMX_WIRE_MAGIC, 8);
    lmx__put16(b + LMX_WH_VERSION, (uint16_t)h->version);
    lmx__put16(b + LMX_WH_HEADER_SIZE, LMX_WIRE_HEADER_SIZE);
    lmx__put32(b + LMX_WH_FLAGS, h->flags);
    memcpy(b + LMX_WH_PLAN_ID, h->plan_id, LMX_PLAN_ID_BYTES);
    lmx__put64(b + LMX_WH_STEP, h->step);
    lmx__put32(b + LMX_WH_RANK, h->rank);
    lmx__put32(b + LMX_WH_WORLD, h->world);
    lmx__put32(b + LMX_WH_SEQ_LEN, h->seq_len);
    lmx__put32(b + LMX_WH_N_SEQS, h->n_seqs);
    lmx__put32(b + LMX_WH_TOKEN_BYTES, h->token_bytes);
    lmx__put32(b + LMX_WH_N_DOMAINS, h->n_domains);
    lmx__put32(b + LMX_WH_N_SPANS, h->n_spans);
    lmx__put32(b + LMX_WH_N_CU, h->n_cu);
    lmx__put64(b + LMX_WH_TOTAL_SIZE, h->total_size);
    if (lmx__wire_has_labels(h)) {
        lmx__put32(b + LMX_WH_CP_RANK, h->cp_rank);
        lmx__put32(b + LMX_WH_CP_SIZE, h->cp_size);
        lmx__put32(b + LMX_WH_IGNORE_INDEX, (uint32_t)h->ignore_index);
    }
    if (h->version == LMX_WIRE_VERSION_PAD)
        lmx__put32(b + LMX_WH_CP_LAYOUT, h->cp_layout);
}

/* Checks a prefix-count index: starts at 0, never decreases, ends at total. */
static int check_index(const uint8_t *p, uint32_t n, uint32_t total, const char *what, lmx_error *err)
{
    uint32_t prev = 0;
    for (uint32_t i = 0; i <= n; i++) {
        uint32_t x = lmx__get32(p + 4 * (size_t)i);
        if ((i == 0 && x != 0) || x < prev || x > total)
            return lmx__err(err, LMX_EFORMAT, "batch: %s[%u] = %u is not a valid prefix count", what, i, x);
        prev = x;
    }
    if (prev != total)
        return lmx__err(err, LMX_EFORMAT, "batch: %s ends at %u, want %u", what, prev, total);
    return LMX_OK;
}

/* v3: per sequence the real cu_seqlens start at 0 and each real length is in [1, its padded
 * length]; with the thd layout every padded length is a multiple of 2*cp_size. */
static int check_padded(const lmx_wire_view *v, lmx_error *err)
{
    const uint32_t K2 = 2 * v->h.cp_size;
    for (uint32_t s = 0; s < v->h.n_seqs; s++) {
        uint32_t a, e;
        lmx__wire_seq_cu(v, s, &a, &e);
        if (lmx__wire_cu_real(v, a) != 0)
            return lmx__err(err, LMX_EFORMAT, "batch: real cu_seqlens of sequence %u must start at 0", s);
        for (uint32_t i = a + 1; i < e; i++) {
            int64_t pad = (int64_t)lmx__wire_cu(v, i) - lmx__wire_cu(v, i - 1);
            int64_t real = (int64_t)lmx__wire_cu_real(v, i) - lmx__wire_cu_real(v, i - 1);
            if (real < 1 || real > pad)
                return lmx__err(err, LMX_EFORMAT, "batch: real length %lld of segment %u of sequence %u outside [1, %lld]",
                                (long long)real, i - a - 1, s, (long long)pad);
            if (v->h.cp_layout == LMX_CP_THD && v->h.cp_size > 1 && pad % K2 != 0)
                return lmx__err(err, LMX_EFORMAT, "batch: thd segment %u of sequence %u has %lld positions, not a multiple of 2*cp_size %u",
                                i - a - 1, s, (long long)pad, K2);
        }
    }
    return LMX_OK;
}

int lmx__wire_parse(const uint8_t *buf, size_t len, lmx_wire_view *v, lmx_error *err)
{
    memset(v, 0, sizeof *v);
    if (len < LMX_WIRE_HEADER_SIZE)
        return lmx__err(err, LMX_EFORMAT, "batch: %zu bytes, shorter than the %d-byte header (truncated)",
                        len, LMX_WIRE_HEADER_SIZE);
    if (memcmp(buf, LMX_WIRE_MAGIC, 8) != 0)
        return lmx__err(err, LMX_EFORMAT, "batch: bad magic (not a longmix batch)");
    uint16_t version = lmx__get16(buf + LMX_WH_VERSION);
    if (version != LMX_WIRE_VERSION && version != LMX_WIRE_VERSION_CP && version != LMX_WIRE_VERSION_PAD)
        return lmx__err(err, LMX_EUNSUPPORTED, "batch: wire version %u (this build reads %d to %d)", version,
                        LMX_WIRE_VERSION, LMX_WIRE_VERSION_PAD);
    if (lmx__get16(buf + LMX_WH_HEADER_SIZE) != LMX_WIRE_HEADER_SIZE)
        return lmx__err(err, LMX_EFORMAT, "batch: header_size %u", lmx__get16(buf + LMX_WH_HEADER_SIZE));
    read_header(buf, &v->h);
    if (v->h.total_size != len)
        return lmx__err(err, LMX_EFORMAT, "batch: body is %zu bytes but the header says %llu (truncated?)",
                        len, (unsigned long long)v->h.total_size);
    if (v->h.world == 0 || v->h.rank >= v->h.world)
        return lmx__err(err, LMX_EFORMAT, "batch: rank %u of world %u", v->h.rank, v->h.world);
    /* The domain blob size is implied by total_size; compute the layout without it first. */
    int rc = lmx__wire_layout(&v->h, 0, &v->at, err);
    if (rc)
        return rc;
    if (v->at.domain_bytes > len)
        return lmx__err(err, LMX_EFORMAT, "batch: sections need %llu bytes, body has %zu",
                        (unsigned long long)v->at.domain_bytes, len);
    v->base = buf;
    const uint8_t *doff = buf + v->at.domain_offsets;
    uint64_t blob = len - v->at.domain_bytes;
    uint32_t prev = 0;
    for (uint32_t i = 0; i <= v->h.n_domains; i++) {
        uint32_t o = lmx__get32(doff + 4 * (size_t)i);
        if ((i == 0 && o != 0) || o < prev || o > blob || (i > 0 && o - prev > LMX_MAX_DOMAIN_NAME))
            return lmx__err(err, LMX_EFORMAT, "batch: domain offset %u = %u invalid", i, o);
        prev = o;
    }
    if (align8(v->at.domain_bytes + prev) != len)
        return lmx__err(err, LMX_EFORMAT, "batch: %llu trailing bytes after the domain table",
                        (unsigned long long)(len - v->at.domain_bytes - prev));
    /* Names are NUL-free and the padding after them is zero: otherwise a shortened last offset
     * would silently turn padding into (or cut) a domain name. */
    if (memchr(buf + v->at.domain_bytes, '\0', prev))
        return lmx__err(err, LMX_EFORMAT, "batch: domain name contains a NUL byte");
    for (size_t i = (size_t)v->at.domain_bytes + prev; i < len; i++)
        if (buf[i] != 0)
            return lmx__err(err, LMX_EFORMAT, "batch: non-zero padding after the domain table");
    rc = lmx__wire_layout(&v->h, prev, &v->at, err);
    if (rc)
        return rc;
    if ((rc = check_index(buf + v->at.span_index, v->h.n_seqs, v->h.n_spans, "span_index", err)))
        return rc;
    const uint32_t S = lmx__wire_slice_len(&v->h); /* spans are in slice positions */
    for (uint32_t s = 0; s < v->h.n_seqs; s++) {
        uint32_t a, e;
        lmx__wire_seq_spans(v, s, &a, &e);
        for (uint32_t i = a; i < e; i++) {
            lmx_span sp = lmx__wire_span(v, i);
            if (sp.length == 0 || sp.start > S || sp.length > S - sp.start ||
                sp.domain >= v->h.n_domains)
                return lmx__err(err, LMX_EFORMAT, "batch: span %u of sequence %u out of bounds", i - a, s);
        }
    }
    if (v->h.flags & LMX_WIRE_FLAG_CU_SEQLENS) {
        if ((rc = check_index(buf + v->at.cu_index, v->h.n_seqs, v->h.n_cu, "cu_index", err)))
            return rc;
        for (uint32_t s = 0; s < v->h.n_seqs; s++) {
            uint32_t a, e;
            lmx__wire_seq_cu(v, s, &a, &e);
            if (e - a < 2 || lmx__wire_cu(v, a) != 0 || lmx__wire_cu(v, e - 1) != (int32_t)v->h.seq_len)
                return lmx__err(err, LMX_EFORMAT, "batch: cu_seqlens of sequence %u must run from 0 to seq_len", s);
            for (uint32_t i = a + 1; i < e; i++)
                if (lmx__wire_cu(v, i) <= lmx__wire_cu(v, i - 1))
                    return lmx__err(err, LMX_EFORMAT, "batch: cu_seqlens of sequence %u not increasing", s);
        }
    }
    if (v->h.version == LMX_WIRE_VERSION_PAD)
        return check_padded(v, err);
    return LMX_OK;
}

uint32_t lmx__wire_token(const lmx_wire_view *v, uint32_t seq, uint32_t pos)
{
    size_t i = (size_t)seq * lmx__wire_slice_len(&v->h) + pos;
    const uint8_t *p = v->base + v->at.tokens;
    return v->h.token_bytes == 2 ? lmx__get16(p + 2 * i) : lmx__get32(p + 4 * i);
}

int32_t lmx__wire_label(const lmx_wire_view *v, uint32_t seq, uint32_t pos)
{
    size_t i = (size_t)seq * lmx__wire_slice_len(&v->h) + pos;
    return (int32_t)lmx__get32(v->base + v->at.labels + 4 * i);
}

uint32_t lmx__wire_position(const lmx_wire_view *v, uint32_t seq, uint32_t pos)
{
    size_t i = (size_t)seq * lmx__wire_slice_len(&v->h) + pos;
    return lmx__get32(v->base + v->at.positions + 4 * i);
}

uint32_t lmx__wire_next_token(const lmx_wire_view *v, uint32_t seq)
{
    return lmx__get32(v->base + v->at.next_tokens + 4 * (size_t)seq);
}

void lmx__wire_seq_spans(const lmx_wire_view *v, uint32_t seq, uint32_t *first, uint32_t *end)
{
    *first = lmx__get32(v->base + v->at.span_index + 4 * (size_t)seq);
    *end = lmx__get32(v->base + v->at.span_index + 4 * ((size_t)seq + 1));
}

lmx_span lmx__wire_span(const lmx_wire_view *v, uint32_t i)
{
    const uint8_t *p = v->base + v->at.spans + (size_t)LMX_WIRE_SPAN_SIZE * i;
    lmx_span s = {lmx__get64(p), lmx__get64(p + 8), lmx__get32(p + 16), lmx__get32(p + 20),
                  lmx__get32(p + 24)};
    return s;
}

void lmx__wire_seq_cu(const lmx_wire_view *v, uint32_t seq, uint32_t *first, uint32_t *end)
{
    if (!(v->h.flags & LMX_WIRE_FLAG_CU_SEQLENS)) {
        *first = *end = 0;
        return;
    }
    *first = lmx__get32(v->base + v->at.cu_index + 4 * (size_t)seq);
    *end = lmx__get32(v->base + v->at.cu_index + 4 * ((size_t)seq + 1));
}

int32_t lmx__wire_cu(const lmx_wire_view *v, uint32_t i)
{
    return (int32_t)lmx__get32(v->base + v->at.cu + 4 * (size_t)i);
}

int32_t lmx__wire_cu_real(const lmx_wire_view *v, uint32_t i)
{
    return (int32_t)lmx__get32(v->base + v->at.cu_real + 4 * (size_t)i);
}

const char *lmx__wire_domain(const lmx_wire_view *v, uint32_t i, uint32_t *len)
{
    uint32_t a = lmx__get32(v->base + v->at.domain_offsets + 4 * (size_t)i);
    uint32_t b = lmx__get32(v->base + v->at.domain_offsets + 4 * ((size_t)i + 1));
    *len = b - a;
    return (const char *)v->base + v->at.domain_bytes + a;
}

/* ---- writer ---- */

static int put_u32(lmx_buf *b, uint32_t x)
{
    uint8_t t[4];
    lmx__put32(t, x);
    return lmx__buf_append(b, t, 4);
}

int lmx__wire_begin(lmx_wire_writer *w, const lmx_wire_header *h, lmx_buf *out, lmx_error *err)
{
    memset(w, 0, sizeof *w);
    w->h = *h;
    if (w->h.version == 0)
        w->h.version = LMX_WIRE_VERSION;
    if (w->h.version == LMX_WIRE_VERSION)
        w->h.cp_rank = 0, w->h.cp_size = 1, w->h.ignore_index = 0;
    if (w->h.version != LMX_WIRE_VERSION_PAD)
        w->h.cp_layout = LMX_CP_ZIGZAG;
    w->h.n_spans = w->h.n_cu = w->h.n_domains = 0;
    w->out = out;
    lmx_wire_layout at;
    int rc = lmx__wire_layout(&w->h, 0, &at, err);
    if (rc)
        return rc;
    if (out->cap_limit == 0)
        out->cap_limit = (size_t)1 << 34;
    /* Header + tokens + next tokens, with room for the small sections so finish rarely moves. */
    out->len = 0;
    if (lmx__buf_reserve(out, at.span_index + 65536) != LMX_OK)
        return lmx__err(err, LMX_ENOMEM, "batch: cannot allocate %llu bytes", (unsigned long long)at.span_index);
    memset(out->data, 0, at.span_index);
    out->len = at.span_index;
    w->labels = at.labels;
    w->positions = at.positions;
    w->next_tokens = at.next_tokens;
    if (put_u32(&w->sidx, 0) || put_u32(&w->cidx, 0))
        return lmx__err(err, LMX_ENOMEM, "batch: out of memory");
    return LMX_OK;
}

uint8_t *lmx__wire_tokens(lmx_wire_writer *w, uint32_t seq)
{
    return w->out->data + LMX_WIRE_HEADER_SIZE + (size_t)seq * lmx__wire_slice_len(&w->h) * w->h.token_bytes;
}

uint8_t *lmx__wire_labels(lmx_wire_writer *w, uint32_t seq)
{
    return w->out->data + w->labels + (size_t)seq * lmx__wire_slice_len(&w->h) * 4;
}

uint8_t *lmx__wire_positions(lmx_wire_writer *w, uint32_t seq)
{
    return w->out->data + w->positions + (size_t)seq * lmx__wire_slice_len(&w->h) * 4;
}

void lmx__wire_set_next(lmx_wire_writer *w, uint32_t seq, uint32_t next_token)
{
    lmx__put32(w->out->data + w->next_tokens + 4 * (size_t)seq, next_token);
}

int lmx__wire_add_span(lmx_wire_writer *w, const lmx_span *s)
{
    uint8_t r[LMX_WIRE_SPAN_SIZE] = {0};
    lmx__put64(r, s->doc);
    lmx__put64(r + 8, s->offset);
    lmx__put32(r + 16, s->start);
    lmx__put32(r + 20, s->length);
    lmx__put32(r + 24, s->domain);
    w->h.n_spans++;
    return lmx__buf_append(&w->spans, r, sizeof r);
}

int lmx__wire_add_cu(lmx_wire_writer *w, int32_t boundary)
{
    w->h.n_cu++;
    return put_u32(&w->cu, (uint32_t)boundary);
}

int lmx__wire_add_cu_real(lmx_wire_writer *w, int32_t boundary) { return put_u32(&w->cu_real, (uint32_t)boundary); }

int lmx__wire_end_seq(lmx_wire_writer *w)
{
    int rc = put_u32(&w->sidx, w->h.n_spans);
    if (rc == LMX_OK && (w->h.flags & LMX_WIRE_FLAG_CU_SEQLENS))
        rc = put_u32(&w->cidx, w->h.n_cu);
    return rc;
}

static int pad_to(lmx_buf *b, uint64_t off)
{
    static const uint8_t zeros[8];
    return off > b->len ? lmx__buf_append(b, zeros, (size_t)(off - b->len)) : LMX_OK;
}

int lmx__wire_finish(lmx_wire_writer *w, const char *const *domains, uint32_t n_domains, lmx_error *err)
{
    lmx_buf *out = w->out;
    uint64_t blob = 0;
    for (uint32_t i = 0; i < n_domains; i++) {
        size_t n = strlen(domains[i]);
        if (n > LMX_MAX_DOMAIN_NAME)
            return lmx__err(err, LMX_EINVAL, "batch: domain name '%s' longer than %d bytes", domains[i],
                            LMX_MAX_DOMAIN_NAME);
        blob += n;
    }
    w->h.n_domains = n_domains;
    lmx_wire_layout at;
    int rc = lmx__wire_layout(&w->h, blob, &at, err);
    if (rc)
        return rc;
    if (w->sidx.len != 4 * ((size_t)w->h.n_seqs + 1))
        return lmx__err(err, LMX_EINTERNAL, "batch: %zu sequences ended, header says %u", w->sidx.len / 4 - 1,
                        w->h.n_seqs);
    w->h.total_size = at.end;
    if (lmx__buf_reserve(out, (size_t)(at.end - out->len)) != LMX_OK)
        return lmx__err(err, LMX_ENOMEM, "batch: out of memory");
    rc = lmx__buf_append(out, w->sidx.data, w->sidx.len);
    rc = rc ? rc : pad_to(out, at.spans);
    rc = rc ? rc : lmx__buf_append(out, w->spans.data, w->spans.len);
    rc = rc ? rc : pad_to(out, at.cu_index);
    if (w->h.flags & LMX_WIRE_FLAG_CU_SEQLENS)
        rc = rc ? rc : lmx__buf_append(out, w->cidx.data, w->cidx.len);
    rc = rc ? rc : pad_to(out, at.cu);
    rc = rc ? rc : lmx__buf_append(out, w->cu.data, w->cu.len);
    if (w->h.version == LMX_WIRE_VERSION_PAD) {
        if (w->cu_real.len != w->cu.len)
            return lmx__err(err, LMX_EINTERNAL, "batch: %zu real cu_seqlens entries for %zu", w->cu_real.len / 4,
                            w->cu.len / 4);
        rc = rc ? rc : pad_to(out, at.cu_real);
        rc = rc ? rc : lmx__buf_append(out, w->cu_real.data, w->cu_real.len);
    }
    rc = rc ? rc : pad_to(out, at.domain_offsets);
    uint32_t off = 0;
    for (uint32_t i = 0; rc == LMX_OK && i <= n_domains; i++) {
        rc = put_u32(out, off);
        if (i < n_domains)
            off += (uint32_t)strlen(domains[i]);
    }
    for (uint32_t i = 0; rc == LMX_OK && i < n_domains; i++)
        rc = lmx__buf_append(out, domains[i], strlen(domains[i]));
    rc = rc ? rc : pad_to(out, at.end);
    if (rc)
        return lmx__err(err, LMX_ENOMEM, "batch: out of memory");
    write_header(out->data, &w->h);
    return LMX_OK;
}

void lmx__wire_writer_free(lmx_wire_writer *w)
{
    if (!w)
        return;
    lmx__buf_free(&w->spans);
    lmx__buf_free(&w->cu);
    lmx__buf_free(&w->cu_real);
    lmx__buf_free(&w->sidx);
    lmx__buf_free(&w->cidx);
}
