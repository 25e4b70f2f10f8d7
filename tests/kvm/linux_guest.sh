#!/bin/sh
# Debian's cloud kernel (bzImage, 64-bit boot protocol) boots on bellhop to user space with
# virtio-pci devices and 2 CPUs: an ext4 disk read and written (checked in the image
# afterwards), the hardware RNG, virtio-net to the host end of a tap, then poweroff; and a
# second boot ends with reboot. bellhop unpacks the kernel itself, randomized (KASLR), but
# for the reboot, which the kernel's own decompressor unpacks, and the INTx boot (nokaslr).
# Inputs come from `make test` (build/linux/). POSIX sh.
suite=linux_guest
# --list: what tests/run.sh expects a result from (a result not listed here is a failure too)
tests="boots_to_user_space poweroff_ends_the_vm_with_0 boot_markers_timed
       guest_entry_timed_before_the_markers setup_phases_add_up_to_the_entry exits_to_marker_1_at_most_3000
       exits_to_marker_2_at_most_3000 two_cpus ext4_disk_read_and_written
       the_guests_file_is_in_the_image a_disk_queue_per_cpu fio_writes_and_verifies_through_io_uring
       hwrng_gives_bytes virtio_net_reaches_the_tap
       kernel_unpacked_by_bellhop_with_kaslr reboot_ends_the_vm_with_0
       the_kernels_own_decompressor_boots_it intx_fallback_without_msi ram_above_4_gib_is_the_guests
       the_disk_reads_and_writes_ram_above_4_gib nokaslr_leaves_it_in_place user_net_gives_an_address_by_dhcp
       user_net_reaches_the_hosts_loopback user_net_forwards_a_host_port mmds_v1_answers_a_plain_get_over_user_net
       passt_gives_an_address_by_dhcp passt_reaches_the_hosts_loopback passt_forwards_a_host_port
       pvh_vmlinux_boots api_boots_linux_to_its_init vsock_host_connects_to_a_guest_listener
       vsock_guest_connects_to_a_host_listener balloon_statistics_come_from_linux
       balloon_gives_guest_memory_back_to_the_host send_ctrl_alt_del_shuts_it_down
       mmds_v2_gives_a_token_and_the_data_for_it mmds_v2_answers_401_without_a_token mmds_patch_is_seen_by_the_next_get
       mmds_answers_json_when_asked
       a_snapshot_after_init_restores_in_a_new_vmm restored_shell_goes_on restored_disk_writes_land_in_the_image
       restored_tcp_over_virtio_net a_rebased_diff_holds_a_file_written_between_the_snapshots
       virtiofs_reads_a_file_the_host_wrote virtiofs_writes_a_file_the_host_reads"
if [ "${1:-}" = --list ]; then
    for t in $tests; do echo "$suite.$t"; done
    exit 0
fi
# --from NAME: report NAME and the tests after it only (the boots all run: each gives several)
before=
if [ "${1:-}" = --from ] && [ -n "${2:-}" ]; then
    for t in $tests; do [ "$t" = "$2" ] && break; before="$before $t"; done
fi
reported() { case " $before " in *" $1 "*) return 1 ;; esac; }
pass() { reported "$1" && echo "PASS $suite.$1"; return 0; }
fail() { reported "$1" && echo "FAIL $suite.$1: $2" && failed=1; return 0; }
skip() { reported "$1" && echo "SKIP $suite.$1: $2"; return 0; }
failed=0
L=build/linux
bellhop=$(dirname "$0")/../../bellhop
if [ ! -f $L/bzImage ] || [ ! -f $L/initrd.cpio ] || [ ! -f $L/disk.img ]; then
    for t in $tests; do skip $t "no $L files (make test builds them)"; done
    exit 0
