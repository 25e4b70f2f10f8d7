/* Firecracker's MMDS, its store and its answers to the guest. What follows Firecracker where a
 * reader might expect otherwise:
 * - GET and PUT are allowed in both versions (405 with "Allow: GET, PUT" for the rest): V1 also
 *   hands out tokens, so that a guest can move to V2 first, and answers GETs whatever token they
 *   carry or lack. V2 refuses a GET without a valid token (401).
 * - A token is asked for with PUT /latest/api/token (that exact path once runs of '/' are cut,
 *   else 404) and X-metadata-token-ttl-seconds or X-aws-ec2-metadata-token-ttl-seconds: a u32
 *   as Rust reads one, 1..21600, else 400; X-Forwarded-For there is 400 (EC2's guard against a
 *   proxy in the guest handing tokens out). The answer echoes the TTL header.
 * - The path is a JSON pointer (RFC 6901, arrays by index) once runs of '/' are cut and one
 *   trailing '/' dropped: "/" is the whole store. A target "http://host/path" is read as its path.
 * - The format is JSON only with exactly "Accept: application/json" (other Accept values are
 *   ignored, as micro_http does) and not imds_compat; the Content-Type follows Accept even then.
 *   IMDS: an object is its keys, one a line, no last newline, an object's with "/"; a string is
 *   itself; anything else is 501.
 * - Keys come out sorted, numbers as serde_json writes them (shortest round trip), so answers and
 *   the store's size (its compact JSON's length, checked against the limit) are Firecracker's.
 * - The store is uninitialised until the first PUT (which may hold any JSON): PATCH before it is
 *   400, GET /mmds shows {} for null, and the guest's GET / gets null (501 in IMDS).
 * Tokens are random, not Firecracker's sealed expiry times: a bounded table here. */
#include "net/mmds.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define TOKEN_BYTES 36 /* Firecracker's tokens are 36 bytes too: 48 characters of base64 */
#define TOKEN_CHARS (TOKEN_BYTES / 3 * 4)
#define TOKEN_PATH "/latest/api/token"
#define NS_PER_S 1000000000ull

struct token {
    uint64_t expiry_ns; /* 0: a free slot */
    char text[TOKEN_CHARS];
};

struct mmds {
    json_t *data;
    bool initialized;
    bool imds_compat;
    enum mmds_version version;
    size_t limit;
    char ttl_header[64]; /* a token answer's extra header: valid until the next answer */
    struct token tokens[MMDS_MAX_TOKENS];
};

struct mmds *mmds_new(size_t limit) {
    struct mmds *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->data = json_null();
    m->limit = limit ? limit : MMDS_DEFAULT_LIMIT;
    m->version = MMDS_V1;
    return m;
}

void mmds_free(struct mmds *m) {
    if (!m) return;
    json_decref(m->data);
    free(m);
}

void mmds_set_version(struct mmds *m, enum mmds_version v) { m->version = v == MMDS_V2 ? MMDS_V2 : MMDS_V1; }
enum mmds_version mmds_get_version(const struct mmds *m) { return m->version; }
void mmds_set_imds_compat(struct mmds *m, bool on) { m->imds_compat = on; }

/* ---- compact JSON as serde_json writes it ---- */

/* Stops growing past max (the caller only wants to know it is too large): a store's size is
 * checked without holding more than the limit. */
struct buf {
    char *p;
    size_t len, cap, max;
    bool oom, over;
};

static void put(struct buf *b, const char *s, size_t n) {
    if (b->oom || b->over) return;
    if (n > b->max - b->len) {
        b->over = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_string(struct buf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    put(b, "\"", 1);
    for (const char *run = s;; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        put(b, run, (size_t)(s - run));
        run = s + 1;
        if (!c) break;
        const char *short_form = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                               : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        char u[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
        puts_(b, short_form ? short_form : u);
    }
    put(b, "\"", 1);
}

/* The shortest digits that read back as v, laid out as Rust's ryu does (3.0, 12.12, 0.001,
 * 1e-7, 1e23, 1.5e300): jansson's %.17g would write 12.119999999999999. */
static void put_real(struct buf *b, double v) {
    char e[40], out[64];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, v);
        if (strtod(e, NULL) == v) break;
    }
    char digits[24];
    size_t nd = 0, o = 0;
    const char *p = e;
    if (*p == '-') out[o++] = *p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp = *p ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    int kk = exp + 1, k = kk - (int)nd; /* v = digits * 10^k; the point goes kk digits in */
    if (k >= 0 && kk <= 16) {
        memcpy(out + o, digits, nd), o += nd;
        for (int i = 0; i < k; i++) out[o++] = '0';
        memcpy(out + o, ".0", 2), o += 2;
    } else if (kk > 0 && kk <= 16) {
        memcpy(out + o, digits, (size_t)kk), o += (size_t)kk;
        out[o++] = '.';
        memcpy(out + o, digits + kk, nd - (size_t)kk), o += nd - (size_t)kk;
    } else if (kk > -5 && kk <= 0) {
        memcpy(out + o, "0.", 2), o += 2;
        for (int i = 0; i < -kk; i++) out[o++] = '0';
        memcpy(out + o, digits, nd), o += nd;
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, nd - 1), o += nd - 1;
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%d", kk - 1);
    }
    put(b, out, o);
}

