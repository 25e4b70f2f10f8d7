# The acceptance guest's program (after mkinitramfs.sh's module loading): every line the
# test checks starts with "linux-guest:".
say() { echo "linux-guest: $*"; }
# The tools disk (tests/linux/mktoolsdisk.sh) at /opt: /dev/vdb beside the root disk, or the
# only disk; tool PROGRAM ARGS runs a program from it with its own libraries.
tools_at_opt=
mount_tools() {
    [ -n "$tools_at_opt" ] && return 0
    mkdir -p /opt
    for d in /dev/vdb /dev/vda; do
        [ -b $d ] && mount -t squashfs -o ro $d /opt 2>/dev/null && tools_at_opt=$d && return 0
    done
    return 1
}
tool() { p=$1; shift; /opt/lib/ld.so --library-path /opt/lib /opt/bin/$p "$@"; }
bootmark 0x2 && say "modules loaded"
say "cpus $(grep -c ^processor /proc/cpuinfo)"
say "disk queues $(ls /sys/block/vda/mq 2>/dev/null | wc -l)"
if mount -t ext4 /dev/vda /mnt; then
    say "disk read: $(cat /mnt/from-host.txt)"
    echo "written by the guest at boot" > /mnt/from-guest.txt && sync
    # fio from the tools disk (tests/linux/mktoolsdisk.sh), when there is one: two jobs of
    # direct random writes, 16 in flight each, every block read back and checked (not in the
    # vsock boot, which brings the disk for socat).
    if [ -b /dev/vdb ] && ! grep -qw bellhop.vsock /proc/cmdline && mount_tools; then
        if tool fio --name=verify --directory=/mnt --size=1M --bs=4k \
            --rw=randwrite --ioengine=libaio --iodepth=16 --direct=1 --numjobs=2 --thread --verify=crc32c \
            --verify_fatal=1 --output=/tmp/fio.out 2>/tmp/fio.err; then
            say "fio verified $(grep -c 'err= 0' /tmp/fio.out) jobs"
        else
            say "fio failed: $(cat /tmp/fio.err /tmp/fio.out | tail -4 | tr '\n' ' ')"
        fi
        rm -f /mnt/verify.*
        umount /opt && tools_at_opt=
    fi
    # RAM above the 32-bit hole (a boot with more than 3 GiB): the kernel's map of it, and 4 MiB
    # through the disk and back, with the page cache dropped between (the kernel allocates
    # from the zone above 4 GiB first, so the disk's DMA lands there)
    if grep -qw bellhop.highram /proc/cmdline; then
        say "ram $(grep 'System RAM' /proc/iomem | tr -d ' ' | tr '\n' ' ')"
        say "zone Normal $(awk '/zone +Normal/ { z = 1 } z && /present/ { print $2; exit }' /proc/zoneinfo) pages"
        dd if=/dev/urandom of=/tmp/high bs=1M count=4 2>/dev/null && cp /tmp/high /mnt/high && sync &&
            echo 3 > /proc/sys/vm/drop_caches &&
            [ "$(md5sum < /mnt/high)" = "$(md5sum < /tmp/high)" ] && say "high ram disk round trip ok"
        rm -f /mnt/high /tmp/high
    fi
    umount /mnt && say "disk written"
fi
say "hwrng $(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')"
# eth0 up with an address by DHCP, from a user-mode network (bellhop's, passt, QEMU's)
dhcp_up() {
    printf '#!/bin/sh\n[ "$1" = bound ] && ip addr add $ip/$mask dev $interface && ip route add default via $router\nexit 0\n' \
        > /tmp/dhcp.sh && chmod +x /tmp/dhcp.sh
    ip link set eth0 up
    udhcpc -i eth0 -n -q -t 5 -T 2 -s /tmp/dhcp.sh >/dev/null 2>&1 &&
        say "dhcp $(ip -4 addr show eth0 | awk '/inet / { print $2 }') via $(ip route | awk '/default/ { print $3 }')"
}
if [ -e /sys/class/net/eth0 ] && grep -qw bellhop.usernet /proc/cmdline; then
    # User-mode networking (slirp's or passt's): an address by DHCP, the host's loopback
    # through the gateway, and a server of ours the host reaches through its forwarded port
    dhcp_up
    port=$(sed -n 's/.*bellhop.usernet=\([0-9]*\).*/\1/p' /proc/cmdline)
    gw=$(ip route | awk '/default/ { print $3 }')
    echo "hello through the gateway" | nc -w 10 ${gw:-10.0.2.2} $port && say "user net sent"
    if grep -qw bellhop.mmds /proc/cmdline; then
        # Firecracker's metadata service, version 1: a plain GET (raw over nc: the static
        # busybox's wget crashes in glibc's resolver), the route to its link-local address on
        # eth0 as Firecracker's guides have it
        ip route add 169.254.169.254 dev eth0
        printf 'GET /latest/meta-data/ami-id HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n' |
            nc -w 10 169.254.169.254 80 > /tmp/mmds 2>&1
        say "mmds v1 got: $(tail -1 /tmp/mmds)"
    fi
    say "user net listening"
    nc -l -p 5556 -w 30 > /tmp/fwd 2>/dev/null && say "hostfwd got: $(cat /tmp/fwd)"
elif [ -e /sys/class/net/eth0 ] && grep -qw bellhop.dhcp /proc/cmdline; then
    dhcp_up # only that: bench/net_bench's servers come later (bellhop.vsockbench)
elif [ -e /sys/class/net/eth0 ]; then
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
if grep -qw bellhop.vsock /proc/cmdline; then # virtio-vsock and the balloon (the API boot)
    if mount_tools; then
        # an echo for the host's connection, and a line to the host's listener (uds_path_5000),
        # there before the guest started
        tool socat VSOCK-LISTEN:5001,fork EXEC:cat &
        echo "hello from the guest over vsock" | tool socat - VSOCK-CONNECT:2:5000 && say "vsock sent"
    fi
    # Memory the host then holds for the guest (bellhop's resident set), free again in the
    # guest, for the balloon to take back.
    mkdir -p /fill && mount -t tmpfs -o size=256m fill /fill && dd if=/dev/zero of=/fill/f bs=1M count=200 2>/dev/null &&
        rm /fill/f && umount /fill && say "memory touched: 200 MiB"
fi
if grep -qw bellhop.vsockbench /proc/cmdline && mount_tools; then
    # bench/vsock_bench: the same three servers on vsock and TCP: a sink, a 64 MiB source, an echo
    for a in VSOCK-LISTEN TCP-LISTEN; do
        o=; [ $a = TCP-LISTEN ] && o=,nodelay
        tool socat -u $a:5101,fork$o OPEN:/dev/null &
        tool socat -U $a:5102,fork$o OPEN:/dev/zero,readbytes=67108864 &
        tool socat $a:5103,fork$o PIPE &
    done
    say "bench ready in $(cut -d' ' -f1 /proc/uptime) s"
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
