#!/bin/sh
# Firecracker's own API assertions (its tests/integration_tests/functional/test_api.py), made
# against bellhop through curl: one test per test function of Firecracker's, for every endpoint
# bellhop serves, each request judged as Firecracker's client judges it (204, or 200 for a GET,
# is taken; anything else must be a 400 with a {"fault_message"} matching the test's regex), GET
# bodies compared field by field as the Python test compares them, each body in the bytes
# Python's json.dumps writes (serde's "at line 1 column 21" counts them). A test Firecracker
# runs for each io_engine runs here for Sync, then Async. Then docs/api.md's table of
# every Firecracker endpoint (the Makefile builds it into this script) is checked row by row
# against a VMM before start and a running one. POSIX sh (busybox inside the nested KVM host).
#
# Not implemented in bellhop (those assertions are not made):
# - MMDS: test_api_mmds_config, test_map_private_seccomp_regression, the PUT /mmds/config of
#   test_api_put_update_post_boot, test_get_full_config and its snapshot twin.
# - pmem: test_pmem_api, test_pmem_rate_limiter_api, the pmem parts of
#   test_rate_limiters_api_config, test_api_patch_pre_boot, test_get_full_config and its twin.
# - memory hotplug: test_api_memory_hotplug, and the memory-hotplug part of the full configs.
# - cpu-config and CPU templates other than None: test_api_cpu_config, cpu_template "C3" in
#   test_api_put_update_pre_boot (and its GET check); the static template that
#   test_api_machine_config and test_get_full_config_after_restoring_snapshot set is what they
#   set on a CPU without one ("None", and none); the "cpu-config" key of GET /vm/config.
# - more than four network interfaces (docs/api.md); test_rate_limiters_api_config PUTs each of
#   its three interfaces to a fresh VMM.
# - free page hinting, an interface's mtu, huge pages other than None, serial: no test here sets
#   them (the null and false values GET shows are compared as they come).
#
# Answered differently, and why:
# - The kernel is the tiny guest with boot_args "wait": the requests after InstanceStart need a
#   guest that runs on, where Firecracker's default arguments would have it run its self-tests
#   and end. test_get_full_config's boot_args "" is "wait" in its expected configuration too.
# - test_api_happy_start: "Kernel loaded using PVH boot protocol" is Firecracker's log line;
#   bellhop's sign of a boot is the tiny guest's own "guest: waiting", which is awaited instead.
# - test_api_machine_config: mem_size_mib (1<<64)-1 under an RLIMIT_AS is taken by Firecracker's
#   PATCH and refused at InstanceStart (mmap's ENOMEM); bellhop checks the range as the field is
#   set (and jansson's integers are signed 64-bit), so the PATCH itself is asserted refused and
#   that start is not tried.
# - test_api_version: firecracker_version is bellhop's version, so the test compares it with
#   `bellhop --version` (and checks it is semver) where Firecracker compares its Cargo.toml's.
# - test_net_api_put_update_pre_boot: a PUT that Firecracker refuses for a taken tap name removes
#   the interface it would have replaced (its builder drops the old device first), so its MAC is
#   free again; a refusal in bellhop changes nothing, so that MAC stays taken.
# - test_net_api_put_update_pre_boot's second MAC 07:00:00:00:00:01 is a multicast address,
#   which bellhop refuses as a NIC's own (tests/kvm/api.sh asserts that): 0a:00:00:00:00:01 here.
# - A drive PUT without io_engine reads back io_engine null (bellhop's default picks io_uring or
#   not by the file's file system, docs/api.md) where Firecracker writes "Sync": the expected
#   configuration of test_get_full_config_after_restoring_snapshot says null.
# - test_negative_snapshot_load_api: Firecracker exits after a load of files that do not exist
#   (mark_killed); bellhop answers the 400 and serves on, so that end is not asserted.
# - Firecracker's paths are inside its jail; here each VMM runs in a directory of its own, where
#   its relative paths (vsock.sock, foo.bar) resolve.
# - test_send_ctrl_alt_del needs a Linux guest (i8042 driver, ssh): tests/kvm/linux_guest.sh's
#   send_ctrl_alt_del_shuts_it_down covers it. test_drive_patch's vhost-user drive needs
#   qemu-storage-daemon; without it that drive's assertions are left out, and the PASS says so.
# - Tests that boot with a network interface get a tap in a network namespace of their own (as
#   root, with `ip`); otherwise they boot without the interface and their PASS line says so.
# - pytest's match is re.search over str(RuntimeError(msg, json, response)), where the message
#   is followed by its closing quote: a regex ending in "." ("... column 21.") matches a message
#   that ends at "21". The regexes here are ERE, matched against the message and that quote.
suite=api_firecracker
tests="test_api_happy_start test_drive_io_engine test_api_put_update_pre_boot test_net_api_put_update_pre_boot
       test_api_machine_config test_negative_machine_config_api test_api_put_update_post_boot
       test_rate_limiters_api_config test_api_patch_pre_boot test_negative_api_patch_post_boot test_drive_patch
       test_api_version test_api_vsock test_api_entropy test_api_balloon test_get_full_config
       test_get_full_config_after_restoring_snapshot test_negative_snapshot_load_api the_docs_table_is_true"
