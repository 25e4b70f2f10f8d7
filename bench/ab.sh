#!/bin/bash
# A/B of bellhop binaries in one KVM host (nested when /dev/kvm is missing): costs vary
# between nested boots, so a change is only judged against its baseline in the same boot.
# Alternates the binaries (named a, b, c... in the output) ROUNDS times, each running
# `bellhop bench --only PARTS`.
#   [BELLHOP_RUN_WHERE=nested] bench/ab.sh [--rounds N] [--only PARTS] BELLHOP_A [BELLHOP_B...]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 only=traps
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        -*) echo "ab: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "usage: bench/ab.sh [--rounds N] [--only PARTS] BELLHOP_A [BELLHOP_B...]" >&2; exit 2; }
work=build/ab
rm -rf "$work" && mkdir -p "$work"
names=()
for bin in "$@"; do
    name=$(printf "\\$(printf %o $((97 + ${#names[@]})))")
    cp "$bin" "$work/$name"
    names+=("$name")
done
cmd="for i in \$(seq $rounds); do for x in ${names[*]}; do echo \"== \$x round \$i\"; $work/\$x bench --only $only; done; done"
if [ "${BELLHOP_RUN_WHERE:-auto}" != nested ] && build/tests/kvm-probe >/dev/null 2>&1; then
    exec bash -c "$cmd"
fi
files=(--file "$work" --file build/guest --file build/tests/kvm-probe)
for f in /usr/bin/qemu-system-x86_64 /usr/share/qemu/qboot.rom /usr/share/qemu/bios-microvm.bin \
         /usr/share/qemu/pvh.bin /usr/share/qemu/linuxboot_dma.bin build/linux; do
    [ -e "$f" ] && files+=(--file "$f")
done
exec scripts/nested.sh --timeout "${BELLHOP_RUN_TIMEOUT:-1800}" "${files[@]}" -- "$cmd"
