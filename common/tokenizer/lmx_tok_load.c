/* tokenizer.json loader, the document: JSON (jansson, with model.vocab/merges read by the fast
 * scanner when it can) -> lmx_tokjson; added tokens, BOS/EOS. The loader files are the only ones
 * of the tokenizer that touch JSON (their shared helpers: lmx_tok_load_util.c). Every error names
 * the JSON path of the offending value. */
#include "lmx_tok_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_display(lmx_tok_loadctx *c, uint32_t id, const char *s, size_t n)
{
    lmx_tokjson *t = c->t;
    if (t->id_arena.len + n > UINT32_MAX)
        return lmx__tokload_bad(c, LMX_ENOMEM, "tokenizer.json: token strings too large");
    t->id_off[id] = (uint32_t)t->id_arena.len;
    t->id_len[id] = (uint32_t)n;
    if (n && lmx__buf_append(&t->id_arena, s, n) != LMX_OK)
        return lmx__tokload_bad(c, LMX_ENOMEM, "tokenizer.json: out of memory");
    return LMX_OK;
}


/* Makes room for ids up to id in the id tables (HF may give an added token an id past them). */
static int grow_ids(lmx_tok_loadctx *c, uint32_t id)
{
    lmx_tokjson *t = c->t;
    if (id < t->id_limit)
        return LMX_OK;
    uint32_t lim = id + 1;
    uint32_t *off = realloc(t->id_off, (size_t)lim * sizeof *off);
    if (off)
        t->id_off = off;
    uint32_t *len = realloc(t->id_len, (size_t)lim * sizeof *len);
    if (len)
        t->id_len = len;
    uint8_t *sp = realloc(t->id_special, lim);
    if (sp)
        t->id_special = sp;
    if (!off || !len || !sp)
        return lmx__tokload_bad(c, LMX_ENOMEM, "added_tokens: out of memory");
    for (uint32_t i = t->id_limit; i < lim; i++) {
        t->id_off[i] = UINT32_MAX;
        t->id_len[i] = 0;
        t->id_special[i] = 0;
    }
    t->id_limit = lim;
    return LMX_OK;
}

/* The id HF gives a new added token, whatever the file says (AddedVocabulary::add_tokens, run in
 * file order on load; a content added before keeps its id, see load_added): the model's id of
 * the content, else the next free id: the model's vocabulary size, or one past the largest added
 * id when that is not below it. *max_added is the largest so far (UINT32_MAX: none). */
static uint32_t hf_added_id(const lmx_tok_loadctx *c, const char *s, size_t n, uint32_t *max_added)
{
    const lmx_tokjson *t = c->t;
    /* with ByteLevel the model's keys as written are in c->orig */
    const lmx_tok_strmap *vm = t->byte_level && !t->uni ? &c->orig : &t->vocab;
    uint32_t id = vm->slots ? lmx__tok_strmap_get(vm, (const uint8_t *)s, n) : LMX_TOKEN_NONE;
    if (id == LMX_TOKEN_NONE) {
        uint32_t vs = t->uni ? t->uni->n_pieces : t->byte_level ? c->orig.n : t->vocab.n;
        id = *max_added != UINT32_MAX && (*max_added >= vs || vs == 0) ? *max_added + 1 : vs;
    }
    if (*max_added == UINT32_MAX || id > *max_added)
        *max_added = id;
    return id;
}

