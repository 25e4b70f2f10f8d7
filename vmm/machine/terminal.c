#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/machine/terminal.h"

static struct termios saved;
static int saved_fd = -1;
/* What the fatal signals remove, in order: sockets, then the directories they were in. */
#define REMOVED_MAX 4
static char remove_paths[REMOVED_MAX][128];
static bool remove_is_dir[REMOVED_MAX];

void terminal_restore(void) {
    if (saved_fd >= 0) tcsetattr(saved_fd, TCSAFLUSH, &saved);
    saved_fd = -1;
}

static void on_fatal(int sig) {
    terminal_restore();
    for (int i = 0; i < REMOVED_MAX && remove_paths[i][0]; i++)
        remove_is_dir[i] ? rmdir(remove_paths[i]) : unlink(remove_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_fatal_signals(void) {
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], on_fatal);
}

void terminal_raw(int fd) {
    if (!isatty(fd) || tcgetattr(fd, &saved) != 0) return;
    struct termios raw = saved;
    cfmakeraw(&raw);
    raw.c_oflag |= OPOST | ONLCR; /* the guest's "\n" still starts a new line */
    if (tcsetattr(fd, TCSAFLUSH, &raw) != 0) return;
    saved_fd = fd;
    atexit(terminal_restore);
    catch_fatal_signals();
}

static void remove_on_signal(const char *path, bool dir) {
    size_t n = strlen(path);
    int i = 0;
    while (i < REMOVED_MAX && remove_paths[i][0] && strcmp(remove_paths[i], path) != 0) i++;
    if (i == REMOVED_MAX || n >= sizeof remove_paths[i]) return;
    remove_is_dir[i] = dir;
    memcpy(remove_paths[i], path, n + 1);
    catch_fatal_signals();
}

void terminal_remove_on_signal(const char *path) { remove_on_signal(path, false); }
void terminal_remove_dir_on_signal(const char *path) { remove_on_signal(path, true); }
