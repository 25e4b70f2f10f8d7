#!/bin/sh
# Runs every integration test binary in DIR/tests/kvm for each DIR given (needs a usable
# /dev/kvm). POSIX sh: it also runs under busybox inside the nested KVM host. Results from a
# sanitizer build (build/asan, build/tsan) are prefixed like the unit tests' (asan:). A
# binary that dies without reporting a failure of its own is reported as one.
[ $# -eq 0 ] && set -- build
status=0
for dir in "$@"; do
    variant=${dir#build}; variant=${variant#/}; prefix=${variant:+$variant:}
    for t in "$dir"/tests/kvm/*; do
        [ -x "$t" ] || continue
        out=$(ASAN_OPTIONS=detect_leaks=0 TSAN_OPTIONS=halt_on_error=1 timeout 600 "$t" 2>&1)
        rc=$?
        printf '%s\n' "$out" | sed "s/^\(PASS\|FAIL\|SKIP\) /\1 $prefix/"
        if [ $rc -ne 0 ]; then
            status=1
            printf '%s\n' "$out" | grep -q '^FAIL ' || echo "FAIL $prefix$(basename "$t"): exited with status $rc"
        fi
    done
done
exit $status
