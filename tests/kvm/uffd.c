/* Restores through a page-fault handler (Firecracker's Uffd memory backend,
 * vmm/machine/uffd_backend.h), served by the tests' own handler (tests/lib/uffd_handler.h) in a
 * child process: the tiny guest counting (cmdline "count": each line checks a 64 KiB pattern it
 * wrote) is saved, then brought back in a new bellhop whose RAM the handler fills, on demand
 * or all at once, and counts on (and its own snapshot restores); the balloon's discards reach
 * the handler as remove events; a handler that dies, before set-up is served or while the guest
 * runs, or that never accepts or never answers, ends bellhop with one line and status 1, never
 * a hang. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/build_paths.h"
#include "tests/lib/check.h"
#include "tests/lib/output_file.h"
#include "tests/lib/uffd_handler.h"

#define GUEST_MIB 32

static char dir[] = "/tmp/bellhop-uffd.XXXXXX";
static char state[PATH_MAX], mem[PATH_MAX], handler_sock[PATH_MAX], api_sock[PATH_MAX], out[PATH_MAX];
static char counts_file[PATH_MAX];
static pid_t vmm, handler;
static int saved_count; /* the last whole count line the saved guest printed */

/* The first and the last "count N:" line's N in a file (0: none). */
static void counts_in(const char *path, int *first, int *last) {
    const char *text = test_file_text(path);
    *first = *last = 0;
    for (const char *p = text; (p = strstr(p, "count ")); p++) {
        int n;
        char colon;
        if ((p == text || p[-1] == '\n') && sscanf(p, "count %d%c", &n, &colon) == 2 && colon == ':') {
            if (!*first) *first = n;
            *last = n;
        }
    }
}

/* This host gives this user a userfaultfd that KVM's faults reach (not UFFD_USER_MODE_ONLY),
 * as bellhop makes it: else the test is skipped, saying why. */
static void need_userfaultfd(void) {
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC), why = errno;
    if (fd < 0 && why == EPERM) {
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev >= 0) fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC), close(dev);
    }
    if (fd < 0)
        test_skip("this host refuses this user a userfaultfd (%s): vm.unprivileged_userfaultfd=1 or access to "
                  "/dev/userfaultfd", strerror(why));
    close(fd);
    if (access("/dev/kvm", R_OK | W_OK) != 0) test_skip("no usable /dev/kvm");
}

