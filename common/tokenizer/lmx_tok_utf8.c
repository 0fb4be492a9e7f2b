/* NFC and the ByteLevel byte <-> char map (UTF-8 validation is in base/lmx_utf8.c). */
#include "lmx_tok_internal.h"
#include "lmx_hf_char_tables.h"
#include "lmx_unicode_tables.h"

#include <stdlib.h>
#include <string.h>

/* ---- NFC ----------------------------------------------------------------------------------- */

/* HF's normalizers use an older Unicode (lmx_hf_char_tables.h): chars it has no decomposition
 * or combining class for are plain starters there. */
static int hf_nodecomp(uint32_t cp)
{
    return lmx__hf_in_ranges(lmx__hf_nodecomp_ranges, lmx__hf_nodecomp_ranges_n, cp);
}

static unsigned hf_ccc(uint32_t cp)
{
    unsigned cc = lmx__uni_ccc(cp);
    return cc && lmx__hf_in_ranges(lmx__hf_noccc_ranges, lmx__hf_noccc_ranges_n, cp) ? 0 : cc;
}

#define SBASE 0xAC00u
#define LBASE 0x1100u
#define VBASE 0x1161u
#define TBASE 0x11A7u
#define LCOUNT 19u
#define VCOUNT 21u
#define TCOUNT 28u
#define NCOUNT (VCOUNT * TCOUNT)
#define SCOUNT (LCOUNT * NCOUNT)

static const lmx_uni_decomp *find_decomp(uint32_t cp)
{
    uint32_t lo = 0, hi = lmx__uni_decomp_n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (lmx__uni_decomp[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < lmx__uni_decomp_n && lmx__uni_decomp[lo].cp == cp ? &lmx__uni_decomp[lo] : NULL;
}

static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
        b < TBASE + TCOUNT)
        return a + (b - TBASE);
    uint64_t key = (uint64_t)a << 21 | b;
    uint32_t lo = 0, hi = lmx__uni_comp_n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (lmx__uni_comp[mid].key < key) lo = mid + 1;
        else hi = mid;
    }
    return lo < lmx__uni_comp_n && lmx__uni_comp[lo].key == key && !hf_nodecomp(lmx__uni_comp[lo].cp)
         ? lmx__uni_comp[lo].cp : 0;
}

static int push_u32(uint32_t **v, size_t *n, size_t *cap, uint32_t x)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        uint32_t *nv = realloc(*v, nc * sizeof *nv);
        if (!nv)
            return LMX_ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = x;
    return LMX_OK;
}

