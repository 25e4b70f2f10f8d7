/* The API's and config file's JSON: any bytes as a config file document, then as each
 * resource's body (byte 0 picks which, and whether PUT or PATCH: the balloon, vsock and rate
 * limiters included), then the configuration
 * back out as JSON and into a machine configuration. Refused or taken, never a crash, a leak
 * or a spec left half-changed (the result must still serialize and convert). */
#include <jansson.h>
#include <string.h>

#include "vmm/control/vm_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
    if (!body) return 0;
    struct vm_spec s;
    vm_spec_init(&s);
    char err[300];
    /* A real file, so that paths in the input can name one. */
    json_t *boot = json_pack("{s:s}", "kernel_image_path", "/proc/self/exe");
    vm_spec_boot_source(&s, boot, err, sizeof err);
    json_decref(boot);
    const char *path;
    struct rate_limiter_config rl = {0}, tx = {0};
    switch (data[0] % 14) {
    case 0: vm_spec_document(&s, body, err, sizeof err); break;
    case 1: vm_spec_boot_source(&s, body, err, sizeof err); break;
    case 2: vm_spec_machine_config(&s, body, data[0] & 0x80, err, sizeof err); break;
    case 3: vm_spec_drive(&s, data[0] & 0x80 ? "rootfs" : NULL, body, err, sizeof err); break;
    case 4: vm_spec_net(&s, data[0] & 0x80 ? "eth0" : NULL, body, err, sizeof err); break;
    case 5: vm_spec_entropy(&s, body, err, sizeof err); break;
    case 6: vm_spec_logger(&s, body, err, sizeof err); break;
    case 7: vm_spec_metrics(&s, body, err, sizeof err); break;
    case 9: /* a balloon, then its PATCHes */
        if (vm_spec_balloon(&s, body, err, sizeof err) == 0) {
            vm_spec_balloon_patch(&s, body, err, sizeof err);
            vm_spec_balloon_stats_patch(&s, body, err, sizeof err);
        }
        break;
    case 10: vm_spec_vsock(&s, body, err, sizeof err); break;
    case 11: /* a rate limiter as a PUT and as a PATCH over a limit already set */
        vm_spec_rate_limiter("fuzz", body, false, &rl, err, sizeof err);
        vm_spec_rate_limiter("fuzz", body, true, &rl, err, sizeof err);
        json_decref(vm_spec_rate_limiter_json(&rl));
        break;
    case 12: /* a drive and its PATCH */
        if (vm_spec_drive(&s, NULL, body, err, sizeof err) == 0)
            vm_spec_drive_patch(&s, s.drives[0].id, body, &path, &rl, err, sizeof err);
        break;
    case 13: /* an interface and its PATCH */
        if (vm_spec_net(&s, NULL, body, err, sizeof err) == 0)
            vm_spec_net_patch(&s, s.nets[0].id, body, &rl, &tx, err, sizeof err);
        break;
    default: /* the same drive twice, as the API allows (the second replaces the first) */
        vm_spec_drive(&s, NULL, body, err, sizeof err);
        vm_spec_drive(&s, NULL, body, err, sizeof err);
    }
    json_t *out = vm_spec_to_json(&s);
    char *text = json_dumps(out, JSON_COMPACT);
    if (!text) __builtin_trap();
    free(text);
    json_decref(out);
    struct machine_config cfg = {0};
    /* (more devices than a machine takes is the only reason to refuse what the parsers took) */
    if (s.kernel && vm_spec_to_machine(&s, &cfg, err, sizeof err) != 0 && !strstr(err, "at most")) __builtin_trap();
    vm_spec_free(&s);
    json_decref(body);
    return 0;
}
