#!/bin/sh
# Multiboot (v1) kernels (firmware/multiboot.h, issue #43): the tiny guest linked as one
# (build/guest/guest-multiboot.elf, ELF32 i386) boots under bellhop and passes its multiboot
# self-tests (guest/multiboot.c: the loader's magic and information, the modules page-aligned,
# fw_cfg's signature, RAM size and CPUs); the command line reaches it after the kernel's file
# name, as QEMU gives it; the initrd is module 0 and each --module follows with its arguments;
# --exit-device qemu ends bellhop with (v << 1) | 1 as QEMU's isa-debug-exit does; broken
# images and bad options are refused in one line; `bellhop bench --vmexit` runs kvm-unit-tests'
# vmexit.flat when $BELLHOP_VMEXIT_FLAT names one (the suite is not bundled: skipped otherwise)
# and refuses a bad image in one line; and QEMU's own -kernel (TCG) gives the same self-test
# results. POSIX sh.
suite=multiboot
tests="the_multiboot_guest_passes_its_self_tests the_command_line_follows_the_kernel_name
       modules_reach_the_guest_in_order exit_device_qemu_gives_v_shifted_or_1 two_cpus_boot
       bad_images_are_refused_in_one_line bad_options_are_refused_in_one_line bench_vmexit_beside_qemu
       bench_refuses_a_bad_vmexit_image qemu_gives_the_same_results config_file_gives_modules_and_the_exit_device"
@KVM_TEST_SH@
mb=$(dirname $guest)/guest-multiboot.elf
[ -f $mb ] || skip_all "no $mb (make build/guest/guest-multiboot.elf)"
dir=$(mktemp -d /tmp/bellhop-multiboot.XXXXXX)
trap 'rm -rf "$dir"' EXIT

# results FILE: the self-test lines' names and verdicts, the guest's last word
results() { sed -n 's/^\(selftest *[a-z_-]* *[A-Z]*\).*/\1/p; /^guest: [0-9]* failed/p' $1 | tr -s ' '; }
# run OUT ARGS...: bellhop on the multiboot guest; $rc its status
run() { o=$1; shift; timeout 30 $bellhop run --kernel $mb "$@" > $o 2>&1 < /dev/null; rc=$?; }

printf 'ENV_A=1\nENV_B=2\n' > $dir/env
echo hello-module-one > $dir/one
echo hello-module-two > $dir/two

run $dir/a.out --cmdline "exit=0"
if [ $rc = 0 ] && grep -q '^selftest multiboot *PASS: from bellhop' $dir/a.out && grep -q '^selftest mb-modules *PASS: 0,' $dir/a.out &&
   grep -q '^selftest fw_cfg *PASS: "QEMU", 128 MiB RAM' $dir/a.out && ! grep -q '^selftest .*FAIL' $dir/a.out &&
   grep -q '^guest: 0 failed' $dir/a.out && clean $dir/a.out; then
    pass the_multiboot_guest_passes_its_self_tests
else
    fail the_multiboot_guest_passes_its_self_tests "status $rc: $(head -c 600 $dir/a.out | tr '\n' '|')"
fi

if grep -qF "command line \"$mb exit=0\"" $dir/a.out; then
    pass the_command_line_follows_the_kernel_name
else
    fail the_command_line_follows_the_kernel_name "$(grep 'command line' $dir/a.out)"
fi

run $dir/m.out --cmdline "exit=0" --initrd $dir/env --module $dir/one --module "$dir/two,x=1 y=2"
if [ $rc = 0 ] && grep -q '^selftest mb-modules *PASS: 3, page-aligned' $dir/m.out &&
   grep -qF "multiboot module 0: 16 bytes at 0x" $dir/m.out && grep -qF "\"$dir/env\", starts \"ENV_A=1.ENV_B=2.\"" $dir/m.out &&
   grep -qF "multiboot module 1: 17 bytes at 0x" $dir/m.out && grep -qF "\"$dir/one\", starts \"hello-module-one\"" $dir/m.out &&
   grep -qF "\"$dir/two x=1 y=2\", starts \"hello-module-two\"" $dir/m.out && ! grep -q '^selftest .*FAIL' $dir/m.out; then
    pass modules_reach_the_guest_in_order
else
    fail modules_reach_the_guest_in_order "status $rc: $(grep -e module -e '^bellhop' $dir/m.out | head -5 | tr '\n' '|')"
fi

# The same modules and QEMU's exit through a config file: the one --print-config writes from
# those flags, whose boot-source has them as bellhop_modules and bellhop_exit_device.
timeout 30 $bellhop run --kernel $mb --cmdline "exit=5" --initrd $dir/env --module $dir/one --module "$dir/two,x=1 y=2" \
    --exit-device qemu --print-config > $dir/cfg.json 2> $dir/p.out