static int key_order(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* An object's keys in byte order (serde_json's map is a BTreeMap); NULL when out of memory
 * (never for an empty object: *n is 0 and the array a placeholder to free). */
static const char **sorted_keys(json_t *obj, size_t *n) {
    *n = json_object_size(obj);
    const char **keys = malloc((*n ? *n : 1) * sizeof *keys);
    if (!keys) return NULL;
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) keys[i++] = k;
    qsort(keys, *n, sizeof *keys, key_order);
    return keys;
}

static void put_value(struct buf *b, json_t *v);

static void put_object(struct buf *b, json_t *obj) {
    size_t n;
    const char **keys = sorted_keys(obj, &n);
    if (!keys) {
        b->oom = true;
        return;
    }
    put(b, "{", 1);
    for (size_t i = 0; i < n && !b->oom && !b->over; i++) {
        if (i) put(b, ",", 1);
        put_string(b, keys[i]);
        put(b, ":", 1);
        put_value(b, json_object_get(obj, keys[i]));
    }
    put(b, "}", 1);
    free(keys);
}

/* Recursion as deep as the JSON: jansson's parser stops at 2048 levels, and a merge goes no
 * deeper than the store or the patch. */
static void put_value(struct buf *b, json_t *v) {
    char num[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: put_object(b, v); break;
    case JSON_ARRAY:
        put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v) && !b->oom && !b->over; i++) {
            if (i) put(b, ",", 1);
            put_value(b, json_array_get(v, i));
        }
        put(b, "]", 1);
        break;
    case JSON_STRING: put_string(b, json_string_value(v)); break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        puts_(b, num);
        break;
    case JSON_REAL: put_real(b, json_real_value(v)); break;
    case JSON_TRUE: puts_(b, "true"); break;
    case JSON_FALSE: puts_(b, "false"); break;
    case JSON_NULL: puts_(b, "null"); break;
    }
}

