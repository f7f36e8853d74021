/* log.h - one line per event, sendmail style ("qid: key=value, ...").
 *
 * The master owns the log destination (syslog, or a file named in the
 * configuration, or standard error in the foreground). Workers hand their
 * lines to the master over their IPC socket, because inside the jail there is
 * neither /dev/log nor the log file.
 */
#ifndef JM_LOG_H
#define JM_LOG_H

#include <stdarg.h>
#include <syslog.h>

#define LOG_LINE_MAX 1900

enum log_sink {
    LOG_SINK_STDERR,
    LOG_SINK_SYSLOG,
    LOG_SINK_FILE,
    LOG_SINK_IPC, /* a worker: lines go to the master */
};

/* Master side: choose where lines end up. `path` is used for LOG_SINK_FILE.
 * Returns -1 when the file cannot be opened (the old sink stays). */
int log_open(enum log_sink sink, const char *ident, const char *path);

/* Worker side: send lines to the master through `fd`. `ident` names the
 * worker ("smtpd", "queue") in the lines the master writes. */
void log_to_master(int fd, const char *ident);

/* Writes a line received from worker `pid` (already validated) to the sink. */
void log_write_line(int priority, const char *ident, long pid, const char *line);

void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(int priority, const char *fmt, va_list ap);

#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)

#endif