fi
debugfs=$(command -v debugfs || true)
[ -z "$debugfs" ] && [ -x /bellhop/usr/sbin/debugfs ] && debugfs=/bellhop/usr/sbin/debugfs
[ -z "$debugfs" ] && [ -x /usr/sbin/debugfs ] && debugfs=/usr/sbin/debugfs
disk=/tmp/bellhop-linux-disk.img
cp $L/disk.img $disk
# Sanitizer builds boot Linux twice (MSI and INTx: every thread and interrupt path); the loaders'
# other ways in (the kernel's own decompressor, PVH), the API and the out-of-process devices
# boot in the plain build, to keep make test short.
case $bellhop in */asan/*|*/tsan/*) sanitized=1 ;; *) sanitized= ;; esac
# wait_sock PATH: until a socket is there (10 s at most)
wait_sock() { i=0; while [ ! -S $1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done; }
# wait_out TEXT TENTHS: until $out has TEXT, while bellhop ($vmm) lives, TENTHS/10 s at most
wait_out() { i=0; while ! grep -q "$1" $out && [ $i -lt $2 ] && kill -0 $vmm 2>/dev/null; do sleep 0.1; i=$((i + 1)); done; }
# wait_end TENTHS: until bellhop ($vmm) has ended, TENTHS/10 s at most
wait_end() { i=0; while kill -0 $vmm 2>/dev/null && [ $i -lt $1 ]; do sleep 0.1; i=$((i + 1)); done; }

# The host end of the network: a tap with 10.0.2.1 and a listener, in a network namespace of
# this test's own (removed at the end with everything in it), where bellhop runs too: no
# interface or address of the machine itself is touched.
net="" in_ns=""
tap=bhtap0 ns=bellhop-linux-guest-$$
ipcmd=$(command -v ip || true)
[ -x /bellhop/usr/bin/ip ] && ipcmd=/bellhop/usr/bin/ip # iproute2 inside the nested host
mkdir -p /run/netns 2>/dev/null # iproute2 keeps its namespaces there (absent in the nested host)
if [ -n "$ipcmd" ] && $ipcmd netns add $ns 2>/dev/null; then
    in_ns="$ipcmd netns exec $ns"
    if $in_ns $ipcmd link set lo up && $in_ns $ipcmd tuntap add $tap mode tap &&
       $in_ns $ipcmd addr add 10.0.2.1/24 dev $tap && $in_ns $ipcmd link set $tap up; then
        net="--net tap=$tap"
        ($in_ns nc -l -p 5555 > /tmp/bellhop-net.out 2>/dev/null || $in_ns nc -l 5555 > /tmp/bellhop-net.out 2>/dev/null) &
        listener=$!
    fi
fi

out=/tmp/bellhop-linux.out
# The root disk through io_uring (the default takes the synchronous path for a file in tmpfs,
# as the nested host's are), and fio's on a second, read-only disk.
tools= # (fio in the plain build only: a sanitizer's run of it checks nothing more of bellhop)
[ -f $L/tools.sqfs ] && [ -z "$sanitized" ] && tools="--disk $L/tools.sqfs,ro"
$in_ns $bellhop run --kernel $L/bzImage --initrd $L/initrd.cpio --mem 512M --cpus 2 \
    --disk $disk,async $tools --rng $net --boot-markers --cmdline "console=ttyS0 quiet" > $out 2>&1 < /dev/null
status=$?
if grep -q "linux-guest: done" $out; then pass boots_to_user_space
else fail boots_to_user_space "no 'linux-guest: done' (status $status): $(tail -5 $out | tr '\n' '|')"; fi
[ $status -eq 0 ] && grep -q "reboot: Power down" $out && pass poweroff_ends_the_vm_with_0 ||
    fail poweroff_ends_the_vm_with_0 "status $status"
# init's first act is marker 0x1 (boot to init); marker 0x2 follows its module loading.
grep -q -E "bellhop: boot marker 0x1 at [0-9]+\.[0-9]{3} ms" $out && grep -q "linux-guest: init started" $out &&
    grep -q -E "bellhop: boot marker 0x2 at [0-9]+\.[0-9]{3} ms" $out && pass boot_markers_timed ||
    fail boot_markers_timed "$(grep -i -e marker -e 'init started' $out | tr '\n' '|')"
# The VMM's own setup: when the boot CPU first entered the guest, before any marker.
entered=$(sed -n 's/^bellhop: guest entered at \([0-9.]*\) ms (setup, ms: .*)$/\1/p' $out)
first=$(sed -n 's/.*bellhop: boot marker 0x1 at \([0-9.]*\) ms.*/\1/p' $out)
echo "    guest entered at $entered ms, marker 0x1 at $first ms"
[ -n "$entered" ] && [ -n "$first" ] && awk -v e="$entered" -v f="$first" 'BEGIN { exit !(e > 0 && e < f) }' &&
    pass guest_entry_timed_before_the_markers ||
    fail guest_entry_timed_before_the_markers "$(grep -e 'guest entered' -e 'marker 0x1' $out | tr '\n' '|')"
# ... and where that setup went: every phase, in order, adding up to the time of entry.
phases=$(sed -n 's/^bellhop: guest entered at [0-9.]* ms (setup, ms: \(.*\))$/\1/p' $out)
echo "    setup: $phases"
names=$(echo "$phases" | sed 's/ [0-9][0-9.]*//g')
sum=$(echo "$phases" | tr ',' '\n' | awk '{ s += $NF } END { print s }')
[ "$names" = "options, vm, memory, kernel, devices, boot data, loop, vcpu" ] &&
    awk -v e="$entered" -v s="$sum" 'BEGIN { exit !(s > 0 && e - s >= -0.5 && e - s < 2) }' &&
    pass setup_phases_add_up_to_the_entry || fail setup_phases_add_up_to_the_entry "entered $entered, phases '$phases'"
# Exits to user space are deterministic enough to bound (QEMU microvm with an RTC takes ~3.0K
# for this kernel to its modules, kvmtool ~35K; bellhop ~1.13K to init and ~1.9K to the
# modules with five devices, most of them PCI configuration reads through 0xCF8/0xCFC; with
# the tools disk, six: ~1.41K and ~2.49K).
for n in 1 2; do
    marker=$(grep "bellhop: boot marker 0x$n" $out)
    echo "    $marker"
    exits=$(echo "$marker" | sed -n 's/.* ms, \([0-9]*\) exits.*/\1/p')
    [ -n "$exits" ] && [ "$exits" -le 3000 ] && pass exits_to_marker_${n}_at_most_3000 ||
        fail exits_to_marker_${n}_at_most_3000 "'$marker'"
done
unpacked=$(grep "bellhop: kernel unpacked" $out)
echo "    $unpacked"
echo "$unpacked" | grep -q -E "unpacked \((gzip|xz|lz4|zstd), [0-9]+ KiB, KASLR \+[0-9]+ MiB\)" && pass kernel_unpacked_by_bellhop_with_kaslr ||
    fail kernel_unpacked_by_bellhop_with_kaslr "'$unpacked'"
