#!/bin/sh
# The control plane through its real client: bellhop run --api-sock driven only by curl
# --unix-socket with the requests of Firecracker's getting-started guide (the tiny guest as the
# kernel, a disk, entropy), then pause and resume, metrics, a table of bad requests; and the
# same VM from --config-file alone. POSIX sh (busybox inside the nested KVM host).
suite=api
tests="requests_are_refused_before_start a_kernel_that_is_not_a_kernel_is_refused_at_start
       instance_start_boots_the_guest get_reports_running pause_stops_the_guest resume_goes_on
       flush_metrics_writes_exit_counts patch_drive_swaps_the_backing_file bad_requests_get_400_with_a_reason the_vm_runs_after_them
       the_socket_is_removed_at_the_end config_file_alone_boots_the_same_vm
       an_existing_file_is_not_taken_for_the_socket requests_are_slices_on_the_loop_track
       mmds_patch_needs_a_put_first mmds_put_then_get_gives_it_back mmds_patch_merges_and_null_removes
       mmds_past_its_limit_is_413_and_changes_nothing mmds_bad_json_is_400 mmds_config_takes_known_interfaces_only
       metadata_fills_the_store mmds_config_is_refused_after_start mmds_store_changes_while_the_vm_runs
       bad_metadata_is_refused"
@KVM_TEST_SH@
[ -n "$curl" ] || skip_all "no curl"
dir=$(mktemp -d /tmp/bellhop-api.XXXXXX)
sock=$dir/api.sock out=$dir/out disk=$dir/disk.img metrics=$dir/metrics.json
dd if=/dev/zero of=$disk bs=1024 count=1024 2>/dev/null
pid=
cleanup() { [ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

ticks() { grep -c '^tick ' $out; }

$bellhop run --api-sock $sock > $out 2>&1 &
pid=$!
wait_sock $sock

nbad=0 bad_seen=
bad PUT /machine-config '{"vcpu_count": 0, "mem_size_mib": 128}' "vcpu_count 0: must be 1 to"
bad PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": "lots"}' "Expected integer, got string"
bad PUT /machine-config '{"vcpu_count": 1}' "mem_size_mib"
bad PUT /machine-config '{"vcpu_count": 3, "mem_size_mib": 128, "smt": true}' "with smt, 1 or an even number"
bad PUT /boot-source '{"kernel_image_path": "/nonexistent/vmlinux"}' "No such file"
bad PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_arg": "typo"}' 'unknown field `boot_arg`'
bad PUT /drives/rootfs '{"drive_id": "other", "path_on_host": "'$disk'", "is_root_device": true}' "differs from the path's rootfs"
bad PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$dir'", "is_root_device": true}' "not a regular file"
bad PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "01:00:00:00:00:01"}' "not a unicast MAC"
bad PUT /actions '{"action_type": "InstanceStart"}' "no boot source"
bad PUT /actions '{"action_type": "FlushMetrics"}' "PUT /metrics first"
bad PATCH /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$disk'"}' "not supported before starting the microVM"
bad PUT /drives/dummy!! '{"drive_id": "dummy!!", "path_on_host": "'$disk'", "is_root_device": false}' "alphanumeric characters and underscores"
bad PUT /balloon '{"amount_mib": 100000, "deflate_on_oom": false}' "at most the guest's memory"
bad PATCH /balloon '{"amount_mib": 1}' "not supported before starting the microVM"
bad PUT /vsock '{"guest_cid": 2, "uds_path": "'$dir'/v.sock"}' "guest_cid 2"
bad PATCH /machine-config '{}' "Empty PATCH request."
bad GET /machine-config '{"vcpu_count": 1}' "GET request cannot have a body."
[ -z "$bad_seen" ] && [ "$code" = 400 ] && pass requests_are_refused_before_start ||
    fail requests_are_refused_before_start "$bad_seen"

# Not a kernel: refused at InstanceStart with the loader's reason; the API stays, and a real
# kernel then starts.
req $sock PUT /boot-source '{"kernel_image_path": "'$disk'"}'
req $sock PUT /actions '{"action_type": "InstanceStart"}'
case "$code $body" in
    "400 {\"fault_message\":\"InstanceStart: "*) pass a_kernel_that_is_not_a_kernel_is_refused_at_start ;;
    *) fail a_kernel_that_is_not_a_kernel_is_refused_at_start "$code $body" ;;
