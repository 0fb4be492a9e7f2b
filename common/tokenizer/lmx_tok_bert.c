/* tokenizer.json encoding: HF's BertNormalizer (normalizers/bert.rs). Its character sets are
 * HF's own (lmx_hf_char_tables.[ch], probed from the reference), not Unicode 16. */
#include "lmx_tok_internal.h"
#include "lmx_hf_char_tables.h"

#include <stdlib.h>
#include <string.h>

/* clean_text and handle_chinese_chars in one pass (both map one char at a time, in that order) */
static int clean_cjk(unsigned opt, const uint8_t *s, size_t n, lmx_buf *out)
{
    if (n > (SIZE_MAX - 16) / 3 || lmx__buf_reserve(out, n * 3 + 8))
        return LMX_ENOMEM;
    uint8_t *o = out->data + out->len;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = s[i] < 0x80 ? (cp = s[i], 1) : (size_t)lmx__utf8_dec(s + i, n - i, &cp);
        if (opt & LMX_BERT_CLEAN) {
            uint32_t k = lmx__hf_run_value(lmx__hf_clean_runs, lmx__hf_clean_runs_n, 2, cp);
            if (k == LMX_HF_CLEAN_REMOVE) {
                i += l;
                continue;
            }
            if (k == LMX_HF_CLEAN_SPACE) {
                *o++ = ' ';
                i += l;
                continue;
            }
        }
        /* a CJK char of 3 or 4 bytes becomes at most 6: room reserved above */
        int cjk = (opt & LMX_BERT_CJK) && cp >= 0x3400 &&
                  lmx__hf_in_ranges(lmx__hf_cjk_ranges, lmx__hf_cjk_ranges_n, cp);
        if (cjk)
            *o++ = ' ';
        memcpy(o, s + i, l);
        o += l;
        if (cjk)
            *o++ = ' ';
        i += l;
    }
    out->len = (size_t)(o - out->data);
    return LMX_OK;
}

int lmx__tok_bert_normalize(const lmx_tok_norm *nm, const uint8_t *s, size_t n, lmx_buf *out,
                            uint32_t **u32, size_t *u32cap)
{
    unsigned opt = nm->bert;
    /* up to three passes: clean/CJK, NFD + mark filter, lowercase; the last writes to out */
    int npass = !!(opt & (LMX_BERT_CLEAN | LMX_BERT_CJK)) + !!(opt & LMX_BERT_STRIP) +
                !!(opt & LMX_BERT_LOWER);
    lmx_buf tmp[2] = {{0}, {0}};
    const uint8_t *cur = s;
    size_t cn = n;
    int rc = LMX_OK, pass = 0;
    out->len = 0;
    if (npass == 0)
        return lmx__buf_append(out, s, n) ? LMX_ENOMEM : LMX_OK;
    if (opt & (LMX_BERT_CLEAN | LMX_BERT_CJK)) {
        lmx_buf *b = ++pass == npass ? out : &tmp[0];
        if ((rc = clean_cjk(opt, cur, cn, b)))
            goto done;
        cur = b->data ? b->data : (const uint8_t *)"";
        cn = b->len;
    }
    if (opt & LMX_BERT_STRIP) {
        /* NFD, then drop the nonspacing marks (is_mark_nonspacing) */
        lmx_buf *b = ++pass == npass ? out : &tmp[1];
        if ((rc = lmx__unorm(LMX_NF_D, cur, cn, b, u32, u32cap)))
            goto done;
        size_t w = 0;
        for (size_t i = 0; i < b->len;) {
            uint32_t cp;
            size_t l = b->data[i] < 0x80 ? (cp = b->data[i], 1)
                                         : (size_t)lmx__utf8_dec(b->data + i, b->len - i, &cp);
            if (cp < 0x300 || !lmx__hf_in_ranges(lmx__hf_mark_ranges, lmx__hf_mark_ranges_n, cp)) {
                memmove(b->data + w, b->data + i, l);
                w += l;
            }
            i += l;
        }
        b->len = w;
        cur = b->data ? b->data : (const uint8_t *)"";
        cn = b->len;
    }
    if (opt & LMX_BERT_LOWER)
        rc = lmx__lowercase(cur, cn, out); /* Rust's to_lowercase, as the Lowercase normalizer */
done:
    lmx__buf_free(&tmp[0]);
    lmx__buf_free(&tmp[1]);
    return rc ? LMX_ENOMEM : LMX_OK;
}
