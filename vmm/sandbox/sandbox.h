/* seccomp sandbox: once set up, each of bellhop's threads confines itself to the system calls
 * its role needs (one BPF program per role, built from tools/sandbox_rules.c's allowlists at
 * build time and loaded by the thread itself).
 *
 *   main  waits for the VM to end and tears it down; prints crash reports (so it may load
 *         libcapstone: read-only opens and executable mappings);
 *   loop  bells, virtqueues, disk and tap I/O, timers, console input, virtio-vsock's Unix
 *         sockets (accepted, connected, shut down: AF_UNIX stream sockets only);
 *   vcpu  KVM_RUN and the vCPU's register ioctls, inline device dispatch, creating the other
 *         vCPUs' threads (which inherit this filter and then load their own);
 *   uffd  a restore through a page-fault handler: watches the handler's socket, and when it
 *         goes away unregisters guest RAM from the userfaultfd (vmm/machine/uffd_backend.h).
 *
 * A forbidden call stops the whole VMM at once: SIGSYS, one line on stderr naming the thread,
 * the call and its first arguments, the terminal restored, exit status SANDBOX_EXIT_STATUS.
 * Sanitizer builds have no sandbox (their runtimes make calls no allowlist should carry). */
#ifndef BELLHOP_VMM_SANDBOX_SANDBOX_H
#define BELLHOP_VMM_SANDBOX_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

/* api-main and api-loop: main and loop of a VMM with a control plane (vmm/control/api.h), which
 * also remove the API's socket at the end and accept its clients (main removes a vsock
 * device's socket too, and loop accepts vsock clients, so only the API's other calls differ). */
/* net: bellhop-net's one thread (user-mode networking in a process of its own, net/user.h): a
 * loop's calls and the guest's connections' Internet sockets. */
enum sandbox_role {
    SANDBOX_MAIN, SANDBOX_LOOP, SANDBOX_VCPU, SANDBOX_API_MAIN, SANDBOX_API_LOOP, SANDBOX_UFFD, SANDBOX_NET,
    SANDBOX_ROLES
};

#define SANDBOX_EXIT_STATUS 159 /* 128 + SIGSYS, as a shell reports a death by SIGSYS */

/* False in sanitizer builds. */
bool sandbox_supported(void);

/* Confines the calling thread to `role`'s allowlist (threads it creates later inherit it).
 * Returns 0, or -1 with the reason in err. */
int sandbox_enter(enum sandbox_role role, char *err, size_t errlen);

/* True once the calling thread has entered a sandbox or adopted one. */
bool sandbox_active(void);
/* For a thread created by a sandboxed thread of the same role: it already runs under that
 * filter (inherited at creation), which is now recorded rather than loaded twice. */
void sandbox_adopt(enum sandbox_role role);

/* The test hook of `bellhop run`'s BELLHOP_SANDBOX_PROBE=ROLE, built only into the test
 * binary build/bellhop-hooks (BELLHOP_TEST_HOOKS; in build/bellhop it does nothing): a
 * thread of that role calls sandbox_probe() right after entering its sandbox, and makes a
 * call no role allows: socket() for a datagram socket (the loop may make AF_UNIX stream
 * sockets, for virtio-vsock; nobody may make any other kind). Under the sandbox that stops
 * the VMM; without one it is allowed, which the probe reports on stderr. */
void sandbox_probe(enum sandbox_role role);

#endif
