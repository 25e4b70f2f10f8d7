/* HTTP/1.1 over a Unix socket, served on an async loop: the listening socket and every client
 * are fd waits on the loop, requests are parsed by http-parser (Debian's libhttp-parser) as
 * their bytes come, and each complete request is handed to one handler on the loop thread.
 *
 * Hostile clients are bounded: at most API_MAX_CLIENTS at once (a new one evicts the client
 * idle the longest), a request's head and body within API_MAX_BODY, a request complete within
 * API_REQUEST_TIMEOUT_S of its first byte and an idle connection closed after
 * API_IDLE_TIMEOUT_S; malformed HTTP, more than API_MAX_HEADERS headers or a header's name or
 * value longer than API_MAX_HEADER_LEN gets a 400 and the connection closed. None of that
 * touches the other clients or the devices on the same loop. */
#ifndef BELLHOP_VMM_CONTROL_API_SERVER_H
#define BELLHOP_VMM_CONTROL_API_SERVER_H

#include <lib/async/dispatcher.h>
#include <stddef.h>
#include <stdint.h>

#define API_MAX_CLIENTS 16
#define API_MAX_BODY 51200 /* Firecracker's default payload limit */
#define API_MAX_URL 512
#define API_REQUEST_TIMEOUT_S 5
#define API_IDLE_TIMEOUT_S 60
#define API_MAX_HEADERS 32
#define API_MAX_HEADER_LEN 1024 /* a header's name, and its value, each */

struct api_server;

struct api_header {
    const char *name, *value; /* as received, NUL-terminated */
};

struct api_request {
    const char *method; /* "GET", "PUT", ... */
    const char *path;   /* without the query */
    const char *body;   /* NUL-terminated */
    size_t body_len;
    const struct api_header *headers; /* in the order received; valid during the handler only */
    unsigned nheaders;
};

/* A request's client, to answer it now or later (api_respond); answering later means the
 * connection closes after the answer. */
struct api_ticket {
    unsigned slot;
    uint64_t generation;
};

/* Called on the loop thread for each complete request: answers with api_respond, at once or
 * (with the ticket) later. */
typedef void api_handler_fn(void *ctx, struct api_server *s, struct api_ticket t, const struct api_request *r);

/* Makes the socket at path: an existing path is refused unless it is a socket nobody listens
 * on (a stale one, then replaced). NULL with the reason in err. */
struct api_server *api_server_create(const char *path, api_handler_fn *fn, void *ctx, char *err, size_t errlen);
/* Serves on d: every wait begun (0), or -1. */
int api_server_attach(struct api_server *s, async_dispatcher_t *d);
/* Stops serving on the dispatcher it was attached to, which must not be running (or must be
 * shutting down). Clients stay connected; a later attach serves them again. */
void api_server_detach(struct api_server *s);
/* Answers the request behind t (status, and a JSON body or NULL for none); nothing when that
 * client is gone. */
void api_respond(struct api_server *s, struct api_ticket t, int status, const char *json);
/* The same with more header lines (each ending in "\r\n"; NULL for none). */
void api_respond_with(struct api_server *s, struct api_ticket t, int status, const char *json, const char *headers);
/* The same with a body of any type (NUL-terminated; NULL for none, and then no Content-Type). */
void api_respond_typed(struct api_server *s, struct api_ticket t, int status, const char *content_type,
                       const char *body, const char *headers);
/* Closes every connection and the socket, and removes its path. */
void api_server_destroy(struct api_server *s);

#endif
