/* spool.h - the spool writer: how smtpd puts a message on stable storage.
 *
 * A message is written to tmp/<qid>, then committed: fsync of the file,
 * rename into msg/<qid> (never over an existing file), fsync of msg/. Only
 * after that does the session say 250. Commits are done by one background
 * thread in batches: every message that finished while the previous batch was
 * being synced is synced in the next one, and the msg/ directory is synced
 * once per batch (group commit). The result comes back to the event loop as a
 * callback, so the loop never waits for the disk.
 */
#ifndef JM_SPOOL_H
#define JM_SPOOL_H

#include <stddef.h>
#include "queue.h"

struct event_base;
struct spool;

/* Called in the event loop when a commit has ended: ok is 1 when the message
 * is safely in msg/, 0 when not (err says why; the temporary file is gone). */
typedef void (*spool_done_fn)(void *arg, int ok, const char *err);

/* Once per process, before the first spool_open. */
int spool_init(struct event_base *base, const char *qdir, char *err, size_t errlen);
void spool_shutdown(void);

/* Starts a message: picks a new queue id (written into env->qid), creates
 * tmp/<qid> exclusively, writes the envelope. NULL with err on failure. */
struct spool *spool_open(struct queue_envelope *env, char *err, size_t errlen);

const char *spool_qid(const struct spool *sp);

/* Appends message bytes (buffered). -1 with errno on a write error; the
 * session then answers 451 at the end of DATA and calls spool_abort. */
int spool_write(struct spool *sp, const void *buf, size_t len);

/* Bytes of message written so far. */
size_t spool_size(const struct spool *sp);

/* Gives up the message: closes and unlinks the temporary file, frees sp. */
void spool_abort(struct spool *sp);

/* Flushes, then hands the message to the commit thread. sp is consumed:
 * done(arg, ...) will be called exactly once, later, from the event loop. */
void spool_commit(struct spool *sp, spool_done_fn done, void *arg);

#endif
