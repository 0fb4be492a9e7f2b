/* The daemon's log: one line per event on stderr (journald adds the time), prefixed "longmixd: ".
 * Its own file so that every server/lmxd_*.c can log without depending on lmxd_serve.c. */
#include "lmxd_internal.h"

#include <stdarg.h>
#include <stdio.h>

void lmxd_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("longmixd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
