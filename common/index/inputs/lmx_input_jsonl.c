/* JSON Lines input (`.jsonl`, `.jsonl.zst`, `.jsonl.zstd`, `.jsonl.gz`, `.json.gz`): one document
 * per line, the text at --text-field and the domain at --domain-field (proto/INDEX.md, "Inputs").
 * The compression comes from the file's magic bytes, the name only selects the format. The reader
 * only splits lines (streaming, 1-based line numbers); parse() extracts the fields on any thread. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_input_stream.h"
#include "lmx_inputs.h"
#include "lmx_jsonl.h"

typedef struct jsonl {
    lmx_input base;
    lmx_instream s;
    const uint8_t *chunk; /* decompressed bytes not yet split */
    size_t chunk_len;
    int eof;
    uint64_t line_no;
    lmx_buf line;
} jsonl;

static int jsonl_match(const char *path, char **job_path)
{
    (void)job_path;
    static const char *const ext[] = {".jsonl", ".jsonl.zst", ".jsonl.zstd", ".jsonl.gz", ".json.gz"};
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (lmx__ends_with(path, ext[i]))
            return 1;
    return 0;
}

static int jsonl_open(const lmx_input_params *p, lmx_input **out, lmx_error *err)
{
    jsonl *r = calloc(1, sizeof *r);
    if (!r)
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", p->path);
    r->base.params = p;
    r->line.cap_limit = LMX_INPUT_MAX_RECORD;
    *out = &r->base;
    int codec, rc = lmx__instream_sniff(p->path, &codec, err);
    if (rc != LMX_OK)
        return rc;
    /* a name promising compression over plain bytes is a damaged or mislabeled file */
    if (codec == LMX_CODEC_NONE && !lmx__ends_with(p->path, ".jsonl"))
        return lmx__err(err, LMX_EFORMAT, "%s: not %s data (the file does not start with its magic bytes)", p->path,
                        lmx__ends_with(p->path, ".gz") ? "gzip" : "zstd");
    static const char *const kinds[] = {"jsonl", "jsonl.zst", "jsonl.gz"};
    r->base.kind = kinds[codec];
    return lmx__instream_open(&r->s, p->path, codec, err);
}

static void jsonl_close(lmx_input *in)
{
    if (!in)
        return;
    jsonl *r = (jsonl *)in;
    lmx__instream_close(&r->s);
    lmx__buf_free(&r->line);
    free(r);
}

/* The next line without its '\n' into r->line: 1, 0 at the end, <0 on error. A last line
 * without '\n' counts. */
static int read_line(jsonl *r, lmx_error *err)
{
    r->line.len = 0;
    for (;;) {
        if (r->chunk_len == 0) {
            int rc = r->eof ? 0 : lmx__instream_read(&r->s, r->line_no + 1, &r->chunk, &r->chunk_len, err);
            r->base.bytes_read = r->s.raw_bytes;
            if (rc < 0)
                return rc;
            if (rc == 0) {
                r->eof = 1;
                return r->line.len > 0;
            }
        }
        const uint8_t *nl = memchr(r->chunk, '\n', r->chunk_len);
        size_t n = nl ? (size_t)(nl - r->chunk) : r->chunk_len;
        if (lmx__buf_append(&r->line, r->chunk, n) != LMX_OK)
            return lmx__err(err, LMX_ENOMEM, "%s:%llu: line longer than %zu bytes", r->s.path,
                            (unsigned long long)r->line_no + 1, LMX_INPUT_MAX_RECORD);
        r->chunk += n + (nl ? 1 : 0);
        r->chunk_len -= n + (nl ? 1 : 0);
        if (nl)
            return 1;
    }
}