grep -q "linux-guest: cpus 2" $out && pass two_cpus || fail two_cpus "$(grep 'linux-guest: cpus' $out)"
grep -q "linux-guest: disk read: from the host" $out && grep -q "linux-guest: disk written" $out &&
    pass ext4_disk_read_and_written || fail ext4_disk_read_and_written "$(grep 'linux-guest: disk' $out | tr '\n' '|')"
if [ -n "$debugfs" ]; then
    got=$($debugfs -R "cat /from-guest.txt" $disk 2>/dev/null)
    [ "$got" = "written by the guest at boot" ] && pass the_guests_file_is_in_the_image ||
        fail the_guests_file_is_in_the_image "debugfs read '$got'"
else
    skip the_guests_file_is_in_the_image "no debugfs"
fi
grep -q "linux-guest: disk queues 2" $out && pass a_disk_queue_per_cpu || fail a_disk_queue_per_cpu "$(grep 'disk queues' $out)"
if [ -n "$tools" ]; then
    grep -q "linux-guest: fio verified 2 jobs" $out && pass fio_writes_and_verifies_through_io_uring ||
        fail fio_writes_and_verifies_through_io_uring "$(grep 'linux-guest: fio' $out)"
elif [ -n "$sanitized" ]; then
    skip fio_writes_and_verifies_through_io_uring "a sanitizer build"
else
    skip fio_writes_and_verifies_through_io_uring "no build/linux/tools.sqfs (fio and squashfs-tools)"
fi
grep -q -E "linux-guest: hwrng [0-9a-f]{32}" $out && pass hwrng_gives_bytes || fail hwrng_gives_bytes "$(grep hwrng $out)"
if [ -n "$net" ]; then
    sleep 1
    kill $listener 2>/dev/null
    grep -q "hello over virtio-net" /tmp/bellhop-net.out 2>/dev/null && grep -q "linux-guest: net sent" $out &&
        pass virtio_net_reaches_the_tap || fail virtio_net_reaches_the_tap "host got '$(cat /tmp/bellhop-net.out 2>/dev/null)'"
else
    skip virtio_net_reaches_the_tap "cannot make a network namespace with a tap here (needs root, iproute2 and /dev/net/tun)"
fi

if [ -n "$sanitized" ]; then
    skip reboot_ends_the_vm_with_0 "a sanitizer build"
    skip the_kernels_own_decompressor_boots_it "a sanitizer build"
else
    $bellhop run --kernel $L/bzImage --initrd $L/initrd.cpio --mem 512M --cmdline "console=ttyS0 quiet bellhop.reboot" \
        --guest-decompress --boot-markers > $out 2>&1 < /dev/null
    status=$?
    [ $status -eq 0 ] && grep -q "reboot: Restarting system" $out && pass reboot_ends_the_vm_with_0 ||
        fail reboot_ends_the_vm_with_0 "status $status: $(tail -3 $out | tr '\n' '|')"
    [ $status -eq 0 ] && grep -q "linux-guest: init started" $out && ! grep -q "kernel unpacked" $out &&
        pass the_kernels_own_decompressor_boots_it ||
        fail the_kernels_own_decompressor_boots_it "status $status: $(grep -e unpacked -e 'init started' $out | tr '\n' '|')"
fi
# Without MSI (pci=nomsi) the virtio devices fall back to INTx through the IOAPIC; with 4.5 GiB
# of RAM, 1.5 GiB of it above the 32-bit hole (the e820 map's second RAM entry).
cp $L/disk.img $disk
$bellhop run --kernel $L/bzImage --initrd $L/initrd.cpio --mem 4608M --disk $disk --rng --boot-markers \
    --cmdline "console=ttyS0 quiet pci=nomsi nokaslr bellhop.highram" > $out 2>&1 < /dev/null
status=$?
[ $status -eq 0 ] && grep -q "linux-guest: disk written" $out && grep -q -E "linux-guest: hwrng [0-9a-f]{32}" $out &&
    pass intx_fallback_without_msi || fail intx_fallback_without_msi "status $status: $(grep linux-guest $out | tr '\n' '|')"
# 0x100000000-0x15fffffff: 1.5 GiB from 4 GiB; the zone above 4 GiB has its 393216 pages
ram=$(grep "linux-guest: ram" $out)
echo "    $ram"
echo "$ram" | grep -q "100000000-15fffffff:SystemRAM" && grep -q "linux-guest: zone Normal 393216 pages" $out &&
    pass ram_above_4_gib_is_the_guests || fail ram_above_4_gib_is_the_guests "$ram $(grep 'zone Normal' $out)"
grep -q "linux-guest: high ram disk round trip ok" $out && pass the_disk_reads_and_writes_ram_above_4_gib ||
    fail the_disk_reads_and_writes_ram_above_4_gib "$(grep linux-guest $out | tail -4 | tr '\n' '|')"
grep -q -E "bellhop: kernel unpacked \(.*, not randomized\)" $out && pass nokaslr_leaves_it_in_place ||
    fail nokaslr_leaves_it_in_place "$(grep unpacked $out)"
