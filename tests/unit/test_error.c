/* common/lmx_error.c: the error convention (code + message naming the offending thing). */
#include <errno.h>
#include <string.h>

#include "lmx_error.h"
#include "lmx_test.h"

static void test_err(void)
{
    lmx_error e = {0};
    CHECK_EQ_INT(lmx__err(&e, LMX_EFORMAT, "%s:%d: field '%s'", "a.jsonl", 7, "text"), LMX_EFORMAT);
    CHECK_EQ_INT(e.code, LMX_EFORMAT);
    CHECK_EQ_STR(e.message, "a.jsonl:7: field 'text'");
    /* NULL err: returns the code, no crash */
    CHECK_EQ_INT(lmx__err(NULL, LMX_EINVAL, "x %d", 1), LMX_EINVAL);
    CHECK_EQ_INT(lmx__err_errno(NULL, "open %s", "f"), LMX_EIO);
    lmx__err_clear(NULL);

    /* A message longer than the buffer is truncated and stays NUL-terminated. */
    char long_s[2 * LMX_ERROR_MESSAGE_MAX];
    memset(long_s, 'x', sizeof long_s - 1);
    long_s[sizeof long_s - 1] = '\0';
    lmx__err(&e, LMX_EINVAL, "%s", long_s);
    CHECK_EQ_U64(strlen(e.message), LMX_ERROR_MESSAGE_MAX - 1);

    /* errno variant: LMX_EIO, message + ": strerror(errno)" */
    errno = ENOENT;
    CHECK_EQ_INT(lmx__err_errno(&e, "open %s", "/x/y"), LMX_EIO);
    CHECK_EQ_INT(e.code, LMX_EIO);
    char want[256];
    snprintf(want, sizeof want, "open /x/y: %s", strerror(ENOENT));
    CHECK_EQ_STR(e.message, want);

    lmx__err_clear(&e);
    CHECK_EQ_INT(e.code, LMX_OK);
    CHECK_EQ_STR(e.message, "");
}

static void test_prefix(void)
{
    lmx_error e = {0};
    lmx__err(&e, LMX_ENOTFOUND, "plan '%s' not found", "p");
    CHECK_EQ_INT(lmx__err_prefix(&e, "index %s: ", "/d"), LMX_ENOTFOUND);
    CHECK_EQ_INT(e.code, LMX_ENOTFOUND);
    CHECK_EQ_STR(e.message, "index /d: plan 'p' not found");
    /* prefixing twice nests */
    lmx__err_prefix(&e, "serve: ");
    CHECK_EQ_STR(e.message, "serve: index /d: plan 'p' not found");
    /* NULL err */
    CHECK_EQ_INT(lmx__err_prefix(NULL, "x"), LMX_EINTERNAL);
    /* overlong prefix: truncated to the buffer, still terminated, starts with the prefix */
    char head[LMX_ERROR_MESSAGE_MAX + 50];
    memset(head, 'h', sizeof head - 1);
    head[sizeof head - 1] = '\0';
    lmx__err(&e, LMX_EIO, "tail");
    lmx__err_prefix(&e, "%s", head);
    CHECK_EQ_U64(strlen(e.message), LMX_ERROR_MESSAGE_MAX - 1);
    CHECK(e.message[0] == 'h' && e.message[LMX_ERROR_MESSAGE_MAX - 2] == 'h');
    CHECK_EQ_INT(e.code, LMX_EIO);
    /* prefix + long old message: the old message is cut, the prefix kept whole */
    char body[LMX_ERROR_MESSAGE_MAX];
    memset(body, 'b', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    lmx__err(&e, LMX_EFORMAT, "%s", body);
    lmx__err_prefix(&e, "P: ");
    CHECK_EQ_U64(strlen(e.message), LMX_ERROR_MESSAGE_MAX - 1);
    CHECK(strncmp(e.message, "P: bbb", 6) == 0);
    /* empty prefix leaves the message */
    lmx__err(&e, LMX_EFORMAT, "m");
    lmx__err_prefix(&e, "%s", "");
    CHECK_EQ_STR(e.message, "m");
}

static void test_strerror(void)
{
    static const struct {
        int code;
        const char *text;
    } table[] = {
        {LMX_OK, "success"},
        {LMX_EINVAL, "invalid argument"},
        {LMX_ENOMEM, "out of memory"},
        {LMX_EIO, "I/O error"},
        {LMX_EFORMAT, "malformed data"},
        {LMX_ECHECKSUM, "checksum mismatch"},
        {LMX_ENOTFOUND, "not found"},
        {LMX_ERANGE, "out of range"},
        {LMX_EUNSUPPORTED, "unsupported"},
        {LMX_ENETWORK, "network error"},
        {LMX_ETIMEOUT, "timed out"},
        {LMX_EHTTP, "server error"},
        {LMX_EAUTH, "authentication failed"},
        {LMX_EINTERNAL, "internal error"},
    };
    size_t n = sizeof table / sizeof *table;
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_STR(lmx_strerror(table[i].code), table[i].text);
        /* every code has its own text */
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(lmx_strerror(table[i].code), lmx_strerror(table[k].code)) != 0);
    }
    /* the table covers every code from LMX_OK to LMX_EINTERNAL */
    CHECK_EQ_INT((int)n, 1 - LMX_EINTERNAL);
    const int unknown[] = {1, 5, -14, -100, 1000, -2147483647 - 1};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        CHECK_EQ_STR(lmx_strerror(unknown[i]), "unknown error");
}

int main(void)
{
    test_err();
    test_prefix();
    test_strerror();
    TEST_MAIN_END();
}
