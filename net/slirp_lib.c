/* libslirp.so.0 through dlopen, loaded once and never unloaded: the tests and fuzz targets that
 * link net/user.c's archive (but for net_user) do not map it and glib. bellhop-net is linked to
 * it as well (the Makefile says why), and finds it loaded.
 *
 * Never into a statically linked program such as bellhop: libslirp brings glib and a second C
 * library, and the two would share each thread's pthread_getspecific slots, each with its own
 * count of the keys it gave out; glib crashes in its constructor. That is why slirp runs in
 * bellhop-net (net/user.h). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

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

static void load(void) {
    void *h = dlopen("libslirp.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, sizeof why, "cannot load libslirp (Debian's libslirp0): %s", e ? e : "dlopen failed");
        return;
    }
    if (FIND(h, new) && FIND(h, cleanup) && FIND(h, pollfds_fill) && FIND(h, pollfds_poll) && FIND(h, input) &&
        FIND(h, handle_timer) && FIND(h, add_hostfwd) && FIND(h, add_unix))
        loaded = &lib;
}

const struct slirp_lib *slirp_lib(char *err, size_t errlen) {
    pthread_once(&once, load);
    if (!loaded) error_text(err, errlen, "%s", why);
    return loaded;
}
