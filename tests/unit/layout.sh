#!/bin/sh
# The tree as the docs describe it: every directory of the source (the top level's and vmm/'s
# rooms, bench/'s) is named in the README's layout and in docs/architecture.md's.
suite=layout
tests="the_readme_names_every_room architecture_md_names_every_room"
if [ "${1:-}" = --list ]; then
    for t in $tests; do echo "$suite.$t"; done
    exit 0
fi
repo=$(cd "$(dirname "$0")" && pwd)
while [ ! -f "$repo/docs/architecture.md" ] && [ "$repo" != / ]; do repo=$(dirname "$repo"); done
cd "$repo" || exit 1
rooms=$(git ls-files 2>/dev/null | grep / | sed 's|/[^/]*$||' | sort -u |
        grep -E '^[a-z]+$|^vmm/[a-z_]+$|^bench/[a-z_]+$' | grep -v '^build')
layout() { # FILE: its Layout section's code block
    awk '/^## Layout/ {on = 1} on && /^```/ {n++; if (n == 2) exit; next} on && n == 1' "$1"
}
check() { # TEST FILE
    missing=
    block=$(layout "$2")
    for r in $rooms; do
        name=${r##*/}
        printf '%s\n' "$block" | grep -qE "(^|[ (])($r|$name)/" || missing="$missing $r"
    done
    if [ -z "$rooms" ]; then echo "SKIP $suite.$1: not a git checkout"
    elif [ -z "$missing" ]; then echo "PASS $suite.$1"
    else echo "FAIL $suite.$1: not named in $2's layout:$missing"; failed=1; fi
}
failed=0
check the_readme_names_every_room README.md
check architecture_md_names_every_room docs/architecture.md
exit $failed
