/* libslirp.so.0 through dlopen: a VMM without --net user should not map it and glib at every
 * start. Loaded once and never unloaded, as vmm/observe/disasm.c does libcapstone.
 *
 * Not into a statically linked program, though: libslirp brings glib and a second C library,
 * and the two C libraries would share each thread's pthread_getspecific slots, each with its
 * own count of the keys it gave out. glib's first key is the program's key 0, its value
 * another's: glib crashes in its constructor (seen with bellhop static-pie, whose loop and
 * vCPUs hold keys). Debian has no static libslirp to link in instead. */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/error_text.h"
#include "net/slirp_lib.h"

static struct slirp_lib lib;
static const struct slirp_lib *loaded;
static char why[200];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* false, with the reason in why */
static bool missing(const char *name) {
    snprintf(why, sizeof why, "libslirp.so.0 has no %s (4.5 or later is needed)", name);
    return false;
}

/* dlsym's void * into the member's own function pointer type, as POSIX allows */
#define FIND(h, member) ((lib.member = (__typeof__(lib.member))dlsym(h, "slirp_" #member)) || missing("slirp_" #member))

static int is_libc(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size, (void)data;
    return info->dlpi_name && strstr(info->dlpi_name, "/libc.so") != NULL;
}

static void load(void) {
    if (!dl_iterate_phdr(is_libc, NULL)) {
        snprintf(why, sizeof why, "libslirp cannot be loaded into a statically linked bellhop (it brings a second C "
                                  "library): --net user needs bellhop linked dynamically");
        return;
    }
    void *h = dlopen("libslirp.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, sizeof why, "cannot load libslirp (Debian's libslirp0): %s", e ? e : "dlopen failed");
        return;
    }
    if (FIND(h, new) && FIND(h, cleanup) && FIND(h, pollfds_fill) && FIND(h, pollfds_poll) && FIND(h, input) &&
        FIND(h, handle_timer) && FIND(h, add_hostfwd))
        loaded = &lib;
}

const struct slirp_lib *slirp_lib(char *err, size_t errlen) {
    pthread_once(&once, load);
    if (!loaded) error_text(err, errlen, "%s", why);
    return loaded;
}