@KVM_TEST_SH@
qsd=$(tool qemu-storage-daemon)
[ -n "$curl" ] || skip_all "no curl"
dir=$(mktemp -d /tmp/bellhop-fcapi.XXXXXX)
req_head=$dir/head # (each answer's head, for has_header)
NOT_BEFORE='The requested operation is not supported before starting the microVM.'
NOT_AFTER='The requested operation is not supported after starting the microVM'
tab=$(printf '\t')
pid= qpid= ns= in_ns= nv=0
cleanup() {
    [ -n "$pid" ] && kill -9 $pid 2>/dev/null
    [ -n "$qpid" ] && kill -9 $qpid 2>/dev/null
    [ -n "$ns" ] && $ipcmd netns del $ns 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# The taps for the tests that boot with a network interface: fctap0..3 in a namespace of ours,
# removed at the end with everything in it (no interface of the machine itself is touched).
ipcmd=$(tool ip) # iproute2
net_reason="not root"
if [ "$(id -u)" = 0 ]; then
    net_reason="no ip command"
    if [ -n "$ipcmd" ]; then
        net_reason="ip netns or ip tuntap failed"
        mkdir -p /run/netns 2>/dev/null # iproute2 keeps its namespaces there (absent in the nested host)
        if $ipcmd netns add bellhop-fcapi-$$ 2>/dev/null; then
            ns=bellhop-fcapi-$$ in_ns="$ipcmd netns exec bellhop-fcapi-$$" net_reason=
            for n in 0 1 2 3; do $in_ns $ipcmd tuntap add dev fctap$n mode tap 2>/dev/null || net_reason="ip tuntap failed"; done
            [ -z "$net_reason" ] || { $ipcmd netns del $ns; ns= in_ns=; }
        fi
    fi
fi

mkimg() { dd if=/dev/zero of=$dir/$1 bs=1024 count=1024 2>/dev/null; echo $dir/$1; }
rootfs=$(mkimg rootfs.ext4)

# ---- a VMM, requests and their answers ----

stop() { [ -n "$pid" ] && kill -TERM $pid 2>/dev/null && wait $pid 2>/dev/null; pid=; }
# vmm: a fresh bellhop (the last one stopped) on $sock, its output in $out, its working directory
# $vdir of its own; in the taps' namespace when there is one
vmm() {
    stop
    nv=$((nv + 1)) vdir=$dir/v$nv
    mkdir -p $vdir
    sock=$vdir/api.sock out=$vdir/out
    (cd $vdir && exec $in_ns $bellhop run --api-sock $sock > $out 2>&1 < /dev/null) &
    pid=$!
    wait_sock $sock
    [ -S $sock ] || problem "bellhop did not serve on its socket: $(tail -3 $out | tr '\n' '|')"
}
alive() { [ -n "$pid" ] && kill -0 $pid 2>/dev/null && [ -S $sock ]; }
# JSON on stdin as one line per leaf, "PATH<tab>VALUE": PATH .a.b[0].c, VALUE the JSON text of a
# string, number, true, false, null, {} or []; a last line "!<tab>not JSON" when it was not.
json_flat() {
    awk '
    function ws() { while (p <= n && index(" \t\r\n", substr(s, p, 1)) > 0) p++ }
    function str(   st, c) {
        st = p; p++
        while (p <= n) {
            c = substr(s, p, 1)
            if (c == "\\") p += 2
            else if (c == "\"") { p++; return substr(s, st, p - st) }
            else p++
        }
        bad = 1; return ""
    }
    function val(path,   c, cl, k, i, st) {
        if (bad) return
        ws(); c = substr(s, p, 1)
        if (c == "{" || c == "[") {
            cl = c == "{" ? "}" : "]"
            p++; ws()
            if (substr(s, p, 1) == cl) { p++; print path "\t" c cl; return }
            for (i = 0; !bad; i++) {
                ws()
                if (c == "{") {
                    if (substr(s, p, 1) != "\"") { bad = 1; return }
                    k = str(); ws()
                    if (substr(s, p, 1) != ":") { bad = 1; return }
                    p++; val(path "." substr(k, 2, length(k) - 2))
                } else val(path "[" i "]")
                ws(); k = substr(s, p, 1); p++
                if (k == cl) return
                if (k != ",") { bad = 1; return }
            }
            return
        }
        if (c == "\"") { k = str(); if (!bad) print path "\t" k; return }
        st = p
        while (p <= n && index(",}] \t\r\n", substr(s, p, 1)) == 0) p++
        if (p == st) { bad = 1; return }
        print path "\t" substr(s, st, p - st)
    }
    { s = s $0 "\n" }
    END { n = length(s); p = 1; val(""); ws(); if (bad || p <= n) print "!\tnot JSON" }'
}
# jval PATH: the JSON text at PATH in $body (empty when there is none)
jval() { printf '%s' "$body" | json_flat | awk -F'\t' -v p="$1" '$1 == p { print $2; exit }'; }
# the fault_message of $body, unquoted (empty when there is none)
fault_message() {
    jval .fault_message | sed -e 's/^"//' -e 's/"$//' -e 's/\\"/"/g' -e 's/\\\//\//g' -e 's/\\\\/\\/g'
}

# ---- assertions: each test gathers what went wrong in $errs ----

begin() { t=$1 errs= notes= ctx=; }
problem() { errs="$errs${errs:+; }$ctx$*"; } # ctx: which round of a test, if it has several
note() { case "; $notes; " in *"; $*; "*) ;; *) notes="$notes${notes:+; }$*" ;; esac; }
end() { if [ -n "$errs" ]; then fail $t "$errs"; else pass $t "${notes:+($notes)}"; fi; }
# ok METHOD PATH [BODY]: taken as Firecracker's client takes it, 204 (200 for a GET)
ok() {
    req $sock "$@"
    want=204; [ "$1" = GET ] && want=200
    [ "$code" = $want ] || problem "$1 $2${3:+ $3} -> $code${body:+ $body} (wanted $want)"
}
# refused REGEX METHOD PATH [BODY]: a 400 with a fault_message that REGEX matches (any, when empty)
refused() {
    re=$1; shift
    req $sock "$@"
    msg=$(fault_message)
    if [ "$code" != 400 ] || [ -z "$msg" ]; then
        problem "$1 $2${3:+ $3} -> $code${body:+ $body} (wanted 400 with a fault_message${re:+ matching /$re/})"
    elif [ -n "$re" ] && ! printf "%s'\n" "$msg" | grep -qE -- "$re"; then
        problem "$1 $2${3:+ $3} -> '$msg', not matching /$re/"
    fi
}
# jeq PATH VALUE: $body has the JSON VALUE at PATH
jeq() { v=$(jval "$1"); [ "$v" = "$2" ] || problem "$rq: $1 is ${v:-absent}, not $2"; }
# get PATH: a GET that must answer 200, then jeq on its body
get() { rq="GET $1"; ok GET "$1"; }
# same_json WHAT FLAG ERE EXPECTED: $body is EXPECTED, leaf by leaf, of the leaves whose line
# grep FLAG -E ERE keeps (FLAG -v: all but those)
same_json() {
    [ -n "$body" ] || { problem "$1: no answer"; return; }
    printf '%s' "$body" | json_flat | grep $2 -E -e "$3" | sort > $dir/got
    printf '%s' "$4" | json_flat | grep $2 -E -e "$3" | sort > $dir/want
    d=$(awk 'NR == FNR { want[$0] = 1; next } { if ($0 in want) delete want[$0]; else print "got " $0 }
             END { for (l in want) print "wanted " l }' $dir/want $dir/got | tr '\t' '=' | sort | tr '\n' ' ')
    [ -z "$d" ] || problem "$1 differs: $d"
}
has_header() { tr -d '\r' < $dir/head | grep -qiE "^$1: *[^ ]"; }

# Firecracker's microvm.basic_config: 2 vCPUs, 256 MiB, the kernel, a root drive (its rootfs is
# a read-only squashfs); ROOT_ENGINE: the root drive's io_engine, if any
basic_config() { # [no-root | ROOT_ENGINE]
    ok PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "track_dirty_pages": false, "huge_pages": "None"}'
    ok PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "wait"}'
    root_engine=
    case "${1:-}" in
        no-root) return ;;
        ?*) root_engine=', "io_engine": "'$1'"' ;;
    esac
    ok PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$rootfs'", "is_root_device": true, "is_read_only": true'"$root_engine"'}'
}
start() {
    ok PUT /actions '{"action_type": "InstanceStart"}'
    [ "$code" = 204 ] && ! wait_for $out "guest: waiting" 30 && problem "no guest after InstanceStart: $(tail -3 $out | tr '\n' '|')"
}
# add_net_iface ID TAP [MAC]: an interface whose tap exists only with a namespace: without, the
# interface is left out (and noted) when the test boots
add_net_iface() {
    if [ -n "$ns" ]; then
        ok PUT /network-interfaces/$1 '{"iface_id": "'$1'", "host_dev_name": "'$2'", "guest_mac": "'${3:-06:00:00:00:00:01}'"}'
    else
        note "booted without its network interface: $net_reason"
    fi
}