static void make_dir(void) {
    CHECK(mkdtemp(dir));
    snprintf(state, sizeof state, "%s/vm.state", dir);
    snprintf(mem, sizeof mem, "%s/vm.mem", dir);
    snprintf(handler_sock, sizeof handler_sock, "%s/uffd.sock", dir);
    snprintf(api_sock, sizeof api_sock, "%s/api.sock", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(counts_file, sizeof counts_file, "%s/counts", dir);
}

/* The build's `binary` (bellhop, or bellhop-hooks) run with args, its output into `to`, made
 * anew before this returns (nothing read from it is an earlier run's). */
static pid_t spawn(const char *binary, const char *const *args, const char *to) {
    const char *bellhop = test_build_file(binary);
    int o = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(o >= 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        dup2(o, 1), dup2(o, 2), dup2(in, 0);
        const char *argv[16] = {bellhop, "run"};
        for (unsigned i = 0; args[i] && i < 13; i++) argv[i + 2] = args[i];
        execv(bellhop, (char *const *)argv);
        _exit(127);
    }
    close(o);
    return pid;
}

static pid_t spawn_bellhop(const char *const *args, const char *to) { return spawn("bellhop", args, to); }

/* One request to the API at sock: the HTTP status, the answer's body in body (may be NULL). */
static int api(const char *sock, const char *method, const char *path, const char *req_body, char *body, size_t cap) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, sock, strlen(sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    for (double until = test_now_s() + 10; connect(fd, (struct sockaddr *)&a, sizeof a) != 0; usleep(20000))
        CHECK_MSG(test_now_s() < until, "connect %s: %s", sock, strerror(errno));
    char req[PATH_MAX * 3], answer[4096];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                                      "Content-Length: %zu\r\n\r\n%s", method, path, strlen(req_body), req_body);
    CHECK(n > 0 && (size_t)n < sizeof req && write(fd, req, (size_t)n) == n);
    size_t got = 0;
    for (struct pollfd p = {.fd = fd, .events = POLLIN}; got < sizeof answer - 1 && poll(&p, 1, 60000) > 0;) {
        ssize_t r = read(fd, answer + got, sizeof answer - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
        answer[got] = 0;
        const char *end = strstr(answer, "\r\n\r\n"), *cl = strstr(answer, "Content-Length: ");
        if (end && got >= (size_t)(end + 4 - answer) + (cl ? strtoul(cl + 16, NULL, 10) : 0)) break;
    }
    answer[got] = 0;
    close(fd);
    CHECK_MSG(strncmp(answer, "HTTP/1.1 ", 9) == 0, "%s %s: '%s'", method, path, answer);
    const char *end = strstr(answer, "\r\n\r\n");
    if (body) snprintf(body, cap, "%s", end ? end + 4 : "");
    return atoi(answer + 9);
}

/* The saved guest: counting (and with `balloon`, serving a balloon instead), paused and saved
 * to state and mem by a bellhop that is then killed. */
static void make_snapshot(bool balloon) {
    char config[PATH_MAX], body[PATH_MAX * 2 + 200];
    snprintf(config, sizeof config, "%s/vm.json", dir);
    FILE *f = fopen(config, "w");
    CHECK(f);
    fprintf(f, "{\"boot-source\": {\"kernel_image_path\": \"%s\", \"boot_args\": \"%s\"},\n"
               " \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": %d}%s}\n", test_guest_elf(),
            balloon ? "balloon" : "count", GUEST_MIB,
            balloon ? ",\n \"balloon\": {\"amount_mib\": 0, \"deflate_on_oom\": false}" : "");
    fclose(f);
    char first[PATH_MAX + 8];
    snprintf(first, sizeof first, "%s.first", out);
    pid_t pid = spawn_bellhop((const char *const[]){"--config-file", config, "--api-sock", api_sock, NULL}, first);
    /* (its pattern written: "counting" comes after it) */
    CHECK_MSG(test_wait_for_text(first, balloon ? "serving the balloon" : "counting", 60), "the guest did not start: %s",
              test_file_text(first));
    CHECK_EQ(api(api_sock, "PATCH", "/vm", "{\"state\": \"Paused\"}", NULL, 0), 204);
    snprintf(body, sizeof body, "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\"}",
             state, mem);
    CHECK_EQ(api(api_sock, "PUT", "/snapshot/create", body, NULL, 0), 204);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    int unused;
    counts_in(first, &unused, &saved_count);
    unlink(api_sock);
}

/* The tests' handler in a child, listening before this returns; its counts go to counts_file
 * when it is done, and its status is 0 when it served without a fault of its own. */
static void start_handler(enum uffd_serve_mode mode, long stop_after) {
    int lfd = uffd_handler_listen(handler_sock);
    CHECK_MSG(lfd >= 0, "%s: %s", handler_sock, strerror(errno));
    handler = fork();
    CHECK(handler >= 0);
    if (handler == 0) {
        struct uffd_handler_options o = {.mode = mode, .timeout_ms = 30000, .stop_after = stop_after};
        struct uffd_handler_counts c = {0};
        char err[300] = "";
        int rc = uffd_handler_serve(lfd, mem, &o, &c, err, sizeof err);
        FILE *f = fopen(counts_file, "w");
        if (f) fprintf(f, "%d %llu %llu %llu %llu %llu %s\n", rc, (unsigned long long)c.faults,
                       (unsigned long long)c.pages_copied, (unsigned long long)c.pages_zeroed,
                       (unsigned long long)c.pages_removed, (unsigned long long)c.guest_pages, err), fclose(f);
        _exit(rc == 0 ? 0 : 1);
    }
    close(lfd);
}

