#!/bin/bash
# Runs a bellhop command: directly when this machine's /dev/kvm works, otherwise inside the
# nested KVM host, with the build's binaries and guest images copied in. A stock Linux kernel
# needs hardware virtualization: on a PVM host, BELLHOP_RUN_WHERE=nested runs it nested.
#   [BELLHOP_RUN_WHERE=auto|direct|nested] scripts/run.sh build/bellhop run [ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$1; shift
dir=$(dirname "$bin")
where=${BELLHOP_RUN_WHERE:-auto}
host=$("$dir"/tests/kvm-probe 2>/dev/null) && [ "$where" != nested ] && exec "$bin" "$@"
if [ "$where" = direct ]; then
    echo "(BELLHOP_RUN_WHERE=direct, but this host's KVM is $host)" >&2
    exit 1
fi
if [ "$where" = nested ]; then
    echo "(running bellhop inside the nested KVM host, as BELLHOP_RUN_WHERE says)" >&2
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
