/* common/plan/: plan specs, determinism, packing (spans vs document tokens, separators,
 * next_token, cu_seqlens), rank/world slicing, strategies. Uses a small index built with the
 * `bytes` tokenizer in a temp dir. */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include <string.h>

#include "lmx_index.h"
#include "lmx_plan.h"
#include "lmx_plan_internal.h"
#include "lmx_test.h"
#include "lmx_util.h"
#include "lmx_wire.h"

#define BOS 256
#define EOS 257
#define GOLDEN_HEX "3531042135ccf00d32ff5f820053d74467dda72a5ba03fa02f5cf69b7f1a1d8d"

static char root[256];
static lmx_index *ix;

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

/* Domains: "web" (40 docs of 1..300 bytes, plus an empty one), "code" (12 docs of 50..700
 * bytes), "books" (3 .txt files, one of 5000 bytes). */
static void build_index(void)
{
    char in[512], p[600], out[512];
    snprintf(in, sizeof in, "%s/in/books", root);
    CHECK_EQ_INT(lmx__mkdirs(in, NULL), LMX_OK);
    snprintf(in, sizeof in, "%s/in", root);
    lmx_buf j = {0};
    for (int i = 0; i < 41; i++) {
        size_t n = i == 20 ? 0 : 1 + rnd() % 300;
        lmx__buf_printf(&j, "{\"text\": \"");
        for (size_t k = 0; k < n; k++)
            lmx__buf_printf(&j, "%c", (char)('a' + rnd() % 26));
        lmx__buf_printf(&j, "\", \"meta\": {\"redpajama_set_name\": \"%s\"}}\n", i % 4 == 3 && i < 40 ? "code" : "web");
    }
    for (int i = 0; i < 2; i++) {
        size_t n = 50 + rnd() % 650;
        lmx__buf_printf(&j, "{\"text\": \"");
        for (size_t k = 0; k < n; k++)
            lmx__buf_printf(&j, "%c", (char)('A' + rnd() % 26));
        lmx__buf_printf(&j, "\", \"meta\": {\"redpajama_set_name\": \"code\"}}\n");
    }
    snprintf(p, sizeof p, "%s/a.jsonl", in);
    lmx_test_write(p, j.data, j.len);
    lmx__buf_free(&j);
    for (int i = 0; i < 3; i++) {
        size_t n = i == 1 ? 5000 : 100 + rnd() % 1000;
        char *t = malloc(n);
        for (size_t k = 0; k < n; k++)
            t[k] = (char)('0' + rnd() % 10);
        snprintf(p, sizeof p, "%s/books/%d.txt", in, i);
        lmx_test_write(p, t, n);
        free(t);
    }
    snprintf(out, sizeof out, "%s/ix", root);
    lmx_index_options o = {0};
    o.tokenizer = "bytes";
    o.out_dir = out;
    o.threads = 1;
    o.domain_field = "meta.redpajama_set_name";
    char *inputs[] = {in};
    lmx_error err = {0};
    int rc = lmx__index_build(&o, inputs, 1, &err);
    if (rc) {
        fprintf(stderr, "index build: %s\n", err.message);
        exit(1);
    }
    if (lmx__index_open(out, &ix, &err) != LMX_OK) {
        fprintf(stderr, "index open: %s\n", err.message);
        exit(1);
    }
    CHECK_EQ_U64(lmx__index_n_domains(ix), 3);
    CHECK_EQ_U64(lmx__index_n_docs(ix), 41 + 2 + 3);
}

static int parse_spec(const char *json, lmx_plan_spec *spec, lmx_error *err)
{
    json_error_t je;
    json_t *o = json_loads(json, 0, &je);
    if (!o) {
        fprintf(stderr, "test JSON: %s: %s\n", json, je.text);
        exit(2);
    }
    int rc = lmx__plan_spec_parse("p", o, spec, err);
    json_decref(o);
    return rc;
}

static lmx_plan *make_plan(const char *json)
{
    lmx_plan_spec spec;
    lmx_error err = {0};
    if (parse_spec(json, &spec, &err) != LMX_OK) {
        fprintf(stderr, "spec %s: %s\n", json, err.message);
        lmx_test_failures++;
        lmx__plan_spec_free(&spec);
        return NULL;
    }
    lmx_plan *p = NULL;
    if (lmx__plan_create(ix, "p", &spec, NULL, &p, &err) != LMX_OK) {
        fprintf(stderr, "plan %s: %s\n", json, err.message);
        lmx_test_failures++;
    }
    lmx__plan_spec_free(&spec);
    return p;
}

static int get_batch(lmx_plan *p, uint64_t step, uint32_t rank, uint32_t world, lmx_buf *out, lmx_wire_view *v)
{
    lmx_error err = {0};
    int rc = lmx__plan_batch(p, step, rank, world, out, &err);
    if (rc) {
        fprintf(stderr, "batch %llu %u/%u: %s\n", (unsigned long long)step, rank, world, err.message);
        return rc;
    }
    rc = lmx__wire_parse(out->data, out->len, v, &err);
    if (rc)
        fprintf(stderr, "parse of batch %llu: %s\n", (unsigned long long)step, err.message);
    return rc;
}

/* Checks one parsed batch against the index and the spec: spans hold the documents' tokens,
 * uncovered positions are separators, cu_seqlens mark item starts, header fields. */
static void check_batch_n(const lmx_plan *p, const lmx_wire_view *v, uint64_t step, uint32_t rank, uint32_t world,
                          uint32_t n_seqs)
{
    const lmx_plan_spec *s = lmx__plan_spec(p);
    const uint32_t L = s->seq_len;
    CHECK_EQ_U64(v->h.step, step);
    CHECK_EQ_U64(v->h.rank, rank);
    CHECK_EQ_U64(v->h.world, world);
    CHECK_EQ_U64(v->h.seq_len, L);
    CHECK_EQ_U64(v->h.n_seqs, n_seqs);
    CHECK_EQ_U64(v->h.token_bytes, lmx__index_token_bytes(ix));
    CHECK(memcmp(v->h.plan_id, lmx__plan_id(p), LMX_PLAN_ID_BYTES) == 0);
    CHECK_EQ_U64(v->h.n_domains, lmx__index_n_domains(ix));
    CHECK_EQ_U64(!!(v->h.flags & LMX_WIRE_FLAG_CU_SEQLENS), !!s->cu_seqlens);
    for (uint32_t d = 0; d < v->h.n_domains; d++) {
        uint32_t n;
        const char *name = lmx__wire_domain(v, d, &n);
        CHECK(n == strlen(lmx__index_domain_name(ix, d)) && memcmp(name, lmx__index_domain_name(ix, d), n) == 0);
    }
    uint8_t *covered = malloc(L);
    int bad_tokens = 0, bad_sep = 0, bad_span = 0;
    for (uint32_t q = 0; q < v->h.n_seqs; q++) {
        memset(covered, 0, L);
        uint32_t a, e;
        lmx__wire_seq_spans(v, q, &a, &e);
        uint32_t prev_end = 0;
        for (uint32_t i = a; i < e; i++) {
            lmx_span sp = lmx__wire_span(v, i);
            lmx_doc doc;
            if (lmx__index_doc(ix, sp.doc, &doc, NULL) != LMX_OK) {
                bad_span++;
                continue;
            }
            if (sp.start < prev_end || sp.start + sp.length > L || sp.offset + sp.length > doc.n_tokens ||
                sp.domain != doc.domain || sp.length == 0)
                bad_span++;
            if (s->strategy == LMX_CUT && (sp.offset % s->cut_len) + sp.length > s->cut_len)
                bad_span++; /* a span never crosses a cut */
            prev_end = sp.start + sp.length;
            for (uint32_t t = 0; t < sp.length && sp.start + t < L; t++) {
                covered[sp.start + t] = 1;
                if (t + sp.offset < doc.n_tokens &&
                    lmx__wire_token(v, q, sp.start + t) != lmx__doc_token(&doc, sp.offset + t))
                    bad_tokens++;
            }
        }
        for (uint32_t t = 0; t < L; t++) {
            if (covered[t])
                continue;
            uint32_t x = lmx__wire_token(v, q, t);
            if (!((s->bos && x == BOS) || (s->eos && x == EOS)))
                bad_sep++;
        }
        if (s->cu_seqlens) {
            /* cu_seqlens: 0, the start of every document piece after the first, L. Each segment
             * holds at most one span (plus its separators); every BOS starts a segment. A piece
             * continuing a document cut by the previous block starts one too, without a BOS. */
            uint32_t ca, ce, sa, se;
            lmx__wire_seq_cu(v, q, &ca, &ce);
            lmx__wire_seq_spans(v, q, &sa, &se);
            CHECK(ce - ca >= 2);
            CHECK_EQ_INT(lmx__wire_cu(v, ca), 0);
            CHECK_EQ_INT(lmx__wire_cu(v, ce - 1), (int32_t)L);
            /* Spans in order, each inside one segment, no two in the same segment (a segment
             * without a span holds only separators: a BOS at the very end of a sequence, or the
             * EOS of a document that ended in the previous one). */
            int ok = 1;
            for (uint32_t i = sa, k = ca, prev_seg = UINT32_MAX; ok && i < se; i++) {
                lmx_span sp = lmx__wire_span(v, i);
                while (k + 1 < ce - 1 && lmx__wire_cu(v, k + 1) <= (int32_t)sp.start)
                    k++;
                ok &= (int32_t)(sp.start + sp.length) <= lmx__wire_cu(v, k + 1) && k != prev_seg;
                prev_seg = k;
            }
            if (s->bos)
                for (uint32_t t = 1, k = ca + 1; ok && t < L; t++)
                    if (lmx__wire_token(v, q, t) == BOS && !covered[t]) {
                        while (k < ce - 1 && lmx__wire_cu(v, k) < (int32_t)t)
                            k++;
                        ok &= k < ce - 1 && lmx__wire_cu(v, k) == (int32_t)t;
                    }
            if (!ok)
                fprintf(stderr, "seq %u: cu_seqlens do not match the document pieces\n", q);
            CHECK(ok);
        }
    }
    free(covered);
    CHECK_EQ_INT(bad_tokens, 0);
    CHECK_EQ_INT(bad_sep, 0);
    CHECK_EQ_INT(bad_span, 0);
}

