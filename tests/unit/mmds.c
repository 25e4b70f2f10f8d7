/* The MMDS store and its answers to the guest (net/mmds.c), against Firecracker's behaviour:
 * PUT/PATCH/GET through the API with the store's limit, V1 and V2 (tokens, their TTLs and
 * expiry), IMDS and JSON formats, paths, methods, the token table's bound, hostile paths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/mmds.h"
#include "tests/lib/check.h"

#define SEC 1000000000ull

static const char store[] = "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-87654321\",\"reservation-id\":\"r-79054aef\","
                            "\"local\":{\"a\":\"b\"}}},\"age\":43,\"phones\":[\"+401\",\"+441\"],\"pi\":12.12,"
                            "\"member\":false,\"empty\":{}}";

static struct mmds *filled(enum mmds_version v) {
    struct mmds *m = mmds_new(0);
    CHECK(m);
    char err[256];
    CHECK_EQ(mmds_put(m, store, strlen(store), err, sizeof err), 204);
    mmds_set_version(m, v);
    return m;
}

/* One request's answer; headers as "Name: value" strings, at most 8. */
static struct mmds_response ask(struct mmds *m, const char *method, const char *path, uint64_t now,
                                const char *const *headers) {
    struct mmds_header h[8];
    unsigned n = 0;
    static char names[8][128];
    for (; headers && headers[n]; n++) {
        const char *colon = strchr(headers[n], ':');
        snprintf(names[n], sizeof names[n], "%.*s", (int)(colon - headers[n]), headers[n]);
        h[n] = (struct mmds_header){names[n], colon + 1};
    }
    struct mmds_response out;
    mmds_answer(m, &(struct mmds_request){method, path, h, n}, now, &out);
    CHECK((out.body != NULL) == (out.content_type != NULL));
    return out;
}

/* status, and the body when want is not NULL */
static void expect(struct mmds *m, const char *method, const char *path, uint64_t now, const char *const *headers,
                   int status, const char *want) {
    struct mmds_response r = ask(m, method, path, now, headers);
    CHECK_MSG(r.status == status, "%s %s: %d, want %d (%s)", method, path, r.status, status, r.body ? r.body : "");
    if (want) CHECK_STR_EQ(r.body ? r.body : "(none)", want);
    mmds_response_free(&r);
}

static char *token(struct mmds *m, uint32_t ttl, uint64_t now) {
    char hdr[64];
    snprintf(hdr, sizeof hdr, "X-metadata-token-ttl-seconds: %u", ttl);
    struct mmds_response r = ask(m, "PUT", "/latest/api/token", now, (const char *const[]){hdr, NULL});
    CHECK_EQ(r.status, 200);
    CHECK_STR_EQ(r.content_type, "text/plain");
    CHECK(r.headers && strstr(r.headers, "X-metadata-token-ttl-seconds: ") == r.headers);
    CHECK(strlen(r.body) >= 32);
    return r.body;
}

static const char *const json_accept[] = {"Accept: application/json", NULL};

