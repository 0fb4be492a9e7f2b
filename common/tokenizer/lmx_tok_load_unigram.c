/* tokenizer.json loader, the Unigram model (HF models/unigram): model.vocab as [piece, score]
 * pairs (id = position), unk_id, byte_fallback; into the shared vocab map and display strings,
 * and the piece trie + scores the encoder's Viterbi search reads (lmx_tok_unigram.c). */
#include "lmx_tok_internal.h"

#include "lmx_json_scan.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNK_PENALTY 10.0 /* HF's K_UNK_PENALTY: an unknown char scores min score - 10 */

/* ---- scores as HF reads them ---------------------------------------------------------------
 * HF parses the scores with serde_json's default float parser, which is not correctly rounded:
 * the digits as a u64, converted to f64, then one multiplication or division by a power of ten
 * (f64_from_parts without the float_roundtrip feature). Scores of 17 digits can come out one ulp
 * away from strtod's (jansson's) value, enough to flip a Viterbi tie (seen with the peer). So the
 * scores are re-read from the text of model.vocab and converted that way. */

/* serde_json's f64 for the number text at p (JSON grammar already checked by jansson); 0 when
 * the text is outside what is emulated (over 19 digits, exponents beyond +-400): the caller then
 * keeps jansson's value. */
static int serde_f64(const char *p, const char *end, const double *pow10, double *out)
{
    int neg = p < end && *p == '-';
    p += neg;
    uint64_t sig = 0;
    int exp = 0, digits = 0, real = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++, digits++) {
        if (sig > (UINT64_MAX - 9) / 10)
            return 0;
        sig = sig * 10 + (uint64_t)(*p - '0');
    }
    if (p < end && *p == '.') {
        real = 1;
        for (p++; p < end && *p >= '0' && *p <= '9'; p++, exp--) {
            if (sig > (UINT64_MAX - 9) / 10)
                return 0;
            sig = sig * 10 + (uint64_t)(*p - '0');
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = 1;
        p++;
        int eneg = p < end && *p == '-';
        p += p < end && (*p == '-' || *p == '+');
        int e = 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (e > 400)
                return 0;
            e = e * 10 + (*p - '0');
        }
        exp += eneg ? -e : e;
    }
    if (!digits)
        return 0;
    double f = (double)sig;
    if (real) {
        for (;;) {
            int a = exp < 0 ? -exp : exp;
            if (a <= 308) {
                f = exp >= 0 ? f * pow10[a] : f / pow10[a];
                break;
            }
            if (f == 0.0)
                break;
            if (exp >= 0)
                return 0; /* serde: out of range */
            f /= pow10[308];
            exp += 308;
        }
    }
    *out = neg ? -f : f;
    return 1;
}

/* Walks text to model.vocab (keys compared as written; of duplicate keys inside model the last
 * wins, as in jansson) and overwrites score[0..nv) with serde_json's values when the array has
 * exactly nv [piece, number] pairs; otherwise jansson's values stay. */
static void scores_from_text(const char *text, size_t len, double *score, size_t nv)
{
    const char *p = lmx__jscan_ws(text, text + len), *end = text + len, *vocab = NULL;
    if (lmx__jscan_open(&p, end, '{') != 1)
        return;
    for (int in_model = 0;;) {
        if (p >= end || *p != '"')
            return;
        const char *k = p + 1, *q = lmx__jscan_string(k, end, LMX_JSCAN_RAW, NULL, NULL);
        if (!q || !(p = lmx__jscan_colon(q, end)))
            return;
        size_t kl = (size_t)(q - 1 - k);
        if (!in_model && kl == 5 && memcmp(k, "model", 5) == 0 && p < end && *p == '{') {
            if (lmx__jscan_open(&p, end, '{') != 1)
                return;
            in_model = 1;
            continue;
        }
        if (in_model && kl == 5 && memcmp(k, "vocab", 5) == 0)
            vocab = p;
        if (!(p = lmx__jscan_value(p, end, 0, 64)))
            return;
        int r = lmx__jscan_next(&p, end, '}');
        if (r < 0)
            return;
        if (r == 0) {
            if (!in_model)
                return;
            break; /* the end of model */
        }
    }
    if (!vocab)
        return;
    double pow10[309];
    char num[8];
    for (int i = 0; i <= 308; i++) {
        snprintf(num, sizeof num, "1e%d", i);
        pow10[i] = strtod(num, NULL); /* serde's POW10 literals, correctly rounded */
    }
    p = vocab;
    if (lmx__jscan_open(&p, end, '[') != 1)
        return;
    double *tmp = malloc(nv * sizeof *tmp);
    size_t i = 0;
    for (; tmp; i++) {
        if (i == nv || lmx__jscan_open(&p, end, '[') != 1 || !(p = lmx__jscan_value(p, end, 0, 1)) ||
            lmx__jscan_next(&p, end, ']') != 1)
            break;
        const char *ne = lmx__jscan_number(p, end, 0);
        if (!ne || !serde_f64(p, ne, pow10, &tmp[i]))
            break;
        p = ne;
        if (lmx__jscan_next(&p, end, ']') != 0)
            break;
        int r = lmx__jscan_next(&p, end, ']');
        if (r <= 0) {
            i += r == 0;
            break;
        }
    }
    if (tmp && i == nv)
        memcpy(score, tmp, nv * sizeof *tmp);
    free(tmp);
}

