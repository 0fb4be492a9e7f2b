/* Wire output (proto/WIRE.md): a step's sequences for (rank, world) copied out of the packed
 * blocks, with spans, cu_seqlens and next tokens; for wire v2 each reduced to a context-parallel
 * slice with labels and position ids. */
#include <stdlib.h>
#include <string.h>

#include "lmx_plan_internal.h"
#include "lmx_wire.h"

static void put_token(uint8_t *dst, uint32_t tb, uint32_t v)
{
    if (tb == 2)
        lmx__put16(dst, (uint16_t)v);
    else
        lmx__put32(dst, v);
}

/* Token at stream position s of block k. */
static uint32_t token_at(const lmx_plan *p, const block *k, uint64_t s)
{
    const piece *pc = &k->pieces[lmx__plan_find_piece(k, s)];
    uint64_t o = pc->item_off + (s - pc->start);
    const item *it = &p->doms[pc->dom].items[pc->item];
    if (p->spec.bos && o == 0)
        return p->bos_id;
    o -= p->spec.bos ? 1 : 0;
    if (o >= it->len)
        return p->eos_id;
    lmx_doc doc;
    lmx__index_doc(p->ix, it->doc, &doc, NULL);
    return lmx__doc_token(&doc, (uint64_t)it->piece * p->spec.cut_len * (p->spec.strategy == LMX_CUT) + o);
}

/* One whole sequence before it goes on the wire: tokens in `tokens` (seq_len * token_bytes),
 * spans and segment starts (cu_seqlens without the final seq_len) in order of position. */
typedef struct seq_out {
    uint8_t *tokens;
    lmx_buf spans; /* lmx_span records */
    lmx_buf cu;    /* int32_t */
    uint32_t next;  /* next_token */
    int next_is_start; /* the next sequence's first token starts a piece (a new segment) */
} seq_out;

/* Copies the part of piece pc that starts skip tokens into it, at most `room` tokens, to dst
 * at position *filled: [BOS] tokens [EOS], with a span for the document tokens. */
static int copy_piece(const lmx_plan *p, const piece *pc, uint64_t skip, uint32_t room, uint32_t tb,
                      seq_out *so, uint32_t *filled)
{
    uint8_t *dst = so->tokens;
    const item *it = &p->doms[pc->dom].items[pc->item];
    uint64_t o = pc->item_off + skip, end = (uint64_t)pc->item_off + pc->len;
    if (end - o > room)
        end = o + room;
    int rc = LMX_OK;
    if (p->spec.bos && o == 0 && o < end) {
        put_token(dst + (size_t)*filled * tb, tb, p->bos_id);
        (*filled)++;
        o++;
    }
    uint64_t t0 = o - (p->spec.bos ? 1 : 0), t1 = end - (p->spec.bos ? 1 : 0);
    if (t1 > it->len)
        t1 = it->len;
    if (t0 < t1) {
        lmx_doc doc;
        lmx__index_doc(p->ix, it->doc, &doc, NULL);
        uint64_t base = p->spec.strategy == LMX_CUT ? (uint64_t)it->piece * p->spec.cut_len : 0;
        if (doc.token_bytes == tb) {
            memcpy(dst + (size_t)*filled * tb, doc.tokens + (base + t0) * tb, (size_t)(t1 - t0) * tb);
        } else {
            for (uint64_t t = t0; t < t1; t++)
                put_token(dst + (size_t)(*filled + (t - t0)) * tb, tb, lmx__doc_token(&doc, base + t));
        }
        lmx_span sp = {it->doc, base + t0, *filled, (uint32_t)(t1 - t0), p->doms[pc->dom].ixdom};
        rc = lmx__buf_append(&so->spans, &sp, sizeof sp);
        *filled += (uint32_t)(t1 - t0);
        o += t1 - t0;
    }
    if (p->spec.eos && o < end) { /* what is left is the EOS */
        put_token(dst + (size_t)*filled * tb, tb, p->eos_id);
        (*filled)++;
    }
    return rc;
}

/* The first token of the sequence at stream position npos (maybe in block b + 1), and whether a
 * piece starts there. */
