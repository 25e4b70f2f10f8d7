#!/bin/sh
# Runs every integration test binary in DIR/tests/kvm for each DIR given (needs a usable
# /dev/kvm). POSIX sh: it also runs under busybox inside the nested KVM host. Results from a
# sanitizer build (build/asan, build/tsan) are prefixed like the unit tests' (asan:). A
# binary that dies without reporting a failure of its own is reported as one.
# Output is streamed, not collected per binary, and each binary's wall time is printed: when
# the nested host runs out of time, its console tail then shows which test was running.
[ $# -eq 0 ] && set -- build
status=0
log=${TMPDIR:-/tmp}/run-kvm.$$.log
rcf=${TMPDIR:-/tmp}/run-kvm.$$.rc
for dir in "$@"; do
    variant=${dir#build}; variant=${variant#/}; prefix=${variant:+$variant:}
    for t in "$dir"/tests/kvm/*; do
        [ -x "$t" ] || continue
        start=$(date +%s)
        echo "running $prefix$(basename "$t")"
        { ASAN_OPTIONS=detect_leaks=0 TSAN_OPTIONS=halt_on_error=1 timeout 600 "$t" 2>&1; echo $? > "$rcf"; } |
            sed "s/^\(PASS\|FAIL\|SKIP\) /\1 $prefix/" | tee "$log"
        rc=$(cat "$rcf")
        echo "$prefix$(basename "$t"): $(( $(date +%s) - start )) s"
        if [ "$rc" -ne 0 ]; then
            status=1
            grep -q '^FAIL ' "$log" || echo "FAIL $prefix$(basename "$t"): exited with status $rc"
        fi
    done
done
rm -f "$log" "$rcf"
exit $status
