/* The input format table and the helpers the readers share (see lmx_inputs.h). */
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_inputs.h"

/* Match order: the first format whose match() accepts a file gets it. */
const lmx_input_format *const lmx__input_formats[] = {
    &lmx__input_jsonl,
    &lmx__input_parquet,
    &lmx__input_megatron,
    &lmx__input_mds,
    &lmx__input_text,
    NULL,
};

const lmx_input_format *lmx__input_match(const char *path, char **job_path)
{
    *job_path = NULL;
    for (size_t i = 0; lmx__input_formats[i]; i++)
        if (lmx__input_formats[i]->match(path, job_path))
            return lmx__input_formats[i];
    return NULL;
}

const char *lmx__input_kinds(void)
{
    static char buf[1024];
    if (!buf[0]) { /* set once, before any thread starts (discovery) */
        size_t n = 0, k = 0;
        while (lmx__input_formats[n])
            n++;
        for (size_t i = 0; i < n && k < sizeof buf; i++)
            k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", i == 0 ? "" : i + 1 == n ? " or " : ", ",
                                  lmx__input_formats[i]->what ? lmx__input_formats[i]->what
                                                              : lmx__input_formats[i]->name);
    }
    return buf;
}

const lmx_input_format *lmx__input_format(const char *name)
{
    for (size_t i = 0; lmx__input_formats[i]; i++)
        if (strcmp(lmx__input_formats[i]->name, name) == 0)
            return lmx__input_formats[i];
    return NULL;
}

int lmx__ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int lmx__file_blake2b(const char *path, char hex[65])
{
    char *one[] = {(char *)path};
    return lmx__files_blake2b(one, 1, hex);
}

int lmx__files_blake2b(char *const *files, size_t n, char hex[65])
{
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    uint8_t buf[1 << 16], h[32];
    for (size_t i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "rb");
        if (!f)
            return -1;
        size_t k;
        while ((k = fread(buf, 1, sizeof buf, f)) > 0)
            crypto_generichash_update(&hs, buf, k);
        int bad = ferror(f);
        fclose(f);
        if (bad)
            return -1;
    }
    crypto_generichash_final(&hs, h, sizeof h);
    lmx__hex(h, sizeof h, hex);
    return 0;
}

json_t *lmx__json_at_path(json_t *doc, const char *path)
{
    const char *p = path;
    while (doc && json_is_object(doc)) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        doc = json_object_getn(doc, p, n);
        if (!dot)
            return doc;
        p = dot + 1;
    }
    return NULL;
}

int lmx__json_id_text(json_t *v, lmx_buf *out)
{
    out->len = 0;
    if (json_is_string(v))
        return lmx__buf_append(out, json_string_value(v), json_string_length(v) + 1) == LMX_OK ? 0 : -1;
    if (!json_is_number(v))
        return -1;
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    int rc = t && lmx__buf_append(out, t, strlen(t) + 1) == LMX_OK ? 0 : -1;
    free(t);
    return rc;
}

void lmx__rec_bad(lmx_input_rec *rec, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rec->why, sizeof rec->why, fmt, ap);
    va_end(ap);
    rec->kind = LMX_REC_BAD;
}
