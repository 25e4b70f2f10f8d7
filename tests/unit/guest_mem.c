/* Guest RAM taking a file's pages copy-on-write (gm_write_file) and what must hold for it:
 * partial pages copied, writes never reaching the file, zeroing and discarding giving zeros
 * rather than the file again, and a file changed under a lease never reaching guest RAM (the
 * break handled on a real loop while another process waits to write). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include <lib/async-loop/loop.h>

#include "base/guest_mem.h"
#include "vmm/machine/image_lease.h"
#include "tests/lib/check.h"

#define RAM (8u << 20)
#define PAGE 4096u
#define FILE_LEN (1u << 20)

static uint8_t byte_at(uint64_t off, uint8_t salt) { return (uint8_t)(off * 131 + off / 4093 + salt); }

/* A file of FILE_LEN bytes of pattern `salt` in /tmp, open read-only (*fd), mapped (*image). */
static void make_file(char *path, int *fd, const uint8_t **image, uint8_t salt) {
    strcpy(path, "/tmp/bellhop-gm-XXXXXX");
    int w = mkstemp(path);
    CHECK(w >= 0);
    static uint8_t buf[FILE_LEN];
    for (uint32_t i = 0; i < FILE_LEN; i++) buf[i] = byte_at(i, salt);
    CHECK_EQ(write(w, buf, FILE_LEN), (ssize_t)FILE_LEN);
    close(w);
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(*fd >= 0);
    *image = mmap(NULL, FILE_LEN, PROT_READ, MAP_PRIVATE, *fd, 0);
    CHECK(*image != MAP_FAILED);
}

/* A file (make_file) and RAM as bellhop has it: private anonymous, able to take files' pages. */
struct fixture {
    char path[64];
    int fd; /* -1 once a lease owns it */
    const uint8_t *image;
    struct gm_files files;
    struct guest_mem gm;
};

static void setup(struct fixture *f, uint8_t salt) {
    make_file(f->path, &f->fd, &f->image, salt);
    f->files = (struct gm_files){0};
    uint8_t *host = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(host != MAP_FAILED);
    f->gm = (struct guest_mem){host, RAM, &f->files, NULL};
}

static void teardown(struct fixture *f) {
    munmap(f->gm.host, RAM);
    munmap((void *)f->image, FILE_LEN);
    if (f->fd >= 0) close(f->fd);
    unlink(f->path);
}

static bool ram_holds(const struct guest_mem *gm, uint64_t gpa, uint64_t off, uint64_t len, uint8_t salt) {
    for (uint64_t i = 0; i < len; i++)
        if (gm->host[gpa + i] != byte_at(off + i, salt)) return false;
    return true;
}

static bool file_holds(int fd, uint64_t off, uint8_t want) {
    uint8_t b;
    return pread(fd, &b, 1, (off_t)off) == 1 && b == want;
}

TEST(file_pages_mapped_with_partial_pages_copied) {
    struct fixture f;
    setup(&f, 1);
    /* gpa and offset alike within a page, neither page-aligned: a copied head and tail */
    uint64_t gpa = 0x100300, off = 0x2300, len = 0x80000 + 0x123;
    CHECK(gm_write_file(&f.gm, gpa, f.image, FILE_LEN, f.fd, off, len));
    CHECK_EQ(f.files.n, 1u);
    CHECK_EQ(f.files.range[0].off, 0x101000u);
    CHECK_EQ(f.files.mapped, 0x80000u - PAGE);
    CHECK(ram_holds(&f.gm, gpa, off, len, 1));
    CHECK_EQ(f.gm.host[gpa - 1], 0); /* nothing outside the range */
    CHECK_EQ(f.gm.host[gpa + len], 0);
    /* a guest's write stays in guest RAM */
    f.gm.host[0x110000] ^= 0xff;
    CHECK(file_holds(f.fd, off + (0x110000 - gpa), byte_at(off + (0x110000 - gpa), 1)));
    /* zeroing or discarding mapped pages gives zeros, not the file once more */
    CHECK(gm_zero(&f.gm, 0x120000, 3 * PAGE));
    CHECK(gm_discard(&f.gm, 0x130000, 2 * PAGE));
    for (unsigned i = 0; i < 3 * PAGE; i++) CHECK_EQ(f.gm.host[0x120000 + i], 0);
    for (unsigned i = 0; i < 2 * PAGE; i++) CHECK_EQ(f.gm.host[0x130000 + i], 0);
    CHECK(ram_holds(&f.gm, 0x132000, 0x132000 - gpa + off, PAGE, 1));
    /* outside the file or RAM: refused, nothing written */
    CHECK(!gm_write_file(&f.gm, 0, f.image, FILE_LEN, f.fd, FILE_LEN - 10, 11));
    CHECK(!gm_write_file(&f.gm, RAM - PAGE, f.image, FILE_LEN, f.fd, 0, 2 * PAGE));
    teardown(&f);
}

