/* tokenizer.json loader, the pipeline steps: normalizers, pre-tokenizers and decoders, each a
 * step or a "Sequence" of steps (load_steps). Errors name the JSON path. */
#include "lmx_tok_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* {"String": s} or {"Regex": r}: sets *is_regex and *s. */
static int get_pattern(lmx_tok_loadctx *c, json_t *o, const char *path, int *is_regex, char **s,
                       size_t *n)
{
    json_t *p = json_object_get(o, "pattern");
    char sub[300];
    snprintf(sub, sizeof sub, "%s.pattern", path);
    if (!json_is_object(p))
        return lmx__tokload_bad(c, LMX_EFORMAT, "%s: expected {\"String\": ...} or {\"Regex\": ...}", sub);
    json_t *v = json_object_get(p, "String");
    *is_regex = 0;
    if (!v) {
        v = json_object_get(p, "Regex");
        *is_regex = 1;
    }
    if (!v)
        return lmx__tokload_bad(c, LMX_EFORMAT, "%s: expected {\"String\": ...} or {\"Regex\": ...}", sub);
    snprintf(sub, sizeof sub, "%s.pattern.%s", path, *is_regex ? "Regex" : "String");
    return lmx__tokload_dupstr(c, v, sub, s, n);
}

/* ---- normalizer ---------------------------------------------------------------------------- */

static int normalizer_step(lmx_tok_loadctx *c, json_t *o, const char *type, const char *path)
{
    lmx_tokjson *t = c->t;
    char sub[300];
    if (t->n_norm == LMX_TOK_MAX_STEPS)
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "%s: more than %d normalizer steps", path, LMX_TOK_MAX_STEPS);
    lmx_tok_norm *n = &t->norm[t->n_norm];
    memset(n, 0, sizeof *n);
    int rc;
    if (strcmp(type, "Prepend") == 0) {
        n->type = LMX_NORM_PREPEND;
        snprintf(sub, sizeof sub, "%s.prepend", path);
        rc = lmx__tokload_dupstr(c, json_object_get(o, "prepend"), sub, &n->a, &n->alen);
    } else if (strcmp(type, "Replace") == 0) {
        int is_re;
        n->type = LMX_NORM_REPLACE;
        rc = get_pattern(c, o, path, &is_re, &n->a, &n->alen);
        if (!rc && is_re) {
            char msg[200];
            rc = lmx__tok_regex_compile(n->a, n->alen, &n->rx, msg, sizeof msg);
            if (rc)
                rc = lmx__tokload_bad(c, rc, "%s.pattern.Regex: %s", path, msg);
        }
        if (!rc && !is_re && n->alen == 0)
            rc = lmx__tokload_bad(c, LMX_EUNSUPPORTED, "%s.pattern.String: empty pattern is not supported", path);
        snprintf(sub, sizeof sub, "%s.content", path);
        if (!rc)
            rc = lmx__tokload_dupstr(c, json_object_get(o, "content"), sub, &n->b, &n->blen);
    } else if (strcmp(type, "NFC") == 0 || strcmp(type, "NFD") == 0 || strcmp(type, "NFKC") == 0 ||
               strcmp(type, "NFKD") == 0) {
        n->type = type[2] == 'C' ? LMX_NORM_NFC : type[2] == 'D' ? LMX_NORM_NFD
                : type[3] == 'C' ? LMX_NORM_NFKC : LMX_NORM_NFKD;
        rc = LMX_OK;
    } else if (strcmp(type, "Lowercase") == 0) {
        n->type = LMX_NORM_LOWERCASE;
        rc = LMX_OK;
    } else if (strcmp(type, "Precompiled") == 0) {
        json_t *cm = json_object_get(o, "precompiled_charsmap");
        char msg[200];
        n->type = LMX_NORM_PRECOMPILED;
        if (!json_is_string(cm))
            rc = lmx__tokload_bad(c, LMX_EFORMAT, "%s.precompiled_charsmap: expected a base64 string", path);
        else if ((rc = lmx__tok_charsmap_load(json_string_value(cm), json_string_length(cm), &n->cm,
                                              msg, sizeof msg)) != LMX_OK)
            rc = lmx__tokload_bad(c, rc, "%s.precompiled_charsmap: %s", path, msg);
    } else if (strcmp(type, "StripAccents") == 0) {
        n->type = LMX_NORM_STRIP_ACCENTS;
        rc = LMX_OK;
    } else if (strcmp(type, "Strip") == 0) {
        n->type = LMX_NORM_STRIP;
        rc = lmx__tokload_getbool(c, o, "strip_left", path, 1, &n->left);
        if (!rc)
            rc = lmx__tokload_getbool(c, o, "strip_right", path, 1, &n->right);
    } else if (strcmp(type, "BertNormalizer") == 0) {
        /* HF requires the three booleans; strip_accents absent or null follows lowercase */
        static const char *const key[] = {"clean_text", "handle_chinese_chars", "lowercase", "strip_accents"};
        static const unsigned bit[] = {LMX_BERT_CLEAN, LMX_BERT_CJK, LMX_BERT_LOWER, LMX_BERT_STRIP};
        n->type = LMX_NORM_BERT;
        rc = LMX_OK;
        for (int i = 0; i < 4 && !rc; i++) {
            json_t *v = json_object_get(o, key[i]);
            if (i == 3 && (!v || json_is_null(v)))
                v = (n->bert & LMX_BERT_LOWER) ? json_true() : json_false();
            if (!json_is_boolean(v))
                rc = lmx__tokload_bad(c, LMX_EFORMAT, "%s.%s: expected true or false", path, key[i]);
            else if (json_is_true(v))
                n->bert |= bit[i];
        }
    } else {
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED,
                   "%s.type: normalizer \"%s\" is not supported (supported: Sequence, Prepend, "
                   "Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Precompiled, BertNormalizer)", path, type);
    }
    t->n_norm++; /* counted even on error so free() releases the strings */
    return rc;
}

