/* The API's and config file's configuration (vmm/control/vm_spec.h) without KVM: a document becomes
 * the machine's configuration as Firecracker would boot it, refusals leave the spec as it
 * was, and GET /vm/config's document reads back as the same configuration. */
#include <jansson.h>
#include <string.h>

#include "devices/virtio_devices.h"
#include "tests/lib/check.h"
#include "vmm/control/vm_spec.h"

static json_t *parse(const char *text) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    CHECK_MSG(j, "%s: %s", text, je.text);
    return j;
}

static const char doc[] =
    "{\"boot-source\": {\"kernel_image_path\": \"/proc/self/exe\", \"boot_args\": \"console=ttyS0\"},"
    " \"drives\": [{\"drive_id\": \"data\", \"path_on_host\": \"/proc/self/exe\", \"is_root_device\": false},"
    "            {\"drive_id\": \"rootfs\", \"path_on_host\": \"/proc/self/exe\", \"is_root_device\": true,"
    "             \"is_read_only\": true}],"
    " \"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 256},"
    " \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap7\", \"guest_mac\": \"06:00:AC:10:00:02\"}],"
    " \"entropy\": {}}";

TEST(a_config_file_becomes_the_machine_firecracker_would_boot) {
    struct vm_spec s;
    vm_spec_init(&s);
    char err[300] = "";
    json_t *j = parse(doc);
    CHECK_MSG(vm_spec_document(&s, j, err, sizeof err) == 0, "%s", err);
    json_decref(j);
    struct machine_config cfg = {0};
    CHECK_MSG(vm_spec_to_machine(&s, &cfg, err, sizeof err) == 0, "%s", err);
    CHECK_EQ(cfg.cpus, 2);
    CHECK_EQ(cfg.mem, 256ull << 20);
    CHECK_MSG(strcmp(cfg.cmdline, "console=ttyS0 root=/dev/vda ro") == 0, "%s", cfg.cmdline);
    CHECK_EQ(cfg.ndevices, 4);
    CHECK(cfg.devices[0].ops == virtio_device_find("virtio-blk")); /* the root device first: vda */
    CHECK(((const struct virtio_blk_params *)cfg.devices[0].params)->read_only);
    CHECK(!((const struct virtio_blk_params *)cfg.devices[1].params)->read_only);
    CHECK(cfg.devices[2].ops == virtio_device_find("virtio-net"));
    const struct virtio_net_params *net = cfg.devices[2].params;
    CHECK(net->has_mac && net->mac[0] == 0x06 && net->mac[2] == 0xac && net->mac[5] == 0x02);
    CHECK(strcmp(net->tap, "tap7") == 0);
    CHECK(cfg.devices[3].ops == virtio_device_find("virtio-rng"));
    CHECK(!rate_limiter_limits(&((const struct virtio_rng_params *)cfg.devices[3].params)->limiter));
    vm_spec_free(&s);
}

TEST(a_refused_request_changes_nothing_and_patch_changes_only_what_it_names) {
    struct vm_spec s;
    vm_spec_init(&s);
    char err[300] = "";
    json_t *j = parse("{\"vcpu_count\": 3, \"mem_size_mib\": 64}");
    CHECK(vm_spec_machine_config(&s, j, false, err, sizeof err) == 0);
    json_decref(j);
    j = parse("{\"vcpu_count\": 4}"); /* PUT needs both */
    CHECK(vm_spec_machine_config(&s, j, false, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "mem_size_mib"), "%s", err);
    CHECK_EQ(s.vcpus, 3);
    CHECK(vm_spec_machine_config(&s, j, true, err, sizeof err) == 0); /* PATCH takes it */
    json_decref(j);
    CHECK_EQ(s.vcpus, 4);
    CHECK_EQ(s.mem_mib, 64);
    j = parse("{\"vcpu_count\": 2, \"mem_size_mib\": 9999999}");
    CHECK(vm_spec_machine_config(&s, j, false, err, sizeof err) != 0);
    json_decref(j);
    CHECK_EQ(s.vcpus, 4);
    j = parse("{\"drive_id\": \"a\", \"path_on_host\": \"/proc/self/exe\", \"is_root_device\": true}");
    CHECK(vm_spec_drive(&s, "a", j, err, sizeof err) == 0);
    json_decref(j);
    j = parse("{\"drive_id\": \"b\", \"path_on_host\": \"/proc/self/exe\", \"is_root_device\": true}");
    CHECK(vm_spec_drive(&s, "b", j, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "A root block device already exists"), "%s", err);
    json_decref(j);
    CHECK_EQ(s.ndrives, 1);
    vm_spec_free(&s);
}

