#!/bin/bash
# Runs a bellhop command: directly when this machine's /dev/kvm works, otherwise inside the
# nested KVM host, with the build's binaries and guest images copied in. A stock Linux kernel
# needs hardware virtualization: on a PVM host, BELLHOP_RUN_WHERE=nested runs it nested.
# Either way one line on stderr says where it runs and why.
#   [BELLHOP_RUN_WHERE=auto|direct|nested] scripts/run.sh build/bellhop run [ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$1; shift
dir=$(dirname "$bin")
where=${BELLHOP_RUN_WHERE:-auto}
# The probe is the build's (BUILD/tests/kvm-probe): beside bellhop, or above a bench or test
# binary in BUILD/bench or BUILD/tests/kvm.
build=$dir
while [ ! -x "$build/tests/kvm-probe" ] && [ "$build" != . ] && [ "$build" != / ]; do build=$(dirname "$build"); done
probe=$build/tests/kvm-probe
if [ -x "$probe" ]; then
    host=$("$probe" 2>&1); usable=$?
    [ -n "$host" ] || host="unknown: $probe said nothing (status $usable)"
else
    host="unknown: no kvm-probe in $dir or above it (make builds BUILD/tests/kvm-probe)"; usable=1
fi
if [ $usable = 0 ] && [ "$where" != nested ]; then
    echo "(running directly on this host's /dev/kvm: $host)" >&2
    exec "$bin" "$@"
fi
if [ "$where" = direct ]; then
    echo "(BELLHOP_RUN_WHERE=direct, but this host's KVM is $host)" >&2
    exit 1
fi
if [ "$where" = nested ]; then
    echo "(running bellhop inside the nested KVM host, as BELLHOP_RUN_WHERE says; this host's KVM is $host)" >&2
else
    echo "(no usable /dev/kvm here, $host: running bellhop inside the nested KVM host)" >&2
fi
args=$(printf '%q ' "$@")
# Extra files the command needs inside (BELLHOP_RUN_FILES, space-separated), if they exist.
extra=()
for f in ${BELLHOP_RUN_FILES:-}; do [ -e "$f" ] && extra+=(--file "$f"); done
# A frozen L1 (status 126: QEMU's software SVM, see nested.sh) says nothing about bellhop: the
# command runs again in a fresh one, three times at most.
[ -e "$dir/guest" ] && extra+=(--file "$dir/guest")
for attempt in 1 2 3; do
    scripts/nested.sh --interactive --timeout "${BELLHOP_RUN_TIMEOUT:-600}" --file "$bin" \
        "${extra[@]}" -- "$bin $args; s=\$?; echo \"bellhop exited with status \$s\"; exit \$s"
    status=$?
    [ $status = 126 ] && [ $attempt -lt 3 ] || exit $status
    echo "(the nested KVM host froze: running the command again in a fresh one)" >&2
done
