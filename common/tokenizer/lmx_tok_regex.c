/* The general regex path: any Split / Replace pattern of a tokenizer.json, run by Oniguruma, the
 * engine HF tokenizers uses (through the `onig` crate), with the crate's find_iter semantics.
 *
 * Unicode version: Debian's libonig (6.9.8) has Unicode 14 tables, HF's bundled Oniguruma
 * (6.9.10 in tokenizers 0.22) Unicode 16. Before compiling, every general-category class
 * (\p{L}, \p{Lu}, \P{N}, \p{^M}, \p{Letter}, ..., and \d / \D = Nd) is rewritten into explicit
 * code point ranges from longmix's Unicode 16 tables (lmx_unicode_tables.c), so both engines
 * classify every code point the same; \w / \W get the Unicode 16 letters, marks and digits added to
 * the library's own. Other properties (scripts, POSIX brackets) are left to the library; proto/TOKENIZER.md lists this. A leaf: calls nothing else in the folder. */
#include "lmx_tok_internal.h"

#include <ctype.h>
#include <oniguruma.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lmx_tok_regex {
    regex_t *re;
    /* "X{m,}" with X a letter, digit or space and m >= 1 (SentencePiece's Replace " {2,}"):
     * found without Oniguruma, as the runs of at least m X (greedy, leftmost, never empty) */
    int rep;
    uint8_t rep_char;
    size_t rep_min;
};