# forward TEXT: to the guest's forwarded port (the host's 5558) until the guest says it got
# something, 30 tries at most: its "listening" comes just before its nc binds, and nested the
# bind can take seconds (a connection before it reaches no listener and is lost).
forward() {
    i=0
    while [ $i -lt 30 ] && ! grep -q "linux-guest: hostfwd got" $out; do
        echo "$1" | $in_ns nc -w 5 127.0.0.1 5558 > /dev/null 2>&1
        sleep 1
        i=$((i + 1))
    done
}
# User-mode networking (libslirp, no tap, no root needed): DHCP, a connection to a server on the
# host's loopback through the gateway, and a host client reaching the guest's server through a
# forwarded port on 127.0.0.1. Nothing leaves the host's loopback: in the test's network
# namespace where it has one (the nested host's own loopback is down), else the host's.
# Configured by a config file (Firecracker's format, bellhop's bellhop_net field) with MMDS on the
# interface, version 1, its store from --metadata: the guest's wget reads a key.

user_tests="user_net_gives_an_address_by_dhcp user_net_reaches_the_hosts_loopback user_net_forwards_a_host_port
            mmds_v1_answers_a_plain_get_over_user_net"
if [ -n "$sanitized" ]; then
    for t in $user_tests; do skip $t "a sanitizer build"; done
else
    ($in_ns nc -l -p 5557 > /tmp/bellhop-user.out 2>/dev/null || $in_ns nc -l 127.0.0.1 5557 > /tmp/bellhop-user.out) &
    user_listener=$!
    cat > /tmp/bellhop-user.json <<JSON
{"boot-source": {"kernel_image_path": "$L/bzImage", "initrd_path": "$L/initrd.cpio",
                 "boot_args": "console=ttyS0 quiet bellhop.usernet=5557 bellhop.mmds"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 512},
 "network-interfaces": [{"iface_id": "eth0", "bellhop_net": "user,hostfwd=tcp:127.0.0.1:5558-:5556"}],
 "mmds-config": {"version": "V1", "network_interfaces": ["eth0"]}}
JSON
    echo '{"latest": {"meta-data": {"ami-id": "ami-12345678", "reservation-id": "r-1"}}}' > /tmp/bellhop-mmds.json
    $in_ns $bellhop run --config-file /tmp/bellhop-user.json --metadata /tmp/bellhop-mmds.json > $out 2>&1 < /dev/null &
    vmm=$!
    wait_out "linux-guest: user net listening" 600
    forward "hello through hostfwd"
    wait_end 300
    kill $vmm $user_listener 2>/dev/null
    wait $vmm
    status=$?
    grep -q "linux-guest: dhcp 10.0.2.15/24 via 10.0.2.2" $out && pass user_net_gives_an_address_by_dhcp ||
        fail user_net_gives_an_address_by_dhcp "status $status: $(grep -e linux-guest -e bellhop $out | tail -4 | tr '\n' '|')"
    grep -q "hello through the gateway" /tmp/bellhop-user.out 2>/dev/null && pass user_net_reaches_the_hosts_loopback ||
        fail user_net_reaches_the_hosts_loopback "host got '$(cat /tmp/bellhop-user.out 2>/dev/null)'"
    grep -q "linux-guest: hostfwd got: hello through hostfwd" $out && pass user_net_forwards_a_host_port ||
        fail user_net_forwards_a_host_port "$(grep -e 'linux-guest: hostfwd' -e 'user net' $out | tr '\n' '|')"
    grep -q "linux-guest: mmds v1 got: ami-12345678" $out && pass mmds_v1_answers_a_plain_get_over_user_net ||
        fail mmds_v1_answers_a_plain_get_over_user_net "$(grep -e mmds -e MMDS $out | tr '\n' '|')"
    rm -f /tmp/bellhop-user.json /tmp/bellhop-mmds.json
fi
# The same over passt (Debian's), which bellhop starts: in the test's namespace, with a default
# route via 10.0.2.254 on the tap (what passt copies for the guest: the address 10.0.2.1 and
# that gateway, which it maps to the host's loopback), and a port forwarded with passt's -t; as
# uid 65534 by number, the nested host having no passwd file for passt to find "nobody" in.
passt_tests="passt_gives_an_address_by_dhcp passt_reaches_the_hosts_loopback passt_forwards_a_host_port"
passt=$(command -v passt || true)
[ -x /bellhop/usr/bin/passt ] && passt=/bellhop/usr/bin/passt
if [ -n "$sanitized" ] || [ -z "$passt" ] || [ -z "$net" ]; then
    for t in $passt_tests; do skip $t "a sanitizer build, or no passt or network namespace here"; done
else
    PATH=$(dirname $passt):$PATH
    $in_ns $ipcmd route add default via 10.0.2.254 dev $tap
    ($in_ns nc -l -p 5557 > /tmp/bellhop-passt.out 2>/dev/null || $in_ns nc -l 127.0.0.1 5557 > /tmp/bellhop-passt.out) &
    passt_listener=$!
    $in_ns $bellhop run --kernel $L/bzImage --initrd $L/initrd.cpio --mem 512M --net passt,--runas,65534:65534,-t,5558:5556 \
        --cmdline "console=ttyS0 quiet bellhop.usernet=5557" > $out 2>&1 < /dev/null &
    vmm=$!
    wait_out "linux-guest: user net listening" 600
    forward "hello through passt"
    wait_end 300
    kill $vmm $passt_listener 2>/dev/null
    wait $vmm
    status=$?
    $in_ns $ipcmd route del default via 10.0.2.254 dev $tap
    grep -q "linux-guest: dhcp 10.0.2.1/24 via 10.0.2.254" $out && pass passt_gives_an_address_by_dhcp ||
        fail passt_gives_an_address_by_dhcp "status $status: $(grep -e linux-guest -e bellhop -e passt $out | tail -4 | tr '\n' '|')"
    grep -q "hello through the gateway" /tmp/bellhop-passt.out 2>/dev/null && pass passt_reaches_the_hosts_loopback ||
        fail passt_reaches_the_hosts_loopback "host got '$(cat /tmp/bellhop-passt.out 2>/dev/null)'"
    grep -q "linux-guest: hostfwd got: hello through passt" $out && pass passt_forwards_a_host_port ||
        fail passt_forwards_a_host_port "$(grep -e 'linux-guest: hostfwd' -e 'user net' $out | tr '\n' '|')"
    rm -f /tmp/bellhop-passt.out
