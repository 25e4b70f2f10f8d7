#!/bin/sh
# The kernel cache's filler held at its gate (vmm/machine/kernel_cache_filler.h): `bellhop
# kernel-cache-fill ... GATE_FD` makes nothing while the gate's write end is open (its launch's
# guest has not entered yet), and its entry once the gate closes; without a gate it starts at
# once. No KVM: the filler only decodes. POSIX sh.
suite=kernel_cache_gate
tests="the_filler_waits_for_its_gate the_filler_without_a_gate_starts_at_once"
if [ "${1:-}" = --list ]; then
    for t in $tests; do echo "$suite.$t"; done
    exit 0
fi
build=$(cd "$(dirname "$0")/../.." && pwd)
bz=$build/../build/linux/bzImage
[ -f "$bz" ] || bz=build/linux/bzImage
case $build in */asan|*/tsan|*/clang)
    for t in $tests; do echo "SKIP $suite.$t: the plain build's (unit kernel_cache runs the cache sanitized)"; done; exit 0 ;;
esac
if [ ! -f "$bz" ] || [ ! -x $build/bellhop ]; then
    for t in $tests; do echo "SKIP $suite.$t: no bzImage (make test builds build/linux)"; done; exit 0
fi
failed=0
pass() { echo "PASS $suite.$1"; }
fail() { echo "FAIL $suite.$1: $2"; failed=1; }
tmp=$(mktemp -d /tmp/bellhop-gate.XXXXXX)
trap 'exec 7>&- 2>/dev/null; rm -rf $tmp' EXIT
# entry CACHE: slot 0's entry (nokaslr) once made
entry() { ls $1/bellhop/kernels/*-0.kernel 2>/dev/null | head -1; }
# wait_entry CACHE SECONDS
wait_entry() { i=0; while [ -z "$(entry $1)" ] && [ $i -lt $(($2 * 10)) ]; do sleep 0.1; i=$((i + 1)); done; }

mkfifo $tmp/gate
XDG_CACHE_HOME=$tmp/a $build/bellhop kernel-cache-fill $bz 1048576 2097152 0 3 3< $tmp/gate > $tmp/a.out 2>&1 &
filler=$!
exec 7> $tmp/gate # the launch's end: the filler's read end opens with it
wait_entry $tmp/a 2
early=$(entry $tmp/a)
exec 7>&-
wait_entry $tmp/a 60
wait $filler
status=$?
if [ -z "$early" ] && [ -n "$(entry $tmp/a)" ] && [ $status = 0 ]; then pass the_filler_waits_for_its_gate
else fail the_filler_waits_for_its_gate "before the gate closed: '$early'; after: '$(entry $tmp/a)'; status $status: $(cat $tmp/a.out)"; fi

XDG_CACHE_HOME=$tmp/b $build/bellhop kernel-cache-fill $bz 1048576 2097152 0 > $tmp/b.out 2>&1 < /dev/null
status=$?
if [ $status = 0 ] && [ -n "$(entry $tmp/b)" ]; then pass the_filler_without_a_gate_starts_at_once
else fail the_filler_without_a_gate_starts_at_once "status $status: $(cat $tmp/b.out)"; fi
exit $failed
