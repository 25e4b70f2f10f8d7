#!/bin/bash
# bellhop's test runner: unit tests on the host, integration tests on real KVM — directly
# on this host's /dev/kvm where it can run them, otherwise inside the nested KVM host
# (scripts/nested.sh); --mode (make test KVM=...) forces one place for all.
# Prints one line per test, then "N passed, N failed, N skipped"; exits non-zero on any
# failure or when no test ran.
#   tests/run.sh [--unit BUILDDIR]... [--fuzz SECONDS] [--kvm BUILDDIR]... [--mode auto|direct|nested]
# (the first --kvm directory holds kvm-probe and the guest; later ones are sanitizer builds)
set -uo pipefail
cd "$(dirname "$0")/.."
results=$(mktemp)
units=(); kvms=(); fuzz=; mode=${KVM:-auto}; summary=()
while [ $# -gt 0 ]; do
    case $1 in
        --unit) units+=("$2"); shift 2 ;;
        --fuzz) fuzz=$2; shift 2 ;;
        --kvm) kvms+=("$2"); shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
case $mode in auto|direct|nested) ;; *) echo "run.sh: --mode $mode: auto, direct or nested" >&2; exit 2 ;; esac

tally() { # result lines in, their counts out
    awk '{n[$1]++} END {printf "%d passed, %d failed, %d skipped", n["PASS"], n["FAIL"], n["SKIP"]}'
}

console() { # the nested host's console, without its own end-of-run lines, through emit
    grep -v '^BELLHOP-NESTED-EXIT\|reboot: Power down' | emit ""
}

emit() { # filter a test binary's output: keep result lines (prefixed by variant), pass the rest
    local prefix=$1
    while IFS= read -r line; do
        case $line in
            PASS\ *|FAIL\ *|SKIP\ *)
                line="${line%% *} $prefix${line#* }"
                echo "$line"; echo "$line" >> "$results" ;;
            *) echo "    $line" ;;
        esac
    done
}

