#!/bin/sh
# --net passt and --net stream=SOCKET (QEMU's stream format: devices/net_stream.h; passt started
# by bellhop: net/passt.h) with the tiny guest. In a network namespace of the test's own (a veth
# with 192.0.2.10/24 and a default route via 192.0.2.1, nothing behind it), where passt hands
# the guest the namespace's address: the guest's ARP and DHCP self-test (guest/net.c, cmdline
# "dhcp": on a network that is not slirp's any offer will do, the test checks which) over passt
# started by bellhop, from the command line and a config file, and over a passt the test starts
# itself, reached with stream=; passt killed while the guest runs is a link down said in one
# line, the VMM goes on and ends normally; passt ends with the VMM and no file is left behind.
# passt missing or failing, a socket nobody serves: refused in one line, status 1.
# Skipped where passt (Debian's package) or a network namespace is missing.
# POSIX sh (busybox inside the nested KVM host).
suite=net_stream
tests="passt_gives_the_guest_the_namespaces_address_by_dhcp passt_ends_with_the_vmm_and_leaves_no_file
       stream_reaches_a_passt_the_test_started a_config_file_gives_passt
       passt_killed_is_a_link_down_and_the_vmm_goes_on the_vmm_then_ends_normally
       passt_missing_is_one_line_and_status_1 passt_failing_shows_its_words_and_status_1
       stream_to_no_listener_is_refused_in_one_line"
@KVM_TEST_SH@
dir=$(mktemp -d /tmp/bellhop-net-stream.XXXXXX)
out=$dir/out
ns=bellhop-net-stream-$$
pids= ns_made=
cleanup() {
    for p in $pids; do kill -9 $p 2>/dev/null; done
    [ -z "$ns_made" ] || $ip netns del $ns 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
# bellhop's private files (passt's pid FIFO and words) go under $dir, what is left there seen;
# passt, started as root, is nobody when it opens its pid file: $dir lets it through
chmod 711 $dir
export TMPDIR=$dir

passt=$(tool passt) ip=$(tool ip)
[ -z "$passt" ] || PATH=$(dirname $passt):$PATH
# dhcp_ok FILE: the guest got the namespace's address from its gateway; nothing failed or spoke
dhcp_ok() { net_dhcp_ok $1 "10.0.2.2 is at " "192.0.2.10 from 192.0.2.1"; }
why() { echo "status ${st:-?}: $(grep -e FAIL -e bellhop: -e 'guest:' -e passt -e Sanitizer -e 'runtime error' $1 | head -4 | tr '\n' '|')"; }
# passt_pids: the passt processes bellhop started for this test (their pid files are under $dir)
passt_pids() {
    for p in /proc/[0-9]*; do
        case "$(cat $p/comm 2>/dev/null)" in passt*) tr '\0' ' ' < $p/cmdline 2>/dev/null | grep -q "$dir/" && echo ${p#/proc/} ;; esac
    done
}
leftovers() { ls $dir | grep -c bellhop-passt; }

# ---- what needs no passt ----

PATH=/nonexistent $bellhop run --kernel $guest --mem 64M --net passt --cmdline dhcp > $out 2>&1 < /dev/null; st=$?
[ $st = 1 ] && one_line $out && grep -q "cannot start passt: No such file or directory" $out && [ "$(leftovers)" = 0 ] &&
    pass passt_missing_is_one_line_and_status_1 || fail passt_missing_is_one_line_and_status_1 "$(why $out)"

$bellhop run --kernel $guest --mem 64M --net stream=$dir/nobody.sock > $out 2>&1 < /dev/null; st=$?
[ $st = 1 ] && one_line $out && grep -q "stream=$dir/nobody.sock: No such file or directory" $out &&
    pass stream_to_no_listener_is_refused_in_one_line || fail stream_to_no_listener_is_refused_in_one_line "$(why $out)"

if [ -z "$passt" ]; then
    for t in $tests; do
        case $t in passt_missing*|stream_to_no*) ;; *) skip $t "no passt (Debian's package passt)" ;; esac
    done
    exit $failed
fi

# Its words come before bellhop's one line, none of its complaints that it has no syslog.
$bellhop run --kernel $guest --mem 64M --net passt,--no-such-option > $out 2>&1 < /dev/null; st=$?
if [ $st = 1 ] && tail -n 1 $out | grep -q "^bellhop: --net passt: passt ended at its start, exit status 1" &&
   grep -q "^passt: unrecognized option '--no-such-option'" $out && ! grep -q syslog $out && [ "$(leftovers)" = 0 ]; then
    pass passt_failing_shows_its_words_and_status_1
else
    fail passt_failing_shows_its_words_and_status_1 "$(why $out) $(ls $dir | tr '\n' ' ')"
fi

# ---- in a network namespace ----