static inline uint64_t edge_slot(uint32_t key, uint64_t mask)
{
    return ((uint64_t)key * 0x9E3779B97F4A7C15ull >> 17) & mask;
}

/* Rehashes the edge map into 2x the slots. */
static int edges_grow(lmx_tok_unigram *u)
{
    uint64_t nslots = u->edges ? (u->edge_mask + 1) * 2 : 1024;
    lmx_tok_uni_edge *ne = calloc(nslots, sizeof *ne);
    if (!ne)
        return LMX_ENOMEM;
    for (uint64_t i = 0; u->edges && i <= u->edge_mask; i++) {
        if (!u->edges[i].key)
            continue;
        uint64_t j = edge_slot(u->edges[i].key, nslots - 1);
        while (ne[j].key)
            j = (j + 1) & (nslots - 1);
        ne[j] = u->edges[i];
    }
    free(u->edges);
    u->edges = ne;
    u->edge_mask = nslots - 1;
    return LMX_OK;
}

/* Inserts piece s[0..n) with id (a later duplicate overwrites, as HF's token_to_ids does). */
static int trie_insert(lmx_tok_unigram *u, const uint8_t *s, size_t n, uint32_t id, size_t *cap)
{
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t child = 0;
        uint32_t key = (node << 8 | s[i]) + 1;
        uint64_t j = 0;
        if (node == 0) {
            child = u->root[s[i]];
        } else {
            j = edge_slot(key, u->edge_mask);
            while (u->edges[j].key && u->edges[j].key != key)
                j = (j + 1) & u->edge_mask;
            if (u->edges[j].key)
                child = u->edges[j].child;
        }
        if (!child) {
            if (u->n_nodes >= LMX_TOK_UNI_MAX_NODES)
                return LMX_EUNSUPPORTED;
            if (lmx__tok_grow((void **)&u->node_id, cap, (size_t)u->n_nodes + 1, sizeof *u->node_id))
                return LMX_ENOMEM;
            child = u->n_nodes++;
            u->node_id[child] = LMX_TOK_UNI_NONE;
            u->node_id[node] |= LMX_TOK_UNI_KIDS;
            if (node == 0) {
                u->root[s[i]] = child;
            } else {
                u->edges[j].key = key;
                u->edges[j].child = child;
            }
        }
        node = child;
        /* at most half full (a probe then ends quickly) */
        if (u->n_nodes * 2 > u->edge_mask && edges_grow(u) != LMX_OK)
            return LMX_ENOMEM;
    }
    if (n)
        u->node_id[node] = (u->node_id[node] & LMX_TOK_UNI_KIDS) | id;
    return LMX_OK;
}

