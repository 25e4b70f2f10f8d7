/* A snapshot's state file: what bellhop writes beside the guest's memory file, and checks
 * before it believes any of it.
 *
 *   magic       8 bytes, "BHSNAP" and the architecture ("x86_64" packs as 0x8664)
 *   version     MAJOR, MINOR, PATCH (uint16 each, little-endian), then 2 zero bytes: the
 *               format's, independent of bellhop's own; a file is read when its MAJOR is
 *               this bellhop's and its MINOR no newer. A writer puts the oldest MINOR that
 *               has every section it wrote: a Full snapshot's file is 1.0.0, which any 1.0
 *               reader takes; a Diff's, with the section 1.1 added, is 1.1.0
 *   sections    each {uint32 kind, uint32 index, uint64 length, bytes}, in any order
 *   crc64       of everything before it (CRC-64/XZ, ECMA-182 polynomial, as xz's files)
 *
 * The sections: the machine (its configuration as the API's JSON, and the memory size), the
 * guest's KVM state, one per vCPU (index: its number), one per device (index: its place;
 * the bytes start with the device's name, NUL-terminated), and for a diff snapshot (1.1) the
 * diff's. */
#ifndef BELLHOP_VMM_MACHINE_SNAPSHOT_FILE_H
#define BELLHOP_VMM_MACHINE_SNAPSHOT_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAPSHOT_MAGIC "BHSNAP\x86\x64"
#define SNAPSHOT_MAJOR 1u
#define SNAPSHOT_MINOR 1u /* 1.1: SNAP_DIFF */
#define SNAPSHOT_PATCH 0u
#define SNAPSHOT_MAX_FILE (16u << 20)
/* A file holds one section per vCPU, numbered from 0: raising this bound left older files,
 * with fewer, as they were (an older bellhop refuses a file with more, naming the vCPU). */
#define SNAPSHOT_MAX_VCPUS 32u
#define SNAPSHOT_MAX_DEVICES 32u
#define SNAPSHOT_NAME_MAX 48u

enum snapshot_section {
    SNAP_MACHINE = 1, /* uint64 memory size, uint32 flags, uint32 0, the configuration's JSON\0 */
    SNAP_GUEST,       /* bellhop_guest_save's records */
    SNAP_VCPU,        /* bellhop_vcpu_save's records */
    SNAP_DEVICE,      /* name\0, then the device's own state */
    /* (1.1) The memory file holds only the pages written since the snapshot before (holes
     * elsewhere), to be rebased onto that one's. Up to SNAPSHOT_MAX_PROBES {uint64 page,
     * uint64 CRC-64 of its 4 KiB}: pages it does not hold that are not zeros, which the
     * memory file given to a restore must hold (the diff's own would have holes there). */
    SNAP_DIFF,
};
#define SNAPSHOT_MAX_PROBES 8u

struct snapshot_probe {
    uint64_t page, crc;
};

#define SNAPSHOT_LINUX_SMP 1u  /* cpus past the first wait for the guest's INIT/SIPI */
#define SNAPSHOT_VIRTIO_PCI 2u /* virtio devices on PCI, not virtio-mmio */

struct snapshot_blob {
    const uint8_t *data;
    size_t len;
};

struct snapshot_device {
    char name[SNAPSHOT_NAME_MAX];
    struct snapshot_blob state;
};

/* A state file read and checked: every pointer points into the buffer it was read from. */
struct snapshot {
    uint16_t major, minor, patch;
    uint64_t mem_size;
    uint32_t flags;
    const char *config_json;
    struct snapshot_blob guest;
    struct snapshot_blob vcpus[SNAPSHOT_MAX_VCPUS];
    unsigned nvcpus;
    struct snapshot_device devices[SNAPSHOT_MAX_DEVICES];
    unsigned ndevices;
    bool diff; /* a SNAP_DIFF section, its probes below */
    struct snapshot_probe probes[SNAPSHOT_MAX_PROBES];
    unsigned nprobes;
};

/* Checks buf (a whole state file) and fills *s: 0, or -1 with a one-line reason. */
int snapshot_parse(const uint8_t *buf, size_t len, struct snapshot *s, char *err, size_t errlen);

/* Where a restored guest's memory comes from (PUT /snapshot/load's mem_backend). */
enum snapshot_backend {
    SNAPSHOT_BACKEND_FILE, /* the memory file, mapped private */
    SNAPSHOT_BACKEND_UFFD, /* a page-fault handler on a Unix socket (vmm/machine/uffd_backend.h) */
};

/* A snapshot opened for restoring: its state file read whole and checked, and its memory file
 * open (and as long as the state says guest memory is), or for the Uffd backend the handler's
 * socket path (bellhop never sees the file the handler serves from). */
struct snapshot_image {
    uint8_t *buf;
    size_t len;
    struct snapshot state;
    int mem_fd;        /* -1 with the Uffd backend */
    char *uffd_socket; /* the Uffd backend's socket (the image's copy); NULL with a file */
};
/* mem_path: the memory file, or the handler's socket. 0, or -1 with a one-line reason
 * (nothing left open). */
int snapshot_open(const char *state_path, enum snapshot_backend backend, const char *mem_path,
                  struct snapshot_image *img, char *err, size_t errlen);
void snapshot_close(struct snapshot_image *img);

/* A state file being made in memory. */
struct snapshot_writer {
    uint8_t *buf;
    size_t len, cap;
    int failed; /* out of memory once: every later call does nothing */
};
void snapshot_writer_init(struct snapshot_writer *w);
void snapshot_add(struct snapshot_writer *w, enum snapshot_section kind, uint32_t index, const void *head,
                  size_t head_len, const void *data, size_t len);
/* Appends the CRC: 0, or -1 when memory ran out along the way. */
int snapshot_finish(struct snapshot_writer *w);
void snapshot_writer_free(struct snapshot_writer *w);

/* The memory file: vmm/machine/snapshot_memory.h. */

#endif
