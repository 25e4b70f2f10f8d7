/* `bellhop launch-floor`: the launch bench's yardstick, the bare KVM calls of a launch on one
 * thread (launch_floor.c). */
#ifndef BELLHOP_BENCH_LAUNCH_FLOOR_H
#define BELLHOP_BENCH_LAUNCH_FLOOR_H

int launch_floor_main(int argc, char **argv);

#endif
