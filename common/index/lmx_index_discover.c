/* Jobs from INPUT arguments (proto/INDEX.md, "Inputs"): files, folders walked in sorted order,
 * DOMAIN=PATH, Megatron prefixes; each file goes to the first input format that matches it. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lmx_index_internal.h"

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s%s", a, (a[0] && a[strlen(a) - 1] == '/') ? "" : "/", b);
    return p;
}

static void job_free(lmx_job *j)
{
    free(j->path);
    free(j->domain);
    for (size_t k = 0; k < j->n_files; k++)
        free(j->files[k]);
    free(j->files);
    json_decref(j->entry);
}

void lmx__jobs_free(lmx_job_list *jobs)
{
    for (size_t i = 0; i < jobs->n; i++)
        job_free(&jobs->v[i]);
    free(jobs->v);
    *jobs = (lmx_job_list){0};
}

static int add_file(lmx_job *j, const char *path)
{
    char **f = realloc(j->files, (j->n_files + 1) * sizeof *f);
    if (!f)
        return LMX_ENOMEM;
    j->files = f;
    if (!(f[j->n_files] = strdup(path)))
        return LMX_ENOMEM;
    j->n_files++;
    return LMX_OK;
}

/* A new job of fmt at path (taken over); its files as the format lists them. Folder jobs get
 * their files added by the caller. Returns the job's position in the list or an LMX_E* code. */
static long new_job(lmx_job_list *l, const lmx_input_format *fmt, char *path, const char *domain, lmx_error *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        lmx_job *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            free(path);
            return lmx__err(err, LMX_ENOMEM, "out of memory");
        }
        l->v = v;
        l->cap = cap;
    }
    lmx_job *j = &l->v[l->n++];
    memset(j, 0, sizeof *j);
    j->fmt = fmt;
    j->path = path;
    if (!path || (domain && !(j->domain = strdup(domain))))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    if (fmt->list_files) {
        int rc = fmt->list_files(path, &j->files, &j->n_files, err);
        return rc != LMX_OK ? rc : (long)(l->n - 1);
    }
    if (!(fmt->flags & LMX_INPUT_FOLDER_JOB) && add_file(j, path) != LMX_OK)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    return (long)(l->n - 1);
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The entries of dir except names starting with '.', sorted (strcmp). */
static int list_dir(const char *dir, char ***out, size_t *n_out, lmx_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return lmx__err_errno(err, "open folder %s", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int oom = 0;
    while (!oom && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) {
                oom = 1; /* a partial listing would silently drop files */
                break;
            }
            names = p;
        }
        if (!(names[n] = strdup(e->d_name)))
            oom = 1;
        else
            n++;
    }
    closedir(d);
    if (n) /* names is NULL for an empty folder: qsort(NULL, ...) is undefined */
        qsort(names, n, sizeof *names, cmp_cstr);
    *out = names;
    *n_out = n;
    return oom ? lmx__err(err, LMX_ENOMEM, "listing folder %s: out of memory", dir) : LMX_OK;
}

/* The folder job of dir (created on its first file; *folder is its position, -1 before). */
static int add_to_folder_job(lmx_job_list *jobs, long *folder, const lmx_input_format *fmt, const char *dir,
                             const char *domain, const char *file, lmx_error *err)
{
    if (*folder < 0) {
        char *p = strdup(dir);
        /* "dir/" names the same folder as "dir": the domain is its last component */
        for (size_t l = p ? strlen(p) : 0; l > 1 && p[l - 1] == '/'; l--)
            p[l - 1] = '\0';
        *folder = new_job(jobs, fmt, p, domain, err);
        if (*folder < 0)
            return (int)*folder;
    }
    return add_file(&jobs->v[*folder], file) == LMX_OK ? LMX_OK : lmx__err(err, LMX_ENOMEM, "out of memory");
}

/* One file met by a walk: the job of the format it belongs to, if any (p is taken over). */
static int walk_file(lmx_job_list *jobs, long *folder, const char *dir, char *p, const char *domain, lmx_error *err)
{
    char *job_path = NULL;
    const lmx_input_format *fmt = lmx__input_match(p, &job_path);
    if (job_path) {
        free(p);
        p = job_path;
    }
    int rc = LMX_OK;
    if (!fmt) {
        free(p);
    } else if ((fmt->flags & LMX_INPUT_NEEDS_DOMAIN) && !domain) {
        rc = lmx__err(err, LMX_EINVAL, "input %s: a %s input needs its domain: give the folder as DOMAIN=%s", p,
                      fmt->name, dir);
        free(p);
    } else if (fmt->flags & LMX_INPUT_FOLDER_JOB) {
        rc = add_to_folder_job(jobs, folder, fmt, dir, domain, p, err);
        free(p);
    } else {
        long k = new_job(jobs, fmt, p, domain, err);
        rc = k < 0 ? (int)k : LMX_OK;
    }
    return rc;
}

