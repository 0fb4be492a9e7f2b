/* Megatron-LM indexed datasets (PREFIX.bin + PREFIX.idx, "MMIDIDX"; proto/INDEX.md, "Megatron-LM
 * indexed datasets"). The .idx and .bin are mapped and read in place; one record per Megatron
 * document (its sequences' ids concatenated), each id checked against the tokenizer's
 * vocabulary. The domain must be forced. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "lmx_inputs.h"

#define MEGA_HDR_SIZE 34 /* 9 magic + 8 version + 1 dtype + 8 sequence count + 8 document count */

/* Maps a Megatron file for one sequential pass. */
static int mega_map(const char *path, const uint8_t **map, size_t *size, lmx_error *err)
{
    uint8_t *m;
    int rc = lmx__map_file(path, &m, size, err);
    if (rc == LMX_OK && m)
        posix_madvise(m, *size, POSIX_MADV_SEQUENTIAL);
    *map = rc == LMX_OK ? m : NULL;
    return rc;
}

/* Megatron's DType codes (megatron/core/datasets/indexed_dataset.py): item size and signedness;
 * 0 for codes that are not integer token types. */
static int mega_dtype(uint8_t code, int *is_signed)
{
    *is_signed = code == 2 || code == 3 || code == 4 || code == 5;
    switch (code) {
    case 1: return 1; /* uint8 */
    case 2: return 1; /* int8 */
    case 3: return 2; /* int16 */
    case 4: return 4; /* int32 */
    case 5: return 8; /* int64 */
    case 8: return 2; /* uint16 */
    default: return 0; /* 6 float64, 7 float32, unknown */
    }
}

static int64_t mega_get(const uint8_t *p, int item, int is_signed)
{
    switch (item) {
    case 1: return is_signed ? (int64_t)(int8_t)p[0] : (int64_t)p[0];
    case 2: return is_signed ? (int64_t)(int16_t)lmx__get16(p) : (int64_t)lmx__get16(p);
    case 4: return is_signed ? (int64_t)(int32_t)lmx__get32(p) : (int64_t)lmx__get32(p);
    default: return (int64_t)lmx__get64(p);
    }
}

typedef struct mega {
    lmx_input base;
    const char *idx_path, *bin_path;
    const uint8_t *idx, *bin;
    size_t idx_size, bin_size;
    int item, is_signed;
    uint64_t n_seqs, n_docs; /* n_docs = documents (the header's count minus the leading 0) */
    const uint8_t *lengths, *pointers, *doc_idx;
    uint64_t next_doc;
    lmx_ids ids; /* the current document */
} mega;

