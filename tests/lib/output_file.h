/* What the integration tests read back from a running bellhop: its output file, polled until a
 * line shows up or a deadline passes. */
#ifndef BELLHOP_TESTS_LIB_OUTPUT_FILE_H
#define BELLHOP_TESTS_LIB_OUTPUT_FILE_H

#include <stdbool.h>

/* CLOCK_MONOTONIC in seconds: deadlines in the tests. */
double test_now_s(void);
/* The whole of a file, NUL-terminated, in a static buffer valid until the next call (empty if
 * the file cannot be read; cut at 128 KiB). */
const char *test_file_text(const char *path);
/* Whether `needle` appears in the file within `seconds` (polled every 20 ms). */
bool test_wait_for_text(const char *path, const char *needle, double seconds);

#endif
