/* Unit tests of the MDS parsing helpers (common/index/inputs/lmx_mds.c): index.json checks,
 * the sample table, column splitting and token values of every ndarray form. Byte layouts are
 * written out by hand from the published format; whole datasets from the independent writer are
 * tested by tests/integration/test_inputs.py. */
#include <string.h>

#include "lmx_mds.h"
#include "lmx_test.h"


static int parse(const char *json, lmx_mds_index *ix, lmx_error *err)
{
    lmx__err_clear(err);
    return lmx__mds_index_parse(json, strlen(json), "index.json", ix, err);
}

static void test_index(void)
{
    lmx_mds_index ix;
    lmx_error err = {0};
    const char *ok = "{\"shards\":[{\"format\":\"mds\",\"version\":2,\"column_names\":[\"a\",\"t\"],"
                     "\"column_encodings\":[\"int\",\"ndarray:uint16\"],\"column_sizes\":[8,null],\"samples\":2,"
                     "\"raw_data\":{\"basename\":\"shard.00000.mds\",\"bytes\":40},\"compression\":null,"
                     "\"zip_data\":null}],\"version\":2}";
    CHECK_EQ_INT(parse(ok, &ix, &err), LMX_OK);
    CHECK_EQ_INT((int)ix.n, 1);
    CHECK_EQ_INT((int)ix.shards[0].n_var, 1);
    CHECK_EQ_INT(ix.shards[0].cols[0].kind, LMX_MDS_INT);
    CHECK_EQ_INT(ix.shards[0].cols[1].kind, LMX_MDS_NDARRAY);
    CHECK_EQ_INT(ix.shards[0].cols[1].dtype, 16);
    CHECK_EQ_INT(lmx__mds_col(&ix.shards[0], "t"), 1);
    lmx__mds_index_free(&ix);

    char buf[1024];
    struct {
        const char *from, *to;
        int code;
        const char *needle;
    } cases[] = {
        {"\"version\":2}", "\"version\":1}", LMX_EUNSUPPORTED, "index version 1"},
        {"\"format\":\"mds\"", "\"format\":\"json\"", LMX_EUNSUPPORTED, "only MDS"},
        {"\"samples\":2", "\"samples\":-1", LMX_EFORMAT, "'samples'"},
        {"shard.00000.mds\"", "../x\"", LMX_EFORMAT, "leaves the dataset folder"},
        {"shard.00000.mds\"", "sub/shard.00000.mds\"", LMX_EUNSUPPORTED, "merged"},
        {"[8,null]", "[8]", LMX_EFORMAT, "same non-zero length"},
        {"[8,null]", "[0,null]", LMX_EFORMAT, "fixed size 0"},
        {"\"zip_data\":null", "\"zip_data\":{\"basename\":\"z\"}", LMX_EFORMAT, "no 'compression'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *at = strstr(ok, cases[i].from);
        CHECK(at != NULL);
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - ok), ok, cases[i].to, at + strlen(cases[i].from));
        CHECK_EQ_INT(parse(buf, &ix, &err), cases[i].code);
        CHECK_CONTAINS(err.message, cases[i].needle);
        CHECK_CONTAINS(err.message, "index.json");
        lmx__mds_index_free(&ix);
    }
    CHECK_EQ_INT(parse("{\"shards\": 3}", &ix, &err), LMX_EFORMAT);
    lmx__mds_index_free(&ix);
    CHECK_EQ_INT(parse("{", &ix, &err), LMX_EFORMAT);
    CHECK_CONTAINS(err.message, "invalid JSON");
    lmx__mds_index_free(&ix);
}

static lmx_mds_col col(int kind, int dtype, int static_shape)
{
    return (lmx_mds_col){.name = "t", .encoding = "e", .kind = kind, .dtype = dtype, .static_shape = static_shape};
}

