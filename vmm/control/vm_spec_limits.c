/* Firecracker's rate limiters in JSON (vmm/control/vm_spec.h): {"bandwidth": BUCKET, "ops":
 * BUCKET}, a bucket {"size", "one_time_burst", "refill_time"} (ms). A bucket that is null or
 * absent limits nothing, and so does one of size 0 or refill_time 0 (Firecracker's "disabled");
 * in a PATCH, an absent or null bucket stays as it was. */
#include <stdio.h>

#include "base/error_text.h"
#include "vmm/control/vm_spec.h"

static int parse_bucket(const char *what, const char *name, json_t *v, struct token_bucket_config *out, char *err,
                        size_t errlen) {
    json_int_t size, refill, burst = 0;
    json_t *burst_v = NULL;
    json_error_t je;
    if (json_unpack_ex(v, &je, JSON_STRICT, "{s:I, s:I, s?:o}", "size", &size, "refill_time", &refill,
                       "one_time_burst", &burst_v)) {
        char inner[120];
        snprintf(inner, sizeof inner, "%s: %s", what, name);
        return vm_spec_unpack_error(inner, &je, err, errlen);
    }
    if (burst_v && !json_is_null(burst_v)) {
        if (!json_is_integer(burst_v)) return error_text(err, errlen, "%s: %s: one_time_burst: expected an integer or null", what, name);
        burst = json_integer_value(burst_v);
    }
    if (size < 0 || refill < 0 || burst < 0)
        return error_text(err, errlen, "%s: %s: size, refill_time and one_time_burst must not be negative", what, name);
    *out = (struct token_bucket_config){.size = (uint64_t)size, .one_time_burst = (uint64_t)burst,
                                        .refill_time_ms = (uint64_t)refill};
    return 0;
}

int vm_spec_rate_limiter(const char *what, json_t *v, bool patch, struct rate_limiter_config *inout, char *err,
                         size_t errlen) {
    if (!v || json_is_null(v)) {
        if (!patch) *inout = (struct rate_limiter_config){0};
        return 0;
    }
    json_t *bw = NULL, *ops = NULL;
    json_error_t je;
    if (json_unpack_ex(v, &je, JSON_STRICT, "{s?:o, s?:o}", "bandwidth", &bw, "ops", &ops))
        return vm_spec_unpack_error(what, &je, err, errlen);
    struct rate_limiter_config c = patch ? *inout : (struct rate_limiter_config){0};
    if (bw && !json_is_null(bw) && parse_bucket(what, "bandwidth", bw, &c.bandwidth, err, errlen)) return -1;
    if (ops && !json_is_null(ops) && parse_bucket(what, "ops", ops, &c.ops, err, errlen)) return -1;
    if (!patch && (!bw || json_is_null(bw))) c.bandwidth = (struct token_bucket_config){0};
    if (!patch && (!ops || json_is_null(ops))) c.ops = (struct token_bucket_config){0};
    *inout = c;
    return 0;
}

static json_t *bucket_json(const struct token_bucket_config *b) {
    if (!token_bucket_limits(b)) return json_null();
    return json_pack("{s:I, s:o, s:I}", "size", (json_int_t)b->size, "one_time_burst",
                     b->one_time_burst ? json_integer((json_int_t)b->one_time_burst) : json_null(), "refill_time",
                     (json_int_t)b->refill_time_ms);
}

json_t *vm_spec_rate_limiter_json(const struct rate_limiter_config *c) {
    if (!rate_limiter_limits(c)) return json_null();
    return json_pack("{s:o, s:o}", "bandwidth", bucket_json(&c->bandwidth), "ops", bucket_json(&c->ops));
}