static void check_batch(const lmx_plan *p, const lmx_wire_view *v, uint64_t step, uint32_t rank, uint32_t world)
{
    check_batch_n(p, v, step, rank, world, lmx__plan_spec(p)->global_batch / world);
}

/* Sequence q of a parsed batch as comparable bytes: tokens, next token, spans, cu. */
static void seq_bytes(const lmx_wire_view *v, uint32_t q, lmx_buf *out)
{
    out->len = 0;
    for (uint32_t t = 0; t < v->h.seq_len; t++) {
        uint32_t x = lmx__wire_token(v, q, t);
        lmx__buf_append(out, &x, 4);
    }
    uint32_t nx = lmx__wire_next_token(v, q);
    lmx__buf_append(out, &nx, 4);
    uint32_t a, e;
    lmx__wire_seq_spans(v, q, &a, &e);
    for (uint32_t i = a; i < e; i++) {
        lmx_span sp = lmx__wire_span(v, i);
        uint64_t f[5] = {sp.doc, sp.offset, sp.start, sp.length, sp.domain};
        lmx__buf_append(out, f, sizeof f);
    }
    lmx__wire_seq_cu(v, q, &a, &e);
    for (uint32_t i = a; i < e; i++) {
        int32_t c = lmx__wire_cu(v, i);
        lmx__buf_append(out, &c, 4);
    }
}

