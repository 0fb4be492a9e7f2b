/* Tokenizer front: dispatches between the built-in `bytes` tokenizer and tokenizer.json
 * (lmx_tok_load*.c load, lmx_tok_encode.c encodes, lmx_tok_decode.c decodes).
 * Spec: proto/TOKENIZER.md. */
#include "lmx_tokenizer.h"
#include "lmx_tok_internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BYTES_BOS 256u
#define BYTES_EOS 257u
#define TOKENIZER_JSON_MAX (1024u << 20)
#define TOKENIZER_CONFIG_MAX (64u << 20)

struct lmx_tokenizer {
    int is_bytes;
    lmx_tokenizer_options opts;
    lmx_tokjson *tj;
    char identity[32 + 2 * 32 + 96];
};

struct lmx_encoder {
    const lmx_tokenizer *tok;
    lmx_tokjson_enc je;
};

/* data: writable (the loader decodes in place and restores it before returning). */
static int finish_open(char *data, size_t len, const char *cfg, size_t cfg_len,
                       const lmx_tokenizer_options *opts, lmx_tokenizer **out, lmx_error *err)
{
    if (sodium_init() < 0)
        return lmx__err(err, LMX_EINTERNAL, "tokenizer: libsodium failed to initialize");
    lmx_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return lmx__err(err, LMX_ENOMEM, "tokenizer: out of memory");
    if (opts)
        t->opts = *opts;
    int rc = lmx__tokjson_load(data, len, cfg, cfg_len, &t->tj, err);
    if (rc) {
        free(t);
        return rc;
    }
    uint8_t h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)data, len, NULL, 0);
    memcpy(t->identity, "blake2b-256:", 12);
    lmx__hex(h, sizeof h, t->identity + 12);
    /* Matching added tokens changes the ids of some texts, so it is part of what an index was
     * built with (reuse, merge and plan ids follow from the identity). */
    if (t->opts.match_added_tokens)
        strcat(t->identity, LMX_TOKENIZER_MATCH_ADDED_SUFFIX);
    /* tokenizer_config.json is covered only where it decides something: the separators */
    const lmx_tokjson *tj = t->tj;
    if (tj->seps_from_config) {
        char sep[80], b[12] = "none", e[12] = "none";
        if (tj->bos != LMX_TOKEN_NONE)
            snprintf(b, sizeof b, "%u", tj->bos);
        if (tj->eos != LMX_TOKEN_NONE)
            snprintf(e, sizeof e, "%u", tj->eos);
        snprintf(sep, sizeof sep, "+separators:bos=%s%s,eos=%s%s", b, tj->add_bos ? "" : "(off)", e,
                 tj->add_eos ? "" : "(off)");
        strcat(t->identity, sep);
    }
    *out = t;
    return LMX_OK;
}

int lmx__tokenizer_open(const char *spec, const lmx_tokenizer_options *opts, lmx_tokenizer **out,
                        lmx_error *err)
{
    *out = NULL;
    if (!spec || !*spec)
        return lmx__err(err, LMX_EINVAL, "--tokenizer: empty value (use 'bytes' or a tokenizer.json path)");
    if (strcmp(spec, "bytes") == 0) {
        lmx_tokenizer *t = calloc(1, sizeof *t);
        if (!t)
            return lmx__err(err, LMX_ENOMEM, "tokenizer: out of memory");
        t->is_bytes = 1;
        if (opts)
            t->opts = *opts;
        strcpy(t->identity, "bytes");
        *out = t;
        return LMX_OK;
    }
    char *data = NULL, *cfg = NULL;
    size_t len = 0, cfg_len = 0;
    int rc = lmx__read_file(spec, TOKENIZER_JSON_MAX, &data, &len, err);
    if (rc)
        return lmx__err_prefix(err, "tokenizer %s: ", spec);
    /* tokenizer_config.json next to the file, if any: only for BOS/EOS discovery */
    const char *slash = strrchr(spec, '/');
    size_t dl = slash ? (size_t)(slash - spec + 1) : 0;
    char *cpath = malloc(dl + sizeof "tokenizer_config.json");
    if (!cpath) {
        free(data);
        return lmx__err(err, LMX_ENOMEM, "tokenizer: out of memory");
    }
    memcpy(cpath, spec, dl);
    strcpy(cpath + dl, "tokenizer_config.json");
    lmx_error cerr;
    if (lmx__read_file(cpath, TOKENIZER_CONFIG_MAX, &cfg, &cfg_len, &cerr) != LMX_OK)
        cfg = NULL;
    free(cpath);
    rc = finish_open(data, len, cfg, cfg_len, opts, out, err);
    free(data);
    free(cfg);
    if (rc)
        return lmx__err_prefix(err, "tokenizer %s: ", spec);
    return LMX_OK;
}

