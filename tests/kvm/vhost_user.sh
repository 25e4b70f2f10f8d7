#!/bin/sh
# vhost-user against a real backend nobody here wrote: qemu-storage-daemon exporting a raw
# image as vhost-user-blk. The tiny guest's virtio-blk self-tests pass on it and its sector is
# in the image afterwards; the backend killed mid-run fails the guest's disk while the VMM and
# the guest go on, and the VMM ends cleanly; bad backends get a one-line error. POSIX sh.
suite=vhost_user
tests="the_guests_disk_tests_pass_on_qemu_storage_daemon the_guests_data_is_in_the_image
       a_backend_killed_mid_run_fails_the_disk_not_the_vmm the_vmm_then_ends_cleanly
       a_missing_or_foreign_backend_is_a_one_line_error a_vhost_user_vm_is_not_snapshotted"
@KVM_TEST_SH@
qsd=$(tool qemu-storage-daemon)
[ -n "$qsd" ] || skip_all "no qemu-storage-daemon"
dir=$(mktemp -d /tmp/bellhop-vhost.XXXXXX)
img=$dir/disk.img sock=$dir/blk.sock out=$dir/out
pids=
cleanup() { for p in $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$dir"; }
trap cleanup EXIT
daemon() { # the backend on $sock, serving $img
    rm -f $sock
    $qsd --blockdev driver=file,node-name=file0,filename=$img --blockdev driver=raw,node-name=disk0,file=file0 \
        --export type=vhost-user-blk,id=exp0,addr.type=unix,addr.path=$sock,node-name=disk0,writable=on \
        > $dir/qsd.out 2>&1 &
    qpid=$!; pids="$pids $qpid"
    wait_sock $sock
}

dd if=/dev/zero of=$img bs=1024 count=1024 2>/dev/null
daemon
$bellhop run --kernel $guest --disk vhost-user=$sock --rng --cmdline "exit=0" > $out 2>&1 < /dev/null; st=$?
if [ $st = 0 ] && grep -q "selftest virtio-blk-rw    PASS" $out && grep -q "selftest virtio-blk-id    PASS" $out &&
   grep -q "selftest virtio-blk-bounds PASS" $out && grep -q "guest: 0 failed" $out; then
    pass the_guests_disk_tests_pass_on_qemu_storage_daemon
else
    fail the_guests_disk_tests_pass_on_qemu_storage_daemon "status $st: $(grep -e blk -e bellhop: $out | tr '\n' '|')"
fi
kill $qpid; wait $qpid 2>/dev/null
# The guest wrote "bellhop guest wrote this sector" over sector 2.
if dd if=$img bs=512 skip=2 count=1 2>/dev/null | grep -q "bellhop guest wrote this sector"; then
    pass the_guests_data_is_in_the_image
else
    fail the_guests_data_is_in_the_image "sector 2: $(dd if=$img bs=512 skip=2 count=1 2>/dev/null | head -c 40)"
fi

# The backend dies while the guest uses the disk every count.
daemon
mkfifo $dir/console
$bellhop run --kernel $guest --disk vhost-user=$sock --rng --cmdline count < $dir/console > $out 2>&1 &
vmm=$!; pids="$pids $vmm"
exec 9> $dir/console
wait_for $out "^count 2:" 60
kill -9 $qpid; wait $qpid 2>/dev/null
if wait_for $out "the vhost-user backend on $sock went away" 20 && wait_for $out "blk FAIL" 60 &&
   wait_for $out "^count [0-9]*: memory ok, rng ok, blk FAIL" 60; then
    pass a_backend_killed_mid_run_fails_the_disk_not_the_vmm
else
    fail a_backend_killed_mid_run_fails_the_disk_not_the_vmm "$(tail -4 $out | tr '\n' '|')"
fi
printf '\001x' >&9 # Ctrl-A x: the console's way to end the VMM
exec 9>&-
wait $vmm; st=$?
[ $st = 0 ] && ! grep -q -e "SIGSYS" -e "crash" -e "ERROR: AddressSanitizer" -e "ThreadSanitizer" $out &&
    pass the_vmm_then_ends_cleanly || fail the_vmm_then_ends_cleanly "status $st: $(tail -3 $out | tr '\n' '|')"

# No backend at all.
bad=
$bellhop run --kernel $guest --disk vhost-user=$dir/nonexistent.sock > $out 2>&1 < /dev/null; st=$?
[ $st = 1 ] && grep -q "vhost-user-blk: backend $dir/nonexistent.sock: No such file or directory" $out &&
    [ "$(wc -l < $out)" = 1 ] || bad="$bad [no backend: status $st, $(cat $out)]"
# A backend that speaks another protocol: bellhop's own API socket, which answers in HTTP.
$bellhop run --api-sock $dir/http.sock > $dir/http.out 2>&1 < /dev/null &
hpid=$!; pids="$pids $hpid"
wait_sock $dir/http.sock
$bellhop run --kernel $guest --disk vhost-user=$dir/http.sock > $out 2>&1 < /dev/null; st=$?
[ $st = 1 ] && [ "$(wc -l < $out)" = 1 ] && grep -q -e "not a version-1 reply" -e "closed its socket" -e "has [0-9]* bytes" $out ||
    bad="$bad [an HTTP server as the backend: status $st, $(cat $out)]"
kill -9 $hpid
[ -z "$bad" ] && pass a_missing_or_foreign_backend_is_a_one_line_error || fail a_missing_or_foreign_backend_is_a_one_line_error "$bad"

# A snapshot needs every device's state in bellhop: refused, the VM unharmed.
if [ -n "$curl" ]; then
    daemon
    api=$dir/api.sock
    cat > $dir/vm.json <<EOF
{"boot-source": {"kernel_image_path": "$guest", "boot_args": "count"},
 "drives": [{"drive_id": "rootfs", "socket": "$sock", "is_root_device": true}],
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}
EOF
    $bellhop run --api-sock $api --config-file $dir/vm.json > $out 2>&1 < /dev/null &
    vmm=$!; pids="$pids $vmm"
    wait_for $out "^count 1:" 60
    p=$($curl -s -m 20 --unix-socket $api -X PATCH http://localhost/vm -d '{"state": "Paused"}' -w '%{http_code}')
    c=$($curl -s -m 20 --unix-socket $api -X PUT http://localhost/snapshot/create \
        -d '{"snapshot_path": "'$dir/s'", "mem_file_path": "'$dir/m'"}' -w ' %{http_code}')
    r=$($curl -s -m 20 --unix-socket $api -X PATCH http://localhost/vm -d '{"state": "Resumed"}' -w '%{http_code}')
    n=$(grep -c "^count" $out)
    case "$p $c $r" in
        *"cannot be saved: its state is not all in bellhop (vhost-user)"*" 400 204")
            wait_for $out "^count $((n + 1)):" 30 && pass a_vhost_user_vm_is_not_snapshotted ||
                fail a_vhost_user_vm_is_not_snapshotted "the VM stopped counting at $n" ;;
        *) fail a_vhost_user_vm_is_not_snapshotted "$p $c $r" ;;
    esac
    kill -9 $vmm $qpid
else
    skip a_vhost_user_vm_is_not_snapshotted "no curl"
fi
exit $failed
