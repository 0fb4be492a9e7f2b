/* common/lmx_wire.c: batch wire format v1 writer and validating reader. */
#include <string.h>

#include "lmx_test.h"
#include "lmx_wire.h"

#define SEQ_LEN 8
#define N_SEQS 3

static const char *const domains[] = {"alpha", "RedPajamaBook", "c"};
static const lmx_span spans0[] = {{5, 0, 1, 3, 0}, {9, 100, 5, 3, 2}};
static const lmx_span spans2[] = {{UINT64_MAX - 1, (uint64_t)1 << 40, 0, 8, 1}};
static const int32_t cu0[] = {0, 4, 8}, cu1[] = {0, 8}, cu2[] = {0, 3, 7, 8};

static uint32_t tok_value(uint32_t tb, uint32_t seq, uint32_t pos)
{
    /* extremes first, then a pattern */
    if (seq == 0 && pos == 0)
        return tb == 2 ? 0xffffu : 0xffffffffu;
    if (seq == 0 && pos == 1)
        return 0;
    if (seq == 1 && pos == 7)
        return tb == 2 ? 0x8001u : 0x80000001u;
    uint32_t v = seq * 1000 + pos * 37 + (tb == 4 ? 70000 : 256);
    return tb == 2 ? (v & 0xffffu) : v;
}

static uint32_t next_value(uint32_t tb, uint32_t seq) { return tb == 2 ? 0xfff0u + seq : 0xfffffff0u + seq; }

static const uint8_t plan_id[LMX_PLAN_ID_BYTES] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0xff};

/* Builds the reference batch into out. */
static int build(uint32_t tb, int with_cu, lmx_buf *out)
{
    lmx_wire_header h = {0};
    h.flags = with_cu ? LMX_WIRE_FLAG_CU_SEQLENS : 0;
    memcpy(h.plan_id, plan_id, sizeof plan_id);
    h.step = 0x0123456789abcdefull;
    h.rank = 2;
    h.world = 4;
    h.seq_len = SEQ_LEN;
    h.n_seqs = N_SEQS;
    h.token_bytes = tb;
    h.n_spans = 99; /* ignored by begin: the writer counts */
    lmx_wire_writer w;
    lmx_error err = {0};
    int rc = lmx__wire_begin(&w, &h, out, &err);
    if (rc) {
        fprintf(stderr, "begin: %s\n", err.message);
        lmx__wire_writer_free(&w);
        return rc;
    }
    for (uint32_t s = 0; s < N_SEQS; s++) {
        uint8_t *t = lmx__wire_tokens(&w, s);
        for (uint32_t i = 0; i < SEQ_LEN; i++) {
            if (tb == 2)
                lmx__put16(t + 2 * i, (uint16_t)tok_value(tb, s, i));
            else
                lmx__put32(t + 4 * i, tok_value(tb, s, i));
        }
        lmx__wire_set_next(&w, s, next_value(tb, s));
    }
    const lmx_span *sp[N_SEQS] = {spans0, NULL, spans2};
    const size_t nsp[N_SEQS] = {2, 0, 1};
    const int32_t *cu[N_SEQS] = {cu0, cu1, cu2};
    const size_t ncu[N_SEQS] = {3, 2, 4};
    for (uint32_t s = 0; s < N_SEQS; s++) {
        for (size_t i = 0; i < nsp[s]; i++)
            CHECK_EQ_INT(lmx__wire_add_span(&w, &sp[s][i]), LMX_OK);
        for (size_t i = 0; with_cu && i < ncu[s]; i++)
            CHECK_EQ_INT(lmx__wire_add_cu(&w, cu[s][i]), LMX_OK);
        CHECK_EQ_INT(lmx__wire_end_seq(&w), LMX_OK);
    }
    rc = lmx__wire_finish(&w, domains, 3, &err);
    if (rc)
        fprintf(stderr, "finish: %s\n", err.message);
    lmx__wire_writer_free(&w);
    return rc;
}

