/* master.h - the root process: configuration, listening sockets, the jail's
 * directories, the workers and their supervision, the log. It never reads a
 * byte that came from the network. */
#ifndef JM_MASTER_H
#define JM_MASTER_H

#include <stdbool.h>

struct master_options {
    const char *config_path; /* -C, or CONF_DEFAULT_PATH */
    bool foreground;         /* -bD rather than -bd */
    unsigned queue_interval; /* -q15m in seconds, 0 = from the configuration */
};

/* Runs the daemon; returns the process exit status (sysexits.h). */
int master_main(const struct master_options *opt);

#endif