/* ---- pre-tokenizer ------------------------------------------------------------------------- */

/* o.behavior (absent: def, or an error when def is NULL) into *out. */
static int get_behavior(lmx_tok_loadctx *c, json_t *o, const char *path, const char *def, int *out)
{
    json_t *b = json_object_get(o, "behavior");
    const char *bs = json_is_string(b) ? json_string_value(b) : (!b && def) ? def : "";
    if (strcmp(bs, "Isolated") == 0) *out = LMX_SPLIT_ISOLATED;
    else if (strcmp(bs, "Removed") == 0) *out = LMX_SPLIT_REMOVED;
    else if (strcmp(bs, "MergedWithPrevious") == 0) *out = LMX_SPLIT_MERGED_PREV;
    else if (strcmp(bs, "MergedWithNext") == 0) *out = LMX_SPLIT_MERGED_NEXT;
    else if (strcmp(bs, "Contiguous") == 0) *out = LMX_SPLIT_CONTIGUOUS;
    else
        return lmx__tokload_bad(c, LMX_EFORMAT, "%s.behavior: expected Isolated, Removed, MergedWithPrevious, "
                                "MergedWithNext or Contiguous", path);
    return LMX_OK;
}

static int pretok_step(lmx_tok_loadctx *c, json_t *o, const char *type, const char *path)
{
    lmx_tokjson *t = c->t;
    char sub[300];
    if (t->n_pre == LMX_TOK_MAX_STEPS)
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "%s: more than %d pre-tokenizer steps", path,
                   LMX_TOK_MAX_STEPS);
    if (t->byte_level)
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED,
                   "%s: a pre-tokenizer after ByteLevel is not supported", path);
    lmx_tok_pre *p = &t->pre[t->n_pre];
    memset(p, 0, sizeof *p);
    int rc;
    if (strcmp(type, "Split") == 0) {
        int is_re;
        char *pat = NULL;
        size_t plen = 0;
        rc = get_pattern(c, o, path, &is_re, &pat, &plen);
        if (rc)
            return rc;
        t->n_pre++;
        if (is_re) {
            p->type = LMX_PRE_SPLIT_RE;
            if (strcmp(pat, lmx__tok_re_llama3) == 0) { p->re = LMX_RE_LLAMA3; p->re_digits = 3; }
            else if (strcmp(pat, lmx__tok_re_qwen2) == 0) { p->re = LMX_RE_LLAMA3; p->re_digits = 1; }
            else if (strcmp(pat, lmx__tok_re_gpt2) == 0) p->re = LMX_RE_GPT2;
            else if (strcmp(pat, lmx__tok_re_o200k) == 0) p->re = LMX_RE_O200K;
            else if (strcmp(pat, lmx__tok_re_deepseek) == 0) p->re = LMX_RE_DEEPSEEK;
            else if (strcmp(pat, lmx__tok_re_digits3) == 0) p->re = LMX_RE_DIGITS3;
            else if (strcmp(pat, lmx__tok_re_dscjk) == 0) p->re = LMX_RE_DSCJK;
            /* every pattern is compiled: the fast scanners are only a shortcut for it */
            char msg[200];
            rc = lmx__tok_regex_compile(pat, plen, &p->rx, msg, sizeof msg);
            if (rc)
                rc = lmx__tokload_bad(c, rc, "%s.pattern.Regex: regex %.120s%s: %s", path, pat,
                                      plen > 120 ? "..." : "", msg);
            free(pat);
            if (rc)
                return rc;
        } else {
            p->type = LMX_PRE_SPLIT_STR;
            p->str = pat;
            p->slen = plen;
            if (!plen)
                return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "%s.pattern.String: empty pattern is not supported",
                           path);
        }
        if ((rc = get_behavior(c, o, path, NULL, &p->behavior)) ||
            (rc = lmx__tokload_getbool(c, o, "invert", path, 0, &p->invert)))
            return rc;
        /* scanners with gaps are exact only where gaps and matches are alike */
        if (p->re >= LMX_RE_DEEPSEEK && (p->behavior != LMX_SPLIT_ISOLATED || p->invert))
            p->re = 0;
        return LMX_OK;
    }
    if (strcmp(type, "Digits") == 0 || strcmp(type, "WhitespaceSplit") == 0 ||
        strcmp(type, "Punctuation") == 0 || strcmp(type, "CharDelimiterSplit") == 0) {
        /* HF splits on a char predicate */
        p->type = LMX_PRE_SPLIT_CHAR;
        t->n_pre++;
        p->behavior = LMX_SPLIT_REMOVED;
        if (type[0] == 'D') {
            int ind = 0;
            if ((rc = lmx__tokload_getbool(c, o, "individual_digits", path, 0, &ind)))
                return rc;
            p->pred = LMX_CHAR_DIGIT;
            p->behavior = ind ? LMX_SPLIT_ISOLATED : LMX_SPLIT_CONTIGUOUS;
        } else if (type[0] == 'W') {
            p->pred = LMX_CHAR_WS;
        } else if (type[0] == 'P') {
            p->pred = LMX_CHAR_PUNCT;
            if ((rc = get_behavior(c, o, path, "Isolated", &p->behavior)))
                return rc;
        } else {
            json_t *d = json_object_get(o, "delimiter");
            const char *ds = json_is_string(d) ? json_string_value(d) : "";
            uint32_t cp = 0;
            if (!*ds || (size_t)lmx__utf8_dec((const uint8_t *)ds, strlen(ds), &cp) != strlen(ds))
                return lmx__tokload_bad(c, LMX_EFORMAT, "%s.delimiter: expected one character", path);
            p->pred = LMX_CHAR_EQ;
            p->pred_cp = cp;
        }
        return LMX_OK;
    }
    if (strcmp(type, "Whitespace") == 0) {
        /* HF: the regex \w+|[^\w\s]+, non-matches removed */
        static const char ws_re[] = "\\w+|[^\\w\\s]+";
        char msg[200];
        p->type = LMX_PRE_SPLIT_RE;
        t->n_pre++;
        p->behavior = LMX_SPLIT_REMOVED;
        p->invert = 1;
        rc = lmx__tok_regex_compile(ws_re, strlen(ws_re), &p->rx, msg, sizeof msg);
        return rc ? lmx__tokload_bad(c, rc, "%s: %s", path, msg) : LMX_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        p->type = LMX_PRE_BYTELEVEL;
        t->n_pre++;
        t->byte_level = 1;
        rc = lmx__tokload_getbool(c, o, "add_prefix_space", path, 1, &p->add_prefix_space);
        if (!rc)
            rc = lmx__tokload_getbool(c, o, "use_regex", path, 1, &p->use_regex);
        return rc;
    }
    if (strcmp(type, "Metaspace") == 0) {
        p->type = LMX_PRE_METASPACE;
        t->n_pre++;
        json_t *r = json_object_get(o, "replacement");
        snprintf(sub, sizeof sub, "%s.replacement", path);
        if ((rc = lmx__tokload_dupstr(c, r, sub, &p->str, &p->slen)) != LMX_OK)
            return rc;
        if (p->slen == 0 || lmx__utf8_len((uint8_t)p->str[0]) != p->slen)
            return lmx__tokload_bad(c, LMX_EFORMAT, "%s: expected exactly one character", sub);
        json_t *ps = json_object_get(o, "prepend_scheme");
        if (json_is_string(ps)) {
            const char *s = json_string_value(ps);
            if (strcmp(s, "always") == 0) p->prepend_scheme = LMX_PREPEND_ALWAYS;
            else if (strcmp(s, "first") == 0) p->prepend_scheme = LMX_PREPEND_FIRST;
            else if (strcmp(s, "never") == 0) p->prepend_scheme = LMX_PREPEND_NEVER;
            else
                return lmx__tokload_bad(c, LMX_EFORMAT, "%s.prepend_scheme: expected always, first or never", path);
        } else {
            int aps = 1;
            if ((rc = lmx__tokload_getbool(c, o, "add_prefix_space", path, 1, &aps)) != LMX_OK)
                return rc;
            p->prepend_scheme = aps ? LMX_PREPEND_ALWAYS : LMX_PREPEND_NEVER;
        }
        return lmx__tokload_getbool(c, o, "split", path, 1, &p->split);
    }
    if (strcmp(type, "UnicodeScripts") == 0) {
        p->type = LMX_PRE_SCRIPTS;
        t->n_pre++;
        return LMX_OK;
    }
    return lmx__tokload_bad(c, LMX_EUNSUPPORTED,
               "%s.type: pre-tokenizer \"%s\" is not supported (supported: Sequence, Split, "
               "ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, "
               "CharDelimiterSplit, UnicodeScripts)", path, type);
}

