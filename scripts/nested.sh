#!/bin/bash
# Runs a command inside a nested KVM host: QEMU software emulation with AMD SVM exposed (L1),
# booting Debian's kernel with kvm/kvm-amd loaded, so that /dev/kvm exists inside even though
# this machine has none. The command's output comes back over the serial console.
#
# usage: scripts/nested.sh [--timeout SECONDS] [--interactive] [--file PATH]... -- COMMAND...
#   COMMAND is a shell command line (words joined by spaces). PATH (repo-relative files or directories) are copied to the same relative path under the
#   command's working directory, with the shared libraries their ELF binaries need.
# Exit status: the command's, 124 on timeout (console tail printed), 125 if L1 broke down,
# 126 if L1 froze: its heartbeat (a line every second on its second serial port) stopped for
# FREEZE seconds (BELLHOP_NESTED_FREEZE, default 60), nudges notwithstanding. Under heavy nested
# traffic, QEMU's software SVM leaves a timer interrupt in L1's APIC IRR without raising it to
# the CPU (seen: vector 0xec in the IRR, IF set, L1 polling in its idle loop or the CPU in L2),
# and L1 stops until some other interrupt comes. So a heartbeat silent for 2 s is answered
# with a byte on that serial port, whose interrupt makes QEMU look at the IRR again: in 5 runs
# of TSan's bellhop_run that ended 22 stalls, each after one nudge, where before some stalls
# outlasted 60 s. A silence past the nudges is a freeze, and only a fresh L1 gets past that,
# so callers can tell it from a test that hangs. L1 idles with idle=poll, never halting.
set -euo pipefail
trap 'echo "nested: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD
CACHE=${BELLHOP_CACHE:-build/cache}
KDIR=$CACHE/kernel
timeout_s=600
freeze_s=${BELLHOP_NESTED_FREEZE:-60}
interactive=0
files=()
while [ $# -gt 0 ]; do
    case $1 in
        --timeout) timeout_s=$2; shift 2 ;;
        --interactive) interactive=1; shift ;;
        --file) files+=("$2"); shift 2 ;;
        --) shift; break ;;
        *) echo "nested: unknown option $1" >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "nested: no command" >&2; exit 2; }
[ -f "$KDIR/vmlinux" ] || { echo "nested: no kernel in $KDIR (run scripts/deps.sh)" >&2; exit 125; }
rel=$(cat "$KDIR/release")
mods=$KDIR/root/lib/modules/$rel/kernel