# ---- Firecracker's tests ----

test_api_happy_start() {
    begin test_api_happy_start
    vmm; basic_config; start
    end
}

test_drive_io_engine() {
    begin test_drive_io_engine
    for engine in Sync Async; do
        ctx="io_engine $engine: "
        vmm; basic_config no-root
        add_net_iface eth0 fctap0 06:00:c0:a8:00:02
        ok PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$rootfs'", "is_root_device": true, "is_read_only": true, "io_engine": "'$engine'"}'
        start
        get /vm/config; jeq '.drives[0].io_engine' '"'$engine'"'
    done
    end
}

test_api_put_update_pre_boot() {
    begin test_api_put_update_pre_boot
    fs1=$(mkimg scratch.ext4) fs2=$(mkimg otherscratch.ext4)
    for engine in Sync Async; do
        ctx="io_engine $engine: "
        vmm; basic_config
        ok PUT /drives/scratch '{"drive_id": "scratch", "path_on_host": "'$fs1'", "is_root_device": false, "is_read_only": false, "io_engine": "'$engine'"}'
        refused 'The kernel file cannot be opened: No such file or directory \(os error 2\)' \
            PUT /boot-source '{"kernel_image_path": "foo.bar"}'
        ok PUT /boot-source '{"kernel_image_path": "'$guest'"}'
        refused 'No such file or directory' \
            PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "foo.bar", "is_read_only": true, "is_root_device": true, "io_engine": "'$engine'"}'
        refused 'A root block device already exists' \
            PUT /drives/scratch '{"drive_id": "scratch", "path_on_host": "'$fs1'", "is_read_only": false, "is_root_device": true, "io_engine": "'$engine'"}'
        ok PUT /drives/scratch '{"drive_id": "scratch", "path_on_host": "'$fs2'", "is_read_only": true, "is_root_device": false, "io_engine": "'$engine'"}'
        ok PUT /machine-config '{"vcpu_count": 4, "smt": true, "mem_size_mib": 256, "track_dirty_pages": true}'
        get /machine-config
        jeq .vcpu_count 4; jeq .smt true; jeq .mem_size_mib 256; jeq .track_dirty_pages true
    done
    end
}

