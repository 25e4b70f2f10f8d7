/* The disk's rate as a host sees it (guest/diskrate.h). */
#include "guest/diskrate.h"

#define DISKRATE_MAX_BYTES (64u << 10)

struct blk_req_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

void disk_rate(struct vdev *blk, const char *args) {
    char *end;
    unsigned long ops = strtoul(args, &end, 0), bytes = *end == ',' ? strtoul(end + 1, NULL, 0) : 4096;
    if (!blk || !ops || bytes < 512 || bytes > DISKRATE_MAX_BYTES || bytes % 512) {
        printf("diskrate: no disk, or not OPS,BYTES (512-byte multiples up to 64 KiB)\n");
        return;
    }
    uint64_t sectors = vdev_config32(blk, 0) | (uint64_t)vdev_config32(blk, 4) << 32;
    uint64_t span = sectors / (bytes / 512);
    static struct blk_req_hdr hdr;
    static uint8_t status;
    uint8_t *data = alloc_pages(DISKRATE_MAX_BYTES);
    unsigned long step = ops / 10 ? ops / 10 : 1, failed = 0;
    printf("diskrate: start %lu reads of %lu bytes\n", ops, bytes);
    for (unsigned long i = 0; i < ops; i++) {
        hdr = (struct blk_req_hdr){0, 0, span ? (i % span) * (bytes / 512) : 0};
        status = 0xff;
        struct vbuf bufs[3] = {{&hdr, sizeof hdr, false}, {data, (uint32_t)bytes, true}, {&status, 1, true}};
        if (vdev_request_polled(blk, 0, bufs, 3) < 0 || status != 0) failed++;
        if ((i + 1) % step == 0) printf("diskrate: %lu done\n", i + 1);
    }
    printf("diskrate: end, %lu failed\n", failed);
}