/* v as compact JSON (malloc'd), NULL when out of memory or longer than max. */
static char *dump(json_t *v, size_t max) {
    struct buf b = {.max = max};
    put_value(&b, v);
    if (b.oom || b.over || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* Whether v's compact JSON is no longer than limit; -1 when out of memory. */
static int fits(json_t *v, size_t limit) {
    struct buf b = {.max = limit};
    put_value(&b, v);
    free(b.p);
    return b.oom ? -1 : !b.over;
}

/* ---- the store, filled by the API ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static json_t *parse(const char *body, size_t len, char *err, size_t errlen) {
    json_error_t je;
    json_t *v = json_loadb(body ? body : "", body ? len : 0, JSON_DECODE_ANY, &je);
    if (!v) /* serde's words, with jansson's reason, as the rest of the API says it */
        set_err(err, errlen, "An error occurred when deserializing the json body of a request: %s at line %d column %d.",
                je.text, je.line, je.column);
    return v;
}

/* Takes v: the store becomes it when it fits. */
static int replace_store(struct mmds *m, json_t *v, char *err, size_t errlen) {
    int ok = fits(v, m->limit);
    if (ok != 1) {
        json_decref(v);
        set_err(err, errlen, ok < 0 ? "Out of memory." : "The MMDS patch request doesn't fit.");
        return ok < 0 ? 500 : 413;
    }
    json_decref(m->data);
    m->data = v;
    m->initialized = true;
    return 204;
}

int mmds_put(struct mmds *m, const char *body, size_t len, char *err, size_t errlen) {
    json_t *v = parse(body, len, err, errlen);
    return v ? replace_store(m, v, err, errlen) : 400;
}

/* RFC 7396 into an object: null removes, an object merges into an object (made one if need be),
 * anything else replaces. -1 when out of memory (target then half merged: a copy's). */
static int merge_into(json_t *target, json_t *patch) {
    const char *k;
    json_t *v;
    json_object_foreach(patch, k, v) {
        if (json_is_null(v)) {
            json_object_del(target, k);
        } else if (json_is_object(v)) {
            json_t *t = json_object_get(target, k);
            if (!json_is_object(t)) {
                if (json_object_set_new(target, k, t = json_object()) != 0) return -1;
            }
            if (merge_into(t, v) != 0) return -1;
        } else if (json_object_set(target, k, v) != 0) {
            return -1;
        }
    }
    return 0;
}

int mmds_patch(struct mmds *m, const char *body, size_t len, char *err, size_t errlen) {
    if (!m->initialized) {
        set_err(err, errlen, "The MMDS data store is not initialized.");
        return 400;
    }
    json_t *patch = parse(body, len, err, errlen);
    if (!patch) return 400;
    json_t *next;
    if (!json_is_object(patch)) {
        next = json_incref(patch);
    } else {
        next = json_is_object(m->data) ? json_deep_copy(m->data) : json_object();
        if (next && merge_into(next, patch) != 0) json_decref(next), next = NULL;
    }
    json_decref(patch);
    if (!next) {
        set_err(err, errlen, "Out of memory.");
        return 500;
    }
    return replace_store(m, next, err, errlen);
}

char *mmds_get(const struct mmds *m) {
    if (json_is_null(m->data)) return strdup("{}"); /* Firecracker's answer for an empty store */
    return dump(m->data, SIZE_MAX);
}

/* ---- the guest's requests ---- */

static void reply(struct mmds_response *out, int status, const char *content_type, char *body) {
    *out = (struct mmds_response){.status = status, .content_type = body ? content_type : NULL, .body = body};
}

__attribute__((format(printf, 3, 4))) static void reply_text(struct mmds_response *out, int status, const char *fmt, ...) {
    char *body = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&body, fmt, ap) < 0) body = NULL;
    va_end(ap);
    reply(out, status, "text/plain", body);
}

/* s without its leading and trailing blanks, as micro_http reads header names and values. */
static const char *trim(const char *s, size_t *len) {
    if (!s) s = "";
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
    *len = n;
    return s;
}

static bool is(const char *s, size_t len, const char *word) { return len == strlen(word) && !strncmp(s, word, len); }

static bool named(const struct mmds_header *h, const char *name) {
    size_t len;
    const char *s = trim(h->name, &len);
    return len == strlen(name) && !strncasecmp(s, name, len);
}

/* The last header named a or b (micro_http keeps the last of a name). */
static const struct mmds_header *find(const struct mmds_request *r, const char *a, const char *b) {
    const struct mmds_header *found = NULL;
    for (unsigned i = 0; r->headers && i < r->nheaders; i++)
        if (named(&r->headers[i], a) || (b && named(&r->headers[i], b))) found = &r->headers[i];
    return found;
}

/* Whether the guest asked for JSON: the last Accept that micro_http understands. */
static bool wants_json(const struct mmds_request *r) {
    bool json = false;
    for (unsigned i = 0; r->headers && i < r->nheaders; i++) {
        size_t len;
        const char *v = trim(r->headers[i].value, &len);
        if (!named(&r->headers[i], "Accept")) continue;
        if (is(v, len, "application/json")) json = true;
        else if (is(v, len, "text/plain")) json = false;
    }
    return json;
}

/* The target's absolute path as micro_http reads it ("" when none), runs of '/' cut to one. */
static char *json_path(const char *target, const char **abs) {
    const char *p = target ? target : "";
    if (!strncmp(p, "http://", 7)) {
        p = strchr(p + 7, '/');
        if (!p) p = "";
    } else if (*p != '/') {
        p = "";
    }
    *abs = p;
    char *path = malloc(strlen(p) + 1), *o = path;
    if (!path) return NULL;
    for (; *p; p++)
        if (*p != '/' || o == path || o[-1] != '/') *o++ = *p;
    *o = '\0';
    return path;
}

