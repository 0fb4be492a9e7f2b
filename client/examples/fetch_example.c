/* fetch_example: iterates a few batches of a plan with liblongmix and prints a summary.
 *
 *   fetch_example URLS PLAN [STEPS [RANK WORLD]]     ($LONGMIX_TOKEN, $LONGMIX_PREFETCH)
 *
 * Builds against an installed liblongmix either way:
 *   cc fetch_example.c $(pkg-config --cflags --libs longmix) -o fetch_example
 *   cmake: find_package(longmix REQUIRED) + target_link_libraries(fetch_example PRIVATE longmix::longmix) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <longmix.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: fetch_example URLS PLAN [STEPS [RANK WORLD]]\n");
        return 2;
    }
    lmx_client_options o;
    lmx_client_options_init(&o);
    o.urls = argv[1];
    o.plan = argv[2];
    unsigned steps = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 3;
    if (argc > 5) {
        o.rank = (uint32_t)strtoul(argv[4], NULL, 10);
        o.world = (uint32_t)strtoul(argv[5], NULL, 10);
    }
    o.token = getenv("LONGMIX_TOKEN");
    const char *pf = getenv("LONGMIX_PREFETCH"); /* batches fetched ahead in the background */
    o.prefetch = pf ? (uint32_t)strtoul(pf, NULL, 10) : 2;

    lmx_client *c;
    lmx_error e;
    if (lmx_client_open(&o, &c, &e) != LMX_OK) {
        fprintf(stderr, "fetch_example: %s\n", e.message);
        return 1;
    }
    printf("liblongmix %s, plan %s, rank %u of %u\n", lmx_version(), o.plan, o.rank, o.world ? o.world : 1);
    uint64_t checksum = 0; /* FNV-1a over all token ids: equal output = equal tokens */
    for (unsigned i = 0; i < steps; i++) {
        lmx_batch *b;
        if (lmx_client_next(c, &b, &e) != LMX_OK) {
            fprintf(stderr, "fetch_example: %s (%s)\n", e.message, lmx_strerror(e.code));
            lmx_client_close(c);
            return 1;
        }
        uint32_t n = lmx_batch_n_seqs(b), L = lmx_batch_seq_len(b), spans = 0, docs = 0;
        size_t n_tok = (size_t)n * L;
        uint32_t *ids = malloc(n_tok * sizeof *ids);
        if (!ids || lmx_batch_tokens_u32(b, ids, n_tok) != LMX_OK) {
            fprintf(stderr, "fetch_example: out of memory\n");
            return 1;
        }
        for (size_t k = 0; k < n_tok; k++)
            checksum = (checksum ^ ids[k]) * 1099511628211ull;
        for (uint32_t s = 0; s < n; s++) {
            spans += lmx_batch_n_spans(b, s);
            uint32_t cu = lmx_batch_cu_seqlens(b, s, NULL, 0);
            docs += cu ? cu - 1 : 0;
        }
        lmx_span_info first = {0};
        lmx_batch_span(b, 0, 0, &first);
        printf("step %" PRIu64 ": %u x %u tokens (u%u), %u spans, %u cu_seqlens segments, first span [%s] doc %" PRIu64
               ", plan id %s\n",
               lmx_batch_step(b), n, L, 8 * lmx_batch_token_bytes(b), spans, docs, first.domain ? first.domain : "-",
               first.doc, lmx_batch_plan_id(b));
        free(ids);
        lmx_batch_free(b);
    }
    printf("token checksum %016" PRIx64 "\n", checksum);
    lmx_client_close(c);
    return 0;
}
