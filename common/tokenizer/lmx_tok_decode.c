/* tokenizer.json decoding: the decoder chain, as HF's Decoder::decode_chain. */
#include "lmx_tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- decode -------------------------------------------------------------------------------- */

/* Token strings are kept as a list of (off, len) into one buffer, transformed step by step like
 * HF's Decoder::decode_chain. */
typedef struct strlist {
    lmx_buf data;
    size_t *off, *len;
    size_t n, cap;
} strlist;

static int sl_push(strlist *l, const void *s, size_t n)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        size_t *no = realloc(l->off, nc * sizeof *no);
        if (!no)
            return LMX_ENOMEM;
        l->off = no;
        size_t *nl = realloc(l->len, nc * sizeof *nl);
        if (!nl)
            return LMX_ENOMEM;
        l->len = nl;
        l->cap = nc;
    }
    l->off[l->n] = l->data.len;
    l->len[l->n] = n;
    l->n++;
    return n ? lmx__buf_append(&l->data, s, n) : LMX_OK;
}

static void sl_free(strlist *l)
{
    lmx__buf_free(&l->data);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}

/* SentencePiece byte pieces are "<0xAB>" with upper-case hex digits only. */
static int hexval(uint8_t c)
{
    return c >= 'a' && c <= 'f' ? -1 : lmx__hexval(c);
}

