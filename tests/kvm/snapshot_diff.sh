#!/bin/sh
# Diff snapshots through the real client: the tiny guest counting ("count dirty=2": each line
# also moves a word in every page of its top 2 MiB on, checked, the pages a diff must carry)
# with track_dirty_pages, saved Full, counting on, saved Diff; the diff alone is refused at
# restore, rebased onto the Full's memory file it restores and counts on from the second
# point; a Diff of that restored guest chains on; a Diff with nothing before it is all the
# memory there is (rebased onto zeros); a Diff without tracking is a 400, and snapshot/load's
# track_dirty_pages turns tracking on for a guest saved without it; rebase refuses what
# cannot be a base and its diff. POSIX sh (busybox inside the nested KVM host).
suite=snapshot_diff
tests="a_full_then_a_diff_are_written the_diff_alone_is_refused_at_restore
       the_rebased_pair_counts_on_from_the_second_point a_diff_of_a_restored_guest_chains_on
       the_first_diff_after_boot_is_all_the_memory a_diff_without_tracking_is_refused tracking_turned_on_at_load_gives_diffs
       rebase_refuses_files_that_are_not_a_base_and_its_diff"
@KVM_TEST_SH@
[ -n "$curl" ] || skip_all "no curl"
req_timeout=90 # (a sanitized VMM writes and reads 128 MiB snapshots slowly)
dir=$(mktemp -d /tmp/bellhop-diff.XXXXXX)
pids=
cleanup() { for p in $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$dir"; }
trap cleanup EXIT

blocks() { du -k $1 | cut -f1; } # KiB on disk: a sparse file's data
# boot SOCK OUT DISK TRACK: a fresh bellhop counting on the API socket, its pid in $pid
boot() {
    $bellhop run --console virtio --api-sock $1 > $2 2>&1 < /dev/null &
    pid=$!; pids="$pids $pid"
    wait_sock $1
    dd if=/dev/zero of=$3 bs=1024 count=1024 2>/dev/null
    req $1 PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "count dirty=2"}'
    engine=Async # io_uring's reads into guest RAM are pages a diff must have too
    [ -n "$sanitized" ] && engine=Sync
    req $1 PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$3'", "is_root_device": true, "is_read_only": false, "io_engine": "'$engine'"}'
    req $1 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 128, "track_dirty_pages": '$4'}'
    req $1 PUT /entropy '{}'
    req $1 PUT /actions '{"action_type": "InstanceStart"}'; started=$code
}
# restored STATE MEM OUT SAVED: a --restore of the pair counts on from SAVED + 1, its checks all ok
restored() {
    $bellhop run --console virtio --restore $1 --mem-file $2 > $3 2>&1 < /dev/null &
    rpid=$!; pids="$pids $rpid"
    wait_for $3 "^count $(($4 + 2)):" 60; ok=$?
    kill -9 $rpid; wait $rpid 2>/dev/null
    [ $ok = 0 ] && [ "$(first_count $3)" = $(($4 + 1)) ] && counts_ok $3 && clean $3
}

# A guest with tracking, saved Full after its third count and Diff two counts later.
boot $dir/a.sock $dir/a.out $dir/a.img true; first=$pid
wait_for $dir/a.out "^count 3:" 90
snap $dir/a.sock Full full $dir/a.out; full=$sc
req $dir/a.sock PATCH /vm '{"state": "Resumed"}'
wait_for $dir/a.out "^count $((saved + 2)):" 60
snap $dir/a.sock Diff diff $dir/a.out; diff=$sc saved_diff=$saved
kill -9 $first; wait $first 2>/dev/null
if [ "$started $full $diff" = "204 204204: 204204:" ] && [ "$(head -c 6 $dir/diff.state)" = BHSNAP ] &&
   [ "$(wc -c < $dir/diff.mem)" = 134217728 ] && [ "$(blocks $dir/diff.mem)" -lt "$(blocks $dir/full.mem)" ] &&
   [ "$(blocks $dir/diff.mem)" -ge 2048 ] && counts_ok $dir/a.out && clean $dir/a.out; then
    pass a_full_then_a_diff_are_written
