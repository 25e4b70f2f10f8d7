#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <lib/async/task.h>
#include <lib/async/time.h>
#include <lib/async/wait.h>
#include <lib/container_of.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "base/unix_socket.h"
#include "vmm/control/api_server.h"

#define READ_CHUNK 4096
/* The headers' store: every name and value with its NUL. The head's bytes are bounded by
 * API_MAX_BODY and each header adds two NULs, so the store never grows past this. */
#define HEAD_STORE_MAX (API_MAX_BODY + 2 * API_MAX_HEADERS)

enum piece { PIECE_NONE, PIECE_NAME, PIECE_VALUE };

struct client {
    struct api_server *s;
    int fd; /* -1: the slot is free */
    zx_handle_t handle;
    async_wait_t wait;
    bool waiting;
    uint64_t generation;
    http_parser parser;
    zx_time_t last_byte, request_start; /* request_start 0: between requests */
    bool awaiting_answer, close_after_answer;
    char url[API_MAX_URL];
    size_t url_len, head_len;
    char *body;
    size_t body_len;
    bool too_big;
    /* The headers so far: offsets of each name and value in head, which grows as they come. */
    char *head;
    size_t head_used, head_cap;
    struct { size_t name, value; } header_at[API_MAX_HEADERS];
    unsigned nheaders;
    enum piece piece; /* what http-parser's last piece was part of */
    size_t piece_len;
    const char *header_refused; /* why, when too many or one too long */
};

struct api_server {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int fd;
    zx_handle_t handle;
    async_dispatcher_t *d;
    async_wait_t accept_wait;
    bool accept_waiting;
    async_task_t sweep;
    bool sweeping;
    api_handler_fn *fn;
    void *ctx;
    uint64_t generations;
    http_parser_settings settings;
    struct client clients[API_MAX_CLIENTS];
};

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static void close_client(struct client *c) {
    if (c->fd < 0) return;
    if (c->waiting && c->s->d) async_cancel_wait(c->s->d, &c->wait);
    c->waiting = false;
    zx_handle_close(c->handle);
    close(c->fd);
    free(c->body);
    c->body = NULL;
    free(c->head);
    c->head = NULL;
    c->head_cap = 0;
    c->fd = -1;
    c->generation = 0;
}

/* A response in one write: a client that does not read its answers is not waited for. */
static void send_response(struct client *c, int status, const char *type, const char *body, const char *headers) {
    char head[512];
    size_t len = body ? strlen(body) : 0;
    bool close_now = c->close_after_answer || !c->parser.http_major;
    bool typed = body && type;
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nServer: bellhop\r\n%s%s%s%sContent-Length: %zu\r\n%s\r\n",
                     status, reason(status), typed ? "Content-Type: " : "", typed ? type : "", typed ? "\r\n" : "",
                     headers ? headers : "", len, close_now ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head) n = 0, close_now = true; /* headers too long for the head: nothing sent */
    size_t total = (size_t)n + len;
    char *msg = malloc(total);
    if (msg) {
        memcpy(msg, head, (size_t)n);
        if (len) memcpy(msg + n, body, len);
        ssize_t w = write(c->fd, msg, total);
        if (w != (ssize_t)total) close_now = true;
        free(msg);
    }
    c->awaiting_answer = false;
    if (close_now || !msg) close_client(c);
}

/* Malformed or refused before its handler: answered with a fault and the connection closed. */
static void refuse(struct client *c, int status, const char *why) {
    char body[200];
    snprintf(body, sizeof body, "{\"fault_message\":\"%s\"}", why);
    c->close_after_answer = true;
    send_response(c, status, "application/json", body, NULL);
}

/* ---- http-parser callbacks (the client is parser.data) ---- */

static int on_message_begin(http_parser *p) {
    struct client *c = p->data;
    c->url_len = c->head_len = c->body_len = 0;
    c->too_big = false;
    c->head_used = c->nheaders = 0;
    c->piece = PIECE_NONE;
    c->header_refused = NULL;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    struct client *c = p->data;
    if (c->url_len + len >= sizeof c->url) return c->too_big = true, 1;
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = 0;
    return 0;
}

