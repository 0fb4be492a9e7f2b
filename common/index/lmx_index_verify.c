/* Shard verification (`longmixd verify`, `serve` at start): BLAKE2b of every shard against the
 * manifest, on all cores, remembered in a record (verified.json) keyed by each shard's file
 * identity so an unchanged index is not re-read at the next start. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "lmx_index_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lmx_util.h"

#define RECORD_NAME "verified.json"
#define RECORD_VERSION 1
#define CHUNK ((size_t)4 << 20)

/* What identifies a shard file's bytes without reading them. ctime cannot be set from user
 * space, so a write followed by restoring mtime (touch -d) still changes the key. */
typedef struct file_key {
    uint64_t size, dev, ino, mtime_ns, ctime_ns;
} file_key;

typedef struct vshard {
    const char *file, *want; /* borrowed from the manifest */
    char path[4096];
    file_key key;
    int have_key;
    int remembered; /* the record matches: not re-read */
    int state;      /* 0 = not checked, 1 = good, -1 = bad */
    char why[512];
} vshard;

typedef struct vrun {
    vshard *v;
    size_t n;
    atomic_size_t next;
    atomic_ullong bytes;
    const lmx_verify_options *o;
    pthread_mutex_t rate_lock;
    double rate_next; /* monotonic time the next chunk may start (rate limit) */
} vrun;

static void key_of(const struct stat *st, file_key *k)
{
    k->size = (uint64_t)st->st_size;
    k->dev = (uint64_t)st->st_dev;
    k->ino = (uint64_t)st->st_ino;
    k->mtime_ns = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
    k->ctime_ns = (uint64_t)st->st_ctim.tv_sec * 1000000000u + (uint64_t)st->st_ctim.tv_nsec;
}

static uint64_t jint(json_t *o, const char *k) { return (uint64_t)json_integer_value(json_object_get(o, k)); }

/* Whether record entry e vouches for shard s as it is now. */
static int record_matches(json_t *e, const vshard *s)
{
    const char *sum = json_string_value(json_object_get(e, "blake2b"));
    return s->have_key && sum && strcmp(sum, s->want) == 0 && jint(e, "size") == s->key.size &&
           jint(e, "dev") == s->key.dev && jint(e, "ino") == s->key.ino && jint(e, "mtime_ns") == s->key.mtime_ns &&
           jint(e, "ctime_ns") == s->key.ctime_ns;
}

/* The record in the state directory for index folder dir: one file per index (by its real path). */
static int state_record_path(const char *state_dir, const char *dir, char *out, size_t cap)
{
    char *real = realpath(dir, NULL);
    if (!real)
        return -1;
    uint8_t h[8];
    char hex[17];
    crypto_generichash(h, sizeof h, (const uint8_t *)real, strlen(real), NULL, 0);
    free(real);
    lmx__hex(h, sizeof h, hex);
    return snprintf(out, cap, "%s/verified-%s.json", state_dir, hex) < (int)cap ? 0 : -1;
}

/* Loads the shard entries of a record file (an empty object when it is missing or unreadable:
 * a bad record only costs a re-read). */
static json_t *record_load(const char *path)
{
    json_t *r = json_load_file(path, 0, NULL), *sh = json_object_get(r, "shards");
    json_t *out = json_is_object(sh) && jint(r, "version") == RECORD_VERSION ? json_incref(sh) : json_object();
    json_decref(r);
    return out;
}

