#!/bin/sh
# --net user (libslirp in bellhop-net, the process bellhop starts for it: net/user.h) with the tiny guest: its virtio-net
# self-test (guest/net.c, cmdline "dhcp") asks the gateway's MAC by ARP and gets 10.0.2.15 by
# DHCP, with restrict=on too; a host port forwarded is held, and a second VMM that asks for
# the same port is refused; bad options are refused in one line; the API's network-interfaces
# entry with bellhop_net and a config file do the same; and all of it needs no capability
# (what a user who is not root has: checked by dropping every one, root's /dev/kvm kept). Nothing leaves the host's loopback.
# POSIX sh (busybox inside the nested KVM host).
suite=user_net
tests="the_guest_gets_its_address_by_dhcp without_dhcp_the_device_still_passes dhcp_works_with_restrict_on
       a_forwarded_host_port_is_held a_second_vmm_is_refused_the_same_port bad_options_are_refused_in_one_line
       the_api_starts_a_guest_on_user_net vm_config_shows_bellhop_net a_config_file_gives_user_net
       no_capability_is_needed bellhop_net_killed_is_a_link_down"
@KVM_TEST_SH@
dir=$(mktemp -d /tmp/bellhop-user-net.XXXXXX)
out=$dir/out sock=$dir/api.sock
pids=
cleanup() { for p in $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$dir"; }
trap cleanup EXIT

# run ARGS...: the tiny guest to its end with ARGS, its output in $out and its status in $st
run() { $bellhop run --kernel $guest --mem 64M "$@" > $out 2>&1 < /dev/null; st=$?; }
# dhcp_ok FILE: the guest's ARP and DHCP self-tests passed, none failed, no sanitizer spoke
dhcp_ok() { net_dhcp_ok $1 "10.0.2.2 is at 52:55:0a:00:02:02" "10.0.2.15 from 10.0.2.2"; }
why() { echo "status ${st:-?}: $(grep -e FAIL -e bellhop: -e 'guest:' -e Sanitizer -e 'runtime error' $1 | head -4 | tr '\n' '|')"; }

run --net user --cmdline dhcp
# A host without Debian's libslirp0 cannot have --net user.
if [ $st != 0 ] && grep -q "cannot load libslirp" $out; then skip_all "$(grep -m1 libslirp $out)"; fi
[ $st = 0 ] && dhcp_ok $out && pass the_guest_gets_its_address_by_dhcp || fail the_guest_gets_its_address_by_dhcp "$(why $out)"

# Without "dhcp" the guest sends one frame and waits for no answer (the other tests' taps give
# none): the device is up, its interrupt came.
run --net user
if [ $st = 0 ] && grep -qE "selftest net-link +PASS: mac 52:54:" $out && grep -qE "selftest virtio-irq +PASS" $out &&
   ! grep -q "selftest net-dhcp" $out && grep -q "guest: 0 failed" $out; then
    pass without_dhcp_the_device_still_passes
else
    fail without_dhcp_the_device_still_passes "$(why $out)"
fi

# restrict=on cuts the guest off from the host's network, not from slirp's own ARP and DHCP.
run --net user,restrict=on --cmdline dhcp
[ $st = 0 ] && dhcp_ok $out && pass dhcp_works_with_restrict_on || fail dhcp_works_with_restrict_on "$(why $out)"

# A forward to the guest's port 80, on a port of 127.0.0.1 nobody holds: one is tried after
# another while the VMM says the last was in use. The guest waits ("wait") with it held.
first=$dir/first port=$((20000 + $$ % 20000)) tries=0
while :; do
    $bellhop run --kernel $guest --mem 64M --net user,hostfwd=tcp:127.0.0.1:$port-:80 --cmdline "dhcp wait" \
        > $first 2>&1 < /dev/null &
    fwd_pid=$!; pids="$pids $fwd_pid"
    wait_for $first "guest: waiting|^bellhop: " 30
    grep -q "Address already in use" $first && [ $tries -lt 5 ] || break
    wait $fwd_pid; port=$((port + 1)) tries=$((tries + 1))
done
if kill -0 $fwd_pid 2>/dev/null && dhcp_ok $first; then
    pass a_forwarded_host_port_is_held "127.0.0.1:$port"
else
    fail a_forwarded_host_port_is_held "$(why $first)"
fi
run --net user,hostfwd=tcp:127.0.0.1:$port-:80 --cmdline dhcp
if [ $st != 0 ] && [ $st -lt 128 ] && one_line $out && grep -q "$port: cannot listen: Address already in use" $out &&
   kill -0 $fwd_pid 2>/dev/null; then
    pass a_second_vmm_is_refused_the_same_port "status $st"
else
    fail a_second_vmm_is_refused_the_same_port "status $st: $(head -3 $out | tr '\n' '|')"
fi
kill $fwd_pid 2>/dev/null; wait $fwd_pid 2>/dev/null

# Each refused before any guest runs, in one line that names what is wrong (exit 1, as every
# device the VM's configuration refuses: the options are the config's bellhop_net too).
bad_seen=
for opts in "user,hostfwd=foo|hostfwd=foo: expected" "user,restrict=maybe|restrict=maybe: expected on or off" \
            "user,hostfwd=tcp::0-:80|a port is 1 to 65535" "user,|an empty option"; do
    run --net "${opts%%|*}"
    [ $st != 0 ] && [ $st -lt 128 ] && one_line $out && grep -q -e "${opts#*|}" $out ||
        bad_seen="$bad_seen [--net ${opts%%|*}: status $st, $(head -2 $out | tr '\n' '|')]"
done
[ -z "$bad_seen" ] && pass bad_options_are_refused_in_one_line "status $st" || fail bad_options_are_refused_in_one_line "$bad_seen"

# The API: a network-interfaces entry whose bellhop_net (bellhop's extension) is "user".
if [ -z "$curl" ]; then
    skip the_api_starts_a_guest_on_user_net "no curl"
    skip vm_config_shows_bellhop_net "no curl"
else
    $bellhop run --api-sock $sock > $out 2>&1 < /dev/null &
    api_pid=$!; pids="$pids $api_pid"
    wait_sock $sock
    req $sock PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "dhcp wait"}'; c1=$code
    req $sock PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'; c2=$code
    req $sock PUT /network-interfaces/net0 '{"iface_id": "net0", "bellhop_net": "user"}'; c3=$code
    req $sock PUT /actions '{"action_type": "InstanceStart"}'; c4=$code
    if [ "$c1$c2$c3$c4" = 204204204204 ] && wait_for $out "guest: waiting" 30 && dhcp_ok $out; then
        pass the_api_starts_a_guest_on_user_net
    else
        fail the_api_starts_a_guest_on_user_net "statuses $c1 $c2 $c3 $c4; $(why $out)"
    fi
    req $sock GET /vm/config
    case "$code $body" in
        *'"network-interfaces":[{"iface_id":"net0",'*'"bellhop_net":"user"}]'*) pass vm_config_shows_bellhop_net ;;
        *) fail vm_config_shows_bellhop_net "$code $body" ;;
    esac
    kill $api_pid; wait $api_pid 2>/dev/null