TEST(put_patch_and_get_through_the_api) {
    struct mmds *m = mmds_new(0);
    char err[256], *s = mmds_get(m);
    CHECK_STR_EQ(s, "{}");
    free(s);
    /* Firecracker: no PATCH before the first PUT */
    CHECK_EQ(mmds_patch(m, "{\"a\":1}", 7, err, sizeof err), 400);
    CHECK(strstr(err, "not initialized"));
    const char *doc = "{\"name\":{\"first\":\"John\",\"second\":\"Doe\"},\"age\":\"43\",\"phones\":{\"home\":{\"RO\":\"1\"},"
                      "\"mobile\":\"2\"}}";
    CHECK_EQ(mmds_put(m, doc, strlen(doc), err, sizeof err), 204);
    s = mmds_get(m);
    CHECK_STR_EQ(s, "{\"age\":\"43\",\"name\":{\"first\":\"John\",\"second\":\"Doe\"},\"phones\":{\"home\":{\"RO\":\"1\"},"
                    "\"mobile\":\"2\"}}"); /* keys sorted, compact */
    free(s);
    const char *patch = "{\"name\":{\"second\":null,\"last\":\"Kennedy\"},\"age\":\"44\",\"phones\":{\"home\":\"3\","
                        "\"mobile\":{\"RO\":\"4\"}},\"new\":{\"deep\":{\"x\":null,\"y\":[1,null]}}}";
    CHECK_EQ(mmds_patch(m, patch, strlen(patch), err, sizeof err), 204);
    s = mmds_get(m);
    CHECK_STR_EQ(s, "{\"age\":\"44\",\"name\":{\"first\":\"John\",\"last\":\"Kennedy\"},\"new\":{\"deep\":{\"y\":[1,null]}},"
                    "\"phones\":{\"home\":\"3\",\"mobile\":{\"RO\":\"4\"}}}");
    free(s);
    /* a patch that is not an object replaces the store; an object patch then makes it one again */
    CHECK_EQ(mmds_patch(m, "[1,2]", 5, err, sizeof err), 204);
    s = mmds_get(m);
    CHECK_STR_EQ(s, "[1,2]");
    free(s);
    CHECK_EQ(mmds_patch(m, "{\"k\":true}", 10, err, sizeof err), 204);
    s = mmds_get(m);
    CHECK_STR_EQ(s, "{\"k\":true}");
    free(s);
    /* bad JSON: 400 with a reason, the store as it was */
    err[0] = 0;
    CHECK_EQ(mmds_put(m, "{\"k\":", 5, err, sizeof err), 400);
    CHECK(strstr(err, "deserializing"));
    CHECK_EQ(mmds_patch(m, "nope", 4, err, sizeof err), 400);
    CHECK_EQ(mmds_put(m, NULL, 0, err, sizeof err), 400);
    CHECK_EQ(mmds_put(m, "{}", 2, NULL, 0), 204); /* no room for a reason: none written */
    /* any JSON is a store for Firecracker (its PUT takes a serde Value) */
    CHECK_EQ(mmds_put(m, "\"text\"", 6, err, sizeof err), 204);
    s = mmds_get(m);
    CHECK_STR_EQ(s, "\"text\"");
    free(s);
    CHECK_EQ(mmds_put(m, "null", 4, err, sizeof err), 204);
    s = mmds_get(m);
    CHECK_STR_EQ(s, "{}");
    free(s);
    mmds_free(m);
    mmds_free(NULL);
}

TEST(numbers_and_strings_are_written_as_firecracker_writes_them) {
    struct mmds *m = mmds_new(0);
    char err[256];
    const char *doc = "[12.12,0.1,3.0,-0.0,1e23,1e300,1.5e-7,0.0001,123456.5,1e16,-24,9223372036854775807,"
                      "\"a\\\"\\\\/\\n\\t\\u0001\\u007f\\u00e9\"]";
    CHECK_EQ(mmds_put(m, doc, strlen(doc), err, sizeof err), 204);
    char *s = mmds_get(m);
    CHECK_STR_EQ(s, "[12.12,0.1,3.0,-0.0,1e23,1e300,1.5e-7,0.0001,123456.5,1e16,-24,9223372036854775807,"
                    "\"a\\\"\\\\/\\n\\t\\u0001\x7f\xc3\xa9\"]");
    free(s);
    mmds_free(m);
}

TEST(the_limit_is_413_on_put_and_patch_and_the_store_stays) {
    struct mmds *m = mmds_new(0);
    char err[256];
    /* Firecracker's own case: {"key":"X..."} with 51300 X's is past 51200 */
    size_t n = 51300 + 16;
    char *big = malloc(n);
    int len = snprintf(big, n, "{\"key\":\"%0*d\"}", 51300, 0);
    CHECK_EQ(mmds_put(m, big, (size_t)len, err, sizeof err), 413);
    CHECK(strstr(err, "doesn't fit"));
    char *s = mmds_get(m);
    CHECK_STR_EQ(s, "{}");
    free(s);
    /* exactly at the limit fits: {"k":"..."} is 8 bytes around the text */
    len = snprintf(big, n, "{\"k\":\"%0*d\"}", MMDS_DEFAULT_LIMIT - 8, 0);
    CHECK_EQ(len, MMDS_DEFAULT_LIMIT);
    CHECK_EQ(mmds_put(m, big, (size_t)len, err, sizeof err), 204);
    /* one more byte through PATCH: 413, nothing of it kept */
    CHECK_EQ(mmds_patch(m, "{\"z\":1}", 7, err, sizeof err), 413);
    s = mmds_get(m);
    CHECK_EQ(strlen(s), MMDS_DEFAULT_LIMIT);
    CHECK(!strstr(s, "\"z\""));
    free(s);
    /* a patch that shrinks it passes */
    CHECK_EQ(mmds_patch(m, "{\"k\":\"small\",\"z\":1}", 19, err, sizeof err), 204);
    s = mmds_get(m);
    CHECK_STR_EQ(s, "{\"k\":\"small\",\"z\":1}");
    free(s);
    free(big);
    mmds_free(m);
    /* a small limit of its own */
    m = mmds_new(10);
    CHECK_EQ(mmds_put(m, "{\"a\":\"bcd\"}", 11, err, sizeof err), 413);
    CHECK_EQ(mmds_put(m, "{\"a\":\"bc\"}", 10, err, sizeof err), 204);
    mmds_free(m);
}