/* Sleeps so that all threads together stay at or below rate_mb (0 = unlimited). */
static void rate_wait(vrun *r, size_t n)
{
    if (r->o->rate_mb <= 0)
        return;
    pthread_mutex_lock(&r->rate_lock);
    double now = lmx__now(), start = r->rate_next > now ? r->rate_next : now;
    r->rate_next = start + (double)n / (r->o->rate_mb * 1e6);
    pthread_mutex_unlock(&r->rate_lock);
    if (start > now) {
        double d = start - now;
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
}

/* Reads shard s whole and compares its BLAKE2b with the manifest. */
static void check_one(vrun *r, vshard *s, uint8_t *buf)
{
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(s->why, sizeof s->why, "%s", strerror(errno));
        s->state = -1;
        if (fd >= 0)
            close(fd);
        return;
    }
    key_of(&st, &s->key); /* the identity of the bytes about to be read */
    s->have_key = 1;
    if (r->o->scrub) /* read from the disk, not from cached pages, to find bytes that rotted there */
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    uint64_t off = 0;
    for (;;) {
        ssize_t got = pread(fd, buf, CHUNK, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(s->why, sizeof s->why, "read at byte %llu: %s", (unsigned long long)off, strerror(errno));
            s->state = -1;
            close(fd);
            return;
        }
        if (got == 0)
            break;
        if (r->o->cancel && atomic_load(r->o->cancel)) { /* left not checked */
            close(fd);
            return;
        }
        rate_wait(r, (size_t)got);
        crypto_generichash_update(&hs, buf, (size_t)got);
        off += (uint64_t)got;
        atomic_fetch_add(&r->bytes, (unsigned long long)got);
    }
    close(fd);
    uint8_t h[32];
    char hex[65];
    crypto_generichash_final(&hs, h, sizeof h);
    lmx__hex(h, sizeof h, hex);
    if (strcmp(hex, s->want) == 0) {
        s->state = 1;
    } else {
        snprintf(s->why, sizeof s->why, "BLAKE2b %s, manifest says %s", hex, s->want);
        s->state = -1;
    }
}

static void *worker(void *arg)
{
    vrun *r = arg;
    uint8_t *buf = malloc(CHUNK);
    if (!buf)
        return NULL; /* the shards it would have taken stay unchecked: reported as bad */
    for (size_t i; !(r->o->cancel && atomic_load(r->o->cancel)) && (i = atomic_fetch_add(&r->next, 1)) < r->n;) {
        vshard *s = &r->v[i];
        if (!s->remembered && s->state == 0) {
            if (r->o->before_read)
                r->o->before_read(r->o->ctx, i);
            check_one(r, s, buf);
            if (r->o->on_shard && s->state != 0)
                r->o->on_shard(r->o->ctx, i, s->state == 1, s->path, s->why);
        }
    }
    free(buf);
    return NULL;
}

/* Writes the record of every good shard (remembered or checked) atomically: in DIR, else in the
 * state directory. Failure to write is not an error of the verification: it only means the next
 * start reads the shards again (noted in r->record_note). */
static void record_write(const char *dir, const lmx_verify_options *o, const vshard *v, size_t n,
                         lmx_verify_report *rep)
{
    json_t *root = json_object(), *sh = json_object();
    json_object_set_new(root, "version", json_integer(RECORD_VERSION));
    json_object_set_new(root, "note", json_string("shards whose BLAKE2b was checked, keyed by file identity "
                                                  "(longmixd verify; safe to delete)"));
    for (size_t i = 0; i < n; i++) {
        if (v[i].state != 1 && !v[i].remembered)
            continue;
        json_t *e = json_object();
        json_object_set_new(e, "blake2b", json_string(v[i].want));
        json_object_set_new(e, "size", json_integer((json_int_t)v[i].key.size));
        json_object_set_new(e, "dev", json_integer((json_int_t)v[i].key.dev));
        json_object_set_new(e, "ino", json_integer((json_int_t)v[i].key.ino));
        json_object_set_new(e, "mtime_ns", json_integer((json_int_t)v[i].key.mtime_ns));
        json_object_set_new(e, "ctime_ns", json_integer((json_int_t)v[i].key.ctime_ns));
        json_object_set_new(sh, v[i].file, e);
    }
    json_object_set_new(root, "shards", sh);
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(root);
    if (!text)
        return;
    char path[4200];
    lmx_error e1 = {0}, e2 = {0};
    snprintf(path, sizeof path, "%s/%s", dir, RECORD_NAME);
    if (lmx__write_file_atomic(path, text, strlen(text), &e1) == LMX_OK) {
        snprintf(rep->record, sizeof rep->record, "%s", path);
    } else if (o->state_dir && lmx__mkdirs(o->state_dir, &e2) == LMX_OK &&
               state_record_path(o->state_dir, dir, path, sizeof path) == 0 &&
               lmx__write_file_atomic(path, text, strlen(text), &e2) == LMX_OK) {
        snprintf(rep->record, sizeof rep->record, "%s", path);
    } else {
        snprintf(rep->record_note, sizeof rep->record_note, "not remembered: %s%s%s", e1.message,
                 o->state_dir ? "; " : " (no state_dir)", o->state_dir ? e2.message : "");
    }
    free(text);
}