TEST(the_configuration_reads_back_as_itself) {
    struct vm_spec s, t;
    vm_spec_init(&s), vm_spec_init(&t);
    char err[300] = "";
    json_t *j = parse(doc);
    CHECK(vm_spec_document(&s, j, err, sizeof err) == 0);
    json_decref(j);
    json_t *out = vm_spec_to_json(&s);
    CHECK_MSG(vm_spec_document(&t, out, err, sizeof err) == 0, "%s", err);
    json_t *again = vm_spec_to_json(&t);
    CHECK(json_equal(out, again));
    json_decref(out), json_decref(again);
    vm_spec_free(&s), vm_spec_free(&t);
}

/* Firecracker's devices beyond the disks: the balloon, vsock and rate limiters, as its API
 * and config file write them, become the machine's devices and read back as themselves. */
static const char fc_doc[] =
    "{\"boot-source\": {\"kernel_image_path\": \"/proc/self/exe\"},"
    " \"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 256, \"smt\": true, \"track_dirty_pages\": true},"
    " \"drives\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"/proc/self/exe\", \"is_root_device\": true,"
    "              \"partuuid\": null, \"cache_type\": \"Unsafe\", \"io_engine\": null, \"socket\": null,"
    "              \"rate_limiter\": {\"bandwidth\": {\"size\": 1048576, \"one_time_burst\": null, \"refill_time\": 1000},"
    "                               \"ops\": {\"size\": 500, \"one_time_burst\": 100, \"refill_time\": 1000}}}],"
    " \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap7\", \"mtu\": null,"
    "                          \"tx_rate_limiter\": {\"ops\": {\"size\": 10, \"refill_time\": 100}}, \"rx_rate_limiter\": {}}],"
    " \"entropy\": {\"rate_limiter\": {\"bandwidth\": {\"size\": 1000, \"refill_time\": 100}}},"
    " \"balloon\": {\"amount_mib\": 16, \"deflate_on_oom\": true, \"stats_polling_interval_s\": 5},"
    " \"vsock\": {\"guest_cid\": 42, \"uds_path\": \"/tmp/v.sock\"},"
    " \"logger\": null, \"metrics\": null}";

TEST(firecrackers_balloon_vsock_and_rate_limiters_become_devices_and_read_back) {
    struct vm_spec s, t;
    vm_spec_init(&s), vm_spec_init(&t);
    char err[300] = "";
    json_t *j = parse(fc_doc);
    CHECK_MSG(vm_spec_document(&s, j, err, sizeof err) == 0, "%s", err);
    json_decref(j);
    struct machine_config cfg = {0};
    CHECK_MSG(vm_spec_to_machine(&s, &cfg, err, sizeof err) == 0, "%s", err);
    CHECK(cfg.smt && s.track_dirty_pages);
    CHECK_EQ(cfg.ndevices, 5); /* disk, net, rng, balloon, vsock */
    const struct virtio_blk_params *blk = cfg.devices[0].params;
    CHECK_EQ(blk->limiter.bandwidth.size, 1048576);
    CHECK_EQ(blk->limiter.bandwidth.one_time_burst, 0);
    CHECK_EQ(blk->limiter.ops.one_time_burst, 100);
    CHECK_EQ(blk->limiter.ops.refill_time_ms, 1000);
    const struct virtio_net_params *net = cfg.devices[1].params;
    CHECK(!rate_limiter_limits(&net->rx_limiter) && net->tx_limiter.ops.size == 10);
    CHECK(cfg.devices[2].ops == virtio_device_find("virtio-rng"));
    CHECK_EQ(((const struct virtio_rng_params *)cfg.devices[2].params)->limiter.bandwidth.size, 1000);
    CHECK(cfg.devices[3].ops == virtio_device_find("virtio-balloon"));
    const struct virtio_balloon_params *b = cfg.devices[3].params;
    CHECK(b->target_pages == 16 * 256 && b->deflate_on_oom && b->stats_interval_s == 5);
    CHECK(cfg.devices[4].ops == virtio_device_find("virtio-vsock"));
    const struct virtio_vsock_params *v = cfg.devices[4].params;
    CHECK(v->guest_cid == 42 && strcmp(v->uds_path, "/tmp/v.sock") == 0);
    json_t *out = vm_spec_to_json(&s);
    char *text = json_dumps(out, JSON_SORT_KEYS);
    /* Firecracker's shape: unset fields are null, a bucket's unset burst too */
    CHECK_MSG(strstr(text, "\"one_time_burst\": null") && strstr(text, "\"partuuid\": null") &&
                  strstr(text, "\"rx_rate_limiter\": null") && strstr(text, "\"metrics\": null"),
              "%s", text);
    CHECK_MSG(vm_spec_document(&t, out, err, sizeof err) == 0, "%s", err);
    json_t *again = vm_spec_to_json(&t);
    CHECK_MSG(json_equal(out, again), "%s", text);
    free(text);
    json_decref(out), json_decref(again);
    vm_spec_free(&s), vm_spec_free(&t);
}