# make_ns: the namespace, with what passt takes as the host's network (the address, gateway and
# MAC of the interface with the default route); its failure's reason in $dir/ns.err
make_ns() {
    [ -n "$ip" ] || { echo "no ip (iproute2)" > $dir/ns.err; return 1; }
    $ip netns add $ns 2>$dir/ns.err || return 1
    ns_made=1
    $ip -n $ns link set lo up 2>$dir/ns.err && $ip -n $ns link add v0 type veth peer name v1 2>$dir/ns.err &&
        $ip -n $ns link set v1 up && $ip -n $ns addr add 192.0.2.10/24 dev v0 && $ip -n $ns link set v0 up &&
        $ip -n $ns route add default via 192.0.2.1 2>$dir/ns.err
}
if ! make_ns; then
    reason="no network namespace with a veth: $(head -1 $dir/ns.err 2>/dev/null)"
    for t in passt_gives_the_guest_the_namespaces_address_by_dhcp passt_ends_with_the_vmm_and_leaves_no_file \
             stream_reaches_a_passt_the_test_started a_config_file_gives_passt \
             passt_killed_is_a_link_down_and_the_vmm_goes_on the_vmm_then_ends_normally; do
        skip $t "$reason"
    done
    exit $failed
fi
in_ns() { $ip netns exec $ns "$@"; }

in_ns $bellhop run --kernel $guest --mem 64M --net passt --cmdline dhcp > $out 2>&1 < /dev/null; st=$?
[ $st = 0 ] && dhcp_ok $out && pass passt_gives_the_guest_the_namespaces_address_by_dhcp ||
    fail passt_gives_the_guest_the_namespaces_address_by_dhcp "$(why $out)"
# -1: passt ends once bellhop's end of the socket is closed
i=0
while [ -n "$(passt_pids)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -z "$(passt_pids)" ] && [ "$(leftovers)" = 0 ] && pass passt_ends_with_the_vmm_and_leaves_no_file ||
    fail passt_ends_with_the_vmm_and_leaves_no_file "passt still running: $(passt_pids); left: $(ls $dir | tr '\n' ' ')"

# passt listening on a socket of its own (as root it becomes nobody before it binds: a directory
# it may write in); bellhop connects to it
mkdir $dir/s && chmod 1777 $dir/s
in_ns $passt -f -q -1 -s $dir/s/passt.sock > $dir/passt.out 2>&1 < /dev/null &
server=$!; pids="$pids $server"
wait_sock $dir/s/passt.sock
in_ns $bellhop run --kernel $guest --mem 64M --net stream=$dir/s/passt.sock --cmdline dhcp > $out 2>&1 < /dev/null; st=$?
[ $st = 0 ] && dhcp_ok $out && pass stream_reaches_a_passt_the_test_started ||
    fail stream_reaches_a_passt_the_test_started "$(why $out) passt: $(grep -v syslog $dir/passt.out | head -2 | tr '\n' '|')"
kill $server 2>/dev/null; wait $server 2>/dev/null

cat > $dir/vm.json <<EOF
{"boot-source": {"kernel_image_path": "$guest", "boot_args": "dhcp"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "network-interfaces": [{"iface_id": "net0", "bellhop_net": "passt,-4"}]}
EOF
in_ns $bellhop run --config-file $dir/vm.json > $out 2>&1 < /dev/null; st=$?
[ $st = 0 ] && dhcp_ok $out && pass a_config_file_gives_passt || fail a_config_file_gives_passt "$(why $out)"

# passt killed while the guest waits: the link goes down, said once; the VMM goes on, and ends
# by its console's Ctrl-A x with status 0.
mkfifo $dir/console
in_ns $bellhop run --kernel $guest --mem 64M --net passt --cmdline "dhcp wait" < $dir/console > $out 2>&1 &
vmm=$!; pids="$pids $vmm"
exec 9> $dir/console
wait_for $out "guest: waiting|^bellhop: " 30
victim=$(passt_pids)
[ -n "$victim" ] && kill -9 $victim
if [ -n "$victim" ] && dhcp_ok $out && wait_for $out "^bellhop: virtio-net: passt: .*; the link is down" 10 &&
   sleep 0.5 && kill -0 $vmm 2>/dev/null; then
    pass passt_killed_is_a_link_down_and_the_vmm_goes_on "$(grep -m1 'link is down' $out | sed 's/.*passt: //; s/;.*//')"
else
    fail passt_killed_is_a_link_down_and_the_vmm_goes_on "passt pid '${victim}'; $(why $out)"
fi
printf '\001x' >&9
exec 9>&-
wait $vmm; st=$?
if [ $st = 0 ] && [ "$(grep -c 'link is down' $out)" = 1 ] &&
   ! grep -q -e "SIGSYS" -e "crash" -e 'ERROR: AddressSanitizer' -e 'WARNING: ThreadSanitizer' -e 'runtime error' $out; then
    pass the_vmm_then_ends_normally
else
    fail the_vmm_then_ends_normally "$(why $out)"
fi
exit $failed