static void test_tokens(void)
{
    lmx_ids ids = {0};
    char why[LMX_INPUT_WHY_MAX];
    /* ndarray:uint16 (dynamic shape): 1 dim, u8 width: [0x04][3] then 3 u16 */
    const uint8_t a[] = {0x04, 3, 1, 0, 2, 0, 0x01, 0x01};
    lmx_mds_col c = col(LMX_MDS_NDARRAY, 16, 0);
    CHECK_EQ_INT(lmx__mds_tokens(&c, (lmx_mds_value){a, sizeof a}, 0, 1000, &ids, why, sizeof why), 0);
    CHECK_EQ_INT((int)ids.n, 3);
    CHECK_EQ_INT((int)ids.v[2], 257);
    /* a shape that does not match the values */
    const uint8_t b[] = {0x04, 4, 1, 0, 2, 0, 3, 0};
    CHECK_EQ_INT(lmx__mds_tokens(&c, (lmx_mds_value){b, sizeof b}, 0, 1000, &ids, why, sizeof why), 1);
    CHECK_CONTAINS(why, "shape");
    /* dynamic dtype int16 (code 17), 2-D shape [1,2], a negative id */
    const uint8_t d[] = {17, 0x08, 1, 2, 5, 0, 0xff, 0xff};
    lmx_mds_col dc = col(LMX_MDS_NDARRAY, 0, 0);
    CHECK_EQ_INT(lmx__mds_tokens(&dc, (lmx_mds_value){d, sizeof d}, 0, 1000, &ids, why, sizeof why), 1);
    CHECK_CONTAINS(why, "token id -1");
    /* dynamic dtype float32 (code 34): not token ids */
    const uint8_t f[] = {34, 0x04, 1, 0, 0, 0x80, 0x3f};
    CHECK_EQ_INT(lmx__mds_tokens(&dc, (lmx_mds_value){f, sizeof f}, 0, 1000, &ids, why, sizeof why), 1);
    CHECK_CONTAINS(why, "float32");
    /* static shape uint32: values only; id 1000 is outside a vocabulary of 1000 */
    const uint8_t s[] = {7, 0, 0, 0, 0xe8, 0x03, 0, 0};
    lmx_mds_col sc = col(LMX_MDS_NDARRAY, 32, 1);
    CHECK_EQ_INT(lmx__mds_tokens(&sc, (lmx_mds_value){s, 4}, 0, 1000, &ids, why, sizeof why), 0);
    CHECK_EQ_INT((int)ids.v[0], 7);
    CHECK_EQ_INT(lmx__mds_tokens(&sc, (lmx_mds_value){s, sizeof s}, 0, 1000, &ids, why, sizeof why), 1);
    CHECK_CONTAINS(why, "token id 1000");
    /* bytes: the element type comes from --token-dtype; int64 big values are rejected */
    lmx_mds_col bc = col(LMX_MDS_BYTES, 0, 0);
    const uint8_t i64[] = {5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    CHECK_EQ_INT(lmx__mds_tokens(&bc, (lmx_mds_value){i64, 8}, LMX_DTYPE_I64, 1000, &ids, why, sizeof why), 0);
    CHECK_EQ_INT((int)ids.n, 1);
    CHECK_EQ_INT(lmx__mds_tokens(&bc, (lmx_mds_value){i64, sizeof i64}, LMX_DTYPE_I64, 1000, &ids, why, sizeof why), 1);
    CHECK_EQ_INT(lmx__mds_tokens(&bc, (lmx_mds_value){i64, 6}, LMX_DTYPE_U32, 1000, &ids, why, sizeof why), 1);
    CHECK_CONTAINS(why, "do not hold");
    lmx__ids_free(&ids);
}

static void test_shard(void)
{
    lmx_mds_shard s = {0};
    lmx_mds_col cols[2] = {col(LMX_MDS_INT, 65, 0), col(LMX_MDS_STR, 0, 0)};
    cols[0].size = 8;
    s.cols = cols;
    s.n_cols = 2;
    s.n_var = 1;
    s.samples = 1;
    /* 1 sample; offsets 12, 12 + 4 + 8 + 2 = 26 */
    uint8_t d[26] = {1, 0, 0, 0, 12, 0, 0, 0, 26, 0, 0, 0, 2, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 'h', 'i'};
    lmx_error err = {0};
    char why[LMX_INPUT_WHY_MAX];
    lmx_mds_value v[2];
    CHECK_EQ_INT(lmx__mds_shard_check(d, sizeof d, &s, "s.mds", &err), LMX_OK);
    CHECK_EQ_INT(lmx__mds_sample(d, &s, 0, v, why, sizeof why), 0);
    CHECK_EQ_INT((int)v[1].len, 2);
    CHECK(memcmp(v[1].p, "hi", 2) == 0);
    lmx_buf t = {0};
    CHECK_EQ_INT(lmx__mds_id_text(&cols[0], v[0], &t), 0);
    CHECK_EQ_STR((const char *)t.data, "42");
    lmx__buf_free(&t);
    CHECK_EQ_INT(lmx__mds_shard_check(d, 20, &s, "s.mds", &err), LMX_EFORMAT); /* truncated */
    CHECK_CONTAINS(err.message, "s.mds: sample index 0");
    CHECK_CONTAINS(err.message, "truncated");
    d[12] = 9; /* the str column claims 9 bytes */
    CHECK_EQ_INT(lmx__mds_sample(d, &s, 0, v, why, sizeof why), 1);
    CHECK_CONTAINS(why, "runs past");
    s.samples = 2;
    CHECK_EQ_INT(lmx__mds_shard_check(d, sizeof d, &s, "s.mds", &err), LMX_EFORMAT);
    CHECK_CONTAINS(err.message, "index.json says 2");
}

int main(void)
{
    test_index();
    test_tokens();
    test_shard();
    if (lmx_test_failures)
        fprintf(stderr, "%d failure(s)\n", lmx_test_failures);
    return lmx_test_failures != 0;
}
