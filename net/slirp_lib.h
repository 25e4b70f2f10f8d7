/* libslirp's functions, from libslirp.so.0 loaded at run time (net/user.h says why). */
#ifndef BELLHOP_NET_SLIRP_LIB_H
#define BELLHOP_NET_SLIRP_LIB_H

#include <slirp/libslirp.h>
#include <stddef.h>

/* Each member has the type of the libslirp function it stands for: a prototype that changed
 * in the header would not compile here. */
struct slirp_lib {
    __typeof__(slirp_new) *new;
    __typeof__(slirp_cleanup) *cleanup;
    __typeof__(slirp_pollfds_fill) *pollfds_fill;
    __typeof__(slirp_pollfds_poll) *pollfds_poll;
    __typeof__(slirp_input) *input;
    __typeof__(slirp_handle_timer) *handle_timer;
    __typeof__(slirp_add_hostfwd) *add_hostfwd;
    __typeof__(slirp_add_unix) *add_unix;
};

/* The functions (the library loaded once, from any thread), or NULL with the reason in err. */
const struct slirp_lib *slirp_lib(char *err, size_t errlen);

#endif
