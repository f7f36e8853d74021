/* scheduler.h - when each queued message is tried next (pure, no I/O).
 *
 * A min-heap of (next attempt, queue id) plus an index by id, so that a
 * message is known once whatever tells us about it (start-up scan, smtpd's
 * announcement, a periodic scan). A message is either WAITING (in the heap)
 * or IN FLIGHT (handed to a delivery, not in the heap): sched_take_due moves
 * it to flight, sched_release brings it back or forgets it. So a message is
 * never handed to two deliveries at once.
 *
 * Ties in time are broken by queue id, which sorts by arrival (queue.h), so
 * the order of deliveries is deterministic: oldest first.
 *
 * Times are Unix seconds (int64_t); the caller passes `now`, which keeps this
 * module pure and testable.
 */
#ifndef JM_SCHEDULER_H
#define JM_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"

struct scheduler;

struct scheduler *sched_new(void);
void sched_free(struct scheduler *s);

/* Schedules qid at `when`. A message already waiting is moved earlier when
 * `when` is earlier (never later); a message in flight is left alone (its
 * delivery decides its next time). Returns 1 when qid was new, 0 when it was
 * known, -1 when qid is not a valid queue id or memory ran out. */
int sched_add(struct scheduler *s, const char *qid, int64_t when);

/* True when qid is waiting or in flight. */
bool sched_known(const struct scheduler *s, const char *qid);

/* Makes every waiting message due at `now` (a queue run on demand). */
void sched_all_due(struct scheduler *s, int64_t now);

/* Takes the earliest waiting message whose time is <= now: copies its id to
 * qid and marks it in flight. Returns false when none is due. */
bool sched_take_due(struct scheduler *s, int64_t now, char qid[QID_SIZE]);

/* The earliest time of a waiting message; false when nothing waits. */
bool sched_next_time(const struct scheduler *s, int64_t *when);

/* Ends the flight of qid: it waits again until `when`, or is forgotten when
 * when < 0 (delivered, removed, moved aside). Unknown ids are ignored. A
 * waiting message may be forgotten too. */
void sched_release(struct scheduler *s, const char *qid, int64_t when);

size_t sched_waiting(const struct scheduler *s);
size_t sched_in_flight(const struct scheduler *s);

/* The delay before the next attempt after a temporary failure: the age of
 * the message (now - arrival) clamped to [retry_min, max_delay]. The first
 * retry thus comes after retry_min, and the delays roughly double up to
 * max_delay (the queue interval). A retry_min of 0 counts as 1 s, a max_delay
 * below retry_min as retry_min. An arrival in the future counts as now. */
int64_t sched_backoff(int64_t arrival, int64_t now, unsigned retry_min, unsigned max_delay);

#endif
