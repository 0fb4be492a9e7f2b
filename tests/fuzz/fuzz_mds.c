/* libFuzzer target: MDS parsing (common/index/inputs/lmx_mds.c): index.json, a shard's sample
 * table, every sample's columns, token columns as ids (every --token-dtype), id columns as text.
 * Input: u16 length + index.json, then the bytes of shard 0.
 * Checked: no crash, leak or read outside the input (ASan); every column value lies inside its
 * sample; errors name the shard; ids are below the vocabulary. */
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "lmx_mds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t jl = (size_t)data[0] | (size_t)data[1] << 8;
    if (jl > size - 2)
        jl = size - 2;
    const char *json = (const char *)data + 2;
    /* the shard gets its own allocation so ASan sees reads past its end */
    size_t sl = size - 2 - jl;
    uint8_t *shard = malloc(sl ? sl : 1);
    memcpy(shard, data + 2 + jl, sl);
    lmx_mds_index ix;
    lmx_error err = {0};
    lmx_ids ids = {0};
    lmx_buf txt = {0};
    if (lmx__mds_index_parse(json, jl, "index.json", &ix, &err) == LMX_OK) {
        const lmx_mds_shard *s = &ix.shards[0];
        FUZZ_CHECK(ix.n >= 1 && s->n_cols >= 1);
        if (lmx__mds_shard_check(shard, sl, s, "shard.00000.mds", &err) == LMX_OK) {
            lmx_mds_value *vals = calloc(s->n_cols, sizeof *vals);
            char why[LMX_INPUT_WHY_MAX];
            for (uint64_t k = 0; k < s->samples; k++) {
                if (lmx__mds_sample(shard, s, k, vals, why, sizeof why))
                    continue;
                for (size_t c = 0; c < s->n_cols; c++) {
                    FUZZ_CHECK(vals[c].p >= shard && vals[c].p + vals[c].len <= shard + sl);
                    for (int dt = 0; dt <= 4; dt++) {
                        if (lmx__mds_tokens(&s->cols[c], vals[c], dt, 1000, &ids, why, sizeof why) == 0)
                            for (size_t i = 0; i < ids.n; i++)
                                FUZZ_CHECK(ids.v[i] < 1000);
                        if (s->cols[c].kind != LMX_MDS_BYTES)
                            break;
                    }
                    if (lmx__mds_id_text(&s->cols[c], vals[c], &txt) == 0)
                        FUZZ_CHECK(txt.len >= 1 && txt.data[txt.len - 1] == '\0');
                }
            }
            free(vals);
        } else {
            FUZZ_CHECK(strstr(err.message, "shard.00000.mds") != NULL);
        }
    }
    lmx__mds_index_free(&ix);
    lmx__ids_free(&ids);
    lmx__buf_free(&txt);
    free(shard);
    return 0;
}
