/* Guest RAM as every table that describes it says, below the 32-bit hole and above it (RAM
 * past GM_LOW_END lies from GM_HIGH_START, base/guest_mem.h): the bzImage's e820 map, the
 * PVH memory map, the device tree's memory node and the vhost-user memory table (sent to a
 * backend played by a thread here). RAM is a MAP_NORESERVE mapping: only the pages the tables
 * are written to take memory. No KVM. */
#include <libfdt.h>
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/vhost_user.h"
#include "devices/virtio_vhost_user.h"
#include "firmware/bzimage.h"
#include "firmware/fdt.h"
#include "firmware/hvm_start_info.h"
#include "firmware/pvh.h"
#include "tests/lib/check.h"
#include "tests/lib/virtq_driver.h"

#define MIB (1ull << 20)
#define SMALL (512 * MIB)                  /* all below the hole */
#define LARGE (GM_LOW_END + 512 * MIB)     /* 512 MiB of it above */

static struct guest_mem ram(uint64_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(p != MAP_FAILED);
    return (struct guest_mem){.host = p, .size = size};
}

static uint64_t rd(const uint8_t *p, unsigned width) {
    uint64_t v = 0;
    memcpy(&v, p, width);
    return v;
}

struct entry {
    uint64_t addr, size;
    uint32_t type;
};

/* The zero page's e820 map. */
static unsigned e820(const struct guest_mem *gm, struct entry *e) {
    struct bzimage_kernel k = {0};
    CHECK_EQ(bzimage_write_boot_params(gm, &k, "console=ttyS0", 0, 0, 0), 0);
    const uint8_t *zp = gm->host + BOOT_ZERO_PAGE_ADDR;
    unsigned n = zp[0x1e8];
    CHECK(n <= 8);
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *p = zp + 0x2d0 + 20 * i;
        e[i] = (struct entry){rd(p, 8), rd(p + 8, 8), (uint32_t)rd(p + 16, 4)};
    }
    return n;
}

TEST(the_e820_map_has_ram_above_4_gib_when_ram_goes_past_3_gib) {
    struct entry e[8];
    struct guest_mem small = ram(SMALL), large = ram(LARGE);
    CHECK_EQ(e820(&small, e), 3);
    CHECK(e[0].addr == 0 && e[0].size == 0x9fc00 && e[0].type == 1);
    CHECK(e[1].addr == 0xe0000 && e[1].size == 0x20000 && e[1].type == 2);
    CHECK(e[2].addr == MIB && e[2].size == SMALL - MIB && e[2].type == 1);
    CHECK_EQ(e820(&large, e), 4);
    CHECK(e[2].addr == MIB && e[2].size == GM_LOW_END - MIB && e[2].type == 1);
    CHECK(e[3].addr == GM_HIGH_START && e[3].size == 512 * MIB && e[3].type == 1);
    /* exactly 3 GiB: nothing above the hole */
    struct guest_mem edge = ram(GM_LOW_END);
    CHECK_EQ(e820(&edge, e), 3);
    CHECK(e[2].addr == MIB && e[2].size == GM_LOW_END - MIB);
}

/* The PVH start_info's memory map. */
static unsigned pvh_map(const struct guest_mem *gm, struct entry *e) {
    CHECK_EQ(pvh_write_start_info(gm, 0x6000, "console=ttyS0", NULL, 0, 0), 0);
    struct hvm_start_info si;
    memcpy(&si, gm->host + 0x6000, sizeof si);
    CHECK(si.memmap_entries <= 8);
    for (unsigned i = 0; i < si.memmap_entries; i++) {
        struct hvm_memmap_table_entry m;
        memcpy(&m, gm->host + si.memmap_paddr + i * sizeof m, sizeof m);
        e[i] = (struct entry){m.addr, m.size, m.type};
    }
    return si.memmap_entries;
}

TEST(the_pvh_memory_map_has_ram_above_4_gib_when_ram_goes_past_3_gib) {
    struct entry e[8];
    struct guest_mem small = ram(SMALL), large = ram(LARGE);
    CHECK_EQ(pvh_map(&small, e), 2);
    CHECK(e[0].addr == 0 && e[0].size == 0x9fc00 && e[0].type == HVM_MEMMAP_TYPE_RAM);
    CHECK(e[1].addr == MIB && e[1].size == SMALL - MIB && e[1].type == HVM_MEMMAP_TYPE_RAM);
    CHECK_EQ(pvh_map(&large, e), 3);
    CHECK(e[1].addr == MIB && e[1].size == GM_LOW_END - MIB);
    CHECK(e[2].addr == GM_HIGH_START && e[2].size == 512 * MIB && e[2].type == HVM_MEMMAP_TYPE_RAM);
}

/* The device tree's /memory@0 reg: (base, size) pairs into r, how many. */
static int fdt_memory(uint64_t size, uint64_t *r) {
    static uint8_t dtb[0x4000];
    struct fdt_machine m;
    fdt_microvm_layout(&m, size, "console=ttyS0");
    CHECK(fdt_build(&m, dtb, sizeof dtb) > 0);
    int node = fdt_path_offset(dtb, "/memory@0"), len = 0;
    CHECK(node >= 0);
    const fdt64_t *reg = fdt_getprop(dtb, node, "reg", &len);
    CHECK(reg && len > 0 && len % 16 == 0 && len <= 64);
    for (int i = 0; i < len / 8; i++) r[i] = fdt64_to_cpu(reg[i]);
    return len / 16;
}

