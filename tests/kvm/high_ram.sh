#!/bin/sh
# RAM above the 32-bit hole (base/guest_mem.h: the first 3 GiB from 0, the rest from 4 GiB),
# with the tiny guest of 4608 MiB on two vCPUs counting "count dirty=64": each line moves a
# word in every page of the top 64 MiB of its highest RAM, checked, so pages above 4 GiB are
# written and read back (its page tables map 8 GiB). It boots and counts; saved Full through
# the API, the memory file holds those pages where the RAM offset says, and a restore counts
# on; its Diff, rebased onto that Full, restores and counts on (without the pages above 4 GiB
# in the diff its memory would be BAD); --mem takes every size past 3 GiB up to bellhop's
# largest, the guest seeing all of it. POSIX sh.
suite=high_ram
tests="a_guest_of_4608_mib_counts_on_its_pages_above_4_gib a_full_snapshot_holds_them_and_restores
       a_diff_rebased_onto_the_full_restores_and_counts_on mem_past_3_gib_is_taken_up_to_the_largest"
@KVM_TEST_SH@
[ -n "$curl" ] || skip_all "no curl"
req_timeout=90 # (4.5 GiB of RAM to save; a sanitized VMM does it slowly)
dir=$(mktemp -d /tmp/bellhop-high.XXXXXX)
pids=
cleanup() { for p in $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$dir"; }
trap cleanup EXIT

mib=4608 # 3 GiB of RAM from 0, the rest from 4 GiB: its top at mib + 1024 MiB
blocks() { du -k $1 | cut -f1; } # KiB on disk: a sparse file's data
# word FILE OFFSET: the 64-bit word there (decimal): in a memory file, a RAM offset
word() { dd if=$1 bs=4096 skip=$(($2 / 4096)) count=1 2>/dev/null | od -An -tu8 -N8 | tr -d ' '; }
# top_word FILE: the first word of the top page of RAM (guest-physical mib + 1024 MiB less a
# page, RAM offset mib MiB less a page), where the guest's scribble ends
top_word() { word $1 $((mib * 1048576 - 4096)); }
# scribbled FILE SAVED: the top page holds the count a guest saved after count SAVED wrote
# (or the next one's, when it was paused between its scribble and its line)
scribbled() { w=$(top_word $1); [ "$w" = $2 ] || [ "$w" = $(($2 + 1)) ]; }
# counts_on OUT SAVED: the restored guest's count goes on from SAVED + 1, every check ok
counts_on() {
    wait_for $1 "^count $(($2 + 2)):" 60 && [ "$(first_count $1)" = $(($2 + 1)) ] && counts_ok $1 && clean $1
}

# A guest with tracking, saved Full after its third count and Diff two counts later.
sock=$dir/a.sock out=$dir/a.out
$bellhop run --console virtio --api-sock $sock > $out 2>&1 < /dev/null &
first=$!; pids="$pids $first"
wait_sock $sock
dd if=/dev/zero of=$dir/disk.img bs=1024 count=1024 2>/dev/null
req $sock PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "count dirty=64"}'
req $sock PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$dir/disk.img'", "is_root_device": true, "is_read_only": false}'
req $sock PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": '$mib', "track_dirty_pages": true}'; mc=$code:$body
req $sock PUT /entropy '{}'
req $sock PUT /actions '{"action_type": "InstanceStart"}'; started=$code:$body
wait_for $out "^count 3:" 60
banner="bellhop tiny guest: $((mib - 1)) MiB RAM (its top at $((mib + 1024)) MiB)"
if [ "$mc $started" = "204: 204:" ] && grep -qF "$banner" $out && grep -q "smp-startup      PASS" $out &&
   ! grep -q "^selftest .*FAIL" $out && grep -q "^guest: 0 failed, counting" $out && counts_ok $out && clean $out; then
    pass a_guest_of_4608_mib_counts_on_its_pages_above_4_gib
else
    fail a_guest_of_4608_mib_counts_on_its_pages_above_4_gib "machine-config $mc, start $started: $(grep -e '^bellhop' -e FAIL $out | head -3 | tr '\n' '|') $(not_ok $out) $(tail -2 $out | tr '\n' '|')"
fi

snap $sock Full full $out; full=$sc saved_full=$saved
req $sock PATCH /vm '{"state": "Resumed"}'; resumed=$code
wait_for $out "^count $((saved + 2)):" 60
snap $sock Diff diff $out; diff=$sc saved_diff=$saved
kill -9 $first; wait $first 2>/dev/null

