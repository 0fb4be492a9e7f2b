/* Test hook: a fast scanner against Oniguruma running the pattern it implements, on one text
 * (tests/fuzz/fuzz_pretok.c, tests/unit/test_tokenizer.c); the last `which` is DeepSeek-V3's
 * chain of three Splits scanned in one pass against the three patterns applied one after the
 * other. Calls the pre-tokenizer's scanners and the regex path; nothing calls it. */
#include "lmx_tok_internal.h"

#include <pthread.h>
#include <stdlib.h>

#define N_PATTERNS (LMX_TOK_N_FAST - 1)
#define DS3_WHICH N_PATTERNS
static const struct { int re, digits; const char *pat; } known[N_PATTERNS] = {
    {LMX_RE_LLAMA3, 3, lmx__tok_re_llama3},
    {LMX_RE_LLAMA3, 1, lmx__tok_re_qwen2},
    {LMX_RE_GPT2, 0, lmx__tok_re_gpt2},
    {LMX_RE_O200K, 0, lmx__tok_re_o200k},
    {LMX_RE_DEEPSEEK, 0, lmx__tok_re_deepseek},
    {LMX_RE_DIGITS3, 0, lmx__tok_re_digits3},
    {LMX_RE_DSCJK, 0, lmx__tok_re_dscjk},
};
static lmx_tok_regex *compiled[N_PATTERNS];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void compile_all(void)
{
    char msg[200];
    for (int i = 0; i < N_PATTERNS; i++)
        if (lmx__tok_regex_compile(known[i].pat, strlen(known[i].pat), &compiled[i], msg, sizeof msg))
            compiled[i] = NULL;
}

/* The pieces of the Isolated Splits chain[level..2] on s[off, off + len), as HF applies each
 * Split to every piece of the one before: their ends appended to *ends. */
static int chain_ends(void *region, const int chain[3], int level, const uint8_t *s, size_t off,
                      size_t len, size_t **ends, size_t *ne, size_t *cap)
{
    if (level == 3) {
        if (lmx__tok_grow((void **)ends, cap, *ne + 1, sizeof **ends))
            return LMX_ENOMEM;
        (*ends)[(*ne)++] = off + len;
        return 0;
    }
    lmx_tok_refind st = {0};
    size_t prev = 0, ms, me;
    int r;
    while ((r = lmx__tok_regex_next(compiled[chain[level]], region, s + off, len, &st, &ms, &me)) == 1) {
        if (ms > prev && (r = chain_ends(region, chain, level + 1, s, off + prev, ms - prev, ends, ne, cap)))
            return r;
        if (me > ms && (r = chain_ends(region, chain, level + 1, s, off + ms, me - ms, ends, ne, cap)))
            return r;
        prev = me;
    }
    if (r < 0)
        return r;
    return prev < len ? chain_ends(region, chain, level + 1, s, off + prev, len - prev, ends, ne, cap) : 0;
}

static int ds3_diff(void *region, const uint8_t *s, size_t n, size_t *at)
{
    static const int chain[3] = {5, 6, 4}; /* digits3, dscjk, deepseek in known[] */
    size_t *ends = NULL, ne = 0, cap = 0, i = 0, seg = 0;
    int rc = chain_ends(region, chain, 0, s, 0, n, &ends, &ne, &cap);
    for (size_t k = 0; !rc && k < ne; k++) {
        if (lmx__tok_scan_ds3(s, i, n, &seg) != ends[k]) {
            *at = i;
            rc = 1;
        }
        i = ends[k];
    }
    free(ends);
    return rc;
}

int lmx__tokenizer_pretok_diff(int which, const uint8_t *s, size_t n, size_t *at)
{
    *at = 0;
    if (which < 0 || which >= LMX_TOK_N_FAST || lmx__utf8_valid_prefix(s, n) != n)
        return LMX_EINVAL;
    pthread_once(&once, compile_all);
    if (which == DS3_WHICH ? !compiled[4] || !compiled[5] || !compiled[6] : !compiled[which])
        return LMX_EINTERNAL;
    void *region = lmx__tok_regex_region_new();
    if (!region)
        return LMX_ENOMEM;
    if (which == DS3_WHICH) {
        int rc = ds3_diff(region, s, n, at);
        lmx__tok_regex_region_free(region);
        return rc;
    }
    lmx_tok_refind st = {0};
    size_t i = 0, ms, me;
    int rc = 0;
    while (i < n) {
        int r = lmx__tok_regex_next(compiled[which], region, s, n, &st, &ms, &me);
        if (r < 0) {
            rc = r;
            break;
        }
        if (r == 0)
            ms = me = n;
        /* a gap before Oniguruma's next match is one scanner piece, the match the next one */
        if (ms > i && lmx__tok_scan_piece(known[which].re, known[which].digits, s, i, n) != ms) {
            *at = i;
            rc = 1;
            break;
        }
        i = ms;
        if (i < n && lmx__tok_scan_piece(known[which].re, known[which].digits, s, i, n) != me) {
            *at = i;
            rc = 1;
            break;
        }
        i = me;
    }
    lmx__tok_regex_region_free(region);
    return rc;
}