/* ---- decoder (only used by decode, but an unsupported one fails the load like any component) */

static int decoder_step(lmx_tok_loadctx *c, json_t *o, const char *type, const char *path)
{
    lmx_tokjson *t = c->t;
    char sub[300];
    if (t->n_dec == LMX_TOK_MAX_STEPS)
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "%s: more than %d decoder steps", path, LMX_TOK_MAX_STEPS);
    lmx_tok_dec *d = &t->dec[t->n_dec];
    memset(d, 0, sizeof *d);
    int is_re = 0, rc = LMX_OK;
    if (!type) {
        return lmx__tokload_bad(c, LMX_EFORMAT, "%s.type: missing", path);
    } else if (strcmp(type, "ByteLevel") == 0) {
        d->type = LMX_DEC_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d->type = LMX_DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d->type = LMX_DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        d->type = LMX_DEC_REPLACE;
        t->n_dec++;
        lmx_error tmp;
        lmx_error *save = c->err;
        c->err = &tmp;
        rc = get_pattern(c, o, path, &is_re, &d->a, &d->alen);
        if (!rc) {
            snprintf(sub, sizeof sub, "%s.content", path);
            rc = lmx__tokload_dupstr(c, json_object_get(o, "content"), sub, &d->b, &d->blen);
        }
        c->err = save;
        if (rc == LMX_ENOMEM)
            return lmx__tokload_bad(c, rc, "%s", tmp.message);
        if (rc || is_re || !d->alen)
            return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "%s: decoder Replace is only supported with a "
                       "non-empty String pattern", path);
        return LMX_OK;
    } else if (strcmp(type, "Strip") == 0) {
        d->type = LMX_DEC_STRIP;
        json_t *ct = json_object_get(o, "content");
        json_t *st = json_object_get(o, "start"), *sp = json_object_get(o, "stop");
        const char *cs = json_is_string(ct) ? json_string_value(ct) : NULL;
        if (!cs || lmx__utf8_len((uint8_t)cs[0]) != strlen(cs) || !json_is_integer(st) ||
            !json_is_integer(sp) || json_integer_value(st) < 0 || json_integer_value(sp) < 0 ||
            json_integer_value(st) > 1000 || json_integer_value(sp) > 1000) {
            return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "%s: decoder Strip is only supported with one content "
                       "char and start/stop in [0, 1000]", path);
        } else {
            d->a = malloc(strlen(cs) + 1);
            if (!d->a)
                return lmx__tokload_bad(c, LMX_ENOMEM, "%s: out of memory", path);
            strcpy(d->a, cs);
            d->alen = strlen(cs);
            d->start = (int)json_integer_value(st);
            d->stop = (int)json_integer_value(sp);
        }
    } else if (strcmp(type, "Metaspace") == 0) {
        d->type = LMX_DEC_METASPACE;
        json_t *r = json_object_get(o, "replacement");
        const char *rs = json_is_string(r) ? json_string_value(r) : NULL;
        if (!rs || !*rs || lmx__utf8_len((uint8_t)rs[0]) != strlen(rs)) {
            return lmx__tokload_bad(c, LMX_EFORMAT, "%s.replacement: expected one character", path);
        } else {
            d->a = malloc(strlen(rs) + 1);
            if (!d->a)
                return lmx__tokload_bad(c, LMX_ENOMEM, "%s: out of memory", path);
            strcpy(d->a, rs);
            d->alen = strlen(rs);
            json_t *ps = json_object_get(o, "prepend_scheme");
            json_t *aps = json_object_get(o, "add_prefix_space");
            if (json_is_string(ps))
                d->prepend_scheme = strcmp(json_string_value(ps), "never") == 0
                                        ? LMX_PREPEND_NEVER
                                        : strcmp(json_string_value(ps), "first") == 0
                                              ? LMX_PREPEND_FIRST
                                              : LMX_PREPEND_ALWAYS;
            else
                d->prepend_scheme = json_is_false(aps) ? LMX_PREPEND_NEVER : LMX_PREPEND_ALWAYS;
        }
    } else {
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "%s.type: decoder \"%s\" is not supported", path, type);
    }
    t->n_dec++;
    return rc;
}

