/* Plan item tables in files (issue #15): a plan's per-domain items, built once, written
 * atomically with a BLAKE2b checksum to DIR/<plan id>.items and mmap'd read-only, so they live in
 * the page cache (shared, reclaimable) instead of the heap, and a restart maps them instead of
 * scanning every document again. The plan id covers the index identity, the spec and the
 * algorithm version, so a table can never be used for another plan.
 *
 * Layout (host byte order, checked by a byte-order mark; `item` is 16 bytes):
 *   0   magic "LMXITEMS"   8   u32 version   12  u32 0x01020304   16  u32 n_doms   20  u32 sizeof(item)
 *   24  plan id (16)       40  u64 items     48  u64 file size    56  BLAKE2b-256 of bytes [HDR, size)
 *   HDR = 128: per domain 8 u64 (n, n_long, cls_long_slen, long_slen, short_slen, long_tok,
 *   short_tok, offset of its items), then the items (each domain's at a 16-byte aligned offset).
 * DIR/<plan id>.items.ok holds the table file's identity (size, inode, mtime, ctime) after its
 * checksum was checked once: with it, a start maps the table without reading it. Its mtime is
 * the table's last use (touched by every start that maps it): lmx__plan_table_gc's clock.
 * While mapped, a table file is held with flock(LOCK_SH), so that no daemon's clean-up removes
 * a table another daemon (same index, other config) is serving from. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lmx_plan_internal.h"
#include "lmx_util.h"

#define HDR 128
#define MAGIC "LMXITEMS"
#define VERSION 1
#define DOM_FIELDS 8

_Static_assert(sizeof(item) == 16, "item is 16 bytes on disk");

static void paths(const lmx_plan *p, const char *dir, char *tab, char *ok, size_t cap)
{
    snprintf(tab, cap, "%s/%s.items", dir, p->id_hex);
    snprintf(ok, cap, "%s/%s.items.ok", dir, p->id_hex);
}

static void key_text(const struct stat *st, char *out, size_t cap)
{
    snprintf(out, cap, "%llu %llu %llu %lld.%09ld %lld.%09ld\n", (unsigned long long)st->st_size,
             (unsigned long long)st->st_dev, (unsigned long long)st->st_ino, (long long)st->st_mtim.tv_sec,
             st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

static void hash_body(const uint8_t *base, size_t size, uint8_t out[32])
{
    crypto_generichash(out, 32, base + HDR, size - HDR, NULL, 0);
}

/* Points p's domains into a mapped table after checking its header and domain table against
 * the plan; LMX_OK or LMX_EFORMAT (then the caller rebuilds). */
static int bind_table(lmx_plan *p, uint8_t *base, size_t size, uint32_t nd)
{
    if (size < HDR || memcmp(base, MAGIC, 8) != 0 || lmx__get32(base + 8) != VERSION)
        return LMX_EFORMAT;
    uint32_t bom;
    memcpy(&bom, base + 12, 4);
    if (bom != 0x01020304u || lmx__get32(base + 16) != nd || lmx__get32(base + 20) != sizeof(item) ||
        memcmp(base + 24, p->id, LMX_PLAN_ID_BYTES) != 0 || lmx__get64(base + 48) != size ||
        (uint64_t)nd * DOM_FIELDS * 8 > size - HDR)
        return LMX_EFORMAT;
    uint64_t total = 0;
    for (uint32_t d = 0; d < nd; d++) {
        const uint8_t *f = base + HDR + (size_t)d * DOM_FIELDS * 8;
        pdom *pd = &p->doms[d];
        uint64_t n = lmx__get64(f), off = lmx__get64(f + 56);
        if (off % 16 || off > size || n > (size - off) / sizeof(item) || lmx__get64(f + 8) > n)
            return LMX_EFORMAT;
        pd->ixdom = d;
        pd->n = n;
        pd->n_long = lmx__get64(f + 8);
        pd->cls_long_slen = lmx__get64(f + 16);
        pd->long_slen = lmx__get64(f + 24);
        pd->short_slen = lmx__get64(f + 32);
        pd->long_tok = lmx__get64(f + 40);
        pd->short_tok = lmx__get64(f + 48);
        pd->items = n ? (item *)(base + off) : NULL;
        total += n;
    }
    return total == lmx__get64(base + 40) ? LMX_OK : LMX_EFORMAT;
}