static int load_added(lmx_tok_loadctx *c, json_t *added)
{
    lmx_tokjson *t = c->t;
    if (!added || json_is_null(added))
        return LMX_OK;
    if (!json_is_array(added))
        return lmx__tokload_bad(c, LMX_EFORMAT, "added_tokens: expected an array");
    size_t n = json_array_size(added);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added)
        return lmx__tokload_bad(c, LMX_ENOMEM, "added_tokens: out of memory");
    lmx_buf nb = {0}, tmp = {0};
    uint32_t *u32 = NULL;
    size_t u32cap = 0;
    char path[64];
    lmx_tok_strmap seen = {0}; /* content -> index in t->added */
    uint32_t max_added = UINT32_MAX;
    int rc = lmx__tok_strmap_init(&seen, (uint32_t)n) ? lmx__tokload_bad(c, LMX_ENOMEM, "added_tokens: out of memory")
                                                       : LMX_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *o = json_array_get(added, i);
        lmx_tok_added *a = &t->added[i];
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        if (!json_is_object(o)) {
            rc = lmx__tokload_bad(c, LMX_EFORMAT, "%s: expected an object", path);
            break;
        }
        char sub[80];
        snprintf(sub, sizeof sub, "%s.id", path);
        if ((rc = lmx__tokload_id(c, json_object_get(o, "id"), sub, &a->id)))
            break;
        snprintf(sub, sizeof sub, "%s.content", path);
        char *content = NULL; /* initialized: GCC -O2 cannot see that lmx__tokload_bad() returns non-zero */
        size_t clen = 0;
        if ((rc = lmx__tokload_dupstr(c, json_object_get(o, "content"), sub, &content, &clen)))
            break;
        int special = 0, lstrip = 0, rstrip = 0, single = 0, normalized = 0;
        if ((rc = lmx__tokload_getbool(c, o, "special", path, 0, &special)) ||
            (rc = lmx__tokload_getbool(c, o, "lstrip", path, 0, &lstrip)) ||
            (rc = lmx__tokload_getbool(c, o, "rstrip", path, 0, &rstrip)) ||
            (rc = lmx__tokload_getbool(c, o, "single_word", path, 0, &single)) ||
            (rc = lmx__tokload_getbool(c, o, "normalized", path, !special, &normalized))) {
            free(content);
            break;
        }
        a->special = (uint8_t)special;
        a->lstrip = (uint8_t)lstrip;
        a->rstrip = (uint8_t)rstrip;
        a->single_word = (uint8_t)single;
        a->normalized = (uint8_t)normalized;
        t->n_added++;
        /* HF ignores the file's id (see hf_added_id); a second token with the same content but
         * other flags would replace the first one's flags in HF: not supported */
        uint32_t prev = lmx__tok_strmap_get(&seen, (const uint8_t *)content, clen);
        if (clen == 0) {
            /* HF skips an empty content: no id of its own, it never matches */
            a->content = (uint8_t *)content;
            a->len = 0;
            continue;
        }
        if (prev != LMX_TOKEN_NONE) {
            const lmx_tok_added *p = &t->added[prev];
            if (p->special != a->special || p->lstrip != a->lstrip || p->rstrip != a->rstrip ||
                p->single_word != a->single_word || p->normalized != a->normalized) {
                free(content);
                rc = lmx__tokload_bad(c, LMX_EUNSUPPORTED, "%s: same content as added_tokens[%u] "
                                      "with other flags is not supported", path, prev);
                break;
            }
            a->id = p->id;
        } else {
            a->id = hf_added_id(c, content, clen, &max_added);
            if (lmx__tok_strmap_put(&seen, (const uint8_t *)content, clen, (uint32_t)i)) {
                free(content);
                rc = lmx__tokload_bad(c, LMX_ENOMEM, "%s: out of memory", path);
                break;
            }
        }
        if ((rc = grow_ids(c, a->id))) {
            free(content);
            break;
        }
        if ((rc = set_display(c, a->id, content, clen))) {
            free(content);
            break;
        }
        t->id_special[a->id] = a->special;
        if (normalized && t->n_norm) {
            nb.len = 0;
            if (lmx__tokjson_normalize(t, (const uint8_t *)content, clen, &nb, &tmp, &u32, &u32cap)) {
                free(content);
                rc = lmx__tokload_bad(c, LMX_ENOMEM, "%s: out of memory", path);
                break;
            }
            free(content);
            content = malloc(nb.len + 1);
            if (!content) {
                rc = lmx__tokload_bad(c, LMX_ENOMEM, "%s: out of memory", path);
                break;
            }
            memcpy(content, nb.data, nb.len);
            clen = nb.len;
        }
        a->content = (uint8_t *)content;
        a->len = clen;
        if (lmx__tok_trie_add(normalized ? &t->trie_norm : &t->trie_raw, a->content, a->len, (int32_t)i))
            rc = lmx__tokload_bad(c, LMX_ENOMEM, "%s: out of memory", path);
    }
    lmx__buf_free(&nb);
    lmx__buf_free(&tmp);
    free(u32);
    lmx__tok_strmap_free(&seen);
    /* ids the file gave and HF moved leave no tail */
    while (!rc && t->id_limit > 0 && t->id_off[t->id_limit - 1] == UINT32_MAX)
        t->id_limit--;
    return rc;
}

static int load_doc(const char *data, size_t len, const char *cfgdata, size_t cfg_len,
                    lmx_tok_lists *fast, lmx_tokjson **out, lmx_error *err);

/* Puts back the raw text of the strings the fast scanner decoded in place. */
static void undo_apply(char *data, const lmx_buf *u)
{
    for (size_t i = 0; i < u->len;) {
        uint32_t hdr[2];
        memcpy(hdr, u->data + i, sizeof hdr);
        memcpy(data + hdr[0], u->data + i + sizeof hdr, hdr[1]);
        i += sizeof hdr + hdr[1];
    }
}

