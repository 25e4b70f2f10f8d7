/* The host terminal in raw mode while a guest owns the console; restored on every exit
 * path (normal return, exit(), fatal signals). The same fatal signals remove a few paths (the
 * API's socket, MMDS's socket and then its directory), in the order given; a thread whose
 * seccomp role forbids unlink and rmdir must block them. */
#ifndef BELLHOP_VMM_MACHINE_TERMINAL_H
#define BELLHOP_VMM_MACHINE_TERMINAL_H

void terminal_raw(int fd);
void terminal_restore(void);
void terminal_remove_on_signal(const char *path);
void terminal_remove_dir_on_signal(const char *path);

#endif
