/* Tokenizer unit tests build tokenizer.json text with J(), printf-style, into jb (one per test
 * program; each program resets and frees it). */
#ifndef LMX_TEST_JSON_H
#define LMX_TEST_JSON_H

#include "lmx_test.h"
#include "lmx_util.h"

#include <stdarg.h>
#include <stdio.h>

static lmx_buf jb; /* JSON being built */

static void J(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[8192];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    CHECK(n >= 0 && (size_t)n < sizeof tmp);
    CHECK(lmx__buf_append(&jb, tmp, (size_t)n) == LMX_OK);
}

#endif
