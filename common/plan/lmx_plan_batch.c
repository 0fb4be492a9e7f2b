/* Wire output (proto/WIRE.md): a step's sequences for (rank, world) copied out of the packed
 * blocks, with spans, cu_seqlens and next tokens; for wire v2/v3 each reduced to a
 * context-parallel slice (whole-sequence zigzag, or per document for thd) with labels and
 * position ids. Padded plans (pad_multiple > 1) fill each item's tail with pad tokens. */
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
    if (o >= it->len) /* the EOS, then pads */
        return o == it->len && p->spec.eos ? p->eos_id : p->pad_id;
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
    lmx_buf real;  /* int32_t per segment: its positions that are not padding (a prefix) */
    lmx_buf runs;  /* v2/v3 scratch: (whole position, count) pairs of the slice, in slice order */
    uint32_t next;  /* next_token */
    int next_is_start; /* the next sequence's first token starts a piece (a new segment) */
} seq_out;

/* Copies the part of piece pc that starts skip tokens into it, at most `room` tokens, to dst
 * at position *filled: [BOS] tokens [EOS] [pads], with a span for the document tokens; appends
 * the count of its positions that are not pads to so->real. */
static int copy_piece(const lmx_plan *p, const piece *pc, uint64_t skip, uint32_t room, uint32_t tb,
                      seq_out *so, uint32_t *filled)
{
    uint8_t *dst = so->tokens;
    const item *it = &p->doms[pc->dom].items[pc->item];
    uint64_t o = pc->item_off + skip, end = (uint64_t)pc->item_off + pc->len;
    if (end - o > room)
        end = o + room;
    const uint64_t pad_end = end, rs = rslen(p, it);
    if (end > rs)
        end = rs;
    int32_t real = end > o ? (int32_t)(end - o) : 0;
    int rc = lmx__buf_append(&so->real, &real, sizeof real);
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
        rc = rc ? rc : lmx__buf_append(&so->spans, &sp, sizeof sp);
        *filled += (uint32_t)(t1 - t0);
        o += t1 - t0;
    }
    if (p->spec.eos && o < end) { /* what is left is the EOS */
        put_token(dst + (size_t)*filled * tb, tb, p->eos_id);
        (*filled)++;
        o++;
    }
    for (o = o > rs ? o : rs; o < pad_end; o++) /* padded plans: the item's tail */
        put_token(dst + (size_t)(*filled)++ * tb, tb, p->pad_id);
    return rc;
}

/* The part of a block that stream position pos's sequence is built from: the range of
 * RANGE_TOKENS (rounded up to whole sequences, so a sequence is never split) holding it. */
static block *get_range_of(lmx_plan *p, uint64_t pos, lmx_error *err)
{
    const uint64_t L = p->spec.seq_len, R = (RANGE_TOKENS + L - 1) / L * L, s = pos % p->B;
    const uint64_t lo = s / R * R, hi = lo + R < p->B ? lo + R : p->B;
    return lmx__plan_get_range(p, pos / p->B, lo, hi, err);
}

/* The first token of the sequence at stream position npos (maybe in another range or block b + 1),
 * and whether a piece starts there. */
static int next_token(lmx_plan *p, const block *k, uint64_t npos, uint32_t *out, int *starts, lmx_error *err)
{
    uint64_t s = npos % p->B;
    if (npos / p->B == k->b && s < k->hi) {
        *out = token_at(p, k, s);
        *starts = k->pieces[lmx__plan_find_piece(k, s)].start == s;
        return LMX_OK;
    }
    block *k2 = lmx__plan_get_range(p, npos / p->B, s, s + 1, err); /* one token: not a whole range */
    if (!k2)
        return err ? err->code : LMX_ENOMEM;
    *out = token_at(p, k2, s);
    *starts = k2->pieces[lmx__plan_find_piece(k2, s)].start == s;
    lmx__plan_put_block(p, k2);
    return LMX_OK;
}

static int put_cu(seq_out *so, int32_t x) { return lmx__buf_append(&so->cu, &x, sizeof x); }

/* Builds global sequence g into so (tokens into so->tokens; spans and cu appended to the emptied
 * lists). Caller holds p->lock. */
