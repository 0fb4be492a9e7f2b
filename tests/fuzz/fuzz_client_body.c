/* libFuzzer target: the client's bounded body sink (client/lmx_client_sink.c: streaming zstd
 * against max_batch_bytes and a caller buffer) and its escaper for server text
 * (client/lmx_client_escape.c).
 * Input: flags byte (bit 0 zstd, bit 1 caller buffer, bits 2-4 limit choice), chunk-size byte,
 * then the body. Invariants: nothing is written past the limit or the caller buffer; a body the
 * sink accepts equals zstd's one-shot decompression of the same bytes; the escaped text is one
 * NUL-terminated line of printable bytes within its capacity. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "fuzz_util.h"
#include "lmx_client_internal.h"

static void check_escape(const uint8_t *data, size_t size, size_t cap)
{
    char out[512];
    FUZZ_CHECK(cap >= 1 && cap <= sizeof out);
    size_t n = lmx__escape_text(out, cap, (const char *)data, size);
    FUZZ_CHECK(n < cap && out[n] == '\0' && strlen(out) == n);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)out[i];
        FUZZ_CHECK(c >= 0x20 && c != 0x7f);
        FUZZ_CHECK(!(c == 0xC2 && i + 1 < n && (uint8_t)out[i + 1] >= 0x80 && (uint8_t)out[i + 1] <= 0x9F));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int zstd = data[0] & 1, caller = data[0] >> 1 & 1;
    static const uint64_t limits[8] = {0, 1, 96, 4096, 65536, 1 << 20, 16 << 20, (uint64_t)1 << 30};
    uint64_t limit = limits[data[0] >> 2 & 7];
    size_t chunk = (size_t)data[1] + 1;
    const uint8_t *body = data + 2;
    size_t n = size - 2;
    check_escape(body, n, 1 + (size_t)data[1] * 2);

    size_t ccap = caller ? (size_t)(limit < 65536 ? limit : 65536) : 0;
    uint8_t *cbuf = caller ? malloc(ccap + 1) : NULL; /* exact size + 1 guard byte */
    if (cbuf)
        cbuf[ccap] = 0xA5;
    lmx__sink s;
    lmx__sink_init(&s, limit, cbuf, ccap);
    lmx_error err = {0};
    int rc = lmx__sink_begin(&s, zstd, zstd ? -1 : (int64_t)n, &err);
    for (size_t i = 0; rc == LMX_OK && i < n; i += chunk)
        rc = lmx__sink_write(&s, body + i, n - i < chunk ? n - i : chunk, &err);
    if (rc == LMX_OK)
        rc = lmx__sink_finish(&s, &err);
    if (cbuf)
        FUZZ_CHECK(cbuf[ccap] == 0xA5);
    if (rc != LMX_OK) {
        FUZZ_CHECK(err.code == rc && err.message[0]);
    } else {
        FUZZ_CHECK(s.len <= limit && (!caller || (s.buf == cbuf && s.len <= ccap)));
        if (!zstd) {
            FUZZ_CHECK(s.len == n && (n == 0 || memcmp(s.buf, body, n) == 0));
        } else {
            unsigned long long want = ZSTD_getFrameContentSize(body, n);
            FUZZ_CHECK(want == s.len);
            uint8_t *ref = malloc(s.len ? s.len : 1);
            size_t got = ZSTD_decompress(ref, s.len, body, n);
            FUZZ_CHECK(!ZSTD_isError(got) && got == s.len && memcmp(ref, s.buf, s.len) == 0);
            free(ref);
        }
    }
    lmx__sink_free(&s);
    free(cbuf);
    return 0;
}
