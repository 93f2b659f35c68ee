/* test_util.h - shared helpers for the cmocka suites.
 *
 * EXPECT_FAIL(statement, "text") runs a statement that must call cpool_fail() and asserts that
 * the one-line message contains "text". It swaps in an error handler that longjmp()s back here,
 * so the failing call neither exits the test program nor is allowed to return normally.
 *
 * assert_close(expected, got, n, tolerance, what) compares arrays with the error measure
 * |got - expected| <= tolerance * max(1, |expected|) element by element and, on failure, prints
 * which element, the expected and the actual value. */
#ifndef CPOOL_TEST_UTIL_H
#define CPOOL_TEST_UTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tensor.h"
#include "util.h"

static jmp_buf test_escape __attribute__((unused));

__attribute__((unused)) static void test_catch_error(const char *message, void *user) {
    (void)message;
    longjmp(*(jmp_buf *)user, 1);
}

#define EXPECT_FAIL(statement, expected_text)                                                      \
    do {                                                                                           \
        ErrorHandler previous_ = cpool_set_error_handler(test_catch_error, &test_escape);          \
        volatile int failed_ = 0;                                                                  \
        if (setjmp(test_escape) == 0) {                                                            \
            statement;                                                                             \
        } else {                                                                                   \
            failed_ = 1;                                                                           \
        }                                                                                          \
        cpool_set_error_handler(previous_, NULL);                                                  \
        if (!failed_) fail_msg("expected a failure containing \"%s\"", expected_text);             \
        if (!strstr(cpool_last_error(), expected_text))                                            \
            fail_msg("error \"%s\" does not mention \"%s\"", cpool_last_error(), expected_text);   \
    } while (0)

/* cmocka's fail_msg without the file/line of this header. */
#define _fail_msg_at(file, line, ...)                                                              \
    do {                                                                                           \
        print_error(__VA_ARGS__);                                                                  \
        print_error("\n");                                                                         \
        _fail(file, line);                                                                         \
    } while (0)

static inline void assert_close_at(const double *expected, const real *got, long n,
                                   double tolerance, const char *what, const char *file, int line) {
    for (long i = 0; i < n; i++) {
        double err = fabs((double)got[i] - expected[i]);
        double bound = tolerance * fmax(1.0, fabs(expected[i]));
        if (!(err <= bound))
            _fail_msg_at(file, line,
                         "%s: element %ld: expected %.17g, got %.17g (error %.3g > %.3g)", what, i,
                         expected[i], (double)got[i], err, bound);
    }
}

#define assert_close(expected, got, n, tolerance, what)                                            \
    assert_close_at((expected), (got), (n), (tolerance), (what), __FILE__, __LINE__)

#endif