# The Full brought back through the API: its file left as it is (the restored guest's writes
# are its own), so that the Diff rebases onto it next.
sock=$dir/b.sock out=$dir/b.out
$bellhop run --console virtio --api-sock $sock > $out 2>&1 < /dev/null &
pid=$!; pids="$pids $pid"
wait_sock $sock
req $sock PUT /snapshot/load '{"snapshot_path": "'$dir/full.state'", "mem_backend": {"backend_type": "File", "backend_path": "'$dir/full.mem'"}, "resume_vm": true}'; load=$code:$body
counts_on $out $saved_full; ok=$?
kill -9 $pid; wait $pid 2>/dev/null
size=$(stat -c %s $dir/full.mem 2>/dev/null) # (busybox wc -c counts in 32 bits)
if [ "$full $load $ok" = "204204: 204: 0" ] && [ "$size" = $((mib * 1048576)) ] && scribbled $dir/full.mem $saved_full; then
    pass a_full_snapshot_holds_them_and_restores
else
    fail a_full_snapshot_holds_them_and_restores "full $full ($size bytes, top page's word $(top_word $dir/full.mem), saved at $saved_full), load $load, then $(first_count $out)..$(last_count $out): $(not_ok $out) $(tail -2 $out | tr '\n' '|')"
fi

# The Diff holds at least the 64 MiB the counts moved on, the top page among them.
diff_kib=$(blocks $dir/diff.mem)
$bellhop snapshot rebase $dir/full.mem $dir/diff.mem > $dir/rebase.out 2>&1; rb=$?
out=$dir/c.out
$bellhop run --console virtio --restore $dir/diff.state --mem-file $dir/full.mem > $out 2>&1 < /dev/null &
pid=$!; pids="$pids $pid"
counts_on $out $saved_diff; ok=$?
kill -9 $pid; wait $pid 2>/dev/null
if [ "$resumed $diff $rb $ok" = "204 204204: 0 0" ] && [ "$diff_kib" -ge 65536 ] && scribbled $dir/diff.mem $saved_diff; then
    pass a_diff_rebased_onto_the_full_restores_and_counts_on
else
    fail a_diff_rebased_onto_the_full_restores_and_counts_on "resume $resumed, diff $diff ($diff_kib KiB, top page's word $(top_word $dir/diff.mem), saved at $saved_diff), rebase $rb $(cat $dir/rebase.out), then $(first_count $out)..$(last_count $out): $(not_ok $out) $(tail -2 $out | tr '\n' '|')"
fi
rm -f $dir/full.mem $dir/diff.mem

# --mem: sizes past 3 GiB (refused before RAM went above the hole) up to the largest bellhop
# takes (from its refusal of a far larger one), each guest seeing all of its RAM. The largest
# counts on the top page the guest maps (its page tables end at 8 GiB, below its RAM's top).
max=$($bellhop run --mem 1048576G 2>&1 | sed -n 's/.*must be between [0-9]*M and \([0-9]*\)M.*/\1/p')
bad=
for m in 3073 4096 $max; do
    if [ "$m" = "$max" ]; then
        $bellhop run --mem ${m}M --cmdline "count dirty=1" > $dir/mem.out 2>&1 < /dev/null &
        pid=$!; pids="$pids $pid"
        wait_for $dir/mem.out "^count 2: .*announced" 20 # the whole line: the guest writes it byte by byte
        kill -9 $pid; wait $pid 2>/dev/null
        grep -q "^count 2: memory ok" $dir/mem.out || bad="$bad [$m: $(tail -2 $dir/mem.out | tr '\n' '|')]"
    else
        $bellhop run --mem ${m}M --cmdline exit=0 > $dir/mem.out 2>&1 < /dev/null; rc=$?
        [ $rc = 0 ] && grep -q "^guest: 0 failed" $dir/mem.out || bad="$bad [$m: status $rc, $(tail -2 $dir/mem.out | tr '\n' '|')]"
    fi
    want="bellhop tiny guest: $((m - 1)) MiB RAM (its top at $((m + 1024)) MiB)"
    grep -qF "$want" $dir/mem.out || bad="$bad [$m: no '$want' in $(head -1 $dir/mem.out)]"
done
$bellhop run --mem $((max + 1))M > $dir/mem.out 2>&1 < /dev/null; rc=$?
if [ -n "$max" ] && [ "$max" -ge $mib ] && [ -z "$bad" ] && [ $rc = 2 ] && grep -q "must be between" $dir/mem.out; then
    pass mem_past_3_gib_is_taken_up_to_the_largest "up to ${max}M"
else
    fail mem_past_3_gib_is_taken_up_to_the_largest "largest '$max'M;$bad; one past it: status $rc, $(head -c 200 $dir/mem.out)"
fi
exit $failed