static int span_eq(lmx_span a, lmx_span b)
{
    return a.doc == b.doc && a.offset == b.offset && a.start == b.start && a.length == b.length &&
           a.domain == b.domain;
}

static void check_parsed(const lmx_wire_view *v, uint32_t tb, int with_cu, size_t len)
{
    CHECK_EQ_U64(v->h.flags, with_cu ? LMX_WIRE_FLAG_CU_SEQLENS : 0);
    CHECK(memcmp(v->h.plan_id, plan_id, sizeof plan_id) == 0);
    CHECK_EQ_U64(v->h.step, 0x0123456789abcdefull);
    CHECK_EQ_U64(v->h.rank, 2);
    CHECK_EQ_U64(v->h.world, 4);
    CHECK_EQ_U64(v->h.seq_len, SEQ_LEN);
    CHECK_EQ_U64(v->h.n_seqs, N_SEQS);
    CHECK_EQ_U64(v->h.token_bytes, tb);
    CHECK_EQ_U64(v->h.n_domains, 3);
    CHECK_EQ_U64(v->h.n_spans, 3);
    CHECK_EQ_U64(v->h.n_cu, with_cu ? 9 : 0);
    CHECK_EQ_U64(v->h.total_size, len);
    CHECK_EQ_U64(len % 8, 0);
    /* sections 8-aligned and in order */
    const uint64_t offs[] = {v->at.tokens, v->at.next_tokens, v->at.span_index, v->at.spans, v->at.cu_index,
                             v->at.cu, v->at.domain_offsets};
    for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
        CHECK_EQ_U64(offs[i] % 8, 0);
        if (i)
            CHECK(offs[i] >= offs[i - 1]);
    }
    CHECK_EQ_U64(v->at.tokens, LMX_WIRE_HEADER_SIZE);
    CHECK_EQ_U64(v->at.end, len);
    int tokens_ok = 1;
    for (uint32_t s = 0; s < N_SEQS; s++)
        for (uint32_t i = 0; i < SEQ_LEN; i++)
            tokens_ok &= lmx__wire_token(v, s, i) == tok_value(tb, s, i);
    CHECK(tokens_ok);
    CHECK_EQ_U64(lmx__wire_token(v, 0, 0), tb == 2 ? 0xffffu : 0xffffffffu);
    for (uint32_t s = 0; s < N_SEQS; s++)
        CHECK_EQ_U64(lmx__wire_next_token(v, s), next_value(tb, s));
    uint32_t a, e;
    lmx__wire_seq_spans(v, 0, &a, &e);
    CHECK(a == 0 && e == 2);
    CHECK(span_eq(lmx__wire_span(v, 0), spans0[0]));
    CHECK(span_eq(lmx__wire_span(v, 1), spans0[1]));
    lmx__wire_seq_spans(v, 1, &a, &e);
    CHECK(a == 2 && e == 2);
    lmx__wire_seq_spans(v, 2, &a, &e);
    CHECK(a == 2 && e == 3);
    CHECK(span_eq(lmx__wire_span(v, 2), spans2[0]));
    lmx__wire_seq_cu(v, 0, &a, &e);
    if (with_cu) {
        CHECK(a == 0 && e == 3);
        CHECK(lmx__wire_cu(v, 0) == 0 && lmx__wire_cu(v, 1) == 4 && lmx__wire_cu(v, 2) == 8);
        lmx__wire_seq_cu(v, 1, &a, &e);
        CHECK(a == 3 && e == 5);
        lmx__wire_seq_cu(v, 2, &a, &e);
        CHECK(a == 5 && e == 9);
        CHECK(lmx__wire_cu(v, 5) == 0 && lmx__wire_cu(v, 6) == 3 && lmx__wire_cu(v, 7) == 7 &&
              lmx__wire_cu(v, 8) == 8);
    } else {
        CHECK(a == 0 && e == 0);
    }
    for (uint32_t d = 0; d < 3; d++) {
        uint32_t n = 0;
        const char *name = lmx__wire_domain(v, d, &n);
        CHECK_EQ_U64(n, strlen(domains[d]));
        CHECK(memcmp(name, domains[d], n) == 0);
    }
}

