/* common/lmx_util.c: capped buffers, id arrays, strict integer parsing, hex, atomic writes,
 * bounded reads, mkdir -p, little-endian helpers. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "lmx_test.h"
#include "lmx_util.h"

static void test_buf_caps(void)
{
    lmx_buf b = {0};
    b.cap_limit = 10;
    CHECK_EQ_INT(lmx__buf_append(&b, "abcdef", 6), LMX_OK);
    CHECK_EQ_U64(b.len, 6);
    CHECK_EQ_INT(lmx__buf_append(&b, "ghij", 4), LMX_OK); /* exactly at the cap */
    CHECK_EQ_U64(b.len, 10);
    /* One byte past the cap fails and leaves the content untouched. */
    CHECK_EQ_INT(lmx__buf_append(&b, "k", 1), LMX_ENOMEM);
    CHECK_EQ_U64(b.len, 10);
    CHECK(memcmp(b.data, "abcdefghij", 10) == 0);
    /* A huge request (overflow territory) fails too. */
    CHECK_EQ_INT(lmx__buf_append(&b, "x", SIZE_MAX), LMX_ENOMEM);
    CHECK_EQ_INT(lmx__buf_reserve(&b, SIZE_MAX - 3), LMX_ENOMEM);
    CHECK_EQ_U64(b.len, 10);
    CHECK(memcmp(b.data, "abcdefghij", 10) == 0);
    /* Empty append is fine even when full. */
    CHECK_EQ_INT(lmx__buf_append(&b, NULL, 0), LMX_OK);
    CHECK_EQ_U64(b.len, 10);
    CHECK(b.cap >= b.len);
    lmx__buf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0 && b.cap_limit == 0);
    lmx__buf_free(NULL);

    /* printf: appends without the NUL in len, respects the cap. */
    lmx_buf p = {0};
    p.cap_limit = 16;
    CHECK_EQ_INT(lmx__buf_printf(&p, "%d-%s", 42, "abc"), LMX_OK);
    CHECK_EQ_U64(p.len, 6);
    CHECK(memcmp(p.data, "42-abc", 7) == 0); /* NUL written after */
    CHECK_EQ_INT(lmx__buf_printf(&p, "%s", "0123456789"), LMX_ENOMEM); /* 6+10+1 > 16 */
    CHECK_EQ_U64(p.len, 6);
    CHECK(memcmp(p.data, "42-abc", 6) == 0);
    CHECK_EQ_INT(lmx__buf_printf(&p, "%s", "012345678"), LMX_OK); /* 6+9+1 == 16 */
    CHECK_EQ_U64(p.len, 15);
    CHECK(strcmp((char *)p.data, "42-abc012345678") == 0);
    lmx__buf_free(&p);

    /* Growth keeps earlier bytes (default cap). */
    lmx_buf g = {0};
    for (int i = 0; i < 5000; i++) {
        uint8_t c = (uint8_t)i;
        CHECK_EQ_INT(lmx__buf_append(&g, &c, 1), LMX_OK);
    }
    int same = 1;
    for (int i = 0; i < 5000; i++)
        same &= g.data[i] == (uint8_t)i;
    CHECK(same);
    CHECK_EQ_U64(g.len, 5000);
    lmx__buf_free(&g);
}

static void test_ids(void)
{
    lmx_ids ids = {0};
    for (uint32_t i = 0; i < 3000; i++)
        CHECK_EQ_INT(lmx__ids_push(&ids, i * 7), LMX_OK);
    CHECK_EQ_U64(ids.n, 3000);
    CHECK_EQ_U64(ids.v[0], 0);
    CHECK_EQ_U64(ids.v[2999], 2999u * 7);
    CHECK_EQ_INT(lmx__ids_reserve(&ids, (size_t)1 << 41), LMX_ENOMEM);
    CHECK_EQ_U64(ids.n, 3000);
    lmx__ids_free(&ids);
    CHECK(ids.v == NULL && ids.n == 0 && ids.cap == 0);
}

