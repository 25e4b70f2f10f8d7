# bellhop — build everything into build/ (sanitizer variants into build/asan and build/tsan).
#   make                 libloop, bellhop, the guest, all tests
#   make run             build and boot the bundled guest (nested when /dev/kvm is missing)
#   make test            unit (plain, ASan+UBSan, TSan) + integration tests on real KVM
#   make test SAN=1      only the unit tests, under ASan+UBSan
#   make test KVM=nested integration tests all in the nested KVM host (KVM=direct: all on this
#                        host's /dev/kvm; default auto: each where it can run, tests/run.sh)
#   make bench           benchmarks
#   make CC=clang        any of the above with clang

CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif

SAN ?=
KVM ?= auto
ifeq ($(SAN),1)
override SAN := address
endif
ifeq ($(SAN),address)
B := build/asan
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(SAN),thread)
B := build/tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else
B := build
SANFLAGS :=
endif
ifneq ($(BUILDDIR),)
B := $(BUILDDIR)
endif

OPT ?= -O2
CFLAGS := -std=gnu11 -Wall -Wextra -Werror $(OPT) -g -pthread -D_GNU_SOURCE \
          -Iloop/include -I. $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := -pthread -Wl,-z,relro,-z,now $(SANFLAGS)
DEPFLAGS = -MMD -MP
ifeq ($(V),1)
Q :=
else
Q := @
endif