else
    fail a_full_then_a_diff_are_written "start $started, full $full, diff $diff, files $(blocks $dir/full.mem) and $(blocks $dir/diff.mem) KiB: $(not_ok $dir/a.out) $(tail -2 $dir/a.out | tr '\n' '|')"
fi

$bellhop run --console virtio --restore $dir/diff.state --mem-file $dir/diff.mem > $dir/alone.out 2>&1 < /dev/null; rc=$?
if [ $rc = 1 ] && grep -q "a diff snapshot.*rebase it onto its base first" $dir/alone.out && [ "$(wc -l < $dir/alone.out)" = 1 ]; then
    pass the_diff_alone_is_refused_at_restore
else
    fail the_diff_alone_is_refused_at_restore "status $rc: $(head -c 300 $dir/alone.out)"
fi

cp $dir/full.mem $dir/base.mem
$bellhop snapshot rebase $dir/base.mem $dir/diff.mem > $dir/rebase.out 2>&1; rb=$?
if [ $rb = 0 ] && restored $dir/diff.state $dir/base.mem $dir/b.out $saved_diff; then
    pass the_rebased_pair_counts_on_from_the_second_point
else
    fail the_rebased_pair_counts_on_from_the_second_point "rebase $rb $(cat $dir/rebase.out), saved at $saved_diff, then $(first_count $dir/b.out)..$(last_count $dir/b.out): $(not_ok $dir/b.out) $(tail -2 $dir/b.out | tr '\n' '|')"
fi

# The restored guest tracks on (the snapshot's configuration says so): its own Diff is
# relative to the memory it was restored from.
$bellhop run --console virtio --api-sock $dir/c.sock > $dir/c.out 2>&1 < /dev/null &
pid=$!; pids="$pids $pid"
wait_sock $dir/c.sock
req $dir/c.sock PUT /snapshot/load '{"snapshot_path": "'$dir/diff.state'", "mem_backend": {"backend_type": "File", "backend_path": "'$dir/base.mem'"}, "resume_vm": true}'; cl=$code
wait_for $dir/c.out "^count $((saved_diff + 3)):" 60
snap $dir/c.sock Diff diff2 $dir/c.out; diff2=$sc saved_diff2=$saved
kill -9 $pid; wait $pid 2>/dev/null
cp $dir/base.mem $dir/base2.mem
$bellhop snapshot rebase $dir/base2.mem $dir/diff2.mem > $dir/rebase2.out 2>&1; rb=$?
if [ "$cl $diff2 $rb" = "204 204204: 0" ] && restored $dir/diff2.state $dir/base2.mem $dir/d.out $saved_diff2; then
    pass a_diff_of_a_restored_guest_chains_on
else
    fail a_diff_of_a_restored_guest_chains_on "load $cl, diff $diff2, rebase $rb, saved at $saved_diff2, then $(first_count $dir/d.out): $(not_ok $dir/d.out) $(tail -2 $dir/d.out | tr '\n' '|')"
fi
rm -f $dir/base2.mem $dir/diff2.mem $dir/full.mem

# A Diff with no snapshot before it: every page written since boot (the loaders' too: the
# kernel's pages, the boot data), onto an empty file.
boot $dir/e.sock $dir/e.out $dir/e.img true
wait_for $dir/e.out "^count 2:" 90
snap $dir/e.sock Diff first $dir/e.out; first=$sc
kill -9 $pid; wait $pid 2>/dev/null
rm -f $dir/zero.mem && truncate -s 134217728 $dir/zero.mem
$bellhop snapshot rebase $dir/zero.mem $dir/first.mem > $dir/rebase3.out 2>&1; rb=$?
if [ "$first $rb" = "204204: 0" ] && restored $dir/first.state $dir/zero.mem $dir/f.out $saved; then
    pass the_first_diff_after_boot_is_all_the_memory
else
    fail the_first_diff_after_boot_is_all_the_memory "diff $first, rebase $rb $(cat $dir/rebase3.out), saved at $saved, then $(first_count $dir/f.out): $(not_ok $dir/f.out) $(tail -2 $dir/f.out | tr '\n' '|')"