TEST(v1_answers_gets_with_or_without_a_token) {
    struct mmds *m = filled(MMDS_V1);
    CHECK_EQ(mmds_get_version(m), MMDS_V1);
    expect(m, "GET", "/latest/meta-data/ami-id", 0, NULL, 200, "ami-87654321");
    expect(m, "GET", "/latest/meta-data/ami-id", 0, (const char *const[]){"X-metadata-token: bogus", NULL}, 200,
           "ami-87654321");
    /* tokens are handed out in V1 too, and work */
    char *t = token(m, 60, 0);
    char hdr[128];
    snprintf(hdr, sizeof hdr, "X-aws-ec2-metadata-token: %s", t);
    expect(m, "GET", "/latest", 0, (const char *const[]){hdr, NULL}, 200, "meta-data/");
    free(t);
    mmds_free(m);
}

TEST(v2_needs_a_valid_token) {
    struct mmds *m = filled(MMDS_V2);
    CHECK_EQ(mmds_get_version(m), MMDS_V2);
    expect(m, "GET", "/latest", 0, NULL, 401, "No MMDS token provided. Use `X-metadata-token` or "
                                             "`X-aws-ec2-metadata-token` header to specify the session token.");
    expect(m, "GET", "/latest", 0, (const char *const[]){"X-metadata-token: foo", NULL}, 401, "MMDS token not valid.");
    uint64_t t0 = 1000 * SEC;
    char *t = token(m, 2, t0), hdr[128], wrong[128];
    snprintf(hdr, sizeof hdr, "x-METADATA-token:  %s ", t);
    expect(m, "GET", "/latest/meta-data/ami-id", t0, (const char *const[]){hdr, NULL}, 200, "ami-87654321");
    /* the EC2 names too, for the token and its TTL */
    struct mmds_response r =
        ask(m, "PUT", "/latest/api/token", t0, (const char *const[]){"X-aws-ec2-metadata-token-ttl-seconds: 5", NULL});
    CHECK_EQ(r.status, 200);
    CHECK_STR_EQ(r.headers, "X-aws-ec2-metadata-token-ttl-seconds: 5\r\n");
    snprintf(wrong, sizeof wrong, "X-aws-ec2-metadata-token: %s", r.body);
    expect(m, "GET", "/latest", t0 + 4 * SEC, (const char *const[]){wrong, NULL}, 200, "meta-data/");
    mmds_response_free(&r);
    /* one character off */
    snprintf(wrong, sizeof wrong, "X-metadata-token: %s", t);
    char *c = wrong + strlen(wrong) - 1;
    *c = *c == 'A' ? 'B' : 'A';
    expect(m, "GET", "/latest", t0, (const char *const[]){wrong, NULL}, 401, NULL);
    /* expired: valid up to, not at, its TTL */
    expect(m, "GET", "/latest", t0 + 2 * SEC - 1, (const char *const[]){hdr, NULL}, 200, NULL);
    expect(m, "GET", "/latest", t0 + 2 * SEC, (const char *const[]){hdr, NULL}, 401, "MMDS token not valid.");
    /* far too long, and empty */
    char longer[300];
    snprintf(longer, sizeof longer, "X-metadata-token: %s%s%s", t, t, t);
    expect(m, "GET", "/latest", t0, (const char *const[]){longer, NULL}, 401, NULL);
    expect(m, "GET", "/latest", t0, (const char *const[]){"X-metadata-token:", NULL}, 401, "MMDS token not valid.");
    free(t);
    mmds_free(m);
}