/* Patches a header field, keeping everything else; the body must then be rejected. */
static void expect_reject(const lmx_buf *b, size_t off, int width, uint64_t value, const char *what, int code)
{
    uint8_t *m = malloc(b->len);
    memcpy(m, b->data, b->len);
    if (width == 2)
        lmx__put16(m + off, (uint16_t)value);
    else if (width == 4)
        lmx__put32(m + off, (uint32_t)value);
    else
        lmx__put64(m + off, value);
    lmx_wire_view v;
    lmx_error err = {0};
    int rc = lmx__wire_parse(m, b->len, &v, &err);
    if (rc == LMX_OK || (code && rc != code)) {
        fprintf(stderr, "%s = %llu: parse gave %d (%s)\n", what, (unsigned long long)value, rc, err.message);
        lmx_test_failures++;
    } else if (err.code != rc || !strstr(err.message, "batch")) {
        fprintf(stderr, "%s: error not reported properly: %d '%s'\n", what, err.code, err.message);
        lmx_test_failures++;
    }
    free(m);
}

static void test_round_trip(uint32_t tb, int with_cu)
{
    lmx_buf b = {0};
    CHECK_EQ_INT(build(tb, with_cu, &b), LMX_OK);
    lmx_wire_view v;
    lmx_error err = {0};
    int rc = lmx__wire_parse(b.data, b.len, &v, &err);
    CHECK_EQ_INT(rc, LMX_OK);
    if (rc) {
        fprintf(stderr, "parse: %s\n", err.message);
        lmx__buf_free(&b);
        return;
    }
    CHECK(memcmp(b.data, LMX_WIRE_MAGIC, 8) == 0);
    CHECK_EQ_U64(lmx__get16(b.data + LMX_WH_VERSION), LMX_WIRE_VERSION);
    CHECK_EQ_U64(lmx__get16(b.data + LMX_WH_HEADER_SIZE), LMX_WIRE_HEADER_SIZE);
    for (int i = 80; i < 96; i++)
        CHECK_EQ_INT(b.data[i], 0); /* reserved */
    check_parsed(&v, tb, with_cu, b.len);
    const lmx_wire_layout at = v.at; /* v is reused below */

    /* Every truncation is rejected. */
    int all = 1;
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *t = malloc(n ? n : 1); /* exact-size copy so ASan sees any over-read */
        memcpy(t, b.data, n);
        lmx_error e2 = {0};
        if (lmx__wire_parse(t, n, &v, &e2) == LMX_OK || e2.code != LMX_EFORMAT) {
            fprintf(stderr, "truncated to %zu bytes: not rejected (%d %s)\n", n, e2.code, e2.message);
            all = 0;
        }
        free(t);
    }
    CHECK(all);
    /* Padding (with total_size adjusted) is rejected too. */
    {
        uint8_t *t = calloc(1, b.len + 8);
        memcpy(t, b.data, b.len);
        lmx__put64(t + LMX_WH_TOTAL_SIZE, b.len + 8);
        lmx_error e2 = {0};
        CHECK(lmx__wire_parse(t, b.len + 8, &v, &e2) == LMX_EFORMAT);
        CHECK_CONTAINS(e2.message, "trailing");
        free(t);
    }

    /* Header fields. */
    char bad_magic[9] = "LMXBATCX";
    {
        uint8_t *m = malloc(b.len);
        memcpy(m, b.data, b.len);
        memcpy(m, bad_magic, 8);
        lmx_error e2 = {0};
        CHECK_EQ_INT(lmx__wire_parse(m, b.len, &v, &e2), LMX_EFORMAT);
        CHECK_CONTAINS(e2.message, "magic");
        free(m);
    }
    expect_reject(&b, LMX_WH_VERSION, 2, 4, "version", LMX_EUNSUPPORTED);
    expect_reject(&b, LMX_WH_VERSION, 2, 2, "version", LMX_EFORMAT); /* v2 needs cp fields, other sizes */
    expect_reject(&b, LMX_WH_VERSION, 2, 3, "version", LMX_EFORMAT); /* so does v3 */
    expect_reject(&b, LMX_WH_VERSION, 2, 0, "version", LMX_EUNSUPPORTED);
    expect_reject(&b, LMX_WH_HEADER_SIZE, 2, 104, "header_size", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_TOTAL_SIZE, 8, b.len + 8, "total_size", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_TOTAL_SIZE, 8, b.len - 8, "total_size", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_TOTAL_SIZE, 8, UINT64_MAX, "total_size", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_N_SEQS, 4, N_SEQS + 1, "n_seqs", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_N_SEQS, 4, N_SEQS - 1, "n_seqs", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_N_SEQS, 4, UINT32_MAX, "n_seqs", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_SEQ_LEN, 4, SEQ_LEN + 1, "seq_len", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_SEQ_LEN, 4, 0, "seq_len", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_SEQ_LEN, 4, UINT32_MAX, "seq_len", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_TOKEN_BYTES, 4, 3, "token_bytes", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_TOKEN_BYTES, 4, tb == 2 ? 4 : 2, "token_bytes", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_N_SPANS, 4, 4, "n_spans", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_N_SPANS, 4, 2, "n_spans", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_N_SPANS, 4, UINT32_MAX, "n_spans", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_N_DOMAINS, 4, 2, "n_domains", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_N_DOMAINS, 4, 4, "n_domains", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_N_DOMAINS, 4, UINT32_MAX, "n_domains", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_N_CU, 4, with_cu ? 8 : 1, "n_cu", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_N_CU, 4, UINT32_MAX, "n_cu", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_FLAGS, 4, with_cu ? 0 : LMX_WIRE_FLAG_CU_SEQLENS, "flags", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_RANK, 4, 4, "rank", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_WORLD, 4, 0, "world", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_WORLD, 4, 2, "world", LMX_EFORMAT); /* rank 2 of 2 */

    /* Section contents. */
    expect_reject(&b, at.span_index, 4, 1, "span_index[0]", LMX_EFORMAT);
    expect_reject(&b, at.span_index + 4, 4, 3, "span_index[1]", LMX_EFORMAT); /* then decreases */
    expect_reject(&b, at.span_index + 12, 4, 2, "span_index[3]", LMX_EFORMAT); /* ends short */
    expect_reject(&b, at.spans + 20, 4, 0, "span.length", LMX_EFORMAT);
    expect_reject(&b, at.spans + 20, 4, 8, "span.length", LMX_EFORMAT);          /* 1 + 8 > 8 */
    expect_reject(&b, at.spans + 16, 4, 9, "span.start", LMX_EFORMAT);
    expect_reject(&b, at.spans + 16, 4, UINT32_MAX, "span.start", LMX_EFORMAT);
    expect_reject(&b, at.spans + 20, 4, UINT32_MAX, "span.length", LMX_EFORMAT); /* overflow of start+len */
    expect_reject(&b, at.spans + 24, 4, 3, "span.domain", LMX_EFORMAT);
    expect_reject(&b, at.domain_offsets, 4, 1, "domain_offsets[0]", LMX_EFORMAT);
    expect_reject(&b, at.domain_offsets + 4, 4, 100, "domain_offsets[1]", LMX_EFORMAT);
    expect_reject(&b, at.domain_offsets + 12, 4, 20, "domain_offsets[3]", LMX_EFORMAT); /* past the blob */
    expect_reject(&b, at.domain_offsets + 8, 4, 20, "domain_offsets[2]", LMX_EFORMAT);  /* decreasing */
    /* Moving the end of the blob inside the padding must not go unnoticed either: a shorter last
     * name leaves a non-zero padding byte, a longer one swallows a NUL. */
    expect_reject(&b, at.domain_offsets + 12, 4, 18, "domain_offsets[3]", LMX_EFORMAT);
    expect_reject(&b, at.domain_offsets + 12, 4, 23, "domain_offsets[3]", LMX_EFORMAT);
    if (with_cu) {
        expect_reject(&b, at.cu, 4, 1, "cu[0]", LMX_EFORMAT);
        expect_reject(&b, at.cu + 4, 4, 9, "cu[1]", LMX_EFORMAT);
        expect_reject(&b, at.cu + 8, 4, 7, "cu[2]", LMX_EFORMAT);  /* must end at seq_len */
        expect_reject(&b, at.cu + 28, 4, 3, "cu[7]", LMX_EFORMAT); /* not increasing */
        expect_reject(&b, at.cu + 4, 4, (uint32_t)-1, "cu[1]", LMX_EFORMAT);
        expect_reject(&b, at.cu_index + 4, 4, 1, "cu_index[1]", LMX_EFORMAT); /* one entry */
        expect_reject(&b, at.cu_index, 4, 1, "cu_index[0]", LMX_EFORMAT);
    }

    /* Any single-byte change anywhere parses or is rejected cleanly (no over-read under ASan),
     * and a change to a token byte keeps the body valid. */
    uint8_t *m = malloc(b.len);
    for (size_t i = 0; i < b.len; i++) {
        memcpy(m, b.data, b.len);
        m[i] ^= 0x5a;
        lmx_error e2 = {0};
        int r = lmx__wire_parse(m, b.len, &v, &e2);
        if (i >= LMX_WIRE_HEADER_SIZE && i < LMX_WIRE_HEADER_SIZE + (size_t)N_SEQS * SEQ_LEN * tb)
            CHECK_EQ_INT(r, LMX_OK);
        if (i < LMX_WH_FLAGS)
            CHECK(r != LMX_OK); /* magic, version, header_size */
        if (i >= LMX_WH_SEQ_LEN && i < LMX_WH_TOTAL_SIZE + 8)
            CHECK(r != LMX_OK); /* every size field */
    }
    free(m);
    lmx__buf_free(&b);
}

