/* The host terminal in raw mode while a guest owns the console; restored on every exit
 * path (normal return, exit(), fatal signals). */
#ifndef BELLHOP_VMM_TERMINAL_H
#define BELLHOP_VMM_TERMINAL_H

void terminal_raw(int fd);
void terminal_restore(void);

#endif
