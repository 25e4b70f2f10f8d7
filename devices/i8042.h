#ifndef BELLHOP_DEVICES_I8042_H
#define BELLHOP_DEVICES_I8042_H

#include "devices/device.h"

/* The PS/2 controller (ports 0x60 and 0x64) with a keyboard, for two things: the PC's reset
 * line (command 0xFE on port 0x64, or the output port's bit 0, resets the machine, which ends
 * the VM with status 0: how Linux's `reboot` gets out on x86), and Ctrl+Alt+Del pressed from
 * the host (the API's SendCtrlAltDel), which a Linux guest's keyboard driver turns into a
 * reboot or its init's ctrlaltdel action. The DSDT announces it (PNP0303, IRQ 1). */
#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64

struct i8042;
extern const struct io_ops i8042_ops;
struct i8042 *i8042_create(struct vm_env *env);
void i8042_destroy(struct i8042 *k);
/* Presses and releases Ctrl+Alt+Del (any thread). */
void i8042_ctrl_alt_del(struct i8042 *k);

#endif
