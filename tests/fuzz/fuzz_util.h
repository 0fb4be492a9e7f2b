/* Helpers shared by the libFuzzer targets (header only: every fuzz_*.c is its own executable). */
#ifndef LMX_FUZZ_UTIL_H
#define LMX_FUZZ_UTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A failed invariant is a crash libFuzzer records (with the input). */
#define FUZZ_CHECK(c)                                                                    \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static inline void fuzz_remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            fuzz_remove_tree(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static char fuzz_scratch[256];
static void fuzz_scratch_cleanup(void) { fuzz_remove_tree(fuzz_scratch); }

/* A per-process scratch directory (parallel -jobs/-fork workers must not share files), on tmpfs
 * when there is one. Created once and removed at exit; the path is stable for the life of the process. */
static inline const char *fuzz_scratch_dir(const char *tag)
{
    if (fuzz_scratch[0])
        return fuzz_scratch;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(fuzz_scratch, sizeof fuzz_scratch, "%s/lmx-fuzz-%s-%ld", base, tag, (long)getpid());
    mkdir(fuzz_scratch, 0700);
    atexit(fuzz_scratch_cleanup); /* libFuzzer exits normally at -max_total_time / -runs */
    return fuzz_scratch;
}

/* Writes exactly n bytes to path (truncating); returns 0 or -1. */
static inline int fuzz_write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    close(fd);
    return 0;
}

#endif
