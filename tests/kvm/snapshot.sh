#!/bin/sh
# Snapshots through the real client: the tiny guest counting (cmdline "count": each line after
# checking its memory and using virtio-rng, -blk and -console) on two vCPUs, paused and saved
# with curl, the VMM killed, then brought back in new processes (through the API, from the
# command line, twice at once) where the count goes on; then every bad file and request. POSIX
# sh (busybox inside the nested KVM host).
suite=snapshot
tests="a_paused_guest_is_saved_to_two_files the_restored_guest_counts_on_from_where_it_stopped
       its_devices_work_after_restore each_restore_is_a_new_generation_and_told_so restore_from_the_command_line_counts_on
       two_restores_at_once_count_on_each_with_its_own_disk a_snapshot_of_a_restored_guest_restores_too
       bad_snapshot_files_are_refused_with_a_reason bad_snapshot_requests_get_400_with_a_reason
       another_device_set_is_refused a_guest_of_32_vcpus_comes_back_with_every_one"
@KVM_TEST_SH@
[ -n "$curl" ] || skip_all "no curl"
req_timeout=90 # (a sanitized VMM writes and reads 128 MiB snapshots slowly)
dir=$(mktemp -d /tmp/bellhop-snap.XXXXXX)
disk=$dir/disk.img state=$dir/vm.state mem=$dir/vm.mem
dd if=/dev/zero of=$disk bs=1024 count=1024 2>/dev/null
pids=
cleanup() { for p in $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$dir"; }
trap cleanup EXIT

disk_count() { tr -d '\000' < $1 | grep -o 'count [0-9]*' | head -1 | cut -d' ' -f2; } # sector 3: the last count
# serve SOCK OUT: a fresh bellhop on the API socket, its pid in $pid
serve() {
    $bellhop run --console virtio --api-sock $1 > $2 2>&1 < /dev/null &
    pid=$!; pids="$pids $pid"
    wait_sock $1
}

# The first VMM: boots, counts, is paused and saved, then killed.
sock=$dir/a.sock out=$dir/a.out
serve $sock $out; first=$pid
req $sock PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "count"}'
# Through io_uring in the plain build (the snapshot completes what is in flight first); the
# sanitizer builds take the default, the synchronous path for a file in tmpfs, to save time.
engine=Async
[ -n "$sanitized" ] && engine=Sync
req $sock PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$disk'", "is_root_device": true, "is_read_only": false, "io_engine": "'$engine'"}'
req $sock PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 128}'
req $sock PUT /entropy '{}'
req $sock PUT /actions '{"action_type": "InstanceStart"}'
wait_for $out "^count 3:" 90
req $sock PUT /snapshot/create '{"snapshot_type": "Full", "snapshot_path": "'$state'", "mem_file_path": "'$mem'"}'
running=$code:$body
req $sock PATCH /vm '{"state": "Paused"}'; cp=$code
sleep 0.3
req $sock PUT /snapshot/create '{"snapshot_type": "Full", "snapshot_path": "'$state'", "mem_file_path": "'$mem'"}'
saved=$(($(next_count $out) - 1)) # (the restored guest's first count is saved + 1)
kill -9 $first; wait $first 2>/dev/null
memsize=$(wc -c < $mem 2>/dev/null)
if [ "$cp $code" = "204 204" ] && [ "$(head -c 6 $state 2>/dev/null)" = BHSNAP ] && [ "$memsize" = 134217728 ] &&
   [ -n "$saved" ] && grep -q "smp-startup      PASS" $out; then
    pass a_paused_guest_is_saved_to_two_files
else
    fail a_paused_guest_is_saved_to_two_files "pause $cp, create $code $body, mem $memsize bytes, count $saved: $(tail -3 $out)"
fi
case "$running" in
    *"not paused"*) ;;
    *) fail bad_snapshot_requests_get_400_with_a_reason "create while running: $running"; bad_running=1 ;;
esac
cp $disk $dir/disk.saved

# Brought back through the API in a new process: the count goes on from the saved one.
sock=$dir/b.sock out=$dir/b.out
serve $sock $out; second=$pid
req $sock PUT /snapshot/load '{"snapshot_path": "'$state'", "mem_backend": {"backend_type": "File", "backend_path": "'$mem'"}, "resume_vm": true}'
cl=$code:$body
if [ "$cl" = "204:" ] && wait_for $out "^count $((saved + 2)):" 60 && [ "$(first_count $out)" = $((saved + 1)) ]; then
    pass the_restored_guest_counts_on_from_where_it_stopped
