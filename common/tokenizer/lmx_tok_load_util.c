/* tokenizer.json loader, the small helpers every loader file shares (errors naming the JSON path,
 * typed getters). A leaf: calls nothing else in the folder. */
#include "lmx_tok_internal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lmx__tokload_bad(lmx_tok_loadctx *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = lmx__verr(c->err, code, fmt, ap);
    va_end(ap);
    return rc;
}

/* Copies a JSON string into a malloc'ed NUL-terminated buffer. */
int lmx__tokload_dupstr(lmx_tok_loadctx *c, json_t *v, const char *path, char **out, size_t *len)
{
    if (!json_is_string(v))
        return lmx__tokload_bad(c, LMX_EFORMAT, "%s: expected a string", path);
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (!s)
        return lmx__tokload_bad(c, LMX_ENOMEM, "%s: out of memory", path);
    memcpy(s, json_string_value(v), n);
    s[n] = 0;
    *out = s;
    if (len)
        *len = n;
    return LMX_OK;
}

/* Optional boolean: absent or null -> def. */
int lmx__tokload_getbool(lmx_tok_loadctx *c, json_t *o, const char *key, const char *path, int def, int *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return LMX_OK;
    }
    if (!json_is_boolean(v))
        return lmx__tokload_bad(c, LMX_EFORMAT, "%s.%s: expected true or false", path, key);
    *out = json_is_true(v);
    return LMX_OK;
}

const char *lmx__tokload_type(json_t *o)
{
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

int lmx__tokload_id(lmx_tok_loadctx *c, json_t *v, const char *path, uint32_t *id)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= (json_int_t)LMX_TOK_MAX_ID)
        return lmx__tokload_bad(c, LMX_EFORMAT, "%s: expected an id in [0, %u)", path, LMX_TOK_MAX_ID);
    *id = (uint32_t)json_integer_value(v);
    return LMX_OK;
}

void lmx__tokload_quote(char *dst, size_t cap, const char *s, size_t n)
{
    /* short, printable rendition of a token for messages */
    size_t j = 0;
    for (size_t i = 0; i < n && j + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') { dst[j++] = '\\'; dst[j++] = (char)ch; }
        else if (ch < 0x20) j += (size_t)snprintf(dst + j, cap - j, "\\x%02x", ch);
        else dst[j++] = (char)ch;
    }
    if (j + 5 >= cap && cap > 4) { dst[j++] = '.'; dst[j++] = '.'; dst[j++] = '.'; }
    dst[j] = 0;
}
