/* Wire output (proto/WIRE.md): a step's sequences for (rank, world) copied out of the packed
 * blocks, with spans, cu_seqlens and next tokens. */
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

/* Copies the part of piece pc that starts skip tokens into it, at most `room` tokens, to dst
 * at position *filled: [BOS] tokens [EOS], with a span for the document tokens. */
static int copy_piece(const lmx_plan *p, const piece *pc, uint64_t skip, uint32_t room, lmx_wire_writer *w,
                      uint8_t *dst, uint32_t *filled)
{
    const uint32_t tb = w->h.token_bytes;
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
        rc = lmx__wire_add_span(w, &sp);
        *filled += (uint32_t)(t1 - t0);
        o += t1 - t0;
    }
    if (p->spec.eos && o < end) { /* what is left is the EOS */
        put_token(dst + (size_t)*filled * tb, tb, p->eos_id);
        (*filled)++;
    }
    return rc;
}

/* The first token of the sequence at stream position npos (maybe in block b + 1). */
static int next_token(lmx_plan *p, const block *k, uint64_t npos, uint32_t *out, lmx_error *err)
{
    if (npos / p->B == k->b) {
        *out = token_at(p, k, npos % p->B);
        return LMX_OK;
    }
    block *k2 = lmx__plan_get_block(p, k->b + 1, err);
    if (!k2)
        return err ? err->code : LMX_ENOMEM;
    *out = token_at(p, k2, 0);
    lmx__plan_put_block(p, k2);
    return LMX_OK;
}

/* Writes global sequence g into sequence slot `slot` of the writer. Caller holds p->lock. */
static int write_sequence(lmx_plan *p, uint64_t g, lmx_wire_writer *w, uint32_t slot, lmx_error *err)
{
    const uint32_t L = p->spec.seq_len;
    uint64_t pos = g * L, b = pos / p->B, s0 = pos % p->B;
    block *k = lmx__plan_get_block(p, b, err);
    if (!k)
        return err ? err->code : LMX_ENOMEM;
    uint8_t *dst = lmx__wire_tokens(w, slot);
    int rc = LMX_OK;
    if (p->spec.cu_seqlens)
        rc = lmx__wire_add_cu(w, 0);
    uint64_t i = lmx__plan_find_piece(k, s0);
    uint32_t filled = 0;
    while (rc == LMX_OK && filled < L) {
        const piece *pc = &k->pieces[i++];
        /* Every piece after the first is another document segment, also a piece that continues
         * an item cut by the previous block (it has no BOS and need not follow its first part). */
        if (filled > 0 && p->spec.cu_seqlens)
            rc = lmx__wire_add_cu(w, (int32_t)filled);
        if (rc == LMX_OK)
            rc = copy_piece(p, pc, s0 + filled - pc->start, L - filled, w, dst, &filled);
    }
    if (rc == LMX_OK && p->spec.cu_seqlens)
        rc = lmx__wire_add_cu(w, (int32_t)L);
    uint32_t nt = 0;
    if (rc == LMX_OK && (rc = next_token(p, k, pos + L, &nt, err)) == LMX_OK)
        lmx__wire_set_next(w, slot, nt);
    lmx__plan_put_block(p, k);
    if (rc == LMX_OK)
        rc = lmx__wire_end_seq(w);
    return rc;
}

static int build_body(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, uint64_t first, uint32_t n,
                      lmx_buf *out, lmx_error *err)
{
    lmx_wire_header h = {0};
    h.flags = p->spec.cu_seqlens ? LMX_WIRE_FLAG_CU_SEQLENS : 0;
    memcpy(h.plan_id, p->id, LMX_PLAN_ID_BYTES);
    h.step = step;
    h.rank = rank;
    h.world = world;
    h.seq_len = p->spec.seq_len;
    h.n_seqs = n;
    h.token_bytes = lmx__index_token_bytes(p->ix);
    lmx_wire_writer w;
    int rc = lmx__wire_begin(&w, &h, out, err);
    if (rc) {
        lmx__wire_writer_free(&w);
        return rc;
    }
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 0; rc == LMX_OK && i < n; i++)
        rc = write_sequence(p, first + i, &w, i, err);
    pthread_mutex_unlock(&p->lock);
    if (rc == LMX_OK)
        rc = lmx__wire_finish(&w, p->domain_names, lmx__index_n_domains(p->ix), err);
    lmx__wire_writer_free(&w);
    return rc;
}

int lmx__plan_batch(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, lmx_buf *out, lmx_error *err)
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
    uint32_t per = gb / world;
    return build_body(p, step, rank, world, step * gb + (uint64_t)rank * per, per, out, err);
}

int lmx__plan_sequence(lmx_plan *p, uint64_t g, lmx_buf *out, lmx_error *err)
{
    if (g / p->spec.global_batch >= lmx__plan_max_steps(p))
        return lmx__err(err, LMX_ERANGE, "sequence %llu is past the plan's end", (unsigned long long)g);
    if (g > (UINT64_MAX >> 2) / p->spec.seq_len)
        return lmx__err(err, LMX_ERANGE, "sequence %llu is too large", (unsigned long long)g);
    return build_body(p, g, 0, 1, g, 1, out, err);
}

