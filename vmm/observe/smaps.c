#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "vmm/observe/smaps.h"

int smaps_each(pid_t pid, void (*visit)(const struct smaps_mapping *m, void *arg), void *arg) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/smaps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[512], name[512] = "";
    struct smaps_mapping cur = {.name = name};
    bool have = false;
    for (bool more = true; more;) {
        more = fgets(line, sizeof line, f) != NULL;
        unsigned long lo, hi;
        int at = 0;
        /* a mapping's first line: "lo-hi perms offset dev inode [name]" */
        if (!more || (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &at) == 2 && at > 0)) {
            if (have) visit(&cur, arg);
            if (!more) break;
            snprintf(name, sizeof name, "%s", line + at);
            name[strcspn(name, "\n")] = 0;
            cur = (struct smaps_mapping){.name = name};
            have = true;
            continue;
        }
        long v;
        if (sscanf(line, "Size: %ld kB", &v) == 1) cur.size_kib = v;
        else if (sscanf(line, "Rss: %ld kB", &v) == 1) cur.rss_kib = v;
        else if (sscanf(line, "Anonymous: %ld kB", &v) == 1) cur.anon_kib = v;
    }
    fclose(f);
    return 0;
}