static int next_token(lmx_plan *p, const block *k, uint64_t npos, uint32_t *out, int *starts, lmx_error *err)
{
    if (npos / p->B == k->b) {
        uint64_t s = npos % p->B;
        *out = token_at(p, k, s);
        *starts = k->pieces[lmx__plan_find_piece(k, s)].start == s;
        return LMX_OK;
    }
    block *k2 = lmx__plan_get_block(p, k->b + 1, err);
    if (!k2)
        return err ? err->code : LMX_ENOMEM;
    *out = token_at(p, k2, 0);
    *starts = 1;
    lmx__plan_put_block(p, k2);
    return LMX_OK;
}

static int put_cu(seq_out *so, int32_t x) { return lmx__buf_append(&so->cu, &x, sizeof x); }

/* Builds global sequence g into so (tokens into so->tokens; spans and cu appended to the emptied
 * lists). Caller holds p->lock. */
static int build_sequence(lmx_plan *p, uint64_t g, uint32_t tb, seq_out *so, lmx_error *err)
{
    const uint32_t L = p->spec.seq_len;
    uint64_t pos = g * L, b = pos / p->B, s0 = pos % p->B;
    so->spans.len = so->cu.len = 0;
    block *k = lmx__plan_get_block(p, b, err);
    if (!k)
        return err ? err->code : LMX_ENOMEM;
    int rc = put_cu(so, 0);
    uint64_t i = lmx__plan_find_piece(k, s0);
    uint32_t filled = 0;
    while (rc == LMX_OK && filled < L) {
        const piece *pc = &k->pieces[i++];
        /* Every piece after the first is another document segment, also a piece that continues
         * an item cut by the previous block (it has no BOS and need not follow its first part). */
        if (filled > 0)
            rc = put_cu(so, (int32_t)filled);
        if (rc == LMX_OK)
            rc = copy_piece(p, pc, s0 + filled - pc->start, L - filled, tb, so, &filled);
    }
    if (rc == LMX_OK)
        rc = next_token(p, k, pos + L, &so->next, &so->next_is_start, err);
    lmx__plan_put_block(p, k);
    return rc;
}

/* v1: the whole sequence into slot (tokens were built in place). */
static int put_whole(lmx_plan *p, const seq_out *so, lmx_wire_writer *w, uint32_t slot)
{
    int rc = LMX_OK;
    const lmx_span *sp = (const lmx_span *)so->spans.data;
    for (size_t i = 0; rc == LMX_OK && i < so->spans.len / sizeof *sp; i++)
        rc = lmx__wire_add_span(w, &sp[i]);
    if (p->spec.cu_seqlens) {
        const int32_t *cu = (const int32_t *)so->cu.data;
        for (size_t i = 0; rc == LMX_OK && i < so->cu.len / sizeof *cu; i++)
            rc = lmx__wire_add_cu(w, cu[i]);
        rc = rc ? rc : lmx__wire_add_cu(w, (int32_t)p->spec.seq_len);
    }
    lmx__wire_set_next(w, slot, so->next);
    return rc ? rc : lmx__wire_end_seq(w);
}

/* v2: context-parallel rank C's zigzag slice of the whole sequence, with labels and position
 * ids computed on the whole sequence first (proto/WIRE.md, "Wire v2"). The slice is chunk C
 * then chunk 2K-1-C of 2K chunks; with K = 1 it is the whole sequence. */