LOOP_SRCS := $(wildcard loop/*.c)
# The product's code but main(): the floor, the VMM's rooms, devices, network backends, firmware,
# and `bellhop bench` (bench/bellhop_bench, linked into bellhop).
VMM_SRCS  := $(wildcard base/*.c) $(filter-out vmm/control/main.c,$(wildcard vmm/*/*.c)) $(wildcard devices/*.c) \
             $(filter-out net/user_main.c,$(wildcard net/*.c)) $(wildcard firmware/*.c) \
             $(wildcard bench/bellhop_bench/*.c)
UNIT_SRCS := $(wildcard tests/unit/*.c)
KVM_SRCS  := $(wildcard tests/kvm/*.c)
BENCH_SRCS := $(wildcard bench/*.c)

LOOP_OBJS := $(LOOP_SRCS:%.c=$(B)/obj/%.o)
VMM_OBJS  := $(VMM_SRCS:%.c=$(B)/obj/%.o) $(B)/obj/gen/dsdt_aml.o $(B)/obj/gen/syscall_names.o \
             $(B)/obj/gen/sandbox_filters.o
CHECK_OBJ := $(B)/obj/tests/lib/check.o $(B)/obj/tests/lib/virtq_driver.o $(B)/obj/tests/lib/build_paths.o \
             $(B)/obj/tests/lib/uffd_handler.o $(B)/obj/tests/lib/output_file.o
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/unit/%) \
             $(patsubst tests/unit/%.sh,$(B)/tests/unit/%,$(wildcard tests/unit/*.sh))
KVM_BINS  := $(KVM_SRCS:tests/kvm/%.c=$(B)/tests/kvm/%) \
             $(patsubst tests/kvm/%.sh,$(B)/tests/kvm/%,$(wildcard tests/kvm/*.sh))
GUEST_BINS := build/guest/guest.elf build/guest/guest.map build/guest/guest-multiboot.elf
# Every library but the C library linked in (libfdt, the API's JSON and HTTP parsers, the
# bzImage decompressors, liburing): each shared library would cost every start its loading
# and relocation (bellhop bench --only launch shows the dynamic loader's share).
STATIC_LIBS := -lfdt -ljansson -lhttp_parser -llz4 -lzstd -llzma -lz -luring
VMM_LIBS  := -Wl,-Bstatic $(STATIC_LIBS) -Wl,-Bdynamic -ldl
# bellhop itself static-pie where it can be (not under a sanitizer, whose runtime is a shared
# library): no dynamic loader at each start (nested, exec to exit 34 ms dynamic, 18.5 ms
# static-pie; 6.5 ms without PIE, which would give up the binary's ASLR). libcapstone stays a
# shared library, loaded only for a crash report or --trace traps (vmm/observe/disasm.c): glibc's
# warning that a static program's dlopen needs the same libc at run time is left out of the
# link's output (it does), and the link's own status kept.
ifeq ($(SAN),)
BELLHOP_LINK := -static-pie $(STATIC_LIBS)
else
BELLHOP_LINK := $(VMM_LIBS)
endif
define link_bellhop
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(BELLHOP_LINK) 2>$@.log; s=$$?; \
	    grep -v "dlopen\|in function .load_capstone" $@.log >&2; rm -f $@.log; exit $$s
endef

.SECONDARY:
.PHONY: all deps run test test-unit unit-bins bench clean linux-files fuzz fuzz-bins install
all: $(B)/libloop.a $(B)/bellhop $(B)/bellhop-net $(B)/bellhop-hooks $(UNIT_BINS) $(KVM_BINS) $(GUEST_BINS) $(B)/tests/kvm-probe \
     $(B)/bench/loop_bench $(B)/bench/api_bench $(B)/bench/snapshot_bench $(B)/bench/disk_bench $(B)/bench/vsock_bench \
     $(B)/bench/net_bench

unit-bins: $(UNIT_BINS)

deps:
	@scripts/deps.sh

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

# The DSDT is ASL compiled by iasl, then carried as a C array.
build/gen/dsdt.aml: firmware/dsdt.asl
	@mkdir -p $(dir $@)
	$(Q)iasl -p build/gen/dsdt firmware/dsdt.asl >/dev/null

build/gen/dsdt_aml.c: build/gen/dsdt.aml
	$(Q){ echo "const unsigned char dsdt_aml[] = {"; od -An -tx1 -v $< | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	   echo "};"; echo "const unsigned int dsdt_aml_len = sizeof dsdt_aml;"; } > $@

$(B)/obj/gen/dsdt_aml.o: build/gen/dsdt_aml.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# The names of system calls, for the sandbox's report of a forbidden one (vmm/sandbox/sandbox.c).
build/gen/syscall_names.c:
	@mkdir -p $(dir $@)
	$(Q){ echo "const char *const syscall_names[] = {"; \
	   echo '#include <sys/syscall.h>' | $(CC) -E -dM - | \
	   sed -n 's/^#define __NR_\([a-z0-9_]*\) \([0-9]*\)$$/    [\2] = "\1",/p'; \
	   echo "};"; echo "const unsigned syscall_names_len = sizeof syscall_names / sizeof syscall_names[0];"; } > $@

$(B)/obj/gen/syscall_names.o: build/gen/syscall_names.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# The sandbox's seccomp programs, built with libseccomp here rather than at every start
# (tools/sandbox_rules.c). A build tool: no sanitizers, whatever the variant.
build/gen/sandbox_rules: tools/sandbox_rules.c vmm/sandbox/sandbox.h
	@mkdir -p $(dir $@)
	$(Q)$(CC) -std=gnu11 -Wall -Wextra -Werror -O1 -D_GNU_SOURCE -I. -o $@ $< -lseccomp

build/gen/sandbox_filters.c: build/gen/sandbox_rules
	$(Q)build/gen/sandbox_rules > $@.tmp && mv $@.tmp $@

$(B)/obj/gen/sandbox_filters.o: build/gen/sandbox_filters.c vmm/sandbox/sandbox_filters.h vmm/sandbox/sandbox.h
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(B)/libloop.a: $(LOOP_OBJS)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/libbellhop.a: $(VMM_OBJS)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/bellhop: $(B)/obj/vmm/control/main.o $(B)/libbellhop.a $(B)/libloop.a
	$(link_bellhop)

# --net user's process (net/user.h): dynamic, as libslirp (over glib) is a shared library only;
# linked to it (net/slirp_lib.c then finds it loaded) so that the nested host gets it copied too.
$(B)/bellhop-net: $(B)/obj/net/user_main.o $(B)/libbellhop.a $(B)/libloop.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(VMM_LIBS) -Wl,--no-as-needed -lslirp -Wl,--as-needed

# bellhop with its test hooks (BELLHOP_TEST_HOOKS: environment variables that truncate the
# kernel file under its mapping, or make a forbidden system call), for the tests of what they
# provoke. build/bellhop has none: its objects of these files are built without the flag.
HOOK_SRCS := vmm/machine/machine_boot.c vmm/sandbox/sandbox.c
$(B)/obj/hooks/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -DBELLHOP_TEST_HOOKS $(DEPFLAGS) -c $< -o $@

$(B)/bellhop-hooks: $(B)/obj/vmm/control/main.o $(HOOK_SRCS:%.c=$(B)/obj/hooks/%.o) $(B)/libbellhop.a $(B)/libloop.a
	@mkdir -p $(dir $@)
	$(link_bellhop)

$(B)/tests/unit/%: $(B)/obj/tests/unit/%.o $(CHECK_OBJ) $(B)/libbellhop.a $(B)/libloop.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(VMM_LIBS)

$(B)/tests/kvm/%: $(B)/obj/tests/kvm/%.o $(CHECK_OBJ) $(B)/libbellhop.a $(B)/libloop.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(VMM_LIBS)

# The scripts' shared helpers go into each in place of its line @KVM_TEST_SH@: a built test
# stays one file (the nested KVM host is sent it alone).
SPLICE_KVM_TEST := -e '/^@KVM_TEST_SH@$$/{' -e 'r tests/lib/kvm_test.sh' -e 'd' -e '}'
$(B)/tests/kvm/%: tests/kvm/%.sh tests/lib/kvm_test.sh
	@mkdir -p $(dir $@)
	sed $(SPLICE_KVM_TEST) $< > $@ && chmod +x $@

# api_firecracker checks docs/api.md's table of Firecracker's endpoints: the file goes into the
# script in place of its line @API_MD@ (and the helpers in place of theirs).
$(B)/tests/kvm/api_firecracker: tests/kvm/api_firecracker.sh tests/lib/kvm_test.sh docs/api.md
	@mkdir -p $(dir $@)
	sed $(SPLICE_KVM_TEST) -e '/^@API_MD@$$/{' -e 'r docs/api.md' -e 'd' -e '}' $< > $@ && chmod +x $@

$(B)/tests/unit/%: tests/unit/%.sh
	@mkdir -p $(dir $@)
	cp $< $@ && chmod +x $@

# make install [PREFIX=/usr/local] [DESTDIR=]: bellhop, its tiny guest and man page, and the
# loop library (libbellhop-loop.a, its Fuchsia headers under include/bellhop-loop, and
# bellhop-loop.pc for pkg-config).
PREFIX ?= /usr/local
build/bellhop.1: build/bellhop
	$(Q)help2man -N -n "a small, fast virtual machine monitor on KVM" -o $@ ./build/bellhop

install: all build/bellhop.1
	install -D -m 755 build/bellhop $(DESTDIR)$(PREFIX)/bin/bellhop
	install -D -m 755 build/bellhop-net $(DESTDIR)$(PREFIX)/bin/bellhop-net
	install -D -m 644 build/guest/guest.elf $(DESTDIR)$(PREFIX)/lib/bellhop/guest.elf
	install -D -m 644 build/bellhop.1 $(DESTDIR)$(PREFIX)/share/man/man1/bellhop.1
	install -D -m 644 build/libloop.a $(DESTDIR)$(PREFIX)/lib/libbellhop-loop.a
	mkdir -p $(DESTDIR)$(PREFIX)/include/bellhop-loop
	cp -R loop/include/. $(DESTDIR)$(PREFIX)/include/bellhop-loop/
	mkdir -p $(DESTDIR)$(PREFIX)/lib/pkgconfig
	printf 'prefix=%s\nincludedir=$${prefix}/include/bellhop-loop\nlibdir=$${prefix}/lib\n\nName: bellhop-loop\nDescription: Zircon ports and Fuchsia'"'"'s async loop on Linux\nVersion: %s\nCflags: -I$${includedir}\nLibs: -L$${libdir} -lbellhop-loop -lpthread\n' \
	    '$(PREFIX)' "$$(./build/bellhop --version | cut -d' ' -f2)" > $(DESTDIR)$(PREFIX)/lib/pkgconfig/bellhop-loop.pc

# What the Linux guest tests boot (needs scripts/deps.sh's kernel): the Debian cloud bzImage,
# an initramfs with busybox and the virtio modules, an ext4 disk with one file on it.
LINUX_FILES := build/linux/bzImage build/linux/vmlinux build/linux/initrd.cpio build/linux/disk.img build/linux/tools.sqfs \
               build/linux/vsock_host
linux-files: $(LINUX_FILES)

build/linux/bzImage: build/cache/kernel/bzImage
	@mkdir -p $(dir $@)
	cp $< $@

build/linux/vmlinux: build/cache/kernel/vmlinux
	@mkdir -p $(dir $@)
	cp $< $@

build/linux/bootmark: tests/linux/bootmark.c
	@mkdir -p $(dir $@)
	gcc -static -O2 -Wall -Wextra -Werror -o $@ $<

build/linux/initrd.cpio: tests/linux/init-acceptance.sh tests/linux/mkinitramfs.sh build/cache/kernel/release \
                         build/linux/bootmark
	@mkdir -p $(dir $@)
	tests/linux/mkinitramfs.sh $@ tests/linux/init-acceptance.sh build/linux/bootmark

# fio for the Linux guest's disk test and socat for its vsock test and bench/vsock_bench, from
# the host's Debian packages, on a disk of their own; made again when the list changes too
# (build/linux/tools.list), not only when a program does.
TOOLS_PROGRAMS := /usr/bin/fio /usr/bin/socat
build/linux/tools.sqfs: tests/linux/mktoolsdisk.sh $(TOOLS_PROGRAMS) build/linux/tools.list
	@mkdir -p $(dir $@)
	tests/linux/mktoolsdisk.sh $@ $(TOOLS_PROGRAMS)

.PHONY: build/linux/tools.list.check
build/linux/tools.list: build/linux/tools.list.check
	@mkdir -p $(dir $@)
	@echo '$(TOOLS_PROGRAMS)' | cmp -s - $@ 2>/dev/null || echo '$(TOOLS_PROGRAMS)' > $@

# The host's end of the guest's vsock test, static: it goes where build/linux goes (nested too).
build/linux/vsock_host: tests/linux/vsock_host.c tests/linux/vsock_uds.h
	@mkdir -p $(dir $@)
	gcc -static -O2 -Wall -Wextra -Werror -o $@ $<

build/linux/disk.img:
	@mkdir -p build/linux/disk-root
	echo "from the host" > build/linux/disk-root/from-host.txt
	rm -f $@ && mke2fs -q -t ext4 -d build/linux/disk-root $@ 8M

$(B)/bench/api_bench: $(B)/obj/bench/api_bench.o $(B)/libloop.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^

$(B)/bench/disk_bench: $(B)/obj/bench/disk_bench.o $(B)/libbellhop.a $(B)/libloop.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(VMM_LIBS)

$(B)/bench/vsock_bench: $(B)/obj/bench/vsock_bench.o $(B)/obj/bench/tcp_xfer.o $(B)/libloop.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^

$(B)/bench/net_bench: $(B)/obj/bench/net_bench.o $(B)/obj/bench/tcp_xfer.o $(B)/libbellhop.a $(B)/libloop.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(VMM_LIBS)

$(B)/bench/snapshot_bench: $(B)/obj/bench/snapshot_bench.o $(B)/obj/tests/lib/uffd_handler.o $(B)/libloop.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^

$(B)/bench/loop_bench: $(B)/obj/bench/loop_bench.o $(B)/libloop.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -luv

$(B)/tests/kvm-probe: $(B)/obj/tests/lib/kvm_probe.o $(B)/obj/vmm/hv/kvm_host.o
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^

# The bundled guest: a freestanding PVH kernel, with Debian's libfdt linked in (we supply
# the C library pieces it needs). Never built with sanitizers.
GUEST_CC ?= $(CC)
GUEST_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -O2 -g -ffreestanding -fno-pic -fno-pie \
                -fno-stack-protector -mno-red-zone -mgeneral-regs-only -I.
GUEST_OBJS := $(patsubst guest/%.c,build/guest/obj/%.o,$(wildcard guest/*.c)) \
              $(patsubst guest/%.S,build/guest/obj/%.o,$(filter-out guest/multiboot_header.S,$(wildcard guest/*.S)))

build/guest/obj/%.o: guest/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(GUEST_CC) $(GUEST_CFLAGS) $(DEPFLAGS) -c $< -o $@

build/guest/obj/%.o: guest/%.S
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AS      $@")
	$(Q)$(GUEST_CC) $(GUEST_CFLAGS) $(DEPFLAGS) -c $< -o $@

build/guest/guest.elf: $(GUEST_OBJS) guest/guest.ld
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(GUEST_CC) -nostdlib -static -no-pie -Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wl,-T,guest/guest.ld -o $@ \
	    $(GUEST_OBJS) -lfdt $$($(GUEST_CC) -print-libgcc-file-name)

# The same guest as a multiboot (v1) kernel, the way QEMU's -kernel boots one: its objects and
# the multiboot header (guest/multiboot_header.S, first in .text), entered at mb_start32
# (guest/multiboot_entry.S), as the ELF32 i386 file multiboot wants.
build/guest/guest-multiboot.elf: $(GUEST_OBJS) build/guest/obj/multiboot_header.o guest/guest.ld
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(GUEST_CC) -nostdlib -static -no-pie -Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wl,-T,guest/guest.ld \
	    -Wl,-e,mb_start32 -o $@.64 build/guest/obj/multiboot_header.o $(GUEST_OBJS) -lfdt \
	    $$($(GUEST_CC) -print-libgcc-file-name)
	$(Q)objcopy -O elf32-i386 $@.64 $@.tmp && rm -f $@.64 && mv $@.tmp $@

# Its symbols as a System.map-style listing (what --profile-symbols reads; the test compares
# the names with those from the ELF's own table).
build/guest/guest.map: build/guest/guest.elf
	$(Q)nm -n $< > $@.tmp && mv $@.tmp $@

# The bundled guest with every device it can test; its scratch disk lives beside it.
run: deps all
	@test -f build/guest/disk.img || truncate -s 8M build/guest/disk.img
	@scripts/run.sh build/bellhop run --console virtio --rng --disk build/guest/disk.img

# The builds use every core: make test's time is mostly compiling four builds and waiting for
# nested guests, and the machines it runs on have few cores.
NPROC := $(shell nproc 2>/dev/null || echo 2)
test: deps
ifeq ($(SAN),)
	@$(MAKE) --no-print-directory -j$(NPROC) all linux-files
	@$(MAKE) --no-print-directory -j$(NPROC) SAN=address all
	@$(MAKE) --no-print-directory -j$(NPROC) SAN=thread all
	@$(MAKE) --no-print-directory -j$(NPROC) CC=clang BUILDDIR=build/clang all
	@$(MAKE) --no-print-directory -j$(NPROC) fuzz-bins
	@rm -rf build/install && $(MAKE) --no-print-directory -s install DESTDIR=$(CURDIR)/build/install PREFIX=/usr > /dev/null
	@tests/run.sh --unit build --unit build/asan --unit build/tsan --fuzz $(FUZZ_SMOKE_SECONDS) \
	    --kvm build --kvm build/asan --kvm build/tsan --mode $(KVM)
else
	@$(MAKE) --no-print-directory unit-bins
	@tests/run.sh --unit $(B)
endif

# libFuzzer targets (clang, ASan+UBSan), one per file in tests/fuzz/, each with a corpus in
# tests/fuzz/corpus/NAME (seeds checked in). `make fuzz` runs each for FUZZ_SECONDS;
# `make test` runs each for FUZZ_SMOKE_SECONDS (tests/run.sh --fuzz).
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
FUZZ_LIB_SRCS := $(LOOP_SRCS) $(VMM_SRCS) tests/lib/virtq_driver.c tests/lib/uffd_handler.c
FUZZ_CFLAGS := -std=gnu11 -O1 -g -pthread -D_GNU_SOURCE -Iloop/include -I. \
               -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 1

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)clang $(FUZZ_CFLAGS) $(DEPFLAGS) -c $< -o $@

build/fuzz/obj/gen/dsdt_aml.o: build/gen/dsdt_aml.c
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_CFLAGS) -c $< -o $@

build/fuzz/obj/gen/syscall_names.o: build/gen/syscall_names.c
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_CFLAGS) -c $< -o $@

build/fuzz/obj/gen/sandbox_filters.o: build/gen/sandbox_filters.c vmm/sandbox/sandbox_filters.h vmm/sandbox/sandbox.h
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_CFLAGS) -c $< -o $@

FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:%.c=build/fuzz/obj/%.o) build/fuzz/obj/gen/dsdt_aml.o build/fuzz/obj/gen/syscall_names.o \
                 build/fuzz/obj/gen/sandbox_filters.o

build/fuzz/fuzz_%: build/fuzz/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)clang -fsanitize=fuzzer,address,undefined -pthread -o $@ $^ $(VMM_LIBS)

fuzz-bins: $(FUZZ_BINS)

fuzz: deps fuzz-bins
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p build/fuzz/corpus/$$n; \
	  echo "== $$n ($(FUZZ_SECONDS) s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build/fuzz/corpus/$$n tests/fuzz/corpus/$$n 2>&1 \
	    | grep -E "^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==ERROR|SUMMARY)" ; done

# The loop against libuv and the eventfd floor; then trap round trips from inside the guest
# under bellhop, the raw KVM floor and QEMU microvm (nested when /dev/kvm is missing), vsock
# beside virtio-net and Linux boots (both nested on a PVM host, where a stock kernel cannot run).
QEMU_FILES := /usr/bin/qemu-system-x86_64 /usr/share/qemu/qboot.rom /usr/share/qemu/bios-microvm.bin \
              /usr/share/qemu/pvh.bin /usr/share/qemu/linuxboot_dma.bin
bench: deps all linux-files
	@$(B)/bench/loop_bench
	@echo
	@$(B)/bench/api_bench build/bellhop
	@$(B)/tests/kvm-probe > /dev/null || { echo "(and in the nested KVM host, for InstanceStart to the guest:)"; \
	    BELLHOP_RUN_FILES="build/bellhop build/guest" scripts/run.sh $(B)/bench/api_bench build/bellhop 5; }
	@echo
	@BELLHOP_RUN_FILES="build/bellhop build/guest" scripts/run.sh $(B)/bench/snapshot_bench build/bellhop 5
	@echo
	@BELLHOP_RUN_FILES="build/bellhop build/guest /usr/bin/qemu-storage-daemon $(QEMU_FILES)" scripts/run.sh $(B)/bench/disk_bench build/bellhop 3
	@echo
	@where=auto; [ "$$($(B)/tests/kvm-probe | cut -d: -f1)" = pvm ] && where=nested; \
	    BELLHOP_RUN_WHERE=$$where BELLHOP_RUN_FILES="build/bellhop build/linux" scripts/run.sh $(B)/bench/vsock_bench build/bellhop
	@echo
	@where=auto; [ "$$($(B)/tests/kvm-probe | cut -d: -f1)" = pvm ] && where=nested; \
	    BELLHOP_RUN_WHERE=$$where BELLHOP_RUN_FILES="build/bellhop build/bellhop-net build/linux /usr/bin/passt $(QEMU_FILES)" \
	    scripts/run.sh $(B)/bench/net_bench build/bellhop
	@echo
	@if [ "$$($(B)/tests/kvm-probe | cut -d: -f1)" = pvm ]; then \
	    BELLHOP_RUN_FILES="$(QEMU_FILES)" scripts/run.sh build/bellhop bench --only traps,memory,timeline,launch && echo && \
	    BELLHOP_RUN_WHERE=nested BELLHOP_RUN_FILES="$(QEMU_FILES) build/linux /usr/bin/lz4" scripts/run.sh build/bellhop bench --only boot,launch; \
	else BELLHOP_RUN_FILES="$(QEMU_FILES) build/linux /usr/bin/lz4" scripts/run.sh build/bellhop bench; fi

clean:
	rm -rf build/obj build/asan build/tsan build/tests build/guest build/*.a build/bellhop build/bellhop-hooks

-include $(wildcard $(B)/obj/*/*.d $(B)/obj/*/*/*.d $(B)/obj/*/*/*/*.d $(B)/obj/hooks/*/*/*.d build/guest/obj/*.d \
    build/fuzz/obj/*/*.d build/fuzz/obj/*/*/*.d build/fuzz/obj/*/*/*/*.d)
