#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/machine/terminal.h"

static struct termios saved;
static int saved_fd = -1;
static char remove_path[128];

void terminal_restore(void) {
    if (saved_fd >= 0) tcsetattr(saved_fd, TCSAFLUSH, &saved);
    saved_fd = -1;
}

static void on_fatal(int sig) {
    terminal_restore();
    if (remove_path[0]) unlink(remove_path);
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

void terminal_remove_on_signal(const char *path) {
    size_t n = strlen(path);
    if (n >= sizeof remove_path) return;
    memcpy(remove_path, path, n + 1);
    catch_fatal_signals();
}