static void test_original(void)
{
    const char *spec = "{\"strategy\": \"original\", \"seq_len\": 64, \"global_batch\": 4}";
    lmx_plan *p = make_plan(spec);
    if (!p)
        return;
    const lmx_plan_spec *s = lmx__plan_spec(p);
    CHECK_EQ_INT(s->strategy, LMX_ORIGINAL);
    CHECK_EQ_U64(s->seq_len, 64);
    CHECK_EQ_U64(s->global_batch, 4);
    CHECK_EQ_U64(s->seed, 0);
    CHECK_EQ_U64(s->long_threshold, 4096);
    CHECK(s->bos == 1 && s->eos == 0);
    CHECK_EQ_STR(lmx__plan_name(p), "p");
    CHECK_EQ_U64(strlen(lmx__plan_id_hex(p)), 32);
    CHECK_EQ_U64(lmx__plan_max_steps(p), UINT64_MAX);

    /* Deterministic: same bytes twice, from a fresh plan, and out of order. */
    lmx_buf b0 = {0}, b1 = {0}, b2 = {0};
    lmx_wire_view v0, v1, v2;
    CHECK_EQ_INT(get_batch(p, 0, 0, 1, &b0, &v0), LMX_OK);
    CHECK_EQ_INT(get_batch(p, 5, 0, 1, &b1, &v1), LMX_OK);
    CHECK_EQ_INT(get_batch(p, 0, 0, 1, &b1, &v1), LMX_OK);
    CHECK(b0.len == b1.len && memcmp(b0.data, b1.data, b0.len) == 0);
    lmx_plan *fresh = make_plan(spec);
    if (fresh) {
        CHECK_EQ_STR(lmx__plan_id_hex(fresh), lmx__plan_id_hex(p));
        CHECK_EQ_INT(get_batch(fresh, 0, 0, 1, &b2, &v2), LMX_OK);
        CHECK(b0.len == b2.len && memcmp(b0.data, b2.data, b0.len) == 0);
        lmx__plan_free(fresh);
    }
    /* Another seed: another plan id and another stream. */
    lmx_plan *other = make_plan("{\"strategy\": \"original\", \"seq_len\": 64, \"global_batch\": 4, \"seed\": 7}");
    if (other) {
        CHECK(strcmp(lmx__plan_id_hex(other), lmx__plan_id_hex(p)) != 0);
        CHECK_EQ_INT(get_batch(other, 0, 0, 1, &b2, &v2), LMX_OK);
        CHECK(b0.len != b2.len || memcmp(b0.data + 96, b2.data + 96, b0.len - 96) != 0);
        lmx__plan_free(other);
    }

    /* Content checks over several steps; next_token is the first token of the next sequence,
     * including across batches. A document cut at the end of a sequence continues at the start
     * of the next one. */
    const int STEPS = 6;
    lmx_buf bb[6] = {{0}};
    lmx_wire_view vv[6];
    for (int st = 0; st < STEPS; st++) {
        CHECK_EQ_INT(get_batch(p, (uint64_t)st, 0, 1, &bb[st], &vv[st]), LMX_OK);
        check_batch(p, &vv[st], (uint64_t)st, 0, 1);
    }
    int next_ok = 1, cont_ok = 1, continued = 0;
    for (int st = 0; st < STEPS; st++) {
        for (uint32_t q = 0; q < 4; q++) {
            const lmx_wire_view *cur = &vv[st], *nv = q < 3 ? &vv[st] : (st + 1 < STEPS ? &vv[st + 1] : NULL);
            uint32_t nq = q < 3 ? q + 1 : 0;
            if (!nv)
                continue;
            next_ok &= lmx__wire_next_token(cur, q) == lmx__wire_token(nv, nq, 0);
            uint32_t a, e, na, ne;
            lmx__wire_seq_spans(cur, q, &a, &e);
            lmx__wire_seq_spans(nv, nq, &na, &ne);
            if (e > a) {
                lmx_span last = lmx__wire_span(cur, e - 1);
                uint64_t n;
                uint32_t dm;
                lmx__index_doc_meta(ix, last.doc, &n, &dm);
                if (last.start + last.length == 64 && last.offset + last.length < n) {
                    lmx_span first = na < ne ? lmx__wire_span(nv, na) : (lmx_span){0};
                    cont_ok &= na < ne && first.doc == last.doc && first.start == 0 &&
                               first.offset == last.offset + last.length;
                    continued++;
                }
            }
        }
    }
    CHECK(next_ok);
    CHECK(cont_ok);
    CHECK(continued > 0); /* the corpus has documents longer than 64 tokens */

    /* Every domain shows up within a few batches (natural shares). */
    int seen[3] = {0};
    for (int st = 0; st < STEPS; st++)
        for (uint32_t i = 0; i < vv[st].h.n_spans; i++)
            seen[lmx__wire_span(&vv[st], i).domain] = 1;
    CHECK(seen[0] && seen[1] && seen[2]);

    /* lmx__plan_sequence(g) is sequence g of the stream. */
    lmx_buf sb = {0}, x = {0}, y = {0};
    lmx_wire_view sv;
    lmx_error err = {0};
    for (uint64_t g = 0; g < 8; g++) {
        CHECK_EQ_INT(lmx__plan_sequence(p, g, &sb, &err), LMX_OK);
        CHECK_EQ_INT(lmx__wire_parse(sb.data, sb.len, &sv, &err), LMX_OK);
        CHECK_EQ_U64(sv.h.n_seqs, 1);
        CHECK_EQ_U64(sv.h.step, g);
        seq_bytes(&sv, 0, &x);
        seq_bytes(&vv[g / 4], (uint32_t)(g % 4), &y);
        CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
    }

    /* The global order does not depend on world: rank slices concatenated equal world=1. */
    const uint32_t worlds[] = {1, 2, 4};
    for (size_t wi = 0; wi < 3; wi++) {
        uint32_t W = worlds[wi];
        int same = 1;
        for (int st = 0; st < 3; st++) {
            for (uint32_t r = 0; r < W; r++) {
                lmx_buf rb = {0};
                lmx_wire_view rv;
                if (get_batch(p, (uint64_t)st, r, W, &rb, &rv) != LMX_OK) {
                    same = 0;
                    continue;
                }
                check_batch(p, &rv, (uint64_t)st, r, W);
                for (uint32_t q = 0; q < 4 / W; q++) {
                    seq_bytes(&rv, q, &x);
                    seq_bytes(&vv[st], r * (4 / W) + q, &y);
                    same &= x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
                }
                lmx__buf_free(&rb);
            }
        }
        if (!same)
            fprintf(stderr, "world=%u slices differ from world=1\n", W);
        CHECK(same);
    }

    /* Bad rank/world. */
    lmx__err_clear(&err);
    CHECK_EQ_INT(lmx__plan_batch(p, 0, 2, 2, &sb, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "rank");
    CHECK_EQ_INT(lmx__plan_batch(p, 0, 5, 4, &sb, &err), LMX_EINVAL);
    lmx__err_clear(&err);
    CHECK_EQ_INT(lmx__plan_batch(p, 0, 0, 3, &sb, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "world");
    CHECK_EQ_INT(lmx__plan_batch(p, 0, 0, 0, &sb, &err), LMX_EINVAL);
    CHECK_EQ_INT(lmx__plan_batch(p, 0, 0, 8, &sb, &err), LMX_EINVAL);
    CHECK_EQ_INT(lmx__plan_batch(p, UINT64_MAX, 0, 1, &sb, &err), LMX_ERANGE);

    for (int st = 0; st < STEPS; st++)
        lmx__buf_free(&bb[st]);
    lmx__buf_free(&b0);
    lmx__buf_free(&b1);
    lmx__buf_free(&b2);
    lmx__buf_free(&sb);
    lmx__buf_free(&x);
    lmx__buf_free(&y);
    lmx__plan_free(p);
    lmx__plan_free(NULL);
}

/* The sequence that ends a block (blocks are 2^26 tokens) continues into the next block. */
static void test_block_boundary(void)
{
    lmx_plan *p = make_plan("{\"strategy\": \"original\", \"seq_len\": 4096, \"global_batch\": 2}");
    if (!p)
        return;
    uint64_t last = ((uint64_t)1 << 26) / 4096 - 1; /* last sequence of block 0 */
    lmx_buf a = {0}, b = {0};
    lmx_wire_view va, vb;
    lmx_error err = {0};
    CHECK_EQ_INT(lmx__plan_sequence(p, last, &a, &err), LMX_OK);
    CHECK_EQ_INT(lmx__wire_parse(a.data, a.len, &va, &err), LMX_OK);
    CHECK_EQ_INT(lmx__plan_sequence(p, last + 1, &b, &err), LMX_OK);
    CHECK_EQ_INT(lmx__wire_parse(b.data, b.len, &vb, &err), LMX_OK);
    if (a.len && b.len) {
        check_batch_n(p, &va, last, 0, 1, 1);
        check_batch_n(p, &vb, last + 1, 0, 1, 1);
        CHECK_EQ_U64(lmx__wire_next_token(&va, 0), lmx__wire_token(&vb, 0, 0));
        /* the batch holding both sequences agrees with the single sequences */
        lmx_buf c = {0}, x = {0}, y = {0};
        lmx_wire_view vc;
        CHECK_EQ_INT(get_batch(p, (last + 1) / 2, 0, 1, &c, &vc), LMX_OK);
        if (c.len) {
            check_batch(p, &vc, (last + 1) / 2, 0, 1);
            seq_bytes(&vc, 0, &x);
            seq_bytes(&vb, 0, &y);
            CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
        }
        lmx__buf_free(&c);
        lmx__buf_free(&x);
        lmx__buf_free(&y);
    }
    lmx__buf_free(&a);
    lmx__buf_free(&b);
    lmx__plan_free(p);
}

static void test_strategies(void)
{
    static const char *const specs[] = {
        "{\"strategy\": \"cut\", \"cut_len\": 16, \"seq_len\": 64, \"global_batch\": 4}",
        "{\"strategy\": \"per_source\", \"seq_len\": 128, \"global_batch\": 2, \"seed\": 3, \"long_threshold\": 200}",
        "{\"strategy\": \"per_source\", \"seq_len\": 64, \"global_batch\": 4, \"domain_weights\": {\"books\": 5}, "
        "\"short_keep\": 0.5, \"long_threshold\": 300}",
        "{\"strategy\": \"global\", \"seq_len\": 64, \"global_batch\": 4, \"long_threshold\": 200, \"short_keep\": 0.2}",
        "{\"strategy\": \"original\", \"seq_len\": 32, \"global_batch\": 4, \"bos\": false, \"eos\": true}",
        "{\"strategy\": \"original\", \"seq_len\": 32, \"global_batch\": 4, \"bos\": true, \"eos\": true, "
        "\"cu_seqlens\": false}",
        "{\"strategy\": \"original\", \"seq_len\": 32, \"global_batch\": 2, \"total_tokens\": 200}",
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        lmx_plan *p = make_plan(specs[i]);
        if (!p)
            continue;
        const lmx_plan_spec *s = lmx__plan_spec(p);
        for (uint64_t st = 0; st < 3 && st < lmx__plan_max_steps(p); st++) {
            lmx_buf b = {0};
            lmx_wire_view v;
            if (get_batch(p, st, 0, 1, &b, &v) == LMX_OK)
                check_batch(p, &v, st, 0, 1);
            else
                lmx_test_failures++;
            lmx__buf_free(&b);
        }
        if (s->total_tokens) {
            /* 200 tokens of 2x32-token steps: 3 steps, then ERANGE */
            CHECK_EQ_U64(lmx__plan_max_steps(p), 3);
            lmx_buf b = {0};
            lmx_error err = {0};
            CHECK_EQ_INT(lmx__plan_batch(p, 3, 0, 1, &b, &err), LMX_ERANGE);
            CHECK_EQ_INT(lmx__plan_sequence(p, 6, &b, &err), LMX_ERANGE);
            CHECK_EQ_INT(lmx__plan_sequence(p, 5, &b, &err), LMX_OK);
            lmx__buf_free(&b);
        }
        if (s->n_weights) {
            /* domain_weights replace the natural share before normalizing */
            json_t *st = lmx__plan_stats(p, (uint64_t)1 << 26);
            json_t *doms = json_object_get(st, "domains");
            double sum = 0, books = json_real_value(json_object_get(json_object_get(doms, "books"), "target_share"));
            const char *k;
            json_t *o;
            json_object_foreach(doms, k, o) sum += json_real_value(json_object_get(o, "target_share"));
            CHECK(fabs(sum - 1.0) < 1e-9);
            uint64_t natural = 0;
            for (uint32_t d = 0; d < lmx__index_n_domains(ix); d++)
                natural += lmx__index_domain_stats(ix, d)->tokens;
            int bd = lmx__index_domain_find(ix, "books");
            double others = 1.0 - (double)lmx__index_domain_stats(ix, (uint32_t)bd)->tokens / (double)natural;
            CHECK(fabs(books - 5.0 / (5.0 + others)) < 1e-9);
            double realized = json_real_value(json_object_get(json_object_get(doms, "books"), "realized_share"));
            CHECK(fabs(realized - books) < 0.01);
            json_decref(st);
        }
        lmx__plan_free(p);
    }
}

static void expect_spec_error(const char *json, const char *field)
{
    lmx_plan_spec spec;
    lmx_error err = {0};
    int rc = parse_spec(json, &spec, &err);
    if (rc != LMX_EINVAL || !strstr(err.message, field)) {
        fprintf(stderr, "spec %s: got %d '%s', want LMX_EINVAL naming %s\n", json, rc, err.message, field);
        lmx_test_failures++;
    }
    lmx__plan_spec_free(&spec);
}

static void test_spec(void)
{
    lmx_plan_spec s;
    lmx_error err = {0};
    /* defaults of the contract */
    CHECK_EQ_INT(parse_spec("{\"strategy\": \"per_source\"}", &s, &err), LMX_OK);
    CHECK_EQ_U64(s.seq_len, 131072);
    CHECK_EQ_U64(s.global_batch, 32);
    CHECK_EQ_U64(s.seed, 0);
    CHECK_EQ_U64(s.long_threshold, 4096);
    CHECK(fabs(s.short_keep - 0.1) < 1e-12);
    CHECK(s.bos == -1 && s.eos == -1); /* the tokenizer's convention, resolved when bound */
    lmx__plan_spec_free(&s);
    CHECK_EQ_INT(parse_spec("{\"strategy\": \"global\", \"short_keep\": 1}", &s, &err), LMX_OK);
    CHECK(s.short_keep == 1.0);
    CHECK_EQ_INT(s.strategy, LMX_GLOBAL);
    lmx__plan_spec_free(&s);
    CHECK_EQ_INT(parse_spec("{\"strategy\": \"cut\"}", &s, &err), LMX_OK);
    CHECK_EQ_U64(s.cut_len, 4096);
    lmx__plan_spec_free(&s);
    CHECK_EQ_INT(parse_spec("{\"strategy\": \"per_source\", \"domain_weights\": {\"A\": 0.6, \"B\": 2}, \"seed\": 9,"
                            " \"eos\": true}", &s, &err), LMX_OK);
    CHECK_EQ_U64(s.n_weights, 2);
    CHECK_EQ_U64(s.seed, 9);
    CHECK_EQ_INT(s.eos, 1);
    for (uint32_t i = 0; i < s.n_weights; i++)
        CHECK((strcmp(s.weight_names[i], "A") == 0 && s.weights[i] == 0.6) ||
              (strcmp(s.weight_names[i], "B") == 0 && s.weights[i] == 2.0));
    /* the resolved spec as JSON carries the same values */
    json_t *j = lmx__plan_spec_json(&s);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "strategy")), "per_source");
    CHECK_EQ_U64(json_integer_value(json_object_get(j, "seq_len")), 131072);
    CHECK(json_real_value(json_object_get(json_object_get(j, "domain_weights"), "A")) == 0.6);
    CHECK(json_is_true(json_object_get(j, "eos")));
    json_decref(j);
    lmx__plan_spec_free(&s);

    /* errors name the field */
    expect_spec_error("{\"strategy\": \"mixed\"}", "plans.p.strategy");
    expect_spec_error("{\"seq_len\": 64}", "plans.p.strategy");
    expect_spec_error("{\"strategy\": 3}", "plans.p.strategy");
    expect_spec_error("{\"strategy\": \"original\", \"seq_len\": -64}", "plans.p.seq_len");
    expect_spec_error("{\"strategy\": \"original\", \"seq_len\": 1}", "plans.p.seq_len");
    expect_spec_error("{\"strategy\": \"original\", \"seq_len\": 16777217}", "plans.p.seq_len");
    expect_spec_error("{\"strategy\": \"original\", \"seq_len\": 64.5}", "plans.p.seq_len");
    expect_spec_error("{\"strategy\": \"original\", \"seq_len\": \"64\"}", "plans.p.seq_len");
    expect_spec_error("{\"strategy\": \"original\", \"global_batch\": 0}", "plans.p.global_batch");
    expect_spec_error("{\"strategy\": \"original\", \"global_batch\": 65537}", "plans.p.global_batch");
    expect_spec_error("{\"strategy\": \"original\", \"seed\": -1}", "plans.p.seed");
    expect_spec_error("{\"strategy\": \"original\", \"long_threshold\": 0}", "plans.p.long_threshold");
    expect_spec_error("{\"strategy\": \"per_source\", \"short_keep\": 1.5}", "plans.p.short_keep");
    expect_spec_error("{\"strategy\": \"per_source\", \"short_keep\": -0.1}", "plans.p.short_keep");
    expect_spec_error("{\"strategy\": \"global\", \"short_keep\": \"half\"}", "plans.p.short_keep");
    expect_spec_error("{\"strategy\": \"original\", \"short_keep\": 0.5}", "plans.p.short_keep");
    expect_spec_error("{\"strategy\": \"original\", \"bos\": 1}", "plans.p.bos");
    expect_spec_error("{\"strategy\": \"original\", \"eos\": \"no\"}", "plans.p.eos");
    expect_spec_error("{\"strategy\": \"original\", \"cut_len\": 128}", "plans.p.cut_len");
    expect_spec_error("{\"strategy\": \"cut\", \"cut_len\": 0}", "plans.p.cut_len");
    expect_spec_error("{\"strategy\": \"original\", \"total_tokens\": 0}", "plans.p.total_tokens");
    expect_spec_error("{\"strategy\": \"global\", \"domain_weights\": {\"a\": 1}}", "plans.p.domain_weights");
    expect_spec_error("{\"strategy\": \"per_source\", \"domain_weights\": {}}", "plans.p.domain_weights");
    expect_spec_error("{\"strategy\": \"per_source\", \"domain_weights\": [1]}", "plans.p.domain_weights");
    expect_spec_error("{\"strategy\": \"per_source\", \"domain_weights\": {\"a\": 0}}", "plans.p.domain_weights.a");
    expect_spec_error("{\"strategy\": \"per_source\", \"domain_weights\": {\"a\": -2}}", "plans.p.domain_weights.a");
    expect_spec_error("{\"strategy\": \"original\", \"sequence_length\": 64}", "plans.p.sequence_length");
    {
        /* Over the limit: the message names it (issue #16). */
        lmx_buf b = {0};
        lmx__buf_printf(&b, "{\"strategy\": \"per_source\", \"domain_weights\": {");
        for (int i = 0; i <= LMX_MAX_WEIGHTS; i++)
            lmx__buf_printf(&b, "%s\"d%d\": 1", i ? ", " : "", i);
        lmx__buf_printf(&b, "}}");
        lmx__buf_append(&b, "", 1);
        expect_spec_error((const char *)b.data, "at most 256 are allowed");
        lmx__buf_free(&b);
    }
    expect_spec_error("[1, 2]", "plans.p");

    /* binding to the index: unknown domains and separators the tokenizer lacks */
    CHECK_EQ_INT(parse_spec("{\"strategy\": \"per_source\", \"domain_weights\": {\"Nope\": 1}, \"seq_len\": 64}", &s,
                            &err),
                 LMX_OK);
    lmx_plan *p = NULL;
    lmx__err_clear(&err);
    CHECK_EQ_INT(lmx__plan_create(ix, "p", &s, NULL, &p, &err), LMX_EINVAL);
    CHECK(p == NULL);
    CHECK_CONTAINS(err.message, "plans.p.domain_weights.Nope");
    lmx__plan_spec_free(&s);

    /* separators named by string: they imply bos/eos, conflict with false, and need a
     * tokenizer.json (the bytes tokenizer has no named tokens) */
    expect_spec_error("{\"strategy\": \"original\", \"bos\": false, \"bos_token\": \"<s>\"}", "plans.p.bos_token");
    expect_spec_error("{\"strategy\": \"original\", \"eos_token\": 7}", "plans.p.eos_token");
    CHECK_EQ_INT(parse_spec("{\"strategy\": \"original\", \"eos_token\": \"</s>\", \"seq_len\": 64}", &s, &err),
                 LMX_OK);
    CHECK(s.eos == 1 && s.sep_token[1] && strcmp(s.sep_token[1], "</s>") == 0);
    json_t *sj = lmx__plan_spec_json(&s);
    CHECK_EQ_STR(json_string_value(json_object_get(sj, "eos_token")), "</s>");
    json_decref(sj);
    lmx__err_clear(&err);
    CHECK_EQ_INT(lmx__plan_create(ix, "p", &s, NULL, &p, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "plans.p.eos_token");
    lmx__plan_spec_free(&s);
}

