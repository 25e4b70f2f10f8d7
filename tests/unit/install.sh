#!/bin/sh
# What `make install` puts in a prefix (make test installs into build/install, PREFIX=/usr):
# a program using the loop library builds with pkg-config alone and runs; the installed
# bellhop finds its tiny guest; the man page shows every option --help shows.
suite=install
tests="a_loop_program_builds_with_pkg_config_and_runs the_installed_bellhop_knows_its_version
       the_man_page_has_every_option the_readme_names_every_option"
if [ "${1:-}" = --list ]; then
    for t in $tests; do echo "$suite.$t"; done
    exit 0
fi
build=$(cd "$(dirname "$0")/../.." && pwd)
root=$build/install
case $build in */asan|*/tsan|*/clang)
    for t in $tests; do echo "SKIP $suite.$t: installed from the plain build only"; done; exit 0 ;;
esac
if [ ! -x $root/usr/bin/bellhop ]; then
    for t in $tests; do echo "SKIP $suite.$t: nothing installed in $root (make test installs it)"; done; exit 0
fi
failed=0
pass() { echo "PASS $suite.$1"; }
fail() { echo "FAIL $suite.$1: $2"; failed=1; }
tmp=$(mktemp -d /tmp/bellhop-install.XXXXXX)
trap 'rm -rf $tmp' EXIT
cat > $tmp/prog.c <<'PROG'
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <lib/async/task.h>
#include <stdio.h>

static void hello(async_dispatcher_t *d, async_task_t *t, zx_status_t st) {
    (void)t;
    printf("task ran: %d\n", st);
    async_loop_quit(async_loop_from_dispatcher(d));
}

int main(void) {
    async_loop_t *loop;
    if (async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop) != ZX_OK) return 1;
    async_task_t t = {.handler = hello, .deadline = ZX_TIME_INFINITE_PAST};
    async_post_task(async_loop_get_dispatcher(loop), &t);
    async_loop_run(loop, ZX_TIME_INFINITE, false);
    async_loop_destroy(loop);
    return 0;
}
PROG
export PKG_CONFIG_PATH=$root/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$root
if cc -std=gnu11 -o $tmp/prog $tmp/prog.c $(pkg-config --cflags --libs bellhop-loop) 2> $tmp/cc.err &&
   [ "$($tmp/prog)" = "task ran: 0" ]; then
    pass a_loop_program_builds_with_pkg_config_and_runs
else
    fail a_loop_program_builds_with_pkg_config_and_runs "$(pkg-config --cflags --libs bellhop-loop 2>&1) $(head -3 $tmp/cc.err)"
fi
v=$($root/usr/bin/bellhop --version)
case $v in "bellhop "[0-9]*) pass the_installed_bellhop_knows_its_version ;; *) fail the_installed_bellhop_knows_its_version "$v" ;; esac
MANWIDTH=120 man -P cat -l $root/usr/share/man/man1/bellhop.1 2>/dev/null | sed 's/.\x08//g' > $tmp/man.txt
missing=
for o in $($root/usr/bin/bellhop --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    grep -q -- "$o" $tmp/man.txt || missing="$missing $o"
done
[ -s $tmp/man.txt ] && [ -z "$missing" ] && pass the_man_page_has_every_option ||
    fail the_man_page_has_every_option "missing:$missing"
# The README's command-line block and --help name the same options.
readme=$build/../README.md
if [ -f "$readme" ]; then
    sed -n '/^## The command line/,/^## /p' "$readme" | grep -o -- '--[a-z][a-z-]*' | grep -v -- '--help' | sort -u > $tmp/readme.opts
    { $root/usr/bin/bellhop --help; } | grep -o -- '--[a-z][a-z-]*' | grep -v -- '--help' | sort -u > $tmp/help.opts
    d=$(diff $tmp/help.opts $tmp/readme.opts | grep '^[<>]' | tr '\n' ' ')
    [ -z "$d" ] && pass the_readme_names_every_option || fail the_readme_names_every_option "help < > README: $d"
else
    echo "SKIP $suite.the_readme_names_every_option: no README beside the build"
fi
exit $failed