static int build_sequence(lmx_plan *p, uint64_t g, uint32_t tb, seq_out *so, lmx_error *err)
{
    const uint32_t L = p->spec.seq_len;
    uint64_t pos = g * L, s0 = pos % p->B;
    so->spans.len = so->cu.len = so->real.len = 0;
    block *k = get_range_of(p, pos, err);
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

/* Tokens, labels and position ids of whole positions [from, from + n), computed on the whole
 * sequence, written at slice position j: one stretch per segment overlapping the run. */
static void fill_run(const lmx_plan *p, const seq_out *so, lmx_wire_writer *w, uint32_t slot, uint32_t from,
                     uint32_t n, uint32_t j)
{
    const uint32_t L = p->spec.seq_len, tb = w->h.token_bytes;
    const int32_t *seg = (const int32_t *)so->cu.data, *real = (const int32_t *)so->real.data;
    const size_t nseg = so->cu.len / sizeof *seg;
    const int32_t ign = w->h.ignore_index;
    uint8_t *tok = lmx__wire_tokens(w, slot), *lab = lmx__wire_labels(w, slot), *posn = lmx__wire_positions(w, slot);
    memcpy(tok + (size_t)j * tb, so->tokens + (size_t)from * tb, (size_t)n * tb);
    size_t lo = 0, hi = nseg; /* the segment holding from: last start <= from */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)seg[mid] <= from)
            lo = mid;
        else
            hi = mid;
    }
    uint32_t q = from;
    const uint32_t end = from + n;
    for (size_t si = lo; q < end; si++) {
        const uint32_t seg_end = si + 1 < nseg ? (uint32_t)seg[si + 1] : L;
        const uint32_t real_end = (uint32_t)seg[si] + (uint32_t)real[si]; /* pads follow up to seg_end */
        const uint32_t e = seg_end < end ? seg_end : end;
        const uint32_t base = p->spec.cu_seqlens ? (uint32_t)seg[si] : 0;
        uint8_t *pp = posn + 4 * (size_t)j, *lp = lab + 4 * (size_t)j;
        for (uint32_t i = q; i < e; i++) /* a ramp: pads continue it */
            lmx__put32(pp + 4 * (size_t)(i - q), i - base);
        /* [q, plain): the target is the next token of the same segment */
        const uint32_t plain = real_end - 1 < e ? real_end - 1 : e;
        const uint8_t *t = so->tokens + tb; /* t[i] = token i + 1 */
        uint32_t i = q;
        if (tb == 2)
            for (; i < plain; i++)
                lmx__put32(lp + 4 * (size_t)(i - q), lmx__get16(t + 2 * (size_t)i));
        else
            for (; i < plain; i++)
                lmx__put32(lp + 4 * (size_t)(i - q), lmx__get32(t + 4 * (size_t)i));
        for (; i < e; i++) { /* the segment's last real position, then its pads */
            int32_t v;
            if (i + 1 != real_end || real_end < seg_end) /* a pad, or the last real position before pads */
                v = ign;
            else if (seg_end < L) /* the target starts the next segment */
                v = !p->spec.cross_doc_labels ? ign
                    : (int32_t)(tb == 2 ? lmx__get16(t + 2 * (size_t)i) : lmx__get32(t + 4 * (size_t)i));
            else /* the sequence's last position: the next sequence's first token */
                v = !p->spec.cross_doc_labels && so->next_is_start ? ign : (int32_t)so->next;
            lmx__put32(lp + 4 * (size_t)(i - q), (uint32_t)v);
        }
        j += e - q;
        q = e;
    }
}

/* Spans of the whole sequence cut to whole positions [from, from + n), placed at slice
 * position j (spans are in position order and disjoint: binary search the first). */
static int put_run_spans(const seq_out *so, lmx_wire_writer *w, uint32_t from, uint32_t n, uint32_t j)
{
    const lmx_span *sp = (const lmx_span *)so->spans.data;
    const size_t nsp = so->spans.len / sizeof *sp;
    size_t lo = 0, hi = nsp; /* first span ending after from */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (sp[mid].start + sp[mid].length <= from)
            lo = mid + 1;
        else
            hi = mid;
    }
    int rc = LMX_OK;
    for (size_t i = lo; rc == LMX_OK && i < nsp && sp[i].start < from + n; i++) {
        uint32_t a = sp[i].start > from ? sp[i].start : from;
        uint32_t e = sp[i].start + sp[i].length < from + n ? sp[i].start + sp[i].length : from + n;
        lmx_span cut = {sp[i].doc, sp[i].offset + (a - sp[i].start), j + (a - from), e - a, sp[i].domain};
        rc = lmx__wire_add_span(w, &cut);
    }
    return rc;
}

/* v2/v3: context-parallel rank C's slice with labels and position ids computed on the whole
 * sequence (proto/WIRE.md). zigzag: chunks C and 2K-1-C of the whole sequence cut into 2K; thd
 * (Transformer Engine): the same of every (padded) segment, segment after segment. K = 1 is the
 * whole sequence in both. The runs are gathered first, then filled and their spans cut. */
