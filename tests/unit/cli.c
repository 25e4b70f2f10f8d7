/* One description of a VM: `bellhop run`'s flags and the config file fill the same vm_spec
 * through the same checks, so every option both have means the same machine, devices in the
 * same order; --print-config (the real binary) shows the flags as a config file that reads
 * back as the same VM. No KVM. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bellhop_bench/spawn.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_devices.h"
#include "devices/virtio_net.h"
#include "devices/virtio_vhost_user.h"
#include "devices/virtio_vsock.h"
#include "tests/lib/build_paths.h"
#include "tests/lib/check.h"
#include "vmm/control/cli.h"

static char disk[] = "/tmp/bellhop-cli-disk-XXXXXX";

static void remove_disk(void) { unlink(disk); }

/* Made once, before the tests' processes are forked, and removed as the runner exits (each
 * test ends with _exit). */
__attribute__((constructor)) static void make_disk_once(void) {
    int fd = mkstemp(disk);
    if (fd < 0 || ftruncate(fd, 1 << 20) != 0) abort();
    close(fd);
    atexit(remove_disk);
}


/* Every VM option that the flags and the config file both have, in a flag order unlike the
 * device order. */
static int parse_flags(struct cli_run *r) {
    char d0[300], d1[300];
    snprintf(d0, sizeof d0, "%s,ro,direct,sync,queues=2", disk);
    snprintf(d1, sizeof d1, "%s", disk);
    char *argv[] = {"run", "--rng", "--net", "tap=tap7", "--kernel", (char *)test_guest_elf(), "--initrd", disk,
                    "--cmdline", "console=ttyS0 quiet", "--mem", "256M", "--cpus", "2", "--smt", "--disk", d0, "--disk", d1,
                    "--disk", "vhost-user=/tmp/bellhop-cli-vhost.sock", "--fs", (char[]){"/tmp/bellhop-cli-fs.sock,tag=share"},
                    "--device", "virtio-balloon", "--vsock", (char[]){"cid=7,uds=/tmp/bellhop-cli-v.sock"}, NULL};
    return cli_parse_run((int)(sizeof argv / sizeof argv[0]) - 1, argv, r);
}

static json_t *config_doc(void) {
    json_t *d = json_pack(
        "{s:{s:s, s:s, s:s}, s:{s:i, s:i, s:b}, s:[{s:s, s:s, s:b, s:b, s:s, s:{s:b, s:i}}, {s:s, s:s, s:b},"
        " {s:s, s:s, s:b}], s:[{s:s, s:s}], s:{}, s:{s:i, s:s}, s:{s:{s:s, s:s}, s:[s]}}",
        "boot-source", "kernel_image_path", test_guest_elf(), "boot_args", "console=ttyS0 quiet", "initrd_path", disk,
        "machine-config", "vcpu_count", 2, "mem_size_mib", 256, "smt", 1,
        "drives", "drive_id", "disk0", "path_on_host", disk, "is_root_device", 0, "is_read_only", 1, "io_engine", "Sync",
        "bellhop", "direct", 1, "queues", 2,
        "drive_id", "disk1", "path_on_host", disk, "is_root_device", 0,
        "drive_id", "disk2", "socket", "/tmp/bellhop-cli-vhost.sock", "is_root_device", 0,
        "network-interfaces", "iface_id", "net0", "host_dev_name", "tap7",
        "entropy",
        "vsock", "guest_cid", 7, "uds_path", "/tmp/bellhop-cli-v.sock",
        "bellhop", "shared_dir", "socket", "/tmp/bellhop-cli-fs.sock", "tag", "share", "devices", "virtio-balloon");
    CHECK(d != NULL);
    return d;
}

