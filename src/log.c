/* log.c - where log lines go (see log.h). */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ipc.h"

static enum log_sink sink = LOG_SINK_STDERR;
static int sink_fd = -1; /* log file, or IPC socket for a worker */
static char sink_ident[32] = "jailmail";

int log_open(enum log_sink new_sink, const char *ident, const char *path)
{
    int fd = -1;
    if (new_sink == LOG_SINK_FILE) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd < 0)
            return -1;
    }
    if (sink == LOG_SINK_FILE && sink_fd >= 0)
        close(sink_fd);
    if (sink == LOG_SINK_SYSLOG && new_sink != LOG_SINK_SYSLOG)
        closelog();
    snprintf(sink_ident, sizeof sink_ident, "%s", ident);
    if (new_sink == LOG_SINK_SYSLOG)
        openlog(sink_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
    sink = new_sink;
    sink_fd = fd;
    return 0;
}

void log_to_master(int fd, const char *ident)
{
    snprintf(sink_ident, sizeof sink_ident, "%s", ident);
    sink = LOG_SINK_IPC;
    sink_fd = fd;
}

/* Replaces control characters so that one event stays one line whatever a
 * client or a server put into it. */
static void make_printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

static void write_stamped(int fd, const char *ident, long pid, const char *line)
{
    char stamp[32], out[LOG_LINE_MAX + 128];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
    int n = snprintf(out, sizeof out, "%s jailmail/%s[%ld]: %s\n", stamp, ident, pid, line);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof out)
        n = (int)sizeof out - 1, out[n - 1] = '\n';
    ssize_t r = write(fd, out, (size_t)n);
    (void)r; /* nowhere to report a failing log */
}

void log_write_line(int priority, const char *ident, long pid, const char *line)
{
    switch (sink) {
    case LOG_SINK_SYSLOG:
        syslog(priority, "%s[%ld]: %s", ident, pid, line);
        break;
    case LOG_SINK_FILE:
        write_stamped(sink_fd, ident, pid, line);
        break;
    case LOG_SINK_STDERR:
    case LOG_SINK_IPC: /* only reached when the master socket is gone */
        write_stamped(STDERR_FILENO, ident, pid, line);
        break;
    }
}

void log_vmsg(int priority, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    int saved = errno;
    line[0] = (char)('0' + (priority & 7));
    vsnprintf(line + 1, sizeof line - 1, fmt, ap);
    make_printable(line + 1);
    if (sink == LOG_SINK_IPC && ipc_send(sink_fd, IPC_LOG, line, strlen(line)) == 0) {
        errno = saved;
        return;
    }
    log_write_line(priority, sink_ident, (long)getpid(), line + 1);
    errno = saved;
}

void log_msg(int priority, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(priority, fmt, ap);
    va_end(ap);
}
