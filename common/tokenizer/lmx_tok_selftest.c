/* Test hook: a fast scanner against Oniguruma running the pattern it implements, on one text
 * (tests/fuzz/fuzz_pretok.c, tests/unit/test_tokenizer.c). Calls the pre-tokenizer's scanners
 * and the regex path; nothing calls it. */
#include "lmx_tok_internal.h"

#include <pthread.h>
#include <stdlib.h>

static const struct { int re, digits; const char *pat; } known[LMX_TOK_N_FAST] = {
    {LMX_RE_LLAMA3, 3, lmx__tok_re_llama3},
    {LMX_RE_LLAMA3, 1, lmx__tok_re_qwen2},
    {LMX_RE_GPT2, 0, lmx__tok_re_gpt2},
};
static lmx_tok_regex *compiled[LMX_TOK_N_FAST];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void compile_all(void)
{
    char msg[200];
    for (int i = 0; i < LMX_TOK_N_FAST; i++)
        if (lmx__tok_regex_compile(known[i].pat, strlen(known[i].pat), &compiled[i], msg, sizeof msg))
            compiled[i] = NULL;
}

int lmx__tokenizer_pretok_diff(int which, const uint8_t *s, size_t n, size_t *at)
{
    *at = 0;
    if (which < 0 || which >= LMX_TOK_N_FAST || lmx__utf8_valid_prefix(s, n) != n)
        return LMX_EINVAL;
    pthread_once(&once, compile_all);
    if (!compiled[which])
        return LMX_EINTERNAL;
    void *region = lmx__tok_regex_region_new();
    if (!region)
        return LMX_ENOMEM;
    lmx_tok_refind st = {0};
    size_t i = 0, ms, me;
    int rc = 0;
    while (i < n) {
        size_t want = lmx__tok_scan_piece(known[which].re, known[which].digits, s, i, n);
        int r = lmx__tok_regex_next(compiled[which], region, s, n, &st, &ms, &me);
        if (r < 0) {
            rc = r;
            break;
        }
        /* the scanners match at every position: Oniguruma's next match must be that piece */
        if (r == 0 || ms != i || me != want) {
            *at = i;
            rc = 1;
            break;
        }
        i = want;
    }
    lmx__tok_regex_region_free(region);
    return rc;
}