fi

boot $dir/g.sock $dir/g.out $dir/g.img false; untracked_vm=$pid
wait_for $dir/g.out "^count 1:" 90
snap $dir/g.sock Diff untracked $dir/g.out; untracked=$sc
snap $dir/g.sock Full gfull $dir/g.out; gfull=$sc
kill -9 $untracked_vm; wait $untracked_vm 2>/dev/null
case "$untracked" in
    204400:*"needs dirty page tracking"*track_dirty_pages*) [ ! -e $dir/untracked.mem ] && pass a_diff_without_tracking_is_refused ||
        fail a_diff_without_tracking_is_refused "a memory file was written" ;;
    *) fail a_diff_without_tracking_is_refused "$untracked" ;;
esac

# Firecracker's snapshot/load field turns tracking on for a VM saved without it: a Diff of it
# then rebases onto the untracked Full and restores.
$bellhop run --console virtio --api-sock $dir/h.sock > $dir/h.out 2>&1 < /dev/null &
pid=$!; pids="$pids $pid"
wait_sock $dir/h.sock
req $dir/h.sock PUT /snapshot/load '{"snapshot_path": "'$dir/gfull.state'", "mem_backend": {"backend_type": "File", "backend_path": "'$dir/gfull.mem'"}, "track_dirty_pages": true, "resume_vm": true}'; hl=$code
wait_for $dir/h.out "^count 4:" 60
snap $dir/h.sock Diff hdiff $dir/h.out; hdiff=$sc
kill -9 $pid; wait $pid 2>/dev/null
$bellhop snapshot rebase $dir/gfull.mem $dir/hdiff.mem > $dir/rebase4.out 2>&1; rb=$?
if [ "$gfull $hl $hdiff $rb" = "204204: 204 204204: 0" ] && restored $dir/hdiff.state $dir/gfull.mem $dir/i.out $saved; then
    pass tracking_turned_on_at_load_gives_diffs
else
    fail tracking_turned_on_at_load_gives_diffs "full $gfull, load $hl, diff $hdiff, rebase $rb $(cat $dir/rebase4.out), saved at $saved, then $(first_count $dir/i.out): $(not_ok $dir/i.out) $(tail -2 $dir/i.out | tr '\n' '|')"
fi

# Hostile pairs: each a one-line refusal, status 1 (2 for bad usage); the base untouched.
head -c 1048576 $dir/base.mem > $dir/short.mem
sum_before=$(md5sum < $dir/base.mem)
bad=
rebase_refused() { # STATUS WANT ARGS... (of bellhop snapshot)
    want_rc=$1 want=$2; shift 2
    $bellhop snapshot "$@" > $dir/bad.out 2>&1; rc=$?
    if [ $rc != $want_rc ] || ! grep -q "$want" $dir/bad.out || [ "$(wc -l < $dir/bad.out)" != 1 ]; then
        bad="$bad [$*: status $rc, $(head -c 200 $dir/bad.out); wanted '$want']"
    fi
}
rebase_refused 1 "is not the size of" rebase $dir/base.mem $dir/short.mem
rebase_refused 1 "is larger than its base" rebase $dir/short.mem $dir/base.mem
rebase_refused 1 "not a regular file" rebase $dir/base.mem $dir
rebase_refused 1 "No such file" rebase $dir/base.mem $dir/nonexistent
rebase_refused 1 "the same file" rebase $dir/base.mem $dir/base.mem
rebase_refused 2 "usage" rebase $dir/base.mem
rebase_refused 2 "unknown command" rebase-all $dir/base.mem $dir/diff.mem
if [ -z "$bad" ] && [ -n "$sum_before" ] && [ "$(md5sum < $dir/base.mem)" = "$sum_before" ]; then
    pass rebase_refuses_files_that_are_not_a_base_and_its_diff
else
    fail rebase_refuses_files_that_are_not_a_base_and_its_diff "$bad"
fi
exit $failed
