/* Where the build under test keeps its programs, found from the test binary's own path
 * (BUILD/tests/kvm/NAME): BUILD/bellhop and the like, and the tiny guest (build/guest, which
 * the sanitizer builds, BUILD = build/asan or build/tsan, share). */
#ifndef BELLHOP_TESTS_LIB_BUILD_PATHS_H
#define BELLHOP_TESTS_LIB_BUILD_PATHS_H

#include <stdbool.h>

/* BUILD/name, in a static buffer of its own per call site's name (valid until the next call
 * with the same name). */
const char *test_build_file(const char *name);
const char *test_guest_elf(void);
/* A sanitizer build: no sandbox, inflated memory and times. */
bool test_sanitized_build(void);

#endif
