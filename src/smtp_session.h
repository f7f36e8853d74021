/* smtp_session.h - one SMTP server session: the state machine that reads
 * commands and message data from a client and answers it.
 *
 *                 HELO/EHLO              MAIL               RCPT
 *   CONNECTED ---------------> READY ----------> MAIL ----------> RCPT
 *       ^                        ^                                  | DATA (354)
 *       |                        |  250 / 4xx / 5xx                 v
 *       |                        +------- COMMITTING <--- "." --- DATA
 *       |  any state: QUIT, a fatal error, a timeout -> CLOSING -> freed
 *
 * The session never blocks: it consumes what the bufferevent has read, and
 * while the spool commits a message it stops reading, so pipelined commands
 * wait in the input buffer until the 250 has been sent.
 */
#ifndef JM_SMTP_SESSION_H
#define JM_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "conf.h"
#include "policy.h"

struct event_base;
struct conn_table;
struct session;

#define SESSION_CHUNK (64 * 1024) /* bytes of DATA handled per step */

/* What the sessions of one worker share. Owned by smtp_server.c. */
struct smtpd_context {
    const struct config *cfg;
    struct event_base *base;
    int ipc_fd; /* to the master: IPC_NEW_MESSAGE */
    struct policy_tables policy;
    const char *local_domains[3];
    struct conn_table *per_client;
    unsigned nsessions;
    struct session *sessions;                           /* list of open sessions */
    void (*on_last_session)(struct smtpd_context *ctx); /* called when nsessions drops to 0 */
    char *line;                  /* one command line, cfg->max_command_line + 1 bytes */
    char scratch[SESSION_CHUNK]; /* unstuffed DATA on its way to the spool */
};

/* Takes over an accepted, non-blocking socket: greets the client and runs
 * the session. Returns -1 (and closes fd) when no memory is left. */
int session_start(struct smtpd_context *ctx, evutil_socket_t fd, const struct sockaddr *sa,
                  socklen_t salen, enum client_origin origin);

/* Shutdown: every session not in the middle of a message gets 421 and is
 * closed; those in DATA or committing are closed right after their reply. */
void sessions_shutdown(struct smtpd_context *ctx);

#endif