/* The handler's end, once bellhop's is gone: what it served. */
static struct uffd_handler_counts handler_done(void) {
    int status;
    CHECK(waitpid(handler, &status, 0) == handler);
    handler = 0;
    struct uffd_handler_counts c = {0};
    int rc = -1;
    unsigned long long v[5];
    FILE *f = fopen(counts_file, "r");
    char err[300] = "";
    if (f && fscanf(f, "%d %llu %llu %llu %llu %llu %299[^\n]", &rc, &v[0], &v[1], &v[2], &v[3], &v[4], err) >= 6)
        c = (struct uffd_handler_counts){.faults = v[0], .pages_copied = v[1], .pages_zeroed = v[2],
                                         .pages_removed = v[3], .guest_pages = v[4]};
    if (f) fclose(f);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0 && rc == 0, "the handler failed: %s", err);
    return c;
}

static void stop_vmm(void) {
    if (vmm > 0) kill(vmm, SIGKILL), waitpid(vmm, NULL, 0);
    vmm = 0;
    const char *text = test_file_text(out);
    CHECK_MSG(!strstr(text, "ERROR: AddressSanitizer") && !strstr(text, "WARNING: ThreadSanitizer") &&
                  !strstr(text, "runtime error"), "%s", text);
}

static void remove_dir(void) {
    if (handler > 0) kill(handler, SIGKILL), waitpid(handler, NULL, 0);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* The restored guest counts on from where it was saved (a whole count line, which ends in
 * "announced"), its memory as it wrote it. */
static void counts_on(void) {
    CHECK_MSG(test_wait_for_text(out, "announced", 60), "saved at count %d; restored: %s", saved_count, test_file_text(out));
    int first, last;
    counts_in(out, &first, &last);
    /* (the line the pause cut short, if any, is the next one printed) */
    CHECK_MSG(first == saved_count + 1 || first == saved_count + 2, "saved at count %d, restored from %d", saved_count,
              first);
    CHECK_MSG(strstr(test_file_text(out), "memory ok") && !strstr(test_file_text(out), "memory BAD"), "the restored guest's memory "
              "differs: %s", test_file_text(out));
}

TEST_TIMEOUT(a_guest_restored_through_an_on_demand_handler_counts_on, 120) {
    need_userfaultfd();
    make_dir();
    make_snapshot(false);
    start_handler(UFFD_SERVE_ON_DEMAND, 0);
    vmm = spawn_bellhop((const char *const[]){"--restore", state, "--mem-uffd", handler_sock, NULL}, out);
    counts_on();
    stop_vmm();
    struct uffd_handler_counts c = handler_done();
    /* what the guest touched (its code, stacks, the 64 KiB pattern), not all of its RAM */
    CHECK_MSG(c.faults > 16 && c.pages_copied > 16 && c.pages_copied < c.guest_pages / 2,
              "%llu faults, %llu of %llu pages copied", (unsigned long long)c.faults,
              (unsigned long long)c.pages_copied, (unsigned long long)c.guest_pages);
    remove_dir();
}

TEST_TIMEOUT(a_guest_restored_through_the_api_and_an_all_at_once_handler_counts_on, 120) {
    need_userfaultfd();
    make_dir();
    make_snapshot(false);
    start_handler(UFFD_SERVE_ALL_AT_ONCE, 0);
    vmm = spawn_bellhop((const char *const[]){"--api-sock", api_sock, NULL}, out);
    char body[PATH_MAX * 2 + 200], answer[1024];
    snprintf(body, sizeof body, "{\"snapshot_path\": \"%s\", \"mem_backend\": {\"backend_type\": \"Uffd\", "
                                "\"backend_path\": \"%s\"}, \"resume_vm\": true}", state, handler_sock);
    int code = api(api_sock, "PUT", "/snapshot/load", body, answer, sizeof answer);
    CHECK_MSG(code == 204, "snapshot/load: %d %s", code, answer);
    counts_on();
    stop_vmm();
    struct uffd_handler_counts c = handler_done();
    CHECK_MSG(c.pages_copied == c.guest_pages && c.guest_pages == GUEST_MIB * 256u, "%llu of %llu pages copied",
              (unsigned long long)c.pages_copied, (unsigned long long)c.guest_pages);
    remove_dir();
}

/* A snapshot of a guest restored on demand reads all of its RAM (every page not yet served is
 * asked of the handler), and restores from a file as any other does. */
TEST_TIMEOUT(a_snapshot_of_a_guest_restored_through_a_handler_restores_too, 120) {
    need_userfaultfd();
    make_dir();
    make_snapshot(false);
    start_handler(UFFD_SERVE_ON_DEMAND, 0);
    vmm = spawn_bellhop((const char *const[]){"--restore", state, "--mem-uffd", handler_sock, "--api-sock", api_sock,
                                              NULL}, out);
    counts_on();
    char body[PATH_MAX * 3];
    CHECK_EQ(api(api_sock, "PATCH", "/vm", "{\"state\": \"Paused\"}", NULL, 0), 204);
    snprintf(body, sizeof body, "{\"snapshot_path\": \"%s.2\", \"mem_file_path\": \"%s.2\"}", state, mem);
    CHECK_EQ(api(api_sock, "PUT", "/snapshot/create", body, NULL, 0), 204);
    int unused;
    counts_in(out, &unused, &saved_count);
    stop_vmm();
    struct uffd_handler_counts c = handler_done();
    CHECK_MSG(c.pages_copied == c.guest_pages, "%llu of %llu pages copied", (unsigned long long)c.pages_copied,
              (unsigned long long)c.guest_pages);
    char state2[PATH_MAX + 2], mem2[PATH_MAX + 2];
    snprintf(state2, sizeof state2, "%s.2", state);
    snprintf(mem2, sizeof mem2, "%s.2", mem);
    vmm = spawn_bellhop((const char *const[]){"--restore", state2, "--mem-file", mem2, NULL}, out);
    counts_on();
    stop_vmm();
    remove_dir();
}

TEST_TIMEOUT(the_balloon_s_discards_reach_the_handler_as_remove_events, 120) {
    need_userfaultfd();
    make_dir();
    make_snapshot(true);
    start_handler(UFFD_SERVE_ON_DEMAND, 0);
    vmm = spawn_bellhop((const char *const[]){"--restore", state, "--mem-uffd", handler_sock, "--api-sock", api_sock,
                                              NULL}, out);
    CHECK_EQ(api(api_sock, "PATCH", "/balloon", "{\"amount_mib\": 4}", NULL, 0), 204);
    CHECK_MSG(test_wait_for_text(out, "balloon: target 1024 pages, actual 1024", 30), "%s", test_file_text(out));
    CHECK_EQ(api(api_sock, "PATCH", "/balloon", "{\"amount_mib\": 0}", NULL, 0), 204);
    CHECK_MSG(test_wait_for_text(out, "balloon: target 0 pages, actual 0", 30), "%s", test_file_text(out));
    stop_vmm();
    struct uffd_handler_counts c = handler_done();
    CHECK_MSG(c.pages_removed >= 1024, "%llu pages removed", (unsigned long long)c.pages_removed);
    remove_dir();
}

/* bellhop has ended, by itself, within `seconds`: with status 1 and the one line `want` (no
 * crash report, no other line of bellhop's). */
static void ends_with_one_line(const char *want, double seconds) {
    int status = 0;
    pid_t got = 0;
    for (double until = test_now_s() + seconds; (got = waitpid(vmm, &status, WNOHANG)) == 0 && test_now_s() < until;)
        usleep(20000);
    CHECK_MSG(got == vmm, "bellhop still runs %.0f s on: %s", seconds, test_file_text(out));
    vmm = 0;
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 1, "bellhop's status %d: %s", status, test_file_text(out));
    const char *text = test_file_text(out);
    unsigned lines = 0;
    for (const char *p = text; (p = strstr(p, "bellhop: ")); p++) lines += p == text || p[-1] == '\n';
    CHECK_MSG(strstr(text, want) && lines == 1, "wanted the one line '%s': %s", want, text);
    CHECK_MSG(!strstr(text, "ERROR: AddressSanitizer") && !strstr(text, "WARNING: ThreadSanitizer") &&
                  !strstr(text, "runtime error"), "%s", text);
}

