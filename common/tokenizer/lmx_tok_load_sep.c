/* tokenizer.json loader, the document separators: which BOS/EOS tokens the model has and which
 * of them its convention puts around a document (add_special_tokens=True), from the
 * post_processor template and tokenizer_config.json. Rules and the per-family table:
 * proto/TOKENIZER.md "Document separators". */
#include "lmx_tok_internal.h"

#include <jansson.h>
#include <string.h>

/* Chat turn ends: a chat config's eos_token, never a document separator. */
static const char *const turn_ends[] = {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>",
                                        "<|return|>", "<|end|>", "<|call|>",
                                        "<|END_OF_TURN_TOKEN|>", NULL};
/* Fallbacks, special added tokens only (never an ordinary vocabulary string). */
static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", "<bos>",
                                        "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        "<|startoftext|>", NULL};
static const char *const eos_names[] = {"<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>",
                                        "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        NULL};

static int display_is(const lmx_tokjson *t, uint32_t id, const char *s, size_t n)
{
    return id < t->id_limit && t->id_off[id] != UINT32_MAX && t->id_len[id] == n &&
           memcmp(t->id_arena.data + t->id_off[id], s, n) == 0;
}

/* An added token with content s (special ones only when special_only). */
static uint32_t added_named(const lmx_tokjson *t, const char *s, int special_only)
{
    size_t n = strlen(s);
    for (uint32_t i = 0; i < t->n_added; i++)
        if ((!special_only || t->added[i].special) && display_is(t, t->added[i].id, s, n))
            return t->added[i].id;
    return LMX_TOKEN_NONE;
}

static uint32_t first_special(const lmx_tokjson *t, const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        uint32_t id = added_named(t, names[i], 1);
        if (id != LMX_TOKEN_NONE)
            return id;
    }
    return LMX_TOKEN_NONE;
}

/* A token the config names: an added token, else a vocab entry (the config says so). */
static uint32_t config_named(lmx_tok_loadctx *c, const char *s)
{
    lmx_tokjson *t = c->t;
    uint32_t id = added_named(t, s, 0);
    if (id != LMX_TOKEN_NONE)
        return id;
    const lmx_tok_strmap *ov = t->byte_level ? &c->orig : &t->vocab;
    return ov->slots ? lmx__tok_strmap_get(ov, (const uint8_t *)s, strlen(s)) : LMX_TOKEN_NONE;
}

/* tokenizer_config.json's key: 0 absent, 1 null, 2 a token (string or {"content": ...}). */
static int cfg_tok(json_t *cfg, const char *key, const char **s)
{
    json_t *v = cfg ? json_object_get(cfg, key) : NULL;
    if (!v)
        return 0;
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (json_is_string(v)) {
        *s = json_string_value(v);
        return 2;
    }
    return json_is_null(v) ? 1 : 0;
}

/* The special tokens a TemplateProcessing's `single` puts before ($A) and after it. */
static void template_tokens(json_t *pp, uint32_t *pre, uint32_t *post)
{
    if (!json_is_object(pp))
        return;
    const char *type = lmx__tokload_type(pp);
    if (type && strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(pp, "processors"), *e;
        size_t i;
        json_array_foreach(arr, i, e)
            template_tokens(e, pre, post);
        return;
    }
    if (!type || strcmp(type, "TemplateProcessing") != 0)
        return;
    json_t *single = json_object_get(pp, "single"), *sp = json_object_get(pp, "special_tokens"), *e;
    size_t i;
    int seen_seq = 0;
    json_array_foreach(single, i, e)
    {
        if (json_object_get(e, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        json_t *st = json_object_get(json_object_get(e, "SpecialToken"), "id");
        if (!json_is_string(st))
            continue;
        json_t *ids = json_object_get(json_object_get(sp, json_string_value(st)), "ids");
        json_t *id = json_array_get(ids, 0);
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= LMX_TOK_MAX_ID)
            continue;
        if (!seen_seq && *pre == LMX_TOKEN_NONE)
            *pre = (uint32_t)json_integer_value(id);
        else if (seen_seq)
            *post = (uint32_t)json_integer_value(id);
    }
}

void lmx__tokload_separators(lmx_tok_loadctx *c, json_t *root, json_t *cfg, lmx_tok_seps *out)
{
    lmx_tokjson *t = c->t;
    uint32_t tpl_bos = LMX_TOKEN_NONE, tpl_eos = LMX_TOKEN_NONE;
    template_tokens(json_object_get(root, "post_processor"), &tpl_bos, &tpl_eos);
    const char *bs = NULL, *es = NULL;
    int kb = cfg_tok(cfg, "bos_token", &bs), ke = cfg_tok(cfg, "eos_token", &es);
    json_t *ab = cfg ? json_object_get(cfg, "add_bos_token") : NULL;
    json_t *ae = cfg ? json_object_get(cfg, "add_eos_token") : NULL;

    /* BOS: the template's leading token; else the config's (null: none); else a special token
     * named like a BOS. */
    uint32_t bos = tpl_bos;
    if (bos == LMX_TOKEN_NONE)
        bos = kb == 2 ? config_named(c, bs) : kb == 1 ? LMX_TOKEN_NONE : first_special(t, bos_names);
    /* EOS, the document end: the template's trailing token; else the config's unless it is a
     * chat turn end (null: none); else a special token named like a document end. */
    uint32_t eos = tpl_eos;
    if (eos == LMX_TOKEN_NONE && ke == 2) {
        int turn = 0;
        for (int i = 0; turn_ends[i]; i++)
            turn |= strcmp(es, turn_ends[i]) == 0;
        eos = turn ? first_special(t, eos_names) : config_named(c, es);
    } else if (eos == LMX_TOKEN_NONE && ke == 0) {
        eos = first_special(t, eos_names);
    }
    /* Convention: BOS when the template adds one, or add_bos_token says so, or (neither said)
     * the model declares a BOS distinct from its EOS; EOS when the template or add_eos_token
     * adds one, and always when there is no BOS (documents need a separator: GPT-2, Qwen). */
    int add_bos = tpl_bos != LMX_TOKEN_NONE ||
                  (json_is_boolean(ab) ? json_is_true(ab) : bos != eos) ;
    add_bos = add_bos && bos != LMX_TOKEN_NONE;
    int add_eos = tpl_eos != LMX_TOKEN_NONE || json_is_true(ae) || !add_bos;
    add_eos = add_eos && eos != LMX_TOKEN_NONE;
    out->bos = bos;
    out->eos = eos;
    out->add_bos = add_bos;
    out->add_eos = add_eos;
}