/* Each refusal names what Firecracker's clients look for, and leaves the spec as it was. */
static void refused(struct vm_spec *s, int (*fn)(struct vm_spec *, json_t *, char *, size_t), const char *body,
                    const char *want) {
    char err[300] = "";
    json_t *j = parse(body);
    CHECK_MSG(fn(s, j, err, sizeof err) != 0, "%s was taken", body);
    CHECK_MSG(strstr(err, want), "%s: \"%s\", not \"%s\"", body, err, want);
    json_decref(j);
}

static int machine_put(struct vm_spec *s, json_t *b, char *e, size_t n) { return vm_spec_machine_config(s, b, false, e, n); }
static int machine_patch(struct vm_spec *s, json_t *b, char *e, size_t n) { return vm_spec_machine_config(s, b, true, e, n); }
static int drive_put(struct vm_spec *s, json_t *b, char *e, size_t n) { return vm_spec_drive(s, NULL, b, e, n); }

TEST(refusals_speak_firecrackers_words_and_change_nothing) {
    struct vm_spec s;
    vm_spec_init(&s);
    refused(&s, machine_put, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"vcpus\": 2}", "unknown field `vcpus`");
    refused(&s, machine_patch, "{}", "Empty PATCH request.");
    refused(&s, machine_put, "{\"vcpu_count\": 33, \"mem_size_mib\": 128}", "must be 1 to 32");
    refused(&s, machine_put, "{\"vcpu_count\": 3, \"mem_size_mib\": 128, \"smt\": true}", "1 or an even number");
    refused(&s, drive_put, "{\"drive_id\": \"a!\", \"path_on_host\": \"/proc/self/exe\", \"is_root_device\": false}",
            "only letters, digits and underscores");
    refused(&s, drive_put, "{\"drive_id\": \"a\", \"path_on_host\": \"/proc/self/exe\", \"is_root_device\": false,"
                           " \"rate_limiter\": {\"bandwidth\": {\"size\": -1, \"refill_time\": 100}}}", "negative");
    refused(&s, drive_put, "{\"drive_id\": \"a\", \"path_on_host\": \"/proc/self/exe\", \"is_root_device\": false,"
                           " \"rate_limiter\": {\"bandwith\": {\"size\": 1, \"refill_time\": 100}}}", "unknown field `bandwith`");
    refused(&s, vm_spec_balloon, "{\"amount_mib\": 129, \"deflate_on_oom\": false}", "at most the guest's memory");
    refused(&s, vm_spec_balloon_patch, "{\"amount_mib\": 1}", "no balloon device");
    refused(&s, vm_spec_vsock, "{\"guest_cid\": 2, \"uds_path\": \"/tmp/v\"}", "guest_cid 2");
    refused(&s, vm_spec_vsock, "{\"guest_cid\": 4294967296, \"uds_path\": \"/tmp/v\"}", "guest_cid 4294967296");
    CHECK(s.vcpus == 1 && s.ndrives == 0 && !s.balloon.set && !s.vsock.uds_path && !s.smt);
    char err[300];
    json_t *j = parse("{\"amount_mib\": 4, \"deflate_on_oom\": false, \"stats_polling_interval_s\": 1}");
    CHECK(vm_spec_balloon(&s, j, err, sizeof err) == 0);
    json_decref(j);
    refused(&s, vm_spec_balloon_stats_patch, "{\"stats_polling_interval_s\": 0}", "only their interval can change");
    CHECK_EQ(s.balloon.stats_interval_s, 1);
    /* deprecated fields work and say so */
    j = parse("{\"vsock_id\": \"v1\", \"guest_cid\": 3, \"uds_path\": \"/tmp/v\"}");
    CHECK(vm_spec_vsock(&s, j, err, sizeof err) == 0 && s.deprecation && strstr(s.deprecation, "vsock_id"));
    json_decref(j);
    s.deprecation = NULL;
    j = parse("{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"cpu_template\": \"None\"}");
    CHECK(vm_spec_machine_config(&s, j, false, err, sizeof err) == 0 && s.deprecation &&
          strstr(s.deprecation, "cpu_template"));
    json_decref(j);
    vm_spec_free(&s);
}