static void test_empty_and_writer_errors(void)
{
    /* A batch of zero sequences and no domains is valid. */
    lmx_wire_header h = {0};
    h.seq_len = 4;
    h.token_bytes = 2;
    h.world = 1;
    lmx_buf b = {0};
    lmx_wire_writer w;
    lmx_error err = {0};
    CHECK_EQ_INT(lmx__wire_begin(&w, &h, &b, &err), LMX_OK);
    CHECK_EQ_INT(lmx__wire_finish(&w, NULL, 0, &err), LMX_OK);
    lmx__wire_writer_free(&w);
    lmx_wire_view v;
    CHECK_EQ_INT(lmx__wire_parse(b.data, b.len, &v, &err), LMX_OK);
    CHECK_EQ_U64(v.h.n_seqs, 0);
    CHECK_EQ_U64(v.h.n_domains, 0);
    CHECK_EQ_U64(b.len % 8, 0);

    /* finish without ending every sequence: internal error */
    h.n_seqs = 2;
    CHECK_EQ_INT(lmx__wire_begin(&w, &h, &b, &err), LMX_OK);
    CHECK_EQ_INT(lmx__wire_end_seq(&w), LMX_OK);
    lmx__err_clear(&err);
    CHECK_EQ_INT(lmx__wire_finish(&w, NULL, 0, &err), LMX_EINTERNAL);
    CHECK_CONTAINS(err.message, "sequences");
    lmx__wire_writer_free(&w);

    /* a domain name over 255 bytes */
    h.n_seqs = 0;
    CHECK_EQ_INT(lmx__wire_begin(&w, &h, &b, &err), LMX_OK);
    char longname[300];
    memset(longname, 'd', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    const char *names[] = {longname};
    CHECK_EQ_INT(lmx__wire_finish(&w, names, 1, &err), LMX_EINVAL);
    lmx__wire_writer_free(&w);

    /* begin rejects bad headers, naming the field */
    h.token_bytes = 3;
    CHECK_EQ_INT(lmx__wire_begin(&w, &h, &b, &err), LMX_EFORMAT);
    CHECK_CONTAINS(err.message, "token_bytes");
    lmx__wire_writer_free(&w);
    h.token_bytes = 2;
    h.seq_len = 0;
    CHECK_EQ_INT(lmx__wire_begin(&w, &h, &b, &err), LMX_EFORMAT);
    CHECK_CONTAINS(err.message, "seq_len");
    lmx__wire_writer_free(&w);
    h.seq_len = LMX_MAX_SEQ_LEN + 1;
    CHECK_EQ_INT(lmx__wire_begin(&w, &h, &b, &err), LMX_EFORMAT);
    lmx__wire_writer_free(&w);
    h.seq_len = 4;
    h.n_seqs = LMX_MAX_SEQS_PER_BATCH + 1;
    CHECK_EQ_INT(lmx__wire_begin(&w, &h, &b, &err), LMX_EFORMAT);
    CHECK_CONTAINS(err.message, "n_seqs");
    lmx__wire_writer_free(&w);

    /* layout: limits and the cu flag */
    lmx_wire_layout at;
    lmx_wire_header hl = {0};
    hl.seq_len = LMX_MAX_SEQ_LEN;
    hl.n_seqs = LMX_MAX_SEQS_PER_BATCH;
    hl.token_bytes = 4;
    hl.n_spans = UINT32_MAX;
    hl.n_cu = UINT32_MAX;
    hl.flags = LMX_WIRE_FLAG_CU_SEQLENS;
    hl.n_domains = LMX_MAX_DOMAINS;
    CHECK_EQ_INT(lmx__wire_layout(&hl, (uint64_t)LMX_MAX_DOMAINS * LMX_MAX_DOMAIN_NAME, &at, NULL), LMX_OK);
    CHECK(at.end > (uint64_t)LMX_MAX_SEQ_LEN * LMX_MAX_SEQS_PER_BATCH * 4); /* no wrap-around */
    CHECK_EQ_INT(lmx__wire_layout(&hl, (uint64_t)LMX_MAX_DOMAINS * LMX_MAX_DOMAIN_NAME + 1, &at, NULL),
                 LMX_EFORMAT);
    hl.n_domains = LMX_MAX_DOMAINS + 1;
    CHECK_EQ_INT(lmx__wire_layout(&hl, 0, &at, NULL), LMX_EFORMAT);
    hl.n_domains = 1;
    hl.flags = 0;
    CHECK_EQ_INT(lmx__wire_layout(&hl, 0, &at, NULL), LMX_EFORMAT); /* n_cu without the flag */
    lmx__buf_free(&b);
}

/* Wire v2: a slice of seq_len / cp_size positions with labels and positions; spans bounded by
 * the slice, cu_seqlens by the whole sequence; cp fields checked. */
static void test_v2(void)
{
    lmx_wire_header h = {.version = LMX_WIRE_VERSION_CP, .flags = LMX_WIRE_FLAG_CU_SEQLENS, .step = 7, .rank = 0,
                         .world = 1, .seq_len = 16, .n_seqs = 2, .token_bytes = 2, .cp_rank = 1, .cp_size = 2,
                         .ignore_index = -100};
    lmx_buf b = {0};
    lmx_wire_writer w;
    lmx_error err = {0};
    CHECK_EQ_INT(lmx__wire_begin(&w, &h, &b, &err), LMX_OK);
    for (uint32_t s = 0; s < 2; s++) {
        uint8_t *t = lmx__wire_tokens(&w, s), *l = lmx__wire_labels(&w, s), *q = lmx__wire_positions(&w, s);
        for (uint32_t i = 0; i < 8; i++) {
            lmx__put16(t + 2 * i, (uint16_t)(100 * s + i));
            lmx__put32(l + 4 * i, (uint32_t)(i == 7 ? -100 : (int32_t)(100 * s + i + 1)));
            lmx__put32(q + 4 * i, i + 4);
        }
        lmx__wire_set_next(&w, s, 5);
        lmx_span sp = {1, 2, 0, 8, 0};
        CHECK_EQ_INT(lmx__wire_add_span(&w, &sp), LMX_OK);
        CHECK_EQ_INT(lmx__wire_add_cu(&w, 0), LMX_OK);
        CHECK_EQ_INT(lmx__wire_add_cu(&w, 12), LMX_OK);
        CHECK_EQ_INT(lmx__wire_add_cu(&w, 16), LMX_OK);
        CHECK_EQ_INT(lmx__wire_end_seq(&w), LMX_OK);
    }
    CHECK_EQ_INT(lmx__wire_finish(&w, domains, 3, &err), LMX_OK);
    lmx__wire_writer_free(&w);
    lmx_wire_view v;
    CHECK_EQ_INT(lmx__wire_parse(b.data, b.len, &v, &err), LMX_OK);
    CHECK_EQ_U64(v.h.version, 2);
    CHECK_EQ_U64(v.h.cp_rank, 1);
    CHECK_EQ_U64(v.h.cp_size, 2);
    CHECK_EQ_INT(v.h.ignore_index, -100);
    CHECK_EQ_U64(lmx__wire_slice_len(&v.h), 8);
    CHECK_EQ_U64(lmx__wire_token(&v, 1, 3), 103);
    CHECK_EQ_INT(lmx__wire_label(&v, 1, 3), 104);
    CHECK_EQ_INT(lmx__wire_label(&v, 0, 7), -100);
    CHECK_EQ_U64(lmx__wire_position(&v, 1, 6), 10);
    uint32_t a, e;
    lmx__wire_seq_cu(&v, 1, &a, &e);
    CHECK_EQ_U64(e - a, 3);
    CHECK_EQ_INT(lmx__wire_cu(&v, e - 1), 16);
    const uint64_t spans_at = v.at.spans;
    /* Every truncation is rejected. */
    int all = 1;
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *t = malloc(n ? n : 1);
        memcpy(t, b.data, n);
        lmx_error e2 = {0};
        all &= lmx__wire_parse(t, n, &v, &e2) == LMX_EFORMAT;
        free(t);
    }
    CHECK(all);
    expect_reject(&b, LMX_WH_CP_SIZE, 4, 0, "cp_size", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_CP_SIZE, 4, 3, "cp_size", LMX_EFORMAT); /* 16 % 6 != 0 */
    expect_reject(&b, LMX_WH_CP_SIZE, 4, 1, "cp_size", LMX_EFORMAT); /* sizes no longer match */
    expect_reject(&b, LMX_WH_CP_RANK, 4, 2, "cp_rank", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_FLAGS, 4, 0, "flags", LMX_EFORMAT);
    expect_reject(&b, LMX_WH_VERSION, 2, 1, "version", LMX_EFORMAT);
    /* A span past the slice (but inside seq_len) is refused. */
    uint8_t *m = malloc(b.len);
    memcpy(m, b.data, b.len);
    lmx__put32(m + spans_at + 16, 1); /* start 1 + length 8 > 8 */
    CHECK_EQ_INT(lmx__wire_parse(m, b.len, &v, &err), LMX_EFORMAT);
    CHECK_CONTAINS(err.message, "out of bounds");
    free(m);
    lmx__buf_free(&b);
}