esac

# Firecracker's getting-started requests, with the tiny guest
req $sock PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "ticks"}'; c1=$code
req $sock PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$disk'", "is_root_device": true, "is_read_only": false}'; c2=$code
req $sock PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256}'; c3=$code
req $sock PUT /entropy '{}'; c4=$code
req $sock PUT /metrics '{"metrics_path": "'$metrics'"}'; c5=$code
req $sock PUT /actions '{"action_type": "InstanceStart"}'
if [ "$c1$c2$c3$c4$c5$code" = 204204204204204204 ] && wait_for $out "guest: 0 failed" 60 &&
   grep -q "selftest virtio-blk-rw    PASS" $out && grep -q "selftest virtio-rng       PASS" $out; then
    pass instance_start_boots_the_guest
else
    fail instance_start_boots_the_guest "statuses $c1 $c2 $c3 $c4 $c5 $code: $(tail -5 $out)"
fi
req $sock GET /
case "$body" in *'"state":"Running"'*) pass get_reports_running ;; *) fail get_reports_running "$code $body" ;; esac

wait_for $out "^tick 2" 30
req $sock PATCH /vm '{"state": "Paused"}'; cp=$code
req $sock GET /; state=$body
n1=$(ticks); sleep 1; n2=$(ticks)
case "$cp $state" in
    *'204 '*'"state":"Paused"'*) [ "$n1" = "$n2" ] && pass pause_stops_the_guest ||
                                  fail pause_stops_the_guest "ticks went on while paused: $n1 then $n2" ;;
    *) fail pause_stops_the_guest "$cp $state" ;;
esac
req $sock PATCH /vm '{"state": "Resumed"}'
if [ "$code" = 204 ] && wait_for $out "^tick $((n2 + 2))([^0-9]|\$)" 30; then
    pass resume_goes_on
else
    fail resume_goes_on "$code $body; $(ticks) ticks after $n2"
fi

req $sock PUT /actions '{"action_type": "FlushMetrics"}'
exits=$(grep -o '"exits":[0-9]*' $metrics 2>/dev/null | tail -1)
if [ "$code" = 204 ] && [ -n "$exits" ] && [ "${exits#*:}" -gt 0 ] && grep -q '"exit_io":[1-9]' $metrics; then
    pass flush_metrics_writes_exit_counts
else
    fail flush_metrics_writes_exit_counts "$code $body: $(tail -c 300 $metrics 2>/dev/null)"
fi

# The disk swapped under the running guest: it sees the new size and reads the new data.
disk2=$dir/disk2.img
dd if=/dev/zero of=$disk2 bs=1024 count=2048 2>/dev/null
printf 'the second disk' | dd of=$disk2 conv=notrunc 2>/dev/null
req $sock PATCH /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$disk2'"}'
cpd=$code
req $sock GET /vm/config
if [ "$cpd" = 204 ] && wait_for $out "guest: disk changed: 4096 sectors, read 0, sector 0: the second disk" 30 &&
   case "$body" in *"$disk2"*) true ;; *) false ;; esac; then
    pass patch_drive_swaps_the_backing_file
else
    fail patch_drive_swaps_the_backing_file "$cpd; $(grep 'disk changed' $out); $body"
fi

