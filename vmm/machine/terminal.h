/* The host terminal in raw mode while a guest owns the console; restored on every exit
 * path (normal return, exit(), fatal signals). The same fatal signals remove one path (the
 * API's socket); a thread whose seccomp role forbids unlink must block them. */
#ifndef BELLHOP_VMM_MACHINE_TERMINAL_H
#define BELLHOP_VMM_MACHINE_TERMINAL_H

void terminal_raw(int fd);
void terminal_restore(void);
void terminal_remove_on_signal(const char *path);

#endif