static const lmx_uni_kdecomp *find_kdecomp(uint32_t cp)
{
    uint32_t lo = 0, hi = lmx__uni_kdecomp_n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (lmx__uni_kdecomp[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < lmx__uni_kdecomp_n && lmx__uni_kdecomp[lo].cp == cp ? &lmx__uni_kdecomp[lo] : NULL;
}

static int decompose(uint32_t cp, int compat, uint32_t **v, size_t *n, size_t *cap)
{
    if (compat && cp >= 0xA0) {
        const lmx_uni_kdecomp *k = find_kdecomp(cp);
        if (k && !hf_nodecomp(cp)) {
            for (uint32_t i = 0; i < k->len; i++) {
                int rc = decompose(lmx__uni_kpool[k->off + i], compat, v, n, cap);
                if (rc)
                    return rc;
            }
            return LMX_OK;
        }
    }
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        int rc = push_u32(v, n, cap, LBASE + s / NCOUNT);
        if (!rc) rc = push_u32(v, n, cap, VBASE + (s % NCOUNT) / TCOUNT);
        if (!rc && s % TCOUNT) rc = push_u32(v, n, cap, TBASE + s % TCOUNT);
        return rc;
    }
    const lmx_uni_decomp *d = cp >= 0xC0 ? find_decomp(cp) : NULL;
    if (!d || hf_nodecomp(cp))
        return push_u32(v, n, cap, cp);
    int rc = decompose(d->d1, compat, v, n, cap);
    if (!rc && d->d2)
        rc = decompose(d->d2, compat, v, n, cap);
    return rc;
}

int lmx__nfc(const uint8_t *s, size_t n, lmx_buf *out, uint32_t **scratch, size_t *scratch_cap)
{
    return lmx__unorm(LMX_NF_C, s, n, out, scratch, scratch_cap);
}

int lmx__unorm(int form, const uint8_t *s, size_t n, lmx_buf *out, uint32_t **scratch,
               size_t *scratch_cap)
{
    /* Quick check: ASCII is in every form; for NFC, text without NFC_QC No/Maybe chars and
     * without non-starters is NFC. */
    int quick = 1;
    for (size_t i = 0; i < n && quick;) {
        uint64_t w8;
        if (i + 8 <= n && (memcpy(&w8, s + i, 8), (w8 & 0x8080808080808080ull) == 0)) {
            i += 8; /* prose is mostly ASCII: 8 bytes per test */
            continue;
        }
        if (s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        i += (size_t)lmx__utf8_dec(s + i, n - i, &cp);
        if (form != LMX_NF_C || (lmx__uni_flags(cp) & LMX_UNI_NFCQC) || lmx__uni_ccc(cp))
            quick = 0;
    }
    if (quick)
        return lmx__buf_append(out, s, n);
    int compat = form == LMX_NF_KC || form == LMX_NF_KD;

    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)lmx__utf8_dec(s + i, n - i, &cp);
        if (decompose(cp, compat, scratch, &m, scratch_cap) != LMX_OK)
            return LMX_ENOMEM;
    }
    uint32_t *v = *scratch;
    /* canonical ordering: stable insertion sort of each run of non-starters */
    for (size_t i = 1; i < m; i++) {
        unsigned cc = hf_ccc(v[i]);
        if (!cc)
            continue;
        size_t j = i;
        uint32_t x = v[i];
        while (j > 0 && hf_ccc(v[j - 1]) > cc) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    /* canonical composition */
    if (m && (form == LMX_NF_C || form == LMX_NF_KC)) {
        size_t starter = 0, w = 1;
        unsigned last = hf_ccc(v[0]) ? 256u : 0u;
        for (size_t i = 1; i < m; i++) {
            uint32_t ch = v[i];
            unsigned cc = hf_ccc(ch);
            uint32_t comp = (last < cc || last == 0) ? compose_pair(v[starter], ch) : 0;
            if (comp && (last < cc || last == 0) && !(last == 0 && w - 1 != starter)) {
                v[starter] = comp;
                continue;
            }
            if (cc == 0)
                starter = w;
            last = cc;
            v[w++] = ch;
        }
        m = w;
    }
    if (lmx__buf_reserve(out, m * 4) != LMX_OK)
        return LMX_ENOMEM;
    for (size_t i = 0; i < m; i++)
        out->len += (size_t)lmx__utf8_enc(v[i], out->data + out->len);
    return LMX_OK;
}

/* ---- Lowercase ----------------------------------------------------------------------------- */

int lmx__lowercase(const uint8_t *s, size_t n, lmx_buf *out)
{
    if (lmx__buf_reserve(out, n + 8) != LMX_OK)
        return LMX_ENOMEM;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) {
            uint8_t c = s[i++];
            c = (uint8_t)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
            if (lmx__buf_append(out, &c, 1))
                return LMX_ENOMEM;
            continue;
        }
        uint32_t cp, lo;
        i += (size_t)lmx__utf8_dec(s + i, n - i, &cp);
        uint8_t tmp[8];
        size_t l;
        if (cp == 0x130) { /* Rust's char::to_lowercase: the one unconditional special casing */
            l = (size_t)lmx__utf8_enc('i', tmp);
            l += (size_t)lmx__utf8_enc(0x307, tmp + l);
        } else {
            uint32_t a = 0, b = lmx__uni_lower_n;
            while (a < b) {
                uint32_t mid = (a + b) / 2;
                if (lmx__uni_lower[mid].cp < cp) a = mid + 1;
                else b = mid;
            }
            lo = a < lmx__uni_lower_n && lmx__uni_lower[a].cp == cp ? lmx__uni_lower[a].lower : cp;
            l = (size_t)lmx__utf8_enc(lo, tmp);
        }
        if (lmx__buf_append(out, tmp, l))
            return LMX_ENOMEM;
    }
    return LMX_OK;
}

/* ---- ByteLevel ----------------------------------------------------------------------------- */

uint32_t lmx__bytelevel_char(uint8_t b)
{
    /* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
     * bytes map, in byte order, to U+0100.. */
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))
        return b;
    uint32_t k = 0;
    for (uint32_t x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE)))
            k++;
    return 0x100 + k;
}
