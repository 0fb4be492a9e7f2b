/* The vocab/merges lists (lmx_tok_lists) both the fast scanner and the jansson path fill, and the
 * BPE loader reads. A leaf: calls nothing else in the folder. */
#include "lmx_tok_internal.h"

#include <stdlib.h>
#include <string.h>

void lmx__toklists_free(lmx_tok_lists *L)
{
    if (!L->arena_borrowed)
        lmx__buf_free(&L->arena);
    free(L->v);
    free(L->m);
    memset(L, 0, sizeof *L);
}

int lmx__toklists_vocab_add(lmx_tok_lists *L, uint32_t off, size_t len, uint32_t id)
{
    if (L->nv == L->vcap) {
        size_t nc = L->vcap ? L->vcap * 2 : 1024;
        uint32_t *nv = realloc(L->v, nc * 3 * sizeof *nv);
        if (!nv)
            return LMX_ENOMEM;
        L->v = nv;
        L->vcap = nc;
    }
    L->v[3 * L->nv] = off;
    L->v[3 * L->nv + 1] = (uint32_t)len;
    L->v[3 * L->nv + 2] = id;
    L->nv++;
    return LMX_OK;
}

int lmx__toklists_merge_add(lmx_tok_lists *L, uint32_t aoff, size_t al, uint32_t boff, size_t bl)
{
    if (L->nm == L->mcap) {
        size_t nc = L->mcap ? L->mcap * 2 : 1024;
        uint32_t *nm = realloc(L->m, nc * 4 * sizeof *nm);
        if (!nm)
            return LMX_ENOMEM;
        L->m = nm;
        L->mcap = nc;
    }
    uint32_t *e = L->m + 4 * L->nm++;
    e[0] = aoff;
    e[1] = (uint32_t)al;
    e[2] = boff;
    e[3] = (uint32_t)bl;
    return LMX_OK;
}