int lmx__tokenizer_open_buffer(const void *data, size_t len, const void *config,
                               size_t config_len, const lmx_tokenizer_options *opts,
                               lmx_tokenizer **out, lmx_error *err)
{
    *out = NULL;
    /* the loader needs a writable copy */
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return lmx__err(err, LMX_ENOMEM, "tokenizer: out of memory");
    if (len)
        memcpy(copy, data, len);
    int rc = finish_open(copy, len, config, config_len, opts, out, err);
    free(copy);
    return rc;
}

void lmx__tokenizer_free(lmx_tokenizer *tok)
{
    if (!tok)
        return;
    lmx__tokjson_free(tok->tj);
    free(tok);
}

const char *lmx__tokenizer_kind(const lmx_tokenizer *tok) { return tok->is_bytes ? "bytes" : "tokenizer.json"; }
const char *lmx__tokenizer_identity(const lmx_tokenizer *tok) { return tok->identity; }
uint32_t lmx__tokenizer_vocab_size(const lmx_tokenizer *tok) { return tok->is_bytes ? 258u : tok->tj->id_limit; }
uint32_t lmx__tokenizer_bos(const lmx_tokenizer *tok) { return tok->is_bytes ? BYTES_BOS : tok->tj->bos; }
uint32_t lmx__tokenizer_eos(const lmx_tokenizer *tok) { return tok->is_bytes ? BYTES_EOS : tok->tj->eos; }
int lmx__tokenizer_default_bos(const lmx_tokenizer *tok) { return tok->is_bytes ? 1 : tok->tj->add_bos; }
int lmx__tokenizer_default_eos(const lmx_tokenizer *tok) { return tok->is_bytes ? 0 : tok->tj->add_eos; }

const char *lmx__tokenizer_token_str(const lmx_tokenizer *tok, uint32_t id, size_t *len)
{
    *len = 0;
    if (tok->is_bytes || id >= tok->tj->id_limit || tok->tj->id_off[id] == UINT32_MAX)
        return NULL;
    *len = tok->tj->id_len[id];
    return (const char *)tok->tj->id_arena.data + tok->tj->id_off[id];
}

uint32_t lmx__tokenizer_token_id(const lmx_tokenizer *tok, const char *s, size_t n)
{
    if (tok->is_bytes)
        return n == 1 ? (uint8_t)s[0] : LMX_TOKEN_NONE;
    const lmx_tokjson *tj = tok->tj;
    for (uint32_t i = 0; i < tj->n_added; i++) {
        uint32_t id = tj->added[i].id;
        if (tj->id_len[id] == n && memcmp(tj->id_arena.data + tj->id_off[id], s, n) == 0)
            return id;
    }
    for (uint32_t id = 0; id < tj->id_limit; id++)
        if (tj->id_off[id] != UINT32_MAX && tj->id_len[id] == n &&
            memcmp(tj->id_arena.data + tj->id_off[id], s, n) == 0)
            return id;
    return LMX_TOKEN_NONE;
}

int lmx__encoder_create(const lmx_tokenizer *tok, lmx_encoder **out, lmx_error *err)
{
    *out = NULL;
    lmx_encoder *e = calloc(1, sizeof *e);
    if (!e)
        return lmx__err(err, LMX_ENOMEM, "encoder: out of memory");
    e->tok = tok;
    if (!tok->is_bytes &&
        lmx__tokjson_enc_init(&e->je, tok->tj, tok->opts.match_added_tokens) != LMX_OK) {
        free(e);
        return lmx__err(err, LMX_ENOMEM, "encoder: out of memory");
    }
    *out = e;
    return LMX_OK;
}

void lmx__encoder_free(lmx_encoder *enc)
{
    if (!enc)
        return;
    if (!enc->tok->is_bytes)
        lmx__tokjson_enc_free(&enc->je);
    free(enc);
}

int lmx__encode(lmx_encoder *enc, const char *text, size_t len, lmx_ids *ids, lmx_error *err)
{
    if (!enc->tok->is_bytes)
        return lmx__tokjson_encode(&enc->je, (const uint8_t *)text, len, ids, err);
    if (lmx__ids_reserve(ids, len) != LMX_OK)
        return lmx__err(err, LMX_ENOMEM, "encode: out of memory for %zu tokens", len);
    const uint8_t *p = (const uint8_t *)text;
    for (size_t i = 0; i < len; i++)
        ids->v[ids->n++] = p[i];
    return LMX_OK;
}

int lmx__decode(const lmx_tokenizer *tok, const uint32_t *ids, size_t n, lmx_buf *out, lmx_error *err)
{
    if (!tok->is_bytes)
        return lmx__tokjson_decode(tok->tj, ids, n, out, err);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= 258)
            return lmx__err(err, LMX_EINVAL, "decode: id %u outside the bytes vocabulary", ids[i]);
        if (ids[i] >= 256)
            continue; /* BOS/EOS have no text */
        uint8_t c = (uint8_t)ids[i];
        if (lmx__buf_append(out, &c, 1) != LMX_OK)
            return lmx__err(err, LMX_ENOMEM, "decode: out of memory");
    }
    return LMX_OK;
}
