/* queue.h - queue files: the on-disk truth about every accepted message.
 *
 * Layout under the queue directory (mode 0700, owned by the run-as user):
 *   tmp/      messages being received, each flock()ed by its writer until its
 *             commit ends; the scan removes only unlocked ones (never acknowledged)
 *   msg/      complete messages, one file per message, named by queue id
 *   corrupt/  files that could not be parsed, moved aside and logged
 *
 * File format, version 1 (text envelope, then the message exactly as it will
 * be sent, CRLF line ends, not dot-stuffed):
 *
 *   jailmail-queue 1\n
 *   id <qid>\n
 *   arrival <unix seconds>\n
 *   client <address>\n            numeric, or "local" for the submission socket
 *   clientname <name>\n           confirmed name, may be empty
 *   helo <helo argument>\n        may be empty
 *   proto <SMTP|ESMTP|...>\n
 *   body <7BIT|8BITMIME>\n
 *   msgid <Message-ID value>\n    may be empty (smtpd writes the envelope before it
 *                                 has seen the message, so it leaves this empty)
 *   sender <address>\n            empty for the null sender <>
 *   rcpt <S> <address>\n          one per recipient; S is one status byte
 *   ...
 *   data\n
 *   <message>
 *
 * The status byte of a recipient is rewritten in place with one pwrite when
 * its delivery ends: '-' pending, 'D' delivered, 'F' failed permanently. A
 * one-byte write cannot be torn, so the file is always well-formed. No field
 * may contain CR, LF or NUL; the writer refuses such values.
 */
#ifndef JM_QUEUE_H
#define JM_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define QUEUE_FORMAT_VERSION 1
#define QID_LEN 14 /* characters, [0-9A-Za-z] */
#define QID_SIZE (QID_LEN + 1)
#define QUEUE_ADDR_MAX 512 /* bytes of one address, more than RFC 5321's 256 path */
#define QUEUE_FIELD_MAX 1024
#define QUEUE_ENVELOPE_MAX (64 * 1024 + 1100 * 1000) /* generous bound for the reader */

enum rcpt_status {
    RCPT_PENDING = '-',
    RCPT_DELIVERED = 'D',
    RCPT_FAILED = 'F',
};

struct queue_rcpt {
    char *addr;
    char status;         /* enum rcpt_status */
    off_t status_offset; /* byte offset of the status byte in the file */
};

struct queue_envelope {
    char qid[QID_SIZE];
    int64_t arrival;
    char *client;
    char *client_name;
    char *helo;
    char *proto;
    char *body_type;
    char *msgid;
    char *sender;
    struct queue_rcpt *rcpts;
    size_t nrcpts;
    off_t data_offset; /* first byte of the message */
};

/* Makes a new queue id from the time, a per-process counter and the pid:
 * 14 characters of [0-9A-Za-z], sortable by time. Uniqueness across restarts
 * is also enforced by the writer, which never renames over an existing file. */
void queue_make_id(char out[QID_SIZE], int64_t sec, long usec, unsigned pid, unsigned counter);

/* True when s is a well-formed queue id. */
bool queue_id_valid(const char *s, size_t len);

/* Serialises the envelope (everything up to and including "data\n") into buf.
 * The status offsets in env->rcpts are filled. Returns bytes written or -1 if
 * a field is invalid (CR, LF, NUL, too long) or buf is too small. */
ssize_t queue_format_envelope(struct queue_envelope *env, char *buf, size_t buflen);

/* Parses an envelope from the first bytes of a queue file. Pure: no I/O.
 * On success returns 0 and env owns heap copies (free with queue_envelope_free);
 * on failure -1 and a reason in err. */
int queue_parse_envelope(const char *buf, size_t len, struct queue_envelope *env, char *err,
                         size_t errlen);

void queue_envelope_free(struct queue_envelope *env);

/* --- file operations; `qdir` is the queue directory as this process sees it --- */

/* Creates tmp/, msg/ and corrupt/ under qdir when missing (mode 0700). */
int queue_prepare_dirs(const char *qdir, char *err, size_t errlen);

/* Reads and parses msg/<qid>. Returns 0, -1 with err (ENOENT kept in errno). */
int queue_read_envelope(const char *qdir, const char *qid, struct queue_envelope *env, char *err,
                        size_t errlen);

/* Opens msg/<qid> read-only and returns the fd, positioned at data_offset. */
int queue_open_data(const char *qdir, const struct queue_envelope *env);

/* Sets one recipient's status byte in place and fdatasyncs the file. */
int queue_mark_rcpt(const char *qdir, const char *qid, const struct queue_rcpt *rcpt, char status);

/* Writes the status byte of every recipient of env that is no longer
 * pending, then one fdatasync: the results of one attempt cost one flush. */
int queue_mark_rcpts(const char *qdir, const struct queue_envelope *env);

/* Removes msg/<qid>. The directory is not synced: a removal lost in a crash
 * means one duplicate delivery, never a lost message. */
int queue_remove(const char *qdir, const char *qid);

/* Moves msg/<qid> (or tmp/<name>) to corrupt/ and says so in err. */
int queue_move_corrupt(const char *qdir, const char *subdir, const char *name);

/* Start-up scan: removes every file in tmp/ that no live writer holds locked,
 * calls `found` for each file in
 * msg/ whose name is a valid queue id, moves other names to corrupt/.
 * Returns the number of messages found or -1. */
int queue_scan(const char *qdir, void (*found)(const char *qid, void *arg), void *arg);

/* renameat(from_dir, from, to_dir, to) that never replaces an existing file:
 * renameat2(RENAME_NOREPLACE), or link+unlink where the file system lacks it. */
int queue_rename_noreplace(int from_dir, const char *from, int to_dir, const char *to);

/* Sets the file's mtime: the queue process keeps each message's next attempt
 * time there, so that the schedule survives a restart (Postfix's trick). */
int queue_set_next_attempt(const char *qdir, const char *qid, int64_t when);
int queue_get_next_attempt(const char *qdir, const char *qid, int64_t *when);

#endif
