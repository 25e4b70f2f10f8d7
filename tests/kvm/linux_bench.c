/* `bellhop bench` timing Linux boots on real KVM: a stock Linux kernel needs full x86
 * virtualization, so on a PVM host this binary runs in the nested KVM host (tests/run.sh runs
 * every tests/kvm/linux_* there). */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/build_paths.h"
#include "tests/lib/check.h"
#include "bench/bellhop_bench/bench.h"
#include "bench/bellhop_bench/spawn.h"

static char bellhop[PATH_MAX];
static char out[1 << 16];

static void find_bellhop(void) { snprintf(bellhop, sizeof bellhop, "%s", test_build_file("bellhop")); }

/* Sanitizer builds (build/asan, build/tsan) are slower in ways that say nothing of bellhop. */
static bool sanitized(void) { return test_sanitized_build(); }

TEST_TIMEOUT(bench_times_linux_boots_with_the_hosts_reference_beside_each, 600) {
    /* bellhop bench --only boot: a warm-up boot and one timed boot per VMM and image (a second
     * when the host's reference says the first met a slow host), each with the reference taken
     * before and after it; QEMU's when this machine has it */
    find_bellhop();
    if (sanitized()) test_skip("boot times of a sanitizer build say nothing");
    if (access("build/linux/bzImage", R_OK) != 0 || access("build/linux/vmlinux", R_OK) != 0)
        test_skip("no build/linux (make linux-files)");
    char *const argv[] = {bellhop, "bench", "--json", "--only", "boot", "--rounds", "1", NULL};
    int status = spawn_capture(argv, NULL, out, sizeof out);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bench status %#x: %s", status, out);
    char dir[PATH_MAX];
    bool qemu = bench_qemu_path(dir, sizeof dir) != NULL;
    static const char *const images[] = {"linux", "linux_pvh"};
    for (size_t i = 0; i < 2; i++) {
        char key[64];
        double bh = -1, q = -1, round = -1;
        unsigned long long ref = 0;
        unsigned kept = 0;
        snprintf(key, sizeof key, "\"%s_boot_to_init_ms\": {", images[i]);
        const char *at = strstr(out, key);
        CHECK_MSG(at && sscanf(at + strlen(key), "\"bellhop\": %lf, \"qemu_microvm\": %lf, \"bellhop_rounds\": [%lf", &bh,
                               &q, &round) == 3,
                  "%s in %s", key, out);
        CHECK_MSG(bh > 100 && round > 100 && (q > 100) == qemu, "%s: bellhop %.1f (a round %.1f), QEMU %.1f", images[i],
                  bh, round, q);
        snprintf(key, sizeof key, "\"%s_refs\": {\"bellhop\": [", images[i]);
        at = strstr(out, key);
        CHECK_MSG(at && sscanf(at + strlen(key), "%llu", &ref) == 1 && ref > 1000, "%s in %s", key, out);
        /* Rounds beside a slow reference are set aside, and a nested host can be slow for a
         * whole run: every round may be (then the medians are of all rounds). */
        unsigned rounds = 0;
        for (const char *c = strchr(at, '['); c && *c && *c != ']'; c++) rounds += *c == ',' || c[-1] == '[';
        const char *k = strstr(at, "\"bellhop_kept\": ");
        CHECK_MSG(k && sscanf(k, "\"bellhop_kept\": %u", &kept) == 1 && rounds >= 1 && rounds <= 2 && kept <= rounds,
                  "%u rounds: %s", rounds, at);
    }
}
