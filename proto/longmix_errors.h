/* longmix error convention, shared by every part of longmix and installed beside longmix.h.
 *
 * Every fallible function returns an int: LMX_OK (0) on success or a negative LMX_E* code.
 * Functions that can say more take an `lmx_error *` (may be NULL); on failure they fill it with
 * the same code and a one-line message naming the offending thing (file and line, JSON field,
 * HTTP parameter, server URL). On success the lmx_error is left untouched. Messages are plain
 * ASCII/UTF-8 text without a trailing newline. */
#ifndef LONGMIX_ERRORS_H
#define LONGMIX_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define LMX_API
#elif defined(__GNUC__) || defined(__clang__)
#define LMX_API __attribute__((visibility("default")))
#else
#define LMX_API
#endif

enum {
    LMX_OK = 0,
    LMX_EINVAL = -1,       /* invalid argument, config value, request parameter or input record */
    LMX_ENOMEM = -2,       /* allocation failed or a size cap was exceeded */
    LMX_EIO = -3,          /* the operating system refused a read, write, open, mmap (errno text in message) */
    LMX_EFORMAT = -4,      /* malformed, truncated or foreign data (bad magic, version, sizes) */
    LMX_ECHECKSUM = -5,    /* a checksum or digest does not match the data */
    LMX_ENOTFOUND = -6,    /* unknown plan, document, domain, file */
    LMX_ERANGE = -7,       /* a value outside its allowed range (step past total_tokens, id too large) */
    LMX_EUNSUPPORTED = -8, /* a format version or tokenizer component longmix does not implement */
    LMX_ENETWORK = -9,     /* no server could be reached */
    LMX_ETIMEOUT = -10,    /* an operation exceeded its configured timeout */
    LMX_EHTTP = -11,       /* a server answered with an error status (message has status and body) */
    LMX_EAUTH = -12,       /* missing or rejected credentials */
    LMX_EINTERNAL = -13    /* a broken invariant inside longmix: a bug, please report it */
};

#define LMX_ERROR_MESSAGE_MAX 512

typedef struct lmx_error {
    int code;                              /* LMX_OK or a negative LMX_E* code */
    char message[LMX_ERROR_MESSAGE_MAX];   /* NUL-terminated detail, "" when none */
} lmx_error;

/* Static, never-NULL text for a code ("invalid argument", ...); unknown codes give "unknown error". */
LMX_API const char *lmx_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
