/* `longmixd index --merge`: several indexes (e.g. --shard slices) into one, without
 * re-tokenizing (proto/INDEX.md, "Several machines"). */
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmx_index_internal.h"

/* Copies src to tmp (fsynced); its BLAKE2b must equal want. */
static int copy_checked(const char *src, const char *tmp, const char *want, lmx_error *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return lmx__err_errno(err, "open %s", src);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return lmx__err_errno(err, "create %s", tmp);
    }
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    uint8_t *buf = malloc((size_t)1 << 20);
    int rc = buf ? LMX_OK : lmx__err(err, LMX_ENOMEM, "out of memory");
    for (ssize_t n; rc == LMX_OK && (n = read(in, buf, (size_t)1 << 20)) != 0;) {
        if (n < 0) {
            rc = lmx__err_errno(err, "read %s", src);
            break;
        }
        crypto_generichash_update(&hs, buf, (unsigned long long)n);
        for (ssize_t o = 0, w; o < n && rc == LMX_OK; o += w)
            if ((w = write(out, buf + o, (size_t)(n - o))) <= 0)
                rc = lmx__err_errno(err, "write %s", tmp);
    }
    free(buf);
    close(in);
    if (rc == LMX_OK && fsync(out) != 0)
        rc = lmx__err_errno(err, "fsync %s", tmp);
    if (close(out) != 0 && rc == LMX_OK)
        rc = lmx__err_errno(err, "close %s", tmp);
    if (rc == LMX_OK) {
        uint8_t h[32];
        char hex[65];
        crypto_generichash_final(&hs, h, sizeof h);
        lmx__hex(h, sizeof h, hex);
        if (strcmp(hex, want) != 0)
            rc = lmx__err(err, LMX_ECHECKSUM, "%s: BLAKE2b %s, its manifest says %s (run longmixd verify on it)", src,
                          hex, want);
    }
    return rc;
}

/* Places src at dst: a hard link when possible, else a copy whose BLAKE2b must equal want. Both
 * go through a temp name and a rename, so dst is never half-written. */
static int place_shard(const char *src, const char *dst, const char *want, lmx_error *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dst, (long)getpid());
    unlink(tmp);
    int rc = link(src, tmp) == 0 ? LMX_OK : copy_checked(src, tmp, want, err);
    if (rc == LMX_OK && rename(tmp, dst) != 0)
        rc = lmx__err_errno(err, "rename %s", tmp);
    unlink(tmp); /* still there when tmp and dst were links to the same file already */
    return rc;
}

typedef struct merge {
    char *const *srcs;
    int n_srcs;
    json_t **ms;      /* each source's manifest */
    json_t *all;      /* every source's entries, tagged "_src" */
    json_t *uniq;     /* one entry per input, sorted by input */
    json_t *tokenizer; /* borrowed from the first source */
    uint32_t token_bytes;
} merge;

/* Loads source i and checks it can join the others (same tokenizer, token width, threshold). */
static int load_source(merge *M, int i, lmx_error *err)
{
    lmx_manifest_info info;
    int rc = lmx__manifest_load(M->srcs[i], &M->ms[i], &info, err);
    if (rc != LMX_OK)
        return rc;
    json_t *m = M->ms[i];
    if (json_integer_value(json_object_get(m, "long_threshold")) != LMX_LONG_THRESHOLD)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s/%s: long_threshold %lld (this build writes %d)", M->srcs[i],
                        LMX_INDEX_MANIFEST, (long long)json_integer_value(json_object_get(m, "long_threshold")),
                        LMX_LONG_THRESHOLD);
    if (!M->tokenizer) {
        M->tokenizer = json_object_get(m, "tokenizer");
        M->token_bytes = info.token_bytes;
    } else if (strcmp(info.tokenizer_identity, json_string_value(json_object_get(M->tokenizer, "identity"))) != 0 ||
               info.token_bytes != M->token_bytes) {
        return lmx__err(err, LMX_EINVAL,
                        "%s was built with tokenizer %s, %s with %s: indexes can only be merged when built with the same tokenizer",
                        M->srcs[i], info.tokenizer_identity, M->srcs[0],
                        json_string_value(json_object_get(M->tokenizer, "identity")));
    }
    json_t *e;
    size_t k;
    json_array_foreach(json_object_get(m, "shards"), k, e)
    {
        if (!json_is_string(json_object_get(e, "input")))
            return lmx__err(err, LMX_EFORMAT, "%s/%s: shards[%zu] has no 'input' (merge needs it)", M->srcs[i],
                            LMX_INDEX_MANIFEST, k);
        json_object_set_new(e, "_src", json_integer(i));
        json_array_append(M->all, e);
    }
    return LMX_OK;
}

static const char *entry_str(json_t *e, const char *key) { return json_string_value(json_object_get(e, key)); }

/* One entry per input: the same input in two sources must be the same shard. */
static int dedupe(merge *M, lmx_error *err)
{
    size_t n = json_array_size(M->all);
    json_t **v = calloc(n + 1, sizeof *v);
    if (!v)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    for (size_t k = 0; k < n; k++)
        v[k] = json_array_get(M->all, k);
    qsort(v, n, sizeof *v, lmx__entry_cmp_input);
    int rc = LMX_OK;
    for (size_t k = 0; rc == LMX_OK && k < n; k++) {
        if (k == 0 || lmx__entry_cmp_input(&v[k - 1], &v[k]) != 0) {
            json_array_append(M->uniq, v[k]);
            continue;
        }
        if (strcmp(entry_str(v[k - 1], "blake2b"), entry_str(v[k], "blake2b")) != 0 ||
            strcmp(entry_str(v[k - 1], "file"), entry_str(v[k], "file")) != 0)
            rc = lmx__err(err, LMX_EINVAL, "input %s is indexed differently in %s and %s (re-index it in one of them)",
                          entry_str(v[k], "input"), M->srcs[json_integer_value(json_object_get(v[k - 1], "_src"))],
                          M->srcs[json_integer_value(json_object_get(v[k], "_src"))]);
    }
    free(v);
    return rc;
}

