/* The one hand-written JSON scanner (internal): validates and skips JSON text by jansson's
 * grammar for json_loadb() (strict JSON, whitespace ' ' '\t' '\n' '\r') and decodes strings,
 * without building anything. Used by the JSON Lines fast path (lmx_jsonl.c) and the
 * tokenizer.json vocabulary/merges scanner (tokenizer/lmx_tok_vocab_scan.c).
 *
 * Every function answers NULL (or -1) for "not reproduced here": the text is invalid JSON, or
 * valid but outside what the caller asked the scanner to accept (flags). Callers then hand the
 * whole input to jansson, so results and error messages stay jansson's. Positions are plain
 * pointers into [p, end); nothing is allocated. */
#ifndef LMX_JSON_SCAN_H
#define LMX_JSON_SCAN_H

#include <stddef.h>

/* Flags for strings (and, through lmx__jscan_value, for every string inside a value). */
enum {
    /* bytes >= 0x80 must form valid UTF-8 (jansson checks it); without it they pass as they are */
    LMX_JSCAN_UTF8 = 1,
    /* \u0000 is refused (jansson refuses it in object keys, and everywhere without
     * JSON_ALLOW_NUL) */
    LMX_JSCAN_NO_NUL = 2,
    /* no escapes at all: for keys compared as written */
    LMX_JSCAN_RAW = 4,
    /* lmx__jscan_value: numbers only as -?(0|[1-9][0-9]*)(\.[0-9]+)? of at most 15 chars, which
     * fit jansson's integer and real without overflow (exponents and longer ones are refused) */
    LMX_JSCAN_PLAIN_NUM = 8,
};

static inline const char *lmx__jscan_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* The string whose body starts at p (just after the opening quote). Returns the position after
 * the closing quote. *dlen (when dlen is not NULL) gets the decoded length, which equals the raw
 * length exactly when the string has no escapes. dst: NULL to only validate, else where to
 * decode, with room for the raw length; dst may be the string's own first byte (decoding in
 * place: it never grows). Unpaired surrogate escapes are refused (jansson rejects them). */
const char *lmx__jscan_string(const char *p, const char *end, unsigned flags, char *dst,
                              size_t *dlen);

/* A number at p by JSON's grammar (with LMX_JSCAN_PLAIN_NUM in flags: see there). */
const char *lmx__jscan_number(const char *p, const char *end, unsigned flags);

/* Skips the value at p: a literal, number, string, or an array/object nested at most depth_left
 * levels deep. Strings follow flags; object keys also refuse \u0000, as jansson does. */
const char *lmx__jscan_value(const char *p, const char *end, unsigned flags, int depth_left);

/* At `open` ('{' or '['): consumes it and the whitespace after. 1 when members/elements follow,
 * 0 for an empty object/array (the closer consumed too), -1 when *p is not `open`. */
int lmx__jscan_open(const char **p, const char *end, char open);

/* The ':' after an object key with the whitespace around it; NULL when missing. */
const char *lmx__jscan_colon(const char *p, const char *end);

/* After a member or element: 1 when another follows (',' and whitespace consumed), 0 at the end
 * (`close`, '}' or ']', consumed), -1 on anything else. */
int lmx__jscan_next(const char **p, const char *end, char close);

#endif