/* Wire v3 (padded plans): v2 plus the real cu_seqlens after the padded ones and cp_layout; the
 * reader checks real lengths in [1, padded], thd segments a multiple of 2*cp_size, the layout. */
static void test_v3(void)
{
    lmx_wire_header h = {.version = LMX_WIRE_VERSION_PAD, .flags = LMX_WIRE_FLAG_CU_SEQLENS, .step = 3, .rank = 0,
                         .world = 1, .seq_len = 16, .n_seqs = 1, .token_bytes = 4, .cp_rank = 0, .cp_size = 2,
                         .ignore_index = -100, .cp_layout = LMX_CP_THD};
    lmx_buf b = {0};
    lmx_wire_writer w;
    lmx_error err = {0};
    CHECK_EQ_INT(lmx__wire_begin(&w, &h, &b, &err), LMX_OK);
    uint8_t *t = lmx__wire_tokens(&w, 0);
    for (uint32_t i = 0; i < 8; i++)
        lmx__put32(t + 4 * i, 1000 + i);
    lmx__wire_set_next(&w, 0, 5);
    const int32_t cu[3] = {0, 8, 16}, real[3] = {0, 5, 13};
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(lmx__wire_add_cu(&w, cu[i]), LMX_OK);
        CHECK_EQ_INT(lmx__wire_add_cu_real(&w, real[i]), LMX_OK);
    }
    CHECK_EQ_INT(lmx__wire_end_seq(&w), LMX_OK);
    CHECK_EQ_INT(lmx__wire_finish(&w, domains, 3, &err), LMX_OK);
    lmx__wire_writer_free(&w);
    lmx_wire_view v;
    CHECK_EQ_INT(lmx__wire_parse(b.data, b.len, &v, &err), LMX_OK);
    CHECK_EQ_U64(v.h.version, 3);
    CHECK_EQ_U64(v.h.cp_layout, LMX_CP_THD);
    CHECK_EQ_U64(lmx__wire_slice_len(&v.h), 8);
    CHECK_EQ_U64(lmx__wire_token(&v, 0, 7), 1007);
    CHECK_EQ_INT(lmx__wire_cu(&v, 1), 8);
    CHECK_EQ_INT(lmx__wire_cu_real(&v, 1), 5);
    CHECK_EQ_INT(lmx__wire_cu_real(&v, 2), 13);
    CHECK_EQ_U64(v.at.cu_real, v.at.cu + 16); /* align8(cu + 12) */
    CHECK_EQ_U64(v.at.domain_offsets, v.at.cu_real + 16);
    const uint64_t cu_at = v.at.cu, real_at = v.at.cu_real;
    expect_reject(&b, LMX_WH_CP_LAYOUT, 4, 2, "cp_layout", LMX_EFORMAT);
    expect_reject(&b, (size_t)real_at, 4, 1, "real cu_seqlens", LMX_EFORMAT);     /* not from 0 */
    expect_reject(&b, (size_t)real_at + 4, 4, 0, "real length", LMX_EFORMAT);    /* an empty segment */
    expect_reject(&b, (size_t)real_at + 4, 4, 9, "real length", LMX_EFORMAT);    /* longer than padded */
    expect_reject(&b, (size_t)cu_at + 4, 4, 6, "thd segment", LMX_EFORMAT);     /* 6 % 4 != 0 */
    expect_reject(&b, LMX_WH_VERSION, 2, 2, "version", LMX_EFORMAT);             /* v2 reads other sizes */
    /* The same body as zigzag: segments need not be multiples of 2*cp_size. */
    uint8_t *m = malloc(b.len);
    memcpy(m, b.data, b.len);
    lmx__put32(m + LMX_WH_CP_LAYOUT, LMX_CP_ZIGZAG);
    lmx__put32(m + cu_at + 4, 6);
    CHECK_EQ_INT(lmx__wire_parse(m, b.len, &v, &err), LMX_OK);
    free(m);
    lmx__buf_free(&b);
}

int main(void)
{
    test_v3();
    test_v2();
    test_round_trip(2, 1);
    test_round_trip(4, 1);
    test_round_trip(2, 0);
    test_round_trip(4, 0);
    test_empty_and_writer_errors();
    TEST_MAIN_END();
}