/* Links or copies every shard into out_dir/shards. */
static int place_all(merge *M, const char *out_dir, lmx_error *err)
{
    json_t *e;
    size_t k;
    json_array_foreach(M->uniq, k, e)
    {
        const char *file = entry_str(e, "file");
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/shards/%s", M->srcs[json_integer_value(json_object_get(e, "_src"))], file);
        snprintf(dst, sizeof dst, "%s/shards/%s", out_dir, file);
        struct stat st;
        int rc;
        if (stat(src, &st) != 0)
            rc = lmx__err_errno(err, "shard %s", src);
        else if ((uint64_t)st.st_size != (uint64_t)json_integer_value(json_object_get(e, "size")))
            rc = lmx__err(err, LMX_EFORMAT, "%s: %lld bytes, its manifest says %lld", src, (long long)st.st_size,
                          (long long)json_integer_value(json_object_get(e, "size")));
        else
            rc = place_shard(src, dst, entry_str(e, "blake2b"), err);
        if (rc != LMX_OK)
            return rc;
    }
    char dirp[4200];
    snprintf(dirp, sizeof dirp, "%s/shards/x", out_dir);
    return lmx__fsync_dir_of(dirp, err);
}

/* The merged manifest (the same builder as a normal run), after the tokenizer copy. */
static int publish(merge *M, const char *out_dir, lmx_error *err)
{
    json_t *clean = json_array(), *e;
    size_t k;
    json_array_foreach(M->uniq, k, e)
    {
        json_t *c = json_deep_copy(e);
        json_object_del(c, "_src");
        json_array_append_new(clean, c);
    }
    json_t *m = lmx__manifest_make(json_deep_copy(M->tokenizer), M->token_bytes, clean);
    json_decref(clean);
    char tsrc[4200];
    snprintf(tsrc, sizeof tsrc, "%s/tokenizer.json", M->srcs[0]);
    int rc = access(tsrc, R_OK) == 0 ? lmx__index_copy_tokenizer(tsrc, out_dir, err) : LMX_OK;
    if (rc == LMX_OK)
        rc = lmx__manifest_write(out_dir, m, err);
    if (rc == LMX_OK)
        fprintf(stderr, "longmixd index --merge: %d sources, %zu inputs, %lld documents, %lld tokens -> %s\n",
                M->n_srcs, json_array_size(M->uniq), (long long)json_integer_value(json_object_get(m, "total_docs")),
                (long long)json_integer_value(json_object_get(m, "total_tokens")), out_dir);
    json_decref(m);
    return rc;
}

/* Merging into an existing index only when it is listed as a source (nothing is dropped). */
static int check_out_dir(const char *out_dir, char *const *srcs, int n_srcs, lmx_error *err)
{
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/%s", out_dir, LMX_INDEX_MANIFEST);
    if (access(mpath, F_OK) != 0)
        return LMX_OK;
    struct stat so, ss;
    for (int i = 0; i < n_srcs; i++)
        if (stat(out_dir, &so) == 0 && stat(srcs[i], &ss) == 0 && so.st_dev == ss.st_dev && so.st_ino == ss.st_ino)
            return LMX_OK;
    return lmx__err(err, LMX_EINVAL, "%s already holds an index: list it as a SRC_DIR too, or use another --out",
                    out_dir);
}

int lmx__index_merge(const char *out_dir, char *const *srcs, int n_srcs, lmx_error *err)
{
    if (n_srcs < 1)
        return lmx__err(err, LMX_EINVAL, "index --merge: no SRC_DIR given");
    if (sodium_init() < 0)
        return lmx__err(err, LMX_EINTERNAL, "libsodium failed to initialize");
    int rc = check_out_dir(out_dir, srcs, n_srcs, err);
    if (rc != LMX_OK)
        return rc;
    merge M = {.srcs = srcs, .n_srcs = n_srcs};
    M.ms = calloc((size_t)n_srcs, sizeof *M.ms);
    M.all = json_array();
    M.uniq = json_array();
    if (!M.ms || !M.all || !M.uniq)
        rc = lmx__err(err, LMX_ENOMEM, "out of memory");
    for (int i = 0; rc == LMX_OK && i < n_srcs; i++)
        rc = load_source(&M, i, err);
    if (rc == LMX_OK)
        rc = dedupe(&M, err);
    int lock_fd = -1;
    if (rc == LMX_OK) {
        char sh[4096];
        snprintf(sh, sizeof sh, "%s/shards", out_dir);
        rc = lmx__mkdirs(sh, err);
    }
    if (rc == LMX_OK) {
        lock_fd = lmx__index_lock(out_dir, err);
        rc = lock_fd < 0 ? lock_fd : LMX_OK;
    }
    if (rc == LMX_OK) {
        lmx__index_remove_stale_temps(out_dir);
        rc = place_all(&M, out_dir, err);
    }
    if (rc == LMX_OK)
        rc = publish(&M, out_dir, err);
    if (lock_fd >= 0)
        close(lock_fd);
    json_decref(M.uniq);
    json_decref(M.all);
    for (int i = 0; M.ms && i < n_srcs; i++)
        json_decref(M.ms[i]);
    free(M.ms);
    return rc;
}
