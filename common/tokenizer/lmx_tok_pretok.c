/* tokenizer.json encoding, the pre-tokenizer: the hand-written matchers for the regexes of known
 * tokenizers (proto/TOKENIZER.md), split behaviors, ByteLevel and Metaspace, and the loop that
 * hands every piece to BPE. */
#include "lmx_tok_hot.h"

#include <stdlib.h>
#include <string.h>

/* Class and length of the char at p[i] (i < n, valid UTF-8). */
static inline unsigned cls_at(const uint8_t *p, size_t i, size_t n, int *len, uint32_t *cpo)
{
    uint32_t cp;
    if (p[i] < 0x80) {
        *len = 1;
        cp = p[i];
        if (cpo)
            *cpo = cp;
        return lmx__tok_ascii_cls[cp];
    }
    *len = lmx__utf8_dec(p + i, n - i, &cp);
    if (cpo)
        *cpo = cp;
    return lmx__tok_cls_cp(cp);
}

/* End of the run of chars at i whose class intersects `want` (or, with neg, does not). */
static inline size_t run_of(const uint8_t *p, size_t i, size_t n, unsigned want, int neg)
{
    while (i < n) {
        unsigned c;
        size_t l = 1;
        if (p[i] < 0x80) {
            c = lmx__tok_ascii_cls[p[i]]; /* most text: one table load per char */
        } else {
            int dl;
            c = cls_at(p, i, n, &dl, NULL);
            l = (size_t)dl;
        }
        if (neg ? (c & want) != 0 : (c & want) == 0)
            break;
        i += l;
    }
    return i;
}

static inline int fold_is(uint32_t cp, char lower)
{
    if (cp < 0x80)
        return (char)(cp | 0x20) == lower && ((cp | 0x20) >= 'a');
    for (uint32_t k = 0; k < lmx__uni_fold_ascii_n; k++)
        if (lmx__uni_fold_ascii[k].cp == cp && lmx__uni_fold_ascii[k].ascii == (uint32_t)lower)
            return 1;
    return 0;
}