TEST(token_requests_are_checked_as_firecracker_does) {
    struct mmds *m = filled(MMDS_V2);
    expect(m, "PUT", "/latest/api/token", 0, (const char *const[]){"X-metadata-token-ttl-seconds: 0", NULL}, 400,
           "Invalid time to live value provided for token: 0. Please provide a value between 1 and 21600.");
    expect(m, "PUT", "/latest/api/token", 0, (const char *const[]){"X-metadata-token-ttl-seconds: 21601", NULL}, 400,
           NULL);
    expect(m, "PUT", "/latest/api/token", 0, (const char *const[]){"X-metadata-token-ttl-seconds: 21600", NULL}, 200,
           NULL);
    expect(m, "PUT", "/latest/api/token", 0, (const char *const[]){"X-metadata-token-ttl-seconds: +1", NULL}, 200, NULL);
    expect(m, "PUT", "/latest/api/token", 0, (const char *const[]){"X-metadata-token-ttl-seconds: abc", NULL}, 400,
           "Invalid header. Reason: Invalid value. Key:X-metadata-token-ttl-seconds; Value:abc");
    const char *bad[] = {"-1", "1.5", "", "4294967296", "99999999999999999999", "1 2", "0x10"};
    for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++) {
        char hdr[64];
        snprintf(hdr, sizeof hdr, "X-metadata-token-ttl-seconds: %s", bad[i]);
        expect(m, "PUT", "/latest/api/token", 0, (const char *const[]){hdr, NULL}, 400, NULL);
    }
    expect(m, "PUT", "/latest/api/token", 0, NULL, 400, NULL);
    expect(m, "PUT", "/latest/api/token", 0,
           (const char *const[]){"X-metadata-token-ttl-seconds: 60", "X-Forwarded-For: 203.0.113.195", NULL}, 400,
           "Invalid header. Reason: Unsupported header name. Key: X-Forwarded-For");
    expect(m, "PUT", "/token", 0, (const char *const[]){"X-metadata-token-ttl-seconds: 60", NULL}, 404,
           "Resource not found: /token.");
    expect(m, "PUT", "/latest/api/token/", 0, (const char *const[]){"X-metadata-token-ttl-seconds: 60", NULL}, 404,
           NULL);
    /* runs of '/' are cut first, and a full URL is read as its path */
    expect(m, "PUT", "//latest//api///token", 0, (const char *const[]){"X-metadata-token-ttl-seconds: 60", NULL}, 200,
           NULL);
    expect(m, "PUT", "http://169.254.169.254/latest/api/token", 0,
           (const char *const[]){"X-metadata-token-ttl-seconds: 60", NULL}, 200, NULL);
    mmds_free(m);
}

TEST(imds_and_json_formats) {
    struct mmds *m = filled(MMDS_V1);
    expect(m, "GET", "/", 0, NULL, 200, "age\nempty/\nlatest/\nmember\nphones\npi");
    expect(m, "GET", "/latest/meta-data", 0, NULL, 200, "ami-id\nlocal/\nreservation-id");
    expect(m, "GET", "/latest/meta-data/", 0, NULL, 200, "ami-id\nlocal/\nreservation-id");
    expect(m, "GET", "/empty", 0, NULL, 200, "");
    /* IMDS has only objects and strings */
    const char *unsupported[] = {"/age", "/phones", "/pi", "/member"};
    for (unsigned i = 0; i < 4; i++)
        expect(m, "GET", unsupported[i], 0, NULL, 501, "Cannot retrieve value. The value has an unsupported type.");
    expect(m, "GET", "/phones/1", 0, NULL, 200, "+441");
    expect(m, "GET", "/phones/0/", 0, NULL, 200, "+401");
    /* JSON when asked for */
    struct mmds_response r = ask(m, "GET", "/latest/meta-data/local", 0, json_accept);
    CHECK_EQ(r.status, 200);
    CHECK_STR_EQ(r.content_type, "application/json");
    CHECK_STR_EQ(r.body, "{\"a\":\"b\"}");
    mmds_response_free(&r);
    expect(m, "GET", "/latest/meta-data/ami-id", 0, json_accept, 200, "\"ami-87654321\"");
    expect(m, "GET", "/age", 0, json_accept, 200, "43");
    expect(m, "GET", "/pi", 0, json_accept, 200, "12.12");
    expect(m, "GET", "/phones", 0, json_accept, 200, "[\"+401\",\"+441\"]");
    /* Accept values micro_http does not know are ignored; text/plain is IMDS */
    expect(m, "GET", "/age", 0, (const char *const[]){"Accept: */*", NULL}, 501, NULL);
    expect(m, "GET", "/age", 0, (const char *const[]){"accept:  application/json ", "Accept: */*", NULL}, 200, "43");
    expect(m, "GET", "/age", 0, (const char *const[]){"Accept: application/json", "Accept: text/plain", NULL}, 501,
           NULL);
    /* imds_compat: IMDS whatever Accept says (the Content-Type still follows it) */
    mmds_set_imds_compat(m, true);
    r = ask(m, "GET", "/latest/meta-data/ami-id", 0, json_accept);
    CHECK_EQ(r.status, 200);
    CHECK_STR_EQ(r.body, "ami-87654321");
    CHECK_STR_EQ(r.content_type, "application/json");
    mmds_response_free(&r);
    expect(m, "GET", "/age", 0, json_accept, 501, NULL);
    mmds_set_imds_compat(m, false);
    expect(m, "GET", "/age", 0, json_accept, 200, "43");
    mmds_free(m);
}

