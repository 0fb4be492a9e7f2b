/* tokenizer.json encoding, the normalizer chain. */
#include "lmx_tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- normalizer ---------------------------------------------------------------------------- */

/* Replace with a one-byte pattern (rp->alen == 1, rp->blen <= 8) of s[0..n) written at o, which
 * has room for n * max(blen, 1) bytes; returns the end. */
static uint8_t *replace1(uint8_t *o, const uint8_t *s, size_t n, const lmx_tok_norm *rp)
{
    uint8_t pc = (uint8_t)rp->a[0];
    const uint8_t *rep = (const uint8_t *)rp->b;
    size_t rl = rp->blen;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != pc) {
            *o++ = s[i];
        } else {
            for (size_t r = 0; r < rl; r++)
                *o++ = rep[r];
        }
    }
    return o;
}

/* Applies the normalizer chain to s, result in *out (may point to s when nothing changed). */
int lmx__tok_normalize(const lmx_tokjson *tj, const uint8_t *s, size_t n, lmx_buf bufs[2],
                     uint32_t **u32, size_t *u32cap, const uint8_t **out, size_t *out_len)
{
    const uint8_t *cur = s;
    size_t cn = n;
    int which = 0;
    for (int k = 0; k < tj->n_norm; k++) {
        const lmx_tok_norm *nm = &tj->norm[k];
        lmx_buf *b = &bufs[which];
        b->len = 0;
        switch (nm->type) {
        case LMX_NORM_PREPEND:
            if (!cn)
                continue;
            if (k + 1 < tj->n_norm && tj->norm[k + 1].type == LMX_NORM_REPLACE &&
                tj->norm[k + 1].alen == 1 && tj->norm[k + 1].blen <= 8) {
                /* Prepend then a one-byte Replace (SentencePiece: "▁" + " " -> "▁") in one
                 * pass: the pattern cannot span the junction, so replacing in the prefix and in
                 * the text separately gives the same string */
                const lmx_tok_norm *rp = &tj->norm[k + 1];
                size_t mul = rp->blen > 1 ? rp->blen : 1;
                if (cn > (SIZE_MAX - 8) / 8 - nm->alen || lmx__buf_reserve(b, (nm->alen + cn) * mul))
                    return LMX_ENOMEM;
                uint8_t *o = replace1(b->data, (const uint8_t *)nm->a, nm->alen, rp);
                b->len = (size_t)(replace1(o, cur, cn, rp) - b->data);
                k++;
                break;
            }
            if (lmx__buf_reserve(b, nm->alen + cn) != LMX_OK)
                return LMX_ENOMEM;
            memcpy(b->data, nm->a, nm->alen);
            memcpy(b->data + nm->alen, cur, cn);
            b->len = nm->alen + cn;
            break;
        case LMX_NORM_REPLACE: {
            const uint8_t *pat = (const uint8_t *)nm->a;
            size_t pl = nm->alen, i = 0, last = 0;
            if (!memchr(cur, pat[0], cn))
                continue;
            if (pl == 1 && nm->blen <= 8) {
                /* one-byte pattern (SentencePiece's " " -> "▁" replaces every word boundary):
                 * one pass writing into room reserved for the worst case, instead of two
                 * appends per match */
                if (cn > (SIZE_MAX - 8) / 8 || lmx__buf_reserve(b, cn * (nm->blen > 1 ? nm->blen : 1)))
                    return LMX_ENOMEM;
                b->len = (size_t)(replace1(b->data, cur, cn, nm) - b->data);
                break;
            }
            while (i + pl <= cn) {
                const uint8_t *f = memchr(cur + i, pat[0], cn - i - pl + 1);
                if (!f)
                    break;
                i = (size_t)(f - cur);
                if (memcmp(f, pat, pl) == 0) {
                    if (lmx__buf_append(b, cur + last, i - last) ||
                        lmx__buf_append(b, nm->b, nm->blen))
                        return LMX_ENOMEM;
                    i += pl;
                    last = i;
                } else {
                    i++;
                }
            }
            if (lmx__buf_append(b, cur + last, cn - last))
                return LMX_ENOMEM;
            break;
        }
        case LMX_NORM_NFC:
            if (lmx__nfc(cur, cn, b, u32, u32cap) != LMX_OK)
                return LMX_ENOMEM;
            break;
        default:
            return LMX_EINTERNAL;
        }
        cur = b->data ? b->data : (const uint8_t *)"";
        cn = b->len;
        which ^= 1;
    }
    *out = cur;
    *out_len = cn;
    return LMX_OK;
}

int lmx__tokjson_normalize(const lmx_tokjson *tj, const uint8_t *s, size_t n, lmx_buf *out,
                           lmx_buf *tmp, uint32_t **u32, size_t *u32cap)
{
    lmx_buf bufs[2] = {*out, *tmp};
    const uint8_t *r;
    size_t rn;
    int rc = lmx__tok_normalize(tj, s, n, bufs, u32, u32cap, &r, &rn);
    if (!rc && r != bufs[0].data) {
        /* result is in bufs[1] or is s itself: move it into out */
        lmx_buf copy = {0};
        rc = lmx__buf_append(&copy, r, rn) ? LMX_ENOMEM : LMX_OK;
        lmx__buf_free(&bufs[0]);
        bufs[0] = copy;
    }
    *out = bufs[0];
    *tmp = bufs[1];
    return rc;
}