/* 's 't 're 've 'm 'll 'd after the apostrophe at p[i]; returns the match end or 0. */
static size_t contraction(const uint8_t *p, size_t i, size_t n, int ci)
{
    size_t j = i + 1;
    if (j >= n)
        return 0;
    uint32_t c1, c2 = 0;
    int l1 = lmx__utf8_dec(p + j, n - j, &c1), l2 = 0;
    if (j + (size_t)l1 < n)
        l2 = lmx__utf8_dec(p + j + l1, n - j - (size_t)l1, &c2);
    if (!ci) {
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
            return j + 1;
        if (l2 && ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')))
            return j + 2;
        return 0;
    }
    if (fold_is(c1, 's') || fold_is(c1, 't'))
        return j + (size_t)l1;
    if (l2 && ((fold_is(c1, 'r') && fold_is(c2, 'e')) || (fold_is(c1, 'v') && fold_is(c2, 'e'))))
        return j + (size_t)l1 + (size_t)l2;
    if (fold_is(c1, 'm'))
        return j + (size_t)l1;
    if (l2 && fold_is(c1, 'l') && fold_is(c2, 'l'))
        return j + (size_t)l1 + (size_t)l2;
    if (fold_is(c1, 'd'))
        return j + (size_t)l1;
    return 0;
}

/* Whitespace alternatives shared by both patterns, at a White_Space char at i:
 *   [LLaMA-3 only] \s*[\r\n]+   then   \s+(?!\S)   then   \s+   */
static size_t ws_tail(const uint8_t *p, size_t i, size_t n, int llama3)
{
    size_t j = i, last_nl = SIZE_MAX, last_start = i;
    int nchars = 0;
    while (j < n) {
        int l;
        unsigned c = cls_at(p, j, n, &l, NULL);
        if (!(c & LMX_UNI_WS))
            break;
        if (p[j] == '\r' || p[j] == '\n')
            last_nl = j;
        last_start = j;
        j += (size_t)l;
        nchars++;
    }
    if (llama3 && last_nl != SIZE_MAX)
        return last_nl + 1;
    if (j == n || nchars < 2)
        return j;
    return last_start;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,K}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+   (leftmost-first alternation, as Oniguruma runs it) */
static size_t re_llama3(const uint8_t *p, size_t i, size_t n, int digits)
{
    int l;
    uint32_t cp;
    unsigned c = cls_at(p, i, n, &l, &cp);
    if (cp == '\'') {
        size_t e = contraction(p, i, n, 1);
        if (e)
            return e;
    }
    if (c & LMX_UNI_L)
        return run_of(p, i + (size_t)l, n, LMX_UNI_L, 0);
    if (c & LMX_UNI_N) {
        size_t j = i + (size_t)l;
        for (int k = 1; k < digits && j < n; k++) {
            int l2;
            if (!(cls_at(p, j, n, &l2, NULL) & LMX_UNI_N))
                break;
            j += (size_t)l2;
        }
        return j;
    }
    size_t j = i + (size_t)l;
    if (cp != '\r' && cp != '\n' && j < n) {
        int l2;
        if (cls_at(p, j, n, &l2, NULL) & LMX_UNI_L)
            return run_of(p, j + (size_t)l2, n, LMX_UNI_L, 0);
    }
    size_t k = SIZE_MAX;
    if (!(c & LMX_UNI_WS))
        k = i;
    else if (cp == ' ' && j < n) {
        int l2;
        if (!(cls_at(p, j, n, &l2, NULL) & (LMX_UNI_WS | LMX_UNI_L | LMX_UNI_N)))
            k = j;
    }
    if (k != SIZE_MAX) {
        k = run_of(p, k, n, LMX_UNI_WS | LMX_UNI_L | LMX_UNI_N, 1);
        while (k < n && (p[k] == '\r' || p[k] == '\n'))
            k++;
        return k;
    }
    return ws_tail(p, i, n, 1);
}

/* re_llama3 for the commonest pieces, " word" and "word" in ASCII (the \p{L}+ alternative,
 * preceded by an optional space), without its call; anything else, or a letter run that goes
 * on past ASCII, takes the full matcher from the start. */
static inline size_t re_llama3_fast(const uint8_t *p, size_t i, size_t n, int digits)
{
    size_t j = i + (p[i] == ' ' && i + 1 < n);
    if (lmx__tok_ascii_cls[p[j]] & LMX_UNI_L) {
        j++;
        while (j < n && (lmx__tok_ascii_cls[p[j]] & LMX_UNI_L))
            j++;
        if (j == n || p[j] < 0x80)
            return j;
    }
    return re_llama3(p, i, n, digits);
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t re_gpt2(const uint8_t *p, size_t i, size_t n)
{
    int l;
    uint32_t cp;
    unsigned c = cls_at(p, i, n, &l, &cp);
    if (cp == '\'') {
        size_t e = contraction(p, i, n, 0);
        if (e)
            return e;
    }
    size_t s = i;
    if (cp == ' ' && i + 1 < n) {
        int l2;
        unsigned c2 = cls_at(p, i + 1, n, &l2, NULL);
        if (!(c2 & LMX_UNI_WS)) {
            s = i + 1;
            c = c2;
            l = l2;
        }
    }
    if (c & LMX_UNI_L)
        return run_of(p, s + (size_t)l, n, LMX_UNI_L, 0);
    if (c & LMX_UNI_N)
        return run_of(p, s + (size_t)l, n, LMX_UNI_N, 0);
    if (!(c & LMX_UNI_WS))
        return run_of(p, s + (size_t)l, n, LMX_UNI_WS | LMX_UNI_L | LMX_UNI_N, 1);
    return ws_tail(p, i, n, 0);
}

/* All flags of the char at p[i] (o200k: the letter classes need more than cls_at's three). */
static inline unsigned flags_at(const uint8_t *p, size_t i, size_t n, int *len, uint32_t *cpo)
{
    uint32_t cp;
    if (p[i] < 0x80) {
        *len = 1;
        cp = p[i];
    } else {
        *len = lmx__utf8_dec(p + i, n - i, &cp);
    }
    if (cpo)
        *cpo = cp;
    return lmx__uni_flags(cp);
}

/* o200k's optional contraction (?i:'s|'t|'re|'ve|'m|'ll|'d)? after a letter run ending at e. */
static inline size_t o200k_contraction(const uint8_t *p, size_t e, size_t n)
{
    if (e < n && p[e] == '\'') {
        size_t c = contraction(p, e, n, 1);
        if (c)
            return c;
    }
    return e;
}

/* [UP]*[LO]+ at j (UP = Lu Lt Lm Lo M, LO = Ll Lm Lo M), as backtracking gives it: the UP run,
 * then the LO run when an Ll follows; else the run up to its last LO char. 0 = no match. */
static size_t o200k_alt1(const uint8_t *p, size_t j, size_t n)
{
    size_t k = j, last_lo = 0;
    unsigned f = 0;
    int l = 0;
    while (k < n) {
        f = flags_at(p, k, n, &l, NULL);
        if (!(f & LMX_UNI_UP))
            break;
        k += (size_t)l;
        if (f & LMX_UNI_LO)
            last_lo = k;
    }
    if (k < n && (f & LMX_UNI_LO)) { /* an Ll: L+ runs on */
        while (k < n) {
            f = flags_at(p, k, n, &l, NULL);
            if (!(f & LMX_UNI_LO))
                break;
            k += (size_t)l;
        }
        return o200k_contraction(p, k, n);
    }
    return last_lo ? o200k_contraction(p, last_lo, n) : 0;
}

/* [UP]+[LO]* at j. 0 = no match. */
static size_t o200k_alt2(const uint8_t *p, size_t j, size_t n)
{
    size_t k = j;
    int l;
    while (k < n && (flags_at(p, k, n, &l, NULL) & LMX_UNI_UP))
        k += (size_t)l;
    if (k == j)
        return 0;
    while (k < n && (flags_at(p, k, n, &l, NULL) & LMX_UNI_LO))
        k += (size_t)l;
    return o200k_contraction(p, k, n);
}

/* GPT-4o's o200k (also gpt-oss), leftmost-first as Oniguruma runs it:
 *   P?[UP]*[LO]+C? | P?[UP]+[LO]*C? | \p{N}{1,3} | ?[^\s\p{L}\p{N}]+[\r\n/]* | \s*[\r\n]+ |
 *   \s+(?!\S) | \s+      with P = [^\r\n\p{L}\p{N}], C = the contractions */
static size_t re_o200k(const uint8_t *p, size_t i, size_t n)
{
    int l0;
    uint32_t c0;
    unsigned f0 = flags_at(p, i, n, &l0, &c0);
    size_t after = i + (size_t)l0, e;
    int pre = !(f0 & (LMX_UNI_L | LMX_UNI_N)) && c0 != '\r' && c0 != '\n';
    int letterish = (f0 & (LMX_UNI_UP | LMX_UNI_LO)) != 0;
    /* alternation order: alt1 with P, alt1 without, alt2 with P, alt2 without */
    if (pre && after < n && (e = o200k_alt1(p, after, n)))
        return e;
    if (letterish && (e = o200k_alt1(p, i, n)))
        return e;
    if (pre && after < n && (e = o200k_alt2(p, after, n)))
        return e;
    if (letterish && (e = o200k_alt2(p, i, n)))
        return e;
    if (f0 & LMX_UNI_N) {
        size_t j = after;
        int l;
        for (int k = 1; k < 3 && j < n && (flags_at(p, j, n, &l, NULL) & LMX_UNI_N); k++)
            j += (size_t)l;
        return j;
    }
    size_t k = SIZE_MAX;
    if (!(f0 & LMX_UNI_WS))
        k = i;
    else if (c0 == ' ' && after < n) {
        int l;
        if (!(flags_at(p, after, n, &l, NULL) & (LMX_UNI_WS | LMX_UNI_L | LMX_UNI_N)))
            k = after;
    }
    if (k != SIZE_MAX) {
        k = run_of(p, k, n, LMX_UNI_WS | LMX_UNI_L | LMX_UNI_N, 1);
        while (k < n && (p[k] == '\r' || p[k] == '\n' || p[k] == '/'))
            k++;
        return k;
    }
    return ws_tail(p, i, n, 1);
}

/* re_o200k for ASCII letter pieces (" Word", "word", "WORD"): [A-Z]*[a-z]* after an optional
 * space, when an ASCII char other than an apostrophe follows; anything else, the full matcher. */
static inline size_t re_o200k_fast(const uint8_t *p, size_t i, size_t n)
{
    size_t j = i + (p[i] == ' ' && i + 1 < n), k = j;
    while (k < n && p[k] >= 'A' && p[k] <= 'Z')
        k++;
    while (k < n && p[k] >= 'a' && p[k] <= 'z')
        k++;
    if (k > j && (k == n || (p[k] < 0x80 && p[k] != '\'')))
        return k;
    return re_o200k(p, i, n);
}

static inline int ascii_punct(uint32_t c)
{
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
           (c >= '{' && c <= '~');
}

#define ASCII_LETTER(c) ((unsigned)(((c) | 0x20) - 'a') < 26u)

/* End of the run of [\p{L}\p{M}] chars from k (ASCII letters without a table lookup: most of
 * the text). */
static inline size_t ds_letters(const uint8_t *p, size_t k, size_t n)
{
    for (;;) {
        while (k < n && ASCII_LETTER(p[k]))
            k++;
        int l;
        if (k >= n || p[k] < 0x80 || !(flags_at(p, k, n, &l, NULL) & (LMX_UNI_L | LMX_UNI_UP)))
            return k;
        k += (size_t)l;
    }
}

/* End of the run of [A-Za-z] from k (the first alternative: no \p{M} after the letters). */
static inline size_t ds_letters_ascii(const uint8_t *p, size_t k, size_t n)
{
    while (k < n && ASCII_LETTER(p[k]))
        k++;
    return k;
}

/* DeepSeek-V3's third Split at i, or 0 when no alternative matches there:
 *   [ASCII punct][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ | ?[\p{P}\p{S}]+[\r\n]* |
 *   \s*[\r\n]+ | \s+(?!\S) | \s+ */
static size_t ds_match(const uint8_t *p, size_t i, size_t n)
{
    /* most pieces: an ASCII letter run, alone or after one space (the second alternative; the
     * first needs ASCII punctuation first) */
    if (ASCII_LETTER(p[i]))
        return ds_letters(p, i + 1, n);
    if (p[i] == ' ' && i + 1 < n && ASCII_LETTER(p[i + 1]))
        return ds_letters(p, i + 2, n);
    /* ASCII punctuation (every one is \p{P} or \p{S}), alone or after one space: the first
     * alternative when a letter follows it, else the third; its run leaves this path at the
     * first non-ASCII char (which may be P or S too) */
    size_t s0 = i + (p[i] == ' ' && i + 1 < n);
    if (ascii_punct(p[s0])) {
        size_t k = s0 + 1;
        if (s0 == i && k < n && ASCII_LETTER(p[k]))
            return ds_letters_ascii(p, k + 1, n);
        while (k < n && ascii_punct(p[k]))
            k++;
        if (k == n || p[k] < 0x80) {
            while (k < n && (p[k] == '\r' || p[k] == '\n'))
                k++;
            return k;
        }
    }
    int l0, l1 = 0;
    uint32_t c0;
    unsigned f0 = flags_at(p, i, n, &l0, &c0), f1 = 0;
    size_t a = i + (size_t)l0;
    if (a < n)
        f1 = flags_at(p, a, n, &l1, NULL);
    const unsigned LM = LMX_UNI_L | LMX_UNI_UP; /* UP without L is M */
    if (ascii_punct(c0) && a < n && ((p[a] | 0x20) >= 'a' && (p[a] | 0x20) <= 'z')) {
        size_t k = a;
        while (k < n && (p[k] | 0x20) >= 'a' && (p[k] | 0x20) <= 'z')
            k++;
        return k;
    }
    int prefix = !(f0 & (LMX_UNI_L | LMX_UNI_P | LMX_UNI_S)) && c0 != '\r' && c0 != '\n';
    size_t s = SIZE_MAX;
    if (prefix && a < n && (f1 & LM))
        s = a;
    else if (f0 & LM)
        s = i;
    if (s != SIZE_MAX)
        return ds_letters(p, s, n);
    s = SIZE_MAX;
    if (c0 == ' ' && a < n && (f1 & (LMX_UNI_P | LMX_UNI_S)))
        s = a;
    else if (f0 & (LMX_UNI_P | LMX_UNI_S))
        s = i;
    if (s != SIZE_MAX) {
        size_t k = s;
        int l;
        while (k < n && (flags_at(p, k, n, &l, NULL) & (LMX_UNI_P | LMX_UNI_S)))
            k += (size_t)l;
        while (k < n && (p[k] == '\r' || p[k] == '\n'))
            k++;
        return k;
    }
    if (f0 & LMX_UNI_WS)
        return ws_tail(p, i, n, 1);
    return 0;
}

/* The DeepSeek piece at i: its match, or the gap up to the next position that matches (a
 * piece too when the split is Isolated, the only way this scanner is used). */
static size_t re_deepseek(const uint8_t *p, size_t i, size_t n)
{
    size_t e = ds_match(p, i, n);
    if (e)
        return e;
    size_t j = i + lmx__utf8_len(p[i]);
    while (j < n && !ds_match(p, j, n))
        j += lmx__utf8_len(p[j]);
    return j;
}

/* DeepSeek-V3's first two Splits, \p{N}{1,3} and [一-龥぀-ゟ゠-ヿ]+: the match at i, or the gap
 * up to the next char that starts one (Isolated only, like re_deepseek). */
static inline int ds_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x309F) || (c >= 0x30A0 && c <= 0x30FF);
}
static size_t re_class_run(const uint8_t *p, size_t i, size_t n, int cjk)
{
    int l;
    uint32_t cp;
    unsigned f = flags_at(p, i, n, &l, &cp);
    int in = cjk ? ds_cjk(cp) : (f & LMX_UNI_N) != 0;
    size_t j = i + (size_t)l;
    for (int k = 1; j < n && (cjk || !in || k < 3); k++) {
        f = flags_at(p, j, n, &l, &cp);
        if ((cjk ? ds_cjk(cp) : (f & LMX_UNI_N) != 0) != in)
            break;
        j += (size_t)l;
    }
    return j;
}

