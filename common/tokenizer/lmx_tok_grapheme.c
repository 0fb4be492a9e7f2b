/* Extended grapheme clusters (UAX #29), as the unicode-segmentation crate gives them to HF's
 * Precompiled normalizer: rules GB3-GB13 on the Unicode 16 classes of lmx_grapheme_tables.c,
 * GB9c (Indic conjuncts) on the Indic_Conjunct_Break classes probed from HF
 * (lmx_hf_char_tables.h). A leaf: it calls only those two tables. */
#include "lmx_hf_char_tables.h"
#include "lmx_tok_internal.h"

/* Indic_Conjunct_Break of cp; Consonants and Linkers are all in U+0900..0DFF, Extend chars
 * have the classes Extend or ZWJ. */
static unsigned incb(uint32_t cp, unsigned cls)
{
    if ((cp < 0x900 || cp > 0xDFF) && cls != LMX_GCB_EXTEND && cls != LMX_GCB_ZWJ)
        return LMX_HF_INCB_NONE;
    return lmx__hf_run_value(lmx__hf_incb_runs, lmx__hf_incb_runs_n, 2, cp);
}

static inline unsigned cls_at(const uint8_t *s, size_t i, size_t n, size_t *len, uint32_t *cpo)
{
    uint32_t cp;
    *len = (size_t)lmx__utf8_dec(s + i, n - i, &cp);
    *cpo = cp;
    if (cp < 0x80)
        return cp == '\r' ? LMX_GCB_CR : cp == '\n' ? LMX_GCB_LF
             : (cp < 0x20 || cp == 0x7F) ? LMX_GCB_CONTROL : LMX_GCB_OTHER;
    return lmx__gcb(cp);
}

size_t lmx__grapheme_end(const uint8_t *s, size_t i, size_t n)
{
    size_t len;
    uint32_t cp;
    unsigned prev = cls_at(s, i, n, &len, &cp);
    size_t j = i + len;
    /* GB9c: 1 after Consonant [Extend]*, 2 after Consonant [Extend Linker]* Linker [Extend Linker]* */
    int conj = incb(cp, prev) == LMX_HF_INCB_CONSONANT;
    /* GB11: ExtPict Extend* ZWJ x ExtPict. emoji: 1 after ExtPict Extend*, 2 after its ZWJ */
    int emoji = prev == LMX_GCB_EXTPICT;
    int ri = prev == LMX_GCB_RI; /* regional indicators so far in a row (GB12/13) */
    while (j < n) {
        unsigned cur = cls_at(s, j, n, &len, &cp);
        unsigned ic = conj || (cp >= 0x900 && cp <= 0xDFF) ? incb(cp, cur) : LMX_HF_INCB_NONE;
        int join;
        if (prev == LMX_GCB_CR && cur == LMX_GCB_LF)
            join = 1; /* GB3 */
        else if (prev == LMX_GCB_CR || prev == LMX_GCB_LF || prev == LMX_GCB_CONTROL ||
                 cur == LMX_GCB_CR || cur == LMX_GCB_LF || cur == LMX_GCB_CONTROL)
            join = 0; /* GB4, GB5 */
        else if (prev == LMX_GCB_L && (cur == LMX_GCB_L || cur == LMX_GCB_V || cur == LMX_GCB_LV ||
                                       cur == LMX_GCB_LVT))
            join = 1; /* GB6 */
        else if ((prev == LMX_GCB_LV || prev == LMX_GCB_V) && (cur == LMX_GCB_V || cur == LMX_GCB_T))
            join = 1; /* GB7 */
        else if ((prev == LMX_GCB_LVT || prev == LMX_GCB_T) && cur == LMX_GCB_T)
            join = 1; /* GB8 */
        else if (cur == LMX_GCB_EXTEND || cur == LMX_GCB_ZWJ || cur == LMX_GCB_SPACINGMARK ||
                 prev == LMX_GCB_PREPEND)
            join = 1; /* GB9, GB9a, GB9b */
        else if (conj == 2 && ic == LMX_HF_INCB_CONSONANT)
            join = 1; /* GB9c */
        else if (prev == LMX_GCB_ZWJ && cur == LMX_GCB_EXTPICT && emoji == 2)
            join = 1; /* GB11 */
        else if (prev == LMX_GCB_RI && cur == LMX_GCB_RI)
            join = ri % 2 == 1; /* GB12, GB13 */
        else
            join = 0;
        if (!join)
            break;
        /* the emoji sequence state after cur */
        if (cur == LMX_GCB_EXTPICT)
            emoji = 1;
        else if (cur == LMX_GCB_EXTEND && emoji == 1)
            emoji = 1;
        else if (cur == LMX_GCB_ZWJ && emoji == 1)
            emoji = 2;
        else
            emoji = 0;
        ri = cur == LMX_GCB_RI ? ri + 1 : 0;
        conj = ic == LMX_HF_INCB_CONSONANT ? 1
             : ic == LMX_HF_INCB_LINKER && conj ? 2
             : ic == LMX_HF_INCB_EXTEND ? conj : 0;
        prev = cur;
        j += len;
    }
    return j;
}