work=$(mktemp -d "${TMPDIR:-/tmp}/bellhop-nested.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,lib/kvm,bellhop}
cp /bin/busybox "$root/bin/busybox"
for m in virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-amd.ko; do
    cp "$mods/$m" "$root/lib/kvm/"
done
# tap devices for virtio-net tests (optional: without it those tests skip)
if [ -f "$mods/drivers/net/tun.ko" ]; then cp "$mods/drivers/net/tun.ko" "$root/lib/"; fi

copy_libs() { # the dynamic loader and libraries an ELF needs, at their host paths
    local lib
    # static ELFs and non-ELF files need nothing (ldd fails on them)
    for lib in $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*' || true); do
        [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
    done
    return 0
}
# Libraries bellhop opens itself (dlopen), at their host paths, with what they need (bellhop
# being static, nothing else brings the C library).
for lib in /usr/lib/x86_64-linux-gnu/libcapstone.so.4 /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2; do
    [ -e "$lib" ] && { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; copy_libs "$lib"; }
done
for f in "${files[@]}"; do
    mkdir -p "$root/bellhop/$(dirname "$f")"
    cp -a "$f" "$root/bellhop/$(dirname "$f")/"
    if [ -d "$f" ]; then
        find "$f" -type f | while read -r x; do copy_libs "$x"; done
    else
        copy_libs "$f"
    fi
done

printf '%s\n' "$*" > "$root/bellhop/.command"
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
# Root on a tmpfs rather than the initramfs (rootfs), where pivot_root fails: programs that
# sandbox themselves with it (passt) could not start here. On any failure, stay on rootfs.
if [ -z "$BELLHOP_TMPFS_ROOT" ] && mkdir /newroot && mount -t tmpfs -o mode=755 root /newroot; then
    for d in /*; do case $d in /newroot|/proc|/sys|/dev) ;; *) cp -a $d /newroot/ ;; esac; done
    mkdir -p /newroot/proc /newroot/sys /newroot/dev
    export BELLHOP_TMPFS_ROOT=1
    exec switch_root /newroot /init
fi
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm; mount -t tmpfs tmp /tmp; mount -t tmpfs shm /dev/shm
for m in irqbypass kvm kvm-amd; do
    insmod /lib/kvm/$m.ko || echo "BELLHOP-NESTED-BROKEN insmod $m"
done
[ -c /dev/kvm ] || echo "BELLHOP-NESTED-BROKEN no /dev/kvm"
[ -f /lib/tun.ko ] && insmod /lib/tun.ko 2>/dev/null
cd /bellhop
export PATH=/bin:/sbin HOME=/tmp BELLHOP_NESTED=1
stty -onlcr 2>/dev/null
(while :; do echo; sleep 1; done > /dev/ttyS1 2>/dev/null) &
sh -c "$(cat .command)"
echo "BELLHOP-NESTED-EXIT $?"
sync
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) > "$work/initrd.cpio"

qemu=(qemu-system-x86_64 -machine q35 -accel tcg -cpu qemu64,+svm,+npt -m 2048 -smp 1
      -nodefaults -display none -no-reboot
      -kernel "$KDIR/vmlinux" -initrd "$work/initrd.cpio"
      -append "console=ttyS0 quiet panic=-1 loglevel=3 idle=poll")
# QEMU's human monitor, on a unix socket (at BELLHOP_NESTED_MONITOR when set, to look at L1
# by hand): when L1 freezes, its CPU and APIC state go into the report.
monitor=${BELLHOP_NESTED_MONITOR:-$work/monitor}
qemu+=(-monitor "unix:$monitor,server,nowait")
monitor_ask() { # prints QEMU's answer to one monitor command (needs python3)
    command -v python3 > /dev/null || return 0
    python3 - "$monitor" "$1" <<'PY' 2>/dev/null || true
import re, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(1)
def drain():
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except socket.timeout:
        pass
    return out.decode(errors="replace")
drain()
s.sendall((sys.argv[2] + "\n").encode())
time.sleep(0.5)
print(re.sub(r"\x1b\[[0-9]*[A-Za-z]", "", drain()).split("\n", 1)[-1])
PY
}
log=$work/console.log
heartbeat=$work/heartbeat
: > "$heartbeat"
# L1's second serial port is a pair of FIFOs: its output is the heartbeat, and a byte written
# to its input (a nudge: see the top) raises an interrupt in L1.
mkfifo "$work/hb.in" "$work/hb.out"
cat "$work/hb.out" > "$heartbeat" &
hb_reader=$!
watch_heartbeat() { # ends QEMU (and says so in $work/froze) once L1 has beaten and then stops
    local last=0 size stale=0 nudged=0
    while sleep 1; do
        size=$(stat -c %s "$heartbeat")
        if [ "$size" -gt 0 ] && [ "$size" = "$last" ]; then
            stale=$((stale + 1))
        else
            [ $nudged -gt 0 ] && echo "$stale" >> "$work/nudged"
            stale=0 nudged=0
        fi
        last=$size
        if [ "$stale" -ge 2 ] && [ "$stale" -lt "$freeze_s" ]; then
            printf . > "$work/hb.in" && nudged=$((nudged + 1))
        fi
        if [ "$stale" -ge "$freeze_s" ]; then
            { monitor_ask "info registers" | grep -E '^(RIP|RAX|CR0)' || true
              monitor_ask "info lapic" | grep -E '^(IRR|ISR|Timer|APR)' || true; } > "$work/froze"
            pkill -f -- "$work/initrd.cpio" || true
            return
        fi
    done
}
if [ $interactive = 1 ] && [ -t 0 ]; then
    qemu+=(-chardev stdio,id=s0,signal=on -serial chardev:s0 -chardev "pipe,id=hb,path=$work/hb" -serial chardev:hb)
    watch_heartbeat & watcher=$!
    set +e
    timeout --foreground "$timeout_s" "${qemu[@]}" | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
else
    qemu+=(-serial stdio -chardev "pipe,id=hb,path=$work/hb" -serial chardev:hb)
    watch_heartbeat & watcher=$!
    set +e
    timeout "$timeout_s" "${qemu[@]}" < /dev/null 2>&1 | sed -u 's/\r//g' | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
fi
kill "$watcher" "$hb_reader" 2>/dev/null || true; wait "$watcher" "$hb_reader" 2>/dev/null || true
[ -f "$work/nudged" ] && awk '{n++; if ($1 > m) m = $1} END {
    printf "nested: L1 stalled %d times (the longest %d s); a nudge ended each\n", n, m}' "$work/nudged" >&2
tr -d '\r' < "$log" > "$log.clean"
if [ -f "$work/froze" ]; then
    echo "nested: the nested KVM host froze (no heartbeat for ${freeze_s}s); its CPU and APIC, then its last console lines:" >&2
    sed 's/^/    | /' "$work/froze" >&2
    tail -n 30 "$log.clean" | sed 's/^/    | /' >&2
    exit 126
fi
if grep -q '^BELLHOP-NESTED-BROKEN' "$log.clean"; then
    echo "nested: the nested KVM host is broken: $(grep '^BELLHOP-NESTED-BROKEN' "$log.clean" | head -1)" >&2
    exit 125
fi
status=$(grep -a '^BELLHOP-NESTED-EXIT ' "$log.clean" | tail -1 | awk '{print $2}' || true)
if [ -n "$status" ]; then
    exit "$status"
fi
if [ "$rc" = 124 ]; then
    echo "nested: timed out after ${timeout_s}s; last console lines:" >&2
    tail -n 30 "$log.clean" | sed 's/^/    | /' >&2
    exit 124
fi
echo "nested: the VM ended (qemu status $rc) before the command finished; last console lines:" >&2
tail -n 30 "$log.clean" | sed 's/^/    | /' >&2
exit 125