int lmx__index_verify_run(const char *dir, const lmx_verify_options *opts, lmx_verify_report *rep, lmx_error *err)
{
    lmx_verify_options defaults = {0};
    const lmx_verify_options *o = opts ? opts : &defaults;
    lmx_verify_report local;
    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    double t0 = lmx__now();
    json_t *m = NULL;
    int rc = lmx__manifest_load(dir, &m, NULL, err);
    if (rc != LMX_OK)
        return rc;
    json_t *shards = json_object_get(m, "shards");
    size_t n = json_array_size(shards);
    vshard *v = calloc(n + 1, sizeof *v);
    if (!v) {
        json_decref(m);
        return lmx__err(err, LMX_ENOMEM, "verify: out of memory");
    }
    /* Records: the index's own, then the state directory's (a read-only index). */
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, RECORD_NAME);
    json_t *rec = record_load(path);
    if (json_object_size(rec))
        snprintf(rep->record, sizeof rep->record, "%s", path);
    if (o->state_dir && state_record_path(o->state_dir, dir, path, sizeof path) == 0) {
        json_t *r2 = record_load(path);
        if (json_object_size(r2) && !rep->record[0])
            snprintf(rep->record, sizeof rep->record, "%s", path);
        json_object_update_missing(rec, r2);
        json_decref(r2);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(shards, i);
        vshard *s = &v[i];
        s->file = json_string_value(json_object_get(e, "file"));
        s->want = json_string_value(json_object_get(e, "blake2b"));
        snprintf(s->path, sizeof s->path, "%s/shards/%s", dir, s->file);
        struct stat st;
        if (stat(s->path, &st) != 0) {
            snprintf(s->why, sizeof s->why, "%s", strerror(errno));
            s->state = -1;
            continue;
        }
        key_of(&st, &s->key);
        s->have_key = 1;
        if (o->changed_only && record_matches(json_object_get(rec, s->file), s))
            s->remembered = 1;
    }
    for (size_t i = 0; o->on_shard && i < n; i++) /* known before any reading */
        if (v[i].remembered || v[i].state == -1)
            o->on_shard(o->ctx, i, v[i].remembered, v[i].path, v[i].why);
    vrun r = {.v = v, .n = n, .o = o};
    atomic_init(&r.next, 0);
    atomic_init(&r.bytes, 0);
    pthread_mutex_init(&r.rate_lock, NULL);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nt = o->threads > 0 ? (size_t)o->threads : cpus > 0 ? (size_t)cpus : 1;
    size_t todo = 0;
    for (size_t i = 0; i < n; i++)
        todo += !v[i].remembered && v[i].state == 0;
    if (nt > todo)
        nt = todo ? todo : 1;
    pthread_t th[256];
    if (nt > 256)
        nt = 256;
    size_t started = 0;
    for (size_t i = 1; i < nt; i++)
        if (pthread_create(&th[started], NULL, worker, &r) == 0)
            started++;
    worker(&r);
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&r.rate_lock);

    const char *first_bad = NULL;
    size_t changed = 0;
    for (size_t i = 0; i < n; i++) {
        vshard *s = &v[i];
        rep->shards++;
        if (s->remembered) {
            rep->remembered++;
            continue;
        }
        if (s->state == 0) {
            snprintf(s->why, sizeof s->why, "not checked (%s)",
                     o->cancel && atomic_load(o->cancel) ? "cancelled" : "out of memory for a reader");
            s->state = -1;
        }
        if (s->state == 1) {
            rep->checked++;
            changed++;
            continue;
        }
        rep->bad++;
        changed++;
        if (!o->quiet)
            fprintf(stderr, "BAD %s: %s\n", s->path, s->why);
        if (!first_bad)
            first_bad = s->path;
    }
    rep->bytes = atomic_load(&r.bytes);
    /* Rewrite the record only when it learnt something, or it lists shards no longer there. */
    if (changed || json_object_size(rec) != rep->remembered)
        record_write(dir, o, v, n, rep);
    rep->seconds = lmx__now() - t0;
    if (rep->bad)
        rc = lmx__err(err, LMX_ECHECKSUM, "%zu shard(s) failed verification, first: %s", rep->bad, first_bad);
    json_decref(rec);
    free(v);
    json_decref(m);
    return rc;
}

int lmx__index_verify(const char *dir, lmx_error *err) { return lmx__index_verify_run(dir, NULL, NULL, err); }