TEST(a_patched_rate_limiter_changes_only_the_buckets_it_names) {
    struct rate_limiter_config c = {.bandwidth = {100, 0, 10}, .ops = {5, 1, 20}};
    char err[200];
    json_t *j = parse("{\"ops\": {\"size\": 7, \"refill_time\": 30}}");
    CHECK(vm_spec_rate_limiter("x", j, true, &c, err, sizeof err) == 0);
    CHECK(c.bandwidth.size == 100 && c.ops.size == 7 && c.ops.one_time_burst == 0 && c.ops.refill_time_ms == 30);
    CHECK(vm_spec_rate_limiter("x", j, false, &c, err, sizeof err) == 0); /* a PUT: what it names, nothing else */
    CHECK(c.bandwidth.size == 0 && c.ops.size == 7);
    json_decref(j);
    j = parse("{}");
    CHECK(vm_spec_rate_limiter("x", j, true, &c, err, sizeof err) == 0 && c.ops.size == 7);
    CHECK(vm_spec_rate_limiter("x", j, false, &c, err, sizeof err) == 0 && !rate_limiter_limits(&c));
    json_decref(j);
    json_t *none = vm_spec_rate_limiter_json(&c);
    CHECK(json_is_null(none));
    json_decref(none);
}

static int net_put(struct vm_spec *s, json_t *b, char *e, size_t n) { return vm_spec_net(s, NULL, b, e, n); }

/* bellhop_net, the extension field for networks of bellhop's own: checked where a PUT is, one
 * of it or host_dev_name, and read back as given. */
TEST(bellhop_net_is_checked_and_reads_back) {
    struct vm_spec s;
    vm_spec_init(&s);
    refused(&s, net_put, "{\"iface_id\": \"n\"}", "missing field `host_dev_name`");
    refused(&s, net_put, "{\"iface_id\": \"n\", \"host_dev_name\": \"tap0\", \"bellhop_net\": \"user\"}", "exclude each other");
    refused(&s, net_put, "{\"iface_id\": \"n\", \"bellhop_net\": \"slirp\"}", "expected user");
    refused(&s, net_put, "{\"iface_id\": \"n\", \"bellhop_net\": \"user,hostfwd=tcp::0-:22\"}", "1 to 65535");
    refused(&s, net_put, "{\"iface_id\": \"n\", \"bellhop_net\": \"user,restrict=maybe\"}", "restrict=maybe");
    refused(&s, net_put, "{\"iface_id\": \"n\", \"bellhop_net\": \"stream=\"}", "expected user");
    CHECK_EQ(s.nnets, 0u);
    static const char *const good[] = {"user", "user,hostfwd=tcp:127.0.0.1:2222-:22,restrict=on", "passt,-t,2222:22",
                                       "stream=/tmp/passt.sock"};
    char err[300], body[200];
    for (unsigned i = 0; i < sizeof good / sizeof *good; i++) {
        snprintf(body, sizeof body, "{\"iface_id\": \"n%u\", \"bellhop_net\": \"%s\"}", i, good[i]);
        json_t *j = parse(body);
        CHECK_MSG(net_put(&s, j, err, sizeof err) == 0, "%s: %s", body, err);
        json_decref(j);
    }
    CHECK_EQ(s.nnets, 4u);
    json_t *doc_back = vm_spec_to_json(&s);
    json_t *nets = json_object_get(doc_back, "network-interfaces");
    CHECK_EQ(json_array_size(nets), 4u);
    for (unsigned i = 0; i < 4; i++) {
        json_t *n = json_array_get(nets, i);
        CHECK(!json_object_get(n, "host_dev_name"));
        CHECK_MSG(strcmp(json_string_value(json_object_get(n, "bellhop_net")), good[i]) == 0, "%u", i);
    }
    json_decref(doc_back);
    vm_spec_free(&s);
}

