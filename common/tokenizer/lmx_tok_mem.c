/* Memory helpers shared by the loader and the encoder: growable scratch arrays and the big
 * randomly accessed tables (declared in lmx_tok_internal.h). A leaf: calls nothing in the folder. */
/* MADV_HUGEPAGE (Linux) is outside POSIX: ask libc for its extensions in this file. */
#define _DEFAULT_SOURCE 1
#include "lmx_tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int lmx__tok_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return LMX_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np)
        return LMX_ENOMEM;
    *p = np;
    *cap = nc;
    return LMX_OK;
}

void *lmx__tok_table_alloc(size_t bytes, int zero)
{
    const size_t huge = (size_t)2 << 20;
    if (bytes < huge)
        return zero ? calloc(1, bytes ? bytes : 1) : malloc(bytes ? bytes : 1);
    if (bytes > SIZE_MAX - huge)
        return NULL;
    size_t rounded = (bytes + huge - 1) & ~(huge - 1);
    void *p = aligned_alloc(huge, rounded);
    if (!p)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, rounded, MADV_HUGEPAGE); /* a hint: without it, plain pages */
#endif
    if (zero)
        memset(p, 0, rounded);
    return p;
}
