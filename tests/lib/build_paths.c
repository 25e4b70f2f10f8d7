#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/build_paths.h"
#include "tests/lib/check.h"

/* BUILD: two levels up from the test binary's directory. */
static const char *build_dir(void) {
    static char dir[PATH_MAX];
    if (dir[0]) return dir;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n] = 0;
    snprintf(dir, sizeof dir, "%s/../..", dirname(exe));
    return dir;
}

const char *test_build_file(const char *name) {
    static char slots[4][PATH_MAX];
    static const char *names[4];
    unsigned i = 0;
    while (i < 4 && names[i] && strcmp(names[i], name) != 0) i++;
    CHECK_MSG(i < 4, "more than 4 build files asked for");
    names[i] = name;
    snprintf(slots[i], sizeof slots[i], "%s/%s", build_dir(), name);
    return slots[i];
}

const char *test_guest_elf(void) {
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/guest/guest.elf", build_dir());
    if (access(path, R_OK) != 0) snprintf(path, sizeof path, "%s/../guest/guest.elf", build_dir());
    return path;
}

bool test_sanitized_build(void) {
    const char *d = build_dir();
    return strstr(d, "/asan/") || strstr(d, "/tsan/");
}