static void check_same_machine(const struct machine_config *a, const struct machine_config *b) {
    CHECK_STR_EQ(a->kernel, b->kernel);
    CHECK_STR_EQ(a->initrd, b->initrd);
    CHECK_STR_EQ(a->cmdline, b->cmdline);
    CHECK_EQ(a->mem, b->mem);
    CHECK_EQ(a->cpus, b->cpus);
    CHECK(a->smt == b->smt && a->smt);
    CHECK_EQ(a->ndevices, b->ndevices);
    for (unsigned i = 0; i < a->ndevices; i++) {
        const struct virtio_device_ops *ops = a->devices[i].ops;
        CHECK_MSG(ops == b->devices[i].ops, "device %u: %s and %s", i, ops->name, b->devices[i].ops->name);
        const void *pa = a->devices[i].params, *pb = b->devices[i].params;
        CHECK(!pa == !pb);
        if (ops == &virtio_blk_ops) {
            const struct virtio_blk_params *x = pa, *y = pb;
            CHECK_STR_EQ(x->path, y->path);
            CHECK(x->read_only == y->read_only && x->direct == y->direct && x->engine == y->engine &&
                  x->queues == y->queues);
        } else if (ops == &virtio_net_ops) {
            CHECK_STR_EQ(((const struct virtio_net_params *)pa)->tap, ((const struct virtio_net_params *)pb)->tap);
        } else if (ops == &virtio_vsock_ops) {
            const struct virtio_vsock_params *x = pa, *y = pb;
            CHECK_STR_EQ(x->uds_path, y->uds_path);
            CHECK_EQ(x->guest_cid, y->guest_cid);
        } else if (ops == &vhost_user_blk_ops || ops == &vhost_user_fs_ops) {
            const struct vhost_user_params *x = pa, *y = pb;
            CHECK_STR_EQ(x->socket, y->socket);
            CHECK((!x->tag && !y->tag) || (x->tag && y->tag && strcmp(x->tag, y->tag) == 0));
        }
    }
}