static int dec_step(const lmx_tok_dec *d, strlist *in, strlist *out)
{
    const uint8_t *base = in->data.data;
    switch (d->type) {
    case LMX_DEC_BYTELEVEL: {
        /* all tokens -> bytes (a token with a char outside the map stays as is), then one
         * lossy UTF-8 string */
        int32_t inv[0x144];
        for (int i = 0; i < 0x144; i++) inv[i] = -1;
        for (int b = 0; b < 256; b++) inv[lmx__bytelevel_char((uint8_t)b)] = b;
        lmx_buf raw = {0};
        int rc = LMX_OK;
        for (size_t i = 0; i < in->n && !rc; i++) {
            const uint8_t *s = base + in->off[i];
            size_t n = in->len[i], start = raw.len;
            int ok = 1;
            for (size_t j = 0; j < n && ok && !rc;) {
                uint32_t cp;
                size_t vp = lmx__utf8_valid_prefix(s + j, n - j);
                if (!vp) { ok = 0; break; }
                j += (size_t)lmx__utf8_dec(s + j, n - j, &cp);
                if (cp >= 0x144 || inv[cp] < 0) ok = 0;
                else { uint8_t b = (uint8_t)inv[cp]; rc = lmx__buf_append(&raw, &b, 1); }
            }
            if (!ok && !rc) {
                raw.len = start;
                rc = lmx__buf_append(&raw, s, n);
            }
        }
        lmx_buf fixed = {0};
        if (!rc) rc = lmx__utf8_lossy(raw.data ? raw.data : (const uint8_t *)"", raw.len, &fixed);
        if (!rc) rc = sl_push(out, fixed.data, fixed.len);
        lmx__buf_free(&raw);
        lmx__buf_free(&fixed);
        return rc ? LMX_ENOMEM : LMX_OK;
    }
    case LMX_DEC_BYTEFALLBACK: {
        lmx_buf pend = {0};
        size_t npend = 0;
        int rc = LMX_OK;
        for (size_t i = 0; i <= in->n && !rc; i++) {
            const uint8_t *s = i < in->n ? base + in->off[i] : NULL;
            size_t n = i < in->n ? in->len[i] : 0;
            if (s && n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
                hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
                uint8_t b = (uint8_t)(hexval(s[3]) * 16 + hexval(s[4]));
                rc = lmx__buf_append(&pend, &b, 1);
                npend++;
                continue;
            }
            if (npend) {
                if (lmx__utf8_valid_prefix(pend.data, pend.len) == pend.len) {
                    rc = sl_push(out, pend.data, pend.len);
                } else {
                    for (size_t k = 0; k < npend && !rc; k++)
                        rc = sl_push(out, "\xEF\xBF\xBD", 3);
                }
                pend.len = 0;
                npend = 0;
            }
            if (s && !rc)
                rc = sl_push(out, s, n);
        }
        lmx__buf_free(&pend);
        return rc ? LMX_ENOMEM : LMX_OK;
    }
    case LMX_DEC_FUSE: {
        lmx_buf all = {0};
        int rc = LMX_OK;
        for (size_t i = 0; i < in->n && !rc; i++)
            rc = in->len[i] ? lmx__buf_append(&all, base + in->off[i], in->len[i]) : LMX_OK;
        if (!rc) rc = sl_push(out, all.data, all.len);
        lmx__buf_free(&all);
        return rc ? LMX_ENOMEM : LMX_OK;
    }
    case LMX_DEC_REPLACE:
    case LMX_DEC_METASPACE: {
        const char *pat = d->a, *rep = d->type == LMX_DEC_REPLACE ? d->b : " ";
        size_t pl = d->alen, rl = d->type == LMX_DEC_REPLACE ? d->blen : 1;
        lmx_buf t = {0};
        int rc = LMX_OK;
        for (size_t i = 0; i < in->n && !rc; i++) {
            const uint8_t *s = base + in->off[i];
            size_t n = in->len[i];
            t.len = 0;
            for (size_t j = 0; j < n && !rc;) {
                if (j + pl <= n && memcmp(s + j, pat, pl) == 0) {
                    rc = lmx__buf_append(&t, rep, rl);
                    j += pl;
                } else {
                    rc = lmx__buf_append(&t, s + j, 1);
                    j++;
                }
            }
            const uint8_t *r = t.data;
            size_t rn = t.len;
            if (d->type == LMX_DEC_METASPACE && i == 0 && d->prepend_scheme != LMX_PREPEND_NEVER &&
                rn && r[0] == ' ') {
                r++;
                rn--;
            }
            if (!rc) rc = sl_push(out, r, rn);
        }
        lmx__buf_free(&t);
        return rc ? LMX_ENOMEM : LMX_OK;
    }
    case LMX_DEC_STRIP: {
        int rc = LMX_OK;
        for (size_t i = 0; i < in->n && !rc; i++) {
            const uint8_t *s = base + in->off[i];
            size_t n = in->len[i];
            for (int k = 0; k < d->start && n >= d->alen && memcmp(s, d->a, d->alen) == 0; k++) {
                s += d->alen;
                n -= d->alen;
            }
            for (int k = 0; k < d->stop && n >= d->alen && memcmp(s + n - d->alen, d->a, d->alen) == 0; k++)
                n -= d->alen;
            rc = sl_push(out, s, n);
        }
        return rc ? LMX_ENOMEM : LMX_OK;
    }
    }
    return LMX_EINTERNAL;
}

int lmx__tokjson_decode(const lmx_tokjson *tj, const uint32_t *ids, size_t n, lmx_buf *out,
                        lmx_error *err)
{
    strlist a = {0}, b = {0};
    int rc = LMX_OK;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= tj->id_limit || tj->id_off[ids[i]] == UINT32_MAX) {
            sl_free(&a);
            return lmx__err(err, LMX_EINVAL, "decode: id %u is not in the vocabulary", ids[i]);
        }
        if (sl_push(&a, tj->id_arena.data + tj->id_off[ids[i]], tj->id_len[ids[i]])) {
            rc = LMX_ENOMEM;
            break;
        }
    }
    for (int k = 0; k < tj->n_dec && !rc; k++) {
        b.n = 0;
        b.data.len = 0;
        rc = dec_step(&tj->dec[k], &a, &b);
        strlist t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < a.n && !rc; i++)
        if (a.len[i] && lmx__buf_append(out, a.data.data + a.off[i], a.len[i]))
            rc = LMX_ENOMEM;
    sl_free(&a);
    sl_free(&b);
    if (rc)
        return lmx__err(err, rc, "decode: out of memory");
    return LMX_OK;
}