run_config() { timeout 30 $bellhop run --config-file $dir/cfg.json "$@" > $dir/f.out 2>&1 < /dev/null; rc=$?; }
run_config
bad=
grep -q '"bellhop_modules"' $dir/cfg.json && grep -q '"bellhop_exit_device": "qemu"' $dir/cfg.json ||
    bad="$bad [--print-config: $(tr -d '\n' < $dir/cfg.json | head -c 300) $(cat $dir/p.out)]"
[ $rc = 11 ] && grep -q '^selftest mb-modules *PASS: 3, page-aligned' $dir/f.out &&
    [ "$(grep '^multiboot module' $dir/f.out | sed 's/ at 0x[0-9a-f]*//')" = "$(grep '^multiboot module' $dir/m.out | sed 's/ at 0x[0-9a-f]*//')" ] ||
    bad="$bad [--config-file: status $rc, $(grep -e module -e '^bellhop' $dir/f.out | head -5 | tr '\n' '|')]"
run_config --module $dir/one
[ $rc = 2 ] && one_line $dir/f.out && grep -qF "boot-source gives it (bellhop_modules)" $dir/f.out ||
    bad="$bad [--config-file with --module: status $rc, $(head -c 200 $dir/f.out)]"
if [ -z "$bad" ]; then pass config_file_gives_modules_and_the_exit_device
else fail config_file_gives_modules_and_the_exit_device "$bad"; fi

# exit=N: the guest writes N to port 0xf4 (once its self-tests passed)
bad=
for v in 0 5 100; do
    run $dir/e.out --cmdline "exit=$v" --exit-device qemu
    [ $rc = $(((v << 1 | 1) & 255)) ] || bad="$bad [exit=$v: status $rc, $(tail -1 $dir/e.out)]"
done
run $dir/e.out --cmdline "exit=5" --exit-device bellhop
[ $rc = 5 ] || bad="$bad [exit=5, bellhop's: status $rc]"
timeout 30 $bellhop run --cmdline "exit=5" --exit-device qemu > $dir/e.out 2>&1 < /dev/null; rc=$?
[ $rc = 11 ] || bad="$bad [the PVH guest, exit=5: status $rc]"
if [ -z "$bad" ]; then pass exit_device_qemu_gives_v_shifted_or_1; else fail exit_device_qemu_gives_v_shifted_or_1 "$bad"; fi

run $dir/c.out --cmdline "exit=0" --cpus 2
if [ $rc = 0 ] && grep -q '^selftest fw_cfg *PASS: .*, 2 cpus' $dir/c.out; then
    pass two_cpus_boot
else
    fail two_cpus_boot "status $rc: $(grep -e fw_cfg -e '^bellhop' $dir/c.out | tr '\n' '|')"
fi

# put FILE OFFSET OCTAL: bytes written over FILE at OFFSET (printf's octal escapes)
put() { printf "$3" | dd of=$1 bs=1 seek=$2 conv=notrunc 2>/dev/null; }
# refused NAME WANT ARGS...: bellhop refuses in one line saying WANT, status 1
refused() {
    n=$1 want=$2; shift 2
    timeout 30 $bellhop run "$@" > $dir/r.out 2>&1 < /dev/null; rc=$?
    [ $rc = 1 ] && one_line $dir/r.out && grep -qF "$want" $dir/r.out || bad="$bad [$n: status $rc, $(head -c 300 $dir/r.out | tr '\n' '|')]"
}
bad=
head -c 8192 $mb > $dir/truncated.elf
refused truncated "outside the file (truncated kernel?)" --kernel $dir/truncated.elf
cp $mb $dir/checksum.elf
off=$(od -An -tx4 -w4 -v $mb | head -2048 | grep -n 1badb002 | head -1 | cut -d: -f1)
put $dir/checksum.elf $(((off - 1) * 4 + 8)) '\001\002\003\004'
refused checksum "has a bad checksum" --kernel $dir/checksum.elf
cp $mb $dir/high.elf
put $dir/high.elf $((52 + 12)) '\000\000\000\100' # the first program header's p_paddr: 1 GiB
refused outside_ram "is not in guest RAM" --kernel $dir/high.elf
refused too_small "is not in guest RAM" --kernel $mb --mem 4M
refused no_module "module $dir/none:" --kernel $mb --module $dir/none
if [ -z "$bad" ]; then pass bad_images_are_refused_in_one_line; else fail bad_images_are_refused_in_one_line "$bad"; fi

bad=
timeout 30 $bellhop run --kernel $mb --exit-device xen > $dir/o.out 2>&1 < /dev/null; rc=$?
[ $rc = 2 ] && one_line $dir/o.out && grep -q 'qemu or bellhop' $dir/o.out || bad="$bad [exit-device: $rc $(cat $dir/o.out)]"
timeout 30 $bellhop run --kernel $mb --module ,x > $dir/o.out 2>&1 < /dev/null; rc=$?
[ $rc = 2 ] && one_line $dir/o.out && grep -q 'empty path' $dir/o.out || bad="$bad [empty module: $rc $(cat $dir/o.out)]"
refused pvh_module "only a multiboot kernel takes modules" --module $dir/one
set --
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do set -- "$@" --module $dir/one; done
refused seventeen "a multiboot kernel takes at most 16" --kernel $mb --initrd $dir/env "$@"
if [ -z "$bad" ]; then pass bad_options_are_refused_in_one_line; else fail bad_options_are_refused_in_one_line "$bad"; fi