/* Walks dir recursively (sorted): one job per matching file, one per folder of .txt files. */
static int walk(const char *dir, const char *domain, lmx_job_list *jobs, lmx_error *err)
{
    char **names = NULL;
    size_t n = 0;
    int rc = list_dir(dir, &names, &n, err);
    long folder = -1;
    for (size_t i = 0; rc == LMX_OK && i < n; i++) {
        char *p = join(dir, names[i]);
        struct stat st;
        if (!p || stat(p, &st) != 0) {
            rc = lmx__err_errno(err, "stat %s", p ? p : names[i]);
            free(p);
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk(p, domain, jobs, err);
            free(p);
        } else {
            rc = walk_file(jobs, &folder, dir, p, domain, err);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* A file given as INPUT by itself. */
static int add_file_input(lmx_job_list *jobs, const char *path, const char *domain, lmx_error *err)
{
    char *job_path = NULL;
    const lmx_input_format *fmt = lmx__input_match(path, &job_path);
    if (!fmt)
        return lmx__err(err, LMX_EINVAL, "input %s: not %s, nor a folder holding them", path, lmx__input_kinds());
    long k = new_job(jobs, fmt, job_path ? job_path : strdup(path), domain, err);
    if (k >= 0 && (fmt->flags & LMX_INPUT_FOLDER_JOB) && add_file(&jobs->v[k], path) != LMX_OK)
        k = lmx__err(err, LMX_ENOMEM, "out of memory");
    return k < 0 ? (int)k : LMX_OK;
}

int lmx__jobs_add_input(lmx_job_list *jobs, const char *arg, lmx_error *err)
{
    char *domain = NULL;
    const char *path = arg;
    const char *eq = strchr(arg, '=');
    struct stat st;
    /* DOMAIN=PATH, unless the whole argument is itself an existing path containing '='. */
    if (eq && eq != arg && stat(arg, &st) != 0) {
        if (!(domain = strndup(arg, (size_t)(eq - arg))))
            return lmx__err(err, LMX_ENOMEM, "out of memory");
        path = eq + 1;
    }
    int rc = LMX_OK;
    /* Megatron: PREFIX, PREFIX.bin or PREFIX.idx when PREFIX.bin and PREFIX.idx exist */
    char *mbin = stat(path, &st) != 0 || lmx__ends_with(path, ".bin") || lmx__ends_with(path, ".idx")
                     ? lmx__megatron_bin_of(path)
                     : NULL;
    if (mbin) {
        long k = domain ? new_job(jobs, &lmx__input_megatron, mbin, domain, err)
                        : lmx__err(err, LMX_EINVAL, "input %s: a Megatron dataset needs its domain: write DOMAIN=%s",
                                   path, path);
        if (!domain)
            free(mbin);
        rc = k < 0 ? (int)k : LMX_OK;
    } else if (stat(path, &st) != 0) {
        rc = lmx__err_errno(err, "input %s", path);
    } else if (S_ISDIR(st.st_mode)) {
        size_t before = jobs->n;
        rc = walk(path, domain, jobs, err);
        if (rc == LMX_OK && jobs->n == before)
            rc = lmx__err(err, LMX_EINVAL, "input %s: this folder holds no input (%s)", path, lmx__input_kinds());
    } else {
        rc = add_file_input(jobs, path, domain, err);
    }
    free(domain);
    return rc;
}

static int cmp_job(const void *a, const void *b) { return strcmp(((const lmx_job *)a)->path, ((const lmx_job *)b)->path); }

int lmx__jobs_sort(lmx_job_list *jobs, lmx_error *err)
{
    if (jobs->n < 2)
        return LMX_OK;
    qsort(jobs->v, jobs->n, sizeof *jobs->v, cmp_job);
    for (size_t i = 1; i < jobs->n; i++)
        if (strcmp(jobs->v[i].path, jobs->v[i - 1].path) == 0)
            return lmx__err(err, LMX_EINVAL, "input %s given twice", jobs->v[i].path);
    return LMX_OK;
}

int lmx__jobs_keep_slice(lmx_job_list *jobs, uint32_t index, uint32_t count, lmx_error *err)
{
    if (count == 0)
        return LMX_OK;
    if (index >= count)
        return lmx__err(err, LMX_EINVAL, "--shard %u/%u: I must be in [0, N)", index, count);
    size_t keep = 0;
    for (size_t i = 0; i < jobs->n; i++) {
        if (i % count == index)
            jobs->v[keep++] = jobs->v[i];
        else
            job_free(&jobs->v[i]);
    }
    jobs->n = keep;
    return LMX_OK;
}

void lmx__jobs_stat(lmx_job_list *jobs)
{
    for (size_t i = 0; i < jobs->n; i++) {
        lmx_job *j = &jobs->v[i];
        struct stat st;
        for (size_t k = 0; k < j->n_files; k++)
            if (stat(j->files[k], &st) == 0) {
                j->size += (uint64_t)st.st_size;
                uint64_t t = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
                j->mtime_ns = t > j->mtime_ns ? t : j->mtime_ns;
            }
        if (j->fmt->flags & LMX_INPUT_FOLDER_JOB)
            j->size += j->n_files; /* adding or removing an empty file changes the key too */
    }
}

void lmx__job_domain_rule(const lmx_index_options *opts, const lmx_job *j, char *out, size_t n)
{
    int k;
    if (j->domain)
        k = snprintf(out, n, "forced:%s", j->domain);
    else if (j->fmt->flags & LMX_INPUT_FOLDER_JOB)
        k = snprintf(out, n, "folder");
    else
        k = snprintf(out, n, "field:%s", opts->domain_field);
    if (j->fmt->flags & LMX_INPUT_NO_FIELDS)
        return;
    if (k >= 0 && (size_t)k < n && opts->text_field && strcmp(opts->text_field, "text") != 0)
        k += snprintf(out + k, n - (size_t)k, ";text:%s", opts->text_field);
    if (k >= 0 && (size_t)k < n && opts->id_field)
        k += snprintf(out + k, n - (size_t)k, ";id:%s", opts->id_field);
    if (k >= 0 && (size_t)k < n && opts->token_dtype)
        snprintf(out + k, n - (size_t)k, ";dtype:%d", opts->token_dtype);
}

#define DOMAIN_TAG "{domain}"

/* Glob match of pattern p against all of s: '*' is any run of characters but '/', "{domain}" a
 * non-empty one, captured into dom[0..*dom_len). */
static int glob_match(const char *p, const char *s, const char **dom, size_t *dom_len)
{
    int tag = strncmp(p, DOMAIN_TAG, strlen(DOMAIN_TAG)) == 0;
    if (tag || *p == '*') {
        const char *rest = p + (tag ? strlen(DOMAIN_TAG) : 1);
        for (size_t k = 0;; k++) { /* s[0..k) is what the wildcard takes */
            if (k >= (size_t)tag && glob_match(rest, s + k, dom, dom_len)) {
                if (tag) {
                    *dom = s;
                    *dom_len = k;
                }
                return 1;
            }
            if (!s[k] || s[k] == '/')
                return 0;
        }
    }
    if (!*p)
        return !*s;
    return *p == *s && glob_match(p + 1, s + 1, dom, dom_len);
}

int lmx__jobs_domain_from_path(lmx_job_list *jobs, const char *pattern, lmx_error *err)
{
    if (!pattern)
        return LMX_OK;
    if (!strstr(pattern, DOMAIN_TAG))
        return lmx__err(err, LMX_EINVAL, "--domain-from-path %s: the pattern needs a {domain} part", pattern);
    for (size_t i = 0; i < jobs->n; i++) {
        lmx_job *j = &jobs->v[i];
        if (j->domain)
            continue; /* DOMAIN=PATH wins */
        const char *dom = NULL;
        size_t dl = 0;
        /* the whole path, else any tail after a '/' (a relative pattern under an absolute INPUT) */
        for (const char *s = j->path; s && !dom; s = strchr(s, '/') ? strchr(s, '/') + 1 : NULL)
            if (!glob_match(pattern, s, &dom, &dl))
                dom = NULL;
        if (!dom)
            return lmx__err(err, LMX_EINVAL, "input %s does not match --domain-from-path %s", j->path, pattern);
        if (!(j->domain = strndup(dom, dl)))
            return lmx__err(err, LMX_ENOMEM, "out of memory");
    }
    return LMX_OK;
}
