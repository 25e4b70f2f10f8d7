/* Firecracker's microVM metadata service (MMDS): a JSON store the host fills through the API
 * (PUT/PATCH/GET /mmds) and the guest reads over HTTP at a link-local address (169.254.169.254
 * unless configured), in version 1 (plain GETs) or version 2 (a session token first: PUT
 * /latest/api/token with X-metadata-token-ttl-seconds, then X-metadata-token on each GET).
 *
 * This is the store and the guest-facing answers only: no sockets, no threads. One thread at
 * a time (bellhop's: the API's loop serves both the API and the guest's connections). The
 * guest's TCP reaches it through bellhop-net (net/user.h, its MMDS mode) and bellhop's HTTP
 * server (vmm/control). Everything a guest can make it hold is bounded: tokens (MMDS_MAX_TOKENS,
 * the one nearest its expiry evicted first), and answers (the store's size). */
#ifndef BELLHOP_NET_MMDS_H
#define BELLHOP_NET_MMDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MMDS_DEFAULT_LIMIT 51200 /* Firecracker's default data store limit, its API payload limit */
#define MMDS_TOKEN_TTL_MAX 21600 /* seconds, Firecracker's (and EC2's) */
#define MMDS_MAX_TOKENS 1024
#define MMDS_DEFAULT_ADDR 0xa9fea9feu /* 169.254.169.254, host order */

enum mmds_version { MMDS_V1 = 1, MMDS_V2 = 2 };

struct mmds;

/* A store of at most `limit` bytes of JSON (0: MMDS_DEFAULT_LIMIT), version 1, answers in IMDS
 * format unless the guest asks for JSON. Not initialized until the first mmds_put, as
 * Firecracker's: mmds_get shows {}, mmds_patch refuses (400), the guest's GET / finds null.
 * NULL when out of memory. */
struct mmds *mmds_new(size_t limit);
void mmds_free(struct mmds *m);

void mmds_set_version(struct mmds *m, enum mmds_version v);
enum mmds_version mmds_get_version(const struct mmds *m);
/* Firecracker's imds_compat: every answer in IMDS format, whatever the Accept header says. */
void mmds_set_imds_compat(struct mmds *m, bool on);

/* PUT /mmds: the store becomes body (any JSON value, as Firecracker takes). The HTTP status:
 * 204; 400 with the reason in err (not JSON); 413 when it would be larger than the limit (the
 * store stays as it was); 500 when out of memory. The store's size is the length of its
 * compact JSON, keys sorted, as Firecracker writes it. */
int mmds_put(struct mmds *m, const char *body, size_t len, char *err, size_t errlen);
/* PATCH /mmds: body merged into the store as a JSON merge patch (RFC 7396: null removes a key,
 * objects merge, anything else replaces). Statuses as mmds_put's; a patch that would take the
 * store past its limit leaves it as it was. */
int mmds_patch(struct mmds *m, const char *body, size_t len, char *err, size_t errlen);
/* GET /mmds: the store as compact JSON (malloc'd; NULL when out of memory). */
char *mmds_get(const struct mmds *m);

/* ---- the guest's requests ---- */

struct mmds_header {
    const char *name, *value; /* as received; names compare without case */
};

struct mmds_request {
    const char *method;                /* "GET", "PUT", ... */
    const char *path;                  /* the request's target, its query already cut */
    const struct mmds_header *headers; /* every header the request had */
    unsigned nheaders;
};

struct mmds_response {
    int status;               /* 200, 400, 401, 404, 405, 413, ... */
    const char *content_type; /* "text/plain" or "application/json"; NULL with no body */
    char *body;               /* malloc'd, NUL-terminated; NULL for none */
    /* extra header lines, each ending in "\r\n" (Allow: ..., the token's TTL echoed), or NULL:
     * valid until the next mmds_answer on the same store */
    const char *headers;
};

/* Answers one request of the guest's as Firecracker's MMDS does, at now_ns on a monotonic
 * clock (tokens expire by it). r is never NULL; its strings may hold anything. *out is set in
 * full; its body is the caller's to free (mmds_response_free). */
void mmds_answer(struct mmds *m, const struct mmds_request *r, uint64_t now_ns, struct mmds_response *out);
void mmds_response_free(struct mmds_response *out);

#endif
