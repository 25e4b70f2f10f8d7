#!/bin/bash
# Runs a bellhop command: directly when this machine's /dev/kvm works, otherwise inside the
# nested KVM host, with the build's binaries and guest images copied in.
#   scripts/run.sh build/bellhop run [ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$1; shift
dir=$(dirname "$bin")
if "$dir"/tests/kvm-probe 2>/dev/null; then
    exec "$bin" "$@"
fi
echo "(no usable /dev/kvm here: running bellhop inside the nested KVM host)" >&2
args=$(printf '%q ' "$@")
# Extra files the command needs inside (BELLHOP_RUN_FILES, space-separated), if they exist.
extra=()
for f in ${BELLHOP_RUN_FILES:-}; do [ -e "$f" ] && extra+=(--file "$f"); done
# A frozen L1 (status 126: QEMU's software SVM, see nested.sh) says nothing about bellhop: the
# command runs again in a fresh one, three times at most.
for attempt in 1 2 3; do
    scripts/nested.sh --interactive --timeout "${BELLHOP_RUN_TIMEOUT:-600}" --file "$bin" \
        --file "$dir/guest" "${extra[@]}" -- "$bin $args; s=\$?; echo \"bellhop exited with status \$s\"; exit \$s"
    status=$?
    [ $status = 126 ] && [ $attempt -lt 3 ] || exit $status
    echo "(the nested KVM host froze: running the command again in a fresh one)" >&2
done
