#define _POSIX_C_SOURCE 200809L
#include "lmx_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LMX_BUF_DEFAULT_LIMIT ((size_t)1 << 30)

int lmx__buf_reserve(lmx_buf *b, size_t extra)
{
    size_t limit = b->cap_limit ? b->cap_limit : LMX_BUF_DEFAULT_LIMIT;
    if (extra > limit || b->len > limit - extra)
        return LMX_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return LMX_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > limit / 2 ? limit : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return LMX_ENOMEM;
    b->data = p;
    b->cap = cap;
    return LMX_OK;
}

int lmx__buf_append(lmx_buf *b, const void *p, size_t n)
{
    int rc = lmx__buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return LMX_OK;
}

int lmx__buf_printf(lmx_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return LMX_EINVAL;
    int rc = lmx__buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return LMX_OK;
}

void lmx__buf_free(lmx_buf *b)
{
    if (!b)
        return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

int lmx__ids_reserve(lmx_ids *ids, size_t extra)
{
    if (extra > ((size_t)1 << 40) || ids->n + extra <= ids->cap)
        return extra > ((size_t)1 << 40) ? LMX_ENOMEM : LMX_OK;
    size_t cap = ids->cap ? ids->cap : 1024;
    while (cap < ids->n + extra)
        cap *= 2;
    uint32_t *v = realloc(ids->v, cap * sizeof *v);
    if (!v)
        return LMX_ENOMEM;
    ids->v = v;
    ids->cap = cap;
    return LMX_OK;
}

int lmx__ids_push(lmx_ids *ids, uint32_t id)
{
    if (ids->n == ids->cap) {
        int rc = lmx__ids_reserve(ids, 1);
        if (rc)
            return rc;
    }
    ids->v[ids->n++] = id;
    return LMX_OK;
}

void lmx__ids_free(lmx_ids *ids)
{
    if (!ids)
        return;
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

int lmx__fsync_dir_of(const char *path, lmx_error *err)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return lmx__err(err, LMX_EINVAL, "path too long: %s", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return lmx__err_errno(err, "open directory %s", dir);
    int rc = fsync(fd);
    close(fd);
    /* Some filesystems refuse fsync on directories; the rename is still atomic there. */
    (void)rc;
    return LMX_OK;
}

int lmx__write_file_atomic(const char *path, const void *data, size_t len, lmx_error *err)
{
    /* unique per call: two threads may write the same path (epoch indexes); the name still
     * ends in .tmp.PID, which the sweeps of killed runs' temp files look for */
    static atomic_uint seq;
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.%u.tmp.%ld", path, atomic_fetch_add(&seq, 1), (long)getpid()) >= (int)sizeof tmp)
        return lmx__err(err, LMX_EINVAL, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return lmx__err_errno(err, "create %s", tmp);
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            lmx__err_errno(err, "write %s", tmp);
            close(fd);
            unlink(tmp);
            return LMX_EIO;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        lmx__err_errno(err, "fsync %s", tmp);
        close(fd);
        unlink(tmp);
        return LMX_EIO;
    }
    if (close(fd) != 0) {
        lmx__err_errno(err, "close %s", tmp);
        unlink(tmp);
        return LMX_EIO;
    }
    if (rename(tmp, path) != 0) {
        lmx__err_errno(err, "rename %s to %s", tmp, path);
        unlink(tmp);
        return LMX_EIO;
    }
    return lmx__fsync_dir_of(path, err);
}

int lmx__read_file(const char *path, size_t max_len, char **out, size_t *out_len, lmx_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lmx__err_errno(err, "open %s", path);
    lmx_buf b = {0};
    b.cap_limit = max_len + 1;
    /* a regular file is read straight into a buffer of its size (no regrowth, no copy) */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        (uint64_t)st.st_size < (uint64_t)max_len)
        (void)lmx__buf_reserve(&b, (size_t)st.st_size + 1);
    int rc = LMX_OK;
    for (;;) {
        if (b.len == b.cap && lmx__buf_reserve(&b, b.len < 65536 ? 65536 - b.len : 1) != LMX_OK &&
            lmx__buf_reserve(&b, 1) != LMX_OK) {
            rc = lmx__err(err, LMX_ENOMEM, "%s: larger than %zu bytes", path, max_len);
            break;
        }
        size_t n = fread(b.data + b.len, 1, b.cap - b.len, f);
        b.len += n;
        if (n == 0)
            break;
    }
    if (rc == LMX_OK && ferror(f))
        rc = lmx__err_errno(err, "read %s", path);
    fclose(f);
    if (rc == LMX_OK && (rc = lmx__buf_append(&b, "", 1)) != LMX_OK)
        rc = lmx__err(err, LMX_ENOMEM, "%s: larger than %zu bytes", path, max_len);
    if (rc != LMX_OK) {
        lmx__buf_free(&b);
        return rc;
    }
    *out = (char *)b.data;
    if (out_len)
        *out_len = b.len - 1;
    return LMX_OK;
}

int lmx__mkdirs(const char *path, lmx_error *err)
{
    char p[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof p)
        return lmx__err(err, LMX_EINVAL, "bad directory path '%s'", path);
    memcpy(p, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == '\0') {
            char c = p[i];
            p[i] = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return lmx__err_errno(err, "mkdir %s", p);
            p[i] = c;
        }
    }
    return LMX_OK;
}

void lmx__hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int lmx__hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int lmx__unhex(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = lmx__hexval(hex[2 * i]), lo = hi < 0 ? -1 : lmx__hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * n] == '\0' ? 0 : -1;
}

int lmx__parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s || strlen(s) > 20)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

double lmx__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int lmx__map_file(const char *path, uint8_t **map, size_t *size, lmx_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lmx__err_errno(err, "open %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return lmx__err_errno(err, "stat %s", path);
    }
    *size = (size_t)st.st_size;
    *map = NULL;
    if (*size) {
        void *m = mmap(NULL, *size, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return lmx__err_errno(err, "mmap %s", path);
        }
        *map = m;
    }
    close(fd);
    return LMX_OK;
}