/* Recognizes "X{m,}" (see the struct); 1 and sets the fields, else 0. */
static int literal_repeat(const char *pat, size_t n, lmx_tok_regex *r)
{
    if (n < 5 || pat[1] != '{' || pat[n - 2] != ',' || pat[n - 1] != '}')
        return 0;
    unsigned char c = (unsigned char)pat[0];
    if (!(c == ' ' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')))
        return 0;
    size_t m = 0;
    for (size_t i = 2; i < n - 2; i++) {
        if (pat[i] < '0' || pat[i] > '9' || i > 6)
            return 0;
        m = m * 10 + (size_t)(pat[i] - '0');
    }
    if (m < 1)
        return 0;
    r->rep = 1;
    r->rep_char = c;
    r->rep_min = m;
    return 1;
}

static int rep_next(const lmx_tok_regex *r, const uint8_t *s, size_t n, lmx_tok_refind *st,
                    size_t *ms, size_t *me)
{
    const uint8_t c = r->rep_char;
    const size_t m = r->rep_min;
    size_t i = st->last_end;
    while (i < n && n - i >= m) {
        /* a run of m or more starting in [i, i + m) covers i + m - 1: without X there, none
         * does, and the search moves m bytes (most text has single spaces only) */
        size_t p = i + m - 1;
        if (s[p] != c) {
            i = p + 1;
            continue;
        }
        size_t a = p, e = p + 1;
        while (a > i && s[a - 1] == c)
            a--;
        while (e < n && s[e] == c)
            e++;
        if (e - a >= m) {
            st->last_end = st->last_match_end = e;
            st->has_last = 1;
            *ms = a;
            *me = e;
            return 1;
        }
        i = e;
    }
    st->last_end = n + 1;
    return 0;
}

static pthread_once_t onig_once = PTHREAD_ONCE_INIT;
static void regex_init(void)
{
    OnigEncoding enc[1] = {ONIG_ENCODING_UTF8};
    onig_initialize(enc, 1);
}

/* ---- \p{..} rewriting ----------------------------------------------------------------------- */

#define GC(i) (1u << (i))
enum { Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe, Pi, Pf, Po, Sm, Sc, Sk, So,
       Zs, Zl, Zp, Cc, Cf, Cs, Co, Cn };
_Static_assert(Cn + 1 == LMX_GC_N_CATS, "category order follows LMX_GC_NAMES");

/* Property names as Oniguruma compares them (case, spaces, '_' and '-' ignored). */
static const struct { const char *name; uint32_t mask; } gc_props[] = {
    {"l", GC(Lu) | GC(Ll) | GC(Lt) | GC(Lm) | GC(Lo)}, {"letter", GC(Lu) | GC(Ll) | GC(Lt) | GC(Lm) | GC(Lo)},
    {"lc", GC(Lu) | GC(Ll) | GC(Lt)}, {"casedletter", GC(Lu) | GC(Ll) | GC(Lt)},
    {"lu", GC(Lu)}, {"uppercaseletter", GC(Lu)}, {"ll", GC(Ll)}, {"lowercaseletter", GC(Ll)},
    {"lt", GC(Lt)}, {"titlecaseletter", GC(Lt)}, {"lm", GC(Lm)}, {"modifierletter", GC(Lm)},
    {"lo", GC(Lo)}, {"otherletter", GC(Lo)},
    {"m", GC(Mn) | GC(Mc) | GC(Me)}, {"mark", GC(Mn) | GC(Mc) | GC(Me)},
    {"combiningmark", GC(Mn) | GC(Mc) | GC(Me)},
    {"mn", GC(Mn)}, {"nonspacingmark", GC(Mn)}, {"mc", GC(Mc)}, {"spacingmark", GC(Mc)},
    {"me", GC(Me)}, {"enclosingmark", GC(Me)},
    {"n", GC(Nd) | GC(Nl) | GC(No)}, {"number", GC(Nd) | GC(Nl) | GC(No)},
    {"nd", GC(Nd)}, {"decimalnumber", GC(Nd)}, {"nl", GC(Nl)}, {"letternumber", GC(Nl)},
    {"no", GC(No)}, {"othernumber", GC(No)},
    {"p", GC(Pc) | GC(Pd) | GC(Ps) | GC(Pe) | GC(Pi) | GC(Pf) | GC(Po)},
    {"punctuation", GC(Pc) | GC(Pd) | GC(Ps) | GC(Pe) | GC(Pi) | GC(Pf) | GC(Po)},
    {"pc", GC(Pc)}, {"connectorpunctuation", GC(Pc)}, {"pd", GC(Pd)}, {"dashpunctuation", GC(Pd)},
    {"ps", GC(Ps)}, {"openpunctuation", GC(Ps)}, {"pe", GC(Pe)}, {"closepunctuation", GC(Pe)},
    {"pi", GC(Pi)}, {"initialpunctuation", GC(Pi)}, {"pf", GC(Pf)}, {"finalpunctuation", GC(Pf)},
    {"po", GC(Po)}, {"otherpunctuation", GC(Po)},
    {"s", GC(Sm) | GC(Sc) | GC(Sk) | GC(So)}, {"symbol", GC(Sm) | GC(Sc) | GC(Sk) | GC(So)},
    {"sm", GC(Sm)}, {"mathsymbol", GC(Sm)}, {"sc", GC(Sc)}, {"currencysymbol", GC(Sc)},
    {"sk", GC(Sk)}, {"modifiersymbol", GC(Sk)}, {"so", GC(So)}, {"othersymbol", GC(So)},
    {"z", GC(Zs) | GC(Zl) | GC(Zp)}, {"separator", GC(Zs) | GC(Zl) | GC(Zp)},
    {"zs", GC(Zs)}, {"spaceseparator", GC(Zs)}, {"zl", GC(Zl)}, {"lineseparator", GC(Zl)},
    {"zp", GC(Zp)}, {"paragraphseparator", GC(Zp)},
    {"c", GC(Cc) | GC(Cf) | GC(Cs) | GC(Co) | GC(Cn)}, {"other", GC(Cc) | GC(Cf) | GC(Cs) | GC(Co) | GC(Cn)},
    {"cc", GC(Cc)}, {"control", GC(Cc)}, {"cf", GC(Cf)}, {"format", GC(Cf)},
    {"cs", GC(Cs)}, {"surrogate", GC(Cs)}, {"co", GC(Co)}, {"privateuse", GC(Co)},
    {"cn", GC(Cn)}, {"unassigned", GC(Cn)},
};

static uint32_t gc_mask_of(const char *name, size_t n)
{
    char key[40];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch == ' ' || ch == '_' || ch == '-')
            continue;
        if (k + 1 >= sizeof key)
            return 0;
        key[k++] = (char)tolower((unsigned char)ch);
    }
    key[k] = 0;
    for (size_t i = 0; i < sizeof gc_props / sizeof *gc_props; i++)
        if (strcmp(gc_props[i].name, key) == 0)
            return gc_props[i].mask;
    return 0;
}