static int count_head(struct client *c, size_t len) {
    c->head_len += len;
    return c->head_len > API_MAX_BODY ? (c->too_big = true, 1) : 0;
}

static int head_append(struct client *c, const char *at, size_t len) {
    if (c->head_used + len > c->head_cap) {
        size_t cap = c->head_cap ? c->head_cap : 512;
        while (cap < c->head_used + len) cap *= 2;
        if (cap > HEAD_STORE_MAX) cap = HEAD_STORE_MAX;
        if (c->head_used + len > cap) return 1; /* cannot happen while the head is bounded */
        char *grown = realloc(c->head, cap);
        if (!grown) return 1;
        c->head = grown, c->head_cap = cap;
    }
    memcpy(c->head + c->head_used, at, len);
    c->head_used += len;
    return 0;
}

/* A piece of the current name or value, bounded by API_MAX_HEADER_LEN in all. */
static int add_piece(struct client *c, const char *at, size_t len) {
    if (c->piece_len + len > API_MAX_HEADER_LEN) {
        c->header_refused = "a header's name or value is longer than the server takes";
        return 1;
    }
    c->piece_len += len;
    return head_append(c, at, len);
}

static int begin_value(struct client *c) {
    if (head_append(c, "", 1)) return 1;
    c->header_at[c->nheaders - 1].value = c->head_used;
    c->piece = PIECE_VALUE, c->piece_len = 0;
    return 0;
}

/* The header received last is whole (a name with no value gets an empty one). */
static int end_header(struct client *c) {
    if (c->piece == PIECE_NAME && begin_value(c)) return 1;
    if (c->piece == PIECE_VALUE && head_append(c, "", 1)) return 1;
    c->piece = PIECE_NONE;
    return 0;
}

/* http-parser hands a name or value over in as many pieces as the reads cut it into: a name's
 * first piece is one after a value's (or none). */
static int on_header_field(http_parser *p, const char *at, size_t len) {
    struct client *c = p->data;
    if (count_head(c, len)) return 1;
    if (c->piece != PIECE_NAME) {
        if (end_header(c)) return 1;
        if (c->nheaders == API_MAX_HEADERS) {
            c->header_refused = "the request has more headers than the server takes";
            return 1;
        }
        c->header_at[c->nheaders++].name = c->head_used;
        c->piece = PIECE_NAME, c->piece_len = 0;
    }
    return add_piece(c, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    struct client *c = p->data;
    if (count_head(c, len)) return 1;
    if (c->piece == PIECE_NONE) return 1; /* http-parser gives a name first */
    if (c->piece == PIECE_NAME && begin_value(c)) return 1;
    return add_piece(c, at, len);
}

static int on_headers_complete(http_parser *p) {
    struct client *c = p->data;
    /* A stated length past the limit is refused before a byte of it is read (-1: an error;
     * 1 and 2 mean "no body" to http-parser). */
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > API_MAX_BODY) return c->too_big = true, -1;
    return end_header(c) ? -1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    struct client *c = p->data;
    if (c->body_len + len > API_MAX_BODY) return c->too_big = true, 1;
    if (!c->body && !(c->body = malloc(API_MAX_BODY + 1))) return 1;
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p) {
    struct client *c = p->data;
    struct api_server *s = c->s;
    c->request_start = 0;
    c->awaiting_answer = true;
    c->close_after_answer = !http_should_keep_alive(p);
    char *q = strchr(c->url, '?');
    if (q) *q = 0;
    static const char empty[1];
    if (c->body) c->body[c->body_len] = 0;
    if (end_header(c)) return 1; /* a chunked body's trailers come after on_headers_complete */
    struct api_header headers[API_MAX_HEADERS];
    for (unsigned i = 0; i < c->nheaders; i++)
        headers[i] = (struct api_header){c->head + c->header_at[i].name, c->head + c->header_at[i].value};
    struct api_request r = {.method = http_method_str(p->method), .path = c->url,
                            .body = c->body ? c->body : empty, .body_len = c->body_len,
                            .headers = headers, .nheaders = c->nheaders};
    uint64_t gen = c->generation;
    s->fn(s->ctx, s, (struct api_ticket){(unsigned)(c - s->clients), gen}, &r);
    /* Answered (or the connection closed) in the handler: go on with the next request.
     * Answered later: stop reading; the connection closes after the answer. */
    if (c->fd < 0 || c->generation != gen) return 1;
    if (c->awaiting_answer) {
        c->close_after_answer = true;
        return 1;
    }
    return 0;
}

