/* Minimal unit-test harness: CHECK records a failure and continues; main returns non-zero when
 * anything failed, so ctest reports it. Also: string/substring checks and temp-dir helpers
 * (mkdtemp under /tmp, recursive removal). */
#ifndef LMX_TEST_H
#define LMX_TEST_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int lmx_test_failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            lmx_test_failures++;                                                     \
        }                                                                            \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                      \
    do {                                                                                        \
        long long lmx_a_ = (long long)(a), lmx_b_ = (long long)(b);                             \
        if (lmx_a_ != lmx_b_) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__,       \
                    __LINE__, #a, lmx_a_, #b, lmx_b_);                                          \
            lmx_test_failures++;                                                                \
        }                                                                                       \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                                      \
    do {                                                                                        \
        unsigned long long lmx_a_ = (unsigned long long)(a), lmx_b_ = (unsigned long long)(b);  \
        if (lmx_a_ != lmx_b_) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %llu, %s == %llu\n", __FILE__,       \
                    __LINE__, #a, lmx_a_, #b, lmx_b_);                                          \
            lmx_test_failures++;                                                                \
        }                                                                                       \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                      \
    do {                                                                                        \
        const char *lmx_a_ = (a), *lmx_b_ = (b);                                                \
        if (!lmx_a_ || !lmx_b_ || strcmp(lmx_a_, lmx_b_) != 0) {                                \
            fprintf(stderr, "%s:%d: CHECK_EQ_STR failed: %s == \"%s\", %s == \"%s\"\n",        \
                    __FILE__, __LINE__, #a, lmx_a_ ? lmx_a_ : "(null)", #b,                     \
                    lmx_b_ ? lmx_b_ : "(null)");                                                \
            lmx_test_failures++;                                                                \
        }                                                                                       \
    } while (0)

/* haystack contains needle (for error messages that must name a file, line or field). */
#define CHECK_CONTAINS(hay, needle)                                                             \
    do {                                                                                        \
        const char *lmx_h_ = (hay), *lmx_n_ = (needle);                                         \
        if (!lmx_h_ || !lmx_n_ || !strstr(lmx_h_, lmx_n_)) {                                    \
            fprintf(stderr, "%s:%d: CHECK_CONTAINS failed: %s == \"%s\" lacks \"%s\"\n",       \
                    __FILE__, __LINE__, #hay, lmx_h_ ? lmx_h_ : "(null)",                       \
                    lmx_n_ ? lmx_n_ : "(null)");                                                \
            lmx_test_failures++;                                                                \
        }                                                                                       \
    } while (0)

#define TEST_MAIN_END()                                                        \
    do {                                                                       \
        if (lmx_test_failures) {                                               \
            fprintf(stderr, "%d check(s) failed\n", lmx_test_failures);        \
            return 1;                                                          \
        }                                                                      \
        printf("ok\n");                                                        \
        return 0;                                                              \
    } while (0)

/* Creates a fresh directory /tmp/lmx-test-<name>-XXXXXX into buf (exits on failure). */
static inline char *lmx_test_tmpdir(const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/lmx-test-%s-XXXXXX", name);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(2);
    }
    return buf;
}

/* rm -rf path (no symlink following). Returns 0 on success. */
static inline int lmx_test_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return -1;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return -1;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            size_t len = strlen(path) + strlen(e->d_name) + 2;
            char *child = malloc(len);
            if (!child)
                break;
            snprintf(child, len, "%s/%s", path, e->d_name);
            lmx_test_rmtree(child);
            free(child);
        }
        closedir(d);
        return rmdir(path);
    }
    return unlink(path);
}

/* Writes len bytes to path (exits on failure). */
static inline void lmx_test_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* Number of entries in dir (without . and ..), -1 when it cannot be opened. */
static inline int lmx_test_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

#endif
