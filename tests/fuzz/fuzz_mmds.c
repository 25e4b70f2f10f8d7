/* The MMDS (net/mmds.c): byte 0 picks V2 and imds_compat, the rest is requests separated by an
 * empty line, each its method, its path, then "name:value" headers a line each; a header value
 * "@" is the last token handed out, so that the fuzzer gets past V2's check. The methods "!PUT"
 * and "!PATCH" fill the store instead, with the request's remaining text. Each request is a
 * second later than the one before. Never a crash or a leak; every answer one Firecracker
 * gives, the store within its limit. */
#include <stdlib.h>
#include <string.h>

#include "net/mmds.h"

#define LIMIT 256
#define MAX_HEADERS 16

static const char seed_store[] = "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-1\",\"n\":[1,2.5,\"x\"]}},\"k\":\"v\"}";

/* had_token: whether a header held the last token (V2 answers a GET only then). */
static void check_answer(const struct mmds_response *r, const char *method, bool v2, bool had_token) {
    static const int statuses[] = {200, 400, 401, 404, 405, 501};
    bool known = false;
    for (unsigned i = 0; i < sizeof statuses / sizeof *statuses; i++) known |= r->status == statuses[i];
    if (!known || (r->body == NULL) != (r->content_type == NULL)) abort();
    if (r->status == 405 && (!r->headers || strcmp(r->headers, "Allow: GET, PUT\r\n"))) abort();
    if (v2 && r->status == 200 && !strcmp(method, "GET") && !had_token) abort();
}

/* One request's text (its lines cut in place). */
static void one(struct mmds *m, char *text, uint64_t now, char *token, bool v2) {
    char *lines[2 + MAX_HEADERS];
    unsigned n = 0;
    for (char *p = text; p && n < 2 + MAX_HEADERS; n++) {
        lines[n] = p;
        p = strchr(p, '\n');
        if (p) *p++ = '\0';
        if (n == 0 && (!strcmp(lines[0], "!PUT") || !strcmp(lines[0], "!PATCH"))) {
            const char *body = p ? p : "";
            char err[200];
            int s = lines[0][1] == 'P' && lines[0][2] == 'U' ? mmds_put(m, body, strlen(body), err, sizeof err)
                                                             : mmds_patch(m, body, strlen(body), err, sizeof err);
            if (s != 204 && s != 400 && s != 413) abort();
            char *all = mmds_get(m);
            if (!all || strlen(all) > LIMIT) abort();
            free(all);
            return;
        }
    }
    struct mmds_header h[MAX_HEADERS];
    unsigned nh = 0;
    bool had_token = false;
    for (unsigned i = 2; i < n; i++) {
        char *colon = strchr(lines[i], ':');
        if (colon) *colon = '\0';
        const char *value = colon ? colon + 1 : "";
        if (!strcmp(value, "@")) value = token, had_token = true;
        h[nh++] = (struct mmds_header){lines[i], value};
    }
    struct mmds_response r;
    mmds_answer(m, &(struct mmds_request){lines[0], n > 1 ? lines[1] : NULL, h, nh}, now, &r);
    check_answer(&r, lines[0], v2, had_token);
    if (r.status == 200 && !strcmp(lines[0], "PUT")) {
        if (strlen(r.body) != 48) abort();
        memcpy(token, r.body, 49);
    }
    mmds_response_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    struct mmds *m = mmds_new(LIMIT);
    char *text = malloc(size);
    if (!m || !text) abort();
    bool v2 = data[0] & 1;
    mmds_set_version(m, v2 ? MMDS_V2 : MMDS_V1);
    mmds_set_imds_compat(m, data[0] & 2);
    if (!(data[0] & 4) && mmds_put(m, seed_store, strlen(seed_store), NULL, 0) != 204) abort();
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    char token[49] = "";
    uint64_t now = 1000000000ull;
    for (char *p = text; p; now += 1000000000ull) {
        char *next = strstr(p, "\n\n");
        if (next) *next = '\0', next += 2;
        one(m, p, now, token, v2);
        p = next;
    }
    free(text);
    mmds_free(m);
    return 0;
}
