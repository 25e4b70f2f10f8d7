/* The device tree bellhop writes into guest RAM: whole with the longest command line and the
 * most devices, refused rather than cut short when it cannot fit, and written only where it
 * lies (fresh guest RAM is zeros already; touching more faults pages in at every launch). */
#include <libfdt.h>
#include <string.h>

#include "firmware/fdt.h"
#include "tests/lib/check.h"

static uint8_t buf[0x10000];

/* Every transport there is, and a command line of the most a user may give (4095 bytes). */
static const char *big_machine(struct fdt_machine *m) {
    static char cmdline[4096];
    memset(cmdline, 'x', sizeof cmdline - 1);
    fdt_microvm_layout(m, 512ull << 20, cmdline);
    m->ncpus = 32;
    m->nvirtio = FDT_MAX_VIRTIO;
    for (unsigned i = 0; i < FDT_MAX_VIRTIO; i++)
        m->virtio[i] = (struct fdt_virtio_mmio){0xd0000000u + 0x1000u * i, 0x1000, 5 + i};
    return cmdline;
}

TEST(the_largest_tree_is_whole_in_its_room) {
    struct fdt_machine m;
    const char *cmdline = big_machine(&m);
    int size = fdt_build(&m, buf, sizeof buf);
    CHECK_MSG(size > 8192, "size %d: this test means a tree larger than the first try", size);
    CHECK(fdt_check_header(buf) == 0 && fdt_totalsize(buf) == (uint32_t)size);
    int chosen = fdt_path_offset(buf, "/chosen"), len = 0;
    const char *args = chosen >= 0 ? fdt_getprop(buf, chosen, "bootargs", &len) : NULL;
    CHECK(args && len == (int)strlen(cmdline) + 1 && strcmp(args, cmdline) == 0);
}

TEST(a_tree_without_room_is_refused_not_cut_short) {
    struct fdt_machine m;
    big_machine(&m);
    CHECK(fdt_build(&m, buf, 4096) == -FDT_ERR_NOSPACE);
    int size = fdt_build(&m, buf, sizeof buf);
    CHECK(size > 8192);
    CHECK(fdt_build(&m, buf, (size_t)size - 1) == -FDT_ERR_NOSPACE); /* past the first try, still short */
}

TEST(a_small_tree_writes_only_its_first_pages) {
    struct fdt_machine m;
    fdt_microvm_layout(&m, 512ull << 20, "console=ttyS0");
    memset(buf, 0xa5, sizeof buf);
    int size = fdt_build(&m, buf, sizeof buf);
    CHECK(size > 0 && size <= 8192 && fdt_check_header(buf) == 0);
    for (size_t i = 8192; i < sizeof buf; i++) CHECK_MSG(buf[i] == 0xa5, "byte %zu written", i);
}
