/* KVM's dirty log through the hypervisor calls (bellhop_guest_track_dirty, _take_dirty), on
 * real KVM: the pages a guest writes come back once, each take forgetting them; the log
 * survives the memory slots being cut up again (a trap placed over RAM); RAM the host writes
 * through its own mapping is not in it; a take without tracking is refused. */
#include "tests/kvm/hv_common.h"

/* Writes a word to each of three pages (one of them twice), reads a fourth, powers off. */
GUEST_SNIPPET(dirty_guest,
              "    movl $1, 0x80000\n"
              "    movl $2, 0x81ffc\n"
              "    movl $3, 0x1ff000\n"
              "    movl $4, 0x80004\n"
              "    movl 0x90000, %eax\n"
              "    POWEROFF\n"
              "1:  hlt\n"
              "    jmp 1b\n");

#define WORDS (GUEST_RAM / 4096 / 64)

static void run_to_poweroff(struct hv *h) {
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h->guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
}

static bool has(const uint64_t *bits, uint64_t gpa) { return bits[gpa / 4096 / 64] >> (gpa / 4096 % 64) & 1; }

static unsigned count(const uint64_t *bits) {
    unsigned n = 0;
    for (unsigned i = 0; i < WORDS; i++) n += (unsigned)__builtin_popcountll(bits[i]);
    return n;
}

TEST(the_pages_a_guest_writes_come_back_once) {
    struct hv h;
    hv_init(&h, dirty_guest, dirty_guest_end);
    uint64_t bits[WORDS] = {0};
    CHECK_EQ(bellhop_guest_take_dirty(h.guest, 0, GUEST_RAM, bits), ZX_ERR_BAD_STATE);
    CHECK_EQ(bellhop_guest_track_dirty(h.guest), ZX_OK);
    CHECK_EQ(bellhop_guest_track_dirty(h.guest), ZX_OK); /* again: nothing changes */
    h.ram[0x100000] = 1; /* the host's own write: not KVM's to see */
    run_to_poweroff(&h);
    CHECK_EQ(bellhop_guest_take_dirty(h.guest, 0, GUEST_RAM, bits), ZX_OK);
    CHECK(has(bits, 0x80000) && has(bits, 0x81000) && has(bits, 0x1ff000));
    CHECK(!has(bits, 0x90000) && !has(bits, 0x100000) && !has(bits, 0x82000));
    /* (the code's own page and the GDT's may be there too: KVM may set accessed bits) */
    CHECK_MSG(count(bits) <= 6, "%u pages", count(bits));
    memset(bits, 0, sizeof bits);
    CHECK_EQ(bellhop_guest_take_dirty(h.guest, 0, GUEST_RAM, bits), ZX_OK);
    CHECK_EQ(count(bits), 0);
    CHECK_EQ(bellhop_guest_take_dirty(h.guest, 1, GUEST_RAM, bits), ZX_ERR_INVALID_ARGS);
    zx_handle_close(h.guest);
}

TEST(the_log_survives_the_slots_being_cut_again) {
    struct hv h;
    hv_init(&h, dirty_guest, dirty_guest_end);
    CHECK_EQ(bellhop_guest_track_dirty(h.guest), ZX_OK);
    run_to_poweroff(&h);
    /* a MEM trap over RAM splits its slot: the old one goes, with its log */
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_MEM, 0x100000, 0x1000, ZX_HANDLE_INVALID, 1), ZX_OK);
    uint64_t bits[WORDS] = {0};
    CHECK_EQ(bellhop_guest_take_dirty(h.guest, 0x80000, 0x100000, bits), ZX_OK); /* half of RAM, from 512 KiB */
    CHECK(has(bits, 0) && has(bits, 0x1000)); /* 0x80000 and 0x81000, counted from 0x80000 */
    CHECK_EQ(count(bits), 2);
    memset(bits, 0, sizeof bits);
    CHECK_EQ(bellhop_guest_take_dirty(h.guest, 0, GUEST_RAM, bits), ZX_OK); /* the rest: 0x1ff000 */
    CHECK(has(bits, 0x1ff000) && !has(bits, 0x80000));
    zx_handle_close(h.guest);
}
