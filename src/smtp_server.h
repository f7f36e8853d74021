/* smtp_server.h - the smtpd worker: one event loop serving every SMTP
 * session on the listening sockets handed down by the master. */
#ifndef JM_SMTP_SERVER_H
#define JM_SMTP_SERVER_H

#include <stddef.h>
#include "conf.h"

/* Runs until told to stop by the master (IPC_STOP) or until the IPC socket
 * closes. `qdir` is the queue directory as seen from inside the jail.
 * Returns the process exit status. */
int smtpd_main(const struct config *cfg, const char *qdir, int ipc_fd, const int *listen_fds,
               size_t nlisten);

#endif
