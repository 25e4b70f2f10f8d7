/* --trace-file on a Linux boot (a stock kernel: nested on a PVM host, as every tests/kvm/linux_*
 * binary): the timeline is written within its stated size, parses, and its exit slices up to
 * boot marker 1 (init's first act) are the exits the marker counts, by kind. */
#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/build_paths.h"
#include "tests/lib/check.h"
#include "bench/bellhop_bench/spawn.h"

#define TRACE_BOUND (32u << 20) /* a boot's timeline, at most */

static char out[1 << 17];

TEST_TIMEOUT(a_linux_boots_timeline_counts_the_exits_its_markers_count, 300) {
    if (test_sanitized_build()) test_skip("the plain build's timeline is the one measured (tests/kvm/bellhop_run covers the sanitizers)");
    if (access("build/linux/bzImage", R_OK) != 0) test_skip("no build/linux (make linux-files)");
    char path[] = "/tmp/bellhop-linux-timeline-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    const char *bellhop = test_build_file("bellhop");
    char *const argv[] = {(char *)bellhop, "run", "--kernel", "build/linux/bzImage", "--initrd", "build/linux/initrd.cpio",
                          "--mem", "512M", "--boot-markers", "--trace-file", path, "--cmdline", "console=ttyS0 quiet", NULL};
    int status = spawn_capture(argv, NULL, out, sizeof out);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, out);
    unsigned long long io = 0, mmio = 0;
    const char *m = strstr(out, "bellhop: boot marker 0x1 at ");
    CHECK_MSG(m && sscanf(strstr(m, "exits (io "), "exits (io %llu, mmio %llu", &io, &mmio) == 2, "%s", out);
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    printf("    a Linux boot's timeline: %lld KiB (bound %u KiB)\n", (long long)st.st_size >> 10, TRACE_BOUND >> 10);
    CHECK_MSG(st.st_size > 0 && (unsigned long long)st.st_size <= TRACE_BOUND, "%lld bytes", (long long)st.st_size);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    unlink(path);
    CHECK_MSG(doc, "the trace does not parse: %s (line %d)", je.text, je.line);
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(doc, "otherData"), "dropped_records")), 0);
    json_t *events = json_object_get(doc, "traceEvents");
    double marker = -1;
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        if (name && strcmp(name, "boot marker 0x1") == 0) marker = json_number_value(json_object_get(e, "ts"));
    }
    CHECK_MSG(marker > 0, "no boot marker 0x1 on the timeline");
    unsigned long long io_slices = 0, mmio_slices = 0;
    json_array_foreach(events, i, e) {
        const char *ph = json_string_value(json_object_get(e, "ph")), *cat = json_string_value(json_object_get(e, "cat"));
        const char *name = json_string_value(json_object_get(e, "name"));
        if (!ph || strcmp(ph, "X") != 0 || !cat || strcmp(cat, "exit") != 0 || !name) continue;
        if (json_number_value(json_object_get(e, "ts")) > marker) continue;
        if (strncmp(name, "io ", 3) == 0) io_slices++;
        else if (strncmp(name, "mmio ", 5) == 0) mmio_slices++;
    }
    json_decref(doc);
    printf("    to marker 1: %llu io and %llu mmio exit slices; the marker counted %llu and %llu\n", io_slices, mmio_slices,
           io, mmio);
    CHECK_MSG(io_slices == io && mmio_slices == mmio, "slices io %llu mmio %llu, marker io %llu mmio %llu", io_slices,
              mmio_slices, io, mmio);
}