/* DeepSeek-V3's whole chain of three Isolated Splits in one pass: the \p{N}{1,3} pieces (kept
 * whole: digits are none of the later classes), else the piece of the first two Splits holding
 * i (a CJK run, or the text up to the next digit or CJK char), cut by the third Split as HF cuts
 * each piece on its own. *seg: the end of that piece, 0 before the first call on a text; the
 * pieces of the first two Splits end where they end whichever of their chars one starts from,
 * so it stays valid until i reaches it. */
size_t lmx__tok_scan_ds3(const uint8_t *p, size_t i, size_t n, size_t *seg)
{
    if (i >= *seg) {
        int l;
        uint32_t cp;
        unsigned f = flags_at(p, i, n, &l, &cp);
        if (f & LMX_UNI_N)
            return *seg = re_class_run(p, i, n, 0);
        if (ds_cjk(cp)) {
            *seg = re_class_run(p, i, n, 1);
        } else {
            size_t j = i + (size_t)l;
            while (j < n) {
                /* 8 bytes at a time while none is a digit or non-ASCII: for b < 0x80,
                 * b + 0x50 reaches 0x80 from '0' on and b + 0x46 from ':' on (no carries) */
                while (j + 8 <= n) {
                    uint64_t v = lmx__tok_load64(p + j), lo = v & 0x7F7F7F7F7F7F7F7Full;
                    uint64_t d = (lo + 0x5050505050505050ull) & ~(lo + 0x4646464646464646ull);
                    if ((v | d) & 0x8080808080808080ull)
                        break;
                    j += 8;
                }
                if (j >= n)
                    break;
                if (p[j] < 0x80) {
                    if (p[j] >= '0' && p[j] <= '9')
                        break;
                    j++;
                    continue;
                }
                f = flags_at(p, j, n, &l, &cp);
                if ((f & LMX_UNI_N) || ds_cjk(cp))
                    break;
                j += (size_t)l;
            }
            *seg = j;
        }
    }
    return re_deepseek(p, i, *seg);
}

