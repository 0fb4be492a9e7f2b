/* GET /v1/plans/NAME/sequences/G?format=text: a sequence decoded with the index's tokenizer. */
#include "lmxd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmx_wire.h"

/* The index's own tokenizer (INDEX/tokenizer.json, copied there by `longmixd index`), loaded
 * once on demand: decoding is for humans (`longmix show`), so it must not slow the start. */
static const lmx_tokenizer *get_detok(server *s)
{
    pthread_mutex_lock(&s->detok_lock);
    if (!s->detok_tried) {
        s->detok_tried = 1;
        lmx_error err = {0};
        char path[4200];
        const char *id = lmx__index_tokenizer_identity(s->ix);
        if (id && strcmp(id, "bytes") == 0)
            snprintf(path, sizeof path, "bytes");
        else
            snprintf(path, sizeof path, "%s/tokenizer.json", lmx__index_dir(s->ix));
        size_t il = id ? strlen(id) : 0, sl = strlen(LMX_TOKENIZER_MATCH_ADDED_SUFFIX);
        lmx_tokenizer_options topts = {
            .match_added_tokens = il > sl && strcmp(id + il - sl, LMX_TOKENIZER_MATCH_ADDED_SUFFIX) == 0};
        if (lmx__tokenizer_open(path, &topts, &s->detok, &err) != LMX_OK)
            snprintf(s->detok_error, sizeof s->detok_error, "cannot decode: %s", err.message);
        else if (!id || strcmp(lmx__tokenizer_identity(s->detok), id) != 0) {
            snprintf(s->detok_error, sizeof s->detok_error, "cannot decode: %s is not the tokenizer the index was built with",
                     path);
            lmx__tokenizer_free(s->detok);
            s->detok = NULL;
        }
        if (!s->detok)
            lmxd_log("%s", s->detok_error);
    }
    pthread_mutex_unlock(&s->detok_lock);
    return s->detok;
}

/* The document's source file and line, as `longmixd doc --json` names them ("row" as well for
 * row-oriented inputs: Parquet, MDS). Best effort: the text is the point of this view. */
static void add_provenance(server *s, json_t *o, uint64_t doc)
{
    lmx_doc d;
    if (lmx__index_doc(s->ix, doc, &d, NULL) != LMX_OK || !d.source)
        return;
    json_object_set_new(o, "source", json_string(d.source));
    json_object_set_new(o, "line", json_integer((json_int_t)d.line));
    if (d.kind && (strcmp(d.kind, "parquet") == 0 || strcmp(d.kind, "mds") == 0))
        json_object_set_new(o, "row", json_integer((json_int_t)d.line));
}

/* GET /v1/plans/NAME/sequences/G?format=text: the sequence's spans with their decoded text. */
enum MHD_Result lmxd_handle_text(server *s, struct MHD_Connection *c, const lmxd_request *rq, plan_ref *r)
{
    const lmx_tokenizer *tok = get_detok(s);
    if (!tok) {
        lmxd_plan_put(r);
        return lmxd_send_error(c, 409, "no_tokenizer", s->detok_error);
    }
    lmx_buf body = {0}, text = {0}, clean = {0};
    lmx_ids ids = {0};
    lmx_error err = {0};
    lmx_wire_view v;
    lmxd_guard_begin();
    int rc = lmx__plan_sequence(r->plan, rq->step, &body, &err);
    const void *bad = lmxd_guard_end();
    const char *gate_shard = NULL;
    int gate_fault = lmx__gate_end(&gate_shard);
    if (bad) {
        lmxd_index_damage(s, bad);
        lmxd_plan_put(r);
        lmx__buf_free(&body);
        return lmxd_send_error(c, 503, "index_damaged", s->damage);
    }
    if (gate_fault) { /* a shard not (yet) verified: nothing of it is shown */
        lmxd_plan_put(r);
        lmx__buf_free(&body);
        return lmxd_send_gate_fault(s, c, gate_fault, gate_shard);
    }
    if (rc == LMX_OK)
        rc = lmx__wire_parse(body.data, body.len, &v, &err);
    json_t *out = NULL;
    if (rc == LMX_OK) {
        out = json_pack("{s:s, s:I, s:I}", "plan", lmx__plan_name(r->plan), "sequence", (json_int_t)rq->step,
                        "seq_len", (json_int_t)v.h.seq_len);
        json_t *spans = json_array();
        json_object_set_new(out, "spans", spans);
        uint32_t first, end, covered = 0;
        lmx__wire_seq_spans(&v, 0, &first, &end);
        for (uint32_t i = first; i < end && rc == LMX_OK; i++) {
            lmx_span sp = lmx__wire_span(&v, i);
            ids.n = text.len = clean.len = 0;
            rc = lmx__ids_reserve(&ids, sp.length);
            for (uint32_t k = 0; rc == LMX_OK && k < sp.length; k++)
                ids.v[ids.n++] = lmx__wire_token(&v, 0, sp.start + k);
            if (rc == LMX_OK)
                rc = lmx__decode(tok, ids.v, ids.n, &text, &err);
            /* A piece may start or end inside a multi-byte character: repair as U+FFFD for JSON. */
            if (rc == LMX_OK)
                rc = lmx__utf8_lossy(text.data, text.len, &clean);
            if (rc != LMX_OK)
                break;
            uint32_t dlen;
            const char *dname = lmx__wire_domain(&v, sp.domain, &dlen);
            json_t *o = json_pack("{s:s#, s:I, s:I, s:I, s:I, s:s#}", "domain", dname, (int)dlen, "doc",
                                  (json_int_t)sp.doc, "offset", (json_int_t)sp.offset, "start", (json_int_t)sp.start,
                                  "length", (json_int_t)sp.length, "text",
                                  clean.len ? (const char *)clean.data : "", (int)clean.len);
            add_provenance(s, o, sp.doc);
            json_array_append_new(spans, o);
            covered += sp.length;
        }
        json_object_set_new(out, "separators", json_integer((json_int_t)(v.h.seq_len - covered)));
    }
    lmxd_plan_put(r);
    lmx__buf_free(&body);
    lmx__buf_free(&text);
    lmx__buf_free(&clean);
    lmx__ids_free(&ids);
    if (rc != LMX_OK) {
        json_decref(out);
        unsigned st = lmxd_status_of(rc);
        return lmxd_send_error(c, st, st == 416 ? "step_out_of_range" : st == 400 ? "bad_parameter" : "internal", err.message);
    }
    return lmxd_send_json(c, 200, out);
}