test_net_api_put_update_pre_boot() {
    begin test_net_api_put_update_pre_boot
    vmm
    ok PUT /network-interfaces/1 '{"iface_id": "1", "guest_mac": "06:00:00:00:00:01", "host_dev_name": "fctap1"}'
    first=$errs
    ok PUT /network-interfaces/2 '{"iface_id": "2", "guest_mac": "0a:00:00:00:00:01", "host_dev_name": "fctap2"}'
    [ -z "$first" ] || problem "PUT /network-interfaces/1 refused"
    refused 'The MAC address is already in use: 06:00:00:00:00:01' \
        PUT /network-interfaces/2 '{"iface_id": "2", "host_dev_name": "fctap2", "guest_mac": "06:00:00:00:00:01"}'
    ok PUT /network-interfaces/2 '{"iface_id": "2", "host_dev_name": "fctap2", "guest_mac": "08:00:00:00:00:01"}'
    refused 'Could not create the network device' \
        PUT /network-interfaces/1 '{"iface_id": "1", "host_dev_name": "fctap2", "guest_mac": "06:00:00:00:00:01"}'
    # Firecracker's failed update of interface 1 has removed it, freeing its MAC for interface 3;
    # bellhop's refusal changes nothing, so interface 1 keeps it (see the top of this file)
    refused 'The MAC address is already in use: 06:00:00:00:00:01' \
        PUT /network-interfaces/3 '{"iface_id": "3", "host_dev_name": "fctap3", "guest_mac": "06:00:00:00:00:01"}'
    ok PUT /network-interfaces/3 '{"iface_id": "3", "host_dev_name": "fctap3", "guest_mac": "06:00:00:00:00:03"}'
    end
}

test_api_machine_config() {
    begin test_api_machine_config
    vmm
    refused '' PUT /machine-config '{"vcpu_count": "-2"}'
    refused '' PUT /machine-config '{"smt": "random_string"}'
    refused '' PUT /machine-config '{"cpu_template": "random_string"}'
    ok PATCH /machine-config '{"track_dirty_pages": true}'
    refused 'missing field `vcpu_count` at line 1 column 21.' PUT /machine-config '{"mem_size_mib": 128}'
    refused 'missing field `mem_size_mib` at line 1 column 17.' PUT /machine-config '{"vcpu_count": 2}'
    ok PUT /machine-config '{"mem_size_mib": 128, "vcpu_count": 1}'
    get /machine-config; jeq .smt false
    ok PATCH /machine-config '{"smt": true}'
    refused '' PUT /machine-config '{"mem_size_mib": "-2"}'
    refused 'error occurred when deserializing the json body of a request: invalid type' \
        PUT /machine-config '{"mem_size_mib": 18446744073709551616}'
    basic_config
    refused '' PATCH /machine-config '{"mem_size_mib": 18446744073709551615}' # Firecracker: at InstanceStart
    refused 'The memory size \(MiB\) is either 0, or not a multiple of the configured page size\.' \
        PATCH /machine-config '{"mem_size_mib": 0}'
    ok PATCH /machine-config '{"mem_size_mib": 256}'
    ok PATCH /machine-config '{"cpu_template": "None"}'
    start
    get /vm/config
    jeq '.machine-config.vcpu_count' 2; jeq '.machine-config.mem_size_mib' 256; jeq '.machine-config.smt' false
    end
}

test_negative_machine_config_api() {
    begin test_negative_machine_config_api
    vmm
    ok PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "cpu_template": "None"}'
    has_header deprecation || problem "PUT /machine-config with cpu_template: no Deprecation header"
    grep -qF "PUT /machine-config: cpu_template field is deprecated." $out || problem "PUT: no deprecation in the log"
    ok PATCH /machine-config '{"cpu_template": "None"}'
    grep -qF "PATCH /machine-config: cpu_template field is deprecated." $out || problem "PATCH: no deprecation in the log"
    end
}

test_api_put_update_post_boot() {
    begin test_api_put_update_post_boot
    vmm; basic_config
    add_net_iface 1 fctap1
    start
    refused "$NOT_AFTER" PUT /boot-source '{"kernel_image_path": "'$guest'"}'
    refused "$NOT_AFTER" PATCH /machine-config '{"vcpu_count": 4}'
    refused "$NOT_AFTER" PUT /machine-config '{"vcpu_count": 4, "mem_size_mib": 128}'
    end
}

test_rate_limiters_api_config() {
    begin test_rate_limiters_api_config
    bw='{"bandwidth": {"size": 1000000, "refill_time": 100}}'
    ops='{"ops": {"size": 1, "refill_time": 100}}'
    both='{"bandwidth": {"size": 1000000, "refill_time": 100}, "ops": {"size": 1, "refill_time": 100}}'
    for engine in Sync Async; do
        ctx="io_engine $engine: "
        vmm
        for d in bw:"$bw" ops:"$ops" bwops:"$both" nada:'{}'; do
            id=${d%%:*}
            ok PUT /drives/$id '{"drive_id": "'$id'", "path_on_host": "'$(mkimg $id.ext4)'", "is_read_only": false, "is_root_device": false, "rate_limiter": '"${d#*:}"', "io_engine": "'$engine'"}'
        done
        # one interface to a VMM (bellhop serves one)
        ok PUT /network-interfaces/1 '{"iface_id": "1", "guest_mac": "06:00:00:00:00:01", "host_dev_name": "fctap1", "tx_rate_limiter": '"$bw"'}'
        vmm
        ok PUT /network-interfaces/2 '{"iface_id": "2", "guest_mac": "06:00:00:00:00:02", "host_dev_name": "fctap2", "rx_rate_limiter": '"$bw"'}'
        vmm
        ok PUT /network-interfaces/3 '{"iface_id": "3", "guest_mac": "06:00:00:00:00:03", "host_dev_name": "fctap3", "rx_rate_limiter": '"$both"', "tx_rate_limiter": '"$both"'}'
        ok PUT /entropy '{"rate_limiter": '"$both"'}'
    done
    end
}

