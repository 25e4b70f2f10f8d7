#!/bin/bash
# Builds an uncompressed initramfs for a Linux guest: busybox, the Debian kernel's virtio
# modules (insmod'ed in dependency order by /init once it has said it started), extra files,
# and an init script.
#   tests/linux/mkinitramfs.sh OUT.cpio INIT-SCRIPT [FILE...]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1 init=$2; shift 2
rel=$(cat build/cache/kernel/release)
mods=build/cache/kernel/root/lib/modules/$rel/kernel
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,mnt,lib/modules,etc}
cp /bin/busybox "$root/bin/busybox"
# Dependency order (modules.dep is not in the package: depmod makes it at install time).
order="drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko
       drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci_modern_dev.ko
       drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko
       drivers/char/hw_random/virtio-rng.ko drivers/char/virtio_console.ko
       net/core/failover.ko drivers/net/net_failover.ko drivers/net/virtio_net.ko
       fs/fuse/fuse.ko fs/fuse/virtiofs.ko fs/squashfs/squashfs.ko
       net/vmw_vsock/vsock.ko net/vmw_vsock/vmw_vsock_virtio_transport_common.ko
       net/vmw_vsock/vmw_vsock_virtio_transport.ko drivers/virtio/virtio_balloon.ko"
: > "$root/lib/modules/order"
for m in $order; do
    cp "$mods/$m" "$root/lib/modules/"
    basename "$m" >> "$root/lib/modules/order"
done
for f in "$@"; do cp "$f" "$root/bin/"; done
{
    echo '#!/bin/busybox sh'
    # Boot to init ends here: init's first act (marker 0x1 for bellhop --boot-markers, the
    # line for any VMM's console), before the module loading below.
    echo '[ -x /bin/bootmark ] && /bin/bootmark 0x1; echo "linux-guest: init started"'
    echo '/bin/busybox --install -s /bin'
    echo 'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev'
    echo 'for m in $(cat /lib/modules/order); do insmod /lib/modules/$m || echo "insmod $m failed"; done'
    cat "$init"
} > "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) > "$out"
