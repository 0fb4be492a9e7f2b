/* Epoch indexes in files (issue #15): the checkpoints of a domain's epoch (lmx_plan_stream.c)
 * cost a walk of every item of the domain; a plan with a mapped item table keeps the ones it
 * computes beside the table, so a restarted daemon reads them instead of walking again.
 * DIR/<plan id>.epoch.<domain>.<slot>, slot = epoch % EPOCH_SLOTS (a bounded set per domain: the
 * latest epochs used, which is where a restarted run resumes). Written atomically (temp, fsync,
 * rename); read whole and checked (BLAKE2b, plan id, domain, epoch, sizes): one that is wrong is
 * computed again and rewritten. Removed with their table by lmx__plan_table_gc.
 *
 * Layout (little endian): magic "LMXEPOCH", u32 version, u32 domain, plan id (16), u64 epoch,
 * cum (stream tokens before the epoch), total (of the epoch), items, checkpoints; then per
 * checkpoint li, lt, cum (u64 each); then BLAKE2b-256 of everything before it. */
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmx_plan_internal.h"
#include "lmx_util.h"

#define MAGIC "LMXEPOCH"
#define VERSION 1
uint64_t lmx__plan_epoch_file_min = (uint64_t)1 << 16;

#define HEAD (8 + 4 + 4 + LMX_PLAN_ID_BYTES + 5 * 8)

_Static_assert(sizeof(ckpt) == 24, "a checkpoint is 3 u64, as on disk");

static int epoch_path(const lmx_plan *p, uint32_t dom, unsigned slot, char *out, size_t cap)
{
    const char *dir = p->table ? lmx__index_table_dir(p->ix) : NULL;
    if (!dir || p->doms[dom].n < lmx__plan_epoch_file_min)
        return 0;
    snprintf(out, cap, "%s/%s.epoch.%u.%u", dir, p->id_hex, dom, slot);
    return 1;
}

int lmx__plan_epoch_peek(const lmx_plan *p, uint32_t dom, unsigned slot, uint64_t *epoch, uint64_t *cum,
                         uint64_t *total)
{
    char path[4400];
    uint8_t b[HEAD];
    if (!epoch_path(p, dom, slot, path, sizeof path))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t got = pread(fd, b, sizeof b, 0);
    close(fd);
    const uint8_t *f = b + 16 + LMX_PLAN_ID_BYTES;
    if (got != (ssize_t)sizeof b || memcmp(b, MAGIC, 8) != 0 || lmx__get32(b + 8) != VERSION ||
        lmx__get32(b + 12) != dom || memcmp(b + 16, p->id, LMX_PLAN_ID_BYTES) != 0 ||
        lmx__get64(f) % EPOCH_SLOTS != slot || lmx__get64(f + 24) != p->doms[dom].n)
        return 0;
    *epoch = lmx__get64(f);
    *cum = lmx__get64(f + 8);
    *total = lmx__get64(f + 16);
    return 1;
}

/* Read straight into ei->ck (no copy of the file on the heap: fewer fresh pages to fault in). */
int lmx__plan_epoch_load(const lmx_plan *p, uint32_t dom, unsigned slot, uint64_t want, uint64_t nck, epoch_index *ei)
{
    char path[4400];
    uint8_t b[HEAD], h[32], sum[32];
    if (!epoch_path(p, dom, slot, path, sizeof path))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    const size_t body = (size_t)nck * sizeof(ckpt);
    struct stat st;
    const uint8_t *f = b + 16 + LMX_PLAN_ID_BYTES;
    int ok = fstat(fd, &st) == 0 && (uint64_t)st.st_size == HEAD + body + 32 &&
             pread(fd, b, HEAD, 0) == HEAD && pread(fd, ei->ck, body, HEAD) == (ssize_t)body &&
             pread(fd, sum, 32, (off_t)(HEAD + body)) == 32;
    close(fd);
    ok = ok && memcmp(b, MAGIC, 8) == 0 && lmx__get32(b + 8) == VERSION && lmx__get32(b + 12) == dom &&
         memcmp(b + 16, p->id, LMX_PLAN_ID_BYTES) == 0 && lmx__get64(f) % EPOCH_SLOTS == slot &&
         lmx__get64(f + 24) == p->doms[dom].n && lmx__get64(f + 32) == nck;
    if (ok) {
        crypto_generichash_state hs;
        crypto_generichash_init(&hs, NULL, 0, sizeof h);
        crypto_generichash_update(&hs, b, HEAD);
        crypto_generichash_update(&hs, (const uint8_t *)ei->ck, body);
        crypto_generichash_final(&hs, h, sizeof h);
        ok = sodium_memcmp(h, sum, 32) == 0;
    }
    if (!ok) { /* wrong: computed again when needed (and written to its slot) */
        unlink(path);
        return 0;
    }
    if (want != UINT64_MAX && lmx__get64(f) != want)
        return 0; /* valid, but rewritten with another epoch since it was peeked at */
    ei->epoch = lmx__get64(f);
    ei->cum = lmx__get64(f + 8);
    ei->total = lmx__get64(f + 16);
    uint8_t *c = (uint8_t *)ei->ck; /* little endian on disk: in place to host order */
    for (uint64_t i = 0; i < 3 * nck; i++, c += 8) {
        uint64_t v = lmx__get64(c);
        memcpy(c, &v, 8);
    }
    return 1;
}

void lmx__plan_epoch_save(const lmx_plan *p, uint32_t dom, uint64_t nck, const epoch_index *ei)
{
    char path[4400];
    if (!epoch_path(p, dom, (unsigned)(ei->epoch % EPOCH_SLOTS), path, sizeof path))
        return;
    size_t len = HEAD + nck * 24 + 32;
    uint8_t *b = malloc(len);
    if (!b)
        return; /* best effort: computed again next start */
    memcpy(b, MAGIC, 8);
    lmx__put32(b + 8, VERSION);
    lmx__put32(b + 12, dom);
    memcpy(b + 16, p->id, LMX_PLAN_ID_BYTES);
    uint8_t *f = b + 16 + LMX_PLAN_ID_BYTES;
    lmx__put64(f, ei->epoch);
    lmx__put64(f + 8, ei->cum);
    lmx__put64(f + 16, ei->total);
    lmx__put64(f + 24, p->doms[dom].n);
    lmx__put64(f + 32, nck);
    uint8_t *c = b + HEAD;
    for (uint64_t i = 0; i < nck; i++, c += 24) {
        lmx__put64(c, ei->ck[i].li);
        lmx__put64(c + 8, ei->ck[i].lt);
        lmx__put64(c + 16, ei->ck[i].cum);
    }
    crypto_generichash(b + len - 32, 32, b, len - 32, NULL, 0);
    lmx__write_file_atomic(path, b, len, NULL);
    free(b);
}
