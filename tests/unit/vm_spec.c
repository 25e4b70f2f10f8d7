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
    CHECK(cfg.devices[3].ops == virtio_device_find("virtio-rng") && !cfg.devices[3].params);
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
    CHECK_MSG(strstr(err, "already the root device"), "%s", err);
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