TEST(copied_where_pages_cannot_be_shared) {
    struct fixture f;
    setup(&f, 2);
    /* offset and gpa apart within a page; too short; no fd; RAM that cannot take files */
    CHECK(gm_write_file(&f.gm, 0x200000, f.image, FILE_LEN, f.fd, 0x10, 0x40000));
    CHECK(gm_write_file(&f.gm, 0x300000, f.image, FILE_LEN, f.fd, 0, PAGE - 1));
    CHECK(gm_write_file(&f.gm, 0x400000, f.image, FILE_LEN, -1, 0, 0x40000));
    struct guest_mem shared = {f.gm.host, RAM, NULL, NULL};
    CHECK(gm_write_file(&shared, 0x500000, f.image, FILE_LEN, f.fd, 0, 0x40000));
    CHECK_EQ(f.files.n, 0u);
    CHECK(ram_holds(&f.gm, 0x200000, 0x10, 0x40000, 2));
    CHECK(ram_holds(&f.gm, 0x300000, 0, PAGE - 1, 2));
    CHECK(ram_holds(&f.gm, 0x400000, 0, 0x40000, 2));
    CHECK(ram_holds(&f.gm, 0x500000, 0, 0x40000, 2));
    /* zeroing copied RAM: dropped whole pages read as zeros too */
    CHECK(gm_zero(&f.gm, 0x200010, 0x20000));
    for (unsigned i = 0; i < 0x20000; i++) CHECK_EQ(f.gm.host[0x200010 + i], 0);
    CHECK(ram_holds(&f.gm, 0x220010, 0x20020, 0x100, 2));
    teardown(&f);
}

TEST(unshared_ram_no_longer_follows_the_file) {
    struct fixture f;
    setup(&f, 3);
    CHECK(gm_write_file(&f.gm, 0x100000, f.image, FILE_LEN, f.fd, 0, FILE_LEN));
    CHECK_EQ(f.files.mapped, (uint64_t)FILE_LEN);
    f.gm.host[0x100000 + 5 * PAGE] ^= 0xff; /* a page the guest wrote, another it did not */
    CHECK_EQ(gm_unshare(&f.gm), 0);
    int w = open(f.path, O_WRONLY | O_TRUNC);
    CHECK(w >= 0);
    static uint8_t other[FILE_LEN];
    memset(other, 0xee, sizeof other);
    CHECK_EQ(pwrite(w, other, FILE_LEN, 0), (ssize_t)FILE_LEN);
    close(w);
    f.gm.host[0x100000 + 5 * PAGE] ^= 0xff;
    CHECK(ram_holds(&f.gm, 0x100000, 0, FILE_LEN, 3));
    teardown(&f);
}

static void unshare(void *gm) { CHECK_EQ(gm_unshare(gm), 0); }

/* Another process rewrites the file in place (open O_TRUNC, write) while guest RAM shares its
 * pages under a lease: its open waits for bellhop's loop, which copies what RAM shares first. */
TEST_TIMEOUT(a_leased_file_rewritten_in_place_leaves_ram_as_loaded, 60) {
    struct fixture f;
    setup(&f, 4);
    struct image_leases leases;
    image_leases_init(&leases);
    int shared = image_lease_take(&leases, f.fd);
    if (shared < 0 && errno == EACCES) test_skip("no lease on a file of one's own here");
    CHECK_EQ(shared, f.fd);
    f.fd = -1; /* the lease's now */
    CHECK(gm_write_file(&f.gm, 0x100000, f.image, FILE_LEN, shared, 0, FILE_LEN));
    /* held: a writer that will not wait is refused at once */
    CHECK_EQ(open(f.path, O_WRONLY | O_NONBLOCK), -1);
    CHECK_EQ(errno, EWOULDBLOCK);
    async_loop_t *loop;
    CHECK_EQ(async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop), ZX_OK);
    CHECK_EQ(image_leases_watch(&leases, async_loop_get_dispatcher(loop), unshare, &f.gm), 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        int w = open(f.path, O_WRONLY | O_TRUNC);
        static uint8_t other[FILE_LEN];
        memset(other, 0x5a, sizeof other);
        _exit(w >= 0 && write(w, other, FILE_LEN) == (ssize_t)FILE_LEN ? 0 : 1);
    }
    for (int i = 0; i < 500 && leases.n > 0; i++) async_loop_run(loop, zx_deadline_after(ZX_MSEC(10)), true);
    int status = -1;
    waitpid(child, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer status %#x", status);
    CHECK_EQ(leases.n, 0u); /* let go */
    CHECK(ram_holds(&f.gm, 0x100000, 0, FILE_LEN, 4));
    int now = open(f.path, O_RDONLY); /* (the fd went with the lease) */
    CHECK(file_holds(now, 0, 0x5a));
    close(now);
    image_leases_release(&leases);
    async_loop_destroy(loop);
    teardown(&f);
}

