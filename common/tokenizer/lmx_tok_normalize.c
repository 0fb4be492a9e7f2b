/* tokenizer.json encoding, the normalizer chain. */
#include "lmx_hf_char_tables.h"
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
            if (nm->rx) {
                /* Regex: every match (empty ones too, as HF's find_iter gives them) becomes
                 * the content */
                void *rg = lmx__tok_regex_region_new();
                if (!rg)
                    return LMX_ENOMEM;
                lmx_tok_refind st = {0};
                size_t ms, me, last = 0;
                int r;
                while ((r = lmx__tok_regex_next(nm->rx, rg, cur, cn, &st, &ms, &me)) == 1) {
                    if (lmx__buf_append(b, cur + last, ms - last) || lmx__buf_append(b, nm->b, nm->blen)) {
                        r = LMX_ENOMEM;
                        break;
                    }
                    last = me;
                }
                lmx__tok_regex_region_free(rg);
                if (r < 0)
                    return r;
                if (lmx__buf_append(b, cur + last, cn - last))
                    return LMX_ENOMEM;
                break;
            }
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
        case LMX_NORM_NFD:
        case LMX_NORM_NFKC:
        case LMX_NORM_NFKD: {
            int form = nm->type == LMX_NORM_NFC ? LMX_NF_C : nm->type == LMX_NORM_NFD ? LMX_NF_D
                     : nm->type == LMX_NORM_NFKC ? LMX_NF_KC : LMX_NF_KD;
            if (lmx__unorm(form, cur, cn, b, u32, u32cap) != LMX_OK)
                return LMX_ENOMEM;
            break;
        }
        case LMX_NORM_PRECOMPILED:
            if (lmx__tok_precompiled(nm->cm, cur, cn, b) != LMX_OK)
                return LMX_ENOMEM;
            break;
        case LMX_NORM_LOWERCASE:
            if (lmx__lowercase(cur, cn, b) != LMX_OK)
                return LMX_ENOMEM;
            break;
        case LMX_NORM_STRIP: {
            /* HF Strip: White_Space chars off the left and/or right end */
            size_t a = 0, z = cn;
            while (nm->left && a < z) {
                uint32_t cp;
                int l = lmx__utf8_dec(cur + a, z - a, &cp);
                if (!(lmx__tok_cls_cp(cp) & LMX_UNI_WS))
                    break;
                a += (size_t)l;
            }
            while (nm->right && z > a) {
                size_t q = z - 1;
                while (q > a && (cur[q] & 0xC0) == 0x80)
                    q--;
                uint32_t cp;
                lmx__utf8_dec(cur + q, z - q, &cp);
                if (!(lmx__tok_cls_cp(cp) & LMX_UNI_WS))
                    break;
                z = q;
            }
            if (lmx__buf_append(b, cur + a, z - a))
                return LMX_ENOMEM;
            break;
        }
        case LMX_NORM_STRIP_ACCENTS:
            /* HF StripAccents: drop combining marks (its crate's is_combining_mark, an older
             * Unicode's general category M: HF's own set, lmx_hf_char_tables.h) */
            for (size_t i = 0; i < cn;) {
                uint32_t cp;
                int l = cur[i] < 0x80 ? (cp = cur[i], 1) : lmx__utf8_dec(cur + i, cn - i, &cp);
                if ((cp < 0x300 || !lmx__hf_in_ranges(lmx__hf_accent_ranges, lmx__hf_accent_ranges_n, cp)) &&
                    lmx__buf_append(b, cur + i, (size_t)l))
                    return LMX_ENOMEM;
                i += (size_t)l;
            }
            break;
        case LMX_NORM_BERT:
            if (lmx__tok_bert_normalize(nm, cur, cn, b, u32, u32cap) != LMX_OK)
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
