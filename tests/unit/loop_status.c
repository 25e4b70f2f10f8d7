#include <zircon/errors.h>
#include <zircon/status.h>

#include "tests/lib/check.h"

TEST(names_follow_zircon) {
    CHECK_STR_EQ(zx_status_get_string(ZX_OK), "ZX_OK");
    CHECK_STR_EQ(zx_status_get_string(ZX_ERR_BAD_HANDLE), "ZX_ERR_BAD_HANDLE");
    CHECK_STR_EQ(zx_status_get_string(ZX_ERR_CONNECTION_ABORTED), "ZX_ERR_CONNECTION_ABORTED");
    CHECK_STR_EQ(zx_status_get_string(12345), "(UNKNOWN)");
}

TEST(values_follow_zircon) {
    CHECK_EQ(ZX_ERR_INTERNAL, -1);
    CHECK_EQ(ZX_ERR_INVALID_ARGS, -10);
    CHECK_EQ(ZX_ERR_BAD_STATE, -20);
    CHECK_EQ(ZX_ERR_SHOULD_WAIT, -22);
    CHECK_EQ(ZX_ERR_CANCELED, -23);
    CHECK_EQ(ZX_ERR_ACCESS_DENIED, -30);
    CHECK_EQ(ZX_ERR_STOP, -60);
    CHECK_EQ(ZX_ERR_CONNECTION_ABORTED, -76);
}