static void arm(struct client *c);

static void on_client(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *sig) {
    struct client *c = container_of(w, struct client, wait);
    c->waiting = false;
    if (st != ZX_OK) return; /* detached or shutting down: the client stays for later */
    char buf[READ_CHUNK];
    ssize_t n = (sig->observed & (ZX_FD_READABLE | ZX_FD_HANGUP)) ? read(c->fd, buf, sizeof buf) : 0;
    if (n < 0 && errno == EAGAIN) return arm(c);
    if (n <= 0) return close_client(c); /* gone, maybe mid-request: nothing to answer */
    c->last_byte = async_now(d);
    if (!c->request_start) c->request_start = c->last_byte;
    size_t used = http_parser_execute(&c->parser, &c->s->settings, buf, (size_t)n);
    if (c->fd < 0) return;
    if (c->awaiting_answer) return; /* answered later; the rest of what it sent is ignored */
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->too_big) return refuse(c, 413, "the request is larger than the API takes");
    /* 400 rather than 431: as Firecracker's HTTP server answers a header past its limits, and
     * as this server answers other heads it will not take (413 aside). */
    if (c->header_refused) return refuse(c, 400, c->header_refused);
    if (e != HPE_OK || used != (size_t)n) {
        char why[120];
        snprintf(why, sizeof why, "malformed HTTP: %s", http_errno_description(e));
        return refuse(c, 400, why);
    }
    arm(c);
}

static void arm(struct client *c) {
    if (c->fd < 0 || c->waiting || !c->s->d) return;
    c->wait = (async_wait_t){.handler = on_client, .object = c->handle, .trigger = ZX_FD_READABLE | ZX_FD_HANGUP};
    if (async_begin_wait(c->s->d, &c->wait) == ZX_OK) c->waiting = true;
}

static struct client *free_slot(struct api_server *s) {
    struct client *oldest = NULL;
    for (unsigned i = 0; i < API_MAX_CLIENTS; i++) {
        struct client *c = &s->clients[i];
        if (c->fd < 0) return c;
        if (!c->awaiting_answer && (!oldest || c->last_byte < oldest->last_byte)) oldest = c;
    }
    if (oldest) close_client(oldest); /* full: the client quiet the longest makes room */
    return oldest;
}

static void arm_accept(struct api_server *s);

static void on_accept(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *sig) {
    (void)sig;
    struct api_server *s = container_of(w, struct api_server, accept_wait);
    s->accept_waiting = false;
    if (st != ZX_OK) return;
    for (int i = 0; i < API_MAX_CLIENTS; i++) {
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        struct client *c = free_slot(s);
        zx_handle_t h;
        if (!c || zx_fd_create(fd, 0, &h) != ZX_OK) {
            close(fd);
            continue;
        }
        *c = (struct client){.s = s, .fd = fd, .handle = h, .generation = ++s->generations,
                             .last_byte = async_now(d)};
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
        arm(c);
    }
    arm_accept(s);
}

static void arm_accept(struct api_server *s) {
    if (s->accept_waiting || !s->d) return;
    s->accept_wait = (async_wait_t){.handler = on_accept, .object = s->handle, .trigger = ZX_FD_READABLE};
    if (async_begin_wait(s->d, &s->accept_wait) == ZX_OK) s->accept_waiting = true;
}

