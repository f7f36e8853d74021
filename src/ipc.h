/* ipc.h - the messages that travel between the master and its workers.
 *
 * Every message is one datagram on a SOCK_SEQPACKET socketpair, so its
 * boundaries are kept by the kernel and a short read is impossible. A message
 * is a fixed header followed by at most IPC_PAYLOAD_MAX bytes. The receiver
 * checks the type and the length against the datagram size before it looks at
 * the payload; the master never trusts a worker further than that.
 *
 *   type               direction           payload
 *   IPC_LOG            worker -> master    "<priority digit><text>" one log line, no NUL/CR/LF
 *   IPC_NEW_MESSAGE    smtpd  -> master    a queue id (QID_LEN chars [0-9A-Za-z])
 *                      master -> queue     the same, forwarded after validation
 *   IPC_STOP           master -> worker    empty: shut down: stop accepting, close
 *                                          idle sessions, let those in DATA end
 *                                          (up to shutdown_timeout), exit
 *   IPC_RUN_QUEUE      master -> queue     empty: run the whole queue now
 *   IPC_RETIRE         master -> smtpd     empty: stop accepting, let the open
 *                                          sessions end on their own, then exit
 *                                          (after a reload)
 */
#ifndef JM_IPC_H
#define JM_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IPC_PAYLOAD_MAX 2048

enum ipc_type {
    IPC_LOG = 1,
    IPC_NEW_MESSAGE = 2,
    IPC_STOP = 3,
    IPC_RUN_QUEUE = 4,
    IPC_RETIRE = 5,
};

struct ipc_header {
    uint32_t type;
    uint32_t length; /* payload bytes that follow */
};

struct ipc_msg {
    struct ipc_header hdr;
    char payload[IPC_PAYLOAD_MAX + 1]; /* NUL added by ipc_recv for convenience */
};

/* A SOCK_SEQPACKET pair, both ends close-on-exec. */
int ipc_pair(int fds[2]);

/* Sends one message; returns 0, or -1 with errno. It blocks when the socket
 * is blocking: workers keep theirs blocking with a send timeout (a log line
 * must not be lost because the master was busy for a moment), the master makes
 * its ends non-blocking (a stuck worker must never stall the master). */
int ipc_send(int fd, enum ipc_type type, const void *payload, size_t len);

/* Receives one message. Returns 1 with msg filled, 0 on end of file, -1 on error
 * (errno EAGAIN when nothing is waiting, EPROTO for a malformed message). */
int ipc_recv(int fd, struct ipc_msg *msg);

#endif
