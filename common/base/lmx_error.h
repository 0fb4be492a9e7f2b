/* Internal helpers for the error convention of proto/longmix_errors.h.
 * Convention (the one rule for all of longmix): return LMX_OK or a negative LMX_E* code; fill an
 * optional lmx_error with that code and a message that names the offending file/line/field/
 * parameter. Callers that add context use lmx__err_prefix() ("index DIR: " + inner message). */
#ifndef LMX_ERROR_H
#define LMX_ERROR_H

#include <stdarg.h>
#include "longmix_errors.h"

#if defined(__GNUC__) || defined(__clang__)
#define LMX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LMX_PRINTF(f, a)
#endif

/* Sets err (if not NULL) to code and the formatted message; returns code. */
int lmx__err(lmx_error *err, int code, const char *fmt, ...) LMX_PRINTF(3, 4);
int lmx__verr(lmx_error *err, int code, const char *fmt, va_list ap);
/* Like lmx__err with LMX_EIO and ": strerror(errno)" appended. */
int lmx__err_errno(lmx_error *err, const char *fmt, ...) LMX_PRINTF(2, 3);
/* Prepends formatted context to err->message, keeps err->code; returns err->code (or
 * LMX_EINTERNAL when err is NULL). */
int lmx__err_prefix(lmx_error *err, const char *fmt, ...) LMX_PRINTF(2, 3);
/* Resets err to LMX_OK and "". */
void lmx__err_clear(lmx_error *err);

#endif