TEST(an_uninitialised_store_reads_as_null) {
    struct mmds *m = mmds_new(0);
    expect(m, "GET", "/", 0, json_accept, 200, "null");
    expect(m, "GET", "/", 0, NULL, 501, NULL);
    expect(m, "GET", "/latest", 0, NULL, 404, "Resource not found: /latest.");
    mmds_free(m);
}

TEST(paths_methods_and_missing_resources) {
    struct mmds *m = filled(MMDS_V1);
    expect(m, "GET", "/nothing", 0, NULL, 404, "Resource not found: /nothing.");
    expect(m, "GET", "/latest/meta-data/ami-id/more", 0, NULL, 404, NULL);
    expect(m, "GET", "/phones/2", 0, NULL, 404, NULL);
    expect(m, "GET", "/phones/01", 0, NULL, 404, NULL);
    expect(m, "GET", "/phones/+1", 0, NULL, 404, NULL);
    expect(m, "GET", "/phones/-1", 0, NULL, 404, NULL);
    expect(m, "GET", "/phones/99999999999999999999999", 0, NULL, 404, NULL);
    expect(m, "GET", "//latest///meta-data//ami-id", 0, NULL, 200, "ami-87654321");
    expect(m, "GET", "////", 0, NULL, 200, NULL);
    expect(m, "GET", "http://169.254.169.254/latest/meta-data/ami-id", 0, NULL, 200, "ami-87654321");
    expect(m, "GET", "http://169.254.169.254", 0, NULL, 400, "Invalid URI.");
    expect(m, "GET", "", 0, NULL, 400, "Invalid URI.");
    expect(m, "GET", "latest", 0, NULL, 400, "Invalid URI.");
    struct mmds_response r = ask(m, "PATCH", "/", 0, NULL);
    CHECK_EQ(r.status, 405);
    CHECK_STR_EQ(r.headers, "Allow: GET, PUT\r\n");
    CHECK_STR_EQ(r.body, "Not allowed HTTP method.");
    mmds_response_free(&r);
    const char *methods[] = {"POST", "DELETE", "HEAD", "get", "", "OPTIONS"};
    for (unsigned i = 0; i < 6; i++) expect(m, methods[i], "/", 0, NULL, 405, NULL);
    /* V2 is the same for methods: PUT elsewhere than the token is 404 */
    mmds_set_version(m, MMDS_V2);
    expect(m, "DELETE", "/", 0, NULL, 405, NULL);
    expect(m, "PUT", "/latest", 0, (const char *const[]){"X-metadata-token-ttl-seconds: 60", NULL}, 404, NULL);
    mmds_free(m);
}