TEST(the_device_trees_memory_node_has_a_second_range_above_4_gib) {
    uint64_t r[8];
    CHECK_EQ(fdt_memory(SMALL, r), 1);
    CHECK(r[0] == 0 && r[1] == SMALL);
    CHECK_EQ(fdt_memory(LARGE, r), 2);
    CHECK(r[0] == 0 && r[1] == GM_LOW_END && r[2] == GM_HIGH_START && r[3] == 512 * MIB);
}

/* ---- vhost-user: a backend that answers GET_FEATURES and keeps the memory table ---- */

struct mem_region {
    uint64_t guest_addr, size, user_addr, mmap_offset;
};

struct backend {
    int listen_fd;
    pthread_t thread;
    uint32_t nregions;
    struct mem_region region[VHOST_USER_MAX_REGIONS];
    unsigned nfds; /* that came with SET_MEM_TABLE */
};

/* One message: its header, payload (up to cap bytes kept) and how many fds came with it.
 * False at the end of the connection. */
static bool next_message(int fd, struct vhost_user_header *h, uint8_t *payload, size_t cap, unsigned *nfds) {
    union {
        char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_REGIONS)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {h, sizeof *h};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
    if (recvmsg(fd, &m, MSG_WAITALL) != sizeof *h) return false;
    *nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        for (size_t i = 0; c->cmsg_type == SCM_RIGHTS && i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof got, sizeof got);
            close(got);
            ++*nfds;
        }
    uint8_t drop[VHOST_USER_MAX_PAYLOAD];
    if (h->size > sizeof drop || (h->size && recv(fd, drop, h->size, MSG_WAITALL) != (ssize_t)h->size)) return false;
    memcpy(payload, drop, h->size < cap ? h->size : cap);
    return true;
}

static void *backend_main(void *arg) {
    struct backend *b = arg;
    int fd = accept(b->listen_fd, NULL, NULL);
    struct vhost_user_header h;
    uint8_t payload[8 + sizeof b->region];
    unsigned nfds;
    while (fd >= 0 && next_message(fd, &h, payload, sizeof payload, &nfds)) {
        if (h.request == VHOST_USER_GET_FEATURES) {
            struct {
                struct vhost_user_header h;
                uint64_t features;
            } __attribute__((packed)) reply = {{h.request, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY, 8}, 1ull << 32};
            if (write(fd, &reply, sizeof reply) != sizeof reply) break;
        } else if (h.request == VHOST_USER_SET_MEM_TABLE) {
            memcpy(&b->nregions, payload, 4);
            memcpy(b->region, payload + 8, sizeof b->region);
            b->nfds = nfds;
        }
    }
    if (fd >= 0) close(fd);
    return NULL;
}

/* vhost-user-fs over RAM of `size` bytes, started by the driver: the table the backend got. */
static void vhost_table(uint64_t size, struct backend *b) {
    *b = (struct backend){0};
    char dir[] = "/tmp/bellhop-ram-map-XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/fs.sock", dir);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, path, strlen(path) + 1);
    b->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(b->listen_fd >= 0 && bind(b->listen_fd, (struct sockaddr *)&a, sizeof a) == 0 &&
          listen(b->listen_fd, 1) == 0);
    CHECK_EQ(pthread_create(&b->thread, NULL, backend_main, b), 0);

    struct fake_vm vm;
    fake_vm_init(&vm, 0);
    free(vm.env.mem.host);
    vm.env.mem = ram(size);
    vm.env.mem_fd = memfd_create("ram", MFD_CLOEXEC);
    async_loop_t *loop;
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop), ZX_OK);
    vm.env.loop = async_loop_get_dispatcher(loop);
    struct test_dev d;
    struct vhost_user_params p = {.socket = path, .tag = "shared"};
    CHECK_EQ(tdev_init(&d, &vm, &vhost_user_fs_ops, &p, 0, 2, 16), 1 | 2 | 4 | 8);
    async_loop_destroy(loop); /* first: the device's waits are on it */
    tdev_destroy(&d);         /* which closes the socket: the backend ends */
    CHECK_EQ(pthread_join(b->thread, NULL), 0);
    close(b->listen_fd);
    unlink(path);
    rmdir(dir);
    CHECK_EQ(b->nregions, b->nfds);
    CHECK(b->region[0].user_addr == (uintptr_t)vm.env.mem.host);
    close(vm.env.mem_fd);
    munmap(vm.env.mem.host, size);
    vm.env.mem.host = NULL;
    fake_vm_destroy(&vm);
}

TEST(the_vhost_user_memory_table_has_a_region_for_each_part_of_ram) {
    struct backend b;
    vhost_table(SMALL, &b);
    CHECK_EQ(b.nregions, 1);
    CHECK(b.region[0].guest_addr == 0 && b.region[0].size == SMALL && b.region[0].mmap_offset == 0);
    vhost_table(LARGE, &b);
    CHECK_EQ(b.nregions, 2);
    CHECK(b.region[0].guest_addr == 0 && b.region[0].size == GM_LOW_END && b.region[0].mmap_offset == 0);
    /* the part above the hole: the memfd's bytes after the low part's, as in bellhop's mapping */
    CHECK(b.region[1].guest_addr == GM_HIGH_START && b.region[1].size == 512 * MIB &&
          b.region[1].mmap_offset == GM_LOW_END && b.region[1].user_addr == b.region[0].user_addr + GM_LOW_END);
}
