/* Running a program for a test: stdin from /dev/null (or the given text), stdout and stderr
 * into one pipe. */
#ifndef BELLHOP_TESTS_LIB_SPAWN_H
#define BELLHOP_TESTS_LIB_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/* Starts argv; *rd reads its output. input: what its stdin reads (NULL: nothing). Returns the
 * pid, or -1. */
pid_t spawn_piped(char *const argv[], const char *input, int *rd);
/* Runs argv to its end, keeping its output (NUL-terminated) in out; returns the wait status. */
int spawn_capture(char *const argv[], const char *input, char *out, size_t outlen);

/* Reads rd into out (NUL-terminated) until out holds one of the needles (a NULL-terminated
 * list) or rd ends. Returns the length read. */
size_t spawn_read_until(int rd, char *out, size_t outlen, const char *const *needles);

#endif
