/* libFuzzer target: the batch wire reader (common/lmx_wire.c, v1 to v3) on arbitrary bytes.
 * When lmx__wire_parse accepts a body, every token, next token, span, cu_seqlens entry and domain
 * name is read back through the accessors, so a reader that trusts a size it did not check shows
 * up as an ASan out-of-bounds read; the invariants parse promises are asserted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "lmx_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copy into an exact-size heap buffer so ASan sees reads one past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    lmx_wire_view v;
    lmx_error err = {0};
    if (lmx__wire_parse(buf, size, &v, &err) != LMX_OK) {
        FUZZ_CHECK(err.code != LMX_OK && err.message[0]);
        free(buf);
        return 0;
    }
    const lmx_wire_header *h = &v.h;
    FUZZ_CHECK(h->total_size == size && v.at.end == size);
    FUZZ_CHECK(h->token_bytes == 2 || h->token_bytes == 4);
    FUZZ_CHECK(h->rank < h->world);
    uint64_t acc = 0;
    uint32_t prev_end = 0;
    const uint32_t S = lmx__wire_slice_len(h); /* positions sent: seq_len, or the v2 CP slice */
    FUZZ_CHECK(h->version == LMX_WIRE_VERSION ? S == h->seq_len
                                              : h->cp_rank < h->cp_size && S * h->cp_size == h->seq_len);
    for (uint32_t s = 0; s < h->n_seqs; s++) {
        for (uint32_t p = 0; p < S; p++) {
            acc += lmx__wire_token(&v, s, p);
            if (lmx__wire_has_labels(h))
                acc += (uint32_t)lmx__wire_label(&v, s, p) + lmx__wire_position(&v, s, p);
        }
        acc += lmx__wire_next_token(&v, s);
        uint32_t a, e;
        lmx__wire_seq_spans(&v, s, &a, &e);
        FUZZ_CHECK(a <= e && e <= h->n_spans && a == prev_end);
        prev_end = e;
        for (uint32_t i = a; i < e; i++) {
            lmx_span sp = lmx__wire_span(&v, i);
            FUZZ_CHECK(sp.length > 0 && sp.start < S && sp.length <= S - sp.start);
            FUZZ_CHECK(sp.domain < h->n_domains);
            uint32_t dl;
            const char *d = lmx__wire_domain(&v, sp.domain, &dl);
            for (uint32_t k = 0; k < dl; k++)
                acc += (uint8_t)d[k];
        }
        lmx__wire_seq_cu(&v, s, &a, &e);
        if (h->flags & LMX_WIRE_FLAG_CU_SEQLENS) {
            FUZZ_CHECK(e - a >= 2 && e <= h->n_cu);
            FUZZ_CHECK(lmx__wire_cu(&v, a) == 0 && lmx__wire_cu(&v, e - 1) == (int32_t)h->seq_len);
            for (uint32_t i = a; i < e; i++)
                acc += (uint32_t)lmx__wire_cu(&v, i);
            /* v3: real lengths in [1, padded] (what a consumer of cu_seqlens_real relies on) */
            for (uint32_t i = a + 1; h->version == LMX_WIRE_VERSION_PAD && i < e; i++) {
                int64_t r = (int64_t)lmx__wire_cu_real(&v, i) - lmx__wire_cu_real(&v, i - 1);
                FUZZ_CHECK(r >= 1 && r <= (int64_t)lmx__wire_cu(&v, i) - lmx__wire_cu(&v, i - 1));
            }
        } else {
            FUZZ_CHECK(a == 0 && e == 0);
        }
    }
    FUZZ_CHECK(prev_end == h->n_spans);
    for (uint32_t i = 0; i < h->n_spans; i++)
        acc += lmx__wire_span(&v, i).doc;
    for (uint32_t i = 0; i < h->n_cu; i++)
        acc += (uint32_t)lmx__wire_cu(&v, i);
    for (uint32_t d = 0; d < h->n_domains; d++) {
        uint32_t dl;
        const char *name = lmx__wire_domain(&v, d, &dl);
        FUZZ_CHECK(dl <= LMX_MAX_DOMAIN_NAME);
        for (uint32_t k = 0; k < dl; k++)
            acc += (uint8_t)name[k];
    }
    /* Keep the reads from being optimized away. */
    volatile uint64_t sink = acc;
    (void)sink;
    free(buf);
    return 0;
}