test_api_patch_pre_boot() {
    begin test_api_patch_pre_boot
    fs1=$(mkimg scratch.ext4)
    for engine in Sync Async; do
        ctx="io_engine $engine: "
        vmm; basic_config
        ok PUT /drives/scratch '{"drive_id": "scratch", "path_on_host": "'$fs1'", "is_root_device": false, "is_read_only": false, "io_engine": "'$engine'"}'
        ok PUT /network-interfaces/1 '{"iface_id": "1", "host_dev_name": "fctap1", "guest_mac": "06:00:00:00:00:01"}'
        refused 'Invalid request method' PATCH /boot-source '{"kernel_image_path": "otherfile"}'
        ok PATCH /machine-config '{"vcpu_count": 4}'
        get /machine-config; jeq .vcpu_count 4
        refused 'Invalid request method' PATCH /logger '{"level": "Error"}'
        refused "$NOT_BEFORE" PATCH /drives/scratch '{"drive_id": "scratch", "path_on_host": "foo.bar"}'
        refused "$NOT_BEFORE" PATCH /network-interfaces/1 '{"iface_id": "1"}'
    done
    end
}

test_negative_api_patch_post_boot() {
    begin test_negative_api_patch_post_boot
    fs1=$(mkimg scratch.ext4)
    for engine in Sync Async; do
        ctx="io_engine $engine: "
        vmm; basic_config
        ok PUT /drives/scratch '{"drive_id": "scratch", "path_on_host": "'$fs1'", "is_root_device": false, "is_read_only": false, "io_engine": "'$engine'"}'
        add_net_iface 1 fctap1
        start
        refused 'Invalid request method' PATCH /boot-source '{"kernel_image_path": "otherfile"}'
        refused "$NOT_AFTER" PATCH /machine-config '{"vcpu_count": 4}'
        refused 'Invalid request method' PATCH /logger '{"level": "Error"}'
    done
    end
}

# qemu-storage-daemon exporting IMG as vhost-user-blk on SOCKET, its pid in $qpid
vhost_user_backend() { # IMG SOCKET
    $qsd --blockdev driver=file,node-name=file0,filename=$1 --blockdev driver=raw,node-name=disk0,file=file0 \
        --export type=vhost-user-blk,id=exp0,addr.type=unix,addr.path=$2,node-name=disk0,writable=on \
        > $dir/qsd.out 2>&1 &
    qpid=$!
    wait_sock $2
}

test_drive_patch() {
    begin test_drive_patch
    fs=$(mkimg scratch.ext4) fs_new=$(mkimg scratch_new.ext4) fs_vub=$(mkimg scratch_vub.ext4)
    limits='{"bandwidth": {"size": 1000000, "refill_time": 100}, "ops": {"size": 1, "refill_time": 100}}'
    [ -n "$qsd" ] || note "without its vhost-user drive: no qemu-storage-daemon"
    for engine in Sync Async; do
        ctx="io_engine $engine: "
        vmm; basic_config Sync
        ok PUT /drives/scratch '{"drive_id": "scratch", "path_on_host": "'$fs'", "is_root_device": false, "is_read_only": false, "io_engine": "'$engine'"}'
        vub=
        if [ -n "$qsd" ]; then
            vub=$vdir/scratch_vub.sock
            vhost_user_backend $fs_vub $vub
            ok PUT /drives/scratch_vub '{"drive_id": "scratch_vub", "socket": "'$vub'", "is_root_device": false}'
        fi
        refused "$NOT_BEFORE" PATCH /drives/scratch '{"drive_id": "scratch", "path_on_host": "foo.bar"}'
        start
        refused 'Running method expected different backend.' PATCH /drives/scratch '{"drive_id": "scratch"}'
        if [ -n "$vub" ]; then
            refused 'Running method expected different backend.' \
                PATCH /drives/scratch_vub '{"drive_id": "scratch_vub", "path_on_host": "some_path"}'
            refused 'Running method expected different backend.' \
                PATCH /drives/scratch_vub '{"drive_id": "scratch_vub", "rate_limiter": '"$limits"'}'
        fi
        refused 'unknown field `is_read_only`' PATCH /drives/scratch '{"drive_id": "scratch", "path_on_host": "foo.bar", "is_read_only": true}'
        refused 'unknown field `io_engine`' PATCH /drives/scratch '{"drive_id": "scratch", "path_on_host": "foo.bar", "io_engine": "Sync"}'
        refused 'unknown field `is_root_device`' PATCH /drives/scratch '{"drive_id": "scratch", "path_on_host": "foo.bar", "is_root_device": false}'
        refused 'Error manipulating the backing file: No such file or directory \(os error 2\) foo\.bar' \
            PATCH /drives/scratch '{"drive_id": "scratch", "path_on_host": "foo.bar"}'
        ok PATCH /drives/scratch '{"drive_id": "scratch", "path_on_host": "'$fs_new'"}'
        ok PATCH /drives/scratch '{"drive_id": "scratch", "path_on_host": "'$fs_new'", "rate_limiter": '"$limits"'}'
        ok PATCH /drives/scratch '{"drive_id": "scratch", "rate_limiter": {"bandwidth": {"size": 5000, "refill_time": 100}, "ops": {"size": 500, "refill_time": 100}}}'
        refused 'No such file or directory' PATCH /drives/scratch '{"drive_id": "scratch", "path_on_host": "foo.bar", "rate_limiter": {"bandwidth": {"size": 5000, "refill_time": 100}, "ops": {"size": 500, "refill_time": 100}}}'
        vub_json=
        [ -n "$vub" ] && vub_json=', {"drive_id": "scratch_vub", "partuuid": null, "is_root_device": false, "cache_type": "Unsafe",
            "is_read_only": null, "path_on_host": null, "rate_limiter": null, "io_engine": null, "socket": "'$vub'"}'
        get /vm/config
        same_json "GET /vm/config's drives" "" '^\.drives' '{"drives": [
            {"drive_id": "rootfs", "partuuid": null, "is_root_device": true, "cache_type": "Unsafe", "is_read_only": true,
             "path_on_host": "'$rootfs'", "rate_limiter": null, "io_engine": "Sync", "socket": null},
            {"drive_id": "scratch", "partuuid": null, "is_root_device": false, "cache_type": "Unsafe", "is_read_only": false,
             "path_on_host": "'$fs_new'",
             "rate_limiter": {"bandwidth": {"size": 5000, "one_time_burst": null, "refill_time": 100},
                              "ops": {"size": 500, "one_time_burst": null, "refill_time": 100}},
             "io_engine": "'$engine'", "socket": null}'"$vub_json"']}'
        stop
        [ -n "$qpid" ] && kill $qpid 2>/dev/null && wait $qpid 2>/dev/null
        qpid=
    done
    end
}

