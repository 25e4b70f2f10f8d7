#!/bin/bash
# Installs, idempotently and only what is missing, what bellhop needs to build and test.
# The nested-VM kernel is downloaded and unpacked into build/cache (never installed on the host).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BELLHOP_CACHE:-build/cache}

PKGS=(gcc make clang linux-libc-dev libfdt-dev libcapstone-dev libseccomp-dev liblz4-dev libzstd-dev liblzma-dev zlib1g-dev qemu-system-x86
      busybox-static cpio xz-utils lz4 libuv1-dev liburing-dev e2fsprogs fio squashfs-tools libclang-rt-14-dev acpica-tools iproute2
      libhttp-parser-dev libjansson-dev curl help2man man-db pkg-config strace socat libslirp-dev passt libxxhash-dev)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq || true
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian cloud kernel boots both as L1 (nested KVM host) and as an L2 Linux guest.
KDIR=$CACHE/kernel
if [ ! -f "$KDIR/vmlinux" ] || [ ! -f "$KDIR/release" ]; then
    mkdir -p "$KDIR"
    ver=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    if [ -z "$ver" ]; then
        apt-get update -qq || true
        ver=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    fi
    [ -n "$ver" ] || { echo "deps: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
    echo "deps: fetching $ver"
    tmp=$(mktemp -d)
    chmod 777 "$tmp"; (cd "$tmp" && apt-get download -qq "$ver" 2>/dev/null)
    rm -rf "$KDIR/root"
    dpkg-deb -x "$tmp"/*.deb "$KDIR/root"
    rm -rf "$tmp"
    rel=$(ls "$KDIR/root/lib/modules" | head -1)
    cp "$KDIR/root/boot/vmlinuz-$rel" "$KDIR/bzImage"
    scripts/extract-vmlinux.sh "$KDIR/bzImage" > "$KDIR/vmlinux.tmp"
    mv "$KDIR/vmlinux.tmp" "$KDIR/vmlinux"
    echo "$rel" > "$KDIR/release"
fi
