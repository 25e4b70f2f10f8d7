/* Running another program with its output on a pipe: the bench's VMMs and the tests'. */
#ifndef BELLHOP_BENCH_BELLHOP_BENCH_SPAWN_H
#define BELLHOP_BENCH_BELLHOP_BENCH_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Starts argv with stdout and stderr on one pipe that *rd reads; its stdin reads `input`
 * (NULL: /dev/null). own_group: in a process group of its own, so that kill(-pid) stops it
 * and its children. Returns the pid, or -1. */
pid_t spawn_piped(char *const argv[], const char *input, bool own_group, int *rd);
/* Runs argv to its end, keeping its output (NUL-terminated) in out; returns the wait status. */
int spawn_capture(char *const argv[], const char *input, char *out, size_t outlen);
/* Reads rd into out (NUL-terminated) until out holds one of the needles (a NULL-terminated
 * list) or rd ends. Returns the length read. */
size_t spawn_read_until(int rd, char *out, size_t outlen, const char *const *needles);

#endif