test_api_version() {
    begin test_api_version
    vmm; basic_config
    get /version
    pre=$body pre_v=$(jval .firecracker_version)
    start
    get /version
    [ "$body" = "$pre" ] || problem "GET /version: $pre before start, $body after"
    binary_v=$($bellhop --version | cut -d' ' -f2)
    case "$pre_v" in
        \"*\") pre_v=${pre_v#\"} pre_v=${pre_v%\"}
              printf '%s\n' "$pre_v" | grep -qE '^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$' ||
                  problem "firecracker_version $pre_v: not semver"
              [ "$pre_v" = "$binary_v" ] || problem "firecracker_version $pre_v, bellhop --version $binary_v" ;;
        *) problem "GET /version before start: no firecracker_version string in $pre" ;;
    esac
    end
}

test_api_vsock() {
    begin test_api_vsock
    vmm; basic_config
    ok PUT /vsock '{"guest_cid": 15, "uds_path": "vsock.sock"}'
    ok PUT /vsock '{"guest_cid": 166, "uds_path": "vsock.sock"}'
    ok PUT /vsock '{"vsock_id": "vsock1", "guest_cid": 15, "uds_path": "vsock.sock"}'
    has_header deprecation || problem "PUT /vsock with vsock_id: no Deprecation header"
    ok PUT /vsock '{"vsock_id": "vsock1", "guest_cid": 166, "uds_path": "vsock.sock"}'
    has_header deprecation || problem "PUT /vsock with vsock_id again: no Deprecation header"
    start
    refused '' PUT /vsock '{"guest_cid": 17, "uds_path": "vsock.sock"}'
    end
}

test_api_entropy() {
    begin test_api_entropy
    vmm; basic_config
    ok PUT /entropy '{}'
    ok PUT /entropy '{}'
    start
    refused '' PUT /entropy '{}'
    end
}

test_api_balloon() {
    begin test_api_balloon
    vmm; basic_config
    refused '' PATCH /balloon '{"amount_mib": 0}'
    ok PUT /balloon '{"amount_mib": 1, "deflate_on_oom": true}'
    ok PUT /balloon '{"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 5}'
    get /balloon; jeq .amount_mib 0; jeq .deflate_on_oom false; jeq .stats_polling_interval_s 5
    refused '' PATCH /balloon '{"amount_mib": 2}'
    refused '' PUT /balloon '{"amount_mib": 1024, "deflate_on_oom": false, "stats_polling_interval_s": 5}'
    add_net_iface eth0 fctap0 06:00:c0:a8:00:02
    start
    ok PATCH /balloon '{"amount_mib": 4}'
    refused '' PATCH /balloon '{"amount_mib": 300}'
    ok PATCH /balloon/statistics '{"stats_polling_interval_s": 5}'
    get /balloon; jeq .amount_mib 4; jeq .deflate_on_oom false; jeq .stats_polling_interval_s 5
    refused '' PATCH /balloon '{"amount_mib": 33554432}'
    end
}

# test_get_full_config's VM; NET: with its network interface
full_config() { # NET
    vmm
    ok PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "track_dirty_pages": false, "huge_pages": "None"}'
    ok PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "wait"}'
    ok PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$rootfs'", "is_root_device": true, "is_read_only": true, "io_engine": "Sync"}'
    ok PUT /balloon '{"amount_mib": 1, "deflate_on_oom": true}'
    ok PUT /vsock '{"guest_cid": 15, "uds_path": "vsock.sock"}'
    [ "$1" = yes ] &&
        ok PUT /network-interfaces/1 '{"iface_id": "1", "guest_mac": "06:00:00:00:00:01", "host_dev_name": "fctap1", "tx_rate_limiter": '"$tx_rl"'}'
}
full_config_expected() { # NET
    nets='[]'
    [ "$1" = yes ] && nets='[{"iface_id": "1", "host_dev_name": "fctap1", "guest_mac": "06:00:00:00:00:01", "mtu": null,
                              "rx_rate_limiter": null, "tx_rate_limiter": '"$tx_rl"'}]'
    echo '{"machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": false, "track_dirty_pages": false, "huge_pages": "None"},
           "boot-source": {"boot_args": "wait", "kernel_image_path": "'$guest'", "initrd_path": null},
           "drives": [{"drive_id": "rootfs", "partuuid": null, "is_root_device": true, "cache_type": "Unsafe",
                       "is_read_only": true, "path_on_host": "'$rootfs'", "rate_limiter": null, "io_engine": "Sync", "socket": null}],
           "balloon": {"amount_mib": 1, "deflate_on_oom": true, "stats_polling_interval_s": 0,
                       "free_page_reporting": false, "free_page_hinting": false},
           "vsock": {"guest_cid": 15, "uds_path": "vsock.sock"},
           "network-interfaces": '"$nets"',
           "logger": null, "metrics": null, "entropy": null}'
}
not_bellhops='^\.(cpu-config|pmem|memory-hotplug|mmds-config)([.[]|	)'
tx_rl='{"bandwidth": {"size": 1000000, "refill_time": 100, "one_time_burst": null}, "ops": null}'

