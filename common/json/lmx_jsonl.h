/* Fast field extraction from one JSON Lines record (internal; used by `longmixd tokenize` and the
 * indexer).
 *
 * jansson builds a tree of every line (the text copied, "meta" objects allocated and freed),
 * which cost a third of both commands. lmx__jsonl_fast() validates a line by jansson's own rules
 * for json_loadb(s, n, JSON_ALLOW_NUL) without building anything and decodes only the "text"
 * string and, optionally, the string at one dotted path (the indexer's domain field). It is a
 * pure shortcut: it answers 0 ("use jansson") for anything it does not reproduce exactly, so the
 * callers' jansson path keeps producing the results and error messages for every unusual line. */
#ifndef LMX_JSONL_H
#define LMX_JSONL_H

#include "lmx_util.h"

#include <jansson.h>
#include <stddef.h>

#define LMX__JSONL_PATH_MAX 8

/* A dotted field path ("meta.redpajama_set_name") split the way lmx__jsonl_get_path walks it. */
typedef struct lmx__jsonl_path {
    int n; /* segments */
    const char *seg[LMX__JSONL_PATH_MAX];
    size_t len[LMX__JSONL_PATH_MAX];
} lmx__jsonl_path;

/* Splits field (kept by reference: it must outlive *path). Returns 0 when the fast path cannot
 * reproduce lmx__jsonl_get_path for this field (empty segments, a segment of 256+ bytes, more than
 * LMX__JSONL_PATH_MAX segments, a first segment "text", no segment): the caller then uses jansson
 * for every line. */
int lmx__jsonl_path_init(lmx__jsonl_path *path, const char *field);

/* The string at dotted path field in doc (jansson), or NULL: missing, a non-object on the way, or
 * not a string. The reference the fast path reproduces. */
const char *lmx__jsonl_get_path(json_t *doc, const char *field);

/* Flags of lmx__jsonl_fast. */
enum {
    /* Answer 0 for a line that is not valid UTF-8 (jansson rejects it). Without it, bytes >= 0x80
     * inside strings are copied as they are (`longmixd tokenize` repairs them later exactly as
     * repairing the line first would). */
    LMX__JSONL_UTF8 = 1
};

/* Line s[0..n). Returns 1 when json_loadb(s, n, JSON_ALLOW_NUL) gives an object whose "text" is a
 * string: text (reset) holds that string's bytes (NULs included); when path is not NULL,
 * *field_found tells whether the string at path exists, and field (reset) holds it NUL-terminated.
 * Returns 0 for "use jansson" (invalid JSON, no string "text", anything not reproduced exactly,
 * out of memory); text and field are then unspecified. */
int lmx__jsonl_fast(const char *s, size_t n, unsigned flags, const lmx__jsonl_path *path, lmx_buf *text,
                    lmx_buf *field, int *field_found);
/* The same with the text under another top-level key (`--text-field content`): the answer of
 * json_object_get(doc, text_key) instead of "text". Declines (0) for a key with a '.' (a nested
 * path) or equal to the field path's first segment. */
int lmx__jsonl_fast_key(const char *s, size_t n, unsigned flags, const char *text_key, const lmx__jsonl_path *path,
                        lmx_buf *text, lmx_buf *field, int *field_found);
/* The same with up to 2 field paths (the indexer's domain and --id-field): fields[k] and
 * found[k] as field and field_found above, for paths[k]. Declines also when a path starts with
 * the text key. */
int lmx__jsonl_fast_fields(const char *s, size_t n, unsigned flags, const char *text_key, lmx_buf *text,
                           size_t n_fields, const lmx__jsonl_path *const *paths, lmx_buf *const *fields, int *found);

#endif
