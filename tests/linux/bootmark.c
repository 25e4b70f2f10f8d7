/* bootmark N: records boot marker N with bellhop (a 32-bit write to port 0x80), from a
 * Linux guest's user space. Static, for the test initramfs. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/io.h>

int main(int argc, char **argv) {
    if (argc != 2 || ioperm(0x80, 4, 1) != 0) {
        perror("bootmark");
        return 1;
    }
    outl((unsigned)strtoul(argv[1], NULL, 0), 0x80);
    return 0;
}