static int put_slice(lmx_plan *p, const seq_out *so, lmx_wire_writer *w, uint32_t slot)
{
    const uint32_t L = p->spec.seq_len, K = w->h.cp_size, C = w->h.cp_rank, tb = w->h.token_bytes;
    const uint32_t S = lmx__wire_slice_len(&w->h), c = K == 1 ? L : S / 2;
    const uint32_t from[2] = {K == 1 ? 0 : C * c, K == 1 ? L : (2 * K - 1 - C) * c};
    const uint32_t n[2] = {c, K == 1 ? 0 : c};
    const int32_t *seg = (const int32_t *)so->cu.data;
    const size_t nseg = so->cu.len / sizeof *seg;
    uint8_t *tok = lmx__wire_tokens(w, slot), *lab = lmx__wire_labels(w, slot), *posn = lmx__wire_positions(w, slot);
    int rc = LMX_OK;
    uint32_t j = 0; /* slice position */
    for (int h = 0; h < 2; h++) {
        memcpy(tok + (size_t)j * tb, so->tokens + (size_t)from[h] * tb, (size_t)n[h] * tb);
        /* One run per segment overlapping the chunk: positions are a ramp, labels the next
         * tokens, and only a segment's last position can have its target in another one. */
        size_t si = 0;
        while (si + 1 < nseg && (uint32_t)seg[si + 1] <= from[h])
            si++;
        for (uint32_t q = from[h], end = from[h] + n[h]; q < end; si++) {
            const uint32_t seg_end = si + 1 < nseg ? (uint32_t)seg[si + 1] : L;
            const uint32_t e = seg_end < end ? seg_end : end, cnt = e - q;
            const uint32_t base = p->spec.cu_seqlens ? (uint32_t)seg[si] : 0;
            uint8_t *pp = posn + 4 * (size_t)j, *lp = lab + 4 * (size_t)j;
            for (uint32_t i = 0; i < cnt; i++)
                lmx__put32(pp + 4 * (size_t)i, q + i - base);
            const uint32_t m = e == L ? cnt - 1 : cnt; /* targets inside the sequence */
            const uint8_t *t = so->tokens + (size_t)(q + 1) * tb;
            if (tb == 2)
                for (uint32_t i = 0; i < m; i++)
                    lmx__put32(lp + 4 * (size_t)i, lmx__get16(t + 2 * (size_t)i));
            else
                for (uint32_t i = 0; i < m; i++)
                    lmx__put32(lp + 4 * (size_t)i, lmx__get32(t + 4 * (size_t)i));
            if (m < cnt)
                lmx__put32(lp + 4 * (size_t)m, so->next);
            /* the segment's last position is here: its target starts the next segment (or, at
             * the sequence's end, the next sequence when that starts a new piece) */
            if (e == seg_end && !p->spec.cross_doc_labels && (seg_end < L || so->next_is_start))
                lmx__put32(lp + 4 * (size_t)(cnt - 1), (uint32_t)w->h.ignore_index);
            j += cnt;
            q = e;
        }
    }
    /* Spans cut to the two chunks, in slice order. */
    const lmx_span *sp = (const lmx_span *)so->spans.data;
    const size_t nsp = so->spans.len / sizeof *sp;
    for (uint32_t h = 0, at = 0; rc == LMX_OK && h < 2; at += n[h], h++) {
        for (size_t i = 0; rc == LMX_OK && i < nsp; i++) {
            uint32_t a = sp[i].start > from[h] ? sp[i].start : from[h];
            uint32_t e = sp[i].start + sp[i].length < from[h] + n[h] ? sp[i].start + sp[i].length : from[h] + n[h];
            if (a >= e)
                continue;
            lmx_span cut = {sp[i].doc, sp[i].offset + (a - sp[i].start), at + (a - from[h]), e - a, sp[i].domain};
            rc = lmx__wire_add_span(w, &cut);
        }
    }
    /* The whole sequence's cu_seqlens: the kernels take the whole sequence's boundaries. */
    if (p->spec.cu_seqlens)
        for (size_t i = 0; rc == LMX_OK && i < nseg; i++)
            rc = lmx__wire_add_cu(w, seg[i]);
    else
        rc = lmx__wire_add_cu(w, 0);
    rc = rc ? rc : lmx__wire_add_cu(w, (int32_t)L);
    lmx__wire_set_next(w, slot, so->next);
    return rc ? rc : lmx__wire_end_seq(w);
}

static int build_body(lmx_plan *p, const lmx_wire_header *hin, uint64_t first, lmx_buf *out, lmx_error *err)
{
    lmx_wire_header h = *hin;
    const int v2 = h.version == LMX_WIRE_VERSION_CP;
    h.flags = p->spec.cu_seqlens || v2 ? LMX_WIRE_FLAG_CU_SEQLENS : 0;
    memcpy(h.plan_id, p->id, LMX_PLAN_ID_BYTES);
    h.seq_len = p->spec.seq_len;
    h.token_bytes = lmx__index_token_bytes(p->ix);
    h.ignore_index = p->spec.ignore_index;
    lmx_wire_writer w;
    seq_out so = {0};
    int rc = lmx__wire_begin(&w, &h, out, err);
    /* v2 builds each whole sequence aside and slices it; v1 builds in place. */
    if (rc == LMX_OK && v2 && !(so.tokens = malloc((size_t)h.seq_len * h.token_bytes)))
        rc = lmx__err(err, LMX_ENOMEM, "batch: out of memory");
    if (rc) {
        lmx__wire_writer_free(&w);
        free(so.tokens);
        return rc;
    }
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 0; rc == LMX_OK && i < h.n_seqs; i++) {
        if (!v2)
            so.tokens = lmx__wire_tokens(&w, i);
        rc = build_sequence(p, first + i, h.token_bytes, &so, err);
        if (rc == LMX_OK)
            rc = v2 ? put_slice(p, &so, &w, i) : put_whole(p, &so, &w, i);
    }
    pthread_mutex_unlock(&p->lock);
    if (rc == LMX_OK)
        rc = lmx__wire_finish(&w, p->domain_names, lmx__index_n_domains(p->ix), err);
    lmx__wire_writer_free(&w);
    if (v2)
        free(so.tokens);
    lmx__buf_free(&so.spans);
    lmx__buf_free(&so.cu);
    return rc;
}

