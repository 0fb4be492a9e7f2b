/* Text folders: every `.txt` file directly in one folder is one document of that folder's job
 * (a `.txt` INPUT given by itself is its own job). Domain: forced, else the last component of the
 * folder (for a single `.txt` INPUT: its parent folder's name, `.` when the path has no `/`).
 * input_blake2b hashes each file's `path NUL content` in order. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_inputs.h"
#include "lmx_utf8.h"

typedef struct textdir {
    lmx_input base;
    size_t next;
    char *folder_domain;
    char *text; /* the current file */
    crypto_generichash_state hash;
} textdir;

static int text_match(const char *path, char **job_path)
{
    (void)job_path;
    return lmx__ends_with(path, ".txt");
}

/* The domain of the job's files when none is forced. */
static char *folder_domain(const lmx_input_params *p)
{
    if (p->n_files == 1 && strcmp(p->files[0], p->path) == 0) {
        char *dup = strdup(p->path), *s = dup ? strrchr(dup, '/') : NULL, *d;
        if (!dup)
            return NULL;
        if (s) {
            *s = '\0';
            s = strrchr(dup, '/');
            d = strdup(s ? s + 1 : dup);
        } else {
            d = strdup(".");
        }
        free(dup);
        return d;
    }
    const char *slash = strrchr(p->path, '/');
    return strdup(slash ? slash + 1 : p->path);
}

static int text_open(const lmx_input_params *p, lmx_input **out, lmx_error *err)
{
    textdir *r = calloc(1, sizeof *r);
    if (!r)
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", p->path);
    r->base.params = p;
    r->base.kind = "txt";
    *out = &r->base;
    crypto_generichash_init(&r->hash, NULL, 0, 32);
    r->folder_domain = folder_domain(p);
    return r->folder_domain ? LMX_OK : lmx__err(err, LMX_ENOMEM, "%s: out of memory", p->path);
}

static void text_close(lmx_input *in)
{
    if (!in)
        return;
    textdir *r = (textdir *)in;
    free(r->folder_domain);
    free(r->text);
    free(r);
}

static int text_next(lmx_input *in, lmx_input_rec *rec, lmx_error *err)
{
    textdir *r = (textdir *)in;
    const lmx_input_params *p = in->params;
    if (r->next == p->n_files)
        return 0;
    const char *file = p->files[r->next++];
    free(r->text);
    r->text = NULL;
    size_t len = 0;
    int rc = lmx__read_file(file, LMX_INPUT_MAX_RECORD, &r->text, &len, err);
    if (rc != LMX_OK)
        return rc;
    in->bytes_read += len + 1;
    crypto_generichash_update(&r->hash, (const uint8_t *)file, strlen(file) + 1);
    crypto_generichash_update(&r->hash, (const uint8_t *)r->text, len);
    rec->source = file;
    rec->where = 0;
    rec->bytes = len;
    size_t valid = lmx__utf8_valid_prefix((const uint8_t *)r->text, len);
    if (len == 0)
        lmx__rec_bad(rec, "empty file (no text)");
    else if (valid != len)
        lmx__rec_bad(rec, "not valid UTF-8 (first bad byte at offset %zu)", valid);
    else {
        rec->kind = LMX_REC_TEXT;
        rec->data = r->text;
        rec->len = len;
        rec->domain = r->folder_domain;
    }
    return 1;
}

static int text_finish(lmx_input *in, char hex[65], lmx_error *err)
{
    (void)err;
    uint8_t h[32];
    crypto_generichash_final(&((textdir *)in)->hash, h, sizeof h);
    lmx__hex(h, sizeof h, hex);
    return LMX_OK;
}

const lmx_input_format lmx__input_text = {
    .name = "txt",
    .what = "a .txt file",
    .flags = LMX_INPUT_FOLDER_JOB | LMX_INPUT_NO_FIELDS,
    .match = text_match,
    .open = text_open,
    .next = text_next,
    .finish = text_finish,
    .close = text_close,
};