test_get_full_config() {
    begin test_get_full_config
    full_config yes
    get /vm/config; same_json "GET /vm/config before start" -v "$not_bellhops" "$(full_config_expected yes)"
    if [ -z "$ns" ]; then # the same VM without its interface, to boot
        note "booted without its network interface: $net_reason"
        full_config no
    fi
    net=yes; [ -n "$ns" ] || net=no
    start
    get /vm/config; same_json "GET /vm/config after start" -v "$not_bellhops" "$(full_config_expected $net)"
    end
}

test_get_full_config_after_restoring_snapshot() {
    begin test_get_full_config_after_restoring_snapshot
    vmm
    ok PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "track_dirty_pages": false, "huge_pages": "None"}'
    ok PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "wait"}'
    ok PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$rootfs'", "is_root_device": true, "is_read_only": true}'
    nets='[]'
    if [ -n "$ns" ]; then
        ok PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "fctap0", "guest_mac": "06:00:c0:a8:00:02"}'
        nets='[{"guest_mac": "06:00:c0:a8:00:02", "iface_id": "eth0", "host_dev_name": "fctap0", "mtu": null,
                "rx_rate_limiter": null, "tx_rate_limiter": '"$tx_rl"'}]'
    else
        note "without its network interface: $net_reason"
    fi
    ok PATCH /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "smt": true, "track_dirty_pages": false, "huge_pages": "None"}'
    ok PUT /balloon '{"amount_mib": 1, "deflate_on_oom": true}'
    ok PUT /vsock '{"guest_cid": 15, "uds_path": "vsock.sock"}'
    start
    [ -n "$ns" ] && ok PATCH /network-interfaces/eth0 '{"iface_id": "eth0", "tx_rate_limiter": '"$tx_rl"'}'
    ok PATCH /vm '{"state": "Paused"}'
    ok PUT /snapshot/create '{"mem_file_path": "mem", "snapshot_path": "vmstate", "snapshot_type": "Full"}'
    snap=$vdir
    vmm # the first one stopped: its tap is free for the restored VM
    ok PUT /snapshot/load '{"mem_backend": {"backend_type": "File", "backend_path": "'$snap/mem'"}, "snapshot_path": "'$snap/vmstate'", "enable_diff_snapshots": false, "resume_vm": true}'
    get /vm/config
    same_json "GET /vm/config after restore" -v "$not_bellhops" \
        '{"machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": true, "track_dirty_pages": false, "huge_pages": "None"},
          "drives": [{"drive_id": "rootfs", "partuuid": null, "is_root_device": true, "cache_type": "Unsafe",
                      "is_read_only": true, "path_on_host": "'$rootfs'", "rate_limiter": null, "io_engine": null, "socket": null}],
          "balloon": {"amount_mib": 1, "deflate_on_oom": true, "stats_polling_interval_s": 0,
                      "free_page_reporting": false, "free_page_hinting": false},
          "vsock": {"guest_cid": 15, "uds_path": "vsock.sock"},
          "logger": null, "metrics": null, "network-interfaces": '"$nets"',
          "boot-source": {"kernel_image_path": "'$guest'", "initrd_path": null, "boot_args": "wait"},
          "entropy": null}'
    stop
    rm -f $snap/mem # its guest's memory: the nested host's /tmp is in RAM
    end
}

test_negative_snapshot_load_api() {
    begin test_negative_snapshot_load_api
    vmm
    refused 'too many fields: either `mem_backend` or `mem_file_path` exclusively is required.' \
        PUT /snapshot/load '{"snapshot_path": "foo", "mem_backend": {"backend_type": "File", "backend_path": "bar"}, "mem_file_path": "bar"}'
    refused 'missing field `backend_type`' PUT /snapshot/load '{"snapshot_path": "foo", "mem_backend": {"backend_path": "bar"}}'
    refused 'missing field `backend_path`' PUT /snapshot/load '{"snapshot_path": "foo", "mem_backend": {"backend_type": "File"}}'
    refused 'unknown variant `foo`, expected `File` or `Uffd`' \
        PUT /snapshot/load '{"snapshot_path": "foo", "mem_backend": {"backend_type": "foo", "backend_path": "bar"}}'
    refused 'missing field `snapshot_path`' PUT /snapshot/load '{"mem_backend": {"backend_type": "File", "backend_path": "bar"}}'
    refused 'missing field: either `mem_backend` or `mem_file_path` is required' PUT /snapshot/load '{"snapshot_path": "foo"}'
    refused '' PUT /snapshot/load '{"snapshot_path": "foo", "mem_file_path": "bar"}'
    has_header deprecation || problem "PUT /snapshot/load with mem_file_path: no Deprecation header on its 400"
    end
}

# ---- docs/api.md's table of every Firecracker endpoint ----

# docs/api.md as it was at build time (the Makefile puts it in place of the line below)
api_md() {
    cat <<'API_MD_EOF'
@API_MD@
API_MD_EOF
}

