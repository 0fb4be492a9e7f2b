/* libFuzzer target: the JSON Lines reader over compressed bytes (common/index/inputs/
 * lmx_input_jsonl.c + lmx_input_stream.c: magic-byte sniffing, streaming gzip with several
 * members, zstd, line splitting) and parse() with a non-default field layout.
 * Input byte 0: bits 0-1 pick the file name (.jsonl, .jsonl.gz, .jsonl.zst, .json.gz), bit 2 the
 * field layout (default / --text-field content --id-field id). The rest is the file.
 * Checked: no crash or leak; an error names the file; when the whole file reads, the lines (with
 * their '\n') are exactly the file's decompressed bytes, decoded once more in one piece with
 * zlib/zstd independently of the streaming reader (gzip: member by member). */
#include <stdint.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "fuzz_util.h"
#include "lmx_inputs.h"

/* gzip members back to back, in one piece; 0 ok, -1 not a clean sequence of members. */
static int gunzip_all(const uint8_t *d, size_t n, lmx_buf *out)
{
    size_t pos = 0;
    uint8_t buf[1 << 14];
    while (pos < n) {
        z_stream z = {0};
        if (inflateInit2(&z, 31) != Z_OK)
            return -1;
        z.next_in = (Bytef *)d + pos;
        z.avail_in = (uInt)(n - pos);
        int zr;
        do {
            z.next_out = buf;
            z.avail_out = sizeof buf;
            zr = inflate(&z, Z_NO_FLUSH);
            if (lmx__buf_append(out, buf, sizeof buf - z.avail_out) != LMX_OK)
                zr = Z_MEM_ERROR;
        } while (zr == Z_OK && !(z.avail_in == 0 && z.avail_out != 0));
        pos = n - z.avail_in;
        inflateEnd(&z);
        if (zr != Z_STREAM_END)
            return -1;
    }
    return 0;
}

static int unzstd_all(const uint8_t *d, size_t n, lmx_buf *out)
{
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    ZSTD_inBuffer in = {d, n, 0};
    uint8_t buf[1 << 14];
    size_t ret = 0;
    int rc = 0;
    while (rc == 0 && in.pos < in.size) {
        ZSTD_outBuffer o = {buf, sizeof buf, 0};
        ret = ZSTD_decompressStream(dc, &o, &in);
        if (ZSTD_isError(ret) || lmx__buf_append(out, buf, o.pos) != LMX_OK)
            rc = -1;
    }
    for (int k = 0; rc == 0 && ret != 0 && k < 1000; k++) { /* flush what is buffered */
        ZSTD_outBuffer o = {buf, sizeof buf, 0};
        ret = ZSTD_decompressStream(dc, &o, &in);
        if (ZSTD_isError(ret) || lmx__buf_append(out, buf, o.pos) != LMX_OK)
            rc = -1;
        if (o.pos == 0)
            break;
    }
    ZSTD_freeDCtx(dc);
    return rc == 0 && ret == 0 ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"in.jsonl", "in.jsonl.gz", "in.jsonl.zst", "in.json.gz"};
    if (size < 1)
        return 0;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_scratch_dir("gzip"), names[data[0] & 3]);
    if (fuzz_write_file(path, data + 1, size - 1) != 0)
        return 0;
    int layout = data[0] & 4;
    lmx_input_params p = {.path = path, .domain_field = "meta.redpajama_set_name",
                          .text_field = layout ? "content" : "text", .id_field = layout ? "id" : NULL,
                          .vocab_size = 258};
    lmx_input *in = NULL;
    lmx_error err = {0};
    lmx_buf lines = {0}, want = {0};
    lmx_input_parsed parsed = {0};
    int rc = lmx__input_jsonl.open(&p, &in, &err);
    if (rc == LMX_OK) {
        in->fmt = &lmx__input_jsonl;
        in->params = &p;
        lmx_input_rec rec;
        for (;;) {
            memset(&rec, 0, sizeof rec);
            rc = lmx__input_jsonl.next(in, &rec, &err);
            if (rc <= 0)
                break;
            FUZZ_CHECK(lmx__buf_append(&lines, rec.data, rec.len) == LMX_OK && lmx__buf_append(&lines, "\n", 1) == LMX_OK);
            if (rec.kind == LMX_REC_RAW)
                lmx__input_jsonl.parse(&p, rec.data, rec.len, &parsed);
        }
    }
    const uint8_t *raw = data + 1;
    size_t n = size - 1;
    int ok = 0, compressed = 1;
    if (n >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
        ok = gunzip_all(raw, n, &want) == 0;
    else if (n >= 4 && ((raw[0] == 0x28 && raw[1] == 0xb5 && raw[2] == 0x2f && raw[3] == 0xfd) ||
                        ((raw[0] & 0xf0) == 0x50 && raw[1] == 0x2a && raw[2] == 0x4d && raw[3] == 0x18)))
        ok = unzstd_all(raw, n, &want) == 0;
    else
        ok = lmx__buf_append(&want, raw, n) == LMX_OK, compressed = 0;
    if (rc < 0) {
        FUZZ_CHECK(strstr(err.message, path) != NULL);
        FUZZ_CHECK(!compressed || !ok); /* compressed data the one-piece decoder takes must read */
    } else {
        FUZZ_CHECK(ok || !compressed); /* and nothing it rejects */
        if (ok) {
            /* the reader adds '\n' to a last line without one, and drops nothing else */
            if (want.len && want.data[want.len - 1] != '\n')
                FUZZ_CHECK(lmx__buf_append(&want, "\n", 1) == LMX_OK);
            FUZZ_CHECK(lines.len == want.len && (lines.len == 0 || memcmp(lines.data, want.data, lines.len) == 0));
        }
    }
    lmx__input_jsonl.close(in);
    lmx__buf_free(&lines);
    lmx__buf_free(&want);
    for (int k = 0; k < 3; k++)
        lmx__buf_free(&parsed.scratch[k]);
    return 0;
}
