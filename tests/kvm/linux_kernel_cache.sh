#!/bin/sh
# The cache of unpacked kernels (vmm/machine/kernel_cache.h) with Debian's cloud kernel
# (bzImage) and the acceptance initrd, each boot short (no disk: init says done and powers
# off), in three rounds of boots side by side to keep the suite near two minutes nested:
# a cold launch unpacks into guest memory and its filler (`bellhop kernel-cache-fill`, in the
# background) makes an entry that a later launch maps; two launches at once both boot and one
# entry is made; an entry cut short, and one whose header says another bellhop version
# (written with dd, as a new version's entry would read), are removed and made again; a full
# disk (the filler says why, in one line) and a read-only cache directory (the launch says so)
# each leave the launch to guest memory. Every boot must reach "linux-guest: done". POSIX sh.
suite=linux_kernel_cache
tests="a_cold_launch_fills_the_cache a_warm_launch_maps_it two_launches_filling_at_once_both_boot
       an_entry_cut_short_is_made_again another_versions_entry_is_refused_and_made_again
       a_full_disk_leaves_it_to_guest_memory a_read_only_cache_leaves_it_to_guest_memory"
@KVM_TEST_SH@
L=build/linux
if [ ! -f $L/bzImage ] || [ ! -f $L/initrd.cpio ]; then skip_all "no $L files (make test builds them)"; fi
# Under ASan and TSan, the cache's code runs in tests/unit/kernel_cache.c; seven sanitized Linux
# boots more would add ~2.5 min to make test's nested run.
case $bellhop in */asan/*|*/tsan/*) skip_all "a sanitizer build (unit kernel_cache runs the cache under it)" ;; esac
dir=$(mktemp -d /tmp/bellhop-kcache.XXXXXX)
mounted=
cleanup() {
    for m in $mounted; do umount $m 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT

# boot NAME CACHE: a launch with XDG_CACHE_HOME=CACHE in the background, its output in $dir/NAME.out
boot() {
    XDG_CACHE_HOME=$2 $bellhop run --kernel-cache --kernel $L/bzImage --initrd $L/initrd.cpio --mem 256M --boot-markers \
        --cmdline "console=ttyS0 quiet nokaslr" > $dir/$1.out 2>&1 < /dev/null &
    pids="$pids $!"
}
# wait_boots: until every launch started since the last wait has ended (120 s at most each)
wait_boots() {
    for p in $pids; do
        i=0
        while kill -0 $p 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 $p 2>/dev/null
    done
    pids=
}
done_() { grep -q "linux-guest: done" $dir/$1.out; }
line() { grep -e "kernel unpacked" -e "kernel cache" $dir/$1.out | tr '\n' '|'; }
# the entry of slot 0 (nokaslr) in CACHE
entry() { ls $1/bellhop/kernels/*-0.kernel 2>/dev/null | head -1; }
# wait_entry CACHE: until its filler has made the entry (60 s at most)
wait_entry() { i=0; while [ -z "$(entry $1)" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done; }
# unpacked NAME: booted from the bzImage unpacked into guest memory, the cache to be filled after
unpacked() {
    done_ $1 && grep -q -E "kernel unpacked \(.*\) in [0-9.]+ ms \(decoding .*\); the kernel cache is filled in the background" \
        $dir/$1.out
}
# not_used NAME: booted from the bzImage unpacked into guest memory, with the one line why
not_used() {
    done_ $1 && [ "$(grep -c 'the kernel cache was not used' $dir/$1.out)" = 1 ] &&
        grep -q -E "kernel unpacked \(.*\) in [0-9.]+ ms \(decoding" $dir/$1.out && ! grep -q "from the cache" $dir/$1.out
}

mkdir -p $dir/a $dir/b $dir/full $dir/ro
full_ok= ro_ok=
if mount -t tmpfs -o size=1m tmpfs $dir/full 2>/dev/null; then mounted="$mounted $dir/full"; full_ok=1; fi
if mount -t tmpfs -o ro,size=1m tmpfs $dir/ro 2>/dev/null; then mounted="$mounted $dir/ro"; ro_ok=1; fi

# Round 1: a cold launch; a full disk; a read-only directory.
pids=
boot cold $dir/a
[ -n "$full_ok" ] && boot full $dir/full
[ -n "$ro_ok" ] && boot ro $dir/ro
wait_boots
wait_entry $dir/a
unpacked cold && [ -n "$(entry $dir/a)" ] && [ -f "$(entry $dir/a).id" ] && pass a_cold_launch_fills_the_cache ||
    fail a_cold_launch_fills_the_cache "$(line cold) $(tail -3 $dir/cold.out | tr '\n' '|')"
if [ -z "$full_ok" ]; then skip a_full_disk_leaves_it_to_guest_memory "cannot mount a tmpfs here"
else unpacked full && grep -q "the kernel cache was not filled: .*No space left on device" $dir/full.out &&
    pass a_full_disk_leaves_it_to_guest_memory "$(grep 'kernel cache' $dir/full.out)" ||
    fail a_full_disk_leaves_it_to_guest_memory "$(line full) $(tail -3 $dir/full.out | tr '\n' '|')"; fi
if [ -z "$ro_ok" ]; then skip a_read_only_cache_leaves_it_to_guest_memory "cannot mount a tmpfs here"
else not_used ro && pass a_read_only_cache_leaves_it_to_guest_memory "$(grep 'kernel cache' $dir/ro.out)" ||
    fail a_read_only_cache_leaves_it_to_guest_memory "$(line ro) $(tail -3 $dir/ro.out | tr '\n' '|')"; fi

# Round 2: a warm launch; two launches filling another cache at once.
boot warm $dir/a
boot twin1 $dir/b
boot twin2 $dir/b
wait_boots
done_ warm && grep -q -E "kernel unpacked \(.*\) in [0-9.]+ ms from the cache, slot 0" $dir/warm.out &&
    pass a_warm_launch_maps_it "$(grep 'kernel unpacked' $dir/warm.out)" ||
    fail a_warm_launch_maps_it "$(line warm) $(tail -3 $dir/warm.out | tr '\n' '|')"
wait_entry $dir/b
done_ twin1 && done_ twin2 && [ -n "$(entry $dir/b)" ] && pass two_launches_filling_at_once_both_boot ||
    fail two_launches_filling_at_once_both_boot "$(line twin1) $(line twin2)"

# Round 3: one cache's entry cut short, the other's header set to another version (a tick
# after the entries were made: ctime's clock is coarse).
sleep 0.1
a=$(entry $dir/a) b=$(entry $dir/b)
[ -n "$a" ] && truncate -s 65536 "$a" 2>/dev/null || { [ -n "$a" ] && dd if=/dev/null of="$a" bs=1 seek=65536 2>/dev/null; }
# struct kernel_cache_header: the version at byte 16
[ -n "$b" ] && printf '9.9.9\0' | dd of="$b" bs=1 seek=16 conv=notrunc 2>/dev/null
boot cut $dir/a
boot version $dir/b
wait_boots
wait_entry $dir/a
wait_entry $dir/b
done_ cut && grep -q "kernel cache entry .*: removed" $dir/cut.out && unpacked cut && [ -n "$(entry $dir/a)" ] &&
    [ "$(stat -c %s "$(entry $dir/a)")" -gt 65536 ] && pass an_entry_cut_short_is_made_again ||
    fail an_entry_cut_short_is_made_again "$(line cut) $(tail -3 $dir/cut.out | tr '\n' '|')"
done_ version && grep -q "kernel cache entry .*: removed" $dir/version.out && unpacked version && [ -n "$(entry $dir/b)" ] &&
    pass another_versions_entry_is_refused_and_made_again ||
    fail another_versions_entry_is_refused_and_made_again "$(line version) $(tail -3 $dir/version.out | tr '\n' '|')"
exit $failed