uint32_t lmx__uni_gc(uint32_t cp)
{
    size_t lo = 0, hi = lmx__uni_gc_runs_n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((lmx__uni_gc_runs[mid] >> 8) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return lmx__uni_gc_runs[lo] & 0xFF;
}

/* Appends the code point ranges of the categories in mask as bracket-expression items. */
static int emit_ranges(lmx_buf *o, uint32_t mask)
{
    char tmp[40];
    for (uint32_t i = 0; i < lmx__uni_gc_runs_n;) {
        if (!(mask >> (lmx__uni_gc_runs[i] & 0xFF) & 1)) {
            i++;
            continue;
        }
        uint32_t a = lmx__uni_gc_runs[i] >> 8;
        while (i < lmx__uni_gc_runs_n && (mask >> (lmx__uni_gc_runs[i] & 0xFF) & 1))
            i++;
        uint32_t b = i < lmx__uni_gc_runs_n ? (lmx__uni_gc_runs[i] >> 8) - 1 : 0x10FFFF;
        if (a >= 0xD800 && b <= 0xDFFF)
            continue; /* surrogates never occur in UTF-8 and Oniguruma refuses them */
        int len = a == b ? snprintf(tmp, sizeof tmp, "\\x{%X}", a)
                         : snprintf(tmp, sizeof tmp, "\\x{%X}-\\x{%X}", a, b);
        if (a < 0xD800 && b >= 0xD800 && b <= 0xDFFF)
            len = snprintf(tmp, sizeof tmp, "\\x{%X}-\\x{D7FF}", a);
        else if (a >= 0xD800 && a <= 0xDFFF)
            len = snprintf(tmp, sizeof tmp, "\\x{E000}-\\x{%X}", b);
        else if (a < 0xD800 && b > 0xDFFF)
            len = snprintf(tmp, sizeof tmp, "\\x{%X}-\\x{D7FF}\\x{E000}-\\x{%X}", a, b);
        if (lmx__buf_append(o, tmp, (size_t)len))
            return LMX_ENOMEM;
    }
    return LMX_OK;
}

/* Rewrites the general-category classes of pat[0..n) (see the file comment) into o. */
static int rewrite(const char *pat, size_t n, lmx_buf *o)
{
    int depth = 0;      /* bracket nesting */
    size_t cls_at = 0;  /* where the innermost bracket's items start (for a leading ']') */
    for (size_t i = 0; i < n;) {
        char ch = pat[i];
        if (ch == '\\' && i + 1 < n) {
            char e = pat[i + 1];
            uint32_t mask = 0;
            int neg = 0;
            size_t end = i + 2;
            if ((e == 'p' || e == 'P') && i + 2 < n && pat[i + 2] == '{') {
                const char *close = memchr(pat + i + 3, '}', n - i - 3);
                if (close) {
                    const char *nm = pat + i + 3;
                    neg = e == 'P';
                    if (*nm == '^') {
                        neg = !neg;
                        nm++;
                    }
                    mask = gc_mask_of(nm, (size_t)(close - nm));
                    end = (size_t)(close - pat) + 1;
                }
            } else if (e == 'd' || e == 'D') {
                mask = GC(Nd);
                neg = e == 'D';
            }
            /* \w is Oniguruma's Unicode 14 Word (Alphabetic, M, Nd, Pc) kept, plus
             * the Unicode 16 letters, marks and digits it lacks, and Join_Control (U+200C/D, in HF's
             * Word, not in Debian's): \w ∪ L ∪ M ∪ Nd ∪ Nl ∪ Pc ∪ {200C, 200D}. */
            int word = e == 'w' || e == 'W';
            if (word) {
                mask = GC(Lu) | GC(Ll) | GC(Lt) | GC(Lm) | GC(Lo) | GC(Mn) | GC(Mc) | GC(Me) | GC(Nd) | GC(Nl) |
                       GC(Pc);
                neg = e == 'W';
            }
            if (mask) {
                /* outside a bracket: [ranges] / [^ranges]; inside: the ranges themselves, or a
                 * nested [^ranges] (Oniguruma's nested classes) */
                int wrap = depth == 0 || neg || word;
                if ((wrap && lmx__buf_append(o, neg ? "[^" : "[", neg ? 2 : 1)) ||
                    (word && lmx__buf_append(o, "\\w\\x{200C}\\x{200D}", 18)) || emit_ranges(o, mask) ||
                    (wrap && lmx__buf_append(o, "]", 1)))
                    return LMX_ENOMEM;
                i = end;
                continue;
            }
            /* any other escape is copied whole (\x{..}, \u...., \] are not structure) */
            size_t l = 1 + lmx__utf8_len((uint8_t)e);
            if (i + l > n)
                l = n - i;
            if (lmx__buf_append(o, pat + i, l))
                return LMX_ENOMEM;
            i += l;
            continue;
        }
        if (depth && ch == '[' && i + 1 < n && pat[i + 1] == ':') {
            /* POSIX bracket [:alpha:] is copied as is */
            const char *close = NULL;
            for (size_t j = i + 2; j + 1 < n; j++)
                if (pat[j] == ':' && pat[j + 1] == ']') {
                    close = pat + j;
                    break;
                }
            if (close) {
                size_t l = (size_t)(close - pat) + 2 - i;
                if (lmx__buf_append(o, pat + i, l))
                    return LMX_ENOMEM;
                i += l;
                continue;
            }
        }
        if (ch == '[') {
            depth++;
            if (lmx__buf_append(o, "[", 1))
                return LMX_ENOMEM;
            i++;
            if (i < n && pat[i] == '^') {
                if (lmx__buf_append(o, "^", 1))
                    return LMX_ENOMEM;
                i++;
            }
            cls_at = i;
            continue;
        }
        if (ch == ']' && depth && i != cls_at)
            depth--;
        if (lmx__buf_append(o, pat + i, 1))
            return LMX_ENOMEM;
        i++;
    }
    return LMX_OK;
}

/* ---- compile and search --------------------------------------------------------------------- */

int lmx__tok_regex_compile(const char *pat, size_t n, lmx_tok_regex **out, char *msg, size_t cap)
{
    *out = NULL;
    pthread_once(&onig_once, regex_init);
    lmx_buf b = {0};
    if (rewrite(pat, n, &b)) {
        lmx__buf_free(&b);
        snprintf(msg, cap, "out of memory");
        return LMX_ENOMEM;
    }
    lmx_tok_regex *r = calloc(1, sizeof *r);
    if (!r) {
        lmx__buf_free(&b);
        snprintf(msg, cap, "out of memory");
        return LMX_ENOMEM;
    }
    const UChar *p = b.data ? b.data : (const UChar *)"";
    OnigErrorInfo einfo;
    int rc = onig_new(&r->re, p, p + b.len, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                      ONIG_SYNTAX_DEFAULT, &einfo);
    lmx__buf_free(&b);
    if (rc != ONIG_NORMAL) {
        UChar s[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(s, rc, &einfo);
        snprintf(msg, cap, "Oniguruma: %s", (const char *)s);
        free(r);
        return rc == ONIGERR_MEMORY ? LMX_ENOMEM : LMX_EFORMAT;
    }
    literal_repeat(pat, n, r);
    *out = r;
    return LMX_OK;
}

void lmx__tok_regex_free(lmx_tok_regex *r)
{
    if (!r)
        return;
    onig_free(r->re);
    free(r);
}

void *lmx__tok_regex_region_new(void) { return onig_region_new(); }
void lmx__tok_regex_region_free(void *region)
{
    if (region)
        onig_region_free(region, 1);
}

/* The onig crate's FindMatches::next: search from last_end; an empty match right where the
 * previous match ended is skipped by advancing one char. */
int lmx__tok_regex_next(const lmx_tok_regex *r, void *region, const uint8_t *s, size_t n,
                        lmx_tok_refind *st, size_t *ms, size_t *me)
{
    OnigRegion *rg = region;
    if (r->rep)
        return rep_next(r, s, n, st, ms, me);
    for (;;) {
        if (st->last_end > n)
            return 0;
        onig_region_clear(rg);
        int pos = onig_search(r->re, s, s + n, s + st->last_end, s + n, rg, ONIG_OPTION_NONE);
        if (pos == ONIG_MISMATCH)
            return 0;
        if (pos < 0)
            return LMX_EINTERNAL; /* e.g. the retry limit of a catastrophic pattern */
        size_t a = (size_t)rg->beg[0], b = (size_t)rg->end[0];
        if (a == b && st->has_last && st->last_match_end == b) {
            st->last_end += st->last_end < n ? (size_t)lmx__utf8_len(s[st->last_end]) : 1;
            continue;
        }
        st->last_end = b;
        st->last_match_end = b;
        st->has_last = 1;
        *ms = a;
        *me = b;
        return 1;
    }
}
