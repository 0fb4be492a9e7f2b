/* tokenizer.json encoding: HF's UnicodeScripts pre-tokenizer (pre_tokenizers/unicode_scripts),
 * on HF's own script table (lmx_hf_char_tables.[ch], probed from the reference). */
#include "lmx_tok_internal.h"
#include "lmx_hf_char_tables.h"

/* fixed_script as a class number, 0 = Any (' ' and chars HF's table lacks) */
static uint32_t script_of(uint32_t cp)
{
    return lmx__hf_run_value(lmx__hf_script_runs, lmx__hf_script_runs_n, 8, cp);
}

int lmx__tok_scripts_split(const uint8_t *buf, const lmx_tok_span *in, size_t ns,
                           lmx_tok_span **out, size_t *on, size_t *ocap)
{
    for (size_t si = 0; si < ns; si++) {
        const uint8_t *s = buf + in[si].start;
        size_t n = in[si].len;
        /* HF cuts before each non-Any char whose script differs from the last non-Any one
         * (and before the first non-Any char), then keeps the pieces between cuts and the
         * end: text before the first cut is dropped (" ab" gives "ab", "  " nothing). */
        uint32_t last = 0;
        size_t cut = SIZE_MAX;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t l = s[i] < 0x80 ? (cp = s[i], 1) : (size_t)lmx__utf8_dec(s + i, n - i, &cp);
            uint32_t sc = script_of(cp);
            if (sc && sc != last) {
                if (cut != SIZE_MAX) {
                    if (lmx__tok_grow((void **)out, ocap, *on + 1, sizeof **out))
                        return LMX_ENOMEM;
                    (*out)[(*on)++] = (lmx_tok_span){(uint32_t)(in[si].start + cut), (uint32_t)(i - cut)};
                }
                cut = i;
            }
            if (sc)
                last = sc;
            i += l;
        }
        if (cut != SIZE_MAX) {
            if (lmx__tok_grow((void **)out, ocap, *on + 1, sizeof **out))
                return LMX_ENOMEM;
            (*out)[(*on)++] = (lmx_tok_span){(uint32_t)(in[si].start + cut), (uint32_t)(n - cut)};
        }
    }
    return LMX_OK;
}
