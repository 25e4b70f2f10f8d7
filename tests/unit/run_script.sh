#!/bin/sh
# scripts/run.sh decides where a binary runs from its build's kvm-probe, found beside the
# binary or above it (bench binaries live in BUILD/bench), and says where and why. Fake
# probes stand in for the host's kinds, so no KVM is needed and nothing boots.
suite=run_script
tests="a_bench_binary_runs_directly_where_its_builds_probe_says_kvm_works
       a_host_without_kvm_is_named_with_the_probes_reason
       a_missing_probe_is_named"
if [ "${1:-}" = --list ]; then
    for t in $tests; do echo "$suite.$t"; done
    exit 0
fi
repo=$(cd "$(dirname "$0")" && pwd) # BUILD/tests/unit, BUILD being build or build/asan...
while [ ! -x "$repo/scripts/run.sh" ] && [ "$repo" != / ]; do repo=$(dirname "$repo"); done
pass() { echo "PASS $suite.$1"; }
fail() { echo "FAIL $suite.$1: $2"; failed=1; }
failed=0
tmp=$(mktemp -d /tmp/bellhop-run-script.XXXXXX)
trap 'rm -rf $tmp' EXIT
mkdir -p "$tmp/build/tests" "$tmp/build/bench"
printf '#!/bin/sh\necho "ran directly: $*"\n' > "$tmp/build/bench/a_bench"
chmod +x "$tmp/build/bench/a_bench"
probe() { # KIND REASON STATUS: the build's probe, as the real one prints
    printf '#!/bin/sh\necho "%s: %s"\nexit %s\n' "$1" "$2" "$3" > "$tmp/build/tests/kvm-probe"
    chmod +x "$tmp/build/tests/kvm-probe"
}

probe pvm "fake PVM host" 0
out=$("$repo/scripts/run.sh" "$tmp/build/bench/a_bench" one two 2>&1)
case $out in
    *"running directly on this host's /dev/kvm: pvm: fake PVM host"*"ran directly: one two"*)
        pass a_bench_binary_runs_directly_where_its_builds_probe_says_kvm_works ;;
    *) fail a_bench_binary_runs_directly_where_its_builds_probe_says_kvm_works "$out" ;;
esac

probe none "fake: no /dev/kvm" 1
out=$(BELLHOP_RUN_WHERE=direct "$repo/scripts/run.sh" "$tmp/build/bench/a_bench" 2>&1); rc=$?
case $rc:$out in
    "1:(BELLHOP_RUN_WHERE=direct, but this host's KVM is none: fake: no /dev/kvm)")
        pass a_host_without_kvm_is_named_with_the_probes_reason ;;
    *) fail a_host_without_kvm_is_named_with_the_probes_reason "status $rc: $out" ;;
esac

rm "$tmp/build/tests/kvm-probe"
out=$(BELLHOP_RUN_WHERE=direct "$repo/scripts/run.sh" "$tmp/build/bench/a_bench" 2>&1); rc=$?
case $rc:$out in
    "1:(BELLHOP_RUN_WHERE=direct, but this host's KVM is unknown: no kvm-probe in $tmp/build/bench or above it"*)
        pass a_missing_probe_is_named ;;
    *) fail a_missing_probe_is_named "status $rc: $out" ;;
esac
exit $failed
