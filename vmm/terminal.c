#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/terminal.h"

static struct termios saved;
static int saved_fd = -1;

void terminal_restore(void) {
    if (saved_fd >= 0) tcsetattr(saved_fd, TCSAFLUSH, &saved);
    saved_fd = -1;
}

static void on_fatal(int sig) {
    terminal_restore();
    signal(sig, SIG_DFL);
    raise(sig);
}

void terminal_raw(int fd) {
    if (!isatty(fd) || tcgetattr(fd, &saved) != 0) return;
    struct termios raw = saved;
    cfmakeraw(&raw);
    raw.c_oflag |= OPOST | ONLCR; /* the guest's "\n" still starts a new line */
    if (tcsetattr(fd, TCSAFLUSH, &raw) != 0) return;
    saved_fd = fd;
    atexit(terminal_restore);
    static const int sigs[] = {SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], on_fatal);
}