int lmx__tokload_unigram(lmx_tok_loadctx *c, json_t *m, json_t *added)
{
    lmx_tokjson *t = c->t;
    int rc;
    if (t->byte_level)
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "model: Unigram together with a ByteLevel "
                                "pre-tokenizer is not supported");
    json_t *vocab = json_object_get(m, "vocab");
    if (!json_is_array(vocab))
        return lmx__tokload_bad(c, LMX_EFORMAT, "model.vocab: expected an array of [piece, score]");
    size_t nv = json_array_size(vocab);
    if (nv == 0)
        return lmx__tokload_bad(c, LMX_EFORMAT, "model.vocab: empty (HF refuses an empty Unigram vocabulary)");
    if (nv >= LMX_TOK_MAX_ID)
        return lmx__tokload_bad(c, LMX_EUNSUPPORTED, "model.vocab: more than %u tokens", LMX_TOK_MAX_ID);
    if ((rc = lmx__tokload_getbool(c, m, "byte_fallback", "model", 0, &t->byte_fallback)))
        return rc;
    t->fuse_unk = 1; /* HF's Unigram always fuses unknowns */
    t->unk_id = LMX_TOKEN_NONE;
    json_t *uk = json_object_get(m, "unk_id");
    if (uk && !json_is_null(uk)) {
        if (!json_is_integer(uk) || json_integer_value(uk) < 0 ||
            (size_t)json_integer_value(uk) >= nv)
            return lmx__tokload_bad(c, LMX_EFORMAT, "model.unk_id: expected null or an index into "
                                    "model.vocab (0..%zu)", nv - 1);
        t->unk_id = (uint32_t)json_integer_value(uk);
    }

    lmx_tok_unigram *u = calloc(1, sizeof *u);
    if (!u)
        return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
    t->uni = u;
    u->n_pieces = (uint32_t)nv;
    u->score = malloc(nv * sizeof *u->score);
    lmx_tok_lists *L = &c->own;
    if (!u->score)
        return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
    double min_score = HUGE_VAL;
    for (size_t i = 0; i < nv; i++) {
        json_t *e = json_array_get(vocab, i);
        json_t *p = json_array_get(e, 0), *s = json_array_get(e, 1);
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(p) || !json_is_number(s))
            return lmx__tokload_bad(c, LMX_EFORMAT, "model.vocab[%zu]: expected [piece, score]", i);
        size_t len = json_string_length(p);
        if (L->arena.len + len > UINT32_MAX)
            return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
        uint32_t off = (uint32_t)L->arena.len;
        if ((len && lmx__buf_append(&L->arena, json_string_value(p), len)) ||
            lmx__toklists_vocab_add(L, off, len, (uint32_t)i))
            return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
        u->score[i] = json_number_value(s);
        if (u->score[i] < min_score)
            min_score = u->score[i];
    }
    if (c->doc)
        scores_from_text(c->doc, c->doc_len, u->score, nv);
    min_score = HUGE_VAL;
    for (size_t i = 0; i < nv; i++)
        if (u->score[i] < min_score)
            min_score = u->score[i];
    u->unk_score = min_score - UNK_PENALTY;
    if ((rc = lmx__tokload_id_tables(c, added, L)))
        return rc;

    /* vocab map (later duplicates win), display strings, trie */
    size_t total = L->arena.len, ncap = 0;
    if (lmx__tok_strmap_init(&t->vocab, (uint32_t)nv) != LMX_OK ||
        lmx__buf_reserve(&t->id_arena, total) != LMX_OK || edges_grow(u) != LMX_OK ||
        lmx__tok_grow((void **)&u->node_id, &ncap, 1, sizeof *u->node_id))
        return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
    u->n_nodes = 1;
    u->node_id[0] = LMX_TOK_UNI_NONE;
    for (size_t i = 0; i < nv; i++) {
        const uint8_t *key = L->arena.data + L->v[3 * i];
        size_t klen = L->v[3 * i + 1];
        if (lmx__tok_strmap_put(&t->vocab, key, klen, (uint32_t)i) != LMX_OK)
            return lmx__tokload_bad(c, LMX_ENOMEM, "model.vocab: out of memory");
        if ((rc = trie_insert(u, key, klen, (uint32_t)i, &ncap)) != LMX_OK)
            return lmx__tokload_bad(c, rc, "model.vocab: %s", rc == LMX_ENOMEM ? "out of memory"
                                    : "the pieces need more than 2^24 trie nodes");
        t->id_off[i] = (uint32_t)t->id_arena.len;
        t->id_len[i] = (uint32_t)klen;
        if (klen)
            memcpy(t->id_arena.data + t->id_arena.len, key, klen);
        t->id_arena.len += klen;
    }
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        t->byte_ids[b] = lmx__tok_strmap_get(&t->vocab, (const uint8_t *)hex, 6);
    }
    return LMX_OK;
}

void lmx__tok_unigram_free(lmx_tok_unigram *u)
{
    if (!u)
        return;
    free(u->edges);
    free(u->node_id);
    free(u->score);
    free(u);
}
