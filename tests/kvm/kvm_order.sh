#!/bin/sh
# The order of bellhop's KVM calls, seen with strace on every path that makes a VM: the VM,
# then guest RAM, then the in-kernel irqchip and PIT (once each), then vCPUs and irqfds
# (<zircon/syscalls/hypervisor.h>: on PVM, RAM registered after the irqchip costs milliseconds).
# POSIX sh (busybox inside the nested KVM host).
suite=kvm_order
tests="the_command_line instance_start_through_the_api snapshot_load_through_the_api restore_from_the_command_line
       ram_shared_with_a_vhost_user_backend the_api_makes_its_vm_before_the_first_request"
@KVM_TEST_SH@
[ -z "$sanitized" ] || skip_all "the plain build's only (the order is the same code in every build)"
strace=$(tool strace) qsd=$(tool qemu-storage-daemon)
if [ -z "$strace" ] || [ -z "$curl" ]; then skip_all "no strace or curl"; fi
req_timeout=90 # (the VMMs run under strace, and one saves a snapshot of 128 MiB)
dir=$(mktemp -d /tmp/bellhop-order.XXXXXX)
pids=
# kill_bellhops PID: every bellhop below PID, however deep (a background `traced` may be a
# subshell above strace above bellhop), killed; strace, above it, then ends with its log whole
# (strace killed itself would lose the log's tail and leave bellhop running, detached)
kill_bellhops() {
    for c in $(pgrep -P $1); do
        kill_bellhops $c
        case "$(cat /proc/$c/comm 2>/dev/null)" in bellhop*) kill -9 $c 2>/dev/null ;; esac
    done
}
stop() { kill_bellhops $1; wait $1 2>/dev/null; }
cleanup() {
    for p in $pids; do kill_bellhops $p; kill -9 $p 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
traced() { # LOG ARGS...: bellhop run ARGS under strace, its KVM ioctls (and accepts) in LOG
    log=$1; shift
    $strace -f -qq -e trace=ioctl,accept4 -o $log $bellhop run "$@"
}
first() { grep -n "$2" $1 | head -1 | cut -d: -f1; }
# check TEST LOG: the order, or what broke it
check() {
    m=$(first $2 KVM_SET_USER_MEMORY_REGION) c=$(first $2 KVM_CREATE_IRQCHIP) p=$(first $2 KVM_CREATE_PIT2)
    v=$(first $2 KVM_CREATE_VCPU) f=$(first $2 KVM_IRQFD) nc=$(grep -c KVM_CREATE_IRQCHIP $2)
    if [ -n "$m" ] && [ -n "$c" ] && [ -n "$p" ] && [ -n "$v" ] && [ "$m" -lt "$c" ] && [ "$c" -lt "$p" ] &&
       [ "$p" -lt "$v" ] && { [ -z "$f" ] || [ "$c" -lt "$f" ]; } && [ "$nc" = 1 ]; then
        pass $1
    else
        fail $1 "lines: RAM $m, irqchip $c (made $nc times), PIT $p, vCPU $v, irqfd $f: $(grep -E 'KVM_(SET_USER|CREATE|IRQFD)' $2 | head -8 | tr '\n' '|')"
    fi
}

disk=$dir/disk.img
dd if=/dev/zero of=$disk bs=1024 count=1024 2>/dev/null
traced $dir/cli.log --kernel $guest --disk $disk --rng --cmdline "exit=0" > $dir/cli.out 2>&1 < /dev/null
check the_command_line $dir/cli.log

# InstanceStart, then the VM paused and saved for the restores below.
sock=$dir/a.sock
traced $dir/api.log --api-sock $sock > $dir/api.out 2>&1 < /dev/null &
pid=$!; pids="$pids $pid"
wait_sock $sock
req $sock PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "count"}'
req $sock PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$disk'", "is_root_device": true, "is_read_only": false}'
req $sock PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 128}'
req $sock PUT /actions '{"action_type": "InstanceStart"}'
wait_for $dir/api.out "^count 2:" 90
req $sock PATCH /vm '{"state": "Paused"}'
req $sock PUT /snapshot/create '{"snapshot_type": "Full", "snapshot_path": "'$dir/vm.state'", "mem_file_path": "'$dir/vm.mem'"}'
saved=$code
stop $pid
check instance_start_through_the_api $dir/api.log

if [ "$saved" != 204 ]; then
    fail snapshot_load_through_the_api "snapshot/create answered $saved: $(tail -3 $dir/api.out | tr '\n' '|')"
    fail restore_from_the_command_line "no snapshot"
    fail the_api_makes_its_vm_before_the_first_request "no snapshot"
else
    sock=$dir/b.sock
    traced $dir/load.log --api-sock $sock > $dir/load.out 2>&1 < /dev/null &
    pid=$!; pids="$pids $pid"
    wait_sock $sock
    req $sock PUT /snapshot/load '{"snapshot_path": "'$dir/vm.state'", "mem_backend": {"backend_type": "File", "backend_path": "'$dir/vm.mem'"}, "resume_vm": false}'
    loaded=$code
    stop $pid
    # the VM (KVM_CREATE_VM, the host's CPUID) is made while the API waits: the load's
    # connection is accepted after it
    made=$(first $dir/load.log KVM_CREATE_VM) accepted=$(first $dir/load.log accept4)
    [ -n "$made" ] && [ -n "$accepted" ] && [ "$made" -lt "$accepted" ] && [ "$(grep -c KVM_CREATE_VM $dir/load.log)" = 1 ] &&
        pass the_api_makes_its_vm_before_the_first_request ||
        fail the_api_makes_its_vm_before_the_first_request "lines: VM $made, first accept $accepted: $(grep -E 'KVM_CREATE_VM|accept4' $dir/load.log | head -4 | tr '\n' '|')"
    if [ "$loaded" = 204 ]; then check snapshot_load_through_the_api $dir/load.log
    else fail snapshot_load_through_the_api "snapshot/load answered $loaded: $(tail -3 $dir/load.out | tr '\n' '|')"; fi
    traced $dir/restore.log --restore $dir/vm.state --mem-file $dir/vm.mem > $dir/restore.out 2>&1 < /dev/null &
    pid=$!; pids="$pids $pid"
    wait_for $dir/restore.out "^count " 60
    stop $pid
    check restore_from_the_command_line $dir/restore.log
fi

if [ -z "$qsd" ]; then
    skip ram_shared_with_a_vhost_user_backend "no qemu-storage-daemon"
else
    vsock=$dir/vhost.sock
    $qsd --blockdev driver=file,node-name=file0,filename=$disk --blockdev driver=raw,node-name=disk0,file=file0 \
        --export type=vhost-user-blk,id=exp0,addr.type=unix,addr.path=$vsock,node-name=disk0,writable=on \
        > $dir/qsd.out 2>&1 &
    pids="$pids $!"
    wait_sock $vsock
    traced $dir/vhost.log --kernel $guest --disk vhost-user=$vsock --cmdline "exit=0" > $dir/vhost.out 2>&1 < /dev/null
    if grep -q memfd_create $dir/vhost.log || grep -q 'KVM_SET_USER_MEMORY_REGION' $dir/vhost.log; then
        check ram_shared_with_a_vhost_user_backend $dir/vhost.log
    else
        fail ram_shared_with_a_vhost_user_backend "no VM: $(tail -3 $dir/vhost.out | tr '\n' '|')"
    fi
fi
exit $failed