/* Once a second: a request not complete in time gets a 408, an idle connection is closed. */
static void on_sweep(async_dispatcher_t *d, async_task_t *t, zx_status_t st) {
    struct api_server *s = container_of(t, struct api_server, sweep);
    s->sweeping = false;
    if (st != ZX_OK) return;
    zx_time_t now = async_now(d);
    for (unsigned i = 0; i < API_MAX_CLIENTS; i++) {
        struct client *c = &s->clients[i];
        if (c->fd < 0 || c->awaiting_answer) continue;
        if (c->request_start && now - c->request_start > ZX_SEC(API_REQUEST_TIMEOUT_S))
            refuse(c, 408, "the request did not arrive in time");
        else if (!c->request_start && now - c->last_byte > ZX_SEC(API_IDLE_TIMEOUT_S))
            close_client(c);
    }
    s->sweep.deadline = now + ZX_SEC(1);
    if (async_post_task(d, &s->sweep) == ZX_OK) s->sweeping = true;
}

struct api_server *api_server_create(const char *path, api_handler_fn *fn, void *ctx, char *err, size_t errlen) {
    struct api_server *s = calloc(1, sizeof *s);
    if (!s) return snprintf(err, errlen, "out of memory"), NULL;
    s->fd = -1;
    s->handle = ZX_HANDLE_INVALID;
    for (unsigned i = 0; i < API_MAX_CLIENTS; i++) s->clients[i].fd = -1;
    if (unix_socket_claim(path, err, errlen) != 0) { /* (a path too long for sun_path too) */
        free(s);
        return NULL;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, s->path, sizeof a.sun_path);
    s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (s->fd >= 0) close(s->fd);
        free(s);
        return NULL;
    }
    if (listen(s->fd, 64) != 0 || zx_fd_create(s->fd, 0, &s->handle) != ZX_OK) {
        snprintf(err, errlen, "%s: cannot listen: %s", path, strerror(errno));
        close(s->fd);
        unlink(s->path);
        free(s);
        return NULL;
    }
    s->fn = fn, s->ctx = ctx;
    s->settings = (http_parser_settings){.on_message_begin = on_message_begin, .on_url = on_url,
                                         .on_header_field = on_header_field, .on_header_value = on_header_value,
                                         .on_headers_complete = on_headers_complete, .on_body = on_body,
                                         .on_message_complete = on_message_complete};
    return s;
}

int api_server_attach(struct api_server *s, async_dispatcher_t *d) {
    s->d = d;
    arm_accept(s);
    for (unsigned i = 0; i < API_MAX_CLIENTS; i++)
        if (!s->clients[i].awaiting_answer) arm(&s->clients[i]);
    s->sweep = (async_task_t){.handler = on_sweep, .deadline = async_now(d) + ZX_SEC(1)};
    if (async_post_task(d, &s->sweep) == ZX_OK) s->sweeping = true;
    return s->accept_waiting && s->sweeping ? 0 : -1;
}

void api_server_detach(struct api_server *s) {
    if (!s->d) return;
    if (s->accept_waiting) async_cancel_wait(s->d, &s->accept_wait);
    if (s->sweeping) async_cancel_task(s->d, &s->sweep);
    s->accept_waiting = s->sweeping = false;
    for (unsigned i = 0; i < API_MAX_CLIENTS; i++) {
        struct client *c = &s->clients[i];
        if (c->fd >= 0 && c->waiting) async_cancel_wait(s->d, &c->wait);
        c->waiting = false;
    }
    s->d = NULL;
}

void api_respond_typed(struct api_server *s, struct api_ticket t, int status, const char *content_type,
                       const char *body, const char *headers) {
    if (t.slot >= API_MAX_CLIENTS) return;
    struct client *c = &s->clients[t.slot];
    if (c->fd < 0 || c->generation != t.generation || !c->awaiting_answer) return;
    send_response(c, status, content_type, body, headers);
}

void api_respond_with(struct api_server *s, struct api_ticket t, int status, const char *json, const char *headers) {
    api_respond_typed(s, t, status, "application/json", json, headers);
}

void api_respond(struct api_server *s, struct api_ticket t, int status, const char *json) {
    api_respond_with(s, t, status, json, NULL);
}

void api_server_destroy(struct api_server *s) {
    if (!s) return;
    api_server_detach(s);
    for (unsigned i = 0; i < API_MAX_CLIENTS; i++) close_client(&s->clients[i]);
    if (s->handle != ZX_HANDLE_INVALID) zx_handle_close(s->handle);
    if (s->fd >= 0) close(s->fd);
    unlink(s->path);
    free(s);
}
