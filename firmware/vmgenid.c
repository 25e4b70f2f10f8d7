/* The VM generation ID's bytes (firmware/vmgenid.h). */
#include <sys/random.h>

#include "firmware/vmgenid.h"

bool vmgenid_renew(const struct guest_mem *gm) {
    uint8_t id[VMGENID_SIZE];
    return getrandom(id, sizeof id, 0) == (ssize_t)sizeof id && gm_write(gm, VMGENID_ADDR, id, sizeof id);
}
