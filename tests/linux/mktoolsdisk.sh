#!/bin/bash
# Builds a read-only disk of host tools for a Linux guest: each program with every shared
# library it loads and the dynamic loader, so that the guest runs them from the disk without
# them in its initramfs (fio alone loads 64 libraries, 84 MB of them; squashfs with zstd
# makes them 30 MB, and the guest reads only what it loads):
#     mount -t squashfs /dev/vdX /opt; /opt/lib/ld.so --library-path /opt/lib /opt/bin/PROGRAM ...
#   tests/linux/mktoolsdisk.sh OUT.sqfs PROGRAM...
set -euo pipefail
out=$1; shift
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/lib"
for p in "$@"; do
    cp "$p" "$root/bin/"
    ldd "$p" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
        cp -L "$lib" "$root/lib/"
    done
done
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib/ld.so"
rm -f "$out" && mksquashfs "$root" "$out" -comp zstd -noappend -quiet -all-root >/dev/null