TEST(the_flags_and_the_config_file_describe_the_same_machine) {
    struct cli_run r;
    CHECK_EQ(parse_flags(&r), 0);
    struct vm_spec s;
    vm_spec_init(&s);
    char err[300] = "";
    json_t *doc = config_doc();
    CHECK_MSG(vm_spec_document(&s, doc, err, sizeof err) == 0, "%s", err);
    json_decref(doc);
    json_t *from_flags = vm_spec_to_json(&r.spec), *from_file = vm_spec_to_json(&s);
    char *a = json_dumps(from_flags, JSON_SORT_KEYS), *b = json_dumps(from_file, JSON_SORT_KEYS);
    CHECK_MSG(json_equal(from_flags, from_file), "flags: %s\nfile:  %s", a, b);
    free(a), free(b);
    json_decref(from_flags), json_decref(from_file);
    struct machine_config ma = {0}, mb = {0};
    CHECK_MSG(vm_spec_to_machine(&r.spec, &ma, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(vm_spec_to_machine(&s, &mb, err, sizeof err) == 0, "%s", err);
    check_same_machine(&ma, &mb);
    /* the devices in the one order, whatever the flags' order: drives, network, entropy, the
     * balloon, vsock, the shared directory, the named devices */
    static const char *const order[] = {"virtio-blk", "virtio-blk", "vhost-user-blk", "virtio-net", "virtio-rng",
                                        "virtio-vsock", "vhost-user-fs", "virtio-balloon"};
    CHECK_EQ(ma.ndevices, sizeof order / sizeof order[0]);
    for (unsigned i = 0; i < ma.ndevices; i++) CHECK_STR_EQ(ma.devices[i].ops->name, order[i]);
    vm_spec_free(&r.spec);
    vm_spec_free(&s);
}

TEST(a_flag_is_refused_with_the_config_files_reason) {
    struct cli_run r;
    char *argv[] = {"run", "--kernel", (char *)test_guest_elf(), "--disk", "/nonexistent/disk.img", NULL};
    CHECK_EQ(cli_parse_run(5, argv, &r), 1); /* drive: path_on_host ... No such file */
    vm_spec_free(&r.spec);
    char *api[] = {"run", "--api-sock", "/tmp/x.sock", "--mem", "256M", NULL};
    CHECK_EQ(cli_parse_run(5, api, &r), CLI_EXIT_USAGE);
    vm_spec_free(&r.spec);
    char *odd[] = {"run", "--mem", "4100K", NULL};
    CHECK_EQ(cli_parse_run(3, odd, &r), CLI_EXIT_USAGE); /* the config file counts MiB */
    vm_spec_free(&r.spec);
}

TEST(print_config_shows_a_config_file_that_reads_back_as_the_same_vm) {
    struct cli_run r;
    CHECK_EQ(parse_flags(&r), 0);
    json_t *want = vm_spec_to_json(&r.spec);
    vm_spec_free(&r.spec);
    char d0[300], d1[300];
    snprintf(d0, sizeof d0, "%s,ro,direct,sync,queues=2", disk);
    snprintf(d1, sizeof d1, "%s", disk);
    char *const argv[] = {(char *)test_build_file("bellhop"), "run", "--print-config", "--rng", "--net", "tap=tap7",
                          "--kernel", (char *)test_guest_elf(), "--initrd", disk, "--cmdline", "console=ttyS0 quiet",
                          "--mem", "256M", "--cpus", "2", "--smt", "--disk", d0, "--disk", d1,
                          "--disk", "vhost-user=/tmp/bellhop-cli-vhost.sock", "--fs", "/tmp/bellhop-cli-fs.sock,tag=share",
                          "--device", "virtio-balloon", "--vsock", (char[]){"cid=7,uds=/tmp/bellhop-cli-v.sock"}, NULL};
    static char out[1 << 16];
    int status = spawn_capture(argv, NULL, out, sizeof out);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, out);
    json_error_t je;
    json_t *printed = json_loads(out, 0, &je);
    CHECK_MSG(printed && json_equal(printed, want), "%s", out);
    struct vm_spec s;
    vm_spec_init(&s);
    char err[300] = "";
    CHECK_MSG(vm_spec_document(&s, printed, err, sizeof err) == 0, "%s", err);
    json_t *again = vm_spec_to_json(&s);
    CHECK(json_equal(again, want));
    json_decref(again), json_decref(printed), json_decref(want);
    vm_spec_free(&s);
    unlink(disk);
}

/* --restore takes its memory from one source: the memory file, or a page-fault handler's socket. */
TEST(restore_takes_its_memory_from_a_file_or_a_page_fault_handler) {
    struct cli_run r;
    char *file[] = {"run", "--restore", "vm.state", "--mem-file", "vm.mem", NULL};
    CHECK_EQ(cli_parse_run(5, file, &r), 0);
    CHECK(r.mem_file && !r.mem_uffd);
    vm_spec_free(&r.spec);
    char *uffd[] = {"run", "--restore", "vm.state", "--mem-uffd", "/tmp/uffd.sock", NULL};
    CHECK_EQ(cli_parse_run(5, uffd, &r), 0);
    CHECK(r.mem_uffd && !r.mem_file && strcmp(r.mem_uffd, "/tmp/uffd.sock") == 0);
    vm_spec_free(&r.spec);
    char *both[] = {"run", "--restore", "vm.state", "--mem-file", "vm.mem", "--mem-uffd", "/tmp/uffd.sock", NULL};
    CHECK_EQ(cli_parse_run(7, both, &r), CLI_EXIT_USAGE);
    vm_spec_free(&r.spec);
    char *neither[] = {"run", "--restore", "vm.state", NULL};
    CHECK_EQ(cli_parse_run(3, neither, &r), CLI_EXIT_USAGE);
    vm_spec_free(&r.spec);
    char *alone[] = {"run", "--mem-uffd", "/tmp/uffd.sock", NULL};
    CHECK_EQ(cli_parse_run(3, alone, &r), CLI_EXIT_USAGE);
    vm_spec_free(&r.spec);
    char *empty[] = {"run", "--restore", "vm.state", "--mem-uffd", "", NULL};
    CHECK_EQ(cli_parse_run(5, empty, &r), CLI_EXIT_USAGE);
    vm_spec_free(&r.spec);
}