int lmx__plan_table_load(lmx_plan *p, const char *dir, uint32_t nd)
{
    char tab[4200], ok[4200];
    paths(p, dir, tab, ok, sizeof tab);
    int fd = open(tab, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) != 0 || st.st_size < HDR) {
        close(fd);
        return 0;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *base = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED || flock(fd, LOCK_SH) != 0) { /* shared: a gc elsewhere is excluded */
        if (base != MAP_FAILED)
            munmap(base, size);
        close(fd);
        return 0;
    }
    char want[160], *have = NULL;
    key_text(&st, want, sizeof want);
    int trusted = lmx__read_file(ok, 4096, &have, NULL, NULL) == LMX_OK && strcmp(have, want) == 0;
    free(have);
    if (!trusted) { /* first use of this file: read it whole once */
        uint8_t h[32];
        hash_body(base, size, h);
        if (size < 88 || sodium_memcmp(h, base + 56, 32) != 0) {
            munmap(base, size);
            close(fd);
            return 0;
        }
        lmx__write_file_atomic(ok, want, strlen(want), NULL); /* best effort: else hashed again next time */
    } else {
        utimensat(AT_FDCWD, ok, NULL, 0); /* last use, for lmx__plan_table_gc */
    }
    if (bind_table(p, base, size, nd) != LMX_OK) {
        munmap(base, size);
        close(fd);
        for (uint32_t d = 0; d < nd; d++) /* back to what bind_index left: the caller builds */
            memset(&p->doms[d], 0, sizeof p->doms[d]);
        return 0;
    }
    posix_madvise(base, size, POSIX_MADV_RANDOM);
    p->table = base;
    p->table_size = size;
    p->table_lock = fd + 1;
    return 1;
}

/* Removes temporary tables of builds whose process is gone (a daemon killed mid-build). */
static void sweep_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".tmp.");
        char *end;
        long pid = t ? strtol(t + 5, &end, 10) : 0;
        if (pid > 0 && !*end && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

int lmx__plan_table_create(lmx_plan *p, const char *dir, uint32_t nd, const uint64_t *count, lmx_error *err)
{
    uint64_t off = (HDR + (uint64_t)nd * DOM_FIELDS * 8 + 15) / 16 * 16, total = 0;
    for (uint32_t d = 0; d < nd; d++) {
        total += count[d];
        off += count[d] * sizeof(item);
    }
    if (lmx__mkdirs(dir, err) != LMX_OK)
        return LMX_EIO;
    sweep_stale(dir);
    char tmp[4300];
    static atomic_uint seq; /* two plans of one spec may be built at once (runtime plans) */
    snprintf(tmp, sizeof tmp, "%s/%s.items.%u.tmp.%ld", dir, p->id_hex, atomic_fetch_add(&seq, 1),
             (long)getpid());
    if (!(p->table_tmp = strdup(tmp)))
        return lmx__err(err, LMX_ENOMEM, "plan %s: out of memory", p->name);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return lmx__err_errno(err, "plan %s: create %s", p->name, tmp);
    if (ftruncate(fd, (off_t)off) != 0) {
        lmx__err_errno(err, "plan %s: size %s to %llu bytes", p->name, tmp, (unsigned long long)off);
        close(fd);
        unlink(tmp);
        return LMX_EIO;
    }
    uint8_t *base = mmap(NULL, (size_t)off, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED) {
        unlink(tmp);
        return lmx__err_errno(err, "plan %s: map %s", p->name, tmp);
    }
    uint64_t at = (HDR + (uint64_t)nd * DOM_FIELDS * 8 + 15) / 16 * 16;
    for (uint32_t d = 0; d < nd; d++) {
        lmx__put64(base + HDR + (size_t)d * DOM_FIELDS * 8 + 56, at);
        p->doms[d].items = count[d] ? (item *)(base + at) : NULL;
        at += count[d] * sizeof(item);
    }
    memcpy(base, MAGIC, 8);
    lmx__put32(base + 8, VERSION);
    uint32_t bom = 0x01020304u;
    memcpy(base + 12, &bom, 4);
    lmx__put32(base + 16, nd);
    lmx__put32(base + 20, sizeof(item));
    memcpy(base + 24, p->id, LMX_PLAN_ID_BYTES);
    lmx__put64(base + 40, total);
    lmx__put64(base + 48, off);
    p->table = base;
    p->table_size = (size_t)off;
    return LMX_OK;
}

int lmx__plan_table_finish(lmx_plan *p, const char *dir, uint32_t nd, lmx_error *err)
{
    uint8_t *base = p->table;
    for (uint32_t d = 0; d < nd; d++) {
        uint8_t *f = base + HDR + (size_t)d * DOM_FIELDS * 8;
        const pdom *pd = &p->doms[d];
        lmx__put64(f, pd->n);
        lmx__put64(f + 8, pd->n_long);
        lmx__put64(f + 16, pd->cls_long_slen);
        lmx__put64(f + 24, pd->long_slen);
        lmx__put64(f + 32, pd->short_slen);
        lmx__put64(f + 40, pd->long_tok);
        lmx__put64(f + 48, pd->short_tok);
    }
    hash_body(base, p->table_size, base + 56);
    char tab[4200], ok[4200];
    paths(p, dir, tab, ok, sizeof tab);
    int rc = LMX_OK;
    /* verify: background: the scan waited for every shard; one found bad fed this table wrong
     * records, which must not outlive this run (the shard's replacement has the same plan id). */
    const char *bad = lmx__index_first_bad(p->ix); /* also a damaged record (lmx_index_read.c) */
    int fd = bad ? -1 : open(p->table_tmp, O_RDONLY | O_CLOEXEC);
    if (bad)
        rc = lmx__err(err, LMX_ECHECKSUM, "plan %s: not kept: shard %s failed verification", p->name, bad);
    else if (msync(base, p->table_size, MS_SYNC) != 0 || fd < 0 || fsync(fd) != 0)
        rc = lmx__err_errno(err, "plan %s: write %s", p->name, p->table_tmp);
    else if (rename(p->table_tmp, tab) != 0)
        rc = lmx__err_errno(err, "plan %s: rename %s to %s", p->name, p->table_tmp, tab);
    struct stat st;
    if (rc == LMX_OK && fstat(fd, &st) == 0 && lmx__fsync_dir_of(tab, NULL) == LMX_OK) {
        char key[160];
        key_text(&st, key, sizeof key); /* checked as it was written: trusted from now on */
        lmx__write_file_atomic(ok, key, strlen(key), NULL);
    }
    if (rc == LMX_OK && flock(fd, LOCK_SH) == 0) {
        p->table_lock = fd + 1; /* held while mapped */
        fd = -1;
    }
    if (fd >= 0)
        close(fd);
    if (rc != LMX_OK)
        unlink(p->table_tmp);
    free(p->table_tmp);
    p->table_tmp = NULL;
    mprotect(base, p->table_size, PROT_READ);
    posix_madvise(base, p->table_size, POSIX_MADV_RANDOM);
    return rc;
}

void lmx__plan_table_drop(lmx_plan *p)
{
    if (p->table)
        munmap(p->table, p->table_size);
    if (p->table_lock > 0)
        close(p->table_lock - 1);
    p->table_lock = 0;
    if (p->table_tmp) {
        unlink(p->table_tmp);
        free(p->table_tmp);
    }
    p->table = NULL;
    p->table_tmp = NULL;
    p->table_size = 0;
}

/* Whether name is "<32 hex>.items" (a table); its id is then the first 32 characters. */
static int table_name(const char *name)
{
    size_t n = strlen(name);
    if (n != 2 * LMX_PLAN_ID_BYTES + 6 || strcmp(name + 2 * LMX_PLAN_ID_BYTES, ".items") != 0)
        return 0;
    for (size_t i = 0; i < 2 * LMX_PLAN_ID_BYTES; i++)
        if (!strchr("0123456789abcdef", name[i]))
            return 0;
    return 1;
}

/* Whether name is "<32 hex>.epoch.*" (an epoch index file, lmx_plan_epochs.c). */
static int epoch_name(const char *name)
{
    if (strlen(name) <= 2 * LMX_PLAN_ID_BYTES + 7 || strncmp(name + 2 * LMX_PLAN_ID_BYTES, ".epoch.", 7) != 0)
        return 0;
    for (size_t i = 0; i < 2 * LMX_PLAN_ID_BYTES; i++)
        if (!strchr("0123456789abcdef", name[i]))
            return 0;
    return 1;
}

/* Removes the epoch index files whose table is gone (removed by the gc, or never finished). */
static void gc_epoch_files(const char *dir, const char *const *keep, size_t n)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!epoch_name(e->d_name))
            continue;
        int kept = 0;
        for (size_t i = 0; i < n && !kept; i++)
            kept = keep[i] && strncmp(keep[i], e->d_name, 2 * LMX_PLAN_ID_BYTES) == 0;
        char tab[4400], path[4400];
        struct stat st;
        snprintf(tab, sizeof tab, "%s/%.*s.items", dir, 2 * LMX_PLAN_ID_BYTES, e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!kept && stat(tab, &st) != 0 && errno == ENOENT)
            unlink(path);
    }
    closedir(d);
}