/* Validates the .idx against itself and the .bin size; every error names the .idx. */
static int mega_check(mega *m, lmx_error *err)
{
    const uint8_t *h = m->idx;
    const char *p = m->idx_path;
    if (m->idx_size < MEGA_HDR_SIZE || memcmp(h, "MMIDIDX\0\0", 9) != 0)
        return lmx__err(err, LMX_EFORMAT, "%s: not a Megatron index (bad MMIDIDX magic or shorter than its header)", p);
    uint64_t version = lmx__get64(h + 9);
    if (version != 1)
        return lmx__err(err, LMX_EUNSUPPORTED, "%s: Megatron index version %llu (this build reads 1)", p,
                        (unsigned long long)version);
    uint8_t code = h[17];
    m->item = mega_dtype(code, &m->is_signed);
    if (!m->item)
        return lmx__err(err, LMX_EFORMAT, "%s: dtype code %u is not an integer token type (want 1-5 or 8)", p, code);
    m->n_seqs = lmx__get64(h + 18);
    uint64_t doc_count = lmx__get64(h + 26), avail = m->idx_size - MEGA_HDR_SIZE;
    if (m->n_seqs > avail / 12 || doc_count > (avail - m->n_seqs * 12) / 8)
        return lmx__err(err, LMX_EFORMAT,
                        "%s: %llu sequences and %llu document indices need more bytes than the file's %zu", p,
                        (unsigned long long)m->n_seqs, (unsigned long long)doc_count, m->idx_size);
    if (doc_count < 1)
        return lmx__err(err, LMX_EFORMAT, "%s: document count 0 (the document indices start with 0)", p);
    m->n_docs = doc_count - 1;
    m->lengths = h + MEGA_HDR_SIZE;
    m->pointers = m->lengths + 4 * m->n_seqs;
    m->doc_idx = m->pointers + 8 * m->n_seqs;
    for (uint64_t i = 0; i < m->n_seqs; i++) {
        int64_t len = (int32_t)lmx__get32(m->lengths + 4 * i), ptr = (int64_t)lmx__get64(m->pointers + 8 * i);
        if (len < 0 || ptr < 0 || (uint64_t)ptr > m->bin_size ||
            (uint64_t)len > (m->bin_size - (uint64_t)ptr) / (uint64_t)m->item)
            return lmx__err(err, LMX_EFORMAT,
                            "%s: sequence %llu (pointer %lld, length %lld) lies outside %s (%zu bytes)", p,
                            (unsigned long long)i, (long long)ptr, (long long)len, m->bin_path, m->bin_size);
    }
    int64_t prev = 0;
    for (uint64_t i = 0; i < doc_count; i++) {
        int64_t v = (int64_t)lmx__get64(m->doc_idx + 8 * i);
        if ((i == 0 && v != 0) || v < prev || (uint64_t)v > m->n_seqs)
            return lmx__err(err, LMX_EFORMAT,
                            "%s: document index %llu is %lld (want non-decreasing values from 0 to the sequence count %llu)",
                            p, (unsigned long long)i, (long long)v, (unsigned long long)m->n_seqs);
        prev = v;
    }
    if ((uint64_t)prev != m->n_seqs)
        return lmx__err(err, LMX_EFORMAT, "%s: the last document index is %lld, not the sequence count %llu", p,
                        (long long)prev, (unsigned long long)m->n_seqs);
    return LMX_OK;
}

/* For "X.bin": whether "X.idx" exists too. */
static int sibling_idx_exists(const char *bin)
{
    char *idx = strdup(bin);
    if (!idx)
        return 0;
    memcpy(idx + strlen(idx) - 4, ".idx", 4);
    struct stat st;
    int ok = stat(idx, &st) == 0 && S_ISREG(st.st_mode);
    free(idx);
    return ok;
}

/* A walk finds the pair by its .bin (the .idx beside it is not a job of its own). */
static int mega_match(const char *path, char **job_path)
{
    (void)job_path;
    return lmx__ends_with(path, ".bin") && sibling_idx_exists(path);
}

char *lmx__megatron_bin_of(const char *path)
{
    size_t n = strlen(path);
    char *bin = malloc(n + 5);
    if (!bin)
        return NULL;
    if (lmx__ends_with(path, ".bin") || lmx__ends_with(path, ".idx"))
        snprintf(bin, n + 5, "%.*s.bin", (int)(n - 4), path);
    else
        snprintf(bin, n + 5, "%s.bin", path);
    struct stat st;
    if (stat(bin, &st) != 0 || !sibling_idx_exists(bin)) {
        free(bin);
        return NULL;
    }
    return bin;
}

static int mega_files(const char *bin, char ***files, size_t *n, lmx_error *err)
{
    char **v = calloc(2, sizeof *v);
    if (v && (v[0] = strdup(bin)) && (v[1] = strdup(bin)))
        memcpy(v[1] + strlen(v[1]) - 4, ".idx", 4);
    if (!v || !v[0] || !v[1]) {
        if (v)
            free(v[0]);
        free(v);
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", bin);
    }
    *files = v;
    *n = 2;
    return LMX_OK;
}

