#include "output_file.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double test_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

const char *test_file_text(const char *path) {
    static char text[1 << 17];
    text[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return text;
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    return text;
}

bool test_wait_for_text(const char *path, const char *needle, double seconds) {
    for (double until = test_now_s() + seconds; test_now_s() < until; usleep(20000))
        if (strstr(test_file_text(path), needle)) return true;
    return strstr(test_file_text(path), needle) != NULL;
}