/* Inside an epoch the order is a token-proportional merge of the long and the short items (by
 * document length): at every item boundary of epoch 0 of every domain, the long stream tokens so
 * far are within one item of L/(L+S) of all stream tokens so far (short_keep 1: every item is
 * kept). Also: epoch 0 holds every item of the domain exactly once. */
static void check_prefix_long_share(const char *json, uint32_t cut_len, uint32_t nsep)
{
    lmx_plan *p = make_plan(json);
    if (!p)
        return;
    const uint64_t thr = lmx__plan_spec(p)->long_threshold;
    const uint32_t nd = lmx__index_n_domains(ix);
    const uint64_t ndocs = lmx__index_n_docs(ix);
    /* per domain: L, S (stream tokens per class), the longest item, the item count */
    uint64_t L[8] = {0}, S[8] = {0}, maxs[8] = {0}, nitems[8] = {0};
    for (uint64_t id = 0; id < ndocs; id++) {
        uint64_t n;
        uint32_t dm;
        lmx__index_doc_meta(ix, id, &n, &dm);
        for (uint64_t off = 0; off < n; off += cut_len ? cut_len : n) {
            uint64_t len = cut_len && n - off > cut_len ? cut_len : n - off;
            *(n >= thr ? &L[dm] : &S[dm]) += len + nsep;
            maxs[dm] = len + nsep > maxs[dm] ? len + nsep : maxs[dm];
            nitems[dm]++;
        }
    }
    /* items of each domain in stream order: (doc, piece start) of their first span */
    uint64_t *seen_doc[8], *seen_off[8], nseen[8] = {0};
    for (uint32_t d = 0; d < nd; d++) {
        seen_doc[d] = calloc(nitems[d] + 1, sizeof(uint64_t));
        seen_off[d] = calloc(nitems[d] + 1, sizeof(uint64_t));
    }
    int done = 0;
    for (uint64_t st = 0; st < 400 && !done; st++) {
        lmx_buf b = {0};
        lmx_wire_view v;
        if (get_batch(p, st, 0, 1, &b, &v) != LMX_OK) {
            lmx_test_failures++;
            break;
        }
        for (uint32_t q = 0; q < v.h.n_seqs; q++) {
            uint32_t a, e;
            lmx__wire_seq_spans(&v, q, &a, &e);
            for (uint32_t i = a; i < e; i++) {
                lmx_span sp = lmx__wire_span(&v, i);
                uint32_t d = sp.domain;
                uint64_t pstart = cut_len ? sp.offset / cut_len * cut_len : 0;
                if (nseen[d] == nitems[d])
                    continue; /* epoch 0 of d is complete */
                if (nseen[d] && seen_doc[d][nseen[d] - 1] == sp.doc && seen_off[d][nseen[d] - 1] == pstart)
                    continue; /* the same item, continued */
                seen_doc[d][nseen[d]] = sp.doc;
                seen_off[d][nseen[d]++] = pstart;
            }
        }
        lmx__buf_free(&b);
        done = 1;
        for (uint32_t d = 0; d < nd; d++)
            done &= nseen[d] == nitems[d];
    }
    CHECK(done);
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t lt = 0, t = 0;
        int ok = 1, dup = 0;
        for (uint64_t k = 0; k < nseen[d]; k++) {
            /* before item k: |lt - T*L/(L+S)| <= one item */
            uint64_t lhs = lt * (L[d] + S[d]), rhs = L[d] * t, slack = maxs[d] * (L[d] + S[d]);
            ok &= (lhs > rhs ? lhs - rhs : rhs - lhs) <= slack;
            uint64_t n;
            uint32_t dm;
            lmx__index_doc_meta(ix, seen_doc[d][k], &n, &dm);
            uint64_t len = cut_len && n - seen_off[d][k] > cut_len ? cut_len : n - seen_off[d][k];
            t += len + nsep;
            if (n >= thr)
                lt += len + nsep;
            for (uint64_t j = 0; j < k; j++)
                dup |= seen_doc[d][j] == seen_doc[d][k] && seen_off[d][j] == seen_off[d][k];
        }
        if (!ok || dup)
            fprintf(stderr, "%s: domain %u: long share off by more than one item at a prefix of epoch 0 (%d), or an "
                            "item twice (%d)\n", json, d, !ok, dup);
        CHECK(ok);
        CHECK(!dup);
        CHECK_EQ_U64(t, L[d] + S[d]);
        free(seen_doc[d]);
        free(seen_off[d]);
    }
    lmx__plan_free(p);
}

static void test_prefix_long_share(void)
{
    check_prefix_long_share("{\"strategy\": \"original\", \"seq_len\": 64, \"global_batch\": 4, "
                            "\"long_threshold\": 200}",
                            0, 1);
    check_prefix_long_share("{\"strategy\": \"original\", \"seq_len\": 32, \"global_batch\": 4, "
                            "\"long_threshold\": 150, \"seed\": 5, \"eos\": true}",
                            0, 2);
    check_prefix_long_share("{\"strategy\": \"per_source\", \"seq_len\": 64, \"global_batch\": 4, "
                            "\"long_threshold\": 300, \"short_keep\": 1, \"seed\": 9}",
                            0, 1);
    check_prefix_long_share("{\"strategy\": \"cut\", \"cut_len\": 64, \"seq_len\": 64, \"global_batch\": 4, "
                            "\"long_threshold\": 250, \"seed\": 2}",
                            64, 1);
}

/* Golden digest of many batches of several strategies (plan_id bytes zeroed, since they depend
 * on the index identity): pins the packing byte for byte across refactors. A change that is
 * meant to alter bytes must bump LMX_PLAN_ALGORITHM and update this value. */
