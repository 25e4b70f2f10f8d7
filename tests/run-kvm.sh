#!/bin/sh
# Runs integration test binaries on a usable /dev/kvm: every binary in DIR/tests/kvm for each
# DIR given, or the binaries named (BINARY@TEST: that binary from TEST on). POSIX sh: it also
# runs under busybox inside the nested KVM host. Results from a sanitizer build (build/asan,
# build/tsan) are prefixed like the unit tests' (asan:). A binary that dies without reporting a
# failure of its own is reported as one. Output is streamed, and each binary's ends with
# "run-kvm: done BINARY in N s": a caller whose nested host froze knows which binaries
# finished, and the console tail shows what was running.
[ $# -eq 0 ] && set -- build
status=0
log=${TMPDIR:-/tmp}/run-kvm.$$.log
rcf=${TMPDIR:-/tmp}/run-kvm.$$.rc

run_binary() { # BINARY, or BINARY@TEST: that binary from TEST on (--from)
    t=${1%@*} from=
    [ "$t" = "$1" ] || from=${1#*@}
    dir=${t%/tests/kvm/*}; variant=${dir#build}; variant=${variant#/}; prefix=${variant:+$variant:}
    start=$(date +%s)
    echo "running $t"
    # a read loop, not sed: sed would hold the lines back in its buffer until the binary ends
    { ASAN_OPTIONS=detect_leaks=0 TSAN_OPTIONS=halt_on_error=1 timeout 900 "$t" ${from:+--from "$from"} 2>&1; echo $? > "$rcf"; } |
        while IFS= read -r line; do
            case $line in
                PASS\ *|FAIL\ *|SKIP\ *) line="${line%% *} $prefix${line#* }" ;;
            esac
            printf '%s\n' "$line"
        done | tee "$log"
    rc=$(cat "$rcf")
    if [ "$rc" -ne 0 ]; then
        status=1
        grep -q '^FAIL ' "$log" || echo "FAIL $prefix$(basename "$t"): exited with status $rc"
    fi
    echo "run-kvm: done $t in $(( $(date +%s) - start )) s"
}

for arg in "$@"; do
    if [ -d "$arg" ]; then
        for t in "$arg"/tests/kvm/*; do
            [ -x "$t" ] && run_binary "$t"
        done
    else
        run_binary "$arg"
    fi
done
rm -f "$log" "$rcf"
exit $status