fi
# The same kernel as an ELF vmlinux booted through its PVH entry note.
if [ -n "$sanitized" ]; then
    skip pvh_vmlinux_boots "a sanitizer build"
elif [ -f $L/vmlinux ]; then
    $bellhop run --kernel $L/vmlinux --initrd $L/initrd.cpio --mem 512M --cpus 2 --rng \
        --cmdline "console=ttyS0 quiet" > $out 2>&1 < /dev/null
    status=$?
    [ $status -eq 0 ] && grep -q "linux-guest: done" $out && grep -q "linux-guest: cpus 2" $out &&
        pass pvh_vmlinux_boots || fail pvh_vmlinux_boots "status $status: $(tail -3 $out | tr '\n' '|')"
else
    skip pvh_vmlinux_boots "no $L/vmlinux"
fi
# The same kernel configured through the API (curl, as Firecracker's users drive it), with a
# vsock and a balloon, then shut down with the keyboard's Ctrl+Alt+Del.
curl=$(command -v curl || true)
[ -x /bellhop/usr/bin/curl ] && curl=/bellhop/usr/bin/curl
sock=/tmp/bellhop-linux-api.sock
put() { $curl -s -m 30 --unix-socket $sock -X PUT "http://localhost$1" -d "$2" -w '%{http_code} '; }
# The vsock: the guest's end is socat from the tools disk, the host's build/linux/vsock_host.
vsock=/tmp/bellhop-linux-vsock.sock vsock_out=/tmp/bellhop-vsock.out
vsock_tests="vsock_host_connects_to_a_guest_listener vsock_guest_connects_to_a_host_listener"
balloon_tests="balloon_statistics_come_from_linux balloon_gives_guest_memory_back_to_the_host"
# vsock_tests_run: the guest's echo answers the host's line; the guest's line reached the
# host's listener (started before the boot, $vlistener).
vsock_tests_run() {
    echoed=$($L/vsock_host echo $vsock 5001 "ping over vsock" 2>$vsock_out.err)
    [ "$echoed" = "ping over vsock" ] && pass vsock_host_connects_to_a_guest_listener ||
        fail vsock_host_connects_to_a_guest_listener "echoed '$echoed': $(cat $vsock_out.err) $(grep -i vsock $out | tail -2 | tr '\n' '|')"
    kill $vlistener 2>/dev/null; wait $vlistener 2>/dev/null
    grep -q "hello from the guest over vsock" $vsock_out && grep -q "linux-guest: vsock sent" $out &&
        pass vsock_guest_connects_to_a_host_listener ||
        fail vsock_guest_connects_to_a_host_listener "the host got '$(cat $vsock_out)': $(grep -i vsock $out | tail -2 | tr '\n' '|')"
    rm -f $vsock_out $vsock_out.err ${vsock}_5000
}
balloon_stats() { $curl -s -m 30 --unix-socket $sock http://localhost/balloon/statistics; }
patch_balloon() { $curl -s -m 30 --unix-socket $sock -X PATCH http://localhost/balloon -d "{\"amount_mib\": $1}" -w '%{http_code}'; }
field() { sed -n "s/.*\"$1\": *\([0-9][0-9]*\).*/\1/p"; } # a number in the JSON on stdin
rss_kib() { awk '/^VmRSS:/ {print $2}' /proc/$vmm/status 2>/dev/null; }
# wait_balloon TEST MIB SECONDS: until the balloon's actual_mib TEST (-ge, -le) MIB, while
# bellhop lives, SECONDS at most ($actual: the last figure, empty if there was none)
wait_balloon() {
    i=0
    while actual=$(balloon_stats | field actual_mib); { [ -z "$actual" ] || ! [ "$actual" $1 $2 ]; } &&
          [ $i -lt $3 ] && kill -0 $vmm 2>/dev/null; do
        sleep 1; i=$((i + 1))
    done
}
# balloon_tests_run: Linux's statistics (total and free memory within the guest's 512 MiB);
# then 300 MiB in the balloon gives the host back at least 100 MiB of bellhop's resident set
# (the guest touched 200 MiB and freed it), and a target of 0 deflates it.
balloon_tests_run() {
    i=0; while ! balloon_stats | grep -q total_memory && [ $i -lt 20 ]; do sleep 1; i=$((i + 1)); done
    stats=$(balloon_stats)
    total=$(echo "$stats" | field total_memory) free=$(echo "$stats" | field free_memory)
    echo "    balloon statistics: $stats"
    [ "${total:-0}" -gt 0 ] && [ "$total" -le $((512 * 1048576)) ] && [ "${free:-0}" -gt 0 ] && [ "$free" -le "$total" ] &&
        pass balloon_statistics_come_from_linux || fail balloon_statistics_come_from_linux "$stats"
    before=$(rss_kib)
    inflate=$(patch_balloon 300)
    wait_balloon -ge 300 120
    inflated=${actual:-0} after=$(rss_kib)
    deflate=$(patch_balloon 0)
    wait_balloon -le 0 120
    deflated=${actual:-$inflated}
    echo "    bellhop's VmRSS $before KiB, $after KiB with $inflated MiB in the balloon; back to $deflated MiB in it"
    [ "$inflate $deflate" = "204 204" ] && grep -q "linux-guest: memory touched" $out && [ "$inflated" -ge 300 ] &&
        [ $((${before:-0} - ${after:-0})) -ge 102400 ] && [ "$deflated" -lt "$inflated" ] &&
        pass balloon_gives_guest_memory_back_to_the_host ||
        fail balloon_gives_guest_memory_back_to_the_host "PATCH $inflate $deflate, VmRSS $before -> $after KiB, actual $inflated then $deflated MiB, $(grep 'memory touched' $out)"
}
if [ -n "$sanitized" ]; then # the API's sanitizer runs are tests/kvm/api.sh's, with the tiny guest
    for t in api_boots_linux_to_its_init $vsock_tests $balloon_tests send_ctrl_alt_del_shuts_it_down; do
        skip $t "a sanitizer build (tests/kvm/api.sh covers its API)"
    done
elif [ -n "$curl" ]; then
    cp $L/disk.img $disk
    rm -f $sock $vsock ${vsock}_5000
    # socat runs from the tools disk, which the guest gets beside its root disk
    vlistener= tools_drive=
    if [ -f $L/tools.sqfs ] && [ -x $L/vsock_host ]; then
        $L/vsock_host listen ${vsock}_5000 600 > $vsock_out 2>&1 &
        vlistener=$!
        tools_drive='{"drive_id": "tools", "path_on_host": "'$L/tools.sqfs'", "is_root_device": false, "is_read_only": true}'
    fi
    $bellhop run --api-sock $sock > $out 2>&1 < /dev/null &
    vmm=$!
    wait_sock $sock
    codes=$(put /boot-source '{"kernel_image_path": "'$L/bzImage'", "initrd_path": "'$L/initrd.cpio'",
                              "boot_args": "console=ttyS0 quiet bellhop.wait bellhop.vsock"}'
            put /machine-config '{"vcpu_count": 2, "mem_size_mib": 512}'
            put /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$disk'", "is_root_device": true}'
            [ -n "$tools_drive" ] && put /drives/tools "$tools_drive"
            put /entropy '{}'
            put /balloon '{"amount_mib": 0, "deflate_on_oom": true, "stats_polling_interval_s": 1}'
            put /vsock '{"guest_cid": 3, "uds_path": "'$vsock'"}'
            put /actions '{"action_type": "InstanceStart"}')
    wait_out "linux-guest: waiting" 1800
    want="204 204 204 204 204 204 204 "
    [ -n "$tools_drive" ] && want="204 $want"
    if [ "$codes" = "$want" ] && grep -q "linux-guest: waiting" $out &&
       grep -q "linux-guest: disk written" $out && grep -q "linux-guest: cpus 2" $out; then
        pass api_boots_linux_to_its_init
    else
        fail api_boots_linux_to_its_init "$codes: $(tail -3 $out | tr '\n' '|')"
    fi
    if ! grep -q "linux-guest: waiting" $out; then
        for t in $vsock_tests $balloon_tests; do fail $t "the guest did not get to its wait"; done
        kill $vlistener 2>/dev/null
    else
        if [ -n "$vlistener" ]; then
            vsock_tests_run
        else
            for t in $vsock_tests; do skip $t "no $L/tools.sqfs (socat, squashfs-tools) or $L/vsock_host"; done
        fi
        balloon_tests_run
    fi
    cad=$(put /actions '{"action_type": "SendCtrlAltDel"}')
    wait_end 600
    kill -9 $vmm 2>/dev/null
    wait $vmm; status=$?
    [ "$cad" = "204 " ] && [ $status -eq 0 ] && grep -q "linux-guest: ctrl-alt-del: rebooting" $out && [ ! -e $sock ] &&
        pass send_ctrl_alt_del_shuts_it_down ||
        fail send_ctrl_alt_del_shuts_it_down "$cad, status $status: $(tail -3 $out | tr '\n' '|')"
    rm -f $vsock
else
    for t in api_boots_linux_to_its_init $vsock_tests $balloon_tests send_ctrl_alt_del_shuts_it_down; do
        skip $t "no curl"
    done
fi
# A snapshot of Linux after its init ran (disk, network, two CPUs), restored in a new bellhop
# from the command line: its shell takes commands typed on the console, its disk writes reach
# the image, and TCP over virtio-net reaches the host end of the tap. What is restored is a
# pair: a Full snapshot, then (a file written into the guest's RAM between the two) a Diff,
# rebased onto the Full's memory file; the restored guest reads that file back.
# Before the snapshot, MMDS version 2 on the tap's interface (as Firecracker's users have it): the
# guest's HTTP, raw over busybox's nc, to 169.254.169.254, which never reaches the tap.
snap_tests="a_snapshot_after_init_restores_in_a_new_vmm restored_shell_goes_on restored_disk_writes_land_in_the_image
            restored_tcp_over_virtio_net a_rebased_diff_holds_a_file_written_between_the_snapshots
            virtiofs_reads_a_file_the_host_wrote virtiofs_writes_a_file_the_host_reads"
mmds_tests="mmds_v2_gives_a_token_and_the_data_for_it mmds_v2_answers_401_without_a_token mmds_patch_is_seen_by_the_next_get
            mmds_answers_json_when_asked"
if [ -n "$sanitized" ] || [ -z "$curl" ] || [ -z "$net" ]; then
    for t in $snap_tests $mmds_tests; do skip $t "a sanitizer build, or no curl or network namespace here"; done
else
    cp $L/disk.img $disk
    rm -f $sock /tmp/bellhop-snap.state /tmp/bellhop-snap.mem /tmp/bellhop-diff.state /tmp/bellhop-diff.mem /tmp/bellhop-console
    mkfifo /tmp/bellhop-console
    typed() { # COMMAND ANSWER: types COMMAND on the guest's console, waits up to 60 s for ANSWER
        echo "$1" >&8
        wait_out "$2" 600
        grep -q "$2" $out
    }
    vm_state() { $curl -s -m 30 --unix-socket $sock -X PATCH "http://localhost/vm" -d "{\"state\": \"$1\"}" -w '%{http_code} '; }
    $in_ns $bellhop run --api-sock $sock < /tmp/bellhop-console > $out 2>&1 &
    vmm=$!
    exec 8> /tmp/bellhop-console
    wait_sock $sock
    codes=$(put /boot-source '{"kernel_image_path": "'$L/bzImage'", "initrd_path": "'$L/initrd.cpio'",
                              "boot_args": "console=ttyS0 quiet bellhop.shell"}'
            put /machine-config '{"vcpu_count": 2, "mem_size_mib": 512, "track_dirty_pages": true}'
            put /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$disk'", "is_root_device": true}'
            put /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "'$tap'"}'
            put /entropy '{}'
            put /mmds/config '{"version": "V2", "network_interfaces": ["eth0"]}'
            put /mmds '{"latest": {"meta-data": {"ami-id": "ami-87654321", "local-ipv4": "10.0.2.2"}}}'
            put /actions '{"action_type": "InstanceStart"}')
    wait_out "linux-guest: shell ready" 1800
    # http METHOD PATH [HEADERS]: the guest's raw request to MMDS, its answer on stdout
    echo 'http() { printf "%s %s HTTP/1.1\r\nHost: 169.254.169.254\r\n%bConnection: close\r\n\r\n" "$1" "$2" "${3:+$3\r\n}" | nc -w 5 169.254.169.254 80; }' >&8
    echo 'ip route add 169.254.169.254 dev eth0' >&8
    typed 't=$(http PUT /latest/api/token "X-metadata-token-ttl-seconds: 60" | tail -1); echo "mmds-token-length ${#t}"' "^mmds-token-length"
    tlen=$(grep "^mmds-token-length" $out | tail -1 | cut -d' ' -f2 | tr -d '\r')
    typed 'v=$(http GET /latest/meta-data/ami-id "X-metadata-token: $t" | tail -1); echo "mmds-got $v"' "^mmds-got"
    grep -q "^mmds-got ami-87654321" $out && [ "${tlen:-0}" -gt 0 ] && pass mmds_v2_gives_a_token_and_the_data_for_it ||
        fail mmds_v2_gives_a_token_and_the_data_for_it "token length '$tlen': $(grep -e mmds -e MMDS $out | tr '\n' '|')"
    typed 's=$(http GET /latest/meta-data/ami-id | head -1); echo "mmds-no-token $s"' "^mmds-no-token"
    grep -q "^mmds-no-token HTTP/1.1 401" $out && pass mmds_v2_answers_401_without_a_token ||
        fail mmds_v2_answers_401_without_a_token "$(grep '^mmds-no-token' $out)"
    patched=$($curl -s -m 30 --unix-socket $sock -X PATCH http://localhost/mmds -d '{"latest": {"meta-data": {"ami-id": "ami-patched"}}}' -w '%{http_code}')
    typed 'v=$(http GET /latest/meta-data/ami-id "X-metadata-token: $t" | tail -1); echo "mmds-now $v"' "^mmds-now"
    [ "$patched" = 204 ] && grep -q "^mmds-now ami-patched" $out && pass mmds_patch_is_seen_by_the_next_get ||
        fail mmds_patch_is_seen_by_the_next_get "PATCH $patched: $(grep '^mmds-now' $out)"
    typed 'v=$(http GET /latest/meta-data "X-metadata-token: $t\r\nAccept: application/json" | tail -1); echo "mmds-json $v"' "^mmds-json"
    grep -q '^mmds-json.*"ami-id": *"ami-patched"' $out && grep -q '^mmds-json.*"local-ipv4": *"10.0.2.2"' $out &&
        pass mmds_answers_json_when_asked || fail mmds_answers_json_when_asked "$(grep '^mmds-json' $out)"
    paused=$(vm_state Paused)
    created=$(put /snapshot/create '{"snapshot_path": "/tmp/bellhop-snap.state", "mem_file_path": "/tmp/bellhop-snap.mem"}')
    paused="$paused$(vm_state Resumed)"
    typed 'echo "written between the snapshots" > /between.txt && echo "between ok"' "^between ok"
    paused="$paused$(vm_state Paused)"
    created="$created$(put /snapshot/create '{"snapshot_type": "Diff", "snapshot_path": "/tmp/bellhop-diff.state",
                                             "mem_file_path": "/tmp/bellhop-diff.mem"}')"
    kill -9 $vmm; wait $vmm 2>/dev/null
    exec 8>&-
    $bellhop snapshot rebase /tmp/bellhop-snap.mem /tmp/bellhop-diff.mem > /tmp/bellhop-rebase.out 2>&1 && created="${created}rebased"
    ($in_ns nc -l -p 5556 > /tmp/bellhop-net.out 2>/dev/null || $in_ns nc -l 5556 > /tmp/bellhop-net.out 2>/dev/null) &
    listener2=$!
    $in_ns $bellhop run --restore /tmp/bellhop-diff.state --mem-file /tmp/bellhop-snap.mem < /tmp/bellhop-console > $out 2>&1 &
    vmm=$!
    exec 8> /tmp/bellhop-console
    if [ "$(echo $codes $paused $created)" = "204 204 204 204 204 204 204 204 204 204 204 204 204 rebased" ] &&
       typed 'echo restored $((40 + 2))' "restored 42"; then
        pass a_snapshot_after_init_restores_in_a_new_vmm
        pass restored_shell_goes_on
    else
        fail a_snapshot_after_init_restores_in_a_new_vmm "$codes$paused $created: $(tail -3 $out | tr '\n' '|') $(cat /tmp/bellhop-rebase.out)"
        fail restored_shell_goes_on "no answer to a command typed after the restore"
    fi
    typed 'cat /between.txt' "^written between the snapshots" && pass a_rebased_diff_holds_a_file_written_between_the_snapshots ||
        fail a_rebased_diff_holds_a_file_written_between_the_snapshots "$(tail -3 $out | tr '\n' '|')"
    typed 'mount /dev/vda /mnt && echo "written after the restore" > /mnt/after-restore.txt && umount /mnt && sync && echo "disk ok"' "^disk ok"
    typed 'echo "tcp after the restore" | nc -w 10 10.0.2.1 5556 && echo "net ok"' "^net ok"
    typed 'poweroff -f' "reboot: Power down"
    exec 8>&-
    wait_end 300
    kill -9 $vmm 2>/dev/null; wait $vmm; status=$?
    wait $listener2 2>/dev/null
    if [ -n "$debugfs" ] && [ "$($debugfs -R 'cat /after-restore.txt' $disk 2>/dev/null)" = "written after the restore" ]; then
        pass restored_disk_writes_land_in_the_image
    else
        fail restored_disk_writes_land_in_the_image "status $status: $(grep -e 'disk ok' -e 'mount' $out | tr '\n' '|')"
    fi
    grep -q "tcp after the restore" /tmp/bellhop-net.out && grep -q "^net ok" $out && pass restored_tcp_over_virtio_net ||
        fail restored_tcp_over_virtio_net "$(tail -3 $out | tr '\n' '|'); the host end got '$(cat /tmp/bellhop-net.out)'"
    rm -f /tmp/bellhop-snap.state /tmp/bellhop-snap.mem /tmp/bellhop-diff.state /tmp/bellhop-diff.mem /tmp/bellhop-console \
        /tmp/bellhop-rebase.out $sock