static int put_slice(lmx_plan *p, seq_out *so, lmx_wire_writer *w, uint32_t slot)
{
    const uint32_t L = p->spec.seq_len, K = w->h.cp_size, C = w->h.cp_rank;
    const int32_t *seg = (const int32_t *)so->cu.data, *real = (const int32_t *)so->real.data;
    const size_t nseg = so->cu.len / sizeof *seg;
    so->runs.len = 0;
    int rc = LMX_OK;
    if (K == 1) {
        uint32_t r[2] = {0, L};
        rc = lmx__buf_append(&so->runs, r, sizeof r);
    } else if (w->h.cp_layout == LMX_CP_THD) {
        for (size_t i = 0; rc == LMX_OK && i < nseg; i++) {
            const uint32_t a = (uint32_t)seg[i], e = i + 1 < nseg ? (uint32_t)seg[i + 1] : L, c = (e - a) / (2 * K);
            uint32_t r[4] = {a + C * c, c, a + (2 * K - 1 - C) * c, c};
            rc = lmx__buf_append(&so->runs, r, sizeof r);
        }
    } else {
        const uint32_t c = L / (2 * K);
        uint32_t r[4] = {C * c, c, (2 * K - 1 - C) * c, c};
        rc = lmx__buf_append(&so->runs, r, sizeof r);
    }
    const uint32_t *run = (const uint32_t *)so->runs.data;
    const size_t nrun = so->runs.len / (2 * sizeof *run);
    for (size_t i = 0, j = 0; rc == LMX_OK && i < nrun; j += run[2 * i + 1], i++)
        fill_run(p, so, w, slot, run[2 * i], run[2 * i + 1], (uint32_t)j);
    for (size_t i = 0, j = 0; rc == LMX_OK && i < nrun; j += run[2 * i + 1], i++)
        rc = put_run_spans(so, w, run[2 * i], run[2 * i + 1], (uint32_t)j);
    /* The whole sequence's cu_seqlens (the kernels take the whole sequence's boundaries); v3
     * adds the real ones (cumulated lengths without the pads: TE's cu_seqlens beside
     * cu_seqlens_padded). */
    const int v3 = w->h.version == LMX_WIRE_VERSION_PAD;
    int32_t acc = 0;
    if (p->spec.cu_seqlens)
        for (size_t i = 0; rc == LMX_OK && i < nseg; i++) {
            rc = lmx__wire_add_cu(w, seg[i]);
            if (rc == LMX_OK && v3)
                rc = lmx__wire_add_cu_real(w, acc);
            acc += real[i];
        }
    else
        rc = lmx__wire_add_cu(w, 0);
    rc = rc ? rc : lmx__wire_add_cu(w, (int32_t)L);
    if (rc == LMX_OK && v3)
        rc = lmx__wire_add_cu_real(w, acc);
    lmx__wire_set_next(w, slot, so->next);
    return rc ? rc : lmx__wire_end_seq(w);
}

static int build_body(lmx_plan *p, const lmx_wire_header *hin, uint64_t first, lmx_buf *out, lmx_error *err)
{
    lmx_wire_header h = *hin;
    if (p->spec.pad_multiple > 1) { /* padded plans always answer v3 (a v1 request: K = 1) */
        if (h.version == LMX_WIRE_VERSION)
            h.cp_rank = 0, h.cp_size = 1, h.cp_layout = LMX_CP_ZIGZAG;
        h.version = LMX_WIRE_VERSION_PAD;
    }
    const int v2 = lmx__wire_has_labels(&h);
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
    lmx__buf_free(&so.real);
    lmx__buf_free(&so.runs);
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
    return lmx__plan_batch_layout(p, step, rank, world, cp_rank, cp_size, LMX_CP_ZIGZAG, out, err);
}

int lmx__plan_batch_layout(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, uint32_t cp_rank,
                           uint32_t cp_size, uint32_t cp_layout, lmx_buf *out, lmx_error *err)
{
    const uint32_t L = p->spec.seq_len, M = p->spec.pad_multiple;
    if (cp_size == 0 || cp_size > LMX_MAX_CP_SIZE)
        return lmx__err(err, LMX_EINVAL, "cp_size=%u must be in [1, %u]", cp_size, LMX_MAX_CP_SIZE);
    if (cp_rank >= cp_size)
        return lmx__err(err, LMX_EINVAL, "cp_rank=%u must be below cp_size=%u", cp_rank, cp_size);
    if (cp_size > 1 && L % (2 * cp_size) != 0)
        return lmx__err(err, LMX_EINVAL,
                        "cp_size=%u: the plan's seq_len %u is not a multiple of 2*cp_size = %u (zigzag chunks)",
                        cp_size, L, 2 * cp_size);
    if (cp_layout != LMX_CP_ZIGZAG && cp_layout != LMX_CP_THD)
        return lmx__err(err, LMX_EINVAL, "cp_layout=%u must be zigzag or thd", cp_layout);
    /* thd cuts every padded segment into 2K equal chunks */
    if (cp_layout == LMX_CP_THD && (M < 2 || M % (2 * cp_size) != 0))
        return lmx__err(err, LMX_EINVAL,
                        "cp_layout=thd needs a plan whose pad_multiple is a multiple of 2*cp_size = %u; plan %s has pad_multiple %u",
                        2 * cp_size, p->name, M);
    int rc = check_batch(p, step, rank, world, err);
    if (rc)
        return rc;
    uint32_t per = p->spec.global_batch / world;
    lmx_wire_header h = {.version = LMX_WIRE_VERSION_CP, .step = step, .rank = rank, .world = world,
                         .n_seqs = per, .cp_rank = cp_rank, .cp_size = cp_size, .cp_layout = cp_layout};
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

