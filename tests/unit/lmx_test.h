/* Minimal unit-test harness: CHECK records a failure and continues; main returns non-zero when
 * anything failed, so ctest reports it. */
#ifndef LMX_TEST_H
#define LMX_TEST_H

#include <stdio.h>
#include <stdlib.h>

static int lmx_test_failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            lmx_test_failures++;                                                     \
        }                                                                            \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                      \
    do {                                                                                        \
        long long lmx_a_ = (long long)(a), lmx_b_ = (long long)(b);                             \
        if (lmx_a_ != lmx_b_) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__,       \
                    __LINE__, #a, lmx_a_, #b, lmx_b_);                                          \
            lmx_test_failures++;                                                                \
        }                                                                                       \
    } while (0)

#define TEST_MAIN_END()                                                        \
    do {                                                                       \
        if (lmx_test_failures) {                                               \
            fprintf(stderr, "%d check(s) failed\n", lmx_test_failures);        \
            return 1;                                                          \
        }                                                                      \
        printf("ok\n");                                                        \
        return 0;                                                              \
    } while (0)

#endif