nbad=0 bad_seen=
bad PUT /actions '{"action_type": "InstanceStart"}' "not supported after starting the microVM"
bad PUT /actions '{"action_type": "Explode"}' "action_type Explode"
bad PUT /actions '{}' "action_type"
bad PUT /actions '{"action_type": "FlushMetrics", "extra": 1}' 'unknown field `extra`'
bad PUT /actions '{"action_type": "FlushMetrics", "action_type": "FlushMetrics"}' "duplicate"
bad PUT /actions '{"action_type": ' "An error occurred when deserializing the json body of a request"
bad PUT /actions '[1, 2]' "must be a JSON object"
bad PUT /actions "Empty PUT request."
bad PUT /actions 'action_type=InstanceStart' "An error occurred when deserializing the json body of a request"
bad PATCH /vm '{"state": "Sleeping"}' "Paused or Resumed"
bad PATCH /vm '{"state": 1}' "Expected string, got integer"
bad PATCH /vm '{"state": "Paused", "now": true}' 'unknown field `now`'
bad PUT /boot-source '{"kernel_image_path": "'$guest'"}' "not supported after starting the microVM"
bad PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128}' "not supported after starting the microVM"
bad PATCH /machine-config '{"vcpu_count": 1}' "not supported after starting the microVM"
bad PUT /drives/data '{"drive_id": "data", "path_on_host": "'$disk'", "is_root_device": false}' "not supported after starting the microVM"
bad PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0"}' "not supported after starting the microVM"
bad PUT /logger '{"log_path": "/tmp/x"}' "not supported after starting the microVM"
bad PUT /metrics '{"metrics_path": "/tmp/x"}' "not supported after starting the microVM"
bad PATCH /drives/rootfs '{"drive_id": "rootfs", "rate_limiter": {"bandwidth": {"size": 1}}}' "refill_time"
bad PATCH /drives/nope '{"drive_id": "nope", "path_on_host": "'$disk'"}' "no such drive"
bad PATCH /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "/nonexistent"}' "No such file"
bad GET /nonexistent "Invalid request method and/or path: GET /nonexistent."
bad GET /vm/config/more "Invalid request method and/or path: GET /vm/config/more."
bad DELETE / "Invalid request method and/or path: DELETE /."
bad PUT /drives/ '{}' "The ID cannot be empty."
if [ -z "$bad_seen" ] && [ $nbad -ge 20 ]; then pass bad_requests_get_400_with_a_reason; else
    fail bad_requests_get_400_with_a_reason "$nbad requests:$bad_seen"; fi
req $sock GET /
n3=$(ticks)
if case "$body" in *'"state":"Running"'*) true ;; *) false ;; esac && wait_for $out "^tick $((n3 + 1))([^0-9]|\$)" 30; then
    pass the_vm_runs_after_them
else
    fail the_vm_runs_after_them "$body; ticks stuck at $n3"
fi

kill -TERM $pid; wait $pid; st=$?; pid=
[ ! -e $sock ] && pass the_socket_is_removed_at_the_end || fail the_socket_is_removed_at_the_end "status $st, $(ls -l $sock)"

cat > $dir/vm.json <<EOF
{
  "boot-source": {"kernel_image_path": "$guest", "boot_args": "exit=0"},
  "drives": [{"drive_id": "rootfs", "path_on_host": "$disk", "is_root_device": true, "is_read_only": false}],
  "machine-config": {"vcpu_count": 2, "mem_size_mib": 256},
  "entropy": {}
}
EOF
$bellhop run --config-file $dir/vm.json > $out 2>&1 < /dev/null; st=$?
if [ $st = 0 ] && grep -q "guest: 0 failed" $out && grep -q "selftest virtio-blk-rw    PASS" $out &&
   grep -q "selftest virtio-rng       PASS" $out && grep -q "selftest smp" $out; then
    pass config_file_alone_boots_the_same_vm
else
    fail config_file_alone_boots_the_same_vm "status $st: $(tail -5 $out)"
fi