/* ---- Sequence --------------------------------------------------------------------------- */

/* Loads one step: o is not null and not a Sequence; type is o's "type" string (or NULL, only
 * for decoders). */
typedef int (*step_fn)(lmx_tok_loadctx *c, json_t *o, const char *type, const char *path);

/* o: absent or null (no step), one step, or {"type": "Sequence", key: [...]} of steps, nested
 * Sequences flattened in order. typed: a step must be an object with a type (decoders check
 * that themselves, after their step limit, as before). */
static int load_steps(lmx_tok_loadctx *c, json_t *o, const char *path, const char *key,
                      int typed, step_fn step)
{
    if (!o || json_is_null(o))
        return LMX_OK;
    if (typed && !json_is_object(o))
        return lmx__tokload_bad(c, LMX_EFORMAT, "%s: expected an object or null", path);
    const char *type = json_is_object(o) ? lmx__tokload_type(o) : NULL;
    if (typed && !type)
        return lmx__tokload_bad(c, LMX_EFORMAT, "%s.type: missing", path);
    if (!type || strcmp(type, "Sequence") != 0)
        return step(c, o, type, path);
    json_t *arr = json_object_get(o, key);
    if (!json_is_array(arr))
        return lmx__tokload_bad(c, LMX_EFORMAT, "%s.%s: expected an array", path, key);
    char sub[300];
    for (size_t i = 0; i < json_array_size(arr); i++) {
        snprintf(sub, sizeof sub, "%s.%s[%zu]", path, key, i);
        int rc = load_steps(c, json_array_get(arr, i), sub, key, typed, step);
        if (rc)
            return rc;
    }
    return LMX_OK;
}

int lmx__tokload_normalizer(lmx_tok_loadctx *c, json_t *o, const char *path)
{
    return load_steps(c, o, path, "normalizers", 1, normalizer_step);
}

int lmx__tokload_pretok(lmx_tok_loadctx *c, json_t *o, const char *path)
{
    return load_steps(c, o, path, "pretokenizers", 1, pretok_step);
}

int lmx__tokload_decoder(lmx_tok_loadctx *c, json_t *o, const char *path)
{
    return load_steps(c, o, path, "decoders", 0, decoder_step);
}