/* The config file's mmds-config: the interfaces it names get MMDS at its address, with the
 * server's socket; GET /vm/config writes it back as Firecracker does. */
static const char mmds_doc[] =
    "{\"boot-source\": {\"kernel_image_path\": \"/proc/self/exe\"},"
    " \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap7\"},"
    "                          {\"iface_id\": \"eth1\", \"bellhop_net\": \"user\"}],"
    " \"mmds-config\": {\"version\": \"V2\", \"network_interfaces\": [\"eth1\", \"eth1\"],"
    "                   \"ipv4_address\": \"169.254.170.2\", \"imds_compat\": true}}";

TEST(mmds_config_puts_mmds_on_the_interfaces_it_names) {
    struct vm_spec s, t;
    vm_spec_init(&s), vm_spec_init(&t);
    char err[300] = "";
    json_t *j = parse(mmds_doc);
    CHECK_MSG(vm_spec_document(&s, j, err, sizeof err) == 0, "%s", err);
    json_decref(j);
    CHECK(s.mmds.nifaces == 1 && s.mmds.version == MMDS_V2 && s.mmds.imds_compat && s.mmds.addr == 0xa9feaa02u);
    struct machine_config cfg = {0};
    CHECK(vm_spec_to_machine(&s, &cfg, err, sizeof err) != 0); /* no server to reach: refused, not silent */
    CHECK_MSG(strstr(err, "MMDS"), "%s", err);
    s.mmds_socket = "/tmp/mmds.sock";
    cfg = (struct machine_config){0};
    CHECK_MSG(vm_spec_to_machine(&s, &cfg, err, sizeof err) == 0, "%s", err);
    const struct virtio_net_params *eth0 = cfg.devices[0].params, *eth1 = cfg.devices[1].params;
    CHECK(eth0->mmds_addr == 0 && !eth0->mmds_socket);
    CHECK(eth1->mmds_addr == 0xa9feaa02u && strcmp(eth1->mmds_socket, "/tmp/mmds.sock") == 0);
    json_t *out = vm_spec_to_json(&s);
    char *text = json_dumps(json_object_get(out, "mmds-config"), JSON_SORT_KEYS | JSON_COMPACT);
    CHECK_MSG(strcmp(text, "{\"imds_compat\":true,\"ipv4_address\":\"169.254.170.2\",\"network_interfaces\":[\"eth1\"],"
                           "\"version\":\"V2\"}") == 0, "%s", text);
    free(text);
    CHECK_MSG(vm_spec_document(&t, out, err, sizeof err) == 0, "%s", err);
    json_t *again = vm_spec_to_json(&t);
    CHECK(json_equal(out, again));
    json_decref(out), json_decref(again);
    vm_spec_free(&s), vm_spec_free(&t);
    /* without it: null, and the defaults when only the interfaces are named */
    vm_spec_init(&s);
    out = vm_spec_to_json(&s);
    CHECK(json_is_null(json_object_get(out, "mmds-config")));
    json_decref(out);
    j = parse("{\"iface_id\": \"eth0\", \"bellhop_net\": \"stream=/tmp/x\"}");
    CHECK(vm_spec_net(&s, NULL, j, err, sizeof err) == 0);
    json_decref(j);
    j = parse("{\"network_interfaces\": [\"eth0\"]}");
    CHECK_MSG(vm_spec_mmds_config(&s, j, err, sizeof err) == 0, "%s", err);
    json_decref(j);
    CHECK(s.mmds.version == MMDS_V1 && s.mmds.addr == MMDS_DEFAULT_ADDR && !s.mmds.imds_compat);
    vm_spec_free(&s);
}