# bench_vmexit_beside_qemu: two of vmexit's tests, one round: bellhop's cycles for cpuid, and
# QEMU's beside them or the line saying why QEMU did not run
if [ -z "${BELLHOP_VMEXIT_FLAT:-}" ] || [ ! -f "$BELLHOP_VMEXIT_FLAT" ]; then
    skip bench_vmexit_beside_qemu "no kvm-unit-tests image: BELLHOP_VMEXIT_FLAT=${BELLHOP_VMEXIT_FLAT:-} (docs/benchmarks.md)"
else
    timeout 600 $bellhop bench --only vmexit --vmexit "$BELLHOP_VMEXIT_FLAT" --vmexit-tests cpuid,inl_from_kernel \
        --rounds 1 > $dir/v.out 2>&1 < /dev/null; rc=$?
    row=$(grep -E '^  cpuid +[0-9]+ ' $dir/v.out)
    if [ $rc = 0 ] && [ -n "$row" ] && grep -qE '^  inl_from_kernel +[0-9]+ ' $dir/v.out &&
       { echo "$row" | grep -qE '^  cpuid +[0-9]+ +[0-9]+ +[0-9.]+x +[0-9]+ +[0-9]+ +[0-9.]+x$' || grep -q '^  QEMU did not run: ' $dir/v.out; } &&
       clean $dir/v.out; then
        pass bench_vmexit_beside_qemu "$(echo $row)"
    else
        fail bench_vmexit_beside_qemu "status $rc: $(tail -c 600 $dir/v.out | tr '\n' '|')"
    fi
fi

# bench_refuses_a_bad_vmexit_image: a missing file, a directory and an image without a
# multiboot header (the PVH tiny guest), each refused in one line before anything runs
bad=
for img in $dir/none.flat $dir $guest; do
    timeout 30 $bellhop bench --only vmexit --vmexit $img > $dir/r.out 2>&1 < /dev/null; rc=$?
    [ $rc = 2 ] && one_line $dir/r.out && grep -qF -e "--vmexit $img: " $dir/r.out || bad="$bad [$img: status $rc, $(head -c 300 $dir/r.out | tr '\n' '|')]"
done
grep -q 'not a multiboot image' $dir/r.out || bad="$bad [guest.elf: $(cat $dir/r.out)]"
if [ -z "$bad" ]; then pass bench_refuses_a_bad_vmexit_image; else fail bench_refuses_a_bad_vmexit_image "$bad"; fi

qemu=$(tool qemu-system-x86_64)
if [ -z "$qemu" ]; then
    skip qemu_gives_the_same_results "no qemu-system-x86_64"
    exit $failed
fi
# QEMU's -initrd "FILE ARGS,FILE": the same modules, the same strings
timeout 120 $qemu -accel tcg -nodefaults -display none -serial stdio -monitor none -m 128 -smp 2 \
    -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel $mb -append "exit=0" \
    -initrd "$dir/env,$dir/one,$dir/two x=1 y=2" > $dir/q.out 2>&1 < /dev/null; qrc=$?
# a QEMU that cannot start (its BIOS or multiboot option ROM missing, as in a nested host
# given QEMU's binary alone) says so on a line of its own, before any guest output
if [ $qrc != 1 ] && ! grep -q '^bellhop tiny guest' $dir/q.out && grep -q "^$qemu: \|^qemu-system-x86_64: " $dir/q.out; then
    skip qemu_gives_the_same_results "QEMU cannot start: $(grep -m1 'qemu-system-x86_64: ' $dir/q.out)"
    exit $failed
fi
run $dir/b.out --cmdline "exit=0" --cpus 2 --initrd $dir/env --module $dir/one --module "$dir/two,x=1 y=2" --exit-device qemu
qr=$(results $dir/q.out) br=$(results $dir/b.out)
if [ $qrc = 1 ] && [ $rc = 1 ] && [ "$qr" = "$br" ] && grep -q '^selftest multiboot *PASS: from qemu' $dir/q.out &&
   grep -q '^guest: 0 failed' $dir/q.out &&
   [ "$(grep '^multiboot module' $dir/q.out | sed 's/ at 0x[0-9a-f]*//')" = "$(grep '^multiboot module' $dir/b.out | sed 's/ at 0x[0-9a-f]*//')" ]; then
    pass qemu_gives_the_same_results "$(echo $qr | tr '\n' ' ')"
else
    fail qemu_gives_the_same_results "QEMU status $qrc [$(echo "$qr" | tr '\n' '|')] $(tail -c 300 $dir/q.out | tr '\n' '|'); bellhop status $rc [$(echo "$br" | tr '\n' '|')]"
fi
exit $failed