/* A handler that takes the message and then dies, or sleeps, with the userfaultfd. */
static void start_silent_handler(bool dies) {
    int lfd = uffd_handler_listen(handler_sock);
    CHECK(lfd >= 0);
    handler = fork();
    CHECK(handler >= 0);
    if (handler == 0) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        char buf[4096], control[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {buf, sizeof buf};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
        if (c < 0 || recvmsg(c, &m, 0) <= 0) _exit(1);
        if (!dies) sleep(60);
        _exit(0);
    }
    close(lfd);
}

TEST_TIMEOUT(a_handler_that_dies_during_set_up_fails_the_restore_in_one_line, 60) {
    need_userfaultfd();
    make_dir();
    make_snapshot(false);
    start_silent_handler(true);
    vmm = spawn_bellhop((const char *const[]){"--restore", state, "--mem-uffd", handler_sock, NULL}, out);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "bellhop: the page-fault handler (%s) went away\n", handler_sock);
    ends_with_one_line(want, 10);
    remove_dir();
}

/* The handler serves some of the guest's faults, then dies with a vCPU waiting for a page. */
TEST_TIMEOUT(a_handler_killed_mid_restore_ends_the_vmm_with_one_line_and_status_1, 60) {
    need_userfaultfd();
    make_dir();
    make_snapshot(false);
    start_handler(UFFD_SERVE_ON_DEMAND, 20); /* the guest touches ~33 pages to count on */
    vmm = spawn_bellhop((const char *const[]){"--restore", state, "--mem-uffd", handler_sock, NULL}, out);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "bellhop: the page-fault handler (%s) went away\n", handler_sock);
    ends_with_one_line(want, 20);
    struct uffd_handler_counts c = handler_done();
    CHECK_MSG(c.faults == 21, "the handler stopped at fault %llu", (unsigned long long)c.faults);
    remove_dir();
}

