# The acceptance guest's program (after mkinitramfs.sh's module loading): every line the
# test checks starts with "linux-guest:".
say() { echo "linux-guest: $*"; }
bootmark 0x2 && say "modules loaded"
say "cpus $(grep -c ^processor /proc/cpuinfo)"
say "disk queues $(ls /sys/block/vda/mq 2>/dev/null | wc -l)"
if mount -t ext4 /dev/vda /mnt; then
    say "disk read: $(cat /mnt/from-host.txt)"
    echo "written by the guest at boot" > /mnt/from-guest.txt && sync
    # fio from the tools disk (tests/linux/mktoolsdisk.sh), when there is one: two jobs of
    # direct random writes, 16 in flight each, every block read back and checked.
    if [ -b /dev/vdb ] && mkdir -p /opt && mount -t squashfs -o ro /dev/vdb /opt; then
        if /opt/lib/ld.so --library-path /opt/lib /opt/bin/fio --name=verify --directory=/mnt --size=1M --bs=4k \
            --rw=randwrite --ioengine=libaio --iodepth=16 --direct=1 --numjobs=2 --thread --verify=crc32c \
            --verify_fatal=1 --output=/tmp/fio.out 2>/tmp/fio.err; then
            say "fio verified $(grep -c 'err= 0' /tmp/fio.out) jobs"
        else
            say "fio failed: $(cat /tmp/fio.err /tmp/fio.out | tail -4 | tr '\n' ' ')"
        fi
        rm -f /mnt/verify.*
        umount /opt
    fi
    umount /mnt && say "disk written"
fi
say "hwrng $(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')"
if [ -e /sys/class/net/eth0 ]; then
    ip addr add 10.0.2.2/24 dev eth0 && ip link set eth0 up
    echo "hello over virtio-net" | nc -w 10 10.0.2.1 5555 && say "net sent"
fi
if grep -q bellhop.fs /proc/cmdline; then # a host directory over virtio-fs (vhost-user, virtiofsd)
    mkdir -p /host
    if mount -t virtiofs hostdir /host; then
        say "fs read: $(cat /host/from-host.txt)"
        echo "written by the guest over virtio-fs" > /host/from-guest.txt && sync && say "fs written"
        umount /host
    fi
fi
say done
if grep -q bellhop.wait /proc/cmdline; then
    # Until Ctrl+Alt+Del, which the kernel then hands to init as SIGINT (as busybox's and
    # systemd's init have it) rather than restarting at once.
    echo 0 > /proc/sys/kernel/ctrl-alt-del
    trap 'say "ctrl-alt-del: rebooting"; sync; reboot -f' INT
    say waiting
    while :; do sleep 1; done
fi
if grep -q bellhop.shell /proc/cmdline; then
    # A shell on the console, one command a line (the snapshot test types into it after a restore).
    say "shell ready"
    while read -r line; do eval "$line"; done
fi
if grep -q bellhop.reboot /proc/cmdline; then reboot -f; else poweroff -f; fi