/* RFC 6901 unescaping as serde_json does it: every ~1 first, then every ~0. */
static void unescape(char *t) {
    static const char *const from[] = {"~1", "~0"}, to[] = {'/', '~'};
    for (int pass = 0; pass < 2; pass++) {
        char *o = t;
        for (const char *s = t; *s;)
            if (s[0] == from[pass][0] && s[1] == from[pass][1]) *o++ = to[pass], s += 2;
            else *o++ = *s++;
        *o = '\0';
    }
}

/* An array index as serde_json takes one: digits only, no leading zero, no sign. */
static bool index_of(const char *t, size_t *idx) {
    if (!*t || (t[0] == '0' && t[1])) return false;
    size_t v = 0;
    for (; *t; t++) {
        if (*t < '0' || *t > '9' || v > (SIZE_MAX - 9) / 10) return false;
        v = v * 10 + (size_t)(*t - '0');
    }
    *idx = v;
    return true;
}

/* The value at pointer (split into its tokens in place), NULL when none. */
static json_t *lookup(json_t *v, char *pointer) {
    if (!*pointer) return v;
    if (*pointer != '/') return NULL;
    for (char *t = pointer + 1; v;) {
        char *end = strchr(t, '/');
        if (end) *end = '\0';
        unescape(t);
        size_t i;
        if (json_is_object(v)) v = json_object_get(v, t);
        else if (json_is_array(v) && index_of(t, &i)) v = json_array_get(v, i);
        else v = NULL;
        if (!end) break;
        t = end + 1;
    }
    return v;
}

/* IMDS: an object's keys a line each ("/" after an object's), a string as it is. */
static char *imds_text(json_t *v, bool *supported) {
    *supported = true;
    if (json_is_string(v)) return strdup(json_string_value(v));
    if (!json_is_object(v)) {
        *supported = false;
        return NULL;
    }
    size_t n;
    const char **keys = sorted_keys(v, &n);
    if (!keys) return NULL;
    struct buf b = {.max = SIZE_MAX};
    put(&b, "", 0);
    for (size_t i = 0; i < n; i++) {
        if (i) put(&b, "\n", 1);
        puts_(&b, keys[i]);
        if (json_is_object(json_object_get(v, keys[i]))) put(&b, "/", 1);
    }
    free(keys);
    if (b.oom) free(b.p), b.p = NULL;
    return b.p;
}

static void answer_get(struct mmds *m, const struct mmds_request *r, char *path, const char *abs,
                       struct mmds_response *out) {
    size_t len = strlen(path);
    if (len && path[len - 1] == '/') path[len - 1] = '\0';
    json_t *v = lookup(m->data, path);
    if (!v) return reply_text(out, 404, "Resource not found: %s.", abs);
    bool json = wants_json(r), supported = true;
    char *body = json && !m->imds_compat ? dump(v, SIZE_MAX) : imds_text(v, &supported);
    if (!supported) return reply_text(out, 501, "Cannot retrieve value. The value has an unsupported type.");
    if (!body) return reply(out, 500, NULL, NULL);
    reply(out, 200, json ? "application/json" : "text/plain", body);
}

static bool token_valid(const struct mmds *m, const char *value, uint64_t now_ns) {
    size_t len;
    const char *t = trim(value, &len);
    if (len != TOKEN_CHARS) return false;
    unsigned found = 0;
    for (unsigned i = 0; i < MMDS_MAX_TOKENS; i++) {
        unsigned char diff = 0; /* every byte of every slot: how far a guess matched stays unseen */
        for (unsigned j = 0; j < TOKEN_CHARS; j++) diff |= (unsigned char)(t[j] ^ m->tokens[i].text[j]);
        found |= (unsigned)(diff == 0) & (unsigned)(m->tokens[i].expiry_ns > now_ns);
    }
    return found;
}

/* The slot for a new token: a free or expired one, else the one expiring soonest. */
static struct token *token_slot(struct mmds *m, uint64_t now_ns) {
    struct token *soonest = &m->tokens[0];
    for (unsigned i = 0; i < MMDS_MAX_TOKENS; i++) {
        if (m->tokens[i].expiry_ns <= now_ns) return &m->tokens[i];
        if (m->tokens[i].expiry_ns < soonest->expiry_ns) soonest = &m->tokens[i];
    }
    return soonest;
}