int lmx__tokjson_load(char *data, size_t len, const char *cfgdata, size_t cfg_len,
                      lmx_tokjson **out, lmx_error *err)
{
    *out = NULL;
    lmx_tok_lists L = {0};
    lmx_buf undo = {0};
    char *copy = len ? malloc(len) : NULL; /* only the part jansson parses is written */
    size_t copy_len = 0;
    int rc = LMX_TOKLOAD_FALLBACK;
    if (copy && lmx__tok_vocab_scan(data, len, copy, &copy_len, &L, &undo))
        rc = load_doc(copy, copy_len, cfgdata, cfg_len, &L, out, err);
    lmx__toklists_free(&L);
    free(copy);
    undo_apply(data, &undo);
    lmx__buf_free(&undo);
    if (rc != LMX_TOKLOAD_FALLBACK)
        return rc;
    return load_doc(data, len, cfgdata, cfg_len, NULL, out, err);
}

static int load_doc(const char *data, size_t len, const char *cfgdata, size_t cfg_len,
                    lmx_tok_lists *fast, lmx_tokjson **out, lmx_error *err)
{
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_ALLOW_NUL, &jerr);
    if (!root && fast)
        return LMX_TOKLOAD_FALLBACK; /* the error is reported with the real file's line and column */
    if (!root)
        return lmx__err(err, LMX_EFORMAT, "tokenizer.json: line %d column %d: %s", jerr.line,
                        jerr.column, jerr.text);
    lmx_tok_loadctx c = {0};
    c.err = err;
    c.fast = fast;
    c.doc = data;
    c.doc_len = len;
    c.t = calloc(1, sizeof *c.t);
    int rc;
    if (!c.t) {
        json_decref(root);
        return lmx__err(err, LMX_ENOMEM, "tokenizer.json: out of memory");
    }
    lmx_tokjson *t = c.t;
    if (!json_is_object(root)) {
        rc = lmx__tokload_bad(&c, LMX_EFORMAT, "tokenizer.json: top level is not an object");
        goto done;
    }
    json_t *model = json_object_get(root, "model");
    if (!model) {
        rc = lmx__tokload_bad(&c, LMX_EFORMAT, "model: missing");
        goto done;
    }
    if ((rc = lmx__tokload_normalizer(&c, json_object_get(root, "normalizer"), "normalizer")))
        goto done;
    if ((rc = lmx__tokload_pretok(&c, json_object_get(root, "pre_tokenizer"), "pre_tokenizer")))
        goto done;
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added)) {
        rc = lmx__tokload_bad(&c, LMX_EFORMAT, "added_tokens: expected an array");
        goto done;
    }
    const char *mtype = json_is_object(model) ? lmx__tokload_type(model) : NULL;
    if ((rc = mtype && strcmp(mtype, "Unigram") == 0 ? lmx__tokload_unigram(&c, model, added)
                                                     : lmx__tokload_model(&c, model, added)))
        goto done;
    if ((rc = load_added(&c, added)))
        goto done;
    if ((rc = lmx__tokload_decoder(&c, json_object_get(root, "decoder"), "decoder")))
        goto done;

    json_t *cfg = NULL;
    if (cfgdata)
        cfg = json_loadb(cfgdata, cfg_len, 0, NULL);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        cfg = NULL;
    }
    lmx_tok_seps alone, seps;
    lmx__tokload_separators(&c, root, NULL, &alone);
    lmx__tokload_separators(&c, root, cfg, &seps);
    json_decref(cfg);
    t->bos = seps.bos;
    t->eos = seps.eos;
    t->add_bos = seps.add_bos;
    t->add_eos = seps.add_eos;
    t->seps_from_config = memcmp(&alone, &seps, sizeof seps) != 0;
    rc = LMX_OK;
done:
    if (c.orig_borrowed)
        memset(&c.orig.arena, 0, sizeof c.orig.arena);
    lmx__tok_strmap_free(&c.orig);
    lmx__toklists_free(&c.own);
    json_decref(root);
    if (rc) {
        lmx__tokjson_free(t);
        return rc;
    }
    *out = t;
    return LMX_OK;
}

void lmx__tokjson_free(lmx_tokjson *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_norm; i++) {
        lmx__tok_regex_free(t->norm[i].rx);
        lmx__tok_charsmap_free(t->norm[i].cm);
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    for (int i = 0; i < t->n_pre; i++) {
        free(t->pre[i].str);
        lmx__tok_regex_free(t->pre[i].rx);
    }
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].a);
        free(t->dec[i].b);
    }
    free(t->cont_prefix);
    free(t->eow_suffix);
    lmx__tok_strmap_free(&t->vocab);
    lmx__tok_unigram_free(t->uni);
    free(t->merges.slots);
    for (uint32_t i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->added);
    free(t->trie_raw.nodes);
    free(t->trie_norm.nodes);
    free(t->id_off);
    free(t->id_len);
    free(t->id_special);
    lmx__buf_free(&t->id_arena);
    free(t);
}