# Every test a binary lists (--list) must report a result: a line lost on the way (a binary
# that stopped early, the nested host's console) is a failure, not one test fewer.
expected=$(mktemp); trap 'rm -f "$results" "$expected"' EXIT
prefix_of() { # BUILDDIR: what its results are prefixed with (build/asan: "asan:", build: "")
    local variant=${1#build}
    variant=${variant#/}
    echo "${variant:+$variant:}"
}
expect() { # DIR KIND
    local prefix t
    prefix=$(prefix_of "$1")
    for t in "$1"/tests/"$2"/*; do
        [ -x "$t" ] && "$t" --list | sed "s/^/$prefix/" >> "$expected"
    done
}
for dir in "${units[@]}"; do expect "$dir" unit; done
for dir in "${kvms[@]}"; do expect "$dir" kvm; done

# The nested host's run (its console and result lines on stdout, the results also in $1):
# in the background while the unit, fuzz and direct tests run, each with a core of the two;
# its lines come after theirs.
run_nested() {
    results=$1
    out=$(mktemp)
    # QEMU itself goes in too: the peer test boots guest.elf under QEMU-KVM microvm.
    peer=()
    for f in /usr/bin/qemu-system-x86_64 /usr/share/qemu/qboot.rom /usr/share/qemu/bios-microvm.bin \
             /usr/share/qemu/pvh.bin /usr/share/qemu/linuxboot_dma.bin /usr/sbin/debugfs /usr/bin/ip /usr/bin/curl \
             /usr/bin/qemu-storage-daemon /usr/lib/qemu/virtiofsd /usr/bin/strace /usr/bin/passt /usr/bin/passt.avx2 \
             build/linux; do
        [ -e "$f" ] && peer+=(--file "$f")
    done
    builds=() pending=("${nested[@]}")
    for d in "${kvms[@]}"; do builds+=(--file "$d/tests/kvm" --file "$d/bellhop" --file "$d/bellhop-net" --file "$d/bellhop-hooks"); done
    # When L1 froze (nested.sh status 126: QEMU's software SVM, not a test), what had not
    # finished runs again in a fresh L1, up to 6 L1s in all: the binaries not started, and
    # the one L1 froze in from its first test without a result (BINARY@TEST). The results
    # it gave before count, so no test is counted twice and no finished test runs again.
    budget=2400 start=$SECONDS attempt=1 partial=$(mktemp)
    while :; do
        scripts/nested.sh --timeout $((budget - (SECONDS - start))) "${builds[@]}" \
            --file "$kvm/guest" --file tests/run-kvm.sh "${peer[@]}" -- sh tests/run-kvm.sh "${pending[@]}" > "$out" 2>&1
        rc=$? unread=1
        [ $rc = 126 ] || break
        unread=0
        : > "$partial"
        awk -v partial="$partial" '
             /^nested: |^    \| / {print; next}
             /^running / {sec = ""; open = 1}
             open {sec = sec $0 "\n"; if ($0 ~ /^run-kvm: done /) {printf "%s", sec; open = 0}; next}
             {print}
             END {if (open) printf "%s", sec > partial}' "$out" | console
        done_list=$(grep '^run-kvm: done ' "$out" | awk '{print $3}')
        frozen=$(sed -n 's/^running //p' "$partial") next_test=
        if [ -n "$frozen" ]; then
            # its results so far, of listed tests only (the last line may be cut short)
            suite="$(prefix_of "${frozen%/tests/kvm/*}")$(basename "$frozen")."
            listed=$(awk -v s="$suite" 'index($0, s) == 1' "$expected")
            awk 'FILENAME == ARGV[1] {listed[$0] = 1; next}
                 /^(PASS|FAIL|SKIP) / {n = $2; sub(/:$/, "", n); if (n in listed) print}' \
                <(printf '%s\n' "$listed") "$partial" | emit ""
            reported=$(grep -E '^(PASS|FAIL|SKIP) ' "$partial" | awk '{n = $2; sub(/:$/, "", n); print n}')
            next_test=$(printf '%s\n' "$listed" | grep -vxF "${reported:-(none)}" | head -1)
            next_test=${next_test##*.}
        fi
        left=()
        for p in "${pending[@]}"; do
            t=${p%@*}
            printf '%s\n' "$done_list" | grep -qxF "$t" && continue
            if [ "$t" = "$frozen" ]; then
                [ -n "$next_test" ] && left+=("$t@$next_test")
            else
                left+=("$p")
            fi
        done
        pending=("${left[@]}")
        if [ ${#pending[@]} = 0 ]; then rc=0; break; fi
        [ $attempt -lt 6 ] && [ $((budget - (SECONDS - start))) -gt 300 ] || break
        attempt=$((attempt + 1))
        echo "nested: L1 froze; what was left runs in a fresh L1 (attempt $attempt of 6): ${pending[*]}"
    done
    if [ $rc = 126 ]; then
        echo "FAIL nested-vm: L1 froze $attempt times; ${#pending[@]} test binaries did not finish: ${pending[*]}" | tee -a "$results"
    elif [ $unread = 1 ]; then
        console < "$out"
    fi
    if [ $rc -ne 0 ] && [ $rc != 126 ] && ! grep -q '^FAIL ' "$out"; then
        echo "FAIL nested-vm: the nested KVM host did not finish the tests (status $rc)" | tee -a "$results"
    fi
    rm -f "$out" "$partial"
}

# A short run of every libFuzzer target (build/fuzz): PASS when it ran without a crash; the
# result lines on stdout and in $1.
fuzz_smoke() {
    local out=$1 f n
    for f in build/fuzz/fuzz_*; do
        [ -x "$f" ] || continue
        n=$(basename "$f"); mkdir -p "build/fuzz/smoke/$n"
        if "$f" -max_total_time="$fuzz" "build/fuzz/smoke/$n" "tests/fuzz/corpus/$n" > "build/fuzz/$n.log" 2>&1; then
            echo "PASS fuzz.$n: $(grep -o 'DONE.*' "build/fuzz/$n.log" | head -1)" | tee -a "$out"
        else
            echo "FAIL fuzz.$n: $(grep -m1 -E 'ERROR|SUMMARY|runtime error' "build/fuzz/$n.log")" | tee -a "$out"
        fi
    done
}

# Integration tests: where each runs is known before the unit tests, so that the nested host's
# run, the longest part, starts first (in the background) and goes on beside them.
nested_results= nested_log= nested_pid=
if [ ${#kvms[@]} -gt 0 ]; then
    kvm=${kvms[0]}
    # Where each binary runs (vmm/hv/kvm_host.h has the kinds): on hardware KVM, all directly; on
    # PVM, the ones that boot Linux (tests/kvm/linux_*) in the nested host, which has the full
    # x86 virtualization they need, and the rest directly, so both KVMs are covered; with no
    # usable /dev/kvm, all nested. KVM=direct or KVM=nested forces one place for all.
    host=$("$kvm"/tests/kvm-probe)
    kind=${host%%:*}
    direct=(); nested=()
    for d in "${kvms[@]}"; do
        for t in "$d"/tests/kvm/*; do
            [ -x "$t" ] || continue
            case $mode:$kind:$(basename "$t") in
                nested:*|auto:none:*|auto:pvm:linux_*) nested+=("$t") ;;
                *) direct+=("$t") ;;
            esac
        done
    done
    echo "integration tests: this host's KVM is $host"
    if [ "$mode" = direct ] && [ "$kind" = none ]; then
        echo "FAIL integration: KVM=direct, but this host has no usable /dev/kvm" | tee -a "$results"
        direct=()
    fi
    [ ${#direct[@]} -gt 0 ] && echo "integration tests: ${#direct[@]} binaries directly on this host's /dev/kvm ($kind, KVM=$mode)"
    [ ${#nested[@]} -gt 0 ] && echo "integration tests: ${#nested[@]} binaries in the nested KVM host (KVM=$mode)"
    nested_results=$(mktemp) nested_log=$(mktemp) nested_pid=
    if [ ${#nested[@]} -gt 0 ]; then
        # The fuzz smoke follows it there: the direct tests, not the nested ones, are the
        # longer path, and the nested host's CPU is free once it is done.
        nested_done=$(mktemp) fuzz_results=$(mktemp)
        { run_nested "$nested_results"; echo $SECONDS > "$nested_done"
          [ -z "$fuzz" ] || fuzz_smoke "$fuzz_results"; } > "$nested_log" 2>&1 &
        nested_pid=$!
    fi
fi

for dir in "${units[@]}"; do
    prefix=$(prefix_of "$dir")
    for t in "$dir"/tests/unit/*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        out=$(TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" timeout 600 "$t" 2>&1)
        rc=$?
        printf '%s\n' "$out" | emit "$prefix"
        if [ $rc -ne 0 ] && ! printf '%s\n' "$out" | grep -q '^FAIL '; then
            echo "FAIL $prefix$name: exited with status $rc" | tee -a "$results"
        fi
    done
done

if [ -n "$fuzz" ] && [ -z "$nested_pid" ]; then fuzz_smoke "$results"; fi

if [ ${#kvms[@]} -gt 0 ]; then
    before=$(wc -l < "$results")
    if [ ${#direct[@]} -gt 0 ]; then
        sh tests/run-kvm.sh "${direct[@]}" 2>&1 | emit ""
        summary+=("directly on $kind KVM: $(tail -n +$((before + 1)) "$results" | tally), done $SECONDS s into the test run")
    fi
    if [ -n "$nested_pid" ]; then
        wait $nested_pid
        cat "$nested_log"
        cat "$nested_results" >> "$results"
        summary+=("in the nested KVM host: $(tally < "$nested_results"), done $(cat "$nested_done") s into the test run")
        cat "$fuzz_results" >> "$results"
    fi
    rm -f "$nested_results" "$nested_log" "${nested_done:-}" "${fuzz_results:-}"
    if [ "$(wc -l < "$results")" = "$before" ]; then
        echo "FAIL integration: no integration test reported a result" | tee -a "$results"
    fi
fi

missing=$(awk 'FILENAME == ARGV[1] {n = $2; sub(/:$/, "", n); seen[n] = 1; next}
               !($0 in seen) {print "FAIL " $0 ": no result reported"}' "$results" "$expected")
unlisted=$(awk 'FILENAME == ARGV[1] {listed[$0] = 1; s = $0; sub(/\..*/, "", s); suite[s] = 1; next}
                {n = $2; sub(/:$/, "", n); s = n; sub(/\..*/, "", s)}
                index(n, ".") && (s in suite) && !(n in listed) {print "FAIL " n ": reported, but not in its binary'"'"'s --list"}' \
           "$expected" "$results")
for f in "$missing" "$unlisted"; do [ -n "$f" ] && printf '%s\n' "$f" | tee -a "$results"; done

passed=$(grep -c '^PASS ' "$results")
failed=$(grep -c '^FAIL ' "$results")
skipped=$(grep -c '^SKIP ' "$results")
echo
if [ "$failed" -gt 0 ]; then
    echo "failures:"; grep '^FAIL ' "$results" | sed 's/^/  /'
fi
for line in "${summary[@]}"; do echo "integration tests $line"; done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