/* BLAKE2b over the batches of the golden specs at the first n_steps of the golden steps. */
static void golden_hex(char hex[65], size_t n_steps)
{
    static const char *const specs[] = {
        "{\"strategy\": \"cut\", \"cut_len\": 16, \"seq_len\": 64, \"global_batch\": 4}",
        "{\"strategy\": \"per_source\", \"seq_len\": 128, \"global_batch\": 2, \"seed\": 3, \"long_threshold\": 200}",
        "{\"strategy\": \"per_source\", \"seq_len\": 64, \"global_batch\": 4, \"domain_weights\": {\"books\": 5}, "
        "\"short_keep\": 0.5, \"long_threshold\": 300}",
        "{\"strategy\": \"global\", \"seq_len\": 64, \"global_batch\": 4, \"long_threshold\": 200, \"short_keep\": 0.2}",
        "{\"strategy\": \"original\", \"seq_len\": 32, \"global_batch\": 4, \"bos\": false, \"eos\": true}",
        "{\"strategy\": \"original\", \"seq_len\": 32, \"global_batch\": 4, \"bos\": true, \"eos\": true, "
        "\"cu_seqlens\": false}",
    };
    static const uint64_t steps[] = {0, 1, 2, 7, 31, 1000, 1048575, 1048576, 123456789};
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        lmx_plan *p = make_plan(specs[i]);
        if (!p)
            continue;
        for (size_t k = 0; k < sizeof steps / sizeof *steps && k < n_steps; k++)
            for (uint32_t world = 1; world <= 2; world++)
                for (uint32_t rank = 0; rank < world; rank++) {
                    lmx_buf b = {0};
                    lmx_error err = {0};
                    CHECK_EQ_INT(lmx__plan_batch(p, steps[k], rank, world, &b, &err), LMX_OK);
                    if (b.len >= LMX_WIRE_HEADER_SIZE)
                        memset(b.data + LMX_WH_PLAN_ID, 0, LMX_PLAN_ID_BYTES);
                    crypto_generichash_update(&hs, b.data, b.len);
                    lmx__buf_free(&b);
                }
        lmx__plan_free(p);
    }
    uint8_t h[32];
    crypto_generichash_final(&hs, h, sizeof h);
    lmx__hex(h, sizeof h, hex);
}


/* A range of a block (what batches build) has exactly the whole block's pieces over it, for
 * ranges starting anywhere: at 0, inside the continuations of the previous block's items, deep
 * inside, at the end. */
static void test_ranges(void)
{
    static const char *const specs[] = {
        "{\"strategy\": \"cut\", \"cut_len\": 16, \"seq_len\": 64, \"global_batch\": 4}",
        ("{\"strategy\": \"per_source\", \"seq_len\": 128, \"global_batch\": 2, \"domain_weights\": {\"books\": 0.01}, "
         "\"short_keep\": 0.5, \"long_threshold\": 300}"), /* parenthesized: one element (clang) */
        "{\"strategy\": \"global\", \"seq_len\": 64, \"global_batch\": 4, \"long_threshold\": 200, \"short_keep\": 0.2}",
        "{\"strategy\": \"original\", \"seq_len\": 32, \"global_batch\": 4, \"bos\": false, \"eos\": true}",
        "{\"strategy\": \"original\", \"seq_len\": 64, \"global_batch\": 4, \"pad_multiple\": 8}",
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        lmx_plan *p = make_plan(specs[i]);
        if (!p)
            continue;
        const uint64_t B = ((uint64_t)1 << 26) / 64 * 64;
        for (uint64_t b = 0; b < 4; b += 3) {
            lmx_error err = {0};
            block *full = lmx__plan_get_block(p, b, &err);
            CHECK(full != NULL);
            if (!full)
                continue;
            CHECK_EQ_U64(full->lo, 0);
            CHECK_EQ_U64(full->hi, B);
            uint64_t n = full->n;
            piece *all = malloc(n * sizeof *all);
            memcpy(all, full->pieces, n * sizeof *all);
            lmx__plan_put_block(p, full);
            int bad = 0;
            for (int t = 0; t < 48 && !bad; t++) {
                uint64_t lo = t == 0 ? 0 : t == 1 ? 1 : t == 2 ? B - 1 : t < 12 ? all[t].start + t % 3
                                                                         : ((uint64_t)rnd() << 8 | rnd() % 256) % B;
                uint64_t hi = lo + 1 + (t == 2 ? 0 : rnd() % (1u << 19));
                if (hi > B)
                    hi = B;
                lmx__plan_blocks_free(p); /* nothing cached: the range is built */
                block *r = lmx__plan_get_range(p, b, lo, hi, &err);
                CHECK(r != NULL);
                if (!r)
                    break;
                uint64_t k = lmx__plan_find_piece(&(block){.pieces = all, .n = n}, lo);
                uint64_t j = 0;
                while (j < r->n && k > 0 && all[k].start > r->pieces[0].start)
                    k--;
                bad = r->n == 0 || r->pieces[0].start > lo || r->pieces[r->n - 1].start + r->pieces[r->n - 1].len < hi;
                for (; !bad && j < r->n; j++, k++) {
                    const piece *x = &r->pieces[j], *y = &all[k];
                    bad = k >= n || x->start != y->start || x->item != y->item || x->dom != y->dom ||
                          x->item_off != y->item_off || x->len != y->len;
                }
                if (bad)
                    fprintf(stderr, "%s: block %llu range [%llu, %llu): piece %llu differs from the whole block's\n",
                            specs[i], (unsigned long long)b, (unsigned long long)lo, (unsigned long long)hi,
                            (unsigned long long)j);
                lmx__plan_put_block(p, r);
            }
            CHECK(!bad);
            free(all);
        }
        lmx__plan_free(p);
    }
}

static void test_golden_bytes(void)
{
    char hex[65];
    golden_hex(hex, SIZE_MAX);
    if (strcmp(hex, GOLDEN_HEX) != 0)
        fprintf(stderr, "golden batches: got %s\n", hex);
    CHECK(strcmp(hex, GOLDEN_HEX) == 0);
}

/* Inode of every DIR/ *.items file, in readdir order of a sorted scan; returns the count. */
static int table_inodes(const char *dir, unsigned long long *ino, int cap, int *n_ok)
{
    struct dirent **e;
    int n = scandir(dir, &e, NULL, alphasort), k = 0;
    *n_ok = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(e[i]->d_name);
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e[i]->d_name);
        struct stat st;
        if (l > 6 && strcmp(e[i]->d_name + l - 6, ".items") == 0 && stat(p, &st) == 0 && k < cap)
            ino[k++] = (unsigned long long)st.st_ino;
        if (l > 9 && strcmp(e[i]->d_name + l - 9, ".items.ok") == 0)
            (*n_ok)++;
        free(e[i]);
    }
    free(e);
    return k;
}

/* Each .items file under dir: flip a byte in its items (and drop its .ok), or truncate it. */
static void damage_tables(const char *dir, int truncate_it)
{
    struct dirent **e;
    int n = scandir(dir, &e, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(e[i]->d_name);
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e[i]->d_name);
        if (l > 9 && strcmp(e[i]->d_name + l - 9, ".items.ok") == 0 && !truncate_it)
            CHECK_EQ_INT(unlink(p), 0);
        if (l > 6 && strcmp(e[i]->d_name + l - 6, ".items") == 0) {
            struct stat st;
            CHECK_EQ_INT(stat(p, &st), 0);
            FILE *f = fopen(p, "r+b");
            CHECK(f != NULL);
            if (f && truncate_it) {
                CHECK_EQ_INT(ftruncate(fileno(f), 100), 0);
            } else if (f) {
                fseek(f, st.st_size - 5, SEEK_SET);
                int c = fgetc(f);
                fseek(f, st.st_size - 5, SEEK_SET);
                fputc(c ^ 1, f);
            }
            if (f)
                fclose(f);
        }
        free(e[i]);
    }
    free(e);
}

/* Item tables in files (lmx_plan_table.c): built into the index's table folder, mapped at the
 * next create (same files), rebuilt when a table fails its checksum or is truncated; the bytes
 * are the golden ones every time. */
static void test_item_tables(void)
{
    char dir[600], want[65], hex[65];
    golden_hex(want, 5); /* heap tables: the reference (steps 0..31) */
    snprintf(dir, sizeof dir, "%s/tables", root);
    CHECK_EQ_INT(lmx__index_set_table_dir(ix, dir), LMX_OK);
    unsigned long long a[16], b[16];
    int ok_a, ok_b;
    golden_hex(hex, 5); /* builds the tables */
    CHECK(strcmp(hex, want) == 0);
    int n = table_inodes(dir, a, 16, &ok_a);
    CHECK(n == 6 && ok_a == 6);
    golden_hex(hex, 5); /* maps them */
    CHECK(strcmp(hex, want) == 0);
    CHECK(table_inodes(dir, b, 16, &ok_b) == n && memcmp(a, b, sizeof a[0] * (size_t)n) == 0);
    damage_tables(dir, 0); /* a flipped item byte, checksum not yet vouched for: rebuilt */
    golden_hex(hex, 5);
    CHECK(strcmp(hex, want) == 0);
    CHECK(table_inodes(dir, b, 16, &ok_b) == n && ok_b == n);
    for (int i = 0; i < n; i++)
        CHECK(a[i] != b[i]);
    damage_tables(dir, 1); /* truncated: the header no longer fits the size: rebuilt */
    golden_hex(hex, 5);
    CHECK(strcmp(hex, want) == 0);
    CHECK_EQ_INT(lmx__index_set_table_dir(ix, NULL), LMX_OK);
}


/* Names of the epoch index files in dir (up to cap), sorted; returns the count. */
static int epoch_files(const char *dir, char (*names)[128], int cap)
{
    struct dirent **e;
    int n = scandir(dir, &e, NULL, alphasort), k = 0;
    for (int i = 0; i < n; i++) {
        if (strstr(e[i]->d_name, ".epoch.") && !strstr(e[i]->d_name, ".tmp") && k < cap)
            snprintf(names[k++], 128, "%s", e[i]->d_name);
        free(e[i]);
    }
    free(e);
    return n < 0 ? 0 : k;
}