fi

cat > $dir/vm.json <<EOF
{"boot-source": {"kernel_image_path": "$guest", "boot_args": "dhcp"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "network-interfaces": [{"iface_id": "net0", "bellhop_net": "user,restrict=on"}]}
EOF
$bellhop run --config-file $dir/vm.json > $out 2>&1 < /dev/null; st=$?
[ $st = 0 ] && dhcp_ok $out && pass a_config_file_gives_user_net || fail a_config_file_gives_user_net "$(why $out)"

# Without any capability (none inherited, none in the bounding set: an exec gets none, as a
# user's process has none), a forward included.
setpriv=$(command -v setpriv || true)
if [ -z "$setpriv" ]; then
    skip no_capability_is_needed "no setpriv"
else
    $setpriv --bounding-set=-all --inh-caps=-all sh -c 'grep ^CapEff /proc/self/status; exec "$@"' sh \
        $bellhop run --kernel $guest --mem 64M --net user,hostfwd=tcp:127.0.0.1:$((port + 7))-:22 --cmdline dhcp \
        > $out 2>&1 < /dev/null
    st=$?
    [ $st = 0 ] && grep -q "^CapEff:[[:space:]]*0000000000000000" $out && dhcp_ok $out && pass no_capability_is_needed ||
        fail no_capability_is_needed "$(grep CapEff $out) $(why $out)"
fi

# bellhop-net killed while the guest waits: one line, the link down, the VMM alive and idle
# (not answering each receive buffer with an empty frame).
$bellhop run --kernel $guest --mem 64M --net user --cmdline "dhcp wait" > $out 2>&1 < /dev/null &
vmm=$!; pids="$pids $vmm"
wait_for $out "guest: waiting" 30
net_pid=$(pgrep -P $vmm bellhop-net 2>/dev/null || true)
if [ -z "$net_pid" ]; then
    fail bellhop_net_killed_is_a_link_down "no bellhop-net child of bellhop ($(why $out))"
else
    kill -9 $net_pid
    wait_for $out "the link is down" 10
    t0=$(awk '{ print $14 + $15 }' /proc/$vmm/stat 2>/dev/null || echo 0)
    sleep 1
    t1=$(awk '{ print $14 + $15 }' /proc/$vmm/stat 2>/dev/null || echo 0)
    if kill -0 $vmm 2>/dev/null && grep -q "^bellhop: virtio-net: its network's process ended; the link is down" $out &&
       [ $((t1 - t0)) -lt 50 ]; then
        pass bellhop_net_killed_is_a_link_down "$((t1 - t0)) ticks of CPU in the second after"
    else
        fail bellhop_net_killed_is_a_link_down "alive: $(kill -0 $vmm 2>/dev/null && echo yes || echo no), $((t1 - t0)) ticks; $(why $out)"
    fi
fi
kill $vmm 2>/dev/null; wait $vmm 2>/dev/null
exit $failed
