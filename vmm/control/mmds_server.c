/* A guest is bounded here by api_server's limits, as any API client is: at most API_MAX_CLIENTS
 * connections (a new one evicts the one quiet the longest, so opening many only costs the
 * guest its own), a request's head within API_MAX_BODY and API_MAX_HEADERS headers, whole
 * within API_REQUEST_TIMEOUT_S (a header sent forever gets a 408), an idle connection closed
 * after API_IDLE_TIMEOUT_S. What it can make the store hold is net/mmds.c's to bound. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "vmm/control/api_server.h"
#include "vmm/control/mmds_server.h"

#define SOCKET_NAME "mmds.sock"
#define DIR_TEMPLATE "bellhop-mmds.XXXXXX"

struct mmds_server {
    struct mmds *m;
    struct api_server *api;
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static void answer(void *ctx, struct api_server *api, struct api_ticket t, const struct api_request *r) {
    struct mmds_server *s = ctx;
    struct mmds_header headers[API_MAX_HEADERS];
    for (unsigned i = 0; i < r->nheaders; i++)
        headers[i] = (struct mmds_header){r->headers[i].name, r->headers[i].value};
    struct mmds_request req = {.method = r->method, .path = r->path, .headers = headers, .nheaders = r->nheaders};
    struct mmds_response out;
    mmds_answer(s->m, &req, (uint64_t)zx_clock_get_monotonic(), &out);
    api_respond_typed(api, t, out.status, out.content_type, out.body, out.headers);
    mmds_response_free(&out);
}

/* A private directory in parent whose socket path fits sun_path: 0, or -1 (errno set). */
static int make_dir(struct mmds_server *s, const char *parent) {
    int n = snprintf(s->path, sizeof s->path, "%s/" DIR_TEMPLATE "/" SOCKET_NAME, parent);
    if (n < 0 || (size_t)n >= sizeof s->path) return errno = ENAMETOOLONG, -1;
    snprintf(s->dir, sizeof s->dir, "%s/" DIR_TEMPLATE, parent);
    if (!mkdtemp(s->dir)) return -1;
    /* exactly 0700: mkdtemp's is 0700 less the umask, which could take the owner's own access */
    if (chmod(s->dir, 0700) != 0) {
        int e = errno;
        rmdir(s->dir);
        return errno = e, -1;
    }
    memcpy(s->path, s->dir, strlen(s->dir)); /* the Xs as mkdtemp filled them */
    return 0;
}

struct mmds_server *mmds_server_create(struct mmds *m, char *err, size_t errlen) {
    struct mmds_server *s = calloc(1, sizeof *s);
    if (!s) return snprintf(err, errlen, "MMDS: out of memory"), NULL;
    s->m = m;
    const char *run = getenv("XDG_RUNTIME_DIR");
    if ((!run || !*run || make_dir(s, run) != 0) && make_dir(s, "/tmp") != 0) {
        snprintf(err, errlen, "MMDS: a directory in /tmp: %s", strerror(errno));
        free(s);
        return NULL;
    }
    char why[200];
    if (!(s->api = api_server_create(s->path, answer, s, why, sizeof why))) {
        snprintf(err, errlen, "MMDS: %s", why);
        rmdir(s->dir);
        free(s);
        return NULL;
    }
    return s;
}

const char *mmds_server_path(const struct mmds_server *s) { return s->path; }

const char *mmds_server_dir(const struct mmds_server *s) { return s->dir; }

int mmds_server_attach(struct mmds_server *s, async_dispatcher_t *d) { return api_server_attach(s->api, d); }

void mmds_server_detach(struct mmds_server *s) { api_server_detach(s->api); }

void mmds_server_destroy(struct mmds_server *s) {
    if (!s) return;
    api_server_destroy(s->api); /* (the socket unlinked with it) */
    rmdir(s->dir);
    free(s);
}