/* Every epoch index file of dir equals a fresh walk of its epoch (checked through the plan of
 * each golden spec that owns it); returns the number checked. */
static int check_epoch_files(const char *dir)
{
    static const char *const specs[] = {
        "{\"strategy\": \"per_source\", \"seq_len\": 64, \"global_batch\": 4, \"domain_weights\": {\"books\": 5}, "
        "\"short_keep\": 0.5, \"long_threshold\": 300}",
        "{\"strategy\": \"global\", \"seq_len\": 64, \"global_batch\": 4, \"long_threshold\": 200, \"short_keep\": 0.2}",
    };
    char names[256][128];
    int n = epoch_files(dir, names, 256), checked = 0;
    for (size_t s = 0; s < 2; s++) {
        lmx_plan *p = make_plan(specs[s]);
        if (!p)
            continue;
        for (int i = 0; i < n; i++) {
            unsigned dom, slot;
            if (strncmp(names[i], lmx__plan_id_hex(p), 32) != 0 || sscanf(names[i] + 32, ".epoch.%u.%u", &dom, &slot) != 2)
                continue;
            uint64_t nck = p->doms[dom].n / CKPT_EVERY + 2, total = 0;
            epoch_index ei = {0};
            ckpt *ck = calloc(nck, sizeof *ck);
            lmx_error err = {0};
            CHECK(lmx__plan_epoch_load(p, dom, slot, UINT64_MAX, nck, &ei));
            CHECK_EQ_INT(lmx__plan_walk_epoch(p, dom, ei.epoch, ck, &total, NULL, &err), LMX_OK);
            CHECK_EQ_U64(ei.total, total);
            CHECK(ei.ck && memcmp(ck, ei.ck, (nck - 1) * sizeof *ck) == 0); /* the last entry is never written */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            CHECK(ei.file_mapped); /* used in place: page cache, not heap */
#endif
            checked++;
            free(ck);
            lmx__plan_epoch_release(&ei);
        }
        lmx__plan_free(p);
    }
    return checked;
}

/* Epoch index files (lmx_plan_epochs.c), with the file threshold lowered to every domain: the
 * golden bytes when they are written, when they are read back, and when they are damaged
 * (detected, rewritten); each equals a fresh walk; gone with their tables. */
static void test_epoch_files(void)
{
    char dir[600], hex[65], path[1200];
    char names[256][128];
    snprintf(dir, sizeof dir, "%s/etables", root);
    lmx__plan_epoch_file_min = 1;
    CHECK_EQ_INT(lmx__index_set_table_dir(ix, dir), LMX_OK);
    golden_hex(hex, SIZE_MAX); /* builds tables, writes epoch 0 and the epochs used */
    CHECK(strcmp(hex, GOLDEN_HEX) == 0);
    int n = epoch_files(dir, names, 256);
    CHECK(n >= 3 * 6);
    CHECK(check_epoch_files(dir) > 0);
    golden_hex(hex, SIZE_MAX); /* reads them */
    CHECK(strcmp(hex, GOLDEN_HEX) == 0);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    { /* epochs read from files or walked and written are used through mappings, not the heap */
        lmx_plan *p = make_plan("{\"strategy\": \"global\", \"seq_len\": 64, \"global_batch\": 4, "
                                "\"long_threshold\": 200, \"short_keep\": 0.2}");
        int mapped = 0, heap = 0;
        for (uint64_t step = 1048576; p && step < 1048576 + 2048; step += 512) {
            lmx_buf b = {0};
            lmx_error err = {0};
            CHECK_EQ_INT(lmx__plan_batch(p, step, 0, 1, &b, &err), LMX_OK);
            lmx__buf_free(&b);
        }
        if (p)
            pthread_mutex_lock(&p->lock);
        for (uint32_t d = 0; p && d < p->n_doms; d++)
            for (int i = 0; i < EPOCH_CACHE; i++)
                if (p->doms[d].ep[i].valid)
                    p->doms[d].ep[i].file_mapped ? mapped++ : heap++;
        if (p)
            pthread_mutex_unlock(&p->lock);
        CHECK(mapped > 0);
        CHECK_EQ_INT(heap, 0);
        lmx__plan_free(p);
    }
#endif
    for (int i = 0; i < n; i++) { /* a flipped checkpoint byte in each: detected, walked again */
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "r+b");
        CHECK(f != NULL);
        if (!f)
            continue;
        fseek(f, 100, SEEK_SET);
        int c = fgetc(f);
        fseek(f, 100, SEEK_SET);
        fputc(c ^ 1, f);
        fclose(f);
    }
    golden_hex(hex, SIZE_MAX);
    CHECK(strcmp(hex, GOLDEN_HEX) == 0);
    CHECK(check_epoch_files(dir) > 0); /* the ones left are valid (CHECK inside) */
    CHECK_EQ_INT(lmx__index_set_table_dir(ix, NULL), LMX_OK);
    CHECK(lmx__plan_table_gc(dir, NULL, 0, 0) == 6);
    CHECK_EQ_INT(epoch_files(dir, names, 256), 0);
    lmx__plan_epoch_file_min = (uint64_t)1 << 16;
}

/* The epoch of domain dom's cache holding substream position from (after a dgen_init there). */
static const epoch_index *cached_epoch(const lmx_plan *p, uint32_t dom, uint64_t from)
{
    for (int i = 0; i < EPOCH_CACHE; i++) {
        const epoch_index *e = &p->doms[dom].ep[i];
        if (e->valid && e->cum <= from && from - e->cum < e->total)
            return e;
    }
    return NULL;
}

/* The next epoch walked in the background (lmx_plan_prewalk.c): a range starting past the middle
 * of an epoch asks for the next one, so the request that enters it walks nothing (walks[0] stays
 * at epoch 0's one per domain) and gets the substream a plan without the walker gives. */
static void test_prewalk(void)
{
    /* every item kept in every epoch: no epoch is empty, so epoch e starts where e - 1 ends */
    const char *spec = "{\"strategy\": \"per_source\", \"seq_len\": 64, \"global_batch\": 2, \"seed\": 9, "
                       "\"short_keep\": 1}";
    lmx__plan_epoch_file_min = 1;
    lmx_plan *p = make_plan(spec), *q = make_plan(spec);
    if (!p || !q)
        goto out;
    CHECK(p->n_doms <= 64);
    if (p->n_doms > 64)
        goto out;
    atomic_store(&q->pre_stop, 1); /* q walks every epoch itself, under its lock */
    lmx_error err = {0};
    uint32_t used = 0;
    for (uint32_t dom = 0; dom < p->n_doms; dom++) {
        if (p->doms[dom].n < 2)
            continue;
        used++;
        uint64_t from = 0;
        for (int e = 0; e < 6; e++) {
            uint64_t at[2] = {from, 0};
            for (int k = 0; k < 2; k++) {
                dgen g, h;
                uint64_t fr[64];
                for (uint32_t x = 0; x < 64; x++)
                    fr[x] = x == dom ? at[k] : UINT64_MAX;
                pthread_mutex_lock(&p->lock);
                lmx__plan_epochs_ready(p, fr); /* what a range build does first */
                CHECK_EQ_INT(lmx__plan_dgen_init(p, dom, at[k], 1000, &g, &err), LMX_OK);
                const epoch_index *ei = cached_epoch(p, dom, at[k]);
                CHECK(ei != NULL && ei->epoch == (uint64_t)e);
                if (ei && k == 0)
                    at[1] = ei->cum + ei->total * 3 / 4; /* past the middle: asks for e + 1 */
                if (ei && k == 1)
                    from = ei->cum + ei->total;
                pthread_mutex_unlock(&p->lock);
                pthread_mutex_lock(&q->lock);
                CHECK_EQ_INT(lmx__plan_dgen_init(q, dom, at[k], 1000, &h, &err), LMX_OK);
                pthread_mutex_unlock(&q->lock);
                CHECK_EQ_U64(g.ii, h.ii);
                CHECK_EQ_U64(g.off, h.off);
                CHECK_EQ_U64(g.len, h.len);
                CHECK_EQ_U64(g.c.E, h.c.E);
            }
        }
    }
    CHECK(used >= 2);
    pthread_mutex_lock(&p->lock);
    for (uint32_t dom = 0; dom < p->n_doms; dom++) /* epoch 6, asked last */
        while (p->doms[dom].pre_state != 0)
            pthread_cond_wait(&p->pre_done, &p->lock);
    CHECK_EQ_U64(p->walks[0], used);     /* epoch 0 of each domain */
    CHECK_EQ_U64(p->walks[1], 6 * used); /* epochs 1-6, in the background */
    pthread_mutex_unlock(&p->lock);
    CHECK_EQ_U64(q->walks[0], 6 * used);
    CHECK_EQ_U64(q->walks[1], 0);
out:
    lmx__plan_free(p);
    lmx__plan_free(q);
    lmx__plan_epoch_file_min = (uint64_t)1 << 16;
}

/* A jump (a fresh plan asked for a far step): the domains' missing epochs are walked in parallel
 * (lmx__plan_epochs_ready), once each, and the batch is the one of a plan without that path (every
 * domain under the file threshold: walked one after the other by the batch). */