/* Killed outright while the guest counts: bellhop sees the handler's end at once. */
TEST_TIMEOUT(a_handler_killed_while_the_guest_runs_ends_the_vmm_with_one_line, 60) {
    need_userfaultfd();
    make_dir();
    make_snapshot(false);
    start_handler(UFFD_SERVE_ON_DEMAND, 0);
    vmm = spawn_bellhop((const char *const[]){"--restore", state, "--mem-uffd", handler_sock, NULL}, out);
    counts_on();
    kill(handler, SIGKILL);
    waitpid(handler, NULL, 0);
    handler = 0;
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "bellhop: the page-fault handler (%s) went away\n", handler_sock);
    ends_with_one_line(want, 10);
    remove_dir();
}

TEST_TIMEOUT(a_handler_that_never_answers_fails_the_restore_after_10_s, 60) {
    /* seconds of waiting on the path the other handler failures take under a sanitizer too */
    if (test_sanitized_build()) test_skip("a sanitizer build: the plain build waits the bound out");
    need_userfaultfd();
    make_dir();
    make_snapshot(false);
    start_silent_handler(false);
    double t0 = test_now_s();
    vmm = spawn_bellhop((const char *const[]){"--restore", state, "--mem-uffd", handler_sock, NULL}, out);
    char want[PATH_MAX + 96];
    snprintf(want, sizeof want, "bellhop: the page-fault handler (%s) did not serve bellhop's set-up within 10 s\n",
             handler_sock);
    ends_with_one_line(want, 20);
    CHECK_MSG(test_now_s() - t0 >= 9.5, "gave up after %.1f s", test_now_s() - t0);
    remove_dir();
}

/* The seccomp mode of pid's thread named `name` (-1: no such thread). */
static int thread_seccomp(pid_t pid, const char *name) {
    char path[300], line[256];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    CHECK(d);
    int found = -1;
    for (struct dirent *e; found < 0 && (e = readdir(d));) {
        snprintf(path, sizeof path, "/proc/%d/task/%s/status", (int)pid, e->d_name);
        FILE *f = e->d_name[0] != '.' ? fopen(path, "r") : NULL;
        if (!f) continue;
        char comm[32] = "";
        int mode = -1;
        while (fgets(line, sizeof line, f)) {
            sscanf(line, "Name:\t%31s", comm);
            sscanf(line, "Seccomp:\t%d", &mode);
        }
        fclose(f);
        if (strcmp(comm, name) == 0) found = mode;
    }
    closedir(d);
    return found;
}