size_t lmx__plan_table_gc(const char *dir, const char *const *keep, size_t n, double grace_s)
{
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d)
        return 0;
    size_t removed = 0;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!table_name(e->d_name))
            continue;
        int kept = 0;
        for (size_t i = 0; i < n && !kept; i++)
            kept = keep[i] && strncmp(keep[i], e->d_name, 2 * LMX_PLAN_ID_BYTES) == 0;
        char tab[4400], ok[4400];
        snprintf(tab, sizeof tab, "%s/%s", dir, e->d_name);
        snprintf(ok, sizeof ok, "%s.ok", tab);
        struct stat st, so;
        if (kept || stat(tab, &st) != 0)
            continue;
        time_t used = st.st_mtime;
        if (stat(ok, &so) == 0 && so.st_mtime > used)
            used = so.st_mtime;
        if ((double)(now - used) < grace_s)
            continue;
        int fd = open(tab, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        /* Exclusive and non-blocking: a daemon that maps it holds LOCK_SH. One that opens it
         * after the unlink below maps an unlinked file: still intact, rebuilt at its next start. */
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && unlink(tab) == 0) {
            unlink(ok);
            removed++;
        }
        close(fd);
    }
    closedir(d);
    gc_epoch_files(dir, keep, n);
    return removed;
}
