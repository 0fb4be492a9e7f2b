#include "lmx_error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *lmx_strerror(int code)
{
    switch (code) {
    case LMX_OK: return "success";
    case LMX_EINVAL: return "invalid argument";
    case LMX_ENOMEM: return "out of memory";
    case LMX_EIO: return "I/O error";
    case LMX_EFORMAT: return "malformed data";
    case LMX_ECHECKSUM: return "checksum mismatch";
    case LMX_ENOTFOUND: return "not found";
    case LMX_ERANGE: return "out of range";
    case LMX_EUNSUPPORTED: return "unsupported";
    case LMX_ENETWORK: return "network error";
    case LMX_ETIMEOUT: return "timed out";
    case LMX_EHTTP: return "server error";
    case LMX_EAUTH: return "authentication failed";
    case LMX_EINTERNAL: return "internal error";
    default: return "unknown error";
    }
}

int lmx__verr(lmx_error *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
    }
    return code;
}

int lmx__err(lmx_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lmx__verr(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int lmx__err_errno(lmx_error *err, const char *fmt, ...)
{
    int saved = errno;
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        lmx__verr(err, LMX_EIO, fmt, ap);
        va_end(ap);
        size_t n = strlen(err->message);
        snprintf(err->message + n, sizeof err->message - n, ": %s", strerror(saved));
    }
    return LMX_EIO;
}

int lmx__err_prefix(lmx_error *err, const char *fmt, ...)
{
    if (!err)
        return LMX_EINTERNAL;
    char head[LMX_ERROR_MESSAGE_MAX], old[LMX_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    size_t h = strlen(head), o = strnlen(old, sizeof old - 1);
    if (h > sizeof err->message - 1)
        h = sizeof err->message - 1;
    if (o > sizeof err->message - 1 - h)
        o = sizeof err->message - 1 - h;
    memcpy(err->message, head, h);
    memcpy(err->message + h, old, o);
    err->message[h + o] = '\0';
    return err->code;
}

void lmx__err_clear(lmx_error *err)
{
    if (err) {
        err->code = LMX_OK;
        err->message[0] = '\0';
    }
}
