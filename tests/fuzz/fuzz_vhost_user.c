/* A vhost-user backend that says anything: the fuzzer's input is every byte the backend
 * sends, read by the frontend through a real socket while it negotiates, reads the
 * configuration space, starts two rings and stops them. Whatever comes, each call ends (the
 * stream ends where the input does) with success or a reason, and reads nothing past what it
 * was sent. */
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "devices/vhost_user.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int sv[2];
    if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (write(sv[1], data, size) != (ssize_t)size) abort();
    shutdown(sv[1], SHUT_WR); /* the backend says no more: reads end there */
    struct vhost_user vu;
    char err[256];
    int efd = eventfd(0, EFD_CLOEXEC);
    if (vhost_user_negotiate(&vu, sv[0], err, sizeof err) == 0) {
        uint8_t config[VHOST_USER_CONFIG_MAX];
        (void)vhost_user_get_config(&vu, config, 60, err, sizeof err);
        struct vhost_user_region r = {0, 1 << 20, 0x7f0000000000ull, 0, efd};
        struct vhost_user_vring rings[2] = {{8, 0, 0x1000, 0x2000, 0x3000, efd, efd}, {8, 0, 0x4000, 0x5000, 0x6000, efd, efd}};
        if (vhost_user_start(&vu, 1ull << 32, &r, 1, rings, 2, err, sizeof err) == 0) (void)vhost_user_stop(&vu, 2, err, sizeof err);
        vhost_user_close(&vu);
    }
    close(efd);
    close(sv[1]);
    return 0;
}