TEST(json_pointer_escapes) {
    struct mmds *m = mmds_new(0);
    char err[128];
    const char *doc = "{\"a~b\":\"tilde\",\"c/d\":{\"e\":\"slash\"},\"~1\":\"literal\"}";
    CHECK_EQ(mmds_put(m, doc, strlen(doc), err, sizeof err), 204);
    expect(m, "GET", "/a~0b", 0, NULL, 200, "tilde");
    expect(m, "GET", "/c~1d/e", 0, NULL, 200, "slash");
    expect(m, "GET", "/~01", 0, NULL, 200, "literal");
    expect(m, "GET", "/", 0, NULL, 200, "a~b\nc/d/\n~1");
    mmds_free(m);
}

TEST(the_token_table_stays_bounded) {
    struct mmds *m = filled(MMDS_V2);
    char *first = token(m, 10, 0), *last = NULL;
    for (unsigned i = 0; i < MMDS_MAX_TOKENS + 10; i++) {
        free(last);
        last = token(m, 100 + i % 7, 0);
    }
    char hdr[128];
    snprintf(hdr, sizeof hdr, "X-metadata-token: %s", last);
    expect(m, "GET", "/latest", 5 * SEC, (const char *const[]){hdr, NULL}, 200, "meta-data/");
    /* the one expiring soonest went first */
    snprintf(hdr, sizeof hdr, "X-metadata-token: %s", first);
    expect(m, "GET", "/latest", 5 * SEC, (const char *const[]){hdr, NULL}, 401, NULL);
    free(first);
    free(last);
    /* expired ones make room before any live one goes */
    mmds_free(m);
    m = filled(MMDS_V2);
    char *keep = token(m, 1000, 0);
    for (unsigned i = 0; i < MMDS_MAX_TOKENS - 1; i++) free(token(m, 1, 0));
    for (unsigned i = 0; i < MMDS_MAX_TOKENS - 1; i++) free(token(m, 1, 2 * SEC));
    snprintf(hdr, sizeof hdr, "X-metadata-token: %s", keep);
    expect(m, "GET", "/latest", 3 * SEC, (const char *const[]){hdr, NULL}, 200, NULL);
    free(keep);
    mmds_free(m);
}

TEST(tokens_are_distinct_base64) {
    struct mmds *m = filled(MMDS_V2);
    char *a = token(m, 60, 0), *b = token(m, 60, 0);
    CHECK(strcmp(a, b) != 0);
    CHECK_EQ(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"), strlen(a));
    free(a);
    free(b);
    mmds_free(m);
}

TEST(hostile_requests_get_an_answer) {
    struct mmds *m = filled(MMDS_V1);
    size_t n = 1 << 20;
    char *p = malloc(n + 1);
    memset(p, '/', n);
    p[n] = 0;
    expect(m, "GET", p, 0, NULL, 200, NULL); /* all slashes: the root */
    memset(p, 'a', n);
    p[0] = '/';
    expect(m, "GET", p, 0, NULL, 404, NULL);
    for (size_t i = 0; i < n; i += 2) p[i] = '/';
    expect(m, "GET", p, 0, NULL, 404, NULL);
    free(p);
    const char *junk[] = {"/..", "/../../etc/passwd", "/latest/..", "/~", "/~2", "/%2e%2e", "/\x01\xff", "/latest/\n",
                          "/latest?x=1", "/ latest", "http://", "http:///"};
    for (unsigned i = 0; i < sizeof junk / sizeof *junk; i++) {
        struct mmds_response r = ask(m, "GET", junk[i], 0, NULL);
        CHECK_MSG(r.status == 404 || r.status == 400 || r.status == 200, "%s: %d", junk[i], r.status);
        mmds_response_free(&r);
    }
    /* NULL strings, a NULL header array */
    struct mmds_response r;
    struct mmds_header nulls[] = {{NULL, NULL}, {"Accept", NULL}, {NULL, "x"}};
    mmds_answer(m, &(struct mmds_request){NULL, NULL, NULL, 3}, 0, &r);
    CHECK_EQ(r.status, 400);
    mmds_response_free(&r);
    mmds_answer(m, &(struct mmds_request){"GET", "/", nulls, 3}, 0, &r);
    CHECK_EQ(r.status, 200);
    mmds_response_free(&r);
    mmds_set_version(m, MMDS_V2);
    mmds_answer(m, &(struct mmds_request){"PUT", "/latest/api/token", nulls, 3}, 0, &r);
    CHECK_EQ(r.status, 400);
    mmds_response_free(&r);
    mmds_free(m);
}