static int mega_open(const lmx_input_params *p, lmx_input **out, lmx_error *err)
{
    mega *m = calloc(1, sizeof *m);
    if (!m)
        return lmx__err(err, LMX_ENOMEM, "%s: out of memory", p->path);
    m->base.params = p;
    m->base.kind = "megatron";
    *out = &m->base;
    m->bin_path = p->files[0];
    m->idx_path = p->files[1];
    int rc = mega_map(m->idx_path, &m->idx, &m->idx_size, err);
    if (rc == LMX_OK)
        rc = mega_map(m->bin_path, &m->bin, &m->bin_size, err);
    if (rc == LMX_OK)
        rc = mega_check(m, err);
    return rc;
}

static void mega_close(lmx_input *in)
{
    if (!in)
        return;
    mega *m = (mega *)in;
    if (m->idx)
        munmap((void *)m->idx, m->idx_size);
    if (m->bin)
        munmap((void *)m->bin, m->bin_size);
    lmx__ids_free(&m->ids);
    free(m);
}

/* Document d's ids into m->ids; a bad id makes the record bad (the reason names its place). */
static int read_doc(mega *m, uint64_t d, lmx_input_rec *rec, lmx_error *err)
{
    uint64_t s0 = lmx__get64(m->doc_idx + 8 * d), s1 = lmx__get64(m->doc_idx + 8 * (d + 1));
    uint32_t vocab = m->base.params->vocab_size;
    m->ids.n = 0;
    for (uint64_t s = s0; s < s1; s++) {
        uint64_t len = (uint32_t)lmx__get32(m->lengths + 4 * s);
        const uint8_t *src = m->bin + lmx__get64(m->pointers + 8 * s);
        rec->bytes += len * (uint64_t)m->item;
        if (lmx__ids_reserve(&m->ids, (size_t)len) != LMX_OK)
            return lmx__err(err, LMX_ENOMEM, "%s:%llu: out of memory", m->bin_path, (unsigned long long)d + 1);
        for (uint64_t t = 0; t < len; t++) {
            int64_t id = mega_get(src + t * (uint64_t)m->item, m->item, m->is_signed);
            if (id < 0 || (uint64_t)id >= vocab) {
                lmx__rec_bad(rec, "token id %lld at position %llu of sequence %llu is outside the tokenizer's vocabulary (size %u)",
                             (long long)id, (unsigned long long)t, (unsigned long long)s, vocab);
                return LMX_OK;
            }
            m->ids.v[m->ids.n++] = (uint32_t)id;
        }
    }
    rec->kind = LMX_REC_TOKENS;
    rec->ids = m->ids.v;
    rec->n_ids = m->ids.n;
    return LMX_OK;
}

static int mega_next(lmx_input *in, lmx_input_rec *rec, lmx_error *err)
{
    mega *m = (mega *)in;
    if (m->next_doc == m->n_docs)
        return 0;
    uint64_t d = m->next_doc++;
    rec->source = m->bin_path;
    rec->where = d + 1;
    rec->bytes = 0;
    int rc = read_doc(m, d, rec, err);
    in->bytes_read += rec->bytes;
    return rc == LMX_OK ? 1 : rc;
}

/* input_blake2b: the .idx bytes, then the .bin bytes. */
static int mega_finish(lmx_input *in, char hex[65], lmx_error *err)
{
    (void)err;
    mega *m = (mega *)in;
    crypto_generichash_state hs;
    uint8_t h[32];
    crypto_generichash_init(&hs, NULL, 0, 32);
    if (m->idx_size)
        crypto_generichash_update(&hs, m->idx, m->idx_size);
    if (m->bin_size)
        crypto_generichash_update(&hs, m->bin, m->bin_size);
    crypto_generichash_final(&hs, h, sizeof h);
    lmx__hex(h, sizeof h, hex);
    return LMX_OK;
}

const lmx_input_format lmx__input_megatron = {
    .name = "megatron",
    .what = "a Megatron PREFIX (PREFIX.bin + PREFIX.idx)",
    .flags = LMX_INPUT_NEEDS_DOMAIN | LMX_INPUT_NO_FIELDS,
    .match = mega_match,
    .list_files = mega_files,
    .open = mega_open,
    .next = mega_next,
    .finish = mega_finish,
    .close = mega_close,
};
