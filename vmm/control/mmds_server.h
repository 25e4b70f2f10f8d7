/* The guest's side of MMDS (net/mmds.h): bellhop's HTTP server (api_server.h) answering the
 * guest's requests from the store, on a Unix socket bellhop-net connects to once per guest TCP
 * connection to the metadata address. */
#ifndef BELLHOP_VMM_CONTROL_MMDS_SERVER_H
#define BELLHOP_VMM_CONTROL_MMDS_SERVER_H

#include <lib/async/dispatcher.h>
#include <stddef.h>

#include "net/mmds.h"

struct mmds_server;

/* The guest's side of MMDS: an HTTP server (api_server) on a fresh Unix socket in a private
 * directory (mode 0700, made with mkdtemp under $XDG_RUNTIME_DIR when set and usable, else
 * /tmp), each request answered by mmds_answer from m (not owned; outlives the server).
 * NULL with a one-line reason in err. */
struct mmds_server *mmds_server_create(struct mmds *m, char *err, size_t errlen);
/* The socket's path, for bellhop-net to connect to (one connection per guest TCP connection). */
const char *mmds_server_path(const struct mmds_server *s);
/* The private directory that socket is in. */
const char *mmds_server_dir(const struct mmds_server *s);
/* As api_server_attach/_detach. */
int mmds_server_attach(struct mmds_server *s, async_dispatcher_t *d);
void mmds_server_detach(struct mmds_server *s);
/* Closes every connection, removes the socket and its directory. NULL does nothing. */
void mmds_server_destroy(struct mmds_server *s);

#endif