else
    fail the_restored_guest_counts_on_from_where_it_stopped "load $cl, saved at $saved, then $(first_count $out)..$(last_count $out): $(tail -3 $out)"
fi
# (the console line of count saved+1 may have gone out before the pause, from the first VMM)
if counts_ok $out && grep -q "^console $((saved + 2))" $out; then
    pass its_devices_work_after_restore
else
    fail its_devices_work_after_restore "$(not_ok $out)"
fi
# The VM generation ID (firmware/vmgenid.h): new in the restored guest, and announced once.
generation() { grep "^count $2:" $1 | tr -d '\r' | sed -n 's/.*generation \([0-9a-f]*\), \([0-9]*\) announced/\1 \2/p'; }
before=$(generation $dir/a.out "[0-9]*" | tail -1) after=$(generation $out $((saved + 2))) # (a.out's last whole line)
if [ -n "$before" ] && [ "${before% *}" != "${after% *}" ] && [ "${before#* }" = 0 ] && [ "${after#* }" = 1 ]; then
    pass each_restore_is_a_new_generation_and_told_so
else
    fail each_restore_is_a_new_generation_and_told_so "before '$before', after '$after' (generation, announcements)"
fi
# Its own snapshot, taken in turn, restores as well (checked below, in the plain build only:
# under a sanitizer, writing 128 MiB is most of this suite's time).
req $sock PATCH /vm '{"state": "Paused"}'
if [ -z "$sanitized" ]; then
    req $sock PUT /snapshot/create '{"snapshot_path": "'$dir/b.state'", "mem_file_path": "'$dir/b.mem'"}'; cb=$code:$body
    bsaved=$(($(next_count $out) - 1)) # (the restored guest's first count is saved + 1)
fi
# (refused before anything is written: checked with the bad requests)
req $sock PUT /snapshot/create '{"snapshot_path": "'$dir/b.state'", "mem_file_path": "'$mem'"}'; same=$code:$body
req $sock PUT /snapshot/create '{"snapshot_type": "Diff", "snapshot_path": "'$dir/x'", "mem_file_path": "'$dir/y'"}'; diff_type=$code:$body
req $sock PUT /snapshot/create '{"snapshot_path": "'$dir/x'"}'; no_mem=$code:$body
kill -9 $second; wait $second 2>/dev/null

# From the command line, no API at all.
cp $dir/disk.saved $disk
out=$dir/c.out
$bellhop run --console virtio --restore $state --mem-file $mem > $out 2>&1 < /dev/null &
pid=$!; pids="$pids $pid"
if wait_for $out "^count $((saved + 2)):" 60 && [ "$(first_count $out)" = $((saved + 1)) ] && counts_ok $out; then
    pass restore_from_the_command_line_counts_on
else
    fail restore_from_the_command_line_counts_on "saved at $saved, then $(first_count $out)..$(last_count $out): $(tail -3 $out)"
fi
kill -9 $pid; wait $pid 2>/dev/null

# Sanitizer builds run the single restores; these and the bad files (the parsers are unit-tested
# and fuzzed under ASan) run in the plain build, to keep make test short.
if [ -n "$sanitized" ]; then
    for t in two_restores_at_once_count_on_each_with_its_own_disk a_snapshot_of_a_restored_guest_restores_too \
             bad_snapshot_files_are_refused_with_a_reason; do skip $t "a sanitizer build"; done
else
# Twice at once, each loaded paused, given its own copy of the disk, then resumed.
for x in d e; do
    cp $dir/disk.saved $dir/$x.img
    serve $dir/$x.sock $dir/$x.out; eval pid_$x=$pid
done
for x in d e; do
    req $dir/$x.sock PUT /snapshot/load '{"snapshot_path": "'$state'", "mem_backend": {"backend_type": "File", "backend_path": "'$mem'"}, "resume_vm": false}'
    l=$code
    req $dir/$x.sock PATCH /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$dir/$x.img'"}'; p=$code
    req $dir/$x.sock PATCH /vm '{"state": "Resumed"}'
    eval st_$x="$l$p$code"