fi
# A host directory shared with virtiofsd (vhost-user-fs, QEMU's backend): the guest mounts it,
# reads what the host wrote, and writes a file the host then reads.
virtiofsd=$(ls /usr/lib/qemu/virtiofsd /bellhop/usr/lib/qemu/virtiofsd 2>/dev/null | tail -1)
if [ -z "$virtiofsd" ] || [ -n "$sanitized" ]; then
    skip virtiofs_reads_a_file_the_host_wrote "a sanitizer build (tests/kvm/vhost_user.sh covers vhost-user there), or no virtiofsd"
    skip virtiofs_writes_a_file_the_host_reads "a sanitizer build (tests/kvm/vhost_user.sh covers vhost-user there), or no virtiofsd"
else
    shared=/tmp/bellhop-shared fsock=/tmp/bellhop-fs.sock
    rm -rf $shared $fsock && mkdir -p $shared
    echo "written by the host" > $shared/from-host.txt
    $virtiofsd --socket-path=$fsock -o source=$shared -o sandbox=chroot -f > /tmp/bellhop-virtiofsd.out 2>&1 &
    fsd=$!
    wait_sock $fsock
    $bellhop run --kernel $L/bzImage --initrd $L/initrd.cpio --mem 512M --fs $fsock,tag=hostdir \
        --cmdline "console=ttyS0 quiet bellhop.fs" > $out 2>&1 < /dev/null
    status=$?
    grep -q "linux-guest: fs read: written by the host" $out && pass virtiofs_reads_a_file_the_host_wrote ||
        fail virtiofs_reads_a_file_the_host_wrote "status $status: $(grep -e linux-guest -e bellhop: -e virtio -e fuse $out | tail -4 | tr '\n' '|') $(tail -2 /tmp/bellhop-virtiofsd.out | tr '\n' '|')"
    [ "$(cat $shared/from-guest.txt 2>/dev/null)" = "written by the guest over virtio-fs" ] && grep -q "linux-guest: fs written" $out &&
        pass virtiofs_writes_a_file_the_host_reads ||
        fail virtiofs_writes_a_file_the_host_reads "the host read '$(cat $shared/from-guest.txt 2>/dev/null)'"
    kill $fsd 2>/dev/null; wait $fsd 2>/dev/null
    rm -rf $shared $fsock
fi
if [ -n "$in_ns" ]; then
    kill $($ipcmd netns pids $ns) 2>/dev/null # the listener, if nothing reached it
    $ipcmd netns del $ns
fi
rm -f $disk $out /tmp/bellhop-net.out
exit $failed