static void test_parse_u64(void)
{
    uint64_t v = 12345;
    CHECK_EQ_INT(lmx__parse_u64("0", 10, &v), 0);
    CHECK_EQ_U64(v, 0);
    CHECK_EQ_INT(lmx__parse_u64("987", 1000, &v), 0);
    CHECK_EQ_U64(v, 987);
    CHECK_EQ_INT(lmx__parse_u64("007", 1000, &v), 0);
    CHECK_EQ_U64(v, 7);
    /* max bound is inclusive */
    CHECK_EQ_INT(lmx__parse_u64("1000", 1000, &v), 0);
    CHECK_EQ_U64(v, 1000);
    v = 55;
    CHECK_EQ_INT(lmx__parse_u64("1001", 1000, &v), -1);
    CHECK_EQ_U64(v, 55); /* untouched on failure */
    /* full range */
    CHECK_EQ_INT(lmx__parse_u64("18446744073709551615", UINT64_MAX, &v), 0);
    CHECK_EQ_U64(v, UINT64_MAX);
    v = 55;
    CHECK_EQ_INT(lmx__parse_u64("18446744073709551616", UINT64_MAX, &v), -1); /* overflow by one */
    CHECK_EQ_INT(lmx__parse_u64("99999999999999999999", UINT64_MAX, &v), -1);
    CHECK_EQ_INT(lmx__parse_u64("100000000000000000000", UINT64_MAX, &v), -1); /* 21 digits */
    CHECK_EQ_U64(v, 55);
    /* empty, NULL, junk, signs, spaces, hex, decimals */
    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1a", "a1", "0x10", "1.0", "1e3", "--", "١", "1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = 55;
        if (lmx__parse_u64(bad[i], UINT64_MAX, &v) != -1 || v != 55) {
            fprintf(stderr, "parse_u64 accepted '%s'\n", bad[i]);
            lmx_test_failures++;
        }
    }
    CHECK_EQ_INT(lmx__parse_u64(NULL, UINT64_MAX, &v), -1);
    /* max 0 */
    CHECK_EQ_INT(lmx__parse_u64("0", 0, &v), 0);
    CHECK_EQ_INT(lmx__parse_u64("1", 0, &v), -1);
}

static void test_hex(void)
{
    uint8_t in[256], back[256];
    for (int i = 0; i < 256; i++)
        in[i] = (uint8_t)(255 - i);
    char hex[513];
    lmx__hex(in, sizeof in, hex);
    CHECK_EQ_U64(strlen(hex), 512);
    CHECK(strncmp(hex, "fffefdfc", 8) == 0);
    CHECK(strcmp(hex + 504, "03020100") == 0);
    CHECK_EQ_INT(lmx__unhex(hex, back, sizeof back), 0);
    CHECK(memcmp(in, back, sizeof in) == 0);

    uint8_t two[2] = {0};
    CHECK_EQ_INT(lmx__unhex("aBcD", two, 2), 0); /* upper case accepted */
    CHECK_EQ_INT(two[0], 0xab);
    CHECK_EQ_INT(two[1], 0xcd);
    char z[1];
    lmx__hex(in, 0, z);
    CHECK_EQ_INT(z[0], '\0');
    /* bad hex: wrong characters, too short, too long, odd length */
    CHECK_EQ_INT(lmx__unhex("zz00", two, 2), -1);
    CHECK_EQ_INT(lmx__unhex("0g00", two, 2), -1);
    CHECK_EQ_INT(lmx__unhex("00", two, 2), -1);
    CHECK_EQ_INT(lmx__unhex("000", two, 2), -1);
    CHECK_EQ_INT(lmx__unhex("000000", two, 2), -1);
    CHECK_EQ_INT(lmx__unhex("00 0", two, 2), -1);
    CHECK_EQ_INT(lmx__unhex("", two, 0), 0);
    CHECK_EQ_INT(lmx__unhex("0", two, 0), -1);
}

