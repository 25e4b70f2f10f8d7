#!/bin/sh
# Runs every integration test binary in $1/tests/kvm (needs a usable /dev/kvm). POSIX sh:
# it also runs under busybox inside the nested KVM host. A binary that dies without
# reporting a failure of its own is reported as one.
dir=${1:-build}
status=0
for t in "$dir"/tests/kvm/*; do
    [ -x "$t" ] || continue
    out=$(timeout 300 "$t" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    if [ $rc -ne 0 ]; then
        status=1
        printf '%s\n' "$out" | grep -q '^FAIL ' || echo "FAIL $(basename "$t"): exited with status $rc"
    fi
done
exit $status