static int check_batch(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, lmx_error *err)
{
    const uint32_t gb = p->spec.global_batch;
    if (world == 0 || world > gb || gb % world != 0)
        return lmx__err(err, LMX_EINVAL, "world=%u must divide the plan's global_batch %u", world, gb);
    if (rank >= world)
        return lmx__err(err, LMX_EINVAL, "rank=%u must be below world=%u", rank, world);
    if (step >= lmx__plan_max_steps(p))
        return lmx__err(err, LMX_ERANGE, "step %llu is past the plan's end: total_tokens %llu gives %llu steps",
                        (unsigned long long)step, (unsigned long long)p->spec.total_tokens,
                        (unsigned long long)lmx__plan_max_steps(p));
    if (step > (UINT64_MAX >> 2) / ((uint64_t)gb * p->spec.seq_len))
        return lmx__err(err, LMX_ERANGE, "step %llu is too large", (unsigned long long)step);
    return LMX_OK;
}

int lmx__plan_batch(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, lmx_buf *out, lmx_error *err)
{
    int rc = check_batch(p, step, rank, world, err);
    if (rc)
        return rc;
    uint32_t per = p->spec.global_batch / world;
    lmx_wire_header h = {.version = LMX_WIRE_VERSION, .step = step, .rank = rank, .world = world, .n_seqs = per};
    return build_body(p, &h, step * p->spec.global_batch + (uint64_t)rank * per, out, err);
}

int lmx__plan_batch_cp(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, uint32_t cp_rank,
                       uint32_t cp_size, lmx_buf *out, lmx_error *err)
{
    const uint32_t L = p->spec.seq_len;
    if (cp_size == 0 || cp_size > LMX_MAX_CP_SIZE)
        return lmx__err(err, LMX_EINVAL, "cp_size=%u must be in [1, %u]", cp_size, LMX_MAX_CP_SIZE);
    if (cp_rank >= cp_size)
        return lmx__err(err, LMX_EINVAL, "cp_rank=%u must be below cp_size=%u", cp_rank, cp_size);
    if (cp_size > 1 && L % (2 * cp_size) != 0)
        return lmx__err(err, LMX_EINVAL,
                        "cp_size=%u: the plan's seq_len %u is not a multiple of 2*cp_size = %u (zigzag chunks)",
                        cp_size, L, 2 * cp_size);
    int rc = check_batch(p, step, rank, world, err);
    if (rc)
        return rc;
    uint32_t per = p->spec.global_batch / world;
    lmx_wire_header h = {.version = LMX_WIRE_VERSION_CP, .step = step, .rank = rank, .world = world,
                         .n_seqs = per, .cp_rank = cp_rank, .cp_size = cp_size};
    return build_body(p, &h, step * p->spec.global_batch + (uint64_t)rank * per, out, err);
}

int lmx__plan_sequence(lmx_plan *p, uint64_t g, lmx_buf *out, lmx_error *err)
{
    if (g / p->spec.global_batch >= lmx__plan_max_steps(p))
        return lmx__err(err, LMX_ERANGE, "sequence %llu is past the plan's end", (unsigned long long)g);
    if (g > (UINT64_MAX >> 2) / p->spec.seq_len)
        return lmx__err(err, LMX_ERANGE, "sequence %llu is too large", (unsigned long long)g);
    lmx_wire_header h = {.version = LMX_WIRE_VERSION, .step = g, .rank = 0, .world = 1, .n_seqs = 1};
    return build_body(p, &h, g, out, err);
}