done
wait_for $dir/d.out "^count $((saved + 3)):" 60; wait_for $dir/e.out "^count $((saved + 3)):" 60
kill -9 $pid_d $pid_e; wait $pid_d $pid_e 2>/dev/null
# Each disk holds the last count its own guest printed (the sector is written before the line),
# or the one after (written, not yet printed).
disk_holds_its_count() {
    n=$(disk_count $dir/$1.img) last=$(last_count $dir/$1.out)
    [ -n "$n" ] && [ -n "$last" ] && [ "$last" -gt $((saved + 2)) ] && { [ "$n" = "$last" ] || [ "$n" = $((last + 1)) ]; }
}
if [ "$st_d$st_e" = 204204204204204204 ] && counts_ok $dir/d.out && counts_ok $dir/e.out &&
   [ "$(first_count $dir/d.out)" = $((saved + 1)) ] && [ "$(first_count $dir/e.out)" = $((saved + 1)) ] &&
   disk_holds_its_count d && disk_holds_its_count e &&
   [ "$(generation $dir/d.out $((saved + 3)))" != "$(generation $dir/e.out $((saved + 3)))" ]; then
    pass two_restores_at_once_count_on_each_with_its_own_disk
else
    fail two_restores_at_once_count_on_each_with_its_own_disk "statuses $st_d $st_e, saved at $saved, disks at $(disk_count $dir/d.img) $(disk_count $dir/e.img), printed $(last_count $dir/d.out) $(last_count $dir/e.out): $(not_ok $dir/d.out) / $(not_ok $dir/e.out)"
fi

out=$dir/f.out
$bellhop run --console virtio --restore $dir/b.state --mem-file $dir/b.mem > $out 2>&1 < /dev/null &
pid=$!; pids="$pids $pid"
if [ "$cb" = "204:" ] && wait_for $out "^count $((bsaved + 2)):" 60 && [ "$(first_count $out)" = $((bsaved + 1)) ] &&
   counts_ok $out; then
    pass a_snapshot_of_a_restored_guest_restores_too
else
    fail a_snapshot_of_a_restored_guest_restores_too "create $cb, saved at $bsaved, then $(first_count $out): $(not_ok $out)"
fi
kill -9 $pid; wait $pid 2>/dev/null
fi

# Files that are not this snapshot: each a one-line error, exit status 1, no crash.
head -c 1000 $state > $dir/cut.state
cp $state $dir/flip.state
printf 'X' | dd of=$dir/flip.state bs=1 seek=300 conv=notrunc 2>/dev/null
head -c 1048576 $mem > $dir/short.mem
badfile=
refused() { # WANT STATE MEM [FLAGS]
    want=$1 st=$2 m=$3; shift 3
    $bellhop run --console virtio "$@" --restore $st --mem-file $m > $dir/bad.out 2>&1 < /dev/null; rc=$?
    if [ $rc != 1 ] || ! grep -q "$want" $dir/bad.out || [ "$(wc -l < $dir/bad.out)" -gt 2 ]; then
        badfile="$badfile [$st $m: status $rc, $(head -c 300 $dir/bad.out); wanted '$want']"
    fi
}
if [ -z "$sanitized" ]; then
refused "CRC mismatch" $dir/cut.state $mem
refused "CRC mismatch" $dir/flip.state $mem
refused "not a bellhop snapshot state file" $guest $mem
refused "not a bellhop snapshot state file" $dir/short.mem $mem
refused "the snapshot's guest has 134217728" $state $dir/short.mem
refused "No such file" $dir/nonexistent $mem
refused "not a regular file" $dir $mem
[ -z "$badfile" ] && pass bad_snapshot_files_are_refused_with_a_reason || fail bad_snapshot_files_are_refused_with_a_reason "$badfile"
fi

# The same snapshot, a machine without the virtio console: the device lists differ.
$bellhop run --restore $state --mem-file $mem > $dir/dev.out 2>&1 < /dev/null; rc=$?
if [ $rc = 1 ] && grep -q "the snapshot has virtio-console where this machine has virtio-blk" $dir/dev.out; then
    pass another_device_set_is_refused
else
    fail another_device_set_is_refused "status $rc: $(head -c 300 $dir/dev.out)"