static void test_walk_ahead(void)
{
    const char *spec = "{\"strategy\": \"global\", \"seq_len\": 64, \"global_batch\": 4, \"long_threshold\": 200, "
                       "\"short_keep\": 0.2}";
    lmx_plan *ref = make_plan(spec);
    lmx__plan_epoch_file_min = 1;
    lmx_plan *p = make_plan(spec);
    lmx_error err = {0};
    if (!ref || !p)
        goto out;
    uint32_t with_items = 0;
    for (uint32_t d = 0; d < p->n_doms; d++)
        with_items += p->doms[d].n > 0;
    CHECK(with_items >= 2);
    const uint64_t steps[] = {123456789, 7, 1048576};
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        lmx_buf a = {0}, b = {0};
        CHECK_EQ_INT(lmx__plan_batch(p, steps[k], 0, 1, &a, &err), LMX_OK);
        CHECK_EQ_INT(lmx__plan_batch(ref, steps[k], 0, 1, &b, &err), LMX_OK);
        CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
        if (k == 0) { /* its range starts every domain in an epoch not yet walked */
            uint64_t w[2];
            lmx__plan_walk_counts(p, w);
            CHECK(w[0] >= with_items);
        }
        lmx__buf_free(&a);
        lmx__buf_free(&b);
    }
out:
    lmx__plan_free(p);
    lmx__plan_free(ref);
    lmx__plan_epoch_file_min = (uint64_t)1 << 16;
}

/* A stop flag (a daemon stopping during a reload's build) ends plan creation and walks early:
 * LMX_ETIMEOUT, no plan, no table file or temporary left. */
static void test_stop(void)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/stop-tables", root);
    CHECK_EQ_INT(lmx__index_set_table_dir(ix, dir), LMX_OK);
    lmx_plan_spec spec;
    lmx_error err = {0};
    CHECK_EQ_INT(parse_spec("{\"strategy\": \"cut\", \"cut_len\": 8, \"seq_len\": 64, \"global_batch\": 2}", &spec, &err), LMX_OK);
    atomic_int stop;
    atomic_init(&stop, 1);
    lmx_plan *p = (lmx_plan *)&stop;
    CHECK_EQ_INT(lmx__plan_create(ix, "p", &spec, &stop, &p, &err), LMX_ETIMEOUT);
    CHECK(p == NULL);
    CHECK_CONTAINS(err.message, "stopped");
    struct dirent **e;
    int n = scandir(dir, &e, NULL, alphasort), files = 0;
    for (int i = 0; i < n; i++) {
        files += e[i]->d_name[0] != '.';
        free(e[i]);
    }
    if (n >= 0)
        free(e);
    CHECK_EQ_INT(files, 0);
    atomic_store(&stop, 0);
    CHECK_EQ_INT(lmx__plan_create(ix, "p", &spec, &stop, &p, &err), LMX_OK);
    if (p) {
        uint64_t total = 0;
        ckpt *ck = calloc(lmx__plan_n_ckpt(&p->doms[0]), sizeof *ck);
        CHECK_EQ_INT(lmx__plan_walk_epoch(p, 0, 3, ck, &total, NULL, &err), LMX_OK);
        atomic_store(&stop, 1); /* the creator's flag stops the plan's later walks too */
        CHECK_EQ_INT(lmx__plan_walk_epoch(p, 0, 3, ck, &total, NULL, &err), LMX_ETIMEOUT);
        free(ck);
    }
    lmx__plan_free(p);
    lmx__plan_spec_free(&spec);
    CHECK_EQ_INT(lmx__index_set_table_dir(ix, NULL), LMX_OK);
}

/* Wire v2: the cp_size slices of every sequence reassemble to the v1 sequence; labels are the
 * next token, ignore_index where the target starts another segment (unless cross_doc_labels);
 * positions restart at every cu_seqlens boundary; spans cover the slice exactly. */