/* The patterns the scanners above implement, exactly as tokenizer.json writes them. */
const char lmx__tok_re_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char lmx__tok_re_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char lmx__tok_re_o200k[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char lmx__tok_re_deepseek[] =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
const char lmx__tok_re_digits3[] = "\\p{N}{1,3}";
const char lmx__tok_re_dscjk[] = "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+";
const char lmx__tok_re_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

size_t lmx__tok_scan_piece(int re, int digits, const uint8_t *p, size_t i, size_t n)
{
    return re == LMX_RE_LLAMA3 ? re_llama3(p, i, n, digits)
         : re == LMX_RE_O200K  ? re_o200k(p, i, n)
         : re == LMX_RE_DEEPSEEK ? re_deepseek(p, i, n)
         : re == LMX_RE_DIGITS3 ? re_class_run(p, i, n, 0)
         : re == LMX_RE_DSCJK   ? re_class_run(p, i, n, 1)
                               : re_gpt2(p, i, n);
}

/* ---- pre-tokenizer ------------------------------------------------------------------------- */

static int char_pred(const lmx_tok_pre *p, uint32_t cp)
{
    switch (p->pred) {
    case LMX_CHAR_DIGIT: /* Rust's char::is_numeric: N* */
        return (lmx__tok_cls_cp(cp) & LMX_UNI_N) != 0;
    case LMX_CHAR_WS:
        return (lmx__tok_cls_cp(cp) & LMX_UNI_WS) != 0;
    case LMX_CHAR_PUNCT: {
        if (cp < 0x80)
            return (cp >= '!' && cp <= '/') || (cp >= ':' && cp <= '@') || (cp >= '[' && cp <= '`') ||
                   (cp >= '{' && cp <= '~');
        uint32_t gc = lmx__uni_gc(cp);
        return gc >= 11 && gc <= 17; /* Pc Pd Ps Pe Pi Pf Po */
    }
    default:
        return cp == p->pred_cp;
    }
}

typedef struct piece {
    uint32_t start, end;
    int is_match;
} piece;

/* Applies a split behavior to pieces[0..np) (in place) and appends the resulting non-empty
 * spans to out. HF SplitDelimiterBehavior. */
static int apply_behavior(int behavior, piece *pc, size_t np, lmx_tok_span **out, size_t *on,
                          size_t *ocap)
{
    size_t m = 0;
    switch (behavior) {
    case LMX_SPLIT_ISOLATED:
        m = np;
        break;
    case LMX_SPLIT_REMOVED:
        for (size_t i = 0; i < np; i++)
            if (!pc[i].is_match)
                pc[m++] = pc[i];
        break;
    case LMX_SPLIT_MERGED_PREV: {
        int prev = 0;
        for (size_t i = 0; i < np; i++) {
            int im = pc[i].is_match;
            if (im && !prev && m)
                pc[m - 1].end = pc[i].end;
            else
                pc[m++] = pc[i];
            prev = im;
        }
        break;
    }
    case LMX_SPLIT_MERGED_NEXT: {
        /* right-to-left fold, written into the tail then reversed in place */
        int prev = 0;
        size_t w = np;
        for (size_t ii = np; ii-- > 0;) {
            piece p = pc[ii];
            if (p.is_match && !prev && w < np)
                pc[w].start = p.start;
            else
                pc[--w] = p;
            prev = p.is_match;
        }
        memmove(pc, pc + w, (np - w) * sizeof *pc);
        m = np - w;
        break;
    }
    case LMX_SPLIT_CONTIGUOUS: {
        int prev = 0;
        for (size_t i = 0; i < np; i++) {
            int im = pc[i].is_match;
            if (im == prev && m)
                pc[m - 1].end = pc[i].end;
            else
                pc[m++] = pc[i];
            prev = im;
        }
        break;
    }
    }
    if (lmx__tok_grow((void **)out, ocap, *on + m, sizeof **out))
        return LMX_ENOMEM;
    for (size_t i = 0; i < m; i++)
        if (pc[i].end > pc[i].start)
            (*out)[(*on)++] = (lmx_tok_span){pc[i].start, pc[i].end - pc[i].start};
    return LMX_OK;
}

/* Pre-tokenizes text[0..n) (already normalized) and BPE-encodes every piece. `first` tells
 * Metaspace(prepend_scheme=first) that this piece starts the original text. */
#define PIECES_AHEAD 16

/* The regex piece starting at i: its end in *end; for a piece the hot cache can hold, its hash
 * in *h and its hot set prefetched. Returns the end. */
static inline size_t piece_ahead(lmx_tokjson_enc *e, const uint8_t *text, size_t i, size_t n,
                                 int re, int dg, size_t *seg, size_t *end, uint64_t *h)
{
    size_t j = re == LMX_RE_LLAMA3 ? re_llama3_fast(text, i, n, dg)
             : re == LMX_RE_O200K  ? re_o200k_fast(text, i, n)
             : re == LMX_RE_GPT2   ? re_gpt2(text, i, n)
             : re == LMX_RE_DS3    ? lmx__tok_scan_ds3(text, i, n, seg)
                                   : lmx__tok_scan_piece(re, dg, text, i, n);
    *end = j;
    if (j - i <= LMX_TOK_HOT_KEY) {
        *h = lmx__tok_hash(text + i, j - i);
        const lmx_tok_hot *set = lmx__tok_hot_set(e, *h);
        LMX_PREFETCH(set);
        LMX_PREFETCH(set + 1);
    } else {
        *h = 0; /* not used: longer pieces go through bpe_word */
    }
    return j;
}

/* Half way to its BPE, the hot set of piece w[0..n) (hash h) has arrived: when it does not
 * hold the piece, what the miss path reads next is prefetched (its vocab slot, and with
 * ByteLevel the merge slots of its first byte pairs). */
static inline void piece_peek(const lmx_tokjson_enc *e, const uint8_t *w, size_t n, uint64_t h)
{
    const lmx_tokjson *tj = e->tj;
    const lmx_tok_hot *set = &e->hot[(h & (LMX_TOK_HOT_SLOTS / 2 - 1)) * 2];
    uint32_t h32 = (uint32_t)(h >> 32);
    if ((set[0].hash32 == h32 && set[0].nids) || (set[1].hash32 == h32 && set[1].nids))
        return;
    if (tj->ignore_merges)
        lmx__tok_strmap_prefetch(&tj->vocab, h);
    if (tj->byte_level)
        for (size_t i = 0; i + 1 < n && i < 16; i++)
            lmx__tok_merge_prefetch(&tj->merges, tj->byte_ids[w[i]], tj->byte_ids[w[i + 1]]);
}

int lmx__tok_pretok_and_bpe(lmx_tokjson_enc *e, const uint8_t *text, size_t n, int first,
                          lmx_ids *out)
{
    const lmx_tokjson *tj = e->tj;
    if (!n)
        return LMX_OK;
    if (n > UINT32_MAX / 2)
        return LMX_ENOMEM;
    /* fast path: one Isolated regex split (optionally followed by a no-op ByteLevel) */
    int steps = tj->n_pre;
    if (steps && tj->pre[steps - 1].type == LMX_PRE_BYTELEVEL && !tj->pre[steps - 1].add_prefix_space &&
        !tj->pre[steps - 1].use_regex)
        steps--;
    if (steps == 0)
        return lmx__tok_bpe_word(e, text, n, out);
    /* (the fast scanners' patterns match at every position, so Removed + invert, tiktoken's
     * style, keeps the same pieces as Isolated) */
    /* DeepSeek-V3's three Splits (their scanners are set only when Isolated, not inverted) */
    int ds3 = steps == 3 && tj->pre[0].type == LMX_PRE_SPLIT_RE && tj->pre[0].re == LMX_RE_DIGITS3 &&
              tj->pre[1].type == LMX_PRE_SPLIT_RE && tj->pre[1].re == LMX_RE_DSCJK &&
              tj->pre[2].type == LMX_PRE_SPLIT_RE && tj->pre[2].re == LMX_RE_DEEPSEEK;
    /* GPT-2's ByteLevel(use_regex) without a prefix space: the GPT-2 pattern, Isolated (its
     * matches cover the text, as the general path's loop below assumes too) */
    int gpt2 = steps == 1 && tj->pre[0].type == LMX_PRE_BYTELEVEL && tj->pre[0].use_regex &&
               !tj->pre[0].add_prefix_space;
    if (ds3 || gpt2 || (steps == 1 && tj->pre[0].type == LMX_PRE_SPLIT_RE && tj->pre[0].re &&
        ((tj->pre[0].behavior == LMX_SPLIT_ISOLATED && !tj->pre[0].invert) ||
         (tj->pre[0].behavior == LMX_SPLIT_REMOVED && tj->pre[0].invert &&
          tj->pre[0].re < LMX_RE_DEEPSEEK)))) {
        int llama3 = ds3 ? LMX_RE_DS3 : gpt2 ? LMX_RE_GPT2 : tj->pre[0].re, dg = tj->pre[0].re_digits;
        size_t seg = 0;
        /* Pieces are found PIECES_AHEAD ahead of their BPE and the hot-cache set of each is
         * prefetched then (the cache is megabytes: a lookup is a memory access otherwise). */
        size_t ends[PIECES_AHEAD];
        uint64_t hs[PIECES_AHEAD];
        size_t scan = 0, found = 0;
        for (; found < PIECES_AHEAD && scan < n; found++)
            scan = piece_ahead(e, text, scan, n, llama3, dg, &seg, &ends[found], &hs[found]);
        for (size_t i = 0, done = 0; done < found; done++) {
            if (done + PIECES_AHEAD / 2 < found) {
                size_t pk = (done + PIECES_AHEAD / 2) % PIECES_AHEAD;
                size_t ps = ends[(pk + PIECES_AHEAD - 1) % PIECES_AHEAD]; /* the piece before ends there */
                if (ends[pk] - ps <= LMX_TOK_HOT_KEY)
                    piece_peek(e, text + ps, ends[pk] - ps, hs[pk]);
            }
            size_t k = done % PIECES_AHEAD, j = ends[k];
            uint64_t h = hs[k];
            int rc = j - i <= LMX_TOK_HOT_KEY ? lmx__tok_bpe_hot_h(e, text + i, j - i, h, out)
                                              : lmx__tok_bpe_word(e, text + i, j - i, out);
            if (rc)
                return rc;
            i = j;
            if (scan < n) {
                scan = piece_ahead(e, text, scan, n, llama3, dg, &seg, &ends[k], &hs[k]);
                found++;
            }
        }
        return LMX_OK;
    }

    /* general path: spans over a buffer, one step at a time */
    const uint8_t *buf = text;
    int sw = 0, pw = -1; /* pbuf holding buf, -1 = the caller's text */
    size_t ns = 1;
    if (lmx__tok_grow((void **)&e->spans[0], &e->span_cap[0], 1, sizeof(lmx_tok_span)))
        return LMX_ENOMEM;
    e->spans[0][0] = (lmx_tok_span){0, (uint32_t)n};
    for (int k = 0; k < steps; k++) {
        const lmx_tok_pre *p = &tj->pre[k];
        lmx_tok_span *in = e->spans[sw];
        size_t on = 0;
        int ow = sw ^ 1;
        if (p->type == LMX_PRE_SCRIPTS) {
            if (lmx__tok_scripts_split(buf, in, ns, &e->spans[ow], &on, &e->span_cap[ow]))
                return LMX_ENOMEM;
        } else if (p->type == LMX_PRE_SPLIT_RE || p->type == LMX_PRE_SPLIT_STR || p->type == LMX_PRE_SPLIT_CHAR ||
            (p->type == LMX_PRE_BYTELEVEL && !p->add_prefix_space)) {
            /* text unchanged: only the spans move */
            int behavior = p->type == LMX_PRE_BYTELEVEL ? LMX_SPLIT_ISOLATED : p->behavior;
            int invert = p->type == LMX_PRE_BYTELEVEL ? 0 : p->invert;
            if (p->type == LMX_PRE_BYTELEVEL && !p->use_regex)
                continue;
            for (size_t si = 0; si < ns; si++) {
                size_t s0 = in[si].start, s1 = s0 + in[si].len;
                size_t np = 0;
                if (p->type == LMX_PRE_SPLIT_CHAR) {
                    /* each char the predicate holds for is a match of its own */
                    size_t last = s0;
                    for (size_t i = s0; i < s1;) {
                        uint32_t cp;
                        int l = lmx__utf8_dec(buf + i, s1 - i, &cp);
                        if (char_pred(p, cp)) {
                            if (lmx__tok_grow(&e->pieces, &e->pieces_cap, np + 2, sizeof(piece)))
                                return LMX_ENOMEM;
                            piece *pc = e->pieces;
                            if (i > last)
                                pc[np++] = (piece){(uint32_t)last, (uint32_t)i, invert};
                            pc[np++] = (piece){(uint32_t)i, (uint32_t)(i + (size_t)l), !invert};
                            last = i + (size_t)l;
                        }
                        i += (size_t)l;
                    }
                    if (lmx__tok_grow(&e->pieces, &e->pieces_cap, np + 1, sizeof(piece)))
                        return LMX_ENOMEM;
                    if (last < s1)
                        ((piece *)e->pieces)[np++] = (piece){(uint32_t)last, (uint32_t)s1, invert};
                    if (np && apply_behavior(behavior, e->pieces, np, &e->spans[ow], &on,
                                             &e->span_cap[ow]))
                        return LMX_ENOMEM;
                    continue;
                }
                if (p->type == LMX_PRE_SPLIT_RE && !p->re) {
                    /* general pattern: Oniguruma's matches (possibly empty) and the gaps */
                    lmx_tok_refind st = {0};
                    size_t prev = 0, ms, me;
                    for (;;) {
                        int r = lmx__tok_regex_next(p->rx, e->region, buf + s0, s1 - s0, &st, &ms, &me);
                        if (r < 0)
                            return r;
                        if (lmx__tok_grow(&e->pieces, &e->pieces_cap, np + 3, sizeof(piece)))
                            return LMX_ENOMEM;
                        piece *pc = e->pieces;
                        if (!r)
                            break;
                        if (ms > prev)
                            pc[np++] = (piece){(uint32_t)(s0 + prev), (uint32_t)(s0 + ms), invert};
                        pc[np++] = (piece){(uint32_t)(s0 + ms), (uint32_t)(s0 + me), !invert};
                        prev = me;
                    }
                    if (prev < s1 - s0)
                        ((piece *)e->pieces)[np++] = (piece){(uint32_t)(s0 + prev), (uint32_t)s1, invert};
                    if (np && apply_behavior(behavior, e->pieces, np, &e->spans[ow], &on,
                                             &e->span_cap[ow]))
                        return LMX_ENOMEM;
                    continue;
                }
                for (size_t i = s0; i < s1;) {
                    size_t ms, me;
                    if (p->type == LMX_PRE_SPLIT_STR) {
                        const uint8_t *f = NULL;
                        for (size_t q = i; q + p->slen <= s1; q++)
                            if (buf[q] == (uint8_t)p->str[0] && memcmp(buf + q, p->str, p->slen) == 0) {
                                f = buf + q;
                                break;
                            }
                        if (!f) {
                            ms = me = s1;
                        } else {
                            ms = (size_t)(f - buf);
                            me = ms + p->slen;
                        }
                    } else {
                        ms = i;
                        me = p->type == LMX_PRE_BYTELEVEL
                                 ? re_gpt2(buf + s0, i - s0, s1 - s0) + s0
                                 : lmx__tok_scan_piece(p->re, p->re_digits, buf + s0, i - s0, s1 - s0) + s0;
                    }
                    if (lmx__tok_grow(&e->pieces, &e->pieces_cap, np + 2, sizeof(piece)))
                        return LMX_ENOMEM;
                    piece *pc = e->pieces;
                    if (ms > i)
                        pc[np++] = (piece){(uint32_t)i, (uint32_t)ms, invert};
                    if (me > ms)
                        pc[np++] = (piece){(uint32_t)ms, (uint32_t)me, !invert};
                    i = me;
                }
                if (np && apply_behavior(behavior, e->pieces, np, &e->spans[ow],
                                         &on, &e->span_cap[ow]))
                    return LMX_ENOMEM;
            }
        } else {
            /* ByteLevel with add_prefix_space, or Metaspace: rewrite the text */
            pw = pw == 0 ? 1 : 0;
            lmx_buf *ob = &e->pbuf[pw];
            ob->len = 0;
            size_t worst = 0;
            for (size_t si = 0; si < ns; si++)
                worst += (size_t)in[si].len * (p->type == LMX_PRE_METASPACE ? p->slen : 1) + 4;
            if (lmx__buf_reserve(ob, worst) ||
                lmx__tok_grow((void **)&e->spans[ow], &e->span_cap[ow], ns, sizeof(lmx_tok_span)))
                return LMX_ENOMEM;
            for (size_t si = 0; si < ns; si++) {
                const uint8_t *s = buf + in[si].start;
                size_t sl = in[si].len;
                size_t st = ob->len;
                if (p->type == LMX_PRE_BYTELEVEL) {
                    if (!sl || s[0] != ' ')
                        ob->data[ob->len++] = ' ';
                    memcpy(ob->data + ob->len, s, sl);
                    ob->len += sl;
                } else {
                    int starts = sl && (s[0] == ' ' || (sl >= p->slen && memcmp(s, p->str, p->slen) == 0));
                    int pre = p->prepend_scheme == LMX_PREPEND_ALWAYS ||
                              (p->prepend_scheme == LMX_PREPEND_FIRST && first && in[si].start == 0);
                    if (pre && !starts) {
                        memcpy(ob->data + ob->len, p->str, p->slen);
                        ob->len += p->slen;
                    }
                    for (size_t i = 0; i < sl; i++) {
                        if (s[i] == ' ') {
                            /* a byte loop: memcpy of a variable 1-4 bytes is a libc call per space */
                            for (size_t r = 0; r < p->slen; r++)
                                ob->data[ob->len++] = (uint8_t)p->str[r];
                        } else {
                            ob->data[ob->len++] = s[i];
                        }
                    }
                }
                if (ob->len > st)
                    e->spans[ow][on++] = (lmx_tok_span){(uint32_t)st, (uint32_t)(ob->len - st)};
            }
            buf = ob->data;
            int more = (p->type == LMX_PRE_BYTELEVEL && p->use_regex) ||
                       (p->type == LMX_PRE_METASPACE && p->split);
            if (more) {
                /* second half of the step: split the rewritten spans */
                sw = ow;
                ns = on;
                in = e->spans[sw];
                ow = sw ^ 1;
                on = 0;
                for (size_t si = 0; si < ns; si++) {
                    size_t s0 = in[si].start, s1 = s0 + in[si].len;
                    size_t np = 0;
                    for (size_t i = s0; i < s1;) {
                        size_t ms = i, me;
                        if (p->type == LMX_PRE_BYTELEVEL) {
                            me = re_gpt2(buf + s0, i - s0, s1 - s0) + s0;
                        } else {
                            /* next replacement char: memchr for its first byte, not a
                             * memcmp call per position */
                            while (ms + p->slen <= s1) {
                                const uint8_t *f = memchr(buf + ms, (uint8_t)p->str[0], s1 - ms - p->slen + 1);
                                if (!f) {
                                    ms = s1;
                                    break;
                                }
                                ms = (size_t)(f - buf);
                                if (memcmp(f, p->str, p->slen) == 0)
                                    break;
                                ms++;
                            }
                            if (ms + p->slen > s1)
                                ms = me = s1;
                            else
                                me = ms + p->slen;
                        }
                        if (lmx__tok_grow(&e->pieces, &e->pieces_cap, np + 2, sizeof(piece)))
                            return LMX_ENOMEM;
                        piece *pc = e->pieces;
                        if (ms > i)
                            pc[np++] = (piece){(uint32_t)i, (uint32_t)ms, 0};
                        if (me > ms)
                            pc[np++] = (piece){(uint32_t)ms, (uint32_t)me, 1};
                        i = me;
                    }
                    int beh = p->type == LMX_PRE_BYTELEVEL ? LMX_SPLIT_ISOLATED : LMX_SPLIT_MERGED_NEXT;
                    if (np && apply_behavior(beh, e->pieces, np, &e->spans[ow], &on,
                                             &e->span_cap[ow]))
                        return LMX_ENOMEM;
                }
            }
        }
        sw = ow;
        ns = on;
    }
    for (size_t si = 0; si < ns; si++) {
        int rc = lmx__tok_bpe_word(e, buf + e->spans[sw][si].start, e->spans[sw][si].len, out);
        if (rc)
            return rc;
    }
    return LMX_OK;
}