TEST(mmds_config_refusals_change_nothing) {
    struct vm_spec s;
    vm_spec_init(&s);
    char err[300];
    json_t *j = parse("{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\"}");
    CHECK(vm_spec_net(&s, NULL, j, err, sizeof err) == 0);
    json_decref(j);
    j = parse("{\"network_interfaces\": [\"eth0\"], \"ipv4_address\": \"169.254.1.1\"}");
    CHECK(vm_spec_mmds_config(&s, j, err, sizeof err) == 0);
    json_decref(j);
    refused(&s, vm_spec_mmds_config, "{\"network_interfaces\": [\"eth0\"], \"version\": \"V3\"}",
            "unknown variant `V3`, expected `V1` or `V2`");
    refused(&s, vm_spec_mmds_config, "{\"network_interfaces\": [\"eth0\"], \"version\": 2}", "Expected string");
    refused(&s, vm_spec_mmds_config, "{\"network_interfaces\": [\"eth0\", \"eth9\"]}",
            "does not correspond to any existing network interface: eth9");
    refused(&s, vm_spec_mmds_config, "{\"network_interfaces\": []}", "network interface IDs that allow forwarding MMDS "
                                                                      "requests is empty.");
    refused(&s, vm_spec_mmds_config, "{\"network_interfaces\": [1]}", "expected an array of ids");
    refused(&s, vm_spec_mmds_config, "{\"network_interfaces\": \"eth0\"}", "expected an array of ids");
    refused(&s, vm_spec_mmds_config, "{\"version\": \"V2\"}", "missing field `network_interfaces`");
    static const char *const not_link_local[] = {"10.0.2.2", "169.254.0.1", "169.254.255.1", "169.254.0.0",
                                                 "169.254.255.255", "169.253.1.1"};
    for (unsigned i = 0; i < sizeof not_link_local / sizeof *not_link_local; i++) {
        char body[120];
        snprintf(body, sizeof body, "{\"network_interfaces\": [\"eth0\"], \"ipv4_address\": \"%s\"}", not_link_local[i]);
        refused(&s, vm_spec_mmds_config, body, "not link local");
    }
    refused(&s, vm_spec_mmds_config, "{\"network_interfaces\": [\"eth0\"], \"ipv4_address\": \"169.254.1\"}",
            "invalid IPv4 address syntax");
    refused(&s, vm_spec_mmds_config, "{\"network_interfaces\": [\"eth0\"], \"ipv4_address\": \"169.254.01.1\"}",
            "invalid IPv4 address syntax");
    refused(&s, vm_spec_mmds_config, "{\"network_interfaces\": [\"eth0\"], \"imds_compat\": \"yes\"}", "Expected true or false");
    refused(&s, vm_spec_mmds_config, "{\"network_interfaces\": [\"eth0\"], \"port\": 80}", "unknown field `port`");
    CHECK(s.mmds.nifaces == 1 && s.mmds.addr == 0xa9fe0101u && s.mmds.version == MMDS_V1);
    /* the config file's key goes through the same checks */
    vm_spec_free(&s);
    vm_spec_init(&s);
    j = parse("{\"boot-source\": {\"kernel_image_path\": \"/proc/self/exe\"}, \"mmds-config\": {\"network_interfaces\": "
              "[\"eth0\"]}}");
    CHECK(vm_spec_document(&s, j, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "does not correspond to any existing network interface"), "%s", err);
    json_decref(j);
    vm_spec_free(&s);
}

/* boot-source's extension fields for multiboot kernels: --module's and --exit-device's words,
 * into the machine and back out of GET /vm/config as they came. */
