/* privsep.h - entering the jail and giving up root, irreversibly. */
#ifndef JM_PRIVSEP_H
#define JM_PRIVSEP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "conf.h"

struct run_as {
    uid_t uid;
    gid_t gid;
    bool jailed; /* false when started by a user who is not root */
};

/* Looks up the run-as user and group (before any chroot). */
int privsep_lookup(const struct config *cfg, struct run_as *ra, char *err, size_t errlen);

/* chroot(jail_dir), chdir("/"), setgroups(0), setresgid, setresuid,
 * PR_SET_NO_NEW_PRIVS, then verifies that setuid(0) and setgid(0) fail.
 * Does nothing but PR_SET_NO_NEW_PRIVS when ra->jailed is false. */
int privsep_enter_jail(const struct config *cfg, const struct run_as *ra, char *err, size_t errlen);

#endif