echo keep > $dir/not-a-socket
$bellhop run --api-sock $dir/not-a-socket > $out 2>&1; st=$?
if [ $st = 1 ] && grep -q "exists and is not a socket" $out && [ "$(cat $dir/not-a-socket)" = keep ]; then
    pass an_existing_file_is_not_taken_for_the_socket
else
    fail an_existing_file_is_not_taken_for_the_socket "status $st: $(cat $out)"
fi

# With --trace-file, each request served while the VM runs is a named slice on the loop's
# track; the VM then ends by its console's Ctrl-A x, so that the timeline is written.
mkfifo $dir/console
$bellhop run --api-sock $sock --trace-file $dir/trace.json < $dir/console > $out 2>&1 &
pid=$!
exec 9> $dir/console
wait_sock $sock
req $sock PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "wait"}'
req $sock PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
req $sock PUT /actions '{"action_type": "InstanceStart"}'
wait_for $out "guest: waiting" 60
req $sock GET /; c1=$code
req $sock PATCH /vm '{"state": "Paused"}'; c2=$code
req $sock PATCH /vm '{"state": "Resumed"}'; c3=$code
printf '\001x' >&9
exec 9>&-
wait $pid; st=$?; pid=
if [ "$c1$c2$c3" = 200204204 ] && grep -q '"api GET /"' $dir/trace.json && [ "$(grep -c '"api PATCH /vm"' $dir/trace.json)" = 2 ]; then
    pass requests_are_slices_on_the_loop_track
else
    fail requests_are_slices_on_the_loop_track "status $st, requests $c1 $c2 $c3: $(grep -o '"api [^"]*"' $dir/trace.json 2>/dev/null | sort | uniq -c)"
fi
# MMDS from the host's side: the store through PUT, PATCH and GET /mmds (Firecracker's JSON
# merge patch), its limit, and its configuration before start.
kill_vmm() { [ -n "$pid" ] && kill -TERM $pid && wait $pid; pid=; }
msock=$dir/mmds.sock
$bellhop run --api-sock $msock --mmds-size-limit 100 > $out 2>&1 &
pid=$!
wait_sock $msock
req $msock PATCH /mmds '{"latest": {}}'
case "$code $body" in
    *400*"not initialized"*) pass mmds_patch_needs_a_put_first ;;
    *) fail mmds_patch_needs_a_put_first "$code $body" ;;
esac
store='{"latest":{"meta-data":{"ami-id":"ami-1","old":"o"}}}'
req $msock PUT /mmds "$store"; c1=$code
req $msock GET /mmds
[ "$c1 $code $body" = "204 200 $store" ] && pass mmds_put_then_get_gives_it_back ||
    fail mmds_put_then_get_gives_it_back "$c1 $code $body"
req $msock PATCH /mmds '{"latest":{"meta-data":{"old":null,"ami-id":"ami-2"},"user-data":"u"}}'; c1=$code
req $msock GET /mmds
store='{"latest":{"meta-data":{"ami-id":"ami-2"},"user-data":"u"}}'
[ "$c1 $code $body" = "204 200 $store" ] && pass mmds_patch_merges_and_null_removes ||
    fail mmds_patch_merges_and_null_removes "$c1 $code $body"
big='{"k":"'$(printf '%0120d' 0)'"}'
req $msock PUT /mmds "$big"; c1="$code $body"
req $msock PATCH /mmds "$big"; c2="$code $body"
req $msock GET /mmds
case "$c1|$c2" in
    '413 {"fault_message":"'*'|413 {"fault_message":"'*)
        [ "$body" = "$store" ] && pass mmds_past_its_limit_is_413_and_changes_nothing ||
            fail mmds_past_its_limit_is_413_and_changes_nothing "the store became $body" ;;
    *) fail mmds_past_its_limit_is_413_and_changes_nothing "$c1 | $c2" ;;
