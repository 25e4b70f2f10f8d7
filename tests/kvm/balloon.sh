#!/bin/sh
# virtio-balloon through the API and the tiny guest's "balloon" mode (guest/balloon.c): a
# balloon with statistics every second, the guest's figures under Firecracker's names, then
# PATCH /balloon moves the target and the guest follows it (actual_pages, and its free memory
# less the balloon), back to zero, and past what it can give. POSIX sh (busybox inside the
# nested KVM host).
suite=balloon
tests="the_guest_reports_its_memory the_guest_inflates_to_the_target its_free_memory_falls_by_the_balloon
       the_guest_deflates_back a_target_past_what_it_can_give_stops_at_its_limit the_vm_runs_on"
@KVM_TEST_SH@
[ -n "$curl" ] || skip_all "no curl"
dir=$(mktemp -d /tmp/bellhop-balloon.XXXXXX)
sock=$dir/api.sock out=$dir/out
pid=
cleanup() { [ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

# stat_of NAME: the number GET /balloon/statistics last gave for NAME (empty when absent)
stat_of() { echo "$stats" | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
# until_stat NAME TEST VALUE SECONDS: polls the statistics until NAME -TEST VALUE holds
until_stat() {
    i=0
    while :; do
        req $sock GET /balloon/statistics; stats=$body
        v=$(stat_of $1)
        [ "$code" = 200 ] && [ -n "$v" ] && [ "$v" "-$2" "$3" ] && return 0
        i=$((i + 1)); [ $i -gt $(($4 * 5)) ] && return 1; sleep 0.2
    done
}

$bellhop run --api-sock $sock > $out 2>&1 < /dev/null &
pid=$!
wait_sock $sock
req $sock PUT /boot-source '{"kernel_image_path": "'$guest'", "boot_args": "balloon"}'; c1=$code
req $sock PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'; c2=$code
req $sock PUT /balloon '{"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 1}'; c3=$code
req $sock PUT /actions '{"action_type": "InstanceStart"}'; c4=$code

# The guest's figures: its memory map's RAM (64 MiB less the legacy hole) and what it has free.
ram=$((0x9fc00 + (64 << 20) - 0x100000))
if [ "$c1$c2$c3$c4" = 204204204204 ] && wait_for $out "guest: 0 failed, serving the balloon" 60 &&
   until_stat total_memory eq $ram 10 && [ "$(stat_of free_memory)" -gt 0 ] && [ "$(stat_of free_memory)" -lt $ram ] &&
   [ "$(stat_of available_memory)" = "$(stat_of free_memory)" ] && [ "$(stat_of actual_pages)" = 0 ] &&
   grep -q "selftest balloon-stats    PASS" $out; then
    pass the_guest_reports_its_memory
else
    fail the_guest_reports_its_memory "statuses $c1 $c2 $c3 $c4, wanted total_memory $ram: $stats; $(tail -3 $out)"
fi
free0=$(stat_of free_memory)

req $sock PATCH /balloon '{"amount_mib": 8}'
if [ "$code" = 204 ] && until_stat actual_pages eq 2048 15 && [ "$(stat_of target_pages)" = 2048 ] &&
   wait_for $out "balloon: target 2048 pages, actual 2048" 5; then
    pass the_guest_inflates_to_the_target
else
    fail the_guest_inflates_to_the_target "$code: $stats; $(tail -3 $out)"
fi
# (the statistics come every second: the next ones after the balloon filled count it)
if [ -n "$free0" ] && until_stat free_memory eq $((free0 - (8 << 20))) 10; then
    pass its_free_memory_falls_by_the_balloon
else
    fail its_free_memory_falls_by_the_balloon "free_memory $free0 before: $stats"
fi

req $sock PATCH /balloon '{"amount_mib": 0}'
if [ "$code" = 204 ] && until_stat actual_pages eq 0 15 && wait_for $out "balloon: target 0 pages, actual 0" 5 &&
   until_stat free_memory eq "${free0:-0}" 10; then
    pass the_guest_deflates_back
else
    fail the_guest_deflates_back "$code: $stats; $(tail -3 $out)"
fi

# The whole of its memory: it gives what lies above its own image, and says that is all.
req $sock PATCH /balloon '{"amount_mib": 64}'
if [ "$code" = 204 ] && wait_for $out "balloon: target 16384 pages, actual [0-9]+ \\(all it can give\\)" 30 &&
   until_stat actual_pages gt 8192 5 && [ "$(stat_of actual_pages)" -lt 16384 ]; then
    pass a_target_past_what_it_can_give_stops_at_its_limit
else
    fail a_target_past_what_it_can_give_stops_at_its_limit "$code: $stats; $(tail -3 $out)"
fi
req $sock PATCH /balloon '{"amount_mib": 0}'
req $sock GET /
sanitizer=$(grep -A3 -e 'WARNING: ThreadSanitizer' -e 'ERROR: AddressSanitizer' -e 'runtime error' $out | head -8 | tr '\n' '|')
case "$body" in
    *'"state":"Running"'*) until_stat actual_pages eq 0 30 && kill -0 $pid && [ -z "$sanitizer" ] && pass the_vm_runs_on ||
                               fail the_vm_runs_on "$stats; $sanitizer $(tail -3 $out)" ;;
    *) fail the_vm_runs_on "$code $body" ;;
esac
exit $failed
