/* ipc.c - datagrams between the master and its workers (see ipc.h). */
#include "ipc.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

int ipc_pair(int fds[2])
{
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds);
}

int ipc_send(int fd, enum ipc_type type, const void *payload, size_t len)
{
    if (len > IPC_PAYLOAD_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    struct ipc_header hdr = {.type = (uint32_t)type, .length = (uint32_t)len};
    struct iovec iov[2] = {
        {.iov_base = &hdr, .iov_len = sizeof hdr},
        {.iov_base = (void *)payload, .iov_len = len},
    };
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    ssize_t n;
    do {
        n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    return 0;
}

static bool type_known(uint32_t type)
{
    return type >= IPC_LOG && type <= IPC_RETIRE;
}

int ipc_recv(int fd, struct ipc_msg *msg)
{
    ssize_t n;
    do {
        n = recv(fd, msg, sizeof msg->hdr + IPC_PAYLOAD_MAX, MSG_DONTWAIT | MSG_TRUNC);
    } while (n < 0 && errno == EINTR);
    if (n <= 0)
        return (int)n;
    /* MSG_TRUNC makes n the real datagram size, so an oversized one is seen. */
    if ((size_t)n < sizeof msg->hdr || (size_t)n > sizeof msg->hdr + IPC_PAYLOAD_MAX ||
        msg->hdr.length != (size_t)n - sizeof msg->hdr || !type_known(msg->hdr.type)) {
        errno = EPROTO;
        return -1;
    }
    msg->payload[msg->hdr.length] = '\0';
    return 1;
}