/* The thread that watches the handler confines itself to its role, uffd: it runs filtered,
 * and a call outside the role (build/bellhop-hooks' probe) stops the VMM with the sandbox's line. */
TEST_TIMEOUT(the_watching_thread_runs_under_its_own_filter, 120) {
    need_userfaultfd();
    if (test_sanitized_build()) test_skip("a sanitizer build has no sandbox");
    make_dir();
    make_snapshot(false);
    start_handler(UFFD_SERVE_ON_DEMAND, 0);
    vmm = spawn_bellhop((const char *const[]){"--restore", state, "--mem-uffd", handler_sock, NULL}, out);
    counts_on();
    CHECK_EQ(thread_seccomp(vmm, "uffd"), 2);
    stop_vmm();
    handler_done();
    start_handler(UFFD_SERVE_ON_DEMAND, 0);
    setenv("BELLHOP_SANDBOX_PROBE", "uffd", 1);
    vmm = spawn("bellhop-hooks", (const char *const[]){"--restore", state, "--mem-uffd", handler_sock, NULL}, out);
    unsetenv("BELLHOP_SANDBOX_PROBE");
    int status;
    CHECK(waitpid(vmm, &status, 0) == vmm);
    vmm = 0;
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 159 &&
                  strstr(test_file_text(out), "bellhop: seccomp: the uffd thread made a forbidden system call: socket("),
              "status %d: %s", status, test_file_text(out));
    remove_dir();
}

/* A handler whose backlog is full (it never accepts): bellhop's connect gives up after 5 s. */
TEST_TIMEOUT(a_handler_that_never_accepts_fails_the_restore_after_5_s, 60) {
    /* seconds of waiting on the path the other handler failures take under a sanitizer too */
    if (test_sanitized_build()) test_skip("a sanitizer build: the plain build waits the bound out");
    need_userfaultfd();
    make_dir();
    make_snapshot(false);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), filler = -1;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, handler_sock, strlen(handler_sock) + 1);
    CHECK(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(lfd, 0) == 0);
    /* connections nobody accepts, until one more would wait */
    for (unsigned i = 0; i < 8; i++) {
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
            close(c);
            break;
        }
        filler = c;
    }
    CHECK(filler >= 0);
    double t0 = test_now_s();
    vmm = spawn_bellhop((const char *const[]){"--restore", state, "--mem-uffd", handler_sock, NULL}, out);
    char want[PATH_MAX + 96];
    snprintf(want, sizeof want, "bellhop: the page-fault handler's socket %s: nobody accepted within 5 s\n", handler_sock);
    ends_with_one_line(want, 15);
    CHECK_MSG(test_now_s() - t0 >= 4.5, "gave up after %.1f s", test_now_s() - t0);
    remove_dir();
}

TEST(a_socket_without_a_handler_is_refused_with_a_reason) {
    need_userfaultfd();
    make_dir();
    make_snapshot(false);
    vmm = spawn_bellhop((const char *const[]){"--restore", state, "--mem-uffd", handler_sock, NULL}, out);
    char want[PATH_MAX + 96];
    snprintf(want, sizeof want, "bellhop: the page-fault handler's socket %s: No such file or directory\n", handler_sock);
    ends_with_one_line(want, 10);
    /* through the API: a 400, and the API goes on waiting for a load or a configuration */
    vmm = spawn_bellhop((const char *const[]){"--api-sock", api_sock, NULL}, out);
    char body[PATH_MAX * 2 + 200], answer[1024];
    snprintf(body, sizeof body, "{\"snapshot_path\": \"%s\", \"mem_backend\": {\"backend_type\": \"Uffd\", "
                                "\"backend_path\": \"%s\"}}", state, handler_sock);
    int code = api(api_sock, "PUT", "/snapshot/load", body, answer, sizeof answer);
    CHECK_MSG(code == 400 && strstr(answer, "No such file or directory"), "%d %s", code, answer);
    CHECK_EQ(api(api_sock, "GET", "/", "", NULL, 0), 200);
    stop_vmm();
    remove_dir();
}