TEST(multiboot_modules_and_exit_device_become_the_machines_and_read_back) {
    struct vm_spec s, t;
    vm_spec_init(&s), vm_spec_init(&t);
    char err[300] = "";
    json_t *j = parse("{\"kernel_image_path\": \"/proc/self/exe\", \"boot_args\": \"exit=0\","
                      " \"bellhop_modules\": [{\"path\": \"/proc/self/exe\"},"
                      "                       {\"path\": \"/proc/self/exe\", \"args\": \"x=1 y=2\"},"
                      "                       {\"path\": \"/proc/self/exe\", \"args\": null}],"
                      " \"bellhop_exit_device\": \"qemu\"}");
    CHECK_MSG(vm_spec_boot_source(&s, j, err, sizeof err) == 0, "%s", err);
    json_decref(j);
    struct machine_config cfg = {0};
    CHECK_MSG(vm_spec_to_machine(&s, &cfg, err, sizeof err) == 0, "%s", err);
    CHECK_EQ(cfg.nmodules, 3);
    CHECK(strcmp(cfg.modules[0].path, "/proc/self/exe") == 0 && !cfg.modules[0].args);
    CHECK(cfg.modules[1].args && strcmp(cfg.modules[1].args, "x=1 y=2") == 0 && !cfg.modules[2].args);
    CHECK(cfg.exit_qemu);
    json_t *back = vm_spec_to_json(&s);
    json_t *boot = json_object_get(back, "boot-source");
    CHECK(json_array_size(json_object_get(boot, "bellhop_modules")) == 3);
    CHECK(strcmp(json_string_value(json_object_get(boot, "bellhop_exit_device")), "qemu") == 0);
    CHECK_MSG(vm_spec_document(&t, back, err, sizeof err) == 0, "%s", err); /* the document reads back */
    CHECK(t.nmodules == 3 && t.exit_qemu && strcmp(t.modules[1].args, "x=1 y=2") == 0);
    json_decref(back);
    /* a boot-source without them leaves none: a PUT replaces the whole resource */
    j = parse("{\"kernel_image_path\": \"/proc/self/exe\"}");
    CHECK(vm_spec_boot_source(&s, j, err, sizeof err) == 0 && s.nmodules == 0 && !s.exit_qemu);
    json_decref(j);
    back = vm_spec_to_json(&s);
    boot = json_object_get(back, "boot-source");
    CHECK(!json_object_get(boot, "bellhop_modules") && !json_object_get(boot, "bellhop_exit_device"));
    json_decref(back);
    vm_spec_free(&s), vm_spec_free(&t);
}

TEST(bad_multiboot_fields_are_refused_and_change_nothing) {
    struct vm_spec s;
    vm_spec_init(&s);
    char err[300] = "";
    json_t *j = parse("{\"kernel_image_path\": \"/proc/self/exe\", \"bellhop_modules\": [{\"path\": \"/proc/self/exe\"}],"
                      " \"bellhop_exit_device\": \"qemu\"}");
    CHECK(vm_spec_boot_source(&s, j, err, sizeof err) == 0);
    json_decref(j);
#define BOOT(x) "{\"kernel_image_path\": \"/proc/self/exe\", " x "}"
    refused(&s, vm_spec_boot_source, BOOT("\"bellhop_exit_device\": \"isa\""), "bellhop_exit_device isa: qemu or bellhop");
    refused(&s, vm_spec_boot_source, BOOT("\"bellhop_exit_device\": 1"), "bellhop_exit_device");
    refused(&s, vm_spec_boot_source, BOOT("\"bellhop_modules\": {\"path\": \"/proc/self/exe\"}"), "expected an array");
    refused(&s, vm_spec_boot_source, BOOT("\"bellhop_modules\": [{\"path\": \"/nonexistent/m\"}]"),
            "module /nonexistent/m: No such file");
    refused(&s, vm_spec_boot_source, BOOT("\"bellhop_modules\": [{\"path\": \"/proc\"}]"), "not a regular file");
    refused(&s, vm_spec_boot_source, BOOT("\"bellhop_modules\": [{\"path\": \"\"}]"), "module 0: empty path");
    refused(&s, vm_spec_boot_source, BOOT("\"bellhop_modules\": [{\"path\": \"/proc/self/exe\", \"arg\": \"x\"}]"),
            "unknown field `arg`");
    refused(&s, vm_spec_boot_source, BOOT("\"bellhop_modules\": [{\"args\": \"x\"}]"), "path");
    refused(&s, vm_spec_boot_source, BOOT("\"bellhop_modules\": [{\"path\": \"/proc/self/exe\", \"args\": 5}]"), "args");
    char many[4096] = BOOT("\"bellhop_modules\": [");
    many[strlen(many) - 1] = 0; /* the closing brace comes last */
    for (int i = 0; i <= MACHINE_MAX_MODULES; i++) strcat(many, i ? ", {\"path\": \"/proc/self/exe\"}" : "{\"path\": \"/proc/self/exe\"}");
    strcat(many, "]}");
    refused(&s, vm_spec_boot_source, many, "at most 16 modules");
#undef BOOT
    CHECK(s.nmodules == 1 && s.exit_qemu); /* as the first PUT left it */
    vm_spec_free(&s);
}