static int jsonl_next(lmx_input *in, lmx_input_rec *rec, lmx_error *err)
{
    jsonl *r = (jsonl *)in;
    int rc = read_line(r, err);
    if (rc <= 0)
        return rc;
    const char *s = (const char *)r->line.data;
    size_t len = r->line.len, k = 0;
    while (k < len && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r'))
        k++;
    rec->kind = k == len ? LMX_REC_SKIP : LMX_REC_RAW; /* blank lines are counted, not documents */
    rec->data = s;
    rec->len = len;
    rec->source = in->params->path;
    rec->where = ++r->line_no;
    rec->bytes = len + 1;
    return 1;
}

static int jsonl_finish(lmx_input *in, char hex[65], lmx_error *err)
{
    (void)err;
    lmx__instream_hash(&((jsonl *)in)->s, hex);
    return LMX_OK;
}

/* The text at --text-field of a JSON object, or NULL with the reason in why. */
static json_t *text_of(json_t *doc, const lmx_input_params *p, char *why, size_t n)
{
    json_t *t = lmx__json_at_path(doc, p->text_field);
    if (!json_is_string(t)) {
        snprintf(why, n, "field '%s' missing or not a string", p->text_field);
        return NULL;
    }
    return t;
}

/* Ordinary records take lmx__jsonl_fast_fields (no jansson tree per line, which was a third of
 * the indexer's time) when the text is at a top-level key and the id (if asked) is a string; any
 * other line or layout goes through jansson, which gives the rejection reasons. */
static void jsonl_parse(const lmx_input_params *p, const char *line, size_t len, lmx_input_parsed *out)
{
    lmx_buf *text = &out->scratch[0], *dom = &out->scratch[1], *id = &out->scratch[2];
    lmx__jsonl_path dpath, ipath;
    const lmx__jsonl_path *paths[2];
    lmx_buf *bufs[2];
    int found[2] = {0, 0};
    size_t nf = 0;
    out->text = out->domain = out->doc_id = NULL;
    int fast_ok = 1;
    if (!p->domain) {
        fast_ok &= lmx__jsonl_path_init(&dpath, p->domain_field);
        paths[nf] = &dpath;
        bufs[nf++] = dom;
    }
    if (p->id_field) {
        fast_ok &= lmx__jsonl_path_init(&ipath, p->id_field);
        paths[nf] = &ipath;
        bufs[nf++] = id;
    }
    /* an id that is not a string (a number) is shown as JSON text: jansson's business */
    if (fast_ok && lmx__jsonl_fast_fields(line, len, LMX__JSONL_UTF8, p->text_field, text, nf, paths, bufs, found) &&
        (!p->id_field || found[nf - 1])) {
        out->text = (const char *)text->data;
        out->text_len = text->len;
        out->domain = !p->domain && found[0] ? (const char *)dom->data : NULL;
        out->doc_id = p->id_field ? (const char *)id->data : NULL;
        return;
    }
    json_error_t je;
    json_t *doc = json_loadb(line, len, JSON_ALLOW_NUL, &je), *t = NULL;
    const char *d = doc && !p->domain ? lmx__jsonl_get_path(doc, p->domain_field) : NULL;
    json_t *idv = doc && p->id_field ? lmx__json_at_path(doc, p->id_field) : NULL;
    text->len = dom->len = 0;
    if (!doc || !json_is_object(doc))
        snprintf(out->why, sizeof out->why, "invalid JSON: %s", doc ? "not an object" : je.text);
    else if (!(t = text_of(doc, p, out->why, sizeof out->why)))
        ;
    else if (lmx__buf_append(text, json_string_value(t), json_string_length(t) + 1) != LMX_OK ||
             (d && lmx__buf_append(dom, d, strlen(d) + 1) != LMX_OK))
        snprintf(out->why, sizeof out->why, "out of memory");
    else {
        out->text = (const char *)text->data;
        out->text_len = json_string_length(t);
        out->domain = d ? (const char *)dom->data : NULL;
        /* an id that is absent (or an object/array) is simply not kept: it is provenance only */
        out->doc_id = idv && lmx__json_id_text(idv, id) == 0 ? (const char *)id->data : NULL;
    }
    json_decref(doc);
}

const lmx_input_format lmx__input_jsonl = {
    .name = "jsonl",
    .what = "a .jsonl, .jsonl.gz, .json.gz, .jsonl.zst, .jsonl.zstd file",
    .flags = LMX_INPUT_HASH_REUSE,
    .match = jsonl_match,
    .open = jsonl_open,
    .next = jsonl_next,
    .finish = jsonl_finish,
    .close = jsonl_close,
    .parse = jsonl_parse,
};