# The rows of the section "## Every Firecracker endpoint": CHECK<tab>BEFORE<tab>RUNNING, the
# last three cells, the first of them as written (its code span's backquotes and all)
table_rows() {
    api_md | awk -F'|' '
        /^## / { in_section = ($0 ~ /^## Every Firecracker endpoint[ \t]*$/); next }
        !in_section || !/^[ \t]*\|/ { next }
        {
            line = $0; sub(/[ \t]+$/, "", line); if (line !~ /\|$/) line = line "|"
            $0 = line
            c = $(NF - 3); b = $(NF - 2); r = $(NF - 1)
            gsub(/^[ \t]+|[ \t]+$/, "", c); gsub(/^[ \t]+|[ \t]+$/, "", b); gsub(/^[ \t]+|[ \t]+$/, "", r)
            if (c == "check" || c ~ /^:?-+:?$/) next
            print c "\t" b "\t" r
        }'
}

# a row's request with its placeholders filled for the scratch directory D
fill() { # REQUEST D
    printf '%s\n' "$1" | awk -v d="$2" -v k="$guest" -v disk="$table_disk" \
        '{ gsub(/@DIR@/, d); gsub(/@KERNEL@/, k); gsub(/@DISK@/, disk); print }'
}

# table_vmm WHEN: a VMM with the boot source and the drive rootfs; running: also entropy, and what
# the rows checked while running (but a PUT, refused then whatever there is) need set before
# start (a balloon with statistics, the metrics file, their interfaces and drives), then started
table_vmm() {
    vmm
    mkdir -p $dir/$1
    req $sock PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "wait"}'; c1=$code
    req $sock PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "'$table_disk'", "is_root_device": true, "is_read_only": false}'
    [ "$c1$code" = 204204 ] || { table_bad="$table_bad; $1: the VMM's boot source and rootfs: $c1, $code $body"; return; }
    [ $1 = running ] || return 0
    req $sock PUT /entropy '{}'
    ntap=0
    while IFS="$tab" read -r check before running; do
        [ "$running" = - ] && continue
        r=$(printf '%s' "$check" | tr -d '`')
        case "$r" in PUT\ /actions*FlushMetrics*) req $sock PUT /metrics '{"metrics_path": "'$dir/running/metrics.json'"}' ;; esac
        case "$r" in PUT\ *) continue ;; esac
        path=${r#* }; path=${path%% *}
        case "$path" in
            /balloon*) [ -z "$balloon_set" ] &&
                req $sock PUT /balloon '{"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 1}'
                balloon_set=1 ;;
            /network-interfaces/?*) id=${path#/network-interfaces/}
                [ -n "$ns" ] && [ $ntap -le 3 ] &&
                    req $sock PUT /network-interfaces/$id '{"iface_id": "'$id'", "host_dev_name": "fctap'$ntap'"}'
                ntap=$((ntap + 1)) ;;
            /drives/rootfs) ;;
            /drives/?*) id=${path#/drives/}
                req $sock PUT /drives/$id '{"drive_id": "'$id'", "path_on_host": "'$table_disk'", "is_root_device": false, "is_read_only": false}' ;;
        esac
    done < $dir/rows
    balloon_set=
    req $sock PUT /actions '{"action_type": "InstanceStart"}'
    [ "$code" = 204 ] && wait_for $out "guest: waiting" 30 ||
        table_bad="$table_bad; running: the VMM did not start: $code $body $(tail -2 $out | tr '\n' '|')"
}

# every row in WHEN's state (before, running): mismatches gathered in $table_bad
table_pass() { # WHEN
    table_vmm $1
    n=0
    while IFS="$tab" read -r check before running; do
        n=$((n + 1))
        want=$before; [ $1 = running ] && want=$running
        case "$want" in
            -) continue ;;
            200|204|400) ;;
            *) table_bad="$table_bad; row $n ($check): $1: '$want' is not 200, 204, 400 or -"; continue ;;
        esac
        case "$check" in
            \`*\`) r=$(printf '%s' "$check" | tr -d '`') ;;
            *) table_bad="$table_bad; row $n: the check '$check' is not one request in a code span"; continue ;;
        esac
        if [ $1 = running ]; then
            case "$r" in
                PUT\ *) ;;
                *" /network-interfaces/"*) [ -n "$ns" ] || { table_unchecked="$table_unchecked $n"; continue; } ;;
            esac
        fi
        r=$(fill "$r" $dir/$1)
        method=${r%% *} rest=${r#* }
        path=${rest%% *}
        if [ "$rest" = "$path" ]; then req $sock "$method" "$path"; else req $sock "$method" "$path" "${rest#* }"; fi
        [ "$code" = "$want" ] || table_bad="$table_bad; \`$method $path\` $1: wanted $want, got $code $body"
        # the next rows need the state this pass is about: a fresh VMM when a row ended or started it
        if ! alive; then table_vmm $1
        elif [ $1 = before ] && [ "$code" = 204 ]; then
            case "$r" in "PUT /actions "*InstanceStart*|"PUT /snapshot/load "*) table_vmm before ;; esac
        fi
    done < $dir/rows
    stop
}

test_the_docs_table_is_true() {
    begin the_docs_table_is_true
    table_rows > $dir/rows
    if [ ! -s $dir/rows ]; then
        if api_md | grep -qx '@API_''MD@'; then
            problem "the table is missing: docs/api.md was not built in (run the Makefile's build/tests/kvm/api_firecracker)"
        else
            problem "the table is missing: docs/api.md has no rows under \"## Every Firecracker endpoint\""
        fi
        end; return
    fi
    table_disk=$(mkimg table.img)
    table_bad= table_unchecked=
    table_pass before
    table_pass running
    [ -z "$table_bad" ] || problem "${table_bad#; }"
    [ -z "$table_unchecked" ] || note "rows$table_unchecked not checked running: an interface needs a tap ($net_reason)"
    note "$(wc -l < $dir/rows | tr -d ' ') rows"
    end
}

for name in $tests; do
    case $name in
        the_docs_table_is_true) test_the_docs_table_is_true ;;
        *) $name ;;
    esac
    stop
done
exit $failed