static void check_cp(const char *json, uint64_t step, uint32_t rank, uint32_t world)
{
    lmx_plan *p = make_plan(json);
    if (!p)
        return;
    const lmx_plan_spec *sp = lmx__plan_spec(p);
    lmx_buf wb = {0};
    lmx_wire_view w;
    lmx_error err = {0};
    if (get_batch(p, step, rank, world, &wb, &w) != LMX_OK) {
        lmx_test_failures++;
        lmx__plan_free(p);
        return;
    }
    const uint32_t L = w.h.seq_len, n = w.h.n_seqs;
    uint32_t *lab = malloc(sizeof *lab * L), *pos = malloc(sizeof *pos * L), *tok = malloc(sizeof *tok * L);
    uint32_t *cov = malloc(sizeof *cov * L);
    static const uint32_t Ks[] = {1, 2, 4, 8};
    for (size_t ki = 0; ki < 4; ki++) {
        const uint32_t K = Ks[ki];
        for (uint32_t s = 0; s < n; s++)
            for (uint32_t C = 0; C < K; C++) {
                lmx_buf b = {0};
                lmx_wire_view v;
                CHECK_EQ_INT(lmx__plan_batch_cp(p, step, rank, world, C, K, &b, &err), LMX_OK);
                CHECK_EQ_INT(lmx__wire_parse(b.data, b.len, &v, &err), LMX_OK);
                if (!b.len || v.base == NULL) {
                    lmx__buf_free(&b);
                    continue;
                }
                const uint32_t S = L / K, c = K == 1 ? L : S / 2;
                CHECK_EQ_U64(lmx__wire_slice_len(&v.h), S);
                CHECK_EQ_U64(lmx__wire_next_token(&v, s), lmx__wire_next_token(&w, s));
                if (C == 0)
                    memset(cov, 0, sizeof *cov * L);
                for (uint32_t j = 0; j < S; j++) {
                    uint32_t q = K == 1 ? j : j < c ? C * c + j : (2 * K - 1 - C) * c + (j - c);
                    tok[q] = lmx__wire_token(&v, s, j);
                    lab[q] = (uint32_t)lmx__wire_label(&v, s, j);
                    pos[q] = lmx__wire_position(&v, s, j);
                }
                /* spans of the slice, mapped back, mark covered positions with doc tokens */
                uint32_t a, e;
                lmx__wire_seq_spans(&v, s, &a, &e);
                for (uint32_t i = a; i < e; i++) {
                    lmx_span x = lmx__wire_span(&v, i);
                    for (uint32_t t = 0; t < x.length; t++) {
                        uint32_t j = x.start + t;
                        uint32_t q = K == 1 ? j : j < c ? C * c + j : (2 * K - 1 - C) * c + (j - c);
                        lmx_doc d;
                        lmx__index_doc(ix, x.doc, &d, NULL);
                        CHECK_EQ_U64(tok[q], lmx__doc_token(&d, x.offset + t));
                        cov[q]++;
                    }
                }
                /* cu_seqlens are the whole sequence's */
                uint32_t ca, ce, wa, we;
                lmx__wire_seq_cu(&v, s, &ca, &ce);
                lmx__wire_seq_cu(&w, s, &wa, &we);
                if (sp->cu_seqlens) {
                    CHECK_EQ_U64(ce - ca, we - wa);
                    for (uint32_t i = 0; i < ce - ca && i < we - wa; i++)
                        CHECK_EQ_INT(lmx__wire_cu(&v, ca + i), lmx__wire_cu(&w, wa + i));
                } else {
                    CHECK_EQ_U64(ce - ca, 2);
                }
                lmx__buf_free(&b);
                if (C + 1 < K)
                    continue;
                /* the whole sequence is back: compare with v1 */
                uint32_t fa, fe;
                lmx__wire_seq_spans(&w, s, &fa, &fe);
                uint32_t covered = 0;
                for (uint32_t i = fa; i < fe; i++)
                    covered += lmx__wire_span(&w, i).length;
                uint32_t covered2 = 0, bad = 0;
                for (uint32_t q = 0; q < L; q++) {
                    covered2 += cov[q];
                    bad += tok[q] != lmx__wire_token(&w, s, q);
                }
                CHECK_EQ_U64(covered2, covered);
                CHECK_EQ_U64(bad, 0);
                uint32_t seg = 0, i = wa;
                for (uint32_t q = 0; q < L; q++) {
                    if (sp->cu_seqlens) {
                        while (i + 1 < we && (uint32_t)lmx__wire_cu(&w, i + 1) <= q)
                            i++;
                        seg = (uint32_t)lmx__wire_cu(&w, i);
                    }
                    if (pos[q] != q - seg)
                        bad++;
                    int boundary = sp->cu_seqlens && i + 1 < we && (uint32_t)lmx__wire_cu(&w, i + 1) == q + 1 &&
                                   q + 1 < L;
                    uint32_t want = q + 1 < L ? lmx__wire_token(&w, s, q + 1) : lmx__wire_next_token(&w, s);
                    if (boundary && !sp->cross_doc_labels)
                        want = (uint32_t)sp->ignore_index;
                    /* Masked targets the v1 body cannot show: past the end (the next sequence
                     * decides), and without cu_seqlens at a separator (a document boundary). */
                    int maybe = q + 1 == L || (!sp->cu_seqlens && (!cov[q] || !cov[q + 1]));
                    if (maybe)
                        bad += lab[q] != want && lab[q] != (uint32_t)sp->ignore_index;
                    else
                        bad += lab[q] != want;
                }
                CHECK_EQ_U64(bad, 0);
            }
    }
    lmx_buf b = {0};
    CHECK_EQ_INT(lmx__plan_batch_cp(p, step, rank, world, 0, 0, &b, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "cp_size");
    CHECK_EQ_INT(lmx__plan_batch_cp(p, step, rank, world, 2, 2, &b, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "cp_rank");
    CHECK_EQ_INT(lmx__plan_batch_cp(p, step, rank, world, 0, LMX_MAX_CP_SIZE + 1, &b, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "cp_size");
    CHECK_EQ_INT(lmx__plan_batch_cp(p, step, rank, world, 0, 3, &b, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "seq_len");
    lmx__buf_free(&b);
    free(lab);
    free(pos);
    free(tok);
    free(cov);
    lmx__buf_free(&wb);
    lmx__plan_free(p);
}

static void test_cp(void)
{
    check_cp("{\"strategy\": \"original\", \"seq_len\": 256, \"global_batch\": 4}", 0, 0, 1);
    check_cp("{\"strategy\": \"original\", \"seq_len\": 256, \"global_batch\": 4, \"eos\": true}", 3, 1, 2);
    check_cp("{\"strategy\": \"cut\", \"cut_len\": 40, \"seq_len\": 128, \"global_batch\": 2}", 5, 0, 1);
    check_cp("{\"strategy\": \"per_source\", \"seq_len\": 512, \"global_batch\": 2, \"bos\": false, "
             "\"cross_doc_labels\": true, \"ignore_index\": -1}", 1, 1, 2);
    check_cp("{\"strategy\": \"original\", \"seq_len\": 256, \"global_batch\": 2, \"cu_seqlens\": false}", 2, 0, 1);
    /* the last sequence of block 0 (its next token is in block 1) */
    check_cp("{\"strategy\": \"original\", \"seq_len\": 4096, \"global_batch\": 2}",
             (((uint64_t)1 << 26) / 4096 - 1) / 2, 1, 2);
    /* the label keys are in the plan id only when set */
    lmx_plan *a = make_plan("{\"strategy\": \"original\"}");
    lmx_plan *b = make_plan("{\"strategy\": \"original\", \"cross_doc_labels\": false, \"ignore_index\": -100}");
    lmx_plan *c = make_plan("{\"strategy\": \"original\", \"ignore_index\": -1}");
    if (a && b && c) {
        CHECK(strcmp(lmx__plan_id_hex(a), lmx__plan_id_hex(b)) == 0);
        CHECK(strcmp(lmx__plan_id_hex(a), lmx__plan_id_hex(c)) != 0);
    }
    lmx__plan_free(a);
    lmx__plan_free(b);
    lmx__plan_free(c);
    expect_spec_error("{\"strategy\": \"original\", \"ignore_index\": 0}", "plans.p.ignore_index");
    expect_spec_error("{\"strategy\": \"original\", \"cross_doc_labels\": 1}", "plans.p.cross_doc_labels");
}

/* A domain's share is checked against 1/B (B = block size) without overflow: a one-domain index
 * (share 1) is served, a domain weighted below 1/B is refused by name. */
static void test_weight_bounds(void)
{
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/one.jsonl", root);
    const char *docs = "{\"text\": \"alpha beta\", \"meta\": {\"redpajama_set_name\": \"solo\"}}\n"
                       "{\"text\": \"gamma\", \"meta\": {\"redpajama_set_name\": \"solo\"}}\n";
    lmx_test_write(in, docs, strlen(docs));
    snprintf(out, sizeof out, "%s/ix-one", root);
    lmx_index_options o = {0};
    o.tokenizer = "bytes";
    o.out_dir = out;
    o.threads = 1;
    o.domain_field = "meta.redpajama_set_name";
    char *inputs[] = {in};
    lmx_error err = {0};
    lmx_index *one = NULL;
    CHECK_EQ_INT(lmx__index_build(&o, inputs, 1, &err), LMX_OK);
    CHECK_EQ_INT(lmx__index_open(out, &one, &err), LMX_OK);
    const char *specs[] = {"{\"strategy\": \"original\", \"seq_len\": 256, \"global_batch\": 2}",
                           "{\"strategy\": \"per_source\", \"seq_len\": 131072, \"global_batch\": 1}"};
    for (int i = 0; one && i < 2; i++) {
        lmx_plan_spec spec;
        CHECK_EQ_INT(parse_spec(specs[i], &spec, &err), LMX_OK);
        lmx_plan *p = NULL;
        int rc = lmx__plan_create(one, "solo", &spec, NULL, &p, &err);
        if (rc)
            fprintf(stderr, "one-domain plan %s: %s\n", specs[i], err.message);
        CHECK_EQ_INT(rc, LMX_OK);
        lmx__plan_free(p);
        lmx__plan_spec_free(&spec);
    }
    lmx__index_close(one);
    lmx_plan_spec spec;
    CHECK_EQ_INT(parse_spec("{\"strategy\": \"per_source\", \"seq_len\": 256, \"domain_weights\": "
                            "{\"web\": 1, \"code\": 1e-12, \"books\": 1}}",
                            &spec, &err),
                 LMX_OK);
    lmx_plan *p = NULL;
    CHECK_EQ_INT(lmx__plan_create(ix, "p", &spec, NULL, &p, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "domain code's weight");
    lmx__plan_free(p);
    lmx__plan_spec_free(&spec);
}

/* Padded plans (pad_multiple M): spec errors name the key; the id changes only when M > 1;
 * every batch is wire v3 whose padded segments are M-multiples (also across the first block
 * edge) with real lengths in [1, padded]; the thd layout's checks name cp_layout and
 * pad_multiple; statistics still run. */
static void test_padded(void)
{
    expect_spec_error("{\"strategy\": \"original\", \"pad_multiple\": 0}", "plans.p.pad_multiple");
    expect_spec_error("{\"strategy\": \"original\", \"seq_len\": 100, \"pad_multiple\": 16}", "plans.p.pad_multiple");
    expect_spec_error("{\"strategy\": \"original\", \"pad_multiple\": 16, \"cu_seqlens\": false}", "plans.p.pad_multiple");
    expect_spec_error("{\"strategy\": \"original\", \"pad_multiple\": 16, \"cross_doc_labels\": true}",
                      "plans.p.pad_multiple");
    expect_spec_error("{\"strategy\": \"original\", \"pad_token\": \"<pad>\"}", "plans.p.pad_token");
    expect_spec_error("{\"strategy\": \"original\", \"pad_multiple\": 16, \"pad_token\": 3}", "plans.p.pad_token");
    lmx_plan *a = make_plan("{\"strategy\": \"original\", \"seq_len\": 4096}");
    lmx_plan *b = make_plan("{\"strategy\": \"original\", \"seq_len\": 4096, \"pad_multiple\": 1}");
    lmx_plan *p = make_plan("{\"strategy\": \"per_source\", \"seq_len\": 4096, \"global_batch\": 2, \"pad_multiple\": 16}");
    if (!a || !b || !p)
        goto out;
    CHECK(strcmp(lmx__plan_id_hex(a), lmx__plan_id_hex(b)) == 0);
    CHECK(strcmp(lmx__plan_id_hex(a), lmx__plan_id_hex(p)) != 0);
    const uint64_t edge = ((uint64_t)1 << 26) / 4096 / 2; /* step of the first sequence of block 1 */
    const uint64_t steps[] = {0, 3, edge - 1, edge};
    lmx_buf out = {0};
    lmx_error err = {0};
    uint64_t pads = 0;
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        lmx_wire_view v;
        CHECK_EQ_INT(lmx__plan_batch(p, steps[k], 0, 1, &out, &err), LMX_OK);
        CHECK_EQ_INT(lmx__wire_parse(out.data, out.len, &v, &err), LMX_OK);
        CHECK_EQ_U64(v.h.version, LMX_WIRE_VERSION_PAD);
        for (uint32_t s = 0; s < v.h.n_seqs; s++) {
            uint32_t c0, c1;
            lmx__wire_seq_cu(&v, s, &c0, &c1);
            for (uint32_t i = c0 + 1; i < c1; i++) {
                int32_t padded = lmx__wire_cu(&v, i) - lmx__wire_cu(&v, i - 1);
                int32_t real = lmx__wire_cu_real(&v, i) - lmx__wire_cu_real(&v, i - 1);
                CHECK(padded % 16 == 0 && real >= 1 && real <= padded);
                for (int32_t q = lmx__wire_cu(&v, i - 1) + real; q < lmx__wire_cu(&v, i); q++, pads++)
                    CHECK(lmx__wire_label(&v, s, (uint32_t)q) == -100);
            }
        }
    }
    CHECK(pads > 0);
    CHECK_EQ_INT(lmx__plan_batch_layout(p, 0, 0, 1, 0, 8, LMX_CP_THD, &out, &err), LMX_OK);
    CHECK_EQ_INT(lmx__plan_batch_layout(p, 0, 0, 1, 0, 16, LMX_CP_THD, &out, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "cp_layout");
    CHECK_CONTAINS(err.message, "pad_multiple");
    CHECK_EQ_INT(lmx__plan_batch_layout(a, 0, 0, 1, 0, 2, LMX_CP_THD, &out, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "pad_multiple");
    CHECK_EQ_INT(lmx__plan_batch_layout(p, 0, 0, 1, 0, 2, 7, &out, &err), LMX_EINVAL);
    CHECK_CONTAINS(err.message, "cp_layout");
    json_t *st = lmx__plan_stats(p, 0);
    CHECK(st != NULL);
    json_decref(st);
    lmx__buf_free(&out);
    /* the bytes index names no tokens */
    lmx_plan_spec spec;
    if (parse_spec("{\"strategy\": \"original\", \"pad_multiple\": 16, \"pad_token\": \"x\"}", &spec, &err) == LMX_OK) {
        lmx_plan *q = NULL;
        CHECK_EQ_INT(lmx__plan_create(ix, "p", &spec, NULL, &q, &err), LMX_EINVAL);
        CHECK_CONTAINS(err.message, "plans.p.pad_token");
        lmx__plan_free(q);
    }
    lmx__plan_spec_free(&spec);
out:
    lmx__plan_free(a);
    lmx__plan_free(b);
    lmx__plan_free(p);
}

int main(void)
{
    lmx_test_tmpdir("plan", root, sizeof root);
    build_index();
    test_spec();
    test_original();
    test_strategies();
    test_block_boundary();
    test_prefix_long_share();
    test_golden_bytes();
    test_ranges();
    test_item_tables();
    test_epoch_files();
    test_prewalk();
    test_walk_ahead();
    test_stop();
    test_cp();
    test_weight_bounds();
    test_padded();
    lmx__index_close(ix);
    CHECK_EQ_INT(lmx_test_rmtree(root), 0);
    TEST_MAIN_END();
}
