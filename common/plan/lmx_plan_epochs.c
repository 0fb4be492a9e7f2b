/* Epoch indexes in files (issue #15): the checkpoints of a domain's epoch (lmx_plan_stream.c)
 * cost a walk of every item of the domain; a plan with a mapped item table keeps the ones it
 * computes beside the table, so a restarted daemon reads them instead of walking again.
 * DIR/<plan id>.epoch.<domain>.<slot>, slot = epoch % EPOCH_SLOTS (a bounded set per domain: the
 * latest epochs used, which is where a restarted run resumes). Written atomically (temp, fsync,
 * rename); read whole and checked (BLAKE2b, plan id, domain, epoch, sizes): one that is wrong is
 * computed again and rewritten. Removed with their table by lmx__plan_table_gc.
 *
 * A loaded or written epoch index is used in place through a read-only mapping of its file (page
 * cache, not the daemon's anonymous memory: flat memory at any number of documents), on
 * little-endian hosts; elsewhere, and for plans without table files, on the heap.
 *
 * Layout (little endian): magic "LMXEPOCH", u32 version, u32 domain, plan id (16), u64 epoch,
 * cum (stream tokens before the epoch), total (of the epoch), items, checkpoints; then per
 * checkpoint li, lt, cum (u64 each); then BLAKE2b-256 of everything before it. */
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define MAPPABLE 1 /* the file's body is the ckpt array in host order */
#else
#define MAPPABLE 0
#endif

void lmx__plan_epoch_release(epoch_index *ei)
{
    if (ei->file && ei->file_mapped)
        munmap(ei->file, ei->file_len);
    else if (ei->file)
        free(ei->file);
    else
        free(ei->ck);
    ei->file = NULL;
    ei->file_len = 0;
    ei->file_mapped = 0;
    ei->ck = NULL;
}

/* The whole file of fd (size len): mapped read-only where the body can be used in place, else
 * read into the heap; NULL when neither works. */
static uint8_t *file_bytes(int fd, size_t len, int *mapped)
{
    *mapped = 0;
    if (MAPPABLE) {
        void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            *mapped = 1;
            return m;
        }
    }
    uint8_t *b = malloc(len);
    if (b && pread(fd, b, len, 0) != (ssize_t)len) {
        free(b);
        b = NULL;
    }
    return b;
}

/* ei's checkpoints point into the file's bytes (mapped, or on the heap in host order). */
int lmx__plan_epoch_load(const lmx_plan *p, uint32_t dom, unsigned slot, uint64_t want, uint64_t nck, epoch_index *ei)
{
    char path[4400];
    uint8_t h[32];
    if (!epoch_path(p, dom, slot, path, sizeof path))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    const size_t body = (size_t)nck * sizeof(ckpt), len = HEAD + body + 32;
    struct stat st;
    int mapped = 0, sized = fstat(fd, &st) == 0 && (uint64_t)st.st_size == len;
    uint8_t *b = sized ? file_bytes(fd, len, &mapped) : NULL;
    close(fd);
    if (sized && !b)
        return 0; /* no memory: not the file's fault */
    const uint8_t *f = b ? b + 16 + LMX_PLAN_ID_BYTES : NULL;
    int ok = b && memcmp(b, MAGIC, 8) == 0 && lmx__get32(b + 8) == VERSION && lmx__get32(b + 12) == dom &&
             memcmp(b + 16, p->id, LMX_PLAN_ID_BYTES) == 0 && lmx__get64(f) % EPOCH_SLOTS == slot &&
             lmx__get64(f + 24) == p->doms[dom].n && lmx__get64(f + 32) == nck;
    if (ok) {
        crypto_generichash(h, sizeof h, b, HEAD + body, NULL, 0);
        ok = sodium_memcmp(h, b + HEAD + body, 32) == 0;
    }
    if (!ok || (want != UINT64_MAX && lmx__get64(f) != want)) {
        if (!ok) /* wrong: computed again when needed (and written to its slot) */
            unlink(path);
        /* else valid, but rewritten with another epoch since it was peeked at */
        if (mapped)
            munmap(b, len);
        else
            free(b);
        return 0;
    }
    lmx__plan_epoch_release(ei);
    ei->epoch = lmx__get64(f);
    ei->cum = lmx__get64(f + 8);
    ei->total = lmx__get64(f + 16);
    ei->file = b;
    ei->file_len = len;
    ei->file_mapped = mapped;
    ei->ck = (ckpt *)(void *)(b + HEAD);
    if (!mapped) { /* little endian on disk: in place to host order */
        uint8_t *c = b + HEAD;
        for (uint64_t i = 0; i < 3 * nck; i++, c += 8) {
            uint64_t v = lmx__get64(c);
            memcpy(c, &v, 8);
        }
    }
    return 1;
}

void lmx__plan_epoch_save(const lmx_plan *p, uint32_t dom, uint64_t nck, epoch_index *ei)
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
    int written = lmx__write_file_atomic(path, b, len, NULL) == LMX_OK;
    free(b);
    /* the heap copy traded for the file's pages (page cache, not anonymous memory) when the file
     * is read back as this epoch (another thread may have put another one there meanwhile) */
    epoch_index m = {0};
    if (written && MAPPABLE && !ei->file &&
        lmx__plan_epoch_load(p, dom, (unsigned)(ei->epoch % EPOCH_SLOTS), ei->epoch, nck, &m) && m.file_mapped &&
        m.cum == ei->cum && m.total == ei->total) {
        free(ei->ck);
        ei->ck = m.ck;
        ei->file = m.file;
        ei->file_len = m.file_len;
        ei->file_mapped = 1;
    } else {
        lmx__plan_epoch_release(&m);
    }
}
