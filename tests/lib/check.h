/* A minimal test framework. Every test runs in its own child process so that a crash or a
 * hang in one test is reported as that test's failure and the others still run.
 * Output protocol, one line per test (parsed by tests/run.sh, on the host or from the
 * nested VM's serial console):
 *     PASS <suite>.<test>
 *     FAIL <suite>.<test>: <message>
 *     SKIP <suite>.<test>: <reason>
 */
#ifndef BELLHOP_TESTS_CHECK_H
#define BELLHOP_TESTS_CHECK_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef void test_fn_t(void);

void test_register(const char *name, test_fn_t *fn, unsigned timeout_s);
int test_main(int argc, char **argv);

_Noreturn void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* From now on, in the calling thread and what it forks, system call nr fails with errno err
 * (a seccomp filter, as a sandbox that forbids it would): for a test's child process. 0, or
 * -1 when the filter could not be loaded. */
int test_forbid_syscall(long nr, int err);

#define TEST_TIMEOUT(name, secs)                                                             \
    static void name(void);                                                                  \
    __attribute__((constructor)) static void test_reg_##name(void) {                         \
        test_register(#name, name, secs);                                                    \
    }                                                                                        \
    static void name(void)
#define TEST(name) TEST_TIMEOUT(name, 30)

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);                \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                 \
    do {                                                                                     \
        if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__);                             \
    } while (0)

#define CHECK_EQ(a, b)                                                                       \
    do {                                                                                     \
        int64_t check_a_ = (int64_t)(a), check_b_ = (int64_t)(b);                            \
        if (check_a_ != check_b_)                                                            \
            test_fail(__FILE__, __LINE__, "%s == %s: %" PRId64 " (0x%" PRIx64 ") != %" PRId64 \
                      " (0x%" PRIx64 ")", #a, #b, check_a_, (uint64_t)check_a_, check_b_,    \
                      (uint64_t)check_b_);                                                   \
    } while (0)

#define CHECK_NE(a, b)                                                                       \
    do {                                                                                     \
        int64_t check_a_ = (int64_t)(a), check_b_ = (int64_t)(b);                            \
        if (check_a_ == check_b_)                                                            \
            test_fail(__FILE__, __LINE__, "%s != %s: both %" PRId64, #a, #b, check_a_);      \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                   \
    do {                                                                                     \
        const char *check_a_ = (a), *check_b_ = (b);                                         \
        if (strcmp(check_a_, check_b_) != 0)                                                 \
            test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, check_a_,    \
                      check_b_);                                                             \
    } while (0)

#endif
