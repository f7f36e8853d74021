/* queue_worker.h - the queue process: scheduler and SMTP client.
 *
 * Scans the queue at start, delivers every message to the smarthost over
 * SMTP, retries temporary failures with back-off, marks permanent failures,
 * and removes a message file when no recipient is left pending. New messages
 * arrive as IPC_NEW_MESSAGE from the master; IPC_RUN_QUEUE runs everything
 * now; IPC_STOP ends the process. */
#ifndef JM_QUEUE_WORKER_H
#define JM_QUEUE_WORKER_H

#include "conf.h"

int queue_worker_main(const struct config *cfg, const char *qdir, int ipc_fd);

#endif