TEST(no_lease_on_a_file_open_for_writing) {
    char path[64];
    int fd;
    const uint8_t *image;
    make_file(path, &fd, &image, 5);
    int w = open(path, O_WRONLY);
    CHECK(w >= 0);
    struct image_leases leases;
    image_leases_init(&leases);
    CHECK_EQ(image_lease_take(&leases, fd), -1);
    CHECK_EQ(leases.n, 0u);
    close(w);
    image_leases_release(&leases);
    munmap((void *)image, FILE_LEN);
    close(fd);
    unlink(path);
}


/* RAM past 3 GiB lies from 4 GiB on, in the host mapping right after the low part: nothing
 * in the hole or across it is RAM, and the dirty bitmap and the file ranges count RAM offsets. */
TEST(ram_past_3_gib_lies_above_the_hole) {
    const uint64_t size = GM_LOW_END + (8u << 20);
    uint8_t *host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(host != MAP_FAILED);
    struct dirty_pages written;
    CHECK_EQ(dirty_pages_init(&written, size), 0);
    struct gm_files files = {0};
    const struct guest_mem gm = {host, size, &files, &written};
    struct gm_range r[2];
    CHECK_EQ(gm_ranges(&gm, r), 2u);
    CHECK(r[0].gpa == 0 && r[0].off == 0 && r[0].size == GM_LOW_END);
    CHECK(r[1].gpa == GM_HIGH_START && r[1].off == GM_LOW_END && r[1].size == (8u << 20));
    CHECK_EQ(gm_end(&gm), GM_HIGH_START + (8u << 20));
    CHECK(gm_ptr(&gm, GM_LOW_END - PAGE, PAGE) == host + GM_LOW_END - PAGE);
    CHECK(gm_ptr(&gm, GM_HIGH_START, PAGE) == host + GM_LOW_END);
    CHECK(gm_ptr(&gm, GM_HIGH_START + (8u << 20) - 8, 8) == host + size - 8);
    CHECK(!gm_valid(&gm, GM_LOW_END - PAGE, 2 * PAGE)); /* into the hole */
    CHECK(!gm_valid(&gm, GM_LOW_END, 1));
    CHECK(!gm_valid(&gm, GM_HIGH_START - 1, 2));
    CHECK(!gm_valid(&gm, GM_HIGH_START + (8u << 20) - 8, 9));
    CHECK(!gm_valid(&gm, UINT64_MAX - 3, 2));
    CHECK(gm_write(&gm, GM_HIGH_START + PAGE, "x", 1));
    CHECK_EQ(host[GM_LOW_END + PAGE], 'x');
    CHECK(dirty_pages_test(&written, GM_LOW_END / PAGE + 1));
    CHECK_EQ(dirty_pages_count(&written), 1u);
    /* a file's pages above the hole, then zeroing there: the range is RAM offsets */
    char path[64];
    int fd;
    const uint8_t *image;
    make_file(path, &fd, &image, 7);
    CHECK(gm_write_file(&gm, GM_HIGH_START + 2 * PAGE, image, FILE_LEN, fd, 0, 4 * PAGE));
    CHECK_EQ(files.n, 1u);
    CHECK_EQ(files.range[0].off, GM_LOW_END + 2 * PAGE);
    CHECK(host[GM_LOW_END + 2 * PAGE + 5] == byte_at(5, 7));
    CHECK(gm_zero(&gm, GM_HIGH_START + 2 * PAGE, PAGE));
    CHECK(host[GM_LOW_END + 2 * PAGE + 5] == 0 && host[GM_LOW_END + 3 * PAGE] == byte_at(PAGE, 7));
    /* a RAM of 3 GiB or less has nothing above the hole */
    const struct guest_mem low = {host, GM_LOW_END, NULL, NULL};
    CHECK_EQ(gm_ranges(&low, r), 1u);
    CHECK(!gm_valid(&low, GM_HIGH_START, 0) && gm_valid(&low, GM_LOW_END, 0));
    munmap((void *)image, FILE_LEN);
    close(fd);
    unlink(path);
    dirty_pages_free(&written);
    munmap(host, size);
}
