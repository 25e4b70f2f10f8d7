# What the integration scripts tests/kvm/*.sh share. Not run on its own: the Makefile puts it
# into each script in place of its line @KVM_TEST_SH@ (after its $suite and $tests), so that
# each built test stays one file, the way it is sent alone into the nested KVM host. POSIX sh:
# busybox runs it there.

# tests/run.sh asks each test binary for its tests first: a test it then gets no line for fails
if [ "${1:-}" = --list ]; then
    for t in $tests; do echo "$suite.$t"; done
    exit 0
fi
# (these suites are short, and their tests lean on those before: all of them always run)
[ "${1:-}" = --from ] && echo "($suite: every test runs; --from ignored)"

pass() { echo "PASS $suite.$1${2:+: $2}"; } # TEST [NOTE]: the lines tests/run.sh collects
fail() { echo "FAIL $suite.$1: $2"; failed=1; } # TEST WHY: the script then exits 1 ($failed)
skip() { echo "SKIP $suite.$1: $2"; } # TEST WHY
skip_all() { for t in $tests; do skip $t "$1"; done; exit 0; } # WHY: every listed test gets its line
failed=0

# $B/tests/kvm/NAME: bellhop is $B's, the tiny guest build/guest's (built once, never sanitized)
here=$(cd "$(dirname "$0")/../.." && pwd)
bellhop=$here/bellhop guest=$here/guest/guest.elf
[ -f $guest ] || guest=$(cd $here/.. && pwd)/guest/guest.elf # the sanitizer builds' (build/asan)
case $here in */asan|*/tsan) sanitized=1 ;; *) sanitized= ;; esac

# tool NAME: the host's, or the copy inside the nested host (under /bellhop, not on its PATH)
tool() { if [ -x /bellhop/usr/bin/$1 ]; then echo /bellhop/usr/bin/$1; else command -v $1 || true; fi; }
curl=$(tool curl) # empty without: each script says what it skips then

# req's settings, which a script may change after this: curl's limit in seconds (saving and
# loading 128 MiB snapshots can take longer), and a file to keep each answer's head in
req_timeout=20 req_head=
# req SOCK METHOD PATH [BODY]: sets code (the HTTP status, 000 when nothing answered) and body
# (the answer); BODY goes out as it is (--data-raw: one starting with @ is not a file name)
req() {
    s=$1; shift
    [ -z "$req_head" ] || : > $req_head
    if [ $# -ge 3 ]; then
        body=$($curl -s -m $req_timeout ${req_head:+-D $req_head} --unix-socket $s -X "$1" "http://localhost$2" \
               -H 'Content-Type: application/json' --data-raw "$3" -w ' %{http_code}')
    else
        body=$($curl -s -m $req_timeout ${req_head:+-D $req_head} --unix-socket $s -X "$1" "http://localhost$2" \
               -w ' %{http_code}')
    fi
    code=${body##* }
    body=${body% *}
}
# bad METHOD PATH [BODY] WANT: on $sock, a 400 whose fault_message has WANT in it; else noted in
# $bad_seen (and counted in $nbad), so that one test reports every refusal that went wrong
bad() {
    if [ $# -ge 4 ]; then req $sock "$1" "$2" "$3"; want=$4; else req $sock "$1" "$2"; want=$3; fi
    nbad=$((nbad + 1))
    case "$code $body" in
        "400 {\"fault_message\":\""*"$want"*) ;;
        *) bad_seen="$bad_seen [$1 $2 -> $code $body; wanted 400 with '$want']" ;;
    esac
}

# wait_for FILE TEXT SECONDS: until a line of FILE matches the ERE TEXT; status 1 when it never did
wait_for() {
    i=0
    while ! grep -qE "$2" "$1" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt $(($3 * 10)) ] && return 1; sleep 0.1
    done
}
# wait_sock SOCK: until a server (bellhop, a backend) made its socket, up to 10 s; in short steps,
# as a script may start many VMMs
wait_sock() { i=0; while [ ! -S $1 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done; }

# The tiny guest's "count" lines ("count N: memory ok, ..."), in the output FILE of its VMM:
last_count() { grep -o '^count [0-9]*:' $1 | tail -1 | tr -dc 0-9; } # FILE: the last whole one's N
first_count() { grep -o '^count [0-9]*:' $1 | head -1 | tr -dc 0-9; } # FILE: a restored guest's first
# next_count FILE: the count a guest paused at the end of FILE prints next (what a restore of it
# prints first): one past the last whole number, or two past it when the output ends inside the
# next count's number ("count 1" of 15, "cou")
next_count() {
    n=$(last_count $1) tail_line=$(tail -c 100 $1 | tr -d '\r' | tail -n 1)
    [ -n "$(tail -c 1 $1 | tr -d '\n')" ] || tail_line= # ends with a newline: nothing cut
    case "$tail_line" in
        "count "*:*) ;;
        "count "*) n=$((n + 1)) ;;
        *) case "count " in "$tail_line"*) [ -n "$tail_line" ] && n=$((n + 1)) ;; esac ;;
    esac
    echo $((n + 1))
}
# snap SOCK TYPE NAME OUT: the guest behind API socket SOCK paused, a snapshot of TYPE into
# $dir/NAME.state and .mem; $sc the two statuses and the body, $saved the last count it holds
snap() {
    req $1 PATCH /vm '{"state": "Paused"}'; sp=$code
    sleep 0.2
    req $1 PUT /snapshot/create '{"snapshot_type": "'$2'", "snapshot_path": "'$dir/$3.state'", "mem_file_path": "'$dir/$3.mem'"}'
    sc=$sp$code:$body
    saved=$(($(next_count $4) - 1)) # (the restored guest's first count is saved + 1)
}
# counts_ok FILE: every whole count line says each check passed (the memory's too: its pattern,
# and in "count dirty=N" the pages the counts move on); only whole lines, as a VMM killed or
# paused mid-line leaves one cut short
counts_ok() { [ -n "$(last_count $1)" ] && ! grep '^count .*announced' $1 | grep -qv 'memory ok, rng ok, blk ok, console ok'; }
# clean FILE...: no sanitizer's report in them
clean() { ! grep -q -e 'WARNING: ThreadSanitizer' -e 'ERROR: AddressSanitizer' -e 'runtime error' "$@"; }
# one_line FILE: FILE is one line, bellhop's error
one_line() { [ "$(wc -l < $1)" -eq 1 ] && grep -q '^bellhop: ' $1; }
# net_dhcp_ok FILE ARP OFFER: the tiny guest's net-arp said ARP ("10.0.2.2 is at ..."), its
# net-dhcp "offer OFFER, ack" (guest/net.c), no self-test failed, no sanitizer spoke
net_dhcp_ok() {
    grep -qE "selftest net-arp +PASS: $2" $1 && grep -qE "selftest net-dhcp +PASS: offer $3, ack" $1 &&
        ! grep -q "^selftest .* FAIL" $1 && clean $1
}
# not_ok FILE: for a FAIL line, what counts_ok did not like, and any sanitizer's report
not_ok() { { grep '^count .*announced' $1 | grep -v 'memory ok, rng ok, blk ok, console ok'; grep -A3 -e 'WARNING: ThreadSanitizer' -e 'ERROR: AddressSanitizer' -e 'runtime error' $1; } | head -8 | tr '\n' '|'; }