static void test_files(void)
{
    char dir[256];
    lmx_test_tmpdir("util", dir, sizeof dir);
    char path[512];
    snprintf(path, sizeof path, "%s/a.bin", dir);
    lmx_error err = {0};
    const char payload[] = "hello\0world\n";
    CHECK_EQ_INT(lmx__write_file_atomic(path, payload, sizeof payload, &err), LMX_OK);
    char *txt = NULL;
    size_t len = 0;
    CHECK_EQ_INT(lmx__read_file(path, 1 << 20, &txt, &len, &err), LMX_OK);
    CHECK_EQ_U64(len, sizeof payload);
    CHECK(txt && memcmp(txt, payload, sizeof payload) == 0);
    CHECK(txt && txt[len] == '\0');
    free(txt);
    /* no temp file left: the folder holds exactly a.bin */
    CHECK_EQ_INT(lmx_test_count_entries(dir), 1);
    /* replacing keeps one file with the new content */
    CHECK_EQ_INT(lmx__write_file_atomic(path, "xy", 2, &err), LMX_OK);
    CHECK_EQ_INT(lmx__read_file(path, 2, &txt, &len, &err), LMX_OK); /* exactly max_len */
    CHECK_EQ_U64(len, 2);
    CHECK(txt && strcmp(txt, "xy") == 0);
    free(txt);
    CHECK_EQ_INT(lmx_test_count_entries(dir), 1);
    /* empty file */
    CHECK_EQ_INT(lmx__write_file_atomic(path, "", 0, &err), LMX_OK);
    CHECK_EQ_INT(lmx__read_file(path, 0, &txt, &len, &err), LMX_OK);
    CHECK_EQ_U64(len, 0);
    CHECK(txt && txt[0] == '\0');
    free(txt);

    /* max_len: one byte over fails with LMX_ENOMEM naming the file; *out is NULL */
    char big[100];
    memset(big, 'q', sizeof big);
    CHECK_EQ_INT(lmx__write_file_atomic(path, big, sizeof big, &err), LMX_OK);
    txt = (char *)1;
    lmx__err_clear(&err);
    CHECK_EQ_INT(lmx__read_file(path, 99, &txt, &len, &err), LMX_ENOMEM);
    CHECK(txt == NULL);
    CHECK_EQ_INT(err.code, LMX_ENOMEM);
    CHECK_CONTAINS(err.message, path);
    CHECK_EQ_INT(lmx__read_file(path, 100, &txt, &len, &err), LMX_OK);
    CHECK_EQ_U64(len, 100);
    free(txt);
    /* a large file crossing the 64 KiB read chunk */
    size_t n = 200000;
    char *blob = malloc(n);
    for (size_t i = 0; i < n; i++)
        blob[i] = (char)('a' + i % 26);
    CHECK_EQ_INT(lmx__write_file_atomic(path, blob, n, &err), LMX_OK);
    CHECK_EQ_INT(lmx__read_file(path, n, &txt, &len, &err), LMX_OK);
    CHECK_EQ_U64(len, n);
    CHECK(txt && memcmp(txt, blob, n) == 0);
    free(txt);
    CHECK_EQ_INT(lmx__read_file(path, n - 1, &txt, &len, &err), LMX_ENOMEM);
    free(blob);

    /* missing file: LMX_EIO with the path and errno text */
    char missing[512];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    lmx__err_clear(&err);
    CHECK_EQ_INT(lmx__read_file(missing, 10, &txt, &len, &err), LMX_EIO);
    CHECK_CONTAINS(err.message, missing);
    CHECK_CONTAINS(err.message, strerror(ENOENT));
    /* atomic write into a missing folder fails and names the temp path */
    char deep[512];
    snprintf(deep, sizeof deep, "%s/no/such/x", dir);
    lmx__err_clear(&err);
    CHECK_EQ_INT(lmx__write_file_atomic(deep, "a", 1, &err), LMX_EIO);
    CHECK_CONTAINS(err.message, deep);

    /* mkdir -p, idempotent */
    snprintf(deep, sizeof deep, "%s/m/n/o", dir);
    CHECK_EQ_INT(lmx__mkdirs(deep, &err), LMX_OK);
    struct stat st;
    CHECK(stat(deep, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_EQ_INT(lmx__mkdirs(deep, &err), LMX_OK);
    CHECK_EQ_INT(lmx__mkdirs("", &err), LMX_EINVAL);
    /* a file in the way */
    snprintf(deep, sizeof deep, "%s/a.bin/sub", dir);
    CHECK_EQ_INT(lmx__mkdirs(deep, &err), LMX_EIO);
    CHECK_EQ_INT(lmx__fsync_dir_of(path, &err), LMX_OK);

    CHECK_EQ_INT(lmx_test_rmtree(dir), 0);
}

static void test_le(void)
{
    uint8_t b[16];
    memset(b, 0xee, sizeof b);
    lmx__put16(b, 0x1234);
    CHECK(b[0] == 0x34 && b[1] == 0x12 && b[2] == 0xee);
    CHECK_EQ_U64(lmx__get16(b), 0x1234);
    lmx__put32(b + 1, 0xa1b2c3d4u); /* unaligned */
    CHECK(b[1] == 0xd4 && b[2] == 0xc3 && b[3] == 0xb2 && b[4] == 0xa1 && b[5] == 0xee);
    CHECK_EQ_U64(lmx__get32(b + 1), 0xa1b2c3d4u);
    lmx__put64(b + 3, 0x0102030405060708ull);
    const uint8_t want[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    CHECK(memcmp(b + 3, want, 8) == 0);
    CHECK(b[11] == 0xee);
    CHECK_EQ_U64(lmx__get64(b + 3), 0x0102030405060708ull);
    lmx__put64(b, UINT64_MAX);
    CHECK_EQ_U64(lmx__get64(b), UINT64_MAX);
    lmx__put32(b, 0x80000000u);
    CHECK_EQ_U64(lmx__get32(b), 0x80000000u); /* high bit, no sign extension */
    lmx__put16(b, 0xffff);
    CHECK_EQ_U64(lmx__get16(b), 0xffff);
}

static void test_now(void)
{
    double a = lmx__now(), b = lmx__now();
    CHECK(a > 0);
    CHECK(b >= a);
}

int main(void)
{
    test_buf_caps();
    test_ids();
    test_parse_u64();
    test_hex();
    test_files();
    test_le();
    test_now();
    TEST_MAIN_END();
}