static bool new_token(struct mmds *m, uint32_t ttl, uint64_t now_ns, char text[TOKEN_CHARS + 1]) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char raw[TOKEN_BYTES];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) return false;
    for (unsigned i = 0, o = 0; i < TOKEN_BYTES; i += 3) {
        uint32_t w = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        for (int s = 18; s >= 0; s -= 6) text[o++] = b64[(w >> s) & 63];
    }
    text[TOKEN_CHARS] = '\0';
    struct token *slot = token_slot(m, now_ns);
    uint64_t ttl_ns = (uint64_t)ttl * NS_PER_S;
    slot->expiry_ns = now_ns > UINT64_MAX - ttl_ns ? UINT64_MAX : now_ns + ttl_ns;
    memcpy(slot->text, text, TOKEN_CHARS);
    return true;
}

/* A TTL as Rust's u32 parse takes it: an optional '+', then digits only. */
static bool parse_ttl(const char *s, size_t len, uint32_t *out) {
    if (len && *s == '+') s++, len--;
    if (!len) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX) return false;
    }
    *out = (uint32_t)v;
    return true;
}

static void answer_put(struct mmds *m, const struct mmds_request *r, const char *path, const char *abs,
                       uint64_t now_ns, struct mmds_response *out) {
    const struct mmds_header *h = find(r, "X-Forwarded-For", NULL);
    size_t len;
    if (h) {
        const char *name = trim(h->name, &len);
        return reply_text(out, 400, "Invalid header. Reason: Unsupported header name. Key: %.*s", (int)len, name);
    }
    if (strcmp(path, TOKEN_PATH) != 0) return reply_text(out, 404, "Resource not found: %s.", abs);
    h = find(r, "X-metadata-token-ttl-seconds", "X-aws-ec2-metadata-token-ttl-seconds");
    if (!h)
        return reply_text(out, 400, "Token time to live value not found. Use `X-metadata-token-ttl-seconds` or "
                                    "`X-aws-ec2-metadata-token-ttl-seconds` header to specify the token's lifetime.");
    const char *value = trim(h->value, &len);
    uint32_t ttl;
    if (!parse_ttl(value, len, &ttl)) {
        size_t nlen;
        const char *name = trim(h->name, &nlen);
        return reply_text(out, 400, "Invalid header. Reason: Invalid value. Key:%.*s; Value:%.*s", (int)nlen, name,
                          (int)len, value);
    }
    if (ttl < 1 || ttl > MMDS_TOKEN_TTL_MAX)
        return reply_text(out, 400,
                          "Invalid time to live value provided for token: %u. Please provide a value between 1 and %u.",
                          ttl, MMDS_TOKEN_TTL_MAX);
    char text[TOKEN_CHARS + 1];
    if (!new_token(m, ttl, now_ns, text)) return reply_text(out, 400, "Failed to generate a key");
    reply(out, 200, "text/plain", strdup(text));
    if (!out->body) return reply(out, 500, NULL, NULL);
    snprintf(m->ttl_header, sizeof m->ttl_header, "%s: %u\r\n",
             named(h, "X-metadata-token-ttl-seconds") ? "X-metadata-token-ttl-seconds"
                                                      : "X-aws-ec2-metadata-token-ttl-seconds",
             ttl);
    out->headers = m->ttl_header;
}

void mmds_answer(struct mmds *m, const struct mmds_request *r, uint64_t now_ns, struct mmds_response *out) {
    const char *abs;
    char *path = json_path(r->path, &abs);
    const char *method = r->method ? r->method : "";
    if (!path) {
        reply(out, 500, NULL, NULL);
    } else if (!*abs) {
        reply_text(out, 400, "Invalid URI.");
    } else if (!strcmp(method, "GET")) {
        const struct mmds_header *h = find(r, "X-metadata-token", "X-aws-ec2-metadata-token");
        if (m->version == MMDS_V1 || (h && token_valid(m, h->value, now_ns))) answer_get(m, r, path, abs, out);
        else if (!h)
            reply_text(out, 401, "No MMDS token provided. Use `X-metadata-token` or `X-aws-ec2-metadata-token` header "
                                 "to specify the session token.");
        else reply_text(out, 401, "MMDS token not valid.");
    } else if (!strcmp(method, "PUT")) {
        answer_put(m, r, path, abs, now_ns, out);
    } else {
        reply_text(out, 405, "Not allowed HTTP method.");
        out->headers = "Allow: GET, PUT\r\n";
    }
    free(path);
}

void mmds_response_free(struct mmds_response *out) {
    free(out->body);
    out->body = NULL;
}
