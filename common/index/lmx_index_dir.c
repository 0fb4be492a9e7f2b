/* The index folder around the shards and the manifest: the writers' lock, leftovers of killed
 * runs, shards no manifest lists, and the tokenizer copy (proto/INDEX.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "lmx_index_internal.h"

/* One writer per index folder: an exclusive flock on DIR/.lock (kept as an empty file), held
 * until the run ends. Returns the descriptor (>= 0) or an error code. */
int lmx__index_lock(const char *out_dir, lmx_error *err)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/.lock", out_dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return lmx__err_errno(err, "create %s", p);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return lmx__err(err, LMX_EIO, "%s: another longmixd index is writing this folder (%s is locked)", out_dir, p);
        errno = e;
        return lmx__err_errno(err, "lock %s", p);
    }
    return fd;
}

/* Temp files of runs that were killed (NAME.tmp.PID whose PID is gone) in DIR and DIR/shards. */
void lmx__index_remove_stale_temps(const char *out_dir)
{
    for (int sub = 0; sub < 2; sub++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s%s", out_dir, sub ? "/shards" : "");
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            const char *t = strstr(e->d_name, ".tmp.");
            char *end = NULL;
            if (!t)
                continue;
            long pid = strtol(t + 5, &end, 10);
            if (!end || *end || pid <= 0 || (pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM)))
                continue;
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
}

/* After a manifest is published: shard files it does not list (earlier versions of changed
 * inputs, leftovers of killed runs) are deleted. A daemon that still maps one keeps its mapping. */
void lmx__index_remove_unlisted(const char *out_dir, json_t *manifest)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/shards", out_dir);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!lmx__ends_with(e->d_name, ".lmxs") || lmx__manifest_lists(manifest, e->d_name))
            continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* Copies tokenizer.json (and tokenizer_config.json, which may name BOS/EOS) from tokenizer_json's
 * folder into the index, so the index is self-describing: the server decodes text with it and
 * its identity hash stays that of the bytes copied. No-op for the built-in `bytes` tokenizer. */
int lmx__index_copy_tokenizer(const char *tokenizer_json, const char *out_dir, lmx_error *err)
{
    if (strcmp(tokenizer_json, "bytes") == 0)
        return LMX_OK;
    static const char *const names[] = {"tokenizer.json", "tokenizer_config.json"};
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tokenizer_json);
    char *slash = strrchr(dir, '/');
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char src[4200], dst[4200];
        if (i == 0)
            snprintf(src, sizeof src, "%s", tokenizer_json);
        else if (slash)
            snprintf(src, sizeof src, "%.*s/%s", (int)(slash - dir), dir, names[i]);
        else
            snprintf(src, sizeof src, "%s", names[i]);
        snprintf(dst, sizeof dst, "%s/%s", out_dir, names[i]);
        if (strcmp(src, dst) == 0)
            continue;
        if (i > 0 && access(src, R_OK) != 0)
            continue; /* optional */
        char *data = NULL;
        size_t len = 0;
        int rc = lmx__read_file(src, (size_t)1 << 30, &data, &len, err);
        if (rc == LMX_OK)
            rc = lmx__write_file_atomic(dst, data, len, err);
        free(data);
        if (rc != LMX_OK)
            return rc;
    }
    return LMX_OK;
}
