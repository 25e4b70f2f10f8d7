/* The Uffd restore's message (vmm/machine/uffd_backend.h): bellhop's region table, byte for
 * byte as Firecracker writes its own, and the tests' handler (tests/lib/uffd_handler.h)
 * reading it, and Firecracker's, and refusing what is not a region table. No KVM. */
#include <stdio.h>
#include <string.h>

#include "tests/lib/check.h"
#include "tests/lib/uffd_handler.h"
#include "vmm/machine/uffd_backend.h"

TEST(the_region_table_is_firecrackers_json) {
    struct uffd_region r[2] = {{0x7f0000000000, 128u << 20, 0, 4096}, {0x7f1000000000, 4096, 128u << 20, 4096}};
    char buf[512];
    int n = uffd_region_table(r, 1, buf, sizeof buf);
    CHECK_STR_EQ(buf, "[{\"base_host_virt_addr\":139637976727552,\"size\":134217728,\"offset\":0,"
                      "\"page_size\":4096,\"page_size_kib\":4096}]");
    CHECK_EQ(n, (int)strlen(buf));
    n = uffd_region_table(r, 2, buf, sizeof buf);
    CHECK(n > 0 && strstr(buf, "},{\"base_host_virt_addr\":139706696204288,\"size\":4096,\"offset\":134217728,"));
    /* too small by one byte (the NUL): refused, nothing past the buffer */
    char small[200];
    memset(small, 'x', sizeof small);
    CHECK_EQ(uffd_region_table(r, 1, small, (size_t)uffd_region_table(r, 1, buf, sizeof buf)), -1);
    CHECK_EQ(uffd_region_table(r, 0, buf, sizeof buf), 2);
    CHECK_STR_EQ(buf, "[]");
}

TEST(ram_past_3_gib_is_two_regions_one_after_the_other_in_the_memory_file) {
    uint8_t *host = (uint8_t *)0x7f0000000000;
    struct uffd_region r[2];
    CHECK_EQ(uffd_ram_regions(host, 128u << 20, r), 1);
    CHECK(r[0].host == (uintptr_t)host && r[0].size == 128u << 20 && r[0].offset == 0 && r[0].page_size == 4096);
    CHECK_EQ(uffd_ram_regions(host, (3ull << 30) + (512u << 20), r), 2);
    CHECK(r[0].host == (uintptr_t)host && r[0].size == 3ull << 30 && r[0].offset == 0);
    CHECK(r[1].host == (uintptr_t)host + (3ull << 30) && r[1].size == 512u << 20 && r[1].offset == 3ull << 30 &&
          r[1].page_size == 4096);
    /* and the tests' handler takes the message they make */
    char buf[512], err[200];
    CHECK(uffd_region_table(r, 2, buf, sizeof buf) > 0);
    struct uffd_handler_region got[4];
    unsigned n;
    CHECK_MSG(uffd_handler_parse(buf, strlen(buf), got, 4, &n, err, sizeof err) == 0, "%s", err);
    CHECK(n == 2 && got[1].base == r[1].host && got[1].size == r[1].size && got[1].offset == r[1].offset);
}

static int parse(const char *json, struct uffd_handler_region *out, unsigned *n, char *err) {
    return uffd_handler_parse(json, strlen(json), out, 4, n, err, 200);
}

TEST(the_handler_reads_bellhops_and_firecrackers_messages) {
    struct uffd_region r = {0x7f0000000000, 128u << 20, 0, 4096};
    char buf[512], err[200];
    uffd_region_table(&r, 1, buf, sizeof buf);
    struct uffd_handler_region got[4];
    unsigned n;
    CHECK_MSG(parse(buf, got, &n, err) == 0, "%s", err);
    CHECK_EQ(n, 1);
    CHECK(got[0].base == r.host && got[0].size == r.size && got[0].offset == 0 && got[0].page_size == 4096);
    /* as Firecracker's serde writes two regions (the RAM below and above its MMIO gap), spaced */
    CHECK_MSG(parse(" [ {\"base_host_virt_addr\": 4096, \"size\": 8192, \"offset\": 0, \"page_size\": 4096, "
                    "\"page_size_kib\": 4096}, {\"page_size\": 4096, \"offset\": 8192, \"size\": 4096, "
                    "\"base_host_virt_addr\": 65536, \"other\": \"x\", \"flag\": true} ]\n", got, &n, err) == 0, "%s", err);
    CHECK(n == 2 && got[1].base == 65536 && got[1].offset == 8192);
}

TEST(the_handler_refuses_what_is_not_a_region_table) {
    static const struct {
        const char *json, *why;
    } bad[] = {
        {"", "not a JSON array"},
        {"[]", "no regions"},
        {"[{\"size\":4096,\"offset\":0,\"page_size\":4096}]", "no base_host_virt_addr"},
        {"[{\"base_host_virt_addr\":0,\"size\":4096,\"offset\":0,\"page_size\":4096,\"size\":4096}]", "size twice"},
        {"[{\"base_host_virt_addr\":-4096,\"size\":4096,\"offset\":0,\"page_size\":4096}]", "not an unsigned integer"},
        {"[{\"base_host_virt_addr\":4096.0,\"size\":4096,\"offset\":0,\"page_size\":4096}]", "not an unsigned integer"},
        {"[{\"base_host_virt_addr\":18446744073709551616,\"size\":4096,\"offset\":0,\"page_size\":4096}]",
         "not an unsigned integer"},
        {"[{\"base_host_virt_addr\":100,\"size\":4096,\"offset\":0,\"page_size\":4096}]", "not aligned"},
        {"[{\"base_host_virt_addr\":0,\"size\":0,\"offset\":0,\"page_size\":4096}]", "empty"},
        {"[{\"base_host_virt_addr\":0,\"size\":4096,\"offset\":0,\"page_size\":3000}]", "not a power of two"},
        {"[{\"base_host_virt_addr\":18446744073709547520,\"size\":8192,\"offset\":0,\"page_size\":4096}]",
         "past the end of the address space"},
        {"[{\"base_host_virt_addr\":0,\"size\":8192,\"offset\":0,\"page_size\":4096},"
         "{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096}]", "overlap"},
        {"[{\"base_host_virt_addr\":0,\"size\":4096,\"offset\":0,\"page_size\":4096,\"x\":[1]}]", "not a scalar"},
        {"[{\"base_host_virt_addr\":0,\"size\":4096,\"offset\":0,\"page_size\":4096}] x", "bytes after the array"},
        {"[{\"base_host_virt_addr\":0,\"size\":4096,\"offset\":0,\"page_size\":4096}", "a malformed array"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct uffd_handler_region got[4];
        unsigned n;
        char err[200] = "";
        CHECK_MSG(parse(bad[i].json, got, &n, err) == -1 && strstr(err, bad[i].why), "%s: '%s', wanted '%s'",
                  bad[i].json, err, bad[i].why);
    }
    /* more regions than the caller has room for */
    char many[1024] = "[";
    for (int i = 0; i < 5; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s{\"base_host_virt_addr\":%d,\"size\":4096,"
                 "\"offset\":0,\"page_size\":4096}", i ? "," : "", i * 4096);
    strcat(many, "]");
    struct uffd_handler_region got[4];
    unsigned n;
    char err[200];
    CHECK(parse(many, got, &n, err) == -1 && strstr(err, "more than 4 regions"));
}