esac
nbad=0 bad_seen= sock_was=$sock sock=$msock
bad PUT /mmds '{"latest": ' "An error occurred when deserializing the json body of a request"
bad PATCH /mmds 'latest=1' "An error occurred when deserializing the json body of a request"
bad PUT /mmds '"a string"' "An error occurred when deserializing the json body of a request"
bad PUT /mmds '[1]' "must be a JSON object"
req $msock GET /mmds
[ -z "$bad_seen" ] && [ "$body" = "$store" ] && pass mmds_bad_json_is_400 || fail mmds_bad_json_is_400 "$bad_seen; $body"
nbad=0 bad_seen=
bad PUT /mmds/config '{"network_interfaces": ["eth0"]}' "does not correspond to any existing network interface"
req $msock PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0"}'; c1=$code
bad PUT /mmds/config '{"network_interfaces": []}' "is empty"
bad PUT /mmds/config '{"network_interfaces": ["eth0"], "ipv4_address": "10.0.2.2"}' "not link local"
bad PUT /mmds/config '{"network_interfaces": ["eth0"], "version": "V3"}' "unknown variant"
bad PUT /mmds/config '{"network_interfaces": ["eth0"], "port": 80}' 'unknown field `port`'
req $msock PUT /mmds/config '{"network_interfaces": ["eth0"], "version": "V2", "ipv4_address": "169.254.170.2"}'; c2=$code
req $msock GET /vm/config
if [ -z "$bad_seen" ] && [ "$c1$c2" = 204204 ] &&
   case "$body" in *'"mmds-config":{"version":"V2","network_interfaces":["eth0"],"ipv4_address":"169.254.170.2","imds_compat":false}'*) true ;; *) false ;; esac; then
    pass mmds_config_takes_known_interfaces_only
else
    fail mmds_config_takes_known_interfaces_only "$c1 $c2$bad_seen; $body"
fi
sock=$sock_was
kill_vmm

# --metadata: the store's first content; on a running VM, the store made before start changes
# and the configuration does not.
printf '{"latest": {"meta-data": {"instance-id": "i-1"}}}\n' > $dir/metadata.json
$bellhop run --api-sock $msock --metadata $dir/metadata.json > $out 2>&1 < /dev/null &
pid=$!
wait_sock $msock
req $msock GET /mmds
[ "$code $body" = '200 {"latest":{"meta-data":{"instance-id":"i-1"}}}' ] && pass metadata_fills_the_store ||
    fail metadata_fills_the_store "$code $body: $(tail -3 $out)"
req $msock PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "wait"}'
req $msock PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
req $msock PUT /actions '{"action_type": "InstanceStart"}'; c1=$code
wait_for $out "guest: waiting" 60
req $msock PUT /mmds/config '{"network_interfaces": ["eth0"]}'
case "$c1 $code $body" in
    "204 400 "*"not supported after starting the microVM"*) pass mmds_config_is_refused_after_start ;;
    *) fail mmds_config_is_refused_after_start "$c1 $code $body" ;;
esac
req $msock PATCH /mmds '{"latest": {"user-data": "late"}}'; c1=$code
req $msock GET /mmds
[ "$c1 $code $body" = '204 200 {"latest":{"meta-data":{"instance-id":"i-1"},"user-data":"late"}}' ] &&
    pass mmds_store_changes_while_the_vm_runs || fail mmds_store_changes_while_the_vm_runs "$c1 $code $body"
kill_vmm

printf '{"latest": ' > $dir/bad.json
$bellhop run --api-sock $msock --metadata $dir/bad.json > $out 2>&1 < /dev/null; st=$?
$bellhop run --api-sock $msock --metadata $dir/nonexistent.json >> $out 2>&1 < /dev/null; st2=$?
if [ "$st$st2" = 11 ] && [ "$(grep -c -- '^bellhop: --metadata ' $out)" = 2 ] && [ ! -e $msock ]; then
    pass bad_metadata_is_refused
else
    fail bad_metadata_is_refused "status $st $st2: $(cat $out)"
fi
exit $failed