fi

# 32 vCPUs, twice as many as bellhop once ran: the state file holds a section for each, and
# the restore (which refuses a vCPU count other than the configuration's) sets every one.
sock=$dir/h.sock out=$dir/h.out
serve $sock $out; big=$pid
req $sock PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "count"}'
req $sock PUT /machine-config '{"vcpu_count": 32, "mem_size_mib": 32}'
req $sock PUT /actions '{"action_type": "InstanceStart"}'
wait_for $out "^count 2:" 90
req $sock PATCH /vm '{"state": "Paused"}'; hp=$code
req $sock PUT /snapshot/create '{"snapshot_path": "'$dir/h.state'", "mem_file_path": "'$dir/h.mem'"}'; hc=$code:$body
hsaved=$(($(next_count $out) - 1))
kill -9 $big; wait $big 2>/dev/null
$bellhop run --console virtio --restore $dir/h.state --mem-file $dir/h.mem > $dir/i.out 2>&1 < /dev/null &
pid=$!; pids="$pids $pid"
if [ "$hp $hc" = "204 204:" ] && grep -q "smp-startup      PASS: 32 of 32 CPUs running" $out &&
   wait_for $dir/i.out "^count $((hsaved + 2)):" 60 && [ "$(first_count $dir/i.out)" = $((hsaved + 1)) ] &&
   ! grep -q -e 'WARNING: ThreadSanitizer' -e 'ERROR: AddressSanitizer' -e 'runtime error' $out $dir/i.out; then
    pass a_guest_of_32_vcpus_comes_back_with_every_one
else
    fail a_guest_of_32_vcpus_comes_back_with_every_one "pause $hp, create $hc, saved at $hsaved: $(tail -2 $out | tr '\n' '|') then $(tail -3 $dir/i.out | tr '\n' '|')"
fi
kill -9 $pid; wait $pid 2>/dev/null

sock=$dir/g.sock
serve $sock $dir/g.out; last=$pid
nbad=0 bad_seen=
bad PUT /snapshot/create '{"snapshot_path": "'$dir/x'", "mem_file_path": "'$dir/y'"}' "not supported before starting the microVM"
bad PUT /snapshot/load '{"snapshot_path": "'$state'"}' 'either `mem_backend` or `mem_file_path` is required'
bad PUT /snapshot/load '{"snapshot_path": "'$state'", "mem_backend": {"backend_type": "Uffd", "backend_path": "/x"}}' "handler's socket /x: No such file"
bad PUT /snapshot/load '{"snapshot_path": "'$state'", "mem_file_path": "'$mem'", "track_dirty_pages": "yes"}' "Expected true or false"
bad PUT /snapshot/load '{"snapshot_path": "'$dir/cut.state'", "mem_file_path": "'$mem'"}' "CRC mismatch"
bad PUT /snapshot/load '{"snapshot_path": "'$state'", "mem_file_path": "'$dir/short.mem'"}' "the snapshot's guest has"
bad PUT /snapshot/load '{"snapshot_path": 7, "mem_file_path": "'$mem'"}' "Expected string"
bad PUT /snapshot/load '{"snapshot_path": "'$state'", "mem_file_path": "'$mem'", "extra": 1}' 'unknown field `extra`'
req $sock PUT /boot-source '{"kernel_image_path": "'$guest'"}'
bad PUT /snapshot/load '{"snapshot_path": "'$state'", "mem_file_path": "'$mem'"}' "nothing configured"
case "$same" in "400:"*"is the memory file this VM runs on"*) ;; *) bad_seen="$bad_seen [create onto its own memory file: $same]" ;; esac
case "$diff_type" in "400:"*"track_dirty_pages"*) ;; *) bad_seen="$bad_seen [a Diff snapshot without tracking: $diff_type]" ;; esac
case "$no_mem" in "400:"*"mem_file_path"*) ;; *) bad_seen="$bad_seen [no mem_file_path: $no_mem]" ;; esac
if [ -z "$bad_seen" ] && [ -z "${bad_running:-}" ]; then pass bad_snapshot_requests_get_400_with_a_reason; else
    fail bad_snapshot_requests_get_400_with_a_reason "$nbad requests:$bad_seen"; fi
kill -9 $last; wait $last 2>/dev/null
exit $failed
